"""A twenty-fourth zoo (worktree ``zoo24``): models and data in the *state* in which users bring
them (models in ``zoo24_models.py``), each run through the whole user path. A CNN in float16
and in float64 and a transformer in bfloat16 (as their checkpoints are stored), the whole model
in ``nn.DataParallel`` (every name under ``module.``) or ``torch.compile`` d (an
``OptimizedModule``), pruned by ``torch.nn.utils.prune`` and not made permanent
(``weight_orig``, ``weight_mask``, a pre-hook), built under ``torch.inference_mode()``
(inference tensors), a frozen stem beside trainable layers; fed uint8 (N, H, W, C) images the
model normalizes, int64 token ids with a padding mask (also as a dict, ``model(**batch)``),
non-contiguous views (permuted, strided, expanded) and a batch of one. Beside them: a model
in ``train()`` mode with a BatchNorm frozen in eval mode, a model after
``torch.ao.quantization.prepare_qat``, float64 data into a float32 model, one ``Parameter``
held by two Linears and a model left on the meta device.

Each registry model: the three registry checks of every zoo, and the user's path: deployed on
``rram-22nm``, the digital SRAM ``published/chih-isscc21``, the 1-b input
``published/jia-jssc20`` (its signed-input layers excluded, as its refusal advises) and the PCM
``published/hermes-jssc22`` (single macros time-multiplexed), outputs in the model's dtype,
the report's and ``estimate``'s totals finite and positive, the report rendered, saved and
loaded; ``prepare``'s ``float_model()`` computing what the model computes; deploy and
``prepare`` (and a training step, ``float_model``) leaving the user's model as it was: its
state, dtypes, modes, ``requires_grad`` flags and hooks; a sweep.

What it found, fixed: ``distill`` put its teacher (the user's model) back with
``teacher.train(was_training)``, the root's flag for every submodule, and so did
``cimsim.train.distill.output_cosine`` and ``cimsim.models.evaluate``: a BatchNorm the user
had frozen in eval mode inside a training model (fine-tuning with frozen statistics) came
back in training mode, its running statistics moving in the user's next training step. Each
module's own mode comes back now. A ``prepare_qat`` model's refusal said ``Conv2d overrides
Conv2d.forward`` and advised holding a plain layer instead of subclassing, which the user never
did: it names ``prepare_qat`` and the way out (the float model, the trained weights loaded).
float64 data into a float32 model failed at the first operation mixing them, inside the
calibration (a simulated layer computes in its input's dtype, so not where the model itself
would): the error notes the two dtypes and the casts now. An attention module whose every
projection was excluded (the 1-b input chip's refusal lists them one by one) stayed a
simulated layer with nothing on the arrays: a model of nothing else deployed at 0 pJ, 0 arrays,
its costs "meaningful"; it is refused as a model with no layer to map now.
A model built under ``torch.device('meta')`` and never loaded failed deep in torch (deploy's
copy, ``prepare``'s ``aten::equal``); both name its parameters and ``to_empty`` +
``load_state_dict`` now. The command line (``load_data``: float32) refused a float64 or
float16 model its data, which it casts to the weights' dtype now. ``prepare``'s own refusal
on the 1-b chip advised excluding attention's four projections by name, which ``prepare``
ignored (warned, the same refusal again): all four keep the module in float now, a part is
refused. ``prepare`` of ``nn.DataParallel(model.eval())`` (the wrapper training, the
layers in eval mode) gave the eval layers training twins (noisy outputs call after call):
each twin takes its layer's mode now.
Seen, by design: ``prepare`` refuses float16 / bfloat16 weights naming the layers and
``model.float()`` (its integer arithmetic); the same model in float64 trains and deploys. Two
Linears holding one ``Parameter`` are two layers, each programmed (the report lists both, with
their area); a layer called twice is one. A compiled model is deployed and prepared as the
module ``torch.compile`` wraps (its layers named without ``_orig_mod.``). The 1-b input chip
refuses the uint8 model's stem: the model's own normalization makes its input signed.
Training methods: ``tests/train/test_zoo24_methods.py``."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import MappingError, SignedInputError
from cimsim.train import distill, prepare

from .conftest import flat_output
from .test_zoo5 import _quiet
from .zoo24_models import (
    SmallCNN,
    TokenIds,
    Uint8Images,
    _stats,
    bfloat16_vit,
    compiled,
    data_parallel,
    float16_cnn,
    float64_cnn,
    frozen_backbone,
    inference_weights,
    pruned,
    strided_images,
    token_batch,
)
from .zoo_tests import (
    check_on_users_chip,
    positive,
    user_chip,
    user_path_tests,
    zoo_deploy_tests,
)


def _images(b: int = 3) -> tuple[torch.Tensor]:
    return (torch.randn(b, 3, 8, 8),)


ZOO24 = {
    "float16-cnn": (float16_cnn, lambda: (torch.randn(3, 3, 8, 8).half(),)),
    "bfloat16-vit": (bfloat16_vit, lambda: (torch.randn(3, 3, 8, 8).bfloat16(),)),
    "float64-cnn": (float64_cnn, lambda: (torch.randn(3, 3, 8, 8).double(),)),
    "root-data-parallel": (data_parallel, _images),
    "compiled": (compiled, _images),
    "pruned-with-hooks": (pruned, _images),
    "inference-weights": (inference_weights, _images),
    "frozen-backbone": (frozen_backbone, _images),
    "uint8-images": (lambda: Uint8Images().eval(),
                     lambda: (torch.randint(0, 256, (3, 8, 8, 3), dtype=torch.uint8),)),
    "token-ids": (lambda: TokenIds().eval(), token_batch),
    "strided-inputs": (lambda: _stats(SmallCNN()).eval(), lambda: (strided_images(),)),
    "batch-of-one": (lambda: _stats(SmallCNN()).eval(), lambda: _images(1)),
}

_DIGITAL: dict[str, set[str]] = {"token-ids": {"embed"}, "bfloat16-vit": {"encoder.self_attn"}}
_HALF = ("float16-cnn", "bfloat16-vit")
# the compiled model's weights are named under its wrapper (``_orig_mod.``), its layers without
# it (deploy maps the module torch.compile wraps); all four are mapped (the lossless test)
_NOT_MATRICES = {"compiled": tuple(f"_orig_mod.{n}.weight"
                                   for n in ("stem", "block.0", "block.2", "fc"))}


def _build(name: str, dtype: torch.dtype | None = None) -> tuple[nn.Module, tuple]:
    """A model in its state (``make()`` under seed 0, its inputs under seed 1); ``dtype``
    (the float64 the training tests take): the model and its floating inputs cast to it."""
    make, data = ZOO24[name]
    torch.manual_seed(0)
    model = make()
    torch.manual_seed(1)
    args = data()
    if dtype is not None:
        model = model.to(dtype)
        args = tuple(a.to(dtype) if a.is_floating_point() else a for a in args)
    return model, args


# the deploy (lossless, rram-22nm) and prepare tests of every model
(test_lossless_deploy_is_the_quantized_model_and_near_float,
 test_rram_deploy_runs_reports_and_accounts_for_every_matrix,
 test_prepare_steps_and_the_twin_deploys_to_what_it_computes) = zoo_deploy_tests(
    ZOO24, _build, _DIGITAL, tol={"float16-cnn": 0.05, "bfloat16-vit": 0.08},
    not_matrices=_NOT_MATRICES)


# ---------------------------------------------------------------------------------------------
# the user path: chips, report, estimate, float model, the user's model untouched, sweep
# ---------------------------------------------------------------------------------------------
_CHIPS = ["rram-22nm", "published/chih-isscc21", "published/jia-jssc20",
          "published/hermes-jssc22"]
_FAST = [("float16-cnn", "published/chih-isscc21"), ("uint8-images", "published/jia-jssc20"),
         ("root-data-parallel", "published/hermes-jssc22"), ("token-ids", "rram-22nm")]
_SLOW = [(n, c) for n in ZOO24 for c in _CHIPS if (n, c) not in _FAST]
# every matrix takes a signed input (the ViT's patches and LayerNorms, the token MLP's
# embeddings and GELU): on a 1-b input chip, each refused layer excluded, nothing is left
_ONE_BIT_REFUSED = ("bfloat16-vit", "token-ids")


def check_user_path(name: str, chip_name: str, tmp_path) -> None:
    """:func:`zoo_tests.check_on_users_chip`; on the 1-b input chip the layers its refusal
    names (signed inputs) excluded, as it advises."""
    model, args = _build(name)
    chip = user_chip(chip_name)
    exclude: list[str] = []
    if chip.input_bits == 1:
        try:
            _quiet(cimsim.deploy, model, chip, args)
        except SignedInputError as refused:
            exclude = list(refused.layers)
    if name in _ONE_BIT_REFUSED and chip.input_bits == 1:  # every matrix's input is signed
        with pytest.raises(MappingError, match="no layer can be mapped"):
            _quiet(cimsim.deploy, model, chip, args, exclude=exclude)
        return
    check_on_users_chip(model, args, chip, _DIGITAL.get(name, set()) | set(exclude), tmp_path,
                        exclude=exclude)


(test_on_a_users_chip_it_runs_reports_renders_and_saves,
 test_on_every_other_chip_it_runs_reports_renders_and_saves) = user_path_tests(
    _FAST, _SLOW, check_user_path)


def test_uint8_images_the_model_normalizes_are_signed_on_a_one_bit_chip():
    """Images the model normalizes itself go below 0 after the normalization: the 1-b input
    chip refuses the stem naming it (as any signed input), not the uint8 data."""
    model, args = _build("uint8-images")
    with pytest.raises(SignedInputError) as refused:
        _quiet(cimsim.deploy, model, user_chip("published/jia-jssc20"), args)
    assert "net.stem" in refused.value.layers


def _snapshot(model: nn.Module) -> dict:
    """What a user sees of their model: every tensor of its state (values, dtype, whether an
    inference tensor), each module's mode and hooks, each parameter's object and flag."""
    return {
        "state": {k: (v.detach().clone(), v.dtype, v.is_inference())
                  for k, v in model.state_dict(keep_vars=True).items()},
        "modes": [(n, m.training) for n, m in model.named_modules()],
        "hooks": [(n, list(m._forward_pre_hooks), list(m._forward_hooks))
                  for n, m in model.named_modules()],
        "params": [(n, id(p), p.requires_grad) for n, p in model.named_parameters()],
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = _snapshot(model)
    for key in ("modes", "hooks", "params"):
        assert after[key] == before[key], key
    assert list(after["state"]) == list(before["state"])
    for k, (value, dtype, inference) in before["state"].items():
        now, now_dtype, now_inference = after["state"][k]
        assert (now_dtype, now_inference) == (dtype, inference), k
        assert torch.equal(now, value), k


@pytest.mark.parametrize("name", list(ZOO24))
def test_deploy_and_prepare_leave_the_users_model_as_it_was(name):
    """deploy, ``prepare``, a training step of the twin, its ``float_model()`` and its deploy:
    the user's model keeps its values, dtypes, inference tensors, modes, hooks (a pruning
    mask's), parameters and their ``requires_grad``; its outputs are what they were."""
    model, args = _build(name)
    before = _snapshot(model)
    with torch.no_grad():
        want = flat_output(model(*args))
    _quiet(cimsim.deploy, model, user_chip("rram-22nm"), args, seed=0)
    assert_unchanged(model, before)
    if name in _HALF:
        with pytest.raises(MappingError, match=r"float16/bfloat16 weights.*model\.float\(\)"):
            _quiet(prepare, model, user_chip("rram-22nm"), args)
    else:
        prep = _quiet(prepare, model, user_chip("rram-22nm"), args, seed=0)
        prep.train()
        flat_output(prep(*args)).float().pow(2).mean().backward()
        torch.optim.SGD([p for p in prep.parameters() if p.requires_grad], lr=1e-2).step()
        prep.eval()
        prep.float_model()
        prep.deploy(seed=0)
    assert_unchanged(model, before)
    with torch.no_grad():
        torch.testing.assert_close(flat_output(model(*args)), want, rtol=0, atol=0)


@pytest.mark.parametrize("name", [n for n in ZOO24 if n not in _HALF])
def test_the_float_model_of_a_fresh_twin_is_the_model(name):
    """``prepare`` then ``float_model()`` before any step: the user's model, output for output
    (a compiled model's: its original module's; a pruned one's: the pruning made permanent)."""
    model, args = _build(name)
    prep = _quiet(prepare, model, user_chip("rram-22nm"), args, seed=0)
    tuned = prep.float_model()
    with torch.no_grad():
        torch.testing.assert_close(flat_output(tuned(*args)), flat_output(model(*args)),
                                   rtol=0, atol=0)
    assert not any(p.is_inference() for p in tuned.parameters())


def test_half_precision_models_train_as_a_float64_copy_and_cast_back():
    """``prepare`` refuses float16 weights (named, with ``model.float()``); the float64 copy
    it advises trains a step, and its ``float_model()`` cast back to float16 runs."""
    model, args = _build("float16-cnn")
    wide, wide_args = _build("float16-cnn", torch.float64)
    prep = _quiet(prepare, wide, user_chip("rram-22nm"), wide_args, seed=0)
    prep.train()
    prep(*wide_args).pow(2).mean().backward()
    torch.optim.SGD(prep.parameters(), lr=1e-2).step()
    back = prep.eval().float_model().half()
    with torch.no_grad():
        assert back(*args).dtype == torch.float16 and torch.isfinite(back(*args)).all()


def test_a_frozen_stem_stays_frozen_in_the_twin_and_its_float_model():
    """The twin's copies of frozen parameters take no gradient; after a step the float model's
    stem and BatchNorm are the user's, its block moved."""
    model, args = _build("frozen-backbone")
    prep = _quiet(prepare, model, user_chip("rram-22nm"), args, seed=0)
    prep.train()
    prep(*args).pow(2).mean().backward()
    torch.optim.SGD([p for p in prep.parameters() if p.requires_grad], lr=1e-1).step()
    tuned = prep.eval().float_model()
    for part in ("stem", "bn"):
        for (n, p), q in zip(getattr(model, part).named_parameters(),
                             getattr(tuned, part).parameters(), strict=True):
            assert torch.equal(p, q) and not q.requires_grad, f"{part}.{n}"
    assert not torch.equal(tuned.block[0].weight, model.block[0].weight)


def test_keyword_token_batches_deploy_train_distill_and_sweep(tmp_path):
    """``model(**batch)``, a HuggingFace batch of int64 ids and mask: the user path with the
    dict (deploy on rram-22nm, report, estimate, saved), ``prepare`` and ``distill`` on it, and
    a two-point sweep over the ADC bits on it with labels."""
    from cimsim.sweep import run_sweep

    model, (ids, mask) = _build("token-ids")
    batch = {"input_ids": ids, "attention_mask": mask}
    check_on_users_chip(model, batch, user_chip("rram-22nm"), {"embed"}, tmp_path / "rep")
    model64 = copy.deepcopy(model).double()
    prep = _quiet(prepare, model64, cimsim.load_chip("ideal"), batch)
    with torch.no_grad():
        torch.testing.assert_close(prep.float_model()(**batch), model64(**batch),
                                   rtol=0, atol=0)
    before = [p.detach().clone() for p in prep.parameters()]
    distill(prep, model64, batch, batch_size=2, progress=False)
    assert any(not torch.equal(p, b) for p, b in zip(prep.parameters(), before, strict=True))
    with torch.no_grad():
        torch.testing.assert_close(prep.deploy()(**batch), prep(**batch), rtol=1e-7,
                                   atol=1e-7)
    torch.manual_seed(4)
    ids, mask = token_batch(12)
    big = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        labels = model(**big).argmax(1)
    table = run_sweep(model, (big, labels), "rram-22nm", {"adc_bits": [4, 7]}, tmp_path,
                      calibration=6, progress=False)
    assert list(table["adc_bits"]) == [4, 7] and set(table["status"]) == {"ok"}
    assert all(positive(float(v)) for v in table["energy_pj_per_inference"])
    assert table["accuracy"].between(0, 1).all()


@pytest.mark.slow
def test_a_two_point_sweep_of_a_half_precision_model(tmp_path):
    """``run_sweep`` of the float16 CNN on float16 data: both points ``ok``, costs positive."""
    from cimsim.sweep import run_sweep

    model, _ = _build("float16-cnn")
    torch.manual_seed(2)
    x = torch.randn(12, 3, 8, 8).half()
    with torch.no_grad():
        y = model(x).argmax(1)
    table = run_sweep(model, (x, y), "rram-22nm", {"adc_bits": [4, 7]}, tmp_path,
                      calibration=6, progress=False)
    assert set(table["status"]) == {"ok"}
    assert all(positive(float(v)) for v in table["energy_pj_per_inference"])


# ---------------------------------------------------------------------------------------------
# what it found
# ---------------------------------------------------------------------------------------------
def _fine_tuning() -> tuple[nn.Module, tuple]:
    """A model in training mode with its BatchNorm frozen in eval mode (fine-tuning with the
    pretrained statistics), as a user's training loop holds it."""
    model, args = _build("frozen-backbone")
    model.train()
    model.bn.eval()
    return model, args


def test_distill_leaves_a_batchnorm_frozen_in_a_training_teacher_frozen():
    """``distill`` (the user's model as the teacher) and ``output_cosine`` set the teacher
    back with ``train(was_training)``: the root's flag for every submodule, so the frozen
    BatchNorm came back in training mode and its statistics moved in the user's next step.
    Each module's own mode is restored now; prepare and deploy kept it already."""
    from cimsim.train.distill import output_cosine

    model, args = _fine_tuning()
    before = _snapshot(model)
    prep = _quiet(prepare, copy.deepcopy(model).double(), cimsim.load_chip("ideal"),
                  tuple(a.double() for a in args))
    teacher = model.double()
    before = _snapshot(teacher)
    distill(prep, teacher, args[0].double(), batch_size=2, progress=False)
    assert_unchanged(teacher, before)
    output_cosine(prep, teacher, args[0].double())
    assert_unchanged(teacher, before)
    assert not teacher.bn.training and teacher.training


def test_evaluate_leaves_each_modules_mode():
    """``cimsim.models.evaluate`` (accuracy in eval mode) restored the root's mode to every
    submodule too."""
    from cimsim.models import evaluate

    model, (x,) = _fine_tuning()
    before = _snapshot(model)
    evaluate(model, x, torch.zeros(len(x), dtype=torch.int64))
    assert_unchanged(model, before)


def test_a_training_model_deploys_and_prepares_without_moving_its_statistics():
    """A model in training mode (its BatchNorm frozen, its dropout on): deploy and ``prepare``
    compute as its eval copy, and leave its modes and running statistics as they were."""
    model, args = _fine_tuning()
    before = _snapshot(model)
    sim = _quiet(cimsim.deploy, model, user_chip("rram-22nm"), args, seed=0)
    evaluated = copy.deepcopy(model).eval()
    ref = _quiet(cimsim.deploy, evaluated, user_chip("rram-22nm"), args, seed=0)
    torch.testing.assert_close(sim(*args), ref(*args), rtol=0, atol=0)
    prep = _quiet(prepare, model, user_chip("rram-22nm"), args, seed=0)
    assert prep.training and not prep.float_model().bn.training
    assert_unchanged(model, before)


def test_a_qat_prepared_model_is_refused_naming_prepare_qat_and_the_float_model():
    """``torch.ao.quantization.prepare_qat`` (with a fused Conv+BN): the refusal said ``Conv2d
    overrides Conv2d.forward`` and advised a plain layer instead of a subclass; it names
    ``prepare_qat`` and the float model now, and that way out maps, its weights loaded."""
    import torch.ao.quantization as tq

    model, args = _build("frozen-backbone")
    qat = copy.deepcopy(model)
    with pytest.warns(UserWarning):  # torch.ao.quantization's own (reduce_range, deprecation)
        qat.qconfig = tq.get_default_qat_qconfig("x86")
        qat = tq.prepare_qat(tq.fuse_modules_qat(qat.train(), [["stem", "bn"]])).eval()
    for fn in (cimsim.deploy, prepare):
        with pytest.raises(MappingError) as refused:
            _quiet(fn, qat, user_chip("rram-22nm"), args)
        text = str(refused.value)
        assert "stem: a torch.ao.nn.intrinsic.qat.ConvBn2d of torch.ao.quantization." \
               "prepare_qat" in text and "fc: a torch.ao.nn.qat.Linear" in text
        assert "overrides" not in text and "load_state_dict(qat_model.state_dict()" in text
    plain = copy.deepcopy(model)
    # the fused stem and BatchNorm are named otherwise (stem.bn.*): kept from before
    keys = plain.load_state_dict({k: v for k, v in qat.state_dict().items()
                                  if not k.startswith(("stem", "bn"))}, strict=False)
    assert all(k.startswith(("stem.", "bn.")) for k in keys.missing_keys)
    sim = _quiet(cimsim.deploy, plain, user_chip("rram-22nm"), args)
    assert list(sim.sim_layers) == ["stem", "block.0", "block.2", "fc"]


def test_float64_data_into_a_float32_model_names_both_dtypes():
    """float64 inputs to a float32 model failed inside the calibration with torch's "mixed
    dtype (CPU)" from the BatchNorm (the simulated stem computes in its input's dtype); the
    error notes the two dtypes and the casts that make them one now. Cast, it deploys."""
    model, (x,) = _build("frozen-backbone")
    for fn in (cimsim.deploy, prepare):
        with pytest.raises(RuntimeError) as refused:
            _quiet(fn, model, user_chip("rram-22nm"), (x.double(),))
        assert ("the calibration inputs are float64, the model's weights float32"
                in " ".join(getattr(refused.value, "__notes__", [])))
    sim = _quiet(cimsim.deploy, model, user_chip("rram-22nm"), (x.double().float(),))
    assert torch.isfinite(sim(x)).all()


def test_one_parameter_held_by_two_linears_is_programmed_for_each():
    """Two ``nn.Linear`` holding the same ``Parameter`` (``b.weight = a.weight``): two layers
    on the arrays, each its own programmed copy of the one matrix (identical codes), each a
    row of the report with its area; a layer *called* twice is one (docs/architecture.md,
    "Shared modules"). The report says what deploy programmed."""
    torch.manual_seed(0)
    a, b, out = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 3)
    b.weight = a.weight
    model = nn.Sequential(a, nn.ReLU(), b, nn.ReLU(), out).eval()
    x = torch.randn(4, 8)
    sim = _quiet(cimsim.deploy, model, user_chip("rram-22nm"), x, seed=0)
    assert list(sim.sim_layers) == ["0", "2", "4"] and sim.arrays_needed == 3
    (core_a,), (core_b,) = sim.sim_layers["0"].cores, sim.sim_layers["2"].cores
    assert (core_a.w_int == core_b.w_int).all()
    areas = sim.report().layers.set_index("layer")["area_um2"]
    assert float(areas["0"]) == pytest.approx(float(areas["2"])) and float(areas["0"]) > 0


def test_attention_with_every_projection_excluded_is_no_layer_to_map():
    """The 1-b input chip refuses the ViT's every matrix, attention's four projections by
    name; with all excluded, attention stayed a simulated layer with nothing on the arrays
    and the model deployed at 0 pJ per inference. It is refused now, as with no layer."""
    model, args = _build("bfloat16-vit")
    chip = user_chip("published/jia-jssc20")
    with pytest.raises(SignedInputError) as refused:
        _quiet(cimsim.deploy, model, chip, args)
    assert "encoder.self_attn.q_proj" in refused.value.layers
    with pytest.raises(MappingError, match=r"no layer can be mapped.*encoder\.self_attn\.q_proj "
                       r"\(projection: excluded by the user\)"):
        _quiet(cimsim.deploy, model, chip, args, exclude=list(refused.value.layers))


def test_a_model_left_on_the_meta_device_is_refused_naming_the_way_out():
    """Built under ``torch.device('meta')`` and never loaded (``to_empty`` forgotten): deploy
    failed deep in the copy ("Cannot copy out of meta tensor") and ``prepare`` in
    ``aten::equal``; both name the parameters and ``to_empty`` + ``load_state_dict`` now, and
    that way out deploys as the model it was loaded from."""
    model, args = _build("frozen-backbone")
    with torch.device("meta"):
        empty = SmallCNN().eval()
    for fn in (cimsim.deploy, prepare):
        with pytest.raises(MappingError, match=r"stem\.weight, bn\.weight, bn\.bias, "
                           r"block\.0\.weight and 8 more: on the meta device.*to_empty"):
            _quiet(fn, empty, user_chip("rram-22nm"), args)
    empty = empty.to_empty(device="cpu")
    empty.load_state_dict(model.state_dict())
    sims = [_quiet(cimsim.deploy, m, user_chip("rram-22nm"), args, seed=0)
            for m in (empty, model)]
    torch.testing.assert_close(sims[0](*args), sims[1](*args), rtol=0, atol=0)


@pytest.mark.parametrize("factory", [
    "float64_cnn", pytest.param("float16_cnn", marks=pytest.mark.slow)])
def test_the_command_line_feeds_a_float64_or_half_model_its_own_dtype(factory, tmp_path,
                                                                       capsys):
    """``cimsim simulate --model module:function`` of a float64 or float16 model: the data
    (``load_data``: float32) was refused ("Input type (torch.FloatTensor) and weight type
    (torch.DoubleTensor) should be the same"), the model unusable from the command line; the
    inputs are cast to the weights' dtype now, as integer images are cast to float32."""
    import numpy as np

    from cimsim.cli import main

    torch.manual_seed(5)
    x = torch.randn(12, 3, 8, 8)
    np.savez(tmp_path / "data.npz", x=x.numpy(), y=np.arange(12) % 5)
    rc = main(["simulate", "--model", f"tests.mapping.zoo24_models:{factory}", "--data",
               str(tmp_path / "data.npz"), "--chip", "rram-22nm", "--out",
               str(tmp_path / "out"), "--calibration", "6"])
    assert rc == 0, capsys.readouterr()
    assert "simulated accuracy" in capsys.readouterr().out
    assert (tmp_path / "out" / "layers.csv").is_file()


def test_a_float64_model_refusing_float32_data_is_built_once(tmp_path, monkeypatch):
    """``load_model_for`` of a float64 factory given float32 data built the model three
    times (refused, again to read its dtype, again on the cast inputs): a factory that reads
    a checkpoint read it three times. Built once now, the same module run on the cast
    inputs."""
    from cimsim.mapping.loaders import load_model_for

    (tmp_path / "built_once.py").write_text(
        "import torch\nBUILDS = []\n"
        "def model():\n    BUILDS.append(1)\n"
        "    return torch.nn.Sequential(torch.nn.Linear(4, 3)).double()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import built_once

    loaded, x = load_model_for("built_once:model", torch.randn(5, 4))
    assert len(built_once.BUILDS) == 1 and x.dtype == torch.float64
    assert loaded(x).dtype == torch.float64


def test_prepare_follows_its_own_advice_to_exclude_attentions_projections():
    """On the 1-b input chip ``prepare``'s refusal lists attention's four projections by
    name, as deploy takes them; ``prepare`` did not (its twin trains the four together): the
    names matched nothing (warned) and the same refusal came back. Every projection excluded
    keeps the attention module in float now (as deploy keeps its four matrices digital), the
    twin deploys without it; a part of them is refused, naming the module."""
    model, args = _build("bfloat16-vit", torch.float64)
    with pytest.raises(SignedInputError) as refused:
        _quiet(prepare, model, user_chip("published/jia-jssc20"), args)
    with pytest.raises(MappingError, match="no layer can be mapped"):  # not the same refusal
        _quiet(prepare, model, user_chip("published/jia-jssc20"), args,
               exclude=list(refused.value.layers))
    projections = [f"encoder.self_attn.{t}" for t in ("q_proj", "k_proj", "v_proj", "out_proj")]
    for exclude in (projections, ["encoder.self_attn.in_proj", "*.out_proj"]):
        prep = _quiet(prepare, model, user_chip("rram-22nm"), args, exclude=exclude)
        assert list(prep.twin_layers) == ["patch", "encoder.linear1", "encoder.linear2", "head"]
        assert list(prep.deploy().sim_layers) == list(prep.twin_layers)
    with pytest.raises(MappingError, match=r"exclude names encoder\.self_attn\.k_proj, "
                       r"encoder\.self_attn\.q_proj but not all .* 'encoder\.self_attn'"):
        _quiet(prepare, model, user_chip("rram-22nm"), args, exclude=projections[:2])


def test_a_twin_takes_the_mode_of_the_layer_it_replaced():
    """``nn.DataParallel(model.eval())``: the wrapper is in training mode, the model's layers
    in eval mode. ``prepare`` set every module to the root's mode and restored the modules it
    had copied, not the twins it had made: the eval layers' twins came out training, drawing
    training noise, so the prepared model gave other outputs at each call. Each twin takes its
    layer's mode now: the outputs are those of a second ``prepare``, call after call."""
    model, args = _build("root-data-parallel")
    assert model.training and not model.module.training
    preps = [_quiet(prepare, model, user_chip("rram-22nm"), args, seed=0) for _ in range(2)]
    assert not any(layer.training for layer in preps[0].twin_layers.values())
    with torch.no_grad():
        outs = [p(*args) for p in (*preps, preps[0])]
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=0)
    torch.testing.assert_close(outs[2], outs[0], rtol=0, atol=0)

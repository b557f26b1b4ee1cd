"""A twenty-third zoo (worktree ``zoo23``): published architecture families at toy width, their
block structure as their papers give it, that the earlier zoos did not build (models in
``zoo23_models.py``), run through the whole user path. DeiT (class and distillation tokens, two
heads averaged), PoolFormer (``pool(x) - x`` after GroupNorm(1), layer scales), ConvMixer
(residual depthwise convolutions, GELU then BatchNorm), ResMLP (Affine, a cross-patch Linear
over the transposed tokens), Res2Net bottlenecks with ECA (a ``Conv1d`` across the pooled
channels) and CBAM's spatial attention, FT-Transformer (a per-feature tokenizer, categorical
embeddings, [CLS] last), DLinear (a replicate-padded moving average, Linears over time),
Conv-TasNet (gLN, dilated depthwise ``Conv1d`` blocks with skip sums, masks, a
``ConvTranspose1d`` decoder), DeepSpeech 2 (convolutions over a spectrogram, a bidirectional GRU
with its directions summed, CTC log-softmax) and NeuMF (GMF beside an MLP on embeddings).

Beside the three registry checks of every zoo, each model goes the way a user takes it: deployed
on several chips (``rram-22nm``, the charge-domain ``sram-65nm``, the digital SRAM
``published/chih-isscc21`` and the PCM ``published/hermes-jssc22``, both single macros
time-multiplexed as their capacity error advises, and the 1-b input ``published/jia-jssc20``,
which refuses a signed input naming the layer), its report's totals and
``cimsim.cost.estimate``'s finite and positive, the report rendered (headline, HTML, figures)
and saved and loaded; ``prepare``'s ``float_model()`` computing what the model does before
training; and one model through a two-point ``cimsim.sweep`` over the ADC bits.

What it found, fixed: NeuMF takes a batch of user ids and one of item ids, each (B,);
calibration cut them into samples along dimension 0, but a call counted a 1-D input as one
sample, so ``n_inferences`` grew by 1 a call and every cost per inference came out B times too
high, with no word. A 1-D input is a batch now where the calibration gave that argument one
dimension too. On a 1-b input chip the refusal of a signed input named the first such layer
only: following its ``exclude=[...]`` refused the next, a deploy per layer (Res2Net has five:
its stem and ECA's and CBAM's convolutions in each block); deploy and ``prepare`` name them all
in one error (``SignedInputError``) whose ``exclude`` list maps the rest, and every matrix of
a layer too (FT-Transformer's attention projections took a deploy each).
Seen, by design: the single-macro published chips refuse a toy network with a
``CapacityError`` that names ``allow_time_multiplexing``; on ``sram-65nm`` (8-bit full-scale ADC
ranged for 768 rows) toy layers of a few dozen rows lose most of their signal (outputs up to
2.5 times the float model's norm off: a layer with fewer rows keeps the full range,
docs/hardware-model.md §7), so there only finiteness and the costs are checked;
FT-Transformer's numerical tokenizer (each feature times its own vector) is an elementwise
product, listed digital by name. BS-KMQ, distillation and one PIM-QAT pair:
``tests/train/test_zoo23_methods.py``."""

from __future__ import annotations

import pytest
import torch

import cimsim
from cimsim.errors import SignedInputError
from cimsim.train import prepare

from .conftest import build_seeded, flat_output
from .test_zoo5 import _quiet
from .zoo23_models import (
    ConvMixer,
    ConvTasNet,
    DeepSpeech2,
    DeiT,
    DLinear,
    FTTransformer,
    NeuMF,
    PoolFormer,
    Res2Net,
    ResMLP,
)
from .zoo_tests import check_on_users_chip, user_path_tests, zoo_deploy_tests
from .zoo_tests import positive as _positive
from .zoo_tests import user_chip as _chip

ZOO23 = {
    "deit": (DeiT, lambda: (torch.randn(3, 3, 8, 8),)),
    "poolformer": (PoolFormer, lambda: (torch.randn(3, 3, 16, 16),)),
    "convmixer": (ConvMixer, lambda: (torch.randn(3, 3, 8, 8),)),
    "resmlp": (ResMLP, lambda: (torch.randn(3, 3, 8, 8),)),
    "res2net": (Res2Net, lambda: (torch.randn(3, 3, 8, 8),)),
    "ft-transformer": (FTTransformer, lambda: (torch.randn(3, 5), torch.randint(0, 3, (3, 2)))),
    "dlinear": (DLinear, lambda: (torch.randn(3, 24, 2),)),
    "conv-tasnet": (ConvTasNet, lambda: (torch.randn(3, 1, 32),)),
    "deepspeech2": (DeepSpeech2, lambda: (torch.randn(3, 1, 16, 6),)),
    "neumf": (NeuMF, lambda: (torch.randint(0, 11, (3,)), torch.randint(0, 13, (3,)))),
}

_DIGITAL: dict[str, set[str]] = {
    "deit": {"blocks.0.attn", "blocks.1.attn"},
    "ft-transformer": {"cat_embed", "encoder.layers.0.self_attn", "encoder.layers.1.self_attn",
                       "num_weight"},
    "neumf": {"gmf_user", "gmf_item", "mlp_user", "mlp_item"},
}

# parameters of two and more dimensions in no product: tokens, positions, the tokenizer's
# biases, gLN's gains and biases (shaped (1, C, 1))
_GLN = tuple(f"{m}.{p}" for m in ("norm", *(f"blocks.{i}.norm{j}" for i in range(3)
                                             for j in (1, 2))) for p in ("gamma", "beta"))
_NOT_MATRICES = {"deit": ("cls_token", "dist_token", "pos_embed"),
                 "ft-transformer": ("num_bias",), "conv-tasnet": _GLN}

# layers the integer reference (``conftest.reference_model``) does not re-implement: a
# transposed convolution, a GRU (their own zoos' tests hold them bit-exact)
_NOT_EXACT = ("conv-tasnet", "deepspeech2")


def _build(name: str, dtype=torch.float32):
    return build_seeded(*ZOO23[name], dtype)


# the deploy (lossless, rram-22nm) and prepare tests of every model
(test_lossless_deploy_is_the_quantized_model_and_near_float,
 test_rram_deploy_runs_reports_and_accounts_for_every_matrix,
 test_prepare_steps_and_the_twin_deploys_to_what_it_computes) = zoo_deploy_tests(
    ZOO23, _build, _DIGITAL, not_matrices=_NOT_MATRICES, not_exact=_NOT_EXACT)


# ---------------------------------------------------------------------------------------------
# the user path: chips, report, estimate, float model, save and load, sweep
# ---------------------------------------------------------------------------------------------
_CHIPS = ["rram-22nm", "sram-65nm", "published/chih-isscc21", "published/hermes-jssc22"]
# one model on each chip in the default run (a report's figures take seconds); the other
# pairs are slow
_FAST = [("res2net", "sram-65nm"), ("dlinear", "published/chih-isscc21"),
         ("neumf", "published/hermes-jssc22")]
_SLOW = [(n, c) for n in ZOO23 for c in _CHIPS if (n, c) not in _FAST]


def check_user_path(name: str, chip_name: str, tmp_path) -> None:
    """:func:`zoo_tests.check_on_users_chip` of a model of this zoo."""
    model, args = _build(name)
    check_on_users_chip(model, args, _chip(chip_name), _DIGITAL.get(name, set()), tmp_path)


(test_on_a_users_chip_it_runs_reports_renders_and_saves,
 test_on_every_other_chip_it_runs_reports_renders_and_saves) = user_path_tests(
    _FAST, _SLOW, check_user_path)


@pytest.mark.parametrize("name", list(ZOO23))
def test_the_float_model_of_a_fresh_twin_is_the_model(name):
    """``prepare`` then ``float_model()`` before any step: the user's model, output for
    output; its state dict loads into a fresh model of the same class."""
    model, args = _build(name)
    prep = _quiet(prepare, model, _chip("rram-22nm"), args, seed=0)
    tuned = prep.float_model()
    with torch.no_grad():
        want = flat_output(model(*args))
        torch.testing.assert_close(flat_output(tuned(*args)), want, rtol=0, atol=0)
        fresh = ZOO23[name][0]().eval()
        fresh.load_state_dict(tuned.state_dict())
        torch.testing.assert_close(flat_output(fresh(*args)), want, rtol=0, atol=0)


def test_a_trained_twin_saves_and_loads_into_a_fresh_prepare(tmp_path):
    """A twin after a step saved by ``torch.save(state_dict)`` and loaded into a fresh
    ``prepare`` of the same model and chip computes what it did, and deploys the same."""
    model, args = _build("res2net")
    chip = _chip("rram-22nm")
    prep = _quiet(prepare, model, chip, args, seed=0)
    opt = torch.optim.SGD(prep.parameters(), lr=1e-2)
    prep.train()
    prep(*args).pow(2).mean().backward()
    opt.step()
    prep.eval()
    torch.save(prep.state_dict(), tmp_path / "twin.pt")
    again = _quiet(prepare, model, chip, args, seed=0)
    again.load_state_dict(torch.load(tmp_path / "twin.pt", weights_only=True))
    with torch.no_grad():
        torch.testing.assert_close(again(*args), prep(*args), rtol=0, atol=0)
        torch.testing.assert_close(again.deploy(seed=0)(*args), prep.deploy(seed=0)(*args),
                                   rtol=0, atol=0)


def test_a_two_point_sweep_over_adc_bits(tmp_path):
    """``run_sweep`` over two ADC resolutions on ``rram-22nm``: two points, ``ok``, their
    costs finite and positive, the files written."""
    from cimsim.sweep import run_sweep

    model, _ = _build("convmixer")
    torch.manual_seed(2)
    x = torch.randn(12, 3, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)
    table = run_sweep(model, (x, y), "rram-22nm", {"adc_bits": [4, 7]}, tmp_path,
                      calibration=6, progress=False)
    assert list(table["adc_bits"]) == [4, 7] and set(table["status"]) == {"ok"}
    for column in ("energy_pj_per_inference", "latency_ns_per_inference", "area_mm2",
                   "tops_per_w"):
        assert all(_positive(float(v)) for v in table[column]), column
    assert table["accuracy"].between(0, 1).all()
    for f in ("sweep.jsonl", "sweep.csv", "pareto.png", "sweep.html"):
        assert (tmp_path / f).is_file(), f


# ---------------------------------------------------------------------------------------------
# what it found
# ---------------------------------------------------------------------------------------------
def test_a_batch_of_one_dimensional_inputs_counts_each_sample():
    """NeuMF takes a batch of user ids and one of item ids, each (B,): calibration cut them into
    samples along dimension 0, but a call counted a 1-D input as one sample, so
    ``n_inferences`` was 1 per call and every cost per inference B times too high. A call now
    counts B where the calibration gave the argument one dimension too; a batch costs per
    inference what its samples cost one by one."""
    model, (users, items) = _build("neumf")
    torch.manual_seed(3)
    users, items = torch.randint(0, 11, (6,)), torch.randint(0, 13, (6,))
    sim = _quiet(cimsim.deploy, model, _chip("rram-22nm"), (users, items), seed=0)
    sim(users, items)
    assert sim.n_inferences == 6
    batched = sim.report().totals["energy_pj_per_inference"]
    sim.reset()
    for i in range(6):
        sim(users[i:i + 1], items[i:i + 1])
    assert sim.n_inferences == 6
    # (a per-sample run converts a little differently: not 6 times, as it was)
    assert sim.report().totals["energy_pj_per_inference"] == pytest.approx(batched, rel=0.01)


def test_a_one_bit_input_chip_names_every_signed_layer_at_once():
    """Res2Net on ``published/jia-jssc20`` (1-b inputs): its stem, and ECA's and CBAM's
    convolutions in every block, take signed inputs. The refusal named the first only, so
    following its ``exclude=[...]`` refused the next, a deploy per layer; deploy and
    ``prepare`` name them all now, and with that list excluded the model maps and runs."""
    model, args = _build("res2net")
    chip = _chip("published/jia-jssc20")
    signed = ["stem.0", "layer.0.eca.conv", "layer.0.sa.conv", "layer.1.eca.conv",
              "layer.1.sa.conv"]
    for fn in (cimsim.deploy, prepare):
        with pytest.raises(SignedInputError, match=r"layers 'stem\.0', .*: input_bits = 1 "
                           r"cannot hold signed ") as refused:
            _quiet(fn, model, chip, args)
        assert str(refused.value).endswith(f"exclude={signed!r}")
    sim = _quiet(cimsim.deploy, model, chip, args, exclude=signed)
    assert [d[0] for d in sim.digital] == signed
    assert torch.isfinite(sim(*args)).all()


def test_a_one_bit_input_chip_names_every_attention_projection_at_once():
    """FT-Transformer on ``published/jia-jssc20``: each attention's four projections take
    signed inputs; the refusal stopped at a layer's first matrix, so ``q_proj``, then
    ``k_proj``, ``v_proj`` and ``out_proj`` took a deploy each. One refusal names them all,
    in deploy and in ``prepare``."""
    model, args = _build("ft-transformer")
    chip = _chip("published/jia-jssc20")
    for fn in (cimsim.deploy, prepare):
        with pytest.raises(SignedInputError) as refused:
            _quiet(fn, model, chip, args)
        names = list(refused.value.layers)
        assert sorted(names) == sorted(
            f"encoder.layers.{i}.{part}" for i in range(2)
            for part in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                         "self_attn.out_proj", "linear1", "linear2"))
        assert str(refused.value).endswith(f"exclude={names!r}")
    sim = _quiet(cimsim.deploy, model, chip, args, exclude=names)
    assert set(names) <= {d[0] for d in sim.digital}
    assert torch.isfinite(sim(*args)).all()

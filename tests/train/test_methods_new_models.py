"""The four papers' methods (PIM-QAT, ColumnQuant, RAOQ, BS-KMQ), distillation, LoRA and
BatchNorm calibration on the models of ``tests/mapping/test_new_models.py`` they were not
written for: each runs one optimiser step where it applies and deploys; where it cannot apply
the user gets an error or warning that names the reason (docs/training.md, "Methods on other
models")."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import ConfigError, MappingError
from cimsim.train import calibrate_bn, distill, prepare
from cimsim.train.bskmq import finetune_chip, fused_twins, prepare_bskmq, refit_chip_levels
from cimsim.train.columnquant import (
    columnquant_chip,
    columnquant_optimizer,
    deploy_columnquant,
    prepare_columnquant,
    psum_mse,
)
from cimsim.train.lora import add_lora, merge_lora
from cimsim.train.methods import parse_method
from cimsim.train.pimqat import pim_chip, prepare_pimqat
from cimsim.train.raoq import bitaug_loss, kurtosis_penalty, unshifted
from tests.conftest import bskmq_chip

from ..mapping.test_new_models import ZOO, BNDropout, Seq2Seq, _build, _encoder_data

ALL = [*ZOO, "seq2seq", "bn-cnn"]


def _model(name: str):
    """(model, inputs, batch_dim) in float64 (no float ties between twin and engine)."""
    if name == "seq2seq":
        torch.manual_seed(0)
        pad = torch.zeros(3, 5, dtype=torch.float64)
        pad[1, 3:] = float("-inf")
        args = (torch.randn(3, 5, 16), torch.randn(3, 4, 16))
        return Seq2Seq(True).eval().double(), (*(a.double() for a in args), pad), 0
    torch.manual_seed(0)
    if name == "bn-cnn":
        model = BNDropout().eval().double()
        with torch.no_grad():
            model.bn.running_mean.uniform_(-0.5, 0.5)
        return model, (torch.randn(4, 3, 8, 8, dtype=torch.float64),), 0
    return _build(name, torch.float64)


def _bskmq_chip() -> cimsim.ChipConfig:
    """A 3-bit layer-output ramp NL-ADC (tests/train/test_bskmq_chip.py's chip)."""
    return bskmq_chip()


def _loss(prep, args):
    out = prep(*args)
    return (out - torch.ones_like(out)).pow(2).mean()  # MSE against a fixed target


def _step(prep, args, opt=None, loss=None) -> None:
    params = [p for p in prep.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    opt = opt or torch.optim.SGD(params, lr=1e-2)
    prep.train()
    opt.zero_grad()
    (loss or _loss)(prep, args).backward()
    opt.step()
    prep.eval()
    assert any(not torch.equal(p, b) for p, b in zip(params, before, strict=True))


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the GPT's embedding is listed digital
        return fn(*a, **k)


# ---------------------------------------------------------------------------------------------
# Every method on every model: one step, then deploy (what the twin computes, the engine does)
# ---------------------------------------------------------------------------------------------
def _columnquant(model, args, bd, centre="none"):
    prep = _quiet(prepare_columnquant, model, columnquant_chip(psum_bits=4, array_size=64),
                  args, centre=centre, batch_dim=bd)
    _step(prep, args, columnquant_optimizer(prep))
    return prep, deploy_columnquant(prep, args)


def _columnquant_centre(model, args, bd):
    """LsqPsum's per-batch centre, frozen at deploy: the twin's mu ± n·sigma pre-clip stays in
    the twin (docs/columnquant.md), so the engine may differ where it binds."""
    return _columnquant(model, args, bd, centre="batch")


def _pimqat(model, args, bd, decomposition="native"):
    chip = pim_chip(decomposition, adc_bits=4, rows=16)
    prep = _quiet(prepare_pimqat, model, chip, args, batch_dim=bd)
    _step(prep, args)
    return prep, prep.deploy(batch_dim=bd)


def _pimqat_adjusted(model, args, bd):
    """Bit-serial, trained at 6 ADC bits, deployed at 3 with thermal noise: not the twin."""
    chip = pim_chip("bit-serial", adc_bits=3, rows=16, thermal_sigma_lsb=0.3)
    prep = _quiet(prepare_pimqat, model, chip, args, batch_dim=bd, train_adc_bits=6)
    _step(prep, args)
    return prep, prep.deploy(batch_dim=bd, chip=chip)


def _columnquant_ternary(model, args, bd):
    chip = columnquant_chip(psum_bits=4, array_size=64, encoding="ternary")
    prep = _quiet(prepare_columnquant, model, chip, args, batch_dim=bd, weight_scale="array")
    _step(prep, args, columnquant_optimizer(prep))
    return prep, prep.deploy(batch_dim=bd)


def _raoq(model, args, bd):
    chip = pim_chip("native", adc_bits=4, rows=16)
    chip = chip.replace(dac=chip.dac.replace(shift_unsigned_inputs=True))  # A-shift
    prep = _quiet(prepare, model, chip, args, batch_dim=bd)
    _quiet(add_lora, prep, 2)

    def loss(p, a):  # BitAug at 5 bits + W-reshape
        return bitaug_loss(p, lambda *b: _loss(p, b), a, [5]) + kurtosis_penalty(p)

    _step(prep, args, loss=loss)
    with torch.no_grad():
        before = prep(*args)
    merge_lora(prep)
    with torch.no_grad():
        torch.testing.assert_close(prep(*args), before, rtol=1e-12, atol=1e-12)
    return prep, prep.deploy(batch_dim=bd)


def _distill(model, args, bd):
    prep = _quiet(prepare, model, cimsim.load_chip("ideal"), args, batch_dim=bd)
    if isinstance(model, Seq2Seq):  # it used to be the model's TypeError inside the first step
        with pytest.raises(ConfigError, match=r"needs 3 inputs \(src, tgt, pad\); data gives 1"):
            distill(prep, model, args[0], progress=False)
        args = tuple(args)  # the three inputs, in order, as a tuple
    before = [p.detach().clone() for p in prep.parameters()]
    distill(prep, model, args if isinstance(model, Seq2Seq) else args[0], epochs=1,
            batch_size=2, progress=False)
    assert any(not torch.equal(p, b) for p, b in zip(prep.parameters(), before, strict=True))
    return prep, prep.deploy(batch_dim=bd)


METHODS = {"columnquant": _columnquant, "columnquant-centre": _columnquant_centre,
           "columnquant-ternary": _columnquant_ternary, "pim-qat": _pimqat,
           "pim-qat-differential": lambda m, a, bd: _pimqat(m, a, bd, "differential"),
           "pim-qat-adjusted": _pimqat_adjusted, "raoq+lora": _raoq, "distill": _distill}
NOT_THE_TWIN = ("columnquant-centre", "pim-qat-adjusted")


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name", ALL)
def test_method_steps_and_deploys_to_what_the_twin_computes(name, method):
    check_method(*_model(name), method)


def method_pairs(zoo) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(default, slow)`` (model, method) pairs of a zoo for the methods but distill: the
    default run takes every model once, the methods in turn (each on several models); the
    slow run every other pair."""
    methods = [m for m in METHODS if m != "distill"]
    fast = [(name, methods[i % len(methods)]) for i, name in enumerate(zoo)]
    return fast, [(n, m) for n in zoo for m in methods if (n, m) not in fast]


def flat_float64(build_zoo):
    """A zoo's ``_build(name, dtype)`` as the method tests take it: the model in float64
    (twins equal their deployed models there, no ties) with its outputs flattened into one
    tensor (the eleventh zoo's ``Flat``: the recipes' losses take one)."""
    from ..mapping.test_zoo11 import Flat

    def build(name: str):
        model, args = build_zoo(name, torch.float64)
        return Flat(model), args

    return build


def zoo_method_tests(zoo, build, distilled: list[str],
                     known: dict[tuple[str, str], str] | None = None):
    """A zoo's three method tests, from its model names, its ``build(name) -> (model, args)``
    (the first tensor's batch dimension 0) and the models distilled by default: every model
    once with the methods in turn, every other pair ``slow``
    (:func:`method_pairs`), and distillation. A zoo's file binds them to the names pytest
    collects, ``test_method_steps_and_deploys_to_what_the_twin_computes``,
    ``test_every_other_method_on_every_model`` and
    ``test_distill_from_the_float_model_steps_and_deploys_to_the_twin``. ``known``:
    (model, method) -> why the pair fails, as a strict xfail (it must keep failing)."""
    fast, slow = method_pairs(zoo)
    if known:
        fast, slow = ([pytest.param(*pair, marks=pytest.mark.xfail(strict=True,
                                                                     reason=known[pair]))
                       if pair in known else pair for pair in pairs] for pairs in (fast, slow))

    @pytest.mark.parametrize("name, method", fast)
    def steps(name, method):
        check_method(*build(name), 0, method)

    @pytest.mark.slow
    @pytest.mark.parametrize("name, method", slow)
    def every_other(name, method):
        check_method(*build(name), 0, method)

    @pytest.mark.parametrize("name", distilled)
    def distill(name):
        check_method(*build(name), 0, "distill")

    return steps, every_other, distill


def check_method(model, args, bd, method: str) -> None:
    """``METHODS[method]`` on a copy of ``model``: finite outputs of the twin's shape, equal to
    the eval twin's where the method deploys what its twin computes."""
    prep, sim = METHODS[method](copy.deepcopy(model), args, bd)
    with torch.no_grad():
        want = prep.eval()(*args)
    got = sim(*args)
    assert got.shape == want.shape and torch.isfinite(got).all()
    if method not in NOT_THE_TWIN:
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("name", ["audio-batchfirst", "weight-spectral-norm"])
def test_bskmq_steps_refits_and_deploys_where_a_relu_follows_a_layer(name):
    check_bskmq(*_model(name))


def check_bskmq(model, args, bd) -> None:
    """BS-KMQ: fused twins, one step, the levels refitted, deployed to what the twin computes."""
    prep = prepare_bskmq(model, _bskmq_chip(), args, batch_dim=bd)
    assert fused_twins(prep)
    _step(prep, args)
    nmse = refit_chip_levels(prep, args)
    assert set(nmse) == set(fused_twins(prep))
    with torch.no_grad():
        want = prep(*args)
    torch.testing.assert_close(prep.deploy(batch_dim=bd)(*args), want, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("name", ["encoder-seqfirst-postnorm", "gpt-tied-head", "convnext"])
def test_bskmq_without_a_fusable_relu_names_the_reason_and_the_layers(name):
    """It used to list the chip's settings as if they were wrong ('needs layer_output ...
    (chip: layer_output, True, calibrated)') without naming a layer."""
    model, args, bd = _model(name)
    with pytest.raises(ConfigError, match=r"chip is set for it.*GELU.*mapped layers: \w"):
        _quiet(prepare_bskmq, model, _bskmq_chip(), args, batch_dim=bd)


def test_bskmq_on_a_chip_without_a_fused_adc_names_the_setting():
    model, args, _ = _model("weight-spectral-norm")
    chip = _bskmq_chip()
    chip = chip.replace(adc=chip.adc.replace(placement="partial_sum"))
    with pytest.raises(ConfigError, match="adc.placement = .partial_sum."):
        prepare_bskmq(model, chip, args)


@pytest.mark.parametrize("run", ["deploy", "prepare"])
def test_a_layer_the_fused_adc_cannot_hold_is_named(run):
    """MobileNet's dilated conv (K = 72 > 64 rows) cannot have one conversion per output; the
    error came from inside programming and said 'this layer'."""
    model, args, _ = _model("mobilenet")
    fn = cimsim.deploy if run == "deploy" else prepare
    with pytest.raises(MappingError, match=r"^dilated: adc.placement = 'layer_output'"):
        fn(model, _bskmq_chip(), args)


# ---------------------------------------------------------------------------------------------
# The data passes after prepare take the model's inputs as prepare does
# ---------------------------------------------------------------------------------------------
def _record_inputs(module: nn.Module) -> list[tuple]:
    seen: list[tuple] = []
    module.register_forward_pre_hook(
        lambda _m, a: seen.append(tuple(t.shape if isinstance(t, torch.Tensor) else t
                                        for t in a)))
    return seen


def test_freeze_psum_cuts_a_sequence_first_batch_and_keeps_the_mask():
    """It took ``data[0]`` and cut it along dimension 0: a sequence-first encoder saw
    sequences cut along time, and its padding mask was dropped."""
    x, mask = _encoder_data(False)  # (S=5, B=3, 16), (B, S)
    model = ZOO["encoder-seqfirst-postnorm"][0]().eval()
    prep = prepare_columnquant(model, columnquant_chip(psum_bits=4, array_size=64), (x, mask),
                               centre="batch", batch_dim=1)
    seen = _record_inputs(prep.model)
    deploy_columnquant(prep, (x, mask))  # freezes the per-batch centre on these inputs
    assert seen == [(torch.Size([5, 3, 16]), torch.Size([3, 5]))]


def test_frozen_centre_on_a_two_input_transformer():
    """prepare_columnquant(centre='frozen') called the model with its first input only:
    nn.Transformer failed with a TypeError (its target missing)."""
    model, args, _ = _model("seq2seq")
    prep = prepare_columnquant(model, columnquant_chip(psum_bits=4, array_size=64), args,
                               centre="frozen")
    assert all(t.adc_hook.centre is not None for _, t in prep.twins())


class SeqFirstMLP(nn.Module):
    """(T, B, 12) -> (T, B, 3) with a ReLU the layer-output ADC can be, and a BatchNorm over
    the batch and time."""

    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3)
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x):
        h = self.fc2(self.act(self.fc1(x)))
        return self.bn(h.permute(1, 2, 0)).permute(2, 0, 1)


def test_refit_chip_levels_cuts_along_the_batch_dim():
    torch.manual_seed(0)
    model, x = SeqFirstMLP().double().eval(), torch.randn(6, 4, 12, dtype=torch.float64)
    prep = prepare_bskmq(model, _bskmq_chip(), x, batch_dim=1, batch_size=2)
    seen = _record_inputs(prep.model)
    refit_chip_levels(prep, x, batch_size=2)
    assert set(seen) == {(torch.Size([6, 2, 12]),)}  # whole sequences, 2 of the 4


def test_calibrate_bn_cuts_a_sequence_first_deployed_model_along_its_batch():
    torch.manual_seed(0)
    model, x = SeqFirstMLP().eval(), torch.randn(6, 4, 12)
    sim = cimsim.deploy(model, cimsim.load_chip("ideal"), x, batch_dim=1)
    seen = _record_inputs(sim)
    assert calibrate_bn(sim, x, batch_size=2) == 1
    assert set(seen) == {(torch.Size([6, 2, 12]),)}


def test_distill_cuts_a_sequence_first_model_along_its_batch():
    x, _ = _encoder_data(False, b=4)  # (S=5, B=4, 16)
    teacher = ZOO["encoder-seqfirst-postnorm"][0]().eval()
    prep = prepare(teacher, cimsim.load_chip("ideal"), x, batch_dim=1)
    seen = _record_inputs(teacher)
    distill(prep, teacher, x, epochs=1, batch_size=2, progress=False)
    assert set(seen) == {(torch.Size([5, 2, 16]),)}


# ---------------------------------------------------------------------------------------------
# Refusals and warnings where a method does not apply
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in ALL if n != "bn-cnn"])
def test_calibrate_bn_without_batchnorm_warns(name):
    """It returned 0 silently: PIM-QAT's BN calibration looked as if it had run."""
    model, args, bd = _model(name)
    sim = _quiet(cimsim.deploy, model, cimsim.load_chip("ideal"), args, batch_dim=bd)
    with pytest.warns(UserWarning, match="no BatchNorm.*nothing was calibrated"):
        assert calibrate_bn(sim, args[0]) == 0


def test_calibrate_bn_on_a_batchnorm_model_after_pim_qat():
    torch.manual_seed(0)
    model, x = BNDropout().double().eval(), torch.randn(8, 3, 8, 8, dtype=torch.float64)
    chip = pim_chip("native", adc_bits=3, rows=16)
    prep = prepare_pimqat(model, chip, x)
    _step(prep, (x,))
    sim = prep.deploy()
    mean0 = sim.model.bn.running_mean.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert calibrate_bn(sim, x) == 1
    assert not torch.equal(sim.model.bn.running_mean, mean0)


def test_lora_leaves_a_tied_head_without_adapter_and_merging_keeps_the_outputs():
    """The adapter merged into the head's weight, which is the embedding's: the embedding
    moved and the twin's outputs changed by 0.3 at the merge."""
    model, args, _ = _model("gpt-tied-head")
    prep = _quiet(prepare, model, cimsim.load_chip("ideal"), args)
    with pytest.warns(UserWarning, match=r"no adapter on head \(tied to emb.weight\)"):
        params = add_lora(prep, 2)
    assert params and getattr(prep.twin_layers["head"].matrices()[0], "lora", None) is None
    opt = torch.optim.SGD([p for p in prep.parameters() if p.requires_grad], lr=0.5)
    _step(prep, args, opt)
    with torch.no_grad():
        before = prep(*args)
    merge_lora(prep)
    with torch.no_grad():
        torch.testing.assert_close(prep(*args), before, rtol=1e-12, atol=1e-12)


def test_ternary_decomposition_and_psum_mse_on_a_two_input_transformer():
    """Option 3's ADC recalibration and psum_mse passed the first input only (TypeError)."""
    model, args, _ = _model("seq2seq")
    chip = columnquant_chip(psum_bits=4, array_size=64, encoding="ternary")
    prep = prepare_columnquant(model, chip, args)
    mse = psum_mse(prep, args)
    assert set(mse) - {"mean"} == {name for name, _ in prep.twins()}


# ---------------------------------------------------------------------------------------------
# cimsim train --method on a zoo model
# ---------------------------------------------------------------------------------------------
ZOO_MODULE = "tests.mapping.test_new_models"


def _npz(tmp_path, n_classes: int | None, shape=(12, 3, 16, 16)):
    import numpy as np

    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=shape).astype("float32")}
    if n_classes:
        data["y"] = rng.integers(0, n_classes, shape[0])
    np.savez(tmp_path / "d.npz", **data)
    return str(tmp_path / "d.npz")


def _train(tmp_path, model: str, data: str, *extra: str) -> int:
    from cimsim.cli import main

    return main(["train", "--model", f"{ZOO_MODULE}:{model}", "--data", data, "--epochs", "1",
                 "--batch-size", "4", "--calibration", "8", "--out", str(tmp_path / "out"),
                 *extra])


def test_cli_pim_qat_with_bn_calibration_on_a_zoo_model(tmp_path, capsys):
    assert _train(tmp_path, "BNDropout", _npz(tmp_path, 2, (12, 3, 8, 8)), "--chip", "ideal",
                  "--method", "pim-qat", "--bn-calibration", "8") == 0
    assert "BatchNorm calibrated on the deployed model: 1 modules" in capsys.readouterr().out
    assert _train(tmp_path, "BNDropout", _npz(tmp_path, 2, (12, 3, 8, 8)), "--chip", "ideal",
                  "--method", "pim-qat", "--bn-calibration", "8", "--bn-relative") == 0
    assert ("BatchNorm calibrated on the deployed model (relative to the twin): 1 modules"
            in capsys.readouterr().out)
    assert _train(tmp_path, "BNDropout", _npz(tmp_path, 2, (12, 3, 8, 8)), "--chip", "ideal",
                  "--method", "pim-qat", "--bn-relative") == 2
    assert "--bn-relative" in capsys.readouterr().err


def test_cli_labels_beyond_the_models_classes_are_one_line(tmp_path, capsys):
    """Labels 0..3 for a 2-class model failed with cross-entropy's IndexError traceback."""
    assert _train(tmp_path, "BNDropout", _npz(tmp_path, 4, (12, 3, 8, 8)), "--chip", "ideal",
                  "--method", "qat") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "label 3 is out of range" in err and "2 classes" in err


def test_cli_bitaug_on_a_24_bit_adc_says_which_option(tmp_path, capsys):
    """The ideal chip's 24-bit ADC made BitAug's default B+1 fail mid-step ('adc bits = 25')."""
    assert _train(tmp_path, "MobileBlock", _npz(tmp_path, 4), "--chip", "ideal",
                  "--method", "raoq") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "24-bit ADC" in err and "bitaug_bits" in err


def test_finetune_chip_cuts_a_sequence_first_model_along_its_batch():
    """The loop cut x along dimension 0: a sequence-first model trained on cuts of time."""
    torch.manual_seed(0)
    model, x = SeqFirstMLP().double().eval(), torch.randn(6, 4, 12, dtype=torch.float64)
    prep = prepare_bskmq(model, _bskmq_chip(), x, batch_dim=1)
    seen = _record_inputs(prep.model)
    y = torch.randn(4, 6, 3, dtype=torch.float64)  # batch-first targets
    finetune_chip(prep, (x, y), epochs=1, batch_size=2, refit=True, calibration=x,
                  loss_fn=lambda xb, yb: (prep(xb).transpose(0, 1) - yb).pow(2).mean())
    # training steps of 2 whole sequences, the refit of all 4 (its batch size: 256)
    assert set(seen) == {(torch.Size([6, 2, 12]),), (torch.Size([6, 4, 12]),)}


@pytest.mark.parametrize("name", ["encoder-batchfirst-prenorm", "convnext"])
def test_a_shift_names_the_matrices_it_leaves(name):
    """A-shift drives unsigned inputs shifted; a transformer's are mostly signed (LayerNorm,
    GELU): the recipe ran as if A-shift applied."""
    model, args, bd = _model(name)
    recipe = parse_method("qat+a-shift")
    prep = _quiet(prepare, model, recipe.chip(cimsim.load_chip("ideal")), args, batch_dim=bd)
    names = unshifted(prep)
    assert names and len(names) < len(list(prep.twins())) if name.startswith("encoder") \
        else names
    with pytest.warns(UserWarning, match=r"a-shift shifts unsigned .*inputs only.*signed \("):
        recipe.setup(prep, 1e-3)
    assert "linear2" not in " ".join(names)  # after the encoder's ReLU: shifted


def test_float_model_of_a_lora_twin_holds_what_the_adapters_learned():
    """float_model() took W0 alone: prepare_pimqat from a LoRA-trained twin (and any use of the
    float model) silently dropped the adapters."""
    model, args, _ = _model("convnext")
    prep = prepare(model, cimsim.load_chip("ideal"), args)
    add_lora(prep, 2)
    _step(prep, args, torch.optim.SGD([p for p in prep.parameters() if p.requires_grad], lr=0.5))
    (twin,) = prep.twin_layers["fc"].matrices()
    w0 = twin.weight.detach().clone()
    float_model = prep.float_model()
    torch.testing.assert_close(float_model.fc.weight, twin.effective_weight().detach())
    assert not torch.equal(float_model.fc.weight, w0) and torch.equal(twin.weight, w0)
    merge_lora(prep)
    torch.testing.assert_close(prep.float_model().fc.weight, float_model.fc.weight)

"""Training entry points refuse what cannot train, naming it, before any work (a hunt over the
training side, 2026-12-03): a diverged loss, bad epochs / rates / batch sizes / data in
``Recipe.fit`` and the loop, NumPy float64 inputs to ``distill``, option values found only in
the first step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.errors import ConfigError, MappingError
from cimsim.train import prepare
from cimsim.train.columnquant import columnquant_optimizer
from cimsim.train.distill import distill
from cimsim.train.methods import parse_method


def _setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    x, y = torch.randn(48, 16), torch.randint(0, 4, (48,))
    return model, prepare(model, "ideal", x), x, y


def _ce(prepared):
    return lambda x, y: F.cross_entropy(prepared(x), y)


def test_a_diverged_loss_stops_training_before_the_step():
    """A NaN loss stepped every parameter to NaN, wrote the checkpoint and failed at deploy
    on w_int = -2^63."""
    _, prepared, x, y = _setup()
    before = [p.detach().clone() for p in prepared.parameters()]
    recipe = parse_method("qat")
    with pytest.raises(ConfigError, match=r"training diverged: the loss is nan in epoch 1"):
        recipe.fit(prepared, lambda x, y: _ce(prepared)(x, y) * float("nan"), (x, y),
                   epochs=1, lr=1e-3)
    assert all(torch.equal(a, b) for a, b in zip(before, prepared.parameters(), strict=True))
    assert not prepared.training  # a failed fit leaves it in eval, as a finished one


@pytest.mark.parametrize("kw, message", [
    ({"epochs": 0}, "epochs = 0"), ({"lr": -1.0}, "lr = -1.0"), ({"lr": float("nan")}, "lr = nan"),
    ({"batch_size": -8}, "batch_size = -8"), ({"batch_size": 0}, "batch_size = 0"),
])
def test_recipe_fit_names_a_bad_argument(kw, message):
    _, prepared, x, y = _setup()
    args = {"epochs": 1, "lr": 1e-3, **kw}
    with pytest.raises(ConfigError, match=message):
        parse_method("qat").fit(prepared, _ce(prepared), (x, y), **args)


def test_recipe_fit_refuses_data_of_unequal_lengths_and_takes_numpy():
    _, prepared, x, y = _setup()
    with pytest.raises(ConfigError, match="differ in length"):
        parse_method("qat").fit(prepared, _ce(prepared), (x[:40], y), epochs=1, lr=1e-3)
    losses = parse_method("qat").fit(prepared, _ce(prepared), (x.numpy(), y.numpy()),
                                     epochs=1, lr=1e-3)
    assert len(losses) == 1 and np.isfinite(losses[0])


def test_distill_takes_numpy_float64_inputs():
    """NumPy's default float64 reached the float32 teacher unconverted."""
    model, prepared, x, _ = _setup()
    out = distill(prepared, model, x.double().numpy(), epochs=1, lr=1e-3, progress=False)
    assert len(out["loss"]) == 1 and np.isfinite(out["loss"][0])


def test_option_values_and_chips_a_method_cannot_use_are_refused_up_front():
    _, prepared, _, _ = _setup()
    with pytest.raises(ConfigError, match="kurtosis_target.*a kurtosis > 1"):
        parse_method("qat+w-reshape", {"kurtosis_target": "1"})
    ramp = cimsim.load_chip("ideal", overrides=["adc.kind=ramp", "adc.bits=4",
                                                 "adc.range_policy=calibrated"])
    with pytest.raises(ConfigError, match="bitaug needs a linear ADC"):
        parse_method("qat+bitaug").chip(ramp)
    with pytest.raises(ConfigError, match="lr = nan"):
        columnquant_optimizer(prepared, float("nan"))


def test_a_scale_below_the_normal_range_is_refused_and_trains_in_float64():
    """Calibration inputs of 1e-38 gave a float32 twin an activation scale of 4e-41, a
    subnormal: the forward ran and its gradient was NaN. ``prepare`` refuses it, naming the
    scale and the way out; in float64 the same data trains with finite gradients."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 4))
    x = torch.rand(32, 16) * 1e-38
    with pytest.raises(MappingError, match=r"activation scale .* smallest normal .*float64"):
        prepare(model, "rram-22nm", x, seed=0)
    twin = prepare(model.double(), "rram-22nm", x.double(), seed=0)
    twin(x.double()).pow(2).sum().backward()
    grads = [p.grad for p in twin.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)


@pytest.mark.parametrize("name, warns", [("act_scale", True), ("adc_step", True),
                                         ("weight_scale", False)])
def test_a_step_size_through_zero_is_warned_about_at_the_next_training_forward(name, warns):
    """docs/training.md's example (plain Adam at one rate) took small act scales and ADC steps
    through 0 in an epoch, unwarned: the input codes or conversions then saturate. Warned
    once per layer, naming param_groups (public, as the warning names it); a negative
    weight scale is the same quantizer as its magnitude and is not warned about."""
    import warnings

    from cimsim.train import param_groups

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    x = torch.randn(32, 8)
    prep = prepare(model, "rram-22nm", calibration=x, seed=0).train()
    assert param_groups(prep, lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prep(x)  # positive steps: nothing said
        param = getattr(prep.model[0].twins[0], name)
        with torch.no_grad():
            param.view(-1)[0] = -param.view(-1)[0]
        prep.eval()(x)  # eval mode: no check
    prep.train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prep(x)
        prep(x)
    said = [str(w.message) for w in caught if "went through 0" in str(w.message)]
    if warns:
        assert len(said) == 1 and f"its learned {name} went through 0" in said[0]
        assert "cimsim.train.param_groups(prepared, lr)" in said[0] and "'0'" in said[0]
    else:
        assert said == []


def test_calibrate_bn_on_a_deployed_model_leaves_its_report_alone():
    """The calibration pass of calibrate_bn(sim, ...) counted as inferences: 64 calibration
    inputs then 16 test inputs reported 80 inferences, the calibration in every figure."""
    from cimsim.train import calibrate_bn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    model.eval()
    x = torch.randn(64, 8)
    sim = cimsim.deploy(model, "rram-22nm", x)
    sim(x[:5])
    before = (sim.n_inferences, dict(sim.report().totals))
    assert calibrate_bn(sim, x) == 1
    assert (sim.n_inferences, dict(sim.report().totals)) == before
    sim(x[:16])
    assert sim.n_inferences == 21


def test_prepare_keeps_the_models_mode_and_distill_names_a_bad_seed():
    """prepare of an eval model gave a PreparedModel whose own flag said training (its layers
    in eval mode); distill(seed=-1) failed in NumPy, naming no argument."""
    model = nn.Sequential(nn.Linear(8, 4)).eval()
    x = torch.randn(16, 8)
    prep = prepare(model, "ideal", calibration=x)
    assert prep.training is False and not prep.model.training
    assert prepare(model.train(), "ideal", calibration=x).training is True
    with pytest.raises(ConfigError, match="seed = -1 is invalid"):
        distill(prep, model, x, seed=-1)


@pytest.mark.parametrize("call,message", [
    (lambda: _pim(adc_bits=4.5, rows=100), r"adc_bits = 4\.5 is invalid; allowed: an integer "
     r"in \[1, 24\]"),
    (lambda: _pim(adc_bits=4, rows=100.7), r"rows = 100\.7 is invalid; allowed: an integer "
     r"in \[1, 65536\]"),
    (lambda: _pim(adc_bits=4, rows=0), r"rows = 0 is invalid; allowed: an integer in "
     r"\[1, 65536\]"),
    (lambda: _pim(adc_bits=4, rows=128, weight_bits=1),
     r"weight_bits \(native: one cell holds its magnitude\) = 1 is invalid; allowed: an "
     r"integer in \[2, 8\]"),
    (lambda: _pim(adc_bits=4, rows=128, weight_bits=9, decomposition="differential"),
     r"weight_bits \(differential: .*\) = 9 is invalid"),
    (lambda: _cq(psum_bits=3.7), r"psum_bits = 3\.7 is invalid; allowed: an integer in "
     r"\[1, 24\]"),
])
def test_method_chips_refuse_non_integer_and_out_of_range_arguments_by_their_names(
        call, message):
    """pim_chip / columnquant_chip cut 4.5 bits to 4 and 100.7 rows to 100 while the chip's
    name kept 'adc4.5'/'r100.7'; weight_bits = 1 was refused as bits_per_cell = 0, and rows = 0
    as rows_per_conversion with a wrong upper bound."""
    with pytest.raises(ConfigError, match=message):
        call()


def _pim(decomposition="native", **kw):
    from cimsim.train.pimqat import pim_chip

    return pim_chip(decomposition, **kw)


def _cq(**kw):
    from cimsim.train.columnquant import columnquant_chip

    return columnquant_chip(**kw)


@pytest.mark.filterwarnings("ignore:PIM-QAT")  # a tiny model's slopes: not what is tested
def test_method_chips_and_bits_accept_numpy_integers():
    """A loop over np.arange(...) of bits: refused as 'allowed: an integer' (np.int64(5))."""
    from cimsim.train.lora import add_lora
    from cimsim.train.pimqat import prepare_pimqat
    from cimsim.train.raoq import adc_bits

    chip = _pim(adc_bits=np.int64(5), rows=np.int64(64), weight_bits=np.int64(4))
    assert chip.name == "pim-native-r64-adc5" and chip.adc.bits == 5
    assert _cq(psum_bits=np.int64(3)).adc.bits == 3
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    x = torch.randn(16, 16)
    full = cimsim.load_chip("ideal")
    full = full.replace(adc=full.adc.replace(bits=8, range_policy="full_scale"))
    prepared = prepare_pimqat(model, full, x, train_adc_bits=np.int64(5))
    assert len(add_lora(prepared, np.int64(2))) > 0
    with adc_bits(prepared, np.int64(6)):
        assert prepared(x).shape == (16, 4)

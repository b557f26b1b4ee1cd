"""Issue 12, deliverable 5: BS-KMQ fine-tuning on the chip, the training twin of a chip whose
layer-output ramp NL-ADC is fused with the ReLU (``adc.fuse_activation``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.errors import ConfigError, MappingError
from cimsim.train import prepare
from cimsim.train.bskmq import finetune_chip, fused_twins, prepare_bskmq, refit_chip_levels
from cimsim.train.twin import FusedReLU
from tests.conftest import bskmq_chip


def _chip(weight_bits=4, bits=3, level_fit="bs_kmq", granularity="layer", **device):
    """One conversion per output: all input bits at once, the differential weight in one cell
    (weight_bits - 1 magnitude bits), K <= 64 rows; ideal cells unless ``device`` says."""
    return bskmq_chip(weight_bits, bits, level_fit, granularity, **device)


def _mlp(dtype=torch.float64, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Linear(16, 3)).to(dtype)


def _data(seed: int, m: int, dtype=torch.float64) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(m, 12))).to(dtype)


def _labels(x: torch.Tensor) -> torch.Tensor:
    return (x[:, :3].sum(dim=1) > 0).long() + (x[:, 3] > 0.5).long()


@pytest.mark.parametrize("level_fit", ["uniform", "kmeans", "bs_kmq"])
def test_twin_is_the_deployed_fused_chip_exactly_on_a_lossless_chip(level_fit):
    model, x_cal, x = _mlp(), _data(0, 300), _data(1, 200)
    chip = _chip(level_fit=level_fit, granularity="column")
    prepared = prepare(model, chip, x_cal).eval()
    assert set(fused_twins(prepared)) == {"0", "2"}  # the logits layer has no ReLU after it
    sim = prepared.deploy()
    assert sim.fused_activations == ["0", "2"]
    with torch.no_grad():
        y_twin = prepared(x).numpy()
    np.testing.assert_allclose(sim(x).numpy(), y_twin, rtol=1e-12, atol=1e-12)
    # before training the twin is cimsim.deploy's chip: the same levels, fitted in one place
    np.testing.assert_allclose(cimsim.deploy(model, chip, x_cal)(x).numpy(), y_twin,
                               rtol=1e-12, atol=1e-12)
    # the fused layer outputs the levels themselves: 2^bits values per output at most
    with torch.no_grad():
        h = prepared.model[0](x)
    assert h.min() >= 0 and max(len(torch.unique(h[:, j])) for j in range(16)) <= 8


def test_twin_matches_deploy_on_99_percent_with_variation_float32():
    model, x_cal, x = _mlp(torch.float32), _data(0, 300, torch.float32), \
        _data(1, 300, torch.float32)
    chip = _chip(variation="lognormal", variation_sigma=0.05)
    prepared = prepare(model, chip, x_cal).eval()
    with torch.no_grad():
        y_twin = prepared(x).double().numpy()
    y_sim = prepared.deploy()(x).numpy()
    same = np.isclose(y_sim, y_twin, rtol=1e-5, atol=1e-5)
    assert same.mean() >= 0.99


def test_the_relu_after_a_fused_layer_is_not_applied_twice():
    model, x_cal, x = _mlp(), _data(0, 300), _data(1, 64)
    prepared = prepare_bskmq(model, _chip(), x_cal)
    assert isinstance(prepared.model[1], FusedReLU) and isinstance(prepared.model[3], FusedReLU)
    # the float model (and so the deployed one) keeps the model's own ReLUs
    float_model = prepared.float_model()
    assert isinstance(float_model[1], nn.ReLU) and isinstance(float_model[3], nn.ReLU)
    # value: the fused layer's output goes on unchanged; gradient: an output quantized to an
    # exact 0 still passes the downstream gradient (a second ReLU would stop it there)
    kept: list[torch.Tensor] = []

    def keep(_m, _i, out):
        out.retain_grad()
        kept.append(out)

    handle = prepared.model[0].register_forward_hook(keep)
    prepared.eval()
    out = prepared(x)
    handle.remove()
    h = kept[0]
    assert torch.equal(prepared.model[1](h), h)
    out.sum().backward()
    assert h.grad is not None
    zeros = h.detach() == 0
    assert zeros.any() and (h.grad[zeros] != 0).any()
    # the straight-through estimator: gradient 1 inside [0, a_max], 0 below 0
    twin = fused_twins(prepared)["0"]
    y, raw = twin.pre_activation(x)
    y = y.detach().requires_grad_(True)
    twin._activation_out(y, raw).sum().backward()
    a_max = twin._act_max
    inside = (y.detach() > 0) & (y.detach() < a_max)
    assert y.grad is not None
    assert torch.all(y.grad[inside] == 1) and torch.all(y.grad[y.detach() < 0] == 0)


def test_frozen_levels_stay_and_refit_levels_change_after_an_epoch():
    model, x_cal, x = _mlp(), _data(0, 300), _data(2, 256)
    data = (x, _labels(x))
    frozen = prepare_bskmq(model, _chip(), x_cal)
    before = {n: t.activation_levels() for n, t in fused_twins(frozen).items()}
    hist = finetune_chip(frozen, data, epochs=1, lr=1e-2, batch_size=32)
    assert hist["refit_nmse"] == []
    for name, twin in fused_twins(frozen).items():
        after = twin.activation_levels()
        assert np.array_equal(after.levels, before[name].levels)
        assert np.array_equal(after.thresholds, before[name].thresholds)
    refit = prepare_bskmq(model, _chip(), x_cal)
    hist = finetune_chip(refit, data, epochs=1, lr=1e-2, batch_size=32, refit=True,
                         calibration=x_cal)
    assert len(hist["refit_nmse"]) == 1 and set(hist["refit_nmse"][0]) == {"0", "2"}
    assert any(not np.array_equal(t.activation_levels().levels, before[n].levels)
               for n, t in fused_twins(refit).items())
    # deploy hands the refit levels to the engine: the deployed chip is the twin
    refit.eval()
    with torch.no_grad():
        y_twin = refit(x).numpy()
    np.testing.assert_allclose(refit.deploy()(x).numpy(), y_twin, rtol=1e-12, atol=1e-12)


def test_refit_uses_the_fitter_asked_for():
    model, x_cal = _mlp(), _data(0, 300)
    prepared = prepare_bskmq(model, _chip(level_fit="uniform"), x_cal)
    refit_chip_levels(prepared, x_cal, method="uniform")
    uni = fused_twins(prepared)["0"].activation_levels()
    # uniform levels: equally spaced from 0 to a_max
    np.testing.assert_allclose(np.diff(uni.levels[0]), uni.a_max[0] / 7, rtol=1e-9)
    refit_chip_levels(prepared, x_cal, method="kmeans_optimal")
    assert not np.allclose(np.diff(fused_twins(prepared)["0"].activation_levels().levels[0]),
                           uni.a_max[0] / 7)


def test_a_few_finetuning_steps_lower_the_loss():
    model, x_cal, x = _mlp(), _data(0, 300), _data(3, 512)
    y = _labels(x)
    prepared = prepare_bskmq(model, _chip(weight_bits=4, bits=2), x_cal)
    prepared.eval()
    with torch.no_grad():
        loss0 = float(F.cross_entropy(prepared(x), y))
    finetune_chip(prepared, (x, y), epochs=3, lr=1e-2, batch_size=64, seed=0)
    with torch.no_grad():
        loss1 = float(F.cross_entropy(prepared(x), y))
    assert loss1 < loss0


def test_bad_fitter_name_is_a_config_error():
    model, x_cal = _mlp(), _data(0, 300)
    with pytest.raises(ConfigError, match="level_fit"):
        prepare_bskmq(model, _chip(), x_cal, level_fit="kmeanz")
    prepared = prepare_bskmq(model, _chip(), x_cal)
    with pytest.raises(ConfigError, match="kmeanz"):
        refit_chip_levels(prepared, x_cal, method="kmeanz")


def test_prepare_bskmq_refuses_a_chip_without_a_fused_adc():
    chip = _chip()
    chip = chip.replace(adc=chip.adc.replace(fuse_activation=False))
    with pytest.raises(ConfigError, match="fuse_activation"):
        prepare_bskmq(_mlp(), chip, _data(0, 100))


def test_bs_kmq_without_suppression_refits_with_the_parameters():
    model, x_cal = _mlp(), _data(0, 300)
    plain = prepare_bskmq(model, _chip(), x_cal, params={"min_mass": 1.0})
    exact = prepare_bskmq(model, _chip(level_fit="kmeans_optimal"), x_cal)
    refit_chip_levels(exact, x_cal)
    # BS-KMQ with nothing suppressed is exact K-means on the same samples
    for name, twin in fused_twins(plain).items():
        np.testing.assert_allclose(twin.activation_levels().levels,
                                   fused_twins(exact)[name].activation_levels().levels,
                                   rtol=1e-9, atol=1e-12)


def test_refit_is_deploys_simulated_calibration_on_the_fused_layers():
    """Refitting on the chip's own activations (layer by layer) is what deploy does with
    ``adc.calibration_mode = 'simulated'``: the same levels on every fused layer."""
    model, x_cal = _mlp(), _data(0, 300)
    chip = _chip(level_fit="kmeans")
    chip = chip.replace(adc=chip.adc.replace(calibration_mode="simulated"))
    prepared = prepare_bskmq(model, chip, x_cal)
    refit_chip_levels(prepared, x_cal)
    ours, theirs = prepared.deploy(), cimsim.deploy(model, chip, x_cal)
    for name in ("0", "2"):
        a = ours.sim_layers[name].cores[0].view.parts[0][2].adc
        b = theirs.sim_layers[name].cores[0].view.parts[0][2].adc
        np.testing.assert_allclose(a.lvl, b.lvl, rtol=1e-9)
        np.testing.assert_allclose(a.thr, b.thr, rtol=1e-9)


def test_a_scale_trained_through_zero_is_named_at_deploy():
    """A fused ADC cannot hold a non-positive output scale; the refusal said only "see the
    warning" (whose kappa the user never set), not which learned scale went through 0."""
    prepared = prepare(_mlp(), _chip(), _data(0, 64))
    scale = next(p for n, p in prepared.named_parameters() if n.endswith("weight_scale"))
    with torch.no_grad():
        scale.neg_()
    with pytest.raises(MappingError,
                       match=r"weight_scale \(16 of 16 values <= 0\) went through 0"):
        prepared.deploy()


def test_a_scale_trained_through_zero_warns_at_the_step_it_happens():
    """The twin kept training and evaluating that state without a word; the run was lost
    only at the hand-back. The first forward after the step warns, once, naming the fix."""
    prepared = prepare(_mlp(), _chip(), _data(0, 64))
    x = _data(1, 16)
    prepared(x)  # positive scales: no warning
    scale = next(p for n, p in prepared.named_parameters() if n.endswith("weight_scale"))
    with torch.no_grad():
        scale[..., 0] = -scale[..., 0]
    with pytest.warns(UserWarning, match=r"went through 0.*param_groups"):
        prepared(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepared(x)  # once per layer


def test_a_chip_fitting_other_levels_is_named_unless_the_fitter_is_chosen():
    """``adc.level_fit`` defaults to 'uniform': BS-KMQ on such a chip trained uniform levels
    without a word (the CLI's example settings named no fitter). Warned, naming the setting;
    a fitter passed (or the chip's own bs_kmq) is what was meant."""
    model, x_cal = _mlp(), _data(0, 100)
    with pytest.warns(UserWarning, match=r"adc.level_fit = 'uniform'.*level_fit='bs_kmq'"):
        prepared = prepare_bskmq(model, _chip(level_fit="uniform"), x_cal)
    assert prepared.chip.adc.level_fit.value == "uniform"
    for chip, fit in ((_chip(level_fit="uniform"), "kmeans"), (_chip(), None)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            prepared = prepare_bskmq(model, chip, x_cal, level_fit=fit)
        assert prepared.chip.adc.level_fit.value == (fit or "bs_kmq")

"""The twin trains for asymmetric activations (``quant.act_zero_point``: codes
``clip(round(x / s_x) + z, 0, 2^B - 1)``, the exact correction ``-z·Σ w_int`` after the ADCs)
and SmoothQuant's per-channel factors (``quant.smooth_alpha``: inputs divided, weights
multiplied), both fixed at calibration as deploy fixes them, so that the eval twin is the
deployed chip: bit for bit on a lossless chip, before and after training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.errors import ConfigError
from cimsim.train import prepare
from cimsim.train.loop import param_groups
from cimsim.train.raoq import unshifted
from cimsim.train.ternary import make_ternary
from tests.conftest import ideal_chip

CASES = [(True, None), (False, 0.5), (True, 0.8)]
"""(act_zero_point, smooth_alpha)."""


def _chip(lossy: bool, zero_point: bool, alpha: float | None, calibration: str = "max"):
    extra = (dict(adc=dict(bits=6, range_policy="calibrated", calibration_granularity="column"),
                  variation="lognormal", variation_sigma=0.1, on_off_ratio=20.0)
             if lossy else {})
    chip = ideal_chip(n_rows=8, input_bits=5, weight_bits=5, **extra)
    return chip.replace(quant=chip.quant.replace(act_zero_point=zero_point, smooth_alpha=alpha,
                                                 act_calibration=calibration))


def _model():
    torch.manual_seed(0)
    # signed inputs everywhere (a shifted Gaussian, GELU, Tanh): the zero points are not 0
    return nn.Sequential(nn.Linear(20, 9), nn.GELU(), nn.Linear(9, 6), nn.Tanh(),
                         nn.Linear(6, 3)).double()


def _x():
    g = torch.Generator().manual_seed(1)
    return torch.randn(64, 20, generator=g, dtype=torch.float64) * 2.0 + 0.7


def _agree(prep, x, lossy: bool) -> float:
    y_twin = prep.eval()(x).detach().numpy()
    y_sim = prep.deploy()(x).numpy()
    if lossy:  # float ties of the engine's float32 conductances aside
        return np.isclose(y_sim, y_twin, rtol=1e-9, atol=1e-9).mean()
    return (y_sim == y_twin).mean()


def _train(prep, x, steps: int = 5):
    opt = torch.optim.Adam(param_groups(prep, 1e-2))
    target = torch.randint(0, 3, (x.shape[0],), generator=torch.Generator().manual_seed(2))
    prep.train()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(prep(x), target).backward()
        opt.step()


@pytest.mark.parametrize("calibration", ["max", "percentile", "mse"])
@pytest.mark.parametrize("lossy", [False, True])
@pytest.mark.parametrize("zero_point,alpha", CASES)
def test_eval_twin_is_the_deployed_chip_before_and_after_training(zero_point, alpha, lossy,
                                                                   calibration):
    chip = _chip(lossy, zero_point, alpha, calibration)
    x = _x()
    prep = prepare(_model(), chip, x, seed=1)
    need = 0.99 if lossy else 1.0
    sim = cimsim.deploy(_model(), chip, x, seed=1)
    y_twin = prep.eval()(x).detach().numpy()
    assert (np.isclose(sim(x).numpy(), y_twin, rtol=1e-9, atol=1e-9) if lossy
            else sim(x).numpy() == y_twin).mean() >= need
    # the twin holds deploy's zero points and factors
    deployed = {c.name: c.view for layer in sim.sim_layers.values() for c in layer.cores}
    for name, twin in prep.twins():
        view = deployed[name]
        assert twin.zero_point == view.zero_point
        if alpha is None:
            assert view.smooth is None and twin._smooth is None
        else:
            np.testing.assert_array_equal(twin.to_engine().smooth, view.smooth)
    if zero_point:
        assert any(t.zero_point > 0 for _, t in prep.twins())
    _train(prep, x)
    assert all(t.act_scale.grad is not None and t.weight.grad is not None
               for _, t in prep.twins())
    assert _agree(prep, x, lossy) >= need


@pytest.mark.parametrize("zero_point,alpha", CASES)
def test_the_float_model_handed_back_holds_unsmoothed_weights(zero_point, alpha):
    """The twin learns the layer's own weights; the factors multiply them on the way to the
    quantizer only, so ``float_model()`` is the float model (before training, exactly)."""
    x = _x()
    model = _model()
    prep = prepare(model, _chip(False, zero_point, alpha), x, seed=1)
    back = prep.float_model()
    for p, q in zip(model.parameters(), back.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_codes_are_deploys_with_the_zero_point_and_factors():
    chip = _chip(False, True, 0.5)
    x = _x()
    sim = cimsim.deploy(_model(), chip, x, seed=1)
    prep = prepare(_model(), chip, x, seed=1)
    twin = dict(prep.twins())["0"]
    view = next(c.view for layer in sim.sim_layers.values() for c in layer.cores
                if c.name == "0")
    codes = twin.quantize_input(x).numpy()
    np.testing.assert_array_equal(codes, view.quantize(x.numpy()))
    assert codes.min() >= 0 and codes.max() <= 2**chip.input_bits - 1


def test_a_zero_point_is_not_the_a_shift():
    """RAOQ's A-shift drives unsigned codes shifted to signed (a negative zero point); an
    asymmetric quantizer's zero point is positive, and its layers are not A-shifted."""
    x = _x()
    prep = prepare(_model(), _chip(False, True, None), x, seed=1)
    assert sorted(unshifted(prep)) == sorted(name for name, _ in prep.twins())


@pytest.mark.parametrize("zero_point,alpha,field", [(True, None, "quant.act_zero_point"),
                                                    (False, 0.5, "quant.smooth_alpha")])
def test_columnquants_ternary_decomposition_refuses_them_by_name(zero_point, alpha, field):
    chip = _chip(False, zero_point, alpha)
    chip = chip.replace(weight_encoding="ternary",
                        device=chip.device.replace(bits_per_cell=1))
    x = _x()
    prep = prepare(_model(), chip, x, seed=1)
    twin = next(t for _, t in prep.twins())
    with pytest.raises(ConfigError, match=field):
        make_ternary(twin, "column")


def test_lora_on_a_smoothed_twin_merges_and_hands_back_its_own_weights():
    """LoRA's merge and ``float_model()`` take the layer's own weights (W0 + ΔW), not the
    smoothed ones the quantizer sees: a merge that baked the factors in smoothed twice."""
    from cimsim.train.lora import add_lora, lora_parameters, merge_lora

    x = _x()
    prep = prepare(_model(), _chip(False, True, 0.5), x, seed=1)
    add_lora(prep, rank=2, alpha=4.0, seed=1)
    opt = torch.optim.Adam(lora_parameters(prep), lr=1e-2)
    prep.train()
    for _ in range(3):
        opt.zero_grad()
        prep(x).square().mean().backward()
        opt.step()
    twins = dict(prep.twins())
    want = {name: t.float_weight().detach().clone() for name, t in twins.items()}
    assert any(not torch.equal(want[name], t.weight) for name, t in twins.items())
    back = prep.float_model()
    for name, w in want.items():
        torch.testing.assert_close(back.get_submodule(name).weight, w, rtol=0, atol=0)
    y = prep.eval()(x).detach()
    merge_lora(prep)
    for name, t in prep.twins():
        torch.testing.assert_close(t.weight.detach(), want[name], rtol=0, atol=0)
    torch.testing.assert_close(prep.eval()(x).detach(), y, rtol=0, atol=0)

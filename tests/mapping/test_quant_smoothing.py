"""Per-input-channel smoothing folded into the weights (``QuantConfig.smooth_alpha``,
SmoothQuant, Xiao et al. ICML 2023; issue 10 item 2): the factors from the spec, exact on
the lossless chip against an integer re-implementation, float-equivalent up to quantization
error, and lower error on a layer with an outlier input channel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.config import ChipConfig
from cimsim.mapping.quant import smooth_factors

from .conftest import act_bounds, assert_bitwise, lossless_chip, ref_weight_quant


def smooth_chip(chip: ChipConfig, alpha: float = 0.5, **quant) -> ChipConfig:
    return chip.replace(quant=chip.quant.replace(smooth_alpha=alpha, **quant))


def test_smooth_factors_by_hand():
    x_max = np.array([4.0, 1.0, 0.0, 9.0])
    w = np.array([[1.0, -0.25, 3.0, 0.0],
                  [-2.0, 0.5, 1.0, 0.0]])
    got = smooth_factors(x_max, w, 0.5)
    # sqrt(4)/sqrt(2), sqrt(1)/sqrt(0.5); a silent channel and a channel without weights: 1
    assert np.allclose(got, [np.sqrt(2.0), np.sqrt(2.0), 1.0, 1.0])
    assert np.allclose(smooth_factors(x_max, w, 1.0), [4.0, 1.0, 1.0, 1.0])
    assert np.allclose(smooth_factors(x_max, w, 0.0), [0.5, 2.0, 1.0, 1.0])


def outlier_inputs(m: int, k: int, channel: int = 3, gain: float = 40.0) -> torch.Tensor:
    """LayerNorm-like inputs with one channel whose magnitude is ``gain`` times the others'
    (the systematic outlier channels of transformer activations)."""
    x = torch.randn(m, k)
    x[:, channel] *= gain
    return x


def ref_linear_smooth(lin: nn.Linear, x_cal: torch.Tensor, x: torch.Tensor, chip: ChipConfig,
                      row_tiles: list[tuple[int, int]], alpha: float) -> torch.Tensor:
    """The smoothed quantized layer from the spec: s_k = max|X_k|^α / max|W_k|^(1-α),
    W' = W·s quantized as usual, x' = x / s quantized per tensor with max|x'|, int64 product."""
    w = lin.weight.detach().to(torch.float64)
    xc = x_cal.to(torch.float64)
    xm, wm = xc.abs().amax(dim=0), w.abs().amax(dim=0)
    s = torch.where((xm > 0) & (wm > 0), xm**alpha / wm ** (1 - alpha), torch.ones_like(xm))
    xs_cal = xc / s
    signed = bool(xs_cal.min() < 0)
    lo, hi = act_bounds(chip.input_bits, signed)
    s_x = float(xs_cal.abs().max()) / hi
    x_int = torch.round(x.to(torch.float64) / s / s_x).clamp(lo, hi).to(torch.int64)
    w_int, s_w = ref_weight_quant(w * s, chip.weight_bits, chip.quant.weight_granularity.value,
                                  row_tiles)
    tiles = row_tiles if s_w.shape[0] > 1 else [(0, w_int.shape[1])]
    y = torch.zeros(x.shape[0], w_int.shape[0], dtype=torch.float64)
    for t, (a, b) in enumerate(tiles):
        y = y + (x_int[:, a:b] @ w_int[:, a:b].T).to(torch.float64) * (s_x * s_w[t])
    return (y + lin.bias.detach().to(torch.float64)).to(x.dtype)


@pytest.mark.parametrize("granularity", ["tensor", "channel", "column"])
@pytest.mark.parametrize("alpha", [0.5, 0.8])
def test_smoothing_exact_on_lossless_chip(granularity, alpha):
    chip = smooth_chip(lossless_chip(granularity), alpha)
    lin = nn.Linear(80, 24)
    x_cal = outlier_inputs(300, 80)
    x = outlier_inputs(40, 80)
    sim = cimsim.deploy(lin, chip, calibration=x_cal, seed=0)
    (core,) = next(iter(sim.sim_layers.values())).cores
    assert_bitwise(sim(x), ref_linear_smooth(lin, x_cal, x, chip, core.row_tiles, alpha))


def _rel_err(model: nn.Module, chip: ChipConfig, x: torch.Tensor) -> float:
    sim = cimsim.deploy(model, chip, calibration=x, seed=0)
    with torch.no_grad():
        want, got = model(x).double(), sim(x).double()
    return float((got - want).norm() / want.norm())


def test_smoothing_matches_float_model_to_quantization_error():
    """Float-exact migration: with 16-bit operands the smoothed layer equals the float one to
    the 16-bit quantization error (the migration itself adds none)."""
    chip = cimsim.load_chip("ideal").replace(weight_bits=16, input_bits=16)
    lin = nn.Linear(48, 20)
    x = outlier_inputs(200, 48)
    assert _rel_err(lin, smooth_chip(chip), x) < 1e-4


def test_smoothing_lowers_error_with_an_outlier_channel():
    lin = nn.Linear(64, 32)
    x = outlier_inputs(400, 64)
    chip = cimsim.load_chip("ideal")
    base = _rel_err(lin, chip, x)
    smooth = _rel_err(lin, smooth_chip(chip), x)
    assert smooth < 0.5 * base, (smooth, base)


def test_smoothing_with_zero_point_exact_and_better():
    """Both options together: still the integer product of the smoothed, zero-pointed operands
    (close to float), and better than either alone on skewed inputs with an outlier channel."""
    lin = nn.Linear(64, 32)
    x = outlier_inputs(400, 64) + 1.5  # skewed: mostly positive
    chip = cimsim.load_chip("ideal")
    both = chip.replace(quant=chip.quant.replace(smooth_alpha=0.5, act_zero_point=True))
    base = _rel_err(lin, chip, x)
    assert _rel_err(lin, both, x) < 0.5 * base

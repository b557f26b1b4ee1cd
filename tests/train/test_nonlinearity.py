"""The twin trains through a column non-linearity (``noise.nonlinearity``: saturating,
polynomial, IR drop): every column's current goes through ``f`` before noise and the ADC, as the
engine computes it (an analog differential pair's two columns each through ``f``, then
subtracted), so that the eval twin is the deployed chip; the straight-through gradient follows
the slope ``f'`` at each conversion's value."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.arrays.analog import NL_CODES, column_nonlinearity, column_nonlinearity_slope
from cimsim.config import Nonlinearity
from cimsim.train import prepare
from cimsim.train.loop import param_groups
from cimsim.train.twin import TwinMatmul, _ChipProduct
from tests.conftest import ENCODINGS, ideal_chip

SHAPES = {
    "saturating": dict(saturation_fraction=0.05),
    "polynomial": dict(poly_coeffs=(0.4, -3.0)),
    "ir_drop": dict(ir_drop_beta=8.0),
}
"""Strong enough to bend the currents of these small layers (their columns sit far below the
full scale ``column_fs`` of every row at the largest input and digit)."""


def _chip(kind: str, encoding: str = "differential", readout: str = "analog",
          variation: str = "lognormal", on_off: float = 20.0):
    chip = ideal_chip(encoding=encoding, bits_per_cell=2, input_bits=4, weight_bits=5,
                      n_rows=12, n_cols=32, rows_per_conversion=6, variation=variation,
                      variation_sigma=0.1 if variation != "none" else 0.0,
                      on_off_ratio=on_off if encoding != "signed_cell" else float("inf"),
                      adc=dict(bits=6, range_policy="calibrated",
                               calibration_granularity="column"),
                      noise=dict(nonlinearity=kind, **SHAPES[kind]))
    return chip.replace(differential_readout=readout)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 7), nn.ReLU(), nn.Linear(7, 3)).double()


def _agree(prep, x):
    """Share of outputs where the eval twin equals the deployed chip (float ties of the
    engine's float32 conductances aside)."""
    y_twin = prep.eval()(x).detach().numpy()
    return np.isclose(prep.deploy()(x).numpy(), y_twin, rtol=1e-9, atol=1e-9).mean()


@pytest.mark.parametrize("kind", sorted(SHAPES))
@pytest.mark.parametrize("encoding,readout", [(e, "digital") for e in ENCODINGS]
                         + [("differential", "analog")])
def test_eval_twin_is_the_deployed_chip(kind, encoding, readout):
    chip = _chip(kind, encoding, readout)
    x = torch.randn(64, 20, dtype=torch.float64)
    prep = prepare(_model(), chip, x, seed=3)
    assert _agree(prep, x) >= 0.99
    # the non-linearity matters: the same twin on the linear chip computes something else
    linear = chip.replace(noise=chip.noise.replace(nonlinearity="none"))
    with torch.no_grad():
        bent, straight = prep.eval()(x), prepare(_model(), linear, x, seed=3).eval()(x)
    assert not torch.allclose(bent, straight, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_nominal_cells_and_analog_pairs_off_current(kind):
    """Nominal devices (no variation) with an off-state current: a pair's off-currents no
    longer cancel inside ``f``, each column carries its own."""
    chip = _chip(kind, variation="none", on_off=5.0)
    x = torch.randn(64, 20, dtype=torch.float64)
    prep = prepare(_model(), chip, x, seed=3)
    assert all(t.devices == "nominal" and t.split_pairs and t.has_off for _, t in prep.twins())
    assert _agree(prep, x) >= 0.99


@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_training_through_the_nonlinearity_keeps_the_twin_the_chip(kind):
    chip = _chip(kind)
    x = torch.randn(64, 20, dtype=torch.float64)
    target = torch.randint(0, 3, (64,))
    prep = prepare(_model(), chip, x, seed=3)
    opt = torch.optim.Adam(param_groups(prep, 1e-2))
    losses = []
    prep.train()
    for _ in range(6):
        opt.zero_grad()
        loss = F.cross_entropy(prep(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert _agree(prep, x) >= 0.99


def _f(kind: str, a: torch.Tensor, fs: float, slope: bool = False) -> torch.Tensor:
    n = cimsim.load_chip("ideal").noise.replace(nonlinearity=kind, **SHAPES[kind])
    fn = column_nonlinearity_slope if slope else column_nonlinearity
    return fn(a, NL_CODES[Nonlinearity(kind)], fs, n.saturation_fraction, n.ir_drop_beta,
              n.poly_coeffs, xp=torch)


def _product_grads(chip, w_int: torch.Tensor, x_int: torch.Tensor):
    """``_ChipProduct``'s output and its straight-through gradients in w_int and x_int of
    ``Σ y`` for a twin of one row group on ``chip``."""
    twin = TwinMatmul.calibrated(w_int.clone(), None, chip, x_int.numpy(), seed=0).eval()
    x = x_int.clone().requires_grad_(True)
    w = w_int.clone().requires_grad_(True)
    ratio = torch.ones_like(twin._adc_delta0)
    y = _ChipProduct.apply(x, w, ratio, twin)
    y.sum().backward()
    return twin, y.detach()[0], w.grad, x.grad


@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_straight_through_gradient_is_the_slope_at_each_conversion(kind):
    """One conversion per output (a signed cell holds the weight, every input bit in one
    pulse, one row group) and a lossless 24-b converter: the gradient of Σ y in w[n, k] is
    exactly f'(a_n)·x[k] (in x[k]: Σ_n f'(a_n)·w[n, k]), a_n = Σ_k x[k]·w[n, k]."""
    chip = ideal_chip(encoding="signed_cell", bits_per_cell=4, weight_bits=5, input_bits=4,
                      dac_bits=4, n_rows=16, n_cols=16, noise=dict(nonlinearity=kind,
                                                                   **SHAPES[kind]))
    g = torch.Generator().manual_seed(1)
    w_int = torch.randint(-15, 16, (5, 12), generator=g).double()
    x_int = torch.randint(0, 16, (9, 12), generator=g).double()
    twin, y, gw, gx = _product_grads(chip, w_int, x_int)
    fs = _column_fs(twin)
    a = x_int @ w_int.t()
    # the converter's step is one cell-LSB: the bent values round to it
    np.testing.assert_allclose(y.numpy(), _f(kind, a, fs).numpy(), rtol=0, atol=0.5)
    slope = _f(kind, a, fs, slope=True)
    torch.testing.assert_close(gw, slope.t() @ x_int, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx, slope @ w_int, rtol=1e-12, atol=1e-12)


def _column_fs(twin: TwinMatmul) -> float:
    (_, _, layer), = twin.to_engine().parts
    return float(layer.column_fs)


def test_a_pairs_gradient_takes_its_two_columns_mean_slope():
    """An analog differential pair converts f(a+) - f(a-): the straight-through gradient
    takes the mean of the two slopes (not the exact f'(a+) for w > 0, f'(a-) for w < 0; the
    straight-through product has one gradient per weight)."""
    kind = "saturating"
    chip = ideal_chip(encoding="differential", bits_per_cell=4, weight_bits=5, input_bits=4,
                      dac_bits=4, n_rows=16, n_cols=32, noise=dict(nonlinearity=kind,
                                                                   **SHAPES[kind]))
    chip = chip.replace(differential_readout="analog")
    g = torch.Generator().manual_seed(2)
    w_int = torch.randint(-15, 16, (5, 12), generator=g).double()
    x_int = torch.randint(0, 16, (9, 12), generator=g).double()
    twin, y, gw, _ = _product_grads(chip, w_int, x_int)
    fs = _column_fs(twin)
    a_pos, a_neg = x_int @ w_int.clamp(min=0).t(), x_int @ (-w_int).clamp(min=0).t()
    np.testing.assert_allclose(y.numpy(), (_f(kind, a_pos, fs) - _f(kind, a_neg, fs)).numpy(),
                               rtol=0, atol=0.5)
    slope = 0.5 * (_f(kind, a_pos, fs, slope=True) + _f(kind, a_neg, fs, slope=True))
    torch.testing.assert_close(gw, slope.t() @ x_int, rtol=1e-12, atol=1e-12)
    assert float(slope.min()) < 0.9  # the columns are bent: the slope is not 1


def test_slopes_are_the_derivatives():
    a = torch.linspace(-300.0, 300.0, 101, dtype=torch.float64, requires_grad=True)
    for kind in SHAPES:
        _f(kind, a, 200.0).sum().backward()
        torch.testing.assert_close(a.grad, _f(kind, a.detach(), 200.0, slope=True))
        a.grad = None


@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_the_fused_cpu_kernel_is_the_torch_path(kind):
    """The fused kernel (the CPU default) weights each unclipped conversion's share by the
    slope as the torch path does: the same outputs and gradients."""
    chip = _chip(kind)
    x = torch.randn(32, 20, dtype=torch.float64)
    target = torch.randint(0, 3, (32,))
    grads = []
    for fused in (True, False):
        prep = prepare(_model(), chip, x, seed=3, fused_kernel=fused, train_noise=False)
        assert all(t.fused == fused for _, t in prep.twins())
        y = prep.train()(x)
        F.cross_entropy(y, target).backward()
        grads.append((y.detach(), [p.grad.clone() for p in prep.parameters()
                                   if p.grad is not None]))
    (y1, g1), (y2, g2) = grads
    torch.testing.assert_close(y1, y2, rtol=1e-12, atol=1e-12)
    assert len(g1) == len(g2)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)

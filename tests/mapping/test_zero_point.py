"""Asymmetric (zero-point) activation quantization (``QuantConfig.act_zero_point``, issue 10
item 2): exact on the lossless chip against an integer re-implementation written here from
the spec, its digital correction counted and priced, and lower error on skewed inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.config import ChipConfig
from cimsim.cost import estimate
from cimsim.errors import ConfigError
from cimsim.events import Action, Component, event_key

from .conftest import assert_bitwise, lossless_chip, ref_weight_quant


def zp_chip(chip: ChipConfig, **quant) -> ChipConfig:
    return chip.replace(quant=chip.quant.replace(act_zero_point=True, **quant))


def ref_zero_point(x: torch.Tensor, bits: int) -> tuple[float, int]:
    """Scale and zero point from the spec: unsigned grid over [min(x, 0), max(x, 0)]."""
    lo = min(float(x.min()), 0.0)
    hi = max(float(x.max()), 0.0)
    s = (hi - lo) / (2**bits - 1)
    return s, int(np.clip(np.rint(-lo / s), 0, 2**bits - 1))


def ref_linear_zp(lin: nn.Linear, x_cal: torch.Tensor, x: torch.Tensor, chip: ChipConfig,
                  row_tiles: list[tuple[int, int]]) -> torch.Tensor:
    """The quantized layer: x_int = clip(rint(x / s) + z, 0, 2^B - 1),
    y = Σ_t ((x_int - z) @ w_int.T)_t · s · s_w[t] + bias, integer products in int64."""
    bits = chip.input_bits
    s, z = ref_zero_point(x_cal.to(torch.float64), bits)
    x64 = x.to(torch.float64)
    x_int = (torch.round(x64 / s) + z).clamp(0, 2**bits - 1).to(torch.int64)
    w_int, s_w = ref_weight_quant(lin.weight, chip.weight_bits,
                                  chip.quant.weight_granularity.value, row_tiles)
    tiles = row_tiles if s_w.shape[0] > 1 else [(0, w_int.shape[1])]
    y = torch.zeros(x.shape[0], w_int.shape[0], dtype=torch.float64)
    for t, (a, b) in enumerate(tiles):
        y_int = (x_int[:, a:b] - z) @ w_int[:, a:b].T  # the corrected integer, exact
        y = y + y_int.to(torch.float64) * (s * s_w[t])
    return (y + lin.bias.detach().to(torch.float64)).to(x.dtype)


@pytest.mark.parametrize("granularity", ["tensor", "channel", "column"])
@pytest.mark.parametrize("shift", [-0.2, 0.0, 3.0])
def test_zero_point_exact_on_lossless_chip(granularity, shift):
    """Skewed signed (GELU), non-negative and all-positive inputs; K = 80 spans three row
    tiles of 37, so ``column`` granularity corrects every part separately."""
    chip = zp_chip(lossless_chip(granularity))
    lin = nn.Linear(80, 24)
    x_cal = F.gelu(torch.randn(300, 80)) + shift
    x = F.gelu(torch.randn(50, 80) * 1.3) + shift  # beyond the calibrated range too: clipped
    sim = cimsim.deploy(lin, chip, calibration=x_cal, seed=0)
    (core,) = next(iter(sim.sim_layers.values())).cores
    s, z = ref_zero_point(x_cal.to(torch.float64), chip.input_bits)
    assert (core.s_x, core.view.zero_point, core.signed) == (s, z, False)
    assert_bitwise(sim(x), ref_linear_zp(lin, x_cal, x, chip, core.row_tiles))


def test_zero_point_of_post_relu_inputs_is_zero():
    chip = zp_chip(lossless_chip())
    lin = nn.Linear(16, 8)
    x = torch.rand(64, 16)
    sim = cimsim.deploy(lin, chip, calibration=x, seed=0)
    (core,) = next(iter(sim.sim_layers.values())).cores
    assert core.view.zero_point == 0 and not core.view.offsets.any()


def test_zero_point_rounds_to_the_nearest_code_by_hand():
    """``z = clip(rint(-lo / s_x), 0, 2^b - 1)`` (act_zero_point's docstring): [-1.7, 1.3] at
    2 bits is s_x = 3 / 3 = 1 and z = rint(1.7) = 2; a floor would give 1, x = 0 off its code."""
    from cimsim.config import QuantConfig
    from cimsim.mapping.quant import act_zero_point

    s, z = act_zero_point(-1.7, 1.3, np.array([]), 2, QuantConfig())
    assert s == pytest.approx(1.0, rel=1e-12) and z == 2


def test_zero_point_correction_is_counted_and_priced():
    chip = zp_chip(lossless_chip("column"))
    lin = nn.Linear(80, 24)
    x = F.gelu(torch.randn(40, 80))
    sim = cimsim.deploy(lin, chip, calibration=x, seed=0)
    sim(x)
    (layer,) = sim.works()
    parts = len(next(iter(sim.sim_layers.values())).cores[0].parts)
    assert parts == 3
    key = event_key(Component.DIGITAL, Action.CORRECTION_ADD, chip.accumulator_bits)
    assert layer.events[key] == 40 * 24 * parts
    rows = [r for r in estimate(sim.work()).events
            if (r["component"], r["action"]) == ("digital", "correction_add")]
    assert len(rows) == 1 and rows[0]["energy_pj_per_event"] > 0  # priced by the cost model
    # the same layer without a zero point counts no correction
    plain = cimsim.deploy(lin, lossless_chip("column"), calibration=x, seed=0)
    plain(x)
    assert key not in plain.works()[0].events


def _rel_err(model: nn.Module, chip: ChipConfig, x: torch.Tensor) -> float:
    sim = cimsim.deploy(model, chip, calibration=x, seed=0)
    with torch.no_grad():
        want = model(x).double()
        got = sim(x).double()
    return float((got - want).norm() / want.norm())


def test_zero_point_lowers_error_of_gelu_inputs_at_8_bits():
    """GELU outputs lie in [-0.17, max]: a symmetric signed grid wastes almost half its codes
    (and one bit); the unsigned grid with a zero point uses them all."""
    model = nn.Linear(96, 32)
    x = F.gelu(torch.randn(512, 96))
    chip = cimsim.load_chip("ideal")
    base = _rel_err(model, chip, x)
    zp = _rel_err(model, zp_chip(chip), x)
    assert zp < 0.75 * base, (zp, base)


@pytest.mark.parametrize("calibration", ["percentile", "mse"])
def test_zero_point_with_clipping_calibrations(calibration):
    """Percentile and MSE ranges clip the tails: scale and zero point stay a valid grid that
    contains 0, and the result stays close to float."""
    chip = cimsim.load_chip("ideal")
    chip = zp_chip(chip, act_calibration=calibration, act_percentile=99.9)
    lin = nn.Linear(32, 16)
    x = F.gelu(torch.randn(400, 32))
    sim = cimsim.deploy(lin, chip, calibration=x, seed=0)
    (core,) = next(iter(sim.sim_layers.values())).cores
    assert 0 <= core.view.zero_point <= 255 and core.s_x > 0
    with torch.no_grad():
        want, got = lin(x).double(), sim(x).double()
    assert float((got - want).norm() / want.norm()) < 0.02


def test_zero_point_in_attention_and_conv():
    """Every mapped kind uses the corrected integer product: attention projections and conv
    groups (whose cores share one scale and zero point) stay close to float on the lossless
    chip."""
    chip = zp_chip(cimsim.load_chip("ideal"))
    enc = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True,
                                     activation="gelu").eval()
    x = torch.randn(6, 10, 32)
    sim = cimsim.deploy(enc, chip, calibration=x, seed=0)
    with torch.no_grad():
        want, got = enc(x), sim(x)
    assert float((got - want).norm() / want.norm()) < 0.02
    conv = nn.Conv1d(4, 6, 3, groups=2).eval()
    xc = F.gelu(torch.randn(8, 4, 20))
    simc = cimsim.deploy(conv, chip, calibration=xc, seed=0)
    cores = next(iter(simc.sim_layers.values())).cores
    assert len({(c.s_x, c.view.zero_point) for c in cores}) == 1
    with torch.no_grad():
        want, got = conv(xc), simc(xc)
    assert float((got - want).norm() / want.norm()) < 0.02


def test_fused_adc_takes_the_correction_into_its_references():
    """A layer-output ADC that produces the ReLU (fused) folds −z·Σw into its references like
    the bias: with a fine (10-bit) calibrated ADC the fused layer stays close to float, and no
    correction add is counted."""
    ideal = cimsim.load_chip("ideal")
    chip = zp_chip(ideal.replace(
        dac=ideal.dac.replace(bits=None), device=ideal.device.replace(bits_per_cell=7),
        array=ideal.array.replace(n_rows=64, n_cols=64),
        adc=ideal.adc.replace(kind="sar", bits=10, range_policy="calibrated",
                              calibration_granularity="column", placement="layer_output")))
    model = nn.Sequential(nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 4)).double()
    x = F.gelu(torch.randn(300, 24, dtype=torch.float64)) - 0.1
    sim = cimsim.deploy(model, chip, calibration=x, seed=0)
    core = sim.sim_layers["0"].cores[0]
    assert core.fused and core.view.zero_point > 0
    with torch.no_grad():
        want, got = model[:2](x), sim.sim_layers["0"](x)
    assert float((got - want).norm() / want.norm()) < 0.01
    key = event_key(Component.DIGITAL, Action.CORRECTION_ADD, chip.accumulator_bits)
    assert key not in sim.works()[0].events


def test_a_zero_point_or_the_a_shift_is_no_error_over_the_signal():
    """The deploy check compared the chip's zero-point-corrected outputs with the raw codes'
    product, off by z * sum(w): the lossless chip was warned about as erring by more than the
    signal (SQNR below 0 dB) with a zero point or the A-shift, its outputs exact."""
    torch.manual_seed(0)
    ideal = cimsim.load_chip("ideal")
    lin = nn.Linear(16, 4)
    with torch.no_grad():
        lin.weight.add_(0.3)
    negative = -torch.rand(64, 16)
    negative[:, 0] += 0.3  # z = 196 of 255
    cases = [(ideal.replace(quant=ideal.quant.replace(act_zero_point=True)), negative),
             (ideal.replace(dac=ideal.dac.replace(shift_unsigned_inputs=True)),
              torch.randn(64, 16).relu())]
    for chip, x in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            sim = cimsim.deploy(lin, chip, x, progress=False)
            cimsim.train.prepare(lin, chip, x)
        assert sim.sim_layers["0"].cores[0].view.zero_point != 0
    with pytest.raises(ConfigError, match=r"DACConfig.shift_unsigned_inputs = True is invalid; "
                                          r"allowed: false with quant.act_zero_point = true"):
        ideal.replace(dac=ideal.dac.replace(shift_unsigned_inputs=True),
                      quant=ideal.quant.replace(act_zero_point=True))

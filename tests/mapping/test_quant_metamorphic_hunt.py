"""Metamorphic relations of deploy's quantization (docs/hardware-model.md §8), noise-free
unless stated. No departure was found; these relations pin what held:

- scaling the model input and calibration by a power of two c and the first layer's weights
  by 1/c leaves every code, hence the outputs, identical: ``max``, ``percentile`` and ``mse``
  activation scales (symmetric and with ``act_zero_point``), SmoothQuant (c = 4: its factors
  move by c^α = 2), block floating point; also on ``rram-22nm`` with its variation and
  thermal noise on (same seed, same codes, same draws);
- scaling a ReLU layer's weights and bias by c and the next layer's weights by 1/c
  (``tensor``, ``channel``, ``column`` and ``pow2`` weight scales);
- permuting hidden units across two layers on a lossy chip calibrated per column;
- ``act_zero_point`` on nonnegative data equals the symmetric unsigned quantizer (z = 0 and
  the same range: "[lo, hi] widened to contain 0");
- block FP: a row tile's inputs scaled by 2^k keep their mantissas, only its exponent moves.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.mapping.quant import block_fp_acts


def _lossy(noise: bool = False):
    c = cimsim.load_chip("rram-22nm")
    if noise:
        return c
    return c.replace(noise=c.noise.replace(thermal_sigma_lsb=0.0),
                     device=c.device.replace(variation="none", variation_sigma=0.0))


def _q(chip, **kw):
    return chip.replace(quant=chip.quant.replace(**kw))


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(40, 24), nn.ReLU(), nn.Linear(24, 10)).double().eval()


def _data():
    g = torch.Generator().manual_seed(1)
    return (torch.randn(300, 40, generator=g, dtype=torch.float64),
            torch.randn(50, 40, generator=g, dtype=torch.float64))


def _run(model, chip, xc, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = cimsim.deploy(model, chip, calibration=xc, seed=0)
    with torch.no_grad():
        return sim(x).numpy()


CHIPS = {"ideal": lambda: cimsim.load_chip("ideal"), "lossy": _lossy,
         "lossy_noisy": lambda: _lossy(noise=True)}
ACT = {"max": {}, "percentile": dict(act_calibration="percentile", act_percentile=99.0),
       "mse": dict(act_calibration="mse"), "zp_max": dict(act_zero_point=True),
       "zp_percentile": dict(act_zero_point=True, act_calibration="percentile",
                             act_percentile=99.0),
       "zp_mse": dict(act_zero_point=True, act_calibration="mse"),
       "smooth": dict(smooth_alpha=0.5), "block_fp": dict(act_format="block_fp")}


@pytest.mark.parametrize("chip_name", ["ideal", "lossy_noisy"])
@pytest.mark.parametrize("act", list(ACT))
def test_input_scaled_by_power_of_two_gives_identical_outputs(chip_name, act):
    chip = _q(CHIPS[chip_name](), **ACT[act])
    xc, x = _data()
    m = _mlp()
    y0 = _run(m, chip, xc, x)
    for c in [4.0, 0.125] if act != "smooth" else [4.0]:
        m2 = copy.deepcopy(m)
        with torch.no_grad():
            m2[0].weight /= c
        assert np.array_equal(_run(m2, chip, xc * c, x * c), y0), c


@pytest.mark.parametrize("weights", [dict(weight_granularity="tensor"),
                                     dict(weight_granularity="channel"),
                                     dict(weight_granularity="column"),
                                     dict(weight_scale="pow2")])
def test_weights_moved_across_a_relu_by_a_power_of_two_give_identical_outputs(weights):
    chip = _q(_lossy(), **weights)
    xc, x = _data()
    m = _mlp()
    y0 = _run(m, chip, xc, x)
    for c in [4.0, 0.125]:
        m2 = copy.deepcopy(m)
        with torch.no_grad():
            m2[0].weight *= c
            m2[0].bias *= c
            m2[2].weight /= c
        assert np.array_equal(_run(m2, chip, xc, x), y0), c


@pytest.mark.parametrize("act", ["max", "zp_max"])
def test_permuted_hidden_units_give_identical_outputs_on_per_column_adcs(act):
    chip = _q(_lossy(), **ACT[act])
    xc, x = _data()
    m = _mlp()
    p = torch.randperm(24, generator=torch.Generator().manual_seed(5))
    m2 = copy.deepcopy(m)
    with torch.no_grad():
        m2[0].weight.copy_(m[0].weight[p])
        m2[0].bias.copy_(m[0].bias[p])
        m2[2].weight.copy_(m[2].weight[:, p])
    assert np.array_equal(_run(m2, chip, xc, x), _run(m, chip, xc, x))


@pytest.mark.parametrize("cal", ["max", "percentile", "mse"])
def test_zero_point_on_nonnegative_inputs_equals_the_symmetric_unsigned_quantizer(cal):
    chip = _q(_lossy(), **ACT[cal])
    xc, x = _data()
    xc, x = xc.abs(), x.abs() * 1.3
    m = _mlp()
    assert np.array_equal(_run(m, _q(chip, act_zero_point=True), xc, x), _run(m, chip, xc, x))


def test_block_fp_tile_scaled_by_power_of_two_moves_only_its_exponent():
    chip = _q(_lossy(), act_format="block_fp", weight_scale="pow2", weight_granularity="column")
    rows = chip.array.n_rows
    torch.manual_seed(0)
    lin = nn.Linear(rows + 30, 6).double().eval()
    g = torch.Generator().manual_seed(4)
    xc = torch.randn(64, rows + 30, generator=g, dtype=torch.float64)
    x = torch.randn(16, rows + 30, generator=g, dtype=torch.float64)
    tiles = [(0, rows), (rows, rows + 30)]
    y0 = _run(lin, chip, xc, x)
    for k in [3, -5]:
        xc2, x2, lin2 = xc.clone(), x.clone(), copy.deepcopy(lin)
        xc2[:, rows:] *= 2.0**k
        x2[:, rows:] *= 2.0**k
        with torch.no_grad():
            lin2.weight[:, rows:] *= 2.0**-k
        a, ea = block_fp_acts(x.numpy(), chip.input_bits, True, 8, tiles)
        b, eb = block_fp_acts(x2.numpy(), chip.input_bits, True, 8, tiles)
        assert np.array_equal(a, b)
        assert np.array_equal(eb - ea, np.tile([0, k], (16, 1)))
        assert np.array_equal(_run(lin2, chip, xc2, x2), y0)

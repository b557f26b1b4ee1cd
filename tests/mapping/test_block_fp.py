"""Block floating-point inputs (``quant.act_format = 'block_fp'``): the format, the deployed
model against a hand-computed NumPy reference, its events, and what it refuses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import cimsim
from cimsim.config import ActFormat, ChipConfig, WeightGranularity
from cimsim.errors import ConfigError
from cimsim.events import Action, Component, event_key
from cimsim.mapping.quant import (
    block_fp_acts,
    block_fp_acts_counted,
    pow2_scale,
    quantize_weights,
)


def _block_fp(chip: ChipConfig, **quant) -> ChipConfig:
    return chip.replace(quant=chip.quant.replace(act_format="block_fp", **quant))


# ---- the format, by hand ---------------------------------------------------------------------
def test_block_exponent_alignment_and_rounding_by_hand():
    # 4-b signed mantissas: 3 magnitude bits, codes in [-7, 7]. Block 0's largest |x| is 1.5:
    # E = floor(log2 1.5) = 0, X = E - (3 - 1) = -2, step 0.25: 0.3 -> rint(1.2) = 1,
    # -1.5 -> -6, 0.05 -> rint(0.2) = 0. Block 1: 1.9 -> E = 0, X = -2, rint(7.6) = 8
    # saturates to 7; 0.125 / 0.25 = 0.5 rounds half to even -> 0
    x = np.array([[0.3, -1.5, 0.05, 1.9, 0.125]])
    codes, exps = block_fp_acts(x, 4, True, 8, [(0, 3), (3, 5)])
    assert codes.tolist() == [[1, -6, 0, 7, 0]]
    assert exps.tolist() == [[-2, -2]]
    # unsigned: 4 magnitude bits, codes in [0, 15]; 6.0 -> E = 2, X = 2 - 3 = -1, step 0.5
    codes, exps = block_fp_acts(np.array([[6.0, 1.26, 0.0]]), 4, False, 8, [(0, 3)])
    assert codes.tolist() == [[12, 3, 0]] and exps.tolist() == [[-1]]


def test_block_exponent_is_clamped_to_its_width_and_a_zero_block_takes_the_lowest():
    # 2 exponent bits: X in [-1, 1]. 100 -> E = 6, X = 6 - 2 = 4 -> 1: 100 / 2 = 50 saturates
    # at 7; 0.01 -> X = -9 -> -1: 0.01 / 0.5 rounds to 0 (underflow)
    codes, exps = block_fp_acts(np.array([[100.0, 1.0, 0.01, 0.0]]), 4, True, 2,
                                [(0, 2), (2, 3), (3, 4)])
    assert exps.tolist() == [[1, -1, -1]]
    assert codes.tolist() == [[7, 0, 0, 0]]


def test_saturations_are_counted_only_past_the_top_code_by_hand():
    """``block_fp_acts_counted`` counts a value that saturates (its docstring: rounded up past
    the top code, negative in an unsigned block, past the exponent's range): a value landing
    exactly on the top or bottom code is no saturation. 4-b signed, codes [-7, 7]: 1.75 -> E = 0,
    X = -2, code 7 exactly; -1.75 -> -7 exactly; 1.9 -> rint(7.6) = 8 saturates. 4-b unsigned,
    codes [0, 15]: 15 -> E = 3, X = 0, code 15 exactly; 15.6 -> 16 saturates; 4 -> E = 2,
    X = -1, code 8, and -1 beside it clipped to 0."""
    x = np.array([[1.75, -1.75, 0.5], [1.9, 0.25, -1.0]])
    codes, _, n = block_fp_acts_counted(x, 4, True, 8, [(0, 3)])
    assert codes.tolist() == [[7, -7, 2], [7, 1, -4]] and n == 1
    codes, _, n = block_fp_acts_counted(np.array([[15.0, 1.0], [15.6, 0.0], [4.0, -1.0]]), 4,
                                        False, 8, [(0, 2)])
    assert codes.tolist() == [[15, 1], [15, 0], [8, 0]] and n == 2


def test_pow2_weight_scales_by_hand():
    # 4-b weights, q = 7. Row 0: max|w| = 1.4, s = 0.2 -> 0.25: codes rint(4, -2.4, 0.4) =
    # (4, -2, 0); row 1: max|w| = 3.5, s = 0.5 is a power of two already: (7, 2, -1)
    w = np.array([[1.0, -0.6, 0.1], [3.5, 1.0, -0.5]])
    w_int, s = quantize_weights(w, 4, WeightGranularity.CHANNEL, [(0, 3)], pow2=True)
    assert s.tolist() == [[0.25, 0.5]]
    assert w_int.tolist() == [[4, -2, 0], [7, 2, -1]]
    assert pow2_scale(np.array([0.0, 1.0, 0.75, 3e-9])).tolist() == [0.0, 1.0, 1.0, 2.0**-28]
    # column granularity: one power of two per (row tile, output)
    _, s = quantize_weights(w, 4, WeightGranularity.COLUMN, [(0, 1), (1, 3)], pow2=True)
    assert s.tolist() == [[0.25, 0.5], [0.125, 0.25]]


# ---- config ----------------------------------------------------------------------------------
def test_default_is_int_and_block_fp_round_trips_through_toml(tmp_path):
    chip = cimsim.load_chip("ideal")
    assert chip.quant.act_format is ActFormat.INT and chip.quant.act_exponent_bits == 8
    fp = _block_fp(chip, act_exponent_bits=5, weight_scale="pow2",
                   weight_granularity="column")
    path = tmp_path / "fp.toml"
    fp.save(path)
    back = cimsim.load_chip(path)
    assert back == fp and back.quant.act_format is ActFormat.BLOCK_FP
    assert 'act_format = "block_fp"' in path.read_text()


@pytest.mark.parametrize(("quant", "field", "allowed"), [
    ({"act_format": "fp8"}, "QuantConfig.act_format", "'int', 'block_fp'"),
    ({"act_exponent_bits": 1}, "QuantConfig.act_exponent_bits", "[2, 8]"),
    ({"act_exponent_bits": 9}, "QuantConfig.act_exponent_bits", "[2, 8]"),
    ({"weight_scale": "log"}, "QuantConfig.weight_scale", "'float', 'pow2'"),
    ({"act_format": "block_fp", "act_zero_point": True}, "QuantConfig.act_zero_point",
     "block_fp"),
])
def test_bad_fields_name_the_field_and_the_allowed_values(quant, field, allowed):
    chip = cimsim.load_chip("ideal")
    with pytest.raises(ConfigError) as err:
        chip.replace(quant=chip.quant.replace(**quant))
    assert field in str(err.value) and allowed in str(err.value)


def test_the_a_shift_is_refused_with_block_fp():
    chip = cimsim.load_chip("ideal")
    with pytest.raises(ConfigError, match="shift_unsigned_inputs.*block_fp"):
        _block_fp(chip).replace(dac=chip.dac.replace(shift_unsigned_inputs=True))


def test_the_training_twin_takes_block_fp_and_pow2_weight_scales():
    from cimsim.train.twin import check_chip

    ideal = cimsim.load_chip("ideal")
    # tests/train/test_block_fp.py and test_pow2_scales.py hold the twin to deploy
    check_chip(_block_fp(ideal))
    check_chip(ideal.replace(quant=ideal.quant.replace(weight_scale="pow2")))


# ---- the deployed model against a reference computed by hand ----------------------------------
def _reference(x, w, bias, bits, rows, e_bits, pow2_columns=False):
    """Independent re-implementation: per (vector, row tile) the exponent of the largest |x|,
    mantissas rounded half to even (Python's round) and saturated, integer products per tile,
    each tile scaled by its power of two and the per-channel weight scale (``pow2_columns``:
    a power of two per (row tile, output), 2^ceil(log2(max|w| / 127))), added in tile order,
    then the bias."""
    q_w = 127
    s_w = np.abs(w).max(axis=1) / q_w
    w_int = np.clip(np.rint(w / s_w[:, None]), -q_w, q_w).astype(np.int64)
    q_x, top = 2 ** (bits - 1) - 1, 2 ** (e_bits - 1) - 1
    m, k = x.shape
    y = np.zeros((m, w.shape[0]))
    for a in range(0, k, rows):
        b = min(a + rows, k)
        if pow2_columns:
            s_w = np.array([2.0 ** math.ceil(math.log2(max(abs(v) for v in row) / q_w))
                            for row in w[:, a:b]])
            w_int[:, a:b] = np.clip(np.rint(w[:, a:b] / s_w[:, None]), -q_w, q_w)
        for i in range(m):
            amax = max(abs(float(v)) for v in x[i, a:b])
            big = math.frexp(amax)[1] - 1 - (bits - 2) if amax > 0 else -top
            big = min(max(big, -top), top)
            mant = [min(max(round(float(v) / 2.0**big), -q_x), q_x) for v in x[i, a:b]]
            part = np.array(mant, dtype=np.int64) @ w_int[:, a:b].T
            y[i] += part * (2.0**big * s_w)
    return y + bias


def test_lossless_chip_equals_the_hand_computed_block_fp_reference_exactly():
    torch.manual_seed(0)
    chip = _block_fp(cimsim.load_chip("ideal"))
    rows = chip.array.n_rows
    layer = torch.nn.Linear(rows + 44, 7).double()  # two row tiles, the second partial
    gen = np.random.default_rng(1)
    # signed inputs spread over several binades, so that the blocks' exponents differ
    x = gen.standard_normal((24, rows + 44)) * np.exp2(gen.integers(-6, 6, (24, 1)))
    x[3, rows:] = 0.0  # an all-zero block
    sim = cimsim.deploy(torch.nn.Sequential(layer), chip, calibration=torch.from_numpy(x))
    with torch.no_grad():
        y = sim(torch.from_numpy(x)).numpy()
        w, b = layer.weight.numpy(), layer.bias.numpy()
    expected = _reference(x, w, b, chip.input_bits, rows, chip.quant.act_exponent_bits)
    assert np.array_equal(y, expected), float(np.abs(y - expected).max())


def test_block_fp_inputs_with_pow2_column_weights_equal_the_reference_exactly():
    # block floating point on both operands: a power of two per (vector, row tile) for the
    # inputs and per (row tile, output) for the weights
    torch.manual_seed(1)
    chip = _block_fp(cimsim.load_chip("ideal"), weight_scale="pow2",
                     weight_granularity="column")
    rows = chip.array.n_rows
    layer = torch.nn.Linear(2 * rows + 10, 5).double()
    x = np.random.default_rng(2).standard_normal((12, 2 * rows + 10))
    sim = cimsim.deploy(torch.nn.Sequential(layer), chip, calibration=torch.from_numpy(x))
    with torch.no_grad():
        y = sim(torch.from_numpy(x)).numpy()
        w, b = layer.weight.numpy(), layer.bias.numpy()
    expected = _reference(x, w, b, chip.input_bits, rows, 8, pow2_columns=True)
    assert np.array_equal(y, expected), float(np.abs(y - expected).max())


def test_block_fp_beats_int_at_equal_mantissa_bits_on_inputs_with_outliers():
    # most vectors are small; a few carry an outlier 1000x larger. One per-tensor scale is
    # set by the outliers and rounds the small vectors to a few codes; block FP gives every
    # (vector, row tile) its own exponent
    torch.manual_seed(0)
    layer = torch.nn.Linear(128, 16).double()
    gen = np.random.default_rng(0)
    x = gen.standard_normal((256, 128))
    x[::32, 5] = 1000.0
    x_t = torch.from_numpy(x)
    errors = {}
    for fmt in ("int", "block_fp"):
        chip = cimsim.load_chip("ideal")
        chip = chip.replace(quant=chip.quant.replace(act_format=fmt))
        sim = cimsim.deploy(torch.nn.Sequential(layer), chip, calibration=x_t)
        with torch.no_grad():
            err = (sim(x_t) - layer(x_t)).numpy()
            ref = layer(x_t).numpy()
        plain = np.ones(256, dtype=bool)
        plain[::32] = False  # the vectors without an outlier
        errors[fmt] = np.linalg.norm(err[plain]) / np.linalg.norm(ref[plain])
    assert errors["block_fp"] < errors["int"] / 10, errors


def test_a_layer_output_adc_is_not_fused_with_block_fp_inputs(caplog):
    ideal = cimsim.load_chip("ideal")  # one conversion per output (tests/mapping/test_zoo2.py)
    chip = _block_fp(ideal.replace(
        dac=ideal.dac.replace(bits=None), device=ideal.device.replace(bits_per_cell=7),
        array=ideal.array.replace(n_rows=64, n_cols=64),
        adc=ideal.adc.replace(kind="sar", bits=6, range_policy="calibrated",
                              placement="layer_output", fuse_activation=True)))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 4), torch.nn.ReLU()).double()
    x = torch.rand(32, 16, dtype=torch.float64)
    with caplog.at_level("WARNING"):
        sim = cimsim.deploy(model, chip, calibration=x)
    assert "block floating-point inputs" in caplog.text
    assert sim(x).shape == (32, 4)


def test_the_torch_backend_equals_the_engine_bit_for_bit_with_block_fp():
    chip = _block_fp(cimsim.load_chip("ideal"))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(300, 5)).double()
    x = torch.randn(16, 300, dtype=torch.float64)
    sim = cimsim.deploy(model, chip, calibration=x)
    with torch.no_grad():
        y = [sim.use_backend(b)(x).numpy() for b in ("numba", "torch")]
    assert np.array_equal(y[0], y[1])


# ---- events ----------------------------------------------------------------------------------
def test_alignment_events_counted_by_hand():
    chip = _block_fp(cimsim.load_chip("ideal"), act_exponent_bits=5)
    rows = chip.array.n_rows
    gen = np.random.default_rng(0)
    x = gen.integers(-100, 100, (4, rows + 44))
    w = gen.integers(-100, 100, (3, rows + 44))
    y, ev = cimsim.matmul(x, w, chip)
    assert np.array_equal(y, x @ w.T)  # the array computes on the mantissas as before
    key = lambda a, b: event_key(Component.BLOCK_FP, a, b)  # noqa: E731
    assert ev[key(Action.EXPONENT_MAX, 5)] == 4 * ((rows - 1) + 43)
    assert ev[key(Action.ALIGN_SHIFT, chip.input_bits)] == 4 * (rows + 44)
    assert ev[key(Action.EXPONENT_ADD, 5)] == 4 * 3 * 2
    assert ev[key(Action.NORMALIZE, chip.accumulator_bits)] == 4 * 3 * 2
    _, ev_int = cimsim.matmul(x, w, cimsim.load_chip("ideal"))
    assert not any(k.component is Component.BLOCK_FP for k in ev_int)


@pytest.mark.parametrize("granularity, tiles", [(WeightGranularity.COLUMN, [(0, 2), (2, 4)]),
                                                (WeightGranularity.CHANNEL, [(0, 4)])])
def test_weight_codes_round_to_nearest_by_hand(granularity, tiles):
    """Weight codes are round(w / s), clipped to ±q: by hand at 3 bits (q = 3) with every
    group's max|w| = 0.9, so s = 0.3: 0.2 -> 0.67 -> 1, -0.9 -> -3, 0.5 -> 1.67 -> 2, 0.9 -> 3.
    Guards the quantizer against truncating (floor gives 0 and 1 for 0.2 and 0.5)."""
    w = np.array([[0.2, -0.9, 0.5, 0.9]])
    w_int, s = quantize_weights(w, 3, granularity, tiles)
    np.testing.assert_array_equal(w_int, [[1, -3, 2, 3]])
    np.testing.assert_allclose(s, np.full((len(tiles), 1), 0.3), rtol=1e-15)

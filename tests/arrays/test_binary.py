"""1-b binary (±1, XNOR-style) weights: ``weight_bits = 1``, ``weight_encoding = 'binary'``.

Anchors: one binary cell d = (w + 1)/2 per weight recombines to w = 2d - 1; on the lossless chip
the engine reproduces ``x @ w.T`` exactly (w in {-1, +1}) for unsigned and signed inputs,
bit-serial and multi-bit DACs; with noise and a lossy ADC it equals the plain-loop oracle; bad
configurations and a 0 weight are refused by name.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cimsim
from cimsim import engine
from cimsim.arrays._reference import matmul_reference
from cimsim.arrays.encoding import column_kinds, weight_range
from cimsim.arrays.program import program
from cimsim.config import ChipConfig, WeightEncoding
from cimsim.errors import ConfigError
from tests.conftest import assert_exact, ideal_chip, random_inputs


def binary_chip(**changes) -> ChipConfig:
    """The lossless ``ideal`` chip with 1-b binary weights on 1-b cells."""
    return ideal_chip(encoding="binary", weight_bits=1, bits_per_cell=1, **changes)


def pm1(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Weights (N, K) uniform over {-1, +1}."""
    return 2 * rng.integers(0, 2, size=(n, k), dtype=np.int64) - 1


def test_one_binary_cell_per_weight_recombines():
    chip = binary_chip()
    assert weight_range(chip) == (-1, 1)
    w = np.array([[-1, 1, 1, -1, -1]])
    kinds = column_kinds(w, chip)
    assert kinds.n_kinds == 1
    np.testing.assert_array_equal(kinds.digits[0, :, 0], [0, 1, 1, 0, 0])  # d = (w + 1)/2
    np.testing.assert_array_equal(kinds.coef, [2.0])
    assert (kinds.digit_lo, kinds.digit_hi) == (0, 1)
    layer = program(w, chip)
    np.testing.assert_array_equal(layer.x_sum_coef, [-1.0])  # x·w = 2·(x·d) - Σx
    assert layer.n_phys_cols == 1  # one column per output, half the 2-b workaround's


def test_worked_example_of_the_docs():
    # docs/hardware-model.md, "Binary weights": x = (3, 0, 5, 1), w = (+1, -1, -1, +1)
    chip = binary_chip(input_bits=3, dac_bits=None, n_rows=4, n_cols=8)
    x = np.array([[3, 0, 5, 1]])
    w = np.array([[1, -1, -1, 1]])
    layer = program(w, chip)
    np.testing.assert_array_equal(layer.digits_phys[:, 0], [1, 0, 0, 1])
    assert int((x @ layer.digits_phys[:, 0])[0]) == 4  # x·d = 3 + 1
    assert (layer.fs_lo, layer.fs_hi) == (0.0, 28.0)
    y, _ = engine.run(layer, x)
    assert y[0, 0] == 2 * 4 - 9 == -1
    for bits, expected in ((3, -1.0), (2, -9.0)):  # Δ = 4 exact; Δ = 28/3 converts 4 to 0
        lossy = chip.replace(adc=chip.adc.replace(bits=bits))
        assert engine.run(program(w, lossy), x)[0][0, 0] == expected


SIGNEDNESS = [(False, "twos_complement"), (True, "twos_complement"), (True, "two_pass")]


@pytest.mark.parametrize(("signed", "mode"), SIGNEDNESS, ids=["u", "s-twos", "s-two_pass"])
@pytest.mark.parametrize("dac", [1, 3, None], ids=["bit-serial", "dac3", "dac-all"])
def test_lossless_chip_computes_x_times_w_exactly(signed, mode, dac):
    chip = binary_chip(input_bits=6, dac_bits=dac, signed_inputs=mode, n_rows=40, n_cols=12,
                       rows_per_conversion=16)
    rng = np.random.default_rng(3)
    w = pm1(rng, 17, 95)
    x = random_inputs(rng, chip, signed, 9, 95)
    layer = program(w, chip, input_signed=signed)
    y, _ = engine.run(layer, x)
    assert_exact(y, x, w)
    y_api, _ = cimsim.matmul(x, w, chip)
    assert_exact(y_api, x, w)


@settings(max_examples=40)
@given(n=st.integers(1, 9), k=st.integers(1, 70), m=st.integers(1, 5),
       n_rows=st.integers(1, 24), rpc=st.integers(1, 24), n_cols=st.integers(1, 9),
       input_bits=st.integers(2, 8), dac=st.integers(1, 8), signed=st.booleans(),
       mode=st.sampled_from(["twos_complement", "two_pass"]), seed=st.integers(0, 2**32 - 1))
def test_lossless_exactness_property(n, k, m, n_rows, rpc, n_cols, input_bits, dac, signed,
                                     mode, seed):
    chip = binary_chip(input_bits=input_bits, dac_bits=min(dac, input_bits),
                       signed_inputs=mode, n_rows=n_rows, n_cols=n_cols,
                       rows_per_conversion=min(rpc, n_rows))
    rng = np.random.default_rng(seed)
    w = pm1(rng, n, k)
    x = random_inputs(rng, chip, signed, m, k)
    y, _ = engine.run(program(w, chip, input_signed=signed), x)
    assert_exact(y, x, w)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("comp", ["none", "digital", "analog"])
def test_engine_equals_reference_with_noise_and_a_lossy_adc(signed, comp):
    chip = binary_chip(
        input_bits=5, dac_bits=2, n_rows=37, n_cols=23, rows_per_conversion=16,
        on_off_ratio=17.0, off_current_compensation=comp, variation="lognormal",
        variation_sigma=0.1, p_stuck_on=0.01, p_stuck_off=0.01,
        noise=dict(thermal_sigma_lsb=0.7, read_noise_rel=0.03, nonlinearity="saturating",
                   saturation_fraction=0.8),
        adc=dict(bits=4, full_scale_factor=2.0, gain_error=0.02, offset_error_lsb=0.3,
                 comparator_noise_lsb=0.2))
    rng = np.random.default_rng(8)
    w = pm1(rng, 6, 50)
    x = random_inputs(rng, chip, signed, 7, 50)
    layer = program(w, chip, np.random.default_rng(2), input_signed=signed)
    y, _ = engine.run(layer, x, noise_seed=4, gemm="float64")
    y_ref = matmul_reference(x, layer, noise_seed=4)
    np.testing.assert_allclose(y, y_ref, rtol=1e-9, atol=1e-6)
    assert not np.array_equal(y, x @ w.T)  # the chip is lossy


def test_full_scale_range_is_one_binary_column():
    chip = binary_chip(input_bits=4, dac_bits=None, n_rows=64, rows_per_conversion=32)
    layer = program(pm1(np.random.default_rng(0), 3, 64), chip)
    # a column sums x·d over 32 rows with x <= 15, d <= 1 (g_off = 0 on the ideal chip)
    assert (layer.fs_lo, layer.fs_hi) == (0.0, 32 * 15.0)


def test_a_zero_weight_is_refused():
    chip = binary_chip()
    with pytest.raises(ValueError, match="-1 or \\+1 for weight_encoding='binary'"):
        program(np.array([[1, 0, -1]]), chip)
    with pytest.raises(ValueError, match="must lie in \\[-1, 1\\]"):
        program(np.array([[2, -1]]), chip)


@pytest.mark.parametrize(("changes", "field", "allowed"), [
    (dict(weight_bits=1), "weight_encoding", "'binary' for weight_bits = 1"),
    (dict(weight_encoding="binary", weight_bits=2), "weight_bits",
     "1 for weight_encoding = 'binary'"),
    (dict(weight_encoding="binary", weight_bits=1, bits_per_cell=2), "bits_per_cell",
     "1 for weight_encoding = 'binary'"),
    (dict(weight_bits=0), "weight_bits", "integer in [1, 16]"),
])
def test_bad_binary_configs_raise_config_error_naming_the_field(changes, field, allowed):
    base = cimsim.load_chip("ideal")
    bpc = changes.pop("bits_per_cell", 1)
    with pytest.raises(ConfigError, match=field) as err:
        base.replace(device=base.device.replace(bits_per_cell=bpc), **changes)
    assert allowed in str(err.value)


def test_toml_round_trip(tmp_path):
    chip = binary_chip(input_bits=4)
    text = chip.to_toml()
    assert 'weight_encoding = "binary"' in text and "weight_bits = 1" in text
    chip.save(tmp_path / "b.toml")
    back = cimsim.load_chip(tmp_path / "b.toml")
    assert back == chip
    assert back.weight_encoding is WeightEncoding.BINARY


def test_datasheet_workload_draws_plus_minus_one():
    from cimsim.cost.datasheet import workload

    chip = binary_chip(n_rows=32, n_cols=8)
    _, w = workload(chip)
    assert w.shape == (8, 32)  # one column per output
    assert set(np.unique(w)) == {-1, 1}


def test_datasheet_normalises_by_input_bits_times_one():
    from cimsim.cost.datasheet import N_VECTORS, datasheet

    chip = binary_chip(input_bits=4, n_rows=32, n_cols=8)
    sheet = datasheet(chip)
    assert sheet["ops"] == 2 * 32 * 8 * N_VECTORS  # one column per output: N = n_cols
    assert sheet["tops_1b"] == pytest.approx(sheet["tops"] * 4 * 1, rel=1e-12)
    assert sheet["tops_per_w_1b"] == pytest.approx(sheet["tops_per_w"] * 4, rel=1e-12)
    assert "4b input x 1b weight" in sheet["ops_convention"]

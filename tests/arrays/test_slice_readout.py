"""``array.slice_readout = 'analog'`` (issue 13): the slice columns of a weight combined with
binary weights into one conversion. Exact on the lossless chip, the engine equal to its NumPy
reference with noise, variation and lossy ADCs, the conversions (events) divided by the slice
count, the full-scale range of the combination, and the refused combinations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cimsim
from cimsim import engine
from cimsim.arrays._reference import matmul_reference
from cimsim.arrays.encoding import conversion_kinds
from cimsim.arrays.program import program
from cimsim.config import ChipConfig
from cimsim.errors import ConfigError, MappingError
from tests.conftest import (
    ENCODINGS,
    assert_exact,
    ideal_chip,
    random_inputs,
    random_weights,
)
from tests.test_matmul import _draw_mapping, draw_adc, noisy_operands

CONVERT = ("adc", "convert", 24)


def _combos():
    for enc in ENCODINGS:
        for readout in (("analog", "digital") if enc == "differential" else ("analog",)):
            yield enc, readout


@pytest.mark.parametrize(("enc", "readout"), list(_combos()))
@pytest.mark.parametrize("bpc", [1, 2, 3])
@pytest.mark.parametrize("signed", [False, True], ids=["u", "s"])
def test_lossless_chip_is_exact_and_converts_once_per_output(enc, readout, bpc, signed):
    kw = dict(encoding=enc, differential_readout=readout, bits_per_cell=bpc, dac_bits=2,
              n_rows=32, rows_per_conversion=16, n_cols=64)
    digital, analog = ideal_chip(**kw), ideal_chip(**kw, slice_readout="analog")
    rng = np.random.default_rng(bpc)
    w = random_weights(rng, analog, 9, 50)
    x = random_inputs(rng, analog, signed, 4, 50, zeros=0.2)
    per_output = 2 if (enc, readout) == ("differential", "digital") else 1
    y, ev = cimsim.matmul(x, w, analog, input_signed=signed)
    assert_exact(y, x, w)
    y_d, ev_d = cimsim.matmul(x, w, digital, input_signed=signed)
    layer_d = program(w, digital, input_signed=signed)
    layer_a = program(w, analog, input_signed=signed)
    assert layer_a.n_conversions == per_output * w.shape[0]
    # one conversion (and one shift-add) where there was one per slice column
    assert ev_d[CONVERT] == ev[CONVERT] * layer_d.n_conversions / layer_a.n_conversions
    assert ev_d[("shift_add", "add", 32)] == ev[("shift_add", "add", 32)] * \
        layer_d.n_conversions / layer_a.n_conversions
    # the same cells are read
    assert ev_d[("cell", "read", bpc)] == ev[("cell", "read", bpc)]


def test_combined_columns_leave_int8_for_an_exact_wider_gemm():
    # offset 8-bit weights combine to 0..255: beyond int8, exact float32 integers instead
    chip = ideal_chip(encoding="offset", bits_per_cell=1, slice_readout="analog", dac_bits=None)
    w = random_weights(np.random.default_rng(0), chip, 5, 256)
    layer = program(w, chip)
    assert layer.gemm_matrix.dtype == np.float32
    assert layer.gemm_matrix.max() == 255
    x = random_inputs(np.random.default_rng(1), chip, False, 3, 256)
    # 255 x 255 x 256 rows >= 2^24: the float64 GEMM, still exact
    assert_exact(engine.run(layer, x)[0], x, w)
    # a differential 8-bit weight's combination fits int8 (|w| <= 127): the int8 path stays
    diff = ideal_chip(bits_per_cell=1, slice_readout="analog")
    assert program(random_weights(np.random.default_rng(2), diff, 4, 8), diff
                   ).gemm_matrix.dtype == np.int8


@pytest.mark.parametrize(("enc", "lo", "hi"), [
    ("twos_complement", -128, 127), ("offset", 0, 255), ("differential", -127, 127),
    ("signed_cell", -127, 127)])
def test_full_scale_range_is_the_combined_columns(enc, lo, hi):
    # 16 rows, 1-b unsigned planes: the combined value of a row spans the weight range
    # (offset: the stored w + 128), twice 2-b cells of the top slice hold fewer levels
    chip = ideal_chip(encoding=enc, bits_per_cell=2, slice_readout="analog", n_rows=16)
    layer = program(np.zeros((2, 16), dtype=np.int64), chip)
    assert (layer.fs_lo, layer.fs_hi) == (16.0 * lo, 16.0 * hi)


def test_off_current_enters_with_each_slice_weight():
    # g_off > 0: analog compensation removes Σ_s 2^s·g_off per unit input (exact); the digital
    # correction x_sum_coef adds it back per output
    for comp in ("analog", "digital"):
        chip = ideal_chip(encoding="offset", bits_per_cell=2, on_off_ratio=4.0,
                          off_current_compensation=comp, slice_readout="analog", n_rows=16)
        w = random_weights(np.random.default_rng(3), chip, 3, 16)
        layer = program(w, chip)
        g_off = chip.device.g_off_lsb
        weights = conversion_kinds(chip).weight.sum()  # 1 + 4 + 16 + 64
        assert weights == 85.0
        if comp == "analog":
            np.testing.assert_array_equal(layer.off_add, 0.0)
            x = random_inputs(np.random.default_rng(4), chip, False, 5, 16)
            assert_exact(engine.run(layer, x)[0], x, w)
        else:
            np.testing.assert_allclose(layer.off_add, 85.0 * g_off)
            np.testing.assert_allclose(layer.x_sum_coef, -128.0 - 85.0 * g_off)


def test_read_noise_variance_adds_with_squared_weights():
    chip = ideal_chip(encoding="twos_complement", bits_per_cell=1, weight_bits=4,
                      slice_readout="analog", n_rows=8, noise=dict(read_noise_rel=0.1))
    w = np.array([[-8, 7, 5, -1, 0, 3, -4, 2]])
    layer = program(w, chip)
    d = layer.digits_phys.astype(np.float64)  # (K, 4): slices 1, 2, 4 and the sign (-8)
    expected = ((0.1 * d) ** 2) @ np.array([1.0, 4.0, 16.0, 64.0])
    np.testing.assert_allclose(layer.gemm_var[:, 0], expected, rtol=1e-6)


@st.composite
def noisy_problems(draw):
    input_bits = draw(st.integers(1, 5))
    n_rows = draw(st.integers(1, 10))
    variation = draw(st.sampled_from(["none", "lognormal", "gaussian"]))
    mapping = _draw_mapping(draw, input_bits, n_rows, 3, 6, 16)
    mapping["n_cols"] = max(mapping["n_cols"], 10)  # every slice of an output in one array
    chip = ideal_chip(
        slice_readout="analog",
        **mapping,
        on_off_ratio=draw(st.sampled_from([math.inf, 5.0, 17.0])),
        off_current_compensation=draw(st.sampled_from(["none", "analog", "digital"])),
        variation=variation,
        variation_sigma=0.0 if variation == "none" else draw(st.floats(0.01, 0.4)),
        p_stuck_on=draw(st.sampled_from([0.0, 0.05])),
        noise=dict(thermal_sigma_lsb=draw(st.sampled_from([0.0, 0.3, 2.0])),
                   read_noise_rel=draw(st.sampled_from([0.0, 0.05]))),
        adc=draw_adc(draw, 400.0),
    )
    return noisy_operands(draw, chip)


@settings(max_examples=60, deadline=None)
@given(noisy_problems())
def test_engine_equals_reference_with_noise_variation_and_lossy_adcs(problem):
    chip, x, x_cal, w, signed, prog_seed, noise_seed = problem
    layer = program(w, chip, np.random.default_rng(prog_seed), input_signed=signed)
    layer = engine.calibrate(layer, x_cal)
    y, _ = engine.run(layer, x, noise_seed=noise_seed)
    # the reference reads every physical column in float64 and weights it there
    y_ref = matmul_reference(x, layer, noise_seed=noise_seed)
    if layer.g_phys is None:
        np.testing.assert_allclose(y, y_ref, rtol=1e-9, atol=1e-6)
        return
    # programmed conductances are combined into one float32 GEMM column (one rounding of
    # Σ_s 2^(c·s)·G_s): values agree to float32 precision; a value that close to a code
    # boundary may convert one code apart, which must stay rare
    scale = max(1.0, float(np.abs(y_ref).max()))
    close = np.isclose(y, y_ref, rtol=1e-5, atol=1e-5 * scale)
    assert close.mean() >= 0.95, f"{(~close).sum()} of {close.size} outputs differ"


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_numba_kernel_equals_numpy_twin(data):
    chip = ideal_chip(
        slice_readout="analog", encoding=data.draw(st.sampled_from(ENCODINGS)),
        bits_per_cell=data.draw(st.integers(1, 3)), n_rows=12, rows_per_conversion=5,
        on_off_ratio=10.0, noise=dict(thermal_sigma_lsb=1.5, read_noise_rel=0.03),
        adc=dict(bits=6, range_policy="full_scale", full_scale_factor=2.0,
                 comparator_noise_lsb=0.2))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    w = random_weights(rng, chip, 4, 20)
    x = random_inputs(rng, chip, False, 3, 20)
    layer = program(w, chip)
    y, ev = engine.run(layer, x, noise_seed=7)
    y_np, ev_np = engine.run(layer, x, noise_seed=7, kernel="numpy")
    np.testing.assert_allclose(y, y_np, rtol=1e-12, atol=1e-9)
    # M · planes · row groups · outputs
    assert ev[("adc", "convert", 6)] == ev_np[("adc", "convert", 6)] == 3 * 8 * 5 * 4


def test_refused_combinations_name_the_field_and_allowed_values():
    for changes in (dict(encoding="ternary", bits_per_cell=1),
                    dict(noise=dict(nonlinearity="saturating")),
                    dict(adc=dict(kind="digital"), bits_per_cell=1)):
        with pytest.raises(ConfigError, match=r"ArrayConfig\.slice_readout = 'analog'.*"
                                              r"allowed: 'digital'"):
            ideal_chip(slice_readout="analog", **changes)
    with pytest.raises(ConfigError, match=r"slice_readout = 'both'.*'digital', 'analog'"):
        ideal_chip(slice_readout="both")


def test_all_slices_of_an_output_must_fit_one_array():
    chip = ideal_chip(slice_readout="analog", bits_per_cell=1, n_cols=10)  # 14 columns
    with pytest.raises(MappingError, match="slice_readout"):
        program(np.zeros((1, 4), dtype=np.int64), chip)


def test_toml_round_trip_and_the_default():
    assert cimsim.load_chip("ideal").array.slice_readout.value == "digital"
    chip = ideal_chip(slice_readout="analog")
    again = ChipConfig.from_dict(__import__("tomllib").loads(chip.to_toml()))
    assert again == chip
    assert again.array.slice_readout.value == "analog"


def test_one_conversion_per_output_allows_a_layer_output_adc_with_sliced_weights():
    # weights over several cells could not feed a layer-output ADC; combined in analog they do
    chip = ideal_chip(slice_readout="analog", bits_per_cell=2, dac_bits=None, n_rows=64,
                      adc=dict(placement="layer_output"))
    w = random_weights(np.random.default_rng(5), chip, 3, 40)
    x = random_inputs(np.random.default_rng(6), chip, False, 4, 40)
    y, ev = cimsim.matmul(x, w, chip)
    assert_exact(y, x, w)
    assert ev[CONVERT] == 4 * 3

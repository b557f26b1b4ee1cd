"""The nonlinear (ramp) ADC in the engine: kernel vs twins, uniform levels vs the linear ADC,
level fitting per granularity, layer-output placement."""

from __future__ import annotations

import numpy as np
import pytest

import cimsim
from cimsim import engine
from cimsim.adc._reference import nonlinear_adc_reference
from cimsim.arrays._reference import matmul_reference
from cimsim.arrays.program import program
from cimsim.errors import ConfigError, MappingError

METHODS = ["uniform", "lloyd_max", "cdf", "kmeans", "kmeans_optimal", "bs_kmq"]


def _chip(bits=3, level_fit="uniform", granularity="column", **noise):
    base = cimsim.load_chip("rram-22nm")
    return base.replace(
        array=base.array.replace(n_rows=40, n_cols=24, rows_per_conversion=20),
        adc=base.adc.replace(kind="ramp", bits=bits, level_fit=level_fit,
                             calibration_granularity=granularity),
        noise=base.noise.replace(**noise) if noise else base.noise.replace(thermal_sigma_lsb=0.0),
    )


def _operands(seed=0, m=24, k=90, n=5):
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, (n, k))
    x = np.where(rng.random((m, k)) < 0.5, 0, rng.integers(0, 256, (m, k)))
    return x, w


@pytest.mark.parametrize("granularity", ["layer", "array", "column"])
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_uniform_levels_equal_the_linear_adc(granularity, bits):
    """Uniform levels over the calibrated [min, max] are the literal linear ADC grid."""
    x, w = _operands()
    nl = _chip(bits, "uniform", granularity)
    lin = nl.replace(adc=nl.adc.replace(kind="sar", calibration_stat="minmax",
                                        zero_aligned=False))
    a = program(w, nl, np.random.default_rng(1))
    b = program(w, lin, np.random.default_rng(1))
    a = engine.calibrate(a, x)
    b = engine.calibrate(b, x)
    assert a.adc.thr is not None and b.adc.thr is None
    np.testing.assert_allclose(a.adc.lvl[..., 0], b.adc.lo, rtol=0, atol=1e-9)
    ya, _ = engine.run(a, x)
    yb, _ = engine.run(b, x)
    np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize("method", METHODS)
def test_kernel_equals_twins_with_noise(method):
    x, w = _operands(3)
    chip = _chip(3, method, "column", thermal_sigma_lsb=0.6, read_noise_rel=0.03)
    chip = chip.replace(adc=chip.adc.replace(comparator_noise_lsb=0.2, gain_error=0.01,
                                             offset_error_lsb=0.1))
    layer = engine.calibrate(program(w, chip, np.random.default_rng(2)), x)
    y_numba, ev1 = engine.run(layer, x, noise_seed=7)
    y_numpy, ev2 = engine.run(layer, x, noise_seed=7, kernel="numpy", chunk_vectors=5)
    np.testing.assert_allclose(y_numba, y_numpy, rtol=1e-12, atol=1e-6)
    y_loop = matmul_reference(x[:3], layer, noise_seed=7)
    y_head, _ = engine.run(layer, x[:3], noise_seed=7)
    np.testing.assert_allclose(y_head, y_loop, rtol=1e-12, atol=1e-6)
    assert ev1.keys() == ev2.keys()


def test_levels_are_fitted_per_unit():
    x, w = _operands(4)
    per = {}
    for gran in ("layer", "array", "column"):
        layer = engine.calibrate(program(w, _chip(3, "kmeans", gran), np.random.default_rng(1)),
                                 x)
        lvl = layer.adc.lvl.reshape(-1, layer.adc.lvl.shape[-1])
        per[gran] = len({tuple(np.round(row, 9)) for row in lvl})
        assert np.all(np.diff(layer.adc.lvl, axis=-1) >= 0)
        assert np.all(np.diff(layer.adc.thr, axis=-1) >= 0)
    assert per["layer"] == 1 < per["array"] <= per["column"]


@pytest.mark.parametrize("method", ["uniform", "kmeans"])
def test_a_unit_without_spread_spreads_its_levels_over_the_full_scale(method):
    """A row group whose calibration inputs were all 0 read one value: its levels all sat on
    it, and any later input of those rows read as that value (a linear ADC spreads such a
    unit's codes over the column's full scale, ``unseen_spread``). Now its levels span
    ``[fs_lo, fs_hi]`` (a fit's with the value seen among them); the other groups keep
    their fit."""
    x, w = _operands(5, k=80)
    x[:, 40:] = 0                                  # row groups 2 and 3 (20 rows each) unseen
    layer = engine.calibrate(program(w, _chip(3, method, "array"), np.random.default_rng(1)),
                             x)
    lvl = layer.adc.lvl
    assert np.ptp(lvl[:2], axis=-1).max() < 0.5 * (layer.fs_hi - layer.fs_lo)  # their own fit
    seen = lvl[2:]
    assert layer.fs_lo <= seen.min() and seen.max() <= layer.fs_hi
    assert np.ptp(seen, axis=-1).min() >= 0.75 * (layer.fs_hi - layer.fs_lo)
    assert np.all(np.diff(seen, axis=-1) > 0)
    if method != "uniform":  # a fit to the samples: the value it saw (0: no input) a level
        assert np.all(np.isclose(seen, 0.0, atol=1e-9).any(axis=-1))


def test_nonlinear_reference_codes_and_ties():
    thr = np.array([[0.0, 1.0, 2.0]])
    lvl = np.array([[-1.0, 0.5, 1.5, 3.0]])
    a = np.array([[-5.0], [0.0], [0.999], [1.0], [2.0], [9.0]])
    out = nonlinear_adc_reference(a, thr, lvl)[:, 0]
    np.testing.assert_array_equal(out, [-1.0, 0.5, 0.5, 1.5, 3.0, 3.0])  # ties go up


def test_ramp_needs_calibrated_range():
    with pytest.raises(ConfigError, match="range_policy"):
        cimsim.ChipConfig(adc=cimsim.config.ADCConfig(kind="ramp", range_policy="full_scale"))


def test_layer_output_placement_needs_one_conversion_per_output():
    ideal = cimsim.load_chip("ideal")
    # what the chip alone decides is refused at its config (each failed before the check)
    with pytest.raises(ConfigError, match=r"DACConfig\.bits = 1 .*not 8 planes"):
        ideal.replace(adc=ideal.adc.replace(placement="layer_output"))
    with pytest.raises(ConfigError, match=r"ADCConfig\.placement .*4 conversion columns"):
        ideal.replace(adc=ideal.adc.replace(placement="layer_output"),
                      dac=ideal.dac.replace(bits=None))
    chip = ideal.replace(weight_bits=3, dac=ideal.dac.replace(bits=None),
                         adc=ideal.adc.replace(placement="layer_output"),
                         device=ideal.device.replace(bits_per_cell=2))
    w = np.ones((3, 10 ** 4), dtype=np.int64)
    with pytest.raises(MappingError, match="one conversion per output"):
        program(w, chip)  # what the layer decides: more rows than one conversion sums
    one = chip
    layer = program(np.array([[1, -2, 3, 0]]), one)
    y, _ = engine.run(layer, np.array([[3, 1, 2, 7]]))
    assert y[0, 0] == 3 - 2 + 6


def test_a_ramp_spans_its_calibration_values_whatever_the_samples_kept():
    """The level fit sees a strided subset of the conversions (rows plane by plane: with
    8 planes and an even number of vectors the stride 2 keeps the even vectors only); its
    clamp limits were that subset's extremes, so the odd vectors' partial sums (9, where the
    even ones reach 3) lay beyond the top level: a calibration vector read 765 for 2295. The
    limits are the exact running extremes: a uniform fit is the linear ADC on them."""
    from cimsim.adc.levels import fit_levels

    chip = cimsim.load_chip("ideal")
    chip = chip.replace(device=chip.device.replace(bits_per_cell=7),  # one slice
                        adc=chip.adc.replace(kind="ramp", bits=3, level_fit="uniform",
                                             range_policy="calibrated",
                                             calibration_granularity="column"))
    w = np.ones((1, 9), dtype=np.int64)
    x_cal = np.zeros((4096, 9), dtype=np.int64)
    x_cal[0::2, :3] = 7  # even vectors: partial sum 3 in planes 0-2, 0 in the others
    x_cal[1::2] = 255    # odd vectors: 9 in every plane
    layer = engine.calibrate(program(w, chip, np.random.default_rng(0), input_signed=False),
                             x_cal)
    exact = np.stack([((x_cal >> p) & 1) @ w.T for p in range(8)]).astype(np.float64)
    np.testing.assert_array_equal(layer.adc.lvl[0, 0], fit_levels(exact, 3, "uniform").levels)
    y, _ = cimsim.matmul(x_cal[:2], w, chip, calibration=x_cal)
    assert y[1, 0] == 2295  # 9 in every plane: the top level, exact

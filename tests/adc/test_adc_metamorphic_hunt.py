"""Metamorphic relations of converters, calibration and time (a bug hunt).

Each test relates two runs whose relation follows from the documented semantics
(docs/hardware-model.md §§5a, 6, 7; docs/levels.md; docs/drift.md). No relation here failed
on the code of the hunt; they are kept because no other test states them. Noise-free unless a
test says otherwise.
"""

from __future__ import annotations

import numpy as np
import pytest

import cimsim
from cimsim import engine
from cimsim.adc import FitMethod, fit_levels
from cimsim.arrays import program

_LINEAR_KINDS = ("sar", "flash", "single_slope", "cco", "integrate_fire", "tdc")


def _chip(*, weight_encoding="differential", input_bits=6, dac_bits=6, n_rows=16, n_cols=32,
          rows_per_conversion=None, adc=None, device=None, noise=None, array=None):
    """A small chip from the lossless ``ideal`` preset with the sections changed as given."""
    c = cimsim.load_chip("ideal")
    c = c.replace(weight_bits=4, input_bits=input_bits, weight_encoding=weight_encoding,
                  array=c.array.replace(n_rows=n_rows, n_cols=n_cols,
                                        rows_per_conversion=rows_per_conversion,
                                        **(array or {})),
                  dac=c.dac.replace(bits=dac_bits))
    return c.replace(adc=c.adc.replace(**(adc or {})), device=c.device.replace(**(device or {})),
                     noise=c.noise.replace(**(noise or {})))


def _data(seed, m=40, k=40, n=5, x_max=31, w_max=7, signed=False):
    r = np.random.default_rng(seed)
    x = r.integers(-x_max if signed else 0, x_max + 1, (m, k))
    w = r.integers(-w_max, w_max + 1, (n, k))
    return x, w


_VARIED = dict(cell="rram", on_off_ratio=17.0, variation="lognormal", variation_sigma=0.1,
               off_current_compensation="none")


# ---- scaling ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, stat, fit", [
    ("sar", "minmax", "uniform"), ("sar", "percentile", "uniform"),
    ("sar", "mean_std", "uniform"), ("ramp", "minmax", "kmeans_optimal"),
    ("ramp", "minmax", "bs_kmq"), ("ramp", "minmax", "cdf")])
@pytest.mark.parametrize("granularity", ["layer", "column"])
@pytest.mark.parametrize("device", [{}, _VARIED], ids=["ideal", "varied"])
def test_doubling_inputs_and_calibration_doubles_the_output(kind, stat, fit, granularity,
                                                            device):
    """One input plane (dac.bits = input_bits): inputs and calibration inputs x2 (still in
    range) double every analog value (§6 step 1, the off-current term included), so every
    calibrated range or fitted level set doubles (min/max, percentiles, mean ± n·std; level
    fits are equivariant under a positive scale), every code is the same, and the output is
    exactly 2x (a power-of-two scale is exact in float). Holds for the calibrated margin too
    while it stays inside the full scale."""
    chip = _chip(device=device, adc=dict(
        kind=kind, bits=4, range_policy="calibrated", calibration_stat=stat,
        calibration_granularity=granularity, level_fit=fit, percentile=95.0, n_sigma=1.5,
        calibration_margin=0.1 if kind == "sar" else 0.0))
    x, w = _data(0)
    cal = _data(10)[0]
    y1, _ = cimsim.matmul(x, w, chip, seed=0, calibration=cal, input_signed=False)
    y2, _ = cimsim.matmul(2 * x, w, chip, seed=0, calibration=2 * cal, input_signed=False)
    np.testing.assert_array_equal(y2, 2 * y1)


def test_a_gain_error_of_minus_one_half_equals_a_doubled_fixed_range_halved():
    """§6 step 4: the ADC converts v = a·(1 + gain_error). With gain_error = -0.5 the ADC sees
    a/2, which on the grid of [lo, hi] gives the codes that a on the grid of [2lo, 2hi] gives
    (the zero-aligned grid of a doubled range is the doubled grid): the converted sums are
    exactly half, and the same conversions clip."""
    for zero_aligned in (True, False):
        for enc in ("differential", "twos_complement", "offset"):
            for lo, hi in ((-50.0, 150.0), (-37.3, 91.1), (3.0, 70.0)):
                def run(gain, a, b, enc=enc, zero_aligned=zero_aligned):
                    chip = _chip(weight_encoding=enc, dac_bits=2, adc=dict(
                        bits=4, range_policy="fixed", fixed_lo=a, fixed_hi=b,
                        gain_error=gain, zero_aligned=zero_aligned))
                    x, w = _data(1)
                    layer = program(w, chip, 0)
                    res = engine.run_detailed(layer, x)
                    exact = x.sum(axis=1)[:, None] * layer.x_sum_coef[None, :]
                    return res.y - exact, res.n_clipped

                y_half, clip_half = run(-0.5, lo, hi)
                y_wide, clip_wide = run(0.0, 2 * lo, 2 * hi)
                np.testing.assert_allclose(y_half, 0.5 * y_wide, rtol=0, atol=1e-9)
                assert clip_half == clip_wide


# ---- converter kinds, multiplexing, placement ------------------------------------------------

@pytest.mark.parametrize("policy", ["full_scale", "calibrated", "fixed"])
def test_every_linear_kind_gives_the_same_codes_with_noise_and_adc_errors(policy):
    """§7: sar, flash, single_slope, cco, integrate_fire and tdc "differ in cost only, not in
    the codes they give": same outputs bit for bit, with thermal noise, gain and offset
    errors and comparator noise on (the same seed draws the same noise)."""
    ys = {}
    for kind in _LINEAR_KINDS:
        chip = _chip(weight_encoding="twos_complement", dac_bits=2, adc=dict(
            kind=kind, bits=4, range_policy=policy, fixed_lo=-50, fixed_hi=150,
            gain_error=0.03, offset_error_lsb=0.3, comparator_noise_lsb=0.4),
            noise=dict(thermal_sigma_lsb=0.7))
        x, w = _data(1)
        ys[kind] = cimsim.matmul(x, w, chip, seed=3, calibration=_data(5)[0])[0]
    for kind in _LINEAR_KINDS[1:]:
        np.testing.assert_array_equal(ys[kind], ys["sar"], err_msg=kind)


@pytest.mark.parametrize("kind, policy, granularity", [
    ("sar", "full_scale", "layer"), ("sar", "calibrated", "column"),
    ("sar", "calibrated", "array"), ("ramp", "calibrated", "array")])
def test_cols_per_adc_changes_neither_outputs_nor_events(kind, policy, granularity):
    """``cols_per_adc`` is the mux ratio (ADCs per array, docs/cost-model.md): the cost model
    reads it, the run does not. Same outputs (noise on) and the same events at 1, 3, 8, 32."""
    ref = None
    for cpa in (1, 3, 8, 32):
        chip = _chip(dac_bits=2, array=dict(cols_per_adc=cpa), adc=dict(
            kind=kind, bits=4, range_policy=policy, calibration_granularity=granularity,
            comparator_noise_lsb=0.3), noise=dict(thermal_sigma_lsb=0.5))
        x, w = _data(1, n=9)
        y, ev = cimsim.matmul(x, w, chip, seed=3, calibration=_data(5)[0])
        if ref is None:
            ref = (y, dict(ev.items()))
        else:
            np.testing.assert_array_equal(y, ref[0])
            assert dict(ev.items()) == ref[1]


@pytest.mark.parametrize("enc, slice_readout, bits_per_cell", [
    ("differential", "analog", 2), ("signed_cell", "digital", 3),
    ("twos_complement", "analog", 2), ("offset", "analog", 1)])
@pytest.mark.parametrize("kind, policy", [("sar", "full_scale"), ("sar", "calibrated"),
                                          ("ramp", "calibrated")])
def test_layer_output_placement_computes_as_partial_sum(enc, slice_readout, bits_per_cell,
                                                        kind, policy):
    """§7 Placement: "``placement = layer_output`` computes exactly as ``partial_sum``" (one
    conversion per output: one plane, one row group, one conversion column). Outputs (noise
    on) and events equal."""
    runs = []
    for placement in ("partial_sum", "layer_output"):
        chip = _chip(weight_encoding=enc, array=dict(slice_readout=slice_readout),
                     device=dict(bits_per_cell=bits_per_cell), adc=dict(
                         kind=kind, bits=5, range_policy=policy, placement=placement,
                         comparator_noise_lsb=0.3), noise=dict(thermal_sigma_lsb=0.5))
        x, w = _data(1, k=16, n=9)
        runs.append(cimsim.matmul(x, w, chip, seed=3, calibration=_data(5, k=16)[0]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert dict(runs[0][1].items()) == dict(runs[1][1].items())


# ---- calibration statistics ------------------------------------------------------------------

@pytest.mark.parametrize("granularity", ["layer", "array", "column"])
@pytest.mark.parametrize("device", [{}, _VARIED], ids=["ideal", "varied"])
def test_ramp_uniform_equals_the_literal_minmax_linear_adc_with_noise(granularity, device):
    """docs/levels.md: ``uniform`` "is exactly the linear ADC on [lo, hi]" and both ADCs "agree
    on every input, exact ties included"; §7: a ramp's clamp limits are the unit's exact
    running extremes, as the linear ADC's min/max, and its ADC-LSB is the mean level spacing
    (the linear Δ). So a ``ramp`` with ``level_fit = uniform`` equals a calibrated ``minmax``
    linear ADC with the literal grid (``zero_aligned = false``) bit for bit, with thermal
    noise, gain and offset errors and comparator noise on, and the same conversions clip."""
    for bits in (1, 3, 5):
        res = []
        for kind in ("sar", "ramp"):
            chip = _chip(dac_bits=2, rows_per_conversion=8, device=device,
                         noise=dict(thermal_sigma_lsb=0.8), adc=dict(
                             kind=kind, bits=bits, range_policy="calibrated",
                             calibration_stat="minmax", calibration_granularity=granularity,
                             level_fit="uniform", zero_aligned=False, gain_error=0.05,
                             offset_error_lsb=0.4, comparator_noise_lsb=0.3))
            x, w = _data(1, m=50)
            layer = engine.calibrate(program(w, chip, 0), _data(4, m=50)[0])
            res.append(engine.run_detailed(layer, x, noise_seed=7))
        np.testing.assert_array_equal(res[0].y, res[1].y)
        assert res[0].n_clipped == res[1].n_clipped


@pytest.mark.parametrize("granularity", ["layer", "array", "column"])
@pytest.mark.parametrize("enc", ["differential", "twos_complement", "offset", "signed_cell"])
def test_wide_percentile_and_mean_std_equal_minmax_and_calibration_data_never_clips(
        granularity, enc):
    """§7: ``percentile`` is [P_(100-p), P_p] (np.percentile: p = 100 is the max) of the kept
    samples (all of them here, float32: exact for integer analog values); ``mean_std`` is
    mean ± n·std clipped to the pooled [min, max] (huge n: the min and max). Both then equal
    ``minmax``. And a ``minmax`` range run on its own calibration data, noise-free, never
    clips (the grid covers [lo, hi])."""
    ys = {}
    for stat, extra in (("minmax", {}), ("percentile", dict(percentile=100.0)),
                        ("mean_std", dict(n_sigma=1e9))):
        chip = _chip(weight_encoding=enc, dac_bits=2, rows_per_conversion=8, adc=dict(
            bits=5, range_policy="calibrated", calibration_stat=stat,
            calibration_granularity=granularity, **extra))
        x, w = _data(1)
        res = engine.run_detailed(engine.calibrate(program(w, chip, 0), x), x)
        ys[stat] = res.y
        assert res.n_clipped == 0, stat
    np.testing.assert_array_equal(ys["percentile"], ys["minmax"])
    np.testing.assert_array_equal(ys["mean_std"], ys["minmax"])


@pytest.mark.parametrize("kind, stat, fit", [
    ("sar", "minmax", "uniform"), ("sar", "mean_std", "uniform"),
    ("sar", "percentile", "uniform"), ("ramp", "minmax", "kmeans_optimal"),
    ("ramp", "minmax", "bs_kmq"), ("ramp", "minmax", "lloyd_max")])
def test_reordering_and_duplicating_calibration_vectors(kind, stat, fit):
    """Ideal cells (integer analog values, so the mean/std sums are exact in any order). The
    calibration vectors' order does not matter below the kept-sample cap (§7, RangeStats: all
    rows kept); duplicating every vector keeps min/max, mean and std, and the Lloyd-type and
    exact K-means fits (same masses); percentiles of the layer unit happen to stay too here
    (np.percentile's interpolation can move them in general, not asserted for column units)."""
    for granularity in ("layer", "array", "column"):
        chip = _chip(dac_bits=2, adc=dict(
            kind=kind, bits=4, range_policy="calibrated", calibration_stat=stat,
            calibration_granularity=granularity, level_fit=fit, percentile=97.0))
        x, w = _data(1)
        cal = _data(9, m=60)[0]
        y0 = cimsim.matmul(x, w, chip, seed=0, calibration=cal)[0]
        perm = cal[np.random.default_rng(3).permutation(len(cal))]
        np.testing.assert_array_equal(cimsim.matmul(x, w, chip, seed=0, calibration=perm)[0],
                                      y0)
        if stat == "percentile" and granularity == "column":
            continue
        twice = np.concatenate([cal, cal])
        np.testing.assert_array_equal(cimsim.matmul(x, w, chip, seed=0, calibration=twice)[0],
                                      y0)


# ---- noise sampler ---------------------------------------------------------------------------

def test_exact_sampler_thermal_noise_equals_comparator_noise_of_the_same_steps(monkeypatch):
    """§6 (``CIMSIM_NOISE_SAMPLER=exact``): a conversion's noise is one Gaussian of
    s = sqrt((σ_th·(1 + gain)/Δ)² + σ_cmp²) ADC steps, drawn from the noise stream. So thermal
    noise σ_th with no comparator noise and comparator noise σ_th/Δ with no thermal noise give
    the same s, hence the same codes bit for bit, and the same clip counts."""
    monkeypatch.setenv("CIMSIM_NOISE_SAMPLER", "exact")
    for enc in ("differential", "twos_complement"):
        for bits in (16, 6):
            for sigma in (0.3, 1.7):
                thermal = _chip(weight_encoding=enc, dac_bits=2, adc=dict(bits=bits),
                                noise=dict(thermal_sigma_lsb=sigma))
                x, w = _data(1, m=100)
                layer = program(w, thermal, 0)
                delta = layer.adc.delta[0, 0]
                comparator = _chip(weight_encoding=enc, dac_bits=2,
                                   adc=dict(bits=bits, comparator_noise_lsb=sigma / delta))
                a = engine.run_detailed(layer, x, noise_seed=5)
                b = engine.run_detailed(program(w, comparator, 0), x, noise_seed=5)
                np.testing.assert_array_equal(a.y, b.y)
                assert a.n_clipped == b.n_clipped


# ---- level fits ------------------------------------------------------------------------------

def _samples():
    r = np.random.default_rng(0)
    return {
        "normal": r.normal(size=2000),
        "grid": np.clip(np.round(r.normal(0, 8, 2000)), 0, 16),
        "masses": np.concatenate([np.zeros(800), np.ones(200),
                                  np.abs(r.normal(0, 0.3, 1000)).clip(0, 1)]),
    }


@pytest.mark.parametrize("method", [m.value for m in FitMethod])
def test_level_fits_ignore_sample_order_and_follow_positive_affine_maps(method):
    """docs/levels.md: every method is defined on the sorted, clipped samples (quantiles,
    cell means, exact K-means on distinct values and counts), so the samples' order does not
    change the fit (bit for bit); and each definition commutes with a positive affine map
    a·x + b of the samples (lo/hi, quantiles, means, the binning over [min, max], tolerances
    relative to the range), so the levels map with it (to float rounding)."""
    for name, x in _samples().items():
        for bits in (2, 3, 4):
            ref = fit_levels(x, bits, method)
            shuffled = fit_levels(np.random.default_rng(9).permutation(x), bits, method)
            np.testing.assert_array_equal(shuffled.levels, ref.levels, err_msg=name)
            np.testing.assert_array_equal(shuffled.thresholds, ref.thresholds, err_msg=name)
            for a, b in ((2.0, 0.0), (0.5, -3.25), (4.0, 1000.0)):
                moved = fit_levels(a * x + b, bits, method)
                np.testing.assert_allclose(moved.levels, a * ref.levels + b, rtol=0,
                                           atol=1e-6 * a * np.ptp(x), err_msg=name)


# ---- time ------------------------------------------------------------------------------------

_T = (1.0, 10.0, 3600.0, 86400.0, 3.15e7)


@pytest.mark.parametrize("policy", ["full_scale", "calibrated"])
@pytest.mark.parametrize("enc, slice_readout", [
    ("differential", "digital"), ("differential", "analog"), ("twos_complement", "digital"),
    ("signed_cell", "digital")])
def test_drift_without_compensation_never_raises_an_output_of_non_negative_operands(
        policy, enc, slice_readout):
    """docs/drift.md §2: "drift is a power law per cell (monotone: G(t) never grows when ν ≥ 0
    and there is no retention term)". With non-negative weights and inputs, no off-current
    (on/off = inf), no noise and no compensation, every conversion's analog value is a sum of
    non-negative terms that never grows, the ADC is monotone and every significance that
    carries a nonzero digit is positive: each output is non-increasing in t, and equals
    x·wᵀ at t0 on the full-scale (lossless) chip."""
    chip = _chip(weight_encoding=enc, dac_bits=2, array=dict(slice_readout=slice_readout),
                 device=dict(drift_nu_mean=(0.1, 0.05, 0.05, 0.05),
                             drift_nu_sigma=(0.04, 0.01, 0.01, 0.01)),
                 adc=dict(bits=12 if policy == "full_scale" else 8, range_policy=policy))
    x, w = _data(1, n=6)
    w = np.abs(w)
    layer = engine.calibrate(program(w, chip, np.random.default_rng(0)), _data(7)[0])
    prev = None
    for t in _T:
        y, _ = engine.run(layer.with_time(t), x)
        if t == _T[0] and policy == "full_scale":
            np.testing.assert_array_equal(y, x @ w.T)
        if prev is not None:
            assert np.all(y <= prev), t
        prev = y


@pytest.mark.parametrize("enc", ["differential", "twos_complement", "offset"])
def test_uniform_drift_makes_column_compensation_equal_global(enc):
    """docs/drift.md §3: ``column`` gains α_c = r_c(t0)/r_c(t), ``global`` one
    α = Σ r_c(t0)/Σ r_c(t). Under a uniform drift (one ν for every cell, no spread) every
    column's current falls by the same (t/t0)^(-ν), so each α_c equals the global α and the
    two compensations give the same outputs (to float rounding of the gains)."""
    ys = {}
    for comp in ("global", "column"):
        chip = _chip(weight_encoding=enc, dac_bits=2,
                     device=dict(cell="pcm", drift_nu_mean=(0.06,), drift_nu_sigma=(0.0,),
                                 drift_compensation=comp),
                     adc=dict(bits=10, range_policy="calibrated"))
        x, w = _data(1, n=6)
        layer = engine.calibrate(program(w, chip, np.random.default_rng(0)), _data(7)[0])
        ys[comp] = [engine.run(layer.with_time(t), x)[0] for t in _T]
    for a, b in zip(ys["global"], ys["column"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)

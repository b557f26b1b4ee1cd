"""Tests of nonlinear-ADC level fitting (cimsim.adc.levels)."""

from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cimsim.adc.levels import (
    FitMethod,
    Levels,
    _midpoints,
    _optimal_partition,
    _optimal_partition_numpy,
    fit_levels,
    quantization_mse,
)
from cimsim.errors import ConfigError
from scripts.levels_bs_kmq_figures import continuous, integer_grid

METHODS = [m.value for m in FitMethod]


# The two ReLU + clamp distributions of docs/levels.md's BS-KMQ table, shared with its script.
_point_mass_sample = continuous  # 40 % zeros, 10 % at the clamp 1.0, half-normal(0.3) inside
_relu_clamp_grid = integer_grid  # round(N(0, 8)) clipped to [0, 16]


def _linear_adc_codes(a: np.ndarray, lo: float, hi: float, bits: int) -> np.ndarray:
    n_levels = 2**bits
    step = (hi - lo) / (n_levels - 1)
    return np.clip(np.floor((a - lo) / step + 0.5), 0, n_levels - 1).astype(np.intp)


def _brute_force_sse(x: np.ndarray, k: int) -> float:
    """Smallest SSE over all contiguous partitions of the sorted distinct values into <= k parts."""
    values, counts = np.unique(x, return_counts=True)
    if values.size <= k:
        return 0.0
    best = np.inf
    for cuts in combinations(range(1, values.size), k - 1):
        sse = 0.0
        for v, w in zip(np.split(values, cuts), np.split(counts.astype(float), cuts), strict=True):
            mean = np.sum(w * v) / np.sum(w)
            sse += float(np.sum(w * (v - mean) ** 2))
        best = min(best, sse)
    return best


# Values with deliberate ties and point masses at 0 and 1 as well as generic floats.
_values = st.one_of(
    st.just(0.0),
    st.just(1.0),
    st.integers(0, 8).map(lambda i: i / 8),
    st.floats(0.0, 1.0, allow_subnormal=False),
)
_small_samples = st.lists(_values, min_size=1, max_size=10).map(np.array)


# ---------------------------------------------------------------------------------------------
# Levels
# ---------------------------------------------------------------------------------------------


def test_levels_codes_ties_go_up_and_clamp():
    lv = Levels(np.array([0.5, 1.5, 2.5]), np.array([0.0, 1.0, 2.0, 3.0]))
    a = np.array([[-9.0, 0.5, np.nextafter(0.5, 0)], [1.5, 2.5, 99.0]])
    np.testing.assert_array_equal(lv.codes(a), [[0, 1, 0], [2, 3, 3]])
    np.testing.assert_array_equal(lv.quantize(a), [[0.0, 1.0, 0.0], [2.0, 3.0, 3.0]])
    assert lv.bits == 2
    assert lv.thresholds.dtype == np.float64 and not lv.levels.flags.writeable


@pytest.mark.parametrize(
    ("thresholds", "levels", "field"),
    [
        ([0.5, 0.2, 0.7], [0, 1, 2, 3], "thresholds"),
        ([0.5, 0.6], [0, 1, 2, 3], "thresholds"),
        ([0.5, 0.6], [0, 1, 2], "levels"),
        ([0.5, 0.6, 0.7], [0, 2, 1, 3], "levels"),
        ([0.5, np.nan, 0.7], [0, 1, 2, 3], "thresholds"),
    ],
)
def test_levels_validation_names_field(thresholds, levels, field):
    with pytest.raises(ConfigError, match=field):
        Levels(np.array(thresholds, dtype=float), np.array(levels, dtype=float))


# ---------------------------------------------------------------------------------------------
# fit_levels: API
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [*METHODS, FitMethod.BS_KMQ])
@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_shapes_bits_and_order(method, bits):
    x = _point_mass_sample(0, 2_000).reshape(40, 50)
    lv = fit_levels(x, bits, method)
    n_levels = 2**bits
    assert lv.bits == bits
    assert lv.thresholds.shape == (n_levels - 1,) and lv.levels.shape == (n_levels,)
    assert np.all(np.diff(lv.thresholds) >= 0) and np.all(np.diff(lv.levels) >= 0)
    assert lv.levels[0] >= 0.0 and lv.levels[-1] <= 1.0


@pytest.mark.parametrize("method", METHODS)
def test_few_unique_values_still_give_all_levels(method):
    x = np.array([0.2, 0.2, 0.7, 0.45, 0.2])
    lv = fit_levels(x, 3, method)
    assert lv.levels.shape == (8,) and np.all(np.diff(lv.thresholds) >= 0)
    if method != "uniform":
        assert quantization_mse(x, lv) == 0.0
    constant = fit_levels(np.full(7, 0.3), 2, method)
    np.testing.assert_array_equal(constant.levels, np.full(4, 0.3))


def test_nan_and_inf_raise_value_error():
    with pytest.raises(ValueError, match="NaN"):
        fit_levels(np.array([0.1, np.nan]), 2, "kmeans")
    with pytest.raises(ValueError, match="inf"):
        fit_levels(np.array([0.1, np.inf]), 2, "kmeans")
    with pytest.raises(ValueError, match="NaN"):
        quantization_mse(np.array([np.nan]), fit_levels(np.arange(4.0), 1, "uniform"))


def test_bad_method_names_allowed_values():
    with pytest.raises(ConfigError) as info:
        fit_levels(np.arange(10.0), 2, "k-means")
    for name in METHODS:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bits": 0}, "bits"),
        ({"bits": 2.0}, "bits"),
        ({"lo": 5.0, "hi": 1.0}, "lo"),
        ({"method": "uniform", "tol": 1e-3}, "tol"),
        ({"method": "kmeans", "tol": -1.0}, "tol"),
        ({"method": "kmeans_optimal", "max_bins": 2}, "max_bins"),
        ({"method": "bs_kmq", "min_mass": 2.0}, "min_mass"),
        ({"method": "bs_kmq", "eps": 0.6}, "eps"),
    ],
)
def test_bad_parameters_raise_config_error(kwargs, match):
    args = {"bits": 2, "method": "bs_kmq", **kwargs}
    with pytest.raises(ConfigError, match=match):
        fit_levels(np.linspace(0.0, 1.0, 50), **args)


def test_lo_hi_clamp_the_samples():
    x = np.linspace(-1.0, 2.0, 301)
    lv = fit_levels(x, 2, "kmeans", lo=0.0, hi=1.0)
    assert lv.levels[0] >= 0.0 and lv.levels[-1] <= 1.0
    ref = fit_levels(np.clip(x, 0.0, 1.0), 2, "kmeans")
    np.testing.assert_array_equal(lv.levels, ref.levels)


# ---------------------------------------------------------------------------------------------
# uniform, cdf
# ---------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    lo=st.floats(-1e3, 1e3),
    width=st.floats(1e-6, 1e3),
    bits=st.integers(1, 10),
    u=st.lists(st.floats(-0.2, 1.2), min_size=1, max_size=20),
)
def test_uniform_equals_linear_adc(lo, width, bits, u):
    hi = lo + width
    lv = fit_levels(np.array([lo, hi]), bits, "uniform", lo=lo, hi=hi)
    n_levels = 2**bits
    step = (hi - lo) / (n_levels - 1)
    np.testing.assert_array_equal(lv.levels, lo + np.arange(n_levels) * step)
    naive = lo + (np.arange(1, n_levels) - 0.5) * step
    assert np.all(np.abs(lv.thresholds - naive) <= 4 * np.spacing(np.abs(naive) + abs(lo)))
    # Exact ties at the thresholds (and one ulp either side) are where rounding would differ.
    t = lv.thresholds
    a = np.concatenate(
        [lo + np.array(u) * width, t, naive, np.nextafter(t, -np.inf), np.nextafter(t, np.inf)]
    )
    np.testing.assert_array_equal(lv.codes(a), _linear_adc_codes(a, lo, hi, bits))
    np.testing.assert_array_equal(lv.codes(t), np.arange(1, n_levels))


def test_cdf_thresholds_are_equal_probability_quantiles():
    x = np.random.default_rng(3).beta(2.0, 5.0, 10_001)
    for bits in (2, 3, 4):
        n_levels = 2**bits
        lv = fit_levels(x, bits, "cdf")
        probs = np.arange(1, n_levels) / n_levels
        np.testing.assert_array_equal(lv.thresholds, np.quantile(x, probs))
        below = np.mean(x[:, None] < lv.thresholds, axis=0)
        np.testing.assert_allclose(below, probs, atol=1.5 / x.size)
        codes = lv.codes(x)
        cond_means = [x[codes == c].mean() for c in range(n_levels)]
        np.testing.assert_allclose(lv.levels, cond_means, rtol=1e-12)


def test_cdf_ties_nudged_to_strictly_increasing():
    x = _point_mass_sample(1, 5_000)
    for bits in (2, 3, 4):
        lv = fit_levels(x, bits, "cdf", lo=0.0, hi=1.0)
        assert np.all(np.diff(lv.thresholds) > 0)
        assert 0.0 <= lv.thresholds[0] and lv.thresholds[-1] <= 1.0
        codes = lv.codes(x)
        assert np.unique(codes[x == 0.0]).size == 1 and np.unique(codes[x == 1.0]).size == 1
        if bits >= 3:  # >= 2 quantiles fall in the zero mass: the zeros get a cell of their own
            assert np.all(lv.levels[codes[x == 0.0]] == 0.0)
    # Mass at the top too heavy for upward nudging stays below hi.
    top = np.concatenate([np.linspace(0.0, 1.0, 40), np.ones(60)])
    lv = fit_levels(top, 3, "cdf")
    assert np.all(np.diff(lv.thresholds) > 0) and lv.thresholds[-1] == 1.0


# ---------------------------------------------------------------------------------------------
# Lloyd-Max, K-means
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("data", ["point_mass", "beta"])
@pytest.mark.parametrize("method", ["lloyd_max", "kmeans"])
def test_lloyd_fixed_point(method, data, bits):
    if data == "beta":
        x = np.random.default_rng(4).beta(2.0, 5.0, 20_000)
    else:
        x = _point_mass_sample(4)
    # Lloyd needs a few hundred steps at 4 bits; the default max_iter=200 can stop short.
    lv = fit_levels(x, bits, method, max_iter=5_000)
    np.testing.assert_array_equal(lv.thresholds, 0.5 * (lv.levels[:-1] + lv.levels[1:]))
    codes = lv.codes(x)
    used = np.unique(codes)
    centroids = np.array([x[codes == c].mean() for c in used])
    np.testing.assert_allclose(lv.levels[used], centroids, rtol=0, atol=1e-9 * np.ptp(x))
    if method == "lloyd_max":  # descends from the uniform quantizer it starts at
        assert quantization_mse(x, lv) <= quantization_mse(x, fit_levels(x, bits, "uniform"))


# ---------------------------------------------------------------------------------------------
# Exact K-means
# ---------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(x=_small_samples, k=st.integers(1, 4))
def test_optimal_partition_equals_brute_force(x, k):
    values, counts = np.unique(x, return_counts=True)
    k = min(k, values.size)
    cuts = _optimal_partition(values, counts.astype(float), k)
    assert cuts.shape == (k - 1,) and np.all(np.diff(np.concatenate(([0], cuts))) > 0)
    sse = 0.0
    for v, w in zip(np.split(values, cuts), np.split(counts.astype(float), cuts), strict=True):
        sse += float(np.sum(w * (v - np.sum(w * v) / np.sum(w)) ** 2))
    assert abs(sse - _brute_force_sse(x, k)) <= 1e-12


@settings(max_examples=150, deadline=None)
@given(
    x=st.lists(_values, min_size=1, max_size=300).map(np.array),
    k=st.integers(1, 40),
    weighted=st.booleans(),
)
def test_optimal_partition_kernel_equals_numpy_twin(x, k, weighted):
    values, counts = np.unique(x, return_counts=True)
    w = counts.astype(float) if weighted else np.ones(values.size)
    k = min(k, values.size)
    np.testing.assert_array_equal(
        _optimal_partition(values, w, k), _optimal_partition_numpy(values, w, k)
    )


@pytest.mark.parametrize("k", [2, 16, 128])
def test_optimal_partition_kernel_equals_twin_large(k):
    rng = np.random.default_rng(k)
    values = np.unique(np.round(rng.normal(0.0, 30.0, 6_000), 1))
    w = rng.integers(1, 50, values.size).astype(float)
    np.testing.assert_array_equal(
        _optimal_partition(values, w, k), _optimal_partition_numpy(values, w, k)
    )


@settings(max_examples=150, deadline=None)
@given(x=_small_samples, bits=st.integers(1, 2))
def test_kmeans_optimal_mse_equals_brute_force(x, bits):
    lv = fit_levels(x, bits, "kmeans_optimal")
    assert abs(quantization_mse(x, lv) - _brute_force_sse(x, 2**bits) / x.size) <= 1e-12


@settings(max_examples=120, deadline=None)
@given(
    x=st.lists(_values, min_size=1, max_size=80).map(np.array),
    bits=st.integers(1, 3),
)
def test_kmeans_optimal_never_worse_than_kmeans(x, bits):
    opt = quantization_mse(x, fit_levels(x, bits, "kmeans_optimal"))
    for method in ("kmeans", "lloyd_max", "bs_kmq", "cdf"):
        assert opt <= quantization_mse(x, fit_levels(x, bits, method)) + 1e-12


def test_kmeans_optimal_binned_close_to_unbinned():
    x = np.random.default_rng(5).beta(2.0, 5.0, 6_000)
    exact = quantization_mse(x, fit_levels(x, 4, "kmeans_optimal", max_bins=x.size))
    binned = quantization_mse(x, fit_levels(x, 4, "kmeans_optimal", max_bins=64))
    assert exact <= binned <= exact * (1 + 1e-3)
    assert binned <= quantization_mse(x, fit_levels(x, 4, "kmeans"))


# ---------------------------------------------------------------------------------------------
# BS-KMQ
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_bs_kmq_pins_boundaries_and_fits_interior(bits):
    x = _point_mass_sample(6)
    lv = fit_levels(x, bits, "bs_kmq", lo=0.0, hi=1.0)
    km = fit_levels(x, bits, "kmeans", lo=0.0, hi=1.0)
    assert lv.levels[0] == 0.0 and lv.levels[-1] == 1.0
    np.testing.assert_array_equal(lv.thresholds, 0.5 * (lv.levels[:-1] + lv.levels[1:]))
    edge = (x == 0.0) | (x == 1.0)
    interior = np.sort(x[~edge])
    # Point masses are reproduced exactly, unlike K-means whose end levels they drag inwards.
    assert quantization_mse(x[edge], lv) == 0.0 < quantization_mse(x[edge], km)
    # Fixed point of Lloyd with the two ends held: every free level is the mean of the interior
    # samples its cell gets (the pinned levels take the interior samples nearest to them).
    codes = lv.codes(interior)
    for c in range(1, 2**bits - 1):
        cell = interior[codes == c]
        assert cell.size and abs(lv.levels[c] - cell.mean()) <= 1e-9
    # Holding the ends fixed while fitting beats fitting the interior as if they were absent.
    naive = np.concatenate(([0.0], _interior_kmeans(interior, 2**bits - 2), [1.0]))
    naive_mse = np.mean(
        (naive[np.searchsorted(_mid(naive), interior, side="right")] - interior) ** 2
    )
    assert quantization_mse(interior, lv) < naive_mse


def _mid(levels: np.ndarray) -> np.ndarray:
    return 0.5 * (levels[:-1] + levels[1:])


def _interior_kmeans(x: np.ndarray, k: int) -> np.ndarray:
    """Plain Lloyd from quantiles at (i + 0.5) / k, written out independently of the module."""
    levels = np.quantile(x, (np.arange(k) + 0.5) / k)
    for _ in range(1000):  # the default max_iter of fit_levels
        codes = np.searchsorted(_mid(levels), x, side="right")
        new = np.array(
            [x[codes == c].mean() if np.any(codes == c) else levels[c] for c in range(k)]
        )
        if np.max(np.abs(new - levels)) <= 1e-9 * np.ptp(x):
            levels = new
            break
        levels = new
    return np.sort(levels)


def test_bs_kmq_pinning_rule():
    rng = np.random.default_rng(7)
    body = rng.uniform(0.05, 0.95, 1_000)
    zeros_only = np.concatenate([body, np.zeros(50)])  # ~4.8% at lo, nothing at hi
    lv = fit_levels(zeros_only, 3, "bs_kmq", lo=0.0, hi=1.0)
    assert lv.levels[0] == 0.0 and np.sum(lv.levels == 0.0) == 1 and lv.levels[-1] < 1.0
    thin = np.concatenate([body, np.zeros(5)])  # ~0.5% < min_mass: not pinned
    lv_thin = fit_levels(thin, 3, "bs_kmq", lo=0.0, hi=1.0)
    np.testing.assert_array_equal(
        lv_thin.levels, fit_levels(thin, 3, "kmeans_optimal", lo=0.0, hi=1.0).levels
    )
    lv_forced = fit_levels(thin, 3, "bs_kmq", lo=0.0, hi=1.0, min_mass=0.001)
    assert lv_forced.levels[0] == 0.0
    # eps widens the suppressed band: values within eps of hi count as clamp hits.
    near_top = np.concatenate([body, np.full(100, 0.999)])
    lv_eps = fit_levels(near_top, 3, "bs_kmq", lo=0.0, hi=1.0, eps=0.01)
    assert lv_eps.levels[-1] == 1.0
    # bits=1 with masses at both ends: the two levels are exactly lo and hi.
    both = np.concatenate([body, np.zeros(100), np.ones(100)])
    np.testing.assert_array_equal(fit_levels(both, 1, "bs_kmq").levels, [0.0, 1.0])


def test_bs_kmq_pins_an_end_holding_exactly_min_mass():
    """The pinning rule is ``m_lo >= min_mass`` (docs/levels.md): an end holding exactly
    min_mass is pinned; a strict ``>`` left it to the interior fit."""
    x = np.concatenate([np.full(50, 0.05), np.linspace(0.5, 1.0, 50)])
    # within eps = 0.1 of lo = 0: the 50 values 0.05, m_lo = 50/100 = 0.5 exactly; near hi
    # (>= 0.9): 10 of the ramp's values, 0.1 < 0.5, not pinned
    lv = fit_levels(x, 2, "bs_kmq", lo=0.0, hi=1.0, eps=0.1, min_mass=0.5)
    assert lv.levels[0] == 0.0 and lv.levels[-1] < 1.0


def test_lloyd_starts_where_the_docs_say():
    """With ``max_iter = 0`` the levels are the start points (docs/levels.md): ``kmeans`` the
    sample quantiles at (i + 0.5)/L, ``lloyd_max`` the uniform levels lo + i (hi - lo)/(L - 1);
    a start at quantiles i/(L - 1) or a step of (hi - lo)/L would show here."""
    # quantiles of 0..8 at 1/8, 3/8, 5/8, 7/8 (linear interpolation: 8 q) = 1, 3, 5, 7
    np.testing.assert_array_equal(
        fit_levels(np.arange(9.0), 2, "kmeans", max_iter=0).levels, [1.0, 3.0, 5.0, 7.0])
    # lo 0, hi 3 (the samples' extremes), four levels one apart
    np.testing.assert_array_equal(
        fit_levels(np.array([0.0, 3.0]), 2, "lloyd_max", max_iter=0).levels,
        [0.0, 1.0, 2.0, 3.0])


def test_exact_kmeans_breaks_a_tie_at_the_smallest_split():
    """{0}|{1, 2} and {0, 1}|{2} have the same SSE (0.5): the smallest optimal split is taken
    (it keeps the divide and conquer monotone), by the Numba kernel and its NumPy twin alike."""
    x, w = np.array([0.0, 1.0, 2.0]), np.ones(3)
    np.testing.assert_array_equal(_optimal_partition(x, w, 2), [1])
    np.testing.assert_array_equal(_optimal_partition_numpy(x, w, 2), [1])
    np.testing.assert_array_equal(fit_levels(x, 1, "kmeans_optimal").levels, [0.0, 1.5])


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_bs_kmq_matches_kmeans_without_point_masses(bits):
    x = np.random.default_rng(8).beta(2.0, 5.0, 20_000)
    bs = fit_levels(x, bits, "bs_kmq")
    km = quantization_mse(x, fit_levels(x, bits, "kmeans"))
    # Nothing to suppress: the interior step alone, exact K-means, which Lloyd gets close to.
    np.testing.assert_array_equal(bs.levels, fit_levels(x, bits, "kmeans_optimal").levels)
    assert km * 0.97 <= quantization_mse(x, bs) <= km


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("bits", [3, 4])
def test_bs_kmq_beats_kmeans_inside_with_boundary_masses(bits, seed):
    # Plain K-means starts from quantiles, so several of its levels start inside the zero mass;
    # with no sample between the mass and the next level they never leave it (the paper's
    # "biased clustering"). BS-KMQ suppresses the masses before clustering.
    x = _relu_clamp_grid(seed)
    assert (x == 0.0).mean() > 0.4 and (x == 16.0).mean() > 0.02
    interior = x[(x > 0.0) & (x < 16.0)]
    bs = fit_levels(x, bits, "bs_kmq", lo=0.0, hi=16.0)
    km = fit_levels(x, bits, "kmeans", lo=0.0, hi=16.0)
    n_inside = [
        np.unique(lv.levels[(lv.levels > 0.0) & (lv.levels < 16.0)]).size for lv in (bs, km)
    ]
    assert n_inside[0] > n_inside[1]
    assert quantization_mse(interior, bs) < 0.5 * quantization_mse(interior, km)
    # and the masses stay exact
    assert quantization_mse(x[(x == 0.0) | (x == 16.0)], bs) == 0.0


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_bs_kmq_against_kmeans_on_continuous_interior(bits):
    # Where samples lie densely next to the masses, K-means frees its levels from them and
    # ends with one level at each mass (~0.0 and ~1.0) like BS-KMQ; then BS-KMQ's gain is the
    # exact masses, and its interior MSE stays close to K-means' (docs/levels.md has figures).
    x = _point_mass_sample(9)
    interior = x[(x > 0.0) & (x < 1.0)]
    bs = fit_levels(x, bits, "bs_kmq", lo=0.0, hi=1.0)
    km = fit_levels(x, bits, "kmeans", lo=0.0, hi=1.0)
    assert quantization_mse(interior, bs) <= 1.15 * quantization_mse(interior, km)
    assert quantization_mse(x, bs) <= 1.1 * quantization_mse(x, km)


def test_binned_samples_in_fewer_bins_than_levels_still_get_the_lloyd_steps():
    """Where binning left no more non-empty bins than levels, the bin means were returned as
    the levels and the documented Lloyd steps on the raw samples skipped: every 12-b fit at
    the default 4096 bins equalled the uniform quantizer on two tight clusters."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.01, 5000), rng.normal(1, 0.01, 5000)])
    fit = fit_levels(x, 4, "kmeans_optimal", max_bins=32)
    # a fixed point of Lloyd on the raw samples: one more step moves nothing
    t = _midpoints(fit.levels)
    cells = np.searchsorted(t, np.sort(x), side="right")
    means = np.array([np.sort(x)[cells == c].mean() for c in np.unique(cells)])
    np.testing.assert_allclose(means, fit.levels[np.unique(cells)], atol=1e-6)
    x = np.concatenate([rng.normal(0, 0.001, 20_000), rng.normal(1, 0.001, 20_000)])
    assert quantization_mse(x, fit_levels(x, 12, "kmeans_optimal")) < 0.5 * quantization_mse(
        x, fit_levels(x, 12, "uniform"))


def test_numpy_integer_bits():
    """np.uint8(8) passed the check, then 2**bits wrapped to 0 in its dtype."""
    x = np.random.default_rng(0).random(1000)
    for bits, n in ((np.uint8(8), 256), (np.int16(12), 4096), (np.uint8(4), 16)):
        assert fit_levels(x, bits, "uniform").levels.size == n


def test_an_exact_kmeans_too_large_for_memory_is_refused_up_front():
    """A 16-b bs_kmq fit asked NumPy for a 32 GiB split table (MemoryError)."""
    x = np.arange(20_000, dtype=np.float64)
    with pytest.raises(ConfigError, match=r"exact K-means of 8000 levels .* method 'kmeans'"):
        _optimal_partition(x, np.ones_like(x), 8000)


@pytest.mark.parametrize("method", ["kmeans_optimal", "bs_kmq", "kmeans", "lloyd_max"])
def test_a_repeated_value_is_its_own_level_exactly(method):
    """The exact partition's level of a group is its mean, 3 x 0.05 / 3 = 0.05000000000000001:
    a point mass (an activation quantized before) read as another value. Each group's mean is
    clipped to its extremes, as the Lloyd cells' are."""
    x = np.array([0.05] * 3 + [10.05, 20.05, 30.05, 40.05])
    lv = fit_levels(x, 2, method)
    assert lv.levels[0] == 0.05
    assert lv.quantize(np.array([0.05]))[0] == 0.05

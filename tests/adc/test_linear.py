"""Linear ADC: the scalar kernel, its NumPy twin, and the static range policies."""

from __future__ import annotations

import numpy as np
import pytest

import cimsim
from cimsim.adc._kernels import linear_adc
from cimsim.adc._reference import linear_adc_reference
from cimsim.adc.linear import grid, unseen_spread
from cimsim.arrays.program import program
from tests.conftest import ideal_chip


def _both(a: float, lo: float, delta: float, top: float) -> float:
    """The kernel's value, after checking that the reference agrees."""
    got = linear_adc(a, lo, delta, top)
    assert got == linear_adc_reference(a, lo, delta, top)
    return got


@pytest.mark.parametrize(("lo", "delta", "top"), [(0.0, 1.0, 7.0), (-3.25, 0.5, 15.0),
                                                  (10.0, 0.125, 255.0), (-1024.0, 4.0, 3.0)])
def test_code_boundaries_and_ties_go_up(lo, delta, top):
    # dyadic lo and delta: a = lo + (i + 1/2) delta is exactly representable, a true tie
    for i in range(int(top)):
        mid = lo + (i + 0.5) * delta
        assert _both(mid, lo, delta, top) == lo + (i + 1) * delta  # a tie rounds up
        # (floor(u + 1/2) rounds u = 0.5 - 1 ulp up too: a margin keeps this a spec test)
        below = mid - 1e-9 * delta
        assert _both(below, lo, delta, top) == lo + i * delta
        assert _both(lo + i * delta, lo, delta, top) == lo + i * delta  # codes reconstruct
    assert _both(lo + top * delta, lo, delta, top) == lo + top * delta


@pytest.mark.parametrize(("lo", "delta", "top"), [(0.0, 1.0, 7.0), (-3.25, 0.5, 15.0)])
def test_clamping_at_both_ends(lo, delta, top):
    hi = lo + top * delta
    for a in (lo - 0.5 * delta, lo - 0.51 * delta, lo - delta, lo - 1e6, -1e12):
        assert _both(a, lo, delta, top) == lo
    for a in (hi + 0.49 * delta, hi + 0.5 * delta, hi + delta, hi + 1e6, 1e12):
        assert _both(a, lo, delta, top) == hi


def test_numba_scalar_equals_reference_on_random_values():
    rng = np.random.default_rng(0)
    n = 20_000
    lo = rng.normal(0, 50, n)
    delta = np.exp(rng.uniform(-5, 3, n))
    top = (2.0 ** rng.integers(1, 13, n)) - 1
    a = lo + rng.uniform(-0.2, 1.2, n) * top * delta
    # a quarter of the values exactly on a tie (up to rounding of the float arithmetic)
    ties = rng.random(n) < 0.25
    a[ties] = (lo + (np.floor(rng.uniform(0, 1, n) * top) + 0.5) * delta)[ties]
    ref = linear_adc_reference(a, lo, delta, top)
    got = np.array([linear_adc(a[i], lo[i], delta[i], top[i]) for i in range(n)])
    np.testing.assert_array_equal(got, ref)
    codes = (ref - lo) / delta
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-6)
    assert codes.min() > -1e-9 and np.all(codes <= top + 1e-6)


@pytest.mark.parametrize("a", [1e19, 1e30, np.inf])
def test_huge_values_clamp_to_the_top(a):
    assert linear_adc(a, 0.0, 1.0, 7.0) == 7.0


# ---------------------------------------------------------------------------------------------
# static range policies
# ---------------------------------------------------------------------------------------------
def _layer(**changes):
    chip = ideal_chip(n_rows=8, rows_per_conversion=4, input_bits=4, weight_bits=4,
                      bits_per_cell=2, **changes)
    w = np.array([[7, -7, 3, 0, 1, 2, -5, 4], [0, 1, 0, -1, 6, -6, 2, 2]])
    return program(w, chip)


def test_full_scale_range_is_lossless_when_codes_suffice():
    layer = _layer()  # 24-bit ADC
    assert np.all(layer.adc.delta == 1.0)
    # differential analog pair, bit-serial unsigned DAC: +-4 rows x 1 x 3 digits
    assert layer.fs_lo == -12.0 and layer.fs_hi == 12.0
    assert np.all(layer.adc.lo == -12.0)
    assert layer.adc.lo.shape == (layer.n_groups, layer.n_conversions) == (2, 4)


@pytest.mark.parametrize("factor", [1.0, 1.5, 2.5, 5.0])
def test_a_shrunk_full_scale_with_enough_codes_starts_on_the_partial_sums(factor):
    """Was: the one-LSB grid started at fs_lo / k, between two integers for k = 2.5 (-4.8):
    every partial sum converted 0.2 off, and x = 0 came out nonzero after the shift-add
    (-1667 at k = 13 on a 256-row ideal chip). It starts at the first integer at or above
    it, and every partial sum in the range converts to itself."""
    layer = _layer(adc=dict(bits=8, full_scale_factor=factor))
    lo = -12.0 / factor
    np.testing.assert_array_equal(layer.adc.lo, np.ceil(lo))
    assert np.all(layer.adc.delta == 1.0)
    chip = layer.chip
    x = np.zeros((2, 8), dtype=np.int64)
    x[1, :2] = 1  # partial sums within [-12/k, 12/k] for every k here
    w = np.array([[7, -7, 3, 0, 1, 2, -5, 4], [0, 1, 0, -1, 6, -6, 2, 2]])
    y, _ = cimsim.matmul(x, w, chip)
    np.testing.assert_array_equal(y, x @ w.T)


def test_a_full_scale_exactly_n_codes_wide_is_still_lossless():
    """hi - lo == n_codes - 1 is the last range the one-LSB lattice covers: a strict ``<``
    sent it to the coarser zero-aligned grid (-3.5 in steps of 7/6, partial sums off code)."""
    factor, bits = 24.0 / 7.0, 3  # fs = +-12 (see above) / (24/7) = +-3.5: a span of 7 = 2**3 - 1
    assert 12.0 / factor - (-12.0 / factor) == 2**bits - 1
    layer = _layer(adc=dict(bits=bits, full_scale_factor=factor))
    # the first partial-sum lattice point at or above -3.5 is -3; codes -3..4, one LSB apart
    np.testing.assert_array_equal(layer.adc.lo, -3.0)
    np.testing.assert_array_equal(layer.adc.delta, 1.0)
    # one input row on at a time: every partial sum is one cell's digit, in [-3, 3]
    x = np.zeros((8, 8), dtype=np.int64)
    x[np.arange(8), np.arange(8)] = np.arange(8) + 8
    w = np.array([[7, -7, 3, 0, 1, 2, -5, 4], [0, 1, 0, -1, 6, -6, 2, 2]])
    y, _ = cimsim.matmul(x, w, layer.chip)
    np.testing.assert_array_equal(y, x @ w.T)


def _check_zero_aligned(start, delta, lo, hi, top):
    """0 is a code, [lo, hi] is covered, and no other choice of codes below 0 has a finer step."""
    m = -start / delta
    assert m == pytest.approx(round(m), abs=1e-9) and 1 <= round(m) <= top - 1
    assert start <= lo + 1e-9 and start + top * delta >= hi - 1e-9
    best = min(max(-lo / j, hi / (top - j)) for j in range(1, top))
    assert delta == pytest.approx(best, rel=1e-12)


@pytest.mark.parametrize("factor", [1.0, 2.0, 3.0])
def test_full_scale_range_with_too_few_codes_literal(factor):
    layer = _layer(adc=dict(bits=3, full_scale_factor=factor, zero_aligned=False))
    lo, hi = -12.0 / factor, 12.0 / factor
    np.testing.assert_allclose(layer.adc.lo, lo)
    np.testing.assert_allclose(layer.adc.delta, (hi - lo) / 7)


@pytest.mark.parametrize("factor", [1.0, 2.0, 3.0])
def test_full_scale_range_with_too_few_codes_zero_aligned(factor):
    layer = _layer(adc=dict(bits=3, full_scale_factor=factor))  # zero_aligned by default
    assert np.unique(layer.adc.lo).size == 1 and np.unique(layer.adc.delta).size == 1
    _check_zero_aligned(layer.adc.lo[0, 0], layer.adc.delta[0, 0], -12.0 / factor,
                        12.0 / factor, 7)


@pytest.mark.parametrize(("lo", "hi", "bits"), [(-2.5, 5.0, 4), (-1.0, 30.0, 3), (-7.3, 0.4, 5),
                                                (-3.0, 3.0, 2)])
def test_fixed_range_zero_aligned(lo, hi, bits):
    layer = _layer(adc=dict(bits=bits, range_policy="fixed", fixed_lo=lo, fixed_hi=hi))
    _check_zero_aligned(layer.adc.lo[0, 0], layer.adc.delta[0, 0], lo, hi, 2**bits - 1)
    literal = _layer(adc=dict(bits=bits, range_policy="fixed", fixed_lo=lo, fixed_hi=hi,
                              zero_aligned=False))
    np.testing.assert_array_equal(literal.adc.lo, lo)
    np.testing.assert_allclose(literal.adc.delta, (hi - lo) / (2**bits - 1))


@pytest.mark.parametrize("zero_aligned", [False, True])
def test_fixed_range_not_straddling_zero_is_literal(zero_aligned):
    layer = _layer(adc=dict(bits=4, range_policy="fixed", fixed_lo=2.5, fixed_hi=10.0,
                            zero_aligned=zero_aligned))
    np.testing.assert_array_equal(layer.adc.lo, 2.5)
    np.testing.assert_allclose(layer.adc.delta, 7.5 / 15)


def test_calibrated_range_is_unset_until_calibration():
    layer = _layer(adc=dict(bits=4, range_policy="calibrated"))
    assert layer.adc is None


# ---------------------------------------------------------------------------------------------
# calibrated ranges against an independent oracle
# ---------------------------------------------------------------------------------------------
def _oracle_ranges(x, w, rows_per_conv, n_rows, n_cols, granularity, stat, *, n_sigma,
                   percentile):
    """(G, C) lo and hi of the calibrated ranges, computed from the problem alone.

    One conversion per output and row group (signed cells holding a whole weight, one-shot
    DAC), so the analog value of (g, c) is ``x[:, rows of g] @ w[c, rows of g]``; arrays are
    (row tile, column tile) blocks of ``n_rows`` rows and ``n_cols`` outputs.
    """
    k, n = x.shape[1], w.shape[0]
    starts = range(0, k, rows_per_conv)
    a = np.stack([x[:, s:s + rows_per_conv] @ w[:, s:s + rows_per_conv].T for s in starts])
    tile_of_group = np.array([s // n_rows for s in starts])
    tile_of_col = np.arange(n) // n_cols
    if granularity == "layer":
        unit = np.zeros((len(starts), n), dtype=int)
    elif granularity == "array":
        unit = tile_of_group[:, None] * 1000 + tile_of_col[None, :]
    else:
        unit = np.arange(len(starts) * n).reshape(len(starts), n)
    lo, hi = np.empty(unit.shape), np.empty(unit.shape)
    for u in np.unique(unit):
        vals = a[:, :, :][np.broadcast_to((unit == u)[:, None, :], a.shape)]
        if stat == "minmax":
            lo[unit == u], hi[unit == u] = vals.min(), vals.max()
        elif stat == "mean_std":
            m, s = vals.mean(), vals.std()
            lo[unit == u] = max(m - n_sigma * s, vals.min())
            hi[unit == u] = min(m + n_sigma * s, vals.max())
        else:
            lo[unit == u], hi[unit == u] = np.percentile(vals, [100 - percentile, percentile])
    return lo, hi


@pytest.mark.parametrize("stat", ["minmax", "mean_std", "percentile"])
@pytest.mark.parametrize("granularity", ["layer", "array", "column"])
def test_calibrated_ranges_equal_an_independent_oracle(granularity, stat):
    from cimsim import engine

    bits, n_sigma, pct = 5, 1.5, 90.0
    chip = ideal_chip(encoding="signed_cell", input_bits=4, weight_bits=4, bits_per_cell=4,
                      dac_bits=4, n_rows=8, n_cols=3, rows_per_conversion=4,
                      adc=dict(bits=bits, range_policy="calibrated", zero_aligned=False,
                               calibration_granularity=granularity, calibration_stat=stat,
                               n_sigma=n_sigma, percentile=pct))
    rng = np.random.default_rng(21)
    w = rng.integers(-7, 8, (7, 19))
    x = rng.integers(0, 16, (60, 19))
    layer = engine.calibrate(program(w, chip), x)
    assert layer.n_conversions == 7 and layer.n_groups == 5  # the oracle's layout
    lo, hi = _oracle_ranges(x, w, 4, 8, 3, granularity, stat, n_sigma=n_sigma,
                            percentile=pct)
    np.testing.assert_allclose(layer.adc.lo, lo, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.adc.delta, np.where(hi > lo, (hi - lo) / (2**bits - 1), 1.0),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("granularity", ["layer", "column"])
def test_mean_std_never_reaches_past_the_observed_values(granularity):
    """mean -/+ n_sigma * std is clamped to the observed min and max: with n_sigma = 20 both
    clamps bind and the range is exactly minmax's; an unclamped end wasted codes past it."""
    from cimsim import engine

    def ranges(stat):
        chip = ideal_chip(encoding="signed_cell", input_bits=4, weight_bits=4, bits_per_cell=4,
                          dac_bits=4, n_rows=8, n_cols=3, rows_per_conversion=4,
                          adc=dict(bits=5, range_policy="calibrated", zero_aligned=False,
                                   calibration_granularity=granularity, calibration_stat=stat,
                                   n_sigma=20.0))
        rng = np.random.default_rng(21)
        w, x = rng.integers(-7, 8, (7, 19)), rng.integers(0, 16, (60, 19))
        layer = engine.calibrate(program(w, chip), x)
        return layer.adc.lo, layer.adc.delta

    lo, delta = ranges("mean_std")
    want_lo, want_delta = ranges("minmax")
    np.testing.assert_allclose(lo, want_lo, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(delta, want_delta, rtol=1e-12, atol=1e-12)


def test_a_range_without_spread_spans_the_full_scale_with_the_value_on_a_code():
    """Known answer: a unit whose calibration values were all v (a column that never conducted,
    inputs all 0) gets the full-scale step (fs_hi - fs_lo) / (n_codes - 1), v a code; units
    with a spread keep :func:`grid`'s."""
    lo = np.array([[0.0, -3.0, 5.0]])
    hi = np.array([[0.0, 4.0, 5.0]])
    start, delta = grid(lo, hi, 64, True)
    start, delta = unseen_spread(lo, hi, start, delta, -384.0, 384.0, 64)
    step = 768.0 / 63
    assert delta[0, 0] == delta[0, 2] == step
    # 0 sits 32 steps above the start (round(384 / step) = 31.5 -> 32), 5 likewise
    assert start[0, 0] == pytest.approx(-32 * step)
    assert start[0, 2] == pytest.approx(5 - 32 * step)
    want_start, want_delta = grid(-3.0, 4.0, 64, True)
    assert (start[0, 1], delta[0, 1]) == (float(want_start), float(want_delta))
    # no finite full scale: the grid as it was
    same = unseen_spread(lo, hi, *grid(lo, hi, 64, True), -np.inf, np.inf, 64)
    np.testing.assert_array_equal(same[1], grid(lo, hi, 64, True)[1])


@pytest.mark.parametrize("kind, stat, n_batches, fragment", [
    ("ramp", "minmax", 0, "calibration data is empty"),
    ("sar", "minmax", 0, "calibration data is empty"),
    ("sar", "percentile", 1, r"RangeStats\(keep_samples=False\) holds no samples"),
    ("ramp", "minmax", 1, r"RangeStats\(keep_samples=False\) holds no samples"),
])
def test_calibrated_tables_without_what_they_need_is_a_config_error(kind, stat, n_batches,
                                                                     fragment):
    """The public ``cimsim.adc.calibrated_tables`` on empty statistics, or on statistics
    without samples where a fit needs them: a ramp ADC and a percentile range failed inside
    NumPy ('need at least one array to concatenate'); the linear min/max said what was wrong."""
    from cimsim.adc import RangeStats, calibrated_tables
    from cimsim.errors import ConfigError

    base = cimsim.load_chip("rram-22nm")
    chip = base.replace(adc=base.adc.replace(kind=kind, calibration_stat=stat))
    layer = program(np.ones((2, 4), dtype=int), chip)
    stats = RangeStats(layer.n_groups, layer.n_conversions, keep_samples=False)
    for _ in range(n_batches):
        for g in range(layer.n_groups):
            stats.add(g, np.arange(3.0 * layer.n_conversions).reshape(3, -1))
    with pytest.raises(ConfigError, match=fragment):
        calibrated_tables(layer, stats)

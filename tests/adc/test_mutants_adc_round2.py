"""Tests from a second mutation-testing round over the ADC range policies and tables
(``cimsim/adc/{linear,tables,activation,nonlinear}.py``): each test pins a behaviour that a
surviving mutant (a comparison, bound, constant, argument or term changed) left unchecked,
with known answers computed by hand from the docstrings' formulas (docs/hardware-model.md,
docs/levels.md) where possible.

Most tests call the range functions on a stand-in layer (:func:`_fake_layer`): the
calibrated policies read only the chip's ADC, the layer's shape and its full scale, so the
full scale can be chosen freely and the answers stay small enough to work out by hand.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cimsim.adc.linear import (
    RangeStats,
    grid,
    ranges_from_samples,
    static_tables,
    unseen_spread,
    widen,
)
from cimsim.adc.tables import ADCTables
from tests.conftest import ideal_chip


def _fake_layer(n_conv: int = 1, n_groups: int = 1, fs: tuple[float, float] = (-np.inf, np.inf),
                **adc):
    """The parts of a programmed layer that the calibrated policies read, at layer granularity
    unless ``adc`` says otherwise (array granularity reads the tiles, absent here)."""
    adc = {"range_policy": "calibrated", "calibration_granularity": "layer", **adc}
    return SimpleNamespace(chip=ideal_chip(adc=adc), n_groups=n_groups, n_conversions=n_conv,
                           fs_lo=fs[0], fs_hi=fs[1])


def _stats(a: np.ndarray, keep: bool = True, **kw) -> RangeStats:
    """RangeStats of one row group holding the rows of ``a`` (rows, C)."""
    s = RangeStats(1, a.shape[1], keep_samples=keep, **kw)
    s.add(0, a)
    return s


class TestGrid:
    @pytest.mark.parametrize("zero_aligned", [False, True])
    def test_a_degenerate_range_gets_a_unit_step(self, zero_aligned):
        # docstring: a range without width (a column that never conducts) gets delta = 1;
        # hi below lo is read as hi = lo
        for lo, hi in ((3.0, 3.0), (0.0, 0.0), (-2.0, -2.0), (3.0, 1.0)):
            start, delta = grid(lo, hi, 8, zero_aligned)
            assert (float(start), float(delta)) == (lo, 1.0)

    @pytest.mark.parametrize("n_codes", [4, 8, 256])
    def test_a_straddling_range_divides_by_no_zero(self, n_codes):
        # the candidate counts of codes below zero stay in [1, n_codes - 2]: m = 0 or
        # m = n_codes - 1 divided by zero (a RuntimeWarning on every calibration)
        import warnings

        lo = np.array([-1e-3, -1.0, -5.0, -1e3, -0.3])
        hi = np.array([1e3, 1.0, 0.2, 1e-3, 7.0])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            start, delta = grid(lo, hi, n_codes, True)
        assert np.all(np.isfinite(start)) and np.all(delta > 0)

    def test_a_tie_between_two_steps_keeps_the_fewer_codes_below_zero(self):
        # [-39, 195], 8 codes (top 7): m = 1 gives max(39, 195/6) = 39 and m = 2 gives
        # max(39/2, 195/5) = 39, the same step; the first (m = 1) is kept, start -39
        start, delta = grid(-39.0, 195.0, 8, True)
        assert (float(start), float(delta)) == (-39.0, 39.0)
        # 2 bits, [-1, 1]: m = 1 and m = 2 both give step 1; m = 1: codes -1, 0, 1, 2
        start, delta = grid(-1.0, 1.0, 4, True)
        assert (float(start), float(delta)) == (-1.0, 1.0)


class TestStaticTables:
    def test_a_shrunk_full_scale_a_rounding_above_a_lattice_point_starts_on_it(self):
        # fs = +-96, k = 96/59 (1.6271186440677967): fs_lo/k is -59 up to rounding, 37 (plus
        # 1e-14) above fs_lo; the lattice point "at or above" it is -59, not -58 (a code lost,
        # and a partial sum of -59 clipped)
        k = 96.0 / 59.0
        assert -96.0 / k + 96.0 > 37.0  # the rounding this test is about
        layer = _fake_layer(fs=(-96.0, 96.0), range_policy="full_scale", bits=7,
                            full_scale_factor=k)
        t = static_tables(layer)
        np.testing.assert_array_equal(t.lo, [[-59.0]])
        np.testing.assert_array_equal(t.delta, [[1.0]])

    def test_a_factor_one_up_to_rounding_starts_at_the_full_scale(self):
        # k = 0.1 * 3 / 0.3 = 1 + 2e-16: fs_lo/k is 2e-15 above fs_lo = -12, a rounding, so
        # the grid starts at -12 (an absolute tolerance near 0: a relative one left -11)
        k = 0.1 * 3 / 0.3
        assert k > 1.0
        layer = _fake_layer(fs=(-12.0, 12.0), range_policy="full_scale", bits=5,
                            full_scale_factor=k)
        np.testing.assert_array_equal(static_tables(layer).lo, [[-12.0]])

    def test_a_start_truly_between_lattice_points_goes_up(self):
        # k = 12/8.9999: fs_lo/k = -8.9999, 1e-4 above -9, no rounding: the first lattice
        # point at or above it is -8 (a tolerance as wide as 1e-4 started at -9, below lo)
        layer = _fake_layer(fs=(-12.0, 12.0), range_policy="full_scale", bits=5,
                            full_scale_factor=12.0 / 8.9999)
        np.testing.assert_array_equal(static_tables(layer).lo, [[-8.0]])


class TestRangeStats:
    def test_rows_are_halved_past_keep_values_values_per_group(self, monkeypatch):
        # KEEP_VALUES = 2^23 values ("32 MB of float32"); lowered here to 32 values over 4
        # conversions, 8 rows (as 2^23 over 2^20 conversions, without the 64-MB arrays): 8 rows
        # are all held, a 9th halves them to those at even places, and rows added after
        # that are held only at even places
        assert RangeStats.KEEP_VALUES * 4 == 32 << 20
        monkeypatch.setattr(RangeStats, "KEEP_VALUES", 32)
        c = 4
        s = RangeStats(1, c, keep_samples=True, max_samples=1)

        def add(first, last):
            s.add(0, np.repeat(np.arange(first, last, dtype=float)[:, None], c, axis=1))
            return np.concatenate(s.samples[0])[:, 0]

        np.testing.assert_array_equal(add(0, 8), np.arange(8.0))
        np.testing.assert_array_equal(add(8, 9), [0, 2, 4, 6, 8])
        np.testing.assert_array_equal(add(9, 11), [0, 2, 4, 6, 8, 10])

    @pytest.mark.parametrize("bad", [0, -1, True, 1.5])
    def test_n_vectors_must_be_a_positive_integer(self, bad):
        with pytest.raises(ValueError, match="n_vectors"):
            RangeStats(1, 1, keep_samples=False, n_vectors=bad)
        RangeStats(1, 1, keep_samples=False, n_vectors=np.int64(1))  # fine

    def test_a_negative_place_or_a_place_per_row_missing_is_refused(self):
        s = RangeStats(1, 1, keep_samples=True, n_vectors=2)
        with pytest.raises(ValueError, match="index of shape"):
            s.add(0, np.zeros((2, 1)), index=np.array([-1, 0]))
        with pytest.raises(ValueError, match="index of shape"):
            s.add(0, np.zeros((2, 1)), index=np.array([0]))

    def test_the_default_places_follow_the_rows_added_before(self):
        # two adds of two rows: places 0, 1 then 2, 3, so the kept rows come back in the
        # order added (places restarting at 0 interleaved them: a, c, b, d)
        s = RangeStats(1, 1, keep_samples=True, n_vectors=2)
        s.add(0, np.array([[1.0], [2.0]]))
        s.add(0, np.array([[3.0], [4.0]]))
        np.testing.assert_array_equal(s.kept(0)[:, 0], [1, 2, 3, 4])

    def test_kept_rows_are_in_the_order_of_their_places(self):
        s = RangeStats(1, 1, keep_samples=True)
        s.add(0, np.array([[30.0], [10.0], [20.0]]), index=np.array([2, 0, 1]))
        np.testing.assert_array_equal(s.kept(0)[:, 0], [10, 20, 30])

    def test_sums_over_several_streams_by_hand(self):
        # one place per stream (n_vectors = 1): rows at places 0, 1, 1 go to streams 0, 1,
        # 1; s1 and s2 are the sums over all streams
        s = RangeStats(1, 2, keep_samples=False, n_vectors=1)
        s.add(0, np.array([[4.0, -2.0]]), index=np.array([0]))
        s.add(0, np.array([[3.0, 5.0], [0.5, 1.0]]), index=np.array([1, 1]))
        np.testing.assert_array_equal(s.s1, [[7.5, 4.0]])
        np.testing.assert_array_equal(s.s2, [[25.25, 30.0]])
        # running extremes: each end may come from either add
        np.testing.assert_array_equal(s.lo, [[0.5, -2.0]])
        np.testing.assert_array_equal(s.hi, [[4.0, 5.0]])

    def test_n_counts_the_vectors_once_whatever_the_row_groups(self):
        s = RangeStats(2, 1, keep_samples=False)
        for g in (0, 1):
            s.add(g, np.arange(3.0)[:, None])
        assert s.n == 3

    def test_max_samples_defaults_to_20000(self):
        s = RangeStats(1, 1, keep_samples=True)
        s.add(0, np.arange(20001.0)[:, None])
        # every ceil(20001 / 20000) = 2nd row
        np.testing.assert_array_equal(s.kept(0)[:, 0], np.arange(0.0, 20001.0, 2.0))


class TestWiden:
    def test_each_end_moves_by_margin_times_width_up_to_the_full_scale(self):
        lo, hi = np.array([0.0, -2.0, -7.0]), np.array([10.0, 2.0, 1.0])
        # no full scale: [0, 10] -> [-1, 11]; [-2, 2] -> [-2.4, 2.4]; [-7, 1] -> [-7.8, 1.8]
        new_lo, new_hi = widen(lo, hi, 0.1)
        np.testing.assert_allclose(new_lo, [-1.0, -2.4, -7.8], rtol=1e-12)
        np.testing.assert_allclose(new_hi, [11.0, 2.4, 1.8], rtol=1e-12)
        # full scale [-5, 2.2]: ends stop at it (2.4 -> 2.2), an end already past it (-7,
        # 10) stays where it is
        new_lo, new_hi = widen(lo, hi, 0.1, -5.0, 2.2)
        np.testing.assert_allclose(new_lo, [-1.0, -2.4, -7.0], rtol=1e-12)
        np.testing.assert_allclose(new_hi, [10.0, 2.2, 1.8], rtol=1e-12)
        got = widen(lo, hi, 0.0, -5.0, 2.2)  # margin 0: unchanged, even past the full scale
        np.testing.assert_array_equal(got[0], lo)
        np.testing.assert_array_equal(got[1], hi)


class TestColumnPercentiles:
    @pytest.mark.parametrize("threads", [2, 3])
    def test_split_over_threads_covers_every_column(self, monkeypatch, threads):
        # the tests run with NUMBA_NUM_THREADS=1, which never takes the threaded split; the
        # thread count is read from numba, so a stand-in count exercises it (Python threads)
        import numba

        from cimsim.adc.linear import column_percentiles

        monkeypatch.setattr(numba, "get_num_threads", lambda: threads)
        rng = np.random.default_rng(5)
        s = rng.normal(size=(1000, 97)).astype(np.float32)
        got = column_percentiles(s, [2.0, 98.0])
        assert got.shape == (2, 97)
        assert np.array_equal(got, np.percentile(s, [2.0, 98.0], axis=0))


class TestRangesFromSamples:
    def test_empty_statistics_are_refused(self):
        from cimsim.errors import ConfigError

        with pytest.raises(ConfigError, match="calibration data is empty"):
            ranges_from_samples(_fake_layer(), RangeStats(1, 1, keep_samples=False))

    @pytest.mark.parametrize(("stat", "n_sigma", "lo", "hi"), [
        ("minmax", 3.0, 0.0, 10.0),
        # the pooled values {0, 2, 4, 10}: mean 4, std sqrt(14)
        ("mean_std", 1.0, 4.0 - 14**0.5, 4.0 + 14**0.5),
        ("mean_std", 3.0, 0.0, 10.0),  # mean -/+ 3 std held at the values seen
    ])
    def test_layer_ranges_pool_both_columns_by_hand(self, stat, n_sigma, lo, hi):
        layer = _fake_layer(n_conv=2, bits=4, zero_aligned=False, calibration_stat=stat,
                            n_sigma=n_sigma)
        t = ranges_from_samples(layer, _stats(np.array([[0.0, 4.0], [2.0, 10.0]]), keep=False))
        np.testing.assert_allclose(t.lo, [[lo, lo]], rtol=1e-12)
        np.testing.assert_allclose(t.delta, [[(hi - lo) / 15] * 2], rtol=1e-12)

    def test_widening_stops_at_the_full_scale(self):
        # minmax [0, 10], margin 0.5: lo would move to -5, but no partial sum is below
        # fs_lo = 0, so it stays 0; hi moves to 15 (fs_hi = 100 is further out)
        layer = _fake_layer(fs=(0.0, 100.0), bits=4, zero_aligned=False,
                            calibration_margin=0.5)
        t = ranges_from_samples(layer, _stats(np.array([[0.0], [10.0]]), keep=False))
        assert (t.lo[0, 0], t.delta[0, 0]) == (0.0, 1.0)  # [0, 15] in 15 steps

    def test_a_unit_without_spread_gets_the_full_scale_step(self):
        # column 0 always 0 (never conducted), column 1 spread over [-3, 4]; 6 bits, full
        # scale +-384: column 0 steps (768/63), 0 on code round(384/step) = 32
        layer = _fake_layer(n_conv=2, fs=(-384.0, 384.0), bits=6,
                            calibration_granularity="column")
        t = ranges_from_samples(layer, _stats(np.array([[0.0, -3.0], [0.0, 4.0]]), keep=False))
        step = 768.0 / 63
        assert t.delta[0, 0] == step
        assert t.lo[0, 0] == pytest.approx(-32 * step, rel=1e-12)
        want = grid(-3.0, 4.0, 64, True)
        assert (t.lo[0, 1], t.delta[0, 1]) == (float(want[0]), float(want[1]))

    def test_pooled_percentile_values_are_thinned_by_a_fixed_stride(self):
        # 400 pooled values (2 kept rows x 200 columns) > 64 * max_samples = 128: every
        # (400 // 128 + 1) = 4th value is used; the 100th percentile is then 396, not 399
        layer = _fake_layer(n_conv=200, bits=4, zero_aligned=False,
                            calibration_stat="percentile", percentile=100.0)
        a = np.arange(400.0).reshape(2, 200)
        t = ranges_from_samples(layer, _stats(a, max_samples=2))
        assert t.lo[0, 0] == 0.0
        assert t.delta[0, 0] == pytest.approx(396.0 / 15, rel=1e-12)


class TestUnseenSpread:
    @pytest.mark.parametrize(("seen", "code"), [(500.0, 63), (-500.0, 0)])
    def test_a_value_beyond_the_full_scale_sits_on_the_end_code(self, seen, code):
        # 6 bits over +-384: the value seen cannot be 32 codes up and in range; it is the
        # top (bottom) code, the grid reaching a full scale's width below (above) it
        lo = hi = np.array([[seen]])
        start, delta = unseen_spread(lo, hi, *grid(lo, hi, 64, True), -384.0, 384.0, 64)
        step = 768.0 / 63
        assert delta[0, 0] == step
        assert start[0, 0] == pytest.approx(seen - code * step, rel=1e-12)

    @pytest.mark.parametrize("fs", [(0.0, 0.0), (5.0, -5.0)])
    def test_no_full_scale_width_keeps_the_grid(self, fs):
        # a full scale of no (or negative) width has no step to spread over: grid's own
        # one-unit step starting at the value stays
        lo = hi = np.array([[2.0]])
        start, delta = unseen_spread(lo, hi, *grid(lo, hi, 8, True), *fs, 8)
        assert (start[0, 0], delta[0, 0]) == (2.0, 1.0)


class TestADCTables:
    @pytest.mark.parametrize("shape", [(3,), (1, 2, 3), ()])
    def test_lo_and_delta_must_be_two_dimensional(self, shape):
        with pytest.raises(ValueError, match="must both be \\(G, C\\)"):
            ADCTables(lo=np.zeros(shape), delta=np.ones(shape))

    def test_clip_bounds_come_together(self):
        lo = np.zeros((1, 2))
        with pytest.raises(ValueError, match="clip_lo and clip_hi come together"):
            ADCTables(lo=lo, delta=lo + 1, clip_lo=lo)
        with pytest.raises(ValueError, match="clip_lo and clip_hi come together"):
            ADCTables(lo=lo, delta=lo + 1, clip_hi=lo)

    def test_clip_bounds_must_be_g_by_c(self):
        lo = np.zeros((1, 2))
        with pytest.raises(ValueError, match="each \\(G, C\\)"):
            ADCTables(lo=lo, delta=lo + 1, clip_lo=np.zeros((2, 1)), clip_hi=np.zeros((2, 1)))
        with pytest.raises(ValueError, match="each \\(G, C\\)"):
            ADCTables(lo=lo, delta=lo + 1, clip_lo=lo, clip_hi=np.zeros(2))
        ADCTables(lo=lo, delta=lo + 1, clip_lo=lo, clip_hi=lo + 1)  # (G, C) each: fine

    def test_threshold_tables_must_fit_g_by_c(self):
        lo = np.zeros((1, 2))
        lvl = np.tile(np.arange(4.0), (1, 2, 1))  # (1, 2, 4)
        thr = lvl[..., 1:] - 0.5  # (1, 2, 3)
        ADCTables(lo=lo, delta=lo + 1, thr=thr, lvl=lvl)  # fits
        with pytest.raises(ValueError, match="do not fit"):  # levels of another (G, C)
            ADCTables(lo=lo, delta=lo + 1, thr=thr, lvl=np.zeros((2, 1, 4)))
        with pytest.raises(ValueError, match="do not fit"):  # L thresholds for L levels
            ADCTables(lo=lo, delta=lo + 1, thr=lvl, lvl=lvl)
        with pytest.raises(ValueError, match="do not fit"):  # thresholds of another (G, C)
            ADCTables(lo=lo, delta=lo + 1, thr=np.zeros((2, 1, 3)), lvl=lvl)

    def test_only_tables_with_their_own_clip_bounds_are_fused(self):
        # a ramp ADC's threshold tables are analog values, not an activation's output
        lvl = np.array([[[0.0, 1.0]]])
        assert not ADCTables.from_levels(lvl[..., :1] + 0.5, lvl).fused
        assert not ADCTables.linear(np.zeros((1, 1)), np.ones((1, 1))).fused
        assert ADCTables.from_levels(lvl[..., :1] + 0.5, lvl, clip_lo=np.zeros((1, 1)),
                                     clip_hi=np.ones((1, 1))).fused

    def test_scaled_scales_a_fused_activations_clip_bounds(self):
        # a fused activation's bounds are analog values like its thresholds: conversion c's
        # references times factor[c] move them with it
        lvl = np.array([[[0.0, 1.0], [0.0, 2.0]]])
        t = ADCTables.from_levels(lvl[..., :1] + 0.5, lvl, clip_lo=np.array([[-1.0, -2.0]]),
                                  clip_hi=np.array([[1.5, 3.0]]))
        s = t.scaled(np.array([2.0, 3.0]))
        np.testing.assert_array_equal(s.clip_lo, [[-2.0, -6.0]])
        np.testing.assert_array_equal(s.clip_hi, [[3.0, 9.0]])
        np.testing.assert_array_equal(s.clip_bounds(2)[1], [[3.0, 9.0]])
        assert s.fused

    def test_pool_at_column_granularity_is_a_new_array(self):
        # every granularity returns a new array: writing into one unit's setting must not
        # write into the running statistics it came from
        from cimsim.adc.tables import calibration_units
        from cimsim.config import CalibrationGranularity

        units = calibration_units(_fake_layer(n_conv=2), CalibrationGranularity.COLUMN)
        stat = np.array([[1.0, 2.0]])
        out = units.pool(stat, np.min)
        out[0, 0] = 9.0
        np.testing.assert_array_equal(stat, [[1.0, 2.0]])


class TestFusedActivation:
    """A 2-b layer-output ADC fused with ``min(max(kappa·v + bias, 0), clamp)`` per column,
    the analog calibration values given by hand (the idiom of tests/test_mutants_core_sim.py)."""

    # post-activation values, kappa (1, 2), bias (-1, 0.5), clamp 6: column 0 -> [0, 1, 3, 0];
    # column 1 -> [2.5, 0, 6 (6.5 clamped), 0]; column 0's pre-activation never exceeds 3
    A = np.array([[0.0, 1.0], [2.0, -1.0], [4.0, 3.0], [-5.0, -4.0]])
    ACT = (np.array([1.0, 2.0]), np.array([-1.0, 0.5]), 6.0)

    @staticmethod
    def _fit(stat: str, a: np.ndarray | None = None, act=None, method=None, **adc):
        from cimsim.adc.activation import FusedActivation, fit_activation_levels
        from cimsim.arrays.program import program
        from tests.conftest import bskmq_chip

        a = TestFusedActivation.A if a is None else a
        chip = bskmq_chip(weight_bits=4, bits=2, granularity="column")
        chip = chip.replace(adc=chip.adc.replace(**{"kind": "sar", "calibration_stat": stat,
                                                    **adc}))
        layer = program(np.ones((2, 3), dtype=np.int64), chip)
        stats = _stats(a)
        act = FusedActivation(*(act or TestFusedActivation.ACT))
        return fit_activation_levels(layer, stats, act, method=method)

    def test_mean_std_uses_the_clamped_values(self):
        lv = self._fit("mean_std", n_sigma=0.5)
        for c, post in enumerate((np.array([0.0, 1.0, 3.0, 0.0]),
                                  np.array([2.5, 0.0, 6.0, 0.0]))):  # 6.5 clamped to 6
            assert lv.a_max[c] == pytest.approx(post.mean() + 0.5 * post.std(), rel=1e-12)

    def test_minmax_of_a_column_that_never_turns_on_is_zero(self):
        # column 1: kappa·v + bias = -2v - 10 < 0 for every v seen: the ReLU's output is 0,
        # so is a_max (not the negative pre-activation maximum)
        lv = self._fit("minmax", act=(np.array([1.0, 2.0]), np.array([-1.0, -10.0]), 6.0))
        np.testing.assert_array_equal(lv.a_max, [3.0, 0.0])
        np.testing.assert_array_equal(lv.levels[1], [0.0, 0.0, 0.0, 0.0])

    def test_percentile_sets_a_max_at_the_upper_percentile(self):
        lv = self._fit("percentile", percentile=75.0)
        want = [np.percentile(post, 75.0) for post in ([0.0, 1.0, 3.0, 0.0], [2.5, 0.0, 6.0, 0.0])]
        np.testing.assert_allclose(lv.a_max, want, rtol=1e-12)

    def test_a_flash_adc_uses_the_uniform_grid(self):
        # only a ramp fits its levels; flash, like sar, spaces 4 levels evenly on [0, a_max]
        lv = self._fit("minmax", kind="flash")
        np.testing.assert_array_equal(lv.levels, [[0, 1, 2, 3], [0, 2, 4, 6]])

    def test_a_ramp_fits_with_the_method_given(self):
        # method= overrides adc.level_fit (the training twin refits with it)
        args = dict(kind="ramp", level_fit="bs_kmq")
        rng = np.random.default_rng(2)
        a = np.abs(rng.normal(size=(400, 2))) ** 3  # skewed: the fits differ
        got = self._fit("minmax", a=a, method="uniform", **args)
        want = self._fit("minmax", a=a, kind="ramp", level_fit="uniform")
        np.testing.assert_array_equal(got.levels, want.levels)
        assert not np.array_equal(self._fit("minmax", a=a, **args).levels, want.levels)

    def test_a_ramp_fits_on_zero_to_a_max(self):
        # percentile 60: a_max is below the largest post-activation value, and the ramp's
        # levels are fitted on [0, a_max]: none above it
        rng = np.random.default_rng(3)
        a = rng.uniform(0.0, 4.0, size=(400, 2))
        lv = self._fit("percentile", a=a, percentile=60.0, kind="ramp", level_fit="uniform")
        assert np.all(lv.levels.max(axis=1) <= lv.a_max + 1e-12)
        np.testing.assert_allclose(lv.levels[:, -1], lv.a_max, rtol=1e-12)


class TestNonlinearThinning:
    def test_pooled_fits_keep_up_to_200000_samples(self):
        # MAX_POOLED_SAMPLES = 200_000: 150,000 samples are fitted whole, 200,001 by every
        # ceil(200001 / 200000) = 2nd
        from cimsim.adc.nonlinear import thin_samples

        x = np.arange(150_000.0)
        assert thin_samples(x) is x
        y = np.arange(200_001.0)
        np.testing.assert_array_equal(thin_samples(y), y[::2])

    def test_a_ramp_unit_spans_the_exact_extremes_not_the_kept_ones(self):
        # 5 rows, max_samples 2: the fit sees rows 0 and 3 (5, 2), while the running extremes
        # are -3 and 7; the levels are fitted on [-3, 7] at both ends
        from cimsim.adc.levels import fit_levels
        from cimsim.adc.nonlinear import levels_from_samples

        layer = _fake_layer(kind="ramp", bits=2, level_fit="uniform",
                            calibration_granularity="column")
        stats = _stats(np.array([[5.0], [-3.0], [1.0], [2.0], [7.0]]), max_samples=2)
        np.testing.assert_array_equal(stats.kept(0)[:, 0], [5.0, 2.0])
        t = levels_from_samples(layer, stats)
        want = fit_levels(np.array([5.0, 2.0]), 2, "uniform", lo=-3.0, hi=7.0)
        np.testing.assert_array_equal(t.lvl[0, 0], want.levels)
        np.testing.assert_array_equal(t.thr[0, 0], want.thresholds)
        assert want.levels[0] < 2.0 and want.levels[-1] > 5.0  # both ends reach past the kept

"""Tests from a third mutation-testing round over the linear ADC ranges and the nonlinear ADC
levels (``cimsim/adc/linear.py``, ``cimsim/adc/levels.py``): each test pins a behaviour that a
surviving mutant (a comparison, bound, constant or statement changed) left unchecked by the
earlier rounds (``tests/adc/test_mutants_adc_round2.py``,
``tests/adc/test_mutants_levels_round2.py``, ``tests/test_mutants_levels_rng_eval.py``), with
known answers worked out by hand from the docstrings (docs/hardware-model.md, docs/levels.md).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cimsim.adc.levels import Levels, fit_levels
from cimsim.adc.linear import RangeStats, grid, ranges_from_samples
from tests.conftest import ideal_chip


def _fake_layer(n_conv: int = 1, n_groups: int = 1, fs: tuple[float, float] = (-np.inf, np.inf),
                **adc):
    """The parts of a programmed layer that the calibrated policies read, at layer granularity
    unless ``adc`` says otherwise (the idiom of test_mutants_adc_round2.py)."""
    adc = {"range_policy": "calibrated", "calibration_granularity": "layer", **adc}
    return SimpleNamespace(chip=ideal_chip(adc=adc), n_groups=n_groups, n_conversions=n_conv,
                           fs_lo=fs[0], fs_hi=fs[1])


def _pair(start_delta) -> tuple[float, float]:
    start, delta = start_delta
    return float(start), float(delta)


# ---------------------------------------------------------------------------------------------
# linear.py
# ---------------------------------------------------------------------------------------------


class TestGridZeroAlignment:
    def test_two_codes_are_never_zero_aligned(self):
        """linear.py grid, ``top >= 2`` -> ``top >= 1``: with 2 codes no m in [1, top - 1]
        exists; 2 codes over [-1, 3] are the literal grid -1, 3 (step 4), not an infinite
        step from m = 0."""
        assert _pair(grid(-1.0, 3.0, 2, True)) == (-1.0, 4.0)

    def test_a_range_starting_at_zero_is_literal(self):
        """linear.py grid, ``lo < 0`` -> ``lo <= 0``: [0, 7] over 8 codes already has 0 as a
        code: start 0, step 1 (counted as straddling, one code went below 0: step 7/6)."""
        assert _pair(grid(0.0, 7.0, 8, True)) == (0.0, 1.0)

    def test_a_range_ending_at_zero_is_literal(self):
        """linear.py grid, ``hi > 0`` -> ``hi >= 0``: [-7, 0] over 8 codes: start -7, step 1
        (counted as straddling, m clipped to 6 codes below 0: step 7/6)."""
        assert _pair(grid(-7.0, 0.0, 8, True)) == (-7.0, 1.0)


class TestRangeStatsRound3:
    def test_without_keep_samples_no_rows_are_held(self):
        """linear.py RangeStats.add, the early ``return`` when ``not self.keep`` removed: the
        statistics of min/max/mean need no samples, and none are held (memory)."""
        s = RangeStats(2, 3, keep_samples=False)
        s.add(0, np.ones((5, 3)))
        s.add(1, np.ones((5, 3)))
        assert s.samples == [[], []]
        assert s._held == [0, 0]

    def test_the_cap_is_at_least_four_times_max_samples(self, monkeypatch):
        """linear.py RangeStats.__init__, ``4 * max_samples`` -> ``2 * max_samples``: with
        KEEP_VALUES lowered to 4 values (1 conversion: 4 rows) and max_samples = 2, the cap is
        max(4 x 2, 4) = 8 rows: 8 rows are all held, a 9th halves them."""
        monkeypatch.setattr(RangeStats, "KEEP_VALUES", 4)
        s = RangeStats(1, 1, keep_samples=True, max_samples=2)
        s.add(0, np.arange(8.0)[:, None])
        np.testing.assert_array_equal(np.concatenate(s.samples[0])[:, 0], np.arange(8.0))
        s.add(0, np.array([[8.0]]))
        np.testing.assert_array_equal(np.concatenate(s.samples[0])[:, 0], [0, 2, 4, 6, 8])

    def test_no_conversions_divide_by_no_zero(self):
        """linear.py RangeStats.__init__, ``KEEP_VALUES // max(n_conv, 1)`` ->
        ``KEEP_VALUES // n_conv``: a layer part without conversions (n_conv = 0) is built, its
        cap the whole KEEP_VALUES (a ZeroDivisionError otherwise)."""
        s = RangeStats(1, 0, keep_samples=True, max_samples=3)
        assert s._cap == RangeStats.KEEP_VALUES

    def test_kept_samples_are_float32(self):
        """linear.py RangeStats.add, ``astype(np.float32)`` -> ``float64``: the rows held are
        float32 (half the memory; ``kept`` documents (m', C) float32), 0.1 held as
        float32(0.1)."""
        s = RangeStats(1, 2, keep_samples=True)
        s.add(0, np.array([[0.1, 2.0]]))
        k = s.kept(0)
        assert k.dtype == np.float32
        assert k[0, 0] == np.float32(0.1)

    def test_one_add_far_past_the_cap_halves_until_under_it(self, monkeypatch):
        """linear.py RangeStats.add, ``while held > cap`` -> ``if``: with a cap of 8 rows
        (KEEP_VALUES lowered to 8, 1 conversion, max_samples = 1), one add of 33 rows (places
        0..32) halves three times, to the rows at multiples of 8 (17, then 9 rows were still
        over the cap)."""
        monkeypatch.setattr(RangeStats, "KEEP_VALUES", 8)
        s = RangeStats(1, 1, keep_samples=True, max_samples=1)
        s.add(0, np.arange(33.0)[:, None])
        np.testing.assert_array_equal(np.concatenate(s.samples[0])[:, 0], [0, 8, 16, 24, 32])
        assert s._stride == [8]

    def test_streams_are_input_planes_not_places_within_a_plane(self):
        """linear.py RangeStats.add, ``index // n_vectors`` -> ``index % n_vectors``: with 2
        places per plane, rows 1e16, 1 (plane 0) and -1e16, 1 (plane 1) sum per plane to 1e16
        and -1e16 (each + 1 rounds away at 1e16, whose ulp is 2), in all 0; summed by place
        within a plane (1e16 - 1e16, 1 + 1) they made 2."""
        s = RangeStats(1, 1, keep_samples=False, n_vectors=2)
        s.add(0, np.array([[1e16], [1.0], [-1e16], [1.0]]))
        assert s.s1[0, 0] == 0.0

    def test_default_places_count_all_rows_added_before(self):
        """linear.py RangeStats.add, ``_seen[g] += rows`` -> ``_seen[g] = rows``: three adds
        of two rows take places 0..5 and come back in the order added (the third add restarted
        at place 2, interleaving it with the second: 1, 2, 3, 5, 4, 6)."""
        s = RangeStats(1, 1, keep_samples=True)
        for first in (1.0, 3.0, 5.0):
            s.add(0, np.array([[first], [first + 1]]))
        np.testing.assert_array_equal(s.kept(0)[:, 0], [1, 2, 3, 4, 5, 6])



class TestRangeStatsMaxSamples:
    @pytest.mark.parametrize("bad", [0, -1, 1.5, True])
    def test_max_samples_must_be_a_positive_integer(self, bad):
        """linear.py RangeStats.__init__ (a real bug this round found, fixed): ``max_samples``
        sets the stride ``ceil(m / max_samples)`` of :meth:`kept`; 0 divided by zero there,
        -1 gave a negative stride (5 rows added, ``kept`` returned only the last); a value
        below 1 or no integer is refused by name when the statistics are made, as
        ``n_vectors`` is."""
        with pytest.raises(ValueError, match=r"^RangeStats: max_samples = .*; allowed: an "
                                             r"integer >= 1"):
            RangeStats(1, 1, keep_samples=True, max_samples=bad)
        assert RangeStats(1, 1, keep_samples=True, max_samples=np.int64(1)).max_samples == 1


class TestRangesFromSamplesRound3:
    def test_pooled_percentile_values_at_exactly_the_bound_are_not_thinned(self):
        """linear.py ranges_from_samples, ``vals.size > max_samples * 64`` -> ``>=``: 128
        pooled values (2 rows x 64 columns) with max_samples = 2 are exactly 64 x 2, kept
        whole: the 100th percentile is 127 (thinned to every 2nd it is 126); 4 bits, not
        zero-aligned: start 0, step 127 / 15."""
        layer = _fake_layer(n_conv=64, bits=4, zero_aligned=False,
                            calibration_stat="percentile", percentile=100.0)
        s = RangeStats(1, 64, keep_samples=True, max_samples=2)
        s.add(0, np.arange(128.0).reshape(2, 64))
        t = ranges_from_samples(layer, s)
        assert t.lo[0, 0] == 0.0
        assert t.delta[0, 0] == 127.0 / 15


# ---------------------------------------------------------------------------------------------
# levels.py
# ---------------------------------------------------------------------------------------------


class TestBsKmqParamsRound3:
    def test_min_mass_one_is_allowed(self):
        """levels.py _check_params, ``0 <= min_mass <= 1`` -> ``< 1``: min_mass = 1 (pin an
        end only when every sample is at it) is in [0, 1]. All samples at lo = 0 (range [0, 1]):
        0 is pinned, and the 3 levels missing split the widest gaps (lowest first on a tie):
        0.5, then 0.25, then 0.75."""
        lv = fit_levels(np.zeros(4), 2, "bs_kmq", lo=0.0, hi=1.0, min_mass=1.0)
        np.testing.assert_array_equal(lv.levels, [0.0, 0.25, 0.5, 0.75])

    @pytest.mark.parametrize(("bits", "params", "name"), [
        (True, {}, "bits"),
        (2, {"max_iter": True}, "max_iter"),
    ])
    def test_a_boolean_is_not_an_int(self, bits, params, name):
        """levels.py _is_int, ``not isinstance(value, bool)`` dropped: ``bits=True`` (a 1-b
        ADC by accident) and ``max_iter=True`` (one Lloyd step) are refused by name."""
        from cimsim.errors import ConfigError

        with pytest.raises(ConfigError, match=f"{name} must be an int"):
            fit_levels(np.array([0.0, 0.3, 1.0]), bits, "kmeans", **params)


class TestLevelsRound3:
    def test_the_arrays_given_are_copied_not_frozen(self):
        """levels.py Levels.__post_init__, ``np.array(..., copy=True)`` -> ``np.asarray``: the
        caller's float64 arrays are copied, so they stay writable (the copy is made
        read-only) and a later write to them does not change the ADC."""
        t, lv = np.array([0.5]), np.array([0.0, 1.0])
        adc = Levels(t, lv)
        assert t.flags.writeable and lv.flags.writeable
        t[0], lv[1] = 0.9, 2.0
        np.testing.assert_array_equal(adc.thresholds, [0.5])
        np.testing.assert_array_equal(adc.levels, [0.0, 1.0])
        assert not adc.thresholds.flags.writeable

    def test_a_clamp_limit_of_zero_is_given_not_defaulted(self):
        """levels.py fit_levels, ``hi if hi is None`` -> ``if not hi``: hi = 0.0 is a limit
        given (falsy, not None): 1-b uniform over [-1, 0] (0.5 clipped to 0) has levels -1
        and 0, not -1 and the sample maximum 0.5."""
        lv = fit_levels(np.array([-1.0, 0.5]), 1, "uniform", hi=0.0)
        np.testing.assert_array_equal(lv.levels, [-1.0, 0.0])

    def test_kmeans_pads_gaps_out_to_the_limits_given(self):
        """levels.py _fit_kmeans, padding between ``lo``/``hi`` -> between the samples'
        extremes: 2 distinct samples 0.4, 0.6 on [0, 1] at 2 b: gaps 0.4, 0.2, 0.4; the widest
        (lowest on the tie) [0, 0.4] gets 0.2, then [0.6, 1] gets 0.8 (between the samples
        only: 0.5 and 0.45)."""
        lv = fit_levels(np.array([0.4, 0.6]), 2, "kmeans", lo=0.0, hi=1.0)
        np.testing.assert_array_equal(lv.levels, [0.2, 0.4, 0.6, 0.8])

    def test_bs_kmq_refits_when_only_the_top_end_is_pinned(self):
        """levels.py _fit_bs_kmq, ``if pinned and interior.size`` -> ``if pin_lo and ...``:
        the refit also runs with only hi pinned. Mass 10/15 at 1 (min_mass 0.5) pins hi, 0 is
        one sample (not pinned); exact 3-means of the interior {0, 0.3, 0.4, 0.7, 0.9} gives
        0, 0.35, 0.8. The midpoint of 0.8 and the pinned 1 is 0.9, so 0.9 goes up (ties go up)
        to the pinned cell, and the free level refits to 0.7 (without the refit: 0.8)."""
        x = np.array([0.0, 0.3, 0.4, 0.7, 0.9] + [1.0] * 10)
        lv = fit_levels(x, 2, "bs_kmq", min_mass=0.5)
        np.testing.assert_allclose(lv.levels, [0.0, 0.35, 0.7, 1.0], rtol=0, atol=1e-15)
        assert lv.levels[-1] == 1.0

    def test_binned_exact_kmeans_scales_by_a_power_of_two(self):
        """levels.py _optimal_levels, the Lloyd steps after binning with ``tol * (hi - lo)`` ->
        ``tol`` (absolute): tol is relative to the range, so with max_bins = 16 (binned) the
        fit of the samples times 2**-40 is the fit at 1 scaled, bit for bit (an absolute tol
        of 1e-9 stopped the Lloyd steps on a 1e-11-wide range after one step)."""
        rng = np.random.default_rng(3)
        x = np.concatenate([rng.normal(0.0, 1.0, 400), rng.normal(3.0, 0.5, 100),
                            rng.exponential(2.0, 100) + 5.0])
        ref = fit_levels(x, 3, "kmeans_optimal", max_bins=16)
        got = fit_levels(x * 2.0**-40, 3, "kmeans_optimal", max_bins=16)
        np.testing.assert_array_equal(got.levels, ref.levels * 2.0**-40)

"""Second mutation-testing round over ``cimsim/adc/levels.py``.

Each test pins behaviour that a mutant of ``levels.py`` changed while ``tests/adc/test_levels.py``,
``tests/test_mutants_levels_rng_eval.py`` and ``tests/train/test_mutants_raoq_bskmq.py`` still
passed: the widest-gap padding (order and float rounding), known answers worked out by hand for
``quantization_mse``, the exact K-means of weighted samples, ``uniform``'s exact thresholds and
the BS-KMQ refit with the pinned levels held.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from cimsim.adc.levels import (
    Levels,
    _optimal_partition,
    _optimal_partition_numpy,
    fit_levels,
    quantization_mse,
)
from cimsim.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# Padding: the widest gap is split first (docs/levels.md, "Always L levels")
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["kmeans", "kmeans_optimal", "bs_kmq"])
def test_padding_splits_the_widest_gap_not_the_narrowest(method: str) -> None:
    # 3 distinct values for 4 levels: gaps [0, 0.1] and [0.1, 1]; the one missing level goes
    # at the midpoint of the wider, 0.55 (the narrower would give 0.05)
    x = np.array([0.0, 0.1, 1.0])
    lv = fit_levels(x, 2, method)
    np.testing.assert_array_equal(lv.levels, [0.0, 0.1, 0.55, 1.0])
    assert quantization_mse(x, lv) == 0.0


def test_padding_measures_each_half_of_a_rounded_split_by_its_own_width() -> None:
    # points 1+u and 1+4u (u = ulp of 1): the midpoint 1+2.5u rounds to 1+2u, leaving halves
    # of u and 2u. The next split must take the wider upper half (1+3u); a width mismeasured
    # as the other half's ties them, splits the lower one, finds no float inside and repeats
    # the top point instead.
    u = [1.0]
    for _ in range(4):
        u.append(np.nextafter(u[-1], 2.0))
    x = np.array([u[1], u[4]])
    lv = fit_levels(x, 2, "kmeans")
    np.testing.assert_array_equal(lv.levels, u[1:5])


# ---------------------------------------------------------------------------------------------
# quantization_mse: mean over the samples as given, clipping error included
# ---------------------------------------------------------------------------------------------


def test_quantization_mse_by_hand() -> None:
    # threshold 0.4, levels 0 and 1: -1 -> 0 (err 1, clipping), 0.25 -> 0 (0.0625),
    # 0.4 -> 1 (a tie goes up: 0.36), 2 -> 1 (err 1, clipping); mean 2.4225 / 4
    lv = Levels(np.array([0.4]), np.array([0.0, 1.0]))
    x = np.array([[-1.0, 0.25], [0.4, 2.0]])
    assert quantization_mse(x, lv) == pytest.approx(2.4225 / 4, rel=1e-15)


# ---------------------------------------------------------------------------------------------
# Known answers of the fits on tiny samples
# ---------------------------------------------------------------------------------------------


def test_exact_kmeans_weighs_repeated_values() -> None:
    # distinct values 0, 1, 2 with counts 1, 1, 10: {0, 1} | {2 x 10} has SSE 0.5 and
    # {0} | {1, 2 x 10} has 110/121; unweighted the two would tie (and the smaller split win)
    x = np.array([0.0, 1.0] + [2.0] * 10)
    lv = fit_levels(x, 1, "kmeans_optimal")
    np.testing.assert_array_equal(lv.levels, [0.5, 2.0])
    assert quantization_mse(x, lv) == pytest.approx(0.5 / 12, rel=1e-12)


def test_exact_kmeans_level_is_the_weighted_group_mean() -> None:
    # {0, 0, 0, 1} | {10}: level (0 + 0 + 0 + 1) / 4 = 0.25, not the mean 0.5 of the values
    lv = fit_levels(np.array([0.0, 0.0, 0.0, 1.0, 10.0]), 1, "kmeans_optimal")
    np.testing.assert_array_equal(lv.levels, [0.25, 10.0])
    np.testing.assert_array_equal(lv.thresholds, [5.125])


def test_cdf_by_hand() -> None:
    # 0..7 at 2 b: quantiles at 1/4, 1/2, 3/4 = 1.75, 3.5, 5.25; the cells hold {0, 1},
    # {2, 3}, {4, 5}, {6, 7}
    lv = fit_levels(np.arange(8.0), 2, "cdf")
    np.testing.assert_array_equal(lv.thresholds, [1.75, 3.5, 5.25])
    np.testing.assert_array_equal(lv.levels, [0.5, 2.5, 4.5, 6.5])


def test_cdf_thresholds_stay_inside_lo_hi_when_no_floats_are_left() -> None:
    # two adjacent floats, 90 % on the top one: three thresholds cannot be spread one ulp
    # apart inside [1, 1 + u]; the downward pass from hi would put the first below lo, and
    # clipping it back to lo leaves two equal thresholds (allowed) inside the range
    u = np.nextafter(1.0, 2.0)
    x = np.array([1.0] + [u] * 9)
    lv = fit_levels(x, 2, "cdf")
    np.testing.assert_array_equal(lv.thresholds, [1.0, 1.0, u])
    np.testing.assert_array_equal(lv.levels, [1.0, 1.0, 1.0, u])
    assert quantization_mse(x, lv) == 0.0


def test_kmeans_by_hand() -> None:
    # 0..8 at 2 b: start 1, 3, 5, 7 (quantiles at (i + 0.5)/4); cells {0, 1}, {2, 3}, {4, 5},
    # {6, 7, 8} -> 0.5, 2.5, 4.5, 7, whose midpoints keep the same cells: the fixed point
    lv = fit_levels(np.arange(9.0), 2, "kmeans")
    np.testing.assert_array_equal(lv.levels, [0.5, 2.5, 4.5, 7.0])
    np.testing.assert_array_equal(lv.thresholds, [1.5, 3.5, 5.75])


def test_uniform_thresholds_are_exact_halfway_points_on_a_clean_grid() -> None:
    # lo 0, hi 3: step 1, and floor(a + 0.5) switches at 1.5 and 2.5 exactly, at 0.5 one ulp
    # below it (0.49999999999999994 + 0.5 rounds to 1.0): each threshold is the smallest float
    # whose linear code is i, not the largest float below it
    lv = fit_levels(np.array([0.0, 3.0]), 2, "uniform")
    np.testing.assert_array_equal(lv.thresholds, [np.nextafter(0.5, 0.0), 1.5, 2.5])
    np.testing.assert_array_equal(lv.levels, [0.0, 1.0, 2.0, 3.0])


def test_max_iter_zero_returns_the_start_without_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    # max_iter = 0 asks for the start levels: no Lloyd step was cut short, so nothing to warn of
    with caplog.at_level(logging.WARNING, logger="cimsim.adc.levels"):
        lv = fit_levels(np.array([0.0, 0.1, 3.0]), 2, "lloyd_max", max_iter=0)
    np.testing.assert_array_equal(lv.levels, [0.0, 1.0, 2.0, 3.0])
    assert not [r for r in caplog.records if "max_iter" in r.getMessage()]


# ---------------------------------------------------------------------------------------------
# BS-KMQ: Lloyd refit with the pinned levels held (docs/levels.md, bs_kmq step 4)
# ---------------------------------------------------------------------------------------------


def test_bs_kmq_refit_holds_the_pins_and_lets_the_low_pin_serve_nearby_samples() -> None:
    # masses at 0 and 1 pinned; interior {0.1, 0.5, 0.6, 0.9} at 2 free levels: exact K-means
    # gives 0.1 and 2/3. With 0, 0.1, 2/3, 1 the midpoints put 0.9 in the pinned top cell, so
    # the free level refits to the mean of {0.5, 0.6} = 0.55 and the top level stays at 1.
    x = np.array([0.0] * 10 + [0.1, 0.5, 0.6, 0.9] + [1.0] * 10)
    lv = fit_levels(x, 2, "bs_kmq")
    np.testing.assert_allclose(lv.levels, [0.0, 0.1, 0.55, 1.0], rtol=0, atol=1e-15)
    assert lv.levels[0] == 0.0 and lv.levels[-1] == 1.0


# ---------------------------------------------------------------------------------------------
# Exact K-means: the table limit is "beyond" its size, so a table of exactly the limit is allowed
# ---------------------------------------------------------------------------------------------


def test_a_split_table_of_exactly_the_limit_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    import cimsim.adc.levels as levels_mod

    # 3 levels over 9 points: (3 + 1) x (9 + 1) = 40 int64 entries. With the limit (1 GiB of
    # entries in the package) lowered to 40 the fit runs, and the exact 3-means of 0..8 split
    # it into thirds; 4 levels (50 entries) are over it. Lowered, not met: a test that
    # allocated the real 1-GiB table could be refused on a host without memory overcommit.
    monkeypatch.setattr(levels_mod, "_MAX_SPLIT_ENTRIES", 40)
    x = np.arange(9, dtype=np.float64)
    np.testing.assert_array_equal(levels_mod._optimal_partition(x, np.ones_like(x), 3), [3, 6])
    with pytest.raises(ConfigError, match="GiB table"):
        levels_mod._optimal_partition(x, np.ones_like(x), 4)


def test_bs_kmq_refit_runs_on_the_interior_only_not_on_the_suppressed_band() -> None:
    # eps = 0.2: the ten 0.2s are within eps of lo (mass 10/14 >= 0.5), so lo is pinned and
    # they are suppressed; hi is not pinned (0.8 alone, 1/14), so 0.8 stays inside. Exact
    # 3-means of {0.3, 0.5, 0.6, 0.8}: 0.3, 0.55, 0.8, already a fixed point of the refit on
    # those four. Refitted on all samples instead, the 0.2s (above the midpoint 0.15) would
    # drag the level 0.3 down to 2.3 / 11.
    x = np.array([0.2] * 10 + [0.3, 0.5, 0.6, 0.8])
    lv = fit_levels(x, 2, "bs_kmq", lo=0.0, hi=1.0, eps=0.2, min_mass=0.5)
    np.testing.assert_allclose(lv.levels, [0.0, 0.3, 0.55, 0.8], rtol=0, atol=1e-15)
    assert lv.levels[0] == 0.0


# ---------------------------------------------------------------------------------------------
# Parameter checks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["lloyd_max", "kmeans", "kmeans_optimal", "bs_kmq"])
def test_an_infinite_tol_is_refused_as_not_finite(method: str) -> None:
    # tol = inf would stop every Lloyd fit after one step without a word
    with pytest.raises(ConfigError, match="tol must be a finite number"):
        fit_levels(np.array([0.0, 0.3, 1.0]), 2, method, tol=np.inf)


def test_empty_samples_are_refused_by_name() -> None:
    # an empty array would fail inside NumPy's min (fit) or give a NaN MSE with a warning
    lv = Levels(np.array([0.5]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="samples is empty"):
        quantization_mse(np.array([]), lv)
    with pytest.raises(ValueError, match="samples is empty"):
        fit_levels(np.zeros((0, 3)), 2, "uniform", lo=0.0, hi=1.0)


def test_a_single_level_is_not_an_adc() -> None:
    # L = 2**bits >= 2: one level (bits 0) with no threshold is refused
    with pytest.raises(ConfigError, match=r"levels must have 2\*\*bits >= 2 entries"):
        Levels(np.empty(0), np.array([0.5]))


def test_zero_dimensional_thresholds_are_refused_as_not_1d() -> None:
    # a scalar threshold must be named as the field at fault, not fail inside np.diff
    with pytest.raises(ConfigError, match="thresholds must be 1-D"):
        Levels(np.array(0.5), np.array([0.0, 1.0]))


@pytest.mark.parametrize("limits", [{"lo": -np.inf}, {"hi": np.inf}])
def test_infinite_clamp_limits_are_refused_by_name(limits: dict) -> None:
    # an infinite range makes the step (hi - lo) / (L - 1) infinite; the limits are named
    with pytest.raises(ConfigError, match="lo and hi must be finite"):
        fit_levels(np.array([0.0, 0.3, 1.0]), 2, "kmeans", **limits)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("method", ["kmeans_optimal", "bs_kmq"])
@pytest.mark.parametrize(("bits", "max_bins"), [(11, 4096), (12, 4096), (13, 8192)])
def test_default_max_bins_is_4096_or_the_levels_whichever_is_more(
        method: str, bits: int, max_bins: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import cimsim.adc.levels as levels_mod

    # docs: max_bins defaults to 4096, or 2**bits above 12 b; the spy reads what the exact
    # K-means is given and stops the fit there (the fit itself is not under test)
    seen = []

    def spy(xs, k, max_bins, tol, max_iter):
        seen.append(max_bins)
        raise _Stop

    monkeypatch.setattr(levels_mod, "_optimal_levels", spy)
    # bs_kmq: no end holds min_mass = 0.5 of a ramp, so the whole ramp is its interior
    params = {"min_mass": 0.5} if method == "bs_kmq" else {}
    with pytest.raises(_Stop):
        fit_levels(np.linspace(0.0, 1.0, 10), bits, method, **params)
    assert seen == [max_bins]


def test_a_tie_of_positive_costs_is_broken_at_the_smallest_split_by_both_dps() -> None:
    # values 0, 4..9 with weights 3, 1, 2, 2, 1, 2, 1 in 5 parts: {0} {4, 5} {6} {7, 8} {9}
    # and {0} {4, 5} {6, 7} {8} {9} both cost 2/3 + 2/3 (a weight-1 and a weight-2 point one
    # apart). The singleton SSEs of 7 and 8, w x^2 - (w x)^2 / w over centred prefix sums,
    # round to a few 1e-15 below 0: floored at 0, as in the Numba kernel, they cannot break
    # the tie, and the smaller split wins in both.
    x = np.array([0.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    w = np.array([3.0, 1.0, 2.0, 2.0, 1.0, 2.0, 1.0])
    np.testing.assert_array_equal(_optimal_partition(x, w, 5), [1, 3, 4, 6])
    np.testing.assert_array_equal(_optimal_partition_numpy(x, w, 5), [1, 3, 4, 6])

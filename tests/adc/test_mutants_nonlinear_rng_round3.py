"""Tests written for the survivors of a third, short hand-made mutation round over the
nonlinear (ramp) ADC's level fitting (``cimsim/adc/nonlinear.py``) and the counter-based noise
streams and exact code sampler (``cimsim/arrays/_rng.py``), aimed at what the earlier rounds
(tests/adc/test_mutants_adc_round2.py, tests/test_mutants_levels_rng_eval.py) left unpinned:
pooling over several row groups and columns, and the bit-exact values of the NumPy twins on
their rare paths. Tiny inputs on a stand-in layer; each docstring names the line and the
change it kills."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from numba import njit, uint64

import cimsim.adc.nonlinear as nonlinear_mod
from cimsim.adc.levels import fit_levels
from cimsim.adc.linear import RangeStats
from cimsim.adc.nonlinear import levels_from_samples, thin_samples, unseen_span
from cimsim.arrays import _rng
from cimsim.arrays._rng import code_offset_slow, fill_normals_n, fill_words
from tests.conftest import ideal_chip


def _ramp_layer(granularity: str, n_groups: int, n_conv: int,
                fs: tuple[float, float] = (-np.inf, np.inf), level_fit: str = "uniform"):
    """The parts of a programmed layer :func:`levels_from_samples` reads: a 2-bit ramp ADC."""
    chip = ideal_chip(adc=dict(kind="ramp", bits=2, level_fit=level_fit,
                               range_policy="calibrated", calibration_granularity=granularity))
    return SimpleNamespace(chip=chip, n_groups=n_groups, n_conversions=n_conv,
                           fs_lo=fs[0], fs_hi=fs[1])


def _group_stats(groups: list[np.ndarray], max_samples: int = 20000) -> RangeStats:
    """RangeStats holding ``groups[g]`` (rows, C) for row group g."""
    s = RangeStats(len(groups), groups[0].shape[1], keep_samples=True, max_samples=max_samples)
    for g, a in enumerate(groups):
        s.add(g, a)
    return s


# ---------------------------------------------------------------------------------------------
# cimsim.adc.nonlinear
# ---------------------------------------------------------------------------------------------


class TestUnseenSpan:
    def test_an_infinite_top_of_the_full_scale_gives_no_span(self) -> None:
        """nonlinear.py ``unseen_span``: ``np.isfinite(layer.fs_hi)`` dropped returned
        ``hi = inf`` for a layer whose full scale is unbounded above (the earlier round only
        pinned an infinite ``fs_lo``)."""
        layer = SimpleNamespace(fs_lo=0.0, fs_hi=np.inf)
        assert unseen_span(np.full(3, 2.0), layer) == {}


class TestPooledUnits:
    def test_each_group_is_thinned_then_the_pool(self, monkeypatch) -> None:
        """nonlinear.py ``levels_from_samples``: the samples a layer-wide fit sees are each row
        group's thinned to MAX_POOLED_SAMPLES, concatenated, and the whole thinned again.
        Dropping the inner ``thin_samples`` thinned the raw concatenation (other samples);
        dropping the outer one fitted 275,000 samples, above the cap."""
        seen = []

        def spy(values, *args, **kwargs):
            seen.append(np.array(values))
            return fit_levels(values, *args, **kwargs)

        monkeypatch.setattr(nonlinear_mod, "fit_levels", spy)
        g0 = np.arange(250_000.0)[:, None]
        g1 = -np.arange(1.0, 150_001.0)[:, None]
        layer = _ramp_layer("layer", 2, 1)
        levels_from_samples(layer, _group_stats([g0, g1], max_samples=10**6))
        want = thin_samples(np.concatenate([g0[::2, 0], g1[:, 0]]))
        assert len(seen) == 1
        assert seen[0].size == want.size == 137_500
        np.testing.assert_array_equal(seen[0], want)


class TestPooledThinningKeepsEveryColumn:
    """nonlinear.py ``levels_from_samples``: a unit's samples were
    ``per_g[g][:, cols].ravel()`` (row-major: the columns interleaved) thinned by a stride
    ``ceil(size / MAX_POOLED_SAMPLES)``. When that stride shares a factor with the number of
    columns, the kept positions ``k * stride`` all fall in the same columns: with 2 columns
    and 150,000 kept rows (stride 2) a layer-wide fit saw column 0 only, and a column whose
    values differ (here: all negative) has no say in the levels it is converted with.
    Conversions are output-major (an output's pair or slice columns side by side), so a
    stride of 2 can leave out one kind of column entirely; with the default ``max_samples``
    (20,000 rows per group) a layer of 20 conversions calibrated on >= 20,000 vectors is
    thinned by 2 and fitted on its even conversions only."""

    @pytest.mark.parametrize("n_cols", [1, 2, 3, 7])
    def test_thin_samples_strides_over_rows(self, n_cols) -> None:
        """``thin_samples`` of (samples, columns) keeps whole rows, at most the cap in all
        (the fused activation's ramp fit thins its post-activation columns so too)."""
        cap = nonlinear_mod.MAX_POOLED_SAMPLES
        x = np.arange(150_000 * n_cols, dtype=np.float64).reshape(150_000, n_cols)
        kept = nonlinear_mod.thin_samples(x)
        assert kept.shape[1] == n_cols and 0 < kept.size <= cap
        step = int(kept[1, 0] - kept[0, 0]) // n_cols
        np.testing.assert_array_equal(kept, x[::step])

    def test_every_column_contributes_to_a_thinned_pooled_fit(self, monkeypatch) -> None:
        seen = []

        def spy(values, *args, **kwargs):
            seen.append(np.array(values))
            return fit_levels(values, *args, **kwargs)

        monkeypatch.setattr(nonlinear_mod, "fit_levels", spy)
        n = 150_000
        a = np.stack([np.arange(1.0, n + 1.0), -np.arange(1.0, n + 1.0)], axis=1)
        layer = _ramp_layer("layer", 1, 2)
        levels_from_samples(layer, _group_stats([a], max_samples=n))
        assert len(seen) == 1 and seen[0].size <= nonlinear_mod.MAX_POOLED_SAMPLES
        assert (seen[0] > 0).any() and (seen[0] < 0).any()  # both columns sampled


# ---------------------------------------------------------------------------------------------
# cimsim.arrays._rng: the exact code sampler, Numba against its NumPy twin
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def _codes_numba(key, base, u, s, qz):  # pragma: no cover - compiled
    """floor(u[t] + s[t]·z) of draws ``base + t`` as the kernel draws them
    (``_kernels.convert_accumulate``): the words of ``fill_words`` (read from the hashes, as
    its docstring places them), the cell's fast path, else ``code_offset_slow``."""
    n = u.shape[0]
    hh = np.zeros(n // 4 + 2, dtype=np.uint64)
    fill_words(key, base, n, hh)
    j0 = base >> uint64(2)
    out = np.empty(n, dtype=np.int64)
    for t in range(n):
        d = base + uint64(t)  # word d & 3 of hash (d >> 2) - (base >> 2), wrapping past 2^64
        h = hh[np.int64((d >> uint64(2)) - j0) if d >= base else
               np.int64((d >> uint64(2)) + (uint64(1) << uint64(62)) - j0)]
        i = np.int64((h >> ((d & uint64(3)) << uint64(4))) & uint64(0xFFFF)) >> 4
        k = np.floor(u[t] + s[t] * qz[i])
        if np.floor(u[t] + s[t] * qz[i + 1]) == k:
            out[t] = np.int64(k)
        else:
            out[t] = code_offset_slow(key, base + uint64(t), i, u[t], s[t])
    return out


class TestExactSamplerTwins:
    @pytest.mark.parametrize("base", [0, 1, 3, 2**64 - 20_000 - 5], ids=["0", "1", "3", "top"])
    def test_numba_codes_equal_the_numpy_twin_bit_for_bit(self, base: int) -> None:
        """_rng.py ``code_offset_slow`` / ``fill_words`` against ``code_offsets_reference``:
        the slow path's uniform from another counter (attempt 2 for 1), its search bounds
        shifted, or ``fill_words`` one hash short (an odd base), on one side
        only, changed the codes of the undecided draws (which the chi-square tests, each side
        on its own, cannot see); the twin's end cells read as inner cells (``inner`` with
        ``i >= 0`` or ``i <= 4095``, or dropped) took the fast path on a neighbour's edges,
        and ``np.clip(i, 0, ...)`` cast ``floor(-inf)`` to int64 with a RuntimeWarning.
        Bases odd, mid-hash and a block ending just below 2^64."""
        key = _rng.stream_key(1, 1)
        n = 20_000
        rng = np.random.default_rng(0)
        u = rng.uniform(-4.0, 4.0, n)
        s = np.where(np.arange(n) % 2 == 0, 0.7, 2.5)  # many cells hold a code boundary
        idx = np.arange(n, dtype=np.uint64) + np.uint64(base)
        with warnings.catch_warnings():
            # (the end cells' provisional codes are cast from finite floors: no warning)
            warnings.simplefilter("error", RuntimeWarning)
            want = _rng.code_offsets_reference(key, idx, u, s)
        got = _codes_numba(np.uint64(key), np.uint64(base), u, s, _rng.QZ)
        np.testing.assert_array_equal(got, want)
        # the draws covered both paths: the end cells and cells with a boundary inside
        with np.errstate(over="ignore"):
            h = _rng._mix_np(np.uint64(key) + ((idx >> np.uint64(2)) & np.uint64(2**62 - 1))
                             * np.uint64(_rng._GOLDEN))
        cell = ((h >> ((idx & np.uint64(3)) << np.uint64(4))) & np.uint64(0xFFFF)) >> 4
        assert np.count_nonzero(cell == 0) >= 2 and np.count_nonzero(cell == 4095) >= 2


def test_normal_reference_takes_signed_integer_indices() -> None:
    """_rng.py ``normal_reference``: ``np.asarray(idx, dtype=np.uint64)`` as
    ``np.asarray(idx)`` left int64 indices (``np.arange``, a list) to NumPy's promotion with
    the uint64 constants (float64: the hash fails); the draws are those of the uint64
    indices."""
    want = _rng.normal_reference(7, np.arange(6, dtype=np.uint64))
    np.testing.assert_array_equal(_rng.normal_reference(7, np.arange(6)), want)
    np.testing.assert_array_equal(_rng.normal_reference(7, [0, 1, 2, 3, 4, 5]), want)
    codes = _rng.code_offsets_reference(7, np.arange(6, dtype=np.uint64), 0.5, 0.7)
    np.testing.assert_array_equal(_rng.code_offsets_reference(7, np.arange(6), 0.5, 0.7),
                                  codes)


# ---------------------------------------------------------------------------------------------
# cimsim.arrays._rng: the ziggurat's tables and grid (shared by both twins)
# ---------------------------------------------------------------------------------------------


def test_the_top_layers_upper_density_is_one() -> None:
    """_rng.py ``_ziggurat_tables``: ``fn[0] = 1.0`` (f(x_0) := 1, the density at 0) as
    0.999 made the top layer's wedge test compare against a lower ceiling, in both twins
    alike (the earlier tests check FN[1:] only)."""
    assert _rng.FN[0] == 1.0
    assert _rng.FN[1] < 1.0 and np.all(np.diff(_rng.FN[1:]) < 0)


def test_fast_draws_lie_on_odd_multiples_of_their_layer_step() -> None:
    """_rng.py ``_MAG = _GRID - 1``: the mask of the odd numerator 2j + 1. ``_GRID - 2``
    cleared the low bit, so numerators were even and 0 a possible draw (an atom at 0 that the
    module docstring rules out), in both twins alike."""
    idx = np.arange(4096, dtype=np.uint64)
    z = _rng.normal_reference(11, idx)
    with np.errstate(over="ignore"):
        h = _rng._mix_np(np.uint64(11) + (idx >> np.uint64(1)) * np.uint64(_rng._GOLDEN))
    w = (h >> ((idx & np.uint64(1)) << np.uint64(5))) & np.uint64(0xFFFFFFFF)
    i = (w >> np.uint64(21)).astype(np.int64)
    m = (((w << np.uint64(1)) | np.uint64(1)) & np.uint64(2**22 - 1)).astype(np.int64)
    assert np.all(m % 2 == 1)
    fast = m < _rng.KN[i]
    assert fast.sum() > 4000
    np.testing.assert_array_equal(z[fast], m[fast] * _rng.WN[i[fast]])
    assert np.all(z != 0.0)


@njit(cache=True)
def _fill_first(key, base, n, z, kn, wn):  # pragma: no cover - compiled
    hh = np.empty(z.shape[0] // 2 + 1, dtype=np.uint64)
    slow = np.empty(z.shape[0], dtype=np.int64)
    fill_normals_n(key, base, n, z, hh, slow, kn, wn)


@pytest.mark.parametrize("base", [1, 2, 7])
@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_fill_normals_n_writes_the_first_n_entries_only(base: int, n: int) -> None:
    """_rng.py ``fill_normals_n``: ``if c0 == 1 and n > 0`` without ``n > 0`` wrote the draw
    of an odd base into ``z[0]`` when asked for no draws; the entries from n on (the rest of
    a longer scratch ``z``) must stay as they were."""
    key = _rng.stream_key(2, 1)
    z = np.full(5, np.nan)
    _fill_first(np.uint64(key), np.uint64(base), n, z, _rng.KN, _rng.WN)
    want = _rng.normal_reference(key, np.arange(n, dtype=np.uint64) + np.uint64(base))
    np.testing.assert_array_equal(z[:n], want)
    assert np.all(np.isnan(z[n:]))


class TestFillWordsAcrossTwoToThe64:
    """_rng.py ``fill_words``: ``n_hash = ((base + n + 3) >> 2) - j0`` was computed in
    wrapping uint64, so for a block of draws that crosses 2^64 (base = 2^64 - 6, n = 16)
    ``base + n`` wrapped to 10 and the count was negative: no hash was written, and the kernel
    read whatever ``hh`` held before (zeros here, the previous tile's words in
    ``convert_accumulate``). The per-word mask ``& 0x3FFF...`` (word numbers wrap at 2^62
    "where the draw indices wrap at 2^64") shows the wrap is meant to be handled, as
    ``fill_normals_n`` handles it; ``code_offsets_reference`` draws these codes correctly.
    (The engine's draw indices stay far below 2^64, so a chip simulation does not reach it.)"""

    def test_a_block_crossing_two_to_the_64_gets_its_hashes(self) -> None:
        key = _rng.stream_key(5, 1)
        n, base = 16, 2**64 - 6
        u, s = np.full(n, 0.5), np.full(n, 0.7)
        idx = np.arange(n, dtype=np.uint64) + np.uint64(base)  # wraps past 2^64
        want = _rng.code_offsets_reference(key, idx, u, s)
        got = _codes_numba(np.uint64(key), np.uint64(base), u, s, _rng.QZ)
        np.testing.assert_array_equal(got, want)

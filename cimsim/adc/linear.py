"""Linear ADC ranges: full-scale, fixed and calibrated policies.

A linear ADC with ``b`` bits covering [lo, hi] has a grid start lo' and step Δ (``grid``:
zero-aligned by default when the range contains 0, else Δ = (hi - lo) / (2^b - 1), lo' = lo) and
maps an analog value a to ``code = clamp(floor((a - lo')/Δ + 1/2), 0, 2^b - 1)``, value
``lo' + code·Δ`` (a value exactly half-way goes up, as a comparator at the threshold would).
Ranges are an :class:`~cimsim.adc.tables.ADCTables` value (``lo``, ``delta`` of shape (row
groups, conversions)) that the programmed layer carries.

``full_scale`` is hardware-fixed: the largest range the DAC and cell digits allow for
``rows_per_conversion`` rows (shrunk by ``full_scale_factor``). When the ADC has at least as many
codes as there are integer values in that range, the step is one cell-LSB: the ADC resolves
every partial sum and is lossless.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from .._seed import check_int
from ..config import CalibrationGranularity, CalibrationStat, RangePolicy
from ..errors import ConfigError
from ._kernels import accumulate_moments
from .tables import ADCTables, calibration_units

if TYPE_CHECKING:
    from ..arrays.program import ProgrammedLayer

__all__ = ["grid", "static_tables", "ranges_from_samples", "RangeStats", "unseen_spread", "widen"]


def grid(lo, hi, n_codes: int, zero_aligned: bool) -> tuple[np.ndarray, np.ndarray]:
    """Start and step ``(lo', Δ)`` of an ``n_codes`` grid covering [lo, hi] (arrays broadcast).

    Literal: ``lo' = lo``, ``Δ = (hi - lo) / (n_codes - 1)``. Zero-aligned, where lo < 0 < hi:
    ``lo' = -m·Δ`` with m codes below zero, choosing the m whose step
    ``max(-lo/m, hi/(n_codes-1-m))`` is smallest, so 0 is a code and [lo, hi] is covered.
    A degenerate range (a column that never conducts) gets Δ = 1.
    """
    shape = np.broadcast(np.asarray(lo), np.asarray(hi)).shape
    lo = np.array(np.broadcast_to(lo, shape), dtype=np.float64, ndmin=1)
    hi = np.maximum(np.array(np.broadcast_to(hi, shape), dtype=np.float64, ndmin=1), lo)
    top = n_codes - 1
    delta = (hi - lo) / top
    start = lo.copy()
    if zero_aligned and top >= 2:  # 2 codes cannot straddle 0 with 0 as a code
        both = (lo < 0) & (hi > 0)
        if np.any(both):
            lo_b, hi_b = lo[both], hi[both]
            m0 = np.floor(top * (-lo_b) / (hi_b - lo_b))
            best = np.full(lo_b.shape, np.inf)
            best_m = np.zeros(lo_b.shape)
            for m in (m0 - 1, m0, m0 + 1, m0 + 2):
                m = np.clip(m, 1, top - 1)
                d = np.maximum(-lo_b / m, hi_b / (top - m))
                better = d < best
                best = np.where(better, d, best)
                best_m = np.where(better, m, best_m)
            delta[both] = best
            start[both] = -best_m * best
    delta = np.where(delta > 0, delta, 1.0)
    return start.reshape(shape), delta.reshape(shape)


def static_tables(layer: ProgrammedLayer) -> ADCTables | None:
    """The ADC tables of the policies that need no data (``full_scale``, ``fixed``); None for
    ``calibrated`` (set by :func:`ranges_from_samples` from calibration inputs)."""
    adc = layer.chip.adc
    shape = (layer.n_groups, layer.n_conversions)
    start: np.ndarray | float
    delta: np.ndarray | float
    if adc.range_policy is RangePolicy.FULL_SCALE:
        k = adc.full_scale_factor
        lo, hi = layer.fs_lo / k, layer.fs_hi / k
        if hi - lo <= adc.n_codes - 1:
            # enough codes for every integer partial sum: a one-LSB step, lossless, started on
            # the partial sums' lattice (fs_lo + an integer), at its first point at or above lo:
            # a factor k leaving lo = fs_lo/k between two points (-768/13) shifted every code
            # off its partial sum, and x = 0 converted to a nonzero value
            above = lo - layer.fs_lo
            start, delta = layer.fs_lo + np.ceil(above - 1e-9 * max(1.0, abs(above))), 1.0
        else:
            start, delta = grid(lo, hi, adc.n_codes, adc.zero_aligned)
    elif adc.range_policy is RangePolicy.FIXED:
        start, delta = grid(adc.fixed_lo, adc.fixed_hi, adc.n_codes, adc.zero_aligned)
    else:
        return None
    return ADCTables.linear(np.full(shape, start), np.full(shape, delta))


class RangeStats:
    """Accumulates calibration samples of the analog values per (row group, conversion).

    Min/max are exact running statistics. The sums behind mean/std (:attr:`s1`, :attr:`s2`)
    are added row after row within each stream of rows (with ``n_vectors``: each input
    plane's rows, the places ``p·n_vectors`` to ``(p+1)·n_vectors - 1``; else one stream in
    the order added), and the streams' sums then added in their order: the same float64
    additions however the calibration is cut into chunks (``matmul(chunk_vectors=)``; each
    chunk's sum added as a whole rounded otherwise with every cut, and moved the ranges of
    non-integer analog values). Percentiles and level fits use the
    samples :meth:`kept` gives: every ``ceil(m / max_samples)``-th of the m rows held in the
    order of their places in the whole calibration set, the rows held being every row up to
    ``KEEP_VALUES`` values per group, then those at multiples of 2^k of their places. Which
    rows those are depends on the rows' places only (``add``'s ``index``: plane-major over
    the whole set, as a calibration in one chunk adds them), not on how the calibration was
    cut into chunks (``matmul(chunk_vectors=)``): each chunk was thinned by its own stride,
    and the ranges moved with the cut. Below the cap the rows kept are the ones a
    calibration in one chunk kept before (every ``ceil(n / max_samples)``-th row).
    """

    KEEP_VALUES = 1 << 23
    """Values held per row group before the held rows are halved (32 MB of float32)."""

    def __init__(self, n_groups: int, n_conv: int, keep_samples: bool, max_samples: int = 20000,
                 n_vectors: int | None = None):
        self.lo = np.full((n_groups, n_conv), np.inf)
        self.hi = np.full((n_groups, n_conv), -np.inf)
        if n_vectors is not None and (isinstance(n_vectors, bool) or not isinstance(
                n_vectors, int | np.integer) or n_vectors < 1):
            raise ValueError(f"RangeStats: n_vectors = {n_vectors!r}; allowed: an integer >= 1 "
                             "(the places of one input plane), or None (one stream)")
        self.n_vectors = n_vectors  # places per stream (input plane); None: one stream
        # 0 divided by zero in kept(), -1 gave a negative stride (the last row only)
        max_samples = check_int("RangeStats: max_samples", max_samples, 1)
        # per group, (streams, C) sums of the values and of their squares (s1, s2)
        self._s1 = [np.zeros((1, n_conv)) for _ in range(n_groups)]
        self._s2 = [np.zeros((1, n_conv)) for _ in range(n_groups)]
        self.n = 0
        self.keep = keep_samples
        self.max_samples = max_samples
        self.samples: list[list[np.ndarray]] = [[] for _ in range(n_groups)]
        self._index: list[list[np.ndarray]] = [[] for _ in range(n_groups)]  # rows' places
        self._seen = [0] * n_groups  # rows added per group
        self._stride = [1] * n_groups  # the rows held: those whose place is a multiple of it
        self._held = [0] * n_groups
        self._cap = max(4 * max_samples, self.KEEP_VALUES // max(n_conv, 1))

    def add(self, g: int, a: np.ndarray, index: np.ndarray | None = None) -> None:
        """Add analog values ``a`` of shape (n_samples, C) for row group ``g``; ``index``: the
        rows' places in the whole calibration set (default: after the rows added before)."""
        a = np.asarray(a)
        if a.ndim != 2 or a.shape[1] != self.lo.shape[1]:  # the compiled sums index by column
            raise ValueError(f"RangeStats.add: a of shape {a.shape}; allowed: (rows, "
                             f"{self.lo.shape[1]}), one value per conversion")
        self.lo[g] = np.minimum(self.lo[g], a.min(axis=0))
        self.hi[g] = np.maximum(self.hi[g], a.max(axis=0))
        if index is None:
            index = np.arange(self._seen[g], self._seen[g] + a.shape[0])
        index = np.asarray(index, dtype=np.int64)
        if index.shape != (a.shape[0],) or (index.size and index.min() < 0):
            # a negative place made a negative stream, which the compiled sums wrote outside
            # their arrays
            raise ValueError(f"RangeStats.add: index of shape {index.shape}, smallest "
                             f"{index.min() if index.size else None}; allowed: one place >= 0 "
                             f"per row of a ({a.shape[0]} rows)")
        self._seen[g] += a.shape[0]
        stream = (index // self.n_vectors if self.n_vectors
                  else np.zeros(a.shape[0], dtype=np.int64))
        if a.shape[0] and stream.max() >= self._s1[g].shape[0]:  # a stream not seen before
            grow = ((0, int(stream.max()) + 1 - self._s1[g].shape[0]), (0, 0))
            self._s1[g], self._s2[g] = np.pad(self._s1[g], grow), np.pad(self._s2[g], grow)
        accumulate_moments(np.ascontiguousarray(a, dtype=np.float64), stream, self._s1[g],
                           self._s2[g])
        if g == 0:
            self.n += a.shape[0]
        if not self.keep:
            return
        on = index % self._stride[g] == 0
        self.samples[g].append(a[on].astype(np.float32))
        self._index[g].append(index[on])
        self._held[g] += int(on.sum())
        while self._held[g] > self._cap:  # twice the stride: half the rows held
            self._stride[g] *= 2
            rows = np.concatenate(self.samples[g], axis=0)
            idx = np.concatenate(self._index[g])
            on = idx % self._stride[g] == 0
            self.samples[g], self._index[g] = [rows[on]], [idx[on]]
            self._held[g] = int(on.sum())

    @property
    def s1(self) -> np.ndarray:
        """(row groups, C): the sum of the values added, per conversion."""
        return np.stack([s.sum(axis=0) for s in self._s1])

    @property
    def s2(self) -> np.ndarray:
        """(row groups, C): the sum of the squared values added, per conversion."""
        return np.stack([s.sum(axis=0) for s in self._s2])

    def kept(self, g: int) -> np.ndarray:
        """The samples of row group ``g`` the fits use, (m', C) float32: every
        ``ceil(m / max_samples)``-th of the m rows held, in the order of their places (at
        most ``max_samples``)."""
        held = np.concatenate(self.samples[g], axis=0)
        order = np.argsort(np.concatenate(self._index[g]), kind="stable")
        return held[order[:: -(-held.shape[0] // self.max_samples)]]


def column_percentiles(samples: np.ndarray, qs: list[float]) -> np.ndarray:
    """``np.percentile(samples, qs, axis=0)`` of samples (n, C): (len(qs), C), the same
    values, about twice as fast on two cores. Each column is made contiguous (a transposed
    copy: NumPy's partition along a strided axis is slower) and the columns are split over
    Numba's thread count in threads (NumPy's partition releases the GIL); every column's
    percentiles are computed as NumPy computes them, whatever the split."""
    import numba  # the thread count the kernels use (a sweep's worker sets it to 1)

    cols = np.ascontiguousarray(samples.T)
    n_threads = min(numba.get_num_threads(), cols.shape[0])
    if n_threads <= 1 or cols.shape[1] * cols.shape[0] < 1 << 16:
        return np.percentile(cols, qs, axis=1)
    bounds = np.linspace(0, cols.shape[0], n_threads + 1).astype(int)
    with ThreadPoolExecutor(n_threads) as pool:
        parts = pool.map(lambda ab: np.percentile(cols[ab[0]:ab[1]], qs, axis=1),
                         zip(bounds[:-1], bounds[1:], strict=True))
        return np.concatenate(list(parts), axis=1)


def ranges_from_samples(layer: ProgrammedLayer, stats: RangeStats) -> ADCTables:
    """The layer's calibrated linear ADC tables from accumulated statistics, pooled over the
    units of ``adc.calibration_granularity``."""
    adc = layer.chip.adc
    units = calibration_units(layer, adc.calibration_granularity)
    if stats.n == 0:
        raise ConfigError("calibration data is empty: at least one input vector is needed")
    if adc.calibration_stat is CalibrationStat.MINMAX:
        lo = units.pool(stats.lo, np.min)
        hi = units.pool(stats.hi, np.max)
    elif adc.calibration_stat is CalibrationStat.MEAN_STD:
        # pool first moments, then form mean ± n·σ of the pooled distribution
        n = stats.n
        s1 = units.pool(stats.s1, np.sum)
        s2 = units.pool(stats.s2, np.sum)
        size = units.pool(np.ones_like(stats.s1), np.sum)
        mean = s1 / (n * size)
        std = np.sqrt(np.maximum(s2 / (n * size) - mean**2, 0.0))
        lo = np.maximum(mean - adc.n_sigma * std, units.pool(stats.lo, np.min))
        hi = np.minimum(mean + adc.n_sigma * std, units.pool(stats.hi, np.max))
    else:
        q = adc.percentile
        g_n, c_n = stats.lo.shape
        per_g = [stats.kept(g) for g in range(g_n)]  # each (n, C)
        lo = np.empty((g_n, c_n))
        hi = np.empty((g_n, c_n))
        if units.granularity is CalibrationGranularity.COLUMN:
            # one unit per (g, c): percentiles of all columns of a group in one call
            for g in range(g_n):
                lo[g], hi[g] = column_percentiles(per_g[g], [100 - q, q])
        else:
            for rows, cols in units:
                vals = np.concatenate([per_g[g][:, cols].ravel() for g in rows])
                if vals.size > stats.max_samples * 64:  # bounded memory, deterministic
                    vals = vals[:: vals.size // (stats.max_samples * 64) + 1]
                lo[np.ix_(rows, cols)], hi[np.ix_(rows, cols)] = np.percentile(vals, [100 - q, q])
    lo, hi = widen(lo, hi, adc.calibration_margin, layer.fs_lo, layer.fs_hi)
    start, delta = grid(lo, hi, adc.n_codes, adc.zero_aligned)
    return ADCTables.linear(*unseen_spread(lo, hi, start, delta, layer.fs_lo, layer.fs_hi,
                                           adc.n_codes))


def unseen_spread(lo: np.ndarray, hi: np.ndarray, start: np.ndarray, delta: np.ndarray,
                  fs_lo: float, fs_hi: float, n_codes: int) -> tuple[np.ndarray, np.ndarray]:
    """The grid ``(start, delta)`` of :func:`grid` with every unit whose calibration values
    had no spread (``lo == hi``: a column that never conducted, a layer whose calibration
    inputs were all zero) spanning the column's full scale ``[fs_lo, fs_hi]`` at its step
    ``(fs_hi - fs_lo) / (n_codes - 1)``, the value seen on a code (exact where it recurs).

    The calibration says nothing of such a column's range, and :func:`grid`'s one-unit step
    starting at the value is no range at all: zero-mean thermal noise on a column that is 0
    reads codes 0 or above, never below, and its positive mean, shift-added over the input
    planes and weight digits, swamped the layer (an ``LSTMCell`` on ``rram-22nm`` calibrated on
    its first step, its state zero: h at relative error 5.5, 0.39 with this rule). Without a
    finite full scale the step stays 1.
    """
    flat = np.broadcast(lo, hi).shape
    lo = np.broadcast_to(lo, flat)
    unseen = np.broadcast_to(hi, flat) <= lo
    step = (fs_hi - fs_lo) / (n_codes - 1)
    if not np.any(unseen) or not (np.isfinite(step) and step > 0):
        return start, delta
    seen = lo[unseen]
    codes_below = np.clip(np.round((seen - fs_lo) / step), 0, n_codes - 1)
    start, delta = np.array(start, dtype=np.float64), np.array(delta, dtype=np.float64)
    start[unseen] = seen - codes_below * step
    delta[unseen] = step
    return start, delta


def widen(lo: np.ndarray, hi: np.ndarray, margin: float, fs_lo: float = -np.inf,
          fs_hi: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated ranges [lo, hi] widened by ``margin`` (``adc.calibration_margin``).

    Each end moves out by ``margin · (hi − lo)``, but not past the range an ideal column can
    produce, ``[fs_lo, fs_hi]`` (an end already beyond it stays where it is): a range starting at
    0 for partial sums that cannot be negative keeps 0 as its start instead of spending codes on
    values that never occur. ``margin = 0`` returns the ranges unchanged.
    """
    if margin == 0.0:
        return lo, hi
    width = hi - lo
    new_lo = np.maximum(lo - margin * width, np.minimum(lo, fs_lo))
    new_hi = np.minimum(hi + margin * width, np.maximum(hi, fs_hi))
    return new_lo, new_hi

"""Level fitting for nonlinear (in-memory) ADCs.

A nonlinear ADC with ``L = 2**bits`` codes is described by sorted thresholds
``t_1 <= ... <= t_{L-1}`` and reconstruction levels ``r_0 <= ... <= r_{L-1}``. The code of an
analog value ``a`` is the number of thresholds ``<= a`` (a value exactly at a threshold goes up)
and the digital value is ``r[code]``. :func:`fit_levels` fits thresholds and levels to calibration
samples with one of the methods of :class:`FitMethod`; ``docs/levels.md`` gives the definitions.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeGuard

import numpy as np

from ..config import LevelFit
from ..errors import ConfigError
from ._kernels import optimal_partition_splits

__all__ = ["FitMethod", "Levels", "fit_levels", "quantization_mse"]

_MAX_BITS = 16
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, eq=False)
class Levels:
    """Thresholds and reconstruction levels of a nonlinear ADC.

    ``eq=False``: the fields are arrays, so compare two instances field by field with
    ``np.array_equal``.
    """

    thresholds: np.ndarray
    """Comparator thresholds, shape (L-1,), float64, non-decreasing. Equal thresholds are
    allowed (a code that can never be produced)."""

    levels: np.ndarray
    """Reconstruction level of each code, shape (L,), float64, non-decreasing, L = 2**bits."""

    def __post_init__(self) -> None:
        for name in ("thresholds", "levels"):
            value = np.array(getattr(self, name), dtype=np.float64, copy=True)
            if value.ndim != 1:
                raise ConfigError(f"{name} must be 1-D, got shape {value.shape}")
            if not np.all(np.isfinite(value)):
                raise ConfigError(f"{name} must be finite, got {value}")
            if np.any(np.diff(value) < 0):
                raise ConfigError(f"{name} must be sorted (non-decreasing), got {value}")
            # Read-only so that a frozen Levels cannot be changed through its arrays.
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        n_levels = self.levels.size
        if n_levels < 2 or n_levels & (n_levels - 1):
            raise ConfigError(f"levels must have 2**bits >= 2 entries, got {n_levels}")
        if self.thresholds.size != n_levels - 1:
            raise ConfigError(
                f"thresholds must have len(levels) - 1 = {n_levels - 1} entries, "
                f"got {self.thresholds.size}"
            )

    @property
    def bits(self) -> int:
        """Resolution in bits, ``log2(L)``."""
        return self.levels.size.bit_length() - 1

    def codes(self, a: np.ndarray) -> np.ndarray:
        """Output codes for analog values.

        Parameters
        ----------
        a : np.ndarray
            Analog values, any shape.

        Returns
        -------
        np.ndarray
            Codes in ``[0, L-1]``, intp, same shape as ``a``: the number of thresholds ``<= a``.
            NaN sorts after every threshold and so gets code ``L-1``.
        """
        return np.searchsorted(self.thresholds, np.asarray(a, dtype=np.float64), side="right")

    def quantize(self, a: np.ndarray) -> np.ndarray:
        """Quantized values ``levels[codes(a)]``, float64, same shape as ``a``."""
        return self.levels[self.codes(a)]


#: How :func:`fit_levels` places thresholds and levels (see ``docs/levels.md``); the same
#: enum is the ``adc.level_fit`` field of a chip config.
FitMethod = LevelFit


# ---------------------------------------------------------------------------------------------
# Shared steps
# ---------------------------------------------------------------------------------------------


def _midpoints(levels: np.ndarray) -> np.ndarray:
    """Thresholds halfway between adjacent levels, shape (L-1,) from (L,). Between two
    distinct levels that are adjacent floats the halfway point rounds onto the lower one, and
    a value at a threshold reads the upper level: there the threshold is the upper level, so
    each level still reads as itself (docs/levels.md: distinct samples reproduced exactly)."""
    lo, hi = levels[:-1], levels[1:]
    mid = 0.5 * (lo + hi)
    return np.where(hi > lo, np.maximum(mid, np.nextafter(lo, hi)), mid)


def _pad_levels(points: np.ndarray, n_levels: int, lo: float, hi: float) -> np.ndarray:
    """Grow sorted ``points`` (m,) to ``n_levels`` sorted levels by splitting the widest gaps.

    The gaps are those between consecutive members of ``{lo} | points | {hi}``; each split adds
    the midpoint of the currently widest gap (the lowest one on ties), so extra levels land
    where the ADC would otherwise be coarsest. Where the widest gap holds no float between its
    ends (``lo == hi``, or points one ulp apart) the top point is repeated.
    """
    points = np.asarray(points, dtype=np.float64)
    missing = n_levels - points.size
    if missing <= 0:
        return points
    knots = np.unique(np.concatenate(([lo], points, [hi])))
    heap = [(-(b - a), a, b) for a, b in zip(knots[:-1], knots[1:], strict=True)]
    heapq.heapify(heap)
    extra: list[float] = []
    while heap and len(extra) < missing:
        neg_width, a, b = heapq.heappop(heap)
        mid = 0.5 * (a + b)
        if neg_width == 0.0 or not a < mid < b:
            break  # no room left between representable values
        extra.append(mid)
        heapq.heappush(heap, (-(mid - a), a, mid))
        heapq.heappush(heap, (-(b - mid), mid, b))
    fill = points[-1] if points.size else lo
    extra.extend([fill] * (missing - len(extra)))
    return np.sort(np.concatenate((points, extra)))


def _cell_bounds(xs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Start indices of each code's cell in sorted ``xs``, shape (L+1,) for L-1 thresholds.

    Side 'left' because a sample equal to a threshold belongs to the cell above it.
    """
    inner = np.searchsorted(xs, thresholds, side="left")
    return np.concatenate(([0], inner, [xs.size]))


def _cell_means(
    xs: np.ndarray, bounds: np.ndarray, fallback: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each cell of sorted ``xs`` (n,), ``fallback`` (L,) where a cell is empty.

    ``bounds`` (L+1,) are the cell start indices from :func:`_cell_bounds`. Sums run per cell
    (not as differences of a global prefix sum) so a small cell keeps full precision.
    Returns the means (L,) and the counts (L,).
    """
    counts = np.diff(bounds)
    nonempty = counts > 0
    means = np.array(fallback, dtype=np.float64, copy=True)
    first = bounds[:-1][nonempty]
    # Consecutive non-empty starts delimit exactly one cell each: empty cells have no width.
    raw = np.add.reduceat(xs, first) / counts[nonempty]
    # Clipping to the cell's own extremes keeps a point mass exact (3 x 0.2 / 3 != 0.2) and
    # every centroid inside its cell, hence sorted.
    means[nonempty] = np.clip(raw, xs[first], xs[bounds[1:][nonempty] - 1])
    return means, counts


def _lloyd(
    xs: np.ndarray,
    levels: np.ndarray,
    tol_abs: float,
    max_iter: int,
    fixed: tuple[int, ...] = (),
) -> np.ndarray:
    """Lloyd iterations on sorted samples ``xs`` (n,) from initial ``levels`` (L,).

    Alternates midpoint thresholds and cell centroids; an empty cell keeps its level, and so do
    the levels at indices ``fixed`` (they still take part in the assignment, so the samples
    they serve best are theirs). Stops when no level moves by more than ``tol_abs``, when the
    partition repeats (then every free level is exactly the centroid of the cell its midpoints
    define) or after ``max_iter`` updates.
    """
    levels = levels.astype(np.float64, copy=True)
    pinned = list(fixed)
    previous = None
    for _ in range(max_iter):
        bounds = _cell_bounds(xs, _midpoints(levels))
        if previous is not None and np.array_equal(bounds, previous):
            break
        new, _ = _cell_means(xs, bounds, levels)
        new[pinned] = levels[pinned]
        delta = np.max(np.abs(new - levels))
        levels, previous = new, bounds
        if delta <= tol_abs:
            break
    else:
        if max_iter > 0:
            # Lloyd creeps on smooth densities; an unconverged fit is usable but not a fixed point.
            _log.warning("Lloyd iterations stopped at max_iter=%d before converging", max_iter)
    return levels


def _kmeans_levels(xs: np.ndarray, k: int, tol: float, max_iter: int) -> np.ndarray:
    """K-means levels of sorted samples ``xs`` (n,): at most ``k`` sorted levels.

    Returns the unique sample values when there are no more than ``k`` of them (the caller pads).
    The init is the sample quantiles at ``(i + 0.5) / k``. Quantiles inside a point mass
    coincide; they are left so (this is the plain baseline). Ties going up make the last of a
    run of equal levels take the mass; when samples lie just above it, each Lloyd step then
    frees one more level of the run.
    """
    unique = np.unique(xs)
    if unique.size <= k:
        return unique
    init = np.quantile(xs, (np.arange(k) + 0.5) / k)
    return _lloyd(xs, init, tol * (xs[-1] - xs[0]), max_iter)


# ---------------------------------------------------------------------------------------------
# Exact 1-D K-means (Wang & Song, Ckmeans.1d.dp)
# ---------------------------------------------------------------------------------------------


def _prefix_sums(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prefix sums (n+1,) of ``w``, ``w·x`` and ``w·x²`` with ``x`` centred first (SSE is shift
    invariant; centring limits cancellation)."""
    xc = x - np.average(x, weights=w)
    p0 = np.concatenate(([0.0], np.cumsum(w)))
    p1 = np.concatenate(([0.0], np.cumsum(w * xc)))
    p2 = np.concatenate(([0.0], np.cumsum(w * xc * xc)))
    return p0, p1, p2


def _backtrack(split: np.ndarray, n: int, k: int) -> np.ndarray:
    cuts = []
    i = n
    for m in range(k, 1, -1):
        i = split[m, i]
        cuts.append(i)
    return np.array(cuts[::-1], dtype=np.intp)


#: Largest split table (int64 entries) of the exact K-means: 1 GiB.
_MAX_SPLIT_ENTRIES = 1 << 27


def _optimal_partition(x: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    """Globally SSE-optimal split of sorted distinct ``x`` (n,), weights ``w`` (n,), into k parts.

    Dynamic programme ``D[m][i] = min_j D[m-1][j] + SSE(x[j:i])`` over prefix sums. The optimal
    ``j`` is non-decreasing in ``i`` for this cost, so each layer is solved by divide and conquer
    in ``O(n log n)`` (the Numba kernel ``optimal_partition_splits``; its NumPy twin is
    :func:`_optimal_partition_numpy`). Requires ``1 <= k <= n``. Returns the start index of
    parts 2..k, shape (k-1,), increasing.
    """
    entries = (k + 1) * (x.size + 1)
    if entries > _MAX_SPLIT_ENTRIES:  # a 16-b ramp asked for 32 GiB, then MemoryError
        raise ConfigError(
            f"exact K-means of {k} levels over {x.size} points (kmeans_optimal, bs_kmq) needs a "
            f"{entries * 8 / 2**30:.1f} GiB table; allowed: at most "
            f"{_MAX_SPLIT_ENTRIES * 8 / 2**30:.0f} GiB (about 13 bits at the default max_bins): "
            "fewer bits, or method 'kmeans'")
    p0, p1, p2 = _prefix_sums(x, w)
    split = np.zeros((k + 1, x.size + 1), dtype=np.int64)
    optimal_partition_splits(p0, p1, p2, k, split)
    return _backtrack(split, x.size, k)


def _optimal_partition_numpy(x: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    """NumPy twin of :func:`_optimal_partition`: the same divide and conquer, with all
    subproblems of one recursion depth evaluated together."""
    n = x.size
    p0, p1, p2 = _prefix_sums(x, w)

    def sse(j: np.ndarray, i: np.ndarray) -> np.ndarray:
        s0 = p0[i] - p0[j]
        s1 = p1[i] - p1[j]
        return np.maximum(p2[i] - p2[j] - s1 * s1 / s0, 0.0)

    d_prev = np.full(n + 1, np.inf)
    d_prev[1:] = sse(np.zeros(n, dtype=np.intp), np.arange(1, n + 1))
    split = np.zeros((k + 1, n + 1), dtype=np.intp)
    for m in range(2, k + 1):
        # Prefix lengths i that can still be completed with k - m more non-empty parts.
        i_first, i_last = (n, n) if m == k else (m, n - (k - m))
        d_cur = np.full(n + 1, np.inf)
        i_lo, i_hi = np.array([i_first]), np.array([i_last])
        j_lo, j_hi = np.array([m - 1]), np.array([i_last - 1])
        while i_lo.size:
            mid = (i_lo + i_hi) // 2
            r_lo, r_hi = j_lo, np.minimum(j_hi, mid - 1)
            lens = r_hi - r_lo + 1
            starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
            seg = np.repeat(np.arange(mid.size), lens)
            j = np.arange(lens.sum()) - starts[seg] + r_lo[seg]
            vals = d_prev[j] + sse(j, mid[seg])
            best = np.minimum.reduceat(vals, starts)
            hit = np.flatnonzero(vals == best[seg])
            first = hit[np.concatenate(([True], seg[hit][1:] != seg[hit][:-1]))]
            opt = j[first]  # smallest argmin keeps the split monotone under ties
            d_cur[mid] = best
            split[m, mid] = opt
            left, right = i_lo < mid, mid < i_hi
            i_lo, i_hi, j_lo, j_hi = (
                np.concatenate((i_lo[left], mid[right] + 1)),
                np.concatenate((mid[left] - 1, i_hi[right])),
                np.concatenate((j_lo[left], opt[right])),
                np.concatenate((opt[left], j_hi[right])),
            )
        d_prev = d_cur
    return _backtrack(split, n, k)


def _bin_samples(xs: np.ndarray, lo: float, hi: float,
                 max_bins: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Distinct values and counts of sorted ``xs``, or an equal-width histogram if too many.

    With more than ``max_bins`` distinct values the range ``[lo, hi]`` is cut into ``max_bins``
    equal bins and each non-empty bin becomes one point at the mean of its samples, weighted by
    its count (so every bin-respecting partition keeps its SSE up to the within-bin constant).
    Returns ``(values, weights, binned)``.
    """
    values, counts = np.unique(xs, return_counts=True)
    if values.size <= max_bins:
        return values, counts.astype(np.float64), False
    idx = np.minimum(((xs - lo) / (hi - lo) * max_bins).astype(np.intp), max_bins - 1)
    counts = np.bincount(idx, minlength=max_bins).astype(np.float64)
    sums = np.bincount(idx, weights=xs, minlength=max_bins)
    keep = counts > 0
    values = np.clip(sums[keep] / counts[keep], lo, hi)
    return values, counts[keep], True


def _optimal_levels(xs: np.ndarray, k: int, max_bins: int, tol: float, max_iter: int) -> np.ndarray:
    """Exact 1-D K-means levels of sorted samples ``xs`` (n,): at most ``k`` sorted levels.

    Returns the distinct values when there are no more than ``k`` of them (the caller pads).
    With more than ``max_bins`` distinct values the DP runs on the histogram and Lloyd steps on
    the raw samples follow (they can only lower the MSE); where no more bins than ``k`` are
    filled, the bin means padded to ``k`` start them (they were returned as the levels, the
    Lloyd steps skipped: a 12-b fit at the default 4096 bins was the uniform quantizer's).
    """
    lo, hi = float(xs[0]), float(xs[-1])
    values, weights, binned = _bin_samples(xs, lo, hi, max_bins)
    if values.size <= k and not binned:
        return values
    if values.size <= k:
        levels = _pad_levels(values, k, lo, hi)
    else:
        starts = np.concatenate(([0], _optimal_partition(values, weights, k)))
        levels = np.add.reduceat(weights * values, starts) / np.add.reduceat(weights, starts)
        # each group's mean clipped to its own extremes, as _cell_means clips: a repeated
        # value's mean (3 x 0.05 / 3) came out an ulp off it, and read itself as another
        ends = np.concatenate((starts[1:], [values.size])) - 1
        levels = np.maximum.accumulate(np.clip(levels, values[starts], values[ends]))
    if binned:
        levels = _lloyd(xs, levels, tol * (hi - lo), max_iter)
    return levels


# ---------------------------------------------------------------------------------------------
# Methods: each maps sorted clipped samples xs (n,), L, lo < hi to (thresholds, levels)
# ---------------------------------------------------------------------------------------------

_Fit = tuple[np.ndarray, np.ndarray]


def _linear_codes(a: np.ndarray, lo: float, step: float, n_levels: int) -> np.ndarray:
    """Codes of the linear ADC on ``[lo, lo + (L-1) step]``: round half up, clamped."""
    return np.clip(np.floor((a - lo) / step + 0.5), 0, n_levels - 1)


def _float_key(x: np.ndarray) -> np.ndarray:
    """int64 keys that order like the float64 values ``x`` (adjacent floats differ by 1)."""
    i = np.asarray(x, dtype=np.float64).view(np.int64)
    return np.where(i < 0, -(i & np.int64(0x7FFF_FFFF_FFFF_FFFF)), i)


def _key_float(k: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_float_key`."""
    k = np.asarray(k, dtype=np.int64)
    return np.where(k < 0, (-k) | np.iinfo(np.int64).min, k).view(np.float64)


def _fit_uniform(xs: np.ndarray, n_levels: int, lo: float, hi: float) -> _Fit:
    step = (hi - lo) / (n_levels - 1)
    i = np.arange(n_levels)
    levels = lo + i * step
    target = i[1:]
    naive = lo + (target - 0.5) * step
    # Rounding in (a - lo) / step + 0.5 moves the point where the linear formula switches from
    # i-1 to i away from lo + (i - 0.5) step (by up to ~eps * |lo|, many ulps near 0). The formula
    # is monotone in a, so bisect over the floats for the smallest a whose code is i: both ADCs
    # then agree on every input, exact ties included.
    width = 8.0 * np.spacing(abs(lo) + abs(hi))
    low, high = naive - width, naive + width
    for _ in range(64):
        bad_low = _linear_codes(low, lo, step, n_levels) >= target
        bad_high = _linear_codes(high, lo, step, n_levels) < target
        if not (bad_low.any() or bad_high.any()):
            break
        width *= 2.0
        low = np.where(bad_low, naive - width, low)
        high = np.where(bad_high, naive + width, high)
    k_low, k_high = _float_key(low), _float_key(high)
    for _ in range(64):
        gap = k_high - k_low
        if np.all(gap <= 1):
            break
        k_mid = k_low + gap // 2
        up = _linear_codes(_key_float(k_mid), lo, step, n_levels) >= target
        k_high = np.where(up, k_mid, k_high)
        k_low = np.where(up, k_low, k_mid)
    return _key_float(k_high), levels


def _fit_lloyd_max(
    xs: np.ndarray, n_levels: int, lo: float, hi: float, *, tol: float, max_iter: int
) -> _Fit:
    init = lo + np.arange(n_levels) * ((hi - lo) / (n_levels - 1))
    levels = _lloyd(xs, init, tol * (hi - lo), max_iter)
    return _midpoints(levels), levels


def _fit_cdf(xs: np.ndarray, n_levels: int, lo: float, hi: float) -> _Fit:
    thresholds = np.quantile(xs, np.arange(1, n_levels) / n_levels)
    # Point masses make quantiles coincide; nudge them apart by one ulp at a time upwards, then,
    # if that pushed past hi (mass at the top), downwards from hi. Each extra threshold then
    # opens an empty cell instead of skipping a code.
    for i in range(1, thresholds.size):
        thresholds[i] = max(thresholds[i], np.nextafter(thresholds[i - 1], np.inf))
    if thresholds[-1] > hi:
        thresholds[-1] = hi
        for i in range(thresholds.size - 2, -1, -1):
            thresholds[i] = min(thresholds[i], np.nextafter(thresholds[i + 1], -np.inf))
    thresholds = np.maximum.accumulate(np.clip(thresholds, lo, hi))
    edges = np.concatenate(([lo], thresholds, [hi]))
    fallback = 0.5 * (edges[:-1] + edges[1:])
    levels, _ = _cell_means(xs, _cell_bounds(xs, thresholds), fallback)
    # Rounding of a mean can step outside its cell by an ulp; keep levels sorted regardless.
    return thresholds, np.maximum.accumulate(levels)


def _fit_kmeans(
    xs: np.ndarray, n_levels: int, lo: float, hi: float, *, tol: float, max_iter: int
) -> _Fit:
    levels = _pad_levels(_kmeans_levels(xs, n_levels, tol, max_iter), n_levels, lo, hi)
    return _midpoints(levels), levels


def _fit_kmeans_optimal(
    xs: np.ndarray,
    n_levels: int,
    lo: float,
    hi: float,
    *,
    max_bins: int,
    tol: float,
    max_iter: int,
) -> _Fit:
    levels = _pad_levels(_optimal_levels(xs, n_levels, max_bins, tol, max_iter), n_levels, lo, hi)
    return _midpoints(levels), levels


def _fit_bs_kmq(
    xs: np.ndarray,
    n_levels: int,
    lo: float,
    hi: float,
    *,
    eps: float,
    min_mass: float,
    max_bins: int,
    tol: float,
    max_iter: int,
) -> _Fit:
    if 2 * eps >= hi - lo:
        raise ConfigError(f"eps must be < (hi - lo) / 2 = {(hi - lo) / 2}, got {eps}")
    at_lo = xs <= lo + eps
    at_hi = xs >= hi - eps
    pin_lo = bool(at_lo.mean() >= min_mass)
    pin_hi = bool(at_hi.mean() >= min_mass)
    pinned = [v for v, pin in ((lo, pin_lo), (hi, pin_hi)) if pin]
    n_interior = n_levels - len(pinned)
    # Only the samples behind a pinned level are suppressed; a thin boundary tail that gets no
    # pinned level stays with the interior so some level still covers it.
    interior = xs[~((at_lo & pin_lo) | (at_hi & pin_hi))]
    inner = np.empty(0)
    if n_interior > 0 and interior.size:
        # Exact K-means, not Lloyd from quantiles: a point mass left inside (a discrete
        # partial sum, a quantized activation) must not trap levels the way the boundary
        # masses trap plain K-means.
        inner = _optimal_levels(interior, n_interior, max_bins, tol, max_iter)
    levels = _pad_levels(np.unique(np.concatenate((pinned, inner))), n_levels, lo, hi)
    if pinned and interior.size:
        # The pinned levels also quantize the interior samples nearest to them; Lloyd steps
        # with those two held fixed fit the free levels to the cells they really get.
        fixed = ((0,) if pin_lo else ()) + ((n_levels - 1,) if pin_hi else ())
        levels = _lloyd(interior, levels, tol * (hi - lo), max_iter, fixed=fixed)
    return _midpoints(levels), levels


_ITER_PARAMS = {"tol": 1e-9, "max_iter": 1000}

_FITTERS: dict[FitMethod, tuple[Callable[..., _Fit], dict[str, float]]] = {
    FitMethod.UNIFORM: (_fit_uniform, {}),
    FitMethod.LLOYD_MAX: (_fit_lloyd_max, _ITER_PARAMS),
    FitMethod.CDF: (_fit_cdf, {}),
    FitMethod.KMEANS: (_fit_kmeans, _ITER_PARAMS),
    FitMethod.KMEANS_OPTIMAL: (_fit_kmeans_optimal, {"max_bins": 4096, **_ITER_PARAMS}),
    FitMethod.BS_KMQ: (
        _fit_bs_kmq,
        {"eps": 0.0, "min_mass": 0.01, "max_bins": 4096, **_ITER_PARAMS},
    ),
}


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def _as_samples(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("samples is empty")
    if np.isnan(x).any():
        raise ValueError("samples contain NaN")
    if not np.isfinite(x).all():
        raise ValueError("samples contain +-inf")
    return x


def _check_params(method: FitMethod, n_levels: int, params: Mapping[str, object]) -> dict:
    _, defaults = _FITTERS[method]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {unknown} for method {method.value!r}; "
            f"allowed: {sorted(defaults)}"
        )
    merged: dict[str, object] = {**defaults, **params}
    if "max_bins" in defaults and "max_bins" not in params:
        # at least one bin per level: a ramp of more than 12 b is fitted too (bin = value)
        merged["max_bins"] = max(int(defaults["max_bins"]), n_levels)
    for name in ("tol", "eps"):
        if name in merged:
            value = merged[name]
            if not (_is_real(value) and np.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    if "min_mass" in merged:
        value = merged["min_mass"]
        if not (_is_real(value) and 0.0 <= value <= 1.0):
            raise ConfigError(f"min_mass must be in [0, 1], got {value!r}")
    if "max_iter" in merged and not _is_int(merged["max_iter"], 0):
        raise ConfigError(f"max_iter must be an int >= 0, got {merged['max_iter']!r}")
    if "max_bins" in merged and not _is_int(merged["max_bins"], n_levels):
        raise ConfigError(
            f"max_bins must be an int >= 2**bits = {n_levels}, got {merged['max_bins']!r}"
        )
    return merged


def _is_real(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_int(value: object, minimum: int) -> bool:
    return (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            and bool(value >= minimum))


def fit_levels(
    samples: np.ndarray,
    bits: int,
    method: FitMethod | str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    **params: float,
) -> Levels:
    """Fit the thresholds and levels of a ``bits``-bit nonlinear ADC to calibration samples.

    Parameters
    ----------
    samples : np.ndarray
        Calibration values, any shape (flattened), finite. Values outside ``[lo, hi]`` are
        clipped to it before fitting, as the ADC clamps them.
    bits : int
        Resolution, 1..16; the ADC has ``L = 2**bits`` levels.
    method : FitMethod or str
        ``uniform``, ``lloyd_max``, ``cdf``, ``kmeans``, ``kmeans_optimal`` or ``bs_kmq``.
    lo, hi : float, optional
        Clamp limits of the input range; default the sample minimum and maximum.
    **params
        Method parameters: ``tol`` (default 1e-9, relative to ``hi - lo``) and ``max_iter``
        (default 1000) for ``lloyd_max``, ``kmeans``, ``kmeans_optimal`` and ``bs_kmq``;
        ``max_bins`` (default 4096, or ``2**bits`` above 12 b) for ``kmeans_optimal`` and
        ``bs_kmq``; ``eps`` (default 0) and ``min_mass`` (default 0.01) for ``bs_kmq``.

    Returns
    -------
    Levels
        Thresholds (L-1,) and levels (L,). Always exactly ``L`` levels, thresholds
        non-decreasing. With fewer distinct sample values than levels, the K-means-type
        methods (``kmeans``, ``kmeans_optimal``, ``bs_kmq``) split the widest gaps between the
        fitted levels and ``lo``/``hi`` with the extra levels (repeats only where no gap
        holds another float: ``lo == hi``, or levels one ulp apart); ``uniform`` and
        ``lloyd_max`` place theirs over ``[lo, hi]`` as always; ``cdf``
        separates coinciding quantiles by one ulp, so a point mass leaves empty cells one ulp
        wide whose levels (their midpoints) can equal a neighbour's (docs/levels.md).

    Raises
    ------
    ValueError
        ``samples`` is empty or contains NaN or infinities.
    ConfigError
        Unknown ``method`` (the message lists the allowed values), bad ``bits``, ``lo > hi``,
        or an unknown or out-of-range parameter.
    """
    x = _as_samples(samples)
    try:
        method = FitMethod(method)
    except ValueError:
        allowed = [m.value for m in FitMethod]
        raise ConfigError(f"method must be one of {allowed}, got {method!r}") from None
    if not _is_int(bits, 1) or bits > _MAX_BITS:
        raise ConfigError(f"bits must be an int in [1, {_MAX_BITS}], got {bits!r}")
    n_levels = 1 << int(bits)  # np.uint8(8): 2**bits wrapped to 0 in its own dtype
    lo = float(x.min()) if lo is None else float(lo)
    hi = float(x.max()) if hi is None else float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ConfigError(f"lo and hi must be finite, got lo={lo}, hi={hi}")
    if lo > hi:
        raise ConfigError(f"lo must be <= hi, got lo={lo}, hi={hi}")
    merged = _check_params(method, n_levels, params)
    if lo == hi:
        # One representable input: every level and threshold sits on it.
        return Levels(np.full(n_levels - 1, lo), np.full(n_levels, lo))
    fitter, _ = _FITTERS[method]
    xs = np.sort(np.clip(x, lo, hi))
    thresholds, levels = fitter(xs, n_levels, lo, hi, **merged)
    return Levels(thresholds, levels)


def quantization_mse(samples: np.ndarray, levels: Levels) -> float:
    """Mean squared error of quantizing ``samples`` (any shape) with ``levels``.

    Samples outside the levels' span count with their clipping error.
    """
    x = _as_samples(samples)
    err = levels.quantize(x) - x
    return float(np.mean(err * err))

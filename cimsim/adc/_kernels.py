"""Numba kernels of the ADCs: scalar transfer functions inlined into the fused conversion
kernel, the dynamic programme of exact 1-D K-means, and the calibration's running sums."""

from __future__ import annotations

import math

import numpy as np

from .._jit import njit


@njit(inline="always", cache=True)
def linear_adc(a, lo, delta, top_code):  # pragma: no cover - compiled
    """Reconstructed value of a linear ADC: lo + clamp(floor((a-lo)/Δ + 1/2), 0, top)·Δ."""
    # clamp before floor: Numba's floor returns an int64, which a huge value would overflow
    u = min(max((a - lo) / delta + 0.5, 0.0), top_code + 0.5)
    return lo + math.floor(u) * delta


@njit(inline="always", cache=True)
def _sse(p0, p1, p2, j, i):  # pragma: no cover - compiled
    """Weighted SSE of points j..i-1 about their mean, from prefix sums (clamped at 0)."""
    s0 = p0[i] - p0[j]
    s1 = p1[i] - p1[j]
    return max(p2[i] - p2[j] - s1 * s1 / s0, 0.0)


@njit(cache=True)
def optimal_partition_splits(p0, p1, p2, k, split):  # pragma: no cover - compiled
    """Fill ``split[m, i]``: the start of the last of ``m`` parts of the first ``i`` points in
    the SSE-optimal split (prefix sums p0, p1, p2 of shape (n+1,)). Twin:
    ``cimsim.adc.levels._optimal_partition_numpy``.

    ``D[m][i] = min_j D[m-1][j] + SSE(j, i)``, the optimal j non-decreasing in i, so each layer
    is divide and conquer over i with a shrinking j window, here with an explicit stack. Ties
    take the smallest j, as the twin does.
    """
    n = p0.shape[0] - 1
    d_prev = np.empty(n + 1)
    d_cur = np.empty(n + 1)
    d_prev[0] = np.inf
    for i in range(1, n + 1):
        d_prev[i] = _sse(p0, p1, p2, 0, i)
    stack = np.empty((64, 4), dtype=np.int64)
    for m in range(2, k + 1):
        if m == k:
            i_first, i_last = n, n
        else:
            i_first, i_last = m, n - (k - m)
        d_cur[:] = np.inf
        stack[0] = (i_first, i_last, m - 1, i_last - 1)
        top = 1
        while top > 0:
            top -= 1
            i_lo, i_hi, j_lo, j_hi = stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3]
            mid = (i_lo + i_hi) // 2
            best = np.inf
            opt = j_lo
            for j in range(j_lo, min(j_hi, mid - 1) + 1):
                v = d_prev[j] + _sse(p0, p1, p2, j, mid)
                if v < best:
                    best = v
                    opt = j
            d_cur[mid] = best
            split[m, mid] = opt
            if i_lo < mid:
                stack[top] = (i_lo, mid - 1, j_lo, opt)
                top += 1
            if mid < i_hi:
                stack[top] = (mid + 1, i_hi, opt, j_hi)
                top += 1
        d_prev, d_cur = d_cur, d_prev


@njit(cache=True)
def accumulate_moments(a, stream, s1, s2):  # pragma: no cover - compiled
    """``s1[stream[r]] += a[r]`` and ``s2[stream[r]] += a[r]**2`` for each row r of ``a``
    (n, C) float64 in turn: each stream's sums are added one row after another, so they
    depend on the order of the rows within the stream only, never on how the rows were cut
    into calls. Twin: :func:`cimsim.adc._reference.accumulate_moments_reference`."""
    for r in range(a.shape[0]):
        k = stream[r]
        for c in range(a.shape[1]):
            v = a[r, c]
            s1[k, c] += v
            s2[k, c] += v * v

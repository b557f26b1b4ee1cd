"""The twin's fused conversion kernel on the CPU: noise, linear ADC, shift-add and what the
backward keeps, in one pass over the analog values.

Torch computes the same thing as a dozen element-wise passes over (row group, plane, vector,
conversion) values, each reading and writing the whole tensor; on a CPU those passes cost more
than the batched GEMM that makes the values. This kernel reads each value once and writes only
the reduced results. Its reference twin is the torch path of ``TwinMatmul`` (``_convert`` and
``_shift_add``), which the tests hold it to; noise is counter-based (``arrays._rng``), keyed by
draws of torch's generator, so a seeded torch run is reproducible whatever the thread count.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange, uint64

from .._jit import njit
from .._threads import start_numba_pool
from ..arrays._rng import KN, WN, fill_normals

start_numba_pool()  # before any kernel runs: see cimsim/_threads.py

_TILE = 256  # conversions per tile (the scratch arrays stay in L1 across the planes)


@njit(parallel=True, cache=True)
def convert_shift_add(
    a, var, slope, thermal_sigma, cmp_sigma, key_noise, key_cmp, lo, delta, lo0, d0, sig, coef,
    n_kinds, gain, offset_lsb, top_code, kn, wn, y, share, dstep,
):  # pragma: no cover - compiled; twin: TwinMatmul's torch path
    """Convert every (group g, plane p, vector m, conversion c) analog value of ``a``
    (G, P, M, C) with the linear ADC of grid ``lo``/``delta`` (G, C) and shift-add it.

    var (G, P, M, C) per-value read-noise variance (or (0, 0, 0, 0)); slope (G, P, M, C) a
    column non-linearity's slope at each value, the weight of its unclipped conversion in
    ``share`` (or (0, 0, 0, 0): 1); thermal_sigma,
    cmp_sigma: noise sigmas (LSB of the analog value, LSB of the ADC step); lo0, d0 (G, C)
    the calibrated grid (the LSQ derivative's terms); sig (P,) plane significances; coef
    (G, C) conversion coefficients, conversion c = n * n_kinds + q.

    Fills y (G, M, N) = Σ_p sig_p Σ_q coef_c · value; share (G, M, N) the share of the P·Q
    conversions of every output that did not clip (or a (0, 0, 0) array: not wanted); dstep
    (G, M, C) = Σ_p sig_p ∂value/∂ratio of the grid scale (or (0, 0, 0): not wanted).
    """
    n_groups, n_planes, m_n, n_conv = a.shape
    has_var = var.shape[0] > 0
    has_slope = slope.shape[0] > 0
    noisy = thermal_sigma > 0.0 or has_var
    want_share = share.shape[0] > 0
    want_step = dstep.shape[0] > 0
    th2 = thermal_sigma * thermal_sigma
    g1 = 1.0 + gain
    inv_pq = 1.0 / (n_planes * n_kinds)
    n_out = n_conv // n_kinds
    for gm in prange(n_groups * m_n):
        g = gm // m_n
        m = gm - g * m_n
        z = np.zeros(_TILE)
        zc = np.zeros(_TILE)
        hh = np.empty(_TILE // 2 + 1, dtype=np.uint64)
        slow = np.empty(_TILE, dtype=np.int64)
        acc = np.empty(_TILE)
        ins = np.empty(_TILE)
        dst = np.empty(_TILE)
        for n in range(n_out):
            y[g, m, n] = 0.0
            if want_share:
                share[g, m, n] = 0.0
        for tile in range((n_conv + _TILE - 1) // _TILE):
            c0 = tile * _TILE
            nt = min(_TILE, n_conv - c0)
            for t in range(nt):
                acc[t] = 0.0
                ins[t] = 0.0
                dst[t] = 0.0
            for p in range(n_planes):
                base = uint64(((g * n_planes + p) * m_n + m) * n_conv + c0)
                if noisy:
                    fill_normals(key_noise, base, z[:nt], hh, slow, kn, wn)
                if cmp_sigma > 0.0:
                    fill_normals(key_cmp, base, zc[:nt], hh, slow, kn, wn)
                s = sig[p]
                for t in range(nt):
                    c = c0 + t
                    v = a[g, p, m, c]
                    if noisy:
                        sd = math.sqrt(th2 + var[g, p, m, c]) if has_var else thermal_sigma
                        v += sd * z[t]
                    d = delta[g, c]
                    shift = offset_lsb + cmp_sigma * zc[t]
                    v = v * g1 + shift * d
                    u = (v - lo[g, c]) / d
                    # clamp before floor (Numba's floor gives an int64); -1 and top + 1 stay
                    # outside the codes
                    code = float(math.floor(min(max(u + 0.5, -1.0), top_code + 1.0)))
                    inside = code >= 0.0 and code <= top_code
                    code = min(max(code, 0.0), top_code)
                    acc[t] += s * (lo[g, c] + code * d)
                    if inside:
                        ins[t] += slope[g, p, m, c] if has_slope else 1.0
                    if want_step:
                        # v = lo₀·r + Δ₀·r·code(u): LSQ's ∂v/∂r (TwinMatmul._convert)
                        if inside:
                            dst[t] += s * ((shift - u) * d0[g, c] + code * d0[g, c])
                        else:
                            dst[t] += s * (lo0[g, c] + code * d0[g, c])
            for t in range(nt):
                c = c0 + t
                n = c // n_kinds
                y[g, m, n] += coef[g, c] * acc[t]
                if want_share:
                    share[g, m, n] += ins[t] * inv_pq
                if want_step:
                    dstep[g, m, c] = dst[t]


def fused_convert(a: np.ndarray, var: np.ndarray | None, slope: np.ndarray | None,
                  thermal_sigma: float, cmp_sigma: float, keys: tuple[int, int],
                  lo: np.ndarray, delta: np.ndarray,
                  lo0: np.ndarray, d0: np.ndarray, sig: np.ndarray, coef: np.ndarray,
                  n_kinds: int, gain: float, offset_lsb: float, top_code: float,
                  want_share: bool, want_step: bool
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Allocate the outputs and run :func:`convert_shift_add` (arguments as there)."""
    g_n, _, m_n, c_n = a.shape
    dt = a.dtype
    y = np.empty((g_n, m_n, c_n // n_kinds), dtype=dt)
    share = np.empty((g_n, m_n, c_n // n_kinds) if want_share else (0, 0, 0), dtype=dt)
    dstep = np.empty((g_n, m_n, c_n) if want_step else (0, 0, 0), dtype=dt)
    none = np.zeros((0, 0, 0, 0), dtype=dt)
    v = none if var is None else var
    sl = none if slope is None else slope
    # one coefficient per conversion (C,) or per (row group, conversion) (G, C)
    coef = np.ascontiguousarray(np.broadcast_to(coef, (g_n, c_n)))
    convert_shift_add(a, v, sl, float(thermal_sigma), float(cmp_sigma), np.uint64(keys[0]),
                      np.uint64(keys[1]), lo, delta, lo0, d0, sig, coef, n_kinds, float(gain),
                      float(offset_lsb), float(top_code), KN, WN, y, share, dstep)
    return y, (share if want_share else None), (dstep if want_step else None)


@njit(parallel=True, cache=True)
def dac_planes(x, dac_bits, mode, out):  # pragma: no cover - compiled; twin: twin.input_planes
    """The DAC planes of integer-valued float inputs x (M, K) into out (P, M, Kp), Kp >= K,
    the columns from K on set to 0 (a ragged row group's pad rows).

    mode 0: unsigned, plane p = (x >> dp) & (2^d - 1); 1: signed two's complement, the top
    plane x >> d(P-1) keeps the sign (an arithmetic shift is a floor); 2: two-pass, P/2 planes
    of max(x, 0) then P/2 of max(-x, 0). A NaN or infinite input is NaN on every plane (its
    row's output is NaN, as the torch path's). One read of x and one write of each plane,
    where the torch path makes several passes over all P planes.
    """
    n_planes, m_n, kp = out.shape
    k_n = x.shape[1]
    mask = (1 << dac_bits) - 1
    half = n_planes // 2
    for m in prange(m_n):
        for k in range(k_n):
            v = x[m, k]
            if not math.isfinite(v):
                for p in range(n_planes):
                    out[p, m, k] = math.nan
                continue
            xi = np.int64(math.floor(v))  # integer-valued codes; a floor as the torch path's
            for p in range(n_planes):
                if mode == 2:
                    neg = p >= half
                    sh = dac_bits * (p - half if neg else p)
                    d = (max(-xi if neg else xi, 0) >> sh) & mask
                elif mode == 1 and p == n_planes - 1:
                    d = xi >> (dac_bits * p)
                else:
                    d = (xi >> (dac_bits * p)) & mask
                out[p, m, k] = d
        for k in range(k_n, kp):
            for p in range(n_planes):
                out[p, m, k] = 0.0

"""The fused conversion kernel: off-current, non-linearity, noise, ADC and shift-add.

One call handles one row group of one chunk of input vectors: the GEMM has already produced the
integer (or conductance-weighted) partial sum of every (plane, vector, GEMM column); this kernel
turns each conversion into an ADC value and accumulates it, with its plane and slice
significance, into the caller's output. Parallel over vectors, so no two threads write the same
output row; noise is counter-based (``_rng``), so results do not depend on the thread count.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, uint64

from ._rng import _GOLDEN, _mix, normal

NL_NONE, NL_SATURATING, NL_POLYNOMIAL, NL_IR_DROP = 0, 1, 2, 3


@njit(inline="always", cache=True)
def _nonlinear(a, kind, fs, sat, beta, poly):  # pragma: no cover - compiled
    if kind == NL_SATURATING:
        s = sat * fs
        return s * math.tanh(a / s)
    if kind == NL_POLYNOMIAL:
        u = a / fs
        un = u * u
        acc = 0.0
        for i in range(poly.shape[0]):
            acc += poly[i] * un
            un *= u
        return a + fs * acc
    if kind == NL_IR_DROP:
        return a / (1.0 + beta * abs(a) / fs)
    return a


@njit(inline="always", cache=True)
def _fill_normals(key, base, z, ok, kn, wn, fn):  # pragma: no cover - compiled
    """z[c] = normal(key, base + c) for every c: a vectorisable ziggurat fast path over the
    whole block, then the rare rejections (about 1 %) one by one."""
    n = z.shape[0]
    n_slow = 0
    for c in range(n):
        h = _mix(key + (base + uint64(c)) * uint64(_GOLDEN))
        hz = np.int64(np.int32(h & uint64(0xFFFFFFFF)))
        iz = np.int64((h >> uint64(32)) & uint64(127))
        z[c] = hz * wn[iz]
        good = abs(hz) < kn[iz]
        ok[c] = good
        n_slow += 0 if good else 1
    if n_slow > 0:
        for c in range(n):
            if not ok[c]:
                z[c] = normal(key, base + uint64(c), kn, wn, fn)


@njit(parallel=True, cache=True)
def convert_accumulate(
    ps, xsum, var, sig, pos, neg, off_add, out_col, coef, lo, delta, top_code,
    nl_kind, nl_fs, nl_sat, nl_beta, nl_poly,
    thermal_sigma, gain, offset_lsb, cmp_sigma,
    key_noise, key_cmp, group, m_offset, m_total, kn, wn, fn, thr, lvl, out,
):  # pragma: no cover - compiled; twin: _reference.convert_accumulate_reference
    """Convert and accumulate one row group.

    ps (P, Mc, Jg) int32|float32 partial sums; xsum (P, Mc) float64 Σ_k x_p (or (P, 0));
    var (P, Mc, Jg) float32 read-noise variance (or (0, 0, 0)); sig (P,); pos, neg, out_col (C,)
    int64; off_add (Jg,); coef, lo, delta (C,) float64; nl_poly (n,) float64; thr (C, L-1) and
    lvl (C, L) float64 thresholds and levels of a nonlinear ADC (or (0, 0): linear ADC);
    out (Mc, N) float64, accumulated into.
    """
    n_planes, mc, jg = ps.shape
    nonlinear = thr.shape[0] > 0
    n_thr = thr.shape[1]
    n_conv = pos.shape[0]
    has_off = xsum.shape[1] > 0
    has_var = var.shape[0] > 0
    noisy = thermal_sigma > 0.0 or has_var
    has_neg = False
    direct = jg == n_conv
    for c in range(n_conv):
        has_neg = has_neg or neg[c] >= 0
        direct = direct and pos[c] == c
    # the plain case (one GEMM column per conversion, nothing analog to add) is a copy
    simple = direct and not has_neg and not has_off and nl_kind == NL_NONE
    th2 = thermal_sigma * thermal_sigma
    g1 = 1.0 + gain
    for m in prange(mc):
        a = np.empty(n_conv)
        z = np.empty(n_conv)
        ok = np.empty(n_conv, dtype=np.bool_)
        acc = np.zeros(n_conv)
        for p in range(n_planes):
            if simple:
                for c in range(n_conv):
                    a[c] = ps[p, m, c]
            else:
                xs = xsum[p, m] if has_off else 0.0
                for c in range(n_conv):
                    j = pos[c]
                    v = ps[p, m, j] + off_add[j] * xs
                    if nl_kind != NL_NONE:
                        v = _nonlinear(v, nl_kind, nl_fs, nl_sat, nl_beta, nl_poly)
                    jn = neg[c]
                    if jn >= 0:
                        b = ps[p, m, jn] + off_add[jn] * xs
                        if nl_kind != NL_NONE:
                            b = _nonlinear(b, nl_kind, nl_fs, nl_sat, nl_beta, nl_poly)
                        v -= b
                    a[c] = v
            base = uint64(((group * n_planes + p) * m_total + m_offset + m) * n_conv)
            if noisy:
                _fill_normals(key_noise, base, z, ok, kn, wn, fn)
                if has_var:
                    for c in range(n_conv):
                        v = th2 + var[p, m, pos[c]]
                        if neg[c] >= 0:
                            v += var[p, m, neg[c]]
                        a[c] += math.sqrt(v) * z[c]
                else:
                    for c in range(n_conv):
                        a[c] += thermal_sigma * z[c]
            s = sig[p]
            if cmp_sigma > 0.0:
                _fill_normals(key_cmp, base, z, ok, kn, wn, fn)
            if nonlinear:
                for c in range(n_conv):
                    d = delta[c]
                    v = a[c] * g1 + offset_lsb * d
                    if cmp_sigma > 0.0:
                        v += cmp_sigma * d * z[c]
                    # code = number of thresholds <= v (binary search; ties go up)
                    i0, i1 = 0, n_thr
                    while i0 < i1:
                        mid = (i0 + i1) >> 1
                        if thr[c, mid] <= v:
                            i0 = mid + 1
                        else:
                            i1 = mid
                    acc[c] += s * lvl[c, i0]
            elif cmp_sigma > 0.0:
                for c in range(n_conv):
                    d = delta[c]
                    v = a[c] * g1 + offset_lsb * d + cmp_sigma * d * z[c]
                    # clamp before floor (Numba's floor is an int64 and would overflow)
                    u = min(max((v - lo[c]) / d + 0.5, 0.0), top_code + 0.5)
                    code = math.floor(u)
                    acc[c] += s * (lo[c] + code * d)
            else:
                for c in range(n_conv):
                    d = delta[c]
                    v = a[c] * g1 + offset_lsb * d
                    # clamp before floor (Numba's floor is an int64 and would overflow)
                    u = min(max((v - lo[c]) / d + 0.5, 0.0), top_code + 0.5)
                    code = math.floor(u)
                    acc[c] += s * (lo[c] + code * d)
        for c in range(n_conv):
            out[m, out_col[c]] += coef[c] * acc[c]


@njit(parallel=True, cache=True)
def make_planes(x, dac_bits, n_planes, mode, rowsum, out, nnz, v2g):
    """Cut integer inputs into DAC planes and count their events, in one pass.

    x (Mc, K) int64; mode 0 unsigned, 1 signed two's complement (an arithmetic shift leaves
    the sign in the MSB plane), 2 signed two-pass (P/2 positive planes, then P/2 negative);
    rowsum (K,) float64; out (P, Mc, K) int8|int16; nnz, v2g (Mc,) float64 per-vector counts of
    nonzero drives and of Σ_p Σ_k x_p[k]² · rowsum[k].
    """  # twin: encoding.input_planes + engine._count_plane_events
    mc, k = x.shape
    mask = (1 << dac_bits) - 1
    half = n_planes // 2
    for m in prange(mc):
        cnt = 0.0
        acc = 0.0
        for kk in range(k):
            v = x[m, kk]
            r = rowsum[kk]
            for p in range(n_planes):
                if mode == 0:
                    d = (v >> (dac_bits * p)) & mask
                elif mode == 1:
                    if p == n_planes - 1:
                        d = v >> (dac_bits * p)
                    else:
                        d = (v >> (dac_bits * p)) & mask
                else:
                    if p < half:
                        d = (max(v, 0) >> (dac_bits * p)) & mask
                    else:
                        d = (max(-v, 0) >> (dac_bits * (p - half))) & mask
                out[p, m, kk] = d
                if d != 0:
                    cnt += 1.0
                    acc += d * d * r
        nnz[m] = cnt
        v2g[m] = acc

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
from numba import prange, uint64

from .._jit import njit
from .._threads import start_numba_pool
from ..adc._kernels import linear_adc
from ._rng import code_offset_slow, fill_normals_n, fill_words

start_numba_pool()  # before any kernel runs: see cimsim/_threads.py

NL_NONE, NL_SATURATING, NL_POLYNOMIAL, NL_IR_DROP = 0, 1, 2, 3
_TILE = 256  # conversions per tile of convert_accumulate (its scratch arrays stay in L1)
_U_MAX = 2.0**50  # |position| in ADC steps beyond which noise cannot move a code back in range


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
def _position(a, g1, offset_lsb, lo, d):  # pragma: no cover - compiled
    """Where analog value a falls on a linear ADC, in steps from the middle of code 0 (code k
    spans [k, k + 1)), gain and offset error included; clamped to ±2^50 (far outside any ADC,
    and finite: the exact sampler's end cells rely on it)."""
    return min(max((a * g1 + offset_lsb * d - lo) / d + 0.5, -_U_MAX), _U_MAX)


@njit(parallel=True, cache=True)
def convert_accumulate(
    ps, xsum, var, sig, pos, neg, off_add, out_col, coef, lo, delta, top_code,
    nl_kind, nl_fs, nl_sat, nl_beta, nl_poly,
    thermal_sigma, gain, offset_lsb, cmp_sigma,
    key_noise, key_cmp, group, m_offset, m_total, kn, wn, thr, lvl, clip_lo, clip_hi, out,
    clips, noise_steps, qz,
):  # pragma: no cover - compiled; twin: _reference.convert_accumulate_reference
    """Convert and accumulate one row group.

    ps (P, Mc, Jg) int32|float32 partial sums; xsum (P, Mc) float64 Σ_k x_p (or (P, 0));
    var (P, Mc, Jg) float32 read-noise variance (or (0, 0, 0)); sig (P,); pos, neg, out_col (C,)
    int64; off_add (Jg,); coef, lo, delta (C,) float64; nl_poly (n,) float64; thr (C, L-1) and
    lvl (C, L) float64 thresholds and levels of a nonlinear ADC (or (0, 0): linear ADC);
    kn, wn the ziggurat tables ``_rng.KN, WN`` of the fast path (the rare slow path reads the
    module's own tables); clip_lo, clip_hi (C,) float64 the values the ADC input must stay
    within (else the conversion is clipped); out (Mc, N) float64, accumulated into; clips (Mc,)
    int64, each vector's clipped conversions added to it. out and clips must not overlap any
    other argument (Numba compiles the loop with its arrays noalias).

    noise_steps (C,) float64 > 0, or (0,): where given, the noise of conversion c is one
    Gaussian of noise_steps[c] ADC steps (thermal and comparator noise together, linear ADC, no
    read noise: the caller checks) and its code is drawn exactly from its discrete distribution
    (``_rng.code_offset_slow`` and its fast path here; qz = ``_rng.QZ``, ±inf at its ends, so
    that the two end cells never decide) instead of adding a
    Gaussian and quantizing;
    a conversion then counts as clipped when its unclamped code is outside [0, top_code] (the
    linear ADC's own clip bounds, half a step beyond its ends; clip_lo, clip_hi are not read).
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
    exact = noise_steps.shape[0] > 0
    # ... and with a linear ADC, no read noise and no comparator noise, one loop does it all
    # (thermal noise as a Gaussian added; the exact code sampler has its own loops below)
    plain = simple and not nonlinear and not has_var and cmp_sigma == 0.0 and not exact
    th2 = thermal_sigma * thermal_sigma
    g1 = 1.0 + gain
    for m in prange(mc):
        # No slices of these (or of the arguments) anywhere in the loop: Numba marks the loop's
        # array arguments noalias only when it sees no alias, and without that the compiler
        # cannot vectorise the exact path's table gathers (fill_normals_n takes a count for it).
        a = np.empty(_TILE)
        z = np.empty(_TILE)
        hh = np.empty(_TILE // 2 + 2, dtype=np.uint64)  # scratch of fill_normals/words
        w16 = hh.view(np.uint16)  # the 16-bit words of fill_words, in order (little-endian)
        slow = np.empty(_TILE, dtype=np.int64)
        undecided = np.zeros(_TILE, dtype=np.uint8)  # (zeros: und8 reads whole words)
        und8 = undecided.view(np.uint64)
        acc = np.empty(_TILE)
        n_clip = 0
        # Conversions in tiles, planes inside: a tile's working set stays in L1 across the
        # planes, whatever the number of conversions (thousands in wide layers).
        for tile in range((n_conv + _TILE - 1) // _TILE):
            # (a range with a step here made Numba's loop several times slower)
            c0 = tile * _TILE
            nt = min(_TILE, n_conv - c0)
            for t in range(nt):
                acc[t] = 0.0
            for p in range(n_planes):
                base = uint64(((group * n_planes + p) * m_total + m_offset + m) * n_conv + c0)
                s = sig[p]
                if plain:
                    # the common case in one loop: partial sum, thermal noise, linear ADC
                    if thermal_sigma > 0.0:
                        fill_normals_n(key_noise, base, nt, z, hh, slow, kn, wn)
                        for t in range(nt):
                            c = c0 + t
                            d = delta[c]
                            v = (ps[p, m, c] + thermal_sigma * z[t]) * g1 + offset_lsb * d
                            n_clip += (v < clip_lo[c]) | (v > clip_hi[c])
                            acc[t] += s * linear_adc(v, lo[c], d, top_code)
                    else:
                        for t in range(nt):
                            c = c0 + t
                            d = delta[c]
                            v = ps[p, m, c] * g1 + offset_lsb * d
                            n_clip += (v < clip_lo[c]) | (v > clip_hi[c])
                            acc[t] += s * linear_adc(v, lo[c], d, top_code)
                    continue
                if simple:
                    for t in range(nt):
                        a[t] = ps[p, m, c0 + t]
                else:
                    xs = xsum[p, m] if has_off else 0.0
                    for t in range(nt):
                        j = pos[c0 + t]
                        v = ps[p, m, j] + off_add[j] * xs
                        if nl_kind != NL_NONE:
                            v = _nonlinear(v, nl_kind, nl_fs, nl_sat, nl_beta, nl_poly)
                        jn = neg[c0 + t]
                        if jn >= 0:
                            b = ps[p, m, jn] + off_add[jn] * xs
                            if nl_kind != NL_NONE:
                                b = _nonlinear(b, nl_kind, nl_fs, nl_sat, nl_beta, nl_poly)
                            v -= b
                        a[t] = v
                if exact:
                    # noise as an exact draw of the code (_rng.code_offset_slow has the
                    # method), in one branch-free loop that the compiler vectorises: position,
                    # the quantile cell of the draw's 16-bit word (two gathers from qz), the
                    # offset when the cell decides it, the ADC and the accumulation. A draw its
                    # cell does not decide (a code boundary inside it, or an unbounded end
                    # cell: ~s/600 + 1/2048 of them) adds 0.0 here (which leaves the sum as it
                    # is) and is flagged, then drawn by the slow path below.
                    fill_words(key_noise, base, nt, hh)
                    w0 = np.int64(base & uint64(3))  # w16[w0 + t]: the word of draw base + t
                    n_und = 0
                    for t in range(nt):
                        c = c0 + t
                        d = delta[c]
                        u = _position(a[t], g1, offset_lsb, lo[c], d)
                        sc = noise_steps[c]
                        i = np.int64(w16[w0 + t]) >> 4
                        k = np.floor(u + sc * qz[i])
                        # (the end cells, qz = ±inf at one edge, never decide: -inf or inf)
                        und = np.floor(u + sc * qz[i + 1]) != k
                        n_clip += 0 if und else (k < 0.0) | (k > top_code)
                        acc[t] += 0.0 if und else s * (lo[c] + min(max(k, 0.0), top_code) * d)
                        undecided[t] = und
                        n_und += und
                    if n_und > 0:  # (in ~1/3 of the tiles at 0.7 step of noise)
                        for j in range((nt + 7) >> 3):
                            if und8[j] == 0:  # eight flags at a time (a byte at a time
                                continue      # was measurably slower)
                            for t in range(8 * j, min(8 * j + 8, nt)):
                                if undecided[t]:
                                    c = c0 + t
                                    k = np.float64(code_offset_slow(
                                        key_noise, base + uint64(t),
                                        np.int64(w16[w0 + t]) >> 4,
                                        _position(a[t], g1, offset_lsb, lo[c], delta[c]),
                                        noise_steps[c]))
                                    n_clip += (k < 0.0) | (k > top_code)
                                    acc[t] += s * (lo[c] + min(max(k, 0.0), top_code)
                                                   * delta[c])
                    continue
                if noisy:
                    fill_normals_n(key_noise, base, nt, z, hh, slow, kn, wn)
                    if has_var:
                        for t in range(nt):
                            c = c0 + t
                            v = th2 + var[p, m, pos[c]]
                            if neg[c] >= 0:
                                v += var[p, m, neg[c]]
                            a[t] += math.sqrt(v) * z[t]
                    else:
                        for t in range(nt):
                            a[t] += thermal_sigma * z[t]
                if cmp_sigma > 0.0:
                    fill_normals_n(key_cmp, base, nt, z, hh, slow, kn, wn)
                if nonlinear:
                    for t in range(nt):
                        c = c0 + t
                        d = delta[c]
                        v = a[t] * g1 + offset_lsb * d
                        if cmp_sigma > 0.0:
                            v += cmp_sigma * d * z[t]
                        n_clip += (v < clip_lo[c]) | (v > clip_hi[c])
                        # code = number of thresholds <= v (binary search; ties go up)
                        i0, i1 = 0, n_thr
                        while i0 < i1:
                            mid = (i0 + i1) >> 1
                            if thr[c, mid] <= v:
                                i0 = mid + 1
                            else:
                                i1 = mid
                        acc[t] += s * lvl[c, i0]
                elif cmp_sigma > 0.0:
                    for t in range(nt):
                        c = c0 + t
                        d = delta[c]
                        v = a[t] * g1 + offset_lsb * d + cmp_sigma * d * z[t]
                        n_clip += (v < clip_lo[c]) | (v > clip_hi[c])
                        acc[t] += s * linear_adc(v, lo[c], d, top_code)
                else:
                    for t in range(nt):
                        c = c0 + t
                        d = delta[c]
                        v = a[t] * g1 + offset_lsb * d
                        n_clip += (v < clip_lo[c]) | (v > clip_hi[c])
                        acc[t] += s * linear_adc(v, lo[c], d, top_code)
            for t in range(nt):
                out[m, out_col[c0 + t]] += coef[c0 + t] * acc[t]
        clips[m] += n_clip


@njit(parallel=True, cache=True)
def make_planes(x, dac_bits, n_planes, mode, rowsum, out, nnz, v2g):
    """Cut integer inputs into DAC planes and count their events.

    x (Mc, K) int64; mode 0 unsigned, 1 signed two's complement (an arithmetic shift leaves
    the sign in the MSB plane), 2 signed two-pass (P/2 positive planes, then P/2 negative);
    rowsum (K,) float64; out (P, Mc, K) int8|int16; nnz, v2g (Mc,) float64 per-vector counts of
    nonzero drives and of Σ_p Σ_k x_p[k]² · rowsum[k].
    """  # twin: encoding.input_planes + engine._count_plane_events
    mc, k = x.shape
    mask = (1 << dac_bits) - 1
    half = n_planes // 2
    for m in prange(mc):
        # One plane at a time over a contiguous row, with integer counters: the inner loops
        # vectorise (a float sum per element would be a serial chain of adds). Σ_p d² is kept
        # per input and weighted by rowsum once.
        sq = np.zeros(k, dtype=np.int64)
        cnt = 0
        for p in range(n_planes):
            if mode == 2:
                neg = p >= half
                sh = dac_bits * (p - half if neg else p)
                for kk in range(k):
                    v = -x[m, kk] if neg else x[m, kk]
                    d = (max(v, 0) >> sh) & mask
                    out[p, m, kk] = d
                    cnt += d != 0
                    sq[kk] += d * d
            elif mode == 1 and p == n_planes - 1:
                sh = dac_bits * p
                for kk in range(k):
                    d = x[m, kk] >> sh
                    out[p, m, kk] = d
                    cnt += d != 0
                    sq[kk] += d * d
            else:
                sh = dac_bits * p
                for kk in range(k):
                    d = (x[m, kk] >> sh) & mask
                    out[p, m, kk] = d
                    cnt += d != 0
                    sq[kk] += d * d
        acc = 0.0
        for kk in range(k):
            acc += sq[kk] * rowsum[kk]
        nnz[m] = cnt
        v2g[m] = acc


@njit(parallel=True, cache=True)
def analog_linear(ps, xsum, pos, neg, off_add, out):  # pragma: no cover - compiled
    """The noise-free analog value of every conversion of a linear column, in one pass:
    out (P, Mc, C) float64 = ps[p, m, pos[c]] + off_add[pos[c]] · xsum[p, m], minus the same
    of column neg[c] where neg[c] >= 0. ps (P, Mc, Jg) int32|float32|float64; xsum (P, Mc) or
    (P, 0): no off-current term.

    Twin: ``analog.analog_from_partial_sums`` with ``NL_NONE`` (the same operations in the
    same order, so the same float64 values): calibration reads every conversion's value, and
    the NumPy form's gathers, casts and temporaries were half of preparing a model.
    """
    n_planes, mc, _ = ps.shape
    n_conv = pos.shape[0]
    has_off = xsum.shape[1] > 0
    for pm in prange(n_planes * mc):
        p = pm // mc
        m = pm - p * mc
        xs = xsum[p, m] if has_off else 0.0
        for c in range(n_conv):
            j = pos[c]
            v = np.float64(ps[p, m, j]) + off_add[j] * xs
            jn = neg[c]
            if jn >= 0:
                v -= np.float64(ps[p, m, jn]) + off_add[jn] * xs
            out[p, m, c] = v

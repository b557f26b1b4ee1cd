"""The fused conversion kernel: off-current, non-linearity, noise, ADC and shift-add.

One call handles one row group of one chunk of input vectors: the GEMM has already produced the
integer (or conductance-weighted) partial sum of every (plane, vector, GEMM column); this kernel
turns each conversion into an ADC value and accumulates it, with its plane and slice
significance, into the caller's output. Parallel over vectors, so no two threads write the same
output row; noise is counter-based (``_rng``), so results do not depend on the thread count.
"""

from __future__ import annotations

import math

from numba import njit, prange, uint64

from ..adc._kernels import linear_adc
from ._rng import normal

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


@njit(parallel=True, cache=True)
def convert_accumulate(
    ps, xsum, var, sig, pos, neg, off_add, out_col, coef, lo, delta, top_code,
    nl_kind, nl_fs, nl_sat, nl_beta, nl_poly,
    thermal_sigma, gain, offset_lsb, cmp_sigma,
    key_noise, key_cmp, group, m_offset, m_total, kn, wn, fn, out,
):  # pragma: no cover - compiled; twin: _reference.convert_accumulate_reference
    """Convert and accumulate one row group.

    ps (P, Mc, Jg) int32|float32 partial sums; xsum (P, Mc) float64 Σ_k x_p (or (P, 0));
    var (P, Mc, Jg) float32 read-noise variance (or (0, 0, 0)); sig (P,); pos, neg, out_col (C,)
    int64; off_add (Jg,); coef, lo, delta (C,) float64; nl_poly (n,) float64;
    out (Mc, N) float64, accumulated into.
    """
    n_planes, mc, _ = ps.shape
    n_conv = pos.shape[0]
    has_off = xsum.shape[1] > 0
    has_var = var.shape[0] > 0
    noisy = thermal_sigma > 0.0 or has_var
    th2 = thermal_sigma * thermal_sigma
    g1 = 1.0 + gain
    for m in prange(mc):
        for p in range(n_planes):
            s = sig[p]
            xs = xsum[p, m] if has_off else 0.0
            base = uint64(((group * n_planes + p) * m_total + m_offset + m) * n_conv)
            for c in range(n_conv):
                j = pos[c]
                a = ps[p, m, j] + off_add[j] * xs
                if nl_kind != NL_NONE:
                    a = _nonlinear(a, nl_kind, nl_fs, nl_sat, nl_beta, nl_poly)
                jn = neg[c]
                if jn >= 0:
                    b = ps[p, m, jn] + off_add[jn] * xs
                    if nl_kind != NL_NONE:
                        b = _nonlinear(b, nl_kind, nl_fs, nl_sat, nl_beta, nl_poly)
                    a -= b
                if noisy:
                    v = th2
                    if has_var:
                        v += var[p, m, j]
                        if jn >= 0:
                            v += var[p, m, jn]
                    a += math.sqrt(v) * normal(key_noise, base + uint64(c), kn, wn, fn)
                d = delta[c]
                a = a * g1 + offset_lsb * d
                if cmp_sigma > 0.0:
                    a += cmp_sigma * d * normal(key_cmp, base + uint64(c), kn, wn, fn)
                out[m, out_col[c]] += s * coef[c] * linear_adc(a, lo[c], d, top_code)

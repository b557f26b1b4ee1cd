"""Plain NumPy twins: of the fused kernel, and of the whole ``matmul`` (the tests' oracles)."""

from __future__ import annotations

import numpy as np

from ..adc._reference import linear_adc_reference, nonlinear_adc_reference
from ..config import OffCurrentCompensation, SignedInputMode
from ._rng import code_offsets_reference, normal_reference, stream_key
from .analog import NL_CODES, analog_from_partial_sums, column_nonlinearity
from .drift import _read_rel, reference_drift
from .program import off_conductance


def convert_accumulate_reference(
    ps, xsum, var, sig, pos, neg, off_add, out_col, coef, lo, delta, top_code,
    nl_kind, nl_fs, nl_sat, nl_beta, nl_poly,
    thermal_sigma, gain, offset_lsb, cmp_sigma,
    key_noise, key_cmp, group, m_offset, m_total, thr, lvl, clip_lo, clip_hi, out, clips,
    noise_steps, qz=None,
):
    """Vectorised NumPy twin of ``_kernels.convert_accumulate`` (same arguments, no tables:
    the twin reads ``_rng.QZ`` itself)."""
    n_planes, mc, _ = ps.shape
    n_conv = pos.shape[0]
    a = analog_from_partial_sums(ps, xsum, pos, neg, off_add, nl_kind, nl_fs, nl_sat, nl_beta,
                                 nl_poly)
    has_neg = neg >= 0
    negc = np.where(has_neg, neg, 0)
    idx = (((group * n_planes + np.arange(n_planes))[:, None, None] * m_total
            + m_offset + np.arange(mc)[None, :, None]) * n_conv
           + np.arange(n_conv)[None, None, :]).astype(np.uint64)
    has_var = var.shape[0] > 0
    if noise_steps.shape[0] > 0:
        # the exact code sampler: noise is one Gaussian of noise_steps ADC steps
        u = (a * (1.0 + gain) + offset_lsb * delta - lo) / delta + 0.5
        u = np.clip(u, -(2.0**50), 2.0**50)
        k = code_offsets_reference(key_noise, idx, u, noise_steps).astype(np.float64)
        clips += ((k < 0) | (k > top_code)).sum(axis=(0, 2))
        val = (lo + np.clip(k, 0.0, top_code) * delta) * sig[:, None, None]
        _accumulate(val, coef, out, out_col)
        return
    if thermal_sigma > 0 or has_var:
        v = np.full(a.shape, thermal_sigma**2)
        if has_var:
            var = var.astype(np.float64)
            v = v + var[:, :, pos] + np.where(has_neg, var[:, :, negc], 0.0)
        a = a + np.sqrt(v) * normal_reference(key_noise, idx)
    a = a * (1.0 + gain) + offset_lsb * delta
    if cmp_sigma > 0:
        a = a + cmp_sigma * delta * normal_reference(key_cmp, idx)
    clips += ((a < clip_lo) | (a > clip_hi)).sum(axis=(0, 2))
    if thr.shape[0] > 0:
        val = nonlinear_adc_reference(a, thr, lvl) * sig[:, None, None]
    else:
        val = linear_adc_reference(a, lo, delta, top_code) * sig[:, None, None]
    _accumulate(val, coef, out, out_col)


def _accumulate(val, coef, out, out_col):
    # as the kernel: the planes' signed codes summed in plane order, then one multiply by
    # the column's coefficient (a drift compensation's gain makes it no power of two, where
    # multiplying each plane first rounded otherwise)
    contrib = val.sum(axis=0) * coef  # (Mc, C)
    for c in range(out_col.shape[0]):
        out[:, out_col[c]] += contrib[:, c]


def matmul_reference(x_int, layer, noise_seed: int = 0):
    """Deliberately plain loop version of ``engine.run`` for one programmed layer.

    It re-derives the input planes bit by bit with Python integers, reads every physical column
    from the programmed conductances (never the merged GEMM matrix), and converts one scalar at
    a time; only the layer's tiling, conversion list and ADC ranges are shared with the engine.
    Noise uses the same counter-based draws, so results match the engine for the same seed,
    an aged layer's too (its 1/f read noise and drifted analog reference at its time).
    """
    chip = layer.chip
    tables = layer.adc
    x = np.asarray(x_int, dtype=np.int64)
    m_total, _ = x.shape
    d, b_x = chip.dac_bits, chip.input_bits

    # planes, one vector and one plane at a time
    def planes_of(v: int) -> list[tuple[float, int]]:
        if layer.input_signed and chip.dac.signed_inputs is SignedInputMode.TWO_PASS:
            n = -(-(b_x - 1) // d) if b_x > 1 else 1
            mag, sgn = abs(v), (1.0 if v >= 0 else -1.0)
            out = []
            for p in range(n):
                digit = (mag >> (d * p)) & ((1 << d) - 1)
                out.append((2.0 ** (d * p), digit if sgn > 0 else 0))
            for p in range(n):
                digit = (mag >> (d * p)) & ((1 << d) - 1)
                out.append((-(2.0 ** (d * p)), digit if sgn < 0 else 0))
            return out
        n = -(-b_x // d)
        out = []
        u = v % (1 << b_x) if layer.input_signed else v
        for p in range(n):
            bits = min(d, b_x - d * p)
            digit = (u >> (d * p)) & ((1 << bits) - 1)
            if layer.input_signed and p == n - 1 and digit >= 1 << (bits - 1):
                digit -= 1 << bits  # the MSB plane carries the sign bit
            out.append((2.0 ** (d * p), digit))
        return out

    g_off = off_conductance(chip)
    g = (layer.digits_phys.astype(np.float64) + g_off if layer.g_phys is None
         else layer.g_phys.astype(np.float64))
    comp = chip.device.off_current_compensation
    # an aged layer (``with_time``): its cells' read noise grows with time (1/f), and an analog
    # reference column has drifted as the off-state cells have
    t = layer.aging.t_s if layer.aging is not None else chip.device.drift_t0_s
    read_rel = np.broadcast_to(np.asarray(_read_rel(layer, t), dtype=np.float64), g.shape)
    g_ref = g_off * reference_drift(t, chip)
    nz = chip.noise
    nl = NL_CODES[nz.nonlinearity]
    poly = np.asarray(nz.poly_coeffs, dtype=np.float64)
    key_noise, key_cmp = stream_key(noise_seed, 1), stream_key(noise_seed, 2)
    adc = chip.adc
    top = adc.n_codes - 1
    n_conv = layer.n_conversions
    y = np.zeros((m_total, layer.n_outputs))
    from ..engine import exact_noise_steps  # the engine's rule of where codes are drawn exactly

    steps = [exact_noise_steps(layer, g) for g in range(layer.n_groups)]
    for m in range(m_total):
        planes = [planes_of(int(v)) for v in x[m]]  # per row: list of (sig, digit)
        n_planes = len(planes[0])
        for gi, (k0, k1, _t) in enumerate(layer.groups):
            for p in range(n_planes):
                sig = planes[0][p][0]
                xp = np.array([planes[k][p][1] for k in range(k0, k1)], dtype=np.float64)
                xsum = xp.sum()
                for c in range(n_conv):

                    def column(j: int, xp=xp, k0=k0, k1=k1, xsum=xsum) -> float:
                        # g holds each cell's off-state conductance; analog compensation
                        # removes its nominal value before the ADC
                        if comp is OffCurrentCompensation.ANALOG and layer.g_phys is None:
                            # nominal cells: the digits summed apart from the off-state part,
                            # which the reference cancels exactly at t0, as the engine sums
                            # them (an integer sum on a code boundary, a tie, was pushed to
                            # either side by the float residue of (d + g_off) - g_off)
                            a = (float(xp @ layer.digits_phys[k0:k1, j])
                                 + (g_off - g_ref) * xsum)
                        else:
                            a = float(xp @ g[k0:k1, j])
                            if comp is OffCurrentCompensation.ANALOG:
                                a -= g_ref * xsum
                        return float(column_nonlinearity(
                            np.float64(a), nl, max(layer.column_fs, 1e-30),
                            nz.saturation_fraction, nz.ir_drop_beta, poly))

                    # the columns the conversion reads, each with its analog weight (a pair's
                    # +1/-1, or the slice significances of an analog slice read-out)
                    a = var = 0.0
                    for j, wj in zip(layer.conv_phys[c], layer.conv_weight[c], strict=True):
                        if j < 0:
                            continue
                        a += wj * column(j)
                        if read_rel[k0:k1, j].any():
                            var += wj * wj * float(
                                (xp**2) @ (read_rel[k0:k1, j] * g[k0:k1, j]) ** 2)
                    idx = ((gi * n_planes + p) * m_total + m) * n_conv + c
                    delta = float(tables.delta[gi, c])
                    if steps[gi].shape[0] > 0:  # the exact code sampler (engine decides where)
                        u = (a * (1.0 + adc.gain_error) + adc.offset_error_lsb * delta
                             - tables.lo[gi, c]) / delta + 0.5
                        u = min(max(u, -(2.0**50)), 2.0**50)
                        k = int(code_offsets_reference(key_noise, np.array([idx]),
                                                       np.array([u]), steps[gi][c])[0])
                        val = float(tables.lo[gi, c]) + min(max(k, 0), top) * delta
                        y[m, layer.out_col[c]] += sig * layer.conv_coef[c] * val
                        continue
                    sd = np.sqrt(nz.thermal_sigma_lsb**2 + var)
                    if sd > 0:
                        a += sd * float(normal_reference(key_noise, np.array([idx]))[0])
                    a = a * (1.0 + adc.gain_error) + adc.offset_error_lsb * delta
                    if adc.comparator_noise_lsb > 0:
                        a += adc.comparator_noise_lsb * delta * float(
                            normal_reference(key_cmp, np.array([idx]))[0])
                    if tables.thr is not None and tables.lvl is not None:
                        code = int(np.sum(tables.thr[gi, c] <= a))  # thresholds <= a
                        val = float(tables.lvl[gi, c, code])
                    else:
                        val = float(linear_adc_reference(a, tables.lo[gi, c], delta, top))
                    y[m, layer.out_col[c]] += sig * layer.conv_coef[c] * val
    y += x.sum(axis=1, dtype=np.float64)[:, None] * layer.x_sum_coef[None, :]
    return y

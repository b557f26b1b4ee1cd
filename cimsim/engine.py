"""One forward pass of a programmed layer: planes -> GEMM -> fused kernel -> outputs + events.

The work of a layer is P·S·(row groups) integer GEMMs of at most ``rows`` depth. The P input
planes are stacked along M so that one GEMM per row group yields every (plane, vector, column)
partial sum; one fused Numba kernel then does off-current, non-linearity, noise, ADC and
shift-add into the output. M is cut into chunks so that peak memory stays bounded whatever the
batch; Python loops run over chunks and row groups only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .adc.activation import FusedActivation, fused_tables_from_samples
from .adc.linear import RangeStats, ranges_from_samples
from .adc.nonlinear import levels_from_samples
from .arrays import _gemm
from .arrays._kernels import (
    NL_IR_DROP,
    NL_NONE,
    NL_POLYNOMIAL,
    NL_SATURATING,
    convert_accumulate,
    make_planes,
)
from .arrays._reference import analog_reference, convert_accumulate_reference
from .arrays._rng import KN, WN, stream_key
from .arrays.encoding import input_planes, input_range, plane_layout
from .arrays.program import ProgrammedLayer
from .config import ADCKind, CalibrationStat, Nonlinearity, RangePolicy, SignedInputMode
from .errors import ConfigError
from .events import EventKey, Events

__all__ = ["run", "calibrate", "check_inputs"]

_NL_CODES = {
    Nonlinearity.NONE: NL_NONE,
    Nonlinearity.SATURATING: NL_SATURATING,
    Nonlinearity.POLYNOMIAL: NL_POLYNOMIAL,
    Nonlinearity.IR_DROP: NL_IR_DROP,
}

_NO_LEVELS = np.zeros((0, 0))

#: Default bound on the per-chunk working set (partial sums, planes, variances), bytes.
CHUNK_BYTES = 96 * 2**20


def check_inputs(x_int: np.ndarray, layer: ProgrammedLayer, what: str = "x_int") -> np.ndarray:
    """Validate integer inputs (M, K) against the layer; return them as int64."""
    x = np.asarray(x_int)
    if x.ndim != 2:
        raise ValueError(f"{what} must be 2-D (M, K), got shape {x.shape}")
    if x.shape[1] != layer.n_inputs:
        raise ValueError(
            f"{what} has K = {x.shape[1]} inputs but the weights have K = {layer.n_inputs}"
        )
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{what} must have an integer dtype (quantized inputs), got {x.dtype}")
    lo, hi = input_range(layer.chip, layer.input_signed)
    if x.size:
        xmin, xmax = int(x.min()), int(x.max())
        if xmin < lo or xmax > hi:
            kind = "signed" if layer.input_signed else "unsigned"
            raise ValueError(
                f"{what} values must lie in [{lo}, {hi}] for {kind} input_bits="
                f"{layer.chip.input_bits}; got [{xmin}, {xmax}]"
            )
    return x.astype(np.int64, copy=False)


@dataclass
class _Block:
    """Partial sums of one row group for one chunk of vectors."""

    m0: int
    group: int
    ps: np.ndarray  # (P, Mc, Jg)
    xsum: np.ndarray  # (P, Mc) or (P, 0)
    var: np.ndarray  # (P, Mc, Jg) or (0, 0, 0)


def _chunk_size(layer: ProgrammedLayer, n_planes: int, chunk_vectors: int | None) -> int:
    if chunk_vectors is not None:
        return max(1, int(chunk_vectors))
    jg = layer.gemm_matrix.shape[1]
    per_vector = n_planes * (jg * 4 * (2 if layer.gemm_var is not None else 1)
                             + layer.n_inputs * 6)
    return max(1, CHUNK_BYTES // max(per_vector, 1))


def _group_abs_max(layer: ProgrammedLayer) -> list[float]:
    """max |entry| of the GEMM matrix per row group: fixed once programmed, so computed once
    per layer rather than on every forward."""
    cached = layer.meta.get("group_abs_max")
    if cached is None:
        cached = [float(np.abs(layer.gemm_matrix[k0:k1]).max(initial=0))
                  for k0, k1, _ in layer.groups]
        layer.meta["group_abs_max"] = cached
    return cached


def _blocks(
    layer: ProgrammedLayer, x: np.ndarray, chunk_vectors: int | None, gemm_kind: str,
    events: dict | None, kernel: str = "numba",
) -> Iterator[_Block]:
    chip = layer.chip
    sig, v_lo, v_hi = plane_layout(chip, layer.input_signed)
    n_planes = sig.shape[0]
    chunk = _chunk_size(layer, n_planes, chunk_vectors)
    mat = layer.gemm_matrix
    need_xsum = bool(np.any(layer.off_add != 0))
    a_max = max(abs(v_lo), abs(v_hi))
    plane_dtype = np.int8 if a_max <= 127 else np.int16 if a_max <= 32767 else np.int32
    mode = 0 if not layer.input_signed else (
        2 if chip.dac.signed_inputs is SignedInputMode.TWO_PASS else 1)
    kinds = []
    for g, (k0, k1, _tile) in enumerate(layer.groups):
        kind = gemm_kind
        if kind == "int8" and (a_max > 127 or mat.dtype != np.int8):
            raise ValueError(
                "gemm = 'int8' needs plane values and cell digits within int8 (ideal devices, "
                f"dac values up to 127); here planes reach {a_max} and the matrix is "
                f"{mat.dtype}: use gemm = 'auto'"
            )
        if kind == "auto":
            kind = _gemm.choose(a_max, _group_abs_max(layer)[g], k1 - k0, mat.dtype == np.int8)
        kinds.append(kind)
    for m0 in range(0, x.shape[0], chunk):
        xc = x[m0:m0 + chunk]
        mc = xc.shape[0]
        if kernel == "numba":
            pl = np.empty((n_planes, mc, layer.n_inputs), dtype=plane_dtype)
            nnz, v2g = np.zeros(mc), np.zeros(mc)
            make_planes(np.ascontiguousarray(xc), chip.dac_bits, n_planes, mode,
                        layer.cell_rowsum, pl, nnz, v2g)
            if events is not None:
                _add_plane_events(layer, float(nnz.sum()), float(v2g.sum()), events)
        else:
            pl = input_planes(xc, chip, layer.input_signed).planes
            if events is not None:
                nz = float(np.count_nonzero(pl))
                sq = np.square(pl, dtype=np.float64).sum(axis=(0, 1))
                _add_plane_events(layer, nz, float(sq @ layer.cell_rowsum), events)
        flat = pl.reshape(n_planes * mc, layer.n_inputs)
        for g, (k0, k1, _tile) in enumerate(layer.groups):
            xg = flat[:, k0:k1]  # a strided view: the GEMM reads it in place
            ps = _gemm.gemm(xg, mat[k0:k1], kinds[g]).reshape(n_planes, mc, -1)
            xsum = (xg.sum(axis=1, dtype=np.float64).reshape(n_planes, mc) if need_xsum
                    else np.zeros((n_planes, 0)))
            if layer.gemm_var is not None:
                sq = np.square(xg, dtype=np.float32)
                var = (sq @ layer.gemm_var[k0:k1]).reshape(n_planes, mc, -1)
            else:
                var = np.zeros((0, 0, 0), dtype=np.float32)
            yield _Block(m0, g, ps, xsum, var)
            del ps, xsum, var, xg
        # release this chunk before the next is allocated: peak memory is one chunk
        del pl, flat


def _add_plane_events(layer: ProgrammedLayer, active: float, v2g: float, ev: dict) -> None:
    """Data-dependent counts of one chunk: DAC pulses, cell reads, their summed conductance.

    ``active`` counts (plane, vector, row) triples with a nonzero drive; ``v2g`` is
    Σ x_p[k]² · Σ_j G[k, j] over them (cell-LSB · DAC-LSB²), the read energy in units.
    """
    chip = layer.chip
    ev[EventKey("dac", "pulse", chip.dac_bits)] += active * layer.n_col_tiles
    ev[EventKey("cell", "read", chip.device.bits_per_cell)] += active * layer.n_phys_cols
    ev[EventKey("cell", "v2g_lsb", 0)] += v2g


def _static_events(layer: ProgrammedLayer, m: int, n_planes: int) -> dict:
    chip = layer.chip
    acc = chip.accumulator_bits
    conv = float(m) * n_planes * layer.n_groups * layer.n_conversions
    n_row_tiles = len(layer.row_tiles)
    ev = {
        EventKey("layer", "mac", 0): float(m) * layer.n_inputs * layer.n_outputs,
        EventKey("adc", "convert", chip.adc.bits): conv,
        EventKey("shift_add", "add", acc): conv,
        EventKey("accumulator", "add", acc): float(m) * layer.n_outputs * layer.n_groups,
        EventKey("array", "activation", 0):
            float(m) * n_planes * layer.n_groups * layer.n_col_tiles,
        EventKey("buffer", "read_bit", 0):
            float(m) * layer.n_inputs * chip.input_bits * layer.n_col_tiles,
        EventKey("buffer", "write_bit", 0): float(m) * layer.n_outputs * acc,
        EventKey("interconnect", "bit", 0): float(m) * layer.n_outputs * acc * (n_row_tiles - 1),
        EventKey("dac", "pulse", chip.dac_bits): 0.0,
        EventKey("cell", "read", chip.device.bits_per_cell): 0.0,
        EventKey("cell", "v2g_lsb", 0): 0.0,
    }
    if np.any(layer.x_sum_coef != 0):
        ev[EventKey("digital", "correction_add", acc)] = float(m) * layer.n_outputs
    return ev


def _kernel_args(layer: ProgrammedLayer, sig: np.ndarray, m_total: int):
    chip = layer.chip
    if layer.adc_lo is None or layer.adc_delta is None:
        raise ConfigError(
            "adc.range_policy = 'calibrated' needs calibration data: pass calibration=... "
            "(cimsim.matmul / cimsim.deploy) or call cimsim.engine.calibrate(layer, x_cal)"
        )
    nz = chip.noise
    return dict(
        sig=sig, pos=layer.pos, neg=layer.neg, off_add=layer.off_add, out_col=layer.out_col,
        coef=layer.conv_coef, top_code=float(chip.adc.n_codes - 1),
        nl_kind=_NL_CODES[nz.nonlinearity], nl_fs=max(layer.column_fs, 1e-30),
        nl_sat=nz.saturation_fraction, nl_beta=nz.ir_drop_beta,
        nl_poly=np.asarray(nz.poly_coeffs, dtype=np.float64),
        thermal_sigma=nz.thermal_sigma_lsb, gain=chip.adc.gain_error,
        offset_lsb=chip.adc.offset_error_lsb, cmp_sigma=chip.adc.comparator_noise_lsb,
        m_total=m_total,
    )


def run(
    layer: ProgrammedLayer,
    x_int: np.ndarray,
    *,
    noise_seed: int = 0,
    chunk_vectors: int | None = None,
    gemm: str = "auto",
    kernel: str = "numba",
) -> tuple[np.ndarray, Events]:
    """Simulate ``y = x_int @ w_int.T`` on the programmed arrays.

    Parameters
    ----------
    layer : ProgrammedLayer
    x_int : (M, K) integer array
    noise_seed : int
        Seed of this call's conversion noise (thermal, read, comparator).
    chunk_vectors : int, optional
        Vectors per chunk (default: as many as fit :data:`CHUNK_BYTES`).
    gemm : {'auto', 'int8', 'float32', 'float64'}
    kernel : {'numba', 'numpy'}
        ``numpy`` runs the reference twin of the fused kernel (slow; for tests).

    Returns
    -------
    y : (M, N) float64
        Integer-domain result (equals ``x_int @ w_int.T`` on a lossless chip).
    events : Events
    """
    if gemm not in ("auto", "int8", "float32", "float64"):
        raise ValueError(f"gemm = {gemm!r}; allowed: 'auto', 'int8', 'float32', 'float64'")
    if kernel not in ("numba", "numpy"):
        raise ValueError(f"kernel = {kernel!r}; allowed: 'numba', 'numpy'")
    x = check_inputs(x_int, layer)
    m = x.shape[0]
    sig = plane_layout(layer.chip, layer.input_signed)[0]
    n_planes = sig.shape[0]
    args = _kernel_args(layer, sig, m)
    key_noise = np.uint64(stream_key(noise_seed, 1))
    key_cmp = np.uint64(stream_key(noise_seed, 2))
    y = np.zeros((m, layer.n_outputs), dtype=np.float64)
    ev = _static_events(layer, m, n_planes)
    for blk in _blocks(layer, x, chunk_vectors, gemm, ev, kernel):
        out = y[blk.m0:blk.m0 + blk.ps.shape[1]]
        lo, delta = layer.adc_lo[blk.group], layer.adc_delta[blk.group]
        thr = layer.adc_thr[blk.group] if layer.adc_thr is not None else _NO_LEVELS
        lvl = layer.adc_lvl[blk.group] if layer.adc_lvl is not None else _NO_LEVELS
        if kernel == "numba":
            convert_accumulate(blk.ps, blk.xsum, blk.var, lo=lo, delta=delta,
                               key_noise=key_noise, key_cmp=key_cmp, group=blk.group,
                               m_offset=blk.m0, kn=KN, wn=WN, thr=thr, lvl=lvl,
                               out=out, **args)
        else:
            convert_accumulate_reference(blk.ps, blk.xsum, blk.var, lo=lo, delta=delta,
                                         key_noise=int(key_noise), key_cmp=int(key_cmp),
                                         group=blk.group, m_offset=blk.m0, thr=thr, lvl=lvl,
                                         out=out, **args)
    if np.any(layer.x_sum_coef != 0):
        y += x.sum(axis=1, dtype=np.float64)[:, None] * layer.x_sum_coef[None, :]
    return y, Events(ev)


def calibrate(
    layer: ProgrammedLayer,
    x_cal: np.ndarray,
    *,
    chunk_vectors: int | None = None,
    activation: FusedActivation | None = None,
) -> None:
    """Set calibrated ADC ranges of ``layer`` from calibration inputs ``x_cal`` (M, K).

    The analog values each conversion would see (off-current and non-linearity included,
    noise excluded) are collected per (row group, conversion) and reduced as
    ``chip.adc.calibration_stat`` / ``calibration_granularity`` say. Layers whose policy is not
    ``calibrated`` are left unchanged. With ``activation`` (a layer-output ADC, one conversion
    per output) the ADC is set up as the layer's activation quantizer instead
    (:mod:`cimsim.adc.activation`).
    """
    adc = layer.chip.adc
    if adc.range_policy is not RangePolicy.CALIBRATED:
        if activation is not None:
            raise ConfigError("a fused activation needs adc.range_policy = 'calibrated'")
        return
    x = check_inputs(x_cal, layer, "calibration")
    if x.shape[0] == 0:
        raise ConfigError("calibration data is empty: at least one input vector is needed")
    if activation is not None and (
        layer.n_groups != 1 or np.shape(activation.kappa) != (layer.n_conversions,)
    ):
        raise ConfigError(
            "a fused activation needs one conversion per output (adc.placement = "
            f"'layer_output'); this layer has {layer.n_groups} row group(s) and "
            f"{layer.n_conversions} conversions for {np.size(activation.kappa)} outputs"
        )
    nonlinear = adc.kind is ADCKind.RAMP
    keep = (nonlinear or activation is not None
            or adc.calibration_stat is CalibrationStat.PERCENTILE)
    stats = RangeStats(layer.n_groups, layer.n_conversions, keep_samples=keep)
    nz = layer.chip.noise
    for blk in _blocks(layer, x, chunk_vectors, "auto", None):
        a = analog_reference(blk.ps, blk.xsum, layer.pos, layer.neg, layer.off_add,
                             _NL_CODES[nz.nonlinearity], max(layer.column_fs, 1e-30),
                             nz.saturation_fraction, nz.ir_drop_beta, nz.poly_coeffs)
        stats.add(blk.group, a.reshape(-1, a.shape[-1]))
    if activation is not None:
        fused_tables_from_samples(layer, stats, activation)
    elif nonlinear:
        levels_from_samples(layer, stats)
    else:
        ranges_from_samples(layer, stats)

"""One forward pass of a programmed layer: planes -> GEMM -> fused kernel -> outputs + events.

The work of a layer is P·S·(row groups) integer GEMMs of at most ``rows`` depth. The P input
planes are stacked along M so that one GEMM per row group yields every (plane, vector, column)
partial sum; one fused Numba kernel then does off-current, non-linearity, noise, ADC and
shift-add into the output. M is cut into chunks so that peak memory stays bounded whatever the
batch; Python loops run over chunks and row groups only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .adc import FusedActivation, RangeStats, calibrated_tables, keeps_samples
from .arrays import _gemm
from .arrays._kernels import NL_NONE, analog_linear, convert_accumulate, make_planes
from .arrays._rng import KN, QZ, WN, stream_key
from .arrays.analog import analog_from_partial_sums, nonlinearity_args
from .arrays.drift import gain_events
from .arrays.encoding import check_input_values, input_planes, plane_layout
from .arrays.program import ProgrammedLayer, sensed_cells
from .config import ActFormat, InputDrive, RangePolicy, SignedInputMode
from .errors import ConfigError
from .events import Action, Component, EventKey, Events

__all__ = ["AnalogBlock", "RunResult", "analog_values", "calibrate", "calibration_stats",
           "check_inputs", "run", "run_detailed"]

_NO_LEVELS = np.zeros((0, 0))
_NO_STEPS = np.zeros(0)

#: Largest noise, in ADC steps, for which a conversion's code is drawn exactly from its discrete
#: distribution (:func:`exact_noise_steps`): beyond it a boundary falls inside most quantile
#: cells and the Gaussian path is cheaper.
EXACT_MAX_STEPS = 4.0

#: Environment variable choosing how noise before a linear ADC is sampled: ``gaussian`` (the
#: default: a ziggurat normal added, then quantized) or ``exact`` (the code drawn from its
#: discrete distribution where :func:`exact_noise_steps` allows). Both are exact in
#: distribution; they give different draws. ``exact`` measured as fast as ``gaussian`` or up to
#: ~10 % slower on the benchmark machine (docs/performance.md), hence opt-in.
NOISE_SAMPLER_ENV = "CIMSIM_NOISE_SAMPLER"

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
    return check_input_values(x, layer.chip, layer.input_signed, what)


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
        if (isinstance(chunk_vectors, bool) or not isinstance(chunk_vectors, (int, np.integer))
                or chunk_vectors < 1):
            raise ConfigError(f"chunk_vectors = {chunk_vectors!r} is invalid; allowed: an "
                              "integer >= 1 or None (as many as fit CHUNK_BYTES)")
        return int(chunk_vectors)
    jg = layer.gemm_matrix.shape[1]
    per_vector = n_planes * (jg * 4 * (2 if layer.gemm_var is not None else 1)
                             + layer.n_inputs * 6)
    return max(1, CHUNK_BYTES // max(per_vector, 1))


@dataclass(frozen=True)
class _LayerConsts:
    """What every call on a programmed layer recomputed from its frozen fields alone."""

    sig: np.ndarray
    a_max: int
    need_xsum: bool
    x_sum_any: bool
    plane_dtype: type
    mode: int
    n_slice_multiplies: int


def _consts(layer: ProgrammedLayer) -> _LayerConsts:
    """:class:`_LayerConsts` of ``layer``, computed once per layer (a frozen value: a
    replaced layer, ``dataclasses.replace``, is a new object and computes its own)."""
    c = layer.__dict__.get("_engine_consts")
    if c is not None:
        return c
    chip = layer.chip
    sig, v_lo, v_hi = plane_layout(chip, layer.input_signed)
    a_max = max(abs(v_lo), abs(v_hi))
    c = _LayerConsts(
        sig=sig, a_max=a_max, need_xsum=bool(np.any(layer.off_add != 0)),
        x_sum_any=bool(np.any(layer.x_sum_coef != 0)),
        plane_dtype=np.int8 if a_max <= 127 else np.int16 if a_max <= 32767 else np.int32,
        mode=0 if not layer.input_signed else (
            2 if chip.dac.signed_inputs is SignedInputMode.TWO_PASS else 1),
        n_slice_multiplies=layer.n_slice_multiplies)
    object.__setattr__(layer, "_engine_consts", c)  # not a field: replace() drops it
    return c


def _blocks(
    layer: ProgrammedLayer, x: np.ndarray, chunk_vectors: int | None, gemm_kind: str,
    events: dict | None, kernel: str = "numba",
) -> Iterator[_Block]:
    chip = layer.chip
    lc = _consts(layer)
    sig = lc.sig
    n_planes = sig.shape[0]
    chunk = _chunk_size(layer, n_planes, chunk_vectors)
    mat = layer.gemm_matrix
    need_xsum = lc.need_xsum
    a_max = lc.a_max
    plane_dtype = lc.plane_dtype
    mode = lc.mode
    if gemm_kind == "auto":  # chosen per call: int8_matmul() may be patched (tests)
        is_int8 = mat.dtype == np.int8
        kinds = tuple(_gemm.choose(a_max, layer.group_abs_max[g], k1 - k0, is_int8)
                      for g, (k0, k1, _tile) in enumerate(layer.groups))
    else:
        if gemm_kind == "int8" and (a_max > 127 or mat.dtype != np.int8):
            raise ValueError(
                "gemm = 'int8' needs plane values and cell digits within int8 (ideal devices, "
                f"dac values up to 127); here planes reach {a_max} and the matrix is "
                f"{mat.dtype}: use gemm = 'auto'"
            )
        kinds = (gemm_kind,) * layer.n_groups
    for m0 in range(0, x.shape[0], chunk):
        xc = x[m0:m0 + chunk]
        mc = xc.shape[0]
        if kernel == "numba":
            pl: np.ndarray = np.empty((n_planes, mc, layer.n_inputs), dtype=plane_dtype)
            nnz, v2g = np.zeros(mc), np.zeros(mc)
            make_planes(np.ascontiguousarray(xc), chip.dac_bits, n_planes, mode,
                        layer.cell_rowsum, pl, nnz, v2g)
            if events is not None:
                _add_plane_events(layer, float(nnz.sum()),
                                  _read_v2g(pl, layer, float(v2g.sum())),
                                  *_v1g(pl, layer), events)
        else:
            pl = input_planes(xc, chip, layer.input_signed, checked=True).planes
            if events is not None:
                nz = float(np.count_nonzero(pl))
                sq = np.square(pl, dtype=np.float64).sum(axis=(0, 1))
                _add_plane_events(layer, nz, _read_v2g(pl, layer, float(sq @ layer.cell_rowsum)),
                                  *_v1g(pl, layer), events)
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


def _v1g(planes, layer: ProgrammedLayer) -> tuple[float, float]:
    """Σ_p Σ_k |x_p[k]| · rowsum[k] of a chunk's planes (NumPy or torch, (P, M, K)) for the
    layer's ``cell_rowsum`` (the read charge: a current ∝ x for the pulse, or full current for
    x LSB times) and its ``weighted_rowsum`` (the charge the slice-weighting mirrors copy; 0
    where none). A bit-plane drive (``tech.input_drive = 'bit_planes'``) reads each cell
    once per plane whose bit is 1, so it counts ``popcount(x_p[k])`` of the input's ``B``-bit
    two's complement (a signed input's sign plane included) in place of ``|x_p[k]|``."""
    numpy = isinstance(planes, np.ndarray)
    if layer.chip.tech.input_drive is InputDrive.BIT_PLANES:
        # one bit at a time, summed as it goes (B temporaries of the chunk's size at once
        # would hold B times its planes); integer planes shifted as they are (torch's: float)
        ints = ((planes if planes.dtype.kind in "iu" else planes.astype(np.int64)) if numpy
                else planes.long())
        a = np.zeros(ints.shape[-1])
        for j in range(layer.chip.input_bits):
            bit = (ints >> j) & 1
            a += (bit.sum(axis=(0, 1), dtype=np.float64) if numpy
                  else bit.sum(dim=(0, 1)).double().cpu().numpy())
    else:
        a = np.asarray(abs(planes).sum(axis=(0, 1), dtype=np.float64) if numpy
                       else planes.abs().sum(dim=(0, 1)).double().cpu().numpy())
    w = layer.weighted_rowsum
    return float(a @ layer.cell_rowsum), 0.0 if w is None else float(a @ w)


def _read_v2g(planes, layer: ProgrammedLayer, x2_sum: float) -> float:
    """The read-energy sum of a chunk's planes (NumPy or torch, (P, M, K)): the drive's
    ``x2_sum`` (Σ_p Σ_k x_p[k]² · rowsum[k]), except where a digital read-out senses
    resistive cells with d-bit slices (d > 1): a sensed row is read once at the full read
    voltage per nonzero slice (its bit then gates the slice in logic), so the sum counts
    those reads, Σ_p Σ_k [x_p[k] ≠ 0] · rowsum[k] (``cimsim.cost._prices.read_levels``; the
    two agree at d = 1)."""
    chip = layer.chip
    if chip.dac_bits == 1 or not sensed_cells(chip):
        return x2_sum
    n = (np.count_nonzero(planes, axis=(0, 1)).astype(np.float64)
         if isinstance(planes, np.ndarray)
         else (planes != 0).sum(dim=(0, 1)).double().cpu().numpy())
    return float(n @ layer.cell_rowsum)


def _add_plane_events(layer: ProgrammedLayer, active: float, v2g: float, v1g: float,
                      weighted: float, ev: dict) -> None:
    """Data-dependent counts of one chunk: DAC pulses, cell reads, their summed conductance.

    ``active`` counts (plane, vector, row) triples with a nonzero drive; ``v2g`` is
    Σ x_p[k]² · Σ_j G[k, j] over them (cell-LSB · DAC-LSB²), the read energy in units (a
    sensed cell's reads where :func:`_read_v2g` counts them);
    ``v1g`` and ``weighted`` are :func:`_v1g`'s two sums.
    """
    chip = layer.chip
    ev[EventKey(Component.DAC, Action.PULSE, chip.dac_bits)] += active * layer.n_col_tiles
    ev[EventKey(Component.CELL, Action.READ, chip.device.bits_per_cell)] += (
        active * layer.n_phys_cols)
    ev[EventKey(Component.CELL, Action.V2G_LSB, 0)] += v2g
    ev[EventKey(Component.CELL, Action.V1G_LSB, 0)] += v1g
    if layer.weighted_rowsum is not None:
        ev[EventKey(Component.WEIGHTING, Action.MIRROR_LSB, 0)] += weighted


def _static_events(layer: ProgrammedLayer, m: int, n_planes: int) -> dict:
    chip = layer.chip
    acc = chip.accumulator_bits
    conv = float(m) * n_planes * layer.n_groups * layer.n_conversions
    n_row_tiles = len(layer.row_tiles)
    C, A = Component, Action
    ev = {
        EventKey(C.LAYER, A.MAC, 0): float(m) * layer.n_inputs * layer.n_outputs,
        EventKey(C.ADC, A.CONVERT, chip.adc.bits): conv,
        EventKey(C.SHIFT_ADD, A.ADD, acc): conv,
        EventKey(C.ACCUMULATOR, A.ADD, acc): float(m) * layer.n_outputs * layer.n_groups,
        EventKey(C.ARRAY, A.ACTIVATION, 0):
            float(m) * n_planes * layer.n_groups * layer.n_col_tiles,
        EventKey(C.BUFFER, A.READ_BIT, 0):
            float(m) * layer.n_inputs * chip.input_bits * layer.n_col_tiles,
        EventKey(C.BUFFER, A.WRITE_BIT, 0): float(m) * layer.n_outputs * acc,
        EventKey(C.INTERCONNECT, A.BIT, 0): float(m) * layer.n_outputs * acc * (n_row_tiles - 1),
        EventKey(C.DAC, A.PULSE, chip.dac_bits): 0.0,
        EventKey(C.CELL, A.READ, chip.device.bits_per_cell): 0.0,
        EventKey(C.CELL, A.V2G_LSB, 0): 0.0,
        EventKey(C.CELL, A.V1G_LSB, 0): 0.0,
    }
    for b, n in layer.weighting_columns.items():  # analog slice read-out's network
        ev[EventKey(C.WEIGHTING, A.SLICE_COLUMN, b)] = float(m) * n_planes * layer.n_groups * n
        ev[EventKey(C.WEIGHTING, A.MIRROR_LSB, 0)] = 0.0
    lc = _consts(layer)
    if lc.x_sum_any:
        ev[EventKey(C.DIGITAL, A.CORRECTION_ADD, acc)] = float(m) * layer.n_outputs
    n_mul = lc.n_slice_multiplies
    if n_mul:  # a slice weight that is no power of two: a multiply before the shift-add's add
        ev[EventKey(C.DIGITAL, A.SLICE_MULTIPLY, acc)] = float(m) * n_planes * layer.n_groups \
            * n_mul
    ev.update(gain_events(layer, m))  # drift compensation (cimsim.arrays.drift)
    if chip.quant.act_format is ActFormat.BLOCK_FP:
        ev.update(block_fp_events(layer, m))
    return ev


def block_fp_events(layer: ProgrammedLayer, m: int) -> dict:
    """The pre-alignment and re-normalisation of block floating-point inputs for ``m``
    vectors (docs/hardware-model.md): per vector and row tile a max-exponent tree of
    ``rows - 1`` comparisons, per input element one alignment shift, per output and row tile
    one exponent add and one normalisation of the partial sum."""
    chip = layer.chip
    e_bits = chip.quant.act_exponent_bits
    n_tiles = len(layer.row_tiles)
    C, A = Component, Action
    return {
        EventKey(C.BLOCK_FP, A.EXPONENT_MAX, e_bits):
            float(m) * sum(b - a - 1 for a, b in layer.row_tiles),
        EventKey(C.BLOCK_FP, A.ALIGN_SHIFT, chip.input_bits): float(m) * layer.n_inputs,
        EventKey(C.BLOCK_FP, A.EXPONENT_ADD, e_bits): float(m) * layer.n_outputs * n_tiles,
        EventKey(C.BLOCK_FP, A.NORMALIZE, chip.accumulator_bits):
            float(m) * layer.n_outputs * n_tiles,
    }


def _kernel_args(layer: ProgrammedLayer, sig: np.ndarray, m_total: int):
    chip = layer.chip
    if layer.adc is None:
        raise ConfigError(
            "adc.range_policy = 'calibrated' needs calibration data: pass calibration=... "
            "(cimsim.matmul / cimsim.deploy) or use layer = cimsim.engine.calibrate(layer, x_cal)"
        )
    nz = chip.noise
    return dict(
        sig=sig, pos=layer.pos, neg=layer.neg, off_add=layer.off_add, out_col=layer.out_col,
        coef=layer.conv_coef, top_code=float(chip.adc.n_codes - 1),
        **nonlinearity_args(nz, layer.column_fs), thermal_sigma=nz.thermal_sigma_lsb,
        gain=chip.adc.gain_error,
        offset_lsb=chip.adc.offset_error_lsb, cmp_sigma=chip.adc.comparator_noise_lsb,
        m_total=m_total,
    )


def noise_sampler() -> str:
    """``CIMSIM_NOISE_SAMPLER``: ``gaussian`` (default) or ``exact``; else a ``ConfigError``."""
    sampler = os.environ.get(NOISE_SAMPLER_ENV, "gaussian")
    if sampler not in ("gaussian", "exact"):
        raise ConfigError(f"{NOISE_SAMPLER_ENV} = {sampler!r} is invalid; allowed: 'gaussian', "
                          "'exact'")
    return sampler


def engine_settings() -> dict[str, str]:
    """The process settings that change a noisy run's results, where not their defaults:
    the noise sampler (other draws) and a NumPy GEMM (another summation order, so other codes
    at a boundary). A sweep hashes them into its points' ids (a rerun under another sampler
    resumed the other's rows) and records them."""
    from .arrays._gemm import gemm_setting

    out = {}
    sampler = noise_sampler()
    if sampler != "gaussian":
        out["noise_sampler"] = sampler
    if gemm_setting() == "numpy":
        out["gemm"] = "numpy"
    return out


def exact_noise_steps(layer: ProgrammedLayer, group: int) -> np.ndarray:
    """(C,) noise of every conversion of row group ``group`` in ADC steps, where its code can be
    drawn exactly (``_rng.code_offset_slow``): thermal and comparator noise (together one Gaussian,
    ``sqrt((thermal·(1 + gain) / Δ)² + comparator²)`` steps), a linear ADC with its own clip
    bounds, no per-cell read noise (a per-output variance), at most :data:`EXACT_MAX_STEPS`.
    Elsewhere, and unless ``CIMSIM_NOISE_SAMPLER=exact`` (:data:`NOISE_SAMPLER_ENV`), (0,):
    the kernel adds a Gaussian and quantizes."""
    if noise_sampler() == "gaussian":
        return _NO_STEPS
    chip, tables = layer.chip, layer.adc
    th, cmp = chip.noise.thermal_sigma_lsb, chip.adc.comparator_noise_lsb
    if (tables is None or tables.thr is not None or tables.clip_lo is not None
            or layer.gemm_var is not None or (th == 0.0 and cmp == 0.0)):
        return _NO_STEPS
    steps = np.sqrt((th * (1.0 + chip.adc.gain_error) / tables.delta[group]) ** 2 + cmp**2)
    if not np.all(steps <= EXACT_MAX_STEPS):
        return _NO_STEPS
    return np.ascontiguousarray(steps, dtype=np.float64)


@dataclass(frozen=True)
class RunResult:
    """What one :func:`run_detailed` call computed and counted."""

    y: np.ndarray
    """(M, N) float64 integer-domain result."""
    events: Events
    """The call's events."""
    n_clipped: int
    """Conversions whose ADC input (noise, gain and offset error included) fell outside the
    ADC's range by more than half a step (:meth:`cimsim.adc.ADCTables.clip_bounds`)."""
    n_conversions: int
    """Conversions of the call (M · planes · row groups · conversion columns)."""


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
    res = run_detailed(layer, x_int, noise_seed=noise_seed, chunk_vectors=chunk_vectors,
                       gemm=gemm, kernel=kernel)
    return res.y, res.events


def run_detailed(
    layer: ProgrammedLayer,
    x_int: np.ndarray,
    *,
    noise_seed: int = 0,
    chunk_vectors: int | None = None,
    gemm: str = "auto",
    kernel: str = "numba",
) -> RunResult:
    """:func:`run`, also counting the conversions that clipped (same arguments): the
    fused kernel counts them as it converts, at no extra pass."""
    if gemm not in ("auto", "int8", "float32", "float64"):
        raise ValueError(f"gemm = {gemm!r}; allowed: 'auto', 'int8', 'float32', 'float64'")
    if kernel not in ("numba", "numpy"):
        raise ValueError(f"kernel = {kernel!r}; allowed: 'numba', 'numpy'")
    x = check_inputs(x_int, layer)
    m = x.shape[0]
    sig = _consts(layer).sig
    n_planes = sig.shape[0]
    args = _kernel_args(layer, sig, m)
    key_noise = np.uint64(stream_key(noise_seed, 1))
    key_cmp = np.uint64(stream_key(noise_seed, 2))
    y = np.zeros((m, layer.n_outputs), dtype=np.float64)
    ev = _static_events(layer, m, n_planes)
    tables = layer.adc
    assert tables is not None  # _kernel_args refused a layer without ADC settings
    clip_lo, clip_hi = tables.clip_bounds(layer.chip.adc.n_codes)
    clips = np.zeros(m, dtype=np.int64)  # per vector: no two threads add to one count
    steps = [exact_noise_steps(layer, g) for g in range(layer.n_groups)]
    for blk in _blocks(layer, x, chunk_vectors, gemm, ev, kernel):
        mc = blk.ps.shape[1]
        out = y[blk.m0:blk.m0 + mc]
        lo, delta = tables.lo[blk.group], tables.delta[blk.group]
        thr = tables.thr[blk.group] if tables.thr is not None else _NO_LEVELS
        lvl = tables.lvl[blk.group] if tables.lvl is not None else _NO_LEVELS
        bounds = dict(clip_lo=clip_lo[blk.group], clip_hi=clip_hi[blk.group],
                      clips=clips[blk.m0:blk.m0 + mc], noise_steps=steps[blk.group])
        if kernel == "numba":
            convert_accumulate(blk.ps, blk.xsum, blk.var, lo=lo, delta=delta,
                               key_noise=key_noise, key_cmp=key_cmp, group=blk.group,
                               m_offset=blk.m0, kn=KN, wn=WN, qz=QZ, thr=thr, lvl=lvl,
                               out=out, **bounds, **args)
        else:
            # the NumPy twin, for tests that hold the kernel to it (imported only then)
            from .arrays._reference import convert_accumulate_reference

            convert_accumulate_reference(blk.ps, blk.xsum, blk.var, lo=lo, delta=delta,
                                         key_noise=int(key_noise), key_cmp=int(key_cmp),
                                         group=blk.group, m_offset=blk.m0, thr=thr, lvl=lvl,
                                         out=out, **bounds, **args)
    if _consts(layer).x_sum_any:
        y += x.sum(axis=1, dtype=np.float64)[:, None] * layer.x_sum_coef[None, :]
    n_conv = m * n_planes * layer.n_groups * layer.n_conversions
    # the keys are registered EventKeys built above and the counts floats: not checked again
    return RunResult(y=y, events=Events._of_checked(ev), n_clipped=int(clips.sum()),
                     n_conversions=n_conv)


@dataclass(frozen=True)
class AnalogBlock:
    """Noise-free analog values of one row group for one chunk of input vectors."""

    m0: int
    """First vector of the chunk."""
    group: int
    """Row group g."""
    values: np.ndarray
    """(P, Mc, C) float64: what conversion c of group g sees for plane p and vector m0 + m
    (off-state current and column non-linearity included, noise excluded), cell-LSB."""


def analog_values(layer: ProgrammedLayer, x_int: np.ndarray, *,
                  chunk_vectors: int | None = None) -> Iterator[AnalogBlock]:
    """The noise-free analog value of every conversion for integer inputs ``x_int`` (M, K),
    by row group and chunk of vectors: what calibration fits the ADCs to.

    The inputs go through the engine's own plane and GEMM path; no events are counted.
    """
    x = check_inputs(x_int, layer)
    nl = nonlinearity_args(layer.chip.noise, layer.column_fs)
    for blk in _blocks(layer, x, chunk_vectors, "auto", None):
        if nl["nl_kind"] == NL_NONE:  # the common case in one compiled pass
            values = np.empty((*blk.ps.shape[:2], layer.pos.shape[0]))
            analog_linear(blk.ps, blk.xsum, layer.pos, layer.neg, layer.off_add, values)
        else:
            values = analog_from_partial_sums(blk.ps, blk.xsum, layer.pos, layer.neg,
                                              layer.off_add, **nl)
        yield AnalogBlock(blk.m0, blk.group, values)


def calibrate(
    layer: ProgrammedLayer,
    x_cal: np.ndarray,
    *,
    chunk_vectors: int | None = None,
    activation: FusedActivation | None = None,
) -> ProgrammedLayer:
    """``layer`` with calibrated ADC settings from calibration inputs ``x_cal`` (M, K).

    The analog values each conversion would see (:func:`analog_values`) are collected per
    (row group, conversion) and reduced as ``chip.adc.calibration_stat`` /
    ``calibration_granularity`` say (:func:`cimsim.adc.calibrated_tables`). A layer whose
    policy is not ``calibrated`` is returned as it is. With ``activation`` (a layer-output ADC,
    one conversion per output) the ADC is set up as the layer's activation quantizer instead
    (:mod:`cimsim.adc.activation`).
    """
    adc = layer.chip.adc
    if adc.range_policy is not RangePolicy.CALIBRATED:
        if activation is not None:
            raise ConfigError("a fused activation needs adc.range_policy = 'calibrated'")
        return layer
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
    stats = calibration_stats(layer, x, activation, chunk_vectors=chunk_vectors)
    return layer.with_adc(calibrated_tables(layer, stats, activation))


def calibration_stats(layer: ProgrammedLayer, x_int: np.ndarray,
                      activation: FusedActivation | None = None, *,
                      chunk_vectors: int | None = None) -> RangeStats:
    """The statistics :func:`calibrate` fits the ADCs to: the noise-free analog values of
    integer inputs ``x_int`` per (row group, conversion), samples kept where the fit needs
    them (also what the training twin refits a fused activation's levels on)."""
    n = np.shape(x_int)[0]
    # the mean/std sums added row by row within each input plane (n places each): the same
    # additions whatever the chunks
    stats = RangeStats(layer.n_groups, layer.n_conversions,
                       keep_samples=keeps_samples(layer, activation), n_vectors=n)
    for blk in analog_values(layer, x_int, chunk_vectors=chunk_vectors):
        p, mc, c = blk.values.shape
        # each row's place in the whole set, plane-major as one chunk adds them: which rows
        # the percentiles and level fits keep does not depend on where the chunks were cut
        index = (np.arange(p)[:, None] * n + blk.m0 + np.arange(mc)[None, :]).ravel()
        stats.add(blk.group, blk.values.reshape(-1, c), index)
    return stats

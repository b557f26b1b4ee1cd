"""One float weight matrix as the chip holds it: calibration statistics -> scales, integers,
programmed parts with their ADC tables (NumPy only).

``cimsim.deploy`` (``mapping.layers.MatmulCore``) and the training twin
(``cimsim.train.twin``) both start here, so a twin starts from exactly what deploy computes:

    stats = InputStats(seed); stats.observe(x) ...          # the calibration pass
    view = engine_view(w, chip, stats, seed=seed, row_tiles=tiles, name=name)
    x_int = view.quantize(x)
    y = Σ_t (engine.run(view.parts[t].layer, x_int[:, a_t:b_t]) − view.offsets[t])
            · s_x · s_w[t] + bias
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from .. import engine
from ..adc import FusedActivation
from ..arrays._rng import stream_key
from ..arrays.cache import program_seeded
from ..arrays.program import ProgrammedLayer, default_row_tiles, n_arrays_for_shape
from ..config import (
    ActFormat,
    ChipConfig,
    GroupPacking,
    WeightEncoding,
    WeightGranularity,
    WeightScale,
)
from ..errors import MappingError, SignedInputError
from .naming import exclude_name
from .quant import (
    act_scale,
    act_zero_point,
    block_fp_acts_counted,
    quantize_acts_counted,
    quantize_weights,
    smooth_factors,
    zero_point_offsets,
)

__all__ = ["EngineView", "InputStats", "MAX_CALIBRATION_ROWS", "calibrate_adcs", "coarse_inputs",
           "engine_view", "spread_rows",
           "group_max_abs", "group_name", "group_packs", "kernel_row_tiles", "pack_groups",
           "packed_groups", "program_parts", "shift_zero_point", "unpack_groups"]

#: Calibration vectors kept per weight matrix for ADC calibration and percentile/MSE scales.
MAX_CALIBRATION_ROWS = 4096


class InputStats:
    """Calibration statistics of one matrix's inputs: the exact max |x|, min and max (over the
    tensor and per input channel), and a uniform reservoir sample of at most
    :data:`MAX_CALIBRATION_ROWS` rows over all batches (Algorithm R, drawn from ``seed``:
    deterministic)."""

    def __init__(self, seed: int):
        self.max_abs = 0.0
        self.min_val = math.inf
        self.max_val = -math.inf
        self.chan_min: np.ndarray | None = None
        """(K,) min of each input channel (the smoothing factors and their ranges)."""
        self.chan_max: np.ndarray | None = None
        """(K,) max of each input channel."""
        self.n_seen = 0
        self.sample: np.ndarray | None = None
        """(<= MAX_CALIBRATION_ROWS, K) the reservoir."""
        self.pooled: np.ndarray | None = None
        """Samples of every matrix reading the same tensor (:meth:`share`), else None."""
        self._rng = np.random.default_rng(stream_key(seed, 7))

    @property
    def all_zero(self) -> bool:
        """Inputs were recorded and every one was 0: no scale or range follows from them."""
        return self.n_seen > 0 and self.max_abs == 0.0

    def observe(self, x: np.ndarray, name: str | None = None) -> None:
        """Record calibration inputs (M, K) of the matrix ``name`` (named by the error on
        inputs that are NaN or infinite)."""
        if x.size == 0:
            return
        x = np.asarray(x, dtype=np.float64)
        if not np.isfinite(x).all():
            # else NaN compares false: max_abs kept its finite value, the reservoir the NaN, and
            # programming failed on "inputs to the arrays are NaN", naming no layer
            nan = int(np.count_nonzero(np.isnan(x)))
            who = f"layer {name!r}" if name else "a mapped matrix"
            raise MappingError(
                f"{who}: a calibration batch's inputs to it hold {nan} NaN and "
                f"{np.count_nonzero(~np.isfinite(x)) - nan} infinite values (of {x.size}); "
                "allowed: finite values (check the calibration data, torch.isfinite(x).all(), "
                "and the layers before this one)")
        self.max_abs = max(self.max_abs, float(np.abs(x).max()))
        self.min_val = min(self.min_val, float(x.min()))
        self.max_val = max(self.max_val, float(x.max()))
        lo, hi = x.min(axis=0), x.max(axis=0)
        self.chan_min = lo if self.chan_min is None else np.minimum(self.chan_min, lo)
        self.chan_max = hi if self.chan_max is None else np.maximum(self.chan_max, hi)
        cap = MAX_CALIBRATION_ROWS
        if self.sample is None:
            self.sample = np.empty((0, x.shape[1]))
        fill = min(cap - self.sample.shape[0], x.shape[0])
        if fill > 0:
            self.sample = np.concatenate([self.sample, x[:fill]])
        rest = x[fill:]
        if rest.shape[0]:
            # Algorithm R: row number j (1-based) replaces a random slot with probability cap/j;
            # NumPy's fancy assignment keeps the last of repeated slots, as sequential R would
            j = self.n_seen + fill + 1 + np.arange(rest.shape[0])
            slot = (self._rng.random(rest.shape[0]) * j).astype(np.int64)
            keep = slot < cap
            self.sample[slot[keep]] = rest[keep]
        self.n_seen += x.shape[0]

    @staticmethod
    def share(stats: list[InputStats]) -> None:
        """Matrices that read one input tensor (the groups of a conv) get one activation
        scale: per-tensor quantization, as the hardware applies one input quantizer."""
        if len(stats) < 2:
            return
        max_abs = max(s.max_abs for s in stats)
        min_val = min(s.min_val for s in stats)
        max_val = max(s.max_val for s in stats)
        pooled = np.concatenate([s.sample.ravel() for s in stats if s.sample is not None])
        for s in stats:
            s.max_abs, s.min_val, s.max_val, s.pooled = max_abs, min_val, max_val, pooled


@dataclass(frozen=True, eq=False)
class EngineView:
    """One weight matrix as the engine runs it: integers, scales, programmed parts.

    ``y = Σ_t (engine.run(parts[t].layer, x_int[:, a_t:b_t]) − offsets[t]) · s_x · s_w[t]
    + bias`` with ``x_int = quantize(x)`` =
    ``quantize_acts(x / smooth, s_x, input_bits, input_signed, zero_point)``.

    Block floating-point inputs (``quant.act_format = 'block_fp'``): every row tile is a part,
    ``x_int, X = encode(x)`` (:func:`~cimsim.mapping.quant.block_fp_acts`) and part t's term is
    scaled by ``2^X[:, t]`` per vector instead of ``s_x``.
    """

    chip: ChipConfig
    w_int: np.ndarray
    """(N, K) int64 quantized weights."""
    s_w: np.ndarray
    """(T, N) float64 weight scales; T = number of parts (row tiles of a ``column``
    granularity layer), else 1."""
    s_x: float
    """Per-tensor activation scale (1.0 with block floating-point inputs, whose scales are
    per vector and part: :meth:`encode`)."""
    input_signed: bool
    row_tiles: tuple[tuple[int, int], ...]
    parts: tuple[tuple[int, int, ProgrammedLayer], ...]
    """(first row, stop row, programmed layer with its ADC tables) of each part."""
    seed: int
    """Programming seed (``numpy.random.default_rng(seed)``, as deploy draws it)."""
    activation: FusedActivation | None = None
    """The activation the layer-output ADC produces, if fused (``cimsim.adc.activation``)."""
    zero_point: int = 0
    """Code of x = 0: positive with ``quant.act_zero_point`` (the inputs are then unsigned),
    ``-2^(B_x-1)`` with the A-shift (``dac.shift_unsigned_inputs``; the inputs are then
    signed), 0 otherwise."""
    smooth: np.ndarray | None = None
    """(K,) per-input-channel smoothing factors (``quant.smooth_alpha``): the inputs are divided
    by them before quantization, ``w_int`` holds ``w · smooth``; None without smoothing."""

    @property
    def offsets(self) -> np.ndarray:
        """(T, N) float64 ``zero_point · Σ_{k in part t} w_int[n, k]``, subtracted from part t's
        integer outputs (the exact zero-point correction; zeros without a zero point)."""
        return zero_point_offsets(self.w_int, self.zero_point,
                                  [(a, b) for a, b, _ in self.parts])

    @property
    def block_fp(self) -> bool:
        """Whether the inputs are block floating point (a scale per vector and part)."""
        return self.chip.quant.act_format is ActFormat.BLOCK_FP

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float inputs (M, K) -> the integer inputs (M, K) int64 the arrays are driven with."""
        return self.encode(x)[0]

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Float inputs (M, K) -> the integer inputs (M, K) int64 and, for block
        floating-point inputs, the (M, T) int64 exponents X of every (vector, part): part t
        of vector i is dequantized by ``2^X[i, t]`` (None for ``int`` inputs: ``s_x``)."""
        x_int, x_exp, _ = self.encode_counted(x)
        return x_int, x_exp

    def encode_counted(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, int]:
        """:meth:`encode`, and how many of the inputs the input quantizer saturated (whose
        code lay outside the input range: inputs larger than the calibration's, or negative
        ones to unsigned inputs)."""
        x = np.asarray(x, dtype=np.float64)
        if not np.isfinite(x).all():  # else NaN casts to int64's minimum, reported as a range
            raise ValueError(f"{np.count_nonzero(~np.isfinite(x))} of {x.size} inputs to the "
                             "arrays are NaN or infinite; allowed: finite values (check the "
                             "model's input and the layers before this one)")
        if self.smooth is not None:
            x = x / self.smooth
        if self.block_fp:
            return block_fp_acts_counted(x, self.chip.input_bits, self.input_signed,
                                         self.chip.quant.act_exponent_bits,
                                         [(a, b) for a, b, _ in self.parts])
        x_int, n = quantize_acts_counted(x, self.s_x, self.chip.input_bits, self.input_signed,
                                         self.zero_point)
        return x_int, None, n

    @property
    def layers(self) -> tuple[ProgrammedLayer, ...]:
        """The programmed layer of every part."""
        return tuple(layer for _, _, layer in self.parts)


#: A matrix's calibration inputs are coarse (:func:`coarse_inputs`) when half its nonzero input
#: vectors lie within this fraction of the input quantizer's range of the zero code: 5 bits of
#: its resolution unused (of 8, 3 left; with 4 input bits, the vector quantizes to 0).
COARSE_INPUT_SHARE = 1 / 32


def spread_rows(n: int, k: int) -> np.ndarray:
    """At most ``k`` row indices spread evenly over ``n`` rows (first and last included): a
    sample's first rows are its first batch's, in the order recorded."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).astype(np.int64))


def coarse_inputs(view: EngineView, stats: InputStats, rows: int = 256) -> bool:
    """Whether half the nonzero calibration input vectors (``rows`` sample rows,
    :func:`spread_rows`) lie within :data:`COARSE_INPUT_SHARE` of the input range of the zero
    code, their largest |x| included: an input step set by a max |x| far above the vectors'
    typical size (an outlier in the calibration data), so their signal takes a few input codes
    and the chip's noise, scaled by that step, can exceed it, by a factor growing with the
    outlier. Per vector, not per value: the many near-zero values of sparse features (a
    distance's radial basis expansion) carry little of a product. Not for block
    floating-point inputs (a scale per vector), below 4 input bits (their codes are few by
    design), nor for the matrices of a grouped layer, which share one input step
    (:meth:`InputStats.share`: a depthwise group's channel may be small next to the layer's
    largest, as per-tensor quantization has it)."""
    bits, sample = view.chip.input_bits, stats.sample
    if (sample is None or not len(sample) or view.block_fp or bits < 4
            or stats.pooled is not None):
        return False
    x = np.abs(sample[spread_rows(len(sample), rows)])
    if view.smooth is not None:
        x = x / view.smooth
    peak = x.max(axis=1)
    peak = peak[peak > 0]
    if not peak.size:
        return False
    codes = 2 ** (bits - 1) - 1 if view.input_signed and not view.zero_point else 2**bits - 1
    return bool(np.median(peak) / view.s_x < COARSE_INPUT_SHARE * codes)


def shift_zero_point(input_bits: int) -> int:
    """The zero point of A-shifted inputs (``dac.shift_unsigned_inputs``): ``-2^(B_x-1)``, so
    that the unsigned codes [0, 2^B_x - 1] drive as [-2^(B_x-1), 2^(B_x-1) - 1]; the exact
    correction ``-zero_point · Σ_k w_int`` is :attr:`EngineView.offsets` subtracted."""
    return -(2 ** (input_bits - 1))


def group_max_abs(mats: np.ndarray, groups: int) -> float | None:
    """``engine_view``'s ``layer_max_abs`` for each group of a layer whose stacked group
    matrices are ``mats``: its largest |w| when grouped (a group pruned whole then takes the
    layer's scale, as a pruned channel takes its tensor's), None for one group."""
    return float(np.abs(np.asarray(mats, dtype=np.float64)).max(initial=0.0)) \
        if groups > 1 else None


_Mats = TypeVar("_Mats", np.ndarray, torch.Tensor)


def group_packs(k_g: int, n_g: int, groups: int, kernel: tuple[int, ...] | None,
                chip: ChipConfig, name: str) -> int:
    """Groups per matrix of a grouped layer (``array.group_packing``): 1 with ``none``;
    with ``diagonal`` the largest divisor P of ``groups`` whose block-diagonal pack (P·k_g
    rows, P·n_g outputs) takes no more arrays than one group's matrix, so that packing never
    costs arrays (a divisor: every pack the same shape, the layer ``groups / P`` equal
    matrices). ``kernel``: the conv's kernel when its tiles preserve kernels."""
    if groups == 1 or chip.array.group_packing is GroupPacking.NONE:
        return 1

    def arrays(p: int) -> int:
        tiles = ((kernel_row_tiles(kernel, p * k_g, chip, name) if kernel else None)
                 or default_row_tiles(p * k_g, chip.array.n_rows))
        return n_arrays_for_shape(p * n_g, tiles, chip)

    one = arrays(1)
    return max(p for p in range(1, groups + 1) if groups % p == 0 and arrays(p) <= one)


def packed_groups(w2: _Mats, groups: int, kernel: tuple[int, ...] | None, chip: ChipConfig,
                  name: str) -> tuple[int, _Mats, list[tuple[int, int]] | None]:
    """A grouped layer's matrices as deploy and the twin map them: groups per matrix
    (:func:`group_packs`), the stacked group matrices ``w2`` (groups·N, K) packed so
    (:func:`pack_groups`), and a pack's kernel-preserving row tiles (None: the default)."""
    per = group_packs(w2.shape[1], w2.shape[0] // groups, groups, kernel, chip, name)
    tiles = kernel_row_tiles(kernel, per * w2.shape[1], chip, name) if kernel else None
    return per, pack_groups(w2, groups, per), tiles


def pack_groups(mats: _Mats, groups: int, per: int) -> _Mats:
    """Stacked group matrices (groups·N, K) as stacked block-diagonal packs of ``per``
    groups, (groups/per · per·N, per·K): pack j holds groups j·per ... j·per + per - 1 on its
    diagonal (their inputs side by side, as a conv's columns hold them), zeros elsewhere.
    NumPy arrays or torch tensors (gradient kept)."""
    if per == 1:
        return mats
    n_g, k = mats.shape[0] // groups, mats.shape[1]
    blocks: Any = mats.reshape(groups // per, per, n_g, k)
    eye: Any = (np.eye(per, dtype=mats.dtype) if isinstance(mats, np.ndarray)
                else torch.eye(per, dtype=mats.dtype, device=mats.device))
    # packed[j, a, n, b, k] = eye[a, b] · blocks[j, a, n, k]
    packed = blocks[:, :, :, None, :] * eye[None, :, None, :, None]
    return packed.reshape(groups // per * per * n_g, per * k)


def unpack_groups(packed: _Mats, groups: int, per: int) -> _Mats:
    """The stacked group matrices (groups·N, K) on the diagonals of :func:`pack_groups`'s
    packs (what lies off them is not read)."""
    if per == 1:
        return packed
    n_packs = groups // per
    n_g, k = packed.shape[0] // groups, packed.shape[1] // per
    blocks: Any = packed.reshape(n_packs, per, n_g, per, k)
    if isinstance(packed, np.ndarray):
        diag = blocks[:, np.arange(per), :, np.arange(per), :]  # advanced indices lead
        return diag.transpose(1, 0, 2, 3).reshape(groups * n_g, k)
    idx = torch.arange(per, device=packed.device)
    return blocks[:, idx, :, idx, :].permute(1, 0, 2, 3).reshape(groups * n_g, k)


def group_name(name: str, j: int, n_matrices: int, per: int) -> str:
    """Matrix ``j`` of a grouped layer: ``NAME[gJ]`` one group each, ``NAME[gA-B]`` a pack of
    groups A..B, ``NAME`` for one matrix of one group."""
    if per > 1:
        return f"{name}[g{j * per}-{j * per + per - 1}]"
    return name + (f"[g{j}]" if n_matrices > 1 else "")


def kernel_row_tiles(kernel: tuple[int, ...], k: int, chip: ChipConfig,
                     name: str) -> list[tuple[int, int]] | None:
    """Kernel-preserving row tiles of a conv matrix with K = C_in/groups · prod(kernel) rows
    (whole kernels per tile), or None when ``array.kernel_preserving_tiling`` is off."""
    if not chip.array.kernel_preserving_tiling:
        return None
    size = math.prod(kernel)
    per_tile = chip.array.n_rows // size
    if per_tile == 0:
        raise MappingError(
            f"layer {name!r}: a {'x'.join(map(str, kernel))} kernel ({size} rows) does not fit "
            f"in array.n_rows = {chip.array.n_rows} with kernel_preserving_tiling = true"
        )
    step = per_tile * size
    return [(s, min(s + step, k)) for s in range(0, k, step)]


def program_parts(w_int: np.ndarray, chip: ChipConfig, seed: int, signed: bool,
                  row_tiles: list[tuple[int, int]], name: str
                  ) -> list[tuple[int, int, ProgrammedLayer]]:
    """Program one layer, or one per row tile when each row tile has its own weight scales
    (``column`` granularity: its partial output is dequantized with them) or its own input
    exponents (``quant.act_format = 'block_fp'``), all drawn from one
    generator seeded with ``seed`` (or taken from the programming cache,
    :mod:`cimsim.arrays.cache`)."""
    # cimsim.arrays.cache: the drawn cells are reused when only the ADC or noise changed
    parts: list[tuple[int, int, list[tuple[int, int]] | None]]
    per_tile = (chip.quant.weight_granularity is WeightGranularity.COLUMN
                or chip.quant.act_format is ActFormat.BLOCK_FP)
    if per_tile and len(row_tiles) > 1:
        parts, names = [(a, b, None) for a, b in row_tiles], [f"{name}[{a}:{b}]"
                                                                for a, b in row_tiles]
    else:
        parts, names = [(0, w_int.shape[1], row_tiles)], [name]
    layers = program_seeded(w_int, chip, seed, input_signed=signed, parts=parts, names=names)
    return [(a, b, layer) for (a, b, _), layer in zip(parts, layers, strict=True)]


# a matrix of zeros has no scale of its own (max|w| / q = 0): it is quantized at 1.0, exactly 0
# codes, but its cells still read (programming variation, off current, noise) and that error is
# dequantized at 1.0, where the layer's true output is its bias alone
ZERO_WEIGHTS = ("{who}: its weights are all zero (zero-initialised, or pruned whole), "
                "so it has no weight scale and is quantized at 1.0: exact on a lossless chip, "
                "but its cells' read error (variation, off current, noise) is dequantized at "
                "that scale where its output should be its bias alone; exclude it "
                "(exclude=[...]) to keep it digital, or map it once trained (cimsim.train."
                "prepare starts its learned step at torch's default initial range, "
                "+-1/sqrt(fan_in), so that the weights it learns take codes)")


def engine_view(
    w: np.ndarray, chip: ChipConfig, calibration: np.ndarray | InputStats, *, seed: int = 0,
    row_tiles: list[tuple[int, int]] | None = None, name: str = "",
    activation: Callable[[EngineView], FusedActivation | None] | None = None,
    layer_max_abs: float | None = None,
) -> EngineView:
    """Quantize, program (variation drawn from ``seed``) and calibrate float weights ``w``
    (N, K), as ``cimsim.deploy`` does.

    ``calibration``: float inputs (M, K), or statistics already collected. ``activation``
    decides, from the programmed but not yet calibrated view, whether the layer-output ADC
    produces the layer's activation (``None``: it does not). ``layer_max_abs``: the largest
    |w| of the layer when ``w`` is one group of it (:func:`group_max_abs`), the scale an
    all-zero group falls back to (``quantize_weights``).
    """
    w = np.asarray(w, dtype=np.float64)
    if not np.isfinite(w).all():  # else NaN casts to int64's minimum, reported as a range
        nan = int(np.isnan(w).sum())
        inf = np.count_nonzero(~np.isfinite(w)) - nan
        raise MappingError(  # "NAME: ...", as named_layer prefixes the errors it passes
            f"{name or 'a weight matrix'}: its weights hold {nan} NaN and {inf} "
            f"infinite values (of {w.size}); allowed: finite values (a diverged training run "
            "or a damaged checkpoint: check torch.isfinite(p).all() for its parameters)")
    binary = chip.weight_encoding is WeightEncoding.BINARY  # (1-b weights, by the config)
    # binary: scale mean|w| = 0, exact; a zero group of a layer that has weights: its scale
    if w.size and not w.any() and not binary and not layer_max_abs:
        who = f"layer {name!r}" if name else "a weight matrix"
        warnings.warn(ZERO_WEIGHTS.format(who=who), UserWarning, stacklevel=2)
    tiles = list(row_tiles) if row_tiles else default_row_tiles(w.shape[1], chip.array.n_rows)
    if isinstance(calibration, InputStats):
        stats = calibration
    else:
        stats = InputStats(seed)
        stats.observe(np.asarray(calibration, dtype=np.float64).reshape(-1, w.shape[1]),
                      name or None)  # a NaN refusal names the layer, as deploy's does
    if stats.n_seen == 0 or stats.sample is None:
        raise MappingError(
            f"layer {name!r} saw no calibration data: it was never reached by the calibration "
            "forward pass (pass calibration inputs that exercise it, or exclude it)")
    quant = chip.quant
    smooth = None
    lo, hi, max_abs = stats.min_val, stats.max_val, stats.max_abs
    values = stats.sample if stats.pooled is None else stats.pooled
    if quant.smooth_alpha is not None:
        assert stats.chan_min is not None and stats.chan_max is not None
        smooth = smooth_factors(np.maximum(-stats.chan_min, stats.chan_max), w,
                                quant.smooth_alpha)
        w = w * smooth  # the product x/s · (w·s)ᵀ is the float product
        if layer_max_abs and w.any():
            # the layer's raw max|w| does not bound w·s (s from this matrix's own inputs: a
            # group's smoothed weights saturated at it, a depthwise conv's output halved): the
            # matrix takes its own scale, as its inputs take their own range below; a group
            # pruned whole still falls back to the layer's
            layer_max_abs = float(np.abs(w).max())
        # the quantizer sees x / s: its range follows channel by channel (s > 0). A matrix
        # keeps its own statistics here (not those pooled over the groups of a conv): its
        # inputs are scaled per channel anyway
        lo = float((stats.chan_min / smooth).min())
        hi = float((stats.chan_max / smooth).max())
        max_abs = max(-lo, hi)
        values = stats.sample / smooth
    zero_point = 0
    if quant.act_format is ActFormat.BLOCK_FP:
        # no calibrated scale: each (vector, row tile) block takes its own power of two
        signed, s_x = bool(lo < 0), 1.0
        if signed and chip.input_bits < 2:
            _refuse_signed(name, chip.input_bits, lo)
    elif quant.act_zero_point:
        signed = False
        s_x, zero_point = act_zero_point(lo, hi, values, chip.input_bits, quant)
    else:
        signed = bool(lo < 0)
        if signed and chip.input_bits < 2:  # name the layer: a model has many
            _refuse_signed(name, chip.input_bits, lo)
        s_x = float(act_scale(max_abs, values, chip.input_bits, signed, quant))
        if not signed and chip.dac.shift_unsigned_inputs:
            # A-shift: the unsigned codes (scale as above) drive the arrays shifted to signed
            signed, zero_point = True, shift_zero_point(chip.input_bits)
    # one ternary digit quantizes to {-1, 0, +1}, the levels of a 2-b symmetric weight (the
    # 1-b path is binary's sign · mean|w|, which has no 0)
    one_digit = chip.weight_bits == 1 and chip.weight_encoding is WeightEncoding.TERNARY
    w_int, s_w = quantize_weights(w, 2 if one_digit else chip.weight_bits,
                                  quant.weight_granularity, tiles, layer_max_abs,
                                  pow2=quant.weight_scale is WeightScale.POW2)
    view = EngineView(chip=chip, w_int=w_int, s_w=s_w, s_x=s_x, input_signed=signed,
                      row_tiles=tuple(tiles),
                      parts=tuple(program_parts(w_int, chip, seed, signed, tiles, name)),
                      seed=seed, zero_point=zero_point, smooth=smooth)
    act = None if activation is None else activation(view)
    return calibrate_adcs(view, stats.sample, act)


def _refuse_signed(name: str, input_bits: int, lo: float) -> None:
    raise SignedInputError(
        f"layer {name!r}: input_bits = {input_bits} cannot hold signed activations (its "
        f"calibration inputs reach {lo:.3g}); use input_bits >= 2, feed it a non-negative "
        f"input (after a ReLU), or keep it digital with exclude=[{exclude_name(name)!r}]",
        {exclude_name(name): lo}, input_bits)


def calibrate_adcs(view: EngineView, x: np.ndarray,
                   activation: FusedActivation | None = None) -> EngineView:
    """``view`` with the ADCs of its parts calibrated on float inputs ``x`` (M, K), quantized
    by the view's own quantizer; scales, integers and programmed cells stay as they are.

    ``deploy`` calls it once on the float calibration inputs and, with
    ``adc.calibration_mode = 'simulated'``, again on the inputs the layer sees in simulation.
    ``activation``: the fused activation the ADC produces, or None.
    """
    x_cal = view.quantize(x)
    parts = tuple((a, b, engine.calibrate(layer, x_cal[:, a:b], activation=activation))
                  for a, b, layer in view.parts)
    return dataclasses.replace(view, parts=parts, activation=activation)

"""One float weight matrix as the chip holds it: calibration statistics -> scales, integers,
programmed parts with their ADC tables (NumPy only).

``cimsim.deploy`` (``mapping.layers.MatmulCore``) and the training twin
(``cimsim.train.twin``) both start here, so a twin starts from exactly what deploy computes:

    stats = InputStats(seed); stats.observe(x) ...          # the calibration pass
    view = engine_view(w, chip, stats, seed=seed, row_tiles=tiles, name=name)
    y = Σ_t engine.run(view.parts[t].layer, x_int[:, a_t:b_t]) · s_x · s_w[t] + bias
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import engine
from ..adc import FusedActivation
from ..arrays._rng import stream_key
from ..arrays.program import ProgrammedLayer, default_row_tiles, program
from ..config import ChipConfig, WeightGranularity
from ..errors import MappingError
from .quant import act_scale, quantize_acts, quantize_weights

__all__ = ["EngineView", "InputStats", "MAX_CALIBRATION_ROWS", "engine_view",
           "kernel_row_tiles", "program_parts"]

#: Calibration vectors kept per weight matrix for ADC calibration and percentile/MSE scales.
MAX_CALIBRATION_ROWS = 4096


class InputStats:
    """Calibration statistics of one matrix's inputs: the exact max |x| and min, and a uniform
    reservoir sample of at most :data:`MAX_CALIBRATION_ROWS` rows over all batches (Algorithm
    R, drawn from ``seed``: deterministic)."""

    def __init__(self, seed: int):
        self.max_abs = 0.0
        self.min_val = math.inf
        self.n_seen = 0
        self.sample: np.ndarray | None = None
        """(<= MAX_CALIBRATION_ROWS, K) the reservoir."""
        self.pooled: np.ndarray | None = None
        """Samples of every matrix reading the same tensor (:meth:`share`), else None."""
        self._rng = np.random.default_rng(stream_key(seed, 7))

    def observe(self, x: np.ndarray) -> None:
        """Record calibration inputs (M, K)."""
        if x.size == 0:
            return
        x = np.asarray(x, dtype=np.float64)
        self.max_abs = max(self.max_abs, float(np.abs(x).max()))
        self.min_val = min(self.min_val, float(x.min()))
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
        pooled = np.concatenate([s.sample.ravel() for s in stats if s.sample is not None])
        for s in stats:
            s.max_abs, s.min_val, s.pooled = max_abs, min_val, pooled


@dataclass(frozen=True, eq=False)
class EngineView:
    """One weight matrix as the engine runs it: integers, scales, programmed parts.

    ``y = Σ_t engine.run(parts[t].layer, x_int[:, a_t:b_t]) · s_x · s_w[t] + bias`` with
    ``x_int = quantize_acts(x, s_x, input_bits, input_signed)``.
    """

    chip: ChipConfig
    w_int: np.ndarray
    """(N, K) int64 quantized weights."""
    s_w: np.ndarray
    """(T, N) float64 weight scales; T = number of parts (row tiles of a ``column``
    granularity layer), else 1."""
    s_x: float
    """Per-tensor activation scale."""
    input_signed: bool
    row_tiles: tuple[tuple[int, int], ...]
    parts: tuple[tuple[int, int, ProgrammedLayer], ...]
    """(first row, stop row, programmed layer with its ADC tables) of each part."""
    seed: int
    """Programming seed (``numpy.random.default_rng(seed)``, as deploy draws it)."""
    activation: FusedActivation | None = None
    """The activation the layer-output ADC produces, if fused (``cimsim.adc.activation``)."""

    @property
    def layers(self) -> tuple[ProgrammedLayer, ...]:
        """The programmed layer of every part."""
        return tuple(layer for _, _, layer in self.parts)


def kernel_row_tiles(kernel: tuple[int, int], k: int, chip: ChipConfig,
                     name: str) -> list[tuple[int, int]] | None:
    """Kernel-preserving row tiles of a conv matrix with K = C_in/groups · kh · kw rows (whole
    kernels per tile), or None when ``array.kernel_preserving_tiling`` is off."""
    if not chip.array.kernel_preserving_tiling:
        return None
    kh, kw = kernel
    per_tile = chip.array.n_rows // (kh * kw)
    if per_tile == 0:
        raise MappingError(
            f"layer {name!r}: a {kh}x{kw} kernel ({kh * kw} rows) does not fit in "
            f"array.n_rows = {chip.array.n_rows} with kernel_preserving_tiling = true"
        )
    step = per_tile * kh * kw
    return [(s, min(s + step, k)) for s in range(0, k, step)]


def program_parts(w_int: np.ndarray, chip: ChipConfig, seed: int, signed: bool,
                  row_tiles: list[tuple[int, int]], name: str
                  ) -> list[tuple[int, int, ProgrammedLayer]]:
    """Program one layer, or one per row tile when each row tile has its own weight scales
    (``column`` granularity: its partial output is dequantized with them), all drawn from one
    generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    if chip.quant.weight_granularity is WeightGranularity.COLUMN and len(row_tiles) > 1:
        return [(a, b, program(w_int[:, a:b], chip, rng, input_signed=signed,
                               name=f"{name}[{a}:{b}]")) for a, b in row_tiles]
    return [(0, w_int.shape[1], program(w_int, chip, rng, input_signed=signed,
                                        row_tiles=row_tiles, name=name))]


def engine_view(
    w: np.ndarray, chip: ChipConfig, calibration: np.ndarray | InputStats, *, seed: int = 0,
    row_tiles: list[tuple[int, int]] | None = None, name: str = "",
    activation: Callable[[EngineView], FusedActivation | None] | None = None,
) -> EngineView:
    """Quantize, program (variation drawn from ``seed``) and calibrate float weights ``w``
    (N, K), as ``cimsim.deploy`` does.

    ``calibration``: float inputs (M, K), or statistics already collected. ``activation``
    decides, from the programmed but not yet calibrated view, whether the layer-output ADC
    produces the layer's activation (``None``: it does not).
    """
    w = np.asarray(w, dtype=np.float64)
    tiles = list(row_tiles) if row_tiles else default_row_tiles(w.shape[1], chip.array.n_rows)
    if isinstance(calibration, InputStats):
        stats = calibration
    else:
        stats = InputStats(seed)
        stats.observe(np.asarray(calibration, dtype=np.float64).reshape(-1, w.shape[1]))
    if stats.n_seen == 0 or stats.sample is None:
        raise MappingError(
            f"layer {name!r} saw no calibration data: it was never reached by the calibration "
            "forward pass (pass calibration inputs that exercise it, or exclude it)")
    signed = bool(stats.min_val < 0)
    values = stats.sample if stats.pooled is None else stats.pooled
    s_x = float(act_scale(stats.max_abs, values, chip.input_bits, signed, chip.quant))
    w_int, s_w = quantize_weights(w, chip.weight_bits, chip.quant.weight_granularity, tiles)
    view = EngineView(chip=chip, w_int=w_int, s_w=s_w, s_x=s_x, input_signed=signed,
                      row_tiles=tuple(tiles),
                      parts=tuple(program_parts(w_int, chip, seed, signed, tiles, name)),
                      seed=seed)
    act = None if activation is None else activation(view)
    x_cal = quantize_acts(stats.sample, s_x, chip.input_bits, signed)
    parts = tuple((a, b, engine.calibrate(layer, x_cal[:, a:b], activation=act))
                  for a, b, layer in view.parts)
    return EngineView(chip=chip, w_int=w_int, s_w=s_w, s_x=s_x, input_signed=signed,
                      row_tiles=view.row_tiles, parts=parts, seed=seed, activation=act)

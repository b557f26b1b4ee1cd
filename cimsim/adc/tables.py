"""The ADC of a programmed layer as a value: :class:`ADCTables`, and which conversions share it.

Every (row group g, conversion c) of a programmed layer has its own ADC setting: a linear grid
(start ``lo[g, c]``, step ``delta[g, c]``) or, for a nonlinear ramp ADC and an ADC fused with
the layer's activation, sorted thresholds ``thr[g, c]`` and levels ``lvl[g, c]``. The setting is
computed once by :mod:`cimsim.adc` (no data for ``full_scale``/``fixed``; calibration inputs
otherwise) and carried by the programmed layer as this frozen value; the engine only reads it.

Which (g, c) share one setting is the calibration granularity (:class:`CalibrationUnits`):
one per layer, one per physical array (the row groups of a row tile x the conversions of a
column tile), or one per conversion column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..config import CalibrationGranularity

if TYPE_CHECKING:  # adc reads a programmed layer's geometry; arrays imports adc at run time
    from ..arrays.program import ProgrammedLayer

__all__ = ["ADCTables", "CalibrationUnits", "calibration_units"]


@dataclass(frozen=True, eq=False)
class ADCTables:
    """ADC settings of every (row group, conversion) of one programmed layer.

    Shapes: G row groups, C conversions, L = 2^bits codes.
    """

    lo: np.ndarray
    """(G, C) float64 start of the linear grid (analog units, cell-LSB); a nonlinear ADC's
    first level."""
    delta: np.ndarray
    """(G, C) float64 step of the linear grid; for a nonlinear ADC the mean level spacing (the
    unit of its offset error and comparator noise)."""
    thr: np.ndarray | None = None
    """(G, C, L-1) float64 sorted thresholds (code = #thresholds <= a), or None (linear)."""
    lvl: np.ndarray | None = None
    """(G, C, L) float64 reconstruction levels, or None (linear)."""
    clip_lo: np.ndarray | None = None
    """(G, C) float64 analog value below which a conversion counts as clipped, when the tables
    are not in the analog domain (a fused activation); None: derived (:meth:`clip_bounds`)."""
    clip_hi: np.ndarray | None = None
    """(G, C) float64 analog value above which a conversion counts as clipped; see ``clip_lo``."""

    def __post_init__(self) -> None:
        shape = np.shape(self.lo)
        if len(shape) != 2 or np.shape(self.delta) != shape:
            raise ValueError(f"ADCTables: lo and delta must both be (G, C); got {np.shape(self.lo)}"
                             f" and {np.shape(self.delta)}")
        if (self.thr is None) != (self.lvl is None):
            raise ValueError("ADCTables: thr and lvl come together (nonlinear) or not at all")
        if self.thr is not None and self.lvl is not None:
            n_levels = self.lvl.shape[-1]
            if self.lvl.shape[:2] != shape or self.thr.shape != (*shape, n_levels - 1):
                raise ValueError(f"ADCTables: thr {self.thr.shape} and lvl {self.lvl.shape} do "
                                 f"not fit (G, C) = {shape}")
        bounds = [b for b in (self.clip_lo, self.clip_hi) if b is not None]
        if len(bounds) == 1 or any(np.shape(b) != shape for b in bounds):
            raise ValueError("ADCTables: clip_lo and clip_hi come together, each (G, C)")

    @classmethod
    def linear(cls, lo: np.ndarray, delta: np.ndarray) -> ADCTables:
        """A linear ADC with grid start ``lo`` and step ``delta``, each (G, C)."""
        return cls(lo=np.asarray(lo, dtype=np.float64), delta=np.asarray(delta, dtype=np.float64))

    @classmethod
    def from_levels(cls, thr: np.ndarray, lvl: np.ndarray, *, clip_lo: np.ndarray | None = None,
                    clip_hi: np.ndarray | None = None) -> ADCTables:
        """A threshold ADC (G, C, L-1) / (G, C, L); its LSB is the mean level spacing.
        ``clip_lo``/``clip_hi``: analog clipping bounds (G, C) where the levels are not
        analog values (a fused activation)."""
        lvl = np.asarray(lvl, dtype=np.float64)
        span = (lvl[..., -1] - lvl[..., 0]) / (lvl.shape[-1] - 1)
        return cls(lo=lvl[..., 0].copy(), delta=np.where(span > 0, span, 1.0),
                   thr=np.asarray(thr, dtype=np.float64), lvl=lvl,
                   clip_lo=None if clip_lo is None else np.asarray(clip_lo, dtype=np.float64),
                   clip_hi=None if clip_hi is None else np.asarray(clip_hi, dtype=np.float64))

    @property
    def fused(self) -> bool:
        """Whether the tables are a fused activation's (``cimsim.adc.activation``): levels in
        the output domain and their own clipping bounds."""
        return self.clip_lo is not None

    def scaled(self, factor: np.ndarray) -> ADCTables:
        """The tables with every analog value (grid, step, thresholds, levels, bounds) of
        conversion c times ``factor[c]`` (C,): its references scaled."""
        f = np.asarray(factor, dtype=np.float64)[None, :]
        f3 = f[..., None]
        return ADCTables(
            lo=self.lo * f, delta=self.delta * f,
            thr=None if self.thr is None else self.thr * f3,
            lvl=None if self.lvl is None else self.lvl * f3,
            clip_lo=None if self.clip_lo is None else self.clip_lo * f,
            clip_hi=None if self.clip_hi is None else self.clip_hi * f)

    def clip_bounds(self, n_codes: int) -> tuple[np.ndarray, np.ndarray]:
        """(G, C) analog values below / above which a conversion is clipped: its error then
        exceeds the half step that rounding alone can cause.

        Linear (``n_codes`` = 2^bits): ``lo − Δ/2`` and ``lo + (n_codes − 1/2)·Δ``, half a step
        beyond the first and last codes. Threshold ADC: half the outer level spacing beyond
        the outer levels, ``r_0 − (r_1 − r_0)/2`` and ``r_{L−1} + (r_{L−1} − r_{L−2})/2``.
        A fused activation carries its own bounds (its levels are output values): nothing
        below (the ReLU's zeros are wanted), half a step above ``a_max`` (none when ``a_max``
        is the activation's clamp).
        """
        if self.clip_lo is not None and self.clip_hi is not None:
            return self.clip_lo, self.clip_hi
        if self.lvl is not None:
            r = self.lvl
            return r[..., 0] - 0.5 * (r[..., 1] - r[..., 0]), r[..., -1] + 0.5 * (
                r[..., -1] - r[..., -2])
        return self.lo - 0.5 * self.delta, self.lo + (n_codes - 0.5) * self.delta

    @property
    def nonlinear(self) -> bool:
        """Whether conversions go through the threshold tables."""
        return self.thr is not None

    @property
    def shape(self) -> tuple[int, int]:
        """(G, C)."""
        return self.lo.shape  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class CalibrationUnits:
    """The sets of (row group, conversion) that share one ADC setting.

    ``members[i] = (rows, cols)``: row-group indices and conversion indices of unit i; each
    (g, c) of the layer is in exactly one unit.
    """

    granularity: CalibrationGranularity
    shape: tuple[int, int]
    members: tuple[tuple[np.ndarray, np.ndarray], ...]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return iter(self.members)

    def pool(self, stat: np.ndarray, reduce: Callable[[np.ndarray], float]) -> np.ndarray:
        """A (G, C) statistic reduced over each unit and broadcast back to its members."""
        if self.granularity is CalibrationGranularity.COLUMN:
            return np.array(stat, dtype=np.float64, copy=True)
        out = np.empty(self.shape)
        for rows, cols in self.members:
            out[np.ix_(rows, cols)] = reduce(stat[np.ix_(rows, cols)])
        return out


def calibration_units(layer: ProgrammedLayer,
                      granularity: CalibrationGranularity) -> CalibrationUnits:
    """The units of ``layer`` that share an ADC setting at ``granularity``.

    ``array``: the row groups of one row tile and the conversions of one column tile (one
    physical array's ADCs).
    """
    n_groups, n_conv = layer.n_groups, layer.n_conversions
    all_rows, all_cols = np.arange(n_groups), np.arange(n_conv)
    members: list[tuple[np.ndarray, np.ndarray]]
    if granularity is CalibrationGranularity.LAYER:
        members = [(all_rows, all_cols)]
    elif granularity is CalibrationGranularity.COLUMN:
        members = [(np.array([g]), np.array([c])) for g in range(n_groups) for c in range(n_conv)]
    else:
        tiles = layer.groups[:, 2]
        members = [(np.nonzero(tiles == t)[0], np.nonzero(layer.conv_col_tile == ct)[0])
                   for t in np.unique(tiles) for ct in np.unique(layer.conv_col_tile)]
    return CalibrationUnits(granularity, (n_groups, n_conv), tuple(members))

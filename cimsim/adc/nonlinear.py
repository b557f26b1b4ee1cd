"""Nonlinear (in-memory ramp) ADC: thresholds and levels fitted per layer / array / column.

A ``ramp`` ADC with b bits has 2^b - 1 sorted thresholds and 2^b reconstruction levels per
conversion unit; ``code = #thresholds <= a`` and the value is ``levels[code]``. They are fitted by
:func:`cimsim.adc.levels.fit_levels` (method ``chip.adc.level_fit``) to the noise-free analog
values that calibration inputs produce, pooled like the linear ADC's calibrated ranges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .levels import fit_levels
from .linear import RangeStats
from .tables import ADCTables, calibration_units

if TYPE_CHECKING:
    from ..arrays.program import ProgrammedLayer

__all__ = ["levels_from_samples"]

#: Samples per fit when pooling many units (layer / array granularity): a deterministic stride.
MAX_POOLED_SAMPLES = 200_000


def thin_samples(x: np.ndarray) -> np.ndarray:
    """At most :data:`MAX_POOLED_SAMPLES` values of ``x`` (1-D, or (samples, columns): at
    least one row), by a deterministic stride over its rows, so that every column keeps the
    same samples. (A stride over the flattened values of several columns, row-major, fell in
    the same columns whenever it shared a factor with their number: a layer-wide fit of two
    columns thinned by 2 saw one of them only.)"""
    keep = max(1, MAX_POOLED_SAMPLES // max(1, int(np.prod(x.shape[1:]))))  # rows
    return x[:: -(-len(x) // keep)] if len(x) > keep else x


def unseen_span(values: np.ndarray, layer: ProgrammedLayer) -> dict[str, float]:
    """The clamp limits of a unit whose calibration values had no spread: the column's full
    scale ``[fs_lo, fs_hi]`` where finite, so that its levels spread over it around the value
    seen, as :func:`cimsim.adc.linear.unseen_spread` spreads a linear ADC's codes (every level
    on that one value read any other input as it: a layer calibrated on zeros returned its
    bias whatever it was given). Otherwise none: the samples' own range."""
    if values.size and values.min() == values.max() and np.isfinite(layer.fs_lo) \
            and np.isfinite(layer.fs_hi) and layer.fs_lo < layer.fs_hi:
        return {"lo": min(layer.fs_lo, float(values.min())),
                "hi": max(layer.fs_hi, float(values.max()))}
    return {}


def levels_from_samples(layer: ProgrammedLayer, stats: RangeStats) -> ADCTables:
    """Thresholds (G, C, L-1) and levels (G, C, L) fitted to the kept samples, one fit per unit
    of ``adc.calibration_granularity``."""
    adc = layer.chip.adc
    n_levels = adc.n_codes
    g_n, c_n = stats.lo.shape
    per_g = [stats.kept(g).astype(np.float64) for g in range(g_n)]
    thr = np.empty((g_n, c_n, n_levels - 1))
    lvl = np.empty((g_n, c_n, n_levels))
    for rows, cols in calibration_units(layer, adc.calibration_granularity):
        values = thin_samples(np.concatenate([thin_samples(per_g[g][:, cols])
                                              for g in rows])).ravel()
        # the clamp limits: the unit's exact extremes (running statistics over every value,
        # as the linear ADC's min/max), which a subset of the samples may miss
        span = unseen_span(values, layer) or {
            "lo": float(stats.lo[np.ix_(rows, cols)].min()),
            "hi": float(stats.hi[np.ix_(rows, cols)].max())}
        lv = fit_levels(values, adc.bits, adc.level_fit, **span)
        thr[np.ix_(rows, cols)] = lv.thresholds
        lvl[np.ix_(rows, cols)] = lv.levels
    return ADCTables.from_levels(thr, lvl)

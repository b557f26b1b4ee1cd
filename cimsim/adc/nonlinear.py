"""Nonlinear (in-memory ramp) ADC: thresholds and levels fitted per layer / array / column.

A ``ramp`` ADC with b bits has 2^b - 1 sorted thresholds and 2^b reconstruction levels per
conversion unit; ``code = #thresholds <= a`` and the value is ``levels[code]``. They are fitted by
:func:`cimsim.adc.levels.fit_levels` (method ``chip.adc.level_fit``) to the noise-free analog
values that calibration inputs produce, pooled like the linear ADC's calibrated ranges.
"""

from __future__ import annotations

import numpy as np

from ..config import CalibrationGranularity
from .levels import fit_levels
from .linear import RangeStats, array_units

__all__ = ["levels_from_samples"]

#: Samples per fit when pooling many units (layer / array granularity): a deterministic stride.
MAX_POOLED_SAMPLES = 200_000


def thin_samples(x: np.ndarray) -> np.ndarray:
    """At most :data:`MAX_POOLED_SAMPLES` of ``x`` (1-D), by a deterministic stride."""
    return x[:: -(-x.size // MAX_POOLED_SAMPLES)] if x.size > MAX_POOLED_SAMPLES else x


def levels_from_samples(layer, stats: RangeStats) -> None:
    """Fit ``layer.adc_thr`` (G, C, L-1) and ``layer.adc_lvl`` (G, C, L) from samples."""
    adc = layer.chip.adc
    n_levels = adc.n_codes
    g_n, c_n = stats.lo.shape
    per_g = [np.concatenate(s, axis=0).astype(np.float64) for s in stats.samples]
    thr = np.empty((g_n, c_n, n_levels - 1))
    lvl = np.empty((g_n, c_n, n_levels))

    def fit(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lv = fit_levels(thin_samples(values.ravel()), adc.bits, adc.level_fit)
        return lv.thresholds, lv.levels

    how = adc.calibration_granularity
    if how is CalibrationGranularity.COLUMN:
        for g in range(g_n):
            for c in range(c_n):
                thr[g, c], lvl[g, c] = fit(per_g[g][:, c])
    elif how is CalibrationGranularity.LAYER:
        t, v = fit(np.concatenate([thin_samples(s.ravel()) for s in per_g]))
        thr[:], lvl[:] = t, v
    else:
        for row_mask, cols in array_units(layer):
            rows = np.nonzero(row_mask)[0]
            t, v = fit(np.concatenate([thin_samples(per_g[g][:, cols].ravel()) for g in rows]))
            for g in rows:
                thr[g, cols], lvl[g, cols] = t, v
    layer.adc_thr, layer.adc_lvl = thr, lvl
    # the ADC-LSB of a nonlinear ADC (unit of its offset error and comparator noise): the mean
    # level spacing
    layer.adc_lo = lvl[..., 0].copy()
    span = (lvl[..., -1] - lvl[..., 0]) / (n_levels - 1)
    layer.adc_delta = np.where(span > 0, span, 1.0)

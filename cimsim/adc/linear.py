"""Linear ADC ranges: full-scale, fixed and calibrated policies.

A linear ADC with ``b`` bits and range [lo, hi] has step Δ = (hi - lo) / (2^b - 1) and maps an
analog value a to ``code = clamp(floor((a - lo)/Δ + 1/2), 0, 2^b - 1)``, value ``lo + code·Δ``
(a value exactly half-way goes up, as a comparator at the threshold would). Ranges live on the
layer as ``adc_lo`` and ``adc_delta`` of shape (row groups, conversion columns).

``full_scale`` is hardware-fixed: the largest range the DAC and cell digits allow for
``rows_per_conversion`` rows (shrunk by ``full_scale_factor``). When the ADC has at least as many
codes as there are integer values in that range, the step is one cell-LSB: the ADC resolves
every partial sum and is lossless.
"""

from __future__ import annotations

import numpy as np

from ..config import CalibrationGranularity, CalibrationStat, RangePolicy
from ..errors import ConfigError

__all__ = ["static_ranges", "ranges_from_samples", "RangeStats"]


def _step(lo: np.ndarray, hi: np.ndarray, n_codes: int) -> np.ndarray:
    span = np.maximum(hi - lo, 0.0)
    delta = span / (n_codes - 1)
    # a degenerate range (a column that never conducts) still needs a usable step
    return np.where(delta > 0, delta, 1.0)


def static_ranges(layer) -> None:
    """Set ``layer.adc_lo``/``adc_delta`` for the policies that need no data."""
    adc = layer.chip.adc
    shape = (layer.n_groups, layer.n_conversions)
    if adc.range_policy is RangePolicy.FULL_SCALE:
        k = adc.full_scale_factor
        lo, hi = layer.fs_lo / k, layer.fs_hi / k
        if hi - lo <= adc.n_codes - 1:
            delta = 1.0
        else:
            delta = (hi - lo) / (adc.n_codes - 1)
        layer.adc_lo = np.full(shape, lo)
        layer.adc_delta = np.full(shape, delta)
    elif adc.range_policy is RangePolicy.FIXED:
        layer.adc_lo = np.full(shape, adc.fixed_lo)
        layer.adc_delta = np.full(shape, (adc.fixed_hi - adc.fixed_lo) / (adc.n_codes - 1))
    else:
        layer.adc_lo = None
        layer.adc_delta = None


class RangeStats:
    """Accumulates calibration samples of the analog values per (row group, conversion).

    Min/max and mean/std are exact running statistics; percentiles use the samples kept (all of
    them up to ``max_samples`` per unit, then a deterministic stride subsample).
    """

    def __init__(self, n_groups: int, n_conv: int, keep_samples: bool, max_samples: int = 20000):
        self.lo = np.full((n_groups, n_conv), np.inf)
        self.hi = np.full((n_groups, n_conv), -np.inf)
        self.s1 = np.zeros((n_groups, n_conv))
        self.s2 = np.zeros((n_groups, n_conv))
        self.n = 0
        self.keep = keep_samples
        self.max_samples = max_samples
        self.samples: list[list[np.ndarray]] = [[] for _ in range(n_groups)]

    def add(self, g: int, a: np.ndarray) -> None:
        """Add analog values ``a`` of shape (n_samples, C) for row group ``g``."""
        self.lo[g] = np.minimum(self.lo[g], a.min(axis=0))
        self.hi[g] = np.maximum(self.hi[g], a.max(axis=0))
        self.s1[g] += a.sum(axis=0)
        self.s2[g] += np.square(a).sum(axis=0)
        if g == 0:
            self.n += a.shape[0]
        if self.keep:
            stride = -(-a.shape[0] // self.max_samples)
            self.samples[g].append(a[::stride].astype(np.float32))


def _pool(stat: np.ndarray, layer, how: CalibrationGranularity, reduce) -> np.ndarray:
    """Pool a (G, C) statistic over the units that share an ADC range."""
    if how is CalibrationGranularity.COLUMN:
        return stat
    if how is CalibrationGranularity.LAYER:
        return np.full_like(stat, reduce(stat))
    out = np.empty_like(stat)
    tiles = layer.groups[:, 2]
    for t in np.unique(tiles):
        rows = tiles == t
        for ct in np.unique(layer.conv_col_tile):
            cols = layer.conv_col_tile == ct
            out[np.ix_(rows, cols)] = reduce(stat[np.ix_(rows, cols)])
    return out


def ranges_from_samples(layer, stats: RangeStats) -> None:
    """Set the layer's calibrated ADC ranges from accumulated statistics."""
    adc = layer.chip.adc
    how = adc.calibration_granularity
    if stats.n == 0:
        raise ConfigError("calibration data is empty: at least one input vector is needed")
    if adc.calibration_stat is CalibrationStat.MINMAX:
        lo = _pool(stats.lo, layer, how, np.min)
        hi = _pool(stats.hi, layer, how, np.max)
    elif adc.calibration_stat is CalibrationStat.MEAN_STD:
        # pool first moments, then form mean ± n·σ of the pooled distribution
        n = stats.n
        s1 = _pool(stats.s1, layer, how, np.sum)
        s2 = _pool(stats.s2, layer, how, np.sum)
        units = _pool(np.ones_like(stats.s1), layer, how, np.sum)
        mean = s1 / (n * units)
        std = np.sqrt(np.maximum(s2 / (n * units) - mean**2, 0.0))
        lo = np.maximum(mean - adc.n_sigma * std, _pool(stats.lo, layer, how, np.min))
        hi = np.minimum(mean + adc.n_sigma * std, _pool(stats.hi, layer, how, np.max))
    else:
        q = adc.percentile
        g_n, c_n = stats.lo.shape
        per_g = [np.concatenate(s, axis=0) for s in stats.samples]  # each (n, C)
        per_g = [s[:: -(-s.shape[0] // stats.max_samples)] for s in per_g]
        lo = np.empty((g_n, c_n))
        hi = np.empty((g_n, c_n))
        if how is CalibrationGranularity.COLUMN:
            for g in range(g_n):
                lo[g], hi[g] = np.percentile(per_g[g], [100 - q, q], axis=0)
        else:
            def pct(rows: np.ndarray, cols: np.ndarray) -> tuple[float, float]:
                vals = np.concatenate([per_g[g][:, cols].ravel() for g in np.nonzero(rows)[0]])
                if vals.size > stats.max_samples * 64:  # bounded memory, deterministic
                    vals = vals[:: vals.size // (stats.max_samples * 64) + 1]
                a, b = np.percentile(vals, [100 - q, q])
                return float(a), float(b)

            if how is CalibrationGranularity.LAYER:
                a, b = pct(np.ones(g_n, bool), np.ones(c_n, bool))
                lo[:], hi[:] = a, b
            else:
                tiles = layer.groups[:, 2]
                for t in np.unique(tiles):
                    rows = tiles == t
                    for ct in np.unique(layer.conv_col_tile):
                        cols = layer.conv_col_tile == ct
                        a, b = pct(rows, cols)
                        lo[np.ix_(rows, cols)] = a
                        hi[np.ix_(rows, cols)] = b
    layer.adc_lo = lo.astype(np.float64)
    layer.adc_delta = _step(lo, hi, adc.n_codes)

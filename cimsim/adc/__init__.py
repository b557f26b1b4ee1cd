"""ADCs: linear and nonlinear (ramp) converters, their level fitting, and the tables they give.

The value this package hands on is :class:`ADCTables` (per row group and conversion of a
programmed layer); the programmed layer carries it and the engine reads it.

    from cimsim.adc import fit_levels
    lv = fit_levels(samples, bits=4, method="bs_kmq")   # thresholds and levels of one ADC
    lv.quantize(samples)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import ADCKind, CalibrationStat
from ..errors import ConfigError
from .activation import FusedActivation, fused_tables_from_samples
from .levels import FitMethod, Levels, fit_levels, quantization_mse
from .linear import RangeStats, grid, ranges_from_samples, static_tables
from .nonlinear import levels_from_samples
from .tables import ADCTables, CalibrationUnits, calibration_units

if TYPE_CHECKING:
    from ..arrays.program import ProgrammedLayer

__all__ = [
    "ADCTables",
    "CalibrationUnits",
    "FitMethod",
    "FusedActivation",
    "Levels",
    "RangeStats",
    "calibrated_tables",
    "calibration_units",
    "fit_levels",
    "grid",
    "keeps_samples",
    "quantization_mse",
    "static_tables",
]


def calibrated_tables(layer: ProgrammedLayer, stats: RangeStats,
                      activation: FusedActivation | None = None) -> ADCTables:
    """The calibrated ADC tables of ``layer`` from the statistics of its analog values.

    A fused activation (layer-output ADC) gives the activation's tables; a ``ramp`` ADC its
    fitted thresholds and levels; a linear ADC its calibrated grid.

    Raises
    ------
    ConfigError
        ``stats`` holds no vector, or no samples where the tables need them (collected with
        ``keep_samples=False`` where :func:`keeps_samples` says True).
    """
    # the ramp and percentile fits failed inside NumPy ('need at least one array to
    # concatenate') where the linear min/max said what was wrong
    if stats.n == 0:
        raise ConfigError("calibration data is empty: at least one input vector is needed")
    if keeps_samples(layer, activation) and not stats.keep:
        raise ConfigError("RangeStats(keep_samples=False) holds no samples, and these tables "
                          "are fitted to them (a ramp ADC, a percentile range or a fused "
                          "activation); allowed: keep_samples=keeps_samples(layer, activation)")
    if activation is not None:
        return fused_tables_from_samples(layer, stats, activation)
    if layer.chip.adc.kind is ADCKind.RAMP:
        return levels_from_samples(layer, stats)
    return ranges_from_samples(layer, stats)


def keeps_samples(layer: ProgrammedLayer, activation: FusedActivation | None) -> bool:
    """Whether :func:`calibrated_tables` needs the analog samples themselves, not only their
    running moments."""
    adc = layer.chip.adc
    return (adc.kind is ADCKind.RAMP or activation is not None
            or adc.calibration_stat is CalibrationStat.PERCENTILE)

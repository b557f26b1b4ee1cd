"""An activation fused into a layer-output ADC: ReLU (and clamp) and quantization in one step.

When one conversion holds a layer's whole dot product (``adc.placement = "layer_output"``) and
the layer's only consumer is a ReLU, ReLU6 or ``Hardtanh(0, m)``, the ADC can produce the
activation directly, as the BS-KMQ NL-ADC does: thresholds below which the output is 0, levels
in ``[0, a_max]``, nothing above ``a_max``.

The digital back end turns the value ``v`` of conversion ``c`` into ``y = kappa_c * v + bias_c``
(``kappa`` = shift-add coefficient x activation scale x weight scale). Thresholds ``T`` and
levels ``R`` are fitted to the post-activation calibration values in that ``y`` domain and
mapped back through the affine map: the ADC compares the analog sum against ``(T - bias)/kappa``
(the bias folded into the references) and its value is ``R/kappa``; the back end scales it by
``kappa`` and adds no bias, so the layer outputs ``R[code]`` (an exact 0 for the ReLU's zeros).
The conversion kernel is unchanged, and the model's own ReLU after the layer sees values in
``[0, a_max]``, on which it is the identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..config import ADCKind, CalibrationStat, _is_real
from ..errors import ConfigError
from .levels import fit_levels
from .linear import RangeStats
from .nonlinear import thin_samples
from .tables import ADCTables, calibration_units

if TYPE_CHECKING:
    from ..arrays.program import ProgrammedLayer

__all__ = ["ActivationLevels", "FusedActivation", "activation_tables", "fit_activation_levels",
           "fused_tables_from_samples"]


@dataclass(frozen=True, eq=False)
class FusedActivation:
    """``y = min(max(kappa * v + bias, 0), clamp)`` per conversion, quantized by the ADC."""

    kappa: np.ndarray
    """(C,) output units per analog unit of each conversion, > 0."""
    bias: np.ndarray
    """(C,) bias of each conversion's output, added digitally after the ADC otherwise."""
    clamp: float = math.inf
    """Upper clamp of the activation: ``inf`` for ReLU, 6 for ReLU6."""

    def __post_init__(self) -> None:
        # (a kappa <= 0 was taken by engine.calibrate: thresholds (T - bias)/kappa out of
        # order, every output 0; kappa = 0 gave NaN levels. deploy never fuses such a one)
        kappa, bias = np.asarray(self.kappa), np.asarray(self.bias)
        if kappa.dtype.kind not in "iuf" or not np.all(np.isfinite(kappa) & (kappa > 0)):
            raise ConfigError(f"FusedActivation.kappa = {self.kappa!r} is invalid; allowed: "
                              "finite numbers > 0, one per conversion (output units per "
                              "analog unit)")
        if bias.dtype.kind not in "iuf" or bias.shape != kappa.shape \
                or not np.all(np.isfinite(bias)):
            raise ConfigError(f"FusedActivation.bias = {self.bias!r} is invalid; allowed: "
                              f"finite numbers, one per conversion (shape {kappa.shape})")
        if not (_is_real(self.clamp) and self.clamp > 0):
            raise ConfigError(f"FusedActivation.clamp = {self.clamp!r} is invalid; allowed: "
                              "a number > 0 (inf: a ReLU, 6: a ReLU6)")


@dataclass(frozen=True, eq=False)
class ActivationLevels:
    """A fused activation's quantizer in the output domain ``y``, one row per conversion:
    ``levels[c, #(thresholds[c] <= y)]``, fitted on ``[0, a_max[c]]``."""

    thresholds: np.ndarray
    """(C, L-1) float64 output values where the code steps up."""
    levels: np.ndarray
    """(C, L) float64 output values of the codes, in ``[0, a_max]``."""
    a_max: np.ndarray
    """(C,) float64 top of the activation's range (the calibration statistic, <= clamp)."""


def fit_activation_levels(layer: ProgrammedLayer, stats: RangeStats, act: FusedActivation,
                          method: str | None = None, params: dict | None = None
                          ) -> ActivationLevels:
    """The activation's levels in the output domain, fitted on the post-activation values of
    the calibration samples (``stats`` holds the noise-free analog values, samples kept).

    The clamp ``a_max`` of each unit of ``adc.calibration_granularity`` is set from the
    post-activation values by ``adc.calibration_stat`` (exact max, upper percentile, or mean +
    n_sigma * std) and never exceeds ``act.clamp``. A ``ramp`` ADC fits its levels on
    ``[0, a_max]`` with ``method`` (default ``adc.level_fit``; ``params`` go to
    :func:`~cimsim.adc.levels.fit_levels`); ``sar``/``flash`` use the uniform grid from 0 to
    ``a_max``. The training twin (``cimsim.train.twin``) refits with this same function.
    """
    adc = layer.chip.adc
    n_levels = adc.n_codes
    kappa = np.asarray(act.kappa, dtype=np.float64)
    bias = np.asarray(act.bias, dtype=np.float64)
    a = stats.kept(0).astype(np.float64)
    post = np.clip(a * kappa + bias, 0.0, act.clamp)
    exact_max = np.clip(stats.hi[0] * kappa + bias, 0.0, act.clamp)
    n_conv = kappa.size
    nonlinear = adc.kind is ADCKind.RAMP
    fit = adc.level_fit if method is None else method
    t_out = np.empty((n_conv, n_levels - 1))
    r_out = np.empty((n_conv, n_levels))
    top = np.empty(n_conv)
    for _, cols in calibration_units(layer, adc.calibration_granularity):
        unit = post[:, cols]  # (a copy: taken once)
        vals = unit.ravel()
        if adc.calibration_stat is CalibrationStat.MINMAX:
            a_max = float(exact_max[cols].max())
        elif adc.calibration_stat is CalibrationStat.PERCENTILE:
            a_max = float(np.percentile(vals, adc.percentile))
        else:
            a_max = float(vals.mean() + adc.n_sigma * vals.std())
        a_max = min(a_max, act.clamp)
        if nonlinear:
            lv = fit_levels(thin_samples(unit).ravel(), adc.bits, fit, lo=0.0, hi=a_max,
                            **(params or {}))
            t_y, r_y = lv.thresholds, lv.levels
        else:
            r_y = np.arange(n_levels) * (a_max / (n_levels - 1))
            t_y = 0.5 * (r_y[:-1] + r_y[1:])
        t_out[cols], r_out[cols], top[cols] = t_y, r_y, a_max
    return ActivationLevels(t_out, r_out, top)


def activation_tables(levels: ActivationLevels, act: FusedActivation) -> ADCTables:
    """The ADC tables (one row group) that output ``levels`` for the conversions' analog
    values: thresholds ``(T - bias)/kappa`` (the bias folded into the references), levels
    ``R/kappa`` (the back end scales them by ``kappa``)."""
    kappa = np.asarray(act.kappa, dtype=np.float64)[:, None]
    bias = np.asarray(act.bias, dtype=np.float64)[:, None]
    r_y = levels.levels
    thr = ((levels.thresholds - bias) / kappa)[None]
    lvl = (r_y / kappa)[None]
    # clipped: above the top level by more than half its step, in the analog domain; values
    # below the first threshold are the ReLU's zeros, and at the clamp the activation's own
    y_top = r_y[:, -1] + 0.5 * (r_y[:, -1] - r_y[:, -2])
    clip_hi = np.where(levels.a_max < act.clamp, (y_top - bias[:, 0]) / kappa[:, 0], np.inf)
    # Both kinds convert through the threshold tables: the linear grid's thresholds are the
    # midpoints of its levels (a value half-way goes up, as floor(v/step + 1/2) does).
    return ADCTables.from_levels(thr, lvl, clip_lo=np.full((1, kappa.size), -np.inf),
                                 clip_hi=clip_hi[None])


def fused_tables_from_samples(layer: ProgrammedLayer, stats: RangeStats,
                              act: FusedActivation) -> ADCTables:
    """The layer's ADC tables such that its output is the quantized activation
    (:func:`fit_activation_levels`, then :func:`activation_tables`)."""
    return activation_tables(fit_activation_levels(layer, stats, act), act)

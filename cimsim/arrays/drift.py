"""Devices over time: conductance drift, 1/f read noise, retention, and drift compensation.

A programmed layer is drawn at ``t0 = device.drift_t0_s`` after programming (variation and
faults: :func:`cimsim.arrays.program`). What happens to the cells later is drawn here, once per
programming, from a stream of its own (:class:`Aging`): a drift exponent ν per cell and a
retention direction z per cell. :func:`at_time` then re-derives the layer's operands for any
``t >= t0`` from the conductances at t0, so the same drawn devices are seen at every time and
nothing is reprogrammed:

    G(t)       = max(G(t0)·(t/t0)^(-ν) + σ_r(t)·z, 0)          σ_r(t) = σ_r·sqrt(log10(t/t0))
    var_read   = G(t)²·(read_noise_rel² + q_s(level)²·ln((t + t_read)/(2·t_read)))

The read noise is sampled at the column output exactly in distribution, as any read noise is
(``gemm_var``). Drift compensation multiplies conversion c's contribution by a digital gain
α_c = r_c(t0) / r_c(t), where r_c is the current of its columns for an all-ones calibration
input (``global``: one α for the whole layer, from the summed current of all its columns). At
t = t0 every factor is exactly 1 and the layer is the one :func:`program` made.
See ``docs/drift.md``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..config import ChipConfig, DriftCompensation, WeightEncoding
from ..errors import ConfigError
from ..events import Action, Component, EventKey

if TYPE_CHECKING:
    from ..adc.tables import ADCTables
    from .program import ProgrammedLayer

__all__ = ["Aging", "DURATION_UNITS", "STATIC_DEVICE", "aged_conductance", "at_time", "attach",
           "calibration_read_events", "check_time", "duration_text", "finite_seconds",
           "gain_events", "gain_ratio", "parse_duration", "read_noise_growth", "reference_drift",
           "state_levels", "warn_static_time"]

STATIC_DEVICE = ("the chip's device does not change after programming (no drift_nu_mean, "
                 "read_noise_q_s, retention_sigma_lsb or drift_compensation), so every time is "
                 "the same chip")
"""Why a time axis on a device that does not age (``DeviceConfig.ages`` false) shows nothing:
``simulate --time`` warns with it, the sweep's ``time_s`` axis refuses with it."""

DURATION_UNITS: dict[str, float] = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0,
                                    "w": 604800.0, "y": 365.0 * 86400.0}
"""Seconds per unit of a duration written ``1h``, ``30d``, ``10y`` (a year is 365 days)."""


def duration_text(seconds: float) -> str:
    """``seconds`` as a reader says it: ``1 y`` for 3.1536e7, ``2 h`` for 7200, in the largest
    of the units ``--time`` takes (weeks left out) that it reaches."""
    unit, size = next(((u, DURATION_UNITS[u]) for u in ("y", "d", "h", "min")
                       if abs(seconds) >= DURATION_UNITS[u]), ("s", 1.0))
    return f"{seconds / size:.3g} {unit}"


@dataclass(frozen=True, eq=False)
class Aging:
    """What a programmed layer needs to be seen at another time: drawn once per programming.

    Shapes: K inputs, J physical columns, C conversions.
    """

    t0_s: float
    """Reference time of the programmed state, s."""
    t_s: float
    """Time the layer holding this is seen at, s (>= t0_s)."""
    g_t0: np.ndarray | None
    """(K, J) float64 programmed conductance at t0, cell-LSB; None for ideal devices (the
    nominal digits plus g_off)."""
    nu: np.ndarray | None
    """(K, J) float64 drift exponent of every cell (>= 0), or None without drift."""
    z_ret: np.ndarray | None
    """(K, J) float64 retention direction of every cell (standard normal), or None."""
    coef_t0: np.ndarray
    """(C,) float64 the conversions' significance without compensation."""
    gain: np.ndarray
    """(C,) float64 compensation gain at ``t_s`` (ones without compensation or at t0)."""
    adc_t0: ADCTables | None = None
    """A fused activation's tables as set at t0 (the ones :func:`at_time` scales), or None."""
    adc_t: ADCTables | None = None
    """The tables :func:`at_time` set (``adc_t0`` scaled): a layer holding others had them set
    since, and those are its t0 tables."""


def finite_seconds(value: object) -> float | None:
    """``value`` as a finite float if it is a real number (not a bool), else None; an integer
    beyond float's range (10**400) is not finite (``float()`` raised OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    try:
        t = float(value)
    except OverflowError:
        return None
    return t if math.isfinite(t) else None


def check_time(t_s: object, chip: ChipConfig, name: str = "t_inference_s") -> float:
    """``t_s`` as a float, or :class:`ConfigError` naming ``name`` and what is allowed: a
    finite number of seconds >= ``device.drift_t0_s``."""
    t0 = chip.device.drift_t0_s
    t = finite_seconds(t_s)
    if t is None or t < t0:
        raise ConfigError(f"{name} = {t_s!r} is invalid; allowed: a finite time in seconds "
                          f">= device.drift_t0_s = {t0:g} (the time after programming at which "
                          "the programmed state is defined)")
    return t


def warn_static_time(t_s: float, chip: ChipConfig, who: str) -> None:
    """Warn that ``t_s`` after programming shows nothing on a device that does not age (the
    command line's ``--time`` says so, the sweep's ``time_s`` axis refuses; ``deploy`` and
    ``prepare`` took it without a word)."""
    if not chip.device.ages and t_s != chip.device.drift_t0_s:
        warnings.warn(f"{who}: t_inference_s = {t_s:g}: {STATIC_DEVICE}; use a drifting "
                      "device (e.g. the pcm-22nm preset; docs/drift.md)", UserWarning,
                      stacklevel=3)


def parse_duration(text: str) -> float:
    """``'3600'``, ``'1h'``, ``'1.5d'``, ``'10y'`` -> seconds (units :data:`DURATION_UNITS`;
    a bare number is seconds). ``ConfigError`` otherwise."""
    body = str(text).strip().lower()
    unit = next((u for u in sorted(DURATION_UNITS, key=len, reverse=True)
                 if body.endswith(u)), "")
    number = body[: len(body) - len(unit)].strip() if unit else body
    try:
        value = float(number) * DURATION_UNITS.get(unit, 1.0)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        units = ", ".join(DURATION_UNITS)
        raise ConfigError(f"time {text!r} is not a duration; write seconds (3600) or a number "
                          f"with a unit ({units}), e.g. 1h, 1d, 1y")
    return value


def _per_level(values: tuple[float, ...], levels: np.ndarray) -> np.ndarray | float:
    """A per-level parameter at every cell's level (one value: the same everywhere)."""
    if len(values) == 1:
        return values[0]
    return np.asarray(values, dtype=np.float64)[levels]


def state_levels(digits, g_t0, chip: ChipConfig, xp=np):
    """The level every cell's per-level device parameters (drift exponent, 1/f noise) are
    taken at: its digit (a bipolar cell's magnitude), but a stuck cell's state: stuck on, the
    top level; stuck off, level 0 (the published fits are functions of the conductance a cell
    holds: a cell stuck on where a 0 was meant took level 0's exponent and 1/f coefficient at
    the full conductance, 20x the read noise of a real top-level cell). A stuck cell is known
    by its programmed conductance ``g_t0``, which faults set to exactly the on or off value (a
    varied cell lands there with probability 0, and would then hold that level anyway). NumPy
    arrays or torch tensors (``xp=torch``); ``g_t0`` None: the digits."""
    signed = chip.weight_encoding is WeightEncoding.SIGNED_CELL
    lv = xp.abs(digits) if signed else digits
    dev = chip.device
    if g_t0 is None or not (dev.p_stuck_on > 0 or dev.p_stuck_off > 0):
        return lv
    from .program import stuck_conductances

    g_on, g_off = stuck_conductances(chip)
    g = xp.abs(g_t0) if signed else g_t0
    top = xp.full_like(lv, dev.n_levels - 1)
    return xp.where(g == g_on, top, xp.where(g == g_off, xp.zeros_like(lv), lv))


def _levels(layer: ProgrammedLayer) -> np.ndarray:
    """(K, J) level of every cell's parameters (:func:`state_levels`)."""
    g_t0 = None if layer.aging is None else layer.aging.g_t0
    return state_levels(layer.digits_phys.astype(np.int64), g_t0, layer.chip)


def attach(layer: ProgrammedLayer, g_t0: np.ndarray | None,
           rng: np.random.Generator) -> ProgrammedLayer:
    """``layer`` (just programmed, at t0) with its aging drawn from ``rng`` (a stream of its
    own: the layer's other draws are untouched), seen at t0."""
    dev = layer.chip.device
    shape = layer.digits_phys.shape
    levels = state_levels(layer.digits_phys.astype(np.int64), g_t0, layer.chip)
    nu = None
    if any(dev.drift_nu_mean):
        mean = _per_level(dev.drift_nu_mean, levels)
        sigma = _per_level(dev.drift_nu_sigma, levels) if dev.drift_nu_sigma else 0.0
        # a negative exponent would make a cell gain conductance: the published fits fold it
        nu = np.abs(mean + sigma * rng.standard_normal(shape))
    z = rng.standard_normal(shape) if dev.retention_sigma_lsb > 0 else None
    aging = Aging(t0_s=dev.drift_t0_s, t_s=dev.drift_t0_s,
                  g_t0=None if g_t0 is None else np.asarray(g_t0, dtype=np.float64),
                  nu=nu, z_ret=z, coef_t0=layer.conv_coef.copy(),
                  gain=np.ones(layer.n_conversions))
    return at_time(dataclasses.replace(layer, aging=aging), dev.drift_t0_s)


def read_noise_growth(t_s: float, t_read_s: float) -> float:
    """ln((t + t_read) / (2·t_read)): the 1/f noise power integrated from 1/t to 1/t_read;
    0 for a time within the read pulse (t < t_read: no band left to integrate, where the
    logarithm's negative value made a negative variance, NaN sigmas and garbage outputs with
    a ``drift_t0_s`` shorter than the pulse)."""
    return max(0.0, math.log((t_s + t_read_s) / (2.0 * t_read_s)))


def reference_drift(t_s: float, chip: ChipConfig) -> float:
    """(t/t0)^(-ν0): the off-state reference column of ``device.off_current_compensation =
    'analog'`` at ``t_s``. Its cells are the array's, at level 0, so they drift as the
    off-state cells do; their own exponent spread is not drawn: one factor at level 0's mean
    exponent (1 without drift). Subtracted undrifted, the t0 off-current left a residue the
    compensation gain then multiplied (32 % error at one hour on an offset-encoded chip)."""
    nu = chip.device.drift_nu_mean
    if not nu or t_s <= chip.device.drift_t0_s:
        return 1.0
    return float((t_s / chip.device.drift_t0_s) ** (-abs(nu[0])))


def _conductance(layer: ProgrammedLayer, aging: Aging, t: float) -> np.ndarray | None:
    """(K, J) conductance at ``t`` (cell-LSB), or None where the ideal digits still hold."""
    chip = layer.chip
    moves = t > aging.t0_s and (aging.nu is not None or aging.z_ret is not None)
    if aging.g_t0 is None and not moves:
        return None
    if aging.g_t0 is not None:
        g = aging.g_t0
    else:
        from .program import off_conductance

        g = layer.digits_phys.astype(np.float64) + off_conductance(chip)
    if not moves:
        return g
    return aged_conductance(g, t, aging.t0_s, aging.nu, aging.z_ret, chip)


def aged_conductance(g_t0, t_s: float, t0_s: float, nu, z_ret, chip: ChipConfig, xp=np):
    """``G(t) = max(G(t0)·(t/t0)^(-ν) + σ_r(t)·z, 0)`` of cells programmed to ``g_t0`` with
    drift exponents ``nu`` and retention directions ``z_ret`` (either None: that effect off;
    a bipolar cell is not clamped). One function for the engine (NumPy) and the training twin
    (torch tensors, ``xp=torch``)."""
    g = g_t0
    if nu is not None:
        g = g * (t_s / t0_s) ** (-nu)
    if z_ret is not None:
        sigma = chip.device.retention_sigma_lsb * math.sqrt(math.log10(t_s / t0_s))
        g = g + sigma * z_ret
        if chip.weight_encoding is not WeightEncoding.SIGNED_CELL:
            g = xp.where(g < 0, 0.0, g)  # a conductance cannot go negative
    return g


def gain_ratio(r0, rt, xp=np):
    """Compensation gains ``r(t0) / r(t)`` of the calibration reads, 1 where either read is
    not positive (nothing read); NumPy arrays or torch tensors (``xp=torch``)."""
    ok = (rt > 0) & (r0 > 0)
    return xp.where(ok, r0 / xp.where(ok, rt, 1.0), 1.0)


def _read_rel(layer: ProgrammedLayer, t: float) -> np.ndarray | float:
    """Relative read-noise sigma of every cell at ``t``: white and 1/f terms in variance."""
    chip = layer.chip
    rel = chip.noise.read_noise_rel
    q_s = chip.device.read_noise_q_s
    if not any(q_s):
        return rel
    q = _per_level(q_s, _levels(layer))
    growth = read_noise_growth(t, chip.tech.t_read_ns * 1e-9)
    return np.sqrt(rel**2 + np.square(q) * growth)


def _column_reads(layer: ProgrammedLayer, g_cells: np.ndarray) -> np.ndarray:
    """(C,) the current of each conversion's columns for an all-ones calibration input, read
    one column at a time (cell-LSB): what the compensation compares over time."""
    # in float64 also for the nominal cells' float32 conductances: a float32 sum over the rows
    # rounds each gain by ~1e-7 (and in an order no other implementation repeats)
    col = np.abs(g_cells).sum(axis=0, dtype=np.float64)
    phys = layer.conv_phys
    # each column read, by the magnitude of its analog weight (1 for a pair's two columns)
    return (np.abs(layer.conv_weight) * np.where(phys >= 0, col[np.maximum(phys, 0)], 0.0)
            ).sum(axis=1)


def _gains(layer: ProgrammedLayer, g0: np.ndarray, g_t: np.ndarray) -> np.ndarray:
    """(C,) compensation gains r(t0) / r(t) (1 where nothing is read)."""
    mode = layer.chip.device.drift_compensation
    r0, rt = _column_reads(layer, g0), _column_reads(layer, g_t)
    if mode is DriftCompensation.GLOBAL:
        r0, rt = np.full_like(r0, r0.sum()), np.full_like(rt, rt.sum())
    if mode is DriftCompensation.NONE:
        return np.ones_like(r0)
    return gain_ratio(r0, rt)


def at_time(layer: ProgrammedLayer, t_s: float) -> ProgrammedLayer:
    """``layer`` seen at ``t_s`` seconds after programming: the same drawn devices, their
    conductance, read noise and compensation gains re-derived from the state at t0 (ADC
    settings kept: they were fitted at t0). A layer that does not age is returned as is."""
    from .program import _cell_conductance, _Conversions, _gemm_operands, weighted_rowsum

    t = check_time(t_s, layer.chip, "t_s")
    aging = layer.aging
    if aging is None:
        return layer
    chip = layer.chip
    g_phys = _conductance(layer, aging, t)
    g_cells = _cell_conductance(layer.digits_phys, g_phys, chip)
    conv = _Conversions(layer.conv_phys, layer.conv_weight, layer.out_col, aging.coef_t0)
    gemm = _gemm_operands(layer.digits_phys, g_phys, conv, chip, read_rel=_read_rel(layer, t),
                          reference=reference_drift(t, chip))
    gain = aging.gain
    adc, adc_t0 = layer.adc, None
    if chip.device.drift_compensation is not DriftCompensation.NONE:
        g0 = _cell_conductance(layer.digits_phys, aging.g_t0, chip)
        gain = _gains(layer, g0, g_cells)
        if adc is not None and adc.fused:
            # A fused ReLU-ADC's bias sits in its references, before any digital gain: the
            # gain scales its references instead (thresholds and levels / gain, the digital
            # side x gain), else the drifted sum met the t0 bias and the ReLU zeroed it
            adc_t0 = (aging.adc_t0 if aging.adc_t0 is not None and adc is aging.adc_t
                      else adc)
            adc = adc_t0.scaled(1.0 / gain)
    return dataclasses.replace(
        layer, adc=adc,
        g_phys=None if g_phys is None else g_phys.astype(np.float32),
        gemm_matrix=gemm.matrix, gemm_var=gemm.var, off_add=gemm.off_add,
        conv_coef=aging.coef_t0 * gain,
        cell_rowsum=np.abs(g_cells).sum(axis=1),
        weighted_rowsum=weighted_rowsum(conv, layer.digits_phys, g_phys, chip),
        group_abs_max=tuple(float(np.abs(gemm.matrix[k0:k1]).max(initial=0))
                            for k0, k1, _ in layer.groups),
        aging=dataclasses.replace(aging, t_s=t, gain=gain, adc_t0=adc_t0,
                                  adc_t=None if adc_t0 is None else adc),
    )


def gain_events(layer: ProgrammedLayer, m: int) -> dict[EventKey, float]:
    """The compensation gains' multiplies for ``m`` input vectors: one per output
    (``global``) or one per conversion column (``column``: a column's planes and row groups
    are accumulated before its gain)."""
    mode = layer.chip.device.drift_compensation
    if layer.aging is None or mode is DriftCompensation.NONE:
        return {}
    per_vector = layer.n_outputs if mode is DriftCompensation.GLOBAL else layer.n_conversions
    return {EventKey(Component.DIGITAL, Action.DRIFT_GAIN_MULTIPLY, 0): float(m) * per_vector}


def calibration_read_events(layer: ProgrammedLayer) -> dict[EventKey, float]:
    """What one compensation costs: the all-ones calibration input read once on every row
    group, each physical column converted on its own (pairs not subtracted), so that its
    current can be compared with the one at t0. Empty without compensation."""
    chip = layer.chip
    if layer.aging is None or chip.device.drift_compensation is DriftCompensation.NONE:
        return {}
    n_cols = layer.n_phys_cols
    C, A = Component, Action
    return {
        EventKey(C.ARRAY, A.DRIFT_CALIBRATION, 0): 1.0,
        EventKey(C.ARRAY, A.ACTIVATION, 0): float(layer.n_groups * layer.n_col_tiles),
        EventKey(C.DAC, A.PULSE, chip.dac_bits): float(layer.n_inputs * layer.n_col_tiles),
        EventKey(C.CELL, A.READ, chip.device.bits_per_cell): float(layer.n_inputs * n_cols),
        # the all-ones input: x^2 G and |x| G are both the cells' summed conductance
        EventKey(C.CELL, A.V2G_LSB, 0): float(layer.cell_rowsum.sum()),
        EventKey(C.CELL, A.V1G_LSB, 0): float(layer.cell_rowsum.sum()),
        EventKey(C.ADC, A.CONVERT, chip.adc.bits): float(layer.n_groups * n_cols),
    }

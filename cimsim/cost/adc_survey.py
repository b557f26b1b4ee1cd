"""Converter energy and area from the ADC Performance Survey's fits (``physical`` cost model).

Source: B. Murmann, "ADC Performance Survey 1997-2025", [Online], github bmurmann/ADC-survey
(ISSCC and VLSI Symposium converters). The survey's data carry no licence, so the repository
ships the fitted constants below and the script that fits them,
``scripts/fit_adc_survey.py --survey ADCsurvey.csv`` (docs/technology.md §ADC survey fit).

The fit, per converter family (SAR; flash; time-domain = VCO/CCO and time-based), over the
survey's non-interleaved converters in 5-180 nm CMOS with ENOB < 10.5 (the Walden regime,
below the thermal-noise line):

* energy: the Walden figure of merit ``FOM_W = E / 2^ENOB`` normalised to 0.8 V by
  ``(0.8 / V_supply)^2`` is regressed on node in log-log; the line is moved to the **lower
  quartile** of the residuals (a good design, not the record nor the median of GHz
  stand-alone parts), giving ``FOM_W(node) = FOM_45 * (node / 45 nm)^slope`` at 0.8 V (a
  power law over cimsim's 3-180 nm; below the survey's 5 nm it is continued beyond its data);
* area: the survey area per conversion step per F^2, ``A / (2^ENOB * F^2)``, at its **lowest
  decile**: CIM column converters are pitch-matched and far smaller than the survey median.

A converter of ``b`` bits then costs, at supply ``V``::

    SAR        E = FOM_sar(node) * 2^b * (V/0.8)^2            (Walden: one step per code)
    flash      E = FOM_flash(node) * (2^b - 1) * (V/0.8)^2    (one comparator per threshold)
    ramp       E = FOM_flash(node) * 2^b * (V/0.8)^2          (one comparator decision a step)
    single-slope   the same 2^b comparator decisions           (a linear ramp, one per clock)
    CCO / I&F  E = FOM_time(node) * 2^b * (V/0.8)^2           (one oscillation / fire a count)

times :func:`rate_factor` (1 up to the survey's corner rate for ``b`` bits, rising as
``f^0.661`` above it: the speed envelope as Andrulis et al. fitted it to the survey), plus, for
the counting kinds (ramp, single-slope, CCO, integrate-and-fire), a ``b``-bit counter/latch
priced by the digital tables (and, for a single-slope converter, its share of the array's
ramp generator: ``cimsim.cost.models.ADCModel.ramp_generator_pj``). A 1-b SAR, flash or single-slope
conversion is one sense-amplifier decision, priced by the tables, not by these fits. Area is
``A_step * steps * F^2`` with the converter's step count (the fit's own normalisation,
``A / 2^ENOB``), plus the counter of the counting kinds; a single-slope or ramp converter has
one comparator, not 2^b (its steps are in time: see ``cimsim.cost.models``). The scatter of
the survey around these lines (``*_SCATTER``: the standard deviation of the log residuals) is
a factor 2.8-4.3: an uncalibrated converter estimate carries that uncertainty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import ADCKind

__all__ = ["FAMILIES", "RATE_EXPONENT", "SurveyFit", "corner_rate_hz", "dac_area_um2",
           "family_of", "fom_w_fj", "rate_factor", "scatter_factor", "step_area_um2", "steps"]


@dataclass(frozen=True)
class SurveyFit:
    """One converter family's fit (values printed by ``scripts/fit_adc_survey.py``)."""

    family: str
    n_points: int
    fom_45nm_fj: float
    """Lower-quartile Walden FOM at 45 nm and 0.8 V, fJ per conversion step."""
    slope: float
    """d ln FOM / d ln node."""
    scatter: float
    """Standard deviation of ln FOM around the fitted line."""
    area_step_f2: float
    """Lowest-decile area per conversion step, in units of F^2 (um^2 per um^2)."""


# Fitted by scripts/fit_adc_survey.py on the survey revision of 2025-06 (725 converters).
FAMILIES: dict[str, SurveyFit] = {
    "sar": SurveyFit("sar", 31, 5.68, 0.30, 1.17, 4895.0),
    "flash": SurveyFit("flash", 7, 59.32, 0.82, 1.02, 180518.0),
    "time": SurveyFit("time", 9, 18.07, 0.93, 1.45, 11892.0),
}
"""The fits by family: ``sar``, ``flash`` (also prices one comparator decision of a ramp or
single-slope converter),
``time`` (VCO/CCO and time-based converters; also prices one integrate-and-fire count)."""

_FAMILY = {ADCKind.SAR: "sar", ADCKind.FLASH: "flash", ADCKind.RAMP: "flash",
           ADCKind.SINGLE_SLOPE: "flash", ADCKind.CCO: "time", ADCKind.INTEGRATE_FIRE: "time"}
SUPPLY_REF_V = 0.8


def family_of(kind: ADCKind) -> SurveyFit:
    """The survey family that prices a converter kind."""
    return FAMILIES[_FAMILY[ADCKind(kind)]]


def fom_w_fj(kind: ADCKind, node_nm: float, vdd_v: float = SUPPLY_REF_V) -> float:
    """Walden FOM of ``kind`` at ``node_nm`` and ``vdd_v``, fJ per conversion step."""
    fit = family_of(kind)
    return fit.fom_45nm_fj * (node_nm / 45.0) ** fit.slope * (vdd_v / SUPPLY_REF_V) ** 2


# The survey's speed envelope, as Andrulis, Chen, Lee, Emer and Sze fitted it to the same
# survey ("Modeling Analog-Digital-Converter Energy and Area for Compute-In-Memory Accelerator
# Design", arXiv 2404.06553, 2024; accelergy-adc-plug-in model.yaml; docs/technology.md §7):
# the Schreier figure of merit of the best converters is capped by resolution,
# FOM_S <= 128.307 + 3.2205 b dB, and by speed, FOM_S <= 213.78 - 2.8719 ln(f / Hz) dB.
# Energy per conversion at fixed SNDR goes as 10^(-FOM_S / 10), so above the speed at which
# the two caps meet it rises as f^(0.28719 ln 10).
_FOMS_SPEED_DB = (213.78, 2.8719)
_FOMS_BITS_DB = (128.307, 3.2205)
RATE_EXPONENT = _FOMS_SPEED_DB[1] * math.log(10) / 10
"""d ln E / d ln f above the corner rate (0.661)."""


def corner_rate_hz(bits: int) -> float:
    """Sample rate above which a ``bits``-bit converter's energy per conversion rises, Hz
    (where the survey's speed cap meets its resolution cap: 1.1 GS/s at 8 b, 95 GS/s at 4 b)."""
    return math.exp((_FOMS_SPEED_DB[0] - _FOMS_BITS_DB[0] - _FOMS_BITS_DB[1] * bits)
                    / _FOMS_SPEED_DB[1])


def rate_factor(bits: int, rate_hz: float) -> float:
    """Energy per conversion at ``rate_hz`` relative to the rate-free line: 1 up to
    :func:`corner_rate_hz`, ``(f / f_corner)^0.661`` above it."""
    return max(1.0, rate_hz / corner_rate_hz(bits)) ** RATE_EXPONENT


def steps(kind: ADCKind, bits: int) -> int:
    """Conversion steps the energy is paid for: ``2^b - 1`` comparators of a flash, else
    ``2^b`` (Walden steps of a SAR, ramp or single-slope steps, oscillations or fires at full
    scale)."""
    return (1 << bits) - 1 if ADCKind(kind) is ADCKind.FLASH else 1 << bits


def step_area_um2(kind: ADCKind, node_nm: float) -> float:
    """Area of one conversion step of ``kind`` at ``node_nm``, um^2 (lowest decile)."""
    return family_of(kind).area_step_f2 * (node_nm * 1e-3) ** 2


def scatter_factor(kind: ADCKind) -> float:
    """One standard deviation of the survey around the fit, as a factor."""
    return math.exp(family_of(kind).scatter)


def dac_area_um2(bits: int, node_nm: float) -> float:
    """Area of one ``bits``-bit amplitude (voltage-output) DAC at ``node_nm``, um^2.

    A b-bit charge-redistribution or R-2R DAC holds ``2^b`` unit elements, the same array a
    b-bit SAR converter carries as its capacitive DAC, which dominates the survey's
    lowest-decile SAR area; so the DAC is priced as the survey's SAR area per step times
    ``2^b`` [der] (the comparator the DAC lacks is traded against the output buffer it needs).
    No CIM chip enters this: the constant is the survey's (docs/technology.md §7).
    """
    return step_area_um2(ADCKind.SAR, node_nm) * (1 << bits)

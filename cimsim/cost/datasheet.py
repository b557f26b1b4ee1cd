"""A chip's headline figures on the standard full-array workload (``cimsim datasheet CHIP``).

The standard workload (docs/validation.md): one ``cimsim.matmul`` layer that fills one array of
the chip (K = array rows, N = as many outputs as the array's columns hold; a layer-output
converter, ``adc.placement = 'layer_output'``, holds one row group: K = ``rows_per_conversion``),
M = 256 input vectors, inputs uniform over the unsigned input range with a fraction
``1 - input_density`` of them set to zero, weights uniform over the chip's weight range (over
{-1, +1} for 1-b binary weights, which have no 0), seed 0. The run's events are priced by
:func:`cimsim.cost.estimate`; the datasheet reads:

* ``scope="macro"``: the array with its converters and row drivers (``cell``, ``dac``, ``adc``
  energy and area), as CIM macro papers report; TOPS of one array. A digital-CIM macro
  (``adc.kind = 'digital'``) outputs the accumulated dot product, so its macro also holds the
  shift-accumulators (``shift_add``, :data:`DIGITAL_MACRO_COMPONENTS`); a floating-point
  macro (``quant.act_format = 'block_fp'``) also its pre-alignment and normalisation
  (``block_fp``) and shift-accumulators: its TFLOPS/W covers them.
* ``scope="chip"``: every component, the whole chip's area, and all its arrays working in
  parallel (TOPS of one array times the chip's arrays).

1 MAC = 2 ops at ``input_bits x weight_bits``; the ``*_1b`` figures multiply ops by
``input_bits * weight_bits``.

Beside the headline figures the mapping explains them (``cimsim datasheet CHIP --breakdown``
prints it; docs/new-chip.md reads it): the energy and area shares by component, the timing of
one step (``step``: which term of :func:`.latency.step_ns`'s ``max`` sets it), the converter's
sample rate against the ADC survey's corner (``adc``), and the uncertainty (``uncertainty``:
the survey's scatter for the converter's family, the spread of the validation table's
predictions, and the span of those of the chip's class with the ``likely`` range it gives,
from the rows shipped in ``cimsim/presets/published/validation.csv``).
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .._seed import check_flag
from ..config import (
    ActFormat,
    ADCKind,
    ADCPlacement,
    ChipConfig,
    CostModel,
    RangePolicy,
    SliceReadout,
    WeightEncoding,
    as_chip,
    unstated_inputs,
)
from .energy import NO_CALIBRATION, calibration_for, chip_table

__all__ = ["DIGITAL_MACRO_COMPONENTS", "MACRO_COMPONENTS", "N_VECTORS", "VALIDATION_DOC",
           "VALIDATION_ROWS", "breakdown_lines", "class_rows", "datasheet", "likely_lines",
           "macro_components", "unstated_lines", "validation_class", "validation_range",
           "validation_rows", "validation_spread", "workload"]

N_VECTORS = 256
MACRO_COMPONENTS = ("cell", "dac", "adc")
"""What a macro figure covers: the array, its row drivers and its converters (and, with analog
slice read-out, the weighting network before them; with block floating-point inputs, the
shift-accumulators and the pre-alignment and normalisation: :func:`macro_components`)."""
DIGITAL_MACRO_COMPONENTS = (*MACRO_COMPONENTS, "shift_add")
"""What a digital-CIM macro figure covers: also its shift-accumulators (its output is the
accumulated dot product, not a column code)."""


def macro_components(chip: ChipConfig) -> tuple[str, ...]:
    """The components a macro figure of ``chip`` covers."""
    inside = DIGITAL_MACRO_COMPONENTS if chip.adc.kind is ADCKind.DIGITAL else MACRO_COMPONENTS
    if chip.array.slice_readout is SliceReadout.ANALOG:
        inside = (*inside, "weighting")
    if chip.quant.act_format is ActFormat.BLOCK_FP:
        # a floating-point macro pre-aligns its inputs and normalises its outputs inside
        # (its TFLOPS/W covers them) and outputs the accumulated dot product
        inside = (*inside, *(("shift_add",) * ("shift_add" not in inside)), "block_fp")
    return inside


_SCOPES = ("macro", "chip")


def workload(chip: ChipConfig, input_density: float = 0.5,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The standard full-array workload: ``(x, w)`` integer operands (module docstring)."""
    from ..arrays.encoding import weight_range
    from ..arrays.program import program

    rng = np.random.default_rng(seed)
    lo, hi = weight_range(chip)
    block = program(np.ones((1, 1), dtype=np.int64), chip)
    q = block.n_phys_cols  # columns per output
    # a layer-output converter holds the whole dot product: one row group, not all the rows
    layer_output = chip.adc.placement is ADCPlacement.LAYER_OUTPUT
    k = chip.array.rows_per_group if layer_output else chip.array.n_rows
    n = max(1, block.cols_per_tile // q)  # the outputs one array holds
    if chip.weight_encoding is WeightEncoding.BINARY:
        w = 2 * rng.integers(0, 2, size=(n, k)) - 1  # ±1: a binary cell has no 0
    else:
        w = rng.integers(lo, hi + 1, size=(n, k))
    x = rng.integers(0, 2**chip.input_bits, size=(N_VECTORS, k))
    x[rng.random(x.shape) < 1.0 - input_density] = 0
    return x, w


def datasheet(chip: ChipConfig | str | Path, *, scope: str = "macro",
              input_density: float = 0.5, calibrated: bool = False) -> dict[str, Any]:
    """Headline TOPS, TOPS/W and TOPS/mm^2 of ``chip`` on the standard workload.

    Parameters
    ----------
    chip : ChipConfig, str or Path
        A chip, a preset name or a path to a ``.toml``.
    scope : {"macro", "chip"}
        What the figures cover (module docstring).
    input_density : float
        Fraction of the inputs not set to zero, in (0, 1]: those are uniform over the input
        range, 0 included, so the nonzero fraction is ``input_density · (1 - 2^-B)`` for
        B-bit inputs (half of it on a 1-b input chip: the convention every row of
        docs/validation.md was computed and calibrated under).
    calibrated : bool
        Apply the preset's per-chip calibration (``cimsim.cost.CALIBRATIONS``; opt-in, the
        figures are then fitted, not predicted); on a chip with none (another chip, or a
        preset moved off its node, cell or cost model) a warning says so and the figures are
        predicted. False: the cost model as it is.

    Returns
    -------
    dict
        ``chip``, ``scope``, ``input_density``, ``cost_model``, ``calibrated`` (bool),
        ``basis`` ("calibrated" or "predicted"), ``tops``, ``tops_per_w``, ``tops_per_mm2``,
        ``tops_1b``, ``tops_per_w_1b``, ``tops_per_mm2_1b``, ``energy_pj_per_op``,
        ``area_mm2``, ``ops``, ``energy_pj_by_component`` and ``area_um2_by_component``
        (the scope's) with their fractions of the total (``energy_share_by_component``,
        ``area_share_by_component``), ``ops_convention``, ``basis_detail`` (a sentence), and
        ``step``, ``adc`` and ``uncertainty`` (:func:`_step`, :func:`_converter`,
        :func:`_uncertainty`), and ``unstated``: the key architecture inputs the description
        leaves to cimsim's defaults (:func:`cimsim.config.unstated_inputs`; None for a
        ``ChipConfig``, which does not say what was written), and ``caveat``
        (:func:`cimsim.cost.cost_caveat`: why the figures describe no hardware, or "").

    Raises
    ------
    ConfigError
        For a bad ``scope`` or ``input_density``, a chip that cannot be loaded, or one that
        cannot run the standard workload (its array cannot hold one output's columns, or a
        layer-output converter would need several conversions per output).
    """
    from .. import api
    from ..arrays.program import program
    from ..errors import ConfigError, MappingError
    from . import cost_caveat, estimate, layer_work
    from .area import array_area_um2, chip_area_um2

    if scope not in _SCOPES:
        raise ConfigError(f"datasheet scope = {scope!r} is invalid; allowed: 'macro', 'chip'")
    density = float(input_density) if isinstance(input_density, numbers.Real) else -1.0
    if isinstance(input_density, (bool, np.bool_)) or not 0.0 < density <= 1.0:
        raise ConfigError(f"datasheet input_density = {input_density!r} is invalid; "
                          "allowed: a number in (0, 1]")
    unstated = None if isinstance(chip, ChipConfig) else unstated_inputs(chip, scope=scope)
    chip = as_chip(chip)
    calibrated = check_flag(calibrated, "calibrated")
    cal = calibration_for(chip) if calibrated else NO_CALIBRATION
    # asked for and not there: said, not silently predicted
    missing = _no_calibration(chip) if calibrated and cal.is_identity else ""
    if missing:
        warnings.warn(f"datasheet: calibrated=True, but {missing}; the figures are predicted",
                      UserWarning, stacklevel=2)
    try:
        x, w = workload(chip, density)
        x_cal = x if chip.adc.range_policy is RangePolicy.CALIBRATED else None
        _, events = api.matmul(x, w, chip, seed=0, calibration=x_cal)
        block = program(w, chip)
    except MappingError as exc:
        # the chip cannot hold one output of any layer (too few columns for a weight's
        # columns, a layer-output converter with several conversions per output): a chip
        # error, whose message names the fields to change
        raise ConfigError(f"chip {chip.name!r} cannot run the standard workload: {exc}") from None
    rep = estimate([layer_work(events, block)], chip, calibration=cal)
    t = rep.totals
    ops = 2.0 * t["n_macs_per_inference"]
    energy = rep.energy_by_component()
    if scope == "macro":
        inside = macro_components(chip)
        energy = {c: energy[c] for c in inside}
        area = {c: v * block.n_arrays for c, v in array_area_um2(chip, calibration=cal).items()
                if c in inside}
        tops = ops / (t["latency_ns_per_inference"] * 1e3)
    else:
        area = chip_area_um2(chip, calibration=cal)
        tops = ops / (t["latency_ns_per_inference"] * 1e3) * (
            chip.array.n_arrays / block.n_arrays)
    e_pj, a_um2 = sum(energy.values()), sum(area.values())
    bits = chip.input_bits * chip.weight_bits
    tops_w = ops / e_pj if e_pj > 0 else 0.0
    tops_mm2 = tops / (a_um2 * 1e-6) if a_um2 > 0 else 0.0
    used_cal = calibrated and not cal.is_identity
    table = chip_table(chip)
    return {
        "chip": chip.name, "scope": scope, "input_density": density,
        "cost_model": chip.tech.cost_model.value, "calibrated": used_cal,
        "basis": "calibrated" if used_cal else "predicted",
        "tops": tops, "tops_per_w": tops_w, "tops_per_mm2": tops_mm2,
        "tops_1b": tops * bits, "tops_per_w_1b": tops_w * bits,
        "tops_per_mm2_1b": tops_mm2 * bits,
        "energy_pj_per_op": e_pj / ops if ops else 0.0, "area_mm2": a_um2 * 1e-6, "ops": ops,
        "energy_pj_by_component": energy, "area_um2_by_component": area,
        "ops_convention": (f"1 MAC = 2 ops at {chip.input_bits}b input x {chip.weight_bits}b "
                           f"weight; *_1b = ops x {bits}"),
        "energy_share_by_component": _shares(energy),
        "area_share_by_component": _shares(area),
        "basis_detail": _basis_detail(chip, used_cal) + (f" ({missing})" if missing else ""),
        "step": _step(chip, block, table, cal),
        "adc": (adc := _converter(chip, table, cal)),
        "uncertainty": _uncertainty(chip, adc, {"tops_per_w": tops_w,
                                                 "tops_per_mm2": tops_mm2}, used_cal),
        "unstated": unstated,
        # a reference chip (the ideal preset's 24-b ADC): its figures describe no hardware,
        # as the report's headline says (the datasheet printed 543,152 mm2 without a word)
        "caveat": cost_caveat(chip),
    }


def _shares(values: dict[str, float]) -> dict[str, float]:
    """Each entry's fraction of the total (0 where the total is 0)."""
    total = float(sum(values.values()))
    return {k: (float(v) / total if total > 0 else 0.0) for k, v in values.items()}


def _no_calibration(chip: ChipConfig) -> str:
    """Why ``chip`` has no per-chip calibration to apply."""
    from ._prices import CALIBRATIONS, _fitted_for

    if chip.name in CALIBRATIONS:
        node, cell, cost_model, adc_kind = _fitted_for(chip.name)
        if (node, cell, cost_model) == (chip.tech.node_nm, chip.device.cell,
                                        chip.tech.cost_model):
            return (f"{chip.name}'s factors are its {adc_kind.value} converter's, and this "
                    f"copy's converter is {chip.adc.kind.value}")
        return (f"{chip.name} is calibrated at its own node, cell and cost model only, which "
                "this copy moves (a new chip)")
    return (f"{chip.name} has no per-chip calibration (cimsim.cost.CALIBRATIONS holds "
            f"{', '.join(sorted(CALIBRATIONS))})")


def _basis_detail(chip: ChipConfig, used_cal: bool) -> str:
    if used_cal:
        return ("calibrated: per-chip factors fitted to this chip's publication "
                "(cimsim.cost.CALIBRATIONS); fitted, not predicted")
    if chip.tech.cost_model is CostModel.PHYSICAL:
        return ("predicted: physical component models (circuits and the ADC survey's fits), "
                "no per-chip factor")
    return ("predicted: technology tables (tech.cost_model = 'tables'), no per-chip factor "
            "(docs/validation.md shows them uncalibrated on the chips they were fitted to)")


def _step(chip: ChipConfig, block: Any, table: Any, cal: Any) -> dict[str, Any]:
    """One step of the standard workload's busiest array, term by term.

    ``t_step = max(window, conversions per ADC x t_conv)`` (:func:`.latency.step_ns`), the
    window being the stated one or the predicted settling, whichever is longer, or where the
    chip states none the predicted window (settling x :data:`.settling.WINDOW_OVER_SETTLING`;
    :func:`.latency.compute_window_ns`). Returns ``step_ns``; ``stated_window_ns`` (None where
    the chip states no window and the predicted one replaces it); ``settling_ns`` (None where
    settling is not predicted: the ``tables`` model or a digital adder tree);
    ``conversions_per_adc``, ``t_conv_ns`` and ``conversions_ns`` (for a digital chip: column
    sums of one clock period each); ``analog_phases`` (the windows of one step: ``B`` with
    ``tech.input_drive = 'bit_planes'``, else 1); ``terms`` (name -> ns of the terms in the
    ``max``, the window terms times ``analog_phases``; ``read_pulse`` where the cells' energy
    is priced over a read pulse ``tech.t_read_ns`` the window cannot end before, apart from a
    stated window: :func:`.latency.read_pulse_priced`);
    ``limits`` (the terms equal to the step, conversions/clock first) and ``limit`` (the first).
    """
    from . import bitplanes, settling
    from .latency import block_latency, read_pulse_priced, stated_window_ns

    lat = block_latency(block, N_VECTORS, table, cal)
    tech = chip.tech
    settles = settling.applies(chip)
    stated_ns = stated_window_ns(chip) if (tech.window_stated or not settles) else None
    settle_ns = settling.settle_time_ns(chip, table) if settles else None
    n_mux, t_conv = int(lat["n_conversions_per_adc"]), float(lat["t_conv_ns"])
    conv_name = "clock" if chip.adc.kind is ADCKind.DIGITAL else "conversions"
    terms = {conv_name: n_mux * t_conv}
    phases = bitplanes.analog_phases(chip)  # bit-plane drive: B windows per step
    if stated_ns is not None:
        terms["stated_window"] = phases * stated_ns
    if settle_ns is not None and tech.window_stated:
        terms["settling"] = phases * settle_ns
    elif settle_ns is not None:
        terms["predicted_window"] = phases * settling.predicted_window_ns(chip, table)
    if (settles and read_pulse_priced(chip)
            and (stated_ns is None or tech.t_integrate_ns is not None)):
        # the read pulse is a term of its own where it is not the stated window itself
        terms["read_pulse"] = phases * tech.t_read_ns
    t_step = float(lat["t_step_ns"])
    limits = tuple(k for k, v in terms.items() if math.isclose(v, t_step, rel_tol=1e-9))
    return {"step_ns": t_step, "stated_window_ns": stated_ns, "settling_ns": settle_ns,
            "analog_phases": phases,
            "conversions_per_adc": n_mux, "t_conv_ns": t_conv, "conversions_ns": n_mux * t_conv,
            "terms": terms, "limits": limits, "limit": limits[0] if limits else conv_name}


def _converter(chip: ChipConfig, table: Any, cal: Any) -> dict[str, Any]:
    """The converter's kind, bits, sample rate and the survey's corner rate for its bits.

    ``priced_by``: ``adder tree`` or ``ripple adders`` (digital CIM, no converter; the
    column's style, ``tech.digital_column``), ``tables`` (the ``tables``
    cost model), ``sense amp`` (a 1-b SAR/flash/single-slope conversion, one comparator
    decision priced by the tables), ``circuit`` (a time-to-digital converter, ``adc.kind =
    'tdc'``: its circuit model, :func:`.tables.tdc_energy_pj`, whose rate is its own timing:
    ``rate_factor`` 1) or ``survey`` (the ADC survey's fit for its family, times
    :func:`.adc_survey.rate_factor` at its sample rate)."""
    from . import adc_survey, ripple
    from ._prices import table_adc_bits
    from .models import ADCModel
    from .tables import one_comparator

    kind, bits = chip.adc.kind, chip.adc.bits
    rate = float(ADCModel(chip, table, cal).sample_rate_hz())
    out: dict[str, Any] = {"kind": kind.value, "bits": bits, "sample_rate_hz": rate}
    if kind is ADCKind.DIGITAL:
        column = "ripple adders" if ripple.applies(chip) else "adder tree"
        return {**out, "priced_by": column, "corner_rate_hz": None, "rate_factor": None,
                "above_corner": None}
    b = table_adc_bits(bits)
    corner = adc_survey.corner_rate_hz(b)
    if chip.tech.cost_model is not CostModel.PHYSICAL:
        priced = "tables"
    elif kind is ADCKind.TDC:
        return {**out, "priced_by": "circuit", "corner_rate_hz": corner, "rate_factor": 1.0,
                "above_corner": rate > corner}
    else:
        priced = "sense amp" if one_comparator(kind, b) else "survey"
    return {**out, "priced_by": priced, "corner_rate_hz": corner,
            "rate_factor": adc_survey.rate_factor(b, rate), "above_corner": rate > corner}


VALIDATION_DOC = Path(__file__).resolve().parents[2] / "docs" / "validation.md"
"""The validation page (``python scripts/validate_presets.py`` writes it); present in a
checkout of the repository, absent from an installed wheel."""
VALIDATION_ROWS = Path(__file__).resolve().parents[1] / "presets" / "published" / "validation.csv"
"""The validation table's prediction rows, shipped with the published chips' TOMLs (the same
script writes it beside the page): ``chip``, ``point``, ``metric``, ``key`` (the datasheet's),
``published``, ``predicted``, ``ratio`` (predicted / published) and the chip's
:func:`validation_class` (``readout``, ``window``)."""
_EFFICIENCY, _DENSITY = ("tops_per_w", "tops_per_w_1b"), ("tops_per_mm2", "tops_per_mm2_1b")
MIN_CLASS_ROWS = 3
"""Fewest rows of a chip's class for :func:`validation_range` to give a span."""
SPAN_QUANTILES = (0.1, 0.5, 0.9)
"""The quantiles of published / predicted that :func:`validation_range` gives: the central
80 % of the class's rows and their median (the extremes are single chips' misses, which a
whole-table span would let set the band)."""


def validation_class(chip: ChipConfig) -> dict[str, str]:
    """Which validation rows a prediction of ``chip`` is most like: its read-out
    (``digital``: an adder tree, no converter; ``analog``: a converter) and, for an analog
    chip, whether its compute window is ``stated`` (a published input) or ``predicted``
    (``tech.window_stated = false``: its TOPS rest on the model's timing; a digital chip: its
    clock, ``n/a``). The validation table shows why: the density rows of analog chips that
    state no window miss by far more than the others (docs/validation.md)."""
    if chip.adc.kind is ADCKind.DIGITAL:
        return {"readout": "digital", "window": "n/a"}
    return {"readout": "analog", "window": "stated" if chip.tech.window_stated else "predicted"}


def validation_spread(path: Path | str | None = None) -> dict[str, Any] | None:
    """The spread of the uncalibrated predictions in the validation table.

    Reads :data:`VALIDATION_ROWS` (or ``path``; recomputing the rows takes ~25 s, too slow for
    a CLI call). Returns ``source``, ``n_rows``, ``n_within_2x``, ``geomean_factor`` (the
    geometric mean of ``max(r, 1/r)``) and ``worst`` (``chip``, ``metric``, ``ratio``,
    ``factor``), or None where the file is missing or holds no row."""
    rows = validation_rows(path)
    if not rows:
        return None
    out = _summary([r["ratio"] for r in rows])
    worst = rows[int(np.argmax(out.pop("factors")))]
    out["worst"] = {"chip": worst["chip"], "metric": worst["metric"], "ratio": worst["ratio"],
                    "factor": max(worst["ratio"], 1.0 / worst["ratio"])}
    return {"source": "docs/validation.md" if path is None else str(path), **out}


def validation_range(chip: ChipConfig | dict[str, str],
                     path: Path | str | None = None) -> dict[str, Any] | None:
    """How published figures compare with predictions for chips of ``chip``'s class (a chip,
    or a class as :func:`validation_class` returns it).

    For TOPS/W the rows of chips with the same read-out; for TOPS/mm^2 also the same window
    (:func:`validation_class`): each ``{"n_rows", "n_within_2x", "geomean_factor",
    "published_over_predicted": (10th percentile, median, 90th percentile)}`` (NumPy's linear
    quantiles, :data:`SPAN_QUANTILES`), None with fewer than :data:`MIN_CLASS_ROWS` rows. Keys
    ``class``, ``tops_per_w``, ``tops_per_mm2``; None where the rows file is missing. The span
    is what the table has seen, not a confidence interval: a new chip can land outside it, as a
    tenth of the table's rows do at each end."""
    rows = validation_rows(path)
    if not rows:
        return None
    cls = validation_class(chip) if isinstance(chip, ChipConfig) else dict(chip)
    out: dict[str, Any] = {"class": cls}
    for key in ("tops_per_w", "tops_per_mm2"):
        ratios = [r["ratio"] for r in class_rows(rows, cls, key)]
        summary = _summary(ratios)
        del summary["factors"]
        q = np.quantile([1.0 / r for r in ratios], SPAN_QUANTILES) if ratios else ()
        summary["published_over_predicted"] = (
            tuple(float(v) for v in q) if len(ratios) >= MIN_CLASS_ROWS else None)
        out[key] = summary
    return out


def class_rows(rows: Iterable[dict[str, Any]], cls: dict[str, str], key: str
               ) -> list[dict[str, Any]]:
    """The rows of a class (:func:`validation_class`) for one figure: ``tops_per_w`` (its
    1b-normalised form too) of the same read-out; ``tops_per_mm2`` also of the same window."""
    keys, same = ((_EFFICIENCY, ("readout",)) if key == "tops_per_w"
                  else (_DENSITY, ("readout", "window")))
    return [r for r in rows if r["key"] in keys and all(r[k] == cls[k] for k in same)]


def _summary(ratios: list[float]) -> dict[str, Any]:
    """``n_rows``, ``n_within_2x``, ``geomean_factor`` and ``factors`` (``max(r, 1/r)`` per
    row) of predicted / published ratios."""
    factors = [max(r, 1.0 / r) for r in ratios]
    return {"n_rows": len(ratios), "n_within_2x": sum(f <= 2.0 for f in factors),
            "geomean_factor": float(np.exp(np.mean(np.log(factors)))) if factors else None,
            "factors": factors}


def validation_rows(path: Path | str | None = None) -> tuple[dict[str, Any], ...]:
    """The rows of the validation file (:data:`VALIDATION_ROWS`, or ``path``), with
    ``published`` and ``predicted`` as floats and their ``ratio``; cached per version of the
    file: read, never change them. Empty where the file is missing."""
    csv_path = Path(VALIDATION_ROWS if path is None else path)
    try:
        stamp = csv_path.stat().st_mtime_ns
    except OSError:
        return ()
    return _rows_of(str(csv_path), stamp)


@functools.lru_cache(maxsize=4)
def _rows_of(csv_path: str, stamp: int) -> tuple[dict[str, Any], ...]:
    """The rows of one version of the file (``stamp``, its modification time): every datasheet
    carries the spread, so the file is parsed once, not per call."""
    import csv

    rows: list[dict[str, Any]] = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for text in csv.DictReader(f):
            row: dict[str, Any] = dict(text)
            published, predicted = float(text["published"]), float(text["predicted"])
            row.update(published=published, predicted=predicted, ratio=predicted / published)
            if row["ratio"] > 0:
                rows.append(row)
    return tuple(rows)


def _uncertainty(chip: ChipConfig, adc: dict[str, Any], figures: dict[str, float],
                 used_cal: bool) -> dict[str, Any]:
    """The survey scatter of the converter's family (None: no converter priced by the survey),
    the validation table's spread (:func:`validation_spread`) and, for a physical-model
    prediction, its class's span (:func:`validation_range`) with the ``likely`` figures it
    gives (``figures`` times the class's 10th and 90th percentiles of published / predicted;
    None where the class has too few rows, the chip is calibrated or priced by the tables: the
    table's rows are the physical model's)."""
    from . import adc_survey

    kind = chip.adc.kind
    survey = adc["priced_by"] == "survey"
    predicted = chip.tech.cost_model is CostModel.PHYSICAL and not used_cal
    same = validation_range(chip) if predicted else None
    likely: dict[str, tuple[float, float] | None] = {}
    for key in ("tops_per_w", "tops_per_mm2"):
        span = same[key]["published_over_predicted"] if same is not None else None
        likely[key] = (figures[key] * span[0], figures[key] * span[2]) if span else None
    return {"adc_family": adc_survey.family_of(kind).family if survey else None,
            "adc_scatter_factor": adc_survey.scatter_factor(kind) if survey else None,
            "validation": validation_spread(), "validation_doc": "docs/validation.md",
            "same_class": same, "likely": likely}


_LIMIT_TEXT = {"stated_window": "the stated compute window", "settling": "the predicted settling",
               "predicted_window": "the predicted window (no window stated)",
               "read_pulse": "the read pulse (tech.t_read_ns, the cells' read energy is priced "
                             "over it)",
               "conversions": "the conversions", "clock": "the digital clock"}


def _si(value: float, unit: str) -> str:
    """``value`` with an SI prefix (k, M, G)."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def likely_lines(sheet: dict[str, Any]) -> list[str]:
    """The headline's ``likely`` lines: each figure times its class's central 80 % of published
    / predicted in the validation table (:func:`validation_range`); none for a calibrated or a
    ``tables``-model sheet, whose figures the table does not describe, nor for figures that
    describe no hardware (a ``caveat``: a range around them would read as a prediction)."""
    unc = sheet["uncertainty"]
    same = unc["same_class"]
    if same is None or sheet.get("caveat"):
        return []
    cls = same["class"]
    lines = []
    for key, label in (("tops_per_w", "TOPS/W"), ("tops_per_mm2", "TOPS/mm2")):
        what = f"{cls['readout']} read-out"
        if key == "tops_per_mm2" and cls["window"] != "n/a":
            what += f", window {cls['window']}"
        rows = same[key]["n_rows"]
        span = same[key]["published_over_predicted"]
        if span is None:
            lines.append(f"likely {label:<9} no span: {rows} validation row(s) of its class "
                         f"({what}), fewer than {MIN_CLASS_ROWS}")
            continue
        lo, hi = unc["likely"][key]
        lines.append(f"likely {label:<9}{lo:>8.4g} - {hi:<8.4g} (published/predicted "
                     f"{span[0]:.3g}x-{span[2]:.3g}x, median {span[1]:.3g}x: the central 80 % "
                     f"of {rows} validation rows, {what})")
    return lines


def unstated_lines(sheet: dict[str, Any]) -> list[str]:
    """The headline's line naming what the description left to cimsim's defaults (none for a
    ``ChipConfig`` or a description that states every key input)."""
    if not sheet.get("unstated"):
        return []
    return ["not in the description, cimsim's defaults used (docs/new-chip.md, section 3): "
            + "; ".join(sheet["unstated"])]


def breakdown_lines(sheet: dict[str, Any]) -> list[str]:
    """The ``--breakdown`` text of a :func:`datasheet` mapping: energy per op and area by
    component, the step's terms and which sets it, the converter's rate against the survey's
    corner, the basis and the uncertainty."""
    lines = [f"energy per op by component ({sheet['scope']}; "
             f"{sheet['energy_pj_per_op'] * 1e3:.4g} fJ/op in all):"]
    ops = sheet["ops"]
    for c, e in sheet["energy_pj_by_component"].items():
        share = sheet["energy_share_by_component"][c]
        lines.append(f"  {c:<12}{e / ops * 1e3:>12.4g} fJ/op {share * 100:>7.1f} %")
    lines.append(f"area by component ({sheet['area_mm2'] * 1e6:.0f} um2 in all):")
    for c, a in sheet["area_um2_by_component"].items():
        share = sheet["area_share_by_component"][c]
        lines.append(f"  {c:<12}{a:>12.0f} um2   {share * 100:>7.1f} %" if a >= 100 else
                     f"  {c:<12}{a:>12.3g} um2   {share * 100:>7.1f} %")
    st = sheet["step"]
    limits = " = ".join(_LIMIT_TEXT[k] for k in st["limits"])
    lines.append(f"step: {st['step_ns']:.4g} ns, set by {limits} "
                 "(max of the window and the conversions, cimsim.cost.latency.step_ns)")
    if st["stated_window_ns"] is not None:
        digital = sheet["adc"]["priced_by"] in ("adder tree", "ripple adders")
        # a digital read-out's window is its clock (latency.stated_window_ns): the analog
        # fields' label read as if a window had been stated
        lines.append(f"  stated window    {st['stated_window_ns']:>10.4g} ns " + (
            "(one digital clock, 1000 / tech.clock_mhz; a sensed resistive cell's read pulse "
            "tech.t_read_ns where longer, its default 10 ns where not stated: see the unstated "
            "inputs)" if digital else
            "(tech.t_integrate_ns, else tech.t_read_ns)"))
    else:
        lines.append("  stated window          none (tech.window_stated = false)")
    if st["settling_ns"] is not None:
        lines.append(f"  settling         {st['settling_ns']:>10.4g} ns "
                     "(predicted: ln 2^(b+1) x R_drive x C_column)")
        if "predicted_window" in st["terms"]:
            window_ns = st["terms"]["predicted_window"] / st["analog_phases"]
            lines.append(f"  predicted window {window_ns:>10.4g} ns "
                         "(settling x the fitted window/settling ratio, "
                         "cimsim.cost.settling.WINDOW_OVER_SETTLING)")
    else:
        lines.append("  settling           not predicted (tables model or digital adder tree)")
    if "read_pulse" in st["terms"]:
        lines.append(f"  read pulse       {st['terms']['read_pulse'] / st['analog_phases']:>10.4g}"
                     " ns (tech.t_read_ns: the window lasts no less, the cells' read energy is "
                     "priced over it)")
    if st["analog_phases"] > 1:
        lines.append(f"  analog phases    {st['analog_phases']:>10d}    (tech.input_drive = "
                     "'bit_planes': one window per input bit-plane)")
    name = "clock" if "clock" in st["terms"] else "conversions"
    what = ("column sums x clock period" if name == "clock"
            else "conversions per ADC x conversion time")
    lines.append(f"  {name:<16} "
                 f"{st['conversions_ns']:>10.4g} ns "
                 f"({st['conversions_per_adc']} x {st['t_conv_ns']:.4g} ns: {what})")
    adc = sheet["adc"]
    if adc["corner_rate_hz"] is None:
        column = ("a full adder per bit-cell, ripple down the column" if adc["priced_by"]
                  == "ripple adders" else "an adder tree per column")
        lines.append(f"converter: none (adc.kind = 'digital': {column}, one "
                     f"column sum per clock, {_si(adc['sample_rate_hz'], 'S/s')})")
    else:
        side = "ABOVE" if adc["above_corner"] else "below"
        priced = ("the tables (tech.cost_model = 'tables': the rate is not priced)"
                  if adc["priced_by"] == "tables" else
                  "the TDC circuit model (delay stages, flip-flops, comparator decisions; the "
                  "rate is not priced)" if adc["priced_by"] == "circuit" else
                  f"the {adc['priced_by']} (energy per conversion x {adc['rate_factor']:.3g} "
                  "for the rate)")
        lines.append(f"converter: {adc['kind']} {adc['bits']} b at "
                     f"{_si(adc['sample_rate_hz'], 'S/s')}, {side} the survey's "
                     f"{_si(adc['corner_rate_hz'], 'S/s')} corner for its bits; priced by "
                     f"{priced}")
    lines.append(f"basis: {sheet['basis_detail']}")
    unc = sheet["uncertainty"]
    parts = []
    if unc["adc_scatter_factor"] is not None:
        parts.append(f"converter energy and area: the ADC survey scatters x"
                     f"{unc['adc_scatter_factor']:.2f} (1 sd) around its {unc['adc_family']} "
                     "line")
    else:
        parts.append("converter: not priced by the ADC survey (no survey scatter)")
    val = unc["validation"]
    if val is None:
        parts.append(f"published chips' predicted/published spread: see "
                     f"{unc['validation_doc']}")
    else:
        w = val["worst"]
        parts.append(f"published chips, physical model vs published ({unc['validation_doc']}): "
                     f"{val['n_within_2x']} of {val['n_rows']} rows within 2x, geometric-mean "
                     f"error {val['geomean_factor']:.2f}x, worst {w['factor']:.3g}x "
                     f"({w['chip']} {w['metric']})")
    lines.append("uncertainty: " + "; ".join(parts))
    return lines

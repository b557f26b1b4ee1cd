"""Reports: DataFrames of what a deployed model did and cost; files (CSV, JSON, PNG, HTML).

Presentation only: counts come from the run's events, energy/area/latency from
``cimsim.cost.estimate`` (``docs/cost-model.md``). Every column name carries its unit (``_pj``,
``_um2``, ``_mm2``, ``_ns``, ``_pct``) or says it is a count (``n_``). matplotlib is imported
here only, inside the plot functions, and draws on the Agg canvas (no display needed).
"""

from __future__ import annotations

import io
import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import _html
from ._atomic import write_set
from ._json import json_safe, numeric_name, saved_numbers
from ._version import __version__
from .config import ADCKind, ChipConfig, _is_int
from .errors import CimsimError
from .events import Action, Component, Events, event_key
from .work import ModelWork

__all__ = ["PALETTE", "Report", "component_color", "headline_lines", "plot_area_by_component",
           "plot_energy_per_layer", "plot_fidelity_per_layer", "plot_latency_per_layer",
           "plot_accuracy_time", "plot_pareto", "plot_training"]

_FIGURES = {
    "energy_per_layer.png": "Energy per inference, per layer, stacked by component",
    "area_by_component.png": "Chip area by component",
    "latency_per_layer.png": "Latency per inference, per layer",
    "fidelity_per_layer.png": "Per-layer SQNR against the float layer, and ADC code use",
    "training.png": "Training: the loss per batch and per epoch; accuracy before and after",
}
#: The note of a report whose model runs the ranges training learned (``SimModel.ranges_learned``):
#: its clipping comes from them, not from calibration data.
LEARNED_RANGES_NOTE = ("ranges: the input quantizers' and ADCs' ranges are the prepared "
                       "model's (cimsim.train.prepare, then what training learned), not "
                       "calibrated again on deploy")
_TABLES = ("layers", "breakdown", "components", "area", "blocks", "digital")


def _frame(rows: list[dict], columns: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns) if rows or columns else pd.DataFrame()


def _check_n_inputs(n_inputs: Any) -> None:
    """The count of evaluated inputs a summary records: an integer >= 0 (-3 was saved)."""
    if not _is_int(n_inputs) or n_inputs < 0:
        raise ValueError(f"n_inputs = {n_inputs!r} is invalid; allowed: an integer >= 0")


def _checked_number(name: str, value: Any, allowed: str, ok: Any) -> float:
    """``value`` as a float where ``ok`` of it holds, else the ValueError naming ``name`` and
    what is ``allowed`` (also for no number at all: ``float(None)`` failed naming nothing)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not ok(number):
        raise ValueError(f"{name} = {value!r}; allowed: {allowed}")
    return number


def _check_saved(p: Path, data: Any) -> None:
    """The shape :meth:`Report.save` writes: an object with the chip, the totals and a list of
    row objects per table (a table's rows name their layer)."""
    def bad(what: str) -> CimsimError:
        return CimsimError(f"{p}: not a report cimsim saved ({what})")

    if not isinstance(data, dict):
        raise bad(f"a JSON {type(data).__name__}, not an object")
    missing = [k for k in ("cimsim_version", "chip", "totals", "layers") if k not in data]
    if missing:
        raise bad(f"no {', '.join(repr(k) for k in missing)}")
    for key in ("chip", "totals", "layer_events", "summary"):
        if not isinstance(data.get(key, {}), dict):
            raise bad(f"{key!r} is not an object")
    for key in ("chip", "totals"):  # save writes both whole: an empty one was the default
        if not data[key]:
            raise bad(f"{key!r} is empty")
    for name in _TABLES:
        rows = data.get(name, [])
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise bad(f"{name!r} is not a list of rows")
        if name in ("layers", "components", "breakdown") and any("layer" not in r for r in rows):
            raise bad(f"a row of {name!r} has no 'layer'")
    notes = data.get("notes", [])  # (a string was read as one note per character)
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise bad("'notes' is not a list of strings")


@dataclass
class Report:
    """What a simulated model did and cost: per layer, per component, totals.

    Attributes
    ----------
    layers : DataFrame
        One row per mapped layer: shapes, arrays, utilization, counts per inference, and
        ``energy_pj_per_inference`` (with ``energy_<component>_pj_per_inference``),
        ``latency_ns_per_inference``, ``area_um2`` (occupied arrays and tile share).
    components : DataFrame
        One row per (layer, component, action, bits): ``n_events_per_inference``,
        ``energy_pj_per_event``, ``energy_pj_per_inference``. Rows the estimator derives
        (``cimsim.events.DERIVED``): ``adc/leak``, ``cell/refresh``, ``interconnect/bus_bit``,
        ``dac/wordline``; events not tied to a layer (time-multiplexing) under the layer
        ``(reprogramming)``.
    totals : dict
        Whole-model figures: counts, ``energy_pj_per_inference``, ``area_mm2`` and
        ``area_mm2_used``, ``latency_ns_per_inference`` (with
        ``reprogramming_latency_ns_per_inference``), ``tops``, ``tops_per_w``,
        ``tops_per_mm2``, ``tops_per_mm2_used`` and the ``_1b`` (1b-normalised) variants,
        ``ops_convention``, ``cost_meaningful`` / ``cost_caveat`` (``cimsim.cost.estimate``).
    digital : DataFrame
        Layers and products kept digital, with the reason.
    chip : ChipConfig
    breakdown : DataFrame
        One row per (layer, component): ``energy_pj_per_inference``, ``energy_pct`` and the
        layer's ``area_um2`` of that component.
    area : DataFrame
        Chip instances per component: ``n_instances``, ``area_um2_per_instance``,
        ``area_um2``, ``area_pct``.
    blocks : DataFrame
        Latency of every programmed block (planes, row groups, conversions per ADC, step).
    notes : list of str
        What the cost model leaves out, calibration in use.
    summary : dict
        What the run measured beside the costs, set by whoever evaluated the model
        (:meth:`set_accuracy`, :meth:`set_output_fidelity`): ``float_accuracy`` and
        ``simulated_accuracy`` (fractions in [0, 1]) or ``output_cosine`` (the cosine between
        the simulated and the float model's outputs), with ``n_eval_inputs``. Empty when
        nothing was measured; the HTML page's summary shows it first.
    training : dict
        What trained the model before it was deployed, set by ``cimsim train``
        (:meth:`set_training`): its ``training.json`` (method, epochs, ``loss`` per epoch,
        ``batch_loss`` per batch of each epoch, the untrained and twin figures). Empty for a
        model deployed as it was; when set, the report draws ``training.png``.
    """

    layers: pd.DataFrame
    components: pd.DataFrame
    totals: dict[str, Any]
    digital: pd.DataFrame
    chip: ChipConfig
    layer_events: dict[str, Events] = field(default_factory=dict)
    breakdown: pd.DataFrame = field(default_factory=pd.DataFrame)
    area: pd.DataFrame = field(default_factory=pd.DataFrame)
    blocks: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)
    version: str = __version__
    summary: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------------------------------
    @classmethod
    def from_sim(cls, sim, *, pipelined: bool = False) -> Report:
        """The report of every forward of a deployed model since deploy (or ``reset``).

        ``pipelined`` chooses the chip latency: layer-by-layer (sum) or pipelined (the slowest
        layer's period).
        """
        report = cls.from_work(sim.work(), pipelined=pipelined, fidelity=sim.fidelity)
        if sim.ranges_learned:
            report.notes.append(LEARNED_RANGES_NOTE)
        return report

    @classmethod
    def from_work(cls, work: ModelWork, *, pipelined: bool = False,
                  fidelity: pd.DataFrame | None = None) -> Report:
        """The report of a deployed model's work (``SimModel.work()``).

        ``fidelity``: a ``SimModel.trace()`` frame (one row per layer, ``layer`` column); its
        columns are added to :attr:`layers` (``sqnr_db``, ``rel_error``, ...).
        """
        from .cost import estimate

        chip: ChipConfig = work.chip
        cost = estimate(work, pipelined=pipelined)
        rows = _layer_rows(work, cost)
        layer_events = {w.name: w.events for w in work.layers}
        layers = _with_fidelity(pd.DataFrame(rows), fidelity)
        components = _frame(cost.events, ["layer", "component", "action", "bits",
                                          "n_events_per_inference", "energy_pj_per_event",
                                          "energy_pj_per_inference"])
        digital = pd.DataFrame(list(work.digital), columns=["layer", "type", "reason"])
        area = _frame(cost.area, ["component", "scope", "instance", "n_instances",
                                  "area_um2_per_instance", "area_um2"])
        if len(area):
            total = float(area["area_um2"].sum())
            area["area_pct"] = 100.0 * area["area_um2"] / total if total else 0.0
        totals = {
            "n_inferences": work.n_inferences,
            "n_arrays_used": work.n_arrays_needed,
            "n_arrays_available": chip.array.n_arrays,
            "time_multiplexed": work.n_arrays_needed > chip.array.n_arrays,
            # arrays' worth of weights held at once (x tech.weight_sets_stored): beyond the
            # arrays but within this, layers take turns switching sets, none is rewritten
            "n_array_slots": chip.array_slots,
            # the time after programming the devices were seen at (simulate --time writes
            # one report per time: the folder name said it, the report not)
            **({} if work.t_s is None else {"t_inference_s": work.t_s}),
            "n_conversions_per_inference":
                float(layers["n_conversions_per_inference"].sum()) if rows else 0.0,
        }
        totals.update(cost.totals)
        totals["n_reprogrammed_arrays_per_inference"] = work.other_events.get(
            event_key(Component.ARRAY, Action.REPROGRAM)) / max(work.n_inferences, 1)
        breakdown = _breakdown(cost)
        blocks = _frame(cost.blocks)
        return cls(layers, components, totals, digital, chip, layer_events, breakdown, area,
                   blocks, list(cost.notes))

    # ---------------------------------------------------------------------------------------
    def set_accuracy(self, float_accuracy: float, simulated_accuracy: float,
                     n_inputs: int) -> None:
        """Record the accuracy of the float and the simulated model on ``n_inputs`` labelled
        inputs (fractions in [0, 1]); the summary of :meth:`to_html` shows them."""
        fractions = {name: _checked_number(name, value, "a fraction in [0, 1]",
                                           lambda v: 0.0 <= v <= 1.0)
                     for name, value in (("float_accuracy", float_accuracy),
                                         ("simulated_accuracy", simulated_accuracy))}
        _check_n_inputs(n_inputs)
        self.summary.update(**fractions, n_eval_inputs=int(n_inputs))

    def set_output_fidelity(self, cosine: float, n_inputs: int) -> None:
        """Record how close the simulated outputs are to the float model's when no labels were
        given: ``cosine`` between the two (in [-1, 1]; NaN where non-finite outputs leave it
        undefined, :func:`cimsim.evaluate.output_cosine`) over ``n_inputs`` inputs."""
        c = _checked_number("cosine", cosine, "a number in [-1, 1], or NaN",
                            lambda v: -1.0 <= v <= 1.0 or math.isnan(v))
        _check_n_inputs(n_inputs)
        self.summary.update(output_cosine=c, n_eval_inputs=int(n_inputs))

    def set_training(self, training: Mapping[str, Any]) -> None:
        """Record how the model was trained for the chip (``cimsim train``'s summary, as its
        ``training.json`` holds it): the page then shows the loss curve and the accuracy before
        and after training (``training.png``, :func:`plot_training`)."""
        if not isinstance(training, Mapping):
            raise TypeError(f"training = {type(training).__name__}; allowed: a mapping (the "
                            "summary cimsim train writes to training.json)")
        self.training = _checked_training(dict(training))

    def summary_rows(self) -> list[tuple[str, str, str]]:
        """The summary that opens :meth:`to_html`: ``(quantity, value, basis)`` per row.

        ``basis`` says where a figure comes from: ``simulated`` (accuracy, fidelity),
        ``calibrated`` (a cost the calibration to a published chip scales, naming the
        components), ``predicted`` (technology tables only), ``count``, or ``trained`` (how
        :meth:`set_training`'s run trained the model). The values are the
        :attr:`totals` and :attr:`summary` figures with their units, so they equal
        ``report.json``'s.
        """
        return _summary_rows(self)

    def __repr__(self) -> str:
        # the headline, not the dataclass's dump of every table and the whole chip (12 KB, a
        # 5,000-character line, the figures buried in the totals dict)
        n = self.totals.get("n_inferences")
        head = (f"Report(chip={self.chip.name!r}, layers={len(self.layers)}, inferences="
                f"{'?' if n is None else int(n)})")
        return "\n".join([head, *(f"  {line}" for line in self.headline_lines())])

    def _repr_html_(self) -> str:
        """A notebook's view: the summary table that opens :meth:`to_html` (the whole page,
        its images inlined, is :meth:`to_html` or :meth:`save`)."""
        return _html.rows(self.summary_rows(), header=("quantity", "value", "basis"),
                          css_class="summary")

    def headline_lines(self) -> list[str]:
        """The report's headline, one figure per line (what ``cimsim demo`` and ``cimsim
        simulate`` print): see :func:`headline_lines`."""
        return headline_lines(self.totals)

    def to_frame(self) -> pd.DataFrame:
        """The per-layer table."""
        return self.layers.copy()

    def to_dict(self) -> dict[str, Any]:
        return {
            "cimsim_version": self.version,
            "chip": self.chip.to_dict(),
            "totals": self.totals,
            "notes": list(self.notes),
            "summary": dict(self.summary),
            **({"training": dict(self.training)} if self.training else {}),
            **{name: getattr(self, name).to_dict(orient="records") for name in _TABLES},
            "layer_events": {name: ev.to_records() for name, ev in self.layer_events.items()},
        }

    @classmethod
    def load(cls, path: str | Path) -> Report:
        """Re-read a report saved by :meth:`save` (a folder, or its ``report.json``).

        Raises
        ------
        FileNotFoundError
            No ``report.json`` there.
        CimsimError
            The file is not JSON, or not a report :meth:`save` wrote (the message names the
            file and what is wrong), found before anything is re-rendered.
        """
        p = Path(path)
        if p.is_dir():
            p = p / "report.json"
        if not p.is_file():
            raise FileNotFoundError(f"no saved report at {str(path)!r} (report.json not found)")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CimsimError(f"{p}: not a cimsim report (not JSON: {exc})") from None
        _check_saved(p, data)
        try:
            return cls._from_saved(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # ConfigError (a bad chip) is a ValueError: its message names the field
            raise CimsimError(f"{p}: not a report cimsim saved ({type(exc).__name__}: "
                              f"{exc})") from None

    @classmethod
    def _from_saved(cls, data: dict[str, Any]) -> Report:
        frames = {name: pd.DataFrame([saved_numbers(r, f"{name!r} row {i}")
                                      for i, r in enumerate(data.get(name, []))])
                  for name in _TABLES}
        if frames["digital"].empty:
            frames["digital"] = pd.DataFrame(columns=["layer", "type", "reason"])
        layer_events = {
            name: Events({(r["component"], r["action"], r["bits"]): r["count"] for r in recs})
            for name, recs in data.get("layer_events", {}).items()
        }
        return cls(
            layers=frames["layers"], components=frames["components"],
            totals=_nan_for_null(saved_numbers(data.get("totals", {}), "'totals'")),
            digital=frames["digital"],
            chip=ChipConfig.from_dict(data["chip"]), layer_events=layer_events,
            breakdown=frames["breakdown"], area=frames["area"], blocks=frames["blocks"],
            notes=list(data.get("notes", [])), version=data.get("cimsim_version", "unknown"),
            summary=_nan_for_null(saved_numbers(data.get("summary", {}), "'summary'")),
            training=_saved_training(data.get("training", {})),
        )

    # ---------------------------------------------------------------------------------------
    def figures(self) -> dict:
        """The report's figures by file name (matplotlib Figures)."""
        out = {}
        if len(self.layers) and "energy_pj_per_inference" in self.layers:
            out["energy_per_layer.png"] = plot_energy_per_layer(self.layers)
        if len(self.area):
            out["area_by_component.png"] = plot_area_by_component(self.area)
        if len(self.layers) and "latency_ns_per_inference" in self.layers:
            out["latency_per_layer.png"] = plot_latency_per_layer(self.layers)
        if (len(self.layers) and "sqnr_db" in self.layers
                and self.layers["sqnr_db"].notna().any()):
            out["fidelity_per_layer.png"] = plot_fidelity_per_layer(
                self.layers, readout="sum" if self.chip.adc.kind is ADCKind.DIGITAL else "ADC")
        if self.training:
            out["training.png"] = plot_training(self.training, self.summary)
        return out

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write the CSV tables, ``report.json``, the PNG figures and ``report.html`` into the
        folder ``out_dir`` (created if missing)."""
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise FileExistsError(f"Report.save: {str(out)!r} is a file; out_dir must be a "
                                  "folder (the report writes several files into it)")
        # everything rendered before anything is written: a figure or the JSON that fails
        # leaves the folder as it was, not new tables beside an earlier report's page
        text = json.dumps(json_safe(self.to_dict()), indent=2, allow_nan=False,
                          default=_json_default)
        images = {fname: _png(fig) for fname, fig in self.figures().items()}
        page = self.to_html(images)
        out.mkdir(parents=True, exist_ok=True)
        files = [(out / f"{name}.csv", getattr(self, name).to_csv(index=False).encode())
                 for name in _TABLES if name in ("layers", "components", "digital")
                 or len(getattr(self, name))]
        files += [(out / "report.json", text.encode()), *((out / f, png) for f, png in
                                                          images.items()),
                  (out / "report.html", page.encode())]
        # each file whole or not at all, and the files as a set (cimsim._atomic.write_set):
        # a run stopped mid-save never leaves a truncated report.json that `cimsim report`
        # would read back, nor new tables beside an earlier run's page
        # a file an earlier report wrote here and this one does not (a figure or a table it
        # has no rows for) would pass for this report's: removed. Only names cimsim writes.
        written = {p.name for p, _ in files}
        return write_set(files, [out / name for name in _optional_files()
                                 if name not in written])

    @staticmethod
    def clear(folder: str | Path) -> None:
        """Remove the files :meth:`save` writes from ``folder`` (only those names), and the
        folder if that leaves it empty: what a later run into the same ``--out`` that writes
        no report there (``simulate --time`` writes one per time) must not leave behind."""
        out = Path(folder)
        for name in report_files():
            (out / name).unlink(missing_ok=True)
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()

    def to_html(self, images: dict[str, bytes] | None = None) -> str:
        """One self-contained HTML page, in the order a reader needs it: the summary (chip,
        accuracy or fidelity, cost per inference, area, what is calibrated), the figures (data
        URIs), the tables, the chip's TOML, the notes, and every total at the end."""
        if images is None:
            images = {fname: _png(fig) for fname, fig in self.figures().items()}
        # a total that is a dict (per-component figures) reads as one line
        totals = {key: ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
                  if isinstance(value, dict) else value for key, value in self.totals.items()}
        body = [_html.paragraph(f"{self.chip.name}: {self.chip.description}")]
        if self.totals.get("cost_caveat"):
            body.append(_html.paragraph(f"Cost figures meaningless: {self.totals['cost_caveat']}"))
        body += [_html.heading("Summary"),
                 _html.rows(self.summary_rows(), header=("quantity", "value", "basis"),
                            css_class="summary")]
        if self.totals.get("calibration"):
            body.append(_html.paragraph(f"calibration: {self.totals['calibration']}"))
        body.append(_html.heading("Figures"))
        for fname, data in images.items():
            title = _FIGURES.get(fname, fname)
            body += [_html.paragraph(title), _html.figure(data, title)]
        for name in _TABLES:
            frame = getattr(self, name)
            if name in _LONG_TABLES and len(frame) > _LONG_ROWS:
                # the page holds the first rows, the CSV all (MobileNetV2's 7,173 blocks made
                # a 2.6 MB page)
                shown = (f"{len(frame)} rows" if len(frame) <= _PAGE_ROWS else
                         f"the first {_PAGE_ROWS} of {len(frame)} rows; {name}.csv has all")
                body += [_html.heading(name), _html.collapsed(
                    f"{_TABLE_TITLES[name]} ({shown})",
                    _html.table(frame.head(_PAGE_ROWS), _cell))]
            else:
                body += [_html.heading(name), _html.paragraph(_TABLE_TITLES[name]),
                         _html.table(frame, _cell)]
        body += [_html.heading("chip configuration (TOML)"),
                 _html.paragraph(f"source: {_source_for_users(self.chip.source)}"),
                 _html.preformatted(self.chip.to_toml())]
        if self.notes:
            body += [_html.heading("notes"), _html.items(self.notes)]
        body += [_html.heading("all totals"),
                 _html.collapsed(f"{len(totals)} whole-model figures (as in report.json)",
                                 _html.key_values(totals, _fmt)),
                 _html.paragraph(f"cimsim {self.version}")]
        return _html.page(f"cimsim report: {self.chip.name}", body,
                          css="td:first-child{text-align:left}")


_TABLE_TITLES = {
    "layers": "Per mapped layer, per inference: shapes, arrays, counts, energy (pJ), "
              "latency (ns), area (um2).",
    "breakdown": "Energy per inference (pJ, %) and area (um2) per layer and component.",
    "components": "Every (layer, component, action, bits): events and energy (pJ) per "
                  "inference.",
    "area": "Chip instances per component: count, area per instance and in all (um2, %).",
    "blocks": "Latency of every programmed block (ns).",
    "digital": "Layers and products kept digital, with the reason.",
}
# tables of one row per event kind or block run to hundreds of rows: closed until opened
_LONG_TABLES = ("components", "blocks")
_LONG_ROWS = 20
_PAGE_ROWS = 500
"""Rows of a long table the page shows (the CSV beside it has every row)."""


def _source_for_users(source: str) -> str:
    """A preset's ``source`` without its references into cimsim's ``docs/`` folder, which an
    installed package does not carry: ``"NeuroSim defaults (Peng 2019; docs/technology.md)"``
    reads ``"NeuroSim defaults (Peng 2019)"``."""
    text = re.sub(r";?\s*docs/[\w./-]+(\s*\[[^\]]*\])?", "", source)
    text = re.sub(r"\(\s*\)", "", text)
    return text.strip(" ;,") or "not given"


def _shown(fmt: str, value: Any) -> str:
    """``fmt.format(value)`` (one fixed-point field), unless its decimals show a nonzero
    figure with fewer than two significant digits (a TOPS/mm^2 of 1.26e-05 read 0.0000, a
    TOPS/W of 0.00067 read 0.001): then that figure to three significant digits."""
    decimals = re.search(r"\.(\d+)f\}", fmt)
    v = float(value)
    if decimals and v != 0 and math.isfinite(v) and abs(v) < 10.0 ** (1 - int(decimals[1])):
        return re.sub(r"\{[^}]*\}", f"{v:.3g}", fmt)
    unit = fmt.rsplit(" ", 1)[-1]
    if unit in _UNITS and math.isfinite(v) and abs(v) >= 1e6:
        # a whole model's 6,778,795,867.8 pJ, also read as 6.78 mJ
        return f"{fmt.format(value)} ({readable(v, unit)})"
    return fmt.format(value)


def readable(value: float, unit: str) -> str:
    """``value`` (in ``unit``: ``"pJ"`` or ``"ns"``) to three significant digits in the unit of
    ``_UNITS[unit]`` it reaches: ``readable(6.78e9, "pJ")`` is ``"6.78 mJ"``."""
    names, rounded = _UNITS[unit], abs(float(f"{value:.3g}"))  # 999,999.9 is 1 ms, not 1e+03 us
    k = 0
    while k + 1 < len(names) and rounded >= 1000.0 ** (k + 1):
        k += 1
    return f"{value / 1000.0 ** k:.3g} {names[k]}"


_SUMMARY_COST = (("energy_pj_per_inference", "energy per inference", "{:,.1f} pJ"),
                 ("latency_ns_per_inference", "latency per inference", "{:,.1f} ns"),
                 ("tops_per_w", "TOPS/W", "{:.3f} TOPS/W"))
# which calibration factors a summary line depends on: energy scales energy and TOPS/W,
# the ADC time scales latency, area scales the two areas
_CAL_KIND = {"energy_pj_per_inference": "energy", "tops_per_w": "energy",
             "latency_ns_per_inference": "time", "area": "area"}


def _calibrated(report: Report) -> dict[str, str]:
    """Which components the report's calibration scales, per kind (``energy``, ``area``,
    ``time``): ``{"energy": "adc, cell", ...}``; empty when no calibration is in use, or when
    the saved note is not the current preset's (the factors are then unknown)."""
    from .cost.energy import calibration_for

    cal = calibration_for(report.chip)
    if cal.is_identity or cal.note != report.totals.get("calibration"):
        return {}
    out = {kind: ", ".join(sorted(k for k, v in table.items() if v != 1.0))
           for kind, table in (("energy", cal.energy), ("area", cal.area))}
    if cal.adc_time_scale != 1.0:
        out["time"] = "adc conversion time"
    return {k: v for k, v in out.items() if v}


def _predicted_by(chip: Any) -> str:
    from .config import CostModel

    if chip.tech.cost_model is CostModel.PHYSICAL:
        return "physical component models, no per-chip factor"
    return "technology tables"


def cost_basis(chip: Any) -> str:
    """One line saying which of ``chip``'s cost figures are calibrated to a published chip and
    which are predicted, and by what (the demo and sweep reports print it)."""
    from .cost.energy import calibration_for

    cal = calibration_for(chip)
    how = _predicted_by(chip)
    if cal.is_identity:
        return f"every cost figure predicted ({how})"
    parts = [f"{kind} of {', '.join(sorted(k for k, v in table.items() if v != 1.0))}"
             for kind, table in (("energy", cal.energy), ("area", cal.area))
             if any(v != 1.0 for v in table.values())]
    if cal.adc_time_scale != 1.0:
        parts.append("ADC conversion time")
    return (f"calibrated to a published chip: {'; '.join(parts)} "
            f"(cimsim.cost.CALIBRATIONS['{chip.name}']); the rest predicted ({how})")


def _nan_for_null(figures: dict[str, Any]) -> dict[str, Any]:
    """``figures`` with each ``null`` figure as the NaN the file's ``null`` spells
    (:func:`~cimsim._json.json_safe`): a report whose totals or summary held one failed in the
    rendering on formatting None, with a traceback."""
    def nan(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: nan(v) for k, v in value.items()}
        return math.nan if value is None else value

    return {k: nan(v) if numeric_name(k) else v for k, v in figures.items()}


def _numbers(values: Any) -> bool:
    return isinstance(values, list | tuple) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _checked_training(training: dict[str, Any]) -> dict[str, Any]:
    """``training`` if its losses are what :func:`plot_training` draws, else a ValueError
    naming the key: ``loss`` a list of numbers, ``batch_loss`` a list of such lists."""
    if not _numbers(training.get("loss", [])):
        raise ValueError(f"training['loss'] = {training['loss']!r}; allowed: a list of "
                         "numbers, the mean loss of each epoch")
    batches = training.get("batch_loss", [])
    if not isinstance(batches, list | tuple) or not all(_numbers(b) for b in batches):
        raise ValueError(f"training['batch_loss'] = {batches!r}; allowed: a list of lists of "
                         "numbers, each batch's loss per epoch")
    return training


def _saved_training(data: Any) -> dict[str, Any]:
    """``report.json``'s ``training`` (absent: ``{}``) read back as :func:`json_safe` wrote
    it: its figures' and losses' ``null`` as NaN and ``"inf"`` as infinities, its text (the
    method's name) as it was."""
    if not isinstance(data, dict):
        raise TypeError(f"'training' is a {type(data).__name__}, not an object")

    def losses(values: Any) -> Any:
        if not isinstance(values, list):
            return values  # refused by _checked_training
        return [math.nan if v is None else float(v) if v in ("inf", "-inf") else v
                for v in values]

    out = _nan_for_null(saved_numbers(data, "'training'"))
    if "loss" in out:
        out["loss"] = losses(out["loss"])
    if isinstance(out.get("batch_loss"), list):
        out["batch_loss"] = [losses(b) for b in out["batch_loss"]]
    return _checked_training(out)


def _training_text(training: Mapping[str, Any]) -> str:
    """The summary's line for a trained model: method, epochs and the loss's first and last
    epoch means."""
    loss = [float(v) for v in training.get("loss", [])]
    epochs = len(loss)
    text = f"{training.get('method', 'trained')}, {epochs} epoch{'s' * (epochs != 1)}"
    if loss:
        text += (f", loss {loss[0]:.4g}" if epochs == 1
                 else f", mean loss {loss[0]:.4g} in the first, {loss[-1]:.4g} in the last")
    return text


def _summary_rows(report: Report) -> list[tuple[str, str, str]]:
    t, s = report.totals, report.summary
    chip = report.chip
    rows = [("chip", f"{chip.name}: {chip.description}",
             f"source: {_source_for_users(chip.source)}")]
    n = s.get("n_eval_inputs")
    on = f" on {n} inputs" if n else ""
    if "simulated_accuracy" in s:
        rows.append(("accuracy", f"{100 * s['float_accuracy']:.2f} % float, "
                                 f"{100 * s['simulated_accuracy']:.2f} % simulated{on}",
                     "simulated"))
    elif "output_cosine" in s:
        c = s["output_cosine"]  # None: NaN as the report file holds it
        shown = ("undefined (outputs not finite)" if c is None or math.isnan(c)
                 else f"{c:.4f}")
        rows.append(("output fidelity", f"cosine to float {shown}{on}", "simulated"))
    else:
        rows.append(("accuracy", "not measured (no evaluation recorded)", ""))
    if report.training:
        rows.append(("training", _training_text(report.training), "trained"))
    if "t_inference_s" in t and chip.device.ages:
        rows.append(("time after programming", f"{t['t_inference_s']:g} s (devices aged to it)",
                     "simulated"))
    cal = _calibrated(report)
    if t.get("cost_caveat"):
        cost_basis = {kind: "meaningless (see above)" for kind in ("energy", "time", "area")}
    else:
        how = _predicted_by(chip)
        cost_basis = {kind: (f"calibrated ({cal[kind]} scaled to a published chip), rest "
                             "predicted" if kind in cal else f"predicted ({how})")
                      for kind in ("energy", "time", "area")}
    for key, label, fmt in _SUMMARY_COST:
        if key in t:
            rows.append((label, _shown(fmt, t[key]), cost_basis[_CAL_KIND[key]]))
    if "area_mm2" in t:
        used = (_shown("{:.4f} mm2 used of ", t["area_mm2_used"]) if "area_mm2_used" in t
                else "")
        rows.append(("area", used + _shown("{:.4f} mm2 chip", t["area_mm2"]),
                     cost_basis["area"]))
    if "n_arrays_used" in t and "n_arrays_available" in t:
        rows.append(("arrays", f"{t['n_arrays_used']} used of {t['n_arrays_available']}"
                     + _turns(t), "count"))
    return rows


_HEADLINE = (("energy_pj_per_inference", "energy per inference", "{:,.1f} pJ"),
             ("area_mm2", "area", "{:.4f} mm2"),
             ("latency_ns_per_inference", "latency per inference", "{:,.1f} ns"),
             ("tops_per_w", "TOPS/W", "{:.3f}"),
             ("tops_per_mm2", "TOPS/mm2", "{:.4f}"))
# shown beside the whole chip's figure of the same line: the part of the chip the model uses
_USED = {"area_mm2": ("area_mm2_used", "{:.4f} mm2"), "tops_per_mm2": ("tops_per_mm2_used",
                                                                      "{:.4f}")}


def headline_lines(totals: dict[str, Any]) -> list[str]:
    """A report's headline figures, one ``label  value`` line each, from its ``totals``.

    Area and TOPS/mm^2 are the whole chip's, with the used part's beside them (the occupied
    arrays and their tile share); a time-multiplexed run adds its reload time per inference;
    every cost line of a chip whose costs mean nothing (``totals["cost_caveat"]``, the
    ``ideal`` preset) says so, and a first line gives the reason. Keys missing from
    ``totals`` (an older saved report) are left out.
    """
    caveat = totals.get("cost_caveat") or ""
    mark = "  [meaningless]" if caveat else ""
    lines = [f"{'cost figures':<24}meaningless: {caveat}"] if caveat else []
    for key, label, fmt in _HEADLINE:
        if key not in totals:
            continue
        text = _shown(fmt, totals[key])
        if key in _USED and _USED[key][0] in totals:
            used_key, used_fmt = _USED[key]
            text += f" chip, {_shown(used_fmt, totals[used_key])} used part"
        lines.append(f"{label:<24}{text}{mark}")
        if key == "latency_ns_per_inference" and totals.get(
                "reprogramming_latency_ns_per_inference"):
            lines.append(f"{'  of which reloading':<24}"
                         f"{totals['reprogramming_latency_ns_per_inference']:,.1f} ns"
                         f" (time-multiplexed arrays rewritten){mark}")
    if "n_arrays_used" in totals and "n_arrays_available" in totals:
        lines.append(f"{'arrays used':<24}{totals['n_arrays_used']} of "
                     f"{totals['n_arrays_available']}" + _turns(totals))
    return lines


def _two_five_label(value: float, _pos: int) -> str:
    """A log axis's minor tick label: ``2×10^k`` and ``5×10^k`` only."""
    if value <= 0:
        return ""
    exp = math.floor(math.log10(value))
    mantissa = round(value / 10.0**exp)
    return rf"$\mathdefault{{{mantissa}\times10^{{{exp}}}}}$" if mantissa in (2, 5) else ""


def _turns(totals: dict[str, Any]) -> str:
    """How more arrays than the chip's are used: rewritten (time-multiplexed), or held as
    stored weight sets the layers switch between (``tech.weight_sets_stored``)."""
    if not totals.get("time_multiplexed"):
        return ""
    if totals["n_arrays_used"] <= totals.get("n_array_slots", 0):
        return " (layers take turns, switching stored weight sets: none rewritten)"
    return " (time-multiplexed)"


def _layer_rows(work, cost) -> list[dict]:
    """One row per layer of a :class:`cimsim.work.ModelWork`: what it is and did (counts per
    inference) and its cost (``cost``: the :class:`cimsim.cost.CostReport` of ``work``)."""
    chip = work.chip
    n_inf = max(work.n_inferences, 1)
    pulse = event_key(Component.DAC, Action.PULSE, chip.dac_bits)
    by_layer = {r["layer"]: r for r in cost.layers}
    rows = []
    for w in work.layers:
        cap = w.n_arrays * chip.array.n_rows * chip.array.n_cols
        row = {
            "layer": w.name,
            "kind": w.kind,
            "n_inputs": w.n_inputs,
            "n_outputs": w.n_outputs,
            "n_matrices": w.n_matrices,
            "input_signed": w.input_signed,
            "n_arrays": w.n_arrays,
            "cell_utilization_pct": 100.0 * w.n_cells / cap if cap else 0.0,
            "adc_bits": chip.adc.bits,
            "n_macs_per_inference": w.events.get(event_key(Component.LAYER, Action.MAC)) / n_inf,
            "n_conversions_per_inference": w.n_adc_conversions / n_inf,
            # conversions whose ADC input fell outside its range (cimsim.work.LayerWork)
            "adc_clip_pct": 100.0 * w.adc_clip_fraction,
            # inputs the input quantizer saturated (cimsim.work.LayerWork)
            "input_clip_pct": 100.0 * w.input_clip_fraction,
            "n_dac_pulses_per_inference": w.events.get(pulse) / n_inf,
        }
        c = by_layer.get(w.name, {})
        row["energy_pj_per_inference"] = c.get("energy_pj_per_inference", 0.0)
        row.update({k: v for k, v in c.items()
                    if k.startswith("energy_") and k != "energy_pj_per_inference"})
        row["latency_ns_per_inference"] = c.get("latency_ns_per_inference", 0.0)
        row["area_um2"] = c.get("area_um2", 0.0)
        rows.append(row)
    names = {w.name for w in work.layers}
    for c in cost.layers:  # the (reprogramming) line of a time-multiplexed run
        if c["layer"] not in names:
            rows.append({"layer": c["layer"], "kind": "reprogramming", "n_inputs": 0,
                         "n_outputs": 0, "n_matrices": 0, "input_signed": False,
                         "n_arrays": 0, "cell_utilization_pct": 0.0, "adc_bits": chip.adc.bits,
                         "n_macs_per_inference": 0.0, "n_conversions_per_inference": 0.0,
                         "n_dac_pulses_per_inference": 0.0, **{k: v for k, v in c.items()
                                                               if k not in ("layer",
                                                                            "n_arrays")}})
    return rows


def _with_fidelity(layers: pd.DataFrame, fidelity: pd.DataFrame | None) -> pd.DataFrame:
    """``layers`` with the columns of a fidelity trace matched by layer name (NaN on rows the
    trace has not: the reprogramming line). A column both have (``adc_clip_pct``,
    ``input_clip_pct``) keeps the run's value, the trace's only where the run converted
    nothing."""
    if fidelity is None or fidelity.empty or layers.empty:
        return layers
    by_name = fidelity.set_index("layer")
    out = layers.copy()
    for col in by_name.columns:
        values = out["layer"].map(by_name[col])
        out[col] = out[col].fillna(values) if col in out else values
    return out


def _breakdown(cost) -> pd.DataFrame:
    from .cost.area import occupied_area_um2

    rows = []
    n_arrays = {r["layer"]: r["n_arrays"] for r in cost.layers}
    for layer in [r["layer"] for r in cost.layers] + sorted(
            {r["layer"] for r in cost.events} - {r["layer"] for r in cost.layers}):
        energy = cost.energy_by_component(layer)
        total = sum(energy.values())
        area = (occupied_area_um2(cost.chip, n_arrays[layer], calibration=cost.calibration)
                if layer in n_arrays else {})
        for comp, e in energy.items():
            rows.append({"layer": layer, "component": comp, "energy_pj_per_inference": e,
                         "energy_pct": 100.0 * e / total if total else 0.0,
                         "area_um2": area.get(comp, 0.0)})
    return _frame(rows, ["layer", "component", "energy_pj_per_inference", "energy_pct",
                         "area_um2"])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.6g}"
    return str(value)


def _png(fig, dpi: int = 110) -> bytes:
    """``fig`` as PNG bytes (written whole by ``cimsim._atomic``; the sweep's figures: 120 dpi)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _cell(_column: str, value: Any) -> str:
    if isinstance(value, float):
        # four significant digits, but a figure of five to fifteen digits whole (14,337 ns,
        # not 1.434e+04 beside a 9,216 in the same column)
        if math.isfinite(value) and 1e4 <= abs(value) < 1e15:
            return f"{value:,.0f}"
        return f"{value:,.4g}"
    return str(value)


def _optional_files() -> list[str]:
    """The tables and figures :meth:`Report.save` may write (a report without rows for one
    writes no file for it)."""
    return [f"{t}.csv" for t in _TABLES] + list(_FIGURES)


def report_files() -> list[str]:
    """The names of every file :meth:`Report.save` may write into its folder."""
    return [*_optional_files(), "report.json", "report.html"]


def _literal(text: Any) -> str:
    """``text`` drawn as written: a ``$`` in a layer or model name starts matplotlib's math
    mode (``x$^{$y`` failed the whole save, ``cost$_{x}$`` was drawn as a subscript)."""
    return str(text).replace("$", r"\$")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):  # NumPy scalars in the frames and totals
        return obj.item()
    if isinstance(obj, Enum):
        return obj.value
    raise TypeError(f"cannot serialise {type(obj).__name__}")


# -------------------------------------------------------------------------------------------
# Figures: a DataFrame in, a matplotlib Figure out (Agg canvas, no pyplot state)
# -------------------------------------------------------------------------------------------
def _figure(width: float = 7.0, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


#: Widest per-layer figure, inches: the report page shows images at most ~14 in wide, so a
#: wider one (0.9 in a bar: 53 layers made 5,565 px) was scaled to labels 2-3 px tall.
MAX_LAYER_FIGURE_IN = 16.0


def _layer_figure(n: int, height: float):
    """A figure for ``n`` per-layer bars: 0.9 in a bar, at most :data:`MAX_LAYER_FIGURE_IN`."""
    return _figure(min(max(6.0, 0.9 * n + 3), MAX_LAYER_FIGURE_IN), height)


def _layer_ticks(ax, n: int) -> None:
    """Layer names under their bars, each ending at its own bar (a rotated label centred on
    its tick ran under the next bar, naming it); upright and small for many layers; no wide
    empty margin beside the first and last bars."""
    if n > 24:
        ax.tick_params(axis="x", labelrotation=90, labelsize=6)
    else:
        ax.tick_params(axis="x", labelrotation=30)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
    ax.margins(x=0.01)


def plot_energy_per_layer(layers: pd.DataFrame):
    """Energy per inference per layer, stacked by component (``energy_<c>_pj_per_inference``)."""
    comps = [c for c in layers.columns
             if c.startswith("energy_") and c.endswith("_pj_per_inference")
             and c != "energy_pj_per_inference"]
    fig = _layer_figure(len(layers), 4.2)
    ax = fig.add_subplot()
    names = [_literal(n) for n in layers["layer"]]
    bottom = [0.0] * len(layers)
    for col in comps:
        values = layers[col].fillna(0.0).tolist()
        if not any(values):
            continue
        label = col[len("energy_"):-len("_pj_per_inference")]
        ax.bar(names, values, bottom=bottom, label=label, color=component_color(label))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    if not comps:
        ax.bar(names, layers["energy_pj_per_inference"].tolist())
    ax.set_ylabel(f"energy per inference ({_scale_axis(ax, 'pJ')})")
    ax.set_title("Energy per layer by component")
    _layer_ticks(ax, len(layers))
    if ax.get_legend_handles_labels()[1]:  # no energy yet (nothing run): no legend to warn of
        # beside the axes: inside, it covered the bars of a model whose layers are alike (a
        # ViT's), wherever matplotlib's "best" put it
        handles, labels = ax.get_legend_handles_labels()  # top to bottom, as the stack
        ax.legend(handles[::-1], labels[::-1], fontsize=8, loc="upper left",
                  bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    return fig


#: Units of a plot's energy and time axes, each 1000x the one before.
_UNITS = {"pJ": ("pJ", "nJ", "µJ", "mJ", "J"), "ns": ("ns", "µs", "ms", "s")}


def _scale_axis(ax: Any, unit: str) -> str:
    """Relabel ``ax``'s y ticks in the unit of ``_UNITS[unit]`` its largest value reaches
    (a bare "1e9" above "pJ" was the scale of a whole model's energy); returns the unit."""
    import matplotlib.ticker as mticker

    top = max(abs(v) for v in ax.get_ylim())
    names = _UNITS[unit]
    k = names.index(readable(top, unit).split(" ")[1])
    scale = 1000.0 ** k
    ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v / scale:g}"))
    return names[k]


def plot_area_by_component(area: pd.DataFrame):
    """Chip area by component (mm^2) from an ``area`` frame (``component``, ``area_um2``)."""
    by = area.groupby("component", sort=False)["area_um2"].sum() * 1e-6
    fig = _figure(6.0, 3.8)
    ax = fig.add_subplot()
    ax.bar([str(c) for c in by.index], by.values,
           color=[component_color(str(c)) for c in by.index])
    ax.set_ylabel("area (mm$^2$)")
    ax.set_title(f"Chip area by component (total {by.sum():.4g} mm$^2$)")
    ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    return fig


def plot_latency_per_layer(layers: pd.DataFrame):
    """Latency per inference per layer (``latency_ns_per_inference``)."""
    fig = _layer_figure(len(layers), 3.8)
    ax = fig.add_subplot()
    # a dark grey outside the palette: latency is no cost component (the cell's colour, the
    # palette's first, said "cell")
    ax.bar([_literal(n) for n in layers["layer"]], layers["latency_ns_per_inference"].tolist(),
           color=LATENCY_COLOR)
    ax.set_ylabel(f"latency per inference ({_scale_axis(ax, 'ns')})")
    ax.set_title("Latency per layer")
    _layer_ticks(ax, len(layers))
    fig.tight_layout()
    return fig


def plot_fidelity_per_layer(layers: pd.DataFrame, *, readout: str = "ADC"):
    """SQNR per layer (bars, dB) with ADC code utilization on a second axis (%); ``readout``
    names what makes the codes in the labels (``"sum"`` for a digital adder tree).

    Reads ``layer``, ``sqnr_db`` and, when present, ``adc_code_use_pct`` (a
    ``SimModel.trace()`` frame, or ``report.layers`` after a trace); rows without an SQNR
    (never reached, the reprogramming line) are left out, an exact layer (inf dB) is drawn at
    the top of the axis and marked.
    """
    rows = layers[layers["sqnr_db"].notna()]
    names = [_literal(n) for n in rows["layer"]]
    sqnr = rows["sqnr_db"].to_numpy(dtype=float)
    finite = np.isfinite(sqnr)
    top = float(sqnr[finite].max()) * 1.15 if finite.any() and sqnr[finite].max() > 0 else 1.0
    fig = _layer_figure(len(rows), 4.0)
    ax = fig.add_subplot()
    bars = ax.bar(names, np.where(finite, sqnr, top), color=PALETTE[0], label="SQNR (dB)")
    for bar, ok in zip(bars, finite, strict=True):
        if not ok:  # an exact layer: no error to plot on a dB scale
            ax.annotate("exact", (bar.get_x() + bar.get_width() / 2, top), ha="center",
                        va="bottom", fontsize=8)
    ax.set_ylabel("SQNR vs float layer (dB)")
    ax.set_title("Per-layer fidelity")
    _layer_ticks(ax, len(rows))
    if "adc_code_use_pct" in rows:
        ax2 = ax.twinx()
        ax2.plot(names, rows["adc_code_use_pct"].to_numpy(dtype=float), "o-",
                 color=PALETTE[1], label=f"{readout} codes used (%)")
        ax2.set_ylabel(f"{readout} codes used (% of 2$^b$)")
        ax2.set_ylim(0, 105)
        handles = [bars, *ax2.get_lines()]
        # on the twin axis, drawn last: the code-use line ran across a legend on the bars'
        ax2.legend(handles, [str(h.get_label()) for h in handles], fontsize=8, loc="best",
                   framealpha=0.95)
    fig.tight_layout()
    return fig


PALETTE: tuple[str, ...] = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860",
                            "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd")
"""The colours of every figure, in order of use."""

LATENCY_COLOR = "#4d4d4d"
"""The bars of a time (no cost component, so none of the components' colours)."""


def component_color(component: str) -> str:
    """The colour of a cost component in every figure (energy, area, and any other), so one
    component reads the same across plots: the palette in ``cimsim.cost.COMPONENTS`` order,
    then, for names outside it, colours of their own (none a component's), fixed by the
    name."""
    from .cost import COMPONENTS

    names = list(COMPONENTS)
    if component in names:
        return PALETTE[names.index(component) % len(PALETTE)]
    # not a cost component (a table from another version): a colour fixed by the name; the
    # palette's are all the components' (10 and 10: 'other' was drawn in buffer's colour)
    spare = PALETTE[len(names):] or _OTHER_COLORS
    return spare[sum(component.encode()) % len(spare)]


_OTHER_COLORS: tuple[str, ...] = ("#2f4b7c", "#a05195", "#6b8e23", "#b8860b", "#4b0082",
                                  "#008b8b")
"""Colours for names outside the cost components, none in :data:`PALETTE`."""


# -------------------------------------------------------------------------------------------
# Sweeps (cimsim.sweep): accuracy against energy, the Pareto front highlighted
# -------------------------------------------------------------------------------------------
def plot_pareto(frame: pd.DataFrame, *, labels: list[str] | None = None,
                title: str | None = None, by: str | None = None):
    """Accuracy vs energy per inference of a sweep table; the Pareto front highlighted.

    ``frame`` needs ``accuracy``, ``energy_pj_per_inference`` and ``on_front`` (and may have
    ``status``, ``adc_kind`` and ``output_cosine``, drawn instead of an accuracy that is NaN
    everywhere). Every point with both values is drawn, coloured by
    ``adc_kind``; front points are ringed and joined in order of energy, one line per value of
    the column ``by`` where the fronts were taken per value of it (a sweep's ``time_s``).
    ``labels`` (one per row) annotate the points. Returns a matplotlib ``Figure`` (Agg canvas).
    """
    import math

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    acc = pd.to_numeric(frame["accuracy"], errors="coerce")
    scale, y_label = 100, "accuracy (%)"
    if acc.isna().all() and "output_cosine" in frame:  # no labels: fidelity, not blank axes
        acc = pd.to_numeric(frame["output_cosine"], errors="coerce")
        scale, y_label = 1, "output cosine to the float model (no labels, no front)"
    energy = pd.to_numeric(frame["energy_pj_per_inference"], errors="coerce")
    drawn = acc.notna() & energy.notna() & energy.map(lambda v: math.isfinite(v))
    if "status" in frame:
        drawn &= frame["status"].eq("ok")
    labels = list(labels) if labels is not None else [str(i) for i in frame.index]
    if not drawn.any():
        ax.text(0.5, 0.5, "no point has both an accuracy and an energy per inference",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        kinds = frame["adc_kind"].astype(str) if "adc_kind" in frame else \
            pd.Series("points", index=frame.index)
        cmap = PALETTE[:6]
        for i, kind in enumerate(dict.fromkeys(kinds[drawn])):
            sel = drawn & kinds.eq(kind)
            ax.scatter(energy[sel], scale * acc[sel], s=28, color=cmap[i % len(cmap)],
                       label=kind, zorder=2)
        front = drawn & frame["on_front"].astype(bool)
        if front.any():  # (no front, e.g. without labels: no legend entry for one)
            for members, color, label in _front_groups(frame, by, front):
                order = energy[members].sort_values().index
                ax.plot(energy[order], scale * acc[order], color=color, lw=1.2, zorder=1,
                        label=label)
                ax.scatter(energy[members], scale * acc[members], s=110, facecolors="none",
                           edgecolors=color, linewidths=1.6, zorder=3)
        from matplotlib.ticker import FuncFormatter, NullFormatter

        lo, hi = energy[drawn].min(), energy[drawn].max()
        x_label = "energy per inference (pJ)"
        if lo > 0 and hi / lo > 20:
            ax.set_xscale("log")
            # the decades, and their 2x and 5x over less than ~2.5 decades: there matplotlib
            # labelled every minor tick, and "3x10^5 4x10^5" overlapped
            ax.xaxis.set_minor_formatter(FuncFormatter(_two_five_label) if hi / lo < 300
                                         else NullFormatter())
        else:  # plain numbers in a unit that suits them, not '0.25 ... 2.00' and a '1e6'
            factor, unit = next((f, u) for f, u in ((1e6, "µJ"), (1e3, "nJ"), (1.0, "pJ"))
                                if hi >= 10 * f or f == 1.0)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v / factor:g}"))
            x_label = f"energy per inference ({unit})"
        ax.autoscale_view()
        fig.canvas.draw()  # the tick labels' final sizes, which tight_layout below uses
        fig.tight_layout()
        box = ax.get_window_extent()
        bottom, top = box.y0, box.y1
        placed: list[tuple[float, float, float]] = []  # labels' x0, x1, y in pixels
        for pos, idx in enumerate(frame.index):
            if not drawn[idx]:
                continue
            px, py = ax.transData.transform((energy[idx], scale * acc[idx]))
            # the label's pixel columns: 7-pt text about 0.6 em per character, 4 pt right of
            # the point, or left of it where it would cross the frame (the rightmost points)
            width = 0.6 * 7 * len(labels[pos]) * fig.dpi / 72
            side = -1 if px + 4 * fig.dpi / 72 + width > box.x1 else 1
            x0 = px + 4 * fig.dpi / 72 if side > 0 else px - 4 * fig.dpi / 72 - width
            x1 = x0 + width
            dy = _label_offset((x0, x1), py, placed, bottom, top, fig.dpi / 72)
            placed.append((x0, x1, py + dy * fig.dpi / 72))
            ax.annotate(_literal(labels[pos]), (energy[idx], scale * acc[idx]), fontsize=7,
                        xytext=(4 * side, dy), textcoords="offset points",
                        ha="left" if side > 0 else "right",
                        fontweight="bold" if front[idx] else "normal")
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")  # away from the points, lines and labels
    ax.set_title(_literal(title) if title else
                 "Accuracy vs energy (front: max accuracy, min energy)")
    fig.tight_layout()
    return fig


FRONT_COLOR = "#c44e52"


def _front_groups(frame: pd.DataFrame, by: str | None,
                  front: pd.Series) -> list[tuple[pd.Series, Any, str]]:
    """Each front's ``(members, colour, legend label)``, by its value of ``by``: one front
    in :data:`FRONT_COLOR`; several (a sweep's ``time_s``) in shades of it from light to dark
    in the order of their values (numeric where they are numbers); each labelled with its
    value, so that a reader tells which front is which time (all were one red)."""
    if by is None or by not in frame:
        return [(front, FRONT_COLOR, "Pareto front")]
    values = frame.loc[front, by]
    if values.nunique() < 2:
        return [(front, FRONT_COLOR, f"Pareto front, {_group_text(by, values.iloc[0])}")]
    numeric = pd.to_numeric(values, errors="coerce")
    column = numeric if numeric.notna().all() else values.astype(str)
    keys = sorted(dict.fromkeys(column)) if column is numeric else list(dict.fromkeys(column))
    from matplotlib import colormaps

    shades = colormaps["Reds"]
    return [(front & column.reindex(frame.index).eq(key),
             shades(0.45 + 0.5 * i / max(len(keys) - 1, 1)),
             f"Pareto front, {_group_text(by, key)}") for i, key in enumerate(keys)]


def _group_text(by: str, value: Any) -> str:
    """A front's value as its legend shows it: ``t = 1 y`` for 3.1536e7 s, in the largest of
    the units ``cimsim sweep --time`` takes (``1h``, ``1d``, ``1y``; weeks left out) that it
    reaches."""
    from .arrays.drift import duration_text

    # (a NumPy number too: one front's value is read from its column)
    if by == "time_s" and isinstance(value, numbers.Real) and not isinstance(value, bool) \
            and math.isfinite(value):
        return f"t = {duration_text(float(value))}"
    return f"{by} = {value}"


def _label_offset(cols: tuple[float, float], py: float,
                  placed: list[tuple[float, float, float]], bottom: float, top: float,
                  px_per_pt: float) -> float:
    """The vertical offset (points) of a label spanning the pixel columns ``cols`` whose point
    is at pixel row ``py``: the first of 3, -7, 13, -17, 23, -27 that keeps the label inside
    the axes' pixel rows ``bottom``..``top`` and overlaps no label already placed
    (``placed``: their columns and row), else the first inside the axes. (Moving only down,
    the labels of a cluster of points at the lowest accuracies ran below the axes, over the
    energy tick labels.)"""
    height = 9 * px_per_pt
    inside = []
    for step in range(6):  # within 3 lines of the point: a label further off names another
        dy = 3.0 + 10.0 * ((step + 1) // 2) * (-1 if step % 2 else 1)
        y = py + dy * px_per_pt
        if y < bottom + 2 or y + height > top:
            continue
        inside.append(dy)
        if not any(cols[0] < q1 and q0 < cols[1] and abs(y - qy) < height
                   for q0, q1, qy in placed):
            return dy
    return inside[0] if inside else 3.0


def plot_accuracy_time(frame: pd.DataFrame, *, series: str | None = None,
                       title: str | None = None):
    """Accuracy against the time after programming (log axis), one line per ``series``.

    ``frame`` needs ``time_s`` and ``accuracy`` (a fraction); with ``accuracy_std`` a band of
    ± one standard deviation is drawn around each line (the spread over seeds). ``series``
    names the column whose values are the lines (None: one line). Returns a matplotlib
    ``Figure`` (Agg canvas); rows with a NaN accuracy are left out. Without labels (accuracy
    NaN everywhere) ``output_cosine`` is drawn instead, where the frame has it.
    """
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    t = pd.to_numeric(frame["time_s"], errors="coerce")
    acc = pd.to_numeric(frame["accuracy"], errors="coerce")
    scale, y_label = 100, "accuracy (%)"
    if acc.isna().all() and "output_cosine" in frame:  # no labels: fidelity, not a blank panel
        acc = pd.to_numeric(frame["output_cosine"], errors="coerce")
        scale, y_label = 1, "output cosine to the float model (no labels)"
    ok = t.notna() & acc.notna() & (t > 0)
    groups = (frame[series].astype(str) if series is not None
              else pd.Series("accuracy", index=frame.index))
    if not ok.any():
        ax.text(0.5, 0.5, "no point has an accuracy", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
    for i, name in enumerate(dict.fromkeys(groups[ok])):
        sel = frame.index[ok & groups.eq(name)]
        order = t[sel].sort_values().index
        color = PALETTE[i % len(PALETTE)]
        ax.plot(t[order], scale * acc[order], marker="o", ms=4, color=color, label=_literal(name))
        if "accuracy_std" in frame:
            sd = pd.to_numeric(frame["accuracy_std"], errors="coerce")[order].fillna(0.0)
            ax.fill_between(t[order], scale * (acc[order] - sd), scale * (acc[order] + sd),
                            color=color, alpha=0.15, lw=0)
    if ok.any():
        ax.set_xscale("log")
        marks = [(1.0, "1 s"), (60.0, "1 min"), (3600.0, "1 h"), (86400.0, "1 d"),
                 (2.592e6, "30 d"), (3.1536e7, "1 y"), (3.1536e8, "10 y")]
        lo, hi = float(t[ok].min()), float(t[ok].max())
        shown = [(v, s) for v, s in marks if lo / 1.5 <= v <= hi * 1.5]
        if len(shown) >= 2:
            ax.set_xticks([v for v, _ in shown], [s for _, s in shown])
        ax.set_xlabel("time after programming")
        ax.set_ylabel(y_label)
        ax.grid(True, alpha=0.3)
        if series is not None:
            ax.legend(fontsize=8, loc="best")  # a fixed corner hid a series' points
    ax.set_title(_literal(title) if title else "Accuracy over time after programming")
    fig.tight_layout()
    return fig


def _training_scores(training: Mapping[str, Any],
                     summary: Mapping[str, Any]) -> tuple[list[tuple[str, float | None]], str]:
    """The dots of :func:`plot_training`: (label, value or None when not measured) and the
    axis label; accuracies in % with labels, otherwise cosines to the float model's outputs."""
    def value(mapping: Mapping[str, Any], key: str) -> float | None:
        v = mapping.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return None
        return float(v)

    if "simulated_accuracy" in summary or "twin_accuracy" in training:
        return [("float model", _pct(value(summary, "float_accuracy"))),
                ("on the chip, untrained", _pct(value(training, "untrained_accuracy"))),
                ("twin, noise off", _pct(value(training, "twin_accuracy"))),
                ("on the chip, trained", _pct(value(summary, "simulated_accuracy")))], \
            "accuracy (%)"
    return [("on the chip, untrained", value(training, "untrained_cosine_to_float")),
            ("twin, noise off", value(training, "cosine_to_float")),
            ("on the chip, trained", value(summary, "output_cosine"))], \
        "output cosine to the float model (no labels)"


def _pct(v: float | None) -> float | None:
    return None if v is None else 100.0 * v


def plot_training(training: Mapping[str, Any], summary: Mapping[str, Any] | None = None):
    """How training for the chip went: the loss (each batch's, faint, and each epoch's mean)
    against the epoch, and beside it the accuracy of the float model, of the model on the chip
    as it was, of the trained twin (noise off) and of the trained model on the chip.

    ``training`` is ``cimsim train``'s summary (``training.json``: ``loss``, ``batch_loss``,
    ``untrained_accuracy``, ``twin_accuracy``, or the cosines to the float model where the
    data has no labels), ``summary`` the report's (:attr:`Report.summary`: the float and the
    simulated accuracy). A figure not measured is left out and said so. Returns a matplotlib
    ``Figure`` (Agg canvas).
    """
    summary = summary or {}
    fig = _figure(10.0, 3.8)
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.5, 1.0]})
    loss = [float(v) for v in training.get("loss", [])]
    batches = training.get("batch_loss") or []
    labelled = False
    for e, per_batch in enumerate(batches):
        if per_batch:  # a batch's loss at its place within its epoch
            n = len(per_batch)
            # the legend's entry on the first epoch drawn (a resumed older run has none for
            # its first epochs)
            ax.plot([e + (i + 0.5) / n for i in range(n)], per_batch, color=PALETTE[0],
                    alpha=0.35, lw=0.8, label=None if labelled else "batch")
            labelled = True
    if loss:
        ax.plot([e + 0.5 for e in range(len(loss))], loss, color=PALETTE[0], marker="o",
                lw=1.8, label="epoch mean")
        ax.set_xlim(0, len(loss))
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no epoch trained", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    ax.set_title(_literal(f"Training ({training.get('method', 'trained')})"))
    dots, label = _training_scores(training, summary)
    # dots on an axis fitted to them, not bars from zero: the gaps of a point or two between
    # the four figures are what the panel is for, and bars from 0 % hid them
    ys = list(range(len(dots)))
    values = [v for _, v in dots if v is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    percent = label.startswith("acc")
    # at least half a point of accuracy (0.005 of a cosine) either side: all four at 0 drew
    # an axis of millionths
    pad = max(0.25 * (hi - lo), 0.01 * abs(hi), 0.5 if percent else 0.005)
    for y, (_, v), color in zip(ys, dots, (PALETTE[7], PALETTE[1], PALETTE[4], PALETTE[2])
                                [-len(dots):], strict=True):
        if v is None:
            bx.annotate("not measured", (lo, y), va="center", fontsize=8, color="0.4")
            continue
        bx.plot([v], [y], "o", ms=9, color=color)
        text = f"{v:.2f}" if percent else f"{v:.4f}"
        bx.annotate(text, (v, y), xytext=(0, 8), textcoords="offset points", ha="center",
                    fontsize=8)
    bx.set_yticks(ys, [name for name, _ in dots])
    bx.set_ylim(len(dots) - 0.5, -0.7)  # read top-down: before, then after
    # no axis far past what a score can be: 0 to 100 %, a cosine -1 to 1
    bottom, top = (0.0, 100.0) if percent else (-1.0, 1.0)
    bx.set_xlim(max(lo - pad, bottom - 0.2 * pad), min(hi + pad, top + 0.2 * pad))
    bx.grid(True, axis="x", alpha=0.3)
    bx.set_xlabel(label)
    bx.set_title("Before and after training")
    fig.tight_layout()
    return fig

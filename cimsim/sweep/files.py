"""The files of a finished sweep: ``sweep.csv``, ``sweep.json``, ``pareto.png``, ``sweep.html``
(and ``accuracy_time.png``); :func:`rerender` writes them again from ``sweep.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .. import _html
from .._atomic import write_set
from .._json import saved_numbers
from ..errors import CimsimError
from .grid import AXES, field_axes
from .pareto import front_group
from .store import JSONL, clean
from .table import METRICS, TIMING_COLUMNS, point_labels, sweep_table, table_records

__all__ = ["OUTPUT_FILES", "rerender", "sweep_html", "write_outputs"]

_WRITTEN = {"table": "sweep.csv", "doc": "sweep.json", "pareto": "pareto.png",
            "time": "accuracy_time.png", "page": "sweep.html"}
"""The files :func:`write_outputs` writes, by what they hold."""

OUTPUT_FILES = (JSONL, *_WRITTEN.values())
"""The files a sweep writes into its folder (``sweep.jsonl`` as it runs, the rest at the end:
:func:`write_outputs`)."""

_FRONT_CSS = "tr.front td{background:#fff1d6;font-weight:bold}"


def _cell(column: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 1e4 else f"{value:.4g}"
    return str(value)


def sweep_html(frame: pd.DataFrame, png: bytes | None, meta: Mapping[str, Any],
               time_png: bytes | None = None) -> str:
    """The sweep page, answer first: the Pareto plot, the table of the front's points (by
    energy), the full table with the front's rows highlighted, then (a time sweep) accuracy
    against time, then the settings."""
    front = frame[frame["on_front"].astype(bool)]
    if "energy_pj_per_inference" in front:
        front = front.sort_values("energy_pj_per_inference", kind="stable")
    title = f"{meta.get('model', 'model')} on {meta.get('chip', 'chip')}"
    return _html.page("cimsim sweep", [
        _html.paragraph(f"{title}: {len(frame)} point{'s' * (len(frame) != 1)}, "
                        f"{len(front)} on the Pareto front "
                        "(maximum accuracy, minimum energy per inference)."),
        _html.figure(png, f"Pareto plot: {title}") if png else _html.paragraph("(no plot)"),
        _html.heading("Pareto front"),
        _html.paragraph(_UNITS),
        (_html.table(front, _cell) if len(front) else
         _html.paragraph("no point has both an accuracy and an energy per inference")),
        _html.heading("All points"),
        _html.paragraph("Highlighted rows are on the Pareto front. " + _UNITS),
        _html.table(frame, _cell,
                    row_classes=["front" if on else "" for on in frame["on_front"]]),
        *([_html.heading("Accuracy over time"),
           _html.figure(time_png, f"Accuracy against time after programming: {title}")]
          if time_png else []),
        _html.heading("Settings"),
        # the base chip's every field is in sweep.json; the page names the chip
        _html.items({k: v for k, v in meta.items() if k != "chip_config"}),
    ], css=_FRONT_CSS)


_UNITS = ("Units: energy pJ, latency ns per inference, area mm², accuracy a fraction, "
          "time_s s.")


def write_outputs(frame: pd.DataFrame, out: Path, meta: dict[str, Any]) -> list[Path]:
    """Write the table (CSV, JSON with ``meta`` and the front), the Pareto plot and the page
    into ``out``; the paths written."""
    from ..report import _png, plot_pareto

    # the files hold results only: the same command and seed write them byte for byte again
    # (a point's wall time stays in sweep.jsonl and in the frame run_sweep returns)
    table = frame.drop(columns=[c for c in TIMING_COLUMNS if c in frame])
    doc = dict(meta)
    doc["front"] = [pid for pid, on in zip(frame["point_id"], frame["on_front"], strict=True) if on]
    doc["points"] = table_records(table)
    fig = plot_pareto(frame, labels=point_labels(frame), by=front_group(frame),
                      title=f"{meta.get('model', 'model')} on {meta.get('chip', 'chip')}")
    png = _png(fig, dpi=120)
    # the page shows every figure the sweep writes
    time_png = _accuracy_time(frame, meta) if front_group(frame) == "time_s" else None
    name = {what: out / file for what, file in _WRITTEN.items()}
    files = [(name["table"], table.to_csv(index=False).encode()),
             (name["doc"], json.dumps(clean(doc), indent=2, allow_nan=False).encode()),
             (name["pareto"], png)]
    if time_png is not None:
        files.append((name["time"], time_png))
    files.append((name["page"], sweep_html(table, png, meta, time_png).encode()))
    # each file whole or not at all, and the files as a set (cimsim._atomic.write_set): a
    # sweep stopped mid-write never leaves a truncated sweep.json that `cimsim report` would
    # read back, nor a new table beside an earlier run's page
    # an earlier time sweep's figure, which would pass for this one's: removed with them
    return write_set(files, [name["time"]] if time_png is None else [])


def _accuracy_time(frame: pd.DataFrame, meta: dict[str, Any]) -> bytes:
    """The PNG of ``accuracy_time.png``: a time sweep's accuracy against time, one line per
    setting of the other swept axes."""
    from ..report import _png, plot_accuracy_time

    others = frame.drop(columns=["time_s"]).assign(time_s=frame["time_s"].iloc[0])
    data = frame.assign(setting=point_labels(others))
    fig = plot_accuracy_time(data, series="setting" if data["setting"].nunique() > 1 else None,
                             title=f"{meta.get('model', 'model')} on {meta.get('chip', 'chip')}")
    return _png(fig, dpi=120)


def rerender(folder: Path, out: Path) -> list[Path]:
    """Write the files of the sweep in ``folder`` (its ``sweep.json``) into ``out`` again,
    byte for byte what the sweep wrote (``cimsim report``); ``sweep.jsonl`` is not copied.

    Raises
    ------
    CimsimError
        ``sweep.json`` is not JSON, or not a table a sweep wrote (the message names the file).
    """
    p = Path(folder) / "sweep.json"
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        points = doc.pop("points")
        doc.pop("front")
        # the table is rebuilt as run_sweep built it: same columns, types, front and labels
        ids = [row["point_id"] for row in points]
        # and the chip fields swept: the columns that are neither axes nor measurements
        axes = [*AXES, *field_axes(k for k in (points[0] if points else {})
                                   if k not in (*METRICS, "on_front", "point_id"))]
        resolved = [{a: row[a] for a in axes} for row in points]
        records = {row["point_id"]: saved_numbers(
            {m: row[m] for m in METRICS if m not in TIMING_COLUMNS}, f"point {row['point_id']}")
            for row in points}
        table = sweep_table(resolved, ids, records)  # its casts read the values (n_arrays)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError,
            AttributeError) as exc:
        raise CimsimError(f"{p}: not a sweep table cimsim wrote ({type(exc).__name__}: "
                          f"{exc})") from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return write_outputs(table, out, doc)

"""The sweep table: one row per point in grid order, from the records; compact point labels."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..arrays.drift import duration_text
from .grid import AXES, INT_AXES, field_axes
from .pareto import front_group, pareto_front
from .runner import TOTALS
from .store import clean

__all__ = ["METRICS", "TIMING_COLUMNS", "axis_columns", "point_labels", "sweep_table",
           "table_records"]

METRICS: tuple[str, ...] = ("accuracy", "output_cosine", "energy_pj_per_inference",
                            "latency_ns_per_inference", "area_mm2", "tops_per_w", "adc_area_mm2",
                            "n_conversions_per_inference", "n_arrays", "wall_s", "status")
"""Columns measured per point (after the axis columns). ``output_cosine`` (without labels),
``adc_area_mm2`` and ``n_conversions_per_inference`` are NaN for points recorded before they
were measured."""

TIMING_COLUMNS: tuple[str, ...] = ("wall_s",)
"""Columns of :data:`METRICS` that time the run rather than measure the point: kept in
``sweep.jsonl`` and the frame, left out of ``sweep.csv``, ``sweep.json`` and ``sweep.html`` so
that the same command and seed write those files byte for byte again."""


def sweep_table(resolved: list[dict[str, Any]], ids: list[str],
                records: Mapping[str, dict[str, Any]]) -> pd.DataFrame:
    """The table of points ``resolved`` (axis values) with ids ``ids``, metrics from
    ``records`` (by id; a point without a record has NaN metrics, status ``missing``), and the
    ``on_front`` column."""
    rows = []
    for res, pid in zip(resolved, ids, strict=True):
        rec = records.get(pid, {})
        row = dict(res)
        for key in METRICS:
            value = rec.get(key)
            if key == "status":
                row[key] = "missing" if value is None else value
            else:
                row[key] = math.nan if value is None else value
        row["point_id"] = pid
        rows.append(row)
    fields = field_axes(dict.fromkeys(k for res in resolved for k in res))
    frame = pd.DataFrame(rows, columns=[*AXES, *fields, *METRICS, "point_id"])
    for col in ("accuracy", "output_cosine", *TOTALS, "adc_area_mm2",
                "n_conversions_per_inference", "wall_s"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    frame["n_arrays"] = pd.to_numeric(frame["n_arrays"], errors="coerce").astype("Int64")
    for col in INT_AXES:
        if frame[col].map(lambda v: isinstance(v, int) and not isinstance(v, bool)).all():
            frame[col] = frame[col].astype("int64")
    for col in ("thermal_sigma_lsb", "time_s"):
        if frame[col].map(lambda v: isinstance(v, (int, float))).all():
            frame[col] = frame[col].astype(float)
    for col in fields:  # a chip field's column: int64 or float where its values are numbers
        numbers = frame[col].map(lambda v: isinstance(v, (int, float))
                                 and not isinstance(v, bool))
        if numbers.all():
            ints = frame[col].map(lambda v: isinstance(v, int)).all()
            frame[col] = frame[col].astype("int64" if ints else float)
    frame.insert(len(AXES) + len(fields) + len(METRICS), "on_front",
                 pareto_front(frame, by=front_group(frame)))
    return frame


def table_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``frame`` as JSON-safe dicts (missing values None)."""
    return [clean(rec) for rec in
            frame.astype(object).where(frame.notna(), None).to_dict(orient="records")]


def _fmt_axis(axis: str, value: Any, name: str) -> str:
    if axis == "adc_bits":
        return f"{value}b"
    if axis == "adc_kind":
        return str(value).replace("ramp:", "")
    if axis == "bits_per_cell":
        return f"{value}b/cell"
    if axis == "array_size":
        return f"{value}²"
    if axis == "cols_per_adc":
        return f"{value}col/ADC"
    if axis == "slice_readout":
        return f"{value}-slices"
    if axis == "thermal_sigma_lsb":
        return f"σ{value:g}" if isinstance(value, (int, float)) else f"σ{value}"
    if axis == "time_s":
        # in the legend's units (t=1y, as its "t = 1 y"; the points said t=3.15e+07s)
        return (f"t={duration_text(value).replace(' ', '')}" if isinstance(value, (int, float))
                and math.isfinite(value) else f"t={value}")
    return f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"


def axis_columns(frame: pd.DataFrame) -> list[str]:
    """The axis columns of a sweep table: :data:`AXES` and the chip fields swept (the columns
    between them and the measurements)."""
    return [c for c in frame.columns if c not in (*METRICS, "on_front", "point_id")]


def point_labels(frame: pd.DataFrame) -> list[str]:
    """Compact labels (``'bs_kmq 4b'``, ``'input_bits=4 6b'``) from the axis columns that vary
    in ``frame``."""
    varying = [a for a in axis_columns(frame) if frame[a].astype(str).nunique() > 1]
    if not varying:
        varying = ["adc_bits"] if "adc_bits" in frame else []
    order = [*(a for a in varying if a not in AXES),
             *(a for a in ("adc_kind", "adc_bits", "bits_per_cell", "slice_readout",
                           "cols_per_adc", "array_size", "thermal_sigma_lsb", "time_s")
               if a in varying)]
    # a chip field by its own name (vdd_v=0.7, not tech.vdd_v=0.7: the plot's labels ran into
    # each other), its table too where two fields of that name vary
    short = [a.rpartition(".")[2] for a in order if a not in AXES]
    name = {a: (a if short.count(a.rpartition(".")[2]) > 1 else a.rpartition(".")[2])
            for a in order if a not in AXES}
    return [" ".join(_fmt_axis(a, row[a], name.get(a, a)) for a in order)
            for _, row in frame.iterrows()]

"""Design-space sweeps: one deployed model per grid point, accuracy against cost.

A sweep is the Cartesian product of a few chip knobs (ADC bits and kind, bits per cell, array
size, thermal noise). Every point deploys the model on a variant of the base chip, measures the
accuracy and reads the report's per-inference energy, latency, area and TOPS/W. Points run
in-process or in worker processes; each finished point is appended to ``sweep.jsonl`` at once,
so a killed sweep loses nothing already done and re-running it computes only what is missing.
See ``docs/sweep.md``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import pandas as pd

from ._version import __version__
from .config import ADCKind, ChipConfig, LevelFit, RangePolicy
from .errors import CimsimError, ConfigError

__all__ = [
    "AXES",
    "METRICS",
    "chip_for_point",
    "expand_grid",
    "pareto_front",
    "parse_adc_kind",
    "point_id",
    "run_sweep",
]

log = logging.getLogger(__name__)

AXES: tuple[str, ...] = ("array_size", "bits_per_cell", "thermal_sigma_lsb", "adc_kind",
                         "adc_bits")
"""Sweepable axes, in table-column and iteration order (the last varies fastest)."""

METRICS: tuple[str, ...] = ("accuracy", "energy_pj_per_inference", "latency_ns_per_inference",
                            "area_mm2", "tops_per_w", "n_arrays", "wall_s", "status")
"""Columns measured per point (after the axis columns)."""

_INT_AXES = ("array_size", "bits_per_cell", "adc_bits")
_TOTALS = ("energy_pj_per_inference", "latency_ns_per_inference", "area_mm2", "tops_per_w")
JSONL = "sweep.jsonl"

# Worker-process state, set once per worker by _init_worker (spawned processes share nothing).
_WORKER: dict[str, Any] = {}


# --------------------------------------------------------------------------------------------
# Grid
# --------------------------------------------------------------------------------------------
def parse_adc_kind(value: str) -> tuple[ADCKind, LevelFit | None]:
    """``'sar'``, ``'flash'``, ``'ramp'`` or ``'ramp:<level_fit>'`` -> (kind, level_fit).

    Raises
    ------
    ConfigError
        Any other string; the message lists what is allowed.
    """
    fits = ", ".join(f.value for f in LevelFit)
    allowed = f"'sar', 'flash', 'ramp' or 'ramp:<level_fit>' with level_fit one of {fits}"
    if not isinstance(value, str):
        raise ConfigError(f"adc_kind {value!r} is invalid; allowed: {allowed}")
    kind, sep, fit = value.strip().partition(":")
    try:
        adc_kind = ADCKind(kind.strip().lower())
    except ValueError:
        raise ConfigError(f"adc_kind {value!r} is invalid; allowed: {allowed}") from None
    if not sep:
        return adc_kind, None
    if adc_kind is not ADCKind.RAMP:
        raise ConfigError(f"adc_kind {value!r}: only 'ramp' takes a level fit; allowed: "
                          f"{allowed}")
    try:
        return adc_kind, LevelFit(fit.strip().lower())
    except ValueError:
        raise ConfigError(f"adc_kind {value!r}: unknown level fit {fit!r}; allowed: "
                          f"{allowed}") from None


def _kind_label(chip: ChipConfig) -> str:
    if chip.adc.kind is ADCKind.RAMP:
        return f"ramp:{chip.adc.level_fit.value}"
    return chip.adc.kind.value


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The points of ``grid`` (axis -> values): their Cartesian product in :data:`AXES` order.

    Each point holds only the swept axes; the last axis of :data:`AXES` varies fastest. Values
    are not validated here (a bad value makes its point fail, not the sweep).

    Raises
    ------
    ConfigError
        An unknown axis, or an axis with no values.
    """
    unknown = sorted(set(grid) - set(AXES))
    if unknown:
        raise ConfigError(f"unknown sweep axis/axes {unknown}; axes: {list(AXES)}")
    axes = [a for a in AXES if a in grid]
    values = []
    for axis in axes:
        vals = grid[axis]
        if isinstance(vals, (str, bytes)) or not isinstance(vals, Iterable):
            vals = [vals]
        vals = list(vals)
        if not vals:
            raise ConfigError(f"sweep axis {axis!r} has no values")
        values.append(vals)
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*values)]


def chip_for_point(chip: ChipConfig, point: Mapping[str, Any]) -> ChipConfig:
    """The variant of ``chip`` at ``point``.

    ``adc_kind`` ``'ramp:<fit>'`` sets ``kind='ramp'``, ``level_fit`` and
    ``range_policy='calibrated'`` (a ramp ADC's levels are fitted to calibration data);
    ``array_size`` s sets ``n_rows = n_cols = s`` and lowers ``rows_per_conversion`` and
    ``cols_per_adc`` to s where they exceed it.

    Raises
    ------
    ConfigError
        An invalid value (the message names the field).
    """
    adc, array = chip.adc, chip.array
    if "adc_kind" in point:
        kind, fit = parse_adc_kind(point["adc_kind"])
        changes: dict[str, Any] = {"kind": kind}
        if kind is ADCKind.RAMP:
            changes["range_policy"] = RangePolicy.CALIBRATED
            if fit is not None:
                changes["level_fit"] = fit
        adc = adc.replace(**changes)
    if "adc_bits" in point:
        adc = adc.replace(bits=point["adc_bits"])
    parts: dict[str, Any] = {"adc": adc}
    if "array_size" in point:
        s = point["array_size"]
        rpc = array.rows_per_conversion
        if isinstance(s, int) and rpc is not None:
            rpc = min(rpc, s)
        cpa = min(array.cols_per_adc, s) if isinstance(s, int) else array.cols_per_adc
        parts["array"] = array.replace(n_rows=s, n_cols=s, rows_per_conversion=rpc,
                                       cols_per_adc=cpa)
    if "bits_per_cell" in point:
        parts["device"] = chip.device.replace(bits_per_cell=point["bits_per_cell"])
    if "thermal_sigma_lsb" in point:
        parts["noise"] = chip.noise.replace(thermal_sigma_lsb=point["thermal_sigma_lsb"])
    return chip.replace(**parts)


def _resolved(chip: ChipConfig, point: Mapping[str, Any]) -> dict[str, Any]:
    """Every axis's value at ``point``: the swept value, or the base chip's."""
    a = chip.array
    out: dict[str, Any] = {
        "array_size": a.n_rows if a.n_rows == a.n_cols else None,
        "bits_per_cell": chip.device.bits_per_cell,
        "thermal_sigma_lsb": chip.noise.thermal_sigma_lsb,
        "adc_kind": _kind_label(chip),
        "adc_bits": chip.adc.bits,
    }
    for axis, value in point.items():
        if axis == "adc_kind":
            try:
                kind, fit = parse_adc_kind(value)
                fit = fit or chip.adc.level_fit
                value = f"ramp:{fit.value}" if kind is ADCKind.RAMP else kind.value
            except ConfigError:
                pass  # the point fails later with this message; keep the value as given
        out[axis] = value
    return out


# --------------------------------------------------------------------------------------------
# Identity of a point (the resume key)
# --------------------------------------------------------------------------------------------
def _hash_tensor(h: Any, t: Any) -> None:
    import torch

    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    try:
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    except (RuntimeError, TypeError):  # exotic dtypes: fall back to the printed values
        h.update(repr(t.tolist()).encode())


def model_fingerprint(model: Any) -> str:
    """SHA-256 of a model's class, printed structure and every state-dict tensor."""
    h = hashlib.sha256()
    h.update(type(model).__qualname__.encode())
    h.update(repr(model).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        _hash_tensor(h, t)
    return h.hexdigest()


def data_fingerprint(*tensors: Any) -> str:
    """SHA-256 of tensors (``None`` entries count as absent)."""
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none")
        else:
            _hash_tensor(h, t)
    return h.hexdigest()


def point_id(resolved: Mapping[str, Any], context: str) -> str:
    """Stable id of a point: a hash of its resolved axis values and the sweep's context
    (model, data, calibration, base chip and seed, see :func:`_context_hash`)."""
    text = json.dumps({"point": dict(sorted(resolved.items())), "context": context},
                      sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _context_hash(model_fp: str, data_fp: str, cal: Any, chip: ChipConfig, seed: int) -> str:
    cal_key = f"first:{cal}" if isinstance(cal, int) else data_fingerprint(cal)
    text = json.dumps({"model": model_fp, "data": data_fp, "calibration": cal_key,
                       "chip": chip.to_dict(), "seed": seed}, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# One point
# --------------------------------------------------------------------------------------------
def _measure(model, chip: ChipConfig, x_cal, x_eval, y_eval, seed: int,
             batch_size: int) -> dict[str, Any]:
    """Deploy ``model`` on ``chip``, run ``x_eval`` through it; accuracy and report totals."""
    import torch

    from .mapping import deploy

    sim = deploy(model, chip, x_cal, seed=seed)
    correct = 0
    with torch.no_grad():
        for i in range(0, x_eval.shape[0], batch_size):
            out = sim(x_eval[i:i + batch_size])
            if y_eval is not None:
                correct += int((out.argmax(dim=1) == y_eval[i:i + batch_size]).sum())
    n = int(x_eval.shape[0])
    totals = sim.report().totals
    row: dict[str, Any] = {"accuracy": correct / n if (y_eval is not None and n) else math.nan}
    for key in _TOTALS:
        value = totals.get(key, math.nan)
        row[key] = math.nan if value is None else float(value)
    row["n_arrays"] = int(totals.get("n_arrays_used", 0))
    return row


def _run_point(ctx: Mapping[str, Any], pid: str, point: Mapping[str, Any]) -> dict[str, Any]:
    """One point as a JSONL record; an error is recorded (``status``), never raised."""
    t0 = time.perf_counter()
    record: dict[str, Any] = {"point_id": pid, "point": dict(point)}
    try:
        variant = chip_for_point(ctx["chip"], point)
        record.update(_measure(ctx["model"], variant, ctx["x_cal"], ctx["x_eval"],
                               ctx["y_eval"], ctx["seed"], ctx["batch_size"]))
        record["status"] = "ok"
        record["final"] = True
    except CimsimError as exc:  # invalid config, unmappable, over capacity: deterministic
        record["status"] = f"error: {exc}"
        record["final"] = True
    except Exception as exc:  # anything else is recorded, and retried on the next run
        record["status"] = f"error: {type(exc).__name__}: {exc}"
        record["final"] = False
    record["wall_s"] = time.perf_counter() - t0
    record["cimsim_version"] = __version__
    return record


def _init_worker(ctx: dict[str, Any]) -> None:
    """Worker set-up: one thread each for numba, torch and BLAS (the pool is the parallelism)."""
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    try:  # no numba thread was launched yet in this fresh process: the pool size may change
        import numba
        from numba.core import config as numba_config

        numba_config.reload_config()
        numba.set_num_threads(1)
    except Exception:  # pragma: no cover - numba missing or already threaded
        log.debug("could not limit numba threads in a sweep worker", exc_info=True)
    import torch

    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        _WORKER["blas_limit"] = threadpool_limits(1)
    except ImportError:  # pragma: no cover
        pass
    _WORKER["ctx"] = ctx


def _worker_point(pid: str, point: dict[str, Any]) -> dict[str, Any]:
    return _run_point(_WORKER["ctx"], pid, point)


# --------------------------------------------------------------------------------------------
# Records on disk
# --------------------------------------------------------------------------------------------
def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, NumPy scalars plain numbers."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _read_records(path: Path) -> dict[str, dict[str, Any]]:
    """Records of ``sweep.jsonl`` by point id (the last one wins; a torn last line is skipped)."""
    records: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return records
    with path.open() as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: unreadable line skipped (an interrupted write?)", path, n)
                continue
            if isinstance(rec, dict) and "point_id" in rec:
                records[rec["point_id"]] = rec
    return records


def _append(path: Path, record: dict[str, Any]) -> None:
    line = json.dumps(_clean(record), allow_nan=False, sort_keys=True)
    with path.open("a") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


# --------------------------------------------------------------------------------------------
# Table, front, files
# --------------------------------------------------------------------------------------------
def pareto_front(frame: pd.DataFrame, *, accuracy: str = "accuracy",
                 energy: str = "energy_pj_per_inference") -> pd.Series:
    """Which rows are Pareto-optimal for (max ``accuracy``, min ``energy``).

    A row is on the front when its status is ``ok``, both values are finite, and no other such
    row is at least as accurate and at most as costly while better in one of the two. Rows with
    equal values are all on the front (or none).

    Returns
    -------
    Series of bool, aligned with ``frame.index``.
    """
    acc = pd.to_numeric(frame[accuracy], errors="coerce")
    en = pd.to_numeric(frame[energy], errors="coerce")
    ok = acc.notna() & en.notna() & (en.abs() != math.inf)
    if "status" in frame:
        ok &= frame["status"].eq("ok")
    on = pd.Series(False, index=frame.index)
    idx = list(frame.index[ok])
    for i in idx:
        dominated = any(
            acc[j] >= acc[i] and en[j] <= en[i] and (acc[j] > acc[i] or en[j] < en[i])
            for j in idx if j != i
        )
        on[i] = not dominated
    return on


def _table(points: list[dict[str, Any]], resolved: list[dict[str, Any]], ids: list[str],
           records: Mapping[str, dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for res, pid in zip(resolved, ids, strict=True):
        rec = records.get(pid, {})
        row = dict(res)
        for key in METRICS:
            value = rec.get(key)
            row[key] = (math.nan if value is None else value) if key != "status" else \
                (value if value is not None else "missing")
        row["point_id"] = pid
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*AXES, *METRICS, "point_id"])
    for col in ("accuracy", *_TOTALS, "wall_s"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    frame["n_arrays"] = pd.to_numeric(frame["n_arrays"], errors="coerce").astype("Int64")
    for col in _INT_AXES:
        if frame[col].map(lambda v: isinstance(v, int) and not isinstance(v, bool)).all():
            frame[col] = frame[col].astype("int64")
    if frame["thermal_sigma_lsb"].map(lambda v: isinstance(v, (int, float))).all():
        frame["thermal_sigma_lsb"] = frame["thermal_sigma_lsb"].astype(float)
    frame.insert(len(AXES) + len(METRICS), "on_front", pareto_front(frame))
    return frame


def _fmt_axis(axis: str, value: Any) -> str:
    if axis == "adc_bits":
        return f"{value}b"
    if axis == "adc_kind":
        return str(value).replace("ramp:", "")
    if axis == "bits_per_cell":
        return f"{value}b/cell"
    if axis == "array_size":
        return f"{value}²"
    if axis == "thermal_sigma_lsb":
        return f"σ{value:g}" if isinstance(value, (int, float)) else f"σ{value}"
    return str(value)  # pragma: no cover


def point_labels(frame: pd.DataFrame) -> list[str]:
    """Compact labels (``'bs_kmq 4b'``) from the axis columns that vary in ``frame``."""
    varying = [a for a in AXES if a in frame and frame[a].astype(str).nunique() > 1]
    if not varying:
        varying = ["adc_bits"] if "adc_bits" in frame else []
    order = [a for a in ("adc_kind", "adc_bits", "bits_per_cell", "array_size",
                         "thermal_sigma_lsb") if a in varying]
    return [" ".join(_fmt_axis(a, row[a]) for a in order) for _, row in frame.iterrows()]


def _records_json(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for rec in frame.astype(object).where(frame.notna(), None).to_dict(orient="records"):
        out.append(_clean(rec))
    return out


def _html(frame: pd.DataFrame, png: bytes | None, meta: Mapping[str, Any]) -> str:
    cols = list(frame.columns)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for _, row in frame.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
                text = "—"
            elif isinstance(v, float):
                text = f"{v:,.1f}" if (c == "wall_s" or abs(v) >= 1e4) else f"{v:.4g}"
            else:
                text = str(v)
            cells.append(f"<td>{html.escape(text)}</td>")
        cls = ' class="front"' if bool(row["on_front"]) else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    img = (f'<img alt="Pareto plot" src="data:image/png;base64,'
           f'{base64.b64encode(png).decode()}">' if png else "<p>(no plot)</p>")
    info = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>"
                   for k, v in meta.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cimsim sweep</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }}
th {{ background: #eee; }}
tr.front td {{ background: #fff1d6; font-weight: bold; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>cimsim sweep</h1>
<ul>{info}</ul>
{img}
<p>Highlighted rows are on the Pareto front (maximum accuracy, minimum energy per inference).
Units: energy pJ, latency ns per inference, area mm², accuracy a fraction, wall time s.</p>
<table><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table>
</body></html>
"""


def _write_outputs(frame: pd.DataFrame, out: Path, meta: dict[str, Any]) -> list[Path]:
    from .report import plot_pareto

    paths = []
    p = out / "sweep.csv"
    frame.to_csv(p, index=False)
    paths.append(p)
    p = out / "sweep.json"
    doc = dict(meta)
    doc["front"] = [pid for pid, on in zip(frame["point_id"], frame["on_front"], strict=True) if on]
    doc["points"] = _records_json(frame)
    p.write_text(json.dumps(_clean(doc), indent=2, allow_nan=False))
    paths.append(p)
    fig = plot_pareto(frame, labels=point_labels(frame),
                      title=f"{meta.get('model', 'model')} on {meta.get('chip', 'chip')}")
    p = out / "pareto.png"
    fig.savefig(p, dpi=120, bbox_inches="tight")
    paths.append(p)
    p = out / "sweep.html"
    p.write_text(_html(frame, (out / "pareto.png").read_bytes(), meta))
    paths.append(p)
    return paths


# --------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------
def _split(data: Any, calibration: Any) -> tuple[Any, Any, Any, Any]:
    """(x_cal, x_eval, y_eval, calibration key) from ``data`` and ``calibration``."""
    import torch

    if isinstance(data, torch.Tensor):
        x, y = data, None
    elif isinstance(data, (tuple, list)) and len(data) in (1, 2):
        x, y = data[0], (data[1] if len(data) == 2 else None)
    else:
        raise ConfigError("data must be a tensor x or a tuple (x, y) of tensors")
    if not isinstance(x, torch.Tensor) or (y is not None and not isinstance(y, torch.Tensor)):
        raise ConfigError("data must be a tensor x or a tuple (x, y) of tensors")
    if y is not None and y.shape[0] != x.shape[0]:
        raise ConfigError(f"data: {x.shape[0]} inputs but {y.shape[0]} labels")
    if x.shape[0] == 0:
        raise ConfigError("data is empty")
    if isinstance(calibration, bool) or not isinstance(calibration, (int, torch.Tensor)):
        raise ConfigError("calibration must be a number of inputs or a tensor of inputs")
    if isinstance(calibration, torch.Tensor):
        return calibration, x, y, calibration
    if calibration < 1:
        raise ConfigError(f"calibration = {calibration} is invalid; allowed: an integer >= 1")
    n_cal = min(calibration, x.shape[0])
    if x.shape[0] > n_cal:  # accuracy on inputs the calibration did not see
        return x[:n_cal], x[n_cal:], (None if y is None else y[n_cal:]), n_cal
    return x[:n_cal], x, y, n_cal


def run_sweep(
    model,
    data,
    chip: ChipConfig,
    grid: Mapping[str, Sequence[Any]],
    out_dir: str | Path,
    *,
    calibration: int | Any = 256,
    jobs: int = 1,
    seed: int = 0,
    progress: bool = True,
    batch_size: int = 256,
    model_name: str | None = None,
) -> pd.DataFrame:
    """Deploy ``model`` at every point of ``grid``; the accuracy-cost table, and files.

    Parameters
    ----------
    model : nn.Module
        The trained float model (never modified).
    data : Tensor or (Tensor, Tensor)
        Inputs ``x`` (first dimension: samples) and optional integer labels ``y``.
    chip : ChipConfig
        The base chip; each point is a variant of it (:func:`chip_for_point`).
    grid : dict
        Axis -> list of values; axes: ``adc_bits`` (int), ``adc_kind`` (``'sar'``,
        ``'flash'``, ``'ramp:<level_fit>'``), ``bits_per_cell`` (int), ``array_size`` (int,
        square arrays), ``thermal_sigma_lsb`` (float, cell-LSB). Points: the Cartesian product.
    out_dir : path
        Receives ``sweep.jsonl`` (one record per finished point, appended at once),
        ``sweep.csv``, ``sweep.json``, ``pareto.png`` and ``sweep.html``.
    calibration : int or Tensor
        An int n: the first n inputs of ``x`` calibrate and the accuracy is measured on the
        remaining inputs (on all of ``x`` when none remain). A tensor: these inputs calibrate and
        the accuracy is measured on all of ``x``.
    jobs : int
        1: points run in this process; N > 1: in N spawned worker processes.
    seed : int
        Deploy seed (programming variation, faults, conversion noise).
    progress : bool
        Show a progress bar over points (tqdm; hidden when not on a terminal).
    batch_size : int
        Evaluation batch size.
    model_name : str, optional
        Shown in the plot title and ``sweep.json``.

    Returns
    -------
    DataFrame
        One row per point in grid order: the axis columns (:data:`AXES`, the base chip's value
        where not swept), ``accuracy`` (fraction; NaN without labels),
        ``energy_pj_per_inference``, ``latency_ns_per_inference``, ``area_mm2``, ``tops_per_w``
        (NaN where the report has no such total), ``n_arrays``, ``wall_s``, ``status``
        (``'ok'`` or ``'error: ...'``), ``on_front`` and ``point_id``.

    Notes
    -----
    A point already recorded in ``out_dir/sweep.jsonl`` under the same point id is not run
    again; errors other than :class:`~cimsim.errors.CimsimError` are retried. See
    ``docs/sweep.md``.
    """
    from tqdm import tqdm

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs = {jobs!r} is invalid; allowed: an integer >= 1")
    points = expand_grid(grid)
    x_cal, x_eval, y_eval, cal_key = _split(data, calibration)
    x_all = data if not isinstance(data, (tuple, list)) else data[0]
    y_all = None if not isinstance(data, (tuple, list)) or len(data) < 2 else data[1]
    context = _context_hash(model_fingerprint(model), data_fingerprint(x_all, y_all), cal_key,
                            chip, seed)
    resolved = [_resolved(chip, p) for p in points]
    ids = [point_id(r, context) for r in resolved]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / JSONL
    records = _read_records(path)
    todo = [(pid, p) for pid, p in zip(ids, points, strict=True)
            if not records.get(pid, {}).get("final", False)]
    todo = list({pid: (pid, p) for pid, p in todo}.values())  # a repeated value runs once
    n_done = len(set(ids)) - len(todo)
    if n_done:
        log.info("sweep: %d of %d points already in %s", n_done, len(set(ids)), path)

    ctx = {"model": model, "chip": chip, "x_cal": x_cal, "x_eval": x_eval, "y_eval": y_eval,
           "seed": seed, "batch_size": batch_size}
    bar = tqdm(total=len(set(ids)), initial=n_done, desc="sweep", unit="point",
               disable=None if progress else True)

    def finish(rec: dict[str, Any]) -> None:
        _append(path, rec)
        records[rec["point_id"]] = json.loads(json.dumps(_clean(rec)))
        if rec["status"] != "ok":
            log.warning("sweep point %s failed: %s", rec["point"], rec["status"])
        bar.update(1)

    try:
        if jobs == 1 or len(todo) <= 1:
            for pid, p in todo:
                finish(_run_point(ctx, pid, p))
        else:
            _run_pool(ctx, todo, jobs, finish)
    finally:
        bar.close()

    frame = _table(points, resolved, ids, records)
    meta = {"cimsim_version": __version__, "model": model_name or type(model).__name__,
            "chip": chip.name, "seed": seed,
            "calibration": cal_key if isinstance(cal_key, int) else int(cal_key.shape[0]),
            "n_eval": int(x_eval.shape[0]),
            "grid": {a: [_clean(v) for v in grid[a]] for a in AXES if a in grid}}
    _write_outputs(frame, out, meta)
    return frame


def _run_pool(ctx: dict[str, Any], todo: list[tuple[str, dict[str, Any]]], jobs: int,
              finish) -> None:
    import multiprocessing

    # spawn: a forked child would inherit numba/torch/OpenMP thread pools in unknown states
    mp = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=mp,
                               initializer=_init_worker, initargs=(ctx,))
    clean_exit = False
    try:
        pending = {pool.submit(_worker_point, pid, p) for pid, p in todo}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                finish(fut.result())
        clean_exit = True
    finally:
        # interrupted: drop queued points at once; finished ones are already on disk
        pool.shutdown(wait=clean_exit, cancel_futures=True)

"""``run_sweep``: the grid's points resolved and identified, the missing ones run, files
written."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .._json import json_safe
from .._progress import bar_disabled
from .._seed import check_flag, check_seed
from .._version import __version__
from .._warn import warn_user
from ..config import ChipConfig, CostModel, _is_int, as_chip
from ..engine import engine_settings
from ..errors import ConfigError
from ..evaluate import forward_problem, score_problem
from .files import write_outputs
from .grid import chip_for_point, expand_grid, grid_values, identity, resolve_point
from .runner import SweepContext, prepared_model, refuse_while_bootstrapping, run_points
from .store import (
    DEFAULT_BATCH_SIZE,
    JSONL,
    append_record,
    clean,
    context_hash,
    data_fingerprint,
    model_fingerprint,
    point_id,
    read_records,
    repair_tail,
    results_lock,
)
from .table import sweep_table

__all__ = ["run_sweep"]

log = logging.getLogger(__name__)


def _split(data: Any, calibration: Any) -> tuple[Any, Any, Any, Any]:
    """(x_cal, x_eval, y_eval, calibration key) from ``data`` and ``calibration``."""
    import torch

    from .._inputs import input_count, input_rows

    if isinstance(data, (torch.Tensor, dict)):
        x, y = data, None
    elif isinstance(data, (tuple, list)) and len(data) in (1, 2):
        x, y = data[0], (data[1] if len(data) == 2 else None)
    else:
        raise ConfigError(_DATA_TYPES)
    if not _inputs(x) or (y is not None and not isinstance(y, torch.Tensor)):
        raise ConfigError(_DATA_TYPES)
    n = input_count(x)
    if y is not None:
        _check_labels(y, n)
    if n == 0:
        raise ConfigError("data is empty")
    if not (_is_int(calibration) or isinstance(calibration, torch.Tensor)):
        raise ConfigError("calibration must be a number of inputs or a tensor of inputs")
    if isinstance(calibration, torch.Tensor):
        if calibration.dim() == 0 or calibration.shape[0] == 0:
            # (every point failed "calibration data is empty", and the sweep ended as if run)
            raise ConfigError(f"calibration = a tensor of shape {tuple(calibration.shape)} "
                              "holds no input; allowed: an integer >= 1 or a tensor of "
                              "inputs, one row per input")
        return calibration, x, y, calibration
    calibration = int(calibration)  # a NumPy integer too (np.int64(128) was refused)
    if calibration < 1:
        raise ConfigError(f"calibration = {calibration} is invalid; allowed: an integer >= 1")
    n_cal = min(calibration, n)
    if n > n_cal:  # accuracy on inputs the calibration did not see
        return (input_rows(x, 0, n_cal), input_rows(x, n_cal), (None if y is None else y[n_cal:]),
                n_cal)
    return input_rows(x, 0, n_cal), x, y, n_cal


_DATA_TYPES = ("data must be a tensor x, a dict of the model's keyword inputs (tensors of one "
               "row per input) or a tuple (x, y) of them")


def _inputs(x: Any) -> bool:
    """Whether ``x`` is a tensor of inputs, or a non-empty dict of keyword-input tensors
    holding as many rows each."""
    import torch

    if isinstance(x, torch.Tensor):
        return x.dim() >= 1
    if not isinstance(x, dict) or not x or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) and v.dim() >= 1
            for k, v in x.items()):
        return False
    return len({v.shape[0] for v in x.values()}) == 1


def _check_labels(y: Any, n: int) -> None:
    """Labels are checked before any point runs, not after the first evaluation."""
    from ..mapping.loaders import label_problem

    problem = label_problem(y, n)
    if problem is not None:
        raise ConfigError(f"data: labels {problem}")


def _check_points(chip: ChipConfig, points: list[dict[str, Any]]) -> dict[int, str]:
    """Build every point's chip before any runs. A value no point of the grid can have (NaN
    noise, 0 ADC bits, more columns per ADC than any swept array has) is refused up front,
    naming the point, the field and the allowed values, instead of failing every point and
    exiting 0. A point invalid only as a combination of values each valid elsewhere in the grid
    (``cols_per_adc`` 128 with ``array_size`` 64, while 128 with 256 is fine) is skipped: the
    returned {index: status} (``'skipped: <why>'``); the others run."""
    problems: dict[int, str] = {}
    for i, p in enumerate(points):
        try:
            chip_for_point(chip, p)
        except ConfigError as exc:
            problems[i] = str(exc)
    valid = [p for i, p in enumerate(points) if i not in problems]
    for i, why in problems.items():
        p = points[i]
        # by type too: 4.0 or True equal to a valid 4 or 1 were skipped, not refused
        if any(not any(type(q[axis]) is type(v) and q[axis] == v for q in valid)
               for axis, v in p.items()):
            raise ConfigError(f"sweep point {p}: {why}")
    return {i: f"skipped: {why}" for i, why in problems.items()}


def _check_prepared(prepared: Any, chip: ChipConfig, points: list[dict[str, Any]],
                    skipped: dict[int, str]) -> dict[int, str]:
    """The points a trained twin cannot be deployed at (another geometry: array size, bits
    per cell; another calibrated ADC than its learned tables reach:
    ``PreparedModel.check_chip``), as {index: ``'skipped: <why>'``}, checked before any
    point runs; a ``ConfigError`` naming the first when no point can be deployed."""
    problems: dict[int, str] = {}
    for i, p in enumerate(points):
        if i not in skipped:
            try:
                prepared.check_chip(chip_for_point(chip, p))
            except ConfigError as exc:
                problems[i] = str(exc)
    if problems and len(problems) + len(skipped) == len(points):
        i = min(problems)
        raise ConfigError(f"sweep point {points[i]}: {problems[i]}")
    return {i: f"skipped: {why}" for i, why in problems.items()}


def _cost_basis(chip: ChipConfig, points: list[dict[str, Any]],
                resolved: list[dict[str, Any]]) -> str:
    """Which of the sweep's cost figures are calibrated and which predicted
    (``cimsim.report.cost_basis``): the base chip's, or, where the points differ (a calibrated
    preset's ADC factors hold for its own converter kind only), each with its ``adc_kind``s
    (``resolved``: the points' axis values, :func:`resolve_point`)."""
    from ..report import cost_basis as basis

    groups: dict[str, list[dict[str, Any]]] = {}
    for p, r in zip(points, resolved, strict=True):
        try:
            variant = chip_for_point(chip, p)
        except ConfigError:
            continue  # skipped: priced at no point
        groups.setdefault(basis(variant), []).append(r)
    if len(groups) <= 1:
        return next(iter(groups), basis(chip))
    # each basis named by the axis that tells the groups apart (the ADC kind, or a chip field
    # such as tech.cost_model: both groups were "adc_kind sar"), else every axis that differs
    values = {a: [{str(r[a]) for r in rs} for rs in groups.values()]
              for a in dict.fromkeys(["adc_kind", *(k for r in resolved for k in r)])}
    differ = [a for a, sets in values.items() if len(set(map(frozenset, sets))) > 1]
    apart = [a for a in differ if sum(map(len, values[a])) == len(set().union(*values[a]))]
    axes = apart[:1] or differ
    return "; ".join(", ".join(f"{a} {', '.join(dict.fromkeys(str(r[a]) for r in rs))}"
                               for a in axes) + f": {text}" for text, rs in groups.items())


def _distinct(chip: ChipConfig, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``points`` less those that resolve to a chip already listed (``[4, 4]``, ``'sar'`` and
    ``'SAR'``, ``0`` and ``0.0``): one row per point in the table, the first spelling kept."""
    seen: dict[str, dict[str, Any]] = {}
    for p in points:
        key = json.dumps(resolve_point(chip, p), sort_keys=True, default=repr)
        seen.setdefault(key, p)
    return list(seen.values())


def _warn_kinds_under_tables(chip: ChipConfig, grid: Mapping[str, Sequence[Any]]) -> None:
    """Converter kinds compared under the ``tables`` cost model rank by its lower bounds."""
    kinds = {str(getattr(k, "value", k)).partition(":")[0].strip().lower()
             for k in grid.get("adc_kind", ())}
    if len(kinds - {"digital"}) > 1 and chip.tech.cost_model is CostModel.TABLES:
        warnings.warn(
            f"sweep: adc_kind compares {', '.join(sorted(kinds))} under the base chip's "
            "'tables' cost model, which prices a SAR from its calibrated table but a flash "
            "converter as its 2^b - 1 bare comparators (no encoder or reference ladder: a "
            "lower bound) and a ramp, CCO or integrate-and-fire converter as 2^b comparator "
            "steps, so the kinds can rank otherwise than in silicon; tech.cost_model = "
            "'physical' prices every kind from the ADC survey's fits (docs/cost-model.md): "
            "compare the kinds under both",
            UserWarning, stacklevel=3)


def run_sweep(
    model,
    data,
    chip: ChipConfig | str | Path,
    grid: Mapping[str, Sequence[Any]],
    out_dir: str | Path,
    *,
    calibration: int | Any = 256,
    jobs: int = 1,
    seed: int = 0,
    progress: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    model_name: str | None = None,
    client: Any = None,
    exclude: str | Sequence[str] = (),
    reference: Any = None,
) -> pd.DataFrame:
    """Deploy ``model`` at every point of ``grid``; the accuracy-cost table, and files.

    Parameters
    ----------
    model : nn.Module or cimsim.train.PreparedModel
        The trained float model (never modified), deployed and calibrated at every point;
        or a model trained for the chip (``cimsim.train.prepare`` and a training loop),
        deployed with what it learned at every point (``PreparedModel.deploy(chip=)``:
        its weights, scales and ADC tables, a calibrated linear ADC's range on the grid of
        the point's bits; nothing calibrated, ``calibration`` only holds inputs out of the
        evaluation). Points it cannot be deployed at (another array size or bits per cell,
        another calibrated ADC) are skipped (``'skipped: ...'``).
    data : Tensor, dict, or (inputs, Tensor)
        Inputs ``x`` (first dimension: samples), or a dict of the model's keyword inputs
        (``model(**x)``; each of one row per sample), and optional integer labels ``y``.
    chip : ChipConfig, str or Path
        The base chip; each point is a variant of it (:func:`chip_for_point`).
    grid : dict
        Axis -> list of values; axes: ``adc_bits`` (int), ``adc_kind`` (``'sar'``,
        ``'flash'``, ``'ramp:<level_fit>'``), ``bits_per_cell`` (int), ``array_size`` (int,
        square arrays), ``cols_per_adc`` (int, columns sharing one ADC, 1..columns),
        ``slice_readout`` (``'digital'``, ``'analog'``), ``thermal_sigma_lsb`` (float,
        cell-LSB), ``time_s`` (float, seconds after programming the model runs at,
        docs/drift.md); and any chip field (``'input_bits'``, ``'weight_bits'``,
        ``'dac.bits'``, ``'tech.vdd_v'``, ``'tech.node_nm'``: ``'TABLE.FIELD'`` or a top-level
        field, values as a chip file writes them), set as ``--set`` would (a field a named
        axis sets is refused, naming the axis). Points: the Cartesian product, the chip
        fields outermost.
    out_dir : path
        Receives ``sweep.jsonl`` (one record per finished point, appended at once),
        ``sweep.csv``, ``sweep.json``, ``pareto.png`` and ``sweep.html`` (and
        ``accuracy_time.png`` when ``time_s`` is swept).
    calibration : int or Tensor
        An int n: the first n inputs of ``x`` calibrate and the accuracy is measured on the
        remaining inputs (on all of ``x`` when none remain). A tensor: these inputs calibrate and
        the accuracy is measured on all of ``x``.
    jobs : int
        1: points run in this process (or on ``client``'s cluster); N > 1: in N spawned worker
        processes.
    seed : int
        Deploy seed (programming variation, faults, conversion noise).
    progress : bool
        Show a progress bar over points (tqdm) on a terminal; off one, a line per finished
        point on stderr instead.
    batch_size : int
        Evaluation batch size.
    model_name : str, optional
        Shown in the plot title and ``sweep.json``.
    client : distributed.Client, optional
        Run the points on this Dask cluster (one task per point; this process alone writes
        ``sweep.jsonl``); ``jobs`` must then be 1. :func:`cimsim.sweep.dask_client` makes one
        from ``'local:N'`` or a scheduler address. Results do not depend on where points run.
    exclude : str or list of str
        Layer names or globs (``fnmatch``) kept digital at every point, as
        ``cimsim.deploy(exclude=...)`` (keeping a network's first and last layers digital, as
        many CIM papers do). Part of the points' identity: a sweep with another exclusion is
        another sweep.
    reference : nn.Module, optional
        Without labels, the float model each point's ``output_cosine`` is measured against;
        default ``model`` (a prepared model: its ``float_model()``, the learned weights).
        ``cimsim train --sweep-adc-bits`` passes the model it started from, as its report's
        cosine does. Part of the points' identity without labels; with labels unused.

    Returns
    -------
    DataFrame
        ``attrs["n_points_resumed"]``: points found in ``sweep.jsonl`` and not run again;
        ``attrs["n_points_lost"]``: points lost with a worker that died (a Dask worker, or a
        ``jobs`` worker twice; status ``missing``; the next run computes them);
        ``attrs["n_records_other"]``: records in ``sweep.jsonl`` of other points or sweeps
        (kept there, not in this table); ``attrs["cost_figures"]``: which cost figures are
        calibrated and which predicted (as ``sweep.json`` says).
        One row per point in grid order: the axis columns (:data:`AXES`, the base chip's value
        where not swept, then the chip fields swept), ``accuracy`` (fraction; NaN without
        labels), ``output_cosine`` (simulated vs float outputs; NaN with labels),
        ``energy_pj_per_inference``, ``latency_ns_per_inference``, ``area_mm2``,
        ``adc_area_mm2``, ``tops_per_w`` (NaN where the report has no such total),
        ``n_conversions_per_inference``, ``n_arrays``, ``wall_s``, ``status`` (``'ok'``,
        ``'error: ...'`` or ``'skipped: ...'``), ``on_front`` and ``point_id``.

    Raises
    ------
    ConfigError
        Before any point runs: an unknown axis, a value no point of the grid can have (named
        with its point; a combination of values each valid in another point is skipped
        instead, status ``'skipped: ...'``), bad labels, ``jobs`` or ``batch_size``.
    CimsimError
        Another sweep holds ``out_dir`` (its ``sweep.jsonl.lock``), or a spawned worker called
        it while importing a script that lacks the ``__main__`` guard.

    Notes
    -----
    A point already recorded in ``out_dir/sweep.jsonl`` under the same point id is not run
    again; errors other than :class:`~cimsim.errors.CimsimError` are retried. A torn last line
    (a kill during a write) is cut off before new records are appended. See
    ``docs/sweep.md``.
    """

    refuse_while_bootstrapping()
    seed = check_seed(seed)  # refused before any point, not by every point
    progress = check_flag(progress, "progress")  # "x" was taken for True
    if model_name is not None and not isinstance(model_name, str):
        raise ConfigError(f"model_name = {model_name!r} is invalid; allowed: None or a name")
    for name, value in (("jobs", jobs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} = {value!r} is invalid; allowed: an integer >= 1")
    if client is not None and jobs != 1:
        raise ConfigError(f"jobs = {jobs} with a Dask client: the cluster's workers are the "
                          "parallelism; allowed: jobs = 1 with a client")
    chip = as_chip(chip)
    excluded = _exclusion(exclude)
    prepared = prepared_model(model)
    if prepared and excluded:
        raise ConfigError(f"exclude = {exclude!r} with a prepared model: its layers kept "
                          "digital are the ones prepare(exclude=...) kept; allowed: no exclude "
                          "with a cimsim.train.PreparedModel")
    grid = grid_values(grid)  # read once: a scalar or a generator is a list from here on
    points = _distinct(chip, expand_grid(grid))
    skipped = _check_points(chip, points)
    if prepared:
        skipped |= _check_prepared(model, chip, points, skipped)
        trained_for = model.t_inference_s
        if trained_for is not None and trained_for != chip.device.drift_t0_s \
                and "time_s" not in grid:
            warnings.warn(f"the prepared model was trained for t_inference_s = {trained_for:g} "
                          "s after programming; the sweep's points run at their time_s, the "
                          f"chip's device.drift_t0_s = {chip.device.drift_t0_s:g} s where it is "
                          f"not swept: add 'time_s': [{trained_for:g}] to the grid for the time "
                          "it was trained for", UserWarning, stacklevel=2)
    _warn_kinds_under_tables(chip, grid)
    x_cal, x_eval, y_eval, cal_key = _split(data, calibration)
    x_all = data if not isinstance(data, (tuple, list)) else data[0]
    y_all = None if not isinstance(data, (tuple, list)) or len(data) < 2 else data[1]
    # inputs the model does not take are refused here, by name: each point failed after its
    # deploy with the model's shape error (a calibration tensor of another feature count)
    # (x_cal is the calibration tensor itself where one was given, else rows of x)
    checked = [("data", x_all)] + ([("calibration", x_cal)] if x_cal is calibration else [])
    for what, inputs in checked:
        if (problem := forward_problem(model, inputs)) is not None:
            raise ConfigError(f"{what}: {problem}; allowed: inputs the model takes")
    if y_all is not None and (problem := score_problem(model, x_all, y_all)) is not None:
        raise ConfigError(f"data: {problem}")  # else every point scored 0 % as 'ok'

    # a trained twin: what its deploy hands the engine too (a method's forward rescale is a
    # plain attribute, no state)
    if reference is not None and not (callable(reference) and hasattr(reference, "state_dict")):
        raise ConfigError(f"reference = {type(reference).__name__} is invalid; allowed: None "
                          "or a float model (an nn.Module)")
    if y_all is not None:
        reference = None  # scores are accuracies: no cosine is measured
    model_key = (model_fingerprint(model) + (model.engine_digest() if prepared else "")
                 + ("" if reference is None else model_fingerprint(reference)))
    context = context_hash(model_key, data_fingerprint(x_all, y_all), cal_key, chip, seed,
                           excluded, batch_size)
    resolved = [resolve_point(chip, p) for p in points]
    # a point at the chip's t0, cols_per_adc and slice_readout keeps the id it had before
    # these became axes (an older sweep.jsonl resumes)
    ids = [point_id(identity(chip, p), context) for p in points]
    skips = {ids[i]: status for i, status in skipped.items()}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / JSONL
    with results_lock(path):
        ctx = SweepContext(model=model, chip=chip, x_cal=x_cal, x_eval=x_eval, y_eval=y_eval,
                           seed=seed, batch_size=batch_size, exclude=excluded,
                           reference=reference)
        frame = _run_locked(path, points, resolved, ids, grid, model, chip, seed, cal_key,
                            model_name, ctx, jobs, progress, client, skips)
    return frame


def _exclusion(exclude: str | Sequence[str]) -> tuple[str, ...]:
    """``exclude`` as a tuple of names / globs, or a ConfigError naming it."""
    patterns = (exclude,) if isinstance(exclude, str) else exclude
    try:
        out = tuple(patterns)
    except TypeError:
        out = None
    if out is None or not all(isinstance(p, str) and p for p in out):
        raise ConfigError(f"exclude = {exclude!r} is invalid; allowed: a layer name or glob, or "
                          "a list of them (non-empty strings)")
    return out


def _run_locked(path: Path, points: list[dict[str, Any]], resolved: list[dict[str, Any]],
                ids: list[str], grid: Mapping[str, Sequence[Any]], model: Any,
                chip: ChipConfig, seed: int, cal_key: Any, model_name: str | None,
                ctx: SweepContext, jobs: int, progress: bool, client: Any,
                skips: Mapping[str, str]) -> pd.DataFrame:
    """Run the points not yet in ``path`` and not in ``skips`` (id -> status of a point
    skipped as an impossible combination; not recorded) and write the files (the results lock
    held)."""
    from tqdm.auto import tqdm

    repair_tail(path)
    records = read_records(path)
    todo = [(pid, p) for pid, p in zip(ids, points, strict=True)
            if pid not in skips and not records.get(pid, {}).get("final", False)]
    todo = list({pid: (pid, p) for pid, p in todo}.values())  # a repeated value runs once
    n_run = len(set(ids) - set(skips))
    n_done = n_run - len(todo)
    if n_done:
        log.info("sweep: %d of %d points already in %s", n_done, n_run, path)
    for pid, p in zip(ids, points, strict=True):
        if pid in skips:
            log.warning("sweep point %s %s", p, skips[pid])
    bar = tqdm(total=n_run, initial=n_done, desc="sweep", unit="point",
               disable=bar_disabled(progress))
    # Off a terminal (a log file, nohup, CI) tqdm hides its bar: one line per finished point
    # instead, so a long sweep's log says how far it got before it ends or is stopped.
    lines = progress and bar.disable
    done = n_done  # tqdm counts nothing while disabled
    if lines and todo:  # the first point (deploy, first kernels) can take a while in silence
        print(f"sweep: {len(todo)} of {n_run} points to run", file=sys.stderr, flush=True)

    def finish(rec: dict[str, Any]) -> None:
        nonlocal done
        records[rec["point_id"]] = append_record(path, rec)
        for message in rec.get("warnings", ()):
            warn_user(f"sweep point {rec['point']}: {message}")  # at the caller's line
        if rec["status"] != "ok" and not lines:  # a progress line below says it already
            log.warning("sweep point %s failed: %s", rec["point"], rec["status"])
        bar.update(1)
        done += 1
        if lines:
            print(f"sweep: {done}/{n_run} points done; {rec['point']}: {rec['status']}",
                  file=sys.stderr, flush=True)

    try:
        lost = run_points(ctx, todo, jobs, finish, client)
    finally:
        bar.close()
    if lost:
        log.warning("sweep: %d point(s) lost with their workers and not recorded; run the same "
                    "sweep again to compute them", len(lost))

    frame = sweep_table(resolved, ids, {**records, **{pid: {"status": status}
                                                      for pid, status in skips.items()}})
    from .._inputs import input_count

    meta = {"cimsim_version": __version__, "model": model_name or type(model).__name__,
            "chip": chip.name,
            # the description names the fields --set changed ("... (with --set tech.vdd_v=1)"):
            # the page showed two sweeps at two supplies under one chip name
            "chip_description": chip.description,
            "cost_figures": _cost_basis(chip, points, resolved), "seed": seed,
            # every field of the base chip: a chip file's or --set's values are not in its name
            "chip_config": json_safe(chip.to_dict()),  # an infinite on/off ratio as "inf"
            "calibration": cal_key if isinstance(cal_key, int) else int(cal_key.shape[0]),
            "n_eval": input_count(ctx.x_eval), "batch_size": ctx.batch_size,
            **engine_settings(),
            "grid": {a: [clean(v) for v in values] for a, values in grid.items()}}
    if ctx.exclude:
        meta["exclude"] = list(ctx.exclude)
    write_outputs(frame, path.parent, meta)
    frame.attrs["cost_figures"] = meta["cost_figures"]
    frame.attrs["n_points_resumed"] = n_done  # found in sweep.jsonl, not run again
    frame.attrs["n_points_lost"] = len(lost)  # a worker died under them: rerun
    # records of other sweeps (another model, data, chip, seed, or grid values not in this one)
    # stay in sweep.jsonl but not in this table: say so, a different chip is never mixed in
    frame.attrs["n_records_other"] = len(set(records) - set(ids))
    return frame

"""Running the points of a sweep: one point as a record, and many in this process, a local
pool or a Dask cluster (:mod:`.cluster`).

Every point is measured by :func:`run_point`, in this process or in a worker; only the caller
(through ``finish``) writes records, so the records file has one writer.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._version import __version__
from ..config import ChipConfig
from ..errors import CimsimError, ConfigError
from ..events import Component
from .grid import chip_for_point

__all__ = ["SweepContext", "TOTALS", "limit_threads", "prepared_model", "run_point", "run_points"]

log = logging.getLogger(__name__)

TOTALS: tuple[str, ...] = ("energy_pj_per_inference", "latency_ns_per_inference", "area_mm2",
                           "tops_per_w")
"""Report totals copied into each point's record."""

# Worker-process state, set once per worker by _init_worker (spawned processes share nothing).
_WORKER: dict[str, Any] = {}


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepContext:
    """What every point of one sweep shares; sent once to each worker process."""

    model: Any
    """The trained torch model, or a trained ``cimsim.train.PreparedModel`` (never
    modified)."""
    chip: ChipConfig
    """The base chip; a point is a variant of it."""
    x_cal: Any
    """Calibration inputs, a tensor."""
    x_eval: Any
    """Evaluation inputs, a tensor."""
    y_eval: Any
    """Evaluation labels, or None (the accuracy is then NaN)."""
    seed: int
    """Deploy seed."""
    batch_size: int
    """Evaluation batch size."""
    exclude: tuple[str, ...] = ()
    """Layer names or globs kept digital at every point (``deploy(exclude=)``)."""
    reference: Any = None
    """The float model a point's ``output_cosine`` is measured against (no labels); None:
    ``model``, or a prepared model's ``float_model()``."""


def prepared_model(model: Any) -> bool:
    """Whether ``model`` is a trained twin (``cimsim.train.PreparedModel``), which a sweep
    deploys with what it learned (``PreparedModel.deploy(chip=)``) instead of calibrating the
    float model; ``cimsim.train`` is not imported for the question."""
    twin = sys.modules.get("cimsim.train.twin")
    return twin is not None and isinstance(model, twin.PreparedModel)


def _measure(model: Any, chip: ChipConfig, x_cal: Any, x_eval: Any, y_eval: Any, seed: int,
             batch_size: int, t_inference_s: float | None = None,
             exclude: tuple[str, ...] = (), reference: Any = None) -> dict[str, Any]:
    """Deploy ``model`` on ``chip`` (seen ``t_inference_s`` after programming; the layers
    ``exclude`` names kept digital), run ``x_eval`` through it; accuracy and report totals.
    A trained twin deploys its learned weights, scales and ADC ranges (``x_cal`` unused)."""
    from ..evaluate import accuracy, output_cosine
    from ..mapping import deploy

    prepared = prepared_model(model)
    if prepared:
        # at the point's time, as its row says (the chip's t0 where time_s is not swept), not
        # at the time the twin was trained for: a point keeps its id whatever the twin's
        t = chip.device.drift_t0_s if t_inference_s is None else t_inference_s
        sim = model.deploy(seed, chip=chip, t_inference_s=t)
    else:
        # no deploy bar nested in the sweep's own (it left cursor-up residue on a terminal)
        sim = deploy(model, chip, x_cal, seed=seed, t_inference_s=t_inference_s,
                     exclude=list(exclude), progress=False)
    if y_eval is None:
        # no labels (a language model's tokens): how close the outputs stay to the float
        # model's, as `cimsim simulate` reports it; the forwards the costs are counted on
        if reference is None:  # a trained twin: its learned float weights
            reference = model.float_model() if prepared else model
        cosine = output_cosine(reference, sim, x_eval, batch_size=batch_size)
        acc = math.nan
    else:
        acc = accuracy(sim, x_eval, y_eval, batch_size=batch_size)
        cosine = math.nan
    report = sim.report()
    totals = report.totals
    row: dict[str, Any] = {"accuracy": acc, "output_cosine": cosine}
    for key in TOTALS:  # every report has these totals
        row[key] = float(totals[key])
    # what ADC sharing and slice read-out trade: converter area against conversions
    area = report.area
    row["adc_area_mm2"] = (float(area.loc[area["component"] == Component.ADC, "area_um2"].sum())
                           * 1e-6 if len(area) else 0.0)
    row["n_conversions_per_inference"] = float(totals["n_conversions_per_inference"])
    row["n_arrays"] = int(totals["n_arrays_used"])
    return row


_ONE_POINT_AT_A_TIME = threading.Lock()
_HIDDEN_BY_DEFAULT = (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                      ResourceWarning)


def run_point(ctx: SweepContext, pid: str, point: Mapping[str, Any]) -> dict[str, Any]:
    """One point as a record for ``sweep.jsonl``; an error is recorded (``status``), never
    raised. ``final`` is False for errors cimsim did not raise on purpose: those are retried
    on the next run."""
    t0 = time.perf_counter()
    record: dict[str, Any] = {"point_id": pid, "point": dict(point)}
    # the point's warnings travel with its record, and the driver says them with the point
    # named: a worker process printed Python's raw "path:line: UserWarning" (and its source
    # line), interleaved with the other workers', and no warning said which point it was.
    # catch_warnings is process-wide, so the points of one process run one at a time (threads
    # of a Dask worker, Client(processes=False)): two at once put one's warnings in the other's
    # record, and the hook of the first to end stayed installed, swallowing later warnings;
    # a point's kernels use the process's cores already
    with _ONE_POINT_AT_A_TIME, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            variant = chip_for_point(ctx.chip, point)
            record.update(_measure(ctx.model, variant, ctx.x_cal, ctx.x_eval, ctx.y_eval,
                                   ctx.seed, ctx.batch_size, point.get("time_s"), ctx.exclude,
                                   ctx.reference))
            record["status"] = "ok"
            record["final"] = True
        except CimsimError as exc:  # invalid config, unmappable, over capacity: deterministic
            record["status"] = f"error: {exc}"
            record["final"] = True
        except Exception as exc:  # anything else is recorded, and retried on the next run
            record["status"] = f"error: {type(exc).__name__}: {exc}"
            record["final"] = False
    # (the categories Python's default filters hide, a library's deprecations, stay hidden)
    said = list(dict.fromkeys(" ".join(str(w.message).split()) for w in caught
                              if not issubclass(w.category, _HIDDEN_BY_DEFAULT)))
    if said:
        record["warnings"] = said
    record["wall_s"] = time.perf_counter() - t0
    record["cimsim_version"] = __version__
    return record


UNGUARDED = ("a sweep (run_sweep, or dask_client('local:N')) was started while a spawned worker "
             "process imported the main script: the script has no `if __name__ == "
             "\"__main__\":` guard around it; jobs > 1 and local:N clusters spawn workers "
             "that import it (docs/sweep.md)")
"""The error of a sweep whose script lacks the main guard (:func:`refuse_while_bootstrapping`),
in the worker that imported the script and in the parent."""


UNGUARDED_MARK = "CIMSIM_UNGUARDED_MARK"
"""The environment variable naming the file a spawned worker that met :data:`UNGUARDED`
creates for its parent (the spawned workers inherit the environment; the error comes while
the worker imports the main script, before anything else reaches it): the parent sees only a
broken pool, which it took for a killed worker (the sweep ran twice, lost every point and
exited 0, advising a rerun that failed alike)."""


def refuse_while_bootstrapping() -> None:
    """Refuse a sweep started by a spawned process while it imports the parent's main script.

    A script that calls :func:`run_sweep` with ``jobs > 1`` (or ``local:N``) and no
    ``if __name__ == "__main__":`` guard is imported again by every spawned worker, and each
    import would start the sweep anew and meet the parent's lock ("another sweep is writing
    into ..."), an error that names the wrong cause. ``_inheriting`` is what multiprocessing's
    own "bootstrapping phase" check reads (``multiprocessing.spawn._check_not_importing_main``).
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # the parent sees only a broken pool: it raises this error too where it finds the mark
        with contextlib.suppress(OSError):
            if mark := os.environ.get(UNGUARDED_MARK):  # a pool's worker: its parent reads it
                Path(mark).touch()
        raise CimsimError(UNGUARDED)


@contextlib.contextmanager
def unguarded_mark() -> Iterator[Path]:
    """A fresh path (no file) for the workers of one pool to create on :data:`UNGUARDED`,
    named to them by :data:`UNGUARDED_MARK` for the duration; removed after."""
    fd, name = tempfile.mkstemp(prefix=".cimsim-unguarded-")
    os.close(fd)
    mark = Path(name)
    mark.unlink()
    saved = os.environ.get(UNGUARDED_MARK)
    os.environ[UNGUARDED_MARK] = name
    try:
        yield mark
    finally:
        if saved is None:
            os.environ.pop(UNGUARDED_MARK, None)
        else:
            os.environ[UNGUARDED_MARK] = saved
        with contextlib.suppress(OSError):
            mark.unlink(missing_ok=True)


@contextlib.contextmanager
def naming_the_guard(*errors: type[BaseException]) -> Iterator[None]:
    """Start spawned workers in the block: one of ``errors`` after a worker met
    :data:`UNGUARDED` (it left the :func:`unguarded_mark`) is raised as that error instead
    (the parent sees only a broken pool, or a cluster that failed to start); other errors and
    other causes pass through."""
    with unguarded_mark() as mark:
        try:
            yield
        except errors:
            if mark.exists():
                raise CimsimError(UNGUARDED) from None
            raise


def run_points(ctx: SweepContext, todo: list[tuple[str, dict[str, Any]]], jobs: int,
               finish: Callable[[dict[str, Any]], None], client: Any = None) -> list[str]:
    """Run every ``(point id, point)`` of ``todo``; ``finish(record)`` as each one ends.

    With a Dask ``client``: on its cluster (:func:`.cluster.run_points_dask`). Else ``jobs`` 1
    (or a single point): in this process, in order; N > 1: in N spawned worker processes,
    records in completion order.

    Returns the ids of points lost with a worker (never recorded, so the next run computes
    them): a Dask worker the cluster gave up on, or a pool worker that died (killed, out of
    memory) under its point twice.
    """
    if client is not None:
        from .cluster import run_points_dask

        return run_points_dask(ctx, todo, client, finish)
    if jobs == 1 or len(todo) <= 1:
        for pid, p in todo:
            finish(run_point(ctx, pid, p))
        return []
    # a worker that dies (killed, out of memory) breaks the whole pool: its points and the
    # others' in flight are rerun in a new pool, once, as Dask retries a lost worker's tasks
    done: set[str] = set()

    def finished(rec: dict[str, Any]) -> None:
        done.add(rec["point_id"])
        finish(rec)

    for attempt in range(2):
        try:
            with naming_the_guard(BrokenProcessPool):  # a worker met it, not a kill
                _run_pool(ctx, todo, jobs, finished)
            return []
        except BrokenProcessPool:
            todo = [(pid, p) for pid, p in todo if pid not in done]
            log.warning("sweep: a worker process died (killed, or out of memory) with %d "
                        "point(s) unfinished%s", len(todo),
                        "; running them in a new pool" if attempt == 0 else "")
    return [pid for pid, _ in todo]


def limit_threads() -> None:
    """One thread for numba, torch and BLAS in this worker process (the workers are the
    parallelism). Numba's limit is per calling thread, so a Dask worker calls this per task."""
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    try:  # before numba launched its threads (a fresh process) the pool size may still change
        import numba
        from numba.core import config as numba_config

        numba_config.reload_config()
        numba.set_num_threads(1)
    except Exception:  # pragma: no cover - numba missing or already threaded
        log.debug("could not limit numba threads in a sweep worker", exc_info=True)
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    if "blas_limit" not in _WORKER:
        try:
            from threadpoolctl import threadpool_limits

            _WORKER["blas_limit"] = threadpool_limits(1)
        except ImportError:  # pragma: no cover
            _WORKER["blas_limit"] = None


def pickled_context(ctx: SweepContext) -> bytes:
    """``ctx`` as the bytes a worker process loads (cloudpickle: a model holding a lambda or
    a class defined in a function travels); one that cannot travel at all (a lock, an open
    file) is a ``ConfigError`` saying how to run it, not a pickling traceback."""
    import cloudpickle

    try:
        return cloudpickle.dumps(ctx)
    except Exception as exc:  # noqa: BLE001 - pickling raises anything its objects raise
        raise ConfigError(f"the sweep's model or data cannot be sent to worker processes "
                          f"({type(exc).__name__}: {exc}); run it with jobs = 1 (--jobs 1), "
                          "in this process") from None


def _pool_context(ctx: SweepContext) -> SweepContext | bytes:
    """What a pool worker is started with: ``ctx`` itself where the standard pickle takes its
    model (tensors then travel through shared memory, and a worker starts at once), else its
    cloudpickle bytes (:func:`pickled_context`: a model holding a lambda or a class defined
    in a function failed with a pickling traceback under ``jobs > 1``, and ran with
    ``jobs=1`` and on Dask)."""
    import pickle

    try:
        pickle.dumps(ctx.model)
    except Exception:  # noqa: BLE001 - pickling raises anything its objects raise
        return pickled_context(ctx)
    return ctx


def _init_worker(ctx: SweepContext | bytes, driver_pid: int | None = None) -> None:
    """Pool worker set-up: one thread per library, and the shared context (or its cloudpickle
    bytes, :func:`_pool_context`). A worker ignores
    Ctrl-C (the terminal sends it to the whole process group: the driver stops the pool, see
    :func:`_run_pool`) and, on Linux, dies with its driver (a driver killed by a scheduler or
    ``kill`` left its workers computing, re-parented to init)."""
    limit_threads()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(driver_pid)
    if isinstance(ctx, bytes):
        import cloudpickle

        ctx = cloudpickle.loads(ctx)
    _WORKER["ctx"] = ctx


def _die_with_parent(driver_pid: int | None) -> None:
    """Linux: have the kernel send this process SIGTERM when its parent exits
    (``prctl(PR_SET_PDEATHSIG)``), and exit now if the parent is no longer ``driver_pid`` (it
    died before the call); elsewhere nothing (the workers then finish their point)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if driver_pid is not None and os.getppid() != driver_pid:
            os._exit(1)  # the driver died before the call: nothing would signal
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl
        log.debug("could not tie a sweep worker to its driver", exc_info=True)


def _worker_point(pid: str, point: dict[str, Any]) -> dict[str, Any]:
    return run_point(_WORKER["ctx"], pid, point)


def _run_pool(ctx: SweepContext, todo: list[tuple[str, dict[str, Any]]], jobs: int,
              finish: Callable[[dict[str, Any]], None]) -> None:
    import multiprocessing

    # spawn: a forked child would inherit numba/torch/OpenMP thread pools in unknown states
    mp = multiprocessing.get_context("spawn")
    sent = _pool_context(ctx)  # before the pool: a model that cannot travel is one line
    workers = min(jobs, len(todo))
    if sys.platform == "win32":  # its process pools take at most 61 ("max_workers must be <= 61")
        workers = min(workers, 61)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp,
                               initializer=_init_worker, initargs=(sent, os.getpid()))
    clean_exit = False
    try:
        pending = {pool.submit(_worker_point, pid, p) for pid, p in todo}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                finish(fut.result())
        clean_exit = True
    finally:
        # interrupted: drop queued points at once and stop the running ones (finished ones
        # are on disk; a point cut off is rerun on resume), so that the exit is prompt and no
        # worker is left behind
        if not clean_exit:
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
        # the workers stopped, waiting is prompt and lets the pool release its queues
        pool.shutdown(wait=True, cancel_futures=True)

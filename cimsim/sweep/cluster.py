"""Sweep points on a Dask ``distributed`` cluster: a scheduler on this or other machines.

The driver (the process that called :func:`~cimsim.sweep.run_sweep`) submits one task per
point and writes each record as its future completes, so ``sweep.jsonl`` keeps one writer and
resume stays per point, as with the local pool. Workers only compute.

The shared context (model, data, base chip) travels once as a *task* whose argument is its
pickled bytes, not as scattered data: scattered data dies with the worker that holds it and
every point depending on it is cancelled, while a task's result lost with its worker is
recomputed by the scheduler from the bytes it holds. So a worker killed mid-sweep costs the
points it was running (rerun elsewhere), nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .._version import __version__
from ..errors import CimsimError, ConfigError
from .runner import (
    SweepContext,
    limit_threads,
    naming_the_guard,
    pickled_context,
    refuse_while_bootstrapping,
    run_point,
)

__all__ = ["dask_client", "parse_scheduler", "run_points_dask"]

log = logging.getLogger(__name__)

_ALLOWED = ("'local:N' (a LocalCluster of N worker processes on this machine, N >= 1) or the "
            "address of a running scheduler, e.g. 'tcp://10.0.0.5:8786'")
_ADDRESS = re.compile(r"^(tcp|tls|ws|wss|inproc|ucx)://\S+$")

#: Environment of the worker processes of a ``local:N`` cluster: one thread each for numba,
#: OpenMP and BLAS (the workers are the parallelism; N workers x all cores would oversubscribe).
WORKER_ENV: dict[str, str] = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                              "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def parse_scheduler(spec: str) -> tuple[str, int | str]:
    """``'local:N'`` -> ``('local', N)``; ``'tcp://host:port'`` (or another Dask protocol)
    -> ``('address', spec)``.

    Raises
    ------
    ConfigError
        Anything else; the message names ``scheduler`` and what is allowed.
    """
    if not isinstance(spec, str):
        raise ConfigError(f"scheduler = {spec!r} is invalid; allowed: {_ALLOWED}")
    text = spec.strip()
    if text.lower().startswith("local:"):
        n = text[len("local:"):]
        if n.isdigit() and int(n) >= 1:
            return "local", int(n)
        raise ConfigError(f"scheduler = {spec!r}: {n!r} is not a number of workers >= 1; "
                          f"allowed: {_ALLOWED}")
    if _ADDRESS.match(text):
        return "address", text
    raise ConfigError(f"scheduler = {spec!r} is invalid; allowed: {_ALLOWED}")


@contextlib.contextmanager
def dask_client(scheduler: str, *, timeout_s: float = 20.0) -> Iterator[Any]:
    """A ``distributed.Client`` for ``scheduler`` (see :func:`parse_scheduler`), closed on exit.

    ``local:N`` starts a ``LocalCluster`` of N worker processes (``processes=True``, one
    thread each, :data:`WORKER_ENV`, the dashboard on a free port) and shuts it down on exit;
    an address connects to a running scheduler and leaves it and its workers running.

    Raises
    ------
    ConfigError
        A malformed ``scheduler``.
    CimsimError
        No scheduler answers at the address within ``timeout_s`` seconds.
    """
    kind, value = parse_scheduler(scheduler)
    from distributed import Client, LocalCluster  # first: importing it sets its log levels

    with _quiet_distributed():
        if kind == "local":
            assert isinstance(value, int)
            # a script without the main guard: its spawned workers import it and start a
            # cluster of their own; each said Python's "bootstrapping phase" error and the
            # driver "Nanny failed to start"
            refuse_while_bootstrapping()
            with _environ_kept():
                with naming_the_guard(RuntimeError):  # ("Nanny failed to start.")
                    cluster = LocalCluster(n_workers=value, threads_per_worker=1,
                                           processes=True, dashboard_address=":0",
                                           env=dict(WORKER_ENV))
                with cluster, Client(cluster) as client:
                    yield client
            return
        try:
            client = Client(value, timeout=f"{timeout_s}s")
        except (OSError, TimeoutError) as exc:
            raise CimsimError(f"scheduler {value}: no Dask scheduler answered within "
                              f"{timeout_s:g} s ({type(exc).__name__}); start one with "
                              "'dask scheduler' (docs/sweep.md)") from None
        with client:
            yield client


@contextlib.contextmanager
def _environ_kept() -> Iterator[None]:
    """Restore this process's environment on exit: a nanny writes its workers' settings
    (``OMP_NUM_THREADS=1`` ...) into the parent's ``os.environ`` before spawning them, which
    would otherwise leak into whatever the driver starts later."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _quiet_distributed() -> Iterator[None]:
    """``distributed`` logs every worker and connection at INFO; a sweep shows its own progress
    bar, so only its warnings (a worker lost, restarted) get through meanwhile."""
    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _unpack(blob: bytes) -> SweepContext:
    """The context from its pickled bytes (a task, so a lost copy is recomputed)."""
    import cloudpickle

    ctx = cloudpickle.loads(blob)
    assert isinstance(ctx, SweepContext)
    return ctx


def _dask_point(ctx: SweepContext, pid: str, point: Mapping[str, Any],
                driver_pid: int | None = None) -> dict[str, Any]:
    """One point on a Dask worker, with the worker limited to one thread per library (a
    ``dask worker`` started by hand does not set :data:`WORKER_ENV`); the record names the
    worker. A worker thread in the driver's own process (``Client(processes=False)``) leaves
    the driver's threads alone: the limits are process-wide and outlived the sweep."""
    from distributed import get_worker

    if os.getpid() != driver_pid:
        limit_threads()
    record = run_point(ctx, pid, point)
    record["worker"] = get_worker().address  # where it ran (not part of the table)
    return record


def run_points_dask(ctx: SweepContext, todo: list[tuple[str, dict[str, Any]]], client: Any,
                    finish: Callable[[dict[str, Any]], None]) -> list[str]:
    """Run every ``(point id, point)`` of ``todo`` on ``client``'s cluster; ``finish(record)``
    in this process as each one ends (completion order).

    Returns the ids of points whose task failed for the cluster's sake (a worker killed while
    running it ``distributed.scheduler.allowed-failures`` times, or cancelled): they have no
    record, so the next run of the same sweep computes them.
    """
    from concurrent.futures import CancelledError

    import dask
    from distributed import KilledWorker, as_completed

    if not todo:
        return []
    n_workers = len(client.scheduler_info().get("workers", {}))
    if n_workers == 0:
        log.warning("sweep: the Dask scheduler %s has no workers yet; the points wait for one",
                    client.scheduler.address)
    else:
        log.info("sweep: %d points on %d Dask workers at %s (dashboard: %s)", len(todo),
                 n_workers, client.scheduler.address, client.dashboard_link)
    run = uuid.uuid4().hex[:8]  # keys unique per run: a long-lived scheduler may hold old ones
    blob = pickled_context(ctx)
    # the bytes are in the graph on purpose (recomputable, unlike scattered data): the
    # large-graph warning's advice to scatter would undo that
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "64GiB"}):
        ctx_future = client.submit(_unpack, blob, key=f"cimsim-sweep-context-{run}")
    futures = {client.submit(_dask_point, ctx_future, pid, p, os.getpid(),
                             key=f"cimsim-point-{pid}-{run}"): pid for pid, p in todo}
    del ctx_future  # held by the point tasks; released with the last of them
    lost: list[str] = []
    clean_exit = False
    try:
        for fut in as_completed(futures):
            pid = futures[fut]
            try:
                record = fut.result()
            except (KilledWorker, CancelledError, OSError) as exc:  # the cluster's failure:
                log.warning("sweep point %s lost on the cluster (%s: %s); rerun the sweep to "
                            "compute it", pid, type(exc).__name__, exc)
                lost.append(pid)  # no record, so the next run computes it
                continue
            except Exception as exc:  # run_point records its own errors: this is the worker's
                raise CimsimError(
                    f"a Dask worker could not run sweep point {pid}: {type(exc).__name__}: "
                    f"{exc} (every worker needs cimsim {__version__} and the model's module "
                    "importable; docs/sweep.md)") from exc
            finally:
                fut.release()
            finish(record)
        clean_exit = True
    finally:
        if not clean_exit:  # interrupted: stop the points still queued or running
            client.cancel(list(futures))
    return lost

"""Stopping a ``--jobs N`` sweep: the driver's SIGTERM (a batch scheduler's stop, ``kill``,
``timeout``) ends the command as Ctrl-C does, with one line, and its worker processes stop
with it (they were left computing, re-parented to init)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
import pytest


def _poll(what, timeout_s: float = 120.0, step_s: float = 0.2):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = what()
        if got:
            return got
        time.sleep(step_s)
    return what()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals as on Linux")
def test_a_terminated_sweep_stops_its_workers(tmp_path):
    cmd = [sys.executable, "-m", "cimsim.cli", "sweep", "--model", "demo", "--chip",
           "rram-22nm", "--adc-bits", "2-8", "--bits-per-cell", "1,2", "--noise", "0,0.5",
           "--jobs", "2", "--out", str(tmp_path / "out")]
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc = psutil.Process(driver.pid)

        def workers() -> list[psutil.Process]:
            return [c for c in proc.children() if "spawn_main" in " ".join(c.cmdline())]

        started = _poll(lambda: len(workers()) == 2 and workers())
        assert started, "the sweep never started its two workers"
        driver.send_signal(signal.SIGTERM)
        _, err = driver.communicate(timeout=120)
        assert driver.returncode == 128 + signal.SIGTERM
        assert "cimsim: terminated" in err and "Traceback" not in err
        assert _poll(lambda: not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE
                                     for w in started), timeout_s=30)
    finally:
        if driver.poll() is None:
            driver.kill()


@pytest.mark.parametrize("deaths", [1, 2])
def test_a_worker_dies_its_points_run_again_once_then_are_lost(deaths, monkeypatch):
    """A worker killed (out of memory, kill -9) broke the whole ProcessPoolExecutor: run_sweep
    raised BrokenProcessPool, the other points in flight were dropped and no table was
    written. The unfinished points now run again in a new pool; a second death loses them
    (no record: the next run computes them), as a Dask worker's points."""
    from concurrent.futures.process import BrokenProcessPool

    from cimsim.sweep import runner

    todo = [(f"p{i}", {"adc_bits": i}) for i in range(4)]
    pools: list[list[str]] = []

    def pool(ctx, points, jobs, finish):
        pools.append([pid for pid, _ in points])
        if len(pools) <= deaths:  # the first point finishes, then a worker dies
            finish({"point_id": points[0][0]})
            raise BrokenProcessPool("a child process terminated abruptly")
        for pid, _ in points:
            finish({"point_id": pid})

    monkeypatch.setattr(runner, "_run_pool", pool)
    finished: list[str] = []
    lost = runner.run_points(None, todo, 2, lambda rec: finished.append(rec["point_id"]))
    assert pools[:2] == [["p0", "p1", "p2", "p3"], ["p1", "p2", "p3"]]
    if deaths == 1:
        assert lost == [] and finished == ["p0", "p1", "p2", "p3"]
    else:
        assert lost == ["p2", "p3"] and finished == ["p0", "p1"]

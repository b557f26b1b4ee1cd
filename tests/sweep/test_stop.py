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

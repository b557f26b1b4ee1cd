"""Sweeps on Dask (``run_sweep(client=...)``, ``cimsim sweep --scheduler``): the same table as
in-process, one record per point, and nothing lost or duplicated when a worker or the driver is
killed mid-sweep and the sweep is run again.

One 2-worker ``LocalCluster`` (processes, one thread each) serves the module; a test that kills
a worker leaves it to the nanny to restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from cimsim.cli import main
from cimsim.errors import CimsimError, ConfigError
from cimsim.sweep import dask_client, run_sweep
from cimsim.sweep import runner as sweep_runner
from cimsim.sweep.cluster import parse_scheduler
from tests import test_sweep
from tests.test_sweep import N_CAL, tiny_model

distributed = pytest.importorskip("distributed")

GRID = {"adc_kind": ["sar", "ramp:bs_kmq"], "adc_bits": [3, 4]}
ROOT = Path(__file__).resolve().parents[2]
chip, data, npz = test_sweep.chip, test_sweep.data, test_sweep.npz  # its fixtures, shared


def _in_worker() -> bool:
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


class OnWorker(nn.Module):
    """``inner``, doing ``action`` first when its forward runs on a Dask worker (never in the
    driver, so the in-process reference run of the same model is undisturbed).

    ``action`` ``'kill'``: the first forward on any worker SIGKILLs that worker's process (a
    file ``marker`` records that it happened, so it happens once); ``'slow'``: every forward
    sleeps 0.4 s (a driver killed mid-sweep then has points left to lose).
    """

    def __init__(self, inner: nn.Module, action: str, marker: str = "") -> None:
        super().__init__()
        self.inner, self.action, self.marker = inner, action, marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _in_worker():
            if self.action == "kill":
                try:
                    fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass
                else:
                    os.close(fd)
                    os.kill(os.getpid(), signal.SIGKILL)
            elif self.action == "slow":
                time.sleep(0.4)
        return self.inner(x)


def slow_model() -> nn.Module:
    """The CLI's ``module:function`` model of the driver-kill test. Its weights are rounded:
    the least-squares fit of ``tiny_model`` differs in the last bits with the BLAS thread
    count, and a driver started from a process that ran a LocalCluster inherits
    ``OMP_NUM_THREADS=1`` from Dask's nanny (a different model, so different point ids)."""
    inner = tiny_model()
    with torch.no_grad():
        for p in inner.parameters():
            p.copy_(torch.round(p * 65536) / 65536 + 0.0)  # + 0.0: no negative zeros
    return OnWorker(inner, "slow")


@pytest.fixture(scope="module")
def client():
    with dask_client("local:2") as c:
        c.wait_for_workers(2, timeout=120)
        yield c


def _sweep(model, data, chip, out, **kw):
    return run_sweep(model, data, chip, GRID, out, calibration=N_CAL, progress=False, **kw)


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()]


def _results(out: Path) -> dict[str, dict]:
    """Each point's record without its wall time and worker; asserts one record per point."""
    lines = _lines(out)
    ids = [rec["point_id"] for rec in lines]
    assert len(ids) == len(set(ids)), f"a point recorded twice: {ids}"
    return {rec["point_id"]: {k: v for k, v in rec.items() if k not in ("wall_s", "worker")}
            for rec in lines}


def _same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    # a frame run_sweep returns has the wall time; sweep.csv does not (results only)
    pd.testing.assert_frame_equal(a.drop(columns="wall_s", errors="ignore"),
                                  b.drop(columns="wall_s", errors="ignore"))


def _count_points(monkeypatch) -> list[int]:
    counted: list[int] = []
    measure = sweep_runner._measure

    def counting(*args, **kwargs):
        counted.append(1)
        return measure(*args, **kwargs)

    monkeypatch.setattr(sweep_runner, "_measure", counting)
    return counted


# --------------------------------------------------------------------------------------------
def test_parse_scheduler():
    assert parse_scheduler("local:3") == ("local", 3)
    assert parse_scheduler("tcp://10.0.0.5:8786") == ("address", "tcp://10.0.0.5:8786")
    for bad in ("local:0", "local:x", "10.0.0.5:8786", "", "http://a:1"):
        with pytest.raises(ConfigError, match="scheduler .*allowed: 'local:N'"):
            parse_scheduler(bad)


def test_no_scheduler_at_the_address_is_one_error():
    with pytest.raises(CimsimError, match="no Dask scheduler answered"):
        with dask_client("tcp://127.0.0.1:9", timeout_s=1):
            pass


def test_dask_equals_in_process(client, data, chip, tmp_path, monkeypatch):
    """Same seed, same table on 2 workers, on 1 and in process: the points ran on the cluster
    (none in this process), each recorded once by this process."""
    import dask

    model = tiny_model()
    serial = _sweep(model, data, chip, tmp_path / "serial")
    in_driver = _count_points(monkeypatch)
    two = _sweep(model, data, chip, tmp_path / "two", client=client)
    one_worker = sorted(client.scheduler_info()["workers"])[:1]
    with dask.annotate(workers=one_worker, allow_other_workers=False):  # every task there
        one = _sweep(model, data, chip, tmp_path / "one", client=client)
    assert in_driver == []
    workers = {rec["worker"] for rec in _lines(tmp_path / "one")}
    assert workers == set(one_worker)
    assert serial["status"].eq("ok").all()
    assert two.attrs["n_points_lost"] == one.attrs["n_points_lost"] == 0
    _same_table(serial, two)
    _same_table(serial, one)
    assert _results(tmp_path / "two") == _results(tmp_path / "serial") == _results(
        tmp_path / "one")
    # a rerun finds every point done and submits nothing
    again = _sweep(model, data, chip, tmp_path / "two", client=client)
    assert again.attrs["n_points_resumed"] == 4
    with pytest.raises(ConfigError, match="jobs = 2 with a Dask client"):
        _sweep(model, data, chip, tmp_path / "x", client=client, jobs=2)


def test_worker_killed_mid_sweep(client, data, chip, tmp_path):
    """A worker SIGKILLed while running a point: the nanny restarts it, the scheduler reruns
    the point; every point recorded exactly once and the table that of an in-process run."""
    marker = tmp_path / "killed"
    model = OnWorker(tiny_model(), "kill", str(marker))
    serial = _sweep(model, data, chip, tmp_path / "serial")
    assert not marker.exists()  # the driver never kills itself
    frame = _sweep(model, data, chip, tmp_path / "dask", client=client)
    assert marker.exists()  # a worker was killed
    assert frame.attrs["n_points_lost"] == 0
    _same_table(serial, frame)
    assert _results(tmp_path / "dask") == _results(tmp_path / "serial")
    client.wait_for_workers(2, timeout=120)  # restarted, for the tests after this one


def _cli(npz: Path, out: Path, *flags: str) -> list[str]:
    return ["sweep", "--model", "tests.test_sweep:tiny_model", "--data", str(npz), "--chip",
            "rram-22nm", "--adc-bits", "3-4", "--adc-kind", "sar,ramp:bs_kmq", "--calibration",
            str(N_CAL), "--out", str(out), *flags]


def test_cli_scheduler_address(client, npz, tmp_path, capsys):
    """``--scheduler tcp://...`` (the module's cluster): the in-process command's results."""
    assert main(_cli(npz, tmp_path / "dask", "--scheduler", client.scheduler.address)) == 0
    text = capsys.readouterr().out
    assert "4 points" in text and "Pareto front" in text
    assert main(_cli(npz, tmp_path / "serial")) == 0
    assert _results(tmp_path / "dask") == _results(tmp_path / "serial")
    frame = pd.read_csv(tmp_path / "dask" / "sweep.csv")
    _same_table(frame, pd.read_csv(tmp_path / "serial" / "sweep.csv"))
    assert frame["status"].eq("ok").all()


@pytest.mark.slow
def test_cli_local_cluster(client, npz, tmp_path, capsys):
    """``--scheduler local:1`` (a LocalCluster of its own) gives the 2-worker results, and so
    does the local pool (``--jobs 2``)."""
    assert main(_cli(npz, tmp_path / "one", "--scheduler", "local:1")) == 0
    assert main(_cli(npz, tmp_path / "two", "--scheduler", client.scheduler.address)) == 0
    assert main(_cli(npz, tmp_path / "pool", "--jobs", "2")) == 0
    assert _results(tmp_path / "one") == _results(tmp_path / "two") == _results(
        tmp_path / "pool")


def test_cli_scheduler_errors(npz, tmp_path, capsys):
    base = ["sweep", "--model", "tests.test_sweep:tiny_model", "--data", str(npz), "--chip",
            "rram-22nm", "--adc-bits", "4", "--out", str(tmp_path / "o")]
    for flags, message in ((["--scheduler", "local:0"], "--scheduler: 'local:0': '0' is not"),
                           (["--scheduler", "8786"], "--scheduler: '8786' is invalid"),
                           (["--scheduler", "local:2", "--jobs", "2"],
                            "--jobs: with --scheduler")):
        assert main([*base, *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o" / "sweep.jsonl").exists()


@pytest.mark.slow
def test_driver_killed_mid_sweep(client, npz, tmp_path):
    """The driver (``cimsim sweep --scheduler tcp://...`` in a subprocess) SIGKILLed after its
    first record: the same command again computes only the rest; each point once."""
    out = tmp_path / "sweep"
    argv = ["sweep", "--model", "tests.sweep.test_cluster:slow_model", "--data", str(npz),
            "--chip", "rram-22nm", "--adc-bits", "2-7", "--calibration", str(N_CAL),
            "--out", str(out), "--scheduler", client.scheduler.address]
    code = "import sys; from cimsim.cli import main; raise SystemExit(main(sys.argv[1:]))"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = out / "sweep.jsonl"
    try:
        deadline = time.monotonic() + 300
        while not (path.is_file() and path.read_text().count("\n") >= 1):
            assert proc.poll() is None, "the driver ended before its first record"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    n_before = len(_lines(out))
    assert 1 <= n_before < 6
    assert main(argv) == 0
    frame = pd.read_csv(out / "sweep.csv")
    assert frame["status"].eq("ok").all() and len(frame) == 6
    results = _results(out)  # each point exactly once
    assert sorted(results) == sorted(frame["point_id"])
    # the same as an uninterrupted in-process run
    ref = tmp_path / "ref"
    assert main([*argv[:-4], "--out", str(ref)]) == 0
    assert _results(ref) == results


def test_an_in_process_client_leaves_the_drivers_threads_alone(data, chip, tmp_path):
    """With Client(processes=False) the worker threads are the driver's process: limiting
    each point to one thread wrote OMP_NUM_THREADS=1 (and the rest) into the caller's
    environment and capped its BLAS for good."""
    keys = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    before = {k: os.environ.get(k) for k in keys}
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1,
                            dashboard_address=None) as client:
        frame = run_sweep(tiny_model(), data, chip, {"adc_bits": [4]}, tmp_path,
                          calibration=N_CAL, progress=False, client=client)
    assert frame["status"].eq("ok").all()
    assert {k: os.environ.get(k) for k in keys} == before

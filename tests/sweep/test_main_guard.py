"""run_sweep in a script without the ``__main__`` guard: the cause is named, not a lock clash."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cimsim
from cimsim.errors import CimsimError
from cimsim.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[2]


def _run_unguarded(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    """Run a script of the digits data, model and ``body``, without the main guard; it fails."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import cimsim\n"
        "from cimsim.sweep import dask_client, run_sweep\n"
        "from cimsim.data import load_digits_split\n"
        "from cimsim.models import load_digits_cnn\n"
        "x_train, y_train, x, y = load_digits_split()\n" + body, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    return proc


def test_refused_while_a_spawned_worker_imports_main(monkeypatch, tmp_path: Path) -> None:
    # what multiprocessing sets while a spawned child imports the parent's main module
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(CimsimError, match="__main__"):
        run_sweep(None, None, cimsim.load_chip("ideal"), {"adc_bits": [4]}, tmp_path / "s")
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_unguarded_script_names_the_guard(tmp_path: Path) -> None:
    """The end-to-end case (two spawned workers importing torch: ~15 s)."""
    proc = _run_unguarded(tmp_path, "run_sweep(load_digits_cnn(), (x[:80], y[:80]), "
                          "cimsim.load_chip('rram-22nm'), {'adc_bits': [3, 4]}, 'out', "
                          "calibration=40, jobs=2, progress=False)\n")
    assert "no `if __name__ == \"__main__\":` guard" in proc.stderr
    assert "another sweep is writing" not in proc.stderr


def test_a_pool_broken_by_an_unguarded_script_names_the_guard(monkeypatch, tmp_path: Path
                                                             ) -> None:
    """The workers' guard error reached the parent as a broken pool, which it took for a
    killed worker: the sweep ran twice, lost every point and exited 0. A worker that meets
    the error creates the file its pool's parent named to it (``CIMSIM_UNGUARDED_MARK``),
    and the parent raises it; a pool broken otherwise loses its points as before."""
    from concurrent.futures.process import BrokenProcessPool

    from cimsim.sweep import runner

    mark = tmp_path / "mark"
    monkeypatch.setenv(runner.UNGUARDED_MARK, str(mark))
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(CimsimError, match="__main__"):
        run_sweep(None, None, cimsim.load_chip("ideal"), {"adc_bits": [4]}, tmp_path / "s")
    assert mark.exists()  # the worker's side
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", False)
    monkeypatch.delenv(runner.UNGUARDED_MARK)
    named: list[str] = []

    def broken(*_args, by_guard: bool) -> None:
        named.append(os.environ[runner.UNGUARDED_MARK])
        if by_guard:
            Path(named[-1]).touch()
        raise BrokenProcessPool("a child process terminated abruptly")

    todo = [("a", {}), ("b", {})]
    monkeypatch.setattr(runner, "_run_pool", lambda *a: broken(by_guard=True))
    with pytest.raises(CimsimError, match="no `if __name__ == \"__main__\":` guard"):
        runner.run_points(None, todo, 2, lambda rec: None)
    monkeypatch.setattr(runner, "_run_pool", lambda *a: broken(by_guard=False))
    assert runner.run_points(None, todo, 2, lambda rec: None) == ["a", "b"]  # lost, not raised
    assert len(set(named)) == 3 and not any(Path(n).exists() for n in named)  # one per pool
    assert runner.UNGUARDED_MARK not in os.environ


def test_a_local_cluster_started_by_an_unguarded_script_names_the_guard(monkeypatch,
                                                                        tmp_path: Path) -> None:
    """``dask_client('local:N')`` in a script without the guard: each spawned worker imported
    the script, started a cluster of its own and printed Python's "bootstrapping phase" error,
    and the driver failed with "Nanny failed to start" (some 460 lines, cimsim's cause nowhere).
    The worker raises the guard error and marks it; the driver raises it on finding the mark."""
    distributed = pytest.importorskip("distributed")
    from cimsim.sweep import dask_client, runner

    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(CimsimError, match="__main__"), dask_client("local:1"):
        pass  # the worker's side
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", False)

    def cluster(*_args, by_guard: bool, **_kwargs):
        if by_guard:
            Path(os.environ[runner.UNGUARDED_MARK]).touch()
        raise RuntimeError("Nanny failed to start.")

    monkeypatch.setattr(distributed, "LocalCluster",
                        lambda *a, **k: cluster(*a, by_guard=True, **k))
    with pytest.raises(CimsimError, match="no `if __name__ == \"__main__\":` guard"), \
            dask_client("local:2"):
        pass
    monkeypatch.setattr(distributed, "LocalCluster",
                        lambda *a, **k: cluster(*a, by_guard=False, **k))
    with pytest.raises(RuntimeError, match="Nanny"), dask_client("local:2"):
        pass  # a cluster failing otherwise fails as before
    assert runner.UNGUARDED_MARK not in os.environ


@pytest.mark.slow
def test_unguarded_script_with_a_local_cluster_names_the_guard(tmp_path: Path) -> None:
    """The end-to-end case of a ``local:2`` cluster (two spawned workers importing torch)."""
    proc = _run_unguarded(tmp_path, "with dask_client('local:2') as client:\n"
                          "    run_sweep(load_digits_cnn(), (x[:80], y[:80]), "
                          "cimsim.load_chip('rram-22nm'), {'adc_bits': [3, 4]}, 'out', "
                          "calibration=40, client=client, progress=False)\n")
    last = proc.stderr.strip().splitlines()[-1]
    assert "no `if __name__ == \"__main__\":` guard" in last, proc.stderr[-3000:]

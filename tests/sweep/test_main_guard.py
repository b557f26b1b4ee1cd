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


def test_refused_while_a_spawned_worker_imports_main(monkeypatch, tmp_path: Path) -> None:
    # what multiprocessing sets while a spawned child imports the parent's main module
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(CimsimError, match="__main__"):
        run_sweep(None, None, cimsim.load_chip("ideal"), {"adc_bits": [4]}, tmp_path / "s")
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_unguarded_script_names_the_guard(tmp_path: Path) -> None:
    """The end-to-end case (two spawned workers importing torch: ~15 s)."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import cimsim\n"
        "from cimsim.sweep import run_sweep\n"
        "from cimsim.data import load_digits_split\n"
        "from cimsim.models import load_digits_cnn\n"
        "x_train, y_train, x, y = load_digits_split()\n"
        "run_sweep(load_digits_cnn(), (x[:80], y[:80]), cimsim.load_chip('rram-22nm'),\n"
        "          {'adc_bits': [3, 4]}, 'out', calibration=40, jobs=2, progress=False)\n",
        encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
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

"""Files that belong together are written as a set (a hunt over stops and failures,
2026-12-04): a report stopped after three of its twelve files left new tables beside the
earlier run's page, and a report.json that was a folder let six tables be written first."""

from __future__ import annotations

import signal

import pytest
import torch
from torch import nn

import cimsim
from cimsim import _atomic
from cimsim.errors import CimsimError


@pytest.fixture(scope="module")
def report():
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(8, 4)), torch.randn(6, 8)
    sim = cimsim.deploy(model, "ideal", x, seed=0)
    sim(x)
    return sim.report()


@pytest.fixture
def sigint_interrupts():
    """SIGINT raises KeyboardInterrupt within the test, as in an interactive run: a process
    started in the background (nohup, a CI runner) ignores it, and these tests skipped there."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_folder_in_a_file_s_place_is_refused_before_any_write(report, tmp_path):
    (tmp_path / "report.json").mkdir()
    with pytest.raises(CimsimError, match="report.json' is a folder where a file is to be "
                                          "written; nothing was written"):
        report.save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_stop_during_the_writes_comes_after_the_last(report, tmp_path, monkeypatch,
                                                      sigint_interrupts):
    """SIGINT after the third file: every file of the set is written, then the stop."""
    real, written = _atomic.write_bytes, []

    def write(path, data):
        written.append(path.name)
        if len(written) == 3:
            signal.raise_signal(signal.SIGINT)
        return real(path, data)

    monkeypatch.setattr(_atomic, "write_bytes", write)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        report.save(tmp_path)
    assert len(written) > 3 and written[-1] == "report.html"
    assert sorted(written) == sorted(p.name for p in tmp_path.iterdir())
    assert signal.getsignal(signal.SIGINT) is handler  # put back


def test_a_stop_during_the_writes_still_removes_the_earlier_runs_figure(report, tmp_path,
                                                                        monkeypatch,
                                                                        sigint_interrupts):
    """The figure an earlier report wrote and this one has none of was removed after the
    deferred stop had come: a Ctrl-C during the writes left it beside the new page."""
    (tmp_path / "fidelity_per_layer.png").write_bytes(b"an earlier run's")
    assert "fidelity_per_layer.png" not in {p.name for p in report.save(tmp_path / "fresh")}
    real = _atomic.write_bytes

    def write(path, data):
        signal.raise_signal(signal.SIGINT)
        return real(path, data)

    monkeypatch.setattr(_atomic, "write_bytes", write)
    with pytest.raises(KeyboardInterrupt):
        report.save(tmp_path)
    assert not (tmp_path / "fidelity_per_layer.png").exists()
    assert (tmp_path / "report.html").is_file()


def _full_disk_at(limit: int):
    """Writes beyond ``limit`` bytes fail (a full disk), in this process only."""
    import resource

    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    xfsz = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, xfsz)


def test_a_chip_or_weights_file_is_kept_whole_when_its_rewrite_fails(tmp_path):
    """ChipConfig.save and save_weights wrote in place: a full disk (or a kill) mid-write left
    a truncated file where the user's chip ("invalid TOML") or weights (BadZipFile) were."""
    import contextlib

    from cimsim.models import save_weights

    chip = cimsim.load_chip("rram-22nm")
    path = tmp_path / "chip.toml"
    chip.save(path)
    before = path.read_bytes()
    weights = tmp_path / "w.npz"
    save_weights(nn.Linear(2, 2), weights)
    small = weights.read_bytes()
    with contextlib.contextmanager(_full_disk_at)(len(before) // 2), \
            pytest.raises(OSError):
        chip.replace(description="edited " * 200).save(path)
    assert path.read_bytes() == before
    assert cimsim.load_chip(path) == chip
    with contextlib.contextmanager(_full_disk_at)(len(small) + 1000), \
            pytest.raises(OSError):
        save_weights(nn.Linear(64, 64), weights)
    assert weights.read_bytes() == small
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chip.toml", "w.npz"]


def test_a_rewrite_keeps_the_files_mode_and_removes_a_killed_writers_leftover(tmp_path):
    """Overwriting a file reset its permissions (a 600 report became 644), and the temporary
    file a ``kill -9`` left (``.NAME.PID.tmp``) stayed for good. Only an old one of a process
    that no longer runs goes (a young one may be a live writer's in another PID namespace);
    odd names are left, and never fail the write."""
    import os
    import subprocess

    path = tmp_path / "report.html"
    path.write_text("old")
    path.chmod(0o600)
    gone = subprocess.Popen(["true"])  # a writer that ran and is gone
    gone.wait()
    old = _atomic.ORPHAN_AGE_S + 60
    orphan, young = (tmp_path / f".report.html.{gone.pid}.tmp",
                     tmp_path / f".report.html.{gone.pid + 1000000}.tmp")
    odd = [tmp_path / f".report.html.{pid}.tmp" for pid in ("\u00b2", "9" * 25, "0")]
    other = tmp_path / f".other.html.{gone.pid}.tmp"  # another file's: not this write's
    for f in (orphan, young, *odd, other):
        f.write_text("half")
        if f is not young:
            os.utime(f, (f.stat().st_atime - old, f.stat().st_mtime - old))
    _atomic.write_text(path, "new")
    assert path.read_text() == "new" and (path.stat().st_mode & 0o777) == 0o600
    assert not orphan.exists() and young.exists() and other.exists()
    assert all(f.exists() for f in odd)


def test_a_link_is_written_through_and_a_pipe_in_place(tmp_path):
    """os.replace swapped a link for a plain file (a chip saved through a link to a shared
    folder), and replaced /dev/stdout or a pipe."""
    import os
    import threading

    target = tmp_path / "real.toml"
    target.write_text("old")
    link = tmp_path / "link.toml"
    link.symlink_to(target)
    _atomic.write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    _atomic.write_text(fifo, "through")
    reader.join(10)
    assert got == [b"through"] and not fifo.is_file()


def _try_lock(folder) -> bool:
    """Whether another open of ``folder`` gets its ``flock`` now (flock locks belong to the
    open file, so a second open in this process contends as another process would)."""
    import fcntl
    import os

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_a_set_is_written_holding_its_folder(report, tmp_path, monkeypatch):
    """Two runs saving into one ``--out`` at once could interleave their writes (one run's
    tables beside the other's page): each set is written holding a lock on its folder, so
    writers take turns; released after the set."""
    pytest.importorskip("fcntl")
    real, free = _atomic.write_bytes, []

    def write(path, data):
        free.append(_try_lock(tmp_path))
        return real(path, data)

    monkeypatch.setattr(_atomic, "write_bytes", write)
    report.save(tmp_path)
    assert len(free) > 3 and not any(free)
    assert _try_lock(tmp_path)


def test_a_writer_waits_for_the_folder_s_holder(report, tmp_path):
    """A set is not written while another writer holds the folder, then written whole."""
    fcntl = pytest.importorskip("fcntl")
    import os
    import threading

    fd = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    saver = threading.Thread(target=report.save, args=(tmp_path,))
    try:
        saver.start()
        saver.join(0.5)
        assert saver.is_alive() and not any(tmp_path.iterdir())  # waiting for its turn
    finally:
        os.close(fd)
    saver.join(30)
    assert not saver.is_alive() and (tmp_path / "report.html").is_file()


def test_a_folder_that_cannot_be_locked_goes_unlocked(tmp_path):
    """Best effort: a folder that cannot be opened is skipped, the block still runs."""
    pytest.importorskip("fcntl")
    held = []
    with _atomic.folders_locked([tmp_path / "missing", tmp_path]):
        held.append(not _try_lock(tmp_path))
    assert held == [True] and _try_lock(tmp_path)

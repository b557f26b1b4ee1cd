"""Whole-or-nothing file writes for the files a later run reads back.

A result file (``report.json``, ``sweep.json``, a CSV table, a figure) written in place is
truncated first and filled after: a kill, a full disk or an exception in between leaves a
half-written file that ``cimsim report`` or a reader would take for a result. Here the bytes go
to a temporary file beside the target, which then replaces it in one ``os.replace`` (atomic on
POSIX and Windows within one folder): a reader sees the old file or the new one, never a part.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import CimsimError

__all__ = ["exclusive_lock", "folders_locked", "signals_deferred", "write_bytes", "write_set",
           "write_text"]


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that ``path`` is either untouched or complete; returns
    ``path``. The temporary file (``.NAME.PID.tmp`` in the same folder) is removed on failure;
    the file keeps its permissions; a link is written through (its target replaced); a path
    that is no regular file (``/dev/stdout``, a pipe) is written in place. Afterwards, the
    temporary files of this name that writers killed long ago left behind are removed
    (:func:`_remove_orphans`)."""
    path = Path(path)
    if path.is_symlink():  # the link stays, its target is the file written
        path = path.resolve()
    if path.exists() and not path.is_file() and not path.is_dir():
        with open(path, "wb") as fh:  # a device or a pipe: nothing to replace atomically
            fh.write(data)
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        with contextlib.suppress(OSError):  # the file's permissions kept (a 600 became 644)
            shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: no stray temporary file either way
        tmp.unlink(missing_ok=True)
        raise
    _remove_orphans(path)
    return path


ORPHAN_AGE_S = 3600.0
"""Age of a temporary file beyond which a writer of it that no longer runs is taken for a
killed one: a write takes milliseconds, so an older file is no live write's (a writer in
another PID namespace, on a shared folder, looks dead to this one)."""


def _remove_orphans(path: Path) -> None:
    """The temporary files of ``path`` a killed writer left (``kill -9`` runs no clean-up):
    those over :data:`ORPHAN_AGE_S` old whose process no longer runs, removed at the next
    write of the file. Best effort, POSIX only (``os.kill(pid, 0)`` probes a process there
    only): a file it cannot read or remove is left, and the write it follows has succeeded."""
    if os.name != "posix":
        return
    now = time.time()
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:-len(".tmp")]
        if not re.fullmatch(r"[1-9][0-9]{0,9}", pid) or int(pid) == os.getpid():
            continue
        with contextlib.suppress(OSError, OverflowError, ValueError):
            if now - tmp.stat().st_mtime < ORPHAN_AGE_S:
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                tmp.unlink()


def write_text(path: str | Path, text: str) -> Path:
    """:func:`write_bytes` of ``text`` in UTF-8 (newlines as given: byte-identical runs)."""
    return write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM held until the block ends, then delivered (main thread only, where
    Python handles signals; elsewhere a plain block): the block's few quick writes all happen,
    and the stop comes right after them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []

    def hold(signum: int, _frame: object) -> None:
        got.append(signum)

    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        if previous is not None:  # None: a handler not set from Python, left alone
            saved[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        if got:
            signal.raise_signal(got[0])


@contextlib.contextmanager
def folders_locked(folders: Sequence[Path]) -> Iterator[None]:
    """Hold an exclusive POSIX ``flock`` on each folder (its own descriptor: no lock file
    beside the results), waiting for another holder: writers of file sets into one folder
    take turns. Taken in sorted order (two writers of overlapping folders cannot deadlock);
    best effort: a folder that cannot be opened or locked (not POSIX, a file system without
    ``flock``) goes unlocked, as :func:`exclusive_lock` does."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    held: list[int] = []
    try:
        for folder in sorted({str(Path(f).resolve()) for f in folders}):
            try:
                fd = os.open(folder, os.O_RDONLY)
            except OSError:
                continue
            held.append(fd)
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        for fd in held:
            os.close(fd)  # closing the last descriptor releases its lock


def write_set(files: Sequence[tuple[Path, bytes]], stale: Sequence[Path] = ()) -> list[Path]:
    """Write several files that belong together (a report's tables, page and figures), each
    as :func:`write_bytes` does, and as a set: a target that is a folder is refused before
    any is written (six tables were written beside a ``report.json`` that was a folder), and
    a stop (Ctrl-C, SIGTERM) during the writes takes effect after the last (stopped after
    three of a report's twelve files, they sat beside the earlier run's page). ``stale``:
    files of an earlier run the set replaces without a file of its own (a figure this run has
    none of), removed in the same block (a stop that came during the writes kept an earlier
    run's figure beside the new page). Two processes writing sets into the same folder take
    turns (:func:`folders_locked`): the folder ends with one run's whole set, not tables of
    one beside the page of the other. The bytes are all made before the call: the writes
    themselves take milliseconds."""
    for path, _ in files:
        if Path(path).is_dir():
            raise CimsimError(f"{str(path)!r} is a folder where a file is to be written; "
                              "nothing was written (remove or rename the folder)")
    # the turn is waited for before the signals are held: a Ctrl-C while another writer
    # holds the folder stops this run at once
    with folders_locked([Path(p).parent for p, _ in files] + [Path(p).parent for p in stale]), \
            signals_deferred():
        paths = [write_bytes(path, data) for path, data in files]
        for path in stale:
            if Path(path).is_file():
                Path(path).unlink()
        return paths


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, what: str, hint: str) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` for the duration: a second run of ``what``
    into the same folder is refused at once (a ``CimsimError`` naming the holder's pid and
    ``hint``) instead of working beside the first and overwriting its files. POSIX ``flock``,
    released by the system when the holder dies (no stale lock); where it is not available
    the run goes unlocked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with lock_path.open("a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise CimsimError(
                f"another {what} is writing into {lock_path.parent} ({holder}); {hint}"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

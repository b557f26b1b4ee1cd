"""Whole-or-nothing file writes for the files a later run reads back.

A result file (``report.json``, ``sweep.json``, a CSV table, a figure) written in place is
truncated first and filled after: a kill, a full disk or an exception in between leaves a
half-written file that ``cimsim report`` or a reader would take for a result. Here the bytes go
to a temporary file beside the target, which then replaces it in one ``os.replace`` (atomic on
POSIX and Windows within one folder): a reader sees the old file or the new one, never a part.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_bytes", "write_text"]


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that ``path`` is either untouched or complete; returns
    ``path``. The temporary file (``.NAME.PID.tmp`` in the same folder) is removed on failure."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: no stray temporary file either way
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """:func:`write_bytes` of ``text`` in UTF-8 (newlines as given: byte-identical runs)."""
    return write_bytes(path, text.encode("utf-8"))

"""Whether a progress bar is drawn: one flag for every bar of cimsim (tqdm's ``disable``)."""

from __future__ import annotations

import sys

__all__ = ["bar_disabled"]


def bar_disabled(progress: bool) -> bool | None:
    """tqdm's ``disable`` for a bar asked for by ``progress``: None (tqdm draws it on a
    terminal only) or True. True too where the process has no standard error (Windows'
    ``pythonw``, a service, ``2>&-``): tqdm writes to ``sys.stderr``, and a None there failed
    deploy, evaluations, training and sweeps with an AttributeError."""
    return None if progress and sys.stderr is not None else True

"""``numba.njit`` with its on-disk cache where one can be written, and without it where none
can.

Numba caches a compiled kernel beside its source (``__pycache__``) or in the user's cache
folder, and refuses to decorate at all (``RuntimeError: cannot cache function ...: no
locator available``) where neither is writable: a system-wide install run by a service
account or a container user whose home is ``/nonexistent`` failed at ``import cimsim``. There
the kernels compile on first use in every process instead (seconds), with one warning naming
``NUMBA_CACHE_DIR``, the setting that restores the cache.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numba

__all__ = ["njit"]

_warned = False


def njit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(**options)`` as a decorator; ``cache=True`` falls back to no cache where
    Numba finds no writable place for it."""
    def decorate(fn: Callable[..., Any]) -> Any:
        global _warned
        try:
            return numba.njit(**options)(fn)
        except RuntimeError as err:
            if not options.get("cache") or "cannot cache" not in str(err):
                raise
        if not _warned:
            _warned = True
            warnings.warn("Numba cannot cache cimsim's compiled kernels (neither the package's "
                          "folder nor a user cache folder is writable): they compile in every "
                          "process; set NUMBA_CACHE_DIR to a writable folder to keep them",
                          RuntimeWarning, stacklevel=2)
        return numba.njit(**{**options, "cache": False})(fn)

    return decorate

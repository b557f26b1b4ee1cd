"""Start Numba's thread pool without changing torch's thread count.

Numba's default threading layer here is OpenMP, and the first parallel kernel a process runs
starts its pool with ``omp_set_num_threads(NUMBA_NUM_THREADS)``. Torch's CPU build shares that
OpenMP runtime, so a ``torch.set_num_threads(1)`` made before the first deploy was silently
undone by it (training after a deploy then ran on every core). The pool is started here, once,
when a kernel module is imported, and torch's count is put back; Numba's own kernels keep their
own count (``numba.set_num_threads``), which OpenMP's global setting does not limit.
"""

from __future__ import annotations

import sys

import numba

__all__ = ["start_numba_pool"]


def start_numba_pool() -> None:
    """Start Numba's thread pool now (a no-op once started), keeping torch's thread count if
    torch is imported; if it is not, torch reads its default after the pool is up."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    numba.get_num_threads()  # starts the pool: Numba's documented entry points all do
    if torch is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)

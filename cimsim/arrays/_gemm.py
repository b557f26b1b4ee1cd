"""The partial-sum GEMM: exact int8 (torch ``_int_mm``) where possible, float32/64 BLAS else.

Plane values and cell digits are small integers. An int8 x int8 -> int32 GEMM is exact and, on
CPUs with VNNI/AMX, several times faster than float32 BLAS; float32 is exact below 2^24, which
``choose`` checks from the operand bounds before picking it; float64 covers the rest.
torch is optional here (imported lazily); without it the float path runs.
"""

from __future__ import annotations

import functools
import os

import numpy as np

__all__ = ["choose", "gemm"]


@functools.lru_cache(maxsize=1)
def _int_mm():
    if os.environ.get("CIMSIM_GEMM", "auto") not in ("auto", "int8"):
        return None
    try:
        import torch

        a = torch.ones((17, 8), dtype=torch.int8)
        if not bool((torch._int_mm(a, a.T.contiguous()) == 8).all()):  # pragma: no cover
            return None
        return torch
    except Exception:  # pragma: no cover - torch missing or op unsupported
        return None


def choose(a_max: float, b_max: float, depth: int, b_is_int: bool, allow_int8: bool = True) -> str:
    """GEMM kind for operands bounded by ``a_max``, ``b_max`` (abs) summed over ``depth``."""
    if b_is_int and allow_int8 and a_max <= 127 and b_max <= 127 and _int_mm() is not None:
        return "int8"
    if a_max * b_max * depth < 2**24:
        return "float32"
    return "float64"


def gemm(a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """``a @ b`` for a (M, K) and b (K, J) with the given kind; int32/float32/float64 result."""
    if kind == "int8":
        torch = _int_mm()
        # strided int8 views are read in place (a row stride is a leading dimension)
        ta = torch.from_numpy(a if a.dtype == np.int8 else a.astype(np.int8))
        tb = torch.from_numpy(np.ascontiguousarray(b, dtype=np.int8))
        return torch._int_mm(ta, tb).numpy()
    dt = np.float32 if kind == "float32" else np.float64
    return np.matmul(a.astype(dt, copy=False), b.astype(dt, copy=False))

"""The partial-sum GEMM: exact int8 (torch ``_int_mm``) where possible, float32/64 BLAS else.

Plane values and cell digits are small integers. An int8 x int8 -> int32 GEMM is exact and, on
CPUs with VNNI/AMX, several times faster than float32 BLAS; float32 is exact below 2^24, which
``choose`` checks from the operand bounds before picking it; float64 covers the rest.

``torch._int_mm`` is a private torch entry point: it is reached only through
:func:`int8_matmul`, which returns ``None`` when torch is missing, the op is absent or it fails
a self-test, and ``choose`` then picks the float path (the same integers, exactly).

The float GEMMs run through torch too where it is installed: torch's BLAS threads on the same
OpenMP runtime (``libgomp``) as the Numba kernels, so the GEMM and the kernel that follows it
take turns on one thread pool. NumPy's OpenBLAS has its own spinning pthreads; alternating the
two pools (a GEMM and a kernel per row group) made a one-vector call on a 4608x512 layer wait
~0.3 s on two busy cores (``docs/performance.md``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["GEMM_ENV", "choose", "gemm", "gemm_setting", "ieee_float32", "int8_matmul"]

Int8MatMul = Callable[[np.ndarray, np.ndarray], np.ndarray]


GEMM_ENV = "CIMSIM_GEMM"
GEMM_SETTINGS = ("auto", "int8", "float32", "numpy")


def gemm_setting() -> str:
    """``CIMSIM_GEMM``: ``auto`` (default) or ``int8`` (the exact int8 GEMM where it fits),
    ``float32`` (the float path through torch), ``numpy`` (the float path through NumPy's
    BLAS: another summation order, so other codes at a boundary); anything else a
    ``ConfigError`` (``NUMPY`` or a typo silently meant ``float32``)."""
    value = os.environ.get(GEMM_ENV, "auto")
    if value not in GEMM_SETTINGS:
        raise ConfigError(f"{GEMM_ENV} = {value!r} is invalid; allowed: "
                          + ", ".join(repr(s) for s in GEMM_SETTINGS))
    return value


@functools.lru_cache(maxsize=1)
def int8_matmul() -> Int8MatMul | None:
    """The exact int8 GEMM ``(M, K) int8 @ (K, J) int8 -> (M, J) int32``, or ``None``.

    ``None`` when ``CIMSIM_GEMM`` is set to something other than ``auto``/``int8``
    (``float32``: the float path through torch; ``numpy``: the float path through NumPy), when torch
    is not installed, when this torch build has no ``torch._int_mm`` (a private op), or when
    the op does not compute a known product correctly. Checked once per process.
    """
    if gemm_setting() not in ("auto", "int8"):
        return None
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency, but optional here
        return None
    op = getattr(torch, "_int_mm", None)
    if op is None:  # pragma: no cover - depends on the torch build
        return None

    def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # strided int8 views are read in place (a row stride is a leading dimension)
        ta = read_tensor(torch, a if a.dtype == np.int8 else a.astype(np.int8))
        tb = read_tensor(torch, np.ascontiguousarray(b, dtype=np.int8))
        return op(ta, tb).numpy()

    probe = np.ones((17, 8), dtype=np.int8)
    try:
        ok = bool((matmul(probe, probe.T) == 8).all())
    except Exception:  # pragma: no cover - op present but unsupported on this CPU/build
        return None
    return matmul if ok else None


def choose(a_max: float, b_max: float, depth: int, b_is_int: bool, allow_int8: bool = True) -> str:
    """GEMM kind for operands bounded by ``a_max``, ``b_max`` (abs) summed over ``depth``."""
    if b_is_int and allow_int8 and a_max <= 127 and b_max <= 127 and int8_matmul() is not None:
        return "int8"
    if a_max * b_max * depth < 2**24:
        return "float32"
    return "float64"


def gemm(a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """``a @ b`` for a (M, K) and b (K, J) with the given kind; int32/float32/float64 result.

    Raises
    ------
    RuntimeError
        ``kind == "int8"`` where :func:`int8_matmul` is unavailable (``choose`` never picks it
        then).
    """
    if kind == "int8":
        mm = int8_matmul()
        if mm is None:
            raise RuntimeError(
                "the int8 GEMM needs torch._int_mm, which this environment lacks (torch "
                "missing, a build without the op, or CIMSIM_GEMM set); use gemm = 'auto', "
                "which takes the exact float32/float64 path"
            )
        return mm(a, b)
    dt = np.float32 if kind == "float32" else np.float64
    a, b = a.astype(dt, copy=False), b.astype(dt, copy=False)
    torch = _torch()
    if torch is None:
        return np.matmul(a, b)
    # a model's forward under torch.autocast (CPU) would run this in bfloat16: the sums of
    # the arrays are exact in the dtype chosen here, whatever the caller's mixed precision.
    # Entered only when on: entering it on every GEMM was a tenth of a depthwise model's
    # per-core overhead
    off = (torch.autocast("cpu", enabled=False) if _cpu_autocast_on(torch)
           else contextlib.nullcontext())
    with off, ieee_float32(torch):
        return read_tensor(torch, a).matmul(read_tensor(torch, b)).numpy()


def _cpu_autocast_on(torch: Any) -> bool:
    try:
        return bool(torch.is_autocast_enabled("cpu"))
    except TypeError:  # torch before 2.4 takes no device: take it as on
        return True


_READ_ONLY_SEEN = False
"""Whether torch was handed a read-only array here once: it warns of one once per process."""
_FILTER_LOCK = threading.Lock()
"""Python's warning filters are the process's: this function's blocks change them one at a
time (another thread's own ``catch_warnings`` elsewhere is not held off by it)."""


def read_tensor(torch, a: np.ndarray):
    """``torch.from_numpy(a)`` for an operand torch only reads: a programmed layer's cells are
    read-only (the programming cache shares them), which torch warns of on every process's
    first GEMM (``cimsim datasheet`` printed it) although nothing writes to them here. Torch
    warns once per process, so only the first such call here holds the warning: a
    ``catch_warnings`` block at every GEMM cleared Python's warning registries, and every
    once-only warning of the process (the user's, cimsim's) printed again at every forward."""
    global _READ_ONLY_SEEN
    # (torch.set_warn_always(True) makes it warn at every call: held at every call then)
    if a.flags.writeable or (_READ_ONLY_SEEN and not torch.is_warn_always_enabled()):
        return torch.from_numpy(a)
    with _FILTER_LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        t = torch.from_numpy(a)
    _READ_ONLY_SEEN = True
    return t


_IEEE_LOCK = threading.Lock()
_IEEE_HELD = 0
"""How many ``ieee_float32`` blocks are open, over all threads (under ``_IEEE_LOCK``)."""
_IEEE_SAVED: dict[str, tuple[Any, str]] = {}
"""By backend, the caller's latest setting a block replaced, restored when the last closes."""


@contextlib.contextmanager
def ieee_float32(torch) -> Iterator[None]:
    """float32 matmuls in IEEE float32 within the block, whatever the caller set: under
    ``torch.set_float32_matmul_precision("medium")`` (common in training scripts) torch may run
    them in bfloat16 on the CPU (oneDNN, on CPUs with bf16 units) and in TF32 on a GPU, 8 or 10
    mantissa bits: cell digits and conductances beyond them would be rounded where the GEMM's
    exactness below 2^24 (:func:`choose`) is counted on. The backends' settings are restored
    after; nothing is touched where they already are IEEE (the default).

    The setting is the process's, not the thread's: the blocks of all threads share one
    override, counted, and the caller's setting comes back when the last of them closes (saved
    and restored per block, a thread leaving its block put bfloat16 back under another
    thread's GEMM, and threaded ``cimsim.matmul`` calls differed from serial ones by ~3 %).
    Every block checks the backends as it opens: a reduced precision the caller set while
    another thread's block was open is overridden too, and is the one restored. A setting to
    IEEE made meanwhile cannot be told from the override's: the last close restores the
    caller's reduced one."""
    global _IEEE_HELD
    with _IEEE_LOCK:
        for name in ("mkldnn", "cuda"):
            matmul: Any = getattr(getattr(torch.backends, name, None), "matmul", None)
            value = getattr(matmul, "fp32_precision", None)
            if value is not None and value not in ("ieee", "none"):
                _IEEE_SAVED[name] = (matmul, value)  # the caller's latest
                matmul.fp32_precision = "ieee"
        _IEEE_HELD += 1
    try:
        yield
    finally:
        with _IEEE_LOCK:
            _IEEE_HELD -= 1
            if _IEEE_HELD == 0:
                for matmul, value in _IEEE_SAVED.values():
                    if matmul.fp32_precision == "ieee":  # unless the caller set another since
                        matmul.fp32_precision = value
                _IEEE_SAVED.clear()


@functools.lru_cache(maxsize=1)
def _torch():  # -> the torch module or None
    if gemm_setting() == "numpy":
        return None
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency, but optional here
        return None
    return torch

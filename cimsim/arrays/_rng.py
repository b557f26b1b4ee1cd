"""Counter-based Gaussian draws: a pure function of (key, index).

Noise in a conversion must not depend on how the work is cut into chunks or threads, so every
draw is a function of a 64-bit stream key and the global index of the conversion. Bits come from
the splitmix64 generator: the finaliser applied to key + index·golden (one mix per draw); a
normal is made from them with the Marsaglia-Tsang ziggurat (128 layers), which is exact in
distribution and needs one hash and one table look-up on ~99 % of draws: several times cheaper
than Box-Muller's log and cos, which would cost more than the GEMM the noise is added to.

``normal(key, idx)`` is the Numba version used inside kernels; ``normal_reference`` is its
plain NumPy/Python twin (the tests' oracle); both return bit-identical values.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, uint64

_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_MASK64 = (1 << 64) - 1
_R = 3.442619855899


def _ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """kn, wn, fn of Marsaglia & Tsang (2000), 128 layers, for 32-bit signed integers."""
    m1 = 2147483648.0
    dn = tn = _R
    vn = 9.91256303526217e-3
    kn = np.zeros(128, dtype=np.int64)
    wn = np.zeros(128)
    fn = np.zeros(128)
    q = vn / math.exp(-0.5 * dn * dn)
    kn[0] = int((dn / q) * m1)
    kn[1] = 0
    wn[0] = q / m1
    wn[127] = dn / m1
    fn[0] = 1.0
    fn[127] = math.exp(-0.5 * dn * dn)
    for i in range(126, 0, -1):
        dn = math.sqrt(-2.0 * math.log(vn / dn + math.exp(-0.5 * dn * dn)))
        kn[i + 1] = int((dn / tn) * m1)
        tn = dn
        fn[i] = math.exp(-0.5 * dn * dn)
        wn[i] = dn / m1
    return kn, wn, fn


KN, WN, FN = _ziggurat_tables()


# ---------------------------------------------------------------------------------------------
# Numba
# ---------------------------------------------------------------------------------------------
@njit(inline="always", cache=True)
def _mix(z):  # pragma: no cover - compiled
    z = z + uint64(_GOLDEN)
    z = (z ^ (z >> uint64(30))) * uint64(_M1)
    z = (z ^ (z >> uint64(27))) * uint64(_M2)
    return z ^ (z >> uint64(31))


@njit(inline="always", cache=True)
def _uniform(key, idx, attempt):  # pragma: no cover - compiled
    h = _mix(key + (idx + attempt * uint64(_GOLDEN)) * uint64(_GOLDEN))
    return ((h >> uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _normal_slow(key, idx, hz, iz, kn, wn, fn):  # pragma: no cover - compiled
    attempt = uint64(1)
    while True:
        x = hz * wn[iz]
        if iz == 0:
            while True:
                xx = -math.log(_uniform(key, idx, attempt)) / _R
                yy = -math.log(_uniform(key, idx, attempt + uint64(1)))
                attempt += uint64(2)
                if yy + yy >= xx * xx:
                    break
            return _R + xx if hz > 0 else -_R - xx
        u = _uniform(key, idx, attempt)
        attempt += uint64(1)
        if fn[iz] + u * (fn[iz - 1] - fn[iz]) < math.exp(-0.5 * x * x):
            return x
        h = _mix(key + (idx + attempt * uint64(_GOLDEN)) * uint64(_GOLDEN))
        attempt += uint64(1)
        hz = np.int64(np.int32(h & uint64(0xFFFFFFFF)))
        iz = np.int64((h >> uint64(32)) & uint64(127))
        if abs(hz) < kn[iz]:
            return hz * wn[iz]


@njit(inline="always", cache=True)
def normal(key, idx, kn, wn, fn):  # pragma: no cover - compiled
    """Standard normal draw number ``idx`` of stream ``key`` (both uint64)."""
    h = _mix(key + idx * uint64(_GOLDEN))
    hz = np.int64(np.int32(h & uint64(0xFFFFFFFF)))
    iz = np.int64((h >> uint64(32)) & uint64(127))
    if abs(hz) < kn[iz]:
        return hz * wn[iz]
    return _normal_slow(key, idx, hz, iz, kn, wn, fn)


# ---------------------------------------------------------------------------------------------
# NumPy / Python twin
# ---------------------------------------------------------------------------------------------
def _mix_np(z: np.ndarray) -> np.ndarray:
    z = z + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def _mix_int(z: int) -> int:
    z = (z + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * _M1) & _MASK64
    z = ((z ^ (z >> 27)) * _M2) & _MASK64
    return z ^ (z >> 31)


def _uniform_int(key: int, idx: int, attempt: int) -> float:
    h = _mix_int((key + ((idx + attempt * _GOLDEN) * _GOLDEN)) & _MASK64)
    return ((h >> 11) + 0.5) * (1.0 / 9007199254740992.0)


def _normal_slow_py(key: int, idx: int, hz: int, iz: int) -> float:
    attempt = 1
    while True:
        x = hz * WN[iz]
        if iz == 0:
            while True:
                xx = -math.log(_uniform_int(key, idx, attempt)) / _R
                yy = -math.log(_uniform_int(key, idx, attempt + 1))
                attempt += 2
                if yy + yy >= xx * xx:
                    break
            return _R + xx if hz > 0 else -_R - xx
        u = _uniform_int(key, idx, attempt)
        attempt += 1
        if FN[iz] + u * (FN[iz - 1] - FN[iz]) < math.exp(-0.5 * x * x):
            return float(x)
        h = _mix_int((key + ((idx + attempt * _GOLDEN) * _GOLDEN)) & _MASK64)
        attempt += 1
        hz = int(np.int32(np.uint32(h & 0xFFFFFFFF)))
        iz = (h >> 32) & 127
        if abs(hz) < KN[iz]:
            return float(hz * WN[iz])


def normal_reference(key: int, idx: np.ndarray) -> np.ndarray:
    """NumPy twin of :func:`normal` for an array of indices (any shape) -> float64 array."""
    idx = np.asarray(idx, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = _mix_np(np.uint64(key) + idx * np.uint64(_GOLDEN))
    hz = (h & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32).astype(np.int64)
    iz = ((h >> np.uint64(32)) & np.uint64(127)).astype(np.int64)
    out = hz * WN[iz]
    slow = ~(np.abs(hz) < KN[iz])
    for pos in zip(*np.nonzero(slow), strict=True):
        out[pos] = _normal_slow_py(int(key), int(idx[pos]), int(hz[pos]), int(iz[pos]))
    return out


def stream_key(seed: int, stream: int) -> int:
    """A 64-bit key for sub-stream ``stream`` of a seed (thermal, comparator, ... noise)."""
    return _mix_int((_mix_int(seed & _MASK64) + stream * _GOLDEN) & _MASK64)

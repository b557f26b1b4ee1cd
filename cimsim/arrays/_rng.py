"""Counter-based Gaussian draws: a pure function of (key, index).

Noise in a conversion must not depend on how the work is cut into chunks or threads, so every
draw is a function of a 64-bit stream key and the global index of the conversion. Bits come from
the splitmix64 finaliser applied to key + pair·golden: one hash serves the two draws 2·pair
(its low 32 bits) and 2·pair + 1 (its high 32 bits), which halves the hashing. Each 32-bit word
makes a normal with the Marsaglia-Tsang ziggurat, 1024 layers: the top 10 bits pick the layer,
the next one the sign, the low 21 the position (2j + 1) / 2^22 of the draw across its layer.

The method is exact in distribution up to that grid (and the float64 rounding of the tables):
the draws of a layer of width x_l lie on odd multiples of x_l / 2^22, a step of at most
4.04 / 2^21 ≈ 2e-6, which moves no probability by more than 1e-6 (a midpoint grid: no atom at
0, and the variance of a layer is off by 1e-13 relative only). 1024 layers rather than the
usual 128 because a draw off the fast path (the wedge test with an ``exp``, or the tail beyond
R) costs tens of fast draws: 0.43 % of draws take it instead of 2.8 %. The other 99.57 % cost
half a hash and two table loads: several times cheaper than Box-Muller's log and cos, which
would cost more than the GEMM the noise is added to.

``normal(key, idx)`` is one draw; ``fill_normals`` a block of consecutive draws, the kernels'
form: the hashes of the block in one vectorised loop, then the table look-ups in a scalar one
(gathers were slower than scalar loads on the Ice Lake machine the benchmarks ran on).
``normal_reference`` is their plain NumPy/Python twin (the tests' oracle). All return
bit-identical values.

**Exact ADC codes under Gaussian noise** (``fill_words``, ``code_offset_slow``; twin
``code_offsets_reference``). Where a conversion's noise is one Gaussian of known sigma and the
ADC is uniform, the code is ``floor(u + s·z)`` with ``u`` the noiseless value's position in
steps and ``s`` = sigma / step: only *which integer* ``u + s·z`` falls in matters, not z. So
z is drawn as a cell of the standard normal's quantile table ``QZ`` (4096 cells of equal
probability, one 16-bit word per draw, four per hash; the top 12 bits pick the cell): where
``u + s·QZ[i]`` and ``u + s·QZ[i+1]`` fall in the same integer, that integer is the code offset,
exactly, whatever z is inside the cell. Otherwise (a code boundary inside the cell, or one of
the two unbounded end cells: a fraction of about s/600 + 1/2048 of the draws) the uniform is
completed with 53 fresh bits and the offset found by comparing it with the exact CDF
``Phi((k - u)/s)`` (``math.erfc``). Exact in distribution up to float64 rounding; it does not
reproduce the draws of the Gaussian path (another function of the same counters).
"""

from __future__ import annotations

import math
import sys

import numpy as np
from numba import uint64

from .._jit import njit

_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_MASK64 = (1 << 64) - 1
# 1024 equal-area layers: R is where the tail starts, V the area of each layer (the base layer
# is the rectangle [0, R] x [0, f(R)] plus the tail). R solves "the recursion below closes on
# the top layer", computed to 20 digits with mpmath (Marsaglia & Tsang's formulas, n = 1024).
_LAYERS = 1024
_R = 4.0388498461095045227
_V = 0.0012263246463530880729
_GRID = 1 << 22  # positions across a layer: odd multiples of 1/_GRID
_MAG = _GRID - 1  # mask of the odd numerator 2j + 1 built from 21 random bits


def _ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """KN, WN (2 * 1024,) indexed by layer * 2 + sign, and FN (1024,) indexed by layer.

    Layer 0 is the base strip (pseudo-width V / f(R)), layer 1023 the widest rectangle (width R),
    layer 1 the top one. A draw with odd numerator ``m`` < 2^22 in layer word ``i`` is
    ``m * WN[i]`` (WN carries the sign); it is accepted at once when ``m < KN[i]``, i.e. when it
    lies under the next layer up (under the curve for sure); FN[l] = f(x_l), with f(x_0) := 1.
    """
    n = _LAYERS
    dn = tn = _R
    kn = np.zeros(n, dtype=np.int64)
    wn = np.zeros(n)
    fn = np.zeros(n)
    q = _V / math.exp(-0.5 * dn * dn)
    wn[0] = q / _GRID
    wn[n - 1] = dn / _GRID
    fn[0] = 1.0
    fn[n - 1] = math.exp(-0.5 * dn * dn)
    kn[1] = 0  # the top layer has nothing entirely under the curve: always the wedge test
    for i in range(n - 2, 0, -1):
        dn = math.sqrt(-2.0 * math.log(_V / dn + math.exp(-0.5 * dn * dn)))
        kn[i + 1] = int((dn / tn) * _GRID)
        tn = dn
        fn[i] = math.exp(-0.5 * dn * dn)
        wn[i] = dn / _GRID
    # base layer: accept exactly the numerators whose product (as computed) is below R, so the
    # fast path and the tail split the strip at R with no float slack
    k0 = int((_R / q) * _GRID)
    while k0 * wn[0] < _R:
        k0 += 1
    while (k0 - 1) * wn[0] >= _R:
        k0 -= 1
    kn[0] = k0
    sign = np.tile([1.0, -1.0], n)
    return np.repeat(kn, 2), np.repeat(wn, 2) * sign, fn


KN, WN, FN = _ziggurat_tables()

_QCELLS = 4096  # cells of the quantile table: one 32 KiB float64 table, the top 12 of 16 bits


def _quantile_edges() -> np.ndarray:
    """(4097,) edges of 4096 equal-probability cells of the standard normal, ±inf at the ends
    (``statistics.NormalDist.inv_cdf``: Wichura's AS241, ~1e-16 relative)."""
    from statistics import NormalDist

    inv = NormalDist().inv_cdf
    return np.array([-np.inf] + [inv(i / _QCELLS) for i in range(1, _QCELLS)] + [np.inf])


QZ = _quantile_edges()
# the kernels read fill_words' 16-bit words through a uint16 view of its hashes (word w of a hash
# is bits 16w..16w+15, in memory order only on a little-endian machine)
if sys.byteorder != "little":  # pragma: no cover - every platform cimsim runs on
    raise ImportError("cimsim's noise kernels assume a little-endian machine")
_SQRT1_2 = 0.7071067811865476


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


@njit(inline="always", cache=True)
def _word(h, half):  # pragma: no cover - compiled
    """Layer word (layer * 2 + sign) and odd numerator of draw ``half`` (uint64 0, 1) of h."""
    w = (h >> (half << uint64(5))) & uint64(0xFFFFFFFF)
    return np.int64(w >> uint64(21)), np.int64(((w << uint64(1)) | uint64(1)) & uint64(_MAG))


@njit(cache=True)
def _normal_slow(key, idx, i, m):  # pragma: no cover - compiled
    # Not inlined and no array arguments (the tables are frozen module constants): a call with
    # arrays would pay Numba's reference counting on every rejected draw.
    # Further uniforms of draw idx come from the counters idx + attempt·golden, attempt >= 1.
    kn, wn, fn = KN, WN, FN
    attempt = uint64(1)
    while True:
        layer = i >> 1
        if layer == 0:  # beyond R: Marsaglia's exact tail method
            while True:
                xx = -math.log(_uniform(key, idx, attempt)) / _R
                yy = -math.log(_uniform(key, idx, attempt + uint64(1)))
                attempt += uint64(2)
                if yy + yy >= xx * xx:
                    break
            return -_R - xx if i & 1 else _R + xx
        x = m * wn[i]
        u = _uniform(key, idx, attempt)
        attempt += uint64(1)
        if fn[layer] + u * (fn[layer - 1] - fn[layer]) < math.exp(-0.5 * x * x):
            return x
        # rejected: a fresh candidate, from the next counter
        i, m = _word(_mix(key + (idx + attempt * uint64(_GOLDEN)) * uint64(_GOLDEN)),
                     uint64(0))
        attempt += uint64(1)
        if m < kn[i]:
            return m * wn[i]


@njit(cache=True)
def normal(key, idx):  # pragma: no cover - compiled
    """Standard normal draw number ``idx`` of stream ``key`` (both uint64)."""
    i, m = _word(_mix(key + (idx >> uint64(1)) * uint64(_GOLDEN)), idx & uint64(1))
    if m < KN[i]:
        return m * WN[i]
    return _normal_slow(key, idx, i, m)


@njit(inline="always", cache=True)
def fill_normals(key, base, z, hh, slow, kn, wn):  # pragma: no cover - compiled
    """z[c] = normal(key, base + c) for every c < len(z).

    hh (>= len(z) // 2,) uint64 and slow (>= len(z),) int64 are scratch; kn, wn are KN, WN.
    """
    fill_normals_n(key, base, z.shape[0], z, hh, slow, kn, wn)


@njit(inline="always", cache=True)
def fill_normals_n(key, base, n, z, hh, slow, kn, wn):  # pragma: no cover - compiled
    """z[c] = normal(key, base + c) for every c < n (<= len(z)): :func:`fill_normals` on the
    first n entries of z without slicing it (a slice in a parallel loop is an alias to Numba,
    which then withholds ``noalias`` from the loop's arrays, and with it the vectorised table
    gathers of the exact code sampler).

    Three passes: the hashes of all whole pairs (a loop with no table look-up, so it
    vectorises); the fast path, two draws per hash (scalar: it needs two table loads per draw);
    the ~0.4 % slow draws and the block's odd ends, one by one.
    """
    c0 = np.int64(base & uint64(1))  # an odd base starts in the middle of a pair
    n_pairs = max(n - c0, 0) >> 1
    j0 = (base + uint64(c0)) >> uint64(1)
    for j in range(n_pairs):
        # pair numbers wrap at 2^63 (where the draw indices wrap at 2^64)
        pair = (j0 + uint64(j)) & uint64(0x7FFFFFFFFFFFFFFF)
        hh[j] = _mix(key + pair * uint64(_GOLDEN))
    ns = 0
    for j in range(n_pairs):
        h = hh[j]
        c = c0 + 2 * j
        # _word(h, 0) and _word(h, 1), spelled out so that no shift count depends on the draw
        i0 = np.int64((h >> uint64(21)) & uint64(0x7FF))
        m0 = np.int64(((h << uint64(1)) | uint64(1)) & uint64(_MAG))
        i1 = np.int64(h >> uint64(53))
        m1 = np.int64(((h >> uint64(31)) | uint64(1)) & uint64(_MAG))
        z[c] = m0 * wn[i0]
        z[c + 1] = m1 * wn[i1]
        if m0 >= kn[i0]:
            slow[ns] = c
            ns += 1
        if m1 >= kn[i1]:
            slow[ns] = c + 1
            ns += 1
    if c0 == 1 and n > 0:
        z[0] = normal(key, base)
    if c0 + 2 * n_pairs < n:
        z[n - 1] = normal(key, base + uint64(n - 1))
    for s in range(ns):
        c = slow[s]
        z[c] = normal(key, base + uint64(c))


@njit(inline="always", cache=True)
def fill_words(key, base, n, hh):  # pragma: no cover - compiled
    """hh[j] = the hash holding the 16-bit words of draws ``base + c`` for c < n: word
    ``(base + c) & 3`` of ``hh[((base + c) >> 2) - (base >> 2)]``. hh (>= n // 4 + 2,).

    On a little-endian machine that word is ``hh.view(np.uint16)[(base & 3) + c]``: the kernel
    reads the words in order through that view, so its loop loads them like any array."""
    j0 = base >> uint64(2)
    # the hashes of words (base & 3) .. (base & 3) + n - 1 (base + n may wrap at 2^64: the
    # count from it was negative there, and no hash was written)
    n_hash = np.int64(((base & uint64(3)) + uint64(n) + uint64(3)) >> uint64(2))
    for j in range(n_hash):
        # word numbers wrap at 2^62 (where the draw indices wrap at 2^64)
        hh[j] = _mix(key + ((j0 + uint64(j)) & uint64(0x3FFFFFFFFFFFFFFF)) * uint64(_GOLDEN))


@njit(cache=True)
def code_offset_slow(key, idx, i, u, s):  # pragma: no cover - compiled
    """floor(u + s·z) of draw ``idx`` whose 16-bit word picked quantile cell ``i`` where the
    cell alone does not decide it (a code boundary inside, or an unbounded end cell).

    The fast path is written out in the kernel (``_kernels.convert_accumulate``): with ``word``
    the draw's 16-bit word and ``i = word >> 4``, the offset is ``floor(u + s·QZ[i])`` when
    ``floor(u + s·QZ[i + 1])`` equals it (never in the end cells, where one edge is infinite);
    else this function. Scalars only and not inlined: an array argument, or a module-constant
    array read in a parallel loop, costs Numba's atomic reference counting on every call.
    """
    # the cell's uniform completed with 53 fresh bits (the counter of attempt 1); then the
    # offset k with CDF(k - 1) <= U < CDF(k), CDF(k) = P(floor(u + s·z) <= k) = Phi((k+1-u)/s)
    qz = QZ
    uu = (i + _uniform(key, idx, uint64(1))) * (1.0 / _QCELLS)
    k = math.floor(u + s * qz[min(max(i, 1), _QCELLS - 1)])
    while uu < 0.5 * math.erfc((u - k) / s * _SQRT1_2):
        k -= 1
    while uu >= 0.5 * math.erfc((u - k - 1.0) / s * _SQRT1_2):
        k += 1
    return k


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


def _word_int(h: int, half: int) -> tuple[int, int]:
    w = (h >> (32 * half)) & 0xFFFFFFFF
    return w >> 21, ((w << 1) | 1) & _MAG


def _normal_slow_py(key: int, idx: int, i: int, m: int) -> float:
    attempt = 1
    while True:
        layer = i >> 1
        if layer == 0:
            while True:
                xx = -math.log(_uniform_int(key, idx, attempt)) / _R
                yy = -math.log(_uniform_int(key, idx, attempt + 1))
                attempt += 2
                if yy + yy >= xx * xx:
                    break
            return -_R - xx if i & 1 else _R + xx
        x = float(m * WN[i])
        u = _uniform_int(key, idx, attempt)
        attempt += 1
        if FN[layer] + u * (FN[layer - 1] - FN[layer]) < math.exp(-0.5 * x * x):
            return x
        i, m = _word_int(_mix_int((key + ((idx + attempt * _GOLDEN) * _GOLDEN)) & _MASK64), 0)
        attempt += 1
        if m < KN[i]:
            return float(m * WN[i])


def normal_reference(key: int, idx: np.ndarray) -> np.ndarray:
    """NumPy twin of :func:`normal` for an array of indices (any shape) -> float64 array."""
    idx = np.asarray(idx, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = _mix_np(np.uint64(key) + (idx >> np.uint64(1)) * np.uint64(_GOLDEN))
    w = (h >> ((idx & np.uint64(1)) << np.uint64(5))) & np.uint64(0xFFFFFFFF)
    i = (w >> np.uint64(21)).astype(np.int64)
    m = (((w << np.uint64(1)) | np.uint64(1)) & np.uint64(_MAG)).astype(np.int64)
    out = m * WN[i]
    slow = m >= KN[i]
    for pos in zip(*np.nonzero(slow), strict=True):
        out[pos] = _normal_slow_py(int(key), int(idx[pos]), int(i[pos]), int(m[pos]))
    return out


def _code_offset_slow_py(key: int, idx: int, i: int, u: float, s: float) -> int:
    uu = (i + _uniform_int(key, idx, 1)) * (1.0 / _QCELLS)
    k = math.floor(u + s * QZ[min(max(i, 1), _QCELLS - 1)])
    while uu < 0.5 * math.erfc((u - k) / s * _SQRT1_2):
        k -= 1
    while uu >= 0.5 * math.erfc((u - k - 1.0) / s * _SQRT1_2):
        k += 1
    return k


def code_offsets_reference(key: int, idx: np.ndarray, u: np.ndarray,
                           s: np.ndarray) -> np.ndarray:
    """NumPy twin of ``code_offset`` over arrays of draw indices, positions u (clamped to
    ±2^50) and noise steps s (broadcast together) -> int64 ``floor(u + s·z)``."""
    idx, u, s = np.broadcast_arrays(np.asarray(idx, dtype=np.uint64),
                                    np.asarray(u, dtype=np.float64),
                                    np.asarray(s, dtype=np.float64))
    with np.errstate(over="ignore"):
        word_no = (idx >> np.uint64(2)) & np.uint64(0x3FFFFFFFFFFFFFFF)
        h = _mix_np(np.uint64(key) + word_no * np.uint64(_GOLDEN))
    word = ((h >> ((idx & np.uint64(3)) << np.uint64(4))) & np.uint64(0xFFFF)).astype(np.int64)
    i = word >> 4
    inner = (i > 0) & (i < _QCELLS - 1)
    ic = np.clip(i, 1, _QCELLS - 2)
    k = np.floor(u + s * QZ[ic])
    fast = inner & (np.floor(u + s * QZ[ic + 1]) == k)
    out = k.astype(np.int64)
    for pos in zip(*np.nonzero(~fast), strict=True):
        out[pos] = _code_offset_slow_py(int(key), int(idx[pos]), int(i[pos]), float(u[pos]),
                                        float(s[pos]))
    return out


def stream_key(seed: int, stream: int) -> int:
    """A 64-bit key for sub-stream ``stream`` of a seed (thermal, comparator, ... noise)."""
    return _mix_int((_mix_int(seed & _MASK64) + stream * _GOLDEN) & _MASK64)

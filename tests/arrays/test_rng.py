"""Counter-based normal draws: Numba == NumPy twin bit for bit, N(0, 1), independent streams."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit, uint64
from scipy import stats

from cimsim.arrays import _rng
from cimsim.arrays._rng import (
    _R,
    _V,
    FN,
    KN,
    WN,
    fill_normals,
    normal,
    normal_reference,
    stream_key,
)


@njit(cache=True)
def _draws(key, start, n):  # pragma: no cover - compiled
    out = np.empty(n)
    for i in range(n):
        out[i] = normal(key, start + uint64(i))
    return out


@njit(cache=True)
def _at(key, idx):  # pragma: no cover - compiled
    out = np.empty(idx.shape[0])
    for i in range(idx.shape[0]):
        out[i] = normal(key, idx[i])
    return out


@njit(cache=True)
def _filled(key, base, n, kn, wn):  # pragma: no cover - compiled
    z = np.full(n, np.nan)
    hh = np.empty(n // 2 + 1, dtype=np.uint64)
    slow = np.empty(n, dtype=np.int64)
    fill_normals(key, base, z, hh, slow, kn, wn)
    return z


def draws(key: int, start: int, n: int) -> np.ndarray:
    """Draws ``start .. start + n - 1`` of stream ``key`` from the Numba generator."""
    return _draws(np.uint64(key), np.uint64(start), n)


def filled(key: int, base: int, n: int) -> np.ndarray:
    """The same draws through the kernel's block form, ``fill_normals``."""
    return _filled(np.uint64(key), np.uint64(base), n, KN, WN)


def span(start: int, n: int) -> np.ndarray:
    return np.arange(n, dtype=np.uint64) + np.uint64(start)  # wraps past 2^64 like the kernel


KEYS = [0, 1, stream_key(0, 1), stream_key(123, 2), stream_key(-5, 1), 2**64 - 1]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("start", [0, 1, 10**12 + 1, 2**64 - 5001],
                         ids=["0", "1", "1e12+1", "wrap"])
def test_numba_equals_reference_bitwise(key, start):
    n = 10_000
    got = draws(key, start, n)
    np.testing.assert_array_equal(got, normal_reference(key, span(start, n)))
    assert np.all(np.isfinite(got))


@pytest.mark.parametrize("key", KEYS[:3])
@pytest.mark.parametrize("base", [0, 1, 2, 7, 2**64 - 3])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 255, 256, 257, 1001])
def test_block_fill_equals_single_draws(key, base, n):
    # odd bases start in the middle of a hash pair, odd lengths end there
    np.testing.assert_array_equal(filled(key, base, n), normal_reference(key, span(base, n)))


def test_reference_accepts_any_index_shape():
    idx = np.arange(24, dtype=np.uint64).reshape(2, 3, 4)
    out = normal_reference(7, idx)
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out.ravel(), normal_reference(7, idx.ravel()))


def _classify(key: int, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Indices of each path of the ziggurat, from the first word and the first uniform."""
    with np.errstate(over="ignore"):
        h = _rng._mix_np(np.uint64(key) + (idx >> np.uint64(1)) * np.uint64(_rng._GOLDEN))
    w = (h >> ((idx & np.uint64(1)) << np.uint64(5))) & np.uint64(0xFFFFFFFF)
    i = (w >> np.uint64(21)).astype(np.int64)
    m = (((w << np.uint64(1)) | np.uint64(1)) & np.uint64(_rng._MAG)).astype(np.int64)
    layer = i >> 1
    slow = m >= KN[i]
    wedge = slow & (layer > 0)
    accepted = np.zeros_like(wedge)
    for pos in np.nonzero(wedge)[0]:
        x = float(m[pos] * WN[i[pos]])
        u = _rng._uniform_int(key, int(idx[pos]), 1)
        lo, hi = FN[layer[pos]], FN[layer[pos] - 1]
        accepted[pos] = lo + u * (hi - lo) < math.exp(-0.5 * x * x)
    return {
        "tail": idx[slow & (layer == 0)],
        "wedge accepted": idx[wedge & accepted],
        "wedge rejected": idx[wedge & ~accepted],
        "top layer": idx[slow & (layer == 1)],
    }


@pytest.mark.parametrize("key", [stream_key(3, 1), 2**64 - 1])
def test_every_slow_path_is_compared(key):
    # force the rare paths: tail beyond R, wedge accepted, wedge rejected (a fresh candidate
    # from a further counter), the top layer; odd and even indices, near 2^64 too
    idx = np.concatenate([span(0, 2**20), span(2**64 - 2**16, 2**16)])
    paths = _classify(key, idx)
    for name, sel in paths.items():
        assert sel.size >= 3, name
        ref = normal_reference(key, sel)
        np.testing.assert_array_equal(_at(np.uint64(key), sel), ref, err_msg=name)
        # and through the block form, at an odd and an even offset inside a block
        for before in (0, 1):
            for j in sel[:20]:
                base = (int(j) - before) % 2**64
                got = filled(key, base, before + 2)[before]
                np.testing.assert_array_equal(got, ref[sel == j][0])
    assert np.all(np.abs(normal_reference(key, paths["tail"])) > _R)


def test_slow_path_is_rare():
    # 1024 layers: about 0.43 % of draws leave the fast path
    rate = np.mean(1.0 - KN[0::2] / _rng._GRID)
    assert 0.004 < rate < 0.0045


def test_tables_are_a_ziggurat():
    x = np.abs(WN[0::2]) * _rng._GRID  # x[0] is the base strip's pseudo-width V / f(R)
    assert x[-1] == pytest.approx(_R, rel=1e-15)
    f = np.exp(-0.5 * x**2)
    # every rectangle l >= 2 has area V: x_l * (f(x_{l-1}) - f(x_l))
    np.testing.assert_allclose(x[2:] * (f[1:-1] - f[2:]), _V, rtol=1e-11)
    assert x[1] * (1.0 - f[1]) == pytest.approx(_V, rel=1e-11)  # the top layer closes
    assert x[0] * f[-1] == pytest.approx(_V, rel=1e-14)  # base strip + tail
    np.testing.assert_allclose(FN[1:], f[1:], rtol=1e-15)
    # fast accepts lie under the next layer up: m / 2^22 < x_{l-1} / x_l
    assert np.all(KN[4::2] <= x[1:-1] / x[2:] * _rng._GRID)
    assert KN[2] == 0
    # the base layer's fast path stops exactly at R (as computed)
    k0 = int(KN[0])
    assert (k0 - 1) * WN[0] < _R <= k0 * WN[0]
    np.testing.assert_array_equal(KN[0::2], KN[1::2])
    np.testing.assert_array_equal(WN[0::2], -WN[1::2])


N_BIG = 2**21  # > 2e6 draws


@pytest.fixture(scope="module")
def big():
    return draws(stream_key(2024, 1), 0, N_BIG)


def test_draws_are_standard_normal(big):
    z = big
    se = 1 / np.sqrt(z.size)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 4 * se
    assert abs(z.var() - 1.0) < 4 * np.sqrt(2) * se
    assert abs(stats.skew(z)) < 4 * np.sqrt(6) * se
    assert abs(stats.kurtosis(z)) < 4 * np.sqrt(24) * se


@pytest.mark.parametrize("t", [1.0, 2.0, 3.0, 4.0])
def test_tail_frequencies(big, t):
    p = 2 * stats.norm.sf(t)
    count = np.count_nonzero(np.abs(big) > t)
    # within 4 standard deviations of the binomial count
    assert abs(count - p * big.size) < 4 * np.sqrt(p * big.size) + 1


def test_beyond_the_ziggurat_tail():
    # |z| > R only comes from the slow tail path: its mass and shape (Marsaglia's method)
    z = draws(stream_key(7, 1), 0, 2**23)
    tail = np.abs(z[np.abs(z) > _R])
    p = 2 * stats.norm.sf(_R)
    assert abs(tail.size - p * z.size) < 4 * np.sqrt(p * z.size)
    # conditional law of |z| given |z| > R
    cdf = lambda v: 1.0 - stats.norm.sf(v) / stats.norm.sf(_R)  # noqa: E731
    assert stats.kstest(tail, cdf).pvalue > 1e-3


def test_the_two_draws_of_a_hash_are_independent(big):
    a, b = big[0::2], big[1::2]
    se = 1 / np.sqrt(a.size)
    assert abs(np.corrcoef(a, b)[0, 1]) < 4 * se
    assert abs(np.corrcoef(a**2, b**2)[0, 1]) < 4 * se
    assert abs(np.corrcoef(np.abs(a) > 2, np.abs(b) > 2)[0, 1]) < 4 * se


def test_different_keys_give_different_streams():
    a = draws(stream_key(1, 1), 0, 200_000)
    b = draws(stream_key(1, 2), 0, 200_000)
    c = draws(stream_key(2, 1), 0, 200_000)
    for u, v in ((a, b), (a, c), (b, c)):
        assert not np.array_equal(u, v)
        assert abs(np.corrcoef(u, v)[0, 1]) < 0.02
    # neighbouring indices of one stream are uncorrelated too
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 0.02


def test_same_key_and_index_same_draw():
    assert np.array_equal(draws(99, 500, 100), draws(99, 500, 100))
    np.testing.assert_array_equal(draws(99, 550, 10), draws(99, 500, 100)[50:60])


def test_stream_keys_are_distinct_64_bit_integers():
    keys = {stream_key(seed, stream) for seed in range(50) for stream in range(1, 4)}
    assert len(keys) == 150
    assert all(0 <= k < 2**64 for k in keys)
    assert stream_key(3, 1) == stream_key(3, 1)

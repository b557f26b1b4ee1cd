"""Counter-based normal draws: Numba == NumPy twin bit for bit, N(0, 1), independent streams."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit, uint64
from scipy import stats

from cimsim.arrays._rng import _R, FN, KN, WN, normal, normal_reference, stream_key


@njit(cache=True)
def _draws(key, start, n, kn, wn, fn):  # pragma: no cover - compiled
    out = np.empty(n)
    for i in range(n):
        out[i] = normal(key, start + uint64(i), kn, wn, fn)
    return out


def draws(key: int, start: int, n: int) -> np.ndarray:
    """Draws ``start .. start + n - 1`` of stream ``key`` from the Numba generator."""
    return _draws(np.uint64(key), np.uint64(start), n, KN, WN, FN)


KEYS = [0, 1, stream_key(0, 1), stream_key(123, 2), stream_key(-5, 1), 2**64 - 1]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("start", [0, 10**12, 2**64 - 5000], ids=["0", "1e12", "wrap"])
def test_numba_equals_reference_bitwise(key, start):
    n = 10_000
    got = draws(key, start, n)
    idx = (np.arange(n, dtype=np.uint64) + np.uint64(start))  # wraps past 2^64 like the kernel
    ref = normal_reference(key, idx)
    np.testing.assert_array_equal(got, ref)
    assert np.all(np.isfinite(got))


def test_reference_accepts_any_index_shape():
    idx = np.arange(24, dtype=np.uint64).reshape(2, 3, 4)
    out = normal_reference(7, idx)
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out.ravel(), normal_reference(7, idx.ravel()))


def test_both_paths_of_the_ziggurat_are_compared():
    # the tail (|z| > R) and wedge rejections take the slow path; make sure they were hit
    z = np.concatenate([draws(k, 0, 10_000) for k in KEYS])
    assert np.count_nonzero(np.abs(z) > _R) >= 3
    ref = np.concatenate([normal_reference(k, np.arange(10_000, dtype=np.uint64)) for k in KEYS])
    np.testing.assert_array_equal(z, ref)


def test_draws_are_standard_normal():
    z = draws(stream_key(2024, 1), 0, 200_000)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert z.std() == pytest.approx(1.0, abs=0.01)
    tail = np.mean(np.abs(z) > 3.0)
    assert tail == pytest.approx(2 * stats.norm.sf(3.0), rel=0.15)


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

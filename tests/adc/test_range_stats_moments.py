"""The mean/std sums of a calibration do not depend on how it is cut into chunks: each input
plane's rows are added one after another (``accumulate_moments``, with its NumPy twin)."""

from __future__ import annotations

import numpy as np
import pytest

import cimsim
from cimsim.adc._kernels import accumulate_moments
from cimsim.adc._reference import accumulate_moments_reference
from cimsim.adc.linear import RangeStats


def test_accumulate_moments_equals_its_numpy_twin_bit_for_bit():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(257, 13)) * 10.0 ** rng.integers(-3, 4, size=(257, 13))
    stream = rng.integers(0, 4, 257)
    out = [np.zeros((4, 13)) for _ in range(4)]
    accumulate_moments(a, stream, out[0], out[1])
    accumulate_moments_reference(a, stream, out[2], out[3])
    assert np.array_equal(out[0], out[2]) and np.array_equal(out[1], out[3])


@pytest.mark.parametrize("cuts", [[1], [7], [3, 50, 51], [64]])
def test_range_stats_sums_do_not_depend_on_the_chunks(cuts):
    """Rows added chunk by chunk, each chunk holding every plane's rows of its vectors (as
    engine.calibration_stats adds them), give the sums of one chunk of all, bit for bit."""
    rng = np.random.default_rng(0)
    planes, n, c = 3, 100, 5
    values = rng.normal(size=(planes, n, c)) * 1e3 + 0.1
    whole = RangeStats(1, c, keep_samples=False, n_vectors=n)
    whole.add(0, values.reshape(-1, c),
              (np.arange(planes)[:, None] * n + np.arange(n)[None, :]).ravel())
    cut = RangeStats(1, c, keep_samples=False, n_vectors=n)
    bounds = [0, *(b for b in cuts if b < n), n]
    for m0, m1 in zip(bounds[:-1], bounds[1:], strict=True):
        part = values[:, m0:m1]
        cut.add(0, part.reshape(-1, c),
                (np.arange(planes)[:, None] * n + np.arange(m0, m1)[None, :]).ravel())
    assert np.array_equal(whole.s1, cut.s1) and np.array_equal(whole.s2, cut.s2)
    assert whole.n == cut.n == planes * n
    assert np.allclose(whole.s1, values.sum(axis=(0, 1)), rtol=1e-12)
    assert np.allclose(whole.s2, np.square(values).sum(axis=(0, 1)), rtol=1e-12)


@pytest.mark.parametrize("granularity", ["column", "array"])
def test_mean_std_ranges_do_not_depend_on_chunk_vectors_on_several_row_groups(granularity):
    """rram-22nm with mean/std ranges (programming variation: non-integer analog values, whose
    chunk sums rounded with the cut), 300 rows (two row groups), 8 input planes."""
    c = cimsim.load_chip("rram-22nm")
    c = c.replace(adc=c.adc.replace(calibration_stat="mean_std",
                                    calibration_granularity=granularity))
    rng = np.random.default_rng(1)
    w = rng.integers(-127, 128, (6, 300))
    cal = rng.integers(0, 256, (90, 300))
    x = rng.integers(0, 256, (5, 300))
    y, ev = cimsim.matmul(x, w, c, seed=2, calibration=cal)
    for chunk in (1, 7, 64):
        y_c, ev_c = cimsim.matmul(x, w, c, seed=2, calibration=cal, chunk_vectors=chunk)
        assert np.array_equal(y, y_c), chunk
        assert ev == ev_c


def test_range_stats_refuses_values_of_another_width_before_the_compiled_sums():
    """The compiled sums index by column: a block wider than the conversions wrote past the
    arrays (a NumPy sum refused it by broadcasting before)."""
    stats = RangeStats(1, 3, keep_samples=False, n_vectors=4)
    for bad in (np.ones((2, 4)), np.ones(3)):
        with pytest.raises(ValueError, match=r"allowed: \(rows, 3\)"):
            stats.add(0, bad)
    with pytest.raises(ValueError, match="one place >= 0 per row"):
        stats.add(0, np.ones((2, 3)), np.array([0]))

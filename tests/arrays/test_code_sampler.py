"""The exact ADC-code sampler (``_rng.code_offset_slow`` and the kernel's fast path): its codes
follow the distribution of Gaussian-then-quantize, by chi-square over many positions within
a step, noise sizes and seeds; the kernel equals its NumPy twin and does not depend on the
thread count; the engine uses it exactly where it applies."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from cimsim import engine
from cimsim.arrays._rng import QZ, code_offsets_reference, stream_key
from cimsim.arrays.program import program
from cimsim.errors import ConfigError
from tests.conftest import ideal_chip


@pytest.fixture(autouse=True)
def _exact_sampler(monkeypatch):
    # the engine draws codes exactly only when asked (engine.NOISE_SAMPLER_ENV)
    monkeypatch.setenv(engine.NOISE_SAMPLER_ENV, "exact")


def _exact_pmf(u: float, s: float, k: np.ndarray) -> np.ndarray:
    """P(floor(u + s·z) = k), z standard normal."""
    return stats.norm.cdf((k + 1 - u) / s) - stats.norm.cdf((k - u) / s)


def _chi2_pvalue(codes: np.ndarray, u: float, s: float) -> float | None:
    """Chi-square of the codes against the exact pmf, tails pooled so every bin expects >= 5."""
    n = codes.size
    k_lo, k_hi = math.floor(u - 8 * s) - 1, math.floor(u + 8 * s) + 1
    ks = np.arange(k_lo, k_hi + 1)
    expected = _exact_pmf(u, s, ks) * n
    observed = np.array([(codes == k).sum() for k in ks], dtype=float)
    assert observed.sum() == n  # nothing beyond 8 sigma
    # pool bins from both ends inwards until each expects at least 5
    bins_o, bins_e, acc_o, acc_e = [], [], 0.0, 0.0
    for o, e in zip(observed, expected, strict=True):
        acc_o, acc_e = acc_o + o, acc_e + e
        if acc_e >= 5:
            bins_o.append(acc_o)
            bins_e.append(acc_e)
            acc_o = acc_e = 0.0
    bins_o[-1] += acc_o
    bins_e[-1] += acc_e
    if len(bins_o) < 2:
        assert np.count_nonzero(observed) <= 2  # (a code of probability < 5/n may show up)
        return None  # one likely code: nothing to test
    e = np.array(bins_e)
    e *= n / e.sum()
    return float(stats.chisquare(bins_o, e).pvalue)


# positions within a step (0, just above an integer, half-way, just below the next) and noise
# from far below a step to the largest the engine uses; three seeds each
POSITIONS = [0.0, 1e-9, 0.13, 0.5, 0.77, 1.0 - 1e-9, 7.31, -3.62]
STEPS = [0.02, 0.15, 0.5, 1.0, 2.7, 4.0]


@pytest.mark.parametrize("s", STEPS)
def test_codes_follow_gaussian_then_quantize_chi_square(s):
    n = 20_000
    pvalues = []
    for seed in range(3):
        key = stream_key(seed, 1)
        for j, u in enumerate(POSITIONS):
            idx = np.arange(n, dtype=np.uint64) + np.uint64(j * n)
            codes = code_offsets_reference(key, idx, np.full(n, u), np.full(n, s))
            pv = _chi2_pvalue(codes, u, s)
            if pv is not None:
                pvalues.append(pv)
    assert len(pvalues) >= 6
    # up to 24 tests per sigma: a correct sampler fails one at 1e-4 with probability ~2e-3
    assert min(pvalues) > 1e-4, pvalues
    # and the p-values themselves look uniform (a biased sampler shifts them all down)
    if len(pvalues) >= 12:
        assert stats.kstest(pvalues, "uniform").pvalue > 1e-3


def test_codes_match_a_gaussian_then_quantize_sample():
    # two-sample check against the plain method with NumPy's own normals
    rng = np.random.default_rng(0)
    n, s = 200_000, 0.6
    u = rng.random(n) * 20 - 10  # positions everywhere
    ours = code_offsets_reference(stream_key(9, 1), np.arange(n, dtype=np.uint64), u,
                                  np.full(n, s))
    theirs = np.floor(u + s * rng.standard_normal(n)).astype(np.int64)
    err_ours, err_theirs = ours - np.floor(u), theirs - np.floor(u)
    ks = np.arange(-5, 6)
    table = np.array([[(err_ours == k).sum() for k in ks], [(err_theirs == k).sum() for k in ks]])
    table = table[:, table.sum(axis=0) >= 10]
    assert stats.chi2_contingency(table).pvalue > 1e-4
    # the error's mean and variance given uniform positions: 0 and s^2 + 1/12 (Sheppard)
    frac_err = ours - u + 0.5  # floor(u + s z) - u + 1/2 = s z - frac-part error
    assert abs(frac_err.mean()) < 5 * math.sqrt((s**2 + 1 / 12) / n)
    assert frac_err.var() == pytest.approx(s**2 + 1 / 12, rel=0.02)


def test_table_edges_are_the_normal_quantiles():
    assert QZ.shape == (4097,) and QZ[0] == -np.inf and QZ[-1] == np.inf
    np.testing.assert_allclose(QZ[1:-1], stats.norm.ppf(np.arange(1, 4096) / 4096), rtol=1e-12,
                               atol=1e-14)
    assert np.all(np.diff(QZ) > 0)


def test_end_cells_and_huge_positions_clamp_exactly():
    # the unbounded end cells take the slow path; positions far outside the ADC stay outside
    n = 50_000
    idx = np.arange(n, dtype=np.uint64)
    codes = code_offsets_reference(stream_key(3, 1), idx, np.full(n, 2.0**50), np.full(n, 1.0))
    assert np.all(codes >= 2**50 - 10)
    codes = code_offsets_reference(stream_key(3, 1), idx, np.full(n, 0.5), np.full(n, 0.3))
    # about 2/4096 of the draws are in the end cells: |z| > 3.49, offsets within 8 sigma
    assert codes.min() >= -3 and codes.max() <= 3


def _noisy_layer(sigma=0.7, cmp=0.0, read_noise_rel=0.0):
    chip = ideal_chip(n_rows=64, n_cols=32, rows_per_conversion=32, noise=dict(
        thermal_sigma_lsb=sigma, read_noise_rel=read_noise_rel))
    chip = chip.replace(adc=chip.adc.replace(bits=5, range_policy="calibrated",
                                             calibration_granularity="column",
                                             comparator_noise_lsb=cmp))
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (24, 100))
    x = rng.integers(0, 256, (40, 100))
    layer = engine.calibrate(program(w, chip, np.random.default_rng(1)), x)
    return layer, x


def test_engine_uses_the_sampler_where_it_applies(monkeypatch):
    layer, _ = _noisy_layer(cmp=0.2)
    steps = engine.exact_noise_steps(layer, 0)
    d = layer.adc.delta[0]
    np.testing.assert_allclose(steps, np.sqrt((0.7 / d) ** 2 + 0.2**2))
    noisy_reads, _ = _noisy_layer(read_noise_rel=0.02)
    assert engine.exact_noise_steps(noisy_reads, 0).shape == (0,)  # per-output variance
    quiet, _ = _noisy_layer(sigma=0.0)
    assert engine.exact_noise_steps(quiet, 0).shape == (0,)
    loud, _ = _noisy_layer(sigma=1e4)
    assert engine.exact_noise_steps(loud, 0).shape == (0,)  # beyond EXACT_MAX_STEPS
    monkeypatch.setenv(engine.NOISE_SAMPLER_ENV, "gaussian")
    assert engine.exact_noise_steps(layer, 0).shape == (0,)
    monkeypatch.setenv(engine.NOISE_SAMPLER_ENV, "fast")
    with pytest.raises(ConfigError, match="CIMSIM_NOISE_SAMPLER"):
        engine.exact_noise_steps(layer, 0)


def test_engine_noise_statistics_match_the_model():
    # one conversion per output, lossless ADC, repeated input: the error is Gaussian-then-
    # quantize of thermal noise, exactly as the model says
    chip = ideal_chip(weight_bits=3, bits_per_cell=2, input_bits=4, dac_bits=None,
                      noise=dict(thermal_sigma_lsb=0.45))
    rng = np.random.default_rng(2)
    w = rng.integers(-3, 4, (4, 16))
    x1 = rng.integers(0, 16, (1, 16))
    layer = program(w, chip)
    assert engine.exact_noise_steps(layer, 0).shape == (layer.n_conversions,)
    y, _ = engine.run(layer, np.repeat(x1, 20_000, axis=0), noise_seed=4)
    exact = (x1 @ w.T).ravel()
    for n in range(4):
        err = np.round(y[:, n] - exact[n]).astype(np.int64)  # integer partial sums: u = int
        pv = _chi2_pvalue(err, 0.5, 0.45)
        assert pv is not None and pv > 1e-4


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
def test_exact_sampler_counts_clips_beyond_the_top_code_only(kernel):
    """A conversion whose drawn code is the top code is in range; only one beyond it (or
    below 0) clipped. Guards the exact sampler's clip count (the kernel's fast path, its slow
    path for undecided draws, and the NumPy twin) against counting the top code itself,
    ``k >= top`` for ``k > top``."""
    def layer(bits, hi):  # one conversion, step 1, 0.3 step of thermal noise
        chip = ideal_chip(weight_bits=3, bits_per_cell=2, input_bits=4, dac_bits=None,
                          noise=dict(thermal_sigma_lsb=0.3),
                          adc=dict(bits=bits, range_policy="fixed", fixed_lo=0.0, fixed_hi=hi))
        out = program(np.ones((1, 16), dtype=np.int64), chip)
        assert out.adc.delta[0, 0] == 1.0
        np.testing.assert_allclose(engine.exact_noise_steps(out, 0), [0.3])
        return out

    n = 40_000  # (~1 draw in 4096 per boundary is undecided and takes the slow path)
    x = np.zeros((n, 16), dtype=np.int64)
    x[:, :15] = 1  # partial sum 15: the top code of 4 b on [0, 15]
    r4 = engine.run_detailed(layer(4, 15.0), x, noise_seed=1, kernel=kernel)
    # the same draws (same position, seed and index) on 5 b over [0, 31] show the codes above
    # 15 without clipping them: exactly those clipped on 4 b
    r5 = engine.run_detailed(layer(5, 31.0), x, noise_seed=1, kernel=kernel)
    assert r5.n_clipped == 0
    assert r4.n_clipped == np.count_nonzero(r5.y > 15.0)
    p = stats.norm.sf(0.5 / 0.3)  # clipped iff the noise passes +0.5 step
    assert abs(r4.n_clipped - n * p) < 6 * math.sqrt(n * p * (1 - p))  # ~1912 ± 43
    assert np.all(r4.y <= 15.0)
    x[:, 7:] = 0  # partial sum 7: mid-range, 0.3 step of noise never reaches either end
    assert engine.run_detailed(layer(4, 15.0), x, noise_seed=1, kernel=kernel).n_clipped == 0


def test_exact_sampler_noise_scales_with_the_adc_gain(monkeypatch):
    """Thermal noise is added before the ADC's gain, so it reaches the codes as
    thermal·(1 + gain_error) steps (comparator noise, after the gain, does not scale). Guards
    ``exact_noise_steps`` against dropping the gain, which drew codes with less noise than
    the Gaussian path on a chip with a gain error."""
    chip = ideal_chip(weight_bits=3, bits_per_cell=2, input_bits=4, dac_bits=None,
                      noise=dict(thermal_sigma_lsb=0.45),
                      adc=dict(gain_error=0.2, comparator_noise_lsb=0.1))
    rng = np.random.default_rng(2)
    w = rng.integers(-3, 4, (4, 16))
    x1 = rng.integers(0, 16, (1, 16))
    layer = program(w, chip)
    d = layer.adc.delta[0]
    np.testing.assert_allclose(engine.exact_noise_steps(layer, 0),
                               np.sqrt((0.45 * 1.2 / d) ** 2 + 0.1**2), rtol=1e-12)
    x = np.repeat(x1, 20_000, axis=0)
    exact = 1.2 * (x1 @ w.T).ravel()
    y_exact, _ = engine.run(layer, x, noise_seed=4)
    monkeypatch.setenv(engine.NOISE_SAMPLER_ENV, "gaussian")
    y_gauss, _ = engine.run(layer, x, noise_seed=4)
    # the two samplers' error spread per output, ~0.62 LSB each, agree to ~1 % (the
    # estimates' standard error is ~0.5 %; without the gain the exact one is ~0.54)
    np.testing.assert_allclose((y_exact - exact).std(axis=0), (y_gauss - exact).std(axis=0),
                               rtol=0.04)


_THREADS_SCRIPT = """
import sys, numba, numpy as np
sys.path.insert(0, {root!r})
from tests.arrays.test_code_sampler import _noisy_layer
from cimsim import engine
layer, x = _noisy_layer(cmp=0.1)
y, _ = engine.run(layer, x, noise_seed=11, chunk_vectors=7)
np.save({out!r}, y)
"""


def test_same_seed_same_codes_with_one_and_two_threads(tmp_path):
    root = str(__import__("pathlib").Path(__file__).resolve().parents[2])
    outs = []
    for threads in (1, 2):
        out = tmp_path / f"y{threads}.npy"
        env = dict(__import__("os").environ, NUMBA_NUM_THREADS=str(threads),
                   CIMSIM_NOISE_SAMPLER="exact")
        subprocess.run([sys.executable, "-c", _THREADS_SCRIPT.format(root=root, out=str(out))],
                       check=True, env=env, timeout=600)
        outs.append(np.load(out))
    np.testing.assert_array_equal(outs[0], outs[1])
    layer, x = _noisy_layer(cmp=0.1)
    y, _ = engine.run(layer, x, noise_seed=11)  # this process, another chunking
    np.testing.assert_array_equal(y, outs[0])
    y_twin, _ = engine.run(layer, x, noise_seed=11, kernel="numpy")
    np.testing.assert_allclose(y_twin, y, rtol=1e-12, atol=1e-9)

"""Training noise of the twin (issue 10, item 1): thermal and per-cell read noise with the
chip's sigma, held to the engine's own draws by their moments and a two-sample KS test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from cimsim import engine
from cimsim.train.twin import TwinMatmul, input_planes, read_noise_weights
from tests.conftest import ideal_chip

N_SAMPLES = 4000


def _noisy_chip(encoding: str, readout: str = "analog"):
    # a fine fixed ADC grid (Δ ≈ 0.02 cell-LSB) so that the noise is seen almost unquantized
    return ideal_chip(encoding=encoding, differential_readout=readout, bits_per_cell=2,
                      weight_bits=5, input_bits=4, dac_bits=2, n_rows=8,
                      on_off_ratio=20.0,
                      adc=dict(bits=14, range_policy="fixed", fixed_lo=-180.0, fixed_hi=180.0),
                      noise=dict(thermal_sigma_lsb=0.7, read_noise_rel=0.15))


def _noise_samples(chip, seed: int = 0):
    """(twin, engine) noise of every output: noisy minus noise-free results, (M, N) each."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(3, 13, generator=gen, dtype=torch.float64)
    x_cal = torch.rand(16, 13, generator=gen, dtype=torch.float64)
    twin = TwinMatmul.calibrated(w, None, chip, x_cal)
    x_int = twin.quantize_input(x_cal[:1]).repeat(N_SAMPLES, 1)  # one input, many draws
    clean = twin.eval().integer_forward(x_int)[0].numpy()
    torch.manual_seed(seed)
    noisy = twin.train().integer_forward(x_int)[0].numpy()
    (layer,) = twin.programmed()
    y_engine = engine.run(layer, x_int.numpy().astype(np.int64), noise_seed=seed + 1)[0]
    return noisy - clean, y_engine - clean, twin, x_int


@pytest.mark.parametrize(("encoding", "readout"), [("differential", "analog"),
                                                   ("differential", "digital"),
                                                   ("offset", "analog"),
                                                   ("signed_cell", "analog")])
def test_twin_noise_has_the_engines_moments_and_distribution(encoding, readout):
    d_twin, d_engine, _, _ = _noise_samples(_noisy_chip(encoding, readout))
    for n in range(d_twin.shape[1]):
        a, b = d_twin[:, n], d_engine[:, n]
        assert b.std() > 1.0, "the engine's draws show no noise: the test shows nothing"
        se = b.std() / np.sqrt(N_SAMPLES)
        assert abs(a.mean()) < 5 * se and abs(b.mean()) < 5 * se
        # the variance of a sample variance is ~2σ⁴/n: 4000 draws hold it to ±~9 % (4 SE)
        assert 0.88 < a.var() / b.var() < 1.12, (a.var(), b.var())
        assert stats.ks_2samp(a, b).pvalue > 1e-3


def test_twin_noise_variance_is_the_chips_sigma():
    # analytic variance of one output: Σ_{g,p,c} (sig_p·coef_c)² (σ_th² + Σ_k x_p² (rel·G)²)
    chip = _noisy_chip("differential")
    d_twin, _, twin, x_int = _noise_samples(chip, seed=3)
    x = x_int[:1]
    planes = input_planes(x, chip, twin.input_signed)[:, 0]  # (P, K)
    var_w = read_noise_weights(twin.quantized_weight(), chip)  # (Qc, N, K)
    coef = twin._coef.view(twin.n_outputs, twin.n_kinds).t()  # (Qc, N)
    total = torch.zeros(twin.n_outputs, dtype=torch.float64)
    for k0, k1 in [(0, 8), (8, 13)]:  # the two row groups of 8 rows
        for p in range(planes.shape[0]):
            v = (planes[p, k0:k1] ** 2 * var_w[:, :, k0:k1]).sum(-1) + 0.7**2  # (Qc, N)
            total += ((twin._sig[p] * coef) ** 2 * v).sum(0)
    np.testing.assert_allclose(d_twin.var(axis=0), total.numpy(), rtol=0.12)

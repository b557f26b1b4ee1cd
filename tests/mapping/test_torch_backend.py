"""``cimsim.deploy(..., backend="torch", device=...)`` (issue 14, item 4): the programmed parts
run by torch compute what the Numba engine computes (noise-free), count the same events and
clipped conversions, and draw noise of the same distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import cimsim
from cimsim.errors import ConfigError
from tests.conftest import ideal_chip


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 25, 5))


def _chip(kind: str, **noise):
    if kind == "ideal":
        return ideal_chip(n_rows=16, n_cols=32)
    adc = dict(bits=5, range_policy="calibrated", calibration_granularity="column",
               gain_error=0.01, offset_error_lsb=0.1)
    if kind == "ramp":
        adc.update(kind="ramp", level_fit="kmeans")
    chip = ideal_chip(encoding="differential", bits_per_cell=2, input_bits=6, weight_bits=6,
                      n_rows=16, n_cols=32, rows_per_conversion=8, on_off_ratio=20.0,
                      variation="lognormal", variation_sigma=0.1, p_stuck_on=0.01,
                      p_stuck_off=0.01, adc=adc, noise=noise)
    if kind == "column":
        chip = chip.replace(quant=chip.quant.replace(weight_granularity="column"))
    if kind == "slices":  # analog slice read-out: the weighting network's events too
        chip = chip.replace(array=chip.array.replace(slice_readout="analog"))
    return chip


def _pair(chip):
    x = torch.randn(24, 2, 5, 5)
    numba = cimsim.deploy(_model(), chip, x, seed=2)
    torch_sim = cimsim.deploy(_model(), chip, x, seed=2, backend="torch", device="cpu")
    return numba, torch_sim, x


@pytest.mark.parametrize("kind", ["ideal", "linear", "ramp", "column", "slices"])
def test_torch_backend_equals_the_engine_noise_free(kind):
    numba, sim, x = _pair(_chip(kind))
    assert sim.backend == "torch"
    y1, y2 = numba(x).numpy(), sim(x).numpy()
    if kind == "ideal":
        np.testing.assert_array_equal(y2, y1)
    else:
        assert np.isclose(y2, y1, rtol=1e-6, atol=1e-6).mean() >= 0.99
    for w1, w2 in zip(numba.works(), sim.works(), strict=True):
        assert set(w1.events) == set(w2.events)
        for key, value in w1.events.items():
            assert w2.events[key] == pytest.approx(value, rel=1e-12), key
        assert abs(w1.n_adc_clipped - w2.n_adc_clipped) <= 0.01 * max(w1.n_adc_clipped, 10)
    r1, r2 = numba.report(), sim.report()
    for key in ("energy_pj_per_inference", "latency_ns_per_inference", "area_mm2"):
        assert r2.totals[key] == pytest.approx(r1.totals[key], rel=1e-9), key


def test_torch_backend_noise_has_the_engine_distribution():
    chip = _chip("linear", thermal_sigma_lsb=0.8, read_noise_rel=0.05)
    numba, sim, x = _pair(chip)
    xs = x[:1].repeat(600, 1, 1, 1)
    a, b = numba(xs)[:, 0].numpy(), sim(xs)[:, 0].numpy()
    assert a.std() > 0
    assert stats.ks_2samp(a, b).pvalue > 1e-3
    assert abs(b.std() / a.std() - 1) < 0.15


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(backend="jax"), "backend = 'jax' is invalid; allowed: 'numba', 'torch'"),
    (dict(device="cuda:0"), "needs backend = 'torch'"),
    (dict(backend="torch", device="tpu"), "device = 'tpu' is not a torch device"),
])
def test_bad_backend_or_device_is_refused_before_the_work(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        cimsim.deploy(_model(), _chip("linear"), torch.randn(4, 2, 5, 5), **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_backend_on_cuda_equals_the_engine():
    numba, _, x = _pair(_chip("linear"))
    sim = cimsim.deploy(_model(), _chip("linear"), x, seed=2, backend="torch", device="cuda")
    assert all(c.torch_core.w_int.is_cuda for layer in sim.sim_layers.values()
               for c in layer.cores)
    assert np.isclose(sim(x).numpy(), numba(x).numpy(), rtol=1e-6, atol=1e-6).mean() >= 0.99
    assert sim.report().totals["energy_pj_per_inference"] == pytest.approx(
        numba.report().totals["energy_pj_per_inference"], rel=1e-9)

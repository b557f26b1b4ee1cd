"""The twin trains for a chip whose devices age (drift, retention, drift compensation, 1/f read
noise: ``device.ages``): it computes with the cells seen ``t_inference_s`` after programming,
drawn as ``cimsim.deploy`` draws them, so that the eval twin is the chip deployed at that time
(``deploy(t_inference_s=...)``), before and after training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.errors import ConfigError
from cimsim.train import prepare
from tests.conftest import ENCODINGS, ideal_chip

DAY, YEAR = 86400.0, 3.15e7


def _chip(encoding: str = "differential", comp: str = "global", variation: str = "gaussian",
          retention: float = 0.0, slices: str = "digital", granularity: str = "channel"):
    chip = ideal_chip(encoding=encoding, bits_per_cell=2, input_bits=4, weight_bits=5,
                      n_rows=12, n_cols=32, rows_per_conversion=6, variation=variation,
                      variation_sigma=0.1 if variation != "none" else 0.0,
                      on_off_ratio=30.0 if encoding != "signed_cell" else float("inf"),
                      device=dict(drift_t0_s=1.0, drift_nu_mean=[0.1, 0.05, 0.05, 0.05],
                                  drift_nu_sigma=[0.04, 0.01, 0.01, 0.01],
                                  retention_sigma_lsb=retention, drift_compensation=comp),
                      adc=dict(bits=6, range_policy="calibrated",
                               calibration_granularity="column"))
    chip = chip.replace(array=chip.array.replace(slice_readout=slices))
    return chip.replace(quant=chip.quant.replace(weight_granularity=granularity))


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 7), nn.ReLU(), nn.Linear(7, 3)).double()


def _agree(prep, x, t=None):
    """Share of outputs where the eval twin equals the chip deployed at the twin's time."""
    y_twin = prep.eval()(x).detach().numpy()
    sim = prep.deploy()
    if t is not None:
        assert sim.t_s == t
    return np.isclose(sim(x).numpy(), y_twin, rtol=1e-9, atol=1e-9).mean()


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("comp", ["none", "global", "column"])
def test_eval_twin_is_the_chip_deployed_at_that_time(encoding, comp):
    chip = _chip(encoding, comp)
    x = torch.randn(64, 20, dtype=torch.float64)
    for t in (None, DAY, YEAR):
        prep = prepare(_model(), chip, x, seed=3, t_inference_s=t)
        assert _agree(prep, x, t) >= 0.99
    # the time matters: the twin a year on computes something else than at t0
    fresh = prepare(_model(), chip, x, seed=3).eval()(x)
    later = prepare(_model(), chip, x, seed=3, t_inference_s=YEAR).eval()(x)
    assert not torch.allclose(fresh, later)


@pytest.mark.parametrize("variation,retention,slices,granularity", [
    ("none", 0.0, "digital", "channel"),      # an ideal cell that drifts
    ("lognormal", 0.3, "digital", "channel"),  # retention on top of drift
    ("gaussian", 0.0, "analog", "channel"),   # slices weighted in analog: weighted reads
    ("gaussian", 0.2, "digital", "column"),   # two parts (row tiles), a gain each
])
def test_aged_twin_across_devices_read_outs_and_parts(variation, retention, slices,
                                                      granularity):
    chip = _chip("offset", "column", variation, retention, slices, granularity)
    x = torch.randn(64, 20, dtype=torch.float64)
    prep = prepare(_model(), chip, x, seed=5, t_inference_s=YEAR)
    assert _agree(prep, x, YEAR) >= 0.99


def test_training_at_a_time_keeps_the_twin_the_deployed_chip():
    chip = _chip("differential", "global", retention=0.2)
    x = torch.randn(64, 20, dtype=torch.float64)
    prep = prepare(_model(), chip, x, seed=2, t_inference_s=DAY)
    opt = torch.optim.Adam(prep.parameters(), lr=3e-3)
    target = torch.randint(0, 3, (64,))
    prep.train()
    for _ in range(4):  # the weights move: the same cells now hold other digits
        opt.zero_grad()
        F.cross_entropy(prep(x), target).backward()
        opt.step()
    assert _agree(prep, x, DAY) >= 0.99


def test_sampled_devices_draw_a_fresh_future_in_training():
    chip = _chip("differential", "global", variation="none")  # only the drift is drawn
    x = torch.randn(32, 20, dtype=torch.float64)
    prep = prepare(_model(), chip, x, seed=2, devices="sampled", train_noise=False,
                   t_inference_s=YEAR)
    prep.train()
    assert not torch.equal(prep(x), prep(x))
    assert _agree(prep, x, YEAR) >= 0.99


def test_read_noise_of_the_time_enters_the_training_noise():
    # 1/f read noise only (no thermal noise): the training forward is noisy, the eval one not,
    # and a year's noise is larger than a second's (the variance grows as ln t)
    chip = _chip("offset", "none", variation="none")
    chip = chip.replace(device=chip.device.replace(drift_nu_mean=[], drift_nu_sigma=[],
                                                   read_noise_q_s=[0.2, 0.05, 0.05, 0.05]))
    x = torch.randn(256, 20, dtype=torch.float64)

    def spread(t: float) -> float:
        prep = prepare(_model(), chip, x, seed=1, t_inference_s=t)
        clean = prep.eval()(x).detach()
        torch.manual_seed(0)
        noisy = prep.train()(x).detach()
        return float((noisy - clean).std())

    assert 0 < spread(1.0) < spread(YEAR)


def test_bad_time_names_the_option():
    chip = _chip()
    x = torch.randn(8, 20, dtype=torch.float64)
    with pytest.raises(ConfigError, match="t_inference_s"):
        prepare(_model(), chip, x, t_inference_s=-1.0)
    with pytest.raises(ConfigError, match="t_inference_s.*drift_t0_s"):
        prepare(_model(), chip.replace(device=chip.device.replace(drift_t0_s=10.0)), x,
                t_inference_s=2.0)


def test_the_pcm_preset_trains_at_a_time():
    # the bundled PCM preset (drift, 1/f noise, global compensation) was refused before;
    # noise off so that the twin and the deployed chip compare code for code
    chip = cimsim.load_chip("pcm-22nm", overrides=["noise.thermal_sigma_lsb=0",
                                                   "device.read_noise_q_s=[]"])
    x = torch.randn(64, 20, dtype=torch.float64)
    prep = prepare(_model(), chip, x, seed=0, t_inference_s=DAY)
    assert _agree(prep, x, DAY) >= 0.99

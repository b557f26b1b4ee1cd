"""The twin computes with the chip's programmed devices (issue 10): programming variation and
stuck-at faults drawn as ``cimsim.deploy`` draws them, so the eval twin is the deployed chip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cimsim.errors import ConfigError
from cimsim.train import prepare
from tests.conftest import ENCODINGS, ideal_chip


def _chip(encoding: str, readout: str, variation: str, granularity: str = "channel",
          comp: str = "digital"):
    sigma = 0.1 if variation == "lognormal" else 0.3
    chip = ideal_chip(encoding=encoding, differential_readout=readout, bits_per_cell=2,
                      input_bits=4, weight_bits=5, n_rows=12, n_cols=32, rows_per_conversion=6,
                      variation=variation, variation_sigma=sigma, p_stuck_on=0.02,
                      p_stuck_off=0.03, on_off_ratio=30.0, off_current_compensation=comp,
                      adc=dict(bits=6, range_policy="calibrated",
                               calibration_granularity="column"))
    return chip.replace(quant=chip.quant.replace(weight_granularity=granularity))


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 7), nn.ReLU(), nn.Linear(7, 3)).double()


def _agree(prep, x, seed=None):
    y_twin = prep.eval()(x).detach().numpy()
    y_sim = prep.deploy(seed).__call__(x).numpy()
    return np.isclose(y_sim, y_twin, rtol=1e-9, atol=1e-9).mean()


@pytest.mark.parametrize("encoding,readout", [(e, "analog") for e in ENCODINGS]
                         + [("differential", "digital")])
@pytest.mark.parametrize("variation", ["lognormal", "gaussian"])
def test_eval_twin_is_the_deployed_chip_with_variation_and_faults(encoding, readout, variation):
    chip = _chip(encoding, readout, variation)
    x = torch.randn(64, 20, dtype=torch.float64)
    prep = prepare(_model(), chip, x, seed=3)
    assert _agree(prep, x) >= 0.99
    nominal = prepare(_model(), chip, x, seed=3, devices="nominal")
    # the devices matter on this chip: the nominal twin computes something else
    assert _agree(nominal, x) < 0.9


@pytest.mark.parametrize("encoding,readout", [(e, "analog") for e in ENCODINGS]
                         + [("differential", "digital")])
@pytest.mark.parametrize("comp", ["digital", "analog"])
def test_eval_twin_is_the_deployed_chip_with_analog_slice_readout(encoding, readout, comp):
    # the slice columns' programmed conductances weighted into one conversion (float32 in
    # the engine's GEMM column, the twin's dtype here): the same codes
    chip = _chip(encoding, readout, "lognormal", comp=comp)
    chip = chip.replace(array=chip.array.replace(slice_readout="analog"))
    x = torch.randn(64, 20, dtype=torch.float64)
    prep = prepare(_model(), chip, x, seed=3)
    assert _agree(prep, x) >= 0.99


@pytest.mark.parametrize("granularity,comp", [("column", "analog"), ("tensor", "none")])
def test_devices_after_training_across_parts_and_off_current_modes(granularity, comp):
    chip = _chip("offset", "analog", "lognormal", granularity, comp)
    x = torch.randn(64, 20, dtype=torch.float64)
    prep = prepare(_model(), chip, x, seed=5)
    opt = torch.optim.Adam(prep.parameters(), lr=3e-3)
    target = torch.randint(0, 3, (64,))
    for _ in range(4):  # the weights move: the same cells now hold other digits
        opt.zero_grad()
        F.cross_entropy(prep(x), target).backward()
        opt.step()
    assert _agree(prep, x) >= 0.99


def test_sampled_devices_draw_fresh_cells_in_training_and_the_chip_in_eval():
    chip = _chip("differential", "analog", "lognormal")
    x = torch.randn(32, 20, dtype=torch.float64)
    prep = prepare(_model(), chip, x, seed=2, devices="sampled", train_noise=False)
    prep.train()
    y1, y2 = prep(x), prep(x)
    assert not torch.equal(y1, y2)
    assert _agree(prep, x) >= 0.99


def test_bad_devices_option_names_the_field():
    with pytest.raises(ConfigError, match="devices.*'programmed', 'sampled', 'nominal'"):
        prepare(_model(), _chip("offset", "analog", "lognormal"), torch.randn(8, 20).double(),
                devices="typical")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("noisy", [False, True])
def test_a_model_prepared_on_cuda_trains_there_and_deploys_as_the_chip(noisy):
    chip = _chip("differential", "analog", "lognormal")
    if noisy:  # trains with thermal and read noise (torch draws on the GPU)
        chip = chip.replace(noise=chip.noise.replace(thermal_sigma_lsb=0.5, read_noise_rel=0.05))
    x = torch.randn(64, 20, dtype=torch.float64)
    cpu = prepare(_model(), chip, x, seed=3).eval()
    gpu = prepare(_model().cuda(), chip, x.cuda(), seed=3)
    assert all(p.is_cuda for p in gpu.parameters())
    np.testing.assert_allclose(gpu.eval()(x.cuda()).detach().cpu().numpy(),
                               cpu(x).detach().numpy(), rtol=1e-9, atol=1e-9)
    opt = torch.optim.Adam(gpu.parameters(), lr=3e-3)
    target = torch.randint(0, 3, (64,)).cuda()
    gpu.train()
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(gpu(x.cuda()), target).backward()
        opt.step()
    gpu.eval()
    y_twin = gpu(x.cuda()).detach().cpu().numpy()
    # the GPU's state on the CPU twin (fused kernel there, torch ops on the GPU)
    cpu.load_state_dict({k: v.cpu() for k, v in gpu.state_dict().items()})
    np.testing.assert_allclose(cpu(x).detach().numpy(), y_twin, rtol=1e-9, atol=1e-9)
    if not noisy:  # a noisy chip's deployment converts with noise
        y_sim = gpu.deploy()(x).numpy()
        assert np.isclose(y_sim, y_twin, rtol=1e-9, atol=1e-9).mean() >= 0.99

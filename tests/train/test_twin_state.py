"""State a prepared model holds outside its state dict follows what is loaded into it, and a
deployed model shares nothing with the twin it came from (a hunt over the twin's lifecycle,
2026-12-05)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.errors import ConfigError
from cimsim.train import param_groups, prepare
from cimsim.train.twin import recalibrate_adcs


def _mlp(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 6)).eval().to(dtype)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _chip():
    chip = cimsim.load_chip("rram-22nm")
    return chip.replace(noise=chip.noise.replace(thermal_sigma_lsb=0.0),
                        array=chip.array.replace(n_rows=8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_state_dict_with_recalibrated_adcs_restores_the_twin_it_came_from(dtype):
    """A float32 twin loaded with another twin's recalibrated ADC tables kept its own
    prepare's float64 grid (outside the state dict): every output differed from the saved
    twin's (by up to 1.9 on the digits MLP), its fused kernel and torch path disagreed, and its
    deploy followed neither."""
    model = _mlp(dtype)
    torch.manual_seed(1)
    x, y = torch.randn(256, 16, dtype=dtype), torch.randint(0, 6, (256,))
    saved = _quiet(prepare, model, _chip(), x, seed=3)
    opt = torch.optim.Adam(param_groups(saved, 3e-3))
    saved.train()
    for i in range(4):
        opt.zero_grad()
        F.cross_entropy(saved(x[i * 64:(i + 1) * 64]), y[i * 64:(i + 1) * 64]).backward()
        opt.step()
    _quiet(recalibrate_adcs, saved, x)
    saved.eval()
    restored = _quiet(prepare, model, _chip(), x, seed=3)
    restored.load_state_dict(saved.state_dict())
    restored.eval()
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 0, "atol": 0}
    with torch.no_grad():
        want = saved(x)
        torch.testing.assert_close(restored(x), want, **tol)
        for _, twin in restored.twins():
            twin.fused = False  # the torch path
        torch.testing.assert_close(restored(x), want, **tol)
    # (float32: the restored twin's float64 grid is the loaded float32 one, an ulp apart)
    torch.testing.assert_close(_quiet(restored.deploy)(x), _quiet(saved.deploy)(x), **tol)


def test_a_deployed_model_keeps_its_smoothing_when_the_twin_changes():
    """The deployed model's SmoothQuant factors were the twin's array: a state dict loaded
    into the twin later changed every output of a model deployed before."""
    chip = cimsim.load_chip("ideal")
    chip = chip.replace(quant=chip.quant.replace(smooth_alpha=0.5))
    model = _mlp(torch.float64)
    torch.manual_seed(2)
    x = torch.randn(64, 16, dtype=torch.float64)
    first = _quiet(prepare, model, chip, x, seed=3).eval()
    sim = _quiet(first.deploy)
    before = sim(x)
    other = _quiet(prepare, model, chip, x[:16] * 3, seed=3)
    first.load_state_dict(other.state_dict())
    assert torch.equal(sim(x), before)


def test_the_seed_of_prepare_is_not_set_by_hand():
    """``prepared.seed = 9`` re-derived the matrices' seeds but not the devices drawn with
    the old one: the eval twin computed with seed 3's devices while deploy() programmed seed
    9's (every output differed)."""
    twin = _quiet(prepare, _mlp(torch.float64), _chip(), torch.randn(32, 16,
                                                                      dtype=torch.float64),
                  seed=3)
    with pytest.raises(ConfigError, match=r"PreparedModel\.seed is the seed prepare drew"):
        twin.seed = 9
    assert twin.seed == 3
    assert np.isfinite(_quiet(twin.deploy, seed=9)(torch.zeros(2, 16,
                                                               dtype=torch.float64)).numpy()).all()


def test_a_load_that_brings_the_same_values_keeps_the_float64_ones():
    """The first form of the post-load refresh took the float64 values from the buffers
    wherever those were not their rounding: a twin cast to float64 after prepare (float32
    values in float64 buffers) had its grid and scales replaced at a load of its own state,
    or of an empty dict; only the values a load changes follow it."""
    model = _mlp(torch.float32)
    x = torch.randn(64, 16)
    twin = _quiet(prepare, model, _chip(), x, seed=3).double()
    kept = [{k: np.copy(v) if isinstance(v, np.ndarray) else v for k, v in t._init64.items()}
            for _, t in twin.twins()]
    twin.load_state_dict({}, strict=False)
    twin.load_state_dict(twin.state_dict())
    for (_, t), before in zip(twin.twins(), kept, strict=True):
        for key in ("s_w", "s_x", "lo", "delta"):
            assert np.array_equal(t._init64[key], before[key]), key


@pytest.mark.parametrize("other", ["calibration", "seed"])
def test_buffers_copied_in_place_as_ddp_does_bring_the_chip_they_describe(other):
    """DistributedDataParallel copies rank 0's parameters and buffers into every rank in place.
    A rank prepared on its own shard of calibration data (or with its own seed) then held rank
    0's state dict but computed with its own prepare's float64 grid and scales: its outputs
    differed from rank 0's (0.3 % of them equal), DDP averaged gradients of two chips, and
    its deploy followed neither; a load_state_dict after that did not mend it (the buffers
    already held the values). The copied buffers now bring their chip, and their seed."""
    model = _mlp(torch.float32)
    torch.manual_seed(1)
    x = torch.randn(256, 16)
    rank0 = _quiet(prepare, model, _chip(), x[:128], seed=3).eval()
    rank1 = _quiet(prepare, model, _chip(), x[128:] if other == "calibration" else x[:128],
                   seed=3 if other == "calibration" else 8).eval()
    close = {"rtol": 1e-5, "atol": 1e-5}  # rank 1 has rank 0's scales rounded to float32
    with torch.no_grad():
        assert (rank0(x) - rank1(x)).abs().max() > 1e-3
        for a, b in zip(rank1.state_dict().values(), rank0.state_dict().values(), strict=True):
            a.copy_(b)
        torch.testing.assert_close(rank1(x), rank0(x), **close)
    assert rank1.seed == rank0.seed == 3
    assert [t.seed for _, t in rank1.twins()] == [t.seed for _, t in rank0.twins()]
    ref = torch.as_tensor(_quiet(rank0.deploy)(x))
    torch.testing.assert_close(torch.as_tensor(_quiet(rank1.deploy)(x)), ref, **close)


def test_a_cast_twin_keeps_its_float64_values():
    """A twin cast after prepare (``.double()``) is no change of its buffers: its float64
    values stay exact, not the float32 rounding of its buffers."""
    model = _mlp(torch.float32)
    torch.manual_seed(1)
    x = torch.randn(64, 16)
    twin = _quiet(prepare, model, _chip(), x, seed=3).eval()
    before = {name: {k: np.copy(v) for k, v in t._init64.items() if v is not None}
              for name, t in twin.twins()}
    twin.double()
    with torch.no_grad():
        twin(x.double())
    for name, t in twin.twins():
        for k, v in before[name].items():
            np.testing.assert_array_equal(t._init64[k], v)

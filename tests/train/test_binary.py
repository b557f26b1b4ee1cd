"""1-b binary weights through deploy and the training twin: deploy's quantizer gives
sign(w)·mean|w|, the twin equals the engine and deploy on the lossless chip, and its
straight-through sign passes BinaryConnect's gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.mapping.quant import binary_codes, quantize_weights
from cimsim.train.twin import TwinMatmul, conversion_digits, physical_digits, prepare
from tests.arrays.test_binary import binary_chip
from tests.conftest import random_inputs
from tests.train.test_twin import fit_sine


def _granular(chip, granularity: str):
    return chip.replace(quant=chip.quant.replace(weight_granularity=granularity))


@pytest.mark.parametrize("granularity", ["tensor", "channel", "column"])
def test_quantizer_gives_sign_times_mean_abs(granularity):
    w = np.array([[0.5, -0.25, 0.0, -1.0], [-0.2, 0.2, 0.6, -0.6]])
    tiles = [(0, 2), (2, 4)]
    w_int, s = quantize_weights(w, 1, cimsim.config.WeightGranularity(granularity), tiles)
    np.testing.assert_array_equal(w_int, [[1, -1, 1, -1], [-1, 1, 1, -1]])  # 0 -> +1
    if granularity == "tensor":
        np.testing.assert_allclose(s, np.full((1, 2), np.abs(w).mean()))
    elif granularity == "channel":
        np.testing.assert_allclose(s, [[0.4375, 0.4]])
    else:
        np.testing.assert_allclose(s, [[0.375, 0.2], [0.5, 0.6]])
    np.testing.assert_array_equal(binary_codes(np.array([-0.0, 1e-300, -1e-300])), [1, 1, -1])


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.fc1 = nn.Linear(16, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        h = F.relu(self.conv(x))
        h = F.relu(self.fc1(torch.flatten(h, 1)))
        return self.fc2(h)


def _chip(granularity="channel"):
    chip = binary_chip(input_bits=6, dac_bits=2, n_rows=20, n_cols=16, rows_per_conversion=8)
    return _granular(chip, granularity)


@pytest.mark.parametrize("granularity", ["channel", "column"])
def test_deploy_a_binary_weight_model_and_twin_equals_deploy(granularity):
    torch.manual_seed(0)
    model = _Net().double().eval()
    chip = _chip(granularity)
    x_cal = torch.randn(6, 2, 4, 4, dtype=torch.float64)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    sim = cimsim.deploy(model, chip, x_cal, seed=3)
    # every programmed weight is ±1 and the scale is mean|w| of its group
    fc2 = sim.sim_layers["fc2"].cores[0].view
    w = model.fc2.weight.detach().numpy()
    np.testing.assert_array_equal(fc2.w_int, np.where(w >= 0, 1, -1))
    if granularity == "channel":
        np.testing.assert_allclose(fc2.s_w[0], np.abs(w).mean(axis=1), rtol=1e-15)
    prep = prepare(model, chip, x_cal, seed=3).eval()
    torch.testing.assert_close(prep(x), sim(x), rtol=1e-9, atol=1e-9)


def test_twin_equals_engine_and_binary_digits():
    chip = _chip()
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(5, 30, generator=gen, dtype=torch.float64)
    x_cal = torch.randn(24, 30, generator=gen, dtype=torch.float64).abs()
    twin = TwinMatmul.calibrated(w, None, chip, x_cal).eval()
    w_int = twin.quantized_weight()
    assert set(w_int.unique().tolist()) == {-1.0, 1.0}
    np.testing.assert_array_equal(physical_digits(w_int, chip)[0].numpy(),
                                  (w_int.numpy() + 1) / 2)
    np.testing.assert_array_equal(conversion_digits(w_int, chip).numpy(),
                                  physical_digits(w_int, chip).numpy())
    x_int = twin.quantize_input(torch.randn(7, 30, generator=gen, dtype=torch.float64).abs())
    y = twin.integer_forward(x_int).numpy()
    view = twin.to_engine()
    np.testing.assert_array_equal(view.w_int, w_int.numpy())
    y_eng = np.stack([cimsim.engine.run(layer, x_int.numpy().astype(np.int64)[:, a:b])[0]
                      for a, b, layer in view.parts])
    np.testing.assert_array_equal(y, y_eng)
    np.testing.assert_array_equal(y.sum(axis=0), x_int.numpy() @ w_int.numpy().T)


def test_straight_through_sign_gradient():
    chip = _chip("tensor")
    w = torch.tensor([[0.3, -0.2, 2.0, -0.05]], dtype=torch.float64)
    twin = TwinMatmul.calibrated(w, None, chip, torch.ones(4, 4, dtype=torch.float64))
    s = twin._weight_scale_full(twin.weight_scale).detach()
    v = twin.weight.detach().clone().requires_grad_(True)
    codes = twin.weight_codes(v, s)
    np.testing.assert_array_equal(codes.detach().numpy(), [[1, -1, 1, -1]])
    codes.sum().backward()
    # d sign / dw = 1/s inside |w/s| <= 1 (hardtanh), 0 outside (the 2.0 weight)
    inside = (v.detach().abs() <= s).double()
    np.testing.assert_allclose(v.grad.numpy(), (inside / s).numpy())
    assert v.grad[0, 2] == 0.0


def test_a_few_adam_steps_lower_the_loss():
    chip = _granular(binary_chip(input_bits=4, n_rows=16, n_cols=32,
                                 adc=dict(bits=5, range_policy="calibrated")), "channel")
    prep, losses = fit_sine(chip)
    assert losses[-1] < 0.8 * losses[0], losses
    for _, twin in prep.twins():
        assert set(twin.quantized_weight().unique().tolist()) <= {-1.0, 1.0}


def test_signed_inputs_on_the_lossless_chip():
    chip = binary_chip(input_bits=5, dac_bits=1, n_rows=12, n_cols=8)
    gen = torch.Generator().manual_seed(9)
    w = torch.randn(4, 20, generator=gen, dtype=torch.float64)
    x_cal = torch.randn(24, 20, generator=gen, dtype=torch.float64)
    twin = TwinMatmul.calibrated(w, None, chip, x_cal).eval()
    assert twin.input_signed
    x_int = torch.as_tensor(random_inputs(np.random.default_rng(0), chip, True, 6, 20),
                            dtype=torch.float64).clamp(twin.x_lo, twin.x_hi)
    y = twin.integer_forward(x_int).numpy().sum(axis=0)
    np.testing.assert_array_equal(y, x_int.numpy() @ twin.quantized_weight().numpy().T)


def test_torch_backend_equals_numba_on_a_noisy_binary_chip():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(20, 6), nn.ReLU(), nn.Linear(6, 3)).double().eval()
    chip = binary_chip(input_bits=4, dac_bits=1, n_rows=12, n_cols=8, on_off_ratio=20.0,
                       off_current_compensation="digital", adc=dict(bits=5))
    x = torch.randn(5, 20, dtype=torch.float64)
    sim = cimsim.deploy(model, chip, x, seed=1)
    y_numba = sim(x)
    y_torch = sim.use_backend("torch")(x)
    torch.testing.assert_close(y_torch, y_numba, rtol=1e-9, atol=1e-9)


def test_pim_qat_rescale_takes_plus_minus_one_weights():
    from cimsim.train.pimqat import layer_rescale

    chip = binary_chip(input_bits=4, dac_bits=1, n_rows=16, n_cols=8,
                       adc=dict(bits=3, range_policy="full_scale"))
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(4, 16, generator=gen, dtype=torch.float64)
    twin = TwinMatmul.calibrated(w, None, chip, torch.rand(8, 16, generator=gen,
                                                            dtype=torch.float64))
    eta_f, eta_b = layer_rescale(twin)
    assert np.isfinite(eta_f) and np.isfinite(eta_b) and eta_f > 0 and eta_b > 0

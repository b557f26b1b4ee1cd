"""A linear single-slope converter simulates exactly like a SAR of the same bits and range: the
kind changes the price (cimsim.cost), never the codes. Engine (Numba and NumPy kernels), the
plain-loop reference, calibrated ranges and the training twin."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cimsim
from cimsim import engine
from cimsim.arrays._reference import matmul_reference
from cimsim.arrays.program import program
from cimsim.train.twin import TwinMatmul
from tests.conftest import ideal_chip, random_inputs, random_weights

# a lossy linear ADC: few bits, a range that clips, offset/gain error and comparator noise
_LOSSY = dict(bits=4, offset_error_lsb=-0.3, gain_error=0.02, comparator_noise_lsb=0.4)


def _kinds(adc: dict, **chip) -> dict[str, cimsim.ChipConfig]:
    return {kind: ideal_chip(adc=dict(adc, kind=kind), **chip)
            for kind in ("sar", "single_slope")}


@pytest.mark.parametrize("policy", [
    dict(range_policy="full_scale"),
    dict(range_policy="fixed", fixed_lo=-20.0, fixed_hi=40.0),
])
@pytest.mark.parametrize("signed", [False, True], ids=["u", "s"])
def test_single_slope_codes_equal_sar_engine_and_reference(policy, signed):
    chips = _kinds(dict(_LOSSY, **policy), n_rows=16, n_cols=12, rows_per_conversion=8)
    rng = np.random.default_rng(7)
    w = random_weights(rng, chips["sar"], 9, 37)
    x = random_inputs(rng, chips["sar"], signed, 11, 37, zeros=0.2)
    out = {}
    for kind, chip in chips.items():
        layer = program(w, chip, np.random.default_rng(1), input_signed=signed)
        for kernel in ("numba", "numpy"):
            out[kind, kernel] = engine.run(layer, x, noise_seed=5, kernel=kernel)
        out[kind, "reference"] = (matmul_reference(x, layer, noise_seed=5), None)
    y_sar, ev_sar = out["sar", "numba"]
    assert not np.array_equal(y_sar, x @ w.T)  # the ADC is lossy: the test sees its codes
    for (kind, kernel), (y, ev) in out.items():
        if kernel == "reference":  # the oracle sums in another order
            np.testing.assert_allclose(y, y_sar, rtol=1e-9, atol=1e-6, err_msg=kind)
            continue
        np.testing.assert_array_equal(y, out["sar", kernel][0], err_msg=f"{kind} {kernel}")
        assert dict(ev) == dict(ev_sar), (kind, kernel)


def test_single_slope_calibrated_range_equals_sar():
    chips = _kinds(dict(bits=3, range_policy="calibrated", calibration_granularity="column"),
                   n_rows=16, n_cols=8)
    rng = np.random.default_rng(3)
    w = random_weights(rng, chips["sar"], 5, 20)
    x = random_inputs(rng, chips["sar"], False, 6, 20)
    cal = random_inputs(rng, chips["sar"], False, 16, 20)
    y = {k: cimsim.matmul(x, w, c, seed=2, calibration=cal)[0] for k, c in chips.items()}
    np.testing.assert_array_equal(y["single_slope"], y["sar"])


def test_training_twin_treats_single_slope_as_linear():
    chips = _kinds(dict(bits=4, range_policy="calibrated"), n_rows=8, n_cols=8)
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 10, generator=gen, dtype=torch.float64)
    x_cal = torch.randn(24, 10, generator=gen, dtype=torch.float64).abs()
    x = torch.randn(5, 10, generator=gen, dtype=torch.float64).abs()
    y = {}
    for kind, chip in chips.items():
        twin = TwinMatmul.calibrated(w, None, chip, x_cal).eval()
        assert not twin.nonlinear_adc
        y[kind] = twin.integer_forward(twin.quantize_input(x)).detach().numpy()
    np.testing.assert_array_equal(y["single_slope"], y["sar"])

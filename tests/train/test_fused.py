"""The twin's fused CPU kernel (``cimsim.train._kernels``) against its reference, the torch
element-wise path of ``TwinMatmul``: the same outputs, gradients and LSQ step gradients with
noise off, the same noise distribution with noise on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from cimsim.train import prepare
from tests.conftest import ENCODINGS, ideal_chip


def _chip(encoding: str, **changes):
    adc = dict(bits=5, range_policy="calibrated", calibration_granularity="column",
               gain_error=0.01, offset_error_lsb=0.2)
    adc.update(changes.pop("adc", {}))
    return ideal_chip(encoding=encoding, bits_per_cell=2, input_bits=5, weight_bits=5,
                      n_rows=24, n_cols=32, rows_per_conversion=8, on_off_ratio=20.0,
                      adc=adc, **changes)


def _pair(chip, **options):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(30, 9), torch.nn.ReLU(),
                                torch.nn.Linear(9, 4)).double()
    x = torch.randn(48, 30, dtype=torch.float64)
    fused = prepare(model, chip, x, seed=1, **options)
    torch_path = prepare(model, chip, x, seed=1, fused_kernel=False, **options)
    return fused, torch_path, x


def _step(prep, x):
    prep.zero_grad()
    y = prep(x)
    (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
    return y.detach(), {n: p.grad.clone() for n, p in prep.named_parameters()
                        if p.grad is not None}


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_fused_kernel_equals_the_torch_path_noise_off(encoding, mode):
    fused, ref, x = _pair(_chip(encoding), train_noise=False)
    for prep in (fused, ref):
        prep.train(mode == "train")
    y1, g1 = _step(fused, x)
    y2, g2 = _step(ref, x)
    np.testing.assert_allclose(y1.numpy(), y2.numpy(), rtol=1e-12, atol=1e-12)
    assert set(g1) == set(g2)
    assert any("adc_step" in n for n in g1)  # the LSQ step gradient is compared too
    for name in g1:
        np.testing.assert_allclose(g1[name].numpy(), g2[name].numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=name)


@pytest.mark.parametrize("noise", [dict(noise=dict(thermal_sigma_lsb=0.7)),
                                   dict(noise=dict(read_noise_rel=0.1)),
                                   dict(adc=dict(comparator_noise_lsb=0.5))])
def test_fused_kernel_noise_has_the_torch_path_distribution(noise):
    chip = _chip("differential", **noise)
    fused, ref, x = _pair(chip)
    xs = x[:1].repeat(3000, 1)
    outs = []
    for prep in (fused, ref):
        prep.train()
        with torch.no_grad():
            outs.append(prep(xs)[:, 0].numpy())
    a, b = outs
    assert stats.ks_2samp(a, b).pvalue > 1e-3
    assert abs(a.std() / b.std() - 1) < 0.1


def test_seeded_noise_repeats():
    fused, _, x = _pair(_chip("offset", noise=dict(thermal_sigma_lsb=0.5)))
    fused.train()
    torch.manual_seed(7)
    y1 = fused(x)
    torch.manual_seed(7)
    y2 = fused(x)
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("signed", ["unsigned", "twos_complement", "two_pass"])
@pytest.mark.parametrize("dac_bits", [1, 2, 3])
def test_dac_planes_kernel_equals_the_torch_planes(dtype, signed, dac_bits):
    """``_kernels.dac_planes`` cuts inputs into the planes of ``twin.input_planes`` (its
    twin), exactly, in every signed-input mode and DAC width, with the pad columns of a ragged
    row group zero and a non-finite input NaN on every plane."""
    from cimsim.config import ChipConfig
    from cimsim.train._kernels import dac_planes
    from cimsim.train.twin import input_planes

    chip = ChipConfig.from_dict(dict(
        name="t", input_bits=7, weight_bits=4,
        dac=dict(bits=dac_bits, **({} if signed == "unsigned" else {"signed_inputs": signed}))))
    is_signed = signed != "unsigned"
    g = torch.Generator().manual_seed(dac_bits)
    lo = -(2 ** (chip.input_bits - 1)) if is_signed else 0
    hi = 2 ** (chip.input_bits - 1) - 1 if is_signed else 2**chip.input_bits - 1
    x = torch.randint(lo, hi + 1, (37, 53), generator=g).to(dtype)
    x[3, 4], x[5, 6], x[7, 8] = float("nan"), float("inf"), -float("inf")
    want = input_planes(x, chip, is_signed)
    mode = 0 if not is_signed else 2 if signed == "two_pass" else 1
    out = torch.full((want.shape[0], 37, 53 + 11), 5.0, dtype=dtype)
    dac_planes(x.numpy(), chip.dac_bits, mode, out.numpy())
    finite = torch.isfinite(x)
    assert torch.equal(out[:, :, :53][:, finite], want[:, finite])
    assert out[:, :, :53][:, ~finite].isnan().all()
    assert (out[:, :, 53:] == 0).all()

"""The twin trains for power-of-two weight scales (``quant.weight_scale = 'pow2'``: block
floating-point weights, one shared exponent per weight group): it uses its learned scale rounded
up to a power of two as deploy rounds it (``cimsim.mapping.quant.pow2_scale``), so that the eval
twin is the deployed chip, bit for bit on a lossless one, and hands back powers of two."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.train import prepare
from cimsim.train.loop import param_groups
from tests.conftest import ideal_chip


def _chip(lossy: bool, granularity: str, block_fp: bool = False):
    extra = (dict(adc=dict(bits=5, range_policy="calibrated", calibration_granularity="column"),
                  variation="lognormal", variation_sigma=0.1) if lossy else {})
    chip = ideal_chip(n_rows=8, input_bits=6, weight_bits=5, **extra)
    return chip.replace(quant=chip.quant.replace(
        weight_scale="pow2", weight_granularity=granularity,
        act_format="block_fp" if block_fp else "int"))


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 7), nn.Tanh(), nn.Linear(7, 3)).double()


def _powers_of_two(s: np.ndarray) -> bool:
    return bool(np.all(np.frexp(s)[0] == 0.5))


@pytest.mark.parametrize("lossy,granularity,block_fp", [
    (False, "channel", False), (False, "column", False), (False, "tensor", True),
    (True, "channel", False), (True, "column", True)])
def test_eval_twin_is_the_deployed_chip_and_hands_back_powers_of_two(lossy, granularity,
                                                                      block_fp):
    chip = _chip(lossy, granularity, block_fp)
    torch.manual_seed(1)
    x = torch.randn(64, 20, dtype=torch.float64)
    prep = prepare(_model(), chip, x, seed=1)

    def agree(y_sim):
        y_twin = prep.eval()(x).detach().numpy()
        if lossy:  # float ties of the engine's float32 conductances aside
            return np.isclose(y_sim, y_twin, rtol=1e-9, atol=1e-9).mean()
        return (y_sim == y_twin).mean()

    need = 0.99 if lossy else 1.0
    assert agree(cimsim.deploy(_model(), chip, x, seed=1)(x).numpy()) >= need
    # the scales move off their powers (each at a rate of its own size: cimsim train's groups)
    opt = torch.optim.Adam(param_groups(prep, 3e-2))
    target = torch.randint(0, 3, (64,))
    prep.train()
    for _ in range(4):
        opt.zero_grad()
        F.cross_entropy(prep(x), target).backward()
        opt.step()
    assert agree(prep.deploy()(x).numpy()) >= need
    for view in prep.views().values():
        assert _powers_of_two(view.s_w)
    assert any(not _powers_of_two(t.weight_scale.detach().numpy()) for _, t in prep.twins())
    assert all(t.weight_scale.grad is not None for _, t in prep.twins())


def test_quantized_weight_uses_the_power_of_two_scale_deploy_programs():
    """``quantized_weight`` (the codes the integer path and the methods read) divides by the
    learned scale rounded up to a power of two, as deploy does: after the scales moved off
    their powers, it equals the engine's integer weights, and ``round(w / 2^ceil(log2 s))``
    by hand."""
    chip = _chip(False, "channel")
    torch.manual_seed(1)
    x = torch.randn(64, 20, dtype=torch.float64)
    prep = prepare(_model(), chip, x, seed=1)
    twin = dict(prep.twins())["0"]
    with torch.no_grad():
        twin.weight_scale.mul_(1.3)  # off the powers of two
    s = twin.weight_scale.detach().numpy().T  # (1, N) per output channel -> (N, 1)
    assert not _powers_of_two(s)
    p2 = 2.0 ** np.ceil(np.log2(s))
    w = twin.weight.detach().numpy()
    want = np.clip(np.rint(w / p2), -twin.w_qmax, twin.w_qmax)
    np.testing.assert_array_equal(twin.quantized_weight().numpy(), want)
    np.testing.assert_array_equal(twin.to_engine().w_int, want)

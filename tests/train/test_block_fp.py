"""The twin trains for block floating-point inputs (``quant.act_format = 'block_fp'``: one
power-of-two exponent per vector and row tile, as MX formats and FP CIM macros share one):
its codes and exponents are deploy's (``cimsim.mapping.quant.block_fp_acts``), so that the eval
twin is the deployed chip, bit for bit on a lossless one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim import engine
from cimsim.errors import ConfigError
from cimsim.mapping.quant import block_fp_acts
from cimsim.train import prepare
from tests.conftest import ideal_chip


def _chip(lossy: bool):
    extra = (dict(adc=dict(bits=5, range_policy="calibrated", calibration_granularity="column"),
                  variation="lognormal", variation_sigma=0.1) if lossy else {})
    chip = ideal_chip(n_rows=8, input_bits=6, weight_bits=5, **extra)
    return chip.replace(quant=chip.quant.replace(act_format="block_fp", act_exponent_bits=4))


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 7), nn.Tanh(), nn.Linear(7, 3)).double()


def _x(n: int = 64) -> torch.Tensor:
    torch.manual_seed(1)  # magnitudes over several octaves: the exponents differ by block
    return torch.randn(n, 20, dtype=torch.float64) * torch.logspace(-2, 1, 20,
                                                                    dtype=torch.float64)


def _train(prep, x, steps: int = 3) -> None:
    opt = torch.optim.Adam(prep.parameters(), lr=1e-3)
    target = torch.randint(0, 3, (x.shape[0],))
    prep.train()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(prep(x), target).backward()
        opt.step()
    prep.eval()


def test_codes_and_exponents_are_deploys():
    chip = _chip(lossy=False)
    x = _x()
    prep = prepare(_model(), chip, x, seed=1)
    twin = prep.model[0].twins[0]
    x_int, scale = twin.block_codes(x)
    assert twin.input_signed  # the inputs have both signs
    want_int, want_exp = block_fp_acts(x.numpy(), chip.input_bits, True,
                                       chip.quant.act_exponent_bits, twin.part_rows)
    np.testing.assert_array_equal(x_int.detach().numpy(), want_int)
    np.testing.assert_array_equal(scale.numpy(), np.ldexp(1.0, want_exp))
    np.testing.assert_array_equal(twin.quantize_input(x).numpy(), want_int)
    # the integer path (what engine.run gives per part) on those codes
    (a, b, layer), *_ = twin.to_engine().parts
    y_parts = twin.integer_forward(twin.quantize_input(x)).numpy()
    np.testing.assert_array_equal(y_parts[0], engine.run(layer, want_int[:, a:b])[0])
    assert twin.n_parts == len(twin.part_rows) == 3  # 20 inputs over 8-row tiles


@pytest.mark.parametrize("lossy", [False, True])
def test_eval_twin_is_the_deployed_chip_before_and_after_training(lossy):
    chip = _chip(lossy)
    x = _x()
    prep = prepare(_model(), chip, x, seed=1)
    sim = cimsim.deploy(_model(), chip, x, seed=1)

    def agree(y_sim):
        y_twin = prep.eval()(x).detach().numpy()
        if lossy:  # float ties of the engine's float32 conductances aside
            return np.isclose(y_sim, y_twin, rtol=1e-9, atol=1e-9).mean()
        return (y_sim == y_twin).mean()

    assert agree(sim(x).numpy()) >= (0.99 if lossy else 1.0)
    _train(prep, x)
    assert agree(prep.deploy()(x).numpy()) >= (0.99 if lossy else 1.0)
    # no activation scale is learned (the exponents come from the inputs)
    assert all(float(t.act_scale) == 1.0 and not t.act_scale.requires_grad
               for _, t in prep.twins())


def test_gradient_reaches_the_inputs_and_weights():
    chip = _chip(lossy=False)
    x = _x(16).requires_grad_(True)
    prep = prepare(_model(), chip, x.detach(), seed=1).train()
    prep(x).sum().backward()
    assert x.grad is not None and torch.count_nonzero(x.grad) > 0
    assert all(t.weight.grad is not None and torch.count_nonzero(t.weight.grad) > 0
               for _, t in prep.twins())


def test_ternary_decomposition_refuses_block_fp():
    from cimsim.train.columnquant import prepare_columnquant

    chip = _chip(lossy=True)
    chip = chip.replace(device=chip.device.replace(bits_per_cell=2))
    with pytest.raises(ConfigError, match="act_format"):
        prepare_columnquant(_model(), chip, _x(), decomposition="ternary")


def test_block_codes_pass_the_gradient_of_the_clipped_quotient_by_hand():
    """``block_codes``' gradient is the straight-through one of ``clip(x / 2^X)``
    (its docstring): ``1 / 2^X`` for a value inside the codes, 0 for one clipped. 6-b signed
    mantissas (5 magnitude bits, codes [-31, 31]): a tile led by 1.99 has E = 0, X = -4,
    1.99·16 = 31.84 rounds to 32 and clips (gradient 0), its other values get 16; a tile led
    by -1.99 likewise; a tile led by 3.0 has X = -3 and 3·8 = 24 inside: 8 everywhere."""
    chip = _chip(lossy=False)
    prep = prepare(_model(), chip, _x(), seed=1)
    twin = prep.model[0].twins[0]
    assert twin.input_signed and twin.part_rows == [(0, 8), (8, 16), (16, 20)]
    x = torch.full((1, 20), 0.25, dtype=torch.float64)
    x[0, 3], x[0, 9], x[0, 17] = 1.99, -1.99, 3.0
    x.requires_grad_(True)
    codes, scale = twin.block_codes(x)
    assert scale.tolist() == [[1 / 16, 1 / 16, 1 / 8]]
    assert codes[0, 3] == 31 and codes[0, 9] == -31 and codes[0, 17] == 24
    codes.sum().backward()
    want = torch.tensor([16.0] * 16 + [8.0] * 4, dtype=torch.float64)
    want[3] = want[9] = 0.0
    torch.testing.assert_close(x.grad[0], want, rtol=0, atol=0)

"""Adam's learning rate for the learned step sizes (``cimsim.train.loop.param_groups``) on
the matrices of the architectures the methods study trains (docs/training.md §10): a GRU, an
attention block and a depthwise convolution, on ``rram-22nm`` (per-column calibrated ADC
steps, per-channel weight scales)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cimsim
from cimsim.train import prepare
from cimsim.train.loop import STEP_PARAMETERS, param_groups


class _GRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.gru(x)[1][-1])


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(x, x, x, need_weights=False)[0].mean(1))


def _model_and_inputs(kind: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if kind == "gru":
        return _GRU().eval(), torch.rand(64, 6, 8)
    if kind == "attention":
        return _Attention().eval(), torch.randn(64, 5, 16)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 36, 4))
    return model.eval(), torch.rand(64, 2, 6, 6)


@pytest.mark.parametrize("kind", ["gru", "attention", "depthwise"])
def test_no_step_element_moves_more_than_lr_relative_per_update(kind):
    # Adam moves every element of a parameter by about its group's lr. The group's lr was
    # lr * mean|step|: a per-column ADC step 5x smaller than its layer's mean then moved by 5 lr
    # of itself per update, and after 1/(5 lr) updates in one direction it was 0 or negative
    # (a GRU's recurrent matrix on rram-22nm at lr 1e-2: a column's step at 6 % of its start
    # after 24 updates). Fails without the fix: after 25 updates at 1e-2 the smallest steps
    # were at 39 % (GRU), 69 % (attention) and 74 % (depthwise) of their start, not >= 75 %.
    model, x = _model_and_inputs(kind)
    prepared = prepare(model, cimsim.load_chip("rram-22nm"), x, seed=0)
    lr, n_updates = 1e-2, 25
    opt = torch.optim.Adam(param_groups(prepared, lr))
    steps = {id(p): (name, p, p.detach().clone()) for name, twin in prepared.twins()
             for attr in STEP_PARAMETERS
             if (p := getattr(twin, attr)).requires_grad and p.numel() > 1}
    assert steps, "the chip has no vector step to check"
    spread = max(float(p0.abs().max() / p0.abs().min()) for _, _, p0 in steps.values())
    assert spread > 2  # the case this test is about: elements of different sizes
    for _ in range(n_updates):
        opt.zero_grad()
        for g in opt.param_groups:
            for p in g["params"]:
                p.grad = torch.ones_like(p)  # every element pushed down, every update
        opt.step()
    for name, p, p0 in steps.values():
        ratio = p.detach() / p0
        assert float(ratio.min()) > 0, name
        # Adam's update of a constant gradient is lr_group per update, exactly
        assert float(ratio.min()) >= 1 - n_updates * lr * 1.001, name


def test_a_scalar_step_still_learns_at_its_own_size():
    model, x = _model_and_inputs("gru")
    prepared = prepare(model, cimsim.load_chip("rram-22nm"), x, seed=0)
    groups = {id(g["params"][0]): g["lr"] for g in param_groups(prepared, 1e-3)[1:]}
    for _, twin in prepared.twins():
        assert groups[id(twin.act_scale)] == pytest.approx(1e-3 * float(twin.act_scale.detach()))


def test_a_step_element_of_zero_takes_no_part_in_its_rate():
    """A step's rate is ``lr · min|step|`` over its NONZERO elements (param_groups'
    docstring: an element of 0, a set with no data, has no size to keep); a step all of
    whose elements are 0 keeps ``lr`` itself. With the zero counted the group's rate was 0
    and the whole vector froze."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4)).eval()
    prepared = prepare(model, cimsim.load_chip("rram-22nm"), torch.rand(64, 8), seed=0)
    (_, first), (_, second) = prepared.twins()
    with torch.no_grad():
        first.weight_scale.copy_(torch.linspace(0.5, 1.0, first.weight_scale.numel())
                                 .reshape(first.weight_scale.shape))
        first.weight_scale.view(-1)[0] = 0.0  # the 0.5 gone: the smallest nonzero is next
        second.weight_scale.zero_()
    assert first.weight_scale.numel() > 2
    groups = {id(g["params"][0]): g["lr"] for g in param_groups(prepared, 1e-2)[1:]}
    nxt = 0.5 + 0.5 / (first.weight_scale.numel() - 1)
    assert groups[id(first.weight_scale)] == pytest.approx(1e-2 * nxt, rel=1e-6)
    assert groups[id(second.weight_scale)] == 1e-2

"""The learning-rate schedule of the training loops (``cimsim.train.loop.lr_schedule``):
``constant`` keeps every group's rate, ``cosine`` anneals each group's own rate per step to 0
after the run's last step, and the fit functions pass it through."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import ConfigError
from cimsim.train import prepare
from cimsim.train.distill import distill
from cimsim.train.loop import SCHEDULES, lr_schedule, param_groups, train_epoch
from cimsim.train.methods import parse_method


def _prepared() -> tuple[nn.Module, torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x, y = torch.rand(10, 12), torch.randint(0, 3, (10,))
    return model, prepare(model, cimsim.load_chip("rram-22nm"), x, seed=0), x, y


def test_constant_is_no_scheduler_and_an_unknown_name_is_refused():
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(2))], lr=0.1)
    assert SCHEDULES == ("constant", "cosine")
    assert lr_schedule(opt, "constant", epochs=3, n=10, batch_size=4) is None
    with pytest.raises(ConfigError, match="schedule = 'linear' is invalid; allowed: "
                                          "'constant', 'cosine'"):
        lr_schedule(opt, "linear", epochs=3, n=10, batch_size=4)
    with pytest.raises(ConfigError, match="epochs = 0"):
        lr_schedule(opt, "cosine", epochs=0, n=10, batch_size=4)


def test_cosine_anneals_each_groups_own_rate_per_step_to_zero():
    # two groups at their own rates, as param_groups gives the weights and each step size:
    # both follow ½(1 + cos(π k / K)) of their start, K = epochs x ceil(n / batch) = 2 x 3
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 4e-5}])
    sched = lr_schedule(opt, "cosine", epochs=2, n=10, batch_size=4)
    data = (torch.rand(10, 2),)
    seen = []

    def loss_fn(x):
        seen.append([g["lr"] for g in opt.param_groups])  # the rate this step is taken at
        return ((x - a) ** 2).sum() + ((x - b) ** 2).sum()

    for epoch in range(2):
        train_epoch(nn.Module(), data, loss_fn, opt, batch_size=4, seed=0, epoch=epoch,
                    progress=False, scheduler=sched)
    expected = [base * 0.5 * (1 + math.cos(math.pi * k / 6)) for k in range(6)
                for base in (1e-3, 4e-5)]
    assert sum(seen, []) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.0, 0.0], abs=1e-15)


@pytest.mark.parametrize("where", ["methods", "distill"])
def test_fit_and_distill_step_the_schedule_once_per_batch(monkeypatch, where):
    import importlib

    module = importlib.import_module(f"cimsim.train.{where}")
    made = []

    def spy(optimizer, schedule, **kwargs):
        made.append((schedule, kwargs, lr_schedule(optimizer, schedule, **kwargs), optimizer))
        return made[-1][2]

    monkeypatch.setattr(module, "lr_schedule", spy)
    model, prepared, x, y = _prepared()
    if where == "methods":
        losses = parse_method("qat").fit(
            prepared, lambda a, b: nn.functional.cross_entropy(prepared(a), b), (x, y),
            epochs=2, lr=1e-2, batch_size=4, schedule="cosine")
    else:
        losses = distill(prepared, model, x, epochs=2, lr=1e-2, batch_size=4, progress=False,
                         schedule="cosine")["loss"]
    assert len(losses) == 2 and not prepared.training
    (schedule, kwargs, sched, opt), = made
    assert schedule == "cosine" and kwargs == {"epochs": 2, "n": 10, "batch_size": 4}
    assert sched.last_epoch == 6  # 2 epochs x 3 batches
    assert all(g["lr"] == pytest.approx(0.0, abs=1e-15) for g in opt.param_groups)


def test_fit_and_distill_refuse_an_unknown_schedule_before_training():
    model, prepared, x, y = _prepared()
    before = {n: p.detach().clone() for n, p in prepared.named_parameters()}
    with pytest.raises(ConfigError, match="schedule = 'step'"):
        distill(prepared, model, x, epochs=1, schedule="step", progress=False)
    for method in ("qat", "qat+lora"):  # LoRA's adapters are not attached either
        with pytest.raises(ConfigError, match="schedule = 'step'"):
            parse_method(method).fit(prepared, lambda a, b: prepared(a).sum(), (x, y),
                                     epochs=1, lr=1e-3, schedule="step")
    assert dict(prepared.named_parameters()).keys() == before.keys()
    assert all(torch.equal(p, before[n]) for n, p in prepared.named_parameters())


def test_a_cosine_run_ends_at_rate_zero_so_its_last_step_moves_little():
    # K = 3 steps (10 inputs, batches of 4): the third is taken at ½(1 + cos(2π/3)) = 25 % of
    # the rate and leaves it at 0; the constant run's third step at 100 %
    moved = {}
    for schedule in ("constant", "cosine"):
        model, prepared, x, y = _prepared()
        opt = torch.optim.Adam(param_groups(prepared, 1e-2))
        sched = lr_schedule(opt, schedule, epochs=1, n=10, batch_size=4)
        steps = []

        def loss_fn(xb, yb, prepared=prepared, steps=steps):
            steps.append({n: p.detach().clone() for n, p in prepared.named_parameters()})
            return nn.functional.cross_entropy(prepared(xb), yb)

        train_epoch(prepared, (x, y), loss_fn, opt, batch_size=4, seed=0, epoch=0,
                    progress=False, scheduler=sched)
        w = dict(prepared.named_parameters())
        moved[schedule] = sum(float((w[n].detach() - v).abs().sum())
                              for n, v in steps[-1].items())
        if sched is not None:
            assert all(g["lr"] == pytest.approx(0.0, abs=1e-15) for g in opt.param_groups)
    assert 0 < moved["cosine"] < 0.5 * moved["constant"]

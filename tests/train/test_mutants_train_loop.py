"""Tests from a mutation round over the training-loop code: ``cimsim/train/loop.py``,
``distill.py``, ``bn.py``, ``ste.py``, ``_data.py`` and ``lora.py``.

Each test pins behaviour that a mutant of those files changed without any other test
noticing (a loss reduction, a batch cut, the per-epoch seed, the STE clamps, BatchNorm
calibration arithmetic), with hand-computed answers or relations. All use toy modules and
run in well under a second each.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import ConfigError
from cimsim.train import prepare
from cimsim.train._data import batch_first, eval_pass
from cimsim.train.bn import calibrate_bn
from cimsim.train.distill import (
    LOSSES,
    _model_inputs,
    _tensor_of,
    distill,
    distillation_loss,
    output_cosine,
)
from cimsim.train.loop import check_lr, epoch_seed, lr_schedule, param_groups, train_epoch
from cimsim.train.lora import LoRA, add_lora
from cimsim.train.ste import grad_scale, lsq_factor, with_surrogate


# ---------------------------------------------------------------------------------------------
# ste.py
# ---------------------------------------------------------------------------------------------
def test_lsq_factor_clamps_both_counts_at_one():
    assert lsq_factor(4, 9) == pytest.approx(1 / 6)
    assert lsq_factor(0, 0) == 1.0  # an unsigned 1-bit quantizer's q_p = 0 stays finite
    assert lsq_factor(0.25, 4) == pytest.approx(0.5)  # n below 1 counts as 1
    assert lsq_factor(16, 0.5) == pytest.approx(0.25)  # q_p below 1 counts as 1


def test_grad_scale_broadcasts_a_tensor_scale_and_with_surrogate_takes_its_gradient():
    x = torch.ones(2, 3, requires_grad=True)
    grad_scale(x, torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([[1.0, 2.0, 3.0]] * 2))
    s = torch.tensor([1.5, -2.0], requires_grad=True)
    exact = torch.tensor([7.0, 9.0])
    y = with_surrogate(exact, 3 * s)
    assert torch.equal(y, exact)  # the exact value, not the surrogate's
    y.sum().backward()
    assert torch.equal(s.grad, torch.tensor([3.0, 3.0]))


# ---------------------------------------------------------------------------------------------
# loop.py
# ---------------------------------------------------------------------------------------------
def test_check_lr_refuses_zero():
    with pytest.raises(ConfigError, match="lr"):
        check_lr(0)
    assert check_lr(1e-3) == 1e-3


def test_epoch_seed_is_the_seed_sequence_state_shifted_to_63_bits():
    # the resumable-run contract: a checkpoint's epoch e reproduces from (seed, e) alone
    for seed, epoch in ((0, 0), (3, 7)):
        state = int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0])
        assert epoch_seed(seed, epoch) == state >> 1
    assert epoch_seed(5, 0) != epoch_seed(5, 1)


def test_the_cosine_schedule_reaches_zero_after_the_last_of_ceil_n_over_b_steps():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = lr_schedule(opt, "cosine", epochs=2, n=10, batch_size=4)  # 2 * ceil(10/4) = 6
    lrs = []
    for _ in range(6):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[2] == pytest.approx(0.5)  # half way: ½(1 + cos(π/2))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert lr_schedule(opt, "constant", epochs=2, n=10, batch_size=4) is None


class _Probe(nn.Module):
    """One parameter (so an optimizer has something); a BatchNorm and a Dropout whose modes
    train_epoch sets."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.bn = nn.BatchNorm1d(1)
        self.drop = nn.Dropout(0.5)


def _run_epoch(n=10, batch_size=4, seed=0, epoch=0, scheduler=False):
    model = _Probe().eval()
    x = torch.arange(n, dtype=torch.float64)
    seen, noise = [], []

    def loss_fn(xb):
        seen.append(xb.clone())
        noise.append(float(torch.rand(())))
        return xb.mean() + 0 * model.w.sum()

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = lr_schedule(opt, "cosine", epochs=1, n=n, batch_size=batch_size) \
        if scheduler else None
    losses: list[float] = []
    mean = train_epoch(model, (x,), loss_fn, opt, batch_size=batch_size, seed=seed,
                       epoch=epoch, progress=False, scheduler=sched, batch_losses=losses)
    return model, seen, noise, losses, mean, sched


def test_train_epoch_visits_every_input_once_in_batches_and_weights_the_mean_by_size():
    _, seen, _, losses, mean, _ = _run_epoch(n=10, batch_size=4)
    assert [len(b) for b in seen] == [4, 4, 2]
    assert sorted(torch.cat(seen).tolist()) == list(range(10))
    # the mean per input, batches weighted by their size: (0 + ... + 9) / 10
    assert mean == pytest.approx(4.5)
    assert losses == pytest.approx([float(b.mean()) for b in seen])  # in the order they ran


def test_train_epoch_order_is_shuffled_from_seed_and_epoch_only():
    _, a, na, _, _, _ = _run_epoch(seed=1, epoch=0)
    torch.manual_seed(123)  # the caller's RNG plays no part
    _, b, nb, _, _, _ = _run_epoch(seed=1, epoch=0)
    _, c, nc, _, _, _ = _run_epoch(seed=1, epoch=1)
    order = torch.cat(a).tolist()
    assert order == torch.cat(b).tolist() and na == nb
    assert order != list(range(10))  # shuffled
    assert torch.cat(c).tolist() != order and nc != na  # another epoch, another order


def test_train_epoch_leaves_the_callers_rng_as_it_was():
    torch.manual_seed(77)
    expected = torch.rand(3)
    torch.manual_seed(77)
    _run_epoch()
    assert torch.equal(torch.rand(3), expected)


def test_train_epoch_trains_in_training_mode_with_batchnorm_frozen_and_steps_the_schedule():
    model, seen, _, _, _, sched = _run_epoch(scheduler=True)
    assert model.training and model.drop.training and not model.bn.training
    assert sched.last_epoch == len(seen) == 3


# ---------------------------------------------------------------------------------------------
# distill.py
# ---------------------------------------------------------------------------------------------
def test_distillation_losses_are_means_over_the_batch_per_input():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert float(LOSSES["mse"](s, torch.zeros(2, 2))) == pytest.approx(0.5)
    # 1 - cos per input (0 and 1), averaged
    assert float(LOSSES["cosine"](s, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))) == \
        pytest.approx(0.5)
    # per input, not over the flattened batch: each row points its teacher's way
    assert float(LOSSES["cosine"](s, torch.tensor([[2.0, 0.0], [0.0, 1.0]]))) == \
        pytest.approx(0.0, abs=1e-7)


def test_output_cosine_is_the_mean_over_inputs_across_batches():
    teacher = nn.Identity()
    model = nn.Sequential(nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # swaps the features
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [2.0, 2.0]])  # cos 0, 1, 1
    assert output_cosine(model, teacher, x, batch_size=2) == pytest.approx(2 / 3)


class _Holder(nn.Module):
    """The part of a PreparedModel that distillation_loss uses: ``model`` and its forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


def test_a_matched_layer_adds_its_full_loss_and_the_teacher_runs_in_eval_mode():
    teacher = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Dropout(0.9), nn.ReLU())
    student = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Dropout(0.0), nn.ReLU())
    with torch.no_grad():
        teacher[0].weight.copy_(torch.eye(2))
        student[0].weight.copy_(2 * torch.eye(2))
    teacher.train()  # its Dropout would scale and zero the target
    x = torch.tensor([[1.0, 2.0]])
    with distillation_loss(_Holder(student), teacher, layers=["0"]) as fn:
        # outputs (2, 4) vs (1, 2): mse 2.5; layer "0" the same: 2.5
        assert float(fn(x).detach()) == pytest.approx(5.0)
        assert not teacher.training
    assert teacher.training  # its mode put back


# ---------------------------------------------------------------------------------------------
# bn.py
# ---------------------------------------------------------------------------------------------
def test_calibration_is_a_cumulative_average_over_a_list_of_two_equal_batches():
    bn = nn.BatchNorm1d(1)
    b1, b2 = torch.zeros(4, 1), torch.full((4, 1), 4.0)
    assert calibrate_bn(nn.Sequential(bn), [b1, b2]) == 1  # two batches, not (x, labels)
    assert int(bn.num_batches_tracked) == 2
    assert float(bn.running_mean) == pytest.approx(2.0)  # (0 + 4) / 2, momentum None
    assert bn.momentum == 0.1  # put back


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return self.factor * x


def test_relative_calibration_moves_the_held_statistics_by_the_chips_deviation():
    torch.manual_seed(0)
    x = torch.randn(64, 2)
    x[:, 1] = 3.0  # a channel the reference never varies
    chip = nn.Sequential(_Scale(2.0), nn.BatchNorm1d(2))
    reference = nn.Sequential(nn.BatchNorm1d(2))
    with torch.no_grad():
        chip[1].running_mean.copy_(torch.tensor([10.0, 20.0]))
        chip[1].running_var.copy_(torch.tensor([5.0, 7.0]))
    mu = x.mean(0)
    calibrate_bn(chip, x, batch_size=64, reference=reference)
    # mean + (2 mu - mu); var * (4 var_x / var_x); the constant channel: the chip's var, 0
    torch.testing.assert_close(chip[1].running_mean, torch.tensor([10.0, 20.0]) + mu)
    torch.testing.assert_close(chip[1].running_var, torch.tensor([20.0, 0.0]))


def test_calibration_runs_the_other_modules_in_eval_mode():
    torch.manual_seed(0)
    x = torch.rand(32, 3) + 1
    net = nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(3)).train()
    calibrate_bn(net, x, batch_size=32)
    torch.testing.assert_close(net[1].running_mean, x.mean(0))  # no input dropped
    assert net[0].training and net[1].training


# ---------------------------------------------------------------------------------------------
# _data.py
# ---------------------------------------------------------------------------------------------
class _SeqFirst(nn.Module):
    batch_dim = 1

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x):
        self.seen.append(tuple(x.shape))
        return x


def test_batch_first_moves_the_models_batch_dimension_and_back():
    model = _SeqFirst()
    x = torch.arange(24.0).reshape(4, 3, 2)  # (time, batch, features)
    moved, back = batch_first(model, x)
    assert moved.shape == (3, 4, 2) and torch.equal(back(moved), x)
    v = torch.arange(5.0)  # no batch dimension 1: left as it is
    moved, back = batch_first(model, v)
    assert torch.equal(moved, v) and torch.equal(back(v), v)


def test_eval_pass_cuts_along_the_batch_dimension_and_restores_modes():
    model = _SeqFirst().train()
    eval_pass(model, torch.zeros(4, 6, 2), batch_size=4)
    assert model.seen == [(4, 4, 2), (4, 2, 2)]  # 6 sequences cut 4 + 2, time whole
    assert model.training


def _prepared_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4)).eval()
    return prepare(model, cimsim.load_chip("rram-22nm"), torch.rand(32, 8), seed=0)


def test_param_groups_leave_out_a_frozen_step_and_rate_an_alpha_by_its_size():
    prepared = _prepared_mlp()
    (_, first), (_, second) = prepared.twins()
    first.act_scale.requires_grad_(False)
    second.alpha = nn.Parameter(torch.tensor([0.0, 0.25, 0.5]))  # ColumnQuant option 3's
    groups = param_groups(prepared, 1e-2)
    ids = [id(p) for g in groups for p in g["params"]]
    assert id(first.act_scale) not in ids  # only parameters with requires_grad
    assert len(ids) == len(set(ids))
    rate = {id(g["params"][0]): g["lr"] for g in groups[1:]}
    assert rate[id(second.alpha)] == pytest.approx(1e-2 * 0.25)  # lr · its smallest nonzero
    assert all(id(p) not in rate for p in groups[0]["params"])
    assert id(second.alpha) not in {id(p) for p in groups[0]["params"]}


def test_distill_runs_each_epoch_with_its_own_seed_and_ends_in_eval_mode():
    import copy

    prepared = _prepared_mlp()
    teacher = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4)).eval()
    twin = copy.deepcopy(prepared)
    x = torch.rand(24, 8)
    out = distill(prepared, teacher, x, epochs=2, lr=1e-2, batch_size=8, progress=False,
                  seed=4)
    assert len(out["loss"]) == 2 and out["n_inputs"] == 24
    assert not prepared.training
    # the same run by hand: epochs 0 and 1 of seed 4
    opt = torch.optim.Adam(param_groups(twin, 1e-2))
    with distillation_loss(twin, teacher) as fn:
        by_hand = [train_epoch(twin, (x,), fn, opt, batch_size=8, seed=4, epoch=e,
                               progress=False) for e in range(2)]
    assert out["loss"] == pytest.approx(by_hand, rel=1e-6)
    for a, b in zip(prepared.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b)


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, a, b):
        return self.lin(a) + b, a  # (output, extra): the output is what is matched


def test_distill_takes_the_teachers_required_inputs_and_matches_a_tuples_first_output():
    n = 5
    a, b, labels = torch.rand(n, 3), torch.rand(n, 3), torch.arange(n)
    teacher = _TwoInputs()
    tensors, dims, call = _model_inputs(nn.Identity(), teacher, (a, b, labels))
    assert len(tensors) == 2 and dims == (0, 0)  # the labels ignored
    args, kwargs = call(tensors)
    assert len(args) == 2 and torch.equal(args[1], b) and not kwargs
    out = teacher(*args)
    assert _tensor_of(out, "the teacher") is out[0]


# ---------------------------------------------------------------------------------------------
# lora.py
# ---------------------------------------------------------------------------------------------
def test_lora_draws_a_in_the_range_of_its_input_width_and_scales_by_alpha_over_rank():
    gen = torch.Generator().manual_seed(0)
    lora = LoRA(100, 4, 2, 6.0, generator=gen, dtype=torch.float64,
                device=torch.device("cpu"))
    a = lora.A.detach()
    assert a.shape == (2, 4) and float(a.abs().max()) <= 0.5  # 1/sqrt(k), k = 4
    assert float(a.abs().max()) > 0.1  # not 1/sqrt(n), n = 100
    assert torch.equal(lora(), torch.zeros(100, 4))  # B starts at 0
    with torch.no_grad():
        lora.B.fill_(1.0)
    torch.testing.assert_close(lora(), 3.0 * a.sum(0).expand(100, 4))


def test_add_lora_caps_the_rank_at_the_input_width_and_skips_a_tied_weight():
    torch.manual_seed(0)
    x = torch.rand(16, 2, dtype=torch.float64)
    prep = prepare(nn.Sequential(nn.Linear(2, 8)).double().eval(), cimsim.load_chip("ideal"),
                   x, train_noise=False)
    add_lora(prep, rank=4, alpha=8.0)
    (_, twin), = prep.twins()
    assert twin.lora.A.shape == (2, 2) and twin.lora.B.shape == (8, 2)  # min(4, 8, 2)
    assert twin.lora.alpha == pytest.approx(4.0)  # alpha · r / rank: the scale stays α/rank
    first, second = nn.Linear(4, 4), nn.Linear(4, 4)
    second.weight = first.weight  # used under two names
    prep = prepare(nn.Sequential(first, nn.ReLU(), second).double().eval(),
                   cimsim.load_chip("ideal"), torch.rand(16, 4, dtype=torch.float64),
                   train_noise=False)
    with pytest.warns(UserWarning, match="tied"):
        params = add_lora(prep, rank=2)
    assert params == []

"""Second mutation round over the training-loop code: ``cimsim/train/loop.py``, ``distill.py``,
``bn.py``, ``lora.py``, ``ste.py`` and ``_data.py``.

The first round (``test_mutants_train_loop.py``) pinned the loss reductions, the batch cut, the
epoch seed and the calibration arithmetic. This round pins what its mutants still changed
unnoticed: the argument checks and their messages (rates, schedules, data, layers, LoRA
rank and alpha), the optimizer's bookkeeping in ``train_epoch`` (``zero_grad``, a cosine
schedule of one step), the modes and gradient switches of the eval passes, round-half-even in
the straight-through estimators, the list-of-batches rule of BatchNorm calibration and the
adapters' freeze / merge. Toy modules only; each test runs in well under a second.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import ConfigError
from cimsim.train import prepare
from cimsim.train._data import batch_dim_of, eval_pass, model_batches
from cimsim.train.bn import calibrate_bn
from cimsim.train.distill import (
    _model_inputs,
    _required_inputs,
    _tensor_of,
    distill,
    distillation_loss,
    output_cosine,
)
from cimsim.train.loop import (
    as_tensors,
    check_lr,
    check_schedule,
    epoch_seed,
    lr_schedule,
    param_groups,
    train_epoch,
)
from cimsim.train.lora import add_lora, lora_parameters, merge_lora
from cimsim.train.ste import floor_ste, grad_scale, round_ste, with_surrogate


def _tiny(seed: int = 0, frozen: bool = False):
    """A prepared Linear(4, 3) on the ideal chip (noise-free) and its float source."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 3)).double().eval()
    if frozen:
        model.requires_grad_(False)
    x = torch.rand(8, 4, dtype=torch.float64)
    return prepare(model, cimsim.load_chip("ideal"), x, train_noise=False), model, x


# ---------------------------------------------------------------------------------------------
# loop.py: check_lr, check_schedule, lr_schedule
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [float("inf"), float("nan"), True, -1e-3, "1e-3", None])
def test_check_lr_refuses_what_cannot_train_naming_the_field(value):
    """loop.py check_lr: dropping the isfinite test, the bool test or the type test."""
    with pytest.raises(ConfigError, match=r"^step_lr = .* allowed: a finite number > 0"):
        check_lr(value, "step_lr")


def test_check_lr_returns_a_python_float():
    """loop.py check_lr: ``return float(value)`` → ``return value``."""
    out = check_lr(np.float32(0.5))
    assert type(out) is float and out == 0.5
    assert type(check_lr(2)) is float


def test_check_schedule_names_the_allowed_values():
    """loop.py check_schedule: a widened SCHEDULES test or a constant return."""
    with pytest.raises(ConfigError, match=r"schedule = 'linear' is invalid; allowed: "
                                          r"'constant', 'cosine'"):
        check_schedule("linear")
    assert check_schedule("cosine") == "cosine"


def test_a_cosine_schedule_of_one_step_ends_at_zero():
    """loop.py lr_schedule: ``T_max=max(steps, 1)`` → ``max(steps, 2)`` / ``steps + 1``."""
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = lr_schedule(opt, "cosine", epochs=1, n=3, batch_size=4)  # one step in all
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert sched.T_max == 1


def test_lr_schedule_counts_every_epochs_steps_and_checks_them():
    """loop.py lr_schedule: dropping the ``epochs`` factor of the step count."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    assert lr_schedule(opt, "cosine", epochs=3, n=5, batch_size=2).T_max == 9
    with pytest.raises(ConfigError, match="epochs"):
        lr_schedule(opt, "cosine", epochs=0, n=5, batch_size=2)


# ---------------------------------------------------------------------------------------------
# loop.py: as_tensors, epoch_seed
# ---------------------------------------------------------------------------------------------
def test_as_tensors_takes_arrays_and_lists_and_checks_every_sample_dimension():
    """loop.py as_tensors: the ndarray conversion, the list case, the ``dim() > d`` test,
    the ``len(dims)`` test and the message's sample dimensions."""
    x, y = as_tensors("data", [np.zeros((3, 2)), torch.arange(3)])
    assert isinstance(x, torch.Tensor) and x.shape == (3, 2) and torch.equal(y, torch.arange(3))
    with pytest.raises(ConfigError, match="must be a tensor"):
        as_tensors("data", torch.zeros(3), dims=(1,))  # no dimension 1
    with pytest.raises(ConfigError, match="must be a tensor"):
        as_tensors("data", (torch.zeros(3), torch.zeros(3)), dims=(0,))
    with pytest.raises(ConfigError, match=r"along their sample dimensions \[0, 1\] \(\[3, 4\]\)"):
        as_tensors("data", (torch.zeros(3), torch.zeros(2, 4)), dims=(0, 1))
    with pytest.raises(ConfigError, match="^data is empty"):
        as_tensors("data", (torch.zeros(0, 2), torch.zeros(0)))


def test_epoch_seed_refuses_a_negative_epoch():
    """loop.py epoch_seed: dropping ``check_seed(epoch, "epoch")``."""
    with pytest.raises(ConfigError, match="epoch"):
        epoch_seed(0, -1)


# ---------------------------------------------------------------------------------------------
# loop.py: param_groups, warn_if_only_steps_train
# ---------------------------------------------------------------------------------------------
def test_param_groups_rate_a_step_of_zeros_at_lr_and_skip_an_empty_weight_group():
    """loop.py param_groups: the ``1.0`` fallback size, ``sizes > 0`` → ``>= 0``, min → max /
    mean, and the ``if rest`` guard (an empty first group)."""
    prepared, _, _ = _tiny(frozen=True)
    (_, twin), = prepared.twins()
    with torch.no_grad():
        twin.adc_step.zero_()
    steps = {id(getattr(twin, a)) for a in ("weight_scale", "act_scale", "adc_step")
             if getattr(twin, a).requires_grad}
    with pytest.warns(UserWarning, match="only the"):
        groups = param_groups(prepared, 0.1)
    assert all(len(g["params"]) == 1 and id(g["params"][0]) in steps for g in groups)
    rate = {id(g["params"][0]): g["lr"] for g in groups}
    if twin.adc_step.requires_grad:
        assert rate[id(twin.adc_step)] == pytest.approx(0.1)  # no nonzero size: lr · 1
    ws = twin.weight_scale.detach().abs()
    assert rate[id(twin.weight_scale)] == pytest.approx(0.1 * float(ws[ws > 0].min()))


def test_param_groups_warns_at_its_callers_line_only_when_nothing_else_trains():
    """loop.py warn_if_only_steps_train: ``stacklevel=3`` → 1, its ``requires_grad`` test, and
    param_groups's call of it deleted."""
    prepared, _, _ = _tiny(frozen=True)
    with pytest.warns(UserWarning, match="no weight or bias") as record:
        param_groups(prepared, 1e-3)
    assert record[0].filename == __file__
    trainable, _, _ = _tiny()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        param_groups(trainable, 1e-3)


def test_param_groups_leaves_out_frozen_steps():
    """loop.py _step_parameters: dropping ``p.requires_grad`` (a frozen step got a group)."""
    prepared, _, _ = _tiny()
    (_, twin), = prepared.twins()
    for a in ("weight_scale", "act_scale", "adc_step"):
        getattr(twin, a).requires_grad_(False)
    groups = param_groups(prepared, 1e-3)
    assert len(groups) == 1 and groups[0]["lr"] == 1e-3


# ---------------------------------------------------------------------------------------------
# loop.py: train_epoch
# ---------------------------------------------------------------------------------------------
def test_train_epoch_zeroes_the_gradient_before_every_batch():
    """loop.py train_epoch: deleting ``zero_grad`` (gradients accumulate), ``backward`` or
    ``step``. loss = w · sum(batch) on ones: each SGD step (lr 1) moves w by -batch size."""
    w = nn.Parameter(torch.zeros(()))
    holder = nn.Module()
    holder.w = w
    opt = torch.optim.SGD([w], lr=1.0)
    train_epoch(holder, (torch.ones(6),), lambda xb: w * xb.sum(), opt, batch_size=2, seed=0,
                epoch=0, progress=False)
    assert float(w.detach()) == -6.0  # 3 steps of -2; accumulated it would be -2 - 4 - 6


def test_train_epoch_stops_on_an_infinite_loss_naming_the_inputs():
    """loop.py train_epoch: ``isfinite`` → ``isnan``; the inputs range off by one."""
    w = nn.Parameter(torch.zeros(()))
    holder = nn.Module()
    holder.w = w
    with pytest.raises(ConfigError, match=r"the loss is inf in epoch 3, inputs 0\.\.3 of"):
        train_epoch(holder, (torch.ones(6),), lambda xb: w + float("inf"),
                    torch.optim.SGD([w], lr=1.0), batch_size=4, seed=0, epoch=2,
                    progress=False)
    assert float(w.detach()) == 0.0


def test_train_epoch_cuts_along_the_given_sample_dimension_and_checks_its_flags():
    """loop.py train_epoch: ``n`` read from dimension 0 instead of ``dims[0]``; the batch size
    and progress checks deleted."""
    w = nn.Parameter(torch.zeros(()))
    holder = nn.Module()
    holder.w = w
    shapes = []

    def loss_fn(xb):
        shapes.append(tuple(xb.shape))
        return w * 0 + xb.sum()

    train_epoch(holder, (torch.ones(2, 5),), loss_fn, torch.optim.SGD([w], lr=0.1),
                batch_size=2, seed=0, epoch=0, progress=False, dims=(1,))
    assert shapes == [(2, 2), (2, 2), (2, 1)]
    for kw, name in (({"batch_size": 0}, "batch_size"), ({"progress": "x"}, "progress")):
        args = {"batch_size": 2, "progress": False, **kw}
        with pytest.raises(ConfigError, match=name):
            train_epoch(holder, (torch.ones(4),), loss_fn, torch.optim.SGD([w], lr=0.1),
                        seed=0, epoch=0, **args)


# ---------------------------------------------------------------------------------------------
# _data.py
# ---------------------------------------------------------------------------------------------
class _Spy(nn.Module):
    """Records its mode, the grad switch and each input's shape at every forward."""

    def __init__(self, batch_dim: int = 0) -> None:
        super().__init__()
        self.batch_dim = batch_dim
        self.seen: list[tuple] = []

    def forward(self, x):
        self.seen.append((self.training, torch.is_grad_enabled(), tuple(x.shape)))
        if x.shape[-1] == 0:
            raise RuntimeError("bad batch")
        return x


def test_eval_pass_runs_in_eval_mode_without_gradients_and_restores_on_failure():
    """_data.py eval_pass: deleting ``model.eval()``, ``torch.no_grad()`` or the restore."""
    spy = _Spy().train()
    eval_pass(spy, torch.zeros(3, 2), batch_size=2)
    assert spy.seen == [(False, False, (2, 2)), (False, False, (1, 2))]
    with pytest.raises(RuntimeError, match="bad batch"):
        eval_pass(spy, torch.zeros(3, 0), batch_size=2)
    assert spy.training


def test_model_batches_cut_along_the_models_batch_dim():
    """_data.py batch_dim_of / model_batches: the batch_dim attribute ignored."""
    spy = _Spy(batch_dim=1)
    assert batch_dim_of(spy) == 1 and batch_dim_of(nn.Identity()) == 0
    shapes = [tuple(args[0].shape) for args in model_batches(spy, torch.zeros(4, 3), 2)]
    assert shapes == [(4, 2), (4, 1)]


# ---------------------------------------------------------------------------------------------
# ste.py
# ---------------------------------------------------------------------------------------------
def test_round_ste_rounds_half_to_even_and_floor_ste_floors_with_unit_gradients():
    """ste.py: round → floor(x + 0.5), floor → round, and a scaled straight-through grad."""
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, 0.7], requires_grad=True)
    r = round_ste(x)
    assert r.tolist() == [0.0, 2.0, 2.0, -0.0, 1.0]
    r.sum().backward()
    assert x.grad.tolist() == [1.0] * 5
    assert floor_ste(torch.tensor([0.7, -0.2])).tolist() == [0.0, -1.0]


def test_grad_scale_multiplies_and_with_surrogate_sends_nothing_to_exact():
    """ste.py: ``grad * scale`` → ``grad / scale``; ``exact.detach()`` dropped."""
    x = torch.ones(3, requires_grad=True)
    grad_scale(x, 4.0).sum().backward()
    assert x.grad.tolist() == [4.0] * 3
    exact = torch.tensor([2.0], requires_grad=True)
    s = torch.tensor([1.0], requires_grad=True)
    (with_surrogate(exact, 5 * s) * 3).sum().backward()
    assert exact.grad is None and s.grad.tolist() == [15.0]


# ---------------------------------------------------------------------------------------------
# distill.py
# ---------------------------------------------------------------------------------------------
class _Holder(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x=None, **kw):
        return self.model(x if x is not None else kw["x"])


def _pair():
    teacher = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU())
    student = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU())
    with torch.no_grad():
        teacher[0].weight.copy_(torch.eye(2))
        student[0].weight.copy_(2 * torch.eye(2))
    return _Holder(student), teacher


def test_layers_are_checked_deduplicated_and_found_under_the_wrapping_sequential():
    """distill.py _check_layers: the type checks, the dedup, the empty-name test, the
    ``s_mod is None`` test; _student_module's ``0.`` fallback."""
    holder, teacher = _pair()
    x = torch.tensor([[1.0, 2.0]])
    with distillation_loss(holder, teacher, layers=["0", "0"]) as fn:
        assert float(fn(x).detach()) == pytest.approx(5.0)  # output 2.5 + layer "0" once 2.5
    for layers in (["0", 1], "0", 5):
        with pytest.raises(ConfigError, match=r"^layers = .* allowed: None or a list"):
            with distillation_loss(holder, teacher, layers=layers):
                pass
    with pytest.raises(ConfigError, match="^layers: '' is not a submodule"):
        with distillation_loss(holder, teacher, layers=[""]):
            pass
    # prepare() wraps a root module in Sequential "0": a teacher name "weight" is found as "0.0"
    wrapped = _Holder(nn.Sequential(holder.model))
    with distillation_loss(wrapped, teacher, layers=["1"]) as fn:  # the student's "0.1"
        assert float(fn(x).detach()) == pytest.approx(5.0)
    teacher.extra = nn.Identity()  # in the teacher only
    with pytest.raises(ConfigError, match="^layers: 'extra' is not a submodule of both"):
        with distillation_loss(holder, teacher, layers=["extra"]):
            pass


def test_distillation_loss_removes_its_hooks_and_refuses_a_loss_that_is_no_string():
    """distill.py _matching: the hook removal deleted; the ``isinstance(loss, str)`` test."""
    holder, teacher = _pair()
    with distillation_loss(holder, teacher, layers=["0"]):
        pass
    assert not teacher[0]._forward_hooks and not holder.model[0]._forward_hooks
    with pytest.raises(ConfigError, match=r"^loss = \['mse'\] is invalid; allowed: mse, cosine"):
        with distillation_loss(holder, teacher, loss=["mse"]):
            pass


def test_distillation_loss_takes_keyword_inputs_alone():
    """distill.py distillation_loss: ``() if x is None else (x,)`` → ``(x,)`` (a None passed
    positionally to a keyword-only forward)."""
    holder, teacher = _pair()

    class _KwOnly(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *, inp):
            return self.inner(inp)

    with distillation_loss(_KwOnly(holder), _KwOnly(teacher)) as fn:
        assert float(fn(inp=torch.tensor([[1.0, 2.0]])).detach()) == pytest.approx(2.5)


def test_output_cosine_runs_the_model_in_eval_mode_in_batches():
    """distill.py output_cosine: ``model.eval()`` or ``teacher.eval()`` deleted (a
    training-mode Dropout), the batch slice off by one, the mean's divisor."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Dropout(0.9)).train()
    x = torch.rand(5, 3) + 0.5
    assert output_cosine(model, nn.Identity(), x, batch_size=2) == pytest.approx(1.0)
    assert output_cosine(nn.Identity(), model, x, batch_size=2) == pytest.approx(1.0)
    assert model.training
    neg = torch.cat([x[:1], -x[1:]])  # the first input agrees, the others point away
    # the teacher's |x| agrees with the first input only: cos 1, -1, -1, -1, -1
    assert output_cosine(nn.Identity(), _Abs(), neg, batch_size=2) == pytest.approx(-3 / 5)


class _Abs(nn.Module):
    def forward(self, x):
        return x.abs()


def test_required_inputs_leave_out_defaults_and_unknown_signatures():
    """distill.py _required_inputs: ``p.default is empty`` dropped; ValueError not caught."""

    class _M(nn.Module):
        def forward(self, a, b, mask=None, *rest, key=1):
            return a

    assert _required_inputs(_M()) == ["a", "b"]

    class _Bad:
        @property
        def forward(self):
            return max  # a builtin: signature() raises ValueError

    assert _required_inputs(_Bad()) == []


def test_distill_checks_its_arguments_and_needs_something_to_train():
    """distill.py distill: the seed check deleted; the no-groups guard deleted; loop.py
    warn_if_only_steps_train: its ``steps and`` dropped (a warning with no step to train)."""
    prepared, model, x = _tiny()
    with pytest.raises(ConfigError, match="seed"):
        distill(prepared, model, x, seed=-1, progress=False)
    prepared.requires_grad_(False)  # no step trains either: nothing to warn about
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        with pytest.raises(ConfigError, match="^prepared has no trainable parameters"):
            distill(prepared, model, x, progress=False)


def test_model_inputs_cast_floating_inputs_to_the_teachers_dtype_and_count_needed_inputs():
    """distill.py _model_inputs: the dtype cast deleted; the needed-inputs test off by one;
    a dict whose counting tensor has no batch dimension."""
    teacher = nn.Linear(3, 2).double()
    tensors, dims, call = _model_inputs(nn.Identity(), teacher, torch.rand(4, 3))
    assert tensors[0].dtype == torch.float64 and dims == (0,)

    class _Three(nn.Module):
        def forward(self, a, b, c):
            return a

    with pytest.raises(ConfigError, match=r"needs 3 inputs \(a, b, c\); data gives 2"):
        _model_inputs(nn.Identity(), _Three(), (torch.rand(4, 3), torch.rand(4, 3)))
    with pytest.raises(ConfigError, match="dict without a tensor of inputs"):
        _model_inputs(_Spy(batch_dim=1), nn.Identity(), {"x": torch.rand(4)})


def test_model_inputs_warn_about_an_index_tensor_passed_whole():
    """distill.py _model_inputs: ``int(leaf.min()) == 0`` dropped (an index table from 1)."""

    class _Edges(nn.Module):
        def forward(self, x, edges):
            return x

    x = torch.rand(3, 2)
    with pytest.warns(UserWarning, match="holds the integers 0 to 2"):
        _model_inputs(nn.Identity(), _Edges(), (x, torch.tensor([[0, 1], [1, 2]])))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _model_inputs(nn.Identity(), _Edges(), (x, torch.tensor([[1, 1], [1, 2]])))


# ---------------------------------------------------------------------------------------------
# bn.py
# ---------------------------------------------------------------------------------------------
def test_a_one_element_list_is_an_input_cut_into_batches():
    """bn.py _same_batches: ``len(data) > 1`` → ``> 0`` (one tensor read as one batch)."""
    bn = nn.BatchNorm1d(1)
    calibrate_bn(nn.Sequential(bn), [torch.arange(4.0)[:, None]], batch_size=2)
    assert int(bn.num_batches_tracked) == 2


def test_inputs_and_labels_of_one_shape_but_another_dtype_are_not_batches():
    """bn.py _same_batches: the dtype test dropped (the labels calibrated as a batch)."""
    bn = nn.BatchNorm1d(1)
    x, y = torch.full((4, 1), 2.0), torch.zeros(4, 1, dtype=torch.long)
    calibrate_bn(nn.Sequential(bn), (x, y), batch_size=4)
    assert int(bn.num_batches_tracked) == 1 and float(bn.running_mean) == pytest.approx(2.0)


def test_calibration_cuts_a_sequence_first_tensor_along_its_batch_and_reads_pairs():
    """bn.py _inputs: the batch_dim cut (``dim = 0``); ``item[0]`` of an (x, y) iterable."""
    seen = []

    class _SeqBN(nn.Module):
        batch_dim = 1

        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(1)

        def forward(self, x):
            seen.append(tuple(x.shape))
            return self.bn(x.reshape(-1, 1))

    net = _SeqBN()
    calibrate_bn(net, torch.ones(2, 5), batch_size=2)
    assert seen == [(2, 2), (2, 2), (2, 1)]
    bn = nn.BatchNorm1d(1)
    calibrate_bn(nn.Sequential(bn), ((torch.full((2, 1), 3.0), torch.zeros(2)) for _ in "ab"))
    assert float(bn.running_mean) == pytest.approx(3.0) and int(bn.num_batches_tracked) == 2


def test_calibration_leaves_out_a_batchnorm_without_running_statistics():
    """bn.py _batchnorms: the ``track_running_stats`` test dropped."""
    net = nn.Sequential(nn.BatchNorm1d(1, track_running_stats=False), nn.BatchNorm1d(1))
    assert calibrate_bn(net, torch.rand(4, 1)) == 1


def test_calibration_resets_the_count_and_runs_every_module_in_eval():
    """bn.py _estimate: ``reset_running_stats`` / ``module.eval()`` deleted."""
    bn = nn.BatchNorm1d(1)
    with torch.no_grad():
        bn.num_batches_tracked.fill_(7)
        bn.running_mean.fill_(100.0)
    spy = _Spy().train()
    calibrate_bn(nn.Sequential(spy, bn), torch.full((4, 1), 1.0), batch_size=4)
    assert int(bn.num_batches_tracked) == 1 and float(bn.running_mean) == pytest.approx(1.0)
    assert spy.seen[0][0] is False and spy.training


def test_an_empty_iterable_restores_the_statistics_it_had():
    """bn.py _estimate: the ``n == 0`` check and the failure restore deleted."""
    bn = nn.BatchNorm1d(1)
    with torch.no_grad():
        bn.running_mean.fill_(5.0)
        bn.num_batches_tracked.fill_(3)
    with pytest.raises(ConfigError, match="calibrate_bn: data is empty"):
        calibrate_bn(nn.Sequential(bn), [])
    assert float(bn.running_mean) == 5.0 and int(bn.num_batches_tracked) == 3


def test_relative_calibration_checks_feature_counts_and_keeps_the_chips_count():
    """bn.py calibrate_bn: the feature-count test → layer count; the count dropped."""
    net = nn.Sequential(nn.BatchNorm1d(2))
    with pytest.raises(ConfigError, match=r"same order; the model has 1 with \[2\] features"):
        calibrate_bn(net, torch.rand(4, 2), reference=nn.Sequential(nn.BatchNorm1d(3)))
    assert calibrate_bn(net, torch.rand(6, 2), batch_size=2,
                        reference=nn.Sequential(nn.BatchNorm1d(2))) == 1
    assert int(net[0].num_batches_tracked) == 3


# ---------------------------------------------------------------------------------------------
# lora.py
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, match", [
    ({"rank": 0}, "rank"),
    ({"alpha": 0.0}, r"LoRA alpha = 0\.0 is invalid; allowed: a finite number > 0"),
    ({"alpha": math.inf}, "LoRA alpha = inf"), ({"seed": -1}, "seed"),
    # a string was read by float() ("2" as 2.0, "x" a bare ValueError), True as 1.0
    ({"alpha": "2"}, "LoRA alpha = '2' is invalid"), ({"alpha": "x"}, "LoRA alpha = 'x'"),
    ({"alpha": True}, "LoRA alpha = True"),
])
def test_add_lora_refuses_bad_arguments(kw, match):
    """lora.py add_lora: rank >= 0, alpha >= 0, the isfinite test and the seed check."""
    prepared, _, _ = _tiny()
    with pytest.raises(ConfigError, match=match):
        add_lora(prepared, **kw)


def test_add_lora_freezes_w0_defaults_alpha_to_rank_and_refuses_a_second_adapter():
    """lora.py add_lora: W0 left trainable; the default alpha of 1; a signed range of A;
    the second-adapter check; lora_parameters missing B."""
    prepared, _, _ = _tiny()
    params = add_lora(prepared, rank=2)
    (_, twin), = prepared.twins()
    assert not twin.weight.requires_grad
    assert twin.lora.alpha == 2.0 and twin.lora.rank == 2
    assert float(twin.lora.A.detach().min()) < 0 < float(twin.lora.A.detach().max())
    assert lora_parameters(prepared) == params == [twin.lora.A, twin.lora.B]
    with pytest.raises(ConfigError, match="already has a LoRA adapter"):
        add_lora(prepared)


def test_add_lora_skips_a_frozen_weight_and_names_the_other_user_of_a_tied_one():
    """lora.py add_lora: the frozen test dropped; ``others`` keeping the twin's own name."""
    prepared, _, _ = _tiny(frozen=True)
    with pytest.warns(UserWarning, match="frozen"):
        assert add_lora(prepared) == []
    first, second = nn.Linear(4, 4), nn.Linear(4, 4)
    second.weight = first.weight
    prep = prepare(nn.Sequential(first, nn.ReLU(), second).double().eval(), "ideal",
                   torch.rand(8, 4, dtype=torch.float64), train_noise=False)
    with pytest.warns(UserWarning) as record:
        add_lora(prep)
    message = str(record[0].message)
    names = [t.name for _, t in prep.twins()]
    assert f"{names[0]} (tied to {names[1]}." in message  # not to itself


def test_merge_lora_of_one_twin_folds_the_delta_and_unfreezes_it():
    """lora.py merge_lora: a TwinMatmul argument ignored; ``float_weight()`` → ``weight +
    lora()`` (a kept pruning mask lost); ``weight_delta``, ``del lora``, the unfreeze deleted."""
    prepared, _, x = _tiny()
    (_, twin), = prepared.twins()
    with torch.no_grad():
        twin.weight[0, 0] = 0.0
    twin.keep_zeros()  # a pruned weight stays 0 through the merge
    add_lora(prepared, rank=2)
    with torch.no_grad():
        twin.lora.B.fill_(0.5)
    expected = twin.float_weight().detach().clone()
    before = prepared(x).detach()
    merge_lora(twin)
    assert torch.equal(twin.weight.detach(), expected) and float(twin.weight.detach()[0, 0]) == 0.0
    assert twin.weight_delta is None and not hasattr(twin, "lora")
    assert twin.weight.requires_grad
    torch.testing.assert_close(prepared(x).detach(), before)


def test_tensor_of_a_list_output_is_its_first_tensor():
    """distill.py _tensor_of: the ``(tuple, list)`` test → tuple only (a list's leaves were
    concatenated)."""
    a, b = torch.ones(2, 3), torch.zeros(2, 1)
    assert _tensor_of([a, b], "x") is a


def test_model_inputs_do_not_warn_about_a_table_of_zeros_for_one_sample():
    """distill.py _model_inputs: ``n > 1`` → ``n > 0`` (one sample's 0..0 read as indices)."""

    class _Edges(nn.Module):
        def forward(self, x, edges):
            return x

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _model_inputs(nn.Identity(), _Edges(), (torch.rand(1, 2), torch.zeros(3, dtype=torch.long)))


class _Bag(nn.Module):
    """An EmbeddingBag fed the samples' (n, 2) index rows, and a BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(3)
        self.bag = nn.EmbeddingBag(10, 2)

    def forward(self, x, idx):
        return self.bag(idx) + self.bn(x).sum()


class _FlatBag(_Bag):
    """The same bag fed the indices flattened, without offsets (1-D)."""

    def forward(self, x, idx):
        return self.bag(idx.flatten())


def test_the_bag_probe_refuses_flat_indices_and_leaves_the_teachers_statistics():
    """distill.py _refuse_bags_with_offsets: the 1-D input test dropped; ``teacher.eval()``
    deleted (the probe moved a training BatchNorm's statistics); the modes put back;
    _model_inputs's probe on ``min(n, 2)`` samples → 1."""
    x, idx = torch.rand(4, 3) * 5, torch.randint(0, 10, (4, 2))

    with pytest.raises(ConfigError, match="nn.EmbeddingBag 'bag' reads flat indices"):
        _model_inputs(nn.Identity(), _FlatBag(), (x, idx))
    teacher = _Bag().train()
    _model_inputs(nn.Identity(), teacher, (x, idx))

    class _Squeezed(_Bag):  # one sample's row squeezed to 1-D: the probe needs two samples
        def forward(self, x, idx):
            return self.bag(idx.squeeze(0))

    _model_inputs(nn.Identity(), _Squeezed(), (x, idx))
    assert torch.equal(teacher.bn.running_mean, torch.zeros(3))
    assert teacher.training and teacher.bn.training


def test_calibration_of_a_deployed_model_keeps_its_batchnorm_in_training_mode():
    """bn.py _estimate: ``modes_set()`` dropped (the SimModel's forward put BatchNorm back to
    eval: its statistics stayed at their reset values, mean 0)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).double().eval()
    x = torch.rand(16, 4, dtype=torch.float64) + 1.0
    sim = prepare(model, "ideal", x, train_noise=False).deploy(0)
    assert calibrate_bn(sim, x, batch_size=16) == 1
    bn = next(m for m in sim.model.modules() if isinstance(m, nn.BatchNorm1d))
    expected = model[0](x).detach().mean(0)
    torch.testing.assert_close(bn.running_mean.double(), expected, atol=0.05, rtol=0.05)


class TestOutputCosineArguments:
    """``output_cosine`` checked neither its inputs nor its batch size (a bug this round found:
    no inputs raised ``ZeroDivisionError``, ``batch_size=0`` ``range()``'s ValueError, naming
    nothing), unlike every other entry point of the training code (``distill``,
    ``train_epoch``, ``calibrate_bn`` name a bad batch size or empty data in a
    ``ConfigError``)."""

    def test_no_inputs_is_a_config_error_naming_x(self):
        with pytest.raises(ConfigError, match=r"^output_cosine: x is empty"):
            output_cosine(nn.Identity(), nn.Identity(), torch.zeros(0, 2))

    @pytest.mark.parametrize("bad", [0, -1, 2.0, True])
    def test_a_bad_batch_size_is_named_before_any_forward(self, bad):
        calls = []
        model = nn.Identity()
        model.register_forward_hook(lambda *a: calls.append(1))
        with pytest.raises(ConfigError, match=r"^batch_size = .* is invalid"):
            output_cosine(model, nn.Identity(), torch.ones(3, 2), batch_size=bad)
        assert not calls

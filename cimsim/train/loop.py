"""One epoch of training on tensors, reproducible from ``(seed, epoch)`` alone.

:func:`cimsim.train.distill` and ``cimsim train`` share this loop. The minibatch order and the
twin's training noise of epoch ``e`` derive from ``(seed, e)`` only, so a run resumed from the
checkpoint of epoch ``e`` continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._progress import bar_disabled
from .._seed import check_flag, check_positive_int, check_positive_number, check_seed
from ..errors import ConfigError
from .twin import PreparedModel

__all__ = ["SCHEDULES", "STEP_PARAMETERS", "as_tensors", "check_lr", "check_positive_int",
           "check_schedule", "epoch_seed", "lr_schedule", "param_groups", "train_epoch"]

#: Learning-rate schedules of the training loops (``schedule=``, ``cimsim train --schedule``).
SCHEDULES = ("constant", "cosine")


def cross_entropy_of(model: Callable) -> Callable:
    """The loss ``(x, y) -> cross-entropy of model(x)`` on its logits (a dict or ModelOutput
    scores its logits, :func:`cimsim.evaluate.logits_of`): the classifiers' default loss."""
    from ..evaluate import logits_of

    return lambda x, y: F.cross_entropy(logits_of(model(x)), y)


def check_lr(value: object, name: str = "lr") -> float:
    """A finite learning rate > 0, or a ``ConfigError`` naming ``name``."""
    return check_positive_number(name, value)


def check_schedule(schedule: object) -> str:
    """``schedule`` if it is one of :data:`SCHEDULES`, else a ``ConfigError`` naming it."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"schedule = {schedule!r} is invalid; allowed: "
                          f"{', '.join(map(repr, SCHEDULES))}")
    return str(schedule)


def lr_schedule(optimizer: torch.optim.Optimizer, schedule: str, *, epochs: int, n: int,
                batch_size: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-step learning-rate schedule of a run of ``epochs`` passes over ``n`` inputs.

    ``constant``: None (every group keeps its rate). ``cosine``: every group's rate times
    ½·(1 + cos(π·k/K)) after k of the run's K optimizer steps, so 0 after the last
    (``torch.optim.lr_scheduler.CosineAnnealingLR``, stepped per batch by :func:`train_epoch`),
    as ColumnQuant's published training code anneals its rate. Why it matters: at a constant
    Adam rate of 1e-3 a 3-bit partial-sum twin's training loss fell for one or two epochs and
    then climbed back above where it started (docs/columnquant.md §4); annealed, the same rate
    kept its gain. An unknown name is a ``ConfigError``.
    """
    if check_schedule(schedule) == "constant":
        return None
    steps = check_positive_int("epochs", epochs) * math.ceil(n / check_positive_int(
        "batch_size", batch_size))
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))


def as_tensors(name: str, data: object, dims: Sequence[int] | None = None
               ) -> tuple[torch.Tensor, ...]:
    """Training data as a tuple of tensors aligned along dimension 0 (or tensor i along
    ``dims[i]``).

    Parameters
    ----------
    name : str
        The argument's name, for the error message.
    data : Tensor, ndarray, or tuple/list of them
        Inputs, or ``(inputs, labels, ...)``.
    dims : sequence of int, optional
        The dimension of each tensor that holds the samples (a recurrent state's is 1).

    Raises
    ------
    ConfigError
        Not one of those types, empty, or of unequal lengths.
    """
    items = data if isinstance(data, (tuple, list)) else (data,)
    out = tuple(torch.from_numpy(d) if isinstance(d, np.ndarray) else d for d in items)
    dims = tuple(dims) if dims is not None else (0,) * len(out)
    if not out or len(dims) != len(out) or not all(
            isinstance(t, torch.Tensor) and t.dim() > d for t, d in zip(out, dims, strict=True)):
        raise ConfigError(f"{name} must be a tensor, an array or a tuple of them (inputs "
                          f"first); got {type(data).__name__}")
    lengths = [t.shape[d] for t, d in zip(out, dims, strict=True)]
    if lengths[0] == 0:
        raise ConfigError(f"{name} is empty")
    if any(k != lengths[0] for k in lengths):
        along = "dimension 0" if not any(dims) else f"their sample dimensions {list(dims)}"
        raise ConfigError(f"{name}: the tensors differ in length along {along} ({lengths})")
    return out


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` (0-based) of a run seeded by ``seed``.

    Raises
    ------
    ConfigError
        ``seed`` not an integer in [0, 2**64 - 1] (-1 failed in NumPy naming no argument,
        True trained as seed 1), or ``epoch`` not a non-negative integer.
    """
    seed = check_seed(seed)
    epoch = check_seed(epoch, "epoch")
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1)


#: The learned step sizes of a :class:`~cimsim.train.TwinMatmul` (LSQ), by attribute name.
STEP_PARAMETERS = ("weight_scale", "act_scale", "adc_step")


def param_groups(prepared: PreparedModel, lr: float) -> list[dict]:
    """Adam parameter groups: weights and biases at ``lr``, each learned step size at
    ``lr · min|step|`` (the smallest nonzero element of a per-channel or per-column step).

    Adam's update is about ``lr`` in absolute terms whatever the gradient's scale, so LSQ's
    gradient scaling has no effect under it, and a step of 0.004 moved by 0.001 per update
    changes by 25 %: measured on a 64-32-10 MLP on ``rram-22nm`` (4-bit ADC), one Adam lr for
    every parameter made the distillation loss rise. Scaling each step's rate by its own size
    makes every step change by at most about ``lr`` relative per update, as the weights do.
    Adam has one rate per group, and a parameter is in one group: a vector of steps takes the
    rate of its smallest element, so no element moves by more than ``lr`` of itself and the
    larger ones move by less (``lr · min/size``). With ``lr · mean|step|`` a per-column ADC
    step five times below its layer's mean moved by 5·lr of itself per update and reached
    0 in 1/(5·lr) updates in one direction (a GRU's recurrent matrix on ``rram-22nm``).

    Parameters
    ----------
    prepared : PreparedModel
    lr : float

    Returns
    -------
    list of dict
        For ``torch.optim.Adam``; only parameters with ``requires_grad``. A ``UserWarning``
        when only step sizes train (every weight and bias frozen, as ``prepare`` keeps a
        frozen source model's).
    """
    lr = check_lr(lr)  # 0 trained nothing and NaN poisoned every weight, without a word
    steps = _step_parameters(prepared)
    warn_if_only_steps_train(prepared, steps)
    rest = [p for p in prepared.parameters() if p.requires_grad and id(p) not in steps]
    groups: list[dict] = [{"params": rest, "lr": lr}] if rest else []
    for p in steps.values():
        sizes = p.detach().abs()
        sizes = sizes[sizes > 0]  # an element of 0 (a set with no data) has no size to keep
        size = float(sizes.min()) if sizes.numel() else 1.0
        groups.append({"params": [p], "lr": lr * size})
    return groups


def _step_parameters(prepared: PreparedModel) -> dict[int, nn.Parameter]:
    """Every twin's trainable step sizes, by id (a convolution's groups share one act_scale)."""
    steps: dict[int, nn.Parameter] = {}
    for _, twin in prepared.twins():
        for attr in (*STEP_PARAMETERS, "alpha"):
            # every TwinMatmul has the three steps (some may be frozen); ColumnQuant option 3's
            # alphas (cimsim.train.ternary) are step sizes too
            p = getattr(twin, attr, None)
            if p is not None and p.requires_grad:
                steps[id(p)] = p
    return steps


def warn_if_only_steps_train(prepared: PreparedModel,
                             steps: dict[int, nn.Parameter] | None = None) -> None:
    """A ``UserWarning`` when nothing of ``prepared`` but step sizes trains.

    ``prepare`` keeps a frozen source weight frozen (a frozen backbone stays frozen), so a
    model built frozen for inference (``requires_grad_(False)``) trains only its steps, whose
    rate is their own size: the loss barely moves (an encoder's distillation did so unnoticed
    for days). The optimizers of :func:`param_groups` and ColumnQuant say it. ``steps``: the
    trainable step sizes by id, when the caller has them (else found here).
    """
    steps = _step_parameters(prepared) if steps is None else steps
    if steps and not any(p.requires_grad and id(p) not in steps
                         for p in prepared.parameters()):
        warnings.warn("no weight or bias of the prepared model trains (its source model's "
                      "were frozen, requires_grad=False, and prepare keeps them so): only the "
                      f"{len(steps)} step-size parameters learn; call "
                      "model.requires_grad_(True) before prepare to fine-tune the weights",
                      UserWarning, stacklevel=3)


def _freeze_batchnorm(model: nn.Module) -> None:
    # Fine-tuning data may be few and unlabeled: the running statistics the float model was
    # trained with stay, while BatchNorm's affine parameters still learn.
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def train_epoch(model: nn.Module, data: Sequence[torch.Tensor],
                loss_fn: Callable[..., torch.Tensor], optimizer: torch.optim.Optimizer, *,
                batch_size: int, seed: int, epoch: int, progress: bool = True,
                desc: str = "training",
                scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                dims: Sequence[int] | None = None,
                batch_losses: list[float] | None = None) -> float:
    """One pass over ``data`` in a shuffled order; returns the mean loss per input.

    Parameters
    ----------
    model : nn.Module
        Put in training mode (BatchNorm statistics frozen) and left so.
    data : sequence of Tensor
        Aligned along dimension 0; each batch is passed as ``loss_fn(*batch)``, moved to the
        device of ``model``'s first parameter.
    loss_fn : callable
        ``loss_fn(*batch) -> scalar tensor`` (a mean over the batch).
    optimizer : torch.optim.Optimizer
    batch_size : int
    seed, epoch : int
        The order and the global torch RNG (the twin's training noise) derive from these two
        only, in a forked RNG state: the caller's RNG is left as it was.
    progress : bool
        Show a tqdm bar (hidden when not on a terminal).
    desc : str
        The bar's label.
    scheduler : LRScheduler, optional
        Stepped after every optimizer step (:func:`lr_schedule`).
    dims : sequence of int, optional
        The dimension of each tensor of ``data`` that holds the samples, cut and shuffled
        together (default 0 for all; a sequence-first input's 1, a recurrent state's 1).
    batch_losses : list of float, optional
        Each batch's loss is appended to it, in the order the batches ran (``cimsim train``'s
        loss curve).

    Returns
    -------
    float
        Mean of the batch losses weighted by batch size.
    """
    from tqdm.auto import tqdm

    # Recipe.fit, bskmq's fine-tuning and the CLI come here: a batch size of 0 failed in
    # range(), -8 trained nothing and returned 0.0, x and y of other lengths were cut short
    batch_size = check_positive_int("batch_size", batch_size)
    progress = check_flag(progress, "progress")  # "x" was taken for True
    data = as_tensors("data", data, dims)
    dims = tuple(dims) if dims is not None else (0,) * len(data)
    n = int(data[0].shape[dims[0]])
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.train()
    _freeze_batchnorm(model)
    es = epoch_seed(seed, epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(es))
    total = 0.0
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(es)
        bar = tqdm(range(0, n, batch_size), desc=desc, unit="batch", leave=False,
                   disable=bar_disabled(progress))
        for start in bar:
            idx = order[start:start + batch_size]
            batch = tuple(t.index_select(d, idx.to(t.device)).to(device)
                          for t, d in zip(data, dims, strict=True))
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(*batch)
            value = float(loss.detach())
            if not math.isfinite(value):  # before the step: the parameters stay finite
                # a NaN loss stepped the model to NaN, wrote its checkpoint and failed deploy
                raise ConfigError(
                    f"training diverged: the loss is {value} in epoch {epoch + 1}, inputs "
                    f"{start}..{start + idx.numel() - 1} of its shuffled order; a learning "
                    "rate too large for the model (lower lr), or non-finite inputs")
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += value * idx.numel()
            if batch_losses is not None:
                batch_losses.append(value)
            bar.set_postfix(loss=f"{total / min(start + batch_size, n):.4g}")
    return total / n

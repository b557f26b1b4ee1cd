"""Model inputs for the passes the training methods run after ``prepare`` (partial-sum
centres, level refits, BatchNorm calibration, distillation): the same argument tuples as
``prepare``'s calibration pass, cut along the batch dimension the model was prepared with.

They used to take ``data[0]`` and cut it along dimension 0: a sequence-first transformer
(``batch_dim = 1``) was fed sequences cut along time, and a model with a second input
(``nn.Transformer``'s target, a padding mask) lost it."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from ..mapping.deploy import Arguments, _batches
from ._modes import module_modes, restore_modes

__all__ = ["batch_dim_of", "batch_first", "eval_pass", "model_batches"]


def batch_dim_of(model: nn.Module) -> int:
    """The ``batch_dim`` a ``PreparedModel`` or ``SimModel`` was built with (0 otherwise)."""
    return int(getattr(model, "batch_dim", 0))


def model_batches(model: nn.Module, data, batch_size: int) -> Iterable[Arguments]:
    """Argument tuples of ``model`` from ``data`` (a tensor, an array, a tuple of the model's
    positional inputs, a dict of its keyword inputs or an iterable of batches), as ``prepare``
    reads its calibration; call it as ``model(*args, **args.kwargs)``."""
    return _batches(data, batch_size, batch_dim_of(model))


def eval_pass(model: nn.Module, data, batch_size: int) -> None:
    """One forward of ``model`` over ``data`` (:func:`model_batches`) in eval mode, without
    gradients, for what its hooks observe; every module's own training flag is put back
    after, also when the pass fails."""
    modes = module_modes(model)
    model.eval()
    try:
        with torch.no_grad():
            for args in model_batches(model, data, batch_size):
                model(*args, **args.kwargs)
    finally:
        restore_modes(modes)


def batch_first(model: nn.Module, x: torch.Tensor
                ) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """``x`` with ``model``'s batch dimension moved to 0, and the map that moves a batch cut from
    it back: the training loop shuffles and cuts dimension 0, so a sequence-first model
    (``batch_dim = 1``) is cut along its batch, not along time. Identity for batch-first."""
    bd = batch_dim_of(model)
    if not bd or x.dim() <= bd:
        return x, lambda xb: xb
    return x.movedim(bd, 0), lambda xb: xb.movedim(0, bd)

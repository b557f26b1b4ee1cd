"""Label-free fine-tuning: train a prepared model to match its float teacher (distillation).

A pretrained model usually comes without its training labels. What the chip must preserve is
the float model's function, so the twin (:func:`cimsim.train.prepare`) is trained to
reproduce the float teacher's outputs, and optionally the activations of named layers, on
unlabeled inputs (Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", 2015;
matching intermediate activations as FitNets, Romero et al., ICLR 2015).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._inputs import counting_key
from .._seed import check_seed
from ..errors import ConfigError
from ..evaluate import _leaves, logits_of
from ._data import batch_dim_of, batch_first
from ._modes import module_modes, restore_modes
from .loop import as_tensors, check_lr, check_positive_int, lr_schedule, param_groups, train_epoch
from .twin import PreparedModel

__all__ = ["LOSSES", "distill", "distillation_loss", "output_cosine"]

log = logging.getLogger(__name__)


def _mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(student, teacher)


def _cosine(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    # per input, over all its features: scale-free, as the cosine reported for embeddings
    s, t = student.flatten(1), teacher.flatten(1)
    return (1.0 - F.cosine_similarity(s, t, dim=1, eps=1e-12)).mean()


#: Distillation losses by name: ``loss(student, teacher) -> scalar``, a mean over the batch.
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": _mse, "cosine": _cosine}


def _tensor_of(out: object, where: str) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(logits := logits_of(out), torch.Tensor):  # a HuggingFace ModelOutput
        return logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]  # e.g. (output, attention weights): the output is what is matched
    # a dict, list or dataclass of tensors (a multi-head model's outputs): its float tensors
    # matched together, each input's row of all of them side by side
    leaves = [t for t in _leaves(out) if t.is_floating_point()]
    if leaves and all(t.dim() >= 1 and t.shape[0] == leaves[0].shape[0] for t in leaves):
        return torch.cat([t.reshape(t.shape[0], -1) for t in leaves], dim=1)
    raise ConfigError(f"{where} returned {type(out).__name__}; distillation matches tensors: a "
                      "tensor, an output with .logits, or a dict, list or dataclass of float "
                      "tensors with one row per input (matched together)")


def _student_module(prepared: PreparedModel, name: str) -> nn.Module | None:
    modules = dict(prepared.model.named_modules())
    # prepare() wraps a mappable root module in a Sequential named "0"
    return modules.get(name, modules.get(f"0.{name}" if name else "0"))


def _check_layers(prepared: PreparedModel, teacher: nn.Module,
                  layers: Sequence[str] | None) -> list[tuple[str, nn.Module, nn.Module]]:
    if layers is None:
        return []
    if isinstance(layers, str) or not all(isinstance(n, str) for n in layers):
        raise ConfigError(f"layers = {layers!r} is invalid; allowed: None or a list of module "
                          "names of the teacher")
    teacher_modules = dict(teacher.named_modules())
    out = []
    for name in dict.fromkeys(layers):
        t_mod, s_mod = teacher_modules.get(name), _student_module(prepared, name)
        if not name or t_mod is None or s_mod is None:
            known = ", ".join(n for n in teacher_modules if n)[:300]
            raise ConfigError(f"layers: {name!r} is not a submodule of both the teacher and "
                              f"the prepared model; teacher modules: {known}")
        out.append((name, s_mod, t_mod))
    return out


@contextlib.contextmanager
def distillation_loss(prepared: PreparedModel, teacher: nn.Module, *, loss: str = "mse",
                      layers: Sequence[str] | None = None
                      ) -> Iterator[Callable[..., torch.Tensor]]:
    """A loss ``fn(x, *ignored) -> scalar`` of the student against the teacher on inputs ``x``.

    The loss is ``LOSSES[loss](student(x), teacher(x))`` plus, for every name in ``layers``,
    the same loss between that module's outputs in the two models (forward hooks, removed when
    the ``with`` block ends). The teacher runs under ``torch.no_grad()`` in eval mode.

    Parameters
    ----------
    prepared : PreparedModel
        The student (:func:`cimsim.train.prepare`).
    teacher : nn.Module
        The float model; not modified.
    loss : {"mse", "cosine"}
        ``mse``: mean squared error; ``cosine``: mean over inputs of ``1 - cos`` of the
        flattened outputs.
    layers : sequence of str, optional
        Module names as in ``teacher.named_modules()`` whose outputs are matched as well.

    Raises
    ------
    ConfigError
        ``loss`` is not a known name, or a name in ``layers`` is not in both models.
    """
    if loss not in LOSSES:
        raise ConfigError(f"loss = {loss!r} is invalid; allowed: {', '.join(LOSSES)}")
    if not isinstance(teacher, nn.Module):
        raise ConfigError(f"teacher must be a torch nn.Module, got {type(teacher).__name__}")
    match = LOSSES[loss]
    hooked = _check_layers(prepared, teacher, layers)
    seen: dict[tuple[str, str], torch.Tensor] = {}
    handles = []
    for name, s_mod, t_mod in hooked:
        for side, mod in (("student", s_mod), ("teacher", t_mod)):
            def hook(_m, _args, out, key=(side, name)) -> None:
                seen[key] = _tensor_of(out, f"layer {key[1]!r} of the {key[0]}")
            handles.append(mod.register_forward_hook(hook))

    def fn(x: torch.Tensor | None = None, *_ignored: torch.Tensor, **inputs: Any
           ) -> torch.Tensor:
        seen.clear()
        args = () if x is None else (x,)  # keyword inputs alone: a HuggingFace batch
        with torch.no_grad():
            target = _tensor_of(teacher(*args, **inputs), "the teacher")
        total = match(_tensor_of(prepared(*args, **inputs), "the prepared model"), target)
        for name, _, _ in hooked:
            total = total + match(seen[("student", name)], seen[("teacher", name)].detach())
        return total

    modes = module_modes(teacher)  # a BatchNorm the user froze in eval mode stays so
    teacher.eval()
    try:
        yield fn
    finally:
        for h in handles:
            h.remove()
        restore_modes(modes)


def output_cosine(model: nn.Module, teacher: nn.Module, x: torch.Tensor, *,
                  batch_size: int = 256) -> float:
    """Mean over inputs of the cosine between ``model``'s and ``teacher``'s flattened outputs.

    Both run in eval mode under ``torch.no_grad()``; their modes are restored.

    Parameters
    ----------
    model, teacher : nn.Module
    x : Tensor
        Inputs ``(n, ...)``.
    batch_size : int

    Returns
    -------
    float
        In ``[-1, 1]``; 1 when the outputs point the same way for every input.
    """
    modes = module_modes(model) + module_modes(teacher)  # each module's own flag
    total, n = 0.0, int(x.shape[0])
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        model.eval()
        teacher.eval()
        with torch.no_grad():
            for i in range(0, n, batch_size):
                xb = x[i:i + batch_size].to(device)
                s = _tensor_of(model(xb), "the model").flatten(1)
                t = _tensor_of(teacher(xb), "the teacher").flatten(1).to(s.device)
                total += float(F.cosine_similarity(s, t, dim=1, eps=1e-12).sum())
    finally:
        restore_modes(modes)
    return total / n


def _required_inputs(module: nn.Module) -> list[str]:
    """The positional parameters of ``module.forward`` without a default."""
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):  # a scripted or built-in forward: not known
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in params if p.kind in kinds and p.default is inspect.Parameter.empty]


def distill(prepared: PreparedModel, teacher: nn.Module, data, *, epochs: int = 1,
            lr: float = 1e-3, batch_size: int = 64, layers: Sequence[str] | None = None,
            loss: str = "mse", progress: bool = True, seed: int = 0,
            schedule: str = "constant") -> dict:
    """Fine-tune ``prepared`` without labels to match the float ``teacher``'s outputs.

    Adam over every trainable parameter of ``prepared`` (weights and biases at ``lr``, each
    learned scale and ADC step at ``lr`` times its size, a vector of them at ``lr`` times its
    smallest element: :func:`~cimsim.train.loop.param_groups`),
    minimising :func:`distillation_loss` on shuffled minibatches of ``data``.
    The student trains in training mode (the twin's training noise on) with BatchNorm's
    running statistics frozen; afterwards it is left in eval mode.

    Parameters
    ----------
    prepared : PreparedModel
        From :func:`cimsim.train.prepare`; trained in place.
    teacher : nn.Module
        The float model (typically the one ``prepared`` was made from); not modified.
    data : Tensor, ndarray, tuple of them, or dict
        Unlabeled inputs ``(n, ...)``; of a tuple only the first element is used (labels, if
        any, are ignored): a model's further inputs (masks, a decoder's target) take their
        defaults. A model prepared with ``batch_dim = 1`` (sequence-first) is cut along it.
        A dict is the model's keyword inputs (a HuggingFace batch, batch-first): its tensors
        with the sample count along dimension 0 are cut with the batch, the rest passed
        whole; an output's ``logits`` (a ``ModelOutput``) are what is matched.
    epochs : int
        Passes over ``data``.
    lr : float
        Adam's learning rate.
    batch_size : int
    layers : sequence of str, optional
        Teacher module names whose outputs are matched too (see :func:`distillation_loss`).
    loss : {"mse", "cosine"}
        The distance between student and teacher outputs.
    progress : bool
        A tqdm bar per epoch.
    seed : int
        The minibatch order and the training noise of every epoch derive from it.
    schedule : {"constant", "cosine"}
        Adam's rate over the run (:func:`~cimsim.train.loop.lr_schedule`): kept, or annealed
        per step to 0 along a half cosine.

    Returns
    -------
    dict
        ``{"loss": [mean loss of each epoch], "epochs": epochs, "n_inputs": n}``.

    Raises
    ------
    ConfigError
        An argument is invalid; the message names it.
    """
    if not isinstance(prepared, PreparedModel):
        raise ConfigError("prepared must be a PreparedModel from cimsim.train.prepare, got "
                          f"{type(prepared).__name__}")
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    lr = check_lr(lr)
    seed = check_seed(seed)  # a negative one failed in NumPy, naming no argument
    if isinstance(data, Mapping):
        names, tensors, whole = _keyword_inputs(prepared, data)
    else:
        needed = _required_inputs(teacher) if isinstance(teacher, nn.Module) else []
        if len(needed) > 1:  # else the model's own TypeError, from inside the first step
            raise ConfigError(f"distill passes one input per batch (data's first tensor); the "
                              f"teacher's forward needs {len(needed)}: {', '.join(needed)}; "
                              "pass a dict of them to call it with keyword arguments")
        # labels (or anything else) after the inputs are ignored: distillation needs none
        x = as_tensors("data", data[:1] if isinstance(data, (tuple, list)) else data)[0]
        # NumPy's float64 reached a float32 teacher as it was ("mat1 and mat2 must have the
        # same dtype" in the first step; the twin casts its inputs itself)
        dt = next((p.dtype for p in teacher.parameters() if p.is_floating_point()), None) \
            if isinstance(teacher, nn.Module) else None
        if dt is not None and x.is_floating_point() and x.dtype != dt:
            x = x.to(dt)
        x, restore = batch_first(prepared, x)  # a sequence-first model: cut along its batch
        tensors = (x,)
    groups = param_groups(prepared, lr)
    if not groups:
        raise ConfigError("prepared has no trainable parameters")
    optimizer = torch.optim.Adam(groups)
    scheduler = lr_schedule(optimizer, schedule, epochs=epochs, n=int(tensors[0].shape[0]),
                            batch_size=batch_size)
    history: list[float] = []
    with distillation_loss(prepared, teacher, loss=loss, layers=layers) as match:
        if isinstance(data, Mapping):
            fn = lambda *b: match(**dict(zip(names, b, strict=True)), **whole)  # noqa: E731
        else:
            fn = lambda xb, *_r: match(restore(xb))  # noqa: E731
        try:
            for epoch in range(epochs):
                mean = train_epoch(prepared, tensors, fn, optimizer, batch_size=batch_size,
                                   seed=seed, epoch=epoch, progress=progress,
                                   desc=f"distill {epoch + 1}/{epochs}", scheduler=scheduler)
                history.append(mean)
                log.info("distill epoch %d/%d: loss %.6g", epoch + 1, epochs, mean)
        finally:
            prepared.eval()
    return {"loss": history, "epochs": epochs, "n_inputs": int(tensors[0].shape[0])}


def _keyword_inputs(prepared: PreparedModel, data: Mapping
                    ) -> tuple[list[str], tuple[torch.Tensor, ...], dict[str, Any]]:
    """A dict of keyword inputs as the training loop takes it: the names and tensors cut with
    the batch (those with the sample count along dimension 0, counted as deploy counts), and
    the entries passed whole."""
    if batch_dim_of(prepared):
        raise ConfigError("distill on a dict of keyword inputs cuts dimension 0; the model "
                          "was prepared with batch_dim = 1: pass its inputs as a tensor")
    values = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
              for k, v in data.items()}
    key = counting_key(values)
    n = values[key].shape[0] if key is not None and values[key].dim() else 0
    if not n:
        raise ConfigError("data is a dict without a tensor of inputs (n, ...); allowed: the "
                          "model's keyword inputs, as deploy takes them")
    names = [k for k, v in values.items()
             if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n]
    whole = {k: v for k, v in values.items() if k not in names}
    return names, tuple(values[k] for k in names), whole

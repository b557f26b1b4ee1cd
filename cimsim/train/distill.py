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
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._inputs import counting_key, sample_dim
from .._seed import check_seed
from ..errors import ConfigError
from ..evaluate import _leaves, logits_of
from ..mapping.deploy import _as_tensor, _map_leaves, _nested
from ._data import batch_dim_of
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
    if (isinstance(layers, str) or not isinstance(layers, Sequence)  # 5: "not iterable"
            or not all(isinstance(n, str) for n in layers)):
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
    with _matching(prepared, teacher, loss, layers) as on:
        def fn(x: torch.Tensor | None = None, *_ignored: torch.Tensor, **inputs: Any
               ) -> torch.Tensor:
            # keyword inputs alone: a HuggingFace batch
            return on(() if x is None else (x,), inputs)

        yield fn


@contextlib.contextmanager
def _matching(prepared: PreparedModel, teacher: nn.Module, loss: str,
              layers: Sequence[str] | None
              ) -> Iterator[Callable[[Sequence[Any], Mapping[str, Any]], torch.Tensor]]:
    """:func:`distillation_loss` as ``on(args, inputs)``: the models called on positional
    ``args`` and keyword ``inputs`` (``distill`` passes several positional inputs)."""
    if not isinstance(loss, str) or loss not in LOSSES:  # ["mse"]: "unhashable type"
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

    def on(args: Sequence[Any], inputs: Mapping[str, Any]) -> torch.Tensor:
        seen.clear()
        with torch.no_grad():
            target = _tensor_of(teacher(*args, **inputs), "the teacher")
        total = match(_tensor_of(prepared(*args, **inputs), "the prepared model"), target)
        for name, _, _ in hooked:
            total = total + match(seen[("student", name)], seen[("teacher", name)].detach())
        return total

    modes = module_modes(teacher)  # a BatchNorm the user froze in eval mode stays so
    teacher.eval()
    try:
        yield on
    finally:
        for h in handles:
            h.remove()
        restore_modes(modes)


def output_cosine(model: nn.Module, teacher: nn.Module, x: torch.Tensor, *,
                  batch_size: int = 256) -> float:
    """Mean over inputs of the cosine between ``model``'s and ``teacher``'s flattened outputs.

    Both run in eval mode under ``torch.no_grad()``; their modes are restored. The inputs are
    counted and cut along ``model``'s ``batch_dim`` (a model prepared with ``batch_dim=1``, a
    sequence-first one: its time steps were taken for inputs), and an output's inputs are
    found as an extra input's are (:func:`cimsim._inputs.sample_dim`: that dimension where
    it has the batch's count there, a sequence-first ``(S, B, E)``, else dimension 0, a
    classifier's ``(B, C)``).

    Parameters
    ----------
    model, teacher : nn.Module
    x : Tensor
        Inputs, ``n`` along the model's batch dimension.
    batch_size : int

    Returns
    -------
    float
        In ``[-1, 1]``; 1 when the outputs point the same way for every input.

    Raises
    ------
    ConfigError
        ``x`` holds no input, or ``batch_size`` is not a positive integer.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    dim = batch_dim_of(model)
    total, n = 0.0, int(x.shape[dim])
    if n == 0:  # a mean over no inputs (a float division by zero, naming nothing)
        raise ConfigError("output_cosine: x is empty (no inputs to compare)")
    modes = module_modes(model) + module_modes(teacher)  # each module's own flag
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        model.eval()
        teacher.eval()
        with torch.no_grad():
            for i in range(0, n, batch_size):
                nb = min(batch_size, n - i)
                xb = x.narrow(dim, i, nb).to(device)
                s, t = (_per_input(_tensor_of(f(xb), who), nb, dim)
                        for f, who in ((model, "the model"), (teacher, "the teacher")))
                t = t.to(s.device)
                total += float(F.cosine_similarity(s, t, dim=1, eps=1e-12).sum())
    finally:
        restore_modes(modes)
    return total / n


def _per_input(out: torch.Tensor, n: int, batch_dim: int) -> torch.Tensor:
    """``out`` of a batch of ``n`` inputs as (n, values of one input)."""
    dim = sample_dim(out, out.dim(), n, batch_dim)
    return out.movedim(0 if dim is None else dim, 0).flatten(1)


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
        Unlabeled inputs ``(n, ...)``. Of a tuple, the teacher's positional inputs, as many
        as its forward requires (at least one: an LSTM's ``(x, (h0, c0))``); the rest
        (labels, if any) is ignored, and a forward's optional inputs (masks, a decoder's
        target) take their defaults unless passed in a dict, the model's keyword inputs (a
        HuggingFace batch). The first input is cut along the model's ``batch_dim`` (1 for one
        prepared sequence-first), each other tensor along the dimension that holds the
        samples, as deploy cuts its calibration (an initial ``(layers, B, H)`` state along
        1), the rest passed whole; an output's ``logits`` (a ``ModelOutput``) are what is
        matched.
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
    tensors, dims, call = _model_inputs(prepared, teacher, data)
    n = int(tensors[0].shape[dims[0]])
    groups = param_groups(prepared, lr)
    if not groups:
        raise ConfigError("prepared has no trainable parameters")
    optimizer = torch.optim.Adam(groups)
    scheduler = lr_schedule(optimizer, schedule, epochs=epochs, n=n, batch_size=batch_size)
    history: list[float] = []
    with _matching(prepared, teacher, loss, layers) as match:
        def fn(*batch: torch.Tensor) -> torch.Tensor:
            return match(*call(batch))

        try:
            for epoch in range(epochs):
                mean = train_epoch(prepared, tensors, fn, optimizer, batch_size=batch_size,
                                   seed=seed, epoch=epoch, progress=progress,
                                   desc=f"distill {epoch + 1}/{epochs}", scheduler=scheduler,
                                   dims=dims)
                history.append(mean)
                log.info("distill epoch %d/%d: loss %.6g", epoch + 1, epochs, mean)
        finally:
            prepared.eval()
    return {"loss": history, "epochs": epochs, "n_inputs": n}


class _Cut(int):
    """The place of a tensor cut with the batch, in :func:`_model_inputs`'s template."""


def _model_inputs(prepared: PreparedModel, teacher: nn.Module, data: Any
                  ) -> tuple[tuple[torch.Tensor, ...], tuple[int, ...],
                             Callable[[Sequence[torch.Tensor]],
                                      tuple[list[Any], dict[str, Any]]]]:
    """``data`` as the training loop takes it: the tensors cut and shuffled with the batch,
    the dimension of each that holds the samples (the first's ``batch_dim``; the others' by
    :func:`cimsim._inputs.sample_dim`, as deploy cuts its calibration: an initial state's
    dimension 1), and the map from one batch of them to the model's ``(args, kwargs)``, every
    other value passed whole.

    A tuple is the teacher's positional inputs, as many as its forward requires (at least
    one); the rest (labels) is ignored. A dict is its keyword inputs.
    """
    bd = batch_dim_of(prepared)
    needed = _required_inputs(teacher) if isinstance(teacher, nn.Module) else []
    if isinstance(data, Mapping):
        kwargs = {k: _map_leaves(_as_tensor, v) for k, v in data.items()}
        key = counting_key(kwargs, bd)
        if key is None or kwargs[key].dim() <= bd:
            raise ConfigError("data is a dict without a tensor of inputs (n, ...); allowed: "
                              "the model's keyword inputs, as deploy takes them")
        first, args = kwargs[key], []
    else:
        items = list(data) if isinstance(data, (tuple, list)) else [data]
        if not items:
            as_tensors("data", data)  # names what data may be
        if len(needed) > len(items):  # else the model's own TypeError, in the first step
            raise ConfigError(f"the teacher's forward needs {len(needed)} inputs "
                              f"({', '.join(needed)}); data gives {len(items)}: pass them as "
                              "a tuple in that order, or a dict of keyword inputs")
        # labels (or anything else) after the inputs are ignored: distillation needs none
        args, kwargs = [_map_leaves(_as_tensor, a) for a in items[:max(1, len(needed))]], {}
        first = as_tensors("data", args[0], (bd,) if isinstance(args[0], torch.Tensor)
                           and args[0].dim() > bd else None)[0]
    n = int(first.shape[bd])
    # NumPy's float64 reached a float32 teacher as it was ("mat1 and mat2 must have the same
    # dtype" in the first step; the twin casts its inputs itself)
    dt = next((p.dtype for p in teacher.parameters() if p.is_floating_point()), None) \
        if isinstance(teacher, nn.Module) else None
    tensors: list[torch.Tensor] = []
    dims: list[int] = []

    def place(value: Any, is_first: bool) -> Any:
        if _nested(value):
            return type(value)(place(v, False) for v in value)
        if isinstance(value, torch.Tensor) and value.is_floating_point() and dt is not None:
            value = value.to(dt)
        dim = bd if is_first else sample_dim(value, first.dim(), n, bd)
        if dim is None:
            return value
        tensors.append(value)
        dims.append(dim)
        return _Cut(len(tensors) - 1)

    template_args = [place(a, a is first) for a in args]
    template_kwargs = {k: place(v, v is first) for k, v in kwargs.items()}
    for where, value in [*((needed[i] if i < len(needed) else str(i), v)
                           for i, v in enumerate(template_args)), *template_kwargs.items()]:
        for leaf in _leaves(value):  # the tensors passed whole (a cut one is a _Cut)
            if (n > 1 and leaf.layout is torch.strided and not leaf.is_floating_point()
                    and not leaf.is_complex() and leaf.dtype is not torch.bool
                    and leaf.numel() > 1
                    and int(leaf.min()) == 0 and int(leaf.max()) == n - 1):
                # a graph's (2, E) edges over its n nodes: the nodes were shuffled and cut,
                # the edges not (an IndexError inside the model, or a permuted graph)
                warnings.warn(
                    f"distill: input {where!r} is passed whole and holds the integers 0 to "
                    f"{n - 1}, as indices of the {n} samples distill shuffles and cuts "
                    "would; if it indexes them (a graph's edges over its nodes), the model "
                    "trains on samples it no longer matches: distill takes independent "
                    "samples only", UserWarning, stacklevel=3)

    def call(batch: Sequence[torch.Tensor]) -> tuple[list[Any], dict[str, Any]]:
        def fill(value: Any) -> Any:
            if _nested(value):
                return type(value)(fill(v) for v in value)
            return batch[value] if isinstance(value, _Cut) else value

        return ([fill(a) for a in template_args],
                {k: fill(v) for k, v in template_kwargs.items()})

    _refuse_bags_with_offsets(teacher, lambda: call([t.narrow(d, 0, min(n, 2))
                                                     for t, d in zip(tensors, dims,
                                                                     strict=True)]))
    return tuple(tensors), tuple(dims), call


class _BagsFound(Exception):
    """Raised by :func:`_refuse_bags_with_offsets`'s hook to stop the teacher's probe."""


def _refuse_bags_with_offsets(teacher: Any,
                              first_two: Callable[[], tuple[list[Any], dict[str, Any]]]
                              ) -> None:
    """A ``ConfigError`` where the teacher's ``nn.EmbeddingBag`` reads flat indices with
    offsets (on the first two samples, as distill cuts them): those cannot be cut into
    samples, and distill shuffles and cuts every epoch (torch's 'offsets[0] has to be 0', or
    each bag silently read another sample's indices). Decided from what the bag receives, not
    from the inputs' shapes: an integer table passed whole beside 2-D bags is no offset."""
    bags: dict[nn.Module, str] = (
        {m: name for name, m in teacher.named_modules() if isinstance(m, nn.EmbeddingBag)}
        if isinstance(teacher, nn.Module) else {})
    if not bags:  # the samples are cut only for a teacher that has bags
        return
    args, kwargs = first_two()
    found: list[str] = []

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        offsets = args[1] if len(args) > 1 else kwargs.get("offsets")
        first = args[0] if args else kwargs.get("input")
        if offsets is not None or (isinstance(first, torch.Tensor) and first.dim() == 1):
            found.append(bags[module])
            raise _BagsFound

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in bags]
    modes = [(m, m.training) for m in teacher.modules()]
    teacher.eval()  # a BatchNorm's running statistics stay as they are
    try:
        with torch.no_grad(), contextlib.suppress(Exception):
            # another failure is the teacher's own, met as before in the first step
            teacher(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    if found:
        raise ConfigError(
            f"distill: the teacher's nn.EmbeddingBag {found[0]!r} reads flat indices with "
            "offsets, which cannot be cut into the samples distill shuffles and cuts: pass "
            "each sample's bag as a row of a 2-D (n, bag size) index tensor (an EmbeddingBag "
            "takes one without offsets; pad with per_sample_weights 0)")

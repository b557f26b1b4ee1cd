"""Running a classifier over a data set: predicted classes and accuracy, in batches.

The one evaluation loop of cimsim: the command line, sweeps, the digits training code and the
benchmark studies all measure accuracy here, so "accuracy" means the same thing everywhere
(the fraction of inputs whose argmax over dimension 1, the classes, equals the label). Torch
is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from typing import Any

from ._progress import bar_disabled
from ._warn import warn_user
from .config import _is_int

__all__ = ["accuracy", "output_cosine", "predict"]


def _run(model: Any, x: Any, i: int, j: int, batch_dim: int = 0) -> Any:
    """``model`` on samples ``i:j`` of ``x`` along ``batch_dim`` (a dict: keyword inputs,
    ``cimsim._inputs``): :func:`_outputs` of that batch."""
    from ._inputs import input_rows

    return _outputs(model, input_rows(x, i, j, batch_dim))


def _outputs(model: Any, inputs: Any) -> Any:
    """``model`` on one batch of inputs; a HuggingFace-style output's ``logits`` (an
    attribute, or a key of a dict) are the scores."""
    from ._inputs import call_on

    return logits_of(call_on(model, inputs))


def _predicted(out: Any, n_rows: int | None = None) -> tuple[Any, int, int]:
    """``(predicted, n_classes, n_nan)`` of a batch of ``n_rows`` inputs (None: not checked):
    the argmax of every input's class scores, -1 for an input whose scores hold NaN (torch's
    argmax takes a NaN for the largest score: a diverged output predicted a class). Scores
    that are not ``(batch, classes)`` are refused: a ``(batch,)`` output failed in the argmax
    naming nothing."""
    import torch

    scores = _scores(out)
    if scores.dim() != 2 or (n_rows is not None and scores.shape[0] != n_rows):
        rows = "" if n_rows is None else f" for a batch of {n_rows} inputs"
        raise ValueError(f"the model's scores have shape {tuple(scores.shape)}{rows}; allowed: "
                         "(batch, classes), one row of class scores per input")
    pred = scores.argmax(dim=1)
    if not scores.is_floating_point():
        return pred, int(scores.shape[1]), 0
    nan = torch.isnan(scores).any(dim=1)
    n_nan = int(nan.sum())
    if n_nan:
        pred = torch.where(nan, torch.full_like(pred, -1), pred)
    return pred, int(scores.shape[1]), n_nan


def _warn_nan(n_nan: int, n: int) -> None:
    if n_nan:
        warnings.warn(f"{n_nan} of {n} inputs have NaN class scores: they predict no class "
                      "(-1, never a label)", RuntimeWarning, stacklevel=3)


def _check_label_range(y: Any, n_classes: int | None, what: str) -> None:
    """Labels must be classes the model scores, 0 .. n_classes - 1: 1-based labels scored
    0 % without a word (as :func:`score_problem` refuses them for the command line)."""
    if n_classes is None:
        return
    problem = _label_problem(y, n_classes)
    if problem:
        raise ValueError(f"{what}: {problem}")


def _label_problem(y: Any, n_classes: int) -> str | None:
    """The first label outside ``0 .. n_classes - 1`` (the lowest if one is negative), said,
    or None (no labels: None)."""
    if not y.numel():
        return None
    lo, hi = int(y.min()), int(y.max())
    if lo >= 0 and hi < n_classes:
        return None
    return (f"label {lo if lo < 0 else hi} is out of range for the model, which scores "
            f"{n_classes} classes (labels 0..{n_classes - 1})")


def score_problem(model: Any, x: Any, y: Any) -> str | None:
    """What keeps ``model`` from being scored against labels ``y`` on inputs ``x``, or None:
    its output on two inputs must be class scores (batch, classes), one row per input, and
    every label one of those classes (a label beyond them scored 0 % as 'ok', or failed deep
    in a training step)."""
    import torch

    from ._inputs import input_count, input_rows

    example = input_rows(x, 0, 2)
    n = input_count(example)
    out = logits_of(_example_output(model, example))  # as accuracy scores it
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    if shape is None or len(shape) != 2 or shape[0] != n:
        got = f"shape {shape}" if shape is not None else type(out).__name__
        return (f"with labels the model must output class scores of shape (batch, classes); "
                f"on {n} inputs it gives {got}")
    # a negative label too: the command line's and the sweep's check before the deploy,
    # where accuracy refused it only after
    return _label_problem(y, shape[1])


def forward_problem(model: Any, x: Any) -> str | None:
    """What ``model`` raised on the first two inputs of ``x``, or None: inputs of another
    form than the model takes (a feature count, a missing keyword) are refused by name before
    a sweep, where each point failed with the same shape error after its deploy."""
    from ._inputs import input_rows

    try:
        _example_output(model, input_rows(x, 0, 2))
    except Exception as exc:  # whatever the model raises: said with the input's name
        return f"the model fails on its first inputs ({type(exc).__name__}: {exc})"
    return None


def _example_output(model: Any, example: Any) -> Any:
    """``model``'s output on ``example``, without gradients and in eval mode, each module's
    flag put back after: a BatchNorm in training mode would have moved its running statistics
    on the example."""
    import torch

    from ._inputs import call_on
    from ._modes import module_modes, restore_modes

    modes = module_modes(model) if isinstance(model, torch.nn.Module) else []
    try:
        for m, _ in modes:
            m.training = False
        with torch.no_grad():
            return call_on(model, example)
    finally:
        restore_modes(modes)


def logits_of(out: Any) -> Any:
    """A HuggingFace-style output's ``logits`` (an attribute, or a key of a plain dict as of a
    ``ModelOutput``), else ``out``: the scores wherever cimsim scores a model's output."""
    if isinstance(out, Mapping) and "logits" in out:
        return out["logits"]
    return getattr(out, "logits", out)


def _step(batch_size: Any, n: int) -> int:
    """Inputs per forward: ``batch_size``, or all ``n`` for None; a ValueError unless it is
    an integer >= 1 (2.5, True or "3" were taken as 2, 1 and 3)."""
    if batch_size is None:
        return n
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size = {batch_size!r} is invalid; allowed: an integer >= 1 "
                         "or None")
    return int(batch_size)


def _warn_training_mode(model: Any) -> None:
    """Say so when ``model`` is a torch module left in training mode with modules that act
    on it (dropout, BatchNorm): its figure is then not its inference's (a float baseline
    measured with dropout on), and it is evaluated as it is, its mode not changed."""
    import torch

    if not isinstance(model, torch.nn.Module):
        return
    acting = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm)
    live = [name or type(model).__name__ for name, m in model.named_modules()
            if m.training and isinstance(m, acting)]
    if live:
        warn_user(f"{type(model).__name__} is evaluated in training mode ({len(live)} dropout "
                  f"or BatchNorm module(s) act on it, e.g. {live[0]!r}): call model.eval() "
                  "first for its inference figure (its mode is left as it is)")


def _batch_dim(model: Any, batch_dim: int | None) -> int:
    """The dimension of the inputs that counts samples: as given, else the deployed or
    prepared model's own (``deploy(..., batch_dim=1)`` for a sequence-first model), else 0."""
    if batch_dim is None:
        own = getattr(model, "batch_dim", 0)
        batch_dim = own if isinstance(own, int) and not isinstance(own, bool) else 0
    if not _is_int(batch_dim) or batch_dim < 0:  # NumPy's too, as deploy takes them
        raise ValueError(f"batch_dim = {batch_dim!r} is invalid; allowed: an integer >= 0")
    return int(batch_dim)


def _scores(out: Any) -> Any:
    """The one tensor ``predict`` takes the argmax of: a tuple (HuggingFace's
    ``return_dict=False``, the loss first with labels) is named, not guessed at."""
    if not hasattr(out, "argmax"):
        size = f" of {len(out)}" if isinstance(out, (tuple, list, dict)) else ""
        raise ValueError(f"the model returned a {type(out).__name__}{size}, not a tensor of "
                         "scores or an output with .logits: pass return_dict=True (a "
                         "HuggingFace model), or a model returning the scores")
    return out


def _leaves(out: Any) -> list:
    """Every tensor of an output (a dict's values, a list's or tuple's items, a dataclass's
    fields, nested), in order: ``output_cosine`` cuts each by the batch and puts each together
    again. What is no tensor (None, a count, a name) holds no output value to compare."""
    import torch

    if isinstance(out, Mapping):
        return [t for v in out.values() for t in _leaves(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in _leaves(v)]
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        return [t for f in dataclasses.fields(out) for t in _leaves(getattr(out, f.name))]
    return [out] if torch.is_tensor(out) else []


def predict(model: Any, x: Any, *, batch_size: int | None = 256, progress: bool = False,
            desc: str = "evaluating", batch_dim: int | None = None) -> Any:
    """Predicted class of every input: the argmax of ``model``'s output, batch by batch.

    Parameters
    ----------
    model : callable
        A torch module or a deployed model (``cimsim.deploy``); maps ``(B, ...)`` inputs to
        ``(B, n_classes)`` scores. Called under ``torch.no_grad()``; its mode is not changed
        (a module left in training mode with dropout or BatchNorm is warned about).
    x : Tensor or dict
        Inputs, shape ``(n, ...)``; or a dict of the model's keyword inputs (a HuggingFace
        batch), each tensor of length ``n`` cut with the batch. An output with ``logits`` (a
        HuggingFace ``ModelOutput``) is scored by them.
    batch_size : int or None
        Inputs per forward; ``None`` runs all ``n`` in one forward (a deployed model with
        conversion noise draws its noise per forward, so the batching is part of a result).
    progress : bool
        Show a tqdm bar over batches (hidden when not on a terminal, removed when done).
    desc : str
        The bar's label.
    batch_dim : int, optional
        The dimension of ``x`` that counts samples, cut into batches; None: the model's own
        (a ``SimModel`` or ``PreparedModel`` deployed with ``batch_dim=1`` for sequence-first
        inputs), else 0. The scores are ``(B, n_classes)`` whatever it is.

    Returns
    -------
    Tensor
        int64, shape ``(n,)``; -1 for an input whose scores hold NaN (no class predicted; a
        ``RuntimeWarning`` says how many).

    Raises
    ------
    ValueError
        ``batch_size`` is invalid, or the output is no tensor of scores of shape
        ``(batch, classes)`` (a tuple: a HuggingFace model called with ``return_dict=False``).
    """
    _warn_training_mode(model)
    pred, _, n_nan = _predict(model, x, batch_size, progress, desc, batch_dim)
    _warn_nan(n_nan, int(pred.shape[0]))
    return pred


def _predict(model: Any, x: Any, batch_size: int | None, progress: bool, desc: str,
             batch_dim: int | None) -> tuple[Any, int | None, int]:
    """:func:`predict`'s classes, the number of classes scored (None: no input) and the
    inputs whose scores held NaN."""
    import torch
    from tqdm.auto import tqdm

    from ._inputs import input_count

    dim = _batch_dim(model, batch_dim)
    n = input_count(x, dim)
    step = _step(batch_size, n)
    starts = range(0, n, max(step, 1))
    preds = []
    n_classes, n_nan = None, 0
    with torch.no_grad():
        for i in tqdm(starts, desc=desc, unit="batch", leave=False,
                      disable=bar_disabled(progress)):
            pred, n_classes, nan = _predicted(_run(model, x, i, i + step, dim),
                                              min(i + step, n) - i)
            preds.append(pred)
            n_nan += nan
    return (torch.cat(preds) if preds else torch.zeros(0, dtype=torch.int64)), n_classes, n_nan


def accuracy(model: Any, x: Any, y: Any = None, *, batch_size: int | None = 256,
             progress: bool = False, desc: str = "evaluating",
             batch_dim: int | None = None) -> float:
    """Fraction of inputs whose predicted class (:func:`predict`) equals the label.

    Parameters
    ----------
    model, x, batch_size, progress, desc, batch_dim
        As :func:`predict`. Without ``y``, ``x`` is an iterable of ``(inputs, labels)``
        batches, a ``DataLoader`` over a labelled dataset (or of dicts holding ``labels``
        beside the model's keyword inputs, a HuggingFace batch): each batch is one forward, as
        the loader cut it (``batch_size`` is not used then).
    y : Tensor, optional
        Integer labels, shape ``(n,)``.

    Returns
    -------
    float
        In ``[0, 1]``.

    Raises
    ------
    ValueError
        ``x`` is empty, ``y`` does not hold one label per input (1-D, integer class indices;
        floats only if whole numbers) of a class the model scores (0 .. classes - 1), the
        scores are not ``(batch, classes)``, or, without ``y``, a batch is not an ``(inputs,
        labels)`` pair. An input whose scores hold NaN predicts no class (a wrong answer,
        warned about).
    """
    from ._inputs import input_count

    if y is None:
        return _accuracy_of_batches(model, x, progress, desc)
    _warn_training_mode(model)
    dim = _batch_dim(model, batch_dim)
    n = input_count(x, dim)
    if n == 0:
        raise ValueError("cannot evaluate accuracy on an empty set")
    y = _class_labels(y, "accuracy: y")
    if int(y.shape[0]) != n:
        raise ValueError(f"{n} inputs but {int(y.shape[0])} labels"
                         + (f" (inputs counted along dimension {dim})" if dim else ""))
    pred, n_classes, n_nan = _predict(model, x, batch_size, progress, desc, dim)
    _check_label_range(y, n_classes, "accuracy: y")
    _warn_nan(n_nan, n)
    return int((pred == y.to(pred.device)).sum()) / n


def _class_labels(y: Any, what: str) -> Any:
    """``y`` as a 1-D tensor of integer class indices, or a ValueError naming ``what``: labels
    of shape (n, 1) (a pandas column, ``y[:, None]``) compared with (n,) predictions
    broadcast to n x n, an "accuracy" of 300; float targets scored 0 without a word."""
    import torch

    t = torch.as_tensor(y)
    if t.dim() != 1:
        raise ValueError(f"{what} has shape {tuple(t.shape)}; allowed: 1-D, one integer class "
                         "per input (y.ravel() for an (n, 1) column)")
    # (an infinity equals its own rounding: it passed, then int() of it overflowed)
    if t.is_floating_point() and bool(((t != torch.round(t)) | t.isinf()).any()):
        raise ValueError(f"{what} holds values that are not whole numbers; allowed: integer "
                         "class indices (a regression target has none to match: score the "
                         "outputs with cimsim.evaluate.output_cosine)")
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{what} has dtype {t.dtype}; allowed: integer class indices")
    return t


def _accuracy_of_batches(model: Any, batches: Any, progress: bool, desc: str) -> float:
    """:func:`accuracy` over labelled batches: ``(inputs, labels)`` pairs, or dicts whose
    ``labels`` entry is taken out before the model is called on the rest."""
    import torch
    from tqdm.auto import tqdm

    _warn_training_mode(model)
    if hasattr(batches, "shape") or isinstance(batches, Mapping) or not hasattr(batches,
                                                                                "__iter__"):
        raise ValueError(f"accuracy: y is required with inputs of type {type(batches).__name__}"
                         "; allowed without y: an iterable of (inputs, labels) batches, e.g. a "
                         "DataLoader over a labelled dataset")
    correct = total = n_nan = 0
    with torch.no_grad():
        for batch in tqdm(batches, desc=desc, unit="batch", leave=False,
                          disable=bar_disabled(progress)):
            if isinstance(batch, Mapping) and "labels" in batch:
                inputs, labels = {k: v for k, v in batch.items() if k != "labels"}, \
                    batch["labels"]
            elif isinstance(batch, (tuple, list)) and len(batch) == 2:
                inputs, labels = batch
            else:
                what = (f"a {type(batch).__name__} of {len(batch)}"
                        if isinstance(batch, (tuple, list, Mapping)) else type(batch).__name__)
                raise ValueError(
                    f"accuracy: without y, every batch must be an (inputs, labels) pair or a "
                    f"dict with 'labels'; got {what}: pass the labels as y, or a loader that "
                    "yields (inputs, labels)")
            # the batch as the loader cut it
            pred, n_classes, nan = _predicted(_outputs(model, inputs))
            n_nan += nan
            labels = torch.as_tensor(labels).to(pred.device)
            if labels.dim() == 1:
                labels = _class_labels(labels, "accuracy: a batch's labels")
                _check_label_range(labels, n_classes, "accuracy: a batch's labels")
            if labels.shape != pred.shape:
                raise ValueError(f"accuracy: a batch of {int(pred.shape[0])} predictions has "
                                 f"labels of shape {tuple(labels.shape)}; allowed: one "
                                 "integer class per input")
            correct += int((pred == labels).sum())
            total += int(pred.shape[0])
    if total == 0:
        raise ValueError("cannot evaluate accuracy on an empty set")
    _warn_nan(n_nan, total)
    return correct / total


def output_cosine(reference: Any, model: Any, x: Any, *, batch_size: int | None = 256,
                  progress: bool = False, desc: str = "evaluating",
                  batch_dim: int | None = None) -> float:
    """Cosine similarity between ``model``'s and ``reference``'s outputs over all of ``x``.

    The fidelity of a simulated model when there are no labels to score: both outputs of every
    input are flattened into one vector each, so a single number says how far the simulated
    outputs turned from the float ones (1.0: the same direction). An output with ``logits`` (an
    attribute, or a dict's key) counts those; an output that is a dict, a list, a tuple or a
    dataclass of tensors (a detector's, a feature pyramid's) counts all of them.

    Parameters
    ----------
    reference : callable
        The float model, run on the same batches (it draws no noise), so that each output
        element is paired with its own whatever the layout of the outputs.
    model, x, batch_size, progress, desc, batch_dim
        As :func:`predict` (``batch_dim``: None takes ``model``'s own).

    Returns
    -------
    float
        In ``[-1, 1]``; 0.0 when either output is all zeros. Values that are the same
        infinity or NaN in both outputs (a masked logit) agree and are left out; NaN, with a
        ``RuntimeWarning`` saying how many, when the outputs hold non-finite values that
        differ (the cosine is undefined: an inf made it 1.0, a NaN 0.0, before).

    Raises
    ------
    ValueError
        ``x`` is empty, or ``batch_size`` is invalid.
    """
    import torch
    from tqdm.auto import tqdm

    from ._inputs import input_count

    _warn_training_mode(reference)
    _warn_training_mode(model)
    dim = _batch_dim(model, batch_dim)
    n = input_count(x, dim)
    if n == 0:
        raise ValueError("cannot compare outputs on an empty set")
    step = _step(batch_size, n)
    # sums over the batches, not the outputs kept: they held every output of the set (34
    # bytes per value: 4.5 GB for 16,000 inputs of 8,192 outputs, a language model's logits)
    dot = ref_sq = sim_sq = 0.0
    n_ref = n_sim = n_values = differ = 0
    any_ref = any_sim = mismatched = False
    with torch.no_grad():
        for i in tqdm(range(0, n, step), desc=desc, unit="batch", leave=False,
                      disable=bar_disabled(progress)):
            # the reference on the same batch: the two flatten alike whatever dimension of
            # the outputs holds the samples (a sequence-first model's (S, B, E))
            sim_leaves = _leaves(_run(model, x, i, i + step, dim))
            ref_leaves = _leaves(_run(reference, x, i, i + step, dim))
            any_ref, any_sim = any_ref or bool(ref_leaves), any_sim or bool(sim_leaves)
            ref, sim = (torch.cat([t.reshape(-1) for t in leaves]).double() if leaves
                        else torch.zeros(0, dtype=torch.float64)
                        for leaves in (ref_leaves, sim_leaves))
            n_ref, n_sim = n_ref + ref.numel(), n_sim + sim.numel()
            if ref.numel() != sim.numel():  # (a batch apart, though the totals may agree)
                mismatched = True
            if mismatched:
                continue  # refused below, with the whole counts
            n_values += ref.numel()
            finite = torch.isfinite(ref) & torch.isfinite(sim)
            if not bool(finite.all()):
                same = (ref == sim) | (torch.isnan(ref) & torch.isnan(sim))
                differ += int((~finite & ~same).sum())
                ref, sim = ref[finite], sim[finite]  # equal non-finite values agree: left out
            dot += float(ref @ sim)
            ref_sq += float(ref @ ref)
            sim_sq += float(sim @ sim)
    if not any_ref or not any_sim:
        raise ValueError("the model's output holds no tensor to compare (allowed: a tensor, "
                         "or a dict, list, tuple or dataclass of tensors)")
    if mismatched:
        raise ValueError(f"the model's outputs hold {n_sim} values, the reference's {n_ref} "
                         "(compared batch by batch)")
    if differ:
        warnings.warn(f"output_cosine: {differ} of {n_values} output values are non-finite "
                      "(inf or NaN) in one output and not the same in the other: the cosine "
                      "is undefined (NaN)", RuntimeWarning, stacklevel=2)
        return float("nan")
    norm = math.sqrt(ref_sq) * math.sqrt(sim_sq)
    # rounding can push a cosine of identical vectors a hair past 1
    return max(-1.0, min(1.0, dot / norm)) if norm > 0 else 0.0

"""Loading models and data for the command line, safely (no unrestricted pickle).

Models: a ``torch.export`` archive (``.pt2``), a TorchScript archive (anything else that
``torch.jit.load`` reads), or ``module:function`` returning an ``nn.Module``. Exported and
scripted models are graphs of ``aten.linear`` / ``aten.conv*`` calls rather than modules; they
are rewritten so that each such call becomes an ``nn.Linear`` / ``nn.ConvNd`` /
``nn.ConvTransposeNd`` module that :func:`cimsim.deploy` can map.

TorchScript is converted with ``torch._export.converter.TS2EPConverter``, a private torch entry
point reached only through :func:`torchscript_converter`; where it is missing the loader says
to export the model with ``torch.export`` instead.

Data: ``.npz`` with an array ``x`` (inputs) and optionally ``y`` (integer labels), or a tensor
file read with ``torch.load(weights_only=True)`` holding a tensor, a ``(x, y)`` tuple or a
``{"x": ..., "y": ...}`` dict. Without ``x``, the arrays (but ``y``) are the model's keyword
inputs, named as its forward names them (a tokenizer's ``input_ids``, ``attention_mask``):
the inputs are then a dict, cut with the batch and passed as ``model(**inputs)``
(``cimsim._inputs``).

Both are checked here, before anything is deployed: finite inputs with a batch dimension,
labels one integer class index per input, a model that runs on an example of the data and (for
``.pt2``) takes any batch size. A simulation that would fail on them fails in one line at load
time instead of minutes later.
"""

from __future__ import annotations

import copyreg
import importlib
import inspect
import io
import logging
import os
import re
import sys
import types
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from .._inputs import call_on, counting_key, input_rows
from ..errors import CimsimError
from .graph_attention import projection_name, rebuild_attention
from .graph_digital import digital_module_for
from .unmappable import keywords_not_taken

__all__ = ["LoadError", "import_user_module", "load_data", "load_model", "load_model_for",
           "modules_from_graph", "torchscript_converter"]

Inputs = torch.Tensor | dict[str, torch.Tensor]
"""A model's inputs as the data files give them: one tensor, or a dict of keyword inputs."""

_NO_CONVERTER = (
    "this torch ({version}) has no TorchScript converter (torch._export.converter."
    "TS2EPConverter, a private API); export the model instead: "
    "ep = torch.export.export(model, (x,)); torch.export.save(ep, 'model.pt2'), then load "
    "the .pt2 file"
)


class LoadError(CimsimError):
    """A model or data file is missing or has the wrong format."""


def load_data(path: str | Path, integers: bool = False
              ) -> tuple[Inputs, torch.Tensor | None]:
    """Inputs and optional labels from a ``.npz`` or tensor file, checked before any work.

    Parameters
    ----------
    path : str or Path
        An ``.npz`` with an array ``x`` and optionally ``y``, or a file that
        ``torch.load(weights_only=True)`` reads as a tensor, an ``(x, y)`` pair or a dict with
        ``"x"`` (and ``"y"``).
    integers : bool
        Keep integer inputs (token ids) as int64 instead of float32
        (:func:`load_model_for` decides which the model takes).

    Returns
    -------
    x : Tensor or dict of Tensor
        float32 (int64 for integer inputs with ``integers``), shape ``(n, ...)`` with
        ``n >= 1``; every value finite. A dict (the model's keyword inputs) where the file
        has no ``x`` but other arrays: each of ``n`` rows, integers int64.
    y : Tensor or None
        int64 class indices, shape ``(n,)``, every one ``>= 0``.

    Raises
    ------
    LoadError
        The file is missing or unreadable, or the data breaks one of the rules above: a 0-d or
        empty ``x``, NaN or infinite inputs (they would surface much later as an overflow in
        the quantizer), labels that are not one integer ``>= 0`` per input.
    """
    p = Path(path)
    if p.is_dir():
        raise LoadError(f"data {str(p)!r} is a folder; allowed: an .npz file or a tensor file")
    if not p.is_file():
        raise LoadError(f"data file {str(p)!r} not found")
    if p.suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                if not [k for k in z.files if k != "y"]:
                    raise LoadError(f"{p}: an .npz needs an array named 'x', or the model's "
                                    f"keyword inputs by name (found {z.files})")
                arrays = {k: _as_tensor(p, k, z[k]) for k in z.files if k != "y"}
                y_raw: Any = _as_tensor(p, "y", z["y"]) if "y" in z.files else None
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # EOF: empty file
            raise LoadError(f"{p}: not a readable .npz file ({exc})") from None
        if "x" in arrays:
            _only_x(p, arrays)
            return _checked_data(p, arrays["x"], y_raw, integers)
        return _keyword_data(p, arrays, y_raw)
    if p.suffix == ".npy":  # else torch.load's UnpicklingError, which names no way out
        raise LoadError(f"{p}: a .npy file is not read; allowed: an .npz with 'x' (and 'y' "
                        "labels), np.savez(path, x=x, y=y), or a tensor file (torch.save)")
    try:
        obj = torch.load(p, weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises many kinds for a wrong format
        raise LoadError(f"{p}: not a tensor file torch.load(weights_only=True) can read "
                        f"({type(exc).__name__})") from None
    if isinstance(obj, torch.Tensor):
        return _checked_data(p, obj, None, integers)
    if isinstance(obj, (tuple, list)) and 1 <= len(obj) <= 2 and all(
            isinstance(t, torch.Tensor) for t in obj):
        return _checked_data(p, obj[0], obj[1] if len(obj) == 2 else None, integers)
    if isinstance(obj, dict) and obj:
        y = obj.get("y")
        if y is not None and not isinstance(y, torch.Tensor):
            raise LoadError(f"{p}: 'y' must be a tensor of labels; got {type(y).__name__}")
        if isinstance(obj.get("x"), torch.Tensor):
            _only_x(p, {k: v for k, v in obj.items() if k != "y"})
            return _checked_data(p, obj["x"], y, integers)
        bad = [k for k, v in obj.items() if k != "y" and not isinstance(v, torch.Tensor)]
        if not bad and len(obj) > (y is not None):
            return _keyword_data(p, {k: v for k, v in obj.items() if k != "y"}, y)
    raise LoadError(f"{p}: expected a tensor, an (x, y) tuple, a dict with 'x' or a dict of "
                    f"the model's keyword inputs (tensors); got {type(obj).__name__}")


def _only_x(p: Path, arrays: Mapping[str, Any]) -> None:
    """A file with ``x`` holds no other inputs: an ``attention_mask`` beside ``x`` was dropped
    without a word (the model ran unmasked)."""
    others = [k for k in arrays if k != "x"]
    if others:
        raise LoadError(f"{p}: holds 'x' and also {', '.join(repr(k) for k in others)}: the "
                        "inputs are one array 'x' (and 'y' labels), or the model's keyword "
                        "inputs by name; allowed: name 'x' as the model's forward names it "
                        "(e.g. input_ids) so that every array is a keyword input, or leave the "
                        "others out")


def _as_tensor(p: Path, name: str, array: np.ndarray) -> torch.Tensor:
    """An ``.npz`` array as a tensor of its own dtype (the checks judge the dtype, not a cast)."""
    if array.dtype.kind not in "biufc":  # strings, dates, raw bytes: not numbers
        raise LoadError(f"{p}: '{name}' must hold numbers; got dtype {array.dtype}")
    if array.dtype.kind == "u" and array.dtype.itemsize > 1:
        # torch's wide unsigned tensors lack most operations: int64, which holds them (token
        # ids are often uint16 or uint32: as float they failed an Embedding); a uint64 input
        # beyond int64 as float64, a too-large label wraps negative and is refused as one
        fits = array.dtype.itemsize < 8 or array.size == 0 or int(array.max()) < 1 << 63
        array = array.astype(np.int64 if name == "y" or fits else np.float64)
    # np.asarray keeps a 0-d array 0-d (ascontiguousarray would make it 1-d), so that the
    # check refuses it instead of reading one input
    try:
        return torch.from_numpy(np.asarray(array, order="C"))
    except TypeError:  # a numeric dtype torch has no tensor for (float128, ...)
        return torch.from_numpy(np.asarray(array, dtype=np.float64, order="C"))


def _checked_data(p: Path, x: torch.Tensor, y: torch.Tensor | None, integers: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(x as float32, y as int64)`` after the checks of :func:`load_data`."""
    if x.layout != torch.strided:  # its checks below are not implemented for sparse layouts
        raise LoadError(f"{p}: 'x' is a {x.layout} tensor; allowed: a dense tensor "
                        "(x.to_dense())")
    if x.dim() == 0:
        raise LoadError(f"{p}: 'x' is a single number (0-d); it must have the inputs along its "
                        "first dimension, shape (n, ...)")
    if x.shape[0] == 0:
        raise LoadError(f"{p}: 'x' holds no inputs (shape {tuple(x.shape)})")
    if x.dtype.is_complex:
        raise LoadError(f"{p}: 'x' must hold real numbers; got dtype {x.dtype}")
    integer = not (x.dtype.is_floating_point or x.dtype == torch.bool)
    x = x.long() if integers and integer else x.float()
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        n_bad = int((~finite).sum())
        first = tuple(int(i) for i in (~finite).nonzero()[0])
        raise LoadError(f"{p}: 'x' holds {n_bad} NaN or infinite value(s) (or values beyond "
                        f"float32), the first at index {first}; the inputs must be finite")
    if y is None:
        return x, None
    problem = label_problem(y, x.shape[0])
    if problem is not None:
        raise LoadError(f"{p}: labels 'y' {problem}")
    return x, y.long()


def _keyword_data(p: Path, arrays: Mapping[str, torch.Tensor], y: torch.Tensor | None
                  ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """The model's keyword inputs of a data file, checked: each named as a Python argument
    can be, one row per input in every entry (or one row shared by all, passed whole to every
    batch as deploy does); integers stay int64 (token ids, masks), booleans
    bool, the rest float32 and finite."""
    out: dict[str, torch.Tensor] = {}
    # the inputs' count as deploy and evaluate take it (cimsim._inputs): an entry of one row
    # beside longer ones (a shared position_ids of shape (1, S)) is passed whole to every batch
    key = counting_key(arrays)
    n = None if key is None or arrays[key].dim() == 0 else int(arrays[key].shape[0])
    for name, t in arrays.items():
        if not str(name).isidentifier():
            raise LoadError(f"{p}: input {name!r} is no keyword argument name; name the arrays "
                            "as the model's forward names its inputs (or the inputs 'x')")
        if t.layout != torch.strided:  # as 'x' (a float one failed in isfinite, an int passed)
            raise LoadError(f"{p}: input {name!r} is a {t.layout} tensor; allowed: a dense "
                            f"tensor ({name}.to_dense())")
        if t.dim() == 0 or t.shape[0] == 0:
            raise LoadError(f"{p}: input {name!r} holds no inputs along its first dimension "
                            f"(shape {tuple(t.shape)})")
        if t.dtype.is_complex:
            raise LoadError(f"{p}: input {name!r} must hold real numbers; got dtype {t.dtype}")
        n = t.shape[0] if n is None else n
        if t.shape[0] not in (n, 1):
            raise LoadError(f"{p}: the inputs differ in length: {key!r} holds {n}, {name!r} "
                            f"{t.shape[0]} (one row per input in every array, or one row "
                            "shared by all)")
        t = (t if t.dtype == torch.bool else t.float() if t.dtype.is_floating_point
             else t.long())
        if t.dtype.is_floating_point and not bool(torch.isfinite(t).all()):
            raise LoadError(f"{p}: input {name!r} holds NaN or infinite values (or values "
                            "beyond float32); the inputs must be finite")
        out[name] = t
    assert n is not None
    if y is not None and (problem := label_problem(y, n)) is not None:
        raise LoadError(f"{p}: labels 'y' {problem}")
    return out, (None if y is None else y.long())


def label_problem(y: torch.Tensor, n: int) -> str | None:
    """What is wrong with labels ``y`` for ``n`` inputs (1-D integer class indices >= 0, one
    per input), or None; the callers (data files, ``run_sweep``) raise their own error."""
    if y.dim() != 1 or y.shape[0] != n:
        return f"must be 1-D with one per input ({n}); got shape {tuple(y.shape)}"
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        return f"must be integer class indices; got dtype {y.dtype} (save them as integers)"
    if y.layout != torch.strided:
        return f"must be a dense tensor; got a {y.layout} one"
    if y.dtype in (torch.uint16, torch.uint32, torch.uint64):  # no min() for these: int64
        y = y.long()  # (a uint64 beyond int64 wraps negative and is refused below)
    if y.numel() and int(y.min()) < 0:
        return f"must be class indices >= 0; got {int(y.min())}"
    return None


_Converter = Callable[[torch.jit.ScriptModule, tuple], "torch.export.ExportedProgram"]


def torchscript_converter() -> _Converter | None:
    """``convert(scripted, example_args) -> ExportedProgram``, or ``None`` where this torch lacks
    the (private) ``torch._export.converter.TS2EPConverter``."""
    try:
        from torch._export.converter import TS2EPConverter
    except (ImportError, AttributeError):  # a private module: absent or changed in this build
        return None

    def convert(scripted: torch.jit.ScriptModule, args: tuple) -> torch.export.ExportedProgram:
        # the converter logs a warning per specialized dimension (the channels: fixed, as they
        # are): torch's bookkeeping, not the user's, and it would precede an error's one line;
        # so are its warnings ("Manually populate r.weight_ih_l0 into state_dict", "Pred is a
        # Python constant"), about the converter's own tracing
        quiet = logging.getLogger("torch._export")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return TS2EPConverter(scripted, args).convert()
        finally:
            quiet.setLevel(level)

    return convert


def load_model(spec: str, example: Inputs | None = None) -> nn.Module:
    """An ``nn.Module`` from ``module:function``, a ``.pt2`` export or a TorchScript file.

    Parameters
    ----------
    spec : str
        ``module:function`` (a function, or class, that builds the model without arguments),
        a ``torch.export`` archive ``.pt2`` exported with a dynamic batch dimension, or a
        TorchScript file.
    example : Tensor or dict of Tensor, optional
        A small batch of the inputs the model will see, shape ``(b, ...)``. TorchScript needs
        it for the conversion to a graph; given, the float model is run on it once, so that
        inputs of the wrong shape are refused here rather than deep inside a deployment.

    Returns
    -------
    nn.Module
        In eval mode; exported and scripted graphs have their weight calls as modules
        (:func:`modules_from_graph`).

    Raises
    ------
    LoadError
        A missing or unreadable file, a ``module:function`` that cannot be imported or called
        without arguments or does not return a module, a ``.pt2`` with a fixed batch size, or a
        model that refuses ``example``.
    """
    model = _model_from_spec(spec, example)
    if example is not None:
        _check_runs_on(spec, model, example)
    return model


def _model_from_spec(spec: str, example: Inputs | None) -> nn.Module:
    if ":" in spec and not Path(spec).exists():
        return _model_from_factory(spec)
    p = Path(spec)
    if p.is_dir():
        if is_train_checkpoint(_weights_only(p / "checkpoint.pt")):  # a train run's --out
            _refuse_train_checkpoint(p / "checkpoint.pt")
        raise LoadError(f"model {spec!r} is a folder; allowed: a torch.export .pt2, a "
                        "TorchScript file or module:function")
    if not p.is_file():
        raise LoadError(f"model file {spec!r} not found (or use module:function)")
    if p.suffix == ".pt2":
        ep = _load_export(p)
        _check_dynamic_batch(p, ep)
        gm = ep.module()
        _refuse_training_mode(p, gm)
        return _travels_as_file(modules_from_graph(gm), p.read_bytes(), None)
    try:
        scripted = torch.jit.load(str(p), map_location="cpu")
    except Exception as exc:
        obj = _weights_only(p)  # read once for the two guesses below
        if is_train_checkpoint(obj):  # the next step after `cimsim train`, as users tried it
            _refuse_train_checkpoint(p)
        if _is_state_dict(obj):  # the commonest first try: torch.save(model.state_dict(), ...)
            raise LoadError(f"{p}: a state_dict (weights without the model's code) is not a "
                            "model; allowed: module:function naming a function that builds the "
                            "model and loads these weights (or the model's class, if its "
                            "__init__ does), a torch.export .pt2 or a TorchScript file") from None
        raise LoadError(f"{p}: not a TorchScript or torch.export (.pt2) archive "
                        f"({type(exc).__name__}); pickled models are not loaded; allowed: a "
                        "torch.export .pt2, a TorchScript file or module:function") from None
    if example is None:
        raise LoadError("converting a TorchScript model needs example inputs")
    if isinstance(example, dict):
        raise LoadError(f"{p}: a TorchScript model converts on positional inputs, the data "
                        f"holds keyword inputs ({', '.join(example)}); export the model with "
                        "torch.export (kwargs=...) to a .pt2, or use module:function")
    convert = torchscript_converter()
    if convert is None:
        raise LoadError(f"{p}: " + _NO_CONVERTER.format(version=torch.__version__))
    # inputs the model refuses are the data's fault: said so, not as a failed conversion
    # that sends the user to re-export a model that is fine
    _check_runs_on(spec, scripted.eval(), example)
    try:
        gm = _converted(convert, scripted.eval(), example)
    except LoadError as exc:
        raise LoadError(f"{p}: {exc}") from None
    except Exception as exc:
        raise LoadError(f"{p}: TorchScript model could not be converted to a graph "
                        f"({type(exc).__name__}: {_first_line(exc)}); export it with "
                        "torch.export") from None
    return _travels_as_file(modules_from_graph(gm), p.read_bytes(), example)


def _refuse_training_mode(p: Path | None, gm: torch.fx.GraphModule) -> None:
    """A graph recorded from a model in ``train()`` mode: its dropout stays random and its
    batch norm normalises each batch by its own statistics, whatever ``.eval()`` says later
    (the mode is an argument of each call in the graph). Every call whose ``train`` or
    ``training`` argument is True is named in a :class:`LoadError`."""
    found = []
    for node in gm.graph.nodes:
        schema = getattr(node.target, "_schema", None) if node.op == "call_function" else None
        if schema is None:
            continue
        for i, arg in enumerate(schema.arguments):
            if arg.name in ("train", "training"):
                value = node.args[i] if i < len(node.args) else node.kwargs.get(arg.name)
                if value is True:
                    found.append(f"{node.name} ({schema.name.split('::')[-1]})")
    if found:
        where = f"{p}: " if p is not None else ""
        raise LoadError(f"{where}the model was recorded in training mode ({len(found)} call(s) "
                        f"with training on: {', '.join(found[:4])}"
                        f"{', ...' if len(found) > 4 else ''}): its dropout would stay random "
                        "and its batch norm use each batch's statistics; allowed: export or "
                        "trace model.eval()")


def _converted(convert: _Converter, scripted: torch.jit.ScriptModule, example: torch.Tensor
               ) -> torch.fx.GraphModule:
    """The graph of ``scripted``, taking any batch size.

    The converter traces with every dimension dynamic where it can, but an operation that
    checks a size pins it: a scripted ``nn.GRU`` pins the batch to the example's, and the
    graph's guard then stopped calibration's first larger batch with an ``AssertionError``
    ("Guard failed: x_1.size()[0] == 2"). The graph is run on a batch one larger than the
    example and compared with the scripted model; where the guard refuses it, the guard is
    replaced by one that checks every dimension but the batch (still fixed as converted), and
    the graph is kept if it then computes what the scripted model does.
    """
    gm = _named_as_scripted(convert(scripted, (example,)).module(), scripted)
    _refuse_training_mode(None, gm)  # before the batch check: a random dropout fails it
    larger = torch.cat([example, example[:1]])
    with torch.no_grad():
        try:
            want = scripted(larger)
        except Exception as exc:
            raise LoadError(f"the model refuses a batch of {len(larger)} ({type(exc).__name__}: "
                            f"{_first_line(exc)}); cimsim runs it on batches of any size"
                            ) from None
    if _computes_like(gm, larger, want):
        return gm
    if isinstance(getattr(gm, "_guards_fn", None), nn.Module):
        gm._guards_fn = _SampleShapeGuard(tuple(example.shape[1:]))
        if _computes_like(gm, larger, want):
            return gm
    raise LoadError(f"the TorchScript converter fixed the batch size at {len(example)} (the "
                    f"graph refuses or miscomputes a batch of {len(larger)}); export the model "
                    "with torch.export and a dynamic batch dimension (.pt2), or use "
                    "module:function")


def _named_as_scripted(gm: torch.fx.GraphModule, scripted: torch.jit.ScriptModule
                       ) -> torch.fx.GraphModule:
    """``gm`` with the weights the converter lifted to anonymous constants (``lifted_tensor_0``
    ...: a scripted ``nn.GRU``'s flat weights) read from their names in ``scripted``
    (``r.weight_ih_l0``), the same tensors: the layer rebuilt from them then takes its module's
    name, as a deployed module's layer does, and so its programming draw (seeded by the name)."""
    names = {t.data_ptr(): k for k, t in scripted.state_dict().items() if t.numel()}
    for node in gm.graph.nodes:
        if node.op != "get_attr" or not str(node.target).startswith("lifted_tensor_"):
            continue
        tensor = getattr(gm, node.target, None)
        name = names.get(tensor.data_ptr()) if isinstance(tensor, torch.Tensor) else None
        if name is None or "." not in name:
            continue
        path, _, attr = name.rpartition(".")
        holder: Any = gm
        for part in path.split("."):  # making the holders the converter did not make
            if not hasattr(holder, part):
                holder.add_module(part, nn.Module())
            holder = getattr(holder, part)
            if not isinstance(holder, nn.Module):
                break
        if (not isinstance(holder, nn.Module) or hasattr(holder, attr)
                or next(holder.children(), None) is not None):
            continue  # the name is taken, or a real module's: keep the converter's
        holder.register_buffer(attr, tensor)
        node.target = name
    # the holders made above come last among gm's modules: put them in the scripted model's
    # order, which deploy's layer order (reports, traces) follows, as for the module itself
    order = [n for n, _ in scripted.named_children() if n in gm._modules]
    rest = [n for n in gm._modules if n not in order]
    gm._modules = type(gm._modules)((n, gm._modules[n]) for n in order + rest)
    gm.recompile()
    return gm


class _SampleShapeGuard(nn.Module):
    """A converted TorchScript graph's guard with the batch freed (:func:`_converted`): every
    other dimension of the input stays as converted."""

    _is_impure = True  # kept by torch.fx's dead-code removal, though its call returns nothing

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor, *others: Any) -> None:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"this converted TorchScript model takes inputs of shape (batch, "
                             f"{', '.join(map(str, self.shape))}); got {tuple(x.shape)}")


def _computes_like(gm: torch.fx.GraphModule, x: torch.Tensor, want: Any) -> bool:
    """Whether the converted ``gm`` runs on ``x`` and gives ``want`` (the scripted model's)."""
    with torch.no_grad():
        try:
            got = gm(x)
        except Exception:  # the guard, or a size baked into the graph
            return False
    try:
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, check_dtype=False)
    except (AssertionError, TypeError, ValueError):
        return False
    return True


def _weights_only(p: Path) -> Any:
    """The object a weights-only ``torch.load`` reads from ``p`` (no code unpickled), or None
    where it is not such a file."""
    try:
        return torch.load(p, weights_only=True, map_location="cpu")
    except Exception:  # not a weights-only torch file at all
        return None


TRAIN_CHECKPOINT_KEYS = frozenset({"epoch", "model", "optimizer", "loss", "run"})
"""What a ``cimsim train`` checkpoint (``OUT/checkpoint.pt``) holds at the least."""


def is_train_checkpoint(state: Any) -> bool:
    """Whether ``state`` (a weights-only ``torch.load``) is a ``cimsim train`` checkpoint:
    its keys, the twin's state and optimizer's as mappings, the epoch's mean losses as a
    list and the run's identity as a mapping (another tool's checkpoint with the same names
    is not one)."""
    return (isinstance(state, Mapping) and TRAIN_CHECKPOINT_KEYS <= set(state)
            and isinstance(state["model"], Mapping) and isinstance(state["optimizer"], Mapping)
            and isinstance(state["loss"], list) and isinstance(state["run"], Mapping))


def _refuse_train_checkpoint(p: Path) -> NoReturn:
    raise LoadError(f"{p}: a `cimsim train` checkpoint (the state of a training run, not a "
                    "model); `cimsim train` simulates the model it trained: run the same train "
                    "command again with --sweep AXIS=VALUES (or --sweep-adc-bits), it resumes "
                    "from the checkpoint without training again and sweeps the trained model "
                    "(docs/training.md)")


def _is_state_dict(obj: Any) -> bool:
    """Whether ``obj`` (a weights-only ``torch.load``, :func:`_weights_only`) is a mapping of
    names to tensors."""
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _travels_as_file(model: nn.Module, data: bytes, example: torch.Tensor | None) -> nn.Module:
    """``model``, pickled as the bytes of the file it was loaded from.

    A module made by ``ExportedProgram.module()`` holds local functions that pickle refuses, and
    ``cimsim sweep --jobs N`` / ``--scheduler`` send the model to other processes or machines
    (no shared file system needed). torch.fx gives each ``GraphModule`` its own class, so
    registering a reducer for ``type(model)`` affects this model alone; the receiver loads the
    same file the same way (:func:`_model_from_bytes`), the model being never modified.
    """
    copyreg.pickle(type(model), lambda m: (_model_from_bytes, (data, example)))
    return model


def _model_from_bytes(data: bytes, example: torch.Tensor | None) -> nn.Module:
    """The model of a ``.pt2`` (``example`` None) or TorchScript file's bytes, as loaded."""
    if example is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.load(io.BytesIO(data))
    else:
        convert = torchscript_converter()
        assert convert is not None  # the sender converted with it
        return _travels_as_file(modules_from_graph(_converted(
            convert, torch.jit.load(io.BytesIO(data), map_location="cpu").eval(), example)),
            data, example)
    return _travels_as_file(modules_from_graph(ep.module()), data, example)


def _model_from_factory(spec: str) -> nn.Module:
    """The module ``module:function`` builds; the function must need no arguments."""
    mod_name, _, fn_name = spec.rpartition(":")
    try:
        mod = import_user_module(mod_name)
    except ImportError as exc:
        raise LoadError(f"cannot import module {mod_name!r} ({exc})") from None
    except Exception as exc:  # the module's own top-level code failed
        raise LoadError(f"importing module {mod_name!r} failed ({type(exc).__name__}: "
                        f"{_first_line(exc)})") from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise LoadError(f"{mod_name!r} has no callable {fn_name!r}")
    try:
        inspect.signature(fn).bind()
    except TypeError:  # it needs arguments: not a model factory
        raise LoadError(f"{spec} is not a model factory: {fn_name}{inspect.signature(fn)} "
                        "needs arguments; --model wants a function that builds the model "
                        "from none") from None
    except ValueError:  # a builtin without a signature: calling it will tell
        pass
    try:
        model = fn()
    except Exception as exc:
        raise LoadError(f"{spec}() failed: {type(exc).__name__}: {_first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise LoadError(f"{spec} returned {type(model).__name__}, not a torch nn.Module")
    return model.eval()


def _load_export(p: Path) -> torch.export.ExportedProgram:
    """``torch.export.load`` with torch's own log lines and warnings held back: a damaged file
    gets cimsim's one line, not torch's traceback logged before it."""
    export_log = logging.getLogger("torch.export")
    was_disabled = export_log.disabled
    export_log.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.load(p)
    except Exception as exc:
        raise LoadError(f"{p}: not a torch.export archive ({type(exc).__name__})") from None
    finally:
        export_log.disabled = was_disabled


def _check_dynamic_batch(p: Path, ep: torch.export.ExportedProgram) -> None:
    """Refuse an export whose inputs have a fixed first dimension: calibration and evaluation
    run batches of other sizes, and the exported graph's guard would stop them midway."""
    names = set(ep.graph_signature.user_inputs)
    for node in ep.graph.nodes:
        if node.op != "placeholder" or node.name not in names:
            continue
        shape = getattr(node.meta.get("val"), "shape", None)
        if shape is not None and len(shape) and isinstance(shape[0], int):
            raise LoadError(
                f"{p}: exported with a fixed batch of {shape[0]} (input {node.name!r}, shape "
                f"{tuple(shape)}); cimsim runs batches of other sizes. Export it with a dynamic "
                "batch: torch.export.export(model, (x,), dynamic_shapes=({0: "
                "torch.export.Dim('batch')},)) with x of 2 or more inputs")


def import_user_module(name: str) -> Any:
    """The module of a ``module:function`` spec: a dotted name importable from ``sys.path``
    or, failing that, from the current folder (as ``python -m`` would find it; the installed
    ``cimsim`` script does not search there), or a ``path/to/file.py``, imported by its stem
    with its folder added to ``sys.path`` (worker processes import it by that name)."""
    if name.endswith(".py"):
        path = Path(name).expanduser().resolve()
        if not path.is_file():
            raise ImportError(f"no file {name!r}")
        folder, name = str(path.parent), path.stem
        if folder not in sys.path:
            sys.path.insert(0, folder)
        return importlib.import_module(name)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        top = name.split(".")[0]
        if exc.name != top or not (Path(top + ".py").is_file() or Path(top).is_dir()):
            raise
    sys.path.append(os.getcwd())
    return importlib.import_module(name)


def load_model_for(spec: str, x: Inputs) -> tuple[nn.Module, Inputs]:
    """:func:`load_model` checked on the data's first inputs, and the inputs to feed it.

    Integer inputs (``load_data(..., integers=True)``) stay integer for a model that takes
    them (token ids for an ``nn.Embedding``); a model that refuses them but runs on floats
    (images saved as uint8) gets them as float32, as ``load_data`` gives them by default.
    Floating inputs a model of float64 or half-precision weights refuses (``load_data``'s
    float32) are cast to its weights' dtype.
    Keyword inputs (a dict) are passed as they are.
    """
    if isinstance(x, dict):
        if _built_from_example(spec):  # said it needs example inputs, though the data held them
            _model_from_spec(spec, input_rows(x, 0, 2))  # its own words for keyword inputs
        model = load_model(spec)
        _check_keyword_names(spec, model, x)
        try:
            _check_runs_on(spec, model, input_rows(x, 0, 2))
            return model, x
        except LoadError as refused:  # a float64 or half model: its floating entries as it
            own = _weights_dtype(model)
            if own is None or not any(t.is_floating_point() and t.dtype != own
                                      for t in x.values()):
                raise
            cast = {k: t.to(own) if t.is_floating_point() else t for k, t in x.items()}
            try:
                _check_runs_on(spec, model, input_rows(cast, 0, 2))
            except LoadError:
                raise refused from None
            return model, cast
    example = x[: min(len(x), 2)]
    if x.dtype.is_floating_point:
        return _floats_for(spec, x, example)
    try:
        return load_model(spec, example=example), x
    except LoadError as as_int:
        try:  # images saved as integers: floats, in the weights' dtype where it needs one
            return _floats_for(spec, x.float(), example.float())
        except LoadError as as_float:  # both refused: say what each gave
            if str(as_float) == str(as_int):
                raise
            raise LoadError(f"{as_float}; as int64 (token ids): "
                            f"{str(as_int).split(': ', 1)[-1]}") from None


def _floats_for(spec: str, x: torch.Tensor, example: torch.Tensor
                ) -> tuple[nn.Module, torch.Tensor]:
    """The model of ``spec`` and the floating inputs ``x`` it runs on: as they are, or cast
    to its weights' dtype where it refuses them (a float64 or half-precision model and
    load_data's float32; a TorchScript one too, whose conversion runs on the example)."""
    model: nn.Module | None = None
    try:
        model = _model_from_spec(spec, example)
        _check_runs_on(spec, model, example)
        return model, x
    except LoadError as refused:
        own = _weights_dtype(model) if model is not None else _scripted_dtype(spec)
        if own is None or own == x.dtype:
            raise
        try:
            if model is None or _built_from_example(spec):  # TorchScript: converted on it
                return load_model(spec, example=example.to(own)), x.to(own)
            _check_runs_on(spec, model, example.to(own))  # the model built once
            return model, x.to(own)
        except LoadError:
            raise refused from None


def _scripted_dtype(spec: str) -> torch.dtype | None:
    """The one floating dtype of a TorchScript file's weights, or None (not TorchScript, not
    readable, several or none)."""
    if not _built_from_example(spec):
        return None
    try:
        return _weights_dtype(torch.jit.load(spec, map_location="cpu"))
    except Exception:  # torch raises many kinds for a file it cannot read
        return None


def _weights_dtype(model: nn.Module) -> torch.dtype | None:
    """The one floating dtype of the model's weights (float64, float16, bfloat16 ...), or
    None: several or none."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None


def _built_from_example(spec: str) -> bool:
    """Whether :func:`load_model` builds ``spec``'s module from the example inputs (a
    TorchScript file, converted on them), rather than from the spec alone (a factory, a
    ``.pt2``)."""
    return not (":" in spec and not Path(spec).exists()) and Path(spec).suffix != ".pt2"


def _check_keyword_names(spec: str, model: nn.Module, x: Mapping[str, torch.Tensor]) -> None:
    """Keyword inputs the model's forward does not take: most often inputs saved under another
    name than ``x`` (``np.savez(path, inputs=...)``), said so rather than as a TypeError."""
    fit = keywords_not_taken(model, x)
    if fit is None or not fit[1]:
        return
    signature, unknown = fit
    takes = ", ".join(n for n, p in signature.parameters.items() if p.kind not in (
        p.VAR_POSITIONAL, p.VAR_KEYWORD)) or "none"
    raise LoadError(f"the data has no array 'x', and {', '.join(map(repr, unknown))} "
                    f"{'is' if len(unknown) == 1 else 'are'} no keyword input of {spec} "
                    f"(its forward takes: {takes}); name the inputs 'x' "
                    "(np.savez(path, x=x, y=y)), or each array as the forward's argument")


def _check_runs_on(spec: str, model: nn.Module, example: Inputs) -> None:
    """Run the float model once on ``example``: inputs it refuses end here, in one line."""
    try:
        with torch.no_grad():
            call_on(model, example)
    except Exception as exc:
        shapes = (f"of shape {tuple(example.shape)}" if isinstance(example, torch.Tensor) else
                  "(keyword inputs " + ", ".join(f"{k} {tuple(v.shape)}"
                                                 for k, v in example.items()) + ")")
        raise LoadError(f"{spec} cannot run on the data's inputs {shapes}: "
                        f"{type(exc).__name__}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    """An exception's message up to its first line break (torch's run to many lines); for the
    TorchScript interpreter, whose first line is only "The following operation failed", its
    last line: the error of the operation."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].startswith("The following operation failed in the TorchScript interpreter"):
        last = lines[-1].strip()  # "RuntimeError: ...": the caller names the type already
        return re.sub(r"^\w+(Error|Exception): ", "", last)
    return lines[0]


def _tensor(gm: nn.Module, node: Any, depth: int = 0) -> torch.Tensor:
    """The constant weight ``node`` stands for: a graph attribute, or computed from attributes
    alone (weight_norm / spectral_norm export their weight as g·v/‖v‖: folded here)."""
    op = getattr(node, "op", None)
    if op == "call_function" and depth < 32:
        with torch.no_grad():
            args = torch.fx.node.map_arg(node.args, lambda n: _tensor(gm, n, depth + 1))
            kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: _tensor(gm, n, depth + 1))
            value = node.target(*args, **kwargs)
        if isinstance(value, torch.Tensor):
            return value.detach()
        if depth > 0 and isinstance(value, (tuple, list)) and all(
                isinstance(v, torch.Tensor) for v in value):
            # aten.chunk / split / unbind of a constant, read by a getitem: an attention with
            # kdim / vdim takes its q, k, v biases as in_proj_bias.chunk(3)
            return value  # type: ignore[return-value]
    if op != "get_attr":
        raise LoadError(f"weight {node} is computed from the model's inputs in the graph; only "
                        "constant weights map")
    obj: Any = gm
    for part in str(node.target).split("."):
        obj = getattr(obj, part)
    return obj.detach()


def _optional_tensor(gm: nn.Module, node: Any) -> torch.Tensor | None:
    return None if node is None else _tensor(gm, node)


def _conv_args(node: torch.fx.Node) -> tuple | None:
    """``(weight, bias, stride, padding, dilation, groups, output_padding)`` of a convolution
    call (``output_padding`` None for a direct convolution), or None.

    ``torch.export`` writes ``aten.conv1d`` / ``conv2d`` / ``conv3d`` (``.default``, or
    ``.padding`` for ``padding="same"``) and ``aten.conv_transpose1d/2d/3d``; the TorchScript
    converter writes ``aten.convolution`` (``transposed`` for a transposed one) and
    ``aten._convolution_mode`` (string padding).
    """
    aten = torch.ops.aten
    t = node.target
    out_padding = None
    if t in (aten.conv1d.default, aten.conv2d.default, aten.conv3d.default,
             aten.conv1d.padding, aten.conv2d.padding, aten.conv3d.padding):
        args = list(node.args) + [None] * (7 - len(node.args))
        _, w, b, stride, padding, dilation, groups = args[:7]
    elif t in (aten.conv_transpose1d.default, aten.conv_transpose2d.input,
               aten.conv_transpose3d.input):
        args = list(node.args) + [None] * (8 - len(node.args))
        _, w, b, stride, padding, out_padding, groups, dilation = args[:8]
        out_padding = out_padding or 0
    elif t is aten.convolution.default:
        _, w, b, stride, padding, dilation, transposed, out_padding, groups = node.args
        out_padding = out_padding if transposed else None
    elif t is aten._convolution_mode.default:
        _, w, b, stride, padding, dilation, groups = node.args
    else:
        return None
    return w, b, stride or 1, padding or 0, dilation or 1, groups or 1, out_padding


def _as_size(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _recurrent_class(node: torch.fx.Node) -> type[nn.Module] | None:
    """The recurrent cell or layer class a call computes: ``aten.lstm_cell`` / ``gru_cell`` /
    ``rnn_tanh_cell`` / ``rnn_relu_cell`` (``nn.LSTMCell`` ...), ``aten.lstm`` / ``gru`` /
    ``rnn_tanh`` / ``rnn_relu`` on a padded tensor, ``.input`` (``nn.LSTM`` ...); or None. A
    packed sequence's call (``.data``) is none: it stays in float, named by the loader's
    warning."""
    aten = torch.ops.aten
    classes: dict[Any, type[nn.Module]] = {
        aten.lstm_cell.default: nn.LSTMCell, aten.gru_cell.default: nn.GRUCell,
        aten.rnn_tanh_cell.default: nn.RNNCell, aten.rnn_relu_cell.default: nn.RNNCell,
        aten.lstm.input: nn.LSTM, aten.gru.input: nn.GRU,
        aten.rnn_tanh.input: nn.RNN, aten.rnn_relu.input: nn.RNN}
    return classes.get(node.target)


def _cell_kind(node: torch.fx.Node) -> type[nn.RNNCellBase] | None:
    """The recurrent cell class a cell call computes (:func:`_recurrent_class`), or None."""
    cls = _recurrent_class(node)
    return cls if cls is not None and issubclass(cls, nn.RNNCellBase) else None


def _recurrent_kind(node: torch.fx.Node) -> type[nn.RNNBase] | None:
    """The recurrent layer class a whole-sequence call computes (:func:`_recurrent_class`), or
    None."""
    cls = _recurrent_class(node)
    return cls if cls is not None and issubclass(cls, nn.RNNBase) else None


def _nonlinearity(node: torch.fx.Node) -> str:
    """An ``nn.RNNCell`` / ``nn.RNN`` call's nonlinearity."""
    aten = torch.ops.aten
    return "relu" if node.target in (aten.rnn_relu_cell.default, aten.rnn_relu.input) else "tanh"


def _cell_for(gm: torch.fx.GraphModule, node: torch.fx.Node, cls: type[nn.RNNCellBase]
              ) -> nn.RNNCellBase:
    """The cell computing a cell call ``(input, hx, w_ih, w_hh, b_ih=None, b_hh=None)``; one
    bias without the other is the missing one at zero."""
    args = list(node.args) + [None] * (6 - len(node.args))
    w_ih, w_hh = _tensor(gm, args[2]), _tensor(gm, args[3])
    b_ih, b_hh = _optional_tensor(gm, args[4]), _optional_tensor(gm, args[5])
    has_bias = b_ih is not None or b_hh is not None
    mod: nn.RNNCellBase
    if cls is nn.RNNCell:
        mod = nn.RNNCell(w_ih.shape[1], w_hh.shape[1], bias=has_bias,
                         nonlinearity=_nonlinearity(node), **_like(w_ih))
    else:
        make: Callable[..., nn.RNNCellBase] = cls  # LSTMCell / GRUCell: (in, hidden, bias)
        mod = make(w_ih.shape[1], w_hh.shape[1], bias=has_bias, **_like(w_ih))
    with torch.no_grad():
        mod.weight_ih.copy_(w_ih)
        mod.weight_hh.copy_(w_hh)
        if has_bias:
            mod.bias_ih.copy_(b_ih if b_ih is not None else torch.zeros_like(mod.bias_ih))
            mod.bias_hh.copy_(b_hh if b_hh is not None else torch.zeros_like(mod.bias_hh))
    return mod


_RECURRENT_NAMES = re.compile(r"(weight|bias)_(ih|hh|hr)_l\d+(_reverse)?")
"""The parameter names of an ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (its ``_flat_weights_names``)."""


def _recurrent_for(gm: torch.fx.GraphModule, node: torch.fx.Node, cls: type[nn.RNNBase]
                   ) -> nn.RNNBase:
    """The layer computing a call ``(input, hx, params, has_biases, num_layers, dropout, train,
    bidirectional, batch_first)``: ``params`` are its flat weights in ``_flat_weights_names``'
    order (per layer and direction ``w_ih, w_hh[, b_ih, b_hh][, w_hr]``), so the sizes, the
    biases and an LSTM's projection are read off them."""
    args: Any = node.args  # (torch.fx types an argument as any value a graph can hold)
    _, _, params, has_biases, num_layers, dropout, _, bidirectional, batch_first = args
    weights = [_tensor(gm, w) for w in params]
    per_layer = len(weights) // (num_layers * (2 if bidirectional else 1))
    w_ih, w_hh = weights[0], weights[1]
    gates = {nn.LSTM: 4, nn.GRU: 3}.get(cls, 1)
    hidden = w_ih.shape[0] // gates
    extra: dict[str, Any] = {}
    if cls is nn.LSTM and per_layer == 3 + 2 * bool(has_biases):  # a projection w_hr
        extra["proj_size"] = w_hh.shape[1]
    if cls is nn.RNN:
        extra["nonlinearity"] = _nonlinearity(node)
    make: Callable[..., nn.RNNBase] = cls
    # the export's dropout is kept as stated (it acts only in training, as the model's did)
    mod = make(w_ih.shape[1], hidden, num_layers, bias=bool(has_biases),
               batch_first=bool(batch_first), dropout=float(dropout) if num_layers > 1 else 0.0,
               bidirectional=bool(bidirectional), **extra, **_like(w_ih))
    with torch.no_grad():
        for name, w in zip(mod._flat_weights_names, weights, strict=True):
            getattr(mod, name).copy_(w)
    return mod


def _lstm_outputs(out: tuple) -> tuple:
    """``nn.LSTM``'s ``(output, (h, c))`` as ``aten.lstm``'s ``(output, h, c)``."""
    return out[0], out[1][0], out[1][1]


def _product_args(node: torch.fx.Node) -> tuple[Any, Any, Any] | None:
    """``(x, weight, bias)`` of ``x @ W`` written as ``aten.mm`` / ``aten.matmul`` (bias None),
    ``aten.addmm(b, x, W)`` (GPT-2's ``Conv1D``), plain (no ``alpha`` / ``beta``), or
    ``aten.einsum("...i,io->...o", [x, W])`` (as a Python model's ``torch.einsum`` of its
    weight, which deploy maps: ``cimsim.mapping.affine``), or None. Whether ``W`` is a
    constant is for the caller to see."""
    aten = torch.ops.aten
    if node.target in (aten.mm.default, aten.matmul.default) and len(node.args) == 2:
        return node.args[0], node.args[1], None
    if node.target is aten.addmm.default and len(node.args) == 3 and not node.kwargs:
        b, x, w = node.args
        return x, w, b
    if node.target is aten.einsum.default and len(node.args) >= 2:
        equation, operands = node.args[0], node.args[1]
        if (isinstance(equation, str) and isinstance(operands, (list, tuple))
                and len(operands) == 2 and _x_at_w(equation)):
            return operands[0], operands[1], None
    return None


_X_AT_W = re.compile(r"((?:\.\.\.)?[a-zA-Z]*)([a-zA-Z]),\2([a-zA-Z])->\1\3")
"""An einsum equation ``<batch>i,io-><batch>o``: the last index of x summed against the first
of a 2-D W, every other index of x kept in place."""


def _x_at_w(equation: str) -> bool:
    """Whether ``equation`` is ``x @ W`` (:data:`_X_AT_W`, the summed and output indices
    distinct and not batch indices)."""
    m = _X_AT_W.fullmatch(equation.replace(" ", ""))
    if m is None:
        return False
    batch, k, o = m.groups()
    return k != o and k not in batch and o not in batch


def _with_added_bias(gm: torch.fx.GraphModule, node: torch.fx.Node, mod: nn.Linear
                     ) -> tuple[nn.Linear, torch.fx.Node]:
    """``(Linear with bias, the add's node)`` when the product ``node``'s only use is
    ``aten.add.Tensor`` with a constant of its outputs' size (the add then goes with the
    product), else ``(mod, node)``."""
    users = list(node.users)
    if len(users) != 1:
        return mod, node
    (add,) = users
    if add.target is not torch.ops.aten.add.Tensor or add.kwargs or len(add.args) != 2:
        return mod, node
    other = add.args[1] if add.args[0] is node else add.args[0]
    b = _constant(gm, other) if isinstance(other, torch.fx.Node) else None
    if b is None or tuple(b.shape) != (mod.out_features,) or not b.is_floating_point():
        return mod, node
    mod.bias = nn.Parameter(b.to(mod.weight.dtype).clone())
    return mod, add


def _constant(gm: nn.Module, node: Any) -> torch.Tensor | None:
    """The constant ``node`` stands for (:func:`_tensor`), or None when it depends on the
    model's inputs."""
    try:
        return _tensor(gm, node)
    except LoadError:
        return None


def _product_linear(gm: torch.fx.GraphModule, node: torch.fx.Node) -> nn.Linear | None:
    """The ``nn.Linear`` a product call with a constant 2-D floating-point weight (and a
    constant bias of its outputs) computes, the weight transposed to (out, in); None for a
    product of activations (attention's Q·Kᵀ) or anything else. Only a weight its module holds
    as ``weight`` beside at most a ``bias`` (GPT-2's ``Conv1D``), as ``deploy`` maps such a
    module of a Python model (``cimsim.mapping.affine``): ``x @ self.w`` in a module holding
    more stays a functional weight, listed, in both."""
    found = _product_args(node)
    if found is None or _weight_holder_path(gm, node) is None:
        return None
    _, w_node, b_node = found
    w = _constant(gm, w_node) if isinstance(w_node, torch.fx.Node) else None
    if w is None or w.dim() != 2 or not w.is_floating_point() or w.shape[0] < 2:
        return None
    b = None
    if b_node is not None:
        b = _constant(gm, b_node) if isinstance(b_node, torch.fx.Node) else None
        if b is None or tuple(b.shape) not in ((w.shape[1],), (1, w.shape[1])):
            return None
    mod = nn.Linear(w.shape[0], w.shape[1], bias=b is not None, **_like(w))
    with torch.no_grad():
        mod.weight.copy_(w.t())
        if b is not None:
            mod.bias.copy_(b.reshape(-1))
    return mod


def _like(w: torch.Tensor) -> dict[str, Any]:
    """A rebuilt module's factory arguments: the graph's weight's dtype and device (a float64
    export rebuilt in float32 computed its float pass and a twin in float32, and failed on
    float64 inputs: "mat1 and mat2 must have the same dtype")."""
    return {"dtype": w.dtype, "device": w.device}


def _module_for(gm: torch.fx.GraphModule, node: torch.fx.Node) -> nn.Module | None:
    """The ``nn.Linear`` / ``nn.ConvNd`` / ``nn.ConvTransposeNd`` / recurrent cell computing
    ``node``, or None."""
    if (cell := _cell_kind(node)) is not None:
        return _cell_for(gm, node, cell)
    if (layer := _recurrent_kind(node)) is not None:
        return _recurrent_for(gm, node, layer)
    if _product_args(node) is not None:
        return _product_linear(gm, node)
    if node.target is torch.ops.aten.linear.default:
        w = _tensor(gm, node.args[1])
        b = _optional_tensor(gm, node.args[2] if len(node.args) > 2 else None)
        mod: nn.Linear | _ConvNd = nn.Linear(w.shape[1], w.shape[0], bias=b is not None,
                                             **_like(w))
    else:
        conv = _conv_args(node)
        if conv is None:
            return None
        w_node, b_node, stride, padding, dilation, groups, out_padding = conv
        w = _tensor(gm, w_node)
        b = _optional_tensor(gm, b_node)
        kernel: Any = tuple(w.shape[2:])
        geometry = dict(stride=_as_size(stride), padding=_as_size(padding),
                        dilation=_as_size(dilation), groups=groups, bias=b is not None,
                        **_like(w))
        if out_padding is None:
            cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[w.dim() - 3]
            mod = cls(w.shape[1] * groups, w.shape[0], kernel, **geometry)
        else:  # transposed: weights (C_in, C_out/groups, *k)
            tcls = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[w.dim() - 3]
            mod = tcls(w.shape[0], w.shape[1] * groups, kernel,
                       output_padding=_as_size(out_padding), **geometry)
    with torch.no_grad():
        mod.weight.copy_(w)
        if b is not None and mod.bias is not None:
            mod.bias.copy_(b)
    return mod


def _weight_arg(node: torch.fx.Node) -> Any:
    """A linear or convolution call's weight argument (its second), a cell call's W_ih (its
    third), a recurrent layer call's first W_ih (its third's first), a product's weight
    (``x @ W``, ``addmm(b, x, W)``), or None."""
    if (product := _product_args(node)) is not None:
        return product[1]
    if _recurrent_kind(node) is not None:
        params: Any = node.args[2]
        return params[0]
    i = 2 if _cell_kind(node) is not None else 1
    return node.args[i] if len(node.args) > i else None


def _weight_source(node: torch.fx.Node) -> Any:
    """What a call's weight is read from (a parameter's ``get_attr`` target), for telling a
    shared module's second call from another module at the same path."""
    w = _weight_arg(node)
    return getattr(w, "target", w) if isinstance(w, torch.fx.Node) else id(w)


def _original_place(gm: torch.fx.GraphModule, node: torch.fx.Node, mod: nn.Module,
                    installed: dict[str, Any]) -> str | None:
    """The module path the call came from (``nn_module_stack``), when the rebuilt module can
    take its place: the export kept an empty holder of exactly that class's parameters there,
    or the path's module was already rebuilt from the same weight (a shared module's second
    call). Then the layer keeps its name in reports and its programming draw (seeded by the
    name), as deploying the module itself gives; else None (a generated name)."""
    stack = node.meta.get("nn_module_stack") or {}
    path, cls = list(stack.values())[-1] if stack else ("", None)
    if path and cls != f"{type(mod).__module__}.{type(mod).__qualname__}":
        # another class computed it (GPT-2's Conv1D, a Linear subclass): the place is the one
        # holding the weight it reads, when that holds nothing else
        path = ""
    if not path:
        # no module path (a converted TorchScript graph records only its root): the weight's
        # own name, `features.0.weight` -> `features.0`, where the holder has only weights
        path = _weight_holder_path(gm, node)
        if path is None:
            return None
    elif not isinstance(path, str):
        return None
    if path in installed:
        return path if installed[path] == _weight_source(node) else None
    try:
        holder = gm.get_submodule(path)
    except AttributeError:
        return None
    if next(holder.children(), None) is not None or isinstance(holder, type(mod)):
        return None  # it holds other modules, or it is a real one (not the export's holder)
    # the graph reads a tensor of the holder that the new module lacks (a bias added after an
    # activation, or scaled: not folded into the Linear): the holder stays, the module gets a
    # name of its own (replacing it broke the graph's read of `<path>.bias`)
    kept = {n for n, _ in mod.named_parameters(recurse=False)}
    if any(n.op == "get_attr" and n.users and isinstance(n.target, str)
           and n.target.startswith(f"{path}.") and n.target[len(path) + 1:] not in kept
           for n in gm.graph.nodes):
        return None
    return path


def _weight_holder_path(gm: torch.fx.GraphModule, node: torch.fx.Node) -> str | None:
    """The path of the module a call's weight was read from (its ``get_attr`` target without
    ``.weight``), when the module there holds nothing but that layer's ``weight`` and ``bias``;
    else None."""
    w = _weight_arg(node)
    aten = torch.ops.aten
    for _ in range(4):  # through a transpose: `x @ self.weight.T`
        if not (isinstance(w, torch.fx.Node) and w.op == "call_function" and w.target in (
                aten.t.default, aten.numpy_T.default, aten.transpose.int, aten.permute.default)):
            break
        w = w.args[0]
    target = getattr(w, "target", None) if isinstance(w, torch.fx.Node) else None
    whole = _recurrent_kind(node) is not None
    own_name = ("weight_ih_l0" if whole else
                "weight_ih" if _cell_kind(node) is not None else "weight")
    if not isinstance(target, str) or not target.endswith(f".{own_name}"):
        return None
    path = target[: -len(own_name) - 1]
    try:
        holder = gm.get_submodule(path)
    except AttributeError:
        return None
    own = {n for n, _ in holder.named_parameters(recurse=False)} | {
        n for n, _ in holder.named_buffers(recurse=False)}
    if whole:
        return path if all(_RECURRENT_NAMES.fullmatch(n) for n in own) else None
    return path if own <= ({"weight", "bias"} if own_name == "weight" else {
        "weight_ih", "weight_hh", "bias_ih", "bias_hh"}) else None


def modules_from_graph(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Replace the linear and (transposed) convolution calls of an exported graph by modules.

    Each ``aten.linear`` / ``aten.conv1d/2d/3d`` / ``aten.conv_transpose1d/2d/3d`` /
    ``aten.convolution`` / ``aten._convolution_mode`` call with constant weights becomes an
    ``nn.Linear`` / ``nn.ConvNd`` / ``nn.ConvTransposeNd`` submodule holding those weights, so
    that :func:`cimsim.deploy` can map it; the graph computes the same outputs. So does each
    product with the constant 2-D weight of a weight-and-bias module (``aten.addmm(b, x, W)``,
    GPT-2's ``Conv1D``; ``aten.mm`` / ``aten.matmul(x, W)``, a constant bias added after it
    folded in), as an ``nn.Linear`` named by that module; and each
    recurrent cell call (``aten.lstm_cell`` / ``gru_cell`` / ``rnn_tanh_cell`` /
    ``rnn_relu_cell``, an ``nn.LSTMCell`` ... of the model) with constant weights, and each
    whole-sequence recurrent call on a padded tensor (``aten.lstm.input`` / ``gru.input`` /
    ``rnn_tanh.input`` / ``rnn_relu.input``: an ``nn.LSTM`` ... of the model, its layers,
    directions, biases and projection read off the flat weights). A packed sequence's call
    (``aten.lstm.data`` ...) is not rewritten: it runs in float, and a ``UserWarning`` names it.
    An inlined ``nn.MultiheadAttention`` call becomes a call of the module, as deploy maps it
    (``cimsim.mapping.graph_attention``). Embedding look-ups and other attention products
    become modules deploy lists as digital (``cimsim.mapping.graph_digital``). ``gm`` is
    changed in place and returned.
    """
    # the rebuilt modules' default initialisation (overwritten at once) and the attention
    # candidates' probes draw random numbers: the caller's stream is left as it was
    with torch.random.fork_rng(devices=[]):
        return _modules_from_graph(gm)


def _modules_from_graph(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    rebuild_attention(gm)  # nn.MultiheadAttention calls: the module, as deploy maps it
    n_made = 0
    recurrent = []
    installed: dict[str, Any] = {}  # original module path -> the weight its call reads
    folded: set[torch.fx.Node] = set()  # adds that became a Linear's bias
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node in folded:
            continue
        if str(node.target).split(".")[1:2] in (["lstm"], ["gru"], ["rnn_tanh"], ["rnn_relu"]) \
                and _recurrent_kind(node) is None:  # a packed sequence's call
            recurrent.append(node.name)
        mod = _module_for(gm, node)
        product = _product_args(node)
        args: tuple = (node.args[0] if product is None else product[0],)
        kwargs: dict[str, Any] = {}
        result = node  # the node whose value the new call gives
        if product is not None and isinstance(mod, nn.Linear) and mod.bias is None:
            # `x @ W.T + b` written out: the add of a constant bias is the Linear's bias
            mod, result = _with_added_bias(gm, node, mod)
            folded.add(result)
        if isinstance(mod, (nn.RNNCellBase, nn.RNNBase)):  # (input, hx): LSTM's is a pair
            hx = node.args[1] if len(node.args) > 1 else None
            args = (node.args[0], tuple(hx) if isinstance(hx, (list, tuple)) else hx)
        if mod is None:  # an embedding or an attention: listed digital by deploy
            first = node.args[0] if node.args else None
            mod = digital_module_for(node, _tensor(gm, first) if getattr(
                first, "op", None) == "get_attr" else None)
            if mod is None:
                continue
            args, kwargs = (((node.args[1],), {}) if isinstance(mod, nn.Embedding) else
                            (tuple(node.args), dict(node.kwargs)))
        name = _original_place(gm, node, mod, installed)
        if name is None:
            name = projection_name(gm, _weight_arg(node))  # an attention left as it was
            if name is None:
                name = f"cimsim_{n_made}_{node.name}"
                n_made += 1
            gm.add_submodule(name, mod)
        elif name not in installed:
            gm.set_submodule(name, mod)
            installed[name] = _weight_source(node)
        with gm.graph.inserting_after(result):
            new = gm.graph.call_module(name, args, kwargs)
        if isinstance(mod, nn.LSTM):  # the graph reads aten's (output, h, c)
            with gm.graph.inserting_after(new):
                flat = gm.graph.call_function(_lstm_outputs, (new,))
            result.replace_all_uses_with(flat)
        else:
            result.replace_all_uses_with(new)
        gm.graph.erase_node(result)
        if result is not node:
            gm.graph.erase_node(node)
    if recurrent:
        warnings.warn(f"{len(recurrent)} recurrent call(s) of the exported graph run in float "
                      "(an exported nn.RNN/LSTM/GRU on a packed sequence is not rewritten): "
                      f"{', '.join(recurrent)}; "
                      "deploy the model as a Python module (module:function) to map them",
                      UserWarning, stacklevel=3)  # the caller of modules_from_graph
    gm.graph.eliminate_dead_code()
    gm.recompile()
    # torch's exported module refuses train()/eval() (its graph's dropout and norms are fixed as
    # exported); the mapped layers and the training twin inside it switch modes through it
    gm.train = types.MethodType(nn.Module.train, gm)  # type: ignore[method-assign]
    gm.eval = types.MethodType(nn.Module.eval, gm)  # type: ignore[method-assign]
    return gm

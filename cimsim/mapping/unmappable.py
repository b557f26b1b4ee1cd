"""Modules deploy and ``prepare`` must not map as their type says, and what a model's own code
may still ask of a mapped layer.

- A subclass of a mappable torch layer whose ``forward`` is its own (timm's weight-standardized
  ``StdConv2d``, a quantization-aware ``Linear``), or a method its forward calls
  (``_conv_forward``, ``_output_padding``), computes something else than its type: mapped by
  its raw weight it gave a result that looked simulated and was wrong. It is kept digital,
  with the reason (:func:`overridden_forward`); so is a layer of torch's own class whose
  ``forward`` is replaced on the instance (``layer.forward = types.MethodType(f, layer)``).
- A TorchScript module (``torch.jit.script`` / ``trace``) runs compiled code that calls its own
  submodules: a simulated replacement would never be called, and its matrix products are no
  Python calls the functional watch sees. It is kept digital (:func:`scripted_row`).
- A layer of complex weights (``nn.Linear(..., dtype=torch.cfloat)``) has no conductances to
  program: mapped, its imaginary parts were dropped and its output was silently wrong. It is
  kept digital, computing in complex float, with the reason (:func:`complex_row`); so is a
  layer whose weight is a tensor subclass (torchao's quantized weights in a plain
  ``nn.Linear``): mapping it crashed inside torch (:func:`subclass_row`).
- A mapped layer keeps the source module's configuration (``kernel_size``, ``stride``,
  ``dilation``, ``in_features`` ...): a forward that computes a causal padding from
  ``conv.dilation`` reads the source's values (:func:`source_config`).
- ``next(self.parameters())`` in a forward finds nothing when every weight is on the arrays:
  torch's bare ``StopIteration`` becomes an error saying so (:func:`explain_stop_iteration`).
- deploy and ``prepare`` copy the model; a tensor computed with gradient and kept as an
  attribute (``self.cached = self.scale * 2``) cannot be copied: the error names it
  (:func:`copy_model`). What the forward stores in the model's attributes during a
  calibration pass (a cached table, computed in float) is undone after it
  (:func:`calibration_state`). An exported program's module (``ExportedProgram.module()``, as the
  model or inside it) applies its weights by aten calls, no modules: in the copy its linear and
  convolution calls become modules (``modules_from_graph``, as ``load_model`` does for a
  ``.pt2``), mapped as the model's own; they were refused ("no layer can be mapped") or
  listed digital, advising the user to hold them in modules they had.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from ..errors import MappingError

__all__ = ["attribute_state", "calibration_state", "carry_tensor_hooks", "complex_row",
           "copy_model",
           "explain_stop_iteration", "hook_weights_detached", "kept_digital_row",
           "keywords_not_taken",
           "overridden_forward",
           "pruning_masks", "quantized_row", "restore_attributes",
           "scripted_row", "source_config", "subclass_row"]


# methods of torch's layers that compute nothing in the forward: a subclass may override them
# (its own initialisation, its repr, its pickling) and still compute as its base
_NOT_COMPUTING = frozenset({
    "__init__", "reset_parameters", "_reset_parameters", "extra_repr", "__repr__",
    "__setstate__", "__getstate__", "__deepcopy__", "_apply", "flatten_parameters",
    "_init_flat_weights", "_replicate_for_data_parallel", "_load_from_state_dict",
    "_save_to_state_dict", "__setattr__"})


def _overridden(cls: type[nn.Module], base: type[nn.Module]) -> str | None:
    """The first method of ``base`` (the torch layer ``cls`` derives from) or of the torch
    classes above it, ``__call__`` included, that ``cls`` defines again and that computes in
    the forward (``forward``, ``_conv_forward``, ``_output_padding``, an RNN's
    ``permute_hidden``); None if none."""
    return next((attr for attr in _computing(base)
                 if _definer(cls, attr) is not _definer(base, attr)), None)


def _computing(base: type[nn.Module]) -> list[str]:
    """The methods of ``base`` (a torch layer) and of the torch classes above it that compute
    in its forward, ``forward``, ``__call__`` and ``_call_impl`` first."""
    torch_classes = [c for c in base.__mro__ if c.__module__.startswith("torch.nn.modules.")
                     and c is not nn.Module]
    names = ["forward", "__call__", "_call_impl",
             *(n for c in torch_classes for n, v in vars(c).items() if callable(v))]
    return [n for n in dict.fromkeys(names) if n not in _NOT_COMPUTING]


def _patched(module: nn.Module, base: type[nn.Module]) -> str | None:
    """The first method the forward computes with (``_overridden``'s) that ``module`` holds
    as an instance attribute (``layer.forward = types.MethodType(f, layer)``, model surgery
    patching one layer; Python looks it up before the class's), or None. ``__call__`` is
    looked up on the class, so an instance's is never called."""
    own = vars(module)
    return next((attr for attr in _computing(base) if attr != "__call__" and attr in own),
                None)


def _definer(cls: type, attr: str) -> type | None:
    """The class of ``cls``'s MRO whose body defines ``attr``."""
    return next((c for c in cls.__mro__ if attr in vars(c)), None)


def overridden_forward(module: nn.Module, name: str) -> str | None:
    """Why ``module`` (of a mappable type) cannot be mapped as its type says, or None: its
    class, a subclass of a torch layer, defines a ``forward`` of its own, or another method
    the forward computes with (a ``_conv_forward`` standardising the weight or padding the
    input causally, a transposed conv's ``_output_padding``: mapped, their computation was
    dropped, the raw weight run as torch's); or the module holds such a method as an
    instance attribute (a patched ``forward``: mapped, the patch was dropped). The classes
    torch derives itself (a parametrized ``ParametrizedLinear``) keep the layer's forward."""
    base: type[nn.Module] = next(c for c in type(module).__mro__
                                 if c.__module__.startswith("torch.nn.modules."))
    if (attr := _patched(module, base)) is not None:
        return (f"{name}: its {attr} is replaced on the instance ({name}.{attr} = ..., a "
                f"patch that computes something else than {base.__name__}.{attr}, which the "
                f"arrays would run with the raw weight); remove the patch, or compute it in "
                f"a module around a plain nn.{base.__name__}, to map it")
    attr = _overridden(type(module), base)
    if attr is None:
        return None
    if type(module).__module__.startswith(("torch.ao.nn.qat", "torch.ao.nn.intrinsic.qat")):
        # not the user's subclass: the advice to hold a plain layer instead did not apply
        kind = f"{type(module).__module__.rpartition('.modules')[0]}.{type(module).__name__}"
        return (f"{name}: a {kind} of torch.ao.quantization.prepare_qat (its forward "
                "computes with a fake-quantized weight, which the arrays would not run with "
                "the raw weight); deploy the float model from before prepare_qat with the trained "
                "weights (float_model.load_state_dict(qat_model.state_dict(), strict=False) "
                "where no modules were fused): cimsim quantizes it as chip.quant says")
    owner = _definer(type(module), attr)
    assert owner is not None
    return (f"{name}: {owner.__name__} overrides {base.__name__}.{attr} (a computation of its "
            f"own, e.g. a standardized or fake-quantized weight, that the arrays would not "
            f"run with the raw weight); hold an nn.{base.__name__} in a module instead of "
            "subclassing it to map it (a weight times a fixed 0/1 mask, as MADE's or "
            f"PixelCNN's masked layers: a plain nn.{base.__name__} with "
            "torch.nn.utils.prune.custom_from_mask(layer, 'weight', mask))")


SCRIPTED = "a TorchScript module"


def kept_digital_row(module: nn.Module, name: str, not_mappable: str
                     ) -> tuple[str, str, str] | None:
    """The digital row of a module that computes its own way, whatever its class says, or
    None: a TorchScript module (:func:`scripted_row`), a quantized one
    (:func:`quantized_row`), complex weights (:func:`complex_row`), a tensor-subclass weight
    (:func:`subclass_row`). One list for deploy and ``prepare``, which keep the same modules
    digital."""
    for row in (scripted_row, quantized_row, complex_row, subclass_row):
        if (found := row(module, name, not_mappable)) is not None:
            return found
    return None


def scripted_row(module: nn.Module, name: str, not_mappable: str
                 ) -> tuple[str, str, str] | None:
    """The digital row of a TorchScript submodule holding weights, or None."""
    if not isinstance(module, torch.jit.ScriptModule):
        return None
    if not any(True for _ in module.parameters()) and not any(True for _ in module.buffers()):
        return None  # weightless (an activation): nothing runs in float unseen
    kind = getattr(module, "original_name", type(module).__name__)
    return (name or "model", kind,
            f"{not_mappable}{name or 'model'}: {SCRIPTED} (torch.jit.script / trace) runs its "
            "own compiled layers, which simulated ones cannot replace: it computes in float; "
            "map the unscripted module (or load the whole model from a TorchScript file, "
            "which is converted)")


_LAYER_TYPES = (nn.Linear, nn.modules.conv._ConvNd, nn.RNNBase, nn.RNNCellBase,
                nn.MultiheadAttention)


def complex_row(module: nn.Module, name: str, not_mappable: str
                ) -> tuple[str, str, str] | None:
    """The digital row of a mappable layer holding complex-valued weights, or None: the arrays
    hold real weights (a complex product is four real ones, which the model does not write)."""
    if not (isinstance(module, _LAYER_TYPES)
            and any(p.is_complex() for p in module.parameters())):
        return None
    return (name or "model", type(module).__name__,
            f"{not_mappable}{name or 'model'}: complex-valued weights (the arrays hold real "
            "ones): it computes in complex float; write it as real layers on the real and "
            "imaginary parts to map it")


def subclass_row(module: nn.Module, name: str, not_mappable: str
                 ) -> tuple[str, str, str] | None:
    """The digital row of a mappable layer whose weights are a tensor subclass, or None: a
    quantized or packed weight that computes its products its own way (torchao's
    ``quantize_`` puts such a tensor in an ``nn.Linear``'s ``weight``, the class left
    ``nn.Linear``; bitsandbytes' ``Int8Params`` is one). Its storage holds no dense values to
    program (mapping it crashed deep inside torch: ``.numpy()`` of a subclass), and only the
    subclass knows what its product computes: kept digital, computing as the subclass does."""
    if not isinstance(module, _LAYER_TYPES):
        return None
    odd = [(pname, type(p).__name__) for pname, p in module.named_parameters()
           if _computes_its_own_way(p)]
    if not odd:
        return None
    pname, kind = odd[0]
    return (name or "model", type(module).__name__,
            f"{not_mappable}{name or 'model'}: its {pname} is a tensor subclass ({kind}: a "
            "quantized or packed weight computing its products its own way, which the arrays "
            "cannot hold as programmed values); it computes as the subclass does, in float; "
            f"give the layer a dense weight ({name or 'model'}.{pname} = "
            "nn.Parameter(<dense tensor>), e.g. the model before its conversion) to map it")


def _computes_its_own_way(p: torch.Tensor) -> bool:
    """Whether ``p`` is a tensor subclass that computes otherwise than its values say: a
    wrapper subclass (its storage is no dense array), one of non-float values (bitsandbytes'
    ``Int8Params``), or one overriding torch's dispatch; a ``Parameter`` subclass only tagging
    its tensors (an attribute, a marker class) is a plain weight."""
    kind = type(p)
    if kind in (torch.Tensor, nn.Parameter) or nn.parameter.is_lazy(p):
        return False
    plain = (nn.Parameter.__torch_function__, torch.Tensor.__torch_function__)
    return (is_traceable_wrapper_subclass(p) or not p.is_floating_point()
            or getattr(kind.__torch_function__, "__func__", kind.__torch_function__) not in
            [getattr(f, "__func__", f) for f in plain]
            or kind.__torch_dispatch__ is not torch.Tensor.__torch_dispatch__)


def quantized_row(module: nn.Module, name: str, not_mappable: str
                  ) -> tuple[str, str, str] | None:
    """The digital row of a module ``torch.ao.quantization.convert`` made (a quantized
    ``Linear`` / ``Conv2d`` / dynamic ``LSTM`` holding packed int8 weights), or None. Its
    weights are no tensors a layer can be built from, and it computes on quantized tensors:
    kept digital (in torch's int8 kernels), named; the float model before ``convert`` maps."""
    if not type(module).__module__.startswith(("torch.ao.nn.quantized",
                                               "torch.ao.nn.intrinsic.quantized")):
        return None
    if not any(k in vars(module) or k in module._modules
               for k in ("_packed_params", "_all_weight_values")):
        return None  # Quantize, DeQuantize, a quantized ReLU: no weights
    # quantize_dynamic's modules (int8 weights, float activations) come from no convert
    made, before = (("quantize_dynamic", "quantize_dynamic")
                    if ".dynamic." in type(module).__module__ else ("convert", "prepare/convert"))
    return (name or "model", f"quantized {type(module).__name__}",
            f"{not_mappable}{name or 'model'}: an int8 module of "
            f"torch.ao.quantization.{made} (packed weights): it runs torch's own int8 kernels "
            f"digitally; map the float model from before {before} (cimsim quantizes it "
            "as chip.quant says)")


def keywords_not_taken(model: nn.Module, names: Iterable[str]
                       ) -> tuple[inspect.Signature, list[str]] | None:
    """``model.forward``'s signature and those of ``names`` it takes no keyword argument for
    (none where it takes ``**kwargs``); None where the signature cannot be read (a builtin or
    scripted forward: the call itself will say)."""
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return None
    params = signature.parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return signature, []
    return signature, [k for k in names if k not in params or params[k].kind in (
        inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL)]


def source_config(src: nn.Module) -> dict[str, Any]:
    """The configuration attributes of a mapped layer's source module (``kernel_size``,
    ``stride``, ``padding``, ``in_features``, an RNN's ``bias`` flag ...): its plain,
    public values, not tensors or modules."""
    return {k: v for k, v in vars(src).items()
            if not k.startswith("_") and k != "training"
            and not isinstance(v, (torch.Tensor, nn.Module))}


# torch's words for a gradient of what holds none (torch/csrc/autograd, torch/autograd)
_GRAD_ERRORS = ("does not require grad", "argument to `grad()` cannot be empty",
                "differentiated Tensors appears to not have been used")


@contextmanager
def explain_stop_iteration(who: str) -> Iterator[None]:
    """A ``StopIteration`` leaving the model's forward (``next(self.parameters())`` on a model
    whose weights are all on the arrays) as a ``MappingError`` that says so; so too torch's
    refusal of an ``autograd.grad`` in the forward of the parameters the mapped layers do not
    hold (MAML's inner step: ``cannot be empty``, ``does not require grad``)."""
    try:
        yield
    except RuntimeError as exc:
        if not any(s in str(exc) for s in _GRAD_ERRORS):
            raise
        raise MappingError(
            f"{who}: the model's forward takes gradients torch cannot give ({exc}): a mapped "
            "layer holds no float parameters (deploy: its weights are on the simulated arrays; "
            "prepare: its twin's parameters exist only after the calibration pass) and a "
            "deployed one computes without gradient, so a forward differentiating its own "
            "parameters (MAML's inner step) cannot run mapped; adapt outside the forward "
            "(torch.func.functional_call on the prepared model, with its twins' parameter "
            "names) or exclude the layers (exclude=[...]) to keep them digital") from exc
    except StopIteration as exc:
        raise MappingError(
            f"{who}: the model's forward raised StopIteration, most likely from "
            "next(model.parameters()): the mapped layers hold their weights on the simulated "
            "arrays, not as parameters, so there may be none; take the dtype and device from "
            "the input (x.dtype, x.device)") from exc


def _hooked_weights(model: nn.Module) -> list[tuple[nn.Module, str, str, Any]]:
    """``(module, module name, attribute, hook)`` of each tensor a forward pre-hook of
    ``torch.nn.utils.prune`` or the old-style ``weight_norm`` / ``spectral_norm`` recomputes
    (``weight`` from ``weight_orig * weight_mask``, from ``weight_g``, ``weight_v`` ...)."""
    out = []
    for name, m in model.named_modules():
        for hook in m._forward_pre_hooks.values():
            attr = getattr(hook, "_tensor_name", None) if isinstance(
                hook, prune.BasePruningMethod) else getattr(hook, "name", None) if isinstance(
                hook, (WeightNorm, SpectralNorm)) else None
            if isinstance(attr, str) and isinstance(vars(m).get(attr), torch.Tensor):
                out.append((m, name, attr, hook))
    return out


def pruning_masks(model: nn.Module) -> dict[str, list[tuple[str, torch.Tensor]]]:
    """``{module name: [(tensor name, mask)]}`` of the ``torch.nn.utils.prune`` hooks in
    ``model`` (``""``: the model itself), which :func:`copy_model` makes permanent: ``prepare``
    keeps them while training, in a twin (``TwinMatmul.keep_zeros``) or put back on a module
    it leaves in float (an excluded layer trains under its mask, as in the model)."""
    out: dict[str, list[tuple[str, torch.Tensor]]] = {}
    for m, name, attr, hook in _hooked_weights(model):
        if isinstance(hook, prune.BasePruningMethod):
            out.setdefault(name, []).append((attr, getattr(m, f"{attr}_mask").detach().clone()))
    return out


def _holds_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_tensor(v) for v in value.values())
    return False


def _shallow(value: Any) -> Any:
    """A copy of a list or dict attribute's items (a cache appended to in place), else the
    value itself."""
    return list(value) if isinstance(value, list) else (
        dict(value) if isinstance(value, dict) else value)


def _changed(before: Any, after: Any) -> bool:
    if isinstance(before, list) and isinstance(after, list):
        return len(before) != len(after) or any(a is not b for a, b in zip(before, after,
                                                                             strict=True))
    if isinstance(before, dict) and isinstance(after, dict):
        return before.keys() != after.keys() or any(after[k] is not v
                                                    for k, v in before.items())
    return before is not after


@contextmanager
def calibration_state(model: nn.Module) -> Iterator[None]:
    """Within the block (a calibration pass), what the model's forward stores in its modules'
    attributes is the pass's: a tensor (or a list, tuple or dict of tensors) an attribute
    gets, or a list or dict attribute's items, are set back to what they were before it when
    the block ends. A forward caching a layer's output on its first call (a position-bias
    table, ``self._table = self.pos(coords)``) would otherwise keep the calibration pass's
    result, computed in float, and every simulated forward reuse it, the layer never run on
    the arrays; the simulated model starts from the state the user's model had. cimsim's own
    modules (simulated and twin layers) keep theirs. So too the buffers, written in place or
    reassigned (a streaming model's cache of the last frame, a call counter): the simulated
    model would start from the last calibration batch's cache; and the ``torch.Generator`` s
    the modules hold (a forward drawing from its own): the simulated model would draw other
    numbers than the user's model; the plain numbers its attributes hold (a call counter
    ``self.calls += 1``); the values of the tensors its attributes hold, written in place
    (a memory, a preallocated cache); and the caches of its classes' ``lru_cache`` d methods
    (emptied)."""
    before = attribute_state(model)  # its numbers too: set back below
    written = _held_tensor_values(model)
    buffers = _buffer_state(model)
    # a buffer the pass registers is removed, as an attribute it sets is (a streaming model's
    # last frame, made on its first call, stayed: the calibration data's)
    # (keys(): a scripted module's buffer dict is not iterable)
    buffer_names = {name: set(m._buffers.keys()) for name, m in _user_modules(model)}
    generators = [(g, g.get_state()) for m in model.modules()
                  for g in vars(m).values() if isinstance(g, torch.Generator)]
    try:
        yield
    finally:
        restore_attributes(before, model)
        _restore_buffers(buffers, model, buffer_names)
        with torch.no_grad():
            for tensor, values in written:
                if tensor.shape == values.shape and not _equal(tensor, values):
                    tensor.copy_(values)
        for generator, state in generators:
            generator.set_state(state)
        for cached in _cached_methods(model):
            cached.cache_clear()
        for name, was in before.items():
            try:  # a module the pass dropped (a one-shot initialiser set to None)
                attrs = vars(model.get_submodule(name))
            except AttributeError:
                continue
            for k, v in was.items():
                if _is_number(v) and _is_number(attrs.get(k)):
                    attrs[k] = v


def _cached_methods(model: nn.Module) -> list[Any]:
    """The ``functools.lru_cache`` / ``cache`` d functions of the model's module classes (a
    method caching a layer's output by its arguments, ``@lru_cache def table(self, n)``): the
    cache is the class's, outside the attributes :func:`restore_attributes` sets back."""
    found: dict[int, Any] = {}
    for cls in {type(m) for m in model.modules()}:
        if cls.__module__.startswith(("cimsim.", "torch.")):
            continue
        for klass in cls.__mro__:
            for value in vars(klass).values():
                func = getattr(value, "__func__", value)  # a staticmethod / classmethod's
                if callable(getattr(func, "cache_clear", None)):
                    found[id(func)] = func
    return list(found.values())


def _held_tensor_values(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The tensors the modules' attributes hold (not parameters or buffers), directly or in a
    list, tuple or dict, each with a copy of its values: a forward may write them in place (a
    memory ``self.mem.mul_(0.9).add_(h)``, a preallocated cache ``self.cache[0][:, t] = k``),
    which setting the attribute back does not undo."""
    held: dict[int, torch.Tensor] = {}
    for _, m in _user_modules(model):
        for k, v in vars(m).items():
            if not _user_attribute(k):
                continue
            items = (v.values() if isinstance(v, dict)
                     else v if isinstance(v, (list, tuple)) else (v,))
            for t in items:
                if (isinstance(t, torch.Tensor) and not isinstance(t, nn.Parameter)
                        and not nn.parameter.is_lazy(t)):
                    held[id(t)] = t
    return [(t, t.detach().clone()) for t in held.values()]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``torch.equal``, for sparse tensors too (a graph's normalised adjacency kept as a sparse
    COO buffer, LightGCN's: ``torch.equal`` has no sparse kernel, and setting the buffers
    back after the calibration pass failed inside torch, no layer named)."""
    if a.layout != torch.strided or b.layout != torch.strided:
        return a.layout == b.layout and torch.equal(a.to_dense(), b.to_dense())
    return torch.equal(a, b)


def _buffer_state(model: nn.Module) -> dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]]:
    """(module name, buffer name) -> (the buffer, a copy of its values), cimsim's own
    modules left out."""
    return {(name, k): (b, b.detach().clone()) for name, m in _user_modules(model)
            for k, b in m._buffers.items()
            if b is not None and not nn.parameter.is_lazy(b)}  # a lazy one: made by the pass


def _restore_buffers(before: Mapping[tuple[str, str], tuple[torch.Tensor, torch.Tensor]],
                     model: nn.Module, names: Mapping[str, set[str]]) -> None:
    """The buffers of :func:`_buffer_state` registered and holding their values again, and
    those registered since in the modules of ``names`` (module name -> its buffers' names
    then) removed."""
    for name, had in names.items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue
        for k in set(module._buffers.keys()) - had:
            del module._buffers[k]
            module._non_persistent_buffers_set.discard(k)
    for (name, k), (buffer, values) in before.items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue
        module._buffers[k] = buffer
        if buffer.shape != values.shape:
            module._buffers[k] = values
        elif not _equal(buffer, values):
            with torch.no_grad():
                buffer.copy_(values)


def attribute_state(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Module name -> its attributes (lists and dicts shallow-copied), for
    :func:`restore_attributes`; cimsim's own modules and ``nn.Module``'s bookkeeping left
    out."""
    return {name: {k: _shallow(v) for k, v in vars(m).items() if _user_attribute(k)}
            for name, m in _user_modules(model)}


def _user_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``model``'s named modules but cimsim's own (simulated and twin layers keep their
    state)."""
    return [(name, m) for name, m in model.named_modules()
            if not type(m).__module__.startswith("cimsim.")]


def restore_attributes(before: Mapping[str, Mapping[str, Any]], model: nn.Module,
                       into: nn.Module | None = None) -> list[str]:
    """Set back the tensor-holding attributes of ``model``'s modules that changed since
    ``before`` (:func:`attribute_state`), in ``model`` or, given, in ``into``, a copy of it
    (a deep copy of the earlier value). Returns their names (``module.attribute``)."""
    target = model if into is None else into
    restored: list[str] = []
    for name, was in before.items():
        try:
            module, out = model.get_submodule(name), target.get_submodule(name)
        except AttributeError:
            continue
        now = vars(module)
        for k in [k for k in now if k not in was and _user_attribute(k)
                  and _holds_tensor(now[k])]:
            vars(out).pop(k, None)  # set since
            restored.append(f"{name}.{k}" if name else k)
        for k, v in was.items():
            current = now.get(k, v)
            if not (_changed(v, current) and (_holds_tensor(v) or _holds_tensor(current))):
                continue
            restored.append(f"{name}.{k}" if name else k)
            old = v if into is None else copy.deepcopy(v)
            held = vars(out).get(k)
            if isinstance(held, list) and isinstance(old, list):
                held[:] = old  # the attribute's own list, emptied as it was
            elif isinstance(held, dict) and isinstance(old, dict):
                held.clear()
                held.update(old)
            else:
                vars(out)[k] = old
    return restored


def _user_attribute(name: str) -> bool:
    return name not in _MODULE_STATE and not name.startswith(("_forward", "_backward"))


# nn.Module's own bookkeeping: its parameters, buffers and submodules (their own dicts),
# hooks, mode
_MODULE_STATE = frozenset({"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set",
                           "training", "_state_dict_hooks", "_state_dict_pre_hooks",
                           "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks"})


@contextmanager
def hook_weights_detached(model: nn.Module) -> Iterator[None]:
    """Within the block the tensors torch's own hooks recompute before every forward (a pruned
    ``weight``, an old-style weight-normed one), and a recurrent layer's cached parametrized
    weights, hold their current values detached, so that
    ``copy.deepcopy`` copies them: after a forward with gradient torch refuses to. Put back
    after the block."""
    hooked = _hooked_weights(model)
    held_values = [vars(m)[attr] for m, _, attr, _ in hooked]
    # torch's recurrent layers cache their weights in ``_flat_weights`` (refreshed by every
    # forward when a weight is another tensor): a parametrized one (expRNN's orthogonal
    # ``weight_hh_l0``) is cached as computed, with gradient, by ``.to()`` or a forward
    flat = [(m, m._flat_weights) for m in model.modules() if isinstance(m, nn.RNNBase)
            and any(isinstance(w, torch.Tensor) and w.grad_fn is not None
                    for w in m._flat_weights)]
    try:
        for (m, _, attr, _), value in zip(hooked, held_values, strict=True):
            setattr(m, attr, value.detach())
        for m, weights in flat:
            vars(m)["_flat_weights"] = [w.detach() if isinstance(w, torch.Tensor)
                                        and w.grad_fn is not None else w for w in weights]
        yield
    finally:
        for (m, _, attr, _), value in zip(hooked, held_values, strict=True):
            setattr(m, attr, value)
        for m, weights in flat:
            vars(m)["_flat_weights"] = weights


def copy_model(model: nn.Module, who: str) -> nn.Module:
    """A deep copy of ``model``; torch's refusal to copy a non-leaf tensor attribute (one
    computed with gradient) as a ``MappingError`` naming the attributes.

    The tensors torch's own hooks recompute before every forward (a pruned ``weight``, an
    old-style weight-normed one) are copied as their current values: they are computed with
    gradient from the moment the hook is added until a forward under ``no_grad``, and
    torch cannot copy them then. A pruned weight is made permanent in the copy, as
    ``prune.remove`` does (the product maps; ``prepare`` keeps its mask while training:
    :func:`pruning_masks`)."""
    with hook_weights_detached(model):
        sim = _copy(model, who)
    for _, name, _, hook in _hooked_weights(sim):
        if isinstance(hook, prune.BasePruningMethod):
            prune.remove(sim.get_submodule(name), hook._tensor_name)
    # torch copies a TorchScript module's (jit.script / trace) trainable parameters as clones
    # of the originals with gradient (non-leaf): no optimiser takes them, and a backward
    # through the copy reached the user's model. Cut from the original, trainable as it was
    for param in sim.parameters():
        if not param.is_leaf:
            param.detach_().requires_grad_(True)
    carry_tensor_hooks(model, sim)
    _rebuild_exported(sim)
    return sim


def carry_tensor_hooks(model: nn.Module, sim: nn.Module) -> None:
    """The gradient hooks of ``model``'s parameters (``weight.register_hook``: rows frozen by
    zeroing their gradient) on those of the same names in its copy ``sim``: torch's
    ``Parameter.__deepcopy__`` copies the data only, so a layer trained in the copy (excluded
    from ``prepare``, or a ``PreparedModel.float_model()`` fine-tuned) trained the entries its
    hook held."""
    copies = dict(sim.named_parameters(remove_duplicate=False))
    for name, p in model.named_parameters(remove_duplicate=False):
        held = copies.get(name)
        # a tied one carried once; a frozen one takes no gradient (nor a hook: torch refuses)
        if (p._backward_hooks and held is not None and held is not p and held.requires_grad
                and not held._backward_hooks):
            for hook in p._backward_hooks.values():
                held.register_hook(hook)


def _rebuild_exported(model: nn.Module) -> None:
    """The linear / convolution / cell calls of every exported graph in ``model`` (an
    ``fx.GraphModule`` calling aten operators: ``ExportedProgram.module()``) made modules, in
    place (:func:`~cimsim.mapping.loaders.modules_from_graph`)."""
    from .loaders import modules_from_graph  # loaders imports this module

    for module in list(model.modules()):
        if isinstance(module, torch.fx.GraphModule) and any(
                node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload)
                for node in module.graph.nodes):
            modules_from_graph(module)


def deepcopy(obj: Any, memo: dict[int, Any] | None = None) -> Any:
    """``copy.deepcopy``, without torch's deprecation warning about its own pytree specs: an
    exported graph (``ExportedProgram.module()``) holds ``LeafSpec`` objects, whose copy warns
    (``cimsim train`` printed it twice for every ``.pt2`` model)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)",
                                category=FutureWarning)
        return copy.deepcopy(obj, memo)


def _copy(model: nn.Module, who: str) -> nn.Module:
    held = graph_tensors(model)
    if held and who == "prepare":
        # the copy would hold them detached: a gradient the model's own training sends
        # through them (to the parameter they were computed from) would be lost unseen
        raise MappingError(
            f"{who} works on a copy of the model (yours is never modified), and torch cannot "
            "copy tensors computed with gradient kept as attributes or buffers: "
            f"{', '.join(path for path, _ in held)}; detach them, clear the cache that holds "
            "them (a forward in eval mode may have filled it), or compute them in forward")
    # deploy runs the copy without gradient: such a tensor (a cache an eval-mode forward
    # filled, timm's attention biases, a buffer computed from a weight) is copied as its value
    memo: dict[int, Any] = {id(t): t.detach().clone() for _, t in held}
    try:
        return deepcopy(model, memo)
    except RuntimeError as exc:
        sparse = [f"{n} ({t.layout})" for n, t in [*model.named_parameters(),
                                                    *model.named_buffers()]
                  if t.layout != torch.strided]
        if sparse:  # torch's Parameter.__deepcopy__ clones with a memory format sparse refuses
            raise MappingError(
                f"{who} works on a copy of the model (yours is never modified), and torch "
                f"cannot copy a sparse parameter or buffer: {', '.join(sparse)}; hold it dense "
                "(weight.to_dense(): the arrays store every cell, zeros too) and compute with "
                "nn.Linear / F.linear to map it") from exc
        raise


def graph_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The tensors computed with gradient (non-leaf: torch cannot deep-copy them) that the
    modules of ``model`` hold outside their parameters: as a buffer or an attribute, or in a
    dict, list or tuple attribute (a cache), named ``module.attr['key']``."""
    found: list[tuple[str, torch.Tensor]] = []

    def walk(value: Any, path: str, depth: int) -> None:
        if isinstance(value, torch.Tensor):
            if value.grad_fn is not None:
                found.append((path, value))
        elif depth < 3 and isinstance(value, dict):
            for key, v in value.items():
                walk(v, f"{path}[{key!r}]", depth + 1)
        elif depth < 3 and isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]", depth + 1)

    for name, m in model.named_modules():
        for attr, value in vars(m).items():
            if attr not in ("_parameters", "_buffers", "_modules"):
                walk(value, f"{name}.{attr}" if name else attr, 0)
        # a buffer too (a transposed weight registered as one, an average a forward with
        # gradient wrote): it reached torch's bare deepcopy refusal, named nowhere
        for attr, value in m._buffers.items():
            walk(value, f"{name}.{attr}" if name else attr, 0)
    return found

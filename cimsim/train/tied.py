"""Weights tied between modules (``head.weight = emb.weight``) in the training twin.

A twin holds its weight as its own parameter (a copy). Where the source module's weight (or
bias, a recurrent layer's matrix, attention's output projection) is a parameter the model also
uses elsewhere (an output head tied to the embedding, a projection shared by two layers, a
GRU cell holding a GRU's parameters), a copy would silently untie it: the two uses would train
apart. The twin then holds that very parameter, so that both uses train it, as in the float
model.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import MappingError

__all__ = ["carry_grad_hooks", "freeze_like_sources", "keep_pruned_biases",
           "refuse_step_hooks", "retie_float_copy", "tie_shared_weights"]


def _frozen_beside_trainable(src: nn.Module, trainable: list[str]) -> list[str]:
    """``src``'s frozen parameters whose parametrization has trainable originals too: another
    original of the same ``parametrizations.<tensor>``, or, under the old
    ``nn.utils.weight_norm`` hook, ``weight_v`` beside a frozen ``weight_g``."""
    out = []
    for n, p in src.named_parameters():
        if p.requires_grad:
            continue
        if ".parametrizations." in f".{n}":
            originals = n.rpartition(".original")[0] + ".original"
            if any(t.startswith(originals) for t in trainable):
                out.append(n)
        elif n.endswith("_g") and f"{n[:-2]}_v" in trainable:
            out.append(n)
    return out


def freeze_like_sources(layers: Mapping[str, Any]) -> None:
    """A twin's weights (biases) take no gradient where its source module's do not: a frozen
    backbone (``requires_grad_(False)``, a weight held as a buffer) stays frozen in the twin,
    as in the float model, instead of training with the rest. The twin's own scales keep their
    options."""
    partly = []
    for name, layer in layers.items():
        src = layer._float_src[0]
        trainable = [n for n, p in src.named_parameters() if p.requires_grad]
        partly += [f"{name}.{n}" for n in _frozen_beside_trainable(src, trainable)]

        def learns(key: str, trainable: list[str] = trainable) -> bool:
            owner, _, attr = key.rpartition(".")  # a parametrized weight: its originals
            via = f"{owner}.parametrizations.{attr}." if owner else f"parametrizations.{attr}."
            return key in trainable or any(n.startswith(via) for n in trainable)

        # a weight the source holds as a buffer (a fixed projection) is frozen too
        with torch.enable_grad():  # a tensor put together from several twins: with its graph
            learned = layer.learned()
        frozen = [k for k, v in learned.items() if v is not None and not learns(k)]
        # the tensors that hold them: the matrices' weights and biases and the ones the layer
        # holds itself (a transposed convolution's bias, added after the overlapping outputs
        # are summed). Exactly those the frozen ones are made of: attention's frozen packed
        # projection beside a trainable out_proj, a recurrent layer's frozen bias_hh beside a
        # trainable bias_ih froze every matrix's (all weights or all biases of the layer)
        held = {id(p): p for t in layer.matrices() for p in (t.weight, t.bias)
                if isinstance(p, nn.Parameter)}
        held.update((id(v), v) for v in learned.values() if isinstance(v, nn.Parameter))
        for k in frozen:
            for p in _made_of(learned[k], held):
                p.requires_grad_(False)
    if partly:  # the twin learns the parametrized weight itself: one frozen original of several
        # (DINO's weight-normed head with its magnitude g fixed) would train with the rest
        warnings.warn(
            f"prepare: {', '.join(partly)} frozen (requires_grad=False) beside trainable "
            "originals of the same parametrization: the twin learns the weight the "
            "parametrization computes, so the frozen part (weight_norm's magnitude g) trains "
            "with it; exclude the layer (exclude=[...]) to train it in float as parametrized, "
            "or unfreeze it", UserWarning, stacklevel=3)


def _made_of(value: torch.Tensor, held: Mapping[int, nn.Parameter]) -> list[nn.Parameter]:
    """The parameters of ``held`` (by id) that ``value`` is or is put together from (by
    ``torch.cat``, a reshape, a transposition: the leaves of its autograd graph)."""
    if id(value) in held:
        return [held[id(value)]]
    out, seen, stack = [], set(), [value.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        var = getattr(fn, "variable", None)  # an AccumulateGrad node: a leaf tensor
        if var is not None and id(var) in held:
            out.append(held[id(var)])
        stack.extend(f for f, _ in fn.next_functions)
    return out


def _reshaped_hook(hook: Any, shape: torch.Size) -> Any:
    """``hook`` (written for a gradient of ``shape``) on a twin's (N, K) weight: the gradient
    seen in the source's layout, the hook's result (or the gradient, if it returns None) given
    back in the twin's."""
    def carried(grad: torch.Tensor) -> torch.Tensor:
        out = hook(grad.reshape(shape))
        return (grad if out is None else out).reshape(grad.shape)
    return carried


def carry_grad_hooks(layers: Mapping[str, Any]) -> None:
    """The gradient hooks a source module's weight or bias carries (``weight.register_hook``:
    rows frozen by zeroing their gradient, a gradient scaled or clipped) act on its twin's,
    as in the float model: the twin trains its own copy of the weight, which carried none, so
    the rows a hook froze trained. A Linear's and an ungrouped convolution's twin holds the
    weight itself (reshaped), a transposed convolution its bias; where a weight is split over
    several twins (groups, attention's packed projections, a recurrent layer's gates) the hook
    cannot be carried: a ``MappingError`` names the parameter and the way out."""
    from .twin import TwinConv, TwinLinear  # twin imports this module

    refused = []
    for name, layer in layers.items():
        twins = layer.matrices()
        whole = type(layer) is TwinLinear or (isinstance(layer, TwinConv) and len(twins) == 1)
        own: Mapping[str, Any] | None = None  # the layer's learned tensors, once one is hooked
        for pname, p in layer._float_src[0].named_parameters():
            hooks = list((getattr(p, "_backward_hooks", None) or {}).values())
            if not hooks:
                continue
            own = layer.learned() if own is None else own
            held_whole = own.get(pname)
            if not whole and isinstance(held_whole, nn.Parameter):  # one the layer holds
                # itself, whole (a transposed convolution's bias, added after the outputs
                # are summed)
                if held_whole.requires_grad:
                    for hook in hooks:
                        held_whole.register_hook(hook)
                continue
            if not whole or pname not in ("weight", "bias"):
                refused.append(f"{name}.{pname}")
                continue
            for twin in twins:
                held = twin.weight if pname == "weight" else twin.bias
                if held is not None and held.requires_grad:  # frozen: no gradient to hook
                    for hook in hooks:
                        held.register_hook(_reshaped_hook(hook, p.shape))
    if refused:
        raise MappingError(
            f"prepare: {', '.join(refused)} carr(ies) a gradient hook (tensor.register_hook) "
            "that the twin cannot apply: the twin trains its own copy of the weight, split "
            "over several matrices here, so the hook would be skipped and the entries it holds "
            "(frozen rows, a scaled gradient) would train as any other; exclude the layer "
            "(exclude=[...]) to train it in float with its hook, or freeze the part with "
            "requires_grad_(False) / a torch.nn.utils.prune mask")


def refuse_step_hooks(model: nn.Module) -> None:
    """A ``MappingError`` naming the parameters of ``model`` that carry a post-accumulate
    gradient hook (``p.register_post_accumulate_grad_hook``: an optimizer step fused into the
    backward, as torch's tutorial on saving memory writes it). ``prepare`` trains copies
    (the twins' weights, and torch's ``Parameter.__deepcopy__`` drops the hooks), so a
    backward through the prepared model stepped nothing where the model's own backward trained
    every weight; carried to the copies, a hook keyed by the user's parameter
    (``optimizers[p].step()``) would not find them."""
    hooked = [name for name, p in model.named_parameters()
              if getattr(p, "_post_accumulate_grad_hooks", None)]
    if hooked:
        raise MappingError(
            f"prepare: {', '.join(hooked)} carr(ies) a post-accumulate gradient hook "
            "(register_post_accumulate_grad_hook: an optimizer step in the backward); the "
            "prepared model trains its own copies of the weights, which the hooks do not "
            "reach, so a backward would step nothing; prepare the model without the hooks "
            "and step an optimizer over the prepared model's parameters() (or register the "
            "hooks on those)")


def keep_pruned_biases(layer: Any, name: str, mask: torch.Tensor) -> None:
    """A bias pruned by ``torch.nn.utils.prune`` (``prune.l1_unstructured(conv, "bias", ...)``,
    as torch's pruning tutorial does) keeps its pruned entries at zero in the twin, as the
    pruning hook keeps them in the float model: the twin's copy held the zeros but trained
    them. ``name``: the bias's name in the layer's source (``bias``, attention's
    ``in_proj_bias`` or ``out_proj.bias``, a recurrent layer's ``bias_ih_l0``). Their gradient
    is zeroed by a hook on the tensors that hold the bias (the layer's own, or its matrices' in
    order), so no optimiser moves them from zero."""
    with torch.enable_grad():  # a bias put together from several twins: with its graph
        value = layer.learned().get(name)
    if value is None:
        return
    order = [t.bias for t in layer.matrices() if isinstance(t.bias, nn.Parameter)]
    parts = {id(b): b for b in order}
    if isinstance(value, nn.Parameter):
        parts[id(value)] = value
    made = {id(b) for b in _made_of(value, parts)}
    held = ([value] if isinstance(value, nn.Parameter)
            else [b for b in order if id(b) in made])  # torch.cat of the matrices' in order
    keep = (mask != 0).flatten()
    if sum(b.numel() for b in held) != keep.numel():
        return  # not the layer's plain bias: nothing to hold it by
    for b, part in zip(held, keep.split([b.numel() for b in held]), strict=True):
        with torch.no_grad():
            b.mul_(part.to(b.dtype).reshape(b.shape))
        if b.requires_grad:
            b.register_hook(lambda g, part=part: g * part.to(g.dtype).reshape(g.shape))


def _held_whole(layer: Any) -> dict[str, tuple[Any, str]]:
    """Source parameter name -> (twin matrix, ``'weight'`` or ``'bias'``), for the source's
    parameters a twin matrix holds as they are: a Linear's weight and bias, a recurrent
    layer's (or cell's) W_ih, W_hh and gate biases. A convolution's weight (stored flattened)
    and attention's packed projections are put together from several or reshaped: none."""
    own = {id(p): (t, attr) for t in layer.matrices() for attr in ("weight", "bias")
           if isinstance(p := getattr(t, attr), nn.Parameter)}
    with torch.no_grad():
        learned = layer.learned()
    return {path: own[id(v)] for path, v in learned.items() if v is not None and id(v) in own}


def _unique(layers: Mapping[str, Any]) -> dict[str, Any]:
    """``layers`` with each twin once (a layer registered under two names is one twin)."""
    seen: dict[int, str] = {}
    for name, layer in layers.items():
        seen.setdefault(id(layer), name)
    return {name: layers[name] for name in seen.values()}


def tie_shared_weights(root: nn.Module, layers: Mapping[str, Any]) -> None:
    """Give every twin matrix whose source parameter is shared (with a module left in float,
    or with another mapped layer: a head tied to an embedding, an ``nn.GRUCell`` holding an
    ``nn.GRU``'s parameters) that shared parameter instead of its copy. A shared one the twin
    cannot hold as it is (a convolution's weight, stored flattened) is warned about, naming
    the layer."""
    in_float = {id(p) for p in root.parameters()}  # the twins' own copies are not sources
    layers = _unique(layers)
    params = {name: dict(layer._float_src[0].named_parameters())
              for name, layer in layers.items()}
    uses = Counter(id(p) for named in params.values() for p in named.values())
    untied = []
    for name, layer in layers.items():
        shared = {path: p for path, p in params[name].items()
                  if id(p) in in_float or uses[id(p)] >= 2}
        whole = _held_whole(layer) if shared else {}
        for path, p in shared.items():
            twin, attr = whole.get(path, (None, ""))
            if twin is not None and getattr(twin, attr).shape == p.shape:
                setattr(twin, attr, p)  # both uses now train this one parameter
            elif name not in untied:
                untied.append(name)
    if untied:
        warnings.warn("prepare: the weights of " + ", ".join(untied) + " are shared with other "
                      "modules but their twins train separate copies (a Linear's and a "
                      "recurrent layer's ties are kept, not a convolution's or attention's); "
                      "untie them in the model or expect them to train apart",
                      UserWarning, stacklevel=3)


def retie_float_copy(layers: Mapping[str, Any], memo: dict[int, Any]) -> None:
    """In a float copy of a prepared model (``PreparedModel.float_model``, ``memo`` its
    deepcopy memo, each twin layer mapped to its float module), give each layer whose twin
    trains a shared parameter (:func:`tie_shared_weights`) the copy's one shared parameter,
    not a copy of its own: the float model stays tied as the source was. A tie trained through
    a LoRA delta or a pruning mask keeps its own copy (its values differ from the shared
    one)."""
    copies: dict[int, nn.Parameter] = {}
    for layer in _unique(layers).values():
        source = dict(layer._float_src[0].named_parameters())
        for path, (twin, attr) in _held_whole(layer).items():
            p = source.get(path)
            if p is None or getattr(twin, attr) is not p or (
                    attr == "weight"
                    and (twin.weight_delta is not None or twin.weight_keep is not None)):
                continue  # untied, or tied through a delta / mask
            shared = memo.get(id(p))  # copied with the float module that also holds it
            if not isinstance(shared, nn.Parameter):
                shared = copies.setdefault(id(p), nn.Parameter(p.detach().clone(),
                                                               requires_grad=p.requires_grad))
            owner, _, leaf = path.rpartition(".")
            module = memo[id(layer)]
            setattr(module.get_submodule(owner) if owner else module, leaf, shared)

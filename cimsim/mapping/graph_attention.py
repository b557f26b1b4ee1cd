"""The ``nn.MultiheadAttention`` modules of an exported graph, rebuilt as modules.

``torch.export`` inlines an attention: a self-attention's three projections become one
``aten.linear`` with the (3E, E) ``in_proj_weight``, the products ``aten.scaled_dot_product_
attention`` (or ``bmm`` / ``softmax``), the output projection another ``aten.linear``. Rebuilt
call by call, the in-projection would be one (3E, E) matrix under a generated name, where
``deploy`` of the Python model maps three (E, E) matrices ``NAME.q_proj`` / ``k_proj`` /
``v_proj`` (each its own scale and ADC calibration) seeded from the module's name, and computes
the products as ``SimMultiheadAttention`` does: the loaded model would not deploy as the module.

So each call whose nodes all carry the attention's ``nn_module_stack`` entry is replaced by a
call of an ``nn.MultiheadAttention`` at the module's path, holding its weights: deploy then maps
it as it maps the module, bit for bit. The graph records neither ``num_heads`` nor
``batch_first`` nor which input is the query: they are found by running the call's own nodes
and the candidate modules on random inputs of the recorded shapes (the module is taken only if
one candidate computes what the nodes compute). A call that reads a mask, returns its weights,
or matches no candidate stays as it is (its projections named by their weights:
``NAME.in_proj``, ``NAME.q_proj`` ..., :func:`projection_name`).
"""

from __future__ import annotations

import itertools
import operator
from typing import Any

import torch
from torch import nn
from torch.fx.node import map_arg

__all__ = ["projection_name", "rebuild_attention"]

_MHA = f"{nn.MultiheadAttention.__module__}.{nn.MultiheadAttention.__qualname__}"
_PROJECTIONS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


def projection_name(gm: torch.fx.GraphModule, weight: Any) -> str | None:
    """``NAME.in_proj`` (``q_proj`` ...) for a call reading an attention's projection weight
    ``NAME.in_proj_weight`` (``q_proj_weight`` ...), when no module is there yet; else None."""
    target = getattr(weight, "target", None)
    if not isinstance(target, str):
        return None
    path, _, attr = target.rpartition(".")
    if attr not in _PROJECTIONS:
        return None
    name = f"{path}.{attr[:-len('_weight')]}" if path else attr[:-len("_weight")]
    try:
        gm.get_submodule(name)
    except AttributeError:
        return name
    return None


def rebuild_attention(gm: torch.fx.GraphModule) -> list[str]:
    """Replace each exported ``nn.MultiheadAttention`` call of ``gm`` that can be by a call of
    the module (module docstring); returns their paths. ``gm``'s graph is changed in place."""
    calls: dict[tuple[str, str], list[torch.fx.Node]] = {}
    for node in gm.graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        if node.op != "call_function" or not stack:
            continue
        key, (path, cls) = list(stack.items())[-1]
        if cls == _MHA and isinstance(path, str) and path:
            calls.setdefault((key, path), []).append(node)
    built: dict[str, nn.MultiheadAttention] = {}
    for (_, path), nodes in calls.items():
        _rebuild(gm, path, nodes, built)
    return list(built)


def _rebuild(gm: torch.fx.GraphModule, path: str, nodes: list[torch.fx.Node],
             built: dict[str, nn.MultiheadAttention]) -> bool:
    # size arithmetic (a dynamic batch's SymInt products) stays in the graph: the export shares
    # it between calls (the next attention's reshapes read the first's batch x heads), so it
    # is no output of this call; what is left unread goes with the graph's dead code
    nodes = [n for n in nodes if not isinstance(n.meta.get("val"), (torch.SymInt, int))]
    inside = set(nodes)
    inputs: list[torch.fx.Node] = []
    for n in nodes:
        for a in n.all_input_nodes:
            if a not in inside and a.op != "get_attr" and a not in inputs and isinstance(
                    a.meta.get("val"), torch.Tensor):
                inputs.append(a)
    outputs = [n for n in nodes if any(u not in inside for u in n.users)]
    if len(outputs) != 1 or not 1 <= len(inputs) <= 3 or not all(
            a.meta["val"].is_floating_point() for a in inputs):
        return False  # a mask, the attention weights returned, or not an attention call
    found = _module_at(gm, path, nodes, inputs, outputs[0])
    if found is None:
        return False
    module, roles = found
    if path not in built:  # a second call of one module calls the same layer
        gm.set_submodule(path, module)
        built[path] = module
    out = outputs[0]
    with gm.graph.inserting_after(out):
        call = gm.graph.call_module(path, tuple(inputs[i] for i in roles),
                                    {"need_weights": False})
    with gm.graph.inserting_after(call):
        first = gm.graph.call_function(operator.getitem, (call, 0))
    # the value it stands for: a next attention reading it finds its input by this (without
    # it, the second of two stacked batch-first attentions had no input and stayed inlined)
    if "val" in out.meta:
        first.meta["val"] = out.meta["val"]
    out.replace_all_uses_with(first)
    for n in reversed(nodes):
        gm.graph.erase_node(n)
    return True


def _module_at(gm: torch.fx.GraphModule, path: str, nodes: list[torch.fx.Node],
               inputs: list[torch.fx.Node], out: torch.fx.Node
               ) -> tuple[nn.MultiheadAttention, tuple[int, ...]] | None:
    """The ``nn.MultiheadAttention`` holding the export's weights at ``path`` that computes what
    ``nodes`` compute, and which of ``inputs`` are its query, key and value; or None."""
    try:
        holder = gm.get_submodule(path)
    except AttributeError:
        return None
    state = {n: t.detach() for n, t in itertools.chain(holder.named_parameters(),
                                                        holder.named_buffers())}
    if "out_proj.weight" not in state or "bias_k" in state:
        return None
    e = state["out_proj.weight"].shape[0]
    kdim = state["k_proj_weight"].shape[1] if "k_proj_weight" in state else None
    vdim = state["v_proj_weight"].shape[1] if "v_proj_weight" in state else None
    generator = torch.Generator().manual_seed(0)
    env: dict[torch.fx.Node, Any] = {a: torch.randn(_shape(a.meta["val"]), generator=generator,
                                                    dtype=a.meta["val"].dtype) for a in inputs}
    try:
        with torch.no_grad():
            want = _evaluate(gm, nodes, env)[out]
    except Exception:  # noqa: BLE001 - a node needs what the graph does not record here
        return None
    roles = [r for r in itertools.product(range(len(inputs)), repeat=3)
             if set(r) == set(range(len(inputs)))]
    roles.sort(key=lambda r: r != (0, 0, 0))  # self-attention first
    for heads, batch_first, role in itertools.product(
            [h for h in range(1, e + 1) if e % h == 0], (False, True), roles):
        try:
            module = nn.MultiheadAttention(e, heads, bias="in_proj_bias" in state, kdim=kdim,
                                           vdim=vdim, batch_first=batch_first,
                                           dtype=state["out_proj.weight"].dtype).eval()
            module.load_state_dict(state, strict=True)
            with torch.no_grad():
                got = module(*(env[inputs[i]] for i in role), need_weights=False)[0]
        except Exception:  # noqa: BLE001 - a candidate that cannot take these inputs
            continue
        if got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-5):
            return module, role
    return None


def _size(d: int | torch.SymInt) -> int:
    """A symbolic size at the export's example value (2 when it has none)."""
    return int(getattr(d.node, "hint", None) or 2) if isinstance(d, torch.SymInt) else int(d)


def _shape(val: torch.Tensor) -> list[int]:
    return [_size(d) for d in val.shape]


def _evaluate(gm: torch.fx.GraphModule, nodes: list[torch.fx.Node],
              env: dict[torch.fx.Node, Any]) -> dict[torch.fx.Node, Any]:
    """Run ``nodes`` on the values in ``env``, taking what they read outside it from the
    graph (a weight; a size, at the export's example value); KeyError for anything else."""

    inside = set(nodes)

    def value(a: torch.fx.Node) -> Any:
        if a not in env:
            val = a.meta.get("val")
            if a not in inside and isinstance(val, torch.SymInt):
                env[a] = _size(val)  # a size read outside (the batch): the example's
                return env[a]
            if a not in inside and a.op != "get_attr" and isinstance(a.meta.get("val"),
                                                                      torch.Tensor):
                raise KeyError(a.name)  # an activation that is no input of the call
            if a.op == "get_attr":
                env[a] = _attr(gm, a.target)  # type: ignore[arg-type]
            elif a.op == "call_function":
                env[a] = a.target(*map_arg(a.args, value),  # type: ignore[operator]
                                  **map_arg(a.kwargs, value))  # type: ignore[arg-type]
            else:
                raise KeyError(a.name)
        return env[a]

    for n in nodes:
        value(n)
    return env


def _attr(gm: nn.Module, target: str) -> Any:
    owner, _, name = target.rpartition(".")
    return getattr(gm.get_submodule(owner) if owner else gm, name)

"""What a mapped layer answers when the model's code reads one of its weights.

A simulated layer holds its weights on the arrays (a twin, in its own call, quantized): a
product the model computes with ``layer.weight`` outside the layer's call would run in float
with the programmed weights unseen, so it is refused (:class:`~cimsim.errors.WeightReadError`,
naming the layer). Library code reads a layer's weight's *metadata* too, and computes nothing
with it: HuggingFace's ViT casts the pixels to ``self.projection.weight.dtype``, T5's
feed-forward checks ``isinstance(self.wo.weight, torch.Tensor)`` and its dtype, CLIP, Whisper
and wav2vec2 ``x.to(self.conv.weight.dtype)``. Such a read gets a :class:`WeightView`: a
``torch.Tensor`` holding no values that reports the source weight's shape, dtype, device,
layout and ``requires_grad``, and refuses every operation on its data (torch dispatches each
one, ``F.linear`` and ``.t()`` as ``.numpy()`` and ``.to(other dtype)``, to
``__torch_dispatch__``), with the same error naming the layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._pytree import tree_leaves, tree_map

from ..errors import WeightReadError

__all__ = ["TensorMeta", "ViewsWeights", "WeightView", "tensor_metas", "weight_like",
           "weight_read_message"]


def weight_like(attr: str) -> bool:
    """Whether an attribute name is a weight's (``weight``, ``bias``, ``in_proj_weight``,
    ``weight_ih_l0``, ``bias_k`` ...)."""
    return attr.startswith(("weight", "bias")) or attr.endswith(("_weight", "_bias"))


@dataclass(frozen=True)
class TensorMeta:
    """A source weight's metadata: what a :class:`WeightView` of it reports."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    requires_grad: bool

    @classmethod
    def of(cls, t: torch.Tensor) -> TensorMeta:
        return cls(tuple(t.shape), t.dtype, t.device, t.requires_grad)

    def moved(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> TensorMeta:
        """The metadata after ``module._apply(fn)`` (``.to(...)``, ``.double()``, ``.cuda()``)
        moved the module: ``fn`` applied to an empty tensor of this dtype and device."""
        t = fn(torch.empty(0, dtype=self.dtype, device=self.device))
        return replace(self, dtype=t.dtype, device=t.device)


def tensor_metas(module: nn.Module) -> dict[str, TensorMeta | None]:
    """The weight-like tensors of ``module`` (parameters, buffers, plain tensor attributes)
    by name; ``None`` for a parameter registered as ``None`` (``nn.Linear(bias=False)``'s
    bias), which the model may test (``if layer.bias is not None``)."""
    metas: dict[str, TensorMeta | None] = {}
    for held in (module._parameters, module._buffers, vars(module)):
        for name, t in held.items():
            registered = held is not vars(module)  # a None there is torch's "no bias"
            if (weight_like(name) and name not in metas
                    and (isinstance(t, torch.Tensor) or (t is None and registered))):
                metas[name] = None if t is None else TensorMeta.of(t)
    return metas


def weight_read_message(kind: str, attr: str, layer: str, held: str) -> str:
    """The refusal of a computation with ``.attr`` of mapped layer ``layer`` (of class
    ``kind``), whose weights are ``held`` (programmed on the arrays, or held by a twin)."""
    return (f"{layer}: the model reads .{attr} of a mapped layer, whose weights are {held} "
            f"({kind}): a computation with it cannot be simulated; compute through the layer "
            "(layer(x), not F.linear(x, layer.weight)) - its dtype, device and shape can be "
            "read - or exclude the layer (exclude=[...]) to keep it digital")


#: Torch functions that make a new tensor from another's metadata alone, never its values.
_METADATA_FACTORIES = frozenset({
    torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like, torch.rand_like,
    torch.randn_like, torch.randint_like, torch.Tensor.new_zeros, torch.Tensor.new_ones,
    torch.Tensor.new_empty, torch.Tensor.new_full, torch.Tensor.new_tensor,
})


def _stand_in(t: Any) -> Any:
    """A :class:`WeightView` as a plain tensor of its shape, dtype and device whose one
    element every index shares (zero strides: nothing the size of the weight is made)."""
    if not isinstance(t, WeightView):
        return t
    with torch._C.DisableTorchFunctionSubclass():
        return torch.empty_strided(tuple(t.shape), (0,) * t.dim(), dtype=t.dtype,
                                   device=t.device)


class WeightView(torch.Tensor):
    """A mapped layer's weight as the model's code reads it: the source weight's metadata,
    no values. Every operation on it raises :class:`~cimsim.errors.WeightReadError` naming
    the layer; reading ``dtype``, ``device``, ``shape`` / ``size()``, ``ndim`` / ``dim()``,
    ``numel()``, ``is_floating_point()``, ``layout``, ``requires_grad`` does not (torch
    answers them from the tensor's own metadata, without dispatching), nor does making a new
    tensor from that metadata (``torch.zeros_like``, ``new_zeros``: ``_METADATA_FACTORIES``)."""

    _refusal: str
    _owner: Any
    _attr: str

    @staticmethod
    def __new__(cls, meta: TensorMeta, message: str, owner: Any = None,
                attr: str = "") -> WeightView:
        view = torch.Tensor._make_wrapper_subclass(
            cls, meta.shape, dtype=meta.dtype, device=meta.device,
            requires_grad=meta.requires_grad)
        view._refusal = message
        view._owner, view._attr = owner, attr
        return view  # type: ignore[no-any-return]

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple = (),  # type: ignore[override]
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.linear:
            # F.linear(x, layer.weight, b): the layer's own product with another bias (timm's
            # EVA-02 and BEiT attention: a bias-free qkv Linear, its bias put together from
            # q_bias and v_bias): computed by the layer (on its arrays), b added after
            bound = dict(zip(("input", "weight", "bias"), args, strict=False)) | kwargs
            view, bias = bound.get("weight"), bound.get("bias")
            through = getattr(getattr(view, "_owner", None), "linear_through", None)
            if (isinstance(view, WeightView) and view._attr == "weight" and through is not None
                    and not isinstance(bound.get("input"), WeightView)
                    and not isinstance(bias, WeightView)):
                out = through(bound["input"], bias)
                if out is not None:
                    return out
        if func in _METADATA_FACTORIES:
            # zeros_like(layer.weight), layer.weight.new_zeros(...): a new tensor of its
            # dtype, device (and shape) reads none of its values
            args, kwargs = tree_map(_stand_in, (args, kwargs))
            return func(*args, **kwargs)
        # everything else goes straight to the dispatcher (and to __torch_dispatch__, which
        # refuses it) with no subclass wrapping of its results; metadata getters answer
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: tuple = (),  # type: ignore[override]
                           kwargs: dict | None = None) -> Any:
        view = next(t for t in tree_leaves((args, kwargs)) if isinstance(t, WeightView))
        raise WeightReadError(f"{view._refusal} (torch op {func})")

    # printing would compute: say what it is
    def __repr__(self, *args: Any, **kwargs: Any) -> str:  # type: ignore[override]
        return (f"WeightView(shape={tuple(self.shape)}, dtype={self.dtype}, "
                f"device={self.device}: {self._refusal.split(':')[0]}'s weight, no values)")

    def _refuse(self, what: str) -> WeightReadError:
        return WeightReadError(f"{self._refusal} ({what})")

    # the ways out of torch that dispatch nothing (torch's own error would name no layer)
    def __reduce_ex__(self, protocol: Any) -> Any:
        raise self._refuse("pickled")

    def tolist(self) -> Any:
        raise self._refuse(".tolist()")

    def numpy(self, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse(".numpy()")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse("np.asarray")

    def untyped_storage(self) -> Any:
        raise self._refuse(".untyped_storage()")

    def data_ptr(self) -> int:
        raise self._refuse(".data_ptr()")


class ViewsWeights(nn.Module):
    """Base of a mapped layer whose ``__getattr__`` answers the source's weights as
    :class:`WeightView` s: ``hasattr(layer, 'bias')`` is true, as on the source."""

    def seal(self) -> None:
        """The layer is built: a weight set on it from now on comes from outside (see
        :meth:`__setattr__`)."""
        self.__dict__["_sealed"] = True

    def __setattr__(self, attr: str, value: Any) -> None:
        # torch.func.functional_call sets back what it read (the view) after the call: it
        # is no state of the layer (refuse_swapped_weights would take it for a swapped weight)
        if isinstance(value, WeightView):
            self.__dict__.pop(attr, None)
            return
        # a weight set from outside once built (functional_call with the model's own
        # nn.Parameters): a plain attribute, which refuse_swapped_weights finds; registered,
        # the layer would compute with its own weights, ignoring it
        if (self.__dict__.get("_sealed") and isinstance(value, torch.Tensor)
                and weight_like(attr) and attr not in self._parameters
                and attr not in self._buffers):
            object.__setattr__(self, attr, value)
            return
        super().__setattr__(attr, value)

    # torch refuses to register a name hasattr finds: a twin's own learned bias
    def register_parameter(self, name: str, param: nn.Parameter | None) -> None:
        if "_parameters" in self.__dict__ and name not in vars(self):
            self._parameters.setdefault(name, None)
        super().register_parameter(name, param)

    def register_buffer(self, name: str, tensor: torch.Tensor | None,
                        persistent: bool = True) -> None:
        if "_buffers" in self.__dict__ and name not in vars(self):
            self._buffers.setdefault(name, None)
        super().register_buffer(name, tensor, persistent)

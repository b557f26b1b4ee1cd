"""Errors raised while building a layer, prefixed with the layer's name.

A ``MappingError`` from deep inside programming (``cimsim.arrays.program``) says what is wrong
with "this layer"; in a model of many layers the user needs to know which."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch

from ..errors import MappingError, SignedInputError

__all__ = ["exclude_name", "finalize_layers", "named_layer", "refuse_nonfinite_weights",
           "refuse_signed_together"]

_MATRIX_SUFFIX = re.compile(r"(\[g\d+\]|\.weight_(ih|hh|hr)\w*)$")


def exclude_name(matrix: str) -> str:
    """What ``deploy(exclude=...)`` takes to keep the matrix ``matrix`` digital: its module's
    name (a grouped conv's ``NAME[g0]``, a recurrent layer's ``NAME.weight_ih_l0`` are
    matrices of ``NAME``); an attention projection (``NAME.q_proj``) is excludable as it is."""
    return _MATRIX_SUFFIX.sub("", matrix)


@contextlib.contextmanager
def named_layer(name: str) -> Iterator[None]:
    """Re-raise a ``MappingError`` (any subclass, unchanged type) with ``"NAME: "`` in front
    of its message, unless it already names the layer."""
    try:
        yield
    except MappingError as exc:
        msg = str(exc)
        if name and not msg.startswith(f"{name}:"):
            exc.args = (f"{name}: {msg}", *exc.args[1:])
        raise


def refuse_nonfinite_weights(sources: Mapping[str, Any], who: str) -> None:
    """Refuse mapped layers (name -> the module a simulated or twin layer replaces) whose
    parameters hold NaN or infinity, naming them, before the calibration forward: there the
    NaN reaches the next matrix's inputs first and is reported as bad calibration data (a
    recurrent layer's own state), and a NaN weight would quantize to int64's minimum."""
    bad = []
    for name, module in sources.items():
        for pname, p in module.named_parameters():
            if not p.is_floating_point():
                continue
            n_bad = int((~torch.isfinite(p)).sum())
            if n_bad:
                nan = int(torch.isnan(p).sum())
                bad.append(f"{name}.{pname} ({nan} NaN, {n_bad - nan} infinite)")
    if bad:
        raise MappingError(
            f"{who}: parameters of mapped layers hold NaN or infinite values: {', '.join(bad[:8])}"
            + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
            + "; allowed: finite values (a diverged training run or a damaged checkpoint: "
            "check torch.isfinite(p).all() for the model's parameters)")


def finalize_layers(layers: Iterable[tuple[str, Any]]) -> None:
    """``finalize()`` every ``(name, layer)`` under :func:`named_layer`, refusing signed inputs
    together (:func:`refuse_signed_together`)."""
    refuse_signed_together((name, layer.finalize) for name, layer in layers)


def refuse_signed_together(calls: Iterable[tuple[str, Callable[[], Any]]]) -> None:
    """Run every ``(name, call)`` under :func:`named_layer`. A layer whose signed inputs the
    chip's 1-b inputs cannot hold does not stop the others: every such layer is named in one
    :class:`SignedInputError` with the ``exclude`` list that keeps them all digital (one at a
    time, following the advice took a deploy per layer: a ResNet's every layer after a
    residual add, each of attention's four projections). One layer alone keeps its own error
    (a grouped convolution's groups are one layer)."""
    refused: dict[str, float] = {}
    first: SignedInputError | None = None
    for name, call in calls:
        try:
            with named_layer(name):
                call()
        except SignedInputError as exc:
            first = first or exc
            for layer, low in exc.layers.items():
                refused[layer] = min(low, refused.get(layer, low))
    if first is None:
        return
    if len(refused) <= 1:
        raise first
    names = list(refused)
    lows = ", ".join(f"{n} {low:.3g}" for n, low in refused.items())
    bits = first.input_bits
    raise SignedInputError(
        f"layers {', '.join(map(repr, names))}: input_bits = {bits} cannot hold signed "
        f"activations (their calibration inputs reach below 0: {lows}); use input_bits "
        ">= 2, feed them non-negative inputs (after a ReLU), or keep them digital with "
        f"exclude={names!r}", refused, bits)

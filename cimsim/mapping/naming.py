"""Errors raised while building a layer, prefixed with the layer's name.

A ``MappingError`` from deep inside programming (``cimsim.arrays.program``) says what is wrong
with "this layer"; in a model of many layers the user needs to know which."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..errors import MappingError

__all__ = ["named_layer"]


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

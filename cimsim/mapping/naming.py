"""Errors raised while building a layer, prefixed with the layer's name.

A ``MappingError`` from deep inside programming (``cimsim.arrays.program``) says what is wrong
with "this layer"; in a model of many layers the user needs to know which."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from ..errors import MappingError

__all__ = ["exclude_name", "named_layer"]

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

"""Functions torch.compile must run eagerly, without importing Dynamo before it is used.

The simulation is NumPy and Numba, which Dynamo cannot trace (``torch.compile`` of a deployed
model failed deep in the engine: "sum(): argument 'dtype' must be torch.dtype").
``torch.compiler.disable`` marks a function so, but imports ``torch._dynamo`` (about 1.1 s)
when applied: as a decorator of every simulated layer class it put that on every
``import cimsim.mapping``, deploy, CLI run and sweep worker. :func:`eager` defers it to a
call made while compiling.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

__all__ = ["eager"]

F = TypeVar("F", bound=Callable[..., Any])


def eager(fn: F) -> F:
    """``fn`` unchanged outside ``torch.compile``; traced by it, a graph break around ``fn``
    (``torch._dynamo.disable``, applied at that call)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():
            return torch._dynamo.disable(fn)(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]

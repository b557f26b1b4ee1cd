"""Every module's own training flag, kept across a pass that needs eval mode.

``model.train(was)`` after ``model.eval()`` restores the root's flag to every submodule: a
BatchNorm (or Dropout) the user froze in eval mode inside a model in training mode came back
in training mode, and its running statistics moved in every later training forward."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["evaluated", "module_modes", "restore_modes"]


def module_modes(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    """``(module, training)`` of ``model`` and every submodule."""
    return [(m, m.training) for m in model.modules()]


def restore_modes(modes: list[tuple[nn.Module, bool]]) -> None:
    """Set each module's own flag back (not recursively: a parent's flag is not its
    children's)."""
    for m, training in modes:
        m.training = training


@contextmanager
def evaluated(model: nn.Module) -> Iterator[None]:
    """``model`` and its submodules in eval mode within the block, each flag restored after:
    a parametrized weight read in training mode is a training draw (a DropConnect mask, a
    weight-noise sample, spectral norm's power iteration stepping)."""
    modes = module_modes(model)
    model.eval()
    try:
        yield
    finally:
        restore_modes(modes)

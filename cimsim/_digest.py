"""SHA-256 of tensors, by value: the sweep's model and data fingerprints
(:mod:`cimsim.sweep.store`) and a prepared model's engine digest
(``cimsim.train.PreparedModel.engine_digest``) hash them alike."""

from __future__ import annotations

from typing import Any

__all__ = ["hash_named", "hash_tensor"]


def hash_tensor(h: Any, t: Any) -> None:
    """A tensor's dtype, shape and bytes into ``h``; anything else by its repr."""
    import torch

    if not isinstance(t, torch.Tensor):  # a module's extra state (get_extra_state)
        h.update(repr(t).encode())
        return
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    try:
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    except (RuntimeError, TypeError):  # exotic dtypes: fall back to the printed values
        h.update(repr(t.tolist()).encode())


def hash_named(h: Any, tensors: Any) -> None:
    """Each (name, tensor) of ``tensors`` into ``h``, in name order."""
    for name, t in sorted(tensors, key=lambda item: item[0]):
        h.update(name.encode())
        hash_tensor(h, t)

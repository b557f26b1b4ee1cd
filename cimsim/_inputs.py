"""A model's inputs as cimsim passes them around: one tensor (its rows the samples), or a dict
of the model's keyword inputs (a HuggingFace batch, called as ``model(**inputs)``).

One rule counts the samples of a dict everywhere (deploy's calibration batches, the sample
count of a call, ``cimsim.evaluate``, ``distill``, the command line's data and sweeps): the
first tensor whose batch dimension is not 1 (a ``(1, S)`` ``position_ids`` broadcasts over
the batch and is passed whole), else the first tensor; the entries with that many rows are
cut with the batch, the rest passed whole.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["call_on", "counting_key", "input_count", "input_rows"]


def counting_key(values: Mapping, batch_dim: int = 0) -> Any:
    """The key of a dict's tensor that sets the sample count: the first whose ``batch_dim``
    is not 1, else the first; None: no tensor."""
    keys = [k for k, v in values.items() if isinstance(v, torch.Tensor | np.ndarray)]
    return next((k for k in keys if values[k].ndim > batch_dim
                 and values[k].shape[batch_dim] != 1), keys[0] if keys else None)


def input_count(x: Any, batch_dim: int = 0) -> int:
    """Samples in ``x``: a tensor's length along ``batch_dim`` (1 for a sequence-first
    model's (S, B, ...) inputs), or a dict's (:func:`counting_key`).

    Raises
    ------
    ValueError
        A dict holding no tensor of at least one dimension, or an input with no dimension
        ``batch_dim`` (an IndexError deep in the indexing named neither).
    """
    if not isinstance(x, Mapping):
        if not hasattr(x, "shape"):
            # a list of samples or batches: "'list' object has no attribute 'shape'"
            what = (f"a {type(x).__name__} of {len(x)}" if isinstance(x, (list, tuple))
                    else type(x).__name__)
            raise ValueError(f"x is {what}; allowed: a tensor or an array of the inputs "
                             "(torch.stack(samples), torch.cat(batches)), or a dict of the "
                             "model's keyword inputs")
        if len(x.shape) <= batch_dim:
            raise ValueError(f"batch_dim = {batch_dim} is beyond the inputs' "
                             f"{len(x.shape)} dimensions (shape {tuple(x.shape)}); allowed: "
                             f"0..{len(x.shape) - 1}")
        return int(x.shape[batch_dim])
    key = counting_key(x, batch_dim)
    if key is None or x[key].ndim <= batch_dim:
        raise ValueError("x is a dict with no tensor; allowed: a tensor, or a dict of the "
                         "model's keyword inputs")
    return int(x[key].shape[batch_dim])


def input_rows(x: Any, start: int, stop: int | None = None, batch_dim: int = 0) -> Any:
    """Samples ``start:stop`` of ``x`` along ``batch_dim``: of a dict, every entry with as
    many samples there as it has (the others passed whole)."""
    cut = (slice(None),) * batch_dim + (slice(start, stop),)
    if not isinstance(x, Mapping):
        return x[cut]
    n = input_count(x, batch_dim)
    return {k: v[cut] if isinstance(v, torch.Tensor | np.ndarray) and v.ndim > batch_dim
            and v.shape[batch_dim] == n else v for k, v in x.items()}


def call_on(model: Callable[..., Any], x: Any) -> Any:
    """``model`` called on ``x``: a dict as keyword arguments."""
    return model(**x) if isinstance(x, Mapping) else model(x)

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


def input_count(x: Any) -> int:
    """Samples in ``x``: a tensor's rows, or a dict's (:func:`counting_key`).

    Raises
    ------
    ValueError
        A dict holding no tensor of at least one dimension.
    """
    if not isinstance(x, Mapping):
        return int(x.shape[0])
    key = counting_key(x)
    if key is None or not x[key].ndim:
        raise ValueError("x is a dict with no tensor; allowed: a tensor, or a dict of the "
                         "model's keyword inputs")
    return int(x[key].shape[0])


def input_rows(x: Any, start: int, stop: int | None = None) -> Any:
    """Samples ``start:stop`` of ``x``: of a dict, every entry with as many rows as it has
    samples (the others passed whole)."""
    if not isinstance(x, Mapping):
        return x[start:stop]
    n = input_count(x)
    return {k: v[start:stop] if isinstance(v, torch.Tensor | np.ndarray) and v.ndim
            and v.shape[0] == n else v for k, v in x.items()}


def call_on(model: Callable[..., Any], x: Any) -> Any:
    """``model`` called on ``x``: a dict as keyword arguments."""
    return model(**x) if isinstance(x, Mapping) else model(x)

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

__all__ = ["call_on", "counting_key", "input_count", "input_rows", "sample_dim"]


def sample_dim(value: Any, first_ndim: int, n: int, batch_dim: int = 0) -> int | None:
    """The dimension along which ``value``, an input beside the one that sets the sample count
    (``n`` samples along ``batch_dim`` of its ``first_ndim`` dimensions), holds its samples;
    None: it is passed whole (a shared mask, a number, a ``(1, S)`` ``position_ids``).

    ``batch_dim`` where it has ``n`` there, else dimension 0 (the ``(B, S)`` key padding mask
    of a sequence-first transformer: tried first for a tensor of fewer dimensions than the
    first, whose layout it cannot share: with S = B its sequence was cut), else, for a tensor
    of three dimensions or more, dimension 1 (the ``(layers, B, H)`` state of torch's recurrent
    layers; distill passed it whole, each sequence run from another sample's state, and
    ``cimsim.evaluate`` failed on it). One rule for deploy's calibration batches, ``distill``
    and ``cimsim.evaluate``.
    """
    if not isinstance(value, torch.Tensor | np.ndarray):
        return None
    shape = value.shape
    order = (0, batch_dim, 1) if len(shape) < first_ndim else (batch_dim, 0, 1)
    return next((k for k in order if len(shape) > k and shape[k] == n
                 and (k != 1 or k == batch_dim or len(shape) >= 3)), None)


def counting_key(values: Mapping, batch_dim: int = 0) -> Any:
    """The key of a dict's tensor that sets the sample count: the first whose ``batch_dim``
    is not 1, else the first that has a dimension ``batch_dim`` (a scalar entry before a
    one-sample input was taken, and the dict refused as holding no tensor), else the first;
    None: no tensor."""
    keys = [k for k, v in values.items() if isinstance(v, torch.Tensor | np.ndarray)]
    deep = [k for k in keys if values[k].ndim > batch_dim]
    return next((k for k in deep if values[k].shape[batch_dim] != 1),
                deep[0] if deep else keys[0] if keys else None)


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
            raise ValueError(f"x is {what}; allowed: a tensor of the inputs "
                             "(torch.stack(samples), torch.cat(batches); a NumPy array for a "
                             "deployed model, which converts it), or a dict of the model's "
                             "keyword inputs")
        if not len(x.shape):  # ("allowed: 0..-1" was offered)
            raise ValueError(f"x is a {type(x).__name__} of no dimension (shape ()); allowed: "
                             "inputs with a dimension along which the samples lie (x[None] "
                             "for one sample)")
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
    """Samples ``start:stop`` of ``x`` along ``batch_dim``: of a dict, every entry along the
    dimension that holds its samples (:func:`sample_dim`: a recurrent state's dimension 1; the
    others passed whole)."""
    def rows(v: Any, dim: int | None) -> Any:
        return v if dim is None else v[(slice(None),) * dim + (slice(start, stop),)]

    if not isinstance(x, Mapping):
        return rows(x, batch_dim)
    key = counting_key(x, batch_dim)
    n = input_count(x, batch_dim)
    ndim = len(x[key].shape)
    def entry(v: Any) -> Any:  # an LSTM's (h0, c0) entry: each state cut
        if type(v) in (tuple, list):
            return type(v)(entry(e) for e in v)
        if isinstance(v, tuple) and hasattr(v, "_fields"):  # a NamedTuple (h, c) too (was whole)
            return type(v)(*(entry(e) for e in v))
        return rows(v, sample_dim(v, ndim, n, batch_dim))

    return {k: rows(v, batch_dim) if k == key else entry(v) for k, v in x.items()}


def call_on(model: Callable[..., Any], x: Any) -> Any:
    """``model`` called on ``x``: a dict as keyword arguments."""
    return model(**x) if isinstance(x, Mapping) else model(x)

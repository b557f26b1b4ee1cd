"""BatchNorm calibration: re-estimate running statistics under the chip's forward pass.

PIM-QAT (Jin et al., arXiv 2209.08617, 2022; abstract) calibrates BatchNorm on the non-ideal
chip: gain, offset and non-linearity errors of the conversions shift and scale every layer's
output; re-estimating each BatchNorm's running mean and variance on a few hundred inputs run
through the non-ideal forward absorbs them, without touching a weight. Here that forward is a
training twin (:class:`~cimsim.train.PreparedModel`, in eval mode: noise-free) or a deployed
:class:`~cimsim.mapping.SimModel` (the Numba engine with its noise, variation and
non-linearity), which keeps BatchNorm in float between mapped layers.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..mapping.deploy import _batches
from ._data import batch_dim_of
from ._modes import module_modes, restore_modes

__all__ = ["calibrate_bn"]


def _same_batches(data: tuple | list) -> bool:
    """Whether a sequence of tensors is batches of one input, not (inputs, labels): two or
    more of one shape and dtype (a list of equal batches was read as (inputs, labels) and
    all but its first batch dropped, silently)."""
    first = data[0]
    return len(data) > 1 and all(d.shape == first.shape and d.dtype == first.dtype
                                 for d in data)


def _inputs(data, batch_size: int, batch_dim: int = 0) -> Iterable[torch.Tensor]:
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, (tuple, list)) and data and isinstance(data[0], torch.Tensor) \
            and all(isinstance(d, torch.Tensor) and d.shape[0] == data[0].shape[0]
                    for d in data) and not _same_batches(data):
        data = data[0]  # (inputs, labels, ...): the labels are not needed
    if isinstance(data, torch.Tensor):
        # a sequence-first model (batch_dim = 1) is cut along its batch, not along time
        dim = batch_dim if data.dim() > batch_dim else 0
        if data.shape[dim] == 0:
            raise ConfigError("calibrate_bn: data is empty")
        for (x,) in _batches(data, batch_size, dim):
            yield x
        return
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        for item in data:
            yield item[0] if isinstance(item, (tuple, list)) else item
        return
    raise ConfigError("calibrate_bn: data must be a tensor, an array, (inputs, labels) or an "
                      f"iterable of batches; got {type(data).__name__}")


def _batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def _statistics(bns: list) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    return [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
            for m in bns]


def _restore(bns: list, stats: list) -> None:
    with torch.no_grad():
        for m, (mean, var, count) in zip(bns, stats, strict=True):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)


def _estimate(module: nn.Module, bns: list, data, batch_size: int) -> None:
    """Reset ``bns`` and accumulate their statistics over ``data`` through ``module``'s
    forward (cumulative average); modes and momenta restored, the previous statistics put
    back if the pass fails."""
    before = _statistics(bns)
    modes = module_modes(module)
    momenta = {m: m.momentum for m in bns}
    done = False
    try:
        module.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
            m.train()
        n = 0
        # a deployed SimModel's calibration forwards are no part of its run: they entered its
        # report's per-inference figures (64 calibration inputs counted as inferences)
        uncounted = getattr(module, "uncounted", contextlib.nullcontext)
        # and its forwards keep the BatchNorm layers in training mode, as set here
        modes_set = getattr(module, "modes_set", contextlib.nullcontext)
        with torch.no_grad(), uncounted(), modes_set():
            for x in _inputs(data, batch_size, batch_dim_of(module)):
                module(x)
                n += 1
        if n == 0:
            raise ConfigError("calibrate_bn: data is empty")
        done = True
    finally:
        for bn in bns:
            bn.momentum = momenta[bn]
        restore_modes(modes)
        if not done:  # nothing lost on failure: the statistics it had
            _restore(bns, before)


def calibrate_bn(model_or_sim: nn.Module, data, *, batch_size: int = 64,
                 reference: nn.Module | None = None) -> int:
    """Re-estimate every BatchNorm's running mean and variance on ``data`` passed through
    ``model_or_sim``'s own forward (a twin, a deployed ``SimModel`` or any module).

    The running statistics are reset and accumulated as a cumulative average over all batches
    (``momentum = None``, ``num_batches_tracked`` counting the calibration batches); nothing
    else changes: no weight, scale, affine BatchNorm parameter or other buffer, and a
    ``SimModel``'s events and inference count are as they were (``SimModel.uncounted``).
    Every other module runs in eval mode (no training noise, dropout off), and each module's
    training mode is restored afterwards; if the pass fails, the statistics are the ones it
    had.

    With ``reference`` (relative calibration, cimsim's extension): the statistics the model
    holds are kept and moved by the chip's deviation from ``reference``, both estimated on
    ``data``: mean + (mean_chip − mean_reference), var · var_chip / var_reference. Use it for
    a model fine-tuned with its BatchNorm statistics frozen (``cimsim.train``'s loops freeze
    them): its weights have adapted to statistics that its own forward no longer produces, and
    replacing them outright undoes that adaptation (docs/pim-qat.md §3, measured in §4).
    ``reference`` is the twin the ``SimModel`` was deployed from (its noise-free forward), or
    any module with the same BatchNorm layers in the same order; its own statistics are left
    as they were.

    Parameters
    ----------
    model_or_sim : nn.Module
    data : tensor, ndarray, (inputs, labels) or iterable of batches
        Calibration inputs (a few hundred suffice); a tensor is cut along the ``batch_dim`` of
        a ``PreparedModel`` / ``SimModel`` (dimension 0 for any other module). An iterable is
        read twice with ``reference`` (pass a tensor or a list, not a one-shot generator). A
        list or tuple of tensors of one shape and dtype is batches; ``(inputs, labels)`` are
        tensors of one sample count that differ in shape or dtype (the labels unused).
    batch_size : int
        Batch size when ``data`` is a tensor.
    reference : nn.Module, optional
        The module whose statistics on ``data`` are the baseline of a relative calibration.

    Returns
    -------
    int
        The number of BatchNorm modules calibrated (0: the model has none; nothing ran and a
        ``UserWarning`` says so).
    """
    bns = _batchnorms(model_or_sim)
    if not bns:
        # PIM-QAT's BN calibration has nothing to absorb the chip's errors into: say so, a
        # silent 0 looked like a calibration that ran
        warnings.warn(f"calibrate_bn: {type(model_or_sim).__name__} has no BatchNorm layer "
                      "with running statistics (LayerNorm, GroupNorm and models without "
                      "normalization have none to re-estimate); nothing was calibrated",
                      UserWarning, stacklevel=2)
        return 0
    if reference is None:
        _estimate(model_or_sim, bns, data, batch_size)
        return len(bns)
    ref_bns = _batchnorms(reference)
    shapes = [m.num_features for m in bns]
    if [m.num_features for m in ref_bns] != shapes:
        raise ConfigError(
            f"calibrate_bn: reference must have the model's BatchNorm layers in the same order; "
            f"the model has {len(bns)} with {shapes} features, reference "
            f"{len(ref_bns)} with {[m.num_features for m in ref_bns]}")
    if isinstance(data, Iterator):
        raise ConfigError("calibrate_bn: with reference, data is read twice; pass a tensor, "
                          f"an array or a list of batches, not a one-shot {type(data).__name__}")
    held, ref_held = _statistics(bns), _statistics(ref_bns)
    try:
        _estimate(model_or_sim, bns, data, batch_size)
        chip = _statistics(bns)
        _estimate(reference, ref_bns, data, batch_size)
        base = _statistics(ref_bns)
    except BaseException:
        _restore(bns, held)
        raise
    finally:
        _restore(ref_bns, ref_held)
    moved = []
    for (mean, var, _), (c_mean, c_var, count), (r_mean, r_var, _) in zip(held, chip, base,
                                                                          strict=True):
        r_mean, r_var = r_mean.to(c_mean), r_var.to(c_var)  # a twin on another device/dtype
        # a channel the reference never varies has no ratio to carry: the chip's variance
        varies = r_var > 0
        ratio = c_var / torch.where(varies, r_var, torch.ones_like(r_var))
        moved.append((mean + (c_mean - r_mean), torch.where(varies, var * ratio, c_var), count))
    _restore(bns, moved)
    return len(bns)

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

import warnings
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..mapping.deploy import _batches
from ._data import batch_dim_of

__all__ = ["calibrate_bn"]


def _inputs(data, batch_size: int, batch_dim: int = 0) -> Iterable[torch.Tensor]:
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, (tuple, list)) and data and isinstance(data[0], torch.Tensor) \
            and all(isinstance(d, torch.Tensor) and d.shape[0] == data[0].shape[0]
                    for d in data):
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


def calibrate_bn(model_or_sim: nn.Module, data, *, batch_size: int = 64) -> int:
    """Re-estimate every BatchNorm's running mean and variance on ``data`` passed through
    ``model_or_sim``'s own forward (a twin, a deployed ``SimModel`` or any module).

    The running statistics are reset and accumulated as a cumulative average over all batches
    (``momentum = None``); nothing else changes: no weight, scale, affine BatchNorm parameter or
    other buffer. Every other module runs in eval mode (no training noise, dropout off), and
    each module's training mode is restored afterwards.

    Parameters
    ----------
    model_or_sim : nn.Module
    data : tensor, ndarray, (inputs, labels) or iterable of batches
        Calibration inputs (a few hundred suffice); a tensor is cut along the ``batch_dim`` of
        a ``PreparedModel`` / ``SimModel`` (dimension 0 for any other module).
    batch_size : int
        Batch size when ``data`` is a tensor.

    Returns
    -------
    int
        The number of BatchNorm modules calibrated (0: the model has none; nothing ran and a
        ``UserWarning`` says so).
    """
    bns = [m for m in model_or_sim.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        # PIM-QAT's BN calibration has nothing to absorb the chip's errors into: say so, a
        # silent 0 looked like a calibration that ran
        warnings.warn(f"calibrate_bn: {type(model_or_sim).__name__} has no BatchNorm layer "
                      "with running statistics (LayerNorm, GroupNorm and models without "
                      "normalization have none to re-estimate); nothing was calibrated",
                      UserWarning, stacklevel=2)
        return 0
    modes = {m: m.training for m in model_or_sim.modules()}
    momenta = {m: m.momentum for m in bns}
    try:
        model_or_sim.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
            m.train()
        n = 0
        with torch.no_grad():
            for x in _inputs(data, batch_size, batch_dim_of(model_or_sim)):
                model_or_sim(x)
                n += 1
        if n == 0:
            raise ConfigError("calibrate_bn: data is empty")
    finally:
        for bn in bns:
            bn.momentum = momenta[bn]
        for module, training in modes.items():
            module.training = training
    return len(bns)

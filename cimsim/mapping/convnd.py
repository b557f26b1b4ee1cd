"""``nn.Conv3d`` and ``nn.ConvTranspose1d/2d/3d`` on the arrays.

Conv3d is the Conv1d/2d mapping in one more dimension: im2col rows (C_in/groups · kd · kh · kw)
times the weight matrix, one core per group, the groups sharing one activation quantizer.

A transposed convolution scatters every input pixel: input position p adds
``W[c_in, c_out, k] · x[c_in, p]`` at output position ``p·stride − padding + k·dilation``. The
matrix on the arrays is that of one input pixel: its C_in/groups channels times the weights
reshaped to (C_out/groups · k...) outputs, so every input position is one input vector and every
weight is programmed once (no zero-inserted input, as a zero-stuffed direct convolution would
need: ``stride^d`` times the input vectors, most of their elements zero). The overlapping
contributions of neighbouring input pixels are then summed digitally (col2im, one accumulator
add per contribution beyond the first), then the bias. The geometry helpers work on torch
tensors so that the deployed layer and the training twin (``cimsim.train.twin_layers``) run
the same code.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.conv import _ConvTransposeNd

from ..config import ChipConfig
from ..errors import MappingError
from ..events import Action, Component, Events, event_key
from .layers import (
    LiveConv,
    MatmulCore,
    SimLayer,
    check_kernel_fits,
    conv_input_error,
    grouped_cores,
    in_format_of,
)

__all__ = ["SimConv3d", "SimConvTranspose", "col2im_nd", "conv_input_error", "unfold_nd"]


def unfold_nd(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...],
              dilation: tuple[int, ...]) -> tuple[torch.Tensor, tuple[int, ...]]:
    """im2col of an already padded (B, C, *S) into (B·prod(S_out), C·prod(kernel)) rows,
    columns ordered (c, k1, k2, ...) as torch's conv weights are; and (B, *S_out).

    Strided windows and one copy (``Tensor.unfold``): torch's OpenMP im2col (``F.unfold``)
    stalls on a busy CPU and has no 3-D form."""
    nd = len(kernel)
    win = x
    for d in range(nd):
        win = win.unfold(2 + d, dilation[d] * (kernel[d] - 1) + 1, stride[d])
    every: tuple[Any, ...] = (Ellipsis, *(slice(None, None, s) for s in dilation))
    win = win[every]  # (B, C, *S_out, *k)
    b, c = win.shape[:2]
    out = tuple(win.shape[2:2 + nd])
    order = (0, *range(2, 2 + nd), 1, *range(2 + nd, 2 + 2 * nd))
    cols = win.permute(order).reshape(b * math.prod(out), c * math.prod(kernel))
    return cols, (b, *out)


def col2im_nd(y: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...],
              dilation: tuple[int, ...], padding: tuple[int, ...],
              output_padding: tuple[int, ...]) -> torch.Tensor:
    """The digital sum of a transposed convolution: per-input-pixel outputs
    (B, *S_in, C, *kernel) scattered to (B, C, *S_out) and added where they overlap.

    Output position ``p·stride + k·dilation`` of the uncropped output (length
    ``(S_in − 1)·stride + dilation·(k − 1) + 1 + output_padding``) receives input pixel p's
    output for kernel offset k; ``padding`` is then cropped from both sides, as torch's
    ConvTranspose defines its output. One strided add per kernel offset (differentiable)."""
    nd = len(kernel)
    b, s_in, c = y.shape[0], y.shape[1:1 + nd], y.shape[1 + nd]
    full = [(s - 1) * st + dl * (k - 1) + 1 + op
            for s, st, dl, k, op in zip(s_in, stride, dilation, kernel, output_padding,
                                        strict=True)]
    # (B, C, *kernel, *S_in): one kernel offset's contributions are one strided block
    z = y.permute(0, 1 + nd, *range(2 + nd, 2 + 2 * nd), *range(1, 1 + nd))
    out = y.new_zeros((b, c, *full))
    for k in itertools.product(*(range(n) for n in kernel)):
        where: tuple[Any, ...] = tuple(slice(ki * dl, ki * dl + (s - 1) * st + 1, st)
                                       for ki, dl, s, st in zip(k, dilation, s_in, stride,
                                                                strict=True))
        block: tuple[Any, ...] = (slice(None), slice(None), *k)
        out[(slice(None), slice(None), *where)] += z[block]
    crop: tuple[Any, ...] = tuple(slice(p, f - p) for p, f in zip(padding, full, strict=True))
    return out[(slice(None), slice(None), *crop)]


def transpose_group_matrices(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """ConvTranspose weights (C_in, C_out/groups, *k) -> the stacked per-input-pixel matrices
    (groups · C_out/groups · prod(k), C_in/groups): group g's rows ordered (c_out, k...)."""
    cin_g = weight.shape[0] // groups
    return torch.cat([weight[g * cin_g:(g + 1) * cin_g].reshape(cin_g, -1).t()
                      for g in range(groups)])


def transpose_weight(mats: torch.Tensor, groups: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`transpose_group_matrices`: stacked matrices -> weights ``shape``."""
    n_g = mats.shape[0] // groups
    return torch.cat([mats[g * n_g:(g + 1) * n_g].t() for g in range(groups)]).reshape(shape)


class _LiveGeometry:
    """A geometry whose stride, dilation, padding (and output padding) are the layer's at
    each call (:class:`~cimsim.mapping.layers.LiveConv`, read by :meth:`refresh`)."""

    live: LiveConv
    # a geometry pickled before LiveConv holds its settings as its own attributes
    stride = property(lambda self: _setting(self, "stride"))
    dilation = property(lambda self: _setting(self, "dilation"))
    padding = property(lambda self: _setting(self, "padding"))
    output_padding = property(lambda self: _setting(self, "output_padding"))
    pads = property(lambda self: _setting(self, "pads"))  # F.pad order

    def refresh(self, layer: nn.Module) -> None:
        """Take ``layer``'s settings as they are now, as torch's forward reads them."""
        if "live" in vars(self):
            self.live.update(layer)


def _setting(geometry: _LiveGeometry, name: str) -> Any:
    live = vars(geometry).get("live")
    return getattr(live, name) if live is not None else vars(geometry)[name]


class TransposeGeometry(_LiveGeometry):
    """What a transposed convolution's forward needs besides its matrices (shared by the
    deployed layer and the twin)."""

    def __init__(self, src: nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d):
        if src.padding_mode != "zeros":  # torch itself refuses anything else
            raise MappingError(f"padding_mode {src.padding_mode!r} is not supported")
        self.nd = src.weight.dim() - 2
        # the sizes are the weight's (in, out / groups, *k), as torch's forward reads them: a
        # pruner replacing the weight may leave .in_channels / .out_channels as built
        w_in, w_out, *kernel = src.weight.shape
        self.in_channels, self.out_channels = w_in, w_out * src.groups
        self.groups = src.groups
        self.kernel = tuple(kernel)
        self.live = LiveConv(src, transposed=True)
        self.weight_shape = tuple(src.weight.shape)

    def rows(self, x: torch.Tensor, output_size: Any, name: str
             ) -> tuple[torch.Tensor, tuple[int, ...], torch.Tensor, Any]:
        """(B, C_in, *S), or (C_in, *S) unbatched as torch accepts it -> one row per input
        pixel (B·prod(S), C_in); (B, *S); the batched input; its ``output_size``."""
        if x.dim() == self.nd + 1:
            x = x.unsqueeze(0)
            output_size = None if output_size is None else list(output_size)[-self.nd:]
        if x.dim() != self.nd + 2 or x.shape[1] != self.in_channels:
            raise conv_input_error(name, x, self.nd, self.groups, self.in_channels,
                                   list(self.weight_shape))
        perm = (0, *range(2, 2 + self.nd), 1)
        rows = x.permute(perm).reshape(-1, self.in_channels)
        return rows, (x.shape[0], *x.shape[2:]), x, output_size

    def scatter(self, y: torch.Tensor, lead: tuple[int, ...], x: torch.Tensor,
                output_size: Any, bias: torch.Tensor | None) -> torch.Tensor:
        """Per-pixel outputs (B·prod(S), C_out·prod(k)) of the batched input ``x`` -> the
        layer output (col2im + bias)."""
        pad_out = _ConvTransposeNd._output_padding(
            self, x, output_size, list(self.stride), list(self.padding),  # type: ignore[arg-type]
            list(self.kernel), self.nd, list(self.dilation))
        sizes = [(s - 1) * st - 2 * p + dl * (k - 1) + 1 + op for s, st, p, dl, k, op in
                 zip(lead[1:], self.stride, self.padding, self.dilation, self.kernel, pad_out,
                     strict=True)]
        if min(sizes) <= 0:
            raise RuntimeError(f"Given input size per channel: {tuple(lead[1:])}. Calculated "
                               f"output size per channel: {tuple(sizes)}. Output size is too "
                               "small")
        y = y.reshape(*lead, self.out_channels, *self.kernel)
        out = col2im_nd(y, self.kernel, self.stride, self.dilation, self.padding,
                        tuple(int(p) for p in pad_out))
        if bias is not None:
            out = out + bias.reshape(-1, *([1] * self.nd))
        return out

    def n_overlap_adds(self, lead: tuple[int, ...], out_shape: tuple[int, ...]) -> float:
        """Digital adds of the col2im: at every output position, one per contribution beyond
        the first (contributions cropped away by the padding are not added)."""
        landed = covered = 1.0
        for s, st, dl, k, p, o in zip(lead[1:], self.stride, self.dilation, self.kernel,
                                      self.padding, out_shape, strict=True):
            pos = (np.arange(s)[:, None] * st + np.arange(k)[None, :] * dl - p).ravel()
            inside = pos[(pos >= 0) & (pos < o)]
            landed *= inside.size  # separable: the counts multiply over the dimensions
            covered *= np.unique(inside).size
        return float(lead[0] * self.out_channels) * (landed - covered)


class SimConvTranspose(SimLayer):
    """``nn.ConvTranspose1d/2d/3d`` on the arrays: one core per group holding the
    per-input-pixel matrix (C_out/groups · prod(k), C_in/groups); the overlapping outputs and
    the bias are added digitally (module docstring)."""

    kind = "conv_transpose"

    def __init__(self, src: nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d,
                 name: str, chip: ChipConfig, seed: int):
        super().__init__(name)
        self.geometry = TransposeGeometry(src)
        w2 = transpose_group_matrices(src.weight.detach().cpu().double(), src.groups).numpy()
        self.bias = None if src.bias is None else src.bias.detach().cpu().double()
        self.cores = grouped_cores(name, w2, None, src.groups, chip, seed, None)

    def finalize(self) -> None:
        # the groups read one tensor: one input quantizer; an output is a sum of several
        # conversions plus the bias, so no ADC can be its ReLU
        MatmulCore.share_statistics(self.cores)
        for core in self.cores:
            core.activation_clamp = None
        super().finalize()

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        x = input  # torch names it so: a caller may pass input=
        g = self.geometry
        g.refresh(self)
        rows, lead, xb, size = g.rows(x, output_size, self.sim_name)
        k = g.in_channels // len(self.cores)  # a group, or a pack of groups, per core
        x64 = self._np(rows)
        y = np.concatenate([self._matmul(core, x64[:, i * k:(i + 1) * k])
                            for i, core in enumerate(self.cores)], axis=1)
        out = g.scatter(torch.from_numpy(y), lead, xb, size, self.bias)
        if self.simulating and not all(c.digital for c in self.cores):
            self._count_overlap(lead, tuple(out.shape[2:]))
        out = in_format_of(out.to(x.device, x.dtype), x)
        return out if xb is x else out.squeeze(0)

    def _count_overlap(self, lead: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
        adds = self.geometry.n_overlap_adds(lead, out_shape)
        acc = self.cores[0].chip.accumulator_bits
        core = self.cores[0]  # the layer's digital work, booked on its first matrix
        core.events = core.events + Events({event_key(Component.ACCUMULATOR, Action.ADD, acc):
                                            adds})


class SimConv3d(SimLayer):
    """``nn.Conv3d`` on the arrays (3-D im2col; one core per group), as ``SimConv``."""

    kind = "conv"

    def __init__(self, src: nn.Conv3d, name: str, chip: ChipConfig, seed: int):
        super().__init__(name)
        self.geometry = ConvGeometry(src)
        g = self.geometry
        w2 = self._np(src.weight.reshape(src.weight.shape[0], -1))
        b = None if src.bias is None else self._np(src.bias)
        self.cores = grouped_cores(name, w2, b, src.groups, chip, seed, g.kernel)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = input  # torch names it so: a caller may pass input=
        g = self.geometry
        if x.dim() == g.nd + 1:  # unbatched (C, D, H, W), as torch's conv accepts
            return self.forward(x.unsqueeze(0)).squeeze(0)
        g.refresh(self)
        cols, lead = g.columns(x.detach().to("cpu", torch.float64), self.sim_name)
        k = cols.shape[1] // len(self.cores)  # a group, or a pack of groups, per core
        c64 = cols.numpy()
        y = np.concatenate([self._matmul(core, c64[:, i * k:(i + 1) * k])
                            for i, core in enumerate(self.cores)], axis=1)
        return in_format_of(g.to_output(torch.from_numpy(y), lead).to(x.device, x.dtype), x)


class ConvGeometry(_LiveGeometry):
    """What an N-d convolution's forward needs besides its matrices (shared by the deployed
    Conv3d and its twin)."""

    def __init__(self, src: nn.Conv3d):
        self.nd = src.weight.dim() - 2
        # the sizes are the weight's (out, in / groups, *k), as torch's forward reads them
        w_out, w_in, *kernel = src.weight.shape
        self.in_channels, self.out_channels = w_in * src.groups, w_out
        self.groups = src.groups
        self.kernel = tuple(kernel)
        self.live = LiveConv(src)
        self.pad_mode = "constant" if src.padding_mode == "zeros" else src.padding_mode
        self.weight_shape = tuple(src.weight.shape)

    def columns(self, x: torch.Tensor, name: str) -> tuple[torch.Tensor, tuple[int, ...]]:
        """(B, C, *S) -> padded im2col rows (B·prod(S_out), C·prod(k)); and (B, *S_out)."""
        if x.dim() != self.nd + 2 or x.shape[1] != self.in_channels:
            raise conv_input_error(name, x, self.nd, self.groups, self.in_channels,
                                   list(self.weight_shape))
        check_kernel_fits(name, x.shape[2:], self.pads, self.kernel, self.dilation)
        if any(self.pads):
            x = F.pad(x, self.pads, mode=self.pad_mode)
        return unfold_nd(x, self.kernel, self.stride, self.dilation)

    def to_output(self, y: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
        """(B·prod(S_out), C_out) -> (B, C_out, *S_out)."""
        y = y.reshape(*lead, self.out_channels)
        return y.permute(0, self.nd + 1, *range(1, self.nd + 1)).contiguous()

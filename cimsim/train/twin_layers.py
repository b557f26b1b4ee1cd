"""Training twins of ``nn.Conv3d``, ``nn.ConvTranspose1d/2d/3d``, ``nn.RNN``/``LSTM``/``GRU`` and
their cells ``nn.RNNCell``/``LSTMCell``/``GRUCell``.

Each computes as the deployed layer (``cimsim.mapping.convnd``, ``cimsim.mapping.recurrent``)
does, through one :class:`~cimsim.train.twin.TwinMatmul` per weight matrix (straight-through
estimators as for every twin), with the same geometry code (im2col, col2im, the recurrence),
so that ``PreparedModel.deploy()`` computes what the twin computes. ``cimsim.train.twin``
registers them in its table of twins.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ChipConfig
from ..mapping.convnd import (
    ConvGeometry,
    TransposeGeometry,
    transpose_group_matrices,
    transpose_weight,
)
from ..mapping.layers import in_format_of
from ..mapping.matrix import packed_groups, unpack_groups
from ..mapping.recurrent import (
    RecurrentShape,
    cell_forward,
    cell_matrices,
    cell_mode,
    recurrent_forward,
    recurrent_matrices,
)
from .twin import TwinConv, TwinOptions, _TwinLayer

__all__ = ["TwinConv3d", "TwinConvTranspose", "TwinRNN", "TwinRNNCell", "EXTRA_TWINS"]


class TwinConv3d(TwinConv):
    """``nn.Conv3d`` through one :class:`TwinMatmul` per group (the groups share one
    activation scale), as ``TwinConv`` in one more dimension."""

    def __init__(self, src: nn.Conv3d, name: str, chip: ChipConfig, seed: int,
                 options: TwinOptions):
        geometry = ConvGeometry(src)
        w = src.weight.detach().clone()
        per, w2, row_tiles = packed_groups(w.reshape(w.shape[0], -1), src.groups,
                                           geometry.kernel, chip, name)
        _TwinLayer.__init__(self, src, name, chip, seed, options, src.groups // per)
        self.geometry = geometry
        self._w_shape = tuple(w.shape)
        self.out_channels, self.groups, self.per = w.shape[0], src.groups, per
        self._w2 = w2  # (groups·N, K) stacked, packed by ``per`` groups
        self.row_tiles = row_tiles
        self._b = None if src.bias is None else src.bias.detach().clone()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = input  # torch names it so: a caller may pass input=
        g = self.geometry
        if x.dim() == g.nd + 1:  # unbatched, as torch's conv accepts
            return self.forward(x.unsqueeze(0)).squeeze(0)
        g.refresh(self)
        cols, lead = g.columns(x, self.twin_name)
        y = self._grouped_product(cols, self._w2, self._b, self.groups // self.per)
        return in_format_of(g.to_output(y, lead), x)


class TwinConvTranspose(_TwinLayer):
    """``nn.ConvTranspose1d/2d/3d``: one :class:`TwinMatmul` per group holding the
    per-input-pixel matrix (C_out/groups · prod(k), C_in/groups), sharing one activation
    scale; the overlapping outputs are summed (col2im) and the bias (a learned parameter of
    the layer) added after, as the deployed layer does."""

    def __init__(self, src: nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d,
                 name: str, chip: ChipConfig, seed: int, options: TwinOptions):
        per, mats, _ = packed_groups(
            transpose_group_matrices(src.weight.detach().clone(), src.groups), src.groups, None,
            chip, name)
        super().__init__(src, name, chip, seed, options, src.groups // per)
        self.geometry = TransposeGeometry(src)
        self.groups, self.per = src.groups, per
        self._mats = mats  # packed by ``per`` groups
        self.bias = (None if src.bias is None
                     else nn.Parameter(src.bias.detach().clone()))

    def finalize(self) -> None:
        self.activation_clamp = None  # an output sums several conversions and the bias
        self._group_twins(self._mats, None, self.groups // self.per, None, self.per)

    def learned(self) -> dict[str, torch.Tensor | None]:
        mats = unpack_groups(torch.cat([t.weight for t in self.matrices()]), self.groups,
                             self.per)
        return {"weight": transpose_weight(mats, self.groups, self.geometry.weight_shape),
                "bias": self.bias}

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        x = input  # torch names it so: a caller may pass input=
        g = self.geometry
        g.refresh(self)
        rows, lead, xb, size = g.rows(x, output_size, self.twin_name)
        y = self._grouped_product(rows, self._mats, None, self.groups // self.per)
        # in the product's dtype, as the other twins add theirs: cast to the input's, a
        # float32 model's output was float64 for a float64 input (its Linear's float32)
        bias = None if self.bias is None else self.bias.to(x.device, y.dtype)
        out = in_format_of(g.scatter(y, lead, xb, size, bias), x)
        return out if xb is x else out.squeeze(0)


class _TwinRecurrent(_TwinLayer):
    """A recurrent layer or cell: one :class:`TwinMatmul` per torch parameter pair
    ``self._names`` ((weight name, bias name or None), in deploy's core order) starting from
    the source's ``self._src_wb``, named ``NAME.<weight name>`` as deploy names the matrix."""

    _names: list[tuple[str, str | None]]
    _src_wb: list[tuple[torch.Tensor, torch.Tensor | None]]

    def _keep_source(self, src: nn.Module, names: list[tuple[str, str | None]]) -> None:
        self._names = names
        self._src_wb = [(getattr(src, w).detach().clone(),
                         None if b is None else getattr(src, b).detach().clone())
                        for w, b in names]

    def finalize(self) -> None:
        self.activation_clamp = None  # a gate output is no ReLU's input
        for i, ((w, b), (w_name, _)) in enumerate(zip(self._src_wb, self._names, strict=True)):
            self.twins.append(self._twin(w, b, i, f"{self.twin_name}.{w_name}"))
        self._stats = []

    def learned(self) -> dict[str, torch.Tensor | None]:
        out: dict[str, torch.Tensor | None] = {}
        for t, (w_name, b_name) in zip(self.matrices(), self._names, strict=True):
            out[w_name] = t.weight
            if b_name is not None:
                out[b_name] = t.bias
        return out

    def _product(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Matrix ``i``'s product (bias included): in float while the calibration pass
        observes, through its twin afterwards."""
        if self.calibrating:
            return self._float_pass(i, x, *self._src_wb[i])
        return self.twins[i](x)


class TwinRNN(_TwinRecurrent):
    """``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``: every W_ih, W_hh (and W_hr) through a
    :class:`TwinMatmul` named as deploy names the matrix (``NAME.weight_ih_l0`` ...), with the
    gate biases in the twins; the recurrence (``cimsim.mapping.recurrent.recurrent_forward``)
    differentiates through the straight-through estimators of every step."""

    def __init__(self, src: nn.RNNBase, name: str, chip: ChipConfig, seed: int,
                 options: TwinOptions):
        names = recurrent_matrices(src)
        flat = [pair for mats in names for pair in mats]
        super().__init__(src, name, chip, seed, options, len(flat))
        self.shape = RecurrentShape.of(src)
        self._keep_source(src, flat)
        # (layer/direction, which) -> matrix index, in deploy's core order
        self._where: dict[tuple[int, int], int] = {}
        for idx, mats in enumerate(names):
            for which in range(len(mats)):
                self._where[(idx, which)] = len(self._where)

    def _project(self, idx: int, which: int, x: torch.Tensor) -> torch.Tensor:
        return self._product(self._where[(idx, which)], x)

    def forward(self, input, hx=None):
        return recurrent_forward(self._project, self.shape, self.training, input, hx,
                                 self.twin_name)

    def float_module(self) -> nn.Module:
        module = super().float_module()
        assert isinstance(module, nn.RNNBase)
        module.flatten_parameters()  # the learned parameters replaced the flat ones
        return module


class TwinRNNCell(_TwinRecurrent):
    """``nn.RNNCell`` / ``nn.LSTMCell`` / ``nn.GRUCell``: W_ih and W_hh through a
    :class:`TwinMatmul` each, named as deploy names them (``NAME.weight_ih``,
    ``NAME.weight_hh``), the step as the deployed cell's
    (``cimsim.mapping.recurrent.cell_forward``)."""

    def __init__(self, src: nn.RNNCellBase, name: str, chip: ChipConfig, seed: int,
                 options: TwinOptions):
        names = cell_matrices(src)
        super().__init__(src, name, chip, seed, options, len(names))
        self._keep_source(src, names)
        self.mode = cell_mode(src)
        self.sizes = (int(src.input_size), int(src.hidden_size))

    def forward(self, input, hx=None):
        return cell_forward(self._product, self.mode, self.sizes, input, hx, self.twin_name)


EXTRA_TWINS: dict[type, type[_TwinLayer]] = {
    nn.Conv3d: TwinConv3d,
    nn.ConvTranspose1d: TwinConvTranspose,
    nn.ConvTranspose2d: TwinConvTranspose,
    nn.ConvTranspose3d: TwinConvTranspose,
    nn.RNNBase: TwinRNN,
    nn.RNNCellBase: TwinRNNCell,
}

"""ColumnQuant option 3 on the training twin: the unanchored ternary-combination decomposition
for binary cells.

Kim, Jeon, Kim, Ko, DATE 2025 (arXiv 2502.07842), official code ``jiyoonkm/ColumnQuant``
(``SplitConv4Pim_group``, v3; docs/columnquant.md §5). A weight set (the layer, one array = row
tile, or one (array, column), as ``weight_scale`` says) has B_w learnable scales α_i,
initialised ``α_i = mean|w|·2^(−i)``; its levels are ``{Σ_i c_i·α_i : c_i ∈ {−1, 0, +1}}``
(3^B_w codes, not anchored to a uniform grid). Each weight snaps to the nearest level in the
forward; the gradient (to the weights and the α) is that of the soft assignment
``Σ_l softmax_l(−τ·|w − L_l| / max_i|α_i|)·L_l`` with temperature ``τ = 10 + 2·B_w`` (the
distance normalised by the set's largest α is this module's choice: the paper code's exact
normalisation was not read). The α get LSQ's gradient scale ``1/sqrt(n_max·numel)/2^(B_w−2)``
(n_max = 2^(B_w−1) − 1, numel = weights of the set), as the paper code's option 3.

On the chip (``weight_encoding = 'ternary'``, binary cells): digit i of a weight is c_i, held
by a differential pair of binary cells (W+ = 1 where c_i = +1, W− = 1 where c_i = −1). The code
of a weight is the balanced-ternary integer ``Σ_i c_i·3^i`` (what the engine programs), and
the shift-add weights the conversions of pair i by α_i instead of 3^i
(:meth:`ProgrammedLayer.with_conv_coef`, one digital multiply per conversion,
``digital.slice_multiply``); the engine's dequantization scale is 1.

The chip product's forward is the twin's own (:class:`~cimsim.train.twin.TwinMatmul`: arrays,
ADCs, learned ADC steps, noise) with those coefficients; its gradient to the inputs and weights
is the straight-through one of the plain product with the soft-assigned weights.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..arrays.program import ProgrammedLayer
from ..config import WeightEncoding
from ..errors import ConfigError
from .ste import grad_scale, lsq_factor
from .twin import TwinMatmul, balanced_ternary

__all__ = ["TernaryTwin", "make_ternary", "mean_abs_per_set", "temperature"]


def temperature(weight_bits: int) -> float:
    """Softmax temperature of the soft assignment: 10 + 2·B_w (the paper code)."""
    return 10.0 + 2.0 * weight_bits


def _set_shape(granularity: str, n_tiles: int, n_out: int) -> tuple[int, int]:
    return {"layer": (1, 1), "array": (n_tiles, 1), "column": (n_tiles, n_out)}[granularity]


class TernaryTwin(TwinMatmul):
    """A :class:`TwinMatmul` whose weights are ternary combinations of learned α (made from a
    twin by :func:`make_ternary`; not built directly).

    Parameters (learnable): ``alpha`` (B, T', N'): α_i of every weight set, T' = 1 or the row
    tiles, N' = 1 or the outputs.
    """

    uniform_weight_grid = False  # codes are balanced-ternary indices of learned α
    alpha: nn.Parameter
    tau: float
    """Softmax temperature of the soft assignment (:func:`temperature`)."""
    _alpha_grad: torch.Tensor
    _codes: torch.Tensor
    _values: torch.Tensor
    _slice: torch.Tensor
    _sign: torch.Tensor

    # --- the quantizer ---------------------------------------------------------------------
    def _alpha_full(self, alpha: torch.Tensor) -> torch.Tensor:
        """(B, N, K) α of every weight's set."""
        a = alpha.index_select(1, self._w_tile) if alpha.shape[1] > 1 else alpha  # (B, K|1, N')
        return a.transpose(1, 2).expand(-1, self.n_outputs, self.n_inputs)

    def snap(self, w: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(code, w_q) of float weights (N, K): the balanced-ternary code of the nearest level
        (no gradient) and that level's value, whose gradient is the soft assignment's."""
        a = self._alpha_full(alpha)
        levels = torch.einsum("lb,bnk->lnk", self._codes, a)  # (L, N, K)
        dist = (w[None] - levels).abs()
        idx = dist.argmin(dim=0)
        w_hard = levels.gather(0, idx[None])[0]
        ref = a.detach().abs().amax(dim=0).clamp_min(torch.finfo(w.dtype).tiny)
        p = torch.softmax(-self.tau * dist / ref, dim=0)
        w_soft = (p * levels).sum(dim=0)
        code = self._values[idx]
        return code, w_hard.detach() + (w_soft - w_soft.detach())

    def quantized_weight(self) -> torch.Tensor:
        """Current balanced-ternary codes (N, K) (no gradient)."""
        with torch.no_grad():
            return self.snap(self.effective_weight(), self.alpha)[0]

    def conversion_coef(self, alpha: torch.Tensor) -> torch.Tensor:
        """(G, C) digital weight of every (row group, conversion): ±α_i of its pair's slice i,
        its part's (row tile's) and output's set."""
        a = alpha.detach()[self._slice]  # (Qc, T', N')
        t = self._group_part if a.shape[1] > 1 else torch.zeros_like(self._group_part)
        a = a.index_select(1, t)  # (Qc, G, N')
        a = a.expand(-1, -1, self.n_outputs).permute(1, 2, 0)  # (G, N, Qc): c = n·Qc + q
        return (a * self._sign).reshape(self.n_groups, -1)

    def integer_forward(self, x_int: torch.Tensor) -> torch.Tensor:
        """Result (T, M, N) per part of integer inputs (M, K): the codes' conversions weighted
        by the current α (what ``engine.run`` gives for each deployed part)."""
        with torch.no_grad():
            self._coef = self.conversion_coef(self.alpha).to(self._coef.dtype)
            return self._integer(x_int.to(self.weight.dtype), self.quantized_weight())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float inputs (M, K) -> float outputs (M, N) through the simulated chip."""
        s_x = grad_scale(self.act_scale, lsq_factor(x.numel(), self.x_hi))
        x_int = self.input_codes(x, s_x)
        alpha = grad_scale(self.alpha, self._alpha_grad)
        code, w_q = self.snap(self.effective_weight(), alpha)
        if self.lossless:  # exact conversions (twin.recalibrate_adcs' pass)
            y = s_x * (x_int @ w_q.t()) * self.out_rescale
            return y if self.bias is None else y + self.bias
        self._coef = self.conversion_coef(alpha).to(self._coef.dtype)
        # per part, scaled before the parts are added (the engine's order of operations)
        y_chip = (self._integer(x_int.detach(), code) * s_x).sum(dim=0)  # grad: ADC steps, s_x
        y_st = s_x.detach() * (x_int @ w_q.t())  # straight through: the plain product's
        y = y_chip + (y_st - y_st.detach())
        if self.out_rescale != 1.0:
            y = y * self.out_rescale
        return y if self.bias is None else y + self.bias

    # --- back to the engine -----------------------------------------------------------------
    def _engine_weights(self) -> tuple[np.ndarray, np.ndarray]:
        # the codes the forward uses (same arithmetic, so deploy never breaks a near-tie
        # differently); the α go into the conversions' weights, the dequantization scale is 1
        code = self.quantized_weight().cpu().numpy()
        return np.rint(code).astype(np.int64), np.ones((1, 1))

    def _engine_part(self, i: int, layer: ProgrammedLayer) -> ProgrammedLayer:
        with torch.no_grad():
            coef = self.conversion_coef(self.alpha.double())
        g = int(torch.nonzero(self._group_part == i)[0, 0])
        return layer.with_conv_coef(coef[g].cpu().numpy())


def mean_abs_per_set(twin: TwinMatmul, granularity: str) -> tuple[torch.Tensor, torch.Tensor]:
    """mean |w| and the number of weights of every weight set (the paper code's "LSQ v2"
    init): (1, 1) for ``layer``, (T, 1) per row tile for ``array``, (T, N) per (row tile,
    column) for ``column``."""
    with torch.no_grad():
        w = twin.effective_weight().detach().abs()  # (N, K)
        tile = twin._w_tile
        n_tiles = int(tile.max()) + 1
        count = torch.bincount(tile, minlength=n_tiles).to(w.dtype)  # rows per tile
        sums = w.new_zeros(twin.n_outputs, n_tiles).index_add_(1, tile, w).t()  # (T, N)
        if granularity == "column":
            return sums / count[:, None], count[:, None].expand(-1, twin.n_outputs)
        if granularity == "array":
            numel = count[:, None] * twin.n_outputs
            return sums.sum(dim=1, keepdim=True) / numel, numel
        return w.mean().reshape(1, 1), torch.full((1, 1), float(w.numel()))


def make_ternary(twin: TwinMatmul, granularity: str) -> TernaryTwin:
    """Turn ``twin`` (on a ``weight_encoding = 'ternary'`` chip) into a :class:`TernaryTwin` in
    place: α per ``granularity`` ('layer', 'array', 'column') initialised from its weights,
    the weight scale fixed at 1 (the α carry the scale)."""
    chip = twin.chip
    if twin.block_fp:  # its forward scales by the per-tensor input scale
        raise ConfigError("quant.act_format = 'block_fp' is not modelled by ColumnQuant's "
                          "ternary decomposition; allowed: 'int'")
    if granularity not in ("layer", "array", "column"):
        raise ConfigError(f"weight_scale = {granularity!r} is invalid; allowed: layer, array, "
                          "column")
    if chip.weight_encoding is not WeightEncoding.TERNARY:
        raise ConfigError(f"ColumnQuant option 3 needs weight_encoding = 'ternary' (chip "
                          f"{chip.name}: {chip.weight_encoding.value!r})")
    if twin.zero_point < 0:
        raise ConfigError("ColumnQuant option 3 with dac.shift_unsigned_inputs = true is not "
                          "modelled; allowed: false")
    # its forward adds no zero point and quantizes the raw inputs
    if chip.quant.act_zero_point:
        raise ConfigError("ColumnQuant option 3 with quant.act_zero_point = true is not "
                          "modelled; allowed: false")
    if chip.quant.smooth_alpha is not None:
        raise ConfigError(f"ColumnQuant option 3 with quant.smooth_alpha = "
                          f"{chip.quant.smooth_alpha!r} is not modelled; allowed: none (unset)")
    if twin.nonlinear_adc:
        raise ConfigError("ColumnQuant option 3 needs a linear ADC (adc.kind = 'sar', "
                          "'flash', 'single_slope', 'cco', 'integrate_fire' or 'tdc')")
    b = chip.weight_bits
    dt, dev = twin.weight.dtype, twin.weight.device
    n_tiles = int(twin._w_tile.max()) + 1
    tp, np_ = _set_shape(granularity, n_tiles, twin.n_outputs)
    with torch.no_grad():
        mean, numel = mean_abs_per_set(twin, granularity)
        mean = torch.where(mean > 0, mean, torch.ones_like(mean)).reshape(1, tp, np_)
        alpha = mean * 2.0 ** -torch.arange(b, dtype=dt, device=dev)[:, None, None]
        n_max = 2 ** (b - 1) - 1
        g = 1.0 / torch.sqrt(numel.to(dt) * n_max) / 2.0 ** (b - 2)
    twin.__class__ = TernaryTwin
    assert isinstance(twin, TernaryTwin)
    twin.alpha = nn.Parameter(alpha.clone())
    twin.register_buffer("_alpha_grad", g.reshape(1, tp, np_).to(dev))
    half = (3**b - 1) // 2
    values = torch.arange(-half, half + 1, dtype=dt, device=dev)
    twin.register_buffer("_values", values)
    twin.register_buffer("_codes", balanced_ternary(values, b).t().contiguous())  # (L, B)
    # conversion kinds of one output: pairs (+, −) per slice, or one merged column per slice
    qc = twin.n_kinds
    per = 1 if qc == b else 2
    twin.register_buffer("_slice", torch.arange(qc, device=dev) // per)
    twin.register_buffer("_sign", torch.sign(twin._coef[:qc]).clone())
    twin.tau = temperature(b)
    twin.weight_scale.requires_grad_(False)
    twin.fused = False  # per-(group, conversion) weights: the torch path
    twin._coef = twin.conversion_coef(twin.alpha).to(dt)
    return twin

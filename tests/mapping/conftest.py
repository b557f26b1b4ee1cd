"""Helpers for the deploy tests: small lossless chips, an independent weight quantizer and a
plain integer re-implementation of a deployed (quantized) model.

The re-implementation follows the dequantization contract of ``cimsim/mapping/layers.py``::

    x_int = clip(rint(x / s_x), lo, hi)                                  (float64)
    y     = Σ_t (x_int[:, tile t] @ w_int[:, tile t].T) · (s_x · s_w[t]) + bias   (float64)

then a cast to float32. Activation scales and signedness come from the simulated layer (they are
calibration results); the integer product is an int64 matmul done here, never the simulator's.
Convolutions are padded with ``F.pad`` (padding computed here from the module's arguments)
and computed by shift-and-accumulate over the kernel offsets, not with an im2col.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.prune import BasePruningMethod
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

import cimsim
from cimsim.config import ChipConfig
from cimsim.mapping.affine import affine_source
from cimsim.mapping.layers import SimLinear


def build_seeded(make, data, dtype=torch.float32) -> tuple[nn.Module, tuple]:
    """A zoo's model and example inputs as the zoos build them: ``make()`` under seed 0, in
    eval mode and ``dtype``; ``data()`` under seed 1, its floating tensors cast to ``dtype``."""
    torch.manual_seed(0)
    model = make().eval().to(dtype)
    torch.manual_seed(1)
    return model, tuple(a.to(dtype) if a.is_floating_point() else a for a in data())


def lossless_chip(granularity: str = "channel", n_rows: int | None = 37,
                  n_cols: int | None = 23, **array: Any) -> ChipConfig:
    """The ``ideal`` preset with (optionally) small arrays so that layers tile."""
    chip = cimsim.load_chip("ideal")
    changes: dict[str, Any] = dict(array)
    if n_rows is not None:
        changes["n_rows"] = n_rows
    if n_cols is not None:
        changes["n_cols"] = n_cols
        changes.setdefault("cols_per_adc", min(chip.array.cols_per_adc, n_cols))
    return chip.replace(array=chip.array.replace(**changes),
                        quant=chip.quant.replace(weight_granularity=granularity))


# ---------------------------------------------------------------------------------------------
# Independent quantizers (torch, float64)
# ---------------------------------------------------------------------------------------------
def act_bounds(bits: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def ref_weight_quant(w: torch.Tensor, bits: int, granularity: str,
                     row_tiles: list[tuple[int, int]], layer_max: float = 0.0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric weight quantization written from the spec: (w_int (N, K) int64, s_w (T, N)).
    ``layer_max``: max|w| of the layer ``w`` is one group of (0: ``w`` is the layer)."""
    w = w.detach().to(torch.float64)
    q = 2 ** (bits - 1) - 1
    if granularity == "tensor":  # the layer's whole tensor: a group takes the layer's max
        groups = [(0, w.shape[1])]
        m = (torch.tensor(layer_max, dtype=torch.float64) if layer_max
             else w.abs().max()).expand(w.shape[0])[None, :]
    elif granularity == "channel":
        groups = [(0, w.shape[1])]
        m = w.abs().amax(dim=1)[None, :]
    else:
        groups = list(row_tiles)
        m = torch.stack([w[:, a:b].abs().amax(dim=1) for a, b in groups])
    s = m / q
    # an all-zero group: the tensor's scale (an all-zero tensor: the layer's, else 1)
    tensor = float(w.abs().max()) / q if w.numel() else 0.0
    tensor = tensor or layer_max / q or 1.0
    s = torch.where(s > 0, s, torch.full_like(s, tensor))
    w_int = torch.empty(w.shape, dtype=torch.int64)
    for t, (a, b) in enumerate(groups):
        w_int[:, a:b] = torch.round(w[:, a:b] / s[t][:, None]).clamp(-q, q).to(torch.int64)
    return w_int, s


def check_core_weights(core, w: torch.Tensor, chip: ChipConfig, layer_max: float = 0.0) -> None:
    """The core's integer weights and scales equal an independent quantization of ``w``
    (one group of a layer whose max|w| is ``layer_max``)."""
    gran = chip.quant.weight_granularity.value
    w_int, s_w = ref_weight_quant(w, chip.weight_bits, gran, core.row_tiles, layer_max)
    assert np.array_equal(core.w_int, w_int.numpy()), core.name
    assert np.array_equal(core.s_w, s_w.numpy()), core.name


# ---------------------------------------------------------------------------------------------
# The integer re-implementation of one weight matrix
# ---------------------------------------------------------------------------------------------
def quantize_x(x64: torch.Tensor, core, bits: int) -> torch.Tensor:
    lo, hi = act_bounds(bits, core.signed)
    return torch.round(x64 / core.s_x).clamp(lo, hi)  # float64, integer-valued


def int_matmul_dequant(x_int: torch.Tensor, core, bias: torch.Tensor | None) -> torch.Tensor:
    """(M, K) integer-valued -> (M, N) float64, tile by tile as the contract says."""
    xi = x_int.to(torch.int64)
    w_int = torch.from_numpy(np.asarray(core.w_int, dtype=np.int64))
    s_w = torch.from_numpy(np.asarray(core.s_w, dtype=np.float64))
    tiles = core.row_tiles if s_w.shape[0] > 1 else [(0, w_int.shape[1])]
    y = torch.zeros(xi.shape[0], w_int.shape[0], dtype=torch.float64)
    for t, (a, b) in enumerate(tiles):
        y_int = xi[:, a:b] @ w_int[:, a:b].T  # exact int64 product
        y = y + y_int.to(torch.float64) * (core.s_x * s_w[t])
    if bias is not None:
        y = y + bias.detach().to(torch.float64)
    return y


def ref_linear(core, bias: torch.Tensor | None, x: torch.Tensor, bits: int) -> torch.Tensor:
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1]).to(torch.float64)
    y = int_matmul_dequant(quantize_x(x2, core, bits), core, bias)
    return y.to(x.dtype).reshape(*lead, -1)


def _tuple(v, n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def conv_pads(conv: nn.Conv1d | nn.Conv2d) -> list[tuple[int, int]]:
    """(before, after) padding per spatial dim, from the module's arguments."""
    nd = 1 if isinstance(conv, nn.Conv1d) else 2
    ks, dil = _tuple(conv.kernel_size, nd), _tuple(conv.dilation, nd)
    if conv.padding == "valid":
        return [(0, 0)] * nd
    if conv.padding == "same":
        out = []
        for k, d in zip(ks, dil, strict=True):
            total = d * (k - 1)
            out.append((total // 2, total - total // 2))
        return out
    return [(p, p) for p in _tuple(conv.padding, nd)]


class RefLinear(nn.Module):
    def __init__(self, src: nn.Linear, core, bits: int):
        super().__init__()
        self.core, self.bits = core, bits
        self.bias = None if src.bias is None else src.bias.detach().clone()

    def forward(self, x):
        return ref_linear(self.core, self.bias, x, self.bits)


def int_conv_dequant(xq: torch.Tensor, core, bias: torch.Tensor | None,
                     kernel: tuple[int, int], stride: tuple[int, int],
                     dilation: tuple[int, int]) -> torch.Tensor:
    """One group of a convolution without im2col: shift-and-accumulate int64 products over the
    kernel offsets (i, j) of the quantized, padded input ``xq`` (B, C_g, H_p, W_p); row tile t
    keeps only the weights whose unfolded index (c, i, j) lies in it. -> (B·H_o·W_o, N) f64."""
    kh, kw = kernel
    (sh, sw), (dh, dw) = stride, dilation
    b, cg, hp, wp = xq.shape
    h_out = (hp - dh * (kh - 1) - 1) // sh + 1
    w_out = (wp - dw * (kw - 1) - 1) // sw + 1
    xi = xq.to(torch.int64).permute(0, 2, 3, 1).numpy()  # channels last, (B, H_p, W_p, cg)
    w_int = np.asarray(core.w_int, dtype=np.int64)  # (N, cg·kh·kw)
    n = w_int.shape[0]
    s_w = torch.from_numpy(np.asarray(core.s_w, dtype=np.float64))
    tiles = core.row_tiles if s_w.shape[0] > 1 else [(0, w_int.shape[1])]
    y = torch.zeros(b * h_out * w_out, n, dtype=torch.float64)
    for t, (a, e) in enumerate(tiles):
        w_t = np.zeros_like(w_int)
        w_t[:, a:e] = w_int[:, a:e]
        w_t = w_t.reshape(n, cg, kh, kw)
        acc = np.zeros((b, h_out, w_out, n), dtype=np.int64)
        for i in range(kh):
            for j in range(kw):
                xs = xi[:, i * dh:i * dh + sh * (h_out - 1) + 1:sh,
                        j * dw:j * dw + sw * (w_out - 1) + 1:sw, :]  # (B, H_o, W_o, cg)
                acc += xs @ w_t[:, :, i, j].T  # exact int64
        y_int = torch.from_numpy(acc.reshape(-1, n)).to(torch.float64)
        y = y + y_int * (core.s_x * s_w[t])
    if bias is not None:
        y = y + bias.detach().to(torch.float64)
    return y


class RefConv(nn.Module):
    """Conv1d / Conv2d: F.pad (with the module's padding mode), quantize, then per group an
    exact int64 shift-and-accumulate convolution with that group's core."""

    def __init__(self, src: nn.Conv1d | nn.Conv2d, cores, bits: int):
        super().__init__()
        self.src = copy.deepcopy(src)
        self.cores, self.bits = cores, bits
        assert len(cores) == src.groups

    def forward(self, x):
        src = self.src
        one_d = isinstance(src, nn.Conv1d)
        pads = conv_pads(src)
        flat_pad: list[int] = []
        for before, after in reversed(pads):  # F.pad: last dim first
            flat_pad += [before, after]
        x64 = x.to(torch.float64)
        if any(flat_pad):
            mode = "constant" if src.padding_mode == "zeros" else src.padding_mode
            x64 = F.pad(x64, flat_pad, mode=mode)
        if one_d:
            x64 = x64.unsqueeze(2)
        ks = (1,) + _tuple(src.kernel_size, 1) if one_d else _tuple(src.kernel_size, 2)
        st = (1,) + _tuple(src.stride, 1) if one_d else _tuple(src.stride, 2)
        dl = (1,) + _tuple(src.dilation, 1) if one_d else _tuple(src.dilation, 2)
        b, c, h, w = x64.shape
        h_out = (h - dl[0] * (ks[0] - 1) - 1) // st[0] + 1
        w_out = (w - dl[1] * (ks[1] - 1) - 1) // st[1] + 1
        cg = c // src.groups
        n_g = src.out_channels // src.groups
        outs = []
        for g, core in enumerate(self.cores):
            xq = quantize_x(x64[:, g * cg:(g + 1) * cg], core, self.bits)
            bg = None if src.bias is None else src.bias[g * n_g:(g + 1) * n_g]
            outs.append(int_conv_dequant(xq, core, bg, ks, st, dl))
        y = torch.cat(outs, dim=1).reshape(b, h_out, w_out, -1).permute(0, 3, 1, 2)
        y = y.to(x.dtype)
        return y[:, :, 0, :] if one_d else y.contiguous()


class RefMHA(nn.Module):
    """Self-/cross-attention with quantized-exact q/k/v/out projections and float attention
    math written the usual way (4-D matmul, softmax)."""

    def __init__(self, src: nn.MultiheadAttention, cores, bits: int):
        super().__init__()
        e = src.embed_dim
        self.cores, self.bits = cores, bits
        self.num_heads, self.batch_first, self.embed_dim = src.num_heads, src.batch_first, e
        self._qkv_same_embed_dim = src._qkv_same_embed_dim
        ib = src.in_proj_bias
        self.biases = [None if ib is None else ib.detach()[i * e:(i + 1) * e] for i in range(3)]
        self.biases.append(None if src.out_proj.bias is None else src.out_proj.bias.detach())
        self.in_proj_bias = None  # keeps TransformerEncoderLayer off its fused fast path

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        assert query.dim() == 3
        if self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        tgt, bsz, e = query.shape
        src = key.shape[0]
        h = self.num_heads
        d = e // h

        def proj(i, t):
            return ref_linear(self.cores[i], self.biases[i], t, self.bits)

        q = proj(0, query).reshape(tgt, bsz, h, d).permute(1, 2, 0, 3)
        k = proj(1, key).reshape(src, bsz, h, d).permute(1, 2, 0, 3)
        v = proj(2, value).reshape(src, bsz, h, d).permute(1, 2, 0, 3)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # (B, h, L, S)
        if attn_mask is not None:
            assert attn_mask.dtype != torch.bool
            scores = scores + attn_mask
        if key_padding_mask is not None:
            assert key_padding_mask.dtype != torch.bool
            scores = scores + key_padding_mask[:, None, None, :]
        attn = torch.softmax(scores, dim=-1)
        out = (attn @ v).permute(2, 0, 1, 3).reshape(tgt * bsz, e)
        out = proj(3, out).reshape(tgt, bsz, e)
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, None


def _set_child(root: nn.Module, name: str, new: nn.Module) -> None:
    """``new`` in place of the module ``name``, running the forward (pre-)hooks the user put on
    it (an input scaling, a keyword hook), as the simulated layer does."""
    parts = name.split(".")
    parent = root
    for p in parts[:-1]:
        parent = getattr(parent, p)
    old = getattr(parent, parts[-1])
    # not the hooks recomputing the weight (old-style weight_norm / spectral_norm, pruning):
    # the reference quantizes the weight they computed
    recompute = (WeightNorm, SpectralNorm, BasePruningMethod)
    dropped = {k for k, h in old._forward_pre_hooks.items() if isinstance(h, recompute)}
    for hooks in ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks",
                  "_forward_hooks_with_kwargs", "_forward_hooks_always_called"):
        getattr(new, hooks).update((k, h) for k, h in getattr(old, hooks).items()
                                   if k not in dropped)
    # every name the layer has (a stem also held in a list of stages), as deploy replaces it
    for module in list(root.modules()):
        for child, sub in list(module.named_children()):
            if sub is old:
                setattr(module, child, new)


def reference_model(model: nn.Module, sim, check_weights: bool = True) -> nn.Module:
    """A copy of ``model`` whose mapped layers are replaced by the integer re-implementation,
    using the activation scales / signedness of ``sim``'s layers. Everything else (norms,
    pooling, residual adds, the attention products) runs in torch exactly as in ``model``.
    With ``check_weights`` each core's w_int / s_w is compared with an independent
    quantization of the float weights first."""
    ref = copy.deepcopy(model).eval()
    root_wrapped = isinstance(model, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.MultiheadAttention))
    if root_wrapped:
        ref = nn.Sequential(ref)
    chip = sim.chip
    bits = chip.input_bits
    for name, layer in sim.sim_layers.items():
        src = ref.get_submodule(name)
        if isinstance(src, nn.Linear):
            (core,) = layer.cores
            if check_weights:
                check_core_weights(core, src.weight, chip)
            _set_child(ref, name, RefLinear(src, core, bits))
        elif isinstance(src, (nn.Conv1d, nn.Conv2d)):
            if check_weights:
                w = src.weight.detach().reshape(src.out_channels, -1)
                n_g = src.out_channels // src.groups
                layer_max = float(w.abs().max()) if src.groups > 1 else 0.0
                for g, core in enumerate(layer.cores):
                    check_core_weights(core, w[g * n_g:(g + 1) * n_g], chip, layer_max)
            _set_child(ref, name, RefConv(src, layer.cores, bits))
        elif isinstance(src, nn.MultiheadAttention):
            if check_weights:
                e = src.embed_dim
                if src._qkv_same_embed_dim:
                    ws = list(src.in_proj_weight.detach().reshape(3, e, e))
                else:
                    ws = [src.q_proj_weight, src.k_proj_weight, src.v_proj_weight]
                ws.append(src.out_proj.weight)
                for core, w in zip(layer.cores, ws, strict=True):
                    check_core_weights(core, w, chip)
            _set_child(ref, name, RefMHA(src, layer.cores, bits))
        elif isinstance(layer, SimLinear):  # a Linear under another name: GPT-2's Conv1D
            # its layout from what it computes: a square weight has the same shape either way
            w = src.weight.detach()
            w = w.t() if affine_source(src).transposed else w
            lin = nn.Linear(w.shape[1], w.shape[0], bias=src.bias is not None, dtype=w.dtype)
            with torch.no_grad():
                lin.weight.copy_(w)
                if src.bias is not None:
                    lin.bias.copy_(src.bias)
            (core,) = layer.cores
            if check_weights:
                check_core_weights(core, lin.weight, chip)
            _set_child(ref, name, RefLinear(lin, core, bits))
        else:  # pragma: no cover
            raise AssertionError(f"unexpected mapped module {name}: {type(src)}")
    return ref


def flat_output(out) -> torch.Tensor:
    """One tensor of a model's outputs: a dict of lists (a detector's), a tuple (a NamedTuple),
    a dataclass (its fields in order; a HuggingFace ModelOutput's None fields left out), nested
    tuples (a KV cache), a tensor."""
    if dataclasses.is_dataclass(out):  # not dataclasses.astuple: it deep-copies the tensors
        out = [v for f in dataclasses.fields(out) if (v := getattr(out, f.name)) is not None]
    if isinstance(out, dict):
        return torch.cat([flat_output(v) for v in out.values()])
    if isinstance(out, (list, tuple)):
        return torch.cat([flat_output(t) for t in out])
    return out.flatten()


def check_lossless_near_float(model: nn.Module, args: tuple, digital: set[str],
                              tol: float = 0.03) -> None:
    """``model`` deployed on the lossless chip (its warnings of what stays digital silenced):
    within ``tol`` of float (relative), one inference per sample, exactly ``digital`` listed."""
    import warnings

    import cimsim

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # what stays digital: checked below
        sim = cimsim.deploy(model, lossless_chip("channel"), args)
    with torch.no_grad():
        want = flat_output(model(*args))
    got = flat_output(sim(*args))
    assert float((got - want).norm() / want.norm()) < tol
    assert sim.n_inferences == args[0].shape[0]
    assert {d[0] for d in sim.digital} == digital


def check_lossy_run(got: torch.Tensor, want: torch.Tensor, sim) -> None:
    """A lossy deploy's outputs ``got``: finite, near float ``want`` (not garbage), and its
    report holds every layer and what stays digital."""
    assert got.shape == want.shape and torch.isfinite(got).all()
    assert float((got - want).norm() / want.norm()) < 1.0  # lossy, not garbage
    report = sim.report()
    assert list(report.layers["layer"]) == list(sim.sim_layers)
    assert report.totals["energy_pj_per_inference"] > 0
    assert list(report.digital.itertuples(index=False, name=None)) == sim.digital


def check_every_matrix(model: nn.Module, sim, digital: set[str],
                       not_matrices: tuple[str, ...] = ()) -> None:
    """Every weight matrix of ``model`` is on the arrays or under a module of ``digital``, the
    names ``sim.digital`` lists. ``not_matrices``: 2-D parameters no product uses (tokens, bias
    tables)."""
    assert {d[0] for d in sim.digital} == digital
    mapped = tuple(n + "." for n in sim.sim_layers)
    for pname, p in model.named_parameters():
        if p.dim() >= 2 and pname not in not_matrices:
            assert pname.startswith(mapped) or any(
                pname == d or pname.startswith(d + ".") for d in digital), pname


def assert_bitwise(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    if not torch.equal(got, want):
        diff = (got.to(torch.float64) - want.to(torch.float64)).abs()
        idx = int(diff.argmax())
        raise AssertionError(
            f"{int((diff > 0).sum())} of {diff.numel()} outputs differ; max |diff| "
            f"{float(diff.max()):.3g} at flat index {idx}: got {got.flatten()[idx].item()!r}, "
            f"want {want.flatten()[idx].item()!r}"
        )


@pytest.fixture(autouse=True)
def _seeded_torch():
    """Every test starts from the same torch RNG state (weights, data)."""
    torch.manual_seed(1234)
    yield

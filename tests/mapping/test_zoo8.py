"""An eighth zoo of models cimsim was not written for (worktree ``zoo8``, after
``test_new_models.py`` and ``test_zoo2.py`` .. ``test_zoo7.py``), written small (tiny widths, no
PEFT, torchvision, timm or neuraloperator import) the way their reference code writes them.
Adapters and pruning: PEFT's LoRA (``base_layer`` + ``lora_A`` / ``lora_B`` ModuleDicts, unmerged,
merged, merged and unloaded), ``torch.nn.utils.prune`` (``weight_orig`` + ``weight_mask`` and its
pre-hook; after ``prune.remove``). Masked and input-dependent weights: PixelCNN's masked conv,
StyleGAN2's modulated conv (a per-sample weight, grouped ``F.conv2d``), CondConv (a mixture of
expert kernels), a top-2 mixture of experts (``index_add_`` dispatch). Long sequences: Linformer
(a Linear over the sequence axis), Performer (random features from a buffer), an RWKV block
(token shift, the WKV recurrence), RetNet's retention, a Fourier neural operator (``rfft2``, a
complex weight by ``einsum``). Dense prediction: a YOLO neck and head (``nn.Upsample``, a list of
three outputs), an HRNet exchange unit, a ConvLSTM stepped in a loop, WaveNet blocks. torch's
own: ``nn.Transformer`` pre-norm with ``tgt_is_causal``, lazy layers after their first call,
NamedTuple and dataclass outputs, circular / reflect / dilated ``'same'`` padding, and a
``torch.ao.quantization.convert``'ed int8 model (refused, its layers named).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

import cimsim
from cimsim.errors import MappingError
from cimsim.train import prepare

from ..train.test_zoo6_methods import Flat  # outputs flattened to one tensor
from .conftest import (
    assert_bitwise,
    check_every_matrix,
    check_lossless_near_float,
    check_lossy_run,
    flat_output,
    lossless_chip,
    reference_model,
)
from .test_new_models import _rram, prepare_step_deploy
from .test_zoo5 import _quiet, _rram_noise_free


# ---------------------------------------------------------------------------------------------
# adapters and pruning: PEFT's LoRA (unmerged, merged), torch.nn.utils.prune
# ---------------------------------------------------------------------------------------------
class LoraLinear(nn.Module):
    """PEFT's ``lora.Linear``: the frozen ``base_layer`` plus ``lora_A`` / ``lora_B`` (ModuleDicts
    keyed by the adapter name), ``base(x) + lora_B(lora_A(dropout(x))) * scaling``; once
    ``merge()``d the adapter's product is in the base weight and the forward skips it."""

    def __init__(self, base: nn.Linear, r: int = 2, alpha: float = 4.0):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.ModuleDict({"default": nn.Linear(base.in_features, r, bias=False)})
        self.lora_B = nn.ModuleDict({"default": nn.Linear(r, base.out_features, bias=False)})
        self.lora_dropout = nn.ModuleDict({"default": nn.Dropout(0.1)})
        self.scaling = {"default": alpha / r}
        self.merged_adapters: list[str] = []
        for p in base.parameters():
            p.requires_grad_(False)
        nn.init.normal_(self.lora_B["default"].weight, std=0.3)  # PEFT starts B at 0: trained

    def get_delta_weight(self, name: str) -> torch.Tensor:
        return (self.lora_B[name].weight @ self.lora_A[name].weight) * self.scaling[name]

    def merge(self) -> None:
        with torch.no_grad():
            self.base_layer.weight += self.get_delta_weight("default")
        self.merged_adapters.append("default")

    def forward(self, x):
        result = self.base_layer(x)
        if self.merged_adapters:
            return result
        a, b = self.lora_A["default"], self.lora_B["default"]
        return result + b(a(self.lora_dropout["default"](x))) * self.scaling["default"]


class LoraMLP(nn.Module):
    """An MLP with LoRA on both layers (``merged``: PEFT's ``merge_adapter()``, the adapter
    modules kept, unused; ``unloaded``: ``merge_and_unload()``, plain Linears again)."""

    def __init__(self, merged: bool = False, unloaded: bool = False):
        super().__init__()
        self.fc1 = LoraLinear(nn.Linear(8, 12))
        self.fc2 = LoraLinear(nn.Linear(12, 4))
        if merged or unloaded:
            for m in (self.fc1, self.fc2):
                m.merge()
        if unloaded:
            self.fc1, self.fc2 = self.fc1.base_layer, self.fc2.base_layer  # type: ignore

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class PrunedMLP(nn.Module):
    """``prune.l1_unstructured`` on one Linear (``weight_orig`` + a ``weight_mask`` buffer, the
    weight recomputed by a forward pre-hook) and ``prune.random_structured`` on the other;
    ``removed``: ``prune.remove`` made both permanent (a plain ``weight`` with zeros)."""

    def __init__(self, removed: bool = False):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 12), nn.Linear(12, 4)
        prune.l1_unstructured(self.fc1, "weight", amount=0.5)
        prune.ln_structured(self.fc2, "weight", amount=0.25, n=1, dim=0)
        if removed:
            prune.remove(self.fc1, "weight")
            prune.remove(self.fc2, "weight")

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


# ---------------------------------------------------------------------------------------------
# masked and input-dependent weights: PixelCNN, StyleGAN2, CondConv, a top-2 MoE
# ---------------------------------------------------------------------------------------------
class MaskedConv2d(nn.Conv2d):
    """PixelCNN's masked conv (type A excludes the centre pixel): ``weight * mask`` in the
    forward, the mask a buffer."""

    def __init__(self, mask_type: str, *args, **kwargs):
        super().__init__(*args, **kwargs)
        kh, kw = self.kernel_size
        mask = torch.ones_like(self.weight)
        mask[:, :, kh // 2, kw // 2 + (mask_type == "B"):] = 0
        mask[:, :, kh // 2 + 1:] = 0
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding,
                        self.dilation, self.groups)


class PixelCNN(nn.Module):
    def __init__(self, c: int = 6, levels: int = 4):
        super().__init__()
        self.a = MaskedConv2d("A", 1, c, 5, padding=2)
        self.b = MaskedConv2d("B", c, c, 3, padding=1)
        self.out = nn.Conv2d(c, levels, 1)

    def forward(self, x):
        return self.out(F.relu(self.b(F.relu(self.a(x)))))


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated conv: a style ``s = affine(w)`` scales the weight's input
    channels per sample, demodulated, applied to the whole batch by one grouped ``F.conv2d``."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, k: int = 3, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, c_out, c_in, k, k))
        self.affine = nn.Linear(w_dim, c_in)
        self.scale = 1 / math.sqrt(c_in * k * k)
        self.c_out, self.pad, self.demodulate = c_out, k // 2, demodulate

    def forward(self, x, w):
        b, c, h, wd = x.shape
        s = self.affine(w) + 1.0
        weight = self.scale * self.weight * s[:, None, :, None, None]  # (B, O, I, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)[..., None, None,
                                                                              None]
        weight = weight.view(b * self.c_out, c, *weight.shape[3:])
        out = F.conv2d(x.reshape(1, b * c, h, wd), weight, padding=self.pad, groups=b)
        return out.view(b, self.c_out, h, wd)


class StyleBlock(nn.Module):
    """A mapping MLP to w, a modulated conv, noise-free, a toRGB 1x1 conv."""

    def __init__(self, z: int = 6, c: int = 4):
        super().__init__()
        self.mapping = nn.Sequential(nn.Linear(z, 8), nn.LeakyReLU(0.2), nn.Linear(8, 8))
        self.conv = ModulatedConv2d(c, c, 8)
        self.to_rgb = nn.Conv2d(c, 3, 1)

    def forward(self, x, z):
        return self.to_rgb(F.leaky_relu(self.conv(x, self.mapping(z)), 0.2))


class CondConv2d(nn.Module):
    """CondConv / dynamic conv: ``E`` expert kernels mixed per sample by routing weights from
    the pooled input, applied by a grouped ``F.conv2d`` over the batch."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, experts: int = 3):
        super().__init__()
        self.weight = nn.Parameter(0.2 * torch.randn(experts, c_out, c_in, k, k))
        self.route = nn.Linear(c_in, experts)
        self.c_out, self.pad = c_out, k // 2

    def forward(self, x):
        b, c, h, w = x.shape
        r = torch.sigmoid(self.route(x.mean((2, 3))))  # (B, E)
        weight = torch.einsum("be,eoikl->boikl", r, self.weight).reshape(b * self.c_out, c,
                                                                         *self.weight.shape[3:])
        out = F.conv2d(x.reshape(1, b * c, h, w), weight, padding=self.pad, groups=b)
        return out.view(b, self.c_out, h, w)


class CondConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.cond = CondConv2d(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(F.relu(self.cond(F.relu(self.stem(x)))).mean((2, 3)))


class Top2MoE(nn.Module):
    """A Mixtral-style sparse MoE: top-2 of the router's logits, renormalised, tokens gathered
    per expert by ``torch.where`` and the weighted outputs put back by ``index_add_``."""

    def __init__(self, d: int = 8, hidden: int = 12, experts: int = 4):
        super().__init__()
        self.gate = nn.Linear(d, experts, bias=False)
        self.experts = nn.ModuleList([
            nn.Sequential(nn.Linear(d, hidden), nn.SiLU(), nn.Linear(hidden, d))
            for _ in range(experts)])

    def forward(self, x):
        b, t, d = x.shape
        flat = x.reshape(-1, d)
        weights, chosen = torch.topk(self.gate(flat).softmax(-1), 2, dim=-1)
        weights = weights / weights.sum(-1, keepdim=True)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            tok, slot = torch.where(chosen == e)
            if tok.numel():
                out.index_add_(0, tok, expert(flat[tok]) * weights[tok, slot, None])
        return (flat + out).view(b, t, d)


# ---------------------------------------------------------------------------------------------
# long sequences: Linformer, Performer, RWKV, RetNet; a Fourier neural operator
# ---------------------------------------------------------------------------------------------
class Linformer(nn.Module):
    """Wang et al.'s Linformer: keys and values projected along the sequence (n -> k) by
    Linears applied to the transposed (B, D, N) tensor."""

    def __init__(self, n: int = 6, d: int = 8, k: int = 3):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.proj_k, self.proj_v = nn.Linear(n, k, bias=False), nn.Linear(n, k, bias=False)
        self.out = nn.Linear(d, d)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, -1)
        k = self.proj_k(k.transpose(1, 2)).transpose(1, 2)  # (B, k, D)
        v = self.proj_v(v.transpose(1, 2)).transpose(1, 2)
        a = (q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])).softmax(-1)
        return self.out(a @ v)


class Performer(nn.Module):
    """Choromanski et al.'s FAVOR+: positive random features ``exp(w·x - |x|²/2)`` from a
    fixed (m, d) Gaussian buffer, linear attention by two products."""

    def __init__(self, d: int = 8, m: int = 16):
        super().__init__()
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.register_buffer("features", torch.randn(m, d))

    def phi(self, x):
        x = x / x.shape[-1] ** 0.25
        return torch.exp(x @ self.features.T - x.pow(2).sum(-1, keepdim=True) / 2) / math.sqrt(
            self.features.shape[0])

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, -1)
        q, k = self.phi(q), self.phi(k)
        kv = torch.einsum("bnm,bnd->bmd", k, v)
        z = 1 / (torch.einsum("bnm,bm->bn", q, k.sum(1)) + 1e-6)
        return self.out(torch.einsum("bnm,bmd,bn->bnd", q, kv, z))


class RWKVBlock(nn.Module):
    """RWKV-4's block: token shift (``nn.ZeroPad2d((0, 0, 1, -1))``), time-mix with the WKV
    recurrence (``time_decay`` / ``time_first``, exp decay, a loop over time), channel-mix with a
    squared ReLU."""

    def __init__(self, d: int = 8, hidden: int = 16):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.shift = nn.ZeroPad2d((0, 0, 1, -1))
        self.time_decay = nn.Parameter(-torch.rand(d))
        self.time_first = nn.Parameter(torch.rand(d) * 0.5)
        self.tm_k, self.tm_v, self.tm_r = (nn.Parameter(torch.rand(1, 1, d)) for _ in "kvr")
        self.key, self.value = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.receptance, self.output = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.cm_k, self.cm_r = nn.Parameter(torch.rand(1, 1, d)), nn.Parameter(torch.rand(1, 1, d))
        self.ffn_key, self.ffn_value = nn.Linear(d, hidden, bias=False), nn.Linear(hidden, d,
                                                                                  bias=False)
        self.ffn_receptance = nn.Linear(d, d, bias=False)

    def wkv(self, k, v):
        w, u = -torch.exp(self.time_decay), self.time_first
        b, t, d = k.shape
        num = torch.zeros(b, d, dtype=k.dtype)
        den = torch.zeros(b, d, dtype=k.dtype)
        out = []
        for i in range(t):
            e = torch.exp(u + k[:, i])
            out.append((num + e * v[:, i]) / (den + e))
            num = torch.exp(w) * num + torch.exp(k[:, i]) * v[:, i]
            den = torch.exp(w) * den + torch.exp(k[:, i])
        return torch.stack(out, 1)

    def forward(self, x):
        h = self.ln1(x)
        hx = self.shift(h)
        k = self.key(h * self.tm_k + hx * (1 - self.tm_k))
        v = self.value(h * self.tm_v + hx * (1 - self.tm_v))
        r = torch.sigmoid(self.receptance(h * self.tm_r + hx * (1 - self.tm_r)))
        x = x + self.output(r * self.wkv(k, v))
        h = self.ln2(x)
        hx = self.shift(h)
        k = torch.square(torch.relu(self.ffn_key(h * self.cm_k + hx * (1 - self.cm_k))))
        r = torch.sigmoid(self.ffn_receptance(h * self.cm_r + hx * (1 - self.cm_r)))
        return x + r * self.ffn_value(k)


class RWKV(nn.Module):
    def __init__(self, vocab: int = 20, d: int = 8):
        super().__init__()
        self.emb, self.block, self.head = nn.Embedding(vocab, d), RWKVBlock(d), nn.Linear(d, vocab)

    def forward(self, ids):
        return self.head(self.block(self.emb(ids)))


class Retention(nn.Module):
    """RetNet's multi-scale retention (parallel form): ``(Q Kᵀ ⊙ D) V`` with the decay mask
    ``D[n, m] = γ^(n-m)`` (n ≥ m) per head, GroupNorm per head, a swish gate, an out proj."""

    def __init__(self, d: int = 8, heads: int = 2):
        super().__init__()
        self.h, self.dh = heads, d // heads
        self.q, self.k, self.v = (nn.Linear(d, d, bias=False) for _ in "qkv")
        self.g, self.out = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.norm = nn.GroupNorm(heads, d, affine=False)
        self.register_buffer("gamma", 1 - 2.0 ** (-5 - torch.arange(heads, dtype=torch.float32)))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (p(x).view(b, t, self.h, self.dh).transpose(1, 2) for p in (self.q, self.k,
                                                                             self.v))
        n = torch.arange(t)
        diff = (n[:, None] - n[None, :]).to(x.dtype)
        decay = torch.where(diff >= 0, self.gamma.to(x.dtype)[:, None, None] ** diff, 0.0)
        y = (q @ k.transpose(-1, -2) / math.sqrt(self.dh) * decay) @ v  # (B, h, T, dh)
        y = self.norm(y.transpose(1, 2).reshape(b * t, d)).view(b, t, d)
        return self.out(F.silu(self.g(x)) * y)


class RetNet(nn.Module):
    def __init__(self, vocab: int = 20, d: int = 8):
        super().__init__()
        self.emb, self.ln = nn.Embedding(vocab, d), nn.LayerNorm(d)
        self.ret, self.head = Retention(d), nn.Linear(d, vocab)

    def forward(self, ids):
        x = self.emb(ids)
        return self.head(x + self.ret(self.ln(x)))


class SpectralConv2d(nn.Module):
    """neuraloperator's spectral conv: ``rfft2``, the lowest modes multiplied by a complex
    (C_in, C_out, m1, m2) weight by ``einsum``, ``irfft2``."""

    def __init__(self, c_in: int, c_out: int, m1: int, m2: int, dtype=torch.cfloat):
        super().__init__()
        scale = 1 / (c_in * c_out)
        self.m1, self.m2 = m1, m2
        self.weights1 = nn.Parameter(scale * torch.rand(c_in, c_out, m1, m2, dtype=dtype))
        self.weights2 = nn.Parameter(scale * torch.rand(c_in, c_out, m1, m2, dtype=dtype))

    def forward(self, x):
        b, _, h, w = x.shape
        x_ft = torch.fft.rfft2(x)
        out_ft = torch.zeros(b, self.weights1.shape[1], h, w // 2 + 1, dtype=x_ft.dtype)
        out_ft[:, :, :self.m1, :self.m2] = torch.einsum(
            "bixy,ioxy->boxy", x_ft[:, :, :self.m1, :self.m2], self.weights1)
        out_ft[:, :, -self.m1:, :self.m2] = torch.einsum(
            "bixy,ioxy->boxy", x_ft[:, :, -self.m1:, :self.m2], self.weights2)
        return torch.fft.irfft2(out_ft, s=(h, w))


class FNO(nn.Module):
    """A lift, one Fourier layer (spectral conv + a pointwise ``Conv2d``), a projection."""

    def __init__(self, c: int = 4, modes: int = 3, dtype=torch.float32):
        super().__init__()
        cdtype = torch.cdouble if dtype == torch.float64 else torch.cfloat
        self.lift = nn.Conv2d(1, c, 1)
        self.spectral = SpectralConv2d(c, c, modes, modes, cdtype)
        self.w = nn.Conv2d(c, c, 1)
        self.proj = nn.Conv2d(c, 1, 1)

    def forward(self, x):
        h = self.lift(x)
        return self.proj(F.gelu(self.spectral(h) + self.w(h)))


# ---------------------------------------------------------------------------------------------
# dense prediction and recurrent convs: YOLO head, HRNet, ConvLSTM, WaveNet
# ---------------------------------------------------------------------------------------------
def conv_bn(c_in: int, c_out: int, k: int = 3, s: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False), nn.BatchNorm2d(c_out),
                         nn.SiLU())


class YOLOHead(nn.Module):
    """A YOLOv3/v5-style neck and head: three backbone scales, the coarse ones upsampled by
    ``nn.Upsample`` and concatenated with the finer, one 1x1 detection conv per scale; a list
    of three (B, A, H, W, 5 + C) tensors."""

    def __init__(self, anchors: int = 2, classes: int = 2):
        super().__init__()
        self.no, self.na = 5 + classes, anchors
        self.b1, self.b2, self.b3 = conv_bn(3, 4, s=2), conv_bn(4, 8, s=2), conv_bn(8, 8, s=2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.lat2, self.lat1 = conv_bn(16, 8, 1), conv_bn(12, 4, 1)
        self.detect = nn.ModuleList([nn.Conv2d(c, self.na * self.no, 1) for c in (4, 8, 8)])

    def forward(self, x):
        p1 = self.b1(x)
        p2 = self.b2(p1)
        p3 = self.b3(p2)
        n2 = self.lat2(torch.cat([self.up(p3), p2], 1))
        n1 = self.lat1(torch.cat([self.up(n2), p1], 1))
        outs = []
        for conv, feat in zip(self.detect, (n1, n2, p3), strict=True):
            y = conv(feat)
            b, _, h, w = y.shape
            outs.append(y.view(b, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).contiguous())
        return outs


class HRBlock(nn.Module):
    """HRNet's exchange unit: a high- and a low-resolution branch run in parallel, then each
    output sums both: low -> high by a 1x1 conv and upsampling, high -> low by a strided 3x3."""

    def __init__(self, c_hi: int = 4, c_lo: int = 8):
        super().__init__()
        self.stem = conv_bn(3, c_hi)
        self.down0 = conv_bn(c_hi, c_lo, s=2)
        self.hi, self.lo = conv_bn(c_hi, c_hi), conv_bn(c_lo, c_lo)
        self.lo_to_hi = nn.Sequential(nn.Conv2d(c_lo, c_hi, 1, bias=False), nn.BatchNorm2d(c_hi))
        self.hi_to_lo = nn.Sequential(nn.Conv2d(c_hi, c_lo, 3, 2, 1, bias=False),
                                      nn.BatchNorm2d(c_lo))
        self.head = nn.Conv2d(c_hi + c_lo, 2, 1)

    def forward(self, x):
        hi = self.stem(x)
        lo = self.down0(hi)
        hi, lo = self.hi(hi), self.lo(lo)
        up = F.interpolate(self.lo_to_hi(lo), size=hi.shape[-2:], mode="bilinear",
                           align_corners=False)
        hi2, lo2 = F.relu(hi + up), F.relu(lo + self.hi_to_lo(hi))
        return self.head(torch.cat([hi2, F.interpolate(lo2, scale_factor=2.0)], 1))


class ConvLSTMCell(nn.Module):
    """Shi et al.'s ConvLSTM cell: one conv over ``cat([x, h])`` to the four gates."""

    def __init__(self, c_in: int, c_h: int, k: int = 3):
        super().__init__()
        self.c_h = c_h
        self.conv = nn.Conv2d(c_in + c_h, 4 * c_h, k, padding=k // 2)

    def forward(self, x, state):
        h, c = state
        i, f, o, g = self.conv(torch.cat([x, h], 1)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class ConvLSTM(nn.Module):
    """The cell stepped over (B, T, C, H, W) in a Python loop, a 1x1 conv on the last state."""

    def __init__(self, c_in: int = 2, c_h: int = 4):
        super().__init__()
        self.cell, self.c_h = ConvLSTMCell(c_in, c_h), c_h
        self.head = nn.Conv2d(c_h, 1, 1)

    def forward(self, x):
        b, t, _, h, w = x.shape
        state = (x.new_zeros(b, self.c_h, h, w), x.new_zeros(b, self.c_h, h, w))
        for i in range(t):
            state = self.cell(x[:, i], state)
        return self.head(state[0])


class WaveNetBlock(nn.Module):
    """WaveNet's residual block: a gated (tanh x sigmoid) dilated causal ``Conv1d`` (left padding
    by ``F.pad``), a 1x1 residual and a 1x1 skip conv."""

    def __init__(self, c: int = 6, skip: int = 4, dilation: int = 2):
        super().__init__()
        self.pad = dilation  # (k - 1) · dilation with k = 2
        self.filter = nn.Conv1d(c, c, 2, dilation=dilation)
        self.gate = nn.Conv1d(c, c, 2, dilation=dilation)
        self.res, self.skip = nn.Conv1d(c, c, 1), nn.Conv1d(c, skip, 1)

    def forward(self, x):
        h = F.pad(x, (self.pad, 0))
        z = torch.tanh(self.filter(h)) * torch.sigmoid(self.gate(h))
        return x + self.res(z), self.skip(z)


class WaveNet(nn.Module):
    def __init__(self, c: int = 6, skip: int = 4, classes: int = 8):
        super().__init__()
        self.causal = nn.Conv1d(1, c, 2)
        self.blocks = nn.ModuleList([WaveNetBlock(c, skip, d) for d in (1, 2, 4)])
        self.out = nn.Sequential(nn.ReLU(), nn.Conv1d(skip, skip, 1), nn.ReLU(),
                                 nn.Conv1d(skip, classes, 1))

    def forward(self, x):
        x = self.causal(F.pad(x, (1, 0)))
        skips = 0
        for block in self.blocks:
            x, s = block(x)
            skips = skips + s
        return self.out(skips)


# ---------------------------------------------------------------------------------------------
# torch's own layers and calling conventions
# ---------------------------------------------------------------------------------------------
class Translator(nn.Module):
    """``nn.Transformer`` pre-norm, batch-first, GELU, between token embeddings and a head; the
    target mask from ``generate_square_subsequent_mask`` with ``tgt_is_causal=True``."""

    def __init__(self, vocab: int = 20, d: int = 8):
        super().__init__()
        self.src_emb, self.tgt_emb = nn.Embedding(vocab, d), nn.Embedding(vocab, d)
        with warnings.catch_warnings():  # pre-norm: torch's note that it takes no nested path
            warnings.filterwarnings("ignore", message="enable_nested_tensor")
            self.t = nn.Transformer(d, 2, 1, 1, 16, dropout=0.1, activation="gelu",
                                    batch_first=True, norm_first=True)
        self.head = nn.Linear(d, vocab)

    def forward(self, src, tgt):
        x, y = self.src_emb(src), self.tgt_emb(tgt)
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], dtype=y.dtype)
        y = self.t(x, y, tgt_mask=mask, tgt_is_causal=True)
        return self.head(y)


def lazy_mlp(called: bool) -> nn.Module:
    """LazyConv2d + LazyLinear (their shapes set by the first call when ``called``)."""
    model = nn.Sequential(nn.LazyConv2d(4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    if called:
        model(torch.randn(1, 2, 5, 5))
    return model


class Detections(NamedTuple):
    boxes: torch.Tensor
    scores: torch.Tensor


@dataclasses.dataclass
class Output:
    logits: torch.Tensor
    hidden: torch.Tensor


class NamedOut(nn.Module):
    """Returns a NamedTuple (``as_dataclass``: a dataclass, as HuggingFace's ModelOutput)."""

    def __init__(self, as_dataclass: bool = False):
        super().__init__()
        self.body, self.box, self.cls = nn.Linear(6, 8), nn.Linear(8, 4), nn.Linear(8, 2)
        self.as_dataclass = as_dataclass

    def forward(self, x):
        h = F.relu(self.body(x))
        if self.as_dataclass:
            return Output(logits=self.cls(h), hidden=self.box(h))
        return Detections(boxes=self.box(h), scores=self.cls(h).softmax(-1))


class PaddedConvs(nn.Module):
    """Circular and reflect padding, ``padding='same'`` with dilation (even and odd kernels)."""

    def __init__(self):
        super().__init__()
        self.circ = nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular")
        self.refl = nn.Conv2d(4, 4, (3, 5), padding=(1, 2), padding_mode="reflect")
        self.same_dil = nn.Conv2d(4, 4, 3, padding="same", dilation=2)
        self.same_even = nn.Conv2d(4, 2, 4, padding="same", dilation=(1, 2),
                                   padding_mode="circular")

    def forward(self, x):
        x = F.relu(self.circ(x))
        x = F.relu(self.refl(x))
        x = F.relu(self.same_dil(x))
        return self.same_even(x)


class QuantReady(nn.Module):
    """An eager-mode quantization model: stubs around a Conv2d, a ReLU and a Linear."""

    def __init__(self):
        super().__init__()
        self.quant, self.dequant = torch.ao.quantization.QuantStub(), \
            torch.ao.quantization.DeQuantStub()
        self.conv, self.relu = nn.Conv2d(2, 4, 3), nn.ReLU()
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = self.relu(self.conv(self.quant(x)))
        return self.dequant(self.fc(x.flatten(1)))


def int8_model(calibration: torch.Tensor) -> nn.Module:
    """``QuantReady`` through ``torch.ao.quantization`` prepare, calibration, ``convert``
    (torch's current quantized engine): ``quantized.Conv2d`` / ``quantized.Linear`` with packed
    int8 weights."""
    import torch.ao.quantization as tq

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices
        model = QuantReady().eval()
        model.qconfig = tq.get_default_qconfig(torch.backends.quantized.engine)
        prepared = tq.prepare(model)
        with torch.no_grad():
            prepared(calibration)
        return tq.convert(prepared)


# ---------------------------------------------------------------------------------------------
# the zoo
# ---------------------------------------------------------------------------------------------
def _tokens(vocab: int = 20, b: int = 3, t: int = 6):
    return lambda: (torch.randint(0, vocab, (b, t)),)


ZOO8 = {
    "lora": (LoraMLP, lambda: (torch.randn(3, 8),)),
    "lora-unloaded": (lambda: LoraMLP(unloaded=True), lambda: (torch.randn(3, 8),)),
    "pruned": (PrunedMLP, lambda: (torch.randn(3, 8),)),
    "pruned-removed": (lambda: PrunedMLP(removed=True), lambda: (torch.randn(3, 8),)),
    "pixelcnn": (PixelCNN, lambda: (torch.rand(3, 1, 6, 6),)),
    "stylegan": (StyleBlock, lambda: (torch.randn(3, 4, 6, 6), torch.randn(3, 6))),
    "condconv": (CondConvNet, lambda: (torch.randn(3, 3, 6, 6),)),
    "moe-top2": (Top2MoE, lambda: (torch.randn(3, 5, 8),)),
    "linformer": (Linformer, lambda: (torch.randn(3, 6, 8),)),
    "performer": (Performer, lambda: (torch.randn(3, 6, 8),)),
    "rwkv": (RWKV, _tokens()),
    "retnet": (RetNet, _tokens()),
    "fno": (FNO, lambda: (torch.randn(3, 1, 8, 8),)),
    "yolo": (YOLOHead, lambda: (torch.randn(2, 3, 16, 16),)),
    "hrnet": (HRBlock, lambda: (torch.randn(3, 3, 8, 8),)),
    "convlstm": (ConvLSTM, lambda: (torch.randn(3, 4, 2, 6, 6),)),
    "wavenet": (WaveNet, lambda: (torch.randn(3, 1, 16),)),
    "transformer": (Translator, lambda: (torch.randint(0, 20, (3, 6)),
                                         torch.randint(0, 20, (3, 5)))),
    "lazy": (lambda: lazy_mlp(True), lambda: (torch.randn(3, 2, 5, 5),)),
    "namedtuple": (NamedOut, lambda: (torch.randn(3, 6),)),
    "dataclass": (lambda: NamedOut(as_dataclass=True), lambda: (torch.randn(3, 6),)),
    "padded": (PaddedConvs, lambda: (torch.randn(3, 2, 7, 9),)),
}


def _build(name: str, dtype=torch.float32):
    make, data = ZOO8[name]
    torch.manual_seed(0)
    # the FNO's complex weight: built in the complex dtype of ``dtype`` (Module.to(float64)
    # would cast it to a real one, dropping its imaginary part)
    model = (FNO(dtype=dtype) if name == "fno" else make()).eval()
    for p in model.parameters():
        if not p.is_complex():
            p.data = p.data.to(dtype)
    for mod in model.modules():
        for key, b in mod._buffers.items():
            if b is not None and b.is_floating_point():
                mod._buffers[key] = b.to(dtype)
    if name == "pruned":  # the masks' hook recomputes weight from weight_orig in dtype
        with torch.no_grad():
            model(torch.zeros(1, 8, dtype=dtype))
        prune_again(model)
    torch.manual_seed(1)
    args = tuple(a.to(dtype) if a.is_floating_point() else a for a in data())
    return model, args


def prune_again(model: nn.Module) -> None:
    """The pruned weights recomputed with gradient, as right after ``prune.*`` (torch cannot
    copy them then)."""
    for m in model.modules():
        for hook in m._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                hook(m, None)


flat = flat_output  # a list, NamedTuple or dataclass of outputs: one tensor


def _rel(got, want) -> float:
    return float((flat(got) - flat(want)).norm() / flat(want).norm())


# what each model keeps digital, by name: every weight matrix is mapped or listed here. The
# embeddings; the masked convs (a subclass computing weight * mask); the weights used without a
# module (CondConv's experts by einsum, Performer's random features, the FNO's complex spectral
# weights) and StyleGAN's modulated weight (multiplied by the style: per input); the products of
# activations of the module whose forward computes them
_DIGITAL = {
    "pixelcnn": {"a", "b"},
    "stylegan": {"conv.weight", "conv"},
    "condconv": {"cond.weight", "cond"},
    "linformer": {"model"},
    "performer": {"features", "model"},
    "rwkv": {"emb"},
    "retnet": {"emb", "ret"},
    "fno": {"spectral.weights1", "spectral.weights2"},
    "transformer": {"src_emb", "tgt_emb", "t.encoder.layers.0.self_attn",
                    "t.decoder.layers.0.self_attn", "t.decoder.layers.0.multihead_attn"},
}
# 3-D parameters no product reads: RWKV's token-shift mixing factors (element-wise)
_NOT_MATRICES = {"rwkv": tuple(f"block.{n}" for n in ("tm_k", "tm_v", "tm_r", "cm_k", "cm_r"))}


def _deploy(model, chip, args, **kw):
    if any(isinstance(h, prune.BasePruningMethod)
           for m in model.modules() for h in m._forward_pre_hooks.values()):
        prune_again(model)  # deploy as right after pruning
    return _quiet(cimsim.deploy, model, chip, args, **kw)


# ---------------------------------------------------------------------------------------------
# deploy: lossless, rram-22nm
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ZOO8))
def test_lossless_deploy_equals_the_quantized_model(name):
    """Bit-exact against the integer re-implementation: every Linear / Conv on the arrays (the
    LoRA adapters' three products, the experts on the tokens routed to them, the ConvLSTM's
    conv at every step, the Linformer's projection over the sequence), the rest in torch."""
    model, args = _build(name)
    sim = _deploy(model, lossless_chip("channel"), args)
    with torch.no_grad():
        model(*args)  # a pruned weight recomputed under no_grad: the reference can copy it
        want = reference_model(model, sim)(*args)
    got = sim(*args)
    assert type(got) is type(want)
    assert_bitwise(flat(got), flat(want))


@pytest.mark.parametrize("name", list(ZOO8))
def test_lossless_deploy_is_within_8_bit_quantization_of_float(name):
    model, args = _build(name)
    if name in ("namedtuple", "dataclass"):
        model = Flat(model)
    check_lossless_near_float(model, args, _DIGITAL.get(name, set()))


@pytest.mark.parametrize("name", list(ZOO8))
def test_rram_deploy_runs_reports_and_accounts_for_every_matrix(name):
    model, args = _build(name)
    with torch.no_grad():
        want = flat(model(*args))
    sim = _deploy(model, _rram(), args)
    check_lossy_run(flat(sim(*args)), want, sim)
    check_every_matrix(model, sim, _DIGITAL.get(name, set()), _NOT_MATRICES.get(name, ()))


# ---------------------------------------------------------------------------------------------
# prepare -> one step -> deploy
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chip", ["ideal", "rram"])
@pytest.mark.parametrize("name", list(ZOO8))
def test_prepare_steps_and_the_twin_deploys_to_what_it_computes(name, chip):
    model, args = _build(name, torch.float64)
    if name == "pruned":
        prune_again(model)
    if name == "dataclass":  # assert_close compares no dataclass: its fields, flattened
        model = Flat(model)
    chip_cfg = lossless_chip("channel") if chip == "ideal" else _rram_noise_free()
    prep = prepare_step_deploy(model, chip_cfg, args, 0, main=flat)
    assert {d[0] for d in prep.digital} == _DIGITAL.get(name, set())


# ---------------------------------------------------------------------------------------------
# what cimsim cannot program, named; what it used to refuse or miss
# ---------------------------------------------------------------------------------------------
def test_a_merged_lora_names_its_idle_adapters_and_deploys_without_them():
    """After PEFT's ``merge_adapter()`` the adapters are no longer called: a clear error naming
    the first, and excluded they stay digital while the merged base layers map."""
    torch.manual_seed(0)
    model, x = LoraMLP(merged=True).eval(), torch.randn(3, 8)
    with pytest.raises(MappingError, match=r"fc1\.lora_A\.default.*never reached.*exclude"):
        _deploy(model, lossless_chip("channel"), (x,))
    sim = _deploy(model, lossless_chip("channel"), (x,), exclude=["*.lora_A*", "*.lora_B*"])
    assert list(sim.sim_layers) == ["fc1.base_layer", "fc2.base_layer"]
    with torch.no_grad():
        assert _rel(sim(x), model(x)) < 0.03


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_a_model_right_after_pruning_maps_its_pruned_weights(run):
    """``prune.*`` leaves ``weight`` computed with gradient from ``weight_orig * weight_mask``
    until a forward under no_grad; torch cannot copy it, and deploy / prepare refused the model
    telling the user to detach tensors they never made (as with an old-style ``weight_norm``).
    They copy its value now, the pruning made permanent in the copy; the user's model keeps its
    pruning; prepare keeps the masks while training (test_pruned_weights_stay_zero...)."""
    model, args = _build("pruned")
    prune_again(model)
    assert model.fc1.weight.grad_fn is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = run(model, lossless_chip("channel"), args)
    assert not any("prune" in str(w.message) for w in caught)
    assert model.fc1.weight.grad_fn is not None and hasattr(model.fc1, "weight_mask")
    layers = out.sim_layers if run is cimsim.deploy else out.twin_layers
    assert list(layers) == ["fc1", "fc2"]
    if run is prepare:
        float_fc1 = out.float_model().fc1
        assert not hasattr(float_fc1, "weight_mask") and not float_fc1._forward_pre_hooks
        assert torch.equal(float_fc1.weight, model.fc1.weight.detach())


@pytest.mark.parametrize("optimizer", ["sgd-momentum-decay", "adamw"])
def test_pruned_weights_stay_zero_through_training_and_deploy(optimizer):
    """torch's pruning hook keeps a pruned weight at zero however weight_orig trains; the
    twin keeps the same mask (``TwinMatmul.keep_zeros``): it trained the pruned weight as a
    dense one before, a step moving the pruned entries off zero. Unpruned weights train."""
    model, args = _build("pruned")
    prune_again(model)
    zero = {n: getattr(model, n).weight.detach() == 0 for n in ("fc1", "fc2")}
    assert all(z.any() for z in zero.values())
    prep = _quiet(prepare, model, lossless_chip("channel"), args)
    params = [p for p in prep.parameters() if p.requires_grad]
    opt = (torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-2)
           if optimizer == "sgd-momentum-decay" else torch.optim.AdamW(params, lr=1e-2))
    prep.train()
    for _ in range(3):
        opt.zero_grad()
        prep(*args).pow(2).mean().backward()
        opt.step()
    prep.eval()
    trained = prep.float_model()
    for n, z in zero.items():
        w = getattr(trained, n).weight.detach()
        assert torch.equal(w[z], torch.zeros_like(w[z]))  # pruned: still exactly zero
        assert not torch.equal(w[~z], getattr(model, n).weight.detach()[~z])  # the rest trained
    (fc1,) = prep.twin_layers["fc1"].matrices()
    assert torch.equal(fc1.quantized_weight()[zero["fc1"]],
                       torch.zeros_like(fc1.quantized_weight()[zero["fc1"]]))
    sim = prep.deploy()
    with torch.no_grad():
        torch.testing.assert_close(sim(*args), prep(*args), rtol=1e-6, atol=1e-6)
    # the mask is state: a copy (deepcopy drops tensor hooks) and a state_dict keep it
    again = copy.deepcopy(prep)
    assert torch.equal(again.twin_layers["fc1"].matrices()[0].weight_keep, fc1.weight_keep)
    assert sum(k.endswith("weight_keep") for k in prep.state_dict()) == 2


def test_an_old_style_weight_norm_right_after_it_is_applied_deploys():
    """The same copy failure with ``torch.nn.utils.weight_norm`` (deprecated, still common)."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = nn.Sequential(nn.utils.weight_norm(nn.Linear(5, 4)), nn.ReLU(),
                              nn.Linear(4, 2)).eval()
    x = torch.randn(3, 5)
    sim = _deploy(model, lossless_chip("channel"), (x,))
    assert list(sim.sim_layers) == ["0", "2"]
    with torch.no_grad():
        assert _rel(sim(x), model(x)) < 0.03


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_a_modulated_weight_is_named_never_silently_float(run):
    """StyleGAN2's weight times the per-sample style reaches ``F.conv2d`` as an activation: the
    conv was listed as a product of activations and ``conv.weight`` went unnamed, in float
    without a warning. It is named now (the weight, and the reason: multiplied by an
    activation); CondConv's expert kernels reach an ``einsum`` first and are named by it."""
    model, args = _build("stylegan")
    with pytest.warns(UserWarning, match=r"1 weight\(s\) are multiplied by an activation "
                                         r"before a matrix product.*conv\.weight \(conv2d\)"):
        out = run(model, lossless_chip("channel"), args)
    rows = {d[0]: d for d in out.digital}
    assert rows["conv.weight"][1:] == ("parameter", "multiplied by an activation before a "
                                       "matrix product (an input-dependent weight, e.g. a "
                                       "modulated or dynamic kernel): it cannot be programmed "
                                       "once; computes in float")
    assert rows["conv"][1] == "activation products"


class SummedCondConv(CondConv2d):
    """CondConv as some code writes it: the experts scaled by the routing weights and summed
    (``(r[..., None, None, None, None] * W).sum(1)``), no einsum."""

    def forward(self, x):
        b, c, h, w = x.shape
        r = torch.sigmoid(self.route(x.mean((2, 3))))
        weight = (r[:, :, None, None, None, None] * self.weight).sum(1)
        out = F.conv2d(x.reshape(1, b * c, h, w), weight.reshape(b * self.c_out, c, 3, 3),
                       padding=self.pad, groups=b)
        return out.view(b, self.c_out, h, w)


def test_a_mixture_of_kernels_by_scaling_and_summing_is_named():
    model, args = _build("condconv")
    summed = SummedCondConv(6, 6)
    summed.load_state_dict(model.cond.state_dict())
    model.cond = summed
    with pytest.warns(UserWarning, match=r"multiplied by an activation.*cond\.weight "
                                         r"\(conv2d\)"):
        sim = cimsim.deploy(model, lossless_chip("channel"), args)
    check_every_matrix(model, sim, {"cond.weight", "cond"})
    with torch.no_grad():
        assert _rel(sim(*args), model(*args)) < 0.03


def test_an_added_table_is_no_modulation():
    """Only a product makes a weight input-dependent: a (2-D) bias table added to the scores
    (RetNet's decay is computed, ALiBi's is a buffer) leaves the weights unnamed."""
    class Scores(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.v = nn.Linear(4, 4), nn.Linear(4, 4)
            self.register_buffer("bias", torch.randn(5, 5))

        def forward(self, x):
            s = self.q(x) @ self.q(x).transpose(1, 2) + self.bias
            return s.softmax(-1) @ self.v(x)

    torch.manual_seed(0)
    sim = _deploy(Scores().eval(), lossless_chip("channel"), (torch.randn(2, 5, 4),))
    assert sim.digital == [("model", "activation products",
                            "activation x activation matrix product (matmul, einsum, ...) "
                            "computed digitally in float")]


def test_a_complex_weight_is_named_and_keeps_its_dtype_in_the_twin():
    """The FNO's complex spectral weights: named as weights no module holds (float, in fact
    complex), never mapped; the twin keeps them complex and trains them."""
    model, args = _build("fno", torch.float64)
    with pytest.warns(UserWarning, match=r"spectral\.weights1 \(einsum\), spectral\.weights2"):
        prep = prepare(model, lossless_chip("channel"), args)
    w = prep.model.spectral.weights1
    assert w.dtype == torch.cdouble and w.requires_grad
    prep(*args).pow(2).mean().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


@pytest.mark.skipif("qnnpack" not in torch.backends.quantized.supported_engines
                    and "x86" not in torch.backends.quantized.supported_engines,
                    reason="this torch build has no quantized CPU engine")
def test_an_int8_converted_model_is_refused_naming_its_layers():
    """``torch.ao.quantization.convert``'s quantized Conv2d / Linear hold packed int8 weights:
    deploy said the model had no Linear or Conv layer. Its layers are named now, with what to
    do; beside float layers they are listed digital (their own int8 kernels) and warned."""
    torch.manual_seed(0)
    x = torch.randn(6, 2, 6, 6)
    model = int8_model(x)
    with pytest.raises(MappingError, match=r"kept digital: conv \(quantized Conv2d: .*int8 "
                                           r"module of torch\.ao\.quantization\.convert.*fc "
                                           r"\(quantized Linear: .*float model from before"):
        cimsim.deploy(model, lossless_chip("channel"), x)
    mixed = nn.Sequential(model, nn.Linear(3, 2)).eval()
    with pytest.warns(UserWarning, match=r"0\.conv: an int8 module.*0\.fc: an int8 module"):
        sim = cimsim.deploy(mixed, lossless_chip("channel"), x)
    assert list(sim.sim_layers) == ["1"]
    assert {d[0]: d[1] for d in sim.digital} == {"0.conv": "quantized Conv2d",
                                                 "0.fc": "quantized Linear"}
    with torch.no_grad():
        assert _rel(sim(x), mixed(x)) < 0.03
    with pytest.warns(UserWarning, match=r"0\.conv: an int8 module"):
        prep = prepare(mixed, lossless_chip("channel"), x)
    assert list(prep.twin_layers) == ["1"]


def test_a_dynamically_quantized_model_names_its_int8_layers():
    """``quantize_dynamic``'s int8 Linear and LSTM (packed weights, float activations) beside a
    float head: listed digital by name, the head mapped."""
    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.fc, self.head = nn.LSTM(4, 6, batch_first=True), nn.Linear(6, 6), \
                nn.Linear(6, 3)

        def forward(self, x):
            return self.head(torch.relu(self.fc(self.lstm(x)[0])))

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices
        model = torch.ao.quantization.quantize_dynamic(Tagger().eval(), {nn.LSTM, nn.Linear},
                                                       dtype=torch.qint8)
    model.head = nn.Linear(6, 3)  # float again
    x = torch.randn(3, 5, 4)
    with pytest.warns(UserWarning, match=r"lstm: an int8 module.*fc: an int8 module"):
        sim = cimsim.deploy(model, lossless_chip("channel"), x)
    assert list(sim.sim_layers) == ["head"]
    assert {d[0]: d[1] for d in sim.digital} == {"lstm": "quantized LSTM",
                                                 "fc": "quantized Linear"}


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_lazy_layers_before_their_first_call_are_named(run):
    """Before the first call a LazyConv2d / LazyLinear has no weights: both named (after it,
    the zoo's ``lazy`` model maps them)."""
    with pytest.raises(MappingError, match=r"0 \(LazyConv2d\), 3 \(LazyLinear\): "
                                           r"uninitialized.*once"):
        run(lazy_mlp(False), lossless_chip("channel"), torch.randn(3, 2, 5, 5))

"""The thirteenth zoo's models (``test_zoo13.py``): how a forward reaches its layers and its
weights in ways the twelve earlier zoos did not try. Layers called through references the
module tree does not hold (a plain Python list or dict of the model's own layers, a bound
``forward`` kept as an attribute, ``layer.forward(x)`` called directly, a
``functools.partial``), a ``torch.jit.trace`` d submodule, forward hooks taking keyword
arguments, ``torch.no_grad()`` / ``torch.inference_mode()`` inside the forward, weights reaching
a product by element-wise multiplication and a sum (a hand-written linear layer), through
``torch.linalg.vecdot`` / ``torch.dot``, spectral filters (GFNet's global filter), butterfly /
Monarch matrices by ``torch.block_diag``, ``torch.kron`` and einsum index orders, ``nn.Fold``,
a depthwise-separable ``Conv3d`` with circular padding, a bidirectional two-layer GRU on a
PackedSequence, ``nn.TransformerEncoderLayer(norm_first=True)`` with a callable activation,
``F.scaled_dot_product_attention`` with ``scale=``, layers reused on different input shapes,
an EMA teacher and a bound-method activation. Small, written here from the papers'
descriptions (no model library imported); widths are tiny."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


# ---------------------------------------------------------------------------------------------
# Layers reached through references the module tree does not hold
# ---------------------------------------------------------------------------------------------
class PlainListLayers(nn.Module):
    """Layers registered as attributes and also kept in a plain Python list and dict (a pattern
    of hand-written research code: ``self.stages = [self.l1, self.l2]`` to loop over them): the
    forward calls them through the list and the dict, never through the attributes."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.l1, self.l2 = nn.Linear(d, 8), nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)
        self.stages = [self.l1, self.l2]  # a list, not a ModuleList
        self.heads = {"main": self.head}  # a dict, not a ModuleDict

    def forward(self, x):
        for layer in self.stages:
            x = torch.relu(layer(x))
        return self.heads["main"](x)


class BoundForward(nn.Module):
    """A layer's bound ``forward`` and ``__call__`` kept as attributes
    (``self.embed = self.proj.forward``; a ``functools.partial`` of a layer), and
    ``self.fc.forward(x)`` called directly (HuggingFace code does it): the layers are the
    model's own, reached around ``nn.Module.__call__``."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.proj, self.fc, self.out = nn.Linear(d, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        self.embed = self.proj.forward
        self.finish = functools.partial(self.out)

    def forward(self, x):
        h = torch.relu(self.embed(x))
        h = torch.relu(self.fc.forward(h))
        return self.finish(h)


class TracedBranch(nn.Module):
    """A submodule compiled by ``torch.jit.trace`` (a frozen feature extractor shipped
    traced) beside an ordinary head: the traced graph calls its own Linear layers."""

    def __init__(self, d: int = 6):
        super().__init__()
        torch.manual_seed(0)
        body = nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
        self.body = torch.jit.trace(body.eval(), torch.randn(2, d))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.body(x))


class KwargHooks(nn.Module):
    """Hooks of torch 2's keyword form on mapped layers: a forward pre-hook
    ``with_kwargs=True`` scaling its input, a forward hook ``with_kwargs=True,
    always_call=True`` adding a constant, one registered ``prepend=True``."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(d, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        self.a.register_forward_pre_hook(_halve_input, with_kwargs=True)
        self.b.register_forward_hook(_add_one, with_kwargs=True, always_call=True)
        self.b.register_forward_hook(_double_output, prepend=True)

    def forward(self, x):
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))))


def _halve_input(module, args, kwargs):
    return (args[0] * 0.5,), kwargs


def _add_one(module, args, kwargs, out):
    return out + 1.0


def _double_output(module, args, out):
    return out * 2.0


class GradModes(nn.Module):
    """A frozen branch computed under ``torch.no_grad()`` and a statistic under
    ``torch.inference_mode()`` inside the forward (a stop-gradient target, a running
    normaliser), beside a trainable path."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.frozen, self.train_fc, self.head = nn.Linear(d, 8), nn.Linear(d, 8), nn.Linear(8, 3)

    def forward(self, x):
        with torch.no_grad():
            target = torch.tanh(self.frozen(x))
        with torch.inference_mode():
            scale = float(x.detach().abs().mean()) + 1.0
        h = torch.relu(self.train_fc(x / scale)) + target
        return self.head(h)


class EMATeacher(nn.Module):
    """A student and a momentum teacher (BYOL, Grill et al., NeurIPS 2020; DINO): in training
    mode the forward moves each of the teacher's parameters toward the student's of the same
    name (``t.mul_(m).add_(s, alpha=1 - m)`` under ``no_grad``); in eval mode both are fixed.
    Returns the two embeddings."""

    def __init__(self, d: int = 6, momentum: float = 0.9):
        super().__init__()
        self.student = nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, 4))
        self.teacher = nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, 4))
        self.teacher.requires_grad_(False)
        self.momentum = momentum

    def forward(self, x):
        if self.training:
            student = dict(self.student.named_parameters())
            with torch.no_grad():
                for name, t in self.teacher.named_parameters():
                    t.mul_(self.momentum).add_(student[name], alpha=1 - self.momentum)
        return torch.cat([self.student(x), self.teacher(x)], dim=-1)


# ---------------------------------------------------------------------------------------------
# Weights reaching a product by other routes
# ---------------------------------------------------------------------------------------------
class SumProductLinear(nn.Module):
    """A linear layer written as a broadcast product and a sum,
    ``(x[:, None, :] * self.weight).sum(-1)`` (hand-written layers, KAN-style code), beside a
    mapped head."""

    def __init__(self, d: int = 6, h: int = 8):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(h, d) / d**0.5)
        self.head = nn.Linear(h, 3)

    def forward(self, x):
        h = (x[:, None, :] * self.weight).sum(-1)
        return self.head(torch.relu(h))


class VecdotProducts(nn.Module):
    """Weights applied by ``torch.linalg.vecdot`` (rows of a weight against the input) and by
    ``torch.dot`` in a per-output loop, beside a mapped head."""

    def __init__(self, d: int = 6, h: int = 5):
        super().__init__()
        self.w_vecdot = nn.Parameter(torch.randn(h, d) / d**0.5)
        self.w_dot = nn.Parameter(torch.randn(h, h) / h**0.5)
        self.head = nn.Linear(h, 3)

    def forward(self, x):
        h = torch.relu(torch.linalg.vecdot(x[:, None, :], self.w_vecdot))
        g = torch.stack([torch.stack([torch.dot(self.w_dot[i], r) for i in range(len(self.w_dot))])
                         for r in h])
        return self.head(torch.relu(g))


class GlobalFilter(nn.Module):
    """GFNet's global filter layer (Rao et al., NeurIPS 2021): a 2-D FFT of the tokens, an
    element-wise product with a learned complex filter (stored as real pairs,
    ``view_as_complex``), the inverse FFT; then a mapped MLP."""

    def __init__(self, c: int = 4, h: int = 4, w: int = 4):
        super().__init__()
        self.filter = nn.Parameter(torch.randn(h, w // 2 + 1, c, 2) * 0.2)
        self.norm = nn.LayerNorm(c)
        self.mlp = nn.Sequential(nn.Linear(c, 8), nn.GELU(), nn.Linear(8, c))
        self.head = nn.Linear(c, 3)

    def forward(self, x):  # (B, H, W, C)
        h = self.norm(x)
        f = torch.fft.rfft2(h, dim=(1, 2), norm="ortho")
        f = f * torch.view_as_complex(self.filter)
        h = torch.fft.irfft2(f, s=x.shape[1:3], dim=(1, 2), norm="ortho")
        x = x + h
        x = x + self.mlp(x)
        return self.head(x.mean(dim=(1, 2)))


class Monarch(nn.Module):
    """A Monarch matrix (Dao et al., ICML 2022): two block-diagonal factors built by
    ``torch.block_diag`` from a 3-D parameter each, a fixed permutation between them, applied
    by ``F.linear``; a Kronecker-factored layer (``torch.kron``) beside it; a mapped head."""

    def __init__(self, blocks: int = 2, b: int = 3):
        super().__init__()
        n = blocks * b
        self.l_blocks = nn.Parameter(torch.randn(blocks, b, b) / b**0.5)
        self.r_blocks = nn.Parameter(torch.randn(blocks, b, b) / b**0.5)
        self.register_buffer("perm", torch.arange(n).reshape(blocks, b).t().reshape(-1))
        self.k1 = nn.Parameter(torch.randn(2, 2) / 2**0.5)
        self.k2 = nn.Parameter(torch.randn(3, 3) / 3**0.5)
        self.head = nn.Linear(n, 3)

    def forward(self, x):
        h = F.linear(x, torch.block_diag(*self.r_blocks))[:, self.perm]
        h = F.linear(torch.relu(h), torch.block_diag(*self.l_blocks))
        h = torch.relu(F.linear(h, torch.kron(self.k1, self.k2)))
        return self.head(h)


class EinsumOrders(nn.Module):
    """Weights in unusual index orders: ``einsum('oi,bi->bo')``, a per-head weight
    ``einsum('bhd,hdo->bho')`` and ``torch.tensordot`` over the last axis; a mapped head."""

    def __init__(self, d: int = 6, heads: int = 2):
        super().__init__()
        self.w_oi = nn.Parameter(torch.randn(8, d) / d**0.5)
        self.w_hdo = nn.Parameter(torch.randn(heads, 4, 4) / 2)
        self.w_td = nn.Parameter(torch.randn(8, 8) / 8**0.5)
        self.head = nn.Linear(8, 3)
        self.heads = heads

    def forward(self, x):
        h = torch.relu(torch.einsum("oi,bi->bo", self.w_oi, x))
        h = torch.einsum("bhd,hdo->bho", h.view(len(x), self.heads, 4), self.w_hdo)
        h = torch.tensordot(torch.relu(h.reshape(len(x), 8)), self.w_td, dims=([1], [1]))
        return self.head(h)


# ---------------------------------------------------------------------------------------------
# torch layers in less common configurations
# ---------------------------------------------------------------------------------------------
class FoldPatches(nn.Module):
    """Overlapping patches taken by ``nn.Unfold``, mixed by a mapped Linear per patch, put back
    by ``nn.Fold`` (overlaps summed), divided by the overlap count (the fold of ones)."""

    def __init__(self, c: int = 2, k: int = 3):
        super().__init__()
        self.unfold = nn.Unfold(k, padding=1, stride=2)
        self.mix = nn.Linear(c * k * k, c * k * k)
        self.k, self.c = k, c
        self.head = nn.Linear(c * 6 * 6, 3)

    def forward(self, x):  # (B, C, 6, 6)
        p = self.unfold(x)  # (B, C*k*k, L)
        p = self.mix(p.transpose(1, 2)).transpose(1, 2)
        fold = nn.Fold(x.shape[-2:], self.k, padding=1, stride=2)
        y = fold(p) / fold(self.unfold(torch.ones_like(x)))
        return self.head(torch.relu(y).flatten(1))


class SeparableConv3d(nn.Module):
    """A depthwise-separable 3-D convolution (X3D-style): a depthwise ``Conv3d``
    (groups = channels) with circular padding, a pointwise ``Conv3d``, BatchNorm3d, a
    reflect-padded dilated grouped Conv3d, a mapped head."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.dw = nn.Conv3d(c, c, 3, padding=1, groups=c, padding_mode="circular")
        self.pw = nn.Conv3d(c, 6, 1)
        self.bn = nn.BatchNorm3d(6)
        self.dil = nn.Conv3d(6, 6, 3, padding="same", dilation=(1, 2, 1), groups=2,
                             padding_mode="reflect")
        self.head = nn.Linear(6, 3)

    def forward(self, x):  # (B, C, T, H, W)
        h = torch.relu(self.bn(self.pw(self.dw(x))))
        h = torch.relu(self.dil(h))
        return self.head(h.mean(dim=(2, 3, 4)))


class PackedBiGRU(nn.Module):
    """A two-layer bidirectional GRU, sequence-first, on a PackedSequence of unsorted lengths
    (``enforce_sorted=False``), padded back; the last valid step of each sequence to a head.
    Inputs: (B, T, F), turned sequence-first for the GRU, and the lengths."""

    def __init__(self, f: int = 4, h: int = 5):
        super().__init__()
        self.gru = nn.GRU(f, h, num_layers=2, bidirectional=True)
        self.head = nn.Linear(2 * h, 3)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x.transpose(0, 1), lengths, enforce_sorted=False)
        out, h_n = self.gru(packed)
        out, lens = pad_packed_sequence(out)
        last = out[lens - 1, torch.arange(out.shape[1])]
        return self.head(last) + self.head(torch.cat([h_n[-2], h_n[-1]], dim=-1))


def _tanh_gelu(x):
    return F.gelu(x, approximate="tanh")


class NormFirstEncoder(nn.Module):
    """``nn.TransformerEncoder`` of ``nn.TransformerEncoderLayer(norm_first=True,
    activation=<a function>, bias=False)`` with a padding mask and a final LayerNorm, the
    padded positions masked out of a mean pool."""

    def __init__(self, d: int = 8):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d, 2, 16, dropout=0.0, activation=_tanh_gelu,
                                           batch_first=True, norm_first=True, bias=False)
        self.enc = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(d),
                                         enable_nested_tensor=False)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        pad = torch.zeros(x.shape[:2], dtype=torch.bool)
        pad[1:, -2:] = True
        h = self.enc(x, src_key_padding_mask=pad)
        keep = (~pad).to(h.dtype)[..., None]
        return self.head((h * keep).sum(1) / keep.sum(1))


class SDPAVariants(nn.Module):
    """``F.scaled_dot_product_attention`` with ``scale=`` and a float mask, then with
    ``is_causal=True``, from mapped q/k/v projections (one head per call)."""

    def __init__(self, d: int = 8):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.o = nn.Linear(d, d)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        t = x.shape[1]
        bias = -0.1 * (torch.arange(t)[:, None] - torch.arange(t)[None]).abs().to(x.dtype)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=0.25)
        b = F.scaled_dot_product_attention(q, k, a, is_causal=True)
        return self.head(self.o(b).mean(1))


class ReusedShapes(nn.Module):
    """One Conv2d applied at two resolutions (an image and its half-size copy) and one Linear
    on a (B, D) and a (B, T, D) input in the same forward (multi-scale inference)."""

    def __init__(self, c: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(c, 4, 3, padding=1)
        self.fc = nn.Linear(4, 4)
        self.head = nn.Linear(8, 3)

    def forward(self, x):  # (B, C, 8, 8)
        big = torch.relu(self.conv(x))
        small = torch.relu(self.conv(F.avg_pool2d(x, 2)))
        tokens = self.fc(big.flatten(2).transpose(1, 2)).mean(1)  # (B, T, 4) -> (B, 4)
        pooled = self.fc(small.mean(dim=(2, 3)))  # (B, 4)
        return self.head(torch.cat([tokens, pooled], dim=-1))


class ConvTransposeFunctional(nn.Module):
    """``F.conv_transpose1d`` with a Parameter kernel (a learned upsampler written
    functionally) and ``F.conv3d`` with a Parameter, beside a mapped Conv1d."""

    def __init__(self, c: int = 3):
        super().__init__()
        self.up = nn.Parameter(torch.randn(c, 4, 4) * 0.3)  # (in, out, k)
        self.k3 = nn.Parameter(torch.randn(2, 1, 2, 2, 2) * 0.3)
        self.conv = nn.Conv1d(4, 4, 3, padding=1)
        self.head = nn.Linear(4 + 2, 3)

    def forward(self, x):  # (B, C, L)
        h = F.conv_transpose1d(x, self.up, stride=2)
        h = torch.relu(self.conv(h)).mean(-1)
        v = F.conv3d(x[:, None, :, :, None].expand(-1, -1, -1, -1, 2), self.k3)
        return self.head(torch.cat([h, v.flatten(2).mean(-1)], dim=-1))


class MethodActivation(nn.Module):
    """A layer's output passed to a bound method of another module as the activation
    (``self.act = self.norm.forward``) and a Sequential slice (``self.body[:2]``) called in the
    forward: modules reached through objects built from the tree."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                                  nn.Linear(8, 3))
        self.norm = nn.LayerNorm(8)
        self.act = self.norm.forward

    def forward(self, x):
        h = self.act(self.body[:2](x))
        return self.body[2:](h)


class _LinearFn(torch.autograd.Function):
    """``x Wᵀ + b`` with a straight-through backward, as quantization code writes its layers."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return x.mm(weight.t()) + bias

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        return grad.mm(weight), grad.t().mm(x), grad.sum(0)


class CustomAutogradLinear(nn.Module):
    """A weight applied inside a custom ``torch.autograd.Function`` (``_LinearFn.apply``), beside
    a mapped head."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, d) / d**0.5)
        self.bias = nn.Parameter(torch.zeros(8))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.relu(_LinearFn.apply(x, self.weight, self.bias)))


class CachedOrthogonal(nn.Module):
    """A Linear orthogonalised by ``nn.utils.parametrizations.orthogonal`` applied twice in a
    weight-tied loop under ``nn.utils.parametrize.cached()`` (the weight computed once per
    forward), then a head."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.mix = nn.utils.parametrizations.orthogonal(nn.Linear(d, d))
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        with nn.utils.parametrize.cached():
            for _ in range(2):
                x = torch.tanh(self.mix(x))
        return self.head(x)

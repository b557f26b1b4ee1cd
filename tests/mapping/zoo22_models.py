"""The twenty-second zoo's models (``test_zoo22.py``): model families at toy size that the
twenty-one earlier zoos did not build, chosen for unusual ways a weight reaches its product.
Weights held by torch machinery: an ``nn.Linear`` whose weight is a tensor subclass (an int8
weight with a per-row scale that dequantizes itself in every operation, as torchao's
``quantize_`` leaves a plain ``nn.Linear`` holding one), an ``nn.RNN`` whose recurrent weight
is orthogonal by ``torch.nn.utils.parametrizations.orthogonal`` (expRNN), attention whose packed
``in_proj_weight`` is weight-normed by the parametrization API, LoRA adapters added as a
parametrization of frozen weights (as minLoRA writes them). Weights in products no layer
holds: the centres of an RBF network (a hand-written squared distance), additive attention's
scoring vector (a 1-D ``v`` on the right of ``@``), a learned canvas filtered by kernels
generated from the input (the weight as the convolution's input, the kernel an activation), a
transition matrix ``expand`` ed over the batch for ``torch.bmm``, a Toeplitz mixer gathered
from learned coefficients by a constant index, LightConv's softmax-normalised kernel shared by
every channel (``F.conv1d`` with ``groups`` = channels and the kernel expanded), a filter applied
by scipy in a custom ``autograd.Function`` (torch's NumPy-extension tutorial), LightGCN's
embedding table propagated by ``torch.sparse.mm`` through a sparse adjacency buffer. Calls in other
forms: a submodule whose forward is a generator and one returning a tuple used partly, and
SimSiam's encoder called with and without ``torch.no_grad()`` in one forward. Small, written
here from the papers' descriptions (no model library imported); widths are tiny."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import convolve2d, correlate2d
from torch import nn
from torch.nn.utils import parametrizations, parametrize
from torch.utils._pytree import tree_map


# ---------------------------------------------------------------------------------------------
# Weights held by torch machinery
# ---------------------------------------------------------------------------------------------
class Int8Weight(torch.Tensor):
    """A weight-only int8 tensor subclass (a wrapper subclass, as torchao's quantized tensors
    are): int8 values and a float scale per row; every operation on it sees the dequantized
    matrix, its copies (``detach``, ``clone``, a dtype change) stay quantized."""

    @staticmethod
    def __new__(cls, qdata: torch.Tensor, scale: torch.Tensor):
        return torch.Tensor._make_wrapper_subclass(cls, qdata.shape, dtype=scale.dtype,
                                                   device=qdata.device, requires_grad=False)

    def __init__(self, qdata: torch.Tensor, scale: torch.Tensor):
        self.qdata, self.scale = qdata, scale

    def __tensor_flatten__(self):
        return ["qdata", "scale"], None

    @staticmethod
    def __tensor_unflatten__(inner, meta, outer_size, outer_stride):
        return Int8Weight(inner["qdata"], inner["scale"])

    def dequantize(self) -> torch.Tensor:
        return self.qdata.to(self.scale.dtype) * self.scale[:, None]

    def __repr__(self):
        return f"Int8Weight({self.dequantize()!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        aten = torch.ops.aten
        if func in (aten.detach.default, aten.clone.default, aten.alias.default):
            return Int8Weight(func(args[0].qdata), func(args[0].scale))
        if func is aten._to_copy.default:
            return Int8Weight(args[0].qdata, args[0].scale.to(kwargs.get("dtype",
                                                                         args[0].dtype)))

        def dense(t):
            return t.dequantize() if isinstance(t, Int8Weight) else t

        return func(*tree_map(dense, args), **tree_map(dense, kwargs))


def quantize_weight_(layer: nn.Linear) -> None:
    """``layer.weight`` replaced by its int8 tensor subclass (symmetric, per row), frozen."""
    w = layer.weight.detach()
    scale = w.abs().amax(1) / 127
    q = torch.round(w / scale[:, None]).to(torch.int8)
    layer.weight = nn.Parameter(Int8Weight(q, scale), requires_grad=False)


class SubclassWeight(nn.Module):
    """An MLP whose middle ``nn.Linear`` holds an int8 tensor-subclass weight (the class stays
    ``nn.Linear``; ``F.linear`` dequantizes through the subclass)."""

    def __init__(self, d: int = 6, h: int = 8, n: int = 3):
        super().__init__()
        self.inp = nn.Linear(d, h)
        self.mid = nn.Linear(h, h)
        quantize_weight_(self.mid)
        self.head = nn.Linear(h, n)

    def forward(self, x):
        return self.head(torch.relu(self.mid(torch.relu(self.inp(x)))))


class OrthogonalRNN(nn.Module):
    """expRNN (Lezcano-Casado and Martinez-Rubio, ICML 2019, Sec. 3): an ``nn.RNN`` whose
    recurrent matrix is kept orthogonal by a parametrization (the matrix exponential of a
    skew-symmetric one: ``parametrizations.orthogonal(rnn, 'weight_hh_l0')``), a head."""

    def __init__(self, d: int = 4, h: int = 6, n: int = 3):
        super().__init__()
        self.rnn = nn.RNN(d, h, batch_first=True)
        parametrizations.orthogonal(self.rnn, "weight_hh_l0", orthogonal_map="matrix_exp")
        self.head = nn.Linear(h, n)

    def forward(self, x):  # (B, T, D)
        return self.head(self.rnn(x)[0][:, -1])


class WeightNormedAttention(nn.Module):
    """Self-attention whose packed q/k/v projection is weight-normed (Salimans and Kingma,
    NeurIPS 2016) by ``parametrizations.weight_norm(mha, 'in_proj_weight')``, with a Linear
    in and a head."""

    def __init__(self, d: int = 4, e: int = 6, n: int = 3):
        super().__init__()
        self.inp = nn.Linear(d, e)
        self.mha = nn.MultiheadAttention(e, 2, batch_first=True)
        parametrizations.weight_norm(self.mha, "in_proj_weight")
        self.head = nn.Linear(e, n)

    def forward(self, x):  # (B, T, D)
        h = self.inp(x)
        return self.head((h + self.mha(h, h, h, need_weights=False)[0]).mean(1))


class LoRAParametrization(nn.Module):
    """LoRA's update (Hu et al., ICLR 2022, Eq. 3) as a parametrization of a frozen weight:
    ``W + B @ A * (alpha / r)`` (minLoRA's way: the layer stays an ``nn.Linear``)."""

    def __init__(self, n_out: int, n_in: int, r: int = 2, alpha: float = 2.0):
        super().__init__()
        self.lora_a = nn.Parameter(torch.randn(r, n_in) * 0.1)
        self.lora_b = nn.Parameter(torch.randn(n_out, r) * 0.1)
        self.scale = alpha / r

    def forward(self, w):
        return w + self.lora_b @ self.lora_a * self.scale


class LoRAByParametrization(nn.Module):
    """An MLP whose first two Linears are frozen and adapted by LoRA parametrizations."""

    def __init__(self, d: int = 6, h: int = 8, n: int = 3):
        super().__init__()
        self.inp = nn.Linear(d, h)
        self.mid = nn.Linear(h, h)
        self.head = nn.Linear(h, n)
        for layer in (self.inp, self.mid):
            layer.weight.requires_grad_(False)
            parametrize.register_parametrization(layer, "weight",
                                                 LoRAParametrization(*layer.weight.shape))

    def forward(self, x):
        return self.head(torch.relu(self.mid(torch.relu(self.inp(x)))))


# ---------------------------------------------------------------------------------------------
# Weights in products no layer holds
# ---------------------------------------------------------------------------------------------
class RBFNetwork(nn.Module):
    """A radial-basis-function network (Broomhead and Lowe, Complex Systems 1988, Eq. 2.2):
    Gaussian units ``exp(-gamma_k |h - c_k|²)`` around learned centres ``c_k``, the distance
    written by hand (``(h[:, None] - c).pow(2).sum(-1)``), a Linear in and a Linear out."""

    def __init__(self, d: int = 4, k: int = 7, n: int = 3):
        super().__init__()
        self.inp = nn.Linear(d, d)
        self.centres = nn.Parameter(torch.randn(k, d))
        self.log_gamma = nn.Parameter(torch.zeros(k))
        self.head = nn.Linear(k, n)

    def forward(self, x):
        h = self.inp(x)
        d2 = (h[:, None, :] - self.centres[None]).pow(2).sum(-1)  # (B, K)
        return self.head(torch.exp(-self.log_gamma.exp() * d2))


class AdditiveAttention(nn.Module):
    """Additive attention pooling (Bahdanau, Cho and Bengio, ICLR 2015, Eq. 6 / A.1.2):
    scores ``v^T tanh(W h_t)`` with ``v`` a 1-D Parameter on the right of ``@``, a softmax over
    the steps, the weighted sum of the inputs into a head."""

    def __init__(self, d: int = 4, h: int = 6, n: int = 3):
        super().__init__()
        self.key = nn.Linear(d, h)
        self.v = nn.Parameter(torch.randn(h))
        self.head = nn.Linear(d, n)

    def forward(self, x):  # (B, T, D)
        scores = torch.tanh(self.key(x)) @ self.v  # (B, T)
        weights = scores.softmax(-1)
        return self.head((weights[..., None] * x).sum(1))


class DynamicFilterCanvas(nn.Module):
    """A dynamic filter network (Jia et al., NeurIPS 2016, Sec. 3) turned around: per-sample
    1-D kernels generated from the input by a Linear filter a *learned* canvas
    (``F.conv1d(canvas, kernels)``: the weight is the convolution's input, the activation its
    kernel), a head on the filtered canvas."""

    def __init__(self, d: int = 6, c: int = 2, length: int = 10, k: int = 3, n: int = 3):
        super().__init__()
        self.canvas = nn.Parameter(torch.randn(1, c, length))
        self.kgen = nn.Linear(d, c * k)
        self.c, self.k = c, k
        self.head = nn.Linear(length - k + 1, n)

    def forward(self, x):  # (B, D)
        kernels = self.kgen(x).view(x.shape[0], self.c, self.k)  # (B, C, K): B filters
        y = F.conv1d(self.canvas, kernels)  # (1, B, L'): the canvas filtered by each
        return self.head(torch.tanh(y[0]))


class ExpandedBmm(nn.Module):
    """A transition matrix shared by every sample, ``expand`` ed over the batch and applied by
    ``torch.bmm`` (as batched graph and state-space code writes a shared operator), a Linear in
    and a head."""

    def __init__(self, d: int = 4, h: int = 6, n: int = 3):
        super().__init__()
        self.inp = nn.Linear(d, h)
        self.transition = nn.Parameter(torch.randn(h, h) * 0.3)
        self.head = nn.Linear(h, n)

    def forward(self, x):  # (B, T, D)
        h = self.inp(x)
        y = torch.bmm(h, self.transition.expand(h.shape[0], -1, -1))
        return self.head(torch.relu(y).mean(1))


class ToeplitzMixer(nn.Module):
    """A Toeplitz token mixer (Qin et al., ICLR 2023, Sec. 3.1): a (T, T) matrix whose entry
    (i, j) is a learned coefficient of the offset i - j, gathered from ``2T - 1`` coefficients
    by a constant index buffer, applied over the sequence axis; Linears around it."""

    def __init__(self, t: int = 5, d: int = 4, n: int = 3):
        super().__init__()
        self.inp = nn.Linear(d, d)
        self.coef = nn.Parameter(torch.randn(2 * t - 1) * 0.3)
        i = torch.arange(t)
        self.register_buffer("offsets", i[:, None] - i[None, :] + t - 1)
        self.head = nn.Linear(d, n)

    def forward(self, x):  # (B, T, D)
        mix = self.coef[self.offsets]  # (T, T)
        return self.head(torch.relu(mix @ self.inp(x)).mean(1))


class LightConv(nn.Module):
    """LightConv (Wu et al., ICLR 2019, Sec. 3, one head): a depthwise convolution whose
    softmax-normalised kernel is shared by every channel (``F.conv1d`` with ``groups`` =
    channels, the one kernel expanded), between a pointwise Conv1d and a head."""

    def __init__(self, c_in: int = 2, c: int = 4, k: int = 3, n: int = 3):
        super().__init__()
        self.inp = nn.Conv1d(c_in, c, 1)
        self.kernel = nn.Parameter(torch.randn(1, 1, k))
        self.head = nn.Linear(c, n)
        self.c = c

    def forward(self, x):  # (B, C_in, L)
        h = self.inp(x)
        k = self.kernel.softmax(-1).expand(self.c, 1, -1)
        h = F.conv1d(h, k, padding=k.shape[-1] // 2, groups=self.c)
        return self.head(torch.relu(h).mean(-1))


class _ScipyCorrelate(torch.autograd.Function):
    """A 2-D valid cross-correlation of each sample with a filter, computed by scipy on NumPy
    arrays in the forward and the backward (torch's tutorial "Creating Extensions Using
    numpy and scipy", its ``ScipyConv2dFunction``, without the bias)."""

    @staticmethod
    def forward(ctx, x, filt):  # (B, H, W), (kh, kw)
        x_, f_ = x.detach(), filt.detach()
        ctx.save_for_backward(x_, f_)
        out = [correlate2d(xi.numpy(), f_.numpy(), mode="valid") for xi in x_]
        return torch.as_tensor(np.stack(out), dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, f = ctx.saved_tensors
        g = grad.detach()
        gx = [convolve2d(gi.numpy(), f.numpy(), mode="full") for gi in g]
        gf = sum(correlate2d(xi.numpy(), gi.numpy(), mode="valid")
                 for xi, gi in zip(x, g, strict=True))
        return (torch.as_tensor(np.stack(gx), dtype=grad.dtype),
                torch.as_tensor(gf, dtype=grad.dtype))


class NumpyExtension(nn.Module):
    """A learned 3x3 filter applied by scipy inside a custom ``autograd.Function`` (the
    tutorial's ``ScipyConv2d``) to an image a Linear makes from the input, a head."""

    def __init__(self, d: int = 6, side: int = 6, n: int = 3):
        super().__init__()
        self.inp = nn.Linear(d, side * side)
        self.filt = nn.Parameter(torch.randn(3, 3) * 0.3)
        self.head = nn.Linear((side - 2) ** 2, n)
        self.side = side

    def forward(self, x):
        img = torch.relu(self.inp(x)).view(-1, self.side, self.side)
        return self.head(_ScipyCorrelate.apply(img, self.filt).flatten(1))


class LightGCN(nn.Module):
    """LightGCN (He et al., SIGIR 2020, Eq. 3-5): learned user and item embeddings (one
    ``nn.Embedding``'s table) propagated through the normalised user-item adjacency, a sparse
    COO buffer, by ``torch.sparse.mm``, the layers' tables averaged; a pair scored by an MLP on
    ``[u, i, u * i]`` (NCF's head, He et al., WWW 2017) instead of the plain inner product."""

    def __init__(self, n_users: int = 4, n_items: int = 5, d: int = 6, layers: int = 2,
                 sparse: bool = True):
        super().__init__()
        n = n_users + n_items
        self.emb = nn.Embedding(n, d)
        rated = torch.rand(n_users, n_items) < 0.5
        adj = torch.zeros(n, n)
        adj[:n_users, n_users:] = rated.float()
        adj[n_users:, :n_users] = rated.T.float()
        deg = adj.sum(1).clamp(min=1).rsqrt()
        adj = deg[:, None] * adj * deg[None, :]
        self.register_buffer("adj", adj.to_sparse() if sparse else adj)
        self.score = nn.Sequential(nn.Linear(3 * d, 4), nn.ReLU(), nn.Linear(4, 1))
        self.n_users, self.layers = n_users, layers

    def forward(self, pairs):  # (B, 2) int: user, item
        e = self.emb.weight
        tables = [e]
        for _ in range(self.layers):
            e = torch.sparse.mm(self.adj, e) if self.adj.is_sparse else self.adj @ e
            tables.append(e)
        e = torch.stack(tables).mean(0)
        u, i = e[pairs[:, 0]], e[self.n_users + pairs[:, 1]]
        return self.score(torch.cat([u, i, u * i], -1))


# ---------------------------------------------------------------------------------------------
# Calls in other forms
# ---------------------------------------------------------------------------------------------
class Unrolled(nn.Module):
    """A recurrence whose forward is a generator: one state per step, yielded."""

    def __init__(self, h: int, steps: int = 3):
        super().__init__()
        self.cell = nn.Linear(h, h)
        self.steps = steps

    def forward(self, x):
        for _ in range(self.steps):
            x = torch.tanh(self.cell(x))
            yield x


class WithAux(nn.Module):
    """An encoder returning ``(features, aux_logits)``; the caller keeps the features."""

    def __init__(self, d: int, h: int, n: int):
        super().__init__()
        self.body = nn.Linear(d, h)
        self.aux = nn.Linear(h, n)

    def forward(self, x):
        f = torch.relu(self.body(x))
        return f, self.aux(f)


class GeneratorAndTuple(nn.Module):
    """A tuple-returning encoder used for its first element, a generator submodule consumed by
    ``list``, the first and last states into a head."""

    def __init__(self, d: int = 4, h: int = 6, n: int = 3):
        super().__init__()
        self.enc = WithAux(d, h, n)
        self.unrolled = Unrolled(h)
        self.head = nn.Linear(h, n)

    def forward(self, x):
        feats, _ = self.enc(x)
        states = list(self.unrolled(feats))
        return self.head(states[0] + states[-1])


class SimSiam(nn.Module):
    """SimSiam (Chen and He, CVPR 2021, Alg. 1): one encoder on two views, the second under
    ``torch.no_grad()`` (the stop-gradient), a predictor on the first; returns ``p1`` and
    ``z2`` side by side (the negative cosine loss takes them)."""

    def __init__(self, d: int = 6, h: int = 8, p: int = 4):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h))
        self.pred = nn.Sequential(nn.Linear(h, p), nn.ReLU(), nn.Linear(p, h))

    def forward(self, x):
        z1 = self.enc(x)
        with torch.no_grad():
            z2 = self.enc(x.flip(-1))  # the second view
        return torch.cat([self.pred(z1), z2], -1)

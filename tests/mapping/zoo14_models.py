"""The fourteenth zoo's models (``test_zoo14.py``): how a model's weights are built, stored,
transformed and applied in ways the thirteen earlier zoos did not try. Weights reached through
``torch.func.functional_call`` with ``tie_weights`` / ``strict``, a per-sample layer under
``torch.func.vmap`` with unbatched weights, a model built on the meta device then
``to_empty`` + ``load_state_dict(assign=True)``, a shape-changing (low-rank ``A @ B``)
parametrization, convolutions and linears with a BatchNorm folded in by
``torch.nn.utils.fusion``, weight algebra (``W @ W``, ``torch.matrix_power``, ``torch.matrix_exp``
of a skew-symmetric matrix, ``torch.linalg.inv``, a weight in the middle of ``multi_dot``),
``torch.baddbmm`` with ``alpha`` / ``beta``, einsum with an ellipsis and a weight used twice,
``F.bilinear`` with Parameters, a ``ParameterDict`` of masked weights (``torch.where``,
``masked_fill``), a cosine classifier (``F.normalize`` of a weight), ``F.embedding`` of a table's
slice, ``nn.RNN(nonlinearity='relu')`` and a looped ``RNNCell``, a grouped dilated
``ConvTranspose2d`` with ``output_padding``, a strided circular ``Conv1d``, an ESPCN super-
resolution net (``nn.Upsample`` + ``PixelShuffle``), weight norm over the whole tensor
(``dim=None``, both APIs), a forward taking ``**kwargs`` and returning a ``NamedTuple``,
``checkpoint_sequential``, a ``ModuleList`` indexed by an int computed from the input, and
a ``torch.export`` ed program's module. Small, written here (no model library imported);
widths are tiny."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval


# ---------------------------------------------------------------------------------------------
# How the forward reaches the layers
# ---------------------------------------------------------------------------------------------
class FunctionalCallTied(nn.Module):
    """An inner MLP called through ``torch.func.functional_call`` with its own parameters and
    buffers (``tie_weights=True``, ``strict=False``: a wrapper that could swap in others), an
    output head tied to the first layer's transpose by assignment inside ``inner``."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        state = {**dict(self.inner.named_parameters()), **dict(self.inner.named_buffers())}
        h = torch.func.functional_call(self.inner, state, (x,), tie_weights=True, strict=False)
        return self.head(torch.relu(h))


class VmapPerSample(nn.Module):
    """A per-sample function (a layer on one vector, a norm of it) mapped over the batch by
    ``torch.func.vmap`` with the weights unbatched (closed over, ``in_dims`` for the input
    only), as per-sample-gradient and JAX-ported code writes it."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.fc = nn.Linear(d, 8)
        self.head = nn.Linear(8, 3)

    def one(self, v):  # v: (d,)
        h = torch.relu(self.fc(v))
        return h / (h.norm() + 1.0)

    def forward(self, x):
        return self.head(torch.func.vmap(self.one, in_dims=0)(x))


class MetaInit(nn.Module):
    """A model built on the ``meta`` device (no memory), materialised by ``to_empty`` and its
    weights loaded with ``load_state_dict(assign=True)`` (the big-model loading path of
    HuggingFace / torchtitan): the parameters are the state dict's tensors."""

    def __init__(self, d: int = 6):
        super().__init__()
        with torch.device("meta"):
            body = nn.Sequential(nn.Linear(d, 8), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, 3))
        body = body.to_empty(device="cpu")
        ref = nn.Sequential(nn.Linear(d, 8), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, 3))
        body.load_state_dict(ref.state_dict(), assign=True)
        self.body = body

    def forward(self, x):
        return self.body(x)


class IndexedBlock(nn.Module):
    """A ``ModuleList`` indexed by an int computed from each sample (``int(r.mean() > 0)``: a
    data-dependent route, as routed nets write it), the samples taken one at a time."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(d, 8), nn.Linear(d, 8)])
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        rows = [self.blocks[int(r.mean() > 0)](r[None]) for r in x]
        return self.head(torch.relu(torch.cat(rows)))


class Out(NamedTuple):
    logits: torch.Tensor
    features: torch.Tensor


class KwargsForward(nn.Module):
    """A forward taking ``**kwargs`` (options a trainer passes and the model ignores or reads
    with defaults) and returning a ``NamedTuple``; ``checkpoint_sequential`` over its body
    (activation checkpointing in segments, non-reentrant)."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x, **kwargs):
        temperature = kwargs.get("temperature", 2.0)
        if kwargs.get("checkpoint", True):
            h = torch.utils.checkpoint.checkpoint_sequential(self.body, 2, x,
                                                             use_reentrant=False)
        else:
            h = self.body(x)
        return Out(self.head(h) / temperature, h)


class Exported(nn.Module):
    """A small MLP exported by ``torch.export`` and run as ``ExportedProgram.module()`` (an
    ``fx.GraphModule`` whose weights are attributes applied by aten calls), inside a model with
    a head of its own."""

    def __init__(self, d: int = 6):
        super().__init__()
        body = nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh()).eval()
        self.body = torch.export.export(body, (torch.randn(2, d),)).module()
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.body(x))


# ---------------------------------------------------------------------------------------------
# How the weights are stored and transformed
# ---------------------------------------------------------------------------------------------
class LowRank(nn.Module):
    """A parametrization that changes the stored shape: the Linear's weight is ``A @ B``
    (rank 2), stored as two factors by ``right_inverse`` returning a pair (original0,
    original1), as low-rank fine-tuning written with ``register_parametrization`` does."""

    def __init__(self, rank: int = 2):
        super().__init__()
        self.rank = rank

    def forward(self, a, b):
        return a @ b

    def right_inverse(self, w):
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        r = self.rank
        return u[:, :r] * s[:r].sqrt(), s[:r].sqrt()[:, None] * vh[:r]


class LowRankParam(nn.Module):
    """Two Linears, the first's weight parametrized as a rank-2 product."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.fc = nn.Linear(d, 8)
        parametrize.register_parametrization(self.fc, "weight", LowRank(2))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.relu(self.fc(x)))


class FusedBN(nn.Module):
    """Convolutions and a Linear whose BatchNorm was folded in at load
    (``torch.nn.utils.fusion.fuse_conv_bn_eval`` / ``fuse_linear_bn_eval``: a new weight and a
    bias where the conv had none)."""

    def __init__(self):
        super().__init__()
        conv, bn = nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        lin, bn1 = nn.Linear(6, 8), nn.BatchNorm1d(8)
        for b in (bn, bn1):
            b.running_mean.uniform_(-0.3, 0.3)
            b.running_var.uniform_(0.5, 2.0)
            b.weight.data.uniform_(0.5, 1.5)
            b.bias.data.uniform_(-0.2, 0.2)
        self.conv = fuse_conv_bn_eval(conv.eval(), bn.eval())
        self.fc = fuse_linear_bn_eval(lin.eval(), bn1.eval())
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1).flatten(1)
        return self.head(torch.relu(self.fc(h)))


class WeightAlgebra(nn.Module):
    """Weights combined by matrix algebra before they reach an activation: ``W @ W``,
    ``torch.matrix_power``, a rotation ``matrix_exp(S - Sᵀ)``, ``torch.linalg.inv`` of a
    well-conditioned weight, and a weight in the middle of ``multi_dot``; a mapped head."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.w = nn.Parameter(torch.randn(d, d) / d ** 0.5)
        self.s = nn.Parameter(torch.randn(d, d) * 0.2)
        self.m = nn.Parameter(torch.eye(d) + 0.1 * torch.randn(d, d))
        self.mid = nn.Parameter(torch.randn(d, d) / d ** 0.5)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        h = x @ (self.w @ self.w).t() + x @ torch.matrix_power(self.w, 3)
        h = h @ torch.matrix_exp(self.s - self.s.t())
        h = h @ torch.linalg.inv(self.m)
        h = torch.linalg.multi_dot([h, self.mid, h.t()]) @ h / len(h)
        return self.head(torch.tanh(h))


class ScaledProducts(nn.Module):
    """``torch.baddbmm`` with ``alpha`` / ``beta`` (a bias scaled, a product scaled, per head),
    einsum with an ellipsis (``'...i,oi->...o'``) and one weight used twice in one einsum
    (``'bi,oi,po->bp'``: a factorised layer applied as ``W₂·W₁``)."""

    def __init__(self, d: int = 6, heads: int = 2):
        super().__init__()
        self.w = nn.Parameter(torch.randn(heads, d, 4) / d ** 0.5)
        self.b = nn.Parameter(torch.zeros(heads, 1, 4))
        self.e = nn.Parameter(torch.randn(8, heads * 4) / 8 ** 0.5)
        self.w2 = nn.Parameter(torch.randn(8, 8) / 8 ** 0.5)
        self.head = nn.Linear(8, 3)

    def forward(self, x):  # (B, T, d)
        n, t, _ = x.shape
        xh = x[None].expand(self.w.shape[0], n, t, -1).reshape(self.w.shape[0], n * t, -1)
        h = torch.baddbmm(self.b, xh, self.w, beta=2.0, alpha=0.5)  # (H, B*T, 4)
        h = h.reshape(-1, n, t, 4).permute(1, 2, 0, 3).reshape(n, t, -1)
        h = torch.einsum("...i,oi->...o", torch.relu(h), self.e).mean(1)
        h = torch.einsum("bi,oi,po->bp", h, self.w2, self.w2)
        return self.head(torch.tanh(h))


class MaskedParamDict(nn.Module):
    """Weights in an ``nn.ParameterDict`` applied by ``F.linear``: one made 2:4-sparse by
    ``torch.where(mask, W, 0)`` (a bool buffer), one with ``masked_fill`` (a band), and a cosine
    classifier (``F.normalize`` of both the feature and the weight, a learned temperature),
    after a mapped input layer."""

    def __init__(self, d: int = 8):
        super().__init__()
        self.inp = nn.Linear(6, 6)
        self.w = nn.ParameterDict({"a": nn.Parameter(torch.randn(d, 6) / 6 ** 0.5),
                                   "b": nn.Parameter(torch.randn(d, d) / d ** 0.5),
                                   "cls": nn.Parameter(torch.randn(3, d))})
        keep = torch.zeros(d, 6, dtype=torch.bool)
        keep[:, 0::2] = True
        self.register_buffer("keep", keep)
        band = (torch.arange(d)[:, None] - torch.arange(d)[None]).abs() > 2
        self.register_buffer("band", band)
        self.log_t = nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        h = torch.relu(F.linear(torch.relu(self.inp(x)), torch.where(self.keep, self.w["a"], 0.0)))
        h = torch.relu(F.linear(h, self.w["b"].masked_fill(self.band, 0.0)))
        return self.log_t.exp() * F.linear(F.normalize(h, dim=-1),
                                           F.normalize(self.w["cls"], dim=-1))


class BilinearFunctional(nn.Module):
    """``F.bilinear`` of two projections with a Parameter (a bilinear interaction head), beside
    an ``nn.Bilinear`` module."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.p, self.q = nn.Linear(d, 4), nn.Linear(d, 5)
        self.w = nn.Parameter(torch.randn(3, 4, 5) / 4)
        self.bil = nn.Bilinear(4, 5, 3)

    def forward(self, x):
        p, q = torch.tanh(self.p(x)), torch.tanh(self.q(x))
        return F.bilinear(p, q, self.w) + self.bil(p, q)


class EmbeddingSlice(nn.Module):
    """``F.embedding`` of a slice of an ``nn.Embedding``'s table (the first half of the
    features: a Matryoshka embedding read at a smaller width), then a mapped MLP."""

    def __init__(self, vocab: int = 20, d: int = 8):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.fc = nn.Linear(d // 2, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, idx):  # (B, T) integers
        h = F.embedding(idx, self.emb.weight[:, :4]).mean(1)
        return self.head(torch.relu(self.fc(h)))


class WeightNormAll(nn.Module):
    """Weight normalisation over the whole tensor (``dim=None``: one scalar gain), with the
    parametrization API on a Conv and the old hook API on a Linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 6, 3), dim=None)
        self.fc = nn.utils.weight_norm(nn.Linear(6, 8), dim=None)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = F.adaptive_max_pool2d(torch.relu(self.conv(x)), 1).flatten(1)
        return self.head(torch.relu(self.fc(h)))


# ---------------------------------------------------------------------------------------------
# Layers torch has, configured as the earlier zoos did not
# ---------------------------------------------------------------------------------------------
class ReluRNN(nn.Module):
    """An Elman ``nn.RNN(nonlinearity='relu')``, two layers, bidirectional, then an
    ``RNNCell(nonlinearity='relu')`` stepped by hand over the outputs."""

    def __init__(self, d: int = 4, hid: int = 6):
        super().__init__()
        self.rnn = nn.RNN(d, hid, num_layers=2, nonlinearity="relu", batch_first=True,
                          bidirectional=True)
        self.cell = nn.RNNCell(2 * hid, hid, nonlinearity="relu")
        self.head = nn.Linear(hid, 3)

    def forward(self, x):  # (B, T, d)
        out, _ = self.rnn(x)
        h = torch.zeros(len(x), self.cell.hidden_size, dtype=x.dtype)
        for t in range(out.shape[1]):
            h = self.cell(out[:, t], h)
        return self.head(h)


class GroupedTransposed(nn.Module):
    """A grouped, dilated ``ConvTranspose2d`` with stride 2 and ``output_padding=1`` (odd
    output sizes), between ordinary convolutions."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.up = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2,
                                     dilation=2)
        self.out = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        return self.out(torch.relu(self.up(torch.relu(self.stem(x)))))


class CircularStrided(nn.Module):
    """A ``Conv1d`` with ``padding_mode='circular'`` and stride 2 (a periodic signal
    downsampled), a second with reflect padding and dilation, then a Linear."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(3, 6, 5, stride=2, padding=2, padding_mode="circular")
        self.c2 = nn.Conv1d(6, 6, 3, padding=2, dilation=2, padding_mode="reflect")
        self.head = nn.Linear(6, 3)

    def forward(self, x):  # (B, 3, L)
        return self.head(torch.relu(self.c2(torch.relu(self.c1(x)))).mean(-1))


class ESPCN(nn.Module):
    """Super-resolution: a bilinear ``nn.Upsample`` skip beside an ESPCN body (convolutions to
    r² channels, ``PixelShuffle(2)``), summed."""

    def __init__(self):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.c1 = nn.Conv2d(1, 8, 5, padding=2)
        self.c2 = nn.Conv2d(8, 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.refine = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):  # (B, 1, H, W)
        body = self.shuffle(self.c2(torch.tanh(self.c1(x))))
        return self.refine(self.up(x) + body)


class StructuredPruned(nn.Module):
    """``torch.nn.utils.prune`` as channel pruning does it: ``ln_structured`` (whole output
    channels of a Conv by their L2 norm) and ``global_unstructured`` (the smallest weights of
    two Linears together), left attached (``weight_orig`` * ``weight_mask`` by a pre-hook)."""

    def __init__(self):
        super().__init__()
        from torch.nn.utils import prune

        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)
        prune.ln_structured(self.conv, "weight", amount=0.25, n=2, dim=0)
        prune.global_unstructured([(self.fc, "weight"), (self.head, "weight")],
                                  pruning_method=prune.L1Unstructured, amount=0.3)

    def forward(self, x):
        h = F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1).flatten(1)
        return self.head(torch.relu(self.fc(h)))


class _Band(nn.Module):
    def __init__(self, n: int, width: int):
        super().__init__()
        self.register_buffer("mask", ((torch.arange(n)[:, None] - torch.arange(n)[None]).abs()
                                      <= width).float())

    def forward(self, w):
        return w * self.mask


class _RowScale(nn.Module):
    def forward(self, w):
        return w / w.norm(dim=1, keepdim=True).clamp_min(1e-6)


class ChainedParametrizations(nn.Module):
    """Two parametrizations stacked on one weight (a band mask, then rows scaled to unit norm:
    ``parametrizations.weight`` is a list of two), and a parametrized bias."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.inp = nn.Linear(d, 8)
        self.fc = nn.Linear(8, 8)
        parametrize.register_parametrization(self.fc, "weight", _Band(8, 2))
        parametrize.register_parametrization(self.fc, "weight", _RowScale())
        parametrize.register_parametrization(self.fc, "bias", nn.Tanh())
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.relu(self.fc(torch.relu(self.inp(x)))))


class InPlaceOps(nn.Module):
    """In-place operations on layers' outputs: ``relu_``, ``+=`` of another layer's output, a
    ``mul_`` and ``clamp_``, an ``add_`` into the head's input, as memory-frugal code writes
    them."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, 8), nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.fc1(x)
        h.relu_()
        y = self.fc2(h)
        y += h
        y.mul_(0.5).clamp_(-2.0, 2.0)
        return self.head(y.add_(1.0))


class CachedTable(nn.Module):
    """A position-bias table computed by a Linear from fixed coordinates on the first forward
    and kept as an attribute (``self._table``), as code caching a continuous position bias or
    rotary table writes it; later forwards reuse it."""

    def __init__(self, d: int = 6, n: int = 5):
        super().__init__()
        self.pos, self.fc, self.head = nn.Linear(2, d), nn.Linear(d, d), nn.Linear(d, 3)
        self.register_buffer("coords", torch.randn(n, 2))
        self._table: torch.Tensor | None = None

    def forward(self, x):  # (B, n, d)
        if self._table is None:
            self._table = self.pos(self.coords)
        return self.head(torch.relu(self.fc(x) + self._table)).mean(1)

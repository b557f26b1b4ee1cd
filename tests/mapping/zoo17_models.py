"""The seventeenth zoo's models (``test_zoo17.py``): model families at toy size that the sixteen
earlier zoos did not build, chosen for ways weights reach a product that no zoo used. Weights
changed in the forward: an ArcFace head (Deng et al., CVPR 2019) whose cosine logits take an
additive angular margin at the label, MADE's masked Linear (a subclass of ``nn.Linear`` whose
forward multiplies its weight by a mask buffer, or ``prune.custom_from_mask``, as for the eighth
zoo's PixelCNN masks here), wav2vec 2.0's positional grouped convolution under the old
``weight_norm`` hook over the kernel axis, a DINO head whose weight-normed last layer has its
magnitude ``g`` frozen. Attention: DeBERTa's disentangled content-to-position and
position-to-content terms (a relative-position embedding projected by the attention's own Linear
layers, the scores gathered by a relative-distance index), CvT's convolutional projections
(depthwise strided convolutions before the Q / K / V Linear layers), MaxViT's block and grid
attention (window partitions by reshape / permute), neighbourhood attention (keys and values
gathered by ``F.unfold``), a Transformer-XL layer reading a memory of the previous segment, slot
attention (a softmax over the slots, a shared ``GRUCell`` updating each). Vision, points and
time: GhostNet's ghost module (a primary convolution and a cheap depthwise one, concatenated and
sliced), EfficientDet's BiFPN node (fast normalised fusion by learned non-negative weights),
PointNet++'s set abstraction (farthest-point sampling, ball query and ``gather``), a closed-form
continuous-time (CfC) cell stepped over irregular time gaps. Small, written here from the
papers' descriptions (no model library imported); widths are tiny."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune


# ---------------------------------------------------------------------------------------------
# Weights changed in the forward
# ---------------------------------------------------------------------------------------------
class ArcFace(nn.Module):
    """ArcFace (Deng et al., CVPR 2019, Eq. 3): an embedding net, its output and the class
    weights L2-normalised and multiplied (``F.linear(F.normalize(x), F.normalize(W))``), the
    label's logit ``cos(theta + m)``, all scaled by ``s``. The label is the second input."""

    def __init__(self, d: int = 6, e: int = 8, classes: int = 5, s: float = 8.0,
                 m: float = 0.3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, 12), nn.PReLU(), nn.Linear(12, e))
        self.weight = nn.Parameter(torch.randn(classes, e))
        self.s, self.m = s, m

    def forward(self, x, label):
        cos = F.linear(F.normalize(self.body(x)), F.normalize(self.weight))
        theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
        target = torch.cos(theta + self.m)
        onehot = F.one_hot(label, cos.shape[1]).to(cos.dtype)
        return self.s * (onehot * target + (1 - onehot) * cos)


class MaskedLinear(nn.Linear):
    """MADE's masked layer: an ``nn.Linear`` whose forward applies ``mask * weight``."""

    def __init__(self, n_in: int, n_out: int, mask: torch.Tensor):
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.linear(x, self.mask * self.weight, self.bias)


def _masked(cls, n_in: int, n_out: int, mask: torch.Tensor, subclass: bool, **kw):
    """A layer whose weight is multiplied by a fixed 0/1 ``mask``: the masked subclass
    (``subclass``) or the plain layer with ``torch.nn.utils.prune.custom_from_mask``."""
    if subclass:
        return MaskedLinear(n_in, n_out, mask)
    layer = cls(n_in, n_out, **kw)
    prune.custom_from_mask(layer, "weight", mask)
    return layer


class MADE(nn.Module):
    """MADE (Germain et al., ICML 2015, Sec. 4): autoregressive masks from degrees (input ``d``
    gets degree ``d``, hidden units degrees in ``[1, D-1]``), two hidden layers, the output a
    mean per input dimension that depends on the dimensions before it only. The masks applied
    by a masked ``nn.Linear`` subclass (``subclass``) or by ``prune.custom_from_mask``."""

    def __init__(self, d: int = 5, h: int = 12, subclass: bool = False):
        super().__init__()
        deg_in = torch.arange(1, d + 1)
        deg_h1 = torch.arange(h) % (d - 1) + 1
        deg_h2 = (torch.arange(h) + 1) % (d - 1) + 1
        masks = ((deg_h1[:, None] >= deg_in[None]), (deg_h2[:, None] >= deg_h1[None]),
                 (deg_in[:, None] > deg_h2[None]))
        self.l1, self.l2, self.l3 = (
            _masked(nn.Linear, n_in, n_out, m.float(), subclass)
            for n_in, n_out, m in ((d, h, masks[0]), (h, h, masks[1]), (h, d, masks[2])))

    def forward(self, x):
        return self.l3(torch.relu(self.l2(torch.relu(self.l1(x)))))


class Wav2VecPosConv(nn.Module):
    """wav2vec 2.0's relative positional embedding (Baevski et al., NeurIPS 2020, Sec. 2; fairseq
    ``pos_conv``): a grouped ``Conv1d`` over time under the old ``torch.nn.utils.weight_norm``
    hook with ``dim=2`` (a norm per kernel tap), even kernel trimmed by one, GELU, added to the
    features, LayerNorm, a Linear head."""

    def __init__(self, d: int = 8, k: int = 4, groups: int = 2):
        super().__init__()
        self.proj = nn.Linear(5, d)
        conv = nn.Conv1d(d, d, k, padding=k // 2, groups=groups)
        self.pos_conv = nn.utils.weight_norm(conv, name="weight", dim=2)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 3)

    def forward(self, x):  # (B, T, 5)
        h = self.proj(x)
        p = self.pos_conv(h.transpose(1, 2))[..., :-1]
        h = self.norm(h + F.gelu(p).transpose(1, 2))
        return self.head(h.mean(1))


class DINOHead(nn.Module):
    """DINO's projection head (Caron et al., ICCV 2021, Sec. 3.1 and its code): a 3-layer MLP,
    a bottleneck L2-normalised, the last layer weight-normalised without bias and its magnitude
    ``g`` fixed at 1 (``requires_grad = False``)."""

    def __init__(self, d: int = 6, h: int = 12, bottleneck: int = 4, out: int = 10):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Linear(h, h), nn.GELU(),
                                 nn.Linear(h, bottleneck))
        last = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck, out, bias=False))
        last.parametrizations.weight.original0.data.fill_(1.0)
        last.parametrizations.weight.original0.requires_grad = False
        self.last_layer = last

    def forward(self, x):
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


class PixelCNN(nn.Module):
    """PixelCNN's masked convolutions (van den Oord et al., ICML 2016, "Pixel recurrent neural
    networks", Sec. 3.4 and Fig. 2): a 7x7 type-A mask (the centre pixel and those after it in
    raster order cut) then 3x3 type-B masks (the centre kept) in residual blocks, 1x1 output
    convolutions to per-pixel logits; the masks applied with ``prune.custom_from_mask``."""

    def __init__(self, c: int = 6, levels: int = 4):
        super().__init__()

        def conv(c_in, c_out, k, kind):
            mask = torch.ones(c_out, c_in, k, k)
            mask[:, :, k // 2, k // 2 + (kind == "B"):] = 0
            mask[:, :, k // 2 + 1:] = 0
            layer = nn.Conv2d(c_in, c_out, k, padding=k // 2)
            prune.custom_from_mask(layer, "weight", mask)
            return layer

        self.inp = conv(1, 2 * c, 7, "A")
        self.blocks = nn.ModuleList([nn.Sequential(nn.ReLU(), nn.Conv2d(2 * c, c, 1), nn.ReLU(),
                                                   conv(c, c, 3, "B"), nn.ReLU(),
                                                   nn.Conv2d(c, 2 * c, 1)) for _ in range(2)])
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(2 * c, c, 1), nn.ReLU(),
                                 nn.Conv2d(c, levels, 1))

    def forward(self, x):  # (B, 1, H, W)
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


# ---------------------------------------------------------------------------------------------
# Attention variants
# ---------------------------------------------------------------------------------------------
class DeBERTaAttention(nn.Module):
    """DeBERTa's disentangled attention (He et al., ICLR 2021, Eq. 4-6): content-to-content,
    content-to-position (the query against the keys of a relative-position embedding table,
    projected by the same key Linear) and position-to-content (the position queries against the
    keys) terms, each gathered at the clamped relative distance ``delta(i, j)`` by
    ``torch.gather``, scaled by ``1 / sqrt(3 d)``."""

    def __init__(self, d: int = 8, heads: int = 2, k: int = 3):
        super().__init__()
        self.h, self.hd, self.k = heads, d // heads, k
        self.emb = nn.Linear(5, d)
        self.rel = nn.Embedding(2 * k, d)
        self.q, self.kp, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.head = nn.Linear(d, 3)

    def _heads(self, t):  # (..., L, d) -> (..., H, L, hd)
        return t.unflatten(-1, (self.h, self.hd)).transpose(-3, -2)

    def forward(self, x):  # (B, T, 5)
        h = self.emb(x)
        bs, length, d = h.shape
        q, k, v = self._heads(self.q(h)), self._heads(self.kp(h)), self._heads(self.v(h))
        pos = torch.arange(length, device=h.device)
        delta = (pos[:, None] - pos[None] + self.k).clamp(0, 2 * self.k - 1)  # (L, L)
        r = self.rel.weight  # (2k, d)
        qr, kr = self._heads(self.q(r)), self._heads(self.kp(r))  # (H, 2k, hd)
        c2c = q @ k.transpose(-1, -2)
        c2p = torch.gather(q @ kr.transpose(-1, -2), -1,
                           delta.expand(bs, self.h, length, length))
        p2c = torch.gather(k @ qr.transpose(-1, -2), -1,
                           delta.expand(bs, self.h, length, length)).transpose(-1, -2)
        att = ((c2c + c2p + p2c) / math.sqrt(3 * self.hd)).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(bs, length, d)
        return self.head((h + self.o(y)).mean(1))


class CvTAttention(nn.Module):
    """CvT's convolutional token projection (Wu et al., ICCV 2021, Sec. 3.2): the token map
    through a depthwise 3x3 conv + BatchNorm per Q / K / V (stride 1 for Q, 2 for K and V)
    before the Q / K / V Linear layers, then multi-head attention over the shorter K / V."""

    def __init__(self, c: int = 8, heads: int = 2):
        super().__init__()
        self.h = heads
        self.stem = nn.Conv2d(3, c, 3, stride=2, padding=1)
        self.dw = nn.ModuleList()
        for stride in (1, 2, 2):
            self.dw.append(nn.Sequential(nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False),
                                         nn.BatchNorm2d(c)))
        for m in self.dw:
            m[1].running_mean.uniform_(-0.2, 0.2)
            m[1].running_var.uniform_(0.5, 1.5)
        self.q, self.k, self.v = nn.Linear(c, c), nn.Linear(c, c), nn.Linear(c, c)
        self.o = nn.Linear(c, c)
        self.head = nn.Linear(c, 3)

    def forward(self, x):  # (B, 3, H, W)
        f = self.stem(x)
        bs, c = f.shape[:2]

        def tokens(t):
            return t.flatten(2).transpose(1, 2).unflatten(-1, (self.h, c // self.h)).transpose(1, 2)

        q = tokens(self.q(self.dw[0](f).flatten(2).transpose(1, 2)).transpose(1, 2))
        k = tokens(self.k(self.dw[1](f).flatten(2).transpose(1, 2)).transpose(1, 2))
        v = tokens(self.v(self.dw[2](f).flatten(2).transpose(1, 2)).transpose(1, 2))
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        return self.head((f.flatten(2).transpose(1, 2) + self.o(y)).mean(1))


class MaxViTBlock(nn.Module):
    """MaxViT's multi-axis attention (Tu et al., ECCV 2022, Sec. 3.2): block attention (local
    ``P x P`` windows) then grid attention (a ``G x G`` grid of pixels strided over the whole
    map), each a window partition by ``view`` / ``permute``, pre-norm attention and an MLP, with
    the window reversed by the inverse permutation."""

    def __init__(self, c: int = 8, heads: int = 2, p: int = 2):
        super().__init__()
        self.p = p
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.n1, self.n2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.block_att = nn.MultiheadAttention(c, heads, batch_first=True)
        self.grid_att = nn.MultiheadAttention(c, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(c), nn.Linear(c, 2 * c), nn.GELU(),
                                 nn.Linear(2 * c, c))
        self.head = nn.Linear(c, 3)

    def _attend(self, x, att, norm, grid: bool):  # x (B, H, W, C)
        bs, hh, ww, c = x.shape
        p = self.p
        if grid:  # (B, P, H/P, P, W/P, C): pixel (i, j) of every window together
            w = x.view(bs, p, hh // p, p, ww // p, c).permute(0, 2, 4, 1, 3, 5)
        else:
            w = x.view(bs, hh // p, p, ww // p, p, c).permute(0, 1, 3, 2, 4, 5)
        shape = w.shape
        w = w.reshape(-1, p * p, c)
        n = norm(w)
        w = w + att(n, n, n, need_weights=False)[0]
        w = w.view(shape)
        if grid:
            return w.permute(0, 3, 1, 4, 2, 5).reshape(bs, hh, ww, c)
        return w.permute(0, 1, 3, 2, 4, 5).reshape(bs, hh, ww, c)

    def forward(self, x):  # (B, 3, H, W), H and W multiples of p * p
        f = self.stem(x).permute(0, 2, 3, 1)
        f = self._attend(f, self.block_att, self.n1, grid=False)
        f = self._attend(f, self.grid_att, self.n2, grid=True)
        f = f + self.mlp(f)
        return self.head(f.mean((1, 2)))


class NeighborhoodAttention(nn.Module):
    """Neighbourhood attention (Hassani et al., CVPR 2023, Eq. 2) written with ``F.unfold``:
    each pixel's query attends to the ``k x k`` keys and values around it (zero-padded, the
    padding masked out), with a learned relative-position bias per head and offset."""

    def __init__(self, c: int = 8, heads: int = 2, k: int = 3):
        super().__init__()
        self.h, self.k = heads, k
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.qkv = nn.Linear(c, 3 * c)
        self.rpb = nn.Parameter(0.1 * torch.randn(heads, k * k))
        self.o = nn.Linear(c, c)
        self.head = nn.Linear(c, 3)

    def forward(self, x):  # (B, 3, H, W)
        f = self.stem(x)
        bs, c, hh, ww = f.shape
        hd, kk = c // self.h, self.k * self.k
        q, k, v = self.qkv(f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).chunk(3, 1)
        ones = torch.ones(1, 1, hh, ww, dtype=f.dtype)
        valid = F.unfold(ones, self.k, padding=self.k // 2).view(1, 1, kk, hh * ww, 1)

        def near(t):  # (B, C, H, W) -> (B, heads, k*k, H*W, hd)
            u = F.unfold(t, self.k, padding=self.k // 2).view(bs, self.h, hd, kk, hh * ww)
            return u.permute(0, 1, 3, 4, 2)

        qh = q.reshape(bs, self.h, hd, hh * ww).transpose(-1, -2)  # (B, heads, HW, hd)
        kn, vn = near(k), near(v)
        scores = (kn * qh[:, :, None]).sum(-1, keepdim=True) * hd ** -0.5
        scores = scores + self.rpb[None, :, :, None, None]
        scores = scores.masked_fill(valid == 0, float("-inf"))
        att = scores.softmax(2)
        y = (att * vn).sum(2)  # (B, heads, HW, hd)
        y = y.transpose(-1, -2).reshape(bs, c, hh * ww).transpose(1, 2)
        return self.head((f.flatten(2).transpose(1, 2) + self.o(y)).mean(1))


class TransformerXL(nn.Module):
    """Transformer-XL's segment-level recurrence (Dai et al., ACL 2019, Sec. 3.2): a segment's
    hidden states are kept, detached, as a memory the next segment's keys and values also read
    (``cat([mem, h])``), the queries from the current segment only, with a causal mask over the
    concatenation; the forward runs two segments in turn and returns the second's output."""

    def __init__(self, d: int = 8, heads: int = 2):
        super().__init__()
        self.h = heads
        self.emb = nn.Linear(4, d)
        self.q, self.kv = nn.Linear(d, d), nn.Linear(d, 2 * d)
        self.o = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))
        self.head = nn.Linear(d, 3)

    def _layer(self, h, mem):
        bs, length, d = h.shape
        ctx = h if mem is None else torch.cat([mem, h], 1)
        m = ctx.shape[1] - length
        q = self.q(h).view(bs, length, self.h, -1).transpose(1, 2)
        k, v = (t.view(bs, ctx.shape[1], self.h, -1).transpose(1, 2)
                for t in self.kv(ctx).chunk(2, -1))
        causal = torch.ones(length, ctx.shape[1], dtype=torch.bool).tril(m)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=causal)
        h = self.norm(h + self.o(y.transpose(1, 2).reshape(bs, length, d)))
        return h + self.ff(h)

    def forward(self, seg1, seg2):  # two consecutive segments (B, T, 4)
        mem = self._layer(self.emb(seg1), None).detach()
        return self.head(self._layer(self.emb(seg2), mem).mean(1))


class SlotAttention(nn.Module):
    """Slot attention (Locatello et al., NeurIPS 2020, Algorithm 1): ``k`` slots initialised
    from a learned mean (plus learned-scale noise in training only), three iterations of
    attention normalised over the *slots* (the softmax's competition axis) then over the
    inputs (a weighted mean), each slot updated by a shared ``GRUCell`` and a residual MLP; the
    slots pooled into a classifier."""

    def __init__(self, d_in: int = 5, d: int = 8, slots: int = 3, iters: int = 3):
        super().__init__()
        self.k, self.iters, self.d = slots, iters, d
        self.enc = nn.Sequential(nn.Linear(d_in, d), nn.ReLU(), nn.Linear(d, d))
        self.norm_in, self.norm_slot, self.norm_mlp = nn.LayerNorm(d), nn.LayerNorm(d), \
            nn.LayerNorm(d)
        self.mu = nn.Parameter(0.5 * torch.randn(1, 1, d))
        self.log_sigma = nn.Parameter(torch.full((1, 1, d), -1.0))
        self.q, self.kv = nn.Linear(d, d, bias=False), nn.Linear(d, 2 * d, bias=False)
        self.gru = nn.GRUCell(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))
        self.head = nn.Linear(d, 3)

    def forward(self, x):  # (B, N, d_in) a set of inputs
        bs = x.shape[0]
        inputs = self.norm_in(self.enc(x))
        k, v = self.kv(inputs).chunk(2, -1)
        slots = self.mu.expand(bs, self.k, -1)
        if self.training:
            slots = slots + self.log_sigma.exp() * torch.randn_like(slots)
        for _ in range(self.iters):
            prev = slots
            q = self.q(self.norm_slot(slots))
            att = torch.einsum("bnd,bkd->bnk", k, q).mul(self.d ** -0.5).softmax(-1) + 1e-8
            att = att / att.sum(1, keepdim=True)  # a weighted mean over the inputs
            updates = torch.einsum("bnk,bnd->bkd", att, v)
            slots = self.gru(updates.reshape(-1, self.d), prev.reshape(-1, self.d))
            slots = slots.view(bs, self.k, self.d)
            slots = slots + self.mlp(self.norm_mlp(slots))
        return self.head(slots.mean(1))


# ---------------------------------------------------------------------------------------------
# Vision, points and time
# ---------------------------------------------------------------------------------------------
class GhostModule(nn.Module):
    """GhostNet's ghost module (Han et al., CVPR 2020, Sec. 3.1, Fig. 2b): a primary 1x1
    convolution makes ``m`` intrinsic maps, a cheap depthwise 3x3 convolution makes ``m`` ghost
    maps from them, the two concatenated and sliced to the output width."""

    def __init__(self, c_in: int, c_out: int, relu: bool = True):
        super().__init__()
        m = math.ceil(c_out / 2)
        self.c_out = c_out
        self.primary = nn.Sequential(nn.Conv2d(c_in, m, 1, bias=False), nn.BatchNorm2d(m),
                                     nn.ReLU() if relu else nn.Identity())
        self.cheap = nn.Sequential(nn.Conv2d(m, m, 3, padding=1, groups=m, bias=False),
                                   nn.BatchNorm2d(m), nn.ReLU() if relu else nn.Identity())

    def forward(self, x):
        y = self.primary(x)
        return torch.cat([y, self.cheap(y)], 1)[:, : self.c_out]


class GhostNet(nn.Module):
    """A ghost bottleneck (GhostNet, Fig. 3): a stem, ghost module expanding, a strided
    depthwise convolution, ghost module projecting (no ReLU), a shortcut of depthwise + 1x1."""

    def __init__(self, c: int = 6):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.g1 = GhostModule(c, 2 * c + 1)
        self.dw = nn.Conv2d(2 * c + 1, 2 * c + 1, 3, 2, 1, groups=2 * c + 1)
        self.g2 = GhostModule(2 * c + 1, c + 3, relu=False)
        self.short = nn.Sequential(nn.Conv2d(c, c, 3, 2, 1, groups=c), nn.Conv2d(c, c + 3, 1))
        self.head = nn.Linear(c + 3, 3)

    def forward(self, x):
        f = F.relu(self.stem(x))
        y = self.g2(self.dw(self.g1(f))) + self.short(f)
        return self.head(y.mean((2, 3)))


class BiFPNNode(nn.Module):
    """EfficientDet's BiFPN (Tan et al., CVPR 2020, Sec. 3.3, Eq. 2-4): a top-down node fusing a
    level with the upsampled coarser level by fast normalised fusion (learned weights made
    non-negative by ReLU, divided by their sum + eps), a depthwise-separable conv; the bottom-up
    node fuses three inputs the same way."""

    def __init__(self, c: int = 6):
        super().__init__()
        self.p3, self.p4 = nn.Conv2d(3, c, 3, padding=1), nn.Conv2d(3, c, 3, stride=2, padding=1)
        self.w_td = nn.Parameter(torch.tensor([1.0, 0.7]))
        self.w_out = nn.Parameter(torch.tensor([0.8, 1.2, -0.3]))  # one clamped to 0 by ReLU

        def sep():
            return nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=c), nn.Conv2d(c, c, 1),
                                 nn.ReLU())

        self.conv_td, self.conv_out = sep(), sep()
        self.down = nn.MaxPool2d(2)
        self.head = nn.Linear(2 * c, 3)

    @staticmethod
    def _fuse(w, xs):
        w = F.relu(w)
        w = w / (w.sum() + 1e-4)
        return sum(wi * xi for wi, xi in zip(w, xs, strict=True))

    def forward(self, x):
        p3, p4 = self.p3(x), self.p4(x)
        p3_td = self.conv_td(self._fuse(self.w_td, [p3, F.interpolate(p4, scale_factor=2.0)]))
        p4_out = self.conv_out(self._fuse(self.w_out, [p4, self.down(p3_td), self.down(p3)]))
        return self.head(torch.cat([p3_td.mean((2, 3)), p4_out.mean((2, 3))], 1))


def _farthest_points(xyz: torch.Tensor, n: int) -> torch.Tensor:
    """Farthest-point sampling (deterministic, from point 0): ``(B, n)`` indices."""
    bs, count, _ = xyz.shape
    idx = torch.zeros(bs, n, dtype=torch.long)
    dist = torch.full((bs, count), float("inf"), dtype=xyz.dtype)
    far = torch.zeros(bs, dtype=torch.long)
    for i in range(n):
        idx[:, i] = far
        centre = xyz[torch.arange(bs), far][:, None]
        dist = torch.minimum(dist, ((xyz - centre) ** 2).sum(-1))
        far = dist.argmax(-1)
    return idx


class PointNet2SA(nn.Module):
    """PointNet++'s set abstraction (Qi et al., NeurIPS 2017, Sec. 3.2): centroids by
    farthest-point sampling, for each the ``k`` nearest points within a radius (ball query, the
    nearest point repeated where fewer fall inside), their coordinates relative to the centroid
    and features gathered by index, a shared MLP (1x1 ``Conv2d`` + BatchNorm + ReLU) and max
    pooling per group; a second, global abstraction and a classifier."""

    def __init__(self, f: int = 2, npoint: int = 6, k: int = 4, radius: float = 0.8):
        super().__init__()
        self.npoint, self.k, self.radius = npoint, k, radius
        self.mlp1 = nn.Sequential(nn.Conv2d(3 + f, 8, 1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 12, 1), nn.ReLU())
        self.mlp2 = nn.Sequential(nn.Conv1d(3 + 12, 16, 1), nn.ReLU())
        self.head = nn.Linear(16, 3)

    def forward(self, xyz, feats):  # (B, N, 3), (B, N, f)
        bs = xyz.shape[0]
        cidx = _farthest_points(xyz, self.npoint)
        centres = torch.gather(xyz, 1, cidx[..., None].expand(-1, -1, 3))  # (B, S, 3)
        d2 = torch.cdist(centres, xyz) ** 2  # (B, S, N)
        d2 = d2.masked_fill(d2 > self.radius ** 2, float("inf"))
        near = d2.topk(self.k, -1, largest=False)
        gidx = torch.where(torch.isinf(near.values), near.indices[..., :1], near.indices)
        flat = gidx.reshape(bs, -1, 1)
        g_xyz = torch.gather(xyz, 1, flat.expand(-1, -1, 3)).view(bs, self.npoint, self.k, 3)
        g_f = torch.gather(feats, 1, flat.expand(-1, -1, feats.shape[-1]))
        g_f = g_f.view(bs, self.npoint, self.k, -1)
        grouped = torch.cat([g_xyz - centres[:, :, None], g_f], -1).permute(0, 3, 1, 2)
        local = self.mlp1(grouped).amax(-1)  # (B, 12, S)
        glob = self.mlp2(torch.cat([centres.transpose(1, 2), local], 1)).amax(-1)
        return self.head(glob)


class CfC(nn.Module):
    """A closed-form continuous-time cell (Hasani et al., Nature Machine Intelligence 2022,
    Eq. 10, in the authors' ``ncps`` form): a backbone Linear + LeCun tanh on ``[x, h]``, heads
    ``g`` and ``h`` and a time gate ``sigma(-t_a t + t_b)`` from two more Linear layers, the state
    ``g (1 - gate) + h gate`` at the elapsed time ``t`` of each step (irregular gaps, the second
    input), stepped over the sequence."""

    def __init__(self, d: int = 4, hidden: int = 6, backbone: int = 8):
        super().__init__()
        self.hidden = hidden
        self.backbone = nn.Linear(d + hidden, backbone)
        self.ff1, self.ff2 = nn.Linear(backbone, hidden), nn.Linear(backbone, hidden)
        self.ta, self.tb = nn.Linear(backbone, hidden), nn.Linear(backbone, hidden)
        self.head = nn.Linear(hidden, 3)

    def forward(self, x, ts):  # (B, T, d), (B, T) elapsed times
        h = x.new_zeros(x.shape[0], self.hidden)
        for t in range(x.shape[1]):
            z = 1.7159 * torch.tanh(0.666 * self.backbone(torch.cat([x[:, t], h], -1)))
            g, hh = torch.tanh(self.ff1(z)), torch.tanh(self.ff2(z))
            gate = torch.sigmoid(-self.ta(z) * ts[:, t, None] + self.tb(z))
            h = g * (1 - gate) + gate * hh
        return self.head(h)

"""The twelfth zoo's models (``test_zoo12.py``): weights and control flow the eleven earlier
zoos did not try. Greedy decoding in the forward (an ``nn.TransformerEncoder`` +
``nn.TransformerDecoder`` re-run on the growing target; a hand-written decoder with a KV cache
held in a list), rotary embeddings applied by complex multiplication, multi-query attention,
mixture-of-depths routing and token merging (tokens picked, gathered and scattered back by an
index computed from the input), PixelUnshuffle / PixelShuffle super-resolution with PReLU,
sampling by ``F.grid_sample`` (deformable offsets, a spatial transformer), coordinate channels
built in the forward, involution (kernels generated per pixel, applied with ``unfold``), FiLM
on a second input, SegNet's max-unpooling, LocalResponseNorm / GLU / Mish / SELU / CELU /
AdaptiveMaxPool, a ``Sequential`` built from an ``OrderedDict`` beside ``register_parameter`` /
``register_buffer`` weights, products torch spells in less common ways
(``torch.linalg.matmul``, ``Tensor.addmm``, ``torch.linalg.multi_dot``, ``torch.addmv``), a
static hypernetwork (a mapped Linear generating a conv kernel from a learned code), a complex
``nn.Linear`` and a conv's weight shared with a Linear by ``.view``. Small, written here from the
papers' descriptions (no model library imported); widths are tiny."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .zoo11_models import mlp


# ---------------------------------------------------------------------------------------------
# Decoding in the forward
# ---------------------------------------------------------------------------------------------
def _neg_inf_mask(pad: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A float key-padding mask: -inf where ``pad`` (True) is, 0 elsewhere."""
    return torch.zeros(pad.shape, dtype=dtype).masked_fill(pad, float("-inf"))


class Seq2SeqGreedy(nn.Module):
    """An encoder-decoder transformer (Vaswani et al., NeurIPS 2017) decoding greedily in its
    forward: ``nn.TransformerEncoder`` on the source (a key-padding mask from token 0),
    ``nn.TransformerDecoder`` re-run on the growing target with
    ``nn.Transformer.generate_square_subsequent_mask`` and the memory's padding mask, the argmax
    token appended each step. Returns the logits of every step (B, steps, vocab)."""

    def __init__(self, vocab: int = 10, d: int = 8, steps: int = 3):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(1, 8, d) * 0.1)
        enc = nn.TransformerEncoderLayer(d, 2, 16, dropout=0.0, batch_first=True)
        dec = nn.TransformerDecoderLayer(d, 2, 16, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(enc, 1, enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(dec, 1)
        self.head = nn.Linear(d, vocab)
        self.steps = steps

    def forward(self, src):  # (B, S) token ids, 0 = padding
        dtype = self.pos.dtype
        s = src.shape[1]
        kpm = _neg_inf_mask(src == 0, dtype)
        memory = self.encoder(self.emb(src) + self.pos[:, :s], src_key_padding_mask=kpm)
        tgt = torch.ones(src.shape[0], 1, dtype=torch.long)  # BOS = 1
        logits = []
        for _ in range(self.steps):
            t = tgt.shape[1]
            mask = nn.Transformer.generate_square_subsequent_mask(t, dtype=dtype)
            h = self.decoder(self.emb(tgt) + self.pos[:, :t], memory, tgt_mask=mask,
                             memory_key_padding_mask=kpm, tgt_is_causal=True)
            step = self.head(h[:, -1])
            logits.append(step)
            tgt = torch.cat([tgt, step.argmax(-1, keepdim=True)], dim=1)
        return torch.stack(logits, dim=1)


class CachedBlock(nn.Module):
    """A pre-norm decoder block whose attention appends this call's keys and values to a cache
    (a list ``[k, v]`` the caller holds) and attends over all of it."""

    def __init__(self, d: int = 8, heads: int = 2):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ff = mlp(d, 16, d, act=nn.GELU)
        self.heads = heads

    def forward(self, x, cache: list[torch.Tensor]):
        b, t, d = x.shape
        hd = d // self.heads
        h = self.ln1(x)

        def split(z):
            return z.view(b, -1, self.heads, hd).transpose(1, 2)

        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        if cache:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        cache[:] = [k, v]
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
        n = k.shape[2]
        causal = torch.ones(t, n, dtype=torch.bool).tril(n - t)  # a query sees its past only
        att = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.ff(self.ln2(x))


class KVCacheLM(nn.Module):
    """A decoder-only LM generating greedily in its forward: the prompt once, then one token a
    step through a KV cache held as a Python list of ``[k, v]`` per block."""

    def __init__(self, vocab: int = 12, d: int = 8, n_blocks: int = 2, steps: int = 3):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(1, 16, d) * 0.1)
        self.blocks = nn.ModuleList(CachedBlock(d) for _ in range(n_blocks))
        self.head = nn.Linear(d, vocab)
        self.steps = steps

    def forward(self, ids):  # (B, T) prompt
        caches: list[list[torch.Tensor]] = [[] for _ in self.blocks]
        x, start, logits = ids, 0, []
        for _ in range(self.steps):
            h = self.emb(x) + self.pos[:, start:start + x.shape[1]]
            for block, cache in zip(self.blocks, caches, strict=True):
                h = block(h, cache)
            step = self.head(h[:, -1])
            logits.append(step)
            start += x.shape[1]
            x = step.argmax(-1, keepdim=True)  # only the new token: the cache holds the rest
        return torch.stack(logits, dim=1)

    def full_recompute(self, ids):
        """The same greedy decoding without a cache (every step re-runs the whole sequence):
        what the cached forward must equal."""
        logits = []
        for _ in range(self.steps):
            h = self.emb(ids) + self.pos[:, :ids.shape[1]]
            for block in self.blocks:
                h = block(h, [])
            step = self.head(h[:, -1])
            logits.append(step)
            ids = torch.cat([ids, step.argmax(-1, keepdim=True)], dim=1)
        return torch.stack(logits, dim=1)


# ---------------------------------------------------------------------------------------------
# Attention variants
# ---------------------------------------------------------------------------------------------
class ComplexRoPE(nn.Module):
    """Rotary position embeddings as Meta's LLaMA code applies them (Su et al., RoFormer,
    2021): q and k viewed as complex pairs (``torch.view_as_complex``) multiplied by
    ``torch.polar(1, t·θ)`` computed in the forward from a 1-D frequency buffer, then causal
    ``F.scaled_dot_product_attention``."""

    def __init__(self, d: int = 8, heads: int = 2):
        super().__init__()
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(d, d, bias=False) for _ in range(4))
        hd = d // heads
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, hd, 2) / hd),
                             persistent=False)
        self.heads = heads
        self.head = nn.Linear(d, 3)

    def _rotate(self, x, freqs_cis):  # x (B, T, H, hd)
        xc = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous())
        return torch.view_as_real(xc * freqs_cis[None, :, None]).flatten(3).type_as(x)

    def forward(self, x):  # (B, T, d)
        b, t, d = x.shape
        hd = d // self.heads
        angles = torch.outer(torch.arange(t, dtype=self.inv_freq.dtype), self.inv_freq)
        freqs_cis = torch.polar(torch.ones_like(angles), angles)
        q = self._rotate(self.wq(x).view(b, t, self.heads, hd), freqs_cis)
        k = self._rotate(self.wk(x).view(b, t, self.heads, hd), freqs_cis)
        v = self.wv(x).view(b, t, self.heads, hd)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                           v.transpose(1, 2), is_causal=True)
        return self.head(x + self.wo(o.transpose(1, 2).reshape(b, t, d)))


class MultiQuery(nn.Module):
    """Multi-query attention (Shazeer, 2019, "Fast Transformer Decoding"): per-head queries,
    one key and one value head (a Linear to 2·head_dim) broadcast to every head by ``expand``;
    causal by a ``tril`` buffer."""

    def __init__(self, d: int = 8, heads: int = 4, max_len: int = 8):
        super().__init__()
        self.hd = d // heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * self.hd)
        self.o = nn.Linear(d, d)
        self.register_buffer("causal", torch.ones(max_len, max_len, dtype=torch.bool).tril())
        self.heads = heads
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        b, t, d = x.shape
        q = self.q(x).view(b, t, self.heads, self.hd).transpose(1, 2)
        k, v = self.kv(x).split(self.hd, dim=-1)
        k = k[:, None].expand(b, self.heads, t, self.hd)
        v = v[:, None].expand(b, self.heads, t, self.hd)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        att = scores.masked_fill(~self.causal[:t, :t], float("-inf")).softmax(-1)
        return self.head((x + self.o((att @ v).transpose(1, 2).reshape(b, t, d))).mean(1))


class MixtureOfDepths(nn.Module):
    """Mixture-of-Depths (Raposo et al., 2024): a router scores the tokens, the top-k (half)
    go through the block, gathered by ``torch.gather`` and put back by ``Tensor.scatter``
    scaled by their router weight; the others skip it."""

    def __init__(self, d: int = 8, capacity: float = 0.5):
        super().__init__()
        self.embed = nn.Linear(4, d)
        self.router = nn.Linear(d, 1)
        self.norm = nn.LayerNorm(d)
        self.block = mlp(d, 16, d, act=nn.GELU)
        self.head = nn.Linear(d, 3)
        self.capacity = capacity

    def forward(self, x):  # (B, T, 4)
        h = self.embed(x)
        w = self.router(h).squeeze(-1)  # (B, T)
        k = max(1, int(h.shape[1] * self.capacity))
        top = w.topk(k, dim=-1).indices.sort(dim=-1).values  # causal order kept
        idx = top[..., None].expand(-1, -1, h.shape[-1])
        picked = torch.gather(h, 1, idx)
        gate = torch.gather(w, 1, top).sigmoid()[..., None]
        out = h.scatter(1, idx, picked + gate * self.block(self.norm(picked)))
        return self.head(out.mean(1))


class ToMe(nn.Module):
    """Token merging (Bolya et al., ICLR 2023): after an attention block, bipartite soft
    matching on the normalised tokens (alternate tokens A / B, each A's most similar B), the r
    most similar A tokens averaged into their B by ``scatter_reduce(mean)``, the rest kept."""

    def __init__(self, d_in: int = 4, d: int = 8, r: int = 2):
        super().__init__()
        self.embed = nn.Linear(d_in, d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.ff = mlp(d, 16, d, act=nn.GELU)
        self.head = nn.Linear(d, 3)
        self.r = r

    def merge(self, x):
        metric = x / x.norm(dim=-1, keepdim=True)
        a, b = metric[:, ::2], metric[:, 1::2]
        scores = a @ b.transpose(-1, -2)
        node_max, node_idx = scores.max(dim=-1)
        edge_idx = node_max.argsort(dim=-1, descending=True)[..., None]
        unm_idx, src_idx = edge_idx[:, self.r:], edge_idx[:, :self.r]
        dst_idx = node_idx[..., None].gather(1, src_idx)
        xa, xb = x[:, ::2], x[:, 1::2]
        c = x.shape[-1]
        unm = xa.gather(1, unm_idx.expand(-1, -1, c))
        src = xa.gather(1, src_idx.expand(-1, -1, c))
        xb = xb.scatter_reduce(1, dst_idx.expand(-1, -1, c), src, reduce="mean")
        return torch.cat([unm, xb], dim=1)

    def forward(self, x):  # (B, N, d_in), N even
        h = self.embed(x)
        h = h + self.attn(h, h, h, need_weights=False)[0]
        h = self.merge(h)
        h = h + self.ff(h)
        return self.head(h.mean(1))


# ---------------------------------------------------------------------------------------------
# Vision: resampling, generated kernels, conditioning
# ---------------------------------------------------------------------------------------------
class PixelShuffleSR(nn.Module):
    """ESPCN-style super-resolution (Shi et al., CVPR 2016) on a space-to-depth input:
    ``PixelUnshuffle(2)``, 3x3 convs with a per-channel ``PReLU``, ``PixelShuffle(4)`` to twice
    the input size, plus a bilinear upsampling of the input (a global residual)."""

    def __init__(self, c: int = 1, width: int = 8):
        super().__init__()
        self.down = nn.PixelUnshuffle(2)
        self.body = nn.Sequential(nn.Conv2d(4 * c, width, 3, padding=1), nn.PReLU(width),
                                  nn.Conv2d(width, c * 16, 3, padding=1))
        self.up = nn.PixelShuffle(4)

    def forward(self, x):
        skip = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return skip + self.up(self.body(self.down(x)))


def _base_grid(b: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    ys = torch.linspace(-1, 1, h, dtype=like.dtype)
    xs = torch.linspace(-1, 1, w, dtype=like.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1).expand(b, h, w, 2)


class DeformableSampling(nn.Module):
    """Deformable sampling (Dai et al., ICCV 2017, in its simplest form): a conv predicts a
    per-pixel offset, the features are resampled at grid + offset by ``F.grid_sample``
    (bilinear), then convolved."""

    def __init__(self, c: int = 2, width: int = 6):
        super().__init__()
        self.stem = nn.Conv2d(c, width, 3, padding=1)
        self.offset = nn.Conv2d(width, 2, 3, padding=1)
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        h = F.relu(self.stem(x))
        b, _, hh, ww = h.shape
        grid = _base_grid(b, hh, ww, h) + 0.2 * torch.tanh(self.offset(h)).permute(0, 2, 3, 1)
        h = F.grid_sample(h, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return self.head(F.relu(self.conv(h)).mean((2, 3)))


class SpatialTransformer(nn.Module):
    """A spatial transformer network (Jaderberg et al., NeurIPS 2015): a localisation net
    regresses an affine ``theta`` (initialised near the identity), ``F.affine_grid`` +
    ``F.grid_sample`` warp the input, a small CNN classifies it."""

    def __init__(self):
        super().__init__()
        self.loc = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                 nn.Flatten(), nn.Linear(16, 6))
        with torch.no_grad():
            self.loc[-1].weight.mul_(0.1)
            self.loc[-1].bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))
        self.cls = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        theta = self.loc(x).view(-1, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return self.cls(F.grid_sample(x, grid, align_corners=False))


class CoordConv(nn.Module):
    """CoordConv (Liu et al., NeurIPS 2018): two channels of normalised x / y coordinates,
    built in the forward, concatenated to the input of each convolution."""

    def __init__(self, c: int = 1, width: int = 6):
        super().__init__()
        self.conv1 = nn.Conv2d(c + 2, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width + 2, width, 3, stride=2, padding=1)
        self.head = nn.Linear(width, 3)

    @staticmethod
    def add_coords(x):
        b, _, h, w = x.shape
        grid = _base_grid(b, h, w, x).permute(0, 3, 1, 2)
        return torch.cat([x, grid], dim=1)

    def forward(self, x):
        h = F.relu(self.conv1(self.add_coords(x)))
        h = F.relu(self.conv2(self.add_coords(h)))
        return self.head(h.mean((2, 3)))


class Involution(nn.Module):
    """Involution (Li et al., CVPR 2021): a K×K kernel per pixel and group, generated from that
    pixel's features by two 1x1 convs, applied to the ``F.unfold``ed neighbourhood by an
    element-wise product and a sum (no matrix product: nothing to map there)."""

    def __init__(self, c: int = 4, k: int = 3, groups: int = 2, reduction: int = 2):
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, padding=1)
        self.reduce = nn.Conv2d(c, c // reduction, 1)
        self.span = nn.Conv2d(c // reduction, k * k * groups, 1)
        self.head = nn.Linear(c, 3)
        self.k, self.groups = k, groups

    def forward(self, x):
        h = F.relu(self.stem(x))
        b, c, hh, ww = h.shape
        kernel = self.span(F.relu(self.reduce(h)))  # (B, G·K², H, W)
        kernel = kernel.view(b, self.groups, 1, self.k * self.k, hh, ww)
        patches = F.unfold(h, self.k, padding=self.k // 2)  # (B, C·K², H·W)
        patches = patches.view(b, self.groups, c // self.groups, self.k * self.k, hh, ww)
        out = (kernel * patches).sum(dim=3).view(b, c, hh, ww)
        return self.head(F.relu(out).mean((2, 3)))


class FiLMNet(nn.Module):
    """FiLM (Perez et al., AAAI 2018): a second input (a condition vector) sets a per-channel
    scale and shift, ``gamma·h + beta``, of each conv block's features."""

    def __init__(self, c: int = 2, width: int = 6, d_cond: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(c, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.film = nn.Linear(d_cond, 4 * width)
        self.head = nn.Linear(width, 3)

    def forward(self, x, cond):
        g1, b1, g2, b2 = self.film(cond)[..., None, None].chunk(4, dim=1)
        h = F.relu((1 + g1) * self.conv1(x) + b1)
        h = F.relu((1 + g2) * self.conv2(h) + b2)
        return self.head(h.mean((2, 3)))


class SegNet(nn.Module):
    """SegNet's encoder-decoder (Badrinarayanan et al., TPAMI 2017): ``MaxPool2d`` returning
    its indices, ``MaxUnpool2d`` putting the decoder's values back where the maxima were."""

    def __init__(self, c: int = 1, width: int = 4, classes: int = 3):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width),
                                 nn.ReLU())
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.mid = nn.Conv2d(width, width, 3, padding=1)
        self.unpool = nn.MaxUnpool2d(2)
        self.dec = nn.Conv2d(width, classes, 3, padding=1)

    def forward(self, x):
        h = self.enc(x)
        p, idx = self.pool(h)
        u = self.unpool(F.relu(self.mid(p)), idx, output_size=h.shape)
        return self.dec(u)


class ClassicActivations(nn.Module):
    """Layers no zoo used: AlexNet's ``LocalResponseNorm``, ``Mish``, ``nn.GLU`` over channels,
    ``AdaptiveMaxPool2d``, ``nn.Unflatten``, ``SELU`` + ``AlphaDropout`` (self-normalising,
    Klambauer et al., NeurIPS 2017), ``CELU``, ``Hardswish``, ``Softsign``."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.LocalResponseNorm(3), nn.Mish(),
            nn.Conv2d(8, 8, 3, padding=1), nn.GLU(dim=1),  # 8 -> 4 channels
            nn.AdaptiveMaxPool2d((2, 2)), nn.Flatten())
        self.classifier = nn.Sequential(
            nn.Linear(16, 12), nn.SELU(), nn.AlphaDropout(0.1), nn.Unflatten(1, (3, 4)),
            nn.Linear(4, 4), nn.CELU(0.5), nn.Hardswish(), nn.Flatten(), nn.Linear(12, 3),
            nn.Softsign())

    def forward(self, x):
        return self.classifier(self.features(x))


# ---------------------------------------------------------------------------------------------
# Weights held or used in unusual ways
# ---------------------------------------------------------------------------------------------
class RegisteredWeights(nn.Module):
    """A trunk ``nn.Sequential(OrderedDict(...))`` (named submodules), a weight created in
    ``__init__`` and registered only through ``register_parameter`` and a fixed random
    projection held by ``register_buffer``, both applied by ``F.linear``."""

    def __init__(self, d: int = 8):
        super().__init__()
        self.trunk = nn.Sequential(OrderedDict([
            ("fc_in", nn.Linear(d, 12)), ("act", nn.ReLU()), ("fc_mid", nn.Linear(12, 8))]))
        weight = nn.Parameter(torch.randn(6, 8) / math.sqrt(8))
        self.register_parameter("proj_weight", weight)
        self.register_buffer("random_proj", torch.randn(4, 6) / math.sqrt(6))
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = F.relu(F.linear(self.trunk(x), self.proj_weight))
        return self.head(F.linear(h, self.random_proj))


class OddProducts(nn.Module):
    """Weight products written as torch also spells them: ``torch.linalg.matmul``,
    ``Tensor.addmm`` (bias first), ``torch.linalg.multi_dot`` over two weights and
    ``torch.addmv`` per sample; a Linear before and after."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.fc_in = nn.Linear(4, d)
        self.w_matmul = nn.Parameter(torch.randn(d, d) / math.sqrt(d))
        self.w_addmm = nn.Parameter(torch.randn(d, d) / math.sqrt(d))
        self.b_addmm = nn.Parameter(torch.zeros(d))
        self.w_dot1 = nn.Parameter(torch.randn(d, d) / math.sqrt(d))
        self.w_dot2 = nn.Parameter(torch.randn(d, d) / math.sqrt(d))
        self.w_mv = nn.Parameter(torch.randn(d, d) / math.sqrt(d))
        self.b_mv = nn.Parameter(torch.zeros(d))
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        h = torch.tanh(self.fc_in(x))
        h = torch.tanh(torch.linalg.matmul(h, self.w_matmul))
        h = torch.tanh(self.b_addmm.addmm(h, self.w_addmm))
        h = torch.tanh(torch.linalg.multi_dot([h, self.w_dot1, self.w_dot2]))
        h = torch.stack([torch.addmv(self.b_mv, self.w_mv, row) for row in h])
        return self.head(torch.tanh(h))


class StaticHyperConv(nn.Module):
    """A static hypernetwork (Ha, Dai & Le, ICLR 2017): a Linear maps a learned layer code z to
    a 3x3 conv kernel, applied by ``F.conv2d``. The Linear is mapped (it reads z, a learned
    input); the convolution's kernel is its output: a product of activations, listed."""

    def __init__(self, c: int = 2, width: int = 4, d_z: int = 4):
        super().__init__()
        self.z = nn.Parameter(torch.randn(1, d_z))
        self.hyper = nn.Linear(d_z, width * c * 9)
        self.head = nn.Linear(width, 3)
        self.shape = (width, c, 3, 3)

    def forward(self, x):
        kernel = self.hyper(self.z).view(self.shape)
        return self.head(F.relu(F.conv2d(x, kernel, padding=1)).mean((2, 3)))


class ComplexHead(nn.Module):
    """A real trunk and an ``nn.Linear(dtype=torch.cfloat)`` head on the complex features (a
    complex-valued network's layer), read as magnitudes."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.head = nn.Linear(3, 3, dtype=torch.cfloat)

    def forward(self, x):
        h = self.fc(x)
        z = torch.complex(h[:, :3], h[:, 3:]) if h.dtype == torch.float32 else \
            torch.complex(h[:, :3].float(), h[:, 3:].float())
        return self.head(z).abs().to(h.dtype)


class ConvWeightAsLinear(nn.Module):
    """A 1x1 conv's weight shared with a Linear by ``.view``: ``F.linear(pooled,
    conv.weight.view(out, in))`` beside the conv itself."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 1)

    def forward(self, x):
        pooled = x.mean((2, 3))
        return self.conv(x).mean((2, 3)) + F.linear(pooled, self.conv.weight.view(5, 3))


class VmapEnsemble(nn.Module):
    """A model ensemble as ``torch.func`` writes it: the members' weights stacked by
    ``torch.func.stack_module_state`` (held in a ParameterDict) and applied by
    ``torch.vmap(functional_call)`` over a weightless ``meta`` copy of one member; the mean
    member output read by a Linear head."""

    def __init__(self, d: int = 4, n_members: int = 3):
        super().__init__()
        import copy

        members = [mlp(d, 6, 2) for _ in range(n_members)]
        params, _ = torch.func.stack_module_state(members)  # type: ignore[arg-type]
        self.stacked = nn.ParameterDict(
            {k.replace(".", "_"): nn.Parameter(v.detach().clone()) for k, v in params.items()})
        self._base = [copy.deepcopy(members[0]).to("meta")]  # a list: no submodule, no weights
        self.head = nn.Linear(2, 3)

    def forward(self, x):
        params = {k.replace("_", "."): v for k, v in self.stacked.items()}

        def member(p, xx):
            return torch.func.functional_call(self._base[0], p, (xx,))

        return self.head(torch.vmap(member, in_dims=(0, None))(params, x).mean(0))


class TiedLinears(nn.Module):
    """Cross-layer weight sharing by assignment (``self.b.weight = self.a.weight``, as ALBERT's
    sharing is sometimes written): two Linear modules, one Parameter, two biases."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.a = nn.Linear(4, d)
        self.mid = nn.Linear(d, d)
        self.b = nn.Linear(d, d)
        self.b.weight = self.mid.weight
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        h = torch.tanh(self.a(x))
        return self.head(torch.tanh(self.b(torch.tanh(self.mid(h)))))


class PerSampleLoop(nn.Module):
    """A forward looping over the batch, one sample per call of the net (micro-batches of one,
    as per-sample code is written), the outputs concatenated."""

    def __init__(self):
        super().__init__()
        self.net = mlp(4, 8, 3)

    def forward(self, x):
        return torch.cat([self.net(xi[None]) for xi in x])


class FunctionalMHA(nn.Module):
    """Attention pooling as OpenAI CLIP's ``AttentionPool2d`` writes it: a (mean) query token
    prepended to the features and ``F.multi_head_attention_forward`` called with the
    projection weights as arguments (here Parameters of the module itself)."""

    def __init__(self, d: int = 8, heads: int = 2):
        super().__init__()
        self.embed = nn.Linear(4, d)
        self.in_proj_weight = nn.Parameter(torch.randn(3 * d, d) / math.sqrt(d))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d))
        self.out_proj_weight = nn.Parameter(torch.randn(d, d) / math.sqrt(d))
        self.out_proj_bias = nn.Parameter(torch.zeros(d))
        self.head = nn.Linear(d, 3)
        self.d, self.heads = d, heads

    def forward(self, x):  # (B, T, 4)
        h = self.embed(x).transpose(0, 1)  # (T, B, d): the function is sequence-first
        h = torch.cat([h.mean(0, keepdim=True), h])
        out, _ = F.multi_head_attention_forward(
            h[:1], h, h, self.d, self.heads, self.in_proj_weight, self.in_proj_bias, None,
            None, False, 0.0, self.out_proj_weight, self.out_proj_bias, training=False,
            need_weights=False)
        return self.head(out[0])


class FunctionalCells(nn.Module):
    """Recurrent cells called as torch functions with the module's own Parameters
    (``torch.lstm_cell``, ``torch.gru_cell``), stepped over the sequence, as hand-written
    recurrent code (and older libraries) call them."""

    def __init__(self, d_in: int = 4, hidden: int = 6):
        super().__init__()
        self.embed = nn.Linear(d_in, 5)
        self.lstm_ih = nn.Parameter(torch.randn(4 * hidden, 5) / math.sqrt(5))
        self.lstm_hh = nn.Parameter(torch.randn(4 * hidden, hidden) / math.sqrt(hidden))
        self.gru_ih = nn.Parameter(torch.randn(3 * hidden, hidden) / math.sqrt(hidden))
        self.gru_hh = nn.Parameter(torch.randn(3 * hidden, hidden) / math.sqrt(hidden))
        self.gru_b = nn.Parameter(torch.zeros(3 * hidden))
        self.head = nn.Linear(hidden, 3)
        self.hidden = hidden

    def forward(self, x):  # (B, T, d_in)
        e = self.embed(x)
        h = c = g = x.new_zeros(x.shape[0], self.hidden)
        for t in range(x.shape[1]):
            h, c = torch.lstm_cell(e[:, t], (h, c), self.lstm_ih, self.lstm_hh)
            g = torch.gru_cell(h, g, self.gru_ih, self.gru_hh, self.gru_b, self.gru_b)
        return self.head(g)

"""The fifteenth zoo's models (``test_zoo15.py``): published architectures written from their
papers at toy size, each combining forward styles the fourteen earlier zoos tried one at a time.
Swin window attention with a relative-position bias table and shifted windows (``torch.roll`` +
an attention mask), a ConvNeXt V2 block (depthwise 7x7, channels-last LayerNorm, global
response normalisation), a U-Net with skip concatenations and ``ConvTranspose2d``, a ShuffleNet
V2 unit (channel split, ``nn.ChannelShuffle``, ``F.pixel_unshuffle`` stem), a mixture of experts
combined by ``scatter_add_``, a Conformer convolution module (``GLU`` over channels, depthwise
``Conv1d``), a Set Transformer pooling by attention with a learned seed, a Llama block
(RMSNorm, rotary, grouped-query attention, SwiGLU with a fused gate-up projection), a temporal
shift module over video frames folded into the batch, a highway network, a neural ODE solved
by fixed-step RK4 (one layer called many times), an FPN (lateral 1x1 convolutions, top-down
nearest upsampling), token pruning by a learned score (``argsort`` + ``gather``), an LP-pooled
convolution, a frozen pretrained embedding (``nn.Embedding.from_pretrained``) and an
EfficientNet MBConv with squeeze-excitation through 1x1 convolutions. Small, written here (no
model library imported); widths are tiny."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------
class SwinBlock(nn.Module):
    """Swin Transformer (Liu et al., ICCV 2021) window attention: 2x2 windows on a 4x4 map,
    a relative-position bias table (``(2w-1)^2`` x heads Parameter indexed by a buffer), the
    second block's windows shifted by ``torch.roll`` with the attention mask of Sec. 3.2."""

    def __init__(self, dim: int = 8, heads: int = 2, window: int = 2, size: int = 4):
        super().__init__()
        self.dim, self.heads, self.w, self.size = dim, heads, window, size
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(2)])
        self.qkv = nn.ModuleList([nn.Linear(dim, 3 * dim) for _ in range(2)])
        self.proj = nn.ModuleList([nn.Linear(dim, dim) for _ in range(2)])
        self.table = nn.Parameter(0.02 * torch.randn(2, (2 * window - 1) ** 2, heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window),
                                            indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + window - 1
        self.register_buffer("index", rel[..., 0] * (2 * window - 1) + rel[..., 1])
        img = torch.zeros(size, size)
        s = window // 2
        n = 0
        for hs in (slice(0, -window), slice(-window, -s), slice(-s, None)):
            for ws in (slice(0, -window), slice(-window, -s), slice(-s, None)):
                img[hs, ws] = n
                n += 1
        win = self._partition(img[None, :, :, None]).squeeze(-1)
        mask = win[:, None, :] - win[:, :, None]
        self.register_buffer("mask", (mask != 0).float() * -100.0)
        self.head = nn.Linear(dim, 3)

    def _partition(self, x):
        b, h, w, c = x.shape
        x = x.view(b, h // self.w, self.w, w // self.w, self.w, c)
        return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, self.w * self.w, c)

    def _attend(self, i, x):
        b, h, w, c = x.shape
        shift = self.w // 2 if i else 0
        y = self.norms[i](x)
        if shift:
            y = torch.roll(y, (-shift, -shift), (1, 2))
        win = self._partition(y)
        q, k, v = self.qkv[i](win).view(win.shape[0], -1, 3, self.heads,
                                        c // self.heads).permute(2, 0, 3, 1, 4)
        att = (q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)
        att = att + self.table[i][self.index].permute(2, 0, 1)[None]
        if shift:
            nw = self.mask.shape[0]
            att = att.view(b, nw, self.heads, *att.shape[-2:]) + self.mask[None, :, None]
            att = att.view(-1, self.heads, *att.shape[-2:])
        out = (att.softmax(-1) @ v).transpose(1, 2).reshape(win.shape[0], -1, c)
        out = self.proj[i](out).view(b, h // self.w, w // self.w, self.w, self.w, c)
        out = out.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        if shift:
            out = torch.roll(out, (shift, shift), (1, 2))
        return x + out

    def forward(self, x):  # (B, H, W, C)
        for i in range(2):
            x = self._attend(i, x)
        return self.head(x.mean((1, 2)))


class SetPooling(nn.Module):
    """Set Transformer (Lee et al., ICML 2019) pooling by multihead attention (PMA): a learned
    seed vector expanded over the batch as the query of ``nn.MultiheadAttention`` over a set
    encoded by a row-wise feed-forward layer."""

    def __init__(self, d: int = 6, dim: int = 8):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(d, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.seed = nn.Parameter(torch.randn(1, 1, dim))
        self.mha = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):  # (B, N, d)
        h = self.enc(x)
        pooled, _ = self.mha(self.seed.expand(x.shape[0], -1, -1), h, h, need_weights=False)
        return self.head(pooled[:, 0])


class LlamaBlock(nn.Module):
    """A Llama block (Touvron et al., 2023): RMSNorm, fused QKV with grouped-query attention
    (two query heads share one key / value head, ``repeat_interleave``), rotary positions,
    ``F.scaled_dot_product_attention(is_causal=True)``, SwiGLU with a fused gate-up projection
    split by ``chunk``, an untied output head."""

    def __init__(self, vocab: int = 20, dim: int = 8, heads: int = 2, kv_heads: int = 1):
        super().__init__()
        self.heads, self.kv, self.hd = heads, kv_heads, dim // heads
        self.emb = nn.Embedding(vocab, dim)
        self.n1 = nn.Parameter(torch.ones(dim))
        self.n2 = nn.Parameter(torch.ones(dim))
        self.qkv = nn.Linear(dim, (heads + 2 * kv_heads) * self.hd, bias=False)
        self.o = nn.Linear(dim, dim, bias=False)
        self.gate_up = nn.Linear(dim, 32, bias=False)
        self.down = nn.Linear(16, dim, bias=False)
        self.out = nn.Linear(dim, vocab, bias=False)
        inv = 1.0 / 10000 ** (torch.arange(0, self.hd, 2).float() / self.hd)
        self.register_buffer("inv", inv)

    @staticmethod
    def _rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w

    def _rope(self, x):
        t = torch.arange(x.shape[-2], dtype=x.dtype)
        ang = t[:, None] * self.inv.to(x.dtype)[None]
        cos, sin = ang.cos(), ang.sin()
        x1, x2 = x[..., ::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), -1).flatten(-2)

    def forward(self, ids):
        x = self.emb(ids)
        b, t, _ = x.shape
        qkv = self.qkv(self._rms(x, self.n1))
        q, k, v = qkv.split([self.heads * self.hd, self.kv * self.hd, self.kv * self.hd], -1)
        q = self._rope(q.view(b, t, self.heads, self.hd).transpose(1, 2))
        k = self._rope(k.view(b, t, self.kv, self.hd).transpose(1, 2))
        v = v.view(b, t, self.kv, self.hd).transpose(1, 2)
        k = k.repeat_interleave(self.heads // self.kv, 1)
        v = v.repeat_interleave(self.heads // self.kv, 1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, -1))
        g, u = self.gate_up(self._rms(x, self.n2)).chunk(2, -1)
        x = x + self.down(F.silu(g) * u)
        return self.out(x)


class TokenPruning(nn.Module):
    """DynamicViT-style token pruning (Rao et al., NeurIPS 2021) at inference: a learned score
    keeps the top half of the tokens (``argsort`` + ``gather``), the kept tokens go on through
    an MLP."""

    def __init__(self, d: int = 6, dim: int = 8):
        super().__init__()
        self.embed = nn.Linear(d, dim)
        self.score = nn.Linear(dim, 1)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 16), nn.GELU(),
                                 nn.Linear(16, dim))
        self.head = nn.Linear(dim, 3)

    def forward(self, x):  # (B, N, d)
        h = self.embed(x)
        keep = self.score(h).squeeze(-1).argsort(-1, descending=True)[:, : x.shape[1] // 2]
        h = h.gather(1, keep[..., None].expand(-1, -1, h.shape[-1]))
        return self.head((h + self.mlp(h)).mean(1))


# ---------------------------------------------------------------------------------------------
# Convolutions
# ---------------------------------------------------------------------------------------------
class ConvNeXtV2(nn.Module):
    """A ConvNeXt V2 block (Woo et al., CVPR 2023): depthwise 7x7, LayerNorm channels-last
    (``permute``), pointwise Linear 4x, GELU, global response normalisation (GRN, Eq. 1-3:
    ``gamma``/``beta`` Parameters on the spatial L2 norm), pointwise Linear back; a downsampling
    layer (channels-first LayerNorm written by hand + 2x2 stride-2 convolution)."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 2, stride=2)
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.pw1 = nn.Linear(c, 4 * c)
        self.gamma = nn.Parameter(0.1 * torch.randn(1, 1, 1, 4 * c))
        self.beta = nn.Parameter(0.1 * torch.randn(1, 1, 1, 4 * c))
        self.pw2 = nn.Linear(4 * c, c)
        self.ln_w = nn.Parameter(torch.ones(c))
        self.ln_b = nn.Parameter(torch.zeros(c))
        self.down = nn.Conv2d(c, 2 * c, 2, stride=2)
        self.head = nn.Linear(2 * c, 3)

    def forward(self, x):
        x = self.stem(x)
        y = self.norm(self.dw(x).permute(0, 2, 3, 1))
        y = F.gelu(self.pw1(y))
        gx = torch.norm(y, p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        y = self.gamma * (y * nx) + self.beta + y
        x = x + self.pw2(y).permute(0, 3, 1, 2)
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + 1e-6)
        x = self.ln_w[:, None, None] * x + self.ln_b[:, None, None]
        return self.head(self.down(x).mean((2, 3)))


class UNet(nn.Module):
    """A two-level U-Net (Ronneberger et al., MICCAI 2015): double 3x3 convolutions, max
    pooling, ``ConvTranspose2d`` (2x2, stride 2) up, the skip concatenated, a 1x1 output."""

    def __init__(self, c: int = 4):
        super().__init__()

        def double(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(o, o, 3, padding=1), nn.ReLU())

        self.down1 = double(1, c)
        self.down2 = double(c, 2 * c)
        self.up = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.up1 = double(2 * c, c)
        self.out = nn.Conv2d(c, 2, 1)

    def forward(self, x):
        s = self.down1(x)
        y = self.down2(F.max_pool2d(s, 2))
        y = self.up1(torch.cat([s, self.up(y)], 1))
        return self.out(y)


class ShuffleUnit(nn.Module):
    """A ShuffleNet V2 unit (Ma et al., ECCV 2018, Fig. 3c): channel split, one half through
    1x1 -> depthwise 3x3 + BatchNorm -> 1x1, concatenated and ``nn.ChannelShuffle`` d; stem by
    ``F.pixel_unshuffle`` (space to depth) and a 1x1 convolution."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(4 * 2, c, 1)
        self.pw1 = nn.Conv2d(c // 2, c // 2, 1)
        self.dw = nn.Conv2d(c // 2, c // 2, 3, padding=1, groups=c // 2, bias=False)
        self.bn = nn.BatchNorm2d(c // 2)
        self.pw2 = nn.Conv2d(c // 2, c // 2, 1)
        self.shuffle = nn.ChannelShuffle(2)
        self.head = nn.Linear(c, 3)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        x = F.relu(self.stem(F.pixel_unshuffle(x, 2)))
        a, b = x.chunk(2, 1)
        b = F.relu(self.pw2(self.bn(self.dw(F.relu(self.pw1(b))))))
        x = self.shuffle(torch.cat([a, b], 1))
        return self.head(x.mean((2, 3)))


class ConformerConv(nn.Module):
    """A Conformer convolution module (Gulati et al., Interspeech 2020, Fig. 2) between two
    half-step (macaron) feed-forward modules: LayerNorm, pointwise ``Conv1d`` to 2C, ``GLU``
    over channels, depthwise ``Conv1d``, BatchNorm, SiLU, pointwise ``Conv1d``."""

    def __init__(self, d: int = 8):
        super().__init__()
        self.ff1 = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 16), nn.SiLU(), nn.Linear(16, d))
        self.norm = nn.LayerNorm(d)
        self.pw1 = nn.Conv1d(d, 2 * d, 1)
        self.dw = nn.Conv1d(d, d, 5, padding=2, groups=d)
        self.bn = nn.BatchNorm1d(d)
        self.pw2 = nn.Conv1d(d, d, 1)
        self.ff2 = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 16), nn.SiLU(), nn.Linear(16, d))
        self.head = nn.Linear(d, 3)

    def forward(self, x):  # (B, T, d)
        x = x + 0.5 * self.ff1(x)
        y = F.glu(self.pw1(self.norm(x).transpose(1, 2)), dim=1)
        y = self.pw2(F.silu(self.bn(self.dw(y))))
        x = x + y.transpose(1, 2)
        x = x + 0.5 * self.ff2(x)
        return self.head(x)


class TemporalShift(nn.Module):
    """A temporal shift module (Lin et al., ICCV 2019): video frames folded into the batch
    (``(B*T, C, H, W)``) for the 2-D convolutions, an eighth of the channels shifted one frame
    back and one forward between them; the clip's frames averaged before the head."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(3, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.head = nn.Linear(c, 3)

    @staticmethod
    def _shift(x, t):
        bt, c, h, w = x.shape
        x = x.view(bt // t, t, c, h, w)
        f = c // 8
        out = torch.zeros_like(x)
        out[:, :-1, :f] = x[:, 1:, :f]
        out[:, 1:, f:2 * f] = x[:, :-1, f:2 * f]
        out[:, :, 2 * f:] = x[:, :, 2 * f:]
        return out.view(bt, c, h, w)

    def forward(self, x):  # (B, T, 3, H, W)
        b, t = x.shape[:2]
        h = F.relu(self.conv1(x.flatten(0, 1)))
        h = F.relu(self.conv2(self._shift(h, t)))
        return self.head(h.mean((2, 3)).view(b, t, -1).mean(1))


class FPN(nn.Module):
    """A feature pyramid (Lin et al., CVPR 2017): a three-stage strided backbone, lateral 1x1
    convolutions, the top-down path by nearest ``F.interpolate`` added, a shared 3x3 output
    convolution on every level (one layer called three times)."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.c1 = nn.Conv2d(3, c, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1)
        self.lat = nn.ModuleList([nn.Conv2d(k * c, c, 1) for k in (1, 2, 4)])
        self.smooth = nn.Conv2d(c, c, 3, padding=1)
        self.head = nn.Linear(3 * c, 3)

    def forward(self, x):
        f1 = F.relu(self.c1(x))
        f2 = F.relu(self.c2(f1))
        f3 = F.relu(self.c3(f2))
        p3 = self.lat[2](f3)
        p2 = self.lat[1](f2) + F.interpolate(p3, size=f2.shape[-2:], mode="nearest")
        p1 = self.lat[0](f1) + F.interpolate(p2, scale_factor=2.0, mode="nearest")
        outs = [self.smooth(p).amax((2, 3)) for p in (p1, p2, p3)]
        return self.head(torch.cat(outs, 1))


class LPPooled(nn.Module):
    """A convolution pooled by ``nn.LPPool2d`` (power-average, p=2) and ``F.lp_pool1d`` over a
    row, then a classifier."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(2, c, 3, padding=1)
        self.pool = nn.LPPool2d(2, 2)
        self.head = nn.Linear(c * 3, 3)

    def forward(self, x):
        h = self.pool(F.relu(self.conv(x)))  # (B, c, 3, 3)
        h = F.lp_pool1d(h.flatten(2), 2, 3)  # (B, c, 3)
        return self.head(h.flatten(1))


class MBConv(nn.Module):
    """An EfficientNet MBConv block (Tan & Le, ICML 2019): 1x1 expansion, depthwise 3x3, SiLU,
    squeeze-excitation through two 1x1 convolutions on the pooled map (a gate), 1x1 projection,
    the residual."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.expand = nn.Conv2d(c, 4 * c, 1)
        self.dw = nn.Conv2d(4 * c, 4 * c, 3, padding=1, groups=4 * c)
        self.se1 = nn.Conv2d(4 * c, 2, 1)
        self.se2 = nn.Conv2d(2, 4 * c, 1)
        self.proj = nn.Conv2d(4 * c, c, 1)
        self.head = nn.Linear(c, 3)

    def forward(self, x):
        x = F.silu(self.stem(x))
        h = F.silu(self.dw(F.silu(self.expand(x))))
        s = torch.sigmoid(self.se2(F.silu(self.se1(h.mean((2, 3), keepdim=True)))))
        x = x + self.proj(h * s)
        return self.head(x.mean((2, 3)))


# ---------------------------------------------------------------------------------------------
# Routing, recurrence in depth, tables
# ---------------------------------------------------------------------------------------------
class ScatterMoE(nn.Module):
    """A top-2 mixture of experts (Shazeer et al., ICLR 2017; Fedus et al., JMLR 2022): a
    router Linear, ``torch.topk`` + softmax over the two, each expert on the tokens routed to
    it (``nonzero``), combined into the output by ``scatter_add_``."""

    def __init__(self, d: int = 6, n: int = 4):
        super().__init__()
        self.router = nn.Linear(d, n)
        self.experts = nn.ModuleList([nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, d))
                                      for _ in range(n)])
        self.head = nn.Linear(d, 3)

    def forward(self, x):  # (B, N, d)
        tok = x.reshape(-1, x.shape[-1])
        w, idx = self.router(tok).topk(2, -1)
        w = w.softmax(-1)
        out = torch.zeros_like(tok)
        for e, expert in enumerate(self.experts):
            rows, slot = (idx == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            y = expert(tok[rows]) * w[rows, slot, None]
            out.scatter_add_(0, rows[:, None].expand_as(y), y)
        return self.head(out.view_as(x).mean(1))


class Highway(nn.Module):
    """A highway network (Srivastava et al., 2015): ``T = sigmoid(W_T x)``, ``y = T * H(x) +
    (1 - T) * x`` in three layers with the gate bias at -1."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.h = nn.ModuleList([nn.Linear(d, d) for _ in range(3)])
        self.t = nn.ModuleList([nn.Linear(d, d) for _ in range(3)])
        for t in self.t:
            nn.init.constant_(t.bias, -1.0)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        for h, t in zip(self.h, self.t, strict=True):
            g = torch.sigmoid(t(x))
            x = g * F.relu(h(x)) + (1 - g) * x
        return self.head(x)


class NeuralODE(nn.Module):
    """A neural ODE (Chen et al., NeurIPS 2018) solved by four fixed RK4 steps: the dynamics
    MLP (time concatenated to the state) evaluated sixteen times per forward."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(d + 1, 12), nn.Tanh(), nn.Linear(12, d))
        self.head = nn.Linear(d, 3)

    def _f(self, t, z):
        return self.f(torch.cat([z, torch.full_like(z[:, :1], t)], 1))

    def forward(self, z):
        h = 0.25
        for i in range(4):
            t = i * h
            k1 = self._f(t, z)
            k2 = self._f(t + h / 2, z + h / 2 * k1)
            k3 = self._f(t + h / 2, z + h / 2 * k2)
            k4 = self._f(t + h, z + h * k3)
            z = z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return self.head(z)


class PretrainedEmbedding(nn.Module):
    """A frozen pretrained table (``nn.Embedding.from_pretrained(freeze=True, padding_idx=0)``)
    averaged over the non-padding tokens, then a trainable MLP."""

    def __init__(self, vocab: int = 20, dim: int = 8):
        super().__init__()
        self.emb = nn.Embedding.from_pretrained(torch.randn(vocab, dim), freeze=True,
                                                padding_idx=0)
        self.mlp = nn.Sequential(nn.Linear(dim, 12), nn.ReLU(), nn.Linear(12, 3))

    def forward(self, ids):
        m = (ids != 0).to(self.emb.weight.dtype)[..., None]
        h = (self.emb(ids) * m).sum(1) / m.sum(1).clamp(min=1)
        return self.mlp(h)

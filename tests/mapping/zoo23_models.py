"""The twenty-third zoo's models (``test_zoo23.py``): published architecture families as a user
writes or copies them, their block structure as published at toy width, that the earlier zoos
did not build. Each names its paper."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _Attention(nn.Module):
    """timm's ViT attention: one ``qkv`` Linear, heads split by reshape, scaled dot product,
    an output ``proj``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class _ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DeiT(nn.Module):
    """DeiT (Touvron et al., ICML 2021, Fig. 2): patch embedding by a strided convolution, a
    class and a distillation token, learned positions, pre-norm blocks, two heads (class,
    distillation) whose outputs are averaged at inference."""

    def __init__(self, dim: int = 16, n_classes: int = 5):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.dist_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, 4 + 2, dim) * 0.02)
        self.blocks = nn.Sequential(_ViTBlock(dim, 2), _ViTBlock(dim, 2))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)
        self.head_dist = nn.Linear(dim, n_classes)

    def forward(self, x):  # (B, 3, 8, 8)
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        b = x.shape[0]
        x = torch.cat([self.cls_token.expand(b, -1, -1), self.dist_token.expand(b, -1, -1), x],
                      dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        cls, dist = self.head(x[:, 0]), self.head_dist(x[:, 1])
        return cls if self.training else (cls + dist) / 2


class _PoolFormerBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(1, dim)
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.norm2 = nn.GroupNorm(1, dim)
        self.mlp = nn.Sequential(nn.Conv2d(dim, 4 * dim, 1), nn.GELU(), nn.Conv2d(4 * dim, dim, 1))
        self.layer_scale_1 = nn.Parameter(1e-1 * torch.ones(dim))
        self.layer_scale_2 = nn.Parameter(1e-1 * torch.ones(dim))

    def forward(self, x):
        y = self.norm1(x)
        x = x + self.layer_scale_1[:, None, None] * (self.pool(y) - y)
        return x + self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x))


class PoolFormer(nn.Module):
    """PoolFormer (Yu et al., CVPR 2022, "MetaFormer is actually what you need", Alg. 1):
    overlapping patch embedding, blocks whose token mixer is ``pool(x) - x`` after a
    GroupNorm(1), 1x1-convolution MLP, layer scales; a downsampling embedding, a head."""

    def __init__(self, n_classes: int = 5):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 7, stride=4, padding=2)
        self.stage1 = _PoolFormerBlock(8)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.stage2 = _PoolFormerBlock(16)
        self.norm = nn.GroupNorm(1, 16)
        self.head = nn.Linear(16, n_classes)

    def forward(self, x):  # (B, 3, 16, 16)
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.head(self.norm(x).mean([-2, -1]))


class _Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x


def ConvMixer(dim: int = 16, depth: int = 2, kernel: int = 5, patch: int = 2,
              n_classes: int = 5) -> nn.Sequential:
    """ConvMixer (Trockman & Kolter, TMLR 2023, "Patches are all you need?", its Fig. 3
    code): a patch convolution, then per layer a residual depthwise convolution and a
    pointwise one, each followed by GELU and BatchNorm."""
    def bn_gelu(conv):
        return nn.Sequential(conv, nn.GELU(), nn.BatchNorm2d(dim))

    return nn.Sequential(
        bn_gelu(nn.Conv2d(3, dim, patch, stride=patch)),
        *[nn.Sequential(_Residual(bn_gelu(nn.Conv2d(dim, dim, kernel, groups=dim,
                                                    padding="same"))),
                        bn_gelu(nn.Conv2d(dim, dim, 1))) for _ in range(depth)],
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(dim, n_classes))


class _Affine(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return self.alpha * x + self.beta


class ResMLP(nn.Module):
    """ResMLP (Touvron et al., TPAMI 2023, Alg. 1): patches by a Linear, per block an Affine
    (no normalisation), a cross-patch Linear over the transposed tokens and a cross-channel
    MLP, each with a layer scale; average pooling and a head."""

    def __init__(self, dim: int = 12, patches: int = 16, n_classes: int = 5):
        super().__init__()
        self.patch = nn.Linear(3 * 2 * 2, dim)
        self.aff1, self.aff2, self.aff3 = _Affine(dim), _Affine(dim), _Affine(dim)
        self.cross_patch = nn.Linear(patches, patches)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.ls1 = nn.Parameter(0.1 * torch.ones(dim))
        self.ls2 = nn.Parameter(0.1 * torch.ones(dim))
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x):  # (B, 3, 8, 8) -> 16 patches of 2x2
        b = x.shape[0]
        x = F.unfold(x, 2, stride=2).transpose(1, 2)  # (B, 16, 12)
        x = self.patch(x)
        x = x + self.ls1 * self.cross_patch(self.aff1(x).transpose(1, 2)).transpose(1, 2)
        x = x + self.ls2 * self.mlp(self.aff2(x))
        return self.head(self.aff3(x).reshape(b, -1, x.shape[-1]).mean(1))


class _ECA(nn.Module):
    """ECA (Wang et al., CVPR 2020, Fig. 2): a kernel-3 ``Conv1d`` across the pooled
    channels, a sigmoid gate."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)

    def forward(self, x):
        y = x.mean((-2, -1))[:, None]  # (B, 1, C)
        return x * self.conv(y).sigmoid()[:, 0, :, None, None]


class _CBAMSpatial(nn.Module):
    """CBAM's spatial attention (Woo et al., ECCV 2018, Fig. 3): channel max and mean, a 7x7
    convolution, a sigmoid gate."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)

    def forward(self, x):
        s = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], dim=1)
        return x * self.conv(s).sigmoid()


class _Res2NetBottleneck(nn.Module):
    """Res2Net's bottleneck (Gao et al., TPAMI 2021, Fig. 2): a 1x1 convolution, the channels
    split in four, each split after the first convolved with the previous output added, the
    splits concatenated, a 1x1 convolution; ECA and CBAM attention, a residual."""

    def __init__(self, dim: int, scale: int = 4):
        super().__init__()
        w = dim // scale
        self.scale, self.w = scale, w
        self.conv1 = nn.Conv2d(dim, dim, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim)
        self.convs = nn.ModuleList(nn.Conv2d(w, w, 3, padding=1, bias=False)
                                   for _ in range(scale - 1))
        self.bns = nn.ModuleList(nn.BatchNorm2d(w) for _ in range(scale - 1))
        self.conv3 = nn.Conv2d(dim, dim, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(dim)
        self.eca, self.sa = _ECA(), _CBAMSpatial()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        spx = torch.split(out, self.w, 1)
        outs, sp = [], None
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            sp = spx[i] if i == 0 else sp + spx[i]
            sp = F.relu(bn(conv(sp)))
            outs.append(sp)
        outs.append(spx[-1])
        out = self.bn3(self.conv3(torch.cat(outs, 1)))
        return F.relu(self.sa(self.eca(out)) + x)


class Res2Net(nn.Module):
    """A Res2Net stem, two bottlenecks (with ECA and CBAM's spatial attention), a head."""

    def __init__(self, n_classes: int = 5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU())
        self.layer = nn.Sequential(_Res2NetBottleneck(16), _Res2NetBottleneck(16))
        self.fc = nn.Linear(16, n_classes)

    def forward(self, x):  # (B, 3, 8, 8)
        return self.fc(self.layer(self.stem(x)).mean((-2, -1)))


class FTTransformer(nn.Module):
    """FT-Transformer (Gorishniy et al., NeurIPS 2021, Sec. 3.3): a feature tokenizer (each
    numerical feature times its own vector plus a bias; each categorical one an embedding
    row), a [CLS] token appended, PyTorch encoder layers (pre-norm, ReGLU in the paper; GELU
    here as ``nn.TransformerEncoderLayer`` gives), the [CLS] output through a norm, ReLU and
    a Linear."""

    def __init__(self, n_num: int = 5, cards: tuple[int, ...] = (4, 3), dim: int = 8):
        super().__init__()
        self.num_weight = nn.Parameter(torch.randn(n_num, dim) / math.sqrt(dim))
        self.num_bias = nn.Parameter(torch.randn(n_num, dim) / math.sqrt(dim))
        self.register_buffer("cat_offsets", torch.tensor([0, *cards[:-1]]).cumsum(0))
        self.cat_embed = nn.Embedding(sum(cards), dim)
        self.cls = nn.Parameter(torch.randn(dim) / math.sqrt(dim))
        layer = nn.TransformerEncoderLayer(dim, 2, 2 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.ReLU(), nn.Linear(dim, 1))

    def forward(self, x_num, x_cat):  # (B, 5) float, (B, 2) int
        tokens = self.num_weight * x_num[..., None] + self.num_bias
        tokens = torch.cat([tokens, self.cat_embed(x_cat + self.cat_offsets)], dim=1)
        tokens = torch.cat([tokens, self.cls.expand(len(tokens), 1, -1)], dim=1)
        return self.head(self.encoder(tokens)[:, -1])


class DLinear(nn.Module):
    """DLinear (Zeng et al., AAAI 2023, Fig. 5): the series split by a moving average
    (replicate-padded ``AvgPool1d``) into trend and remainder, one Linear each over the time
    axis, shared across channels, summed."""

    def __init__(self, seq_len: int = 24, pred_len: int = 6, kernel: int = 5):
        super().__init__()
        self.kernel = kernel
        self.avg = nn.AvgPool1d(kernel, stride=1)
        self.linear_seasonal = nn.Linear(seq_len, pred_len)
        self.linear_trend = nn.Linear(seq_len, pred_len)

    def forward(self, x):  # (B, L, C)
        pad = (self.kernel - 1) // 2
        front, end = x[:, :1].repeat(1, pad, 1), x[:, -1:].repeat(1, pad, 1)
        trend = self.avg(torch.cat([front, x, end], 1).permute(0, 2, 1)).permute(0, 2, 1)
        seasonal = x - trend
        out = (self.linear_seasonal(seasonal.permute(0, 2, 1))
               + self.linear_trend(trend.permute(0, 2, 1)))
        return out.permute(0, 2, 1)  # (B, pred_len, C)


class _GlobalLayerNorm(nn.Module):
    """Conv-TasNet's gLN: normalised over channels and time, per-channel gain and bias."""

    def __init__(self, ch: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, ch, 1))
        self.beta = nn.Parameter(torch.zeros(1, ch, 1))

    def forward(self, x):
        mean = x.mean((1, 2), keepdim=True)
        var = ((x - mean) ** 2).mean((1, 2), keepdim=True)
        return self.gamma * (x - mean) / (var + 1e-8).sqrt() + self.beta


class _TasBlock(nn.Module):
    """A Conv-TasNet 1-D convolution block (Fig. 1C): 1x1 conv, PReLU, gLN, a dilated
    depthwise conv, PReLU, gLN, then residual and skip 1x1 convs."""

    def __init__(self, b: int, h: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv1d(b, h, 1)
        self.prelu1, self.norm1 = nn.PReLU(), _GlobalLayerNorm(h)
        self.dconv = nn.Conv1d(h, h, 3, dilation=dilation, padding=dilation, groups=h)
        self.prelu2, self.norm2 = nn.PReLU(), _GlobalLayerNorm(h)
        self.res = nn.Conv1d(h, b, 1)
        self.skip = nn.Conv1d(h, b, 1)

    def forward(self, x):
        y = self.norm1(self.prelu1(self.conv1(x)))
        y = self.norm2(self.prelu2(self.dconv(y)))
        return x + self.res(y), self.skip(y)


class ConvTasNet(nn.Module):
    """Conv-TasNet (Luo & Mesgarani, IEEE/ACM TASLP 2019, Fig. 1): a strided ``Conv1d``
    encoder with ReLU, a gLN and bottleneck, dilated blocks whose skip outputs are summed,
    PReLU and a 1x1 conv to one sigmoid mask per speaker, the masked encodings decoded by a
    ``ConvTranspose1d`` (overlap-add)."""

    def __init__(self, n: int = 16, L: int = 8, b: int = 8, h: int = 16, speakers: int = 2):
        super().__init__()
        self.speakers, self.n = speakers, n
        self.encoder = nn.Conv1d(1, n, L, stride=L // 2, bias=False)
        self.norm = _GlobalLayerNorm(n)
        self.bottleneck = nn.Conv1d(n, b, 1)
        self.blocks = nn.ModuleList(_TasBlock(b, h, 2 ** i) for i in range(3))
        self.prelu = nn.PReLU()
        self.mask = nn.Conv1d(b, speakers * n, 1)
        self.decoder = nn.ConvTranspose1d(n, 1, L, stride=L // 2, bias=False)

    def forward(self, wav):  # (B, 1, T)
        w = F.relu(self.encoder(wav))
        x = self.bottleneck(self.norm(w))
        skips = 0
        for block in self.blocks:
            x, s = block(x)
            skips = skips + s
        m = self.mask(self.prelu(skips)).sigmoid()
        m = m.reshape(len(wav), self.speakers, self.n, -1)
        out = self.decoder((w[:, None] * m).flatten(0, 1))
        return out.reshape(len(wav), self.speakers, -1)


class DeepSpeech2(nn.Module):
    """DeepSpeech 2 (Amodei et al., ICML 2016, Fig. 1): 2-D convolutions over the spectrogram
    with BatchNorm and clipped ReLU (hardtanh 0..20), the frequency axis folded into features,
    a bidirectional GRU whose directions are summed, a Linear to the characters,
    log-softmax (for CTC)."""

    def __init__(self, n_freq: int = 16, hidden: int = 12, n_chars: int = 7):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 4, (5, 3), stride=(2, 1), padding=(2, 1), bias=False),
            nn.BatchNorm2d(4), nn.Hardtanh(0, 20),
            nn.Conv2d(4, 4, (5, 3), stride=(2, 1), padding=(2, 1), bias=False),
            nn.BatchNorm2d(4), nn.Hardtanh(0, 20))
        self.rnn = nn.GRU(4 * n_freq // 4, hidden, batch_first=True, bidirectional=True)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc = nn.Linear(hidden, n_chars)

    def forward(self, spec):  # (B, 1, F, T)
        x = self.conv(spec)
        b, c, f, t = x.shape
        x, _ = self.rnn(x.reshape(b, c * f, t).transpose(1, 2))
        x = x[..., :x.shape[-1] // 2] + x[..., x.shape[-1] // 2:]  # directions summed
        x = self.bn(x.transpose(1, 2)).transpose(1, 2)
        return self.fc(x).log_softmax(-1)


class NeuMF(nn.Module):
    """Neural collaborative filtering's NeuMF (He et al., WWW 2017, Fig. 3): GMF (user and
    item embeddings multiplied elementwise) beside an MLP on the concatenated embeddings of
    its own tables, concatenated into a Linear and a sigmoid."""

    def __init__(self, users: int = 11, items: int = 13, d: int = 6):
        super().__init__()
        self.gmf_user, self.gmf_item = nn.Embedding(users, d), nn.Embedding(items, d)
        self.mlp_user, self.mlp_item = nn.Embedding(users, d), nn.Embedding(items, d)
        self.mlp = nn.Sequential(nn.Linear(2 * d, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU())
        self.predict = nn.Linear(d + 4, 1)

    def forward(self, user, item):  # (B,) int, (B,) int
        gmf = self.gmf_user(user) * self.gmf_item(item)
        mlp = self.mlp(torch.cat([self.mlp_user(user), self.mlp_item(item)], -1))
        return self.predict(torch.cat([gmf, mlp], -1)).sigmoid()

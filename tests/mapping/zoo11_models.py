"""The eleventh zoo's models (``test_zoo11.py``): weights used in unusual ways. Stored patterns
as keys and values, a codebook read by distances, learned queries, a graph built in the
forward, one tower on several inputs, a layer called many times per forward, data-dependent
depth, a string choosing the head, filters generated and applied by FFT, a matrix memory,
hand-written attention biases, weights recomputed in the forward (DoRA, BitNet, standardised
convolutions), a transposed tied decoder, a ParameterList, batched experts in one 3-D
Parameter, embeddings with ``max_norm`` / ``padding_idx``, an LSTM on a PackedSequence, and
models built with ``skip_init``. Small, written here from the papers' descriptions (no model
library imported); widths are tiny."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .zoo10_models import mlp as _mlp


def mlp(*widths: int, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    return _mlp(*widths, act=act)  # the tenth zoo's, ReLU by default here


# ---------------------------------------------------------------------------------------------
# Associative memories, codebooks, sampling
# ---------------------------------------------------------------------------------------------
class Hopfield(nn.Module):
    """A modern Hopfield layer (Ramsauer et al., ICLR 2021, "Hopfield Networks is All You
    Need"): the state pattern retrieves softmax(beta · q Wᵀ) W from stored patterns W, one
    Parameter used as keys and as values."""

    def __init__(self, d: int = 8, n_patterns: int = 6, beta: float = 2.0):
        super().__init__()
        self.query = nn.Linear(d, d)
        self.patterns = nn.Parameter(torch.randn(n_patterns, d) / math.sqrt(d))
        self.head = nn.Linear(d, 3)
        self.beta = beta

    def forward(self, x):
        q = self.query(x)
        retrieved = torch.softmax(self.beta * q @ self.patterns.t(), dim=-1) @ self.patterns
        return self.head(retrieved)


class VQVAE(nn.Module):
    """A VQ-VAE bottleneck (van den Oord et al., NeurIPS 2017): each encoding replaced by its
    nearest codebook entry (``torch.cdist`` + argmin, a weight read by distances, not by a
    matrix product), gradients passed straight through; the decoder reads the code."""

    def __init__(self, d_in: int = 8, d: int = 4, n_codes: int = 5):
        super().__init__()
        self.encoder = mlp(d_in, 8, d)
        self.codebook = nn.Parameter(torch.randn(n_codes, d))
        self.decoder = mlp(d, 8, d_in)

    def forward(self, x):
        z = self.encoder(x)
        idx = torch.cdist(z, self.codebook).argmin(dim=-1)
        q = self.codebook[idx]
        q = z + (q - z).detach()  # straight-through estimator
        return self.decoder(q)


class CosinePrototypes(nn.Module):
    """A cosine classifier over learned class prototypes (Snell et al., NeurIPS 2017's
    prototypes; Gidaris & Komodakis, CVPR 2018's cosine head): ``F.cosine_similarity`` of the
    embedding with every prototype, a weight read by a similarity, not by a matrix product."""

    def __init__(self, d_in: int = 8, d: int = 6, n_classes: int = 4, scale: float = 10.0):
        super().__init__()
        self.encoder = mlp(d_in, 12, d)
        self.prototypes = nn.Parameter(torch.randn(n_classes, d))
        self.scale = scale

    def forward(self, x):
        h = self.encoder(x)
        return self.scale * F.cosine_similarity(h[:, None], self.prototypes[None], dim=-1)


class GumbelNet(nn.Module):
    """A categorical latent sampled by ``F.gumbel_softmax(hard=True)`` in the forward (Jang et
    al., ICLR 2017): a one-hot draw from the global generator, read by a Linear."""

    def __init__(self, d: int = 6, k: int = 4):
        super().__init__()
        self.logits = nn.Linear(d, k)
        self.out = nn.Linear(k, 3)

    def forward(self, x):
        y = F.gumbel_softmax(self.logits(x), tau=0.5, hard=True)
        return self.out(y)


# ---------------------------------------------------------------------------------------------
# Sets, point clouds, metric learning
# ---------------------------------------------------------------------------------------------
class ISAB(nn.Module):
    """Induced set attention (Lee et al., ICML 2019, Set Transformer): m learned inducing
    points (a Parameter) are the queries attending to the set, then the set attends to them."""

    def __init__(self, d: int = 8, m: int = 3, heads: int = 2):
        super().__init__()
        self.inducing = nn.Parameter(torch.randn(1, m, d))
        self.mab1 = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mab2 = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ff = mlp(d, d, d)

    def forward(self, x):
        i = self.inducing.expand(x.shape[0], -1, -1)
        h = i + self.mab1(i, x, x, need_weights=False)[0]
        x = x + self.mab2(x, h, h, need_weights=False)[0]
        return x + self.ff(x)


class SetTransformer(nn.Module):
    def __init__(self, d_in: int = 3, d: int = 8):
        super().__init__()
        self.embed = nn.Linear(d_in, d)
        self.isab = ISAB(d)
        self.seed = nn.Parameter(torch.randn(1, 1, d))  # PMA's seed vector: pooling by attention
        self.pma = nn.MultiheadAttention(d, 2, batch_first=True)
        self.head = nn.Linear(d, 2)

    def forward(self, x):  # x (B, N, d_in): a set, order-free
        h = self.isab(self.embed(x))
        s = self.seed.expand(x.shape[0], -1, -1)
        return self.head(self.pma(s, h, h, need_weights=False)[0][:, 0])


class EdgeConv(nn.Module):
    """DGCNN's EdgeConv (Wang et al., ACM TOG 2019): a kNN graph built in the forward from the
    features, h(x_i, x_j - x_i) by a 1x1 Conv2d on every edge, max over the neighbours."""

    def __init__(self, d_in: int, d_out: int, k: int = 3):
        super().__init__()
        self.k = k
        self.conv = nn.Sequential(nn.Conv2d(2 * d_in, d_out, 1, bias=False),
                                  nn.BatchNorm2d(d_out), nn.LeakyReLU(0.2))

    def forward(self, x):  # x (B, C, N)
        b, c, n = x.shape
        pts = x.transpose(1, 2)
        idx = torch.cdist(pts, pts).topk(self.k + 1, largest=False).indices[..., 1:]  # (B, N, k)
        nbrs = torch.gather(pts[:, None].expand(b, n, n, c), 2,
                            idx[..., None].expand(b, n, self.k, c))  # (B, N, k, C)
        centre = pts[:, :, None].expand_as(nbrs)
        edges = torch.cat([centre, nbrs - centre], dim=-1).permute(0, 3, 1, 2)  # (B, 2C, N, k)
        return self.conv(edges).amax(dim=-1)


class DGCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.ec1 = EdgeConv(3, 8)
        self.ec2 = EdgeConv(8, 8)
        self.head = nn.Linear(16, 4)

    def forward(self, x):  # (B, 3, N) points
        h1 = self.ec1(x)
        h2 = self.ec2(h1)
        return self.head(torch.cat([h1, h2], dim=1).amax(dim=-1))


class Triplet(nn.Module):
    """A Siamese / triplet tower (Schroff et al., CVPR 2015, FaceNet): one embedding network
    called on the anchor, the positive and the negative; distances out."""

    def __init__(self):
        super().__init__()
        self.tower = mlp(8, 12, 6)

    def forward(self, anchor, positive, negative):
        a, p, n = (F.normalize(self.tower(t), dim=-1) for t in (anchor, positive, negative))
        return torch.stack([(a - p).pow(2).sum(-1), (a - n).pow(2).sum(-1)], dim=-1)


# ---------------------------------------------------------------------------------------------
# Control flow: loops over one layer, data-dependent depth, a string choosing the head
# ---------------------------------------------------------------------------------------------
class ODENet(nn.Module):
    """ODE-Net (Chen et al., NeurIPS 2018, the MNIST model): a downsampling stem, then an ODE
    block whose dynamics are convolutions reading the time as an extra channel, integrated by
    fixed-step RK4: the same two Conv2d called 4 x steps times per forward (the seventh zoo's
    neural ODE integrates an MLP)."""

    def __init__(self, c: int = 4, steps: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, stride=2, padding=1)
        self.conv1 = nn.Conv2d(c + 1, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c + 1, c, 3, padding=1)
        self.norm = nn.GroupNorm(2, c)
        self.head = nn.Linear(c, 3)
        self.steps = steps

    def dynamics(self, t: float, y):
        tt = torch.full_like(y[:, :1], t)
        h = torch.tanh(self.conv1(torch.cat([tt, y], dim=1)))
        return self.conv2(torch.cat([tt, self.norm(h)], dim=1))

    def forward(self, x):
        y = F.relu(self.stem(x))
        h = 1.0 / self.steps
        for i in range(self.steps):
            t = i * h
            k1 = self.dynamics(t, y)
            k2 = self.dynamics(t + h / 2, y + h / 2 * k1)
            k3 = self.dynamics(t + h / 2, y + h / 2 * k2)
            k4 = self.dynamics(t + h, y + h * k3)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return self.head(y.mean(dim=(2, 3)))


class MultiTask(nn.Module):
    """A shared trunk, heads in an ``nn.ModuleDict`` chosen by a string argument
    (``forward(x, task="cls")``), the features returned with the output on request."""

    def __init__(self, d: int = 8):
        super().__init__()
        self.trunk = mlp(d, 12, 8)
        self.heads = nn.ModuleDict({"cls": nn.Linear(8, 3), "reg": mlp(8, 4, 1)})

    def forward(self, x, task: str = "cls", return_features: bool = False):
        feats = F.relu(self.trunk(x))
        out = self.heads[task](feats)
        return (out, feats) if return_features else out


# ---------------------------------------------------------------------------------------------
# Sequence mixers: FFT convolution, matrix memory, attention biases
# ---------------------------------------------------------------------------------------------
class HyenaFilter(nn.Module):
    """Hyena's implicit long filter (Poli et al., ICML 2023): h(t) = FFN(positional features of
    t) · exp(-decay · t), generated in the forward for the sequence length, applied to the
    whole sequence by an FFT convolution (torch.fft)."""

    def __init__(self, d: int, max_len: int = 32, n_freq: int = 3):
        super().__init__()
        t = torch.linspace(0, 1, max_len)[:, None]
        f = torch.arange(1, n_freq + 1)[None]
        self.register_buffer("z", torch.cat([t, torch.sin(2 * math.pi * f * t),
                                             torch.cos(2 * math.pi * f * t)], dim=-1))
        self.ffn = mlp(1 + 2 * n_freq, 8, d, act=nn.GELU)
        self.register_buffer("decay", torch.linspace(0.5, 3.0, d))

    def forward(self, u):  # u (B, d, L)
        length = u.shape[-1]
        t = self.z[:length, :1]
        h = (self.ffn(self.z[:length]) * torch.exp(-self.decay * t)).t()  # (d, L)
        n = 2 * length  # zero-padded: a linear (causal) convolution, not a circular one
        y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(h, n=n), n=n)[..., :length]
        return y


class Hyena(nn.Module):
    """A Hyena operator of order 2: projections, a short depthwise conv, two gated long
    convolutions."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.in_proj = nn.Linear(d, 3 * d)
        self.short = nn.Conv1d(3 * d, 3 * d, 3, padding=2, groups=3 * d)
        self.filters = nn.ModuleList([HyenaFilter(d), HyenaFilter(d)])
        self.out_proj = nn.Linear(d, d)

    def forward(self, x):  # (B, L, d)
        length = x.shape[1]
        z = self.short(self.in_proj(x).transpose(1, 2))[..., :length]
        v, x1, x2 = z.chunk(3, dim=1)
        v = x1 * self.filters[0](v)
        v = x2 * self.filters[1](v)
        return self.out_proj(v.transpose(1, 2))


class MLSTM(nn.Module):
    """xLSTM's mLSTM cell (Beck et al., NeurIPS 2024): a matrix memory C_t = f C + i v kᵀ, a
    normaliser n_t = f n + i k, h = o ⊙ C q / max(|nᵀq|, 1); exponential input gate with the
    stabiliser m_t."""

    def __init__(self, d_in: int = 4, d: int = 6):
        super().__init__()
        self.qkv = nn.Linear(d_in, 3 * d)
        self.gates = nn.Linear(d_in, 2)  # input and forget pre-activations (scalar per head)
        self.o = nn.Linear(d_in, d)
        self.head = nn.Linear(d, 2)
        self.d = d

    def forward(self, x):  # (B, L, d_in)
        b, length, _ = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        k = k / math.sqrt(self.d)
        ig, fg = self.gates(x).unbind(-1)
        o = torch.sigmoid(self.o(x))
        c = x.new_zeros(b, self.d, self.d)
        n = x.new_zeros(b, self.d)
        m = x.new_zeros(b)
        hs = []
        for t in range(length):
            logf = F.logsigmoid(fg[:, t])
            m_new = torch.maximum(logf + m, ig[:, t])
            i = torch.exp(ig[:, t] - m_new)[:, None]
            f = torch.exp(logf + m - m_new)[:, None]
            c = f[..., None] * c + i[..., None] * v[:, t, :, None] * k[:, t, None, :]
            n = f * n + i * k[:, t]
            num = torch.einsum("bij,bj->bi", c, q[:, t])
            den = torch.maximum((n * q[:, t]).sum(-1).abs(), torch.exp(-m_new))[:, None]
            hs.append(o[:, t] * num / den)
            m = m_new
        return self.head(torch.stack(hs, dim=1))


class AlibiAttention(nn.Module):
    """ALiBi biases (Press et al., ICLR 2022: -slope_h · |i - j|, computed in the forward for the
    length) and a causal sliding window (Beltagy et al., 2020, Longformer; Mistral 7B's window):
    keys further back than ``window`` masked, both as one float ``attn_mask`` of
    ``F.scaled_dot_product_attention`` (the seventh zoo's ALiBi writes the softmax by hand)."""

    def __init__(self, d: int = 8, heads: int = 2, window: int = 3):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.heads, self.window = heads, window
        self.register_buffer("slopes", torch.tensor([2.0 ** (-8 * (h + 1) / heads)
                                                     for h in range(heads)]))

    def forward(self, x):
        b, length, d = x.shape
        q, k, v = (t.reshape(b, length, self.heads, -1).transpose(1, 2)
                   for t in self.qkv(x).chunk(3, dim=-1))
        pos = torch.arange(length)
        dist = pos[:, None] - pos[None, :]  # i - j
        bias = -self.slopes[:, None, None] * dist.abs().to(x.dtype)  # (H, L, L)
        allowed = (dist >= 0) & (dist < self.window)
        mask = bias.masked_fill(~allowed, float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(b, length, d))


class AlibiLM(nn.Module):
    def __init__(self, vocab: int = 10, d: int = 8):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.attn = AlibiAttention(d)
        self.norm = nn.LayerNorm(d)
        self.ff = mlp(d, 16, d, act=nn.GELU)
        self.lm_head = nn.Linear(d, vocab)

    def forward(self, ids):
        h = self.emb(ids)
        h = h + self.attn(self.norm(h))
        h = h + self.ff(self.norm(h))
        return self.lm_head(h)


# ---------------------------------------------------------------------------------------------
# Weights recomputed in the forward
# ---------------------------------------------------------------------------------------------
class DoRALinear(nn.Module):
    """DoRA (Liu et al., ICML 2024): W = m · (W0 + B A) / ‖W0 + B A‖ (column norms), the
    magnitude and the normalised direction combined in the forward, applied by F.linear."""

    def __init__(self, d_in: int, d_out: int, r: int = 2):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d_out, d_in) / math.sqrt(d_in))  # W0, frozen
        self.weight.requires_grad_(False)
        self.bias = nn.Parameter(torch.zeros(d_out))
        self.lora_a = nn.Parameter(torch.randn(r, d_in) * 0.1)
        self.lora_b = nn.Parameter(torch.randn(d_out, r) * 0.1)
        self.magnitude = nn.Parameter(self.weight.norm(dim=1, keepdim=True).clone())

    def forward(self, x):
        w = self.weight + self.lora_b @ self.lora_a
        return F.linear(x, self.magnitude * w / w.norm(dim=1, keepdim=True), self.bias)


class DoRANet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = DoRALinear(8, 12)
        self.fc2 = nn.Linear(12, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class BitLinear(nn.Linear):
    """BitNet b1.58 (Ma et al., 2024): the weight quantised to {-1, 0, +1} · mean|W| in the
    layer's own forward (absmean), the activations to 8 bits (absmax), straight-through."""

    def forward(self, x):
        scale = self.weight.abs().mean().clamp(min=1e-5)
        w = self.weight + ((self.weight / scale).round().clamp(-1, 1) * scale
                           - self.weight).detach()
        s = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
        xq = x + ((x * s).round().clamp(-128, 127) / s - x).detach()
        return F.linear(xq, w, self.bias)


class BitNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = BitLinear(8, 12)
        self.norm = nn.LayerNorm(12)
        self.fc2 = BitLinear(12, 12)
        self.head = nn.Linear(12, 3)  # the classifier in full precision, as BitNet keeps it

    def forward(self, x):
        return self.head(self.norm(self.fc2(F.relu(self.fc1(x)))))


class Standardize(nn.Module):
    """NFNet's scaled weight standardisation (Brock et al., ICLR 2021, "High-Performance
    Large-Scale Image Recognition Without Normalization"): each output channel's weight to
    zero mean and unit fan-in variance, as a ``torch.nn.utils.parametrize`` parametrization
    (the third zoo's ``StdConv2d`` overrides its forward instead)."""

    def forward(self, w):
        fan_in = w[0].numel()
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return (w - mean) / torch.sqrt(var * fan_in + 1e-4)


class NFNet(nn.Module):
    """A normaliser-free residual block: standardised convolutions (the standardisation
    computed from the weight alone: programmed once), a learned gain, scaled GELU, alpha."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.stem = parametrize.register_parametrization(nn.Conv2d(2, c, 3, padding=1),
                                                         "weight", Standardize())
        self.conv = parametrize.register_parametrization(nn.Conv2d(c, c, 3, padding=1),
                                                         "weight", Standardize())
        self.gain = nn.Parameter(torch.ones(1, c, 1, 1))
        self.head = nn.Linear(c, 3)

    def forward(self, x):
        h = F.gelu(self.stem(x)) * 1.7015  # NFNet's scaled GELU: unit output variance
        h = h + 0.2 * F.gelu(self.conv(h)) * self.gain
        return self.head(h.mean(dim=(2, 3)))


# ---------------------------------------------------------------------------------------------
# Weights shared, listed, batched
# ---------------------------------------------------------------------------------------------
class TiedAutoencoder(nn.Module):
    """An autoencoder whose decoder is the encoder's transpose (F.linear(h, W.t()))."""

    def __init__(self, d: int = 10, h: int = 4):
        super().__init__()
        self.encoder = nn.Linear(d, h)
        self.dec_bias = nn.Parameter(torch.zeros(d))

    def forward(self, x):
        return F.linear(torch.sigmoid(self.encoder(x)), self.encoder.weight.t(), self.dec_bias)


class ParamListMLP(nn.Module):
    """Weights in an ``nn.ParameterList`` applied by F.linear in a loop."""

    def __init__(self, widths=(8, 10, 10, 3)):
        super().__init__()
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(b, a) / math.sqrt(a)) for a, b in zip(widths[:-1],
                                                                           widths[1:], strict=True))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(b)) for b in widths[1:])
        self.inp = nn.Linear(widths[0], widths[0])

    def forward(self, x):
        x = self.inp(x)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = F.linear(x, w, b)
            if i < len(self.weights) - 1:
                x = F.relu(x)
        return x


class BatchedExperts(nn.Module):
    """Mixtral-style sparse MoE (Jiang et al., 2024) with the experts' weights in one 3-D
    Parameter each (E, d, h), gathered for the top-2 experts and applied by einsum / bmm."""

    def __init__(self, d: int = 8, h: int = 12, n_experts: int = 4, top_k: int = 2):
        super().__init__()
        self.router = nn.Linear(d, n_experts, bias=False)
        self.w1 = nn.Parameter(torch.randn(n_experts, d, h) / math.sqrt(d))
        self.w2 = nn.Parameter(torch.randn(n_experts, h, d) / math.sqrt(h))
        self.top_k = top_k
        self.head = nn.Linear(d, 3)

    def forward(self, x):  # (B, d)
        gates, idx = torch.softmax(self.router(x), dim=-1).topk(self.top_k, dim=-1)
        gates = gates / gates.sum(-1, keepdim=True)
        out = 0
        for j in range(self.top_k):
            h = F.silu(torch.einsum("bd,bdh->bh", x, self.w1[idx[:, j]]))
            y = torch.bmm(h[:, None], self.w2[idx[:, j]])[:, 0]
            out = out + gates[:, j:j + 1] * y
        return self.head(x + out)


class MaxNormEmbedding(nn.Module):
    """``nn.Embedding(max_norm=1.0)``: the looked-up rows renormalised IN PLACE in the forward
    (torch's ``embedding_renorm_``), then a bag mean and a Linear."""

    def __init__(self, vocab: int = 12, d: int = 6):
        super().__init__()
        self.emb = nn.Embedding(vocab, d, max_norm=1.0)
        with torch.no_grad():
            self.emb.weight.mul_(3.0)  # rows longer than max_norm: the renorm changes them
        self.fc = nn.Linear(d, 3)

    def forward(self, ids):
        return self.fc(self.emb(ids).mean(dim=1))


class PaddedEmbedding(nn.Module):
    """``nn.Embedding(padding_idx=0)`` (a zero row, no gradient) and a masked mean."""

    def __init__(self, vocab: int = 12, d: int = 6):
        super().__init__()
        self.emb = nn.Embedding(vocab, d, padding_idx=0)
        self.fc = mlp(d, 8, 3)

    def forward(self, ids):
        mask = (ids != 0).to(self.emb.weight.dtype)[..., None]
        return self.fc((self.emb(ids) * mask).sum(1) / mask.sum(1).clamp(min=1))


class PackedLSTM(nn.Module):
    """An LSTM fed a PackedSequence (variable lengths), the last valid state classified."""

    def __init__(self, d_in: int = 4, hidden: int = 6, bidirectional: bool = False):
        super().__init__()
        self.lstm = nn.LSTM(d_in, hidden, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), 3)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h, _) = self.lstm(packed)
        padded, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        last = torch.cat(list(h[-2:] if self.lstm.bidirectional else h[-1:]), dim=-1)
        return torch.cat([self.head(last), padded.sum(1)], dim=-1)


class SkipInitNet(nn.Module):
    """Layers built by ``torch.nn.utils.skip_init`` (no initialisation, memory as found), then
    initialised by hand, as large-model loaders do."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.utils.skip_init(nn.Linear, 8, 12)
        self.fc2 = torch.nn.utils.skip_init(nn.Linear, 12, 3)
        for fc in (self.fc1, self.fc2):
            nn.init.kaiming_uniform_(fc.weight, a=math.sqrt(5))
            nn.init.uniform_(fc.bias, -0.1, 0.1)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))

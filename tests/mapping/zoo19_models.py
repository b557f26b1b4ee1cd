"""The nineteenth zoo's models (``test_zoo19.py``): model families at toy size that the eighteen
earlier zoos did not build, chosen for ways weights reach a product that no zoo used. Slices of
one weight: Matryoshka representation heads (nested column slices of one ``nn.Linear``'s
weight, ``F.linear(z[:, :m], head.weight[:, :m])``) and a slimmable network (row and column
blocks of a ``Parameter`` at several widths in one forward). Weights mixing tasks, heads or
slots: cross-stitch units (a learned 2x2 matrix mixing two task towers), talking-heads attention
(learned head-by-head matrices on the logits and on the weights), Soft MoE (slots dispatched and
combined by a learned ``Parameter`` times the tokens), a product-key memory (sub-key products,
top-k, an ``nn.EmbeddingBag`` with ``per_sample_weights``) and the Attention Free Transformer
(a learned pairwise position bias, exponentiated, on the left of the values). Noise and other
arithmetic: NoisyNet's noisy linear layers (weights ``mu + sigma * eps``, ``eps`` a buffer
resampled in training), an extreme learning machine (a random layer whose weight and bias are
buffers of an ``nn.Linear``), a factorization machine (one factor matrix times the features and,
squared, times their squares), Maxout units, octave convolutions (a high- and a low-frequency
path exchanging through pooling and upsampling), a quasi-recurrent network (a causal
convolution and fo-pooling) and a mixture of softmaxes (one decoder on K latent contexts).
Small, written here from the papers' descriptions (no model library imported); widths are
tiny."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------------------------------------
# Slices of one weight
# ---------------------------------------------------------------------------------------------
class Matryoshka(nn.Module):
    """Matryoshka representation learning (Kusupati et al., NeurIPS 2022, Sec. 3): one encoder,
    one classifier whose leading ``m`` columns classify the leading ``m`` features of the
    embedding, for nested ``m`` (the MRL-E weight-tied head); the logits of every granularity
    summed (the training loss sums their losses)."""

    def __init__(self, d: int = 6, e: int = 8, n: int = 4, dims: tuple[int, ...] = (2, 4, 8)):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(d, e), nn.ReLU(), nn.Linear(e, e))
        self.head = nn.Linear(e, n)
        self.dims = dims

    def forward(self, x):
        z = self.enc(x)
        return sum(F.linear(z[:, :m], self.head.weight[:, :m], self.head.bias)
                   for m in self.dims)


class Slimmable(nn.Module):
    """A slimmable network (Yu et al., ICLR 2019, Sec. 3): one weight ``Parameter`` per layer,
    run at several widths, each width the leading output rows and input columns of it; the
    widths' outputs averaged (the in-place distillation's ensemble at inference). The last layer
    is an ``nn.Linear`` called on each width's features padded to its full input."""

    def __init__(self, d: int = 6, h: int = 8, n: int = 3,
                 widths: tuple[float, ...] = (0.5, 0.75, 1.0)):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(h, d) / math.sqrt(d))
        self.b1 = nn.Parameter(torch.zeros(h))
        self.w2 = nn.Parameter(torch.randn(h, h) / math.sqrt(h))
        self.head = nn.Linear(h, n)
        self.widths = [int(round(h * r)) for r in widths]

    def forward(self, x):
        outs = []
        for m in self.widths:
            a = torch.relu(F.linear(x, self.w1[:m], self.b1[:m]))
            a = torch.relu(F.linear(a, self.w2[:m, :m]))
            outs.append(self.head(F.pad(a, (0, self.w2.shape[0] - m))))
        return torch.stack(outs).mean(0)


# ---------------------------------------------------------------------------------------------
# Weights mixing tasks, heads or slots
# ---------------------------------------------------------------------------------------------
class CrossStitch(nn.Module):
    """Cross-stitch networks (Misra et al., CVPR 2016, Eq. 1): two task towers whose activations
    a learned 2x2 matrix per layer mixes (``einsum('ij,jbd->ibd')``), initialised near the
    identity; a head per task."""

    def __init__(self, d: int = 6, h: int = 8, n: int = 3):
        super().__init__()
        self.a = nn.ModuleList([nn.Linear(d, h), nn.Linear(h, h)])
        self.b = nn.ModuleList([nn.Linear(d, h), nn.Linear(h, h)])
        self.stitch = nn.ParameterList([nn.Parameter(torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
                                        for _ in range(2)])
        self.head_a = nn.Linear(h, n)
        self.head_b = nn.Linear(h, 2)

    def forward(self, x):
        xa = xb = x
        for la, lb, s in zip(self.a, self.b, self.stitch, strict=True):
            both = torch.stack([torch.relu(la(xa)), torch.relu(lb(xb))])
            xa, xb = torch.einsum("ij,jbd->ibd", s, both)
        return torch.cat([self.head_a(xa), self.head_b(xb)], -1)


class TalkingHeads(nn.Module):
    """Talking-heads attention (Shazeer et al., arXiv:2003.02436, 2020, Alg. 2): the heads'
    logits mixed by a learned ``h x h`` matrix before the softmax and the weights by another
    after it (``einsum('bhts,hg->bgts')``); a classifier on the mean token."""

    def __init__(self, d: int = 8, heads: int = 4, n: int = 3):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.pre = nn.Parameter(torch.eye(heads) + 0.1 * torch.randn(heads, heads))
        self.post = nn.Parameter(torch.eye(heads) + 0.1 * torch.randn(heads, heads))
        self.out = nn.Linear(d, d)
        self.head = nn.Linear(d, n)
        self.h = heads

    def forward(self, x):  # (B, T, D)
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-1, -2) / math.sqrt(d // self.h)
        logits = torch.einsum("bhts,hg->bgts", logits, self.pre)
        w = torch.einsum("bhts,hg->bgts", logits.softmax(-1), self.post)
        y = (w @ v).transpose(1, 2).reshape(b, t, d)
        return self.head((x + self.out(y)).mean(1))


class SoftMoE(nn.Module):
    """Soft mixture of experts (Puigcerver et al., ICLR 2024, Sec. 2.1): slot logits are the
    tokens times a learned ``Parameter`` ``phi``; each slot takes a softmax-over-tokens
    average of them, each expert processes its slots, each token a softmax-over-slots average
    of the slots' outputs."""

    def __init__(self, d: int = 6, experts: int = 3, slots: int = 2, n: int = 3):
        super().__init__()
        self.inp = nn.Linear(d, d)
        self.phi = nn.Parameter(torch.randn(d, experts * slots) / math.sqrt(d))
        self.experts = nn.ModuleList([nn.Sequential(nn.Linear(d, 8), nn.GELU(), nn.Linear(8, d))
                                      for _ in range(experts)])
        self.head = nn.Linear(d, n)
        self.slots = slots

    def forward(self, x):  # (B, T, D)
        x = self.inp(x)
        logits = x @ self.phi  # (B, T, E S)
        dispatch = logits.softmax(1)
        combine = logits.softmax(-1)
        slot_in = dispatch.transpose(1, 2) @ x  # (B, E S, D)
        parts = slot_in.split(self.slots, 1)
        outs = [e(s) for e, s in zip(self.experts, parts, strict=True)]
        y = combine @ torch.cat(outs, 1)  # (B, T, D)
        return self.head((x + y).mean(1))


class ProductKeyMemory(nn.Module):
    """A product-key memory layer (Lample et al., NeurIPS 2019, Sec. 3): the query split in two
    halves, each scored against its sub-keys, the top-k of each combined, the top-k of the
    ``k^2`` sums' softmax weighting their values, read by ``nn.EmbeddingBag`` with
    ``per_sample_weights``."""

    def __init__(self, d: int = 6, dk: int = 4, n_sub: int = 5, k: int = 2, n: int = 3):
        super().__init__()
        self.query = nn.Linear(d, 2 * dk)
        self.keys1 = nn.Parameter(torch.randn(n_sub, dk) / math.sqrt(dk))
        self.keys2 = nn.Parameter(torch.randn(n_sub, dk) / math.sqrt(dk))
        self.values = nn.EmbeddingBag(n_sub * n_sub, d, mode="sum")
        self.head = nn.Linear(d, n)
        self.n_sub, self.k = n_sub, k

    def forward(self, x):  # (B, D)
        q1, q2 = self.query(x).chunk(2, -1)
        s1, i1 = (q1 @ self.keys1.t()).topk(self.k, -1)
        s2, i2 = (q2 @ self.keys2.t()).topk(self.k, -1)
        scores = (s1[:, :, None] + s2[:, None, :]).flatten(1)
        index = (i1[:, :, None] * self.n_sub + i2[:, None, :]).flatten(1)
        best, pick = scores.topk(self.k, -1)
        mem = self.values(index.gather(1, pick), per_sample_weights=best.softmax(-1))
        return self.head(x + mem)


class AFTFull(nn.Module):
    """The Attention Free Transformer, AFT-full (Zhai et al., arXiv:2105.14103, 2021, Eq. 2):
    ``sigmoid(Q) * (exp(w) @ (exp(K) * V)) / (exp(w) @ exp(K))`` with a learned pairwise
    position bias ``w`` (T x T), the keys' maximum taken out for stability."""

    def __init__(self, d: int = 5, t: int = 6, n: int = 3):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.w = nn.Parameter(0.1 * torch.randn(t, t))
        self.out = nn.Linear(d, d)
        self.head = nn.Linear(d, n)

    def forward(self, x):  # (B, T, D)
        k = self.k(x)
        ek = (k - k.amax(1, keepdim=True)).exp()
        ew = (self.w - self.w.amax()).exp()
        num = torch.einsum("ts,bsd->btd", ew, ek * self.v(x))
        den = torch.einsum("ts,bsd->btd", ew, ek)
        y = torch.sigmoid(self.q(x)) * num / den
        return self.head((x + self.out(y)).mean(1))


# ---------------------------------------------------------------------------------------------
# Noise and other arithmetic
# ---------------------------------------------------------------------------------------------
class NoisyLinear(nn.Module):
    """A noisy linear layer with factorised Gaussian noise (Fortunato et al., ICLR 2018, Sec.
    3): ``y = (mu_w + sigma_w * eps_w) x + mu_b + sigma_b * eps_b``, the noise buffers
    resampled (set anew) at every training forward, the means alone at evaluation (Sec. 3.1)."""

    def __init__(self, d_in: int, d_out: int, sigma0: float = 0.5):
        super().__init__()
        bound = 1 / math.sqrt(d_in)
        self.mu_w = nn.Parameter(torch.empty(d_out, d_in).uniform_(-bound, bound))
        self.mu_b = nn.Parameter(torch.empty(d_out).uniform_(-bound, bound))
        self.sigma_w = nn.Parameter(torch.full((d_out, d_in), sigma0 * bound))
        self.sigma_b = nn.Parameter(torch.full((d_out,), sigma0 * bound))
        self.register_buffer("eps_w", torch.zeros(d_out, d_in))
        self.register_buffer("eps_b", torch.zeros(d_out))

    @staticmethod
    def _f(x):
        return x.sign() * x.abs().sqrt()

    def forward(self, x):
        if not self.training:
            return F.linear(x, self.mu_w, self.mu_b)
        e_in = self._f(torch.randn(self.mu_w.shape[1], dtype=x.dtype))
        e_out = self._f(torch.randn(self.mu_w.shape[0], dtype=x.dtype))
        # reassigned, not copied into: a second training forward before the backward (an
        # augmented loss) must not change the noise the first one's graph holds
        self.eps_w = torch.outer(e_out, e_in)
        self.eps_b = e_out
        return F.linear(x, self.mu_w + self.sigma_w * self.eps_w,
                        self.mu_b + self.sigma_b * self.eps_b)


class NoisyDQN(nn.Module):
    """A dueling Q-network head of NoisyNet layers (Fortunato et al., ICLR 2018, Sec. 3.1):
    a plain torso, noisy value and advantage streams."""

    def __init__(self, d: int = 6, h: int = 8, actions: int = 3):
        super().__init__()
        self.torso = nn.Sequential(nn.Linear(d, h), nn.ReLU())
        self.value = NoisyLinear(h, 1)
        self.adv = NoisyLinear(h, actions)

    def forward(self, x):
        z = self.torso(x)
        a = self.adv(z)
        return self.value(z) + a - a.mean(-1, keepdim=True)


class DeepFM(nn.Module):
    """DeepFM (Guo et al., IJCAI 2017, Eq. 2-4) on dense features: the factorization machine's
    pairwise term (Rendle, ICDM 2010, Eq. 5) ``0.5 * sum((x V)^2 - (x^2)(V^2))`` with one factor
    matrix ``V`` times the features and, squared, times their squares, a linear term and an
    MLP on the features."""

    def __init__(self, d: int = 6, k: int = 4, h: int = 8):
        super().__init__()
        self.V = nn.Parameter(0.3 * torch.randn(d, k))
        self.lin = nn.Linear(d, 1)
        self.deep = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, 1))

    def forward(self, x):  # (B, D)
        pair = 0.5 * ((x @ self.V).square() - x.square() @ self.V.square()).sum(-1, keepdim=True)
        return self.lin(x) + pair + self.deep(x)


class Maxout(nn.Module):
    """A Maxout network (Goodfellow et al., ICML 2013, Eq. 1): each unit the maximum of ``k``
    affine pieces, one Linear producing all pieces."""

    def __init__(self, d: int = 6, h: int = 4, k: int = 3, n: int = 3):
        super().__init__()
        self.l1 = nn.Linear(d, h * k)
        self.l2 = nn.Linear(h, h * k)
        self.head = nn.Linear(h, n)
        self.k = k

    def _max(self, y):
        return y.unflatten(-1, (-1, self.k)).amax(-1)

    def forward(self, x):
        return self.head(self._max(self.l2(self._max(self.l1(x)))))


class OctaveConvNet(nn.Module):
    """Octave convolutions (Chen et al., ICCV 2019, Fig. 2): a high-frequency map at full and a
    low-frequency one at half resolution, four convolutions exchanging between them (average
    pooling down, nearest upsampling up); the first splits the input, the last merges."""

    def __init__(self, c: int = 3, h: int = 2, lo: int = 2, n: int = 3):
        super().__init__()
        self.in_h = nn.Conv2d(c, h, 3, padding=1)
        self.in_l = nn.Conv2d(c, lo, 3, padding=1)
        self.hh = nn.Conv2d(h, h, 3, padding=1)
        self.hl = nn.Conv2d(h, lo, 3, padding=1)
        self.lh = nn.Conv2d(lo, h, 3, padding=1)
        self.ll = nn.Conv2d(lo, lo, 3, padding=1)
        self.out_h = nn.Conv2d(h, 4, 3, padding=1)
        self.out_l = nn.Conv2d(lo, 4, 3, padding=1)
        self.head = nn.Linear(4, n)

    def forward(self, x):  # (B, C, 8, 8)
        hi = torch.relu(self.in_h(x))
        lo = torch.relu(self.in_l(F.avg_pool2d(x, 2)))
        hi, lo = (torch.relu(self.hh(hi) + F.interpolate(self.lh(lo), scale_factor=2.0)),
                  torch.relu(self.ll(lo) + self.hl(F.avg_pool2d(hi, 2))))
        y = torch.relu(self.out_h(hi) + F.interpolate(self.out_l(lo), scale_factor=2.0))
        return self.head(y.mean((2, 3)))


class QRNN(nn.Module):
    """A quasi-recurrent network (Bradbury et al., ICLR 2017, Eq. 1-4): a causal convolution of
    width 2 producing candidate, forget and output gates for every step at once, then
    fo-pooling ``c_t = f c_{t-1} + (1 - f) z``, ``h_t = o c_t`` along time."""

    def __init__(self, d: int = 3, h: int = 5, n: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(d, 3 * h, 2)
        self.head = nn.Linear(h, n)

    def forward(self, x):  # (B, T, D)
        g = self.conv(F.pad(x.transpose(1, 2), (1, 0)))  # (B, 3H, T)
        z, f, o = g.transpose(1, 2).chunk(3, -1)
        z, f, o = torch.tanh(z), torch.sigmoid(f), torch.sigmoid(o)
        c = torch.zeros_like(z[:, 0])
        hs = []
        for t in range(z.shape[1]):
            c = f[:, t] * c + (1 - f[:, t]) * z[:, t]
            hs.append(o[:, t] * c)
        return self.head(torch.stack(hs, 1).mean(1))


class MixtureOfSoftmaxes(nn.Module):
    """A mixture of softmaxes (Yang et al., ICLR 2018, Eq. 3): ``K`` latent contexts from one
    Linear, the shared decoder on all of them (a (B, K, D) input), the softmaxes mixed by a
    prior from another Linear; log-probabilities out."""

    def __init__(self, d: int = 6, k: int = 3, vocab: int = 7):
        super().__init__()
        self.prior = nn.Linear(d, k)
        self.latent = nn.Linear(d, k * d)
        self.decoder = nn.Linear(d, vocab)
        self.k = k

    def forward(self, x):  # (B, D)
        ctx = torch.tanh(self.latent(x)).unflatten(-1, (self.k, -1))  # (B, K, D)
        probs = self.decoder(ctx).softmax(-1)
        pi = self.prior(x).softmax(-1)
        return (pi[:, :, None] * probs).sum(1).log()


class ExtremeLearningMachine(nn.Module):
    """An extreme learning machine (Huang et al., Neurocomputing 2006, Sec. 3): a random hidden
    layer that is never trained, its weight and bias held as buffers of an ``nn.Linear`` (not
    parameters, so no optimiser or ``state_dict`` consumer takes them for learned ones), and a
    trained readout."""

    def __init__(self, d: int = 6, h: int = 16, n: int = 3):
        super().__init__()
        self.hidden = nn.Linear(d, h)
        w, b = self.hidden.weight.detach().clone(), self.hidden.bias.detach().clone()
        del self.hidden.weight, self.hidden.bias
        self.hidden.register_buffer("weight", w)
        self.hidden.register_buffer("bias", b)
        self.readout = nn.Linear(h, n)

    def forward(self, x):
        return self.readout(torch.tanh(self.hidden(x)))

"""The sixteenth zoo's models (``test_zoo16.py``): model families of 2021-2025 papers at toy
size that the fifteen earlier zoos did not build. State-space and recurrent sequence models
(Mamba-2's chunked state-space duality, S4D's convolution kernel computed from complex
parameters, xLSTM's sLSTM with block-diagonal recurrent weights, Griffin's RG-LRU, Gated
DeltaNet's delta rule, a test-time-training layer whose hidden state is a weight matrix updated
in the forward, a deep equilibrium model iterated to a data-dependent fixed point), attention
variants (the Differential Transformer's two softmax maps and its lambda from four learned
vectors, XCiT's cross-covariance attention with a per-head temperature, FlexAttention with a learned
``score_mod`` bias, DeepSeek's multi-head
latent attention with the key up-projection absorbed into the query by ``einsum``), weights
computed in the forward (RepVGG's re-parameterised kernel built from its branches and their
BatchNorms, FlexiViT's patch-embedding kernel resized by ``F.interpolate`` to the input's patch
size, ControlNet's zero-initialised convolutions), gMLP's spatial gating unit (a near-zero Linear
over the token axis), a multi-resolution hash-grid encoding (embedding look-ups interpolated
bilinearly) and a model returning nested named tuples. Small, written here from the papers'
descriptions (no model library imported); widths are tiny."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------------------------------------
# State-space and recurrent sequence models
# ---------------------------------------------------------------------------------------------
def _segsum(x: torch.Tensor) -> torch.Tensor:
    """Mamba-2's stable segment sum: ``out[..., i, j] = sum(x[..., j+1:i+1])`` for j <= i, -inf
    above the diagonal."""
    t = x.shape[-1]
    x = x[..., None].expand(*x.shape, t)
    lower = torch.tril(torch.ones(t, t, dtype=torch.bool), -1)
    x = x.masked_fill(~lower, 0)
    s = torch.cumsum(x, -2)
    return s.masked_fill(~torch.tril(torch.ones(t, t, dtype=torch.bool)), float("-inf"))


class Mamba2SSD(nn.Module):
    """A Mamba-2 block (Dao & Gu, ICML 2024, Listing 1 "SSD minimal"): one input projection
    split into z / x / B / C / dt, a depthwise causal ``Conv1d`` over x|B|C, the chunked
    state-space-duality scan (intra-chunk quadratic form with ``segsum``, inter-chunk states by
    ``einsum``), a scalar ``A_log`` per head, ``D`` skip, a gated RMSNorm and the output
    projection."""

    def __init__(self, d: int = 6, heads: int = 2, hd: int = 4, n: int = 4, chunk: int = 4):
        super().__init__()
        self.h, self.p, self.n, self.chunk = heads, hd, n, chunk
        inner = heads * hd
        self.inner = inner
        self.in_proj = nn.Linear(d, 2 * inner + 2 * n + heads, bias=False)
        self.conv = nn.Conv1d(inner + 2 * n, inner + 2 * n, 4, groups=inner + 2 * n,
                              padding=3)
        self.A_log = nn.Parameter(torch.log(torch.linspace(1, 4, heads)))
        self.D = nn.Parameter(torch.ones(heads))
        self.dt_bias = nn.Parameter(torch.zeros(heads))
        self.norm_w = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, d, bias=False)
        self.head = nn.Linear(d, 3)

    def _ssd(self, x, a, b, c):  # x (B, L, H, P), a (B, L, H), b / c (B, L, N)
        bs, length = x.shape[:2]
        k = length // self.chunk
        x = x.reshape(bs, k, self.chunk, self.h, self.p)
        a = a.reshape(bs, k, self.chunk, self.h).permute(0, 3, 1, 2)  # (B, H, K, Q)
        b = b.reshape(bs, k, self.chunk, self.n)
        c = c.reshape(bs, k, self.chunk, self.n)
        a_cum = torch.cumsum(a, -1)
        decay = torch.exp(_segsum(a))
        y_diag = torch.einsum("bkln,bksn,bhkls,bkshp->bklhp", c, b, decay, x)
        decay_states = torch.exp(a_cum[..., -1:] - a_cum)
        states = torch.einsum("bkln,bhkl,bklhp->bkhpn", b, decay_states, x)
        states = torch.cat([torch.zeros_like(states[:, :1]), states], 1)
        decay_chunk = torch.exp(_segsum(F.pad(a_cum[..., -1], (1, 0))))
        states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)[:, :-1]
        y_off = torch.einsum("bkln,bkhpn,bhkl->bklhp", c, states, torch.exp(a_cum))
        return (y_diag + y_off).reshape(bs, length, self.h, self.p)

    def forward(self, u):  # (B, L, d), L a multiple of the chunk
        length = u.shape[1]
        z, xbc, dt = self.in_proj(u).split([self.inner, self.inner + 2 * self.n, self.h], -1)
        xbc = F.silu(self.conv(xbc.transpose(1, 2))[..., :length].transpose(1, 2))
        x, b, c = xbc.split([self.inner, self.n, self.n], -1)
        dt = F.softplus(dt + self.dt_bias)
        a = -torch.exp(self.A_log) * dt
        x = x.reshape(*x.shape[:2], self.h, self.p)
        y = self._ssd(x * dt[..., None], a, b, c) + x * self.D[:, None]
        y = y.flatten(2) * F.silu(z)
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-6) * self.norm_w
        return self.head(self.out_proj(y).mean(1))


class S4DConv(nn.Module):
    """S4D (Gu et al., NeurIPS 2022, "On the parameterization and initialization of diagonal
    state space models", Listing 1): a diagonal complex state matrix (``log_A_real``,
    ``A_imag``), a complex ``C`` held as ``view_as_real`` pairs, the length-L convolution kernel
    computed by a Vandermonde product in the forward and applied by FFT, ``D`` skip, then a
    pointwise ``Conv1d`` mixing channels and a classifier."""

    def __init__(self, d: int = 4, h: int = 6, n: int = 4):
        super().__init__()
        self.enc = nn.Linear(d, h)
        self.log_dt = nn.Parameter(torch.log(torch.linspace(0.01, 0.1, h)))
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(h, n // 2)))
        self.A_imag = nn.Parameter(torch.pi * torch.arange(n // 2).float().repeat(h, 1))
        self.C = nn.Parameter(torch.view_as_real(torch.randn(h, n // 2, dtype=torch.cfloat)))
        self.D = nn.Parameter(torch.randn(h))
        self.mix = nn.Conv1d(h, 2 * h, 1)
        self.head = nn.Linear(h, 3)

    def kernel(self, length: int) -> torch.Tensor:
        dt = torch.exp(self.log_dt)
        c = torch.view_as_complex(self.C)
        a = -torch.exp(self.log_A_real) + 1j * self.A_imag
        dta = a * dt[:, None]
        k = dta[..., None] * torch.arange(length, device=a.device)
        c = c * (torch.exp(dta) - 1.0) / a
        return 2 * torch.einsum("hn,hnl->hl", c, torch.exp(k)).real

    def forward(self, x):  # (B, L, d)
        u = self.enc(x).transpose(1, 2)  # (B, H, L)
        length = u.shape[-1]
        k = self.kernel(length).to(u.dtype)
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * length) * torch.fft.rfft(k, n=2 * length),
                            n=2 * length)[..., :length]
        y = F.gelu(y + u * self.D[:, None])
        y = F.glu(self.mix(y), dim=1)
        return self.head(y.mean(-1))


class SLSTM(nn.Module):
    """xLSTM's sLSTM (Beck et al., NeurIPS 2024, Sec. 2.2): exponential input and forget gates
    with a stabiliser state ``m``, a normaliser state ``n``, recurrent weights block-diagonal over
    heads held as one ``(heads, hd, 4 hd)`` Parameter applied by ``einsum``, input weights a
    Linear, stepped over time."""

    def __init__(self, d: int = 6, heads: int = 2, hd: int = 3):
        super().__init__()
        self.h, self.hd = heads, hd
        self.w = nn.Linear(d, 4 * heads * hd)
        self.r = nn.Parameter(0.3 * torch.randn(heads, hd, 4 * hd))
        self.head = nn.Linear(heads * hd, 3)

    def forward(self, x):  # (B, T, d)
        bs = x.shape[0]
        h = x.new_zeros(bs, self.h, self.hd)
        c, n, m = torch.zeros_like(h), torch.ones_like(h), torch.zeros_like(h)
        wx = self.w(x).view(bs, x.shape[1], self.h, 4 * self.hd)
        for t in range(x.shape[1]):
            pre = wx[:, t] + torch.einsum("bhd,hdg->bhg", h, self.r)
            i, f, z, o = pre.chunk(4, -1)
            m_new = torch.maximum(f + m, i)
            i, f = torch.exp(i - m_new), torch.exp(f + m - m_new)
            c = f * c + i * torch.tanh(z)
            n = f * n + i
            h = torch.sigmoid(o) * c / n
            m = m_new
        return self.head(h.flatten(1))


class RGLRU(nn.Module):
    """Griffin's recurrent block (De et al., 2024, Sec. 2.4): a GeLU gate branch beside a
    depthwise causal ``Conv1d`` and the real-gated linear recurrent unit, ``a_t = sigmoid(Λ)^(c
    r_t)`` computed in log space, ``h_t = a_t h_{t-1} + sqrt(1 - a_t^2) (i_t x_t)``, the
    recurrence and input gates Linear layers, stepped over time."""

    def __init__(self, d: int = 6, w: int = 8):
        super().__init__()
        self.gate = nn.Linear(d, w)
        self.inp = nn.Linear(d, w)
        self.conv = nn.Conv1d(w, w, 4, groups=w, padding=3)
        self.rg = nn.Linear(w, w)
        self.ig = nn.Linear(w, w)
        self.lam = nn.Parameter(torch.linspace(0.5, 2.0, w))
        self.out = nn.Linear(w, d)
        self.head = nn.Linear(d, 3)

    def forward(self, x):  # (B, T, d)
        length = x.shape[1]
        g = F.gelu(self.gate(x))
        u = self.conv(self.inp(x).transpose(1, 2))[..., :length].transpose(1, 2)
        r, i = torch.sigmoid(self.rg(u)), torch.sigmoid(self.ig(u))
        log_a = -8.0 * r * F.softplus(-self.lam)
        a = torch.exp(log_a)
        gated = u * i * torch.sqrt(1 - torch.exp(2 * log_a))
        h = x.new_zeros(x.shape[0], u.shape[-1])
        hs = []
        for t in range(length):
            h = a[:, t] * h + gated[:, t]
            hs.append(h)
        y = self.out(torch.stack(hs, 1) * g)
        return self.head((x + y).mean(1))


class GatedDeltaNet(nn.Module):
    """Gated DeltaNet (Yang et al., ICLR 2025, Eq. 10): per head a matrix state updated by the
    gated delta rule ``S_t = S_{t-1} (a_t (I - b_t k_t k_t^T)) + b_t v_t k_t^T``, keys and queries
    L2-normalised, ``a_t`` and ``b_t`` from Linear layers, the read-out ``S_t q_t``, an output
    gate and projection; stepped over time."""

    def __init__(self, d: int = 6, heads: int = 2, hd: int = 4):
        super().__init__()
        self.h, self.hd = heads, hd
        self.qkv = nn.Linear(d, 3 * heads * hd, bias=False)
        self.ab = nn.Linear(d, 2 * heads)
        self.g = nn.Linear(d, heads * hd)
        self.o = nn.Linear(heads * hd, d, bias=False)
        self.head = nn.Linear(d, 3)

    def forward(self, x):  # (B, T, d)
        bs, length, _ = x.shape
        q, k, v = self.qkv(x).view(bs, length, 3, self.h, self.hd).unbind(2)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        alpha, beta = torch.sigmoid(self.ab(x)).view(bs, length, 2, self.h).unbind(2)
        s = x.new_zeros(bs, self.h, self.hd, self.hd)
        eye = torch.eye(self.hd, dtype=x.dtype)
        outs = []
        for t in range(length):
            kt, vt, qt = k[:, t], v[:, t], q[:, t]
            bt, at = beta[:, t, :, None, None], alpha[:, t, :, None, None]
            s = s @ (at * (eye - bt * kt[..., :, None] * kt[..., None, :]))
            s = s + bt * vt[..., :, None] * kt[..., None, :]
            outs.append((s @ qt[..., None]).squeeze(-1))
        y = torch.stack(outs, 1).flatten(2) * F.silu(self.g(x))
        return self.head((x + self.o(y)).mean(1))


class TTTLinear(nn.Module):
    """A TTT-Linear layer (Sun et al., "Learning to (learn at test time)", 2024, Sec. 2): the
    hidden state is a weight matrix, learned initial value ``W0``, updated per token by one
    gradient step on the self-supervised loss ``||k W - v||^2`` (written in closed form, no
    autograd), the output ``q W_t``; k / v / q from Linear layers."""

    def __init__(self, d: int = 6, hd: int = 4, lr: float = 0.1):
        super().__init__()
        self.kvq = nn.Linear(d, 3 * hd, bias=False)
        self.W0 = nn.Parameter(torch.eye(hd) + 0.1 * torch.randn(hd, hd))
        self.lr = lr
        self.out = nn.Linear(hd, d)
        self.head = nn.Linear(d, 3)

    def forward(self, x):  # (B, T, d)
        k, v, q = self.kvq(x).chunk(3, -1)
        w = self.W0.expand(x.shape[0], -1, -1)
        outs = []
        for t in range(x.shape[1]):
            kt = k[:, t, None]  # (B, 1, hd)
            grad = kt.transpose(1, 2) @ (kt @ w - v[:, t, None])
            w = w - self.lr * grad
            outs.append((q[:, t, None] @ w).squeeze(1))
        return self.head(x.mean(1) + self.out(torch.stack(outs, 1)).mean(1))


class DEQ(nn.Module):
    """A deep equilibrium model (Bai et al., NeurIPS 2019) solved by fixed-point iteration in
    the forward until the update is below a tolerance (a data-dependent number of calls to one
    cell, at most 30): ``z = tanh(W z + U x)``, contractive by a small ``W``."""

    def __init__(self, d: int = 6, w: int = 8):
        super().__init__()
        self.U = nn.Linear(d, w)
        self.W = nn.Linear(w, w, bias=False)
        with torch.no_grad():
            self.W.weight.mul_(0.3)
        self.head = nn.Linear(w, 3)

    def forward(self, x):
        ux = self.U(x)
        z = torch.zeros_like(ux)
        for _ in range(30):
            z_new = torch.tanh(self.W(z) + ux)
            done = (z_new - z).abs().max() < 1e-3
            z = z_new
            if done:
                break
        return self.head(z)


# ---------------------------------------------------------------------------------------------
# Attention variants
# ---------------------------------------------------------------------------------------------
class DiffAttention(nn.Module):
    """Differential attention (Ye et al., "Differential Transformer", ICLR 2025, Eq. 1-3): q / k
    split into two halves, the difference of their two softmax maps weighted by ``lambda =
    exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init`` (four learned vectors), a per-head RMSNorm
    scaled by ``1 - lambda_init``, the output projection."""

    def __init__(self, d: int = 8, heads: int = 2):
        super().__init__()
        self.h, self.hd = heads, d // heads // 2
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.lam_init = 0.8 - 0.6 * torch.exp(torch.tensor(-0.3)).item()
        self.lq1, self.lk1, self.lq2, self.lk2 = (nn.Parameter(0.1 * torch.randn(self.hd))
                                                  for _ in range(4))
        self.o = nn.Linear(d, d, bias=False)
        self.head = nn.Linear(d, 3)

    def forward(self, x):  # (B, T, d)
        bs, length, d = x.shape
        q, k, v = self.qkv(x).split(d, -1)
        q = q.view(bs, length, 2 * self.h, self.hd).transpose(1, 2)
        k = k.view(bs, length, 2 * self.h, self.hd).transpose(1, 2)
        v = v.view(bs, length, self.h, 2 * self.hd).transpose(1, 2)
        att = (q @ k.transpose(-1, -2) * self.hd ** -0.5).softmax(-1)
        att = att.view(bs, self.h, 2, length, length)
        lam = (torch.exp(torch.sum(self.lq1 * self.lk1)) - torch.exp(torch.sum(self.lq2 * self.lk2))
               + self.lam_init)
        y = (att[:, :, 0] - lam * att[:, :, 1]) @ v
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-5) * (1 - self.lam_init)
        y = self.o(y.transpose(1, 2).reshape(bs, length, d))
        return self.head((x + y).mean(1))


class XCiT(nn.Module):
    """Cross-covariance attention (El-Nouby et al., NeurIPS 2021, Eq. 3): attention over
    channels, ``softmax(k^T q * tau)`` with keys and queries L2-normalised along the tokens and a
    learned temperature per head held as a ``(heads, 1, 1)`` Parameter."""

    def __init__(self, d: int = 8, heads: int = 2):
        super().__init__()
        self.h = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1) * 1.5)
        self.proj = nn.Linear(d, d)
        self.head = nn.Linear(d, 3)

    def forward(self, x):  # (B, N, d)
        bs, length, d = x.shape
        q, k, v = self.qkv(x).view(bs, length, 3, self.h, d // self.h).permute(2, 0, 3, 4, 1)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        att = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(-1)
        y = (att @ v).permute(0, 3, 1, 2).reshape(bs, length, d)
        return self.head((x + self.proj(y)).mean(1))


class MLAAbsorbed(nn.Module):
    """DeepSeek-V2's multi-head latent attention (DeepSeek-AI, 2024, Sec. 2.1.2-2.1.3) in its
    inference form: keys and values compressed to one latent ``c_kv`` (a Linear down, an
    RMSNorm), the key up-projection absorbed into the query (``einsum`` of the query with the
    up-projection Linear's weight viewed per head and sliced) and the value up-projection
    applied after attention the same way, scores over the latent directly."""

    def __init__(self, d: int = 8, heads: int = 2, hd: int = 4, rank: int = 4):
        super().__init__()
        self.h, self.hd, self.r = heads, hd, rank
        self.wq = nn.Linear(d, heads * hd, bias=False)
        self.wkv_a = nn.Linear(d, rank, bias=False)
        self.kv_norm = nn.RMSNorm(rank)
        self.wkv_b = nn.Linear(rank, heads * 2 * hd, bias=False)
        self.wo = nn.Linear(heads * hd, d, bias=False)
        self.head = nn.Linear(d, 3)

    def forward(self, x):  # (B, T, d)
        bs, length, _ = x.shape
        q = self.wq(x).view(bs, length, self.h, self.hd)
        c = self.kv_norm(self.wkv_a(x))  # (B, T, r)
        wkv_b = self.wkv_b.weight.view(self.h, 2 * self.hd, self.r)
        q_lat = torch.einsum("bshd,hdc->bshc", q, wkv_b[:, : self.hd])
        scores = torch.einsum("bshc,btc->bsht", q_lat, c) * self.hd ** -0.5
        att = scores.softmax(-1)
        o = torch.einsum("bsht,btc->bshc", att, c)
        o = torch.einsum("bshc,hdc->bshd", o, wkv_b[:, self.hd:])
        return self.head((x + self.wo(o.flatten(2))).mean(1))


class FlexBias(nn.Module):
    """Attention through torch's FlexAttention (``torch.nn.attention.flex_attention``, PyTorch
    2.5, 2024) with a ``score_mod`` adding a learned relative-position bias per head (a
    ``(heads, 2 r + 1)`` Parameter read by the closure, T5 / ALiBi-style), beside fused QKV and
    output projections."""

    def __init__(self, d: int = 8, heads: int = 2, reach: int = 4):
        super().__init__()
        self.h, self.reach = heads, reach
        self.qkv = nn.Linear(d, 3 * d)
        self.bias = nn.Parameter(0.5 * torch.randn(heads, 2 * reach + 1))
        self.o = nn.Linear(d, d)
        self.head = nn.Linear(d, 3)

    def forward(self, x):  # (B, T, d)
        from torch.nn.attention.flex_attention import flex_attention

        bs, length, d = x.shape
        q, k, v = self.qkv(x).view(bs, length, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        bias, reach = self.bias, self.reach

        def score_mod(score, b, h, qi, ki):
            return score + bias[h, (qi - ki).clamp(-reach, reach) + reach]

        y = flex_attention(q, k, v, score_mod=score_mod)
        return self.head((x + self.o(y.transpose(1, 2).reshape(bs, length, d))).mean(1))


# ---------------------------------------------------------------------------------------------
# Weights computed in the forward
# ---------------------------------------------------------------------------------------------
class RepVGGBlock(nn.Module):
    """RepVGG (Ding et al., CVPR 2021, Sec. 3.3): a 3x3 conv + BN, a 1x1 conv + BN and an
    identity BN in training; at inference the three fused into one 3x3 kernel and bias built
    *in the forward* from the branches' weights and BatchNorm statistics (each BN folded, the
    1x1 kernel padded to 3x3, the identity a one-hot kernel) and applied by ``F.conv2d``."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.k3 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)
        self.k1 = nn.Conv2d(c, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.bn_id = nn.BatchNorm2d(c)
        for bn in (self.bn3, self.bn1, self.bn_id):  # trained statistics
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.2, 0.2)
        ident = torch.zeros(c, c, 3, 3)
        ident[torch.arange(c), torch.arange(c), 1, 1] = 1.0
        self.register_buffer("ident", ident)
        self.head = nn.Linear(c, 3)

    @staticmethod
    def _fold(kernel, bn):
        std = torch.sqrt(bn.running_var + bn.eps)
        return (kernel * (bn.weight / std)[:, None, None, None],
                bn.bias - bn.running_mean * bn.weight / std)

    def fused(self):
        k3, b3 = self._fold(self.k3.weight, self.bn3)
        k1, b1 = self._fold(F.pad(self.k1.weight, [1, 1, 1, 1]), self.bn1)
        kid, bid = self._fold(self.ident, self.bn_id)
        return k3 + k1 + kid, b3 + b1 + bid

    def forward(self, x):
        x = F.relu(self.stem(x))
        if self.training:
            y = self.bn3(self.k3(x)) + self.bn1(self.k1(x)) + self.bn_id(x)
        else:
            w, b = self.fused()
            y = F.conv2d(x, w, b, padding=1)
        return self.head(F.relu(y).mean((2, 3)))


class FlexiPatch(nn.Module):
    """FlexiViT's patch embedding (Beyer et al., CVPR 2023, Sec. 3.4): one learned 4x4 kernel
    resized in the forward to the patch size the input asks for (``F.interpolate``, bilinear)
    and applied by ``F.conv2d`` with stride = patch, tokens into an MLP head."""

    def __init__(self, c: int = 3, d: int = 8, base: int = 4):
        super().__init__()
        self.weight = nn.Parameter(0.2 * torch.randn(d, c, base, base))
        self.bias = nn.Parameter(torch.zeros(d))
        self.mlp = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 16), nn.GELU(), nn.Linear(16, 3))

    def forward(self, x, patch: int = 2):
        w = F.interpolate(self.weight, size=(patch, patch), mode="bilinear", antialias=False,
                          align_corners=False) * (16 / patch ** 2)
        tokens = F.conv2d(x, w, self.bias, stride=patch).flatten(2).transpose(1, 2)
        return self.mlp(tokens.mean(1))


class ControlNetZero(nn.Module):
    """ControlNet (Zhang et al., ICCV 2023, Sec. 3.1): a frozen block beside its trainable copy
    fed the condition through a zero-initialised 1x1 convolution, the copy's output added back
    through a second zero convolution (weights and biases all zero, as at the start of training)."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        self.copy = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        self.zin = nn.Conv2d(c, c, 1)
        self.zout = nn.Conv2d(c, c, 1)
        for z in (self.zin, self.zout):
            nn.init.zeros_(z.weight)
            nn.init.zeros_(z.bias)
        self.head = nn.Linear(c, 3)

    def forward(self, x, cond):
        y = self.block(x) + self.zout(self.copy(x + self.zin(cond)))
        return self.head(y.mean((2, 3)))


# ---------------------------------------------------------------------------------------------
# Token mixing, encodings, outputs
# ---------------------------------------------------------------------------------------------
class GMLP(nn.Module):
    """A gMLP block (Liu et al., NeurIPS 2021, Sec. 2.1): channel projection up, GELU, the
    spatial gating unit (the channels split in two, one half layer-normalised and mixed over the
    *token* axis by a Linear initialised near zero with bias one, multiplying the other half),
    channel projection down."""

    def __init__(self, d: int = 6, tokens: int = 5, ff: int = 12):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.up = nn.Linear(d, ff)
        self.sgu_norm = nn.LayerNorm(ff // 2)
        self.spatial = nn.Linear(tokens, tokens)
        nn.init.uniform_(self.spatial.weight, -1e-2, 1e-2)
        nn.init.ones_(self.spatial.bias)
        self.down = nn.Linear(ff // 2, d)
        self.head = nn.Linear(d, 3)

    def forward(self, x):  # (B, N, d)
        u, v = F.gelu(self.up(self.norm(x))).chunk(2, -1)
        v = self.spatial(self.sgu_norm(v).transpose(1, 2)).transpose(1, 2)
        return self.head((x + self.down(u * v)).mean(1))


class HashGrid(nn.Module):
    """A multi-resolution hash encoding (Müller et al., "Instant neural graphics primitives",
    SIGGRAPH 2022, Sec. 3): per level the 2-D point's cell corners hashed (``xor`` of the
    coordinates times primes, modulo the table size) into an ``nn.Embedding`` table, the four
    corner features interpolated bilinearly, the levels concatenated into a small MLP."""

    def __init__(self, levels: tuple[int, ...] = (2, 4, 8), table: int = 16, f: int = 2):
        super().__init__()
        self.levels, self.size = levels, table
        self.tables = nn.ModuleList([nn.Embedding(table, f) for _ in levels])
        for t in self.tables:
            nn.init.uniform_(t.weight, -1.0, 1.0)
        self.register_buffer("primes", torch.tensor([1, 2654435761]))
        self.mlp = nn.Sequential(nn.Linear(len(levels) * f, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, p):  # (B, 2) in [0, 1)
        feats = []
        for res, emb in zip(self.levels, self.tables, strict=True):
            s = p * res
            cell = torch.floor(s).long()
            frac = s - cell
            out = 0
            for dx in (0, 1):
                for dy in (0, 1):
                    corner = cell + torch.tensor([dx, dy])
                    idx = (corner[:, 0] * self.primes[0]) ^ (corner[:, 1] * self.primes[1])
                    wx = frac[:, 0] if dx else 1 - frac[:, 0]
                    wy = frac[:, 1] if dy else 1 - frac[:, 1]
                    out = out + (wx * wy)[:, None] * emb(idx % self.size)
            feats.append(out)
        return self.mlp(torch.cat(feats, -1))


class Aux(NamedTuple):
    hidden: torch.Tensor
    scores: dict


class Output(NamedTuple):
    logits: torch.Tensor
    aux: Aux
    layers: list


class NestedOutputs(nn.Module):
    """A model returning a named tuple holding a named tuple (holding a dict) and a list of its
    hidden states, as detection and retrieval code returns auxiliary outputs."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.l1 = nn.Linear(d, 8)
        self.l2 = nn.Linear(8, 8)
        self.cls = nn.Linear(8, 3)
        self.score = nn.Linear(8, 2)

    def forward(self, x):
        h1 = torch.relu(self.l1(x))
        h2 = torch.tanh(self.l2(h1))
        return Output(self.cls(h2), Aux(h2, {"s": self.score(h2)}), [h1, h2])

"""The twenty-first zoo's models (``test_zoo21.py``): model families at toy size that the twenty
earlier zoos did not build, chosen for ways weights reach a product that no zoo used. Layers
changed on the instance: an ``nn.Linear`` whose ``forward`` is replaced on the instance by
``types.MethodType`` (a model-surgery patch), a weight-only int8 Linear (an integer buffer and
a per-row scale, dequantized in the forward, as GPTQ-style checkpoints hold them). Weights
reached through torch machinery: feedback alignment (a custom ``autograd.Function`` running
``F.linear`` with a fixed random backward matrix), trained ternary quantization (a weight built
from a latent one and two learned scales). Weights combined with state: differentiable
plasticity (a recurrent weight plus a per-sample Hebbian trace), DiracNet (a kernel plus a
scaled Dirac delta). Factorised weights: a tensor-train Linear (cores contracted by
``einsum``), a Tucker-2 convolution. Weights shared across module kinds: a tied convolutional
autoencoder (one parameter in an ``nn.Conv2d`` and an ``nn.ConvTranspose2d``), an ``nn.GRU``
and an ``nn.GRUCell`` holding the same parameters, a kernel-1 ``nn.Conv1d`` read as an
embedding table, ``nn.Linear`` weights used on the left of a product (``W @ h.T``). Other
arithmetic: PACT (a learned clip after a ReLU). Small, written here from the papers'
descriptions (no model library imported); widths are tiny."""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------------------------------------
# Layers changed on the instance
# ---------------------------------------------------------------------------------------------
def _tempered_forward(self, x):
    """A patched ``nn.Linear.forward``: the input scaled by a temperature, the output clipped
    (a calibration patch applied to one layer of a trained model)."""
    return F.linear(x / self.temperature, self.weight, self.bias).clamp(-2.0, 2.0)


class InstancePatched(nn.Module):
    """An MLP whose middle ``nn.Linear`` has its ``forward`` replaced on the instance
    (``layer.forward = types.MethodType(f, layer)``, as model-surgery and calibration code
    patch one layer without subclassing); the class stays ``nn.Linear``."""

    def __init__(self, d: int = 6, h: int = 8, n: int = 3):
        super().__init__()
        self.inp = nn.Linear(d, h)
        self.mid = nn.Linear(h, h)
        self.mid.temperature = 2.0
        self.mid.forward = types.MethodType(_tempered_forward, self.mid)
        self.head = nn.Linear(h, n)

    def forward(self, x):
        return self.head(torch.relu(self.mid(torch.relu(self.inp(x)))))


class Int8WeightLinear(nn.Module):
    """A weight-only quantized Linear (as GPTQ, Frantar et al., ICLR 2023, stores its result):
    int8 weights in a buffer, a float scale per output row, dequantized in the forward."""

    def __init__(self, d: int, n: int):
        super().__init__()
        w = torch.randn(n, d) / d ** 0.5
        scale = w.abs().amax(1) / 127
        self.register_buffer("qweight", torch.round(w / scale[:, None]).to(torch.int8))
        self.register_buffer("scale", scale)
        self.bias = nn.Parameter(torch.randn(n) * 0.1)

    def forward(self, x):
        w = self.qweight.to(x.dtype) * self.scale.to(x.dtype)[:, None]
        return F.linear(x, w, self.bias)


class WeightOnlyInt8(nn.Module):
    """A float stem, a weight-only int8 middle layer, a float head (a partly quantized
    checkpoint)."""

    def __init__(self, d: int = 6, h: int = 8, n: int = 3):
        super().__init__()
        self.inp = nn.Linear(d, h)
        self.q = Int8WeightLinear(h, h)
        self.head = nn.Linear(h, n)

    def forward(self, x):
        return self.head(torch.relu(self.q(torch.relu(self.inp(x)))))


# ---------------------------------------------------------------------------------------------
# Weights reached through torch machinery
# ---------------------------------------------------------------------------------------------
class _FALinear(torch.autograd.Function):
    """Feedback alignment's product: ``x @ W.T + b`` forward, the input's gradient through a
    fixed random matrix ``B`` instead of ``W`` (Lillicrap et al., Nature Communications 2016)."""

    @staticmethod
    def forward(ctx, x, w, b, feedback):
        ctx.save_for_backward(x, feedback)
        return F.linear(x, w, b)

    @staticmethod
    def backward(ctx, g):
        x, feedback = ctx.saved_tensors
        gw = g.flatten(0, -2).T @ x.flatten(0, -2)
        return g @ feedback, gw, g.flatten(0, -2).sum(0), None


class FALinear(nn.Module):
    """A feedback-alignment layer: a weight, a bias, a fixed random feedback buffer."""

    def __init__(self, d: int, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, d) / d ** 0.5)
        self.bias = nn.Parameter(torch.zeros(n))
        self.register_buffer("feedback", torch.randn(n, d) / d ** 0.5)

    def forward(self, x):
        return _FALinear.apply(x, self.weight, self.bias, self.feedback)


class FeedbackAlignment(nn.Module):
    """A plain Linear stem, two feedback-alignment layers, a plain head."""

    def __init__(self, d: int = 6, h: int = 8, n: int = 3):
        super().__init__()
        self.inp = nn.Linear(d, h)
        self.fa1 = FALinear(h, h)
        self.fa2 = FALinear(h, h)
        self.head = nn.Linear(h, n)

    def forward(self, x):
        y = torch.tanh(self.fa2(torch.tanh(self.fa1(torch.tanh(self.inp(x))))))
        return self.head(y)


class TTQLinear(nn.Module):
    """Trained ternary quantization (Zhu, Han, Mao and Dally, ICLR 2017, Eq. 1): a latent
    weight thresholded at ``t * max|w|`` into {-1, 0, 1}, the two signs scaled by learned
    ``w_p`` and ``w_n``; the ternary weight built in the forward."""

    def __init__(self, d: int, n: int, t: float = 0.05):
        super().__init__()
        self.latent = nn.Parameter(torch.randn(n, d) / d ** 0.5)
        self.w_p = nn.Parameter(torch.tensor(0.4))
        self.w_n = nn.Parameter(torch.tensor(0.3))
        self.bias = nn.Parameter(torch.zeros(n))
        self.t = t

    def forward(self, x):
        delta = self.t * self.latent.detach().abs().max()
        pos = (self.latent > delta).to(x.dtype)
        neg = (self.latent < -delta).to(x.dtype)
        return F.linear(x, self.w_p * pos - self.w_n * neg, self.bias)


class Ternary(nn.Module):
    """A full-precision first and last layer around a ternary middle (TTQ keeps them so)."""

    def __init__(self, d: int = 6, h: int = 8, n: int = 3):
        super().__init__()
        self.inp = nn.Linear(d, h)
        self.mid = TTQLinear(h, h)
        self.head = nn.Linear(h, n)

    def forward(self, x):
        return self.head(torch.relu(self.mid(torch.relu(self.inp(x)))))


# ---------------------------------------------------------------------------------------------
# Weights combined with state
# ---------------------------------------------------------------------------------------------
class Plastic(nn.Module):
    """Differentiable plasticity (Miconi, Clune and Stanley, ICML 2018, Eq. 1-2): a recurrent
    layer whose effective weight is ``W + alpha * Hebb``, the Hebbian trace a per-sample state
    updated each step by ``eta``; a Linear in and a Linear out."""

    def __init__(self, d: int = 4, h: int = 6, n: int = 3):
        super().__init__()
        self.inp = nn.Linear(d, h)
        self.w = nn.Parameter(torch.randn(h, h) * 0.3)
        self.alpha = nn.Parameter(torch.randn(h, h) * 0.1)
        self.eta = nn.Parameter(torch.tensor(0.1))
        self.head = nn.Linear(h, n)

    def forward(self, x):  # (B, T, D)
        b, t, _ = x.shape
        h = x.new_zeros(b, self.w.shape[0])
        hebb = x.new_zeros(b, self.w.shape[0], self.w.shape[0])
        u = self.inp(x)
        for i in range(t):
            eff = self.w + self.alpha * hebb  # (B, H, H)
            new = torch.tanh(u[:, i] + torch.bmm(h[:, None], eff)[:, 0])
            hebb = (1 - self.eta) * hebb + self.eta * h[:, :, None] * new[:, None, :]
            h = new
        return self.head(h)


class DiracConv(nn.Module):
    """DiracNet's convolution (Zagoruyko and Komodakis, 2017, Eq. 3): the kernel is
    ``diag(a) I + diag(b) W`` with ``I`` a Dirac delta (a buffer), ``a`` and ``b`` learned
    per output channel; no skip connection."""

    def __init__(self, c: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c, c, 3, 3) * 0.1)
        self.a = nn.Parameter(torch.ones(c))
        self.b = nn.Parameter(torch.full((c,), 0.5))
        delta = torch.zeros(c, c, 3, 3)
        nn.init.dirac_(delta)
        self.register_buffer("delta", delta)

    def forward(self, x):
        a, b = self.a[:, None, None, None], self.b[:, None, None, None]
        kernel = a * self.delta + b * self.weight
        return F.conv2d(x, kernel, padding=1)


class DiracNet(nn.Module):
    """A stem convolution, two Dirac convolutions, a classifier."""

    def __init__(self, c: int = 3, h: int = 4, n: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(c, h, 3, padding=1)
        self.d1 = DiracConv(h)
        self.d2 = DiracConv(h)
        self.head = nn.Linear(h, n)

    def forward(self, x):
        y = torch.relu(self.d2(torch.relu(self.d1(torch.relu(self.stem(x))))))
        return self.head(y.mean((2, 3)))


# ---------------------------------------------------------------------------------------------
# Factorised weights
# ---------------------------------------------------------------------------------------------
class TTLinear(nn.Module):
    """A tensor-train Linear (Novikov et al., NeurIPS 2015, Sec. 4): a (2*3) x (2*4) matrix as
    two cores ``G1 (1, 2, 2, r)`` and ``G2 (r, 3, 4, 1)``, the input reshaped to (2, 3) and the
    cores contracted by ``einsum`` (no full matrix formed)."""

    def __init__(self, rank: int = 2):
        super().__init__()
        self.g1 = nn.Parameter(torch.randn(2, 2, rank) * 0.5)
        self.g2 = nn.Parameter(torch.randn(rank, 3, 4) * 0.5)
        self.bias = nn.Parameter(torch.zeros(8))

    def forward(self, x):  # (B, 6)
        x = x.view(-1, 2, 3)
        y = torch.einsum("bij,iar,rjc->bac", x, self.g1, self.g2)
        return y.reshape(-1, 8) + self.bias


class TensorTrain(nn.Module):
    """A Linear stem, a tensor-train layer, a head."""

    def __init__(self, d: int = 5, n: int = 3):
        super().__init__()
        self.inp = nn.Linear(d, 6)
        self.tt = TTLinear()
        self.head = nn.Linear(8, n)

    def forward(self, x):
        return self.head(torch.relu(self.tt(torch.relu(self.inp(x)))))


class Tucker2(nn.Module):
    """Tucker-2 decomposed convolutions (Kim et al., ICLR 2016, Sec. 2): a pointwise reduction
    of the input channels, a small full ``3 x 3`` core, a pointwise expansion; two of them and
    a classifier."""

    def __init__(self, c: int = 3, r: int = 2, out: int = 5, n: int = 3):
        super().__init__()

        def tucker(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, r, 1, bias=False),
                                 nn.Conv2d(r, r, 3, padding=1, bias=False),
                                 nn.Conv2d(r, cout, 1))

        self.a = tucker(c, out)
        self.b = tucker(out, out)
        self.head = nn.Linear(out, n)

    def forward(self, x):
        y = torch.relu(self.b(torch.relu(self.a(x))))
        return self.head(y.amax((2, 3)))


# ---------------------------------------------------------------------------------------------
# Weights shared across module kinds
# ---------------------------------------------------------------------------------------------
class ConvTiedEmbedding(nn.Module):
    """A token model whose output head is a kernel-1 ``nn.Conv1d`` over the sequence and whose
    input embedding reads the same weight as a table (``F.embedding(tokens,
    conv.weight.squeeze(-1))``: tied input and output embeddings, Press and Wolf, EACL 2017,
    with the head written as a convolution); a convolution between them."""

    def __init__(self, vocab: int = 11, d: int = 6):
        super().__init__()
        self.mix = nn.Conv1d(d, d, 3, padding=1)
        self.out = nn.Conv1d(d, vocab, 1)

    def forward(self, tokens):  # (B, T) int
        table = self.out.weight.squeeze(-1)  # (vocab, d)
        e = F.embedding(tokens, table).transpose(1, 2)  # (B, d, T)
        return self.out(torch.relu(self.mix(e))).mean(-1)


class WeightOnLeft(nn.Module):
    """A recurrent update written for column vectors (as classic RNN code holds states):
    ``h = tanh(W_x @ x.T + W_h @ h.T).T`` with ``W_x`` and ``W_h`` the weights of two
    ``nn.Linear`` s that are never called, the products by ``torch.mm`` with the weight on the
    left; a head called as a module."""

    def __init__(self, d: int = 4, h: int = 6, n: int = 3):
        super().__init__()
        self.wx = nn.Linear(d, h)
        self.wh = nn.Linear(h, h, bias=False)
        self.head = nn.Linear(h, n)

    def forward(self, x):  # (B, T, D)
        h = x.new_zeros(x.shape[0], self.wh.weight.shape[0])
        for i in range(x.shape[1]):
            pre = torch.mm(self.wx.weight, x[:, i].T) + torch.mm(self.wh.weight, h.T)
            h = torch.tanh(pre.T + self.wx.bias)
        return self.head(h)


class TiedConvAutoencoder(nn.Module):
    """A convolutional autoencoder whose decoder is the transpose of its encoder: one
    ``nn.Parameter`` held by an ``nn.Conv2d`` and an ``nn.ConvTranspose2d``
    (``dec.weight = enc.weight``, the tied weights of Vincent et al., JMLR 2010, Sec. 4, as
    convolutional autoencoders tie them), each with its own bias; a 1x1 mixing convolution
    between them."""

    def __init__(self, c: int = 3, h: int = 4):
        super().__init__()
        self.enc = nn.Conv2d(c, h, 3, stride=2, padding=1)
        self.mix = nn.Conv2d(h, h, 1)
        self.dec = nn.ConvTranspose2d(h, c, 3, stride=2, padding=1, output_padding=1)
        self.dec.weight = self.enc.weight

    def forward(self, x):
        return self.dec(torch.relu(self.mix(torch.relu(self.enc(x)))))


class GRUWithCell(nn.Module):
    """A sequence model reading its prompt with an ``nn.GRU`` and continuing it step by step
    with an ``nn.GRUCell`` holding the same four parameters (``cell.weight_ih =
    gru.weight_ih_l0`` ...: one recurrent core, the fused layer for the known part, the cell
    for the generated one), its output fed back through a Linear."""

    def __init__(self, d: int = 4, h: int = 6, n: int = 3, steps: int = 3):
        super().__init__()
        self.gru = nn.GRU(d, h, batch_first=True)
        self.cell = nn.GRUCell(d, h)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(self.cell, name, getattr(self.gru, f"{name}_l0"))
        self.back = nn.Linear(h, d)
        self.head = nn.Linear(h, n)
        self.steps = steps

    def forward(self, x):  # (B, T, D)
        out, h = self.gru(x)
        h, y = h[0], out[:, -1]
        for _ in range(self.steps):
            h = self.cell(torch.tanh(self.back(y)), h)
            y = h
        return self.head(h)


# ---------------------------------------------------------------------------------------------
# Other arithmetic
# ---------------------------------------------------------------------------------------------
class PACT(nn.Module):
    """PACT (Choi et al., 2018, Eq. 1): each hidden activation clipped to ``[0, alpha]`` with a
    learned ``alpha`` per layer (``torch.clamp`` by a tensor bound), an MLP."""

    def __init__(self, d: int = 6, h: int = 8, n: int = 3):
        super().__init__()
        self.l1 = nn.Linear(d, h)
        self.l2 = nn.Linear(h, h)
        self.head = nn.Linear(h, n)
        self.alpha1 = nn.Parameter(torch.tensor(1.5))
        self.alpha2 = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        y = torch.clamp(torch.relu(self.l1(x)), max=self.alpha1)
        y = torch.minimum(torch.relu(self.l2(y)), self.alpha2)
        return self.head(y)

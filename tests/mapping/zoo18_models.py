"""The eighteenth zoo's models (``test_zoo18.py``): model families at toy size that the seventeen
earlier zoos did not build, chosen for ways weights reach a product that no zoo used. Training
machinery around the layers: a RevNet whose reversible blocks run in a custom
``autograd.Function`` that recomputes the forward in the backward, a model averaged by
``torch.optim.swa_utils.AveragedModel`` (the layers under ``module.``, an ``n_averaged``
buffer), an AWD-LSTM whose recurrent weight is re-set from a raw ``Parameter`` before every
forward (fastai's ``WeightDropout``), an echo state network with frozen reservoir layers and a
trained readout, a class-incremental head whose old rows are frozen by a gradient hook on the
weight. The batch or the number of calls set in the forward: BatchEnsemble (the batch tiled per
member, rank-1 fast weights around shared layers), a beam search over a decoder with a growing,
reordered KV cache, a Universal Transformer halting per position by adaptive computation time,
``nn.AdaptiveLogSoftmaxWithLoss`` (tail clusters run on the rows whose label falls in them),
LISTA's unrolled iterations of shared layers, a neural cellular automaton (fixed Sobel filters
from a buffer, random cells updated). Attention and pooling: SAM's two-way transformer (tokens
attend to the image and the image to the tokens with one shared attention module, a
random-Fourier positional encoding from a buffer), Nyströmformer (landmark attention, an
iterative pseudo-inverse, a depthwise convolution over the sequence of each head), the Random
Synthesizer (a learned attention matrix) and NetVLAD (residuals to learned centroids). Small,
written here from the papers' descriptions (no model library imported); widths are tiny."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel


# ---------------------------------------------------------------------------------------------
# Training machinery around the layers
# ---------------------------------------------------------------------------------------------
def _replay(fn, state, x):
    """``fn(x)`` with torch's CPU generator at ``state`` (the draws the forward made), the
    generator's own state left as it was: Reformer's ``Deterministic`` wrapper."""
    if state is None:
        return fn(x)
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(state)
        return fn(x)


class _ReversibleFn(torch.autograd.Function):
    """A reversible block's forward without storing activations (Gomez et al., NeurIPS 2017,
    Alg. 1): ``y1 = x1 + f(x2)``, ``y2 = x2 + g(y1)`` under ``no_grad``; the backward rebuilds
    the inputs from the outputs, recomputes ``f`` and ``g`` with gradient and backpropagates
    through them, the parameters' gradients accumulated by ``torch.autograd.backward``. With
    ``replay`` the generator's state before ``f`` and before ``g`` is recorded and restored for
    their recomputation (as Reformer does for dropout), so random draws repeat."""

    @staticmethod
    def forward(ctx, x, f, g, replay):
        ctx.f, ctx.g = f, g
        x1, x2 = x.chunk(2, -1)
        with torch.no_grad():
            ctx.f_state = torch.get_rng_state() if replay else None
            y1 = x1 + f(x2)
            ctx.g_state = torch.get_rng_state() if replay else None
            y2 = x2 + g(y1)
        y = torch.cat([y1, y2], -1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        y1, y2 = y.chunk(2, -1)
        dy1, dy2 = dy.chunk(2, -1)
        with torch.enable_grad():
            y1 = y1.detach().requires_grad_(True)
            gy1 = _replay(ctx.g, ctx.g_state, y1)
            torch.autograd.backward(gy1, dy2)
        with torch.no_grad():
            x2 = y2 - gy1
            dx1 = dy1 + y1.grad
        with torch.enable_grad():
            x2 = x2.detach().requires_grad_(True)
            fx2 = _replay(ctx.f, ctx.f_state, x2)
            torch.autograd.backward(fx2, dx1)
        with torch.no_grad():
            dx2 = dy2 + x2.grad
        return torch.cat([dx1, dx2], -1), None, None, None


class RevNet(nn.Module):
    """Reversible residual blocks (RevNet, Gomez et al., NeurIPS 2017): the features split in
    two halves, each block ``f`` and ``g`` small MLPs, run by :class:`_ReversibleFn` (the
    activations recomputed in the backward, as Reformer's reversible layers do; ``replay``:
    the random draws of the forward repeated there). ``mode = 'plain'`` runs the same blocks
    with ordinary autograd (activations stored): the gradient the reversible one must give."""

    def __init__(self, d: int = 6, h: int = 8, blocks: int = 2, replay: bool = True):
        super().__init__()
        self.mode = "replay" if replay else "reversible"
        self.stem = nn.Linear(d, 2 * h)

        def mlp():
            return nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h))

        self.f = nn.ModuleList([mlp() for _ in range(blocks)])
        self.g = nn.ModuleList([mlp() for _ in range(blocks)])
        self.head = nn.Linear(2 * h, 3)

    def forward(self, x):
        h = self.stem(x)
        for f, g in zip(self.f, self.g, strict=True):
            if self.mode == "plain":
                x1, x2 = h.chunk(2, -1)
                y1 = x1 + f(x2)
                h = torch.cat([y1, x2 + g(y1)], -1)
            else:
                h = _ReversibleFn.apply(h, f, g, self.mode == "replay")
        return self.head(h)


class SmallCNN(nn.Module):
    """A conv, BatchNorm, ReLU, pooled into a Linear head: the model :func:`swa_model`
    averages."""

    def __init__(self, c: int = 6):
        super().__init__()
        self.conv = nn.Conv2d(3, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.head = nn.Linear(c, 3)

    def forward(self, x):
        h = F.relu(self.bn(self.conv(x)))
        return self.head(F.relu(self.conv2(h)).mean((2, 3)))


def swa_model() -> AveragedModel:
    """Stochastic weight averaging (Izmailov et al., UAI 2018): ``AveragedModel`` holding a
    copy of the model under ``module.`` and ``n_averaged``, averaged over three perturbed
    snapshots of it (what ``update_parameters`` does after each epoch), buffers averaged too
    (``use_buffers=True``)."""
    net = SmallCNN()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    swa = AveragedModel(net, use_buffers=True)
    for _ in range(3):
        snap = copy.deepcopy(net)
        with torch.no_grad():
            for p in snap.parameters():
                p.add_(0.1 * torch.randn_like(p))
        swa.update_parameters(snap)
    return swa


class WeightDropout(nn.Module):
    """AWD-LSTM's DropConnect on the recurrent weight (Merity et al., ICLR 2018, Sec. 2), as
    fastai's ``WeightDropout`` writes it: the LSTM's ``weight_hh_l0`` deleted, kept as the
    ``Parameter`` ``weight_hh_l0_raw`` here, and a dropped-out (training) or cloned (eval)
    copy of it set on the LSTM before every forward."""

    def __init__(self, module: nn.LSTM, p: float = 0.3, name: str = "weight_hh_l0"):
        super().__init__()
        self.module, self.p, self.name = module, p, name
        w = getattr(module, name)
        delattr(module, name)
        self.register_parameter(name + "_raw", nn.Parameter(w.detach().clone()))
        setattr(module, name, w.detach().clone())

    def _set_weights(self):
        raw = getattr(self, self.name + "_raw")
        w = F.dropout(raw, self.p) if self.training else raw.clone()
        setattr(self.module, self.name, w)

    def forward(self, *args):
        self._set_weights()
        return self.module(*args)


class AWDLSTM(nn.Module):
    """A one-layer AWD-LSTM tagger: a Linear input projection, the LSTM under
    :class:`WeightDropout`, a Linear head on the last step."""

    def __init__(self, d: int = 4, h: int = 6):
        super().__init__()
        self.proj = nn.Linear(d, h)
        self.rnn = WeightDropout(nn.LSTM(h, h, batch_first=True))
        self.head = nn.Linear(h, 3)

    def forward(self, x):  # (B, T, d)
        out, _ = self.rnn(self.proj(x))
        return self.head(out[:, -1])


class EchoStateNetwork(nn.Module):
    """A leaky-integrator echo state network (Jaeger et al., Neural Networks 2007, Eq. 2): a
    fixed random input layer and reservoir (the reservoir scaled to spectral radius 0.9, both
    frozen: ``requires_grad = False``), ``h <- (1 - a) h + a tanh(W_in x + W h)`` over time, a
    trained Linear readout of the last state."""

    def __init__(self, d: int = 3, n: int = 12, leak: float = 0.5):
        super().__init__()
        self.leak, self.n = leak, n
        self.w_in = nn.Linear(d, n)
        self.w_res = nn.Linear(n, n, bias=False)
        with torch.no_grad():
            w = torch.randn(n, n) * (torch.rand(n, n) < 0.4)
            w *= 0.9 / torch.linalg.eigvals(w).abs().max()
            self.w_res.weight.copy_(w)
        self.w_in.requires_grad_(False)
        self.w_res.requires_grad_(False)
        self.readout = nn.Linear(n, 3)

    def forward(self, x):  # (B, T, d)
        h = x.new_zeros(x.shape[0], self.n)
        for t in range(x.shape[1]):
            h = (1 - self.leak) * h + self.leak * torch.tanh(self.w_in(x[:, t]) + self.w_res(h))
        return self.readout(h)


class IncrementalHead(nn.Module):
    """Class-incremental fine-tuning (the old classes' rows frozen, as in Rebuffi et al.'s
    iCaRL setting, CVPR 2017, written with the common gradient hook): a feature MLP and a head
    of ``old + new`` classes whose ``weight`` carries ``register_hook`` zeroing the gradient of
    the ``old`` rows."""

    def __init__(self, d: int = 6, h: int = 10, old: int = 3, new: int = 2):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, h), nn.ReLU())
        self.head = nn.Linear(h, old + new)
        keep = torch.ones(old + new, 1)
        keep[:old] = 0
        self.register_buffer("grad_keep", keep)
        self.head.weight.register_hook(self._mask)

    def _mask(self, grad):
        return grad * self.grad_keep

    def forward(self, x):
        return self.head(self.body(x))


# ---------------------------------------------------------------------------------------------
# The batch or the number of calls set in the forward
# ---------------------------------------------------------------------------------------------
class BatchEnsemble(nn.Module):
    """BatchEnsemble (Wen et al., ICLR 2020, Sec. 3, Eq. 3): ``m`` members sharing each Linear,
    member ``i`` computing ``((x * s_i) W^T) * r_i + b_i`` with rank-1 fast weights; the batch
    tiled ``m`` times in the forward (member-major), the members' outputs averaged."""

    def __init__(self, d: int = 6, h: int = 10, members: int = 3):
        super().__init__()
        self.m = members
        self.l1, self.l2 = nn.Linear(d, h, bias=False), nn.Linear(h, 3, bias=False)
        self.s1 = nn.Parameter(1 + 0.3 * torch.randn(members, d))
        self.r1 = nn.Parameter(1 + 0.3 * torch.randn(members, h))
        self.b1 = nn.Parameter(0.1 * torch.randn(members, h))
        self.s2 = nn.Parameter(1 + 0.3 * torch.randn(members, h))
        self.r2 = nn.Parameter(1 + 0.3 * torch.randn(members, 3))

    def _fast(self, t, bs):  # (m, d) -> (m * B, d), member-major as the batch
        return t.repeat_interleave(bs, 0)

    def forward(self, x):
        bs = x.shape[0]
        x = x.repeat(self.m, 1)
        h = F.relu(self.l1(x * self._fast(self.s1, bs)) * self._fast(self.r1, bs)
                   + self._fast(self.b1, bs))
        y = self.l2(h * self._fast(self.s2, bs)) * self._fast(self.r2, bs)
        return y.view(self.m, bs, -1).mean(0)


class BeamSearch(nn.Module):
    """Beam search (width ``k``) over a one-layer decoder conditioned on the input: the input
    projected to a prefix state, each step the new token embedded, its query, key and value
    from Linear layers, the keys and values appended to a cache that grows by a token a step
    and is reordered by the surviving beams' parents (``index_select``); returns the ``k``
    beams' summed log-probabilities and the last step's log-probabilities per beam."""

    def __init__(self, d_in: int = 5, d: int = 8, vocab: int = 6, k: int = 3, steps: int = 4):
        super().__init__()
        self.k, self.steps, self.vocab = k, steps, vocab
        self.ctx = nn.Linear(d_in, d)
        self.emb = nn.Embedding(vocab, d)
        self.q, self.kv = nn.Linear(d, d), nn.Linear(d, 2 * d)
        self.o = nn.Linear(d, d)
        self.out = nn.Linear(d, vocab)

    def _step(self, tok, cache_k, cache_v, ctx):
        h = self.emb(tok) + ctx  # (N, d)
        k, v = self.kv(h).chunk(2, -1)
        cache_k = torch.cat([cache_k, k[:, None]], 1)
        cache_v = torch.cat([cache_v, v[:, None]], 1)
        att = (self.q(h)[:, None] @ cache_k.transpose(1, 2)) / math.sqrt(h.shape[-1])
        y = h + self.o((att.softmax(-1) @ cache_v)[:, 0])
        return self.out(y).log_softmax(-1), cache_k, cache_v

    def forward(self, x):  # (B, d_in)
        bs, k = x.shape[0], self.k
        ctx = torch.tanh(self.ctx(x)).repeat_interleave(k, 0)  # (B k, d)
        d = ctx.shape[-1]
        cache_k = ctx.new_zeros(bs * k, 0, d)
        cache_v = ctx.new_zeros(bs * k, 0, d)
        tok = torch.zeros(bs * k, dtype=torch.long)
        score = torch.full((bs, k), -1e9, dtype=ctx.dtype)
        score[:, 0] = 0.0  # one live beam at the start
        for _ in range(self.steps):
            logp, cache_k, cache_v = self._step(tok, cache_k, cache_v, ctx)
            cand = (score[..., None] + logp.view(bs, k, -1)).view(bs, -1)
            score, idx = cand.topk(k, -1)
            parent = idx // self.vocab + torch.arange(bs)[:, None] * k
            tok = (idx % self.vocab).flatten()
            cache_k = cache_k.index_select(0, parent.flatten())
            cache_v = cache_v.index_select(0, parent.flatten())
            last = logp.index_select(0, parent.flatten())
        return score, last


class UniversalACT(nn.Module):
    """A Universal Transformer encoder with adaptive computation time (Dehghani et al., ICLR
    2019, Sec. 2.2 and App. C, after Graves 2016): one shared attention + transition layer
    applied again while any position's accumulated halting probability (a Linear + sigmoid) is
    below ``1 - eps``, at most ``max_steps`` times, each position's state the halting-weighted
    mix of its states; a timestep embedding added at each step."""

    def __init__(self, d_in: int = 5, d: int = 8, max_steps: int = 4, eps: float = 0.01):
        super().__init__()
        self.max_steps, self.thr = max_steps, 1 - eps
        self.emb = nn.Linear(d_in, d)
        self.step_emb = nn.Parameter(0.1 * torch.randn(max_steps, d))
        self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))
        self.halt = nn.Linear(d, 1)
        with torch.no_grad():
            self.halt.bias.fill_(-0.5)
        self.head = nn.Linear(d, 3)

    def _layer(self, s):
        q, k, v = self.qkv(s).chunk(3, -1)
        att = (q @ k.transpose(1, 2) / math.sqrt(s.shape[-1])).softmax(-1)
        s = self.n1(s + self.o(att @ v))
        return self.n2(s + self.ff(s))

    def forward(self, x):  # (B, T, d_in)
        state = self.emb(x)
        bs, length, _ = state.shape
        halting = state.new_zeros(bs, length)
        remainders = state.new_zeros(bs, length)
        out = torch.zeros_like(state)
        step = 0
        while step < self.max_steps and ((halting < self.thr).any()):
            state = state + self.step_emb[step]
            p = torch.sigmoid(self.halt(state)).squeeze(-1)
            running = (halting < 1.0).to(state.dtype)
            new_halted = ((halting + p * running) > self.thr).to(state.dtype) * running
            still = ((halting + p * running) <= self.thr).to(state.dtype) * running
            halting = halting + p * still
            remainders = remainders + new_halted * (1 - halting)
            halting = halting + new_halted * remainders
            w = p * still + new_halted * remainders
            state = self._layer(state)
            out = state * w[..., None] + out * (1 - w[..., None])
            step += 1
        return self.head(out.mean(1))


class AdaptiveSoftmaxLM(nn.Module):
    """An adaptive softmax output (Grave et al., ICML 2017, Sec. 4) by
    ``nn.AdaptiveLogSoftmaxWithLoss``: a head over the frequent classes and two tail clusters
    (each a bias-free Linear projection down, then up to its classes), after a feature MLP. The
    forward returns the full log-probabilities (``log_prob``: every cluster on every row) and the
    label's log-probability (the module's forward: a tail runs on the rows whose label falls in
    it only); the label is the second input."""

    def __init__(self, d: int = 6, h: int = 8, classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h))
        self.asm = nn.AdaptiveLogSoftmaxWithLoss(h, classes, cutoffs=[3, 6], div_value=2.0)

    def forward(self, x, label):
        h = self.body(x)
        return self.asm.log_prob(h), self.asm(h, label).output


# ---------------------------------------------------------------------------------------------
# Attention variants
# ---------------------------------------------------------------------------------------------
class SAMAttention(nn.Module):
    """SAM's attention (Kirillov et al., ICCV 2023, its mask decoder's ``Attention``): Q / K / V
    Linear layers to an internal width ``d / downsample``, heads, an output Linear back."""

    def __init__(self, d: int, heads: int = 2, downsample: int = 2):
        super().__init__()
        self.h, inner = heads, d // downsample
        self.q, self.k, self.v = nn.Linear(d, inner), nn.Linear(d, inner), nn.Linear(d, inner)
        self.out = nn.Linear(inner, d)

    def _split(self, t):
        return t.unflatten(-1, (self.h, -1)).transpose(1, 2)

    def forward(self, q, k, v):
        q, k, v = self._split(self.q(q)), self._split(self.k(k)), self._split(self.v(v))
        att = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1)
        return self.out((att @ v).transpose(1, 2).flatten(2))


class SAMTwoWay(nn.Module):
    """SAM's two-way transformer (Kirillov et al., ICCV 2023, Sec. 3 and Fig. 14): prompt tokens
    self-attend, attend to the image embedding, an MLP, then the image embedding attends to the
    tokens, here with one attention module shared by both cross directions; queries and keys
    carry the positional encodings (the image's by random Fourier features, SAM's
    ``PositionEmbeddingRandom``: a grid of coordinates times a Gaussian buffer, sin and cos); a
    final token-to-image attention and a head on the first (output) token."""

    def __init__(self, d: int = 8, pe_scale: float = 1.0):
        super().__init__()
        self.inp = nn.Conv2d(3, d, 2, stride=2)
        self.register_buffer("gauss", pe_scale * torch.randn(2, d // 2))
        self.self_att = SAMAttention(d, downsample=1)
        self.cross = SAMAttention(d)
        self.final = SAMAttention(d)
        self.norms = nn.ModuleList([nn.LayerNorm(d) for _ in range(5)])
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))
        self.out_token = nn.Parameter(0.5 * torch.randn(1, 1, d))
        self.head = nn.Linear(d, 3)

    def _pe(self, hh, ww, dtype):
        ys = (torch.arange(hh, dtype=dtype) + 0.5) / hh
        xs = (torch.arange(ww, dtype=dtype) + 0.5) / ww
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
        proj = 2 * math.pi * (2 * grid - 1) @ self.gauss.to(dtype)
        return torch.cat([proj.sin(), proj.cos()], -1)  # (H W, d)

    def forward(self, image, points):  # (B, 3, H, W), (B, P, d) prompt tokens
        src = self.inp(image)
        bs, d, hh, ww = src.shape
        keys = src.flatten(2).transpose(1, 2)
        key_pe = self._pe(hh, ww, keys.dtype)[None]
        tokens = torch.cat([self.out_token.expand(bs, -1, -1), points], 1)
        q = self.norms[0](tokens + self.self_att(tokens, tokens, tokens))
        qp = q + tokens
        q = self.norms[1](q + self.cross(qp, keys + key_pe, keys))
        q = self.norms[2](q + self.mlp(q))
        qp = q + tokens
        keys = self.norms[3](keys + self.cross(keys + key_pe, qp, q))
        q = self.norms[4](q + self.final(q + tokens, keys + key_pe, keys))
        return self.head(q[:, 0])


class Nystromformer(nn.Module):
    """Nyströmformer's attention (Xiong et al., AAAI 2021, Eq. 13-15 and its code): landmarks
    as segment means of the queries and keys, ``softmax(Q K~^T) pinv(softmax(Q~ K~^T))
    softmax(Q~ K^T) V`` with the Moore-Penrose inverse by the iterative method (6 iterations,
    initialised by the largest row and column sums), plus a depthwise convolution over the
    sequence of each head's values (``Conv2d`` with a ``(k, 1)`` kernel, ``groups = heads``)."""

    def __init__(self, d_in: int = 5, d: int = 8, heads: int = 2, landmarks: int = 2,
                 k: int = 3):
        super().__init__()
        self.h, self.m = heads, landmarks
        self.emb = nn.Linear(d_in, d)
        self.qkv = nn.Linear(d, 3 * d)
        self.conv = nn.Conv2d(heads, heads, (k, 1), padding=(k // 2, 0), groups=heads,
                              bias=False)
        self.o = nn.Linear(d, d)
        self.head = nn.Linear(d, 3)

    @staticmethod
    def _pinv(a, iters: int = 6):
        eye = torch.eye(a.shape[-1], dtype=a.dtype)
        z = a.transpose(-1, -2) / (a.abs().sum(-1).amax(-1)[..., None, None]
                                   * a.abs().sum(-2).amax(-1)[..., None, None])
        for _ in range(iters):
            az = a @ z
            z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
        return z

    def forward(self, x):  # (B, T, d_in), T a multiple of the landmarks
        h = self.emb(x)
        bs, length, d = h.shape
        q, k, v = (t.unflatten(-1, (self.h, -1)).transpose(1, 2)
                   for t in self.qkv(h).chunk(3, -1))  # (B, H, T, hd)
        q = q / math.sqrt(q.shape[-1])
        ql = q.unflatten(2, (self.m, -1)).mean(3)
        kl = k.unflatten(2, (self.m, -1)).mean(3)
        k1 = (q @ kl.transpose(-1, -2)).softmax(-1)
        k2 = (ql @ kl.transpose(-1, -2)).softmax(-1)
        k3 = (ql @ k.transpose(-1, -2)).softmax(-1)
        y = k1 @ self._pinv(k2) @ (k3 @ v) + self.conv(v)
        y = y.transpose(1, 2).reshape(bs, length, d)
        return self.head((h + self.o(y)).mean(1))


class RandomSynthesizer(nn.Module):
    """The Random Synthesizer (Tay et al., ICML 2021, Sec. 3.2): the attention matrix a learned
    ``L x L`` parameter, input-independent, ``softmax(R)`` multiplying the values along the
    sequence (a weight on the left of the activations), beside a residual and a head."""

    def __init__(self, length: int = 6, d_in: int = 5, d: int = 8):
        super().__init__()
        self.emb = nn.Linear(d_in, d)
        self.R = nn.Parameter(torch.randn(length, length))
        self.v = nn.Linear(d, d)
        self.head = nn.Linear(d, 3)

    def forward(self, x):  # (B, L, d_in)
        h = self.emb(x)
        return self.head((h + self.R.softmax(-1) @ self.v(h)).mean(1))


class NetVLAD(nn.Module):
    """NetVLAD pooling (Arandjelovic et al., CVPR 2016, Eq. 4): a 1x1 convolution soft-assigns
    each L2-normalised local feature to ``k`` clusters, the residuals to learned centroids summed
    with those weights (``sum_n a_kn x_n - c_k sum_n a_kn``: the centroids multiplied by an
    activation), intra- and L2-normalised, a Linear head."""

    def __init__(self, c: int = 6, k: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.assign = nn.Conv2d(c, k, 1)
        self.centroids = nn.Parameter(torch.rand(k, c))
        self.head = nn.Linear(k * c, 3)

    def forward(self, x):
        f = F.normalize(self.stem(x), dim=1)
        a = self.assign(f).flatten(2).softmax(1)  # (B, K, N)
        v = torch.einsum("bkn,bcn->bkc", a, f.flatten(2)) - a.sum(-1)[..., None] * self.centroids
        return self.head(F.normalize(F.normalize(v, dim=-1).flatten(1), dim=-1))


class LISTA(nn.Module):
    """Learned ISTA (Gregor and LeCun, ICML 2010, Alg. 3): ``z <- h_theta(W_e x + S z)`` with
    the soft threshold ``h_theta`` a learned per-unit ``theta``, the same ``W_e x`` and ``S``
    (bias-free Linear layers) at each of ``T`` unrolled iterations; a head on the code."""

    def __init__(self, d: int = 6, n: int = 10, iters: int = 3):
        super().__init__()
        self.iters = iters
        self.w_e, self.s = nn.Linear(d, n, bias=False), nn.Linear(n, n, bias=False)
        self.theta = nn.Parameter(torch.full((n,), 0.1))
        self.head = nn.Linear(n, 3)

    def _shrink(self, v):
        return torch.sign(v) * F.relu(v.abs() - self.theta)

    def forward(self, x):
        b = self.w_e(x)
        z = self._shrink(b)
        for _ in range(self.iters):
            z = self._shrink(b + self.s(z))
        return self.head(z)


class NeuralCA(nn.Module):
    """A neural cellular automaton (Mordvintsev et al., Distill 2020, "Growing neural cellular
    automata"): each step every cell perceives its neighbourhood by fixed identity and Sobel
    filters (a depthwise ``F.conv2d`` with a buffer), a 1x1-conv MLP proposes an update, applied
    to a random half of the cells (a generator seeded in the forward: the same cells every
    call); a head on the pooled state."""

    def __init__(self, c: int = 8, steps: int = 3):
        super().__init__()
        sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8
        ident = torch.zeros(3, 3)
        ident[1, 1] = 1
        filters = torch.stack([ident, sobel, sobel.T])
        self.register_buffer("percept", filters.repeat(c, 1, 1)[:, None])  # (3c, 1, 3, 3)
        self.c, self.steps = c, steps
        self.inp = nn.Conv2d(3, c, 1)
        self.update = nn.Sequential(nn.Conv2d(3 * c, 16, 1), nn.ReLU(), nn.Conv2d(16, c, 1))
        self.head = nn.Linear(c, 3)

    def forward(self, x):
        h = self.inp(x)
        gen = torch.Generator().manual_seed(0)
        for _ in range(self.steps):
            p = F.conv2d(h, self.percept.to(h.dtype), padding=1, groups=self.c)
            fire = torch.rand(h.shape[0], 1, *h.shape[2:], generator=gen) < 0.5
            h = h + self.update(p) * fire.to(h.dtype)
        return self.head(h.mean((2, 3)))

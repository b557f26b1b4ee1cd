"""The tenth zoo's models (``test_zoo10.py``): scientific ML, time series, reinforcement
learning, meta-learning and the odd ways a forward is instrumented. Small, written here from
the papers' descriptions (no model library imported); widths are tiny."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def mlp(*widths: int, act: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------------------------
# Scientific ML
# ---------------------------------------------------------------------------------------------
class PINN(nn.Module):
    """A physics-informed net u(x, t) (Raissi et al., J. Comput. Phys. 2019) whose forward
    returns u with its derivatives u_t, u_x, u_xx by ``torch.autograd.grad(create_graph=True)``
    (the heat-equation residual u_t - u_xx is the loss)."""

    def __init__(self):
        super().__init__()
        self.net = mlp(2, 8, 8, 1)

    def forward(self, xt):
        with torch.enable_grad():
            xt = xt if xt.requires_grad else xt.detach().requires_grad_(True)
            u = self.net(xt)
            (du,) = torch.autograd.grad(u.sum(), xt, create_graph=True)
            (d2u,) = torch.autograd.grad(du[:, 0].sum(), xt, create_graph=True)
        return torch.cat([u, du, d2u[:, :1]], dim=1)  # u, u_x, u_t, u_xx


class HNN(nn.Module):
    """A Hamiltonian neural network (Greydanus et al., NeurIPS 2019): a learned scalar H(q, p)
    and the vector field (dH/dp, -dH/dq) from its gradient."""

    def __init__(self):
        super().__init__()
        self.h = mlp(2, 8, 8, 1)

    def forward(self, qp):
        with torch.enable_grad():
            qp = qp if qp.requires_grad else qp.detach().requires_grad_(True)
            (dh,) = torch.autograd.grad(self.h(qp).sum(), qp, create_graph=True)
        return torch.stack([dh[:, 1], -dh[:, 0]], dim=1)


class DeepONet(nn.Module):
    """DeepONet (Lu et al., Nat. Mach. Intell. 2021): a branch net on the sensor values of u,
    a trunk net on the query points y, combined by an einsum over p basis terms."""

    def __init__(self, sensors: int = 6, p: int = 5):
        super().__init__()
        self.branch = mlp(sensors, 8, p, act=nn.ReLU)
        self.trunk = mlp(1, 8, p)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, u, y):  # u (B, sensors), y (B, P, 1): each function's own points
        return torch.einsum("bp,bnp->bn", self.branch(u), torch.tanh(self.trunk(y))) + self.bias


def _rbf(d, centers, gamma: float = 4.0):
    return torch.exp(-gamma * (d[..., None] - centers) ** 2)


class SchNet(nn.Module):
    """SchNet's interaction (Schütt et al., NeurIPS 2017): a continuous-filter convolution
    whose filter W(r_ij) is generated from an RBF expansion of the distances by a filter
    network, so each pair's weight depends on the input (a product with a data weight)."""

    def __init__(self, n_types: int = 5, f: int = 8, n_rbf: int = 6):
        super().__init__()
        self.embed = nn.Embedding(n_types, f)
        self.register_buffer("centers", torch.linspace(0.0, 3.0, n_rbf))
        self.filter = mlp(n_rbf, f, f)
        self.in2f = nn.Linear(f, f, bias=False)
        self.f2out = mlp(f, f, f)
        self.out = mlp(f, 4, 1)

    def forward(self, z, pos):  # z (B, N) atom types, pos (B, N, 3)
        h = self.embed(z)
        d = torch.cdist(pos, pos)  # (B, N, N)
        w = self.filter(_rbf(d, self.centers))  # (B, N, N, F): the generated filter
        mask = 1.0 - torch.eye(z.shape[1], dtype=pos.dtype)  # no self-interaction
        x = self.in2f(h)
        v = torch.einsum("bijf,bjf,ij->bif", w, x, mask)  # continuous-filter convolution
        h = h + self.f2out(v)
        return self.out(h).sum(dim=1)  # an energy per molecule


class EGNNLayer(nn.Module):
    """An E(n)-equivariant graph layer (Satorras et al., ICML 2021), fully connected:
    messages from (h_i, h_j, |x_i - x_j|^2), coordinates moved along x_i - x_j."""

    def __init__(self, f: int = 6):
        super().__init__()
        self.phi_e = mlp(2 * f + 1, 8, 8, act=nn.SiLU)
        self.phi_x = mlp(8, 8, 1, act=nn.SiLU)
        self.phi_h = mlp(f + 8, 8, f, act=nn.SiLU)

    def forward(self, h, x):  # h (B, N, F), x (B, N, 3)
        n = h.shape[1]
        diff = x[:, :, None] - x[:, None]  # (B, N, N, 3)
        d2 = diff.pow(2).sum(-1, keepdim=True)
        hi, hj = h[:, :, None].expand(-1, -1, n, -1), h[:, None].expand(-1, n, -1, -1)
        m = self.phi_e(torch.cat([hi, hj, d2], dim=-1))  # (B, N, N, 8)
        x = x + (diff * self.phi_x(m)).sum(2) / (n - 1)
        h = h + self.phi_h(torch.cat([h, m.sum(2)], dim=-1))
        return h, x


class EGNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([EGNNLayer(), EGNNLayer()])

    def forward(self, h, x):
        for layer in self.layers:
            h, x = layer(h, x)
        return h, x


# ---------------------------------------------------------------------------------------------
# Time series
# ---------------------------------------------------------------------------------------------
class NBeatsBlock(nn.Module):
    def __init__(self, back: int, fore: int, basis: str):
        super().__init__()
        self.fc = mlp(back, 16, 16, act=nn.ReLU)
        self.relu = nn.ReLU()
        if basis == "trend":  # polynomial basis, degree 2, fixed (a buffer, not learned)
            deg = 3
            self.theta = nn.Linear(16, 2 * deg, bias=False)
            tb = torch.arange(back) / back
            tf = torch.arange(fore) / fore
            self.register_buffer("vb", torch.stack([tb**i for i in range(deg)]))
            self.register_buffer("vf", torch.stack([tf**i for i in range(deg)]))
            self.deg = deg
        else:  # generic: the basis is a learned Linear
            self.deg = 0
            self.theta = nn.Linear(16, 8, bias=False)
            self.back_basis = nn.Linear(4, back)
            self.fore_basis = nn.Linear(4, fore)

    def forward(self, x):
        theta = self.theta(self.relu(self.fc(x)))
        if self.deg:
            return theta[:, :self.deg] @ self.vb, theta[:, self.deg:] @ self.vf
        return self.back_basis(theta[:, :4]), self.fore_basis(theta[:, 4:])


class NBeats(nn.Module):
    """N-BEATS (Oreshkin et al., ICLR 2020): blocks fed the residual of the backcasts, their
    forecasts summed; a trend stack (polynomial basis) then a generic stack."""

    def __init__(self, back: int = 12, fore: int = 4):
        super().__init__()
        self.blocks = nn.ModuleList([NBeatsBlock(back, fore, "trend"),
                                     NBeatsBlock(back, fore, "generic"),
                                     NBeatsBlock(back, fore, "generic")])

    def forward(self, x):
        forecast = 0
        for block in self.blocks:
            b, f = block(x)
            x = x - b
            forecast = forecast + f
        return forecast


class GRN(nn.Module):
    """TFT's gated residual network: ELU(W2 a + W3 c), a GLU gate, a residual, LayerNorm."""

    def __init__(self, d_in: int, d: int, d_out: int, context: int = 0):
        super().__init__()
        self.skip = nn.Linear(d_in, d_out) if d_in != d_out else nn.Identity()
        self.fc1 = nn.Linear(d_in, d)
        self.ctx = nn.Linear(context, d, bias=False) if context else None
        self.fc2 = nn.Linear(d, d)
        self.glu = nn.Linear(d, 2 * d_out)
        self.norm = nn.LayerNorm(d_out)

    def forward(self, a, c=None):
        h = self.fc1(a)
        if self.ctx is not None and c is not None:
            h = h + self.ctx(c)
        h = self.fc2(F.elu(h))
        return self.norm(self.skip(a) + F.glu(self.glu(h), dim=-1))


class TFTVariableSelection(nn.Module):
    """A Temporal Fusion Transformer's variable selection (Lim et al., IJF 2021): each of V
    variables embedded and passed through its own GRN, weighted by a softmax from a GRN on all
    of them with a static context."""

    def __init__(self, n_vars: int = 3, d: int = 6, context: int = 4):
        super().__init__()
        self.embed = nn.ModuleList([nn.Linear(1, d) for _ in range(n_vars)])
        self.var_grns = nn.ModuleList([GRN(d, d, d) for _ in range(n_vars)])
        self.weights_grn = GRN(n_vars * d, d, n_vars, context)
        self.head = nn.Linear(d, 2)

    def forward(self, x, c):  # x (B, T, V), c (B, context)
        emb = [e(x[..., i:i + 1]) for i, e in enumerate(self.embed)]
        c = c[:, None].expand(-1, x.shape[1], -1)
        w = torch.softmax(self.weights_grn(torch.cat(emb, -1), c), dim=-1)  # (B, T, V)
        h = torch.stack([g(e) for g, e in zip(self.var_grns, emb, strict=True)], -1)
        return self.head((h * w[..., None, :]).sum(-1)), w


class ProbSparseAttention(nn.Module):
    """Informer's ProbSparse self-attention (Zhou et al., AAAI 2021): the sparsity measure
    M(q) = max_j(q k_j) - mean_j(q k_j) on a sample of keys picks the top-u queries, which
    attend; the others take the mean of the values."""

    def __init__(self, d: int = 8, heads: int = 2, factor: int = 1):
        super().__init__()
        self.h, self.factor = heads, factor
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x):
        b, length, d = x.shape
        h, dh = self.h, d // self.h

        def split(t):
            return t.reshape(b, length, h, dh).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        u = min(length, self.factor * math.ceil(math.log(length)))
        # a fixed key sample (Informer draws one at random: fixed here so runs compare)
        idx = torch.arange(0, length, max(1, length // u))[:u]
        qk = q @ k[:, :, idx].transpose(-1, -2)  # (B, h, L, u)
        m = qk.amax(-1) - qk.sum(-1) / length
        top = m.topk(u, dim=-1).indices  # (B, h, u)
        out = v.mean(2, keepdim=True).expand(b, h, length, dh).clone()
        q_top = torch.gather(q, 2, top[..., None].expand(-1, -1, -1, dh))
        att = torch.softmax(q_top @ k.transpose(-1, -2) / math.sqrt(dh), -1) @ v
        out.scatter_(2, top[..., None].expand(-1, -1, -1, dh), att)
        return self.o(out.transpose(1, 2).reshape(b, length, d))


class Informer(nn.Module):
    def __init__(self, c: int = 2, d: int = 8):
        super().__init__()
        self.embed = nn.Conv1d(c, d, 3, padding=1, padding_mode="circular")
        self.attn = ProbSparseAttention(d)
        self.norm = nn.LayerNorm(d)
        self.ff = mlp(d, 16, d, act=nn.GELU)
        self.head = nn.Linear(d, 1)

    def forward(self, x):  # x (B, L, C)
        h = self.embed(x.transpose(1, 2)).transpose(1, 2)
        h = self.norm(h + self.attn(h))
        return self.head(h + self.ff(h)).squeeze(-1)


class PatchTST(nn.Module):
    """PatchTST (Nie et al., ICLR 2023): each channel on its own, its series cut into patches
    by ``unfold``, embedded, a transformer encoder, a flatten head to the horizon."""

    def __init__(self, length: int = 16, patch: int = 4, stride: int = 2, d: int = 8,
                 horizon: int = 3):
        super().__init__()
        self.patch, self.stride = patch, stride
        n = (length - patch) // stride + 1
        self.embed = nn.Linear(patch, d)
        self.pos = nn.Parameter(torch.randn(n, d) * 0.1)
        layer = nn.TransformerEncoderLayer(d, 2, 16, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(n * d, horizon)

    def forward(self, x):  # (B, C, L)
        b, c, _ = x.shape
        mean = x.mean(-1, keepdim=True)  # RevIN-style instance normalisation
        std = x.std(-1, keepdim=True) + 1e-5
        p = ((x - mean) / std).unfold(-1, self.patch, self.stride)  # (B, C, N, P)
        z = self.encoder(self.embed(p.reshape(b * c, -1, self.patch)) + self.pos)
        y = self.head(z.reshape(b, c, -1))
        return y * std + mean


class DeepAR(nn.Module):
    """DeepAR (Salinas et al., IJF 2020): an LSTM over the series and covariates, a Gaussian
    head returning the mean and a softplus scale at every step."""

    def __init__(self, c: int = 2, hidden: int = 8):
        super().__init__()
        self.lstm = nn.LSTM(1 + c, hidden, num_layers=2, batch_first=True)
        self.mu = nn.Linear(hidden, 1)
        self.sigma = nn.Linear(hidden, 1)

    def forward(self, z, cov):  # z (B, T), cov (B, T, C)
        h, _ = self.lstm(torch.cat([z[..., None], cov], -1))
        return self.mu(h).squeeze(-1), F.softplus(self.sigma(h)).squeeze(-1) + 1e-3


# ---------------------------------------------------------------------------------------------
# Reinforcement learning
# ---------------------------------------------------------------------------------------------
class ActorCritic(nn.Module):
    """A shared trunk, a policy head returning a ``torch.distributions`` object (Categorical
    for discrete actions, Normal with a learned log-std for continuous ones) and a value."""

    def __init__(self, obs: int = 6, actions: int = 3, continuous: bool = False):
        super().__init__()
        self.continuous = continuous
        self.trunk = mlp(obs, 16, 16)
        self.pi = nn.Linear(16, actions)
        self.v = nn.Linear(16, 1)
        self.log_std = nn.Parameter(torch.full((actions,), -0.5))

    def forward(self, obs):
        h = torch.tanh(self.trunk(obs))
        if self.continuous:
            dist = torch.distributions.Normal(self.pi(h), self.log_std.exp())
        else:
            dist = torch.distributions.Categorical(logits=self.pi(h))
        return dist, self.v(h).squeeze(-1)


class DuelingDQN(nn.Module):
    """Dueling DQN (Wang et al., ICML 2016): Q = V + A - mean(A), on a small conv stem."""

    def __init__(self, actions: int = 4):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2), nn.ReLU(), nn.Flatten())
        self.value = mlp(36, 16, 1, act=nn.ReLU)
        self.adv = mlp(36, 16, actions, act=nn.ReLU)

    def forward(self, x):  # (B, 2, 7, 7)
        h = self.conv(x)
        a = self.adv(h)
        return self.value(h) + a - a.mean(-1, keepdim=True)


class SampledPolicy(nn.Module):
    """A policy that samples its action in its forward (``torch.multinomial`` drawing from the
    global generator: the caller seeds it) and returns the action with its log-probability."""

    def __init__(self, obs: int = 6, actions: int = 4):
        super().__init__()
        self.net = mlp(obs, 16, actions)

    def forward(self, obs):
        logp = torch.log_softmax(self.net(obs), -1)
        action = torch.multinomial(logp.exp(), 1)
        return action.squeeze(-1), logp.gather(-1, action).squeeze(-1), logp


# ---------------------------------------------------------------------------------------------
# Meta-learning
# ---------------------------------------------------------------------------------------------
class MAML(nn.Module):
    """MAML's inner loop in the forward (Finn et al., ICML 2017): one gradient step on the
    support set (``autograd.grad``), the query set through the adapted parameters by
    ``torch.func.functional_call``."""

    def __init__(self, lr: float = 0.1):
        super().__init__()
        self.net = mlp(4, 8, 3, act=nn.ReLU)
        self.lr = lr

    def forward(self, xs, ys, xq):
        params = dict(self.net.named_parameters())
        with torch.enable_grad():
            loss = F.cross_entropy(self.net(xs), ys)
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        adapted = {n: p - self.lr * g for (n, p), g in zip(params.items(), grads, strict=True)}
        return torch.func.functional_call(self.net, adapted, (xq,))


class FastWeights(nn.Module):
    """A fast-weights layer (Ba et al., NeurIPS 2016; Schlag et al., ICML 2021's linear
    transformer view): a per-sequence weight A = Σ_t v_t k_tᵀ written from the input by outer
    products and read with the queries, beside slow Linear projections."""

    def __init__(self, d: int = 8):
        super().__init__()
        self.kqv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.decay = 0.9

    def forward(self, x):  # (B, T, D)
        k, q, v = self.kqv(x).chunk(3, -1)
        k = F.normalize(k, dim=-1)
        a = torch.zeros(x.shape[0], x.shape[2], x.shape[2], dtype=x.dtype)
        outs = []
        for t in range(x.shape[1]):
            a = self.decay * a + v[:, t, :, None] * k[:, t, None, :]  # (B, D, D) fast weight
            outs.append(torch.bmm(a, q[:, t, :, None]).squeeze(-1))
        return self.out(torch.stack(outs, 1))


# ---------------------------------------------------------------------------------------------
# An instrumented forward
# ---------------------------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, d: int = 8):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, 16), nn.Linear(16, d)

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(x)))


class Steered(nn.Module):
    """Activation steering: a forward hook adds a vector to a block's output; a forward
    pre-hook on the model normalises its input."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(Block(), Block())
        self.head = nn.Linear(8, 3)
        self.register_buffer("steer", torch.linspace(-1.0, 1.0, 8))
        self.blocks[0].register_forward_hook(lambda _m, _a, out: out + self.steer)
        self.register_forward_pre_hook(
            lambda _m, args: (F.layer_norm(args[0], args[0].shape[-1:]),))

    def forward(self, x):
        return self.head(self.blocks(x))


class Autocast(nn.Module):
    """``torch.autocast(bfloat16)`` inside the forward around the blocks, float32 after."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(Block(), Block())
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = self.blocks(x)
        return self.head(h.float())


class SparseLinear(nn.Linear):
    """A pruned Linear whose weight is kept as a sparse COO tensor and applied by
    ``torch.sparse.mm`` (a pruning library's deployment form)."""

    def __init__(self, dense: nn.Linear, keep: float = 0.5):
        super().__init__(dense.in_features, dense.out_features)
        w = dense.weight.detach()
        w = w * (w.abs() >= w.abs().flatten().kthvalue(int(w.numel() * (1 - keep))).values)
        self.weight = nn.Parameter(w.to_sparse_coo())
        self.bias = nn.Parameter(dense.bias.detach().clone())

    def forward(self, x):
        return torch.sparse.mm(self.weight, x.t()).t() + self.bias


class QuantLinear(nn.Linear):
    """A Brevitas-style QuantLinear: an ``nn.Linear`` subclass fake-quantizing its weight
    (symmetric per tensor, 4 bits, straight-through) in its own forward."""

    bits = 4

    def forward(self, x):
        q = 2 ** (self.bits - 1) - 1
        s = self.weight.abs().max().detach() / q
        w = self.weight + (torch.round(self.weight / s).clamp(-q, q) * s - self.weight).detach()
        return F.linear(x, w, self.bias)


class SparseNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = SparseLinear(nn.Linear(8, 16))
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class QuantNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = QuantLinear(8, 16)
        self.fc2 = QuantLinear(16, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))

"""The twentieth zoo's models (``test_zoo20.py``): model families at toy size that the nineteen
earlier zoos did not build, chosen for ways weights reach a product that no zoo used. Layers
that subclass a torch layer: edge-popup supermasks (an ``nn.Conv2d`` and an ``nn.Linear``
whose forward multiplies the weight by a top-k mask of learned scores). Weights built in the
forward from other parameters: a Householder-parametrised orthogonal layer (a product of
reflections), Fastfood (Hadamard products by a constant buffer, learned diagonals, a fixed
permutation). Layers reached in other ways: one ``nn.Linear`` called on inputs of rank 2, 3
and 4 in one forward, a layer registered under two names (``self.proj`` and ``blocks[0]``), a
neural additive model (per-feature networks as grouped 1x1 ``nn.Conv1d`` s), a CP-decomposed
convolution (pointwise, ``(3, 1)`` and ``(1, 3)`` depthwise, pointwise). Other arithmetic:
piecewise-linear encoding of numerical features (``torch.bucketize``), batch renormalization
(running statistics updated in the forward by a hand-written norm), an ordinal-regression head
(CORAL: one weight row, K-1 biases) and a mixture density network returning a dict. Small,
written here from the papers' descriptions (no model library imported); widths are tiny."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------------------------------------
# Layers that subclass a torch layer
# ---------------------------------------------------------------------------------------------
class _TopK(torch.autograd.Function):
    """The edge-popup mask: 1 on the top ``k`` fraction of the scores' magnitudes, straight-
    through gradient to the scores."""

    @staticmethod
    def forward(ctx, scores, k):
        flat = scores.flatten().abs()
        keep = max(1, int(k * flat.numel()))
        mask = torch.zeros_like(flat)
        mask[flat.topk(keep).indices] = 1
        return mask.view_as(scores)

    @staticmethod
    def backward(ctx, g):
        return g, None


def _add_scores(layer: nn.Conv2d | nn.Linear, k: float) -> None:
    """Edge-popup's scores beside ``layer``'s weight (random, frozen) and the kept fraction."""
    layer.scores = nn.Parameter(torch.randn_like(layer.weight))
    layer.weight.requires_grad_(False)
    layer.k = k


class SupermaskConv(nn.Conv2d):
    """An edge-popup convolution (Ramanujan et al., CVPR 2020, Alg. 1): a random weight never
    trained, learned scores, the top-k of whose magnitudes select the weight's entries."""

    def __init__(self, *args, k: float = 0.5, **kw):
        super().__init__(*args, **kw)
        _add_scores(self, k)

    def forward(self, x):
        w = self.weight * _TopK.apply(self.scores, self.k)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class SupermaskLinear(nn.Linear):
    """The edge-popup Linear (Ramanujan et al., CVPR 2020): as :class:`SupermaskConv`."""

    def __init__(self, *args, k: float = 0.5, **kw):
        super().__init__(*args, **kw)
        _add_scores(self, k)

    def forward(self, x):
        return F.linear(x, self.weight * _TopK.apply(self.scores, self.k), self.bias)


class Supermask(nn.Module):
    """A small network whose middle is edge-popup: a plain stem convolution, two supermask
    convolutions, a supermask Linear and a plain classifier."""

    def __init__(self, c: int = 3, h: int = 4, n: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(c, h, 3, padding=1)
        self.c1 = SupermaskConv(h, h, 3, padding=1)
        self.c2 = SupermaskConv(h, h, 3, padding=1, stride=2)
        self.fc = SupermaskLinear(h, h)
        self.head = nn.Linear(h, n)

    def forward(self, x):
        y = torch.relu(self.c2(torch.relu(self.c1(torch.relu(self.stem(x))))))
        return self.head(torch.relu(self.fc(y.mean((2, 3)))))


# ---------------------------------------------------------------------------------------------
# Weights built in the forward
# ---------------------------------------------------------------------------------------------
class HouseholderLinear(nn.Module):
    """An orthogonal layer as a product of Householder reflections (Mhammedi et al., ICML 2017,
    Sec. 3): ``W = H_1 ... H_m``, ``H_i = I - 2 u_i u_i^T / |u_i|^2``, applied to the input one
    reflection at a time (no matrix formed)."""

    def __init__(self, d: int, m: int = 3):
        super().__init__()
        self.u = nn.Parameter(torch.randn(m, d))

    def forward(self, x):
        for u in self.u.flip(0):
            x = x - 2 * (x @ u)[..., None] * u / u.dot(u)
        return x


class HouseholderNet(nn.Module):
    """An MLP with a Householder-orthogonal hidden layer between two Linears."""

    def __init__(self, d: int = 6, h: int = 8, n: int = 3):
        super().__init__()
        self.inp = nn.Linear(d, h)
        self.orth = HouseholderLinear(h)
        self.head = nn.Linear(h, n)

    def forward(self, x):
        return self.head(torch.tanh(self.orth(torch.tanh(self.inp(x)))))


def _hadamard(n: int) -> torch.Tensor:
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / math.sqrt(n)


class Fastfood(nn.Module):
    """A Fastfood layer (Le, Sarlos and Smola, ICML 2013, Eq. 7; as the adaptive layer of Yang
    et al., ICCV 2015 "Deep Fried Convnets"): ``S H G P H B x`` with learned diagonals
    ``B, G, S``, a fixed permutation ``P`` and the (normalised) Hadamard matrix ``H``, a buffer
    multiplied from the right; an ``nn.Linear`` before and after."""

    def __init__(self, d: int = 6, h: int = 8, n: int = 3):
        super().__init__()
        self.inp = nn.Linear(d, h)
        self.register_buffer("H", _hadamard(h))
        self.register_buffer("perm", torch.randperm(h))
        self.B = nn.Parameter(torch.randn(h).sign())
        self.G = nn.Parameter(torch.randn(h))
        self.S = nn.Parameter(torch.ones(h))
        self.head = nn.Linear(h, n)

    def forward(self, x):
        z = torch.relu(self.inp(x))
        z = ((z * self.B) @ self.H)[:, self.perm]
        z = ((z * self.G) @ self.H) * self.S
        return self.head(torch.relu(z))


# ---------------------------------------------------------------------------------------------
# Layers reached in other ways
# ---------------------------------------------------------------------------------------------
class ManyRanks(nn.Module):
    """One ``nn.Linear`` projecting a global vector (B, D), tokens (B, T, D) and a feature grid
    (B, H, W, D) in one forward (a shared projection over several granularities, as the
    multi-scale heads of hierarchical encoders); the three pooled and summed."""

    def __init__(self, d: int = 6, e: int = 5, n: int = 3):
        super().__init__()
        self.tok = nn.Linear(d, d)
        self.proj = nn.Linear(d, e)
        self.head = nn.Linear(e, n)

    def forward(self, x):  # (B, H, W, D)
        grid = torch.relu(self.tok(x))
        tokens = grid.flatten(1, 2)
        g = self.proj(grid.mean((1, 2)))
        t = self.proj(tokens).mean(1)
        m = self.proj(grid).amax((1, 2))
        return self.head(torch.relu(g + t + m))


class Aliased(nn.Module):
    """A layer registered under two names: the stem ``self.proj`` is also ``blocks[0]`` (a
    model keeping a list of its stages beside named handles on them, as backbones that expose
    ``stem`` and ``stages``); the forward calls it by both."""

    def __init__(self, d: int = 6, h: int = 8, n: int = 3):
        super().__init__()
        self.proj = nn.Linear(d, h)
        self.blocks = nn.ModuleList([self.proj, nn.Linear(h, h)])
        self.head = nn.Linear(h, n)

    def forward(self, x):
        a = torch.relu(self.proj(x))
        b = torch.relu(self.blocks[0](x * 0.5))
        return self.head(torch.relu(self.blocks[1](a + b)))


class NeuralAdditiveModel(nn.Module):
    """A neural additive model (Agarwal et al., NeurIPS 2021, Sec. 2): one small network per
    feature, the features' outputs summed; the per-feature networks batched as grouped 1x1
    ``nn.Conv1d`` s (groups = features), as vectorised NAM code does."""

    def __init__(self, d: int = 6, h: int = 4, n: int = 2):
        super().__init__()
        self.l1 = nn.Conv1d(d, d * h, 1, groups=d)
        self.l2 = nn.Conv1d(d * h, d * h, 1, groups=d)
        self.l3 = nn.Conv1d(d * h, d * n, 1, groups=d)
        self.bias = nn.Parameter(torch.zeros(n))
        self.d, self.n = d, n

    def forward(self, x):  # (B, D)
        y = torch.relu(self.l1(x[:, :, None]))
        y = torch.relu(self.l2(y))
        per_feature = self.l3(y).view(-1, self.d, self.n)
        return per_feature.sum(1) + self.bias


class CPConv(nn.Module):
    """A CP-decomposed convolution (Lebedev et al., ICLR 2015, Sec. 3.2): a rank-R pointwise
    convolution, a ``(3, 1)`` and a ``(1, 3)`` depthwise one, a pointwise one back to the output
    channels; two of them and a classifier."""

    def __init__(self, c: int = 3, r: int = 4, out: int = 4, n: int = 3):
        super().__init__()

        def cp(cin, cout):
            return nn.Sequential(
                nn.Conv2d(cin, r, 1, bias=False),
                nn.Conv2d(r, r, (3, 1), padding=(1, 0), groups=r, bias=False),
                nn.Conv2d(r, r, (1, 3), padding=(0, 1), groups=r, bias=False),
                nn.Conv2d(r, cout, 1))

        self.a = cp(c, out)
        self.b = cp(out, out)
        self.head = nn.Linear(out, n)

    def forward(self, x):
        y = torch.relu(self.b(torch.relu(self.a(x))))
        return self.head(y.mean((2, 3)))


# ---------------------------------------------------------------------------------------------
# Other arithmetic
# ---------------------------------------------------------------------------------------------
class PiecewiseLinearMLP(nn.Module):
    """Piecewise-linear encoding of numerical features (Gorishniy et al., NeurIPS 2022, Eq. 1):
    each feature's bin found by ``torch.bucketize`` against fixed edges, encoded as 1 for the
    bins below it, its position within its bin, 0 above; an MLP on the encodings."""

    def __init__(self, d: int = 4, bins: int = 4, h: int = 8, n: int = 3):
        super().__init__()
        self.register_buffer("edges", torch.linspace(-2, 2, bins + 1))
        self.mlp = nn.Sequential(nn.Linear(d * bins, h), nn.ReLU(), nn.Linear(h, n))

    def forward(self, x):  # (B, D)
        e = self.edges
        lo, width = e[:-1], e[1:] - e[:-1]
        idx = torch.bucketize(x, e[1:-1])  # (B, D) the bin of each feature
        frac = ((x[..., None] - lo) / width).clamp(0, 1)  # (B, D, bins)
        bins = torch.arange(len(lo))
        enc = torch.where(bins < idx[..., None], torch.ones_like(frac),
                          torch.where(bins == idx[..., None], frac, torch.zeros_like(frac)))
        return self.mlp(enc.flatten(1))


class BatchRenorm(nn.Module):
    """Batch renormalization (Ioffe, NeurIPS 2017, Alg. 1): in training the batch statistics
    corrected by ``r``, ``d`` (clipped, no gradient) toward the running ones, which the forward
    updates; in evaluation the running statistics alone."""

    def __init__(self, c: int, momentum: float = 0.1, r_max: float = 3.0, d_max: float = 5.0):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_std", torch.ones(c))
        self.momentum, self.r_max, self.d_max = momentum, r_max, d_max

    def forward(self, x):  # (B, C)
        if self.training:
            mean, std = x.mean(0), x.std(0, unbiased=False) + 1e-5
            with torch.no_grad():
                r = (std / self.running_std).clamp(1 / self.r_max, self.r_max)
                d = ((mean - self.running_mean) / self.running_std).clamp(-self.d_max,
                                                                          self.d_max)
                self.running_mean += self.momentum * (mean.detach() - self.running_mean)
                self.running_std += self.momentum * (std.detach() - self.running_std)
            y = (x - mean) / std * r + d
        else:
            y = (x - self.running_mean) / self.running_std
        return y * self.weight + self.bias


class RenormMLP(nn.Module):
    """An MLP with batch renormalization after its first layer; running statistics set from
    a few training batches at build time (a trained model's)."""

    def __init__(self, d: int = 6, h: int = 8, n: int = 3):
        super().__init__()
        self.l1 = nn.Linear(d, h)
        self.norm = BatchRenorm(h)
        self.head = nn.Linear(h, n)
        with torch.no_grad():
            for _ in range(5):
                self.norm(self.l1(torch.randn(16, d)))

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.l1(x))))


class Coral(nn.Module):
    """Ordinal regression by CORAL (Cao, Mirjalili and Raschka, Pattern Recognition Letters
    2020, Sec. 3): an encoder, one weight row shared by the K-1 binary tasks (a bias-free
    ``nn.Linear`` to one output) and K-1 learned thresholds; the K-1 logits out."""

    def __init__(self, d: int = 6, h: int = 8, k: int = 5):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(d, h), nn.ReLU())
        self.fc = nn.Linear(h, 1, bias=False)
        self.thresholds = nn.Parameter(torch.linspace(1, -1, k - 1))

    def forward(self, x):
        return self.fc(self.enc(x)) + self.thresholds


class MixtureDensity(nn.Module):
    """A mixture density network (Bishop, Aston report NCRG/94/004, 1994, Eq. 24-27): one trunk,
    a Linear each for the mixing coefficients (softmax), the means and the scales (exp); a dict
    of the three out."""

    def __init__(self, d: int = 6, h: int = 8, k: int = 3, out: int = 2):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(d, h), nn.Tanh())
        self.pi = nn.Linear(h, k)
        self.mu = nn.Linear(h, k * out)
        self.log_sigma = nn.Linear(h, k)

    def forward(self, x):
        z = self.trunk(x)
        return {"pi": self.pi(z).softmax(-1), "mu": self.mu(z),
                "sigma": self.log_sigma(z).exp()}

"""A third zoo of models cimsim was not written for (worktree ``zoo3``, after
``test_new_models.py`` and ``test_zoo2.py``): today's networks as researchers write them. A
LLaMA-style block (RMSNorm, SwiGLU, rotary embeddings, grouped-query attention through
``F.scaled_dot_product_attention(is_causal=True)``, a KV-cache forward taking keyword
arguments); a ViT (patch-embedding Conv2d with kernel = stride, class token, stochastic depth,
LayerScale); an MLP-Mixer (Linear over the token axis); a depthwise-separable causal TCN; an
``nn.Unfold`` local-patch layer; a Conv3d / ConvTranspose3d video net; a GPT-2-style ``Conv1D``
(``torch.addmm`` with the weight stored transposed) beside ``F.conv2d`` / ``torch.einsum`` with
weight parameters; ``torch.nn.utils.parametrize`` (orthogonal, a custom parametrization,
weight_norm); ``nn.DataParallel``.

And what broke: a subclass of ``nn.Conv2d`` / ``nn.Linear`` overriding ``forward`` (timm's
weight-standardized ``StdConv2d``) was mapped with its raw weight, its own computation dropped
(output 60 % off float, no word); weights reaching a product as a buffer, through a
parametrization, computed from parameters (``self.w * self.g``) or as a tied embedding's table
(``F.linear(h, self.emb.weight)``) ran in float unlisted; a ``torch.jit.script`` ed submodule
ran in float unlisted (its compiled forward calls its own layers); ``next(self.parameters())``
in a forward was a bare ``StopIteration``; ``prepare`` trained the twins of frozen
(``requires_grad=False``) layers.
"""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

import cimsim
from cimsim.errors import MappingError
from cimsim.train import prepare

from .conftest import assert_bitwise, lossless_chip, reference_model
from .test_new_models import _rram, prepare_step_deploy

P = torch.nn.utils.parametrizations


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
def _rotary(x: torch.Tensor, pos: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding on (B, H, T, D) at positions ``pos`` (T,)."""
    ang = pos[:, None].to(x.dtype) * inv_freq[None, :].to(x.dtype)  # (T, D/2)
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2)


class LlamaBlock(nn.Module):
    """Pre-norm RMSNorm, grouped-query attention (4 query heads, 2 key/value heads) with rotary
    embeddings through SDPA, a SwiGLU MLP, a tied-free head. ``forward(idx, *, cache=None)``
    returns the logits and, with ``use_cache=True``, the (k, v) cache for the next tokens."""

    def __init__(self, vocab: int = 16, d: int = 16, heads: int = 4, kv_heads: int = 2):
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, d // heads
        self.emb = nn.Embedding(vocab, d)
        self.norm1, self.norm2, self.norm_f = nn.RMSNorm(d), nn.RMSNorm(d), nn.RMSNorm(d)
        self.q = nn.Linear(d, d, bias=False)
        self.kv = nn.Linear(d, 2 * kv_heads * self.hd, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.gate = nn.Linear(d, 2 * d, bias=False)
        self.up = nn.Linear(d, 2 * d, bias=False)
        self.down = nn.Linear(2 * d, d, bias=False)
        self.head = nn.Linear(d, vocab, bias=False)
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, self.hd, 2) / self.hd),
                             persistent=False)

    def forward(self, idx, *, cache=None, use_cache: bool = False):
        b, t = idx.shape
        start = 0 if cache is None else cache[0].shape[2]
        pos = torch.arange(start, start + t, device=idx.device)
        h = self.emb(idx)
        a = self.norm1(h)
        q = self.q(a).view(b, t, self.heads, self.hd).transpose(1, 2)
        k, v = self.kv(a).view(b, t, 2, self.kv_heads, self.hd).permute(2, 0, 3, 1, 4)
        q, k = _rotary(q, pos, self.inv_freq), _rotary(k, pos, self.inv_freq)
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        rep = self.heads // self.kv_heads  # grouped-query: each kv head serves `rep` queries
        att = F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1),
                                             v.repeat_interleave(rep, 1),
                                             is_causal=cache is None)
        h = h + self.o(att.transpose(1, 2).reshape(b, t, -1))
        m = self.norm2(h)
        h = h + self.down(F.silu(self.gate(m)) * self.up(m))
        logits = self.head(self.norm_f(h))
        return (logits, (k, v)) if use_cache else logits


class DropPath(nn.Module):
    """Stochastic depth: drops a sample's residual branch in training, identity in eval."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), dtype=x.dtype) >= self.p
        return x * keep / (1 - self.p)


class ViT(nn.Module):
    """Patch embedding (Conv2d, kernel = stride = 4), class token, learned positions, one
    pre-norm block (qkv Linear + SDPA, GELU MLP) with LayerScale and DropPath, a head."""

    def __init__(self, d: int = 16, heads: int = 2, patch: int = 4, n_patches: int = 4):
        super().__init__()
        self.heads = heads
        self.patch = nn.Conv2d(3, d, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.1)
        self.pos = nn.Parameter(torch.randn(1, n_patches + 1, d) * 0.1)
        self.ln1, self.ln2, self.ln_f = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
        self.ls1 = nn.Parameter(torch.full((d,), 0.5))  # LayerScale
        self.ls2 = nn.Parameter(torch.full((d,), 0.5))
        self.drop_path = DropPath(0.1)
        self.head = nn.Linear(d, 5)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)  # (B, N, d)
        b, n, d = x.shape
        x = torch.cat([self.cls.expand(b, -1, -1), x], 1) + self.pos
        q, k, v = self.qkv(self.ln1(x)).view(b, n + 1, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n + 1, d)
        x = x + self.drop_path(self.ls1 * self.proj(att))
        x = x + self.drop_path(self.ls2 * self.fc2(F.gelu(self.fc1(self.ln2(x)))))
        return self.head(self.ln_f(x[:, 0]))


class Mixer(nn.Module):
    """MLP-Mixer: patches by a strided Conv2d, token mixing (Linear over the token axis via
    transpose), channel mixing, global average pooling."""

    def __init__(self, d: int = 12, tokens: int = 9):
        super().__init__()
        self.stem = nn.Conv2d(3, d, 3, stride=3)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.tok1, self.tok2 = nn.Linear(tokens, 2 * tokens), nn.Linear(2 * tokens, tokens)
        self.ch1, self.ch2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
        self.head = nn.Linear(d, 4)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)  # (B, T, d)
        y = self.ln1(x).transpose(1, 2)  # (B, d, T): mix along tokens
        x = x + self.tok2(F.gelu(self.tok1(y))).transpose(1, 2)
        x = x + self.ch2(F.gelu(self.ch1(self.ln2(x))))
        return self.head(x.mean(1))


class TCN(nn.Module):
    """Depthwise-separable causal 1-D convolutions (left padding only, dilation 1 and 2) with
    residuals, as a keyword-spotting TCN."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.inp = nn.Conv1d(3, c, 1)
        self.dw = nn.ModuleList([nn.Conv1d(c, c, 3, dilation=d, groups=c) for d in (1, 2)])
        self.pw = nn.ModuleList([nn.Conv1d(c, c, 1) for _ in range(2)])
        self.norm = nn.BatchNorm1d(c)
        self.fc = nn.Linear(c, 3)

    def forward(self, x):  # (B, 3, T)
        h = self.inp(x)
        for dw, pw in zip(self.dw, self.pw, strict=True):
            pad = dw.dilation[0] * (dw.kernel_size[0] - 1)
            h = h + pw(F.relu(dw(F.pad(h, (pad, 0)))))  # causal: output t sees t and before
        return self.fc(F.relu(self.norm(h))[..., -1])


class UnfoldNet(nn.Module):
    """``nn.Unfold`` local patches through a Linear (a convolution written by hand), folded
    back by ``nn.Fold``."""

    def __init__(self):
        super().__init__()
        self.unfold = nn.Unfold(3, padding=1)
        self.lin = nn.Linear(3 * 9, 6)
        self.fold = nn.Fold((6, 6), 1)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):  # (B, 3, 6, 6)
        cols = self.unfold(x).transpose(1, 2)  # (B, 36, 27)
        y = F.relu(self.lin(cols)).transpose(1, 2)  # (B, 6, 36)
        return self.fc(self.fold(y).mean((2, 3)))


class Video(nn.Module):
    """Conv3d (strided, grouped), ConvTranspose3d with output_padding, a Linear head."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv3d(2, 4, 3, stride=(1, 2, 2), padding=1)
        self.c2 = nn.Conv3d(4, 4, (1, 3, 3), padding=(0, 1, 1), groups=2)
        self.up = nn.ConvTranspose3d(4, 2, 3, stride=2, padding=1, output_padding=1)
        self.fc = nn.Linear(2, 3)

    def forward(self, x):  # (B, 2, T, H, W)
        h = F.relu(self.c2(F.relu(self.c1(x))))
        return self.fc(self.up(h).mean((2, 3, 4)))


class Conv1D(nn.Module):
    """HuggingFace GPT-2's ``Conv1D``: a Linear with the weight stored (in, out), computed as
    ``torch.addmm(b, x, W)``: no nn.Linear, so it cannot be mapped."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.3)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        size = x.shape[:-1] + (self.weight.shape[1],)
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(size)


class FunctionalMix(nn.Module):
    """A GPT-2 MLP of Conv1D, a strided ``F.conv2d`` and an ``einsum`` with weight
    parameters, and one real nn.Linear: only that one is mapped."""

    def __init__(self):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(4, 3, 3, 3) * 0.3)
        self.c_fc, self.c_proj = Conv1D(8, 4), Conv1D(4, 8)
        self.mix = nn.Parameter(torch.randn(2, 4, 4) * 0.3)  # per-group (in, out)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):  # (B, 3, 6, 6)
        h = F.conv2d(x, self.kernel, stride=2).flatten(2).transpose(1, 2)  # (B, 9, 4)
        h = self.c_proj(F.gelu(self.c_fc(h)))
        h = torch.einsum("bti,gio->btgo", h, self.mix).flatten(2)  # (B, 9, 8)
        return self.fc(h.mean(1))


class Double(nn.Module):
    """A custom parametrization: the weight is stored halved."""

    def forward(self, w):
        return 2 * w


class Parametrized(nn.Module):
    """Orthogonal (matrix exponential), a custom parametrization and new-style weight_norm on
    mapped layers; a parametrized raw parameter reaching a matmul (cannot be mapped)."""

    def __init__(self):
        super().__init__()
        self.conv = P.weight_norm(nn.Conv2d(3, 6, 3, padding=1))
        self.orth = P.orthogonal(nn.Linear(6, 6))
        self.custom = nn.Linear(6, 6)
        parametrize.register_parametrization(self.custom, "weight", Double())
        self.w = nn.Parameter(torch.randn(6, 3) * 0.3)
        parametrize.register_parametrization(self, "w", Double())

    def forward(self, x):
        h = F.relu(self.conv(x)).mean((2, 3))
        return F.relu(self.custom(torch.tanh(self.orth(h)))) @ self.w


class Wrapped(nn.Module):
    """An nn.DataParallel (CPU: it calls its module) holding the layers, keyword arguments."""

    def __init__(self):
        super().__init__()
        self.net = nn.DataParallel(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)))

    def forward(self, x, *, scale=None):
        y = self.net(x)
        return y if scale is None else y * scale


# (model factory, inputs factory, batch_dim)
ZOO3 = {
    "llama": (LlamaBlock, lambda: (torch.randint(0, 16, (3, 6)),), 0),
    "vit": (ViT, lambda: (torch.randn(2, 3, 8, 8),), 0),
    "mixer": (Mixer, lambda: (torch.randn(2, 3, 9, 9),), 0),
    "tcn": (TCN, lambda: (torch.randn(3, 3, 12),), 0),
    "unfold": (UnfoldNet, lambda: (torch.randn(2, 3, 6, 6),), 0),
    "video": (Video, lambda: (torch.randn(2, 2, 4, 6, 6),), 0),
    "functional": (FunctionalMix, lambda: (torch.randn(2, 3, 6, 6),), 0),
    "parametrized": (Parametrized, lambda: (torch.randn(2, 3, 5, 5),), 0),
    "data-parallel": (Wrapped, lambda: (torch.randn(3, 4),), 0),
}
# the conftest's integer re-implementation covers their layers (Linear, Conv1d/2d; not the
# TCN, whose forward reads its convolutions' dilation, which the reference layers lack)
_EXACT = ["llama", "vit", "mixer", "unfold", "functional", "parametrized", "data-parallel"]


def _build(name: str, dtype=torch.float32):
    make, data, batch_dim = ZOO3[name]
    torch.manual_seed(0)
    model = make().eval().to(dtype)
    torch.manual_seed(1)
    args = tuple(a.to(dtype) if a.is_floating_point() else a for a in data())
    return model, args, batch_dim


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # embeddings, functional weights: listed
        return fn(*a, **k)


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


# what each model keeps digital, by name: every weight matrix is mapped or listed here
_DIGITAL = {
    "llama": {"emb"},
    "functional": {"kernel", "c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias", "mix"},
    "parametrized": {"parametrizations.w.original"},
}


# ---------------------------------------------------------------------------------------------
# deploy: lossless, rram-22nm
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", _EXACT)
def test_lossless_deploy_equals_the_quantized_model(name):
    model, args, batch_dim = _build(name)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), args, batch_dim=batch_dim)
    with torch.no_grad():
        want = reference_model(model, sim)(*args)
    assert_bitwise(sim(*args), want)


@pytest.mark.parametrize("name", list(ZOO3))
def test_lossless_deploy_is_within_8_bit_quantization_of_float(name):
    """All of them, the TCN (whose forward reads its convolutions' dilation, which the
    reference's layers lack) and the 3-D convolutions (no integer reference) included."""
    model, args, batch_dim = _build(name)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), args, batch_dim=batch_dim)
    with torch.no_grad():
        want = model(*args)
    assert _rel(sim(*args), want) < 0.02
    assert sim.n_inferences == args[0].shape[batch_dim]


@pytest.mark.parametrize("name", list(ZOO3))
def test_rram_deploy_runs_reports_and_accounts_for_every_matrix(name):
    model, args, batch_dim = _build(name)
    with torch.no_grad():
        want = model(*args)
    sim = _quiet(cimsim.deploy, model, _rram(), args, batch_dim=batch_dim)
    got = sim(*args)
    assert got.shape == want.shape and torch.isfinite(got).all()
    assert _rel(got, want) < 1.0  # lossy, not garbage
    report = sim.report()
    assert list(report.layers["layer"]) == list(sim.sim_layers)
    assert report.totals["energy_pj_per_inference"] > 0
    assert list(report.digital.itertuples(index=False, name=None)) == sim.digital
    assert {d[0] for d in sim.digital} == _DIGITAL.get(name, set())
    mapped = tuple(n + "." for n in sim.sim_layers)
    for pname, p in model.named_parameters():  # every matrix: on the arrays or listed
        if p.dim() >= 2 and pname not in ("cls", "pos"):  # the ViT's tokens: added, no product
            assert pname.startswith(mapped) or any(
                pname == d or pname.startswith(d + ".") for d in _DIGITAL[name]), pname


# ---------------------------------------------------------------------------------------------
# prepare -> one step -> deploy
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chip", ["ideal", "rram"])
@pytest.mark.parametrize("name", list(ZOO3))
def test_prepare_steps_and_the_twin_deploys_to_what_it_computes(name, chip):
    chip_cfg = (lossless_chip("channel") if chip == "ideal" else
                _rram().replace(noise=_rram().noise.replace(thermal_sigma_lsb=0.0)))
    model, args, batch_dim = _build(name, torch.float64)
    if name == "llama" and chip == "rram":
        # prepare_step_deploy's seed 3 puts one of down's 288 outputs on an ADC decision
        # threshold with these tokens: the twin (torch) and the engine (Numba) sum in other
        # orders and round it to neighbouring codes (no other seed 0-3, no other model does)
        args = (torch.randint(0, 16, (3, 6), generator=torch.Generator().manual_seed(7)),)
    prep = prepare_step_deploy(model, chip_cfg, args, batch_dim)
    assert {d[0] for d in prep.digital} == _DIGITAL.get(name, set())

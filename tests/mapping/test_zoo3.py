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

from .conftest import (
    assert_bitwise,
    build_seeded,
    check_every_matrix,
    check_lossy_run,
    lossless_chip,
    reference_model,
)
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
    ``torch.addmm(b, x, W)``: no nn.Linear, mapped as the Linear it computes
    (``cimsim.mapping.affine``; it was listed and ran in float before)."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.3)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        size = x.shape[:-1] + (self.weight.shape[1],)
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(size)


class FunctionalMix(nn.Module):
    """A GPT-2 MLP of Conv1D, a strided ``F.conv2d`` and an ``einsum`` with weight
    parameters, and one real nn.Linear: the Conv1Ds and the Linear are mapped."""

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


class MoE(nn.Module):
    """A top-1 mixture of experts: a router Linear, four GELU-MLP experts each called on the
    tokens routed to it (possibly none), weighted by the router's probability."""

    def __init__(self, n: int = 4, d: int = 8):
        super().__init__()
        self.router = nn.Linear(d, n)
        self.experts = nn.ModuleList([nn.Sequential(nn.Linear(d, 16), nn.GELU(),
                                                    nn.Linear(16, d)) for _ in range(n)])
        self.head = nn.Linear(d, 3)

    def forward(self, x):  # (B, T, d)
        flat = x.reshape(-1, x.shape[-1])
        p, idx = self.router(flat).softmax(-1).topk(1, -1)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            sel = idx[:, 0] == e
            out[sel] = expert(flat[sel]) * p[sel]
        return self.head((flat + out).reshape(x.shape).mean(1))


class GCN(nn.Module):
    """Two graph convolutions: the (normalized) adjacency times the node features, digitally
    (activation x activation), then a mapped Linear. One graph is one sample."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, x, adj):  # (N, 6), (N, N)
        return self.l2(adj @ F.relu(self.l1(adj @ x)))


def _graph(n: int = 12, sparse: bool = False):
    adj = (torch.rand(n, n) < 0.2).float() + torch.eye(n)
    adj = adj / adj.sum(1, keepdim=True)
    return torch.randn(n, 6), adj.to_sparse() if sparse else adj


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
    "moe": (MoE, lambda: (torch.randn(3, 5, 8),), 0),
    "gcn": (GCN, _graph, 0),
}
# the conftest's integer re-implementation covers their layers (Linear, Conv1d/2d; not the
# TCN, whose forward reads its convolutions' dilation, which the reference layers lack)
_EXACT = ["llama", "vit", "mixer", "unfold", "functional", "parametrized", "data-parallel",
          "moe"]


def _build(name: str, dtype=torch.float32):
    make, data, batch_dim = ZOO3[name]
    return (*build_seeded(make, data, dtype), batch_dim)


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # embeddings, functional weights: listed
        return fn(*a, **k)


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


# what each model keeps digital, by name: every weight matrix is mapped or listed here, and the
# attention its own forward computes (F.scaled_dot_product_attention: "model", its root)
_DIGITAL = {
    "llama": {"emb", "model"},
    "vit": {"model"},
    "gcn": {"model"},
    "functional": {"kernel", "mix"},  # the Conv1Ds are mapped as the Linears they compute
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
    check_lossy_run(sim(*args), want, sim)
    # the ViT's tokens: added, no product
    check_every_matrix(model, sim, _DIGITAL.get(name, set()), ("cls", "pos"))


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


# ---------------------------------------------------------------------------------------------
# The LLaMA block's cache and keyword arguments; DataParallel's keywords
# ---------------------------------------------------------------------------------------------
def test_kv_cache_decoding_matches_the_full_forward_and_counts_keyword_inputs():
    """A prefix, then the last token through the cache (keyword arguments), against the full
    sequence: the mapped layers compute each token's row alone, the attention in float over
    other shapes (within a few quantization steps). A keyword-only input counted 1 sample."""
    model, (idx,), _ = _build("llama")
    with torch.no_grad():  # the float model's own cache is right
        _, cache = model(idx[:, :5], use_cache=True)
        torch.testing.assert_close(model(idx[:, 5:], cache=cache), model(idx)[:, 5:])
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), idx)
    full = sim(idx)
    prefix, cache = sim(idx[:, :5], use_cache=True)
    step = sim(idx[:, 5:], cache=cache)
    assert_bitwise(prefix, full[:, :5])  # the causal prefix is the same computation
    assert _rel(step, full[:, 5:]) < 0.02
    sim.reset()
    sim(idx=idx)
    assert sim.n_inferences == 3


def test_data_parallel_layers_are_named_through_its_module_and_keywords_pass():
    model, args, _ = _build("data-parallel")
    prep = prepare(model, lossless_chip("channel"), args)
    sim = cimsim.deploy(model, lossless_chip("channel"), args)
    for out in (sim, prep.eval()):
        layers = out.sim_layers if out is sim else out.twin_layers
        assert list(layers) == ["net.module.0", "net.module.2"]
        with torch.no_grad():
            assert torch.equal(out(args[0], scale=2.0), 2 * out(args[0]))


# ---------------------------------------------------------------------------------------------
# What broke
# ---------------------------------------------------------------------------------------------
class StdConv2d(nn.Conv2d):
    """timm's weight-standardized convolution (BiT, NFNet): its own forward."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class StdNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = StdConv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        return self.fc(F.relu(self.stem(x)).mean((2, 3)))


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_a_subclass_with_its_own_forward_is_kept_digital_naming_why(run):
    """It was mapped as an nn.Conv2d by its raw weight, the standardization dropped: 63 % off
    float with no word (a parametrized layer, torch's own subclass, still maps)."""
    torch.manual_seed(0)
    model, x = StdNet().eval(), torch.randn(4, 3, 6, 6)
    with torch.no_grad():
        want = model(x)
    with pytest.warns(UserWarning, match=r"stem: StdConv2d overrides Conv2d\.forward"):
        out = run(model, lossless_chip("channel"), x)
    assert list(out.sim_layers if run is cimsim.deploy else out.twin_layers) == ["fc"]
    ((name, kind, why),) = out.digital
    assert (name, kind) == ("stem", "StdConv2d") and why.startswith("not mappable: stem:")
    with torch.no_grad():
        assert _rel(out.eval()(x), want) < 0.02


class HiddenWeights(nn.Module):
    """Weights reaching products with no module, in the forms the first zoo's watch missed."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 6)
        self.fc = nn.Linear(6, 6)
        self.register_buffer("frozen", torch.randn(6, 6) * 0.3)  # a fixed projection
        self.w, self.g = nn.Parameter(torch.randn(6, 6) * 0.3), nn.Parameter(torch.ones(6, 1))
        self.p = nn.Parameter(torch.randn(6, 6) * 0.3)
        parametrize.register_parametrization(self, "p", Double())
        self.register_buffer("inv_freq", torch.rand(3))  # 1-D: rotary frequencies, no matrix

    def forward(self, idx):
        h = F.relu(self.fc(self.emb(idx)))
        h = F.linear(h, self.frozen) @ self.p  # a buffer; a parametrized parameter
        h = F.linear(h, self.w * self.g)  # computed from weights only (a scaled weight)
        ang = torch.outer(torch.arange(h.shape[1], dtype=h.dtype), self.inv_freq)
        return F.linear(h + ang.sum(-1, keepdim=True), self.emb.weight)  # a tied head


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_buffers_parametrized_computed_and_tied_weights_are_named(run):
    """They ran in float unlisted: only a parameter passed as it is was watched, and an
    embedding's table not at all (the embedding being listed digital)."""
    torch.manual_seed(0)
    idx = torch.randint(0, 10, (3, 5))
    # w * g names both (a matrix computed from several weights names each: zoo7)
    with pytest.warns(UserWarning, match=r"5 weight\(s\).*emb\.weight \(linear\), frozen "
                                         r"\(linear\), g \(linear\), parametrizations\.p\."
                                         r"original \(matmul\), w \(linear\)"):
        out = _quiet_but_functional(run, HiddenWeights().eval(), idx)
    # each named by how the model holds it (a buffer was typed 'parameter')
    assert {d[0]: d[1] for d in out.digital if d[1] in ("parameter", "buffer")} == {
        "emb.weight": "parameter", "frozen": "buffer", "g": "parameter",
        "parametrizations.p.original": "parameter", "w": "parameter"}


class PlainTensors(nn.Module):
    """Constant matrices held as plain attributes (neither parameter nor buffer)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.dct = torch.randn(6, 6) * 0.3  # a fixed transform, a plain attribute
        self.head = nn.Sequential(nn.ReLU())
        self.head.proj = torch.randn(6, 3) * 0.3  # one inside a submodule
        self.shift = torch.randn(6)  # 1-D: added, no matrix
        self.mask = torch.ones(6, 6).tril()  # a float mask, multiplied element-wise

    def forward(self, x):
        h = self.fc(x) @ self.dct
        return (self.head(h) * self.shift) @ (self.head.proj * self.mask[:, :3])


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_plain_tensor_attributes_in_products_are_named(run):
    """A constant matrix kept as a plain attribute and applied by a product was listed as an
    "activation products" row of the model, as if both factors were activations."""
    torch.manual_seed(0)
    # proj * mask: a matrix computed from constants only names each (as w * g above)
    with pytest.warns(UserWarning, match=r"3 weight\(s\).*: dct \(matmul\), head\.proj "
                                         r"\(matmul\), mask \(matmul\);"):
        out = run(PlainTensors().eval(), lossless_chip("channel"), torch.randn(8, 6))
    assert {d[0]: d[1] for d in out.digital} == {"dct": "tensor", "head.proj": "tensor",
                                                  "mask": "tensor"}


def _quiet_but_functional(run, model, x):
    """``run`` with the embedding's 'type not supported' warning silenced, not the others."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "(deploy|prepare): 1 layer", UserWarning)
        return run(model, lossless_chip("channel"), x)


@pytest.mark.parametrize("name", ["vit", "mixer", "tcn", "video"])
def test_tokens_layer_scale_and_statistics_are_no_functional_weights(name):
    """What is not a weight in a product stays silent: the ViT's class token and positions
    (2-D+, concatenated and added), LayerScale, BatchNorm statistics, rotary frequencies. The
    ViT's attention is listed (not warned), as a mapped MultiheadAttention's is."""
    model, args, batch_dim = _build(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim = cimsim.deploy(model, lossless_chip("channel"), args, batch_dim=batch_dim)
    assert [d[:2] for d in sim.digital] == ([("model", "attention products")] if name == "vit"
                                            else [])


class ScriptedPart(nn.Module):
    def __init__(self, traced: bool = False):
        super().__init__()
        enc = nn.Sequential(nn.Linear(4, 6), nn.ReLU())
        self.enc = torch.jit.trace(enc, torch.randn(2, 4)) if traced else torch.jit.script(enc)
        self.act = torch.jit.script(nn.ReLU())  # no weights: nothing to say
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        return self.fc(self.act(self.enc(x)))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch deprecates torch.jit
@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_a_scripted_submodule_is_listed_digital_and_warned(run, traced):
    """Its compiled forward calls its own Linear: it ran in float, unlisted and unwarned."""
    torch.manual_seed(0)
    x = torch.randn(3, 4)
    with pytest.warns(UserWarning, match=r"enc: a TorchScript module .* computes in float"):
        out = run(ScriptedPart(traced).eval(), lossless_chip("channel"), x)
    assert [d[:2] for d in out.digital] == [("enc", "Sequential")]
    assert list(out.sim_layers if run is cimsim.deploy else out.twin_layers) == ["fc"]
    with pytest.raises(MappingError, match=r"no layer can be mapped.*kept digital: 0 \(Linear: "
                                           r"not mappable: 0: a TorchScript module"):
        _quiet(cimsim.deploy, torch.jit.script(nn.Sequential(nn.Linear(4, 2))),
               lossless_chip("channel"), x)


class DtypeFromParameters(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x.to(next(self.parameters()).dtype))


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_next_parameters_in_a_forward_says_why_it_is_empty(run):
    """It was a bare StopIteration out of the calibration pass."""
    with pytest.raises(MappingError, match=r"StopIteration.*next\(model\.parameters\(\)\).*"
                                           r"x\.dtype"):
        run(DtypeFromParameters(), lossless_chip("channel"), torch.randn(3, 4))


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_mapped_layers_answer_their_sources_configuration(run):
    """A Conv1d's .dilation was the simulated layer's (1, d) (a causal padding silently 1 when
    d = 2), .kernel_size / .padding were missing; weights still refuse to be read."""
    torch.manual_seed(0)
    model = nn.ModuleDict({
        "c1": nn.Conv1d(3, 4, 3, stride=2, dilation=2, padding=1),
        "c2": nn.Conv2d(4, 4, (1, 3), stride=(1, 2), groups=2, padding=1),
        "c3": nn.Conv3d(2, 2, 3), "t2": nn.ConvTranspose2d(4, 2, 3, stride=2, output_padding=1),
        "fc": nn.Linear(4, 3), "rnn": nn.LSTM(3, 4, 2, batch_first=True, bias=False),
        "mha": nn.MultiheadAttention(4, 2, batch_first=True)})

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, x1, x2, x3, seq):
            m = self.m
            a = m["c1"](x1).mean(-1) + m["c2"](x2).mean((2, 3))
            a = a + m["t2"](x2).mean((1, 2, 3))[:, None]
            r, _ = m["rnn"](seq)
            att, _ = m["mha"](r, r, r)
            return m["fc"](a + att.mean(1) + m["c3"](x3).mean((2, 3, 4)).sum(1, keepdim=True))

    args = (torch.randn(2, 3, 9), torch.randn(2, 4, 5, 5), torch.randn(2, 2, 4, 4, 4),
            torch.randn(2, 5, 3))
    net = Net().eval()
    out = run(net, lossless_chip("channel"), args)
    for name, src in model.items():
        layer = out.model.m[name]
        for attr in ("kernel_size", "stride", "padding", "dilation", "groups", "output_padding",
                     "in_features", "out_features", "hidden_size", "num_layers", "bias",
                     "batch_first", "embed_dim", "num_heads"):
            if hasattr(src, attr) and not isinstance(getattr(src, attr), torch.Tensor):
                assert getattr(layer, attr) == getattr(src, attr), (name, attr)
    # the weight reads as its metadata, holding no values (WeightView): computing refused
    weight = out.model.m["fc"].weight
    assert weight.shape == model["fc"].weight.shape and weight.dtype == model["fc"].weight.dtype
    with pytest.raises(AttributeError, match=r"m\.fc: the model reads \.weight"):
        _ = weight * 1


def test_tcn_reads_its_dilations_on_deploy_and_in_the_twin():
    """The causal padding computed from ``dw.dilation`` (AttributeError on kernel_size
    before, and dilation 1 for a 2)."""
    model, args, _ = _build("tcn")
    with torch.no_grad():
        want = model(*args)
    sim = cimsim.deploy(model, lossless_chip("channel"), args)
    assert sim.model.dw[1].dilation == (2,) and sim.model.dw[1].kernel_size == (3,)
    assert _rel(sim(*args), want) < 0.02


def test_a_frozen_layer_stays_frozen_in_the_twin():
    """prepare gave every twin trainable weights: a frozen backbone trained with the head, and
    a weight the model holds as a buffer (a fixed projection) trained too."""
    torch.manual_seed(0)
    fixed, conv = nn.Linear(4, 4), P.weight_norm(nn.Conv1d(1, 2, 3))
    w = fixed.weight.detach().clone()
    del fixed.weight
    fixed.register_buffer("weight", w)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 4), fixed).double().eval()
    model[0].requires_grad_(False)
    model[2].bias.requires_grad_(False)
    x = torch.randn(8, 4, dtype=torch.float64)
    prep = prepare(model, lossless_chip("channel"), x)
    trainable = {n for n, p in prep.named_parameters() if p.requires_grad}
    assert not {"model.0.twins.0.weight", "model.0.twins.0.bias", "model.2.twins.0.bias",
                "model.3.twins.0.weight"} & trainable
    assert {"model.2.twins.0.weight", "model.3.twins.0.bias"} <= trainable
    normed = prepare(conv.double(), lossless_chip("channel"), torch.randn(2, 1, 6).double())
    assert all(p.requires_grad for n, p in normed.named_parameters()  # weight_norm's g, v
               if n.endswith((".weight", ".bias")))
    opt = torch.optim.SGD([p for p in prep.parameters() if p.requires_grad], lr=0.1)
    prep.train()
    prep(x).pow(2).mean().backward()
    opt.step()
    float_model = prep.float_model()
    assert torch.equal(float_model[0].weight, model[0].weight)
    assert not torch.equal(float_model[2].weight, model[2].weight)


def test_the_twin_under_autocast_computes_in_its_own_dtype():
    """Under ``torch.autocast('cpu', torch.bfloat16)`` (a mixed-precision training loop) the
    twin failed deep in its ADC kernel ('unsupported ScalarType BFloat16'); its integer sums
    must not be rounded to bfloat16 either."""
    model, args, _ = _build("vit")
    prep = prepare(model, lossless_chip("channel"), args).eval()
    with torch.no_grad():
        want = prep(*args)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = prep(*args)
    assert got.dtype == torch.float32  # the head's twin: float32, as its weights
    assert _rel(got, want) < 0.02  # the float ops between the twins ran in bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):  # and it trains so
        prep.train()(*args).float().pow(2).mean().backward()
    assert prep.model.head.twins[0].weight.grad is not None


class HandAttention(nn.Module):
    """Attention written by hand in a submodule (q @ kᵀ, softmax, @ v) beside a mapped MHA."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, -1)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(8), -1) @ v
        return self.mha(att, att, att, need_weights=False)[0]


class HandNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = HandAttention()
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.block(x).mean(1))


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_activation_products_are_listed_by_the_module_computing_them(run):
    """A Python model's own attention computed digitally unlisted, while a mapped
    MultiheadAttention's (and an exported graph's) were listed: reports compared unequally."""
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # listed, not warned
        out = run(HandNet().eval(), lossless_chip("channel"), x)
    assert [d[:2] for d in out.digital] == [("block.mha", "attention products"),
                                            ("block", "activation products")]


class CastsInput(nn.Module):
    """A float32 model fed float16 data (a half-precision data pipeline): it casts."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x.float())


def test_bfloat16_float64_models_and_float16_inputs_deploy():
    """A bfloat16 ViT within its own float's bfloat16 rounding; a float64 LLaMA block within
    8-bit quantization; float16 data into a float32 model that casts."""
    model, (x,), _ = _build("vit", torch.bfloat16)
    sim = cimsim.deploy(model, lossless_chip("channel"), x)
    got = sim(x)
    with torch.no_grad():
        want = model(x)
    assert got.dtype == torch.bfloat16 and _rel(got.float(), want.float()) < 0.05
    model, args, _ = _build("llama", torch.float64)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), args)
    with torch.no_grad():
        want = model(*args)
    assert sim(*args).dtype == torch.float64 and _rel(sim(*args), want) < 0.02
    torch.manual_seed(0)
    model, x = CastsInput().eval(), torch.randn(6, 4).half()
    sim = cimsim.deploy(model, lossless_chip("channel"), x)
    with torch.no_grad():
        assert _rel(sim(x), model(x)) < 0.02


def test_an_expert_routed_no_token_is_skipped_by_the_twin():
    """The twin failed on the expert's empty (0, d) input ('cannot reshape tensor of 0
    elements'); deploy ran it. Calibrated on tokens reaching every expert, run on two."""
    model, (x,), _ = _build("moe", torch.float64)
    two = x[:1, :2]  # two tokens: two experts at most
    prep = prepare(model, lossless_chip("channel"), x)
    prep.train()
    prep(two).pow(2).mean().backward()
    prep.eval()
    with torch.no_grad():
        want = prep(two)
    torch.testing.assert_close(prep.deploy()(two), want, rtol=1e-9, atol=1e-9)


class CachedScale(nn.Module):
    """A tensor computed from a parameter with gradient, kept as an attribute."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.scale = nn.Parameter(torch.ones(4))
        self.cached = self.scale * 2

    def forward(self, x):
        return self.fc(x) * self.cached


class CachedBias(nn.Module):
    """timm's LeViT / EfficientViT / TinyViT attention: in eval mode the attention biases
    gathered from a parameter are cached per device in a dict, with gradient when the float
    model ran outside ``no_grad`` before deploy."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.biases = nn.Parameter(torch.randn(4))
        self.bias_cache: dict[str, torch.Tensor] = {}

    def forward(self, x):
        if self.training:
            return self.fc(x) + self.biases
        if str(x.device) not in self.bias_cache:
            self.bias_cache[str(x.device)] = self.biases * 1.0
        return self.fc(x) + self.bias_cache[str(x.device)]


def test_an_uncopyable_attribute_is_named_by_prepare():
    """It was torch's deepcopy error ('Only Tensors created explicitly by the user ...'),
    naming no attribute. ``prepare`` trains the copy, where such a tensor would hold no
    gradient path to its parameter: refused, named, in a cache too."""
    with pytest.raises(MappingError, match=r"copy of the model.*kept as attributes or "
                                           r"buffers: cached; detach them"):
        prepare(CachedScale(), lossless_chip("channel"), torch.randn(3, 4))
    model = CachedBias().eval()
    model(torch.randn(2, 4))  # the user's float check fills the cache, with gradient
    with pytest.raises(MappingError, match=r"kept as attributes or buffers: bias_cache\['cpu'\]; "
                                           r"detach them, clear the cache"):
        prepare(model, lossless_chip("channel"), torch.randn(3, 4))


@pytest.mark.parametrize("make", [CachedScale, CachedBias])
def test_deploy_copies_a_tensor_computed_with_gradient_as_its_value(make):
    """``deploy`` refused a model holding such a tensor (and torch's own error came out for
    one in a dict: timm's attention-bias caches, after a float forward in eval mode); its
    copy runs without gradient, so the tensor is copied as its value: the outputs are the
    float model's on the lossless chip, the user's model unchanged."""
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(3, 4)
    want = model(x)
    held = model.cached if make is CachedScale else model.bias_cache["cpu"]
    assert held.grad_fn is not None
    sim = cimsim.deploy(model, lossless_chip("channel"), x)
    torch.testing.assert_close(sim(x), want.detach(), rtol=1e-2, atol=1e-2)
    assert (model.cached if make is CachedScale else model.bias_cache["cpu"]) is held


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_a_graph_larger_than_a_batch_notes_the_cut_and_a_sparse_one_maps(run):
    """300 nodes were cut into calibration batches of 256 nodes against the whole adjacency:
    the model's own 'mat1 and mat2 shapes cannot be multiplied' said nothing of the cut. A
    sparse adjacency failed in the cut itself (aten::as_strided) even as one batch."""
    torch.manual_seed(0)
    model, (x, adj) = GCN().eval(), _graph(300)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied") as info:
        run(model, lossless_chip("channel"), (x, adj))
    assert "pass batch_size=300" in " ".join(getattr(info.value, "__notes__", []))
    x, sp = _graph(300, sparse=True)
    out = run(model, lossless_chip("channel"), (x, sp), batch_size=300)
    with torch.no_grad():
        assert _rel(out.eval()(x, sp), model(x, sp)) < 0.02
    with pytest.raises(MappingError, match=r"\[1\] are sparse.*pass batch_size=300"):
        run(model, lossless_chip("channel"), (x, sp))

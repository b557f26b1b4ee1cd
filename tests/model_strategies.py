"""Hypothesis strategies of random torch models: a readable description (:class:`ModelSpec`,
frozen dataclasses that print as a falsifying example) and a small interpreter
(:class:`RandomModel`) that builds the model from it.

A model is a DAG of 1-8 blocks over a tape of every block's output: each block reads the
previous output, an ``Add`` or a ``Concat`` also an earlier one of a matching shape. The
blocks cover what the zoos write by hand (tests/mapping/test_zoo*.py): ``nn.Linear``,
``nn.Conv1d`` / ``nn.Conv2d`` (stride, padding including ``'same'``, dilation, groups including
depthwise, bias on or off), ``nn.ConvTranspose2d``, batch / layer / group norms, activations,
residual adds, channel concatenation, pooling, flatten / reshape / permute, an
``nn.MultiheadAttention`` and a hand-written attention, an ``nn.Embedding`` front on token ids,
an ``nn.LSTM`` / ``nn.GRU``, one ``nn.Linear`` called twice, ``F.linear`` on registered
Parameters and a Parameter read by ``torch.einsum`` or ``@``. Widths stay <= 24 and spatial
sizes small, so that a deploy takes milliseconds.

Layouts tracked while drawing: ``vec`` (B, C), ``sig`` (B, C, L), ``img`` (B, C, H, W), ``seq``
(B, L, C) and ``tokens`` (B, L) integer ids. Each drawn block is built and run on zeros of the
current shape (the interpreter's own code: no second shape formula to disagree with it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

MAX_WIDTH = 24
"""The largest feature width a block makes (channels, hidden sizes, flattened vectors)."""


# ---------------------------------------------------------------------------------------------
# The description: one frozen dataclass per block kind
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Linear:
    out: int
    bias: bool


@dataclass(frozen=True)
class Conv:
    dims: int  # 1: nn.Conv1d on 'sig', 2: nn.Conv2d on 'img'
    out: int
    kernel: int
    stride: int
    padding: int | str  # an int or 'same'
    dilation: int
    groups: int
    bias: bool
    padding_mode: str = "zeros"  # or 'reflect', 'replicate', 'circular'
    kernel_w: int = 0  # nn.Conv2d: a (kernel, kernel_w) kernel where > 0


@dataclass(frozen=True)
class ConvTranspose2d:
    out: int
    kernel: int
    stride: int
    padding: int
    bias: bool
    groups: int = 1
    dilation: int = 1
    output_padding: int = 0


@dataclass(frozen=True)
class Norm:
    kind: str  # 'batch', 'layer' (over the last dim) or 'group'
    groups: int = 1


@dataclass(frozen=True)
class Act:
    kind: str  # 'relu', 'gelu', 'silu', 'hardswish', 'tanh' or 'none'
    inplace: bool = False  # nn.ReLU(inplace=True), ... (relu, silu, hardswish)


@dataclass(frozen=True)
class Add:
    src: int  # the tape entry added: 0 the model's input, i the output of block i - 1


@dataclass(frozen=True)
class Concat:
    src: int  # the tape entry concatenated along the channels (the last dim of 'seq')


@dataclass(frozen=True)
class Pool:
    kind: str  # 'max', 'avg' (kernel 2), 'adaptive_max' or 'adaptive_avg' (to ``size``)
    size: int = 2


@dataclass(frozen=True)
class Flatten:
    """'sig', 'img' or 'seq' -> 'vec'."""


@dataclass(frozen=True)
class Unflatten:
    parts: int  # 'vec' (B, C) -> 'seq' (B, parts, C // parts)


@dataclass(frozen=True)
class Permute:
    """'sig' (B, C, L) <-> 'seq' (B, L, C)."""


@dataclass(frozen=True)
class MHA:
    heads: int
    bias: bool
    batch_first: bool


@dataclass(frozen=True)
class HandAttention:
    dim: int  # q, k, v width (one head); out back to the input's width


@dataclass(frozen=True)
class Recurrent:
    kind: str  # 'lstm' or 'gru', batch_first
    hidden: int
    layers: int
    bidirectional: bool


@dataclass(frozen=True)
class Shared:
    """One square nn.Linear called twice (an activation between): a weight reused."""
    act: str


@dataclass(frozen=True)
class FunctionalLinear:
    out: int
    bias: bool  # F.linear(x, self.weight, self.bias) on registered Parameters


@dataclass(frozen=True)
class ParamProduct:
    out: int
    op: str  # 'einsum' ('...i,io->...o') or 'matmul' (x @ self.weight)


@dataclass(frozen=True)
class Embed:
    vocab: int
    dim: int  # nn.Embedding on 'tokens' -> 'seq'


Block = (Linear | Conv | ConvTranspose2d | Norm | Act | Add | Concat | Pool | Flatten | Unflatten
         | Permute | MHA | HandAttention | Recurrent | Shared | FunctionalLinear | ParamProduct
         | Embed)

MAPPED_BLOCKS = (Linear, Conv, ConvTranspose2d, MHA, HandAttention, Recurrent, Shared)
"""Blocks holding a weight matrix a chip maps (the functional ones stay digital, listed)."""


@dataclass(frozen=True)
class ModelSpec:
    layout: str  # the input's: 'vec', 'sig', 'img', 'seq' or 'tokens'
    shape: tuple[int, ...]  # one sample's (no batch dim)
    blocks: tuple[Block, ...]
    batch: int
    dtype: str  # 'float32' or 'float64'
    vocab: int = 0  # token ids drawn below it ('tokens')


# ---------------------------------------------------------------------------------------------
# The interpreter
# ---------------------------------------------------------------------------------------------
_ACTS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "hardswish": nn.Hardswish,
         "tanh": nn.Tanh, "none": nn.Identity}
_INPLACE = ("relu", "silu", "hardswish")


class _Take0(nn.Module):
    """A module whose forward returns a tuple (attention, recurrent): its first output."""

    def __init__(self, inner: nn.Module, self_attention: bool = False,
                 transpose: bool = False):
        super().__init__()
        self.inner, self.self_attention, self.transpose = inner, self_attention, transpose

    def forward(self, x):
        if self.transpose:  # a sequence-first attention on the batch-first tape
            x = x.transpose(0, 1)
        y = self.inner(x, x, x)[0] if self.self_attention else self.inner(x)[0]
        return y.transpose(0, 1) if self.transpose else y


class _HandAttention(nn.Module):
    def __init__(self, width: int, dim: int):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(width, dim) for _ in range(3))
        self.o = nn.Linear(dim, width)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, x):
        att = torch.softmax(self.q(x) @ self.k(x).transpose(-2, -1) * self.scale, dim=-1)
        return self.o(att @ self.v(x))


class _Shared(nn.Module):
    def __init__(self, width: int, act: str):
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.act = _ACTS[act]()

    def forward(self, x):
        return self.fc(self.act(self.fc(x)))


class _FunctionalLinear(nn.Module):
    def __init__(self, width: int, out: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out, width) / math.sqrt(width))
        self.bias = nn.Parameter(torch.randn(out) * 0.1) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class _ParamProduct(nn.Module):
    def __init__(self, width: int, out: int, op: str):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(width, out) / math.sqrt(width))
        self.op = op

    def forward(self, x):
        if self.op == "einsum":
            return torch.einsum("...i,io->...o", x, self.weight)
        return x @ self.weight


class _Lambda(nn.Module):
    """A parameter-free reshaping, named by what it does (printed in the model's repr)."""

    def __init__(self, what: str, arg: int = 0):
        super().__init__()
        self.what, self.arg = what, arg

    def forward(self, x):
        if self.what == "flatten":
            return x.flatten(1)
        if self.what == "unflatten":
            return x.reshape(x.shape[0], self.arg, -1)
        return x.transpose(1, 2)  # permute

    def extra_repr(self) -> str:
        return self.what


def _randomize_norm(norm: nn.Module) -> None:
    """Running statistics and affine parameters away from their identity defaults."""
    with torch.no_grad():
        if isinstance(norm, nn.modules.batchnorm._BatchNorm):
            norm.running_mean.normal_(0.0, 0.3)
            norm.running_var.uniform_(0.5, 2.0)
        if getattr(norm, "weight", None) is not None:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0.0, 0.2)


def build_block(block: Block, layout: str, shape: tuple[int, ...]) -> nn.Module:
    """The module computing ``block`` on inputs of ``layout`` and sample ``shape``."""
    c = shape[-1] if layout in ("seq", "vec") else shape[0]
    last = shape[-1]
    if isinstance(block, Linear):
        return nn.Linear(last, block.out, bias=block.bias)
    if isinstance(block, Conv):
        if block.dims == 1:
            return nn.Conv1d(c, block.out, block.kernel, stride=block.stride,
                             padding=block.padding, dilation=block.dilation,
                             groups=block.groups, bias=block.bias,
                             padding_mode=block.padding_mode)
        kernel = (block.kernel, block.kernel_w) if block.kernel_w else block.kernel
        return nn.Conv2d(c, block.out, kernel, stride=block.stride, padding=block.padding,
                         dilation=block.dilation, groups=block.groups, bias=block.bias,
                         padding_mode=block.padding_mode)
    if isinstance(block, ConvTranspose2d):
        return nn.ConvTranspose2d(c, block.out, block.kernel, stride=block.stride,
                                  padding=block.padding, output_padding=block.output_padding,
                                  groups=block.groups, bias=block.bias,
                                  dilation=block.dilation)
    if isinstance(block, Norm):
        norm: nn.Module
        if block.kind == "batch":
            norm = nn.BatchNorm2d(c) if layout == "img" else nn.BatchNorm1d(c)
        elif block.kind == "layer":
            norm = nn.LayerNorm(last)
        else:
            norm = nn.GroupNorm(block.groups, c)
        _randomize_norm(norm)
        return norm
    if isinstance(block, Act):
        return _ACTS[block.kind](inplace=True) if block.inplace else _ACTS[block.kind]()
    if isinstance(block, Pool):
        one_d = layout == "sig"
        if block.kind == "max":
            return nn.MaxPool1d(2) if one_d else nn.MaxPool2d(2)
        if block.kind == "avg":
            return nn.AvgPool1d(2) if one_d else nn.AvgPool2d(2)
        if block.kind == "adaptive_max":
            return nn.AdaptiveMaxPool1d(block.size) if one_d else nn.AdaptiveMaxPool2d(block.size)
        return nn.AdaptiveAvgPool1d(block.size) if one_d else nn.AdaptiveAvgPool2d(block.size)
    if isinstance(block, Flatten):
        return _Lambda("flatten")
    if isinstance(block, Unflatten):
        return _Lambda("unflatten", block.parts)
    if isinstance(block, Permute):
        return _Lambda("permute")
    if isinstance(block, MHA):
        attn = nn.MultiheadAttention(c, block.heads, bias=block.bias,
                                     batch_first=block.batch_first)
        return _Take0(attn, self_attention=True, transpose=not block.batch_first)
    if isinstance(block, HandAttention):
        return _HandAttention(c, block.dim)
    if isinstance(block, Recurrent):
        cls_r = nn.LSTM if block.kind == "lstm" else nn.GRU
        return _Take0(cls_r(c, block.hidden, num_layers=block.layers, batch_first=True,
                            bidirectional=block.bidirectional))
    if isinstance(block, Shared):
        return _Shared(c, block.act)
    if isinstance(block, FunctionalLinear):
        return _FunctionalLinear(c, block.out, block.bias)
    if isinstance(block, ParamProduct):
        return _ParamProduct(c, block.out, block.op)
    if isinstance(block, Embed):
        return nn.Embedding(block.vocab, block.dim)
    if isinstance(block, (Add, Concat)):
        return nn.Identity()  # the tape is read by RandomModel.forward
    raise TypeError(f"unknown block {block!r}")


def next_layout(block: Block, layout: str) -> str:
    if isinstance(block, Flatten):
        return "vec"
    if isinstance(block, (Unflatten, Embed)):
        return "seq"
    if isinstance(block, Permute):
        return "seq" if layout == "sig" else "sig"
    return layout


def _concat_dim(layout: str) -> int:
    return -1 if layout == "seq" else 1


class RandomModel(nn.Module):
    """The model a :class:`ModelSpec` describes: block ``i`` is the submodule ``b{i}_{kind}``
    (``b2_conv``, ``b5_mha.inner``: the names deploy's messages and digital list use)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.blocks = nn.ModuleDict()
        self.layouts = [spec.layout]
        x = _zeros(spec.layout, spec.shape)  # each block built for its input's shape
        tape = [x]
        for i, block in enumerate(spec.blocks):
            module = build_block(block, self.layouts[-1], tuple(x.shape[1:]))
            self.blocks[f"b{i}_{type(block).__name__.lower()}"] = module
            with torch.no_grad():
                x = self._step(block, module, x, tape)
            tape.append(x)
            self.layouts.append(next_layout(block, self.layouts[-1]))
        self.out_shape = tuple(x.shape[1:])

    def forward(self, x):
        tape = [x]
        for block, module in zip(self.spec.blocks, self.blocks.values(), strict=True):
            x = self._step(block, module, x, tape)
            tape.append(x)
        return x

    def _step(self, block: Block, module: nn.Module, x, tape: list) -> Any:
        if isinstance(block, Add):
            return x + tape[block.src]
        if isinstance(block, Concat):
            return torch.cat([x, tape[block.src]], dim=_concat_dim(self.layouts[len(tape) - 1]))
        return module(x)


def _zeros(layout: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A batch of two zero samples (token id 0 for 'tokens')."""
    if layout == "tokens":
        return torch.zeros((2, *shape), dtype=torch.long)
    return torch.zeros((2, *shape))


def build(spec: ModelSpec) -> tuple[RandomModel, tuple[torch.Tensor]]:
    """The model (seed 0, eval mode, ``spec.dtype``) and its inputs (seed 1), as the zoos'
    ``build_seeded`` makes them."""
    dtype = getattr(torch, spec.dtype)
    torch.manual_seed(0)
    model = RandomModel(spec).eval().to(dtype)
    torch.manual_seed(1)
    if spec.layout == "tokens":
        x = torch.randint(0, spec.vocab, (spec.batch, *spec.shape))
    else:
        x = torch.randn(spec.batch, *spec.shape, dtype=dtype)
    return model, (x,)


# ---------------------------------------------------------------------------------------------
# The strategy
# ---------------------------------------------------------------------------------------------
_WIDTH = st.integers(1, 12)
_ACT_KINDS = tuple(_ACTS)


def _divisors(n: int, top: int = MAX_WIDTH) -> list[int]:
    return [d for d in range(1, min(n, top) + 1) if n % d == 0]


def _conv(draw: st.DrawFn, dims: int, c: int, spatial: tuple[int, ...]) -> Conv:
    kernel = draw(st.integers(1, 3), label="kernel")
    dilation = draw(st.integers(1, 2), label="dilation")
    reach = dilation * (kernel - 1) + 1
    padding: int | str = draw(st.one_of(st.just("same"), st.integers(0, kernel // 2 + 1)),
                              label="padding")
    if padding != "same" and reach > min(spatial) + 2 * int(padding):
        padding = "same"  # the kernel would not fit
    stride = 1 if padding == "same" else draw(st.integers(1, 2), label="stride")
    groups = draw(st.sampled_from(["one", "depthwise", "divisor"]), label="groups")
    if groups == "depthwise" and c > 1:
        g = c
        out = c * draw(st.integers(1, max(1, MAX_WIDTH // c)), label="multiplier")
    elif groups == "divisor":
        g = draw(st.sampled_from(_divisors(c)), label="n_groups")
        out = g * draw(st.integers(1, max(1, 12 // g)), label="per_group")
    else:
        g, out = 1, draw(_WIDTH, label="out")
    kernel_w = 0
    if dims == 2 and padding != "same" and draw(st.booleans(), label="rectangular"):
        room = spatial[1] + 2 * int(padding)  # the dilated kernel's width fits in it
        kernel_w = draw(st.integers(1, min(3, (room - 1) // dilation + 1)), label="kernel_w")
    # a padding mode other than zeros pads by at most the input's size (reflect: below it)
    modes = ["zeros"]
    pads = ([0] if padding == "same" else [int(padding)])
    if padding == "same":
        pads = [reach // 2]
    if max(pads) < min(spatial):
        modes += ["reflect", "replicate", "circular"]
    mode = draw(st.sampled_from(modes), label="padding_mode")
    return Conv(dims, min(out, (MAX_WIDTH // g) * g), kernel, stride, padding, dilation, g,
                draw(st.booleans(), label="bias"), mode, kernel_w)


def _options(layout: str, shape: tuple[int, ...], batch: int,
             tape: list[tuple[str, tuple[int, ...]]]) -> list[str]:
    """The block kinds that apply to an input of ``layout`` / ``shape``."""
    c = shape[-1] if layout in ("seq", "vec") else shape[0]
    last = shape[-1]
    ops = ["act"]
    if last <= MAX_WIDTH:
        ops.append("linear")
    if layout in ("vec", "seq"):
        ops += ["shared", "functional", "param_product", "layernorm"]
    if layout == "sig":
        ops += ["conv1d", "permute", "flatten", "pool"]
    if layout == "img":
        ops += ["conv2d", "convtranspose", "flatten", "pool"]
    if layout in ("sig", "img") and _group_norms(c, shape):
        ops.append("groupnorm")
    if layout == "seq":
        ops += ["mha", "hand_attention", "recurrent", "permute", "flatten"]
    if layout == "vec" and any(p > 1 and c % p == 0 for p in (2, 3, 4)):
        ops.append("unflatten")
    if layout in ("vec", "sig", "img") and batch * math.prod(shape[1:]) > 1:
        ops.append("batchnorm")  # one value per channel cannot train a batch norm
    if any(t == (layout, shape) for t in tape[:-1]):
        ops.append("add")
    if any(_can_concat(layout, shape, t) for t in tape):
        ops.append("concat")
    if "flatten" in ops and math.prod(shape) > 32:
        ops.remove("flatten")
    return ops


def _group_norms(c: int, shape: tuple[int, ...]) -> list[int]:
    """Group counts of a GroupNorm on ``shape``: more than one value per group (torch refuses
    a group of one value, in eval mode too, whatever the batch)."""
    return [g for g in _divisors(c) if c // g * math.prod(shape[1:]) > 1]


def _can_concat(layout: str, shape: tuple[int, ...], other: tuple[str, tuple[int, ...]]) -> bool:
    o_layout, o_shape = other
    if o_layout != layout or len(o_shape) != len(shape) or layout == "tokens":
        return False
    ch = len(shape) - 1 if layout == "seq" else 0
    rest = [s for i, s in enumerate(shape) if i != ch]
    o_rest = [s for i, s in enumerate(o_shape) if i != ch]
    return rest == o_rest and shape[ch] + o_shape[ch] <= MAX_WIDTH


def _draw_block(draw: st.DrawFn, op: str, layout: str, shape: tuple[int, ...],
                tape: list[tuple[str, tuple[int, ...]]]) -> Block:
    c = shape[-1] if layout in ("seq", "vec") else shape[0]
    if op == "act":
        kind = draw(st.sampled_from(_ACT_KINDS), label="act")
        return Act(kind, kind in _INPLACE and draw(st.booleans(), label="inplace"))
    if op == "linear":
        return Linear(draw(_WIDTH, label="out"), draw(st.booleans(), label="bias"))
    if op == "shared":
        return Shared(draw(st.sampled_from(_ACT_KINDS), label="act"))
    if op == "functional":
        return FunctionalLinear(draw(_WIDTH, label="out"), draw(st.booleans(), label="bias"))
    if op == "param_product":
        return ParamProduct(draw(_WIDTH, label="out"),
                            draw(st.sampled_from(["einsum", "matmul"]), label="op"))
    if op == "layernorm":
        return Norm("layer")
    if op == "batchnorm":
        return Norm("batch")
    if op == "groupnorm":
        return Norm("group", draw(st.sampled_from(_group_norms(c, shape)), label="n_groups"))
    if op in ("conv1d", "conv2d"):
        return _conv(draw, 1 if op == "conv1d" else 2, c, shape[1:])
    if op == "convtranspose":
        kernel = draw(st.integers(1, 3), label="kernel")
        stride = draw(st.integers(1, 2 if max(shape[1:]) <= 6 else 1), label="stride")
        dilation = draw(st.integers(1, 2), label="dilation")
        g = draw(st.sampled_from(_divisors(c)), label="n_groups")
        out = g * draw(st.integers(1, max(1, 12 // g)), label="per_group")
        # torch: output_padding below the stride or the dilation
        extra = draw(st.integers(0, max(stride, dilation) - 1), label="output_padding")
        return ConvTranspose2d(out, kernel, stride,
                               draw(st.integers(0, dilation * (kernel - 1) // 2),
                                    label="padding"),
                               draw(st.booleans(), label="bias"), g, dilation, extra)
    if op == "pool":
        kinds = ["adaptive_max", "adaptive_avg"] + (["max", "avg"] if min(shape[1:]) >= 2
                                                    else [])
        return Pool(draw(st.sampled_from(kinds), label="pool"),
                    draw(st.integers(1, 2), label="size"))
    if op == "flatten":
        return Flatten()
    if op == "unflatten":
        return Unflatten(draw(st.sampled_from([p for p in (2, 3, 4) if c % p == 0])))
    if op == "permute":
        return Permute()
    if op == "mha":
        return MHA(draw(st.sampled_from(_divisors(c, 4)), label="heads"),
                   draw(st.booleans(), label="bias"), draw(st.booleans(), label="batch_first"))
    if op == "hand_attention":
        return HandAttention(draw(_WIDTH, label="dim"))
    if op == "recurrent":
        return Recurrent(draw(st.sampled_from(["lstm", "gru"]), label="rnn"),
                         draw(st.integers(1, 8), label="hidden"),
                         draw(st.integers(1, 2), label="layers"),
                         draw(st.booleans(), label="bidirectional"))
    if op == "add":
        return Add(draw(st.sampled_from([i for i, t in enumerate(tape[:-1])
                                         if t == (layout, shape)]), label="src"))
    if op == "concat":
        return Concat(draw(st.sampled_from([i for i, t in enumerate(tape)
                                            if _can_concat(layout, shape, t)]), label="src"))
    raise AssertionError(op)


_INPUTS = {
    "vec": st.tuples(st.integers(1, 12)),
    "sig": st.tuples(st.integers(1, 6), st.integers(3, 10)),
    "img": st.tuples(st.integers(1, 4), st.integers(3, 7), st.integers(3, 7)),
    "seq": st.tuples(st.integers(2, 6), st.integers(1, 12)),
    "tokens": st.tuples(st.integers(2, 6)),
}


@st.composite
def model_specs(draw: st.DrawFn, max_blocks: int = 8,
                dtypes: tuple[str, ...] = ("float32", "float32", "float32", "float64")
                ) -> ModelSpec:
    """A random model: 1-``max_blocks`` blocks, at least one a chip maps (a final ``Linear``
    added where none was drawn: a model of functional weights only is refused, 'no layer can
    be mapped'), batch 1-3, float32 (float64 one time in 4)."""
    layout = draw(st.sampled_from(list(_INPUTS)), label="layout")
    shape: tuple[int, ...] = draw(_INPUTS[layout], label="shape")
    batch = draw(st.integers(1, 3), label="batch")
    dtype = draw(st.sampled_from(dtypes), label="dtype")
    vocab = 0
    blocks: list[Block] = []
    spec = ModelSpec(layout, shape, (), batch, dtype)
    tape = [(layout, shape)]
    if layout == "tokens":
        vocab = draw(st.integers(2, 16), label="vocab")
        blocks.append(Embed(vocab, draw(st.integers(1, 12), label="dim")))
        tape.append(("seq", (shape[0], blocks[0].dim)))
    n = draw(st.integers(1, max_blocks), label="n_blocks")
    while len(blocks) < n:
        cur_layout, cur_shape = tape[-1]
        op = draw(st.sampled_from(_options(cur_layout, cur_shape, batch, tape)), label="op")
        blocks.append(_draw_block(draw, op, cur_layout, cur_shape, tape))
        tape.append(_shape_after(layout, shape, tuple(blocks)))
    if not any(isinstance(b, MAPPED_BLOCKS) for b in blocks):
        blocks.append(Linear(draw(_WIDTH, label="head"), True))
    spec = ModelSpec(layout, shape, tuple(blocks), batch, dtype, vocab)
    return spec


def _shape_after(layout: str, shape: tuple[int, ...], blocks: tuple[Block, ...]
                 ) -> tuple[str, tuple[int, ...]]:
    """Layout and sample shape after ``blocks``: the interpreter builds them for zeros."""
    model = RandomModel(ModelSpec(layout, shape, blocks, 2, "float32", 2))
    return model.layouts[-1], model.out_shape

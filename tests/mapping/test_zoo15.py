"""A fifteenth zoo (worktree ``zoo15``, after ``test_zoo14.py``): published architectures
written from their papers at toy size (models in ``zoo15_models.py``), each combining forward
styles the earlier zoos tried one at a time. Swin window attention with a relative-position bias
table and windows shifted by ``torch.roll`` with the attention mask, a ConvNeXt V2 block (GRN,
channels-last LayerNorm, a hand-written channels-first one), a U-Net with ``ConvTranspose2d``
and skip concatenations, a ShuffleNet V2 unit (channel split, ``nn.ChannelShuffle``,
``pixel_unshuffle``), a top-2 mixture of experts combined by ``scatter_add_``, a Conformer
convolution module (``GLU`` over channels), Set Transformer pooling (a learned seed as MHA's
query), a Llama block (RMSNorm, rotary, grouped-query SDPA, fused gate-up SwiGLU), a temporal
shift module (frames folded into the batch), an FPN (one smoothing conv on three levels),
token pruning (``argsort`` + ``gather``), ``LPPool2d`` / ``lp_pool1d``, an MBConv with
squeeze-excitation, a highway network, an RK4 neural ODE (one MLP sixteen times a forward) and
a frozen ``Embedding.from_pretrained``. All sixteen pass the lossless, ``rram-22nm`` and
``prepare`` checks as written.

What it found around them, fixed: a convolution whose ``.padding`` (or, with
``padding='same'``, ``.dilation``) was set after construction (dilated ResNets for
segmentation do) was padded with the constructor's cached ``_reversed_padding_repeated_twice``,
which torch reads only for non-zero padding modes: the deployed and the twin's outputs smaller
than float's, nothing said; padded as torch's forward pads now. A Linear, Conv3d or
ConvTranspose2d whose weight a pruner replaced by a smaller one (size attributes left as built)
failed deep inside the simulated layer, no layer named: sized by the weight now, as torch is.
A forward writing its buffers in place (a streaming cache, a counter), counting its calls in an
int attribute, drawing from a ``torch.Generator`` it holds or writing a tensor attribute in
place (a memory, a cache in a list) kept what the calibration passes did to them: the deployed
model's and the twin's first call 67 %, 27 %, 47 %, 59 % off the float model's first call on
the lossless chip; set back after each pass now. A layer's output cached by an ``lru_cache``
d method was the float calibration pass's in every simulated forward (0 MACs per inference):
the classes' method caches are emptied after each pass. Seen, left: a weight
held as a plain tensor attribute is named digital; ``F.linear`` of two layers' concatenated
weights (a fused QKV) or of a sliced weight (a slimmable width) is refused naming the layer;
a bool the forward sets (a flag set once) stays as the pass set it."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import cimsim
from cimsim.train import prepare

from .conftest import assert_bitwise, build_seeded, lossless_chip, reference_model
from .test_new_models import prepare_step_deploy
from .test_zoo5 import _quiet, _rel
from .zoo15_models import (
    FPN,
    ConformerConv,
    ConvNeXtV2,
    Highway,
    LlamaBlock,
    LPPooled,
    MBConv,
    NeuralODE,
    PretrainedEmbedding,
    ScatterMoE,
    SetPooling,
    ShuffleUnit,
    SwinBlock,
    TemporalShift,
    TokenPruning,
    UNet,
)
from .zoo_tests import zoo_deploy_tests

ZOO15 = {
    "swin-shifted": (SwinBlock, lambda: (torch.randn(3, 4, 4, 8),)),
    "set-pool": (SetPooling, lambda: (torch.randn(3, 5, 6),)),
    "llama-gqa-fused": (LlamaBlock, lambda: (torch.randint(0, 20, (3, 5)),)),
    "token-prune": (TokenPruning, lambda: (torch.randn(3, 6, 6),)),
    "convnext-v2": (ConvNeXtV2, lambda: (torch.randn(3, 3, 8, 8),)),
    "unet-transposed": (UNet, lambda: (torch.randn(3, 1, 8, 8),)),
    "shufflenet-v2": (ShuffleUnit, lambda: (torch.randn(3, 2, 8, 8),)),
    "conformer-conv": (ConformerConv, lambda: (torch.randn(3, 7, 8),)),
    "temporal-shift": (TemporalShift, lambda: (torch.randn(3, 4, 3, 5, 5),)),
    "fpn": (FPN, lambda: (torch.randn(3, 3, 8, 8),)),
    "lp-pool": (LPPooled, lambda: (torch.randn(3, 2, 6, 6),)),
    "mbconv": (MBConv, lambda: (torch.randn(3, 3, 6, 6),)),
    "moe-scatter": (ScatterMoE, lambda: (torch.randn(3, 5, 6),)),
    "highway": (Highway, lambda: (torch.randn(3, 6),)),
    "ode-rk4": (NeuralODE, lambda: (torch.randn(3, 6),)),
    "pretrained-emb": (PretrainedEmbedding, lambda: (torch.randint(0, 20, (3, 5)),)),
}

# what stays digital, by name: the products of activations (window attention written by hand,
# the attention of a module whose forward computes them), an embedding (its table read by a
# look-up)
_DIGITAL = {
    "swin-shifted": {"model"},
    "set-pool": {"mha"},
    "llama-gqa-fused": {"emb", "model"},
    "pretrained-emb": {"emb"},
}
# 2-D or larger parameters in no product: Swin's relative-position bias table (gathered, added to
# the scores), the Set Transformer's seed (an activation: the attention's query), GRN's gamma /
# beta (element-wise)
_NOT_MATRICES = {"swin-shifted": ("table",), "set-pool": ("seed",),
                 "convnext-v2": ("gamma", "beta")}
# the integer re-implementation covers Linear / Conv1d / Conv2d / MHA: not ConvTranspose2d
_NOT_EXACT = {"unet-transposed"}


def _build(name: str, dtype=torch.float32):
    return build_seeded(*ZOO15[name], dtype)


# the deploy (lossless, rram-22nm) and prepare tests of every model
(test_lossless_deploy_is_the_quantized_model_and_near_float,
 test_rram_deploy_runs_reports_and_accounts_for_every_matrix,
 test_prepare_steps_and_the_twin_deploys_to_what_it_computes) = zoo_deploy_tests(
    ZOO15, _build, _DIGITAL, not_exact=_NOT_EXACT, not_matrices=_NOT_MATRICES)


# ---------------------------------------------------------------------------------------------
# what it found
# ---------------------------------------------------------------------------------------------
def _dilated(nd: int) -> nn.Module:
    """A convolution turned dilated after construction, as dilated-ResNet segmentation code
    does (``conv.dilation, conv.padding = (2, 2), (2, 2)``), and one with its padding set
    later: torch's forward reads the current ``.padding`` (zeros mode)."""
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[nd - 1]
    a = conv(2, 4, 3, padding=1)
    a.dilation, a.padding = (2,) * nd, (2,) * nd
    b = conv(4, 4, 3)
    b.padding = (1,) * nd
    c = conv(4, 3, 3, padding="same")
    c.dilation = (2,) * nd  # 'same' is resolved by torch from the current dilation
    return nn.Sequential(a, nn.ReLU(), b, nn.ReLU(), c)


@pytest.mark.parametrize("run", ["deploy", "prepare"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_a_convolutions_padding_changed_after_construction_is_the_one_torch_uses(nd, run):
    """A convolution whose ``.padding`` was set after construction (dilated ResNets for
    segmentation set ``.dilation`` and ``.padding`` of built layers) was padded with what its
    constructor had cached (``_reversed_padding_repeated_twice``), which torch uses only for
    the non-zero padding modes: the deployed and the twin's outputs were smaller than the float
    model's (5x5 for 7x7) or, where shapes still fitted, off by a shifted window; nothing said.
    The pads are torch's forward's now."""
    model, (x,) = build_seeded(lambda: _dilated(nd), lambda: (torch.randn(2, 2, *(7,) * nd),),
                               torch.float64)
    with torch.no_grad():
        want = model(x)
    if run == "deploy":
        sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
        with torch.no_grad():
            got = sim(x)
        assert got.shape == want.shape
        assert _rel(got, want) < 0.03
        if nd < 3:  # the integer re-implementation covers Conv1d / Conv2d
            with torch.no_grad():
                assert_bitwise(got, reference_model(model, sim)(x))
    else:
        prep = prepare_step_deploy(model, lossless_chip("channel"), (x,), 0)
        with torch.no_grad():
            assert prep(x).shape == want.shape


class _Pruned(nn.Module):
    """Layers whose weights a hand-written channel pruner replaced by smaller ones, leaving
    ``in_features`` / ``out_features`` / ``in_channels`` / ``out_channels`` as built (torch's
    forwards read only the weights)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.conv3 = nn.Conv3d(2, 6, 3, padding=1)
        self.up = nn.ConvTranspose2d(4, 6, 2, stride=2)
        with torch.no_grad():
            self.fc.weight = nn.Parameter(self.fc.weight[:5].clone())
            self.fc.bias = nn.Parameter(self.fc.bias[:5].clone())
            self.conv3.weight = nn.Parameter(self.conv3.weight[:4].clone())
            self.conv3.bias = nn.Parameter(self.conv3.bias[:4].clone())
            self.up.weight = nn.Parameter(self.up.weight[:, :3].clone())
            self.up.bias = nn.Parameter(self.up.bias[:3].clone())
        self.head = nn.Linear(5 + 3, 3)

    def forward(self, x):
        v = self.conv3(x[:, :2, None, None, None].expand(-1, -1, 3, 3, 3)).mean((2, 3, 4))
        img = self.up(torch.relu(v)[:, :, None, None].expand(-1, -1, 2, 2)).mean((2, 3))
        return self.head(torch.cat([self.fc(x), img], 1))


@pytest.mark.parametrize("run", ["deploy", "prepare"])
def test_layers_pruned_without_updating_their_sizes_compute_from_their_weights(run):
    """A Linear, Conv3d and ConvTranspose2d whose weights were replaced by pruned (smaller)
    ones, their size attributes left as built: torch computes from the weights; deploy and
    prepare failed deep inside the simulated layer ("shape '[4, 8]' is invalid for input of
    size 20"), no layer named. The sizes are the weights' now."""
    model, (x,) = build_seeded(_Pruned, lambda: (torch.randn(4, 6),), torch.float64)
    with torch.no_grad():
        want = model(x)
    if run == "deploy":
        sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
        with torch.no_grad():
            assert _rel(sim(x), want) < 0.03
    else:
        prep = prepare_step_deploy(model, lossless_chip("channel"), (x,), 0)
        with torch.no_grad():
            assert prep(x).shape == want.shape


def _first_calls(make, run: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """``make``'s model (float64) deployed (``run='deploy'``) or prepared on the lossless chip
    from a 4-sample batch; the user's model and the simulated one (or the twin) on their first
    call after it: the model, its output and the simulated one's."""
    model, (x,) = build_seeded(make, lambda: (torch.randn(4, 6),), torch.float64)
    go = cimsim.deploy if run == "deploy" else prepare
    out = _quiet(go, model, lossless_chip("channel"), x)
    with torch.no_grad():
        return model, model(x), out(x)


class _Streaming(nn.Module):
    """A streaming model: the last frame of the previous call kept in a buffer (written in
    place, as streaming ASR / TTS caches are) and a call counter buffer (``+=``)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 8)
        self.head = nn.Linear(8, 3)
        self.register_buffer("prev", torch.zeros(1, 6))
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        h = self.fc(torch.cat([x, self.prev.expand_as(x)], 1))
        self.prev.copy_(x[-1:])
        self.calls += 1
        return self.head(torch.relu(h) + self.calls)


@pytest.mark.parametrize("run", ["deploy", "prepare"])
def test_buffers_a_calibration_pass_writes_are_set_back(run):
    """A forward writing its buffers in place (a streaming cache, a call counter): the
    calibration passes' writes stayed, so the deployed model (and the twin) started from the
    last calibration batch's cache and a counter already run on: its first call 67 % off the
    float model's first call on the lossless chip, nothing said (attributes set by assignment
    were undone, not buffers written in place). The buffers are set back now."""
    model, want, got = _first_calls(_Streaming, run)
    assert _rel(got, want) < 0.03
    assert model.calls == 1  # the user's model: only the call above counted (deploy runs a copy)


class _OwnGenerator(nn.Module):
    """Noise injection drawn from the model's own ``torch.Generator`` (a seeded augmentation or
    a noisy-channel layer kept on at inference), not torch's global stream."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.head = nn.Linear(8, 3)
        self.gen = torch.Generator().manual_seed(5)

    def forward(self, x):
        h = self.fc(x)
        noise = torch.randn(h.shape, generator=self.gen, dtype=h.dtype)
        return self.head(h + 0.5 * noise)


@pytest.mark.parametrize("run", ["deploy", "prepare"])
def test_a_models_own_generator_is_set_back_after_the_calibration_passes(run):
    """A forward drawing from a ``torch.Generator`` the model holds: the calibration passes
    moved it on, so the deployed model (and the twin) drew other noise than the float model's
    first call (47 % off float on the lossless chip, nothing said; zoo14 seeded
    torch's global streams only). Its state is set back now."""
    _, want, got = _first_calls(_OwnGenerator, run)
    assert _rel(got, want) < 0.03


class _CallCounter(nn.Module):
    """A call counter held as a plain int attribute (``self.calls += 1``) read by the forward
    (a warm-up schedule, a position offset)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.head = nn.Linear(8, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.head(self.fc(x) + self.calls)


@pytest.mark.parametrize("run", ["deploy", "prepare"])
def test_a_number_a_calibration_pass_counts_up_is_set_back(run):
    """A forward counting its calls in a plain int attribute: the calibration passes' counts
    stayed (only tensors were set back), the deployed model's first call 27 % off the float
    model's on the lossless chip, nothing said. Numbers are set back now (not bools: a flag
    a forward sets once)."""
    _, want, got = _first_calls(_CallCounter, run)
    assert _rel(got, want) < 0.03


class _InPlaceMemory(nn.Module):
    """A memory held as a plain tensor attribute (``self.mem.mul_(0.5).add_(...)``) and a
    preallocated cache in a list attribute written in place (``self.cache[0].copy_(...)``)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.head = nn.Linear(8, 3)
        self.mem = torch.zeros(1, 8)
        self.cache = [torch.zeros(1, 8)]

    def forward(self, x):
        h = torch.relu(self.fc(x))
        out = self.head(h + self.mem + self.cache[0])
        self.mem.mul_(0.5).add_(h.mean(0, keepdim=True))
        self.cache[0].copy_(h[-1:])
        return out


@pytest.mark.parametrize("run", ["deploy", "prepare"])
def test_tensor_attributes_a_calibration_pass_writes_in_place_are_set_back(run):
    """Tensors held by attributes (not buffers), directly or in a list, written in place by the
    forward: setting the attributes back (zoo14) left their values the calibration passes'
    (the same objects), the deployed model's first call 59 % off the float model's first call on
    the lossless chip, nothing said. Their values are set back now."""
    _, want, got = _first_calls(_InPlaceMemory, run)
    assert _rel(got, want) < 0.03


class _LruTable(nn.Module):
    """A position table computed by a layer in a method cached by ``functools.lru_cache``
    on the sequence length (the cache is the class's, keyed by ``self``)."""

    def __init__(self):
        super().__init__()
        self.pos = nn.Linear(2, 6)
        self.head = nn.Linear(6, 3)

    @functools.lru_cache(maxsize=4)  # noqa: B019 (the pattern under test)
    def table(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        return self.pos(torch.linspace(-1, 1, 2 * n, dtype=dtype).view(n, 2))

    def forward(self, x):
        return self.head(x + self.table(x.shape[1], x.dtype).sum(0))


def test_a_layers_output_cached_by_lru_cache_is_computed_on_the_arrays():
    """A layer's output cached by an ``lru_cache`` d method: the calibration pass filled the
    cache with its float result and every simulated forward reused it, the layer never on the
    arrays (0 MACs per inference in the report) though listed as mapped, nothing said (zoo14
    set back the attributes a pass stores, not a class's cache). The caches are emptied after
    each pass now: the first simulated forward computes the table on the arrays."""
    model, (x,) = build_seeded(_LruTable, lambda: (torch.randn(4, 6),), torch.float64)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
    with torch.no_grad():
        got = sim(x)
        assert_bitwise(got, reference_model(model, sim)(x))
    macs = dict(zip(sim.report().layers["layer"], sim.report().layers["n_macs_per_inference"],
                    strict=True))
    assert macs["pos"] > 0

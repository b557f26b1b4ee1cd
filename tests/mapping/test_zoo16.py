"""A sixteenth zoo (worktree ``zoo16``, after ``test_zoo15.py``): model families of 2021-2025
papers at toy size that the fifteen earlier zoos did not build (models in ``zoo16_models.py``).
State-space and recurrent sequence models: Mamba-2's chunked state-space duality (``segsum``,
four-operand ``einsum``), S4D's kernel computed from complex parameters and applied by FFT,
xLSTM's sLSTM (exponential gates, block-diagonal recurrent weights in one 3-D Parameter), Griffin's
RG-LRU, Gated DeltaNet's delta rule, a TTT-Linear layer (its hidden state a weight matrix updated
in the forward from a learned ``W0``) and a deep equilibrium model iterated to a data-dependent
fixed point. Attention: the Differential Transformer's two softmax maps weighted by a lambda of
four learned vectors, XCiT's cross-covariance attention with a ``(heads, 1, 1)`` temperature.
Weights made in the forward: FlexiViT's patch kernel resized by ``F.interpolate``, ControlNet's
zero convolutions (weights and biases all zero); gMLP's spatial gating (a near-zero Linear over
the token axis), an Instant-NGP hash-grid encoding (``nn.Embedding`` look-ups of hashed corners,
interpolated) and nested named-tuple outputs. All fourteen pass the lossless, ``rram-22nm`` and
``prepare`` checks as written; RepVGG's kernel re-parameterised in the forward and DeepSeek's
latent attention with the up-projection absorbed (``.weight`` of a mapped Linear read by
``einsum``) are refused naming the layer, and deploy with it excluded.

What it found around them, fixed: a batch of no sample (a detector's region head on an image
without proposals) failed in the simulated attention and recurrent layers (deploy and
``prepare``) and the twin's convolutions ("cannot reshape tensor of 0 elements into shape [0,
-1]"), no layer named: they return torch's empty output. ``flex_attention`` in a forward failed
deep inside dynamo in deploy and ``prepare`` (torch compiles its operator even in eager code,
and dynamo cannot trace the calibration pass's watch); run eagerly its Q·Kᵀ and ·V were
unlisted: the pass runs it eagerly and lists its attention products. ``PreparedModel.deploy()``
dropped the weights used functionally and the activation products from its ``digital`` list
and report (0 rows where deploy gives 1 to 4): carried over from ``prepare``. A lambda or a
``torch.compile`` d method held as an attribute and closing over the model called the user's
float layer from deploy's and ``prepare``'s copy (its product in float unlisted, the layer
reported mapped; zeroing the user's weight after deploy moved the deployed output 25 %):
refused naming the layer, and a weight so reached named digital, not an "activation
product". Seen, left: ControlNet's all-zero convolutions are quantized at scale 1.0 and warned
so; a global ``register_module_forward_hook`` testing ``isinstance(m, nn.Linear)`` does not
reach the simulated layers (no ``nn.Linear``); torch's FlexAttention has no backward on CPU,
so its twin is not trained here."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import MappingError
from cimsim.mapping.functional import FUNCTIONAL_REASON
from cimsim.train import prepare

from .conftest import (
    assert_bitwise,
    build_seeded,
    check_every_matrix,
    check_lossy_run,
    lossless_chip,
    reference_model,
)
from .test_new_models import _rram
from .test_zoo5 import _quiet, _rel
from .zoo16_models import (
    DEQ,
    GMLP,
    RGLRU,
    SLSTM,
    ControlNetZero,
    DiffAttention,
    FlexBias,
    FlexiPatch,
    GatedDeltaNet,
    HashGrid,
    Mamba2SSD,
    MLAAbsorbed,
    NestedOutputs,
    RepVGGBlock,
    S4DConv,
    TTTLinear,
    XCiT,
)
from .zoo_tests import zoo_deploy_tests

ZOO16 = {
    "mamba2-ssd": (Mamba2SSD, lambda: (torch.randn(3, 8, 6),)),
    "s4d": (S4DConv, lambda: (torch.randn(3, 7, 4),)),
    "slstm": (SLSTM, lambda: (torch.randn(3, 5, 6),)),
    "rg-lru": (RGLRU, lambda: (torch.randn(3, 5, 6),)),
    "gated-deltanet": (GatedDeltaNet, lambda: (torch.randn(3, 5, 6),)),
    "ttt-linear": (TTTLinear, lambda: (torch.randn(3, 5, 6),)),
    "deq": (DEQ, lambda: (torch.randn(3, 6),)),
    "diff-attention": (DiffAttention, lambda: (torch.randn(3, 5, 8),)),
    "xcit": (XCiT, lambda: (torch.randn(3, 5, 8),)),
    "flexivit-patch": (FlexiPatch, lambda: (torch.randn(3, 3, 8, 8),)),
    "controlnet-zero": (ControlNetZero, lambda: (torch.randn(3, 4, 6, 6),
                                                 torch.randn(3, 4, 6, 6))),
    "gmlp": (GMLP, lambda: (torch.randn(3, 5, 6),)),
    "hash-grid": (HashGrid, lambda: (torch.rand(3, 2),)),
    "nested-outputs": (NestedOutputs, lambda: (torch.randn(3, 6),)),
}

# what stays digital, by name: the products of activations (attention, scans and recurrences
# written by hand), weights in a product outside a layer (S4D's kernel parameters, sLSTM's
# recurrent bank, TTT's ``W0``, FlexiViT's resized kernel) and the hash tables (look-ups)
_DIGITAL = {
    "mamba2-ssd": {"model"},
    "s4d": {"A_imag", "C", "log_A_real", "log_dt"},
    "slstm": {"r"},
    "gated-deltanet": {"model"},
    "ttt-linear": {"W0", "model"},
    "diff-attention": {"model"},
    "xcit": {"model"},
    "flexivit-patch": {"weight"},
    "hash-grid": {"tables.0", "tables.1", "tables.2"},
}
# 2-D or larger parameters in no product: XCiT's temperature (scales the scores element-wise)
_NOT_MATRICES = {"xcit": ("temperature",)}


def _build(name: str, dtype=torch.float32):
    return build_seeded(*ZOO16[name], dtype)


# the deploy (lossless, rram-22nm) and prepare tests of every model
(test_lossless_deploy_is_the_quantized_model_and_near_float,
 test_rram_deploy_runs_reports_and_accounts_for_every_matrix,
 test_prepare_steps_and_the_twin_deploys_to_what_it_computes) = zoo_deploy_tests(
    ZOO16, _build, _DIGITAL, not_matrices=_NOT_MATRICES)


# ---------------------------------------------------------------------------------------------
# what it found
# ---------------------------------------------------------------------------------------------
def _flex():
    pytest.importorskip("torch.nn.attention.flex_attention")  # torch >= 2.5
    return build_seeded(FlexBias, lambda: (torch.randn(3, 5, 8),), torch.float64)


def test_flex_attention_deploys_and_lists_its_attention_products():
    """FlexAttention (``torch.nn.attention.flex_attention``) runs its operator in a
    ``torch.compile`` d wrapper even in eager code: dynamo traced deploy's watch (a
    TorchFunctionMode) and refused it deep inside ("Attempted to inline function marked as
    skipped"), no layer named; with it run eagerly the watch did not see Q·Kᵀ and ·V, the
    attention's products in float unlisted. It deploys now, the products listed as an SDPA's
    are, the learned ``score_mod`` bias (added to the scores, no product) not a weight."""
    model, (x,) = _flex()
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
    with torch.no_grad():
        want, got = model(x), sim(x)
        assert_bitwise(got, reference_model(model, sim)(x))
    assert _rel(got, want) < 0.03
    assert [d[:2] for d in sim.digital] == [("model", "attention products")]
    rram = _quiet(cimsim.deploy, model, _rram(), x)
    with torch.no_grad():
        check_lossy_run(rram(x), want, rram)
    check_every_matrix(model, rram, {"model"}, ("bias",))


def test_flex_attention_prepares_and_the_twin_deploys_to_what_it_computes():
    """The same through ``prepare``: its calibration pass failed in dynamo as deploy's did. The
    twin computes now (eval: torch's FlexAttention has no backward on CPU, its own refusal),
    and its deployed model equals it, listing the attention products."""
    model, (x,) = _flex()
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    with torch.no_grad():
        want = prep(x)
        torch.testing.assert_close(prep.deploy()(x), want, rtol=1e-9, atol=1e-9)
        assert _rel(want, model(x)) < 0.03
    assert [d[:2] for d in prep.deploy().digital] == [("model", "attention products")]


@pytest.mark.parametrize("name", ["flexivit-patch", "ttt-linear", "s4d", "diff-attention",
                                  "hash-grid"])
def test_the_prepared_models_deployment_lists_what_deploy_lists(name):
    """``PreparedModel.deploy()`` listed only the layers its module types keep digital: the
    weights prepare's calibration pass found computing in float outside a layer (FlexiViT's
    resized kernel, TTT's ``W0``, S4D's kernel parameters) and the activation products were
    gone from its ``digital`` and its report, though ``prepare`` and ``cimsim.deploy`` of the
    same model list them. They are carried over now."""
    model, args = _build(name, torch.float64)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), args)
    prep = _quiet(prepare, model, lossless_chip("channel"), args)
    deployed = prep.deploy()
    assert deployed.digital == sim.digital == prep.digital
    assert len(deployed.report().digital) == len(sim.digital) > 0


class _ZeroProposals(nn.Module):
    """A detector's second stage as it meets an image with no proposal: the region features
    (``(0, C, 4, 4)``) through a convolution, a 1-D convolution, attention and a recurrent
    layer, each returning an empty batch as torch's layers do."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.layer = {"conv2d": lambda: nn.Conv2d(4, 6, 3, padding=1),
                      "conv1d": lambda: nn.Conv1d(4, 6, 3, padding=1),
                      "mha": lambda: nn.MultiheadAttention(4, 2, batch_first=True),
                      "lstm": lambda: nn.LSTM(4, 6, batch_first=True, bidirectional=True),
                      "gru": lambda: nn.GRU(4, 6, 2, batch_first=True)}[kind]()
        self.head = nn.Linear(6 if kind in ("conv2d", "conv1d") else (12 if kind == "lstm"
                                                                     else 4 if kind == "mha"
                                                                     else 6), 3)

    def forward(self, x):  # (N, 4, 4, 4) region features
        if self.kind == "conv2d":
            h = self.layer(x).mean((2, 3))
        elif self.kind == "conv1d":
            h = self.layer(x.flatten(2)).mean(-1)
        else:
            seq = x.flatten(2).transpose(1, 2)  # (N, 16, 4)
            h = (self.layer(seq, seq, seq)[0] if self.kind == "mha" else self.layer(seq)[0])
            h = h.mean(1)
        return self.head(h)


@pytest.mark.parametrize("run", ["deploy", "prepare"])
@pytest.mark.parametrize("kind", ["conv2d", "conv1d", "mha", "lstm", "gru"])
def test_an_empty_batch_gives_an_empty_output(kind, run):
    """A batch of no sample (a detector's region head on an image with no proposal, the last
    chunk of a split): torch's layers return an empty output; the simulated attention and
    recurrent layers and the twin's convolutions failed ("cannot reshape tensor of 0 elements
    into shape [0, -1] because the unspecified dimension size -1 can be any value and is
    ambiguous"), no layer named. They return torch's shape now, no inference counted."""
    model, (x,) = build_seeded(lambda: _ZeroProposals(kind),
                               lambda: (torch.randn(3, 4, 4, 4),), torch.float64)
    go = cimsim.deploy if run == "deploy" else prepare
    sim = _quiet(go, model, lossless_chip("channel"), x)
    with torch.no_grad():
        want, got = model(x[:0]), sim(x[:0])
        assert got.shape == want.shape == (0, 3)
        assert _rel(sim(x), model(x)) < 0.03  # and the next batch as before
    if run == "deploy":
        assert sim.n_inferences == 3


class _LambdaLayer(nn.Module):
    """A layer called through a function held as an attribute closing over the model: a
    lambda (``self.act = lambda x: relu(self.a(x))``) or a bound method compiled on its own
    (``self.inner = torch.compile(self._inner)``), beside a direct call of the same layer."""

    def __init__(self, how: str):
        super().__init__()
        self.a = nn.Linear(6, 8)
        self.h = nn.Linear(8, 3)
        self.act = (torch.compile(self._inner, backend="eager") if how == "compiled"
                    else lambda x: torch.relu(self.a(x)))

    def _inner(self, x):
        return torch.relu(self.a(x))

    def forward(self, x):
        return self.h(self.act(x) + self.a(x))


@pytest.mark.parametrize("run", ["deploy", "prepare"])
@pytest.mark.parametrize("how", ["lambda", "compiled"])
def test_a_layer_called_through_a_function_attribute_is_refused_naming_it(how, run):
    """deploy and prepare work on a deep copy; copying does not copy a function, so a lambda
    or a ``torch.compile`` d method held as an attribute called the *user's* float layer: its
    product computed in float unlisted (the layer reported mapped, its other call simulated),
    and the deployed model read the user's model (zeroing the user's ``a.weight`` after deploy
    moved the deployed output 25 %). A ``MappingError`` names the layer and the way out now (the
    layer called only so said "saw no calibration data")."""
    model, (x,) = build_seeded(lambda: _LambdaLayer(how), lambda: (torch.randn(3, 6),),
                               torch.float64)
    go = cimsim.deploy if run == "deploy" else prepare
    with pytest.raises(MappingError, match=r"^a: .*a function closing over the model"):
        _quiet(go, model, lossless_chip("channel"), x)


class _LambdaWeight(nn.Module):
    """A weight applied by a lambda held as an attribute (``self.proj = lambda x: x @
    self.w.t()``)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 6))
        self.h = nn.Linear(8, 3)
        self.proj = lambda x: x @ self.w.t()

    def forward(self, x):
        return self.h(torch.relu(self.proj(x)))


@pytest.mark.parametrize("run", ["deploy", "prepare"])
def test_a_weight_applied_through_a_function_attribute_is_named(run):
    """The lambda reads the user's ``w``, not the copy's: the watch knew the copy's weights
    only and listed the product as one of two activations ("activation products"), the weight
    unnamed. It is named as a weight used outside a module now."""
    model, (x,) = build_seeded(_LambdaWeight, lambda: (torch.randn(3, 6),), torch.float64)
    go = cimsim.deploy if run == "deploy" else prepare
    sim = _quiet(go, model, lossless_chip("channel"), x)
    assert sim.digital == [("w", "parameter", FUNCTIONAL_REASON)]


def test_repvgg_reparameterised_in_the_forward_is_refused_naming_the_branches():
    """RepVGG's inference kernel built in the forward from its branches' weights: the branches
    are ``nn.Conv2d`` the forward never calls but reads ``.weight`` of. deploy maps them and
    refuses the read naming the layer and the way out; excluded, they are listed digital (the
    fused product computes in float) and the model deploys. (Fusing once, into a
    ``nn.Conv2d``, as RepVGG's ``switch_to_deploy`` does, maps it.)"""
    model, (x,) = build_seeded(RepVGGBlock, lambda: (torch.randn(3, 3, 6, 6),), torch.float64)
    with pytest.raises(AttributeError, match=r"^k3: the model reads \.weight of a mapped layer"):
        _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x, exclude=["k3", "k1"])
    with torch.no_grad():
        assert _rel(sim(x), model(x)) < 0.03
    assert [d[:2] for d in sim.digital] == [("k3", "Conv2d"), ("k1", "Conv2d"),
                                            ("model", "activation products")]


def test_latent_attention_with_absorbed_weights_is_refused_naming_the_projection():
    """DeepSeek's MLA absorbs the key / value up-projection into the query by ``einsum`` with
    the Linear's weight viewed per head: refused naming ``wkv_b``; excluded, it deploys with the
    projection listed."""
    model, (x,) = build_seeded(MLAAbsorbed, lambda: (torch.randn(3, 5, 8),), torch.float64)
    with pytest.raises(AttributeError, match=r"^wkv_b: the model reads \.weight"):
        _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x, exclude=["wkv_b"])
    with torch.no_grad():
        assert _rel(sim(x), model(x)) < 0.03
    assert [d[:2] for d in sim.digital] == [("wkv_b", "Linear"), ("model", "activation products")]

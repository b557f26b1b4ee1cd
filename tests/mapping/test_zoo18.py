"""An eighteenth zoo (worktree ``zoo18``, after ``test_zoo17.py``): model families at toy size
that the seventeen earlier zoos did not build, chosen for ways weights reach a product, or
training reaches a weight, that no zoo used (models in ``zoo18_models.py``). Training machinery
around the layers: a RevNet whose reversible blocks run in a custom ``autograd.Function`` that
recomputes the forward in the backward (replaying the generator, as Reformer does), stochastic
weight averaging (``torch.optim.swa_utils.AveragedModel``: the layers under ``module.``, an
``n_averaged`` buffer), an echo state network with frozen reservoir layers, a class-incremental
head whose old rows a gradient hook on its weight freezes, and, outside the registry, an
AWD-LSTM whose recurrent weight a wrapper sets before every forward (fastai's
``WeightDropout``). The batch or the calls set in the forward: BatchEnsemble (the batch tiled
per member, rank-1 fast weights), a beam search over a decoder with a growing KV cache
reordered by the beams' parents (``B k`` rows a step), a Universal Transformer halting by
adaptive computation time, ``nn.AdaptiveLogSoftmaxWithLoss`` (a tail on the rows whose label
it holds), LISTA's unrolled iterations, a neural cellular automaton updating random cells
through fixed Sobel filters. Weights in products no layer holds: SAM's two-way transformer (one
attention module both ways, a random-Fourier positional buffer), Nystromformer (landmarks, an
iterative pseudo-inverse, a depthwise convolution over each head's sequence), the Random
Synthesizer (a learned attention matrix on the left of the values), NetVLAD (the centroids
times the soft-assignment mass). All fifteen pass the lossless, ``rram-22nm`` and ``prepare``
checks and every training method as written.

What it found around them, fixed: BatchEnsemble's fast weights, multiplied element-wise by
activations, were named in their warning and counted again in a second one, "4 weight(s) are
multiplied by an activation before a matrix product (input-dependent weights ...)", which named
none: it counts and names the input-dependent weights only. A gradient hook on a weight
(``weight.register_hook``) did nothing in ``prepare``: the twin trains its own copy of the
weight, and the copy of the model lost the hooks (torch's ``Parameter.__deepcopy__`` copies the
data only), so the incremental head's frozen rows trained, mapped or excluded alike; the copy
keeps them now and a Linear's or an ungrouped convolution's twin applies them (in the weight's
own layout); a weight split over several twins (groups, packed projections) is refused naming
it and the way out. ``PreparedModel.float_model()`` called under ``no_grad`` gave a
convolution's weight (put together from its twins) ``requires_grad=False``, so a fine-tuning of
the float model trained nothing there: trainable as the twins now, and hooked as the source.
AWD-LSTM's wrapper-set weight was refused by the twin as "functional_call /
stateless" weights: the message names the wrapper too. deploy took a tensor the forward set on
a mapped layer during calibration as the layer's own, so every later one was ignored unseen (MC
DropConnect's weight samples at inference): a tensor set again is accepted while it holds the
programmed values (AWD-LSTM in eval deploys) and refused when they differ. A call whose
inputs are all inside a container argument (a tuple pair, a dict passed positionally, a
``PackedSequence``, torchvision's list of images) counted one inference whatever it held: it
counts their samples now. Seen, left: a
reversible block that does not replay the generator recomputes other noise in a twin
training with noise (the gradient of another forward: the model's choice, as with dropout;
tested); a weight used only by a constant product (SAM's positional buffer on a coordinate
grid) and a buffer in ``F.conv2d`` (the automaton's Sobel filters) are listed as
``parameter`` rows like learned weights; a list argument counts its elements as samples, so
a list of batched views (DINO's multi-crop) is counted by its views; a Linear whose weight is
a view of a larger parameter's rows trains apart from it in the twin (a tie by storage, not
by parameter, is not seen)."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.errors import MappingError
from cimsim.train import prepare

from .conftest import build_seeded, lossless_chip
from .test_zoo5 import _quiet, _rel, _rram
from .test_zoo9 import ImageListDetector
from .test_zoo17 import _train
from .zoo18_models import (
    AWDLSTM,
    LISTA,
    AdaptiveSoftmaxLM,
    BatchEnsemble,
    BeamSearch,
    EchoStateNetwork,
    IncrementalHead,
    NetVLAD,
    NeuralCA,
    Nystromformer,
    RandomSynthesizer,
    RevNet,
    SAMTwoWay,
    UniversalACT,
    WeightDropout,
    swa_model,
)
from .zoo_tests import zoo_deploy_tests

ZOO18 = {
    "revnet": (RevNet, lambda: (torch.randn(3, 6),)),
    "swa": (swa_model, lambda: (torch.randn(3, 3, 8, 8),)),
    "esn": (EchoStateNetwork, lambda: (torch.randn(3, 6, 3),)),
    "incremental-head": (IncrementalHead, lambda: (torch.randn(3, 6),)),
    "batch-ensemble": (BatchEnsemble, lambda: (torch.randn(3, 6),)),
    "beam-search": (BeamSearch, lambda: (torch.randn(3, 5),)),
    "universal-act": (UniversalACT, lambda: (torch.randn(3, 4, 5),)),
    "adaptive-softmax": (AdaptiveSoftmaxLM,
                         lambda: (torch.randn(3, 6), torch.tensor([0, 4, 9]))),
    "sam-two-way": (SAMTwoWay, lambda: (torch.randn(3, 3, 8, 8), torch.randn(3, 2, 8))),
    "nystromformer": (Nystromformer, lambda: (torch.randn(3, 6, 5),)),
    "random-synthesizer": (RandomSynthesizer, lambda: (torch.randn(3, 6, 5),)),
    "netvlad": (NetVLAD, lambda: (torch.randn(3, 3, 6, 6),)),
    "lista": (LISTA, lambda: (torch.randn(3, 6),)),
    "neural-ca": (NeuralCA, lambda: (torch.randn(3, 3, 6, 6),)),
}

# 2-D parameters in no matrix product: ACT's timestep embedding (added), SAM's output token,
# BatchEnsemble's per-member bias (added)
_NOT_MATRICES = {"universal-act": ("step_emb",), "sam-two-way": ("out_token",),
                 "batch-ensemble": ("b1",)}
_DIGITAL = {
    "batch-ensemble": {"r1", "r2", "s1", "s2"},
    "beam-search": {"emb", "model"},
    "universal-act": {"model"},
    "sam-two-way": {"gauss", "self_att", "cross", "final"},
    "nystromformer": {"model"},
    "random-synthesizer": {"R"},
    "netvlad": {"centroids", "model"},
    "neural-ca": {"percept"},
}


def _build(name: str, dtype=torch.float32):
    return build_seeded(*ZOO18[name], dtype)


# the deploy (lossless, rram-22nm) and prepare tests of every model
(test_lossless_deploy_is_the_quantized_model_and_near_float,
 test_rram_deploy_runs_reports_and_accounts_for_every_matrix,
 test_prepare_steps_and_the_twin_deploys_to_what_it_computes) = zoo_deploy_tests(
    ZOO18, _build, _DIGITAL, not_matrices=_NOT_MATRICES)


# ---------------------------------------------------------------------------------------------
# what it found
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_weights_scaled_element_wise_are_not_warned_as_input_dependent_too(run):
    """BatchEnsemble's rank-1 fast weights multiply activations element-wise (named as such,
    in float). They were also counted in a second warning, "4 weight(s) are multiplied by an
    activation before a matrix product (input-dependent weights ...)", which named none: the
    count took the element-wise ones, the list the input-dependent ones (there were none)."""
    model, (x,) = _build("batch-ensemble")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(model, lossless_chip("channel"), x)
    said = [str(w.message) for w in caught]
    who = run.__name__
    assert any(re.fullmatch(rf"{who}: 4 weight matrix\(es\) are multiplied element-wise .*: "
                            r"r1 \(mul\), r2 \(mul\), s1 \(mul\), s2 \(mul\)", m)
               for m in said), said
    assert not any("before a matrix product" in m for m in said), said


class _HookedConv(nn.Module):
    """A convolution whose weight's gradient a hook zeroes for the first two output channels
    (those frozen), pooled into a Linear head."""

    def __init__(self, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1, groups=groups)
        self.head = nn.Linear(4, 3)
        keep = torch.ones(4, 1, 1, 1)
        keep[:2] = 0
        self.register_buffer("keep", keep)
        self.conv.weight.register_hook(lambda g: g * self.keep)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def _moved(prep, layer: str, before: torch.Tensor) -> torch.Tensor:
    """Per output row of ``layer``'s weight, whether the training moved it."""
    with torch.no_grad():
        w = prep.float_model().get_submodule(layer).weight
    return (w - before).flatten(1).abs().amax(1) > 0


@pytest.mark.parametrize("exclude", [[], ["head"]])
def test_a_gradient_hook_on_a_weight_holds_in_training(exclude):
    """A class-incremental head freezes its old classes' rows by a gradient hook on its weight
    (``weight.register_hook``). The twin trains its own copy of the weight, which carried no
    hook, and ``prepare``'s copy of the model lost it too (torch's ``Parameter.__deepcopy__``
    copies the data only): the frozen rows trained, in the twin and excluded alike. The hooks
    act on the twin's weight, on the copy's parameters and on ``float_model()``'s now, as in
    the float model."""
    model, (x,) = _build("incremental-head", torch.float64)
    before = model.head.weight.detach().clone()
    prep = _quiet(prepare, model, lossless_chip("channel"), x, exclude=exclude)
    _train(prep, x, steps=3, lr=0.5)
    assert _moved(prep, "head", before).tolist() == [False, False, False, True, True]
    # and in the float model, fine-tuned further (deepcopy and float_module dropped the hooks)
    tuned = prep.float_model()
    tuned(x).square().mean().backward()
    assert (tuned.head.weight.grad.abs().amax(1) > 0).tolist() == [False, False, False, True,
                                                                   True]
    # a hooked weight frozen afterwards takes no gradient: nothing to hook (torch refuses to)
    model.head.requires_grad_(False)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
    assert "head" in sim.sim_layers
    prep = _quiet(prepare, model, lossless_chip("channel"), x, exclude=exclude)
    assert not prep.float_model().head.weight.requires_grad


def test_a_gradient_hook_on_a_conv_weight_holds_and_a_split_one_is_refused():
    """A convolution's twin holds its weight flattened to (N, K): the hook sees the gradient in
    the weight's own layout. A grouped convolution's weight is split over a twin per group, where
    no hook can act: refused, naming the parameter and the way out (exclude), which trains it
    with its hook."""
    model, (x,) = build_seeded(_HookedConv, lambda: (torch.randn(3, 4, 6, 6),), torch.float64)
    before = model.conv.weight.detach().clone()
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    _train(prep, x, steps=3, lr=0.5)
    assert _moved(prep, "conv", before).tolist() == [False, False, True, True]
    grouped, (x,) = build_seeded(lambda: _HookedConv(groups=2), lambda: (torch.randn(3, 4, 6, 6),),
                                 torch.float64)
    with pytest.raises(MappingError, match=r"^prepare: conv\.weight carr\(ies\) a gradient "
                                           r"hook .*exclude the layer"):
        _quiet(prepare, grouped, lossless_chip("channel"), x)
    before = grouped.conv.weight.detach().clone()
    prep = _quiet(prepare, grouped, lossless_chip("channel"), x, exclude=["conv"])
    _train(prep, x, steps=3, lr=0.5)
    assert _moved(prep, "conv", before).tolist() == [False, False, True, True]


def test_the_float_model_taken_under_no_grad_trains_as_the_twin():
    """``PreparedModel.float_model()`` called under ``torch.no_grad()`` (to evaluate or export
    it) gave each layer whose weight it puts together from several twins' (a convolution's)
    ``requires_grad=False``: the float model, fine-tuned further, trained nothing there. Its
    parameters are trainable as the twins' are now, a frozen convolution frozen; the averaged
    model comes back an ``AveragedModel`` with its ``n_averaged``."""
    model, (x,) = _build("swa", torch.float64)
    model.module.conv.requires_grad_(False)
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    with torch.no_grad():
        tuned = prep.float_model()
    assert isinstance(tuned, type(model)) and int(tuned.n_averaged) == 3
    assert {n: p.requires_grad for n, p in tuned.named_parameters()} == {
        n: p.requires_grad for n, p in model.named_parameters()}


def _vectors(sim) -> dict[str, float]:
    """Input vectors each mapped layer processed since the last reset."""
    return {w.name: sum(b.n_vectors for b in w.blocks) for w in sim.works()}


def test_layers_called_as_often_as_the_forward_says_are_charged_every_call():
    """The forward sets how often a layer runs and on how many rows: a beam search runs its
    decoder step on ``B k`` rows at each of its steps (the input projection once, on ``B``), a
    Universal Transformer its shared layer once per pondering step (as many as the float model
    takes), the adaptive softmax its head twice (``log_prob``, then the loss) and each tail on
    every row for ``log_prob`` plus the rows whose label falls in it. The report charges what
    ran, one inference per sample."""
    counts = {}
    for name in ("beam-search", "universal-act", "adaptive-softmax"):
        model, args = _build(name)
        sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), args)
        sim.reset()
        sim(*args)
        assert sim.n_inferences == 3
        counts[name] = _vectors(sim)
    beam = BeamSearch()
    assert counts["beam-search"] == {"ctx": 3, **dict.fromkeys(("q", "kv", "o", "out"),
                                                               3 * beam.k * beam.steps)}
    model, (x,) = _build("universal-act")
    steps = []
    model.halt.register_forward_hook(lambda *_: steps.append(1))
    with torch.no_grad():
        model(x)
    assert 1 < len(steps) <= model.max_steps
    per_step = x.shape[0] * x.shape[1]
    assert counts["universal-act"] == {"emb": per_step, "head": 3, **dict.fromkeys(
        ("qkv", "o", "ff.0", "ff.2", "halt"), len(steps) * per_step)}
    # labels 0, 4, 9: head classes 0-2, one row in each tail (3-5, 6-9)
    assert counts["adaptive-softmax"] == {"body.0": 3, "body.2": 3, "asm.head": 6, **dict.fromkeys(
        ("asm.tail.0.0", "asm.tail.0.1", "asm.tail.1.0", "asm.tail.1.1"), 4)}


def _revnet_grads(prep, x: torch.Tensor, mode: str) -> dict[str, torch.Tensor]:
    prep.model.mode = mode
    prep.zero_grad()
    torch.manual_seed(5)
    prep(x).square().mean().backward()
    return {n: p.grad.clone() for n, p in prep.named_parameters() if p.grad is not None}


def test_a_reversible_block_recomputes_the_twins_noise_when_it_replays_the_generator():
    """A RevNet's backward recomputes its blocks; in a twin training with the chip's noise, the
    recomputation draws noise again. The twin draws from torch's generator (the fused kernel's
    counter-based noise is keyed by it too), so a reversible block that records and restores
    the generator's state for its recomputation, as Reformer's does for dropout, recomputes
    the very noise of its forward: the gradients equal those of the same blocks run with
    stored activations. One that does not replay recomputes other noise and trains on a
    gradient of another forward (the model's choice, as with dropout)."""
    model, (x,) = _build("revnet", torch.float64)
    chip = _rram()
    assert chip.noise.thermal_sigma_lsb > 0
    prep = _quiet(prepare, model, chip, x)
    prep.train()
    plain = _revnet_grads(prep, x, "plain")
    replayed = _revnet_grads(prep, x, "replay")
    other = _revnet_grads(prep, x, "reversible")
    assert plain.keys() == replayed.keys() == other.keys() and len(plain) > 10
    for n, g in plain.items():
        torch.testing.assert_close(replayed[n], g, rtol=1e-9, atol=1e-12)
    assert any(not torch.allclose(other[n], g) for n, g in plain.items())


def test_a_weight_set_by_a_wrapper_maps_in_deploy_and_is_refused_in_training():
    """AWD-LSTM's ``WeightDropout`` (fastai's) keeps the recurrent weight as ``weight_hh_l0_raw``
    and sets a dropped-out (training) or cloned (eval) copy on the LSTM before every forward.
    deploy maps the LSTM with the eval copy (even when a training forward left a dropped-out
    one on it); the twin, which trains its own weight, cannot apply a dropout set from
    outside: refused naming the layer, the wrapper and the way out, excluding the LSTM, which
    then trains the raw weight in float."""
    model, (x,) = build_seeded(AWDLSTM, lambda: (torch.randn(3, 5, 4),), torch.float64)
    model.train()
    model(x)  # leaves a dropped-out weight on the LSTM
    model.eval()
    with torch.no_grad():
        want = model(x)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
    assert "rnn.module" in sim.sim_layers and _rel(sim(x), want) < 0.03
    with pytest.raises(MappingError, match=r"^rnn\.module: called with \.weight_hh_l0 set from "
                                           r"outside .*WeightDropout.*exclude"):
        prep = _quiet(prepare, model, lossless_chip("channel"), x)
        _train(prep, x, steps=1, lr=0.1)
    raw = model.rnn.weight_hh_l0_raw.detach().clone()
    prep = _quiet(prepare, model, lossless_chip("channel"), x, exclude=["rnn.module"])
    _train(prep, x, steps=1, lr=0.1)
    assert not torch.equal(prep.model.rnn.weight_hh_l0_raw, raw)


class _MCWeightDropout(WeightDropout):
    """MC DropConnect (Mobiny et al., Scientific Reports 2021): the weight dropped out at
    inference too, a sample per call."""

    def _set_weights(self):
        raw = getattr(self, self.name + "_raw")
        setattr(self.module, self.name, F.dropout(raw, self.p, training=True))


def test_a_weight_set_again_with_other_values_is_refused_in_deploy():
    """deploy took the tensor a wrapper set on a mapped layer during calibration as the layer's
    own, so every later one was ignored unseen: MC DropConnect, sampling a dropped-out weight
    at every inference, computed with the arrays' one weight, its samples silently dropped. A
    tensor set again is accepted while it holds the values the layer was programmed with (the
    eval wrapper's clone, tested above) and refused when they differ, as the twin refuses it."""
    model, (x,) = build_seeded(AWDLSTM, lambda: (torch.randn(3, 5, 4),))
    model.rnn.__class__ = _MCWeightDropout
    with pytest.raises(MappingError, match=r"^rnn\.module: called with \.weight_hh_l0 set from "
                                           r"outside .*exclude"):
        sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
        sim(x)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x, exclude=["rnn.module"])
    assert not torch.equal(sim(x), sim(x))  # a sample per call, in float


class _PairInput(nn.Module):
    """A model taking its inputs in one container argument: a ``(a, b)`` pair, a dict of them,
    a ``PackedSequence`` (an LSTM's), as ``kind`` says."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        if kind == "packed":
            self.lstm = nn.LSTM(4, 6, batch_first=True)
        else:
            self.enc = nn.Linear(4, 6)

    def forward(self, inputs):
        if self.kind == "packed":
            return self.lstm(inputs)[1][0][-1]
        a, b = (inputs["a"], inputs["b"]) if self.kind == "dict" else inputs
        return self.enc(a) * self.enc(b)


@pytest.mark.parametrize("kind", ["tuple", "dict", "packed", "list of images"])
def test_inputs_held_in_a_container_are_counted_by_their_samples(kind):
    """A call whose inputs are all inside a container argument (a siamese pair's tuple, a dict
    passed positionally, an LSTM's ``PackedSequence``, torchvision's list of images) was
    counted one inference whatever it held, so the report's per-inference figures were those of
    the whole batch. A tuple counts its first tensor's samples, a dict
    its counting tensor's, a packed sequence its batch, a list its elements (per-sample
    inputs, torchvision's and detectron2's convention)."""
    torch.manual_seed(0)
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    if kind == "list of images":
        model = ImageListDetector().eval()
        inputs = [torch.randn(3, 8, 8), torch.randn(3, 10, 6)]
    else:
        model = _PairInput(kind.split()[0]).eval()
        inputs = {"tuple": (a, b), "dict": {"a": a, "b": b},
                  "packed": nn.utils.rnn.pack_padded_sequence(
                      torch.randn(6, 5, 4), torch.tensor([5, 2, 4, 1, 3, 5]), batch_first=True,
                      enforce_sorted=False)}.get(kind)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), [(inputs, None)])
    sim.reset()
    sim(inputs)
    assert sim.n_inferences == (2 if kind == "list of images" else 6)
    assert sim.report().totals["n_inferences"] == sim.n_inferences

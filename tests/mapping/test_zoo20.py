"""A twentieth zoo (worktree ``zoo20``, after ``test_zoo19.py``): model families at toy size
that the nineteen earlier zoos did not build, chosen for ways weights reach a product that no
zoo used (models in ``zoo20_models.py``). Layers subclassing a torch layer: edge-popup
supermasks (an ``nn.Conv2d`` and an ``nn.Linear`` whose forward multiplies the weight by a
top-k mask of learned scores, between a plain stem and head). Weights built in the forward: a
Householder-orthogonal layer (reflections applied one at a time), Fastfood (products by a
constant Hadamard buffer, learned diagonals, a fixed permutation). Layers reached in other
ways: one ``nn.Linear`` on inputs of rank 2, 3 and 4 in one forward, a layer registered under
two names (``self.proj`` and ``blocks[0]``, called by both), a neural additive model (grouped
1x1 ``nn.Conv1d`` s), a CP-decomposed convolution (``(3, 1)`` and ``(1, 3)`` depthwise between
pointwise ones). Other arithmetic: piecewise-linear encoding (``torch.bucketize``), batch
renormalization (running statistics a hand-written norm updates in the training forward),
CORAL's ordinal head (one weight row, K-1 thresholds) and a mixture density network (a dict
out). All eleven pass the lossless, ``rram-22nm`` and ``prepare`` checks and every training
method as written.

What it found around them, fixed: the training twin froze every matrix's weight (or bias) of a
layer when any of its source's was frozen, so attention's output projection stayed frozen
beside a frozen packed q/k/v projection, and a recurrent layer's ``bias_ih`` (``weight_ih``)
beside a frozen ``bias_hh`` (``weight_hh``): exactly the tensors a frozen one is made of are
frozen now; a pruned bias kept its zeros only as a layer's own ``bias``: attention's pruned
``out_proj`` (a module inside it; its weight's zeros too where nothing else of the layer was
pruned), ``in_proj_bias`` and a recurrent layer's ``bias_ih_l0`` trained them back: kept now.
In the tests, the integer reference (``conftest.reference_model``) replaced a
mapped layer under one of its names only, so a layer registered twice ran in float under the
other and the lossless check failed against a correct chip (deploy replaces every name): the
reference replaces every name. Seen, by design: a ``Linear`` or ``Conv2d`` subclass overriding
``forward`` (the supermasks) is kept digital naming the class and the way out; the Householder
vectors and the Hadamard buffer are in products no layer holds, listed digital by name; a
layer built by the forward on its first call is refused naming it (run the model once first).
Seen, left: after two SGD steps at ``lr=0.1`` on the squared output, the twin and its
``float_model()`` differ by up to ~0.6 on these toy models, as on a plain two-layer MLP (the
trained activation scales clip in the twin): not a fault of these families."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import cimsim
from cimsim.train import prepare

from .conftest import build_seeded, lossless_chip
from .test_zoo5 import _quiet
from .test_zoo17 import _train
from .zoo20_models import (
    Aliased,
    Coral,
    CPConv,
    Fastfood,
    HouseholderNet,
    ManyRanks,
    MixtureDensity,
    NeuralAdditiveModel,
    PiecewiseLinearMLP,
    RenormMLP,
    Supermask,
)
from .zoo_tests import zoo_deploy_tests

ZOO20 = {
    "supermask": (Supermask, lambda: (torch.randn(3, 3, 8, 8),)),
    "householder": (HouseholderNet, lambda: (torch.randn(3, 6),)),
    "fastfood": (Fastfood, lambda: (torch.randn(3, 6),)),
    "many-ranks": (ManyRanks, lambda: (torch.randn(3, 2, 3, 6),)),
    "aliased": (Aliased, lambda: (torch.randn(3, 6),)),
    "neural-additive": (NeuralAdditiveModel, lambda: (torch.randn(3, 6),)),
    "cp-conv": (CPConv, lambda: (torch.randn(3, 3, 8, 8),)),
    "piecewise-linear": (PiecewiseLinearMLP, lambda: (torch.randn(3, 4),)),
    "batch-renorm": (RenormMLP, lambda: (torch.randn(3, 6),)),
    "coral": (Coral, lambda: (torch.randn(3, 6),)),
    "mixture-density": (MixtureDensity, lambda: (torch.randn(3, 6),)),
}

_DIGITAL: dict[str, set[str]] = {
    "supermask": {"c1", "c2", "fc"},
    "householder": {"orth.u"},
    "fastfood": {"H"},
}


def _build(name: str, dtype=torch.float32):
    return build_seeded(*ZOO20[name], dtype)


# the deploy (lossless, rram-22nm) and prepare tests of every model
(test_lossless_deploy_is_the_quantized_model_and_near_float,
 test_rram_deploy_runs_reports_and_accounts_for_every_matrix,
 test_prepare_steps_and_the_twin_deploys_to_what_it_computes) = zoo_deploy_tests(
    ZOO20, _build, _DIGITAL)


# ---------------------------------------------------------------------------------------------
# what it found
# ---------------------------------------------------------------------------------------------
def test_a_layer_under_two_names_is_mapped_under_both_and_stays_one_in_training():
    """The stem is ``proj`` and ``blocks[0]``: deploy maps it once and runs the simulated layer
    under both names (the lossless check above compares with the reference, which replaces
    both); prepare's twin and ``float_model()`` keep the two names one layer, trained once."""
    model, (x,) = _build("aliased", torch.float64)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
    assert sim.model.blocks[0] is sim.model.proj and "proj" in sim.sim_layers
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    assert prep.model.blocks[0] is prep.model.proj
    _train(prep, x, steps=2, lr=0.1)
    tuned = prep.float_model()
    assert tuned.blocks[0] is tuned.proj
    assert [n for n, _ in tuned.named_parameters()][:2] == ["proj.weight", "proj.bias"]
    assert not torch.equal(tuned.proj.weight, model.proj.weight)


def test_running_statistics_a_norm_updates_in_training_reach_the_float_model_and_deploy():
    """Batch renormalization updates its running statistics in the training forward (a
    hand-written norm, buffers): the twin's training updates them, ``float_model()`` and the
    deployed twin carry the updated ones, the source model keeps its own."""
    model, _ = _build("batch-renorm", torch.float64)
    torch.manual_seed(2)
    x = torch.randn(8, 6, dtype=torch.float64)
    before = model.norm.running_mean.clone()
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    _train(prep, x, steps=2, lr=0.1)
    assert not torch.equal(prep.model.norm.running_mean, before)
    assert torch.equal(prep.float_model().norm.running_mean, prep.model.norm.running_mean)
    assert torch.equal(model.norm.running_mean, before)
    with torch.no_grad():
        torch.testing.assert_close(prep.deploy()(x), prep.eval()(x), rtol=1e-7, atol=1e-7)


class _PartlyFrozen(nn.Module):
    """Attention whose packed q/k/v projection is frozen and whose output projection trains
    (a fine-tuning that adapts the output side alone), a recurrent layer with one of its two
    biases (or weights) frozen, a head."""

    def __init__(self, rnn: type[nn.RNNBase]):
        super().__init__()
        self.mha = nn.MultiheadAttention(6, 2, batch_first=True)
        self.rnn = rnn(6, 6, batch_first=True)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        y = x + self.mha(x, x, x, need_weights=False)[0]
        return self.head(self.rnn(y)[0].mean(1))


@pytest.mark.parametrize("rnn, frozen", [
    (nn.LSTM, ("mha.in_proj_weight", "mha.in_proj_bias", "rnn.bias_hh_l0")),
    (nn.GRU, ("mha.in_proj_weight", "rnn.weight_hh_l0", "rnn.bias_ih_l0")),
])
def test_a_frozen_part_of_a_layer_freezes_that_part_alone(rnn, frozen):
    """The twin froze every matrix's weight (bias) of a layer when any of the source's was
    frozen: attention's output projection stayed frozen beside a frozen q/k/v projection, a
    recurrent layer's ``bias_ih`` beside a frozen ``bias_hh``, its ``weight_ih`` beside a
    frozen ``weight_hh``. Exactly the frozen ones stay now; every other trains."""
    model, (x,) = build_seeded(lambda: _PartlyFrozen(rnn), lambda: (torch.randn(3, 5, 6),),
                               torch.float64)
    for name in frozen:
        model.get_parameter(name).requires_grad_(False)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    _train(prep, x, steps=2, lr=0.5)
    moved = {n for n, p in prep.float_model().named_parameters()
             if not torch.equal(p, before[n])}
    assert moved == set(before) - set(frozen)


class _Pruned(nn.Module):
    """Attention and an LSTM pruned by ``torch.nn.utils.prune`` in the tensors beyond a plain
    ``weight`` / ``bias``: the output projection's weight and bias (held by ``out_proj``, a
    module inside the attention), the packed ``in_proj_bias``, the LSTM's ``bias_ih_l0``."""

    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(6, 2, batch_first=True)
        self.lstm = nn.LSTM(6, 6, batch_first=True)
        self.head = nn.Linear(6, 3)
        with torch.no_grad():  # torch starts attention's biases at zero
            self.mha.in_proj_bias.normal_()
            self.mha.out_proj.bias.normal_()
        for module, name in self.PRUNED:
            prune.l1_unstructured(self.get_submodule(module), name, amount=0.5)

    PRUNED = (("mha.out_proj", "weight"), ("mha.out_proj", "bias"), ("mha", "in_proj_bias"),
              ("lstm", "bias_ih_l0"))

    def forward(self, x):
        y = x + self.mha(x, x, x, need_weights=False)[0]
        return self.head(self.lstm(y)[0].mean(1))


def test_pruned_entries_of_attention_and_a_recurrent_layer_stay_zero_in_training():
    """The twin kept the zeros of a pruned ``weight`` / ``bias`` of the layer itself only: an
    attention's pruned ``out_proj`` (a module inside it) trained its weight's and bias's
    pruned entries back, and so did a pruned ``in_proj_bias`` and an LSTM's pruned
    ``bias_ih_l0``. They stay zero now, and the deployed model computes what the twin does."""
    model, (x,) = build_seeded(_Pruned, lambda: (torch.randn(3, 5, 6),), torch.float64)
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    _train(prep, x, steps=2, lr=0.5)
    tuned = prep.float_model()
    for module, name in _Pruned.PRUNED:
        mask = getattr(model.get_submodule(module), f"{name}_mask")
        got = getattr(tuned.get_submodule(module), name)
        assert (got[mask == 0] == 0).all() and (got[mask != 0] != 0).all(), (module, name)
    with torch.no_grad():
        torch.testing.assert_close(prep.deploy()(x), prep(x), rtol=1e-7, atol=1e-7)

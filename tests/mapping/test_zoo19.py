"""A nineteenth zoo (worktree ``zoo19``, after ``test_zoo18.py``): model families at toy size
that the eighteen earlier zoos did not build, chosen for ways weights reach a product that no
zoo used (models in ``zoo19_models.py``). Slices of one weight: a slimmable network (row and
column blocks of a ``Parameter`` at three widths in one forward, ``F.linear(x, w[:m, :m])``)
and, outside the registry, Matryoshka heads (nested column slices of an ``nn.Linear``'s weight).
Weights mixing tasks, heads or slots: cross-stitch units (a 2x2 matrix mixing two towers),
talking-heads attention (head-by-head matrices on the logits and the weights), Soft MoE (slot
logits from a ``Parameter`` times the tokens), a product-key memory (sub-key products, top-k,
``nn.EmbeddingBag`` with ``per_sample_weights``), the Attention Free Transformer (a learned
position bias, exponentiated, on the left of the values). Weights held or drawn otherwise:
NoisyNet's noisy linear layers (``mu + sigma * eps``, ``eps`` a buffer set anew at every
training forward, the means alone in evaluation), an extreme learning machine (a random layer
whose weight and bias are buffers of an ``nn.Linear``), a factorization machine (one factor
matrix times the features and, squared, times their squares). Plain layers in other
arithmetic: Maxout, octave convolutions, a quasi-recurrent network (fo-pooling) and a mixture
of softmaxes (one decoder on K latent contexts). All thirteen in the registry pass the
lossless, ``rram-22nm`` and ``prepare`` checks and every training method as written.

What it found around them, fixed: ``PreparedModel.float_model()`` turned the extreme learning
machine's buffer weight and bias into frozen ``Parameter`` s (torch's ``setattr`` of a
``Parameter`` over a buffer re-registers it), so the float model's ``parameters()`` and
``buffers()`` were not the source's: they stay buffers. Beside the zoo, a frozen decoder: a
transposed convolution's twin holds its bias itself (added after the overlapping outputs are
summed), outside its matrices, and made it trainable whatever the source's, so a frozen
decoder's bias trained: frozen as the source's now; and a gradient hook on that bias was
refused as if split over several matrices: the twin's bias carries it; a bias pruned by
``torch.nn.utils.prune`` trained its pruned entries back from zero in the twin (a pruned weight
kept them): they stay zero. Seen, by design: the weights in products no layer holds (the
slimmable slices, the stitches, the talking heads' mixers, Soft MoE's ``phi``, the sub-keys,
AFT's position bias, the noisy means, the factor matrix) are listed digital by name with the
way out; a slice of a mapped ``nn.Linear``'s weight taken in
the forward (Matryoshka) is refused naming the layer and the way out (exclude; an
``AttributeError``, as every read of a mapped layer's weight, since ``hasattr`` relies on it),
and excluded it trains and deploys. Seen, left: a NoisyNet layer that resamples its noise
*in place* (``eps.copy_``) fails a loss taking two training forwards before one backward
(BitAug's) in torch itself, the first graph's noise overwritten: the model sets it anew; a
Linear whose weight is a ``Parameter`` made from a view of a larger one (tied by storage)
trains apart from it in the twin, as torch's own ``deepcopy`` and ``.to(dtype)`` untie it; an
expert no calibration input reaches is refused naming it (``saw no calibration data``), and one
reached in calibration runs later on zero rows; the twin's first-layer gradient can differ
from float where a quantized activation lands just above its calibrated range (LSQ's clip:
the gradient goes to the scale), as DeepFM's deep path shows on the lossless chip."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import cimsim
from cimsim.train import prepare

from .conftest import build_seeded, lossless_chip
from .test_zoo5 import _quiet, _rel
from .test_zoo17 import _train
from .zoo19_models import (
    QRNN,
    AFTFull,
    CrossStitch,
    DeepFM,
    ExtremeLearningMachine,
    Matryoshka,
    Maxout,
    MixtureOfSoftmaxes,
    NoisyDQN,
    OctaveConvNet,
    ProductKeyMemory,
    Slimmable,
    SoftMoE,
    TalkingHeads,
)
from .zoo_tests import zoo_deploy_tests

ZOO19 = {
    "slimmable": (Slimmable, lambda: (torch.randn(3, 6),)),
    "cross-stitch": (CrossStitch, lambda: (torch.randn(3, 6),)),
    "talking-heads": (TalkingHeads, lambda: (torch.randn(3, 5, 8),)),
    "soft-moe": (SoftMoE, lambda: (torch.randn(3, 5, 6),)),
    "product-key": (ProductKeyMemory, lambda: (torch.randn(3, 6),)),
    "aft-full": (AFTFull, lambda: (torch.randn(3, 6, 5),)),
    "noisy-dqn": (NoisyDQN, lambda: (torch.randn(3, 6),)),
    "deepfm": (DeepFM, lambda: (torch.randn(3, 6),)),
    "maxout": (Maxout, lambda: (torch.randn(3, 6),)),
    "octave": (OctaveConvNet, lambda: (torch.randn(3, 3, 8, 8),)),
    "qrnn": (QRNN, lambda: (torch.randn(3, 6, 3),)),
    "mixture-of-softmaxes": (MixtureOfSoftmaxes, lambda: (torch.randn(3, 6),)),
    "extreme-learning-machine": (ExtremeLearningMachine, lambda: (torch.randn(3, 6),)),
}

# 2-D parameters in no matrix product in evaluation: the noise scales (used in training only)
_NOT_MATRICES = {"noisy-dqn": ("value.sigma_w", "adv.sigma_w")}
_DIGITAL = {
    "slimmable": {"w1", "w2"},
    "cross-stitch": {"stitch.0", "stitch.1"},
    "talking-heads": {"model", "pre", "post"},
    "soft-moe": {"model", "phi"},
    "product-key": {"keys1", "keys2", "values"},
    "aft-full": {"w"},
    "noisy-dqn": {"adv.mu_w", "value.mu_w"},
    "deepfm": {"V"},
}


def _build(name: str, dtype=torch.float32):
    return build_seeded(*ZOO19[name], dtype)


# the deploy (lossless, rram-22nm) and prepare tests of every model
(test_lossless_deploy_is_the_quantized_model_and_near_float,
 test_rram_deploy_runs_reports_and_accounts_for_every_matrix,
 test_prepare_steps_and_the_twin_deploys_to_what_it_computes) = zoo_deploy_tests(
    ZOO19, _build, _DIGITAL, not_matrices=_NOT_MATRICES)


# ---------------------------------------------------------------------------------------------
# what it found
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_a_slice_of_a_mapped_layers_weight_is_refused_and_excluded_it_runs(run):
    """Matryoshka heads classify with the leading columns of one ``nn.Linear``'s weight
    (``F.linear(z[:, :m], head.weight[:, :m])``): a product the programmed arrays cannot run
    (a slice of a layer's columns), so deploy and prepare refuse it naming the layer and the
    way out (exclude); excluded, the head runs in float and is listed, the encoder mapped."""
    dtype = torch.float32 if run is cimsim.deploy else torch.float64
    model, (x,) = build_seeded(Matryoshka, lambda: (torch.randn(3, 6),), dtype)
    with pytest.raises(AttributeError, match=r"^head: the model reads \.weight of a mapped "
                                             r"layer.*exclude the layer"):
        _quiet(run, model, lossless_chip("channel"), x)
    out = _quiet(run, model, lossless_chip("channel"), x, exclude=["head"])
    assert {d[0] for d in out.digital} == {"head", "model"}
    if run is prepare:
        _train(out, x, steps=1, lr=0.1)
        out = out.deploy()
    with torch.no_grad():
        got, want = out(x), model(x)
    assert torch.isfinite(got).all() and (run is prepare or _rel(got, want) < 0.03)


def test_a_weight_held_as_a_buffer_stays_a_buffer_in_the_float_model():
    """An extreme learning machine holds its random layer's weight and bias as buffers of an
    ``nn.Linear``: mapped, never trained. ``PreparedModel.float_model()`` set them back as
    (frozen) ``Parameter`` s, so its ``parameters()`` held two more tensors than the source's
    and its ``buffers()`` two fewer (an optimiser over ``parameters()``, EMA over buffers, a
    parameter count all saw another model). They stay buffers, with the values deployed."""
    model, (x,) = _build("extreme-learning-machine", torch.float64)
    before = model.hidden.weight.clone()
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    assert "hidden" in prep.twin_layers
    _train(prep, x, steps=2, lr=0.5)
    tuned = prep.float_model()
    assert [n for n, _ in tuned.named_parameters()] == ["readout.weight", "readout.bias"]
    assert [n for n, _ in tuned.named_buffers()] == ["hidden.weight", "hidden.bias"]
    assert torch.equal(tuned.hidden.weight, before)
    assert not torch.equal(tuned.readout.weight, model.readout.weight)


class _FrozenDecoder(nn.Module):
    """A trained encoder before a frozen upsampling decoder (a latent model's pretrained
    decoder kept fixed): a transposed convolution whose weight and bias take no gradient, or
    (``hooked``) whose bias's first channel a gradient hook freezes."""

    def __init__(self, hooked: bool = False):
        super().__init__()
        self.enc = nn.Conv2d(3, 4, 3, padding=1, stride=2)
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)
        if hooked:
            self.register_buffer("keep", torch.tensor([0.0, 1.0]))
            self.up.bias.register_hook(lambda g: g * self.keep)
        else:
            self.up.requires_grad_(False)

    def forward(self, x):
        return self.up(torch.relu(self.enc(x)))


def test_a_frozen_transposed_convolution_keeps_its_bias_frozen():
    """A transposed convolution's twin holds its bias itself (added after the overlapping
    outputs are summed), not in its matrices' twins, and made it a trainable ``Parameter``
    whatever the source's: a frozen decoder's bias trained with the encoder (its weight stayed
    frozen). It is frozen as in the source now, in the twin and in ``float_model()``."""
    model, (x,) = build_seeded(_FrozenDecoder, lambda: (torch.randn(3, 3, 8, 8),), torch.float64)
    before = model.up.bias.clone()
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    assert not prep.model.up.bias.requires_grad
    _train(prep, x, steps=2, lr=0.5)
    tuned = prep.float_model()
    assert torch.equal(tuned.up.bias, before) and not tuned.up.bias.requires_grad
    assert not torch.equal(tuned.enc.weight, model.enc.weight)


def test_a_gradient_hook_on_a_transposed_convolutions_bias_holds_in_training():
    """The transposed convolution's twin holds its bias whole (outside its matrices), yet a
    gradient hook on it was refused as if split over several matrices ("split over several
    matrices here ... exclude the layer"): the twin's bias carries it now, the hooked channel
    stays, the other trains, in the twin and in ``float_model()``."""
    model, (x,) = build_seeded(lambda: _FrozenDecoder(hooked=True),
                               lambda: (torch.randn(3, 3, 8, 8),), torch.float64)
    before = model.up.bias.clone()
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    _train(prep, x, steps=2, lr=0.5)
    tuned = prep.float_model()
    assert ((tuned.up.bias - before).abs() > 0).tolist() == [False, True]
    tuned(x).square().mean().backward()
    assert tuned.up.bias.grad[0] == 0 and tuned.up.bias.grad[1] != 0


class _PrunedBias(nn.Module):
    """A layer whose bias ``torch.nn.utils.prune`` prunes (torch's pruning tutorial prunes a
    convolution's bias by L1 norm), before a Linear head."""

    def __init__(self, kind: str):
        super().__init__()
        self.layer = {"linear": nn.Linear(4, 4),
                      "conv-grouped": nn.Conv2d(4, 4, 3, padding=1, groups=2),
                      "conv-transposed": nn.ConvTranspose2d(4, 4, 2, stride=2)}[kind]
        self.head = nn.Linear(4, 2)
        prune.custom_from_mask(self.layer, "bias", torch.tensor([0.0, 1.0, 0.0, 1.0]))

    def forward(self, x):
        y = torch.relu(self.layer(x))
        return self.head(y if y.dim() == 2 else y.mean((2, 3)))


@pytest.mark.parametrize("kind", ["linear", "conv-grouped", "conv-transposed"])
def test_a_pruned_bias_keeps_its_zeros_in_training(kind):
    """The twin kept a pruned weight's zeros (``keep_zeros``) but not a pruned bias's: its copy
    of the bias held the zeros and trained them, so the pruned entries came back after one
    step. They stay zero now, under Adam with weight decay, in
    every layer kind that holds a bias (its matrices' biases, a transposed convolution's own),
    and the deployed model computes what the twin does."""
    shape = (3, 4) if kind == "linear" else (3, 4, 4, 4)
    model, (x,) = build_seeded(lambda: _PrunedBias(kind), lambda: (torch.randn(*shape),),
                               torch.float64)
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    opt = torch.optim.Adam([p for p in prep.parameters() if p.requires_grad], lr=0.1,
                           weight_decay=0.1)
    prep.train()
    for _ in range(2):
        opt.zero_grad()
        prep(x).square().mean().backward()
        opt.step()
    prep.eval()
    bias = prep.float_model().layer.bias
    assert (bias == 0).tolist() == [True, False, True, False]
    with torch.no_grad():
        torch.testing.assert_close(prep.deploy()(x), prep(x), rtol=1e-7, atol=1e-7)

"""A nineteenth zoo (worktree ``zoo19``, after ``test_zoo18.py``): model families at toy size
that the eighteen earlier zoos did not build, chosen for ways weights reach a product that no
zoo used (models in ``zoo19_models.py``). Slices of one weight: a slimmable network (row and
column blocks of a ``Parameter`` at three widths in one forward, ``F.linear(x, w[:m, :m])``)
and, outside the registry, Matryoshka heads (nested column slices of an ``nn.Linear``'s weight).
Weights mixing tasks, heads or slots: cross-stitch units (a 2x2 matrix mixing two towers),
talking-heads attention (head-by-head matrices on the logits and the weights), Soft MoE (slot
logits from a ``Parameter`` times the tokens), a product-key memory (sub-key products, top-k,
``nn.EmbeddingBag`` with ``per_sample_weights``), the Attention Free Transformer (a learned
position bias, exponentiated, on the left of the values). Noise and other arithmetic:
NoisyNet's noisy linear layers (``mu + sigma * eps``, ``eps`` a buffer resampled in training,
the means alone in evaluation), a factorization machine (one factor matrix times the features
and, squared, times their squares), Maxout, octave convolutions, a quasi-recurrent network and
a mixture of softmaxes. All thirteen in the registry pass the lossless, ``rram-22nm`` and
``prepare`` checks and every training method as written.

What it found around them: the weights in products no layer holds (the slimmable slices,
the stitches, the talking heads' mixers, Soft MoE's ``phi``, the sub-keys, AFT's position bias,
the noisy means, the factor matrix) are listed digital by name, with the way out; a slice of an
``nn.Linear``'s weight taken in the forward (Matryoshka) is refused naming the layer and the way
out (exclude), and excluded it trains and deploys as written."""

from __future__ import annotations

import pytest
import torch

import cimsim
from cimsim.errors import MappingError
from cimsim.train import prepare

from .conftest import build_seeded, lossless_chip
from .test_zoo5 import _quiet, _rel
from .test_zoo17 import _train
from .zoo19_models import (
    QRNN,
    AFTFull,
    CrossStitch,
    DeepFM,
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

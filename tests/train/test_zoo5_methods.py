"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation, BS-KMQ) on the fifth
zoo (``tests/mapping/test_zoo5.py``: language, generative, sequence, point-cloud and
recommender families): each takes one optimiser step and deploys to what its twin computes, as
``test_methods_new_models.py`` holds them on the first zoo (its recipes are reused, not
copied)."""

from __future__ import annotations

import pytest
import torch

import cimsim
from cimsim.errors import ConfigError
from cimsim.train import distill, prepare
from cimsim.train.bskmq import prepare_bskmq

from ..mapping.test_zoo5 import ZOO5, _build
from .test_methods_new_models import METHODS, _bskmq_chip, _quiet, check_bskmq, check_method


@pytest.mark.parametrize("method", [m for m in METHODS if m != "distill"])
@pytest.mark.parametrize("name", list(ZOO5))
def test_method_steps_and_deploys_to_what_the_twin_computes(name, method):
    check_method(*_build(name, torch.float64), 0, method)


@pytest.mark.parametrize("name", ["gpt2", "t5", "pointnet", "perceiver", "mamba", "hypernet"])
def test_distill_from_the_float_model_moves_the_twin(name):
    """Token inputs, a cross-attention's latents, a scan, weights computed from the input."""
    model, args = _build(name, torch.float64)
    prep = _quiet(prepare, model, cimsim.load_chip("ideal"), args)
    before = [p.detach().clone() for p in prep.parameters()]
    distill(prep, model, args[0], epochs=1, batch_size=2, progress=False)
    assert any(not torch.equal(p, b) for p, b in zip(prep.parameters(), before, strict=True))


@pytest.mark.parametrize("name", ["pointnet", "nerf", "dcn"])
def test_bskmq_steps_refits_and_deploys_where_a_relu_follows_a_layer(name):
    """PointNet's Conv1d -> BN -> ReLU, the NeRF's and the DCN's deep ReLU MLPs."""
    _quiet(check_bskmq, *_build(name, torch.float64), 0)  # the DCN's embeddings: digital


@pytest.mark.parametrize("name", ["t5", "mamba", "hypernet"])
def test_bskmq_without_a_fusable_relu_names_the_reason(name):
    """Gated-GELU and SiLU gating are no ReLU the fused ADC can be; the hypernetwork's
    F.relu is one, but its per-sample loop (range(x.size(0))) does not trace with torch.fx,
    which the message names as where the ReLUs are found."""
    model, args = _build(name, torch.float64)
    with pytest.raises(ConfigError, match=r"chip is set for it.*mapped layers: \w"):
        _quiet(prepare_bskmq, model, _bskmq_chip(), args)

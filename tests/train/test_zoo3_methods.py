"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation, BS-KMQ) on the third
zoo (``tests/mapping/test_zoo3.py``): each takes one optimiser step and deploys to what its
twin computes, as ``test_methods_new_models.py`` holds them on the first zoo (its recipes are
reused, not copied)."""

from __future__ import annotations

import pytest
import torch

import cimsim
from cimsim.errors import ConfigError
from cimsim.train import distill, prepare
from cimsim.train.bskmq import prepare_bskmq

from ..mapping.test_zoo3 import ZOO3, _build
from .test_methods_new_models import (
    METHODS,
    _bskmq_chip,
    _quiet,
    _step,
    check_bskmq,
    check_method,
)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "distill"])
@pytest.mark.parametrize("name", list(ZOO3))
def test_method_steps_and_deploys_to_what_the_twin_computes(name, method):
    check_method(*_build(name, torch.float64), method)


@pytest.mark.parametrize("name", ["llama", "vit", "functional"])
def test_distill_from_the_float_model_moves_the_twin(name):
    """Tokens (an integer input), patches, and a model with weights computing in float."""
    model, args, bd = _build(name, torch.float64)
    prep = _quiet(prepare, model, cimsim.load_chip("ideal"), args, batch_dim=bd)
    before = [p.detach().clone() for p in prep.parameters()]
    distill(prep, model, args[0], epochs=1, batch_size=2, progress=False)
    assert any(not torch.equal(p, b) for p, b in zip(prep.parameters(), before, strict=True))


@pytest.mark.parametrize("name", ["unfold", "tcn"])
def test_bskmq_steps_refits_and_deploys_where_a_relu_follows_a_layer(name):
    """The Unfold layer's Linear and the TCN's depthwise convolutions feed ReLUs."""
    check_bskmq(*_build(name, torch.float64))


@pytest.mark.parametrize("name", ["llama", "mixer"])
def test_bskmq_without_a_fusable_relu_names_the_reason(name):
    """SwiGLU's SiLU and the Mixer's GELU are no ReLU the fused ADC can be."""
    model, args, bd = _build(name, torch.float64)
    with pytest.raises(ConfigError, match=r"chip is set for it.*mapped layers: \w"):
        _quiet(prepare_bskmq, model, _bskmq_chip(), args, batch_dim=bd)


def test_a_method_leaves_a_frozen_backbone_frozen():
    """PIM-QAT on the ViT with its patch embedding and block frozen: only the head's twin
    (and the chip's scales) train, the backbone's float weights come back unchanged."""
    model, args, bd = _build("vit", torch.float64)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("head."))
    check_method(model, args, bd, "pim-qat")  # steps (the head moves) and deploys
    prep = _quiet(prepare, model, cimsim.load_chip("ideal"), args, batch_dim=bd)
    _step(prep, args)
    float_model = prep.float_model()
    for name, p in model.named_parameters():
        assert torch.equal(float_model.get_parameter(name), p) != name.startswith("head."), name

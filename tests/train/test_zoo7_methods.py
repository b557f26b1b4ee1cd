"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation, BS-KMQ) on the seventh
zoo (``tests/mapping/test_zoo7.py``: contrastive, generative, flow, ODE, capsule, KAN / SIREN,
hypercomplex, TabNet and ALiBi / chunked-attention models): each takes one optimiser step and
deploys to what its twin computes, as ``test_methods_new_models.py`` holds them on the first
zoo (its recipes are reused, not copied). The flows' (z, logdet) tuples are flattened by a
wrapper (the recipes' losses take one tensor); the VAE samples in its forward, so it runs under
a wrapper drawing its noise from a fixed seed (what a user comparing two runs does)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import ConfigError, MappingError
from cimsim.train import distill, prepare
from cimsim.train.bskmq import prepare_bskmq

from ..mapping.test_zoo7 import ZOO7
from ..mapping.test_zoo7 import _build as _build_zoo
from .test_methods_new_models import METHODS, _bskmq_chip, _quiet, check_bskmq, check_method
from .test_zoo6_methods import Flat  # a tuple of outputs flattened to one tensor


class Seeded(nn.Module):
    """The VAE with its ``randn_like`` drawn from seed 0 at every call (no ``fork_rng``: its
    loop over devices does not trace, nor ``*args``, and BS-KMQ finds its ReLUs by torch.fx)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        torch.manual_seed(0)
        return self.model(x)


class WithEmbeddings(nn.Module):
    """The Siamese similarity and both embeddings: on PIM-QAT's 4-bit ADC the three pairs'
    embeddings come out parallel (cosine 1.0, the recipes' target), where the cosine's gradient
    is zero and no step would move a weight."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, a, b):
        enc = self.model.encoder
        return torch.cat([self.model(a, b), enc(a).flatten(), enc(b).flatten()])


def _build(name: str, dtype=torch.float64):
    model, args = _build_zoo(name, dtype)
    if name in ("realnvp", "glow"):
        return Flat(model), args
    if name == "siamese":
        return WithEmbeddings(model), args
    return (Seeded(model) if name == "vae" else model), args


@pytest.mark.parametrize("method", [m for m in METHODS if m != "distill"])
@pytest.mark.parametrize("name", list(ZOO7))
def test_method_steps_and_deploys_to_what_the_twin_computes(name, method):
    check_method(*_build(name), 0, method)


@pytest.mark.parametrize("name", ["vae", "realnvp", "neural-ode", "capsnet", "kan", "alibi"])
def test_distill_from_the_float_model_moves_the_twin(name):
    model, args = _build(name)
    prep = _quiet(prepare, model, cimsim.load_chip("ideal"), args)
    before = [p.detach().clone() for p in prep.parameters()]
    distill(prep, model, args[0], epochs=1, batch_size=2, progress=False)
    assert any(not torch.equal(p, b) for p, b in zip(prep.parameters(), before, strict=True))


@pytest.mark.parametrize("name", ["clip", "siamese"])
def test_distill_of_a_two_input_model_names_the_inputs_it_cannot_pass(name):
    model, args = _build(name)
    prep = _quiet(prepare, model, cimsim.load_chip("ideal"), args)
    with pytest.raises(ConfigError, match="needs 2 inputs "):
        distill(prep, model, args[0], epochs=1, batch_size=2, progress=False)


@pytest.mark.parametrize("name", ["siamese", "vae"])
def test_bskmq_steps_refits_and_deploys_where_a_relu_follows_a_layer(name):
    _quiet(check_bskmq, *_build(name), 0)


@pytest.mark.parametrize("name", ["siren", "kan", "neural-ode", "tabnet"])
def test_bskmq_without_a_fusable_relu_names_the_reason(name):
    """sin, SiLU, tanh are no ReLU the fused ADC can be, nor TabNet's ReLU of a GLU's half."""
    model, args = _build(name)
    with pytest.raises(ConfigError, match=r"chip is set for it.*mapped layers: \w"):
        _quiet(prepare_bskmq, model, _bskmq_chip(), args)


def test_bskmq_on_a_layer_too_deep_for_one_conversion_names_it():
    """CapsNet's primary-capsule conv (8 x 3 x 3 = 72 rows) does not fit the fused chip's 64
    rows in one conversion: a MappingError naming the layer and what would fit."""
    model, args = _build("capsnet")
    with pytest.raises(MappingError, match="primary: adc.placement = 'layer_output' needs one "
                                           "conversion per output.*2 row group"):
        _quiet(check_bskmq, model, args, 0)

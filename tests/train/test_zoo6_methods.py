"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation, BS-KMQ) on the sixth
zoo (``tests/mapping/test_zoo6.py``: speech, graphs, detection, segmentation, recommenders,
spiking nets, shared and parametrized layers): each takes one optimiser step and deploys to
what its twin computes, as ``test_methods_new_models.py`` holds them on the first zoo (its
recipes are reused, not copied). The detector's dict of lists is flattened by a wrapper (the
recipes' losses take one tensor)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import ConfigError
from cimsim.train import distill, prepare
from cimsim.train.bskmq import prepare_bskmq

from ..mapping.test_zoo6 import ZOO6, _flat
from ..mapping.test_zoo6 import _build as _build_zoo
from .test_methods_new_models import METHODS, _bskmq_chip, _quiet, check_bskmq, check_method


class Flat(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *args):
        return _flat(self.model(*args))


def _build(name: str, dtype=torch.float64):
    model, args = _build_zoo(name, dtype)
    return (Flat(model) if name == "retina-fpn" else model), args


@pytest.mark.parametrize("method", [m for m in METHODS if m != "distill"])
@pytest.mark.parametrize("name", list(ZOO6))
def test_method_steps_and_deploys_to_what_the_twin_computes(name, method):
    check_method(*_build(name), 0, method)


@pytest.mark.parametrize("name", ["conformer", "segformer", "snn", "albert"])
def test_distill_from_the_float_model_moves_the_twin(name):
    model, args = _build(name)
    prep = _quiet(prepare, model, cimsim.load_chip("ideal"), args)
    before = [p.detach().clone() for p in prep.parameters()]
    distill(prep, model, args[0], epochs=1, batch_size=2, progress=False)
    assert any(not torch.equal(p, b) for p, b in zip(prep.parameters(), before, strict=True))


def test_distill_of_a_graph_names_its_inputs_and_warns_of_its_node_indices():
    """A GNN needs its edge_index too: one tensor is refused naming both (not a TypeError
    from inside the first step); the tuple of both is taken, with a warning that the
    edges, passed whole, index the nodes distill shuffles and cuts."""
    model, args = _build("gnn")
    prep = _quiet(prepare, model, cimsim.load_chip("ideal"), args)
    with pytest.raises(ConfigError, match=r"needs 2 inputs \(x, edge_index\); data gives 1"):
        distill(prep, model, args[0], epochs=1, batch_size=2, progress=False)
    with pytest.warns(UserWarning, match=r"'edge_index' is passed whole.*graph's edges"):
        distill(prep, model, tuple(args), epochs=1, batch_size=len(args[0]), progress=False)


@pytest.mark.parametrize("name", ["gnn", "dlrm", "early-exit"])
def test_bskmq_steps_refits_and_deploys_where_a_relu_follows_a_layer(name):
    _quiet(check_bskmq, *_build(name), 0)


@pytest.mark.parametrize("name", ["conformer", "segformer"])
def test_bskmq_without_a_fusable_relu_names_the_reason(name):
    """GELU / SiLU / GLU are no ReLU the fused ADC can be."""
    model, args = _build(name)
    with pytest.raises(ConfigError, match=r"chip is set for it.*mapped layers: \w"):
        _quiet(prepare_bskmq, model, _bskmq_chip(), args)

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


def test_distill_of_bags_with_offsets_is_refused_and_the_2d_form_trains():
    """An EmbeddingBag's flat indices and offsets cannot be cut into samples: distill passed
    them whole beside the shuffled dense features (each sample trained against another's
    bags, without a word), or cut both where their lengths equalled the sample count
    (torch's 'offsets[0] has to be 0'). Refused, naming the bag and the 2-D form, decided
    from what the bag receives: 2-D bags beside an integer table passed whole train."""
    model, args = _build("dlrm")
    prep = _quiet(prepare, model, cimsim.load_chip("ideal"), args)
    with pytest.raises(ConfigError, match=r"nn.EmbeddingBag 'embs.0' reads flat indices with "
                                          r"offsets.*2-D \(n, bag size\)"):
        distill(prep, model, tuple(args), epochs=1, batch_size=8, progress=False)

    class Bags(nn.Module):
        def __init__(self):
            super().__init__()
            self.bag, self.fc = nn.EmbeddingBag(20, 6, mode="sum"), nn.Linear(10, 2)

        def forward(self, dense, idx, extra):  # 2-D: idx (n, 3) rows, extra a shared table
            return self.fc(torch.cat([dense, self.bag(extra[idx])], 1))

    class FlatBags(Bags):
        def forward(self, dense, idx, offsets):  # one index per bag: n indices, n offsets
            return self.fc(torch.cat([dense, self.bag(idx, offsets)], 1))

    torch.manual_seed(0)
    dense = torch.randn(8, 4, dtype=torch.float64)
    flat = FlatBags().double().eval()
    data = (dense, torch.randint(0, 20, (8,)), torch.arange(8))
    prep = _quiet(prepare, flat, cimsim.load_chip("ideal"), data)
    with pytest.raises(ConfigError, match=r"'bag' reads flat indices with offsets"):
        distill(prep, flat, data, epochs=1, batch_size=4, progress=False)
    two_d = Bags().double().eval()
    remap = torch.randperm(20)  # an integer table passed whole, no offset
    data = (dense, torch.randint(0, 20, (8, 3)), remap)
    prep = _quiet(prepare, two_d, cimsim.load_chip("ideal"), data)
    before = [p.detach().clone() for p in prep.parameters()]
    distill(prep, two_d, data, epochs=1, batch_size=4, progress=False)
    assert any(not torch.equal(p, b) for p, b in zip(prep.parameters(), before, strict=True))

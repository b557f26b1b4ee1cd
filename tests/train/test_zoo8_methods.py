"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation, BS-KMQ) on the eighth
zoo (``tests/mapping/test_zoo8.py``: adapters, pruning, masked and input-dependent weights,
long-sequence models, dense-prediction heads, torch's own layers): each takes one optimiser
step and deploys to what its twin computes, as ``test_methods_new_models.py`` holds them on the
first zoo (its recipes are reused, not copied). Outputs that are lists, NamedTuples or
dataclasses are flattened by a wrapper (the recipes' losses take one tensor). One method per
model in the default run (each method on several models), every pair with ``-m slow``."""

from __future__ import annotations

import pytest
import torch

import cimsim
from cimsim.errors import ConfigError, MappingError
from cimsim.train import distill, prepare
from cimsim.train.bskmq import prepare_bskmq

from ..mapping.test_zoo8 import ZOO8, Flat
from ..mapping.test_zoo8 import _build as _build_zoo
from .test_methods_new_models import METHODS, _bskmq_chip, _quiet, check_bskmq, check_method

_METHODS = [m for m in METHODS if m != "distill"]
_FLAT = ("yolo", "namedtuple", "dataclass")


def _build(name: str, dtype=torch.float64):
    model, args = _build_zoo(name, dtype)
    if name == "pruned":  # the recipes copy the model first: its pruned weights recomputed
        with torch.no_grad():  # under no_grad (right after pruning: tests/mapping/test_zoo8.py)
            model(*args)
    return (Flat(model) if name in _FLAT else model), args


# the default run: every model once, every method on three or more models
_FAST = [(name, _METHODS[i % len(_METHODS)]) for i, name in enumerate(ZOO8)]


@pytest.mark.parametrize("name, method", _FAST)
def test_method_steps_and_deploys_to_what_the_twin_computes(name, method):
    check_method(*_build(name), 0, method)


@pytest.mark.slow
@pytest.mark.parametrize("method", _METHODS)
@pytest.mark.parametrize("name", list(ZOO8))
def test_every_method_on_every_model(name, method):
    if (name, method) in _FAST:
        pytest.skip("in the default run")
    check_method(*_build(name), 0, method)


@pytest.mark.parametrize("name", ["lora", "pruned", "stylegan", "rwkv", "fno", "wavenet"])
def test_distill_from_the_float_model_moves_the_twin(name):
    model, args = _build(name)
    prep = _quiet(prepare, model, cimsim.load_chip("ideal"), args)
    before = [p.detach().clone() for p in prep.parameters()]
    if name == "stylegan":  # two inputs: named, as for the other zoos' two-input models
        with pytest.raises(ConfigError, match="needs 2: "):
            distill(prep, model, args[0], epochs=1, batch_size=2, progress=False)
        return
    distill(prep, model, args[0], epochs=1, batch_size=2, progress=False)
    assert any(not torch.equal(p, b) for p, b in zip(prep.parameters(), before, strict=True))


@pytest.mark.parametrize("name", ["pruned", "padded"])
def test_bskmq_steps_refits_and_deploys_where_a_relu_follows_a_layer(name):
    _quiet(check_bskmq, *_build(name), 0)


@pytest.mark.parametrize("name", ["lora", "rwkv"])
def test_bskmq_without_a_fusable_relu_names_the_reason(name):
    """LoRA's MLP has a GELU; RWKV squares a
    ReLU of a token-shifted mix: no ReLU the fused ADC can be."""
    model, args = _build(name)
    with pytest.raises(ConfigError, match=r"chip is set for it.*mapped layers: \w"):
        _quiet(prepare_bskmq, model, _bskmq_chip(), args)


def test_bskmq_on_a_layer_too_deep_for_one_conversion_names_it():
    """The YOLO backbone's third conv (8 x 3 x 3 = 72 rows) does not fit the fused chip's 64
    rows in one conversion: a MappingError naming the layer and what would fit."""
    model, args = _build("yolo")
    with pytest.raises(MappingError, match=r"b3\.0: adc\.placement = 'layer_output' needs one "
                                           r"conversion per output.*2 row group"):
        _quiet(check_bskmq, model, args, 0)

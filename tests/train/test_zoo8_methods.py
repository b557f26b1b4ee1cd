"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation, BS-KMQ) on the eighth
zoo (``tests/mapping/test_zoo8.py``: adapters, pruning, masked and input-dependent weights,
long-sequence models, dense-prediction heads, torch's own layers): each takes one optimiser
step and deploys to what its twin computes, as ``test_methods_new_models.py`` holds them on the
first zoo (its recipes are reused, not copied). Outputs that are lists, NamedTuples or
dataclasses are flattened by a wrapper (the recipes' losses take one tensor). One method per
model in the default run (each method on three or more models), the other pairs with
``-m slow``."""

from __future__ import annotations

import pytest
import torch

from cimsim.errors import ConfigError
from cimsim.train.bskmq import prepare_bskmq

from ..mapping.test_zoo8 import ZOO8
from ..mapping.test_zoo8 import _build as _build_zoo
from .test_methods_new_models import (
    _bskmq_chip,
    _quiet,
    check_bskmq,
    zoo_method_tests,
)
from .test_zoo6_methods import Flat  # outputs flattened to one tensor

_FLAT = ("yolo", "namedtuple", "dataclass")


def _build(name: str, dtype=torch.float64):
    model, args = _build_zoo(name, dtype)
    if name == "pruned":  # the recipes copy the model first: its pruned weights recomputed
        with torch.no_grad():  # under no_grad (right after pruning: tests/mapping/test_zoo8.py)
            model(*args)
    return (Flat(model) if name in _FLAT else model), args


# the default run: every model once, every method on three or more models; distillation
# on the models named
# (two-input models, StyleGAN's here, are refused by name in distillation, as in other zoos)
(test_method_steps_and_deploys_to_what_the_twin_computes,
 test_every_other_method_on_every_model,
 test_distill_from_the_float_model_steps_and_deploys_to_the_twin) = zoo_method_tests(
    ZOO8, _build, ["lora", "pruned", "rwkv", "fno", "wavenet"])


@pytest.mark.parametrize("name", ["pruned", "padded"])
def test_bskmq_steps_refits_and_deploys_where_a_relu_follows_a_layer(name):
    _quiet(check_bskmq, *_build(name), 0)


@pytest.mark.parametrize("name", ["lora", "rwkv"])
def test_bskmq_without_a_fusable_relu_names_the_reason(name):
    """LoRA's MLP has a GELU, RWKV a squared ReLU of a token-shifted mix: no ReLU the fused ADC
    can be."""
    model, args = _build(name)
    with pytest.raises(ConfigError, match=r"chip is set for it.*mapped layers: \w"):
        _quiet(prepare_bskmq, model, _bskmq_chip(), args)


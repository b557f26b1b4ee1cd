"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation) on the tenth zoo
(``tests/mapping/test_zoo10.py``), one optimiser step each, deployed to what the twin computes,
with ``test_methods_new_models.py``'s recipes. Outputs (tuples, distributions) flattened by the
zoo's ``Flat``. Every method on every model in the default run (about 5 s in all)."""

from __future__ import annotations

import pytest
import torch

from ..mapping.test_zoo10 import ZOO10, Flat
from ..mapping.test_zoo10 import _build as _build_zoo
from .test_methods_new_models import METHODS, check_method

_METHODS = [m for m in METHODS if m != "distill"]
# autocast: the twin under bfloat16 is not float64-exact (test_zoo10 checks it to 1e-5)
_MODELS = [n for n in ZOO10 if n != "autocast"]


def _build(name: str):
    model, args = _build_zoo(name, torch.float64)
    return Flat(model, name == "sampled-policy"), args


@pytest.mark.parametrize("method", _METHODS)
@pytest.mark.parametrize("name", _MODELS)
def test_method_steps_and_deploys_to_what_the_twin_computes(name, method):
    check_method(*_build(name), 0, method)


@pytest.mark.parametrize("name", ["nbeats", "dueling-dqn", "patchtst"])
def test_distill_from_the_float_model_steps_and_deploys_to_the_twin(name):
    check_method(*_build(name), 0, "distill")

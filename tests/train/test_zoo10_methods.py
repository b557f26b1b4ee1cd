"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation) on the tenth zoo
(``tests/mapping/test_zoo10.py``), one optimiser step each, deployed to what the twin computes,
with ``test_methods_new_models.py``'s recipes. Outputs (tuples, distributions) flattened by the
zoo's ``Flat``. One method per model in the default run, every other pair with ``-m slow``."""

from __future__ import annotations

import pytest
import torch

from ..mapping.test_zoo10 import ZOO10, Flat
from ..mapping.test_zoo10 import _build as _build_zoo
from .test_methods_new_models import METHODS, check_method

_METHODS = [m for m in METHODS if m != "distill"]
# autocast: the twin under bfloat16 is not float64-exact (test_zoo10 checks it to 1e-5)
_MODELS = [n for n in ZOO10 if n != "autocast"]
_FAST = [(name, _METHODS[i % len(_METHODS)]) for i, name in enumerate(_MODELS)]


def _build(name: str):
    model, args = _build_zoo(name, torch.float64)
    return Flat(model, name == "sampled-policy"), args


@pytest.mark.parametrize("name, method", _FAST)
def test_method_steps_and_deploys_to_what_the_twin_computes(name, method):
    check_method(*_build(name), 0, method)


@pytest.mark.slow
@pytest.mark.parametrize("name, method", [(n, m) for n in _MODELS for m in _METHODS
                                          if (n, m) not in _FAST])
def test_every_other_method_on_every_model(name, method):
    check_method(*_build(name), 0, method)


@pytest.mark.parametrize("name", ["nbeats", "dueling-dqn", "patchtst"])
def test_distill_from_the_float_model_steps_and_deploys_to_the_twin(name):
    check_method(*_build(name), 0, "distill")

"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation) on the eleventh zoo
(``tests/mapping/test_zoo11.py``), one optimiser step each, deployed to what the twin computes,
with ``test_methods_new_models.py``'s recipes. Outputs flattened and the Gumbel draw seeded by
the zoo's ``Flat``. Every model once in the default run, the methods in turn (each on several
models); the other pairs with ``-m slow``."""

from __future__ import annotations

import pytest
import torch

from ..mapping.test_zoo11 import _SAMPLED, ZOO11, Flat
from ..mapping.test_zoo11 import _build as _build_zoo
from .test_methods_new_models import check_method, method_pairs

_FAST, _SLOW = method_pairs(ZOO11)


def _build(name: str):
    model, args = _build_zoo(name, torch.float64)
    return Flat(model, name in _SAMPLED), args


@pytest.mark.parametrize("name, method", _FAST)
def test_method_steps_and_deploys_to_what_the_twin_computes(name, method):
    check_method(*_build(name), 0, method)


@pytest.mark.slow
@pytest.mark.parametrize("name, method", _SLOW)
def test_every_other_method_on_every_model(name, method):
    check_method(*_build(name), 0, method)


@pytest.mark.parametrize("name", ["ode-net", "experts", "hyena"])
def test_distill_from_the_float_model_steps_and_deploys_to_the_twin(name):
    check_method(*_build(name), 0, "distill")

"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation) on the eleventh zoo
(``tests/mapping/test_zoo11.py``), one optimiser step each, deployed to what the twin computes,
with ``test_methods_new_models.py``'s recipes. Outputs flattened and the Gumbel draw seeded by
the zoo's ``Flat``. Every model once in the default run, the methods in turn (each on several
models); the other pairs with ``-m slow``."""

from __future__ import annotations

import torch

from ..mapping.test_zoo11 import _SAMPLED, ZOO11, Flat
from ..mapping.test_zoo11 import _build as _build_zoo
from .test_methods_new_models import zoo_method_tests


def _build(name: str):
    model, args = _build_zoo(name, torch.float64)
    return Flat(model, name in _SAMPLED), args


# the default run: every model once, every method on three or more models; distillation
# on the models named
(test_method_steps_and_deploys_to_what_the_twin_computes,
 test_every_other_method_on_every_model,
 test_distill_from_the_float_model_steps_and_deploys_to_the_twin) = zoo_method_tests(
    ZOO11, _build, ["ode-net", "experts", "hyena"])

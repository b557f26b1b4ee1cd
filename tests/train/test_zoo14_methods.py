"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation) on the fourteenth zoo
(``tests/mapping/test_zoo14.py``), one optimiser step each, deployed to what the twin computes,
with ``test_methods_new_models.py``'s recipes. Outputs flattened by the eleventh zoo's ``Flat``
(the ``NamedTuple`` of the ``**kwargs`` model). Every model once in the default run, the
methods in turn (each on several models); the other pairs with ``-m slow``. Distilled by
default: the low-rank parametrization (its two factors train in the twin), the weight algebra
(matrix_exp, inv, matrix_power in float beside a mapped head) and the relu RNN."""

from __future__ import annotations

import torch

from ..mapping.test_zoo11 import Flat
from ..mapping.test_zoo14 import ZOO14
from ..mapping.test_zoo14 import _build as _build_zoo
from .test_methods_new_models import zoo_method_tests


def _build(name: str):
    model, args = _build_zoo(name, torch.float64)
    # the recipes deep-copy the model: the weights torch's hooks recompute (the old weight norm,
    # pruning) are copyable after a forward under no_grad (deploy and prepare copy them anyway)
    with torch.no_grad():
        model(*args)
    return Flat(model), args


(test_method_steps_and_deploys_to_what_the_twin_computes,
 test_every_other_method_on_every_model,
 test_distill_from_the_float_model_steps_and_deploys_to_the_twin) = zoo_method_tests(
    ZOO14, _build, ["low-rank-param", "weight-algebra", "relu-rnn"])

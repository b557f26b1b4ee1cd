"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation) on the seventeenth zoo
(``tests/mapping/test_zoo17.py``), one optimiser step each, deployed to what the twin computes,
with ``test_methods_new_models.py``'s recipes. Every model once in the default run, the methods
in turn (each on several models); the other pairs with ``-m slow``. Distilled by default: MADE
(weights masked by ``torch.nn.utils.prune``), DeBERTa's disentangled attention (a position
table through the attention's own projections) and MaxViT's block and grid attention.

The recipes copy the model with ``copy.deepcopy``, which torch refuses for a weight its hook
computed with gradient (``prune``, the old ``weight_norm``: from the hook's creation to the
first forward under ``no_grad``); ``cimsim``'s own copies handle it (``copy_model``), so each
model here is run once under ``no_grad`` first, as an evaluated model has been."""

from __future__ import annotations

import torch

from ..mapping.test_zoo17 import ZOO17
from ..mapping.test_zoo17 import _build as _build_zoo
from .test_methods_new_models import flat_float64, zoo_method_tests


def _evaluated(name: str, dtype=torch.float32):
    model, args = _build_zoo(name, dtype)
    with torch.no_grad():
        model(*args)
    return model, args


_build = flat_float64(_evaluated)


(test_method_steps_and_deploys_to_what_the_twin_computes,
 test_every_other_method_on_every_model,
 test_distill_from_the_float_model_steps_and_deploys_to_the_twin) = zoo_method_tests(
    ZOO17, _build, ["made", "deberta", "maxvit"])

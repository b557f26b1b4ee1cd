"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation) on the fifteenth zoo
(``tests/mapping/test_zoo15.py``), one optimiser step each, deployed to what the twin computes,
with ``test_methods_new_models.py``'s recipes. Every model once in the default run, the methods
in turn (each on several models); the other pairs with ``-m slow``. Distilled by default: the
Swin blocks (a bias table gathered beside mapped projections), the mixture of experts (a
data-dependent route) and the Llama block (an embedding, GQA)."""

from __future__ import annotations

from ..mapping.test_zoo15 import ZOO15
from ..mapping.test_zoo15 import _build as _build_zoo
from .test_methods_new_models import flat_float64, zoo_method_tests

_build = flat_float64(_build_zoo)


(test_method_steps_and_deploys_to_what_the_twin_computes,
 test_every_other_method_on_every_model,
 test_distill_from_the_float_model_steps_and_deploys_to_the_twin) = zoo_method_tests(
    ZOO15, _build, ["swin-shifted", "moe-scatter", "llama-gqa-fused"])

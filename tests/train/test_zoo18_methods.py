"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation) on the eighteenth zoo
(``tests/mapping/test_zoo18.py``), one optimiser step each, deployed to what the twin computes,
with ``test_methods_new_models.py``'s recipes. Every model once in the default run, the methods
in turn (each on several models); the other pairs with ``-m slow``. Distilled by default: the
RevNet (its blocks recomputed in a custom ``autograd.Function``'s backward), the beam search
(a batch widened by the beams, a growing cache) and the Universal Transformer (a
data-dependent number of calls of its shared layer)."""

from __future__ import annotations

from ..mapping.test_zoo18 import ZOO18, _build
from .test_methods_new_models import flat_float64, zoo_method_tests

(test_method_steps_and_deploys_to_what_the_twin_computes,
 test_every_other_method_on_every_model,
 test_distill_from_the_float_model_steps_and_deploys_to_the_twin) = zoo_method_tests(
    ZOO18, flat_float64(_build), ["revnet", "beam-search", "universal-act"])

"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation) on the twenty-first
zoo (``tests/mapping/test_zoo21.py``), one optimiser step each, deployed to what the twin
computes, with ``test_methods_new_models.py``'s recipes. Every model once in the default run,
the methods in turn (each on several models); the other pairs with ``-m slow``. Distilled by
default: the layer patched on the instance (kept digital), feedback alignment (a custom
``autograd.Function``'s backward) and differentiable plasticity (a Hebbian trace)."""

from __future__ import annotations

from ..mapping.test_zoo21 import ZOO21, _build
from .test_methods_new_models import flat_float64, zoo_method_tests

(test_method_steps_and_deploys_to_what_the_twin_computes,
 test_every_other_method_on_every_model,
 test_distill_from_the_float_model_steps_and_deploys_to_the_twin) = zoo_method_tests(
    ZOO21, flat_float64(_build), ["instance-patched", "feedback-alignment", "plastic"])

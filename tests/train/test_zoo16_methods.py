"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation) on the sixteenth zoo
(``tests/mapping/test_zoo16.py``), one optimiser step each, deployed to what the twin computes,
with ``test_methods_new_models.py``'s recipes. Every model once in the default run, the methods
in turn (each on several models); the other pairs with ``-m slow``. Distilled by default: the
Mamba-2 block (a chunked scan of activation products around mapped projections), the TTT layer
(a weight matrix updated in the forward from a learned ``W0``) and the hash grid (embedding
look-ups interpolated)."""

from __future__ import annotations

from ..mapping.test_zoo16 import ZOO16
from ..mapping.test_zoo16 import _build as _build_zoo
from .test_methods_new_models import flat_float64, zoo_method_tests

_build = flat_float64(_build_zoo)


(test_method_steps_and_deploys_to_what_the_twin_computes,
 test_every_other_method_on_every_model,
 test_distill_from_the_float_model_steps_and_deploys_to_the_twin) = zoo_method_tests(
    ZOO16, _build, ["mamba2-ssd", "ttt-linear", "hash-grid"])

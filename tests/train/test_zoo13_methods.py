"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation) on the thirteenth zoo
(``tests/mapping/test_zoo13.py``), one optimiser step each, deployed to what the twin computes,
with ``test_methods_new_models.py``'s recipes. Outputs flattened by the eleventh zoo's ``Flat``.
Every model once in the default run, the methods in turn (each on several models); the other
pairs with ``-m slow``. Distilled by default: the traced submodule (its parameters train in
the twin, apart from the user's model), GFNet's spectral filter and the pre-norm encoder."""

from __future__ import annotations

from ..mapping.test_zoo13 import ZOO13
from ..mapping.test_zoo13 import _build as _build_zoo
from .test_methods_new_models import flat_float64, zoo_method_tests

_build = flat_float64(_build_zoo)


(test_method_steps_and_deploys_to_what_the_twin_computes,
 test_every_other_method_on_every_model,
 test_distill_from_the_float_model_steps_and_deploys_to_the_twin) = zoo_method_tests(
    # RAOQ + LoRA on the EMA teacher was a strict xfail here: its forward moves the teacher's
    # weights in place and the twin learns a frozen layer's scales too, so autograd saved
    # those weights in the first of BitAug's forwards and refused the backward after the
    # second moved them; a frozen weight enters the twin's quantizer as a copy now
    ZOO13, _build, ["traced", "global-filter", "norm-first"])

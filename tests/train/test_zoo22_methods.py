"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation) on the twenty-second
zoo (``tests/mapping/test_zoo22.py``), one optimiser step each, deployed to what the twin
computes, with ``test_methods_new_models.py``'s recipes. Every model once in the default run,
the methods in turn (each on several models); the other pairs with ``-m slow``. Distilled by
default: the tensor-subclass weight (kept digital), the orthogonal RNN (a parametrized
recurrent weight) and SimSiam (an encoder called with and without gradient)."""

from __future__ import annotations

import torch
from torch import nn

from ..mapping.test_zoo22 import ZOO22, _build
from .test_methods_new_models import flat_float64, zoo_method_tests

_build64 = flat_float64(_build)


def _copyable(name: str):
    """The model as the recipes take it. The recipes copy it first with torch's own
    ``deepcopy``, which refuses the orthogonal RNN's flat-weight cache (computed with gradient
    by ``.to()``): refreshed here without gradient (deploy and ``prepare`` copy it themselves,
    ``test_zoo22.py``)."""
    model, args = _build64(name)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.RNNBase):
                m._init_flat_weights()
    return model, args


(test_method_steps_and_deploys_to_what_the_twin_computes,
 test_every_other_method_on_every_model,
 test_distill_from_the_float_model_steps_and_deploys_to_the_twin) = zoo_method_tests(
    ZOO22, _copyable, ["tensor-subclass-weight", "orthogonal-rnn", "simsiam"])

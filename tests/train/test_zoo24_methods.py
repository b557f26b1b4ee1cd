"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation, BS-KMQ) on the
twenty-fourth zoo (``tests/mapping/test_zoo24.py``: models in the state users bring them), one
optimiser step each, deployed to what the twin computes, with ``test_methods_new_models.py``'s
recipes, in float64 (the half-precision models as the float64 copy ``prepare`` advises). Every
model once in the default run, the methods in turn; the other pairs with ``-m slow``.
Distilled by default: the ``DataParallel`` and compiled wrappers and the token-id classifier
(its padding mask left to its default). A frozen stem stays what the user froze under every
method, and the user's model in training mode (its frozen BatchNorm in eval mode) is left as it
was (the float model's stem and BatchNorm are the user's after the step). BS-KMQ refuses the
CNN's fused convolution (72 rows over its 64-row conversion), naming it."""

from __future__ import annotations

import pytest
import torch

from cimsim.errors import MappingError

from ..mapping.test_zoo24 import ZOO24, _build, _fine_tuning, _snapshot, assert_unchanged
from .test_methods_new_models import METHODS, check_bskmq, flat_float64, zoo_method_tests


def _copyable(name: str, dtype: torch.dtype | None = None):
    """A model of the zoo as the recipes take it (they deep-copy it first): the pruned one
    after a forward without gradient, as torch's ``deepcopy`` needs (right after ``prune.*``
    its ``weight`` is computed with gradient; deploy and ``prepare`` copy that state
    themselves, ``test_zoo24.py``)."""
    model, args = _build(name, dtype)
    if name == "pruned-with-hooks":
        with torch.no_grad():
            model(*args)
    return model, args


(test_method_steps_and_deploys_to_what_the_twin_computes,
 test_every_other_method_on_every_model,
 test_distill_from_the_float_model_steps_and_deploys_to_the_twin) = zoo_method_tests(
    ZOO24, flat_float64(_copyable), ["root-data-parallel", "compiled", "token-ids"])


def test_bskmq_refuses_a_layer_over_its_conversion_rows_naming_it():
    """BS-KMQ (a layer-output NL-ADC fused with the ReLU): the CNN's block convolution feeding
    a ReLU has 72 rows (8 channels, 3x3), more than the 64-row layer-output ADC converts at
    once: refused, naming the layer and why."""
    with pytest.raises(MappingError, match=r"block\.0: adc\.placement = 'layer_output' needs "
                       r"one conversion per output.*2 row group"):
        check_bskmq(*flat_float64(_copyable)("pruned-with-hooks"), 0)


_FROZEN_FAST = ["pim-qat"]


@pytest.mark.parametrize("method", [
    m if m in _FROZEN_FAST else pytest.param(m, marks=pytest.mark.slow) for m in METHODS])
def test_every_method_leaves_a_fine_tuned_model_and_its_frozen_stem(method):
    """Each method one step on the user's model itself (no copy) as a fine-tuning loop holds
    it (training mode, the frozen stem's BatchNorm in eval mode): the user's model is as it
    was (values, modes, flags, hooks), and the float model's stem and BatchNorm parameters are
    the user's, bit for bit, and still frozen."""
    model, (x,) = _fine_tuning()
    model, args = model.double(), (x.double(),)
    before = _snapshot(model)
    prep, _ = METHODS[method](model, args, 0)
    assert_unchanged(model, before)
    tuned = prep.float_model()
    for part in ("stem", "bn"):
        for (n, p), q in zip(getattr(model, part).named_parameters(),
                             getattr(tuned, part).parameters(), strict=True):
            assert torch.equal(p, q) and not q.requires_grad, f"{part}.{n}"

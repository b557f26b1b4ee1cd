"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation) on the twelfth zoo
(``tests/mapping/test_zoo12.py``), one optimiser step each, deployed to what the twin computes,
with ``test_methods_new_models.py``'s recipes. Outputs flattened by the zoo's ``Flat``. Every
model once in the default run, the methods in turn (each on several models); the other pairs
with ``-m slow``."""

from __future__ import annotations

import pytest
import torch

import cimsim
from cimsim.errors import ConfigError
from cimsim.train import distill, prepare

from ..mapping.test_zoo5 import _quiet
from ..mapping.test_zoo12 import ZOO12
from ..mapping.test_zoo12 import _build as _build_zoo
from .test_methods_new_models import flat_float64, zoo_method_tests

_build = flat_float64(_build_zoo)


# the default run: every model once, every method on three or more models; distillation
# on the models named
(test_method_steps_and_deploys_to_what_the_twin_computes,
 test_every_other_method_on_every_model,
 test_distill_from_the_float_model_steps_and_deploys_to_the_twin) = zoo_method_tests(
    ZOO12, _build, ["seq2seq-greedy", "vmap-ensemble", "tome"])


def test_distill_a_film_model_on_a_dict_of_its_two_inputs():
    """FiLM's ``forward(x, cond)``: one tensor is refused naming both inputs; a dict of them
    distills (keyword batches) to a twin the deployed model equals."""
    model, (x, cond) = _build_zoo("film", torch.float64)
    prep = _quiet(prepare, model, cimsim.load_chip("ideal"), (x, cond))
    with pytest.raises(ConfigError, match=r"needs 2 inputs \(x, cond\); data gives 1"):
        distill(prep, model, x, progress=False)
    before = [p.detach().clone() for p in prep.parameters()]
    distill(prep, model, {"x": x, "cond": cond}, batch_size=2, progress=False)
    assert any(not torch.equal(p, b) for p, b in zip(prep.parameters(), before, strict=True))
    with torch.no_grad():
        torch.testing.assert_close(prep.deploy()(x, cond), prep.eval()(x, cond),
                                   rtol=1e-7, atol=1e-7)

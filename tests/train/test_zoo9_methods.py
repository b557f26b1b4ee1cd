"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation, BS-KMQ) on the ninth
zoo (``tests/mapping/test_zoo9.py``: HuggingFace, timm and torchvision idioms), one optimiser
step each and deployed to what the twin computes, with ``test_methods_new_models.py``'s recipes.
The recipes call a model on positional tensors and train on one output tensor: a keyword model
is called through ``Keywords`` (its batch's tensors in order, its flags fixed) and every output
(a ModelOutput, a list of feature maps, DETR's dict) flattened. One method per model in the
default run (each method on three or more models), the other pairs with ``-m slow``; the
methods' own passes on the keyword batch itself (no wrapper) are checked at the end."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import ConfigError
from cimsim.train import distill, prepare
from cimsim.train.bskmq import fused_twins, prepare_bskmq, refit_chip_levels
from cimsim.train.pimqat import prepare_pimqat

from ..mapping.conftest import flat_output
from ..mapping.test_zoo9 import ZOO9
from ..mapping.test_zoo9 import _build as _build_zoo
from .test_methods_new_models import (
    _bskmq_chip,
    _quiet,
    check_bskmq,
    pim_chip,
    zoo_method_tests,
)
from .test_zoo6_methods import Flat  # outputs flattened to one tensor (conftest's flat_output)


class Keywords(nn.Module):
    """A keyword model on positional tensors: ``model(**dict(zip(names, tensors)), **flags)``,
    its outputs flattened to one tensor (per sample: the recipes' losses take one tensor)."""

    def __init__(self, model: nn.Module, names: list[str], flags: dict):
        super().__init__()
        self.model, self.names, self.flags = model, names, flags

    def forward(self, *tensors):
        # fewer tensors (distillation passes the first): the rest take their defaults
        out = self.model(**dict(zip(self.names, tensors, strict=False)), **self.flags)
        return flat_output(out)


def _build(name: str, dtype=torch.float64):
    model, batch = _build_zoo(name, dtype)
    if isinstance(batch, dict):
        names = [k for k, v in batch.items() if isinstance(v, torch.Tensor)]
        flags = {k: v for k, v in batch.items() if not isinstance(v, torch.Tensor)}
        return Keywords(model, names, flags), tuple(batch[k] for k in names)
    return Flat(model), batch


# the default run: every model once, every method on three or more models; distillation
# on the models named
# (distillation reads the first input only, the others their defaults: a keyword model's ids)
(test_method_steps_and_deploys_to_what_the_twin_computes,
 test_every_other_method_on_every_model,
 test_distill_from_the_float_model_steps_and_deploys_to_the_twin) = zoo_method_tests(
    ZOO9, _build, ["bert", "llama-sdpa-gqa", "timm-convnext"])


def test_bskmq_steps_refits_and_deploys_where_a_relu_follows_a_layer():
    """torchvision's SqueezeExcitation: its ``activation`` (ReLU) after ``fc1``, found by
    torch.fx through FrozenBatchNorm2d and StochasticDepth (the model itself: a wrapper's
    ``*args`` forward does not trace)."""
    _quiet(check_bskmq, *_build_zoo("torchvision", torch.float64), 0)


@pytest.mark.parametrize("name", ["bert", "dit"])
def test_bskmq_without_a_fusable_relu_names_the_reason(name):
    """BERT's GELU, DiT's tanh-GELU and SiLU: no ReLU the fused ADC can be."""
    model, args = _build(name)
    with pytest.raises(ConfigError, match=r"chip is set for it.*mapped layers: \w"):
        _quiet(prepare_bskmq, model, _bskmq_chip(), args)


def test_the_methods_train_a_checkpointed_bert_on_its_keyword_batch():
    """No wrapper: PIM-QAT prepared on the tokenizer batch with labels, trained on HF's own
    loss (``out.loss``, the encoder checkpointed in train mode), deployed to what the twin
    computes; BS-KMQ's refit pass on a keyword batch of a model with a ReLU (DETR's backbone
    through a dict of ``samples``)."""
    model, batch = _build_zoo("bert-labels-tuple", torch.float64)
    model.encoder.gradient_checkpointing = True
    batch = {**batch, "return_dict": True}
    prep = _quiet(prepare_pimqat, model, pim_chip("native", adc_bits=4, rows=16), batch)
    before = [p.detach().clone() for p in prep.parameters()]
    opt = torch.optim.SGD([p for p in prep.parameters() if p.requires_grad], lr=1e-2)
    prep.train()
    prep(**batch).loss.backward()
    opt.step()
    prep.eval()
    assert any(not torch.equal(p, b) for p, b in zip(prep.parameters(), before, strict=True))
    with torch.no_grad():
        want = prep(**batch)
    got = prep.deploy()(**batch)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(got.loss, want.loss, rtol=1e-7, atol=1e-7)

    detr, (x,) = _build_zoo("detr", torch.float64)
    fused = _quiet(prepare_bskmq, detr, _bskmq_chip(), {"samples": x})
    assert fused_twins(fused)
    assert set(refit_chip_levels(fused, {"samples": x})) == set(fused_twins(fused))
    out = fused.deploy()(samples=x)
    assert set(out) == {"pred_logits", "pred_boxes"}
    assert isinstance(cimsim.load_chip("ideal"), cimsim.ChipConfig)


def test_distill_takes_a_keyword_batch_and_matches_a_model_outputs_logits():
    """Distillation on the tokenizer's dict (no wrapper): each tensor cut with the shuffled
    batch, the flags passed whole, the student's and the teacher's ``.logits`` matched. It
    refused the dict ('data must be a tensor ...; got dict') and a ModelOutput ('distillation
    matches tensors')."""
    model, batch = _build_zoo("bert", torch.float64)
    batch = {**batch, "return_dict": True}
    prep = _quiet(prepare, model, cimsim.load_chip("ideal"), batch)
    before = [p.detach().clone() for p in prep.parameters()]
    history = distill(prep, model, batch, epochs=2, batch_size=2, progress=False)
    assert history["n_inputs"] == 3 and all(math.isfinite(v) for v in history["loss"])
    assert any(not torch.equal(p, b) for p, b in zip(prep.parameters(), before, strict=True))
    with torch.no_grad():
        want = prep(**batch)
    torch.testing.assert_close(prep.deploy()(**batch).logits, want.logits, rtol=1e-7,
                               atol=1e-7)

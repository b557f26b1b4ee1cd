"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation, BS-KMQ) on the fourth
zoo (``tests/mapping/test_zoo4.py``, the classic vision families): each takes one optimiser
step and deploys to what its twin computes, as ``test_methods_new_models.py`` holds them on the
first zoo (its recipes are reused, not copied)."""

from __future__ import annotations

import pytest
import torch

import cimsim
from cimsim.errors import ConfigError
from cimsim.train import distill, prepare
from cimsim.train.bskmq import prepare_bskmq
from cimsim.train.columnquant import columnquant_chip, columnquant_optimizer, prepare_columnquant
from cimsim.train.pimqat import pim_chip, prepare_pimqat

from ..mapping.test_zoo4 import _EXCLUDE, ZOO4, _build, _main
from .test_methods_new_models import METHODS, _bskmq_chip, _quiet, _step, check_bskmq, check_method

# Inception's training-mode output is a pair, and its auxiliary head needs exclude=: below
_PLAIN = [n for n in ZOO4 if n != "inception"]


@pytest.mark.parametrize("method", [m for m in METHODS if m != "distill"])
@pytest.mark.parametrize("name", _PLAIN)
def test_method_steps_and_deploys_to_what_the_twin_computes(name, method):
    check_method(*_build(name, torch.float64), 0, method)


@pytest.mark.parametrize("name", ["densenet", "swin", "mobilevit", "inception"])
def test_distill_from_the_float_model_moves_the_twin(name):
    """Inception's training-mode pair: its logits are matched (the auxiliary head excluded)."""
    model, args = _build(name, torch.float64)
    prep = _quiet(prepare, model, cimsim.load_chip("ideal"), args, exclude=_EXCLUDE.get(name, ()))
    before = [p.detach().clone() for p in prep.parameters()]
    distill(prep, model, args[0], epochs=1, batch_size=2, progress=False)
    assert any(not torch.equal(p, b) for p, b in zip(prep.parameters(), before, strict=True))


def _inception_loss(prep, args):
    return (_main(prep(*args)) - 1.0).pow(2).mean()


@pytest.mark.parametrize("method", ["pim-qat", "columnquant"])
def test_methods_train_inception_with_its_auxiliary_head_excluded(method):
    """The methods pass exclude= through to prepare: the auxiliary head trains in float (its
    loss term reaches it) and stays digital on deploy; the rest deploys as its twin computes."""
    model, args = _build("inception", torch.float64)
    if method == "pim-qat":
        prep = _quiet(prepare_pimqat, model, pim_chip("native", adc_bits=4, rows=16), args,
                      exclude=["aux.*"])
        opt = None
    else:
        prep = _quiet(prepare_columnquant, model, columnquant_chip(psum_bits=4, array_size=64),
                      args, exclude=["aux.*"])
        opt = columnquant_optimizer(prep)
    head = prep.model.aux[3].weight.detach().clone()
    _step(prep, args, opt, loss=_inception_loss)
    assert not torch.equal(prep.model.aux[3].weight, head)
    with torch.no_grad():
        want = prep(*args)
    sim = prep.deploy()
    assert {d[0] for d in sim.digital} == {"aux.1.conv", "aux.3"}
    torch.testing.assert_close(sim(*args), want, rtol=1e-7, atol=1e-7)


def test_bskmq_steps_refits_and_deploys_where_a_relu_follows_a_layer():
    """The fire modules' ReLU modules follow their squeeze and expand convolutions."""
    check_bskmq(*_build("squeezenet", torch.float64), 0)


@pytest.mark.parametrize("name", ["efficientnet", "swin"])
def test_bskmq_without_a_fusable_relu_names_the_reason(name):
    """SiLU and GELU are no ReLU the fused ADC can be."""
    model, args = _build(name, torch.float64)
    with pytest.raises(ConfigError, match=r"chip is set for it.*mapped layers: \w"):
        _quiet(prepare_bskmq, model, _bskmq_chip(), args)

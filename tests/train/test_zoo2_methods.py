"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation, BS-KMQ) on the
second zoo (``tests/mapping/test_zoo2.py``): each takes one optimiser step and deploys to what
its twin computes, as ``test_methods_new_models.py`` holds them on the first zoo (its method
recipes are reused, not copied)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import ConfigError, MappingError
from cimsim.train import distill, prepare
from cimsim.train.bskmq import prepare_bskmq

from ..mapping.test_zoo2 import _build, _main
from .test_methods_new_models import METHODS, _bskmq_chip, _quiet, check_method


class MainOutput(nn.Module):
    """The model's main output only (a dict's ``out``, a tuple's first): the recipes' loss
    compares one tensor."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.m = model

    def forward(self, *args):
        return _main(self.m(*args))


NAMES = ["unet", "decoder1d", "stacked-rnn", "cross-attention"]
FAST = {"unet", "cross-attention"}  # a conv net and attention by default; all in the slow run


def _model(name: str):
    torch.manual_seed(0)
    model, args, batch_dim = _build(name, torch.float64)
    return MainOutput(model).eval(), args, batch_dim


# the 1-D decoder's last layer (4 inputs, 3 outputs) stays below one LSB of PIM-QAT's
# full-scale 4-bit ADC in the differential decomposition: its outputs are all 0 (then the
# LayerNorm's), no gradient flows and no step can move a weight; the chip's, not a bug
_CASES = [(n, m) for n in NAMES for m in METHODS
          if m != "distill" and (n, m) != ("decoder1d", "pim-qat-differential")]


@pytest.mark.parametrize(("name", "method"), [
    c if c[0] in FAST else pytest.param(*c, marks=pytest.mark.slow) for c in _CASES])
def test_method_steps_and_deploys_to_what_the_twin_computes(name, method):
    check_method(*_model(name), method)


@pytest.mark.parametrize("name", ["unet", "stacked-rnn"])
def test_distill_from_the_float_model_moves_the_twin(name):
    """A tuple output (the RNN's (y, h_n)) is matched on its first tensor."""
    model, args, bd = _build(name, torch.float64)
    prep = prepare(model, cimsim.load_chip("ideal"), args, batch_dim=bd)
    before = [p.detach().clone() for p in prep.parameters()]
    distill(prep, model, args[0], epochs=1, batch_size=2, progress=False)
    assert any(not torch.equal(p, b) for p, b in zip(prep.parameters(), before, strict=True))


def test_distill_takes_a_five_input_model_s_inputs_and_names_them_when_missing():
    model, args, bd = _build("cross-attention", torch.float64)
    prep = prepare(model, cimsim.load_chip("ideal"), args, batch_dim=bd)
    with pytest.raises(ConfigError, match=r"needs 5 inputs \(q, k, v, mask_f, .*data gives 1"):
        distill(prep, model, args[0], progress=False)
    before = [p.detach().clone() for p in prep.parameters()]
    distill(prep, model, tuple(args), epochs=1, batch_size=2, progress=False)
    assert any(not torch.equal(p, b) for p, b in zip(prep.parameters(), before, strict=True))


def test_bskmq_names_the_unet_layer_its_fused_adc_cannot_hold():
    """``down`` feeds a ReLU but reads 8 · 3 · 3 = 72 > 64 rows: no single conversion per
    output; the error names it (as the first zoo's MobileNet)."""
    model, args, bd = _model("unet")
    with pytest.raises(MappingError, match=r"^m\.down: adc.placement = 'layer_output'"):
        prepare_bskmq(model, _bskmq_chip(), args, batch_dim=bd)


def test_bskmq_on_the_decoder_without_a_relu_names_the_reason():
    model, args, bd = _model("decoder1d")
    with pytest.raises(ConfigError, match=r"chip is set for it.*mapped layers: m\.c"):
        _quiet(prepare_bskmq, model, _bskmq_chip(), args, batch_dim=bd)

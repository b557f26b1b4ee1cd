"""The training methods (PIM-QAT, ColumnQuant, RAOQ + LoRA, distillation, BS-KMQ) on the
twenty-third zoo (``tests/mapping/test_zoo23.py``: published architectures), one optimiser step
each, deployed to what the twin computes, with ``test_methods_new_models.py``'s recipes. Every
model once in the default run, the methods in turn (each on several models); the other pairs
with ``-m slow``. Distilled by default: DeiT (two heads averaged at inference), ConvMixer and
DeepSpeech 2 (a bidirectional GRU); FT-Transformer (two inputs) through a dict of its keyword
inputs, as ``distill`` asks of a model with several. BS-KMQ (a
layer-output NL-ADC fused with the ReLU) on the models with a layer followed by a ReLU."""

from __future__ import annotations

import pytest
import torch

import cimsim
from cimsim.errors import ConfigError, MappingError
from cimsim.train import distill, prepare

from ..mapping.conftest import build_seeded
from ..mapping.test_zoo23 import ZOO23, _build
from .test_methods_new_models import _quiet, check_bskmq, flat_float64, zoo_method_tests

(test_method_steps_and_deploys_to_what_the_twin_computes,
 test_every_other_method_on_every_model,
 test_distill_from_the_float_model_steps_and_deploys_to_the_twin) = zoo_method_tests(
    ZOO23, flat_float64(_build), ["deit", "convmixer", "deepspeech2"],
    known={("conv-tasnet", "pim-qat-differential"): (
        "by the chip, not the method: the encoder's 8-row partial sums fall below the first "
        "step of a 4-bit ADC ranged for 16 rows (full scale, Delta = 112; a layer with fewer "
        "rows keeps the full range, docs/hardware-model.md §7), its ReLU'd outputs are 0, gLN "
        "gives 0, the model outputs 0 and every gradient is 0 (ReLU's at 0): nothing moves")})


def test_bskmq_steps_refits_and_deploys_where_a_relu_follows_a_layer():
    """NeuMF's MLP (Linear, ReLU): fused twins, one step, refitted levels, deployed."""
    check_bskmq(*flat_float64(_build)("neumf"), 0)


def test_bskmq_refusals_name_why():
    """Res2Net: CBAM's 7x7 convolution over 2 channels has 98 rows, more than the 64-row
    layer-output ADC converts at once; Conv-TasNet: its ReLU follows the encoder, but the
    model does not trace (``len(wav)``), so no fusion is found. Both refused, naming why."""
    with pytest.raises(MappingError, match=r"layer\.0\.sa\.conv: adc\.placement = "
                       r"'layer_output' needs one conversion per output.*2 row group"):
        check_bskmq(*flat_float64(_build)("res2net"), 0)
    with pytest.raises(ConfigError, match=r"no mapped layer's output goes only to a ReLU.*"
                       r"torch\.fx"):
        check_bskmq(*flat_float64(_build)("conv-tasnet"), 0)


def test_distill_a_two_input_model_through_its_keyword_inputs():
    """FT-Transformer's forward takes numerical and categorical features: ``distill`` with a
    tensor refuses naming both; with a dict of them it steps, and deploys to the twin."""
    model, args = build_seeded(*ZOO23["ft-transformer"], torch.float64)
    prep = _quiet(prepare, model, cimsim.load_chip("ideal"), args)
    with pytest.raises(ConfigError, match=r"needs 2 inputs \(x_num, x_cat\); data gives 1"):
        distill(prep, model, args[0], progress=False)
    before = [p.detach().clone() for p in prep.parameters()]
    distill(prep, model, {"x_num": args[0], "x_cat": args[1]}, batch_size=2, progress=False)
    assert any(not torch.equal(p, b) for p, b in zip(prep.parameters(), before, strict=True))
    with torch.no_grad():
        torch.testing.assert_close(prep.deploy()(*args), prep(*args), rtol=1e-7, atol=1e-7)

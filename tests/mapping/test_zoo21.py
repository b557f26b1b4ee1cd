"""A twenty-first zoo (worktree ``zoo21``, after ``test_zoo20.py``): model families at toy size
that the twenty earlier zoos did not build, chosen for ways weights reach a product that no
zoo used (models in ``zoo21_models.py``). Layers changed on the instance: an ``nn.Linear``
whose ``forward`` is replaced by ``types.MethodType`` (a temperature and a clip patched onto
one layer), a weight-only int8 Linear (an integer buffer times a per-row scale buffer,
dequantized in the forward). Weights reached through torch machinery: a low-rank
parametrization with two originals (``right_inverse`` returning the SVD factors), feedback
alignment (``F.linear`` inside a custom ``autograd.Function`` whose backward uses a fixed random
matrix), trained ternary quantization (a weight built from a latent one and two learned
scales). Weights combined with state: differentiable plasticity (a recurrent weight plus a
per-sample Hebbian trace, applied by ``torch.bmm``), DiracNet (a kernel plus a scaled Dirac
delta buffer). Factorised weights: a tensor-train Linear (two cores contracted with the input
by one ``einsum``), Tucker-2 convolutions. Other arithmetic: PACT (ReLU outputs clipped by a
learned tensor bound). All ten pass the lossless, ``rram-22nm`` and ``prepare`` checks and
every training method as written; two more are refused by design (below).

What it found around them, fixed: a layer of torch's own class whose ``forward`` was replaced
on the instance was mapped by its type, the patch dropped: the patched layer's temperature and
clip were lost and the chip's output was 22 % off the model's with no word (the lossless check
against the integer reference passed, as the reference replaces it too). Deploy and
``prepare`` keep it digital now, naming the patch and the way out (a class-level override
already was). Reading a mapped layer's weight in the forward raised a bare
``AttributeError``: it is a ``MappingError`` too now (``WeightReadError``), so a caller
catching cimsim's refusals catches it. Seen, by design: the feedback-alignment, ternary,
Dirac and tensor-train weights are in products no layer holds, listed digital by name; the
int8 layer's product is listed under its module (its weight comes from a non-float buffer, no
learned parameter); a kernel-1 ``Conv1d`` read as an embedding table (``F.embedding(tokens,
conv.weight...)``) and Linears whose weights are used on the left of ``torch.mm`` are refused
naming the layer, and map with it excluded. Seen, left: plasticity's recurrent weight ``w``
reaches ``torch.bmm`` added to the activation-dependent Hebbian term (``w + alpha * hebb``),
so its product with the state computes in float and is listed only as the model's activation
products (``alpha`` is named, as modulated); the watch does not name a weight matrix added to
an activation (the rule that keeps ALiBi's bias and position tables silent)."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.errors import MappingError
from cimsim.train import prepare

from .conftest import build_seeded, lossless_chip
from .test_zoo5 import _quiet
from .zoo21_models import (
    PACT,
    ConvTiedEmbedding,
    DiracNet,
    FeedbackAlignment,
    InstancePatched,
    LowRankParam,
    Plastic,
    TensorTrain,
    Ternary,
    Tucker2,
    WeightOnLeft,
    WeightOnlyInt8,
)
from .zoo_tests import zoo_deploy_tests

ZOO21 = {
    "instance-patched": (InstancePatched, lambda: (torch.randn(3, 6),)),
    "weight-only-int8": (WeightOnlyInt8, lambda: (torch.randn(3, 6),)),
    "low-rank-param": (LowRankParam, lambda: (torch.randn(3, 6),)),
    "feedback-alignment": (FeedbackAlignment, lambda: (torch.randn(3, 6),)),
    "ternary": (Ternary, lambda: (torch.randn(3, 6),)),
    "plastic": (Plastic, lambda: (torch.randn(3, 5, 4),)),
    "diracnet": (DiracNet, lambda: (torch.randn(3, 3, 8, 8),)),
    "tensor-train": (TensorTrain, lambda: (torch.randn(3, 5),)),
    "tucker2": (Tucker2, lambda: (torch.randn(3, 3, 8, 8),)),
    "pact": (PACT, lambda: (torch.randn(3, 6),)),
}

_DIGITAL: dict[str, set[str]] = {
    "instance-patched": {"mid"},
    "weight-only-int8": {"q"},
    "feedback-alignment": {"fa1.weight", "fa2.weight"},
    "ternary": {"mid.latent", "mid.w_n", "mid.w_p"},
    "plastic": {"alpha", "model"},
    "diracnet": {f"d{i}.{p}" for i in (1, 2) for p in ("a", "b", "delta", "weight")},
    "tensor-train": {"tt.g1", "tt.g2"},
}

# 2-D parameters the registry's every-matrix check finds in no listed product: plasticity's
# ``w``, in float beside the listed activation products (module docstring, "left")
_NOT_MATRICES = {"plastic": ("w",)}


def _build(name: str, dtype=torch.float32):
    return build_seeded(*ZOO21[name], dtype)


# the deploy (lossless, rram-22nm) and prepare tests of every model
(test_lossless_deploy_is_the_quantized_model_and_near_float,
 test_rram_deploy_runs_reports_and_accounts_for_every_matrix,
 test_prepare_steps_and_the_twin_deploys_to_what_it_computes) = zoo_deploy_tests(
    ZOO21, _build, _DIGITAL, not_matrices=_NOT_MATRICES)


# ---------------------------------------------------------------------------------------------
# what it found
# ---------------------------------------------------------------------------------------------
def _double(self, x):
    return 2 * F.linear(x, self.weight, self.bias)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_a_forward_patched_on_the_instance_keeps_the_layer_digital_naming_the_patch(kind):
    """A torch layer whose ``forward`` is replaced on the instance was mapped by its class and
    the patch dropped (the chip computed the unpatched layer, 22 % off the patched model with
    no word); deploy and ``prepare`` keep it digital naming the patch, computing as patched."""
    if kind == "linear":
        layer = nn.Linear(4, 4)
        layer.forward = types.MethodType(_double, layer)
        model, x = nn.Sequential(nn.Linear(4, 4), layer, nn.Linear(4, 2)), torch.randn(3, 4)
    else:
        layer = nn.Conv2d(2, 2, 3, padding=1)
        layer.forward = types.MethodType(lambda self, x: self._conv_forward(
            x.flip(-1), self.weight, self.bias), layer)
        model = nn.Sequential(nn.Conv2d(2, 2, 1), layer, nn.Conv2d(2, 2, 1))
        x = torch.randn(3, 2, 5, 5)
    model = model.double().eval()
    x = x.double()
    for fn in (cimsim.deploy, prepare):
        sim = _quiet(fn, model, lossless_chip("channel"), x)
        rows = {d[0]: d[2] for d in sim.digital}
        assert "1" in rows and "forward is replaced on the instance" in rows["1"], rows
        assert "remove the patch" in rows["1"]
        with torch.no_grad():
            torch.testing.assert_close(sim.eval()(x), model(x), rtol=0.03, atol=0.03)


@pytest.mark.parametrize("make, data, layer", [
    (ConvTiedEmbedding, lambda: (torch.randint(0, 11, (3, 7)),), "out"),
    (WeightOnLeft, lambda: (torch.randn(3, 5, 4),), "wh"),
])
def test_a_mapped_layer_whose_weight_the_forward_reads_is_refused_naming_it(make, data, layer):
    """A kernel-1 ``Conv1d`` head whose weight is also the embedding table, and ``nn.Linear``
    s whose weights the forward multiplies from the left (``torch.mm(W, x.T)``): the weights
    cannot both be on the arrays and read in float. Refused by a ``MappingError`` (it was a
    bare ``AttributeError``) naming the layer and the way out; with the layers excluded the
    model deploys, computing as the float model."""
    model, (x,) = build_seeded(make, data)
    with pytest.raises(MappingError, match=rf"{layer}: the model reads \.weight .*exclude"):
        _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
    exclude = ["out"] if layer == "out" else ["wx", "wh"]
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x, exclude=exclude)
    assert set(exclude) <= {d[0] for d in sim.digital}
    with torch.no_grad():
        torch.testing.assert_close(sim(x), model(x), rtol=0.05, atol=0.05)

"""A seventeenth zoo (worktree ``zoo17``, after ``test_zoo16.py``): model families at toy size
that the sixteen earlier zoos did not build, chosen for ways weights reach a product no zoo used
(models in ``zoo17_models.py``). Weights changed in the forward: an ArcFace head (normalised
class weights in ``F.linear``, an angular margin at the label, the label an integer input),
MADE's autoregressive masks by ``torch.nn.utils.prune.custom_from_mask`` (and the eighth zoo's
PixelCNN, whose masked-conv subclass stays digital there, with its masks so), wav2vec 2.0's
grouped positional convolution under the old ``weight_norm`` hook over the kernel axis, DINO's
head with its weight-normed last layer's magnitude ``g`` frozen. Attention: DeBERTa's
disentangled attention (a relative-position table projected by the attention's own Linear
layers, scores gathered by relative distance), CvT's convolutional projections, MaxViT's block
and grid attention, neighbourhood attention through ``F.unfold``, a Transformer-XL layer over a
detached memory of the previous segment, slot attention (a softmax over the slots, a shared
``GRUCell``). And GhostNet's ghost bottleneck, EfficientDet's BiFPN fast normalised fusion,
PointNet++'s set abstraction (farthest-point sampling, ball query, ``gather``) and a CfC cell
over irregular time gaps. All fifteen pass the lossless, ``rram-22nm`` and ``prepare`` checks
and every training method as written.

What it found around them, fixed: ``prepare`` of a model in which no layer maps (all int8 from
``quantize_dynamic``, every layer excluded, weights only in ``F.linear``) logged "no Linear/Conv
layer was mapped" and returned a twin with nothing on the chip, whose ``deploy()`` refused only
after the training: it refuses with deploy's error now (``quantize_dynamic``'s modules were said
to come from ``convert``: named as its own). MADE's masks in an ``nn.Linear`` subclass
(``F.linear(x, mask * weight)``) were refused with a way out ("hold an nn.Linear in a module")
that led to the next refusal: the message names ``prune.custom_from_mask``, which maps, the
masked zeros exact through deploy, ``prepare`` and its deployment. A pruned layer left in float
by ``prepare`` (excluded) trained its pruned entries (the copy's pruning was made permanent; the
float model of MADE then read the future): its mask is put back. DINO's frozen ``g`` trained
silently with the direction (the twin learns the weight the parametrization computes; the rows'
norms moved off 1): warned, naming it and the way out (exclude the layer); excluded under the
old ``weight_norm`` hook, ``PreparedModel.float_model()`` failed after a step with torch's "Only
Tensors created explicitly by the user (graph leaves) support the deepcopy protocol": it copies
the hooked weights detached. A mask applied by a parametrization (``torch.ao.pruning``'s
``FakeSparsity``) trained away in the twin (it learns the computed weight): the entries a
parametrization zeroes whatever its originals hold stay zero. Seen, left: on ``rram-22nm`` a
masked zero programmed with device variation conducts (MADE's outputs move a little when inputs
they must not see move; exact on the lossless chip); the DINO head is 33 % off float on
``rram-22nm`` with every noise off in the audit (a near-zero component of its L2-normalised
4-wide bottleneck changes sign between the float calibration pass and the chip, flipping every
two's-complement input plane past ADC ranges calibrated on 3 samples); neighbourhood attention's
scores, an element-wise product summed (no ``matmul``), are not listed as activation products;
the frozen ``g`` is warned, not trained as fixed; ``distill`` took one input per batch then, so
the two-input models (ArcFace, Transformer-XL, PointNet++, CfC) were not distilled here."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.pruning import FakeSparsity
from torch.nn.utils import parametrize, prune

import cimsim
from cimsim.errors import MappingError
from cimsim.train import prepare

from .conftest import build_seeded, lossless_chip
from .test_zoo5 import _quiet, _rram_noise_free
from .zoo17_models import (
    MADE,
    ArcFace,
    BiFPNNode,
    CfC,
    CvTAttention,
    DeBERTaAttention,
    DINOHead,
    GhostNet,
    MaxViTBlock,
    NeighborhoodAttention,
    PixelCNN,
    PointNet2SA,
    SlotAttention,
    TransformerXL,
    Wav2VecPosConv,
)
from .zoo_tests import zoo_deploy_tests

ZOO17 = {
    "arcface": (ArcFace, lambda: (torch.randn(3, 6), torch.randint(0, 5, (3,)))),
    "made": (MADE, lambda: (torch.randn(3, 5),)),
    "pixelcnn-pruned": (PixelCNN, lambda: (torch.rand(3, 1, 6, 6),)),
    "wav2vec2-pos-conv": (Wav2VecPosConv, lambda: (torch.randn(3, 7, 5),)),
    "dino-head": (DINOHead, lambda: (torch.randn(3, 6),)),
    "deberta": (DeBERTaAttention, lambda: (torch.randn(3, 6, 5),)),
    "cvt": (CvTAttention, lambda: (torch.randn(3, 3, 8, 8),)),
    "maxvit": (MaxViTBlock, lambda: (torch.randn(3, 3, 8, 8),)),
    "neighborhood-attention": (NeighborhoodAttention, lambda: (torch.randn(3, 3, 6, 6),)),
    "transformer-xl": (TransformerXL, lambda: (torch.randn(3, 4, 4), torch.randn(3, 4, 4))),
    "slot-attention": (SlotAttention, lambda: (torch.randn(3, 6, 5),)),
    "ghostnet": (GhostNet, lambda: (torch.randn(3, 3, 8, 8),)),
    "bifpn": (BiFPNNode, lambda: (torch.randn(3, 3, 8, 8),)),
    "pointnet2-sa": (PointNet2SA, lambda: (torch.rand(3, 16, 3), torch.randn(3, 16, 2))),
    "cfc": (CfC, lambda: (torch.randn(3, 5, 4), 0.1 + torch.rand(3, 5))),
}

# what stays digital, by name: the products of activations (attention written by hand or by
# SDPA), ArcFace's class weights (normalised, then in ``F.linear``: a product outside a layer)
# and DeBERTa's relative-position table (an embedding, projected by the mapped Q / K layers)
# 2-D or larger parameters in no product: neighbourhood attention's relative-position bias,
# slot attention's initial slots (a mean and a noise scale, the input of the slot layers)
_NOT_MATRICES = {"neighborhood-attention": ("rpb",), "slot-attention": ("mu", "log_sigma")}
# layers the integer re-implementation (conftest.reference_model) does not cover: a GRUCell
_NOT_EXACT = {"slot-attention"}
_DIGITAL = {
    "arcface": {"weight"},
    "deberta": {"rel", "model"},
    "cvt": {"model"},
    "maxvit": {"block_att", "grid_att"},
    "transformer-xl": {"model"},
    "slot-attention": {"model"},
}


def _build(name: str, dtype=torch.float32):
    return build_seeded(*ZOO17[name], dtype)


# the deploy (lossless, rram-22nm) and prepare tests of every model
(test_lossless_deploy_is_the_quantized_model_and_near_float,
 test_rram_deploy_runs_reports_and_accounts_for_every_matrix,
 test_prepare_steps_and_the_twin_deploys_to_what_it_computes) = zoo_deploy_tests(
    ZOO17, _build, _DIGITAL, not_matrices=_NOT_MATRICES, not_exact=_NOT_EXACT)


# ---------------------------------------------------------------------------------------------
# what it found
# ---------------------------------------------------------------------------------------------
class _LooseWeights(nn.Module):
    """A classifier whose only weight is applied functionally (``F.linear``), as ArcFace's head
    is: no layer to map."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 6))

    def forward(self, x):
        return F.linear(F.normalize(x), F.normalize(self.w))


def _unmappable(kind: str) -> tuple[nn.Module, list[str]]:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    if kind == "quantize_dynamic":
        with warnings.catch_warnings():  # torch.ao.quantization's deprecation
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(mlp, {nn.Linear}), []
    if kind == "excluded":
        return mlp, ["0", "2"]
    return _LooseWeights(), []


@pytest.mark.parametrize("kind", ["quantize_dynamic", "excluded", "loose weights"])
def test_prepare_refuses_a_model_with_no_mappable_layer_as_deploy_does(kind):
    """A model in which no layer maps (all int8 from ``quantize_dynamic``, all excluded, its
    weights applied by ``F.linear``): deploy refuses it naming what it kept digital, but
    ``prepare`` logged "no Linear/Conv layer was mapped" and returned a twin with nothing on the
    chip, trained in float; its ``deploy()`` refused only after the training. It refuses with
    deploy's error now. ``quantize_dynamic``'s modules were said to come from ``convert`` ("map
    the float model from before prepare/convert"): named as ``quantize_dynamic``'s now."""
    model, exclude = _unmappable(kind)
    x = torch.randn(3, 6)
    with pytest.raises(MappingError) as deployed:
        _quiet(cimsim.deploy, model, lossless_chip("channel"), x, exclude=exclude)
    with pytest.raises(MappingError) as prepared:
        _quiet(prepare, model, lossless_chip("channel"), x, exclude=exclude)
    assert str(prepared.value) == str(deployed.value)
    assert str(deployed.value).startswith("no layer can be mapped onto the arrays")
    if kind == "quantize_dynamic":
        assert re.search(r"0 \(quantized Linear: not mappable: 0: an int8 module of "
                         r"torch\.ao\.quantization\.quantize_dynamic .*from before "
                         r"quantize_dynamic", str(deployed.value))
    if kind == "loose weights":
        assert "w (3x6)" in str(deployed.value)


def _train(prep, x: torch.Tensor, steps: int, lr: float) -> None:
    """``steps`` SGD steps on the squared output of ``prep`` (training mode), left in eval."""
    opt = torch.optim.SGD([p for p in prep.parameters() if p.requires_grad], lr=lr)
    prep.train()
    for _ in range(steps):
        opt.zero_grad()
        prep(x).square().mean().backward()
        opt.step()
    prep.eval()


def _changes(f, x, first: int) -> torch.Tensor:
    """Which outputs move when the inputs from ``first`` on move."""
    x2 = x.clone()
    x2[:, first:] += 1.0
    with torch.no_grad():
        return (f(x2) - f(x)).abs().amax(0) > 0


def test_a_masked_layer_subclass_is_refused_pointing_at_prune_and_prune_maps_it():
    """MADE's masks held by an ``nn.Linear`` subclass (``F.linear(x, mask * weight)``): refused
    naming the layers, but the way out ("hold an nn.Linear in a module instead of subclassing
    it") led to the next refusal (the forward reading ``.weight`` of a mapped layer). It names
    ``prune.custom_from_mask`` now, which maps: the masked zeros stay zero on the lossless chip,
    through a prepare step and into its deployment, so output ``d`` still ignores inputs ``>= d``
    (on ``rram-22nm`` a zero programmed with device variation conducts a little)."""
    model, (x,) = build_seeded(lambda: MADE(subclass=True), lambda: (torch.randn(3, 5),),
                               torch.float64)
    with pytest.raises(MappingError, match=r"l1: MaskedLinear overrides Linear\.forward.*"
                                           r"prune\.custom_from_mask\(layer, 'weight', mask\)"):
        _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
    model, (x,) = _build("made", torch.float64)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
    blind = torch.tensor([True, True, True, False, False])  # outputs 0-2 see inputs 0-1 only
    assert not (_changes(sim, x, 2) & blind).any() and _changes(sim, x, 2)[3:].all()
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    _train(prep, x, steps=1, lr=0.5)
    for f in (prep, prep.deploy()):
        assert not (_changes(f, x, 2) & blind).any()
    # seen, left: on rram-22nm (conversion noise off) the masked zeros, programmed with device
    # variation, conduct: the outputs that must not see inputs 2-4 move a little
    rram = _quiet(cimsim.deploy, model, _rram_noise_free(), x)
    assert (_changes(rram, x, 2) & blind).any()


@pytest.mark.parametrize("api", ["parametrizations", "old hook"])
def test_a_frozen_weight_norm_magnitude_is_warned_naming_it(api):
    """DINO's head fixes its weight-normed last layer's magnitude ``g`` (``requires_grad =
    False``). The twin learns the weight the parametrization computes, so ``g`` trained with the
    direction, silently (the rows' norms move off 1, as the test shows). It is named in
    a warning with the way out; excluded, the layer trains in float as parametrized, ``g``
    fixed."""
    model, (x,) = _build("dino-head", torch.float64)
    frozen = "last_layer.parametrizations.weight.original0"
    if api == "old hook":
        with warnings.catch_warnings():  # torch's deprecation of the old hook
            warnings.simplefilter("ignore")
            model.last_layer = nn.utils.weight_norm(nn.Linear(4, 10, bias=False).double())
        model.last_layer.weight_g.data.fill_(1.0)
        model.last_layer.weight_g.requires_grad_(False)
        frozen = "last_layer.weight_g"
    with pytest.warns(UserWarning, match=rf"^prepare: {re.escape(frozen)} frozen .*exclude"):
        twin = prepare(model, lossless_chip("channel"), x)
    excluded = _quiet(prepare, model, lossless_chip("channel"), x, exclude=["last_layer"])
    for prep in (twin, excluded):
        _train(prep, x, steps=3, lr=1.0)
    with torch.no_grad():
        norms = excluded.float_model().last_layer.weight.norm(dim=1)
        moved = twin.float_model().last_layer.weight.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    assert (moved - 1).abs().max() > 0.01  # what the warning says: g trained in the twin


def test_an_excluded_pruned_layer_trains_under_its_mask():
    """``prepare`` copies the model with its pruning made permanent (the twins keep the mask);
    a pruned layer it leaves in float (excluded) then trained its pruned entries as any other
    (MADE's first layer moved off 0 where its mask is 0 in three steps: the float model
    read the future). Its copy gets the mask back, as in the user's model, and the float model
    and the deployment keep it."""
    model, (x,) = _build("made", torch.float64)
    mask = model.l1.weight_mask.clone()
    prep = _quiet(prepare, model, lossless_chip("channel"), x, exclude=["l1"])
    _train(prep, x, steps=3, lr=0.5)
    with torch.no_grad():
        trained = prep.float_model()
        assert not trained.l1.weight[mask == 0].any() and trained.l1.weight[mask == 1].all()
        blind = torch.tensor([True, True, True, False, False])
        for f in (prep, trained, prep.deploy()):
            assert not (_changes(f, x, 2) & blind).any()
    assert torch.equal(model.l1.weight_mask, mask)  # the user's model as it was


def _made_sparsified() -> MADE:
    """MADE with its masks as ``torch.ao.pruning``'s ``FakeSparsity`` parametrizations (what
    torch's sparsifiers attach) instead of ``prune`` hooks."""
    model = MADE()
    for layer in (model.l1, model.l2, model.l3):
        mask = layer.weight_mask.clone()
        prune.remove(layer, "weight")
        parametrize.register_parametrization(layer, "weight", FakeSparsity(mask))
    return model


def test_a_mask_held_by_a_parametrization_stays_zero_in_training():
    """deploy maps a parametrized weight as it computes it, and the twin learns that weight
    directly: a mask applied by a parametrization (``torch.ao.pruning``'s ``FakeSparsity``, a
    user's ``w * mask``) was not kept, its zeros trained away (after three steps MADE's every
    output moved with inputs it must not see, in the twin, its deployment and its float
    model). The entries a parametrization zeroes whatever its originals hold are kept at zero
    now, as a ``prune`` mask's; a parametrization zeroing nothing (weight norm) keeps none."""
    model, (x,) = build_seeded(_made_sparsified, lambda: (torch.randn(3, 5),), torch.float64)
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    _train(prep, x, steps=3, lr=0.5)
    blind = torch.tensor([True, True, True, False, False])
    with torch.no_grad():
        for f in (prep, prep.deploy(), prep.float_model()):
            assert not (_changes(f, x, 2) & blind).any()
    dino, (x,) = _build("dino-head", torch.float64)
    prep = _quiet(prepare, dino, lossless_chip("channel"), x)
    assert all(t.weight_keep is None for t in prep.twin_layers["last_layer"].matrices())

"""A thirteenth zoo (worktree ``zoo13``, after ``test_zoo12.py``): how a forward reaches its
layers and weights in ways the twelve earlier zoos did not try (models in ``zoo13_models.py``).
A ``torch.jit.trace`` d submodule, forward hooks of the keyword form (``with_kwargs=True``,
``always_call``, ``prepend``), ``torch.no_grad()`` / ``torch.inference_mode()`` inside the
forward, an EMA (momentum) teacher updated in training mode, a linear layer written as
``(x[:, None] * W).sum(-1)``, weights through ``torch.linalg.vecdot`` / ``torch.dot``, GFNet's
global (spectral) filter, Monarch matrices by ``torch.block_diag`` and ``torch.kron``, einsum
index orders ``'oi,bi->bo'`` / ``'bhd,hdo->bho'`` and ``torch.tensordot``, ``nn.Fold`` of
overlapping patches, a depthwise-separable ``Conv3d`` (circular, reflect + dilated + grouped
``'same'``), a bidirectional two-layer GRU on an unsorted PackedSequence, a pre-norm
bias-free ``nn.TransformerEncoderLayer`` with a function as its activation,
``F.scaled_dot_product_attention`` with ``scale=`` and ``is_causal``, layers reused on other
input shapes, ``F.conv_transpose1d`` / ``F.conv3d`` with Parameters, a LayerNorm's bound
``forward`` as an activation and ``Sequential`` slices, a custom ``autograd.Function``, and an
orthogonal parametrization under ``parametrize.cached()``; and, outside the registry, layers
called through a plain list or dict, a bound ``forward`` and a ``functools.partial``. (Lazy
layers, LSTM projections, ``add_zero_attn``, bfloat16, weight_norm / spectral_norm,
``functional_call``, ``torch.cdist`` codebooks, tied heads and ``index_add_`` experts are
earlier zoos'.)

What it found, fixed: a layer the forward reached through a reference the module tree does not
hold (``self.stages = [self.l1, self.l2]``, a dict of heads, ``self.embed = self.proj.forward``,
``functools.partial(self.out)``) computed in float with nothing said where it was also called as
an attribute (deploy replaced the layer in the tree only; alone it was the misleading "saw no
calibration data"): a ``MappingError`` names the layer and the way out, in deploy and prepare. A
weight matrix multiplied element-wise by an activation and summed or filtered, reaching no
matrix product (the hand-written linear layer, GFNet's filter; also the sixth zoo's GAT
attention vectors and the fifth's Mamba ``A``), and weights applied by ``torch.linalg.vecdot`` /
``torch.dot`` / ``vdot`` computed in float unnamed: they are listed digital, warned (learned
weights only: a float buffer so multiplied, a mask or Hyena's window, is none); so are weights
through ``Tensor.inner``, the in-place ``addmm_`` / ``addmv_`` / ``baddbmm_`` / ``addbmm_`` and
``torch.ops.aten.mm`` called through its packet. A traced or scripted submodule's parameters
were copied by torch as clones with gradient: ``prepare``'s optimiser refused them ("can't
optimize a non-leaf Tensor") and a backward through the twin reached the user's model; the copy
holds leaves now. ``add_lora`` gave the frozen EMA teacher trainable adapters and ``merge_lora``
unfroze its weights: a frozen layer gets no adapter now. A mapped layer's backward hooks (a
gradient reversal) were left behind by ``prepare``: they run on the twin now. RAOQ + LoRA on the
EMA teacher failed in autograd (a strict xfail until a frozen weight entered the twin's
quantizer as a copy: ``test_zoo13_methods.py``). (The
tests' integer re-implementation dropped a mapped layer's forward hooks; the simulated layer ran
them right: ``conftest._set_child`` carries them now.) The three registry tests are
``zoo_tests.zoo_deploy_tests``, which the twelfth zoo's use too."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import MappingError
from cimsim.mapping.functional import SCALED_REASON
from cimsim.train import prepare

from .conftest import (
    assert_bitwise,
    build_seeded,
    flat_output,
    lossless_chip,
    reference_model,
)
from .test_zoo5 import _quiet
from .zoo13_models import (
    BoundForward,
    CachedOrthogonal,
    ConvTransposeFunctional,
    CustomAutogradLinear,
    EinsumOrders,
    EMATeacher,
    FoldPatches,
    GlobalFilter,
    GradModes,
    KwargHooks,
    MethodActivation,
    Monarch,
    NormFirstEncoder,
    PackedBiGRU,
    PlainListLayers,
    ReusedShapes,
    SDPAVariants,
    SeparableConv3d,
    SumProductLinear,
    TracedBranch,
    VecdotProducts,
)
from .zoo_tests import zoo_deploy_tests

flat = flat_output

ZOO13 = {
    "traced": (TracedBranch, lambda: (torch.randn(3, 6),)),
    "kwarg-hooks": (KwargHooks, lambda: (torch.randn(3, 6),)),
    "grad-modes": (GradModes, lambda: (torch.randn(3, 6),)),
    "ema-teacher": (EMATeacher, lambda: (torch.randn(3, 6),)),
    "sum-product": (SumProductLinear, lambda: (torch.randn(3, 6),)),
    "vecdot": (VecdotProducts, lambda: (torch.randn(3, 6),)),
    "global-filter": (GlobalFilter, lambda: (torch.randn(3, 4, 4, 4),)),
    "monarch": (Monarch, lambda: (torch.randn(3, 6),)),
    "einsum-orders": (EinsumOrders, lambda: (torch.randn(3, 6),)),
    "fold": (FoldPatches, lambda: (torch.randn(3, 2, 6, 6),)),
    "separable-3d": (SeparableConv3d, lambda: (torch.randn(3, 4, 4, 5, 5),)),
    "packed-bigru": (PackedBiGRU, lambda: (torch.randn(3, 5, 4), torch.tensor([3, 5, 2]))),
    "norm-first": (NormFirstEncoder, lambda: (torch.randn(3, 5, 8),)),
    "sdpa-variants": (SDPAVariants, lambda: (torch.randn(3, 5, 8),)),
    "reused-shapes": (ReusedShapes, lambda: (torch.randn(3, 2, 8, 8),)),
    "conv-transpose-fn": (ConvTransposeFunctional, lambda: (torch.randn(3, 3, 5),)),
    "method-activation": (MethodActivation, lambda: (torch.randn(3, 6),)),
    "custom-autograd": (CustomAutogradLinear, lambda: (torch.randn(3, 6),)),
    "cached-orthogonal": (CachedOrthogonal, lambda: (torch.randn(3, 6),)),
}

# what stays digital, by name: the traced submodule (its compiled layers), the weights applied
# outside a mappable module (block_diag / kron factors, einsum / tensordot, functional convs,
# a custom autograd.Function, dot products, element-wise products), the attention products of
# the module whose forward computes them
_DIGITAL = {
    "traced": {"body"},
    "sum-product": {"weight"},
    "vecdot": {"w_dot", "w_vecdot"},
    "global-filter": {"filter"},
    "monarch": {"k1", "k2", "l_blocks", "r_blocks"},
    "einsum-orders": {"w_hdo", "w_oi", "w_td"},
    "norm-first": {"enc.layers.0.self_attn", "enc.layers.1.self_attn"},
    "sdpa-variants": {"model"},
    "conv-transpose-fn": {"k3", "up"},
    "custom-autograd": {"weight"},
}
# a 3-output head on a signed 8-wide input, the only mapped layer: rram-22nm's conversion
# noise is 1.01 of its outputs' norm (3 samples; 0.64 on 64), noise-free 0.053
_NOISE_FREE = {"einsum-orders"}
# the integer re-implementation covers Linear / Conv1d / Conv2d / MHA: not Conv3d, not the GRU
_NOT_EXACT = {"separable-3d", "packed-bigru"}


def _build(name: str, dtype=torch.float32):
    return build_seeded(*ZOO13[name], dtype)


# the deploy (lossless, rram-22nm) and prepare tests of every model
(test_lossless_deploy_is_the_quantized_model_and_near_float,
 test_rram_deploy_runs_reports_and_accounts_for_every_matrix,
 test_prepare_steps_and_the_twin_deploys_to_what_it_computes) = zoo_deploy_tests(
    ZOO13, _build, _DIGITAL, noise_free=_NOISE_FREE, not_exact=_NOT_EXACT)


# ---------------------------------------------------------------------------------------------
# what it found
# ---------------------------------------------------------------------------------------------
class _AlsoCalled(nn.Module):
    """``fc`` called as an attribute, then again through ``how``: a plain list, a dict, its
    bound ``forward``, a ``functools.partial``, or its weight kept in a plain list."""

    def __init__(self, how: str):
        super().__init__()
        self.fc, self.head = nn.Linear(6, 6), nn.Linear(6, 3)
        self.how = how
        self.refs = {"list": [self.fc], "dict": {"fc": self.fc}, "bound": self.fc.forward,
                     "partial": functools.partial(self.fc), "weight": [self.fc.weight]}[how]

    def forward(self, x):
        h = torch.relu(self.fc(x))
        if self.how == "list":
            h = self.refs[0](h)
        elif self.how == "dict":
            h = self.refs["fc"](h)
        elif self.how == "weight":
            h = h @ self.refs[0].t()
        else:
            h = self.refs(h)
        return self.head(h)


@pytest.mark.parametrize("how", ["list", "dict", "bound", "partial", "weight"])
@pytest.mark.parametrize("run", ["deploy", "prepare"])
def test_a_layer_reached_outside_the_module_tree_is_refused_naming_it(how, run):
    """A layer called as ``self.fc(x)`` and again through a reference the module tree does not
    hold: deploy (and prepare) replaced it in the tree only, so the second call computed in
    float with the float weights, nothing listed (lossless deploy 0.45 % off float, "exact").
    It is a ``MappingError`` naming the layer and the way out; excluded, the layer stays
    digital, listed, and the rest maps."""
    torch.manual_seed(0)
    model, x = _AlsoCalled(how).eval(), torch.randn(4, 6)
    go = cimsim.deploy if run == "deploy" else prepare
    with pytest.raises(MappingError, match=r"^fc: the forward calls the original float layer "
                                           r"through a reference the module tree does not hold"
                                           r".*nn\.ModuleList"):
        _quiet(go, model, lossless_chip("channel"), x)
    out = _quiet(go, model, lossless_chip("channel"), x, exclude=["fc"])
    # a bound forward or the weight itself computes outside fc's call: the root's product too
    more = [("model", "activation products")] if how in ("bound", "weight") else []
    assert [d[:2] for d in out.digital] == [("fc", "Linear"), *more]


@pytest.mark.parametrize("make", [PlainListLayers, BoundForward])
def test_layers_reached_only_outside_the_tree_are_named_not_uncalibrated(make):
    """Layers called only through a plain list / dict, a bound ``forward`` or a partial: the
    refusal said "saw no calibration data: it was never reached" (it was, by the float
    original); it says what reached it now."""
    torch.manual_seed(0)
    with pytest.raises(MappingError, match="through a reference the module tree does not hold"):
        _quiet(cimsim.deploy, make().eval(), lossless_chip("channel"), torch.randn(4, 6))


def test_a_direct_forward_call_on_the_layer_is_simulated():
    """``self.fc.forward(h)`` on the attribute reaches the simulated layer (the tree's): no
    refusal, the lossless deploy equals the integer re-implementation."""

    class Direct(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.head = nn.Linear(6, 6), nn.Linear(6, 3)

        def forward(self, x):
            return self.head(torch.relu(self.fc.forward(torch.relu(self.fc(x)))))

    torch.manual_seed(0)
    model, x = Direct().eval(), torch.randn(4, 6)
    sim = cimsim.deploy(model, lossless_chip("channel"), x)
    with torch.no_grad():
        assert_bitwise(sim(x), reference_model(model, sim)(x))


@pytest.mark.parametrize("run", ["deploy", "prepare"])
@pytest.mark.parametrize("name", ["sum-product", "global-filter"])
def test_a_weight_matrix_multiplied_element_wise_is_named(name, run):
    """``(x[:, None] * W).sum(-1)`` and GFNet's ``rfft2(x) * W`` multiply a weight matrix by an
    activation element-wise and reach no matrix product: the weight computed in float,
    unnamed (check_every_matrix failed). It is listed with the reason and warned."""
    model, args = _build(name)
    go = cimsim.deploy if run == "deploy" else prepare
    with pytest.warns(UserWarning, match=r"multiplied element-wise by an activation"):
        out = go(model, lossless_chip("channel"), args)
    (row,) = out.digital
    assert row == (next(iter(_DIGITAL[name])), "parameter", SCALED_REASON)


def test_a_float_mask_buffer_multiplied_element_wise_is_no_weight():
    """A 2-D float buffer multiplied element-wise by an activation (a causal mask as floats,
    Hyena's decay window) is no learned weight: nothing is listed for it (the element-wise
    rule names parameters only), the attention's product is its module's row."""

    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.qk = nn.Linear(6, 12)
            self.register_buffer("mask", torch.ones(4, 4).tril())

        def forward(self, x):  # (B, 4, 6)
            q, k = self.qk(x).chunk(2, dim=-1)
            return (q @ k.transpose(1, 2)) * self.mask

    torch.manual_seed(0)
    sim = _quiet(cimsim.deploy, Masked().eval(), lossless_chip("channel"), torch.randn(3, 4, 6))
    assert [d[:2] for d in sim.digital] == [("model", "activation products")]


@pytest.mark.parametrize("how", ["dot", "vdot", "Tensor.dot", "vecdot"])
def test_weights_through_dot_products_are_named(how):
    """``torch.dot`` / ``torch.vdot`` / ``Tensor.dot`` on a weight's rows and
    ``torch.linalg.vecdot`` against a weight computed in float unnamed (not in the watched
    products): named now, as a product's weight."""

    class Dotted(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(5, 6))
            self.head = nn.Linear(5, 3)

        def forward(self, x):
            if how == "vecdot":
                h = torch.linalg.vecdot(x[:, None, :], self.w)
            else:
                dot = {"dot": torch.dot, "vdot": torch.vdot, "Tensor.dot": torch.Tensor.dot}[how]
                h = torch.stack([torch.stack([dot(row, r) for row in self.w]) for r in x])
            return self.head(h)

    torch.manual_seed(0)
    model = Dotted().eval()
    with pytest.warns(UserWarning, match=r"1 weight\(s\) reach a matrix product"):
        sim = cimsim.deploy(model, lossless_chip("channel"), torch.randn(4, 6))
    assert [d[:2] for d in sim.digital] == [("w", "parameter")]


@pytest.mark.parametrize("how", ["inner", "addmm_", "addmv_", "baddbmm_", "addbmm_",
                                 "aten.mm", "aten.addmm"])
def test_weights_through_in_place_method_and_aten_packet_spellings_are_named(how):
    """``x.inner(W)``, the in-place bias-first products (``b.clone().addmm_(x, Wᵀ)`` and
    ``addmv_`` / ``baddbmm_`` / ``addbmm_``) and an aten operator called through its packet
    (``torch.ops.aten.mm(x, Wᵀ)``, not ``.default``) computed in float unnamed: the weight is
    named, the bias not; the in-place result is an activation (a weight after it is named
    alone, not the bias the result was written into)."""

    class Spelt(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(5, 6))
            self.b = nn.Parameter(torch.zeros(5))
            self.w2 = nn.Parameter(torch.randn(5, 5))
            self.head = nn.Linear(5, 3)

        def forward(self, x):
            n, wt = len(x), self.w.t()
            h = {"inner": lambda: x.inner(self.w),
                 "addmm_": lambda: self.b.expand(n, 5).clone().addmm_(x, wt),
                 "addmv_": lambda: torch.stack([self.b.clone().addmv_(self.w, r) for r in x]),
                 "baddbmm_": lambda: self.b.expand(n, 1, 5).clone().baddbmm_(
                     x[:, None], wt.expand(n, 6, 5))[:, 0],
                 "addbmm_": lambda: torch.stack([self.b[None].clone().addbmm_(
                     r[None, None], wt[None])[0] for r in x]),
                 "aten.mm": lambda: torch.ops.aten.mm(x, wt),
                 "aten.addmm": lambda: torch.ops.aten.addmm(self.b, x, wt)}[how]()
            return self.head(h @ self.w2)

    torch.manual_seed(0)
    sim = _quiet(cimsim.deploy, Spelt().eval(), lossless_chip("channel"), torch.randn(4, 6))
    assert [d[:2] for d in sim.digital] == [("w", "parameter"), ("w2", "parameter")]


@pytest.mark.parametrize("compile_", ["trace", "script"])
def test_a_compiled_submodule_trains_in_the_twin_apart_from_the_users_model(compile_):
    """torch copies a TorchScript module's parameters as clones with gradient: prepare's
    optimiser refused them ("can't optimize a non-leaf Tensor") and a backward through the
    twin put gradients on the user's model. The twin's are leaves, trainable as they were
    (a frozen one stays frozen), and the user's model gets no gradient."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8))
    body[2].requires_grad_(False)
    compiled = (torch.jit.trace(body, torch.randn(2, 6)) if compile_ == "trace"
                else torch.jit.script(body))
    model = nn.Sequential(compiled, nn.Linear(8, 3)).eval()
    x = torch.randn(4, 6)
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    params = dict(prep.named_parameters())
    assert all(p.is_leaf for p in params.values())
    assert [n for n, p in params.items() if n.startswith("model.0.") and p.requires_grad] == [
        "model.0.0.weight", "model.0.0.bias"]
    opt = torch.optim.SGD(prep.parameters(), lr=0.1)
    prep.train()(x).pow(2).mean().backward()
    opt.step()
    assert all(p.grad is None for p in model.parameters())
    assert params["model.0.0.weight"].grad is not None


@pytest.mark.parametrize("hook", ["full_backward", "full_backward_pre"])
def test_a_mapped_layers_backward_hooks_run_in_the_twin(hook):
    """A gradient reversal (DANN's GRL as a full backward hook negating the input gradient) or a
    backward pre-hook scaling the output gradient, on a mapped layer: ``prepare`` carried the
    forward hooks to the twin, not the backward ones, so the twin trained without them (the
    feature layer's gradient not reversed, nothing said). The twin's gradient is the hook-free
    twin's, reversed (or scaled), exactly."""

    def build(hooked: bool):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()
        if hooked and hook == "full_backward":
            model[2].register_full_backward_hook(lambda m, gi, go: (-gi[0],))
        elif hooked:
            model[2].register_full_backward_pre_hook(lambda m, go: (go[0] * 0.5,))
        return model

    x = torch.randn(4, 6, dtype=torch.float64)
    grads = []
    for hooked in (False, True):
        prep = _quiet(prepare, build(hooked), lossless_chip("channel"), x)
        prep.train()(x).pow(2).sum().backward()
        grads.append(prep.model[0].twins[0].weight.grad)
    factor = -1.0 if hook == "full_backward" else 0.5
    torch.testing.assert_close(grads[1], factor * grads[0], rtol=0, atol=0)


def test_lora_leaves_a_frozen_layer_frozen():
    """The EMA teacher is frozen (``requires_grad_(False)``) and ``prepare`` keeps its twins
    frozen; ``add_lora`` gave them trainable adapters (a gradient step moved the teacher) and
    ``merge_lora`` then unfroze their weights. They get no adapter now, named, and their
    weights and biases stay frozen through the merge; the student's train as before."""
    from cimsim.train.lora import add_lora, merge_lora

    model, args = _build("ema-teacher", torch.float64)
    prep = _quiet(prepare, model, lossless_chip("channel"), args)
    with pytest.warns(UserWarning, match=r"no adapter on teacher\.0, teacher\.2: frozen"):
        params = add_lora(prep, 2)
    assert len(params) == 4  # student.0 and student.2: A and B each
    assert [n for n, _ in prep.named_parameters() if "lora" in n] == [
        f"model.student.{i}.twins.0.lora.{ab}" for i in (0, 2) for ab in "AB"]
    merge_lora(prep)
    # weights and biases (the twins' own scales keep their options: trainable)
    trainable = {n for n, p in prep.named_parameters()
                 if p.requires_grad and n.endswith((".weight", ".bias"))}
    assert trainable == {f"model.student.{i}.twins.0.{wb}" for i in (0, 2)
                         for wb in ("weight", "bias")}


def test_the_audit_script_runs_one_zoo_by_name(capsys):
    """``scripts/audit_models_on_chips.py --zoo zoo13``: the registry's models, and only
    those."""
    from scripts.audit_models_on_chips import main

    assert main(["--zoo", "zoo13", "--chips", "ideal", "--list"]) == 0
    models = capsys.readouterr().out.splitlines()[0].split()[1:]
    assert models == list(ZOO13)

"""A twenty-second zoo (worktree ``zoo22``, after ``test_zoo21.py``): model families at toy size
that the twenty-one earlier zoos did not build, chosen for unusual ways a weight reaches its
product (models in ``zoo22_models.py``). Weights held by torch machinery: an ``nn.Linear``
holding an int8 tensor-subclass weight (dequantized by the subclass in every operation, as
torchao's ``quantize_`` leaves a plain ``nn.Linear``), expRNN's ``nn.RNN`` with an orthogonal
``weight_hh_l0`` by ``parametrizations.orthogonal``, attention whose packed ``in_proj_weight``
is weight-normed by the parametrization API, LoRA as a parametrization of frozen Linears
(minLoRA's way). Weights in products no layer holds: an RBF network's centres (a hand-written
squared distance), additive attention's 1-D scoring vector, a learned canvas filtered by
kernels generated from the input (the weight as ``F.conv1d``'s input), a transition matrix
``expand`` ed over the batch for ``torch.bmm``, a Toeplitz mixer gathered from learned
coefficients by a constant index, LightConv's softmax-normalised kernel shared by every
channel, a filter applied by scipy inside a custom ``autograd.Function`` (torch's tutorial
"Creating Extensions Using numpy and scipy"). Calls in other forms: a generator submodule and a
tuple used partly, SimSiam's encoder called with and without ``torch.no_grad()``. All fourteen
pass the lossless, ``rram-22nm`` and ``prepare`` checks and every training method as written.

What it found around them, fixed: the int8 tensor-subclass weight crashed deploy and
``prepare`` deep inside torch (``.numpy() is not supported for tensor subclasses``, no layer
named; with a subclass lacking ``clone``, in ``deepcopy``): the layer is kept digital now,
computing as the subclass does, its row naming the subclass and the way out. The orthogonal
recurrent weight crashed both in ``deepcopy`` ("Only Tensors created explicitly by the user
(graph leaves) support the deepcopy protocol"): torch's recurrent layers cache their weights
in ``_flat_weights``, a parametrized one as computed with gradient by ``.to()`` or a forward;
the copy takes them detached and the layer maps the orthogonal matrix bit for bit. The RBF
network's centres, subtracted from the activation broadcast over their rows and squared,
computed every sample's distance to every centre in float with nothing listed (``torch.cdist``
of the same was named): a weight broadcast against an activation by a difference and then
reduced by a magnitude (a square, an absolute value, a norm, the difference times itself) is
named as a distance's weight now; a table added within the activation's shape (a position
embedding before a hand-written RMSNorm) stays silent. The scipy filter computed in float with
nothing listed (what NumPy computes no watch sees): a learned weight matrix read out of torch
in the forward (``.numpy()``, ``.tolist()``) is named now, a 1-D one stays silent. A
sparse adjacency buffer (LightGCN's) crashed deploy and ``prepare`` inside torch when the
buffers were set back after the calibration pass (``aten::equal`` has no sparse kernel), and
its ``torch.sparse.mm`` with the embedding table computed in float unnamed: it deploys and
names both, as with a dense adjacency. A
tensor-subclass weight applied by ``F.linear`` outside a module went unnamed, its product
listed as one of activations (the watch keys weights by storage, which a wrapper subclass has
none of): keyed by the storage it wraps now. Beside the zoo, an optimizer step fused
into the backward (``register_post_accumulate_grad_hook``, torch's memory-saving recipe)
stepped nothing through ``prepare``'s twin (its copies of the weights carry no hooks), silently:
``prepare`` refuses it, naming the parameters and the way out. Seen, by design: a mapped
layer called through its class (``nn.Linear.forward(self.mid, x)``) reads its weight and is
refused naming it (``WeightReadError``); a layer inside ``torch.func.jvp`` is refused as under
every ``torch.func`` transform; a bfloat16 layer in a float32 model deploys, and ``prepare``
refuses it naming the layer (its integer arithmetic needs float32 or float64). A mapped layer
on a forward-mode dual tensor (``torch.autograd.forward_ad``: a Jacobian-vector product in the
forward) returned no tangent, and the model's code failed on it with a bare ``TypeError``: a
``MappingError`` names the layer now, as under a ``torch.func`` transform. Seen, left: a
weight applied inside a ``torch.jit.script`` ed free function computes in float unlisted (the
watch sees no TorchScript call); reading ``layer._parameters['weight']`` of a mapped layer is
a bare ``KeyError``."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

import cimsim
from cimsim.errors import MappingError
from cimsim.train import prepare

from .conftest import assert_bitwise, build_seeded, lossless_chip
from .test_zoo5 import _quiet
from .test_zoo17 import _train
from .zoo22_models import (
    AdditiveAttention,
    DynamicFilterCanvas,
    ExpandedBmm,
    GeneratorAndTuple,
    LightConv,
    LightGCN,
    LoRAByParametrization,
    NumpyExtension,
    OrthogonalRNN,
    RBFNetwork,
    SimSiam,
    SubclassWeight,
    ToeplitzMixer,
    WeightNormedAttention,
    quantize_weight_,
)
from .zoo_tests import zoo_deploy_tests

ZOO22 = {
    "tensor-subclass-weight": (SubclassWeight, lambda: (torch.randn(3, 6),)),
    "orthogonal-rnn": (OrthogonalRNN, lambda: (torch.randn(3, 5, 4),)),
    "weight-normed-attention": (WeightNormedAttention, lambda: (torch.randn(3, 5, 4),)),
    "lora-parametrization": (LoRAByParametrization, lambda: (torch.randn(3, 6),)),
    "rbf-network": (RBFNetwork, lambda: (torch.randn(3, 4),)),
    "additive-attention": (AdditiveAttention, lambda: (torch.randn(3, 5, 4),)),
    "dynamic-filter-canvas": (DynamicFilterCanvas, lambda: (torch.randn(3, 6),)),
    "expanded-bmm": (ExpandedBmm, lambda: (torch.randn(3, 5, 4),)),
    "toeplitz-mixer": (ToeplitzMixer, lambda: (torch.randn(3, 5, 4),)),
    "lightconv": (LightConv, lambda: (torch.randn(3, 2, 7),)),
    "numpy-extension": (NumpyExtension, lambda: (torch.randn(3, 6),)),
    "lightgcn": (LightGCN, lambda: (torch.tensor([[0, 1], [1, 3], [3, 4]]),)),
    "generator-and-tuple": (GeneratorAndTuple, lambda: (torch.randn(3, 4),)),
    "simsiam": (SimSiam, lambda: (torch.randn(3, 6),)),
}

_DIGITAL: dict[str, set[str]] = {
    "tensor-subclass-weight": {"mid"},
    "weight-normed-attention": {"mha"},
    "rbf-network": {"centres"},
    "additive-attention": {"v"},
    "dynamic-filter-canvas": {"canvas"},
    "expanded-bmm": {"transition"},
    "toeplitz-mixer": {"coef"},
    "lightconv": {"kernel"},
    "numpy-extension": {"filt"},
    "lightgcn": {"emb", "emb.weight", "adj"},
}

# layers the integer reference (``conftest.reference_model``) does not re-implement: a
# recurrent layer (``test_recurrent.py`` holds it bit-exact; the orthogonal one below)
_NOT_EXACT = ("orthogonal-rnn",)


def _build(name: str, dtype=torch.float32):
    return build_seeded(*ZOO22[name], dtype)


# the deploy (lossless, rram-22nm) and prepare tests of every model
(test_lossless_deploy_is_the_quantized_model_and_near_float,
 test_rram_deploy_runs_reports_and_accounts_for_every_matrix,
 test_prepare_steps_and_the_twin_deploys_to_what_it_computes) = zoo_deploy_tests(
    ZOO22, _build, _DIGITAL, not_exact=_NOT_EXACT)


# ---------------------------------------------------------------------------------------------
# what it found
# ---------------------------------------------------------------------------------------------
def test_a_tensor_subclass_weight_keeps_its_layer_digital_naming_it():
    """An ``nn.Linear`` holding a tensor-subclass weight (int8 with a scale per row, as
    torchao's ``quantize_`` leaves one): mapping it crashed deep in torch (``.numpy()`` of a
    subclass), no layer named. Deploy and ``prepare`` keep it digital, naming the subclass and
    the way out, and compute as the subclass does."""
    model, (x,) = _build("tensor-subclass-weight", torch.float64)
    for fn in (cimsim.deploy, prepare):
        sim = _quiet(fn, model, lossless_chip("channel"), x)
        rows = {d[0]: d[2] for d in sim.digital}
        assert set(rows) == {"mid"}
        assert "tensor subclass (Int8Weight" in rows["mid"], rows
        assert "dense weight" in rows["mid"]
        with torch.no_grad():
            torch.testing.assert_close(sim.eval()(x), model(x), rtol=0.03, atol=0.03)
    # with the dense weight it maps
    model.mid.weight = nn.Parameter(model.mid.weight.detach().dequantize())
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
    assert "mid" in sim.sim_layers and not sim.digital


class _TaggedParameter(nn.Parameter):
    """A ``Parameter`` subclass that only marks its tensors (as training frameworks tag
    weights for their optimiser or sharding): a plain weight."""


def test_a_parameter_subclass_only_tagging_its_weight_maps():
    """The tensor-subclass check keeps digital what computes its own way, not a marker class:
    a Linear whose weight is a tagging ``Parameter`` subclass maps, deploy and ``prepare``."""
    model, (x,) = _build("tensor-subclass-weight", torch.float64)
    dense = model.mid.weight.detach().dequantize()
    model.mid.weight = _TaggedParameter(dense)
    for fn in (cimsim.deploy, prepare):
        sim = _quiet(fn, model, lossless_chip("channel"), x)
        assert not sim.digital
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
    model.mid.weight = nn.Parameter(dense)
    assert_bitwise(sim(x), _quiet(cimsim.deploy, model, lossless_chip("channel"), x)(x))


class _FunctionalInt8(nn.Module):
    """The int8 tensor-subclass weight held by the model itself, applied by ``F.linear``."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(6, 8)
        layer = nn.Linear(8, 8)
        quantize_weight_(layer)
        self.qweight = layer.weight
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.relu(F.linear(torch.relu(self.inp(x)), self.qweight)))


def test_a_tensor_subclass_weight_used_functionally_is_named():
    """A tensor-subclass weight in ``F.linear`` outside a module: the watch keys a weight by
    its storage, which a wrapper subclass has none of, so the weight went unnamed and its
    product was listed as one of activations. It is named now (by the storage it wraps)."""
    model, (x,) = build_seeded(_FunctionalInt8, lambda: (torch.randn(3, 6),))
    for fn in (cimsim.deploy, prepare):
        sim = _quiet(fn, model, lossless_chip("channel"), x)
        assert {d[0]: d[1] for d in sim.digital} == {"qweight": "parameter"}


def test_a_parametrized_recurrent_weight_is_copied_and_mapped_as_computed():
    """expRNN's orthogonal ``weight_hh_l0``: torch's ``_flat_weights`` cache held it computed
    with gradient (after ``.to()``), so deploy's and ``prepare``'s copy failed inside torch's
    ``deepcopy``. It copies now, and the chip computes with the orthogonal matrix: bit for bit
    what the same RNN holding that matrix as a plain parameter deploys to; ``prepare`` trains
    it (the twin learns the weight computed, as for every parametrization)."""
    model, (x,) = _build("orthogonal-rnn", torch.float64)
    plain, _ = _build("orthogonal-rnn", torch.float64)
    parametrize.remove_parametrizations(plain.rnn, "weight_hh_l0", leave_parametrized=True)
    w = plain.rnn.weight_hh_l0.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(w.shape[0], dtype=w.dtype), atol=1e-6, rtol=0)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
    want = _quiet(cimsim.deploy, plain, lossless_chip("channel"), x)
    assert list(sim.sim_layers) == ["rnn", "head"]
    assert_bitwise(sim(x), want(x))
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    _train(prep, x, steps=1, lr=0.1)
    tuned = prep.float_model()  # the twin learns the weight computed (as for weight_norm)
    assert not torch.equal(tuned.rnn.weight_hh_l0, w)
    with torch.no_grad():
        torch.testing.assert_close(tuned(x), prep.eval()(x), rtol=0.1, atol=0.1)


class _Distance(nn.Module):
    """A weight matrix compared with each sample by a hand-written distance (``how``), or
    (``'position'``) a position table added to the tokens, then a hand-written RMSNorm."""

    def __init__(self, how: str):
        super().__init__()
        self.inp = nn.Linear(4, 4)
        self.table = nn.Parameter(torch.randn(5, 4))
        self.head = nn.Linear(5 if how != "position" else 4, 2)
        self.how = how

    def forward(self, x):  # (B, 5, 4)
        h = self.inp(x)
        if self.how == "position":
            h = h + self.table  # (B, 5, 4): within the activation's shape
            h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
            return self.head(h.mean(1))
        diff = h.mean(1)[:, None, :] - self.table  # (B, 5, 4): every sample, every row
        if self.how == "square":
            d = diff.pow(2).sum(-1)
        elif self.how == "abs":
            d = diff.abs().sum(-1)
        elif self.how == "norm":
            d = torch.linalg.vector_norm(diff / 2.0, dim=-1)
        else:  # "self-product"
            d = (diff * diff).sum(-1)
        return self.head(torch.exp(-d))


@pytest.mark.parametrize("how", ["square", "abs", "norm", "self-product", "position"])
def test_a_weight_compared_with_an_activation_by_a_distance_is_named(how):
    """An RBF network's centres reached no product: subtracted from the activation broadcast
    over their rows and squared, they computed each distance in float unlisted (``torch.cdist``
    was named). A weight so broadcast and reduced by a magnitude is named now, as a distance's
    weight, in deploy and ``prepare``; a table added within the activation's shape and then
    normalised by a hand-written RMSNorm (no distance) stays silent."""
    model, (x,) = build_seeded(lambda: _Distance(how), lambda: (torch.randn(3, 5, 4),))
    for fn in (cimsim.deploy, prepare):
        sim = _quiet(fn, model, lossless_chip("channel"), x)
        rows = {d[0]: d[1] for d in sim.digital}
        assert rows == ({} if how == "position" else {"table": "parameter"}), rows


def test_a_sparse_adjacency_buffer_deploys_and_its_products_are_named_as_dense_ones():
    """LightGCN's normalised adjacency as a sparse COO buffer: setting the buffers back after
    the calibration pass failed inside torch (``aten::equal`` has no sparse kernel), deploy and
    ``prepare`` alike; and ``torch.sparse.mm`` of the embedding table computed in float
    unnamed. The model deploys, listing what the same model with a dense adjacency lists."""
    rows = {}
    for sparse in (True, False):
        model, (pairs,) = build_seeded(lambda sparse=sparse: LightGCN(sparse=sparse),
                                       lambda: (torch.tensor([[0, 1], [1, 3], [3, 4]]),))
        for fn in (cimsim.deploy, prepare):
            sim = _quiet(fn, model, lossless_chip("channel"), pairs)
            rows[sparse, fn] = {d[0]: d[1] for d in sim.digital}
            with torch.no_grad():
                torch.testing.assert_close(sim.eval()(pairs), model(pairs), rtol=0.03,
                                           atol=0.03)
        assert rows[sparse, cimsim.deploy] == rows[sparse, prepare]
    assert rows[True, cimsim.deploy] == rows[False, cimsim.deploy] == {
        "emb": "Embedding", "emb.weight": "parameter", "adj": "buffer"}


class _ReadOut(nn.Module):
    """A learned matrix (``how``: ``'numpy'`` or ``'tolist'``) or a learned 1-D vector
    (``'vector'``) read out of torch in the forward and computed with there."""

    def __init__(self, how: str):
        super().__init__()
        self.inp = nn.Linear(4, 4)
        self.w = nn.Parameter(torch.randn(4, 4) if how != "vector" else torch.randn(4))
        self.head = nn.Linear(4, 2)
        self.how = how

    def forward(self, x):
        h = self.inp(x).detach()
        if self.how == "numpy":
            y = torch.as_tensor(h.numpy() @ self.w.detach().numpy().T)
        elif self.how == "tolist":
            y = torch.tensor([[sum(a * b for a, b in zip(row, col, strict=True))
                               for col in self.w.tolist()] for row in h.tolist()])
        else:  # a learned vector as numbers (boundaries, a scale): no matrix computed unseen
            y = h * torch.tensor(self.w.tolist())
        return self.head(y.to(x.dtype))


@pytest.mark.parametrize("how", ["numpy", "tolist", "vector"])
def test_a_weight_matrix_read_out_of_torch_in_the_forward_is_named(how):
    """A learned filter applied by scipy inside a custom ``autograd.Function`` (torch's
    NumPy-extension tutorial) computed in float with nothing listed: no watch sees what NumPy
    computes. A learned weight matrix read out of torch in the forward (``.numpy()``,
    ``.tolist()``) is named now; a 1-D one (numbers: boundaries, a scale) stays silent."""
    model, (x,) = build_seeded(lambda: _ReadOut(how), lambda: (torch.randn(3, 4),))
    for fn in (cimsim.deploy, prepare):
        sim = _quiet(fn, model, lossless_chip("channel"), x)
        rows = {d[0]: d[1] for d in sim.digital}
        assert rows == ({} if how == "vector" else {"w": "parameter"}), rows


class _StepInBackward(nn.Module):
    """An MLP whose parameters step in their post-accumulate gradient hooks (torch's recipe
    for fusing the optimizer into the backward)."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(6, 8)
        self.head = nn.Linear(8, 3)
        self.optimizers = {p: torch.optim.SGD([p], lr=0.1) for p in self.parameters()}
        for p in self.parameters():
            p.register_post_accumulate_grad_hook(self._step)

    def _step(self, p):
        self.optimizers[p].step()
        self.optimizers[p].zero_grad()

    def forward(self, x):
        return self.head(torch.relu(self.inp(x)))


def test_an_optimizer_step_in_the_backward_is_refused_by_prepare_naming_it():
    """Parameters stepping in ``register_post_accumulate_grad_hook`` s: the twins train their
    own copies, which carry no hook, so a backward through the prepared model stepped nothing
    (the model's own backward steps every weight). ``prepare`` refuses naming them; deploy,
    which trains nothing, deploys it."""
    model, (x,) = build_seeded(_StepInBackward, lambda: (torch.randn(3, 6),))
    with pytest.raises(MappingError, match=r"prepare: inp\.weight, inp\.bias, head\.weight, "
                                           r"head\.bias carr\(ies\) a post-accumulate .*"
                                           r"optimizer over the prepared model's parameters"):
        prepare(model, lossless_chip("channel"), x)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
    assert list(sim.sim_layers) == ["inp", "head"]


class _ClassCall(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 4)
        self.mid = nn.Linear(4, 4)

    def forward(self, x):
        return nn.Linear.forward(self.mid, torch.relu(self.inp(x)))


class _Jvp(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        y, jv = torch.func.jvp(self.f, (x,), (torch.ones_like(x),))
        return self.head(torch.cat([y, jv], -1))


class _ForwardAD(_Jvp):
    def forward(self, x):
        with fwAD.dual_level():
            out = fwAD.unpack_dual(self.f(fwAD.make_dual(x, torch.ones_like(x))))
            y, jv = out.primal, out.tangent
        return self.head(torch.cat([y, jv], -1))


@pytest.mark.parametrize("make, exclude, match", [
    (_ClassCall, ["mid"], r"mid: the model reads \.weight .*exclude"),
    (_Jvp, ["f.0", "f.2"], r"f\.0: called inside a torch\.func transform .*exclude"),
    (_ForwardAD, ["f.0", "f.2"], r"f\.0: called on a forward-mode dual tensor .*exclude"),
])
def test_a_layer_called_through_its_class_or_differentiated_forward_is_refused(make, exclude,
                                                                                match):
    """``nn.Linear.forward(self.mid, x)`` reads the mapped layer's weight, and a layer under
    ``torch.func.jvp`` cannot take the transform's tensors (by design); a layer on a
    forward-mode dual tensor (``torch.autograd.forward_ad``) returned no tangent, and the
    model's own code failed on it with a bare ``TypeError``. Each is refused by a
    ``MappingError`` naming the layer and the way out, in deploy and ``prepare``; with the
    layers excluded the model deploys, computing as the float model."""
    model, (x,) = build_seeded(make, lambda: (torch.randn(3, 4),))
    for fn in (cimsim.deploy, prepare):
        with pytest.raises(MappingError, match=match):
            _quiet(fn, model, lossless_chip("channel"), x)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x, exclude=exclude)
    with torch.no_grad():
        torch.testing.assert_close(sim(x), model(x), rtol=0.05, atol=0.05)


class _HalfMiddle(nn.Module):
    """A float32 MLP whose middle Linear is bfloat16, its input cast to it in the forward."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(6, 8)
        self.mid = nn.Linear(8, 8).to(torch.bfloat16)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        y = self.mid(torch.relu(self.inp(x)).to(torch.bfloat16))
        return self.head(torch.relu(y.to(x.dtype)))


def test_a_bfloat16_layer_in_a_float32_model_deploys_and_prepare_names_it():
    """One ``nn.Linear`` in bfloat16 inside a float32 model (its input cast in the forward):
    deploy maps it, near the model; ``prepare`` refuses it naming the layer (by design)."""
    torch.manual_seed(0)
    model, x = _HalfMiddle().eval(), torch.randn(3, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sim = cimsim.deploy(model, lossless_chip("channel"), x)
    assert list(sim.sim_layers) == ["inp", "mid", "head"]
    with torch.no_grad():
        torch.testing.assert_close(sim(x), model(x), rtol=0.05, atol=0.05)
    with pytest.raises(MappingError, match=r"prepare: mid hold float16/bfloat16 weights"):
        prepare(model, lossless_chip("channel"), x)


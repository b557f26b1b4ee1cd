"""A fourteenth zoo (worktree ``zoo14``, after ``test_zoo13.py``): how a model's weights are
built, stored, transformed and applied in ways the thirteen earlier zoos did not try (models in
``zoo14_models.py``). ``torch.func.functional_call`` of a submodule with its own state
(``tie_weights``, ``strict=False``), a model built on the meta device then ``to_empty`` +
``load_state_dict(assign=True)``, a ``ModuleList`` indexed by an int computed from each sample,
a forward taking ``**kwargs`` and returning a ``NamedTuple`` through ``checkpoint_sequential``,
a shape-changing (low-rank ``A @ B``) parametrization and two stacked parametrizations with a
parametrized bias, Conv / Linear with a BatchNorm folded in by ``torch.nn.utils.fusion``,
weight algebra (``W @ W``, ``matrix_power``, ``matrix_exp`` of a skew-symmetric matrix,
``linalg.inv``, a weight in the middle of ``multi_dot``), ``baddbmm`` with ``alpha`` /
``beta``, einsum with an ellipsis and one weight twice, a ``ParameterDict`` of masked weights
(``torch.where``, ``masked_fill``) and a cosine classifier, ``F.bilinear`` with a Parameter,
``F.embedding`` of a table's slice, weight norm over the whole tensor (``dim=None``, both
APIs), ``nn.RNN(nonlinearity='relu')`` bidirectional with a looped relu ``RNNCell``, a grouped
dilated ``ConvTranspose2d`` with ``output_padding``, a strided circular ``Conv1d``, ESPCN
(``nn.Upsample`` + ``PixelShuffle``), ``ln_structured`` / ``global_unstructured`` pruning left
attached, and in-place ops on layers' outputs; and, outside the registry, a per-sample layer
under ``torch.func.vmap``, weights through linear solves and ``ExportedProgram.module()``.
(``functional_call`` with adapted weights, a ``torch.vmap`` ensemble, ``torch.compile``,
QuantStub / ``fuse_modules``, ``prune.l1_unstructured``, ``nn.Bilinear``, ``EmbeddingBag``,
``max_norm`` embeddings, hypernetworks, Siamese pairs, weight standardisation,
``torch.utils.checkpoint`` and ``chain_matmul`` / ``torch.mv`` are earlier zoos'.)

What it found, fixed: a weight applied by a linear solve (``torch.linalg.solve(W, x)``,
``solve_ex``, ``solve_triangular``, ``lstsq``, ``lu_solve`` of its ``lu_factor``,
``torch.triangular_solve``) computed W⁻¹x in float with nothing listed or warned (``x @
inv(W)`` was named): named now, as a product's weight. A mapped layer called inside
``torch.func.vmap`` (a per-sample function) failed in deploy and in prepare inside torch
("Cannot access data pointer of Tensor that doesn't have storage"), no layer named: a
``MappingError`` names it and the way out (the twin never ran under a transform either: its
``autograd.Function`` has no ``setup_context``). An ``ExportedProgram.module()`` was refused as
the model ("no layer can be mapped ... hold each in an nn.Linear") and inside one its weights
ran in float: deploy and prepare rebuild its linear calls as modules (``modules_from_graph``),
mapped bit for bit as the source; and ``modules_from_graph`` rebuilt a float64 graph in float32
(the float model failed on its inputs). A subclass of a torch layer keeping ``forward`` but
overriding a method it calls (``_conv_forward`` standardising the weight or padding causally,
``_output_padding``) was mapped with the raw weight, its computation dropped (73 %, 75 %, 38 %
off float, nothing said): kept digital with the reason now, as a ``forward`` override is. A
forward caching a layer's output in an attribute on its first call (a position-bias table)
kept the float calibration pass's result: every simulated forward reused it, the layer never
on the arrays (and untrained in the twin); what the calibration passes store is undone now,
and ``PreparedModel.deploy()`` deploys the attributes the model had when prepared, not the
twin's cached table. A weight matrix multiplied element-wise by an activation through
``torch.multiply``, ``*=`` / ``mul_``, ``addcmul``, ``torch.divide`` / ``true_divide`` /
``div_`` computed its product in float unnamed (the rule knew ``*``, ``/``, ``torch.mul``,
``torch.div``): named now. A forward drawing random numbers (MC dropout kept on) made the
calibration, and the deployed model, depend on the global random state for one ``seed`` (and
deploy moved the caller's stream): the calibration passes draw from the seed now.
``torch.cond`` in the forward failed deep inside dynamo: refused, saying to write the branch
in Python. A layer the forward builds on its first call was made during the calibration pass
and computed in float, nothing listed: refused, naming it. Seen, left: a weight in a Kronecker
product with an activation (``torch.kron(x, W)``) or an outer product (``torch.outer``,
``torch.addr``) is element-wise, no product, and stays silent like a 1-D scale; torch itself
refuses ``.eval()`` on a model holding an exported module (built in eval mode here)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.errors import MappingError
from cimsim.mapping.functional import SCALED_REASON
from cimsim.train import prepare

from .conftest import assert_bitwise, build_seeded, lossless_chip, reference_model
from .test_zoo5 import _quiet
from .zoo14_models import (
    ESPCN,
    BilinearFunctional,
    CachedTable,
    ChainedParametrizations,
    CircularStrided,
    EmbeddingSlice,
    FunctionalCallTied,
    FusedBN,
    GroupedTransposed,
    IndexedBlock,
    InPlaceOps,
    KwargsForward,
    LowRankParam,
    MaskedParamDict,
    MetaInit,
    ReluRNN,
    ScaledProducts,
    StructuredPruned,
    VmapPerSample,
    WeightAlgebra,
    WeightNormAll,
)
from .zoo_tests import zoo_deploy_tests

ZOO14 = {
    "functional-call-tied": (FunctionalCallTied, lambda: (torch.randn(3, 6),)),
    "meta-init": (MetaInit, lambda: (torch.randn(3, 6),)),
    "indexed-block": (IndexedBlock, lambda: (torch.randn(4, 6),)),
    "kwargs-forward": (KwargsForward, lambda: (torch.randn(3, 6),)),
    "low-rank-param": (LowRankParam, lambda: (torch.randn(3, 6),)),
    "fused-bn": (FusedBN, lambda: (torch.randn(3, 3, 6, 6),)),
    "weight-algebra": (WeightAlgebra, lambda: (torch.randn(3, 6),)),
    "scaled-products": (ScaledProducts, lambda: (torch.randn(3, 4, 6),)),
    "masked-param-dict": (MaskedParamDict, lambda: (torch.randn(3, 6),)),
    "bilinear-fn": (BilinearFunctional, lambda: (torch.randn(3, 6),)),
    "embedding-slice": (EmbeddingSlice, lambda: (torch.randint(0, 20, (3, 5)),)),
    "weight-norm-all": (WeightNormAll, lambda: (torch.randn(3, 3, 6, 6),)),
    "relu-rnn": (ReluRNN, lambda: (torch.randn(3, 5, 4),)),
    "grouped-transposed": (GroupedTransposed, lambda: (torch.randn(3, 2, 5, 5),)),
    "circular-strided": (CircularStrided, lambda: (torch.randn(3, 3, 12),)),
    "espcn": (ESPCN, lambda: (torch.randn(3, 1, 6, 6),)),
    "structured-pruned": (StructuredPruned, lambda: (torch.randn(3, 3, 6, 6),)),
    "chained-param": (ChainedParametrizations, lambda: (torch.randn(3, 6),)),
    "in-place-ops": (InPlaceOps, lambda: (torch.randn(3, 6),)),
}

# what stays digital, by name: the weights applied outside a mappable module (weight algebra,
# baddbmm / einsum, F.linear / F.bilinear of Parameters), the products of activations of the
# module whose forward computes them, an embedding (its table read by a look-up)
_DIGITAL = {
    "weight-algebra": {"w", "s", "m", "mid", "model"},
    "scaled-products": {"w", "e", "w2"},
    "masked-param-dict": {"w.a", "w.b", "w.cls"},
    "bilinear-fn": {"bil", "w"},
    "embedding-slice": {"emb", "emb.weight"},
}
# baddbmm's (H, 1, 4) bias, added (beta=2): no product's factor (the audit reads it too)
_NOT_MATRICES = {"scaled-products": ("b",)}
# the integer re-implementation covers Linear / Conv1d / Conv2d / MHA: not the RNNs, not
# ConvTranspose2d
_NOT_EXACT = {"relu-rnn", "grouped-transposed"}


def _build(name: str, dtype=torch.float32):
    return build_seeded(*ZOO14[name], dtype)


# the deploy (lossless, rram-22nm) and prepare tests of every model
(test_lossless_deploy_is_the_quantized_model_and_near_float,
 test_rram_deploy_runs_reports_and_accounts_for_every_matrix,
 test_prepare_steps_and_the_twin_deploys_to_what_it_computes) = zoo_deploy_tests(
    ZOO14, _build, _DIGITAL, not_exact=_NOT_EXACT, not_matrices=_NOT_MATRICES)


# ---------------------------------------------------------------------------------------------
# what it found
# ---------------------------------------------------------------------------------------------
_SOLVES = {
    "linalg.solve": lambda m, x: torch.linalg.solve(m, x.t()).t(),
    "solve left=False": lambda m, x: torch.linalg.solve(m, x, left=False),
    "solve_ex": lambda m, x: torch.linalg.solve_ex(m, x.t())[0].t(),
    "solve_triangular": lambda m, x: torch.linalg.solve_triangular(m.triu(), x.t(),
                                                                   upper=True).t(),
    "triangular_solve": lambda m, x: torch.triangular_solve(x.t(), m.triu())[0].t(),
    "Tensor.triangular_solve": lambda m, x: x.t().triangular_solve(m.triu())[0].t(),
    "lstsq": lambda m, x: torch.linalg.lstsq(m, x.t()).solution.t(),
    "lu_solve": lambda m, x: torch.linalg.lu_solve(*torch.linalg.lu_factor(m), x.t()).t(),
    "tensorsolve": lambda m, x: torch.linalg.tensorsolve(m, x.t()[:, 0])[None].expand_as(x),
}


@pytest.mark.parametrize("run", ["deploy", "prepare"])
@pytest.mark.parametrize("how", list(_SOLVES))
def test_a_weight_applied_by_a_linear_solve_is_named(how, run):
    """``torch.linalg.solve(W, x)`` applies W⁻¹ to an activation, as ``x @ inv(W)`` does: the
    inverse through ``inv`` was named (it reaches a matmul), the solve computed in float with
    nothing listed and nothing warned (also ``solve_ex``, ``solve_triangular``,
    ``triangular_solve``, ``lstsq``, ``lu_solve`` on the weight's ``lu_factor``). The weight
    is named now, as a product's."""

    class Solved(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = nn.Parameter(torch.eye(6) + 0.1 * torch.randn(6, 6))
            self.head = nn.Linear(6, 3)

        def forward(self, x):
            return self.head(_SOLVES[how](self.m, x))

    torch.manual_seed(0)
    go = cimsim.deploy if run == "deploy" else prepare
    with pytest.warns(UserWarning, match=r"1 weight\(s\) reach a matrix product.*: m \("):
        out = go(Solved().eval(), lossless_chip("channel"), torch.randn(4, 6))
    assert [d[:2] for d in out.digital] == [("m", "parameter")]


@pytest.mark.parametrize("run", ["deploy", "prepare"])
def test_a_layer_under_vmap_is_refused_naming_it(run):
    """A per-sample function calling a mapped layer, mapped over the batch by
    ``torch.func.vmap``: the layer got vmap's wrapped tensor and deploy (and prepare's
    calibration) failed inside torch ("Cannot access data pointer of Tensor that doesn't have
    storage"), no layer named. A ``MappingError`` names it and the way out; excluded, it stays
    digital, listed, and the rest maps and computes as the float model does."""
    model, (x,) = build_seeded(VmapPerSample, lambda: (torch.randn(3, 6),))
    go = cimsim.deploy if run == "deploy" else prepare
    with pytest.raises(MappingError, match=r"^fc: called inside a torch\.func transform"):
        _quiet(go, model, lossless_chip("channel"), x)
    out = _quiet(go, model, lossless_chip("channel"), x, exclude=["fc"])
    assert [d[:2] for d in out.digital] == [("fc", "Linear")]
    assert list(out.sim_layers if run == "deploy" else out.twin_layers) == ["head"]


def _exported(dtype=torch.float32):
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(),
                         nn.Linear(8, 3)).to(dtype).eval()
    x = torch.randn(4, 6, dtype=dtype)
    ep = torch.export.export(body, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    return body, ep, x


class _Holds(nn.Module):
    """An exported program's module inside a model (torch refuses ``.eval()`` on it: the model
    is built in eval mode)."""

    def __init__(self, graph: nn.Module):
        super().__init__()
        self.body, self.head = graph, nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.body(x))


@pytest.mark.parametrize("where", ["model", "inside"])
def test_an_exported_programs_module_maps_as_its_source(where):
    """``ExportedProgram.module()`` applies its weights by aten calls, no modules: deployed as
    the model it was refused ("no layer can be mapped ... hold each in an nn.Linear", which it
    was), inside a model its weights ran in float, listed with that advice. Its linear calls
    become modules in deploy's copy now (``modules_from_graph``, as ``load_model`` does for a
    ``.pt2``), named by the exported module's paths: on ``rram-22nm`` the deployed graph
    equals the deployed source bit for bit (same names, same programming draws)."""
    body, ep, x = _exported()
    chip = cimsim.load_chip("rram-22nm")
    if where == "model":
        graph, source = ep.module(), body
        names = ["0", "2", "4"]
    else:
        graph, source = _Holds(ep.module()), _Holds(body).eval()
        torch.manual_seed(1)
        source.head.reset_parameters()
        torch.manual_seed(1)
        graph.head.reset_parameters()
        names = ["body.0", "body.2", "body.4", "head"]
    sim = _quiet(cimsim.deploy, graph, chip, x)
    assert list(sim.sim_layers) == names and sim.digital == []
    want = _quiet(cimsim.deploy, source, chip, x)
    with torch.no_grad():
        assert_bitwise(sim(x), want(x))


def test_an_exported_program_trains_in_its_dtype():
    """``prepare`` on a float64 ``ExportedProgram.module()``: one step, the deployed twin
    computes what the twin does. The graph's linear calls were rebuilt as float32 modules
    (``modules_from_graph``, ``load_model`` of a float64 ``.pt2`` too), and the float model
    failed on its own inputs ("mat1 and mat2 must have the same dtype")."""
    from cimsim.mapping import modules_from_graph

    body, ep, x = _exported(torch.float64)
    with torch.no_grad():
        assert_bitwise(modules_from_graph(ep.module())(x), body(x))
    prep = _quiet(prepare, ep.module(), lossless_chip("channel"), x)
    opt = torch.optim.SGD(prep.parameters(), lr=1e-2)
    prep.train()(x).pow(2).mean().backward()
    opt.step()
    prep.eval()
    with torch.no_grad():
        want = prep(x)
    torch.testing.assert_close(prep.deploy()(x), want, rtol=1e-9, atol=1e-9)


class _StandardizedConv(nn.Conv2d):
    """Weight standardisation in ``_conv_forward`` (the method ``Conv2d.forward`` calls with
    the weight), ``forward`` inherited."""

    def _conv_forward(self, x, w, b):
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return super()._conv_forward(x, w, b)


class _CausalConv(nn.Conv1d):
    """A causal convolution padding its input on the left in ``_conv_forward``."""

    def _conv_forward(self, x, w, b):
        return super()._conv_forward(F.pad(x, (2, 0)), w, b)


class _OddUp(nn.ConvTranspose1d):
    """A transposed convolution whose ``_output_padding`` always adds one sample."""

    def _output_padding(self, *args, **kwargs):
        return [1]


class _Initialised(nn.Linear):
    """A subclass overriding only what computes nothing (its initialisation, its repr)."""

    def reset_parameters(self):
        nn.init.orthogonal_(self.weight)
        nn.init.zeros_(self.bias)

    def extra_repr(self):
        return "orthogonal " + super().extra_repr()


class _Overriding(nn.Module):
    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.layer = {"_conv_forward": lambda: _StandardizedConv(2, 4, 3, padding=1),
                      "causal": lambda: _CausalConv(2, 4, 3),
                      "_output_padding": lambda: _OddUp(2, 4, 3, stride=2),
                      "init": lambda: _Initialised(2, 4)}[how]()
        self.head = nn.Linear(4, 3)

    def forward(self, x):  # (B, 2, 6, 6)
        if self.how == "_conv_forward":
            return self.head(self.layer(x).mean((2, 3)))
        if self.how == "init":
            return self.head(self.layer(x.mean((2, 3))))
        # the samples each override moves: the first (a left pad), the last (one added)
        ends = slice(None, 3) if self.how == "causal" else slice(-3, None)
        return self.head(self.layer(x[:, :, 0])[..., ends].mean(2))


@pytest.mark.parametrize("run", ["deploy", "prepare"])
@pytest.mark.parametrize("how", ["_conv_forward", "causal", "_output_padding"])
def test_a_layer_subclass_computing_in_a_method_forward_calls_is_kept_digital(how, run):
    """A subclass of a torch layer that keeps ``forward`` and overrides a method it calls
    (``_conv_forward``: weight standardisation, a causal pad; a transposed conv's
    ``_output_padding``) was mapped with the raw weight and torch's own computation, the
    subclass's dropped: lossless deploy 73 % (standardised), 75 % (causal), 38 % (output
    padding) off float, nothing said. It is kept digital and named as a ``forward`` override
    is (``StdConv2d``, the third zoo's)."""
    torch.manual_seed(0)
    model, x = _Overriding(how).eval(), torch.randn(4, 2, 6, 6)
    go = cimsim.deploy if run == "deploy" else prepare
    method = "_conv_forward" if how == "causal" else how
    with pytest.warns(UserWarning, match=rf"layer: _\w+ overrides \w+\.{method} "):
        out = go(model, lossless_chip("channel"), x)
    assert [d[:2] for d in out.digital] == [("layer", type(model.layer).__name__)]
    if run == "deploy":
        with torch.no_grad():
            assert_bitwise(out(x), reference_model(model, out)(x))


def test_a_layer_subclass_overriding_only_its_initialisation_maps():
    """``reset_parameters`` / ``extra_repr`` compute nothing in the forward: the subclass maps,
    equal to the integer re-implementation."""
    torch.manual_seed(0)
    model, x = _Overriding("init").eval(), torch.randn(4, 2, 6, 6)
    sim = cimsim.deploy(model, lossless_chip("channel"), x)
    assert list(sim.sim_layers) == ["layer", "head"] and sim.digital == []
    with torch.no_grad():
        assert_bitwise(sim(x), reference_model(model, sim)(x))


def test_a_table_the_forward_caches_is_computed_on_the_arrays():
    """A forward caching a layer's output as an attribute on its first call (a position-bias
    table): the calibration pass, in float, filled the cache, and every simulated forward
    reused the float table, the layer never run on the arrays (lossless deploy not the
    quantized model; the layer's energy reported per inference all the same). What the
    calibration passes set is undone after them: the first simulated forward computes the
    table on the arrays (bit-equal to the integer re-implementation), and the twin trains the
    layer (it had no gradient)."""
    model, (x,) = build_seeded(CachedTable, lambda: (torch.randn(3, 5, 6),))
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
    assert model._table is None and sim.model._table is None
    with torch.no_grad():
        assert_bitwise(sim(x), reference_model(model, sim)(x))
    model, (x,) = build_seeded(CachedTable, lambda: (torch.randn(3, 5, 6),), torch.float64)
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    assert prep.model._table is None
    prep.train()(x).pow(2).mean().backward()
    assert prep.model.pos.twins[0].weight.grad is not None


def test_a_table_the_twin_cached_is_not_deployed():
    """The twin's forwards (training, evaluation) cache the table as the model's code says;
    ``PreparedModel.deploy()`` copied the twin's model with that table, and the deployed model
    never ran the layer on the arrays (its events unchanged by a forward). It deploys the
    state the model had when prepared: the first forward computes the table on the arrays."""
    model, (x,) = build_seeded(CachedTable, lambda: (torch.randn(3, 5, 6),), torch.float64)
    prep = _quiet(prepare, model, cimsim.load_chip("rram-22nm"), x)
    with torch.no_grad():
        prep.eval()(x)
    assert prep.model._table is not None
    sim = prep.deploy()
    assert sim.model._table is None
    before = sim.model.pos.events
    with torch.no_grad():
        sim(x)
    assert sim.model.pos.events != before
    assert prep.model._table is not None  # the twin keeps its own


_TIMES = {
    "torch.multiply": lambda xe, w: torch.multiply(xe, w),
    "Tensor.multiply": lambda xe, w: xe.multiply(w),
    "*=": lambda xe, w: xe.expand(-1, 5, -1).clone().__imul__(w),
    "mul_": lambda xe, w: xe.expand(-1, 5, -1).clone().mul_(w),
    "addcmul": lambda xe, w: torch.addcmul(torch.zeros(1), xe, w),
    "Tensor.addcmul_": lambda xe, w: torch.zeros(len(xe), 5, 6).addcmul_(xe, w),
    "torch.divide": lambda xe, w: torch.divide(xe, w),
    "true_divide": lambda xe, w: torch.true_divide(xe, w),
    "div_": lambda xe, w: xe.expand(-1, 5, -1).clone().div_(w),
}


@pytest.mark.parametrize("how", list(_TIMES))
def test_a_weight_matrix_multiplied_element_wise_by_any_spelling_is_named(how):
    """The thirteenth zoo's hand-written linear layer, ``(x[:, None] * W).sum(-1)``, with the
    product spelt ``torch.multiply``, ``*=`` / ``mul_`` into an activation, ``addcmul``,
    ``torch.divide`` / ``true_divide`` / ``div_``: the weight computed its product in float
    unnamed (the element-wise rule knew ``*``, ``/``, ``torch.mul`` and ``torch.div``). It
    is listed with the reason, as ``*`` is."""

    class Spelt(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(5, 6) + 3.0)  # no zero to divide by
            self.head = nn.Linear(5, 3)

        def forward(self, x):
            return self.head(_TIMES[how](x[:, None], self.w).sum(-1))

    torch.manual_seed(0)
    with pytest.warns(UserWarning, match=r"multiplied element-wise by an activation"):
        sim = cimsim.deploy(Spelt().eval(), lossless_chip("channel"), torch.randn(4, 6))
    assert sim.digital == [("w", "parameter", SCALED_REASON)]


class _MCDropout(nn.Module):
    """MC dropout: ``F.dropout(..., training=True)`` in the forward, also in eval mode."""

    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(6, 16), nn.Linear(16, 3)

    def forward(self, x):
        return self.head(F.dropout(torch.relu(self.fc(x)), 0.5, training=True))


@pytest.mark.parametrize("run", ["deploy", "prepare"])
def test_a_forward_that_draws_calibrates_the_same_for_a_seed(run):
    """A forward drawing from torch's stream (MC dropout) made the calibration depend on the
    global random state: ``deploy(model, rram-22nm, x, seed=0)`` after two different
    ``torch.manual_seed`` gave two models (0.077 apart on the same inference draws), and
    deploy moved the caller's stream. The calibration's draws come from ``seed`` now: the
    same seed, the same model (``prepare``'s too), the caller's stream untouched."""
    torch.manual_seed(0)
    model, x = _MCDropout().eval(), torch.randn(8, 6)
    chip = cimsim.load_chip("rram-22nm")
    outs = []
    for state in (1, 2):
        torch.manual_seed(state)
        rng = torch.get_rng_state()
        if run == "deploy":
            out = _quiet(cimsim.deploy, model, chip, x, seed=0)
        else:
            out = _quiet(prepare, model.double(), chip, x.double(), seed=0).eval()
        assert torch.equal(torch.get_rng_state(), rng)
        torch.manual_seed(5)
        with torch.no_grad():
            outs.append(out(x if run == "deploy" else x.double()))
    assert_bitwise(outs[0], outs[1])


class _Cond(nn.Module):
    """Two branches chosen by ``torch.cond`` on the batch's sum (a data-dependent branch
    written for ``torch.export``)."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = torch.cond(x.sum() > 0, lambda v: torch.relu(self.a(v)),
                       lambda v: torch.tanh(self.b(v)), (x,))
        return self.head(h)


@pytest.mark.parametrize("run", ["deploy", "prepare"])
def test_a_higher_order_operator_in_the_forward_is_refused_saying_what_to_write(run):
    """``torch.cond`` traces its branches with torch.compile: deploy and prepare failed deep
    inside dynamo ("HOP: Unsafe side effect ... Mutating a variable from outside the scope",
    the calibration pass's module hooks), no way out said. A ``MappingError`` says to write
    the branch in Python."""
    torch.manual_seed(0)
    x = torch.randn(4, 6).abs()
    go = cimsim.deploy if run == "deploy" else prepare
    with pytest.raises(MappingError, match=r"higher-order operator \(torch\.cond.*write the "
                                           r"branch or loop in Python"):
        _quiet(go, _Cond().eval(), lossless_chip("channel"), x)


class _BuiltOnFirstCall(nn.Module):
    """A head built on the first forward from the feature width (a Keras-style ``build``)."""

    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(6, 8), None

    def forward(self, x):
        h = torch.relu(self.fc(x))
        if self.head is None:
            self.head = nn.Linear(h.shape[-1], 3)
        return self.head(h)


@pytest.mark.parametrize("run", ["deploy", "prepare"])
def test_a_layer_the_forward_builds_is_refused_naming_it(run):
    """A layer the forward creates on its first call was made during the calibration pass,
    after the mapping: it computed in float, nothing listed (``digital == []``, only ``fc``
    mapped). A ``MappingError`` names it and says to run the model once first; run once, it
    maps."""
    torch.manual_seed(0)
    x = torch.randn(4, 6)
    go = cimsim.deploy if run == "deploy" else prepare
    with pytest.raises(MappingError, match=r"^head: built by the model's forward during the "
                                           r"calibration pass.*run the model once"):
        _quiet(go, _BuiltOnFirstCall().eval(), lossless_chip("channel"), x)
    model = _BuiltOnFirstCall().eval()
    with torch.no_grad():
        model(x)
    out = _quiet(go, model, lossless_chip("channel"), x)
    assert list(out.sim_layers if run == "deploy" else out.twin_layers) == ["fc", "head"]

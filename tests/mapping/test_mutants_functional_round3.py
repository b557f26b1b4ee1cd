"""Third mutation-testing round over ``cimsim/mapping/functional.py`` (the watch naming the
weights that reach a product outside a mappable module, and the guards simulated layers
call): each test pins a behaviour that a small wrong change left every earlier test passing
(the two earlier rounds' are ``test_mutants_mapping_ops.py`` and
``test_mutants_functional_round2.py``). Tiny models, one watched forward each; known answers
are the rules the module's docstring states (which operand of a product is a factor, which
spelling of a product, distance, solve or scaling is seen) or an exact refusal text."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_sequence

from cimsim.errors import MappingError
from cimsim.mapping.functional import (
    FUNCTIONAL_REASON,
    LOOKUP_REASON,
    UNREGISTERED_REASON,
    FunctionalUses,
    linear_through,
    refuse_non_float_input,
    refuse_swapped_weights,
    refuse_transformed_inputs,
)

from .test_mutants_functional_round2 import _warnings, _watch

pytestmark = pytest.mark.usefixtures("own_torch_generator")


@pytest.fixture(autouse=True)
def _seeded(own_torch_generator):
    torch.manual_seed(0)  # within the fixture's fork of torch's generator


class _Forward(nn.Module):
    """A model whose forward is ``fn(self, *inputs)``, holding the given attributes (a
    parameter, a buffer-less plain tensor ...)."""

    def __init__(self, fn, **attrs):
        super().__init__()
        self.fn = fn
        for name, value in attrs.items():
            setattr(self, name, value)

    def forward(self, *inputs):
        return self.fn(self, *inputs)


def _p(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape))


def _x() -> torch.Tensor:
    return torch.randn(3, 6)


# --- which operands of a product are its factors (``_factors``) -----------------------------

def test_a_weight_given_as_attentions_value_is_named():
    """functional.py ``_factors``: the attention's ``slice(0, 3)`` -> ``slice(0, 2)`` (a
    learned table given as ``value`` to ``F.scaled_dot_product_attention`` computed its ·V in
    float unnamed, the call listed as attention products of activations)."""
    model = _Forward(lambda s, x: F.scaled_dot_product_attention(x[None], x[None], s.v[None]),
                     v=_p(3, 6))
    uses = _watch(model, _x())
    assert uses.weights == {"v": "scaled_dot_product_attention"}
    assert uses.products == {}


def test_a_bilinear_weight_is_named():
    """functional.py ``_factors``: ``F.bilinear``'s ``slice(0, 3)`` -> ``slice(0, 2)`` (its
    weight, the third operand, taken for no factor: unnamed, the call listed as a product of
    activations)."""
    model = _Forward(lambda s, x: F.bilinear(x, x, s.w), w=_p(2, 6, 6))
    uses = _watch(model, _x())
    assert uses.weights == {"w": "bilinear"}
    assert uses.products == {}


def test_a_weight_given_by_keyword_is_named():
    """functional.py ``_factors``: the keyword operands dropped (``F.linear(x,
    weight=self.w)``'s weight unnamed, computing in float)."""
    model = _Forward(lambda s, x: F.linear(x, weight=s.w), w=_p(4, 6))
    uses = _watch(model, _x())
    assert uses.weights == {"w": "linear"}


def test_a_bias_added_first_is_no_factor():
    """functional.py ``_factors``: ``addmm``'s ``slice(1, 3)`` -> ``slice(0, 3)`` (its added
    learned bias named a functional weight, and the product of a generated weight with the
    input no longer listed as one of activations)."""
    model = _Forward(lambda s, x: torch.addmm(s.b, x, x.t() @ x), b=_p(6))
    uses = _watch(model, _x())
    assert uses.weights == {}
    assert uses.products == {"model": "activation products"}


def test_the_factors_in_a_list_are_named():
    """functional.py ``_tensors``: ``(tuple, list)`` -> ``tuple`` (``torch.linalg.multi_dot``'s
    list of factors not looked into: the weight among them unnamed)."""
    model = _Forward(lambda s, x: torch.linalg.multi_dot([x, s.w]), w=_p(6, 4))
    uses = _watch(model, _x())
    assert uses.weights == {"w": "linalg_multi_dot"}


# --- weights computed with other tensors ------------------------------------------------------

def test_a_weight_masked_by_an_integer_activation_is_modulated():
    """functional.py ``_index``: dropping ``func in _INDEXING`` (an integer or boolean operand
    of any op, not of a selection only, taken for an index: the weight times a mask computed
    from the input kept as the weight, named functional where it is input-dependent)."""
    model = _Forward(lambda s, x: x @ (s.w * (x.mean(0) > 0)).t(), w=_p(4, 6))
    uses = _watch(model, _x())
    assert uses.weights == {}
    assert uses.modulated == {"w": "matmul"}


def test_a_column_vector_is_no_matrix_left_unreached():
    """functional.py ``_is_matrix``: ``n > 1`` -> ``n >= 1`` (a (3, 1) parameter the pass
    never read, a per-row scale, counted as a weight matrix and warned as unreached)."""
    model = _Forward(lambda s, x: x, g=_p(3, 1), w=_p(3, 2))
    uses = _watch(model, _x())
    assert uses.unreached == ["w"]


@pytest.mark.parametrize("to_sparse", [torch.Tensor.to_sparse, torch.Tensor.to_sparse_csr],
                         ids=["coo", "csr"])
def test_a_sparse_weight_is_named_by_its_stored_values(to_sparse):
    """functional.py ``_storage``: a sparse COO weight's ``_values()`` and a compressed one's
    ``values()`` dropped (no storage of its own: unwatched, its product computing in float
    unnamed)."""
    model = _Forward(lambda s, x: torch.sparse.mm(s.A, x),
                     A=nn.Parameter(to_sparse(torch.randn(4, 3))))
    uses = _watch(model, torch.randn(3, 2))
    assert set(uses.weights) == {"A"}


# --- the spellings the watch must know -------------------------------------------------------

_SPELLINGS = {
    "rmatmul": (lambda s, x: x.__rmatmul__(s.w), dict(w=(6, 3)), {"w"}),
    "vecdot": (lambda s, x: torch.linalg.vecdot(x, s.w[0]), dict(w=(4, 6)), {"w"}),
    "sparse_mm": (lambda s, x: torch.sparse.mm(x, s.w), dict(w=(6, 2)), {"w"}),
    "addmm_": (lambda s, x: s.b.expand(3, 4).clone().addmm_(x, s.w.t()),
               dict(w=(4, 6), b=(4,)), {"w"}),
    "pairwise_distance": (lambda s, x: F.pairwise_distance(x, s.c[:3]), dict(c=(5, 6)), {"c"}),
    "cholesky_solve": (lambda s, x: torch.cholesky_solve(x, s.L), dict(L=(3, 3)), {"L"}),
    "lstsq": (lambda s, x: torch.linalg.lstsq(s.A, x).solution, dict(A=(3, 3)), {"A"}),
    "gru_cell": (lambda s, x: torch.gru_cell(x, torch.zeros(3, 2), s.wi, s.wh, None, None),
                 dict(wi=(6, 6), wh=(6, 2)), {"wi", "wh"}),
    "take": (lambda s, x: x @ torch.take(s.w, torch.arange(36)).reshape(6, 6),
             dict(w=(6, 6)), {"w"}),
    "vector_norm": (lambda s, x: torch.linalg.vector_norm(x[:, None] - s.c, dim=-1),
                    dict(c=(5, 6)), {"c"}),
    "rsub": (lambda s, x: x @ s.w.__rsub__(x.t() @ x), dict(w=(6, 6)), {"w"}),
    "mT": (lambda s, x: x @ (s.w + x.t() @ x).mT, dict(w=(6, 6)), {"w"}),
}


@pytest.mark.parametrize("name", sorted(_SPELLINGS))
def test_every_spelling_of_a_product_distance_or_solve_names_its_weight(name):
    """functional.py ``_PRODUCTS`` / ``_DISTANCES`` / ``_SOLVES`` / ``_WEIGHTED`` /
    ``_INDEXING`` / ``_MAGNITUDES`` / ``_ADDITIONS`` / ``_RESHAPES``: one entry dropped
    (``Tensor.__rmatmul__``, ``linalg.vecdot``, ``sparse.mm``, ``Tensor.addmm_``,
    ``F.pairwise_distance``, ``cholesky_solve``, ``linalg.lstsq``, ``gru_cell``,
    ``torch.take``, ``linalg.vector_norm``, ``Tensor.__rsub__``, ``Tensor.mT``): the weight
    reaching it computed in float unnamed."""
    fn, shapes, named = _SPELLINGS[name]
    model = _Forward(fn, **{k: _p(*v) for k, v in shapes.items()})
    uses = _watch(model, _x())
    assert set(uses.weights) == named


@pytest.mark.parametrize("scale", [
    lambda w, a: a.__rmul__(w),
    lambda w, a: torch.addcmul(torch.zeros(4, 6), w, a),
], ids=["rmul", "addcmul"])
def test_every_spelling_of_a_scaling_by_an_activation_modulates(scale):
    """functional.py ``_SCALINGS``: ``Tensor.__rmul__`` or ``torch.addcmul`` dropped (the
    weight scaled by an activation through it kept as no weight of its own: the product of
    activations listed, the input-dependent weight named nowhere)."""
    model = _Forward(lambda s, x: x @ scale(s.w, x.mean(0)).t(), w=_p(4, 6))
    uses = _watch(model, _x())
    assert uses.modulated == {"w": "matmul"}


def test_a_table_read_by_embedding_bag_is_a_look_up():
    """functional.py ``_LOOKUPS``: ``F.embedding_bag`` dropped (a table it reads outside an
    nn.EmbeddingBag listed nowhere)."""
    model = _Forward(lambda s, x: F.embedding_bag(torch.tensor([[0, 1]]), s.t), t=_p(5, 6))
    uses = _watch(model, _x())
    assert uses.lookups == {"t": "embedding_bag"}


# --- what the pass read, where it ran -------------------------------------------------------

class _TiedHead(nn.Module):
    def forward(self, h, table):
        return F.linear(h, table)


class _ListedHeadTiedToATable(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 6)
        self.head = _TiedHead()

    def forward(self, x):
        return self.head(x, self.emb.weight)


def test_a_product_inside_a_listed_module_names_no_weight():
    """functional.py ``_Watch``: dropping ``not self.listed()`` from the products' names (a
    listed head's own product with the embedding table it is tied to, already its row, named
    a functional weight too)."""
    uses = _watch(_ListedHeadTiedToATable(), _x(), skip=("emb", "head"))
    assert uses.weights == {}
    assert uses.products == {}


def test_a_weight_whose_metadata_only_is_read_is_unreached():
    """functional.py ``_Watch``: ``next(iter(_tensors(out)), None) is not None`` -> ``True``
    (a weight whose ``.dim()`` only the forward reads, no computation with it, counted as
    read: not warned as never reached)."""
    model = _Forward(lambda s, x: x * s.w.dim(), w=_p(4, 6))
    uses = _watch(model, _x())
    assert uses.unreached == ["w"]


def test_a_weight_under_two_nested_vmaps_is_named():
    """functional.py ``_storage``: ``while _transformed(t)`` -> ``if`` (a weight bank under
    two nested ``torch.vmap`` s unwrapped once, still wrapped: no storage, unnamed)."""
    def fn(s, x):
        return torch.vmap(torch.vmap(lambda w: F.linear(x, w)))(s.W)

    uses = _watch(_Forward(fn, W=_p(2, 2, 4, 6)), _x())
    assert set(uses.weights) == {"W"}


def test_an_activation_times_a_statistic_is_no_constant():
    """functional.py ``_Watch``: ``all(self._constant(t) ...)`` -> ``any`` (an activation
    scaled by a 1-D buffer taken for a constant: the weight it then scales kept as a weight,
    named functional where it is input-dependent)."""
    def fn(s, x):
        return x @ (s.w * (x.mean(0) * s.g)).t()

    model = _Forward(fn, w=_p(4, 6))
    model.register_buffer("g", torch.rand(6))
    uses = _watch(model, _x())
    assert uses.weights == {}
    assert uses.modulated == {"w": "matmul"}


class _Cell(nn.Module):
    def forward(self, x, wi, wh):
        return torch.gru_cell(x, torch.zeros(x.shape[0], 2), wi, wh, None, None)


class _Lookup(nn.Module):
    def forward(self, idx, table):
        return F.embedding(idx, table)


class _Distance(nn.Module):
    def forward(self, x, c):
        return (x[:, None] - c).pow(2).sum(-1)


class _ReadOut(nn.Module):
    def forward(self, x, w):
        return x * torch.tensor(w.tolist()).sum()


class _ListedCallsWithAParentsWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.wi, self.wh, self.t, self.r = _p(6, 6), _p(6, 2), _p(5, 6), _p(4, 6)
        self.c = _p(5, 6)
        self.cell, self.look, self.out, self.dist = _Cell(), _Lookup(), _ReadOut(), _Distance()

    def forward(self, x):
        return (self.cell(x, self.wi, self.wh).sum() + self.look(torch.tensor([0, 2]), self.t).sum()
                + self.out(x, self.r).sum() + self.dist(x, self.c).sum())


def test_a_listed_modules_cell_look_up_and_read_out_name_no_weight():
    """functional.py ``_Watch``: dropping ``not self.listed()`` from the weighted calls
    (``torch.gru_cell``), the look-ups (``F.embedding``), the read-outs (``.tolist()``) or the
    magnitudes (a hand-written distance's ``.pow(2)``): a listed module's own call, already
    its row, naming the weights it was given."""
    listed = ("cell", "look", "out", "dist")
    uses = _watch(_ListedCallsWithAParentsWeight(), _x(), skip=listed)
    assert uses.weights == {} and uses.lookups == {}
    uses = _watch(_ListedCallsWithAParentsWeight(), _x())
    assert set(uses.weights) == {"wi", "wh", "r", "c"} and set(uses.lookups) == {"t"}


def test_a_difference_times_itself_is_a_distance_and_times_a_weight_is_none():
    """functional.py ``_Watch``: the ``_SCALINGS`` branch of the distances dropped (an RBF's
    ``d * d`` of ``d = x[:, None] - c`` unnamed), or its ``operands[0] is operands[1]`` dropped
    (a difference scaled by a learned width per feature and summed signed, no magnitude,
    named a distance)."""
    def squared(s, x):
        d = x[:, None] - s.c
        return (d * d).sum(-1)

    uses = _watch(_Forward(squared, c=_p(5, 6)), _x())
    assert uses.weights == {"c": "mul"}
    uses = _watch(_Forward(lambda s, x: ((x[:, None] - s.c) * s.g).sum(-1), c=_p(5, 6),
                           g=_p(6)), _x())
    assert uses.weights == {}


def test_the_attention_of_activations_is_listed_as_attention_products():
    """functional.py ``_Watch``: the ``'attention products'`` kind dropped (an
    ``F.scaled_dot_product_attention`` of activations listed as 'activation products',
    with the other reason)."""
    uses = _watch(_Forward(lambda s, x: F.scaled_dot_product_attention(x[None], x[None],
                                                                      x[None])), _x())
    assert uses.products == {"model": "attention products"}


def test_a_weights_row_added_to_an_activation_is_no_added_matrix():
    """functional.py ``_add``: dropping ``_is_matrix(t)`` (one row of a table, a vector
    added to the activation as a position's embedding is, then a product of activations:
    the table named a functional weight)."""
    def fn(s, x):
        h = x + s.P[0]
        return h @ h.t()

    uses = _watch(_Forward(fn, P=_p(5, 6)), _x())
    assert uses.weights == {}
    assert uses.products == {"model": "activation products"}


def test_a_weights_rows_picked_by_an_input_index_stay_the_weight():
    """functional.py ``_Watch``: dropping ``_index(func, t)`` (Mixtral's ``self.w[idx]``, an
    index computed from the input, made the rows an activation: the expert weight unnamed, the
    product listed as one of activations)."""
    uses = _watch(_Forward(lambda s, x: x @ s.w[x.argmax(-1)].t(), w=_p(6, 6)), _x())
    assert uses.weights == {"w": "matmul"}
    assert uses.products == {}


def test_a_product_does_not_carry_a_modulated_weight_on():
    """functional.py ``_Watch``: ``if not product`` -> ``if True`` (a product's output tagged
    with the modulated weight of a factor: the weight scaled by an activation, then applied
    by a functional weight, named modulated at a later product of activations, where it is
    the element-wise product named as scaled)."""
    def fn(s, x):
        y = F.linear(s.w * x.mean(0), s.W2)
        return y.t() @ y

    uses = _watch(_Forward(fn, w=_p(4, 6), W2=_p(5, 6)), _x())
    assert uses.weights == {"W2": "linear"}
    assert uses.modulated == {}
    assert uses.scaled == {"w": "mul"}


# --- what is watched, and how ---------------------------------------------------------------

def test_a_distance_to_buffer_centres_is_no_learned_weights():
    """functional.py ``_spread``: dropping ``n in self.learned`` (fixed centres held as a
    buffer, ``(x[:, None] - B).pow(2)``, named as learned weights read by a distance)."""
    model = _Forward(lambda s, x: (x[:, None] - s.B).pow(2).sum(-1))
    model.register_buffer("B", torch.randn(5, 6))
    uses = _watch(model, _x())
    assert uses.weights == {}


def test_a_difference_scaled_by_a_width_then_squared_is_a_distance():
    """functional.py ``_spread``: ``func not in _SCALINGS`` dropped from what keeps the tag
    (an RBF's difference scaled by a width per feature, then squared: the centres unnamed)."""
    model = _Forward(lambda s, x: ((x[:, None] - s.c) * s.g).pow(2).sum(-1), c=_p(5, 6),
                     g=_p(6))
    uses = _watch(model, _x())
    assert uses.weights == {"c": "pow"}


def test_a_weight_broadcast_against_a_constant_is_no_distance():
    """functional.py ``_spread``: dropping ``not self._constant(t)`` (a factory's zeros
    broadcast against the centres taken for an activation: their square, weight-only, named
    a distance)."""
    model = _Forward(lambda s, x: x * (torch.zeros(3, 1, 6) + s.c).pow(2).sum(), c=_p(5, 6))
    uses = _watch(model, _x())
    assert uses.weights == {}


def test_a_vector_weight_expanded_and_scaled_is_not_modulated():
    """functional.py ``_modulate``: dropping ``n in self.matrices`` (a 1-D weight, expanded to
    a matrix operand and scaled by an activation, named an input-dependent weight matrix)."""
    model = _Forward(lambda s, x: x @ (s.v.expand(4, 6) * x.mean(0)).t(), v=_p(6))
    uses = _watch(model, _x())
    assert uses.modulated == {} and uses.scaled == {}


def test_a_weight_scaled_by_a_statistic_is_not_scaled_by_an_activation():
    """functional.py ``_modulate``: dropping ``not self._constant(t)`` (a weight times a 1-D
    buffer, weight-only, named as multiplied element-wise by an activation)."""
    model = _Forward(lambda s, x: x * (s.w * s.g).sum(), w=_p(4, 6))
    model.register_buffer("g", torch.rand(6))
    uses = _watch(model, _x())
    assert uses.scaled == {} and uses.modulated == {}


@torch.jit.script
def _scripted_mm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x @ w.t()


class _Scripted(nn.Module):
    def forward(self, x, w):
        return _scripted_mm(x, w)


class _ListedScripted(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = _p(4, 6)
        self.inner = _Scripted()

    def forward(self, x):
        return self.inner(x, self.w)


def test_a_listed_modules_compiled_product_names_no_weight():
    """functional.py ``_Compiled``: dropping ``not self.watch.listed()`` (a listed module's
    own scripted product, already its row, naming the weight it was given as compiled)."""
    uses = _watch(_ListedScripted(), _x(), skip=("inner",))
    assert uses.compiled == {}
    uses = _watch(_ListedScripted(), _x())
    assert uses.compiled == {"w": "mm.default"}


def test_torch_cond_in_the_forward_is_refused():
    """functional.py ``_Compiled``: the control-flow higher-order operators' refusal dropped
    (``torch.cond`` run below autograd, one branch eagerly, instead of the clear refusal)."""
    model = _Forward(lambda s, x: torch.cond(x.sum() > 0, lambda x: x + 1, lambda x: x - 1,
                                             (x,)))
    with pytest.raises(MappingError, match=r"^the forward calls a torch higher-order "
                                           r"operator \(torch\.cond"):
        _watch(model, _x())


def test_integer_matrices_are_no_weights():
    """functional.py ``_plain_tensors`` / ``watch_functional_weights``: dropping
    ``t.is_floating_point()`` or ``b.is_floating_point()`` (an integer one-hot table, held as
    a plain attribute or a buffer, cast and applied: named a functional weight)."""
    model = _Forward(lambda s, x: x @ s.I.float() + x @ s.J.float(),
                     I=torch.eye(6, dtype=torch.long))
    model.register_buffer("J", torch.eye(6, dtype=torch.long))
    uses = _watch(model, _x())
    assert uses.weights == {}
    assert uses.products == {"model": "activation products"}


def test_a_weight_is_named_by_its_first_name():
    """functional.py ``watch_functional_weights``: ``params.setdefault`` -> ``params[ptr] =``
    (a plain tensor attribute sharing the parameter's storage, ``self.cache = self.w.detach()``,
    renaming it: the parameter named as a plain tensor)."""
    model = _Forward(lambda s, x: F.linear(x, s.w), w=_p(4, 6))
    model.cache = model.w.detach()
    uses = _watch(model, _x())
    assert uses.weights == {"w": "linear"}


@pytest.mark.parametrize("table", [lambda: nn.Embedding(5, 6), lambda: nn.EmbeddingBag(5, 6)],
                         ids=["embedding", "embedding_bag"])
def test_a_listed_embeddings_table_in_a_tied_head_is_named(table):
    """functional.py ``watch_functional_weights``: the listed embeddings kept in ``skip``
    (``nn.Embedding`` or ``nn.EmbeddingBag`` dropped from the exception: a head tied to the
    table, ``F.linear(h, self.emb.weight)``, computing in float unnamed)."""
    model = _Forward(lambda s, x: F.linear(x, s.emb.weight), emb=table())
    uses = _watch(model, _x(), skip=("emb",))
    assert uses.weights == {"emb.weight": "linear"}


# --- one row per weight, and what the pass never read ---------------------------------------

class _Inner(nn.Module):
    def forward(self, x):
        return x @ x.t()


def test_a_listed_modules_product_of_activations_is_no_row_of_its_own():
    """functional.py ``owner``: dropping ``or listed()`` (a listed module's own product of
    activations, already its row, listed again as its activation products)."""
    uses = _watch(_Forward(lambda s, x: s.inner(x), inner=_Inner()), _x(), skip=("inner",))
    assert uses.products == {}


def _named_twice(s, x):
    idx = torch.tensor([0, 2])
    return (x @ (s.t * x.mean(0)).t()).sum() + F.embedding(idx, s.t).sum() + (
        F.linear(x, s.w).sum() + F.embedding(idx, s.w).sum() + _scripted_mm(x, s.w).sum()
        + F.embedding(idx, s.e).sum() + _scripted_mm(x, s.e).sum())


def test_a_weight_gets_one_row_only():
    """functional.py ``watch_functional_weights``: dropping ``n not in mode.modulated`` from the
    scaled or the look-ups, ``n not in mode.found`` from the look-ups, ``name not in named``
    or ``*mode.lookups`` from the compiled names (one weight, two digital rows)."""
    uses = _watch(_Forward(_named_twice, t=_p(6, 6), w=_p(6, 6), e=_p(6, 6)), _x())
    assert uses.modulated == {"t": "matmul"}
    assert uses.weights == {"w": "linear"}
    assert uses.lookups == {"e": "embedding"}
    assert uses.scaled == {} and uses.compiled == {}


def test_the_weights_the_pass_read_are_not_unreached():
    """functional.py ``watch_functional_weights``: dropping ``n not in mode.read`` (every
    weight matrix warned as never read); a listed embedding the pass did not reach is listed
    already (``_under(..., skip)`` dropped or taken over ``skipped``); an unreached layer held
    in a plain list is (``"[" in n`` dropped from ``mine``)."""
    model = _Forward(lambda s, x: F.linear(x, s.w), w=_p(4, 6), emb=nn.Embedding(5, 6),
                     heads=[nn.Linear(6, 2)])
    uses = _watch(model, _x(), skip=("emb",))
    assert uses.unreached == ["heads[0].weight"]


def test_a_buffer_weight_is_held_as_a_buffer():
    """functional.py ``watch_functional_weights``: the buffers' ``'buffer'`` kind dropped (a
    float matrix buffer's digital row typed as a parameter)."""
    model = _Forward(lambda s, x: x @ s.B)
    model.register_buffer("B", torch.randn(6, 2))
    uses = _watch(model, _x())
    assert uses.weights == {"B": "matmul"}
    assert uses.kind("B") == "buffer"


def test_warn_functional_rows_and_warnings():
    """functional.py ``warn_functional``: the weights' rows unsorted, a plain-list layer's row
    given ``FUNCTIONAL_REASON``, a look-up's row typed 'parameter' whatever holds it, the
    modulated or scaled warnings dropped, ``'x' if n == 1`` -> ``n <= 2``."""
    uses = FunctionalUses(weights={"w": "linear", "heads[0].weight": "linear"},
                          lookups={"t": "embedding"}, held={"t": "buffer"},
                          modulated={"v": "matmul"}, scaled={"s": "mul"},
                          unreached=["a", "b"])
    rows, msgs = _warnings(uses)
    assert rows[:2] == [("heads[0].weight", "parameter", UNREGISTERED_REASON),
                        ("w", "parameter", FUNCTIONAL_REASON)]
    assert ("t", "buffer", LOOKUP_REASON) in rows
    assert any(m.startswith("deploy: 1 weight(s) are multiplied by an activation before a "
                            "matrix product") and ": v (matmul)" in m for m in msgs)
    assert any(m.startswith("deploy: 1 weight matrix(es) are multiplied element-wise")
               and ": s (mul)" in m for m in msgs)
    assert any(m.startswith("deploy: 2 weight matrices the calibration pass never read")
               for m in msgs)


def test_a_forward_mode_dual_input_is_refused_naming_the_layer():
    """functional.py ``refuse_transformed_inputs``: the dual-tensor refusal dropped (a JVP
    through the layer, whose tangent it cannot carry, lost silently)."""
    import torch.autograd.forward_ad as fwad

    x = _x()
    refuse_transformed_inputs("L", [x])
    with fwad.dual_level():
        dual = fwad.make_dual(x, torch.ones_like(x))
        with pytest.raises(MappingError, match=r"^L: called on a forward-mode dual tensor"):
            refuse_transformed_inputs("L", [dual])


def test_a_factory_mask_changed_in_place_stays_a_constant():
    """functional.py ``_Watch``: the in-place branch popping a constant whatever its other
    operands (a MADE mask, ``torch.ones(...).tril_()``, made an activation: the weight it
    masks named input-dependent, not functional)."""
    model = _Forward(lambda s, x: x @ (s.w * torch.ones(4, 6).tril_()).t(), w=_p(4, 6))
    uses = _watch(model, _x())
    assert uses.weights == {"w": "matmul"}
    assert uses.modulated == {} and uses.scaled == {}


def test_a_weight_added_to_activations_twice_is_still_a_factor():
    """functional.py ``_add``: the tags of an operand already added dropped (plasticity's
    ``W + alpha * hebb`` plus one more activation term: W unnamed at the product)."""
    model = _Forward(lambda s, x: x @ ((s.w + x.t() @ x) + x.t() @ x), w=_p(6, 6))
    uses = _watch(model, _x())
    assert uses.weights == {"w": "matmul"}


# --- the guards simulated layers call -------------------------------------------------------

def test_non_float_inputs_are_refused_by_their_dtype_and_packed_sequences_pass():
    """functional.py ``refuse_non_float_input``: ``(list, tuple)`` -> ``list`` (a tuple of
    tensors reaching the layer's arithmetic), ``type(x) in`` -> ``isinstance`` (a
    ``PackedSequence``, a tuple of tensors a recurrent layer takes, refused), the complex check
    dropped (a complex input refused as 'not floating point', with the wrong remedy), or the
    dtype's ``torch.`` prefix kept."""
    x = torch.zeros(2, 3)
    with pytest.raises(MappingError, match=r"^L: its input is a tuple of 2 tensors; the model's "
                                           r"own layer takes one tensor"):
        refuse_non_float_input("L", ((x, x),))
    refuse_non_float_input("L", (pack_sequence([torch.randn(3, 2), torch.randn(2, 2)]),))
    with pytest.raises(MappingError, match=r"^L: its input is complex64; the model's own layer "
                                           r"of real weights refuses it"):
        refuse_non_float_input("L", (x.to(torch.complex64),))
    with pytest.raises(MappingError, match=r"^L: its input is int64, not floating point; .* "
                                           r"would return int64 \(its outputs truncated\)"):
        refuse_non_float_input("L", (x.long(),))


def test_linear_through_computes_through_the_layer_only_where_it_is_x_wt():
    """functional.py ``linear_through``: ``own_bias or fused`` -> ``and`` (a layer adding a
    bias of its own, or fused with a ReLU, computed through anyway), the given bias dropped,
    or its cast to the output's dtype dropped (a float64 bias made the output float64)."""
    layer = nn.Linear(6, 4, bias=False)
    x = _x()
    assert linear_through(layer, x, None, True, False) is None
    assert linear_through(layer, x, None, False, True) is None
    b = torch.arange(4, dtype=torch.float64)
    y = linear_through(layer, x, b, False, False)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, F.linear(x, layer.weight, b.float()))


def test_a_weight_set_again_in_another_dtype_is_refused():
    """functional.py ``_changed``: dropping ``now.dtype == was.dtype`` (torch.equal compares
    values across dtypes: a float64 weight set on a float32-programmed layer accepted)."""
    held = torch.arange(6.0).reshape(2, 3)
    m = nn.Module()
    m.weight = held.double()
    with pytest.raises(MappingError, match=r"^L: called with \.weight set from outside"):
        refuse_swapped_weights(m, "L", {"weight": held})


def test_only_weight_like_attributes_are_swapped_weights():
    """functional.py ``refuse_swapped_weights``: dropping ``weight_like(a)`` (any tensor
    attribute of the layer, a cached mask or scale, refused as a swapped weight); the names
    listed sorted."""
    m = nn.Module()
    m.mask = torch.ones(2)
    refuse_swapped_weights(m, "L")
    m.weight, m.bias = torch.ones(2), torch.ones(2)
    with pytest.raises(MappingError, match=r"^L: called with \.bias, \.weight set from"):
        refuse_swapped_weights(m, "L")


class TestReadOutWeight:
    def test_a_weight_read_out_of_torch_is_not_unreached(self):
        """functional.py ``_Watch.__torch_function__``: ``self.read`` was updated only where
        the call's output holds a tensor; ``.tolist()`` returns none, so a weight read out of
        torch was named in ``weights`` (``'tolist'``) and also in ``unreached``: two
        contradicting warnings, 'reach a matrix product' and 'the calibration pass never
        read'. Now it is read."""
        model = _Forward(lambda s, x: x * torch.tensor(s.w.tolist()).sum(), w=_p(4, 6))
        uses = _watch(model, _x())
        assert uses.weights == {"w": "tolist"}
        assert uses.unreached == []

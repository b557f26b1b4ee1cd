"""Weights that reach a matrix product outside a mappable module.

``deploy`` and ``prepare`` map modules (``nn.Linear``, ``nn.Conv2d``, ...). A weight the model
uses functionally (``F.linear(x, self.weight)``, ``x @ self.w``, ``F.conv2d(x, self.kernel)``)
is no module: it cannot be mapped and would compute in float, results that look simulated but
are not. :func:`watch_functional_weights` records, during the calibration pass, every parameter
of the model (outside the modules already listed as digital) that reaches such a product, so
that the caller can name it in a warning and in the report's digital list.

A weight counts however it reaches the product: as a view of the parameter (``self.w.t()``),
as a tensor computed from weights only (``self.w * self.g``, a standardized kernel, a
``torch.nn.utils.parametrize`` d parameter, ``self.w + self.a @ self.b``; named by every
weight it is computed from), as rows picked by an index computed from the input (Mixtral's
expert banks, ``self.w1[idx]``), as a bank of expert matrices in a grouped product
(``F.grouped_mm``: transformers' MoE experts), and as a floating-point buffer of two or
more dimensions (``register_buffer`` weights, and float matrices kept as plain attributes,
``self.dct = torch.randn(6, 6)``; 1-D buffers are statistics and rotary frequencies: no weight
alone, but a weight computed with one stays a weight, as Glow's
``U + diag(sign_s * exp(log_s))``). A computation that also reads an activation is an
activation. A weight read by a distance or a similarity (a VQ-VAE's codebook in
``torch.cdist``, prototypes in ``F.cosine_similarity``, an RBF network's centres in a
hand-written ``(x[:, None] - centres).pow(2).sum(-1)``) computes in float as in a product and
is named the same way, and so is a learned weight matrix read out of torch in the forward
(``.numpy()``, ``.tolist()``: a scipy convolution inside a custom ``autograd.Function``, whose
computation no watch sees), and a weight applied by a linear solve (``torch.linalg.solve(W,
x)``, ``solve_triangular``, ``lstsq``, ``lu_solve``: W⁻¹ applied to an activation). A bias
the product adds (``F.linear``'s and a convolution's ``bias``, ``addmm``'s first operand) is no
factor: ``F.linear(x, W(x), self.b)`` with a weight generated
from the input is a product of activations, ``self.b`` no functional weight. An embedding's
table is watched although the embedding is listed digital: its look-up is no product, so a product
reading it is a head tied to it (``F.linear(h, self.emb.weight)``), a matrix in float the
embedding's row does not account for.

A weight matrix multiplied element-wise by an activation (StyleGAN2's modulated conv,
``self.weight * style[:, None, :, None, None]``, then demodulated and applied by ``F.conv2d``)
is an input-dependent weight: no array can hold it programmed once. The product it reaches is
one of activations (listed as such), and the weight is named too, by
:data:`MODULATED_REASON`: computed per input, in float. Only a product (``*``, ``/``) makes
one; an added table (ALiBi's bias, a position embedding) is no modulation. A weight matrix so
multiplied that reaches no matrix product computed its product element-wise
(``(x[:, None] * self.W).sum(-1)``, GFNet's spectral filter ``rfft2(x) * W``, Mamba's
``exp(delta * A)``): it is named by :data:`SCALED_REASON`; a buffer so multiplied (a float
mask, a fixed window) is no learned weight and stays silent.

A weight matrix added to an activation that a product then takes as a factor (differentiable
plasticity's ``h @ (W + alpha * hebb)``) is multiplied there in float too: it is named as a
functional weight, followed through further additions and shape-only ops (``.T``, a reshape)
but no other (ALiBi's bias, added to scores and passed through a softmax, is no factor); a
buffer so added is no learned weight and stays silent, as a buffer so multiplied does.

A product reading a weight of a layer that deploy (or ``prepare``) replaced, during the
forward and outside every mapped or listed module, reached the float original through a
reference the module tree does not hold (a plain list or dict of layers, a bound ``forward``,
a ``functools.partial``, a weight kept in a list): that call would compute in float with no
word, so it is a ``MappingError`` naming the layer (:func:`stale_reference_error`).

torch's composite functions that take weight matrices as arguments
(``F.multi_head_attention_forward``, ``torch.lstm_cell`` / ``gru_cell`` / ``rnn_*_cell``) run
their products while the watch is off: their weight matrices are named at the call.

A weight passed to compiled code (a ``torch.jit.script`` function called from the forward)
reaches its product in the TorchScript interpreter, where no torch function call shows it:
the dispatcher still does (``aten.mm``), and a dispatch mode beside the watch records the
factors of the aten products that run while no watched torch function call is running; a
watched weight among them, named nowhere else, is named by :data:`COMPILED_REASON`.

Products of activations only (a hand-written attention's ``q @ k.transpose(-2, -1)``,
``F.scaled_dot_product_attention``) are listed too, one row per module whose own forward calls
them, as a mapped ``nn.MultiheadAttention`` lists its ``attention products``: they compute
digitally, and a report listing the attention of one model but not of another would compare
them unequally. Not warned (nothing was claimed simulated); not within mapped or digital
modules, whose rows say it already.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode, is_traceable_wrapper_subclass
from torch.utils.weak import WeakIdKeyDictionary

from ..errors import MappingError, WeightReadError
from .graph_digital import ATEN_PRODUCTS, ATTENTION_REASON
from .weight_view import TensorMeta, WeightView, weight_like, weight_read_message

__all__ = ["ACTIVATION_REASON", "COMPILED_REASON", "FUNCTIONAL_REASON", "LOOKUP_REASON",
           "MODULATED_REASON", "SCALED_REASON", "UNREGISTERED_REASON",
           "FunctionalUses", "higher_order_error", "refuse_non_float_input",
           "refuse_tracing", "refuse_transformed_inputs",
           "stale_reference_error", "watch_functional_weights", "warn_functional",
           "linear_through", "weight_read_error", "weight_view", "refuse_swapped_weights"]

UNREGISTERED_REASON = ("a layer held in a plain list or dict (torch registers neither it nor "
                       "its weights): computes in float; hold it in an nn.ModuleList / "
                       "nn.ModuleDict to map it")
FUNCTIONAL_REASON = ("used by a matrix product outside a mappable module (functional call): "
                     "computes in float; hold it in an nn.Linear / nn.Conv module to map it")

MODULATED_REASON = ("multiplied by an activation before a matrix product (an input-dependent "
                    "weight, e.g. a modulated or dynamic kernel): it cannot be programmed once; "
                    "computes in float")

SCALED_REASON = ("multiplied element-wise by an activation (x * W, then summed or "
                 "transformed: a hand-written product, a spectral filter, a decay matrix): no "
                 "array computes it; in float")

LOOKUP_REASON = ("a table read by a look-up (F.embedding / F.embedding_bag) outside an "
                 "nn.Embedding: no matrix product to map; a digital memory read, in float")

COMPILED_REASON = ("used by a matrix product inside compiled code the watch cannot follow (a "
                   "torch.jit.script function, a C++ extension): computes in float; hold it in "
                   "an nn.Linear / nn.Conv module called from Python to map it")

ACTIVATION_REASON = ("activation x activation matrix product (matmul, einsum, ...) computed "
                     "digitally in float")


def _flex_attention() -> tuple[object, ...]:
    """torch's FlexAttention (``torch.nn.attention.flex_attention``, torch >= 2.5): its module
    and the higher-order operator its ``flex_attention`` calls (a watch sees that operator, with
    ``query, key, value`` first); none before torch 2.5."""
    try:
        from torch._higher_order_ops.flex_attention import flex_attention as hop
        from torch.nn.attention import flex_attention as module
    except ImportError:  # pragma: no cover - torch < 2.5
        return ()
    return module, hop


_FLEX = _flex_attention()
_ATTENTION = frozenset({F.scaled_dot_product_attention,
                        torch.ops.aten.scaled_dot_product_attention.default, *_FLEX[1:]})


@contextmanager
def _flex_attention_eager() -> Iterator[None]:
    """Within the block, ``flex_attention`` runs its operator eagerly (torch's
    ``_FLEX_ATTENTION_DISABLE_COMPILE_DEBUG``), as without the watch it runs it in a
    ``torch.compile`` d wrapper: dynamo would trace the watch's ``__torch_function__`` and
    refuse it deep inside ("Attempted to inline function marked as skipped"), and the watch
    would not see the operator's Q·Kᵀ and ·V. The outputs are the same (the compiled wrapper
    uses the eager backend); the flag is set back after the block."""
    # a private flag of torch's (2.5-2.13): where a later torch drops it, nothing is set
    if not _FLEX or not hasattr(_FLEX[0], "_FLEX_ATTENTION_DISABLE_COMPILE_DEBUG"):
        yield
        return
    module = _FLEX[0]
    before = module._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG  # type: ignore[attr-defined]
    module._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG = True  # type: ignore[attr-defined]
    try:
        yield
    finally:
        module._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG = before  # type: ignore[attr-defined]

# the products a weight can reach without a module (method and function forms)
_PRODUCTS = frozenset({
    F.linear, F.bilinear, F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d,
    F.conv_transpose2d, F.conv_transpose3d, torch.matmul, torch.mm, torch.bmm, torch.mv,
    torch.addmm, torch.baddbmm, torch.addbmm, torch.einsum, torch.tensordot, torch.inner,
    torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.__rmatmul__, torch.Tensor.mm,
    torch.Tensor.bmm, torch.Tensor.mv,
    # the spellings a TorchFunctionMode sees as other functions: ``torch.linalg.matmul``,
    # ``multi_dot`` and ``chain_matmul`` (a list of factors), ``addmv`` and the method forms
    # of the bias-first products (a weight through any of them computed in float unnamed)
    torch.linalg.matmul, torch.linalg.multi_dot, torch.chain_matmul, torch.addmv,
    torch.Tensor.addmm, torch.Tensor.addmv, torch.Tensor.baddbmm, torch.Tensor.addbmm,
    # dot products of vectors: a weight's rows, one at a time or broadcast
    torch.dot, torch.vdot, torch.Tensor.dot, torch.Tensor.vdot, torch.linalg.vecdot,
    torch.Tensor.inner,
    # the in-place forms of the bias-first products (into a copy of the bias)
    torch.Tensor.addmm_, torch.Tensor.addmv_, torch.Tensor.baddbmm_, torch.Tensor.addbmm_,
    # products with a sparse operand (a graph's adjacency times a learned embedding table,
    # LightGCN's ``torch.sparse.mm(adj, emb.weight)``: computed in float unnamed)
    torch.sparse.mm, torch.sparse.addmm, torch.spmm, torch.smm, torch.hspmm, torch.sspaddmm,
    # grouped products: a bank of expert matrices, each applied to its tokens (HuggingFace's
    # MoE experts, Mixtral's and Qwen-MoE's, run F.grouped_mm on CPU and GPU alike)
    *(f for f in (getattr(F, "grouped_mm", None), getattr(torch, "_grouped_mm", None)) if f),
})


# distances and similarities a weight can reach: they compute with it in float as a product
# does (a VQ-VAE's codebook in ``torch.cdist(z, codebook)``, itself |z|² + |c|² - 2·z·cᵀ;
# prototypes in ``F.cosine_similarity``); named as a product's weight, but those of
# activations only (a kNN graph, a Siamese pair) are not listed as products; an exported
# graph's aten calls too
_DISTANCES = frozenset({
    torch.cdist, F.cosine_similarity, F.pairwise_distance, torch.ops.aten.cdist.default,
    torch.ops.aten._cdist_forward.default, torch.ops.aten.cosine_similarity.default,
    torch.ops.aten.pairwise_distance.default})

# linear solves: ``solve(W, x)`` applies W⁻¹ to an activation as ``x @ inv(W)`` does (that one
# reaches a matmul), in float; a weight among their operands is named as a product's (a solve
# of activations only is no product row: nothing in it was claimed simulated)
_SOLVES = frozenset(f for f in (
    torch.linalg.solve, torch.linalg.solve_ex, torch.linalg.solve_triangular,
    torch.linalg.lstsq, torch.linalg.lu_solve, torch.linalg.ldl_solve, torch.linalg.tensorsolve,
    torch.triangular_solve, torch.cholesky_solve, torch.lu_solve, torch.Tensor.triangular_solve,
    torch.Tensor.cholesky_solve, torch.Tensor.lu_solve) if f is not None)

# torch's composite functions taking weight matrices among their arguments: the products
# within them run while the watch is off (a TorchFunctionMode sees the outer call only), so
# their weight matrices are named at the call (their biases are no factor)
_WEIGHTED = frozenset({F.multi_head_attention_forward, torch.lstm_cell, torch.gru_cell,
                       torch.rnn_tanh_cell, torch.rnn_relu_cell})

# the calls that compute with a tensor (its replaced layer's weights, if read outside it)
_COMPUTING = _PRODUCTS | _DISTANCES | _SOLVES | _WEIGHTED | ATEN_PRODUCTS | _ATTENTION

# look-ups of a table (its rows picked by the input, no product): the table is a weight the
# arrays do not hold, listed as such
_LOOKUPS = frozenset({F.embedding, F.embedding_bag})

# selections of a weight by an index: the rows it picks are still the weight's (Mixtral's
# ``self.w1[expert_idx]`` applied by einsum), although the index is computed from the input
_INDEXING = frozenset({torch.Tensor.__getitem__, torch.index_select, torch.Tensor.index_select,
                       torch.gather, torch.Tensor.gather, torch.take})

# the element-wise products that make a weight matrix input-dependent (module docstring)
_SCALINGS = frozenset({torch.mul, torch.div, torch.Tensor.mul, torch.Tensor.div,
                       torch.Tensor.__mul__, torch.Tensor.__rmul__, torch.Tensor.__truediv__,
                       # the other spellings of those (a weight so multiplied computed its
                       # product element-wise unnamed): aliases, the in-place forms into an
                       # activation, and the fused multiply- / divide-adds
                       torch.multiply, torch.divide, torch.true_divide, torch.Tensor.multiply,
                       torch.Tensor.divide, torch.Tensor.true_divide, torch.Tensor.mul_,
                       torch.Tensor.div_, torch.Tensor.multiply_, torch.Tensor.divide_,
                       torch.Tensor.true_divide_, torch.Tensor.__imul__,
                       torch.Tensor.__itruediv__, torch.addcmul, torch.addcdiv,
                       torch.Tensor.addcmul, torch.Tensor.addcdiv, torch.Tensor.addcmul_,
                       torch.Tensor.addcdiv_})

# additions that put a weight matrix and an activation into one operand of a product (a
# plastic weight ``W + alpha * hebb``): the product multiplies W in float too (module
# docstring); in-place forms and the subtractions too
_ADDITIONS = frozenset({torch.add, torch.sub, torch.subtract, torch.Tensor.add,
                        torch.Tensor.sub, torch.Tensor.subtract, torch.Tensor.__add__,
                        torch.Tensor.__radd__, torch.Tensor.__sub__, torch.Tensor.__rsub__,
                        torch.Tensor.__iadd__, torch.Tensor.__isub__, torch.Tensor.add_,
                        torch.Tensor.sub_, torch.Tensor.subtract_})

# the shape-only ops that keep such an operand one (``.T``, a reshape, a broadcast)
_RESHAPES = frozenset({torch.Tensor.view, torch.Tensor.reshape, torch.reshape,
                       torch.Tensor.transpose, torch.transpose, torch.Tensor.permute,
                       torch.permute, torch.Tensor.t, torch.t, torch.Tensor.unsqueeze,
                       torch.unsqueeze, torch.Tensor.squeeze, torch.squeeze,
                       torch.Tensor.expand, torch.Tensor.expand_as, torch.Tensor.contiguous,
                       torch.Tensor.flatten, torch.flatten, torch.Tensor.clone, torch.clone,
                       torch.Tensor.to,
                       # ``w.T`` and ``w.mT``: a mode sees the properties' getters
                       torch.Tensor.T.__get__,  # type: ignore[attr-defined]
                       torch.Tensor.mT.__get__})  # type: ignore[attr-defined]

# a tensor's values read out of torch (into NumPy, a list): what a forward computes with them
# there (a scipy convolution inside a custom ``autograd.Function``, as torch's NumPy-extension
# tutorial writes one) no watch sees
_READ_OUT = frozenset({torch.Tensor.numpy, torch.Tensor.__array__, torch.Tensor.tolist})

# what makes a difference a distance: its magnitude (a square, an absolute value, a norm), or
# the difference multiplied by itself
_MAGNITUDES = frozenset({torch.pow, torch.Tensor.pow, torch.Tensor.__pow__, torch.square,
                         torch.Tensor.square, torch.abs, torch.Tensor.abs, torch.Tensor.__abs__,
                         torch.norm, torch.Tensor.norm, torch.linalg.norm,
                         torch.linalg.vector_norm})

_aten = torch.ops.aten
# products whose bias is added, not multiplied: their factors are (input, weight)
# (F.bilinear: (input1, input2, weight)); ``addmm(b, x, W)`` and the like: the two after b
_WITH_BIAS = frozenset({
    F.linear, F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d,
    F.conv_transpose3d, _aten.linear.default, _aten.conv1d.default, _aten.conv2d.default,
    _aten.conv3d.default, _aten.convolution.default})
_ADDED_FIRST = frozenset({torch.addmm, torch.baddbmm, torch.addbmm, torch.addmv,
                          torch.sparse.addmm, torch.sspaddmm,
                          torch.Tensor.addmm, torch.Tensor.baddbmm, torch.Tensor.addbmm,
                          torch.Tensor.addmv, torch.Tensor.addmm_, torch.Tensor.baddbmm_,
                          torch.Tensor.addbmm_, torch.Tensor.addmv_, _aten.addmm.default,
                          _aten.baddbmm.default, _aten.addbmm.default})


def _canonical(func):
    """An aten operator called through its packet (``torch.ops.aten.mm(x, W)``, as exported
    graphs and some hand-written code do) is its default overload (``aten.mm.default``) for
    the sets above; any other function itself."""
    if isinstance(func, torch._ops.OpOverloadPacket):
        return getattr(func, "default", func)
    return func


def _factors(func, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    """The operands a product multiplies: a (learned) bias or mask added to it is none (a
    generated weight with a learned bias, ``F.linear(x, W(x), self.b)``, is a product of
    activations)."""
    names: tuple[str, ...]
    if func in _ATTENTION:  # Q·Kᵀ and ·V are its products; a (learned) mask is added
        at, names = slice(0, 3), ("query", "key", "value")
    elif func in (F.bilinear, _aten.bilinear.default):
        at, names = slice(0, 3), ("input1", "input2", "weight")
    elif func in _WITH_BIAS:
        at, names = slice(0, 2), ("input", "weight")
    elif func in _ADDED_FIRST:
        at, names = slice(1, 3), ("mat1", "mat2", "batch1", "batch2", "mat", "vec")
    else:
        return list(_tensors([*args, *kwargs.values()]))
    return list(_tensors([*args[at], *(kwargs[k] for k in names if k in kwargs)]))


def _tensors(obj) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _tensors(item)


def _index(func, t: torch.Tensor) -> bool:
    """``t`` is an integer or boolean index of a selection (``_INDEXING``): no activation
    mixed into what is selected."""
    return func in _INDEXING and not (t.is_floating_point() or t.is_complex())


def _is_matrix(t: torch.Tensor) -> bool:
    """Two or more dimensions longer than 1: a per-head (H, 1, 1) scale or a (1, 1, D) mixing
    factor is none."""
    return sum(n > 1 for n in t.shape) >= 2


def _transformed(t: torch.Tensor) -> bool:
    """Whether ``t`` is wrapped by a ``torch.func`` transform (``vmap``'s per-sample view,
    ``grad``'s tracking tensor): it has no storage of its own."""
    return bool(getattr(torch._C._functorch, "is_functorch_wrapped_tensor",
                        lambda _t: False)(t))


_COMPRESSED = (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc)


def _storage(t: torch.Tensor) -> int | None:
    # under torch.vmap / torch.func a weight arrives wrapped (an ensemble's stacked weights
    # by functional_call): the storage is the wrapped tensor's
    while _transformed(t):
        t = torch._C._functorch.get_unwrapped(t)
    if isinstance(t, WeightView):  # a mapped layer's weight: no storage, refuses every op
        return None
    if t.layout is torch.sparse_coo:  # a sparse weight or buffer: by the values it stores
        t = t._values()
    elif t.layout in _COMPRESSED:
        t = t.values()
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # tensors without storage (meta, nested)
        # a wrapper subclass (a quantized weight, as torchao's): the storage of the first
        # tensor it wraps, which its views and copies by detach share (a weight so held
        # reached F.linear unnamed, its product listed as one of activations)
        if is_traceable_wrapper_subclass(t):
            return _storage(getattr(t, t.__tensor_flatten__()[0][0]))
        return None


@dataclass
class FunctionalUses:
    """What :func:`watch_functional_weights` saw."""

    weights: dict[str, str] = field(default_factory=dict)
    """Weight name -> the product it reached."""
    modulated: dict[str, str] = field(default_factory=dict)
    """Weight name -> the product it reached multiplied by an activation."""
    products: dict[str, str] = field(default_factory=dict)
    """Module name -> ``'attention products'`` or ``'activation products'``, for the modules
    whose own forward multiplies activations only."""
    scaled: dict[str, str] = field(default_factory=dict)
    """Weight name -> the element-wise product with an activation it reached, for the weights
    that reach no matrix product (a sum of ``x * W``, a spectral filter)."""
    lookups: dict[str, str] = field(default_factory=dict)
    """Weight name -> the look-up reading it (``F.embedding`` outside an ``nn.Embedding``),
    for the weights no product reads."""
    compiled: dict[str, str] = field(default_factory=dict)
    """Weight name -> the aten product it reached inside code no torch function call showed
    (a ``torch.jit.script`` function called from the forward), for the weights named nowhere
    else."""
    unreached: list[str] = field(default_factory=list)
    """Weight matrices (parameters outside the mapped and listed modules) no torch call of
    the pass read: on a branch, an expert or a loop the pass did not take."""
    held: dict[str, str] = field(default_factory=dict)
    """Weight name -> how the model holds it where that is not as a parameter: ``'buffer'``
    (``register_buffer``) or ``'tensor'`` (a plain tensor attribute)."""

    def kind(self, name: str) -> str:
        """The type column of a weight's digital row: ``'parameter'``, ``'buffer'`` or
        ``'tensor'``."""
        return self.held.get(name, "parameter")


class _Watch(TorchFunctionMode):
    """Records the names of the watched weights among the operands of every product: a
    parameter by its storage (a transposed or reshaped view counts), a tensor computed from
    weights only by identity (weakly held: a freed one's id may return as an activation); and
    the module (``owner()``) calling a product of activations only."""

    def __init__(self, params: dict[int, str], owner: Callable[[], str | None],
                 aux: frozenset[int] = frozenset(), matrices: frozenset[str] = frozenset(),
                 listed: Callable[[], bool] = lambda: False,
                 retired: dict[int, str] | None = None,
                 outside: Callable[[], bool] = lambda: False,
                 learned: frozenset[str] = frozenset()):
        super().__init__()
        self.learned = learned  # names of the watched weights that are parameters
        # storages of the replaced layers' parameters -> the layer's name; ``outside()``: a
        # forward runs and no mapped or listed module's is among those running
        self.retired = retired or {}
        self.outside = outside
        self.params = params
        self.matrices = matrices  # names of the watched weights that are matrices (_is_matrix)
        self.aux = aux  # storages of 1-D float and of non-float buffers: no weight, no activation
        # tensors computed from those and from non-float buffers only, or made by factories
        # (``torch.ones(...).tril()``): constants, not activations (a MADE or pruning mask)
        self.constants: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.owner = owner
        self.listed = listed  # True while a mapped or listed module's forward runs
        self.derived: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.mixed: WeakIdKeyDictionary = WeakIdKeyDictionary()  # modulated weights' names
        self.added: WeakIdKeyDictionary = WeakIdKeyDictionary()  # weights added to an input
        self.spread: WeakIdKeyDictionary = WeakIdKeyDictionary()  # ... broadcast against it
        self.depth = 0  # torch function calls running (their aten ops are this watch's)
        self.found: dict[str, str] = {}
        self.modulated: dict[str, str] = {}
        self.scaled: dict[str, str] = {}
        self.products: dict[str, str] = {}
        self.lookups: dict[str, str] = {}
        self.read: set[str] = set()  # every watched weight some call took as an operand

    def _weight(self, t: torch.Tensor) -> tuple[str, ...] | None:
        """The weights ``t`` is (a parameter's view) or was computed from; None: an
        activation."""
        names = self.derived.get(t)
        if names is not None:
            return names
        name = self.params.get(_storage(t) or 0)
        return None if name is None else (name,)

    def _constant(self, t: torch.Tensor) -> bool:
        """Whether ``t`` depends on no input and is no weight: a 1-D float or a non-float
        buffer, or computed from such tensors and factories only."""
        return t in self.constants or _storage(t) in self.aux

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if any(isinstance(t, WeightView) for t in _tensors([*args, *kwargs.values()])):
            # a mapped layer's weight read by the model: its metadata (.dtype), or an op
            # the view refuses itself, naming the layer
            return func(*args, **kwargs)
        call, func = func, _canonical(func)
        if self.retired and func in _COMPUTING:
            for t in _tensors([*args, *kwargs.values()]):
                layer = self.retired.get(_storage(t) or 0)
                if layer is not None and self.outside():
                    raise stale_reference_error(layer)
        self.depth += 1
        try:
            out = call(*args, **kwargs)
        finally:
            self.depth -= 1
        operands = list(_tensors([*args, *kwargs.values()]))
        if all(self._constant(t) for t in operands):  # none at all: a factory
            for t in _tensors(out):
                self.constants[t] = True
        if not operands:
            return out
        names = [self._weight(t) for t in operands]
        # computed with (not .device, .dim()), or its values read out of torch (.tolist():
        # named a functional use below, and said never read as well)
        if next(iter(_tensors(out)), None) is not None or func in _READ_OUT:
            self.read.update(n for group in names if group for n in group)
        product = func in _PRODUCTS or func in ATEN_PRODUCTS or func in _ATTENTION
        factors = [self._weight(t) for t in _factors(func, args, kwargs)] if product else names
        # a product inside a mapped or listed module (an excluded head reading the embedding
        # table it is tied to) is that module's, already listed: no functional use
        if (product or func in _DISTANCES or func in _SOLVES) and not self.listed():
            for group in factors:  # an exported graph's aten calls too
                for name in group or ():
                    self.found.setdefault(name, getattr(func, "__name__", str(func)))
            if product:  # a weight matrix added to an activation in a factor: in float too
                for t in _factors(func, args, kwargs):
                    for name in self.added.get(t, ()):
                        self.found.setdefault(name, getattr(func, "__name__", str(func)))
        if func in _READ_OUT and not self.listed():  # a learned matrix computed on unseen
            for name in names[0] or ():
                if name in self.matrices and name in self.learned:
                    self.found.setdefault(name, getattr(func, "__name__", str(func)))
        if func in _LOOKUPS and not self.listed():
            table = args[1] if len(args) > 1 else kwargs.get("weight")
            for name in (self._weight(table) if isinstance(table, torch.Tensor) else None) or ():
                self.lookups.setdefault(name, func.__name__)
        if func in _WEIGHTED and not self.listed():
            for group in names:
                for name in group or ():
                    if name in self.matrices:
                        self.found.setdefault(name, getattr(func, "__name__", str(func)))
            if func is F.multi_head_attention_forward and (owner := self.owner()) is not None:
                self.products.setdefault(owner, "attention products")  # Q·Kᵀ, ·V within
        if (product and len(factors) >= 2 and all(group is None for group in factors)
                and (owner := self.owner()) is not None):
            kind = "attention products" if func in _ATTENTION else "activation products"
            self.products.setdefault(owner, kind)
            for t in _factors(func, args, kwargs):
                for name in self.mixed.get(t, ()):
                    self.modulated.setdefault(name, getattr(func, "__name__", str(func)))
        if not product:
            if not self.listed() and (func in _MAGNITUDES or (
                    func in _SCALINGS and len(operands) == 2 and operands[0] is operands[1])):
                for t in operands:  # a distance to a weight's rows: computed in float
                    for name in self.spread.get(t, ()):
                        self.found.setdefault(name, getattr(func, "__name__", str(func)))
            self._modulate(func, operands, names, out)
            self._add(func, operands, names, out)
            self._spread(func, operands, names, out)
        # from weights (and 1-D buffers) only: still a weight, of every weight it was computed
        # from (a quaternion matrix torch.cat assembles from four blocks names the four)
        known = tuple(dict.fromkeys(n for group in names if group for n in group))
        if known and all(group is not None or self._constant(t) or _index(func, t)
                         for group, t in zip(names, operands, strict=True)):
            for t in _tensors(out):
                self.derived[t] = known
        elif out is operands[0]:  # in place (``b.clone().addmm_(x, W)``), an activation mixed
            self.derived.pop(out, None)  # in: no weight's any more, nor a constant
            if not all(self._constant(t) for t in operands[1:]):
                self.constants.pop(out, None)
        return out

    def _add(self, func, operands: list[torch.Tensor], names: list[tuple[str, ...] | None],
             out) -> None:
        """Tag ``out`` with the weight matrices added to an activation in it (plasticity's
        ``W + alpha * hebb``, a weight plus a per-sample term): a product taking it as a
        factor multiplies them in float (named as functional weights). Kept by a further
        addition and by shape-only ops, not by any other: a table added and then passed
        through a softmax or a layer (ALiBi's bias, a position embedding) stays silent. Learned
        weights only: a buffer so added (RepVGG's one-hot identity kernel, added to branches
        kept digital, whose weights the watch does not follow) is no learned weight."""
        if func in _ADDITIONS:
            pairs = list(zip(names, operands, strict=True))
            carried = [n for group, t in pairs if group and _is_matrix(t) for n in group
                       if n in self.matrices and n in self.learned]
            carried += [n for t in operands for n in self.added.get(t, ())]
            if not carried or not any(group is None and not self._constant(t)
                                      for group, t in pairs):
                return
        elif func in _RESHAPES:
            carried = list(self.added.get(operands[0], ()))
            if not carried:
                return
        else:
            return
        for t in _tensors(out):
            self.added[t] = tuple(dict.fromkeys(carried))

    def _spread(self, func, operands: list[torch.Tensor],
                names: list[tuple[str, ...] | None], out) -> None:
        """Tag ``out`` with the weight matrices whose rows an addition broadcasts an activation
        against (an RBF network's ``x[:, None] - centres``: every sample minus every centre,
        an output larger than the activation): its magnitude (``.pow(2)``, ``.abs()``, a norm)
        is a distance to each row, ``|x|² - 2 x·c + |c|²``, computed in float as
        ``torch.cdist``'s is (named as such). Kept by further additions, scalings (a width per
        centre) and shape-only ops. A table added within the activation's shape (a position
        embedding, then a hand-written RMSNorm's ``x.pow(2)``) is none; learned weights only."""
        carried = [n for t in operands for n in self.spread.get(t, ())]
        if func in _ADDITIONS:
            acts = [t for group, t in zip(names, operands, strict=True)
                    if group is None and not self._constant(t)]
            if (acts and isinstance(out, torch.Tensor)
                    and out.numel() > max(t.numel() for t in acts)):
                carried += [n for group, t in zip(names, operands, strict=True)
                            if group and _is_matrix(t) for n in group
                            if n in self.matrices and n in self.learned]
        elif func not in _RESHAPES and func not in _SCALINGS:
            return
        if carried:
            for t in _tensors(out):
                self.spread[t] = tuple(dict.fromkeys(carried))

    def _modulate(self, func, operands: list[torch.Tensor],
                  names: list[tuple[str, ...] | None], out) -> None:
        """Tag ``out`` with the weight matrices it is computed from, multiplied by an
        activation: made by a scaling of a weight matrix by an activation, kept by whatever
        computes on a tensor so tagged (demodulation, a reshape)."""
        carried = [n for t in operands for n in self.mixed.get(t, ())]
        if func in _SCALINGS and any(group is None and not self._constant(t)
                                     and t.dim() > 0 for group, t in zip(names, operands,
                                                                          strict=True)):
            scaled = [n for group, t in zip(names, operands, strict=True) if group
                      and _is_matrix(t) for n in group if n in self.matrices]
            carried += scaled
            if not self.listed():  # the product is this one, element-wise (module docstring)
                for name in scaled:  # a buffer so multiplied: a float mask, a window
                    if name in self.learned:
                        self.scaled.setdefault(name, getattr(func, "__name__", str(func)))
        if carried:
            for t in _tensors(out):
                self.mixed[t] = tuple(dict.fromkeys(carried))


_ATEN = torch.ops.aten
_FIRST_TWO = (_ATEN.mm.default, _ATEN.bmm.default, _ATEN.mv.default, _ATEN.dot.default,
              _ATEN.vdot.default, _ATEN.convolution.default,
              *((_ATEN._grouped_mm.default,) if hasattr(_ATEN, "_grouped_mm") else ()))
_AFTER_FIRST = (_ATEN.addmm.default, _ATEN.addmv.default, _ATEN.baddbmm.default,
                _ATEN.addbmm.default)
_COMPILED_FACTORS = {**{f: slice(0, 2) for f in _FIRST_TWO},
                     **{f: slice(1, 3) for f in _AFTER_FIRST}}
"""The aten products (as the dispatcher sees them, below every composite) -> the slice of
their arguments that are factors: a bias (``addmm``'s first operand, a convolution's third)
is none."""


_CONTROL_FLOW = frozenset({"cond", "while_loop", "map_impl", "scan", "associative_scan"})
"""torch's control-flow higher-order operators (their names), which torch runs by tracing
their branches with torch.compile."""


def higher_order_error() -> MappingError:
    """The refusal of a control-flow higher-order operator in the forward (deploy's and
    ``prepare``'s calibration pass)."""
    return MappingError(
        "the forward calls a torch higher-order operator (torch.cond, torch.while_loop, "
        "torch.func map / scan), which torch runs by tracing its branches with torch.compile; "
        "the calibration pass's hooks and the simulated layers (NumPy) cannot be traced: "
        "write the branch or loop in Python (if / for, as torch.cond computes in eager mode) "
        "to deploy or prepare the model")


class _Compiled(TorchDispatchMode):
    """The storages of the factors of every aten product that runs while no torch function
    call of the watch (:class:`_Watch`) is running: products inside compiled code, which
    torch runs without a ``__torch_function__`` call (a ``torch.jit.script`` function called
    from the forward; its ``x @ w.t()`` reaches the dispatcher as ``aten.mm``)."""

    # torch refuses a higher-order operator a mode does not declare it handles: FlexAttention
    # passes through, the control-flow ones are refused as torch refuses them without the mode
    supports_higher_order_operators = True

    def __init__(self, watch: _Watch):
        super().__init__()
        self.watch = watch
        self.seen: dict[int, str] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if isinstance(func, torch._ops.HigherOrderOperator):
            if func.name() in _CONTROL_FLOW:  # below autograd it would run one branch
                raise higher_order_error()      # eagerly, not refuse as torch does above
            return func(*args, **(kwargs or {}))
        factors = _COMPILED_FACTORS.get(func)
        if factors is not None and not self.watch.depth and not self.watch.listed():
            for t in args[factors]:
                if isinstance(t, torch.Tensor) and (ptr := _storage(t)):
                    self.seen.setdefault(ptr, func.__name__)
        # below every torch function call: the watch must not see the op again (an aten op
        # re-issued from here would reach it as a call of its own, at depth 0)
        with torch._C.DisableTorchFunction():
            return func(*args, **(kwargs or {}))


def _under(name: str, modules: Iterable[str]) -> bool:
    """Whether module ``name`` is one of ``modules`` or inside one."""
    return any(name == m or name.startswith(m + ".") for m in modules)


def _plain_tensors(modules: Mapping[str, nn.Module]) -> list[tuple[str, torch.Tensor]]:
    """Float matrices held as plain attributes (``self.P = torch.randn(8, 4)``: neither
    parameter nor buffer), by their attribute path: a constant matrix a product applies is a
    weight the arrays could hold, named as a buffer is (it was one more activation product).
    """
    return [(f"{name}.{attr}" if name else attr, t)
            for name, m in modules.items() for attr, t in vars(m).items()
            if isinstance(t, torch.Tensor) and not isinstance(t, nn.Parameter)
            and t.is_floating_point() and t.dim() >= 2]


def _unregistered_parameters(modules: Mapping[str, nn.Module],
                             replaced: Iterable[nn.Module] = ()
                             ) -> list[tuple[str, torch.Tensor]]:
    """Parameters of modules held in plain Python containers (``self.heads = [nn.Linear(8,
    4)]``, a dict of them: not an ``nn.ModuleList``, so torch registers neither the module
    nor its weights), by their attribute path (``heads[0].weight``): such a layer runs, and
    its float product passed for a simulated one, listed nowhere. Layers the tree held
    before a simulated or twin layer ``replaced`` them are not such modules: a call through
    another reference to one is a :func:`stale_reference_error`."""
    registered = {id(m) for m in modules.values()} | {id(m) for m in replaced}
    out: list[tuple[str, torch.Tensor]] = []
    for name, m in modules.items():
        for attr, value in vars(m).items():
            items = (value.items() if isinstance(value, dict)
                     else enumerate(value) if isinstance(value, (list, tuple)) else ())
            for key, sub in items:
                if isinstance(sub, nn.Module) and id(sub) not in registered:
                    path = f"{name}.{attr}" if name else attr
                    out += [(f"{path}[{key!r}].{p}" if isinstance(key, str) else
                             f"{path}[{key}].{p}", t) for p, t in sub.named_parameters()]
    return out


@contextmanager
def watch_functional_weights(model: nn.Module, skip: Iterable[str],
                             replaced: Mapping[str, nn.Module] | None = None,
                             original: nn.Module | None = None) -> Iterator[FunctionalUses]:
    """Within the block, record the parameters of ``model`` that reach a matrix product, and
    the modules that multiply activations: yields a :class:`FunctionalUses` filled at the end.
    Parameters of the modules named in ``skip`` (mapped, or kept digital for a reason already
    stated) and of their submodules are not watched, nor products within them.
    ``replaced``: layer name -> the original module a simulated or twin layer replaced; a
    product reading its parameters in the forward, outside the mapped and listed modules, is a
    :func:`stale_reference_error`; so is one reading the parameters of the same layer in
    ``original``, the user's model ``model`` was copied from (a function held as an attribute,
    a lambda or a ``torch.compile`` d method closing over the model, is not copied: it calls
    the user's layers)."""
    skip = list(skip)
    modules = dict(model.named_modules())
    # an embedding's look-up is no product: its table in one is a tied head (module docstring)
    skipped = tuple(s for s in skip
                    if not isinstance(modules.get(s), (nn.Embedding, nn.EmbeddingBag)))

    def watched(name: str) -> bool:
        return not _under(name, skipped)

    params: dict[int, str] = {}
    weights = [*model.named_parameters(),
               *((n, b) for n, b in model.named_buffers()
                 if b.is_floating_point() and b.dim() >= 2),
               *_plain_tensors(modules),
               *_unregistered_parameters(modules, (replaced or {}).values()),
               # the user's own, reached through a function the copy shares: named as the copy's
               *(() if original is None else original.named_parameters())]
    for name, p in weights:
        ptr = _storage(p)
        if ptr and watched(name.rpartition(".")[0]):
            params.setdefault(ptr, name)
    aux = frozenset(ptr for n, b in model.named_buffers()
                    if (not b.is_floating_point() or b.dim() < 2) and (ptr := _storage(b)))
    # the module whose forward runs now: global module hooks while the block runs
    names = {id(m): name for name, m in modules.items()}
    stack: list[str | None] = []
    inside = tuple(skip)  # mapped and digital modules: their rows say it already

    def listed() -> bool:
        name = stack[-1] if stack else None
        return name is not None and _under(name, inside)

    def outside() -> bool:
        # any running forward of a mapped or listed module (one may call its float source)
        return bool(stack) and not any(name is not None and _under(name, inside)
                                       for name in stack)

    retired: dict[int, str] = {}
    users = {} if original is None else dict(original.named_modules())
    for layer, module in (replaced or {}).items():
        for p in [*module.parameters(), *(users[layer].parameters() if layer in users else ())]:
            if (ptr := _storage(p)) and ptr not in params:  # shared with a watched one: its
                retired.setdefault(ptr, layer)              # own uses are named as such

    def owner() -> str | None:
        name = stack[-1] if stack else None
        if name is None or listed():
            return None
        return name or "model"

    def push(module: nn.Module, args) -> None:
        stack.append(names.get(id(module)))

    def pop(module: nn.Module, args, out) -> None:
        if stack:
            stack.pop()

    uses = FunctionalUses()
    uses.held.update((n, "buffer") for n, _ in model.named_buffers())
    uses.held.update((n, "tensor") for n, _ in _plain_tensors(modules))
    mode = _Watch(params, owner, aux, frozenset(n for n, w in weights if _is_matrix(w)), listed,
                  retired, outside, frozenset(n for n, _ in model.named_parameters()))
    hooks = [torch.nn.modules.module.register_module_forward_pre_hook(push),
             torch.nn.modules.module.register_module_forward_hook(pop, always_call=True)]
    net = _Compiled(mode)
    try:
        with _flex_attention_eager(), mode, net:
            yield uses
    finally:
        for hook in hooks:
            hook.remove()
    uses.weights.update(mode.found)
    uses.products.update(mode.products)
    uses.modulated.update((n, f) for n, f in mode.modulated.items() if n not in mode.found)
    uses.scaled.update((n, f) for n, f in mode.scaled.items()
                       if n not in mode.found and n not in mode.modulated)
    uses.lookups.update((n, f) for n, f in mode.lookups.items()
                        if n not in mode.found and n not in mode.modulated
                        and n not in mode.scaled)
    named = {*mode.found, *mode.modulated, *mode.scaled, *mode.lookups}
    for ptr, func in net.seen.items():
        name = params.get(ptr)
        if name is not None and name not in named and name in mode.matrices:
            uses.compiled.setdefault(name, func)
    # a weight matrix the pass never read is neither mapped nor listed: a later forward that
    # reaches it (a branch, an expert it did not take) ran it in float, named nowhere (an
    # nn.Linear the pass never reached is refused: it has no calibrated ranges)
    mine = mode.learned | {n for n in params.values() if "[" in n}
    # (not a table of a listed module: an Embedding the pass did not reach is listed already)
    uses.unreached = sorted(n for n in set(params.values())
                            if n in mine and n in mode.matrices and n not in mode.read
                            and n not in uses.compiled
                            and not _under(n.rpartition(".")[0], tuple(skip)))


def _warn_named(who: str, named: Mapping[str, str], what: str, tail: str = "") -> None:
    """One ``UserWarning``, ``'{who}: {n} {what}: name (func), ...{tail}'``, where ``named``
    (weight name -> the function it reached) is not empty; attributed to the caller of
    :func:`warn_functional`'s caller (deploy's or ``prepare``'s user)."""
    if named:
        names = ", ".join(f"{name} ({func})" for name, func in sorted(named.items()))
        warnings.warn(f"{who}: {len(named)} {what}: {names}{tail}", UserWarning, stacklevel=4)


def warn_functional(uses: FunctionalUses, who: str) -> list[tuple[str, str, str]]:
    """One ``UserWarning`` naming the weights used functionally; returns them as
    ``(name, 'parameter' | 'buffer' | 'tensor', reason)`` rows of the digital list (how
    the model holds it), then the modules multiplying activations as ``(module, 'attention
    products' | 'activation products', reason)`` rows and the tables read by a look-up only
    (not warned: nothing claimed them simulated)."""
    products = [(name, kind, ATTENTION_REASON if kind == "attention products"
                 else ACTIVATION_REASON) for name, kind in uses.products.items()]
    products += [(name, uses.kind(name), LOOKUP_REASON) for name in sorted(uses.lookups)]
    products += [(name, uses.kind(name), COMPILED_REASON) for name in sorted(uses.compiled)]
    _warn_named(who, uses.compiled, "weight(s) reach a matrix product inside compiled code (a "
                "torch.jit.script function, a C++ extension) and run digitally in float",
                "; call an nn.Linear / nn.Conv module from Python to map it")
    modulated = [(name, uses.kind(name), MODULATED_REASON) for name in sorted(uses.modulated)]
    modulated += [(name, uses.kind(name), SCALED_REASON) for name in sorted(uses.scaled)]
    _warn_named(who, uses.scaled, "weight matrix(es) are multiplied element-wise by an "
                "activation (a product written as x * W, then summed or transformed, e.g. a "
                "spectral filter), which no array computes, and run digitally in float")
    _warn_named(who, uses.modulated, "weight(s) are multiplied by an activation before a "
                "matrix product (input-dependent weights, which no array holds programmed "
                "once) and run digitally in float")
    if uses.unreached:
        n = len(uses.unreached)
        warnings.warn(f"{who}: {n} weight matri{'x' if n == 1 else 'ces'} the calibration "
                      "pass never read (on a branch, an expert or a loop it did not take): "
                      f"{', '.join(uses.unreached[:8])}{' ...' if n > 8 else ''}; a later "
                      "forward reaching one runs it digitally in float, neither mapped nor "
                      "listed: pass calibration inputs that reach them (a weight the model "
                      "never uses can be ignored)", UserWarning, stacklevel=3)
    hidden = {n: v for n, v in uses.weights.items() if "[" in n}  # _unregistered_parameters
    plain = {n: v for n, v in uses.weights.items() if n not in hidden}
    _warn_named(who, hidden, "layer weight(s) belong to modules held in a plain list or dict, "
                "which torch does not register, and run digitally in float", "; hold them in "
                "an nn.ModuleList / nn.ModuleDict to map them")
    _warn_named(who, plain, "weight(s) reach a matrix product without a mappable module "
                "and run digitally in float", "; hold each in an nn.Linear / nn.Conv module "
                "(e.g. self.proj = nn.Linear(...), then self.proj(x)) to map it")
    return ([(name, uses.kind(name),
              UNREGISTERED_REASON if name in hidden else FUNCTIONAL_REASON)
             for name in sorted(uses.weights)] + modulated + products)


def refuse_transformed_inputs(layer: str, inputs: Iterable[object]) -> None:
    """What a simulated (or twin) layer raises when it is called inside a ``torch.func``
    transform (a per-sample function mapped by ``torch.func.vmap``, ``grad`` / ``jacrev``):
    its inputs are wrapped tensors with no storage, which the layer's NumPy computation (the
    arrays', and the calibration pass's) cannot read; torch's own error ("Cannot access data
    pointer of Tensor that doesn't have storage") named no layer. Or on a forward-mode dual
    tensor (``torch.autograd.forward_ad``), whose tangent the layer cannot carry. Or under a
    tracer (:func:`refuse_tracing`)."""
    refuse_tracing(layer, inputs)
    if any(isinstance(t, torch.Tensor) and _transformed(t) for t in _tensors(list(inputs))):
        raise MappingError(
            f"{layer}: called inside a torch.func transform (torch.func.vmap / torch.vmap over "
            "a per-sample function, grad, jacrev ...); the layer computes on the simulated "
            "arrays in NumPy, outside the transform, so it cannot take the transform's "
            "per-sample tensors: call the layer on the whole batch (nn.Linear / nn.Conv take a "
            "batch dimension), or exclude the layer (exclude=[...]) to keep it digital")
    if any(isinstance(t, torch.Tensor) and _dual(t) for t in _tensors(list(inputs))):
        # the layer's output carried no tangent: the model's own code failed on it, a bare
        # TypeError naming no layer (``fwAD.unpack_dual(y).tangent`` was None)
        raise MappingError(
            f"{layer}: called on a forward-mode dual tensor (torch.autograd.forward_ad."
            "make_dual: a Jacobian-vector product inside the forward); the layer computes on "
            "the simulated arrays in NumPy (its twin, quantized) and carries no tangent, so "
            "the derivative would be lost: compute it outside the model, or exclude the layer "
            "(exclude=[...]) to keep it digital")


def refuse_tracing(who: str, inputs: Iterable[object] = ()) -> None:
    """What a simulated (or twin) layer, or a deployed model, raises under a tracer that
    records torch operations: the layer computes in NumPy and Numba, which no tracer sees.
    ``torch.jit.trace`` recorded the arrays' outputs of the tracing call as constants (a traced
    model gave the calibration call's outputs for every input, with torch's generic
    TracerWarnings only); ``torch.export`` and ``torch.fx.symbolic_trace`` failed inside
    torch or the layer, naming nothing. ``torch.compile`` runs the layers eagerly instead
    (:func:`cimsim._eager.eager`)."""
    if torch.jit.is_tracing():
        how = "torch.jit.trace (or a TorchScript-based export)"
    elif getattr(torch.compiler, "is_exporting", bool)():  # (torch >= 2.6; bool() is False)
        how = "torch.export"
    elif any(isinstance(t, torch.fx.Proxy) for t in inputs):
        how = "torch.fx symbolic tracing"
    else:
        return
    raise MappingError(
        f"{who}: called under {how}, which records torch operations; the simulated chip "
        "computes in NumPy and Numba, which it cannot record (a trace would replay this "
        "call's outputs as constants): run the model itself (a deployed model also under "
        "torch.compile, which runs its simulated layers eagerly); export the float model "
        "for other tools")


def refuse_non_float_input(layer: str, args: tuple) -> None:
    """What a simulated (or twin) layer raises on an input (its first argument) it cannot
    compute on as the model's own layer would:

    - not floating point: torch's own layer refuses it ("mat1 and mat2 must have the same
      dtype"), the simulated one computed it in float64 and cast its output back to the
      input's integer dtype, every output truncated: integer calibration data (pixels as
      uint8, a table of int64) calibrated the later layers on truncated activations, silently;
    - complex: torch's layer of real weights refuses it too; the arrays' NumPy copy kept the
      real part and the output came back complex, its imaginary part 0, with only torch's
      casting warning;
    - on the meta device: no values to compute on (torch's bare "Cannot copy out of meta
      tensor" named no layer)."""
    x = args[0] if args else None
    if type(x) in (list, tuple) and x and all(isinstance(t, torch.Tensor) for t in x):
        # sim(list(x)): an AttributeError ('list' object has no attribute 'dim') from inside
        raise MappingError(
            f"{layer}: its input is a {type(x).__name__} of {len(x)} tensors; the model's own "
            "layer takes one tensor: call the model on torch.stack(samples) or "
            "torch.cat(batches)")
    if not isinstance(x, torch.Tensor):
        return
    dtype = str(x.dtype).removeprefix("torch.")
    if x.is_complex():
        raise MappingError(
            f"{layer}: its input is {dtype}; the model's own layer of real weights refuses it, "
            "and the arrays compute on real values (the imaginary part would be dropped): "
            "give the real and imaginary parts as real tensors (torch.view_as_real)")
    if not x.is_floating_point():
        raise MappingError(
            f"{layer}: its input is {dtype}, not floating point; the model's own layer refuses "
            f"it, and a simulated one would return {dtype} (its outputs truncated): cast the "
            "inputs (and the calibration data) to the model's dtype, e.g. x.float(), scaled "
            "as the model was trained on")
    if x.device.type == "meta":
        raise MappingError(
            f"{layer}: its input is on the meta device, which holds no values to compute on; "
            "give the inputs (and the calibration data) as tensors with values, on the CPU or "
            "the model's device")


def _dual(t: torch.Tensor) -> bool:
    """Whether ``t`` carries a forward-mode tangent (inside ``forward_ad.dual_level``)."""
    return torch.autograd.forward_ad.unpack_dual(t).tangent is not None


def stale_reference_error(layer: str) -> MappingError:
    """What a product raises when it reads a weight of the float layer that deploy or
    ``prepare`` replaced, reached by the forward through a reference the module tree does not
    hold: the replacement is made where the tree holds the layer, so such a call computes in
    float unseen."""
    return MappingError(
        f"{layer}: the forward calls the original float layer through a reference the module "
        "tree does not hold (a plain list, tuple or dict of layers, a bound .forward or a "
        "functools.partial kept as an attribute, a weight kept in a list, a function closing "
        "over the model kept as an attribute: a lambda, a nested function, a torch.compile'd "
        "method, which the copy deploy and prepare work on shares with your model); the "
        "simulated (or twin) layer replaces it where the tree holds it, so that call would "
        "compute in float: hold the layers in nn.ModuleList / nn.ModuleDict and call them as "
        "modules (a method, def, rather than a function attribute), or exclude the layer "
        "(exclude=[...]) to keep it digital")


def weight_read_error(module: nn.Module, attr: str, layer: str,
                      held: str = "programmed on the simulated arrays") -> AttributeError:
    """What a simulated (or twin) layer answers when the model's code reads one of its
    weights (``self.fc.weight``) that the source module did not hold as a tensor: the
    weights live on the simulated arrays (or in the twin, quantized in its own call:
    ``held`` says which), so a forward computing with them outside the layer's own call
    cannot be simulated (a :class:`~cimsim.errors.WeightReadError`, both a ``MappingError``
    and an ``AttributeError``); any other missing attribute raises as torch does. A weight
    the source held is read as a :class:`~cimsim.mapping.weight_view.WeightView`
    (:func:`weight_view`): its metadata, refusing every computation with this message."""
    if not weight_like(attr):
        return AttributeError(f"'{type(module).__name__}' object has no attribute '{attr}'")
    return WeightReadError(weight_read_message(type(module).__name__, attr, layer, held))


def weight_view(module: nn.Module, attr: str, layer: str, metas: Mapping[str, TensorMeta | None],
                held: str = "programmed on the simulated arrays") -> WeightView | None:
    """``module.attr`` read by the model's code, for a weight the source held (``metas``,
    :func:`~cimsim.mapping.weight_view.tensor_metas`): a :class:`WeightView` reporting its
    metadata and refusing every computation naming the layer, or ``None`` where the source's
    was (a bias-free layer's ``.bias``). Any other attribute: :func:`weight_read_error`."""
    if attr not in metas:
        raise weight_read_error(module, attr, layer, held)
    meta = metas[attr]
    return None if meta is None else WeightView(
        meta, weight_read_message(type(module).__name__, attr, layer, held), module, attr)


def linear_through(layer: nn.Module, x: torch.Tensor, bias: torch.Tensor | None,
                   own_bias: bool, fused: bool) -> torch.Tensor | None:
    """``F.linear(x, layer.weight, bias)`` computed by the mapped (or twin) Linear ``layer``
    itself, its product on its arrays (or through its twin) and ``bias`` added after, as the
    layer adds its own; None where the layer's call is not ``x @ W.T`` (it adds a bias of its
    own, or its converter is fused with the next ReLU): the weight's view then refuses the
    product as any other (:class:`~cimsim.mapping.weight_view.WeightView`)."""
    if own_bias or fused:
        return None
    y = layer(x)
    return y if bias is None else y + bias.to(y.dtype)


def _changed(now: torch.Tensor, was: torch.Tensor) -> bool:
    """Whether a tensor attribute set again holds other values than when it was programmed."""
    return now is not was and not (now.shape == was.shape and now.dtype == was.dtype
                                   and torch.equal(now.detach(), was.detach()))


def refuse_swapped_weights(module: nn.Module, layer: str,
                           held: Mapping[str, torch.Tensor] | None = None) -> None:
    """What a simulated (or twin) layer raises when it is called with a tensor set as its
    ``.weight`` / ``.bias`` (``torch.func.functional_call`` with a dict of adapted parameters,
    MAML's fast weights): torch sets them as plain attributes, which the layer never reads,
    so it would compute with its programmed (or twin) weights and ignore the adapted ones.
    ``held``: the layer's tensor attributes when it was programmed (a transposed conv's bias,
    a weight the forward set during calibration): one the forward sets again is accepted
    while it holds the same values (AWD-LSTM's ``WeightDropout`` in eval sets a clone of its
    raw weight every call), refused when they differ (dropped out at inference too)."""
    held = held or {}
    swapped = sorted(a for a, v in vars(module).items()
                     if isinstance(v, torch.Tensor) and weight_like(a)
                     and not isinstance(v, WeightView)  # its own view, set back by swap_tensor
                     and (a not in held or _changed(v, held[a])))
    if swapped:
        raise MappingError(
            f"{layer}: called with {', '.join('.' + a for a in swapped)} set from outside "
            "(torch.func.functional_call / torch.nn.utils.stateless with a dict of adapted "
            "parameters, e.g. MAML's fast weights, or a wrapper setting it before every call, "
            "e.g. AWD-LSTM's WeightDropout); the layer computes with the weights "
            "programmed on the arrays (deploy) or held by its twin (prepare: pass the twin's "
            "own names, NAME.twins.0.weight ...), never with these; exclude the layer "
            "(exclude=[...]) to keep it digital")

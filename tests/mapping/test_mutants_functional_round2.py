"""Second mutation-testing round over ``cimsim/mapping/functional.py`` (the watch naming the
weights that reach a product outside a mappable module, and the guards simulated layers call)
and ``cimsim/mapping/convnd.py`` (Conv3d / ConvTranspose on the arrays): each test pins a
behaviour that a small wrong change left every earlier test passing (including the first
round's, ``test_mutants_mapping_ops.py``). Known answers: torch's own op on the lossless
``ideal`` chip, an exact warning text, or a rule stated in the module's docstring."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.errors import MappingError
from cimsim.mapping.convnd import SimConv3d, SimConvTranspose
from cimsim.mapping.functional import (
    ACTIVATION_REASON,
    MODULATED_REASON,
    SCALED_REASON,
    FunctionalUses,
    _unregistered_parameters,
    refuse_non_float_input,
    refuse_swapped_weights,
    warn_functional,
    watch_functional_weights,
    weight_view,
)
from cimsim.mapping.graph_digital import ATTENTION_REASON
from cimsim.mapping.weight_view import tensor_metas

from .conftest import lossless_chip


def test_a_weight_set_again_with_the_same_values_is_accepted():
    """functional.py ``_changed``: ``now is not was and not (...)`` -> ``or`` (a clone of the
    programmed weight, AWD-LSTM's WeightDropout in eval, would be refused)."""
    held = torch.arange(6.0).reshape(2, 3)
    m = nn.Module()
    m.weight = held.clone()
    refuse_swapped_weights(m, "L", {"weight": held})  # same values: accepted
    m.weight = held + 1
    with pytest.raises(MappingError, match=r"^L: called with \.weight set from outside"):
        refuse_swapped_weights(m, "L", {"weight": held})


def test_a_layers_own_weight_view_set_back_is_no_swapped_weight():
    """functional.py ``refuse_swapped_weights``: dropping ``not isinstance(v, WeightView)``
    (the layer's own view, set back as a plain attribute by swap_tensor, would be refused)."""
    metas = tensor_metas(nn.Linear(3, 2))
    m = nn.Module()
    m.weight = weight_view(m, "weight", "L", metas)
    assert "weight" in vars(m)
    refuse_swapped_weights(m, "L")


def test_an_empty_list_input_is_left_to_the_layer():
    """functional.py ``refuse_non_float_input``: dropping ``and x`` (an empty list would be
    refused as 'a list of 0 tensors'); a list of tensors is refused."""
    refuse_non_float_input("L", ([],))
    with pytest.raises(MappingError, match=r"^L: its input is a list of 2 tensors"):
        refuse_non_float_input("L", ([torch.zeros(2), torch.zeros(2)],))


def _warnings(uses: FunctionalUses) -> tuple[list, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = warn_functional(uses, "deploy")
    return rows, [str(w.message) for w in caught]


def test_eight_unreached_weights_are_all_named_and_nine_are_cut():
    """functional.py ``warn_functional``: ``' ...' if n > 8`` -> ``n >= 8`` and
    ``unreached[:8]`` -> ``[:7]`` (eight names all shown, no ellipsis; the ninth cut)."""
    names = [f"w{i}" for i in range(9)]
    _, (msg,) = _warnings(FunctionalUses(unreached=names[:8]))
    assert ": w0, w1, w2, w3, w4, w5, w6, w7; a later forward" in msg
    _, (msg,) = _warnings(FunctionalUses(unreached=names))
    assert ": w0, w1, w2, w3, w4, w5, w6, w7 ...; a later forward" in msg
    assert "w8" not in msg


def _watch(model: nn.Module, *inputs: torch.Tensor, skip: tuple[str, ...] = ()
           ) -> FunctionalUses:
    with torch.no_grad(), watch_functional_weights(model, skip) as uses:
        model(*inputs)
    return uses


class _PlainMatrix(nn.Module):
    def __init__(self):
        super().__init__()
        self.P = torch.randn(4, 6)  # a plain attribute: neither parameter nor buffer

    def forward(self, x):
        return x @ self.P.t()


def test_a_plain_2d_tensor_attribute_in_a_product_is_named_as_a_tensor():
    """functional.py ``_plain_tensors``: ``t.dim() >= 2`` -> ``> 2`` (a plain matrix
    attribute would be one more activation product, its weight named nowhere)."""
    torch.manual_seed(0)
    uses = _watch(_PlainMatrix(), torch.randn(3, 6))
    assert uses.weights == {"P": "matmul"}
    assert uses.kind("P") == "tensor"
    assert uses.products == {}


class _DictOfLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.heads = {"a": nn.Linear(6, 2)}  # a plain dict: torch registers nothing

    def forward(self, x):
        return self.heads["a"](x)


def test_a_layer_in_a_plain_dict_is_named_by_its_quoted_key():
    """functional.py ``_unregistered_parameters``: ``[{key!r}]`` -> ``[{key}]`` (the name
    ``heads['a'].weight`` written as ``heads[a].weight``)."""
    torch.manual_seed(0)
    uses = _watch(_DictOfLayers(), torch.randn(3, 6))
    assert uses.weights == {"heads['a'].weight": "linear"}


class _AliasedLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 2)
        self.alias = [self.fc]  # the registered layer, also held in a plain list

    def forward(self, x):
        return self.fc(x)


def test_a_registered_layer_also_held_in_a_list_is_not_unregistered():
    """functional.py ``_unregistered_parameters``: dropping ``id(sub) not in registered`` (a
    layer the tree holds, or one a simulated layer replaced, listed as unregistered)."""
    model = _AliasedLayer()
    modules = dict(model.named_modules())
    assert _unregistered_parameters(modules) == []
    other = nn.Linear(2, 2)
    model.alias.append(other)
    assert _unregistered_parameters(modules, [other]) == []
    assert [n for n, _ in _unregistered_parameters(modules)] == ["alias[1].weight",
                                                                 "alias[1].bias"]


class _ScaledByAStatistic(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 6))
        self.register_buffer("g", torch.rand(6) + 0.5)  # 1-D: a statistic, no weight

    def forward(self, x):
        return x @ (self.w * self.g).t()


def test_a_weight_computed_with_a_1d_buffer_stays_a_weight():
    """functional.py ``watch_functional_weights``: ``aux`` taking ``b.dim() < 1`` for
    ``< 2`` (a 1-D float buffer read as an activation: the weight it scales named as
    modulated, the product listed as one of activations)."""
    torch.manual_seed(0)
    uses = _watch(_ScaledByAStatistic(), torch.randn(3, 6))
    assert uses.weights == {"w": "matmul"}
    assert uses.modulated == {} and uses.products == {}


class _TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        return F.linear(self.fc(x), self.fc2.weight)


def test_a_skipped_layer_does_not_cover_a_sibling_sharing_its_name_prefix():
    """functional.py ``_under``: ``name.startswith(m + ".")`` -> ``startswith(m)`` (skipping
    ``fc`` would hide ``fc2``'s weight read functionally)."""
    torch.manual_seed(0)
    uses = _watch(_TwoLayers(), torch.randn(3, 6), skip=("fc",))
    assert uses.weights == {"fc2.weight": "linear"}


class _ReadsAnOldLayer(nn.Module):
    def __init__(self, old: nn.Module):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.refs = (old,)  # a tuple: not registered

    def forward(self, x):
        return self.refs[0](self.fc(x))


def test_a_replaced_layers_weight_read_outside_every_forward_is_no_stale_reference():
    """functional.py ``outside``: dropping ``bool(stack) and`` (a product of the replaced
    layer's weight run with no forward running, after the pass, refused as stale)."""
    torch.manual_seed(0)
    old = nn.Linear(6, 2)
    model = _ReadsAnOldLayer(old)
    x = torch.randn(3, 6)
    with torch.no_grad(), watch_functional_weights(model, ["fc"], replaced={"old": old}):
        F.linear(x, old.weight)  # no forward running: nothing to refuse
        with pytest.raises(MappingError, match=r"^old: the forward calls the original float "
                                               r"layer through a reference"):
            model(x)


class _FunctionalAndModulated(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 6))

    def forward(self, x):
        s = x.mean(0)  # an activation (6,)
        return F.linear(x, self.w) + x @ (self.w * s).t()


def test_a_weight_named_functional_is_not_named_modulated_too():
    """functional.py ``watch_functional_weights``: dropping ``if n not in mode.found`` from
    the modulated names (one weight, two digital rows)."""
    torch.manual_seed(0)
    uses = _watch(_FunctionalAndModulated(), torch.randn(3, 6))
    assert uses.weights == {"w": "linear"}
    assert uses.modulated == {}


class _ScaledAndLookedUp(nn.Module):
    def __init__(self):
        super().__init__()
        self.t = nn.Parameter(torch.randn(5, 6))

    def forward(self, x, idx):
        return (x[:, None] * self.t).sum(-1).sum() + F.embedding(idx, self.t).sum()


def test_a_table_scaled_element_wise_is_not_listed_as_a_look_up_too():
    """functional.py ``watch_functional_weights``: dropping ``n not in mode.scaled`` from the
    look-ups (one table, two digital rows)."""
    torch.manual_seed(0)
    uses = _watch(_ScaledAndLookedUp(), torch.randn(3, 6), torch.tensor([0, 2]))
    assert set(uses.scaled) == {"t"}
    assert uses.lookups == {}


@torch.jit.script
def _scripted_mv(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.mv(x, v)


@torch.jit.script
def _scripted_addmm(b: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.addmm(b, x, w.t())


class _ScriptedVector(nn.Module):
    def __init__(self):
        super().__init__()
        self.v = nn.Parameter(torch.randn(6))

    def forward(self, x):
        return _scripted_mv(x, self.v)


def test_a_vector_in_a_scripted_product_is_no_compiled_weight():
    """functional.py ``watch_functional_weights``: dropping ``name in mode.matrices`` from the
    compiled names (a 1-D parameter in a scripted ``mv`` named as a compiled weight)."""
    torch.manual_seed(0)
    uses = _watch(_ScriptedVector(), torch.randn(3, 6))
    assert uses.compiled == {}


class _ScriptedMatrixBias(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 6))
        self.b = nn.Parameter(torch.randn(3, 4))  # a matrix, but added: no factor

    def forward(self, x):
        return _scripted_addmm(self.b, x, self.w)


def test_a_scripted_weight_is_compiled_and_not_unreached():
    """functional.py ``watch_functional_weights``: dropping ``n not in uses.compiled`` from
    the unreached weights (a compiled weight listed as never read too); the added matrix is
    no factor. (``_COMPILED_FACTORS``' addmm slice is not reached here: this torch's scripted
    ``addmm`` of a 2-D bias reaches the dispatcher as ``aten.mm``.)"""
    torch.manual_seed(0)
    uses = _watch(_ScriptedMatrixBias(), torch.randn(3, 6))
    assert set(uses.compiled) == {"w"}
    assert uses.unreached == ["b"]  # no watched call read it


class _MatrixPower(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 6))

    def forward(self, x):
        return x * torch.linalg.matrix_power(self.w, 2).sum()  # weight-only, times the input


def test_a_product_inside_a_watched_call_is_no_compiled_product():
    """functional.py ``_Compiled``: dropping ``not self.watch.depth`` (the ``aten.mm`` inside
    ``torch.linalg.matrix_power`` of a weight, which the watch sees as one call, named as
    compiled code)."""
    torch.manual_seed(0)
    uses = _watch(_MatrixPower(), torch.randn(3, 6))
    assert uses.compiled == {} and uses.weights == {}


class _OneOperandEinsum(nn.Module):
    def forward(self, x):
        return torch.einsum("ij->j", x)


def test_a_one_operand_einsum_is_no_activation_product():
    """functional.py ``_Watch``: ``len(factors) >= 2`` -> ``>= 1`` (a sum written as an
    einsum of one activation listed as an activation product)."""
    uses = _watch(_OneOperandEinsum(), torch.randn(3, 6))
    assert uses.products == {}


class _ScalarScaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 6))

    def forward(self, x):
        return x @ (self.w * x.mean()).t()


def test_a_weight_times_a_0d_activation_is_not_modulated():
    """functional.py ``_modulate``: ``t.dim() > 0`` -> ``>= 0`` (a weight scaled by one number
    computed from the input named as an input-dependent weight)."""
    torch.manual_seed(0)
    uses = _watch(_ScalarScaled(), torch.randn(3, 6))
    assert uses.modulated == {}


class _BufferPlusActivation(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("B", torch.randn(6, 6))

    def forward(self, x):
        return x @ (self.B + x.t() @ x)


def test_a_buffer_added_to_an_activation_in_a_factor_stays_silent():
    """functional.py ``_add``: dropping ``n in self.learned`` (a float buffer added to an
    activation, then multiplied, named as a functional weight)."""
    torch.manual_seed(0)
    uses = _watch(_BufferPlusActivation(), torch.randn(3, 6))
    assert uses.weights == {}


class _FunctionalAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.in_w = nn.Parameter(torch.randn(18, 6))
        self.in_b = nn.Parameter(torch.zeros(18))
        self.out_w = nn.Parameter(torch.randn(6, 6))
        self.out_b = nn.Parameter(torch.zeros(6))

    def forward(self, x):
        return F.multi_head_attention_forward(
            x, x, x, 6, 2, self.in_w, self.in_b, None, None, False, 0.0, self.out_w,
            self.out_b, training=False, need_weights=False)[0]


def test_f_multi_head_attention_forward_lists_attention_products():
    """functional.py ``_Watch``: ``'attention products'`` -> ``'activation products'`` for
    ``F.multi_head_attention_forward``'s Q·Kᵀ and ·V."""
    torch.manual_seed(0)
    uses = _watch(_FunctionalAttention(), torch.randn(4, 1, 6))
    assert uses.products == {"model": "attention products"}
    assert set(uses.weights) == {"in_w", "out_w"}


class _ScaledInPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 6))

    def forward(self, x):
        v = self.w.clone()
        v.mul_(x.mean(0))  # in place: now computed from an activation
        return x @ v.t()


def test_a_weights_copy_scaled_in_place_by_an_activation_is_no_weight_any_more():
    """functional.py ``_Watch``: ``out is operands[0]`` -> ``operands[-1]`` (the copy kept as
    the weight's: named functional, where it is an input-dependent weight)."""
    torch.manual_seed(0)
    uses = _watch(_ScaledInPlace(), torch.randn(3, 6))
    assert uses.weights == {}
    assert set(uses.modulated) == {"w"}
    assert uses.products == {"model": "activation products"}


class _AtenPacket(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 6))

    def forward(self, x):
        return torch.ops.aten.mm(x, self.w.t())


def test_an_aten_packet_product_names_its_weight():
    """functional.py ``_canonical``: returning the packet itself (``aten.mm`` called through
    its packet is no known product: the weight unnamed)."""
    torch.manual_seed(0)
    uses = _watch(_AtenPacket(), torch.randn(3, 6))
    assert set(uses.weights) == {"w"}


def test_an_input_on_the_meta_device_is_refused_naming_the_layer():
    """functional.py ``refuse_non_float_input``: the meta-device check removed."""
    with pytest.raises(MappingError, match=r"^L: its input is on the meta device"):
        refuse_non_float_input("L", (torch.empty(2, 3, device="meta"),))
    refuse_non_float_input("L", (torch.empty(2, 3),))


class _DistanceToOld(nn.Module):
    def __init__(self, old: nn.Module, shared: nn.Parameter):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.w = shared  # the replaced layer's weight, registered here too
        self.refs = (old,)

    def forward(self, x):
        h = self.fc(x)
        return F.linear(h, self.w).sum() + torch.cdist(h, self.refs[0].bias[None]).sum()


def test_a_replaced_layers_tensor_in_a_distance_is_stale_and_a_shared_one_is_named():
    """functional.py ``_Watch``: the stale check over ``_COMPUTING`` -> ``_PRODUCTS`` (a
    distance to the replaced layer's tensor computed in float unrefused), and dropping
    ``ptr not in params`` (a weight the model registers too refused as stale, where it is
    named a functional weight)."""
    torch.manual_seed(0)
    old = nn.Linear(6, 6)
    model = _DistanceToOld(old, old.weight)
    x = torch.randn(3, 6)
    with pytest.raises(MappingError, match=r"^old: the forward calls the original float"):
        with torch.no_grad(), watch_functional_weights(model, ["fc"], replaced={"old": old}):
            model(x)
    model.refs = (nn.Linear(6, 6),)  # no replaced tensor read: the shared weight is named
    uses = _watch_replaced(model, x, old)
    assert uses.weights["w"] == "linear"


def _watch_replaced(model: nn.Module, x: torch.Tensor, old: nn.Module) -> FunctionalUses:
    with torch.no_grad(), watch_functional_weights(model, ["fc"], replaced={"old": old}) as u:
        model(x)
    return u


class _ElementWiseTable(nn.Embedding):
    def forward(self, x):
        return (x[:, None] * self.weight).sum(-1)


class _HoldsATable(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = _ElementWiseTable(5, 6)

    def forward(self, x):
        return self.emb(x)


def test_a_listed_modules_own_element_wise_product_is_not_named_scaled():
    """functional.py ``_modulate``: dropping ``if not self.listed()`` (a listed module's own
    element-wise product with its table, already its row, named as a scaled weight)."""
    torch.manual_seed(0)
    uses = _watch(_HoldsATable(), torch.randn(3, 6), skip=("emb",))
    assert uses.scaled == {}


class _Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.w = nn.Parameter(torch.randn(3, 6))

    def forward(self, x):
        return F.linear(self.fc(x), self.w)


def test_the_functional_weight_warning_points_at_deploys_caller():
    """functional.py ``_warn_named``: ``stacklevel=4`` -> ``3`` (the warning attributed to
    cimsim's own deploy, not to the user's line calling it)."""
    torch.manual_seed(0)
    x = torch.randn(4, 6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cimsim.deploy(_Functional(), cimsim.load_chip("ideal"), x, progress=False)
    named = [w for w in caught if "reach a matrix product without a mappable" in str(w.message)]
    assert len(named) == 1
    assert named[0].filename == __file__


def test_the_watch_runs_flex_attention_eagerly_and_sets_the_flag_back():
    """functional.py ``_flex_attention_eager``: ``if not _FLEX`` -> ``if _FLEX`` (the flag
    never set: flex_attention compiled around the watch)."""
    module = pytest.importorskip("torch.nn.attention.flex_attention")
    if not hasattr(module, "_FLEX_ATTENTION_DISABLE_COMPILE_DEBUG"):
        pytest.skip("this torch has no such flag")
    before = module._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG
    with watch_functional_weights(nn.Linear(2, 2), []):
        assert module._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG is True
    assert module._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG == before


def test_col2im_adds_count_the_contributions_left_after_the_crop():
    """convnd.py ``n_overlap_adds``: dropping ``- p`` from the positions (the window of
    outputs taken at [0, o) of the uncropped output rather than at [p, p + o))."""
    g = SimConvTranspose(nn.ConvTranspose1d(1, 1, 3, padding=1), "t", lossless_chip(), 0).geometry
    # L_in 3, k 3, s 1: uncropped contributions per position 1, 2, 3, 2, 1; padding 1 keeps
    # 2, 3, 2: 7 contributions on 3 outputs -> 4 adds (the uncropped window's 1, 2, 3: 3)
    assert g.n_overlap_adds((1, 3), (3,)) == 4


def test_a_transposed_conv_with_another_padding_mode_is_refused():
    """convnd.py ``TransposeGeometry``: the ``padding_mode != "zeros"`` refusal removed (a
    'reflect' set after construction, which torch's forward refuses, mapped as zeros)."""
    conv = nn.ConvTranspose1d(2, 2, 3)
    conv.padding_mode = "reflect"
    with pytest.raises(MappingError, match=r"^padding_mode 'reflect' is not supported$"):
        SimConvTranspose(conv, "t", lossless_chip(), 0)


class _TupleOfLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.heads = (nn.Linear(6, 2),)  # a tuple: torch registers nothing

    def forward(self, x):
        return self.heads[0](x)


def test_a_layer_in_a_plain_tuple_is_unregistered():
    """functional.py ``_unregistered_parameters``: ``(list, tuple)`` -> ``list`` (a tuple's
    layer computes in float, its product listed as one of activations)."""
    torch.manual_seed(0)
    uses = _watch(_TupleOfLayers(), torch.randn(3, 6))
    assert uses.weights == {"heads[0].weight": "linear"}


class _UserModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, 6))


def test_a_users_weight_read_through_a_shared_function_is_named_as_the_copys():
    """functional.py ``watch_functional_weights``: the ``original``'s parameters dropped (a
    lambda closing over the user's model reads its weight, unnamed)."""
    torch.manual_seed(0)
    user = _UserModel()
    model = _UserModel()
    model.fn = lambda x: F.linear(x, user.w)
    model.forward = lambda x: model.fn(x)
    with torch.no_grad(), watch_functional_weights(model, [], original=user) as uses:
        model(torch.randn(3, 6))
    assert uses.weights == {"w": "linear"}


class _UnusedTables(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 2)
        self.spare = nn.Parameter(torch.randn(3, 3))
        self.register_buffer("basis", torch.randn(3, 3))
        self.P = torch.randn(3, 3)

    def forward(self, x):
        return self.fc(x)


def test_only_learned_weights_the_pass_never_read_are_unreached():
    """functional.py ``watch_functional_weights``: dropping ``n in mine`` (an unused buffer
    and a plain tensor attribute listed as weights the pass never read)."""
    torch.manual_seed(0)
    uses = _watch(_UnusedTables(), torch.randn(3, 6), skip=("fc",))
    assert uses.unreached == ["spare"]


def test_each_digital_row_carries_its_own_reason():
    """functional.py ``warn_functional``: ``kind == "attention products"`` -> ``!=`` (the two
    kinds of product rows given each other's reason) and the element-wise weights given
    ``MODULATED_REASON`` for ``SCALED_REASON``."""
    uses = FunctionalUses(products={"a": "attention products", "m": "activation products"},
                          modulated={"v": "matmul"}, scaled={"w": "mul"})
    rows, _ = _warnings(uses)
    assert rows == [("v", "parameter", MODULATED_REASON), ("w", "parameter", SCALED_REASON),
                    ("a", "attention products", ATTENTION_REASON),
                    ("m", "activation products", ACTIVATION_REASON)]


@pytest.mark.parametrize("make", [lambda: SimConvTranspose(nn.ConvTranspose2d(2, 3, 2, stride=2),
                                                           "t", lossless_chip(), 0),
                                  lambda: SimConv3d(nn.Conv3d(2, 3, 2), "c", lossless_chip(), 0)],
                         ids=["conv_transpose2d", "conv3d"])
def test_a_float32_input_gives_a_float32_output(make):
    """convnd.py ``SimConvTranspose.forward`` / ``SimConv3d.forward``: ``.to(x.device,
    x.dtype)`` -> ``.to(x.device)`` (the layer's float64 arithmetic leaking out)."""
    torch.manual_seed(0)
    sim = make()
    x = torch.randn(1, 2, 3, 3) if isinstance(sim, SimConvTranspose) else torch.randn(1, 2, 3, 3, 3)
    assert sim(x).dtype == torch.float32


def test_a_wrong_channel_count_is_refused_as_torch_refuses_it_naming_the_layer():
    """convnd.py ``TransposeGeometry.rows`` / ``ConvGeometry.columns``: the input check
    removed (a transposed conv fed 4 channels for 2, a Conv3d fed 3 for 2: an error from
    inside the arithmetic naming no layer, or a silent product of the wrong channels)."""
    t = SimConvTranspose(nn.ConvTranspose1d(2, 3, 2), "t", lossless_chip(), 0)
    with pytest.raises(RuntimeError, match=r"^t: Given groups=1, weight of size \[2, 3, 2\], "
                                           r"expected 2D \(unbatched\) or 3D \(batched\) input "
                                           r"with 2 channels, but got input of size \[1, 4, 5\]"):
        t(torch.randn(1, 4, 5))
    c = SimConv3d(nn.Conv3d(2, 3, 2), "c", lossless_chip(), 0)
    with pytest.raises(RuntimeError, match=r"^c: Given groups=1, weight of size \[3, 2, 2, 2, 2\]"
                                           r", expected 4D \(unbatched\) or 5D \(batched\) input "
                                           r"with 2 channels, but got input of size "
                                           r"\[1, 3, 3, 3, 3\]"):
        c(torch.randn(1, 3, 3, 3, 3))

"""Tests written for the survivors of a third hand-made mutation round over the recognition of
modules that compute a Linear (cimsim/mapping/affine.py), the weight views a mapped layer
answers (cimsim/mapping/weight_view.py) and the LoRA adapters (cimsim/train/lora.py): each
pins a behaviour that a small wrong change left every earlier test passing. Tiny modules,
known answers worked out by hand or read off torch's own computation; each docstring names
the line and the change it kills."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cimsim.mapping.affine import affine_source
from tests.mapping.test_mutants_loaders_affine_round2 import _Gained, _Hand

pytestmark = pytest.mark.usefixtures("own_torch_generator")


def _wb(n_out: int = 3, n_in: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n_out, n_in, generator=gen), torch.randn(n_out, generator=gen)


# ---------------------------------------------------------------------------------------------
# cimsim/mapping/affine.py


class _PreBias(nn.Module):
    """A sparse autoencoder's encoder: the bias subtracted from the input before the product
    (``F.linear(x - b, W)``, ``b`` of the input's width): no Linear of this weight and bias."""

    def __init__(self):
        super().__init__()
        w, _ = _wb(3, 5)
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.linspace(-1.0, 1.0, 5))

    def forward(self, x):
        return F.linear(x - self.bias, self.weight)


class _Sequences(_Hand):
    """A Linear written for (batch, sequence, features) inputs only (``einsum`` over
    ``bsi``): it refuses rows."""

    def forward(self, x):
        return torch.einsum("bsi,oi->bso", x, self.weight) + self.bias


class TestAffineSourceRound3:
    def test_a_bias_of_the_inputs_width_is_no_linears_bias(self):
        """affine.py ``affine_source``: the ``b.shape[0] != w_eff.shape[0]`` skip dropped
        probed the (in,)-bias of a pre-bias encoder as the Linear's, and ``F.linear`` raised
        a RuntimeError out of ``affine_source`` instead of the answer None."""
        assert affine_source(_PreBias()) is None

    def test_a_module_right_on_sequences_only_is_not_taken(self):
        """affine.py ``_computes``: the rank-2 probe ``(5, in)`` dropped took a module that
        refuses rows (einsum over ``bsi``) for a Linear: deployed, rows would fail."""
        w, b = _wb()
        assert affine_source(_Sequences(w, b)) is None

    @pytest.mark.parametrize("training", [False, True])
    def test_the_linear_has_the_modules_mode_and_the_module_keeps_it(self, training):
        """affine.py ``affine_source``: ``linear.train(module.training)`` dropped gave an eval
        module a Linear in training mode; ``_computes``: ``module.train(was_training)`` as
        ``module.train(True)`` left an eval module in training mode after the probe."""
        m = _Hand(*_wb()).train(training)
        found = affine_source(m)
        assert found is not None
        assert found.linear.training is training and m.training is training

    def test_the_probe_calls_forward_not_the_hooks(self):
        """affine.py ``_computes``: ``module.forward(x)`` as ``module(x)`` ran the user's
        forward hooks (a recorder of activations, a counter) on the probe's random inputs."""
        m = _Hand(*_wb())
        seen = []
        m.register_forward_pre_hook(lambda mod, args: seen.append("pre"))
        m.register_forward_hook(lambda mod, args, out: seen.append("post"))
        assert affine_source(m) is not None
        assert seen == []

    def test_a_gain_of_five_in_a_hundred_thousand_is_within_the_tolerance(self):
        """affine.py ``_RTOL = 1e-4`` as 1e-6 (or 1e-5): a weight 5e-5 off (inside the
        documented tolerance of 1e-4 of the output's scale, which float32 sums in another
        order and a weight stored in another precision need) was refused."""
        w, b = _wb(8, 16)
        assert affine_source(_Gained(w, b, 1.0 + 5e-5)) is not None


# ---------------------------------------------------------------------------------------------
# cimsim/mapping/weight_view.py


def _view(shape=(3, 2), dtype=torch.float32, owner=None, attr="weight"):
    from cimsim.mapping.weight_view import TensorMeta, WeightView

    meta = TensorMeta.of(torch.empty(shape, dtype=dtype))
    return WeightView(meta, "fc: refused", owner=owner, attr=attr)


class _Declines:
    """A mapped layer whose ``linear_through`` declines the product (answers None)."""

    def linear_through(self, x, bias):
        return None


class TestWeightViewRound3:
    def test_moved_metadata_follows_the_device_and_keeps_the_dtype(self):
        """weight_view.py ``TensorMeta.moved``: ``replace(..., device=t.device)`` dropped kept
        the old device after ``module.to(device)``; the probe ``torch.empty(0, dtype=...)``
        without its dtype reported float32 for a moved float64 weight."""
        from cimsim.mapping.weight_view import TensorMeta

        meta = TensorMeta.of(torch.empty(3, 2, dtype=torch.float64))
        moved = meta.moved(lambda t: t.to("meta"))
        assert (moved.dtype, moved.device.type, moved.shape) == (torch.float64, "meta", (3, 2))
        half = meta.moved(lambda t: t.half())
        assert (half.dtype, half.device.type) == (torch.float16, "cpu")

    def test_a_plain_tensor_attribute_is_a_weight_too(self):
        """weight_view.py ``tensor_metas``: ``vars(module)`` dropped from the places read
        left out a weight-like tensor held as a plain attribute (not registered)."""
        from cimsim.mapping.weight_view import tensor_metas

        m = nn.Linear(2, 3)
        m.weight_scale = torch.ones(3, dtype=torch.float64)
        metas = tensor_metas(m)
        assert set(metas) == {"weight", "bias", "weight_scale"}
        assert metas["weight_scale"].dtype == torch.float64

    def test_a_buffer_registered_as_none_is_listed_as_none(self):
        """weight_view.py ``tensor_metas``: ``registered = held is not vars(module)`` as
        ``held is module._parameters`` left out a bias buffer registered as None, which the
        model may test (``if self.bias is not None``) as it tests a parameter's."""
        from cimsim.mapping.weight_view import tensor_metas

        m = nn.Module()
        m.register_buffer("bias", None)
        assert tensor_metas(m) == {"bias": None}

    def test_the_refusal_names_the_way_out(self):
        """weight_view.py ``weight_read_message``: the example ``not F.linear(x,
        layer.weight)`` dropped from the advice."""
        from cimsim.mapping.weight_view import weight_read_message

        msg = weight_read_message("SimLinear", "weight", "fc", "programmed on the arrays")
        assert msg.startswith("fc: the model reads .weight of a mapped layer, whose weights "
                              "are programmed on the arrays (SimLinear)")
        assert "(layer(x), not F.linear(x, layer.weight))" in msg
        assert "exclude=[...]" in msg

    @pytest.mark.parametrize("make", [
        lambda v: torch.randint_like(v, 5), lambda v: torch.rand_like(v),
        lambda v: v.new_ones(2), lambda v: torch.zeros_like(input=v),
    ], ids=["randint_like", "rand_like", "new_ones", "zeros_like_keyword"])
    def test_every_metadata_factory_is_allowed(self, make):
        """weight_view.py ``_METADATA_FACTORIES``: ``torch.randint_like``, ``torch.rand_like``
        or ``Tensor.new_ones`` dropped from the set refused them as computations; the view
        given by keyword (``input=``) not stood in (``tree_map`` over ``args`` only) too."""
        v = _view(dtype=torch.float64)
        t = make(v)
        assert type(t) is torch.Tensor and t.dtype == torch.float64

    def test_a_stand_in_has_the_views_dtype(self):
        """weight_view.py ``_stand_in``: ``dtype=t.dtype`` dropped made ``zeros_like`` of a
        float64 weight float32."""
        assert torch.zeros_like(_view(dtype=torch.float64)).dtype == torch.float64

    def test_f_linear_of_a_view_with_no_layer_behind_is_refused(self):
        """weight_view.py ``__torch_function__``: ``through is not None`` dropped called
        None (a TypeError) for a view whose owner has no ``linear_through``; ``if out is not
        None`` dropped answered None for a product the layer declined."""
        from cimsim.errors import WeightReadError

        x = torch.zeros(1, 2)
        with pytest.raises(WeightReadError, match=r"^fc: refused \(torch op"):
            F.linear(x, _view(owner=object()))
        with pytest.raises(WeightReadError, match=r"^fc: refused \(torch op"):
            F.linear(x, _view(owner=_Declines()))

    @pytest.mark.parametrize("way, what", [
        (lambda v: np.asarray(v), "np.asarray"),
        (lambda v: v.untyped_storage(), ".untyped_storage()"),
        (lambda v: v.data_ptr(), ".data_ptr()"),
        (lambda v: pickle.dumps(v), "pickled"),
    ], ids=["asarray", "untyped_storage", "data_ptr", "pickle"])
    def test_the_ways_out_that_dispatch_nothing_are_refused_naming_them(self, way, what):
        """weight_view.py ``WeightView.__array__``, ``untyped_storage``, ``data_ptr``: each
        override dropped let torch answer (a storage of no values, a null pointer) or fail
        with its own error naming no layer."""
        from cimsim.errors import WeightReadError

        with pytest.raises(WeightReadError, match=rf"^fc: refused \({re.escape(what)}\)$"):
            way(_view())


class TestViewsWeightsRound3:
    def _sealed(self):
        from cimsim.mapping.weight_view import ViewsWeights

        m = ViewsWeights()
        m.register_buffer("weight_scale", torch.ones(2))
        m.seal()
        return m

    def test_a_view_set_back_removes_the_plain_weight(self):
        """weight_view.py ``ViewsWeights.__setattr__``: ``self.__dict__.pop(attr, None)``
        dropped kept a weight set from outside after ``functional_call`` set the view back
        (``refuse_swapped_weights`` would still find it)."""
        m = self._sealed()
        m.weight = torch.zeros(2)
        assert "weight" in vars(m)
        m.weight = _view()
        assert "weight" not in vars(m)

    def test_a_registered_buffer_set_again_stays_registered(self):
        """weight_view.py ``ViewsWeights.__setattr__``: ``attr not in self._buffers`` dropped
        made a weight-like buffer set again once sealed a plain attribute, the registered one
        left stale in ``state_dict``."""
        m = self._sealed()
        new = torch.full((2,), 3.0)
        m.weight_scale = new
        assert "weight_scale" not in vars(m) and m._buffers["weight_scale"] is new

    def test_a_module_set_once_sealed_is_registered(self):
        """weight_view.py ``ViewsWeights.__setattr__``: ``isinstance(value, torch.Tensor)``
        dropped made a weight-like submodule (``weight_fake_quant``) set once sealed a plain
        attribute, missing from ``modules()`` and ``state_dict``."""
        m = self._sealed()
        m.weight_fake_quant = nn.Identity()
        assert "weight_fake_quant" in m._modules and "weight_fake_quant" not in vars(m)

    def test_a_non_persistent_buffer_stays_out_of_the_state_dict(self):
        """weight_view.py ``ViewsWeights.register_buffer``: ``persistent`` not passed on
        saved a non-persistent buffer in ``state_dict``."""
        from cimsim.mapping.weight_view import ViewsWeights

        m = ViewsWeights()
        m.register_buffer("scratch", torch.zeros(2), persistent=False)
        m.register_buffer("kept", torch.zeros(2))
        assert list(m.state_dict()) == ["kept"]


# ---------------------------------------------------------------------------------------------
# cimsim/train/lora.py


def _prepared(dtype=torch.float64, sizes=(16, 5, 3), frozen=False):
    """Linears of ``sizes`` prepared on the ideal chip (noise-free), seeded locally."""
    import cimsim
    from cimsim.train import prepare

    gen = torch.Generator().manual_seed(0)
    layers = []
    for k, n in zip(sizes[:-1], sizes[1:], strict=False):
        lin = nn.Linear(k, n)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(n, k, generator=gen))
            lin.bias.copy_(torch.randn(n, generator=gen))
        layers += [lin, nn.ReLU()]
    model = nn.Sequential(*layers[:-1]).to(dtype).eval()
    if frozen:
        model[0].requires_grad_(False)
    x = torch.rand(8, sizes[0], dtype=dtype, generator=gen)
    return prepare(model, cimsim.load_chip("ideal"), x, train_noise=False)


class TestLoRARound3:
    def test_a_is_drawn_in_linears_range_of_its_input_width(self):
        """lora.py ``LoRA.__init__``: ``bound = 1 / sqrt(k)`` as ``1 / sqrt(n)`` or ``1 / k``,
        and ``* 2 - 1`` as ``* 2 - 0.5``: A's entries left ``[-1/sqrt(K), 1/sqrt(K)]`` (or
        filled a sliver of it)."""
        from cimsim.train.lora import add_lora

        prep = _prepared()
        add_lora(prep, rank=3)
        for _, t in prep.twins():
            k = t.weight.shape[1]
            a = t.lora.A.detach().abs()
            assert float(a.max()) <= k ** -0.5
            assert float(a.max()) > 0.5 * k ** -0.5

    def test_the_adapters_drawn_do_not_depend_on_the_models_dtype(self):
        """lora.py ``LoRA.__init__``: A drawn in the model's dtype (``dtype=dtype``) instead
        of float64 then cast: a float32 model and its float64 copy got different adapters
        from the same seed; A's cast or B's ``dtype=dtype`` dropped gave a float32 model a
        float64 A (or a float64 model a float32 B)."""
        from cimsim.train.lora import add_lora

        p32 = add_lora(_prepared(torch.float32), rank=2, seed=7)
        p64 = add_lora(_prepared(torch.float64), rank=2, seed=7)
        assert {p.dtype for p in p32} == {torch.float32}
        assert {p.dtype for p in p64} == {torch.float64}
        assert torch.equal(p64[0].detach().float(), p32[0].detach())

    def test_the_warnings_point_at_the_caller(self):
        """lora.py ``add_lora``: ``stacklevel=2`` of the frozen (or tied) warning as 1
        attributed it to lora.py instead of the caller's line."""
        from cimsim.train.lora import add_lora

        prep = _prepared(frozen=True)
        with pytest.warns(UserWarning, match="frozen") as record:
            add_lora(prep)
        assert record[0].filename == __file__

    def test_the_tied_warning_points_at_the_caller(self):
        """lora.py ``add_lora``: ``stacklevel=2`` of the tied-weight warning as 1."""
        import cimsim
        from cimsim.train import prepare
        from cimsim.train.lora import add_lora

        first, second = nn.Linear(4, 4), nn.Linear(4, 4)
        second.weight = first.weight
        prep = prepare(nn.Sequential(first, nn.ReLU(), second).double().eval(),
                       cimsim.load_chip("ideal"), torch.rand(8, 4, dtype=torch.float64),
                       train_noise=False)
        with pytest.warns(UserWarning, match="tied to") as record:
            add_lora(prep)
        assert record[0].filename == __file__

    def test_merging_a_model_without_adapters_changes_nothing(self):
        """lora.py ``merge_lora``: the ``if lora is None: continue`` skip dropped folded a
        missing adapter (``del t.lora`` raised AttributeError) and unfroze frozen weights."""
        from cimsim.train.lora import merge_lora

        prep = _prepared(frozen=True)
        before = [(t.weight.detach().clone(), t.weight.requires_grad) for _, t in prep.twins()]
        merge_lora(prep)
        for (_, t), (w, grad) in zip(prep.twins(), before, strict=True):
            assert torch.equal(t.weight, w) and t.weight.requires_grad is grad


class TestLoRARefusalChangesNothing:
    def test_a_refused_add_lora_leaves_the_model_as_it_was(self):
        """lora.py ``add_lora``: the "already has a LoRA adapter" check ran twin by twin
        inside the loop that attaches adapters: with the first twin merged alone
        (``merge_lora(twin)``) and the second still adapted, ``add_lora`` raised on the second
        after giving the first a new adapter (frozen W0, parameters the caller never got).
        A real bug found by this round, fixed: every twin is checked first."""
        from cimsim.errors import ConfigError
        from cimsim.train.lora import add_lora, merge_lora

        prep = _prepared()
        add_lora(prep, rank=2)
        first, second = (t for _, t in prep.twins())
        merge_lora(first)
        with pytest.raises(ConfigError, match="already has a LoRA adapter"):
            add_lora(prep, rank=2)
        assert getattr(first, "lora", None) is None
        assert first.weight.requires_grad

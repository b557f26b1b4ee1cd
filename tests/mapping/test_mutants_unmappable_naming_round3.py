"""Tests written for the survivors of a third, short hand-made mutation round over what deploy
cannot map and how it names layers (cimsim/mapping/unmappable.py, cimsim/mapping/naming.py),
aimed at what the two earlier rounds (test_mutants_loaders_graph.py,
test_mutants_recurrent_attention_round2.py) left unpinned. Tiny modules, no deploy; each
docstring names the line and the change it kills. The last two classes pin three real bugs the
round found, fixed: a buffer the calibration pass registered was kept, a submodule it dropped
ended the pass in torch's bare error, and a buffer computed with gradient stopped the copy."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from cimsim.errors import MappingError, SignedInputError
from cimsim.mapping.naming import exclude_name, refuse_nonfinite_weights, refuse_signed_together
from cimsim.mapping.unmappable import (
    attribute_state,
    calibration_state,
    complex_row,
    copy_model,
    explain_stop_iteration,
    graph_tensors,
    kept_digital_row,
    keywords_not_taken,
    overridden_forward,
    pruning_masks,
    quantized_row,
    restore_attributes,
    source_config,
    subclass_row,
)

pytestmark = pytest.mark.usefixtures("own_torch_generator")


class TestNaming:
    def test_a_matrix_suffix_inside_a_name_is_no_suffix(self):
        """naming.py ``_MATRIX_SUFFIX``: the ``$`` anchor dropped stripped ``.weight_ih...`` or
        ``[gN]`` from inside a name (a module called ``weight_ih_gate``, a dict key ``mix[g1]``):
        the exclude name pointed at no module."""
        assert exclude_name("cell.weight_ih_gate.fc") == "cell.weight_ih_gate.fc"
        assert exclude_name("blocks.mix[g1].fc[g0]") == "blocks.mix[g1].fc"

    def test_nan_counts_are_counted_not_flagged(self):
        """naming.py ``refuse_nonfinite_weights``: ``isnan(p).sum()`` as ``.any()`` said
        "1 NaN, 2 infinite" for a weight of three NaN."""
        layer = nn.Linear(3, 2)
        with torch.no_grad():
            layer.weight[0] = float("nan")
        with pytest.raises(MappingError, match=r"fc\.weight \(3 NaN, 0 infinite\)"):
            refuse_nonfinite_weights({"fc": layer}, "deploy")

    def test_exactly_eight_nonfinite_parameters_are_all_named_with_no_more(self):
        """naming.py ``refuse_nonfinite_weights``: ``len(bad) > 8`` as ``>= 8`` added
        " and 0 more" to a list of exactly eight."""
        layers = {f"l{i}": nn.Linear(2, 2, bias=False) for i in range(8)}
        with torch.no_grad():
            for layer in layers.values():
                layer.weight[0, 0] = float("inf")
        with pytest.raises(MappingError) as info:
            refuse_nonfinite_weights(layers, "deploy")
        msg = str(info.value)
        assert msg.count("(0 NaN, 1 infinite)") == 8 and "more" not in msg

    def test_a_nan_in_an_attention_output_projection_is_refused(self):
        """naming.py ``refuse_nonfinite_weights``: ``named_parameters()`` with
        ``recurse=False`` missed an ``nn.MultiheadAttention``'s ``out_proj.weight`` (a
        submodule's parameter); the caller's name (``who``) dropped from the front."""
        attn = nn.MultiheadAttention(4, 2)
        with torch.no_grad():
            attn.out_proj.weight[1, 2] = float("nan")
        with pytest.raises(MappingError, match=r"^prepare: parameters of mapped layers hold NaN "
                                               r"or infinite values: attn\.out_proj\.weight "
                                               r"\(1 NaN, 0 infinite\)"):
            refuse_nonfinite_weights({"attn": attn}, "prepare")

    def test_one_layer_refused_by_several_calls_keeps_the_first_error(self):
        """naming.py ``refuse_signed_together``: ``first = first or exc`` as ``first = exc``
        raised the last group's error of a grouped convolution refused in every group (one
        layer: its own first error, with its own words)."""
        errors = [SignedInputError(f"conv[g{i}]: below 0", {"conv": -1.0 - i}, 1)
                  for i in range(2)]

        def raiser(err):
            def call():
                raise err
            return call

        with pytest.raises(SignedInputError) as info:
            refuse_signed_together([("conv", raiser(e)) for e in errors])
        assert info.value is errors[0]

    def test_no_refusal_runs_every_call_and_raises_nothing(self):
        """naming.py ``refuse_signed_together``: the early ``return`` when no layer was refused
        dropped went on to ``raise first`` of None (a TypeError from every deploy whose layers
        all finalized)."""
        ran = []
        assert refuse_signed_together([(n, lambda n=n: ran.append(n)) for n in "ab"]) is None
        assert ran == ["a", "b"]

    def test_several_refused_layers_are_listed_in_the_order_refused(self):
        """naming.py ``refuse_signed_together``: the lowest inputs listed sorted by name gave
        ``z``'s value under ``a``'s place in the exclude list's order (the names, refused ``z``
        then ``a``, are listed as refused)."""
        def refusing(layer, low):
            def call():
                raise SignedInputError("signed", {layer: low}, 1)
            return call

        with pytest.raises(SignedInputError) as info:
            refuse_signed_together([("z", refusing("z", -1.0)), ("a", refusing("a", -2.0))])
        assert "layers 'z', 'a':" in str(info.value)
        assert "below 0: z -1, a -2)" in str(info.value)
        assert "exclude=['z', 'a']" in str(info.value)


class _TrainFrozen(nn.Linear):
    """A subclass overriding ``nn.Module.train`` (kept in eval mode): no computation of the
    forward."""

    def train(self, mode=True):
        return super().train(False)


class _Doubled(nn.Linear):
    def __call__(self, x):
        return 2 * super().__call__(x)


class TestOverriddenForward:
    def test_overriding_a_method_of_nn_module_itself_still_maps(self):
        """unmappable.py ``_computing``: ``nn.Module`` taken among the torch classes (``and c
        is not nn.Module`` dropped) made a subclass overriding ``train`` unmappable."""
        assert overridden_forward(_TrainFrozen(3, 2), "fc") is None

    def test_a_subclass_overriding_call_is_kept_digital(self):
        """unmappable.py ``_computing``: ``"__call__"`` dropped from the first names mapped a
        subclass whose ``__call__`` doubles the output by its raw weight."""
        why = overridden_forward(_Doubled(3, 2), "fc")
        assert why is not None and why.startswith("fc: _Doubled overrides Linear.__call__")

    def test_a_subclass_overriding_call_impl_is_kept_digital(self):
        """unmappable.py ``_computing``: ``"_call_impl"`` dropped from the first names (it is
        ``nn.Module``'s, no torch layer class's) mapped a subclass whose ``_call_impl``
        computes something else."""

        class Clipped(nn.Linear):
            def _call_impl(self, *args, **kwargs):
                return super()._call_impl(*args, **kwargs).clamp(min=0)

        why = overridden_forward(Clipped(3, 2), "fc")
        assert why is not None and "overrides Linear._call_impl" in why

    def test_an_inherited_torch_method_overridden_is_kept_digital(self):
        """unmappable.py ``_computing``: only the layer's own class searched (the torch
        classes above it dropped) mapped a transposed conv overriding ``_output_padding``,
        defined by ``_ConvTransposeNd``."""

        class FixedPadding(nn.ConvTranspose1d):
            def _output_padding(self, *args, **kwargs):
                return (1,)

        why = overridden_forward(FixedPadding(2, 2, 3, stride=2), "up")
        assert why is not None and "overrides ConvTranspose1d._output_padding" in why

    def test_bookkeeping_overrides_of_attention_and_recurrent_layers_still_map(self):
        """unmappable.py ``_NOT_COMPUTING``: ``"_reset_parameters"`` (nn.MultiheadAttention's
        initialisation) or ``"_apply"`` (RNNBase's ``.to()`` bookkeeping) dropped made a
        subclass overriding only it unmappable."""

        class ZeroInit(nn.MultiheadAttention):
            def _reset_parameters(self):
                super()._reset_parameters()
                nn.init.zeros_(self.out_proj.bias)

        class Moved(nn.LSTM):
            def _apply(self, fn, recurse=True):
                return super()._apply(fn, recurse)

        assert overridden_forward(ZeroInit(4, 2), "attn") is None
        assert overridden_forward(Moved(3, 4), "rnn") is None


class _LastFrame(nn.Module):
    """A streaming model keeping the last frame it saw, made on its first call: as a buffer
    or as a plain attribute."""

    def __init__(self, as_buffer):
        super().__init__()
        self.as_buffer = as_buffer

    def forward(self, x):
        if not hasattr(self, "prev"):
            if self.as_buffer:
                self.register_buffer("prev", x.clone())
            else:
                self.prev = x.clone()
        return x - self.prev


class _State(nn.Module):
    """A recurrent model keeping its ``(h, c)`` state as a tuple attribute."""

    def __init__(self):
        super().__init__()
        self.state = None

    def forward(self, x):
        self.state = (x * 2, x * 3)
        self.extra = (x,)
        return x


class TestCalibrationState:
    def test_a_frame_kept_as_a_new_attribute_is_removed_after_the_pass(self):
        """unmappable.py ``restore_attributes``: the pop of an attribute set since (``vars(out)
        .pop(k, None)``) dropped left the calibration batch's last frame in the model."""
        net = _LastFrame(as_buffer=False)
        with calibration_state(net):
            net(torch.ones(2))
        assert not hasattr(net, "prev")


    def test_a_tuple_state_set_in_the_pass_is_set_back(self):
        """unmappable.py ``_holds_tensor``: tuples dropped (lists only) left the pass's
        ``(h, c)`` state in the model (its earlier value None, the new one no tensor) and a
        new tuple attribute in place."""
        net = _State()
        with calibration_state(net):
            net(torch.ones(2))
        assert net.state is None and not hasattr(net, "extra")

    def test_a_new_attribute_holding_no_tensor_stays(self):
        """unmappable.py ``restore_attributes``: ``_holds_tensor(now[k])`` dropped removed
        every attribute the pass set, a plain setting (a shape it read) too."""

        class Net(nn.Module):
            def forward(self, x):
                self.width = x.shape[-1]
                return x

        net = Net()
        with calibration_state(net):
            net(torch.ones(3))
        assert net.width == 3

    def test_a_dict_entry_replaced_in_the_pass_is_set_back(self):
        """unmappable.py ``_changed``: ``after[k] is not v`` as ``is v`` took a dict whose
        only entry the pass replaced (same keys) as unchanged: the pass's tensor stayed."""

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.table = {"k": torch.zeros(2)}

            def forward(self, x):
                self.table["k"] = x * 2
                return x

        net = Net()
        held, earlier = net.table, net.table["k"]
        with calibration_state(net):
            net(torch.ones(2))
        assert net.table is held and net.table["k"] is earlier

    def test_a_tuple_state_replaced_in_the_pass_is_set_back(self):
        """unmappable.py ``_changed``: another value taken as changed by ``!=`` rather than
        by identity compared a tuple of tensors elementwise ("Boolean value of Tensor with
        more than one value is ambiguous")."""
        net = _State()
        net.state = earlier = (torch.zeros(3), torch.zeros(3))
        with calibration_state(net):
            net(torch.ones(3))
        assert net.state is earlier

    def test_an_unchanged_inference_tensor_is_left_alone(self):
        """unmappable.py ``calibration_state``: ``not _equal(tensor, values)`` dropped copied
        every held tensor back, unchanged ones too: torch refuses an in-place update of a
        table made under ``torch.inference_mode()`` outside it."""
        net = nn.Module()
        with torch.inference_mode():
            net.table = torch.arange(3.0)
        net.forward = lambda x: x + net.table.clone()
        with calibration_state(net):
            net(torch.ones(3))
        assert torch.equal(net.table, torch.arange(3.0))

    def test_cached_methods_of_a_base_class_and_static_ones_are_emptied(self):
        """unmappable.py ``_cached_methods``: the class alone searched (its MRO dropped) missed
        a cached method of the model's base class; ``getattr(value, "__func__", value)`` as
        ``value`` missed a cached staticmethod."""

        class Base(nn.Module):
            @functools.cache  # noqa: B019 - the model's own cache, on purpose
            def table(self, n):
                return torch.arange(n)

            @staticmethod
            @functools.cache
            def offsets(n):
                return torch.ones(n)

        class Net(Base):
            def forward(self, x):
                return x + self.table(x.shape[-1]) + self.offsets(x.shape[-1])

        net = Net()
        with calibration_state(net):
            net(torch.zeros(3))
        assert Base.table.cache_info().currsize == 0
        assert Base.offsets.cache_info().currsize == 0

    def test_a_tensor_in_a_dict_written_in_place_gets_its_values_back(self):
        """unmappable.py ``_held_tensor_values``: a dict's keys taken for its items (``v``
        for ``v.values()``) left a cache's tensor, written in place by the pass, as written."""

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.cache = {"k": torch.zeros(2)}

            def forward(self, x):
                self.cache["k"].add_(x)
                return x

        net = Net()
        with calibration_state(net):
            net(torch.ones(2))
        assert torch.equal(net.cache["k"], torch.zeros(2))

    def test_a_tensor_in_a_tuple_written_in_place_gets_its_values_back(self):
        """unmappable.py ``_held_tensor_values``: tuples dropped (lists only) left a
        preallocated ``(k, v)`` cache, written in place by the pass, as written."""

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.kv = (torch.zeros(2), torch.zeros(2))

            def forward(self, x):
                self.kv[1].add_(x)
                return x

        net = Net()
        with calibration_state(net):
            net(torch.ones(2))
        assert torch.equal(net.kv[1], torch.zeros(2))

    def test_a_lazy_buffer_made_by_the_pass_is_no_state_to_set_back(self):
        """unmappable.py ``_buffer_state``: ``not nn.parameter.is_lazy(b)`` dropped cloned an
        uninitialised ``LazyBatchNorm1d`` buffer before the pass (torch refuses)."""
        net = nn.Sequential(nn.LazyBatchNorm1d())
        with calibration_state(net):
            net(torch.randn(4, 3))
        assert net[0].running_mean.shape == (3,)

    def test_a_buffer_reassigned_in_the_pass_is_the_models_own_again(self):
        """unmappable.py ``_restore_buffers``: ``module._buffers[k] = buffer`` dropped left
        the tensor the pass assigned (the last calibration frame) as the buffer."""

        class Stream(nn.Module):
            def __init__(self):
                super().__init__()
                self.register_buffer("last", torch.zeros(2))

            def forward(self, x):
                self.last = x.clone()
                return x

        net = Stream()
        earlier = net.last
        with calibration_state(net):
            net(torch.ones(2))
        assert net.last is earlier and torch.equal(earlier, torch.zeros(2))

    def test_cimsims_own_modules_keep_what_the_pass_set(self):
        """unmappable.py ``_user_modules``: cimsim's own modules (simulated and twin layers,
        recognised by their package) not left out set back the state they keep."""

        class Own(nn.Module):
            def forward(self, x):
                self.seen = x * 2
                return x

        Own.__module__ = "cimsim.mapping.fake"
        net = nn.Sequential(Own())
        with calibration_state(net):
            net(torch.ones(2))
        assert torch.equal(net[0].seen, torch.full((2,), 2.0))

    def test_restore_attributes_names_what_it_set_back_by_its_module_path(self):
        """unmappable.py ``restore_attributes``: an attribute set since (removed) left out of
        the names returned, or a changed one of a submodule named without its module
        (``k`` for ``f"{name}.{k}"``)."""
        net = nn.Sequential(nn.Linear(2, 2))
        net[0].cache = torch.zeros(1)
        before = attribute_state(net)
        net[0].cache = torch.ones(1)
        net.new = torch.ones(1)
        assert sorted(restore_attributes(before, net)) == ["0.cache", "new"]
        assert torch.equal(net[0].cache, torch.zeros(1)) and not hasattr(net, "new")

    def test_a_tensor_attribute_the_pass_cleared_is_set_back(self):
        """unmappable.py ``restore_attributes``: the earlier value's tensor not counted
        (``_holds_tensor(current)`` alone) left a memory the pass reset to None as None."""

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.mem = torch.ones(2)

            def forward(self, x):
                self.mem = None
                return x

        net = Net()
        earlier = net.mem
        with calibration_state(net):
            net(torch.ones(2))
        assert net.mem is earlier


class TestKeptDigitalRows:
    @pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                "ignore:torch.quantize_per_tensor")
    def test_a_plain_qat_linear_is_named_as_prepare_qats(self):
        """unmappable.py ``overridden_forward``: ``"torch.ao.nn.qat"`` dropped from the QAT
        modules' packages advised a ``torch.ao.nn.qat.Linear`` (prepare_qat's, not the user's
        subclass) to hold a plain layer instead of subclassing it."""
        from torch.ao.nn.qat import Linear
        from torch.ao.quantization import get_default_qat_qconfig

        why = overridden_forward(Linear(4, 3, qconfig=get_default_qat_qconfig()), "fc")
        assert why is not None
        assert why.startswith("fc: a torch.ao.nn.qat.Linear of torch.ao.quantization.prepare_qat")

    @pytest.mark.filterwarnings("ignore::DeprecationWarning")
    def test_every_kind_of_row_is_asked_for(self):
        """unmappable.py ``kept_digital_row``: ``scripted_row`` or ``subclass_row`` dropped
        from the rows asked mapped a TorchScript layer or a Linear of int8 ``Parameter``
        subclass weights (bitsandbytes' ``Int8Params``) by its raw values."""

        class Int8Params(nn.Parameter):
            pass

        layer = nn.Linear(4, 3)
        layer.weight = Int8Params(torch.ones(3, 4, dtype=torch.int8), requires_grad=False)
        row = kept_digital_row(layer, "fc", "not mapped: ")
        assert row is not None and row[:2] == ("fc", "Linear")
        assert row[2].startswith("not mapped: fc: its weight is a tensor subclass (Int8Params")
        row = kept_digital_row(torch.jit.script(nn.Linear(4, 3)), "enc", "")
        assert row is not None and row[2].startswith("enc: a TorchScript module")
        assert kept_digital_row(nn.Linear(4, 3), "fc", "") is None

    def test_a_complex_convolution_is_listed_digital_by_its_class(self):
        """unmappable.py ``complex_row``: convolutions (``_ConvNd``) dropped from
        ``_LAYER_TYPES`` mapped a complex Conv1d by its real parts; the row's kind as
        ``"complex"`` instead of the layer's class name."""
        row = complex_row(nn.Conv1d(2, 3, 3, dtype=torch.cfloat), "conv", "")
        assert row is not None and row[:2] == ("conv", "Conv1d")
        row = complex_row(nn.Linear(2, 3, dtype=torch.cfloat), "", "")
        assert row is not None and row[:2] == ("model", "Linear")

    def test_a_complex_output_projection_of_attention_is_listed_digital(self):
        """unmappable.py ``complex_row``: ``parameters(recurse=False)`` missed a complex
        weight in a submodule (an ``nn.MultiheadAttention``'s ``out_proj``)."""
        attn = nn.MultiheadAttention(4, 2)
        attn.out_proj.weight = nn.Parameter(torch.zeros(4, 4, dtype=torch.cfloat))
        row = complex_row(attn, "attn", "")
        assert row is not None and "complex-valued weights" in row[2]

    def test_a_module_of_no_mappable_type_has_no_subclass_row(self):
        """unmappable.py ``subclass_row``: the ``_LAYER_TYPES`` check dropped listed an
        embedding (no layer deploy maps) holding an int8 Parameter subclass."""

        class Int8Params(nn.Parameter):
            pass

        emb = nn.Embedding(5, 3)
        emb.weight = Int8Params(torch.ones(5, 3, dtype=torch.int8), requires_grad=False)
        assert subclass_row(emb, "emb", "") is None

    def test_a_parameter_subclass_with_its_own_torch_function_is_listed_digital(self):
        """unmappable.py ``_computes_its_own_way``: the ``__torch_function__`` check dropped
        mapped a float Parameter subclass overriding it (its products computed its own way)
        by its raw values."""

        class Scaled(nn.Parameter):
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                return super().__torch_function__(func, types, args, kwargs or {})

        layer = nn.Linear(4, 3)
        layer.weight = Scaled(torch.ones(3, 4))
        row = subclass_row(layer, "fc", "")
        assert row is not None and "its weight is a tensor subclass (Scaled" in row[2]

    @pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                "ignore:torch.quantize_per_tensor")
    def test_converted_linear_layers_fused_or_not_are_listed_as_converts(self):
        """unmappable.py ``quantized_row``: ``"torch.ao.nn.intrinsic.quantized"`` dropped
        mapped convert's fused ``LinearReLU``; ``k in module._modules`` dropped missed the
        packed parameters a quantized Linear holds as a submodule; the advice names convert,
        the kind ``quantized <class>``."""
        from torch.ao.nn.intrinsic.quantized import LinearReLU
        from torch.ao.nn.quantized import Linear

        for layer, kind in [(LinearReLU(4, 3), "quantized LinearReLU"),
                            (Linear(4, 3), "quantized Linear")]:
            row = quantized_row(layer, "fc", "")
            assert row is not None and row[:2] == ("fc", kind)
            assert "torch.ao.quantization.convert (packed weights)" in row[2]
            assert "before prepare/convert" in row[2]


class TestKeywordsNotTaken:
    def test_a_builtin_forward_whose_signature_cannot_be_read_gives_none(self):
        """unmappable.py ``keywords_not_taken``: ``ValueError`` dropped from the ``except``
        let inspect's "no signature found for builtin" escape instead of leaving the call to
        say."""
        net = nn.Module()
        net.forward = torch.relu
        assert keywords_not_taken(net, ["x"]) is None

    def test_the_name_of_star_args_is_no_keyword_input(self):
        """unmappable.py ``keywords_not_taken``: ``VAR_POSITIONAL`` dropped took ``inputs``
        of ``forward(self, *inputs)`` as a keyword input."""

        class Net(nn.Module):
            def forward(self, *inputs, mask=None):
                return inputs

        assert keywords_not_taken(Net(), ["inputs", "mask"])[1] == ["inputs"]


class TestSourceConfigAndForwardErrors:
    def test_a_tensor_attribute_of_the_layer_is_no_configuration(self):
        """unmappable.py ``source_config``: ``torch.Tensor`` dropped from the excluded values
        copied a plain tensor attribute (a layer's own scale table) into the configuration."""
        conv = nn.Conv1d(2, 3, 3)
        conv.table = torch.ones(3)
        config = source_config(conv)
        assert "table" not in config and config["kernel_size"] == (3,)

    def test_an_empty_gradient_request_in_the_forward_is_explained(self):
        """unmappable.py ``_GRAD_ERRORS``: torch's "argument to `grad()` cannot be empty"
        (MAML's inner step over no parameters) dropped from the words passed it unexplained."""
        with pytest.raises(MappingError, match="^prepare: the model's forward takes gradients"):
            with explain_stop_iteration("prepare"):
                raise RuntimeError("grad requires non-empty inputs: argument to `grad()` "
                                   "cannot be empty.")

    def test_a_stop_iteration_is_chained_to_the_explanation(self):
        """unmappable.py ``explain_stop_iteration``: ``from exc`` dropped (the StopIteration
        kept only as the implicit context, not the cause); the caller's name (``who``) as a
        fixed ``deploy``."""
        with pytest.raises(MappingError) as info, explain_stop_iteration("prepare"):
            next(iter(()))
        assert isinstance(info.value.__cause__, StopIteration)
        assert str(info.value).startswith("prepare: the model's forward raised StopIteration")


class TestHookedWeights:
    def test_a_spectral_normed_layer_copies_for_prepare_after_a_forward(self):
        """unmappable.py ``_hooked_weights``: ``SpectralNorm`` dropped left its ``weight``
        (recomputed with gradient by every forward) out of the detached tensors: prepare
        refused the model as holding a tensor computed with gradient."""
        torch.manual_seed(0)
        model = nn.Sequential(nn.utils.spectral_norm(nn.Linear(3, 2)))
        model(torch.ones(1, 3)).sum().backward()
        sim = copy_model(model, "prepare")
        torch.testing.assert_close(sim[0].weight, model[0].weight.detach(), rtol=0, atol=0)

    @pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated")
    def test_every_pruned_tensor_of_a_module_keeps_its_mask(self):
        """unmappable.py ``pruning_masks``: ``setdefault(...).append`` as an assignment kept
        only the last pruned tensor of a module (its bias's mask, its weight's lost); a
        weight-normed module (no pruning) has no mask (``isinstance(hook,
        prune.BasePruningMethod)`` dropped: an AttributeError on ``weight_mask``)."""
        model = nn.Sequential(nn.Linear(3, 2), nn.utils.weight_norm(nn.Linear(2, 2)))
        prune.custom_from_mask(model[0], "weight", torch.tensor([[1.0, 0, 1], [0, 1, 1]]))
        prune.custom_from_mask(model[0], "bias", torch.tensor([0.0, 1.0]))
        masks = pruning_masks(model)
        assert list(masks) == ["0"]
        assert [name for name, _ in masks["0"]] == ["weight", "bias"]
        assert torch.equal(masks["0"][1][1], torch.tensor([0.0, 1.0]))

    def test_the_copy_of_an_exported_program_holds_its_linear_as_a_module(self):
        """unmappable.py ``copy_model``: ``_rebuild_exported(sim)`` dropped left an exported
        program's module (``ExportedProgram.module()``) with its weights applied by aten
        calls: no layer to map."""
        torch.manual_seed(0)
        model, x = nn.Sequential(nn.Linear(3, 2)).eval(), torch.randn(4, 3)
        sim = copy_model(torch.export.export(model, (x,)).module(), "deploy")
        assert any(isinstance(m, nn.Linear) for m in sim.modules())
        with torch.no_grad():
            torch.testing.assert_close(sim(x), model(x))

    def test_the_copy_of_a_tensor_computed_with_gradient_holds_its_own_values(self):
        """unmappable.py ``_copy``: the memo's ``.clone()`` dropped made the copy's cache a
        view of the user's: a write in the copy changed the user's model."""
        model = nn.Linear(3, 2)
        model.cache = model.weight * 2
        sim = copy_model(model, "deploy")
        sim.cache.zero_()
        torch.testing.assert_close(model.cache.detach(), model.weight.detach() * 2)

    @pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
    def test_a_sparse_csr_parameter_that_torch_cannot_copy_is_named(self):
        """unmappable.py ``_copy``: sparse taken as COO alone (``== torch.sparse_coo`` for
        ``!= torch.strided``) let torch's own RuntimeError out for a CSR parameter."""
        model = nn.Module()
        model.w = nn.Parameter(torch.eye(3).to_sparse_csr())
        with pytest.raises(MappingError, match=r"cannot copy a sparse parameter or buffer: "
                                               r"w \(torch\.sparse_csr\)"):
            copy_model(model, "deploy")

    def test_graph_tensors_reach_three_levels_and_tuples(self):
        """unmappable.py ``graph_tensors``: dicts walked to depth 2 (``depth < 2``) missed a
        cache three dicts deep; tuples dropped (lists only) missed a ``(k, v)`` cache."""
        model = nn.Sequential(nn.Linear(2, 2))
        w = model[0].weight
        model[0].deep = {"a": {"b": {"c": w * 2}}}
        model[0].kv = (w * 3, None)
        assert sorted(path for path, _ in graph_tensors(model)) == [
            "0.deep['a']['b']['c']", "0.kv[0]"]

    def test_two_gradient_hooks_of_a_parameter_are_both_carried(self):
        """unmappable.py ``carry_tensor_hooks``: only the first hook carried (a weight frozen
        by row and scaled by another hook lost the second)."""
        model = nn.Sequential(nn.Linear(2, 2))
        model[0].weight.register_hook(lambda g: g * 2)
        model[0].weight.register_hook(lambda g: g * 3)
        sim = copy_model(model, "prepare")
        assert len(sim[0].weight._backward_hooks) == 2

    def test_another_copy_error_passes_unchanged(self):
        """unmappable.py ``_copy``: the final ``raise`` dropped returned None (no model) for
        a copy error that is no sparse tensor's."""

        class Uncopyable:
            def __deepcopy__(self, memo):
                raise RuntimeError("a handle that cannot be copied")

        model = nn.Linear(2, 2)
        model.handle = Uncopyable()
        with pytest.raises(RuntimeError, match="a handle that cannot be copied"):
            copy_model(model, "deploy")

    def test_restore_attributes_goes_on_past_a_module_gone(self):
        """unmappable.py ``restore_attributes``: a module no longer in the model (``except
        AttributeError``) ending the loop (``return`` for ``continue``) left the later
        modules' attributes as the pass set them."""
        net = nn.Module()
        net.a, net.b = nn.Linear(2, 2), nn.Linear(2, 2)
        net.b.cache = earlier = torch.zeros(1)
        before = attribute_state(net)
        del net.a
        net.b.cache = torch.ones(1)
        assert restore_attributes(before, net) == ["b.cache"]
        assert net.b.cache is earlier


class TestCalibrationStateRealBugsFixed:
    @pytest.mark.parametrize("persistent", [True, False])
    def test_a_frame_kept_as_a_new_buffer_is_removed_after_the_pass(self, persistent):
        """unmappable.py ``calibration_state`` / ``_restore_buffers``: a buffer registered by
        the calibration pass (the streaming model's last frame, made on its first call)
        stayed, holding the last calibration batch, while the same frame kept as a plain
        attribute was removed: the simulated model started from the calibration data's frame,
        not from the state the user's model had (no frame yet). A real bug found by this
        round, fixed: removed, persistent or not; a buffer the model had stays."""
        class Net(nn.Module):
            def forward(self, x):
                if not hasattr(self, "prev"):
                    self.register_buffer("prev", x.clone(), persistent=persistent)
                return x - self.prev

        net = Net()
        net.register_buffer("kept", torch.zeros(1))
        with calibration_state(net):
            net(torch.ones(2))
            assert "prev" in dict(net.named_buffers())
        assert "prev" not in dict(net.named_buffers()) and not hasattr(net, "prev")
        assert "prev" not in net._non_persistent_buffers_set
        assert list(dict(net.named_buffers())) == ["kept"]
        torch.testing.assert_close(net(torch.full((2,), 3.0)), torch.zeros(2))

    def test_a_submodule_the_pass_dropped_ends_the_block_without_error(self):
        """unmappable.py ``calibration_state`` (the loop setting numbers back): a forward
        dropping a one-shot submodule after using it (a data-dependent initialisation,
        ``self.init = None``) made the block end in torch's bare ``AttributeError: `init` is
        not an nn.Module`` from ``model.get_submodule(name)``; ``restore_attributes`` and
        ``_restore_buffers`` skip a module gone (``except AttributeError: continue``), and now
        so does it (a real bug found by this round, fixed)."""

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.init, self.fc = nn.Linear(2, 2), nn.Linear(2, 2)

            def forward(self, x):
                if self.init is not None:
                    with torch.no_grad():
                        self.fc.weight.copy_(self.init.weight)
                    self.init = None
                return self.fc(x)

        net = Net()
        with calibration_state(net):
            net(torch.ones(1, 2))


class TestCopyModelRealBugFixed:
    def test_a_buffer_computed_with_gradient_is_copied_or_named(self):
        """unmappable.py ``graph_tensors`` (``attr not in ("_parameters", "_buffers",
        "_modules")``) / ``_copy``: a buffer computed with gradient (an average a forward with
        gradient wrote, ``self.ema = 0.9 * self.ema + h.mean()``; a transposed weight
        registered as a buffer) was neither copied as its value by deploy, as such an
        attribute is, nor named by prepare: both ended in torch's bare "Only Tensors created
        explicitly by the user (graph leaves) support the deepcopy protocol" RuntimeError, no
        buffer named. A real bug found by this round, fixed."""
        model = nn.Sequential(nn.Linear(3, 2))
        model[0].register_buffer("scaled", model[0].weight * 2)
        sim = copy_model(model, "deploy")
        torch.testing.assert_close(sim[0].scaled, model[0].weight.detach() * 2)
        assert sim[0].scaled.grad_fn is None and "scaled" in dict(sim[0].named_buffers())
        with pytest.raises(MappingError, match=r"gradient kept as attributes or buffers: "
                                               r"0\.scaled; detach them"):
            copy_model(model, "prepare")

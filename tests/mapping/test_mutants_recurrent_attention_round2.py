"""Tests written for the survivors of a second hand-made mutation round over the mapping code
of recurrent layers, attention and the layers deploy keeps digital
(cimsim/mapping/recurrent.py, graph_attention.py, unmappable.py, graph_digital.py,
naming.py): each pins a behaviour that a small wrong change left every earlier test passing
(tests/mapping/test_recurrent.py, test_mutants_mapping_ops.py, test_mutants_loaders_graph.py,
test_exported_attention.py among them). Tiny models on the lossless ``ideal`` chip; known
answers from torch's own module on the same inputs or worked out by hand in a comment."""

from __future__ import annotations

import copy
import functools
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.errors import MappingError, SignedInputError
from cimsim.mapping.loaders import modules_from_graph
from cimsim.mapping.naming import (
    exclude_name,
    finalize_layers,
    named_layer,
    refuse_signed_together,
)
from cimsim.mapping.recurrent import (
    RecurrentShape,
    SimRNN,
    SimRNNCell,
    recurrent_forward,
    recurrent_matrices,
)
from cimsim.mapping.unmappable import (
    attribute_state,
    calibration_state,
    complex_row,
    copy_model,
    explain_stop_iteration,
    graph_tensors,
    overridden_forward,
    quantized_row,
    restore_attributes,
    scripted_row,
    source_config,
    subclass_row,
)

from .conftest import lossless_chip


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# recurrent.py


def test_an_lstm_state_of_three_tensors_is_refused_naming_how_many():
    """``(h_0, c_0, extra)`` is no pair: refused naming the layer and the count, not unpacked
    into a bare "too many values to unpack"."""
    lstm = nn.LSTM(3, 4).double()
    sim = SimRNN(lstm, "r", lossless_chip(), 0)
    x, h = torch.randn(2, 1, 3, dtype=torch.float64), torch.zeros(1, 1, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^r: an LSTM's initial state is a pair \(h_0, c_0\), "
                                         r"got tuple of 3$"):
        sim(x, (h, h, h))
    with pytest.raises(ValueError, match=r"got list of 1$"):
        sim(x, [h])


def test_a_one_dimensional_sequence_is_refused_naming_the_layer():
    """An RNN reads (L, H_in) or (L, B, H_in): a 1-D input as wide as ``input_size`` is
    refused as such, not run as 3 steps of one feature."""
    sim = SimRNN(nn.RNN(3, 4).double(), "r", lossless_chip(), 0)
    with pytest.raises(ValueError, match=r"^r: expected a 2-D \(unbatched\) or 3-D \(batched\) "
                                         r"input, got 1-D$"):
        sim(torch.randn(3, dtype=torch.float64))


def test_a_stack_with_dropout_in_eval_mode_is_torchs_without_dropout():
    """Dropout between layers is a training-mode operation: in eval mode the deployed stack
    (its float products in observe mode: a lossless chip, float64) is torch's eval output."""
    torch.manual_seed(0)
    gru = nn.GRU(3, 4, num_layers=2, dropout=0.9).double().eval()
    sim = SimRNN(gru, "r", lossless_chip(), 0).eval()
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    got, h = sim(x)
    with torch.no_grad():
        want, h_w = gru(x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h, h_w, rtol=1e-12, atol=1e-12)


def _float_projection(module):
    names = recurrent_matrices(module)

    def project(idx, which, x):
        w_name, b_name = names[idx][which]
        return F.linear(x, getattr(module, w_name),
                        None if b_name is None else getattr(module, b_name))

    return project


@pytest.mark.parametrize("make", [
    lambda: nn.RNN(3, 4, nonlinearity="relu", bias=False),
    lambda: nn.LSTM(3, 5, proj_size=2, bias=False),
    lambda: nn.LSTM(3, 4, proj_size=1),
    lambda: nn.GRU(3, 4, bias=False, bidirectional=True),
])
def test_the_equations_with_plain_float_products_are_torchs(make):
    """``recurrent_forward`` with every product a plain ``F.linear`` of the layer's own
    weights is torch's layer, for the relu RNN, a projected LSTM and a bidirectional GRU,
    most without biases, and an LSTM projecting to one feature (hidden sizes 1-5, 4 steps)."""
    torch.manual_seed(0)
    module = make().double().eval()
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        got, got_s = recurrent_forward(_float_projection(module), RecurrentShape.of(module),
                                       False, x, None, "r")
        want, want_s = module(x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for a, b in zip(got_s if isinstance(got_s, tuple) else (got_s,),
                    want_s if isinstance(want_s, tuple) else (want_s,), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_a_projected_lstm_from_a_given_state_is_torchs():
    """With ``proj_size`` the state is (h_0 of P features, c_0 of H): both taken as given."""
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 5, proj_size=2).double().eval()
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    hx = (torch.randn(1, 2, 2, dtype=torch.float64), torch.randn(1, 2, 5, dtype=torch.float64))
    with torch.no_grad():
        got, (h, c) = recurrent_forward(_float_projection(lstm), RecurrentShape.of(lstm), False,
                                        x, hx, "r")
        want, (h_w, c_w) = lstm(x, hx)
    for a, b in ((got, want), (h, h_w), (c, c_w)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_an_lstm_cell_state_of_another_shape_is_refused_as_torch_refuses_it():
    lstm = nn.LSTM(3, 4)
    sim = SimRNN(lstm, "r", lossless_chip(), 0)
    x, h0, c0 = torch.randn(5, 2, 3), torch.zeros(1, 2, 4), torch.zeros(1, 2, 3)
    with pytest.raises(RuntimeError, match="Expected hidden"):
        lstm(x, (h0, c0))  # torch's own refusal (it names the cell state "hidden[1]")
    with pytest.raises(RuntimeError, match=r"^r: Expected cell size \(1, 2, 4\), got \[1, 2, 3\]$"):
        sim(x, (h0, c0))


def test_a_cell_of_an_unknown_nonlinearity_is_refused():
    cell = nn.RNNCell(3, 4)
    cell.nonlinearity = "gelu"
    with pytest.raises(MappingError, match=r"RNNCell \(nonlinearity 'gelu'\) is not supported"):
        SimRNNCell(cell, "c", lossless_chip(), 0)


def test_an_lstm_cells_memory_of_another_batch_is_refused_naming_it():
    sim = SimRNNCell(nn.LSTMCell(3, 4), "c", lossless_chip(), 0)
    with pytest.raises(RuntimeError, match=r"^c \(LSTMCell\): Input batch size 2 doesn't match "
                                           r"hidden1 batch size 3$"):
        sim(torch.randn(2, 3), (torch.zeros(2, 4), torch.zeros(3, 4)))


def test_a_float32_layer_answers_in_float32():
    """The engine computes in float64; the layer gives back the caller's dtype."""
    torch.manual_seed(0)
    sim = SimRNN(nn.GRU(3, 4), "r", lossless_chip(), 0)
    out, h = sim(torch.randn(2, 1, 3))
    assert out.dtype == torch.float32 and h.dtype == torch.float32
    cell = SimRNNCell(nn.GRUCell(3, 4), "c", lossless_chip(), 0)
    assert cell(torch.randn(2, 3)).dtype == torch.float32


@pytest.mark.parametrize("kind, what", [(nn.RNNCell, "RNNCell"), (nn.LSTMCell, "LSTMCell"),
                                        (nn.GRUCell, "GRUCell")])
def test_a_cell_refusal_names_the_cell_kind(kind, what):
    sim = SimRNNCell(kind(3, 4), "c", lossless_chip(), 0)
    with pytest.raises(ValueError, match=rf"^c \({what}\): expected the input to be 1D or 2D, "
                                         r"got 3D instead$"):
        sim(torch.randn(1, 2, 3))


def test_an_unbatched_lstm_cell_step_without_a_state_is_torchs():
    """A 1-D input and no state: zero (h, c), both returned 1-D as torch's cell returns them."""
    torch.manual_seed(0)
    cell = nn.LSTMCell(3, 4).double()
    sim = SimRNNCell(cell, "c", lossless_chip(), 0)
    x = torch.randn(3, dtype=torch.float64)
    h, c = sim(x)
    with torch.no_grad():
        h_w, c_w = cell(x)
    torch.testing.assert_close(h, h_w, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c, c_w, rtol=1e-12, atol=1e-12)


def test_a_relu_rnn_cell_steps_with_relu():
    torch.manual_seed(0)
    cell = nn.RNNCell(3, 4, nonlinearity="relu").double()
    sim = SimRNNCell(cell, "c", lossless_chip(), 0)
    x, h0 = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(sim(x, h0), cell(x, h0), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# naming.py


def test_exclude_name_strips_a_projection_matrix():
    """An LSTM's projection ``W_hr`` is a matrix of its layer, excluded by the layer's name."""
    assert exclude_name("enc.lstm.weight_hr_l1_reverse") == "enc.lstm"
    assert exclude_name("cell.weight_hh") == "cell"


def test_named_layer_prefixes_a_message_that_starts_with_another_layers_name():
    """``fc2: ...`` raised while building ``fc`` is not ``fc``'s own words: prefixed."""
    with pytest.raises(MappingError) as info, named_layer("fc"):
        raise MappingError("fc2: too wide")
    assert str(info.value) == "fc: fc2: too wide"


def test_named_layer_without_a_name_leaves_the_message_and_arguments():
    with pytest.raises(MappingError) as info, named_layer(""):
        raise MappingError("too wide")
    assert str(info.value) == "too wide"
    err = MappingError("too wide", "extra")
    with pytest.raises(MappingError) as info, named_layer("fc"):
        raise err
    assert info.value is err and info.value.args[1:] == ("extra",)
    assert info.value.args[0].startswith("fc: ")


def test_signed_refusals_together_name_each_lowest_input_and_the_chips_bits():
    def refusing(layers, bits):
        def call():
            raise SignedInputError("signed", layers, bits)
        return call

    with pytest.raises(SignedInputError) as info:
        refuse_signed_together([("a", refusing({"a": -0.5}, 2)),
                                ("b", refusing({"b": -0.25}, 2))])
    msg = str(info.value)
    assert info.value.input_bits == 2
    assert msg.startswith("layers 'a', 'b': input_bits = 2 cannot hold signed activations "
                          "(their calibration inputs reach below 0: a -0.5, b -0.25)")


def test_a_layer_refused_twice_keeps_its_lowest_input_whichever_came_first():
    """The lower input first (-3, then -1): the layer keeps -3, not the last one."""
    def refusing(layer, low):
        def call():
            raise SignedInputError("signed", {layer: low}, 1)
        return call

    with pytest.raises(SignedInputError) as info:
        refuse_signed_together([("a", refusing("a", -3.0)), ("a", refusing("a", -1.0)),
                                ("b", refusing("b", -2.0))])
    assert info.value.layers == {"a": -3.0, "b": -2.0}


def test_finalize_layers_names_the_layer_that_fails():
    class Layer:
        def __init__(self, fail):
            self.fail, self.done = fail, False

        def finalize(self):
            if self.fail:
                raise MappingError("too wide")
            self.done = True

    first = Layer(False)
    with pytest.raises(MappingError, match="^enc.fc: too wide$"):
        finalize_layers([("head", first), ("enc.fc", Layer(True))])
    assert first.done


# ---------------------------------------------------------------------------------------------
# graph_attention.py


def test_an_exported_attention_module_as_the_whole_model_stays_inlined():
    """Exported on its own, an ``nn.MultiheadAttention`` is the graph's root (module path
    ``""``): no module can be put at no path, so its calls stay as they are (the
    in-projection a module named ``in_proj``), computing what the module computes."""
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(4, 2, batch_first=True).eval()
    x = torch.randn(2, 3, 4)
    exported = torch.export.export(attn, (x, x, x), {"need_weights": False})
    gm = modules_from_graph(exported.module())
    assert isinstance(gm.in_proj, nn.Linear)
    with torch.no_grad():
        torch.testing.assert_close(gm(x, x, x, need_weights=False)[0],
                                   attn(x, x, x, need_weights=False)[0], rtol=1e-5, atol=1e-6)


class _OneHeadPerFeature(nn.Module):
    def __init__(self, heads=4):
        super().__init__()
        self.attn = nn.MultiheadAttention(4, heads)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


@pytest.mark.parametrize("heads", [1, 4])
def test_an_exported_attention_is_rebuilt_with_its_head_count(heads):
    """Heads from 1 to the embedding width (4 heads of one feature each): the rebuilt module
    has the model's head count and batch layout (sequence first), and computes as it."""
    torch.manual_seed(0)
    model, x = _OneHeadPerFeature(heads).eval(), torch.randn(3, 2, 4)
    gm = modules_from_graph(torch.export.export(model, (x,)).module())
    assert isinstance(gm.attn, nn.MultiheadAttention)
    assert gm.attn.num_heads == heads and not gm.attn.batch_first
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=1e-5, atol=1e-6)


def test_an_attention_whose_output_is_offset_is_rebuilt_by_its_products_not_its_offset():
    """An output bias of 10 makes every candidate's output near the graph's within 10 %: the
    module is taken only where it computes what the nodes compute to 1e-4, two heads, not the
    first candidate tried (one head)."""
    torch.manual_seed(0)
    model, x = _OneHeadPerFeature(2).eval(), torch.randn(3, 2, 4)
    with torch.no_grad():
        model.attn.out_proj.bias.fill_(10.0)
    gm = modules_from_graph(torch.export.export(model, (x,)).module())
    assert isinstance(gm.attn, nn.MultiheadAttention) and gm.attn.num_heads == 2
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=1e-5, atol=1e-5)


class _ReadsAMemory(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, q, memory):
        return self.attn(q, memory, memory, need_weights=False)[0]


def test_an_attention_reading_a_memory_of_another_length_is_rebuilt():
    """Two inputs, the query (4 steps) and a memory read as key and value (5 steps): a
    candidate taking the memory as its query answers 5 steps, which is no match (not compared
    value by value with the graph's 4)."""
    torch.manual_seed(0)
    model, q, memory = _ReadsAMemory().eval(), torch.randn(2, 4, 4), torch.randn(2, 5, 4)
    gm = modules_from_graph(torch.export.export(model, (q, memory)).module())
    assert isinstance(gm.attn, nn.MultiheadAttention) and gm.attn.num_heads == 2
    with torch.no_grad():
        torch.testing.assert_close(gm(q, memory), model(q, memory), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# graph_digital.py


class _AtenProduct(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how
        self.w = nn.Parameter(torch.randn(5, 6))
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        aten = torch.ops.aten
        if self.how == "mv":
            h = torch.stack([aten.mv.default(self.w, r) for r in x])
        elif self.how == "inner":
            h = aten.inner.default(x, self.w)
        else:
            h = torch.stack([aten.addbmm.default(torch.zeros(1, 5), r[None, None],
                                                 self.w.t()[None])[0] for r in x])
        return self.head(h)


@pytest.mark.parametrize("how", ["mv", "inner", "addbmm"])
def test_a_weight_reaching_an_aten_product_is_named(how):
    """An exported graph's aten products (``aten.mv.default`` ...) read the weight as its
    Python spellings do: named, computing in float."""
    torch.manual_seed(0)
    sim = _quiet(cimsim.deploy, _AtenProduct(how).eval(), lossless_chip(), torch.randn(4, 6),
                 progress=False)
    assert [d[:2] for d in sim.digital] == [("w", "parameter")]


class _AttentionWithWeights(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, x):
        out, weights = self.attn(x, x, x)
        return out + weights.sum()


def test_an_exported_attention_returning_its_weights_stays_inlined():
    """Its weights read after the call are a second output: no module call returns them as
    the graph computed them, so the call stays as it is, computing what the model computes."""
    torch.manual_seed(0)
    model, x = _AttentionWithWeights().eval(), torch.randn(2, 3, 4)
    gm = modules_from_graph(torch.export.export(model, (x,)).module())
    assert not isinstance(gm.get_submodule("attn"), nn.MultiheadAttention)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=1e-5, atol=1e-6)


def test_a_rebuilt_attention_call_asks_for_no_weights():
    """The rebuilt call is ``attn(q, k, v, need_weights=False)``: the exported graph computed
    no attention weights, and the call computes none either."""
    torch.manual_seed(0)
    model, x = _OneHeadPerFeature(2).eval(), torch.randn(3, 2, 4)
    gm = modules_from_graph(torch.export.export(model, (x,)).module())
    calls = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == "attn"]
    assert len(calls) == 1 and calls[0].kwargs == {"need_weights": False}


# ---------------------------------------------------------------------------------------------
# unmappable.py


class _ResetLinear(nn.Linear):
    def reset_parameters(self):
        nn.init.zeros_(self.weight)


class _QuietLSTM(nn.LSTM):
    def __setattr__(self, name, value):
        super().__setattr__(name, value)

    def flatten_parameters(self):
        pass


def test_subclasses_overriding_only_what_computes_nothing_still_map():
    """``reset_parameters`` (its initialisation), an RNN's ``__setattr__`` and
    ``flatten_parameters`` (its weight bookkeeping) compute nothing in the forward."""
    assert overridden_forward(_ResetLinear(4, 3), "fc") is None
    assert overridden_forward(_QuietLSTM(3, 4), "rnn") is None


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:torch.quantize_per_tensor")
def test_an_intrinsic_qat_module_is_named_as_prepare_qats():
    """torch's fused QAT modules (``torch.ao.nn.intrinsic.qat``) are prepare_qat's too: the
    advice is to deploy the float model, not to hold a plain layer."""
    from torch.ao.nn.intrinsic.qat import LinearReLU
    from torch.ao.quantization import get_default_qat_qconfig

    layer = LinearReLU(4, 3, qconfig=get_default_qat_qconfig())
    why = overridden_forward(layer, "fc")
    assert why is not None
    assert why.startswith("fc: a torch.ao.nn.intrinsic.qat.LinearReLU of "
                          "torch.ao.quantization.prepare_qat")


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:torch.quantize_per_tensor")
def test_a_scripted_module_is_listed_by_its_own_class_name():
    class Table(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3, 3))

        def forward(self, x):
            return x @ self.w

    row = scripted_row(torch.jit.script(Table()), "", "not mapped: ")
    assert row is not None and row[:2] == ("model", "Table")
    assert row[2].startswith("not mapped: model: a TorchScript module")


@pytest.mark.parametrize("make", [lambda: nn.GRUCell(3, 4, dtype=torch.cfloat),
                                  lambda: nn.RNN(3, 4, dtype=torch.cfloat),
                                  lambda: nn.MultiheadAttention(4, 2, dtype=torch.cfloat)])
def test_complex_recurrent_and_attention_layers_are_listed_digital(make):
    row = complex_row(make(), "x", "")
    assert row is not None and "complex-valued weights" in row[2]


def test_a_lazy_layer_is_no_tensor_subclass():
    """An uninitialised ``nn.LazyLinear`` weight (torch's ``UninitializedParameter``) is a
    weight still to be made, not a quantized one."""
    assert subclass_row(nn.LazyLinear(3), "fc", "") is None


class _Dispatching(nn.Parameter):
    """A non-wrapper Parameter subclass with a dispatch of its own (it computes its products
    its own way, whatever its float values say)."""

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def test_a_parameter_subclass_with_its_own_dispatch_is_listed_digital():
    layer = nn.Linear(4, 3)
    layer.weight = _Dispatching(torch.ones(3, 4))
    row = subclass_row(layer, "fc", "")
    assert row is not None and "its weight is a tensor subclass (_Dispatching" in row[2]


def test_a_layer_of_two_subclass_weights_names_the_first():
    class Int8Params(nn.Parameter):
        pass

    layer = nn.Linear(4, 3)
    layer.weight = Int8Params(torch.ones(3, 4, dtype=torch.int8), requires_grad=False)
    layer.bias = Int8Params(torch.ones(3, dtype=torch.int8), requires_grad=False)
    row = subclass_row(layer, "fc", "")
    assert row is not None and "its weight is a tensor subclass" in row[2]
    assert "fc.weight = nn.Parameter" in row[2]


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:torch.quantize_per_tensor")
def test_a_dynamically_quantized_lstm_is_listed_as_quantize_dynamics():
    """``quantize_dynamic`` makes an LSTM of packed int8 weights (``_all_weight_values``,
    no ``_packed_params``): listed, the advice naming quantize_dynamic, not convert."""
    from torch.ao.quantization import quantize_dynamic

    model = quantize_dynamic(nn.Sequential(nn.LSTM(3, 4)), {nn.LSTM}, dtype=torch.qint8)
    row = quantized_row(model[0], "0", "")
    assert row is not None and row[1] == "quantized LSTM"
    assert "torch.ao.quantization.quantize_dynamic (packed weights)" in row[2]
    assert "before quantize_dynamic" in row[2]


def test_source_config_holds_no_private_attributes():
    config = source_config(nn.LSTM(3, 4))
    assert config["hidden_size"] == 4 and config["bias"] is True
    assert not [k for k in config if k.startswith("_")]


@pytest.mark.parametrize("words", ["element 0 of tensors does not require grad and does not "
                                   "have a grad_fn",
                                   "grad can be implicitly created only for scalar outputs "
                                   "differentiated Tensors appears to not have been used"])
def test_a_gradient_torch_cannot_give_in_the_forward_is_explained(words):
    with pytest.raises(MappingError, match="^deploy: the model's forward takes gradients"):
        with explain_stop_iteration("deploy"):
            raise RuntimeError(words)


def test_another_runtime_error_in_the_forward_passes_unchanged():
    err = RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    with pytest.raises(RuntimeError) as info, explain_stop_iteration("deploy"):
        raise err
    assert info.value is err


def test_a_stop_iteration_in_the_forward_is_explained():
    with pytest.raises(MappingError, match=r"^deploy: the model's forward raised StopIteration"):
        with explain_stop_iteration("deploy"):
            next(iter(()))


class _Cached(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(2))
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(x)


def test_graph_tensors_finds_nested_and_scalar_results_not_leaves():
    """Non-leaf tensors (computed with gradient) held as attributes, in a dict within a dict,
    0-d too; a leaf that requires grad is copyable and not one."""
    model = _Cached()
    model.table = {"a": {"b": model.scale * 2}}
    model.total = model.scale.sum()
    model.leaf = torch.ones(2, requires_grad=True)
    assert sorted(path for path, _ in graph_tensors(model)) == ["table['a']['b']", "total"]


def test_deploy_copies_a_tensor_computed_with_gradient_and_prepare_refuses_it():
    model = _Cached()
    model.cached = model.scale * 2
    sim = copy_model(model, "deploy")
    assert sim.cached.grad_fn is None and torch.equal(sim.cached, torch.full((2,), 2.0))
    assert model.cached.grad_fn is not None  # the user's model untouched
    with pytest.raises(MappingError, match=r"^prepare works on a copy .*: cached; detach them"):
        copy_model(model, "prepare")


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:torch.quantize_per_tensor")
def test_the_copy_of_a_scripted_submodule_holds_trainable_leaves():
    model = nn.Sequential(torch.jit.script(nn.Linear(3, 2)))
    sim = copy_model(model, "prepare")
    assert all(p.is_leaf and p.requires_grad for p in sim.parameters())


def test_a_gradient_hook_of_a_tied_parameter_is_carried_once():
    """A tied parameter is listed under both names: its hook is carried to the copy once (a
    hook doubling the gradient doubles it, not quadruples it)."""
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    model[1].weight = model[0].weight
    model[0].weight.register_hook(lambda g: g * 2)
    sim = copy_model(model, "prepare")
    assert len(sim[0].weight._backward_hooks) == 1
    sim[0].weight.grad = None
    sim(torch.ones(1, 2)).sum().backward()
    ref = copy.deepcopy(model)
    ref[0].weight.grad = None
    ref(torch.ones(1, 2)).sum().backward()  # deepcopy drops the hook: the plain gradient
    torch.testing.assert_close(sim[0].weight.grad, 2 * ref[0].weight.grad)


class _Remembers(nn.Module):
    """A forward appending to a list attribute, filling a dict and setting a new attribute."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.seen, self.table = [], {}

    def forward(self, x):
        y = self.fc(x)
        self.seen.append(y)
        self.table["last"] = y
        self.new = y
        return y


def test_a_calibration_pass_empties_the_lists_and_dicts_it_filled_in_place():
    """Set back after the pass: the same list and dict objects (a model's code may hold
    them), emptied as they were; the attribute the pass set removed."""
    net = _Remembers()
    seen, table = net.seen, net.table
    with calibration_state(net):
        net(torch.ones(1, 2))
        assert len(net.seen) == 1 and "last" in net.table
    assert net.seen is seen and net.seen == []
    assert net.table is table and net.table == {}
    assert not hasattr(net, "new")


def test_restoring_into_a_copy_gives_it_copies_of_the_earlier_tensors():
    net = nn.Module()
    earlier = torch.ones(2)
    net.t = earlier
    before = attribute_state(net)
    net.t = torch.zeros(2)
    other = copy.deepcopy(net)
    assert restore_attributes(before, net, into=other) == ["t"]
    assert torch.equal(other.t, earlier) and other.t is not earlier
    assert torch.equal(net.t, torch.zeros(2))  # the model itself left as it is


def test_a_calibration_pass_clears_a_cached_method_of_the_models_class():
    class Table(nn.Module):
        @functools.cache  # noqa: B019 - the model's own cache, on purpose
        def table(self, n):
            return torch.arange(n)

        def forward(self, x):
            return x + self.table(x.shape[-1])

    net = Table()
    with calibration_state(net):
        net(torch.zeros(3))
        assert Table.table.cache_info().currsize == 1
    assert Table.table.cache_info().currsize == 0


def test_a_buffer_resized_in_place_by_the_pass_gets_its_shape_and_values_back():
    class Stream(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("last", torch.arange(3.0))

        def forward(self, x):
            self.last.resize_(5).fill_(7.0)
            return x

    net = Stream()
    with calibration_state(net):
        net(torch.zeros(1))
    assert torch.equal(net.last, torch.arange(3.0))


def test_a_recurrent_layer_with_a_parametrized_weight_copies_after_a_forward():
    """torch caches a parametrized recurrent weight (an orthogonal ``weight_hh_l0``, expRNN's)
    in ``_flat_weights`` as computed, with gradient, by a forward: the copy holds its value
    (prepare refused the model as holding a tensor computed with gradient)."""
    torch.manual_seed(0)
    rnn = nn.RNN(3, 3)
    nn.utils.parametrizations.orthogonal(rnn, "weight_hh_l0")
    rnn(torch.randn(2, 1, 3))
    model = nn.Sequential(rnn)
    sim = copy_model(model, "prepare")
    assert any(w.grad_fn is not None for w in rnn._flat_weights)  # the user's cache as it was
    x = torch.randn(2, 1, 3)
    with torch.no_grad():
        torch.testing.assert_close(sim(x)[0], model(x)[0])


class _Lookup(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 3)
        self.fc = nn.Linear(3, 2)

    def forward(self, ids):
        return self.fc(self.emb(ids))


def test_an_exported_float64_embedding_is_rebuilt_in_float64():
    """The table's dtype: rebuilt in float32, its rows reached float64 layers ("mat1 and mat2
    must have the same dtype")."""
    torch.manual_seed(0)
    model, ids = _Lookup().double().eval(), torch.randint(0, 5, (2, 4))
    gm = modules_from_graph(torch.export.export(model, (ids,)).module())
    assert isinstance(gm.emb, nn.Embedding) and gm.emb.weight.dtype == torch.float64
    with torch.no_grad():
        assert torch.equal(gm(ids), model(ids))


def test_a_held_tensor_resized_in_place_by_the_pass_ends_the_block_without_error():
    """A tensor attribute (no buffer) the forward resizes in place cannot take its earlier
    values back in place (another shape): no copy is tried, and the block ends (the copy
    failed on the shapes as the block closed)."""

    class Grows(nn.Module):
        def __init__(self):
            super().__init__()
            self.memory = torch.zeros(3)

        def forward(self, x):
            self.memory.resize_(5).fill_(1.0)
            return x

    net = Grows()
    with calibration_state(net):
        net(torch.zeros(1))


def test_a_sparse_parameter_that_torch_cannot_copy_is_named():
    model = nn.Module()
    model.w = nn.Parameter(torch.eye(3).to_sparse())
    with pytest.raises(MappingError, match=r"^deploy works on a copy .*cannot copy a sparse "
                                           r"parameter or buffer: w \(torch\.sparse_coo\)"):
        copy_model(model, "deploy")

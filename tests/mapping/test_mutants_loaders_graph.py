"""Tests written for the survivors of a hand-made mutation round over the loading and
graph-rewriting code and the torch backend (cimsim/mapping/loaders.py, graph_attention.py,
graph_digital.py, torch_backend.py, naming.py, observers.py, unmappable.py): each pins a
behaviour that a small wrong change left every earlier test passing. Known answers where
possible: the Numba engine on the same programmed layer, torch's own module on the same
inputs, or a value worked out by hand in a comment."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import cimsim
from cimsim.arrays import program
from cimsim.engine import run_detailed
from cimsim.errors import MappingError, SignedInputError
from cimsim.mapping import loaders
from cimsim.mapping.graph_attention import projection_name
from cimsim.mapping.loaders import LoadError, load_data, load_model, modules_from_graph
from cimsim.mapping.naming import (
    exclude_name,
    named_layer,
    refuse_nonfinite_weights,
    refuse_signed_together,
)
from cimsim.mapping.torch_backend import _Part
from cimsim.mapping.unmappable import (
    calibration_state,
    carry_tensor_hooks,
    complex_row,
    copy_model,
    graph_tensors,
    keywords_not_taken,
    overridden_forward,
    scripted_row,
    source_config,
    subclass_row,
)
from tests.conftest import ideal_chip

from .test_torch_backend import assert_same_counts


def _export(model, *args):
    """``torch.export`` with a dynamic batch (the first dimension of every input)."""
    batch = torch.export.Dim("batch")
    return torch.export.export(model, args, dynamic_shapes=tuple({0: batch} for _ in args))

# ---------------------------------------------------------------------------------------------
# torch backend


def _backend_pair(chip):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 4))
    x = torch.randn(16, 12)
    numba = cimsim.deploy(model, chip, x, seed=1)
    sim = cimsim.deploy(model, chip, x, seed=1, backend="torch", device="cpu")
    return numba, sim, x


_ADC = dict(bits=6, range_policy="calibrated")


@pytest.mark.parametrize("chip", [
    # offset weights (a digital Σx correction, x_sum_coef), 2-b DAC planes (x² != |x|), the
    # nominal off-state current added per unit Σx (off_add)
    ideal_chip(encoding="offset", bits_per_cell=2, input_bits=4, weight_bits=4, dac_bits=2,
               n_rows=16, n_cols=32, on_off_ratio=20.0, adc=_ADC),
    # analog slice read-out: each column's off-current enters with its own weight (off_add
    # differs column by column)
    ideal_chip(encoding="differential", bits_per_cell=2, input_bits=4, weight_bits=6,
               dac_bits=2, n_rows=16, n_cols=32, on_off_ratio=20.0, adc=_ADC,
               slice_readout="analog"),
], ids=["offset-2b-dac", "analog-slices"])
def test_torch_backend_equals_the_engine_on_offset_weights_and_analog_slices(chip):
    numba, sim, x = _backend_pair(chip)
    np.testing.assert_array_equal(sim(x).numpy(), numba(x).numpy())
    assert_same_counts(numba, sim)


def _noisy_layer(adc, n_samples=3000, **noise):
    """A fixed 8-b range -60..60 (Δ = 120/255) read by rows of weights +1 and 0 (1-b cells,
    off-state current 1/2 of on): each output's spread over ``n_samples`` equal inputs, from
    the engine and the torch backend."""
    ideal = cimsim.load_chip("ideal")
    chip = ideal.replace(
        weight_bits=2, input_bits=1, dac=ideal.dac.replace(bits=1),
        device=ideal.device.replace(bits_per_cell=1, on_off_ratio=2.0),
        array=ideal.array.replace(n_rows=16, n_cols=16),
        noise=ideal.noise.replace(**noise),
        adc=ideal.adc.replace(bits=8, range_policy="fixed", fixed_lo=-60.0, fixed_hi=60.0, **adc))
    layer = program(np.array([[1] * 8, [0] * 8, [-1] * 8]), chip, np.random.default_rng(0))
    x = np.ones((n_samples, 8), dtype=np.int64)
    want = run_detailed(layer, x, noise_seed=3).y
    torch.manual_seed(3)
    got = _Part(layer, torch.device("cpu")).run(torch.from_numpy(x).double()).y
    return want, got


@pytest.mark.parametrize("noise", [
    dict(thermal_sigma_lsb=1.5),  # thermal alone (no read-noise variance operand)
    dict(comparator_noise_lsb=2.0),  # in ADC steps: times Δ in analog units
    # an unmerged differential pair (a column non-linearity): both columns' read noise
    dict(read_noise_rel=0.3, nonlinearity="saturating", saturation_fraction=1.0),
], ids=["thermal", "comparator", "read-pair"])
def test_torch_backend_noise_spread_is_the_engines(noise):
    noise = dict(noise)
    adc = {k: noise.pop(k) for k in list(noise) if k.startswith("comparator")}
    want, got = _noisy_layer(adc, **noise)
    assert want.std(axis=0).min() > 0
    np.testing.assert_allclose(got.var(axis=0) / want.var(axis=0), 1.0, atol=0.12)
    np.testing.assert_allclose(got.mean(axis=0), want.mean(axis=0), atol=0.2)


def test_the_torch_backend_on_the_cpu_runs_the_engines_own_gemm():
    """On the CPU the parts keep no device copies of the matrix: the engine's own GEMM call
    (its BLAS, ``CIMSIM_GEMM`` honoured) runs them."""
    chip = ideal_chip(n_rows=16, n_cols=16)
    layer = program(np.array([[1, -1, 0, 1]]), chip, np.random.default_rng(0))
    part = _Part(layer, torch.device("cpu"))
    assert part.cpu_gemm and part.mat32 is None and part.mat64 is None


def test_the_torch_backend_counts_every_row_groups_conversions():
    """20 rows on 16-row arrays: two row groups, each converting every column once per plane;
    the conversions counted (the clipped fraction's denominator) are the engine's."""
    chip = ideal_chip(n_rows=16, n_cols=16, adc=dict(bits=6, range_policy="fixed",
                                                     fixed_lo=-40.0, fixed_hi=40.0))
    rng = np.random.default_rng(0)
    layer = program(rng.integers(-1, 2, size=(3, 20)), chip, np.random.default_rng(1))
    assert layer.n_groups == 2
    x = rng.integers(0, 2, size=(5, 20))
    want = run_detailed(layer, x)
    got = _Part(layer, torch.device("cpu")).run(torch.from_numpy(x).double())
    assert got.n_conversions == want.n_conversions
    np.testing.assert_array_equal(got.y, want.y)


# ---------------------------------------------------------------------------------------------
# naming: errors named by layer


def test_exclude_name_strips_a_group_index_of_several_digits():
    assert exclude_name("features.3[g12]") == "features.3"
    assert exclude_name("rnn.weight_hh_l0_reverse") == "rnn"
    assert exclude_name("attn.q_proj") == "attn.q_proj"


def test_named_layer_names_the_layer_once():
    with pytest.raises(MappingError) as info, named_layer("fc"):
        raise MappingError("fc: too wide")
    assert str(info.value) == "fc: too wide"
    with pytest.raises(MappingError) as info, named_layer("fc"):
        raise MappingError("too wide")
    assert str(info.value) == "fc: too wide"


def _refusing(layers):
    def call():
        raise SignedInputError("signed", layers, 1)
    return call


def test_signed_refusals_of_several_layers_keep_each_ones_lowest_input():
    """A layer refused twice (two calls of one name) keeps its lowest input, -3 not -1."""
    calls = [("a", _refusing({"a": -1.0})), ("a", _refusing({"a": -3.0})),
             ("b", _refusing({"b": -2.0})), ("c", lambda: None)]
    with pytest.raises(SignedInputError) as info:
        refuse_signed_together(calls)
    assert info.value.layers == {"a": -3.0, "b": -2.0}
    assert info.value.input_bits == 1
    assert "exclude=['a', 'b']" in str(info.value)


def test_one_signed_refusal_keeps_its_own_error():
    err = SignedInputError("conv[g0]: its own words", {"conv": -1.0}, 1)

    def call():
        raise err

    with pytest.raises(SignedInputError) as info:
        refuse_signed_together([("conv", call), ("fc", lambda: None)])
    assert info.value is err


def test_nonfinite_weights_beyond_eight_are_counted():
    """Nine parameters of NaN or infinite values (l0's weight and bias, l1 ... l7's weights):
    eight named, 'and 1 more'."""
    layers = {f"l{i}": nn.Linear(2, 2) for i in range(8)}
    with torch.no_grad():
        for layer in layers.values():
            layer.weight[0, 0] = float("nan")
        layers["l0"].bias[:] = float("inf")
    with pytest.raises(MappingError) as info:
        refuse_nonfinite_weights(layers, "deploy")
    msg = str(info.value)
    assert "l0.weight (1 NaN, 0 infinite), l0.bias (0 NaN, 2 infinite)" in msg
    assert msg.count("infinite)") == 8 and " and 1 more;" in msg


# ---------------------------------------------------------------------------------------------
# unmappable: what deploy keeps digital


def test_a_subclass_changing_only_its_repr_still_maps():
    """``extra_repr`` computes nothing in the forward: a Linear subclass overriding it (and its
    initialisation) computes as nn.Linear and maps."""

    class Named(nn.Linear):
        def __init__(self):
            super().__init__(4, 3)

        def extra_repr(self):
            return "named"

    assert overridden_forward(Named(), "fc") is None


def test_an_instance_call_attribute_is_no_patch():
    """Python looks ``__call__`` up on the class: one set on the instance is never called, so
    the layer still computes as nn.Linear; a patched ``forward`` is a patch."""
    layer = nn.Linear(4, 3)
    layer.__call__ = lambda *a: None
    assert overridden_forward(layer, "fc") is None
    layer.forward = lambda x: x
    assert "its forward is replaced on the instance" in overridden_forward(layer, "fc")


def test_a_scripted_module_holding_only_buffers_is_listed_digital():
    class Table(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("w", torch.ones(3, 3))

        def forward(self, x):
            return x @ self.w

    row = scripted_row(torch.jit.script(Table()), "table", "")
    assert row is not None and row[0] == "table"
    assert scripted_row(torch.jit.script(nn.ReLU()), "act", "") is None


def test_a_complex_weight_beside_a_real_bias_is_listed_digital():
    layer = nn.Linear(4, 3, dtype=torch.cfloat)
    layer.bias = nn.Parameter(torch.zeros(3))
    row = complex_row(layer, "fc", "")
    assert row is not None and "complex-valued weights" in row[2]
    assert complex_row(nn.Linear(4, 3), "fc", "") is None


def test_a_parameter_subclass_of_integers_is_listed_digital():
    """bitsandbytes' ``Int8Params``: a Parameter subclass of int8 values, computing its
    products its own way; a subclass only tagging float values is a plain weight."""

    class Int8Params(nn.Parameter):
        pass

    layer = nn.Linear(4, 3)
    layer.weight = Int8Params(torch.ones(3, 4, dtype=torch.int8), requires_grad=False)
    row = subclass_row(layer, "fc", "")
    assert row is not None and "Int8Params" in row[2]
    layer.weight = Int8Params(torch.ones(3, 4))
    assert subclass_row(layer, "fc", "") is None


def test_a_positional_only_input_is_no_keyword_input():
    class Net(nn.Module):
        def forward(self, x, /, mask=None):
            return x

    signature, unknown = keywords_not_taken(Net(), ["x", "mask", "other"])
    assert unknown == ["x", "other"]
    assert list(signature.parameters) == ["x", "mask"]


def test_source_config_holds_the_layers_configuration_not_its_mode():
    conv = nn.Conv1d(2, 3, 3, dilation=2)
    config = source_config(conv)
    assert config["dilation"] == (2,) and config["in_channels"] == 2
    assert "training" not in config and "weight" not in config


def test_a_calibration_pass_sets_back_counters_but_not_flags():
    """Plain numbers the forward changes (a call counter) are set back after the pass; a
    bool is no number (a flag the pass sets stays set)."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls, self.scale, self.ready = 0, 1.0, False

        def forward(self, x):
            self.calls += 1
            self.scale = 2.0
            self.ready = True
            return x

    net = Net()
    with calibration_state(net):
        net(torch.ones(1))
    assert (net.calls, net.scale, net.ready) == (0, 1.0, True)


def test_a_calibration_pass_empties_a_list_cache_it_filled():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.cache = []

        def forward(self, x):
            self.cache.append(x * 2)
            return x

    net = Net()
    held = net.cache
    with calibration_state(net):
        net(torch.ones(1))
        net(torch.ones(1))
    assert net.cache is held and held == []


# ---------------------------------------------------------------------------------------------
# loaders: exported graphs rewritten as modules


class _OneBiasCell(nn.Module):
    """A ReLU recurrent cell called as torch's function with ``b_ih`` only: the cell rebuilt
    from it takes ``b_hh = 0`` and the ReLU."""

    def __init__(self):
        super().__init__()
        self.weight_ih = nn.Parameter(torch.randn(6, 4))
        self.weight_hh = nn.Parameter(torch.randn(6, 6) / 3)
        self.bias_ih = nn.Parameter(torch.randn(6))

    def forward(self, x):
        h = torch.zeros(x.shape[0], 6)
        h = torch.rnn_relu_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, None)
        return torch.rnn_relu_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, None)


def test_an_exported_cell_with_one_bias_and_a_relu_becomes_that_cell():
    torch.manual_seed(0)
    model, x = _OneBiasCell().eval(), torch.randn(5, 4)
    gm = modules_from_graph(_export(model, x).module())
    cells = [m for m in gm.modules() if isinstance(m, nn.RNNCell)]
    assert cells and all(c.nonlinearity == "relu" and c.bias for c in cells)
    assert torch.equal(cells[0].bias_hh, torch.zeros(6))
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=1e-6, atol=1e-6)


def test_a_buffer_resized_in_the_pass_holds_its_values_again():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mem", torch.tensor([1.0, 2.0]))

        def forward(self, x):
            self.mem.data = torch.zeros(5)  # the buffer object itself, resized
            return x

    net = Net()
    with calibration_state(net):
        net(torch.ones(1))
    assert torch.equal(net.mem, torch.tensor([1.0, 2.0]))


def test_a_gradient_hook_is_not_carried_to_a_frozen_copy():
    model = nn.Linear(3, 2)
    model.weight.register_hook(lambda g: g * 0)
    sim = copy.deepcopy(model)
    sim.weight.requires_grad_(False)
    carry_tensor_hooks(model, sim)  # torch refuses a hook on a tensor without gradient
    assert not sim.weight._backward_hooks
    sim.weight.requires_grad_(True)
    carry_tensor_hooks(model, sim)
    assert len(sim.weight._backward_hooks) == 1


def test_the_copy_of_a_pruned_layer_holds_the_pruned_weight_permanently():
    model = nn.Sequential(nn.Linear(3, 2))
    prune.custom_from_mask(model[0], "weight", torch.tensor([[1.0, 0, 1], [0, 1, 1]]))
    sim = copy_model(model, "deploy")
    assert "weight_orig" not in dict(sim[0].named_parameters())
    assert not sim[0]._forward_pre_hooks
    torch.testing.assert_close(sim[0].weight, model[0].weight, rtol=0, atol=0)


def test_only_prepare_refuses_a_tensor_computed_with_gradient():
    """deploy copies such an attribute (a cache filled with gradient, found in a dict too) as
    its value; prepare, whose training would lose the gradient through it, refuses it."""
    model = nn.Linear(3, 2)
    model.cache = {"k": model.weight * 2}
    assert [path for path, _ in graph_tensors(model)] == ["cache['k']"]
    sim = copy_model(model, "deploy")
    assert sim.cache["k"].grad_fn is None
    torch.testing.assert_close(sim.cache["k"], model.weight.detach() * 2)
    with pytest.raises(MappingError, match=r"cache\['k'\]"):
        copy_model(model, "prepare")


def test_a_parameter_listed_in_an_attribute_is_no_state_of_the_pass():
    """Held tensors written in place are set back after the pass, parameters not (a forward
    renormalising its own weight in place does so in the user's model as well); a parameter
    also listed in a plain attribute is still a parameter."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))
            self.held = [self.w]
            self.mem = torch.zeros(2)

        def forward(self, x):
            with torch.no_grad():
                self.w.mul_(2)
            self.mem.add_(1)
            return x

    net = Net()
    with calibration_state(net):
        net(torch.ones(1))
    assert torch.equal(net.w.detach(), torch.full((2,), 2.0))
    assert torch.equal(net.mem, torch.zeros(2))


# ---------------------------------------------------------------------------------------------
# loaders: data files


def test_a_tensor_file_of_three_tensors_or_of_labels_alone_is_refused(tmp_path):
    for i, obj in enumerate([(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long),
                              torch.zeros(4)),
                             {"y": torch.zeros(4, dtype=torch.long)}]):
        path = tmp_path / f"data{i}.pt"
        torch.save(obj, path)
        with pytest.raises(LoadError, match="expected a tensor, an \\(x, y\\) tuple"):
            load_data(path)


def test_keyword_inputs_keep_a_shared_row_a_bool_mask_and_refuse_infinities(tmp_path):
    """A (1, S) entry beside (n, S) ones is shared by every input; a bool mask stays bool,
    token ids int64, the rest float32; a float entry must be finite."""
    path = tmp_path / "kw.npz"
    np.savez(path, input_ids=np.arange(12, dtype=np.int32).reshape(4, 3),
             position_ids=np.arange(3)[None], attention_mask=np.ones((4, 3), bool),
             scale=np.ones((4, 1), np.float64), y=np.arange(4))
    x, y = load_data(path)
    assert {k: (v.dtype, tuple(v.shape)) for k, v in x.items()} == {
        "input_ids": (torch.int64, (4, 3)), "position_ids": (torch.int64, (1, 3)),
        "attention_mask": (torch.bool, (4, 3)), "scale": (torch.float32, (4, 1))}
    assert y.tolist() == [0, 1, 2, 3]
    np.savez(path, input_ids=np.zeros((4, 3), np.int64), scale=np.full((4, 1), np.inf))
    with pytest.raises(LoadError, match="input 'scale' holds NaN or infinite"):
        load_data(path)
    np.savez(path, input_ids=np.zeros((4, 3), np.int64), mask=np.zeros((2, 3), bool))
    with pytest.raises(LoadError, match="the inputs differ in length"):
        load_data(path)


class KeywordNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, features, mask=None):
        return self.fc(features) * mask


def test_keyword_data_named_as_the_forward_loads_its_model():
    x = {"features": torch.randn(4, 3), "mask": torch.ones(4, 1)}
    model, inputs = loaders.load_model_for(f"{__name__}:KeywordNet", x)
    assert isinstance(model, KeywordNet) and inputs is x
    with pytest.raises(LoadError, match="'inputs' is no keyword input"):
        loaders.load_model_for(f"{__name__}:KeywordNet", {"inputs": torch.randn(4, 3)})


# ---------------------------------------------------------------------------------------------
# graph_digital: embeddings of an exported graph


class _Embed(nn.Module):
    def __init__(self, padding_idx):
        super().__init__()
        self.emb = nn.Embedding(5, 4, padding_idx=padding_idx)
        self.fc = nn.Linear(4, 2)

    def forward(self, ids):
        return self.fc(self.emb(ids))


@pytest.mark.parametrize("padding_idx", [0, 3, None])
def test_an_exported_embedding_keeps_its_padding_index(padding_idx):
    """Index 0 is a padding index too (the commonest: BERT's [PAD]); none stays none."""
    torch.manual_seed(0)
    model, ids = _Embed(padding_idx).eval(), torch.randint(0, 5, (3, 6))
    gm = modules_from_graph(_export(model, ids).module())
    assert isinstance(gm.emb, nn.Embedding) and gm.emb.padding_idx == padding_idx
    with torch.no_grad():
        assert torch.equal(gm(ids), model(ids))


def test_a_forward_taking_any_keyword_takes_every_name():
    class Net(nn.Module):
        def forward(self, x, **extra):
            return x

    assert keywords_not_taken(Net(), ["x", "anything"])[1] == []


def test_a_calibration_pass_leaves_a_modules_own_generator_where_it_was():
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.gen = torch.Generator().manual_seed(7)

        def forward(self, x):
            return x + torch.randn(x.shape, generator=self.gen)

    net = Noisy()
    first = net(torch.zeros(3))
    net.gen.manual_seed(7)
    with calibration_state(net):
        net(torch.zeros(3))
    assert torch.equal(net(torch.zeros(3)), first)


# ---------------------------------------------------------------------------------------------
# graph_attention: exported nn.MultiheadAttention calls


def test_projection_names_are_given_once():
    """A projection left inlined is named by its weight; once a module holds that name (the
    same attention's second call), another call gets none (a generated name)."""
    root = nn.Module()
    root.attn = nn.Module()
    assert projection_name(root, SimpleNamespace(target="attn.in_proj_weight")) == "attn.in_proj"
    assert projection_name(root, SimpleNamespace(target="attn.k_proj_weight")) == "attn.k_proj"
    assert projection_name(root, SimpleNamespace(target="q_proj_weight")) == "q_proj"
    assert projection_name(root, SimpleNamespace(target="attn.weight")) is None
    root.attn.add_module("in_proj", nn.Linear(2, 6))
    assert projection_name(root, SimpleNamespace(target="attn.in_proj_weight")) is None


class _CrossAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, q, k, v):
        return self.attn(q, k, v, need_weights=False)[0]


def test_an_exported_attention_of_three_distinct_inputs_is_rebuilt():
    torch.manual_seed(0)
    model = _CrossAttention().eval()
    q, k, v = torch.randn(3, 4, 8), torch.randn(3, 5, 8), torch.randn(3, 5, 8)
    gm = modules_from_graph(_export(model, q, k, v).module())
    assert isinstance(gm.attn, nn.MultiheadAttention) and gm.attn.batch_first
    with torch.no_grad():
        torch.testing.assert_close(gm(q, k, v), model(q, k, v), rtol=1e-5, atol=1e-6)


class _Attention(nn.Module):
    def __init__(self, bias=True):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, bias=bias, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


def test_an_exported_attention_without_biases_is_rebuilt_without_them():
    torch.manual_seed(0)
    model, x = _Attention(bias=False).eval(), torch.randn(3, 4, 8)
    gm = modules_from_graph(_export(model, x).module())
    assert isinstance(gm.attn, nn.MultiheadAttention) and gm.attn.in_proj_bias is None
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=1e-5, atol=1e-6)



def test_uint64_inputs_beyond_int64_load_as_their_values(tmp_path):
    """2^63, the first beyond int64, does not fit it (it wrapped to -2^63): float, positive."""
    path = tmp_path / "big.npz"
    np.savez(path, x=np.array([[2**63], [1]], np.uint64))
    x, _ = load_data(path)
    assert x.dtype == torch.float32 and x[:, 0].tolist() == [2.0**63, 1.0]


def test_integer_inputs_are_float32_unless_asked_and_bools_are_never_integers(tmp_path):
    path = tmp_path / "ints.npz"
    np.savez(path, x=np.arange(6, dtype=np.int32).reshape(3, 2))
    assert load_data(path)[0].dtype == torch.float32
    assert load_data(path, integers=True)[0].dtype == torch.int64
    np.savez(path, x=np.ones((3, 2), bool))
    assert load_data(path, integers=True)[0].dtype == torch.float32


# ---------------------------------------------------------------------------------------------
# loaders: model files


def test_a_graph_with_only_a_dropout_in_training_mode_is_refused():
    """aten.dropout's flag is called ``train`` (batch norm's ``training``)."""
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))  # train() mode, as built
    gm = _export(model, torch.randn(3, 4)).module()
    with pytest.raises(LoadError, match=r"recorded in training mode \(1 call"):
        loaders._refuse_training_mode(None, gm)


def test_what_a_saved_file_holds_is_told_apart(tmp_path):
    run = {"epoch": 1, "model": {}, "optimizer": {}, "loss": [0.5], "run": {}}
    assert loaders.is_train_checkpoint(run)
    assert not loaders.is_train_checkpoint(dict(run, loss={"mean": 0.5}))
    assert loaders._is_state_dict({"w": torch.zeros(1)})
    assert not loaders._is_state_dict({})
    path = tmp_path / "empty.pt"
    torch.save({}, path)
    with pytest.raises(LoadError, match="not a TorchScript or torch.export"):
        load_model(str(path))


def test_a_model_of_two_floating_dtypes_has_no_one_weight_dtype():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2).double())
    assert loaders._weights_dtype(model) is None
    assert loaders._weights_dtype(model[1]) == torch.float64


def test_an_error_is_told_by_its_first_line():
    assert loaders._first_line(ValueError("shapes differ\n  at line 3\n")) == "shapes differ"
    assert loaders._first_line(ValueError("")) == "ValueError"


class _Conv1D(nn.Module):
    """GPT-2's ``Conv1D``: weight (in, out), a bias of shape (1, out) added by ``addmm``."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3))
        self.bias = nn.Parameter(torch.randn(1, 3))

    def forward(self, x):
        return torch.addmm(self.bias, x, self.weight)


class _Transposed(nn.Module):
    """A weight (out, in) read transposed, its bias added before the product is written."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 4))
        self.bias = nn.Parameter(torch.randn(3))

    def forward(self, x):
        return self.bias + x @ self.weight.T


@pytest.mark.parametrize("make", [_Conv1D, _Transposed])
def test_an_exported_product_of_a_weight_and_bias_module_is_one_linear(make):
    torch.manual_seed(0)
    model = nn.Sequential(make()).eval()
    x = torch.randn(5, 4)
    gm = modules_from_graph(_export(model, x).module())
    layer = gm.get_submodule("0")
    assert isinstance(layer, nn.Linear) and layer.bias is not None
    torch.testing.assert_close(layer.bias, model[0].bias.reshape(-1), rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=1e-6, atol=1e-6)


def test_only_x_at_w_einsums_are_products_of_a_weight():
    # the summed index is not the output's, nor a batch index
    assert [loaders._x_at_w(e) for e in ("bi,io->bo", "bi,ii->bi", "ii,io->io")] == [
        True, False, False]


class _Conv1DShift(nn.Module):
    """An ``addmm`` with its own bias, then a constant of the outputs' size added: the add is
    no bias of the product (it has one), it stays an add."""

    def __init__(self):
        super().__init__()
        self.c = _Conv1D()
        self.shift = nn.Parameter(torch.randn(3))

    def forward(self, x):
        return self.c(x) + self.shift


class _Holder(nn.Module):
    """A weight applied twice by ``F.linear`` in a module holding another layer: no module can
    take its place (the layer would be lost), the calls get generated names in order."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 4) / 2)
        self.child = nn.Linear(4, 2)

    def forward(self, x):
        return self.child(nn.functional.linear(nn.functional.linear(x, self.weight),
                                               self.weight))


def test_an_exported_product_keeps_its_own_bias_and_a_shared_holder_keeps_its_layers():
    torch.manual_seed(0)
    x = torch.randn(5, 4)
    for model in (_Conv1DShift().eval(), nn.Sequential(_Holder()).eval()):
        gm = modules_from_graph(_export(model, x).module())
        with torch.no_grad():
            torch.testing.assert_close(gm(x), model(x), rtol=1e-6, atol=1e-6)
    assert isinstance(gm.get_submodule("0.child"), nn.Linear)
    made = [n for n, m in gm.named_children() if n.startswith("cimsim_")]
    assert [n.split("_")[1] for n in made] == ["0", "1"]
    assert all(isinstance(getattr(gm, n), nn.Linear) for n in made)


class _WeightOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 4))

    def forward(self, x):
        return x @ self.weight.T


class _ScalarShift(nn.Module):
    """A product's constant add of one value (not one per output): no bias, it stays an add."""

    def __init__(self):
        super().__init__()
        self.lin = _WeightOnly()
        self.shift = nn.Parameter(torch.randn(1))

    def forward(self, x):
        return self.lin(x) + self.shift


def test_a_product_plus_a_constant_of_another_size_keeps_no_bias():
    torch.manual_seed(0)
    model, x = _ScalarShift().eval(), torch.randn(5, 4)
    gm = modules_from_graph(_export(model, x).module())
    assert isinstance(gm.lin, nn.Linear) and gm.lin.bias is None
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=1e-6, atol=1e-6)

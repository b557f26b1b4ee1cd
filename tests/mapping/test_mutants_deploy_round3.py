"""Tests written for the survivors of a third hand-made mutation round over
cimsim/mapping/deploy.py (the parts the first two rounds, test_mutants_mapping.py and
test_mutants_deploy_layers.py, and test_mutants_session22.py left unpinned: the warnings'
counts and texts, the hooks carried to a simulated layer, the inference count of a call, the
reprogramming charge over capacity, the trace's figures, the calibration batches and their
refusals, the ReLU fusion's choice of layers, the exclude patterns, the capacity refusal): each
pins a behaviour that a small wrong change left every earlier test passing. Known answers
where possible: counts worked out by hand in a comment, the lossless ``ideal`` chip, or
torch's own module."""

from __future__ import annotations

import copy
import importlib
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import MappingError

dep = importlib.import_module("cimsim.mapping.deploy")  # the package re-exports deploy()


# the tests seed torch's global generator: given back as it was
pytestmark = pytest.mark.usefixtures("own_torch_generator")


def _messages(record) -> list[str]:
    return [str(w.message) for w in record]


# -------------------------------------------------------------------------------------------
# warn_unsupported, carry_hooks
# -------------------------------------------------------------------------------------------


class TestWarnUnsupported:
    ROWS = [("emb", "Embedding", dep.UNSUPPORTED_REASON),
            ("att", "MultiheadAttention", f"{dep.NOT_MAPPABLE}att: add_bias_kv"),
            ("fc", "Linear", dep.EXCLUDED_REASON)]

    def test_counts_and_names_each_kind_of_digital_layer_apart(self):
        """``warn_unsupported``: one warning counting the unsupported types alone (``len(kept)``,
        not every digital row: '3 layer(s)'), one giving the unmappable settings' reasons
        without their 'not mappable: ' prefix (``removeprefix`` dropped)."""
        with pytest.warns(UserWarning) as record:
            dep.warn_unsupported(self.ROWS, "deploy")
        assert _messages(record) == [
            "deploy: 1 layer(s) with weights run digitally in float, their type not being "
            "supported: emb (Embedding)",
            "deploy: 1 layer(s) cannot be mapped and run digitally in float: att: add_bias_kv"]


class TestCarryHooks:
    def test_an_old_style_weight_norm_hook_stays_behind_and_the_users_hook_moves(self):
        """``carry_hooks``: torch's old-style ``weight_norm`` pre-hook recomputes ``weight`` from
        ``weight_g`` / ``weight_v``, which the replacement does not hold: it is not carried
        (``key not in dropped`` dropped: the replacement's forward failed or recomputed its
        weight); the user's own pre-hook is."""
        from torch.nn.utils.weight_norm import WeightNorm

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            src = torch.nn.utils.weight_norm(nn.Linear(3, 2))

        def user_hook(module, args):
            return None

        src.register_forward_pre_hook(user_hook)
        dst = nn.Linear(3, 2)
        dep.carry_hooks(src, dst)
        hooks = list(dst._forward_pre_hooks.values())
        assert hooks == [user_hook]
        assert not any(isinstance(h, WeightNorm) for h in hooks)


# -------------------------------------------------------------------------------------------
# SimModel: the inference count of a call
# -------------------------------------------------------------------------------------------


class _TwoArgs(nn.Module):
    """A Linear(4 -> 2) on ``x``; ``other`` is read by nothing (a mask, ids)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 2)

    def forward(self, x, other):
        return self.lin(x)


def _two_args(*calibration) -> cimsim.SimModel:
    sim = cimsim.deploy(_TwoArgs().eval(), "ideal", calibration, progress=False)
    sim.reset()
    return sim


class TestCallSamples:
    def test_a_two_d_square_mask_beside_a_batch_of_one_is_no_batch(self):
        """A (1, 4) input beside a (4, 4) boolean mask (square in its sequence length): one
        inference. ``t.dim() >= 2`` made ``> 2``: a 2-D mask was taken as a batch of 4
        it broadcasts against."""
        mask = torch.ones(4, 4, dtype=torch.bool)
        sim = _two_args(torch.randn(8, 4), mask)
        sim(torch.randn(1, 4), mask)
        assert sim.n_inferences == 1

    def test_a_later_empty_batch_it_broadcasts_against_counts_zero(self):
        """A (1, 4) input beside a (0, 4) one it broadcasts against: a batch of 0 samples (the
        later count is taken wherever it is not 1; ``c != 1`` made ``c > 1``: counted 1)."""
        sim = _two_args(torch.randn(8, 4), torch.randn(8, 4))
        sim(torch.randn(1, 4), torch.randn(0, 4))
        assert sim.n_inferences == 0 and sim.n_calls == 1

    def test_an_empty_packed_sequence_is_no_sample(self):
        """``_nested_samples``: a PackedSequence with no steps holds 0 samples (``else 0``
        made ``else 1``)."""
        from torch.nn.utils.rnn import PackedSequence

        sim = _two_args(torch.randn(8, 4), torch.randn(8, 4))
        empty = PackedSequence(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
        assert sim._nested_samples(empty) == 0


# -------------------------------------------------------------------------------------------
# SimModel._charge_time_multiplexing
# -------------------------------------------------------------------------------------------


class _Three(nn.Module):
    """Three Linear(8 -> 8), one 8x64 array each on ``ideal`` (8 columns a weight: four 2-bit
    slices, differential); ``skip`` leaves the last out."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.c = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x, skip: bool = False):
        y = self.b(self.a(x))
        return y if skip else self.c(y)


def _one_array_sim() -> cimsim.SimModel:
    ideal = cimsim.load_chip("ideal")
    chip = ideal.replace(array=ideal.array.replace(
        n_rows=8, n_cols=64, cols_per_adc=8, n_tiles=1, arrays_per_tile=1,
        allow_time_multiplexing=True))
    sim = cimsim.deploy(_Three().eval(), chip, torch.randn(16, 8), progress=False)
    assert sim.arrays_needed == 3 and chip.array_slots == 1
    sim.reset()
    return sim


class TestTimeMultiplexing:
    REPROGRAM = ("array", "reprogram", 0)

    def _writes(self, sim) -> float:
        (value,) = [v for k, v in sim.events.items()
                    if k.component.value == "cell" and k.action.value == "write"]
        return value

    def test_a_forward_rewrites_the_arrays_beyond_the_held_ones(self):
        """Spans (0, 1), (1, 1), (2, 1) on a chip holding 1 array: a forward of all three
        rewrites arrays 1 and 2, 2 reprograms (``max(start, have)`` dropped: the span at 2
        counted 2, 3 in all), and their cells: twice a matrix's ``n_cells`` written
        (``* reloaded`` dropped: one array's)."""
        sim = _one_array_sim()
        cells = sim.sim_layers["a"].cores[0].n_cells
        assert all(layer.cores[0].n_cells == cells for layer in sim.sim_layers.values())
        sim(torch.randn(2, 8))
        assert sim.events.get(self.REPROGRAM) == 2
        assert self._writes(sim) == pytest.approx(2 * cells)

    def test_a_layer_that_did_not_run_is_not_rewritten(self):
        """``c`` skipped: only ``b`` (span 1) is rewritten, 1 reprogram (``n_vectors > was``
        made ``>=``: every matrix counted as run, 2)."""
        sim = _one_array_sim()
        sim(torch.randn(2, 8), skip=True)
        assert sim.events.get(self.REPROGRAM) == 1


# -------------------------------------------------------------------------------------------
# SimModel.trace and its rows
# -------------------------------------------------------------------------------------------


class TestTrace:
    def test_no_input_is_refused(self):
        """An empty list of batches: ``MappingError('trace() got no input')`` (the check
        removed: a table of NaN for every layer, as if none were reached)."""
        sim = _two_args(torch.randn(8, 4), torch.randn(8, 4))
        with pytest.raises(MappingError, match=r"trace\(\) got no input"):
            sim.trace([])

    def test_adc_clipping_before_the_trace_is_not_the_traces(self):
        """``adc_clip_pct`` counts the conversions the trace's own runs clipped: a forward
        that clipped 4 conversions (inputs at the top of their range, each of the weights'
        sign), then a trace of the calibration data, which clips none: 0 % (the clipped count
        taken whole, not less what it was before: above 0)."""
        from tests.conftest import ideal_chip

        chip = ideal_chip(adc=dict(bits=8, range_policy="calibrated"))
        torch.manual_seed(0)
        lin = nn.Linear(8, 2)
        x = torch.randn(64, 8)
        sim = cimsim.deploy(nn.Sequential(lin).eval(), chip, x, progress=False)
        sim(x)
        assert sim.work().layers[0].n_adc_clipped == 0
        sim((lin.weight.detach().sign()[0] * x.abs().max()).repeat(4, 1))
        assert sim.work().layers[0].n_adc_clipped == 4
        assert sim.trace(x[:16])["adc_clip_pct"].iloc[0] == 0.0
        assert sim.work().layers[0].n_adc_clipped == 4


# -------------------------------------------------------------------------------------------
# _batches and its helpers: how calibration data is read
# -------------------------------------------------------------------------------------------


class TestPlainArguments:
    def test_a_nested_argument_is_plain_only_if_every_leaf_is(self):
        """``_plain``: a tuple / list argument is plain where all its leaves are (``all`` made
        ``any``: a pair holding a dict was taken for the model's argument, not the
        DataLoader's item it is read as)."""
        t = torch.zeros(2)
        assert dep._plain((t, (t, None), [1, "a"]))
        assert not dep._plain((t, {"k": 1}))
        assert not dep._plain([t, [t, object()]])
        x = torch.zeros(3, 2)
        assert [len(a) for a in dep._batches((x, (t, {"k": 1})), 256)] == [1, 1]


class TestBatches:
    def test_a_dataset_is_read_in_batches_of_batch_size(self):
        """A ``Dataset`` of 10 single samples is batched by torch's loader at ``batch_size``
        (4, 4, 2), in order (batched one by one: ten calibration forwards of one sample)."""
        data = torch.arange(10.0)[:, None]
        got = [a[0] for a in dep._batches(torch.utils.data.TensorDataset(data), 4)]
        assert [t.shape[0] for t in got] == [4, 4, 2]
        assert torch.equal(torch.cat(got), data)

    def test_items_of_more_than_two_elements_are_warned_of_once(self):
        """A DataLoader of (x, mask, y) items: one warning for the whole pass (``not warned``
        dropped: one per batch); (x, y) items are the inputs and labels, not warned of."""
        x, m, y = torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2)
        with pytest.warns(UserWarning) as record:
            got = list(dep._batches([(x, m, y)] * 3, 256))
        assert len(got) == 3 and all(len(a) == 1 and a[0] is x for a in got)
        assert len(record) == 1 and "3-element items" in _messages(record)[0]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert len(list(dep._batches([(x, y)] * 2, 256))) == 2


class _ThreeArgs(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x, y, z):
        return self.lin(x + y + z)


class TestCheckKeywords:
    def test_two_tensors_for_a_one_argument_forward_are_refused_as_such(self):
        """A tuple of 2 tensors is the model's 2 positional arguments: a forward of one is a
        ``MappingError`` naming the count (``len(args) > 1`` made ``> 2``: torch's TypeError
        'takes 2 positional arguments but 3 were given' from the call)."""
        with pytest.raises(MappingError, match="calibration as 2 tensors is read as the "
                                               "model's 2 positional arguments"):
            cimsim.deploy(nn.Sequential(nn.Linear(4, 2)), "ideal",
                          (torch.randn(8, 4), torch.randn(8, 4)), progress=False)

    def test_too_few_tensors_are_left_to_the_models_own_error(self):
        """Only too many positional arguments are refused as a list of batches: 2 tensors for
        a forward of 3 fail in the call as torch says (the refusal for any binding error
        named 'takes fewer' for a forward that takes more)."""
        with pytest.raises(TypeError, match="missing 1 required positional argument: 'z'"):
            cimsim.deploy(_ThreeArgs(), "ideal", (torch.randn(8, 4), torch.randn(8, 4)),
                          progress=False)


class TestKeywordBatches:
    def test_an_empty_tuple_entry_is_refused(self):
        """A tuple entry is an LSTM's ``(h0, c0)`` only where it holds tensors: ``()`` is
        refused naming it (``and data[k]`` dropped: taken as a plain argument)."""
        with pytest.raises(MappingError, match="entry 'state' is a tuple"):
            list(dep._keyword_batches({"x": torch.zeros(2, 3), "state": ()}, 4, 0))

    def test_the_counting_tensor_is_cut_first_whatever_the_keys_order(self):
        """``{"mode": "a", "x": (10, 4)}`` in batches of 4: ``x`` sets the count (the first
        key, a string, took it: the cut read the string as a DataLoader), 4, 4, 2 rows, the
        string passed whole to each."""
        x = torch.arange(40.0).reshape(10, 4)
        got = list(dep._keyword_batches({"mode": "a", "x": x}, 4, 0))
        assert [a.kwargs["x"].shape[0] for a in got] == [4, 4, 2]
        assert all(a.kwargs["mode"] == "a" and len(a) == 0 for a in got)
        assert torch.equal(torch.cat([a.kwargs["x"] for a in got]), x)


class _Fails(nn.Module):
    """A forward that fails in the model's own code."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        raise TypeError("boom")


class TestBatchesNoted:
    def test_a_failure_of_one_uncut_tensor_gets_no_note(self):
        """A list of one (4, 4) tensor with ``batch_size = 4``: one batch, not cut, and no
        list of several tensors read as arguments; the model's error comes with no note
        (``n > batch_size`` made ``>=``: 'cut into batches of 4'; ``len(data) > 1`` made
        ``> 0``: 'the calibration list of 1 tensors was read as the model's 1 arguments')."""
        with pytest.raises(TypeError, match="boom") as info:
            cimsim.deploy(_Fails(), "ideal", [torch.zeros(4, 4)], batch_size=4, progress=False)
        assert getattr(info.value, "__notes__", []) == []

    def test_a_list_of_tensor_pairs_read_as_a_dataloader_is_noted(self):
        """``[(x, y)]``: read as a DataLoader of (inputs, labels), the model called on ``x``:
        its failure notes that reading and the first item's shape (the note dropped)."""
        with pytest.raises(TypeError, match="boom") as info:
            cimsim.deploy(_Fails(), "ideal", [(torch.zeros(3, 4), torch.zeros(3))],
                          progress=False)
        (note,) = info.value.__notes__
        assert note.startswith("(the calibration was read as a DataLoader, each item as "
                               "(inputs, labels): the model was called with the first element "
                               "of its first item, a tensor of shape (3, 4);")

    def test_a_cut_calibration_is_noted(self):
        """5 samples in batches of 4: the failure notes the cut and the way out."""
        with pytest.raises(TypeError, match="boom") as info:
            cimsim.deploy(_Fails(), "ideal", torch.zeros(5, 4), batch_size=4, progress=False)
        (note,) = info.value.__notes__
        assert "were cut into batches of 4 along dimension 0, 5 there" in note
        assert "pass batch_size=5" in note


# -------------------------------------------------------------------------------------------
# _relu_clamp, _relu_consumers: which layers fuse with the ReLU after them
# -------------------------------------------------------------------------------------------


class _Net(nn.Module):
    """``lin`` (3 -> 3) then ``tail(self, y)``."""

    def __init__(self, tail):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 3)
        self.tail = tail

    def forward(self, x):
        return self.tail(self, self.lin(x))


class _Untraceable(nn.Module):
    """``body`` called behind a branch on a value: torch.fx cannot trace it."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        if x.sum() > 1e9:
            return x
        return self.body(x)


class _OwnForward(nn.Sequential):
    """A Sequential whose forward also adds the first child's output: not a chain."""

    def forward(self, x):
        y = self[0](x)
        return self[1](y) + y


class TestReluFusion:
    def test_a_hardtanh_from_zero_clamps_at_its_max(self):
        """``nn.Hardtanh(0, 3)`` is a ReLU clamped at 3 (``float(max_val)`` made ``inf``)."""
        assert dep._relu_clamp(nn.Hardtanh(0.0, 3.0)) == 3.0
        assert dep._relu_clamp(nn.Hardtanh(-1.0, 3.0)) is None

    def test_the_traced_relu_forms_fuse(self):
        """``torch.relu_(y)`` and ``y.relu()`` read the layer's output alone: fused at inf
        (``torch.relu_`` left out of the functions; the method ``relu`` left out)."""
        for tail in (lambda m, y: torch.relu_(y), lambda m, y: y.relu(),
                     lambda m, y: y.relu_()):
            assert dep._relu_consumers(_Net(tail), {"lin"}) == {"lin": float("inf")}

    def test_untraced_a_sequential_with_its_own_forward_is_not_a_chain(self):
        """A Sequential subclass whose forward reads a child's output twice: its neighbours
        say nothing of the consumers (the check of ``type(seq).forward`` dropped: fused)."""
        model = _Untraceable(_OwnForward(nn.Linear(3, 3), nn.ReLU()))
        assert dep._relu_consumers(model, {"body.0"}) == {}


# -------------------------------------------------------------------------------------------
# exclude_patterns, warn_unmatched_excludes, _shown
# -------------------------------------------------------------------------------------------


class TestExcludePatterns:
    def test_a_dict_is_refused(self):
        """A mapping is no sequence of patterns (the ``Mapping`` check dropped: its keys were
        taken as the patterns)."""
        with pytest.raises(MappingError, match=r"exclude = \{'fc': 1\} is invalid"):
            dep.exclude_patterns({"fc": 1})

    def test_a_blank_pattern_is_refused(self):
        """A pattern of spaces names no layer (``p.strip()`` made ``p``: warned as unmatched,
        not refused)."""
        with pytest.raises(MappingError, match="an empty pattern"):
            dep.exclude_patterns(["fc", "  "])

    @pytest.mark.parametrize("n", [8, 9])
    def test_unmatched_names_at_most_eight_candidates(self, n):
        """The names shown with an unmatched pattern: all of 8 with no ellipsis, 8 of 9 and
        ', ...' (``> 8`` made ``>= 8``: an ellipsis after all 8)."""
        names = [f"l{i}" for i in range(n)]
        with pytest.warns(UserWarning) as record:
            dep.warn_unmatched_excludes(["zz"], names, "deploy", stacklevel=2)
        shown = ", ".join(names[:8]) + (", ..." if n > 8 else "")
        assert _messages(record) == [f"deploy: exclude pattern(s) 'zz' match no mappable "
                                     f"layer (they are named like: {shown})"]

    @pytest.mark.parametrize("n", [8, 9])
    def test_shown_quotes_at_most_eight_names(self, n):
        """``_shown``: 8 names quoted (``names[:8]`` made ``[:7]``), then how many more
        (``> 8`` made ``>= 8``: ' and 0 more')."""
        names = [str(i) for i in range(n)]
        want = ", ".join(f"'{i}'" for i in range(8)) + (" and 1 more" if n > 8 else "")
        assert dep._shown(names) == want


# -------------------------------------------------------------------------------------------
# user_model, _loose_weights, ModuleWalk
# -------------------------------------------------------------------------------------------


class _Loose(nn.Module):
    """``n`` loose (2, 3) parameters and a 1-D one, no layer."""

    def __init__(self, n: int):
        super().__init__()
        self.p = nn.ParameterList(nn.Parameter(torch.zeros(2, 3)) for _ in range(n))
        self.scale = nn.Parameter(torch.ones(3))


class TestModelChecks:
    @pytest.mark.parametrize("n", [6, 7])
    def test_loose_weights_name_six_matrices_then_the_count(self, n):
        """``_loose_weights``: parameters of 2 dimensions and more are named (``>= 2`` made
        ``> 2``: none), at most 6 (``loose[:shown]`` made ``loose``: all 7), then 'and N
        more' (``> shown`` made ``>=``: 'and 0 more' after exactly 6)."""
        text = dep._loose_weights(_Loose(n))
        named = ", ".join(f"p.{i} (2x3)" for i in range(6))
        more = " and 1 more" if n == 7 else ""
        assert f"sit outside such layers: {named}{more} (hold each" in text
        assert "scale" not in text

    def test_four_meta_tensors_are_all_named(self):
        """Four parameters on the meta device: all four listed, no 'and 0 more' (``> 4``
        made ``>= 4``)."""
        with torch.device("meta"):
            model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
        with pytest.raises(MappingError) as info:
            dep.user_model(model, "deploy")
        assert str(info.value).startswith("0.weight, 0.bias, 1.weight, 1.bias: on the meta "
                                          "device")

    def test_an_empty_module_slot_is_skipped(self):
        """A child slot holding None (``add_module('gone', None)``, torchvision's optional
        parts) is no module to walk (the ``None`` check dropped: the walk failed on it)."""
        model = _TwoArgs()
        model.add_module("gone", None)
        x = torch.randn(8, 4)
        sim = cimsim.deploy(model, "ideal", (x, x), progress=False)
        assert list(sim.sim_layers) == ["lin"] and sim.model.gone is None


# -------------------------------------------------------------------------------------------
# _warn_few_vectors
# -------------------------------------------------------------------------------------------


def _layers(seen: dict[str, int]) -> dict:
    """Stand-ins of mapped layers, one matrix each, that saw ``seen`` calibration vectors."""
    return {name: SimpleNamespace(cores=[SimpleNamespace(name=name, digital=False,
                                                         n_calibration_vectors=v)])
            for name, v in seen.items()}


class TestWarnFewVectors:
    @pytest.mark.parametrize("n, seen, warned", [
        # bound = min(16, n / 4, max(seen) / 4)
        (20, {"a": 80, "b": 10}, []),  # n / 4 = 5: 10 is enough (n / 4 dropped: 16, warned)
        (100, {"a": 20, "b": 10}, []),  # max / 4 = 5 (the max dropped: 16, warned)
        (100, {"a": 100, "b": 0}, []),  # 0: never reached, said elsewhere (0 <= : warned)
        (100, {"a": 100, "b": 16}, []),  # 16 is not below 16 (``<=``: warned)
        (100, {"a": 100, "b": 15}, ["'b' (15)"]),
    ])
    def test_the_bound_is_the_least_of_the_three(self, n, seen, warned):
        """A matrix is named where 0 < its vectors < min(16, samples / 4, the most any
        matrix saw / 4)."""
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            dep._warn_few_vectors(_layers(seen), torch.zeros(n, 3), 0)
        text = _messages(record)
        assert len(text) == len(warned) <= 1
        if warned:
            assert text[0].startswith("deploy: 1 matrix was calibrated on fewer than 16 input "
                                      f"vectors, under a quarter of the {n} calibration "
                                      f"samples (inputs routed or branched away): {warned[0]};")


# -------------------------------------------------------------------------------------------
# warn_code_use, _warn_calibration_signal
# -------------------------------------------------------------------------------------------


class TestCodeUseWarnings:
    def test_one_matrix_is_singular_two_are_plural(self):
        """'1 matrix converts', '2 matrices convert' (the singular dropped: '1 matrices
        convert')."""
        for names, start in ((["a"], "deploy: 1 matrix converts every"),
                             (["a", "b"], "deploy: 2 matrices convert every")):
            with pytest.warns(UserWarning) as record:
                dep.warn_code_use({"one_code": names}, "deploy")
            assert len(record) == 1 and _messages(record)[0].startswith(start)

    def test_a_matrix_that_saw_only_zeros_is_warned_of_as_such_alone(self):
        """A matrix whose calibration inputs were all 0 reads one code, and is named in the
        zero-input warning only (``and not c.zero_inputs`` dropped: also told its ADC range
        is far too wide), in the singular ('its input scale'; 'their' for one dropped)."""
        from cimsim.mapping.layers import CodeFlags

        flags = dict.fromkeys(CodeFlags._fields, False)
        core = SimpleNamespace(name="z", zero_inputs=True, coarse_inputs=False,
                               **{**flags, "one_code": True})
        with pytest.warns(UserWarning) as record:
            dep._warn_calibration_signal({"z": SimpleNamespace(cores=[core])})
        assert len(record) == 1
        assert _messages(record)[0].startswith("deploy: every calibration input of 'z' was 0")
        assert "(step 1) and ADC ranges" in _messages(record)[0]
        assert "so its input scale" in _messages(record)[0]


# -------------------------------------------------------------------------------------------
# _sequence_axis_checked
# -------------------------------------------------------------------------------------------


def _axis_warnings(first: torch.Tensor, batch_dim: int, x: torch.Tensor) -> list[str]:
    """The warnings of a first calibration batch whose model input is ``first`` while an
    ``nn.RNN(4, 3)`` (sequence-first) inside reads ``x``."""
    rnn = nn.RNN(4, 3)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with dep._sequence_axis_checked(rnn, dep.Arguments((first,)), batch_dim, True):
            rnn(x)
    return _messages(record)


class TestSequenceAxisChecked:
    def test_a_two_d_input_is_one_sequence_only_along_the_samples(self):
        """A 2-D input to the RNN is warned of where its rows are the model's samples (6 of
        6); 5 rows of another length say nothing (``x.shape[0] == n`` dropped: warned)."""
        assert _axis_warnings(torch.zeros(6, 4), 0, torch.zeros(5, 4)) == []
        (text,) = _axis_warnings(torch.zeros(6, 4), 0, torch.zeros(6, 4))
        assert text.startswith("'' takes its 2-D input as one unbatched sequence")

    def test_the_way_out_of_a_batch_dim_two_is_batch_dim_zero(self):
        """``batch_dim = 2`` with 5 samples, which the sequence-first RNN reads as its
        steps: the warning says ``batch_dim=0`` for a batch-first input (``1 - batch_dim``
        said -1)."""
        (text,) = _axis_warnings(torch.zeros(2, 3, 5), 2, torch.zeros(5, 2, 4))
        assert "reads dimension 0 of its input as the sequence" in text
        assert "Pass batch_dim=0 if the model's input is batch-first" in text


class _Pair(nn.Module):
    """A Linear(4 -> 2) on the first tensor of a pair, or on a list of numbers."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 2)

    def forward(self, pair):
        if isinstance(pair, list):
            return self.lin(torch.tensor(pair, dtype=torch.float32))
        return self.lin(pair[0])


class TestForwardArguments:
    def test_a_tuple_argument_counts_its_first_tensors_samples(self):
        """A call whose only argument is a pair of tensors counts the first one's 3 samples
        (the tuple branch of ``_nested_samples`` dropped, or its tensor branch: 1 a
        call)."""
        x = torch.randn(8, 4)
        sim = cimsim.deploy(_Pair().eval(), "ideal", [((x, x),)], progress=False)
        sim.reset()
        sim((torch.randn(3, 4), torch.randn(3, 4)))
        assert sim.n_inferences == 3

    def test_a_call_with_nothing_countable_is_one_inference(self):
        """A list of plain numbers holds no tensor to count: the call is 1 inference (the
        default 1 made 0), and 1 call (``n_calls += 1`` dropped: 0)."""
        sim = cimsim.deploy(_Pair().eval(), "ideal", [((torch.randn(8, 4),),)], progress=False)
        sim.reset()
        sim([0.5, 1.0, -1.0, 2.0])
        assert sim.n_inferences == 1 and sim.n_calls == 1

    def test_keyword_arrays_are_taken_as_tensors(self):
        """``sim(x=array, other=array)``: NumPy keyword arguments are tensors to the model, as
        positional ones are (the keywords' conversion dropped: the Linear got an ndarray)."""
        sim = _two_args(torch.randn(8, 4), torch.randn(8, 4))
        x = np.ones((2, 4), dtype=np.float32)
        torch.testing.assert_close(sim(x=x, other=x), sim(torch.from_numpy(x), x),
                                   rtol=0, atol=0)

    def test_one_input_requiring_grad_is_warned_of(self):
        """Any tensor argument requiring grad is warned of (``any`` made ``all``: a mask
        beside it, without grad, silenced the warning)."""
        sim = _two_args(torch.randn(8, 4), torch.randn(8, 4))
        with pytest.warns(UserWarning, match="an input requires grad"):
            sim(torch.randn(2, 4, requires_grad=True), torch.zeros(2, 4))

    def test_a_copy_made_within_modes_set_keeps_its_modes_in_eval(self):
        """A copy (pickle, deepcopy) made inside ``modes_set`` is not inside the caller's
        block: its forward sets a module put in training mode back to eval, with a warning
        (``_modes_set`` carried into the copy: it stayed in training mode for good)."""
        sim = _two_args(torch.randn(8, 4), torch.randn(8, 4))
        with sim.modes_set():
            twin = copy.deepcopy(sim)
        twin.model.lin.train()
        with pytest.warns(UserWarning, match="were in training mode"):
            twin(torch.randn(2, 4), torch.zeros(2, 4))
        assert not twin.model.lin.training


class TestSmallHelpers:
    def test_seeded_draws_start_from_the_seed_and_leave_the_callers_stream(self):
        """``seeded_draws(module, 5)``: torch's CPU stream starts from 5 within the block
        (``manual_seed(0)`` whatever the seed: a deploy's draws ignored its ``seed``), and is
        as it was after it."""
        module = nn.Linear(1, 1)
        before = torch.get_rng_state()
        with dep.seeded_draws(module, 5):
            got = torch.rand(3)
        assert torch.equal(torch.get_rng_state(), before)
        assert torch.equal(got, torch.rand(3, generator=torch.Generator().manual_seed(5)))

    def test_argument_alias_is_only_for_positional_or_keyword_parameters(self):
        """A ``*args`` forward's position 0 has no name (the kind check dropped: 'xs')."""
        class VarArgs(nn.Module):
            def forward(self, *xs, scale=1.0):
                return xs[0]

        class Plain(nn.Module):
            def forward(self, x, y):
                return x

        assert dep._argument_alias(VarArgs(), 0) is None
        assert dep._argument_alias(VarArgs(), "scale") is None
        assert dep._argument_alias(Plain(), 1) == "y" and dep._argument_alias(Plain(), "y") == 1
        assert dep._argument_alias(Plain(), 2) is None



# -------------------------------------------------------------------------------------------
# _check_capacity, ModuleWalk.replace
# -------------------------------------------------------------------------------------------


def _small_chip(**array) -> cimsim.ChipConfig:
    ideal = cimsim.load_chip("ideal")
    return ideal.replace(array=ideal.array.replace(**array))


class TestCheckCapacity:
    def test_the_refusal_counts_tiles_arrays_and_sets_as_the_chip_has_them(self):
        """1 tile x 1 array, one weight set: singular, and no 'x 1 weight sets stored'
        (``sets > 1`` made ``>= 1``); 2 arrays a tile: plural (the plural dropped)."""
        with pytest.raises(cimsim.CapacityError) as info:
            dep._check_capacity(3, _small_chip(n_tiles=1, arrays_per_tile=1), ["a"])
        assert "but the chip has 1 (1 tile x 1 array); enlarge" in str(info.value)
        with pytest.raises(cimsim.CapacityError) as info:
            dep._check_capacity(3, _small_chip(n_tiles=1, arrays_per_tile=2), ["a"])
        assert "but the chip has 2 (1 tile x 2 arrays); enlarge" in str(info.value)

    def test_single_groups_of_a_grouped_conv_point_to_group_packing(self):
        """Matrices named ``NAME[gG]`` are counted and the way out named (the count dropped:
        no word of ``array.group_packing``)."""
        with pytest.raises(cimsim.CapacityError,
                           match=r"; 2 matrices are single groups of grouped or depthwise "
                                 r"convolutions.*group_packing = 'diagonal'"):
            dep._check_capacity(3, _small_chip(n_tiles=1, arrays_per_tile=1),
                                ["c[g0]", "c[g1]", "fc"])


class TestModuleWalk:
    def test_a_compiled_layer_at_two_places_is_one_simulated_layer(self):
        """A ``torch.compile`` d Linear placed twice: both places hold the simulated layer
        (the wrapper's entry not updated: the second place got the float original back)."""
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lin = torch.compile(nn.Linear(4, 4))
            model = nn.Sequential(lin, nn.ReLU(), lin)
            sim = cimsim.deploy(model, "ideal", torch.randn(8, 4), progress=False)
        assert list(sim.sim_layers) == ["0"]
        assert sim.model[2] is sim.model[0] is sim.sim_layers["0"]


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.att = nn.MultiheadAttention(8, 2)

    def forward(self, x):
        return self.att(x, x, x, need_weights=False)[0]


class TestLayerMapping:
    def test_an_attention_with_every_projection_excluded_is_nothing_to_map(self):
        """Every projection of the only attention kept digital: nothing runs on the arrays,
        refused as a model with no layer to map, listing what was kept (the test of 'no
        simulated layer' alone: deployed at 0 arrays)."""
        with pytest.raises(MappingError) as info:
            cimsim.deploy(_Attention().eval(), "ideal", torch.randn(5, 2, 8),
                          exclude=["att.in_proj", "att.out_proj"], batch_dim=1,
                          progress=False)
        kept = "; ".join(f"att.{t} (projection: excluded by the user)"
                         for t in ("k_proj", "out_proj", "q_proj", "v_proj"))
        assert str(info.value).startswith(
            "no layer can be mapped onto the arrays (no Linear, Conv, ConvTranspose, "
            "RNN/LSTM/GRU (layer or cell) or MultiheadAttention outside the excluded ones); "
            f"kept digital: {kept}; att (attention products: ")


class TestRefusals:
    def test_unmatched_with_no_candidates_says_none(self):
        """No mappable layer to name: '(they are named like: none)' (the ``or 'none'``
        dropped: an empty list)."""
        with pytest.warns(UserWarning, match=r"match no mappable layer \(they are named like: "
                                             r"none\)$"):
            dep.warn_unmatched_excludes(["zz"], [], "deploy", stacklevel=2)

    def test_trace_refuses_a_progress_that_is_no_flag_and_a_bool_count(self):
        """``trace(progress='yes')`` is a ConfigError (the flag's check dropped: taken as
        true); ``max_code_vectors=True`` a MappingError (``isinstance(value, bool)`` dropped:
        read as 1)."""
        from cimsim.errors import ConfigError

        sim = _two_args(torch.randn(8, 4), torch.randn(8, 4))
        x = (torch.randn(2, 4), torch.randn(2, 4))
        with pytest.raises(ConfigError, match="progress"):
            sim.trace(x, progress="yes")
        with pytest.raises(MappingError, match="max_code_vectors = True is invalid"):
            sim.trace(x, max_code_vectors=True)

    def test_a_tuple_of_arrays_is_the_models_arguments(self):
        """``(array, array)`` is one batch of two tensor arguments (the arrays' conversion
        dropped: read as a DataLoader, each array a batch of its own)."""
        (args,) = dep._batches((np.zeros((3, 2)), np.ones((3, 2))), 256)
        assert len(args) == 2 and all(isinstance(a, torch.Tensor) for a in args)
        assert torch.equal(args[1], torch.ones(3, 2, dtype=torch.float64))

    def test_a_bool_batch_size_is_refused(self):
        """``_batches``: ``batch_size=True`` is no integer (``isinstance(value, bool)``
        dropped: one sample a batch)."""
        with pytest.raises(MappingError, match="batch_size = True is invalid"):
            list(dep._batches(torch.zeros(3, 2), True))


class TestReplayable:
    def test_a_generator_of_batches_is_read_as_batches(self):
        """A generator of two batches is kept as an iterable of batches (read into a list,
        it was the model's two positional arguments: refused)."""
        batches = (torch.randn(4, 4) for _ in range(2))
        sim = cimsim.deploy(nn.Sequential(nn.Linear(4, 2)), "ideal", batches, progress=False)
        assert sim.sim_layers["0"].cores[0].n_calibration_vectors == 8
        again = dep.replayable(iter([1, 2]))
        assert list(again) == [1, 2] == list(again)


class TestSimModelTime:
    def test_a_deployed_model_runs_at_drift_t0_until_told_otherwise(self):
        """``SimModel.t_s`` starts at ``device.drift_t0_s`` (1 s on ``ideal``), the time the
        report and the work give (0 in its place: a time before programming's reference)."""
        sim = _two_args(torch.randn(8, 4), torch.randn(8, 4))
        assert sim.chip.device.drift_t0_s == 1.0
        assert sim.t_s == 1.0 and sim.work().t_s == 1.0


class TestCodeUseOfARow:
    def test_code_use_is_averaged_over_the_adc_settings(self, monkeypatch):
        """``adc_code_use_pct``: codes used / codes summed over a part's settings, divided by
        its settings: a part of 3 settings using 6 of 4 codes each in all is 50 % (counted as
        one setting: 150 %)."""
        monkeypatch.setattr(dep, "adc_codes_used",
                            lambda part, x: SimpleNamespace(used=6, codes=4, settings=3))
        sums = dict.fromkeys(("ref2", "err2", "dot", "sim2", "acc_ref2", "acc_err2",
                              "acc_dot", "acc_sim2"), 1.0)
        tr = SimpleNamespace(sums=sums, n_vectors=1, paired_batches=1,
                             code_inputs=[np.zeros((1, 2))])
        core = SimpleNamespace(digital=False, parts=[(0, 2, None)])
        row = dep._fidelity_row("l", [(core, tr, 0.0, 1.0, 0.0, 1.0)])
        assert row["adc_code_use_pct"] == 50.0



class TestDeployViews:
    def test_a_prepared_models_fused_layer_knows_its_clamp(self):
        """``deploy_views`` (a twin's ``deploy()``) tells a layer whose view's ADC is fused
        with the ReLU after it its clamp (``_fuse_relus`` dropped there: ``activation_clamp``
        None, the trace's float reference left unclipped)."""
        from cimsim.train import prepare

        ideal = cimsim.load_chip("ideal")
        chip = ideal.replace(
            dac=ideal.dac.replace(bits=None), device=ideal.device.replace(bits_per_cell=7),
            array=ideal.array.replace(n_rows=64, n_cols=64),
            adc=ideal.adc.replace(kind="sar", bits=8, range_policy="calibrated",
                                  level_fit="uniform", placement="layer_output",
                                  fuse_activation=True))
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
        sim = prepare(model, chip, torch.randn(32, 6)).deploy()
        assert sim.fused_activations == ["0"]
        assert sim.sim_layers["0"].cores[0].activation_clamp == float("inf")
        assert sim.sim_layers["2"].cores[0].activation_clamp is None

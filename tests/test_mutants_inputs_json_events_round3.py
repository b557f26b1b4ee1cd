"""Tests written for the survivors of a third, short hand-made mutation round over the input
helpers (cimsim/_inputs.py: ``sample_dim``, ``counting_key``, ``input_count``, ``input_rows``,
``call_on``), the strict-JSON helpers (cimsim/_json.py) and the event registry
(cimsim/events.py), aimed at what the two earlier rounds left unpinned: NumPy entries,
non-dict mappings, sequence-first dicts, the messages' words and the counts' types. Tiny
tensors only; each docstring names the line and the change it kills. Four real bugs the round
found are fixed and pinned here (a NamedTuple of states not cut, a scalar first entry, the 0-d
message, ``Events.scaled`` in float32)."""

from __future__ import annotations

import types
from collections import UserDict
from typing import NamedTuple

import numpy as np
import pytest
import torch

from cimsim._inputs import call_on, counting_key, input_count, input_rows, sample_dim
from cimsim._json import numeric_name
from cimsim.events import REGISTRY, Action, Component, EventKey, Events, event_key

C, A = Component, Action


# ---------------------------------------------------------------------------------------------
# cimsim._inputs
# ---------------------------------------------------------------------------------------------


class TestSampleDim:
    def test_a_one_dimensional_entry_beside_a_sequence_first_input_is_passed_whole(self):
        """_inputs.py ``sample_dim``: ``len(shape) > k`` as ``>=`` read ``shape[1]`` of a 1-D
        entry (order (0, 1, 1) for batch_dim 1): an IndexError instead of None."""
        assert sample_dim(torch.zeros(5), 2, 4, batch_dim=1) is None
        assert sample_dim(torch.zeros(4), 2, 4, batch_dim=1) == 0

    def test_a_recurrent_state_beside_a_four_dimensional_input_is_cut_along_1(self):
        """_inputs.py ``sample_dim``: the fewer-dimensions order ``(0, batch_dim, 1)`` without
        its last 1 passed a ``(layers, B, H)`` state beside ``(B, C, H, W)`` inputs whole."""
        assert sample_dim(torch.zeros(2, 4, 3), 4, 4) == 1

    def test_a_numpy_entry_holds_samples_like_a_tensor(self):
        """_inputs.py ``sample_dim``: ``torch.Tensor | np.ndarray`` as ``torch.Tensor`` passed
        a NumPy entry of a deployed model's dict whole."""
        assert sample_dim(np.zeros((4, 3)), 2, 4) == 0
        assert sample_dim(np.zeros((2, 4, 3)), 2, 4) == 1


class TestCountingKey:
    def test_a_numpy_array_counts(self):
        """_inputs.py ``counting_key``: ``torch.Tensor | np.ndarray`` as ``torch.Tensor`` found
        no tensor in a dict of NumPy arrays (a deployed model converts them)."""
        assert counting_key({"note": 1, "a": np.zeros((3, 2))}) == "a"
        assert input_count({"note": 1, "a": np.zeros((3, 2))}) == 3

    def test_an_entry_without_batch_dim_is_skipped(self):
        """_inputs.py ``counting_key``: ``ndim > batch_dim`` as ``>=`` read ``shape[1]`` of a
        1-D entry: an IndexError instead of the next entry."""
        x = {"a": torch.zeros(3), "b": torch.zeros(3, 5)}
        assert counting_key(x, 1) == "b"
        assert input_count(x, 1) == 5

    def test_the_rows_are_read_along_batch_dim(self):
        """_inputs.py ``counting_key``: ``shape[batch_dim]`` as ``shape[0]`` took a
        sequence-first entry's sequence length as its batch."""
        x = {"a": torch.zeros(5, 1), "b": torch.zeros(5, 3)}
        assert counting_key(x, batch_dim=1) == "b"
        assert input_count(x, batch_dim=1) == 3

    def test_all_single_rows_the_first_counts(self):
        """_inputs.py ``counting_key``: the fallback ``keys[0]`` as ``keys[-1]``."""
        assert counting_key({"n": "x", "a": torch.zeros(1, 2), "b": torch.zeros(1, 3)}) == "a"
        assert counting_key({"n": "x"}) is None


class TestInputCount:
    def test_any_mapping_is_a_dict_of_keyword_inputs(self):
        """_inputs.py ``input_count``/``input_rows``/``call_on``: ``isinstance(x, Mapping)`` as
        ``dict`` refused a HuggingFace ``BatchEncoding`` (a ``UserDict``) or read it as one
        tensor."""
        x = UserDict({"input_ids": torch.arange(6).reshape(3, 2), "p": torch.zeros(1, 2)})
        assert input_count(x) == 3
        part = input_rows(x, 1, 3)
        assert torch.equal(part["input_ids"], torch.tensor([[2, 3], [4, 5]]))
        assert part["p"].shape == (1, 2)
        assert call_on(lambda input_ids, p: input_ids.sum() + p.sum(), x) == 15
        assert call_on(lambda t: t.shape, torch.zeros(2, 3)) == (2, 3)

    def test_a_tuple_of_samples_is_named_with_its_length(self):
        """_inputs.py ``input_count``: ``isinstance(x, (list, tuple))`` as ``list``, or the
        ``of {len(x)}`` dropped, named a tuple of samples as only ``tuple``."""
        with pytest.raises(ValueError, match=r"^x is a tuple of 3; allowed: a tensor"):
            input_count((torch.zeros(2),) * 3)
        with pytest.raises(ValueError, match=r"^x is a list of 2; allowed: a tensor"):
            input_count([torch.zeros(2)] * 2)
        with pytest.raises(ValueError, match=r"^x is str; allowed: a tensor"):
            input_count("x")

    def test_the_allowed_batch_dims_end_at_the_last_dimension(self):
        """_inputs.py ``input_count``: ``0..{len(x.shape) - 1}`` as ``0..{len(x.shape)}``
        offered the dimension just refused."""
        with pytest.raises(ValueError, match=r"^batch_dim = 2 is beyond the inputs' 2 "
                           r"dimensions \(shape \(3, 4\)\); allowed: 0\.\.1$"):
            input_count(torch.zeros(3, 4), batch_dim=2)

    def test_a_dict_s_count_is_read_along_batch_dim(self):
        """_inputs.py ``input_count``: a dict's ``shape[batch_dim]`` as ``shape[0]``."""
        assert input_count({"x": torch.zeros(4, 2)}, batch_dim=1) == 2
        assert input_count({"x": np.zeros((4, 2))}) == 4
        assert type(input_count({"x": np.zeros((4, 2))})) is int


class TestInputRows:
    def test_a_tensor_is_cut_along_batch_dim_and_to_its_end_without_stop(self):
        """_inputs.py ``input_rows``: a tensor cut along 0 instead of ``batch_dim``; ``stop``
        defaulting to 0 instead of None (the calibration split's held-out rest empty)."""
        x = torch.arange(24).reshape(4, 6)
        assert torch.equal(input_rows(x, 1, 3, batch_dim=1), x[:, 1:3])
        assert torch.equal(input_rows(x, 3), x[3:])
        assert input_rows({"a": x}, 1)["a"].shape == (3, 6)

    def test_sequence_first_key_count_and_entries_use_batch_dim(self):
        """_inputs.py ``input_rows``: ``counting_key(x)`` or ``input_count(x)`` without
        ``batch_dim`` took ``a`` (3 along dimension 0) as the count: ``a`` (1 along batch_dim)
        was cut instead of passed whole, and the ``(B, S)`` mask ``m`` passed whole instead of
        cut along its rows."""
        x = {"a": torch.zeros(3, 1, 2), "b": torch.zeros(6, 4, 2), "m": torch.zeros(4, 5)}
        got = input_rows(x, 1, 3, batch_dim=1)
        assert got["a"].shape == (3, 1, 2)
        assert got["b"].shape == (6, 2, 2)
        assert got["m"].shape == (2, 5)

    def test_a_tuple_of_states_stays_a_tuple(self):
        """_inputs.py ``input_rows``: ``type(v)(...)`` as ``list(...)`` gave an LSTM's
        ``(h0, c0)`` back as a list (``nn.LSTM`` takes only a tuple)."""
        x = {"x": torch.zeros(3, 5, 2), "hc": (torch.zeros(1, 3, 4), torch.ones(1, 3, 4))}
        got = input_rows(x, 0, 2)
        assert type(got["hc"]) is tuple
        assert [tuple(s.shape) for s in got["hc"]] == [(1, 2, 4), (1, 2, 4)]


class _State(NamedTuple):
    h: torch.Tensor
    c: torch.Tensor


class TestInputRowsNamedTuple:
    def test_a_named_tuple_entry_keeps_its_type(self):
        """_inputs.py ``input_rows``: ``type(v) in (tuple, list)`` as ``isinstance(v, (tuple,
        list))`` rebuilt a NamedTuple entry as ``_State(generator)``: a TypeError."""
        x = {"x": torch.zeros(3, 5, 2), "state": _State(torch.zeros(1, 3, 4), torch.ones(1, 3, 4))}
        assert type(input_rows(x, 0, 2)["state"]) is _State


class TestNamedTupleStateIsCut:
    def test_a_named_tuple_of_states_is_cut(self):
        """_inputs.py ``input_rows``: only ``type(v) in (tuple, list)`` was walked, so a
        NamedTuple ``_State(h, c)`` of ``(1, 3, 4)`` states beside 3 samples came back whole
        for rows 0:2 (its states still 3 samples), while a plain tuple's were cut to 2. A
        real bug found by this round, fixed."""
        x = {"x": torch.zeros(3, 5, 2), "state": _State(torch.zeros(1, 3, 4), torch.ones(1, 3, 4))}
        got = input_rows(x, 0, 2)["state"]
        assert got.h.shape == (1, 2, 4) and got.c.shape == (1, 2, 4)


class TestZeroDimEntries:
    def test_a_scalar_first_beside_one_sample_counts_one(self):
        """_inputs.py ``counting_key`` line 48 / ``input_count`` line 76: a scalar entry
        first (``{"scale": tensor(0.5), "x": ones(1, 3)}``) was the fallback key, so the
        one-sample dict was refused as holding no tensor, though the same dict with
        ``ones(2, 3)`` counts 2 (the scalar passed whole). The fallback is now the first
        tensor that has a dimension ``batch_dim`` (a real bug found by this round, fixed)."""
        assert input_count({"scale": torch.tensor(0.5), "x": torch.ones(2, 3)}) == 2
        assert input_count({"scale": torch.tensor(0.5), "x": torch.ones(1, 3)}) == 1

    def test_a_zero_dim_tensor_is_not_offered_an_empty_range(self):
        """_inputs.py ``input_count``: a 0-d tensor (``torch.tensor(3.0)``) was refused as
        ``batch_dim = 0 is beyond the inputs' 0 dimensions (shape ()); allowed: 0..-1``: an
        empty range offered as the allowed values. Now it names what is allowed (fixed)."""
        with pytest.raises(ValueError, match=r"^x is a Tensor of no dimension \(shape \(\)\); "
                                             r"allowed: inputs with a dimension") as info:
            input_count(torch.tensor(3.0))
        assert "0..-1" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# cimsim._json
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["adc_pj_per_conversion", "delay_ns_total", "die_mm2_total",
                                 "cell_um2_each"])
def test_unit_suffixes_count_anywhere_in_the_name(key):
    """_json.py ``_NUMERIC``: ``_pj``, ``_ns``, ``_mm2``, ``_um2`` anchored at the end (as
    ``_pct$``, ``_db$`` and ``_s$`` are) read these figures back as text."""
    assert numeric_name(key)


# ---------------------------------------------------------------------------------------------
# cimsim.events
# ---------------------------------------------------------------------------------------------


class TestEventKeyDefaults:
    def test_bits_default_to_zero(self):
        """events.py ``EventKey.bits`` / ``event_key``'s ``bits`` defaulting to 1 instead of 0
        (a count with no resolution)."""
        assert EventKey(C.LAYER, A.MAC).bits == 0
        assert event_key("layer", "mac") == EventKey(C.LAYER, A.MAC, 0)
        assert Events({("layer", "mac"): 2.0})[EventKey(C.LAYER, A.MAC, 0)] == 2.0

    def test_names_print_as_their_values(self):
        """events.py ``_Name.__str__``: ``self.value`` as ``self.name`` printed ``ADC`` in
        report rows and CSV."""
        assert str(C.ADC) == "adc" and f"{A.V2G_LSB}" == "v2g_lsb"

    def test_a_tensor_s_bits_are_stored_as_int(self):
        """events.py ``event_key``: ``int(bits)`` as ``round(bits)`` kept a 0-d tensor's bits
        as a tensor."""
        assert type(event_key("adc", "convert", torch.tensor(6)).bits) is int
        assert type(event_key("adc", "convert", np.float32(6.0)).bits) is int


class TestEventKeyRefusals:
    def test_an_unknown_name_is_refused_as_unregistered_listing_the_pairs(self):
        """events.py ``event_key``: the enum's ``except ValueError`` as ``except TypeError``
        (Python's "'nope' is not a valid Component" escaped), ``key is None or`` dropped (an
        AttributeError), the allowed pairs named by enum names (``ADC.CONVERT``)."""
        with pytest.raises(ValueError, match=r"^event \('nope', 'convert'\) is not registered; "
                           r"allowed: layer\.mac, array\.activation, .*adc\.convert"):
            event_key("nope", "convert", 6)
        with pytest.raises(ValueError, match=r"is not registered; allowed: .*dac\.pulse"):
            Events({("adc", "nope"): 1.0})

    def test_a_list_key_is_refused(self):
        """events.py ``_key``: ``not isinstance(key, tuple) or`` dropped took a list
        ``["adc", "convert", 6]`` as a key."""
        with pytest.raises(ValueError, match=r"event key \['adc', 'convert', 6\] is invalid"):
            Events([(["adc", "convert", 6], 1.0)])
        ev = Events({("adc", "convert", 6): 1.0})
        with pytest.raises(ValueError, match="event key"):
            ev[["adc", "convert", 6]]  # noqa: B018
        assert ["adc", "convert", 6] not in ev and ev.get(["adc", "convert", 6]) == 0.0

    def test_bool_bits_in_an_event_key_are_stored_as_int(self):
        """events.py ``_key``: ``type(key.bits) is int`` as ``isinstance(key.bits, int)`` let
        ``EventKey(ADC, CONVERT, True)`` through the fast path unnormalised: ``[True]`` in
        the repr."""
        ev = Events({EventKey(C.ADC, A.CONVERT, True): 1.0})
        assert type(next(iter(ev)).bits) is int
        assert repr(ev) == "Events(adc.convert[1]=1)"


class TestEventsLookup:
    def test_a_lookup_normalises_its_key(self):
        """events.py ``Events.__getitem__``: ``self._counts[_key(key)]`` as
        ``self._counts[key]`` found no ``(component, action)`` pair without its bits 0, and
        met an unregistered pair with a bare KeyError instead of the registry's ValueError."""
        ev = Events({("layer", "mac"): 2.0, ("adc", "convert", 6): 1.0})
        assert ev[("layer", "mac")] == 2.0
        assert ev[("adc", "convert", 6.0)] == 1.0
        with pytest.raises(ValueError, match=r"\('adc', 'write'\) is not registered"):
            ev[("adc", "write", 6)]  # noqa: B018


class TestRegistry:
    def test_every_component_and_action_has_a_registered_pair(self):
        """events.py ``REGISTRY``: a pair dropped (``digital.slice_multiply``,
        ``block_fp.normalize``) made the engine's events of it refused where made."""
        assert len(REGISTRY) == 31
        assert {a for _, a in REGISTRY} == set(Action)
        assert {c for c, _ in REGISTRY} == set(Component)
        assert (C.DIGITAL, A.SLICE_MULTIPLY) in REGISTRY
        assert (C.BLOCK_FP, A.NORMALIZE) in REGISTRY


class TestEventsCounts:
    def test_counts_are_plain_floats(self):
        """events.py ``Events.__init__``, ``__add__`` and ``scaled``: ``float(...)`` dropped
        kept NumPy scalars (an ``np.float32`` count, rounded to 24 bits on the next add)."""
        k = event_key("adc", "convert", 6)
        assert type(Events({k: np.float32(0.5)})[k]) is float
        assert type((Events() + {k: np.float32(0.5)})[k]) is float
        assert type(Events({k: 2.0}).scaled(np.float64(0.5))[k]) is float

    def test_events_and_other_mappings_are_taken_whole(self):
        """events.py ``Events.__init__``: ``isinstance(counts, Mapping)`` as ``dict`` unpacked
        an ``Events``' keys as pairs; ``__add__``'s ``Mapping`` as ``dict | Events`` refused a
        read-only mapping; ``__radd__`` returning NotImplemented refused ``dict + Events``."""
        k = event_key("adc", "convert", 6)
        ev = Events({k: 2.0})
        assert Events(ev) == ev
        assert Events(types.MappingProxyType({k: 1.0}))[k] == 1.0
        assert (ev + types.MappingProxyType({k: 1.0}))[k] == 3.0
        assert ({("adc", "convert", 6): 1.0} + ev)[k] == 3.0

    def test_only_an_integer_zero_is_sum_s_start(self):
        """events.py ``Events.__radd__``: ``isinstance(other, int) and`` dropped took
        ``0.0 + events`` as ``events`` (only 0, ``sum()``'s start, is taken)."""
        ev = Events({("adc", "convert", 6): 1.0})
        assert 0 + ev is ev
        with pytest.raises(TypeError, match="unsupported operand"):
            0.0 + ev  # noqa: B018

    def test_records_and_size(self):
        """events.py ``to_records``: an extra field in a record; ``__len__`` of an empty
        ``Events`` not 0."""
        ev = Events({("dac", "pulse", 1): 2.0})
        assert ev.to_records() == [{"component": "dac", "action": "pulse", "bits": 1,
                                    "count": 2.0}]
        assert len(Events()) == 0 and len(ev) == 1


class TestScaledPrecision:
    def test_a_float32_factor_keeps_the_counts_exact(self):
        """events.py ``Events.scaled``: ``float(v * factor)`` with ``factor =
        np.float32(1.0)`` computed ``v * factor`` in float32 (NumPy 2's weak Python float), so
        a count of 2**24 + 1 came back 2**24: a silently wrong count. The factor is taken as
        a Python float now (a real bug found by this round, fixed)."""
        k = event_key("adc", "convert", 6)
        assert Events({k: 2.0**24 + 1}).scaled(np.float32(1.0))[k] == 2.0**24 + 1

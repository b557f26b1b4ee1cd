"""Tests written for the survivors of a third hand-made mutation round over the recurrent
layers and the N-d / transposed convolutions on the arrays (cimsim/mapping/recurrent.py,
cimsim/mapping/convnd.py): each pins a behaviour that a small wrong change left every earlier
test passing (tests/mapping/test_recurrent.py, test_convnd.py, test_mutants_mapping_ops.py,
test_mutants_recurrent_attention_round2.py, test_mutants_functional_round2.py among them).
Tiny layers in float64; most run un-deployed (observe mode: every product the layer's own
float matmul, so torch's module on the same inputs is the known answer to 1e-12), a few
deployed on the lossless ``ideal`` chip to read what the arrays counted."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import cimsim
from cimsim.errors import MappingError
from cimsim.events import Action, Component, event_key
from cimsim.mapping.convnd import SimConv3d, SimConvTranspose
from cimsim.mapping.recurrent import SimRNN, SimRNNCell, recurrent_matrices

from .conftest import lossless_chip

pytestmark = pytest.mark.usefixtures("own_torch_generator")


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# recurrent.py


class TestRecurrentMatrices:
    def test_a_mode_torch_has_no_equations_for_is_refused(self):
        """``recurrent_matrices``: the ``src.mode not in _GATES`` refusal removed (a layer whose
        mode was set to one torch's layers do not run was mapped, and its forward fell through
        ``cell_update`` to the relu RNN's equations)."""
        gru = nn.GRU(3, 4)
        gru.mode = "RNN_GELU"
        with pytest.raises(MappingError, match=r"^recurrent mode 'RNN_GELU' is not supported$"):
            recurrent_matrices(gru)
        with pytest.raises(MappingError, match="is not supported"):
            SimRNN(gru, "r", lossless_chip(), 0)


class TestPackedForward:
    def test_an_unsorted_packed_sequence_keeps_both_of_its_permutations(self):
        """``_packed_forward``: the returned PackedSequence given ``unsorted_indices`` for its
        ``sorted_indices`` and back. Lengths 1, 3, 2 sort as samples (1, 2, 0), whose inverse is
        (2, 0, 1): not its own inverse (the earlier tests' lengths 3, 5, 1 sort as (1, 0, 2),
        which is), so unpacking put the samples in the wrong rows."""
        torch.manual_seed(0)
        gru = nn.GRU(3, 4, batch_first=True).double()
        sim = SimRNN(gru, "r", lossless_chip(), 0)
        x = torch.randn(3, 3, 3, dtype=torch.float64)
        packed = pack_padded_sequence(x, torch.tensor([1, 3, 2]), batch_first=True,
                                      enforce_sorted=False)
        assert packed.sorted_indices.tolist() == [1, 2, 0]
        assert packed.unsorted_indices.tolist() == [2, 0, 1]
        out, h = sim(packed)
        with torch.no_grad():
            want, h_w = gru(packed)
        assert isinstance(out, PackedSequence)
        assert torch.equal(out.sorted_indices, want.sorted_indices)
        assert torch.equal(out.unsorted_indices, want.unsorted_indices)
        got_pad, got_len = pad_packed_sequence(out, batch_first=True)
        want_pad, want_len = pad_packed_sequence(want, batch_first=True)
        assert torch.equal(got_len, want_len)
        _close(got_pad, want_pad)
        _close(h, h_w)

    def test_the_projection_of_a_packed_sequence_computes_only_the_steps_it_has(self):
        """``_padded_forward``: the projection ``W_hr`` run on every row (``_rows(..., at)``
        -> ``_rows(..., None)``): the same values (the padding's rows are dropped after), but
        the arrays counted the padding's steps. Lengths 3, 1 of a 3-step batch: 4 vectors per
        matrix, W_hr's included, not 6."""
        torch.manual_seed(0)
        lstm = nn.LSTM(3, 4, proj_size=2, batch_first=True).double().eval()
        x = torch.randn(2, 3, 3, dtype=torch.float64)
        sim = cimsim.deploy(nn.Sequential(lstm), lossless_chip(), x,
                            progress=False).sim_layers["0"]
        for core in sim.cores:
            core.n_vectors = 0
        sim(pack_padded_sequence(x, torch.tensor([3, 1]), batch_first=True))
        assert [c.name for c in sim.cores] == ["0.weight_ih_l0", "0.weight_hh_l0",
                                              "0.weight_hr_l0"]
        assert [c.n_vectors for c in sim.cores] == [4, 4, 4]


class TestInitialState:
    def test_an_lstm_state_given_as_a_list_is_taken_as_the_pair(self):
        """``_padded_forward``: ``isinstance(hx, (tuple, list))`` -> ``isinstance(hx, tuple)``
        (a ``[h_0, c_0]`` list, which torch's LSTM takes, refused as no pair)."""
        torch.manual_seed(0)
        lstm = nn.LSTM(3, 4).double()
        sim = SimRNN(lstm, "r", lossless_chip(), 0)
        x = torch.randn(4, 2, 3, dtype=torch.float64)
        h0, c0 = (torch.randn(1, 2, 4, dtype=torch.float64) for _ in range(2))
        got, (h, c) = sim(x, [h0, c0])
        with torch.no_grad():
            want, (h_w, c_w) = lstm(x, [h0, c0])
        for a, b in ((got, want), (h, h_w), (c, c_w)):
            _close(a, b)


# ---------------------------------------------------------------------------------------------
# convnd.py


class TestWeightSizedGeometry:
    def test_a_transposed_conv_takes_its_output_channels_from_its_weight(self):
        """``TransposeGeometry``: the channels from ``src.in_channels / out_channels`` rather
        than the weight's shape (a pruner's smaller weight, 3 output channels where the layer
        was built with 4: the per-pixel outputs reshaped to 4 channels failed)."""
        torch.manual_seed(0)
        conv = nn.ConvTranspose1d(2, 4, 3, stride=2, bias=False).double()
        conv.weight = nn.Parameter(torch.randn(2, 3, 3, dtype=torch.float64))
        assert conv.out_channels == 4
        sim = SimConvTranspose(conv, "t", lossless_chip(), 0)
        x = torch.randn(1, 2, 4, dtype=torch.float64)
        with torch.no_grad():
            want = conv(x)
        assert want.shape == (1, 3, 9)
        _close(sim(x), want)

    def test_a_conv3d_takes_its_input_channels_from_its_weight(self):
        """``ConvGeometry``: the channels from ``src.in_channels / out_channels`` rather than
        the weight's shape (a weight of 3 input channels where the layer was built with 4: the
        3-channel input torch's forward takes refused as of the wrong channel count)."""
        torch.manual_seed(0)
        conv = nn.Conv3d(4, 2, 2, bias=False).double()
        conv.weight = nn.Parameter(torch.randn(2, 3, 2, 2, 2, dtype=torch.float64))
        sim = SimConv3d(conv, "c", lossless_chip(), 0)
        x = torch.randn(1, 3, 3, 3, 3, dtype=torch.float64)
        with torch.no_grad():
            want = conv(x)
        _close(sim(x), want)


class TestCountOverlap:
    def test_the_col2im_adds_are_booked_on_the_first_matrix_at_the_accumulators_width(self):
        """``SimConvTranspose._count_overlap``: the adds booked on the last group's matrix
        (``cores[-1]``) or at another width (``accumulator_bits + 1``). L_in 4, k 3, stride 1:
        12 contributions on 6 outputs, 6 adds per (sample, channel): 2 channels -> 12."""
        chip = lossless_chip()
        sim = SimConvTranspose(nn.ConvTranspose1d(2, 2, 3, groups=2), "t", chip, 0)
        assert len(sim.cores) == 2
        sim._count_overlap((1, 4), (6,))
        key = event_key(Component.ACCUMULATOR, Action.ADD, chip.accumulator_bits)
        assert dict(sim.cores[0].events) == {key: 12.0}
        assert not dict(sim.cores[1].events)


class TestPackedGroups:
    @pytest.mark.parametrize("make, shape", [
        (lambda: nn.Conv3d(4, 4, 2, groups=4), (1, 4, 3, 3, 3)),
        (lambda: nn.ConvTranspose2d(4, 4, 2, stride=2, groups=4), (1, 4, 3, 3)),
    ], ids=["conv3d", "conv_transpose2d"])
    def test_a_core_holding_a_pack_of_groups_reads_the_packs_input_columns(self, make, shape):
        """``SimConv3d.forward`` / ``SimConvTranspose.forward``: the input columns a core
        reads cut per group (``// groups``) rather than per core (``// len(self.cores)``):
        with ``group_packing = 'diagonal'`` the 4 groups are block-diagonal packs, fewer cores
        than groups, each of which then read one group's columns."""
        torch.manual_seed(0)
        conv = make().double()
        sim = (SimConv3d if isinstance(conv, nn.Conv3d) else SimConvTranspose)(
            conv, "c", lossless_chip(n_rows=64, n_cols=64, group_packing="diagonal"), 0)
        assert len(sim.cores) < conv.groups  # packs of 4 (Conv3d) and 2 groups a core
        x = torch.randn(*shape, dtype=torch.float64)
        with torch.no_grad():
            want = conv(x)
        _close(sim(x), want)

    def test_the_calibration_pass_books_no_col2im_adds(self):
        """``SimConvTranspose.forward``: the ``self.simulating`` condition dropped (the float
        calibration pass, which converts nothing, booked its col2im adds: 24 of them for 2
        samples x 2 channels x 6, there before the first inference and added to its count)."""
        torch.manual_seed(0)
        x = torch.randn(2, 2, 4, dtype=torch.float64)
        sim = cimsim.deploy(nn.Sequential(nn.ConvTranspose1d(2, 2, 3)).double().eval(),
                            lossless_chip(), x, progress=False)
        layer = sim.sim_layers["0"]
        assert not dict(layer.cores[0].events)
        layer(x)
        key = event_key(Component.ACCUMULATOR, Action.ADD, sim.chip.accumulator_bits)
        before = layer.cores[0].events[key]
        layer(x)
        assert layer.cores[0].events[key] == 2 * before  # two runs, no pass counted besides


class TestLSTMCellStateNotAPair:
    """An ``nn.LSTMCell``'s state is the pair ``(h, c)``; torch refuses anything else ("lstm_cell
    expects two hidden states", or a TypeError for a lone tensor). The deployed cell read
    ``tuple(hx)`` unchecked (a real bug this round found while mutating it, fixed): it now
    refuses it naming the layer, as the sequence layer does."""

    @staticmethod
    def _cell() -> SimRNNCell:
        torch.manual_seed(0)
        return SimRNNCell(nn.LSTMCell(3, 4).double(), "c", lossless_chip(), 0)

    def test_a_lone_tensor_of_two_rows_is_not_read_as_h_and_c(self):
        """An unbatched step given one (2, 4) tensor: its rows were taken as h and c and the
        step ran (torch: TypeError, hx must be a tuple of tensors)."""
        x, h = torch.randn(3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
        with pytest.raises(TypeError, match=r"^c \(LSTMCell\): the state is a pair \(h, c\) "
                                            r"of tensors; got a tensor of shape \(2, 4\)$"):
            self._cell()(x, h)

    @pytest.mark.parametrize("n", [1, 3])
    def test_a_state_of_another_count_is_refused_naming_the_cell(self, n):
        """``(h,)``: a bare AssertionError from ``cell_update``; ``(h, h, h)``: "too many
        values to unpack (expected 2)"; neither names the layer."""
        x, h = torch.randn(2, 3, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64)
        with pytest.raises(TypeError, match=rf"^c \(LSTMCell\): the state is a pair \(h, c\) "
                                            rf"of tensors; got a tuple of {n}$"):
            self._cell()(x, (h,) * n)

    def test_a_list_pair_is_a_pair(self):
        """(no mutant) ``[h, c]`` runs as ``(h, c)`` does, as torch takes it."""
        x, h = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
        cell = self._cell()
        a, b = cell(x, [h, 2 * h]), cell(x, (h, 2 * h))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])

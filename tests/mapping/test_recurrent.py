"""RNN / LSTM / GRU on the arrays (worktree ``layers``): the recurrence equals torch in float,
the lossless chip equals an independent quantized re-implementation, W_hh is calibrated on the
float pass's hidden states, the simulated state is fed back every step, matrices and arrays are
counted, packed sequences are refused, and a keyword-spotting LSTM runs on ``rram-22nm``."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence
from torch.utils._pytree import tree_leaves

import cimsim
from cimsim.arrays.program import n_arrays_for_shape
from cimsim.mapping.recurrent import SimRNN, SimRNNCell
from cimsim.train import prepare

from .conftest import lossless_chip, ref_linear


def _make(kind: str, n_in: int, hidden: int, **kw) -> nn.RNNBase:
    if kind == "LSTM":
        return nn.LSTM(n_in, hidden, **kw)
    if kind == "GRU":
        kw.pop("proj_size", None)
        return nn.GRU(n_in, hidden, **kw)
    kw.pop("proj_size", None)
    return nn.RNN(n_in, hidden, nonlinearity="relu" if kind == "RNN_RELU" else "tanh", **kw)


def _inputs(module: nn.RNNBase, batched: bool, with_state: bool, length: int = 5,
            bsz: int = 3) -> tuple:
    n_states = module.num_layers * (2 if module.bidirectional else 1)
    h_size = getattr(module, "proj_size", 0) or module.hidden_size
    lead = (bsz,) if batched else ()
    if batched:
        x = torch.randn(bsz, length, module.input_size) if module.batch_first else \
            torch.randn(length, bsz, module.input_size)
    else:
        x = torch.randn(length, module.input_size)
    if not with_state:
        return (x,)
    h0 = torch.randn(n_states, *lead, h_size)
    if isinstance(module, nn.LSTM):
        return x, (h0, torch.randn(n_states, *lead, module.hidden_size))
    return x, h0


def _flat(out) -> list[torch.Tensor]:
    return list(tree_leaves(out))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["LSTM", "GRU", "RNN_TANH", "RNN_RELU"]), st.integers(1, 3),
       st.booleans(), st.booleans(), st.booleans(), st.sampled_from([0, 2]), st.booleans(),
       st.booleans())
def test_recurrence_equals_torch_in_float(kind, layers, bidir, batch_first, bias, proj,
                                          batched, with_state):
    torch.manual_seed(0)
    module = _make(kind, 4, 5, num_layers=layers, bidirectional=bidir,
                   batch_first=batch_first, bias=bias, proj_size=proj).double().eval()
    torch.set_default_dtype(torch.float64)
    try:
        args = _inputs(module, batched, with_state)
    finally:
        torch.set_default_dtype(torch.float32)
    sim = SimRNN(module, "r", lossless_chip(), 0)  # observe mode: float matrices
    got, want = _flat(sim(*args)), _flat(module(*args))
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def _reference(module: nn.RNNBase, sim, x: torch.Tensor) -> torch.Tensor:
    """Torch's equations written out again, every matrix product by the integer
    re-implementation of its core (tests/mapping/conftest.py), seq-first, no h0."""
    layer = sim.sim_layers["0"]
    cores = {c.name: c for c in layer.cores}
    bits = sim.chip.input_bits
    n_dir = 2 if module.bidirectional else 1
    h_size = getattr(module, "proj_size", 0) or module.hidden_size

    def mm(name: str, v: torch.Tensor) -> torch.Tensor:
        core = cores[f"0.{name}"]
        bias = getattr(module, name.replace("weight", "bias"), None) if module.bias else None
        return ref_linear(core, None if "hr" in name else bias, v, bits)

    for lay in range(module.num_layers):
        outs = []
        for d in range(n_dir):
            sfx = f"_l{lay}" + ("_reverse" if d else "")
            seq = x if d == 0 else x.flip(0)
            h = x.new_zeros(x.shape[1], h_size)
            c = x.new_zeros(x.shape[1], module.hidden_size)
            ys = []
            for t in range(seq.shape[0]):
                a = mm("weight_ih" + sfx, seq[t])
                b = mm("weight_hh" + sfx, h)
                if isinstance(module, nn.LSTM):
                    i, f, g, o = (a + b).chunk(4, 1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(c)
                    if module.proj_size:
                        h = mm("weight_hr" + sfx, h)
                else:  # GRU
                    ar, az, an = a.chunk(3, 1)
                    br, bz, bn = b.chunk(3, 1)
                    r, z = torch.sigmoid(ar + br), torch.sigmoid(az + bz)
                    h = (1 - z) * torch.tanh(an + r * bn) + z * h
                ys.append(h)
            y = torch.stack(ys)
            outs.append(y if d == 0 else y.flip(0))
        x = torch.cat(outs, 2)
    return x


@pytest.mark.parametrize(("kind", "kw"), [
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("LSTM", dict(proj_size=3)),
    ("GRU", dict(num_layers=2)),
    ("GRU", dict(bidirectional=True, bias=False)),
])
def test_lossless_chip_equals_the_quantized_recurrence(kind, kw):
    torch.manual_seed(1)
    module = _make(kind, 6, 7, **kw).double().eval()
    x_cal = torch.randn(6, 4, 6, dtype=torch.float64)
    chip = lossless_chip("column", n_rows=5, n_cols=23)  # W_ih / W_hh span row tiles
    sim = cimsim.deploy(nn.Sequential(module), chip, x_cal, seed=2)
    x = torch.randn(5, 2, 6, dtype=torch.float64)
    got = sim(x)[0]
    with torch.no_grad():
        want = _reference(module, sim, x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    with torch.no_grad():  # the quantization is visible: not the float model
        assert not torch.allclose(got, module(x)[0], atol=1e-6)


def test_hidden_matrix_is_calibrated_on_the_float_hidden_states():
    torch.manual_seed(2)
    module = nn.LSTM(3, 4).double().eval()
    x = torch.randn(7, 5, 3, dtype=torch.float64)
    sim = cimsim.deploy(nn.Sequential(module), lossless_chip(), x)
    ih, hh = sim.sim_layers["0"].cores
    with torch.no_grad():
        h = module(x)[0]  # the float pass's hidden states
    q = 2 ** (sim.chip.input_bits - 1) - 1
    # W_hh reads h0 = 0, h1 ... h_{L-1} (the last state is only output)
    assert hh.s_x == pytest.approx(float(h[:-1].abs().max()) / q, rel=1e-12)
    assert ih.s_x == pytest.approx(float(x.abs().max()) / q, rel=1e-12)


def test_simulated_state_is_fed_back_and_counted():
    module = nn.GRU(4, 6, num_layers=2, bidirectional=True, batch_first=True)
    chip = lossless_chip(n_rows=8, n_cols=16)
    x = torch.randn(3, 9, 4)
    sim = cimsim.deploy(module, chip, x)  # a mappable root, named "0"
    cores = sim.sim_layers["0"].cores
    names = [c.name for c in cores]
    assert names == ["0.weight_ih_l0", "0.weight_hh_l0", "0.weight_ih_l0_reverse",
                     "0.weight_hh_l0_reverse", "0.weight_ih_l1", "0.weight_hh_l1",
                     "0.weight_ih_l1_reverse", "0.weight_hh_l1_reverse"]
    assert [c.shape for c in cores[:2]] + [cores[4].shape] == [(18, 4), (18, 6), (18, 12)]
    assert sim.arrays_needed == sum(n_arrays_for_shape(c.shape[0], c.row_tiles, chip)
                                    for c in cores)
    sim.reset()
    for c in cores:
        c.calls = 0
    sim(x[:2])
    # W_ih: one batched call over the 9 steps; W_hh: one call per step on the state it fed back
    assert [c.calls for c in cores] == [1, 9] * 4
    assert [c.n_vectors for c in cores] == [2 * 9] * 8
    assert sim.work().layers[0].n_matrices == 8


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_a_packed_sequence_runs_each_sample_to_its_own_length(mode):
    """A PackedSequence (unsorted lengths, two layers, both directions, a given state): each
    sample's outputs and final states equal the same layer run on that sample alone, cut to its
    length (the backward direction starts at its last step); outputs past it are zero. (It was
    refused: "packed sequences are not supported".)"""
    module = getattr(nn, mode)(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    x, lengths = torch.randn(3, 5, 3), torch.tensor([3, 5, 1])
    sim = cimsim.deploy(nn.Sequential(module), lossless_chip(), x).sim_layers["0"]
    h0 = torch.randn(4, 3, 4) * 0.5
    hx = (h0, torch.randn(4, 3, 4) * 0.5) if mode == "LSTM" else h0
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, states = sim(packed, hx)
    assert isinstance(out, PackedSequence)
    assert torch.equal(out.sorted_indices, packed.sorted_indices)
    padded, got_lengths = pad_packed_sequence(out, batch_first=True)
    assert torch.equal(got_lengths, lengths)
    for b, n in enumerate(lengths.tolist()):
        hx_b = tuple(s[:, b:b + 1] for s in hx) if mode == "LSTM" else hx[:, b:b + 1]
        want, want_states = sim(x[b:b + 1, :n], hx_b)
        assert torch.equal(padded[b:b + 1, :n], want)
        assert not padded[b, n:].any()
        for got_s, want_s in zip(states if mode == "LSTM" else (states,),
                                 want_states if mode == "LSTM" else (want_states,), strict=True):
            assert torch.equal(got_s[:, b:b + 1], want_s)
    with torch.no_grad():  # near float torch's packed run (from zero states: calibrated so)
        ref, _ = module(packed)
    assert float((sim(packed)[0].data - ref.data).norm() / ref.data.norm()) < 0.02
    # the arrays compute the 9 steps the samples have, not the 15 of the padded batch
    for core in sim.cores:
        core.n_vectors = 0
    sim(packed)
    assert [core.n_vectors for core in sim.cores] == [int(lengths.sum())] * 8


def test_a_sorted_packed_sequence_through_a_projected_lstm_is_near_float():
    """Sequence-first, lengths sorted (``enforce_sorted=True``: no permutation), an LSTM with
    ``proj_size``, two layers, both directions: outputs and final (h, c) near torch's own."""
    module = nn.LSTM(3, 6, proj_size=2, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3, 3)
    sim = cimsim.deploy(nn.Sequential(module), lossless_chip(), x, batch_dim=1).sim_layers["0"]
    packed = pack_padded_sequence(x, torch.tensor([5, 4, 2]))
    out, (h, c) = sim(packed)
    with torch.no_grad():
        ref, (ref_h, ref_c) = module(packed)
    assert out.sorted_indices is None and torch.equal(out.batch_sizes, ref.batch_sizes)
    for got, want in ((out.data, ref.data), (h, ref_h), (c, ref_c)):
        assert float((got - want).norm() / want.norm()) < 0.02


def test_simulated_calibration_runs_stage_by_stage():
    chip = cimsim.load_chip("rram-22nm")
    chip = chip.replace(adc=chip.adc.replace(calibration_mode="simulated"))
    module = nn.LSTM(3, 4, num_layers=2)
    x = torch.randn(6, 4, 3)
    sim = cimsim.deploy(nn.Sequential(module), chip, x)
    stages = sim.sim_layers["0"].calibration_stages()
    assert [[c.name for c in s] for s in stages] == [
        ["0.weight_ih_l0"], ["0.weight_hh_l0"], ["0.weight_ih_l1"], ["0.weight_hh_l1"]]
    assert torch.isfinite(sim(x)[0]).all()


class KeywordSpotter(nn.Module):
    """A small keyword-spotting model: MFCC-like frames -> 2-layer LSTM -> last step -> logits."""

    def __init__(self, n_mfcc: int = 10, hidden: int = 32, n_words: int = 12):
        super().__init__()
        self.lstm = nn.LSTM(n_mfcc, hidden, num_layers=2, batch_first=True)
        self.fc = nn.Linear(hidden, n_words)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y[:, -1])


def test_keyword_spotting_lstm_on_rram_22nm():
    torch.manual_seed(0)
    model = KeywordSpotter().eval()
    x = torch.randn(16, 20, 10)
    sim = cimsim.deploy(model, cimsim.load_chip("rram-22nm"), x, seed=1)
    assert set(sim.sim_layers) == {"lstm", "fc"} and sim.digital == []
    with torch.no_grad():
        ref = model(x[:4])
    y = sim(x[:4])
    assert y.shape == ref.shape and torch.isfinite(y).all()
    cos = float(F.cosine_similarity(y.flatten(), ref.flatten(), dim=0))
    assert cos > 0.8, cos
    fid = sim.trace(x[:2]).set_index("layer")
    assert fid.loc["lstm", "sqnr_db"] > 3, fid  # 6.4 dB at seed 1, its 8 matrices together
    rep = sim.report()
    assert "lstm" in set(rep.layers["layer"])


def test_a_wrong_initial_state_is_refused_as_torch_refuses_it():
    module = nn.GRU(3, 4)
    sim = SimRNN(module, "r", lossless_chip(), 0)
    x, h0 = torch.randn(5, 2, 3), torch.randn(1, 2, 3)
    with pytest.raises(RuntimeError, match="Expected hidden size"):
        module(x, h0)
    with pytest.raises(RuntimeError, match=r"r: Expected hidden size \(1, 2, 4\)"):
        sim(x, h0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_stacked_layers_latency_is_a_wavefront_or_one_stage_per_layer(bidirectional):
    """A unidirectional stack of L layers over T steps takes T + L - 1 steps (layer k starts k
    steps in); a bidirectional one takes the layers one after another (the backward direction
    reads the whole output of the layer below)."""
    from cimsim.cost import estimate
    from cimsim.cost.latency import block_latency

    torch.manual_seed(0)
    n_layers, length, bsz = 3, 5, 2
    model = nn.GRU(8, 8, num_layers=n_layers, batch_first=True,
                   bidirectional=bidirectional).eval()
    x = torch.randn(bsz, length, 8)
    sim = cimsim.deploy(model, lossless_chip(), x)
    sim.reset()
    sim(x)
    rep = estimate(sim.work())
    rows = rep.blocks
    assert {b["name"].split(".")[-1] for b in rows} >= {"weight_ih_l0", "weight_hh_l2"}
    # every block of this model has the same shape (8 inputs, 3 x 8 gate outputs; the
    # bidirectional upper layers read 16): one vector's time from its own block
    per_vector = {b["name"]: block_latency(sim.sim_layers["0"].cores[i].parts[0][2], 1.0)
                  for i, b in enumerate(rows)}
    layer = next(r for r in rep.layers if r["layer"] == "0")
    n_dir = 2 if bidirectional else 1
    for i, b in enumerate(rows):
        k = i // (2 * n_dir)  # ih and hh per direction, layer by layer
        one = per_vector[b["name"]]
        step = one["latency_ns"] - one["tail_ns"]
        assert b["n_vectors_per_inference"] == length
        if bidirectional:
            assert b["stage"] == k and b["lag_ns"] == 0.0
        else:
            assert b["stage"] == 0
            assert b["lag_ns"] == pytest.approx(k * step)
            assert b["latency_ns"] == pytest.approx((length + k) * step + one["tail_ns"])
    if bidirectional:
        slowest = [max(b["latency_ns"] for b in rows if b["stage"] == k)
                   for k in range(n_layers)]
        assert layer["latency_ns_per_inference"] == pytest.approx(sum(slowest))
    else:
        assert layer["latency_ns_per_inference"] == pytest.approx(
            max(b["latency_ns"] for b in rows))


def test_stacked_layers_lag_counts_every_row_group_of_a_step():
    """Layer k of a unidirectional stack starts k of its own vectors in, and one vector takes
    n_planes x (row groups per tile) steps: with 2 row groups per tile the fill is twice what
    one group per vector would give. Guards the pipeline lag (``lag_ns``) against pricing a
    vector at n_planes steps only, which understated a stack with several conversions per
    column."""
    from cimsim.cost import estimate

    torch.manual_seed(0)
    n_layers, length = 3, 5
    model = nn.GRU(8, 8, num_layers=n_layers, batch_first=True).eval()
    x = torch.randn(2, length, 8)
    sim = cimsim.deploy(model, lossless_chip(rows_per_conversion=4), x)  # 8 rows: 2 groups
    sim.reset()
    sim(x)
    rep = estimate(sim.work())
    rows = rep.blocks
    assert len(rows) == 2 * n_layers  # ih and hh, layer by layer
    for i, b in enumerate(rows):
        k = i // 2
        assert b["n_row_groups_per_tile"] == 2
        one_vector = b["n_planes"] * 2 * b["t_step_ns"]
        assert b["lag_ns"] == pytest.approx(k * one_vector, rel=1e-12)
        assert b["latency_ns"] == pytest.approx((length + k) * one_vector + b["tail_ns"],
                                                rel=1e-12)
    layer = next(r for r in rep.layers if r["layer"] == "0")
    top = rows[-1]  # the last layer's blocks finish last: (T + L - 1) vectors and a tail
    assert layer["latency_ns_per_inference"] == pytest.approx(
        (length + n_layers - 1) * top["n_planes"] * 2 * top["t_step_ns"] + top["tail_ns"],
        rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Recurrent cells (nn.RNNCell / LSTMCell / GRUCell), stepped by the model's own loop
# ---------------------------------------------------------------------------------------------
def _make_cell(kind: str, n_in: int, hidden: int, bias: bool = True) -> nn.RNNCellBase:
    if kind == "LSTM":
        return nn.LSTMCell(n_in, hidden, bias=bias)
    if kind == "GRU":
        return nn.GRUCell(n_in, hidden, bias=bias)
    return nn.RNNCell(n_in, hidden, bias=bias,
                      nonlinearity="relu" if kind == "RNN_RELU" else "tanh")


class Stepped(nn.Module):
    """A cell stepped over a (T, B, K) sequence by hand, as decoders and RL policies do."""

    def __init__(self, cell: nn.RNNCellBase):
        super().__init__()
        self.cell = cell

    def forward(self, x):
        state = None
        outs = []
        for t in range(x.shape[0]):
            state = self.cell(x[t], state)
            outs.append(state[0] if isinstance(state, tuple) else state)
        return torch.stack(outs)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["LSTM", "GRU", "RNN_TANH", "RNN_RELU"]), st.booleans(), st.booleans(),
       st.booleans())
def test_cell_step_equals_torch_in_float(kind, bias, batched, with_state):
    torch.manual_seed(0)
    module = _make_cell(kind, 4, 5, bias).double().eval()
    lead = (3,) if batched else ()
    x = torch.randn(*lead, 4, dtype=torch.float64)
    args: tuple = (x,)
    if with_state:
        h = torch.randn(*lead, 5, dtype=torch.float64)
        args = (x, (h, torch.randn(*lead, 5, dtype=torch.float64)) if kind == "LSTM" else h)
    sim = SimRNNCell(module, "c", lossless_chip(), 0)  # observe mode: float matrices
    got, want = _flat(sim(*args)), _flat(module(*args))
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("kind", "bias"), [("LSTM", True), ("GRU", True), ("GRU", False),
                                            ("RNN_TANH", True), ("RNN_RELU", False)])
def test_lossless_chip_equals_the_quantized_cell_step(kind, bias):
    """Torch's cell equations written out again, every product by the integer
    re-implementation of its core: the simulated state is fed back at every call."""
    torch.manual_seed(1)
    module = _make_cell(kind, 6, 7, bias).double().eval()
    chip = lossless_chip("column", n_rows=5, n_cols=23)  # W_ih / W_hh span row tiles
    sim = cimsim.deploy(Stepped(module), chip, torch.randn(6, 4, 6, dtype=torch.float64),
                        seed=2, batch_dim=1)
    ih, hh = sim.sim_layers["cell"].cores
    assert (ih.name, hh.name) == ("cell.weight_ih", "cell.weight_hh")
    x = torch.randn(5, 2, 6, dtype=torch.float64)
    bits = sim.chip.input_bits
    h = x.new_zeros(2, 7)
    c = x.new_zeros(2, 7)
    want = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            a = ref_linear(ih, module.bias_ih if bias else None, x[t], bits)
            b = ref_linear(hh, module.bias_hh if bias else None, h, bits)
            if kind == "LSTM":
                i, f, g, o = (a + b).chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            elif kind == "GRU":
                ar, az, an = a.chunk(3, 1)
                br, bz, bn = b.chunk(3, 1)
                r, z = torch.sigmoid(ar + br), torch.sigmoid(az + bz)
                h = (1 - z) * torch.tanh(an + r * bn) + z * h
            else:
                h = torch.tanh(a + b) if kind == "RNN_TANH" else torch.relu(a + b)
            want.append(h)
    got = sim(x)
    torch.testing.assert_close(got, torch.stack(want), rtol=1e-12, atol=1e-12)
    with torch.no_grad():  # the quantization is visible: not the float model
        assert not torch.allclose(got, Stepped(module)(x), atol=1e-6)
    assert [core.calls for core in (ih, hh)] == [5, 5]  # one product each per step
    assert sim.work().layers[0].n_matrices == 2


def test_cell_hidden_matrix_is_calibrated_on_the_float_states():
    torch.manual_seed(2)
    module = nn.GRUCell(3, 4).double().eval()
    x = torch.randn(7, 5, 3, dtype=torch.float64)
    sim = cimsim.deploy(Stepped(module), lossless_chip(), x, batch_dim=1)
    ih, hh = sim.sim_layers["cell"].cores
    with torch.no_grad():
        h = Stepped(module)(x)  # the float pass's states
    q = 2 ** (sim.chip.input_bits - 1) - 1
    # W_hh reads the zero state of the first call, then h1 ... h_{T-1}
    assert hh.s_x == pytest.approx(float(h[:-1].abs().max()) / q, rel=1e-12)
    assert ih.s_x == pytest.approx(float(x.abs().max()) / q, rel=1e-12)


def test_cell_simulated_calibration_fits_the_state_matrix_after_the_input_one():
    chip = cimsim.load_chip("rram-22nm")
    chip = chip.replace(adc=chip.adc.replace(calibration_mode="simulated"))
    x = torch.randn(6, 4, 3)
    sim = cimsim.deploy(Stepped(nn.LSTMCell(3, 4)), chip, x, batch_dim=1)
    stages = sim.sim_layers["cell"].calibration_stages()
    assert [[c.name for c in s] for s in stages] == [["cell.weight_ih"], ["cell.weight_hh"]]
    assert torch.isfinite(sim(x)).all()


def test_cell_refuses_what_torch_refuses():
    module = nn.LSTMCell(3, 4)
    sim = SimRNNCell(module, "c", lossless_chip(), 0)
    x = torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match="Expected input to be 1D or 2D"):
        module(x)
    with pytest.raises(ValueError, match=r"c \(LSTMCell\): expected the input to be 1D or 2D"):
        sim(x)
    with pytest.raises(ValueError, match=r"c \(LSTMCell\): expected the state to be 1D or 2D"):
        sim(x[0], (torch.zeros(1, 2, 4), torch.zeros(2, 4)))


def test_decoder_with_an_lstm_cell_on_rram_22nm():
    """A seq2seq-style decoder: an LSTMCell fed its own previous output, greedy, 8 steps."""

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(6, 16)
            self.cell = nn.LSTMCell(16, 32)
            self.out = nn.Linear(32, 6)

        def forward(self, z):  # (B, 32): an encoder's summary as the first state
            h, c = z, torch.zeros_like(z)
            y = z.new_zeros(z.shape[0], 6)
            outs = []
            for _ in range(8):
                h, c = self.cell(torch.relu(self.embed(y)), (h, c))
                y = torch.softmax(self.out(h), dim=1)
                outs.append(y)
            return torch.stack(outs, 1)

    torch.manual_seed(0)
    model = Decoder().eval()
    z = torch.randn(16, 32) * 0.5
    sim = cimsim.deploy(model, cimsim.load_chip("rram-22nm"), z, seed=1)
    assert set(sim.sim_layers) == {"embed", "cell", "out"} and sim.digital == []
    with torch.no_grad():
        ref = model(z[:4])
    y = sim(z[:4])
    assert y.shape == ref.shape and torch.isfinite(y).all()
    cos = float(F.cosine_similarity(y.flatten(), ref.flatten(), dim=0))
    assert cos > 0.9, cos
    rep = sim.report()
    assert "cell" in set(rep.layers["layer"])


# ---------------------------------------------------------------------------------------------
# A cell calibrated on its first step alone: its state matrix sees only zeros
# ---------------------------------------------------------------------------------------------
def test_a_cell_calibrated_on_its_first_step_reads_its_zero_state_as_zero():
    """``deploy(nn.LSTMCell, chip, x)``: W_hh's calibration inputs are all 0. Its ADCs used to
    start at 0 with a one-unit step, so zero-mean thermal noise read codes 0 or above and its
    positive mean, shift-added over the input planes and weight digits, made h 5x its float
    value (relative error 5.5 on rram-22nm); now the columns keep their full scale and the
    zero state reads 0, and deploy says the state matrix saw no signal."""
    torch.manual_seed(0)
    module = nn.LSTMCell(16, 32).eval()
    x = torch.randn(64, 16)
    with pytest.warns(UserWarning, match=r"every calibration input of '0\.weight_hh' was 0"):
        sim = cimsim.deploy(module, "rram-22nm", x)
    hh = sim.sim_layers["0"].cores[1]
    assert hh.zero_inputs and not sim.sim_layers["0"].cores[0].zero_inputs
    zeros = torch.zeros(8, 32)
    with torch.no_grad():
        torch.testing.assert_close(hh.run(zeros.numpy()), module.bias_hh.expand(8, -1).double()
                                   .numpy(), rtol=0, atol=0, check_dtype=False)
        h, _ = sim(x)
        want, _ = module(x)
    assert float((h - want).norm() / want.norm()) < 1.0
    with pytest.warns(UserWarning, match=r"prepare: every calibration input of '0\.weight_hh'"):
        prepare(module, "rram-22nm", x)


@pytest.mark.parametrize("batch_size", [256, 100])
def test_a_nested_initial_state_is_one_argument_cut_with_its_batch(batch_size):
    """``calibration=(x, (h0, c0))`` is the model's two arguments (it was read as a DataLoader
    of two batches, h0 called as the input); cut into batches, a recurrent layer's
    (layers, B, H) states are cut along their dimension 1."""
    torch.manual_seed(0)
    lstm = nn.LSTM(6, 8, num_layers=2, batch_first=True).double().eval()
    x = torch.randn(250, 3, 6, dtype=torch.float64)
    state = (0.3 * torch.randn(2, 250, 8, dtype=torch.float64),
             0.3 * torch.randn(2, 250, 8, dtype=torch.float64))
    sim = cimsim.deploy(lstm, lossless_chip(), (x, state), batch_size=batch_size)
    with torch.no_grad():
        out, _ = sim(x, state)
        want, _ = lstm(x, state)
    assert out.shape == want.shape
    assert float((out - want).norm() / want.norm()) < 0.05
    gru = nn.GRU(6, 8, num_layers=2, bidirectional=True, batch_first=True).double().eval()
    h0 = 0.3 * torch.randn(4, 250, 8, dtype=torch.float64)  # a state not in a tuple
    sim = cimsim.deploy(gru, lossless_chip(), (x, h0), batch_size=batch_size)
    with torch.no_grad():
        out, _ = sim(x, h0)
        want, _ = gru(x, h0)
    assert float((out - want).norm() / want.norm()) < 0.05
    cell = nn.LSTMCell(6, 8).double().eval()
    h0 = 0.3 * torch.randn(250, 8, dtype=torch.float64)
    sim = cimsim.deploy(cell, lossless_chip(), (x[:, 0], (h0, torch.zeros_like(h0))),
                        batch_size=batch_size)
    hh = sim.sim_layers["0"].cores[1]
    q = 2 ** (sim.chip.input_bits - 1) - 1
    assert hh.s_x == pytest.approx(float(h0.abs().max()) / q, rel=1e-12)


class _LastStep(nn.Module):
    """A sequence-first LSTM (torch's default) and a head on its last step."""

    def __init__(self, batch_first: bool = False):
        super().__init__()
        self.rnn = nn.LSTM(6, 8, batch_first=batch_first)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        out = self.rnn(x)[0]
        return self.head(out[:, -1] if self.rnn.batch_first else out[-1])


def test_a_sequence_first_model_counted_along_its_time_axis_is_warned_of():
    """(10 steps, 4 samples, 6) into a batch_first=False LSTM with batch_dim = 0 counts 10
    inferences (per-inference figures 2.5x too low, the head's MACs fractional): warned of,
    naming the layer and batch_dim=1, by deploy and prepare alike; not with batch_dim=1, nor
    for a batch-first model, nor a model that transposes its batch-first input itself."""
    torch.manual_seed(0)
    x = torch.randn(10, 4, 6)
    with pytest.warns(UserWarning, match=r"'rnn' \(batch_first=False\) reads dimension 0 of its "
                      r"input as the sequence, but that is the axis of the 10 samples .*"
                      r"Pass batch_dim=1 if the model's input is sequence-first"):
        sim = cimsim.deploy(_LastStep().eval(), lossless_chip(), x, seed=0)
    sim(x)
    assert sim.n_inferences == 10  # what the warning is about
    with pytest.warns(UserWarning, match="Pass batch_dim=1"):
        prepare(_LastStep().eval(), lossless_chip(), calibration=x, seed=0)

    class Transposing(_LastStep):
        def forward(self, x):  # batch-first input, a sequence-first LSTM
            return super().forward(x.transpose(0, 1))

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*reads dimension")
        sim = cimsim.deploy(_LastStep().eval(), lossless_chip(), x, seed=0, batch_dim=1)
        sim(x)
        assert sim.n_inferences == 4
        cimsim.deploy(_LastStep(batch_first=True).eval(), lossless_chip(),
                      x.transpose(0, 1), seed=0)
        cimsim.deploy(Transposing().eval(), lossless_chip(), x.transpose(0, 1), seed=0)


@pytest.mark.parametrize("entry", ["deploy", "prepare"])
def test_an_unbatched_sequence_counted_as_samples_is_warned_of(entry):
    """torch takes a 2-D input of an LSTM as ONE sequence; deployed so, its steps were
    counted as inferences (MACs per inference divided by T) and the calibration sequence cut
    into 256-step pieces, with no warning. A batched calibration counts it right."""
    torch.manual_seed(0)
    model, x = nn.LSTM(6, 7).eval(), torch.randn(5, 6)
    run = cimsim.deploy if entry == "deploy" else prepare
    with pytest.warns(UserWarning, match=r"'0' takes its 2-D input as one unbatched sequence.*"
                                         r"x\[:, None\] with batch_dim=1"):
        run(model, "ideal", x, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim = cimsim.deploy(model, "ideal", x[:, None], seed=0, batch_dim=1)
    sim(x[:, None])
    assert sim.report().layers["n_macs_per_inference"].tolist() == [5 * 4 * 7 * (6 + 7)]


def test_an_lstm_state_that_is_not_a_pair_is_refused_naming_the_layer():
    torch.manual_seed(0)
    model, x = nn.LSTM(5, 6).double().eval(), torch.randn(3, 4, 5, dtype=torch.float64)
    sim = cimsim.deploy(model, "ideal", x, seed=0, batch_dim=1)
    h0 = torch.zeros(1, 4, 6, dtype=torch.float64)
    for hx, got in (((h0,), "tuple of 1"), (h0, "Tensor")):
        with pytest.raises(ValueError, match=rf"'?0'?: an LSTM's initial state is a pair "
                                             rf"\(h_0, c_0\), got {got}"):
            sim(x, hx)


@pytest.mark.parametrize("make, x", [
    (lambda: nn.LSTM(6, 5, batch_first=True), torch.randn(4, 3, 6)),
    (lambda: nn.GRU(6, 5, num_layers=2, bidirectional=True), torch.randn(3, 4, 6)),
    (lambda: nn.RNN(6, 5), torch.randn(3, 6)),
    (lambda: nn.LSTMCell(6, 5), torch.randn(4, 6)),
    (lambda: nn.GRUCell(6, 5), torch.randn(6)),
])
@pytest.mark.parametrize("width", [5, 7])
def test_an_input_of_another_width_is_refused_as_torch_refuses_it(make, x, width):
    """A wider input ran on the deployed and the twin layer, its extra features dropped (the
    arrays' row tiles read the first input_size), a narrower one failed in the engine naming
    no layer: both refused as torch refuses them, naming the layer, in calibration too."""
    module = make().eval()
    bad = torch.randn(*x.shape[:-1], width)
    with pytest.raises(RuntimeError, match="input_size"):
        module(bad)  # torch's own refusal, which the deployed layer follows
    sim = cimsim.deploy(module, "ideal", x)
    twin = prepare(module, "ideal", calibration=x)
    for run in (sim, twin):
        with pytest.raises(RuntimeError, match=r"^0\b.*input_size.*(Expected|expected) 6"):
            run(bad)
    with pytest.raises(RuntimeError, match="input_size"):
        cimsim.deploy(module, "ideal", bad)


@pytest.mark.parametrize("state, fragment", [
    ((2, 6), "hidden0 has inconsistent hidden_size: got 6 expected 5"),
    ((3, 5), "Input batch size 2 doesn't match hidden0 batch size 3"),
    ((5,), "the input is 2-D, its state 1-D"),
])
def test_a_cells_state_of_another_shape_is_refused_naming_the_cell(state, fragment):
    """A GRUCell given a 6-wide state failed in a broadcast naming no layer."""
    cell = nn.GRUCell(6, 5).eval()
    sim = cimsim.deploy(cell, "ideal", torch.randn(8, 6))
    with pytest.raises(RuntimeError, match=r"0 \(GRUCell\): " + fragment):
        sim(torch.randn(2, 6), torch.randn(*state))
    lstm = cimsim.deploy(nn.LSTMCell(6, 5).eval(), "ideal", torch.randn(8, 6))
    with pytest.raises(RuntimeError, match="hidden1 has inconsistent hidden_size: got 4"):
        lstm(torch.randn(2, 6), (torch.randn(2, 5), torch.randn(2, 4)))


@pytest.mark.parametrize("make", [lambda: nn.LSTM(3, 4), lambda: nn.GRU(3, 4, batch_first=True)])
def test_a_sequence_of_no_steps_is_refused_as_torch_refuses_it(make):
    """An empty sequence returned an empty output and h_0 as the final state, where torch
    refuses it; the deployed and twin layers refuse it naming the layer."""
    module = make().eval()
    with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0"):
        module(torch.zeros(2, 0, 3) if module.batch_first else torch.zeros(0, 2, 3))
    x = torch.randn(2, 5, 3) if module.batch_first else torch.randn(5, 2, 3)
    empty = x[:, :0] if module.batch_first else x[:0]
    for run in (cimsim.deploy(module, "ideal", x), prepare(module, "ideal", calibration=x)):
        with pytest.raises(RuntimeError, match="^0: Expected sequence length to be larger"):
            run(empty)

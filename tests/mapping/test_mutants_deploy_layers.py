"""Tests written for the survivors of a second hand-made mutation round over
cimsim/mapping/deploy.py and cimsim/mapping/layers.py (the parts the first round,
test_mutants_mapping.py, left alone: the digital back end's event counts, the fidelity trace,
the code-use check, inference counting, resets and the layer mapping's bookkeeping): each pins
a behaviour that a small wrong change left every earlier test passing. Known answers where
possible: counts worked out by hand in a comment, the same layer on the lossless ``ideal``
chip, or torch's own module."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.events import Action, Component, event_key
from tests.conftest import ideal_chip

from .conftest import lossless_chip


def test_a_packed_layer_counts_the_macs_of_its_groups_not_of_the_pack():
    """``array.group_packing = 'diagonal'``: a depthwise 1x1 conv of 4 channels packs its 4
    groups into one 4x4 block-diagonal matrix, whose zero blocks are no work of the layer.
    Per output pixel the layer does 4 MACs (one per channel), not the pack's 16 nor 4/4 = 1:
    2 images x 3x3 pixels x 4 = 72 ``layer/mac``."""
    conv = nn.Conv2d(4, 4, 1, groups=4)
    chip = ideal_chip(array=dict(group_packing="diagonal"))
    sim = cimsim.deploy(nn.Sequential(conv).eval(), chip, torch.randn(8, 4, 3, 3),
                        progress=False)
    layer = sim.sim_layers["0"]
    assert len(layer.cores) == 1 and layer.cores[0].packed_groups == 4
    sim.reset()
    sim(torch.randn(2, 4, 3, 3))
    assert layer.events[event_key(Component.LAYER, Action.MAC)] == 2 * 9 * 4


def test_the_a_shift_counts_one_input_shift_per_input_element():
    """With ``dac.shift_unsigned_inputs`` every input code is shifted to signed once: a
    Linear(6 -> 3) on 5 vectors shifts 5 x 6 = 30 input elements (not 5 x 3 outputs)."""
    chip = ideal_chip(dac=dict(shift_unsigned_inputs=True))
    lin = nn.Linear(6, 3)
    sim = cimsim.deploy(lin, chip, torch.randn(32, 6).relu(), progress=False)
    assert sim.sim_layers["0"].cores[0].view.zero_point < 0
    sim.reset()
    sim(torch.randn(5, 6).relu())
    shift = event_key(Component.DAC, Action.INPUT_SHIFT, chip.input_bits)
    assert sim.sim_layers["0"].events[shift] == 5 * 6


def test_row_tiles_dequantized_apart_are_merged_by_one_add_per_extra_part():
    """With per-column scales each row tile is a part whose dequantized outputs are added
    digitally: a Linear of 80 inputs on 37-row arrays has 3 parts, so each output takes 2
    accumulator adds and 2 accumulator-wide words: 4 vectors x 5 outputs x 2 = 40 adds and
    40 x accumulator_bits interconnect bits (the digital back end's share of the layer's
    events; the arrays' own accumulation is the engine's)."""
    chip = lossless_chip("column")
    sim = cimsim.deploy(nn.Sequential(nn.Linear(80, 5)).eval(), chip, torch.randn(16, 80),
                        progress=False)
    core = sim.sim_layers["0"].cores[0]
    assert len(core.parts) == 3
    acc = chip.accumulator_bits
    ev = core._digital_events(4)
    assert ev[event_key(Component.ACCUMULATOR, Action.ADD, acc)] == 40
    assert ev[event_key(Component.INTERCONNECT, Action.BIT)] == 40 * acc


def test_each_part_of_a_matrix_tells_the_latency_model_how_many_tiles_are_merged():
    """A matrix split into 3 parts (per-column scales, 80 rows on 37-row arrays) has its
    outputs merged by a digital add tree over the 3 tiles: each part's block says so
    (``Block.merged_row_tiles``, the latency tail's tree depth), not 1 (its own tile)."""
    sim = cimsim.deploy(nn.Sequential(nn.Linear(80, 5)).eval(), lossless_chip("column"),
                        torch.randn(16, 80), progress=False)
    blocks = sim.sim_layers["0"].work().blocks
    assert [b.merged_row_tiles for b in blocks] == [3, 3, 3]


def test_a_matrix_of_two_parts_is_not_fused_with_its_relu(caplog):
    """A layer-output ADC fuses the following ReLU only where the matrix is one part: with
    per-column scales two row tiles (12 rows on 8-row arrays) are dequantized apart and added
    digitally after their conversions, so the ReLU runs digitally (a warning says why)."""
    ideal = cimsim.load_chip("ideal")
    chip = ideal.replace(
        dac=ideal.dac.replace(bits=None), device=ideal.device.replace(bits_per_cell=7),
        array=ideal.array.replace(n_rows=8, n_cols=64),
        quant=ideal.quant.replace(weight_granularity="column"),
        adc=ideal.adc.replace(kind="ramp", bits=3, range_policy="calibrated",
                              placement="layer_output"))
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    with caplog.at_level("WARNING"):
        sim = cimsim.deploy(model, chip, torch.randn(64, 12), progress=False)
    assert len(sim.sim_layers["0"].cores[0].parts) == 2
    assert sim.fused_activations == []
    assert "row tiles are dequantized separately" in caplog.text


class _Phased(nn.Module):
    """``b`` runs on ``rows[n % 4]`` rows at the n-th forward (none where not given): a
    trace's two batches are forwards 1 (float) and 2 (simulated), then 3 and 0."""

    def __init__(self, rows: dict[int, int]):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(3, 2)
        self.n, self.rows = 0, rows

    def forward(self, x):
        self.n += 1
        h = self.a(x)
        rows = self.rows.get(self.n % 4)
        return h.sum() if rows is None else self.b(h[:rows]).sum() + h.sum()


def test_a_layer_whose_calls_never_paired_has_no_accumulated_error():
    """``b``'s calls in the first batch differ in rows between the passes (not comparable),
    and the second batch calls it in neither pass: no batch compared anything, so its
    accumulated error and cosine are NaN (a batch with no call is no paired batch; its 0 of
    nothing compared read as exact), while its own error, measured, is that of the lossless
    chip."""
    model = _Phased({1: 2, 2: 3}).eval()  # batch 1: 2 rows against 3; batch 2: no call
    sim = cimsim.deploy(model, lossless_chip(), torch.randn(4, 4), progress=False)
    sim.model.n = 0
    with pytest.warns(UserWarning, match=r"trace: layers 'b' ran otherwise"):
        frame = sim.trace(torch.randn(8, 4), batch_size=4).set_index("layer")
    assert np.isnan(frame.loc["b", "accum_rel_error"])
    assert np.isnan(frame.loc["b", "accum_cosine"])
    assert frame.loc["b", "rel_error"] < 0.05
    assert frame.loc["a", "accum_rel_error"] < 0.05


def test_the_code_count_keeps_at_most_max_code_vectors_rows_over_all_calls():
    """``CoreTrace`` keeps at most ``max_code_vectors`` integer input rows for the code count,
    over all the calls of a trace: 5 of a first call of 8 rows, none of the next call (the
    budget counted in rows, not in calls)."""
    from cimsim.mapping.layers import CoreTrace

    sim = cimsim.deploy(nn.Linear(4, 3), lossless_chip(), torch.randn(16, 4), progress=False)
    core = sim.sim_layers["0"].cores[0]
    trace = CoreTrace(max_code_vectors=5)
    trace.start_pass(True)
    x = np.random.default_rng(0).normal(size=(8, 4))
    trace.step(core, x)
    trace.step(core, x)
    assert sum(len(rows) for rows in trace.code_inputs) == 5


def test_a_relu_not_fused_leaves_the_traced_float_reference_unclipped(caplog):
    """A layer-output ADC whose range policy is not ``calibrated`` does not fuse the ReLU
    after the layer (its ``activation_clamp`` is set, the layer not ``fused``): the layer
    outputs its pre-activation, and the trace compares it with the float pre-activation, not
    with the ReLU's output (which read every negative output as an error: rel_error near 1 on
    a near-lossless chip)."""
    chip = ideal_chip(adc=dict(placement="layer_output"), dac=dict(bits=None),
                  device=dict(bits_per_cell=7))
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    with caplog.at_level("WARNING"):
        sim = cimsim.deploy(model, chip, torch.randn(64, 6), progress=False)
    core = sim.sim_layers["0"].cores[0]
    assert core.activation_clamp == float("inf") and not core.fused
    frame = sim.trace(torch.randn(16, 6)).set_index("layer")
    assert frame.loc["0", "rel_error"] < 0.01


def _code_use_with(monkeypatch, uses, samples):
    """``code_use`` of a deployed Linear (ideal chip: full-scale ranges, so checked) whose
    every part's count is ``use`` (a :class:`CodeUse`), on calibration rows ``sample``, for
    each pair of ``uses`` and ``samples``."""
    from cimsim.mapping import layers

    sim = cimsim.deploy(nn.Linear(4, 3), "ideal", torch.randn(16, 4), progress=False)
    view = sim.sim_layers["0"].cores[0].view
    flags = []
    for use, sample in zip(uses, samples, strict=True):
        monkeypatch.setattr(layers, "adc_codes_used", lambda part, x_int, use=use: use)
        flags.append(layers.code_use(view, sample, 0))
    return flags


def test_few_codes_bounds_are_inclusive(monkeypatch):
    """``few_codes``: at most ``FEW_CODES`` (2) codes per setting on average, on converters of
    at least 8 codes: exactly 2 per setting of a 3-bit (8-code) ADC is flagged."""
    from cimsim.mapping.layers import FEW_CODES, CodeUse

    sample = np.random.default_rng(0).normal(size=(40, 4))
    (flags,) = _code_use_with(monkeypatch, [CodeUse(FEW_CODES * 3, 3, 8, 100)], [sample])
    assert (flags.one_code, flags.few_codes) == (False, True)


def test_rows_that_do_not_vary_say_nothing_of_the_adc(monkeypatch):
    """Calibration rows all alike (a dead channel, constant data) read one code on any range:
    no flag, even where the count says one code per setting (varying rows: one code)."""
    from cimsim.mapping.layers import CodeUse

    same = np.tile(np.array([[0.5, -1.0, 2.0, 0.25]]), (40, 1))
    varying = np.random.default_rng(0).normal(size=(40, 4))
    flags = _code_use_with(monkeypatch, [CodeUse(3, 3, 256, 100)] * 2, [same, varying])
    assert tuple(flags[0]) == (False, False, False)
    assert flags[1].one_code


def test_exact_converters_merge_no_values():
    """``adc_codes_used`` on the ideal chip (24-bit converters, exact): every distinct analog
    value is a code of its own, so the values counted equal the codes used, each setting at
    least one."""
    from cimsim.mapping.layers import adc_codes_used

    sim = cimsim.deploy(nn.Linear(4, 3), "ideal", torch.randn(16, 4), progress=False)
    core = sim.sim_layers["0"].cores[0]
    x_int = core.view.quantize(np.random.default_rng(0).normal(size=(20, 4)))
    use = adc_codes_used(core.parts[0][2], x_int)
    assert use.values == use.used >= use.settings > 0


def _mha_model():
    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.att = nn.MultiheadAttention(8, 2)

        def forward(self, x):
            return self.att(x, x, x, need_weights=False)[0]

    return Wrap().eval()


def test_attention_calibrates_its_output_projection_in_a_stage_after_the_inputs():
    """Simulated calibration's stages of an attention layer: q, k, v (they read the module's
    inputs), then out_proj (it reads what they produce); a projection kept digital is in
    neither."""
    x = torch.randn(5, 2, 8)
    for exclude, want in (((), [["att.q_proj", "att.k_proj", "att.v_proj"], ["att.out_proj"]]),
                          (("att.k_proj",), [["att.q_proj", "att.v_proj"], ["att.out_proj"]]),
                          (("att.out_proj",), [["att.q_proj", "att.k_proj", "att.v_proj"]])):
        sim = cimsim.deploy(_mha_model(), lossless_chip(), x, exclude=exclude, batch_dim=1,
                            progress=False)
        stages = sim.sim_layers["att"].calibration_stages()
        assert [[c.name for c in stage] for stage in stages] == want


def test_attention_projections_take_input_scales_of_their_own_inputs():
    """Only a conv's groups share one input quantizer (they read one tensor): an attention
    layer's out_proj reads the attention output, not the module's input, and its input scale
    is set by that (self-attention's q, k, v read the same input: one scale)."""
    torch.manual_seed(0)
    x = 10.0 * torch.randn(5, 2, 8)
    sim = cimsim.deploy(_mha_model(), lossless_chip(), x, batch_dim=1, progress=False)
    q, k, v, out = (c.s_x for c in sim.sim_layers["att"].cores)
    assert q == k == v
    assert out != pytest.approx(q, rel=0.01)


def test_a_layer_reads_signed_inputs_where_any_of_its_matrices_does():
    """``LayerWork.input_signed``: an attention layer fed post-ReLU inputs has unsigned q, k,
    v inputs but a signed out_proj input (the attention of signed values): the layer is
    priced as reading signed inputs."""
    torch.manual_seed(0)
    x = torch.randn(5, 2, 8).relu()
    sim = cimsim.deploy(_mha_model(), lossless_chip(), x, batch_dim=1, progress=False)
    assert [c.signed for c in sim.sim_layers["att"].cores] == [False, False, False, True]
    assert sim.sim_layers["att"].work().input_signed


class _Twins(nn.Module):
    """Two layers of the same weights fed the same input."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 4), nn.Linear(8, 4)
        self.b.load_state_dict(self.a.state_dict())

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=1)


def test_layers_draw_their_devices_from_seeds_of_their_own_names():
    """Each layer is seeded from its name (``layer_seed``): two layers of the same weights on
    a chip with programming variation are programmed with other devices and err otherwise
    (seeded alike, they drew the same cells and their errors were one)."""
    torch.manual_seed(0)
    x = torch.randn(16, 8)
    sim = cimsim.deploy(_Twins().eval(), "rram-22nm", x, progress=False)
    y = sim(x)
    assert not torch.equal(y[:, :4], y[:, 4:])


def test_a_root_layer_deploys_in_eval_mode_and_runs_without_a_mode_warning():
    """A mappable module given as the whole model is held by a ``Root`` in the module's
    (eval) mode: its first call warns of no module in training mode (a new Root trains, and
    the deployed model warned that '(the model)' was in training mode)."""
    sim = cimsim.deploy(nn.Linear(4, 3).eval(), lossless_chip(), torch.randn(8, 4),
                        progress=False)
    assert not any(m.training for m in sim.model.modules())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim(torch.randn(2, 4))


def test_a_conv_output_has_the_memory_format_torch_gives():
    """An input contiguous in both formats (one channel) gives a plainly contiguous output, as
    torch's conv does; a channels-last input of 2 channels gives a channels-last output."""
    conv = nn.Conv2d(1, 3, 3).eval()
    sim = cimsim.deploy(nn.Sequential(conv), lossless_chip(), torch.randn(4, 1, 6, 6),
                        progress=False)
    x = torch.randn(2, 1, 6, 6)
    assert x.is_contiguous(memory_format=torch.channels_last) and x.is_contiguous()
    assert sim(x).stride() == conv(x).stride()
    conv2 = nn.Conv2d(2, 3, 3).eval()
    sim2 = cimsim.deploy(nn.Sequential(conv2), lossless_chip(), torch.randn(4, 2, 6, 6),
                         progress=False)
    x2 = torch.randn(2, 2, 6, 6).contiguous(memory_format=torch.channels_last)
    assert sim2(x2).stride() == conv2(x2).stride()


def test_a_scalar_input_to_a_linear_is_refused_naming_the_layer():
    """A 0-d input has no feature dimension: refused as torch's Linear refuses it (a
    RuntimeError naming the layer and 'scalar'), not an IndexError from reading its last
    dimension."""
    sim = cimsim.deploy(nn.Sequential(nn.Linear(4, 3)).eval(), lossless_chip(),
                        torch.randn(8, 4), progress=False)
    with pytest.raises(RuntimeError, match=r"^0: mat1 and mat2 .*input scalar"):
        sim.sim_layers["0"](torch.tensor(1.0))


class _Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 2)

    def forward(self, x, y):
        return self.lin(x * y)


def test_a_batch_of_one_is_overridden_by_a_batch_it_broadcasts_against():
    """A (1, 1, 1) first argument beside a (4, 1, 1) one that it broadcasts against: 4
    samples. Only a square mask of side the first's sequence length above 1 is no batch; a
    last dimension of 1 is no sequence (read as a square mask, the call counted 1)."""
    args = (torch.randn(1, 1, 1), torch.randn(4, 1, 1))
    sim = cimsim.deploy(_Scaled().eval(), lossless_chip(), args, progress=False)
    sim.reset()
    sim(*args)
    assert sim.n_inferences == 4


def test_a_one_d_input_with_batch_dim_one_is_one_sample():
    """``batch_dim = 1`` and a 1-D input (calibrated 1-D too): it has no dimension 1, so it
    is one sample (read as batched, its dimension 1 was looked up: an IndexError)."""
    sim = cimsim.deploy(nn.Linear(5, 2).eval(), lossless_chip(), torch.randn(5), batch_dim=1,
                        progress=False)
    sim.reset()
    sim(torch.randn(5))
    assert sim.n_inferences == 1


class _Packed(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(3, 4)

    def forward(self, packed):
        return self.rnn(packed)[0].data


def test_a_packed_sequence_counts_its_sequences():
    """A PackedSequence of 3 sequences of lengths 3, 2, 1 (batch sizes 3, 2, 1 per step) is 3
    samples: its first step's batch, not its last's (1)."""
    from torch.nn.utils.rnn import pack_sequence

    def packed():
        return pack_sequence([torch.randn(n, 3) for n in (3, 2, 1)])

    sim = cimsim.deploy(_Packed().eval(), lossless_chip(), packed(), progress=False)
    sim.reset()
    sim(packed())
    assert sim.n_inferences == 3


class _Queries(nn.Module):
    """``a`` reads learned queries (whatever the batch), ``b`` the input."""

    def __init__(self):
        super().__init__()
        self.q = nn.Parameter(torch.randn(3, 16))
        self.a, self.b = nn.Linear(16, 16), nn.Linear(16, 16)

    def forward(self, x):
        return self.b(x) + self.a(self.q).sum()


def test_an_empty_batch_reprograms_nothing():
    """Over capacity a forward rewrites the arrays of the matrices it ran; a call of an empty
    batch is no inference and is charged no reload, even where a layer ran on inputs of its
    own (learned queries): no ``array/reprogram`` events; a batch of 2 is charged."""
    ideal = cimsim.load_chip("ideal")
    chip = ideal.replace(array=ideal.array.replace(
        n_rows=8, n_cols=8, n_tiles=1, arrays_per_tile=1, allow_time_multiplexing=True))
    sim = cimsim.deploy(_Queries().eval(), chip, torch.randn(8, 16), progress=False)
    assert sim.arrays_needed > chip.array_slots
    reprogram = event_key(Component.ARRAY, Action.REPROGRAM)
    sim.reset()
    sim(torch.randn(0, 16))
    assert sim.n_inferences == 0 and sim.events.get(reprogram) == 0
    sim(torch.randn(2, 16))
    assert sim.events.get(reprogram) > 0


def test_the_cosine_of_an_all_zero_output_is_nan():
    """Zero inputs through a layer without bias on the ideal chip: y_s = y_f = 0, exact
    (rel_error 0), and their cosine undefined: NaN, as the trace's table says (not 0, which
    reads as orthogonal)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 3, bias=False)).eval()
    sim = cimsim.deploy(model, "ideal", torch.randn(16, 6), progress=False)
    row = sim.trace(torch.zeros(4, 6)).iloc[0]
    assert row.rel_error == 0.0
    assert np.isnan(row.cosine) and np.isnan(row.accum_cosine)


def test_the_accumulated_cosine_covers_the_paired_batches_alone():
    """``b`` pairs in the first batch (2 rows in both passes) and not in the second (2 rows
    against 3): its accumulated cosine on the lossless chip is that of the first batch, near
    1 (the unpaired batch's simulated outputs counted in its norm pulled it to about 0.7)."""
    model = _Phased({1: 2, 2: 2, 3: 2, 0: 3}).eval()
    sim = cimsim.deploy(model, lossless_chip(), torch.randn(4, 4), progress=False)
    sim.model.n = 0
    with pytest.warns(UserWarning, match=r"trace: layers 'b' ran otherwise"):
        frame = sim.trace(torch.randn(8, 4), batch_size=4).set_index("layer")
    assert frame.loc["b", "accum_cosine"] > 0.999
    assert frame.loc["b", "accum_rel_error"] < 0.05


class _Dense(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 2)

    def forward(self, x):
        return self.lin(x.to_dense())


def test_a_sparse_calibration_of_batch_size_samples_is_one_batch_as_given():
    """A sparse calibration tensor of exactly ``batch_size`` samples is one batch, passed as
    given (a sparse tensor cannot be narrowed; cut, it was refused)."""
    x = torch.randn(8, 6).relu().to_sparse()
    sim = cimsim.deploy(_Dense().eval(), lossless_chip(), x, batch_size=8, progress=False)
    assert sim.sim_layers["lin"].cores[0].n_calibration_vectors == 8


class _Relu6Fn(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(torch.nn.functional.relu6(self.lin(x)))


def test_functional_relu6_clamps_the_fused_conversion_at_six(caplog):
    """``F.relu6`` after a layer (a traced call_function) is its ReLU clamped at 6: the
    layer-output ADC is told the clamp 6.0 (as for ``nn.ReLU6``), the head none."""
    chip = ideal_chip(adc=dict(placement="layer_output"), dac=dict(bits=None),
                  device=dict(bits_per_cell=7))
    with caplog.at_level("WARNING"):
        sim = cimsim.deploy(_Relu6Fn().eval(), chip, torch.randn(16, 6), progress=False)
    assert sim.sim_layers["lin"].cores[0].activation_clamp == 6.0
    assert sim.sim_layers["head"].cores[0].activation_clamp is None


def test_an_exclude_name_keeps_its_container_digital_not_a_longer_name():
    """``exclude=["fc"]`` keeps ``fc`` and the layers in a container named ``fc`` digital,
    but not ``fc2``, whose name only begins with it."""
    model = nn.Sequential()
    model.add_module("fc", nn.Linear(4, 4))
    model.add_module("fc2", nn.Linear(4, 3))
    sim = cimsim.deploy(model.eval(), lossless_chip(), torch.randn(8, 4), exclude=["fc"],
                        progress=False)
    assert list(sim.sim_layers) == ["fc2"]
    assert [d[0] for d in sim.digital] == ["fc"]


def test_excluding_in_proj_keeps_the_three_input_projections_digital():
    """``NAME.in_proj`` names q, k and v at once: all three are digital (each listed), the
    output projection stays on the arrays."""
    sim = cimsim.deploy(_mha_model(), lossless_chip(), torch.randn(5, 2, 8),
                        exclude=["att.in_proj"], batch_dim=1, progress=False)
    assert [c.digital for c in sim.sim_layers["att"].cores] == [True, True, True, False]
    assert {"att.q_proj", "att.k_proj", "att.v_proj"} <= {d[0] for d in sim.digital}


class _FirstRows(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 2)

    def forward(self, x):
        return self.lin(x[:8])


def test_few_calibration_vectors_are_warned_only_against_what_another_matrix_saw():
    """Every matrix of the model saw 8 of 40 calibration samples (the model reads 8 rows of
    its input): none saw under a quarter of what another matrix saw, so none is named as
    calibrated on few vectors (a routed expert would be)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim = cimsim.deploy(_FirstRows().eval(), lossless_chip(), torch.randn(40, 6),
                            progress=False)
    assert sim.sim_layers["lin"].cores[0].n_calibration_vectors == 8


_FORWARDS: list[int] = []  # not an attribute: deploy undoes what a forward stores in those


class _Counted(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        _FORWARDS.append(1)
        return self.b(torch.relu(self.a(x)))


def test_simulated_calibration_runs_no_passes_where_no_range_is_calibrated():
    """``adc.calibration_mode = 'simulated'`` refits calibrated ADC ranges on simulated
    inputs, one more pass per later stage; with full-scale ranges there is nothing to fit:
    one float pass of the one batch, and a second stage costs none (it ran one more)."""
    model = _Counted().eval()
    _FORWARDS.clear()
    cimsim.deploy(model, ideal_chip(adc=dict(calibration_mode="simulated")), torch.randn(8, 4),
                  progress=False)
    assert len(_FORWARDS) == 1
    _FORWARDS.clear()
    calibrated = ideal_chip(adc=dict(calibration_mode="simulated", range_policy="calibrated"))
    cimsim.deploy(model, calibrated, torch.randn(8, 4), progress=False)
    assert len(_FORWARDS) == 2


def test_deploy_at_a_later_time_runs_at_that_time():
    """``deploy(t_inference_s=t)``: the deployed model is seen ``t`` seconds after programming
    (``sim.t_s``, the report's time), not at ``drift_t0_s``."""
    chip = cimsim.load_chip("rram-22nm")
    t = 10.0 * chip.device.drift_t0_s + 3600.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sim = cimsim.deploy(nn.Linear(4, 3).eval(), chip, torch.randn(8, 4), t_inference_s=t,
                            progress=False)
    assert sim.t_s == t


def test_modes_set_keeps_the_callers_modes_within_the_block():
    """Within ``sim.modes_set()`` a forward keeps a BatchNorm the caller put in training mode
    (``calibrate_bn``'s pass), without a warning; after the block a forward sets it back to
    eval, with one."""
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).eval()
    sim = cimsim.deploy(model, lossless_chip(), torch.randn(16, 4), progress=False)
    with sim.modes_set(), warnings.catch_warnings():
        warnings.simplefilter("error")
        sim.model[1].train()
        sim(torch.randn(8, 4))
        assert sim.model[1].training
    with pytest.warns(UserWarning, match="training mode"):
        sim(torch.randn(8, 4))
    assert not sim.model[1].training


def test_trace_refuses_zero_code_vectors_and_a_zero_batch():
    from cimsim.errors import MappingError

    sim = cimsim.deploy(nn.Linear(4, 3).eval(), lossless_chip(), torch.randn(8, 4),
                        progress=False)
    for kwargs in (dict(max_code_vectors=0), dict(batch_size=0)):
        with pytest.raises(MappingError, match=f"{next(iter(kwargs))} = 0 is invalid"):
            sim.trace(torch.randn(4, 4), **kwargs)


class _Items(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, items):
        return self.lin(torch.stack([t if t is not None else torch.zeros(3) for t in items]))


def test_a_list_of_per_sample_inputs_counts_its_entries():
    """A model called with a list of per-sample inputs (no tensor argument of its own) counts
    the list's entries as samples, a missing one (None) included: 3."""
    items = [torch.randn(3), torch.randn(3), None]
    sim = cimsim.deploy(_Items().eval(), lossless_chip(), [(items,)], progress=False)
    sim.reset()
    sim(items)
    assert sim.n_inferences == 3


def test_a_value_on_a_threshold_takes_the_code_above_it(monkeypatch):
    """A threshold ADC's code is the number of thresholds at or below the value (as the
    kernel counts): with thresholds 2 and 5, the values 0 and 2 read codes 0 and 1, two codes
    of one setting (thresholds strictly below: both code 0, one code)."""
    from types import SimpleNamespace

    from cimsim.mapping import layers

    tables = SimpleNamespace(shape=(1, 1), lvl=np.zeros((1, 1, 3)),
                             thr=np.array([[[2.0, 5.0]]]), delta=np.ones((1, 1)),
                             lo=np.zeros((1, 1)))
    chip = SimpleNamespace(adc=SimpleNamespace(gain_error=0.0, offset_error_lsb=0.0))
    layer = SimpleNamespace(adc=tables, chip=chip)
    block = SimpleNamespace(group=0, values=np.array([0.0, 2.0]))
    monkeypatch.setattr(layers.engine, "analog_values", lambda layer, x_int: iter([block]))
    use = layers.adc_codes_used(layer, np.zeros((2, 1)))
    assert tuple(use) == (2, 1, 3, 2)


def test_a_reflect_padded_conv_pads_what_its_constructor_cached_as_torch():
    """With ``padding_mode = 'reflect'`` torch pads the amounts its constructor cached
    (``_reversed_padding_repeated_twice``), whatever ``.padding`` is set to later: a conv
    built with padding 1 and then given ``padding = (2, 2)`` still pads 1 (computed from
    ``.padding`` the output was two pixels larger)."""
    from cimsim.mapping.layers import SimConv

    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect").double()
    conv.padding = (2, 2)
    sim = SimConv(conv, "c", lossless_chip(), 0)  # observe mode: the float product
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(sim(x), conv(x), rtol=1e-12, atol=1e-12)


class _Order(nn.Module):
    """``a`` then ``b`` in the forward, registered in the order ``names``."""

    def __init__(self, names):
        super().__init__()
        torch.manual_seed(0)
        made = {"a": nn.Linear(6, 6), "b": nn.Linear(6, 3)}
        for name in names:
            self.add_module(name, made[name])

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_simulated_calibration_follows_the_execution_order_not_the_registration_order():
    """Simulated calibration fits each stage on the inputs the stages before it *in the
    forward* produce: a model registering ``b`` before ``a`` (which feeds it) deploys to the
    same chip as one registering them in order (each layer's devices come from its name);
    taken in registration order, ``b`` kept its float-fitted ADCs."""
    chip = cimsim.load_chip("rram-22nm")
    chip = chip.replace(adc=chip.adc.replace(range_policy="calibrated",
                                             calibration_mode="simulated"))
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(1))
    outs = []
    for names in (("a", "b"), ("b", "a")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            sim = cimsim.deploy(_Order(names).eval(), chip, x, progress=False)
        outs.append(sim(x[:8]))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


class _InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        x.mul_(2.0)  # writes into its input
        return self.lin(x)


def test_a_model_writing_into_its_input_leaves_the_callers_data_and_the_trace_alone():
    """Each pass gets copies of the batch: deploy's calibration leaves the caller's tensor as
    it was, and the trace's simulated pass reads the batch as the float pass did (reading
    what the float pass wrote, its accumulated error was that of an input doubled)."""
    x = torch.randn(16, 4)
    kept = x.clone()
    sim = cimsim.deploy(_InPlace().eval(), lossless_chip(), x, progress=False)
    assert torch.equal(x, kept)
    frame = sim.trace(x).set_index("layer")
    assert torch.equal(x, kept)
    assert frame.loc["lin", "accum_rel_error"] < 0.05


def test_only_asking_for_training_mode_warns():
    """``sim.train()`` warns (a deployed model always simulates inference); ``sim.eval()``
    (``train(False)``) is what it is already: no warning."""
    sim = cimsim.deploy(nn.Linear(4, 3).eval(), lossless_chip(), torch.randn(8, 4),
                        progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sim.eval() is sim
    with pytest.warns(UserWarning, match=r"SimModel.train\(\): a deployed model always runs"):
        sim.train()
    assert not sim.training


class _Chain(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.c = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def test_a_simulated_calibration_stage_is_fitted_to_what_the_first_inference_feeds_it():
    """Every pass of simulated calibration restarts the matrices' noise draws, as a deployed
    model's first forward starts them: the last stage's ADCs are exactly those fitted to the
    inputs the first inference after deploy feeds it (with the draws running on from the
    previous pass, ``a`` drew other noise there and ``c`` was fitted to other inputs)."""
    from cimsim.mapping.matrix import calibrate_adcs

    chip = cimsim.load_chip("rram-22nm")
    chip = chip.replace(adc=chip.adc.replace(range_policy="calibrated",
                                             calibration_mode="simulated"))
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sim = cimsim.deploy(_Chain().eval(), chip, x, progress=False)
    seen = []
    sim.model.c.register_forward_pre_hook(lambda m, args: seen.append(args[0].double()))
    sim(x)
    core = sim.sim_layers["c"].cores[0]
    refit = calibrate_adcs(core.view, seen[0].numpy(), core.view.activation)
    for (_, _, got), (_, _, want) in zip(core.view.parts, refit.parts, strict=True):
        np.testing.assert_array_equal(got.adc.lo, want.adc.lo)
        np.testing.assert_array_equal(got.adc.delta, want.adc.delta)


def test_the_sequence_axis_warning_names_the_right_batch_dim_and_only_when_it_tells():
    """A sequence-first attention (``batch_first = False``) on (L=5, B=2, E) inputs: with
    ``batch_dim = 1`` (right) no warning; with ``batch_dim = 0`` a warning that says to pass
    ``batch_dim=1``; with L = B (4, 4) the sizes say nothing: no warning."""
    model = _mha_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cimsim.deploy(model, lossless_chip(), torch.randn(5, 2, 8), batch_dim=1,
                      progress=False)
        cimsim.deploy(model, lossless_chip(), torch.randn(4, 4, 8), progress=False)
    with pytest.warns(UserWarning, match=r"'att' \(batch_first=False\) reads dimension 0 .* "
                                         r"Pass batch_dim=1 if the model's input is "
                                         r"sequence-first"):
        cimsim.deploy(model, lossless_chip(), torch.randn(5, 2, 8), progress=False)


class _Fails(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)
        self.gain = nn.Parameter(torch.ones(4))  # a weight kept digital: float32

    def forward(self, x):
        raise RuntimeError("boom")


def test_a_failing_calibration_notes_the_dtypes_only_where_they_differ():
    """A calibration forward that fails is noted with the inputs' and weights' dtypes only
    where they differ (float64 data into a float32 model), not where they are one."""
    for x, noted in ((torch.randn(4, 4), False), (torch.randn(4, 4, dtype=torch.float64), True)):
        with pytest.raises(RuntimeError, match="boom") as info:
            cimsim.deploy(_Fails().eval(), lossless_chip(), x, progress=False)
        notes = getattr(info.value, "__notes__", [])
        assert any("the calibration inputs are float64" in n for n in notes) is noted


def test_a_query_whose_every_key_is_masked_gives_nan_as_torch():
    """A boolean ``attn_mask`` masking every key of a query: -inf everywhere, a softmax of
    NaN for that query, as torch's module gives (a large negative bias in place of -inf gave
    it a uniform attention instead)."""
    import torch.nn.functional as F

    from cimsim.mapping.layers import attention

    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).double().eval()
    w, b = mha.in_proj_weight.reshape(3, 8, 8), mha.in_proj_bias.reshape(3, 8)

    def project(i, t):  # the four projections in float, as the arrays would compute them
        if i == 3:
            return F.linear(t, mha.out_proj.weight, mha.out_proj.bias)
        return F.linear(t, w[i], b[i])

    x = torch.randn(2, 3, 8, dtype=torch.float64)
    mask = torch.zeros(3, 3, dtype=torch.bool)
    mask[0] = True
    want, _ = mha(x, x, x, attn_mask=mask, need_weights=True)
    with torch.no_grad():
        got, _ = attention(project, x, x, x, None, True, mask, True, False, module=mha,
                           name="att")
    assert torch.isnan(want[:, 0]).all()
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, equal_nan=True)


def test_same_padding_with_a_stride_set_later_is_refused_as_torch_refuses_it():
    """``padding = 'same'`` with a stride above 1 in any dimension, set after construction
    (torch's conv reads it at every call): refused as torch refuses it."""
    from cimsim.mapping.layers import SimConv

    conv = nn.Conv2d(2, 3, 3, padding="same")
    sim = SimConv(conv, "c", lossless_chip(), 0)
    conv.stride = sim.stride = (2, 1)
    x = torch.randn(1, 2, 6, 6)
    with pytest.raises(RuntimeError, match="strided"):
        conv(x)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        sim(x)


def test_a_mapped_layer_replaced_after_deploy_is_refused():
    """A mapped layer replaced in ``sim.model`` after deploy would run in float while the
    report prices its arrays: the next call is a MappingError naming it."""
    from cimsim.errors import MappingError

    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)).eval()
    sim = cimsim.deploy(model, lossless_chip(), torch.randn(8, 4), progress=False)
    sim.model[1] = nn.Linear(4, 2)
    with pytest.raises(MappingError, match=r"1 mapped layer\(s\) are no longer in sim.model.*'1'"):
        sim(torch.randn(2, 4))


def test_an_unbatched_transposed_3d_conv_of_a_channels_last_input_runs_as_torch():
    """An unbatched (C, D, H, W) input is 4-D like a batched image: laid out channels-last it
    still gives torch's 4-D (C, D', H', W') output (its batched 5-D output has no 4-D
    channels-last format to take: it failed)."""
    from cimsim.mapping.convnd import SimConvTranspose

    torch.manual_seed(0)
    conv = nn.ConvTranspose3d(2, 3, 2).double().eval()
    sim = SimConvTranspose(conv, "t", lossless_chip(), 0)  # observe mode: float
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last)
    assert not x.is_contiguous()
    torch.testing.assert_close(sim(x), conv(x), rtol=1e-12, atol=1e-12)

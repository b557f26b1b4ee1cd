"""Tests written for the survivors of a hand-made mutation round over the model-mapping ops
(cimsim/mapping/functional.py, convnd.py, quant.py, matrix.py, recurrent.py, weight_view.py,
affine.py): each pins a behaviour that a small wrong change left every earlier test passing.
Known answers where possible: torch's own op on the same operands, the same layer deployed
another way on the lossless ``ideal`` chip, or a value worked out by hand in a comment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.arrays._rng import stream_key
from cimsim.mapping.affine import affine_source
from cimsim.mapping.convnd import (
    SimConv3d,
    SimConvTranspose,
    transpose_group_matrices,
    transpose_weight,
)
from cimsim.mapping.matrix import (
    InputStats,
    coarse_inputs,
    engine_view,
    pack_groups,
    unpack_groups,
)
from cimsim.mapping.quant import (
    act_scale,
    act_zero_point,
    quantize_acts,
    quantize_acts_counted,
    smooth_factors,
)
from cimsim.mapping.recurrent import (
    RecurrentShape,
    SimRNN,
    SimRNNCell,
    recurrent_forward,
    recurrent_matrices,
)
from cimsim.mapping.weight_view import tensor_metas, weight_like
from tests.conftest import ideal_chip

from .conftest import lossless_chip


def test_transpose_weight_inverts_the_group_matrices_group_by_group():
    """A grouped ConvTranspose's weights (C_in, C_out/groups, *k) -> the stacked per-pixel
    matrices -> back: the same tensor, each group's block in its place (the twin gives its
    learned weights back through this; groups taken in another order swap the blocks)."""
    w = torch.arange(4 * 3 * 2 * 2, dtype=torch.float64).reshape(4, 3, 2, 2)  # groups 2
    mats = transpose_group_matrices(w, 2)
    assert mats.shape == (2 * 3 * 4, 2)
    # group 1's matrix: input channels 2, 3; its first row is (c_out 0, k 0, 0)
    torch.testing.assert_close(mats[12], torch.stack([w[2, 0, 0, 0], w[3, 0, 0, 0]]))
    assert torch.equal(transpose_weight(mats, 2, tuple(w.shape)), w)


def test_unpack_groups_inverts_pack_groups_in_numpy_and_torch():
    """Stacked group matrices packed block-diagonally by 2 and unpacked: the same matrices in
    the same group order (the twin's learned weights of a packed grouped layer)."""
    mats = np.arange(6 * 2 * 3, dtype=np.float64).reshape(6 * 2, 3)  # 6 groups of (2, 3)
    packed = pack_groups(mats, 6, 2)
    assert packed.shape == (3 * 4, 6)
    np.testing.assert_array_equal(packed[2:4, 3:6], mats[2:4])  # group 1, pack 0's 2nd block
    assert not packed[0:2, 3:6].any()  # off the diagonal: zeros
    np.testing.assert_array_equal(unpack_groups(packed, 6, 2), mats)
    t = torch.from_numpy(mats)
    assert torch.equal(unpack_groups(pack_groups(t, 6, 2), 6, 2), t)


def test_a_shift_codes_span_the_whole_unsigned_range_shifted():
    """``zero_point = -2^(B-1)`` (the A-shift): the unsigned code clip(rint(x/s), 0, 2^B - 1)
    minus 2^(B-1); 8 bits: x = 255 s -> 127, x = 0 -> -128, x = 300 s saturates at 127."""
    codes = quantize_acts(np.array([0.0, 1.0, 254.6, 255.0, 300.0, -3.0]), 1.0, 8, False, -128)
    np.testing.assert_array_equal(codes, [-128, -127, 127, 127, 127, -128])


def test_the_a_shift_is_lossless_on_the_ideal_chip():
    """The A-shift re-encodes the unsigned codes as signed ones and subtracts z·Σw exactly:
    a Linear deployed with it computes what it computes without it, bit for bit, the largest
    input (code 2^B - 1) included; its zero point is -2^(B-1)."""
    torch.manual_seed(0)
    lin = nn.Linear(12, 5).double()
    x = torch.rand(40, 12, dtype=torch.float64)
    x[0, 0] = 2.0  # the calibrated max: code 255
    plain = cimsim.deploy(lin, ideal_chip(), x, progress=False)
    shifted = cimsim.deploy(lin, ideal_chip(dac=dict(shift_unsigned_inputs=True)), x,
                            progress=False)
    view = shifted.sim_layers["0"].cores[0].view
    assert view.zero_point == -(2 ** (shifted.chip.input_bits - 1))
    assert view.input_signed
    assert torch.equal(shifted(x), plain(x))
    # signed inputs need no shift: none is made, and the negative inputs keep their codes
    xs = torch.randn(40, 12, dtype=torch.float64)
    plain = cimsim.deploy(lin, ideal_chip(), xs, progress=False)
    shifted = cimsim.deploy(lin, ideal_chip(dac=dict(shift_unsigned_inputs=True)), xs,
                            progress=False)
    assert shifted.sim_layers["0"].cores[0].view.zero_point == 0
    assert torch.equal(shifted(xs), plain(xs))


def test_a_code_at_the_range_end_is_no_saturation():
    """The saturation count takes the codes beyond [lo, hi] only: 8-b signed codes 127 and
    -127 are in range, 128 (x = 127.6) and -128 saturate."""
    _, n = quantize_acts_counted(np.array([127.0, -127.0, 127.4, 127.6, -128.0, 0.0]), 1.0, 8,
                                 True)
    assert n == 2
    _, n = quantize_acts_counted(np.array([255.0, 0.0, 255.6, -0.6]), 1.0, 8, False)
    assert n == 2


def test_percentile_zero_point_clips_both_ends_of_the_range():
    """``act_calibration = 'percentile'`` with a zero point: the range is the (100 - p)-th to
    the p-th percentile of the sample. Values -5 ... 15 in steps of 0.01, p = 99: the range
    [-4.8, 14.8], s = 19.6 / 255, z = rint(4.8 / s) = rint(62.45) = 62 (the whole range
    [-5, 15] gives 64)."""
    xs = np.linspace(-5.0, 15.0, 2001)
    cfg = cimsim.load_chip("ideal").quant.replace(act_calibration="percentile",
                                                  act_percentile=99.0)
    s, z = act_zero_point(-5.0, 15.0, xs, 8, cfg)
    assert s == pytest.approx(19.6 / 255, rel=1e-12)
    assert z == 62


def test_mse_zero_point_can_keep_the_whole_range():
    """The MSE search over shrunk ranges includes the full one: a sample of its two ends only
    (-1 and 3) errs by a rounding step at the full range and by the clip at any narrower,
    so the search keeps s = 4 / 255, z = rint(63.75) = 64."""
    xs = np.array([-1.0, 3.0] * 50)
    cfg = cimsim.load_chip("ideal").quant.replace(act_calibration="mse")
    s, z = act_zero_point(-1.0, 3.0, xs, 8, cfg)
    assert s == pytest.approx(4.0 / 255, rel=1e-12)
    assert z == 64


def test_a_percentile_clip_of_zero_falls_back_to_the_max():
    """Sparse inputs whose p-th percentile of |x| is 0 (one nonzero value in 1000): the
    percentile gives no range, so the scale is max|x| / q (5 / 255), never 0."""
    sample = np.zeros(1000)
    sample[0] = 5.0
    cfg = cimsim.load_chip("ideal").quant.replace(act_calibration="percentile",
                                                  act_percentile=99.0)
    assert act_scale(5.0, sample, 8, False, cfg) == pytest.approx(5.0 / 255, rel=1e-12)


def test_input_stats_keep_the_extremes_of_every_batch():
    """Calibration statistics over two batches: the first batch's minimum (-3) stays the
    minimum after a non-negative second batch, so the matrix quantizes signed inputs."""
    stats = InputStats(0)
    stats.observe(np.array([[-3.0, 1.0], [0.5, 2.0]]))
    stats.observe(np.array([[0.0, 4.0], [1.0, 0.25]]))
    assert (stats.min_val, stats.max_val, stats.max_abs) == (-3.0, 4.0, 4.0)
    np.testing.assert_array_equal(stats.chan_min, [-3.0, 0.25])
    np.testing.assert_array_equal(stats.chan_max, [1.0, 4.0])
    view = engine_view(np.eye(2), cimsim.load_chip("ideal"), stats)
    assert view.input_signed


def test_the_groups_of_a_conv_share_a_percentile_scale():
    """The groups of a grouped conv read one tensor: one input quantizer, its percentile
    taken over the samples of every group pooled (group 0's channels are 10x group 1's:
    each group's own percentile would give two scales)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 1, groups=2).double()
    x = torch.randn(8, 4, 5, 5, dtype=torch.float64)
    x[:, :2] *= 10.0
    ideal = cimsim.load_chip("ideal")
    chip = ideal.replace(quant=ideal.quant.replace(act_calibration="percentile",
                                                   act_percentile=99.0))
    sim = cimsim.deploy(nn.Sequential(conv), chip, x, progress=False)
    cores = sim.sim_layers["0"].cores
    assert len(cores) == 2
    pooled = np.abs(np.concatenate([x[:, :2].permute(0, 2, 3, 1).reshape(-1).numpy(),
                                    x[:, 2:].permute(0, 2, 3, 1).reshape(-1).numpy()]))
    want = np.percentile(pooled, 99.0) / 127
    assert cores[0].s_x == cores[1].s_x == pytest.approx(want, rel=1e-12)


def test_coarse_inputs_count_the_signed_codes():
    """Signed 8-b inputs have 127 codes a side: with one outlier row (max|x| = 127, s_x = 1)
    a vector is coarse when its peak is below 127 / 32 = 3.97 codes (the unsigned range's
    255 / 32 = 7.97 would call peaks of 5 coarse too)."""
    chip = cimsim.load_chip("ideal")
    for peak, coarse in ((5.0, False), (3.0, True)):
        x = np.full((20, 4), -peak)
        x[0, 0] = 127.0  # the outlier: s_x = 127 / 127
        stats = InputStats(0)
        stats.observe(x)
        view = engine_view(np.eye(4), chip, stats)
        assert view.input_signed and view.s_x == 1.0 and view.zero_point == 0
        assert coarse_inputs(view, stats) is coarse, peak


def test_the_groups_of_a_conv_are_never_coarse():
    """The groups of a conv share one input step (set by the largest group): a group whose
    channels are 1000x smaller than another's is per-tensor quantization as designed, not an
    outlier in the calibration data."""
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 2, 1, groups=2).double()
    x = torch.randn(8, 2, 5, 5, dtype=torch.float64)
    x[:, 1] *= 1e-3
    sim = cimsim.deploy(nn.Sequential(conv), cimsim.load_chip("ideal"), x, progress=False)
    assert [c.coarse_inputs for c in sim.sim_layers["0"].cores] == [False, False]


def test_a_column_quantized_matrix_of_one_row_tile_is_one_part_named_as_the_layer():
    """``column`` granularity programs one part per row tile; a matrix that fits one tile
    is one part, named as the layer (no ``[0:K]`` suffix), and a matrix of two tiles is
    two parts named by their rows."""
    chip = lossless_chip("column", n_rows=37)
    x = np.random.default_rng(0).standard_normal((10, 30))
    view = engine_view(np.ones((3, 30)), chip, x, name="fc")
    assert [(a, b, layer.name) for a, b, layer in view.parts] == [(0, 30, "fc")]
    x = np.random.default_rng(0).standard_normal((10, 40))
    view = engine_view(np.ones((3, 40)), chip, x, name="fc")
    assert [(a, b, layer.name) for a, b, layer in view.parts] == [(0, 37, "fc[0:37]"),
                                                                   (37, 40, "fc[37:40]")]


def test_a_percentile_scale_of_smoothed_inputs_is_taken_on_the_smoothed_inputs():
    """With ``smooth_alpha`` the quantizer sees x / s: its percentile clip is the percentile
    of |x / s| over the sample (that of |x| would be a range the inputs no longer have)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 6)) * np.array([1.0, 20.0, 0.5, 3.0, 1.0, 8.0])
    w = rng.standard_normal((4, 6))
    ideal = cimsim.load_chip("ideal")
    chip = ideal.replace(quant=ideal.quant.replace(smooth_alpha=0.5, act_calibration="percentile",
                                                   act_percentile=99.0))
    view = engine_view(w, chip, x)
    s = smooth_factors(np.abs(x).max(axis=0), w, 0.5)
    np.testing.assert_allclose(view.smooth, s, rtol=1e-12)
    want = np.percentile(np.abs(x / s), 99.0) / 127
    assert view.s_x == pytest.approx(want, rel=1e-12)


def _lstm_cores(**kw):
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=2, proj_size=2, batch_first=True, **kw)
    sim = cimsim.deploy(nn.Sequential(lstm), cimsim.load_chip("ideal"), torch.randn(2, 5, 3),
                        progress=False)
    return sim.sim_layers["0"]


def test_a_projected_lstm_calibrates_its_projection_with_the_recurrent_matrices():
    """Per layer: the input matrices of both directions, then W_hh and W_hr of both (both read
    states the layer produces)."""
    layer = _lstm_cores(bidirectional=True)
    names = [[c.name.removeprefix("0.") for c in s] for s in layer.calibration_stages()]
    assert names == [
        ["weight_ih_l0", "weight_ih_l0_reverse"],
        ["weight_hh_l0", "weight_hr_l0", "weight_hh_l0_reverse", "weight_hr_l0_reverse"],
        ["weight_ih_l1", "weight_ih_l1_reverse"],
        ["weight_hh_l1", "weight_hr_l1", "weight_hh_l1_reverse", "weight_hr_l1_reverse"]]


def test_the_latency_stages_of_a_projected_lstm_stack():
    """Bidirectional: layer k's W_ih / W_hh are stage 2k, its W_hr stage 2k + 1 (two stages a
    layer), no lag. Unidirectional: a wavefront, W_hr a stage after its layer's matrices,
    layer k lagging k vectors."""
    layer = _lstm_cores(bidirectional=True)
    assert [(c.name.removeprefix("0."), c.stage) for c in layer.cores] == [
        ("weight_ih_l0", 0), ("weight_hh_l0", 0), ("weight_hr_l0", 1),
        ("weight_ih_l0_reverse", 0), ("weight_hh_l0_reverse", 0), ("weight_hr_l0_reverse", 1),
        ("weight_ih_l1", 2), ("weight_hh_l1", 2), ("weight_hr_l1", 3),
        ("weight_ih_l1_reverse", 2), ("weight_hh_l1_reverse", 2), ("weight_hr_l1_reverse", 3)]
    layer = _lstm_cores()
    assert [(c.name.removeprefix("0."), c.stage, c.lag_vectors) for c in layer.cores] == [
        ("weight_ih_l0", 0, 0.0), ("weight_hh_l0", 0, 0.0), ("weight_hr_l0", 1, 0.0),
        ("weight_ih_l1", 0, 1.0), ("weight_hh_l1", 0, 1.0), ("weight_hr_l1", 1, 1.0)]


def test_every_matrix_of_a_recurrent_layer_draws_its_own_stream():
    """Core i of a recurrent layer (and of a cell) is seeded ``stream_key(seed, i)``: the
    matrices' programming variation is drawn independently, not repeated matrix to matrix."""
    chip = cimsim.load_chip("ideal")
    layer = SimRNN(nn.GRU(3, 4, num_layers=2), "r", chip, 7)
    assert [c.seed for c in layer.cores] == [stream_key(7, i) for i in range(4)]
    cell = SimRNNCell(nn.LSTMCell(3, 4), "c", chip, 7)
    assert [c.seed for c in cell.cores] == [stream_key(7, 0), stream_key(7, 1)]


class _CellThenReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = nn.RNNCell(3, 4)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 4)
        self.act2 = nn.ReLU()

    def forward(self, x, h):
        return self.act2(self.fc(self.act(self.cell(x, h))))


def test_a_recurrent_cell_never_fuses_the_following_relu():
    """A cell's output is the state update of two products (a tanh of their sum): no ADC
    conversion is the ReLU's input, so only the Linear's ReLU fuses (ADC set up as in
    tests/mapping/test_fused_activation)."""
    ideal = cimsim.load_chip("ideal")
    chip = ideal.replace(
        dac=ideal.dac.replace(bits=None), device=ideal.device.replace(bits_per_cell=7),
        array=ideal.array.replace(n_rows=64, n_cols=64),
        adc=ideal.adc.replace(kind="sar", bits=6, range_policy="calibrated",
                              placement="layer_output", fuse_activation=True))
    torch.manual_seed(0)
    x, h = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64)
    sim = cimsim.deploy(_CellThenReLU().double(), chip, (x, h), progress=False)
    assert sim.fused_activations == ["fc"]


class _FlattensLeadingDims(nn.Module):
    """A Linear on 2-D inputs that flattens every other input to 2-D: (2, 3, n) -> (6, m),
    where a Linear keeps (2, 3, m)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 6))

    def forward(self, x):
        return x.reshape(-1, x.shape[-1]) @ self.weight.t()


def test_the_affine_probe_tries_inputs_of_two_ranks():
    """A module that equals F.linear on 2-D inputs only is no Linear: mapped as one, its 3-D
    inputs would give outputs of another shape than its own."""
    torch.manual_seed(0)
    module = _FlattensLeadingDims()
    assert affine_source(module) is None


class _LinearWithChild(nn.Module):
    """F.linear with its own weight and bias, then a child module (dropout): in eval mode it
    computes F.linear, but it holds more than a weight and a bias."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 6))
        self.bias = nn.Parameter(torch.randn(4))
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(F.linear(x, self.weight, self.bias))


def test_a_module_with_children_is_no_affine_source():
    torch.manual_seed(0)
    assert affine_source(_LinearWithChild()) is None


class _PicksColumnsByWeight(nn.Module):
    """Activation columns picked by an index computed from a weight, then multiplied by an
    activation: the product reads activations only; the weight never reaches a product."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.order = nn.Parameter(torch.randn(6, 6))

    def forward(self, x):
        h = self.fc(x)
        picked = h[:, self.order.argmax(0)]
        return picked @ h.t()


def test_an_activation_selected_by_a_weight_derived_index_is_no_weight():
    """The index is the weight's (an integer computed from it), the values picked are the
    activation's: the product that follows names no functional weight."""
    torch.manual_seed(0)
    assert "order" not in _digital_rows(_PicksColumnsByWeight(), torch.randn(8, 6))


def _digital_rows(model: nn.Module, x: torch.Tensor) -> dict[str, str]:
    sim = cimsim.deploy(model, cimsim.load_chip("ideal"), x, progress=False)
    sim(x)
    return {row.layer: row.reason for row in sim.report().digital.itertuples()}


class _PositionThenRMSNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.pos = nn.Parameter(torch.randn(5, 6))
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        h = self.fc(x) + self.pos  # (B, 5, 6) + (5, 6): within the activation's shape
        return self.out(h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6))


def test_a_position_table_added_within_the_activation_is_no_distance():
    """A table added to an activation of its own shape (a position embedding), then squared
    by a hand-written RMSNorm, is no distance to the table's rows: the table stays silent
    (only an addition that broadcasts the activation against the rows, making an output
    larger than it, is)."""
    torch.manual_seed(0)
    assert "pos" not in _digital_rows(_PositionThenRMSNorm(), torch.randn(4, 5, 6))


class _Windowed(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.register_buffer("window", torch.rand(4, 6))
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        h = self.fc(x)
        return self.out((h[:, None, :] * self.window).sum(-1))


def test_a_buffer_multiplied_element_wise_by_an_activation_is_no_learned_weight():
    """A fixed float window (a buffer) multiplied element-wise by an activation and summed is
    silent; only a learned weight so multiplied is named as computed element-wise."""
    torch.manual_seed(0)
    assert "window" not in _digital_rows(_Windowed(), torch.randn(8, 6))


def test_weight_like_names():
    for name in ("weight", "bias", "in_proj_weight", "in_proj_bias", "weight_ih_l0", "bias_k",
                 "attn_bias", "q_proj_weight"):
        assert weight_like(name), name
    for name in ("scale", "running_mean", "gamma", "alpha"):
        assert not weight_like(name), name


def test_tensor_metas_list_a_none_only_where_torch_registered_it():
    """``nn.Linear(bias=False)``'s bias is a registered None (listed: the model may test
    ``layer.bias is not None``); a plain attribute set to None is a configuration attribute,
    not a weight (not listed)."""
    lin = nn.Linear(4, 3, bias=False)
    lin.weight_hint = None
    metas = tensor_metas(lin)
    assert set(metas) == {"weight", "bias"}
    assert metas["bias"] is None and metas["weight"].shape == (3, 4)


def test_a_twins_own_learned_bias_set_again_stays_registered():
    """A prepared ConvTranspose's twin learns its bias as its own parameter: a parameter set
    on it after it was built replaces the registered one (the optimizer and state_dict see
    it); only a weight the layer does not register is kept aside as set from outside."""
    import cimsim.train

    torch.manual_seed(0)
    prepared = cimsim.train.prepare(nn.Sequential(nn.ConvTranspose1d(2, 3, 2)),
                                    cimsim.load_chip("ideal"), torch.randn(4, 2, 5))
    twin = prepared.model[0]
    new = nn.Parameter(torch.zeros(3))
    twin.bias = new
    assert "bias" not in vars(twin)
    assert dict(twin.named_parameters(recurse=False))["bias"] is new
    assert twin.bias is new


def test_an_unbatched_transposed_conv_takes_output_size_with_or_without_channels():
    """torch takes an unbatched input's ``output_size`` as (L,) or (C, L): both give torch's
    output (the float product of the observe mode, exact in float64)."""
    torch.manual_seed(0)
    conv = nn.ConvTranspose1d(2, 3, 3, stride=2, padding=1).double()
    x = torch.randn(2, 4, dtype=torch.float64)
    sim = SimConvTranspose(conv, "t", lossless_chip(), 0)
    for size in ([8], [3, 8]):
        want = conv(x, output_size=size)
        assert want.shape == (3, 8)
        torch.testing.assert_close(sim(x, output_size=size), want, rtol=1e-12, atol=1e-12)


def test_a_conv3d_input_smaller_than_its_kernel_is_refused_naming_the_layer():
    conv = nn.Conv3d(2, 2, 3).double()
    sim = SimConv3d(conv, "c3", lossless_chip(), 0)
    with pytest.raises(RuntimeError, match=r"^c3: Calculated padded input size per channel: "
                                           r"\(2 x 4 x 4\)\. Kernel size: \(3 x 3 x 3\)"):
        sim(torch.randn(1, 2, 2, 4, 4, dtype=torch.float64))


class _ReadsOutABuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.register_buffer("basis", torch.randn(6, 6))
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        scale = float(np.abs(self.basis.numpy()).max())  # a constant read out of a buffer
        return self.out(self.fc(x) / scale)


def test_a_buffer_read_out_of_torch_is_no_learned_weight():
    """A learned matrix read out of torch (``.numpy()``) is named, its computation unseen; a
    float buffer so read (a fixed basis) is no learned weight and stays silent."""
    torch.manual_seed(0)
    assert "basis" not in _digital_rows(_ReadsOutABuffer(), torch.randn(8, 6))


def test_an_unbatched_lstm_with_an_initial_state_equals_torch():
    """An unbatched sequence (L, H_in) with its state (h_0, c_0), each (layers, H): the
    layer's recurrence (its float product in observe mode) is torch's."""
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=2).double()
    sim = SimRNN(lstm, "r", lossless_chip(), 0)
    x = torch.randn(5, 3, dtype=torch.float64)
    state = (torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64))
    got, (h, c) = sim(x, state)
    want, (h_w, c_w) = lstm(x, state)
    for a, b in ((got, want), (h, h_w), (c, c_w)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_training_dropout_between_recurrent_layers_takes_torchs_probability():
    """``dropout = 1`` between layers in training mode zeroes every input of the second layer,
    as torch's LSTM does (deterministic, so the two compare): the products done by a plain
    F.linear of the layer's own weights, the equations by ``recurrent_forward``."""
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=2, dropout=1.0).double().train()
    names = recurrent_matrices(lstm)

    def project(idx, which, x):
        w_name, b_name = names[idx][which]
        return F.linear(x, getattr(lstm, w_name), getattr(lstm, b_name))

    x = torch.randn(5, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        got, (h, c) = recurrent_forward(project, RecurrentShape.of(lstm), True, x, None, "r")
        want, (h_w, c_w) = lstm(x)
    for a, b in ((got, want), (h, h_w), (c, c_w)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)

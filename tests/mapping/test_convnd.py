"""Conv3d and ConvTranspose1d/2d/3d on the arrays (issue 15 item, worktree ``layers``):
the geometry equals torch in float, the lossless chip is exact on integer data, the matrices,
arrays and digital adds are counted, and a small U-Net decoder runs on ``rram-22nm``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import cimsim
from cimsim.arrays.program import n_arrays_for_shape
from cimsim.events import Action, Component
from cimsim.mapping.convnd import SimConv3d, SimConvTranspose

from .conftest import lossless_chip

CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


@st.composite
def transpose_configs(draw):
    nd = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2]))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    padding = tuple(draw(st.integers(0, (k - 1) * d)) for k, d in zip(kernel, dilation,
                                                                      strict=True))
    # torch: output_padding < max(stride, dilation)
    out_pad = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation,
                                                                       strict=True))
    size = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    return nd, groups, kernel, stride, dilation, padding, out_pad, size, draw(st.booleans())


@settings(max_examples=40, deadline=None)
@given(transpose_configs())
def test_conv_transpose_geometry_equals_torch_in_float(cfg):
    nd, groups, kernel, stride, dilation, padding, out_pad, size, bias = cfg
    torch.manual_seed(0)
    conv = CONV_T[nd](2 * groups, 3 * groups, kernel, stride=stride, padding=padding,
                      output_padding=out_pad, dilation=dilation, groups=groups,
                      bias=bias).double()
    x = torch.randn(2, 2 * groups, *size, dtype=torch.float64)
    sim = SimConvTranspose(conv, "t", lossless_chip(), 0)  # observe mode: the float matmul
    try:
        want = conv(x)
    except RuntimeError:  # an empty output: refused as torch refuses it
        with pytest.raises(RuntimeError, match="Output size is too small"):
            sim(x)
        return
    torch.testing.assert_close(sim(x), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sim(x[0]), conv(x[0]), rtol=1e-12, atol=1e-12)  # unbatched


@settings(max_examples=30, deadline=None)
@given(st.tuples(*(st.integers(1, 3),) * 3), st.tuples(*(st.integers(1, 2),) * 3),
       st.tuples(*(st.integers(1, 2),) * 3), st.sampled_from([1, 2]),
       st.sampled_from(["zeros", "reflect", "replicate", "circular"]), st.booleans())
def test_conv3d_geometry_equals_torch_in_float(kernel, stride, dilation, groups, mode, bias):
    torch.manual_seed(1)
    conv = nn.Conv3d(2 * groups, 2 * groups, kernel, stride=stride, dilation=dilation,
                     padding=1, groups=groups, padding_mode=mode, bias=bias).double()
    x = torch.randn(2, 2 * groups, 5, 4, 6, dtype=torch.float64)
    sim = SimConv3d(conv, "c", lossless_chip(), 0)
    torch.testing.assert_close(sim(x), conv(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sim(x[1]), conv(x[1]), rtol=1e-12, atol=1e-12)


def _integer_module(module: nn.Module, gen: torch.Generator) -> nn.Module:
    """Integer weights in [-127, 127] with a 127 per group (tensor granularity: s_w = 1) and
    integer biases: a lossless 8-bit chip then computes exactly what torch does."""
    with torch.no_grad():
        w = module.weight
        w.copy_(torch.randint(-127, 128, w.shape, generator=gen, dtype=torch.float64))
        for g in range(module.groups):  # every group's matrix (its own scale) holds a 127
            w[g * (w.shape[0] // module.groups)].view(-1)[0] = 127.0
        if module.bias is not None:
            module.bias.copy_(torch.randint(-50, 51, module.bias.shape, generator=gen,
                                            dtype=torch.float64))
    return module


def _integer_input(shape, gen: torch.Generator) -> torch.Tensor:
    x = torch.randint(-127, 128, shape, generator=gen, dtype=torch.float64)
    x.view(-1)[0] = 127.0  # max |x| = 127: s_x = 1 exactly
    return x


EXACT_CASES = [
    ("convT1d", lambda: nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1,
                                           groups=2), (3, 4, 7)),
    ("convT2d", lambda: nn.ConvTranspose2d(5, 4, (3, 2), stride=(2, 3), padding=(1, 0),
                                           output_padding=(1, 2), dilation=(2, 1)), (2, 5, 4, 3)),
    ("convT3d", lambda: nn.ConvTranspose3d(3, 2, 2, stride=2, bias=False), (2, 3, 2, 3, 2)),
    ("conv3d", lambda: nn.Conv3d(4, 6, (2, 3, 3), stride=(1, 2, 1), padding=(1, 0, 2),
                                 dilation=(1, 1, 2), groups=2, padding_mode="reflect"),
     (2, 4, 4, 5, 6)),
    ("conv3d_same", lambda: nn.Conv3d(3, 5, 3, padding="same"), (2, 3, 3, 4, 4)),
]


@pytest.mark.parametrize(("label", "make", "shape"), EXACT_CASES, ids=[c[0] for c in EXACT_CASES])
def test_lossless_chip_is_exact_on_integer_data(label, make, shape):
    gen = torch.Generator().manual_seed(5)
    conv = _integer_module(make().double().eval(), gen)
    x = _integer_input(shape, gen)
    chip = lossless_chip("tensor", n_rows=13, n_cols=23)  # several row and column tiles
    sim = cimsim.deploy(nn.Sequential(conv), chip, x, seed=2)
    layer = sim.sim_layers["0"]
    assert len(layer.cores) == conv.groups
    assert {c.s_x for c in layer.cores} == {1.0}
    assert all(np.all(c.s_w == 1.0) for c in layer.cores)
    w = conv.weight
    g = conv.groups
    want = ((w.shape[1] * int(np.prod(w.shape[2:])), w.shape[0] // g) if conv.transposed
            else (w.shape[0] // g, w.shape[1] * int(np.prod(w.shape[2:]))))
    assert {c.shape for c in layer.cores} == {want}
    assert sim.arrays_needed == sum(n_arrays_for_shape(c.shape[0], c.row_tiles, chip)
                                    for c in layer.cores) > len(layer.cores)
    x_eval = _integer_input(shape, gen)
    got = sim(x_eval)
    assert torch.equal(got, conv(x_eval)), label


def _adds(sim) -> float:
    return sum(v for k, v in sim.events.items()
               if k.component is Component.ACCUMULATOR and k.action is Action.ADD)


def test_col2im_adds_known_answers():
    g = SimConvTranspose(nn.ConvTranspose1d(1, 1, 3), "t", lossless_chip(), 0).geometry
    # L_in 4, k 3: 12 contributions on 6 outputs -> 6 adds per (sample, channel)
    assert g.n_overlap_adds((2, 4), (6,)) == 2 * 6
    g = SimConvTranspose(nn.ConvTranspose2d(1, 3, (3, 2), stride=(2, 3), padding=(1, 0)),
                         "t", lossless_chip(), 0).geometry
    # H: L_in 3, k 3, s 2, p 1 -> positions -1..5 minus the cropped ones: 7 contributions
    # inside [0, 5), on 5 outputs; W: k 2, s 3: no overlap, 4 contributions on 4 of 5 outputs
    # (a gap): landed 7·4, covered 5·4 -> 8 adds per (sample, channel)
    assert g.n_overlap_adds((1, 3, 2), (5, 5)) == 3 * 8


def test_col2im_adds_skip_the_overlaps_the_padding_crops():
    """Contributions cropped by the padding are not added: k 4, s 2, p 1 crops positions -1
    and 8, both on an overlap, which an uncropped count would have priced as adds."""
    g = SimConvTranspose(nn.ConvTranspose2d(2, 3, 4, stride=2, padding=1), "t",
                         lossless_chip(), 0).geometry
    # per dimension: L_in 4 -> positions 2i + j - 1 (i, j in 0..3) = -1..8, 16 of them; inside
    # [0, 8): 14 contributions on 8 outputs -> landed 14·14, covered 8·8, times 3 channels
    assert g.n_overlap_adds((1, 4, 4), (8, 8)) == 3 * (14**2 - 8**2) == 396


def test_conv_transpose_matrices_arrays_and_digital_adds(monkeypatch):
    # 1-D, C_in 4 -> C_out 6, groups 2, k 3: two per-pixel matrices (3·3 outputs, 2 inputs)
    conv = nn.ConvTranspose1d(4, 6, 3, stride=1, groups=2).double()
    chip = lossless_chip(n_rows=64, n_cols=64)
    x = torch.randn(5, 4, 4, dtype=torch.float64)
    sim = cimsim.deploy(nn.Sequential(conv), chip, x, seed=0)
    cores = sim.sim_layers["0"].cores
    assert [c.shape for c in cores] == [(9, 2), (9, 2)]
    assert [c.name for c in cores] == ["0[g0]", "0[g1]"]
    assert sim.arrays_needed == sum(n_arrays_for_shape(9, [(0, 2)], chip) for _ in cores)
    assert cores[0].s_x == cores[1].s_x  # one input quantizer for the tensor
    sim.reset()
    sim(x[:2])
    assert [c.n_vectors for c in cores] == [2 * 4, 2 * 4]  # one vector per input pixel
    with_col2im = _adds(sim)
    sim.reset()
    monkeypatch.setattr(SimConvTranspose, "_count_overlap", lambda *a: None)
    sim(x[:2])
    # the col2im's adds on top of the engine's: 6 per (sample, channel), as counted by hand
    assert with_col2im - _adds(sim) == 2 * 6 * 6
    # output_size picks the output padding as torch does
    xs = torch.randn(2, 4, 5, dtype=torch.float64)
    conv2 = nn.ConvTranspose1d(4, 2, 3, stride=2, padding=1).double()
    sim2 = cimsim.deploy(nn.Sequential(conv2), chip, xs)
    layer = sim2.sim_layers["0"]
    assert layer(xs, output_size=[10]).shape == conv2(xs, output_size=[10]).shape


def test_conv_transpose_never_fuses_the_following_relu():
    ideal = cimsim.load_chip("ideal")
    chip = ideal.replace(  # one conversion per output (as tests/mapping/test_fused_activation)
        dac=ideal.dac.replace(bits=None), device=ideal.device.replace(bits_per_cell=7),
        array=ideal.array.replace(n_rows=64, n_cols=64),
        adc=ideal.adc.replace(kind="sar", bits=6, range_policy="calibrated",
                              placement="layer_output", fuse_activation=True))
    model = nn.Sequential(nn.ConvTranspose2d(3, 4, 2, stride=2), nn.ReLU(),
                          nn.Conv2d(4, 4, 1), nn.ReLU()).double()
    x = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    sim = cimsim.deploy(model, chip, x)
    # the conv fuses; the transposed conv's output sums several conversions and the bias
    assert sim.fused_activations == ["2"]


class UNetDecoder(nn.Module):
    """A small U-Net: two strided convs down, ConvTranspose2d up with skip concatenations."""

    def __init__(self):
        super().__init__()
        self.d1 = nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.d2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.u1 = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.u2 = nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1)
        self.head = nn.Conv2d(9, 2, 1)

    def forward(self, x):
        h1 = F.relu(self.d1(x))
        h2 = F.relu(self.d2(h1))
        u = F.relu(self.u1(h2))
        u = F.relu(self.u2(torch.cat([u, h1], 1)))
        return self.head(torch.cat([u, x], 1))


def test_unet_decoder_on_rram_22nm():
    torch.manual_seed(0)
    model = UNetDecoder().eval()
    x = torch.randn(8, 1, 16, 16)
    chip = cimsim.load_chip("rram-22nm")
    sim = cimsim.deploy(model, chip, x, seed=1)
    assert set(sim.sim_layers) == {"d1", "d2", "u1", "u2", "head"}
    assert sim.digital == []
    assert sim.sim_layers["u2"].cores[0].shape == (8 * 9, 16)
    with torch.no_grad():
        ref = model(x[:2])
    y = sim(x[:2])
    assert y.shape == ref.shape and torch.isfinite(y).all()
    cos = float(F.cosine_similarity(y.flatten(), ref.flatten(), dim=0))
    assert cos > 0.5, cos  # an untrained net whose 9-input convs lose most (d1: ~5 dB)
    fid = sim.trace(x[:2]).set_index("layer")
    assert (fid.loc[["u1", "u2"], "sqnr_db"] > 6).all(), fid  # ~9-10 dB at seed 1
    rep = sim.report()
    assert set(rep.layers["layer"]) >= {"u1", "u2"}


@pytest.mark.parametrize("make, shape, fmt", [
    (lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 6, 6), torch.channels_last),
    (lambda: nn.Conv2d(4, 4, 3, groups=4), (2, 4, 6, 6), torch.channels_last),
    (lambda: nn.ConvTranspose2d(3, 4, 3, stride=2), (2, 3, 5, 5), torch.channels_last),
    (lambda: nn.Conv3d(3, 4, 3), (2, 3, 5, 5, 5), torch.channels_last_3d),
    (lambda: nn.ConvTranspose3d(3, 2, 2), (2, 3, 3, 3, 3), torch.channels_last_3d),
])
def test_a_channels_last_input_gives_torchs_output_format(make, shape, fmt):
    """As torch's conv layers: a channels-last input gives a channels-last output (the
    simulated conv returned NCHW whatever its input), a contiguous one a contiguous output;
    the values do not depend on the format."""
    torch.manual_seed(0)
    model = nn.Sequential(make()).eval()
    x = torch.rand(shape)
    x_cl = x.contiguous(memory_format=fmt)
    sim = cimsim.deploy(model, lossless_chip("channel"), calibration=x, seed=0)
    y, y_cl = sim(x), sim(x_cl)
    assert model(x_cl).is_contiguous(memory_format=fmt)
    assert y_cl.is_contiguous(memory_format=fmt) and not y_cl.is_contiguous()
    assert y.is_contiguous()
    assert torch.equal(y, y_cl)
    # and the training twin, as the deployed layer
    from cimsim.train import prepare

    twin = prepare(model, lossless_chip("channel"), x, seed=0).eval()
    with torch.no_grad():
        t, t_cl = twin(x), twin(x_cl)
    assert t_cl.is_contiguous(memory_format=fmt) and t.is_contiguous()
    assert torch.equal(t, t_cl)


class _Trident(nn.Module):
    """One kernel applied at dilations 1, 2 and 3 (TridentNet's weight sharing): the forward
    sets the shared conv's dilation and padding before each call."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x):
        outs = []
        for d in (1, 2, 3):
            self.conv.dilation = self.conv.padding = (d,) * (x.dim() - 2)
            outs.append(self.conv(x))
        return torch.cat(outs, 1)


@pytest.mark.parametrize("conv", [nn.Conv1d(3, 4, 3), nn.Conv2d(3, 4, 3), nn.Conv3d(3, 4, 3)],
                         ids=["1d", "2d", "3d"])
def test_a_conv_runs_at_the_settings_its_layer_holds_at_each_call(conv):
    """torch's conv reads stride, dilation and padding at every call; a mapped conv and its twin
    read them once when built, so a forward that sets them between calls (one kernel at three
    dilations) ran every call at the first, silently (4.96 off a float output of at most
    4.47 on the lossless chip). Both now follow the layer's settings, and so does a setting
    changed on the deployed model."""
    torch.manual_seed(0)
    model = _Trident(conv).eval()
    size = (2, 3) + (9,) * (conv.weight.dim() - 2)
    x, cal = torch.randn(*size), torch.randn(*size)
    with torch.no_grad():
        ref = model(x)
    sim = cimsim.deploy(model, "ideal", cal, progress=False)
    with torch.no_grad():
        out = sim(x)
        twin = cimsim.train.prepare(model, "ideal", cal).eval()
        out_twin = twin(x)
    for y in (out, out_twin):  # 8-b inputs and weights: a few % (the frozen dilation: ~100 %)
        assert y.shape == ref.shape
        assert ((y - ref).norm() / ref.norm()).item() < 0.06
    # set by hand on the deployed model: the stride halves the output, as torch's conv does
    sim.model.conv.stride = 2
    sim.model.conv.padding = 0
    with torch.no_grad():
        sim.model.conv.dilation = 1
        y = sim.model.conv(x)
        n = conv.weight.dim() - 2
        conv.stride, conv.padding, conv.dilation = (2,) * n, (0,) * n, (1,) * n
        assert y.shape == conv(x).shape
        assert ((y - conv(x)).norm() / conv(x).norm()).item() < 0.06


def test_a_transposed_conv_runs_at_the_settings_its_layer_holds_at_each_call():
    torch.manual_seed(0)
    conv = nn.ConvTranspose2d(3, 4, 3)
    x = torch.randn(2, 3, 6, 6)
    sim = cimsim.deploy(nn.Sequential(conv), "ideal", torch.randn(4, 3, 6, 6), progress=False)
    twin = cimsim.train.prepare(nn.Sequential(conv), "ideal", torch.randn(4, 3, 6, 6)).eval()
    for layer in (sim.model[0], twin.model[0]):
        layer.stride, layer.padding, layer.output_padding, layer.dilation = 2, 1, 1, 2
    conv.stride, conv.padding, conv.output_padding, conv.dilation = (2, 2), (1, 1), (1, 1), (2, 2)
    with torch.no_grad():
        ref = conv(x)
        for y in (sim(x), twin(x)):
            assert y.shape == ref.shape
            assert ((y - ref).norm() / ref.norm()).item() < 0.02


def test_a_conv_saved_before_its_settings_were_read_at_each_call_still_runs():
    """A SimModel saved before LiveConv holds its convolutions' settings as attributes of its
    own (stride2, pads; a geometry's stride, dilation, pads): it failed on the missing
    'live'. Such a layer runs at the settings it was saved with."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv3d(4, 2, 1),
                          nn.ConvTranspose3d(2, 2, 2, stride=2)).eval()

    class As3d(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m[2](self.m[1](self.m[0](x).unsqueeze(2)))

    wrapped = As3d(model).eval()
    x = torch.randn(2, 3, 6, 6)
    sim = cimsim.deploy(wrapped, "ideal", x, progress=False)
    ref = sim(x)
    conv, conv3, convt = (sim.model.m[i] for i in range(3))
    del vars(conv)["live"]
    for layer in (conv3, convt):  # as the geometry held them
        g = layer.geometry
        live = vars(g).pop("live")
        vars(g).update(stride=live.stride, dilation=live.dilation, padding=live.padding,
                       output_padding=live.output_padding, pads=live.pads)
    sim.reset(noise=True)
    assert torch.equal(sim(x), ref)

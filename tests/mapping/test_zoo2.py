"""A second zoo of models cimsim was not written for (worktree ``models``, after
``test_new_models.py``): what a researcher bringing their own network uses that the first zoo
did not. A U-Net with bias-free ``padding='same'`` convs, GroupNorm / InstanceNorm without
affine, replicate / circular padding, a grouped (not depthwise) dilated conv, a ConvTranspose2d
called with ``output_size``, skip concatenation, PixelShuffle and a stride > kernel conv; a 1-D
decoder (even-kernel ``'same'`` reflect conv, grouped ConvTranspose1d with output_padding,
stride = kernel, LayerNorm without affine); stacked bidirectional LSTM-with-projections and
GRU, sequence-first, with an explicit initial state; cross-attention with kdim / vdim,
float and bool masks, ``is_causal``, the attention weights returned in a dict; Bilinear,
EmbeddingBag and one Linear called twice, a tuple returned; add_bias_kv attention.

And what broke: a layer called twice, only once into a ReLU, had its fused ADC clamp both
calls; a ReLU module shared by a fused layer and another input became the identity in the
twin; a module at two places in the model was simulated at the first only; a PackedSequence,
an uninitialized lazy layer, a ``torch.compile`` d model and ``prepare`` under
``torch.inference_mode`` failed deep in torch or dynamo; LSTMCell / GRUCell ran in float with
no warning and no digital entry (since mapped: tests/mapping/test_recurrent.py); a mapped
layer's forward hooks were dropped.
"""

from __future__ import annotations

import copy
import itertools
import types
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.errors import MappingError
from cimsim.train import prepare
from cimsim.train.twin import FusedReLU

from .conftest import (
    assert_bitwise,
    check_core_weights,
    check_lossy_run,
    int_matmul_dequant,
    lossless_chip,
    quantize_x,
    reference_model,
)
from .test_new_models import _rram, prepare_step_deploy


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.inc = nn.Conv2d(3, 8, 3, padding="same", bias=False)
        self.gn = nn.GroupNorm(2, 8, affine=False)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1, padding_mode="replicate")
        self.grp = nn.Conv2d(16, 16, 3, padding="same", dilation=2, groups=4, bias=False)
        self.inorm = nn.InstanceNorm2d(16)
        self.up = nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1)
        self.fuse = nn.Conv2d(16, 8, 1)
        self.ps_conv = nn.Conv2d(8, 12, 3, padding=1, padding_mode="circular")
        self.shuffle = nn.PixelShuffle(2)
        self.sparse = nn.Conv2d(3, 4, 2, stride=3)  # stride > kernel: pixels skipped

    def forward(self, x):
        s = F.relu(self.gn(self.inc(x)))
        h = F.relu(self.inorm(self.grp(F.relu(self.down(s)))))
        u = self.up(h, output_size=s.shape[-2:])  # odd size: output_padding from output_size
        u = F.relu(self.fuse(torch.cat([u, s], 1)))
        return self.sparse(self.shuffle(self.ps_conv(u)))


class Decoder1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv1d(4, 6, 4, padding="same", dilation=2, padding_mode="reflect")
        self.t = nn.ConvTranspose1d(6, 4, 4, stride=2, padding=1, output_padding=1, groups=2)
        self.t2 = nn.ConvTranspose1d(4, 3, 3, stride=3, bias=False)
        self.ln = nn.LayerNorm(3, elementwise_affine=False)

    def forward(self, x):
        return self.ln(self.t2(F.gelu(self.t(torch.tanh(self.c(x))))).transpose(1, 2))


class StackedRNN(nn.Module):
    """(T, B, 5) -> ((B, 2), h_n of the GRU): sequence-first, an explicit LSTM state."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 6, num_layers=2, bidirectional=True, proj_size=3)
        self.gru = nn.GRU(6, 4, num_layers=2, bidirectional=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        b = x.shape[1]
        h0 = x.new_zeros(4, b, 3)
        c0 = x.new_full((4, b, 6), 0.1)
        h, _ = self.lstm(x, (h0, c0))
        g, g_n = self.gru(h)
        return self.fc(g[-1]), g_n


class CrossAttention(nn.Module):
    """Sequence-first cross-attention with kdim/vdim (a float mask, per-head weights), then
    batch-first bias-free self-attention with a bool mask, once with ``is_causal``."""

    def __init__(self):
        super().__init__()
        self.q_in = nn.Linear(6, 8)
        self.cross = nn.MultiheadAttention(8, 2, kdim=5, vdim=3)
        self.self_attn = nn.MultiheadAttention(8, 4, batch_first=True, bias=False)
        self.fc = nn.Linear(8, 3)

    def forward(self, q, k, v, mask_f, mask_b):
        h, w = self.cross(self.q_in(q), k, v, attn_mask=mask_f, average_attn_weights=False)
        hb = h.transpose(0, 1)
        h2, _ = self.self_attn(hb, hb, hb, attn_mask=mask_b, need_weights=False)
        h3, _ = self.self_attn(hb, hb, hb, attn_mask=mask_b, is_causal=True)
        return {"out": self.fc(h2 + h3), "weights": w}


def _attention_data(bool_mask: bool = True):
    q, k, v = torch.randn(4, 3, 6), torch.randn(5, 3, 5), torch.randn(5, 3, 3)
    mask_f = torch.randn(4, 5)
    causal = torch.ones(4, 4, dtype=torch.bool).triu(1)
    mask_b = causal if bool_mask else torch.zeros(4, 4).masked_fill(causal, float("-inf"))
    return q, k, v, mask_f, mask_b


class BagBilinear(nn.Module):
    """EmbeddingBag and Bilinear (not mapped), a Linear called twice, a tuple output."""

    def __init__(self):
        super().__init__()
        self.bag = nn.EmbeddingBag(10, 6, mode="mean")
        self.shared = nn.Linear(6, 6)
        self.bil = nn.Bilinear(6, 6, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, idx, x):
        a = F.relu(self.shared(x))
        b = self.shared(self.bag(idx))  # the same weights again, no ReLU
        return self.fc(self.bil(a, b)), b


class BiasKV(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, add_bias_kv=True, add_zero_attn=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.attn(x, x, x)[0])


# (model factory, inputs factory, batch_dim)
ZOO2 = {
    "unet": (UNet, lambda: (torch.randn(2, 3, 11, 11),), 0),
    "decoder1d": (Decoder1d, lambda: (torch.randn(2, 4, 10),), 0),
    "stacked-rnn": (StackedRNN, lambda: (torch.randn(6, 3, 5),), 1),
    "cross-attention": (CrossAttention, _attention_data, 1),
    "bag-bilinear": (BagBilinear, lambda: (torch.randint(0, 10, (3, 4)), torch.randn(3, 6)), 0),
    "bias-kv": (BiasKV, lambda: (torch.randn(5, 2, 8),), 1),
}
_EXACT = ["unet", "decoder1d", "cross-attention", "bag-bilinear", "bias-kv"]


def _build(name: str, dtype=torch.float32):
    make, data, batch_dim = ZOO2[name]
    model = make().eval().to(dtype)
    args = tuple(a.to(dtype) if a.is_floating_point() else a for a in data())
    return model, args, batch_dim


def _main(y):
    """The output a test compares: a dict's ``out``, a tuple's first."""
    return y["out"] if isinstance(y, dict) else y[0] if isinstance(y, tuple) else y


def _deploy(model, chip, args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # EmbeddingBag, Bilinear listed digital
        return cimsim.deploy(model, chip, args, **kw)


# ---------------------------------------------------------------------------------------------
# The integer re-implementation, with ConvTranspose (conftest's covers Linear, Conv, attention)
# ---------------------------------------------------------------------------------------------
class RefConvTranspose(nn.Module):
    """Per input pixel (B·prod(S), C_in/groups) rows, quantized, times the group's integer
    matrix (C_out/groups · prod(k), C_in/groups), dequantized; then every kernel offset's
    outputs added at ``p·stride + k·dilation``, the padding cropped and the bias added."""

    def __init__(self, src: nn.ConvTranspose1d | nn.ConvTranspose2d, cores, bits: int):
        super().__init__()
        self.src, self.cores, self.bits = copy.deepcopy(src), cores, bits

    def forward(self, x, output_size=None):
        src = self.src
        nd = x.dim() - 2
        x64 = x.to(torch.float64)
        b, c_in, s_in = x64.shape[0], x64.shape[1], x64.shape[2:]
        rows = x64.movedim(1, -1).reshape(-1, c_in)
        cg, g = c_in // src.groups, src.groups
        ys = [int_matmul_dequant(quantize_x(rows[:, i * cg:(i + 1) * cg], core, self.bits),
                                 core, None) for i, core in enumerate(self.cores)]
        k = tuple(src.kernel_size)
        n_g = src.out_channels // g
        y = torch.cat(ys, 1).reshape(b, *s_in, src.out_channels, *k)
        pad_out = src._output_padding(x, output_size, list(src.stride), list(src.padding),
                                      list(k), nd, list(src.dilation))
        full = [(s - 1) * st + dl * (kk - 1) + 1 + op for s, st, dl, kk, op in
                zip(s_in, src.stride, src.dilation, k, pad_out, strict=True)]
        out = torch.zeros(b, src.out_channels, *full, dtype=torch.float64)
        for pos in itertools.product(*(range(n) for n in s_in)):
            for off in itertools.product(*(range(n) for n in k)):
                at = tuple(p * st + o * dl for p, st, o, dl in
                           zip(pos, src.stride, off, src.dilation, strict=True))
                out[(slice(None), slice(None), *at)] += y[(slice(None), *pos, slice(None),
                                                           *off)]
        crop = tuple(slice(p, f - p) for p, f in zip(src.padding, full, strict=True))
        out = out[(slice(None), slice(None), *crop)]
        if src.bias is not None:
            out = out + src.bias.detach().to(torch.float64).reshape(-1, *([1] * nd))
        assert n_g * g == src.out_channels
        return out.to(x.dtype)


def reference(model: nn.Module, sim) -> nn.Module:
    """conftest's ``reference_model`` with the transposed convolutions re-implemented too."""
    transposed = {n: layer for n, layer in sim.sim_layers.items()
                  if isinstance(model.get_submodule(n), nn.modules.conv._ConvTransposeNd)}
    rest = types.SimpleNamespace(chip=sim.chip, sim_layers={
        n: layer for n, layer in sim.sim_layers.items() if n not in transposed})
    ref = reference_model(model, rest)
    for name, layer in transposed.items():
        src = ref.get_submodule(name)
        w = src.weight.detach()
        cg, g = w.shape[0] // src.groups, src.groups
        for i, core in enumerate(layer.cores):  # group i: (C_out/g · prod(k), C_in/g)
            check_core_weights(core, w[i * cg:(i + 1) * cg].reshape(cg, -1).t(), sim.chip)
        owner, _, attr = name.rpartition(".")
        setattr(ref.get_submodule(owner) if owner else ref, attr,
                RefConvTranspose(src, layer.cores, sim.chip.input_bits))
        assert g == len(layer.cores)
    return ref


# ---------------------------------------------------------------------------------------------
# deploy: lossless, rram-22nm
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", _EXACT)
def test_lossless_deploy_equals_the_quantized_model(name):
    model, args, batch_dim = _build(name)
    if name == "cross-attention":  # the reference attention takes additive masks
        args = _attention_data(bool_mask=False)
    sim = _deploy(model, lossless_chip("channel"), args, batch_dim=batch_dim)
    ref = reference(model, sim)
    with torch.no_grad():
        want = ref(*args)
    got = sim(*args)
    assert_bitwise(_main(got), _main(want))
    if isinstance(got, tuple):
        assert_bitwise(got[1], want[1])  # the shared Linear's second call
    if name == "cross-attention":  # per-head weights (the reference returns none): ~ float
        with torch.no_grad():
            weights = model(*args)["weights"]
        assert got["weights"].shape == weights.shape == (3, 2, 4, 5)
        torch.testing.assert_close(got["weights"], weights, rtol=0.05, atol=0.02)


def test_lossless_stacked_rnn_is_within_8_bit_quantization_of_float():
    """As the first zoo's audio net: each recurrence has its integer reference in
    tests/mapping/test_recurrent.py; the stack stays within 2 % of float."""
    model, args, batch_dim = _build("stacked-rnn")
    sim = cimsim.deploy(model, lossless_chip("channel"), args, batch_dim=batch_dim)
    with torch.no_grad():
        want, want_h = model(*args)
    got, got_h = sim(*args)
    assert got_h.shape == want_h.shape == (4, 3, 4)
    assert float((got - want).norm() / want.norm()) < 0.02
    assert float((got_h - want_h).norm() / want_h.norm()) < 0.02
    assert sim.n_inferences == 3 and list(sim.sim_layers) == ["lstm", "gru", "fc"]


@pytest.mark.parametrize("name", list(ZOO2))
def test_rram_deploy_runs_reports_and_stays_near_float(name):
    model, args, batch_dim = _build(name)
    with torch.no_grad():
        want = _main(model(*args))
    sim = _deploy(model, _rram(), args, batch_dim=batch_dim)
    check_lossy_run(_main(sim(*args)), want, sim)


def test_bool_masks_and_is_causal_equal_their_float_masks():
    model, args, _ = _build("cross-attention")
    sim = cimsim.deploy(model, lossless_chip("channel"), args, batch_dim=1)
    got = sim(*args)
    floats = sim(*args[:4], torch.zeros(4, 4).masked_fill(args[4], float("-inf")))
    assert_bitwise(got["out"], floats["out"])


def test_unsupported_layers_are_warned_named_and_listed():
    """add_bias_kv attention was listed digital without a warning (an unsupported type warns)."""
    model, args, _ = _build("bag-bilinear")
    with pytest.warns(UserWarning, match=r"2 layer\(s\).*bag \(EmbeddingBag\), bil \(Bilinear\)"):
        sim = cimsim.deploy(model, lossless_chip("channel"), args)
    assert ("bag", "EmbeddingBag", "layer type not supported") in sim.digital
    assert list(sim.sim_layers) == ["shared", "fc"]
    sim(*args)
    assert sim.sim_layers["shared"].cores[0].n_vectors == 6  # both calls on the arrays
    model, args, _ = _build("bias-kv")
    with pytest.warns(UserWarning, match=r"1 layer\(s\) cannot be mapped.*attn: add_bias_kv"):
        sim = cimsim.deploy(model, lossless_chip("channel"), args, batch_dim=1)
    (row,) = [d for d in sim.digital if d[0] == "attn"]
    assert row[1] == "MultiheadAttention" and "add_bias_kv / add_zero_attn" in row[2]


def test_channels_last_input_gives_the_same_outputs():
    model, args, _ = _build("unet")
    sim = cimsim.deploy(model, lossless_chip("channel"), args)
    assert_bitwise(sim(args[0].to(memory_format=torch.channels_last)), sim(*args))


# ---------------------------------------------------------------------------------------------
# prepare -> one step -> deploy
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chip", ["ideal", "rram"])
@pytest.mark.parametrize("name", list(ZOO2))
def test_prepare_steps_and_the_twin_deploys_to_what_it_computes(name, chip):
    chip_cfg = (lossless_chip("channel") if chip == "ideal" else
                _rram().replace(noise=_rram().noise.replace(thermal_sigma_lsb=0.0)))
    model, args, batch_dim = _build(name, torch.float64)
    prep = prepare_step_deploy(model, chip_cfg, args, batch_dim, _main)
    if name == "bag-bilinear":
        assert {d[0] for d in prep.digital} == {"bag", "bil"}


# ---------------------------------------------------------------------------------------------
# A layer called twice, a ReLU module used twice, a module at two places
# ---------------------------------------------------------------------------------------------
def _fused_chip():
    """One conversion per output, the layer-output ADC fused with a following ReLU."""
    ideal = cimsim.load_chip("ideal")
    return ideal.replace(
        dac=ideal.dac.replace(bits=None), device=ideal.device.replace(bits_per_cell=7),
        array=ideal.array.replace(n_rows=64, n_cols=64),
        adc=ideal.adc.replace(kind="sar", bits=6, range_policy="calibrated",
                              placement="layer_output", fuse_activation=True))


class CalledTwice(nn.Module):
    """``fc`` feeds a ReLU at its first call and an add at its second (or a ReLU at both)."""

    def __init__(self, relu_both: bool):
        super().__init__()
        self.relu_both = relu_both
        self.fc, self.out = nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, x):
        second = F.relu(self.fc(x + 1)) if self.relu_both else self.fc(x + 1)
        return self.out(F.relu(self.fc(x)) + second)


@pytest.mark.parametrize("run", ["deploy", "prepare"])
def test_a_layer_fuses_its_relu_only_if_every_call_feeds_one(run):
    """The first call's ReLU fused the ADC of both: the second call's negative outputs were
    clamped to 0 (output 35 % off float on this 6-bit chip; under 5 % now)."""
    torch.manual_seed(0)
    x = torch.randn(16, 6, dtype=torch.float64)
    for relu_both, want in ((False, None), (True, float("inf"))):
        model = CalledTwice(relu_both).double().eval()
        if run == "deploy":
            out = cimsim.deploy(model, _fused_chip(), x)
            clamps = {c.activation_clamp for c in out.sim_layers["fc"].cores}
            with torch.no_grad():
                rel = float((out(x) - model(x)).norm() / model(x).norm())
            assert rel < 0.05
        else:
            out = prepare(model, _fused_chip(), x)
            clamps = {out.twin_layers["fc"].activation_clamp}
        assert clamps == {want}


class SharedReLU(nn.Module):
    """One ReLU module after a layer (fusable) and after a subtraction (not)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 2)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.out(self.act(self.fc2(self.act(self.fc1(x))) - 0.3))


def test_a_shared_relu_module_stays_a_relu_in_the_twin():
    """The twin made ``act`` the identity (FusedReLU) for fc1's fused ADC: its use after the
    subtraction let negative values through, and the twin no longer computed the chip."""
    torch.manual_seed(0)
    model, x = SharedReLU().double().eval(), torch.randn(16, 6, dtype=torch.float64)
    prep = prepare(model, _fused_chip(), x)
    assert prep.twin_layers["fc1"].activation_clamp == float("inf")  # still fused
    assert not isinstance(prep.model.act, FusedReLU)
    with torch.no_grad():
        want = prep(x)
    torch.testing.assert_close(prep.deploy()(x), want, rtol=1e-9, atol=1e-9)


def test_fused_relu_modules_after_fused_layers_only_are_straight_through():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2)).double().eval()
    prep = prepare(model, _fused_chip(), torch.randn(8, 6, dtype=torch.float64))
    assert isinstance(prep.model[1], FusedReLU)


@pytest.mark.parametrize("run", ["deploy", "prepare"])
def test_a_module_at_two_places_is_mapped_at_both(run):
    """``nn.Sequential(lin, relu, lin)``: the second place kept the float nn.Linear (and a
    warning told the user to hold its weights in a module, which they are)."""
    torch.manual_seed(0)
    lin = nn.Linear(6, 6)
    model = nn.Sequential(lin, nn.ReLU(), lin).double().eval()
    x = torch.randn(8, 6, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = (cimsim.deploy if run == "deploy" else prepare)(model, lossless_chip(), x)
    layers = out.sim_layers if run == "deploy" else out.twin_layers
    assert list(layers) == ["0"] and out.model[0] is out.model[2] is layers["0"]
    if run == "deploy":
        (core,) = layers["0"].cores
        ref = reference_model(nn.Sequential(copy.deepcopy(lin)).double(), out)[0]
        with torch.no_grad():
            want = ref(F.relu(ref(x)))
        assert_bitwise(out(x), want)
        once = cimsim.deploy(nn.Sequential(lin).double(), lossless_chip(), x)
        assert core.n_vectors == 16 and out.arrays_needed == once.arrays_needed  # programmed once
    else:
        with torch.no_grad():
            want = out(x)
        torch.testing.assert_close(out.deploy()(x), want, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# Inputs and wrappers torch allows
# ---------------------------------------------------------------------------------------------
class PackedLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 5)

    def forward(self, x, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
        return nn.utils.rnn.pad_packed_sequence(self.lstm(packed)[0])[0]


def test_packed_sequences_deploy_and_prepare():
    """(They were refused naming the layer: "packed sequences are not supported".) Deployed
    near float; the twin deploys to what it computes (``test_recurrent.py`` checks each sample
    against its own length)."""
    x, lengths = torch.randn(6, 3, 4), torch.tensor([6, 2, 4])
    model = PackedLSTM().eval()
    sim = cimsim.deploy(model, lossless_chip(), (x, lengths), batch_dim=1)
    with torch.no_grad():
        want = model(x, lengths)
    assert float((sim(x, lengths) - want).norm() / want.norm()) < 0.05
    prep = prepare(model.double(), lossless_chip(), (x.double(), lengths), batch_dim=1).eval()
    with torch.no_grad():
        twin = prep(x.double(), lengths)
    torch.testing.assert_close(prep.deploy(batch_dim=1)(x.double(), lengths), twin,
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_a_packed_calibration_is_the_model_s_argument(run):
    """It was iterated as the tuple it is: the LSTM got the packed sizes as its input ('0:
    expected a 2-D (unbatched) or 3-D (batched) input, got 1-D'); then refused ("pass the
    padded tensor"); now it is one batch, given to the model as its argument."""
    torch.manual_seed(0)
    packed = nn.utils.rnn.pack_padded_sequence(torch.randn(6, 3, 4), [6, 4, 2])
    lstm = nn.LSTM(4, 5)
    sim = run(lstm, lossless_chip(), packed)
    with torch.no_grad():
        torch.testing.assert_close(sim(packed)[0].data, lstm(packed)[0].data,
                                   rtol=0, atol=0.02)


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_an_uninitialized_lazy_layer_is_named(run):
    """It was torch's 'Attempted to use an uninitialized parameter in detach'."""
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.LazyLinear(3))
    with pytest.raises(MappingError, match=r"^2 \(LazyLinear\).*uninitialized.*once"):
        run(model, lossless_chip(), torch.randn(3, 5))
    model(torch.randn(1, 5))  # initialized: it maps
    out = run(model, lossless_chip(), torch.randn(3, 5))
    assert "2" in (out.sim_layers if run is cimsim.deploy else out.twin_layers)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch._dynamo's own imports
def test_a_compiled_model_deploys_as_its_module():
    """deploy(torch.compile(model)) failed inside dynamo (the simulated layers run NumPy);
    prepare's twin would be recompiled at every new input."""
    torch.manual_seed(0)
    model, x = CalledTwice(False).eval(), torch.randn(4, 6)
    compiled = torch.compile(model)
    plain = cimsim.deploy(model, lossless_chip(), x)
    with pytest.warns(UserWarning, match="torch.compile.*uncompiled"):
        sim = cimsim.deploy(compiled, lossless_chip(), x)
    assert list(sim.sim_layers) == ["fc", "out"]
    assert_bitwise(sim(x), plain(x))
    with pytest.warns(UserWarning, match="torch.compile.*uncompiled"):
        prep = prepare(compiled, lossless_chip(), x)
    assert list(prep.twin_layers) == ["fc", "out"]
    inner = nn.Sequential(torch.compile(model), nn.ReLU())  # a compiled submodule
    with pytest.warns(UserWarning, match="0 is a torch.compile'd module"):
        sim = cimsim.deploy(inner, lossless_chip(), x)
    assert list(sim.sim_layers) == ["0.fc", "0.out"]
    assert_bitwise(sim(x), F.relu(plain(x)))


def test_inference_mode_deploy_runs_and_prepare_is_refused_there():
    model, args, _ = _build("decoder1d")
    with torch.inference_mode():
        x = args[0].clone()  # an inference tensor
        sim = cimsim.deploy(model, lossless_chip(), x)
        assert_bitwise(sim(x), sim(args[0]))
        with pytest.raises(MappingError, match="inference_mode.*no_grad"):
            prepare(model, lossless_chip(), x)
    with torch.no_grad():  # no_grad is fine, as are inference tensors as calibration data
        prep = prepare(model.double(), lossless_chip(), x.double())
    prep(args[0].double()).sum().backward()
    assert all(np.isfinite(p.grad.numpy()).all() for p in prep.parameters()
               if p.grad is not None)


# ---------------------------------------------------------------------------------------------
# Recurrent cells, hooks
# ---------------------------------------------------------------------------------------------
class Cells(nn.Module):
    """An LSTMCell and a GRUCell stepped by hand (torch calls their fused cell kernels)."""

    def __init__(self):
        super().__init__()
        self.cell, self.gru, self.fc = nn.LSTMCell(4, 5), nn.GRUCell(5, 5), nn.Linear(5, 2)

    def forward(self, x):  # (T, B, 4)
        h = c = g = x.new_zeros(x.shape[1], 5)
        for t in range(x.shape[0]):
            h, c = self.cell(x[t], (h, c))
            g = self.gru(h, g)
        return self.fc(g)


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_recurrent_cells_are_mapped_not_run_in_float(run):
    """They ran in float with no warning and no digital entry: results that looked
    simulated (their kernels are no matrix product the functional watch sees). Listed digital
    at first, they are now mapped (W_ih and W_hh on the arrays), in deploy and prepare."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left to warn about
        out = run(Cells(), lossless_chip(), torch.randn(3, 2, 4), batch_dim=1)
    assert out.digital == []
    layers = out.sim_layers if run is cimsim.deploy else out.twin_layers
    assert {"cell", "gru", "fc"} <= set(layers)


def _hooked():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).eval()
    seen: list[torch.Tensor] = []
    model[0].register_forward_pre_hook(lambda _m, args: (args[0] * 0.5,))  # e.g. a scaling
    model[2].register_forward_hook(lambda _m, _a, out: seen.append(out))  # e.g. features
    return model, seen


@pytest.mark.parametrize("run", ["deploy", "prepare"])
def test_the_hooks_of_a_mapped_layer_run_on_it(run):
    """The layer's forward hooks were dropped with the module: a pre-hook that scales the
    input silently did nothing (outputs off float), a recording hook never fired."""
    model, seen = _hooked()
    x = torch.randn(8, 4)
    with torch.no_grad():
        want = model(x)
    out = (cimsim.deploy(model, lossless_chip(), x) if run == "deploy"
           else prepare(model, lossless_chip(), x).eval())
    seen.clear()
    with torch.no_grad():
        got = out(x)
    assert float((got - want).norm() / want.norm()) < 0.02
    assert len(seen) == 1 and torch.equal(seen[0], got)
    if run == "prepare":  # the float model and the deployed twin keep them too
        sim = out.deploy()
        seen.clear()
        torch.testing.assert_close(sim(x), got, rtol=1e-5, atol=1e-5)
        assert len(seen) == 1


def test_old_style_weight_norm_maps_its_weight_and_leaves_its_hook():
    """``torch.nn.utils.weight_norm`` recomputes ``weight`` in a pre-hook that reads g and v:
    the mapped layer holds the weight it computed, the hook is not carried over."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch deprecates it
        model = nn.Sequential(nn.utils.weight_norm(nn.Linear(4, 6)), nn.ReLU(),
                              nn.utils.spectral_norm(nn.Linear(6, 2))).eval()
    x = torch.randn(8, 4)
    with torch.no_grad():
        want = model(x)
    for out in (cimsim.deploy(model, lossless_chip(), x),
                prepare(model, lossless_chip(), x).eval()):
        with torch.no_grad():
            assert float((out(x) - want).norm() / want.norm()) < 0.02

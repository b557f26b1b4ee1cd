"""Models the tests elsewhere do not build, as a researcher with a new model would deploy and
train them (worktree ``models``): a sequence-first / pre-norm transformer encoder with a padding
mask, a GPT-like decoder with a tied output head, a ConvNeXt block, a MobileNetV3-like block
(squeeze-excitation, grouped, dilated, reflect/circular padding, stride 2), an audio net (Conv1d,
bidirectional GRU, LSTM with projections), weights reached only functionally, weight_norm /
spectral_norm, and the inputs (batch 1, channels_last, non-contiguous, dtypes, train mode).

On ``ideal`` the deployed model equals the quantized integer re-implementation of the tests'
conftest where it covers the layers; the twin (``cimsim.train.prepare``) takes an optimiser step
and, in float64, deploys to exactly what it computes."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.errors import MappingError
from cimsim.train import prepare

from .conftest import assert_bitwise, lossless_chip, reference_model

P = torch.nn.utils.parametrizations


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
class Encoder(nn.Module):
    def __init__(self, batch_first: bool, norm_first: bool):
        super().__init__()
        # torch's default dropout (0.1): deploy must run it in eval mode
        layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=batch_first,
                                           norm_first=norm_first)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, x, mask=None):
        return self.head(self.enc(x, src_key_padding_mask=mask))


def _encoder_data(batch_first: bool, b: int = 3, length: int = 5):
    x = torch.randn(b, length, 16) if batch_first else torch.randn(length, b, 16)
    mask = torch.zeros(b, length, dtype=torch.bool)
    mask[0, 3:] = True  # the first sequence is padded
    return x, mask


class GPT(nn.Module):
    """Token embedding, learned positions, causal pre-norm blocks, head tied to the embedding."""

    def __init__(self, vocab: int = 20, d: int = 16, length: int = 8):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(length, d) * 0.1)
        layer = nn.TransformerEncoderLayer(d, 2, 2 * d, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, idx):
        t = idx.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t, dtype=self.pos.dtype)
        h = self.blocks(self.emb(idx) + self.pos[:t], mask=mask, is_causal=True)
        return self.head(self.ln(h))


class ConvNeXtBlock(nn.Module):
    def __init__(self, c: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 2, stride=2)
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.pw1, self.pw2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(0.1 * torch.ones(c))  # layer scale
        self.fc = nn.Linear(c, 4)

    def forward(self, x):
        x = self.stem(x)
        h = self.dw(x).permute(0, 2, 3, 1)  # channels last: Linear on (B, H, W, C)
        h = self.pw2(F.gelu(self.pw1(self.norm(h)))) * self.gamma
        x = x + h.permute(0, 3, 1, 2)
        return self.fc(x.mean((2, 3)))


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int = 4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.act = nn.Conv2d(c, r, 1), nn.SiLU()
        self.fc2, self.gate = nn.Conv2d(r, c, 1), nn.Hardsigmoid()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class MobileBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1, padding_mode="reflect")
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4, padding_mode="circular")
        self.dilated = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.se, self.act, self.fc = SqueezeExcite(8), nn.Hardswish(), nn.Linear(8, 4)

    def forward(self, x):
        h = self.act(self.c1(x))
        h = self.se(self.dilated(self.act(self.grouped(h))))
        return self.fc(h.mean((2, 3)))


class AudioNet(nn.Module):
    def __init__(self, batch_first: bool):
        super().__init__()
        self.batch_first = batch_first
        self.conv = nn.Conv1d(4, 8, 3, stride=2, dilation=2, padding=2)
        self.gru = nn.GRU(8, 6, num_layers=2, bidirectional=True, batch_first=batch_first,
                          dropout=0.2)
        self.lstm = nn.LSTM(12, 8, proj_size=4, batch_first=batch_first)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):  # (B, C, T)
        h = F.relu(self.conv(x))
        h = h.transpose(1, 2) if self.batch_first else h.permute(2, 0, 1)
        h, _ = self.gru(h)
        h, _ = self.lstm(h)
        return self.fc(h[:, -1] if self.batch_first else h[-1])


class Functional(nn.Module):
    """Weights used without a module: they cannot be mapped."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.weight = nn.Parameter(torch.randn(6, 8) * 0.3)
        self.w = nn.Parameter(torch.randn(6, 3) * 0.3)

    def forward(self, x):
        return F.linear(F.relu(self.fc(x)), self.weight) @ self.w


class Normed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = P.weight_norm(nn.Conv2d(3, 6, 3, padding=1))
        self.lin = P.weight_norm(nn.Linear(6, 6))
        self.spec = P.spectral_norm(nn.Linear(6, 4))

    def forward(self, x):
        return self.spec(F.relu(self.lin(F.relu(self.conv(x)).mean((2, 3)))))


class BNDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
        self.drop, self.fc = nn.Dropout(0.5), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.drop(F.relu(self.bn(self.conv(x))).mean((2, 3))))


# (name, model factory, inputs factory, batch_dim)
ZOO = {
    "encoder-seqfirst-postnorm": (lambda: Encoder(False, False),
                                  lambda: _encoder_data(False), 1),
    "encoder-batchfirst-prenorm": (lambda: Encoder(True, True), lambda: _encoder_data(True), 0),
    "gpt-tied-head": (GPT, lambda: (torch.randint(0, 20, (3, 8)),), 0),
    "convnext": (ConvNeXtBlock, lambda: (torch.randn(2, 3, 16, 16),), 0),
    "mobilenet": (MobileBlock, lambda: (torch.randn(2, 3, 16, 16),), 0),
    "audio-batchfirst": (lambda: AudioNet(True), lambda: (torch.randn(3, 4, 20),), 0),
    "audio-seqfirst": (lambda: AudioNet(False), lambda: (torch.randn(3, 4, 20),), 0),
    "weight-spectral-norm": (Normed, lambda: (torch.randn(2, 3, 8, 8),), 0),
}
_EXACT = ("encoder", "gpt", "convnext", "mobilenet", "weight-spectral")  # no RNN reference


def _build(name: str, dtype=torch.float32):
    make, data, batch_dim = ZOO[name]
    model = make().eval().to(dtype)
    args = tuple(a.to(dtype) if a.is_floating_point() else a for a in data())
    return model, args, batch_dim


def _rram():
    """rram-22nm with small arrays (fast); its variation, noise and 22 nm ADC as they are."""
    chip = cimsim.load_chip("rram-22nm")
    return chip.replace(array=chip.array.replace(n_rows=64, n_cols=32))


# ---------------------------------------------------------------------------------------------
# deploy
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in ZOO if n.startswith(_EXACT)])
def test_lossless_deploy_equals_the_quantized_model(name):
    model, args, batch_dim = _build(name)
    sim = cimsim.deploy(model, lossless_chip("channel"), args, batch_dim=batch_dim)
    ref = reference_model(model, sim)
    with torch.no_grad():
        want = ref(*args)
    assert_bitwise(sim(*args), want)
    assert sim.n_inferences == 3 if name.startswith(("encoder", "gpt")) else 2


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_padding_mask_every_layout_exact(batch_first, norm_first):
    """Sequence-first with a (B, S) padding mask used to fail in the calibration pass: the
    mask was cut along batch_dim = 1 (its sequence axis) as the input is."""
    model = Encoder(batch_first, norm_first).eval()
    x, mask = _encoder_data(batch_first)
    sim = cimsim.deploy(model, lossless_chip("channel"), (x, mask), batch_dim=0 if batch_first
                        else 1, batch_size=2)
    with torch.no_grad():
        want = reference_model(model, sim)(x, mask)
    assert_bitwise(sim(x, mask), want)


@pytest.mark.parametrize("name", list(ZOO))
def test_rram_deploy_runs_reports_and_stays_near_float(name):
    model, args, batch_dim = _build(name)
    with torch.no_grad():
        want = model(*args)
    sim = cimsim.deploy(model, _rram(), args, batch_dim=batch_dim)
    got = sim(*args)
    assert got.shape == want.shape and torch.isfinite(got).all()
    assert float((got - want).norm() / want.norm()) < 0.8  # lossy, not garbage
    report = sim.report()
    assert len(report.layers) == len(sim.sim_layers)
    assert report.totals["energy_pj_per_inference"] > 0


def test_tied_head_is_mapped_and_the_embedding_listed_digital():
    model, args, _ = _build("gpt-tied-head")
    with pytest.warns(UserWarning, match=r"emb \(Embedding\)"):
        sim = cimsim.deploy(model, lossless_chip("channel"), args)
    assert "head" in sim.sim_layers
    assert ("emb", "Embedding", "layer type not supported") in sim.digital


# ---------------------------------------------------------------------------------------------
# prepare -> one step -> deploy
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chip", ["ideal", "rram"])
@pytest.mark.parametrize("name", list(ZOO))
def test_prepare_steps_and_the_twin_deploys_to_what_it_computes(name, chip):
    model, args, batch_dim = _build(name, torch.float64)
    # rram: its variation and ADC as they are, its conversion noise off (the twin in eval mode
    # draws none: with 0.5 LSB the transformers' outputs move by ~50 %)
    chip_cfg = (lossless_chip("channel") if chip == "ideal" else
                _rram().replace(noise=_rram().noise.replace(thermal_sigma_lsb=0.0)))
    prepare_step_deploy(model, chip_cfg, args, batch_dim)


def prepare_step_deploy(model, chip_cfg, args, batch_dim, main=lambda y: y, **kw):
    """prepare, one SGD step on the mean square of ``main(output)``, then the deployed twin
    equals the eval twin (float64: no ties). ``args``: a tuple, or a dict of keyword inputs.
    Returns the prepared model."""
    def call(m):
        return m(**args) if isinstance(args, dict) else m(*args)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # embeddings and the like listed digital
        prep = prepare(model, chip_cfg, args, seed=3, batch_dim=batch_dim, **kw)
    before = {n: p.detach().clone() for n, p in prep.named_parameters()}
    opt = torch.optim.SGD(prep.parameters(), lr=1e-2)
    prep.train()
    main(call(prep)).pow(2).mean().backward()
    opt.step()
    assert any(not torch.equal(p, before[n]) for n, p in prep.named_parameters())
    prep.eval()
    with torch.no_grad():
        want = call(prep)
    sim = prep.deploy(batch_dim=batch_dim)
    # prepare's capacity check counted the arrays deploy programs
    assert prep.arrays_needed == sim.arrays_needed
    got = call(sim)
    # the engine computes what the twin computes
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    return prep


def test_twin_keeps_the_head_tied_to_the_embedding():
    """The twin used to copy the head's weight: the head and the embedding trained apart."""
    model, args, _ = _build("gpt-tied-head", torch.float64)
    with pytest.warns(UserWarning, match="emb"):
        prep = prepare(model, lossless_chip("channel"), args)
    (twin,) = prep.twin_layers["head"].matrices()
    assert twin.weight is prep.model.emb.weight
    opt = torch.optim.SGD(prep.parameters(), lr=0.1)
    prep(*args).pow(2).mean().backward()
    opt.step()
    float_model = prep.float_model()
    assert torch.equal(float_model.head.weight, float_model.emb.weight)
    # the float copy is tied too (it held two equal copies), and shares nothing with the twin
    assert float_model.head.weight is float_model.emb.weight
    assert float_model.emb.weight is not prep.model.emb.weight
    # trainable as the twin was: the float model fine-tunes on (it came back frozen)
    assert all(p.requires_grad for p in float_model.parameters())


def test_prepare_cuts_a_padding_mask_along_its_own_batch_axis():
    model = Encoder(False, True).eval()
    x, mask = _encoder_data(False)
    prep = prepare(model, lossless_chip("channel"), (x, mask), batch_dim=1, batch_size=2)
    assert prep(x, mask).shape == (5, 3, 3)


def test_weight_norm_twin_leaves_the_source_model_working():
    """Building the float model of a parametrized layer used to fail ('attribute weight
    already exists'); torch's remove_parametrizations would break the source's class."""
    model, args, _ = _build("weight-spectral-norm", torch.float64)
    with torch.no_grad():
        want = model(*args)
    prep = prepare(model, lossless_chip("channel"), args)
    float_model = prep.float_model()
    assert type(float_model.lin) is nn.Linear and type(float_model.conv) is nn.Conv2d
    with torch.no_grad():
        assert torch.equal(model(*args), want)  # the user's model is intact
        torch.testing.assert_close(float_model(*args), want)


# ---------------------------------------------------------------------------------------------
# weights used functionally
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("who", ["deploy", "prepare"])
def test_functional_weights_are_named_in_a_warning_and_listed(who):
    torch.manual_seed(0)
    model, x = Functional().eval(), torch.randn(4, 8)
    run = cimsim.deploy if who == "deploy" else prepare
    with pytest.warns(UserWarning, match=r"2 weight\(s\).*w \(.*matmul.*\), weight \(linear\)"):
        out = run(model, lossless_chip("channel"), x)
    listed = {name for name, kind, _ in out.digital if kind == "parameter"}
    assert listed == {"w", "weight"}
    assert list(out.sim_layers if who == "deploy" else out.twin_layers) == ["fc"]


def test_no_functional_warning_for_modules_positions_or_excluded_layers():
    model, args, _ = _build("convnext")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # layer scale, LayerNorm, an excluded Linear: silent
        sim = cimsim.deploy(model, lossless_chip("channel"), args, exclude=["fc"])
    assert not [d for d in sim.digital if d[1] == "parameter"]


# ---------------------------------------------------------------------------------------------
# inputs and modes
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mobile():
    torch.manual_seed(5)
    model = MobileBlock().eval()
    x = torch.randn(4, 3, 16, 16)
    return model, x, cimsim.deploy(model, lossless_chip("channel"), x)


def test_batch_one_channels_last_and_strided_inputs_give_the_same_outputs(mobile):
    _, x, sim = mobile
    y = sim(x)
    assert_bitwise(sim(x[:1]), y[:1])
    assert_bitwise(sim(x.to(memory_format=torch.channels_last)), y)
    wide = torch.cat([x, x], dim=3)[..., ::2]  # non-contiguous
    assert not wide.is_contiguous()
    assert_bitwise(sim(wide), sim(wide.contiguous()))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_input_dtype_is_kept(mobile, dtype):
    _, x, sim = mobile
    got = sim(x.to(dtype))
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), sim(x), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_deploy(dtype, mobile):
    """A bfloat16 model used to fail reading its weights (NumPy has no bfloat16)."""
    model, x, sim = mobile
    half = cimsim.deploy(copy.deepcopy(model).to(dtype), lossless_chip("channel"), x.to(dtype))
    got = half(x.to(dtype))
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), sim(x), rtol=0.1, atol=0.1)


def test_train_mode_model_deploys_as_in_eval_and_stays_in_inference():
    """deploy evaluates a copy in eval mode (BN running statistics, dropout off); a parent's
    train() used to switch the copy to training mode (dropout, batch statistics)."""
    torch.manual_seed(1)
    model = BNDropout()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
    x = torch.randn(6, 3, 8, 8)
    chip = lossless_chip("channel")
    sim = cimsim.deploy(model, chip, x)
    assert model.training and not sim.training
    assert not [name for name, m in sim.model.named_modules() if m.training]
    assert_bitwise(sim(x), cimsim.deploy(copy.deepcopy(model).eval(), chip, x)(x))
    y = sim(x)
    parent = nn.Sequential(sim)
    with pytest.warns(UserWarning, match="inference"):
        parent.train()
    assert not [name for name, m in sim.model.named_modules() if m.training]
    assert_bitwise(sim(x), y)
    parent.eval()  # silent


def test_half_precision_twins_are_refused_naming_the_layers():
    """A bfloat16 twin used to fail deep in the ADC kernel (NumPy has no bfloat16)."""
    model = MobileBlock().eval().bfloat16()
    with pytest.raises(MappingError, match=r"c1, grouped.*float16/bfloat16.*model.float\(\)"):
        prepare(model, lossless_chip("channel"), torch.randn(2, 3, 16, 16).bfloat16())


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_keyword_calibration_names_a_key_the_forward_does_not_take(run):
    """A dict used to be iterated (its keys passed to the model as inputs), then refused; it is
    the model's keyword arguments now (tests/mapping/test_keyword_batches.py), and a key the
    forward does not take is named with the forward's signature."""
    with pytest.raises(MappingError,
                       match=r"key\(s\) 'x' are not keyword arguments of Linear.forward\(input"):
        run(nn.Linear(4, 2), lossless_chip("channel"), {"x": torch.randn(3, 4)})


class Seq2Seq(nn.Module):
    """nn.Transformer: encoder, decoder (self- and cross-attention), causal and padding masks
    (float masks: the conftest's reference attention takes additive ones)."""

    def __init__(self, batch_first: bool):
        super().__init__()
        self.t = nn.Transformer(16, 2, 1, 1, 32, batch_first=batch_first)

    def forward(self, src, tgt, pad):
        length = tgt.shape[1] if self.t.batch_first else tgt.shape[0]
        causal = nn.Transformer.generate_square_subsequent_mask(length, dtype=tgt.dtype)
        return self.t(src, tgt, tgt_mask=causal, src_key_padding_mask=pad,
                      memory_key_padding_mask=pad)


@pytest.mark.parametrize("batch_first", [True, False])
def test_encoder_decoder_transformer_exact_and_trains(batch_first):
    model = Seq2Seq(batch_first).eval()
    src = torch.randn(3, 5, 16) if batch_first else torch.randn(5, 3, 16)
    tgt = torch.randn(3, 4, 16) if batch_first else torch.randn(4, 3, 16)
    pad = torch.zeros(3, 5)
    pad[1, 3:] = float("-inf")
    args, batch_dim = (src, tgt, pad), 0 if batch_first else 1
    sim = cimsim.deploy(model, lossless_chip("channel"), args, batch_dim=batch_dim)
    assert len(sim.sim_layers) == 7  # 3 attention modules, 2 FFNs of 2 Linear each
    ref = reference_model(model, sim)
    ref.t.encoder.use_nested_tensor = False  # the reference attention has no fused path
    with torch.no_grad():
        want = ref(*args)
    assert_bitwise(sim(*args), want)
    prep = prepare(model.double(), lossless_chip("channel"),
                   tuple(a.double() for a in args), batch_dim=batch_dim)
    prep(*(a.double() for a in args)).sum().backward()
    with torch.no_grad():
        want = prep.eval()(*(a.double() for a in args))
    torch.testing.assert_close(prep.deploy(batch_dim=batch_dim)(*(a.double() for a in args)),
                               want, rtol=1e-9, atol=1e-9)


class ReadsWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.out = nn.Linear(4, 3), nn.Linear(3, 2)

    def forward(self, x):
        return F.linear(self.fc(x), self.out.weight)  # the layer itself is never called


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_reading_a_mapped_layers_weight_says_why_and_what_to_do(run):
    """It used to be torch's bare "'SimLinear' object has no attribute 'weight'"."""
    with pytest.raises(AttributeError, match=r"out: the model reads \.weight of a mapped layer.*"
                                             r"exclude"):
        run(ReadsWeight(), lossless_chip("channel"), torch.randn(3, 4))
    # each says where the weights are: a twin holds them, it programs nothing
    held = ("programmed on the simulated arrays" if run is cimsim.deploy
            else "held by the training twin")
    with pytest.raises(AttributeError, match=held):
        run(ReadsWeight(), lossless_chip("channel"), torch.randn(3, 4))
    sim = run(ReadsWeight(), lossless_chip("channel"), torch.randn(3, 4), exclude=["out"]) \
        if run is cimsim.deploy else None
    if sim is not None:
        assert ("out", "Linear", "excluded by the user") in sim.digital
        # the mapped layer's weight reads as its metadata only (a WeightView): no values
        view = sim.sim_layers["fc"].weight
        assert view.shape == (3, 4) and view.dtype == torch.float32
        with pytest.raises(AttributeError, match=r"fc: the model reads \.weight"):
            view.sum()


@pytest.mark.parametrize("name", ["audio-batchfirst", "audio-seqfirst"])
def test_lossless_audio_net_is_within_8_bit_quantization_of_float(name):
    """No integer re-implementation of the composition here (tests/mapping/test_recurrent.py
    holds each recurrence to one): 8-bit operands keep the output within 2 % of float."""
    model, args, batch_dim = _build(name)
    sim = cimsim.deploy(model, lossless_chip("channel"), args, batch_dim=batch_dim)
    with torch.no_grad():
        want = model(*args)
    got = sim(*args)
    assert float((got - want).norm() / want.norm()) < 0.02
    assert len(sim.sim_layers) == 4 and sim.report().totals["n_inferences"] == 3

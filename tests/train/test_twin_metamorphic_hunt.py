"""Metamorphic relations of the training twin (a hunt): properties relating two runs that hold
by docs/training.md's contract. Every relation below held on the code it was written against;
none failed. Noise-free chips throughout (thermal, per-cell read and comparator noise off),
float64 models, tiny layers, so that the relations are exact where the docs say so.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.train import distill, param_groups, prepare
from cimsim.train.bskmq import prepare_bskmq
from cimsim.train.columnquant import columnquant_chip, prepare_columnquant
from cimsim.train.loop import train_epoch
from cimsim.train.lora import add_lora, merge_lora
from cimsim.train.pimqat import pim_chip, prepare_pimqat
from cimsim.train.raoq import adc_bits
from cimsim.train.ste import grad_scale, round_ste
from tests.conftest import bskmq_chip

D = torch.float64


# --------------------------------------------------------------------------------------------
# models, chips, helpers
# --------------------------------------------------------------------------------------------
class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(12, 16)
        self.b = nn.Linear(16, 5)

    def forward(self, x):
        return self.b(F.relu(self.a(x)))


class CNN(nn.Module):
    """Strided conv, BatchNorm, a grouped reflect-padded conv on a residual branch, a head."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 6, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.c2 = nn.Conv2d(6, 6, 3, padding=1, groups=3, padding_mode="reflect")
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        h = F.relu(self.bn(self.c1(x)))
        h = h + F.relu(self.c2(h))
        return self.fc(h.mean((2, 3)))


class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Linear(6, 8)
        self.ln = nn.LayerNorm(8)
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.ln(self.emb(x))
        a, _ = self.att(h, h, h)
        return self.head((h + a).mean(1))


class GRUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(5, 7, batch_first=True)
        self.fc = nn.Linear(7, 3)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y[:, -1])


def _model(kind: str):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    if kind == "mlp":
        return MLP().double(), torch.randn(24, 12, dtype=D, generator=g)
    if kind == "cnn":
        return CNN().double().eval(), torch.randn(24, 2, 8, 8, dtype=D, generator=g)
    if kind == "attn":
        return Attn().double(), torch.randn(24, 4, 6, dtype=D, generator=g)
    return GRUNet().double(), torch.randn(24, 4, 5, dtype=D, generator=g)


def _quiet(chip):
    """No conversion noise (the engine keeps it in eval; the twin's eval is noise-free)."""
    return chip.replace(noise=chip.noise.replace(thermal_sigma_lsb=0.0, read_noise_rel=0.0),
                        adc=chip.adc.replace(comparator_noise_lsb=0.0),
                        array=chip.array.replace(allow_time_multiplexing=True))


def _lossy(n_rows: int = 16, variation: bool = False):
    """rram-22nm without noise, a 4-bit per-column calibrated ADC, short row groups."""
    chip = _quiet(cimsim.load_chip("rram-22nm"))
    if not variation:
        chip = chip.replace(device=chip.device.replace(variation="none", variation_sigma=0.0))
    return chip.replace(array=chip.array.replace(n_rows=n_rows),
                        adc=chip.adc.replace(bits=4, range_policy="calibrated",
                                             calibration_granularity="column"))


def _out(m, x) -> torch.Tensor:
    with torch.no_grad():
        y = m(x)
    return (y[0] if isinstance(y, tuple) else y).detach().double()


def _equal(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def _step(prep, x, n: int = 2, lr: float = 1e-2) -> None:
    opt = torch.optim.Adam(param_groups(prep, lr))
    prep.train()
    for _ in range(n):
        opt.zero_grad()
        y = prep(x)
        (y[0] if isinstance(y, tuple) else y).pow(2).mean().backward()
        opt.step()
    prep.eval()


# --------------------------------------------------------------------------------------------
# twin (eval, noise off) == prepared.deploy() == cimsim.deploy, over the bundled presets
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in cimsim.list_presets() if n != "pcm-22nm"]
                         + ["pcm-22nm-no-1f"])
def test_untrained_twin_equals_deploy_on_every_bundled_preset(name):
    """§1 step 4: 'A prepared model therefore starts exactly where cimsim.deploy(model, chip,
    calibration, seed=seed) starts'; §1b: the deployed model equals the twin. pcm-22nm's
    deployed chip draws its 1/f read noise at every forward (two calls differ), so it is
    compared with read_noise_q_s = 0 (then exact, as at 1 h and 1 y)."""
    model, x = _model("mlp")
    if name == "pcm-22nm-no-1f":
        chip = _quiet(cimsim.load_chip("pcm-22nm"))
        chip = chip.replace(device=chip.device.replace(read_noise_q_s=(0.0,) * 4))
    else:
        chip = _quiet(cimsim.load_chip(name))
    prep = prepare(model, chip, calibration=x[:16], seed=3).eval()
    y_sim = _out(cimsim.deploy(model, chip, calibration=x[:16], seed=3, progress=False), x)
    _equal(_out(prep, x), y_sim)
    _equal(_out(prep.deploy(3), x), y_sim)


# --------------------------------------------------------------------------------------------
# batch independence, copies, lr = 0, aliasing, state dicts
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mlp", "cnn", "attn", "gru"])
def test_eval_twin_of_a_batch_is_the_concatenation_of_its_sub_batches(kind):
    """Eval is noise-free (§3 'Eval mode is noise-free') and every quantizer is per tensor with
    a fixed learned scale, so a batch's output is that of its sub-batches side by side."""
    model, x = _model(kind)
    prep = prepare(model, _lossy(), calibration=x[:16], seed=3).eval()
    _equal(_out(prep, x), torch.cat([_out(prep, x[i:i + 5]) for i in range(0, len(x), 5)]))


@pytest.mark.parametrize("kind", ["mlp", "attn", "gru"])
def test_a_zero_rate_step_and_a_deepcopy_deploy_what_deploy_deploys(kind):
    """An optimizer step at lr = 0 moves nothing (no BatchNorm here, whose training forward
    moves its statistics), and a deep copy of the twin deploys the same chip: both equal
    cimsim.deploy of the untouched model (§1 step 4, §1b)."""
    model, x = _model(kind)
    chip = _lossy(variation=True)
    y_sim = _out(cimsim.deploy(model, chip, calibration=x[:16], seed=3, progress=False), x)
    prep = prepare(model, chip, calibration=x[:16], seed=3)
    _equal(_out(copy.deepcopy(prep).eval().deploy(3), x), y_sim)
    opt = torch.optim.SGD(prep.parameters(), lr=0.0)
    for _ in range(2):
        opt.zero_grad()
        y = prep(x)
        (y[0] if isinstance(y, tuple) else y).pow(2).mean().backward()
        opt.step()
    prep.eval()
    _equal(_out(prep, x), y_sim)
    _equal(_out(prep.deploy(3), x), y_sim)


def test_train_epoch_at_rate_zero_keeps_a_batchnorm_model_where_deploy_starts():
    """train_epoch: 'Put in training mode (BatchNorm statistics frozen)': with a rate of 0
    nothing moves, BatchNorm's running statistics included, even for a model in training
    mode."""
    model, x = _model("cnn")
    model.train()
    chip = _lossy()
    y_sim = _out(cimsim.deploy(model, chip, calibration=x[:16], seed=3, progress=False), x)
    prep = prepare(model, chip, x[:16], seed=3)
    opt = torch.optim.SGD(prep.parameters(), lr=0.0)
    train_epoch(prep, (x,), lambda xb: prep(xb).pow(2).mean(), opt, batch_size=8, seed=0,
                epoch=0, progress=False)
    prep.eval()
    _equal(_out(prep.deploy(3), x), y_sim)


@pytest.mark.parametrize("kind", ["cnn", "attn"])
def test_a_deployed_model_does_not_follow_later_training_of_its_twin(kind):
    """prepared.deploy() hands over a copy (§1b): training the twin further after deploying
    does not move the deployed model (no shared tensors: LayerNorm, BatchNorm, biases)."""
    model, x = _model(kind)
    prep = prepare(model, _lossy(), calibration=x[:16], seed=3)
    _step(prep, x, n=1)
    sim = prep.deploy(3)
    before = _out(sim, x)
    _equal(_out(prep, x), before)
    _step(prep, x, n=2)
    _equal(_out(sim, x), before)


@pytest.mark.parametrize("kind", ["cnn", "gru"])
def test_a_trained_state_dict_through_torch_save_deploys_the_same_chip(kind):
    """§5 'State dict': a twin restored from a state dict into a fresh prepare (same chip,
    calibration, seed) deploys what the trained twin deploys; deploying in training mode
    deploys what eval deploys and changes no state."""
    model, x = _model(kind)
    chip = _lossy(variation=True)
    prep = prepare(model, chip, calibration=x[:16], seed=3)
    _step(prep, x)
    buf = io.BytesIO()
    torch.save(prep.state_dict(), buf)
    buf.seek(0)
    fresh = prepare(model, chip, calibration=x[:16], seed=3)
    fresh.load_state_dict(torch.load(buf))
    y = _out(prep.deploy(3), x)
    _equal(_out(fresh.eval().deploy(3), x), y)
    state = copy.deepcopy(prep.state_dict())
    prep.train()
    _equal(_out(prep.deploy(3), x), y)
    assert prep.training
    assert all(torch.equal(v, state[k]) for k, v in prep.state_dict().items())


# --------------------------------------------------------------------------------------------
# invariances: names, wrapping, exclude, float_model, calibration batch size
# --------------------------------------------------------------------------------------------
def test_renaming_wrapping_and_excluding_keep_the_other_layers():
    """Without variation the chip does not depend on a layer's name (its seed does, only its
    draws): renamed modules and an nn.Sequential wrapper give the same twin; exclude=['b']
    keeps the hidden layer's twin output (the calibration is a float pass) and the twin with
    the exclusion equals deploy with it (§1 'exclude')."""
    model, x = _model("mlp")
    chip = _lossy()

    class Renamed(nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.second = copy.deepcopy(model.a), copy.deepcopy(model.b)

        def forward(self, x):
            return self.second(F.relu(self.first(x)))

    y = _out(prepare(model, chip, x[:16], seed=3).eval(), x)
    _equal(_out(prepare(Renamed(), chip, x[:16], seed=3).eval(), x), y)
    _equal(_out(prepare(nn.Sequential(model), chip, x[:16], seed=3).eval(), x), y)

    def hidden(p):
        got = {}
        h = p.model.a.register_forward_hook(lambda _m, _i, o: got.__setitem__("o", o))
        _out(p, x)
        h.remove()
        return got["o"].detach()

    full = prepare(model, chip, x[:16], seed=3).eval()
    part = prepare(model, chip, x[:16], seed=3, exclude=["b"]).eval()
    _equal(hidden(part), hidden(full))
    sim = cimsim.deploy(model, chip, calibration=x[:16], seed=3, exclude=["b"], progress=False)
    _equal(_out(part, x), _out(sim, x))
    _equal(_out(part.deploy(3), x), _out(sim, x))


@pytest.mark.parametrize("kind", ["cnn", "attn"])
def test_float_model_of_an_untrained_twin_is_the_model_and_prepares_to_the_same_twin(kind):
    """§1b: float_model() is the model with the learned weights; untrained it computes what
    the model computes, and preparing it again gives the same twin (idempotence)."""
    model, x = _model(kind)
    chip = _lossy()
    prep = prepare(model, chip, x[:16], seed=3).eval()
    fm = prep.float_model()
    _equal(_out(fm, x), _out(model, x))
    _equal(_out(prepare(fm, chip, x[:16], seed=3).eval(), x), _out(prep, x))


def test_the_calibration_batch_size_changes_neither_twin_nor_deploy():
    """prepare's batch_size only cuts the calibration pass (mean/std ranges added row by row
    since 78b1c19; percentiles and activation percentiles over the whole sample)."""
    model, x = _model("cnn")
    chip = _lossy()
    chip = chip.replace(adc=chip.adc.replace(calibration_stat="mean_std"),
                        quant=chip.quant.replace(act_calibration="percentile"))
    ref = _out(prepare(model, chip, x, seed=3, batch_size=256).eval(), x)
    for bs in (7, 16):
        _equal(_out(prepare(model, chip, x, seed=3, batch_size=bs).eval(), x), ref)
        sim = cimsim.deploy(model, chip, calibration=x, seed=3, batch_size=bs, progress=False)
        _equal(_out(sim, x), ref)


# --------------------------------------------------------------------------------------------
# training mode, noise, devices
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fused", [True, False])
def test_training_forward_without_noise_is_the_eval_forward_and_noise_follows_the_seed(fused):
    """§3 Noise: training noise is drawn from torch's generator (the same seed, the same
    draws); with train_noise=False the training forward is the eval one; a 'sampled' twin
    evaluates on the programmed devices."""
    model, x = _model("mlp")
    chip = cimsim.load_chip("rram-22nm")
    chip = chip.replace(array=chip.array.replace(n_rows=16),
                        adc=chip.adc.replace(comparator_noise_lsb=0.3),
                        noise=chip.noise.replace(read_noise_rel=0.02))
    prep = prepare(model, chip, x[:16], seed=3, fused_kernel=fused)
    y_eval = _out(prep.eval(), x)
    prep.train()
    torch.manual_seed(5)
    y1 = prep(x).detach()
    torch.manual_seed(5)
    _equal(prep(x).detach(), y1)
    assert not torch.equal(y1, y_eval)
    quiet = prepare(model, chip, x[:16], seed=3, train_noise=False, fused_kernel=fused).train()
    _equal(quiet(x).detach(), y_eval)
    sampled = prepare(model, chip, x[:16], seed=3, devices="sampled", fused_kernel=fused)
    sampled.train()(x)
    _equal(_out(sampled.eval(), x), y_eval)


# --------------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
@pytest.mark.parametrize("signed", [True, False])
def test_lossless_twin_gradients_are_lsq_fake_quantization(granularity, signed):
    """§3: round/clamp straight through, the plain product's gradient where nothing clips,
    LSQ's step gradient scaled by 1/sqrt(n·Q_p) (n = x.numel() for s_x, N·K or K for s_w).
    On the lossless chip every gradient equals a hand-written LSQ fake-quantized Linear's,
    inputs beyond the calibrated range (clipped) included."""
    g = torch.Generator().manual_seed(1)
    xc = torch.randn(16, 12, dtype=D, generator=g)
    x = torch.randn(24, 12, dtype=D, generator=g) * 1.5
    if not signed:
        xc, x = xc.abs(), x.abs()
    torch.manual_seed(0)
    chip = cimsim.load_chip("ideal")
    chip = chip.replace(quant=chip.quant.replace(weight_granularity=granularity))
    prep = prepare(nn.Sequential(nn.Linear(12, 5).double()), chip, xc).train()
    (_, tw), = list(prep.twins())
    gy = torch.randn(24, 5, dtype=D, generator=torch.Generator().manual_seed(3))
    xin = x.clone().requires_grad_(True)
    (prep(xin) * gy).sum().backward()

    sx = tw.act_scale.detach().clone().requires_grad_(True)
    sw = tw.weight_scale.detach().clone().requires_grad_(True)
    w = tw.weight.detach().clone().requires_grad_(True)
    b = tw.bias.detach().clone().requires_grad_(True)
    xr = x.clone().requires_grad_(True)
    lo, hi, q = tw.x_lo, tw.x_hi, tw.w_qmax
    sx_ = grad_scale(sx, 1 / math.sqrt(xr.numel() * hi))
    sw_ = grad_scale(sw, 1 / math.sqrt((5 * 12 if granularity == "tensor" else 12) * q))
    sw_col = sw_.reshape(-1, 1) if granularity == "channel" else sw_.reshape(1, 1)
    xq = round_ste(torch.clamp(xr / sx_, lo, hi))
    wq = round_ste(torch.clamp(w / sw_col, -q, q))
    ((xq @ wq.T) * sx_ * sw_col.reshape(1, -1) + b).mul(gy).sum().backward()
    for ours, ref in [(xin.grad, xr.grad), (tw.weight.grad, w.grad), (tw.bias.grad, b.grad),
                      (tw.act_scale.grad, sx.grad), (tw.weight_scale.grad, sw.grad)]:
        torch.testing.assert_close(ours.reshape(ref.shape), ref, rtol=1e-10, atol=1e-12)


def test_gradients_add_over_sub_batches_and_step_gradients_grow_by_sqrt_k():
    """§3: 'Because n counts one forward pass, splitting a batch changes these two gradients
    ... √k times those of one batch of the same total size. The weight and bias gradients
    are unchanged.' Checked on a lossy chip (clipping conversions) with a summed loss: weight,
    bias and weight-scale gradients of 4 sub-batches add to the full batch's, the activation
    scale's and ADC step's are twice (√4) the full batch's."""
    model, x = _model("mlp")
    tgt = torch.randn(24, 5, dtype=D, generator=torch.Generator().manual_seed(2))
    prep = prepare(model, _lossy(), x[:16], seed=3).train()
    (prep(x) - tgt).pow(2).sum().backward()
    full = {n: p.grad.clone() for n, p in prep.named_parameters()}
    prep.zero_grad()
    for i in range(0, 24, 6):
        (prep(x[i:i + 6]) - tgt[i:i + 6]).pow(2).sum().backward()
    for n, p in prep.named_parameters():
        factor = 2.0 if n.endswith(("act_scale", "adc_step")) else 1.0
        torch.testing.assert_close(p.grad, factor * full[n], rtol=1e-9, atol=1e-12)


def test_gradients_are_finite_from_zero_to_far_beyond_the_calibrated_range():
    """§3: a clipped activation or conversion stops the gradient; nothing becomes NaN, from
    all-zero inputs to inputs 1e8 times the calibration's."""
    model, x = _model("mlp")
    prep = prepare(model, _lossy(), x[:16], seed=3).train()
    for scale in (0.0, 1e-3, 1e3, 1e8):
        prep.zero_grad()
        xin = (x * scale).requires_grad_(True)
        prep(xin).sum().backward()
        assert torch.isfinite(xin.grad).all()
        for p in prep.parameters():
            assert p.grad is None or torch.isfinite(p.grad).all()


# --------------------------------------------------------------------------------------------
# BitAug's other precisions and deploy at other bits
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("granularity", ["layer", "column"])
@pytest.mark.parametrize("zero_aligned", [True, False])
def test_the_twin_at_other_adc_bits_is_the_chip_deployed_at_those_bits(granularity, zero_aligned):
    """§7 BitAug / twin.to_engine: a calibrated linear ADC of other bits gets 'the learned
    range on its own grid, as adc_bits_override computes it in the twin'; at the chip's own
    bits the override is the identity."""
    model, x = _model("mlp")
    chip = _lossy()
    chip = chip.replace(adc=chip.adc.replace(bits=5, calibration_granularity=granularity,
                                             zero_aligned=zero_aligned,
                                             calibration_stat="percentile"))
    prep = prepare(model, chip, x[:16], seed=3).eval()
    with adc_bits(prep, 5):
        _equal(_out(prep, x), _out(prep, x.clone()))
    for bits in (3, 7):
        with adc_bits(prep, bits):
            y_twin = _out(prep, x)
        _equal(_out(prep.deploy(3, chip=chip.replace(adc=chip.adc.replace(bits=bits))), x),
               y_twin)


# --------------------------------------------------------------------------------------------
# the methods
# --------------------------------------------------------------------------------------------
def _relu_mlp():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 3)).double()
    return model, torch.randn(40, 12, dtype=D, generator=g)


def _bskmq_chip():
    return bskmq_chip(granularity="column", fuse_activation=True)


def _methods():
    model, x = _relu_mlp()
    yield "plain", prepare(model, _lossy(), x[:24], seed=2)
    lora = prepare(model, _lossy(), x[:24], seed=2)
    add_lora(lora, rank=2)
    yield "lora", lora
    yield "pim-qat", prepare_pimqat(model, pim_chip("bit-serial", adc_bits=4, rows=8), x[:24],
                                    seed=2)
    yield "columnquant", prepare_columnquant(model, columnquant_chip(psum_bits=4), x[:24],
                                             seed=2, centre="frozen", init="engine")
    yield "bskmq", prepare_bskmq(model, _bskmq_chip(), x[:24], seed=2)


def test_param_groups_hold_every_trainable_parameter_once_for_every_method():
    """param_groups: 'weights and biases at lr, each learned step size at lr · min|step|' —
    every trainable parameter of the twin in exactly one group (adapters, η-rescaled,
    ColumnQuant and fused-ADC twins included)."""
    for name, prep in _methods():
        ids = [id(p) for g in param_groups(prep, 1e-3) for p in g["params"]]
        assert len(ids) == len(set(ids)), name
        assert set(ids) == {id(p) for p in prep.parameters() if p.requires_grad}, name


def test_each_method_deploys_its_twin_after_training_and_its_start_untrained():
    """Each method's twin (eval, noise off) equals its prepared.deploy() before and after a
    few steps (§7, §8, docs/pim-qat.md §2: η_f folded into the deployed s_w), and, untrained,
    BS-KMQ's and PIM-QAT's without forward rescaling equal cimsim.deploy on their chip."""
    model, x = _relu_mlp()
    for name, prep in _methods():
        prep.eval()
        _equal(_out(prep.deploy(), x), _out(prep, x))
        _step(prep, x, n=2, lr=3e-3)
        if name == "lora":
            y_unmerged = _out(prep, x)
            merge_lora(prep)
            prep.eval()
            _equal(_out(prep, x), y_unmerged)
        _equal(_out(prep.deploy(), x), _out(prep, x))
    for chip, prep in [(_bskmq_chip(), prepare_bskmq(model, _bskmq_chip(), x[:24], seed=2)),
                       (pim_chip("native", adc_bits=4, rows=8),
                        prepare_pimqat(model, pim_chip("native", adc_bits=4, rows=8), x[:24],
                                       seed=2, forward_rescale=False))]:
        sim = cimsim.deploy(model, chip, calibration=x[:24], seed=2, progress=False)
        _equal(_out(prep.eval(), x), _out(sim, x))


def test_distilling_a_model_against_itself_on_the_lossless_chip_stays_near_zero():
    """§6 distill on the 'ideal' chip (24-bit converters): the only loss is the 8-bit input
    and weight quantization; the MSE against the model itself stays below 1e-3 of the
    outputs' mean square, and BatchNorm's statistics stay frozen."""
    model, x = _model("cnn")
    prep = prepare(model, cimsim.load_chip("ideal"), x[:16], seed=3)
    running = prep.model.bn.running_mean.clone()
    loss = distill(prep, model, x, epochs=1, lr=1e-6, batch_size=8, progress=False)["loss"]
    assert loss[0] < 1e-3 * _out(model, x).pow(2).mean().item()
    assert torch.equal(prep.model.bn.running_mean, running)


def test_the_backward_is_multiplied_by_the_adc_gain_and_ignores_its_offset():
    """§3: the backward is the plain product's gradient 'gated by that share (and multiplied by
    the ADC gain 1 + gain_error)'; the offset is not differentiated. On the lossless chip with
    gain_error 0.1 the input and weight gradients are 1.1 times those without, with or without
    an offset of 0.4 LSB (and the twin stays the deployed chip)."""
    g = torch.Generator().manual_seed(1)
    xc = torch.randn(16, 12, dtype=D, generator=g).abs()
    x = torch.randn(24, 12, dtype=D, generator=g).abs()
    gy = torch.randn(24, 5, dtype=D, generator=g)
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Linear(12, 5)).double()
    grads = {}
    for gain, offset in [(0.0, 0.0), (0.1, 0.0), (0.1, 0.4)]:
        chip = cimsim.load_chip("ideal")
        chip = chip.replace(adc=chip.adc.replace(gain_error=gain, offset_error_lsb=offset))
        prep = prepare(lin, chip, xc).train()
        xin = x.clone().requires_grad_(True)
        (prep(xin) * gy).sum().backward()
        (_, tw), = list(prep.twins())
        grads[gain, offset] = (xin.grad, tw.weight.grad)
        sim = cimsim.deploy(lin, chip, calibration=xc, progress=False)
        _equal(_out(prep.eval(), x), _out(sim, x))
    for key in [(0.1, 0.0), (0.1, 0.4)]:
        for ours, ref in zip(grads[key], grads[0.0, 0.0], strict=True):
            torch.testing.assert_close(ours, 1.1 * ref, rtol=1e-12, atol=1e-14)

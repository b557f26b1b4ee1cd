"""The training twin (issue 10, item 1): twin == engine, STE and LSQ gradients, training,
``prepare`` == ``deploy`` on the lossless chip, GPU, bad options."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import cimsim
from cimsim import engine
from cimsim.arrays.encoding import input_planes as np_input_planes
from cimsim.arrays.program import program
from cimsim.errors import ConfigError
from cimsim.train.ste import floor_ste, grad_scale, lsq_factor, round_ste
from cimsim.train.twin import (
    TwinMatmul,
    TwinOptions,
    conversion_digits,
    input_planes,
    prepare,
)
from tests.conftest import ENCODINGS, ideal_chip, random_inputs, random_weights

GRANULARITIES = ("tensor", "channel", "column")


def _with_quant(chip, granularity: str):
    return chip.replace(quant=chip.quant.replace(weight_granularity=granularity))


def _engine_parts(twin: TwinMatmul, x_int: torch.Tensor) -> np.ndarray:
    """``engine.run`` on every part the twin hands back: (T, M, N)."""
    view = twin.to_engine()
    x = x_int.detach().cpu().numpy().astype(np.int64)
    return np.stack([engine.run(layer, x[:, a:b])[0] for a, b, layer in view.parts])


# ---------------------------------------------------------------------------------------------
# 1. the decomposition pieces against the engine's NumPy ones
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("enc", ENCODINGS)
@pytest.mark.parametrize("readout", ["analog", "digital"])
@pytest.mark.parametrize("bpc", [1, 2, 3])
@pytest.mark.parametrize("slices", ["digital", "analog"])
def test_conversion_digits_are_the_programmed_conversions(enc, readout, bpc, slices):
    chip = ideal_chip(encoding=enc, differential_readout=readout, bits_per_cell=bpc,
                      weight_bits=6, n_rows=16, n_cols=64, slice_readout=slices)
    w = random_weights(np.random.default_rng(bpc), chip, 5, 9)
    layer = program(w, chip)
    d = layer.digits_phys.astype(np.float64)
    phys, wts = layer.conv_phys, layer.conv_weight  # (C, R) columns read, analog weights
    expected = (d[:, np.maximum(phys, 0)] * np.where(phys >= 0, wts, 0.0)).sum(axis=2)
    got = conversion_digits(torch.tensor(w, dtype=torch.float64), chip)  # (Qc, N, K)
    got = got.permute(2, 1, 0).reshape(w.shape[1], -1).numpy()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dac", [1, 2, 3, None])
@pytest.mark.parametrize(("signed", "mode"), [(False, "twos_complement"),
                                              (True, "twos_complement"), (True, "two_pass")])
def test_input_planes_are_the_engine_planes(dac, signed, mode):
    chip = ideal_chip(input_bits=7, dac_bits=dac, signed_inputs=mode)
    x = random_inputs(np.random.default_rng(1), chip, signed, 6, 11)
    expected = np_input_planes(x, chip, signed).planes
    got = input_planes(torch.tensor(x, dtype=torch.float64), chip, signed).numpy()
    np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------------------------------------
# 2. twin == engine, property-based
# ---------------------------------------------------------------------------------------------
def _draw_chip(draw, **extra):
    input_bits = draw(st.integers(1, 5))
    n_rows = draw(st.integers(1, 10))
    # analog slice read-out: every slice of an output in one array (up to 8 columns here)
    slices = draw(st.sampled_from(["digital", "analog"]))
    chip = ideal_chip(
        slice_readout=slices,
        encoding=draw(st.sampled_from(ENCODINGS)),
        differential_readout=draw(st.sampled_from(["analog", "digital"])),
        bits_per_cell=draw(st.integers(1, 3)),
        input_bits=input_bits,
        weight_bits=draw(st.integers(2, 5)),
        dac_bits=draw(st.none() | st.integers(1, input_bits)),
        signed_inputs=draw(st.sampled_from(["twos_complement", "two_pass"])),
        n_rows=n_rows,
        rows_per_conversion=draw(st.none() | st.integers(1, n_rows)),
        n_cols=draw(st.integers(8 if slices == "analog" else 2, 12)),
        **extra,
    )
    return _with_quant(chip, draw(st.sampled_from(GRANULARITIES)))


def _draw_operands(draw, chip, m: int):
    k, n = draw(st.integers(1, 14)), draw(st.integers(1, 4))
    # deploy's symmetric signed quantizer has no nonzero code at 1 bit (act_range: [0, 0])
    signed = chip.input_bits > 1 and draw(st.booleans())
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    w = torch.randn(n, k, generator=gen, dtype=torch.float64)
    if draw(st.booleans()):
        w[:, 0] = 0.0  # a column of zero weights
    x_cal = torch.randn(24, k, generator=gen, dtype=torch.float64)
    x = torch.randn(m, k, generator=gen, dtype=torch.float64)
    if not signed:
        x_cal, x = x_cal.abs(), x.abs()
    return w, x_cal, x


@st.composite
def lossless_problems(draw):
    chip = _draw_chip(draw)
    return (chip, *_draw_operands(draw, chip, draw(st.integers(1, 6))))


@settings(max_examples=60)
@given(lossless_problems())
def test_twin_equals_engine_exactly_on_the_lossless_chip(problem):
    chip, w, x_cal, x = problem
    twin = TwinMatmul.calibrated(w, None, chip, x_cal).eval()
    x_int = twin.quantize_input(x)
    y = twin.integer_forward(x_int).detach().numpy()
    np.testing.assert_array_equal(y, _engine_parts(twin, x_int))
    w_int = twin.quantized_weight().numpy()
    np.testing.assert_array_equal(y.sum(axis=0), x_int.numpy() @ w_int.T)
    # the float forward is the dequantized integer result
    view = twin.to_engine()
    expected = sum(y[t] * (view.s_x * view.s_w[t]) for t in range(y.shape[0]))
    np.testing.assert_allclose(twin(x).detach().numpy(), expected, rtol=1e-12, atol=1e-12)


@st.composite
def lossy_problems(draw):
    kind = draw(st.sampled_from(["full_scale", "fixed", "calibrated", "ramp"]))
    fixed_lo = draw(st.floats(-30.0, 5.0))
    adc = dict(
        bits=draw(st.integers(2, 5)),
        kind="ramp" if kind == "ramp" else "sar",
        range_policy="calibrated" if kind == "ramp" else kind,
        full_scale_factor=draw(st.floats(1.0, 3.0)),
        fixed_lo=fixed_lo,
        fixed_hi=fixed_lo + draw(st.floats(1.0, 40.0)),
        calibration_granularity=draw(st.sampled_from(["layer", "array", "column"])),
        calibration_stat=draw(st.sampled_from(["minmax", "percentile", "mean_std"])),
        percentile=draw(st.floats(90.0, 100.0)),
        zero_aligned=draw(st.booleans()),
        level_fit=draw(st.sampled_from(["uniform", "kmeans", "lloyd_max"])),
        gain_error=draw(st.sampled_from([0.0, 0.04])),
        offset_error_lsb=draw(st.sampled_from([0.0, -0.3])),
    )
    chip = _draw_chip(draw, adc=adc,
                      on_off_ratio=draw(st.sampled_from([math.inf, 17.0])),
                      off_current_compensation=draw(st.sampled_from(["none", "analog",
                                                                     "digital"])))
    return (chip, *_draw_operands(draw, chip, 64))


@settings(max_examples=60)
@given(lossy_problems())
def test_twin_converts_like_the_engine_on_lossy_adcs(problem):
    chip, w, x_cal, x = problem
    twin = TwinMatmul.calibrated(w, None, chip, x_cal).eval()
    x_int = twin.quantize_input(x)
    y = twin.integer_forward(x_int).detach().numpy()
    y_engine = _engine_parts(twin, x_int)
    # same codes: outputs agree up to the order of the float sums; a float tie at a code
    # boundary may convert one code apart, which must stay rare
    close = np.isclose(y, y_engine, rtol=1e-9, atol=1e-6)
    assert close.mean() >= 0.99, f"{(~close).sum()} of {close.size} outputs differ"


# ---------------------------------------------------------------------------------------------
# 3. gradients
# ---------------------------------------------------------------------------------------------
def test_round_and_floor_pass_the_gradient_and_grad_scale_scales_it():
    x = torch.tensor([-1.7, -0.5, 0.2, 2.5, 3.9], dtype=torch.float64, requires_grad=True)
    (round_ste(x) * torch.arange(5.0)).sum().backward()
    assert torch.equal(x.grad, torch.arange(5.0, dtype=torch.float64))
    assert torch.equal(round_ste(x.detach()), torch.round(x.detach()))
    x.grad = None
    floor_ste(x).sum().backward()
    assert torch.equal(x.grad, torch.ones(5, dtype=torch.float64))
    x.grad = None
    y = grad_scale(x, 0.25)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.equal(x.grad, torch.full((5,), 0.25, dtype=torch.float64))


def _tiny_twin(w, x_cal, **chip_changes):
    chip = _with_quant(ideal_chip(input_bits=4, weight_bits=4, n_rows=8, **chip_changes),
                       "tensor")
    return TwinMatmul.calibrated(torch.tensor(w, dtype=torch.float64), None, chip,
                                 torch.tensor(x_cal, dtype=torch.float64))


def test_straight_through_inside_the_ranges_and_zero_outside():
    # unsigned 4-bit inputs, s_x = 15/15 = 1; weights in [-7, 7], s_w = 7/7 = 1
    twin = _tiny_twin([[7.0, -3.0, 2.0, 0.5]], [[15.0, 1.0, 2.0, 3.0]])
    with torch.no_grad():
        twin.weight_scale.fill_(0.5)  # now 7 -> 14 clips at 7: no gradient for that weight
    x = torch.tensor([[3.2, 40.0, -2.0, 5.0]], dtype=torch.float64, requires_grad=True)
    y = twin(x)
    y.sum().backward()
    # ∂y/∂x = s_w · w_int inside [0, 15]; inputs 40 and -2 are clipped
    w_int = twin.quantized_weight()
    assert torch.equal(w_int, torch.tensor([[7.0, -6.0, 4.0, 1.0]], dtype=torch.float64))
    assert torch.allclose(x.grad, torch.tensor([[0.5 * 7, 0.0, 0.0, 0.5 * 1]],
                                               dtype=torch.float64))
    # ∂y/∂w = s_x · x_int for weights inside the range, 0 for the clipped one
    x_int = torch.tensor([3.0, 15.0, 0.0, 5.0], dtype=torch.float64)
    assert torch.allclose(twin.weight.grad, (x_int * torch.tensor([0.0, 1, 1, 1]))[None])


def test_adc_clamp_stops_the_gradient():
    # fixed 2-bit ADC over [0, 6] cell-LSB, one-shot inputs, one cell per weight: a single
    # conversion per output sees a = x_int · w_int
    twin = _tiny_twin([[1.0]], [[15.0]], bits_per_cell=3, dac_bits=None, encoding="signed_cell",
                      adc=dict(bits=2, range_policy="fixed", fixed_lo=0.0, fixed_hi=6.0,
                               zero_aligned=False))
    x = torch.tensor([[1.0], [5.0], [12.0]], dtype=torch.float64, requires_grad=True)
    y = twin(x)
    y.sum().backward()
    # Δ = 2, lo = 0: a = 7·x_int >= 7 converts past the top code 3 (value 6): clipped
    assert torch.allclose(y.detach(), torch.full((3, 1), 6.0 / 7, dtype=torch.float64))
    assert torch.equal(x.grad, torch.zeros_like(x))
    x2 = torch.tensor([[0.4]], dtype=torch.float64, requires_grad=True)  # a = 0: inside
    twin(x2).sum().backward()
    assert math.isclose(x2.grad.item(), 1.0)  # s_x · s_w · 7 / s_x, with s_w = 1/7


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "torch"])
def test_the_top_code_passes_the_gradient_and_the_code_beyond_it_does_not(fused):
    """A conversion landing exactly on the top code is in range (straight-through share 1);
    only one beyond it clipped. Guards the straight-through mask (the fused kernel's and the
    torch path's) against excluding the top code, ``code < top`` for ``code <= top``."""
    # fixed 2-bit ADC over [0, 21]: Δ = 7, top code 3 (value 21); a = 7·x_int
    twin = _tiny_twin([[1.0]], [[15.0]], bits_per_cell=3, dac_bits=None, encoding="signed_cell",
                      adc=dict(bits=2, range_policy="fixed", fixed_lo=0.0, fixed_hi=21.0,
                               zero_aligned=False))
    twin.fused = fused
    x = torch.tensor([[2.0], [3.0], [4.0]], dtype=torch.float64, requires_grad=True)
    y = twin(x)
    y.sum().backward()
    # a = 14 (code 2), 21 (code 3, the top), 28 (code 4 > 3: clipped to 21); y = a / 7
    assert torch.equal(y.detach(), torch.tensor([[2.0], [3.0], [3.0]], dtype=torch.float64))
    # ∂y/∂x = s_x · s_w · 7 / s_x = 1 where the code is in range, with s_w = 1/7
    assert torch.allclose(x.grad, torch.tensor([[1.0], [1.0], [0.0]], dtype=torch.float64),
                          rtol=1e-12, atol=0.0)


def test_lsq_activation_and_weight_scale_gradients_by_hand():
    # ideal chip (lossless): y = s_x · s_w · Σ_k x_int[k] · w_int[k]
    w = np.array([[0.7, -0.35]])
    twin = _tiny_twin(w, [[3.0, 1.5]])  # s_x = 3/15 = 0.2, s_w = 0.7/7 = 0.1
    s_x, s_w = twin.act_scale.item(), twin.weight_scale.item()
    assert math.isclose(s_x, 0.2) and math.isclose(s_w, 0.1)
    x = torch.tensor([[0.55, 4.0]], dtype=torch.float64)  # 0.55/0.2 = 2.75 -> 3; 4/0.2 clips
    y = twin(x)
    y.sum().backward()
    x_int = np.array([3.0, 15.0])
    w_int = np.array([7.0, -4.0])  # -0.35/0.1 = -3.5 -> -4 (half to even)
    assert np.array_equal(twin.quantized_weight().numpy()[0], w_int)
    # LSQ: ∂(s·q(v/s))/∂s = q - v/s inside the range, the clipped code outside
    dq_x = np.array([3.0 - 0.55 / s_x, 15.0])
    grad_sx = s_w * float(w_int @ dq_x) * lsq_factor(x.numel(), 15)
    dq_w = w_int - w[0] / s_w  # both weights inside [-7, 7] (0.7 sits on the bound)
    grad_sw = s_x * float(x_int @ dq_w) * lsq_factor(2, 7)
    assert math.isclose(twin.act_scale.grad.item(), grad_sx, rel_tol=1e-9)
    assert math.isclose(twin.weight_scale.grad.item(), grad_sw, rel_tol=1e-9)
    assert math.isclose(y.item(), s_x * s_w * float(x_int @ w_int), rel_tol=1e-12)


def test_lsq_adc_step_gradient_by_hand():
    # one conversion per output: a = x_int · w_int; a calibrated 3-bit ADC over [0, a_max]
    chip = _with_quant(ideal_chip(input_bits=4, weight_bits=4, bits_per_cell=3, dac_bits=None,
                                  encoding="signed_cell", n_rows=8,
                                  adc=dict(bits=3, range_policy="calibrated")), "tensor")
    twin = TwinMatmul.calibrated(torch.tensor([[1.0]], dtype=torch.float64), None, chip,
                                 torch.tensor([[1.5], [0.0]], dtype=torch.float64))
    # s_x = 0.1, w_int = 7, calibration a = 15·7 = 105: grid [0, 105], Δ = 15, lo = 0
    assert math.isclose(twin.adc_step.item(), 15.0)
    x = torch.tensor([[0.3], [0.75], [1.1]], dtype=torch.float64)  # x_int 3, 8 (7.5 even), 11
    twin(x).sum().backward()
    a = np.array([3.0, 8.0, 11.0]) * 7
    code = np.clip(np.floor(a / 15.0 + 0.5), 0, 7)
    # LSQ with lo = 0: ∂v/∂Δ = code - a/Δ inside the range
    dv = code - a / 15.0
    expected = 0.1 * 1.0 / 7 * dv.sum() * lsq_factor(3, 7)  # y = s_x · s_w · v, s_w = 1/7
    assert math.isclose(twin.adc_step.grad.item(), expected, rel_tol=1e-9)


# ---------------------------------------------------------------------------------------------
# 4. training and prepare
# ---------------------------------------------------------------------------------------------
class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, 6, 3, groups=3, padding=1, padding_mode="reflect")
        self.c3 = nn.Conv2d(6, 6, 3, groups=6, bias=False)  # depthwise
        self.c4 = nn.Conv1d(6, 4, 2)
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        h = F.relu(self.c1(x))
        h = self.c3(self.c2(h))  # signed into c3
        h = F.relu(self.c4(h.mean(dim=2)))
        return self.fc(torch.flatten(h, 1))


def test_prepare_equals_deploy_on_the_lossless_chip():
    torch.manual_seed(0)
    model = SmallCNN().double().eval()
    chip = _with_quant(cimsim.load_chip("ideal"), "column")
    chip = chip.replace(array=chip.array.replace(n_rows=20, n_cols=16), input_bits=6,
                        dac=chip.dac.replace(bits=2))
    x_cal = torch.randn(6, 2, 6, 6, dtype=torch.float64)
    x = torch.randn(3, 2, 6, 6, dtype=torch.float64)
    sim = cimsim.deploy(model, chip, x_cal, seed=3)
    prep = prepare(model, chip, x_cal, seed=3).eval()
    assert set(prep.twin_layers) == {"c1", "c2", "c3", "c4", "fc"}
    assert sum(1 for _ in prep.twins()) == 1 + 3 + 6 + 1 + 1
    y_sim, y_twin = sim(x), prep(x)
    torch.testing.assert_close(y_twin, y_sim, rtol=1e-9, atol=1e-9)


def test_prepare_starts_from_deploys_scales_and_adc_tables():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(10, 7), nn.ReLU(), nn.Linear(7, 3))
    chip = cimsim.load_chip("rram-22nm")
    chip = chip.replace(adc=chip.adc.replace(range_policy="calibrated", bits=5,
                                             calibration_granularity="column"))
    x_cal = torch.randn(40, 10)
    sim = cimsim.deploy(model, chip, x_cal, seed=5)
    prep = prepare(model, chip, x_cal, seed=5)
    for work, (_, twin) in zip(sim.works(), prep.twins(), strict=True):
        (block,) = work.blocks
        (layer,) = twin.programmed()
        np.testing.assert_array_equal(layer.adc.lo, block.layer.adc.lo)
        np.testing.assert_array_equal(layer.adc.delta, block.layer.adc.delta)


def fit_sine(chip, steps: int = 20):
    """A small MLP prepared on ``chip`` and trained ``steps`` Adam steps on sin(2x): the
    prepared model and its losses (seed 2)."""
    torch.manual_seed(2)
    x = torch.randn(64, 8)
    target = torch.sin(x[:, :2] * 2)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    prep = prepare(model, chip, x)
    opt = torch.optim.Adam(prep.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = F.mse_loss(prep(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return prep, losses


def test_a_few_adam_steps_lower_the_loss():
    chip = cimsim.load_chip("ideal")
    chip = chip.replace(input_bits=4, weight_bits=4,
                        adc=chip.adc.replace(bits=3, range_policy="calibrated"),
                        array=chip.array.replace(n_rows=16, n_cols=32))
    prep, losses = fit_sine(chip)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses
    steps = [t.adc_step for _, t in prep.twins()]
    assert all(s.requires_grad for s in steps)


def test_prepare_leaves_the_model_alone_and_keeps_its_mode():
    model = nn.Sequential(nn.Linear(4, 3))
    before = model[0].weight.detach().clone()
    prep = prepare(model, cimsim.load_chip("ideal"), torch.rand(5, 4))
    assert prep.training
    assert isinstance(model[0], nn.Linear) and torch.equal(model[0].weight, before)
    single = prepare(nn.Linear(4, 3), cimsim.load_chip("ideal"), torch.rand(5, 4))
    assert list(single.twin_layers) == ["0"]  # a mappable root is named as deploy names it


# ---------------------------------------------------------------------------------------------
# 5. errors, device
# ---------------------------------------------------------------------------------------------
def test_bad_options_raise_config_error_naming_the_field():
    chip, x = cimsim.load_chip("ideal"), torch.rand(3, 4)
    with pytest.raises(ConfigError, match="learn_adc_stepp"):
        prepare(nn.Linear(4, 2), chip, x, learn_adc_stepp=True)
    with pytest.raises(ConfigError, match="train_noise"):
        prepare(nn.Linear(4, 2), chip, x, train_noise="yes")
    with pytest.raises(ConfigError, match="learn_act_scale"):
        TwinOptions(learn_act_scale=1)
    with pytest.raises(ConfigError, match="chip = int object is invalid"):
        prepare(nn.Linear(4, 2), 3, x)


def test_training_noise_only_in_training_mode():
    chip = cimsim.load_chip("ideal")
    chip = chip.replace(noise=chip.noise.replace(thermal_sigma_lsb=3.0), input_bits=4)
    x = torch.rand(8, 6)
    prep = prepare(nn.Linear(6, 3), chip, x)
    assert not torch.equal(prep(x), prep(x))  # fresh draws per forward
    prep.eval()
    assert torch.equal(prep(x), prep(x))
    quiet = prepare(nn.Linear(6, 3), chip, x, train_noise=False)
    assert torch.equal(quiet(x), quiet(x))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_twin_runs_on_cuda_and_equals_the_engine():
    chip = _with_quant(ideal_chip(encoding="twos_complement", bits_per_cell=2, dac_bits=2,
                                  n_rows=20, n_cols=16, rows_per_conversion=8, input_bits=6,
                                  weight_bits=6, adc=dict(bits=5, range_policy="calibrated",
                                                          calibration_granularity="array")),
                       "column")
    torch.manual_seed(0)
    w, x_cal, x = torch.randn(5, 45), torch.randn(64, 45), torch.randn(32, 45)
    twin = TwinMatmul.calibrated(w.double(), None, chip, x_cal.double()).cuda().eval()
    x_int = twin.quantize_input(x.double().cuda())
    y = twin.integer_forward(x_int)
    assert y.is_cuda
    close = np.isclose(y.cpu().numpy(), _engine_parts(twin, x_int.cpu()), rtol=1e-9, atol=1e-6)
    assert close.mean() >= 0.99
    twin.train()
    twin(x.double().cuda()).sum().backward()
    assert twin.weight.grad.is_cuda and twin.adc_step.grad is not None


def test_float32_twin_rounds_input_ties_as_deploy():
    # digits-like pixels k/16: with an 8-bit unsigned scale near 1/255, k = 8 lands on the tie
    # 127.5, which a float32 quotient and deploy's float64 one round to different codes
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(12, 5))
    chip = cimsim.load_chip("ideal").replace(input_bits=8)
    x = torch.randint(0, 17, (64, 12)).float() / 16
    x[0, 0] = 1.0  # the calibrated range reaches 1 (scale 1/255)
    prep = prepare(model, chip, x, seed=0).eval()
    (_, twin), = prep.twins()
    view = twin.to_engine()
    from cimsim.mapping.quant import quantize_acts
    want = quantize_acts(x.double().numpy(), view.s_x, chip.input_bits, twin.input_signed)
    naive = torch.clamp(torch.round(x / twin.act_scale.detach()), twin.x_lo, twin.x_hi)
    assert np.any(naive.numpy() != want)  # the float32 quotient does round some ties apart
    np.testing.assert_array_equal(twin.quantize_input(x).numpy(), want)
    # and the training forward quantizes the same way, with the straight-through gradient
    xg = x.clone().requires_grad_(True)
    codes = twin.input_codes(xg, twin.act_scale)
    np.testing.assert_array_equal(codes.detach().numpy(), want)
    codes.sum().backward()
    inside = (x / twin.act_scale).detach() <= twin.x_hi
    torch.testing.assert_close(xg.grad[inside], (1 / twin.act_scale.detach()).expand_as(x)[inside])


def test_a_prepared_and_a_deployed_model_pickle_whole():
    """torch.save(model) of a whole prepared or deployed model (not only its state_dict): a
    lambda hook on the twin layers made prepared models unpicklable."""
    import io
    import warnings

    import cimsim

    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    x = torch.randn(8, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        prep = prepare(model, cimsim.load_chip("ideal"), x)
        sim = cimsim.deploy(model, cimsim.load_chip("ideal"), x)
    for obj in (prep, sim):
        buf = io.BytesIO()
        torch.save(obj, buf)
        buf.seek(0)
        again = torch.load(buf, weights_only=False)
        with torch.no_grad():
            torch.testing.assert_close(again(x), obj(x), rtol=0, atol=0)


def test_a_frozen_weight_moved_in_place_between_forwards_still_backpropagates():
    """An EMA teacher moves its frozen weights in place in every forward; a loss of two
    forwards (BitAug) then failed autograd's version check: the twin's ``w / s`` had saved the
    frozen parameter itself for its scale's gradient. It saves a copy now."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))
    model[0].requires_grad_(False)
    x = torch.rand(16, 6)
    prep = prepare(model, "rram-22nm", calibration=x)
    frozen = [p for n, p in prep.named_parameters() if n.endswith("weight") and not p.requires_grad]
    assert frozen  # the first layer's weight, its scales still trained
    y1 = prep(x)
    with torch.no_grad():
        frozen[0].mul_(0.9)
    y2 = prep(x)
    (y1.square().sum() + y2.square().sum()).backward()
    scales = [p for n, p in prep.named_parameters() if "scale" in n and p.requires_grad]
    assert scales and all(p.grad is not None for p in scales)
    assert frozen[0].grad is None


@pytest.mark.parametrize("groups", [2, 4])
def test_grouped_conv_with_smoothing_starts_as_deploy(groups):
    """Was: the groups of a convolution shared the first group's activation scale, while deploy
    gives each group the range of its own channels over their SmoothQuant factors: with
    ``quant.smooth_alpha`` every output of the later groups differed from deploy's on the
    lossless chip (group 1 of a 2-group 1x1 conv off by 0.014)."""
    chip = cimsim.load_chip("ideal")
    chip = chip.replace(quant=chip.quant.replace(smooth_alpha=0.5))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 4, 1, groups=groups), nn.Flatten()).double().eval()
    x = torch.randn(8, 4, 8, 8, dtype=torch.float64)
    sim = cimsim.deploy(model, chip, x, seed=3)
    prep = prepare(model, chip, x, seed=3).eval()
    scales = [t.act_scale for _, t in prep.twins()]
    assert len({id(s) for s in scales}) == groups  # one per group, as deploy's
    with torch.no_grad():
        np.testing.assert_array_equal(prep(x).numpy(), sim(x).numpy())

"""Tests from a mutation round over the training twin: ``cimsim/train/twin.py``,
``twin_layers.py``, ``_kernels.py`` and ``tied.py``.

Each test pins behaviour that a mutant of those files changed without any other test
noticing (an ADC value half-way between codes or on a threshold, the noise variances, LSQ's
step gradient under comparator noise and over several planes, the 1-b and clipped weight
codes, float32 ties against deploy's float64 quotients, the zero-scale warnings, the float64
hand-back, aged and split-pair devices against ``deploy``, ties and hooks of the source
weights), with hand-computed answers or relations against the engine. All use toy twins and
run in well under a second each.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from cimsim import engine
from cimsim.train import prepare
from cimsim.train.twin import TwinMatmul, TwinOptions, read_noise_weights
from tests.conftest import bskmq_chip, ideal_chip


def _tensor_chip(**changes):
    chip = ideal_chip(**changes)
    return chip.replace(quant=chip.quant.replace(weight_granularity="tensor"))


def _twin(w, x_cal, chip, **options) -> TwinMatmul:
    return TwinMatmul.calibrated(torch.tensor(w, dtype=torch.float64), None, chip,
                                 torch.tensor(x_cal, dtype=torch.float64),
                                 options=TwinOptions(**options))


def _engine(twin: TwinMatmul, x_int: torch.Tensor) -> np.ndarray:
    x = x_int.numpy().astype(np.int64)
    return np.stack([engine.run(layer, x[:, a:b])[0] for a, b, layer in twin.to_engine().parts])


# a 3-bit ADC with a fixed range [0, 14]: step 2, so odd sums are half-way between codes
_TIE_CHIP = _tensor_chip(input_bits=4, weight_bits=4, bits_per_cell=3, dac_bits=None,
                         encoding="signed_cell", n_rows=8,
                         adc=dict(bits=3, range_policy="fixed", fixed_lo=0.0, fixed_hi=14.0))


# ---------------------------------------------------------------------------------------------
# the ADC
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fused", [True, False])
def test_a_value_half_way_between_codes_converts_up_on_both_paths(fused):
    # w_int = (7, 5), s_x = 1: a = 5 and 7 sit half-way (u = 2.5, 3.5); floor(u + 1/2) as the
    # engine takes them up (round-half-to-even would give 2 for 2.5)
    twin = _twin([[7.0, 5.0]], [[15.0, 15.0]], _TIE_CHIP, fused_kernel=fused).eval()
    assert twin._adc_lo0.item() == 0.0 and twin._adc_delta0.item() == 2.0
    x_int = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    y = twin.integer_forward(x_int)
    assert y[0, :, 0].tolist() == [6.0, 8.0, 14.0]  # 15 clips at the top code
    np.testing.assert_array_equal(y.numpy(), _engine(twin, x_int))


def test_read_noise_variance_of_an_analog_pair_adds_both_columns():
    # an analog differential pair: one conversion of G+ - G-, its variance rel²(G+² + G-²)
    chip = ideal_chip(encoding="differential", differential_readout="analog", weight_bits=4,
                      bits_per_cell=3, on_off_ratio=10.0, noise=dict(read_noise_rel=0.1))
    w = torch.tensor([[3.0, -2.0, 0.0]], dtype=torch.float64)
    var = read_noise_weights(w, chip)
    g_off = chip.device.g_off_lsb  # the off-state conductance, cell-LSB
    assert g_off > 0
    pos = torch.tensor([3.0, 0.0, 0.0], dtype=torch.float64) + g_off
    neg = torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64) + g_off
    expected = 0.01 * (pos * pos + neg * neg)
    assert var.shape == (1, 1, 3)
    torch.testing.assert_close(var[0, 0], expected, rtol=1e-12, atol=0)


def test_thermal_noise_adds_its_variance_to_the_read_noise_variance():
    # sd = sqrt(var + th²): read variance 0.5 and thermal sigma 2 give sd sqrt(4.5)
    chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=8,
                        noise=dict(thermal_sigma_lsb=2.0))
    twin = _twin([[1.0]], [[1.0]], chip)
    torch.manual_seed(0)
    a = torch.zeros(1, 40000, 1, dtype=torch.float64)
    assert twin._add_noise(a, torch.full_like(a, 0.5)) is None  # no comparator noise
    assert a.std().item() == pytest.approx(math.sqrt(4.5), rel=0.02)


LSQ_X = torch.tensor([[0.3], [0.75], [1.1], [0.5]], dtype=torch.float64)  # x_int 3, 8, 11, 5


def _lsq_step_twin(fused: bool, **adc) -> TwinMatmul:
    """One weight (w_int = 7) on a calibrated 3-b ADC whose step is 15 (s_x = 0.1: a = 105 at
    the calibration input 1.5), with the ADC fields ``adc`` besides: the step gradient's
    known answer is LSQ's at the codes the conversions of :data:`LSQ_X` give."""
    chip = _tensor_chip(input_bits=4, weight_bits=4, bits_per_cell=3, dac_bits=None,
                        encoding="signed_cell", n_rows=8,
                        adc=dict(bits=3, range_policy="calibrated", **adc))
    twin = _twin([[1.0]], [[1.5], [0.0]], chip, fused_kernel=fused)
    assert twin.adc_step.item() == 15.0
    return twin


@pytest.mark.parametrize("fused", [True, False])
def test_lsq_adc_step_gradient_is_unmoved_by_comparator_noise(fused):
    # ∂v/∂r = Δ₀·(code + shift − u) with u = a/Δ + shift: the comparator draw cancels, so the
    # step's gradient is LSQ's Σ (code − a/Δ) at the codes the noisy conversions gave
    twin = _lsq_step_twin(fused, comparator_noise_lsb=0.4).train()
    x = LSQ_X
    torch.manual_seed(3)
    y = twin(x)
    y.sum().backward()
    scale = 0.1 / 7  # s_x · s_w
    code = np.round(y.detach().numpy()[:, 0] / (scale * 15.0))
    a = np.array([3.0, 8.0, 11.0, 5.0]) * 7
    assert np.all((code >= 0) & (code <= 7))
    assert not np.array_equal(code, np.clip(np.floor(a / 15 + 0.5), 0, 7))  # the noise moved one
    expected = scale * float(np.sum(code - a / 15.0)) / math.sqrt(4 * 7)  # LSQ 1/sqrt(n·Q_p)
    assert twin.adc_step.grad.item() == pytest.approx(expected, rel=1e-9)


def _ramp_twin() -> TwinMatmul:
    """A ramp NL-ADC twin (one conversion per output, all input bits at once) with levels
    0, 10, 20, 30 and thresholds 5, 15, 25 set by hand (w_int = (7, 1))."""
    chip = bskmq_chip(4, 2, "uniform", "layer", fuse_activation=False)
    twin = TwinMatmul.calibrated(torch.tensor([[7.0, 1.0]], dtype=torch.float64), None, chip,
                                 torch.tensor([[3.0, 3.0], [0.0, 0.0]], dtype=torch.float64))
    assert twin.nonlinear_adc and twin.quantized_weight().tolist() == [[7.0, 1.0]]
    with torch.no_grad():
        twin._adc_thr.copy_(torch.tensor([5.0, 15.0, 25.0]).view_as(twin._adc_thr))
        twin._adc_lvl.copy_(torch.tensor([0.0, 10.0, 20.0, 30.0]).view_as(twin._adc_lvl))
    return twin


def test_a_ramp_adc_takes_a_value_on_a_threshold_up_as_the_engine():
    twin = _ramp_twin().eval()
    x_int = torch.tensor([[2.0, 1.0], [2.0, 0.0], [4.0, 2.0]], dtype=torch.float64)  # 15, 14, 30
    y = twin.integer_forward(x_int)
    assert y[0, :, 0].tolist() == [20.0, 10.0, 30.0]
    np.testing.assert_array_equal(y.numpy(), _engine(twin, x_int))


def test_a_ramp_adc_passes_the_gradient_up_to_its_top_level_and_not_beyond():
    twin = _ramp_twin().train()
    x_int = torch.tensor([[4.0, 2.0], [4.0, 3.0], [2.0, 0.0]], dtype=torch.float64)  # 30, 31, 14
    x = (x_int * twin.act_scale.detach()).requires_grad_(True)
    assert torch.equal(twin.quantize_input(x), x_int)
    twin(x).sum().backward()
    w = [7.0, 1.0]  # s_w = 1: the gradient of s_x·s_w·x_int·w_int w.r.t. x is w_int
    assert x.grad.tolist() == [w, [0.0, 0.0], w]


# ---------------------------------------------------------------------------------------------
# the quantizers
# ---------------------------------------------------------------------------------------------
def test_keep_zeros_keeps_every_nonzero_weight_of_either_sign():
    twin = _twin([[0.7, -0.35, 0.0], [0.0, -0.1, 0.2]], [[1.0, 1.0, 1.0]],
                 _tensor_chip(input_bits=4, weight_bits=4, n_rows=8))
    twin.keep_zeros()
    assert twin.weight_keep.tolist() == [[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]


def test_binary_codes_take_zero_to_plus_one_and_a_zero_scale_to_one():
    from tests.arrays.test_binary import binary_chip

    twin = _twin([[0.5, -0.5, 0.25]], [[1.0, 1.0, 1.0]], binary_chip())
    assert twin.binary
    w = torch.tensor([[0.0, -0.5, 0.3]], dtype=torch.float64, requires_grad=True)
    codes = twin.weight_codes(w, torch.zeros(1, 1, dtype=torch.float64))
    assert codes.tolist() == [[1.0, -1.0, 1.0]]  # sign(0) = +1, as deploy's binary_codes
    codes.sum().backward()
    # an all-zero group's scale 0 counts as 1: BinaryConnect's gradient 1 inside |w| <= 1
    assert w.grad.tolist() == [[1.0, 1.0, 1.0]]


def test_a_float32_twin_quantizes_smoothed_inputs_as_the_float64_twin():
    chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=8)
    chip = chip.replace(quant=chip.quant.replace(smooth_alpha=0.5))
    w = [[0.7, -0.35, 0.1], [0.2, 0.5, -0.9]]
    x_cal = [[3.0, 0.1, 1.5], [-1.0, 0.05, 2.0]]
    t64 = _twin(w, x_cal, chip)
    t32 = TwinMatmul.calibrated(torch.tensor(w, dtype=torch.float32), None, chip,
                                torch.tensor(x_cal, dtype=torch.float64))
    assert t64._smooth64 is not None and not np.allclose(t64._smooth64, 1.0)
    x = torch.tensor([[2.0, 0.07, -1.0], [0.3, -0.02, 1.9]], dtype=torch.float64)
    expected = t64.quantize_input(x)
    assert expected.tolist() == [[5.0, 1.0, -3.0], [1.0, 0.0, 6.0]]
    assert t32.quantize_input(x.float()).tolist() == expected.tolist()
    with torch.no_grad():
        np.testing.assert_allclose(t32(x.float()).numpy(), t64(x).numpy(), rtol=1e-6)


def test_a_row_with_an_infinite_input_comes_out_nan():
    twin = _twin([[0.7, -0.35]], [[3.0, 1.5]],
                 _tensor_chip(input_bits=4, weight_bits=4, n_rows=8)).eval()
    x = torch.tensor([[0.5, 1.0], [math.inf, 1.0], [0.2, -math.inf]], dtype=torch.float64)
    with torch.no_grad():
        y = twin(x)[:, 0]
    assert math.isfinite(y[0].item()) and math.isnan(y[1].item()) and math.isnan(y[2].item())


def test_a_learned_act_scale_of_exactly_zero_warns_at_the_next_training_forward():
    twin = _twin([[0.7, -0.35]], [[3.0, 1.5]],
                 _tensor_chip(input_bits=4, weight_bits=4, n_rows=8)).train()
    x = torch.tensor([[0.5, 1.0]], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        twin(x)  # a positive scale: no warning
    with torch.no_grad():
        twin.act_scale.zero_()
    with pytest.warns(UserWarning, match="act_scale went through 0"):
        twin(x)


def _fused_relu_twin():
    """A two-layer MLP prepared with its ReLU fused into the first layer's ADC: the model,
    that layer's twin and the calibration inputs."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(32, 6)))
    prepared = prepare(model, bskmq_chip(4, 3, "uniform", "layer", fuse_activation=True), x)
    (twin,) = prepared.twin_layers["0"].matrices()
    return prepared, twin, x


def test_a_fused_activation_warns_at_a_weight_scale_of_exactly_zero():
    prepared, twin, x = _fused_relu_twin()
    assert twin.activation is not None
    prepared.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepared(x[:4])
    with torch.no_grad():
        twin.weight_scale[..., 0] = 0.0  # kappa of output 0 is 0: no reference can hold it
    with pytest.warns(UserWarning, match="went through 0"), np.errstate(divide="ignore"):
        prepared(x[:4])


# ---------------------------------------------------------------------------------------------
# the hand-back
# ---------------------------------------------------------------------------------------------
def test_a_float64_twin_cast_to_float32_still_hands_back_its_float64_scales():
    twin = _twin([[0.7, -0.35]], [[3.0, 1.5]], _tensor_chip(input_bits=4, weight_bits=4,
                                                          n_rows=8))
    before = twin.to_engine()
    assert before.s_x == 0.2
    twin.float()  # a cast is no change: the float64 values stay (0.2 is no float32 number)
    assert twin.act_scale.dtype == torch.float32
    view = twin.to_engine()
    assert view.s_x == 0.2 and view.s_w[0, 0] == before.s_w[0, 0]


def test_a_frozen_input_still_trains_the_weights_through_the_chip():
    # no gradient wanted for the input codes (a frozen act_scale, an input without grad):
    # the weights' straight-through gradient s_x·x_int still flows
    chip = _tensor_chip(input_bits=4, weight_bits=4, bits_per_cell=1, dac_bits=None,
                        encoding="signed_cell", n_rows=8)
    twin = _twin([[0.7, -0.35]], [[3.0, 1.5]], chip, learn_act_scale=False)
    x = torch.tensor([[0.55, 1.0]], dtype=torch.float64)  # x_int 3, 5 at s_x = 0.2
    twin(x).sum().backward()
    assert twin.weight.grad.numpy() == pytest.approx(np.array([[0.6, 1.0]]), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# devices that age
# ---------------------------------------------------------------------------------------------
YEAR = 3.15e7


def _aging_chip(encoding: str, variation: str = "gaussian", **device):
    return ideal_chip(encoding=encoding, bits_per_cell=2, input_bits=4, weight_bits=5,
                      n_rows=12, n_cols=32, rows_per_conversion=6, variation=variation,
                      variation_sigma=0.1 if variation != "none" else 0.0,
                      on_off_ratio=30.0 if encoding != "signed_cell" else math.inf,
                      device=dict(drift_t0_s=1.0, drift_nu_mean=[0.02, 0.05, 0.1, 0.3],
                                  drift_nu_sigma=[0.0], **device),
                      adc=dict(bits=6, range_policy="calibrated",
                               calibration_granularity="column"))


@pytest.mark.parametrize("encoding,device", [
    ("signed_cell", {}),
    ("signed_cell", dict(variation="none")),  # ideal cells that drift: not the nominal chip
    ("offset", dict(off_current_compensation="analog")),  # the analog reference drifts too
    ("offset", dict(drift_compensation="global")),  # one gain per part: r(t0) / r(t) summed
    ("signed_cell", dict(drift_compensation="column")),  # all-ones reads of |G|, per column
])
def test_an_aged_eval_twin_is_the_chip_deployed_at_that_time(encoding, device):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 7), nn.ReLU(), nn.Linear(7, 3)).double()
    x = torch.randn(64, 20, dtype=torch.float64)
    prep = prepare(model, _aging_chip(encoding, **device), x, seed=3, t_inference_s=YEAR)
    with torch.no_grad():
        y = prep.eval()(x).numpy()
    np.testing.assert_allclose(y, prep.deploy()(x).numpy(), rtol=1e-9, atol=1e-9)


def test_the_1_over_f_read_noise_adds_in_variance_per_level():
    chip = _aging_chip("offset", read_noise_q_s=[0.0, 0.1, 0.2, 0.3])
    chip = chip.replace(noise=chip.noise.replace(read_noise_rel=0.05))
    twin = _twin([[0.5, -0.25]], [[1.0, 1.0]], chip, t_inference_s=YEAR)
    growth = twin.aging.growth
    assert growth > 1
    levels = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    expected = np.sqrt(0.05**2 + np.array([0.0, 0.1, 0.2, 0.3]) ** 2 * growth)
    np.testing.assert_allclose(twin._read_rel(levels).numpy(), expected, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# initial scales
# ---------------------------------------------------------------------------------------------
def test_a_channel_scale_is_one_per_output_over_all_row_tiles():
    from cimsim.train.ste import lsq_factor

    chip = ideal_chip(input_bits=4, weight_bits=4, n_rows=8)
    chip = chip.replace(quant=chip.quant.replace(weight_granularity="channel"))
    w = torch.randn(3, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    twin = TwinMatmul.calibrated(w, None, chip, torch.rand(10, 20, dtype=torch.float64))
    assert len(twin.row_tiles) == 3  # 20 rows on 8-row arrays
    assert twin.weight_scale.shape == (1, 3)
    assert twin._w_grad.item() == pytest.approx(lsq_factor(20, 7), rel=1e-12)  # n = K, not 8
    twin(torch.rand(2, 20, dtype=torch.float64)).sum().backward()
    assert twin.weight_scale.grad.shape == (1, 3)


def test_an_all_zero_matrix_starts_its_learned_step_at_the_default_init_range():
    chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=16)
    with pytest.warns(UserWarning, match="all zero"):
        twin = TwinMatmul.calibrated(torch.zeros(2, 9, dtype=torch.float64), None, chip,
                                     torch.ones(3, 9, dtype=torch.float64))
    # +-1/sqrt(fan_in) at the top code 7: s_w = 1/(3·7)
    assert twin.weight_scale.item() == pytest.approx(1.0 / 3.0 / 7.0, rel=1e-12)


def test_asymmetric_input_codes_reach_down_to_code_zero():
    # calibrated range [-1, 2] over 15 codes: s_x = 0.2, z = 5, codes clip(round(x/s_x) + z)
    chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=8)
    chip = chip.replace(quant=chip.quant.replace(act_zero_point=True))
    twin = _twin([[0.7, -0.35]], [[-1.0, 2.0], [0.5, 0.0]], chip)
    assert twin.zero_point == 5 and twin.act_scale.item() == pytest.approx(0.2)
    x = torch.tensor([[-0.6, 0.4], [-3.0, 5.0]], dtype=torch.float64)
    assert twin.quantize_input(x).tolist() == [[2.0, 7.0], [0.0, 15.0]]


def test_a_float32_twin_rounds_a_smoothed_input_tie_as_deploy():
    # x / smooth computed in float32 lands on the other side of a code boundary (85.5) than
    # deploy's float64 quotient: the code is the float64 one (found by a search)
    chip = _tensor_chip(input_bits=8, weight_bits=4, n_rows=8)
    chip = chip.replace(quant=chip.quant.replace(smooth_alpha=0.5))
    w = [[0.7, -0.35, 0.1], [0.2, 0.5, -0.9]]
    x_cal = torch.tensor([[3.0, 0.1, 1.5], [-1.0, 0.05, 2.0]], dtype=torch.float64)
    t32 = TwinMatmul.calibrated(torch.tensor(w, dtype=torch.float32), None, chip, x_cal)
    x = torch.tensor([[1.5419137477874756, 1.015655755996704, 1.4543395042419434]])
    assert x.dtype == torch.float32
    s_x = float(t32.to_engine().s_x)
    expected = np.clip(np.round(x.double().numpy() / t32._smooth64 / s_x), -127, 127)
    assert expected[0, 2] == 86.0
    assert t32.quantize_input(x).numpy().tolist() == expected.tolist()


@pytest.mark.parametrize("variation", ["lognormal", "none"])
def test_an_analog_pair_through_a_nonlinearity_compensates_the_off_current_as_deployed(
        variation):
    # each column of the pair through f on its own (split pairs), with the off current
    # compensated in analog: the nominal twin (ideal cells) and the programmed one
    chip = ideal_chip(encoding="differential", bits_per_cell=2, input_bits=4, weight_bits=5,
                      n_rows=12, n_cols=32, rows_per_conversion=6, variation=variation,
                      variation_sigma=0.1 if variation != "none" else 0.0, on_off_ratio=20.0,
                      off_current_compensation="analog",
                      adc=dict(bits=6, range_policy="calibrated",
                               calibration_granularity="column"),
                      noise=dict(nonlinearity="saturating", saturation_fraction=0.05))
    chip = chip.replace(differential_readout="analog")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 7), nn.ReLU(), nn.Linear(7, 3)).double()
    x = torch.randn(64, 20, dtype=torch.float64)
    prep = prepare(model, chip, x, seed=3)
    assert next(prep.twins())[1].split_pairs
    with torch.no_grad():
        y = prep.eval()(x).numpy()
    np.testing.assert_allclose(y, prep.deploy()(x).numpy(), rtol=1e-9, atol=1e-9)


def test_a_hardware_fixed_adc_range_is_not_learned():
    twin = _twin([[7.0, 5.0]], [[15.0, 15.0]], _TIE_CHIP)
    assert not twin.adc_step.requires_grad
    x = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    twin(x).sum().backward()
    assert twin.adc_step.grad is None


def test_the_lsq_step_gradient_counts_every_plane_of_every_vector():
    # LSQ's 1/sqrt(n·Q_p) with n = the conversions of the step's unit: P planes x M vectors
    chip = _tensor_chip(input_bits=4, weight_bits=4, bits_per_cell=3, dac_bits=1,
                        encoding="signed_cell", n_rows=8,
                        adc=dict(bits=3, range_policy="calibrated",
                                 calibration_granularity="layer"))
    x = torch.tensor([[0.3, 1.2], [0.75, 0.1], [1.1, 0.5]], dtype=torch.float64)
    grads = []
    for adc_grad in (None, 1.0):  # LSQ's scale, then none
        twin = _twin([[1.0, 0.6]], [[1.5, 1.5], [0.0, 0.0]], chip)  # w_int 7, 4
        assert twin.n_planes == 4 and twin.adc_step.numel() == 1
        twin.adc_grad = adc_grad
        twin(x).sum().backward()
        grads.append(twin.adc_step.grad.item())
    assert grads[1] != 0
    assert grads[0] == pytest.approx(grads[1] / math.sqrt(4 * 3 * 7), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# the prepared model
# ---------------------------------------------------------------------------------------------
def test_the_prepare_seed_keeps_all_32_bits_of_its_low_word():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3)).double()
    x = torch.rand(8, 4, dtype=torch.float64)
    seed = (3 << 32) | 0x80000005  # the low word's top bit set
    prepared = prepare(model, _tensor_chip(input_bits=4, weight_bits=4, n_rows=8), x,
                       seed=seed)
    assert prepared.seed == seed
    assert prepared._prepare_seed.tolist() == [3, 0x80000005]


def test_learned_adc_tables_carry_between_linear_kinds_only():
    from cimsim.train.twin import carries_adc_tables

    sar = ideal_chip(adc=dict(bits=5, range_policy="calibrated")).adc
    assert carries_adc_tables(sar, sar.replace(kind="flash", gain_error=0.02))
    assert not carries_adc_tables(sar, sar.replace(kind="ramp"))
    assert not carries_adc_tables(sar, sar.replace(kind="flash", bits=4))


def test_a_fused_activation_takes_a_value_on_its_threshold_up():
    # the reference of threshold T is (T - bias) / kappa in analog units: T set so that it is
    # exactly the analog value of output 0 (a search over the neighbouring floats), the
    # other thresholds above it: the code counts thresholds <= a, so the output is level 1
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(32, 6)))
    prepared = prepare(model, bskmq_chip(4, 3, "uniform", "layer", fuse_activation=True), x)
    (twin,) = prepared.twin_layers["0"].eval().matrices()
    with torch.no_grad():
        _, raw = twin.pre_activation(x[:1])
        kappa, bias = twin._activation_affine()
        a = raw[0, 0, 0].item() / twin._act_unit
        k0, b0 = kappa[0].item(), bias[0].item()
        t = a * k0 + b0
        for _ in range(64):
            v = (t - b0) / k0
            if v == a:
                break
            t = float(np.nextafter(t, np.inf if v < a else -np.inf))
        assert (torch.tensor(t, dtype=torch.float64) - b0) / k0 == a
        twin._act_thr[0] = t + torch.arange(twin._act_thr.shape[1], dtype=torch.float64)
        lvl = twin._act_lvl[0]
        assert lvl[1] > lvl[0]
        assert twin(x[:1])[0, 0].item() == lvl[1].item()


def _tiny_prepared(model: nn.Module, chip=None):
    x = torch.rand(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return prepare(model, chip or _tensor_chip(input_bits=4, weight_bits=4, n_rows=8), x)


def test_a_parametrization_without_a_mask_keeps_no_zeros():
    from torch.nn.utils.parametrizations import weight_norm

    torch.manual_seed(0)
    lin = nn.Linear(4, 3).double()
    with torch.no_grad():
        lin.weight[0, 0] = 0.0
    model = nn.Sequential(weight_norm(lin))
    assert model[0].weight[0, 0].item() == 0.0  # zero here, not by the parametrization
    (twin,) = _tiny_prepared(model).twin_layers["0"].matrices()
    assert twin.weight_keep is None


def test_the_float_model_of_a_pruned_layer_keeps_its_pruned_weights_at_zero():
    from torch.nn.utils import prune

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3).double())
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    prepared = _tiny_prepared(model)
    (twin,) = prepared.twin_layers["0"].matrices()
    pruned = twin.weight_keep == 0
    assert pruned.sum().item() == 6
    with torch.no_grad():
        twin.weight[pruned] = 5.0  # what an optimiser did to the raw weight reaches nothing
    w = prepared.float_model()[0].weight
    assert torch.all(w[pruned] == 0) and torch.all(w[~pruned] != 0)


def test_deploy_on_a_chip_of_another_encoding_under_the_same_adc_is_refused():
    from cimsim.errors import ConfigError

    chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=8, encoding="differential")
    torch.manual_seed(0)
    prepared = _tiny_prepared(nn.Sequential(nn.Linear(4, 3).double()), chip)
    with pytest.raises(ConfigError, match="weight_encoding"):
        prepared.deploy(chip=chip.replace(weight_encoding="offset"))


def test_a_float32_twin_converts_a_shifted_zero_sum_as_deploy():
    # A-shift (signed driven codes) on a full-scale grid: a sum of 0 sits on a code boundary;
    # the fused kernel converts on the engine's float64 grid, not the float32 buffers
    chip = ideal_chip(input_bits=4, weight_bits=4, n_rows=16,
                      adc=dict(bits=5, range_policy="full_scale"))
    chip = chip.replace(dac=chip.dac.replace(shift_unsigned_inputs=True))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3)).float()
    x = torch.rand(60, 12)
    x[::3] = 0.0
    x[1::3, :6] = 0.0
    prep = prepare(model, chip, x).eval()
    with torch.no_grad():
        y = prep(x).double().numpy()
    np.testing.assert_allclose(y, prep.deploy()(x.double()).numpy(), rtol=1e-5, atol=1e-6)


def test_a_fused_activation_with_an_input_zero_point_is_the_deployed_chip():
    # the references fold the zero point's correction -z·Σ w_int into the bias
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(32, 6)))
    chip = bskmq_chip(4, 3, "uniform", "layer", fuse_activation=True)
    chip = chip.replace(quant=chip.quant.replace(act_zero_point=True))
    prep = prepare(model, chip, x).eval()
    twin = next(prep.twins())[1]
    assert twin.zero_point > 0 and twin.activation is not None
    with torch.no_grad():
        y = prep(x).numpy()
    np.testing.assert_allclose(y, prep.deploy()(x).numpy(), rtol=1e-9, atol=1e-9)


def test_a_block_fp_mantissa_that_rounds_past_the_top_code_clips_and_stops_the_gradient():
    chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=8)
    chip = chip.replace(quant=chip.quant.replace(act_format="block_fp"))
    twin = _twin([[0.7, -0.35]], [[1.0, -1.0]], chip)
    x = torch.tensor([[7.6, 1.0]], dtype=torch.float64, requires_grad=True)
    codes, scale = twin.block_codes(x)  # exponent 0: 7.6 rounds to 8, beyond the top code 7
    assert codes.tolist() == [[7.0, 1.0]] and scale.tolist() == [[1.0]]
    codes.sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0]]


def test_weight_codes_clip_symmetrically_at_the_top_code():
    twin = _twin([[0.7, -0.7, 0.35]], [[1.0, 1.0, 1.0]],
                 _tensor_chip(input_bits=4, weight_bits=4, n_rows=8))
    with torch.no_grad():
        twin.weight_scale.fill_(0.05)  # -0.7 / 0.05 = -14: clips at -7, as deploy clips
    assert twin.quantized_weight().tolist() == [[7.0, -7.0, 7.0]]
    assert twin.to_engine().w_int.tolist() == [[7, -7, 7]]


def test_sampled_devices_are_the_programmed_ones_in_eval():
    chip = ideal_chip(input_bits=4, weight_bits=4, n_rows=16, variation="gaussian",
                      variation_sigma=0.2, adc=dict(bits=6, range_policy="calibrated"))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 4)).double()
    x = torch.rand(16, 10, dtype=torch.float64)
    prep = prepare(model, chip, x, devices="sampled").eval()
    with torch.no_grad():
        y = prep(x).numpy()
    np.testing.assert_allclose(y, prep.deploy()(x).numpy(), rtol=1e-9, atol=1e-9)


def test_a_fresh_draw_of_sampled_devices_sticks_cells_at_the_chip_rate():
    from cimsim.train.twin import physical_digits

    chip = ideal_chip(input_bits=4, weight_bits=4, n_rows=64, n_cols=64,
                      encoding="signed_cell", bits_per_cell=3, p_stuck_off=0.1)
    w = torch.full((20, 500), 0.7, dtype=torch.float64)
    twin = TwinMatmul.calibrated(w, None, chip, torch.ones(4, 500, dtype=torch.float64),
                                 options=TwinOptions(devices="sampled"))
    w_int = twin.quantized_weight()
    assert torch.all(physical_digits(w_int, chip) == 7)
    torch.manual_seed(0)
    stuck = (twin.conductance(w_int, fresh=True) == 0).double().mean().item()
    assert 0.08 < stuck < 0.12  # 10 000 cells at p = 0.1 (uniform draws)


def test_a_ramp_adc_with_gain_and_offset_errors_converts_as_the_engine():
    chip = bskmq_chip(4, 3, "uniform", "layer", fuse_activation=False)
    chip = chip.replace(adc=chip.adc.replace(offset_error_lsb=0.4, gain_error=0.03))
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 8, dtype=torch.float64, generator=gen)
    twin = TwinMatmul.calibrated(w, None, chip,
                                 torch.rand(32, 8, dtype=torch.float64, generator=gen)).eval()
    assert twin.nonlinear_adc
    x_int = twin.quantize_input(torch.rand(64, 8, dtype=torch.float64, generator=gen))
    np.testing.assert_array_equal(twin.integer_forward(x_int).numpy(), _engine(twin, x_int))


# ---------------------------------------------------------------------------------------------
# twin_layers.py and tied.py
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer,shape", [(nn.ConvTranspose1d(2, 3, 3), (8, 2, 5)),
                                         (nn.RNNCell(4, 3), (8, 4))])
def test_a_relu_after_a_summed_or_gated_output_is_not_fused(layer, shape):
    # a transposed convolution's output sums several conversions and the bias, a cell's is a
    # gate's: the ADC cannot be the following ReLU's quantizer (deploy does not fuse it)
    torch.manual_seed(0)
    model = nn.Sequential(layer, nn.ReLU()).double()
    x = torch.randn(*shape, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a cell's state inputs are all 0 in calibration
        prep = prepare(model, bskmq_chip(4, 3, "uniform", "layer", fuse_activation=True), x)
    assert all(t.activation is None for _, t in prep.twins())
    with torch.no_grad():
        y = prep.eval()(x).numpy()
    np.testing.assert_allclose(y, prep.deploy()(x).numpy(), rtol=1e-9, atol=1e-9)


class _SharedPair(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)
        self.b.weight = self.a.weight  # tied between two mapped layers

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_a_weight_tied_between_two_mapped_layers_stays_one_parameter():
    torch.manual_seed(0)
    prepared = _tiny_prepared(_SharedPair().double())
    (ta,), (tb,) = (prepared.twin_layers[n].matrices() for n in ("a", "b"))
    assert ta.weight is tb.weight


def test_a_gradient_hook_on_an_ungrouped_convolution_acts_on_its_twin():
    torch.manual_seed(0)
    conv = nn.Conv1d(2, 3, 2).double()
    conv.weight.register_hook(lambda g: g * torch.tensor([0.0, 1.0, 1.0],
                                                         dtype=g.dtype).view(3, 1, 1))
    x = torch.rand(8, 2, 5, dtype=torch.float64)
    prepared = prepare(nn.Sequential(conv), _tensor_chip(input_bits=4, weight_bits=4,
                                                         n_rows=8), x)
    prepared(x).sum().backward()
    (twin,) = prepared.twin_layers["0"].matrices()
    assert torch.all(twin.weight.grad[0] == 0) and torch.any(twin.weight.grad[1:] != 0)



# ---------------------------------------------------------------------------------------------
# odd corners of TwinMatmul
# ---------------------------------------------------------------------------------------------
def _free_grid_twin() -> TwinMatmul:
    """A calibrated 4-bit ADC whose grid is not zero-aligned (its start is no multiple of
    its step)."""
    chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=8,
                        adc=dict(bits=4, range_policy="calibrated", zero_aligned=False))
    gen = torch.Generator().manual_seed(0)
    return TwinMatmul.calibrated(torch.randn(2, 5, dtype=torch.float64, generator=gen), None,
                                 chip, torch.randn(16, 5, dtype=torch.float64, generator=gen))


def test_adc_tables_scale_the_grid_start_with_the_learned_step():
    twin = _free_grid_twin()
    assert torch.any(twin._adc_lo0 != 0)
    with torch.no_grad():
        twin.adc_step.mul_(2.0)
    lo, delta = twin.adc_tables()
    tables = twin.to_engine().parts[0][2].adc
    np.testing.assert_allclose(lo.detach().numpy(), tables.lo, rtol=1e-12)
    np.testing.assert_allclose(delta.detach().numpy(), tables.delta, rtol=1e-12)


def test_an_adc_bits_override_at_the_chips_own_bits_keeps_the_calibrated_grid():
    twin = _free_grid_twin().eval()
    lo0, d0 = twin._adc_lo0, twin._adc_delta0
    assert torch.any(torch.remainder(lo0 / d0, 1.0) != 0)  # snapping would move it
    x_int = torch.randint(-7, 8, (32, 5), generator=torch.Generator().manual_seed(1)).double()
    before = twin.integer_forward(x_int)
    twin.adc_bits_override = twin.chip.adc.bits
    torch.testing.assert_close(twin.integer_forward(x_int), before, rtol=0, atol=0)


def test_the_lossless_pass_gives_each_part_its_own_rows():
    chip = ideal_chip(input_bits=4, weight_bits=4, n_rows=8)
    chip = chip.replace(quant=chip.quant.replace(weight_granularity="column"))
    gen = torch.Generator().manual_seed(0)
    twin = TwinMatmul.calibrated(torch.randn(3, 12, dtype=torch.float64, generator=gen), None,
                                 chip, torch.rand(8, 12, dtype=torch.float64, generator=gen))
    assert twin.part_rows == [(0, 8), (8, 12)]
    twin.lossless = True
    x_int = torch.randint(0, 16, (4, 12), generator=gen).double()
    w_int = twin.quantized_weight()
    y = twin.integer_forward(x_int)
    torch.testing.assert_close(y[0], x_int[:, :8] @ w_int[:, :8].t(), rtol=0, atol=0)
    torch.testing.assert_close(y[1], x_int[:, 8:] @ w_int[:, 8:].t(), rtol=0, atol=0)


def test_an_empty_batch_stays_in_the_graph():
    twin = _twin([[0.7, -0.35]], [[3.0, 1.5]], _tensor_chip(input_bits=4, weight_bits=4,
                                                          n_rows=8))
    y = twin(torch.empty(0, 2, dtype=torch.float64))
    assert y.shape == (0, 1) and y.requires_grad
    y.sum().backward()  # a loss of an empty batch: zero gradients, no error
    assert torch.all(twin.weight.grad == 0)


def test_a_fused_activation_passes_the_straight_through_gradient():
    prepared, twin, x = _fused_relu_twin()
    xg = x[:8].clone().requires_grad_(True)
    twin(xg).sum().backward()
    assert xg.grad.abs().sum() > 0 and twin.weight.grad.abs().sum() > 0


def test_pow2_weight_scales_are_handed_back_rounded_as_the_twin_uses_them():
    chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=8)
    chip = chip.replace(quant=chip.quant.replace(weight_scale="pow2"))
    twin = _twin([[0.7, -0.35, 0.2]], [[1.0, 1.0, 1.0]], chip)
    with torch.no_grad():
        twin.weight_scale.fill_(0.09)  # used as 0.125
    view = twin.to_engine()
    assert view.s_w[0, 0] == 0.125
    assert view.w_int.tolist() == twin.quantized_weight().tolist() == [[6, -3, 2]]

"""Tests from a second mutation round over the training twin, ``cimsim/train/twin.py``:
the functions the first round (``test_mutants_twin.py``) left alone.

Each test pins behaviour that a mutant of the twin changed without any other test noticing:
the option and chip checks, the analog slice read-out's noise variance, the fused
activation's and the pow2 scale's straight-through gradients, PIM-QAT's gradient rescale,
and more (see each test), with hand-computed answers or relations against ``deploy`` and the
engine. All use toy twins and run in well under a second each.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cimsim.errors import ConfigError, MappingError
from cimsim.mapping.matrix import calibrate_adcs
from cimsim.train import prepare
from cimsim.train.twin import (
    FusedReLU,
    TwinOptions,
    _grid_at_bits,
    _projections_excluded,
    check_chip,
    read_noise_weights,
    recalibrate_adcs,
    regrids_adc_tables,
)
from tests.conftest import bskmq_chip, ideal_chip
from tests.train.test_mutants_twin import (
    LSQ_X,
    YEAR,
    _aging_chip,
    _fused_relu_twin,
    _lsq_step_twin,
    _tensor_chip,
    _tiny_prepared,
    _twin,
)


# ---------------------------------------------------------------------------------------------
# the options and the chip
# ---------------------------------------------------------------------------------------------
def test_a_time_of_zero_seconds_after_programming_is_refused():
    with pytest.raises(ConfigError, match="t_inference_s = 0.0"):
        TwinOptions(t_inference_s=0.0)
    assert TwinOptions(t_inference_s=1e-9).t_inference_s == 1e-9


def test_an_unknown_option_is_named_even_where_it_is_a_keyword_of_prepare():
    with pytest.raises(ConfigError, match=r"unknown training option\(s\) \['seed'\]"):
        TwinOptions.from_kwargs({"seed": 1})


def test_check_chip_refuses_what_is_not_a_chip_config():
    with pytest.raises(ConfigError, match="chip must be a ChipConfig"):
        check_chip("ideal")
    check_chip(ideal_chip())


# ---------------------------------------------------------------------------------------------
# the noise emulation
# ---------------------------------------------------------------------------------------------
def test_read_noise_variance_of_an_analog_slice_readout_weights_each_slice_squared():
    # two 2-b slices of a 5-b signed-cell weight summed in analog with weights (1, 4): the
    # variance of the sum is Σ_q w_q² (rel·d_q)² (a bipolar cell: no off-state conductance)
    chip = ideal_chip(weight_bits=5, bits_per_cell=2, encoding="signed_cell",
                      noise=dict(read_noise_rel=0.1))
    chip = chip.replace(array=chip.array.replace(slice_readout="analog"))
    w = torch.tensor([[13.0, -6.0]], dtype=torch.float64)  # 13 = 1 + 3·4, 6 = 2 + 1·4
    var = read_noise_weights(w, chip)
    assert var.shape == (1, 1, 2)
    torch.testing.assert_close(var[0, 0], 0.01 * torch.tensor([1.0 + 16 * 9.0, 4.0 + 16 * 1.0],
                                                              dtype=torch.float64),
                               rtol=1e-12, atol=0)


def test_read_noise_of_programmed_analog_pairs_adds_both_columns_variances():
    # the programmed (varied) conductances of a differential pair read in analog: one
    # conversion of G+ - G-, its read-noise variance Σ_k x_k² rel² (G+² + G-²)
    chip = ideal_chip(encoding="differential", differential_readout="analog", weight_bits=4,
                      bits_per_cell=3, on_off_ratio=10.0, variation="gaussian",
                      variation_sigma=0.1, dac_bits=None, n_rows=8,
                      noise=dict(read_noise_rel=0.1))
    chip = chip.replace(quant=chip.quant.replace(weight_granularity="tensor"))
    twin = _twin([[0.7, -0.3, 0.0], [-0.5, 0.2, 0.6]], [[1.0, 1.0, 1.0]], chip)
    assert twin.devices == "programmed" and not twin.split_pairs
    x_int = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 7.0]], dtype=torch.float64)
    w_int = twin.quantized_weight()
    g = twin.conductance(w_int)  # (2, N, K): G+ and G-
    assert g.shape == (2, 2, 3) and torch.all(g > 0)
    _, var, _, _ = twin._analog(x_int, w_int, noisy=True)
    expected = (x_int * x_int) @ (0.01 * (g[0] * g[0] + g[1] * g[1])).t()  # (M, N)
    assert var.shape == (1, 2, 2)
    torch.testing.assert_close(var[0], expected, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------
# the straight-through gradients
# ---------------------------------------------------------------------------------------------
def test_a_fused_activation_passes_the_gradient_on_zero_to_its_top_level_only():
    # the gradient of clamp(y, 0, a_max): 1 inside, 0 below 0 and above the top level
    prepared, twin, x = _fused_relu_twin()
    twin.eval()
    xs = x[:8] * 10.0
    with torch.no_grad():
        y, raw = twin.pre_activation(xs)
    a_max = twin._act_max
    assert bool((y > a_max).any()) and bool((y < 0).any())
    y = y.clone().requires_grad_(True)
    twin._activation_out(y, raw).sum().backward()
    expected = ((y > 0) & (y < a_max)).to(y.dtype)
    assert torch.equal(y.grad, expected)


def test_a_pow2_weight_scale_is_learned_straight_through_its_rounding():
    chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=8)
    chip = chip.replace(quant=chip.quant.replace(weight_scale="pow2"))
    twin = _twin([[0.7, -0.35, 0.2]], [[1.0, 1.0, 1.0]], chip)
    x = torch.tensor([[0.5, 1.0, 0.25]], dtype=torch.float64)
    twin(x).sum().backward()
    assert twin.weight_scale.grad is not None and twin.weight_scale.grad.abs().sum() > 0


def test_pimqats_gradient_rescale_scales_the_weight_and_input_gradients_alike():
    chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=8)
    grads = []
    for rescale in (1.0, 2.0):
        twin = _twin([[0.7, -0.35, 0.2]], [[1.0, 1.0, 1.0]], chip)
        twin.grad_rescale = rescale
        x = torch.tensor([[0.5, 1.0, 0.25]], dtype=torch.float64, requires_grad=True)
        twin(x).sum().backward()
        grads.append((x.grad, twin.weight.grad, twin.weight_scale.grad))
    (x1, w1, s1), (x2, w2, s2) = grads
    assert w1.abs().sum() > 0 and x1.abs().sum() > 0
    assert torch.equal(x2, 2.0 * x1) and torch.equal(w2, 2.0 * w1)
    assert torch.equal(s2, s1)  # the scales' gradients are not rescaled


def test_the_zero_point_correction_leaves_the_weights_the_gradient_of_the_unshifted_codes():
    # codes round(x / s_x) = (-3, 2), driven as (2, 7) with z = 5; the correction -z·Σ w_int
    # takes z's share back: ∂y/∂w = s_x · (-3, 2), not s_x · (2, 7)
    chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=8)
    chip = chip.replace(quant=chip.quant.replace(act_zero_point=True))
    twin = _twin([[0.6, -0.35]], [[-1.0, 2.0], [0.5, 0.0]], chip)
    assert twin.zero_point == 5
    x = torch.tensor([[-0.6, 0.4]], dtype=torch.float64)
    assert twin.quantize_input(x).tolist() == [[2.0, 7.0]]
    twin(x).sum().backward()
    s_x = twin.act_scale.item()
    torch.testing.assert_close(twin.weight.grad, torch.tensor([[-3.0 * s_x, 2.0 * s_x]],
                                                              dtype=torch.float64))


def test_a_fresh_draw_of_sampled_devices_sticks_other_cells_than_the_programmed_ones():
    chip = ideal_chip(input_bits=4, weight_bits=4, n_rows=64, n_cols=64,
                      encoding="signed_cell", bits_per_cell=3, p_stuck_off=0.1)
    w = torch.full((20, 500), 0.7, dtype=torch.float64)
    twin = _twin(w.tolist(), torch.ones(4, 500).tolist(), chip, devices="sampled")
    w_int = twin.quantized_weight()
    torch.manual_seed(0)
    programmed = twin.conductance(w_int) == 0
    fresh = twin.conductance(w_int, fresh=True) == 0
    assert 0.08 < programmed.double().mean().item() < 0.12
    assert 0.08 < fresh.double().mean().item() < 0.12
    # independent draws: about p² = 1 % of the cells stuck in both, not 10 %
    assert (programmed & fresh).double().mean().item() < 0.03


def test_a_split_pairs_slope_is_the_mean_of_its_two_columns_slopes():
    # each column of an analog pair through f on its own, the pair's slope for the backward's
    # share the mean of the two: a slope of 1 on every G+ column and 3 on every G- gives 2
    chip = ideal_chip(encoding="differential", bits_per_cell=2, input_bits=4, weight_bits=5,
                      n_rows=12, on_off_ratio=20.0, differential_readout="analog",
                      adc=dict(bits=6, range_policy="calibrated"),
                      noise=dict(nonlinearity="saturating", saturation_fraction=0.05))
    rng = np.random.default_rng(0)
    twin = _twin(rng.normal(size=(3, 10)), rng.normal(size=(16, 10)), chip)
    assert twin.split_pairs
    f, _ = twin.transfer
    sides = torch.tensor([1.0, 3.0], dtype=torch.float64)
    twin.transfer = (f, lambda a: sides.repeat(a.shape[-1] // 2).expand_as(a))
    x_int = twin.quantize_input(torch.from_numpy(rng.normal(size=(4, 10))))
    a, _, _, slope = twin._analog(x_int, twin.quantized_weight(), noisy=False, want_slope=True)
    assert slope.shape == a.shape
    assert torch.all(slope == 2.0)


# ---------------------------------------------------------------------------------------------
# the ADC's step and grid
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fused", [True, False])
def test_lsq_adc_step_gradient_is_unmoved_by_the_adcs_offset_error(fused):
    # ∂v/∂r = Δ₀·(code + offset − u) with u = a/Δ + offset: the offset cancels, so the step's
    # gradient is LSQ's Σ (code − a/Δ) at the codes the offset moved
    twin = _lsq_step_twin(fused, offset_error_lsb=0.4).eval()
    y = twin(LSQ_X)
    y.sum().backward()
    scale = 0.1 / 7  # s_x · s_w
    a = np.array([3.0, 8.0, 11.0, 5.0]) * 7
    code = np.clip(np.floor(a / 15.0 + 0.4 + 0.5), 0, 7)  # (2, 4, 6, 3): the offset moved two
    np.testing.assert_allclose(y.detach().numpy()[:, 0], scale * 15.0 * code, rtol=1e-12)
    expected = scale * float(np.sum(code - a / 15.0)) / np.sqrt(4 * 7)  # LSQ 1/sqrt(n·Q_p)
    assert twin.adc_step.grad.item() == pytest.approx(expected, rel=1e-9)


def test_a_grid_at_other_bits_snaps_its_start_to_the_new_step():
    # 8 codes of step 1 from -3 on 2 bits: step 7/3, start round(-3 / (7/3)) = -1 steps
    lo, d = _grid_at_bits(torch.tensor([-3.0], dtype=torch.float64),
                          torch.tensor([1.0], dtype=torch.float64), 7.0, 2)
    assert d.item() == 7.0 / 3.0 and lo.item() == -7.0 / 3.0
    lo, d = _grid_at_bits(np.array([2.0]), np.array([1.0]), 7.0, 2)
    assert d[0] == 7.0 / 3.0 and lo[0] == 7.0 / 3.0  # 2 / (7/3) = 0.857: one step


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_set_adc_tables_restarts_the_learned_steps_from_the_new_grid(dtype):
    # the new tables become the calibrated grid (the step of every unit its delta, the learned
    # change undone) and what to_engine hands back, in float64 also from a float32 twin
    chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=8,
                        adc=dict(bits=4, range_policy="calibrated",
                                 calibration_granularity="column"))
    rng = np.random.default_rng(0)
    x_cal = np.abs(rng.normal(size=(32, 12)))
    twin = _twin(rng.normal(size=(3, 12)), x_cal, chip).to(dtype)
    with torch.no_grad():
        twin.adc_step.mul_(1.5)  # a step learned away from the calibrated one
    new = calibrate_adcs(twin.to_engine(), 3.0 * x_cal)
    lo = np.concatenate([layer.adc.lo for _, _, layer in new.parts])
    delta = np.concatenate([layer.adc.delta for _, _, layer in new.parts])
    assert not np.allclose(delta, twin.adc_tables()[1].detach().double().numpy())
    twin.set_adc_tables(new)
    assert torch.equal(twin.adc_step, twin._adc_step0)
    f32 = dtype == torch.float32
    tol = dict(rtol=1e-6 if f32 else 0, atol=0)
    np.testing.assert_allclose(twin.adc_step[twin._adc_unit].detach().double().numpy(), delta,
                               **tol)
    np.testing.assert_allclose(twin.adc_tables()[0].detach().double().numpy(), lo, **tol)
    np.testing.assert_allclose(twin.adc_tables()[1].detach().double().numpy(), delta, **tol)
    handed = twin.to_engine()  # float64, exactly the new tables
    assert np.array_equal(np.concatenate([layer.adc.delta for _, _, layer in handed.parts]),
                          delta)
    assert np.array_equal(np.concatenate([layer.adc.lo for _, _, layer in handed.parts]), lo)


# ---------------------------------------------------------------------------------------------
# the layers and the prepared model
# ---------------------------------------------------------------------------------------------
def test_excluding_in_proj_names_all_three_input_projections():
    names: list[str] = []
    with pytest.raises(MappingError, match=r"exclude names att\.k_proj, att\.q_proj, "
                                           r"att\.v_proj but not all"):
        _projections_excluded("att", ["att.in_proj"], names)
    assert "att.in_proj" in names and "att.out_proj" in names
    assert _projections_excluded("att", ["att.in_proj", "att.out_proj"], [])
    assert not _projections_excluded("att", ["other"], [])


def test_the_engine_digest_tells_the_seeds_of_prepare_apart():
    # on a chip without variation the seed changes nothing the twin computes, but deploy
    # programs with it (its variation, faults and noise derive from it): a sweep must not
    # take one point for the other
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 2)).double()
    x = torch.rand(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=8)
    digests = [prepare(model, chip, x, seed=s).engine_digest() for s in (0, 0, 1)]
    assert digests[0] == digests[1] != digests[2]


def test_a_loaded_seed_word_of_33_bits_is_refused():
    prepared = prepare(nn.Linear(4, 2).double(), _tensor_chip(input_bits=4, weight_bits=4,
                                                              n_rows=8),
                       torch.rand(8, 4, dtype=torch.float64))
    state = prepared.state_dict()
    for words in ([1 << 32, 0], [0, 1 << 32], [-1, 0]):
        state["_prepare_seed"] = torch.tensor(words, dtype=torch.int64)
        with pytest.raises(ConfigError, match="_prepare_seed"):
            prepared.load_state_dict(state)
    state["_prepare_seed"] = torch.tensor([(1 << 32) - 1, 5], dtype=torch.int64)
    prepared.load_state_dict(state)
    assert prepared.seed == ((1 << 32) - 1) << 32 | 5


def test_only_a_calibrated_range_regrids_on_other_bits():
    calibrated = ideal_chip(adc=dict(bits=4, range_policy="calibrated")).adc
    assert regrids_adc_tables(calibrated, calibrated.replace(bits=6))
    assert not regrids_adc_tables(calibrated, calibrated)  # the same bits: carried as it is
    for policy in ("full_scale", "fixed"):
        adc = calibrated.replace(range_policy=policy)
        assert not regrids_adc_tables(adc, adc.replace(bits=6))


def test_deploy_on_a_chip_of_other_rows_under_another_adc_is_refused():
    # the row tiles are the twin's geometry whatever ADC the chip has (its own fixed tables)
    chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=8)
    prepared = prepare(nn.Linear(12, 2).double(), chip, torch.rand(8, 12, dtype=torch.float64))
    other = chip.replace(adc=chip.adc.replace(bits=chip.adc.bits - 2))
    assert prepared.check_chip(other) == other
    with pytest.raises(ConfigError, match=r"differs from the prepared chip .* in array\.n_rows"):
        prepared.check_chip(other.replace(array=other.array.replace(n_rows=16)))


# ---------------------------------------------------------------------------------------------
# recalibrating the ADCs
# ---------------------------------------------------------------------------------------------
def _two_layers(mode: str, fuse: bool = False):
    """A two-layer MLP on a calibrated linear ADC (``adc.calibration_mode = mode``; ``fuse``:
    at the layer outputs, the first layer's ReLU fused, a twin whose tables stay), and
    pre-hooks that note, per forward, whether each twin computed losslessly."""
    chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=8,
                        adc=dict(bits=4, range_policy="calibrated", calibration_mode=mode))
    if fuse:
        chip = bskmq_chip(4, 3, "uniform", "layer", fuse_activation=True)
        chip = chip.replace(adc=chip.adc.replace(kind="sar", bits=4))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(32, 6)))
    prepared = prepare(model, chip, x)
    seen: list[tuple[str, bool]] = []
    for name, twin in prepared.twins():
        twin.register_forward_pre_hook(
            lambda m, args, name=name: seen.append((name, m.lossless)) and None)
    return prepared, x, seen


def test_a_float_recalibration_computes_every_twin_exactly_also_one_that_keeps_its_tables():
    prepared, x, seen = _two_layers("float", fuse=True)
    kept, wanted = (t for _, t in prepared.twins())
    assert kept.activation is not None and wanted.activation is None
    assert recalibrate_adcs(prepared, x, batch_size=32) == ["2"]
    assert seen == [("0", True), ("2", True)]  # one pass, both exact
    assert not kept.lossless and not wanted.lossless


def test_a_simulated_recalibration_converts_the_earlier_twins_on_their_new_ranges():
    prepared, x, seen = _two_layers("simulated")
    assert recalibrate_adcs(prepared, x, batch_size=32) == ["0", "2"]
    # the pass recording both (each exact), then the second twin's inputs through the first
    # on its new range
    assert seen == [("0", True), ("2", True), ("0", False), ("2", True)]


def test_a_recalibration_takes_at_most_the_row_cap_of_random_rows_per_twin(monkeypatch):
    """Kills: twin.py ``recalibrate_adcs`` comparing the rows with a raised cap (or none):
    each twin is calibrated on at most ``MAX_CALIBRATION_ROWS`` rows, a random subset
    drawn without repeats (the cap lowered here to 5, of the 32 rows the pass keeps), as
    ``deploy``'s calibration takes them."""
    import cimsim.train.twin as twin_module

    prepared, x, _ = _two_layers("float")
    kept: list[np.ndarray] = []
    real = twin_module.calibrate_adcs

    def spy(view, xs):
        kept.append(xs)
        return real(view, xs)

    monkeypatch.setattr(twin_module, "MAX_CALIBRATION_ROWS", 5)
    monkeypatch.setattr(twin_module, "calibrate_adcs", spy)
    assert recalibrate_adcs(prepared, x, batch_size=32) == ["0", "2"]
    assert [xs.shape[0] for xs in kept] == [5, 5]
    first = x.numpy()  # the first twin's rows are the model's inputs, each drawn once
    picked = [int(np.flatnonzero((first == row).all(1))[0]) for row in kept[0]]
    assert len(set(picked)) == 5


# ---------------------------------------------------------------------------------------------
# handing the state to the engine
# ---------------------------------------------------------------------------------------------
def test_the_smoothing_factors_handed_to_the_engine_are_a_copy():
    chip = _tensor_chip(input_bits=8, weight_bits=4, n_rows=8)
    chip = chip.replace(quant=chip.quant.replace(smooth_alpha=0.5))
    twin = _twin([[0.7, -0.35, 0.1], [0.2, 0.5, -0.9]], [[3.0, 0.1, 1.5], [-1.0, 0.05, 2.0]],
                 chip)
    view = twin.to_engine()
    before = view.smooth.copy()
    view.smooth[:] = 2.0 * before  # a deployed model's array changed in place: not the twin's
    np.testing.assert_array_equal(twin.to_engine().smooth, before)


def test_a_grid_centred_by_a_method_does_not_regrid_on_other_bits():
    chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=8,
                        adc=dict(bits=4, range_policy="calibrated"))
    twin = _twin([[0.7, -0.35, 0.2]], [[1.0, 1.0, 1.0]], chip)
    other = chip.replace(adc=chip.adc.replace(bits=6))
    assert twin.adc_tables_on(other) == (False, True)
    twin.adc_hook = lambda t, a, ratio: (t._adc_lo0[:, None, :], None)  # ColumnQuant's kind
    with pytest.raises(ConfigError, match="its grid starts at the centre a method set"):
        twin.adc_tables_on(other)
    assert twin.adc_tables_on(chip) == (True, False)


@pytest.mark.parametrize("fused", [True, False])
def test_the_adcs_gain_error_scales_the_straight_through_gradient(fused):
    # full-scale range: a gain of 0.9 clips nothing, every conversion passes 0.9 of the gradient
    grads = []
    for gain in (0.0, -0.1):
        chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=8,
                            adc=dict(bits=6, gain_error=gain))
        twin = _twin([[0.7, -0.35, 0.2], [0.1, 0.4, -0.6]], [[1.0, 1.0, 1.0]], chip,
                     fused_kernel=fused).eval()
        x = torch.tensor([[0.5, 1.0, 0.25], [0.3, 0.0, 0.9]], dtype=torch.float64,
                         requires_grad=True)
        twin(x).sum().backward()
        grads.append((x.grad, twin.weight.grad))
    (x0, w0), (x1, w1) = grads
    assert x0.abs().sum() > 0 and w0.abs().sum() > 0
    torch.testing.assert_close(x1, 0.9 * x0, rtol=1e-12, atol=0)
    torch.testing.assert_close(w1, 0.9 * w0, rtol=1e-12, atol=0)


def test_the_arrays_needed_add_up_over_the_layers_as_deployed():
    # 12 inputs on 8-row arrays: 2 row tiles of layer 0, 3 of layer 2 (20 inputs)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 3)).double()
    prepared = prepare(model, _tensor_chip(input_bits=4, weight_bits=4, n_rows=8),
                       torch.rand(8, 12, dtype=torch.float64))
    assert prepared.arrays_needed == 5 == prepared.deploy().arrays_needed


class _FunctionalProduct(nn.Module):
    """A mapped layer and a parameter used in a functional matrix product (float)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.w = nn.Parameter(torch.randn(3, 2))

    def forward(self, x):
        return self.lin(x) @ self.w


def test_deploy_lists_what_prepares_pass_found_computing_in_float():
    torch.manual_seed(0)
    chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=8)
    with pytest.warns(UserWarning):
        prepared = prepare(_FunctionalProduct().double(), chip,
                           torch.rand(8, 4, dtype=torch.float64))
    assert [row[0] for row in prepared.digital] == ["w"]
    assert [row[0] for row in prepared.deploy().digital] == ["w"]


def test_a_block_fp_twin_learns_no_activation_scale():
    # its inputs are scaled by a power of two per vector and part: act_scale stays 1
    chip = _tensor_chip(input_bits=6, weight_bits=5, n_rows=8)
    chip = chip.replace(quant=chip.quant.replace(act_format="block_fp", act_exponent_bits=4))
    twin = _twin([[0.7, -0.35, 0.2]], [[1.0, 3.0, 0.5]], chip)
    assert twin.block_fp and twin.act_scale.item() == 1.0
    assert not twin.act_scale.requires_grad and twin.weight_scale.requires_grad


def test_the_lsq_step_gradient_counts_every_conversion_of_a_unit():
    # one step for the layer's two columns (calibration_granularity = 'layer'): LSQ's
    # n counts both, 1/sqrt(2 columns · 4 vectors · Q_p = 7)
    chip = _tensor_chip(input_bits=4, weight_bits=4, bits_per_cell=3, dac_bits=None,
                        encoding="signed_cell", n_rows=8,
                        adc=dict(bits=3, range_policy="calibrated",
                                 calibration_granularity="layer"))
    twin = _twin([[1.0], [0.5]], [[1.5], [0.0]], chip).eval()
    assert twin.adc_step.numel() == 1 and twin.adc_step.item() == 15.0
    assert twin.quantized_weight().flatten().tolist() == [7.0, 4.0]  # s_w = 1/7
    x = torch.tensor([[0.3], [0.75], [1.1], [0.5]], dtype=torch.float64)  # x_int 3, 8, 11, 5
    y = twin(x)
    y.sum().backward()
    scale = 0.1 / 7  # s_x · s_w
    a = np.array([3.0, 8.0, 11.0, 5.0])[:, None] * np.array([7.0, 4.0])
    code = np.clip(np.floor(a / 15.0 + 0.5), 0, 7)
    np.testing.assert_allclose(y.detach().numpy(), scale * 15.0 * code, rtol=1e-12)
    expected = scale * float(np.sum(code - a / 15.0)) / np.sqrt(2 * 4 * 7)
    assert twin.adc_step.grad.item() == pytest.approx(expected, rel=1e-9)


def test_the_1_over_f_growth_is_that_of_the_time_over_the_read_time_in_seconds():
    # ln((t + t_read) / (2·t_read)) with t_read = tech.t_read_ns in seconds
    chip = _aging_chip("offset", read_noise_q_s=[0.0, 0.1, 0.2, 0.3])
    twin = _twin([[0.5, -0.25]], [[1.0, 1.0]], chip, t_inference_s=YEAR)
    t_read = chip.tech.t_read_ns * 1e-9
    assert twin.aging.t_s == YEAR
    assert twin.aging.growth == pytest.approx(math.log((YEAR + t_read) / (2 * t_read)),
                                              rel=1e-12)


# ---------------------------------------------------------------------------------------------
# the fused activation's levels
# ---------------------------------------------------------------------------------------------
def test_refitting_a_fused_activation_sets_all_its_tables_and_hands_back_copies():
    prepared, twin, x = _fused_relu_twin()
    with torch.no_grad():  # tables moved away from any fit
        twin._act_thr.mul_(2.0)
        twin._act_lvl.mul_(2.0)
        twin._act_max.mul_(2.0)
    lv = twin.fit_activation(x.numpy())
    np.testing.assert_array_equal(twin._act_thr.numpy(), lv.thresholds)
    np.testing.assert_array_equal(twin._act_lvl.numpy(), lv.levels)
    np.testing.assert_array_equal(twin._act_max.numpy(), lv.a_max)
    held = twin.activation_levels()
    np.testing.assert_array_equal(held.a_max, lv.a_max)
    held.thresholds[:] = 0.0  # the caller's copy
    held.levels[:] = 0.0
    np.testing.assert_array_equal(twin._act_thr.numpy(), lv.thresholds)
    np.testing.assert_array_equal(twin._act_lvl.numpy(), lv.levels)


def test_refitting_a_twin_without_a_fused_activation_is_a_config_error():
    twin = _twin([[0.7, -0.35]], [[1.0, 1.0]], _tensor_chip(input_bits=4, weight_bits=4,
                                                            n_rows=8))
    with pytest.raises(ConfigError, match="has no fused activation to refit"):
        twin.fit_activation(np.ones((2, 2)))


# ---------------------------------------------------------------------------------------------
# convolutions, the fused ReLU and the float model
# ---------------------------------------------------------------------------------------------
def _conv_prepared(**conv):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, **conv)).double()
    x = torch.randn(4, 2, 9, 9, dtype=torch.float64)
    return prepare(model, _tensor_chip(input_bits=4, weight_bits=4, n_rows=8), x).eval(), x


def test_a_convolution_dilated_unevenly_is_the_deployed_chip():
    prepared, x = _conv_prepared(dilation=(1, 2))
    with torch.no_grad():
        y = prepared(x)
    assert y.shape == (4, 3, 7, 5)
    np.testing.assert_allclose(y.numpy(), prepared.deploy()(x).numpy(), rtol=1e-9, atol=1e-9)


def test_an_unbatched_input_to_a_convolution_is_one_sample():
    prepared, x = _conv_prepared()
    with torch.no_grad():
        one = prepared(x[1])
        batch = prepared(x)
    assert one.shape == (3, 7, 7)
    torch.testing.assert_close(one, batch[1], rtol=1e-12, atol=1e-12)


def test_a_convolution_refuses_inputs_of_other_channels():
    prepared, x = _conv_prepared()
    with pytest.raises(RuntimeError, match="channels"):
        prepared(torch.cat([x, x], dim=1))


def test_a_fused_relu_is_the_identity_in_value_and_gradient():
    fused = FusedReLU(nn.ReLU())
    x = torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64, requires_grad=True)
    y = fused(x)
    y.sum().backward()
    assert torch.equal(y.detach(), x.detach())
    assert torch.equal(x.grad, torch.ones(3, dtype=torch.float64))  # 1 also at an exact 0


def test_the_float_model_keeps_a_frozen_weight_frozen():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 2)).double()
    model[0].weight.requires_grad_(False)
    prepared = _tiny_prepared(model)
    out = prepared.float_model()
    assert not out[0].weight.requires_grad and out[0].bias.requires_grad
    torch.testing.assert_close(out[0].weight, model[0].weight)


# ---------------------------------------------------------------------------------------------
# prepare and deploy
# ---------------------------------------------------------------------------------------------
def test_prepare_under_inference_mode_is_refused():
    with torch.inference_mode(), pytest.raises(MappingError, match="inference_mode"):
        _tiny_prepared(nn.Linear(4, 2).double())


def test_prepare_warns_of_a_time_on_a_device_that_does_not_age():
    with pytest.warns(UserWarning, match=r"prepare: t_inference_s = 3\.15e\+07"):
        prepared = prepare(nn.Linear(4, 2).double(),
                           _tensor_chip(input_bits=4, weight_bits=4, n_rows=8),
                           torch.rand(8, 4, dtype=torch.float64), t_inference_s=YEAR)
    assert next(prepared.twins())[1].aging is None


def test_a_deployed_prepared_model_says_its_ranges_were_learned():
    sim = _tiny_prepared(nn.Linear(4, 2).double()).deploy()
    assert sim.ranges_learned is True


class _SelfDifferentiating(nn.Module):
    """A PINN-like model: its output adds the gradient of a layer's output by its inputs."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 1)

    def forward(self, x):
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            y = self.lin(x)
            (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        return y + g.sum(dim=1, keepdim=True)


def test_a_model_differentiating_its_own_forward_calibrates():
    # while the layer calibrates its float pass still carries the gradient of x @ w.T
    torch.manual_seed(0)
    model = _SelfDifferentiating().double()
    x = torch.rand(8, 3, dtype=torch.float64)
    prepared = prepare(model, _tensor_chip(input_bits=8, weight_bits=8, n_rows=8), x)
    with torch.no_grad():
        w = prepared.float_model().lin.weight
    y = prepared.eval()(x)
    torch.testing.assert_close(y - prepared.model.lin(x), w.sum().expand(8, 1),
                               rtol=0.05, atol=0.05)


def test_fused_kernel_false_converts_on_the_torch_path():
    chip = _tensor_chip(input_bits=4, weight_bits=4, n_rows=8,
                        adc=dict(bits=4, range_policy="calibrated"))
    x = torch.tensor([[0.5, 1.0]], dtype=torch.float64)

    def refused(*args, **kwargs):
        raise AssertionError("the other path")

    torch_path = _twin([[0.7, -0.35]], [[1.0, 1.0]], chip, fused_kernel=False)
    torch_path._convert_fused = refused
    fused = _twin([[0.7, -0.35]], [[1.0, 1.0]], chip)
    fused._convert = refused
    torch.testing.assert_close(torch_path(x), fused(x), rtol=1e-12, atol=0)

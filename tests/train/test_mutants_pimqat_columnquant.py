"""Mutation round over ``cimsim/train/pimqat.py`` and ``cimsim/train/columnquant.py``.

Each test here kills mutants of the two modules that ``tests/train/test_pimqat.py`` and
``tests/train/test_columnquant.py`` let live: the chip settings of the decompositions
(docs/pim-qat.md §1, docs/columnquant.md §1), the rescaling scalars' edge cases and weights
(docs/pim-qat.md §2), the switches and scale transfer of ``prepare_pimqat``, the adjusted
precision's argument check, and LsqPsum's statistics, clip, centre and freeze
(docs/columnquant.md §3) against a plain re-statement of the documented formulas, plus the
defaults, optimizer and ``psum_mse`` of ColumnQuant. Known answers are by hand where the
formula allows, relations otherwise.
"""

from __future__ import annotations

import inspect
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from cimsim.errors import ConfigError
from cimsim.train import prepare
from cimsim.train.columnquant import (
    PsumCentre,
    columnquant_chip,
    columnquant_optimizer,
    deploy_columnquant,
    freeze_psum,
    prepare_columnquant,
    psum_mse,
    with_decomposition,
)
from cimsim.train.pimqat import (
    adc_moments,
    apply_rescaling,
    check_train_adc_bits,
    layer_rescale,
    pim_chip,
    prepare_pimqat,
    rescale_factors,
)
from tests.train.test_columnquant import _setup
from tests.train.test_pimqat import _hand_moments, _net


# =============================================================================================
# PIM-QAT
# =============================================================================================
class TestPimChip:
    """The chip settings of docs/pim-qat.md §1's table, field by field."""

    @pytest.mark.parametrize("decomposition,dac,enc,bpc", [
        ("native", 4, "signed_cell", 3),          # 4 input bits at once, 3-bit magnitude
        ("bit-serial", 1, "twos_complement", 1),  # 1 bit per cycle, 1 bit per cell
        ("differential", 4, "differential", 3),   # |w| in two 3-bit columns
    ])
    def test_each_decomposition_is_its_row_of_the_table(self, decomposition, dac, enc, bpc):
        chip = pim_chip(decomposition, adc_bits=5, rows=32, thermal_sigma_lsb=0.25)
        assert chip.dac.bits == dac
        assert chip.weight_encoding.value == enc
        assert chip.device.bits_per_cell == bpc
        assert (chip.weight_bits, chip.input_bits) == (4, 4)  # the documented defaults
        assert chip.adc.bits == 5 and chip.adc.range_policy.value == "full_scale"
        assert chip.array.rows_per_group == 32 and chip.array.n_rows == 128
        assert chip.noise.thermal_sigma_lsb == 0.25
        assert chip.differential_readout.value == "digital"

    def test_other_precisions_reach_the_cells_and_the_dac(self):
        chip = pim_chip("native", adc_bits=4, rows=16, weight_bits=6, input_bits=3)
        assert (chip.weight_bits, chip.input_bits) == (6, 3)
        assert chip.device.bits_per_cell == 5 and chip.dac.bits == 3

    def test_cubic_is_the_cubic_coefficient_only(self):
        # NoiseConfig.poly_coeffs = (c2, c3, ...): the cubic term is the second one
        assert pim_chip("native", adc_bits=4, rows=16, cubic=-0.2).noise.poly_coeffs \
            == (0.0, -0.2)

    def test_argument_ranges(self):
        # one cell holds the signed weight's magnitude: 2..8 bits for native/differential,
        # any bits >= 1 for bit-serial; the ADC has 1..24 bits
        for d in ("native", "differential"):
            pim_chip(d, adc_bits=4, rows=16, weight_bits=8)
            for bad in (1, 9):
                with pytest.raises(ConfigError, match="weight_bits"):
                    pim_chip(d, adc_bits=4, rows=16, weight_bits=bad)
        assert pim_chip("bit-serial", adc_bits=4, rows=16, weight_bits=12).weight_bits == 12
        assert pim_chip("native", adc_bits=24, rows=16).adc.bits == 24
        with pytest.raises(ConfigError, match="adc_bits"):
            pim_chip("native", adc_bits=25, rows=16)


class TestAdcMoments:
    def test_a_constant_value_gives_one_and_one(self):
        # the docstring: a value that never varies (var = 0) gives (1, 1)
        assert adc_moments(3.0, 0.0, 0.0, 1.0, 8) == (1.0, 1.0)

    @pytest.mark.parametrize("mu,var,lo,delta,n", [
        (3.5, 16.0, 0.0, 1.0, 8),     # both end codes take a heavy tail
        (20.0, 100.0, 0.0, 2.0, 8),   # most mass beyond the top code
        (-3.0, 9.0, 0.0, 0.5, 16),    # most mass below the bottom code
        (50.0, 4.0, 0.0, 1.0, 256),   # far inside: only codes near mu carry mass
    ])
    def test_clipped_and_interior_cases_match_quadrature(self, mu, var, lo, delta, n):
        lam, rho = adc_moments(mu, var, lo, delta, n)
        lam_h, rho_h = _hand_moments(mu, var, lo, delta, n)
        assert lam == pytest.approx(lam_h, abs=2e-4)
        assert rho == pytest.approx(rho_h, abs=2e-4)

    def test_one_wide_code_reads_nothing(self):
        # N(0, 1) under a 1e6 step: code 0 for everything, λ = ρ = 0
        lam, rho = adc_moments(0.0, 1.0, 0.0, 1e6, 4)
        assert lam == pytest.approx(0.0, abs=1e-12) and rho == pytest.approx(0.0, abs=1e-12)


class TestRescaleFactors:
    def test_no_terms_is_neutral(self):
        assert rescale_factors([]) == (1.0, 1.0)

    def test_two_terms_by_hand(self):
        """y = 2·Q(a₁) − 1·Q(a₂), a₁ of 4 rows, a₂ of 2 rows of (mean, var) (0.5, 0.25) and
        (1.0, 2.0): the docstring's sums with weights c²·rows·var."""
        terms = [(2.0, 4, 0.5, 0.25, 0.0, 1.0, 4), (-1.0, 2, 1.0, 2.0, -2.0, 1.5, 8)]
        l1, r1 = adc_moments(4 * 0.5, 4 * 0.25, 0.0, 1.0, 4)
        l2, r2 = adc_moments(2 * 1.0, 2 * 2.0, -2.0, 1.5, 8)
        w1, w2 = 4.0 * 1.0, 1.0 * 4.0
        v0, c, vq = w1 + w2, w1 * l1 + w2 * l2, w1 * r1 + w2 * r2
        assert abs(l1 - l2) > 0.01 and abs(r1 - r2) > 0.01  # the weights matter
        f, b = rescale_factors(terms)
        assert f == pytest.approx(math.sqrt(v0 / vq), rel=1e-12)
        assert b == pytest.approx(c / v0, rel=1e-12)
        # and the unequal weights matter: |c| instead of c² gives other scalars
        w1b = 2.0 * 1.0
        assert f != pytest.approx(math.sqrt((w1b + w2) / (w1b * r1 + w2 * r2)), rel=1e-6)


def test_layer_rescale_of_the_differential_chip_by_hand():
    """A 4-input Linear on the differential chip (W4A4, 4 rows per conversion, 3-bit full-scale
    ADC): inputs uniform over 0..15 (mean 7.5, mean square 77.5); the positive column holds
    max(w, 0), the negative one max(−w, 0) for w uniform over −7..7, each digit with mean
    28/15 and mean square 140/15; coefficients +1 and −1; full scale r·15·[0, 7]."""
    torch.manual_seed(0)
    chip = pim_chip("differential", adc_bits=3, rows=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prep = prepare(nn.Linear(4, 2, bias=False).double(), chip,
                       torch.rand(16, 4, dtype=torch.float64))
    (_, twin), = prep.twins()
    assert twin.n_kinds == 2
    lo, delta = (t.detach().numpy() for t in twin.adc_tables())
    assert np.all(lo == 0.0) and delta[0, 0] == pytest.approx(4 * 15 * 7 / 7)
    mean = 7.5 * 28 / 15
    var = 77.5 * 140 / 15 - mean * mean
    lam, rho = adc_moments(4 * mean, 4 * var, 0.0, float(delta[0, 0]), 8)
    f, b = layer_rescale(twin)
    # two equal terms (c² = 1): the scalars are those of one conversion
    assert f == pytest.approx(math.sqrt(1 / rho), rel=1e-9)
    assert b == pytest.approx(lam, rel=1e-9)


class TestApplyRescaling:
    def _prep(self):
        torch.manual_seed(1)
        chip = pim_chip("bit-serial", adc_bits=2, rows=4)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return prepare(nn.Linear(4, 2).double(), chip, torch.rand(16, 4, dtype=torch.float64))

    def test_returns_the_computed_scalars_whatever_is_switched(self):
        prep = self._prep()
        (_, twin), = prep.twins()
        f, b = layer_rescale(twin)
        out = apply_rescaling(prep, forward=False, backward=False)
        # "Returns {name: (η_f, η_b)} as computed": not the 1s set on the twin
        assert out == {"0": (f, b)} and f != 1.0 and b != 1.0
        assert (twin.out_rescale, twin.grad_rescale) == (1.0, 1.0)

    def test_the_dead_slope_warning_is_about_the_backward_rescaling(self):
        model = nn.Sequential(nn.Linear(9, 4))
        chip = pim_chip("native", adc_bits=4, rows=128)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prep = prepare(model, chip, torch.rand(64, 9))
        with warnings.catch_warnings():  # backward off: no gradient is cut, nothing to say
            warnings.simplefilter("error")
            apply_rescaling(prep, forward=True, backward=False)
        with pytest.warns(UserWarning, match="almost no gradient"):  # on: it does
            apply_rescaling(prep, forward=True, backward=True)


def test_prepare_pimqat_defaults_rescale_both_ways_and_carry_the_seed():
    sig = inspect.signature(prepare_pimqat).parameters
    assert sig["forward_rescale"].default is True and sig["backward_rescale"].default is True
    torch.manual_seed(1)
    chip = pim_chip("bit-serial", adc_bits=2, rows=4)
    x = torch.rand(16, 4, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prep = prepare_pimqat(nn.Linear(4, 2).double(), chip, x, seed=7)
    (_, twin), = prep.twins()
    assert (twin.out_rescale, twin.grad_rescale) == layer_rescale(twin)
    assert prep.seed == 7


def test_prepare_pimqat_from_a_twin_carries_its_learned_scales():
    """``model`` may be a twin trained before: its learned activation and weight scales are the
    start (``transfer_scales``), not those ``prepare`` calibrates again."""
    net, x = _net(3)
    chip = pim_chip("bit-serial", adc_bits=6, rows=16)
    src = prepare_pimqat(net, chip, x[:16])
    with torch.no_grad():
        for _, t in src.twins():
            t.act_scale.mul_(1.37)
            t.weight_scale.mul_(0.61)
    dst = prepare_pimqat(src, chip, x[:16])
    for (_, a), (_, b) in zip(src.twins(), dst.twins(), strict=True):
        torch.testing.assert_close(b.act_scale, a.act_scale, rtol=0, atol=0)
        torch.testing.assert_close(b.weight_scale, a.weight_scale, rtol=0, atol=0)


class TestCheckTrainAdcBits:
    def test_a_full_scale_chip_takes_any_bits_in_range(self):
        chip = pim_chip("native", adc_bits=4, rows=16)
        assert check_train_adc_bits(chip, 24) == 24 and check_train_adc_bits(chip, 1) == 1
        with pytest.raises(ConfigError, match="train_adc_bits"):
            check_train_adc_bits(chip, 25)

    def test_a_calibrated_nonlinear_adc_takes_its_own_bits_only(self):
        chip = pim_chip("native", adc_bits=4, rows=16)
        ramp = chip.replace(adc=chip.adc.replace(range_policy="calibrated", kind="ramp"))
        assert check_train_adc_bits(ramp, 4) == 4
        with pytest.raises(ConfigError, match=r"--x = 3 .*--set adc.range_policy=full_scale"):
            check_train_adc_bits(ramp, 3, "--x")
        with pytest.raises(ConfigError, match=r"on the command line --set"):
            check_train_adc_bits(ramp, 3)

    def test_prepare_pimqat_trains_at_the_given_bits(self):
        torch.manual_seed(0)
        chip = pim_chip("native", adc_bits=6, rows=16)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prep = prepare_pimqat(nn.Linear(16, 3).double(), chip,
                                  torch.rand(8, 16, dtype=torch.float64), train_adc_bits=3)
        (_, twin), = prep.twins()
        assert twin.top_code == 7 and twin.chip.adc.bits == 3


# =============================================================================================
# ColumnQuant
# =============================================================================================
class TestColumnQuantChip:
    def test_the_hardware_model_by_field(self):
        chip = columnquant_chip(psum_bits=5)
        assert chip.array.n_rows == chip.array.n_cols == 128  # the documented default
        assert chip.array.kernel_preserving_tiling
        assert chip.dac.bits is None  # all input bits in one shot
        assert chip.device.bits_per_cell == 2 and chip.weight_encoding.value == "offset"
        assert (chip.weight_bits, chip.input_bits) == (4, 4)
        adc = chip.adc
        assert adc.bits == 5 and adc.range_policy.value == "calibrated"
        assert adc.calibration_granularity.value == "column"
        assert adc.zero_aligned and adc.calibration_stat.value == "percentile"
        assert adc.percentile == 99.9
        assert chip.quant.weight_granularity.value == "column"
        assert columnquant_chip(psum_bits=1).adc.bits == 1
        small = columnquant_chip(psum_bits=3, array_size=40, weight_bits=6, input_bits=3)
        assert (small.array.n_rows, small.array.n_cols) == (40, 40)
        assert (small.weight_bits, small.input_bits) == (6, 3)

    def test_ternary_is_binary_cells(self):
        assert columnquant_chip(psum_bits=3, encoding="ternary").device.bits_per_cell == 1
        base = columnquant_chip(psum_bits=3)
        t = with_decomposition(base, "ternary")
        assert t.device.bits_per_cell == 1 and t.weight_encoding.value == "ternary"
        d = with_decomposition(base, "differential")
        assert d.device.bits_per_cell == 2 and d.weight_encoding.value == "differential"
        assert with_decomposition(base, "offset").weight_encoding.value == "offset"


def test_prepare_columnquant_defaults_are_the_documented_ones():
    """docs/columnquant.md: Python's ``prepare_columnquant`` defaults to ``centre="none"``,
    n = 6, the paper code's init and gradient scales, column-wise weight scales; the optimizer
    is SGD, lr 1e-2, momentum 0.9, weight decay 3e-3."""
    p = inspect.signature(prepare_columnquant).parameters
    assert (p["weight_scale"].default, p["psum_scale"].default, p["init"].default,
            p["grad"].default, p["centre"].default, p["num_sigma"].default) == \
        ("column", None, "paper", "paper", "none", 6.0)
    o = inspect.signature(columnquant_optimizer).parameters
    assert o["lr"].default == 1e-2 and o["weight_decay"].default == 3e-3


def test_the_optimizer_is_the_paper_codes_sgd_over_the_learned_parameters():
    net, x, _, chip = _setup()
    prep = prepare_columnquant(net, chip, x[:20], learn_weight_scale=False)
    assert not any(t.weight_scale.requires_grad for _, t in prep.twins())
    opt = columnquant_optimizer(prep)
    (group,) = opt.param_groups
    assert isinstance(opt, torch.optim.SGD)
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (1e-2, 0.9, 3e-3)
    want = {id(q) for q in prep.parameters() if q.requires_grad}
    assert {id(q) for q in group["params"]} == want
    assert len(want) < len(list(prep.parameters()))  # some are frozen, and left out


class TestPrepareColumnQuantOptions:
    def test_num_sigma_must_be_a_finite_positive_number(self):
        net, x, _, chip = _setup()
        for bad in (0.0, math.inf, math.nan, -1.0, True, "6"):  # True was taken as 1 sigma
            with pytest.raises(ConfigError, match="num_sigma"):
                prepare_columnquant(net, chip, x[:20], num_sigma=bad)

    def test_the_hook_gets_the_psum_granularity_sigma_and_bits(self):
        net, x, _, chip = _setup()
        prep = prepare_columnquant(net, chip, x[:20], weight_scale="column", psum_scale="array",
                                   centre="batch", num_sigma=2.5)
        for _, t in prep.twins():
            h = t.adc_hook
            assert (h.granularity, h.num_sigma, h.mode, h.half) == ("array", 2.5, "batch", 4.0)

    def test_grad_scales(self):
        net, x, _, chip = _setup()
        paper = dict(prepare_columnquant(net, chip, x[:20], grad="paper").twins())["conv"]
        assert paper.adc_grad == 1e-2
        assert torch.all(paper._w_grad == 1e-4)
        lsq = dict(prepare_columnquant(net, chip, x[:20], grad="lsq", init="engine")
                   .twins())["conv"]
        assert lsq.adc_grad is None  # the twin's own LSQ 1/sqrt(n·Q_p)

    def test_a_chip_with_other_weight_granularity_is_made_columnwise(self):
        net, x, _, chip = _setup()
        other = chip.replace(quant=chip.quant.replace(weight_granularity="tensor"))
        prep = prepare_columnquant(net, other, x[:20], weight_scale="column")
        conv = dict(prep.twins())["conv"]
        assert conv.chip.quant.weight_granularity.value == "column"
        assert tuple(conv.weight_scale.shape) == (2, 6)

    def test_frozen_centre_is_frozen_by_prepare(self):
        net, x, _, chip = _setup()
        prep = prepare_columnquant(net, chip, x[:20], centre="frozen")
        for _, t in prep.twins():
            assert t.adc_hook.mode == "frozen" and not t.adc_hook.per_batch


# --- LsqPsum against a re-statement of docs/columnquant.md §3 ---------------------------------
def _reference(a, delta, granularity, n, bits):
    """(mu, sd, centre, lo0-in-step-units, kept, clipped a) by the documented formulas, in numpy:
    mu, population sigma per column (column) or per quantizer (array: per row group; layer:
    all); clip to mu ± n·sigma; c = round(mean(round(a/Δ))) per array (per layer for layer)."""
    a = a.copy()
    if granularity == "column":
        mu = a.mean(axis=1, keepdims=True)
        sd = a.std(axis=1, keepdims=True)
    else:
        ax = (1, 2) if granularity == "array" else (0, 1, 2)
        mu = np.broadcast_to(a.mean(axis=ax, keepdims=True), (a.shape[0], 1, a.shape[2]))
        sd = np.broadcast_to(a.std(axis=ax, keepdims=True), (a.shape[0], 1, a.shape[2]))
    lo, hi = mu - n * sd, mu + n * sd
    kept = (a >= lo) & (a <= hi)
    clipped = np.clip(a, lo, hi)
    q = np.round(clipped / delta[:, None, :])
    axc = (0, 1, 2) if granularity == "layer" else (1, 2)
    centre = np.broadcast_to(np.round(q.mean(axis=axc, keepdims=True)),
                             (a.shape[0], 1, a.shape[2]))
    return mu, sd, centre, centre - 2 ** (bits - 1), kept, clipped


def _fake_twin(delta0):
    # the hook reads only the twin's calibrated steps
    return SimpleNamespace(_adc_delta0=torch.as_tensor(delta0, dtype=torch.float64))


class TestPsumCentre:
    def test_a_small_case_by_hand(self):
        """One array (G = 1), 4 values in each of 2 columns, Δ = 1, n = 1, 3 bits (half 4).
        Column 0: 0, 2, 4, 6 (mu 3, sigma √5 = 2.236): clipped to 0.764 .. 5.236, the ends
        lose their gradient; column 1: 0.4, 0.4, 0.4, 1.6 (mu 0.7, sigma √0.27 = 0.52): 1.6 is
        clipped to 1.22. Rounded: 1, 2, 4, 5 and 0, 0, 0, 1: mean 13/8 = 1.625, c = 2 (the
        mean of the unrounded clipped values, 14.42/8 = 1.80, also rounds to 2; per column the
        centres would be 3 and 0). The grid starts at (2 − 4)·Δ = −2."""
        a = torch.tensor([[[0.0, 0.4], [2.0, 0.4], [4.0, 0.4], [6.0, 1.6]]], dtype=torch.float64)
        hook = PsumCentre("column", 1.0, "batch", 3)
        twin = _fake_twin([[1.0, 1.0]])
        mu, sd, c = hook.statistics(twin, a.clone(), torch.ones(1, 2, dtype=torch.float64))
        torch.testing.assert_close(mu[0, 0], torch.tensor([3.0, 0.7], dtype=torch.float64))
        torch.testing.assert_close(sd[0, 0], torch.tensor([math.sqrt(5), math.sqrt(0.27)],
                                                          dtype=torch.float64))
        assert c.tolist() == [[[2.0, 2.0]]]
        lo0, kept = hook(twin, a, torch.ones(1, 2, dtype=torch.float64))
        assert lo0.tolist() == [[[-2.0, -2.0]]]
        assert kept[:, :, 0].tolist() == [[False, True, True, False]]
        assert kept[:, :, 1].tolist() == [[True, True, True, False]]
        r5, r27 = math.sqrt(5), math.sqrt(0.27)
        torch.testing.assert_close(a[0], torch.tensor(
            [[3 - r5, 0.4], [2.0, 0.4], [4.0, 0.4], [3 + r5, 0.7 + r27]], dtype=torch.float64))

    def test_rounding_inside_the_mean_matters(self):
        """c = round(mean(round(a/Δ))): 0.4, 0.4, 0.4, 1.6 round to 0, 0, 0, 2 (mean 0.5 ->
        0, half to even), while their own mean 0.7 would round to 1 (n large: no clip)."""
        a = torch.tensor([[[0.4], [0.4], [0.4], [1.6]]], dtype=torch.float64)
        hook = PsumCentre("column", 100.0, "batch", 2)
        _, _, c = hook.statistics(_fake_twin([[1.0]]), a, torch.ones(1, 1, dtype=torch.float64))
        assert c.item() == 0.0

    @pytest.mark.parametrize("granularity", ["column", "array", "layer"])
    def test_statistics_and_grid_match_the_documented_formulas(self, granularity):
        g = torch.Generator().manual_seed(3)
        a = torch.randn(3, 50, 4, generator=g, dtype=torch.float64) * 7 + \
            torch.tensor([[[10.0]], [[-4.0]], [[25.0]]], dtype=torch.float64)
        a[:, :3] *= 5  # outliers for the clip
        delta0 = torch.tensor([[1.0, 2.0, 0.7, 1.3], [0.9, 1.1, 1.7, 2.5], [3.0, 0.5, 1.2, 1.9]],
                              dtype=torch.float64)
        ratio = torch.full((3, 4), 1.3, dtype=torch.float64)  # a learned step 1.3x the start
        hook = PsumCentre(granularity, 1.5, "batch", 3)
        twin = _fake_twin(delta0)
        mu_r, sd_r, c_r, lo_r, kept_r, clip_r = _reference(
            a.numpy(), (delta0 * ratio).numpy(), granularity, 1.5, 3)
        mu, sd, c = hook.statistics(twin, a.clone(), ratio)
        np.testing.assert_allclose(mu.numpy(), mu_r, rtol=1e-12)
        np.testing.assert_allclose(sd.numpy(), sd_r, rtol=1e-12)
        np.testing.assert_array_equal(c.numpy(), c_r)
        x = a.clone()
        lo0, kept = hook(twin, x, ratio)
        # lo0 is in the calibrated step's units: the twin scales it by the ratio after
        np.testing.assert_allclose(lo0.numpy(), lo_r * delta0.numpy()[:, None, :], rtol=1e-12)
        np.testing.assert_array_equal(kept.numpy(), kept_r)
        np.testing.assert_allclose(x.numpy(), clip_r, rtol=1e-12)
        if granularity != "column":  # a per-column centre would differ somewhere
            assert len(np.unique(c_r[0])) == 1

    def test_a_constant_column_keeps_its_gradient_and_has_sigma_zero(self):
        """A column that never varies (a zero weight column): sigma 0, the clip is the value
        itself, which is inside it (kept), so its straight-through gradient is not cut."""
        a = torch.zeros(1, 6, 2, dtype=torch.float64)
        a[0, :, 1] = torch.arange(6.0)
        hook = PsumCentre("column", 6.0, "batch", 3)
        lo0, kept = hook(_fake_twin([[1.0, 1.0]]), a, torch.ones(1, 2, dtype=torch.float64))
        assert kept[0, :, 0].all()
        assert hook.statistics(_fake_twin([[1.0, 1.0]]), a[:, :1, :].clone(),
                               torch.ones(1, 2, dtype=torch.float64))[1].isfinite().all()


def _single_linear_frozen_setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(72, 6, bias=False)).double()
    x = torch.rand(40, 72, dtype=torch.float64)
    chip = columnquant_chip(psum_bits=3, array_size=40)
    prep = prepare_columnquant(model, chip, x, centre="batch", psum_scale="array").eval()
    return prep, x


def test_freeze_psum_averages_the_batches_in_the_current_step():
    """freeze_psum: mu and sigma averaged over the calibration batches; c = round(mean of the
    batches' centre values c_i·Δ / Δ) with Δ the current (learned) step; the grid start
    (c − 2^(b−1))·Δ₀ written into the twin's tables (and their float64 copy)."""
    prep, x = _single_linear_frozen_setup()
    (_, twin), = prep.twins()
    hook = twin.adc_hook
    with torch.no_grad():
        twin.adc_step.mul_(1.37)  # a learned step: Δ = 1.37·Δ₀
    seen = []
    stats = hook.statistics

    def spy(t, a, ratio):
        out = stats(t, a, ratio)
        seen.append(tuple(v.clone() for v in out))
        return out

    hook.statistics = spy
    # 3 batches (16, 16, 8), the first of weaker inputs: its centre is another
    data = torch.cat([0.2 * x[:16], x[16:]])
    freeze_psum(prep, data, batch_size=16)
    del hook.statistics
    assert len(seen) == 3
    delta = (twin._adc_delta0 * 1.37)[:, None, :]
    mu = sum(s[0] for s in seen) / 3
    sd = sum(s[1] for s in seen) / 3
    c = torch.round(sum(s[2] * delta for s in seen) / 3 / delta)
    assert len({tuple(s[0].flatten().tolist()) for s in seen}) == 3  # the batches differ
    assert not torch.equal(seen[0][2], seen[2][2])
    torch.testing.assert_close(hook.mu, mu, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hook.sd, sd, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hook.centre, c, rtol=0, atol=0)
    lo0 = ((c - 4) * twin._adc_delta0[:, None, :])[:, 0, :]
    torch.testing.assert_close(twin._adc_lo0, lo0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(twin._init64["lo"], lo0.numpy(), rtol=1e-12, atol=1e-12)


def test_a_frozen_centre_measures_again_when_frozen_again():
    """freeze_psum on a frozen hook records the new data's statistics (the ``_acc`` branch),
    not the ones frozen before."""
    prep, x = _single_linear_frozen_setup()
    freeze_psum(prep, x)
    (_, twin), = prep.twins()
    first = twin.adc_hook.mu.clone()
    freeze_psum(prep, x * 3.0)
    assert (twin.adc_hook.mu > 1.2 * first).all()


def test_a_failed_freeze_stops_recording():
    prep, x = _single_linear_frozen_setup()
    (_, twin), = prep.twins()
    with pytest.raises(Exception):  # noqa: B017 - any failure of the pass
        freeze_psum(prep, x[:, :5])
    assert twin.adc_hook._acc is None and twin.adc_hook.per_batch


def test_deploy_columnquant_freezes_only_a_per_batch_centre_and_takes_the_chip():
    prep, x = _single_linear_frozen_setup()
    (_, twin), = prep.twins()
    with pytest.raises(ConfigError):  # a centre following every batch: no chip's ADC can
        prep.deploy(0)
    deploy_columnquant(prep, x[:20], 0)  # ... so it is frozen on the calibration data first
    assert not twin.adc_hook.per_batch
    centre = twin.adc_hook.centre.clone()
    sim = deploy_columnquant(prep, x[20:] * 5.0, 0)  # frozen already: not measured again
    torch.testing.assert_close(twin.adc_hook.centre, centre, rtol=0, atol=0)
    assert sim is not None
    chip = twin.chip.replace(name="other-name")
    sim2 = deploy_columnquant(prep, x[:20], 0, chip=chip)
    core = sim2.sim_layers["0"].cores[0]
    assert all(layer.chip.name == "other-name" for _, _, layer in core.view.parts)


class TestPsumMse:
    def _ref(self, prep, x):
        """Σ (Q(a) − a)² / Σ (a − mean a)² per layer from the twin's own conversions, a after
        the hook's clip (if any), the mean per row group and column over the vectors."""
        acc, saved = {}, {}
        for name, twin in prep.twins():
            saved[name] = (twin.fused, twin.adc_hook)
            twin.fused = False
            conv, hook = twin._convert, twin.adc_hook
            box = acc.setdefault(name, [[], []])
            seen = {}

            def h(t, a, ratio, _hook=hook, _seen=seen):
                out = _hook(t, a, ratio)
                _seen["a"] = a.clone()  # the clipped analog values
                return out

            def c(a, *args, _conv=conv, _seen=seen, _box=box, _twin=twin):
                raw = a.clone()
                out = _conv(a, *args)
                ref = _seen.pop("a", raw) if _twin.adc_hook is not None else raw
                _box[0].append(float(((out[0] - ref) ** 2).sum()))
                _box[1].append(float(((ref - ref.mean(dim=1, keepdim=True)) ** 2).sum()))
                return out

            if hook is not None:
                twin.adc_hook = h
            twin._convert = c
        with torch.no_grad():
            prep.eval()(x)
        out = {}
        for name, twin in prep.twins():
            del twin._convert
            twin.fused, twin.adc_hook = saved[name]
            out[name] = sum(acc[name][0]) / sum(acc[name][1])
        return out

    @pytest.mark.parametrize("centre", ["none", "frozen", "batch"])
    def test_by_the_docstring_formula(self, centre):
        net, x, _, _ = _setup(4)
        chip = columnquant_chip(psum_bits=3, array_size=40)
        prep = prepare_columnquant(net, chip, x[:20], centre=centre, num_sigma=1.0)
        fused = {n: t.fused for n, t in prep.twins()}
        lo0 = {n: t._adc_lo0.clone() for n, t in prep.twins()}
        got = psum_mse(prep, x, batch_size=64)
        # the model is left as it was
        for n, t in prep.twins():
            assert t.fused == fused[n]
            torch.testing.assert_close(t._adc_lo0, lo0[n], rtol=0, atol=0)
            assert (t.adc_hook is None) == (centre == "none")
        ref = self._ref(prep, x)
        for n in ref:
            assert got[n] == pytest.approx(ref[n], rel=1e-9)
        assert got["mean"] == pytest.approx(np.mean([ref[n] for n in ref]), rel=1e-9)
        assert len({round(ref[n], 9) for n in ref}) > 1


@pytest.mark.parametrize("centre", ["none", "frozen"])
def test_a_float32_twin_hands_back_its_reshaped_scales_and_shared_step(centre):
    """A float32 twin hands deploy its float64 start moved by p/p0 (``_learned``): the
    reshaped weight scales, the layer-wide step's grid and the frozen grid start must be in
    those float64 starts too, or the deployed scales and ADC tables are another layer's."""
    torch.manual_seed(0)
    net, x, _, chip = _setup()
    net, x = net.float(), x.float()
    prep = prepare_columnquant(net, chip, x[:20], weight_scale="array", psum_scale="layer",
                               init="paper", centre=centre).eval()
    for _, twin in prep.twins():
        _, s_w = twin._engine_weights()
        np.testing.assert_allclose(s_w, twin.weight_scale.detach().double().numpy(), rtol=1e-6)
        lo, delta = (v.detach().double().numpy() for v in twin.adc_tables())
        view = twin.to_engine(0)
        gp = twin._group_part.numpy()
        for i, (_, _, layer) in enumerate(view.parts):
            np.testing.assert_allclose(layer.adc.delta, delta[gp == i], rtol=1e-6)
            np.testing.assert_allclose(layer.adc.lo, lo[gp == i], rtol=1e-6, atol=1e-6)


def test_a_layer_wide_step_of_ranges_that_are_one_point_is_one():
    """The union of ranges that are all one point (hi = lo) has no width to split into steps:
    the shared step is 1 (the fallback), not 0, a grid whose codes all sit at one value."""
    from cimsim.train.columnquant import _share_layer_step

    net, x, _, chip = _setup()
    conv = dict(prepare_columnquant(net, chip, x[:20], psum_scale="array").twins())["conv"]
    with torch.no_grad():
        conv._adc_lo0.fill_(2.0)
        conv._adc_delta0.zero_()
    _share_layer_step(conv)
    assert conv.adc_step.item() == 1.0 and torch.all(conv._adc_delta0 == 1.0)
    assert torch.all(conv._adc_lo0 == 2.0)


@pytest.mark.parametrize("learn", [True, False])
def test_a_layer_wide_step_is_one_lsq_unit_over_the_whole_layer(learn):
    """After ``_share_layer_step`` the twin's grid is the union grid itself (learned step =
    its start: ratio 1), the one step is learned as the chip's other steps are
    (``learn_adc_step``), and its LSQ gradient scale counts every conversion of the layer as
    one unit's values (``_adc_unit_size``)."""
    net, x, _, chip = _setup()
    prep = prepare_columnquant(net, chip, x[:20], psum_scale="layer", learn_adc_step=learn)
    conv = dict(prep.twins())["conv"]
    assert conv.adc_step.numel() == 1 and conv.adc_step.requires_grad is learn
    lo, delta = conv.adc_tables()
    torch.testing.assert_close(lo, conv._adc_lo0, rtol=0, atol=0)
    torch.testing.assert_close(delta, conv._adc_delta0, rtol=0, atol=0)
    assert conv._adc_unit_size.item() == conv._adc_unit.numel() > 1


def test_layer_rescale_weighs_each_plane_and_each_groups_own_grid():
    """A 6-input Linear, native cells (W4), 3-bit inputs in 2-bit DAC planes, 4 rows per
    conversion, a calibrated 3-bit ADC: the planes differ (low plane uniform over 0..3: mean
    square 3.5; high plane x >> 2 in {0, 1}: 0.5) and carry significance 1 and 4, the row
    groups (4 and 2 rows) have their own calibrated grids (per column: the first output's
    column stands for its kind, as on a full-scale chip). The terms by hand (weights uniform
    over −7..7: mean 0, mean square 56/3), scalar by scalar through ``rescale_factors``."""
    torch.manual_seed(0)
    chip = pim_chip("native", adc_bits=3, rows=4, input_bits=3)
    chip = chip.replace(dac=chip.dac.replace(bits=2),
                        adc=chip.adc.replace(range_policy="calibrated",
                                             calibration_granularity="column"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prep = prepare(nn.Linear(6, 2, bias=False).double(), chip,
                       torch.rand(64, 6, dtype=torch.float64))
    (_, twin), = prep.twins()
    assert (twin.n_groups, twin.n_kinds, twin.x_lo, twin.x_hi) == (2, 1, 0, 7)
    lo, delta = (t.detach().numpy() for t in twin.adc_tables())
    assert lo[0, 0] != lo[1, 0] and delta[0, 0] != delta[1, 0]  # each group its own grid
    terms = [(sig, rows, 0.0, ms * 56 / 3, float(lo[g, 0]), float(delta[g, 0]), 8)
             for g, rows in enumerate((4, 2)) for sig, ms in ((1.0, 3.5), (4.0, 0.5))]
    f, b = layer_rescale(twin)
    want = rescale_factors(terms)
    assert f == pytest.approx(want[0], rel=1e-9) and b == pytest.approx(want[1], rel=1e-9)
    assert abs(want[1] - 1) > 1e-3


def test_the_dead_slope_threshold_is_a_thousandfold_cut(monkeypatch):
    """``DEAD_SLOPE``: an η_b below 1e-3 warns ("cut a thousandfold or more"), 5e-3 does not."""
    from cimsim.train import pimqat

    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prep = prepare(nn.Linear(4, 2).double(), pim_chip("bit-serial", adc_bits=2, rows=4),
                       torch.rand(16, 4, dtype=torch.float64))
    monkeypatch.setattr(pimqat, "layer_rescale", lambda twin: (1.0, 5e-3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apply_rescaling(prep)
    monkeypatch.setattr(pimqat, "layer_rescale", lambda twin: (1.0, 9e-4))
    with pytest.warns(UserWarning, match="η_b = 0.0009"):
        apply_rescaling(prep)


def test_the_paper_inits_recalibration_uses_the_twins_seed():
    """Under ``init="paper"`` the ADCs are calibrated again with the twin's ``seed`` (the rows
    it samples: more than 1024 im2col rows per batch here), as ``recalibrate_adcs`` does with
    that seed on the same twin; seed 0 samples other rows."""
    from cimsim.train.columnquant import _set_weight_scale
    from cimsim.train.twin import recalibrate_adcs

    torch.manual_seed(0)
    net, _, _, chip = _setup()
    x = torch.rand(40, 8, 8, 8, dtype=torch.float64)  # 40 x 64 = 2560 rows per batch
    paper = prepare_columnquant(net, chip, x, init="paper", seed=3)
    tables = {}
    for seed in (3, 0):
        other = prepare_columnquant(net, chip, x, init="engine", seed=3)
        for _, t in other.twins():
            _set_weight_scale(t, "column", "paper", "paper")
        recalibrate_adcs(other, x, seed=seed)
        tables[seed] = dict(other.twins())["conv"]._adc_delta0.clone()
    got = dict(paper.twins())["conv"]._adc_delta0
    torch.testing.assert_close(got, tables[3], rtol=0, atol=0)
    assert not torch.equal(tables[3], tables[0])


class TestPimChipBitSerialWeightBits:
    """``pim_chip`` checks its own arguments "named as given" (its comment). For
    ``bit-serial`` it let ``weight_bits = 1`` through (lower bound 1), which the chip it builds
    can never hold: two's-complement weights need 2 bits or more. The error then came from
    ``ChipConfig`` and named ``weight_encoding = 'twos_complement'``, a setting the caller
    never passed; it names the argument ``weight_bits`` and its range now."""

    def test_one_weight_bit_is_refused_as_the_weight_bits_argument(self):
        with pytest.raises(ConfigError, match=r"^weight_bits\b[^=]* = 1 is invalid"):
            pim_chip("bit-serial", adc_bits=4, rows=16, weight_bits=1)


@pytest.mark.parametrize("kwargs, message", [
    (dict(rows=65537), r"^rows = 65537 is invalid; allowed: an integer in \[1, 65536\]"),
    (dict(input_bits=17), r"^input_bits = 17 is invalid; allowed: an integer in \[1, 16\]"),
    (dict(cubic=float("nan")), r"^cubic = nan is invalid; allowed: a finite number"),
    (dict(cubic="0.1"), r"^cubic = '0.1' is invalid"),
])
def test_pim_chip_names_rows_input_bits_and_cubic_as_given(kwargs, message):
    """Beyond the chip's limits these were refused as ``ArrayConfig.n_rows``,
    ``DACConfig.bits`` (the native decomposition's one-shot DAC) and
    ``NoiseConfig.poly_coeffs``: names the caller of ``pim_chip`` never gave."""
    with pytest.raises(ConfigError, match=message):
        pim_chip("native", adc_bits=4, **({"rows": 64} | kwargs))
    chip = pim_chip("native", adc_bits=4, rows=65536, input_bits=16, cubic=np.float32(-0.5))
    assert chip.array.n_rows == 65536 and chip.noise.poly_coeffs == (0.0, -0.5)


class TestColumnquantChipArgumentsNamedAsGiven:
    """``columnquant_chip`` names its own arguments in its errors, as ``pim_chip`` does: the
    chip it builds refused ``array_size = 0`` as ``ArrayConfig.n_rows`` and a 1-b weight of
    the default ``offset`` option as ``weight_encoding = 'offset'``, neither a name the caller
    gave."""

    @pytest.mark.parametrize("size", [0, 65537, 100.5, True])
    def test_array_size(self, size):
        with pytest.raises(ConfigError, match=r"^array_size = .* is invalid; allowed: an "
                                              r"integer in \[1, 65536\]"):
            columnquant_chip(psum_bits=4, array_size=size)

    @pytest.mark.parametrize("encoding", ["offset", "differential"])
    def test_a_one_bit_weight_needs_the_ternary_option(self, encoding):
        with pytest.raises(ConfigError, match=rf"^weight_bits \(encoding '{encoding}'\) = 1 "
                                              r"is invalid; allowed: an integer in \[2, 16\]"):
            columnquant_chip(psum_bits=4, weight_bits=1, encoding=encoding)
        # the ternary option holds a 1-b weight: one pair of binary cells
        chip = columnquant_chip(psum_bits=4, weight_bits=1, encoding="ternary")
        assert chip.weight_bits == 1 and chip.array.n_rows == 128

    def test_numpy_integers_are_taken_as_python_ints(self):
        chip = columnquant_chip(psum_bits=4, array_size=np.int64(64), weight_bits=np.int32(3))
        assert (chip.array.n_rows, chip.weight_bits) == (64, 3)
        assert type(chip.weight_bits) is int and chip.name.startswith("columnquant-w3a4")


def test_the_frozen_centre_rounds_the_average_centre():
    """Batches whose centres are 1, 1 and 0 (in the learned step) average to 2/3: the frozen
    centre is round(2/3) = 1 everywhere, not the last batch's 0 nor floor(2/3) = 0."""
    prep, x = _single_linear_frozen_setup()
    (_, twin), = prep.twins()
    hook = twin.adc_hook
    with torch.no_grad():
        twin.adc_step.mul_(0.8)
    stats, calls = hook.statistics, []

    def fixed(t, a, ratio):
        mu, sd, c = stats(t, a, ratio)
        calls.append(None)
        return mu, sd, torch.full_like(c, 0.0 if len(calls) == 3 else 1.0)

    hook.statistics = fixed
    freeze_psum(prep, x, batch_size=16)
    del hook.statistics
    assert len(calls) == 3
    assert torch.all(hook.centre == 1.0)
    torch.testing.assert_close(twin._adc_lo0, (1.0 - 4.0) * twin._adc_delta0, rtol=1e-12,
                               atol=1e-12)

"""PIM-QAT (issue 11): rescaling scalars against a hand computation, the rescaling hooks, BN
calibration on a twin and on a deployed SimModel, adjusted-precision training."""

from __future__ import annotations

import math
import warnings
from statistics import NormalDist

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cimsim.errors import ConfigError
from cimsim.train import calibrate_bn, prepare
from cimsim.train.loop import param_groups
from cimsim.train.pimqat import (
    adc_moments,
    apply_rescaling,
    layer_rescale,
    pim_chip,
    prepare_pimqat,
    rescale_factors,
)


class BNNet(nn.Module):
    """Conv + BatchNorm + residual add + Linear: what BN calibration acts on."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.body = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = F.relu(self.bn(self.stem(x)))
        h = F.relu(h + self.bn2(self.body(h)))
        return self.head(h.mean(dim=(2, 3)))


def _net(seed: int = 0):
    torch.manual_seed(seed)
    net = BNNet().double()
    x = torch.rand(48, 2, 6, 6, dtype=torch.float64)
    with torch.no_grad():  # non-trivial running statistics
        net.train()
        net(x)
    return net.eval(), x


# --- the rescaling scalars -------------------------------------------------------------------
def _hand_moments(mu, var, lo, delta, n_codes, n=400_001):
    """λ, ρ of the ADC on N(mu, var) by brute-force quadrature on a fine grid."""
    sd = math.sqrt(var)
    a = np.linspace(mu - 12 * sd, mu + 12 * sd, n)
    w = np.exp(-0.5 * ((a - mu) / sd) ** 2)
    w /= w.sum()
    code = np.clip(np.floor((a - lo) / delta + 0.5), 0, n_codes - 1)
    q = lo + code * delta
    eq = (w * q).sum()
    return (w * (a - mu) * (q - eq)).sum() / var, (w * (q - eq) ** 2).sum() / var


@pytest.mark.parametrize("mu,var,lo,delta,n", [(1.0, 0.75, 0.0, 4 / 3, 4), (3.0, 2.0, -2.0, 1.0, 8),
                                              (0.2, 0.05, 0.0, 2.0, 4), (10.0, 9.0, 0.0, 0.1, 256)])
def test_adc_moments_match_quadrature(mu, var, lo, delta, n):
    lam, rho = adc_moments(mu, var, lo, delta, n)
    lam_h, rho_h = _hand_moments(mu, var, lo, delta, n)
    assert lam == pytest.approx(lam_h, abs=2e-4)
    assert rho == pytest.approx(rho_h, abs=2e-4)


def test_fine_adc_is_neutral():
    # a step far below the spread and a range far wider: Q(a) ≈ a, λ ≈ ρ ≈ 1
    lam, rho = adc_moments(0.0, 100.0, -1000.0, 0.01, 200_001)
    assert lam == pytest.approx(1.0, abs=1e-6)
    assert rho == pytest.approx(1.0, abs=1e-4)


def test_layer_rescale_by_hand_bit_serial():
    """A 4-input Linear on a bit-serial chip (W4A4, 1-bit cells, two's complement), 4 rows per
    conversion, 2-bit full-scale ADC: every scalar by hand."""
    torch.manual_seed(1)
    lin = nn.Linear(4, 2).double()
    chip = pim_chip("bit-serial", adc_bits=2, rows=4)
    x = torch.rand(16, 4, dtype=torch.float64)
    prep = prepare(lin, chip, x)
    (_, twin), = prep.twins()
    # inputs uniform over 0..15: every bit plane is Bernoulli(1/2): mean 1/2, mean square 1/2.
    # weights uniform over -7..7 in two's complement: 3 magnitude bits of (w mod 8), sign bit.
    ws = np.arange(-7, 8)
    low = np.mod(ws, 8)
    digits = [(low >> j) & 1 for j in range(3)] + [(ws < 0).astype(int)]
    coefs = [1.0, 2.0, 4.0, -8.0]
    # full scale of 4 rows of 0/1 x 0/1 = [0, 4]; 4 codes < 5 values: literal grid, Δ = 4/3
    lo, delta = 0.0, 4.0 / 3.0
    v0 = cov = vq = 0.0
    nd = NormalDist()
    for p in range(4):
        for d, c in zip(digits, coefs, strict=True):
            e_d, e_d2 = d.mean(), (d * d).mean()
            mean = 0.5 * e_d
            var1 = 0.5 * e_d2 - mean**2
            mu, var = 4 * mean, 4 * var1
            sd = math.sqrt(var)
            # code k covers [(k - 1/2)Δ, (k + 1/2)Δ), the end codes beyond
            t = [-math.inf] + [(k - 0.5) * delta for k in range(1, 4)] + [math.inf]
            pk = [nd.cdf((t[k + 1] - mu) / sd) - nd.cdf((t[k] - mu) / sd) for k in range(4)]
            ph = [0.0 if math.isinf(v) else nd.pdf((v - mu) / sd) for v in t]
            qv = [lo + k * delta for k in range(4)]
            eq = sum(q * pr for q, pr in zip(qv, pk, strict=True))
            eq2 = sum(q * q * pr for q, pr in zip(qv, pk, strict=True))
            eaq = sum(qv[k] * (mu * pk[k] + sd * (ph[k] - ph[k + 1])) for k in range(4))
            lam, rho = (eaq - mu * eq) / var, (eq2 - eq * eq) / var
            w = (2.0**p * c) ** 2 * var
            v0, cov, vq = v0 + w, cov + w * lam, vq + w * rho
    f, b = layer_rescale(twin)
    assert f == pytest.approx(math.sqrt(v0 / vq), rel=1e-9)
    assert b == pytest.approx(cov / v0, rel=1e-9)
    assert 0 < b < 1  # a 2-bit ADC on 4-row sums loses slope


def test_layer_rescale_counts_only_the_rows_a_short_last_group_holds():
    """A 6-input Linear on a native chip (W4A4, 4 rows per conversion, 3-bit full-scale ADC)
    has row groups of 4 and 2 inputs: the second group's partial sum is one of 2 rows
    (docs/pim-qat.md §2: a sum of r rows is N(r·mean, r·var)), not of 4, by hand."""
    torch.manual_seed(0)
    chip = pim_chip("native", adc_bits=3, rows=4)
    with warnings.catch_warnings():  # few codes used on the calibration inputs: the point
        warnings.simplefilter("ignore")
        prep = prepare(nn.Linear(6, 2, bias=False).double(), chip,
                       torch.rand(32, 6, dtype=torch.float64))
    (_, twin), = prep.twins()
    lo, delta = (float(t[0, 0]) for t in twin.adc_tables())
    assert twin.n_groups == 2 and lo == -4 * 15 * 7  # the full scale of 4 rows of 15 x ±7
    # inputs uniform over 0..15 (mean square 77.5), weights over -7..7 (mean 0, mean square
    # 2·(1 + 4 + ... + 49)/15 = 56/3): one row's product has mean 0, variance 77.5·56/3
    var1 = 77.5 * 56 / 3
    v0 = cov = vq = 0.0
    for rows in (4, 2):
        lam, rho = adc_moments(0.0, rows * var1, lo, delta, 8)
        v0, cov, vq = v0 + rows * var1, cov + rows * var1 * lam, vq + rows * var1 * rho
    f, b = layer_rescale(twin)
    assert f == pytest.approx(math.sqrt(v0 / vq), rel=1e-9)
    assert b == pytest.approx(cov / v0, rel=1e-9)


def test_layer_rescale_of_binary_weights_has_no_zero_weight():
    """Binary weights are ±1, never 0 (layer_rescale's docstring: ``{−1, +1}`` for binary
    weights): on a binary chip (one cell per weight holding d = (w + 1)/2, shift-add
    coefficient 2) d is Bernoulli(1/2), so with inputs uniform over 0..15 one row's product
    x·d has mean 7.5/2 and variance 77.5/2 − 3.75²; 8 rows per conversion, a 3-bit ADC over the
    full scale [0, 8·15]: the scalars by hand."""
    from tests.arrays.test_binary import binary_chip

    chip = binary_chip(input_bits=4, dac_bits=4, n_rows=16, n_cols=8, rows_per_conversion=8)
    chip = chip.replace(adc=chip.adc.replace(bits=3, range_policy="full_scale"))
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prep = prepare(nn.Linear(8, 2, bias=False).double(), chip,
                       torch.rand(32, 8, dtype=torch.float64))
    (_, twin), = prep.twins()
    assert twin.binary
    lo, delta = (float(t[0, 0]) for t in twin.adc_tables())
    assert lo == 0.0 and delta == pytest.approx(120 / 7, rel=1e-12)
    mean, var = 3.75, 77.5 / 2 - 3.75**2
    lam, rho = adc_moments(8 * mean, 8 * var, lo, delta, 8)
    f, b = layer_rescale(twin)
    assert f == pytest.approx(math.sqrt(1 / rho), rel=1e-9)
    assert b == pytest.approx(lam, rel=1e-9)


def test_rescale_factors_identity_without_loss():
    assert rescale_factors([(1.0, 8, 0.5, 0.25, -1e6, 1e-3, 2**31)]) == pytest.approx((1, 1),
                                                                                    abs=1e-6)


def test_layer_rescale_models_the_driven_codes_with_a_zero_point():
    """With the A-shift the arrays are driven with x_int - 2^(B_x-1): the scalars modelled the
    unshifted codes ([0, 15] where [-8, 7] is driven: η_b 0.94 against 0.28). They now match
    a Monte Carlo of the twin's converted product of uniform driven codes and weights."""
    torch.manual_seed(0)
    chip = pim_chip("native", adc_bits=4, rows=128)
    chip = chip.replace(dac=chip.dac.replace(shift_unsigned_inputs=True))
    prep = prepare_pimqat(nn.Sequential(nn.Linear(256, 64, bias=False).double()), chip,
                          torch.rand(256, 256, dtype=torch.float64))
    (_, twin), = list(prep.twins())
    assert twin.zero_point == -8
    eta_f, eta_b = layer_rescale(twin)
    rng = np.random.default_rng(1)
    w = torch.from_numpy(rng.integers(-7, 8, (64, 256)).astype(np.float64))
    x = torch.from_numpy(rng.integers(0, 16, (2048, 256)).astype(np.float64)) + twin.zero_point
    with torch.no_grad():
        y = twin._integer(x, w).sum(0).numpy().ravel()
    y0 = (x @ w.t()).numpy().ravel()
    mc_f = math.sqrt(y0.var() / y.var())
    mc_b = float(np.mean((y - y.mean()) * (y0 - y0.mean())) / y0.var())
    assert eta_f == pytest.approx(mc_f, rel=0.03) and eta_b == pytest.approx(mc_b, rel=0.05)


def test_a_layer_whose_conversions_read_one_code_gets_no_slope_and_a_warning():
    """A 9-row conversion under a full scale set for 128 rows reads code 0 whatever its
    operands: ρ = 0, and the scalars fell back to (1, 1), the full straight-through gradient.
    η_b is C / V₀ ≈ 0 there (η_f stays 1), and ``apply_rescaling`` warns naming the layer."""
    assert rescale_factors([(1.0, 9, 0.0, 1.0, 0.0, 1e6, 16)]) == (1.0, pytest.approx(0.0))
    model = nn.Sequential(nn.Linear(9, 4))
    with pytest.warns(UserWarning, match=r"layer '0'.*η_b = .*almost no gradient"):
        prep = prepare_pimqat(model, pim_chip("native", adc_bits=4, rows=128),
                              torch.rand(64, 9))
    (_, twin), = list(prep.twins())
    assert twin.out_rescale == 1.0 and twin.grad_rescale < 1e-3


def test_rescaling_hooks_forward_backward_and_deploy():
    """out_rescale multiplies the output (and goes into the deployed s_w); grad_rescale
    multiplies only the gradient the chip product passes to the inputs and weights."""
    torch.manual_seed(0)
    lin = nn.Linear(12, 5, bias=False).double()
    chip = pim_chip("native", adc_bits=24, rows=8)  # lossless
    x = torch.rand(20, 12, dtype=torch.float64)
    prep = prepare(lin, chip, x).eval()
    (_, twin), = prep.twins()

    def grads(eta_b: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
        twin.grad_rescale = eta_b
        prep.zero_grad(set_to_none=True)
        xg = x.clone().requires_grad_(True)
        y = prep(xg)
        y.sum().backward()
        return y, [t.grad.clone() for t in (xg, twin.weight, twin.act_scale,
                                            twin.weight_scale)]

    (y0, g0), (y1, g1) = grads(1.0), grads(0.25)
    assert torch.equal(y1, y0)
    for scaled, base in zip(g1[:2], g0[:2], strict=True):  # the inputs' and weights'
        assert torch.allclose(scaled, 0.25 * base, rtol=0, atol=1e-12)
    # the LSQ scales' gradients are not the chip product's: unchanged (were 47x and of the
    # other sign, the rescaled straight-through term no longer balancing the direct one)
    for scaled, base in zip(g1[2:], g0[2:], strict=True):
        assert torch.allclose(scaled, base, rtol=1e-12, atol=1e-15)
    twin.grad_rescale = 1.0
    twin.out_rescale = 1.7
    y2 = prep(x)
    assert torch.allclose(y2, 1.7 * y0, rtol=1e-12, atol=0)
    sim = prep.deploy()
    assert torch.allclose(sim(x.float()).double(), y2, rtol=1e-5, atol=1e-6)
    names = apply_rescaling(prep, forward=False, backward=True)
    assert twin.out_rescale == 1.0 and twin.grad_rescale == names["0"][1]


def test_pim_chip_decompositions():
    ns = {d: pim_chip(d, adc_bits=4, rows=64) for d in ("native", "bit-serial", "differential")}
    assert ns["native"].n_planes == 1 and ns["bit-serial"].n_planes == 4
    assert ns["bit-serial"].device.bits_per_cell == 1
    assert ns["differential"].weight_encoding.value == "differential"
    assert all(c.array.rows_per_group == 64 for c in ns.values())
    with pytest.raises(ConfigError, match="decomposition"):
        pim_chip("analog", adc_bits=4, rows=64)


def test_pim_chip_arrays_hold_at_least_128_rows():
    """``rows`` sets the rows per conversion; the arrays have ``max(rows, 128)`` rows (and as
    many columns), as pim_chip's docstring says: a small conversion is a group of a 128-row
    array, not an array of its own."""
    for rows, n_rows in ((16, 128), (64, 128), (128, 128), (256, 256)):
        chip = pim_chip("native", adc_bits=4, rows=rows)
        assert (chip.array.n_rows, chip.array.n_cols) == (n_rows, n_rows)
        assert chip.array.rows_per_group == rows


def test_pim_chip_cubic_is_the_documented_column_nonlinearity():
    """``cubic = c`` is ``a -> a + F·c·(a/F)³`` (docs/pim-qat.md §1): the polynomial the chip
    holds (``NoiseConfig.poly_coeffs``: ``a + F·Σ_i c_i·(a/F)^(i+2)``) evaluated at several
    currents gives exactly that, with no quadratic term; ``cubic = 0`` is linear."""
    c, full = -0.3, 5.0
    chip = pim_chip("native", adc_bits=4, rows=64, cubic=c)
    assert chip.noise.nonlinearity.value == "polynomial"
    for a in (-5.0, -2.0, 0.5, 1.0, 4.0):
        u = a / full
        held = a + full * sum(ci * u ** (i + 2) for i, ci in enumerate(chip.noise.poly_coeffs))
        assert held == pytest.approx(a + full * c * u**3, rel=1e-12, abs=1e-12)
    assert pim_chip("native", adc_bits=4, rows=64).noise.nonlinearity.value == "none"


def test_prepare_pimqat_switches_each_rescaling_on_its_own():
    """``forward_rescale`` switches η_f (``out_rescale``), ``backward_rescale`` η_b
    (``grad_rescale``), each alone: the one switched off is 1, the other the value
    :func:`layer_rescale` computes (a 2-bit ADC on 4-row bit-serial sums: both differ from
    1)."""
    torch.manual_seed(1)
    lin = nn.Linear(4, 2).double()
    chip = pim_chip("bit-serial", adc_bits=2, rows=4)
    x = torch.rand(16, 4, dtype=torch.float64)
    for fwd, bwd in ((True, False), (False, True), (True, True), (False, False)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prep = prepare_pimqat(lin, chip, x, forward_rescale=fwd, backward_rescale=bwd)
        (_, twin), = prep.twins()
        eta_f, eta_b = layer_rescale(twin)
        assert abs(eta_f - 1) > 1e-3 and abs(eta_b - 1) > 1e-3
        assert twin.out_rescale == (eta_f if fwd else 1.0)
        assert twin.grad_rescale == (eta_b if bwd else 1.0)


# --- BN calibration --------------------------------------------------------------------------
def _split_state(module: nn.Module):
    stats, rest = {}, {}
    for k, v in module.state_dict().items():
        (stats if k.rsplit(".", 1)[-1] in ("running_mean", "running_var",
                                           "num_batches_tracked") else rest)[k] = v.clone()
    return stats, rest


def test_calibrate_bn_changes_only_running_statistics_of_a_twin():
    net, x = _net()
    chip = pim_chip("bit-serial", adc_bits=3, rows=16)
    prep = prepare_pimqat(net, chip, x[:16])
    prep.train()
    stats0, rest0 = _split_state(prep)
    n = calibrate_bn(prep, x, batch_size=16)
    assert n == 2
    stats1, rest1 = _split_state(prep)
    assert rest1.keys() == rest0.keys()
    assert all(torch.equal(rest0[k], rest1[k]) for k in rest0)
    assert any(not torch.equal(stats0[k], stats1[k]) for k in stats0 if "running" in k)
    assert prep.training  # modes restored
    assert all(m.momentum == 0.1 for m in prep.modules() if isinstance(m, nn.BatchNorm2d))
    # the first BatchNorm's cumulative mean over the batches equals one pass over all inputs
    # (later ones see inputs normalised with each batch's own statistics)
    prep2 = prepare_pimqat(net, chip, x[:16])
    calibrate_bn(prep2, x, batch_size=48)
    k = "model.bn.running_mean"
    assert torch.allclose(stats1[k], prep2.state_dict()[k], atol=1e-9)


def test_calibrate_bn_on_a_deployed_simmodel():
    net, x = _net(3)
    chip = pim_chip("bit-serial", adc_bits=3, rows=16, thermal_sigma_lsb=0.5, cubic=-0.2)
    prep = prepare_pimqat(net, chip, x[:16])
    sim = prep.deploy(0, chip=chip)
    stats0, rest0 = _split_state(sim.model)
    y0 = sim(x)
    assert calibrate_bn(sim, (x, torch.zeros(48)), batch_size=24) == 2
    stats1, rest1 = _split_state(sim.model)
    assert all(torch.equal(rest0[k], rest1[k]) for k in rest0)
    assert any(not torch.equal(stats0[k], stats1[k]) for k in stats0 if "running" in k)
    assert not torch.equal(sim(x), y0)
    assert not sim.model.bn.training  # modes restored


def test_calibrate_bn_without_batchnorm_and_bad_data():
    lin = nn.Linear(3, 2)
    with pytest.warns(UserWarning, match="no BatchNorm"):
        assert calibrate_bn(lin, torch.zeros(4, 3)) == 0
    net, _ = _net()
    with pytest.raises(ConfigError, match="data"):
        calibrate_bn(net, "images")
    with pytest.raises(ConfigError, match="empty"):
        calibrate_bn(net, torch.zeros(0, 2, 6, 6, dtype=torch.float64))


class _Affine(nn.Module):
    """A 'chip' that scales and shifts what its BatchNorm sees."""

    def __init__(self, k: float, c: float):
        super().__init__()
        self.k, self.c = k, c

    def forward(self, x):
        return self.k * x + self.c


def _bn_net(k: float = 1.0, c: float = 0.0, fail: bool = False) -> nn.Sequential:
    bn = nn.BatchNorm1d(3).double()
    with torch.no_grad():  # statistics held from training, not those of any data below
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        bn.running_var.copy_(torch.tensor([2.0, 0.25, 1.0]))
    layers = [_Affine(k, c), bn] + ([_Raises()] if fail else [])
    return nn.Sequential(*layers).eval()


class _Raises(nn.Module):
    def forward(self, x):
        raise RuntimeError("the chip failed")


def test_calibrate_bn_relative_moves_the_held_statistics_by_the_chip_deviation():
    torch.manual_seed(0)
    x = torch.randn(64, 3, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5]) + 1.0
    chip, ref = _bn_net(k=1.5, c=0.25), _bn_net()
    ref_stats = _split_state(ref)[0]
    assert calibrate_bn(chip, x, batch_size=16, reference=ref) == 1
    bn = chip[1]
    # hand computation: the chip's mean is 1.5·mean(x) + 0.25, the reference's mean(x); the
    # chip's variance 1.5² times the reference's
    mean0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    var0 = torch.tensor([2.0, 0.25, 1.0], dtype=torch.float64)
    assert torch.allclose(bn.running_mean, mean0 + 0.5 * x.mean(0) + 0.25, atol=1e-12)
    assert torch.allclose(bn.running_var, var0 * 2.25, atol=1e-12)
    assert all(torch.equal(v, _split_state(ref)[0][k]) for k, v in ref_stats.items())
    # without reference: the chip's own statistics replace the held ones
    absolute = _bn_net(k=1.5, c=0.25)
    calibrate_bn(absolute, x, batch_size=16)
    assert torch.allclose(absolute[1].running_mean, 1.5 * x.mean(0) + 0.25, atol=1e-12)


def test_calibrate_bn_relative_to_itself_keeps_the_held_statistics():
    net, x = _net()
    chip = pim_chip("bit-serial", adc_bits=3, rows=16)
    prep = prepare_pimqat(net, chip, x[:16])
    stats0, rest0 = _split_state(prep)
    assert calibrate_bn(prep, x, batch_size=16, reference=prep) == 2
    stats1, rest1 = _split_state(prep)
    assert all(torch.allclose(stats0[k].double(), stats1[k].double(), atol=1e-9)
               for k in stats0 if "running" in k)
    assert all(torch.equal(rest0[k], rest1[k]) for k in rest0)


def test_calibrate_bn_relative_on_a_simmodel_against_its_twin():
    net, x = _net(3)
    clean = pim_chip("bit-serial", adc_bits=3, rows=16)
    noisy = pim_chip("bit-serial", adc_bits=3, rows=16, thermal_sigma_lsb=0.5, cubic=-0.2)
    prep = prepare_pimqat(net, clean, x[:16])
    sim = prep.deploy(0, chip=noisy)
    stats0, _ = _split_state(sim.model)
    twin0, _ = _split_state(prep)
    assert calibrate_bn(sim, x, batch_size=24, reference=prep) == 2
    stats1, _ = _split_state(sim.model)
    assert any(not torch.equal(stats0[k], stats1[k]) for k in stats0 if "running" in k)
    assert all(torch.equal(twin0[k], _split_state(prep)[0][k]) for k in twin0)
    assert all(bool((v > 0).all()) for k, v in stats1.items() if k.endswith("running_var"))


def test_calibrate_bn_bad_reference_and_failures_lose_nothing():
    x = torch.randn(32, 3, dtype=torch.float64)
    net = _bn_net(k=2.0)
    held = _split_state(net)[0]

    def unchanged() -> bool:
        return all(torch.equal(v, _split_state(net)[0][k]) for k, v in held.items())

    with pytest.raises(ConfigError, match="reference"):
        calibrate_bn(net, x, reference=nn.Sequential(nn.BatchNorm1d(4)))
    with pytest.raises(ConfigError, match="reference"):
        calibrate_bn(net, x, reference=nn.Linear(3, 3))
    with pytest.raises(ConfigError, match="read twice"):
        calibrate_bn(net, iter([x]), reference=_bn_net())
    assert unchanged()
    failing = _bn_net(fail=True)
    held_f = _split_state(failing)[0]
    for reference in (None, _bn_net()):
        with pytest.raises(RuntimeError, match="chip failed"):
            calibrate_bn(failing, x, reference=reference)
        assert all(torch.equal(v, _split_state(failing)[0][k]) for k, v in held_f.items())
    ref = _bn_net()
    ref_held = _split_state(ref)[0]
    with pytest.raises(RuntimeError, match="chip failed"):  # the reference fails: both kept
        calibrate_bn(net, x, reference=nn.Sequential(*ref, _Raises()))
    assert unchanged()
    assert all(torch.equal(v, _split_state(ref)[0][k]) for k, v in ref_held.items())


# --- adjusted precision ----------------------------------------------------------------------
def test_adjusted_precision_trains_at_one_adc_and_deploys_at_another():
    net, x = _net(5)
    y = torch.randint(0, 3, (48,))
    deploy_chip = pim_chip("bit-serial", adc_bits=5, rows=16)
    prep = prepare_pimqat(net, deploy_chip, x[:16], train_adc_bits=3)
    assert all(t.top_code == 7 for _, t in prep.twins())
    opt = torch.optim.Adam(param_groups(prep, 1e-3))
    prep.train()
    for m in prep.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(prep(x), y).backward()
        opt.step()
    prep.eval()
    sim = prep.deploy(0, chip=deploy_chip)
    for core_layer in sim.sim_layers.values():
        for core in core_layer.cores:
            for _, _, layer in core.view.parts:
                assert layer.chip.adc.bits == 5
                assert layer.adc.lo.shape[0] == layer.n_groups
    # the deployed model is the same weights and scales on a 5-bit twin
    twin5 = prepare_pimqat(prep, deploy_chip, x[:16])
    for (_, a), (_, b) in zip(prep.twins(), twin5.twins(), strict=True):
        assert torch.equal(a.quantized_weight(), b.quantized_weight())
        b.out_rescale = a.out_rescale
    apply_rescaling(twin5, forward=True, backward=True)
    twin5.eval()
    for (_, a), (_, b) in zip(prep.twins(), twin5.twins(), strict=True):
        b.out_rescale = a.out_rescale  # the forward rescale of the trained twin is deployed
    agree = (sim(x).argmax(1) == twin5(x).argmax(1)).float().mean()
    assert agree >= 0.95
    with pytest.raises(ConfigError, match="train_adc_bits"):
        prepare_pimqat(net, deploy_chip, x[:16], train_adc_bits=0)


def test_adjusted_precision_on_a_calibrated_chip_deploys_the_learned_range_at_its_bits():
    """A calibrated linear ADC: the twin trained at 3 bits deploys its learned range on the
    chip's 5-bit grid (it was refused before training: the deploy had no range to use), the
    same conversions the twin makes at 5 bits (``raoq.adc_bits``). A nonlinear converter or
    a fused activation, whose levels hold at the twin's bits only, is still refused before
    training, naming the way out."""
    from cimsim.train.raoq import adc_bits

    net, x = _net(5)
    chip = pim_chip("bit-serial", adc_bits=5, rows=16)
    calibrated = chip.replace(adc=chip.adc.replace(range_policy="calibrated"))
    prep = prepare_pimqat(net, calibrated, x[:16], train_adc_bits=3).eval()
    assert all(t.top_code == 7 for _, t in prep.twins())
    sim = prep.deploy(seed=0, chip=calibrated)
    with torch.no_grad(), adc_bits(prep, 5):
        torch.testing.assert_close(sim(x), prep(x), rtol=1e-5, atol=1e-5)
    ramp = calibrated.replace(adc=calibrated.adc.replace(kind="ramp"))
    with pytest.raises(ConfigError, match=r"train_adc_bits = 3 on chip .* adc.range_policy = "
                       r"'calibrated': its adc.kind = 'ramp' is not a linear converter.*"
                       r"allowed: .*'full_scale'.*adc.bits \(5\)"):
        prepare_pimqat(net, ramp, x[:16], train_adc_bits=3)
    prepare_pimqat(net, ramp, x[:16], train_adc_bits=5).deploy(seed=0, chip=ramp)


def test_train_adc_bits_on_a_fused_calibrated_linear_adc_is_refused_before_training():
    """Pins the fused-activation term of ``check_train_adc_bits``: a calibrated linear ADC
    at the layer output fused with the activation would regrid as a linear range, but its
    levels are the activation's, learned at the twin's bits: other bits are refused naming
    why (allowed, the training ran and the deploy refused it after the epochs); the chip's
    own bits pass, as do other bits once the activation is not fused."""
    from cimsim.train.pimqat import check_train_adc_bits
    from tests.mapping.test_fused_activation import _chip

    fused = _chip(kind="sar", bits=6, level_fit="uniform")
    assert fused.adc.fuse_activation and fused.adc.range_policy.value == "calibrated"
    with pytest.raises(ConfigError, match=r"train_adc_bits = 4 on chip 'ideal', whose "
                       r"adc.range_policy = 'calibrated': its layer-output ADCs are the fused "
                       r"activations"):
        check_train_adc_bits(fused, 4)
    assert check_train_adc_bits(fused, 6) == 6
    assert check_train_adc_bits(fused.replace(adc=fused.adc.replace(fuse_activation=False)),
                                4) == 4

"""ColumnQuant option 3 (the unanchored ternary combination on binary cells, issue 11):
snap, soft-assignment gradient, twin == engine on the lossless chip, training, deploy with the
learned alphas as the conversions' digital weights, events, refused options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim import engine
from cimsim.arrays.encoding import column_kinds, weight_range
from cimsim.cli import main
from cimsim.errors import ConfigError
from cimsim.events import Action, Component
from cimsim.train.columnquant import (
    columnquant_chip,
    deploy_columnquant,
    prepare_columnquant,
    with_decomposition,
)
from cimsim.train.loop import param_groups
from cimsim.train.ternary import TernaryTwin, make_ternary, temperature
from cimsim.train.twin import prepare


def _lossless(weight_bits=4, n_rows=8, calibrated=True):
    """The ideal chip with binary cells in balanced-ternary pairs: a 24-bit full-scale ADC
    (exact conversions), or calibrated (what ColumnQuant learns; exact up to its step)."""
    ideal = cimsim.load_chip("ideal")
    chip = ideal.replace(weight_bits=weight_bits, input_bits=4,
                         array=ideal.array.replace(n_rows=n_rows, n_cols=16),
                         quant=ideal.quant.replace(weight_granularity="column"))
    if calibrated:
        chip = chip.replace(adc=chip.adc.replace(range_policy="calibrated",
                                                 calibration_granularity="column"))
    return with_decomposition(chip, "ternary")


def _twin(prep, name="0") -> TernaryTwin:
    twin = dict(prep.twins())[name]
    assert isinstance(twin, TernaryTwin)
    return twin


def test_balanced_ternary_encoding_reconstructs_every_code():
    chip = _lossless(weight_bits=3)
    lo, hi = weight_range(chip)
    assert (lo, hi) == (-13, 13)
    w = np.arange(lo, hi + 1)[:, None]  # (N, K = 1)
    kinds = column_kinds(w, chip)
    assert kinds.n_kinds == 6 and set(np.unique(kinds.digits)) <= {0, 1}
    rebuilt = np.einsum("q,qkn->nk", kinds.coef, kinds.digits.astype(np.float64))
    np.testing.assert_array_equal(rebuilt, w)
    # a pair never holds +1 and -1 of one digit at once
    assert not np.any(kinds.digits[0::2] & kinds.digits[1::2])


def test_snap_picks_the_nearest_level_hand_case():
    model = nn.Linear(4, 1, bias=False).double()
    x = torch.rand(8, 4, dtype=torch.float64)
    prep = prepare_columnquant(model, _lossless(weight_bits=2), x, weight_scale="layer")
    twin = _twin(prep)
    # alphas 1 and 0.25: levels ±1.25, ±1, ±0.75, ±0.25, 0
    alpha = torch.tensor([1.0, 0.25], dtype=torch.float64).reshape(2, 1, 1)
    w = torch.tensor([[0.9, 0.1, -0.6, 0.14]], dtype=torch.float64)
    code, w_q = twin.snap(w, alpha)
    torch.testing.assert_close(w_q, torch.tensor([[1.0, 0.0, -0.75, 0.25]],
                                                 dtype=torch.float64))
    # codes are Σ c_i 3^i: 1 = (+1, 0), 0, -0.75 = (-1, +1) -> -1 + 3 = 2, 0.25 = (0, +1) -> 3
    torch.testing.assert_close(code, torch.tensor([[1.0, 0.0, 2.0, 3.0]], dtype=torch.float64))


def test_soft_assignment_gradient_matches_the_formula():
    model = nn.Linear(3, 1, bias=False).double()
    prep = prepare_columnquant(model, _lossless(weight_bits=2), torch.rand(8, 3,
                               dtype=torch.float64), weight_scale="layer")
    twin = _twin(prep)
    w = torch.tensor([[0.4, -0.05, 0.8]], dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor([0.5, 0.2], dtype=torch.float64).reshape(2, 1, 1).requires_grad_()
    g_out = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    _, w_q = twin.snap(w, alpha)
    (w_q * g_out).sum().backward()
    # by hand: levels Σ c_i α_i over the 9 codes, p = softmax(-τ |w - L| / max α)
    w2 = w.detach().clone().requires_grad_()
    a2 = alpha.detach().reshape(2).clone().requires_grad_()
    codes = torch.tensor([[c0, c1] for c1 in (-1, 0, 1) for c0 in (-1, 0, 1)],
                         dtype=torch.float64)
    levels = codes @ a2  # (9,)
    tau = temperature(2)
    assert tau == 14.0
    p = torch.softmax(-tau * (w2[..., None] - levels).abs() / a2.detach().abs().max(), dim=-1)
    ((p * levels).sum(dim=-1) * g_out).sum().backward()
    torch.testing.assert_close(w.grad, w2.grad)
    torch.testing.assert_close(alpha.grad.reshape(2), a2.grad)
    # the forward is the hard snap: 0.4 -> 0.5, -0.05 -> 0, 0.8 -> 0.7
    torch.testing.assert_close(w_q.detach(), torch.tensor([[0.5, 0.0, 0.7]],
                                                          dtype=torch.float64))


@pytest.mark.parametrize("weight_scale", ["layer", "array", "column"])
def test_alphas_init_and_gradient_scale(weight_scale):
    model = nn.Linear(20, 6).double()
    x = torch.rand(16, 20, dtype=torch.float64)
    prep = prepare_columnquant(model, _lossless(), x, weight_scale=weight_scale)
    twin = _twin(prep)
    t = twin.n_parts  # 20 rows on 8-row arrays: 3 row tiles
    shape = {"layer": (4, 1, 1), "array": (4, t, 1), "column": (4, t, 6)}[weight_scale]
    assert tuple(twin.alpha.shape) == shape
    w = model.weight.detach().abs()
    if weight_scale == "layer":
        mean, numel = w.mean(), w.numel()
    elif weight_scale == "array":
        mean, numel = w[:, :8].mean(), 8 * 6  # the first row tile
    else:
        mean, numel = w[0, :8].mean(), 8
    a0 = twin.alpha.detach()[:, 0, 0]
    torch.testing.assert_close(a0, mean * 2.0 ** -torch.arange(4.0, dtype=torch.float64))
    expected = 1.0 / np.sqrt(7 * numel) / 2.0 ** 2  # n_max = 7, B_w = 4
    assert float(twin._alpha_grad.reshape(-1)[0]) == pytest.approx(expected)
    assert not twin.weight_scale.requires_grad


def test_twin_equals_the_deployed_chip_on_the_lossless_chip():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    x = torch.rand(24, 20, dtype=torch.float64)
    prep = prepare(model, _lossless(calibrated=False), x)
    for _, t in prep.twins():
        make_ternary(t, "column")
    prep.eval()
    twin = _twin(prep)
    # exact: a full-scale 24-bit ADC converts every partial sum exactly; dyadic alphas make
    # every product and sum exact, in the twin and in the engine
    with torch.no_grad():
        twin.alpha.copy_((2.0 ** -torch.randint(1, 6, twin.alpha.shape)).double())
    x_int = twin.quantize_input(x)
    parts = twin.integer_forward(x_int).numpy()
    view = twin.to_engine()
    assert np.array_equal(view.w_int, twin.quantized_weight().numpy())
    assert np.all(view.s_w == 1.0)
    got = np.stack([engine.run(layer, x_int.numpy().astype(np.int64)[:, a:b])[0]
                    for a, b, layer in view.parts])
    np.testing.assert_array_equal(parts, got)
    # the slice weights are the alphas (±α_i of the pair's slice, per row tile and column)
    _, _, layer = view.parts[1]
    kind = np.arange(layer.n_conversions) % twin.n_kinds
    alpha = twin.alpha.detach().numpy()[kind // (twin.n_kinds // 4), 1, layer.out_col]
    np.testing.assert_array_equal(np.abs(layer.conv_coef), alpha)
    # the whole model: the twin in eval == the deployed SimModel (float64 summation order)
    sim = prep.deploy(0)
    with torch.no_grad():
        torch.testing.assert_close(prep(x), torch.as_tensor(sim(x)), rtol=1e-12, atol=1e-14)


def test_exact_conversion_pass_keeps_the_forward_rescale():
    """The ternary twin's exact-conversion path (``lossless``, recalibrate_adcs' pass) is the
    chip path on a chip whose conversions are exact, the forward rescale ``out_rescale``
    (PIM-QAT's η_f) included: both give η_f times the output at η_f = 1."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(20, 8)).double()
    x = torch.rand(24, 20, dtype=torch.float64)
    prep = prepare(model, _lossless(calibrated=False), x)
    twin = dict(prep.twins())["0"]
    make_ternary(twin, "column")
    prep.eval()
    with torch.no_grad():
        twin.alpha.copy_((2.0 ** -torch.randint(1, 6, twin.alpha.shape)).double())
        y1 = twin(x)
        twin.out_rescale = 1.5
        y_chip = twin(x)
        twin.lossless = True
        y_exact = twin(x)
        twin.lossless = False
    bias = twin.bias.detach()
    torch.testing.assert_close(y_chip - bias, 1.5 * (y1 - bias), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y_exact, y_chip, rtol=1e-12, atol=1e-12)


def test_training_lowers_the_loss_and_deploys_with_the_learned_alphas():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))
    x = torch.rand(96, 16)
    y = (x[:, :3] * torch.tensor([1.0, 2.0, 3.0])).argmax(dim=1)
    chip = columnquant_chip(psum_bits=4, encoding="ternary", array_size=8)
    assert chip.device.bits_per_cell == 1 and chip.weight_encoding.value == "ternary"
    prep = prepare_columnquant(model, chip, x[:32], weight_scale="column", centre="frozen")
    twin = _twin(prep)
    a0 = twin.alpha.detach().clone()
    opt = torch.optim.Adam(param_groups(prep, 0.02))
    assert any(twin.alpha is p for g in opt.param_groups for p in g["params"])
    prep.train()
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = F.cross_entropy(prep(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
    assert not torch.equal(twin.alpha.detach(), a0)  # the alphas learn
    prep.eval()
    sim = deploy_columnquant(prep, x[:32], 0)
    with torch.no_grad():
        agree = (torch.as_tensor(sim(x)).argmax(1) == prep(x).argmax(1)).double().mean()
    assert agree >= 0.95
    # each conversion's code is multiplied by its alpha: one digital multiply per conversion
    work = sim.work()
    n_mul = sum(w.events.get((Component.DIGITAL, Action.SLICE_MULTIPLY, 32), 0.0)
                for w in work.layers)
    n_conv = sum(w.events.get((Component.ADC, Action.CONVERT, 4), 0.0) for w in work.layers)
    assert n_mul == n_conv > 0


def test_bad_decomposition_options_are_config_errors(tmp_path, capsys):
    model = nn.Linear(4, 2)
    x = torch.rand(8, 4)
    with pytest.raises(ConfigError, match="decomposition"):
        prepare_columnquant(model, _lossless(), x, decomposition="quaternary")
    with pytest.raises(ConfigError, match="encoding"):
        columnquant_chip(psum_bits=3, encoding="option3")
    with pytest.raises(ConfigError, match="bits_per_cell"):
        columnquant_chip(psum_bits=3, encoding="ternary", bits_per_cell=2)
    chip = cimsim.load_chip("ideal")
    with pytest.raises(ConfigError, match="ternary"):  # option 3 on a chip without ternary
        prep = prepare_columnquant(model, chip.replace(
            quant=chip.quant.replace(weight_granularity="column"),
            adc=chip.adc.replace(range_policy="calibrated")), x)
        make_ternary(dict(prep.twins())["0"], "layer")
    args = ["train", "--model", "demo", "--limit", "24", "--chip", "ideal", "--method",
            "columnquant", "--weight-decomposition", "4", "--out", str(tmp_path / "x")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--weight-decomposition" in err and "ternary" in err and err.count("\n") == 1


def test_adcs_are_recalibrated_on_the_ternary_codes():
    """``prepare`` calibrates on deploy's integers (±7: balanced-ternary digits in the low
    slices); option 3's codes use every slice. Recalibrated, the deployed chip converts the
    calibration inputs with few clips; calibrated on deploy's integers, many more clip."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3)).double()
    x = torch.rand(64, 16, dtype=torch.float64)
    chip = columnquant_chip(psum_bits=4, encoding="ternary", array_size=8)

    def clip_share(prep) -> float:
        sim = prep.deploy(0)
        sim(x)
        return float(np.mean([w.adc_clip_fraction for w in sim.work().layers]))

    prep = prepare_columnquant(model, chip, x, weight_scale="layer")
    stale = prepare(model, chip, x)
    for _, t in stale.twins():
        make_ternary(t, "layer")
    assert clip_share(prep) < 0.02 < clip_share(stale)

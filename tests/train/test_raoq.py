"""Issue 12: A-shift (engine and twin), W-reshape, BitAug, ADC-LoRA, BS-KMQ fine-tuning."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.cost import estimate
from cimsim.data import load_digits_split
from cimsim.errors import ConfigError
from cimsim.events import Action, Component, event_key
from cimsim.models import load_digits_cnn
from cimsim.train import prepare
from cimsim.train.bskmq import NLActivation, attach_nl_activations, finetune
from cimsim.train.lora import add_lora, lora_parameters, merge_lora
from cimsim.train.raoq import (
    adc_bits,
    bitaug_loss,
    kurtosis,
    kurtosis_penalty,
    quantized_weight_ste,
    unshifted,
    weight_stats,
)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 6), nn.ReLU(),
                         nn.Linear(6, 3)).double().eval()


def _shifted(chip: cimsim.ChipConfig, on: bool = True) -> cimsim.ChipConfig:
    return chip.replace(dac=chip.dac.replace(shift_unsigned_inputs=on))


def _cores(sim) -> list:
    return [c for layer in sim.sim_layers.values() for c in layer.cores]


def _fixed_full_range(bits: int) -> cimsim.ChipConfig:
    """W4A4, all input bits at once, 4-bit weights in one signed cell, one conversion per 64
    rows, a fixed full-range ADC of ``bits`` bits, ideal devices (RAOQ's setting)."""
    chip = cimsim.load_chip("ideal")
    return chip.replace(weight_bits=4, input_bits=4, weight_encoding="signed_cell",
                        dac=chip.dac.replace(bits=None),
                        device=chip.device.replace(bits_per_cell=3),
                        array=chip.array.replace(n_rows=64),
                        adc=chip.adc.replace(bits=bits, range_policy="full_scale"))


# ---------------------------------------------------------------------------------------------
# A-shift
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("granularity", ["channel", "column"])
def test_a_shift_is_exact_on_the_lossless_chip_in_the_engine_and_the_twin(granularity):
    model = _mlp()
    x_cal = torch.randn(32, 12, dtype=torch.float64)
    x = torch.randn(9, 12, dtype=torch.float64)
    chip = cimsim.load_chip("ideal")
    # column: 8-row tiles, each dequantized (and corrected) as its own part
    chip = chip.replace(quant=chip.quant.replace(weight_granularity=granularity),
                        array=chip.array.replace(n_rows=8 if granularity == "column" else 256))
    plain = cimsim.deploy(model, chip, x_cal)
    shifted = cimsim.deploy(model, _shifted(chip), x_cal)
    # the post-ReLU layers are driven signed with the zero point -2^(B_x-1); the first is not
    assert [c.view.zero_point for c in _cores(shifted)] == [0, -128, -128]
    assert [c.signed for c in _cores(shifted)] == [True, True, True]
    torch.testing.assert_close(shifted(x), plain(x), rtol=0, atol=0)
    prep = prepare(model, _shifted(chip), x_cal).eval()
    torch.testing.assert_close(prep(x), shifted(x), rtol=1e-12, atol=1e-12)
    assert [t.zero_point for _, t in prep.twins()] == [0, -128, -128]
    # the twin hands the shift back to deploy
    torch.testing.assert_close(prep.deploy()(x), shifted(x), rtol=1e-12, atol=1e-12)


def test_a_shift_refuses_two_pass_signed_inputs():
    chip = cimsim.load_chip("ideal")
    with pytest.raises(ConfigError, match="signed_inputs"):
        chip.replace(dac=chip.dac.replace(signed_inputs="two_pass", shift_unsigned_inputs=True))
    with pytest.raises(ConfigError, match="shift_unsigned_inputs"):
        chip.dac.replace(shift_unsigned_inputs="yes")


def test_a_shift_correction_and_shift_are_counted_and_priced():
    model = _mlp()
    x_cal = torch.randn(32, 12, dtype=torch.float64)
    chip = _shifted(cimsim.load_chip("rram-22nm"))
    sim = cimsim.deploy(model, chip, x_cal)
    sim(x_cal[:5])
    acc = chip.accumulator_bits
    for core, (k, n) in zip(_cores(sim), [(12, 10), (10, 6), (6, 3)], strict=True):
        ev = core.events
        corr = ev.get(event_key(Component.DIGITAL, Action.SHIFT_CORRECTION_ADD, acc))
        shift = ev.get(event_key(Component.DAC, Action.INPUT_SHIFT, chip.input_bits))
        if core.view.zero_point == 0:
            assert corr == 0 and shift == 0
        else:
            assert corr == 5 * n * len(core.parts)
            assert shift == 5 * k
    cost = estimate(sim.work())
    rows = [r for r in cost.events if r["action"] in ("shift_correction_add", "input_shift")]
    assert rows and all(r["energy_pj_per_event"] > 0 for r in rows)


def test_a_shift_raises_code_use_and_sqnr_on_a_fixed_full_range_adc():
    """The figures the RAOQ study reports per layer: with post-ReLU inputs on a fixed
    full-range 5-bit ADC, the shifted drive uses more codes and gives a higher SQNR."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16)).double().eval()
    x_cal = torch.rand(256, 64, dtype=torch.float64) ** 3  # post-ReLU-like: mass near 0
    out = {}
    for on in (False, True):
        sim = cimsim.deploy(model, _shifted(_fixed_full_range(5), on), x_cal)
        out[on] = sim.trace(x_cal[:128]).set_index("layer")
    for layer in ("0", "2"):
        assert out[True].loc[layer, "adc_code_use_pct"] > out[False].loc[layer, "adc_code_use_pct"]
        assert out[True].loc[layer, "sqnr_db"] > out[False].loc[layer, "sqnr_db"]


# ---------------------------------------------------------------------------------------------
# W-reshape
# ---------------------------------------------------------------------------------------------
def test_w_reshape_gradient_is_the_straight_through_kurtosis_gradient():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(8, 5)).double()
    x_cal = torch.randn(16, 8, dtype=torch.float64)
    prep = prepare(model, cimsim.load_chip("ideal"), x_cal)
    (_, twin), = prep.twins()
    lam, kt = 0.3, 1.8
    kurtosis_penalty(prep, target=kt, weight=lam).backward()
    q = twin.quantized_weight()
    s = twin._weight_scale_full(twin.weight_scale).detach()
    # closed form: K = m4 / m2², dK/dq_i = (4/n)(d³_i − mean d³)/m2² − 2 m4/m2³ · (2/n) d_i
    d = q - q.mean()
    n = q.numel()
    m2, m4 = (d ** 2).mean(), (d ** 4).mean()
    k = m4 / m2 ** 2
    dk = (4 / n) * (d ** 3 - (d ** 3).mean()) / m2 ** 2 - 2 * m4 / m2 ** 3 * (2 / n) * d
    inside = (twin.weight / s).abs() <= twin.w_qmax
    expected = torch.where(inside, 2 * lam * (k - kt) * dk / s, torch.zeros_like(dk))
    torch.testing.assert_close(twin.weight.grad, expected, rtol=1e-9, atol=1e-12)
    assert float(kurtosis(quantized_weight_ste(twin)).detach()) == pytest.approx(float(k))
    (row,) = weight_stats(prep)
    assert row["var_w_int"] == pytest.approx(float(q.var(unbiased=False)))
    assert row["kurtosis"] == pytest.approx(float(k))
    with pytest.raises(ConfigError, match="target"):
        kurtosis_penalty(prep, target=0.5)


def test_w_reshape_reads_the_codes_of_a_power_of_two_weight_scale():
    """Was: under ``quant.weight_scale = 'pow2'`` the penalty quantized with the raw learned
    scale, the forward with its power of two: once the scale moved off one (x 1.3), 159 of
    160 penalised codes were not the forward's."""
    chip = cimsim.load_chip("rram-22nm", overrides=["quant.weight_scale=pow2"])
    torch.manual_seed(0)
    x = torch.randn(16, 20, dtype=torch.float64)
    prep = prepare(nn.Linear(20, 8).double(), chip, x)
    (_, twin), = prep.twins()
    with torch.no_grad():
        twin.weight_scale.mul_(1.3)
    torch.testing.assert_close(quantized_weight_ste(twin).detach(), twin.quantized_weight(),
                               rtol=0, atol=0)


def test_w_reshape_steps_move_the_kurtosis_toward_the_target():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(64, 32)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(32, 64, dtype=torch.float64) ** 3)  # heavy tails
    prep = prepare(model, cimsim.load_chip("ideal"), torch.randn(16, 64, dtype=torch.float64),
                   learn_weight_scale=False)
    k0 = weight_stats(prep)[0]["kurtosis"]
    opt = torch.optim.SGD([p for p in prep.parameters() if p.requires_grad], lr=0.01)
    for _ in range(30):
        opt.zero_grad()
        kurtosis_penalty(prep, weight=1.0).backward()
        opt.step()
    assert abs(weight_stats(prep)[0]["kurtosis"] - 1.8) < abs(k0 - 1.8)


# ---------------------------------------------------------------------------------------------
# BitAug
# ---------------------------------------------------------------------------------------------
def test_bitaug_uses_the_precisions_asked_for():
    model = _mlp()
    x_cal = torch.randn(32, 12, dtype=torch.float64)
    prep = prepare(model, _fixed_full_range(6), x_cal).eval()
    seen: list[int | None] = []

    def loss_fn(xb):
        seen.append(next(prep.twins())[1].adc_bits_override)
        return prep(xb).square().mean()

    bitaug_loss(prep, loss_fn, (x_cal,), [7, 8], mode="sum")
    assert seen == [None, 7, 8]
    seen.clear()
    rng = random.Random(0)
    for _ in range(12):
        bitaug_loss(prep, loss_fn, (x_cal,), [5, 7, 8], mode="sample", rng=rng)
    assert seen[0::2] == [None] * 12 and set(seen[1::2]) == {5, 7, 8}
    assert all(t.adc_bits_override is None for _, t in prep.twins())
    with pytest.raises(ConfigError, match="mode"):
        bitaug_loss(prep, loss_fn, (x_cal,), [7], mode="all")


def test_adc_bits_override_keeps_the_range_and_changes_the_step():
    model = _mlp()
    x_cal = torch.randn(64, 12, dtype=torch.float64)
    prep = prepare(model, _fixed_full_range(6), x_cal).eval()
    x = torch.randn(40, 12, dtype=torch.float64)
    y6 = prep(x)
    with adc_bits(prep, 6):
        torch.testing.assert_close(prep(x), y6, rtol=0, atol=0)
    (_, twin), *_ = prep.twins()
    with adc_bits(prep, 4):
        lo, d, top = twin._adc_grid0()
        y4 = prep(x)
    torch.testing.assert_close(d, twin._adc_delta0 * 63 / 15)
    assert top == 15 and torch.all(torch.remainder(lo / d, 1.0).abs() < 1e-9)
    with adc_bits(prep, 12):
        y12 = prep(x)
    # a finer ADC over the same range is closer to the lossless product
    exact = prepare(model, cimsim.load_chip("ideal").replace(
        weight_bits=4, input_bits=4), x_cal).eval()(x)

    def err(y):
        return float((y - exact).detach().square().sum())

    assert err(y12) < min(err(y6), err(y4))


# ---------------------------------------------------------------------------------------------
# ADC-LoRA
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chip_name", ["ideal", "fixed5"])
def test_lora_merged_deploy_equals_the_unmerged_twin(chip_name):
    model = _mlp()
    x_cal = torch.randn(64, 12, dtype=torch.float64)
    chip = cimsim.load_chip("ideal") if chip_name == "ideal" else _fixed_full_range(5)
    prep = prepare(model, _shifted(chip), x_cal, train_noise=False)
    w0 = [t.weight.detach().clone() for _, t in prep.twins()]
    params = add_lora(prep, rank=2, alpha=4.0, seed=1)
    assert params == lora_parameters(prep) and len(params) == 6
    opt = torch.optim.Adam(params, lr=0.05)
    target = torch.randn(64, 3, dtype=torch.float64)
    for _ in range(5):
        opt.zero_grad()
        (prep(x_cal) - target).square().mean().backward()
        opt.step()
    for (_, t), w in zip(prep.twins(), w0, strict=True):
        assert torch.equal(t.weight, w)  # W0 frozen
    assert any(float(p.abs().max()) > 0 for p in params[1::2])  # B moved
    prep.eval()
    x = torch.randn(20, 12, dtype=torch.float64)
    y_unmerged = prep(x)
    merge_lora(prep)
    assert not lora_parameters(prep)
    torch.testing.assert_close(prep(x), y_unmerged, rtol=0, atol=0)
    y_dep = prep.deploy()(x)
    torch.testing.assert_close(y_dep, y_unmerged, rtol=1e-12, atol=1e-12)


def test_lora_delta_is_alpha_over_the_requested_rank_times_b_a():
    """ΔW = (α/r)·B·A (lora.py's docstring), where r is the rank asked for: a matrix whose
    min(N, K) caps its adapter's rank keeps the scale α/r (default α = r: ΔW = B·A on every
    matrix). W0 is frozen while the adapters train; ``merge_lora`` folds W0 + ΔW into the
    weight and unfreezes it."""
    x_cal = torch.randn(64, 12, dtype=torch.float64)
    for rank, alpha, scale in ((2, 4.0, 2.0), (8, None, 1.0), (8, 16.0, 2.0)):
        prep = prepare(_mlp(), cimsim.load_chip("ideal"), x_cal, train_noise=False)
        add_lora(prep, rank=rank, alpha=alpha, seed=3)
        gen = torch.Generator().manual_seed(5)
        expect = []
        for _, t in prep.twins():
            n, k = t.weight.shape
            assert t.lora.A.shape == (min(rank, n, k), k)  # the cap: 8 -> 8, 6, 3
            assert not t.weight.requires_grad  # W0 frozen: only the adapters train
            with torch.no_grad():
                t.lora.B.copy_(torch.randn(t.lora.B.shape, generator=gen, dtype=torch.float64))
            w0 = t.weight.detach().clone()
            delta = scale * (t.lora.B @ t.lora.A).detach()
            torch.testing.assert_close(t.float_weight().detach() - w0, delta, rtol=1e-12,
                                       atol=1e-14)
            expect.append(w0 + delta)
        merge_lora(prep)
        for (_, t), w in zip(prep.twins(), expect, strict=True):
            assert getattr(t, "lora", None) is None and t.weight.requires_grad
            torch.testing.assert_close(t.weight.detach(), w, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# BS-KMQ fine-tuning
# ---------------------------------------------------------------------------------------------
def test_nl_activation_is_the_fused_ramp_function_with_ste():
    act = NLActivation(2, "uniform")
    act.fit(np.array([0.0, 0.0, 1.0, 3.0]))
    x = torch.tensor([-1.0, 0.4, 0.6, 2.9, 5.0], requires_grad=True)
    y = act(x)
    torch.testing.assert_close(y, torch.tensor([0.0, 0.0, 1.0, 3.0, 3.0]))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0]))


def test_nl_activation_value_on_a_threshold_takes_the_level_above():
    """``levels[#(thresholds <= y)]`` (NLActivation's docstring): a value exactly on threshold
    k is counted, so it reads level k + 1, not k."""
    act = NLActivation(2, "uniform")
    act.fit(np.array([0.0, 0.0, 1.0, 3.0]))
    thr, lvl = act.thresholds.clone(), act.levels.clone()
    assert torch.all(lvl[1:] > lvl[:-1])
    torch.testing.assert_close(act(thr), lvl[1:], rtol=0, atol=0)
    below = torch.nextafter(thr, torch.full_like(thr, -1.0))
    torch.testing.assert_close(act(below), lvl[:-1], rtol=0, atol=0)


def test_refit_levels_records_the_eval_model_and_keeps_its_modes():
    """``refit_levels`` fits each activation on what the model computes in eval mode (a
    BatchNorm normalising with its running statistics, which the pass leaves as they were),
    and restores each module's own mode: a model in training mode fitted on batch statistics
    and moved its running averages."""
    from cimsim.train.bskmq import refit_levels

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    x = torch.randn(64, 4) * 3
    nl = attach_nl_activations(model, 2, "uniform", x)
    nl.train()
    stats = [t.clone() for t in (nl[1].running_mean, nl[1].running_var)]
    refit_levels(nl, x, batch_size=16)
    assert nl.training and nl[1].training
    assert torch.equal(nl[1].running_mean, stats[0]) and torch.equal(nl[1].running_var, stats[1])
    with torch.no_grad():
        want = float(torch.relu(model.eval()[1](model[0](x))).max())
    assert nl[2].a_max == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("refit", [False, True])
def test_bskmq_finetuning_lowers_the_loss_in_a_few_steps(refit):
    x_tr, y_tr, _, _ = load_digits_split()
    x, y = torch.as_tensor(x_tr[:256]), torch.as_tensor(y_tr[:256])
    model = load_digits_cnn()
    nl = attach_nl_activations(model, 2, "bs_kmq", x)
    assert len([m for m in nl.modules() if isinstance(m, NLActivation)]) == 4
    hist = finetune(nl, (x, y), epochs=3, lr=1e-3, batch_size=32, refit=refit, calibration=x)
    assert hist["loss"][-1] < hist["loss"][0]
    assert len(hist["refit_mse"]) == (3 if refit else 0)


def test_recipe_fit_is_the_loop_cimsim_train_runs_and_leaves_a_deployable_twin():
    """``Recipe.fit`` (what the studies call) equals the steps written out: the same groups,
    epochs and seeds give the same weights; eval mode, the adapters merged, one loss per
    epoch."""
    from cimsim.train.loop import train_epoch
    from cimsim.train.methods import parse_method

    chip = _shifted(cimsim.load_chip("ideal"))
    x = torch.randn(24, 12, dtype=torch.float64).abs()
    y = torch.randint(0, 3, (24,))
    recipe = parse_method("raoq", {"bitaug_bits": "6"})

    def twin():
        prep = prepare(_mlp(), chip, x, seed=1)

        def base(a, b):
            return torch.nn.functional.cross_entropy(prep(a), b)

        return prep, base

    prep, base = twin()
    losses = recipe.fit(prep, base, (x, y), epochs=2, lr=1e-2, seed=3, batch_size=8)
    ref, ref_base = twin()
    opt = torch.optim.Adam(recipe.setup(ref, 1e-2, 3))
    loss_fn = recipe.loss(ref, ref_base)
    want = [train_epoch(ref, (x, y), loss_fn, opt, batch_size=8, seed=3, epoch=e,
                        progress=False) for e in range(2)]
    ref.eval()
    merge_lora(ref)
    assert losses == want
    assert not prep.training and not lora_parameters(prep)
    for (n, p), (m, q) in zip(prep.state_dict().items(), ref.state_dict().items(), strict=True):
        assert n == m and torch.equal(p, q), n


def test_unshifted_names_the_layers_whose_inputs_are_signed():
    """A-shift drives unsigned (post-ReLU) inputs shifted; a layer whose inputs are signed
    (zero point 0) is left as it was and named: here the first layer (raw signed inputs) and
    the third (after Linear without a ReLU); the second (after a ReLU) is shifted."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 6), nn.Linear(6, 3)
                          ).double().eval()
    x = torch.randn(64, 12, dtype=torch.float64)
    prep = prepare(model, _shifted(cimsim.load_chip("ideal")), x, seed=0)
    assert {name: t.zero_point for name, t in prep.twins()}["2"] < 0  # the shifted one
    assert unshifted(prep) == ["0", "3"]

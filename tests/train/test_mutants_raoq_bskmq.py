"""Tests from a mutation round over the papers' training methods on the twin:
``cimsim/train/raoq.py`` (W-reshape's kurtosis penalty, BitAug, the A-shift report),
``bskmq.py`` (the NL-ADC activation, its level refits, the chip fine-tuning),
``ternary.py`` (ColumnQuant option 3's ternary decomposition) and ``methods.py`` (the method
registry, ``parse_method`` and ``Recipe``).

Each test pins behaviour that a mutant of those files changed without any other test
noticing: known answers computed by hand from the formulas of the module docstrings and
docs/training.md, docs/levels.md and docs/columnquant.md where there is one, relations
(a gradient's path, a restored state, a refusal) otherwise. Toy models, tiny data, seeded.
"""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.adc.levels import fit_levels, quantization_mse
from cimsim.errors import ConfigError
from cimsim.train import prepare
from cimsim.train.raoq import (
    adc_bits,
    bitaug_loss,
    kurtosis,
    kurtosis_penalty,
    warn_unshifted,
    weight_stats,
)
from tests.conftest import bskmq_chip


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 6), nn.ReLU(),
                         nn.Linear(6, 3)).double().eval()


def _x(seed: int, m: int = 32, k: int = 12) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(m, k)))


def _shifted(chip: cimsim.ChipConfig) -> cimsim.ChipConfig:
    return chip.replace(dac=chip.dac.replace(shift_unsigned_inputs=True))


# ---------------------------------------------------------------------------------------------
# raoq.py: kurtosis and W-reshape
# ---------------------------------------------------------------------------------------------
def test_kurtosis_known_answers_are_scale_free():
    # [0, 0, 0, 4]: d = (-1, -1, -1, 3), m2 = 12/4 = 3, m4 = 84/4 = 21, K = 21/9
    w = torch.tensor([0.0, 0.0, 0.0, 4.0], dtype=torch.float64)
    assert float(kurtosis(w)) == pytest.approx(21 / 9, rel=1e-12)
    # a ratio of moments: the same for tiny weights (a variance below 1 is not clamped up)
    assert float(kurtosis(w * 1e-3)) == pytest.approx(21 / 9, rel=1e-9)
    assert float(kurtosis(torch.tensor([1.0, -1.0, 1.0, -1.0]))) == pytest.approx(1.0)


def test_kurtosis_penalty_is_lambda_times_the_sum_over_layers_of_squared_distances():
    """``weight · Σ_layers (Kurt(Q(W_l)) − target)²`` with K_T = 1.8 and λ = 0.1 by default
    (docs/training.md): the sum over the three matrices, not their mean, squared, scaled."""
    prep = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
    ks = [float(kurtosis(t.quantized_weight())) for _, t in prep.twins()]
    assert len(ks) == 3 and len({round(k, 6) for k in ks}) == 3
    want = 0.1 * sum((k - 1.8) ** 2 for k in ks)
    assert float(kurtosis_penalty(prep).detach()) == pytest.approx(want, rel=1e-10)
    want = 0.5 * sum((k - 2.5) ** 2 for k in ks)
    assert float(kurtosis_penalty(prep, target=2.5, weight=0.5).detach()) == pytest.approx(
        want, rel=1e-10)
    # a sequence of twins is accepted as well
    twins = [t for _, t in prep.twins()][:1]
    assert float(kurtosis_penalty(twins, weight=1.0).detach()) == pytest.approx((ks[0] - 1.8) ** 2)


def test_kurtosis_penalty_bounds_and_an_empty_model():
    prep = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
    assert float(kurtosis_penalty(prep, weight=0.0).detach()) == 0.0  # λ >= 0: zero is allowed
    with pytest.raises(ConfigError, match="target"):
        kurtosis_penalty(prep, target=1.0)  # K_T > 1, strictly
    with pytest.raises(ConfigError, match="weight"):
        kurtosis_penalty(prep, weight=-0.1)
    with pytest.raises(ConfigError, match="no mapped matrix"):
        kurtosis_penalty([])


def test_kurtosis_penalty_does_not_train_the_weight_scale():
    """The penalty reads the codes at the forward's scale, detached: it shapes the weights'
    distribution, it must not move the learned scale (which would trade the kurtosis for
    clipping)."""
    prep = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
    scales = [t.weight_scale for _, t in prep.twins()]
    assert all(s.requires_grad for s in scales)
    kurtosis_penalty(prep, weight=1.0).backward()
    assert all(s.grad is None or not s.grad.any() for s in scales)
    assert all(t.weight.grad is not None and t.weight.grad.any() for _, t in prep.twins())


def test_weight_stats_reports_the_twins_w_qmax():
    prep = prepare(_mlp(), cimsim.load_chip("ideal").replace(weight_bits=4), _x(0))
    assert [r["w_qmax"] for r in weight_stats(prep)] == [7, 7, 7]  # 2^(4-1) - 1


# ---------------------------------------------------------------------------------------------
# raoq.py: A-shift's report
# ---------------------------------------------------------------------------------------------
def _chain(n: int, relu_after_first: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(n):
        layers.append(nn.Linear(4, 4))
        if relu_after_first and i == 0:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).double().eval()


@pytest.mark.parametrize("n", [8, 9])
def test_warn_unshifted_names_eight_matrices_then_an_ellipsis(n):
    # without dac.shift_unsigned_inputs every matrix is left as it was
    prep = prepare(_chain(n), cimsim.load_chip("ideal"), _x(0, 16, 4))
    with pytest.warns(UserWarning, match="changes nothing on this model") as rec:
        warn_unshifted(prep)
    msg = str(rec[0].message)
    names = [name for name, _ in prep.twins()]
    assert ", ".join(names[:8]) in msg
    assert msg.endswith("...)") == (n > 8)


def test_warn_unshifted_counts_the_left_matrices_and_blames_the_callers_caller():
    """With some matrices shifted the warning counts the others; it points at the code that
    called ``Recipe.setup`` (stacklevel 3), not at methods.py."""
    from cimsim.train.methods import Recipe

    prep = prepare(_chain(3, relu_after_first=True), _shifted(cimsim.load_chip("ideal")),
                   _x(0, 16, 4))
    with pytest.warns(UserWarning, match="leaves 2 of 3 matrices as they were") as rec:
        Recipe(a_shift=True).setup(prep, 1e-3)
    assert rec[0].filename == __file__
    # nothing left unshifted: silent
    prep = prepare(_chain(1), cimsim.load_chip("ideal"), _x(0, 16, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Recipe(lora=True).setup(prep, 1e-3)  # no A-shift: no report either


# ---------------------------------------------------------------------------------------------
# raoq.py: BitAug
# ---------------------------------------------------------------------------------------------
def test_adc_bits_takes_1_to_24_bits_and_restores_an_outer_override():
    prep = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
    twins = [t for _, t in prep.twins()]
    for bits in (1, 24):
        with adc_bits(prep, bits):
            assert all(t.adc_bits_override == bits for t in twins)
    for bad in (0, 25):
        with pytest.raises(ConfigError, match="adc bits"), adc_bits(prep, bad):
            pass
    with adc_bits(prep, 7):
        with adc_bits(prep, 5):
            assert twins[0].adc_bits_override == 5
        assert all(t.adc_bits_override == 7 for t in twins)  # the outer block's, not None
    assert all(t.adc_bits_override is None for t in twins)


def test_adc_bits_refuses_if_any_twin_has_a_nonlinear_adc():
    lin = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
    ramp = prepare(nn.Sequential(nn.Linear(12, 16), nn.ReLU()).double(), bskmq_chip(), _x(0))
    mixed = [next(lin.twins())[1], next(ramp.twins())[1]]
    assert mixed[1].nonlinear_adc and not mixed[0].nonlinear_adc
    with pytest.raises(ConfigError, match="linear ADC"), adc_bits(mixed, 6):
        pass
    with adc_bits(mixed, None):  # the chip's own bits: allowed on any ADC
        pass


def _bits_loss(prep):
    """A loss whose value names the precision it ran at: 1 + bits (1 at the chip's)."""
    twin = next(prep.twins())[1]
    seen: list[int | None] = []

    def loss_fn(_x):
        seen.append(twin.adc_bits_override)
        return torch.tensor(1.0 + (twin.adc_bits_override or 0), dtype=torch.float64)

    return loss_fn, seen


def test_bitaug_sum_adds_each_precisions_loss_to_the_plain_one():
    prep = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
    loss_fn, seen = _bits_loss(prep)
    assert float(bitaug_loss(prep, loss_fn, (None,), [7, 8])) == 1 + 8 + 9
    assert float(bitaug_loss(prep, loss_fn, (None,), [])) == 1  # S empty: the plain loss
    assert float(bitaug_loss(prep, loss_fn, (None,), [], mode="sample")) == 1
    assert seen == [None, 7, 8, None, None]


def test_bitaug_sample_draws_every_precision_from_torchs_generator():
    prep = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
    loss_fn, seen = _bits_loss(prep)

    def draws(seed):
        seen.clear()
        torch.manual_seed(seed)
        vals = [float(bitaug_loss(prep, loss_fn, (None,), [5, 7, 8], mode="sample"))
                for _ in range(30)]
        return vals, list(seen[1::2])

    vals, picked = draws(3)
    assert set(picked) == {5, 7, 8}  # every one of S, the last included
    assert vals == [1 + 1 + b for b in picked]
    assert draws(3) == (vals, picked)  # seeded by torch's generator (train_epoch seeds it)
    rng_vals = [float(bitaug_loss(prep, loss_fn, (None,), [5, 7, 8], mode="sample",
                                  rng=random.Random(0))) for _ in range(3)]
    assert rng_vals == [1 + 1 + random.Random(0).choice([5, 7, 8])] * 3


# ---------------------------------------------------------------------------------------------
# bskmq.py: the float-weight NL-ADC activation
# ---------------------------------------------------------------------------------------------
def _relu_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).double()


def test_nl_activation_fit_uses_every_sample_below_the_cap():
    from cimsim.train.bskmq import NLActivation

    # 11 samples, the largest at index 9: a 10-sample subsample (linspace 0..10) drops it
    x = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 5.0, 0.9])
    act = NLActivation(2, "uniform")
    act.fit(x)
    assert act.a_max == 5.0
    torch.testing.assert_close(act.levels, torch.tensor([0.0, 5 / 3, 10 / 3, 5.0]))


def test_refit_levels_fits_the_relu_of_every_calibration_value():
    """Each activation is fitted to the post-ReLU values of the whole calibration set, cut in
    batches; the returned figure is the quantization MSE on those (non-negative) samples."""
    from cimsim.train.bskmq import attach_nl_activations

    model, x = _relu_net(), _x(1, 40, 4) * 2
    nl = attach_nl_activations(model, 2, "kmeans", x, batch_size=16)
    with torch.no_grad():
        h = torch.relu(model[0](x)).numpy().ravel()
    want = fit_levels(h, 2, "kmeans", lo=0.0, hi=float(h.max()))
    np.testing.assert_allclose(nl[1].levels.numpy(), want.levels, rtol=1e-6)  # float32 buffers
    assert nl[1].a_max == pytest.approx(float(h.max()))
    from cimsim.train.bskmq import refit_levels

    mse = refit_levels(nl, x, batch_size=16)["1"]
    assert mse == pytest.approx(quantization_mse(h, want), rel=1e-9)


def test_attach_passes_the_fitter_parameters_and_copies_the_model():
    """BS-KMQ without boundary suppression (``min_mass = 1``) is exact K-means (the docstring's
    example); the model handed in keeps its ReLUs."""
    from cimsim.train.bskmq import attach_nl_activations

    model, x = _relu_net(), _x(1, 40, 4) * 2
    plain = attach_nl_activations(model, 2, "bs_kmq", x, params={"min_mass": 1.0})
    exact = attach_nl_activations(model, 2, "kmeans_optimal", x)
    suppressed = attach_nl_activations(model, 2, "bs_kmq", x)
    torch.testing.assert_close(plain[1].levels, exact[1].levels)
    assert not torch.allclose(suppressed[1].levels, exact[1].levels)
    assert isinstance(model[1], nn.ReLU)
    with pytest.raises(ConfigError, match="no nn.ReLU"):
        attach_nl_activations(nn.Sequential(nn.Linear(4, 2)).double(), 2, "uniform", x)


def test_relu_model_restores_plain_relus_on_a_copy():
    from cimsim.train.bskmq import NLActivation, attach_nl_activations, relu_model

    model, x = _relu_net(), _x(1, 40, 4)
    nl = attach_nl_activations(model, 2, "uniform", x)
    back = relu_model(nl)
    assert isinstance(back[1], nn.ReLU) and isinstance(nl[1], NLActivation)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x))


def test_finetune_checks_its_data_and_leaves_the_model_in_eval():
    from cimsim.train.bskmq import attach_nl_activations, finetune

    model, x = _relu_net(), _x(1, 40, 4)
    y = (x[:, 0] > 0).long()
    nl = attach_nl_activations(model, 2, "uniform", x)
    with pytest.raises(ConfigError, match="data must be"):
        finetune(nl, (x,), epochs=1)
    with pytest.raises(ConfigError, match="calibration"):
        finetune(nl, (x, y), epochs=1, refit=True)
    nl.train()
    hist = finetune(nl, (x, y), epochs=2, batch_size=16, refit=True, calibration=x)
    assert not nl.training and len(hist["refit_mse"]) == 2


# ---------------------------------------------------------------------------------------------
# bskmq.py: on the chip
# ---------------------------------------------------------------------------------------------
def _fused_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3)).double()


def test_refit_chip_levels_refuses_empty_calibration():
    from cimsim.train.bskmq import prepare_bskmq, refit_chip_levels

    prep = prepare_bskmq(_fused_mlp(), bskmq_chip(), _x(0, 64))
    with pytest.raises(ConfigError, match="calibration is empty"):
        refit_chip_levels(prep, _x(0, 64)[:0])


def test_refit_chip_levels_records_without_the_training_noise():
    """The pass runs in eval mode (noise off): a model left training refits exactly as one in
    eval, and keeps its mode."""
    from cimsim.train.bskmq import fused_twins, prepare_bskmq, refit_chip_levels

    chip = bskmq_chip()
    chip = chip.replace(noise=chip.noise.replace(read_noise_rel=0.2))
    x = _x(0, 64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 3)).double()
    a = prepare_bskmq(model, chip, x, level_fit="kmeans")
    b = prepare_bskmq(model, chip, x, level_fit="kmeans")
    a.eval()
    b.train()
    na, nb = refit_chip_levels(a, x), refit_chip_levels(b, x)
    assert b.training and list(na) == ["0", "2"] and na == pytest.approx(nb, rel=1e-12)
    # the second layer's inputs are the first's outputs: noisy in training mode
    la, lb = fused_twins(a)["2"].activation_levels(), fused_twins(b)["2"].activation_levels()
    np.testing.assert_array_equal(la.levels, lb.levels)


def test_activation_nmse_is_the_mse_against_the_relu_over_its_variance():
    from cimsim.train.bskmq import activation_nmse, fused_twins, prepare_bskmq

    x = _x(0, 64)
    prep = prepare_bskmq(_fused_mlp(), bskmq_chip(bits=2), x)
    twin = fused_twins(prep)["0"]
    twin.eval()
    with torch.no_grad():
        y, raw = twin.pre_activation(x)
        q = twin._activation_out(y, raw).double()
    ref = torch.relu(y.double())
    want = float(((q - ref) ** 2).mean() / ref.var())
    assert (y < 0).any() and 0 < want < 1
    assert activation_nmse(twin, x.numpy()) == pytest.approx(want, rel=1e-12)
    assert not twin.training  # its mode restored (eval here)
    twin.train()
    activation_nmse(twin, x.numpy())
    assert twin.training


def test_finetune_chip_refits_with_the_method_asked_for():
    from cimsim.train.bskmq import finetune_chip, fused_twins, prepare_bskmq

    x = _x(0, 64)
    y = (x[:, 0] > 0).long()
    prep = prepare_bskmq(_fused_mlp(), bskmq_chip(), x)  # the chip's fitter: bs_kmq
    finetune_chip(prep, (x, y), epochs=1, batch_size=32, refit=True, calibration=x,
                  method="uniform")
    lv = fused_twins(prep)["0"].activation_levels()
    np.testing.assert_allclose(np.diff(lv.levels[0]), lv.a_max[0] / 7, rtol=1e-9)


class _SeqFirst(nn.Module):
    """(T, B, 12) -> (B, 3): a time-major model (batch_dim 1)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.relu, self.fc2 = nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x))).mean(dim=0)


def test_finetune_chip_cuts_a_sequence_first_model_along_its_batch():
    """x (T, B, F) is cut along B, the labels y (B,) with it (it was cut along time)."""
    from cimsim.train.bskmq import finetune_chip, fused_twins, prepare_bskmq

    torch.manual_seed(0)
    x = torch.randn(5, 16, 12, dtype=torch.float64)
    y = (x.mean(dim=0)[:, 0] > 0).long()
    prep = prepare_bskmq(_SeqFirst().double(), bskmq_chip(), x, batch_dim=1)
    assert list(fused_twins(prep)) == ["fc1"]
    hist = finetune_chip(prep, (x, y), epochs=1, batch_size=8)
    assert len(hist["loss"]) == 1 and np.isfinite(hist["loss"][0])


@pytest.mark.filterwarnings("ignore:prepare:UserWarning")  # the full-scale ADC's code use
@pytest.mark.parametrize("change, named", [
    ({"placement": "partial_sum"}, "adc.placement = 'partial_sum'"),
    ({"kind": "sar", "range_policy": "full_scale"}, "adc.range_policy = 'full_scale'"),
])
def test_no_fused_reason_names_the_chip_setting_that_is_wrong(change, named):
    from cimsim.train.bskmq import prepare_bskmq

    chip = bskmq_chip()
    chip = chip.replace(adc=chip.adc.replace(**change))
    with pytest.raises(ConfigError, match="BS-KMQ needs") as err:
        prepare_bskmq(_fused_mlp(), chip, _x(0, 64))
    assert named in str(err.value) and str(err.value).count(" = ") == 4  # it alone, + needs


def test_no_fused_reason_counts_the_mapped_layers_past_eight():
    from cimsim.train.bskmq import prepare_bskmq

    for n, tail in ((9, ", ... (9 in all)"), (8, "7")):
        with pytest.raises(ConfigError, match="no mapped layer") as err:
            prepare_bskmq(_chain(n), bskmq_chip(), _x(0, 16, 4))
        assert str(err.value).endswith(tail)


# ---------------------------------------------------------------------------------------------
# ternary.py: ColumnQuant option 3
# ---------------------------------------------------------------------------------------------
def _ternary_chip(**quant):
    """The ideal chip with binary cells in balanced-ternary pairs, a 24-bit full-scale ADC
    (every conversion exact), 8-row arrays (test_ternary.py's lossless chip)."""
    from cimsim.train.columnquant import with_decomposition

    ideal = cimsim.load_chip("ideal")
    chip = ideal.replace(weight_bits=4, input_bits=4,
                         array=ideal.array.replace(n_rows=8, n_cols=16),
                         quant=ideal.quant.replace(weight_granularity="column", **quant))
    return with_decomposition(chip, "ternary")


def _ternary_twin(granularity="column", seed=1, weight=None):
    from cimsim.train.ternary import make_ternary

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 6)).double()
    if weight is not None:
        with torch.no_grad():
            model[0].weight.copy_(weight)
    x = torch.rand(24, 20, dtype=torch.float64)
    prep = prepare(model, _ternary_chip(), x)
    twin = make_ternary(dict(prep.twins())["0"], granularity)
    return prep.eval(), twin, x


def _grads(twin, x, g):
    names = ("alpha", "act_scale", "weight", "bias")
    for n in names:
        getattr(twin, n).grad = None
    (twin(x) * g).sum().backward()
    return {n: getattr(twin, n).grad.clone() for n in names}


def test_chip_forward_gradients_are_the_exact_products():
    """On a chip whose conversions are exact (dyadic α), the chip path's value is the
    lossless product's, and so is its gradient: the α reach the loss only through the soft
    assignment (the conversions' weights are detached), the input scale once through the
    conversions and once through the straight-through product's inputs."""
    _, twin, x = _ternary_twin()
    with torch.no_grad():
        twin.alpha.copy_((2.0 ** -torch.randint(1, 6, twin.alpha.shape)).double())
    g = torch.from_numpy(np.random.default_rng(2).normal(size=(24, 6)))
    chip = _grads(twin, x, g)
    twin.lossless = True
    exact = _grads(twin, x, g)
    twin.lossless = False
    assert chip["alpha"].abs().sum() > 0 and chip["act_scale"].abs().sum() > 0
    for n in exact:
        torch.testing.assert_close(chip[n], exact[n], rtol=1e-10, atol=1e-12, msg=n)


def test_alpha_and_input_scale_gradients_carry_their_lsq_factors(monkeypatch):
    import cimsim.train.ternary as ternary
    from cimsim.train.ste import lsq_factor

    _, twin, x = _ternary_twin(granularity="layer")
    g = torch.from_numpy(np.random.default_rng(2).normal(size=(24, 6)))
    scaled = _grads(twin, x, g)
    factor = twin._alpha_grad.clone()
    twin._alpha_grad.fill_(1.0)
    monkeypatch.setattr(ternary, "lsq_factor", lambda *_: 1.0)
    plain = _grads(twin, x, g)
    torch.testing.assert_close(scaled["alpha"], plain["alpha"] * factor)
    torch.testing.assert_close(scaled["act_scale"],
                               plain["act_scale"] * lsq_factor(x.numel(), twin.x_hi))
    assert float(factor.reshape(-1)[0]) != 1.0 and lsq_factor(x.numel(), twin.x_hi) != 1.0


def test_all_zero_weights_start_the_alphas_at_powers_of_two():
    """mean|w| = 0 would give α = 0 (every level 0, the snap stuck): the init takes 1 for
    the mean, α_i = 2^(−i)."""
    with pytest.warns(UserWarning, match="weights are all zero"):
        _, twin, _ = _ternary_twin(granularity="layer", weight=torch.zeros(6, 20))
    torch.testing.assert_close(twin.alpha.detach().reshape(-1),
                               torch.tensor([1.0, 0.5, 0.25, 0.125], dtype=torch.float64))


def test_make_ternary_refuses_what_it_does_not_model():
    from cimsim.train.ternary import make_ternary

    x = torch.rand(24, 20, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(20, 6)).double()

    def twin_on(chip):
        return dict(prepare(model, chip, x).twins())["0"]

    with pytest.raises(ConfigError, match="weight_scale = 'channel'"):
        make_ternary(twin_on(_ternary_chip()), "channel")
    with pytest.raises(ConfigError, match="act_zero_point"):
        make_ternary(twin_on(_ternary_chip(act_zero_point=True)), "layer")
    with pytest.raises(ConfigError, match="smooth_alpha"):
        make_ternary(twin_on(_ternary_chip(smooth_alpha=0.5)), "layer")
    with pytest.raises(ConfigError, match="block_fp"):
        make_ternary(twin_on(_ternary_chip(act_format="block_fp")), "layer")
    chip = _ternary_chip()
    ramp = chip.replace(adc=chip.adc.replace(kind="ramp", bits=4, range_policy="calibrated"))
    with pytest.raises(ConfigError, match="linear ADC"):
        make_ternary(twin_on(ramp), "layer")
    with pytest.raises(ConfigError, match="shift_unsigned_inputs"):
        relu = nn.Sequential(nn.Linear(20, 6), nn.ReLU(), nn.Linear(6, 3)).double()
        make_ternary(dict(prepare(relu, _shifted(chip), x).twins())["2"], "layer")


# ---------------------------------------------------------------------------------------------
# methods.py: the registry
# ---------------------------------------------------------------------------------------------
def test_parse_method_defaults_are_the_documented_ones():
    """docs/training.md: kurtosis_target 1.8, kurtosis_weight 0.1, bitaug_mode sum, lora_rank 4,
    lora_alpha = rank (None); ``raoq`` is all four parts; the base defaults to ``qat``."""
    from cimsim.train.methods import parse_method

    r = parse_method("raoq")
    assert (r.base, r.kurtosis_target, r.kurtosis_weight, r.bitaug_mode, r.lora_rank,
            r.lora_alpha, r.bitaug_bits, r.bskmq_refit) == ("qat", 1.8, 0.1, "sum", 4, None,
                                                             (), False)
    assert r.raoq_parts == ("a-shift", "w-reshape", "bitaug", "lora")
    assert parse_method("w-reshape").raoq_parts == ("w-reshape",)
    assert parse_method("distill+lora").raoq_parts == ("lora",)


@pytest.mark.parametrize("text", ["qat+distill", "bskmq+bitaug", "bskmq+raoq", "bskmq+pim-qat",
                                  "columnquant+bskmq", "", "qat+foo"])
def test_parse_method_refuses_bad_combinations(text):
    from cimsim.train.methods import parse_method

    with pytest.raises(ConfigError, match="--method"):
        parse_method(text)


@pytest.mark.parametrize("method, key, value, want", [
    ("w-reshape", "kurtosis_target", "1.0001", 1.0001),
    ("w-reshape", "kurtosis_weight", "0", 0.0),
    ("bitaug", "bitaug_bits", "24", (24,)),
    ("bitaug", "bitaug_bits", "7 8", (7, 8)),
    ("bitaug", "bitaug_bits", "1,2", (1, 2)),
    ("lora", "lora_rank", "1", 1),
    ("bskmq", "bskmq_refit", "TRUE", True),
    ("bskmq", "bskmq_refit", "False", False),
])
def test_parse_method_takes_options_at_their_bounds(method, key, value, want):
    from cimsim.train.methods import parse_method

    assert getattr(parse_method(method, {key: value}), key) == want


@pytest.mark.parametrize("method, key, value", [
    ("w-reshape", "kurtosis_target", "1"),
    ("w-reshape", "kurtosis_target", "inf"),
    ("w-reshape", "kurtosis_weight", "-0.5"),
    ("w-reshape", "kurtosis_weight", "nan"),
    ("bitaug", "bitaug_bits", ""),
    ("bitaug", "bitaug_bits", "25"),
    ("bitaug", "bitaug_bits", "0"),
    ("bitaug", "bitaug_mode", "all"),
    ("lora", "lora_rank", "0"),
    ("lora", "lora_alpha", "inf"),
    ("lora", "lora_alpha", "0"),
    ("bskmq", "bskmq_refit", "maybe"),
    ("qat", "lora_rank", "2"),  # an option of a part the method lacks
    ("raoq", "bskmq_refit", "true"),
])
def test_parse_method_refuses_options_out_of_bounds(method, key, value):
    from cimsim.train.methods import parse_method

    with pytest.raises(ConfigError, match=f"--option {key}"):
        parse_method(method, {key: value})


def test_recipe_chip_and_bits_set():
    from cimsim.train.methods import Recipe

    chip = cimsim.load_chip("ideal")
    six = chip.replace(adc=chip.adc.replace(bits=6))
    assert Recipe().chip(six) is six  # no A-shift: the chip as given
    assert Recipe(a_shift=True).chip(six).dac.shift_unsigned_inputs
    assert Recipe(bitaug=True).bits_set(six) == (7, 8)
    assert Recipe(bitaug=True, bitaug_bits=(3,)).bits_set(six) == (3,)
    b23 = chip.replace(adc=chip.adc.replace(bits=23))
    assert Recipe(bitaug=True).bits_set(b23) == (24,)  # 24 bits is an ADC's most, allowed
    b24 = chip.replace(adc=chip.adc.replace(bits=24))
    assert Recipe().bits_set(b24) == ()  # without BitAug the empty set is no error
    with pytest.raises(ConfigError, match="bitaug_bits"):
        Recipe(bitaug=True).bits_set(b24)
    with pytest.raises(ConfigError, match="linear ADC"):
        Recipe(bitaug=True).chip(bskmq_chip())
    assert Recipe(w_reshape=True).chip(bskmq_chip()).adc.kind.value == "ramp"


@pytest.mark.filterwarnings("ignore:prepare:UserWarning")  # a 6-bit ADC: only the bits matter
def test_recipe_loss_adds_each_parts_term():
    from cimsim.train.methods import Recipe

    prep = prepare(_mlp(), cimsim.load_chip("ideal").replace(
        adc=cimsim.load_chip("ideal").adc.replace(bits=6)), _x(0))
    base, seen = _bits_loss(prep)
    assert float(Recipe().loss(prep, base)(None)) == 1.0
    assert float(Recipe(bitaug=True).loss(prep, base)(None)) == 1 + 8 + 9  # B+1, B+2
    seen.clear()
    torch.manual_seed(0)
    Recipe(bitaug=True, bitaug_mode="sample").loss(prep, base)(None)
    assert len(seen) == 2  # the plain loss and one sampled precision
    r = Recipe(w_reshape=True, kurtosis_target=2.5, kurtosis_weight=0.3)
    want = 1.0 + float(kurtosis_penalty(prep, target=2.5, weight=0.3).detach())
    assert float(r.loss(prep, base)(None).detach()) == pytest.approx(want, rel=1e-12)


def test_recipe_setup_seeds_the_adapters():
    from cimsim.train.lora import add_lora
    from cimsim.train.methods import Recipe

    a = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
    b = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
    Recipe(lora=True, lora_rank=2).setup(a, 1e-3, seed=7)
    add_lora(b, 2, None, seed=7)
    for (_, ta), (_, tb) in zip(a.twins(), b.twins(), strict=True):
        assert torch.equal(ta.lora.A, tb.lora.A)


@pytest.mark.parametrize("bskmq, refit, calls", [(True, True, 2), (True, False, 0),
                                                 (False, True, 0)])
def test_recipe_fit_refits_only_bskmq_on_the_calibration_given(monkeypatch, bskmq, refit,
                                                               calls):
    import cimsim.train.methods as methods

    got: list = []
    monkeypatch.setattr(methods, "refit_chip_levels",
                        lambda prep, cal, **kw: got.append((cal, kw)))
    prep = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
    x, cal = _x(1, 16), _x(2, 8)
    y = (x[:, 0] > 0).long()
    recipe = methods.Recipe(bskmq=bskmq, bskmq_refit=refit)

    def base(a, b):
        return nn.functional.cross_entropy(prep(a), b)

    recipe.fit(prep, base, (x, y), epochs=2, lr=1e-3, batch_size=8, calibration=cal)
    assert len(got) == calls
    for c, kw in got:
        assert c is cal and kw == {"batch_size": 8}


@pytest.mark.parametrize("readout", ["analog", "digital"])
def test_conversion_weights_are_the_alphas_of_each_slice(readout):
    """Digit i's conversions are weighted by α_i: one merged column per slice (analog
    differential readout, +α_i) or a (+, −) pair per slice (digital, +α_i and −α_i)."""
    from cimsim.train.ternary import make_ternary

    chip = _ternary_chip().replace(differential_readout=readout)
    torch.manual_seed(0)
    x = torch.rand(24, 20, dtype=torch.float64)
    twin = make_ternary(dict(prepare(nn.Sequential(nn.Linear(20, 6)).double(), chip,
                                     x).twins())["0"], "layer")
    a = twin.alpha.detach().reshape(-1)
    one = a if readout == "analog" else torch.stack([a, -a], dim=1).reshape(-1)
    want = one.repeat(twin.n_outputs).expand(twin.n_groups, -1)
    torch.testing.assert_close(twin.conversion_coef(twin.alpha), want, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# Real bugs found in the round (these fail on the code as it is)
# ---------------------------------------------------------------------------------------------
class TestWReshapeOnTernaryTwins:
    """``parse_method('columnquant+w-reshape')`` is accepted (the offset and differential
    decompositions have a uniform grid), and W-reshape is documented as the kurtosis of the
    quantized weights "with the straight-through Q the twin uses". On option 3's
    :class:`TernaryTwin` the forward's Q is the snap to Σ c_i·α_i, whose codes are
    balanced-ternary indices (Σ c_i·3^i), not weights; ``quantized_weight_ste`` read the
    uniform grid ``round(clamp(w / s, ±w_qmax))`` at the weight scale ``make_ternary`` froze
    and the forward never uses: the penalty drove codes (±7 here) that were not the chip's
    (penalty 0.0065 at λ = 1 where ``weight_stats``' kurtosis 3.73 gives (3.73 − 1.8)² = 3.72).
    It is refused now, naming the layer, in the penalty and before any training step."""

    def test_the_penalty_and_its_codes_are_refused_naming_the_layer(self):
        from cimsim.train.raoq import quantized_weight_ste

        prep, twin, _ = _ternary_twin()
        with pytest.raises(ConfigError, match=r"W-reshape: layer '0' stores ternary"):
            kurtosis_penalty(prep, weight=1.0)
        with pytest.raises(ConfigError, match=r"W-reshape: layer '0' stores ternary"):
            quantized_weight_ste(twin)

    def test_a_recipe_with_w_reshape_is_refused_before_any_step(self):
        from cimsim.train.methods import parse_method

        prep, _, _ = _ternary_twin()
        recipe = parse_method("columnquant+w-reshape")
        with pytest.raises(ConfigError, match=r"drop w-reshape, or use the offset or "
                                              r"differential decomposition"):
            recipe.setup(prep, lr=1e-3)
        parse_method("columnquant+a-shift").setup(prep, lr=1e-3)  # the others still set up

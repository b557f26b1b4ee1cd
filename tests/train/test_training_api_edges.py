"""Edges of the training API a hunt over its documented behaviour found (2026-12-04): a list
of equal batches for BatchNorm calibration, BS-KMQ's level refit under ``Recipe.fit``, a
refused ``Recipe.fit`` that left LoRA adapters attached, a failed BS-KMQ fine-tuning left in
training mode, and the CLI's words for ``--bn-calibration 0``."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.cli import main
from cimsim.errors import ConfigError
from cimsim.train import calibrate_bn, prepare
from cimsim.train.bskmq import finetune_chip, fused_twins, prepare_bskmq
from cimsim.train.loop import param_groups
from cimsim.train.methods import parse_method
from tests.mapping.test_fused_activation import _Untraceable


def _bskmq_chip() -> cimsim.ChipConfig:
    """A 3-b ramp NL-ADC at the layer output, fused with the ReLU, on small ideal arrays."""
    ideal = cimsim.load_chip("ideal")
    return ideal.replace(weight_bits=4, dac=ideal.dac.replace(bits=None),
                         device=ideal.device.replace(bits_per_cell=3),
                         array=ideal.array.replace(n_rows=64, n_cols=64),
                         adc=ideal.adc.replace(kind="ramp", bits=3, range_policy="calibrated",
                                               level_fit="bs_kmq", placement="layer_output"))


def _mlp(n_in: int = 12, n_out: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(n_in, 16), nn.ReLU(), nn.Linear(16, n_out))


def test_a_list_of_equal_batches_calibrates_on_every_batch():
    """It was read as (inputs, labels): every batch after the first dropped, silently."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    x = torch.randn(16, 4)
    calibrate_bn(model, x, batch_size=8)
    from_tensor = model[1].running_mean.clone()
    for batches in ([x[:8], x[8:]], (x[:8], x[8:])):
        calibrate_bn(model, batches)
        assert torch.allclose(model[1].running_mean, from_tensor)
        assert int(model[1].num_batches_tracked) == 2
    # (inputs, labels): the labels differ in shape and are not fed to the model
    calibrate_bn(model, (x, torch.zeros(16, dtype=torch.long)), batch_size=8)
    assert torch.allclose(model[1].running_mean, from_tensor)


def test_recipe_fit_refits_the_levels_with_bskmq_refit():
    """``bskmq_refit=true`` was accepted by parse_method and ignored by Recipe.fit (the levels
    stayed frozen; cimsim train refit them after every epoch)."""
    warnings.simplefilter("ignore")
    x = torch.randn(128, 12, generator=torch.Generator().manual_seed(1))
    y = (x[:, 0] > 0).long()
    levels = {}
    for refit in ("true", "false"):
        recipe = parse_method("bskmq", {"bskmq_refit": refit})
        prep = prepare_bskmq(_mlp(), recipe.chip(_bskmq_chip()), x)
        before = fused_twins(prep)["0"].activation_levels().levels.copy()
        recipe.fit(prep, lambda xb, yb, p=prep: F.cross_entropy(p(xb), yb), (x, y),
                   epochs=2, lr=1e-2)
        levels[refit] = (before, fused_twins(prep)["0"].activation_levels().levels)
    assert not np.array_equal(*levels["true"])
    assert np.array_equal(*levels["false"])


def test_a_refused_fit_attaches_nothing():
    """BitAug's precisions were checked after setup attached LoRA adapters: the retry with the
    fix the message names failed on 'already has a LoRA adapter'."""
    warnings.simplefilter("ignore")
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    chip = cimsim.load_chip("ideal")  # a 24-bit ADC: no B+1, B+2
    prep = prepare(_mlp(8), chip, x)

    def loss(xb, yb):
        return F.cross_entropy(prep(xb), yb)

    with pytest.raises(ConfigError, match="bitaug_bits"):
        parse_method("qat+bitaug+lora").fit(prep, loss, (x, y), epochs=1, lr=1e-3)
    assert all(getattr(t, "lora", None) is None for _, t in prep.twins())
    assert all(t.weight.requires_grad for _, t in prep.twins())
    parse_method("qat+bitaug+lora", {"bitaug_bits": "7,8"}).fit(
        prep, loss, (x, y), epochs=1, lr=1e-3)


def test_a_failed_bskmq_finetuning_leaves_the_model_in_eval():
    warnings.simplefilter("ignore")
    x = torch.randn(64, 12)
    y = (x[:, 0] > 0).long()
    prep = prepare_bskmq(_mlp(), _bskmq_chip(), x).eval()
    with pytest.raises(ConfigError, match="diverged"):
        finetune_chip(prep, (x, y), epochs=1,
                      loss_fn=lambda xb, yb: prep(xb).sum() * float("nan"))
    assert not prep.training
    assert not any(t.training for _, t in prep.twins())


def test_bn_calibration_names_zero_as_off(capsys, tmp_path):
    assert main(["train", "--model", "demo", "--chip", "ideal", "--epochs", "1",
                 "--bn-calibration", "-1", "--out", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err
    assert "or 0 (off, the default)" in err and "all inputs" not in err


def test_deploy_carries_the_learned_tables_to_another_converter_of_the_same_ranges():
    """A calibrated chip that differs in the converter's own errors or noise, or a flash for a
    SAR, was refused ('needs calibration'), though its ranges are the twin's learned ones; a
    nonlinear (ramp) converter still needs its own levels."""
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    x = torch.randn(32, 8)
    chip = cimsim.load_chip("rram-22nm")
    assert chip.adc.range_policy.value == "calibrated"
    prep = prepare(_mlp(8), chip, x).eval()
    own = prep.deploy()(x)
    flash = prep.deploy(chip=chip.replace(adc=chip.adc.replace(kind="flash")))(x)
    assert torch.equal(flash, own)  # one grid, one seed: the same conversions
    for adc in (chip.adc.replace(comparator_noise_lsb=0.5), chip.adc.replace(gain_error=0.01)):
        assert not torch.equal(prep.deploy(chip=chip.replace(adc=adc))(x), own)
    ramp = chip.replace(adc=chip.adc.replace(kind="ramp", bits=4))
    with pytest.raises(ConfigError, match="need a calibration pass"):
        prep.deploy(chip=ramp)


def test_deploy_at_other_adc_bits_carries_the_learned_range_on_the_new_grid():
    """Sweeping a trained model's ADC bits on a chip of calibrated ranges (rram-22nm) was
    refused as 'needs calibration', which named nothing deploy(chip=) takes. A calibrated range
    is the data's: at other bits the learned range is carried on the new grid, as the twin
    computes it at those bits (raoq.adc_bits, the adc_bits_override hook): noise off, the
    deployed model equals the twin there. Another calibrated ADC still needs a calibration
    pass, and the error names the ways to one."""
    from cimsim.train.raoq import adc_bits

    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    rram = cimsim.load_chip("rram-22nm")
    # no programming variation: the engine multiplies varied conductances in float32, whose
    # ties on a code boundary grow with the bits (as at the chip's own bits: docs)
    chip = rram.replace(noise=rram.noise.replace(thermal_sigma_lsb=0.0),
                        device=rram.device.replace(variation_sigma=0.0))
    assert chip.adc.range_policy.value == "calibrated" and chip.adc.bits == 6
    prep = prepare(_mlp(8), chip, x, seed=0).eval()
    with torch.no_grad():  # learned steps away from the calibrated ones
        for _, twin in prep.twins():
            twin.adc_step.mul_(1.1)
    outs = {}
    for bits in (3, 4, 8, 12):
        sim = prep.deploy(chip=chip.replace(adc=chip.adc.replace(bits=bits)))
        with torch.no_grad(), adc_bits(prep, bits):
            twin_out = prep(x)
        torch.testing.assert_close(sim(x), twin_out, rtol=1e-6, atol=1e-6)
        outs[bits] = twin_out
    assert not torch.equal(outs[3], outs[8])  # the bits do change the conversions
    other = chip.replace(adc=chip.adc.replace(bits=4, percentile=99.0))
    with pytest.raises(ConfigError, match=r"in adc\.bits, adc\.percentile: .*"
                       r"cimsim\.deploy\(prepared\.float_model\(\), chip, calibration\)"):
        prep.deploy(chip=other)
    ramp = prepare(_mlp(8), chip.replace(adc=chip.adc.replace(kind="ramp", bits=4)), x).eval()
    with pytest.raises(ConfigError, match=r"a nonlinear converter's levels are fitted at the "
                       r"twin's bits: .*allowed: the twin's ADC settings .*, or 'full_scale'"):
        ramp.deploy(chip=ramp.chip.replace(adc=ramp.chip.adc.replace(bits=3)))
    # a time is refused by its name, before anything is programmed
    with pytest.raises(ConfigError, match=r"^t_inference_s = -1\.0 is invalid"):
        prep.deploy(t_inference_s=-1.0)


@pytest.mark.parametrize("lr", [0.0, float("nan"), -1e-3])
def test_param_groups_refuses_a_rate_that_cannot_train(lr):
    """Recipe.fit, distill and the CLI refuse these; param_groups put them in the groups."""
    prep = prepare(_mlp(8), cimsim.load_chip("ideal"), torch.randn(8, 8))
    with pytest.raises(ConfigError, match="lr"):
        param_groups(prep, lr)


def test_the_twin_refuses_a_fallback_fused_layer_called_outside_its_sequential():
    """prepare fused such a layer with its Sequential's ReLU as deploy did, without deploy's
    guard: the skip connection trained on the clamped output."""
    warnings.simplefilter("ignore")
    ideal = cimsim.load_chip("ideal")
    chip = ideal.replace(dac=ideal.dac.replace(bits=None),
                         device=ideal.device.replace(bits_per_cell=7),
                         array=ideal.array.replace(n_rows=64, n_cols=64),
                         adc=ideal.adc.replace(bits=8, range_policy="calibrated",
                                               placement="layer_output"))
    torch.manual_seed(0)
    x = torch.randn(32, 8)
    skip = _Untraceable(nn.Sequential(nn.Linear(8, 8), nn.ReLU()), skip=True)
    prep = prepare(skip, chip, x)
    with pytest.raises(cimsim.errors.MappingError, match="fuse_activation = false"):
        prep(x)
    inside = prepare(_Untraceable(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))),
                     chip, x).eval()
    torch.testing.assert_close(inside(x), inside.deploy()(x), rtol=1e-6, atol=1e-6)


def test_a_loaded_state_dict_brings_its_seed():
    """A twin's state dict holds its programmed-device draws; loaded into a twin prepared with
    another seed, the eval twin computed with the saved devices while deploy() programmed the
    other seed's (0.06 apart on rram-22nm, without a word). The seed travels with the draws."""
    rram = cimsim.load_chip("rram-22nm")
    chip = rram.replace(noise=rram.noise.replace(thermal_sigma_lsb=0.0))  # deterministic
    model, x = _mlp(20, 6).double(), torch.randn(16, 20, dtype=torch.float64)
    a = prepare(model, chip, calibration=x, seed=0)
    b = prepare(model, chip, calibration=x, seed=1)
    b.load_state_dict(a.state_dict())
    assert b.seed == 0
    assert [t.seed for _, t in b.twins()] == [t.seed for _, t in a.twins()]
    b.eval()
    with torch.no_grad():
        assert torch.equal(b(x), b.deploy()(x))
    big = prepare(model, chip, calibration=x, seed=2**64 - 1)  # the largest seed, two words
    b.load_state_dict(big.state_dict())
    assert b.seed == 2**64 - 1 and all(isinstance(v, torch.Tensor)
                                       for v in b.state_dict().values())
    with pytest.raises(ConfigError, match=r"_prepare_seed = \[-1, 0\] in the state dict is "
                                          "invalid"):
        b.load_state_dict({**a.state_dict(), "_prepare_seed": torch.tensor([-1, 0])})


def test_an_empty_batch_stays_in_the_graph():
    """An expert no token was routed to, or an empty last batch: the twin's empty output is
    in the autograd graph as the float layer's is (a loss of empty batches only failed in
    backward: 'element 0 of tensors does not require grad')."""
    from torch import nn

    from cimsim.train import prepare

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    x = torch.randn(64, 20)
    assert model(x[:0]).requires_grad
    prepared = prepare(model, "ideal", calibration=x, seed=0)
    prepared.train()
    y = prepared(x[:0])
    assert y.shape == (0, 5) and y.requires_grad
    y.sum().backward()
    xs = x[:0].clone().requires_grad_(True)
    prepared(xs).sum().backward()
    assert xs.grad is not None and xs.grad.shape == (0, 20)


def test_a_zero_initialised_layer_learns_codes_in_the_twin():
    """A zero-initialised branch (ControlNet's zero conv, LoRA's B, ReZero) has no weight scale;
    at deploy's fallback step of 1.0 the weights its float copy learned (about 0.3) all
    rounded to code 0 and the layer never left its bias. The twin starts the step at torch's
    default initial range for the fan-in, so the learned weights take codes."""
    import torch.nn.functional as F

    from cimsim.train import param_groups

    class ZeroBranch(nn.Module):
        def __init__(self):
            super().__init__()
            self.c0, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 4)
            self.z = nn.Conv2d(8, 8, 1)
            nn.init.zeros_(self.z.weight)
            nn.init.zeros_(self.z.bias)

        def forward(self, x):
            h = F.relu(self.c0(x))
            return self.fc((h + self.z(h)).mean((2, 3)))

    torch.manual_seed(0)
    x, y = torch.randn(32, 3, 16, 16), torch.randint(0, 4, (32,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the all-zero weights' warning
        prep = prepare(ZeroBranch().eval(), "ideal", calibration=x, seed=0)
    twin = prep.model.z.twins[0]
    assert float(twin.weight_scale.max()) == pytest.approx(1 / math.sqrt(8) / 127)
    opt = torch.optim.Adam(param_groups(prep, lr=1e-2))
    for _ in range(30):
        loss = F.cross_entropy(prep(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert int((twin.quantized_weight() != 0).sum()) > 32  # of 64 (it was 0)



def test_prepare_names_matrices_whose_codes_do_not_follow_their_inputs():
    """Deploy warned of matrices whose every conversion reads one code (full-scale 4-b
    converters far wider than the signal); prepare did not: a model trained there, its
    outputs the same for every input, for epochs without a word. It warns as deploy does, on
    the same matrices; a chip whose codes follow the signal is not warned about."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    x = torch.rand(32, 16)
    chip = cimsim.load_chip("rram-22nm")
    wide = chip.replace(adc=chip.adc.replace(bits=4, range_policy="full_scale"),
                        noise=chip.noise.replace(thermal_sigma_lsb=0.0))
    with pytest.warns(UserWarning, match=r"deploy: 2 matrices convert every calibration input "
                                         r"to one ADC code.*'0', '2'"):
        cimsim.deploy(model, wide, x, seed=0)
    with pytest.warns(UserWarning, match=r"prepare: 2 matrices convert every calibration "
                                         r"input to one ADC code.*'0', '2'"):
        prep = prepare(model, wide, x)
    with torch.no_grad():
        y = prep.eval()(x)
    assert torch.equal(y, y[:1].expand_as(y))  # the same output for every input
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare(model, chip, x)


@pytest.mark.parametrize("seed", [-1, 2**64, True, 1.0, "0"])
def test_the_training_entry_points_check_their_seed_as_deploy_does(seed):
    """Recipe.fit, train_epoch (epoch_seed), add_lora and recalibrate_adcs passed the seed on
    unchecked: -1 failed in NumPy naming no argument, True trained as seed 1, 2**64 failed in
    torch, and add_lora drew the same adapters for -1 as for 2**64 - 1. A ConfigError names
    the seed, before anything is attached."""
    from cimsim.train.loop import epoch_seed, train_epoch
    from cimsim.train.lora import add_lora
    from cimsim.train.twin import recalibrate_adcs

    warnings.simplefilter("ignore")
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    prep = prepare(_mlp(8), "ideal", x)

    def loss(xb, yb):
        return F.cross_entropy(prep(xb), yb)

    opt = torch.optim.SGD(prep.parameters(), lr=1e-3)
    calls = [
        lambda: parse_method("qat+lora").fit(prep, loss, (x, y), epochs=1, lr=1e-3, seed=seed),
        lambda: train_epoch(prep, (x, y), loss, opt, batch_size=8, seed=seed, epoch=0),
        lambda: epoch_seed(seed, 0),
        lambda: add_lora(prep, seed=seed),
        lambda: recalibrate_adcs(prep, x, seed=seed),
    ]
    for call in calls:
        with pytest.raises(ConfigError, match=r"seed = .* is invalid; allowed: an integer from 0"):
            call()
    assert all(getattr(t, "lora", None) is None for _, t in prep.twins())
    assert epoch_seed(np.uint64(2**64 - 1), 3) == epoch_seed(2**64 - 1, 3)


class _Centred(nn.Module):
    """Keeps a running mean of its inputs as a plain tensor attribute (not a buffer)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.center = torch.zeros(4)
        self._cache = None

    def forward(self, x):
        if self.training:
            self.center = 0.9 * self.center + 0.1 * x.mean(0).detach()
        self._cache = x.sum()  # a forward's cache: private, set back silently
        return self.fc(x - self.center)


def test_deploy_names_the_public_tensor_attributes_it_sets_back_to_prepare_time():
    """PreparedModel.deploy sets tensor attributes back to their values at prepare (a
    forward's cache is no state to deploy), so a running statistic kept as a plain attribute,
    or a table the user set after prepare, was dropped without a word (twin and deployed
    model 1.5 apart on the lossless chip). The public ones are named, pointing to a buffer."""
    torch.manual_seed(0)
    x = torch.randn(32, 4) + 3.0
    prep = prepare(_Centred(), "ideal", x)
    prep.train()
    prep(x)
    prep.eval()
    prep.model.logit_adjust = torch.ones(3)
    with pytest.warns(UserWarning, match=r"PreparedModel.deploy: 2 tensor attribute\(s\) set "
                                         r"since prepare .*: logit_adjust, center; .*register_"
                                         r"buffer") as record:
        sim = prep.deploy()
    assert not any("_cache" in str(w.message) for w in record)
    assert torch.equal(sim.model.center, torch.zeros(4))


def test_a_refused_deploy_names_every_adc_field_that_differs_beside_the_bits():
    """Pins ``_needs_calibration``'s ``differ == ['bits']``: a nonlinear twin's reason (levels
    fitted at its bits) is given only where the bits alone differ; a calibrated chip differing
    in more (bits and percentile) names those fields and offers other bits on a linear ADC."""
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    x = torch.randn(32, 8)
    rram = cimsim.load_chip("rram-22nm")
    chip = rram.replace(adc=rram.adc.replace(kind="ramp", bits=4))
    prep = prepare(_mlp(8), chip, x).eval()
    other = chip.replace(adc=chip.adc.replace(bits=3, percentile=99.0))
    with pytest.raises(ConfigError, match=r"its ADC differs from the twin's in adc\.bits, "
                       r"adc\.percentile: .*other adc\.bits on a linear ADC") as info:
        prep.deploy(chip=other)
    assert "nonlinear converter" not in str(info.value)


def test_deploy_at_the_chips_t0_is_the_programmed_state():
    """Pins ``deploy``'s ``t != drift_t0_s``: ``t_inference_s`` equal to the chip's
    ``device.drift_t0_s`` (what a sweep passes at every point without ``time_s``) is the
    programmed state deploy_views reads, no ``set_time``: the outputs and the energy figure
    are those of a deploy given no time (set_time(t0) changed the energy per inference)."""
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    x = torch.randn(32, 8)
    chip = cimsim.load_chip("pcm-22nm")  # its devices drift
    prep = prepare(_mlp(8), chip, x, seed=0).eval()
    plain, at_t0 = prep.deploy(0), prep.deploy(0, t_inference_s=chip.device.drift_t0_s)
    assert torch.equal(plain(x), at_t0(x))
    assert (float(at_t0.report().totals["energy_pj_per_inference"])
            == float(plain.report().totals["energy_pj_per_inference"]))

"""A layer-output ADC acting as the next activation's quantizer (ReLU fused into the ADC)."""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.adc.levels import fit_levels
from cimsim.mapping.quant import quantize_acts


def _chip(kind="ramp", bits=3, level_fit="bs_kmq", granularity="column", **adc):
    """Ideal cells with one conversion per output: all input bits at once, 7-bit cells for
    8-bit differential weights, K <= 64 rows."""
    ideal = cimsim.load_chip("ideal")
    return ideal.replace(
        dac=ideal.dac.replace(bits=None),
        device=ideal.device.replace(bits_per_cell=7),
        array=ideal.array.replace(n_rows=64, n_cols=64),
        adc=ideal.adc.replace(kind=kind, bits=bits, range_policy="calibrated",
                              calibration_granularity=granularity, level_fit=level_fit,
                              placement="layer_output", **adc),
    )


def _mlp(act: nn.Module | None = None, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 8), act or nn.ReLU(), nn.Linear(8, 3)).double()


def _data(seed: int, m: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(m, 12)))


def _pre_activation(core, x: torch.Tensor) -> np.ndarray:
    """The exact quantized pre-activation of a core, written out from its integer operands."""
    x_int = quantize_acts(x.numpy(), core.s_x, core.chip.input_bits, core.signed)
    return (x_int @ core.w_int.T) * (core.s_x * core.s_w[0]) + core.bias


def _first_layer(sim, x: torch.Tensor) -> np.ndarray:
    return sim.model[0](x).numpy()


@pytest.mark.parametrize("granularity", ["column", "layer"])
@pytest.mark.parametrize("level_fit", ["uniform", "kmeans", "bs_kmq"])
def test_ramp_adc_output_is_the_quantized_activation(level_fit, granularity):
    model, x_cal, x = _mlp(), _data(0, 300), _data(1, 200)
    sim = cimsim.deploy(model, _chip(level_fit=level_fit, granularity=granularity), x_cal)
    assert sim.fused_activations == ["0"]  # the logits layer has no ReLU after it
    core = sim.sim_layers["0"].cores[0]
    assert core.fused and not sim.sim_layers["2"].cores[0].fused
    # Independently: fit the levels on the exact post-activation calibration values (on an
    # ideal chip the analog sum is the exact integer product) and quantize the test values.
    post_cal = np.maximum(_pre_activation(core, x_cal), 0.0)
    post = np.maximum(_pre_activation(core, x), 0.0)
    y = _first_layer(sim, x)
    units = [[c] for c in range(8)] if granularity == "column" else [list(range(8))]
    for cols in units:
        vals = post_cal[:, cols].ravel()
        lv = fit_levels(vals, 3, level_fit, lo=0.0, hi=float(vals.max()))
        np.testing.assert_allclose(y[:, cols], lv.quantize(post[:, cols]), rtol=1e-9, atol=1e-12)
    assert y.min() >= 0.0
    # the model's ReLU after the layer is the identity on these values
    np.testing.assert_array_equal(sim.model[1](torch.from_numpy(y)).numpy(), y)


@pytest.mark.parametrize("kind", ["sar", "flash"])
def test_linear_adc_output_is_relu_clamp_round(kind):
    model, x_cal, x = _mlp(), _data(2, 300), _data(3, 200)
    sim = cimsim.deploy(model, _chip(kind=kind, bits=4), x_cal)
    core = sim.sim_layers["0"].cores[0]
    a_max = np.maximum(_pre_activation(core, x_cal), 0.0).max(axis=0)
    step = a_max / 15
    pre = _pre_activation(core, x)
    expect = np.clip(np.floor(pre / step + 0.5), 0, 15) * step
    y = _first_layer(sim, x)
    np.testing.assert_allclose(y, expect, rtol=1e-9, atol=1e-12)
    assert np.all(y[pre <= 0] == 0.0) and np.all(y <= a_max * (1 + 1e-12))


def test_mean_std_sets_a_max_above_the_mean_of_the_post_relu_values():
    """``calibration_stat = "mean_std"``: a_max = mean + n_sigma * std of each column's
    post-ReLU calibration values (fit_activation_levels' docstring); mean - n_sigma * std
    would put the top level below the typical output."""
    model, x_cal, x = _mlp(), _data(2, 300), _data(3, 200)
    sim = cimsim.deploy(model, _chip(kind="sar", bits=4, calibration_stat="mean_std",
                                     n_sigma=2.0), x_cal)
    core = sim.sim_layers["0"].cores[0]
    post_cal = np.maximum(_pre_activation(core, x_cal), 0.0)
    a_max = post_cal.mean(axis=0) + 2.0 * post_cal.std(axis=0)
    assert np.all(a_max > 0)
    step = a_max / 15
    pre = _pre_activation(core, x)
    expect = np.clip(np.floor(pre / step + 0.5), 0, 15) * step
    np.testing.assert_allclose(_first_layer(sim, x), expect, rtol=1e-9, atol=1e-12)


def test_relu6_clamps_and_percentile_sets_a_max():
    """A fused ReLU6 whose a_max reached its clamp 6 outputs 6 for every larger value: the
    activation's own saturation, not a converter clip, so no conversion is counted clipped."""
    model = _mlp(nn.ReLU6())
    with torch.no_grad():
        model[0].weight.mul_(20.0)  # pre-activations well beyond 6
    x_cal, x = _data(4, 300), _data(5, 100)
    sim = cimsim.deploy(model, _chip(kind="sar", bits=3), x_cal)
    y = _first_layer(sim, x)
    assert sim.fused_activations == ["0"]
    assert y.max() == pytest.approx(6.0) and y.min() == 0.0
    assert np.unique(np.round(y / (6.0 / 7), 9)).size <= 8
    assert np.any(y == 6.0)  # some values saturate at the clamp
    (layer,) = [w for w in sim.work().layers if w.name == "0"]
    assert layer.n_adc_clipped == 0


def test_functional_relu_is_found_by_tracing():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(12, 8), nn.Linear(8, 8), nn.Linear(8, 3)

        def forward(self, x):
            h = F.relu(self.a(x))
            g = self.b(h)  # used twice: by the ReLU and by the residual add
            return self.c(torch.relu(g) + g)

    torch.manual_seed(0)
    sim = cimsim.deploy(Net().double(), _chip(), _data(6, 200))
    assert sim.fused_activations == ["a"]


def test_untraceable_model_falls_back_to_sequential_neighbours():
    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = _mlp()

        def forward(self, x):
            if float(x.sum()) > 1e9:  # data-dependent control flow: torch.fx cannot trace it
                return x
            return self.body(x)

    sim = cimsim.deploy(Gate(), _chip(), _data(7, 200))
    assert sim.fused_activations == ["body.0"]


class _Untraceable(nn.Module):
    """A data-dependent branch (torch.fx cannot trace it) around ``body``."""

    def __init__(self, body: nn.Module, skip: bool = False):
        super().__init__()
        self.body, self.skip = body, skip

    def forward(self, x):
        if float(x.sum()) > 1e9:
            return x
        if self.skip:  # the Sequential's first layer called alone, its output used twice
            h = self.body[0](x)
            return self.body[1](h) + h
        return self.body(x)


def test_untraceable_fallback_never_fuses_a_layer_whose_output_goes_elsewhere():
    """Without a trace, a Sequential's Linear-ReLU pair was fused even where the Linear is
    placed twice (nn.Sequential(lin, relu, lin): its second call, feeding no ReLU, came out
    clamped at 0) or called outside the Sequential with its output in a skip connection."""
    torch.manual_seed(0)
    lin = nn.Linear(8, 8).double()
    shared = _Untraceable(nn.Sequential(lin, nn.ReLU(), lin))
    x = _data(9, 64)[:, :8]
    sim = cimsim.deploy(shared, _chip(kind="sar", bits=8, level_fit="uniform"), x)
    assert sim.fused_activations == []
    assert sim(x).min() < 0
    skip = _Untraceable(nn.Sequential(nn.Linear(8, 8), nn.ReLU()).double(), skip=True)
    with pytest.raises(cimsim.errors.MappingError, match="fuse_activation = false"):
        cimsim.deploy(skip, _chip(kind="sar", bits=8, level_fit="uniform"), x)
    chip = _chip(kind="sar", bits=8, level_fit="uniform", fuse_activation=False)
    assert cimsim.deploy(skip, chip, x).fused_activations == []
    # a fused pair inside its Sequential still fuses, and the guard's hooks pickle with it
    sim = cimsim.deploy(_Untraceable(_mlp()), _chip(), _data(7, 200))
    assert sim.fused_activations == ["body.0"]
    buf = io.BytesIO()
    torch.save(sim, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    assert torch.equal(back(_data(8, 5)), sim(_data(8, 5)))


def test_batchnorm_between_layer_and_relu_is_not_fused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 4, 3), nn.ReLU()).double().eval()
    x = torch.from_numpy(np.random.default_rng(8).normal(size=(20, 1, 8, 8)))
    sim = cimsim.deploy(model, _chip(), x)
    assert sim.fused_activations == ["3"]
    assert sim(x).min() >= 0.0


@pytest.mark.parametrize("change", [
    {"adc": {"placement": "partial_sum"}},
    {"adc": {"fuse_activation": False}},
])
def test_fusion_off(change):
    chip = _chip()
    # one replace: a layer-output chip with bit-serial inputs is refused at its config
    dac = chip.dac.replace(bits=1) if change["adc"].get("placement") == "partial_sum" else chip.dac
    chip = chip.replace(dac=dac, adc=chip.adc.replace(**change["adc"]))
    sim = cimsim.deploy(_mlp(), chip, _data(9, 100))
    assert sim.fused_activations == []


def test_digital_correction_prevents_fusion_with_a_warning(caplog):
    chip = _chip()
    chip = chip.replace(weight_encoding="offset", weight_bits=7)
    with caplog.at_level(logging.WARNING):
        sim = cimsim.deploy(_mlp(), chip, _data(10, 100))
    assert sim.fused_activations == []
    assert "weight_encoding = 'offset'" in caplog.text


def test_fused_layer_with_noise_stays_in_levels():
    chip = _chip(level_fit="kmeans")
    # analog sums reach ~1e5 cell-LSB here
    chip = chip.replace(noise=chip.noise.replace(thermal_sigma_lsb=500.0))
    model, x_cal, x = _mlp(), _data(11, 300), _data(12, 200)
    sim = cimsim.deploy(model, chip, x_cal, seed=3)
    core = sim.sim_layers["0"].cores[0]
    layer = core.parts[0][2]
    y = _first_layer(sim, x)
    kappa = layer.conv_coef * core.s_x * core.s_w[0][layer.out_col]
    for c in range(8):
        levels = layer.adc.lvl[0, c] * kappa[c]  # the bias is in the thresholds
        assert np.all(np.min(np.abs(y[:, c, None] - levels[None, :]), axis=1) <= 1e-9)
    # noise moves codes: the outputs differ from the noise-free run, but stay on the levels
    clean = cimsim.deploy(model, chip.replace(noise=chip.noise.replace(thermal_sigma_lsb=0.0)),
                          x_cal, seed=3)
    assert not np.array_equal(_first_layer(clean, x), y)


def test_engine_calibrate_rejects_a_bad_activation():
    from cimsim import engine
    from cimsim.adc.activation import FusedActivation
    from cimsim.arrays.program import program
    from cimsim.errors import ConfigError

    chip = _chip()
    w = np.random.default_rng(13).integers(-127, 128, (4, 10))
    x = np.random.default_rng(14).integers(0, 256, (30, 10))
    layer = program(w, chip)
    with pytest.raises(ConfigError, match="one conversion per output"):
        engine.calibrate(layer, x, activation=FusedActivation(np.ones(3), np.zeros(3)))
    fixed = program(w, chip.replace(adc=chip.adc.replace(kind="sar", range_policy="full_scale")))
    with pytest.raises(ConfigError, match="calibrated"):
        engine.calibrate(fixed, x, activation=FusedActivation(np.ones(4), np.zeros(4)))
    # a ReLU with kappa = 1, bias = -100: outputs are the levels of max(x @ w.T - 100, 0)
    layer = engine.calibrate(layer, x,
                             activation=FusedActivation(np.ones(4), np.full(4, -100.0)))
    y, _ = engine.run(layer, x)
    pre = x @ w.T - 100.0
    for c in range(4):
        lv = fit_levels(np.maximum(pre[:, c], 0), 3, "bs_kmq", lo=0.0, hi=max(pre[:, c].max(), 0))
        np.testing.assert_allclose(y[:, c], lv.quantize(np.maximum(pre[:, c], 0)), atol=1e-9)


class _WithFeatures(nn.Module):
    """A conv whose only consumer in ``forward`` is a functional ReLU (its output read by a
    hook: Grad-CAM, a probe), and a logits layer."""

    def __init__(self):
        super().__init__()
        self.c, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(F.relu(self.c(x)).mean((2, 3)))

    def features(self, x):
        return self.c(x)


@pytest.mark.parametrize("run", ["deploy", "prepare"])
def test_a_layer_with_a_forward_hook_on_its_output_is_not_fused(run):
    """A forward hook (a feature recorder) read the fused conversion's clamped, quantized
    activation as the layer's output; the layer is left unfused, with a warning naming it."""
    from cimsim.train import prepare

    torch.manual_seed(0)
    model, x = _WithFeatures().eval(), torch.randn(16, 3, 8, 8)
    seen: list[torch.Tensor] = []
    model.c.register_forward_hook(lambda _m, _i, out: seen.append(out))
    chip = _chip(kind="ramp", bits=6, level_fit="uniform")
    with pytest.warns(UserWarning, match=r"not fused .*forward hook reading their output: c;"):
        sim = cimsim.deploy(model, chip, x, seed=0) if run == "deploy" else \
            prepare(model, chip, calibration=x, seed=0)
    if run == "deploy":
        assert sim.fused_activations == []
    seen.clear()
    with torch.no_grad():
        sim(x)
    assert float(seen[-1].min()) < 0  # the pre-activation output, as the hook expects
    # a hook on a layer that would not fuse anyway (the logits) is no reason to say a word
    plain = _WithFeatures().eval()
    plain.fc.register_forward_hook(lambda _m, _i, out: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim = cimsim.deploy(plain, chip, x, seed=0) if run == "deploy" else \
            prepare(plain, chip, calibration=x, seed=0)
    if run == "deploy":
        assert sim.fused_activations == ["c"]


def test_a_shared_relu_after_a_hooked_layer_stays_a_relu_in_the_twin():
    """One ReLU module after two layers, one of them hooked (so not fused): the twin makes a
    ReLU read only by fused layers the identity; deciding that before the hooked layer was left
    out would have passed its output through unclamped."""
    from cimsim.train import prepare

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.relu = nn.Linear(8, 8), nn.Linear(8, 8), nn.ReLU()
            self.out = nn.Linear(16, 3)

        def forward(self, x):
            return self.out(torch.cat([self.relu(self.a(x)), self.relu(self.b(x))], 1))

    torch.manual_seed(0)
    model, x = Shared().double().eval(), _data(3, 64)[:, :8]
    model.a.register_forward_hook(lambda _m, _i, out: None)
    chip = _chip(kind="sar", bits=8, level_fit="uniform")
    with pytest.warns(UserWarning, match=r"not fused .*: a;"):
        prep = prepare(model, chip, calibration=x, seed=0)
    with pytest.warns(UserWarning, match=r"not fused .*: a;"):
        sim = cimsim.deploy(model, chip, x, seed=0)
    assert sim.fused_activations == ["b"]
    assert type(prep.model.relu).__name__ == "ReLU"
    with torch.no_grad():
        torch.testing.assert_close(prep.eval()(x), sim(x), rtol=1e-6, atol=1e-6)


def test_a_hardtanh_below_zero_is_no_relu_to_fuse():
    """A ``Hardtanh(0, m)`` is a ReLU clamped at ``m`` and fuses as one; a ``Hardtanh(-1, 1)``
    passes negative values (down to -1): no ReLU, not fused (fused, the ADC output its 0 for
    every negative pre-activation, silently)."""
    x = _data(0, 64)
    assert cimsim.deploy(_mlp(nn.Hardtanh(0.0, 2.0)), _chip(), x).fused_activations == ["0"]
    assert cimsim.deploy(_mlp(nn.Hardtanh(-1.0, 1.0)), _chip(), x).fused_activations == []


class _SharedTwoClamps(nn.Module):
    """One Linear called twice: once into a ReLU, once into a ReLU6."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(12, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        return self.out(torch.relu(self.lin(x)) + nn.functional.relu6(self.lin(x)))


def test_a_shared_layer_whose_calls_clamp_differently_is_not_fused():
    """A layer fuses only if every call feeds a ReLU of the same clamp (its ADC is the
    activation of all its calls): one call into a ReLU and one into a ReLU6 is no single
    activation, so nothing is fused (fused at either clamp, the other call came out clamped
    wrong)."""
    torch.manual_seed(0)
    sim = cimsim.deploy(_SharedTwoClamps().double().eval(), _chip(), _data(0, 64))
    assert sim.fused_activations == []

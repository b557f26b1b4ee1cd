"""``PreparedModel.deploy`` (issue 10, item 1): the learned weights, scales and ADC tables go to
the Numba engine as they are, and the deployed model computes what the twin computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.errors import ConfigError, MappingError
from cimsim.mapping.deploy import deploy_views
from cimsim.train import prepare


class ResidualNet(nn.Module):
    """Conv (grouped and plain), a residual add, BatchNorm, a Linear head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.body = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = F.relu(self.bn(self.stem(x)))
        h = F.relu(h + self.body(h))
        return self.head(h.mean(dim=(2, 3)))


def _chip(kind: str):
    """Lossless, or rram-22nm with nominal devices and no noise and a lossy 4-bit ADC."""
    if kind == "ideal":
        chip = cimsim.load_chip("ideal")
        return chip.replace(array=chip.array.replace(n_rows=40, n_cols=32))
    chip = cimsim.load_chip("rram-22nm")
    chip = chip.replace(device=chip.device.replace(variation="none", variation_sigma=0.0),
                        noise=chip.noise.replace(thermal_sigma_lsb=0.0),
                        array=chip.array.replace(n_rows=40))
    adc = dict(bits=4, range_policy="calibrated", calibration_granularity="column")
    if kind == "ramp":
        adc.update(kind="ramp", level_fit="kmeans")
    return chip.replace(adc=chip.adc.replace(**adc))


def _trained(chip, steps: int = 6, seed: int = 0):
    torch.manual_seed(seed)
    model = ResidualNet().double()
    x = torch.randn(32, 2, 6, 6, dtype=torch.float64)
    target = torch.randint(0, 3, (32,))
    prep = prepare(model, chip, x[:16], seed=4)
    opt = torch.optim.Adam(prep.parameters(), lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(prep(x), target).backward()
        opt.step()
    return prep.eval(), x


@pytest.mark.parametrize("kind", ["ideal", "linear", "ramp"])
def test_deploy_carries_the_learned_state_over_exactly(kind):
    prep, _ = _trained(_chip(kind))
    sim = prep.deploy()
    cores = {c.name: c for layer in sim.sim_layers.values() for c in layer.cores}
    assert set(cores) == {name for name, _ in prep.twins()}
    moved = 0
    for name, twin in prep.twins():
        view, core = twin.to_engine(), cores[name]
        # the learned parameters themselves, not recalibrated ones
        assert core.s_x == twin.act_scale.item()
        np.testing.assert_array_equal(core.s_w, np.broadcast_to(
            twin.weight_scale.detach().numpy(), core.s_w.shape))
        np.testing.assert_array_equal(core.w_int, twin.quantized_weight().numpy())
        moved += int(core.s_x != twin._act_scale0.item())
        for (_, _, got), (_, _, want) in zip(core.parts, view.parts, strict=True):
            np.testing.assert_array_equal(got.adc.lo, want.adc.lo)
            np.testing.assert_array_equal(got.adc.delta, want.adc.delta)
            if kind == "ramp":
                np.testing.assert_array_equal(got.adc.thr, want.adc.thr)
                np.testing.assert_array_equal(got.adc.lvl, want.adc.lvl)
        if kind == "linear":
            lo, delta = twin.adc_tables()
            (_, _, layer), = core.parts
            np.testing.assert_array_equal(layer.adc.delta, delta.detach().numpy())
            np.testing.assert_array_equal(layer.adc.lo, lo.detach().numpy())
    assert moved > 0, "training moved no activation scale: the test shows nothing"


@pytest.mark.parametrize("kind", ["ideal", "linear", "ramp"])
def test_deployed_model_computes_what_the_twin_computes(kind):
    prep, x = _trained(_chip(kind))
    sim = prep.deploy()
    y_twin = prep(x).detach().numpy()
    y_sim = sim(x).numpy()
    if kind == "ideal":
        np.testing.assert_array_equal(y_sim, y_twin)
        return
    # code for code: outputs differ only where a float tie converts one code apart
    close = np.isclose(y_sim, y_twin, rtol=1e-9, atol=1e-9)
    assert close.mean() >= 0.99, f"{(~close).sum()} of {close.size} outputs differ"


def test_deploy_with_another_seed_programs_like_deploy():
    chip = cimsim.load_chip("rram-22nm")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 2))
    x = torch.randn(40, 12)
    prep = prepare(model, chip, x, seed=1)
    ref = cimsim.deploy(model, chip, x, seed=9)
    sim = prep.deploy(seed=9)
    for a, b in zip(ref.works(), sim.works(), strict=True):
        (ba,), (bb,) = a.blocks, b.blocks
        # the same variation draws (the twin computes with nominal digits; deploy draws them)
        np.testing.assert_array_equal(ba.layer.gemm_matrix, bb.layer.gemm_matrix)


def test_deploy_views_refuses_a_matrix_without_a_view():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    prep = prepare(model, cimsim.load_chip("ideal"), torch.rand(8, 4))
    views = prep.views()
    del views["1"]
    with pytest.raises(MappingError, match="'1'"):
        deploy_views(prep.float_model(), prep.chip, views)


@pytest.mark.parametrize("batch_first", [False, True])
def test_transformer_encoder_layer_twin_equals_deploy_on_the_lossless_chip(batch_first):
    torch.manual_seed(3)
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=24, dropout=0.0,
                                       batch_first=batch_first).double().eval()
    shape = (5, 3, 16) if not batch_first else (3, 5, 16)
    x_cal, x = torch.randn(*shape, dtype=torch.float64), torch.randn(*shape, dtype=torch.float64)
    chip = cimsim.load_chip("ideal")
    prep = prepare(layer, chip, x_cal, seed=2).eval()
    names = {name for name, _ in prep.twins()}
    assert {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
            "self_attn.out_proj", "linear1", "linear2"} == names
    assert [d[1] for d in prep.digital] == ["attention products"]
    mask = torch.zeros(3, 5, dtype=torch.bool)  # (batch, sequence)
    mask[0, -2:] = True  # padding of the first sequence
    sim = cimsim.deploy(layer, chip, x_cal, seed=2, batch_dim=int(not batch_first))
    y_twin = prep(x, src_key_padding_mask=mask).detach().numpy()
    np.testing.assert_array_equal(prep.deploy(batch_dim=int(not batch_first))(
        x, src_key_padding_mask=mask).numpy(), y_twin)
    # and the twin starts where deploy starts
    np.testing.assert_allclose(sim(x, src_key_padding_mask=mask).numpy(), y_twin,
                               rtol=1e-12, atol=1e-12)
    # training passes gradients into every projection
    prep.train()
    prep(x).sum().backward()
    assert all(t.weight.grad is not None and t.weight.grad.abs().sum() > 0
               for _, t in prep.twins())


def test_a_float32_twin_on_the_lossless_chip_is_within_one_ulp_of_deploy():
    """In float64 the twin equals deploy bit for bit; a float32 twin's integer results are
    exact as well, and only its float32 dequantization rounds: within an ulp of the scaled
    product and of the bias (the docs said bit for bit)."""
    torch.manual_seed(0)
    model, x = nn.Linear(20, 5).eval(), torch.randn(16, 20)
    prep = prepare(model, "ideal", x, seed=0).eval()
    with torch.no_grad():
        y_twin = prep(x)
    y_dep = cimsim.deploy(model, "ideal", calibration=x, seed=0)(x)
    torch.testing.assert_close(prep.deploy(seed=0)(x), y_dep, rtol=0, atol=0)
    # rounding of the scaled product and of the bias added to it: an ulp of each
    b = model.bias.detach()
    ulps = torch.finfo(torch.float32).eps * ((y_dep - b).abs() + b.abs())
    assert bool(((y_twin - y_dep).abs() <= ulps).all()) and not torch.equal(y_twin, y_dep)


@pytest.mark.parametrize("change, field", [
    (lambda c: c.replace(array=c.array.replace(n_rows=512)), "array.n_rows"),
    (lambda c: c.replace(array=c.array.replace(n_rows=64)), "array.n_rows"),
    (lambda c: c.replace(device=c.device.replace(bits_per_cell=1)), "device.bits_per_cell"),
    (lambda c: c.replace(input_bits=6), "input_bits"),
])
def test_deploy_on_a_chip_of_another_geometry_is_refused_naming_the_field(change, field):
    """A 512-row array ran the twin's 128-row tiles and tables, reported as 512 rows, unwarned;
    64 rows and 1-b cells failed in the programming naming neither field nor way out. A chip
    of the same geometry (other noise, ADC bits) deploys."""
    chip = cimsim.load_chip("rram-22nm")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 16), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(32, 300)
    prep = prepare(model, chip, x, seed=0).eval()
    with pytest.raises(ConfigError, match=rf"in {field}\b.*the twin's layers are quantized "
                                          r"and tiled .*cimsim\.deploy\(prepared\.float_model"):
        prep.deploy(chip=change(chip))
    same = chip.replace(noise=chip.noise.replace(thermal_sigma_lsb=0.0),
                        adc=chip.adc.replace(bits=5, range_policy="full_scale"))
    prep.deploy(chip=same)(x)


def test_deploy_on_another_decomposition_under_another_adc_programs_it():
    """PIM-QAT's arm b deploys a twin trained on the native decomposition on the bit-serial
    and differential ones (other encoding, DAC and cells, another ADC): programmed on that
    chip as it is; another array height or the twin's own ADC settings are refused."""
    from cimsim.train.pimqat import pim_chip

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 16), nn.ReLU(), nn.Linear(16, 4)).double()
    x = torch.randn(32, 40, dtype=torch.float64)
    prep = prepare(model, pim_chip("native", adc_bits=24, rows=128), x, seed=0).eval()
    for dec in ("bit-serial", "differential"):
        chip = pim_chip(dec, adc_bits=8, rows=128)
        assert prep.deploy(seed=0, chip=chip)(x).shape == (32, 4)
        with pytest.raises(ConfigError, match="array.n_rows"):
            prep.deploy(seed=0, chip=chip.replace(array=chip.array.replace(n_rows=256)))
        # under the twin's own ADC settings its tables would be carried to other conversions
        with pytest.raises(ConfigError, match=r"weight_encoding.*learned tables belong"):
            prep.deploy(seed=0, chip=pim_chip(dec, adc_bits=24, rows=128))


def test_a_float32_twin_of_wide_codes_is_warned_about():
    """On isaac-32nm (16-b inputs and weights) a float32 twin's input rounding differed from
    deploy's float64 at ties on 1.8 % of a Linear's outputs, unwarned; a float64 twin deploys
    code for code, and an 8-b chip's float32 twin is not warned about."""
    import warnings

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16)).eval()
    x = torch.rand(64, 64)
    with pytest.warns(UserWarning, match=r"16-bit codes in a float32 twin .*model\.double\(\)"):
        prepare(model, "isaac-32nm", calibration=x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prep = prepare(model.double(), "isaac-32nm", calibration=x.double()).eval()
        prepare(model.float(), "rram-22nm", calibration=x)
    chip = cimsim.load_chip("isaac-32nm")
    assert chip.noise.thermal_sigma_lsb == 0 and chip.device.variation.value == "none"
    with torch.no_grad():
        assert torch.equal(prep(x.double()), prep.deploy()(x.double()))


def test_a_trained_deployment_says_its_clipping_is_the_learned_ranges():
    """After `cimsim train` the input and ADC clipping notes sent the user to the calibration
    data, though the ranges (a PIM-QAT run's learned input steps clipped 8 % of a first layer's
    pixels) were training's: the report notes learned ranges, and the advice follows."""
    import types

    import pandas as pd

    from cimsim.cli import _notices
    from cimsim.report import LEARNED_RANGES_NOTE

    prep, x = _trained(_chip("lossy"), steps=1)
    sim = prep.deploy()
    assert sim.ranges_learned
    sim(x)
    assert LEARNED_RANGES_NOTE in sim.report().notes
    plain = cimsim.deploy(prep.float_model(), _chip("lossy"), x[:16], seed=0)
    plain(x)
    assert not plain.ranges_learned and LEARNED_RANGES_NOTE not in plain.report().notes
    layers = pd.DataFrame({"layer": ["stem"], "adc_clip_pct": [5.0], "input_clip_pct": [8.4]})
    trained = types.SimpleNamespace(layers=layers, chip=_chip("lossy"),
                                    notes=[LEARNED_RANGES_NOTE], components=pd.DataFrame(),
                                    totals={})
    adc, inputs = _notices(trained)
    assert adc.startswith("ADC clipping above 1 % of conversions: stem (5.0 %); the ranges "
                          "are the prepared model's, learned in training")
    assert inputs.startswith("input clipping above 1 % of inputs: stem (8.4 %); the ranges are "
                             "the prepared model's") and "calibration data" not in inputs
    calibrated = types.SimpleNamespace(layers=layers, chip=_chip("lossy"), notes=[],
                                       components=pd.DataFrame(), totals={})
    assert "set on the calibration data" in _notices(calibrated)[1]

"""ADC calibration in the simulated forward, the calibration margin, the per-conversion clip
counter and the capacity check from the shapes (issue 16, item 4 and the capacity check)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim import engine
from cimsim.adc import grid
from cimsim.adc.linear import widen
from cimsim.arrays.program import n_arrays_for_shape, program
from cimsim.errors import CapacityError


def _clipping_model() -> tuple[nn.Module, torch.Tensor]:
    """Two layers; the second has positive weights, so a shift of its inputs shifts every
    column's partial sums the same way."""
    rng = np.random.default_rng(0)
    m = nn.Sequential(nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 12))
    with torch.no_grad():
        m[0].weight.copy_(torch.from_numpy(rng.normal(size=(24, 32))))
        m[2].weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.0, size=(12, 24))))
        m[0].bias.zero_()
        m[2].bias.zero_()
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(256, 32)).astype(np.float32))
    return m, x


def _clipping_chip(mode: str) -> cimsim.ChipConfig:
    """Ideal devices, no noise, bit-serial inputs; a 4-bit ADC fitted per column (min-max) with
    an offset error of half an LSB: the first layer's outputs come out shifted, so the second
    layer's simulated inputs leave the ranges fitted on float inputs."""
    ideal = cimsim.load_chip("ideal")
    return ideal.replace(adc=ideal.adc.replace(
        bits=4, range_policy="calibrated", calibration_granularity="column",
        calibration_stat="minmax", offset_error_lsb=0.5, calibration_mode=mode))


def test_simulated_calibration_clips_less_and_errs_less_issue16():
    model, x = _clipping_model()
    with torch.no_grad():
        want = model(x).double()
    found = {}
    for mode in ("float", "simulated"):
        sim = cimsim.deploy(model, _clipping_chip(mode), x)
        seen: dict[str, torch.Tensor] = {}
        hook = sim.model[2].register_forward_hook(
            lambda mod, inp, out, seen=seen: seen.update(x=inp[0].double(), y=out.double()))
        with torch.no_grad():
            got = sim(x).double()
        hook.remove()
        exact = seen["x"] @ model[2].weight.double().T  # the second layer on its own inputs
        clip = sim.report().layers.set_index("layer")["adc_clip_pct"]
        found[mode] = dict(clip=clip, layer_err=float((seen["y"] - exact).norm() / exact.norm()),
                           err=float((got - want).norm() / want.norm()))
    fl, si = found["float"], found["simulated"]
    # the first layer's inputs are the same in both modes: same tables, same clipping
    assert si["clip"]["0"] == fl["clip"]["0"]
    assert fl["clip"]["2"] > 1.0  # float-fitted ranges clip the shifted inputs
    assert si["clip"]["2"] < 0.1 * fl["clip"]["2"]
    assert si["layer_err"] < 0.9 * fl["layer_err"]
    assert si["err"] < fl["err"]


def test_simulated_calibration_keeps_the_first_stage_and_runs_one_pass_per_stage():
    model, x = _clipping_model()
    calls = []
    # on the root: the deployed copy keeps it (the mapped layers are replaced)
    model.register_forward_pre_hook(lambda mod, args: calls.append(args[0].shape[0]))
    sims = {mode: cimsim.deploy(model, _clipping_chip(mode), x, batch_size=100)
            for mode in ("float", "simulated")}
    # float: one pass of 3 batches; simulated: one more pass for the second stage only
    assert calls == [100, 100, 56] * 3
    (a0, a2), (b0, b2) = ([w.blocks[0].layer.adc for w in s.works()] for s in sims.values())
    np.testing.assert_array_equal(a0.lo, b0.lo)
    np.testing.assert_array_equal(a0.delta, b0.delta)
    assert not np.array_equal(a2.delta, b2.delta)
    # calibration counts nothing, and the noise draws start where the float mode's do
    assert all(not any(w.events.values()) for w in sims["simulated"].works())
    assert sum(w.n_adc_clipped for w in sims["simulated"].works()) == 0
    assert all(c.calls == 0 for layer in sims["simulated"].sim_layers.values()
               for c in layer.cores)


def test_simulated_calibration_accepts_a_one_shot_iterator():
    model, x = _clipping_model()
    chip = _clipping_chip("simulated")
    ref = cimsim.deploy(model, chip, x, batch_size=64)
    gen = cimsim.deploy(model, chip, (x[i:i + 64] for i in range(0, 256, 64)))
    with torch.no_grad():
        torch.testing.assert_close(gen(x[:8]), ref(x[:8]), rtol=0, atol=0)


def test_simulated_equals_float_without_calibrated_ranges():
    model, x = _clipping_model()
    ideal = cimsim.load_chip("ideal")  # full-scale ADC: nothing depends on the inputs
    outs = []
    for mode in ("float", "simulated"):
        sim = cimsim.deploy(model, ideal.replace(adc=ideal.adc.replace(calibration_mode=mode)),
                            x)
        with torch.no_grad():
            outs.append(sim(x[:16]))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


# Outputs of deploy before simulated calibration existed (commit 17194cd~1), for the model and
# chip below: the float mode (the default) must reproduce them.
_GOLDEN = [
    [-1.797849655151, 13.798858642578, 4.05356502533, 8.018633842468, 3.100214242935],
    [1.439185619354, 3.167275667191, 0.591670572758, 0.07507622242, 1.717646360397],
    [-12.462952613831, -3.907260894775, -15.269690513611, -14.548539161682, -1.061656832695],
    [-11.883365631104, 8.614795684814, 2.816259145737, -2.551381826401, 4.785052776337],
]


def test_float_mode_reproduces_the_results_before_simulated_calibration():
    rng = np.random.default_rng(16)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 36, 12), nn.ReLU(), nn.Linear(12, 5))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(rng.normal(scale=0.5, size=p.shape)))
    x = torch.from_numpy(rng.normal(size=(40, 1, 6, 6)).astype(np.float32))
    chip = cimsim.load_chip("rram-22nm")  # per-column percentile ranges, noise, variation
    chip = chip.replace(adc=chip.adc.replace(bits=5))
    assert chip.adc.calibration_mode.value == "float"
    assert chip.adc.calibration_margin == 0.0
    sim = cimsim.deploy(model, chip, x[:32], seed=3)
    with torch.no_grad():
        y = sim(x[32:36]).double().numpy()
    np.testing.assert_allclose(y, np.array(_GOLDEN), rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# the margin
# ---------------------------------------------------------------------------------------------
def _one_shot_chip(**adc) -> cimsim.ChipConfig:
    """One plane, one slice, ideal cells: conversion (g, n) of an unsigned input is exactly
    Σ_{k in row group g} x[k] · w[n, k]."""
    ideal = cimsim.load_chip("ideal")
    return ideal.replace(
        weight_bits=4, input_bits=4, weight_encoding="signed_cell",
        dac=ideal.dac.replace(bits=None), device=ideal.device.replace(bits_per_cell=3),
        array=ideal.array.replace(n_rows=16, n_cols=16),
        adc=ideal.adc.replace(bits=4, range_policy="calibrated",
                              calibration_granularity="column", calibration_stat="minmax",
                              **adc))


def _oracle_ranges(w, x, n_rows):
    """Per (row group, output) min and max of the exact partial sums."""
    sums = np.stack([x[:, a:a + n_rows] @ w[:, a:a + n_rows].T
                     for a in range(0, w.shape[1], n_rows)])  # (G, M, N)
    return sums.min(axis=1).astype(float), sums.max(axis=1).astype(float), sums


@pytest.mark.parametrize("margin", [0.0, 0.1, 0.5])
def test_margin_widens_each_end_by_its_fraction_of_the_range(margin):
    rng = np.random.default_rng(2)
    w = rng.integers(-7, 8, (6, 40))
    x_cal = rng.integers(0, 16, (50, 40))
    chip = _one_shot_chip(calibration_margin=margin)
    layer = engine.calibrate(program(w, chip), x_cal)
    lo, hi, _ = _oracle_ranges(w, x_cal, 16)
    width = hi - lo
    # signed weights: the ideal column reaches far beyond the data, nothing stops the margin
    assert layer.fs_lo < (lo - margin * width).min() and layer.fs_hi > (hi + margin * width).max()
    want = grid(lo - margin * width, hi + margin * width, 16, True)
    np.testing.assert_allclose(layer.adc.lo, want[0], rtol=1e-12)
    np.testing.assert_allclose(layer.adc.delta, want[1], rtol=1e-12)


def test_margin_stops_at_what_an_ideal_column_can_produce():
    lo, hi = np.array([[0.0, 2.0, -5.0]]), np.array([[10.0, 12.0, 5.0]])
    new_lo, new_hi = widen(lo, hi, 0.25, fs_lo=0.0, fs_hi=13.0)
    # 2 - 2.5 stops at 0; -5 is beyond fs_lo already and stays
    np.testing.assert_array_equal(new_lo, [[0.0, 0.0, -5.0]])
    np.testing.assert_array_equal(new_hi, [[12.5, 13.0, 7.5]])  # 12 + 2.5 stops at 13
    same = widen(lo, hi, 0.0)
    assert same[0] is lo and same[1] is hi


# ---------------------------------------------------------------------------------------------
# the clip counter
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["numba", "numpy"])
@pytest.mark.parametrize("kind", ["sar", "ramp"])
def test_clip_counter_equals_an_independent_count(kernel, kind):
    rng = np.random.default_rng(3)
    w = rng.integers(-7, 8, (5, 37))
    chip = _one_shot_chip(kind=kind)
    layer = engine.calibrate(program(w, chip), rng.integers(0, 8, (30, 37)))  # narrow inputs
    x = rng.integers(0, 16, (200, 37))  # wider ones: some conversions clip
    res = engine.run_detailed(layer, x, kernel=kernel)
    _, _, sums = _oracle_ranges(w, x, 16)  # (G, M, N): conversion (g, n) per vector
    t = layer.adc
    if kind == "sar":
        below = t.lo - 0.5 * t.delta
        above = t.lo + (chip.adc.n_codes - 0.5) * t.delta
    else:  # half the outer level spacing beyond the outer levels
        r = t.lvl
        below = r[..., 0] - 0.5 * (r[..., 1] - r[..., 0])
        above = r[..., -1] + 0.5 * (r[..., -1] - r[..., -2])
    want = int(((sums < below[:, None, :]) | (sums > above[:, None, :])).sum())
    assert 0 < want < sums.size
    assert res.n_clipped == want
    assert res.n_conversions == sums.size
    np.testing.assert_array_equal(res.y, engine.run(layer, x, kernel=kernel)[0])


def test_clip_counts_reach_the_layer_work_and_the_report():
    model, x = _clipping_model()
    sim = cimsim.deploy(model, _clipping_chip("float"), x)
    with torch.no_grad():
        sim(x)
    works = sim.works()
    layers = sim.report().layers
    for w, pct in zip(works, layers["adc_clip_pct"], strict=True):
        assert w.n_adc_clipped == pytest.approx(w.adc_clip_fraction * w.n_adc_conversions)
        assert pct == pytest.approx(100.0 * w.adc_clip_fraction)
    assert works[1].n_adc_clipped > 0
    sim.reset()
    assert all(w.n_adc_clipped == 0 for w in sim.works())


# ---------------------------------------------------------------------------------------------
# capacity from the shapes
# ---------------------------------------------------------------------------------------------
class _NeverRun(nn.Module):
    """Far over a one-array chip; any forward (the calibration pass) is an error."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(300, 200), nn.Linear(200, 10)

    def forward(self, x):
        raise AssertionError("the calibration pass ran")


class _Untouchable:
    def __iter__(self):
        raise AssertionError("the calibration data was read")


def test_capacity_is_checked_from_the_shapes_before_any_forward_issue16():
    ideal = cimsim.load_chip("ideal")
    chip = ideal.replace(array=ideal.array.replace(n_rows=32, n_cols=32, n_tiles=1,
                                                   arrays_per_tile=1))
    with pytest.raises(CapacityError, match="arrays"):
        cimsim.deploy(_NeverRun(), chip, _Untouchable())


@pytest.mark.parametrize("changes", [
    {},
    {"weight_encoding": "twos_complement"},
    {"weight_encoding": "offset"},
    {"differential_readout": "digital"},
    {"quant": {"weight_granularity": "column"}},
    {"array": {"kernel_preserving_tiling": True}},
])
def test_arrays_from_the_shapes_equal_the_programmed_ones(changes):
    chip = cimsim.load_chip("rram-22nm")
    chip = chip.replace(array=chip.array.replace(n_rows=20, n_cols=12))
    for key, value in changes.items():
        chip = chip.replace(**{key: getattr(chip, key).replace(**value)
                               if isinstance(value, dict) else value})
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 4, 3, groups=2),
                          nn.Flatten(), nn.Linear(4 * 16, 7))
    sim = cimsim.deploy(model, chip, torch.randn(4, 3, 8, 8))
    for layer in sim.sim_layers.values():
        for core in layer.cores:
            assert core.n_arrays == n_arrays_for_shape(core.shape[0], core.row_tiles, chip)
    assert sim.arrays_needed == sum(w.n_arrays for w in sim.works())

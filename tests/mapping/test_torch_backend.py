"""``cimsim.deploy(..., backend="torch", device=...)`` (issue 14, item 4): the programmed parts
run by torch compute what the Numba engine computes (noise-free: bit for bit on the CPU, lossy
chips and ageing devices included), count the same events and clipped conversions, and draw
noise of the same distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import cimsim
from cimsim.errors import ConfigError
from tests.conftest import ideal_chip


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 25, 5))


def _chip(kind: str, **noise):
    if kind == "ideal":
        return ideal_chip(n_rows=16, n_cols=32)
    adc = dict(bits=5, range_policy="calibrated", calibration_granularity="column",
               gain_error=0.01, offset_error_lsb=0.1)
    if kind == "ramp":
        adc.update(kind="ramp", level_fit="kmeans")
    chip = ideal_chip(encoding="differential", bits_per_cell=2, input_bits=6, weight_bits=6,
                      n_rows=16, n_cols=32, rows_per_conversion=8, on_off_ratio=20.0,
                      variation="lognormal", variation_sigma=0.1, p_stuck_on=0.01,
                      p_stuck_off=0.01, adc=adc, noise=noise)
    if kind == "column":
        chip = chip.replace(quant=chip.quant.replace(weight_granularity="column"))
    if kind == "slices":  # analog slice read-out: the weighting network's events too
        chip = chip.replace(array=chip.array.replace(slice_readout="analog"))
    return chip


def _pair(chip):
    x = torch.randn(24, 2, 5, 5)
    numba = cimsim.deploy(_model(), chip, x, seed=2)
    torch_sim = cimsim.deploy(_model(), chip, x, seed=2, backend="torch", device="cpu")
    return numba, torch_sim, x


@pytest.mark.parametrize("kind", ["ideal", "linear", "ramp", "column", "slices"])
def test_torch_backend_equals_the_engine_noise_free(kind):
    numba, sim, x = _pair(_chip(kind))
    assert sim.backend == "torch"
    # the engine's float32 GEMM operands, its order of sums: equal bit for bit, lossy too
    np.testing.assert_array_equal(sim(x).numpy(), numba(x).numpy())
    assert_same_counts(numba, sim)


@pytest.mark.parametrize("kind", ["ramp", "sar"])
def test_an_adc_fused_with_the_relu_runs_as_the_engines(kind):
    """The BS-KMQ setting: a layer-output converter, fused with the following ReLU, is the
    layer's activation quantizer (per-output thresholds and levels); refused by the torch
    backend before 2026-12-02, now converted as the engine converts it, with variation."""
    ideal = cimsim.load_chip("ideal")
    chip = ideal.replace(
        weight_bits=4, dac=ideal.dac.replace(bits=None),
        device=ideal.device.replace(bits_per_cell=3, variation="lognormal",
                                    variation_sigma=0.1),
        array=ideal.array.replace(n_rows=64, n_cols=64),
        adc=ideal.adc.replace(kind=kind, bits=3, range_policy="calibrated",
                              placement="layer_output", fuse_activation=True))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 3))
    x = torch.randn(40, 12)
    numba = cimsim.deploy(model, chip, x, seed=2)
    sim = cimsim.deploy(model, chip, x, seed=2, backend="torch", device="cpu")
    assert numba.fused_activations == sim.fused_activations and numba.fused_activations
    np.testing.assert_array_equal(sim(x).numpy(), numba(x).numpy())
    assert_same_counts(numba, sim)


def assert_same_counts(numba, sim) -> None:
    """Every event, every clipped conversion, the report's energy, latency and area."""
    for w1, w2 in zip(numba.works(), sim.works(), strict=True):
        assert set(w1.events) == set(w2.events)
        for key, value in w1.events.items():
            assert w2.events[key] == pytest.approx(value, rel=1e-12), key
        assert w1.n_adc_clipped == w2.n_adc_clipped
    r1, r2 = numba.report(), sim.report()
    for key in ("energy_pj_per_inference", "latency_ns_per_inference", "area_mm2"):
        assert r2.totals[key] == pytest.approx(r1.totals[key], rel=1e-9), key


def test_torch_backend_noise_has_the_engine_distribution():
    chip = _chip("linear", thermal_sigma_lsb=0.8, read_noise_rel=0.05)
    numba, sim, x = _pair(chip)
    xs = x[:1].repeat(600, 1, 1, 1)
    a, b = numba(xs)[:, 0].numpy(), sim(xs)[:, 0].numpy()
    assert a.std() > 0
    assert stats.ks_2samp(a, b).pvalue > 1e-3
    assert abs(b.std() / a.std() - 1) < 0.15


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(backend="jax"), "backend = 'jax' is invalid; allowed: 'numba', 'torch'"),
    (dict(device="cuda:0"), "needs backend = 'torch'"),
    (dict(backend="torch", device="tpu"), "device = 'tpu' is not a torch device"),
    # torch knows these devices, this build or machine has none (mps, xpu) or it holds no
    # values (meta): deploy ran its whole calibration before torch's own error
    (dict(backend="torch", device="meta"), "device = 'meta' holds no values"),
    *[(dict(backend="torch", device=d), f"device = '{d}' cannot run the simulation here")
      for d in ("mps", "xpu") if not getattr(torch, d).is_available()],
])
def test_bad_backend_or_device_is_refused_before_the_work(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        cimsim.deploy(_model(), _chip("linear"), torch.randn(4, 2, 5, 5), **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_backend_on_cuda_equals_the_engine():
    numba, _, x = _pair(_chip("linear"))
    sim = cimsim.deploy(_model(), _chip("linear"), x, seed=2, backend="torch", device="cuda")
    assert all(c.torch_core.device.type == "cuda" for layer in sim.sim_layers.values()
               for c in layer.cores)
    # cuBLAS sums the float32 GEMM of programmed conductances in its own order: a value
    # within ~1e-7 of a code boundary may convert a code apart (docs/performance.md)
    assert np.isclose(sim(x).numpy(), numba(x).numpy(), rtol=1e-6, atol=1e-6).mean() >= 0.99
    assert sim.report().totals["energy_pj_per_inference"] == pytest.approx(
        numba.report().totals["energy_pj_per_inference"], rel=1e-9)


# ---------------------------------------------------------------------------------------------
# Devices that age (docs/drift.md): the parts at their time, the compensation's gains
# ---------------------------------------------------------------------------------------------
DAY, YEAR = 86400.0, 365.0 * 86400.0


def _pcm(compensation: str, q_s: bool = False, thermal: float = 0.0):
    """The ``pcm-22nm`` preset (drift, retention; 1/f read noise with ``q_s``), its thermal
    noise ``thermal``, with drift compensation ``compensation``."""
    chip = cimsim.load_chip("pcm-22nm")
    dev = chip.device.replace(drift_compensation=compensation)
    if not q_s:
        dev = dev.replace(read_noise_q_s=[])
    return chip.replace(device=dev, noise=chip.noise.replace(thermal_sigma_lsb=thermal))


def _pcm_model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(40, 24), nn.ReLU(), nn.Linear(24, 6))


@pytest.mark.parametrize("compensation", ["none", "global", "column"])
def test_torch_backend_equals_the_engine_on_drifted_pcm_at_any_time(compensation):
    chip = _pcm(compensation)
    assert chip.device.ages and any(chip.device.drift_nu_mean)
    x = torch.randn(32, 40)
    numba = cimsim.deploy(_pcm_model(), chip, x, seed=5)
    sim = cimsim.deploy(_pcm_model(), chip, x, seed=5, backend="torch")
    y0 = numba(x).numpy()
    np.testing.assert_array_equal(sim(x).numpy(), y0)
    for t in (3600.0, DAY, YEAR, 10 * YEAR):  # the same deployment seen later (set_time)
        numba.set_time(t)
        sim.set_time(t)
        y = numba(x).numpy()
        np.testing.assert_array_equal(sim(x).numpy(), y)
        if t >= YEAR and compensation == "none":  # the devices did move
            assert not np.array_equal(y, y0)
    assert_same_counts(numba, sim)
    if compensation != "none":  # the gains' multiplies and the calibration reads counted
        keys = {k.action.value for w in sim.works() for k in w.events}
        assert {"drift_gain_multiply", "drift_calibration"} <= keys


def test_torch_backend_deploys_at_a_time_as_the_engine():
    chip = _pcm("column")
    x = torch.randn(16, 40)
    numba = cimsim.deploy(_pcm_model(), chip, x, seed=1, t_inference_s=30 * DAY)
    sim = cimsim.deploy(_pcm_model(), chip, x, seed=1, t_inference_s=30 * DAY, backend="torch")
    np.testing.assert_array_equal(sim(x).numpy(), numba(x).numpy())
    assert_same_counts(numba, sim)


def test_torch_backend_read_noise_of_aged_devices_has_the_engines_distribution():
    """1/f read noise grown over a year (a per-output variance, ``gemm_var``) plus thermal
    noise: per output, the mean and the variance over many draws agree with the engine's."""
    chip = _pcm("global", q_s=True, thermal=0.3)
    x = torch.randn(8, 40)
    numba = cimsim.deploy(_pcm_model(), chip, x, seed=4, t_inference_s=YEAR)
    sim = cimsim.deploy(_pcm_model(), chip, x, seed=4, t_inference_s=YEAR, backend="torch")
    layer = next(iter(numba.sim_layers.values())).cores[0]
    assert layer.view.parts[0][2].gemm_var is not None  # read noise is on
    torch.manual_seed(0)
    xs = x[:1].repeat(1500, 1)
    a, b = numba(xs).numpy(), sim(xs).numpy()  # (draws, outputs)
    assert (a.std(axis=0) > 0).all()
    for j in range(a.shape[1]):
        assert stats.ks_2samp(a[:, j], b[:, j]).pvalue > 1e-4, j
    # means within 4 standard errors, variances within 15 %
    se = np.sqrt(a.var(axis=0) / len(a) + b.var(axis=0) / len(b))
    assert (np.abs(a.mean(axis=0) - b.mean(axis=0)) < 4 * se + 1e-12).all()
    np.testing.assert_allclose(b.var(axis=0) / a.var(axis=0), 1.0, atol=0.15)


def test_torch_backend_partial_sums_round_as_the_engines_float32_gemm():
    """Programmed conductances are float32 and the engine multiplies them in float32 (its
    ``_gemm.choose``): the backend's analog values are the engine's bit for bit, not the float64
    product of the same operands (which differs in the last bits on 256-row groups, enough to
    move a value near an ADC boundary across it)."""
    from cimsim import engine
    from cimsim.arrays.program import program
    from cimsim.mapping.torch_backend import _Part
    from cimsim.train.twin import input_planes

    chip = ideal_chip(encoding="differential", bits_per_cell=2, input_bits=4, weight_bits=6,
                      n_rows=256, n_cols=64, on_off_ratio=20.0, variation="lognormal",
                      variation_sigma=0.1)
    rng = np.random.default_rng(0)
    w = rng.integers(-31, 32, size=(8, 300))
    x = rng.integers(0, 16, size=(40, 300))
    layer = program(w, chip, np.random.default_rng(1))
    assert layer.gemm_matrix.dtype == np.float32
    part = _Part(layer, torch.device("cpu"))  # the engine's GEMM call
    device_part = _Part(layer, torch.device("cpu"), engine_gemm=False)  # the path on CUDA
    assert "float32" in part.kinds
    planes = input_planes(torch.as_tensor(x, dtype=torch.float64), chip, False)
    flat = planes.reshape(-1, 300)
    float64_differs = False
    for blk in engine.analog_values(layer, x):
        got = part.analog(flat, blk.group, planes.shape[0]).numpy()
        np.testing.assert_array_equal(got, blk.values)
        # torch's float32 GEMM on the CPU: the same BLAS call (on CUDA, cuBLAS's order)
        np.testing.assert_array_equal(
            device_part.analog(flat, blk.group, planes.shape[0]).numpy(), blk.values)
        k0, k1, _ = layer.groups[blk.group]
        ps64 = (flat[:, k0:k1].numpy() @ layer.gemm_matrix[k0:k1].astype(np.float64))
        # a differential pair merged in one GEMM column, no off-state current: a = ps[pos]
        ps64 = ps64.reshape(got.shape[0], 40, -1)[..., part.pos]
        float64_differs |= not np.array_equal(ps64, got)
    assert float64_differs  # the test would see a float64 GEMM


def test_torch_backend_equals_the_engine_on_recurrent_layers_and_cells():
    """W_ih / W_hh of a whole-sequence LSTM and of cells stepped by hand (their states fed
    back through the simulated products) on the lossy chip: bit for bit, the same events."""

    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 5)
            self.cell = nn.GRUCell(5, 4)
            self.rnn = nn.RNNCell(4, 4)

        def forward(self, x):  # (T, B, 3)
            y, _ = self.lstm(x)
            g = r = None
            for t in range(x.shape[0]):
                g = self.cell(y[t], g)
                r = self.rnn(g, r)
            return r

    torch.manual_seed(0)
    model = Recurrent().eval()
    chip, x = _chip("linear"), torch.randn(4, 6, 3)
    numba = cimsim.deploy(model, chip, x, seed=2, batch_dim=1)
    sim = cimsim.deploy(model, chip, x, seed=2, batch_dim=1, backend="torch", device="cpu")
    np.testing.assert_array_equal(sim(x).numpy(), numba(x).numpy())
    assert_same_counts(numba, sim)


def test_the_numba_engine_takes_the_cpu_however_it_is_named():
    """``device=torch.device("cpu")`` or ``"cpu:0"`` was refused for the Numba engine with
    'needs backend = torch (the Numba engine runs on the CPU)'; a string 'cpu' was not."""
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(8, 4)), torch.randn(16, 8)
    for dev in ("cpu", torch.device("cpu"), "cpu:0"):
        assert cimsim.deploy(model, "ideal", x, seed=0, device=dev).backend == "numba"
    with pytest.raises(ConfigError, match="is not a torch device"):
        cimsim.deploy(model, "ideal", x, seed=0, device="gpu0")
    with pytest.raises(ConfigError, match="needs backend = 'torch'"):
        cimsim.deploy(model, "ideal", x, seed=0, device="meta")


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_a_bad_engine_setting_is_refused_on_either_backend(backend, monkeypatch):
    """CIMSIM_NOISE_SAMPLER=bogus failed the Numba engine's first call and was ignored by the
    torch backend; both refuse it before the work."""
    monkeypatch.setenv("CIMSIM_NOISE_SAMPLER", "bogus")
    model, x = nn.Sequential(nn.Linear(8, 4)), torch.randn(16, 8)
    with pytest.raises(ConfigError, match="CIMSIM_NOISE_SAMPLER = 'bogus'"):
        cimsim.deploy(model, "rram-22nm", x, seed=0, backend=backend)


def test_a_conversion_exactly_half_a_step_beyond_the_grid_is_not_clipped():
    """Clipped means an error beyond the half step rounding alone makes (``ADCTables.
    clip_bounds``): an analog value exactly at ``lo - Δ/2`` or ``lo + (n - 1/2)·Δ`` converts to
    the end code with half a step of error, unclipped, in the engine and in the torch backend
    alike (a '<=' there counted it). A fixed 2-b range 0..6 (Δ = 2, bounds -1 and 7) read by
    an analog pair of rows of +1 and -1 weights: sums of 7 and -1 sit on the bounds."""
    from cimsim.arrays import program
    from cimsim.engine import run_detailed
    from cimsim.mapping.torch_backend import _Part

    ideal = cimsim.load_chip("ideal")
    chip = ideal.replace(weight_bits=2, input_bits=1, dac=ideal.dac.replace(bits=1),
                         device=ideal.device.replace(bits_per_cell=1),
                         array=ideal.array.replace(n_rows=16, n_cols=16),
                         adc=ideal.adc.replace(bits=2, range_policy="fixed", fixed_lo=0.0,
                                               fixed_hi=6.0))
    layer = program(np.array([[1] * 8, [-1] * 8]), chip, np.random.default_rng(0))
    lo, hi = layer.adc.clip_bounds(chip.adc.n_codes)
    assert (float(lo[0, 0]), float(hi[0, 0])) == (-1.0, 7.0)
    part = _Part(layer, torch.device("cpu"))
    # ones: outputs (n, -n); 7 -> +7 on the bound, -7 beyond; 1 -> -1 on the bound
    for ones, clipped in ((7, 1), (1, 0), (8, 2)):
        x = np.zeros((1, 8), dtype=np.int64)
        x[0, :ones] = 1
        want = run_detailed(layer, x)
        got = part.run(torch.from_numpy(x).double())
        assert want.n_clipped == got.n_clipped == clipped, ones
        np.testing.assert_array_equal(got.y, want.y)

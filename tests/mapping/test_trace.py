"""``SimModel.trace``: per-layer fidelity against independent computations (issue 17).

The oracles here quantize with ``cimsim.mapping.quant`` and multiply in NumPy; nothing runs
through the simulator's engine or its trace sums.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.cli import main
from cimsim.config import ChipConfig
from cimsim.mapping import quant

COLUMNS = ["sqnr_db", "rel_error", "cosine", "accum_rel_error", "accum_cosine", "adc_clip_pct",
           "adc_code_use_pct"]


def _exact_weights(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Weights on the 8-bit grid of their row (step 0.01, each row reaching 1.27): per-channel
    weight quantization is exact, so the only quantization error is the inputs'."""
    w = rng.integers(-127, 128, size=(n, k)).astype(np.float64)
    w[:, 0] = 127
    return w * 0.01


def _linear(w: np.ndarray, b: np.ndarray | None) -> nn.Linear:
    lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
        if b is not None:
            lin.bias.copy_(torch.from_numpy(b))
    return lin


def _f32(y: np.ndarray) -> np.ndarray:
    """What a layer hands on: its float64 result cast to the model's float32."""
    return y.astype(np.float32).astype(np.float64)


def _quantized(x: np.ndarray, x_cal: np.ndarray, bits: int, chip: ChipConfig) -> np.ndarray:
    """``x`` through the activation quantizer calibrated (max |x|) on ``x_cal``, dequantized."""
    signed = bool(np.min(x_cal) < 0)
    s_x = quant.act_scale(float(np.abs(x_cal).max()), x_cal, bits, signed, chip.quant)
    return quant.quantize_acts(x, s_x, bits, signed).astype(np.float64) * s_x


def _sqnr_db(y: np.ndarray, ref: np.ndarray) -> float:
    return 10.0 * math.log10(float(np.sum(ref**2)) / float(np.sum((y - ref) ** 2)))


def _rel(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


def _cos(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.sum(y * ref) / (np.linalg.norm(y) * np.linalg.norm(ref)))


def test_lossless_chip_sqnr_is_the_input_quantization():
    """On ``ideal`` with exact weights, each layer's SQNR, relative error and cosine are those
    of quantizing its (simulated) input; the accumulated error of layer 2 is against the float
    model's layer-2 output."""
    chip = cimsim.load_chip("ideal").replace(input_bits=5)
    rng = np.random.default_rng(0)
    w1, b1 = _exact_weights(rng, 7, 9), rng.normal(size=7)
    w2, b2 = _exact_weights(rng, 4, 7), rng.normal(size=4)
    model = nn.Sequential(_linear(w1, b1), nn.ReLU(), _linear(w2, b2)).float()
    x_cal = torch.randn(300, 9)
    x = torch.randn(200, 9)
    sim = cimsim.deploy(model, chip, x_cal, seed=1)
    frame = sim.trace(x, batch_size=64)

    xc, xs = x_cal.double().numpy(), x.double().numpy()
    # layer 1: the float layer and the simulated one read the same x
    y1_f = xs @ w1.T + b1
    y1_s = _quantized(xs, xc, 5, chip) @ w1.T + b1
    # layer 2: calibrated on the float pass's activations; fed the simulated ones
    h_cal = np.maximum(_f32(xc @ w1.T + b1), 0.0)
    h_sim = np.maximum(_f32(y1_s), 0.0)
    y2_f = h_sim @ w2.T + b2
    y2_s = _quantized(h_sim, h_cal, 5, chip) @ w2.T + b2
    y2_float_model = np.maximum(_f32(y1_f), 0.0) @ w2.T + b2

    r1, r2 = frame.iloc[0], frame.iloc[1]
    assert list(frame["layer"]) == ["0", "2"]
    assert set(COLUMNS) <= set(frame.columns)
    assert r1.sqnr_db == pytest.approx(_sqnr_db(y1_s, y1_f), abs=1e-6)
    assert r2.sqnr_db == pytest.approx(_sqnr_db(y2_s, y2_f), abs=1e-6)
    assert r1.rel_error == pytest.approx(_rel(y1_s, y1_f), rel=1e-6)
    assert r2.cosine == pytest.approx(_cos(y2_s, y2_f), abs=1e-9)
    assert r2.accum_rel_error == pytest.approx(_rel(y2_s, y2_float_model), rel=1e-6)
    assert r2.accum_cosine == pytest.approx(_cos(y2_s, y2_float_model), abs=1e-9)
    # the first layer reads the model's input in both runs: nothing accumulated before it
    assert r1.accum_rel_error == r1.rel_error
    assert r1.accum_cosine == r1.cosine
    # a 24-bit full-scale ADC never clips
    assert (frame["adc_clip_pct"] == 0.0).all()
    assert (frame["n_trace_vectors"] == 200).all()


def _one_plane_chip(**noise) -> ChipConfig:
    """``ideal`` with 6-bit unsigned inputs in one DAC plane and 7-bit cells: one conversion
    per output of unit significance, a 1-LSB ADC step."""
    c = cimsim.load_chip("ideal")
    return c.replace(input_bits=6, dac=c.dac.replace(bits=6),
                     device=c.device.replace(bits_per_cell=7), noise=c.noise.replace(**noise))


def test_thermal_noise_sqnr_matches_the_analytic_expectation():
    """Thermal noise σ (cell-LSB) on each conversion, then the ADC's 1-LSB rounding (dithered
    by the noise: Δ²/12): output n of each vector has error variance (σ² + 1/12)·(s_x·s_w[n])²;
    inputs and weights are on their grids, so nothing else errs."""
    sigma = 2.0
    chip = _one_plane_chip(thermal_sigma_lsb=sigma)
    rng = np.random.default_rng(4)
    w = _exact_weights(rng, 16, 20)
    k = rng.integers(0, 64, size=(3000, 20))
    k[0] = 63  # the calibration max: s_x = 0.05
    x = torch.tensor(k * 0.05, dtype=torch.float32)
    sim = cimsim.deploy(nn.Sequential(_linear(w, None)), chip, x, seed=7)
    row = sim.trace(x, batch_size=1000).iloc[0]

    s_x = 63 * 0.05 / 63
    y = x.double().numpy() @ w.T
    noise_energy = x.shape[0] * (sigma**2 + 1.0 / 12.0) * s_x**2 * 16 * 0.01**2
    expected_db = 10.0 * math.log10(float(np.sum(y**2)) / noise_energy)
    # 48 000 noisy outputs: the error energy's relative spread is sqrt(2/48000) ~ 0.03 dB
    assert row.sqnr_db == pytest.approx(expected_db, abs=0.2)
    assert row.adc_clip_pct == 0.0


def test_code_utilization_known_answer():
    """One weight, one conversion, a 1-LSB linear ADC: each distinct input integer is one
    code, so three distinct inputs use 3 of the 2^24 codes."""
    chip = _one_plane_chip()
    model = nn.Sequential(_linear(np.array([[1.27]]), None))
    x_cal = torch.tensor([[0.0], [63 * 0.05]])
    sim = cimsim.deploy(model, chip, x_cal, seed=0)
    x = torch.tensor([[0.0], [5 * 0.05], [9 * 0.05]] * 20, dtype=torch.float32)
    row = sim.trace(x).iloc[0]
    assert row.adc_code_use_pct == pytest.approx(100.0 * 3 / 2**24, rel=1e-12)
    # inputs and weight on their grids: exact up to the float32 inputs' rounding
    assert row.sqnr_db > 120.0


def test_trace_leaves_the_work_alone_and_feeds_the_report(tmp_path):
    """The trace adds no events or inferences; the report carries its columns and its plot."""
    chip = cimsim.load_chip("ideal").replace(input_bits=5)
    rng = np.random.default_rng(2)
    model = nn.Sequential(_linear(_exact_weights(rng, 6, 8), None), nn.ReLU(),
                          _linear(_exact_weights(rng, 3, 6), None)).float()
    x = torch.randn(50, 8)
    sim = cimsim.deploy(model, chip, x, seed=0)
    sim(x[:10])
    before = sim.work()
    sim.trace(x)
    after = sim.work()
    assert after.n_inferences == before.n_inferences == 10
    for a, b in zip(after.layers, before.layers, strict=True):
        assert dict(a.events) == dict(b.events)
    report = sim.report()
    assert set(COLUMNS) <= set(report.layers.columns)
    assert list(report.layers["sqnr_db"]) == list(sim.fidelity["sqnr_db"])
    saved = [p.name for p in report.save(tmp_path)]
    assert "fidelity_per_layer.png" in saved
    assert (tmp_path / "fidelity_per_layer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_table_and_files_carry_the_sqnr(tmp_path, capsys):
    assert main(["demo", "--fast", "--chip", "ideal", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.lstrip().startswith("layer"))
    assert "sqnr_dB" in header.split()
    import pandas as pd

    layers = pd.read_csv(tmp_path / "layers.csv")
    assert set(COLUMNS) <= set(layers.columns)
    assert (layers["sqnr_db"] > 20).all()  # 8-bit quantization only


@pytest.mark.filterwarnings("ignore:.*its weights are all zero")
def test_a_layer_whose_float_output_is_zero_has_zero_relative_error():
    """A zero weight matrix: y_f = 0 and the lossless simulation gives 0 too, so the relative
    error is 0 (it was NaN, 0/0, indistinguishable from a layer never reached)."""
    chip = cimsim.load_chip("ideal").replace(input_bits=5)
    model = nn.Sequential(_linear(np.zeros((3, 4)), None))
    x = torch.randn(40, 4)
    row = cimsim.deploy(model, chip, x, seed=0).trace(x).iloc[0]
    assert row.rel_error == 0.0
    assert row.accum_rel_error == 0.0
    assert row.n_trace_vectors == 40
    assert row.sqnr_db == math.inf  # exact, as the table says (it was NaN: "never reached")


def test_an_all_zero_reference_gives_inf_or_minus_inf_sqnr():
    """Zero inputs through a layer without bias: its float output is all zeros. Exact on
    `ideal` (sqnr inf); an error on a lossy chip (rel_error inf, sqnr -inf), not NaN."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 8, bias=False), nn.ReLU(),
                          nn.Linear(8, 3, bias=False)).eval()
    cal = torch.randn(16, 12)
    exact = cimsim.deploy(model, "ideal", cal, seed=0).trace(torch.zeros(4, 12))
    assert (exact.sqnr_db == math.inf).all() and (exact.rel_error == 0.0).all()
    chip = cimsim.load_chip("rram-22nm")
    lossy = cimsim.deploy(model, chip, cal, seed=0).trace(torch.zeros(4, 12)).iloc[0]
    if lossy.rel_error == math.inf:
        assert lossy.sqnr_db == -math.inf
    else:
        assert lossy.rel_error == 0.0 and lossy.sqnr_db == math.inf


def test_input_clipping_known_answer():
    """Inputs the input quantizer saturates are counted (``input_clip_pct``): calibrated on
    [0, 2] (unsigned, s_x = 2/255), a 3.0 and a -0.1 saturate, a value 0.45 steps above 2.0
    rounds to the top code and does not; the report gives the run's share, the trace its own,
    and the trace leaves the run's counts as they were."""
    chip = cimsim.load_chip("ideal")
    model = nn.Sequential(_linear(np.array([[1.0, 1.0]]), None))
    sim = cimsim.deploy(model, chip, torch.tensor([[0.0, 0.0], [1.0, 2.0]]), seed=0)
    s_x = 2.0 / 255
    x = torch.tensor([[3.0, 0.5], [-0.1, 1.0], [2.0 + 0.45 * s_x, 0.0]], dtype=torch.float64)
    sim(x.float())
    assert sim.work().layers[0].n_input_clipped == 2
    assert sim.work().layers[0].n_input_values == 6
    assert sim.report().layers["input_clip_pct"].iloc[0] == pytest.approx(100 * 2 / 6)
    assert sim.trace(x[:2].float())["input_clip_pct"].iloc[0] == pytest.approx(100 * 2 / 4)
    assert sim.work().layers[0].n_input_clipped == 2
    assert sim.report().layers["input_clip_pct"].iloc[0] == pytest.approx(100 * 2 / 6)


def test_saturated_inputs_counted_by_hand():
    """quantize_acts_counted / block_fp_acts_counted: the codes quantize_acts / block_fp_acts
    give, and the inputs whose code lay outside the range before the clip."""
    x = np.array([[-1.0, 0.5, 3.0, 1.0]])
    codes, n = quant.quantize_acts_counted(x, 1 / 100, 8, False)
    assert n == 2 and codes.tolist() == [[0, 50, 255, 100]]
    assert np.array_equal(codes, quant.quantize_acts(x, 1 / 100, 8, False))
    codes, n = quant.quantize_acts_counted(x, 1 / 100, 8, False, zero_point=-128)  # A-shift
    assert n == 2 and codes.tolist() == [[-128, -78, 127, -28]]
    # block FP, 4-b signed (|code| <= 7): 7.6 is the block's max, X = 0, rounds to 8
    codes, exps, n = quant.block_fp_acts_counted(np.array([[7.6, 1.0]]), 4, True, 8, [(0, 2)])
    assert n == 1 and codes.tolist() == [[7, 1]] and exps.tolist() == [[0]]
    # 4-b unsigned: the negative value of the block saturates at 0
    codes, exps, n = quant.block_fp_acts_counted(np.array([[-1.0, 2.0]]), 4, False, 8, [(0, 2)])
    assert n == 1 and codes.tolist() == [[0, 8]] and exps.tolist() == [[-2]]


def test_the_summary_names_layers_whose_inputs_clip():
    """demo / simulate print a line naming the layers whose inputs saturate above 1 %."""
    import types

    import pandas as pd

    from cimsim.cli import _input_clipping_notice

    layers = pd.DataFrame({"layer": ["a", "b", "c"], "input_clip_pct": [0.5, 3.25, float("nan")]})
    line = _input_clipping_notice(types.SimpleNamespace(layers=layers, notes=[]))
    assert line.startswith("\ninput clipping above 1 % of inputs: b (3.2 %); the run's "
                           "activations exceed the input ranges set on the calibration data")
    assert _input_clipping_notice(types.SimpleNamespace(layers=layers[:1], notes=[])) == ""


def test_the_summary_names_layers_of_low_sqnr_with_the_likely_cause():
    """A chip written with the default full-scale ADC range over 64 rows ran a small attention
    model at 2-4 dB per layer (16 % accuracy where float gives 94 %) with nothing said but the
    table's column; 'calibrated' gave 96 %. The line names the layers and, from their code use,
    whether the range or the chip's noise is the likely cause."""
    import types

    import pandas as pd

    from cimsim.cli import _fidelity_notice

    full, cal = cimsim.load_chip("ideal"), cimsim.load_chip("rram-22nm")
    layers = pd.DataFrame({"layer": ["a", "b", "c", "(reprogramming)"],
                           "sqnr_db": [2.25, 25.0, 4.0, float("nan")],
                           "adc_code_use_pct": [3.0, 50.0, 9.4, float("nan")]})
    line = _fidelity_notice(types.SimpleNamespace(layers=layers, chip=full))
    assert line.startswith("\nSQNR below 10 dB: a (2.2 dB, 3 % of ADC codes used), c (4.0 dB, "
                           "9 % of ADC codes used); their ADC ranges are far wider than their "
                           "signals (few codes used: adc.range_policy = 'full_scale' spans the "
                           "columns' worst case), adc.range_policy = 'calibrated' fits them")
    line = _fidelity_notice(types.SimpleNamespace(layers=layers, chip=cal))
    assert "(few codes used; adc.range_policy = 'calibrated'), a narrower range" in line
    noisy = layers.assign(adc_code_use_pct=[40.0, 50.0, 30.0, float("nan")])
    line = _fidelity_notice(types.SimpleNamespace(layers=noisy, chip=cal))
    assert line.startswith("\nSQNR below 10 dB: a (2.2 dB, 40 % of ADC codes used), c (4.0 dB, "
                           "30 % of ADC codes used); their outputs are set more by the chip's "
                           "noise, variation or drift")
    assert "(noise.thermal_sigma_lsb, device.variation_sigma) than by their signal" in line
    # a chip with no noise, variation or drift was told those were the cause (a user's own
    # noise-free SRAM chip at 26-32 % code use and 0.5-4.8 dB: its 4-b full-scale steps were)
    line = _fidelity_notice(types.SimpleNamespace(layers=noisy, chip=full))
    assert "noise, variation or drift" in line and "set more by" not in line
    assert line.endswith("; the chip has no noise, variation or drift, so their error is the "
                         "converters' steps and clipping: adc.range_policy = 'calibrated' fits "
                         "the range to the signal, more adc.bits or fewer rows per conversion "
                         "narrow the step (docs/hardware-model.md §7)")
    # one layer of each kind: each cause names its layers
    mixed = layers.assign(adc_code_use_pct=[10.0, 50.0, 30.0, float("nan")])
    line = _fidelity_notice(types.SimpleNamespace(layers=mixed, chip=cal))
    assert "; a: their ADC ranges are far wider" in line
    assert "; c: their outputs are set more by the chip's noise" in line
    assert _fidelity_notice(types.SimpleNamespace(layers=layers[1:2], chip=cal)) == ""
    no_trace = layers.drop(columns=["sqnr_db", "adc_code_use_pct"])
    assert _fidelity_notice(types.SimpleNamespace(layers=no_trace, chip=cal)) == ""
    # binary weights: a float model's own quantization comes first (a binary-weight chip
    # scored chance with only the converter range named)
    binary = cimsim.load_chip("published/jia-jssc20")
    line = _fidelity_notice(types.SimpleNamespace(layers=layers, chip=binary))
    assert ("at 1-b weights and 1-b inputs the float model's own quantization is most of the "
            "error: train it for the chip (`cimsim train`, docs/training.md); besides, their "
            "ADC ranges") in line


def test_a_range_that_clips_and_uses_few_codes_is_called_a_misfit_not_too_wide():
    """A ViT head calibrated on one vector per column clipped 18 % of its conversions and used
    11 % of its codes: the line called the range far wider than the signal and advised a
    narrower one, which would clip more."""
    import types

    import pandas as pd

    from cimsim.cli import _fidelity_notice

    layers = pd.DataFrame({"layer": ["head", "fc"], "sqnr_db": [8.7, 4.0],
                           "adc_code_use_pct": [11.0, 9.0], "adc_clip_pct": [18.1, 0.0]})
    line = _fidelity_notice(types.SimpleNamespace(layers=layers,
                                                  chip=cimsim.load_chip("rram-22nm")))
    assert ("; head: their ADC ranges fit neither end of the run's signal (few codes used, yet "
            "clipping): calibrated on too few inputs") in line
    assert "; fc: their ADC ranges are far wider than their signals" in line


def test_leakage_that_is_most_of_the_energy_is_said_with_the_setting_that_gates_it():
    """ADC leakage was 89-97 % of ResNet-18's and MobileNetV2's energy on rram-22nm with only a
    generic note that leakage is charged; the line gives the share and tech.power_gating."""
    import types

    import pandas as pd

    from cimsim.cli import _leakage_notice

    chip = cimsim.load_chip("rram-22nm")
    comp = pd.DataFrame({"action": ["convert", "leak", "leak"],
                         "energy_pj_per_inference": [10.0, 50.0, 40.0]})
    report = types.SimpleNamespace(components=comp, chip=chip,
                                   totals={"energy_pj_per_inference": 100.0})
    assert _leakage_notice(report) == (
        "\nADC leakage is 90 % of the energy per inference: with tech.power_gating = 'none' "
        "every occupied array's converters stay on for the whole inference; --set "
        "tech.power_gating=layer gates them outside their layer's turn, as chips that gate "
        "idle macros do (docs/cost-model.md, Power gating)")
    gated = chip.replace(tech=chip.tech.replace(power_gating="layer"))
    assert _leakage_notice(types.SimpleNamespace(components=comp, chip=gated,
                                                 totals=report.totals)) == ""
    half = comp.assign(energy_pj_per_inference=[50.0, 25.0, 25.0])
    assert _leakage_notice(types.SimpleNamespace(components=half, chip=chip,
                                                 totals=report.totals)) == ""


def test_trace_shows_progress_over_its_forwards(monkeypatch):
    """The CLI's trace of a large model ran minutes in silence after the accuracies."""
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    x = torch.randn(10, 6)
    sim = cimsim.deploy(model, "rram-22nm", x, progress=False)
    monkeypatch.setattr(sys, "stderr", Terminal())
    sim.trace(x, batch_size=4, progress=True)
    assert "fidelity trace:   0%|" in sys.stderr.getvalue() and "| 0/6 " in sys.stderr.getvalue()
    monkeypatch.setattr(sys, "stderr", Terminal())
    sim.trace(x, batch_size=4)
    assert sys.stderr.getvalue() == ""


def test_the_sqnr_line_follows_learned_ranges_and_exact_digital_columns():
    """After training the SQNR line told the user to calibrate on more inputs beside a clipping
    line saying the ranges were learned; on a digital adder-tree chip it advised a calibrated
    ADC range and more adc.bits for an exact sum."""
    import types

    import pandas as pd

    from cimsim.cli import _fidelity_notice
    from cimsim.report import LEARNED_RANGES_NOTE

    layers = pd.DataFrame({"layer": ["head"], "sqnr_db": [6.0], "adc_code_use_pct": [10.0],
                           "adc_clip_pct": [5.0]})
    rram = cimsim.load_chip("rram-22nm")
    line = _fidelity_notice(types.SimpleNamespace(layers=layers, chip=rram,
                                                  notes=[LEARNED_RANGES_NOTE]))
    assert line.endswith("; their ADC ranges, the prepared model's learned ones, use few codes: "
                         "train longer, or at more adc.bits (docs/training.md)")
    digital = cimsim.load_chip("published/colonnade-jssc21")
    line = _fidelity_notice(types.SimpleNamespace(layers=layers, chip=digital, notes=[]))
    assert "(6.0 dB, 10 % of sum codes used)" in line
    assert "ranges" not in line and line.count("quantization") == 1 and line.endswith(
        "; the chip's digital columns sum exactly, so their error is the model's quantization to "
        f"{digital.weight_bits}-b weights and {digital.input_bits}-b inputs: more bits, or train "
        "it for the chip (`cimsim train`, docs/training.md)")


def test_a_simmodel_saved_before_ranges_learned_existed_still_reports():
    """A SimModel pickled before the attribute (unpickling runs no __init__) failed in
    report() with an AttributeError."""
    import pickle

    model = torch.nn.Sequential(torch.nn.Linear(6, 3))
    sim = cimsim.deploy(model, "rram-22nm", torch.randn(8, 6), progress=False)
    sim.__dict__.pop("ranges_learned", None)  # as an older version pickled it
    old = pickle.loads(pickle.dumps(sim))
    old(torch.randn(4, 6))
    assert not old.ranges_learned and old.report().totals["n_inferences"] == 4


class _Routed(nn.Module):
    """Routes every token to the expert, and runs the shared layer as many times, as the
    parity of its forward count says: a trace's float pass and simulated pass route otherwise
    (as a gate the simulation flips does), deterministically."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(6, 6)
        self.experts = nn.ModuleList([nn.Linear(6, 6), nn.Linear(6, 6)])
        self.shared = nn.Linear(6, 6)
        self.calls = 0
        self.mode = "both"  # calibrated on both experts

    def forward(self, x):
        turn = self.calls % 2 if self.mode == "alternate" else 0
        self.calls += 1
        h = torch.relu(self.first(x))
        h = (self.experts[0](h) + self.experts[1](h) if self.mode == "both"
             else self.experts[turn](h))
        for _ in range(2 + turn):
            h = torch.relu(self.shared(h))
        return h


def test_calls_the_two_passes_made_otherwise_are_not_compared_as_pairs():
    """An expert the simulated pass routed every token to, the float pass none, was reported
    with accum_rel_error 0 (nothing compared, read as exact), and a shared layer run three
    times against twice compared its first two calls only. Such batches are left out of the
    accumulated error (NaN where no batch paired), with a warning naming the layers; the
    layers that ran alike keep their figures."""
    torch.manual_seed(0)
    model = _Routed().eval()
    x = torch.randn(8, 6)
    sim = cimsim.deploy(model, "ideal", torch.randn(32, 6), progress=False)
    sim.model.mode = "fixed"
    alike = sim.trace(x).set_index("layer")
    assert alike.drop(index="experts.1")["accum_rel_error"].notna().all()
    sim.model.mode = "alternate"
    with pytest.warns(UserWarning, match=r"trace: layers 'experts\.0', 'experts\.1', 'shared' "
                                         r"ran otherwise"):
        frame = sim.trace(x, batch_size=8).set_index("layer")
    # float pass: expert 0 and the shared layer twice; simulated pass: expert 1, three times
    assert math.isnan(frame.loc["experts.0", "rel_error"])  # not reached in simulation
    assert frame.loc["experts.1", "rel_error"] < 0.05  # its own error is measured
    for layer in ("experts.1", "shared"):
        assert math.isnan(frame.loc[layer, "accum_rel_error"])
        assert math.isnan(frame.loc[layer, "accum_cosine"])
    assert frame.loc["first", "accum_rel_error"] == pytest.approx(
        alike.loc["first", "accum_rel_error"])

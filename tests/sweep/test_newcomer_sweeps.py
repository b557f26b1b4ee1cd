"""Sweeps as a chip architect new to cimsim runs them: on published macros and drifting chips,
axes that do not apply to the base chip, a user's exported model and label-free data, the
Pareto front on hand-made records, every figure in the page, and ``cimsim report`` on a sweep
folder. (tests/sweep/test_edges.py covers grid spellings, resume and impossible
combinations; this file does not repeat them.)"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import cimsim
from cimsim.cli import main
from cimsim.cost import estimate
from cimsim.errors import ConfigError
from cimsim.evaluate import accuracy
from cimsim.report import plot_pareto
from cimsim.sweep import chip_for_point, pareto_front, run_sweep
from cimsim.sweep.files import write_outputs
from tests import test_sweep
from tests.sweep.test_edges import _frame  # hand-made records -> a sweep table
from tests.test_sweep import N_CAL, N_EVAL

data, model = test_sweep.data, test_sweep.model
DAY_S, YEAR_S = 86400.0, 365 * 86400.0
FILES = ("sweep.csv", "sweep.json", "pareto.png", "sweep.html")


def _sweep(model, data, chip, grid, out, **kw):
    return run_sweep(model, data, chip, grid, out, calibration=N_CAL, progress=False, **kw)


def _direct(model, data, chip, t_inference_s=None):
    """What a user computes by hand for one chip: deploy, accuracy, cost estimate."""
    x, y = data
    sim = cimsim.deploy(model, chip, x[:N_CAL], seed=0, t_inference_s=t_inference_s)
    acc = accuracy(sim, x[N_CAL:], y[N_CAL:], batch_size=256)
    totals = estimate(sim.work()).totals
    return {"accuracy": acc, **{k: float(totals[k]) for k in (
        "energy_pj_per_inference", "latency_ns_per_inference", "area_mm2")}}


def _row(frame, i):
    return {k: float(frame[k].iloc[i]) for k in (
        "accuracy", "energy_pj_per_inference", "latency_ns_per_inference", "area_mm2")}


# --------------------------------------------------------------------------------------------
# Axes that do not apply to the base chip: refused before anything runs, with the reason
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rram-22nm", "published/chih-isscc21",
                                  "published/hermes-jssc22", "mram-22nm"])
def test_time_on_a_device_that_does_not_age_is_refused(name, model, data, tmp_path):
    """time_s on a chip whose device neither drifts, nor has 1/f read noise or retention, nor
    fits a drift compensation: every point was the same chip, silently (identical rows at 1 s
    and 1 h, on hermes-jssc22's PCM too, whose preset has no drift statistics)."""
    chip = cimsim.load_chip(name)
    assert not chip.device.ages
    with pytest.raises(ConfigError, match=r"time_s = 3600\.0: .*device does not change after "
                                          r"programming.*drift_nu_mean.*pcm-22nm"):
        _sweep(model, data, chip, {"adc_bits": [chip.adc.bits], "time_s": [1.0, 3600.0]},
               tmp_path)
    assert not (tmp_path / "sweep.jsonl").exists()


def test_cli_time_on_a_chip_that_does_not_age_is_one_line(tmp_path, capsys):
    rc = main(["sweep", "--model", "demo", "--chip", "rram-22nm", "--adc-bits", "4",
               "--time", "1,1h", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "time_s = 3600.0" in err[0] and "does not change after programming" in err[0]


@pytest.mark.parametrize("name", ["published/chih-isscc21", "published/fujiwara-isscc22"])
def test_adc_kind_on_a_digital_macro_is_refused(name, model, data, tmp_path):
    """adc_kind 'sar' on an all-digital macro (adder trees, no converter) turned it into an
    analog chip and ran, silently: 10x the energy, with no word that the axis does not apply."""
    chip = cimsim.load_chip(name)
    bits = chip.adc.bits
    with pytest.raises(ConfigError, match=r"adc_kind 'sar'.*adc\.kind = 'digital'.*digital "
                                          r"adders.*allowed: 'digital'"):
        _sweep(model, data, chip, {"adc_bits": [bits], "adc_kind": ["digital", "sar"]},
               tmp_path)
    assert chip_for_point(chip, {"adc_kind": "digital"}) == chip  # its own kind is fine


def test_adc_kind_digital_on_an_analog_chip_is_refused_naming_the_axis(capsys, tmp_path):
    """--adc-kind sar,digital on rram-22nm stopped the sweep naming ADCConfig.range_policy, a
    field the user never set (and 2-b cells and 4 ADC bits would have failed next): a digital
    read-out is another chip, refused as the reverse is, naming the axis and what it allows."""
    chip = cimsim.load_chip("rram-22nm")
    with pytest.raises(ConfigError, match=r"adc_kind 'digital' is invalid for a base chip with "
                       r"adc\.kind = 'sar' .*allowed: 'sar', 'flash', 'ramp'"):
        chip_for_point(chip, {"adc_kind": "digital", "adc_bits": 4})
    assert chip_for_point(chip, {"adc_kind": "sar"}) == chip
    rc = main(["sweep", "--model", "demo", "--chip", "rram-22nm", "--adc-bits", "4",
               "--adc-kind", "sar,digital", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "adc_kind 'digital' is invalid" in err[0]


def test_digital_macro_axes_that_apply_run_and_the_rest_are_refused(model, data, tmp_path):
    """chih-isscc21: smaller arrays with their adder trees' widths run; noise, analog slice
    read-out, too narrow an adder tree and a wider one (which read the same sums at the same
    price: 10 and 12 b were two identical rows) are refused up front, each naming its field."""
    chip = cimsim.load_chip("published/chih-isscc21")
    for grid, field in (({"thermal_sigma_lsb": [0.0, 0.5]}, "thermal_sigma_lsb"),
                        ({"slice_readout": ["analog"]}, "slice_readout"),
                        ({"adc_bits": [8, 10]}, r"ADCConfig\.bits = 8"),
                        ({"adc_bits": [10, 12]}, r"adc_bits = 12 .*256 rows.*allowed: 10")):
        with pytest.raises(ConfigError, match=field):
            _sweep(model, data, chip, {"adc_bits": [10], **grid}, tmp_path / "x")
    frame = _sweep(model, data, chip, {"array_size": [128, 256], "adc_bits": [9, 10]},
                   tmp_path / "ok")
    assert frame["status"].tolist() == [
        "ok", "skipped: adc_bits = 10 is invalid for adc.kind = 'digital' on 128 rows per "
        "conversion: a digital column's output is as wide as its sums (wider reads and "
        "costs the same); allowed: 9",
        "skipped: ADCConfig.bits = 9 is invalid; allowed: >= 10 for kind = 'digital' on 256 "
        "rows per conversion (the digital column's sum, sign included)", "ok"]
    ok = frame[frame["status"] == "ok"]
    assert ok["energy_pj_per_inference"].iloc[0] < ok["energy_pj_per_inference"].iloc[1]
    assert _row(frame, 3) == _direct(model, data, chip)


def test_a_digital_macros_array_size_alone_takes_its_adder_trees_width():
    """``{"array_size": [64]}`` without adc_bits kept chih-isscc21's 10-b trees on 64 rows:
    the width the sweep refuses as an adc_bits value (8 is exact), the same costs under
    another id; and 512 rows, which need 11, were refused. The width follows the rows."""
    from cimsim.sweep import chip_for_point
    chip = cimsim.load_chip("published/chih-isscc21")
    widths = {s: chip_for_point(chip, {"array_size": s}).adc.bits for s in (64, 256, 512)}
    assert widths == {64: 8, 256: 10, 512: 11}
    assert chip_for_point(chip, {"array_size": 64}) == \
        chip_for_point(chip, {"array_size": 64, "adc_bits": 8})


@pytest.mark.parametrize(("name", "value"), [
    ("published/jia-jssc20", "analog"), ("published/hermes-jssc22", "analog"),
    ("published/correll-jssc25", "analog"), ("published/deaville-vlsi22", "digital")])
def test_slice_readout_with_one_slice_per_weight_is_refused(name, value, model, data,
                                                            tmp_path):
    """A weight held in one column (or one differential pair) has no slices to combine: the
    other read-out converted the same currents and ran as a silent repeat of the base row
    (jia-jssc20, hermes-jssc22, correll-jssc25: identical accuracy and costs)."""
    chip = cimsim.load_chip(name)
    own = chip.array.slice_readout.value
    assert own != value
    with pytest.raises(ConfigError, match=rf"slice_readout '{value}' reads the same "
                                          rf"conversions as the chip's '{own}'.*allowed: "
                                          rf"'{own}'"):
        _sweep(model, data, chip, {"adc_bits": [chip.adc.bits],
                                   "slice_readout": [own, value]}, tmp_path)


def test_slice_readout_applies_once_cells_hold_slices(model, data, tmp_path):
    """hermes-jssc22 on 1-b cells: a 4-b weight is slices, so 'analog' is another chip and
    runs; on its own 3-b cells the combination is skipped with the reason."""
    chip = cimsim.load_chip("published/hermes-jssc22")
    frame = _sweep(model, data, chip, {"bits_per_cell": [1, 3], "slice_readout":
                                       ["digital", "analog"], "adc_bits": [8]}, tmp_path)
    assert frame["status"].str.startswith("ok").tolist() == [True, True, True, False]
    assert frame["status"].iloc[3].startswith("skipped: slice_readout 'analog' reads the same")
    assert frame["n_conversions_per_inference"].iloc[1] < \
        frame["n_conversions_per_inference"].iloc[0]


# --------------------------------------------------------------------------------------------
# Records equal a direct deploy + cost estimate, published bases included
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "point"), [
    ("published/chih-isscc21", {"array_size": 128, "adc_bits": 9}),
    ("published/jia-jssc20", {"adc_kind": "flash", "adc_bits": 6}),
    ("published/hermes-jssc22", {"adc_bits": 6}),
    ("published/deaville-vlsi22", {"cols_per_adc": 8, "adc_bits": 5}),
])
def test_published_base_records_equal_deploy_and_estimate(name, point, model, data, tmp_path):
    chip = cimsim.load_chip(name)
    frame = _sweep(model, data, chip, {k: [v] for k, v in point.items()}, tmp_path)
    assert frame["status"].tolist() == ["ok"]
    assert _row(frame, 0) == _direct(model, data, chip_for_point(chip, point))
    assert frame["cols_per_adc"].iloc[0] == chip_for_point(chip, point).array.cols_per_adc


def test_test_data_chip_base(model, data, tmp_path):
    """A chip file of the kind a user writes (tests/data/chips): its axes that apply run and
    equal the direct route."""
    chip = cimsim.load_chip("tests/data/chips/pcm-2dev-pwm.toml")
    grid = {"adc_bits": [5], "cols_per_adc": [1, 4]}
    frame = _sweep(model, data, chip, grid, tmp_path)
    assert frame["status"].eq("ok").all()
    for i, p in enumerate([{"adc_bits": 5, "cols_per_adc": c} for c in (1, 4)]):
        assert _row(frame, i) == _direct(model, data, chip_for_point(chip, p))


# --------------------------------------------------------------------------------------------
# Time on a drifting chip, with and without drift compensation
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("compensation", ["global", "none"])
def test_time_sweep_on_pcm_equals_deploy_at_that_time(compensation, model, data, tmp_path):
    chip = cimsim.load_chip("pcm-22nm")
    chip = chip.replace(device=chip.device.replace(drift_compensation=compensation))
    times = [1.0, DAY_S, YEAR_S]
    frame = _sweep(model, data, chip, {"adc_bits": [6], "time_s": times}, tmp_path)
    assert frame["time_s"].tolist() == times and frame["status"].eq("ok").all()
    for i, t in enumerate(times):
        assert _row(frame, i) == _direct(model, data, chip, t_inference_s=t)
    # the conductances drift down: the read energy falls with time
    assert frame["energy_pj_per_inference"].is_monotonic_decreasing
    assert frame["energy_pj_per_inference"].iloc[-1] < frame["energy_pj_per_inference"].iloc[0]
    html = (tmp_path / "sweep.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # the Pareto plot and accuracy-vs-time


# --------------------------------------------------------------------------------------------
# A user's model file and label-free data
# --------------------------------------------------------------------------------------------
def test_cli_exported_model_and_label_free_data(model, data, tmp_path, capsys):
    """A torch.export .pt2 and an .npz without y: accuracy NaN, the output cosine instead, no
    front, no 'nan' in the page; each record equals a direct deploy of the loaded file (whose
    layers keep their modules' names, and so their programming draws:
    tests/mapping/test_loaders.py)."""
    from cimsim.evaluate import output_cosine
    from cimsim.mapping.loaders import load_model_for

    x = data[0][: N_CAL + N_EVAL]
    ep = torch.export.export(model, (x[:2],),
                             dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, tmp_path / "m.pt2")
    np.savez(tmp_path / "x.npz", x=x.numpy())
    assert main(["sweep", "--data", str(tmp_path / "x.npz"), "--chip", "rram-22nm",
                 "--adc-bits", "3,5", "--calibration", str(N_CAL), "--model",
                 str(tmp_path / "m.pt2"), "--out", str(tmp_path / "a")]) == 0
    text = capsys.readouterr().out
    assert "cosine" in text and "no Pareto front" in text
    a = pd.read_csv(tmp_path / "a" / "sweep.csv")
    assert a["accuracy"].isna().all() and a["output_cosine"].between(0.5, 1).all()
    assert not a["on_front"].any() and a["status"].eq("ok").all()
    loaded, _ = load_model_for(str(tmp_path / "m.pt2"), x)
    base = cimsim.load_chip("rram-22nm")
    for i, bits in enumerate((3, 5)):
        sim = cimsim.deploy(loaded, chip_for_point(base, {"adc_bits": bits}), x[:N_CAL], seed=0)
        cosine = output_cosine(loaded, sim, x[N_CAL:], batch_size=256)
        totals = estimate(sim.work()).totals
        assert a["output_cosine"].iloc[i] == pytest.approx(cosine, rel=1e-12)
        for col in ("energy_pj_per_inference", "latency_ns_per_inference", "area_mm2"):
            assert a[col].iloc[i] == pytest.approx(float(totals[col]), rel=1e-12)
    html = (tmp_path / "a" / "sweep.html").read_text()
    assert not re.search(r">\s*nan\s*<", html, re.I)


# --------------------------------------------------------------------------------------------
# The Pareto front on hand-made records
# --------------------------------------------------------------------------------------------
def _brute_front(acc, en, ok):
    n = len(acc)
    good = [ok[i] and not math.isnan(acc[i]) and math.isfinite(en[i]) for i in range(n)]
    return [good[i] and not any(
        good[j] and acc[j] >= acc[i] and en[j] <= en[i] and (acc[j] > acc[i] or en[j] < en[i])
        for j in range(n)) for i in range(n)]


_ACC = st.one_of(st.sampled_from([0.5, 0.75, 0.9, 1.0]), st.floats(0, 1), st.just(math.nan))
_EN = st.one_of(st.sampled_from([10.0, 20.0, 40.0]), st.floats(0, 1e6), st.just(math.nan),
                st.just(math.inf))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_ACC, _EN, st.booleans()), min_size=1, max_size=12))
def test_front_is_exactly_the_non_dominated_points(rows):
    acc = [r[0] for r in rows]
    en = [r[1] for r in rows]
    ok = [r[2] for r in rows]
    frame = pd.DataFrame({"accuracy": acc, "energy_pj_per_inference": en,
                          "status": ["ok" if o else "error: x" for o in ok]},
                         index=[10 * i + 3 for i in range(len(rows))])  # not 0..n-1
    assert pareto_front(frame).tolist() == _brute_front(acc, en, ok)


def test_plot_axes_units_and_what_is_drawn():
    """Energy in pJ on x, accuracy in % on y; a NaN accuracy or a failed point is not drawn;
    the front line joins exactly the front points in order of energy."""
    frame = _frame([{"accuracy": 0.9, "energy_pj_per_inference": 10.0},
                    {"accuracy": 0.95, "energy_pj_per_inference": 30.0},
                    {"accuracy": 0.92, "energy_pj_per_inference": 40.0},
                    {"accuracy": math.nan, "energy_pj_per_inference": 5.0},
                    {"accuracy": 0.99, "energy_pj_per_inference": 1.0, "status": "error: x"}])
    assert frame["on_front"].tolist() == [True, True, False, False, False]
    ax = plot_pareto(frame).axes[0]
    assert ax.get_xlabel() == "energy per inference (pJ)"
    assert ax.get_ylabel() == "accuracy (%)"
    drawn = sorted(map(tuple, np.concatenate(
        [c.get_offsets() for c in ax.collections[:1]]).tolist()))
    assert drawn == [(10.0, 90.0), (30.0, 95.0), (40.0, 92.0)]
    (line,) = ax.get_lines()
    assert line.get_xydata().tolist() == [[10.0, 90.0], [30.0, 95.0]]


@pytest.mark.parametrize("records", [
    [{"accuracy": 0.9, "energy_pj_per_inference": 10.0}],
    [{"accuracy": math.nan, "energy_pj_per_inference": math.nan, "status": "error: boom"}] * 2,
    [{"accuracy": math.nan, "energy_pj_per_inference": 10.0},
     {"accuracy": 0.8, "energy_pj_per_inference": 20.0}],
])
def test_page_has_no_nan_text_and_no_empty_figure(records, tmp_path):
    frame = _frame(records)
    write_outputs(frame, tmp_path, {"model": "m", "chip": "c"})
    html = (tmp_path / "sweep.html").read_text()
    assert not re.search(r">\s*(nan|NaN|None|<NA>)\s*<", html)
    imgs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert len(imgs) == 1 and all(len(b) > 1000 for b in imgs)
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert doc["front"] == [pid for pid, on in zip(frame["point_id"], frame["on_front"],
                                                   strict=True) if on]


# --------------------------------------------------------------------------------------------
# Every figure in the page; `cimsim report` on a sweep folder
# --------------------------------------------------------------------------------------------
def _time_frame():
    frame = _frame([{"accuracy": 0.9 - 0.05 * i, "energy_pj_per_inference": 100.0 - i}
                    for i in range(3)] + [{"accuracy": math.nan,
                                           "energy_pj_per_inference": math.nan,
                                           "status": "skipped: x"}])
    frame["time_s"] = [1.0, 3600.0, YEAR_S, 1.0]
    return frame


def test_page_embeds_the_accuracy_time_figure(tmp_path):
    """A time sweep wrote accuracy_time.png but sweep.html showed only the Pareto plot."""
    paths = write_outputs(_time_frame(), tmp_path, {"model": "m", "chip": "c"})
    assert (tmp_path / "accuracy_time.png") in paths
    html = (tmp_path / "sweep.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    assert "accuracy against time after programming" in html.lower()


def test_label_free_time_sweep_plots_the_output_cosine_over_time():
    """Without labels accuracy_time.png was a blank 'no point has an accuracy' panel in the
    page; it now draws the output cosine against time, as pareto.png does."""
    from cimsim.report import plot_accuracy_time

    frame = _time_frame().iloc[:3].assign(accuracy=math.nan, output_cosine=[0.99, 0.95, 0.9])
    ax = plot_accuracy_time(frame).axes[0]
    assert ax.get_ylabel().startswith("output cosine")
    (line,) = ax.get_lines()
    assert line.get_xydata().tolist() == [[1.0, 0.99], [3600.0, 0.95], [YEAR_S, 0.9]]


@pytest.mark.parametrize("frame_of", [_time_frame, lambda: _frame(
    [{"accuracy": 0.9, "energy_pj_per_inference": 10.0},
     {"accuracy": math.nan, "output_cosine": 0.5, "energy_pj_per_inference": math.nan,
      "status": "error: CapacityError: too big"}])])
def test_cli_report_rerenders_a_sweep_folder_byte_identically(frame_of, tmp_path, capsys):
    """`cimsim report DIR` said 'no saved report (report.json not found)' on a sweep folder."""
    src = tmp_path / "src"
    src.mkdir()
    written = write_outputs(frame_of(), src, {"model": "m", "chip": "c", "seed": 0,
                                              "grid": {"adc_bits": [3, 4]}})
    before = {p.name: p.read_bytes() for p in written}
    assert main(["report", str(src), "--out", str(tmp_path / "copy")]) == 0
    assert "sweep" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in (tmp_path / "copy").iterdir()} == before
    assert main(["report", str(src)]) == 0  # in place
    assert {p.name: p.read_bytes() for p in written} == before


def test_cli_report_rerenders_a_real_sweep(model, data, tmp_path, capsys):
    chip = cimsim.load_chip("pcm-22nm")
    _sweep(model, data, chip, {"adc_bits": [4, 6], "time_s": [1.0, DAY_S]}, tmp_path / "s")
    before = {n: (tmp_path / "s" / n).read_bytes() for n in (*FILES, "accuracy_time.png")}
    assert main(["report", str(tmp_path / "s"), "--out", str(tmp_path / "r")]) == 0
    after = {n: (tmp_path / "r" / n).read_bytes() for n in before}
    assert after == before
    assert not (tmp_path / "r" / "sweep.jsonl").exists()  # the records stay with the sweep


def test_cli_report_on_a_broken_sweep_json_is_one_line(tmp_path, capsys):
    (tmp_path / "sweep.json").write_text("{not json")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sweep.json" in err[0]


def test_cli_report_refuses_a_point_whose_figure_is_text(tmp_path, capsys):
    """A point's energy edited to 'abc' was copied into sweep.csv and left the front
    silently; it is refused naming the point and the figure."""
    write_outputs(_frame([{"accuracy": 0.9, "energy_pj_per_inference": 10.0},
                          {"accuracy": 0.8, "energy_pj_per_inference": 5.0}]), tmp_path,
                  {"model": "m", "chip": "c", "seed": 0, "grid": {"adc_bits": [3, 4]}})
    doc = json.loads((tmp_path / "sweep.json").read_text())
    doc["points"][1]["energy_pj_per_inference"] = "abc"
    (tmp_path / "sweep.json").write_text(json.dumps(doc))
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'energy_pj_per_inference' is 'abc', not a number" in err[0]
    assert not (tmp_path / "again").exists()

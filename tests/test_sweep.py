"""``cimsim.sweep`` and ``cimsim sweep``: grid, bad points, resume, parallel runs, files, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import cimsim
from cimsim.cli import main
from cimsim.data import load_digits_split
from cimsim.errors import CapacityError, ConfigError
from cimsim.sweep import (
    AXES,
    chip_for_point,
    expand_grid,
    pareto_front,
    parse_adc_kind,
    run_sweep,
)
from cimsim.sweep import runner as sweep_runner

N_CAL, N_EVAL = 16, 64
_MEASURE = sweep_runner._measure  # the unpatched one, whatever a test patched before


def tiny_model() -> nn.Module:
    """Linear(64, 10) on flattened digits, fitted by least squares to one-hot labels (fast and
    deterministic); also the ``module:function`` model of the CLI tests."""
    x, y, _, _ = load_digits_split()
    a = torch.cat([x.reshape(len(x), -1), torch.ones(len(x), 1)], dim=1).double()
    target = nn.functional.one_hot(y, 10).double()
    coef = torch.linalg.lstsq(a, target, driver="gelsd").solution  # (65, 10)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        model[1].weight.copy_(coef[:64].T.float())
        model[1].bias.copy_(coef[64].float())
    return model.eval()


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return tiny_model()


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    _, _, x, y = load_digits_split()
    return x[: N_CAL + N_EVAL], y[: N_CAL + N_EVAL]


@pytest.fixture(scope="module")
def chip():
    return cimsim.load_chip("rram-22nm")


def _sweep(model, data, chip, grid, out, **kw):
    kw.setdefault("progress", False)
    return run_sweep(model, data, chip, grid, out, calibration=N_CAL, **kw)


def _count_points(monkeypatch) -> list[int]:
    """Count the points measured in this process from now on (one entry per point)."""
    counted: list[int] = []

    def counting(*args, **kwargs):
        counted.append(1)
        return _MEASURE(*args, **kwargs)

    monkeypatch.setattr(sweep_runner, "_measure", counting)
    return counted


def _same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    # a frame run_sweep returns has the wall time; sweep.csv does not (results only)
    pd.testing.assert_frame_equal(a.drop(columns="wall_s", errors="ignore"),
                                  b.drop(columns="wall_s", errors="ignore"))


# --------------------------------------------------------------------------------------------
# Grid and chip variants
# --------------------------------------------------------------------------------------------
def test_expand_grid_is_the_product_in_axis_order():
    grid = {"adc_bits": [3, 4, 5], "adc_kind": ["sar", "ramp:bs_kmq"], "array_size": [64]}
    points = expand_grid(grid)
    assert len(points) == 6
    assert points[0] == {"array_size": 64, "adc_kind": "sar", "adc_bits": 3}
    # adc_bits varies fastest, whatever the dict order
    assert [p["adc_bits"] for p in points] == [3, 4, 5, 3, 4, 5]
    assert [p["adc_kind"] for p in points] == ["sar"] * 3 + ["ramp:bs_kmq"] * 3
    assert expand_grid({"adc_bits": 4}) == [{"adc_bits": 4}]
    with pytest.raises(ConfigError, match="unknown sweep axis"):
        expand_grid({"adc_bitz": [4]})
    with pytest.raises(ConfigError, match="no values"):
        expand_grid({"adc_bits": []})


def test_chip_for_point_sets_every_axis(chip):
    v = chip_for_point(chip, {"adc_kind": "ramp:bs_kmq", "adc_bits": 3, "bits_per_cell": 1,
                              "array_size": 4, "thermal_sigma_lsb": 0.25})
    assert v.adc.kind.value == "ramp" and v.adc.level_fit.value == "bs_kmq"
    assert v.adc.range_policy.value == "calibrated" and v.adc.bits == 3
    # the noise in the base chip's cell-LSB (2 b): a 1-b cell-LSB is 3 of them
    assert chip.device.bits_per_cell == 2
    assert v.device.bits_per_cell == 1 and v.noise.thermal_sigma_lsb == pytest.approx(0.25 / 3)
    assert (v.array.n_rows, v.array.n_cols, v.array.cols_per_adc) == (4, 4, 4)
    fixed = chip.replace(adc=chip.adc.replace(range_policy="full_scale"),
                         array=chip.array.replace(rows_per_conversion=64))
    v = chip_for_point(fixed, {"adc_kind": "flash", "array_size": 32})
    assert v.adc.kind.value == "flash" and v.adc.range_policy.value == "full_scale"
    assert v.array.rows_per_conversion == 32
    v = chip_for_point(fixed, {"adc_kind": "ramp"})  # ramp alone: forced calibrated range
    assert v.adc.range_policy.value == "calibrated"
    with pytest.raises(ConfigError, match="ADCConfig.bits"):
        chip_for_point(chip, {"adc_bits": 0})


@pytest.mark.parametrize("bad", ["sigma", "sar:kmeans", "ramp:kmeanz", ""])
def test_parse_adc_kind_rejects(bad):
    with pytest.raises(ConfigError, match="allowed"):
        parse_adc_kind(bad)


def test_pareto_front_definition():
    frame = pd.DataFrame({
        "accuracy": [0.90, 0.95, 0.93, 0.95, 0.99, 0.99, float("nan")],
        "energy_pj_per_inference": [10.0, 20.0, 25.0, 20.0, 40.0, 40.0, 1.0],
        "status": ["ok", "ok", "ok", "ok", "ok", "error: x", "ok"],
    })
    # 0: cheapest; 1 and 3: tied (both on); 2: dominated by 1; 4: most accurate;
    # 5: failed; 6: no accuracy
    assert pareto_front(frame).tolist() == [True, True, False, True, True, False, False]


def test_equal_energy_lower_accuracy_is_off_the_front():
    """A point as costly as another and less accurate is dominated (better in accuracy, no
    worse in energy): a rule that wanted strictly less energy kept it on the front."""
    frame = pd.DataFrame({
        "accuracy": [0.90, 0.80, 0.95],
        "energy_pj_per_inference": [10.0, 10.0, 30.0],
        "status": ["ok"] * 3,
    })
    assert pareto_front(frame).tolist() == [True, False, True]


def test_a_time_sweep_has_one_front_per_time():
    """The time after programming is no design choice: a point competes with the points at its
    time only. Taken over all times, the 1-hour 4-b point pushed the 1-year 6-b point off the
    front (found running `cimsim sweep --time 1h,1y` on pcm-22nm: these are its figures)."""
    from cimsim.report import plot_pareto
    from cimsim.sweep.pareto import front_group

    frame = pd.DataFrame({
        "adc_bits": [4, 6, 4, 6, 8],
        "time_s": [3600.0, 3600.0, 3.15e7, 3.15e7, 3.15e7],
        "accuracy": [0.865, 0.875, 0.71, 0.74, 0.73],
        "energy_pj_per_inference": [38.7, 47.4, 34.4, 43.1, 50.0],
        "status": ["ok"] * 5,
    })
    assert pareto_front(frame).tolist() == [True, True, True, False, False]
    assert front_group(frame) == "time_s"
    assert pareto_front(frame, by="time_s").tolist() == [True, True, True, True, False]
    assert front_group(frame.iloc[:2]) is None
    frame["on_front"] = pareto_front(frame, by="time_s")
    ax = plot_pareto(frame, by="time_s").axes[0]
    # one line per time, each its own shade (all were one red) and named by its time, in
    # order of time: the earlier front lighter
    fronts = ax.get_lines()
    assert [len(line.get_xdata()) for line in fronts] == [2, 2]
    assert [line.get_label() for line in fronts] == ["Pareto front, t = 1 h",
                                                     "Pareto front, t = 365 d"]
    light, dark = (sum(line.get_color()[:3]) for line in fronts)
    assert light > dark
    assert {"Pareto front, t = 1 h", "Pareto front, t = 365 d"} <= {
        t.get_text() for t in ax.get_legend().get_texts()}
    # one front: the one red, as before, named by its time
    one = plot_pareto(frame.iloc[:2].assign(on_front=True), by="time_s").axes[0]
    assert [(line.get_color(), line.get_label()) for line in one.get_lines()] == [
        ("#c44e52", "Pareto front, t = 1 h")]


# --------------------------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------------------------
def test_failed_point_is_recorded_and_the_rest_run(model, data, chip, tmp_path, monkeypatch):
    grid = {"adc_kind": ["sar", "ramp:bs_kmq"], "adc_bits": [4, 30]}
    # a value no chip can have is refused before anything runs, naming the point and field
    # (issue 16: it made its points fail and the sweep exit 0)
    with pytest.raises(ConfigError, match=r"sweep point .*'adc_bits': 30.*ADCConfig.bits = 30"):
        _sweep(model, data, chip, grid, tmp_path)
    assert not any(tmp_path.iterdir())

    # a point that fails when it runs (here: over capacity) is recorded, the others run
    def failing(model, chip, *args, **kwargs):
        if chip.adc.bits == 5:
            raise CapacityError("needs 9999 arrays, the chip has 2688")
        return _MEASURE(model, chip, *args, **kwargs)

    monkeypatch.setattr(sweep_runner, "_measure", failing)
    grid = {"adc_kind": ["sar", "ramp:bs_kmq"], "adc_bits": [4, 5]}
    frame = _sweep(model, data, chip, grid, tmp_path)
    assert list(frame.columns) == [*AXES, "accuracy", "output_cosine", "energy_pj_per_inference",
                                   "latency_ns_per_inference", "area_mm2", "tops_per_w",
                                   "adc_area_mm2", "n_conversions_per_inference",
                                   "n_arrays", "wall_s", "status", "on_front", "point_id"]
    assert frame["adc_bits"].tolist() == [4, 5, 4, 5]
    assert frame["adc_kind"].tolist() == ["sar", "sar", "ramp:bs_kmq", "ramp:bs_kmq"]
    bad = frame["adc_bits"] == 5
    assert frame.loc[~bad, "status"].eq("ok").all()
    assert frame.loc[bad, "status"].str.startswith("error: needs 9999 arrays").all()
    assert frame.loc[bad, "accuracy"].isna().all() and not frame.loc[bad, "on_front"].any()
    ok = frame[~bad]
    assert (ok["accuracy"] > 0.5).all()  # a trained model, a 4-bit ADC
    assert ok["n_arrays"].tolist() == [1, 1]
    # unswept axes hold the base chip's values
    assert (frame["array_size"] == 128).all() and (frame["thermal_sigma_lsb"] == 0.5).all()
    assert frame["on_front"].any()
    assert frame["point_id"].is_unique

    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"sweep.jsonl", "sweep.jsonl.lock", "sweep.csv", "sweep.json",
                     "pareto.png", "sweep.html"}
    csv = pd.read_csv(tmp_path / "sweep.csv")
    assert csv["point_id"].tolist() == frame["point_id"].tolist()
    np.testing.assert_allclose(csv["accuracy"], frame["accuracy"])
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert [p["point_id"] for p in doc["points"]] == frame["point_id"].tolist()
    assert doc["points"][1]["accuracy"] is None  # NaN is written as null
    assert doc["front"] == frame.loc[frame["on_front"], "point_id"].tolist()
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "sweep.html").read_text()
    assert "<table" in page and "data:image/png;base64," in page
    assert all(pid in page for pid in frame["point_id"]) and "needs 9999 arrays" in page
    lines = (tmp_path / "sweep.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line)["point_id"] for line in lines)


def test_resume_after_interrupt_runs_only_the_rest(model, data, chip, tmp_path, monkeypatch):
    """Issue 5: a sweep interrupted after k points, rerun, computes only the rest and the final
    table equals an uninterrupted run's."""
    grid = {"adc_kind": ["sar", "ramp:kmeans"], "adc_bits": [3, 5]}
    n, k = 4, 2
    full = _sweep(model, data, chip, grid, tmp_path / "full")

    calls: list[int] = []

    def interrupting(*args, **kwargs):
        if len(calls) == k:
            raise KeyboardInterrupt  # as a user's Ctrl-C (not recorded, not caught)
        calls.append(1)
        return _MEASURE(*args, **kwargs)

    monkeypatch.setattr(sweep_runner, "_measure", interrupting)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        _sweep(model, data, chip, grid, out)
    assert len(calls) == k
    assert len((out / "sweep.jsonl").read_text().splitlines()) == k
    assert not (out / "sweep.csv").exists()

    counted = _count_points(monkeypatch)
    resumed = _sweep(model, data, chip, grid, out)
    assert len(counted) == n - k
    _same_table(resumed, full)
    assert resumed.attrs["n_points_resumed"] == k
    # a third run computes nothing; a torn last line (a kill mid-write) is ignored
    with (out / "sweep.jsonl").open("a") as fh:
        fh.write('{"point_id": "abc", "accur')
    again = _sweep(model, data, chip, grid, out)
    assert len(counted) == n - k and again.attrs["n_points_resumed"] == n
    _same_table(again, full)


def test_torn_last_line_is_cut_before_appending_issue16(model, data, chip, tmp_path):
    """A recomputed point was appended onto the torn line and lost again at every rerun."""
    grid = {"adc_bits": [3, 4]}
    full = _sweep(model, data, chip, grid, tmp_path / "full")
    out = tmp_path / "torn"
    _sweep(model, data, chip, grid, out)
    path = out / "sweep.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[1][: len(lines[1]) // 2])  # killed while writing point 2
    again = _sweep(model, data, chip, grid, out)
    assert again.attrs["n_points_resumed"] == 1
    text = path.read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 2  # the torn half is gone
    assert all(json.loads(line)["status"] == "ok" for line in text.splitlines())
    third = _sweep(model, data, chip, grid, out)
    assert third.attrs["n_points_resumed"] == 2  # nothing lost, nothing recomputed
    _same_table(third, full)


@pytest.mark.parametrize("damage", ["no_final_newline", "not_utf8", "edited_figure"])
def test_a_damaged_results_file_loses_no_whole_record_and_trusts_no_bad_one(model, data, chip,
                                                                            tmp_path, damage,
                                                                            caplog):
    """A whole last record without its newline was cut as a torn line and its point run again;
    a line of bytes that are not UTF-8 failed the sweep with a traceback; an edited
    ``"accuracy": "abc"`` was trusted (an empty accuracy beside status ok). The whole record is
    kept, the bad lines are skipped with a warning and their points run again."""
    grid = {"adc_bits": [3, 4]}
    full = _sweep(model, data, chip, grid, tmp_path / "full")
    out = tmp_path / damage
    _sweep(model, data, chip, grid, out)
    path = out / "sweep.jsonl"
    first, second = path.read_bytes().splitlines(keepends=True)
    if damage == "no_final_newline":
        path.write_bytes(first + second.rstrip(b"\n"))
        resumed, warned = 2, "had no newline; one was added"
    elif damage == "not_utf8":
        path.write_bytes(first + b"\xff\xfe garbage\n" + second)
        resumed, warned = 2, "unreadable line skipped"
    else:
        record = json.loads(first)
        record["accuracy"] = "abc"
        path.write_bytes(json.dumps(record).encode() + b"\n" + second)
        resumed, warned = 1, "'accuracy' is 'abc', not a number"
    with caplog.at_level("WARNING"):
        again = _sweep(model, data, chip, grid, out)
    assert again.attrs["n_points_resumed"] == resumed
    assert warned in caplog.text
    _same_table(again, full)


def test_second_sweep_into_the_same_folder_is_refused_issue16(model, data, chip, tmp_path):
    """Two sweeps into one --out both computed every point."""
    import fcntl

    from cimsim.errors import CimsimError

    tmp_path.mkdir(exist_ok=True)
    with (tmp_path / "sweep.jsonl.lock").open("a+") as held:  # as a running sweep holds it
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242")
        held.flush()
        with pytest.raises(CimsimError, match="another sweep is writing into .*pid 4242"):
            _sweep(model, data, chip, {"adc_bits": [4]}, tmp_path)
        assert not (tmp_path / "sweep.jsonl").exists()
    frame = _sweep(model, data, chip, {"adc_bits": [4]}, tmp_path)  # released: it runs
    assert frame["status"].eq("ok").all()


def test_point_id_depends_on_seed_chip_and_data(model, data, chip, tmp_path, monkeypatch):
    grid = {"adc_bits": [4]}
    a = _sweep(model, data, chip, grid, tmp_path)
    calls = _count_points(monkeypatch)
    # the same point given explicitly (the chip's own values) is the same point: not rerun
    same = _sweep(model, data, chip, {"adc_bits": [4], "bits_per_cell": [2],
                                      "adc_kind": ["sar"]}, tmp_path)
    assert calls == [] and same["point_id"].tolist() == a["point_id"].tolist()
    b = _sweep(model, data, chip, grid, tmp_path, seed=1)
    c = _sweep(model, (data[0][:-1], data[1][:-1]), chip, grid, tmp_path)
    d = _sweep(model, data, chip.replace(input_bits=6), grid, tmp_path)
    assert len(calls) == 3
    assert len({a["point_id"][0], b["point_id"][0], c["point_id"][0], d["point_id"][0]}) == 4


def test_jobs_2_equals_jobs_1(model, data, chip, tmp_path, monkeypatch):
    """Two spawned workers give the serial table, and the points really ran in them. Small
    enough for the default run (two points, a linear model; workers importing torch dominate)."""
    grid = {"adc_kind": ["sar", "ramp:bs_kmq"], "adc_bits": [4]}
    one = _sweep(model, data, chip, grid, tmp_path / "one", jobs=1)
    # a spawned worker imports cimsim afresh and never sees this patch
    in_parent = _count_points(monkeypatch)
    two = _sweep(model, data, chip, grid, tmp_path / "two", jobs=2)
    assert in_parent == []
    assert one["status"].eq("ok").all()
    _same_table(one, two)
    assert len((tmp_path / "two" / "sweep.jsonl").read_text().splitlines()) == 2


def test_without_labels_accuracy_is_nan(model, data, chip, tmp_path):
    frame = _sweep(model, data[0], chip, {"adc_bits": [4]}, tmp_path)
    assert frame["status"].tolist() == ["ok"] and math.isnan(frame["accuracy"][0])
    assert not frame["on_front"].any()
    assert (tmp_path / "pareto.png").is_file()


def test_run_sweep_argument_errors(model, data, chip, tmp_path):
    with pytest.raises(ConfigError, match="jobs"):
        _sweep(model, data, chip, {"adc_bits": [4]}, tmp_path, jobs=0)
    with pytest.raises(ConfigError, match="tuple"):
        run_sweep(model, [1, 2, 3], chip, {"adc_bits": [4]}, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="labels"):
        run_sweep(model, (data[0], data[1][:3]), chip, {"adc_bits": [4]}, tmp_path,
                  progress=False)
    # issue 16: refused before any point runs, not after every point failed
    with pytest.raises(ConfigError, match="batch_size"):
        _sweep(model, data, chip, {"adc_bits": [4]}, tmp_path, batch_size=0)
    for grid, field in (({"thermal_sigma_lsb": [float("nan")]}, "thermal_sigma_lsb"),
                        ({"thermal_sigma_lsb": [-1.0]}, "thermal_sigma_lsb"),
                        ({"array_size": [0]}, "n_rows")):
        with pytest.raises(ConfigError, match=f"sweep point .*{field}"):
            _sweep(model, data, chip, grid, tmp_path)
    x, y = data
    for bad, what in ((y.double(), "integer class indices"), (y.to(torch.complex64), "integer"),
                      (y - 100, ">= 0"), (y[:, None], "1-D")):
        with pytest.raises(ConfigError, match=what):
            _sweep(model, (x, bad), chip, {"adc_bits": [4]}, tmp_path)
    assert not (tmp_path / "sweep.jsonl").exists()


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def npz(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("sweepdata") / "digits.npz"
    np.savez(path, x=data[0].numpy(), y=data[1].numpy())
    return path


@pytest.mark.parametrize("flags, message", [
    (["--adc-bits", "3-x"], "--adc-bits: '3-x' is not a range like 3-8 or a list like 3,4,6"),
    (["--adc-bits", "8-3"], "--adc-bits: '8-3' is an empty range"),
    (["--adc-bits", "4", "--bits-per-cell", "1,,2"], "--bits-per-cell: '1,,2' is not a range"),
    (["--adc-bits", "4", "--array-size", "big"], "--array-size: 'big' is not a range"),
    (["--adc-bits", "4", "--noise", "0,lots"], "--noise: '0,lots' is not a list of numbers"),
    (["--adc-bits", "4", "--adc-kind", "sar,ramp:kmeanz"], "--adc-kind: adc_kind 'ramp:kmeanz'"),
    (["--adc-bits", "4", "--jobs", "0"], "--jobs: 0 is invalid"),
    (["--adc-bits", "4", "--chip", "no-such-chip"], "unknown chip preset"),
    # issue 16: these made every point fail and the sweep exit 0
    (["--adc-bits", "4", "--noise", "nan"], "thermal_sigma_lsb"),
    (["--adc-bits", "4", "--noise", "-1"], "thermal_sigma_lsb"),
    (["--adc-bits", "4", "--array-size", "0"], "n_rows"),
    (["--adc-bits", "4", "--batch-size", "0"], "--batch-size: 0 is invalid"),
])
def test_cli_sweep_errors_are_one_line(flags, message, npz, tmp_path, capsys):
    chip = [] if "--chip" in flags else ["--chip", "rram-22nm"]
    argv = ["sweep", "--model", "tests.test_sweep:tiny_model", "--data", str(npz), *chip,
            "--out", str(tmp_path / "o"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o" / "sweep.csv").exists()


def test_cli_sweep_data_rules(npz, tmp_path, capsys):
    base = ["sweep", "--chip", "rram-22nm", "--adc-bits", "4", "--out", str(tmp_path)]
    assert main([*base, "--model", "tests.test_sweep:tiny_model"]) == 2
    assert "--data is required" in capsys.readouterr().err
    assert main([*base, "--model", "demo", "--data", str(npz)]) == 2
    assert "--model demo brings its own data" in capsys.readouterr().err
    assert main([*base, "--model", "tests.test_sweep:tiny_model", "--data",
                 str(tmp_path / "missing.npz")]) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_sweep_model_and_data_files(npz, tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "--model", "tests.test_sweep:tiny_model", "--data", str(npz), "--chip",
            "rram-22nm", "--adc-bits", "3-4", "--adc-kind", "sar,ramp:bs_kmq", "--noise", "0",
            "--calibration", str(N_CAL), "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "4 points" in text and f"the first {N_CAL} calibrate, {N_EVAL} evaluated" in text
    assert "Pareto front" in text and "bs_kmq 3b" in text
    frame = pd.read_csv(out / "sweep.csv")
    assert len(frame) == 4 and (frame["thermal_sigma_lsb"] == 0).all()
    assert frame["status"].eq("ok").all() and frame["on_front"].any()
    # the same command again: nothing to compute, the same table
    assert main(argv) == 0
    capsys.readouterr()
    again = pd.read_csv(out / "sweep.csv")
    _same_table(again, frame)
    assert len((out / "sweep.jsonl").read_text().splitlines()) == 4


def test_cli_sweep_demo(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["sweep", "--model", "demo", "--chip", "rram-22nm", "--adc-bits", "4,6",
                 "--limit", "48", "--calibration", "32", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "digits CNN (demo)" in text
    assert "48 test inputs evaluated, 32 training images calibrate" in text
    frame = pd.read_csv(out / "sweep.csv")
    assert frame["adc_bits"].tolist() == [4, 6] and frame["status"].eq("ok").all()
    assert frame["n_arrays"].gt(1).all()

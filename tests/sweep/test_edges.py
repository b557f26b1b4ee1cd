"""Sweep grids at their edges: repeated values and spellings of one point, NumPy values,
other sweeps' records in the same folder, the files with one, equal or label-less points."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cimsim.errors import CimsimError, ConfigError
from cimsim.report import plot_pareto
from cimsim.sweep.files import rerender, write_outputs
from cimsim.sweep.table import sweep_table
from tests import test_sweep
from tests.test_sweep import _count_points, _sweep

chip, data, model = test_sweep.chip, test_sweep.data, test_sweep.model


def test_spellings_of_one_point_are_one_row(model, data, chip, tmp_path, monkeypatch):
    """[4, 4], 'sar' and 'SAR', 0 and 0.0: one chip, so one row, one id, one run (there were
    two identical rows, and 0 / 0.0 ran twice under two ids)."""
    counted = _count_points(monkeypatch)
    frame = _sweep(model, data, chip, {"adc_bits": [4, 4], "adc_kind": ["sar", "SAR"],
                                       "thermal_sigma_lsb": [0, 0.0]}, tmp_path)
    assert len(frame) == 1 and len(counted) == 1
    assert frame["adc_bits"].tolist() == [4] and frame["thermal_sigma_lsb"].tolist() == [0.0]
    lines = (tmp_path / "sweep.jsonl").read_text().splitlines()
    assert len(lines) == 1
    assert len(json.loads((tmp_path / "sweep.json").read_text())["points"]) == 1


def test_numpy_values_are_the_python_ones(model, data, chip, tmp_path, monkeypatch):
    """np.arange(3, 5) is accepted (it was refused: 'ADCConfig.bits = np.int64(3) is invalid;
    allowed: an integer') and gives the ids of [3, 4]: a rerun with a list resumes."""
    first = _sweep(model, data, chip, {"adc_bits": np.arange(3, 5),
                                       "thermal_sigma_lsb": np.array([0.5])}, tmp_path)
    assert first["adc_bits"].dtype == np.int64 and first["status"].eq("ok").all()
    counted = _count_points(monkeypatch)
    again = _sweep(model, data, chip, {"adc_bits": [3, 4], "thermal_sigma_lsb": [0.5]},
                   tmp_path)
    assert counted == [] and again["point_id"].tolist() == first["point_id"].tolist()


def test_a_numpy_integer_calibration_count_is_the_python_one():
    """calibration=np.int64(3) (a count read off an array) was refused: 'calibration must be a
    number of inputs'; it is the same split, and the same key (a rerun resumes), as 3."""
    from cimsim.sweep.run import _split

    x, y = torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 0])
    for n in (np.int64(3), np.int32(3)):
        x_cal, x_eval, y_eval, key = _split((x, y), n)
        assert type(key) is int and key == 3
        assert torch.equal(x_cal, x[:3]) and torch.equal(x_eval, x[3:])
        assert torch.equal(y_eval, y[3:])
    for bad in (np.bool_(True), True, 2.0):
        with pytest.raises(ConfigError, match="calibration must be a number"):
            _split((x, y), bad)


def _frame(records):
    base = {"array_size": 128, "bits_per_cell": 2, "slice_readout": "digital",
            "cols_per_adc": 8, "thermal_sigma_lsb": 0.0, "adc_kind": "sar", "time_s": 1.0}
    resolved = [dict(base, adc_bits=3 + i) for i in range(len(records))]
    ids = [f"p{i}" for i in range(len(records))]
    full = [{"latency_ns_per_inference": 1.0, "area_mm2": 1.0, "tops_per_w": 1.0,
             "n_arrays": 1, "wall_s": 0.1, "status": "ok", **r} for r in records]
    return sweep_table(resolved, ids, dict(zip(ids, full, strict=True)))


@pytest.mark.parametrize("records, front", [
    ([{"accuracy": 0.9, "energy_pj_per_inference": 100.0}], [True]),
    ([{"accuracy": 0.9, "energy_pj_per_inference": 100.0}] * 3, [True] * 3),
    ([{"accuracy": math.nan, "output_cosine": 0.9 + 0.01 * i,
       "energy_pj_per_inference": 100.0 * (i + 1)} for i in range(3)], [False] * 3),
    ([{"accuracy": math.nan, "energy_pj_per_inference": math.nan, "status": "error: x"}],
     [False]),
])
def test_files_with_one_equal_or_label_less_points(records, front, tmp_path):
    frame = _frame(records)
    assert frame["on_front"].tolist() == front
    paths = write_outputs(frame, tmp_path, {"model": "m", "chip": "c"})
    assert {p.name for p in paths} >= {"sweep.csv", "sweep.json", "pareto.png", "sweep.html"}
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert len(doc["points"]) == len(records)
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_rerender_of_a_table_with_a_fractional_array_count_is_one_error(tmp_path):
    """``n_arrays = 1.5`` in a saved sweep.json: ``cimsim report`` was a pandas TypeError out
    of the table's integer cast; now the error naming the file, and nothing written."""
    write_outputs(_frame([{"accuracy": 0.9, "energy_pj_per_inference": 100.0}]), tmp_path,
                  {"model": "m", "chip": "c"})
    doc = json.loads((tmp_path / "sweep.json").read_text())
    doc["points"][0]["n_arrays"] = 1.5
    (tmp_path / "sweep.json").write_text(json.dumps(doc))
    with pytest.raises(CimsimError, match=r"sweep\.json: not a sweep table cimsim wrote "
                                          r"\(TypeError: cannot safely cast"):
        rerender(tmp_path, tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_another_chip_into_the_same_folder_is_kept_apart(model, data, chip, tmp_path,
                                                         monkeypatch):
    """A different base chip (or model, data, seed) into the same --out: its points run, the
    first sweep's records stay in sweep.jsonl, neither enters the other's table, and the
    frame says how many records it left out (the command prints it)."""
    first = _sweep(model, data, chip, {"adc_bits": [3, 4]}, tmp_path)
    assert first.attrs["n_records_other"] == 0
    other = chip.replace(noise=chip.noise.replace(thermal_sigma_lsb=0.25))
    counted = _count_points(monkeypatch)
    second = _sweep(model, data, other, {"adc_bits": [3, 4]}, tmp_path)
    assert len(counted) == 2 and second.attrs["n_records_other"] == 2
    assert not set(first["point_id"]) & set(second["point_id"])
    assert (second["thermal_sigma_lsb"] == 0.25).all()
    assert len((tmp_path / "sweep.jsonl").read_text().splitlines()) == 4
    again = _sweep(model, data, chip, {"adc_bits": [3, 4]}, tmp_path)
    assert len(counted) == 2 and again["point_id"].tolist() == first["point_id"].tolist()


def test_label_less_sweep_plots_the_output_cosine():
    """Without labels the plot drew nothing ('no point has both an accuracy and an energy');
    it now draws each point's output cosine against its energy, with no front."""
    frame = _frame([{"accuracy": math.nan, "output_cosine": 0.9 + 0.01 * i,
                     "energy_pj_per_inference": 100.0 * (i + 1)} for i in range(3)])
    ax = plot_pareto(frame).axes[0]
    assert ax.get_ylabel().startswith("output cosine")
    drawn = np.concatenate([c.get_offsets() for c in ax.collections])
    assert sorted(map(tuple, drawn.tolist())) == [(100.0, 0.9), (200.0, 0.91), (300.0, 0.92)]
    legend = ax.get_legend()  # no front, so no "Pareto front" entry in the legend
    assert legend is None or "Pareto front" not in [t.get_text() for t in legend.get_texts()]


def test_an_impossible_combination_is_skipped_the_rest_run(model, data, chip, tmp_path,
                                                           monkeypatch):
    """cols_per_adc 128 is fine on 256-column arrays but not on 64-column ones: that one
    combination is skipped with its reason (the whole sweep was refused), the other points
    run, and a rerun runs nothing. A value no point can have is still refused up front."""
    grid = {"adc_bits": [4], "array_size": [64, 256], "cols_per_adc": [1, 128]}
    frame = _sweep(model, data, chip, grid, tmp_path)
    skipped = frame[(frame["array_size"] == 64) & (frame["cols_per_adc"] == 128)]
    assert skipped["status"].tolist() == [
        "skipped: ArrayConfig.cols_per_adc = 128 is invalid; allowed: an integer in [1, 64] "
        "(no more than n_cols; cols_per_adc is 8 unless set)"]
    assert skipped["energy_pj_per_inference"].isna().all() and not skipped["on_front"].any()
    assert frame.drop(skipped.index)["status"].eq("ok").all() and len(frame) == 4
    assert len((tmp_path / "sweep.jsonl").read_text().splitlines()) == 3
    counted = _count_points(monkeypatch)
    again = _sweep(model, data, chip, grid, tmp_path)
    assert counted == [] and again.attrs["n_points_resumed"] == 3
    assert again["status"].tolist() == frame["status"].tolist()
    with pytest.raises(ConfigError, match=r"sweep point \{'array_size': 64, 'cols_per_adc': "
                                          r"512, 'adc_bits': 4\}: .*cols_per_adc = 512"):
        _sweep(model, data, chip, {**grid, "cols_per_adc": [1, 512]}, tmp_path / "b")
    # a float or bool equal to a valid integer is refused too (it was skipped: 4.0 == 4)
    for bad in ([4, 4.0], [1, True]):
        with pytest.raises(ConfigError, match=r"ADCConfig.bits = (4.0|True) is invalid"):
            _sweep(model, data, chip, {"adc_bits": bad}, tmp_path / "c")


def _two_layers() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 10)).eval()


def test_exclude_keeps_layers_digital_at_every_point_and_is_part_of_the_id(
        data, chip, tmp_path, monkeypatch):
    """The sweep had no exclude (simulate and train have it): a layer a paper keeps digital
    could not be swept so. Now each point deploys with it digital (fewer arrays, less energy),
    the exclusion is in sweep.json, another exclusion is another sweep (other ids), and the
    same command resumes."""
    model = _two_layers()
    grid = {"adc_bits": [4, 6]}
    plain = _sweep(model, data, chip, grid, tmp_path / "plain")
    kept = _sweep(model, data, chip, grid, tmp_path / "kept", exclude=["3"])
    assert kept["status"].eq("ok").all()
    assert (kept["n_arrays"] < plain["n_arrays"]).all()
    assert (kept["energy_pj_per_inference"] < plain["energy_pj_per_inference"]).all()
    assert set(kept["point_id"]).isdisjoint(plain["point_id"])
    assert json.loads((tmp_path / "kept" / "sweep.json").read_text())["exclude"] == ["3"]
    assert "exclude" not in json.loads((tmp_path / "plain" / "sweep.json").read_text())
    counted = _count_points(monkeypatch)
    again = _sweep(model, data, chip, grid, tmp_path / "kept", exclude="3")  # one name: a str
    assert counted == [] and again["point_id"].tolist() == kept["point_id"].tolist()


def test_no_exclusion_keeps_the_ids_sweeps_had_before_it(chip):
    from cimsim.sweep.store import context_hash

    assert context_hash("m", "d", 8, chip, 0, ()) == context_hash("m", "d", 8, chip, 0)
    assert context_hash("m", "d", 8, chip, 0, ("fc",)) != context_hash("m", "d", 8, chip, 0)


def test_another_batch_size_is_another_sweep(model, data, chip, tmp_path, monkeypatch):
    """On a noisy chip the draws follow the batches: a sweep at another batch size into the
    same folder resumed the first one's rows as its own. The default keeps its ids."""
    from cimsim.sweep.store import context_hash

    assert context_hash("m", "d", 8, chip, 0, (), 256) == context_hash("m", "d", 8, chip, 0)
    assert context_hash("m", "d", 8, chip, 0, (), 7) != context_hash("m", "d", 8, chip, 0)
    grid = {"adc_bits": [4]}
    first = _sweep(model, data, chip, grid, tmp_path)
    counted = _count_points(monkeypatch)
    other = _sweep(model, data, chip, grid, tmp_path, batch_size=7)
    assert counted == [1] and set(other["point_id"]).isdisjoint(first["point_id"])
    assert json.loads((tmp_path / "sweep.json").read_text())["batch_size"] == 7


@pytest.mark.parametrize("bad", [[1], [""], 3, [None]])
def test_a_bad_exclusion_is_refused_before_any_point(bad, data, chip, tmp_path):
    with pytest.raises(ConfigError, match=r"exclude = .* is invalid; allowed: a layer name"):
        _sweep(_two_layers(), data, chip, {"adc_bits": [4]}, tmp_path, exclude=bad)
    assert not (tmp_path / "sweep.jsonl").exists()


def test_cli_sweep_takes_exclude(tmp_path, capsys):
    from cimsim.cli import main

    out = tmp_path / "demo"
    assert main(["sweep", "--model", "demo", "--chip", "rram-22nm", "--adc-bits", "4",
                 "--limit", "48", "--calibration", "32", "--exclude", "features.0",
                 "--exclude", "classifier.3", "--out", str(out)]) == 0
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["exclude"] == ["features.0", "classifier.3"]


@pytest.mark.parametrize("cost_model, kinds, warned", [
    ("tables", ["sar", "flash"], True), ("tables", ["sar", "ramp:bs_kmq"], True),
    ("tables", ["sar", "SAR"], False),  # one kind, two spellings
    ("physical", ["sar", "flash"], False),
])
def test_kinds_compared_under_the_tables_model_are_warned(cost_model, kinds, warned):
    """A sweep of sar,flash on rram-22nm (the tables model) ranked a 6-b flash cheaper and
    smaller than the SAR, the reverse of the physical model's survey-based prices: the tables
    price a flash as bare comparators. Said before any point runs."""
    import warnings

    from cimsim.config import load_chip
    from cimsim.sweep.run import _warn_kinds_under_tables

    base = load_chip("rram-22nm")
    base = base.replace(tech=base.tech.replace(cost_model=cost_model))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _warn_kinds_under_tables(base, {"adc_kind": kinds, "adc_bits": [4]})
    said = [str(w.message) for w in caught]
    assert bool(said) is warned
    if warned:
        assert said[0].startswith("sweep: adc_kind compares ") and "'physical'" in said[0]


def test_a_kind_sweep_on_a_tables_chip_warns_before_its_points(model, data, chip, tmp_path,
                                                               monkeypatch):
    counted = _count_points(monkeypatch)
    assert chip.tech.cost_model.value == "tables"
    with pytest.warns(UserWarning, match="under the base chip's 'tables' cost model"):
        _sweep(model, data, chip, {"adc_bits": [4], "adc_kind": ["sar", "flash"]}, tmp_path)
    assert len(counted) == 2


def test_sweep_json_holds_the_base_chip_field_by_field(model, data, chip, tmp_path):
    """A chip file's or --set's values are not in the chip's name: sweep.json keeps every
    field of the base chip (read back equal), the page only names it."""
    from cimsim.config import ChipConfig

    base = chip.replace(noise=chip.noise.replace(read_noise_rel=0.0123))
    _sweep(model, data, base, {"adc_bits": [4]}, tmp_path)
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert doc["chip"] == base.name
    assert ChipConfig.from_dict(doc["chip_config"]) == base
    assert "0.0123" not in (tmp_path / "sweep.html").read_text()


def test_the_legend_hides_no_point():
    """The legend sat in the lower right, where a sweep's dominated points (high energy, low
    accuracy) lie: 'sar 6b' of a 2x2 sweep of the digits CNN was drawn under it."""
    import pandas as pd

    frame = pd.DataFrame({"adc_kind": ["sar", "sar", "flash", "flash"],
                          "accuracy": [1.0, 0.96875, 1.0, 0.96875],
                          "energy_pj_per_inference": [242811.4, 357881.8, 118476.0, 142081.5],
                          "on_front": [False, False, True, False], "status": ["ok"] * 4})
    fig = plot_pareto(frame, labels=["sar 3b", "sar 6b", "flash 3b", "flash 6b"])
    ax = fig.axes[0]
    fig.canvas.draw()
    box = ax.get_legend().get_window_extent()
    for e, a in zip(frame["energy_pj_per_inference"], frame["accuracy"], strict=True):
        assert not box.contains(*ax.transData.transform((e, 100 * a)))


@pytest.mark.parametrize("damage", [{"point_id": [1]}, {"n_arrays": 7.5}, {"status": None},
                                    {"status": 7}])
def test_a_record_with_a_damaged_field_is_skipped_and_its_point_runs_again(damage, tmp_path,
                                                                          caplog):
    """``"point_id": [1]`` failed every rerun ("unhashable type"); ``"n_arrays": 7.5`` failed
    the table after every point had run (no file written); a record without a text status was
    taken for a finished point and never run again."""
    import json

    from cimsim.sweep.store import read_records

    path = tmp_path / "sweep.jsonl"
    good = {"point_id": "a", "status": "ok", "n_arrays": 3, "accuracy": 0.5}
    bad = {**good, "point_id": "b", **damage}
    path.write_text("\ufeff" + json.dumps(good) + "\n" + json.dumps(bad) + "\n",
                    encoding="utf-8")  # an editor's byte-order mark before the first
    with caplog.at_level("WARNING"):
        records = read_records(path)
    assert list(records) == ["a"]
    assert "the record is skipped and its point runs again" in caplog.text


def test_a_point_recorded_twice_reads_back_as_its_last_record(tmp_path):
    """``read_records``: records by point id, the last one wins (its docstring), so a point
    run again (a failed point rerun, a resumed sweep) is read as its newest result, not the
    stale first one; NaN and inf figures are written as null (``clean``)."""
    from cimsim.sweep.store import append_record, read_records

    path = tmp_path / "sweep.jsonl"
    append_record(path, {"point_id": "a", "status": "error", "accuracy": float("nan")})
    append_record(path, {"point_id": "b", "status": "ok", "accuracy": 0.25})
    last = append_record(path, {"point_id": "a", "status": "ok", "accuracy": 0.75,
                                "energy_j": np.float64(float("inf"))})
    assert last["energy_j"] is None
    records = read_records(path)
    assert list(records) == ["a", "b"]
    assert records["a"]["status"] == "ok" and records["a"]["accuracy"] == 0.75
    assert records["b"]["accuracy"] == 0.25


def test_the_default_context_hash_is_the_one_older_sweeps_wrote():
    """``context_hash`` leaves the batch size and the excluded layers out at their defaults
    (its docstring: so a sweep keeps the ids it had before those options existed, and
    resumes): at the defaults it is the SHA-256 of the model and data fingerprints, the
    calibration, the chip's fields and the seed alone, as an older results file holds it."""
    import hashlib

    import cimsim
    from cimsim.engine import engine_settings
    from cimsim.sweep.store import context_hash

    base = cimsim.load_chip("ideal")
    older = json.dumps({"model": "m", "data": "d", "calibration": "first:8",
                        "chip": base.to_dict(), "seed": 3,
                        **engine_settings()},  # none where the engine runs its defaults
                       sort_keys=True, default=repr)
    assert context_hash("m", "d", 8, base, 3) == hashlib.sha256(older.encode()).hexdigest()
    assert context_hash("m", "d", 8, base, 3, (), 256) == context_hash("m", "d", 8, base, 3)


class TestInputsTheModelDoesNotTake:
    """Inputs of another form than the model takes are refused by name before any point runs:
    every point was run, deployed and recorded as failed with the model's own shape error
    (``error: RuntimeError: 0: mat1 and mat2 shapes cannot be multiplied``)."""

    def test_a_calibration_tensor_of_another_feature_count(self, tmp_path, fake):
        from tests.sweep.conftest import run_faked

        with pytest.raises(ConfigError, match=r"^calibration: the model fails on its first "
                                              r"inputs \(RuntimeError: mat1 and mat2 shapes"):
            run_faked(tmp_path, calibration=torch.zeros(5, 7))
        assert fake.todo == [] and not (tmp_path / "sweep.jsonl").exists()

    def test_data_without_labels_of_another_feature_count(self, tmp_path, fake):
        from tests.sweep.conftest import run_faked

        with pytest.raises(ConfigError, match=r"^data: the model fails on its first inputs "
                                              r"\(RuntimeError: .*allowed: inputs the model"):
            run_faked(tmp_path, data=torch.zeros(6, 5))
        assert fake.todo == []

    def test_the_check_leaves_each_module_in_its_mode(self, tmp_path, fake):
        """The model runs on two inputs in eval mode and gets its flags back: a BatchNorm in
        training mode keeps its running statistics."""
        from tests.sweep.conftest import run_faked

        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).train()
        run_faked(tmp_path, model=model)
        assert model.training and model[1].training
        assert torch.equal(model[1].running_mean, torch.zeros(3))
        assert int(model[1].num_batches_tracked) == 0 and len(fake.todo) == 1

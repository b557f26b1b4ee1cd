"""Known answers for what a second mutation-testing round over ``cimsim/cli.py`` and
``cimsim/report.py`` found unpinned: the bounds of the values a report records, the checks
``Report.load`` makes of a saved file, which files ``Report.save`` writes and ``Report.clear``
removes, the page's long tables, the figures the headline and the summary print (format,
unit, basis), the training line, the command line's argument types, exit statuses, error and
warning lines, ``--out`` checks, the sweep table and the layer-table notices.

Each test names, in its docstring, the rule it pins; the reports are hand-made (a few
dataclass fields replaced on one small MLP's report) so that every figure is known."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

import cimsim
from cimsim.errors import CimsimError, ConfigError
from cimsim.report import Report, headline_lines
from tests.conftest import mlp_report


@pytest.fixture(scope="module")
def rep() -> Report:
    """A small MLP's report on rram-22nm (no digital layers, no fidelity trace)."""
    return mlp_report("rram-22nm", 32, 10)


def _with(report: Report, **fields) -> Report:
    """``report`` with some fields replaced (its tables and dicts copied, not shared)."""
    copies = {"notes": list(report.notes), "summary": dict(report.summary),
              "totals": dict(report.totals)}
    return dataclasses.replace(report, **(copies | fields))


# ---------------------------------------------------------------------------------------------
# what a report records
# ---------------------------------------------------------------------------------------------
def test_recorded_figures_accept_the_ends_of_their_ranges(rep):
    """Accuracies are fractions in [0, 1] (0 and 1 included), a cosine is in [-1, 1], the
    input count an integer >= 0: the edges are results a run can give (a chance-level model
    scores 0 on a small set, an inverted output has cosine -1)."""
    r = _with(rep)
    r.set_accuracy(0.0, 1.0, 0)
    assert r.summary == {"float_accuracy": 0.0, "simulated_accuracy": 1.0, "n_eval_inputs": 0}
    r.set_output_fidelity(-1.0, 0)
    assert r.summary["output_cosine"] == -1.0
    with pytest.raises(ValueError, match=r"simulated_accuracy = 1\.01; allowed: a fraction"):
        r.set_accuracy(0.5, 1.01, 3)
    with pytest.raises(ValueError, match=r"n_inputs = -1 is invalid; allowed: an integer >= 0"):
        r.set_accuracy(0.5, 0.5, -1)


def _json_only(rep: Report, folder) -> None:
    """``rep``'s report.json as :meth:`Report.save` writes it, without the figures (their
    rendering is most of a save's time)."""
    from cimsim._json import json_safe
    from cimsim.report import _json_default

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(json_safe(rep.to_dict()), allow_nan=False,
                                                   default=_json_default))


def _saved(rep: Report, tmp_path, edit) -> str:
    """The folder of ``rep``'s report.json, changed by ``edit(data)``."""
    folder = tmp_path / "saved"
    _json_only(rep, folder)
    data = json.loads((folder / "report.json").read_text())
    edit(data)
    (folder / "report.json").write_text(json.dumps(data))
    return str(folder)


def test_load_names_a_missing_version_key(rep, tmp_path):
    """A report.json without ``cimsim_version`` is not one ``save`` wrote: refused naming the
    key, not read back with the version 'unknown'."""
    folder = _saved(rep, tmp_path, lambda d: d.pop("cimsim_version"))
    with pytest.raises(CimsimError, match="not a report cimsim saved .no 'cimsim_version'"):
        Report.load(folder)


def test_load_names_a_component_row_without_its_layer(rep, tmp_path):
    """Rows of ``components`` and ``breakdown`` name their layer, as ``layers``' do: a row
    without one is refused when the file is read, naming the table."""
    def edit(data):
        data["components"][0].pop("layer")

    folder = _saved(rep, tmp_path, edit)
    with pytest.raises(CimsimError, match="a row of 'components' has no 'layer'"):
        Report.load(folder)


# ---------------------------------------------------------------------------------------------
# files: save, clear, figures
# ---------------------------------------------------------------------------------------------
def test_save_writes_the_three_main_tables_even_without_rows(rep, tmp_path):
    """``layers``, ``components`` and ``digital`` are always written (a header-only
    digital.csv says no layer was kept digital); the other tables only with rows."""
    empty = _with(rep, area=pd.DataFrame(), blocks=pd.DataFrame())
    names = {p.name for p in empty.save(tmp_path)}
    assert {"layers.csv", "components.csv", "digital.csv"} <= names
    assert "area.csv" not in names and "blocks.csv" not in names
    assert (tmp_path / "digital.csv").read_text().splitlines() == ["layer,type,reason"]


def test_clear_removes_the_folder_only_when_nothing_else_is_left(rep, tmp_path):
    """``Report.clear`` removes the report's files and the folder they leave empty; a file of
    the user's keeps the folder."""
    from cimsim.report import report_files

    alone, shared = tmp_path / "alone", tmp_path / "shared"
    for folder in (alone, shared):
        folder.mkdir()
        for name in report_files():
            (folder / name).write_text("")
    (shared / "mine.txt").write_text("kept")
    Report.clear(alone)
    Report.clear(shared)
    assert not alone.exists()
    assert sorted(p.name for p in shared.iterdir()) == ["mine.txt"]


def test_fidelity_figure_drawn_when_some_layer_has_an_sqnr(rep):
    """A layer without an SQNR (never reached, the reprogramming line) does not take the
    figure away from the layers that have one."""
    layers = rep.layers.copy()
    layers["sqnr_db"] = [12.0] + [math.nan] * (len(layers) - 1)
    assert "fidelity_per_layer.png" in _with(rep, layers=layers).figures()


def _long(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    return pd.concat([frame] * (n // len(frame) + 1), ignore_index=True).head(n)


@pytest.mark.parametrize("name", ["components", "blocks"])
def test_long_tables_are_collapsed_beyond_twenty_rows_and_cut_beyond_five_hundred(rep, name):
    """A components or blocks table of 20 rows is shown open; of 21, inside a closed
    ``<details>`` saying how many rows; of 500 all of them; of 501 the first 500 and a
    pointer to the CSV."""
    base = getattr(rep, name)

    def page(n):
        return _with(rep, **{name: _long(base, n)}).to_html(images={})

    assert f"{name}.csv has all" not in page(20)
    assert "(20 rows)" not in page(20)
    assert "(21 rows)</summary>" in page(21)
    assert "(500 rows)</summary>" in page(500)
    assert f"(the first 500 of 501 rows; {name}.csv has all)</summary>" in page(501)


# ---------------------------------------------------------------------------------------------
# numbers as printed
# ---------------------------------------------------------------------------------------------
def test_source_loses_its_docs_references_and_their_parentheses():
    """An installed package has no docs/ folder: references to it are dropped, and a pair of
    parentheses left empty with them."""
    from cimsim.report import _source_for_users

    assert _source_for_users("NeuroSim defaults (docs/technology.md)") == "NeuroSim defaults"
    assert (_source_for_users("NeuroSim defaults (Peng 2019; docs/technology.md)")
            == "NeuroSim defaults (Peng 2019)")


def test_a_small_figure_gets_three_significant_digits_below_two_shown():
    """``{:.3f}`` shows 0.00567 as 0.006 (one significant digit): it reads 0.00567; 0.0123
    shows two digits in fixed point and stays 0.012; a figure of a million pJ or more is also
    given in a readable unit, from exactly 1e6."""
    from cimsim.report import _shown

    assert _shown("{:.3f}", 0.00567) == "0.00567"
    assert _shown("{:.3f}", 0.0123) == "0.012"
    assert _shown("{:,.1f} pJ", 1e6) == "1,000,000.0 pJ (1 µJ)"
    assert _shown("{:,.1f} pJ", 999_999.0) == "999,999.0 pJ"


def _totals(**extra) -> dict:
    return {"energy_pj_per_inference": 667.91, "area_mm2": 31.2618, "area_mm2_used": 0.023263,
            "latency_ns_per_inference": 5000.0, "tops_per_w": 0.57493, "tops_per_mm2": 0.12345,
            "tops_per_mm2_used": 0.053951, "n_arrays_used": 2, "n_arrays_available": 2688,
            "time_multiplexed": False, "n_array_slots": 2688, **extra}


def test_headline_lines_known_answer():
    """Every headline line, in order, with its format: 1 decimal for pJ and ns, 4 for mm2 and
    TOPS/mm2, 3 for TOPS/W, labels 24 wide; the reload time right after the latency."""
    lines = headline_lines(_totals(reprogramming_latency_ns_per_inference=1234.5))
    assert lines == [
        "energy per inference    667.9 pJ",
        "area                    31.2618 mm2 chip, 0.0233 mm2 used part",
        "latency per inference   5,000.0 ns",
        "  of which reloading    1,234.5 ns (time-multiplexed arrays rewritten)",
        "TOPS/W                  0.575",
        "TOPS/mm2                0.1235 chip, 0.0540 used part",
        "arrays used             2 of 2688",
    ]


def test_headline_marks_every_cost_line_of_a_meaningless_chip():
    """``cost_caveat`` set: a first line gives it, and each cost line says [meaningless]."""
    lines = headline_lines(_totals(cost_caveat="a reference chip"))
    assert lines[0] == "cost figures            meaningless: a reference chip"
    assert all(line.endswith("  [meaningless]") for line in lines[1:-1])
    assert not lines[-1].endswith("[meaningless]")  # the array count is no cost


def test_arrays_line_says_nothing_of_turns_when_not_time_multiplexed():
    """Not time-multiplexed: no words about turns, whatever the slots."""
    from cimsim.report import _turns

    assert _turns(_totals()) == ""
    assert _turns(_totals(time_multiplexed=True, n_arrays_used=10, n_array_slots=10)) == (
        " (layers take turns, switching stored weight sets: none rewritten)")
    assert _turns(_totals(time_multiplexed=True, n_arrays_used=11, n_array_slots=10)) == (
        " (time-multiplexed)")


def test_summary_rows_known_answer(rep):
    """The summary's rows for given totals and an accuracy: formats (2 decimals of %, 1 of
    pJ and ns, 3 of TOPS/W, 4 of mm2), the used area before the chip's, and a time after
    programming only for a device that ages."""
    from cimsim.report import _predicted_by, _summary_rows

    r = _with(rep, totals=_totals(t_inference_s=86400.0, calibration="none"))
    r.set_accuracy(0.98765, 0.5, 96)
    rows = {q: (v, b) for q, v, b in _summary_rows(r)}
    how = f"predicted ({_predicted_by(r.chip)})"
    assert rows["accuracy"] == ("98.77 % float, 50.00 % simulated on 96 inputs", "simulated")
    assert rows["energy per inference"] == ("667.9 pJ", how)
    assert rows["latency per inference"] == ("5,000.0 ns", how)
    assert rows["TOPS/W"] == ("0.575 TOPS/W", how)
    assert rows["area"] == ("0.0233 mm2 used of 31.2618 mm2 chip", how)
    assert rows["arrays"] == ("2 used of 2688", "count")
    assert "time after programming" not in rows  # rram does not age
    aged = _with(r, chip=cimsim.load_chip("pcm-22nm"))
    rows = {q: v for q, v, _ in _summary_rows(aged)}
    assert rows["time after programming"] == "86400 s (devices aged to it)"


def test_summary_without_an_input_count_names_none(rep):
    """A saved summary without ``n_eval_inputs`` (or 0 of them) shows no count; a cosine has
    4 decimals, a NaN one reads undefined."""
    from cimsim.report import _summary_rows

    r = _with(rep)
    r.summary = {"float_accuracy": 0.9, "simulated_accuracy": 0.8}
    assert ("accuracy", "90.00 % float, 80.00 % simulated", "simulated") in _summary_rows(r)
    r.summary = {}
    r.set_output_fidelity(0.987654, 12)
    assert ("output fidelity", "cosine to float 0.9877 on 12 inputs",
            "simulated") in _summary_rows(r)
    r.summary = {}
    r.set_output_fidelity(math.nan, 12)
    assert ("output fidelity", "cosine to float undefined (outputs not finite) on 12 inputs",
            "simulated") in _summary_rows(r)


def _calibrated_report(rep: Report, preset: str) -> Report:
    from cimsim.cost.energy import calibration_for

    chip = cimsim.load_chip(preset)
    return _with(rep, chip=chip, totals=_totals(calibration=calibration_for(chip).note))


def test_calibrated_components_are_named_per_kind(rep):
    """jia-jssc20 scales the energy and area of its ADC and cells (not the ADC's time);
    isaac-32nm the area of its cells and the ADC's conversion time (no energy); a report whose
    saved calibration note is not the preset's names none (the factors are then unknown)."""
    from cimsim.report import _calibrated, _predicted_by, _summary_rows

    jia = _calibrated_report(rep, "jia-jssc20")
    assert _calibrated(jia) == {"energy": "adc, cell", "area": "adc, cell"}
    isaac = _calibrated_report(rep, "isaac-32nm")
    assert _calibrated(isaac) == {"area": "cell", "time": "adc conversion time"}
    isaac.totals["calibration"] = "another note"
    assert _calibrated(isaac) == {}
    rows = {q: b for q, _, b in _summary_rows(jia)}
    scaled = "calibrated (adc, cell scaled to a published chip), rest predicted"
    assert rows["energy per inference"] == rows["TOPS/W"] == rows["area"] == scaled
    assert rows["latency per inference"] == f"predicted ({_predicted_by(jia.chip)})"


def test_cost_basis_names_the_calibrated_kinds_only(rep):
    """cost_basis lists each kind a preset scales, and the ADC time only where it is
    scaled; an uncalibrated chip says how it is predicted."""
    from cimsim.report import _predicted_by, cost_basis

    isaac = cimsim.load_chip("isaac-32nm")
    assert cost_basis(isaac) == (
        "calibrated to a published chip: area of cell; ADC conversion time "
        f"(cimsim.cost.CALIBRATIONS['isaac-32nm']); the rest predicted ({_predicted_by(isaac)})")
    jia = cimsim.load_chip("jia-jssc20")
    assert cost_basis(jia).startswith(
        "calibrated to a published chip: energy of adc, cell; area of adc, cell (")
    assert cost_basis(rep.chip) == f"every cost figure predicted ({_predicted_by(rep.chip)})"


def test_a_kind_whose_factors_are_all_one_is_not_named_calibrated(rep, monkeypatch):
    """A calibration may hold a factor of 1 (a component fitted at its prediction): a kind
    of only such factors is not named as calibrated ("energy of ; area of cell"), nor is a
    component of factor 1."""
    from cimsim.cost import _prices
    from cimsim.report import _calibrated, cost_basis

    cal = _prices.CALIBRATIONS["isaac-32nm"]
    monkeypatch.setitem(_prices.CALIBRATIONS, "isaac-32nm", _prices.Calibration(
        energy={"adc": 1.0}, area=dict(cal.area), adc_time_scale=cal.adc_time_scale,
        note=cal.note))
    assert cost_basis(cimsim.load_chip("isaac-32nm")).startswith(
        "calibrated to a published chip: area of cell; ADC conversion time (")
    assert _calibrated(_calibrated_report(rep, "isaac-32nm")) == {
        "area": "cell", "time": "adc conversion time"}


def test_training_line_known_answers():
    """method, epoch count (plural but for one), the first and last epochs' mean loss."""
    from cimsim.report import _training_text

    assert _training_text({"method": "qat", "loss": [1.0, 0.5, 0.25]}) == (
        "qat, 3 epochs, mean loss 1 in the first, 0.25 in the last")
    assert _training_text({"loss": [0.123456]}) == "trained, 1 epoch, loss 0.1235"
    assert _training_text({"loss": []}) == "trained, 0 epochs"


def test_saved_training_reads_back_infinities_and_refuses_bools():
    """A loss saved as "inf" reads back as a float, a null as NaN; a bool is no loss."""
    from cimsim.report import _saved_training

    loss = _saved_training({"method": "qat", "loss": ["inf", 1.5, None]})["loss"]
    assert loss[0] == math.inf and loss[1] == 1.5 and math.isnan(loss[2])
    with pytest.raises(ValueError, match=r"training\['loss'\]"):
        Report.set_training(Report.__new__(Report), {"loss": [True, 0.5]})


def test_null_figures_become_nan_but_text_stays_none():
    """Only numeric names' nulls are NaN: a note saved as null stays None."""
    from cimsim.report import _nan_for_null

    out = _nan_for_null({"energy_pj_per_inference": None, "ops_convention": None})
    assert math.isnan(out["energy_pj_per_inference"]) and out["ops_convention"] is None


def test_table_cells_and_totals_known_answers():
    """Page cells: four significant digits, but 1e4 to 1e15 whole with separators; the
    totals list: six significant digits."""
    from cimsim.report import _cell, _fmt

    assert _cell("x", 14337.0) == "14,337"
    assert _cell("x", 9999.4) == "9,999"
    assert _cell("x", 1.23456) == "1.235"
    assert _fmt(1234567.891) == "1.23457e+06"
    assert _fmt(0.1234567) == "0.123457"


class _Events(dict):
    """A layer's event counts: 0 for an event it never had."""

    def get(self, key, default=0.0):
        return super().get(key, default)


def test_layer_rows_are_per_inference_and_in_percent(rep):
    """A layer of 4,096 cells on one 128 x 128 array is 25 % utilized; clipped fractions of
    0.25 and 0.125 are 25 % and 12.5 %; 200 conversions over 4 inferences are 50 each."""
    from types import SimpleNamespace

    from cimsim.report import _layer_rows

    layer = SimpleNamespace(name="L", kind="linear", n_inputs=8, n_outputs=16, n_matrices=1,
                            input_signed=True, n_arrays=1, n_cells=4096, events=_Events(),
                            n_adc_conversions=200, adc_clip_fraction=0.25,
                            input_clip_fraction=0.125)
    work = SimpleNamespace(chip=rep.chip, n_inferences=4, layers=[layer])
    cost = SimpleNamespace(layers=[{"layer": "L", "energy_pj_per_inference": 3.0,
                                    "latency_ns_per_inference": 5.0, "area_um2": 7.0}])
    (row,) = _layer_rows(work, cost)
    assert (rep.chip.array.n_rows, rep.chip.array.n_cols) == (128, 128)
    assert row["cell_utilization_pct"] == 25.0
    assert (row["adc_clip_pct"], row["input_clip_pct"]) == (25.0, 12.5)
    assert row["n_conversions_per_inference"] == 50.0
    assert (row["energy_pj_per_inference"], row["latency_ns_per_inference"],
            row["area_um2"]) == (3.0, 5.0, 7.0)


def test_fidelity_columns_keep_the_runs_value_and_fill_its_gaps():
    """A column both the run and the trace have keeps the run's value, the trace's only
    where the run had none."""
    from cimsim.report import _with_fidelity

    layers = pd.DataFrame({"layer": ["a", "b"], "adc_clip_pct": [1.0, math.nan]})
    trace = pd.DataFrame({"layer": ["a", "b"], "adc_clip_pct": [5.0, 6.0], "sqnr_db": [1, 2]})
    out = _with_fidelity(layers, trace)
    assert out["adc_clip_pct"].tolist() == [1.0, 6.0]
    assert out["sqnr_db"].tolist() == [1, 2]


def test_reprogrammed_arrays_are_counted_per_inference():
    """A time-multiplexed run of 10 inferences: the reprogrammed arrays per inference are the
    run's count over 10."""
    from tests.test_report import _over_capacity_report

    r = _over_capacity_report()
    n = r.totals["n_reprogrammed_arrays_per_inference"]
    assert n > 0
    assert r.totals["n_inferences"] == 10
    assert n == pytest.approx(r.components.loc[
        (r.components["component"] == "array") & (r.components["action"] == "reprogram"),
        "n_events_per_inference"].sum())


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def test_log_axis_minor_labels_are_two_and_five_only():
    """Only 2x and 5x a power of ten are labelled (every minor tick's label overlapped)."""
    from cimsim.report import _two_five_label

    assert _two_five_label(2e4, 0) == r"$\mathdefault{2\times10^{4}}$"
    assert _two_five_label(5e-3, 0) == r"$\mathdefault{5\times10^{-3}}$"
    assert _two_five_label(3e4, 0) == ""
    assert _two_five_label(0.0, 0) == ""


def test_two_fronts_get_a_shade_and_a_label_each():
    """Two times on the front: two groups, each labelled with its time (in the largest unit
    it reaches)."""
    from cimsim.report import FRONT_COLOR, _front_groups

    frame = pd.DataFrame({"time_s": [3600.0, 3600.0, 3.1536e7, 3.1536e7]})
    front = pd.Series([True] * 4)
    groups = _front_groups(frame, "time_s", front)
    assert [label for _, _, label in groups] == ["Pareto front, t = 1 h",
                                                 "Pareto front, t = 1 y"]
    assert all(color != FRONT_COLOR for _, color, _ in groups)
    one = _front_groups(frame.head(2), "time_s", front.head(2))
    assert [(c, label) for _, c, label in one] == [(FRONT_COLOR, "Pareto front, t = 1 h")]


def test_accuracy_over_time_leaves_out_time_zero():
    """Times must be > 0 on the log axis: a frame of t = 0 only draws no point."""
    from cimsim.report import plot_accuracy_time

    fig = plot_accuracy_time(pd.DataFrame({"time_s": [0.0], "accuracy": [0.5]}))
    assert [t.get_text() for t in fig.axes[0].texts] == ["no point has an accuracy"]


def test_training_panel_shows_accuracies_in_percent():
    """With labels the four dots are accuracies in %, a figure not measured None."""
    from cimsim.report import _training_scores

    dots, label = _training_scores({"twin_accuracy": 0.5},
                                   {"float_accuracy": 0.9, "simulated_accuracy": 0.8})
    assert label == "accuracy (%)"
    assert [v for _, v in dots] == [pytest.approx(90.0), None, 50.0, pytest.approx(80.0)]


def test_area_figure_is_in_mm2():
    """``area_um2`` summed per component and drawn in mm^2 (2e6 um^2 is a 2 mm^2 bar)."""
    from cimsim.report import plot_area_by_component

    fig = plot_area_by_component(pd.DataFrame({"component": ["adc", "adc", "cell"],
                                               "area_um2": [1.5e6, 0.5e6, 1e6]}))
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([2.0, 1.0])
    assert ax.get_title() == "Chip area by component (total 3 mm$^2$)"


def test_repr_of_a_report_without_an_inference_count(rep):
    """An older saved report without ``n_inferences`` says '?', not 0."""
    totals = dict(rep.totals)
    totals.pop("n_inferences")
    assert "inferences=?)" in repr(_with(rep, totals=totals)).splitlines()[0]


def test_colours_of_names_outside_the_components_follow_their_bytes():
    """A name outside the components gets a spare colour by the sum of its bytes: two
    names of one length can differ."""
    from cimsim.report import component_color

    assert component_color("ab") != component_color("ac")


def test_json_default_writes_an_enum_as_its_value():
    """report.json holds an enum's value (what a chip file takes), a NumPy number as Python's."""
    from cimsim.config import ADCKind
    from cimsim.report import _json_default

    assert _json_default(ADCKind.SAR) == "sar"
    assert _json_default(np.float32(0.5)) == 0.5
    with pytest.raises(TypeError, match="cannot serialise"):
        _json_default(object())


# ---------------------------------------------------------------------------------------------
# command line: the layer table and its notices
# ---------------------------------------------------------------------------------------------
def test_layer_table_has_one_decimal_and_a_dash_for_no_value(rep):
    """The terminal's layer table: one decimal with thousands separators, '-' where a row has
    no value (the reprogramming line's clipping), not 'NaN'."""
    from cimsim.cli import _layer_table

    layers = rep.layers.copy()
    layers["energy_pj_per_inference"] = [12345.678] + [1.0] * (len(layers) - 1)
    layers["adc_clip_pct"] = [math.nan] * len(layers)
    table = _layer_table(_with(rep, layers=layers))
    first = table.splitlines()[1]
    assert "12,345.7" in first and "NaN" not in table
    assert first.split()[-1] == "-"  # the clip column, last


def _leak_report(rep, leak: float, gating: str = "none") -> Report:
    comp = pd.DataFrame({"layer": ["0", "0"], "component": ["adc", "cell"],
                         "action": ["leak", "read"], "energy_pj_per_inference": [leak, 100 - leak]})
    chip = rep.chip.replace(tech=rep.chip.tech.replace(power_gating=gating))
    return _with(rep, components=comp, chip=chip,
                 totals=_totals() | {"energy_pj_per_inference": 100.0})


def test_leakage_notice_above_half_the_energy_without_gating(rep):
    """ADC leakage over half the energy (not at half), with power_gating 'none', is named
    with its share in per cent; a chip that gates is not told to gate."""
    from cimsim.cli import _leakage_notice

    assert _leakage_notice(_leak_report(rep, 50.0)) == ""
    line = _leakage_notice(_leak_report(rep, 60.0))
    assert line.startswith("\nADC leakage is 60 % of the energy per inference: ")
    assert _leakage_notice(_leak_report(rep, 60.0, gating="layer")) == ""


def test_noted_keeps_each_notice_once(rep):
    """A notice already in the notes (a re-rendered report) is not added again."""
    from cimsim.cli import _noted

    r = _leak_report(rep, 90.0)
    _noted(r)
    _noted(r)
    assert sum(n.startswith("ADC leakage is 90 %") for n in r.notes) == 1


def _clip_report(rep, clips: list[float]) -> Report:
    layers = pd.DataFrame({"layer": [f"L{i}" for i in range(len(clips))], "adc_clip_pct": clips})
    return _with(rep, layers=layers)


def test_clipping_notice_names_layers_above_one_percent(rep):
    """Layers whose ADCs clip more than 1 % of conversions are named, with one decimal; a
    layer at exactly 1 % is not."""
    from cimsim.cli import _clipping_notice

    line = _clipping_notice(_clip_report(rep, [1.0, 1.5, 2.345]))
    assert line.startswith("\nADC clipping above 1 % of conversions: L1 (1.5 %), L2 (2.3 %); ")
    assert _clipping_notice(_clip_report(rep, [1.0, 0.2])) == ""


def _sqnr_report(rep, chip, sqnr, use, clip) -> Report:
    layers = pd.DataFrame({"layer": [f"L{i}" for i in range(len(sqnr))], "sqnr_db": sqnr,
                           "adc_code_use_pct": use, "adc_clip_pct": clip})
    return _with(rep, layers=layers, chip=chip)


def test_fidelity_notice_names_the_cause_per_layer(rep):
    """Below 10 dB (not at it): a layer using few codes has too wide a range, one using few
    codes and clipping too a range that fits no end of the signal, one using many codes on
    a noisy chip its noise; with several causes each is prefixed by its layers."""
    from cimsim.cli import _fidelity_notice

    r = _sqnr_report(rep, rep.chip, [5.0, 6.0, 7.0, 10.0], [10.0, 10.0, 80.0, 10.0],
                     [0.0, 5.0, 0.0, 0.0])
    line = _fidelity_notice(r)
    assert line.startswith("\nSQNR below 10 dB: L0 (5.0 dB, 10 % of ADC codes used), "
                           "L1 (6.0 dB, 10 % of ADC codes used), L2 (7.0 dB, 80 % of ADC codes "
                           "used); ")
    assert "L1: their ADC ranges fit neither end" in line
    assert "L0: their ADC ranges are far wider than their signals (few codes used; " \
           "adc.range_policy = 'calibrated'), a narrower range" in line
    assert "L2: their outputs are set more by the chip's noise" in line
    assert "L3" not in line


def test_fidelity_notice_on_a_noiseless_full_scale_chip(rep):
    """No noise: the converters' steps are the cause, and a full-scale range is told to
    calibrate; one cause is given without layer names. At 2-bit weights the model's own
    quantization is named first."""
    from cimsim.cli import _fidelity_notice

    ideal = cimsim.load_chip("ideal")
    line = _fidelity_notice(_sqnr_report(rep, ideal, [5.0], [80.0], [0.0]))
    assert line.endswith("; the chip has no noise, variation or drift, so their error is the "
                         "converters' steps and clipping: adc.range_policy = 'calibrated' fits "
                         "the range to the signal, more adc.bits or fewer rows per conversion "
                         "narrow the step (docs/hardware-model.md §7)")
    low = _fidelity_notice(_sqnr_report(rep, ideal.replace(weight_bits=2), [5.0], [80.0],
                                        [0.0]))
    assert "; at 2-b weights and 8-b inputs the float model's own quantization" in low


# ---------------------------------------------------------------------------------------------
# command line: values of the flags
# ---------------------------------------------------------------------------------------------
def test_time_values_keep_the_first_label_of_a_time_and_name_the_flag():
    """``1 h,3600`` is one time, labelled as first written without its spaces; a bad
    duration's error starts with the flag."""
    from cimsim.cli import _time_values

    pcm = cimsim.load_chip("pcm-22nm")
    assert _time_values("--time", "1 h,3600,1d", pcm) == [("1h", 3600.0), ("1d", 86400.0)]
    with pytest.raises(ConfigError, match=r"^--time: "):
        _time_values("--time", "soon", pcm)


def test_split_note_counts_the_evaluated_inputs():
    """The line simulate and sweep print: the inputs left after calibration are counted."""
    from cimsim.cli import _split_note

    assert _split_note(10, 4) == "10 inputs: the first 4 calibrate, 6 evaluated"


def test_unseen_classes_edges(capsys):
    """No input beyond the calibration ones: nothing to warn of; as many evaluated classes as
    calibration inputs, all unseen: warned."""
    from cimsim.cli import _warn_unseen_classes

    _warn_unseen_classes(np.array([0, 0, 1, 1]), 4)
    assert capsys.readouterr().err == ""
    _warn_unseen_classes(np.array([0, 0, 1, 2]), 2)
    assert "1 class(es), the evaluated ones 2: 2 are never calibrated on" in (
        capsys.readouterr().err)


def test_layers_kept_digital_are_grouped_by_reason(rep, capsys):
    """One reason once, with its layers; reasons separated by semicolons."""
    from cimsim.cli import _print_layers

    digital = pd.DataFrame({"layer": ["a", "b", "c"], "type": ["Linear"] * 3,
                            "reason": ["excluded", "excluded", "not mappable"]})
    _print_layers(_with(rep, digital=digital))
    assert capsys.readouterr().out.rstrip().endswith(
        "kept digital (not in the figures above): a, b (excluded); c (not mappable)")
    _print_layers(rep)
    assert "kept digital" not in capsys.readouterr().out


def test_an_empty_range_says_how_to_write_it():
    from cimsim.cli import _int_values

    with pytest.raises(ConfigError, match=r"^--adc-bits: '5-4' is an empty range \(5 > 4\); "
                                          r"write it low-high like 4-5$"):
        _int_values("--adc-bits", "5-4")


def test_list_values_drop_repeats_and_spaces():
    """Each list flag runs a value once and reads ' flash' as 'flash'."""
    from cimsim.cli import _float_values, _kind_values, _vary_values

    assert _float_values("--noise", "0,0.5,0") == [0.0, 0.5]
    assert _kind_values("--adc-kind", "sar, flash,sar") == ["sar", "flash"]
    assert _vary_values("input_bits=4,4,6") == ("input_bits", [4, 6])
    assert _vary_values("device.drift_nu_mean=[0.05,0.06],[0.04,0.05]") == (
        "device.drift_nu_mean", [[0.05, 0.06], [0.04, 0.05]])
    with pytest.raises(ConfigError, match="'input_bits= ' is invalid; allowed: FIELD=VALUE"):
        _vary_values("input_bits= ")


def test_count_types_refuse_negatives_and_blank_paths():
    """``--limit`` takes 0 (all) but not -1; a blank path is refused, spaces and all."""
    from cimsim.cli import _LIMIT, _path

    with pytest.raises(argparse.ArgumentTypeError, match="-1 is invalid; allowed: an integer "
                                                         ">= 1, or 0"):
        _LIMIT("-1")
    with pytest.raises(argparse.ArgumentTypeError, match="is empty"):
        _path("  ")


def test_defaults_the_help_names():
    """demo writes to out/, datasheet's defaults are the macro at input density 0.5."""
    from pathlib import Path

    from cimsim.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["demo"]).out == Path("out")
    ds = parser.parse_args(["datasheet", "rram-22nm"])
    assert (ds.scope, ds.input_density) == ("macro", 0.5)


# ---------------------------------------------------------------------------------------------
# command line: train's checks
# ---------------------------------------------------------------------------------------------
def _train_args(*extra: str) -> argparse.Namespace:
    from tests.test_mutants_config_cli import _train_args as made

    return made(*extra)


@pytest.mark.parametrize("extra, message", [
    (("--method", "columnquant", "--num-sigma", "0"),
     "--num-sigma: 0.0 is invalid; allowed: a finite number > 0"),
    (("--no-forward-rescale",),
     "--no-forward-rescale: read by --method pim-qat only, here --method qat"),
    (("--option", "lora_rank=2", "--option", "lora_rank=4", "--method", "qat+lora"),
     "--option lora_rank is given twice ('2' and '4')"),
    (("--sweep-adc-bits", "4", "--sweep", "adc_bits=5"), "--sweep: axis 'adc_bits' given twice"),
])
def test_train_flags_refused_naming_the_flag(extra, message):
    from cimsim.cli import _check_train_args

    with pytest.raises(ConfigError) as exc:
        _check_train_args(_train_args(*extra))
    assert message in str(exc.value)


def test_train_takes_one_time_and_warns_of_a_static_device(capsys):
    """``train --time`` takes one duration; ``--time`` on a chip that does not age warns
    unless every time is the programming time."""
    from cimsim.cli import _train_time, _warn_static_device

    rram = cimsim.load_chip("rram-22nm")
    with pytest.raises(ConfigError, match="train takes one time"):
        _train_time(argparse.Namespace(time="1h,1d"), cimsim.load_chip("pcm-22nm"))
    t0 = rram.device.drift_t0_s
    _warn_static_device(rram, [("t0", t0)])
    assert capsys.readouterr().err == ""
    _warn_static_device(rram, [("t0", t0), ("1h", 3600.0)])
    assert capsys.readouterr().err.startswith("cimsim: warning: --time: ")


def test_below_untrained_and_untrained_text_known_answers():
    """A trained model equal to the untrained one is not 'below' it; below it, the two
    figures in % (accuracy) or 4 decimals (cosine)."""
    from cimsim.cli import _below_untrained, _untrained_text

    chip = cimsim.load_chip("ideal")
    assert _below_untrained(0.5, {"untrained_accuracy": 0.5}, chip, False) is None
    assert "(accuracy 40.00 % against 50.00 %)" in _below_untrained(
        0.4, {"untrained_accuracy": 0.5}, chip, False)
    assert "(cosine 0.4000 against 0.5000)" in _below_untrained(
        0.4, {"untrained_cosine_to_float": 0.5}, chip, False)
    assert _untrained_text({"untrained_accuracy": 0.5}) == (
        "50.00 % (the float model deployed as is)")


# ---------------------------------------------------------------------------------------------
# command line: main's statuses and lines
# ---------------------------------------------------------------------------------------------
def _failing_presets(monkeypatch, exc: BaseException) -> None:
    import cimsim.cli

    def fail(args):
        raise exc

    monkeypatch.setattr(cimsim.cli, "cmd_presets", fail)


@pytest.mark.parametrize("exc, rc, err", [
    (CimsimError("first\nsecond"), 2, "cimsim: error: first second\n"),
    (CimsimError(""), 2, "cimsim: error: CimsimError\n"),
])
def test_main_prints_errors_on_one_line(monkeypatch, capsys, exc, rc, err):
    from cimsim.cli import main

    _failing_presets(monkeypatch, exc)
    assert main(["presets"]) == rc
    assert capsys.readouterr().err == err


def test_main_exits_128_plus_sigterm_when_terminated(monkeypatch, capsys):
    import signal

    import cimsim.cli

    _failing_presets(monkeypatch, cimsim.cli._Terminated())
    assert cimsim.cli.main(["presets"]) == 128 + signal.SIGTERM == 143
    assert capsys.readouterr().err == "cimsim: terminated\n"


def test_warnings_are_one_line_naming_a_category_other_than_userwarning():
    from cimsim.cli import _warning_line

    assert _warning_line("a\nb", UserWarning, "f.py", 1) == "cimsim: warning: a b\n"
    assert _warning_line("x", DeprecationWarning, "f.py", 1) == (
        "cimsim: warning: DeprecationWarning: x\n")


# ---------------------------------------------------------------------------------------------
# command line: report and sweep
# ---------------------------------------------------------------------------------------------
def test_report_out_writes_elsewhere_and_leaves_the_folder(rep, tmp_path, capsys):
    """``cimsim report DIR --out OTHER`` re-renders into OTHER; DIR keeps its files."""
    from cimsim.cli import main

    src, dst = tmp_path / "src", tmp_path / "dst"
    _json_only(rep, src)
    assert main(["report", str(src), "--out", str(dst)]) == 0
    assert (dst / "report.html").is_file() and (dst / "report.json").is_file()
    assert sorted(p.name for p in src.iterdir()) == ["report.json"]
    assert f"in {dst}/" in capsys.readouterr().out


def test_report_of_an_unfinished_sweep_counts_its_points(tmp_path, capsys):
    """Blank lines of sweep.jsonl are no points."""
    from cimsim.cli import main

    (tmp_path / "sweep.jsonl").write_text('{"a": 1}\n\n{"b": 2}\n')
    assert main(["report", str(tmp_path)]) == 2
    assert "(2 point(s) in sweep.jsonl, no sweep.json)" in capsys.readouterr().err


def test_report_of_a_time_run_names_its_first_folder(rep, tmp_path, capsys):
    from cimsim.cli import main

    for name in ("t_1h", "t_1d"):
        _json_only(rep, tmp_path / name)
    assert main(["report", str(tmp_path)]) == 2
    assert f"e.g. cimsim report {tmp_path / 't_1d'}\n" in capsys.readouterr().err


def _sweep_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "adc_bits": [4, 6], "accuracy": [0.5, math.nan], "output_cosine": [0.9, 0.95],
        "energy_pj_per_inference": [1234.56, 2000.0], "latency_ns_per_inference": [10.0, 20.0],
        "area_mm2": [0.12345, 0.2], "tops_per_w": [1.23456, 2.0], "n_arrays": [2, 2],
        "on_front": [True, False], "status": ["ok", "failed: x"],
        "n_conversions_per_inference": [1.0, 1.0], "adc_area_mm2": [0.1, 0.1]})


def test_sweep_table_known_answer():
    """Accuracy in % with 2 decimals, '-' for none, a '*' on the front, a status column once
    any point is not ok."""
    from cimsim.cli import _sweep_table

    lines = _sweep_table(_sweep_frame()).splitlines()
    assert lines[0].split() == ["adc_bits", "acc_%", "energy_pJ/inf", "latency_ns/inf",
                                "area_mm2", "TOPS/W", "arrays", "front", "status"]
    assert lines[1].split() == ["4", "50.00", "1,234.6", "10.0", "0.1235", "1.235", "2", "*",
                                "ok"]
    assert lines[2].split() == ["6", "-", "2,000.0", "20.0", "0.2000", "2.000", "2",
                                "failed:", "x"]


def test_print_sweep_statuses_and_front(tmp_path, capsys):
    """A sweep with one failed point of two exits 0 and prints its front by energy; a point
    lost with its worker exits 1."""
    from cimsim.cli import _print_sweep

    chip = cimsim.load_chip("ideal")
    args = argparse.Namespace(overrides=[])
    frame = _sweep_frame()
    assert _print_sweep(frame, tmp_path, chip, args) == 0
    out = capsys.readouterr().out
    assert "by energy: " in out and "(50.00 %, 1,234.6 pJ)" in out
    frame.attrs["n_points_lost"] = 1
    assert _print_sweep(frame, tmp_path, chip, args) == 1
    assert "1 point(s) were lost" in capsys.readouterr().err


def test_sweep_refuses_a_field_twice_and_an_axis_by_two_flags(tmp_path):
    from tests.test_cli_errors import assert_one_line, run_cli

    base = ["sweep", "--model", "demo", "--chip", "ideal", "--out", str(tmp_path / "o")]
    rc, _, err = run_cli([*base, "--vary", "input_bits=4", "--vary", "input_bits=6"])
    assert_one_line(rc, err, "--vary: a field given twice")
    rc, _, err = run_cli([*base, "--vary", "adc_bits=4,6", "--adc-bits", "3-5"])
    assert_one_line(rc, err, "--vary adc_bits=... and --adc-bits both give the axis adc_bits")


def test_output_cosine_is_printed_with_four_decimals(capsys):
    """Without labels ``simulate`` prints the output cosine with 4 decimals."""
    import torch
    from torch import nn

    from cimsim.cli import _evaluate

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    x = torch.randn(16, 8)
    sim = cimsim.deploy(model, cimsim.load_chip("ideal"), x)
    _, cosine = _evaluate(sim, model, x, None, 16)
    assert f"{'output cosine to float':<24}{cosine:.4f}\n" in capsys.readouterr().out


def test_a_checkpoint_of_other_chip_settings_names_the_set_flag(tmp_path):
    """The run identity's ``overrides`` is the command line's ``--set``: a checkpoint of other
    settings names that flag, not ``--overrides`` (there is none)."""
    import torch

    from cimsim.cli import _read_checkpoint

    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 1, "model": {}, "optimizer": {}, "loss": [],
                "run": {"overrides": "['adc.bits=6']"}}, path)
    with pytest.raises(ConfigError, match=r"belongs to another run \(--set \['adc.bits=6'\] "
                                          r"there, \[\] now\)"):
        _read_checkpoint(path, {"overrides": "[]"})


def test_datasheet_figures_have_four_significant_digits(capsys):
    """Each headline figure of the datasheet to 4 significant digits, right-aligned."""
    from cimsim.cli import main
    from cimsim.cost.datasheet import datasheet

    assert main(["datasheet", "rram-22nm"]) == 0
    lines = capsys.readouterr().out.splitlines()
    d = datasheet("rram-22nm")
    assert lines[2] == f"TOPS/W      {d['tops_per_w']:>12.4g}   1b-normalised " \
                       f"{d['tops_per_w_1b']:.4g}"


def test_layer_table_says_how_many_inputs_the_fidelity_trace_ran(rep):
    """The SQNR column's note names the trace's 64 inputs (two extra forwards each)."""
    from cimsim.cli import _layer_table

    layers = rep.layers.copy()
    layers["sqnr_db"] = 20.0
    assert "over the first 64 evaluated inputs at most" in _layer_table(_with(rep, layers=layers))


def test_out_below_a_file_is_named_as_such(tmp_path):
    """An --out below a file is named so, not reported as a folder it cannot write in."""
    from cimsim.cli import _check_out

    (tmp_path / "f").write_text("a file")
    with pytest.raises(ConfigError, match=r"lies below the file '.*f'$"):
        _check_out(tmp_path / "f" / "sub")


def _fake_report(folder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text("{}")


def test_simulate_clears_only_what_an_earlier_run_left(tmp_path):
    """After a ``--time`` run: its times' folders, time.csv and (with labels) the figure
    stay, the other times' folders and a plain run's report go; after a plain run the
    time files go."""
    from cimsim.cli import _clear_stale_simulation

    for folder in (tmp_path, tmp_path / "t_1h", tmp_path / "t_1d"):
        _fake_report(folder)
    (tmp_path / "time.csv").write_text("time\n")
    (tmp_path / "accuracy_time.png").write_bytes(b"png")
    _clear_stale_simulation(tmp_path, [("1h", 3600.0)], True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accuracy_time.png", "t_1h",
                                                          "time.csv"]
    _clear_stale_simulation(tmp_path, [("1h", 3600.0)], False)  # no labels: no figure
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t_1h", "time.csv"]
    _fake_report(tmp_path)
    _clear_stale_simulation(tmp_path, None, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_datasheet_counts_a_field_set_on_the_command_line_as_stated(tmp_path, capsys):
    """A chip file that states only its name: the datasheet names what it left to the
    defaults, less a field ``--set`` gave."""
    from cimsim.cli import main

    chip = tmp_path / "mine.toml"
    chip.write_text('name = "mine"\n')
    assert main(["datasheet", str(chip), "--set", "tech.node_nm=22"]) == 0
    (line,) = [s for s in capsys.readouterr().out.splitlines()
               if s.startswith("not in the description")]
    assert "tech.vdd_v = 0.8" in line and "tech.node_nm" not in line


def test_a_capacity_error_about_time_multiplexing_gets_the_flag_to_allow_it(monkeypatch,
                                                                             capsys):
    """The hint names the --set that allows time-multiplexing, only where the error is
    about it."""
    from cimsim.cli import main
    from cimsim.errors import CapacityError

    _failing_presets(monkeypatch, CapacityError("too big; allow_time_multiplexing is off"))
    assert main(["presets"]) == 2
    assert capsys.readouterr().err.endswith(
        "off (here: --set array.allow_time_multiplexing=true)\n")
    _failing_presets(monkeypatch, CapacityError("too big"))
    assert main(["presets"]) == 2
    assert capsys.readouterr().err == "cimsim: error: too big\n"


def test_sweep_says_one_point_in_the_singular(monkeypatch, tmp_path, capsys):
    """``1 point``, not ``1 points`` (the sweep itself replaced by its table)."""
    import cimsim.sweep
    from cimsim.cli import main

    monkeypatch.setattr(cimsim.sweep, "run_sweep",
                        lambda *a, **k: _sweep_frame().head(1))
    assert main(["sweep", "--model", "demo", "--chip", "ideal", "--adc-bits", "4",
                 "--out", str(tmp_path)]) == 0
    assert "sweep: digits CNN (demo) on ideal; 1 point; " in capsys.readouterr().out


def test_a_broken_pipe_past_the_wrapper_exits_quietly_with_1(monkeypatch, capsys):
    """A reader gone before the last write (``cimsim ... | head``): no error line, status 1
    (the output was cut short, so not 0)."""
    import cimsim.cli

    _failing_presets(monkeypatch, BrokenPipeError())
    # the captured stdout has no descriptor to point at devnull
    monkeypatch.setattr(cimsim.cli, "_stdout_to_devnull", lambda stream: None)
    assert cimsim.cli.main(["presets"]) == 1
    assert capsys.readouterr().err == ""

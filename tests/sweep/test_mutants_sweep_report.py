"""Tests from a mutation round over the sweep machinery and the report (``cimsim/sweep/grid.py``,
``store.py``, ``table.py``, ``pareto.py``, ``files.py``, ``run.py``, ``cimsim/report.py``,
``cimsim/_html.py``): each pins behaviour that a surviving mutant changed unnoticed (a Pareto
comparison, what a point's id hashes, which records a resume trusts, a column's type, a label, a
number's rounding on a page), by known answers worked out by hand or by relations."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import cimsim
from cimsim import _html
from cimsim.sweep import store
from cimsim.sweep.pareto import front_group, pareto_front
from cimsim.sweep.table import point_labels, sweep_table, table_records
from tests import test_sweep
from tests.test_sweep import _count_points, _sweep

chip, data, model = test_sweep.chip, test_sweep.data, test_sweep.model

# ---------------------------------------------------------------------------------------------
# pareto.py


def _front(acc, en, status=None, **cols):
    frame = pd.DataFrame({"accuracy": acc, "energy_pj_per_inference": en, **cols})
    if status is not None:
        frame["status"] = status
    return frame


class TestParetoFront:
    def test_hand_made_front(self):
        # (0.9, 10) dominates (0.9, 12) (as accurate, costlier) and (0.8, 10) (as costly, less
        # accurate); (0.95, 20) and (0.5, 5) are trade-offs; the two (0.7, 6) are equal: both on
        frame = _front([0.9, 0.9, 0.8, 0.95, 0.5, 0.7, 0.7], [10, 12, 10, 20, 5, 6, 6])
        assert pareto_front(frame).tolist() == [True, False, False, True, True, True, True]

    def test_equal_points_dominated_together(self):
        frame = _front([0.7, 0.7, 0.8], [6.0, 6.0, 5.0])
        assert pareto_front(frame).tolist() == [False, False, True]

    def test_failed_and_non_finite_points_never_on_it_nor_dominate(self):
        frame = _front([0.99, math.inf, 0.9, 0.5, math.nan],
                       [1.0, 1.0, 10.0, 20.0, 0.1],
                       status=["error: boom", "ok", "ok", "ok", "ok"])
        assert pareto_front(frame).tolist() == [False, False, True, False, False]

    def test_infinite_energy_is_off(self):
        frame = _front([1.0, 0.5], [math.inf, 3.0])
        assert pareto_front(frame).tolist() == [False, True]

    def test_one_front_per_group(self):
        frame = _front([0.9, 0.5, 0.6, 0.4], [1.0, 2.0, 3.0, 4.0],
                       time_s=[1.0, 1.0, 100.0, 100.0])
        assert pareto_front(frame).tolist() == [True, False, False, False]
        assert pareto_front(frame, by="time_s").tolist() == [True, False, True, False]
        assert front_group(frame) == "time_s"
        assert front_group(frame.assign(time_s=1.0)) is None
        assert front_group(frame.drop(columns="time_s")) is None

    def test_index_is_kept(self):
        frame = _front([0.5, 0.9], [1.0, 2.0]).set_axis([7, 7])
        out = pareto_front(frame)
        assert out.index.tolist() == [7, 7] and out.tolist() == [True, True]


# ---------------------------------------------------------------------------------------------
# table.py


def _resolved(**over):
    base = {"array_size": 64, "bits_per_cell": 1, "slice_readout": "digital",
            "cols_per_adc": 8, "thermal_sigma_lsb": 0.0, "adc_kind": "sar", "adc_bits": 4,
            "time_s": 1.0}
    base.update(over)
    return base


def _record(pid, acc, energy, **over):
    rec = {"point_id": pid, "accuracy": acc, "output_cosine": None,
           "energy_pj_per_inference": energy, "latency_ns_per_inference": 5.0,
           "area_mm2": 0.5, "tops_per_w": 1.0, "adc_area_mm2": 0.1,
           "n_conversions_per_inference": 100.0, "n_arrays": 3, "wall_s": 0.25, "status": "ok",
           "final": True}
    rec.update(over)
    return rec


class TestSweepTable:
    def test_missing_record_row(self):
        resolved = [_resolved(adc_bits=3), _resolved(adc_bits=4)]
        frame = sweep_table(resolved, ["a", "b"], {"a": _record("a", 0.9, 10.0)})
        assert frame["status"].tolist() == ["ok", "missing"]
        assert math.isnan(frame.loc[1, "accuracy"]) and pd.isna(frame.loc[1, "n_arrays"])
        assert frame["on_front"].tolist() == [True, False]
        assert frame["point_id"].tolist() == ["a", "b"]

    def test_column_types_and_order(self):
        resolved = [_resolved(adc_bits=3, time_s=1), _resolved(adc_bits=4, time_s=10)]
        recs = {"a": _record("a", 0.9, 10.0), "b": _record("b", 0.8, 20.0, n_arrays=None)}
        frame = sweep_table(resolved, ["a", "b"], recs)
        for col in ("array_size", "bits_per_cell", "cols_per_adc", "adc_bits"):
            assert frame[col].dtype == np.int64, col
        assert frame["time_s"].dtype == float and frame["thermal_sigma_lsb"].dtype == float
        assert str(frame["n_arrays"].dtype) == "Int64"
        assert frame["n_arrays"].tolist()[0] == 3 and pd.isna(frame["n_arrays"].tolist()[1])
        cols = list(frame.columns)
        assert cols.index("on_front") == cols.index("status") + 1
        assert cols[-1] == "point_id"
        # the n_arrays column writes as a whole number in the CSV ("3", not "3.0")
        assert frame[["n_arrays"]].to_csv(index=False).splitlines()[1] == "3"

    def test_field_axis_types(self):
        resolved = [{**_resolved(), "input_bits": 4, "tech.vdd_v": 0.8},
                    {**_resolved(), "input_bits": 8, "tech.vdd_v": 1}]
        frame = sweep_table(resolved, ["a", "b"], {})
        assert frame["input_bits"].dtype == np.int64
        assert frame["tech.vdd_v"].dtype == float
        assert frame["tech.vdd_v"].tolist() == [0.8, 1.0]

    def test_table_records_null_for_missing(self):
        frame = sweep_table([_resolved()], ["a"], {})
        (row,) = table_records(frame)
        assert row["accuracy"] is None and row["n_arrays"] is None
        assert row["status"] == "missing" and row["on_front"] is False
        json.dumps(row, allow_nan=False)


class TestPointLabels:
    def _frame(self, resolved):
        return sweep_table(resolved, [str(i) for i in range(len(resolved))], {})

    def test_ramp_kind_and_bits(self):
        frame = self._frame([_resolved(adc_kind="ramp:bs_kmq", adc_bits=4),
                             _resolved(adc_kind="sar", adc_bits=6)])
        assert point_labels(frame) == ["bs_kmq 4b", "sar 6b"]

    def test_nothing_varies_gives_the_bits(self):
        frame = self._frame([_resolved(adc_bits=5)])
        assert point_labels(frame) == ["5b"]

    def test_noise_time_and_fields(self):
        frame = self._frame([
            {**_resolved(thermal_sigma_lsb=0.5, time_s=3600.0), "tech.vdd_v": 0.75},
            {**_resolved(thermal_sigma_lsb=1.0, time_s=86400.0), "tech.vdd_v": 1.0}])
        assert point_labels(frame) == ["vdd_v=0.75 σ0.5 t=1h", "vdd_v=1 σ1 t=1d"]

    def test_two_fields_of_one_name_keep_their_table(self):
        frame = self._frame([{**_resolved(), "tech.vdd_v": 0.8, "vdd_v": 1},
                             {**_resolved(), "tech.vdd_v": 0.9, "vdd_v": 2}])
        assert point_labels(frame) == ["tech.vdd_v=0.8 vdd_v=1", "tech.vdd_v=0.9 vdd_v=2"]


# ---------------------------------------------------------------------------------------------
# store.py


class TestStore:
    def test_point_id_is_16_hex_digits_and_order_free(self):
        a = store.point_id({"adc_bits": 4, "adc_kind": "sar"}, "ctx")
        b = store.point_id({"adc_kind": "sar", "adc_bits": 4}, "ctx")
        assert a == b and len(a) == 16 and int(a, 16) >= 0
        text = json.dumps({"point": {"adc_bits": 4, "adc_kind": "sar"}, "context": "ctx"},
                          sort_keys=True)
        assert a == hashlib.sha256(text.encode()).hexdigest()[:16]

    def test_context_hash_holds_only_what_docs_say(self):
        """Without exclude, at the default batch size and engine settings, the context is the
        hash of model, data, calibration ``first:n``, the chip's fields (its description
        without the --set note) and the seed: the ids sweeps had before those options."""
        chip = cimsim.load_chip("rram-22nm")
        from cimsim.config import without_set_note

        fields = chip.to_dict()
        fields["description"] = without_set_note(str(fields["description"]))
        shared = {"model": "m", "data": "d", "calibration": "first:16", "chip": fields,
                  "seed": 3}
        want = hashlib.sha256(json.dumps(shared, sort_keys=True, default=repr)
                              .encode()).hexdigest()
        assert store.context_hash("m", "d", 16, chip, 3) == want
        assert store.context_hash("m", "d", 16, chip, 3, (), 256) == want
        assert store.context_hash("m", "d", 16, chip, 3, ("fc1",)) != want
        assert store.context_hash("m", "d", 16, chip, 3, batch_size=128) != want

    def test_set_note_is_not_hashed(self):
        chip = cimsim.load_chip("rram-22nm")
        noted = chip.replace(description=chip.description + " (with --set tech.vdd_v=0.8)")
        assert (store.context_hash("m", "d", 16, noted, 0)
                == store.context_hash("m", "d", 16, chip, 0))

    def test_engine_settings_are_hashed(self, monkeypatch):
        chip = cimsim.load_chip("rram-22nm")
        plain = store.context_hash("m", "d", 16, chip, 0)
        monkeypatch.setenv("CIMSIM_NOISE_SAMPLER", "exact")
        assert store.context_hash("m", "d", 16, chip, 0) != plain

    def test_fingerprints(self):
        x = torch.arange(6.0).reshape(3, 2)
        assert store.data_fingerprint(x, None) != store.data_fingerprint(x)
        torch.manual_seed(0)
        model = nn.Linear(2, 2)
        h = hashlib.sha256()
        h.update(type(model).__qualname__.encode())
        h.update(repr(model).encode())
        for name, t in sorted(model.state_dict().items()):
            h.update(name.encode())
            t = t.detach().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        assert store.model_fingerprint(model) == h.hexdigest()

    def test_clean(self):
        assert store.clean({"a": [np.float64(math.inf), np.int64(3), -math.inf, math.nan]}) == \
            {"a": [None, 3, None, None]}

    def test_last_record_wins(self, tmp_path):
        p = tmp_path / "sweep.jsonl"
        lines = [_record("a", 0.1, 1.0), _record("b", 0.2, 2.0), _record("a", 0.3, 3.0)]
        p.write_text("".join(json.dumps(r) + "\n" for r in lines))
        recs = store.read_records(p)
        assert recs["a"]["accuracy"] == 0.3 and recs["b"]["accuracy"] == 0.2

    def test_unreadable_records_skipped(self, tmp_path):
        p = tmp_path / "sweep.jsonl"
        p.write_bytes(b"\xef\xbb\xbf" + json.dumps(_record("a", 0.1, 1.0)).encode() + b"\n"
                      + json.dumps(_record("b", 0.2, 2.0, n_arrays=7.5)).encode() + b"\n"
                      + json.dumps(_record("c", 0.2, 2.0, n_arrays=7.0)).encode() + b"\n"
                      + b'{"point_id": "d", "accur')
        assert sorted(store.read_records(p)) == ["a", "c"]

    def test_torn_tail_is_cut_and_the_next_record_reads(self, tmp_path):
        p = tmp_path / "sweep.jsonl"
        whole = json.dumps(_record("a", 0.1, 1.0)) + "\n"
        p.write_text(whole + '{"point_id": "b", "accur')
        assert store.repair_tail(p) == len('{"point_id": "b", "accur')
        assert p.read_text() == whole
        with p.open("a") as fh:
            fh.write(json.dumps(_record("c", 0.5, 5.0)) + "\n")
        assert sorted(store.read_records(p)) == ["a", "c"]

    def test_whole_record_without_newline_is_kept(self, tmp_path):
        p = tmp_path / "sweep.jsonl"
        last = json.dumps(_record("b", 0.2, 2.0))
        p.write_text(json.dumps(_record("a", 0.1, 1.0)) + "\n" + last)
        assert store.repair_tail(p) == 0
        assert p.read_text().endswith(last + "\n")
        assert sorted(store.read_records(p)) == ["a", "b"]
        assert store.repair_tail(p) == 0

    def test_torn_only_line(self, tmp_path):
        p = tmp_path / "sweep.jsonl"
        p.write_text('{"point_id": "b", "accur')
        assert store.repair_tail(p) == len('{"point_id": "b", "accur') and p.read_bytes() == b""


# ---------------------------------------------------------------------------------------------
# _html.py


class TestHtml:
    def test_missing_values(self):
        frame = pd.DataFrame({"a_b": [math.nan, 1.5], "c": pd.array([pd.NA, 2], dtype="Int64")})
        out = _html.table(frame)
        assert out.count(f"<td>{_html.MISSING}</td>") == 2
        assert "<td>1.5</td>" in out and "<td>2</td>" in out and "nan" not in out
        assert "<th>a_<wbr>b</th>" in out

    def test_rows_first_cell_is_header(self):
        out = _html.rows([("q", "v", "b")], header=("x", "y", "z"))
        assert "<tr><th>q</th><td>v</td><td>b</td></tr>" in out

    def test_paragraph_lines_and_page_css_order(self):
        assert _html.paragraph("a<", "b") == "<p>a&lt;<br>b</p>"
        page = _html.page("t", ["<p>x</p>"], css="p{color:red}")
        assert page.index("p{color:red}") > page.index("body{")

    def test_items_escape_keys(self):
        assert _html.items({"<k>": "<v>"}) == "<ul><li><b>&lt;k&gt;</b>: &lt;v&gt;</li></ul>"


# ---------------------------------------------------------------------------------------------
# files.py


def _table(time_s=(1.0, 1.0, 1.0, 1.0)):
    """Four points: b (0.95, 20 pJ), c (0.5, 5 pJ), a (0.9, 10 pJ) on the front; d off it."""
    resolved = [_resolved(adc_bits=b, time_s=t) for b, t in zip((3, 4, 5, 6), time_s,
                                                                 strict=True)]
    ids = ["b", "c", "a", "d"]
    recs = {"b": _record("b", 0.95, 20.0), "c": _record("c", 0.5, 5.0),
            "a": _record("a", 0.9, 10.0), "d": _record("d", 0.6, 30.0)}
    return sweep_table(resolved, ids, recs)


class TestSweepFiles:
    def test_write_outputs(self, tmp_path):
        from cimsim.sweep.files import write_outputs

        frame = _table()
        assert frame["on_front"].tolist() == [True, True, True, False]
        (tmp_path / "accuracy_time.png").write_bytes(b"an earlier time sweep's figure")
        write_outputs(frame, tmp_path, {"model": "m", "chip": "c"})
        assert not (tmp_path / "accuracy_time.png").exists()
        doc = json.loads((tmp_path / "sweep.json").read_text())
        assert doc["front"] == ["b", "c", "a"]
        assert [p["point_id"] for p in doc["points"]] == ["b", "c", "a", "d"]
        assert all("wall_s" not in p for p in doc["points"])
        csv = pd.read_csv(tmp_path / "sweep.csv")
        assert "wall_s" not in csv and csv["on_front"].tolist() == [True, True, True, False]
        page = (tmp_path / "sweep.html").read_text()
        assert "4 points, 3 on the Pareto front" in page
        assert "wall_<wbr>s" not in page
        front = page[page.index("<h2>Pareto front"):page.index("<h2>All points")]
        # the front's table by energy: c (5 pJ), a (10 pJ), b (20 pJ)
        assert [front.index(f"<td>{p}</td>") for p in "cab"] == sorted(
            front.index(f"<td>{p}</td>") for p in "cab")
        assert "<td>d</td>" not in front
        rows = page[page.index("<h2>All points"):].split("<tr")
        marked = {pid: "class='front'" in row for row in rows for pid in "bcad"
                  if f"<td>{pid}</td>" in row}
        assert marked == {"b": True, "c": True, "a": True, "d": False}

    def test_time_sweep_writes_its_figure(self, tmp_path):
        from cimsim.sweep.files import write_outputs

        frame = _table(time_s=(1.0, 1.0, 3600.0, 3600.0))
        write_outputs(frame, tmp_path, {"model": "m", "chip": "c"})
        assert (tmp_path / "accuracy_time.png").read_bytes()[:4] == b"\x89PNG"

    def test_labels_and_axes_leave_out_the_front(self):
        from cimsim.sweep.table import axis_columns

        frame = _table()
        assert "on_front" not in axis_columns(frame) and "point_id" not in axis_columns(frame)
        assert point_labels(frame) == ["3b", "4b", "5b", "6b"]

    def test_cell(self):
        from cimsim.sweep.files import _cell

        assert _cell("x", 10000.0) == "10,000.0"
        assert _cell("x", 9999.0) == "9999"
        assert _cell("x", 3) == "3"


# ---------------------------------------------------------------------------------------------
# report.py


class TestReportNumbers:
    def test_readable(self):
        from cimsim.report import readable

        assert readable(999_999.9, "pJ") == "1 µJ"
        assert readable(1e6, "pJ") == "1 µJ"
        assert readable(6.78e9, "pJ") == "6.78 mJ"
        assert readable(999.0, "ns") == "999 ns"

    def test_shown(self):
        from cimsim.report import _shown

        assert _shown("{:.3f} TOPS/W", 0.0067) == "0.0067 TOPS/W"
        assert _shown("{:.3f} TOPS/W", 0.067) == "0.067 TOPS/W"
        assert _shown("{:,.1f} pJ", 1e6) == "1,000,000.0 pJ (1 µJ)"
        assert _shown("{:,.1f} pJ", 999_999.0) == "999,999.0 pJ"

    def test_cell(self):
        from cimsim.report import _cell

        assert _cell("x", 10000.0) == "10,000"
        assert _cell("x", 9999.0) == "9,999"

    def test_headline_caveat_and_turns(self):
        from cimsim.report import headline_lines

        totals = {"energy_pj_per_inference": 5.0, "n_arrays_used": 4, "n_arrays_available": 2,
                  "time_multiplexed": True, "n_array_slots": 4, "cost_caveat": "ideal"}
        lines = headline_lines(totals)
        assert lines[0].endswith("meaningless: ideal")
        assert lines[1].endswith("5.0 pJ  [meaningless]")
        assert lines[-1].endswith("4 of 2 (layers take turns, switching stored weight sets: "
                                  "none rewritten)")
        assert headline_lines({**totals, "n_array_slots": 3})[-1].endswith(
            "(time-multiplexed)")

    def test_two_five_labels(self):
        from cimsim.report import _two_five_label

        assert "2\\times10^{5}" in _two_five_label(2e5, 0)
        assert _two_five_label(3e5, 0) == "" and _two_five_label(0.0, 0) == ""

    def test_label_offset(self):
        from cimsim.report import _label_offset

        assert _label_offset((0.0, 50.0), 100.0, [], 0.0, 400.0, 1.0) == 3.0
        # a label already at the first place: the next is below the point
        assert _label_offset((0.0, 50.0), 100.0, [(10.0, 60.0, 103.0)], 0.0, 400.0, 1.0) == -7.0

    def test_front_groups_in_time_order(self):
        from cimsim.report import _front_groups, _group_text

        frame = pd.DataFrame({"time_s": [3600.0, 1.0, 3600.0, 1.0]})
        front = pd.Series([True, True, False, True])
        groups = _front_groups(frame, "time_s", front)
        assert [label for _, _, label in groups] == [
            f"Pareto front, {_group_text('time_s', 1.0)}",
            f"Pareto front, {_group_text('time_s', 3600.0)}"]
        assert groups[0][0].tolist() == [False, True, False, True]

    def test_with_fidelity_keeps_the_runs_values(self):
        from cimsim.report import _with_fidelity

        layers = pd.DataFrame({"layer": ["a", "b"], "adc_clip_pct": [1.0, math.nan]})
        trace = pd.DataFrame({"layer": ["a", "b"], "adc_clip_pct": [5.0, 6.0],
                              "sqnr_db": [30.0, 40.0]})
        out = _with_fidelity(layers, trace)
        assert out["adc_clip_pct"].tolist() == [1.0, 6.0]
        assert out["sqnr_db"].tolist() == [30.0, 40.0]

    def test_pareto_axis(self):
        from cimsim.report import plot_pareto

        frame = _front([0.5, 0.9], [1.0, 30.0], on_front=[True, True])
        assert plot_pareto(frame).axes[0].get_xscale() == "log"
        frame = _front([0.5, 0.9], [1000.0, 5000.0], on_front=[True, True])
        ax = plot_pareto(frame).axes[0]
        assert ax.get_xscale() == "linear" and ax.get_xlabel() == "energy per inference (pJ)"

    def test_accuracy_time_leaves_out_time_zero(self):
        from cimsim.report import plot_accuracy_time

        frame = pd.DataFrame({"time_s": [0.0, 1.0, 10.0], "accuracy": [0.9, 0.8, 0.7]})
        ax = plot_accuracy_time(frame).axes[0]
        assert list(ax.lines[0].get_xdata()) == [1.0, 10.0]


@pytest.fixture(scope="module")
def report():
    from tests.conftest import mlp_report

    return mlp_report("rram-22nm", 32, 8)


class TestReportObject:
    def test_breakdown_percentages(self, report):
        sums = report.breakdown.groupby("layer")["energy_pct"].sum()
        assert np.allclose(sums[sums > 0], 100.0)
        if len(report.area):
            assert math.isclose(report.area["area_pct"].sum(), 100.0)

    def test_summary_without_a_count(self, report):
        import copy

        r = copy.copy(report)
        r.summary = {"float_accuracy": 0.5, "simulated_accuracy": 0.25}
        row = dict((q, v) for q, v, _ in r.summary_rows())["accuracy"]
        assert row == "50.00 % float, 25.00 % simulated"
        r.summary = {}
        r.set_output_fidelity(0.5, 0)
        assert r.summary["n_eval_inputs"] == 0
        assert dict((q, v) for q, v, _ in r.summary_rows())["output fidelity"] == \
            "cosine to float 0.5000"

    def test_time_row_only_where_devices_age(self, report):
        import copy

        r = copy.copy(report)
        assert not r.chip.device.ages
        r.totals = {**report.totals, "t_inference_s": 3600.0}
        assert "time after programming" not in [q for q, _, _ in r.summary_rows()]

    def test_saved_null_total_loads_as_nan(self, report, tmp_path):
        from cimsim.report import Report

        report.save(tmp_path)
        doc = json.loads((tmp_path / "report.json").read_text())
        doc["totals"]["tops_per_w"] = None
        (tmp_path / "report.json").write_text(json.dumps(doc))
        back = Report.load(tmp_path)
        assert math.isnan(back.totals["tops_per_w"])
        assert "nan TOPS/W" in dict((q, v) for q, v, _ in back.summary_rows())["TOPS/W"]
        back.to_html(images={})

    def test_no_file_for_an_empty_table(self, report, tmp_path):
        import copy

        r = copy.copy(report)
        r.blocks = pd.DataFrame()
        r.breakdown = pd.DataFrame()
        names = {p.name for p in r.save(tmp_path)}
        assert {"layers.csv", "components.csv", "digital.csv"} <= names
        assert "blocks.csv" not in names and "breakdown.csv" not in names


    def test_calibrated_only_with_the_presets_own_note(self, report):
        import copy

        from cimsim.cost.energy import calibration_for
        from cimsim.report import _calibrated

        r = copy.copy(report)
        r.chip = cimsim.load_chip("isaac-32nm")
        r.totals = {**report.totals, "calibration": calibration_for(r.chip).note}
        assert _calibrated(r)
        # another note (an older calibration of the preset): the factors are unknown
        r.totals = {**report.totals, "calibration": "isaac-32nm: another fit"}
        assert _calibrated(r) == {}

    def test_exactly_enough_arrays_is_no_time_multiplexing(self):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
        c = cimsim.load_chip("rram-22nm")
        c = c.replace(array=c.array.replace(n_tiles=1, arrays_per_tile=2))
        x = torch.randn(16, 8)
        sim = cimsim.deploy(net, c, x)
        sim(x[:4])
        totals = sim.report().totals
        assert totals["n_arrays_used"] == totals["n_arrays_available"] == 2
        assert totals["time_multiplexed"] is False

# ---------------------------------------------------------------------------------------------
# run.py: the split of the data, resume (which records count as done), the frame's counts


class TestSplit:
    def test_calibration_beyond_the_data(self):
        from cimsim.sweep.run import _split

        x, y = torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 0])
        x_cal, x_eval, y_eval, key = _split((x, y), 100)
        assert key == 5 and torch.equal(x_cal, x) and torch.equal(x_eval, x)
        assert torch.equal(y_eval, y)
        x_cal, x_eval, y_eval, key = _split((x, y), 5)
        assert key == 5 and torch.equal(x_eval, x) and torch.equal(y_eval, y)


class TestResume:
    def test_which_records_count_as_done(self, model, data, chip, tmp_path, monkeypatch):
        grid = {"adc_bits": [3, 4]}
        first = _sweep(model, data, chip, grid, tmp_path)
        assert first.attrs["n_points_resumed"] == 0 and first.attrs["n_records_other"] == 0
        # one cost basis for every point: the base chip's line, as cimsim simulate prints it
        from cimsim.report import cost_basis

        assert first.attrs["cost_figures"] == cost_basis(chip)
        assert json.loads((tmp_path / "sweep.json").read_text())["cost_figures"] == \
            cost_basis(chip)
        counted = _count_points(monkeypatch)
        again = _sweep(model, data, chip, grid, tmp_path)
        assert counted == [] and again.attrs["n_points_resumed"] == 2
        assert again["point_id"].tolist() == first["point_id"].tolist()
        # a record that is not final (an unexpected error) is retried; another sweep's record
        # stays in the file and is counted, not shown
        path = tmp_path / "sweep.jsonl"
        recs = [json.loads(line) for line in path.read_text().splitlines()]
        retry = dict(recs[0], status="error: RuntimeError: flaky", final=False)
        other = dict(recs[1], point_id="0123456789abcdef")
        with path.open("a") as fh:
            fh.write(json.dumps(retry) + "\n" + json.dumps(other) + "\n")
        third = _sweep(model, data, chip, grid, tmp_path)
        assert counted == [1] and third.attrs["n_points_resumed"] == 1
        assert third.attrs["n_records_other"] == 1
        assert third["status"].tolist() == ["ok", "ok"] and len(third) == 2

    def test_labels_are_hashed_and_an_unused_reference_is_not(self, model, data, chip,
                                                              tmp_path, monkeypatch):
        grid = {"adc_bits": [4]}
        first = _sweep(model, data, chip, grid, tmp_path)
        counted = _count_points(monkeypatch)
        torch.manual_seed(1)
        other = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        # with labels the reference is unused: the same sweep, resumed
        again = _sweep(model, data, chip, grid, tmp_path, reference=other)
        assert counted == [] and again["point_id"].tolist() == first["point_id"].tolist()
        x, y = data
        relabelled = _sweep(model, (x, (y + 1) % 10), chip, grid, tmp_path)
        assert counted == [1]
        assert relabelled["point_id"].tolist() != first["point_id"].tolist()


# ---------------------------------------------------------------------------------------------
# grid.py


@pytest.fixture(scope="module")
def wide():
    c = cimsim.load_chip("rram-22nm")
    return c.replace(array=c.array.replace(cols_per_adc=64, rows_per_conversion=64))


class TestGrid:

    def test_array_size_lowers_shared_columns_and_rows(self, wide):
        from cimsim.sweep.grid import chip_for_point, identity, resolve_point

        variant = chip_for_point(wide, {"array_size": 32})
        assert variant.array.cols_per_adc == 32 and variant.array.rows_per_conversion == 32
        assert resolve_point(wide, {"array_size": 32})["cols_per_adc"] == 32
        # the swept value the array size gives anyway: the point a sweep without it ran
        assert identity(wide, {"array_size": 32, "cols_per_adc": 32}) == \
            identity(wide, {"array_size": 32})

    def test_non_square_array_has_no_size(self):
        c = cimsim.load_chip("rram-22nm")
        c = c.replace(array=c.array.replace(n_rows=128, n_cols=64))
        from cimsim.sweep.grid import resolve_point

        assert resolve_point(c, {})["array_size"] is None

    def test_spellings_resolve_alike(self):
        from cimsim.sweep.grid import identity, resolve_point

        c = cimsim.load_chip("rram-22nm")
        assert resolve_point(c, {"thermal_sigma_lsb": 0})["thermal_sigma_lsb"] == 0.0
        assert type(resolve_point(c, {"thermal_sigma_lsb": 0})["thermal_sigma_lsb"]) is float
        assert store.point_id(identity(c, {"thermal_sigma_lsb": 0}), "x") == \
            store.point_id(identity(c, {"thermal_sigma_lsb": 0.0}), "x")
        assert resolve_point(c, {"adc_kind": "RAMP"})["adc_kind"] == "ramp:uniform"
        assert resolve_point(c, {"adc_kind": "ramp:bs_kmq"})["adc_kind"] == "ramp:bs_kmq"

    def test_identity_at_base_values(self):
        from cimsim.sweep.grid import identity

        c = cimsim.load_chip("rram-22nm")
        base = identity(c, {})
        assert "cell_lsb" not in base
        assert identity(c, {"bits_per_cell": c.device.bits_per_cell}) == base
        assert identity(c, {"input_bits": c.input_bits}) == base
        assert identity(c, {"input_bits": 4})["input_bits"] == 4
        # another bits per cell on a noisy chip rescales its cell-LSB noise: another chip
        assert identity(c, {"bits_per_cell": 1})["cell_lsb"] == "held"

"""Tests from the second mutation round over the sweep package: ``cimsim/sweep/grid.py``,
``runner.py``, ``run.py``, ``store.py``, ``files.py``, ``table.py`` and the parts of
``cluster.py`` that run without a cluster (``parse_scheduler``, ``run_points_dask`` with a
fake client).

Each test pins behaviour that a mutant survived the first round's tests with (a scheduler
address, an empty Dask run, a record's fields, a resume, a column, a label, a page), by
known answers. All use fakes or the ``ideal`` preset with toy models and run in well under a
second each; no Dask cluster is started.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import ConfigError
from tests.sweep.conftest import FakePoints, run_faked, toy_sweep_model

# ---------------------------------------------------------------------------------------------
# cluster.py (no cluster: fakes)
# ---------------------------------------------------------------------------------------------


class TestParseScheduler:
    @pytest.mark.parametrize("spec", ["tcp://", "tls://", " ws:// "])
    def test_an_address_needs_a_host(self, spec):
        """``_ADDRESS`` ``\\S+`` -> ``\\S*``: a bare ``'tcp://'`` was taken for an address."""
        from cimsim.sweep.cluster import parse_scheduler

        with pytest.raises(ConfigError, match=r"scheduler = .* is invalid; allowed: 'local:N'"):
            parse_scheduler(spec)


class _NoClient:
    """A client no call may reach."""

    def __getattr__(self, name):
        raise AssertionError(f"client.{name} was used")


def _ctx(**kw):
    from cimsim.sweep.runner import SweepContext

    base = {"model": None, "chip": cimsim.load_chip("ideal"), "x_cal": None, "x_eval": None,
            "y_eval": None, "seed": 0, "batch_size": 16}
    return SweepContext(**(base | kw))


class _Future:
    def __init__(self, fn, args):
        self.fn, self.args, self.released = fn, args, False

    def result(self):
        return {"point_id": self.args[1]}

    def release(self):
        self.released = True


class _RecordingClient:
    """What ``run_points_dask`` asks of a ``distributed.Client``; every point succeeds."""

    dashboard_link = "http://fake"
    scheduler = type("S", (), {"address": "tcp://fake:1"})()

    def __init__(self):
        self.keys, self.futures, self.cancelled = [], [], []

    def scheduler_info(self):
        return {"workers": {"w": {}}}

    def submit(self, fn, *args, key):
        self.keys.append(key)
        self.futures.append(_Future(fn, args))
        return self.futures[-1]

    def cancel(self, futures):
        self.cancelled.extend(futures)


class TestRunPointsDask:
    def test_nothing_to_run_asks_nothing_of_the_cluster(self):
        """``run_points_dask``: the ``if not todo: return []`` guard deleted (the empty run
        asked the scheduler for its workers and submitted the context)."""
        from cimsim.sweep.cluster import run_points_dask

        got = []
        assert run_points_dask(None, [], _NoClient(), got.append) == [] and got == []

    def test_every_future_is_released_and_keys_are_unique_per_run(self, monkeypatch):
        """``run_points_dask``: ``fut.release()`` deleted (a finished point's result stayed held
        on the cluster), and the run's suffix dropped from a point's key (a long-lived
        scheduler holding the last run's ``cimsim-point-<id>`` answered with its result)."""
        import distributed

        from cimsim.sweep import cluster

        monkeypatch.setattr(distributed, "as_completed", lambda futures: list(futures))
        client = _RecordingClient()
        got = []
        todo = [("p1", {"adc_bits": 4}), ("p2", {"adc_bits": 5})]
        assert cluster.run_points_dask(_ctx(), todo, client, got.append) == []
        assert [r["point_id"] for r in got] == ["p1", "p2"]
        points = [f for f in client.futures if f.fn is cluster._dask_point]
        assert len(points) == 2 and all(f.released for f in points)
        first = [k for k in client.keys if k.startswith("cimsim-point-")]
        cluster.run_points_dask(_ctx(), todo, client, got.append)
        second = [k for k in client.keys if k.startswith("cimsim-point-")][2:]
        assert [k.rsplit("-", 1)[0] for k in first] == ["cimsim-point-p1", "cimsim-point-p2"]
        assert [k.rsplit("-", 1)[0] for k in second] == ["cimsim-point-p1", "cimsim-point-p2"]
        assert not set(first) & set(second)


# ---------------------------------------------------------------------------------------------
# store.py
# ---------------------------------------------------------------------------------------------


def _rec(pid, **over):
    rec = {"point_id": pid, "status": "ok", "final": True, "accuracy": 0.5,
           "energy_pj_per_inference": 1.0, "n_arrays": 1}
    rec.update(over)
    return rec


class TestClean:
    def test_a_tuple_is_cleaned_as_a_list(self):
        """``clean``: ``(list, tuple)`` -> ``(list,)`` (a tuple kept its NaN and NumPy
        scalars, and a record holding one failed ``json.dumps(allow_nan=False)``)."""
        from cimsim.sweep.store import clean

        assert clean({"t": (math.nan, np.int64(2), (math.inf, 1.5))}) == {"t": [None, 2,
                                                                             [None, 1.5]]}


class TestReadRecords:
    def test_blank_lines_are_skipped_without_a_warning(self, tmp_path, caplog):
        """``read_records``: the blank-line ``continue`` deleted (each blank line was warned
        about as an unreadable, interrupted write)."""
        from cimsim.sweep.store import read_records

        p = tmp_path / "sweep.jsonl"
        p.write_text("\n" + json.dumps(_rec("a")) + "\n\n   \n" + json.dumps(_rec("b")) + "\n")
        with caplog.at_level(logging.WARNING, logger="cimsim.sweep.store"):
            assert sorted(read_records(p)) == ["a", "b"]
        assert caplog.records == []


    def test_a_record_without_a_text_status_is_skipped(self, tmp_path, caplog):
        """``_check_fields``: ``("point_id", "status")`` -> ``("point_id",)`` (a record with
        no status was taken for a finished point and never run again)."""
        from cimsim.sweep.store import read_records

        p = tmp_path / "sweep.jsonl"
        bad = {k: v for k, v in _rec("b").items() if k != "status"}
        p.write_text("".join(json.dumps(r) + "\n" for r in (_rec("a"), bad, _rec("c", status=1))))
        with caplog.at_level(logging.WARNING, logger="cimsim.sweep.store"):
            assert sorted(read_records(p)) == ["a"]
        assert any("'status' is None, not text" in r.getMessage() for r in caplog.records)

class TestRepairTail:
    def test_a_whole_file_is_left_alone_and_unremarked(self, tmp_path, caplog):
        """``repair_tail``: the early ``return 0`` of a file ending in a newline replaced by
        ``pass`` (it then "removed a torn last line (0 bytes)" at every run)."""
        from cimsim.sweep.store import repair_tail

        p = tmp_path / "sweep.jsonl"
        text = json.dumps(_rec("a")) + "\n" + json.dumps(_rec("b")) + "\n"
        p.write_text(text)
        with caplog.at_level(logging.WARNING, logger="cimsim.sweep.store"):
            assert repair_tail(p) == 0
        assert p.read_text() == text and caplog.records == []

    def test_an_empty_file(self, tmp_path):
        """``repair_tail``: the ``size == 0`` guard deleted (seeking to byte -1 raised)."""
        from cimsim.sweep.store import repair_tail

        p = tmp_path / "sweep.jsonl"
        p.write_bytes(b"")
        assert repair_tail(p) == 0 and p.read_bytes() == b""

    def test_a_last_line_of_json_that_is_no_record_is_cut(self, tmp_path):
        """``_record``: ``and "point_id" in rec`` dropped (a last line ``{"a": 1}`` with no
        newline was kept as a record and given one)."""
        from cimsim.sweep.store import repair_tail

        p = tmp_path / "sweep.jsonl"
        whole = json.dumps(_rec("a")) + "\n"
        p.write_text(whole + '{"a": 1}')
        assert repair_tail(p) == len('{"a": 1}') and p.read_text() == whole


class TestAppendRecord:
    def test_the_line_has_sorted_keys_and_reads_back_clean(self, tmp_path):
        """``append_record``: ``sort_keys=True`` dropped (the same record wrote other bytes
        depending on how it was built)."""
        from cimsim.sweep.store import append_record

        p = tmp_path / "sweep.jsonl"
        back = append_record(p, {"status": "ok", "point_id": "a", "accuracy": math.nan})
        assert p.read_text() == '{"accuracy": null, "point_id": "a", "status": "ok"}\n'
        assert back == {"accuracy": None, "point_id": "a", "status": "ok"}


class _Masked(nn.Module):
    def __init__(self, mask: float) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.register_buffer("mask", torch.full((2,), mask), persistent=False)


class TestModelFingerprint:
    def test_non_persistent_buffers_are_hashed_after_a_marker(self):
        """``model_fingerprint``: the non-persistent buffers left out (``extra = []``: two
        masks, one id), or hashed without the ``b"non-persistent buffers"`` marker."""
        from cimsim._digest import hash_named
        from cimsim.sweep.store import model_fingerprint

        torch.manual_seed(0)
        model = _Masked(1.0)
        h = hashlib.sha256()
        h.update(b"_Masked")
        h.update(repr(model).encode())
        hash_named(h, model.state_dict().items())
        h.update(b"non-persistent buffers")
        hash_named(h, [("mask", model.mask)])
        assert model_fingerprint(model) == h.hexdigest()


# ---------------------------------------------------------------------------------------------
# table.py
# ---------------------------------------------------------------------------------------------


def _resolved(**over):
    base = {"array_size": 64, "bits_per_cell": 1, "slice_readout": "digital",
            "cols_per_adc": 8, "thermal_sigma_lsb": 0.0, "adc_kind": "sar", "adc_bits": 4,
            "time_s": 1.0}
    return base | over


def _table(resolved, records=None):
    from cimsim.sweep.table import sweep_table

    return sweep_table(resolved, [f"p{i}" for i in range(len(resolved))], records or {})


class TestSweepTableTypes:
    def test_a_bool_in_an_int_axis_keeps_the_column_as_given(self):
        """``sweep_table``: ``and not isinstance(v, bool)`` dropped from the int-axis check
        (``True`` was written as ``1``, the other point's spelling, in an int64 column)."""
        frame = _table([_resolved(adc_bits=True), _resolved(adc_bits=4)])
        assert frame["adc_bits"].dtype == object
        assert frame["adc_bits"].tolist() == [True, 4] and frame["adc_bits"][0] is True


class TestPointLabelsRound2:
    def test_every_named_axis_label_in_order(self):
        """``_fmt_axis``: the ``col/ADC`` and ``-slices`` suffixes, and ``point_labels``'s
        order (``cols_per_adc`` before ``array_size``)."""
        from cimsim.sweep.table import point_labels

        frame = _table([_resolved(cols_per_adc=4, array_size=64, slice_readout="digital"),
                        _resolved(cols_per_adc=8, array_size=128, slice_readout="analog")])
        assert point_labels(frame) == ["digital-slices 4col/ADC 64²",
                                       "analog-slices 8col/ADC 128²"]

    def test_an_infinite_or_text_value_is_written_as_given(self):
        """``_fmt_axis``: ``and math.isfinite(value)`` dropped (an infinite time went to
        ``duration_text``), and ``σ{value:g}`` for a text value."""
        from cimsim.sweep.table import point_labels

        frame = _table([_resolved(time_s=math.inf, thermal_sigma_lsb="x"),
                        _resolved(time_s=10.0, thermal_sigma_lsb=2.0)])
        assert point_labels(frame) == ["σx t=inf", "σ2 t=10s"]

    def test_a_list_valued_field_varies_by_its_text(self):
        """``point_labels``: ``astype(str)`` dropped before ``nunique`` (a per-level table's
        list values are unhashable: the labels failed with a TypeError)."""
        from cimsim.sweep.table import point_labels

        frame = _table([{**_resolved(), "device.levels": [1, 2]},
                        {**_resolved(), "device.levels": [1, 3]}])
        assert point_labels(frame) == ["levels=[1, 2]", "levels=[1, 3]"]


# ---------------------------------------------------------------------------------------------
# files.py
# ---------------------------------------------------------------------------------------------


def _ok(pid, acc, energy):
    return {"point_id": pid, "accuracy": acc, "energy_pj_per_inference": energy,
            "latency_ns_per_inference": 5.0, "area_mm2": 0.5, "tops_per_w": 1.0,
            "n_arrays": 2, "wall_s": 0.1, "status": "ok"}


class TestSweepHtml:
    def test_one_point_is_one_point_and_the_chip_config_stays_in_the_json(self):
        """``sweep_html``: ``point{'s' * (n != 1)}`` -> ``points`` ("1 points"), and the
        ``chip_config`` settings item no longer left out of the page."""
        from cimsim.sweep.files import sweep_html

        frame = _table([_resolved()], {"p0": _ok("p0", 0.9, 10.0)})
        page = sweep_html(frame, None, {"model": "m", "chip": "c", "seed": 7,
                                        "chip_config": {"secret_field": 1}})
        assert "m on c: 1 point, 1 on the Pareto front" in page
        assert "secret_field" not in page and "chip_config" not in page
        assert "<b>seed</b>: 7" in page


class TestAccuracyTime:
    def _series(self, monkeypatch, resolved):
        from cimsim import report
        from cimsim.sweep import files

        seen = {}

        def plot(data, series=None, title=""):
            seen["series"], seen["setting"] = series, data["setting"].tolist()
            return "fig"

        monkeypatch.setattr(report, "plot_accuracy_time", plot)
        monkeypatch.setattr(report, "_png", lambda fig, dpi: b"png")
        recs = {f"p{i}": _ok(f"p{i}", 0.9 - 0.1 * i, 10.0) for i in range(len(resolved))}
        assert files._accuracy_time(_table(resolved, recs), {"model": "m"}) == b"png"
        return seen

    def test_one_setting_is_one_unnamed_line(self, monkeypatch):
        """``_accuracy_time``: ``series=None`` for a single setting dropped, and the time left
        in the setting's label (``others = frame``: every time its own line)."""
        seen = self._series(monkeypatch, [_resolved(time_s=1.0), _resolved(time_s=3600.0)])
        assert seen["series"] is None and len(set(seen["setting"])) == 1

    def test_one_line_per_other_setting(self, monkeypatch):
        seen = self._series(monkeypatch, [_resolved(time_s=t, adc_bits=b)
                                          for b in (4, 6) for t in (1.0, 3600.0)])
        assert seen == {"series": "setting", "setting": ["4b", "4b", "6b", "6b"]}


class TestRerender:
    @pytest.mark.parametrize("text", ["[]", '"text"'])
    def test_a_json_that_is_no_object_is_one_error(self, tmp_path, text):
        """``rerender``: ``AttributeError`` dropped from the caught errors (a ``sweep.json``
        holding a list raised ``'list' object has no attribute 'pop'``)."""
        from cimsim.errors import CimsimError
        from cimsim.sweep.files import rerender

        (tmp_path / "sweep.json").write_text(text)
        with pytest.raises(CimsimError, match="sweep.json: not a sweep table cimsim wrote"):
            rerender(tmp_path, tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# run.py (its helpers, called directly)
# ---------------------------------------------------------------------------------------------


class TestSplit:
    def test_a_tuple_of_one_is_inputs_without_labels(self):
        """``_split``: ``len(data) in (1, 2)`` -> ``(2,)`` (a tuple ``(x,)`` was refused), and
        ``data[1] if len(data) == 2`` -> ``data[-1]`` (``(x,)``'s inputs taken for labels)."""
        from cimsim.sweep.run import _split

        x = torch.arange(12.0).reshape(6, 2)
        x_cal, x_eval, y, key = _split((x,), 2)
        assert y is None and key == 2
        assert torch.equal(x_cal, x[:2]) and torch.equal(x_eval, x[2:])

    def test_labels_that_are_no_tensor_are_refused(self):
        """``_split``: the labels' type check dropped (a list of labels passed on)."""
        from cimsim.sweep.run import _split

        with pytest.raises(ConfigError, match="data must be a tensor x"):
            _split((torch.zeros(3, 2), [0, 1, 2]), 1)

    def test_empty_data_and_a_zero_count_are_refused(self):
        """``_split``: the ``n == 0`` check deleted, and ``calibration < 1`` -> ``< 0`` (a
        count of 0 calibrated on no input)."""
        from cimsim.sweep.run import _split

        with pytest.raises(ConfigError, match="^data is empty$"):
            _split(torch.zeros(0, 2), 1)
        with pytest.raises(ConfigError, match=r"calibration = 0 is invalid; allowed: an "
                                              r"integer >= 1"):
            _split(torch.zeros(3, 2), 0)

    def test_calibration_on_every_input_scores_every_input(self):
        """``_split``: ``n > n_cal`` -> ``>=`` (a count equal to the data left nothing to
        score), and ``n_cal = min(calibration, n)`` -> ``calibration`` (the key said 100
        inputs calibrated where 4 did)."""
        from cimsim.sweep.run import _split

        x, y = torch.arange(8.0).reshape(4, 2), torch.tensor([0, 1, 0, 1])
        for count in (4, 100):
            x_cal, x_eval, y_eval, key = _split((x, y), count)
            assert key == 4
            assert torch.equal(x_cal, x) and torch.equal(x_eval, x) and torch.equal(y_eval, y)


class TestInputs:
    def test_what_counts_as_inputs(self):
        """``_inputs``: ``x.dim() >= 1`` -> ``>= 0`` (a 0-d tensor), the rows check dropped
        (``{"a": 3 rows, "b": 2}``), the key check dropped (a non-text key)."""
        from cimsim.sweep.run import _inputs

        assert _inputs(torch.zeros(3)) and not _inputs(torch.tensor(1.0))
        assert _inputs({"a": torch.zeros(3, 2), "b": torch.zeros(3)})
        assert not _inputs({"a": torch.zeros(3, 2), "b": torch.zeros(2)})
        assert not _inputs({1: torch.zeros(3)})
        assert not _inputs({}) and not _inputs({"a": torch.tensor(1.0)})


class TestExclusion:
    def test_a_name_is_one_pattern(self):
        """``_exclusion``: a string taken as a sequence (``'fc1'`` -> ``('f', 'c', '1')``)."""
        from cimsim.sweep.run import _exclusion

        assert _exclusion("fc1") == ("fc1",)
        assert _exclusion(["a", "b*"]) == ("a", "b*") and _exclusion(()) == ()

    @pytest.mark.parametrize("bad", [["a", ""], "", 3, [None]])
    def test_an_empty_or_non_text_pattern_is_refused(self, bad):
        """``_exclusion``: ``and p`` dropped (an empty pattern was accepted)."""
        from cimsim.sweep.run import _exclusion

        with pytest.raises(ConfigError, match=r"exclude = .* is invalid; allowed: a layer name "
                                              r"or glob"):
            _exclusion(bad)


class TestCheckPrepared:
    def test_the_first_undeployable_point_is_named(self):
        """``_check_prepared``: ``min(problems)`` -> ``max`` (the last point was named), and
        ``len(problems) + len(skipped)`` -> ``len(problems)`` (a grid whose every point is
        skipped or undeployable ran nothing without a word)."""
        from cimsim.sweep.run import _check_prepared

        class Twin:
            def check_chip(self, chip):
                if chip.adc.bits != 4:
                    raise ConfigError(f"no table for {chip.adc.bits} b")

        chip = cimsim.load_chip("ideal")
        points = [{"adc_bits": b} for b in (3, 4, 5, 6)]
        assert _check_prepared(Twin(), chip, points, {}) == {0: "skipped: no table for 3 b",
                                                             2: "skipped: no table for 5 b",
                                                             3: "skipped: no table for 6 b"}
        with pytest.raises(ConfigError, match=r"^sweep point \{'adc_bits': 3\}: no table for 3 b$"):
            _check_prepared(Twin(), chip, points, {1: "skipped: impossible"})


class TestCostBasis:
    def test_one_basis_is_the_basis_itself(self):
        """``_cost_basis``: ``len(groups) <= 1`` -> ``< 1`` (a single basis was prefixed with
        the axis values of its points)."""
        from cimsim.report import cost_basis
        from cimsim.sweep.grid import resolve_point
        from cimsim.sweep.run import _cost_basis

        chip = cimsim.load_chip("ideal")
        points = [{"adc_bits": 4}, {"adc_bits": 5}]
        resolved = [resolve_point(chip, p) for p in points]
        assert _cost_basis(chip, points, resolved) == cost_basis(chip)


class TestDistinct:
    def test_the_first_spelling_is_kept(self):
        """``_distinct``: ``seen.setdefault`` -> ``seen[key] = p`` (the last spelling kept)."""
        from cimsim.sweep.run import _distinct

        chip = cimsim.load_chip("ideal")
        points = [{"adc_kind": "SAR"}, {"adc_kind": "flash"}, {"adc_kind": " sar "}]
        assert _distinct(chip, points) == [{"adc_kind": "SAR"}, {"adc_kind": "flash"}]


class TestWarnKinds:
    def test_digital_is_not_a_kind_compared(self):
        """``_warn_kinds_under_tables``: ``kinds - {"digital"}`` -> ``kinds`` (one converter
        kind beside the digital read-out was warned about)."""
        import warnings

        from cimsim.config import CostModel
        from cimsim.sweep.run import _warn_kinds_under_tables

        chip = cimsim.load_chip("ideal")
        chip = chip.replace(tech=chip.tech.replace(cost_model=CostModel.TABLES))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _warn_kinds_under_tables(chip, {"adc_kind": ["sar", "digital"]})
        with pytest.warns(UserWarning, match="adc_kind compares flash, sar under"):
            _warn_kinds_under_tables(chip, {"adc_kind": ["sar", "flash"]})


# ---------------------------------------------------------------------------------------------
# runner.py (fakes in place of the pool)
# ---------------------------------------------------------------------------------------------


class TestRunPointRecord:
    def test_the_record_holds_a_copy_of_the_point_and_the_version(self, monkeypatch):
        """``run_point``: ``dict(point)`` -> ``point`` (the record shared the caller's dict),
        and the ``cimsim_version`` field deleted."""
        from cimsim.sweep import runner

        monkeypatch.setattr(runner, "_measure", lambda *a: {"accuracy": 1.0})
        point = {"adc_bits": 4}
        rec = runner.run_point(_ctx(), "pid", point)
        point["adc_bits"] = 5
        assert rec["point"] == {"adc_bits": 4} and rec["point_id"] == "pid"
        assert rec["cimsim_version"] == cimsim.__version__ and rec["status"] == "ok"


class TestRunPoints:
    def test_a_single_point_never_starts_a_pool(self, monkeypatch):
        """``run_points``: ``len(todo) <= 1`` -> ``< 1`` (one point with ``jobs = 4`` started
        a pool of workers)."""
        from cimsim.sweep import runner

        def pool(*_a):
            raise AssertionError("a pool was started")

        monkeypatch.setattr(runner, "_run_pool", pool)
        monkeypatch.setattr(runner, "run_point", lambda ctx, pid, p: {"point_id": pid})
        got = []
        assert runner.run_points(_ctx(), [("a", {})], 4, got.append) == []
        assert got == [{"point_id": "a"}]

    def test_a_broken_pool_reruns_only_the_unfinished_points_once(self, monkeypatch):
        """``run_points``: the unfinished-points filter deleted (finished points ran twice), and
        ``range(2)`` -> ``range(1)`` (no second pool: the points were lost at once)."""
        from concurrent.futures.process import BrokenProcessPool

        from cimsim.sweep import runner

        calls = []

        def pool(ctx, todo, jobs, finish):
            calls.append([pid for pid, _ in todo])
            finish({"point_id": todo[0][0]})
            if len(calls) == 1:
                raise BrokenProcessPool("a worker died")

        monkeypatch.setattr(runner, "_run_pool", pool)
        got = []
        todo = [("a", {}), ("b", {}), ("c", {})]
        assert runner.run_points(_ctx(), todo, 2, got.append) == []
        assert calls == [["a", "b", "c"], ["b", "c"]]
        assert [r["point_id"] for r in got] == ["a", "b"]

    def test_points_lost_twice_are_returned(self, monkeypatch):
        from concurrent.futures.process import BrokenProcessPool

        from cimsim.sweep import runner

        def pool(ctx, todo, jobs, finish):
            finish({"point_id": todo[0][0]})
            raise BrokenProcessPool("a worker died")

        monkeypatch.setattr(runner, "_run_pool", pool)
        got = []
        todo = [("a", {}), ("b", {}), ("c", {})]
        assert runner.run_points(_ctx(), todo, 2, got.append) == ["c"]
        assert [r["point_id"] for r in got] == ["a", "b"]


class TestPreparedModel:
    def test_a_plain_model_is_not_a_twin_once_train_is_imported(self):
        """``prepared_model``: the ``isinstance`` check dropped (any model was taken for a
        trained twin once ``cimsim.train.twin`` had been imported)."""
        import cimsim.train.twin  # noqa: F401
        from cimsim.sweep.runner import prepared_model

        assert prepared_model(nn.Linear(2, 2)) is False


class TestUnguardedMark:
    def test_the_mark_is_a_fresh_path_and_the_variable_is_restored(self, monkeypatch):
        """``unguarded_mark``: ``mark.unlink()`` deleted (the mark existed from the start, so
        any broken pool was taken for a script without the main guard), and an earlier value
        of the variable dropped instead of restored."""
        from cimsim.sweep.runner import UNGUARDED_MARK, unguarded_mark

        monkeypatch.setenv(UNGUARDED_MARK, "/earlier/mark")
        with unguarded_mark() as mark:
            assert not mark.exists() and os.environ[UNGUARDED_MARK] == str(mark)
        assert os.environ[UNGUARDED_MARK] == "/earlier/mark"
        monkeypatch.delenv(UNGUARDED_MARK)
        with unguarded_mark():
            pass
        assert UNGUARDED_MARK not in os.environ

    def test_a_worker_that_met_the_guard_is_named(self):
        """``naming_the_guard``: ``if mark.exists()`` -> ``if False`` (the worker's cause was
        lost: a broken pool)."""
        from concurrent.futures.process import BrokenProcessPool

        from cimsim.errors import CimsimError
        from cimsim.sweep.runner import UNGUARDED, UNGUARDED_MARK, naming_the_guard

        with pytest.raises(CimsimError) as info, naming_the_guard(BrokenProcessPool):
            Path(os.environ[UNGUARDED_MARK]).touch()
            raise BrokenProcessPool("broken")
        assert str(info.value) == UNGUARDED
        with pytest.raises(BrokenProcessPool), naming_the_guard(BrokenProcessPool):
            raise BrokenProcessPool("killed")


@pytest.fixture
def threads_kept(monkeypatch):
    """The thread settings ``limit_threads`` changes, set back after the test: the worker
    variables, torch's threads, numba's (its pool launched first, at the count it has, so the
    call cannot shrink the pool later tests in this process get) and the BLAS limit."""
    import numba

    from cimsim.sweep import runner

    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, "1"))
    saved = torch.get_num_threads(), numba.get_num_threads()
    before = runner._WORKER.get("blas_limit")
    had_limit = "blas_limit" in runner._WORKER
    yield runner
    limit = runner._WORKER.get("blas_limit")
    if limit is not None and limit is not before:  # the test's call set a limit: lifted
        limit.restore_original_limits()
    if not had_limit:
        runner._WORKER.pop("blas_limit", None)
    torch.set_num_threads(saved[0])
    numba.set_num_threads(saved[1])


class TestLimitThreads:
    def test_torch_gets_one_thread_and_blas_a_limit(self, threads_kept, monkeypatch):
        """``limit_threads``: the torch ``set_num_threads(1)`` and the BLAS limit skipped."""
        runner = threads_kept
        monkeypatch.delitem(runner._WORKER, "blas_limit", raising=False)
        torch.set_num_threads(2)
        runner.limit_threads()
        assert torch.get_num_threads() == 1
        assert "blas_limit" in runner._WORKER

    def test_a_later_call_still_limits_torch(self, threads_kept, monkeypatch):
        """``limit_threads``: ``if torch.get_num_threads() != 1`` -> ``if False`` (a Dask task
        after the first, its BLAS limit already set, left torch's threads as they were)."""
        runner = threads_kept
        monkeypatch.setitem(runner._WORKER, "blas_limit", None)  # set by an earlier call
        torch.set_num_threads(2)
        runner.limit_threads()
        assert torch.get_num_threads() == 1


# ---------------------------------------------------------------------------------------------
# grid.py
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ideal():
    return cimsim.load_chip("ideal")


class TestFieldProblem:
    def test_unknown_table_lists_the_tables_sorted_and_unknown_field_is_named(self):
        """``field_problem``: ``sorted(tables)`` -> ``tables`` (the message's order followed
        the dataclass), and the field-name check dropped (``'dac.nope'`` passed)."""
        import dataclasses

        from cimsim.config import ChipConfig
        from cimsim.sweep.grid import field_problem

        default = ChipConfig()
        tables = sorted(f.name for f in dataclasses.fields(ChipConfig)
                        if dataclasses.is_dataclass(getattr(default, f.name)))
        assert field_problem("nope.bits") == f"no table 'nope' (tables: {tables})"
        assert field_problem("dac.nope") == "no field 'nope' in [dac]"
        assert field_problem("dac.bits") is None and field_problem("input_bits") is None

    def test_bad_axes_are_listed_sorted(self, ideal):
        """``_check_field_axes``: ``sorted(map(str, bad))`` -> ``list(...)``."""
        from cimsim.sweep.grid import chip_for_point

        with pytest.raises(ConfigError, match=r"unknown sweep axis/axes \['a.b', 'z.y'\]"):
            chip_for_point(ideal, {"z.y": 1, "a.b": 2})

    def test_array_n_rows_beside_array_size_is_refused(self, ideal):
        """``_check_field_axes``: ``("array.n_rows", "array.n_cols")`` -> ``("array.n_cols",)``
        (``array.n_rows`` and ``array_size`` both set the rows)."""
        from cimsim.sweep.grid import grid_values

        with pytest.raises(ConfigError, match=r"sweep axes \['array.n_rows'\] with array_size"):
            grid_values({"array_size": [64], "array.n_rows": [32]})


class TestParseAdcKindRound2:
    def test_spellings(self):
        """``parse_adc_kind``: ``.lower()`` dropped from the level fit (``'ramp:BS_KMQ'``)."""
        from cimsim.config import ADCKind, LevelFit
        from cimsim.sweep.grid import parse_adc_kind

        assert parse_adc_kind(" Ramp : BS_KMQ ") == (ADCKind.RAMP, LevelFit.BS_KMQ)
        assert parse_adc_kind("SAR") == (ADCKind.SAR, None)

    def test_only_ramp_takes_a_level_fit(self):
        """``parse_adc_kind``: the ``adc_kind is not RAMP`` check dropped (``'sar:uniform'``
        was a SAR, its fit ignored)."""
        from cimsim.sweep.grid import parse_adc_kind

        with pytest.raises(ConfigError, match=r"adc_kind 'sar:uniform': only 'ramp' takes a "
                                              r"level fit; allowed: one of 'sar'"):
            parse_adc_kind("sar:uniform")


class TestParseSliceReadout:
    def test_spellings_and_unhashable_values(self):
        """``parse_slice_readout``: ``.strip()`` dropped (``' Digital '``), and ``TypeError``
        dropped from the caught errors (a list raised "unhashable type")."""
        from cimsim.config import SliceReadout
        from cimsim.sweep.grid import parse_slice_readout

        assert parse_slice_readout(" Digital ") is SliceReadout.DIGITAL
        assert parse_slice_readout(SliceReadout.ANALOG) is SliceReadout.ANALOG
        with pytest.raises(ConfigError, match=r"slice_readout \['digital'\] is invalid; "
                                              r"allowed: 'digital', 'analog'"):
            parse_slice_readout(["digital"])


class TestGridValues:
    def test_bytes_are_one_value_and_an_empty_axis_is_refused(self):
        """``grid_values``: ``(str, bytes)`` -> ``(str,)`` (``b'sar'`` swept as the numbers
        115, 97, 114), and the empty-axis check deleted."""
        from cimsim.sweep.grid import grid_values

        assert grid_values({"adc_kind": b"sar"}) == {"adc_kind": [b"sar"]}
        assert grid_values({"adc_bits": np.arange(3, 5)}) == {"adc_bits": [3, 4]}
        with pytest.raises(ConfigError, match="^sweep axis 'adc_bits' has no values$"):
            grid_values({"adc_bits": []})

    def test_a_numpy_array_value_is_a_list(self):
        """``_plain``: the ``np.ndarray`` branch dropped (an array value stayed an array)."""
        from cimsim.sweep.grid import _plain

        assert _plain(np.array([1.5, 2.0])) == [1.5, 2.0]
        assert type(_plain(np.array([1.5]))) is list
        assert type(_plain(np.float64(0.5))) is float and _plain("x") == "x"


class TestChipForPointRound2:
    def test_a_field_at_its_own_value_beside_another_field(self, ideal):
        """``_with_fields_cached``: ``all(_at_base ...)`` -> ``any`` (one field at the chip's
        value returned the chip unchanged, the other field lost), and the description not
        kept (the variant carried the ``--set`` note)."""
        from cimsim.sweep.grid import chip_for_point

        variant = chip_for_point(ideal, {"input_bits": 8, "weight_bits": 4})
        assert variant.weight_bits == 4 and variant.input_bits == 8
        assert variant.description == ideal.description

    def test_a_ramp_is_calibrated_with_the_fit_given(self, ideal):
        """``chip_for_point``: ``range_policy = 'calibrated'`` not set for a ramp, and
        ``if fit is not None`` -> ``if fit is None`` (the fit given was not set)."""
        from cimsim.config import ADCKind, LevelFit, RangePolicy
        from cimsim.sweep.grid import chip_for_point

        adc = chip_for_point(ideal, {"adc_kind": "ramp:bs_kmq", "adc_bits": 4}).adc
        assert (adc.kind, adc.range_policy, adc.level_fit, adc.bits) == (
            ADCKind.RAMP, RangePolicy.CALIBRATED, LevelFit.BS_KMQ, 4)
        adc = chip_for_point(ideal, {"adc_kind": "ramp", "adc_bits": 4}).adc
        assert adc.level_fit is ideal.adc.level_fit and adc.range_policy is RangePolicy.CALIBRATED

    def test_a_static_device_runs_only_at_t0(self, ideal):
        """``chip_for_point``: ``t != t0`` -> ``t < t0`` (a later time on a device that does
        not age was accepted)."""
        from cimsim.sweep.grid import chip_for_point

        assert chip_for_point(ideal, {"time_s": 1.0}) == ideal
        for t in (10.0, 1e6):
            with pytest.raises(ConfigError, match=rf"time_s = {t!r}: .*allowed: "
                                                  r"device.drift_t0_s = 1, or a base chip"):
                chip_for_point(ideal, {"time_s": t})

    def test_a_smaller_array_lowers_the_shared_columns_and_rows(self, ideal):
        """``_cols_per_adc``: ``isinstance(s, int)`` -> ``float`` (8 columns per ADC kept on a
        4-column array), and ``rows_per_conversion`` ``min`` -> ``max``."""
        from cimsim.sweep.grid import chip_for_point

        wide = ideal.replace(array=ideal.array.replace(cols_per_adc=8, rows_per_conversion=16))
        arr = chip_for_point(wide, {"array_size": 4}).array
        assert (arr.n_rows, arr.n_cols, arr.cols_per_adc, arr.rows_per_conversion) == (4, 4, 4, 4)
        arr = chip_for_point(wide, {"array_size": 32}).array
        assert (arr.cols_per_adc, arr.rows_per_conversion) == (8, 16)


    def test_a_too_wide_adder_tree_names_its_input_slices(self):
        """``_check_adder_tree``: ``d > 1`` -> ``d > 2`` (2-b input slices left unnamed)."""
        from cimsim.sweep.grid import chip_for_point

        chip = cimsim.load_chip("published/fujiwara-isscc22")  # digital, 64 rows
        assert chip_for_point(chip, {"dac.bits": 2}).adc.bits == 9
        with pytest.raises(ConfigError, match=r"^adc_bits = 10 is invalid for adc.kind = "
                                              r"'digital' on 64 rows per conversion of 2-b "
                                              r"input slices: .*; allowed: 9$"):
            chip_for_point(chip, {"dac.bits": 2, "adc_bits": 10})

class TestResolvePointRound2:
    def test_times_and_noise_are_floats_but_a_bool_is_kept(self, ideal):
        """``resolve_point``: ``time_s`` left out of ``FLOAT_AXES`` (``1`` and ``1.0`` two
        ids), and the ``bool`` exclusion dropped (``True`` became ``1.0``, a valid time)."""
        from cimsim.sweep.grid import resolve_point

        assert resolve_point(ideal, {"time_s": 1})["time_s"] == 1.0
        assert type(resolve_point(ideal, {"time_s": 1})["time_s"]) is float
        assert resolve_point(ideal, {"time_s": True})["time_s"] is True
        assert type(resolve_point(ideal, {"thermal_sigma_lsb": 0})["thermal_sigma_lsb"]) is float

    def test_a_bare_ramp_takes_the_chips_fit(self, ideal):
        from cimsim.sweep.grid import resolve_point

        ramp = ideal.replace(adc=ideal.adc.replace(level_fit="bs_kmq"))
        assert resolve_point(ramp, {"adc_kind": "ramp"})["adc_kind"] == "ramp:bs_kmq"
        assert resolve_point(ramp, {"adc_kind": "ramp:uniform"})["adc_kind"] == "ramp:uniform"


class TestIdentityCellLsbRound2:
    """``identity`` marks a point whose ``bits_per_cell`` rescales a value the chip states in
    cell-LSB (``ChipConfig.with_bits_per_cell``), so that a results file an older cimsim wrote
    reruns it; on a noise-free chip only the fixed ADC range and a Gaussian variation's sigma
    are such values."""

    def test_a_fixed_adc_range_is_held_in_cell_lsb(self, ideal):
        """Kills: grid.py ``_holds_cell_lsb`` without ``or adc.range_policy is FIXED``."""
        from cimsim.sweep.grid import identity

        fixed = ideal.replace(adc=ideal.adc.replace(range_policy="fixed", fixed_lo=0.0,
                                                    fixed_hi=64.0))
        other = 1 if fixed.device.bits_per_cell != 1 else 2
        assert identity(fixed, {"bits_per_cell": other})["cell_lsb"] == "held"
        assert "cell_lsb" not in identity(ideal, {"bits_per_cell": other})

    def test_only_a_gaussian_variations_sigma_is_in_cell_lsb(self, ideal):
        """Kills: grid.py ``_holds_cell_lsb`` reading ``dev.variation_sigma`` of any kind (a
        log-normal sigma is relative, ``with_bits_per_cell`` keeps it)."""
        from cimsim.sweep.grid import identity

        other = 1 if ideal.device.bits_per_cell != 1 else 2
        for kind, held in (("gaussian", True), ("lognormal", False)):
            chip = ideal.replace(device=ideal.device.replace(variation=kind,
                                                             variation_sigma=0.05))
            assert ("cell_lsb" in identity(chip, {"bits_per_cell": other})) is held, kind


# ---------------------------------------------------------------------------------------------
# run.py: run_sweep with the points faked (no deploy), the ``ideal`` preset and a toy model
# ---------------------------------------------------------------------------------------------


_toy, _Fake, _run = toy_sweep_model, FakePoints, run_faked  # (tests/sweep/conftest.py)


class TestRunSweepArguments:
    @pytest.mark.parametrize("kw, message", [
        ({"model_name": 3}, r"model_name = 3 is invalid; allowed: None or a name"),
        ({"jobs": True}, r"jobs = True is invalid; allowed: an integer >= 1"),
        ({"batch_size": False}, r"batch_size = False is invalid; allowed: an integer >= 1"),
        ({"client": object(), "jobs": 2}, r"jobs = 2 with a Dask client: .* allowed: jobs = 1"),
        ({"reference": 3}, r"reference = int is invalid; allowed: None or a float model"),
    ])
    def test_refused_before_any_point(self, tmp_path, fake, kw, message):
        """``run_sweep``'s checks of ``model_name``, a ``bool`` ``jobs`` / ``batch_size``
        (``isinstance(value, bool)`` dropped: True ran as 1), ``client`` with ``jobs > 1``
        and ``reference``, each deleted."""
        with pytest.raises(ConfigError, match=message):
            _run(tmp_path, **kw)
        assert fake.todo == [] and not (tmp_path / "sweep.jsonl").exists()

    def test_a_prepared_model_with_exclude_is_refused(self, tmp_path, fake, monkeypatch):
        """``run_sweep``: the ``prepared and excluded`` check deleted."""
        from cimsim.sweep import run

        monkeypatch.setattr(run, "prepared_model", lambda m: True)
        with pytest.raises(ConfigError, match=r"exclude = 'fc' with a prepared model"):
            _run(tmp_path, exclude="fc")


class _Twin(nn.Linear):
    """Just what ``run_sweep`` reads of a trained twin before its points run."""

    def __init__(self, t_inference_s):
        super().__init__(4, 3)
        self.t_inference_s = t_inference_s

    def check_chip(self, chip):
        pass

    def engine_digest(self):
        return "twin"


class TestRunSweepTrainedFor:
    def test_a_twin_trained_for_t0_is_not_warned_about(self, tmp_path, fake, monkeypatch):
        """``run_sweep``: ``trained_for != chip.device.drift_t0_s`` dropped (a twin trained
        for the chip's own t0 was told to add that time to the grid)."""
        import warnings

        from cimsim.sweep import run

        monkeypatch.setattr(run, "prepared_model", lambda m: isinstance(m, _Twin))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _run(tmp_path / "a", model=_Twin(1.0))  # ideal: drift_t0_s = 1 s
        with pytest.warns(UserWarning, match=r"trained for t_inference_s = 10 s"):
            _run(tmp_path / "b", model=_Twin(10.0))

class TestRunSweepIds:
    def test_an_unused_reference_leaves_the_ids_alone(self, tmp_path, fake):
        """``run_sweep``: ``reference = None`` with labels skipped (a reference that scores
        nothing changed every id: the sweep ran again)."""
        model, _, _ = _toy()
        plain = _run(tmp_path / "a")
        other = nn.Linear(4, 3)
        with_ref = _run(tmp_path / "b", reference=other)
        assert with_ref["point_id"].tolist() == plain["point_id"].tolist()

    def test_a_tuple_of_one_has_no_labels(self, tmp_path, fake):
        """``run_sweep``: ``y_all`` from ``data[-1]`` (``(x,)``: the inputs taken for labels,
        refused as labels)."""
        _, x, _ = _toy()
        frame = _run(tmp_path / "a", data=(x,))
        assert frame["status"].tolist() == ["ok", "ok"]
        assert frame["point_id"].tolist() == _run(tmp_path / "b", data=x)["point_id"].tolist()


class TestRunLocked:
    def test_lost_points_and_other_records_are_counted(self, tmp_path, fake):
        """``_run_locked``: ``n_points_lost`` always 0, and ``n_records_other`` counting this
        sweep's own records too."""
        first = _run(tmp_path, {"adc_bits": [4, 5, 6]})
        assert (first.attrs["n_points_resumed"], first.attrs["n_records_other"]) == (0, 0)
        fake.lost = [_run(tmp_path / "x", {"adc_bits": [7]})["point_id"][0]]
        frame = _run(tmp_path, {"adc_bits": [4, 7]})
        assert frame["status"].tolist() == ["ok", "missing"]
        assert frame.attrs["n_points_lost"] == 1 and frame.attrs["n_points_resumed"] == 1
        assert frame.attrs["n_records_other"] == 2  # the records of 5 and 6

    def test_the_progress_lines_count_only_points_to_run(self, tmp_path, fake, capsys):
        """``_run_locked``: ``n_run`` counting skipped points, and the opening line printed
        with nothing to run (``if lines and todo`` -> ``if lines``)."""
        grid = {"array_size": [4, 8], "cols_per_adc": [4, 8]}  # 8 columns per ADC on 4: skipped
        frame = _run(tmp_path, grid, progress=True)
        assert frame["status"].str.startswith("skipped").tolist() == [False, True, False, False]
        err = capsys.readouterr().err
        assert "sweep: 3 of 3 points to run" in err and "sweep: 3/3 points done" in err
        _run(tmp_path, grid, progress=True)
        assert "points to run" not in capsys.readouterr().err

    def test_a_failed_point_is_said_once(self, tmp_path, monkeypatch, capsys, caplog):
        """``_run_locked``: a failed point's warning logged beside its progress line
        (``and not lines`` dropped)."""
        from cimsim.sweep import run

        def failing(ctx, todo, jobs, finish, client=None):
            for pid, p in todo:
                finish({"point_id": pid, "point": p, "status": "error: boom", "final": True})
            return []

        monkeypatch.setattr(run, "run_points", failing)
        monkeypatch.setattr(run, "write_outputs", lambda *a: [])
        with caplog.at_level(logging.WARNING, logger="cimsim.sweep.run"):
            _run(tmp_path, {"adc_bits": [4]}, progress=True)
        assert "points done; {'adc_bits': 4}: error: boom" in capsys.readouterr().err
        assert not [r for r in caplog.records if "failed" in r.getMessage()]
        with caplog.at_level(logging.WARNING, logger="cimsim.sweep.run"):
            _run(tmp_path / "quiet", {"adc_bits": [4]}, progress=False)
        assert [r.getMessage() for r in caplog.records if "failed" in r.getMessage()] == [
            "sweep point {'adc_bits': 4} failed: error: boom"]

    def test_meta_names_a_calibration_tensor_by_its_rows_and_the_exclusion(self, tmp_path,
                                                                           fake):
        """``_run_locked``: a calibration tensor's count written as 0, and ``exclude`` left out
        of ``sweep.json``."""
        from cimsim.sweep import run_sweep

        model, x, y = _toy()
        run_sweep(model, (x, y), "ideal", {"adc_bits": [4]}, tmp_path, calibration=x[:3],
                  progress=False, exclude=["0"])
        assert fake.meta["calibration"] == 3 and fake.meta["exclude"] == ["0"]
        assert fake.meta["n_eval"] == 8

"""Tests from the third mutation round over the sweep driver and its files:
``cimsim/sweep/store.py``, ``run.py``, ``runner.py``, ``cluster.py``, ``table.py`` and
``files.py``.

Each test pins behaviour that a mutant survived the first two rounds' tests with, chiefly
where resume must neither lose nor duplicate a point: what a record of ``sweep.jsonl`` must
hold to count, what goes into a point's id (seed, exclusion, batch size, reference, a trained
twin's digest), which records count as done, and the checks ``run_sweep`` makes before any
point runs. All use fakes in place of the points (no deploy) or plain functions with the
``ideal`` preset and toy models, and run in well under a second each; no Dask cluster or worker
pool is started.
"""

from __future__ import annotations

import json
import logging
import warnings

import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import ConfigError
from cimsim.sweep import store
from tests.sweep.conftest import run_faked, toy_sweep_model
from tests.sweep.test_mutants_sweep_report import _resolved

# run_sweep with the points faked (each 'ok' at once) and the files not written: the
# ``fake`` fixture and these helpers are in tests/sweep/conftest.py
_toy, _run = toy_sweep_model, run_faked


def _ids(frame):
    return frame["point_id"].tolist()


def _lines(path, *records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                            for r in records))


# ---------------------------------------------------------------------------------------------
# store.py
# ---------------------------------------------------------------------------------------------


class TestContextHash:
    def test_a_batch_size_above_the_default_is_hashed(self):
        """``context_hash``: ``batch_size != DEFAULT_BATCH_SIZE`` -> ``<`` (a sweep at 512
        inputs per batch, whose noise is drawn per batch, resumed the points of 256)."""
        chip = cimsim.load_chip("ideal")
        plain = store.context_hash("m", "d", 4, chip, 0)
        assert store.context_hash("m", "d", 4, chip, 0, batch_size=256) == plain
        assert store.context_hash("m", "d", 4, chip, 0, batch_size=512) != plain
        assert (store.context_hash("m", "d", 4, chip, 0, batch_size=512)
                != store.context_hash("m", "d", 4, chip, 0, batch_size=128))


class TestDataFingerprint:
    def test_keyword_inputs_are_hashed_by_name(self):
        """``data_fingerprint``: the dict branch deleted (keyword inputs hashed by their
        printed form, in the caller's order: the same inputs given in another order ran the
        sweep again)."""
        a, b = torch.arange(4.0), torch.ones(4)
        fp = store.data_fingerprint({"a": a, "b": b})
        assert store.data_fingerprint({"b": b, "a": a}) == fp
        assert store.data_fingerprint({"a": b, "b": a}) != fp


class TestReadRecordsRound3:
    def test_a_record_whose_point_id_is_no_text_is_skipped(self, tmp_path, caplog):
        """``_check_fields``: ``("point_id", "status")`` -> ``("status",)`` (an edited
        ``"point_id": [1]`` failed every rerun with "unhashable type")."""
        p = tmp_path / "sweep.jsonl"
        _lines(p, {"point_id": [1], "status": "ok"}, {"point_id": 7, "status": "ok"},
               {"point_id": "a", "status": "ok"})
        with caplog.at_level(logging.WARNING, logger="cimsim.sweep.store"):
            assert list(store.read_records(p)) == ["a"]
        assert sum("'point_id' is" in r.getMessage() for r in caplog.records) == 2

    def test_an_error_record_has_no_count_of_arrays(self, tmp_path):
        """``_check_fields``: ``arrays is not None and`` dropped (a failed point's record, which
        has no ``n_arrays``, was skipped: a deterministic error ran again at every rerun)."""
        p = tmp_path / "sweep.jsonl"
        _lines(p, {"point_id": "a", "status": "error: no", "final": True},
               {"point_id": "b", "status": "ok", "n_arrays": None})
        assert sorted(store.read_records(p)) == ["a", "b"]

    def test_a_line_of_json_that_is_no_object_is_skipped(self, tmp_path):
        """``_record``: ``isinstance(rec, dict)`` dropped (a line ``5`` raised "argument of
        type 'int' is not iterable"; ``"point_id"`` or ``["point_id"]`` passed for records)."""
        p = tmp_path / "sweep.jsonl"
        _lines(p, "5", '"point_id"', '["point_id"]', "null", {"point_id": "a", "status": "ok"})
        assert list(store.read_records(p)) == ["a"]

    def test_bytes_that_are_not_utf8_are_skipped(self, tmp_path):
        """``_record``: ``UnicodeDecodeError`` left out of what makes a line unreadable (a
        damaged byte failed the sweep with a traceback)."""
        p = tmp_path / "sweep.jsonl"
        p.write_bytes(b'{"point_id": "\xff", "status": "ok"}\n'
                      + json.dumps({"point_id": "a", "status": "ok"}).encode() + b"\n")
        assert list(store.read_records(p)) == ["a"]

    def test_a_folder_is_no_records_file(self, tmp_path):
        """``read_records``: ``path.is_file()`` -> ``path.exists()`` (a folder named
        ``sweep.jsonl`` failed with IsADirectoryError)."""
        folder = tmp_path / "sweep.jsonl"
        folder.mkdir()
        assert store.read_records(folder) == {} and store.repair_tail(folder) == 0
        assert store.read_records(tmp_path / "absent.jsonl") == {}


class TestResultsLock:
    def test_the_lock_is_a_file_beside_the_records(self, tmp_path):
        """``results_lock``: the lock's name (``sweep.jsonl`` + ``.lock``) changed: a sweep of
        another cimsim version into the folder would not have been refused."""
        from cimsim.errors import CimsimError

        path = tmp_path / "sweep.jsonl"
        path.write_text("kept\n")
        with store.results_lock(path):
            assert (tmp_path / "sweep.jsonl.lock").read_text().startswith("pid ")
            with pytest.raises(CimsimError, match="another sweep is writing into"):
                with store.results_lock(path):
                    pass
        assert path.read_text() == "kept\n"
        assert sorted(f.name for f in tmp_path.iterdir()) == ["sweep.jsonl", "sweep.jsonl.lock"]


class TestAppendRecordRound3:
    def test_the_record_returned_is_the_one_read_back(self, tmp_path):
        """``append_record``: returned ``cleaned`` instead of the line read back (a key that
        is no text came back as given, not as the file holds it)."""
        p = tmp_path / "sweep.jsonl"
        got = store.append_record(p, {"point_id": "a", "status": "ok", "point": {4: (1, 2)}})
        assert got == {"point_id": "a", "status": "ok", "point": {"4": [1, 2]}}
        assert store.read_records(p) == {"a": got}
        store.append_record(p, {"point_id": "b", "status": "ok"})
        assert sorted(store.read_records(p)) == ["a", "b"]


# ---------------------------------------------------------------------------------------------
# run.py: the split of the data
# ---------------------------------------------------------------------------------------------


class TestSplitRound3:
    def test_a_dict_of_keyword_inputs_is_data(self):
        """``_split``: ``isinstance(data, (torch.Tensor, dict))`` -> ``torch.Tensor`` (a dict
        of keyword inputs refused)."""
        from cimsim.sweep.run import _split

        x = {"a": torch.arange(6.0).reshape(3, 2), "b": torch.arange(3.0)}
        x_cal, x_eval, y, key = _split(x, 1)
        assert y is None and key == 1
        assert torch.equal(x_cal["a"], x["a"][:1]) and torch.equal(x_eval["b"], x["b"][1:])

    def test_labels_are_checked_against_the_inputs(self):
        """``_split``: ``_check_labels`` deleted (two labels for three inputs, or float labels,
        were taken)."""
        from cimsim.sweep.run import _split

        x = torch.zeros(3, 2)
        with pytest.raises(ConfigError, match=r"^data: labels must be 1-D with one per input"):
            _split((x, torch.tensor([0, 1])), 1)
        with pytest.raises(ConfigError, match=r"^data: labels must be integer class indices"):
            _split((x, torch.tensor([0.0, 1.0, 0.0])), 1)

    @pytest.mark.parametrize("bad", [2.5, "2", None, True])
    def test_a_calibration_is_a_count_or_a_tensor(self, bad):
        """``_split``: the calibration type check deleted (2.5 calibrated on 2 inputs)."""
        from cimsim.sweep.run import _split

        with pytest.raises(ConfigError, match="calibration must be a number of inputs or a "
                                              "tensor of inputs"):
            _split(torch.zeros(3, 2), bad)

    def test_the_labels_scored_are_those_of_the_inputs_scored(self):
        """``_split``: ``y[n_cal:]`` -> ``y`` (labels of every input beside the inputs
        left)."""
        from cimsim.sweep.run import _split

        x, y = torch.arange(10.0).reshape(5, 2), torch.tensor([0, 1, 2, 3, 4])
        _, x_eval, y_eval, _ = _split((x, y), 2)
        assert torch.equal(x_eval, x[2:]) and y_eval.tolist() == [2, 3, 4]


# ---------------------------------------------------------------------------------------------
# run.py: checks before any point, and the cost basis
# ---------------------------------------------------------------------------------------------


class TestCostBasisRound3:
    def test_one_basis_other_than_the_base_chips(self):
        """``_cost_basis``: ``next(iter(groups), basis(chip))`` -> ``basis(chip)`` (a grid
        whose every point is priced otherwise than the base chip was said to be priced as
        the base chip)."""
        from cimsim.report import cost_basis
        from cimsim.sweep.grid import chip_for_point, resolve_point
        from cimsim.sweep.run import _cost_basis

        chip = cimsim.load_chip("ideal")
        points = [{"tech.cost_model": "physical", "adc_bits": b} for b in (4, 5)]
        want = cost_basis(chip_for_point(chip, points[0]))
        assert want != cost_basis(chip)
        assert _cost_basis(chip, points, [resolve_point(chip, p) for p in points]) == want

    def test_groups_are_named_by_the_first_axis_that_tells_them_apart(self):
        """``_cost_basis``: ``apart[:1] or differ`` -> ``differ`` (every axis that differs
        named, where the first that sets the groups apart says it)."""
        from cimsim.report import cost_basis
        from cimsim.sweep.grid import chip_for_point, resolve_point
        from cimsim.sweep.run import _cost_basis

        chip = cimsim.load_chip("ideal")
        points = [{"adc_bits": 4, "tech.cost_model": "tables"},
                  {"adc_bits": 5, "tech.cost_model": "physical"}]
        t, p = (cost_basis(chip_for_point(chip, q)) for q in points)
        got = _cost_basis(chip, points, [resolve_point(chip, q) for q in points])
        assert got == f"adc_bits 4: {t}; adc_bits 5: {p}"


class TestCheckPointsRound3:
    def test_a_value_no_point_can_have_is_refused_beside_valid_ones(self):
        """``_check_points``: ``any(not any(...))`` -> ``all(...)`` (0 ADC bits beside a valid
        ``adc_kind`` was skipped, not refused)."""
        from cimsim.sweep.run import _check_points

        chip = cimsim.load_chip("ideal")
        points = [{"adc_bits": b, "adc_kind": "sar"} for b in (0, 4)]
        with pytest.raises(ConfigError, match=r"^sweep point \{'adc_bits': 0, 'adc_kind': "
                                              r"'sar'\}: ADCConfig.bits = 0 is invalid"):
            _check_points(chip, points)


class TestWarnKindsRound3:
    def test_ramps_of_two_fits_are_one_kind(self):
        """``_warn_kinds_under_tables``: ``.partition(":")[0]`` dropped (two level fits of the
        ramp converter were warned about as two kinds compared)."""
        from cimsim.config import CostModel
        from cimsim.sweep.run import _warn_kinds_under_tables

        chip = cimsim.load_chip("ideal")
        chip = chip.replace(tech=chip.tech.replace(cost_model=CostModel.TABLES))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _warn_kinds_under_tables(chip, {"adc_kind": ["ramp:a", " RAMP:b"]})
        with pytest.warns(UserWarning, match="adc_kind compares ramp, sar under"):
            _warn_kinds_under_tables(chip, {"adc_kind": ["ramp:a", "sar"]})


class TestCheckPreparedRound3:
    def test_a_skipped_point_is_not_asked_of_the_twin(self):
        """``_check_prepared``: ``if i not in skipped`` dropped (a point already skipped as an
        impossible combination was checked again and its status replaced)."""
        from cimsim.sweep.run import _check_prepared

        asked = []

        class Twin:
            def check_chip(self, chip):
                asked.append(chip.adc.bits)

        chip = cimsim.load_chip("ideal")
        points = [{"adc_bits": 3}, {"adc_bits": 4}]
        assert _check_prepared(Twin(), chip, points, {0: "skipped: impossible"}) == {}
        assert asked == [4]


class _Twin(nn.Linear):
    """Just what ``run_sweep`` reads of a trained twin before its points run."""

    def __init__(self, t_inference_s=1.0, digest="twin"):
        super().__init__(4, 3)
        torch.nn.init.zeros_(self.weight)
        torch.nn.init.zeros_(self.bias)
        self.t_inference_s, self.digest = t_inference_s, digest

    def check_chip(self, chip):
        pass

    def engine_digest(self):
        return self.digest


@pytest.fixture
def twin(monkeypatch, fake):
    from cimsim.sweep import run

    monkeypatch.setattr(run, "prepared_model", lambda m: isinstance(m, _Twin))
    return fake


class TestRunSweepChecksRound3:
    def test_a_twin_trained_for_a_swept_time_is_not_warned_about(self, tmp_path, twin):
        """``run_sweep``: ``"time_s" not in grid`` dropped (a twin trained for 10 s was told
        to add that time to a grid that sweeps time)."""
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            frame = _run(tmp_path, {"time_s": [1.0]}, model=_Twin(10.0))
        assert frame["status"].tolist() == ["ok"]

    def test_a_twins_impossible_combinations_stay_skipped(self, tmp_path, twin):
        """``run_sweep``: ``skipped |= _check_prepared(...)`` -> ``skipped = ...`` (with a
        trained twin the impossible combinations were run)."""
        grid = {"array_size": [4, 8], "cols_per_adc": [4, 8]}
        frame = _run(tmp_path, grid, model=_Twin())
        assert frame["status"].str.startswith("skipped: ").tolist() == [False, True, False,
                                                                        False]
        assert len(twin.todo[-1]) == 3

    def test_labels_beyond_the_models_classes_are_refused(self, tmp_path, fake):
        """``run_sweep``: the ``score_problem`` check deleted (labels of 5 classes for a model
        of 3 scored every point as 'ok')."""
        _, x, _ = _toy()
        with pytest.raises(ConfigError, match=r"^data: "):
            _run(tmp_path, data=(x, torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])))
        assert fake.todo == []

    def test_a_reference_is_a_model(self, tmp_path, fake):
        """``run_sweep``: ``hasattr(reference, "state_dict")`` dropped (a function taken for
        the float model, failing at the fingerprint)."""
        _, x, _ = _toy()
        with pytest.raises(ConfigError, match=r"reference = function is invalid; allowed: None "
                                              r"or a float model"):
            _run(tmp_path, data=x, reference=lambda t: t)

    def test_impossible_combinations_are_skipped_not_run(self, tmp_path, fake):
        """``run_sweep`` / ``_run_locked``: the skipped points' check replaced by none, or
        ``pid not in skips`` dropped from what runs (a skipped point was run, or its record
        replaced the skip)."""
        grid = {"array_size": [4, 8], "cols_per_adc": [4, 8]}
        frame = _run(tmp_path, grid)
        skipped = frame["status"].str.startswith("skipped: ").tolist()
        assert skipped == [False, True, False, False]
        assert fake.todo == [[pid for pid, s in zip(_ids(frame), skipped, strict=True) if not s]]
        assert len(store.read_records(tmp_path / "sweep.jsonl")) == 3


# ---------------------------------------------------------------------------------------------
# run.py: what makes a point's id (resume must never mix two sweeps)
# ---------------------------------------------------------------------------------------------


class TestIdsRound3:
    def test_the_seed_the_exclusion_and_the_batch_size_are_in_the_id(self, tmp_path, fake):
        """``run_sweep``: ``context_hash`` given ``0`` for the seed, ``()`` for ``excluded``,
        or the default batch size (a sweep with another seed, layers kept digital or batch
        size resumed this one's points)."""
        plain = _ids(_run(tmp_path / "a"))
        for n, kw in enumerate(({"seed": 1}, {"exclude": "0"}, {"batch_size": 3})):
            other = _ids(_run(tmp_path / f"b{n}", **kw))
            assert set(other).isdisjoint(plain), kw
        assert _ids(_run(tmp_path / "c")) == plain

    def test_without_labels_the_reference_is_in_the_id(self, tmp_path, fake):
        """``run_sweep``: ``model_fingerprint(reference)`` left out of the model key (without
        labels the cosine is measured against the reference: another reference resumed this
        one's points)."""
        _, x, _ = _toy()
        torch.manual_seed(1)
        ref_a, ref_b = nn.Linear(4, 3), nn.Linear(4, 3)
        plain = _ids(_run(tmp_path / "a", data=x))
        a = _ids(_run(tmp_path / "b", data=x, reference=ref_a))
        b = _ids(_run(tmp_path / "c", data=x, reference=ref_b))
        assert len({*plain, *a, *b}) == 6
        assert _ids(_run(tmp_path / "d", data=x, reference=ref_a)) == a

    def test_a_twins_engine_digest_is_in_the_id(self, tmp_path, twin):
        """``run_sweep``: ``model.engine_digest()`` left out of the model key (a twin whose
        learned tables changed resumed the other's points)."""
        a = _ids(_run(tmp_path / "a", model=_Twin(digest="one")))
        b = _ids(_run(tmp_path / "b", model=_Twin(digest="two")))
        assert set(a).isdisjoint(b)
        assert _ids(_run(tmp_path / "c", model=_Twin(digest="one"))) == a


# ---------------------------------------------------------------------------------------------
# run.py: resume (which records count as done) and what the run says
# ---------------------------------------------------------------------------------------------


class TestResumeRound3:
    def test_a_record_that_is_not_final_runs_again(self, tmp_path, fake):
        """``_run_locked``: ``.get("final", False)`` -> ``True`` (a record that does not say
        it is final, as an error cimsim did not raise on purpose, was taken as done)."""
        first = _run(tmp_path)
        path = tmp_path / "sweep.jsonl"
        rec = json.loads(path.read_text().splitlines()[0])
        del rec["final"]
        with path.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        again = _run(tmp_path)
        assert fake.todo[-1] == [_ids(first)[0]] and again.attrs["n_points_resumed"] == 1

    def test_a_torn_tail_is_cut_before_the_next_record(self, tmp_path, fake):
        """``_run_locked``: ``repair_tail`` deleted (the next record was glued to the torn
        line and lost with it at every rerun)."""
        first = _run(tmp_path, {"adc_bits": [4]})
        path = tmp_path / "sweep.jsonl"
        with path.open("a") as fh:
            fh.write('{"point_id": "x", "acc')
        frame = _run(tmp_path, {"adc_bits": [4, 5]})
        assert fake.todo[-1] == [_ids(frame)[1]] and _ids(frame)[0] == _ids(first)[0]
        assert sorted(store.read_records(path)) == sorted(_ids(frame))
        _run(tmp_path, {"adc_bits": [4, 5]})
        assert fake.todo[-1] == []

    def test_progress_lines_only_when_asked_and_counting_the_resumed(self, tmp_path, fake,
                                                                   capsys):
        """``_run_locked``: ``lines = progress and bar.disable`` -> ``bar.disable`` (lines on
        stderr with ``progress=False``), and ``done = n_done`` -> ``0`` (a resumed sweep's
        lines counted from 0)."""
        _run(tmp_path, {"adc_bits": [4, 5]})
        assert capsys.readouterr().err == ""
        _run(tmp_path, {"adc_bits": [4, 5, 6]}, progress=True)
        err = capsys.readouterr().err
        assert "sweep: 1 of 3 points to run" in err
        assert "sweep: 3/3 points done; {'adc_bits': 6}: ok" in err

    def test_meta_names_the_model_and_no_exclusion(self, tmp_path, fake):
        """``_run_locked``: ``model_name or`` dropped (the name given left out of
        ``sweep.json``), and ``if ctx.exclude`` always true (an empty ``exclude`` written)."""
        _run(tmp_path, model_name="net")
        assert fake.meta["model"] == "net" and "exclude" not in fake.meta
        _run(tmp_path / "b")
        assert fake.meta["model"] == "Sequential"


# ---------------------------------------------------------------------------------------------
# runner.py (the measurement faked)
# ---------------------------------------------------------------------------------------------


def _ctx(**kw):
    from cimsim.sweep.runner import SweepContext

    base = {"model": None, "chip": cimsim.load_chip("ideal"), "x_cal": None, "x_eval": None,
            "y_eval": None, "seed": 0, "batch_size": 16}
    return SweepContext(**(base | kw))


class TestRunPointWarningsRound3:
    def test_a_points_warnings_are_recorded_whatever_the_callers_filters(self, monkeypatch):
        """``run_point``: ``warnings.simplefilter("always")`` deleted (a caller that ignores
        warnings, or a filter already spent, left the point's warnings out of its record)."""
        from cimsim.sweep import runner

        def measure(*_a):
            warnings.warn("a point's warning", UserWarning, stacklevel=1)
            return {}

        monkeypatch.setattr(runner, "_measure", measure)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rec = runner.run_point(_ctx(), "id", {})
        assert rec["warnings"] == ["a point's warning"] and rec["status"] == "ok"

    def test_a_point_without_warnings_has_no_warnings_field(self, monkeypatch):
        """``run_point``: ``if said`` always true (every record carried ``"warnings": []``)."""
        from cimsim.sweep import runner

        def measure(*_a):
            warnings.warn("hidden", DeprecationWarning, stacklevel=1)
            return {"accuracy": 1.0}

        monkeypatch.setattr(runner, "_measure", measure)
        rec = runner.run_point(_ctx(), "id", {})
        assert "warnings" not in rec and rec["accuracy"] == 1.0


class TestPickledContext:
    def test_a_context_that_cannot_travel_is_a_config_error(self):
        """``pickled_context``: ``except Exception`` narrowed (a model holding a lock failed
        with the pickler's TypeError instead of saying to run with jobs = 1)."""
        import threading

        from cimsim.sweep.runner import pickled_context

        with pytest.raises(ConfigError, match=r"cannot be sent to worker processes "
                                              r"\(TypeError: .*\); run it with jobs = 1"):
            pickled_context(_ctx(model=threading.Lock()))
        assert isinstance(pickled_context(_ctx(model=nn.Identity())), bytes)


# ---------------------------------------------------------------------------------------------
# table.py
# ---------------------------------------------------------------------------------------------


class TestSweepTableTypesRound3:
    def test_a_noise_or_time_column_of_numbers_only_is_float(self):
        """``sweep_table``: the float cast of ``thermal_sigma_lsb`` / ``time_s`` on ``any``
        number instead of ``all`` (a column holding a text value failed the table)."""
        from cimsim.sweep.table import sweep_table

        frame = sweep_table([_resolved(time_s="later"), _resolved(time_s=2)], ["a", "b"], {})
        assert frame["time_s"].dtype == object and frame["time_s"].tolist() == ["later", 2]
        frame = sweep_table([_resolved(time_s=1), _resolved(time_s=2.5)], ["a", "b"], {})
        assert frame["time_s"].dtype == float and frame["time_s"].tolist() == [1.0, 2.5]

    def test_a_field_of_flags_keeps_its_flags(self):
        """``sweep_table``: ``not isinstance(v, bool)`` dropped from a chip field's number
        check (a field swept over ``[True, False]`` was written as 1 and 0)."""
        from cimsim.sweep.table import sweep_table

        frame = sweep_table([_resolved(**{"adc.flag": True}), _resolved(**{"adc.flag": False})],
                            ["a", "b"], {})
        assert frame["adc.flag"].dtype == bool
        assert frame["adc.flag"].tolist() == [True, False]


# ---------------------------------------------------------------------------------------------
# a real bug found in this round, fixed
# ---------------------------------------------------------------------------------------------


class TestEmptyCalibrationTensor:
    def test_an_empty_calibration_tensor_is_refused_before_any_point(self, tmp_path, fake):
        """``_split``: ``calibration`` as a tensor was passed on unchecked: every point then
        failed "calibration data is empty", recorded as final, and the sweep returned as if it
        had run; a tensor of no rows is now a ConfigError before any point runs, as
        ``calibration = 0`` is."""
        model, x, y = _toy()
        from cimsim.sweep import run_sweep

        with pytest.raises(ConfigError, match=r"^calibration = a tensor of shape \(0, 4\) holds "
                                              r"no input; allowed: an integer >= 1 or a tensor"):
            run_sweep(model, (x, y), "ideal", {"adc_bits": [4]}, tmp_path,
                      calibration=torch.zeros(0, 4), progress=False)
        assert fake.todo == []


# ---------------------------------------------------------------------------------------------
# cluster.py and files.py
# ---------------------------------------------------------------------------------------------


class TestParseSchedulerRound3:
    @pytest.mark.parametrize("spec", [8786, None, b"local:2"])
    def test_a_scheduler_that_is_no_text_is_one_error(self, spec):
        """``parse_scheduler``: the ``isinstance(spec, str)`` check deleted (a number failed
        with "'int' object has no attribute 'strip'")."""
        from cimsim.sweep.cluster import parse_scheduler

        with pytest.raises(ConfigError, match=r"^scheduler = .* is invalid; allowed: 'local:N'"):
            parse_scheduler(spec)


class TestSweepHtmlRound3:
    def test_a_page_without_a_front_says_so(self):
        """``sweep_html``: ``if len(front)`` always true (an empty table in place of the line
        saying no point has both figures)."""
        from cimsim.sweep.files import sweep_html
        from cimsim.sweep.table import sweep_table

        frame = sweep_table([_resolved()], ["a"], {"a": {"status": "error: no"}})
        assert not frame["on_front"].any()
        page = sweep_html(frame, None, {"model": "m", "chip": "c"})
        front = page[page.index("<h2>Pareto front"):page.index("<h2>All points")]
        assert "no point has both an accuracy and an energy per inference" in front
        assert "<table" not in front and "(no plot)" in page and "1 point, 0 on" in page


class TestSweepTableFrontRound3:
    def test_a_time_sweep_has_a_front_per_time(self):
        """``sweep_table``: ``by=front_group(frame)`` -> ``by=None`` (a time sweep's points
        late after programming, all dominated by the fresh ones, were never on a front)."""
        from cimsim.sweep.table import sweep_table

        def rec(acc, energy):
            return {"status": "ok", "accuracy": acc, "energy_pj_per_inference": energy}

        resolved = [_resolved(time_s=t, adc_bits=b) for t in (1.0, 3600.0) for b in (4, 5)]
        frame = sweep_table(resolved, ["a", "b", "c", "d"],
                            {"a": rec(0.9, 1.0), "b": rec(0.8, 2.0), "c": rec(0.5, 1.0),
                             "d": rec(0.4, 2.0)})
        assert frame["on_front"].tolist() == [True, False, True, False]

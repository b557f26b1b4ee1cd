"""Tests written for the survivors of a third, short hand-made mutation round over
``cimsim/report.py`` (the Report: its recorded figures, ``Report.load``'s checks of a saved
file, the summary and headline formatting, the table cells and the figures' choices), aimed at
what the earlier rounds (``tests/test_mutants_cli_report_round2.py``, ``tests/test_report.py``)
left unpinned. Pure helpers where they decide, else one small MLP's report with a few fields
replaced; each docstring names the line and the change it kills."""

from __future__ import annotations

import dataclasses
import json
import math
import types

import pandas as pd
import pytest

import cimsim
from cimsim.errors import CimsimError
from cimsim.report import (
    Report,
    _cell,
    _checked_training,
    _saved_training,
    _shown,
    _source_for_users,
    _training_text,
    _with_fidelity,
    headline_lines,
    readable,
)
from tests.conftest import mlp_report


@pytest.fixture(scope="module")
def rep() -> Report:
    """A small MLP's report on rram-22nm (no digital layers, no fidelity trace)."""
    return mlp_report("rram-22nm", 32, 10)


def _with(report: Report, **fields) -> Report:
    """``report`` with some fields replaced (its tables and dicts copied, not shared)."""
    copies = {"notes": list(report.notes), "summary": dict(report.summary),
              "totals": dict(report.totals), "training": dict(report.training)}
    return dataclasses.replace(report, **(copies | fields))


def _saved(rep: Report, tmp_path, edit) -> str:
    """The folder of ``rep``'s report.json (no figures), changed by ``edit(data)``."""
    from cimsim._json import json_safe
    from cimsim.report import _json_default

    folder = tmp_path / "saved"
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads(json.dumps(json_safe(rep.to_dict()), allow_nan=False,
                                 default=_json_default))
    edit(data)
    (folder / "report.json").write_text(json.dumps(data))
    return str(folder)


# ---------------------------------------------------------------------------------------------
# what a report records
# ---------------------------------------------------------------------------------------------
class TestRecordedFigures:
    def test_a_fractional_input_count_is_refused(self, rep):
        """report.py ``_check_n_inputs``: ``not _is_int(n_inputs) or`` dropped took 2.5
        evaluated inputs (and stored it as 2)."""
        r = _with(rep)
        with pytest.raises(ValueError, match=r"n_inputs = 2\.5 is invalid"):
            r.set_accuracy(0.5, 0.5, 2.5)
        with pytest.raises(ValueError, match=r"n_inputs = True is invalid"):
            r.set_output_fidelity(0.5, True)

    def test_training_may_be_any_mapping(self, rep):
        """report.py ``set_training``: ``isinstance(training, Mapping)`` as ``dict`` refused a
        read-only mapping (``types.MappingProxyType``) the docstring allows."""
        r = _with(rep)
        r.set_training(types.MappingProxyType({"method": "qat", "loss": [1.0, 0.5]}))
        assert r.training == {"method": "qat", "loss": [1.0, 0.5]}

    def test_set_training_checks_the_losses(self, rep):
        """report.py ``set_training``: ``_checked_training`` dropped took a loss list holding
        text, which the training figure then failed to draw."""
        r = _with(rep)
        with pytest.raises(ValueError, match=r"training\['loss'\] = \['a'\]"):
            r.set_training({"loss": ["a"]})

    def test_loss_as_text_is_refused_even_when_empty(self):
        """report.py ``_numbers``: ``list | tuple`` widened to ``str`` took ``loss = ""``."""
        with pytest.raises(ValueError, match=r"training\['loss'\] = ''"):
            _checked_training({"loss": ""})

    def test_boolean_losses_are_refused(self):
        """report.py ``_numbers``: ``not isinstance(v, bool)`` dropped took ``[True]``."""
        with pytest.raises(ValueError, match="training\\['batch_loss'\\]"):
            _checked_training({"loss": [1.0], "batch_loss": [[True]]})


# ---------------------------------------------------------------------------------------------
# Report.load's checks and what it reads back
# ---------------------------------------------------------------------------------------------
class TestLoad:
    def test_a_summary_that_is_not_an_object_is_named(self, rep, tmp_path):
        """report.py ``_check_saved``: ``"summary"`` left out of the objects checked failed
        later with saved_numbers' AttributeError, not the check's message."""
        folder = _saved(rep, tmp_path, lambda d: d.update(summary=[1, 2]))
        with pytest.raises(CimsimError, match="'summary' is not an object"):
            Report.load(folder)

    def test_a_table_row_that_is_not_an_object_is_named(self, rep, tmp_path):
        """report.py ``_check_saved``: the ``all(isinstance(r, dict) ...)`` check dropped let
        a row ``3`` of ``area`` through to a later, unnamed failure."""
        folder = _saved(rep, tmp_path, lambda d: d.update(area=[3]))
        with pytest.raises(CimsimError, match="'area' is not a list of rows"):
            Report.load(folder)

    def test_a_breakdown_row_without_its_layer_is_named(self, rep, tmp_path):
        """report.py ``_check_saved``: ``"breakdown"`` left out of the tables whose rows must
        name their layer loaded a breakdown without one."""
        def edit(d):
            del d["breakdown"][0]["layer"]
        folder = _saved(rep, tmp_path, edit)
        with pytest.raises(CimsimError, match="a row of 'breakdown' has no 'layer'"):
            Report.load(folder)

    def test_a_file_that_is_not_utf8_is_one_cimsim_error(self, tmp_path):
        """report.py ``Report.load``: ``UnicodeDecodeError`` dropped from the ``except`` let a
        binary report.json escape as Python's decoding error."""
        (tmp_path / "report.json").write_bytes(b"\xff\xfe\x00garbage")
        with pytest.raises(CimsimError, match="not a cimsim report \\(not JSON"):
            Report.load(tmp_path)

    def test_load_keeps_notes_summary_training_and_an_empty_digital_table(self, rep, tmp_path):
        """report.py ``Report.to_dict`` / ``_from_saved``: the notes, the summary or the
        training left out of the file or of the read-back were lost; a report without digital
        layers came back with a digital table without its three columns."""
        r = _with(rep, notes=["a note"])
        r.set_accuracy(0.5, 0.25, 4)
        r.set_training({"method": "qat", "loss": [2.0, 1.0]})
        back = Report.load(_saved(r, tmp_path, lambda d: None))
        assert back.notes == ["a note"]
        assert back.summary == {"float_accuracy": 0.5, "simulated_accuracy": 0.25,
                                "n_eval_inputs": 4}
        assert back.training == {"method": "qat", "loss": [2.0, 1.0]}
        assert list(back.digital.columns) == ["layer", "type", "reason"]

    def test_a_chip_entry_of_the_wrong_type_is_one_cimsim_error(self, rep, tmp_path):
        """report.py ``Report.load``: ``AttributeError`` dropped from the ``except`` let a chip
        section holding a list where an object belongs escape as Python's own error."""
        def edit(d):
            d["chip"]["array"] = [1]
        folder = _saved(rep, tmp_path, edit)
        with pytest.raises(CimsimError, match="not a report cimsim saved"):
            Report.load(folder)

    def test_saved_training_reads_back_minus_infinity(self):
        """report.py ``_saved_training``: ``"-inf"`` dropped from the strings read back as
        infinities refused a diverged run's loss."""
        out = _saved_training({"loss": ["-inf", None, 1.0], "batch_loss": [["inf"]]})
        assert out["loss"][0] == -math.inf and math.isnan(out["loss"][1])
        assert out["batch_loss"] == [[math.inf]]

    def test_saved_training_must_be_an_object(self):
        """report.py ``_saved_training``: the object check dropped failed on a list with
        saved_numbers' AttributeError, not the TypeError naming 'training'."""
        with pytest.raises(TypeError, match="'training' is a list, not an object"):
            _saved_training([1.0])


# ---------------------------------------------------------------------------------------------
# formatting: summary, headline, cells
# ---------------------------------------------------------------------------------------------
class TestFormatting:
    def test_readable_units_at_their_boundaries(self):
        """report.py ``readable``: ``>=`` as ``>`` wrote 1000 pJ as "1e+03 pJ"; the rounding to
        three digits dropped wrote 999,999.9 ns as "1e+03 µs"."""
        assert readable(1000.0, "pJ") == "1 nJ"
        assert readable(999_999.9, "ns") == "1 ms"

    def test_a_million_pj_is_also_given_in_uj(self):
        """report.py ``_shown``: ``abs(v) >= 1e6`` as ``> 1e6`` left 1,000,000 pJ without its
        readable unit."""
        assert _shown("{:,.1f} pJ", 1e6) == "1,000,000.0 pJ (1 µJ)"

    def test_zero_is_shown_in_the_format(self):
        """report.py ``_shown``: ``v != 0`` dropped wrote a zero TOPS/W as "0" (three
        significant digits), not "0.000"."""
        assert _shown("{:.3f} TOPS/W", 0.0) == "0.000 TOPS/W"

    def test_cells_whole_from_ten_thousand_up_to_below_1e15(self):
        """report.py ``_cell``: ``1e4 <=`` as ``<`` wrote 10,000 as "1e+04"; ``< 1e15`` as
        ``<=`` wrote 1e15 as sixteen digits."""
        assert _cell("x", 1e4) == "10,000"
        assert _cell("x", 1e15) == "1e+15"
        assert _cell("x", 9999.5) == "1e+04"

    def test_a_source_of_only_docs_references_reads_not_given(self):
        """report.py ``_source_for_users``: ``or "not given"`` dropped left an empty source
        cell; the empty-parentheses removal dropped left "A ()"."""
        assert _source_for_users("docs/technology.md") == "not given"
        assert _source_for_users("A (docs/t.md)") == "A"

    def test_a_table_chips_costs_are_predicted_by_the_tables(self):
        """report.py ``_predicted_by``: ``is CostModel.PHYSICAL`` as ``is not`` said a
        tables chip's costs came from the physical component models."""
        from cimsim.report import cost_basis

        assert cost_basis(cimsim.load_chip("ideal")) == (
            "every cost figure predicted (technology tables)")

    def test_two_epochs_say_first_and_last(self):
        """report.py ``_training_text``: ``epochs == 1`` as ``<= 2`` gave two epochs the one
        epoch's wording."""
        assert _training_text({"method": "qat", "loss": [2.0, 1.0]}) == (
            "qat, 2 epochs, mean loss 2 in the first, 1 in the last")

    def test_summary_has_no_input_count_for_zero_inputs(self, rep):
        """report.py ``_summary_rows``: ``if n`` dropped wrote "on 0 inputs"."""
        r = _with(rep)
        r.set_accuracy(0.5, 0.5, 0)
        row = dict((q, v) for q, v, _ in r.summary_rows())["accuracy"]
        assert row == "50.00 % float, 50.00 % simulated"

    def test_time_after_programming_only_for_a_chip_whose_devices_age(self, rep):
        """report.py ``_summary_rows``: ``and chip.device.ages`` dropped gave a static
        device's report a "devices aged to it" line."""
        assert not rep.chip.device.ages
        r = _with(rep, totals=dict(rep.totals, t_inference_s=10.0))
        assert "time after programming" not in [q for q, _, _ in r.summary_rows()]

    def test_a_zero_reload_time_gets_no_line(self, rep):
        """report.py ``headline_lines``: the reload line's truth test as a key test printed
        "of which reloading 0.0 ns" for a run that reloaded nothing."""
        totals = dict(rep.totals, reprogramming_latency_ns_per_inference=0.0)
        assert not any("reloading" in line for line in headline_lines(totals))

    def test_time_multiplexed_without_stored_sets_says_so(self):
        """report.py ``_turns``: the default of ``n_array_slots`` (0) raised said an older
        report's time-multiplexed run took turns between stored sets."""
        lines = headline_lines({"n_arrays_used": 9, "n_arrays_available": 4,
                                "time_multiplexed": True})
        assert lines == [f"{'arrays used':<24}9 of 4 (time-multiplexed)"]


    def test_an_older_reports_lines_without_their_companion_figures(self, rep):
        """report.py ``headline_lines`` / ``_summary_rows``: the check that the used part's
        key (``area_mm2_used``) or ``n_arrays_available`` is there dropped failed an older
        saved report's headline or summary with a KeyError."""
        assert headline_lines({"area_mm2": 1.0}) == [f"{'area':<24}1.0000 mm2"]
        totals = {k: v for k, v in rep.totals.items() if k != "n_arrays_available"}
        assert "arrays" not in [q for q, _, _ in _with(rep, totals=totals).summary_rows()]

# ---------------------------------------------------------------------------------------------
# tables and the page
# ---------------------------------------------------------------------------------------------
class TestTablesAndPage:
    def test_an_empty_fidelity_frame_leaves_the_layers_as_they_are(self):
        """report.py ``_with_fidelity``: ``fidelity.empty`` dropped failed on a trace of no
        rows (no ``layer`` column) with a KeyError."""
        layers = pd.DataFrame({"layer": ["a"], "energy_pj_per_inference": [1.0]})
        assert _with_fidelity(layers, pd.DataFrame()) is layers

    def test_page_names_the_calibration_and_the_notes(self, rep):
        """report.py ``Report.to_html``: the calibration paragraph or the notes list dropped
        from the page."""
        r = _with(rep, notes=["a very particular note"],
                  totals=dict(rep.totals, calibration="scaled to chip X"))
        page = r.to_html(images={})
        assert "calibration: scaled to chip X" in page
        assert "a very particular note" in page

    def test_the_page_names_the_chips_source_without_docs_references(self, rep):
        """report.py ``Report.to_html``: ``_source_for_users`` dropped from the TOML's source
        paragraph named a ``docs/`` file an installed package does not carry."""
        import html

        page = rep.to_html(images={})
        assert "docs/" in rep.chip.source
        shown = html.escape(f"source: {_source_for_users(rep.chip.source)}")
        assert f"<p>{shown}</p>" in page

    def test_a_total_that_is_a_dict_reads_as_one_line(self, rep):
        """report.py ``Report.to_html``: the joining of a dict total dropped wrote it as
        Python's dict repr."""
        page = _with(rep, totals=dict(rep.totals, x_by={"a": 1.5, "b": 2})).to_html(images={})
        assert "a: 1.5, b: 2" in page

    def test_no_fidelity_figure_when_no_layer_has_an_sqnr(self, rep, monkeypatch):
        """report.py ``Report.figures``: ``and sqnr_db.notna().any()`` dropped drew an empty
        fidelity figure for a trace column of NaN only."""
        import cimsim.report as report_module

        for name in ("plot_energy_per_layer", "plot_latency_per_layer",
                     "plot_area_by_component", "plot_fidelity_per_layer"):
            monkeypatch.setattr(report_module, name, lambda *a, **k: None)
        layers = rep.layers.assign(sqnr_db=[math.nan] * len(rep.layers))
        assert "fidelity_per_layer.png" not in _with(rep, layers=layers).figures()
        layers = rep.layers.assign(sqnr_db=[math.nan] * (len(rep.layers) - 1) + [20.0])
        assert "fidelity_per_layer.png" in _with(rep, layers=layers).figures()

    def test_a_digital_readout_labels_its_codes_sum(self, rep, monkeypatch):
        """report.py ``Report.figures``: ``readout="sum"`` for a digital ADC dropped labelled
        an adder tree's codes as an ADC's."""
        import cimsim.report as report_module

        seen = []
        monkeypatch.setattr(report_module, "plot_fidelity_per_layer",
                            lambda layers, readout: seen.append(readout))
        monkeypatch.setattr(report_module, "plot_energy_per_layer", lambda layers: None)
        monkeypatch.setattr(report_module, "plot_latency_per_layer", lambda layers: None)
        monkeypatch.setattr(report_module, "plot_area_by_component", lambda area: None)
        layers = rep.layers.assign(sqnr_db=[20.0] * len(rep.layers))
        chip = cimsim.load_chip("published/colonnade-jssc21")  # an adder tree, adc.kind = "digital"
        _with(rep, layers=layers, chip=chip).figures()
        _with(rep, layers=layers).figures()
        assert seen == ["sum", "ADC"]


# ---------------------------------------------------------------------------------------------
# the figures' choices
# ---------------------------------------------------------------------------------------------
def _layers(n: int) -> pd.DataFrame:
    return pd.DataFrame({"layer": [f"l{i}" for i in range(n)],
                         "energy_pj_per_inference": [1.0] * n,
                         "energy_adc_pj_per_inference": [1.0] * n,
                         "energy_cell_pj_per_inference": [0.0] * n})


class TestFigures:
    def test_a_per_layer_figure_is_at_most_sixteen_inches_wide(self):
        """report.py ``_layer_figure``: the ``min(..., MAX_LAYER_FIGURE_IN)`` cap dropped drew
        30 layers 30 in wide."""
        from cimsim.report import plot_energy_per_layer

        fig = plot_energy_per_layer(_layers(30))
        assert fig.get_size_inches()[0] == pytest.approx(16.0)

    def test_twenty_four_layer_names_are_slanted_twenty_five_upright(self):
        """report.py ``_layer_ticks``: ``n > 24`` as ``>=`` stood 24 names upright."""
        from cimsim.report import plot_latency_per_layer

        def rotation(n):
            frame = pd.DataFrame({"layer": [f"l{i}" for i in range(n)],
                                  "latency_ns_per_inference": [1.0] * n})
            ax = plot_latency_per_layer(frame).axes[0]
            return ax.get_xticklabels()[0].get_rotation()
        assert rotation(24) == pytest.approx(30.0)
        assert rotation(25) == pytest.approx(90.0)

    def test_a_component_without_energy_gets_no_legend_entry(self):
        """report.py ``plot_energy_per_layer``: the skip of an all-zero component dropped gave
        it a legend entry (and zero-height bars)."""
        from cimsim.report import plot_energy_per_layer

        ax = plot_energy_per_layer(_layers(2)).axes[0]
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["adc"]

    def test_an_exact_layer_beside_negative_sqnrs_is_drawn_at_one_db(self):
        """report.py ``plot_fidelity_per_layer``: ``and max > 0`` dropped put the exact
        layer's bar below zero (1.15 x the largest, negative, SQNR); the code axis's 0-105 %
        limits dropped."""
        from cimsim.report import plot_fidelity_per_layer

        frame = pd.DataFrame({"layer": ["a", "b"], "sqnr_db": [-5.0, math.inf],
                              "adc_code_use_pct": [50.0, 100.0]})
        fig = plot_fidelity_per_layer(frame)
        ax, ax2 = fig.axes
        assert [p.get_height() for p in ax.patches] == pytest.approx([-5.0, 1.0])
        assert ax2.get_ylim() == pytest.approx((0.0, 105.0))

    def test_energies_twenty_times_apart_keep_a_linear_axis(self):
        """report.py ``plot_pareto``: ``hi / lo > 20`` as ``>=`` put a 20x range on a log
        axis."""
        from cimsim.report import plot_pareto

        frame = pd.DataFrame({"accuracy": [0.5, 0.6], "energy_pj_per_inference": [1.0, 20.0],
                              "on_front": [True, True]})
        assert plot_pareto(frame).axes[0].get_xscale() == "linear"
        frame["energy_pj_per_inference"] = [1.0, 20.5]
        assert plot_pareto(frame).axes[0].get_xscale() == "log"

    def test_no_front_means_no_front_legend_entry(self):
        """report.py ``plot_pareto``: ``if front.any()`` as ``True`` gave a sweep without a
        front (no labels) a "Pareto front" legend entry for no points."""
        from cimsim.report import plot_pareto

        frame = pd.DataFrame({"accuracy": [0.5, 0.6], "energy_pj_per_inference": [1.0, 2.0],
                              "on_front": [False, False]})
        ax = plot_pareto(frame).axes[0]
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["points"]

    def test_a_point_not_ok_is_not_drawn(self):
        """report.py ``plot_pareto``: the ``status == "ok"`` filter dropped drew a failed
        point."""
        from cimsim.report import plot_pareto

        frame = pd.DataFrame({"accuracy": [0.5, 0.6], "energy_pj_per_inference": [1.0, 2.0],
                              "on_front": [True, False], "status": ["ok", "failed"]})
        ax = plot_pareto(frame).axes[0]
        assert [len(c.get_offsets()) for c in ax.collections][:1] == [1]
        assert [t.get_text() for t in ax.texts] == ["0"]

    def test_no_drawable_point_says_so(self):
        """report.py ``plot_pareto``: ``not drawn.any()`` as ``drawn.empty`` went on to draw
        axes for no point instead of saying there is none."""
        from cimsim.report import plot_pareto

        frame = pd.DataFrame({"accuracy": [math.nan], "energy_pj_per_inference": [1.0],
                              "on_front": [False]})
        ax = plot_pareto(frame).axes[0]
        assert [t.get_text() for t in ax.texts] == [
            "no point has both an accuracy and an energy per inference"]

    def test_an_infinite_time_front_is_named_by_its_value(self):
        """report.py ``_group_text``: ``math.isfinite(value)`` dropped sent an infinite time to
        ``duration_text``."""
        from cimsim.report import _group_text

        assert _group_text("time_s", math.inf) == "time_s = inf"

    def test_a_label_is_moved_inside_the_axes_top(self):
        """report.py ``_label_offset``: the top bound dropped let a point's label just below
        the axes' top run out of them (+3 pt); the fallback to the first offset inside the
        axes dropped (3 pt) put a crowded label outside them."""
        from cimsim.report import _label_offset

        # a point 5 px under the top: +3 pt runs out of the axes, -7 pt is the first inside
        assert _label_offset((0.0, 10.0), 95.0, [], 0.0, 100.0, 1.0) == -7.0
        # every offset inside overlaps a placed label: the first inside, not 3
        placed = [(0.0, 10.0, y) for y in range(0, 101)]
        assert _label_offset((0.0, 10.0), 95.0, placed, 0.0, 100.0, 1.0) == -7.0

    def test_time_axis_marks_within_half_again_of_the_times(self):
        """report.py ``plot_accuracy_time``: the marks' 1.5x margin dropped left "1 s" off
        times 1.2 s .. 70 s; ``len(shown) >= 2`` as ``>= 1`` set a lone mark as the only
        tick; a legend drawn for a single unnamed series."""
        from cimsim.report import plot_accuracy_time

        ax = plot_accuracy_time(pd.DataFrame({"time_s": [1.2, 70.0],
                                              "accuracy": [0.5, 0.4]})).axes[0]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1 s", "1 min"]
        assert ax.get_legend() is None
        ax = plot_accuracy_time(pd.DataFrame({"time_s": [1.2, 1.3],
                                              "accuracy": [0.5, 0.4]})).axes[0]
        assert "1 s" not in [t.get_text() for t in ax.get_xticklabels()]

    def test_training_scores_refuse_bools_and_take_a_twin_accuracy_alone(self):
        """report.py ``_training_scores``: ``isinstance(v, bool)`` dropped drew True as 100 %;
        ``or "twin_accuracy" in training`` dropped drew a twin's accuracy as a cosine."""
        from cimsim.report import _training_scores

        dots, label = _training_scores({"twin_accuracy": 0.5, "untrained_accuracy": True}, {})
        assert label == "accuracy (%)"
        assert [v for _, v in dots] == [None, None, 50.0, None]

    def test_training_panel_axis_of_scores_all_zero(self):
        """report.py ``plot_training``: the half-point minimum pad dropped, or the clamp to
        0..100 % dropped, changed the panel's axis for four scores at 0 %."""
        from cimsim.report import plot_training

        fig = plot_training({"loss": [1.0], "untrained_accuracy": 0.0, "twin_accuracy": 0.0},
                            {"float_accuracy": 0.0, "simulated_accuracy": 0.0})
        assert fig.axes[1].get_xlim() == pytest.approx((-0.1, 0.5))

    def test_batch_losses_have_one_legend_entry(self):
        """report.py ``plot_training``: ``None if labelled`` dropped gave every epoch's batches
        a "batch" entry."""
        from cimsim.report import plot_training

        fig = plot_training({"loss": [2.0, 1.0], "batch_loss": [[2.0, 2.0], [1.0, 1.0]]})
        assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
            "batch", "epoch mean"]


    def test_rows_without_an_sqnr_are_left_out_of_the_fidelity_figure(self):
        """report.py ``plot_fidelity_per_layer``: the ``sqnr_db.notna()`` filter dropped drew
        a bar (and a tick) for the reprogramming line, which has no SQNR."""
        from cimsim.report import plot_fidelity_per_layer

        frame = pd.DataFrame({"layer": ["a", "(reprogramming)"], "sqnr_db": [20.0, math.nan]})
        ax = plot_fidelity_per_layer(frame).axes[0]
        assert len(ax.patches) == 1

    def test_a_partly_measured_accuracy_is_drawn_not_the_cosine(self):
        """report.py ``plot_pareto`` / ``plot_accuracy_time``: ``acc.isna().all()`` as
        ``.any()`` drew the output cosine wherever one accuracy was missing."""
        from cimsim.report import plot_accuracy_time, plot_pareto

        frame = pd.DataFrame({"accuracy": [0.5, math.nan], "output_cosine": [0.9, 0.8],
                              "energy_pj_per_inference": [1.0, 2.0], "on_front": [True, False],
                              "time_s": [1.0, 60.0]})
        assert plot_pareto(frame).axes[0].get_ylabel() == "accuracy (%)"
        assert plot_accuracy_time(frame).axes[0].get_ylabel() == "accuracy (%)"

    def test_fronts_are_shaded_in_the_order_of_their_times(self):
        """report.py ``_front_groups``: the numeric sort of the values dropped shaded (and
        listed) the fronts in the frame's order, a later time lighter."""
        from cimsim.report import _front_groups

        frame = pd.DataFrame({"time_s": [86400.0, 3600.0]})
        labels = [label for _, _, label in _front_groups(frame, "time_s", pd.Series([True] * 2))]
        assert labels == ["Pareto front, t = 1 h", "Pareto front, t = 1 d"]

    def test_fronts_by_a_column_the_frame_lacks_are_one(self):
        """report.py ``_front_groups``: ``by not in frame`` dropped failed with a KeyError."""
        from cimsim.report import FRONT_COLOR, _front_groups

        frame = pd.DataFrame({"accuracy": [0.5]})
        groups = _front_groups(frame, "time_s", pd.Series([True]))
        assert [(c, label) for _, c, label in groups] == [(FRONT_COLOR, "Pareto front")]

    def test_energies_below_ten_nj_are_in_pj(self):
        """report.py ``plot_pareto``: the unit's ``hi >= 10 * f`` as ``hi >= f`` wrote
        1,000 .. 5,000 pJ as 1 .. 5 nJ (one-figure ticks)."""
        from cimsim.report import plot_pareto

        frame = pd.DataFrame({"accuracy": [0.5, 0.6], "energy_pj_per_inference": [1e3, 5e3],
                              "on_front": [True, True]})
        assert plot_pareto(frame).axes[0].get_xlabel() == "energy per inference (pJ)"
        frame["energy_pj_per_inference"] = [1e4, 5e4]
        assert plot_pareto(frame).axes[0].get_xlabel() == "energy per inference (nJ)"

    def test_training_panel_of_negative_cosines_reaches_below_zero(self):
        """report.py ``plot_training``: a cosine's axis floor -1 raised to 0 cut off the dots
        of cosines below 0."""
        from cimsim.report import plot_training

        fig = plot_training({"loss": [1.0], "untrained_cosine_to_float": -0.5,
                             "cosine_to_float": -0.5}, {"output_cosine": -0.5})
        lo, hi = fig.axes[1].get_xlim()
        assert lo < -0.5 < hi

# ---------------------------------------------------------------------------------------------
# a report of a deployed model
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ideal_sim():
    """A 4 -> 3 linear layer deployed on the lossless ``ideal`` chip, run on two inputs."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(0)
    model = nn.Linear(4, 3)
    with torch.no_grad():
        model.weight.copy_(torch.randn(3, 4, generator=gen))
        model.bias.zero_()
    x = torch.randn(6, 4, generator=gen)
    sim = cimsim.deploy(model, cimsim.load_chip("ideal"), x)
    sim(x[:2])
    return sim


class TestFromSim:
    def test_learned_ranges_are_noted(self, ideal_sim):
        """report.py ``Report.from_sim``: the ``ranges_learned`` note dropped hid that a
        trained model's clipping comes from training, not calibration."""
        from cimsim.report import LEARNED_RANGES_NOTE

        stub = types.SimpleNamespace(work=ideal_sim.work, fidelity=None, ranges_learned=True)
        assert LEARNED_RANGES_NOTE in Report.from_sim(stub).notes
        stub.ranges_learned = False
        assert LEARNED_RANGES_NOTE not in Report.from_sim(stub).notes

    def test_a_meaningless_chips_costs_have_that_basis(self, ideal_sim):
        """report.py ``_summary_rows``: the ``cost_caveat`` branch dropped gave the ideal
        chip's cost lines the basis "predicted (technology tables)"."""
        rows = {q: basis for q, _, basis in ideal_sim.report().summary_rows()}
        assert rows["energy per inference"] == "meaningless (see above)"
        assert rows["latency per inference"] == "meaningless (see above)"
        assert rows["area"] == "meaningless (see above)"

    def test_time_multiplexed_only_beyond_the_chips_arrays(self, ideal_sim):
        """report.py ``Report.from_work``: ``n_arrays_needed > n_arrays`` as ``>=`` called a
        model that fills the chip exactly time-multiplexed."""
        work = ideal_sim.work()
        n = work.chip.array.n_arrays
        exact = Report.from_work(dataclasses.replace(work, n_arrays_needed=n)).totals
        assert exact["time_multiplexed"] is False
        assert exact["n_arrays_used"] == exact["n_arrays_available"] == n

    def test_one_inference_is_divided_by_one(self, ideal_sim):
        """report.py ``_layer_rows``: ``max(work.n_inferences, 1)`` as ``max(..., 2)`` halved
        the per-inference counts of a single-inference run."""
        work = ideal_sim.work()
        assert work.n_inferences == 2
        two = Report.from_work(work).layers
        one = Report.from_work(dataclasses.replace(work, n_inferences=1)).layers
        assert one["n_macs_per_inference"].iloc[0] == 2 * two["n_macs_per_inference"].iloc[0]
        assert one["n_macs_per_inference"].iloc[0] == 2 * 4 * 3

    def test_the_time_after_programming_is_a_total(self, ideal_sim):
        """report.py ``Report.from_work``: the ``t_inference_s`` total dropped lost the time a
        ``simulate --time`` report was run at."""
        work = ideal_sim.work()
        assert "t_inference_s" not in Report.from_work(
            dataclasses.replace(work, t_s=None)).totals
        timed = Report.from_work(dataclasses.replace(work, t_s=3600.0)).totals
        assert timed["t_inference_s"] == 3600.0


# ---------------------------------------------------------------------------------------------
# bugs the round's neighbourhoods showed (fixed)
# ---------------------------------------------------------------------------------------------
class TestRecordedFigureNotANumber:
    def test_an_accuracy_that_is_not_a_number_is_refused_by_name(self, rep):
        """report.py ``set_accuracy`` (``float(value)`` in the range check): None raised
        ``TypeError: float() argument must be ... not 'NoneType'``."""
        with pytest.raises(ValueError, match="float_accuracy = None; allowed: a fraction"):
            _with(rep).set_accuracy(None, 0.5, 3)

    def test_a_cosine_that_is_not_a_number_is_refused_by_name(self, rep):
        """report.py ``set_output_fidelity``: ``"high"`` raised ``could not convert string to
        float: 'high'``, not naming ``cosine``."""
        with pytest.raises(ValueError, match="cosine = 'high'; allowed"):
            _with(rep).set_output_fidelity("high", 3)


class TestOneFrontOfWholeSecondsIsLabelledInUnits:
    def test_one_front_at_a_whole_number_of_seconds_is_labelled_in_units(self):
        """report.py ``_front_groups`` / ``_group_text``: a ``time_s`` column of integers
        (3600) labelled two fronts "t = 1 h", "t = 1 d" but one front "time_s = 3600"."""
        from cimsim.report import _front_groups

        frame = pd.DataFrame({"time_s": [3600, 3600]})
        groups = _front_groups(frame, "time_s", pd.Series([True, True]))
        assert [label for _, _, label in groups] == ["Pareto front, t = 1 h"]


class TestNotesThatAreText:
    def test_notes_that_are_a_string_are_refused_by_name(self, rep, tmp_path):
        """report.py ``_check_saved`` / ``_from_saved`` (``list(data.get("notes", []))``):
        ``"notes": "abc"`` loaded as the three notes 'a', 'b', 'c'."""
        folder = _saved(rep, tmp_path, lambda d: d.update(notes="abc"))
        with pytest.raises(CimsimError, match="'notes'"):
            Report.load(folder)

"""Tests from a third hand-made mutation round over ``cimsim/evaluate.py`` (accuracy, predict,
output_cosine, score_problem and their checks) and ``cimsim/cost/datasheet.py`` (the datasheet
on the standard full-array workload).

Each test kills a mutant that survived the earlier tests (tests/test_evaluate.py,
tests/test_mutants_levels_rng_eval.py, tests/test_mutants_evaluate_round2.py,
tests/cost/test_datasheet_breakdown.py, tests/test_mutants_twin_layers_datasheet_round2.py);
its docstring names the place and the change. The evaluation models are plain torch modules or
callables, nothing deployed; the datasheets are mostly of rram-22nm cut to one 16 x 16 array.
Expected values are worked out by hand or are structural facts, not the function's own
answer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.evaluate import accuracy, output_cosine, predict, score_problem


class _Fn(nn.Module):
    """A module around a function of the inputs, counting its calls and their batch sizes."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn
        self.sizes: list[int] = []

    def forward(self, x):
        self.sizes.append(len(x))
        return self.fn(x)


# --- predict / _predicted / _scores / _step ------------------------------------------------


def test_integer_scores_still_have_their_labels_range_checked() -> None:
    """evaluate._predicted: the integer-scores early return ``int(scores.shape[1])`` -> None
    (no class count: a label beyond an integer-scoring model's classes scored 0 % silently)."""
    model = _Fn(lambda x: x.long())
    with pytest.raises(ValueError, match=r"^accuracy: y: label 5 is out of range for the "
                                         r"model, which scores 2 classes \(labels 0\.\.1\)$"):
        accuracy(model, torch.eye(2), torch.tensor([0, 5]))
    assert accuracy(model, torch.eye(2), torch.tensor([0, 0])) == 0.5


def test_a_numpy_int8_batch_size_is_used_as_a_python_int() -> None:
    """evaluate._step: ``return int(batch_size)`` -> ``return batch_size``. A NumPy integer is
    an allowed batch size; kept as ``np.int8(100)``, the second batch's end ``100 + 100``
    overflowed int8 to -56 (the batch cut ``x[100:-56]``)."""
    x = torch.zeros(130, 2)
    x[::2, 1] = 1.0
    model = _Fn(lambda v: v)
    with np.errstate(over="raise"):
        pred = predict(model, x, batch_size=np.int8(100))
        assert output_cosine(model, model, x, batch_size=np.int8(100)) == 1.0
    assert pred.tolist() == [1, 0] * 65
    # predict's two batches, then output_cosine's, each run for the model and the reference
    assert model.sizes == [100, 30, 100, 100, 30, 30]


def test_a_dict_output_without_logits_is_named_with_its_size() -> None:
    """evaluate._scores: ``not hasattr(out, "argmax")`` -> ``isinstance(out, (tuple, list))``
    (a dict's missing ``argmax`` an AttributeError); the `` of {len(out)}`` of a dict
    dropped."""
    model = _Fn(lambda x: {"scores": x})
    with pytest.raises(ValueError, match=r"^the model returned a dict of 1, not a tensor of "
                                         r"scores or an output with \.logits"):
        predict(model, torch.eye(2))


# --- accuracy -----------------------------------------------------------------------------


def test_accuracy_of_one_wrongly_predicted_input_is_zero() -> None:
    """evaluate.accuracy: ``.sum()) / n`` -> ``... if n > 1 else 1.0`` (a set of one input
    scored right whatever it predicts)."""
    assert accuracy(nn.Identity(), torch.tensor([[1.0, 0.0]]), torch.tensor([1])) == 0.0
    assert accuracy(nn.Identity(), torch.tensor([[1.0, 0.0]]), torch.tensor([0])) == 1.0


def test_accuracy_without_y_refuses_a_dict_batch_without_labels() -> None:
    """evaluate._accuracy_of_batches: ``isinstance(batch, Mapping) and "labels" in batch`` ->
    ``isinstance(batch, Mapping)`` (a dict of inputs without labels: a bare KeyError)."""
    with pytest.raises(ValueError, match=r"every batch must be an \(inputs, labels\) pair or a "
                                         r"dict with 'labels'; got a dict of 1:"):
        accuracy(nn.Identity(), [{"x": torch.eye(2)}])


def test_accuracy_without_y_refuses_a_column_of_labels() -> None:
    """evaluate._accuracy_of_batches: ``labels.shape != pred.shape`` -> ``labels.numel() !=
    pred.numel()`` (labels of shape (2, 1) compared with 2 predictions broadcast to 2 x 2: an
    "accuracy" of 1.0 where one of the two is right)."""
    batch = (torch.eye(2), torch.tensor([[0], [0]]))
    with pytest.raises(ValueError, match=r"^accuracy: a batch of 2 predictions has labels of "
                                         r"shape \(2, 1\); allowed: one integer class per "
                                         r"input$"):
        accuracy(nn.Identity(), [batch])


def test_accuracy_without_y_refuses_inputs_that_are_not_iterable() -> None:
    """evaluate._accuracy_of_batches: ``or not hasattr(batches, "__iter__")`` dropped (a
    number passed without labels: tqdm's bare TypeError)."""
    with pytest.raises(ValueError, match=r"^accuracy: y is required with inputs of type int; "
                                         r"allowed without y: an iterable of \(inputs, "
                                         r"labels\) batches"):
        accuracy(nn.Identity(), 5)


# --- score_problem --------------------------------------------------------------------------


def test_score_problem_names_the_type_of_an_output_that_is_no_tensor() -> None:
    """evaluate.score_problem: ``got = ... else type(out).__name__`` -> ``f"shape {shape}"``
    (a list output said to have ``shape None``)."""
    problem = score_problem(lambda x: [x], torch.eye(2), torch.tensor([0, 1]))
    assert problem == ("with labels the model must output class scores of shape (batch, "
                       "classes); on 2 inputs it gives list")



def test_score_problem_runs_the_model_without_gradients() -> None:
    """evaluate.score_problem: ``with torch.no_grad():`` dropped (the model run with autograd
    on, building a graph, where accuracy scores it under no_grad)."""
    seen: list[bool] = []

    def model(x):
        seen.append(torch.is_grad_enabled())
        return x

    assert score_problem(model, torch.eye(3), torch.tensor([0, 1, 2])) is None
    assert seen == [False]
    assert torch.is_grad_enabled()


# --- output_cosine ------------------------------------------------------------------------


def test_output_cosine_compares_list_outputs() -> None:
    """evaluate._leaves: ``isinstance(out, (tuple, list))`` -> ``tuple`` (a list of tensors,
    a feature pyramid's output, said to hold no tensor). ``[x, x]`` against ``[x, -x]``: the
    dot product |x|^2 - |x|^2 = 0."""
    x = torch.arange(1.0, 7.0).reshape(3, 2)
    ref = _Fn(lambda v: [v, v])
    sim = _Fn(lambda v: [v, -v])
    assert output_cosine(ref, sim, x) == 0.0
    assert output_cosine(ref, ref, x) == 1.0



def test_output_cosine_warns_about_the_reference_in_training_mode() -> None:
    """evaluate.output_cosine: ``_warn_training_mode(reference)`` deleted (a float reference
    measured with its dropout on, unsaid)."""
    ref = nn.Sequential(nn.Dropout(0.0)).train()
    with pytest.warns(UserWarning, match=r"^Sequential is evaluated in training mode \(1 "
                                         r"dropout or BatchNorm module\(s\) act on it, e\.g\. "
                                         r"'0'\)"):
        assert output_cosine(ref, nn.Identity(), torch.ones(4, 3)) == 1.0



# --- datasheet: the workload ---------------------------------------------------------------


def _sheet_chip(**changes) -> cimsim.ChipConfig:
    """rram-22nm cut to one 16 x 16 array (2 outputs of 8 columns), as round 2's."""
    chip = cimsim.load_chip("rram-22nm")
    return chip.replace(array=chip.array.replace(n_rows=16, n_cols=16), **changes)


def test_the_workload_draws_from_its_seed() -> None:
    """datasheet.workload: ``np.random.default_rng(seed)`` -> ``default_rng(0)`` (every seed
    the same operands)."""
    from cimsim.cost.datasheet import workload

    x0, w0 = workload(_sheet_chip())
    x1, w1 = workload(_sheet_chip(), seed=1)
    assert x0.shape == x1.shape == (256, 16) and w0.shape == w1.shape == (2, 16)
    assert (x0 != x1).any() and (w0 != w1).any()


def test_the_workload_weights_reach_both_ends_of_the_range() -> None:
    """datasheet.workload: ``rng.integers(lo, hi + 1, ...)`` -> ``integers(lo, hi, ...)`` (the
    top weight never drawn). 2-b differential weights: -1, 0, 1, each of 128 draws over 1/3."""
    from cimsim.cost.datasheet import workload

    _, w = workload(_sheet_chip(weight_bits=2))
    assert sorted(set(w.ravel().tolist())) == [-1, 0, 1]


# --- datasheet: its arguments --------------------------------------------------------------


def test_the_unstated_inputs_of_a_chip_scope_sheet_name_the_tiles(tmp_path) -> None:
    """datasheet.datasheet: ``unstated_inputs(chip, scope=scope)`` -> ``unstated_inputs(chip)``
    (a whole-chip sheet not naming the tile counts it took from the defaults)."""
    from cimsim.config import unstated_inputs
    from cimsim.cost.datasheet import datasheet

    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\n[array]\nn_rows = 16\nn_cols = 16\n', encoding="utf-8")
    chip_scope = datasheet(path, scope="chip")["unstated"]
    macro = unstated_inputs(path)  # what a macro sheet names
    assert "array.n_tiles = 64" in chip_scope and "array.arrays_per_tile = 16" in chip_scope
    assert not any(u.startswith(("array.n_tiles", "array.arrays_per_tile")) for u in macro)
    assert "array.n_rows = 256" not in chip_scope and "tech.vdd_v = 0.8" in macro



def test_the_workload_is_run_at_seed_0() -> None:
    """datasheet.datasheet: ``api.matmul(x, w, chip, seed=0, ...)`` -> ``seed=1`` (the module
    docstring's "seed 0": the programmed cells' conductances, and so the cells' read energy,
    are drawn from it). The sheet's cell energy is that of the workload run at seed 0, and
    seed 1 would give another."""
    from cimsim import api
    from cimsim.arrays.program import program
    from cimsim.cost import estimate, layer_work
    from cimsim.cost.datasheet import datasheet, workload

    chip = _sheet_chip()
    x, w = workload(chip)
    cell = {}
    for seed in (0, 1):
        _, events = api.matmul(x, w, chip, seed=seed, calibration=x)
        rep = estimate([layer_work(events, program(w, chip))], chip)
        cell[seed] = rep.energy_by_component()["cell"]
    assert cell[0] != cell[1]
    assert datasheet(chip)["energy_pj_by_component"]["cell"] == cell[0]


def test_the_input_density_is_given_back_as_a_python_float() -> None:
    """datasheet.datasheet: ``"input_density": density`` -> ``input_density`` (a NumPy float32
    given back as it came: the ``--json`` sheet could not be written)."""
    import json

    from cimsim.cost.datasheet import datasheet

    sheet = datasheet(_sheet_chip(), input_density=np.float32(0.5))
    assert type(sheet["input_density"]) is float and json.dumps(sheet["input_density"]) == "0.5"



def test_shares_of_a_zero_total_are_zero() -> None:
    """datasheet._shares: ``... if total > 0 else 0.0`` -> ``else 1.0`` (its docstring: 0 where
    the total is 0; every entry 100 % of nothing summed to more than the whole)."""
    from cimsim.cost.datasheet import _shares

    assert _shares({"cell": 0.0, "adc": 0.0}) == {"cell": 0.0, "adc": 0.0}
    assert _shares({"cell": 1.0, "adc": 3.0}) == {"cell": 0.25, "adc": 0.75}



def test_calibrated_says_a_preset_moved_to_another_cost_model_has_no_factors() -> None:
    """datasheet._no_calibration: ``(node, cell, cost_model) == (...)`` -> ``(node, cell) ==
    (...)`` (a calibrated preset moved to the physical model told that its converter was
    the change, which it was not)."""
    import re

    from cimsim.cost.datasheet import datasheet

    why = ("jia-jssc20 is calibrated at its own node, cell and cost model only, which this "
           "copy moves (a new chip)")
    chip = cimsim.load_chip("jia-jssc20", overrides=["tech.cost_model=physical"])
    with pytest.warns(UserWarning, match=r"^datasheet: calibrated=True, but " + re.escape(why)
                      + r"; the figures are predicted$"):
        sheet = datasheet(chip, calibrated=True)
    assert sheet["basis_detail"].endswith(f" ({why})")
    assert sheet["basis"] == "predicted" and sheet["calibrated"] is False



# --- datasheet: the converter and the step --------------------------------------------------


def test_a_tables_chips_converter_is_priced_by_the_tables_at_the_tables_bits() -> None:
    """datasheet._converter: ``if chip.tech.cost_model is not CostModel.PHYSICAL: priced =
    "tables"`` dropped (a tables-model SAR said to be priced by the survey, and given its
    scatter); ``adc_survey.rate_factor(b, rate)`` -> ``rate_factor(bits, rate)`` (a 20-b
    converter's factor at 20 b, ~1075, not at the 16 b of the tables it is priced at, ~55)."""
    from cimsim.cost import adc_survey
    from cimsim.cost.datasheet import datasheet

    chip = _sheet_chip()
    sheet = datasheet(chip.replace(adc=chip.adc.replace(bits=20)))
    adc = sheet["adc"]
    assert adc["priced_by"] == "tables" and adc["bits"] == 20
    assert sheet["uncertainty"]["adc_scatter_factor"] is None
    assert sheet["uncertainty"]["adc_family"] is None
    assert adc["rate_factor"] == adc_survey.rate_factor(16, adc["sample_rate_hz"])
    assert adc["rate_factor"] != adc_survey.rate_factor(20, adc["sample_rate_hz"])




def test_the_conversions_term_is_conversions_times_their_time() -> None:
    """datasheet._step: ``"conversions_ns": n_mux * t_conv`` -> ``t_conv`` (one conversion's
    7 ns printed as the 4 conversions' 28 ns term of the 16 x 16 rram-22nm step)."""
    from cimsim.cost.datasheet import breakdown_lines, datasheet

    sheet = datasheet(_sheet_chip())
    step = sheet["step"]
    assert (step["conversions_per_adc"], step["t_conv_ns"]) == (4, 7.0)
    assert step["conversions_ns"] == 28.0 == step["terms"]["conversions"]
    (line,) = [t for t in breakdown_lines(sheet) if t.startswith("  conversions ")]
    assert line.split()[1:3] == ["28", "ns"]



def test_a_rate_of_exactly_one_mega_sample_takes_the_m_prefix() -> None:
    """datasheet._si: ``abs(value) >= scale`` -> ``value > scale`` (1 MS/s printed ``1e+03
    kS/s``; a negative value never prefixed)."""
    from cimsim.cost.datasheet import _si

    assert _si(1e6, "S/s") == "1 MS/s"
    assert _si(1e3, "S/s") == "1 kS/s"
    assert _si(-2.5e9, "W") == "-2.5 GW"
    assert _si(999.0, "S/s") == "999 S/s"



def test_a_digital_chips_step_line_is_its_clock() -> None:
    """datasheet.breakdown_lines: ``name = "clock" if "clock" in st["terms"] else
    "conversions"`` -> ``"conversions"`` (a digital macro's column sums per clock printed as
    conversions). A 16 x 16 SRAM macro at 100 MHz: 10-ns clock periods."""
    from cimsim.cost.datasheet import breakdown_lines, datasheet

    chip = cimsim.ChipConfig.from_dict(dict(
        name="adders", weight_bits=4, input_bits=1, weight_encoding="twos_complement",
        array=dict(n_rows=16, n_cols=16, cols_per_adc=1, n_tiles=1, arrays_per_tile=1),
        device=dict(cell="sram", bits_per_cell=1), dac=dict(bits=1),
        adc=dict(kind="digital", bits=6, range_policy="full_scale"),
        tech=dict(node_nm=65.0, t_read_ns=10.0, clock_mhz=100.0, cost_model="physical",
                  cell_kind="sram_6t")))
    sheet = datasheet(chip)
    assert "clock" in sheet["step"]["terms"] and sheet["step"]["t_conv_ns"] == 10.0
    (line,) = [t for t in breakdown_lines(sheet) if t.startswith(("  clock ", "  conversions "))]
    assert line.startswith("  clock ") and line.endswith(" ns: column sums x clock period)")


# --- datasheet: the validation table ---------------------------------------------------------


def test_a_class_of_exactly_three_rows_gets_a_span(tmp_path) -> None:
    """datasheet.validation_range: ``MIN_CLASS_ROWS = 3`` -> ``4``; ``len(ratios) >=
    MIN_CLASS_ROWS`` -> ``>`` (the documented fewest rows given no span). Published /
    predicted 1, 2, 4: NumPy's linear quantiles at positions 0.2, 1 and 1.8 of the sorted
    rows, 1 + 0.2 x 1, 2 and 2 + 0.8 x 2."""
    from cimsim.cost.datasheet import validation_range

    rows = tmp_path / "v.csv"
    rows.write_text("chip,point,metric,key,published,predicted,readout,window\n"
                    "a,p,TOPS/W,tops_per_w,1,1,analog,stated\n"
                    "b,p,1b-TOPS/W,tops_per_w_1b,2,1,analog,predicted\n"
                    "c,p,TOPS/W,tops_per_w,4,1,analog,stated\n", encoding="utf-8")
    r = validation_range({"readout": "analog", "window": "stated"}, rows)
    assert r["tops_per_w"]["n_rows"] == 3
    assert r["tops_per_w"]["published_over_predicted"] == pytest.approx((1.2, 2.0, 3.6),
                                                                       rel=1e-12)
    assert r["tops_per_mm2"]["n_rows"] == 0
    assert r["tops_per_mm2"]["published_over_predicted"] is None



def test_a_rows_path_that_cannot_be_read_is_no_rows(tmp_path) -> None:
    """datasheet.validation_rows: ``except OSError`` -> ``except FileNotFoundError`` (a path
    under a file, NotADirectoryError, escaped where a missing table gives no spread)."""
    from cimsim.cost.datasheet import validation_range, validation_spread

    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    path = tmp_path / "file.txt" / "rows.csv"
    assert validation_spread(path) is None
    assert validation_range({"readout": "analog", "window": "stated"}, path) is None


# --- real bugs -----------------------------------------------------------------------------


class TestInfiniteLabels:
    """evaluate._class_labels: ``t != torch.round(t)`` is False for +-inf, so an infinite
    float label passed as a "whole number"; ``_label_problem`` then called ``int(y.max())``
    and the user got ``OverflowError: cannot convert float infinity to integer``. Now the
    ValueError naming ``y`` that a label of 1.5 or NaN gets."""

    def test_accuracy_refuses_an_infinite_label_naming_y(self) -> None:
        with pytest.raises(ValueError, match=r"^accuracy: y "):
            accuracy(nn.Identity(), torch.eye(2), torch.tensor([0.0, float("inf")]))

    def test_accuracy_refuses_an_infinite_label_of_a_batch(self) -> None:
        with pytest.raises(ValueError, match=r"^accuracy: a batch's labels "):
            accuracy(nn.Identity(), [(torch.eye(2), torch.tensor([0.0, float("-inf")]))])

    def test_whole_float_labels_still_score(self) -> None:
        """The check refuses only what is not a class index: whole floats still score."""
        assert accuracy(nn.Identity(), torch.eye(2), torch.tensor([0.0, 1.0])) == 1.0

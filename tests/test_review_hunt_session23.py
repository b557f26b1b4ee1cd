"""Review hunt (session 23) of 5f8f03d..HEAD: ``cimsim train``'s training figure
(``Report.set_training`` / ``plot_training``), ``estimate``'s refusal of a re-pricing chip that
senses its cells otherwise, ``RangeStats``'s per-plane moment sums, and the train-checkpoint
message of the model loader. Each test fails on the code it was written against; its
docstring says what is wrong, what was observed and expected, and the suspected cause.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import cimsim
from cimsim.arrays.program import program, sensed_cells
from cimsim.config import ChipConfig
from cimsim.cost import estimate, layer_work
from cimsim.report import Report

# =============================================================================================
# estimate: the sensed-cells refusal (8dec9e2)
# =============================================================================================

def _digital(cell: str = "ideal", adc: str = "digital", **tech) -> ChipConfig:
    """A digital-CIM macro (2-b input slices) under the physical cost model."""
    return ChipConfig.from_dict({
        "name": "digital", "weight_bits": 4, "input_bits": 4,
        "device": {"cell": cell, "bits_per_cell": 1},
        "adc": {"kind": adc}, "dac": {"bits": 2},
        "array": {"n_rows": 64, "n_cols": 64, "cols_per_adc": 1, "n_tiles": 1,
                  "arrays_per_tile": 1},
        "tech": {"cost_model": "physical", **tech}})


def _work(chip: ChipConfig):
    rng = np.random.default_rng(0)
    x, w = rng.integers(0, 16, (8, 64)), rng.integers(-7, 8, (4, 64))
    _, ev = cimsim.matmul(x, w, chip, calibration=x)
    return [layer_work(ev, program(w, chip))]


@pytest.mark.parametrize("direction", ["unset_to_rram", "rram_to_unset"])
def test_estimate_refuses_a_cell_kind_set_on_one_chip_only_by_name(direction):
    """The very re-pricing the change refuses crashes with a KeyError when one chip leaves
    ``tech.cell_kind`` unset (its default, None).

    Repro: an ``ideal`` digital macro with no ``tech.cell_kind`` (not sensed) and the same
    with ``tech.cell_kind = 'rram_1t1r'`` (sensed: ``sensed_cells`` True); a run on one
    re-priced with the other.
    Observed: ``KeyError: 'cell_kind'`` out of ``estimate`` (both directions).
    Expected: the documented ``ValueError`` naming ``tech.cell_kind`` (docs/cost-model.md,
    estimate; cimsim/cost/__init__.py's docstring of ``chip``).

    Suspected cause: cimsim/cost/__init__.py:377, ``a["tech"][f] != b["tech"][f]`` indexes the
    ``to_dict()`` of each chip, which omits a field whose value is None (``cell_kind`` unset),
    so the key is missing; ``a["tech"].get(f)`` (as the loop below it does with ``.get``).
    """
    unset, rram = _digital(), _digital(cell_kind="rram_1t1r")
    assert sensed_cells(unset) != sensed_cells(rram)  # the premise: one sensed, one not
    ran, priced = (unset, rram) if direction == "unset_to_rram" else (rram, unset)
    with pytest.raises(ValueError, match=r"tech\.cell_kind"):
        estimate(_work(ran), priced)


@pytest.mark.parametrize("priced_kw", [dict(adc="sar"), dict(cell="sram")])
def test_estimate_names_another_adc_kind_or_cell_of_a_sensed_digital_run(priced_kw):
    """A regression of a refusal that worked before the change: a run on a digital RRAM
    macro re-priced with a chip of another ``adc.kind`` (or ``device.cell``) was a
    ValueError naming ``adc.kind`` (``device.cell``); now the new sensed-cells branch runs
    first (the two chips sense their cells otherwise) and fails on the missing key.

    Observed: ``KeyError: 'cell_kind'`` (neither chip states ``tech.cell_kind``).
    Expected: ``ValueError`` naming the field that differs (``adc.kind`` / ``device.cell``).

    Suspected cause: cimsim/cost/__init__.py:377 (``a["tech"]["cell_kind"]`` on a
    ``to_dict()`` without the key), reached whenever ``sensed_cells`` differs, also through
    fields outside ``tech``.
    """
    ran = _digital(cell="rram")
    priced = _digital(**{"cell": "rram", **priced_kw})
    field = "adc.kind" if "adc" in priced_kw else "device.cell"
    with pytest.raises(ValueError, match=field):
        estimate(_work(ran), priced)


def test_estimate_refusal_names_a_field_in_every_entry():
    """Where the cells are sensed on one chip and not the other through a field outside
    ``tech`` (here ``adc.kind``: digital vs SAR, both chips pricing an ideal cell as
    ``rram_1t1r``), the sensed-cells entry of the message names no field.

    Observed: "... differs from the one the work ran on ('digital') in  (a digital read-out
    that senses its cells on one chip and not on the other: ...), adc.kind; ..." (an entry
    that starts with a blank where the field should be).
    Expected: every entry names its field (STYLE.md: errors name the field); the
    sensed-cells entry left out (or naming ``adc.kind``) when no ``tech`` field differs.

    Suspected cause: cimsim/cost/__init__.py:376-379 appends the entry whenever
    ``sensed_cells`` differs, with ``fields`` empty when neither ``tech.cell_kind`` nor
    ``tech.cost_model`` differs (``sensed_cells`` also reads ``adc.kind`` and
    ``device.cell``).
    """
    ran = _digital(cell_kind="rram_1t1r")
    priced = _digital(adc="sar", cell_kind="rram_1t1r")
    with pytest.raises(ValueError) as info:
        estimate(_work(ran), priced)
    message = str(info.value)
    assert " in  (" not in message and "in (a digital" not in message, message


# =============================================================================================
# Report.set_training / plot_training (4e9bc06, 8fab5b5)
# =============================================================================================

@pytest.fixture(scope="module")
def report():
    """A small simulated model's report (no training recorded)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    x = torch.rand(8, 16)
    sim = cimsim.deploy(model, "rram-22nm", x, seed=0, progress=False)
    sim(x)
    return sim.report()


@pytest.mark.parametrize("loss", [[1.0, math.nan], [1.0, math.inf]], ids=["nan", "inf"])
def test_a_report_with_a_non_finite_training_loss_loads_back(report, loss,
                                                                          tmp_path):
    """``Report.set_training`` accepts a loss of NaN or infinity (``_numbers`` takes any
    float), ``save`` writes it (``json_safe``: NaN as ``null``, inf as ``"inf"``), and
    ``Report.load`` (so ``cimsim report DIR``) then refuses the report it wrote.

    Observed: ``CimsimError: .../report.json: not a report cimsim saved (ValueError:
    training['loss'] = [1.0, None]; allowed: a list of numbers ...)`` (``[1.0, 'inf']``).
    Expected: the saved report loads back (``_saved_training``'s docstring: "its numbers'
    ``null`` as NaN"), with the loss as set (or, if such a loss is not to be kept,
    ``set_training`` refusing it before a report that cannot be re-read is written).

    Suspected cause: cimsim/report.py:579, ``_saved_training`` maps ``null`` to NaN at the
    top level of ``training`` only (and ``"inf"`` not at all), while ``loss`` and
    ``batch_loss`` hold the numbers in lists; ``_checked_training`` (:562) then sees None /
    'inf' in them.
    """
    report.set_training({"method": "qat", "loss": loss, "batch_loss": [[1.0], loss]})
    report.save(tmp_path)
    back = Report.load(tmp_path)
    assert back.training["loss"][0] == 1.0
    assert not math.isfinite(back.training["loss"][1])


def test_a_null_training_method_rerenders_the_same(report, tmp_path):
    """A saved report re-rendered (``cimsim report DIR --out DIR2``) is to write the same
    files; with ``training['method'] = None`` it does not.

    Observed: the summary's training row reads "None, 2 epochs, ..." in the saved page and
    "nan, 2 epochs, ..." in the re-rendered one (report.html and training.png's title
    differ).
    Expected: the same text (and files) after a load, as for ``summary``, whose ``null`` is
    read back as NaN only for numeric figures (``_nan_for_null``/``numeric_name``).

    Suspected cause: cimsim/report.py:579, ``_saved_training`` turns every top-level ``null``
    into NaN, names and notes included (a second, divergent copy of ``_nan_for_null``).
    """
    report.set_training({"method": None, "loss": [1.0, 0.5]})
    before = {q: v for q, v, _ in report.summary_rows()}
    report.save(tmp_path)
    after = {q: v for q, v, _ in Report.load(tmp_path).summary_rows()}
    assert after["training"] == before["training"]


def test_plot_training_legend_has_batch_when_the_first_epoch_has_none():
    """A run resumed from a checkpoint of an earlier version has no batch losses for its
    first epochs (``batch_loss`` ``[[], [], [...]]``, docs/training.md); its later epochs'
    batches are drawn, but the legend has no "batch" entry (seen in a real resumed
    ``cimsim train --epochs 3`` over a 2-epoch checkpoint without ``batch_loss``).

    Observed: legend ['epoch mean'].
    Expected: ['batch', 'epoch mean'] (as for a run with batches from its first epoch).

    Suspected cause: cimsim/report.py:1265, ``label="batch" if e == 0 else None`` labels the
    first epoch's line only, and that epoch drew none (``if per_batch`` skipped it).
    """
    from cimsim.report import plot_training

    fig = plot_training({"method": "qat", "loss": [1.0, 0.8, 0.5],
                         "batch_loss": [[], [], [0.6, 0.4]]})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "batch" in labels, labels


def test_plot_training_accuracy_axis_stays_near_zero_percent():
    """The before/after panel fits its axis to the four accuracies and caps it at 100 %
    ("no axis past 100 % or a cosine of 1"), but its lower end is capped at -100 %, so an
    accuracy of 0 % puts the axis well below 0 %.

    Observed: float 0 %, untrained 10 %, twin 0 %, trained 5 %: x limits (-2.5, 12.5) %.
    Expected: no axis below 0 % beyond the dot's margin (at most the 0.2·pad the upper end
    allows past 100 %: here -0.5 %).

    Suspected cause: cimsim/report.py:1297, ``max(lo - pad, -top)``: ``-top`` is the
    cosine's floor (-1) reused for accuracies (-100 %); an accuracy's floor is 0.
    """
    from cimsim.report import plot_training

    fig = plot_training({"loss": [1.0], "untrained_accuracy": 0.1, "twin_accuracy": 0.0},
                        {"float_accuracy": 0.0, "simulated_accuracy": 0.05})
    lo, _ = fig.axes[1].get_xlim()
    assert lo >= -0.2 * 2.5 - 1e-9, lo


def test_plot_training_all_zero_scores_give_a_readable_axis():
    """All four accuracies at 0 % (or cosines of 0) give an axis from -1e-6 to 1e-6 (its
    ticks "-1.0 ... 1.0" under a "1e-6" offset: a scale of millionths of a percent).

    Observed: x limits (-1e-06, 1e-06).
    Expected: a readable span, as for any other value (at 50 % the pad is 0.5 points).

    Suspected cause: cimsim/report.py:1284, ``pad = max(0.25 * (hi - lo), 0.01 *
    max(abs(hi), 1e-9), 1e-6)``: the relative pad vanishes at 0, leaving the 1e-6 floor.
    """
    from cimsim.report import plot_training

    fig = plot_training({"loss": [1.0], "untrained_accuracy": 0.0, "twin_accuracy": 0.0},
                        {"float_accuracy": 0.0, "simulated_accuracy": 0.0})
    lo, hi = fig.axes[1].get_xlim()
    assert hi - lo >= 0.1, (lo, hi)


# =============================================================================================
# RangeStats (78b1c19)
# =============================================================================================

def _run_isolated(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter: an out-of-bounds write in a compiled kernel may abort
    the process."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)


def _refused_isolated(construct: str, add: str, name: str) -> None:
    """``s = construct`` then ``add`` in a fresh interpreter refused with a ValueError that
    names ``name``, the process intact (an out-of-bounds write of a compiled kernel could
    abort it)."""
    out = _run_isolated(f"""
        import numpy as np
        from cimsim.adc.linear import RangeStats
        try:
            s = {construct}
            {add}
        except ValueError as exc:
            print("refused:", exc)
        else:
            print("accepted, s1 =", s.s1.tolist())
    """)
    assert out.returncode == 0 and "refused:" in out.stdout and name in out.stdout, (
        out.returncode, out.stdout, out.stderr[-300:])


def test_range_stats_refuses_a_negative_index():
    """``RangeStats.add`` (public: ``cimsim.adc.RangeStats``) with ``n_vectors`` set maps
    each row to its stream ``index // n_vectors`` and hands that to the Numba kernel
    unchecked: a negative place gives a negative stream, which the kernel wraps or writes
    outside the sums' array. Before 78b1c19 such an index only chose the kept samples.

    Observed: places -40000 and -80000 (n_vectors 4): s1 stays 0 (the 10 added lost) and the
    interpreter then crashes (SIGSEGV, or "free(): invalid next size (fast)" and SIGABRT):
    heap memory overwritten.
    Expected: a ValueError naming ``index`` (places are >= 0), and no memory written
    outside the arrays.

    Suspected cause: cimsim/adc/linear.py:164-170, ``stream = index // n_vectors`` only grown
    for ``stream.max()``; nothing checks ``stream.min() >= 0`` before
    ``accumulate_moments`` (compiled without bounds checks).
    """
    _refused_isolated("RangeStats(1, 3, False, n_vectors=4)",
                      "s.add(0, np.full((2, 3), 5.0), index=np.array([-40000, -80000]))",
                      "index")


def test_range_stats_refuses_a_non_positive_n_vectors():
    """``n_vectors`` is not checked: ``RangeStats(..., n_vectors=-1)`` puts row r in stream
    -r, so the kernel wraps the first row onto the only stream and writes the others out of
    bounds.

    Observed: three rows of 2.0 added, ``s1`` = 4.0 (6.0 added), then the interpreter
    aborts ("corrupted size vs. prev_size", SIGABRT).
    Expected: a ValueError naming ``n_vectors`` (allowed: a positive int, or None), as
    config values are checked (STYLE.md §3, §4 "a public wrapper checks").

    Suspected cause: cimsim/adc/linear.py:143 stores ``n_vectors`` as given; :164 divides by
    it.
    """
    _refused_isolated("RangeStats(1, 3, False, n_vectors=-1)",
                      "s.add(0, np.full((3, 3), 2.0))", "n_vectors")


# =============================================================================================
# The loader's train-checkpoint message (87abae9)
# =============================================================================================

def test_another_tools_checkpoint_is_not_called_a_cimsim_train_checkpoint(tmp_path):
    """Any weights-only pickle of a dict holding the keys epoch, model, optimizer, loss and
    run is taken for a ``cimsim train`` checkpoint, and the user is told to rerun
    ``cimsim train`` on it.

    Repro: ``torch.save({"epoch": 3, "model": {...}, "optimizer": {}, "loss": 0.5,
    "run": "wandb-1x2y"}, "ckpt.pt")``; ``load_model("ckpt.pt")``.
    Observed: "ckpt.pt: a `cimsim train` checkpoint (the state of a training run, not a
    model); `cimsim train` simulates the model it trained: run the same train command
    again with --sweep ...".
    Expected: the message for a file that is no model of cimsim's ("not a TorchScript or
    torch.export (.pt2) archive ...", or the state_dict one); a ``cimsim train`` checkpoint
    has a ``run`` mapping of its run identity (model, chip, method, ...) and a list ``loss``.

    Suspected cause: cimsim/mapping/loaders.py:511, ``_is_train_checkpoint`` checks the key
    names only (the same set, a second copy, as cli.py's ``_read_checkpoint``).
    """
    from cimsim.mapping.loaders import LoadError, load_model

    p = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "model": {"w": torch.zeros(2)}, "optimizer": {}, "loss": 0.5,
                "run": "wandb-1x2y"}, p)
    with pytest.raises(LoadError) as info:
        load_model(str(p))
    assert "cimsim train" not in str(info.value), str(info.value)

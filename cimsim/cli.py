"""The ``cimsim`` command: argparse only; every command calls the public API and writes files.

    cimsim demo [--out DIR] [--chip NAME]        the digits CNN on a chip, report written
    cimsim simulate --model M --data D --chip C --out DIR              (--model demo: no files)
    cimsim sweep --model M --data D --chip C --adc-bits 3-8 --out DIR   (--model demo: no files)
    cimsim train --model M --chip C --epochs E --out DIR
                 --method qat|distill|pim-qat|columnquant|raoq|bskmq|qat+a-shift+...
    cimsim presets                               the bundled chips
    cimsim report DIR                            re-render a saved report (or sweep)
    cimsim --version

Errors a user can fix (a missing file, a bad chip, a wrong format) print one line on stderr
and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
import tomllib
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._atomic import exclusive_lock, write_bytes, write_text
from ._version import __version__
from .errors import CapacityError, CimsimError, ConfigError
from .evaluate import accuracy, output_cosine, score_problem

if TYPE_CHECKING:  # torch is imported by the commands that need it, not by --help
    import torch
    from torch import nn

log = logging.getLogger("cimsim")

DEFAULT_DEMO_CHIP = "rram-22nm"


def _layer_table(report) -> str:
    cols = ["layer", "kind", "n_inputs", "n_outputs", "n_arrays", "cell_utilization_pct",
            "n_conversions_per_inference", "adc_bits"]
    extra = [c for c in ("energy_pj_per_inference", "latency_ns_per_inference", "adc_clip_pct",
                         "sqnr_db") if c in report.layers]
    frame = report.layers[cols + extra].rename(columns={
        "n_inputs": "K", "n_outputs": "N", "n_arrays": "arrays",
        "cell_utilization_pct": "util_%", "n_conversions_per_inference": "conversions/inf",
        "adc_bits": "adc_bits", "energy_pj_per_inference": "energy_pJ/inf",
        "latency_ns_per_inference": "latency_ns/inf", "adc_clip_pct": "clip_%",
        "sqnr_db": "sqnr_dB",
    })
    # na_rep: the (reprogramming) line has no clipping or fidelity, which is not a NaN result
    table = frame.to_string(index=False, float_format=lambda v: f"{v:,.1f}", na_rep="-")
    if "sqnr_db" in report.layers:
        table += ("\nsqnr_dB: each layer's output against the float layer fed the same input, "
                  f"over the first {TRACE_INPUTS} evaluated inputs at most (SimModel.trace; "
                  "report.layers has the rest)")
    return table + "".join(f"\n{line}" for line in _notices(report))


def _notices(report) -> list[str]:
    """The lines that name layers losing accuracy (clipping converters, saturating inputs,
    low SQNR), as the summary prints them; :func:`_noted` keeps them in the report too."""
    lines = (_clipping_notice(report), _input_clipping_notice(report), _fidelity_notice(report),
             _leakage_notice(report))
    return [line.strip() for line in lines if line]


#: Share of the energy per inference that ADC leakage must exceed for the summary to say so.
LEAKAGE_NOTICE_SHARE = 0.5


def _leakage_notice(report) -> str:
    """A line when the converters' leakage is most of the energy with no power gating: the
    default policy leaves every occupied array's ADCs on for the whole inference, and on a
    deep model that was 89-97 % of the energy (ResNet-18, MobileNetV2 on rram-22nm) with only
    a generic note saying leakage is charged."""
    comp, total = report.components, report.totals.get("energy_pj_per_inference", 0.0)
    if "action" not in comp or not total or report.chip.tech.power_gating.value != "none":
        return ""
    share = float(comp.loc[comp["action"] == "leak", "energy_pj_per_inference"].sum()) / total
    if share <= LEAKAGE_NOTICE_SHARE:
        return ""
    return (f"\nADC leakage is {100 * share:.0f} % of the energy per inference: with "
            "tech.power_gating = 'none' every occupied array's converters stay on for the whole "
            "inference; --set tech.power_gating=layer gates them outside their layer's turn, as "
            "chips that gate idle macros do (docs/cost-model.md, Power gating)")


def _noted(report):
    """``report`` with :func:`_notices` among its notes, so report.html and report.json say
    what the terminal said (once: a re-rendered report keeps its notes)."""
    report.notes.extend(line for line in _notices(report) if line not in report.notes)
    return report


#: Inputs the fidelity trace of ``demo`` and ``simulate`` runs on (the first ones evaluated):
#: two extra forwards each, so a subsample keeps the run's time.
TRACE_INPUTS = 64


#: Share of conversions beyond the ADC's range above which the summary says so.
CLIP_NOTICE_PCT = 1.0


#: After training, clipping is the learned ranges' (a learned step trades clipping for
#: resolution): the advice about calibration data was wrong there.
_LEARNED_CLIPPING = ("the ranges are the prepared model's, learned in training, which trades "
                     "clipping for finer steps: the accuracy, not the share, says whether it "
                     "costs; train longer or on data like the run's if it does "
                     "(docs/training.md)")


def _learned(report) -> bool:
    from .report import LEARNED_RANGES_NOTE

    return LEARNED_RANGES_NOTE in getattr(report, "notes", ())


def _clipping_notice(report) -> str:
    """A line naming the layers whose ADCs clip more than :data:`CLIP_NOTICE_PCT` of their
    conversions: ranges narrower than what the run converts are an accuracy loss a user should
    see, not find in a CSV."""
    return _notice(report, "adc_clip_pct", "ADC clipping", "conversions",
                   _LEARNED_CLIPPING if _learned(report) else
                   "the calibrated ranges are narrower than what the run converts (noise, or "
                   "inputs unlike the calibration data): adc.calibration_margin = 0.1 or "
                   "adc.calibration_mode = 'simulated' widen them (docs/hardware-model.md §7)")


def _input_clipping_notice(report) -> str:
    """A line naming the layers whose input quantizers saturate more than
    :data:`CLIP_NOTICE_PCT` of their inputs: the run's activations beyond the ranges calibrated
    on the calibration data, an accuracy loss the ADC's clipping does not show."""
    return _notice(report, "input_clip_pct", "input clipping", "inputs",
                   _LEARNED_CLIPPING if _learned(report) else
                   "the run's activations exceed the input ranges set on the calibration data "
                   "(larger values, or negative ones to inputs calibrated as unsigned): "
                   "calibrate on data like the run's (quant.act_calibration = 'percentile' "
                   "clips by design; docs/hardware-model.md §8)")


#: Layer SQNR below which the summary names the layer (10 dB: an error a third of the signal's
#: amplitude; the demo's layers are at 17-20 dB).
SQNR_NOTICE_DB = 10.0

#: ADC code use below which a low-SQNR layer's range is called far wider than its signal.
CODE_USE_NOTICE_PCT = 25.0


def _fidelity_notice(report) -> str:
    """A line naming the layers whose SQNR against float is below :data:`SQNR_NOTICE_DB`, with
    the likely cause of each: a converter range far wider than the signal (few codes used: the
    default ``full_scale`` range spans the columns' worst case), else the chip's noise,
    variation or drift where it has any (named), else the converters' steps. A 2-dB layer in a
    table of numbers was easy to miss; a chip with no noise was told its noise was the cause."""
    from .config import ADCKind, error_sources

    if "sqnr_db" not in report.layers:
        return ""
    rows = report.layers[report.layers["sqnr_db"] < SQNR_NOTICE_DB]
    if rows.empty:
        return ""
    use = rows.get("adc_code_use_pct")  # (absent from reports saved before it existed)
    chip = report.chip
    digital = chip.adc.kind is ADCKind.DIGITAL  # an exact sum: no range to fit
    readout = "sum" if digital else "ADC"  # an adder tree's codes are its sums (as the plot)

    def shown(i: int) -> str:
        pct = math.nan if use is None else float(use.iloc[i])
        codes = "" if math.isnan(pct) else f", {pct:.0f} % of {readout} codes used"
        return f"{rows['layer'].iloc[i]} ({rows['sqnr_db'].iloc[i]:.1f} dB{codes})"

    names = ", ".join(shown(i) for i in range(len(rows)))
    policy = chip.adc.range_policy.value
    step = ("more adc.bits or fewer rows per conversion narrow the step "
            "(docs/hardware-model.md §7)")
    # per layer (a NaN code use is no evidence of a wide range): few codes used and clipping
    # too is a range that fits no signal of the run, not one too wide (a narrower one, the
    # advice given, would clip more)
    clip = rows.get("adc_clip_pct")
    kind = ["wide" if use is not None and not digital
            and float(use.iloc[i]) < CODE_USE_NOTICE_PCT else "rest" for i in range(len(rows))]
    kind = ["misfit" if k == "wide" and clip is not None and float(clip.iloc[i]) >
            CLIP_NOTICE_PCT else k for i, k in enumerate(kind)]
    if _learned(report):  # what sets those ranges is the training, not a calibration
        kind = ["learned" if k in ("wide", "misfit") else k for k in kind]
    sources = error_sources(chip)
    causes = []
    if "learned" in kind:
        causes.append(("learned", "their ADC ranges, the prepared model's learned ones, use few "
                       "codes: train longer, or at more adc.bits (docs/training.md)"))
    if "misfit" in kind:
        causes.append(("misfit", "their ADC ranges fit neither end of the run's signal (few "
                       "codes used, yet clipping): calibrated on too few inputs, or on inputs "
                       "unlike the run's; calibrate on more inputs like them"))
    if "wide" in kind:
        causes.append(("wide", "their ADC ranges are far wider than their signals (few codes used"
                       + (": adc.range_policy = 'full_scale' spans the columns' worst case), "
                          "adc.range_policy = 'calibrated' fits them to the signal"
                          if policy == "full_scale" else
                          f"; adc.range_policy = {policy!r}), a narrower range") + ", " + step))
    if "rest" in kind:
        causes.append(("rest", (
            "their outputs are set more by the chip's noise, variation or drift "
            f"({', '.join(sources)}) than by their signal (SimModel.trace() has each layer's "
            "errors; docs/hardware-model.md)") if sources else (
            "the chip's digital columns sum exactly, so their error is the model's quantization "
            f"to {chip.weight_bits}-b weights and {chip.input_bits}-b inputs: more bits, or "
            "train it for the chip (`cimsim train`, docs/training.md)") if digital else (
            "the chip has no noise, variation or drift, so their error is the converters' "
            "steps and clipping: " + ("adc.range_policy = 'calibrated' fits the range to the "
                                      "signal, " if policy == "full_scale" else "") + step)))
    advice = "; ".join(text if len(causes) == 1 else ", ".join(
        str(name) for name, k in zip(rows["layer"], kind, strict=True) if k == which)
        + f": {text}" for which, text in causes)
    if min(chip.weight_bits, chip.input_bits) <= 2 and not (digital and not sources):
        # a 1-b weight or input quantizes a float model's layers coarser than any converter:
        # the error is the model's quantization first (a binary-weight chip scored chance
        # with only the converter range named)
        advice = (f"at {chip.weight_bits}-b weights and {chip.input_bits}-b inputs the float "
                  "model's own quantization is most of the error: train it for the chip "
                  "(`cimsim train`, docs/training.md); besides, " + advice)
    return f"\nSQNR below {SQNR_NOTICE_DB:g} dB: {names}; {advice}"


def _notice(report, column: str, what: str, of: str, advice: str) -> str:
    """``what above 1 % of of: layer (x %), ...; advice`` for the layers whose ``column``
    (a percentage of ``report.layers``) exceeds :data:`CLIP_NOTICE_PCT`; "" for none."""
    if column not in report.layers:
        return ""
    rows = report.layers[report.layers[column] > CLIP_NOTICE_PCT]
    if rows.empty:
        return ""
    names = ", ".join(f"{layer} ({pct:.1f} %)" for layer, pct in zip(
        rows["layer"], rows[column], strict=True))
    return f"\n{what} above {CLIP_NOTICE_PCT:g} % of {of}: {names}; {advice}"


def cmd_demo(args: argparse.Namespace) -> int:
    import cimsim
    from cimsim.data import load_digits_split
    from cimsim.models import load_digits_cnn

    t0 = time.perf_counter()
    _check_out(args.out, _report_files())
    chip = _load_chip(args)
    model = load_digits_cnn()
    x_train, _, x_test, y_test = load_digits_split()
    if args.fast:
        x_test, y_test = x_test[:96], y_test[:96]
    n_params = sum(p.numel() for p in model.parameters())
    float_acc = accuracy(model, x_test, y_test, batch_size=None)
    sim = cimsim.deploy(model, chip, x_train[: args.calibration], seed=args.seed)
    sim_acc = accuracy(sim, x_test, y_test, batch_size=args.batch_size, progress=True,
                       desc="simulating")
    n = int(x_test.shape[0])
    sim.trace(x_test[:TRACE_INPUTS], progress=True)
    report = sim.report()
    report.set_accuracy(float_acc, sim_acc, n)
    print(f"cimsim {__version__} demo: digits CNN ({n_params:,} parameters) trained on "
          f"scikit-learn load_digits; {n} test images")
    print(f"chip: {chip.name} - {chip.description}")
    print(f"{'float accuracy':<24}{100 * float_acc:.2f} %")
    print(f"{'simulated accuracy':<24}{100 * sim_acc:.2f} %")
    for line in report.headline_lines():
        print(line)
    _print_layers(report)
    paths = _noted(report).save(args.out)
    print(f"\nwrote {len(paths)} files to {args.out}/ in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import cimsim
    from cimsim._inputs import input_rows
    from cimsim.mapping.loaders import load_data, load_model_for

    _check_data_given(args)
    # --time writes a table and a figure, and a report per time in its own folder
    _check_out(args.out, ("time.csv", "accuracy_time.png") if args.time is not None
               else _report_files())
    chip = _load_chip(args)
    # before the data and the model load: a mistyped --time is its own one line, at once
    times = None if args.time is None else _time_values("--time", args.time, chip)
    if args.model in BUILTIN_MODELS:
        # as sweep: the bundled model on the digits test split, its training images calibrate
        model, x_train, _, x_eval, y_eval = _builtin_data(args.model)
        x_cal = x_train[: args.calibration]
        if args.limit:
            x_eval, y_eval = x_eval[: args.limit], y_eval[: args.limit]
        used = (f"{x_eval.shape[0]} test inputs evaluated, {x_cal.shape[0]} training images "
                "calibrate")
        reused = False  # the test split is evaluated, the training images calibrate
    else:
        x, y = load_data(args.data, integers=True)
        if args.limit:
            x, y = input_rows(x, 0, args.limit), (None if y is None else y[: args.limit])
        model, x = load_model_for(args.model, x)  # integer inputs: token ids or images
        _check_scores(args.model, model, x, y)
        x_cal, x_eval, y_eval, used = _calibration_split(x, y, args.calibration)
        reused = x_eval is x
    if times:
        _warn_static_device(chip, times)
    print(f"cimsim {__version__}: {BUILTIN_MODELS.get(args.model, args.model)} on "
          f"{chip.name}; {used}")
    if args.model not in BUILTIN_MODELS:
        _warn_unseen_classes(y, args.calibration)
    sim = cimsim.deploy(model, chip, x_cal, seed=args.seed, exclude=args.exclude)
    if reused:  # after the deploy, so that an error stays the only line on stderr
        _warn_calibration_reused(args.calibration)
    if times is None:
        _evaluate_and_save(sim, model, x_eval, y_eval, args.out, args.batch_size)
    else:
        _simulate_times(sim, model, x_eval, y_eval, args.out, args.batch_size, times)
    _clear_stale_simulation(args.out, times, y_eval is not None)
    return 0


def _clear_stale_simulation(out: Path, times: list[tuple[str, float]] | None,
                            labels: bool) -> None:
    """After a ``simulate`` into ``out`` (once its files are written: a failed run leaves the
    earlier ones), remove what an earlier run there wrote and this one did not: the
    per-time folders and ``time.csv`` / ``accuracy_time.png`` after a plain run, the plain
    run's report and the other times' folders after a ``--time`` run (they passed for this
    run's; ``cimsim report`` re-rendered an old report.json). Only names cimsim writes."""
    from .report import Report

    keep = set() if times is None else {f"t_{label}" for label, _ in times}
    for folder in out.glob("t_*"):
        if folder.is_dir() and folder.name not in keep and (folder / "report.json").is_file():
            Report.clear(folder)
    if times is None:
        (out / "time.csv").unlink(missing_ok=True)
    else:
        Report.clear(out)  # the plain run's report at the top (time.csv keeps it non-empty)
    if times is None or not labels:
        (out / "accuracy_time.png").unlink(missing_ok=True)


def _time_values(flag: str, text: str, chip) -> list[tuple[str, float]]:
    """'1h,1d,1y' -> [(label, seconds)], each a valid inference time for ``chip``, each time
    once (``1h,3600`` ran the same time twice), its label a folder name (``1 h`` -> ``1h``)."""
    from .arrays.drift import check_time, parse_duration

    out: dict[float, str] = {}
    for part in text.split(","):
        try:
            t = check_time(parse_duration(part), chip, "t_inference_s")
        except ConfigError as exc:
            raise ConfigError(f"{flag}: {exc}") from None
        out.setdefault(t, "".join(part.split()))
    return [(label, t) for t, label in out.items()]


def _simulate_times(sim, model, x, y, out: Path, batch_size: int,
                    times: list[tuple[str, float]]) -> None:
    """``simulate --time``: the same programmed chip seen at every time in turn, one report
    folder per time (``out/t_<time>/``), then ``time.csv`` and ``accuracy_time.png``."""
    import pandas as pd

    from .report import _png, plot_accuracy_time

    rows, reports = [], []
    for label, t in times:
        # the same noise draws at every time (as the points of `sweep --time` each start
        # from deploy): the times differ by what the devices did, not by fresh draws
        sim.reset(noise=True)
        # after the reset the compensation's reads belong to this time: the reference read at
        # programming (t0) that deploy counts, and the one at t (one read if t is t0)
        t0 = sim.chip.device.drift_t0_s
        sim.set_time(t0)
        if t != t0:
            sim.set_time(t)
        print(f"\n== t = {label} ({t:g} s after programming) ==")
        report, score = _evaluate(sim, model, x, y, batch_size)
        reports.append((out / f"t_{label}", report))
        rows.append({"time": label, "time_s": t,
                     "accuracy" if y is not None else "output_cosine": score})
    # written once every time has run (seconds, where the times took minutes): a run stopped
    # before leaves the earlier run's files whole, not mixed with some of its times
    for folder, report in reports:
        _save_report(report, folder)
    frame = pd.DataFrame(rows)
    write_text(out / "time.csv", frame.to_csv(index=False))
    if y is not None:
        fig = plot_accuracy_time(frame, title=f"accuracy over time on {sim.chip.name}")
        write_bytes(out / "accuracy_time.png", _png(fig, dpi=120))
    print("\n" + frame.to_string(index=False))
    print(f"wrote time.csv{', accuracy_time.png' if y is not None else ''} to {out}/")


def _calibration_split(x, y, calibration: int):
    """``(x_cal, x_eval, y_eval, what)``: the first ``calibration`` inputs calibrate and the
    rest are evaluated (accuracy on inputs the calibration did not see); all of them when
    nothing would remain (``x_eval is x`` then). ``what`` says which, for the output."""
    from ._inputs import input_count, input_rows

    n_x = input_count(x)
    n_cal = min(calibration, n_x)
    if n_x > n_cal:
        return (input_rows(x, 0, n_cal), input_rows(x, n_cal), None if y is None else y[n_cal:],
                _split_note(n_x, n_cal))
    return x, x, y, _split_note(n_x, n_cal)


def _split_note(n_x: int, n_cal: int) -> str:
    """How ``n_x`` inputs were shared between calibration (the first ``n_cal``) and evaluation,
    in the words ``simulate`` and ``sweep`` print."""
    if n_x > n_cal:
        return f"{n_x} inputs: the first {n_cal} calibrate, {n_x - n_cal} evaluated"
    return (f"{n_x} inputs, all used to calibrate and to evaluate (none left over: the "
            "accuracy is measured on the calibration inputs)")


def _warn_unseen_classes(y: Any, n_cal: int) -> None:
    """Warn when the evaluated inputs' classes are mostly missing from the calibration inputs
    (the first ``n_cal``): a file sorted by class calibrates every input and ADC range on one
    or two classes and evaluates the others on ranges they never set. Half or more of the
    classes missing: inputs drawn at random miss fewer while there are no more classes than
    calibration inputs (each missed with probability (1 - 1/m)^n <= 1/e), so the warning
    stays quiet for shuffled data."""
    import numpy as np

    if y is None or getattr(y, "ndim", 0) != 1 or len(y) <= n_cal:
        return
    labels = np.asarray(y)
    if labels.dtype.kind not in "iu":
        return
    seen, evaluated = set(np.unique(labels[:n_cal]).tolist()), np.unique(labels[n_cal:])
    missing = [c for c in evaluated.tolist() if c not in seen]
    if len(evaluated) > n_cal or 2 * len(missing) < len(evaluated):
        return
    print(f"cimsim: warning: the {n_cal} calibration inputs (the first of --data) hold "
          f"{len(seen)} class(es), the evaluated ones {len(evaluated)}: {len(missing)} are "
          "never calibrated on (data sorted by class?). The input and ADC ranges are set on "
          "the calibration inputs alone; shuffle the rows of --data", file=sys.stderr)


def _warn_calibration_reused(calibration: int) -> None:
    print(f"cimsim: warning: --calibration {calibration} leaves no input to evaluate; the "
          "accuracy is measured on the calibration inputs themselves (optimistic). Give more "
          "inputs or a smaller --calibration", file=sys.stderr)


def _print_layers(report) -> None:
    """The layer table, then the layers kept digital (excluded, or not mappable), whose
    energy and MACs the headline figures leave out."""
    print()
    print(_layer_table(report))
    if len(report.digital):
        # one reason once, with its layers (a ViT's twelve blocks repeated it twelve times)
        by_reason: dict[str, list[str]] = {}
        for r in report.digital.itertuples():
            by_reason.setdefault(str(r.reason), []).append(str(r.layer))
        print("\nkept digital (not in the figures above): " + "; ".join(
            f"{', '.join(layers)} ({reason})" for reason, layers in by_reason.items()))


def _evaluate_and_save(sim, model, x, y, out: Path, batch_size: int) -> float:
    """:func:`_evaluate` and the report's files written to ``out``; the score."""
    report, score = _evaluate(sim, model, x, y, batch_size)
    _save_report(report, out)
    return score


def _save_report(report, out: Path) -> None:
    paths = _noted(report).save(out)
    print(f"\nwrote {len(paths)} files to {out}/")


def _evaluate(sim, model, x, y, batch_size: int):
    """Run ``sim`` over ``x`` (accuracy against ``model`` when labels exist), print the totals
    and the layer table: what ``simulate`` and ``train`` end with. Returns the report (its
    files not written yet) and the simulated accuracy (or, without labels, the output
    cosine)."""
    if y is not None:
        float_acc = accuracy(model, x, y, batch_size=None)
        sim_acc = accuracy(sim, x, y, batch_size=batch_size, progress=True,
                           desc="simulating")
        print(f"{'float accuracy':<24}{100 * float_acc:.2f} %")
        print(f"{'simulated accuracy':<24}{100 * sim_acc:.2f} %")
    else:
        # no labels: how close the outputs stay to the float model's is the fidelity shown
        cosine = output_cosine(model, sim, x, batch_size=batch_size, progress=True,
                               desc="simulating")
        # what report.html's summary shows in place of the accuracies
        print(f"{'output cosine to float':<24}{cosine:.4f}")
    from ._inputs import input_count, input_rows

    sim.trace(input_rows(x, 0, TRACE_INPUTS), batch_size=batch_size, progress=True)
    report = sim.report()
    if y is not None:
        report.set_accuracy(float_acc, sim_acc, input_count(x))
    else:
        report.set_output_fidelity(cosine, input_count(x))
    for line in report.headline_lines():
        print(line)
    _print_layers(report)
    return report, float(sim_acc if y is not None else cosine)


def _report_files() -> list[str]:
    from .report import report_files

    return report_files()


def _check_out(out: Path, files: Iterable[str] = ()) -> None:
    """Refuse an ``--out`` that cannot become a folder before any work, not after the run: an
    existing file, a path below one, a link to nothing, a folder where one of the command's
    ``files`` goes (the run's results were lost at the write: a sweep died after its first
    point), or a place this process cannot write (a read-only folder or file system).
    Nothing is left behind here."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {str(out)!r} is a file, not a folder; name a folder (it is "
                          "created if missing)")
    if out.is_symlink() and not out.exists():
        raise ConfigError(f"--out: {str(out)!r} is a link to {os.readlink(out)!r}, which does "
                          "not exist; name a folder (it is created if missing)")
    for name in files:
        if (out / name).is_dir():
            raise ConfigError(f"--out: {str(out / name)!r} is a folder where the run writes "
                              f"its file {name!r}; remove or rename that folder")
    nearest = out if out.is_dir() else None
    for parent in out.parents:
        if nearest is None and parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"--out: {str(out)!r} lies below the file {str(parent)!r}")
            nearest = parent
    # a real write, not os.access: root passes access checks on read-only mounts and /proc
    try:
        fd, probe = tempfile.mkstemp(dir=nearest or Path.cwd(), prefix=".cimsim-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        below = "" if nearest == out else f", so {str(out)!r} cannot be made there"
        raise ConfigError(f"--out: cannot write in {str(nearest or Path.cwd())!r} "
                          f"({exc.strerror or exc}: a read-only folder or a file system that "
                          f"holds no files){below}; name a folder you can write to") from None


def _check_scores(spec: str, model: nn.Module, x: Any, y: torch.Tensor | None) -> None:
    """With labels, the model must score classes: output ``(batch, n_classes)``, one row per
    input (or an output object whose ``logits`` are, a HuggingFace ``ModelOutput``); a model
    that outputs anything else is refused before the simulation, not after."""
    if y is None:
        return
    problem = score_problem(model, x, y)
    if problem is not None:
        raise ConfigError(f"--model {spec} with the labels of --data: {problem}")


def cmd_presets(args: argparse.Namespace) -> int:
    import cimsim

    for name in cimsim.list_presets():
        chip = cimsim.load_chip(name)
        print(f"{name:<22}{chip.description}")
    print("\npublished macros described by their architecture (docs/validation.md; "
          "`cimsim datasheet published/NAME`):")
    for name in cimsim.list_presets(published=True):
        chip = cimsim.load_chip(name)
        print(f"{name:<30}{chip.description}")
    return 0


def cmd_datasheet(args: argparse.Namespace) -> int:
    import json

    from .config import unstated_inputs
    from .cost.datasheet import breakdown_lines, datasheet, likely_lines, unstated_lines

    d = datasheet(_load_chip(args) if args.overrides else args.chip, scope=args.scope,
                  input_density=args.input_density, calibrated=args.calibrated)
    if args.overrides:  # a field set on the command line counts as stated
        d["unstated"] = unstated_inputs(args.chip, overrides=args.overrides, scope=args.scope)
    if args.json:
        print(json.dumps(d, indent=2, default=str))
        return 0
    print(f"{d['chip']} ({d['scope']}, {d['cost_model']} cost model, {d['basis']}; "
          f"input density {d['input_density']:g}; {d['ops_convention']})")
    for key, label in (("tops", "TOPS"), ("tops_per_w", "TOPS/W"),
                       ("tops_per_mm2", "TOPS/mm2")):
        print(f"{label:<12}{d[key]:>12.4g}   1b-normalised {d[key + '_1b']:.4g}")
    print(f"{'area':<12}{d['area_mm2']:>12.4g} mm2")
    if d["caveat"]:
        print(f"caveat: {d['caveat']}")
    for line in likely_lines(d) + unstated_lines(d):
        print(line)
    if args.breakdown:
        print("\n".join(breakdown_lines(d)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import Report

    if not Path(args.dir).is_dir():
        raise FileNotFoundError(f"report folder {str(args.dir)!r} not found")
    out = Path(args.out) if args.out else Path(args.dir)
    _check_out(out)
    folder = Path(args.dir)
    if (folder / "sweep.json").is_file() and not (folder / "report.json").is_file():
        from .sweep.files import rerender  # a sweep folder (docs/sweep.md)

        paths = rerender(folder, out)
        print(f"re-rendered the sweep: {len(paths)} files in {out}/")
        return 0
    if (folder / "sweep.jsonl").is_file() and not (folder / "report.json").is_file():
        # a sweep stopped before its files (Ctrl-C): the points are kept, the table is not
        n = sum(1 for line in (folder / "sweep.jsonl").open("rb") if line.strip())
        raise ConfigError(f"{str(folder)!r} holds an unfinished sweep ({n} point(s) in "
                          "sweep.jsonl, no sweep.json): run the same `cimsim sweep` command "
                          "again; it runs only the points not yet there and writes the files")
    times = sorted(d.name for d in folder.glob("t_*") if (d / "report.json").is_file())
    if times and not (folder / "report.json").is_file():  # `simulate --time`: one per time
        raise ConfigError(f"{str(folder)!r} holds one report per time of `simulate --time`; "
                          f"allowed: one of its folders, e.g. cimsim report "
                          f"{folder / times[0]}")
    report = Report.load(args.dir)
    try:
        paths = report.save(out)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # a file that loads but lacks what a figure or table reads (an area row without its
        # area, one accuracy of the two): save renders everything first, so nothing written
        raise CimsimError(f"{folder / 'report.json'}: not a report cimsim saved "
                          f"({type(exc).__name__}: {exc})") from None
    print(f"re-rendered {len(paths)} files in {out}/")
    return 0


_RANGE_HELP = "is not a range like 3-8 or a list like 3,4,6"


def _int_values(flag: str, text: str) -> list[int]:
    """'3-8', '3,4,6', '2-4,8' -> ints in the order given, repeats dropped."""
    values: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            a, b = (int(lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            raise ConfigError(f"{flag}: '{text}' {_RANGE_HELP}") from None
        if a > b:
            raise ConfigError(f"{flag}: '{part}' is an empty range ({a} > {b}); "
                              f"write it low-high like {b}-{a}")
        values.extend(range(a, b + 1))
    return list(dict.fromkeys(values))


def _vary_values(text: str, flag: str = "--vary") -> tuple[str, list[Any]]:
    """``--vary`` 'input_bits=4,6,8', 'tech.vdd_v=0.7,0.9', 'tech.cost_model=tables,physical'
    -> (field, values): each value read as TOML (a bare word a string), 'a-b' a range of
    integers; the field is checked by the sweep (naming the axes it takes)."""
    key, eq, rest = text.partition("=")
    key = key.strip()
    if not eq or not key or not rest.strip():
        raise ConfigError(f"{flag} {text!r} is invalid; allowed: FIELD=VALUE,VALUE,... with "
                          "FIELD a chip file's TABLE.FIELD or top-level field, e.g. "
                          "input_bits=4,6,8, dac.bits=1,2 or tech.vdd_v=0.7,0.9")
    values: list[Any] = []
    for part in _top_level_parts(rest):
        if re.fullmatch(r"\d+-\d+", part):
            values.extend(_int_values(f"{flag} {key}", part))
            continue
        try:
            values.append(tomllib.loads(f"v = {part}")["v"])
        except tomllib.TOMLDecodeError:
            if not part or part[0] in "[{\"'":  # a list, table or string TOML cannot read
                what = "an empty value" if not part else f"{part!r} is not a TOML value"
                raise ConfigError(f"{flag} {text!r}: {what}; allowed: values separated by "
                                  "commas, e.g. input_bits=4,6,8 or "
                                  "device.drift_nu_mean=[0.05,0.06],[0.04,0.05]") from None
            values.append(part)  # a bare word: tech.cost_model=physical
    unique: list[Any] = []  # (a list value is no dict key)
    for v in values:
        if v not in unique:
            unique.append(v)
    return key, unique


def _top_level_parts(text: str) -> list[str]:
    """``text`` split at the commas outside brackets and quotes: '[1,2],[3,4]' -> two
    lists, 'a,b' -> two words."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return [*parts, text[start:].strip()]


def _float_values(flag: str, text: str) -> list[float]:
    """'0,0.5,1' -> floats."""
    try:
        return list(dict.fromkeys(float(p) for p in text.split(",")))
    except ValueError:
        raise ConfigError(f"{flag}: '{text}' is not a list of numbers like 0,0.5,1") from None


def _kind_values(flag: str, text: str) -> list[str]:
    """'sar,flash,ramp:bs_kmq' -> the kinds, each checked."""
    from .sweep import parse_adc_kind

    return _checked_values(flag, text, parse_adc_kind)


def _checked_values(flag: str, text: str, parse) -> list[str]:
    """'a,b' -> the names, each checked by ``parse`` (its ConfigError prefixed with ``flag``)."""
    names = [p.strip() for p in text.split(",")]
    for name in names:
        try:
            parse(name)
        except ConfigError as exc:
            raise ConfigError(f"{flag}: {exc}") from None
    return list(dict.fromkeys(names))


def _sweep_table(frame) -> str:
    from .sweep.table import axis_columns

    swept = [a for a in axis_columns(frame) if frame[a].astype(str).nunique() > 1] \
        or ["adc_bits"]
    table = frame[swept].copy()
    table["acc_%"] = 100 * frame["accuracy"]
    if frame["accuracy"].isna().all() and frame["output_cosine"].notna().any():
        table["cosine"] = frame["output_cosine"]  # no labels: fidelity to the float outputs
    table["energy_pJ/inf"] = frame["energy_pj_per_inference"]
    table["latency_ns/inf"] = frame["latency_ns_per_inference"]
    table["area_mm2"] = frame["area_mm2"]
    table["TOPS/W"] = frame["tops_per_w"]
    if {"cols_per_adc", "slice_readout"} & set(swept):  # what these axes trade
        table["ADC_mm2"] = frame["adc_area_mm2"]
        table["conv/inf"] = frame["n_conversions_per_inference"]
    table["arrays"] = frame["n_arrays"]
    table["front"] = frame["on_front"].map({True: "*", False: ""})
    if (frame["status"] != "ok").any():
        table["status"] = frame["status"]
    fmt = {"acc_%": "{:.2f}", "cosine": "{:.4f}", "energy_pJ/inf": "{:,.1f}",
           "latency_ns/inf": "{:,.1f}", "area_mm2": "{:.4f}", "TOPS/W": "{:.3f}",
           "ADC_mm2": "{:.4f}", "conv/inf": "{:,.0f}"}
    for col, f in ((c, f) for c, f in fmt.items() if c in table):
        table[col] = table[col].map(lambda v, f=f: "-" if v != v else f.format(v))
    return table.to_string(index=False)


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import dask_client, run_sweep

    grid: dict[str, list] = dict(_vary_values(v) for v in args.vary)
    if len(grid) < len(args.vary):
        raise ConfigError(f"--vary: a field given twice in {args.vary}; allowed: each field "
                          "once, with all its values (e.g. --vary input_bits=4,6,8)")
    from .sweep import AXES

    for axis in AXES:  # each axis by its flag (time_s after the chip loads: its durations)
        flag = _AXIS_FLAGS[axis]
        text = getattr(args, flag.removeprefix("--").replace("-", "_"))
        if text is not None and axis in grid:  # also given by --vary
            raise ConfigError(f"--vary {axis}=... and {flag} both give the axis {axis}; "
                              "allowed: one of them, with all its values")
        if text is not None and axis != "time_s":
            grid[axis] = _axis_values(axis, flag, text, None)
    if not grid and args.time is None:
        raise ConfigError("sweep: no axis given; allowed: one or more of --adc-bits, "
                          "--adc-kind, --bits-per-cell, --array-size, --cols-per-adc, "
                          "--slice-readout, --noise, --time, --vary FIELD=VALUES")
    from .sweep.files import OUTPUT_FILES

    _check_out(args.out, OUTPUT_FILES)
    chip = _load_chip(args)
    if args.time is not None:
        grid["time_s"] = [t for _, t in _time_values("--time", args.time, chip)]
    model: nn.Module
    x: Any  # a tensor, or a dict of the model's keyword inputs
    y: torch.Tensor | None
    calibration: int | torch.Tensor
    _check_data_given(args)
    if args.model in BUILTIN_MODELS:
        model, x_train, _, x, y = _builtin_data(args.model)
        calibration = x_train[: args.calibration]
    else:
        from .mapping.loaders import load_data, load_model_for

        x, y = load_data(args.data, integers=True)
        calibration = args.calibration
    name = BUILTIN_MODELS.get(args.model, str(args.model))
    from ._inputs import input_count, input_rows

    if args.limit:
        x, y = input_rows(x, 0, args.limit), (None if y is None else y[: args.limit])
    if args.model not in BUILTIN_MODELS:
        model, x = load_model_for(args.model, x)
        _check_scores(args.model, model, x, y)
    n_x = input_count(x)
    if not isinstance(calibration, int):
        used = f"{n_x} test inputs evaluated, {calibration.shape[0]} training images calibrate"
    else:
        used = _split_note(n_x, min(calibration, n_x))
        _warn_unseen_classes(y, calibration)
    if args.scheduler is not None and args.jobs != 1:
        raise ConfigError("--jobs: with --scheduler the cluster's workers run the points; "
                          "leave --jobs out")
    with (contextlib.nullcontext() if args.scheduler is None
          else dask_client(args.scheduler)) as client:
        frame = run_sweep(model, (x, y), chip, grid, args.out, calibration=calibration,
                          jobs=args.jobs, seed=args.seed, batch_size=args.batch_size,
                          model_name=name, client=client, exclude=args.exclude)
    if isinstance(calibration, int) and n_x <= calibration:
        _warn_calibration_reused(calibration)
    print(f"cimsim {__version__} sweep: {name} on {chip.name}; {len(frame)} "
          f"point{'s' * (len(frame) != 1)}; {used}")
    return _print_sweep(frame, args.out, chip, args)


def _print_sweep(frame, out: Path, chip, args: argparse.Namespace) -> int:
    """What ``sweep`` (and ``train --sweep-adc-bits``) prints of a finished sweep of ``chip``
    written to ``out``: the cost basis, what was resumed, the table, the front, the files; the
    exit status (1 where points were lost or none ran)."""
    from .report import cost_basis
    from .sweep import point_labels
    from .sweep.pareto import front_group

    # which figures are calibrated and which predicted (report.cost_basis says the sweep
    # prints it; it was only in sweep.json and the page), and the fields --set changed (two
    # sweeps at two supplies printed the same header)
    set_fields = (f"; chip fields set: {', '.join(args.overrides)}"
                  if getattr(args, "overrides", None) else "")
    print(f"cost figures: {frame.attrs.get('cost_figures') or cost_basis(chip)}{set_fields}")

    resumed = frame.attrs.get("n_points_resumed", 0)
    if resumed:
        print(f"resumed: {resumed} of {len(frame)} points were already in "
              f"{out}/sweep.jsonl and were not run again")
    other = frame.attrs.get("n_records_other", 0)
    if other:
        print(f"{out}/sweep.jsonl also holds {other} record(s) of other points or sweeps "
              "(other grid values, or another model, data, chip or seed): kept, not in this "
              "table")
    print(_sweep_table(frame))
    labels = point_labels(frame)
    front = [i for i, on in enumerate(frame["on_front"]) if on]
    if front:
        by = front_group(frame)  # a time sweep: one front per time after programming
        group = (list(frame[by]) if by is not None else [0] * len(frame))
        order = sorted(front, key=lambda i: (group[i], frame["energy_pj_per_inference"].iloc[i]))
        print("\nPareto front (max accuracy, min energy per inference"
              f"{', one per time after programming' if by else ''}), by energy: " + "; ".join(
                  f"{labels[i]} ({100 * frame['accuracy'].iloc[i]:.2f} %, "
                  f"{frame['energy_pj_per_inference'].iloc[i]:,.1f} pJ)" for i in order))
    elif frame["accuracy"].isna().all() and frame["output_cosine"].notna().any():
        print("\nno Pareto front: the data has no labels (the front is over accuracy and "
              "energy; each point's output cosine to the float model is in the table)")
    else:
        print("\nno Pareto front: no point has both an accuracy and an energy per inference")
    n_bad = int((frame["status"] != "ok").sum())
    if n_bad:
        print(f"{n_bad} point(s) failed or were skipped; see the status column")
    print(f"wrote sweep.csv, sweep.json, pareto.png, sweep.html (and sweep.jsonl) to "
          f"{out}/")
    lost = frame.attrs.get("n_points_lost", 0)
    if lost:  # the sweep is incomplete: say so, and not with status 0
        print(f"{lost} point(s) were lost with their workers (status missing); run the same "
              "command again to compute them", file=sys.stderr)
        return 1
    if len(frame) and n_bad == len(frame):  # nothing to compare: not a success
        print("no point of the sweep ran (every status above says why)", file=sys.stderr)
        return 1
    return 0


#: ``--model`` names of the bundled models (trained on the digits; their split has labels)
BUILTIN_MODELS = {"demo": "digits CNN (demo)", "resnet-digits": "ResNet-20 digits"}
CHECKPOINT = "checkpoint.pt"


def _builtin_model(name: str) -> nn.Module:
    from .models import load_digits_cnn, load_resnet_digits

    return load_digits_cnn() if name == "demo" else load_resnet_digits()


def _check_data_given(args: argparse.Namespace) -> None:
    """``--data`` with a file model, not with a bundled one (it brings the digits split)."""
    if args.model in BUILTIN_MODELS and args.data is not None:
        factory = "load_digits_cnn" if args.model == "demo" else "load_resnet_digits"
        raise ConfigError(f"--data: --model {args.model} brings its own data (the digits "
                          "train/test split); leave --data out, or, for the bundled model on "
                          f"your data, allowed: --model cimsim.models:{factory}")
    if args.model not in BUILTIN_MODELS and args.data is None:
        raise ConfigError(f"--data is required with --model {args.model} (unless --model "
                          f"is one of {', '.join(BUILTIN_MODELS)})")


def _builtin_data(name: str):
    """``(model, x_train, y_train, x_test, y_test)`` of a bundled model: the model and the
    digits train/test split it brings (``simulate`` and ``sweep`` calibrate on the first
    training images and evaluate the test split; ``train`` trains on the first)."""
    from .data import load_digits_split

    return (_builtin_model(name), *load_digits_split())


def _train_data(args: argparse.Namespace):
    """(model, x_train, y_train, x_eval, y_eval, description) for ``cimsim train``."""
    y_train: torch.Tensor | None
    y_eval: torch.Tensor | None
    _check_data_given(args)
    if args.model in BUILTIN_MODELS:
        model, x_train, y_train, x_eval, y_eval = _builtin_data(args.model)
        what = (f"the first {args.limit} of the digits train split / of its test split"
                if args.limit else "digits train split / test split")
    else:
        from .mapping.loaders import load_data, load_model_for

        x, y = load_data(args.data, integers=True)
        if isinstance(x, dict):
            raise ConfigError(f"--data: {args.data} holds keyword inputs ({', '.join(x)}); "
                              "cimsim train takes one input array 'x'. Train a model of keyword "
                              "inputs in Python: cimsim.train.prepare(model, chip, batch) and "
                              "distill(prepared, model, batch) take the dict (docs/training.md)")
        model, loaded = load_model_for(args.model, x)
        assert not isinstance(loaded, dict)  # a tensor in, a tensor out
        x = loaded
        n_train = (3 * x.shape[0]) // 4
        if n_train < 1 or n_train == x.shape[0]:
            raise ConfigError(f"--data: {x.shape[0]} inputs are too few to hold a quarter out")
        # a fixed split, so that a rerun resumes on the same inputs
        x_train, x_eval = x[:n_train], x[n_train:]
        y_train, y_eval = (None, None) if y is None else (y[:n_train], y[n_train:])
        _check_scores(args.model, model, x, y)
        # which rows of the file, after --limit (the first 1347 / last 450 named the pools
        # even when --limit used 300 of each)
        n_t, n_e = min(n_train, args.limit or n_train), min(x.shape[0] - n_train,
                                                            args.limit or x.shape[0])
        what = (f"inputs 0-{n_t - 1} of {args.data} train, {n_train}-{n_train + n_e - 1} "
                "evaluate")
    if args.limit:
        x_train, x_eval = x_train[:args.limit], x_eval[:args.limit]
        if y_train is not None and y_eval is not None:
            y_train, y_eval = y_train[:args.limit], y_eval[:args.limit]
    return model, x_train, y_train, x_eval, y_eval, what


def _check_train_args(args: argparse.Namespace) -> None:
    from .train.distill import LOSSES
    from .train.loop import check_lr

    recipe = _recipe(args)
    if args.loss not in LOSSES:
        raise ConfigError(f"--loss: '{args.loss}' is not a distillation loss; allowed: "
                          f"{', '.join(LOSSES)}")
    check_lr(args.lr, "--lr")  # the counts are checked by their argparse types
    from .train.loop import SCHEDULES

    if args.schedule not in SCHEDULES:
        raise ConfigError(f"--schedule: '{args.schedule}' is not a schedule; allowed: "
                          f"{', '.join(SCHEDULES)}")
    # named by their flags and before the model loads (prepare_* name the Python fields)
    if args.train_adc_bits > 24:
        raise ConfigError(f"--train-adc-bits: {args.train_adc_bits} is invalid; allowed: an "
                          "integer in 1..24 (left out: the chip's ADC bits)")
    if _sweeps_trained(args):
        _train_sweep_grid(args, None)  # before the epochs, not after
        if getattr(args, "bn_calibration", 0):
            raise ConfigError(f"{_sweep_flags(args)} with --bn-calibration: the sweep's points "
                              "deploy the trained model without re-estimating BatchNorm on "
                              "each; allowed: one of them")
    if args.bn_relative and not args.bn_calibration:  # else nothing would say it did nothing
        raise ConfigError("--bn-relative: calibrates nothing without --bn-calibration N "
                          "(N training inputs, N > 0)")
    if not (args.num_sigma > 0 and args.num_sigma != float("inf")):  # NaN fails the first
        raise ConfigError(f"--num-sigma: {args.num_sigma} is invalid; allowed: a finite "
                          "number > 0")
    from .train.twin import TwinOptions

    if args.devices not in TwinOptions.DEVICES:
        raise ConfigError(f"--devices: '{args.devices}' is not a device mode; allowed: "
                          f"{', '.join(TwinOptions.DEVICES)}")
    from .train.columnquant import DECOMPOSITIONS

    dec = getattr(args, "weight_decomposition", None)
    if dec is not None and dec not in DECOMPOSITIONS:
        raise ConfigError(f"--weight-decomposition: {dec!r} is not a decomposition; allowed: "
                          f"{', '.join(DECOMPOSITIONS)}")
    _refuse_other_methods_flags(args, recipe.base)  # after each value's own check


_METHOD_FLAGS = {
    "distill": ("loss",),
    "pim-qat": ("forward_rescale", "backward_rescale", "train_adc_bits", "bn_calibration",
                "bn_relative"),
    "columnquant": ("weight_scale", "psum_scale", "psum_centre", "num_sigma", "scale_init",
                    "weight_decomposition"),
}
"""``cimsim train``'s flags that only one base method reads (``--loss``: the distillation
loss; the pim-qat and columnquant argument groups)."""


def _refuse_other_methods_flags(args: argparse.Namespace, base: str) -> None:
    """A flag of another method than ``base`` on the command line would be ignored: refused
    (as ``--option`` is for a part the method lacks), naming the flag and its method. Given
    at all, not only off its default (``--loss mse`` without distill trained as if absent):
    the command line :func:`main` parsed (``args.argv``)."""
    given = _given_dests(args.argv)
    for method, dests in _METHOD_FLAGS.items():
        if method == base:
            continue
        for dest in dests:
            if dest in given:
                flag = "--no-" + dest.replace("_", "-") if dest.endswith("_rescale") \
                    else "--" + dest.replace("_", "-")
                raise ConfigError(f"{flag}: read by --method {method} only, here --method "
                                  f"{args.method} (it would be ignored); allowed: leave it "
                                  f"out, or --method {method}")


def _given_dests(argv: list[str]) -> set[str]:
    """The options a command line gives (abbreviated or not, at any value): ``argv`` parsed
    with every default of every command suppressed."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for sub in commands.choices.values():
        for action in sub._actions:
            action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def _recipe(args: argparse.Namespace):
    """``--method`` and ``--option KEY=VALUE`` as a :class:`cimsim.train.methods.Recipe`."""
    from .train.methods import parse_method

    options: dict[str, str] = {}
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--option {item!r}: allowed: KEY=VALUE")
        if key.strip() in options:  # the last one was kept, silently (and a resume compared
            # the raw strings, so two orders of one key were two runs)
            raise ConfigError(f"--option {key.strip()} is given twice ({options[key.strip()]!r} "
                              f"and {value.strip()!r}); allowed: one value per key")
        options[key.strip()] = value.strip()
    return parse_method(args.method, options)


def _run_identity(args: argparse.Namespace) -> dict[str, str]:
    """What a checkpoint must agree on to be resumed (``--epochs`` may grow, but not under a
    cosine schedule: its decay was planned over them)."""
    keys: tuple[str, ...] = (
        "model", "data", "chip", "method", "option", "loss", "lr", "batch_size", "seed",
        "calibration", "limit", "devices", "forward_rescale", "backward_rescale",
        "train_adc_bits", "weight_scale", "psum_scale", "psum_centre", "num_sigma",
        "scale_init", "weight_decomposition", "exclude", "overrides", "time", "schedule")
    keys += ("epochs",) * (getattr(args, "schedule", None) == "cosine")
    run = {k: str(getattr(args, k, None)) for k in keys}
    # one run however its method's parts and its options are ordered ('lora+qat' was another
    # run than 'qat+lora'): the base, then the parts in PARTS order; the options sorted
    run["method"] = _canonical_method(str(args.method))
    if getattr(args, "option", None):
        run["option"] = str(sorted(args.option))
    return run


def _canonical_method(method: str) -> str:
    """``--method`` with its base first and its parts in ``PARTS`` order (as written where a
    name is not one: parse_method has refused it by then)."""
    from .train.methods import BASES, PARTS

    names = [n.strip() for n in method.split("+")]
    if not all(n in BASES or n in PARTS for n in names):
        return method
    return "+".join(sorted(names, key=lambda n: (n not in BASES, PARTS.index(n)
                                                 if n in PARTS else 0)))


#: A run-identity key's value in a checkpoint written before the key existed.
_IDENTITY_BEFORE = {"overrides": "[]", "schedule": "constant"}
#: Run-identity keys a checkpoint written before them lacks, and is resumed without.
_IDENTITY_ADDED = ("chip_config", "data_content")


def _read_checkpoint(path: Path, run: dict[str, str]) -> dict | None:
    import torch

    from .mapping.loaders import is_train_checkpoint

    if not path.is_file():
        return None
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise ConfigError(f"--out: {path} is not a readable checkpoint ({type(exc).__name__}); "
                          "remove it to start over") from None
    if not is_train_checkpoint(state):
        raise ConfigError(f"--out: {path} is not a cimsim train checkpoint; remove it or use "
                          "another --out")
    for key, value in run.items():
        if key in _IDENTITY_ADDED and key not in state["run"]:
            continue  # written before the key existed: its names were checked
        # (a checkpoint written before --set or --schedule existed set nothing / kept the rate)
        there = state["run"].get(key, _IDENTITY_BEFORE.get(key))
        if there != value:
            flag = "set" if key == "overrides" else key.replace("_", "-")
            what = {"chip_config": "the chip's fields differ (an edited chip file?)",
                    "data_content": "the data differ (an edited --data file?)"}.get(
                key, f"--{flag} {there} there, {value} now")
            raise ConfigError(f"--out: {path} belongs to another run ({what}); use another "
                              "--out or remove the file")
    return state


def _write_checkpoint(path: Path, state: dict) -> None:
    import io

    import torch

    # a kill during the write leaves the previous checkpoint whole
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes(path, buf.getvalue())


def cmd_train(args: argparse.Namespace) -> int:
    import contextlib
    import json

    import torch

    from .train import prepare
    from .train.distill import distillation_loss, output_cosine
    from .train.loop import cross_entropy_of, lr_schedule, train_epoch
    from .train.lora import merge_lora
    from .train.raoq import weight_stats

    _check_train_args(args)
    _check_out(args.out)
    for name in (CHECKPOINT, "training.json"):  # read as 'no checkpoint', failed after epoch 1
        if (args.out / name).exists() and not (args.out / name).is_file():
            raise ConfigError(f"--out: {args.out / name} is a folder where train writes a "
                              "file; allowed: another --out, or remove the folder")
    if _sweeps_trained(args):  # its folder, before the epochs
        from .sweep.files import OUTPUT_FILES

        _check_out(args.out / "sweep", OUTPUT_FILES)
    recipe = _recipe(args)
    chip = recipe.chip(_load_chip(args))
    if recipe.base == "pim-qat" and args.train_adc_bits:  # named by its flag, before the model
        from .train.pimqat import check_train_adc_bits

        check_train_adc_bits(chip, args.train_adc_bits, "--train-adc-bits")
    # before the data and the model load: a mistyped --time is its own one line, at once
    twin = {"devices": args.devices, "t_inference_s": _train_time(args, chip)}
    model, x_train, y_train, x_eval, y_eval, what = _train_data(args)
    if recipe.base != "distill" and y_train is None:
        raise ConfigError(f"--method {args.method} needs labels and --data has none ('y'); use "
                          "--method distill")
    name = BUILTIN_MODELS.get(args.model, args.model)
    x_cal = x_train[:args.calibration]
    with warnings.catch_warnings():  # --time on a static device was said once, above
        warnings.filterwarnings("ignore", message=_STATIC_TIME_WARNING)
        if recipe.bskmq:
            prepared = _prepare_bskmq(args, recipe, chip, model, x_cal, twin)
        elif recipe.base in ("pim-qat", "columnquant"):
            prepared = _prepare_for(args, recipe.base, model, chip, x_cal, twin)
        else:
            prepared = prepare(model, chip, x_cal, seed=args.seed, exclude=args.exclude,
                               **twin)
    # where the run deploys (ColumnQuant's chip is its method's: prepared.chip), and the
    # sweep after it: checked now, not after the epochs
    deploy_chip = prepared.chip if recipe.base == "columnquant" else chip
    if _sweeps_trained(args):
        _check_sweep_bits(args, prepared, deploy_chip, recipe.base == "columnquant")
    optimizer = torch.optim.Adam(recipe.setup(prepared, args.lr, args.seed))
    scheduler = lr_schedule(optimizer, args.schedule, epochs=args.epochs,
                            n=int(x_train.shape[0]), batch_size=args.batch_size)
    args.out.mkdir(parents=True, exist_ok=True)
    # one run at a time in an --out: a second one would resume the same checkpoint and
    # overwrite it and the reports beside the first
    with exclusive_lock(args.out / "train.lock", "training run",
                        "wait for it or use another --out"):
        ckpt_path = args.out / CHECKPOINT
        run = _run_identity(args)
        # the chip's and the data's contents, not only their names: an edited chip file resumed
        # the other chip's checkpoint (its ADC tables) without a word
        from .sweep.store import data_fingerprint

        run["chip_config"] = hashlib.sha256(json.dumps(chip.to_dict(), sort_keys=True,
                                                       default=repr).encode()).hexdigest()[:16]
        run["data_content"] = data_fingerprint(x_train, y_train)[:16]
        state = _read_checkpoint(ckpt_path, run)
        history: list[float] = []
        batch_history: list[list[float]] = []  # each epoch's batch losses: the loss curve
        start = 0
        print(f"cimsim {__version__} train: {name} on {chip.name}, method {args.method}; "
              f"{x_train.shape[0]} training / {x_eval.shape[0]} evaluation inputs ({what})")
        if state is not None:
            if int(state["epoch"]) > args.epochs:  # it resumed "after epoch 2 of 1"
                raise ConfigError(f"--epochs {args.epochs}: {ckpt_path} already holds "
                                  f"{int(state['epoch'])} epochs of this run; allowed: --epochs >= "
                                  f"{int(state['epoch'])}, or another --out")
            try:
                prepared.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
            except (RuntimeError, ValueError, KeyError) as exc:
                raise ConfigError(f"--out: {ckpt_path} belongs to another run (its state does not "
                                  f"fit this model and chip: {str(exc).splitlines()[0]}); use "
                                  "another --out or remove the file") from None
            if scheduler is not None:
                scheduler.load_state_dict(state["scheduler"])
            start, history = int(state["epoch"]), [float(v) for v in state["loss"]]
            # a checkpoint of an earlier version holds no batch losses: those epochs have none
            batch_history = [[float(v) for v in e] for e in state.get("batch_loss", [])]
            batch_history = [[] for _ in range(start - len(batch_history))] + batch_history
            print(f"resuming from {ckpt_path} after epoch {start} of {args.epochs}")
        # the model as it is, deployed on the chip: what training is to improve (a user had to
        # cut the held-out inputs into a file and run simulate to learn it); kept in the
        # checkpoint, so a resumed run does not deploy it again
        untrained = (state or {}).get("untrained")
        kept = " (from the checkpoint)" if untrained else ""
        untrained = untrained or _untrained_on_chip(model, chip, x_cal, x_eval, y_eval, args,
                                                    twin["t_inference_s"])
        print(f"{'untrained on the chip':<24}{_untrained_text(untrained)}{kept}")
        context = (distillation_loss(prepared, model, loss=args.loss) if recipe.base == "distill"
                   else contextlib.nullcontext(cross_entropy_of(prepared)))
        with context as base_loss:
            loss_fn = recipe.loss(prepared, base_loss)
            data = (x_train,) if recipe.base == "distill" else (x_train, y_train)
            for epoch in range(start, args.epochs):
                t0 = time.perf_counter()
                batch_history.append([])
                mean = train_epoch(prepared, data, loss_fn, optimizer, batch_size=args.batch_size,
                                   seed=args.seed, epoch=epoch, progress=True,
                                   desc=f"epoch {epoch + 1}/{args.epochs}", scheduler=scheduler,
                                   batch_losses=batch_history[-1])
                history.append(mean)
                if recipe.bskmq and recipe.bskmq_refit:
                    from .train.bskmq import refit_chip_levels

                    nmse = refit_chip_levels(prepared, x_cal, batch_size=args.batch_size)
                    print("NL-ADC levels refit: activation NMSE "
                          + ", ".join(f"{k} {v:.3g}" for k, v in nmse.items()))
                _write_checkpoint(ckpt_path, {"epoch": epoch + 1, "model": prepared.state_dict(),
                                              "optimizer": optimizer.state_dict(),
                                              "loss": history, "batch_loss": batch_history,
                                              "run": run,
                                              "untrained": untrained}
                                  | ({"scheduler": scheduler.state_dict()} if scheduler else {}))
                print(f"epoch {epoch + 1}/{args.epochs}  loss {mean:.5g}  "
                      f"({time.perf_counter() - t0:.1f} s, checkpoint written)")
        prepared.eval()
        if recipe.lora:
            merge_lora(prepared)  # before weight quantization: deploy maps ordinary matrices
        summary: dict = {"method": args.method, "epochs": len(history), "loss": history,
                         "batch_loss": batch_history,
                         "schedule": args.schedule,
                         "t_inference_s": twin["t_inference_s"],
                         "cosine_to_float": output_cosine(prepared, model, x_eval),
                         **untrained}
        if recipe.raoq_parts:
            summary["weights"] = weight_stats(prepared)  # Var[W] and kurtosis per layer
        # the twin is evaluated noise-free; on a chip with conversion noise the deployed figures
        # below include it, and were far from these (twin 47 %, deployed 76 % on rram-22nm)
        noise = [f"noise.{name} = {getattr(chip.noise, name):g}"
                 for name in ("thermal_sigma_lsb", "read_noise_rel") if getattr(chip.noise, name)]
        noise += [f"adc.comparator_noise_lsb = {chip.adc.comparator_noise_lsb:g}"] * bool(
            chip.adc.comparator_noise_lsb)
        noise += ["the 1/f read noise of device.read_noise_q_s"] * any(chip.device.read_noise_q_s)
        note = (f"  (twin noise off; the deployed chip below adds {', '.join(noise)})"
                if noise else "")
        print(f"{'twin cosine to float':<24}{summary['cosine_to_float']:.4f}{note}")
        if y_eval is not None:
            summary["twin_accuracy"] = accuracy(prepared, x_eval, y_eval, batch_size=None)
            print(f"{'twin accuracy':<24}{100 * summary['twin_accuracy']:.2f} %{note}")
        if recipe.base == "columnquant":
            from .train.columnquant import deploy_columnquant

            sim = deploy_columnquant(prepared, x_cal, args.seed)
        else:
            sim = prepared.deploy(args.seed, chip=chip)
        at = ("" if twin["t_inference_s"] is None
              else f", seen {twin['t_inference_s']:g} s after programming")
        print(f"deployed with the learned weights, scales and ADC tables (seed {args.seed}{at})")
        if recipe.base == "pim-qat" and args.bn_calibration:
            from .train.bn import calibrate_bn

            n_bn = calibrate_bn(sim, x_train[:args.bn_calibration], batch_size=args.batch_size,
                                reference=prepared if args.bn_relative else None)
            how = " (relative to the twin)" if args.bn_relative else ""
            print(f"BatchNorm calibrated on the deployed model{how}: {n_bn} modules, "
                  f"{min(args.bn_calibration, x_train.shape[0])} training inputs")
        report, score = _evaluate(sim, model, x_eval, y_eval, args.batch_size)
        # (the untrained figure is the command line's chip: ColumnQuant deploys on its own)
        below = None if deploy_chip != chip else _below_untrained(
            score, untrained, chip, recipe.base == "pim-qat" and args.forward_rescale)
        if below is not None:
            summary["note"] = below
        report.set_training(summary)  # the page's loss curve and before/after (training.png)
        _save_report(report, args.out)
        if below is not None:
            print(f"note: {below}")
        # after the report: a stop in the deploy or evaluation left a summary of these epochs
        # beside an earlier run's report (the checkpoint holds the training; a rerun writes both)
        write_text(args.out / "training.json", json.dumps(summary, indent=2) + "\n")
        _clear_stale_simulation(args.out, None, y_eval is not None)  # a simulate --time's files
    if not _sweeps_trained(args):
        return 0
    return _sweep_trained(args, prepared, deploy_chip, model, name, x_cal, x_eval, y_eval,
                          twin["t_inference_s"])


def _sweeps_trained(args: argparse.Namespace) -> bool:
    """Whether ``train`` sweeps the trained model afterwards (``--sweep-adc-bits`` or
    ``--sweep``)."""
    return args.sweep_adc_bits is not None or bool(getattr(args, "sweep", None))


def _sweep_flags(args: argparse.Namespace) -> str:
    """The flags that asked ``train`` for its sweep, for messages."""
    return " and ".join(f for f, given in (("--sweep-adc-bits", args.sweep_adc_bits is not None),
                                           ("--sweep", bool(getattr(args, "sweep", None))))
                        if given)


# each sweep axis's ``cimsim sweep`` flag, and how it reads its values (``train --sweep AXIS=``
# reads them so too; time_s and slice_readout: _axis_values)
_AXIS_FLAGS: dict[str, str] = {
    "array_size": "--array-size", "bits_per_cell": "--bits-per-cell",
    "slice_readout": "--slice-readout", "cols_per_adc": "--cols-per-adc",
    "thermal_sigma_lsb": "--noise", "adc_kind": "--adc-kind", "adc_bits": "--adc-bits",
    "time_s": "--time"}
_AXIS_VALUES: dict[str, Callable[[str, str], list[Any]]] = {
    "adc_bits": _int_values, "bits_per_cell": _int_values, "array_size": _int_values,
    "cols_per_adc": _int_values, "thermal_sigma_lsb": _float_values,
    "adc_kind": _kind_values,
}


def _axis_values(axis: str, flag: str, text: str, chip) -> list[Any]:
    """The values of named sweep axis ``axis`` from ``text``, as its ``cimsim sweep`` flag
    reads them (``time_s``: durations checked against ``chip``, as given without one)."""
    if axis == "slice_readout":
        from .sweep import parse_slice_readout

        return _checked_values(flag, text, parse_slice_readout)
    if axis == "time_s":
        return [t for _, t in _time_values(flag, text, chip)] if chip is not None \
            else text.split(",")
    return _AXIS_VALUES[axis](flag, text)


def _train_sweep_grid(args: argparse.Namespace, chip) -> dict[str, list[Any]]:
    """The grid of ``train --sweep-adc-bits B --sweep AXIS=VALUES ...``: ``--sweep``'s axes in
    the order given, a named axis's values as ``cimsim sweep``'s flag reads them (``time_s``
    as durations, ``1h,1d``, where ``chip`` is known), a chip field's as ``--vary``'s."""
    from .sweep import AXES
    from .sweep.grid import field_problem

    grid: dict[str, list[Any]] = {}
    for text in getattr(args, "sweep", None) or ():
        axis, eq, values = text.partition("=")
        axis = axis.strip()
        flag = f"--sweep {axis}"
        if axis in grid or (axis == "adc_bits" and args.sweep_adc_bits is not None):
            raise ConfigError(f"--sweep: axis {axis!r} given twice; allowed: each axis once, "
                              "with all its values")
        if axis not in AXES and (why := field_problem(axis, flags=False)):
            raise ConfigError(f"--sweep {text!r}: {why}; allowed: AXIS=VALUES with AXIS a sweep "
                              f"axis ({', '.join(AXES)}) or a chip field (e.g. tech.vdd_v)")
        if axis not in AXES or not eq:
            grid.update([_vary_values(text, "--sweep")])  # a chip field
        else:
            grid[axis] = _axis_values(axis, flag, values, chip)
    if args.sweep_adc_bits is not None:
        grid["adc_bits"] = _int_values("--sweep-adc-bits", args.sweep_adc_bits)
    return grid


def _check_sweep_bits(args: argparse.Namespace, prepared, chip, centres_frozen_first: bool
                      ) -> None:
    """``train --sweep-adc-bits`` / ``--sweep``, before the epochs: every point a valid chip,
    and at least one the prepared model can be deployed at (``PreparedModel.check_chip``; a
    ColumnQuant centre is frozen before the run deploys), else one line naming the flag (a
    value out of range failed after the whole training)."""
    from .sweep import chip_for_point, expand_grid
    from .sweep.grid import _field_value, resolve_point
    from .sweep.run import _check_points

    grid = _train_sweep_grid(args, chip)
    flag = _sweep_flags(args)
    points = expand_grid(grid)
    try:  # a value no point can have: refused; one impossible only in combination: skipped
        skipped = _check_points(chip, points)
    except ConfigError as exc:
        raise ConfigError(f"{flag}: {exc}") from None
    reasons = []
    for i, p in enumerate(points):
        if i in skipped:
            continue
        try:
            prepared.check_chip(chip_for_point(chip, p), centres_frozen_first=centres_frozen_first)
        except ConfigError as exc:
            reasons.append(f"{p}: {exc}")
    if len(reasons) + len(skipped) == len(points):
        own = resolve_point(chip, {})
        data = chip.to_dict()
        values = "; ".join(f"{a} {', '.join(map(str, v))}" for a, v in grid.items())
        mine = ", ".join(f"{a} {own[a] if a in own else _field_value(data, a)}" for a in grid)
        raise ConfigError(f"{flag}: the trained model can be deployed at none of {values} "
                          f"(at {reasons[0] if reasons else next(iter(skipped.values()))}); "
                          f"allowed: values that include the chip's own ({mine})")


def _sweep_trained(args: argparse.Namespace, prepared, chip, model, name: str, x_cal, x_eval,
                   y_eval, t_inference_s: float | None) -> int:
    """``train --sweep-adc-bits``: the trained twin swept over ADC bits on ``chip`` (where
    the run deployed it) into ``OUT/sweep`` (``run_sweep`` of a ``PreparedModel``: each point
    deploys what it learned), evaluated on the run's held-out inputs, at the time it was
    trained for, a cosine without labels against ``model`` (the float model the run started
    from, as its report's); printed as ``sweep`` prints."""
    from ._inputs import input_count
    from .sweep import run_sweep

    grid = _train_sweep_grid(args, chip)
    axes = ", ".join("ADC bits" if a == "adc_bits" else a for a in grid)
    if t_inference_s is not None and "time_s" not in grid:
        grid["time_s"] = [t_inference_s]
    out = args.out / "sweep"
    data = x_eval if y_eval is None else (x_eval, y_eval)
    frame = run_sweep(prepared, data, chip, grid, out, calibration=x_cal, seed=args.seed,
                      batch_size=args.batch_size, model_name=f"{name}, trained ({args.method})",
                      reference=model if y_eval is None else None)
    print(f"\nsweep of the trained model over {axes} (each point deploys what it learned; "
          f"{input_count(x_eval)} held-out inputs evaluated)")
    return _print_sweep(frame, out, chip, args)


def _untrained_on_chip(model, chip, x_cal, x_eval, y_eval, args: argparse.Namespace,
                       t_inference_s: float | None) -> dict[str, Any]:
    """The float model deployed on ``chip`` as ``simulate`` deploys it (calibration, seed,
    time after programming) and evaluated on the held-out inputs:
    ``{"untrained_accuracy": a}`` (labels) or ``{"untrained_cosine_to_float": c}``; a chip
    the untrained model cannot be deployed on gives ``{"untrained": reason}``."""
    import cimsim

    try:
        with warnings.catch_warnings():  # what deploy says is said again by the trained one
            warnings.simplefilter("ignore")
            sim = cimsim.deploy(model, chip, x_cal, seed=args.seed, exclude=args.exclude)
            if t_inference_s is not None:
                sim.set_time(t_inference_s)
    except CimsimError as exc:
        return {"untrained": f"not deployed: {_one_line(exc)}"}
    if y_eval is not None:
        return {"untrained_accuracy": accuracy(sim, x_eval, y_eval, batch_size=args.batch_size,
                                               progress=True, desc="untrained on the chip")}
    return {"untrained_cosine_to_float": output_cosine(
        model, sim, x_eval, batch_size=args.batch_size, progress=True,
        desc="untrained on the chip")}


def _below_untrained(score: float, untrained: dict[str, Any], chip,
                     pimqat_rescaled: bool) -> str | None:
    """What ``train`` says when the trained model deployed below the float model deployed as
    is (:func:`_untrained_on_chip`, the same chip, seed and inputs): the run's end showed both
    figures many lines apart, and nothing said the training had cost accuracy. None when it
    did not."""
    if "untrained_accuracy" in untrained:
        before, unit, scale, what = untrained["untrained_accuracy"], " %", 100.0, "accuracy"
    elif "untrained_cosine_to_float" in untrained:
        before, unit, scale, what = untrained["untrained_cosine_to_float"], "", 1.0, "cosine"
    else:
        return None
    if not score < before:
        return None
    fmt = ".2f" if unit else ".4f"
    out = (f"the trained model deployed below the float model deployed as is ({what} "
           f"{scale * score:{fmt}}{unit} against {scale * before:{fmt}}{unit}): try more "
           "epochs, a lower --lr, or more training data (docs/training.md)")
    from .config import RangePolicy

    if pimqat_rescaled and chip.adc.range_policy is RangePolicy.CALIBRATED:
        out += ("; PIM-QAT's forward rescaling is derived for full-scale ADCs, and this "
                "chip's ranges are calibrated: --no-forward-rescale starts from the "
                "calibrated twin (docs/pim-qat.md)")
    return out


def _untrained_text(untrained: dict[str, Any]) -> str:
    """:func:`_untrained_on_chip`'s figure as the train command prints it."""
    as_is = " (the float model deployed as is)"
    if "untrained_accuracy" in untrained:
        return f"{100 * untrained['untrained_accuracy']:.2f} %{as_is}"
    if "untrained_cosine_to_float" in untrained:
        return f"cosine to float {untrained['untrained_cosine_to_float']:.4f}{as_is}"
    return str(untrained.get("untrained"))


def _prepare_bskmq(args: argparse.Namespace, recipe, chip, model, x_cal,
                   twin: dict | None = None):
    """The twin of ``--method bskmq``: the chip's layer-output NL-ADCs fused with the ReLUs
    (``cimsim.train.bskmq``), their levels fitted as deploy fits them (``adc.level_fit``)."""
    from .config import ADCKind, ADCPlacement
    from .train.bskmq import prepare_bskmq

    if chip.adc.kind is not ADCKind.RAMP or chip.adc.placement is not \
            ADCPlacement.LAYER_OUTPUT:
        # every condition at once: naming one at a time took a user three refusals
        raise ConfigError(
            f"--method bskmq needs adc.kind = 'ramp' and adc.placement = 'layer_output' (chip "
            f"{chip.name}: {chip.adc.kind.value}, {chip.adc.placement.value}); one conversion "
            "per output also needs every input bit in one drive (dac.bits = 'all'), each "
            "weight in one conversion column (a differential pair of cells holding its "
            "magnitude bits, or array.slice_readout = 'analog') and each layer's inputs in one "
            "array's rows; e.g. for the digits CNN on rram-22nm: --set adc.kind=ramp --set "
            "adc.placement=layer_output --set adc.level_fit=bs_kmq --set dac.bits=all "
            "--set weight_bits=4 --set device.bits_per_cell=3 --set array.n_rows=512 --set "
            "array.n_cols=512 (docs/activation-adc-study.md)")
    print(f"BS-KMQ on the chip: {chip.weight_bits}-bit weights, {chip.adc.bits}-bit "
          f"{chip.adc.level_fit.value} NL-ADC levels fused with the ReLUs "
          f"({'refit each epoch' if recipe.bskmq_refit else 'frozen'})")
    # a fitter the user set is the one meant (no warning that it is not BS-KMQ's)
    stated = any(o.split("=", 1)[0].strip() == "adc.level_fit" for o in args.overrides)
    return prepare_bskmq(model, chip, x_cal, seed=args.seed, exclude=args.exclude,
                         level_fit=chip.adc.level_fit if stated else None, **(twin or {}))


def _prepare_for(args: argparse.Namespace, method: str, model, chip, x_cal,
                 twin: dict | None = None):
    """The twin of ``--method pim-qat`` / ``columnquant`` with their options (``twin``: the
    twin's own, ``--devices`` and ``--time``)."""
    twin = twin or {}
    if method == "pim-qat":
        from .train.pimqat import prepare_pimqat

        return prepare_pimqat(model, chip, x_cal, seed=args.seed,
                              forward_rescale=args.forward_rescale,
                              backward_rescale=args.backward_rescale,
                              train_adc_bits=args.train_adc_bits or None,
                              exclude=args.exclude, **twin)
    from .train.columnquant import prepare_columnquant

    return prepare_columnquant(model, chip, x_cal, seed=args.seed,
                               weight_scale=args.weight_scale, psum_scale=args.psum_scale,
                               centre=args.psum_centre, num_sigma=args.num_sigma,
                               init=args.scale_init, grad="paper",
                               decomposition=args.weight_decomposition,
                               exclude=args.exclude, **twin)


def _train_time(args: argparse.Namespace, chip) -> float | None:
    """``train --time``: the one time after programming the chip is trained for and deployed
    at (seconds), or None (the programmed state)."""
    if args.time is None:
        return None
    times = _time_values("--time", args.time, chip)
    if len(times) != 1:
        raise ConfigError(f"--time {args.time!r}: train takes one time, the one it trains "
                          "for and deploys at; allowed: one duration, e.g. 1d")
    _warn_static_device(chip, times)
    return times[0][1]


# the library's own warning of the same thing (cimsim.arrays.drift.warn_static_time)
_STATIC_TIME_WARNING = r"\w+: t_inference_s = .*: the chip's device does not change"


def _warn_static_device(chip, times: list[tuple[str, float]]) -> None:
    """``--time`` on a chip whose devices do not age: a flat curve (or a training for nothing)
    is no finding, so say why (the sweep's ``time_s`` axis refuses the same)."""
    if chip.device.ages or all(t == chip.device.drift_t0_s for _, t in times):
        return
    from .arrays.drift import STATIC_DEVICE

    print(f"cimsim: warning: --time: {STATIC_DEVICE}; use a drifting device (e.g. the pcm-22nm "
          "preset; docs/drift.md)", file=sys.stderr)


class _UsageError(Exception):
    """A command line argparse refuses; :func:`main` prints it as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a refused command line is one line on stderr and status 2 from
    :func:`main`, like every other error a user can fix (argparse prints the usage first)."""

    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(f"{message} (see {self.prog} --help)")


def _count(minimum: int, zero: str | None = None):
    """An argparse type: an integer >= ``minimum``; ``zero`` names what 0 means where 0 is
    allowed although ``minimum`` is 1 (``--limit 0``: no limit)."""
    allowed = f"an integer >= {minimum}" + (f", or 0 ({zero})" if zero else "")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer; allowed: "
                                             f"{allowed}") from None
        if value < minimum and not (zero and value == 0):
            raise argparse.ArgumentTypeError(f"{value} is invalid; allowed: {allowed}")
        return value

    parse.__name__ = "count"  # argparse names the type in some messages
    return parse


def _not_empty(convert: Callable[[str], Any], allowed: str) -> Callable[[str], Any]:
    """An argparse type: ``convert`` of a value that is not blank (``Path('')`` is the current
    folder: an unset ``$OUT`` in ``--out "$OUT"`` wrote the report's files into it, and a
    blank --model was called 'a folder')."""
    def parse(text: str) -> Any:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{text!r} is empty; allowed: {allowed}")
        return convert(text)

    parse.__name__ = convert.__name__  # argparse names the type in some messages
    return parse


def _user_path(text: str) -> Path:
    """A path as the shell would give it: ``--out=~/r`` (no shell expands a ``~`` after
    ``=``) made ``./~/r``."""
    try:
        return Path(text).expanduser()
    except RuntimeError:  # ~nosuchuser: argparse lets no RuntimeError through (a traceback)
        raise argparse.ArgumentTypeError(f"{text!r}: no home folder for "
                                         f"{text.split('/')[0]!r}") from None


_user_path.__name__ = "path"  # argparse names the type in its messages
_path = _not_empty(_user_path, "a file or folder path (use . for the current folder)")
_model_spec = _not_empty(str, "demo, a torch.export .pt2 or TorchScript file, or "
                              "module:function")


_POSITIVE = _count(1)
_LIMIT = _count(1, zero="all inputs, the default")
_BN_INPUTS = _count(1, zero="off, the default")  # --bn-calibration's 0 calibrates nothing


def _density(text: str) -> float:
    """An argparse type: a fraction of nonzero inputs in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number; allowed: a number in "
                                         "(0, 1]") from None
    if not 0.0 < value <= 1.0:  # (NaN fails too)
        raise argparse.ArgumentTypeError(f"{text} is out of range; allowed: a number in (0, 1]")
    return value


def _seed(text: str) -> int:
    """An argparse type: a seed in [0, 2**64 - 1] (larger or negative ones would alias)."""
    from ._seed import SEED_MAX, check_seed

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer; allowed: 0 to "
                                         f"{SEED_MAX}") from None
    try:
        return check_seed(value)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"{value} is invalid; allowed: 0 to {SEED_MAX}") from None


def _scheduler(text: str) -> str:
    """An argparse type: ``local:N`` or a Dask scheduler address."""
    from .sweep.cluster import parse_scheduler

    try:
        parse_scheduler(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("scheduler = ")) from None
    return text


_SEED_HELP = ("seed of the programming variation, stuck cells and conversion noise; the same "
              "seed gives the same result (default 0)")
_BATCH_HELP = ("inputs per simulated forward (default {}); with conversion noise the batching "
               "is part of the result")
_LIMIT_HELP = "use only the first N inputs (default 0: all)"
_EXCLUDE_HELP = ("keep the layers matching PATTERN digital (a layer name, a container's name "
                 "for the layers in it, or an fnmatch pattern such as 'features.0' or "
                 "'*.head'); repeat for several (the first and last layers are often kept "
                 "digital)")


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="TABLE.FIELD=VALUE",
                        dest="overrides",
                        help="set a field of the chip over its preset or file, e.g. "
                             "adc.bits=6; repeatable (TOML values, a bare word a string)")


def _load_chip(args: argparse.Namespace):
    """``--chip`` (or the positional chip) with ``--set`` over it."""
    import cimsim

    return cimsim.load_chip(args.chip, overrides=args.overrides)


def _add_exclude(parser: argparse.ArgumentParser, note: str = "") -> None:
    parser.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                        help=_EXCLUDE_HELP + note)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="cimsim",
        description="Cycle-approximate simulator of compute-in-memory accelerators: accuracy "
                    "and energy, area, latency from one run.")
    ap.add_argument("--version", action="version", version=f"cimsim {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="deploy the bundled digits CNN on a chip and report")
    d.add_argument("--out", type=_path, default=Path("out"),
                   help="folder for the report files: CSV tables, report.json, PNG figures, "
                        "report.html (created if missing; default out)")
    d.add_argument("--chip", default=DEFAULT_DEMO_CHIP,
                   help=f"preset name or .toml path (default {DEFAULT_DEMO_CHIP})")
    _add_set(d)
    d.add_argument("--seed", type=_seed, default=0, help=_SEED_HELP)
    d.add_argument("--calibration", type=_POSITIVE, default=256,
                   help="calibration images: the first N of the training split (default 256)")
    d.add_argument("--batch-size", type=_POSITIVE, default=64, help=_BATCH_HELP.format(64))
    d.add_argument("--fast", action="store_true", help="evaluate 96 test images only")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("simulate", help="deploy a model on a chip and evaluate it on data")
    s.add_argument("--model", required=True, type=_model_spec,
                   help="torch.export .pt2 (dynamic batch), TorchScript file, "
                        "module:function, or demo / resnet-digits (the bundled digits models "
                        "on their test split, calibrated on the first --calibration training "
                        "images)")
    s.add_argument("--data", type=_path, default=None,
                   help=".npz with x (and y), or with the model's keyword inputs by name "
                        "(input_ids=, attention_mask=, ...), or a tensor file (torch.load "
                        "weights_only); required but with a bundled model")
    s.add_argument("--chip", required=True, help="preset name or .toml path")
    _add_set(s)
    s.add_argument("--out", type=_path, required=True,
                   help="folder for the report files: CSV tables, report.json, PNG figures, "
                        "report.html (created if missing)")
    s.add_argument("--seed", type=_seed, default=0, help=_SEED_HELP)
    s.add_argument("--calibration", type=_POSITIVE, default=256,
                   help="the first N inputs calibrate, the rest are evaluated; all of them "
                        "when no input remains (default 256)")
    s.add_argument("--batch-size", type=_POSITIVE, default=64, help=_BATCH_HELP.format(64))
    s.add_argument("--limit", type=_LIMIT, default=0, help=_LIMIT_HELP)
    _add_exclude(s)
    s.add_argument("--time", default=None, metavar="TIMES",
                   help="times after programming to run at, e.g. 1h,1d,1y (units s, min, h, "
                        "d, w, y; a bare number is seconds): one report per time in "
                        "OUT/t_<time>/, plus time.csv and accuracy_time.png (docs/drift.md)")
    s.set_defaults(func=cmd_simulate)

    w = sub.add_parser("sweep", help="accuracy vs energy over a grid of ADC bits and other "
                                     "knobs; table, Pareto plot, HTML")
    w.add_argument("--model", required=True, type=_model_spec,
                   help="torch.export .pt2 (dynamic batch), TorchScript file, module:function, "
                        "or demo / resnet-digits (the bundled digits models and their test "
                        "split)")
    w.add_argument("--data", type=_path, default=None,
                   help=".npz with x (and y), or with the model's keyword inputs by name, or a "
                        "tensor file (not with --model demo)")
    w.add_argument("--chip", required=True, help="preset name or .toml path (the base chip)")
    _add_set(w)
    w.add_argument("--adc-bits", default=None, metavar="BITS",
                   help="ADC bits: a range 3-8 or a list 3,4,6 (default: the chip's)")
    w.add_argument("--adc-kind", default=None, metavar="KINDS",
                   help="list of ADC kinds (sar, flash, ramp, single_slope, cco, integrate_fire, "
                        "tdc, digital) "
                        "or ramp:<level_fit> (e.g. sar,ramp:bs_kmq); "
                        "default: the chip's")
    w.add_argument("--bits-per-cell", default=None, metavar="BITS", help="e.g. 1,2")
    w.add_argument("--array-size", default=None, metavar="N",
                   help="square arrays N x N, e.g. 128,256")
    w.add_argument("--cols-per-adc", default=None, metavar="N",
                   help="columns sharing one ADC, e.g. 1,2,4,8 (1..the array's columns)")
    w.add_argument("--slice-readout", default=None, metavar="READOUTS",
                   help="digital (a conversion per bit-slice column) and/or analog (a weight's "
                        "slices combined before one conversion), e.g. digital,analog")
    w.add_argument("--noise", default=None, metavar="SIGMAS",
                   help="thermal noise sigma in cell-LSB, e.g. 0,0.5")
    w.add_argument("--time", default=None, metavar="TIMES",
                   help="times after programming, e.g. 1,3600,86400,31536000 or 1h,1d,1y "
                        "(axis time_s; writes accuracy_time.png too)")
    w.add_argument("--vary", action="append", default=[], metavar="FIELD=VALUES",
                   help="sweep a chip field as well: TABLE.FIELD or a top-level field and its "
                        "values, e.g. input_bits=4,6,8, dac.bits=1,2, tech.vdd_v=0.7,0.9 or "
                        "tech.node_nm=22,7 (integers also as a range 4-8); repeatable, one "
                        "field each (a field the flags above sweep: that flag)")
    w.add_argument("--jobs", type=_POSITIVE, default=1, help="worker processes (default 1)")
    w.add_argument("--scheduler", type=_scheduler, default=None, metavar="ADDRESS",
                   help="run the points on Dask: tcp://host:port of a running scheduler, or "
                        "local:N for a LocalCluster of N workers (docs/sweep.md)")
    w.add_argument("--calibration", type=_POSITIVE, default=256,
                   help="calibration inputs: the first N of --data (the rest are evaluated); "
                        "for demo the first N training images (default 256)")
    w.add_argument("--limit", type=_LIMIT, default=0, help=_LIMIT_HELP)
    _add_exclude(w)
    w.add_argument("--seed", type=_seed, default=0, help=_SEED_HELP + "; one seed for every "
                                                                      "point")
    w.add_argument("--batch-size", type=_POSITIVE, default=256, help=_BATCH_HELP.format(256))
    w.add_argument("--out", type=_path, required=True,
                   help="folder for sweep.jsonl, sweep.csv, sweep.json, pareto.png, "
                        "sweep.html; a rerun skips the points already in it")
    w.set_defaults(func=cmd_sweep)

    t = sub.add_parser("train", help="train a model for a chip (QAT with labels, or "
                                     "distillation from the float model), then simulate it")
    t.add_argument("--model", required=True, type=_model_spec,
                   help="demo, resnet-digits (bundled, with the digits data), or a torch.export "
                        ".pt2, TorchScript file or module:function (then --data)")
    t.add_argument("--data", type=_path, default=None,
                   help=".npz with x (and y) or a tensor file; the last quarter is held out "
                        "for the evaluation (not with the bundled models)")
    t.add_argument("--chip", required=True, help="preset name or .toml path")
    _add_set(t)
    t.add_argument("--method", default="qat",
                   help="qat: cross-entropy on the labels; distill: match the float model's "
                        "outputs, no labels (default qat); pim-qat, columnquant: QAT with those "
                        "methods' quantizers (options below); '+' adds a-shift, w-reshape, "
                        "bitaug, lora (raoq: all four), e.g. qat+a-shift+bitaug; bskmq: "
                        "QAT through the chip's layer-output NL-ADC fused with the ReLUs "
                        "(with qat/distill, a-shift, w-reshape, lora; docs/training.md)")
    t.add_argument("--option", action="append", default=None, metavar="KEY=VALUE",
                   help="method option, repeatable: kurtosis_target, kurtosis_weight, "
                        "bitaug_bits (e.g. 7,8), bitaug_mode (sum|sample), lora_rank, "
                        "lora_alpha, bskmq_refit (true|false)")
    t.add_argument("--loss", default="mse", help="distillation loss: mse or cosine")
    t.add_argument("--devices", default="programmed",
                   help="cells the twin trains with on a chip with programming variation or "
                        "faults: programmed (the chip --seed programs; default), sampled (a "
                        "fresh draw each step) or nominal")
    t.add_argument("--time", default=None, metavar="TIME",
                   help="on a device that ages (drift, 1/f noise, retention: pcm-22nm): the "
                        "time after programming to train for and deploy at, e.g. 1d (units s, "
                        "min, h, d, w, y; default: the programmed state; docs/drift.md)")
    t.add_argument("--sweep-adc-bits", default=None, metavar="BITS",
                   help="after training, sweep the trained model over these ADC bits (e.g. "
                        "3-8 or 4,6): deployed with what it learned at each (a calibrated "
                        "range on each point's grid), into OUT/sweep with its table and "
                        "Pareto plot (docs/sweep.md)")
    t.add_argument("--sweep", action="append", default=[], metavar="AXIS=VALUES",
                   help="after training, sweep the trained model over this axis too (with "
                        "--sweep-adc-bits or alone): a sweep axis as cimsim sweep's flag takes "
                        "its values (thermal_sigma_lsb=0,0.5,1, time_s=1h,1d, adc_kind=sar,"
                        "flash) or a chip field (tech.vdd_v=0.7,0.8); repeatable; points the "
                        "model cannot be deployed at are skipped (docs/training.md)")
    t.add_argument("--epochs", type=_POSITIVE, default=1, help="epochs in all (default 1)")
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    t.add_argument("--schedule", default="constant",
                   help="the rate over the run: constant (default) or cosine (annealed per "
                        "step to 0 after the last epoch; a checkpoint then resumes only with "
                        "the same --epochs)")
    t.add_argument("--batch-size", type=_POSITIVE, default=64,
                   help="inputs per training step and per simulated forward (default 64)")
    t.add_argument("--seed", type=_seed, default=0,
                   help="seed of the shuffling, the programming variation and the noise "
                        "(default 0)")
    t.add_argument("--calibration", type=_POSITIVE, default=256,
                   help="first N training inputs set the initial scales and ADC ranges "
                        "(default 256)")
    t.add_argument("--limit", type=_LIMIT, default=0,
                   help="use only the first N training and N evaluation inputs (default 0: "
                        "all)")
    _add_exclude(t, "; they train in float")
    t.add_argument("--out", type=_path, required=True,
                   help="folder for checkpoint.pt, training.json, the report and "
                        "training.png (loss curve, accuracy before and after); a rerun "
                        "resumes after the last complete epoch")
    g = t.add_argument_group("pim-qat (docs/pim-qat.md)")
    g.add_argument("--no-forward-rescale", dest="forward_rescale", action="store_false",
                   help="switch off the forward rescaling")
    g.add_argument("--no-backward-rescale", dest="backward_rescale", action="store_false",
                   help="switch off the backward rescaling")
    g.add_argument("--train-adc-bits", type=_POSITIVE, default=0,
                   help="adjusted precision: train with this many ADC bits, deploy with the "
                        "chip's (default: the chip's)")
    g.add_argument("--bn-calibration", type=_BN_INPUTS, default=0,
                   help="re-estimate BatchNorm statistics on the deployed chip with the first "
                        "N training inputs (default 0: off)")
    g.add_argument("--bn-relative", action="store_true",
                   help="with --bn-calibration: keep the trained statistics and move them by "
                        "the chip's deviation from the trained twin on the same inputs, "
                        "instead of replacing them (for models fine-tuned with BatchNorm "
                        "statistics frozen, as here; docs/pim-qat.md section 3)")
    g = t.add_argument_group("columnquant (docs/columnquant.md)")
    g.add_argument("--weight-scale", default="column", choices=("layer", "array", "column"),
                   help="weight scale granularity (default column)")
    g.add_argument("--psum-scale", default=None, choices=("layer", "array", "column"),
                   help="partial-sum (ADC step) granularity (default: the chip's "
                        "adc.calibration_granularity)")
    g.add_argument("--psum-centre", default="frozen", choices=("none", "batch", "frozen"),
                   help="LsqPsum's mu +- n sigma clip and centre: per batch, frozen after "
                        "calibration (default), or none")
    g.add_argument("--num-sigma", type=float, default=6.0, help="n of mu +- n sigma (default 6)")
    g.add_argument("--scale-init", default="engine", choices=("paper", "engine"),
                   help="weight scales from deploy's (engine, the default: the ADC ranges are "
                        "calibrated for them) or the paper code's mean |w| (paper)")
    g.add_argument("--weight-decomposition", default=None,
                   help="signed weights as the paper code's option 1 offset (two's-complement "
                        "style), 2 differential, or 3 ternary (learned alphas on binary cells); "
                        "default: the chip's weight_encoding")
    t.set_defaults(func=cmd_train)

    p = sub.add_parser("presets", help="list the bundled chip presets")
    p.set_defaults(func=cmd_presets)

    ds = sub.add_parser("datasheet", help="headline TOPS, TOPS/W and TOPS/mm2 of a chip on "
                        "the standard full-array workload (docs/validation.md)")
    ds.add_argument("chip", help="preset name or path to a .toml")
    _add_set(ds)
    ds.add_argument("--scope", choices=("macro", "chip"), default="macro",
                    help="macro: array + drivers + ADCs (default); chip: everything")
    ds.add_argument("--input-density", type=_density, default=0.5,
                    help="fraction of inputs not set to zero (default 0.5); the others "
                         "are uniform over the input range, 0 included (docs/validation.md)")
    ds.add_argument("--calibrated", action="store_true",
                    help="apply the preset's per-chip calibration (fitted, not predicted)")
    ds.add_argument("--breakdown", action="store_true",
                    help="also energy per op and area by component, the step's timing, the "
                         "converter's rate, the basis and the uncertainty (docs/new-chip.md)")
    ds.add_argument("--json", action="store_true", help="print the whole mapping as JSON")
    ds.set_defaults(func=cmd_datasheet)

    r = sub.add_parser("report", help="re-render a saved report or sweep folder (JSON -> "
                                      "files)")
    r.add_argument("dir", type=_path, help="a folder with the report.json a command wrote, "
                                           "or the sweep.json of a sweep")
    r.add_argument("--out", type=_path, default=None,
                   help="folder for the re-rendered files (default: DIR itself)")
    r.set_defaults(func=cmd_report)
    for command in sub.choices.values():  # `cimsim datasheet X -v` as well as `cimsim -v ...`
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="log progress details")
    return ap


def _one_line(exc: BaseException) -> str:
    """An error's message on one line: the command line's contract is one line per error."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """A warning as the command line prints it: one line like its errors, not Python's
    ``path:line: UserWarning: ...`` and the source line of cimsim that raised it."""
    kind = "" if category is UserWarning else f"{category.__name__}: "
    return f"cimsim: warning: {kind}{_one_line(message)}\n"


def main(argv: list[str] | None = None) -> int:
    saved = warnings.formatwarning
    warnings.formatwarning = _warning_line  # put back after: main may run inside a process
    try:
        return _main(argv)
    finally:
        warnings.formatwarning = saved


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # what was given (train)
    except _UsageError as exc:
        print(f"cimsim: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        with _terminate_as_interrupt(), _reader_may_leave():
            rc = int(args.func(args))
            sys.stdout.flush()  # a closed pipe (``cimsim datasheet X | head``) shows here
        return rc
    except BrokenPipeError:  # written past the wrapper (sys.__stdout__): exit quietly
        _stdout_to_devnull(sys.stdout)
        return 1
    except (CimsimError, OSError) as exc:  # a missing file, a full disk: one line, no traceback
        hint = ""
        if isinstance(exc, CapacityError) and "allow_time_multiplexing" in str(exc):
            hint = " (here: --set array.allow_time_multiplexing=true)"
        print(f"cimsim: error: {_one_line(exc)}{hint}", file=sys.stderr)
        return 2
    except _Terminated:
        print("cimsim: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:  # pragma: no cover
        print("cimsim: interrupted", file=sys.stderr)
        return 130


def _stdout_to_devnull(stream) -> None:
    # as the Python docs advise for a closed pipe: point the descriptor at devnull, so that
    # later writes and the interpreter's final flush do not raise again
    os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


class _PipeSafeStdout:
    """``sys.stdout`` for the duration of a command: when its reader leaves (``cimsim
    simulate ... | head -1``) the rest of the output goes to devnull and the command carries
    on. The command's product is its files: the BrokenPipeError of the first print after the
    reader left stopped ``simulate`` and ``demo`` after the whole simulation and before the
    report was written."""

    def __init__(self, stream: Any):
        self._stream = stream
        self.reader_left = False

    def write(self, text: str) -> int:
        if self.reader_left:
            return len(text)
        try:
            try:
                return self._stream.write(text)
            except UnicodeEncodeError:
                # a stream that cannot show a '§' or a 'σ' (PYTHONIOENCODING=ascii, a Latin-1
                # locale): those characters replaced; it stopped demo after the simulation,
                # before the report was written, and a sweep after its files. Once in the
                # stream's encoding, then in ASCII (a stream whose .encoding is not what it
                # writes in), never again
                enc = getattr(self._stream, "encoding", None) or "ascii"
                for codec in dict.fromkeys((enc, "ascii")):
                    with contextlib.suppress(UnicodeEncodeError, LookupError):
                        return self._stream.write(text.encode(codec, "replace").decode(codec))
        except BrokenPipeError:
            self._leave()
        return len(text)

    def flush(self) -> None:
        if not self.reader_left:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._leave()

    def _leave(self) -> None:
        self.reader_left = True
        with contextlib.suppress(OSError, ValueError):  # a stream without a descriptor
            _stdout_to_devnull(self._stream)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...: the stream's
        return getattr(self._stream, name)


@contextlib.contextmanager
def _reader_may_leave() -> Iterator[None]:
    """Run a command with :class:`_PipeSafeStdout` as ``sys.stdout`` (put back after)."""
    saved = sys.stdout
    # no standard output at all (Windows' pythonw, a service, >&-): print() writes nothing
    # there, and the wrapper's write to None stopped every command at its first line
    with (open(os.devnull, "w", encoding="utf-8") if saved is None
          else contextlib.nullcontext(saved)) as stream:
        sys.stdout = _PipeSafeStdout(stream)  # type: ignore[assignment]
        try:
            yield
        finally:
            sys.stdout = saved


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch scheduler's stop, ``timeout``), raised where the command is,
    so that it stops as after Ctrl-C: files written atomically, a sweep's worker processes
    stopped, not left computing."""


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises :class:`_Terminated` while the command runs (main thread only: a
    signal handler can only be set there); the previous handler is put back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum: int, frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

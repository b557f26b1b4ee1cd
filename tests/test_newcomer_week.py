"""A researcher's first week with cimsim, from the docs only: their own model and data on the
presets and on a chip file of their own, a sweep left running in the background, the plots they
read. Each test failed before the fix its docstring names.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest
import torch
from torch import nn

import cimsim
from cimsim.report import plot_pareto
from cimsim.sweep import run_sweep


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A 6-4 Linear of one's own and 12 labelled inputs (no bundled model or data)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4)).eval()
    x = torch.rand(12, 6)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


# --- a sweep's progress where no terminal shows a bar ----------------------------------------

def test_sweep_off_a_terminal_says_each_point_as_it_finishes(tiny, tmp_path, capsys):
    """Was: ``nohup cimsim sweep ... > log`` (or a sweep under CI) wrote nothing at all until
    every point had run: tqdm hides its bar off a terminal, and the command's first line is
    printed after the sweep, so a sweep stopped after an hour left an empty log. Now each
    finished point is one line on stderr, counted against the whole grid, and a resumed sweep
    counts on from the points already done."""
    model, x, y = tiny
    chip = cimsim.load_chip("ideal")
    run_sweep(model, (x, y), chip, {"adc_bits": [20, 22]}, tmp_path, calibration=4)
    err = capsys.readouterr().err
    done = re.findall(r"^sweep: (\d+)/(\d+) points done; \{'adc_bits': (\d+)\}: ok$", err,
                      flags=re.M)
    assert done == [("1", "2", "20"), ("2", "2", "22")], err
    # resumed with one more point: only that one runs, counted after the two already done
    run_sweep(model, (x, y), chip, {"adc_bits": [20, 22, 24]}, tmp_path, calibration=4)
    err = capsys.readouterr().err
    assert re.findall(r"^sweep: (\d+)/(\d+) points done", err, flags=re.M) == [("3", "3")], err
    # progress=False: silent, as before
    run_sweep(model, (x, y), chip, {"adc_bits": [23]}, tmp_path, calibration=4, progress=False)
    assert "points done" not in capsys.readouterr().err


# --- the Pareto plot a sweep draws ------------------------------------------------------------

def _sweep_like_frame() -> pd.DataFrame:
    """16 points of a sweep of one's own model (energies 0.18-2.1 uJ, under the 20x that
    turns the axis to log), five of them clustered at the lowest accuracies and energies."""
    energy = [181_969, 199_531, 233_954, 303_843, 308_462, 451_385, 737_280, 1_308_839,
              182_009, 199_326, 233_901, 303_915, 282_541, 282_297, 310_695, 2_121_948]
    acc = [0.1239, 0.1644, 0.9189, 1.0, 0.8378, 0.9977, 1.0, 1.0,
           0.0968, 0.2680, 0.8829, 0.6351, 0.1306, 0.1104, 0.2365, 0.4392]
    bits = [3, 4, 5, 6] * 4
    return pd.DataFrame({"adc_kind": ["sar"] * 4 + ["ramp:bs_kmq"] * 4 + ["sar"] * 8,
                         "adc_bits": bits, "thermal_sigma_lsb": [0.0] * 8 + [0.5] * 8,
                         "accuracy": acc, "energy_pj_per_inference": energy,
                         "status": "ok", "on_front": [e in (181_969, 233_954, 303_843)
                                                      for e in energy]})


def test_pareto_plot_energy_axis_reads_plainly_and_labels_stay_in_the_axes():
    """Was: a linear energy axis read '0.25 0.50 ... 2.00' with a '1e6' offset at its end,
    and the labels of points clustered at the lowest accuracies were moved down one under
    the other until they ran below the axes, over those tick labels. Now the ticks are plain
    numbers in a unit that suits them (nJ here, named in the axis label), and each label is
    placed within three lines of its point and inside the axes."""
    frame = _sweep_like_frame()
    labels = [f"{k.split(':')[-1]} {b}b σ{s:g}" for k, b, s in
              zip(frame.adc_kind, frame.adc_bits, frame.thermal_sigma_lsb, strict=True)]
    fig = plot_pareto(frame, labels=labels, title="mine")
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear"
    assert ax.xaxis.get_offset_text().get_text() == ""
    assert ax.get_xlabel() == "energy per inference (nJ)"
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert ticks and all(re.fullmatch(r"\d+", t) for t in ticks), ticks
    box = ax.get_window_extent()
    texts = [t for t in ax.texts if t.get_text() in labels]
    assert len(texts) == len(labels)
    for text in texts:
        extent = text.get_window_extent()
        assert box.y0 - 1 <= extent.y0 and extent.y1 <= box.y1 + 1, text.get_text()
        # and across: the rightmost points' labels go left of them (they crossed the frame)
        assert box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1, text.get_text()


def test_a_log_energy_axis_labels_decades_and_their_two_and_five_times_only():
    """Over less than two decades matplotlib labelled every minor tick of the log axis, and
    '3x10^5 4x10^5' overlapped; over many decades only the decades are labelled."""
    from cimsim.report import _two_five_label

    frame = pd.DataFrame({"accuracy": [0.9, 0.95, 0.8, 0.97],
                          "energy_pj_per_inference": [2.5e5, 4.2e5, 3.1e6, 5.5e6],
                          "on_front": [True, True, False, True]})
    fig = plot_pareto(frame, labels=["a", "b", "c", "d"])
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    minor = [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]
    assert minor and all(re.search(r"\{[25]\\times10", t) for t in minor), minor
    assert _two_five_label(3e5, 0) == "" and "5\\times10^{6}" in _two_five_label(5e6, 0)
    wide = frame.assign(energy_pj_per_inference=[1e3, 1e5, 1e7, 1e9])
    fig = plot_pareto(wide, labels=["a", "b", "c", "d"])
    fig.canvas.draw()
    assert not [t for t in fig.axes[0].get_xticklabels(minor=True) if t.get_text()]


# --- cimsim train --method columnquant with its defaults --------------------------------------

def test_columnquant_command_line_starts_from_deploys_weight_scales():
    """Was: ``--scale-init`` defaulted to ``paper`` (mean |w|), which docs/columnquant.md §4
    measured leaving the twin at chance and which its own study does not use: the bundled
    digits CNN's twin started 22 points below the deployed chip, and a residual CNN of one's
    own ended one epoch of ``cimsim train --method columnquant`` at 10 % deployed (79 % with
    ``--scale-init engine``). Now the default is ``engine``."""
    from cimsim.cli import _prepare_for, build_parser
    from cimsim.data import load_digits_split
    from cimsim.evaluate import accuracy
    from cimsim.models import load_digits_cnn

    x_train, _, x_test, y_test = load_digits_split()
    x, y = x_test[:96], y_test[:96]
    chip = cimsim.load_chip("rram-22nm")
    args = build_parser().parse_args(["train", "--model", "demo", "--chip", "rram-22nm",
                                      "--method", "columnquant", "--out", "unused"])
    assert args.scale_init == "engine"
    twin = _prepare_for(args, "columnquant", load_digits_cnn(), chip, x_train[:64]).eval()
    deployed = cimsim.deploy(load_digits_cnn(), chip, x_train[:64], seed=0)
    with torch.no_grad():
        assert accuracy(twin, x, y) >= accuracy(deployed, x, y) - 0.05


# --- simulating without labels ----------------------------------------------------------------

def test_simulate_without_labels_prints_the_output_cosine(tmp_path, capsys):
    """Was: ``cimsim simulate`` on an ``.npz`` with no ``y`` (unlabelled inputs of one's own)
    computed the simulated outputs' cosine to the float model, wrote it into report.json and
    report.html, and printed no fidelity figure at all: with labels the terminal shows both
    accuracies, without them only the costs. Now one line gives the cosine report.json has."""
    import json

    import numpy as np

    from cimsim.cli import main
    from cimsim.data import load_digits_split

    _, _, x, _ = load_digits_split()
    data = tmp_path / "unlabelled.npz"
    np.savez(data, x=x[:20].numpy())
    out = tmp_path / "out"
    assert main(["simulate", "--model", "cimsim.models:load_digits_cnn", "--data", str(data),
                 "--chip", "rram-22nm", "--calibration", "8", "--out", str(out)]) == 0
    printed = re.findall(r"^output cosine to float\s+(\S+)$", capsys.readouterr().out, re.M)
    saved = json.loads((out / "report.json").read_text())["summary"]["output_cosine"]
    assert printed == [f"{saved:.4f}"]


# --- which inputs cimsim train used -----------------------------------------------------------

def test_train_header_names_the_rows_limit_keeps(tmp_path):
    """Was: ``cimsim train --data mine.npz --limit 300`` on 1,797 inputs announced '300 training
    / 300 evaluation inputs (first 1347 inputs of mine.npz / last 450)': the pools, not the
    rows used, so it read as if all 1,347 trained. Now it names the rows: 0-299 train,
    1347-1646 evaluate."""
    import numpy as np

    from cimsim.cli import _train_data, build_parser

    data = tmp_path / "mine.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.random((1797, 1, 8, 8), dtype=np.float32),
             y=rng.integers(0, 10, 1797))
    base = ["train", "--model", "cimsim.models:load_digits_cnn", "--data", str(data),
            "--chip", "ideal", "--out", str(tmp_path / "o")]
    _, x_train, _, x_eval, _, what = _train_data(build_parser().parse_args(
        base + ["--limit", "300"]))
    assert (x_train.shape[0], x_eval.shape[0]) == (300, 300)
    assert what == f"inputs 0-299 of {data} train, 1347-1646 evaluate"
    _, x_train, _, x_eval, _, what = _train_data(build_parser().parse_args(base))
    assert (x_train.shape[0], x_eval.shape[0]) == (1347, 450)
    assert what == f"inputs 0-1346 of {data} train, 1347-1796 evaluate"


# --- what the twin's figures at the end of cimsim train leave out -----------------------------

def test_train_says_its_twin_figures_are_noise_free(tmp_path, capsys):
    """Was: on a chip with conversion noise ``cimsim train`` printed 'twin accuracy 46.67 %'
    just above 'simulated accuracy 76.00 %' (a residual CNN of one's own on rram-22nm,
    qat+a-shift, 3 epochs) with nothing saying that the twin is evaluated with its noise off
    and the deployed chip with the chip's noise, and docs/training.md's first example called
    the eval twin 'noise-free, as the engine'. Now both twin lines name the noise they leave
    out; a noise-free chip gets no note."""
    from cimsim.cli import main

    base = ["train", "--model", "demo", "--method", "distill", "--epochs", "1",
            "--limit", "16", "--calibration", "16"]
    assert main(base + ["--chip", "rram-22nm", "--out", str(tmp_path / "noisy")]) == 0
    out = capsys.readouterr().out
    note = "(twin noise off; the deployed chip below adds noise.thermal_sigma_lsb = 0.5)"
    for label in ("twin cosine to float", "twin accuracy"):
        (line,) = [ln for ln in out.splitlines() if ln.startswith(label)]
        assert line.endswith(note), line
    assert main(base + ["--chip", "ideal", "--out", str(tmp_path / "ideal")]) == 0
    assert "twin noise off" not in capsys.readouterr().out

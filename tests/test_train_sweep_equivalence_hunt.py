"""Equivalences of a *trained* model's sweep (``cimsim train ... --sweep``), by the docs.

docs/training.md, ``cimsim train``: "``--sweep AXIS=VALUES`` ... the trained model swept over
any other axis of ``cimsim sweep`` too ... (``time_s=1h,1d,1y`` on a device that ages), or
over a chip field as ``--vary`` takes it (``tech.vdd_v=0.7,0.8``)"; "the chip's own bits give
the run's deployed figures"; "A rerun of the same command resumes the trained checkpoint and
the sweep's points". docs/sweep.md: "each point then deploys what it learned,
``prepared.deploy(seed, chip=point_chip)``" and "Each point runs at its own ``time_s``".

One run on pcm-22nm (a device that ages) trained for ``--time 1h``, swept over ``time_s``,
``tech.vdd_v`` and ``thermal_sigma_lsb`` (8 points), checked against:

- each row == ``prep.deploy(seed, chip=chip_for_point(chip, point), t_inference_s=time_s)``
  by hand on the same held-out inputs, batch size and seed (accuracy, energy, latency exact);
- the row at the chip's own values (1 h, 0.8 V, 0.5 LSB) == the run's ``report.json``;
- ``cimsim.sweep.run_sweep(prepared, ...)`` of the same checkpoint == the CLI's ``sweep.csv``
  (every column, point ids included);
- a rerun of the same command resumes both and rewrites every file byte for byte.

All of these held at the time of writing (no failure found on this angle); they are kept as
regression checks that no other test makes (the existing CLI tests check the own point on
rram-22nm only, for adc bits and thermal noise).
"""
from __future__ import annotations

import json
import math
import warnings

import pandas as pd
import pytest
import torch

import cimsim
from cimsim.cli import _builtin_data, main
from cimsim.evaluate import accuracy
from cimsim.sweep import chip_for_point, run_sweep
from cimsim.train import prepare

N = 32
CHIP = "pcm-22nm"
ARGS = ["train", "--model", "demo", "--chip", CHIP, "--method", "qat", "--limit", str(N),
        "--batch-size", "16", "--calibration", str(N), "--epochs", "1", "--time", "1h",
        "--sweep", "time_s=1h,1d", "--sweep", "tech.vdd_v=0.7,0.8",
        "--sweep", "thermal_sigma_lsb=0,0.5"]
METRICS = ("accuracy", "output_cosine", "energy_pj_per_inference", "latency_ns_per_inference",
           "area_mm2", "tops_per_w", "adc_area_mm2", "n_conversions_per_inference", "n_arrays",
           "status", "on_front", "point_id")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train-sweep")
    assert main(ARGS + ["--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def trained(run):
    """The run's trained twin rebuilt from its checkpoint, and the run's data."""
    model, x_train, _, x_eval, y_eval = _builtin_data("demo")
    x_cal, x_eval, y_eval = x_train[:N], x_eval[:N], y_eval[:N]
    chip = cimsim.load_chip(CHIP)
    prep = prepare(model, chip, x_cal, seed=0, t_inference_s=3600.0)
    prep.load_state_dict(torch.load(run / "checkpoint.pt", weights_only=True)["model"])
    prep.eval()
    return prep, chip, x_cal, x_eval, y_eval


def _points(frame: pd.DataFrame) -> list[dict]:
    axes = [c for c in frame.columns if c not in METRICS]
    points = []
    for _, row in frame.iterrows():
        p = {a: row[a] for a in axes}
        for a in ("array_size", "bits_per_cell", "cols_per_adc", "adc_bits"):
            p[a] = int(p[a])
        points.append(p)
    return points


def test_every_row_is_the_twin_deployed_by_hand_at_that_point(run, trained):
    prep, chip, _, x_eval, y_eval = trained
    frame = pd.read_csv(run / "sweep" / "sweep.csv")
    assert len(frame) == 8 and (frame["status"] == "ok").all()
    for point, (_, row) in zip(_points(frame), frame.iterrows(), strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sim = prep.deploy(0, chip=chip_for_point(chip, point),
                              t_inference_s=float(point["time_s"]))
        acc = accuracy(sim, x_eval, y_eval, batch_size=16)
        totals = sim.report().totals
        assert acc == row["accuracy"], point
        assert totals["energy_pj_per_inference"] == row["energy_pj_per_inference"], point
        assert totals["latency_ns_per_inference"] == row["latency_ns_per_inference"], point


def test_own_point_is_the_runs_deployed_report(run):
    frame = pd.read_csv(run / "sweep" / "sweep.csv")
    chip = cimsim.load_chip(CHIP)
    own = frame[(frame["time_s"] == 3600.0) & (frame["tech.vdd_v"] == chip.tech.vdd_v)
                & (frame["thermal_sigma_lsb"] == chip.noise.thermal_sigma_lsb)]
    assert len(own) == 1
    own = own.iloc[0]
    report = json.loads((run / "report.json").read_text())
    assert report["totals"]["t_inference_s"] == 3600.0
    assert own["accuracy"] == report["summary"]["simulated_accuracy"]
    assert own["energy_pj_per_inference"] == report["totals"]["energy_pj_per_inference"]
    assert own["latency_ns_per_inference"] == report["totals"]["latency_ns_per_inference"]


def test_run_sweep_of_the_checkpoint_equals_the_cli_sweep(run, trained, tmp_path):
    prep, chip, x_cal, x_eval, y_eval = trained
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_sweep(prep, (x_eval, y_eval), chip,
                  {"time_s": [3600.0, 86400.0], "tech.vdd_v": [0.7, 0.8],
                   "thermal_sigma_lsb": [0.0, 0.5]},
                  tmp_path, calibration=x_cal, seed=0, batch_size=16)
    mine = pd.read_csv(tmp_path / "sweep.csv")
    cli = pd.read_csv(run / "sweep" / "sweep.csv")
    assert list(mine.columns) == list(cli.columns)
    for column in cli.columns:
        assert mine[column].equals(cli[column]), column


def test_rerun_of_the_same_command_resumes_and_rewrites_every_file_identically(run, capsys):
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*")
              if p.is_file() and not p.name.endswith(".lock")}
    capsys.readouterr()
    assert main(ARGS + ["--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "resuming from" in out and "8 of 8 points were already in" in out
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*")
             if p.is_file() and not p.name.endswith(".lock")}
    assert after.keys() == before.keys()
    changed = [str(k) for k in before if before[k] != after[k]]
    assert not changed, changed
    assert not math.isnan(pd.read_csv(run / "sweep" / "sweep.csv")["accuracy"].iloc[0])

"""Time on the command line and in sweeps (issue 15): ``simulate --time``, ``sweep --time``,
the ``time_s`` axis of ``run_sweep``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import cimsim
from cimsim.cli import main
from cimsim.config import ChipConfig
from cimsim.data import load_digits_split
from cimsim.errors import ConfigError
from cimsim.sweep import chip_for_point, run_sweep
from tests.test_sweep import tiny_model

DAY_S = 86400.0


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    _, _, x, y = load_digits_split()
    d = tmp_path_factory.mktemp("drift_cli")
    np.savez(d / "test.npz", x=x[:48].numpy(), y=y[:48].numpy())
    return d / "test.npz"


def test_simulate_time_writes_a_report_per_time(data_file, tmp_path, capsys):
    rc = main(["simulate", "--model", "tests.test_sweep:tiny_model", "--data", str(data_file),
               "--chip", "pcm-22nm", "--out", str(tmp_path), "--calibration", "16",
               "--time", "1,1d,10y"])
    assert rc == 0
    frame = pd.read_csv(tmp_path / "time.csv")
    assert frame["time"].tolist() == ["1", "1d", "10y"]
    assert frame["time_s"].tolist() == [1.0, DAY_S, 10 * 365 * DAY_S]
    assert frame["accuracy"].between(0, 1).all()
    for label in ("1", "1d", "10y"):
        assert (tmp_path / f"t_{label}" / "layers.csv").is_file()
    assert (tmp_path / "accuracy_time.png").stat().st_size > 0
    assert "t = 1d (86400 s after programming)" in capsys.readouterr().out


@pytest.mark.parametrize(("time", "fragment"), [
    ("0.5", "t_inference_s = 0.5 is invalid"),
    ("-1h", "t_inference_s = -3600.0 is invalid"),
    ("1fortnight", "is not a duration"),
    ("nan", "is not a duration"),
])
def test_bad_time_is_one_line_exit_2(data_file, tmp_path, capsys, time, fragment):
    for cmd in (["simulate", "--model", "tests.test_sweep:tiny_model", "--data",
                 str(data_file)], ["sweep", "--model", "demo", "--adc-bits", "6"]):
        rc = main(cmd + ["--chip", "pcm-22nm", "--out", str(tmp_path / cmd[0]),
                         f"--time={time}"])
        assert rc == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--time" in err[0] and fragment in err[0]


def test_sweep_time_axis(tmp_path):
    _, _, x, y = load_digits_split()
    chip = cimsim.load_chip("pcm-22nm")
    times = [1.0, 3600.0, 365 * DAY_S]
    frame = run_sweep(tiny_model(), (x[:48], y[:48]), chip, {"adc_bits": [6], "time_s": times},
                      tmp_path, calibration=16, progress=False)
    assert frame["time_s"].tolist() == times and (frame["status"] == "ok").all()
    assert (tmp_path / "accuracy_time.png").stat().st_size > 0
    # a point is the deploy at that time
    sim = cimsim.deploy(tiny_model(), chip, x[:16], t_inference_s=3600.0)
    with torch.no_grad():
        acc = float((sim(x[16:48]).argmax(1) == y[16:48]).float().mean())
    assert frame["accuracy"].iloc[1] == pytest.approx(acc)
    # the base chip's t0 keeps the id a sweep without the axis gives
    plain = run_sweep(tiny_model(), (x[:48], y[:48]), chip, {"adc_bits": [6]},
                      tmp_path / "plain", calibration=16, progress=False)
    assert plain["point_id"].iloc[0] == frame["point_id"].iloc[0]
    assert plain["time_s"].iloc[0] == chip.device.drift_t0_s
    # into the time sweep's folder: its accuracy_time.png would pass for this sweep's
    run_sweep(tiny_model(), (x[:48], y[:48]), chip, {"adc_bits": [6]}, tmp_path,
              calibration=16, progress=False)
    assert not (tmp_path / "accuracy_time.png").exists()
    # sweep.json's chip reads back, its infinite on/off ratio included (was null: refused)
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert ChipConfig.from_dict(doc["chip_config"]) == chip
    with pytest.raises(ConfigError, match="time_s = -1"):
        chip_for_point(chip, {"time_s": -1})


def test_a_simulate_into_an_earlier_ones_folder_leaves_only_its_own_files(data_file,
                                                                          tmp_path):
    """The files of an earlier run there that this one does not write (other times' folders,
    time.csv, accuracy_time.png, the plain run's report) were left beside the new ones."""
    def run(*extra: str) -> set[str]:
        assert main(["simulate", "--model", "tests.test_sweep:tiny_model", "--data",
                     str(data_file), "--chip", "pcm-22nm", "--out", str(tmp_path),
                     "--calibration", "16", *extra]) == 0
        return {p.name for p in tmp_path.iterdir()}

    assert {"t_1", "t_1d", "time.csv", "accuracy_time.png"} <= run("--time", "1,1d")
    plain = run()
    assert "report.json" in plain and not plain & {"t_1", "t_1d", "time.csv",
                                                   "accuracy_time.png"}
    timed = run("--time", "1d")
    assert timed == {"t_1d", "time.csv", "accuracy_time.png"}


def test_simulate_time_on_a_device_that_does_not_age_says_so(data_file, tmp_path, capsys):
    rc = main(["simulate", "--model", "tests.test_sweep:tiny_model", "--data", str(data_file),
               "--chip", "rram-22nm", "--out", str(tmp_path), "--calibration", "16",
               "--time", "1,1d"])
    assert rc == 0  # it runs (a flat curve), and says why it is flat
    err = capsys.readouterr().err
    assert "--time: the chip's device does not change after programming" in err
    # flat indeed: every time draws the same conversion noise (they differed by fresh draws)
    frame = pd.read_csv(tmp_path / "time.csv")
    assert len(frame) == 2 and frame["accuracy"].nunique() == 1
    one, two = (pd.read_csv(tmp_path / f"t_{t}" / "layers.csv") for t in ("1", "1d"))
    pd.testing.assert_frame_equal(one, two)


def test_simulate_time_sees_each_time_as_the_sweep_does(data_file, tmp_path):
    """`simulate --time 1,1d,10y` on pcm-22nm gave another accuracy at 10 years than
    `sweep --time` with the same seed and batches (35 % against 41 % on a small attention
    model): its later times ran on the noise stream the earlier times had moved on. Each time
    now restarts it, as each sweep point starts from deploy."""
    rc = main(["simulate", "--model", "tests.test_sweep:tiny_model", "--data", str(data_file),
               "--chip", "pcm-22nm", "--out", str(tmp_path / "sim"), "--calibration", "16",
               "--batch-size", "8", "--time", "1,1d,10y"])
    assert rc == 0
    rc = main(["sweep", "--model", "tests.test_sweep:tiny_model", "--data", str(data_file),
               "--chip", "pcm-22nm", "--out", str(tmp_path / "sweep"), "--calibration", "16",
               "--batch-size", "8", "--adc-bits", "6", "--time", "1,1d,10y"])
    assert rc == 0
    sim = pd.read_csv(tmp_path / "sim" / "time.csv")["accuracy"]
    swept = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert sim.tolist() == swept["accuracy"].tolist()
    # and the same energy: each time counts the compensation's reference read at t0, as
    # deploy does (simulate counted only the read at t: ~109 pJ less per digits inference)
    energy = [json.loads((tmp_path / "sim" / f"t_{label}" / "report.json").read_text())
              ["totals"]["energy_pj_per_inference"] for label in ("1", "1d", "10y")]
    np.testing.assert_allclose(energy, swept["energy_pj_per_inference"], rtol=1e-12)


def test_reset_noise_restarts_the_draws():
    _, _, x, _ = load_digits_split()
    sim = cimsim.deploy(tiny_model(), "rram-22nm", x[:16], seed=3)
    with torch.no_grad():
        first, second = sim(x[16:24]), sim(x[16:24])
        assert not torch.equal(first, second)  # a chip read again: fresh noise
        sim.reset()
        assert not torch.equal(sim(x[16:24]), first)  # events forgotten, the stream goes on
        sim.reset(noise=True)
        assert torch.equal(sim(x[16:24]), first) and torch.equal(sim(x[16:24]), second)
    assert sim.n_calls == 2


def test_one_time_spelt_twice_is_run_once_in_a_folder_without_spaces():
    """``--time 1h,3600,'1 h'`` ran the same time three times, one folder named ``t_1 h``."""
    from cimsim.cli import _time_values

    chip = cimsim.load_chip("pcm-22nm")
    assert _time_values("--time", "1h,3600, 1 h ,1d", chip) == [("1h", 3600.0),
                                                               ("1d", 86400.0)]


def test_the_report_says_the_time_it_was_seen_at(tmp_path):
    """report.json said nothing of the time after programming (only simulate's folder name)."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 4))
    x = torch.rand(8, 16)
    sim = cimsim.deploy(model, "pcm-22nm", x, t_inference_s=3600.0)
    sim(x)
    report = sim.report()
    assert report.totals["t_inference_s"] == 3600.0
    assert ("time after programming", "3600 s (devices aged to it)", "simulated") in \
        report.summary_rows()
    report.save(tmp_path)
    import json

    assert json.loads((tmp_path / "report.json").read_text())["totals"]["t_inference_s"] == 3600


def test_a_simulate_time_stopped_midway_leaves_the_earlier_run_whole(data_file, tmp_path,
                                                                      monkeypatch):
    """A second `--time` run into the folder stopped at its last time had rewritten its first
    times' folders: they, the earlier run's other folders and its time.csv mixed two runs
    (another seed) with nothing to tell them apart. The reports are written once every time
    has run: the stopped run leaves the earlier one's files as they were."""
    import cimsim.cli as cli

    args = ["simulate", "--model", "tests.test_sweep:tiny_model", "--data", str(data_file),
            "--chip", "pcm-22nm", "--out", str(tmp_path), "--calibration", "16",
            "--time", "1,1d"]
    assert main([*args, "--seed", "0"]) == 0
    before = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    real, calls = cli._evaluate, []

    def stopped_at_the_last_time(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(cli, "_evaluate", stopped_at_the_last_time)
    assert main([*args, "--seed", "7"]) == 130  # interrupted
    after = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    assert after == before

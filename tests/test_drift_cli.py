"""Time on the command line and in sweeps (issue 15): ``simulate --time``, ``sweep --time``,
the ``time_s`` axis of ``run_sweep``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import cimsim
from cimsim.cli import main
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
    with pytest.raises(ConfigError, match="time_s = -1"):
        chip_for_point(chip, {"time_s": -1})


def test_simulate_time_on_a_device_that_does_not_age_says_so(data_file, tmp_path, capsys):
    rc = main(["simulate", "--model", "tests.test_sweep:tiny_model", "--data", str(data_file),
               "--chip", "rram-22nm", "--out", str(tmp_path), "--calibration", "16",
               "--time", "1,1d"])
    assert rc == 0  # it runs (a flat curve), and says why it is flat
    err = capsys.readouterr().err
    assert "--time: the chip's device does not change after programming" in err
    # (the accuracies still differ by the conversion noise drawn afresh at each time)
    assert len(pd.read_csv(tmp_path / "time.csv")) == 2

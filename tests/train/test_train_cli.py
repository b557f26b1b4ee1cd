"""``cimsim train --method pim-qat|columnquant`` (issue 11) on the demo model."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import torch

from cimsim.cli import main
from cimsim.train.columnquant import columnquant_chip
from cimsim.train.pimqat import pim_chip

ARGS = ["train", "--model", "demo", "--limit", "24", "--batch-size", "12", "--calibration",
        "24", "--epochs", "1"]


@pytest.mark.slow  # ~1 min on the shared 2-core machine (deploy, report)
def test_cli_pim_qat_adjusted_precision_and_bn_calibration(tmp_path, capsys):
    chip = tmp_path / "pim.toml"
    pim_chip("bit-serial", adc_bits=5, rows=64).save(chip)
    out = tmp_path / "run"
    assert main(ARGS + ["--chip", str(chip), "--method", "pim-qat", "--train-adc-bits", "4",
                        "--no-backward-rescale", "--bn-calibration", "24",
                        "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "method pim-qat" in text and "simulated accuracy" in text
    assert "BatchNorm calibrated on the deployed model: 0 modules" in text  # the demo has none
    assert json.loads((out / "training.json").read_text())["method"] == "pim-qat"


@pytest.mark.slow
def test_cli_columnquant(tmp_path, capsys):
    chip = tmp_path / "cq.toml"
    columnquant_chip(psum_bits=3).save(chip)
    out = tmp_path / "run"
    assert main(ARGS + ["--chip", str(chip), "--method", "columnquant", "--weight-scale",
                        "array", "--psum-scale", "column", "--psum-centre", "batch",
                        "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "method columnquant" in text and "simulated accuracy" in text


@pytest.mark.slow
def test_cli_columnquant_option_3(tmp_path, capsys):
    chip = tmp_path / "cq.toml"
    columnquant_chip(psum_bits=3).save(chip)  # 2-bit cells: option 3 makes them binary
    out = tmp_path / "run"
    assert main(ARGS + ["--chip", str(chip), "--method", "columnquant",
                        "--weight-decomposition", "ternary", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "method columnquant" in text and "simulated accuracy" in text


def test_cli_refuses_bad_method_options(tmp_path, capsys):
    for extra in (["--method", "columnquant", "--weight-scale", "row"],
                  ["--method", "columnquant", "--psum-centre", "mean"],
                  ["--method", "pim-qat", "--train-adc-bits", "0"],
                  ["--method", "pimqat"],
                  # a key given twice kept the last value, silently
                  ["--method", "qat+bitaug", "--option", "bitaug_bits=7",
                   "--option", "bitaug_bits=8"]):
        assert main(ARGS + ["--chip", "ideal", "--out", str(tmp_path / "x")] + extra) == 2
        assert capsys.readouterr().err.count("\n") == 1  # one line


@pytest.mark.parametrize("extra, message", [
    (["--loss", "cosine"], "--loss: read by --method distill only, here --method qat"),
    (["--bn-calibration", "5"], "--bn-calibration: read by --method pim-qat only"),
    (["--no-backward-rescale"], "--no-backward-rescale: read by --method pim-qat only"),
    (["--method", "distill", "--num-sigma", "3"], "--num-sigma: read by --method columnquant"),
    (["--method", "columnquant", "--train-adc-bits", "4"], "--train-adc-bits: read by --method "
     "pim-qat only, here --method columnquant"),
    (["--method", "qat+a-shift", "--weight-scale", "layer"], "--weight-scale: read by --method "
     "columnquant only, here --method qat\\+a-shift"),
    # given at their defaults (or abbreviated) they were taken and ignored: given at all
    (["--loss", "mse"], "--loss: read by --method distill only, here --method qat"),
    (["--los", "mse"], "--loss: read by --method distill only"),
    (["--weight-scale", "column"], "--weight-scale: read by --method columnquant only"),
    (["--method", "pim-qat", "--psum-centre", "frozen"], "--psum-centre: read by --method "
     "columnquant only, here --method pim-qat"),
])
def test_cli_refuses_a_flag_of_another_method(tmp_path, capsys, extra, message):
    """A flag only another base method reads would be ignored (a qat run with --loss or
    --bn-calibration ran and calibrated nothing): refused before anything is written."""
    out = tmp_path / "x"
    assert main(ARGS + ["--chip", "ideal", "--out", str(out)] + extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    assert not out.exists()


def test_cli_trains_the_pcm_preset_for_a_time(tmp_path, capsys):
    # a device that ages: trained for, and deployed at, one day after programming
    out = tmp_path / "run"
    assert main(ARGS + ["--chip", "pcm-22nm", "--set", "array.allow_time_multiplexing=true",
                        "--time", "1d", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "seen 86400 s after programming" in text and "simulated accuracy" in text
    assert json.loads((out / "training.json").read_text())["t_inference_s"] == 86400.0


@pytest.mark.parametrize("time,message", [
    ("1d,1y", "train takes one time"),
    ("0.5", "drift_t0_s = 1"),
    ("soon", "not a duration"),
])
def test_cli_refuses_a_bad_training_time(tmp_path, capsys, time, message):
    assert main(ARGS + ["--chip", "pcm-22nm", "--time", time,
                        "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--time" in err and message in err


def test_cli_time_on_a_device_that_does_not_age_warns(tmp_path, capsys):
    with warnings.catch_warnings(record=True) as caught:  # once: not prepare's warning too
        warnings.simplefilter("always")
        assert main(ARGS + ["--chip", "ideal", "--time", "1h",
                            "--out", str(tmp_path / "x")]) == 0
    err = capsys.readouterr().err
    assert "--time" in err and err.count("does not change after programming") == 1
    assert not [w for w in caught if "does not change after programming" in str(w.message)]


class _DictOut(torch.nn.Module):
    """A classifier whose output is a dict with the logits (as a ModelOutput is)."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(16, 12), torch.nn.ReLU(),
                                        torch.nn.Linear(12, 4))

    def forward(self, x):
        return {"logits": self.body(x)}


def dict_out() -> torch.nn.Module:
    torch.manual_seed(0)
    return _DictOut().eval()


def test_cli_qat_trains_on_the_logits_of_a_dict_output(tmp_path, capsys):
    """``--method qat`` on a model returning {'logits': ...} (its labels were checked on the
    logits) was a TypeError traceback out of cross_entropy."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.random((24, 16), dtype=np.float32),
             y=rng.integers(0, 4, 24))
    assert main(["train", "--model", "tests.train.test_train_cli:dict_out", "--data",
                 str(tmp_path / "data.npz"), "--chip", "ideal", "--method", "qat", "--epochs",
                 "1", "--calibration", "8", "--batch-size", "8",
                 "--out", str(tmp_path / "out")]) == 0
    assert "simulated accuracy" in capsys.readouterr().out


def test_cli_refuses_a_folder_named_as_its_checkpoint_before_training(tmp_path, capsys):
    """checkpoint.pt a folder read as 'no checkpoint': an epoch trained, then the write
    failed; training.json a folder: every epoch trained first."""
    for name in ("checkpoint.pt", "training.json"):
        out = tmp_path / name.split(".")[0]
        (out / name).mkdir(parents=True)
        assert main(ARGS + ["--chip", "ideal", "--out", str(out)]) == 2
        captured = capsys.readouterr()
        assert f"{name} is a folder where train writes a file" in captured.err
        assert "epoch 1/1" not in captured.out


def test_cli_writes_the_training_summary_with_the_report(tmp_path, capsys, monkeypatch):
    """training.json was written before the deploy: a stop in the deploy or the evaluation
    left a summary of these epochs beside an earlier run's report."""
    import cimsim.cli as cli

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_evaluate", stop)
    out = tmp_path / "x"
    assert main(ARGS + ["--chip", "ideal", "--out", str(out)]) == 130
    assert (out / "checkpoint.pt").is_file() and not (out / "training.json").exists()


def test_cli_names_train_adc_bits_on_a_calibrated_chip_by_its_flag_before_the_model(
        tmp_path, capsys, monkeypatch):
    """Was refused by prepare_pimqat after the model and data loaded, naming the Python
    field (train_adc_bits = 5 ...)."""
    import cimsim.cli as cli

    def no_data(*_a, **_k):
        raise AssertionError("the data loaded before the refusal")

    monkeypatch.setattr(cli, "_train_data", no_data)
    assert main(ARGS + ["--chip", "rram-22nm", "--method", "pim-qat", "--train-adc-bits", "5",
                        "--set", "adc.kind=ramp", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--train-adc-bits = 5 on chip 'rram-22nm'" in err
    assert "--set adc.range_policy=full_scale" in err and "train_adc_bits" not in err

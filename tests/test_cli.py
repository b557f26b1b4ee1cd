"""The command line through ``cimsim.cli.main([...])``: every command and error path."""

from __future__ import annotations

import html
import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import cimsim
import cimsim.evaluate
from cimsim.cli import main
from cimsim.data import load_digits_split
from cimsim.models import load_digits_cnn


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory):
    """The digits test split as .npz and tensor files, and the model as .pt2 and TorchScript."""
    d = tmp_path_factory.mktemp("digits")
    model = load_digits_cnn()
    _, _, x, y = load_digits_split()
    x, y = x[:64], y[:64]
    np.savez(d / "test.npz", x=x.numpy(), y=y.numpy())
    np.savez(d / "nolabels.npz", x=x.numpy())
    np.savez(d / "wrongkey.npz", inputs=x.numpy())
    torch.save({"x": x, "y": y}, d / "test.pt")
    ep = torch.export.export(model, (x[:4],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, d / "model.pt2")
    torch.jit.script(model).save(str(d / "model.ts"))
    (d / "garbage.bin").write_bytes(b"not a model")
    return d


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert cimsim.__version__ in capsys.readouterr().out


def test_python_dash_m_runs_the_command():
    """``python -m cimsim`` failed with "No module named cimsim.__main__"."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "cimsim", "--version"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0 and cimsim.__version__ in done.stdout
    done = subprocess.run([sys.executable, "-m", "cimsim", "datasheet", "no-such-chip"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and done.stderr.startswith("cimsim: error: ")


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_presets_lists_every_preset(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in cimsim.list_presets():
        assert name in out


def test_demo_fast_lossless_equals_quantized(tmp_path, capsys, monkeypatch):
    """On the lossless chip the demo's predictions are the integer-quantized model's, input by
    input, and the printed accuracy is that model's."""
    from cimsim.mapping import SimModel
    from tests.mapping.conftest import assert_bitwise, reference_model

    calls: list[tuple] = []
    real = cimsim.evaluate._predict  # what accuracy and predict run

    def recording(model, x, *args):
        pred, n_classes, n_nan = real(model, x, *args)
        calls.append((model, x, pred))
        return pred, n_classes, n_nan

    monkeypatch.setattr(cimsim.evaluate, "_predict", recording)
    assert main(["demo", "--fast", "--chip", "ideal", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    (sim, x, pred), = [c for c in calls if isinstance(c[0], SimModel)]
    _, _, x_test, y_test = load_digits_split()
    assert torch.equal(x, x_test[:96]) and sim.chip.name == "ideal"
    ref = reference_model(load_digits_cnn(), sim)
    with torch.no_grad():
        ref_logits = ref(x)
        assert_bitwise(sim(x), ref_logits)
    ref_pred = ref_logits.argmax(1)
    assert torch.equal(pred, ref_pred)  # what the demo measured
    ref_acc = float((ref_pred == y_test[:96]).double().mean())
    assert f"{'simulated accuracy':<24}{100 * ref_acc:.2f} %" in out
    assert (tmp_path / "report.json").is_file() and (tmp_path / "layers.csv").is_file()
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["chip"]["name"] == "ideal"
    assert len(data["layers"]) == 5


def unmappable_model() -> nn.Module:
    """No Linear/Conv/attention layer: nothing for the arrays (a ``module:function`` model)."""
    return nn.Sequential(nn.Flatten(), nn.ReLU()).eval()


def test_simulate_issue9_no_mappable_layer_is_one_line(digits_files, tmp_path, capsys):
    """Issue 9: a model with no mappable layer ended in a pandas KeyError traceback."""
    rc = main(["simulate", "--model", "tests.test_cli:unmappable_model", "--data",
               str(digits_files / "test.npz"), "--chip", "ideal", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("cimsim: error: ") and "no layer can be mapped" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "report.json").exists()


@pytest.mark.parametrize("model_kind", ["model.pt2", "model.ts", "module"])
def test_simulate_each_model_format(digits_files, tmp_path, capsys, model_kind):
    model = ("cimsim.models:load_digits_cnn" if model_kind == "module"
             else str(digits_files / model_kind))
    rc = main(["simulate", "--model", model, "--data", str(digits_files / "test.npz"),
               "--chip", "ideal", "--out", str(tmp_path), "--calibration", "32"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "simulated accuracy" in out
    assert (tmp_path / "layers.csv").is_file()


@pytest.mark.parametrize("model", ["demo", "resnet-digits"])
def test_simulate_takes_the_bundled_models_as_sweep_and_train_do(tmp_path, capsys, model):
    """``simulate --model demo`` was refused in two steps (argparse first asked for --data, then
    simulate refused the name): a bundled model runs on the digits test split, calibrated on
    the first --calibration training images, as ``sweep --model demo`` does."""
    assert main(["simulate", "--model", model, "--chip", "ideal", "--out", str(tmp_path),
                 "--calibration", "32", "--limit", "16"]) == 0
    out, err = capsys.readouterr()
    assert "16 test inputs evaluated, 32 training images calibrate" in out
    # the test split is evaluated, not the calibration images: no "leaves no input" warning
    assert "leaves no input" not in err
    assert "simulated accuracy" in out and (tmp_path / "report.json").is_file()
    assert main(["simulate", "--model", model, "--data", "x.npz", "--chip", "ideal",
                 "--out", str(tmp_path)]) == 2
    assert f"--data: --model {model} brings its own data" in capsys.readouterr().err
    assert main(["simulate", "--model", "cimsim.models:load_digits_cnn", "--chip", "ideal",
                 "--out", str(tmp_path)]) == 2
    assert "--data is required with --model" in capsys.readouterr().err


def test_simulate_tensor_file_and_no_labels(digits_files, tmp_path, capsys):
    assert main(["simulate", "--model", "cimsim.models:load_digits_cnn", "--data",
                 str(digits_files / "test.pt"), "--chip", "ideal", "--out", str(tmp_path),
                 "--limit", "16"]) == 0
    assert main(["simulate", "--model", "cimsim.models:load_digits_cnn", "--data",
                 str(digits_files / "nolabels.npz"), "--chip", "ideal", "--out",
                 str(tmp_path), "--limit", "16"]) == 0
    out = capsys.readouterr().out
    assert out.count("simulated accuracy") == 1  # only the labelled run has an accuracy


@pytest.mark.parametrize("case, fragment", [
    ("missing_model", "not found"),
    ("missing_data", "not found"),
    ("bad_chip", "unknown chip preset"),
    ("missing_chip_file", "not found"),
    ("model_not_an_archive", "not a TorchScript or torch.export"),
    ("data_wrong_format", "not a tensor file"),
    ("npz_without_x", "no array 'x', and 'inputs' is no keyword input of"),
    ("bad_module", "cannot import module"),
    ("bad_function", "has no callable"),
])
def test_simulate_errors_one_line_exit_2(digits_files, tmp_path, capsys, case, fragment):
    d = digits_files
    args = {"model": str(d / "model.pt2"), "data": str(d / "test.npz"), "chip": "ideal"}
    args.update({
        "missing_model": {"model": str(d / "nope.pt2")},
        "missing_data": {"data": str(d / "nope.npz")},
        "bad_chip": {"chip": "no-such-chip"},
        "missing_chip_file": {"chip": str(d / "nope.toml")},
        "model_not_an_archive": {"model": str(d / "garbage.bin")},
        "data_wrong_format": {"data": str(d / "garbage.bin")},
        "npz_without_x": {"data": str(d / "wrongkey.npz")},
        "bad_module": {"model": "no_such_module_xyz:build"},
        "bad_function": {"model": "cimsim.models:no_such_function"},
    }[case])
    rc = main(["simulate", "--model", args["model"], "--data", args["data"], "--chip",
               args["chip"], "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert fragment in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_chip_value_in_toml(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[adc]\nbits = 0\n')
    assert main(["demo", "--fast", "--chip", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "ADCConfig.bits" in err and "Traceback" not in err


def test_report_rerenders_saved_folder(tmp_path, capsys):
    assert main(["demo", "--fast", "--chip", "ideal", "--out", str(tmp_path / "a")]) == 0
    assert main(["report", str(tmp_path / "a"), "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "report.json").is_file()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err


# --- cimsim train ---------------------------------------------------------------------------

TRAIN = ["train", "--model", "demo", "--chip", "rram-22nm", "--limit", "32", "--batch-size",
         "16", "--calibration", "32"]


@pytest.fixture
def epochs_run(monkeypatch):
    """The epochs each ``cimsim train`` call trains, recorded."""
    import cimsim.train.loop as loop

    calls: list[int] = []
    real = loop.train_epoch

    def spy(*args, **kwargs):
        calls.append(kwargs["epoch"])
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_epoch", spy)
    return calls


def _checkpoint(out):
    return torch.load(out / "checkpoint.pt", weights_only=True)


def test_train_one_epoch_writes_checkpoint_and_report(tmp_path, capsys):
    assert main(TRAIN + ["--method", "qat", "--epochs", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "simulated accuracy" in out and "twin accuracy" in out
    state = _checkpoint(tmp_path)
    assert state["epoch"] == 1 and len(state["loss"]) == 1
    assert set(state) == {"epoch", "model", "optimizer", "loss", "batch_loss", "run",
                          "untrained"}
    assert len(state["batch_loss"]) == 1 and len(state["batch_loss"][0]) >= 1
    assert all(isinstance(v, torch.Tensor) for v in state["model"].values())
    assert not (tmp_path / "checkpoint.pt.tmp").exists()
    summary = json.loads((tmp_path / "training.json").read_text())
    assert summary["epochs"] == 1 and 0 <= summary["twin_accuracy"] <= 1
    # the untrained model on the chip, before training: what the training is to improve
    assert out.index("untrained on the chip") < out.index("epoch 1/1")
    assert 0 <= summary["untrained_accuracy"] <= 1
    assert state["untrained"] == {"untrained_accuracy": summary["untrained_accuracy"]}
    # the same report as `cimsim simulate`
    for name in ("report.json", "report.html", "layers.csv", "training.png"):
        assert (tmp_path / name).is_file()


def test_train_says_when_the_trained_model_deployed_below_the_untrained_one(tmp_path, capsys):
    """The run printed 'untrained on the chip 96.88 %' and, many lines later, 'simulated
    accuracy 9.38 %', and nothing said the training had cost accuracy (a rate far too high
    here; PIM-QAT's forward rescaling on a calibrated chip in a user's transformer)."""
    from cimsim.cli import _below_untrained

    assert main(TRAIN + ["--method", "qat", "--epochs", "1", "--lr", "0.3",
                         "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "training.json").read_text())
    assert summary["untrained_accuracy"] > summary["twin_accuracy"]  # the rate wrecked it
    note = [line for line in out.splitlines() if line.startswith("note: the trained model")]
    assert len(note) == 1 and "a lower --lr" in note[0]
    assert summary["note"] == note[0].removeprefix("note: ")
    assert "--no-forward-rescale" not in note[0]  # not PIM-QAT
    rram, ideal = cimsim.load_chip("rram-22nm"), cimsim.load_chip("ideal")
    assert _below_untrained(0.9, {"untrained_accuracy": 0.9}, rram, True) is None
    assert _below_untrained(0.5, {"untrained": "not deployed: ..."}, rram, True) is None
    pim = _below_untrained(0.8, {"untrained_accuracy": 0.9}, rram, True)
    assert "(accuracy 80.00 % against 90.00 %)" in pim and "--no-forward-rescale" in pim
    assert "--no-forward-rescale" not in _below_untrained(0.8, {"untrained_accuracy": 0.9},
                                                          ideal, True)  # full-scale ranges
    assert "(cosine 0.9000 against 0.9500)" in _below_untrained(
        0.9, {"untrained_cosine_to_float": 0.95}, rram, False)


def test_train_sweeps_the_trained_model_over_adc_bits(tmp_path, capsys):
    """--sweep-adc-bits: after training, the trained twin swept into OUT/sweep (each point
    deploys what it learned; on rram-22nm's calibrated ADC the learned range on each grid),
    on the run's held-out inputs: the chip's own bits give the run's deployed accuracy and
    energy. A bad value, or --bn-calibration (the points re-estimate no BatchNorm), is one line
    before training."""
    assert main(TRAIN + ["--method", "qat", "--epochs", "1", "--sweep-adc-bits", "4,6",
                         "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "sweep of the trained model over ADC bits" in out and "Pareto front" in out
    frame = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert frame["adc_bits"].tolist() == [4, 6] and (frame["status"] == "ok").all()
    report = json.loads((tmp_path / "report.json").read_text())
    own = frame[frame["adc_bits"] == cimsim.load_chip("rram-22nm").adc.bits].iloc[0]
    assert own["accuracy"] == report["summary"]["simulated_accuracy"]
    assert own["energy_pj_per_inference"] == pytest.approx(
        report["totals"]["energy_pj_per_inference"], rel=1e-9)
    bad = tmp_path / "bad"
    (bad / "elsewhere").mkdir(parents=True)
    (bad / "elsewhere" / "sweep").write_text("a file where the sweep's folder goes")
    for extra, message in ((["--sweep-adc-bits", "4-x"], "--sweep-adc-bits: '4-x'"),
                           (["--sweep-adc-bits", "4", "--method", "pim-qat",
                             "--bn-calibration", "8"], "--sweep-adc-bits with --bn-calibration"),
                           # a value out of range, or none the model deploys at, was refused
                           # after the whole training
                           (["--sweep-adc-bits", "4,25"],
                            "--sweep-adc-bits: sweep point {'adc_bits': 25}: ADCConfig.bits = 25"),
                           (["--sweep-adc-bits", "5", "--method", "columnquant"],
                            "--sweep-adc-bits: the trained model can be deployed at none of "
                            "adc_bits 5 (at {'adc_bits': 5}: deploy(chip=...)"),
                           (["--sweep-adc-bits", "6", "--out", str(bad / "elsewhere")],
                            "is a file, not a folder")):
        assert main(TRAIN + ["--epochs", "1", "--out", str(bad), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("cimsim: error: ") and message in err, err
        assert not list(bad.rglob("checkpoint.pt"))


def test_train_sweeps_the_trained_model_over_other_axes(tmp_path, capsys):
    """--sweep AXIS=VALUES: the trained model over noise and a chip field, with or without
    --sweep-adc-bits; the noise-free chip's own point is the run's deployed figures at that
    noise; points deploy refuses (other input bits: the twin's quantization) are skipped; bad
    axes and values are one line before training."""
    chip = cimsim.load_chip("rram-22nm")
    assert main(TRAIN + ["--method", "qat", "--epochs", "1", "--sweep",
                         f"thermal_sigma_lsb=0,{chip.noise.thermal_sigma_lsb}", "--sweep",
                         "input_bits=4,8", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "sweep of the trained model over thermal_sigma_lsb, input_bits" in out
    frame = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert frame["input_bits"].tolist() == [4, 4, 8, 8]
    assert frame["thermal_sigma_lsb"].tolist() == [0.0, chip.noise.thermal_sigma_lsb] * 2
    assert frame["status"].iloc[:2].str.startswith("skipped: deploy(chip=...)").all()
    assert (frame["status"].iloc[2:] == "ok").all()
    report = json.loads((tmp_path / "report.json").read_text())
    own = frame.iloc[3]
    assert own["accuracy"] == report["summary"]["simulated_accuracy"]
    assert own["energy_pj_per_inference"] == pytest.approx(
        report["totals"]["energy_pj_per_inference"], rel=1e-9)
    bad = tmp_path / "bad"
    for extra, message in (
            (["--sweep", "thermal_sigma_lsb=0,x"], "--sweep thermal_sigma_lsb: '0,x' is not"),
            (["--sweep", "adc_bits=4", "--sweep-adc-bits", "5"], "axis 'adc_bits' given twice"),
            (["--sweep", "adc.bits=4"], "sweep it as the axis adc_bits"),
            (["--sweep", "input_bits"], "--sweep 'input_bits' is invalid"),
            (["--sweep", "input_bits=40"], "--sweep: sweep point {'input_bits': 40}: "
                                           "ChipConfig.input_bits"),
            (["--sweep", "time_s=1h"], "--sweep: sweep point {'time_s': 3600.0}: time_s = "
                                       "3600.0: the chip's device does not change"),
            (["--sweep", "input_bits=4"], "--sweep: the trained model can be deployed at none "
                                          "of input_bits 4 (at {'input_bits': 4}: deploy("
                                          "chip=...)"),
            (["--sweep", "thermal_sigma_lsb=0", "--method", "pim-qat", "--bn-calibration", "8"],
             "--sweep with --bn-calibration")):
        assert main(TRAIN + ["--epochs", "1", "--out", str(bad), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("cimsim: error: ") and message in err, (extra, err)
        assert len(err.strip().splitlines()) == 1, err
        assert not list(bad.rglob("checkpoint.pt"))


def test_train_sweeps_a_columnquant_model_on_its_methods_chip(tmp_path, capsys):
    """ColumnQuant trains on its own chip (per-column weight scales, its decomposition): the
    sweep was handed the command line's, every point refused after the training ('differs
    from the prepared chip'); it sweeps where the run deployed, its own bits as the run's
    figures, other bits skipped (its centre is the twin's bits')."""
    assert main(TRAIN + ["--method", "columnquant", "--psum-centre", "batch", "--epochs", "1",
                         "--sweep-adc-bits", "5,6", "--out", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    report = json.loads((tmp_path / "report.json").read_text())
    assert frame["status"].iloc[0].startswith("skipped: deploy(chip=...)")
    own = frame.iloc[1]
    assert own["status"] == "ok"
    assert own["accuracy"] == report["summary"]["simulated_accuracy"]
    assert own["energy_pj_per_inference"] == pytest.approx(
        report["totals"]["energy_pj_per_inference"], rel=1e-9)


def test_train_sweep_without_labels_takes_the_cosine_the_run_reports(tmp_path, capsys,
                                                                    monkeypatch):
    """Without labels a point's output cosine was measured against the trained twin's float
    copy, the run's report against the float model it started from: the chip's own bits
    showed another figure than the run's (0.989 against 0.986). The sweep now takes the run's
    reference; no Pareto front is said to be for want of labels."""
    x = load_digits_split()[2][:64]
    np.savez(tmp_path / "x.npz", x=x.numpy())
    (tmp_path / "demo_module.py").write_text(
        "from cimsim.models import load_digits_cnn\n\ndef demo():\n    return load_digits_cnn()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    assert main(["train", "--model", "demo_module:demo", "--data", str(tmp_path / "x.npz"),
                 "--chip", "rram-22nm", "--method", "distill", "--limit", "32", "--batch-size",
                 "16", "--calibration", "32", "--epochs", "1", "--sweep-adc-bits", "4,6",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    own = pd.read_csv(out / "sweep" / "sweep.csv").iloc[1]
    assert own["adc_bits"] == 6 and own["status"] == "ok"
    assert own["output_cosine"] == pytest.approx(report["summary"]["output_cosine"], abs=1e-12)
    assert "no Pareto front: the data has no labels" in printed


def test_a_second_training_run_into_the_same_out_is_refused(tmp_path, capsys, epochs_run):
    """Two `cimsim train` runs into one --out both resumed the same checkpoint and overwrote
    it and the reports beside each other: the second is refused at once, naming the holder,
    and runs once the first has let go."""
    import fcntl

    with (tmp_path / "train.lock").open("a+") as held:  # as a running training run holds it
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242")
        held.flush()
        assert main(TRAIN + ["--epochs", "1", "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "another training run is writing into" in err and "pid 4242" in err
        assert epochs_run == [] and not (tmp_path / "checkpoint.pt").exists()
    assert main(TRAIN + ["--epochs", "1", "--out", str(tmp_path)]) == 0
    assert epochs_run == [0]


def test_train_resumes_after_the_last_checkpoint(tmp_path, capsys, epochs_run, monkeypatch):
    args = TRAIN + ["--method", "qat", "--out", str(tmp_path)]
    deploys = []
    real_deploy = cimsim.deploy
    monkeypatch.setattr(cimsim, "deploy", lambda *a, **k: deploys.append(1) or real_deploy(
        *a, **k))
    assert main(args + ["--epochs", "1"]) == 0
    assert len(deploys) == 1  # the untrained model, before training
    first = _checkpoint(tmp_path)
    assert "deployed with the learned weights" in capsys.readouterr().out
    assert epochs_run == [0]

    assert main(args + ["--epochs", "2"]) == 0  # as if the 2-epoch run was killed after one
    out = capsys.readouterr().out
    assert "after epoch 1 of 2" in out and "epoch 2/2" in out and "epoch 1/2" not in out
    # the untrained figure comes from the checkpoint, not from a second deploy
    assert (f"untrained on the chip   {100 * first['untrained']['untrained_accuracy']:.2f} % "
            "(the float model deployed as is) (from the checkpoint)") in out
    assert len(deploys) == 1
    assert epochs_run == [0, 1]  # epoch 0 was not recomputed
    second = _checkpoint(tmp_path)
    assert second["epoch"] == 2 and second["loss"][0] == first["loss"][0]

    assert main(args + ["--epochs", "2"]) == 0  # nothing left to train
    assert epochs_run == [0, 1]


def test_train_cosine_schedule_is_part_of_the_run(tmp_path, capsys, epochs_run):
    args = TRAIN + ["--method", "qat", "--out", str(tmp_path)]
    assert main(args + ["--epochs", "1", "--schedule", "cosine"]) == 0
    state = _checkpoint(tmp_path)
    # 32 inputs in batches of 16: two steps, the rate annealed to 0 after the second
    assert state["scheduler"]["last_epoch"] == 2 and state["run"]["schedule"] == "cosine"
    assert all(g["lr"] == pytest.approx(0.0, abs=1e-15)
               for g in state["optimizer"]["param_groups"])
    assert json.loads((tmp_path / "training.json").read_text())["schedule"] == "cosine"
    capsys.readouterr()
    # its decay was planned over one epoch: a second is another run, as is a constant rate
    assert main(args + ["--epochs", "2", "--schedule", "cosine"]) == 2
    assert "belongs to another run (--epochs 1 there, 2 now)" in capsys.readouterr().err
    assert main(args + ["--epochs", "1"]) == 2
    assert "(--schedule cosine there, constant now)" in capsys.readouterr().err
    assert epochs_run == [0]


def test_train_cosine_resumed_after_a_kill_equals_uninterrupted(tmp_path, monkeypatch):
    # the schedule's state travels in the checkpoint: a 2-epoch cosine run killed in its second
    # epoch and rerun ends where the uninterrupted one does
    import cimsim.train.loop as loop

    args = TRAIN + ["--method", "qat", "--epochs", "2", "--schedule", "cosine"]
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    real = loop.train_epoch

    def dies_in_epoch_2(*a, **k):
        if k["epoch"] == 1:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(loop, "train_epoch", dies_in_epoch_2)
    assert main(args + ["--out", str(killed)]) == 130  # "cimsim: interrupted"
    assert _checkpoint(killed)["epoch"] == 1
    monkeypatch.setattr(loop, "train_epoch", real)
    assert main(args + ["--out", str(killed)]) == 0
    assert main(args + ["--out", str(straight)]) == 0
    a, b = _checkpoint(killed), _checkpoint(straight)
    assert a["loss"] == b["loss"] and a["scheduler"] == b["scheduler"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_train_resumes_a_checkpoint_written_before_schedule_existed(tmp_path, capsys,
                                                                     epochs_run):
    args = TRAIN + ["--method", "qat", "--out", str(tmp_path)]
    assert main(args + ["--epochs", "1"]) == 0
    state = _checkpoint(tmp_path)
    del state["run"]["schedule"]  # as an older cimsim wrote it: the rate was constant
    torch.save(state, tmp_path / "checkpoint.pt")
    capsys.readouterr()
    assert main(args + ["--epochs", "2"]) == 0
    assert "after epoch 1 of 2" in capsys.readouterr().out and epochs_run == [0, 1]


@pytest.mark.slow
def test_train_resumed_equals_uninterrupted(tmp_path):
    args = TRAIN + ["--method", "distill"]
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    assert main(args + ["--epochs", "1", "--out", str(resumed)]) == 0
    assert main(args + ["--epochs", "2", "--out", str(resumed)]) == 0
    assert main(args + ["--epochs", "2", "--out", str(straight)]) == 0
    a, b = _checkpoint(resumed), _checkpoint(straight)
    assert a["loss"] == b["loss"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_train_distill_without_labels(digits_files, tmp_path, capsys):
    assert main(["train", "--model", "cimsim.models:load_digits_cnn", "--data",
                 str(digits_files / "nolabels.npz"), "--chip", "rram-22nm", "--method",
                 "distill", "--loss", "cosine", "--epochs", "1", "--batch-size", "16",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "48 training / 16 evaluation inputs" in out and "twin cosine to float" in out
    summary = json.loads((tmp_path / "training.json").read_text())
    assert summary["method"] == "distill" and "twin_accuracy" not in summary
    assert 0 < summary["cosine_to_float"] <= 1
    assert 0 < summary["untrained_cosine_to_float"] <= 1 and "untrained_accuracy" not in summary


@pytest.mark.parametrize("extra, fragment", [
    (["--method", "qt"], "--method: 'qt' is not a method"),
    (["--epochs", "0"], "argument --epochs: 0 is invalid; allowed: an integer >= 1"),
    (["--lr", "-1"], "--lr = -1.0"),
    (["--batch-size", "0"], "argument --batch-size: 0 is invalid"),
    (["--loss", "kl"], "--loss: 'kl'"),
    (["--schedule", "linear"], "--schedule: 'linear' is not a schedule; allowed: constant, cosine"),
    (["--devices", "typical"], "--devices: 'typical' is not a device mode; allowed: programmed"),
    (["--limit", "-1"], "argument --limit: -1 is invalid; allowed: an integer >= 1, or 0"),
    (["--data", "x.npz"], "--data: --model demo brings its own data"),
    (["--chip", "no-such-chip"], "no-such-chip"),
])
def test_train_bad_options_one_line_exit_2(tmp_path, capsys, extra, fragment):
    assert main(TRAIN + ["--out", str(tmp_path)] + extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cimsim: error: ") and fragment in err


def test_train_errors_about_data_and_checkpoints(digits_files, tmp_path, capsys):
    custom = ["train", "--model", "cimsim.models:load_digits_cnn", "--chip", "rram-22nm",
              "--out", str(tmp_path)]
    assert main(custom) == 2
    assert "--data is required" in capsys.readouterr().err
    assert main(custom + ["--data", str(digits_files / "nolabels.npz")]) == 2
    assert "--method qat needs labels" in capsys.readouterr().err

    assert main(TRAIN + ["--epochs", "1", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(TRAIN + ["--epochs", "1", "--lr", "0.01", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "belongs to another run (--lr 0.001 there, 0.01 now)" in err
    (tmp_path / "checkpoint.pt").write_bytes(b"damaged")
    assert main(TRAIN + ["--epochs", "1", "--out", str(tmp_path)]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err


def test_demo_names_the_layers_whose_adcs_clip_issue16(tmp_path, capsys):
    """Clipping was only in a CSV column: the summary now shows it per layer and names the
    layers above 1 %, with the two ways to widen the ranges."""
    assert main(["demo", "--fast", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    layers = pd.read_csv(tmp_path / "layers.csv")
    assert "clip_%" in out
    over = layers.loc[layers["adc_clip_pct"] > 1.0, "layer"].tolist()
    assert over  # rram-22nm's 0.5-LSB noise on tight per-column ranges
    notice = next(line for line in out.splitlines() if line.startswith("ADC clipping above"))
    assert all(name in notice for name in over) and "calibration_margin" in notice
    assert not any(name in notice for name in set(layers["layer"]) - set(over))
    # report.html and report.json say it too (they did not: only the terminal did)
    notes = json.loads((tmp_path / "report.json").read_text())["notes"]
    page = (tmp_path / "report.html").read_text()
    assert notes.count(notice) == 1 and html.escape(notice) in page
    assert main(["report", str(tmp_path)]) == 0  # re-rendered: still once
    assert json.loads((tmp_path / "report.json").read_text())["notes"].count(notice) == 1
    # the lossless chip converts every partial sum: no notice
    assert main(["demo", "--fast", "--chip", "ideal", "--out", str(tmp_path / "i")]) == 0
    assert "ADC clipping above" not in capsys.readouterr().out


def test_train_raoq_combines_the_four_methods_issue12(tmp_path, capsys):
    assert main(TRAIN + ["--method", "raoq", "--option", "bitaug_bits=9",
                         "--option", "lora_rank=2", "--epochs", "1", "--out",
                         str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "method raoq" in out and "simulated accuracy" in out
    summary = json.loads((tmp_path / "training.json").read_text())
    assert {r["layer"] for r in summary["weights"]} >= {"features.0", "classifier.3"}
    assert all(r["kurtosis"] > 1 for r in summary["weights"])
    # the checkpoint holds the adapters (a resume re-attaches them before loading)
    assert any(".lora." in k for k in _checkpoint(tmp_path)["model"])


@pytest.mark.parametrize("method, fragment", [
    ("qat+distill", "two base losses"),
    ("bskmq+bitaug", "bskmq does not combine with ['bitaug']"),
    ("bskmq+raoq", "bskmq does not combine with ['bitaug']"),
    ("columnquant+bskmq", "bskmq does not combine with ['columnquant']"),
    ("bskmq", "needs adc.kind = 'ramp'"),
    # every condition at once, with a --set list that runs (the test below trains that chip)
    ("bskmq", "--set adc.kind=ramp --set adc.placement=layer_output --set adc.level_fit=bs_kmq "
              "--set dac.bits=all --set "
              "weight_bits=4 --set device.bits_per_cell=3 --set array.n_rows=512"),
    ("qat+shift", "is not a method"),
])
def test_train_bad_method_combinations_issue12(tmp_path, capsys, method, fragment):
    assert main(TRAIN + ["--method", method, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err


def _nl_chip(level_fit: str) -> cimsim.ChipConfig:
    """rram-22nm with a 3-b layer-output ramp NL-ADC, one conversion per output."""
    chip = cimsim.load_chip("rram-22nm")
    return chip.replace(weight_bits=4, dac=chip.dac.replace(bits=None),
                        device=chip.device.replace(bits_per_cell=3),
                        array=chip.array.replace(n_rows=512, n_cols=512),
                        adc=chip.adc.replace(kind="ramp", bits=3, placement="layer_output",
                                             range_policy="calibrated", level_fit=level_fit))


@pytest.mark.parametrize("method, refit", [("bskmq", "true"),
                                           ("qat+bskmq+a-shift+w-reshape", "false")])
def test_train_bskmq_finetunes_the_nl_adc_levels_issue12(tmp_path, capsys, method, refit):
    _nl_chip("bs_kmq").save(tmp_path / "nl.toml")
    args = ["train", "--model", "demo", "--chip", str(tmp_path / "nl.toml"), "--limit", "64",
            "--calibration", "64", "--batch-size", "16", "--method", method, "--option",
            f"bskmq_refit={refit}", "--epochs", "1", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    out = capsys.readouterr().out
    # the twin of the fused chip trains (levels refit after the epoch) and deploys as is
    assert "BS-KMQ on the chip: 4-bit weights, 3-bit bs_kmq NL-ADC" in out
    assert out.count("NL-ADC levels refit") == (refit == "true")
    assert "simulated accuracy" in out
    summary = json.loads((tmp_path / "run" / "training.json").read_text())
    assert summary["epochs"] == 1 and "twin_accuracy" in summary


def test_simulate_and_train_keep_excluded_layers_digital(digits_files, tmp_path, capsys):
    """--exclude (repeatable) keeps layers digital, as deploy(exclude=) and prepare(exclude=):
    CIM papers often keep the first and last layers digital; the CLI could not say so."""
    out = tmp_path / "sim"
    assert main(["simulate", "--model", str(digits_files / "model.pt2"), "--data",
                 str(digits_files / "test.npz"), "--chip", "rram-22nm", "--calibration", "32",
                 "--exclude", "features.0", "--exclude", "classifier.*", "--out",
                 str(out)]) == 0
    digital = pd.read_csv(out / "digital.csv")
    assert sorted(digital["layer"]) == ["classifier.1", "classifier.3", "features.0"]
    assert set(digital["reason"]) == {"excluded by the user"}
    assert list(pd.read_csv(out / "layers.csv")["layer"]) == ["features.2", "features.5"]
    # and says so where the figures are printed, as the demo does (they leave those out)
    printed = capsys.readouterr().out
    # one reason once, with its layers (a ViT's twelve blocks repeated it twelve times)
    assert ("kept digital (not in the figures above): features.0, classifier.1, classifier.3 "
            "(excluded by the user)\n") in printed
    for method in ("qat", "pim-qat"):
        run = tmp_path / method
        assert main(TRAIN + ["--method", method, "--epochs", "1", "--exclude", "features.0",
                             "--out", str(run)]) == 0
        assert list(pd.read_csv(run / "digital.csv")["layer"]) == ["features.0"]
    capsys.readouterr()
    # a checkpoint of another exclusion is another run: not resumed into this one
    assert main(TRAIN + ["--method", "qat", "--epochs", "1", "--out", str(tmp_path / "qat")]) \
        == 2
    assert "checkpoint" in capsys.readouterr().err


def test_set_overrides_a_chip_field_in_every_command(digits_files, tmp_path, capsys):
    """A published macro is one array: `simulate` on it stopped at the chip's capacity with
    no way on the command line to allow time multiplexing (a TOML copy was needed). --set
    TABLE.FIELD=VALUE sets any field over the preset or file, in every command; the capacity
    error names it."""
    sim = ["simulate", "--model", str(digits_files / "model.pt2"), "--data",
           str(digits_files / "test.npz"), "--chip", "published/chih-isscc21", "--limit", "40",
           "--calibration", "16"]
    assert main(sim + ["--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "but the chip has 1" in err and "(here: --set array.allow_time_multiplexing=true)" in err
    assert main(sim + ["--set", "array.allow_time_multiplexing=true",
                       "--out", str(tmp_path / "a")]) == 0
    saved = json.loads((tmp_path / "a" / "report.json").read_text())
    assert saved["chip"]["array"]["allow_time_multiplexing"] is True
    capsys.readouterr()
    # datasheet: the value set is used, and counted as stated
    assert main(["datasheet", "published/li-esscirc22", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["datasheet", "published/li-esscirc22", "--json", "--set", "adc.bits=4",
                 "--set", "device.g_max_us=20", "--set", "tech.read_supply_v=0.7"]) == 0
    changed = json.loads(capsys.readouterr().out)
    assert changed["tops_per_w"] != plain["tops_per_w"]
    assert plain["unstated"] and not changed["unstated"]
    # a bad field: one line naming it, exit 2
    assert main(["datasheet", "rram-22nm", "--set", "adc.bitz=6"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "with --set adc.bitz=6: unknown key(s) ['bitz']" in err[0]
    for cmd in (["sweep", "--model", "demo", "--adc-bits", "4"], ["demo"]):
        assert main(cmd + ["--chip", "rram-22nm", "--set", "adc.bitz=6",
                           "--out", str(tmp_path / cmd[0])]) == 2
        assert "with --set adc.bitz=6: unknown key(s)" in capsys.readouterr().err
    # train: part of the run's identity (a resume with another --set is another run)
    assert main(TRAIN + ["--epochs", "1", "--set", "adc.bits=5", "--out", str(tmp_path / "t")]) == 0
    capsys.readouterr()
    assert main(TRAIN + ["--epochs", "1", "--set", "adc.bits=6", "--out", str(tmp_path / "t")]) == 2
    assert "belongs to another run (--set ['adc.bits=5'] there" in capsys.readouterr().err


def test_train_checkpoint_is_the_chips_and_datas_contents_and_its_epochs(tmp_path, capsys):
    """An edited chip file resumed the other chip's checkpoint (its ADC tables) without a
    word; a rerun with fewer --epochs deployed the longer run's model ("after epoch 2 of 1");
    a checkpoint whose tensors did not fit was a load_state_dict traceback; a simulate
    --time run's files stayed beside the trained report."""
    chip = tmp_path / "chip.toml"
    chip.write_text(cimsim.load_chip("rram-22nm").to_toml())
    out = tmp_path / "out"
    (out / "t_1h").mkdir(parents=True)
    (out / "t_1h" / "report.json").write_text("{}")
    (out / "time.csv").write_text("t\n")
    args = ["train", "--model", "demo", "--chip", str(chip), "--limit", "32", "--batch-size",
            "16", "--calibration", "32", "--epochs", "1", "--out", str(out)]
    assert main(args) == 0
    assert not (out / "t_1h").exists() and not (out / "time.csv").exists()
    capsys.readouterr()
    chip.write_text(cimsim.load_chip("rram-22nm").replace(
        adc=cimsim.load_chip("rram-22nm").adc.replace(bits=3)).to_toml())
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the chip's fields differ (an edited chip file?)" in err
    chip.write_text(cimsim.load_chip("rram-22nm").to_toml())
    state = _checkpoint(out)
    state["epoch"] = 3
    torch.save(state, out / "checkpoint.pt")
    assert main(args) == 2
    assert "already holds 3 epochs of this run; allowed: --epochs >= 3" in \
        capsys.readouterr().err
    state["epoch"], state["model"] = 1, {"no_such_tensor": torch.zeros(1)}
    torch.save(state, out / "checkpoint.pt")
    assert main(args) == 2
    assert "its state does not fit this model and chip" in capsys.readouterr().err


def test_train_run_identity_ignores_the_order_of_method_parts_and_options():
    """'lora+qat' and 'qat+lora', or two --option in another order, were other runs."""
    from cimsim.cli import _run_identity, build_parser

    def ident(*extra):
        return _run_identity(build_parser().parse_args(
            ["train", "--model", "demo", "--chip", "ideal", "--out", "x", *extra]))

    assert ident("--method", "lora+qat") == ident("--method", "qat+lora")
    assert ident("--method", "qat+lora")["method"] == "qat+lora"  # as older checkpoints hold
    a = ident("--method", "qat+lora+w-reshape", "--option", "lora_rank=8", "--option",
              "kurtosis_target=2")
    b = ident("--method", "qat+w-reshape+lora", "--option", "kurtosis_target=2", "--option",
              "lora_rank=8")
    assert a == b and ident("--method", "qat+lora") != ident("--method", "distill+lora")


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_calibration_inputs_missing_most_classes_are_warned_about(digits_files, tmp_path,
                                                                  capsys, order):
    """A file sorted by class calibrates on its first classes and evaluates the others on
    ranges they never set, silently: warned, naming the count and the fix; shuffled rows (the
    bundled split) are not warned about."""
    _, _, x, y = load_digits_split()
    x, y = x[:200], y[:200]
    if order == "sorted":
        idx = torch.argsort(y, stable=True)
        x, y = x[idx], y[idx]
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    for cmd in (["simulate"], ["sweep", "--adc-bits", "4"]):
        rc = main([*cmd, "--model", "cimsim.models:load_digits_cnn", "--data",
                   str(tmp_path / "d.npz"), "--chip", "ideal", "--out",
                   str(tmp_path / cmd[0]), "--calibration", "64"])
        assert rc == 0
        err = capsys.readouterr().err
        warned = "never calibrated on (data sorted by class?)" in err
        assert warned == (order == "sorted"), err
        if warned:
            assert "64 calibration inputs" in err and "shuffle the rows of --data" in err


def test_train_bskmq_names_a_chip_fitting_other_levels_unless_set(tmp_path, recwarn):
    """A chip whose adc.level_fit is not bs_kmq trains those levels: warned, unless the
    command line set the fitter (--set adc.level_fit=...), which is then what was meant."""
    _nl_chip("uniform").save(tmp_path / "nl.toml")
    args = ["train", "--model", "demo", "--chip", str(tmp_path / "nl.toml"), "--limit", "32",
            "--calibration", "32", "--batch-size", "16", "--method", "bskmq", "--epochs", "1"]
    for extra, warned in (([], True), (["--set", "adc.level_fit=uniform"], False)):
        recwarn.clear()
        assert main(args + extra + ["--out", str(tmp_path / f"run{warned}")]) == 0
        said = [str(w.message) for w in recwarn]
        assert any("adc.level_fit = 'uniform', so the levels are" in m for m in said) == warned


def test_train_sweep_runs_at_the_time_the_model_was_trained_for(tmp_path, monkeypatch):
    """Pins ``_sweep_trained``'s grid: a run trained for ``--time`` sweeps its bits at that
    time (``time_s``: the chip's t0 otherwise, a figure the run never deployed at), with the
    run's float model as the cosine's reference where there are no labels and none where
    there are."""
    import argparse

    from cimsim import cli, sweep

    seen = []

    class Stop(Exception):
        pass

    def capture(model, data, chip, grid, out, **kw):
        seen.append((grid, kw.get("reference")))
        raise Stop

    monkeypatch.setattr(sweep, "run_sweep", capture)
    args = argparse.Namespace(sweep_adc_bits="4,6", out=tmp_path, seed=0, batch_size=16,
                              method="qat")
    float_model, x = object(), torch.zeros(4, 1)
    for t, labels in ((3600.0, None), (None, torch.zeros(4, dtype=torch.long))):
        with pytest.raises(Stop):
            cli._sweep_trained(args, None, cimsim.load_chip("pcm-22nm"), float_model, "demo",
                               x, x, labels, t)
    assert seen[0] == ({"adc_bits": [4, 6], "time_s": [3600.0]}, float_model)
    assert seen[1] == ({"adc_bits": [4, 6]}, None)


def test_train_offers_no_forward_rescale_only_where_it_was_on(tmp_path, capsys, monkeypatch):
    """Pins the ``args.forward_rescale`` term of ``cmd_train``'s below-the-untrained note: a
    PIM-QAT run already made with ``--no-forward-rescale`` is not told to try it."""
    from cimsim import cli

    seen = []
    real = cli._below_untrained

    def record(score, untrained, chip, pimqat_rescaled):
        seen.append(pimqat_rescaled)
        return real(score, untrained, chip, pimqat_rescaled)

    monkeypatch.setattr(cli, "_below_untrained", record)
    assert main(TRAIN + ["--method", "pim-qat", "--no-forward-rescale", "--epochs", "1",
                         "--out", str(tmp_path)]) == 0
    assert seen == [False]
    assert "--no-forward-rescale starts from" not in capsys.readouterr().out


def test_a_sweep_whose_points_all_failed_is_not_said_to_lack_labels(tmp_path, capsys):
    """Pins ``_print_sweep``'s no-labels line: it is said only where points measured a
    cosine (no labels); a labelled sweep whose every point failed has neither accuracy nor
    cosine, and its line says no point has an accuracy and an energy, not 'no labels'."""
    import argparse

    from cimsim import cli
    from cimsim.sweep import AXES

    chip = cimsim.load_chip("rram-22nm")
    row = {axis: 0 for axis in AXES}
    row.update(adc_bits=6, accuracy=float("nan"), output_cosine=float("nan"),
               energy_pj_per_inference=float("nan"), latency_ns_per_inference=float("nan"),
               area_mm2=float("nan"), tops_per_w=float("nan"), n_arrays=0, on_front=False,
               status="failed: MappingError: no", point_id="p0")
    frame = pd.DataFrame([row])
    cli._print_sweep(frame, tmp_path, chip, argparse.Namespace(overrides=None))
    out = capsys.readouterr().out
    assert "no point has both an accuracy and an energy per inference" in out
    assert "no labels" not in out

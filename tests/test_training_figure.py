"""The training figure: ``cimsim train``'s loss per batch and per epoch and the accuracy before
and after training, in the report (``training.png``, its summary line, ``report.json``) and
re-rendered by ``cimsim report``."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

import cimsim
from cimsim.cli import main
from cimsim.report import Report, plot_training
from cimsim.train.loop import train_epoch
from tests.conftest import mlp_report

TRAINING = {"method": "qat", "epochs": 2, "loss": [0.5, 0.25],
            "batch_loss": [[0.6, 0.4], [0.3, 0.2]], "untrained_accuracy": 0.75,
            "twin_accuracy": 0.875, "cosine_to_float": 0.99}


@pytest.fixture(scope="module")
def rep() -> Report:
    return mlp_report("rram-22nm", 16, 4)


def _dots(fig: Figure) -> dict[str, float]:
    """The before/after panel's dots by their row label."""
    ax = fig.axes[1]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    return {labels[int(line.get_ydata()[0])]: float(line.get_xdata()[0]) for line in ax.lines}


def test_a_trained_report_draws_its_training_and_keeps_it_through_save_and_load(rep, tmp_path):
    trained = dataclasses.replace(rep)
    trained.set_accuracy(0.9, 0.8125, 16)
    trained.set_training(TRAINING)
    assert "training.png" in trained.figures() and "training.png" not in rep.figures()
    row = dict((q, (v, b)) for q, v, b in trained.summary_rows())["training"]
    assert row == ("qat, 2 epochs, mean loss 0.5 in the first, 0.25 in the last", "trained")
    paths = trained.save(tmp_path / "a")
    assert tmp_path / "a" / "training.png" in paths
    page = (tmp_path / "a" / "report.html").read_text()
    assert "Training: the loss per batch and per epoch" in page
    again = Report.load(tmp_path / "a")
    assert again.training == TRAINING
    dots = _dots(plot_training(again.training, again.summary))
    assert dots == {"float model": 90.0, "on the chip, untrained": 75.0,
                    "twin, noise off": 87.5, "on the chip, trained": 81.25}
    # a report saved after it into the same folder, of a model not trained, takes the figure
    rep.save(tmp_path / "a")
    assert not (tmp_path / "a" / "training.png").exists()
    assert "training" not in json.loads((tmp_path / "a" / "report.json").read_text())


def test_the_training_figure_draws_the_loss_of_every_batch_and_epoch():
    fig = plot_training(TRAINING, {"float_accuracy": 0.9, "simulated_accuracy": 0.8})
    lines = fig.axes[0].lines
    # each epoch's batches at their places within it, then the epoch means at the middles
    assert [list(line.get_xdata()) for line in lines] == [[0.25, 0.75], [1.25, 1.75], [0.5, 1.5]]
    assert [list(line.get_ydata()) for line in lines] == [[0.6, 0.4], [0.3, 0.2], [0.5, 0.25]]
    lo, hi = fig.axes[1].get_xlim()
    assert 70 < lo < 75 and 90 < hi <= 100  # fitted to the dots, never past 100 %


def test_the_training_figure_without_labels_draws_cosines_and_says_what_was_not_measured():
    training = {"method": "distill", "loss": [0.1], "cosine_to_float": 0.98,
                "untrained": "not deployed: the chip has too few arrays"}
    fig = plot_training(training, {"output_cosine": 0.95})
    assert _dots(fig) == {"twin, noise off": 0.98, "on the chip, trained": 0.95}
    assert fig.axes[1].get_xlabel().startswith("output cosine")
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert "not measured" in texts
    assert fig.axes[1].get_xlim()[1] <= 1.0 + 1e-9  # no cosine past 1
    # a run of an earlier version (no batch losses), a NaN saved as null, no epoch at all
    assert len(plot_training({"loss": [0.2, 0.1], "cosine_to_float": math.nan}).axes[0].lines) == 1
    empty = plot_training({"method": "qat", "loss": []})
    assert [t.get_text() for t in empty.axes[0].texts] == ["no epoch trained"]


@pytest.mark.parametrize("training, error, fragment", [
    ([0.5], TypeError, "allowed: a mapping"),
    ({"loss": "0.5"}, ValueError, "training['loss']"),
    ({"loss": [0.5, None]}, ValueError, "a list of numbers"),
    ({"loss": [True]}, ValueError, "a list of numbers"),
    ({"loss": [0.5], "batch_loss": [0.5]}, ValueError, "training['batch_loss']"),
    ({"loss": [0.5], "batch_loss": [[0.5, "x"]]}, ValueError, "lists of numbers"),
])
def test_set_training_refuses_what_is_not_a_training_summary(rep, training, error, fragment):
    with pytest.raises(error, match=fragment.replace("[", r"\[")):
        dataclasses.replace(rep).set_training(training)


def test_a_report_file_whose_training_is_not_an_object_is_refused_by_name(rep, tmp_path):
    rep.save(tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    data["training"] = [1, 2]
    (tmp_path / "report.json").write_text(json.dumps(data))
    with pytest.raises(cimsim.CimsimError, match="'training' is a list, not an object"):
        Report.load(tmp_path)
    data["training"] = {"loss": [0.5], "batch_loss": [[0.5, "x"]]}
    (tmp_path / "report.json").write_text(json.dumps(data))
    with pytest.raises(cimsim.CimsimError, match=r"training\['batch_loss'\]"):
        Report.load(tmp_path)


def test_train_epoch_hands_back_every_batch_loss_in_order():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    x, y = torch.randn(10, 3), torch.randn(10, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # no step: the losses are the model's
    losses: list[float] = []
    mean = train_epoch(model, (x, y), lambda a, b: ((model(a) - b) ** 2).mean(), opt,
                       batch_size=4, seed=0, epoch=0, progress=False, batch_losses=losses)
    assert len(losses) == 3  # 4 + 4 + 2 inputs
    assert mean == pytest.approx((4 * losses[0] + 4 * losses[1] + 2 * losses[2]) / 10)


TRAIN = ["train", "--model", "demo", "--chip", "rram-22nm", "--limit", "32", "--batch-size",
         "16", "--calibration", "32", "--method", "qat"]


def test_cimsim_train_draws_its_run_and_a_resumed_older_checkpoint_has_no_batches_for_its_epochs(
        tmp_path, capsys):
    out = tmp_path / "run"
    assert main(TRAIN + ["--epochs", "1", "--out", str(out)]) == 0
    first = json.loads((out / "training.json").read_text())
    assert len(first["batch_loss"]) == 1 and len(first["batch_loss"][0]) >= 1
    report = json.loads((out / "report.json").read_text())
    assert report["training"] == first
    assert (out / "training.png").is_file()
    # a checkpoint an earlier version wrote holds no batch losses: resumed, its epoch has none
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    del state["batch_loss"]
    torch.save(state, out / "checkpoint.pt")
    assert main(TRAIN + ["--epochs", "2", "--out", str(out)]) == 0
    second = json.loads((out / "training.json").read_text())
    assert second["batch_loss"][0] == [] and len(second["batch_loss"][1]) >= 1
    assert second["loss"][0] == first["loss"][0]
    # cimsim report re-renders the figure from report.json alone
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "training.png").read_bytes() == (out / "training.png").read_bytes()

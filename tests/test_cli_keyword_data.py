"""Data files of keyword inputs (no ``x``: arrays named as the model's forward names them, a
tokenizer's ``input_ids`` / ``attention_mask``) through ``cimsim simulate`` and ``cimsim sweep``:
loaded as a dict, cut with the batch, passed as ``model(**inputs)``; ``cimsim train`` names
the Python path instead."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim._inputs import input_count, input_rows
from cimsim.cli import main
from cimsim.evaluate import accuracy
from cimsim.mapping.loaders import LoadError, load_data


class Classifier(nn.Module):
    """Keyword-only inputs and a HuggingFace-style output object with ``logits``."""

    def __init__(self, vocab: int = 30, d: int = 12, classes: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.enc = nn.Linear(d, d)
        self.head = nn.Linear(d, classes)

    def forward(self, *, input_ids, attention_mask):
        h = torch.relu(self.enc(self.embed(input_ids)))
        m = attention_mask[..., None].float()
        logits = self.head((h * m).sum(1) / m.sum(1).clamp(min=1))
        return type("Output", (), {"logits": logits})()


def classifier() -> nn.Module:
    torch.manual_seed(0)
    return Classifier().eval()


def _tokens(n: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 30, (n, 7))
    return {"input_ids": ids, "attention_mask": (ids > 3).astype(np.int8)}


@pytest.fixture
def tokens(tmp_path):
    data = _tokens()
    with torch.no_grad():
        y = classifier()(**{k: torch.from_numpy(v).long() for k, v in data.items()}
                         ).logits.argmax(1).numpy()
    path = tmp_path / "tokens.npz"
    np.savez(path, **data, y=y)
    return path


def test_an_npz_without_x_is_the_models_keyword_inputs(tokens, tmp_path):
    x, y = load_data(tokens, integers=True)
    assert isinstance(x, dict) and list(x) == ["input_ids", "attention_mask"]
    assert all(v.dtype == torch.int64 and v.shape[0] == 40 for v in x.values())
    assert y is not None and y.dtype == torch.int64
    assert input_count(x) == 40 and input_count(input_rows(x, 5, 9)) == 4
    # a torch file holding such a dict reads the same
    torch.save({k: v for k, v in x.items()} | {"y": y}, tmp_path / "tokens.pt")
    again, y2 = load_data(tmp_path / "tokens.pt")
    assert isinstance(again, dict) and all(torch.equal(again[k], x[k]) for k in x)
    assert y2 is not None and torch.equal(y2, y)


@pytest.mark.parametrize("arrays, match", [
    ({"input_ids": np.zeros((4, 3)), "attention_mask": np.zeros((5, 3))},
     "differ in length: 'input_ids' holds 4, 'attention_mask' 5"),
    ({"input-ids": np.zeros((4, 3))}, "'input-ids' is no keyword argument name"),
    ({"features": np.full((2, 3), np.nan)}, "'features' holds NaN"),
    ({"y": np.zeros(3, dtype=np.int64)}, "needs an array named 'x', or the model's keyword"),
])
def test_bad_keyword_data_is_one_error_naming_the_array(arrays, match, tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(LoadError, match=match):
        load_data(path)


def test_simulate_on_keyword_data_equals_deploy(tokens, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["simulate", "--model", "tests.test_cli_keyword_data:classifier", "--data",
               str(tokens), "--chip", "rram-22nm", "--out", str(out), "--calibration", "16"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "40 inputs: the first 16 calibrate, 24 evaluated" in printed
    x, y = load_data(tokens, integers=True)
    assert isinstance(x, dict) and y is not None
    with pytest.warns(UserWarning):  # the embedding, listed digital
        sim = cimsim.deploy(classifier(), cimsim.load_chip("rram-22nm"), input_rows(x, 0, 16))
    acc = accuracy(sim, input_rows(x, 16), y[16:], batch_size=64)
    assert f"{'simulated accuracy':<24}{100 * acc:.2f} %" in printed
    summary = json.loads((out / "report.json").read_text())["summary"]
    assert summary["n_eval_inputs"] == 24


def test_sweep_on_keyword_data_and_train_names_the_python_path(tokens, tmp_path, capsys):
    rc = main(["sweep", "--model", "tests.test_cli_keyword_data:classifier", "--data",
               str(tokens), "--chip", "rram-22nm", "--adc-bits", "4,6", "--out",
               str(tmp_path / "sweep"), "--calibration", "16"])
    assert rc == 0
    meta = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert meta["n_eval"] == 24
    lines = (tmp_path / "sweep" / "sweep.jsonl").read_text().splitlines()
    assert len(lines) == 2
    # rerun: resumed, nothing run twice (the keyword data's fingerprint is stable)
    assert main(["sweep", "--model", "tests.test_cli_keyword_data:classifier", "--data",
                 str(tokens), "--chip", "rram-22nm", "--adc-bits", "4,6", "--out",
                 str(tmp_path / "sweep"), "--calibration", "16"]) == 0
    assert (tmp_path / "sweep" / "sweep.jsonl").read_text().splitlines() == lines
    capsys.readouterr()
    rc = main(["train", "--model", "tests.test_cli_keyword_data:classifier", "--data",
               str(tokens), "--chip", "rram-22nm", "--out", str(tmp_path / "train")])
    assert rc != 0
    err = capsys.readouterr().err
    assert "holds keyword inputs (input_ids, attention_mask)" in err
    assert "distill(prepared, model, batch)" in err


def test_an_entry_of_one_row_is_shared_by_every_input(tmp_path):
    """A (1, S) entry beside (n, S) ones (a shared position_ids) was refused ('the inputs
    differ in length'), though deploy and evaluate pass such an entry whole to every batch
    (cimsim._inputs); other lengths are still refused."""
    ids = np.arange(40).reshape(10, 4) % 30
    np.savez(tmp_path / "shared.npz", input_ids=ids, position_ids=np.arange(4)[None])
    x, _ = load_data(tmp_path / "shared.npz")
    assert input_count(x) == 10 and x["position_ids"].shape == (1, 4)
    assert input_rows(x, 0, 3)["position_ids"].shape == (1, 4)
    np.savez(tmp_path / "bad.npz", input_ids=ids, position_ids=np.zeros((3, 4), np.int64))
    with pytest.raises(LoadError, match=r"'input_ids' holds 10, 'position_ids' 3 .*or one row "
                                        "shared by all"):
        load_data(tmp_path / "bad.npz")


def test_sweep_prints_its_cost_basis_and_the_fields_set(tokens, tmp_path, capsys):
    """report.cost_basis says the sweep prints which figures are calibrated and which
    predicted: it was only in sweep.json and the page; two sweeps at two --set supplies
    printed the same header."""
    assert main(["sweep", "--model", "tests.test_cli_keyword_data:classifier", "--data",
                 str(tokens), "--chip", "rram-22nm", "--set", "tech.vdd_v=0.9", "--adc-bits",
                 "4", "--out", str(tmp_path / "s"), "--calibration", "16"]) == 0
    from cimsim.report import cost_basis

    chip = cimsim.load_chip("rram-22nm", overrides=["tech.vdd_v=0.9"])
    out = capsys.readouterr().out
    assert f"cost figures: {cost_basis(chip)}; chip fields set: tech.vdd_v=0.9" in out
    # and the files: sweep.json and the page's settings name them (the page did not)
    meta = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert meta["chip_description"].endswith("(with --set tech.vdd_v=0.9)")
    assert "with --set tech.vdd_v=0.9" in (tmp_path / "s" / "sweep.html").read_text()

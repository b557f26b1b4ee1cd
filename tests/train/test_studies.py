"""The PIM-QAT and ColumnQuant study scripts run end to end on a tiny setting (issue 11).
Slow: minutes on the shared 2-core machine."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], check=True,
                   env=env, cwd=ROOT, capture_output=True)


@pytest.mark.slow
def test_pimqat_study_tiny(tmp_path):
    out = tmp_path / "p.csv"
    cache = tmp_path / "cache"
    args = ["--rows", "64", "--adc-bits", "4", "--train", "64", "--train-a", "64",
            "--epochs-a", "1", "--test", "32", "--bn", "32", "--cache", str(cache)]
    _run("pimqat_study.py", "--decompositions", "bit-serial", *args, "--out", str(out))
    arms = [r["arm"] for r in csv.DictReader(out.open())]
    assert arms == ["float", "a", "b", "c", "d", "e", "f"]
    assert len(list(cache.glob("digital-w4a4-*.pt"))) == 1  # the shared start, cached
    # a second piece (another decomposition) reuses the cached start; the tables merge them
    _run("pimqat_study.py", "--decompositions", "native", *args, "--out",
         str(tmp_path / "p-native.csv"))
    a = [r["accuracy"] for p in (out, tmp_path / "p-native.csv")
         for r in csv.DictReader(p.open()) if r["arm"] == "a"]
    assert a[0] == a[1]
    text = subprocess.run([sys.executable, str(ROOT / "scripts" / "study_tables.py"),
                           str(tmp_path / "p*.csv"), str(tmp_path / "none*.csv")],
                          check=True, capture_output=True, text=True, cwd="/",
                          env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert "| bit-serial | 64 | 4 |" in text and "| native | 64 | 4 |" in text
    # arms (g), (h): PIM-QAT on the noisy, non-linear chip itself, alone
    _run("pimqat_study.py", "--decompositions", "bit-serial", *args, "--arms", "g", "h",
         "--out", str(tmp_path / "g.csv"))
    assert [r["arm"] for r in csv.DictReader((tmp_path / "g.csv").open())] == [
        "float", "a", "g", "h"]


@pytest.mark.slow
def test_columnquant_rate_study_tiny(tmp_path):
    out = tmp_path / "r.csv"
    _run("columnquant_rate_study.py", "--lrs", "1e-3", "--seeds", "2", "--epochs", "2",
         "--train", "64", "--train-a", "64", "--epochs-a", "1", "--test", "32", "--cache",
         str(tmp_path / "c"), "--out", str(out))
    rows = list(csv.DictReader(out.open()))
    assert [(r["schedule"], r["seed"], r["epoch"]) for r in rows] == [
        (s, str(seed), str(e)) for s in ("constant", "cosine") for seed in (0, 1)
        for e in (0, 1, 2)]
    # every run starts from the same prepared twin; the training seed changes the order only
    assert len({r["twin_accuracy"] for r in rows if r["epoch"] == "0"}) == 1
    assert all(float(r["train_loss"]) > 0 for r in rows if r["epoch"] != "0")
    text = subprocess.run([sys.executable, str(ROOT / "scripts" / "columnquant_rate_study.py"),
                           "--table", "--out", str(out)], check=True, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    accuracy, loss = text.split("Mean training loss")
    lines = accuracy.splitlines()
    assert lines[2] == "| rate | schedule | seeds | epoch 0 | epoch 1 | epoch 2 |"
    assert [line.split(" | ")[:3] for line in lines[4:6]] == [
        ["| 0.001", "constant", "2"], ["| 0.001", "cosine", "2"]]
    assert loss.splitlines()[4].startswith("| 0.001 | constant | 2 |  | ")  # epoch 0: none


@pytest.mark.slow
def test_pimqat_bn_study_tiny(tmp_path):
    out = tmp_path / "bn.csv"
    _run("pimqat_bn_study.py", "--settings", "64/4", "--bn", "16", "--train", "64",
         "--epochs", "1", "--epochs-a", "1", "--test", "32", "--cache", str(tmp_path / "c"),
         "--schedule", "cosine", "--out", str(out))
    rows = [(r["chip"], r["bn"]) for r in csv.DictReader(out.open())]
    assert rows == [(chip, bn) for chip in ("noise-free", "noisy")
                    for bn in ("none", "outright", "relative")] + [
        ("noise-free", "outright on the twin")]


@pytest.mark.slow
def test_columnquant_study_tiny(tmp_path):
    out = tmp_path / "c.csv"
    args = ["--psum-bits", "3", "--train", "64", "--train-a", "64", "--epochs-a", "1",
            "--epochs", "1", "--test", "32", "--var-test", "16", "--seeds", "2", "--sigmas", "0.1",
            "--cache", str(tmp_path / "cache")]
    _run("columnquant_study.py", *args, "--out", str(out))
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 9 * 5
    assert {r["what"] for r in rows} == {"twin_accuracy_before", "psum_nmse", "twin_accuracy",
                                         "deployed_accuracy", "variation_accuracy"}
    # option 3 rows: one cell on binary cells
    tern = tmp_path / "t.csv"
    _run("columnquant_study.py", *args, "--decomposition", "ternary", "--cells",
         "column/column", "--out", str(tern))
    rows = list(csv.DictReader(tern.open()))
    assert len(rows) == 5 and {r["decomposition"] for r in rows} == {"ternary"}

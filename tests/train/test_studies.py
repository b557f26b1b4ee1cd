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
    _run("pimqat_study.py", "--decompositions", "bit-serial", "--rows", "64", "--adc-bits", "4",
         "--train", "64", "--epochs-a", "1", "--test", "32", "--bn", "32", "--out", str(out))
    arms = [r["arm"] for r in csv.DictReader(out.open())]
    assert arms == ["float", "a", "b", "c", "d", "e", "f"]


@pytest.mark.slow
def test_columnquant_study_tiny(tmp_path):
    out = tmp_path / "c.csv"
    _run("columnquant_study.py", "--psum-bits", "3", "--train", "64", "--test", "32",
         "--var-test", "16", "--seeds", "2", "--sigmas", "0.1", "--out", str(out))
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 9 * 5
    assert {r["what"] for r in rows} == {"twin_accuracy_before", "psum_nmse", "twin_accuracy",
                                         "deployed_accuracy", "variation_accuracy"}

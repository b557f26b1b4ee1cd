"""``scripts/methods_on_architectures.py`` (docs/training.md §10) runs end to end in its
``--quick`` setting: the row GRU trained in float, deployed on rram-22nm, then QAT and
distillation for one epoch on 128 images. Slow: about half a minute on the shared machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_study_prints_a_row_per_method():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "methods_on_architectures.py"),
                          "--quick"], check=True, env=env, cwd=ROOT, capture_output=True,
                         text=True).stdout
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| gru")]
    assert [r[2].strip() for r in rows] == ["qat", "distill"]
    for row in rows:
        values = [float(v) for v in re.findall(r"([\d.]+) %", "|".join(row))]
        float_acc, untrained, twin, twin_noisy, deployed = values
        assert float_acc >= 95.0  # the float model the study starts from
        assert min(untrained, twin, twin_noisy, deployed) > 50.0  # far from chance (10 %)

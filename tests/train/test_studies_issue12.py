"""The issue-12 study scripts run end to end on tiny settings (slow: minutes each)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_raoq_study_runs(tmp_path):
    out = tmp_path / "raoq"
    assert _script("raoq_study").main(["--settings", "128:6", "--limit", "64", "--trace", "8",
                                       "--out", str(out)]) == 0
    df = pd.read_csv(out.with_suffix(".csv"))
    assert len(df) == 9 and df["accuracy"].between(0, 1).all()  # 2 ceilings + 7 arms
    assert out.with_suffix(".md").is_file() and out.with_suffix(".png").is_file()


@pytest.mark.slow
def test_bskmq_study_runs(tmp_path):
    out = tmp_path / "bskmq"
    assert _script("bskmq_study").main(["--bits", "2", "--weights", "4", "--fitters",
                                        "bs_kmq", "--epochs", "1", "--limit", "128",
                                        "--out", str(out)]) == 0
    df = pd.read_csv(out.with_suffix(".csv"))
    # 7 fitters with float weights, 7 on the W4 chip (bs_kmq fine-tuned there)
    assert len(df) == 14 and (df["nmse_geo"] > 0).all()
    tuned = df[df["ft_frozen_accuracy"].notna()]
    assert list(tuned["fitter"]) == ["bs_kmq"] and tuned["ft_refit_accuracy"].between(0, 1).all()


@pytest.mark.slow
def test_bskmq_system_study_runs(tmp_path):
    out = tmp_path / "sys"
    assert _script("bskmq_system").main(["--size", "32", "--out", str(out)]) == 0
    df = pd.read_csv(out.with_suffix(".csv"))
    assert set(df["chip"]) == {"SAR-8", "SAR-7", "NL-3 partial-sum", "NL-3 layer-output"}
    assert (df["energy_uj"] > 0).all()

"""The public names: few at the top, lazy for heavy imports, exported by each subpackage and
listed in the README."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cimsim

ROOT = Path(__file__).resolve().parents[1]


def _readme_api() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Public API", 1)[1].split("\n## ", 1)[0]


def test_top_level_is_small_and_every_name_resolves():
    assert len(cimsim.__all__) <= 15
    for name in cimsim.__all__:
        assert getattr(cimsim, name) is not None, name
    assert cimsim.deploy is importlib.import_module("cimsim.mapping").deploy
    assert cimsim.matmul is importlib.import_module("cimsim.api").matmul
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cimsim.nope  # noqa: B018


def test_import_cimsim_loads_neither_torch_nor_the_kernels():
    code = ("import sys, cimsim; cimsim.load_chip('ideal'); "
            "print(sorted(m for m in ('torch', 'numba', 'matplotlib', 'pandas') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize("package", ["cimsim.arrays", "cimsim.mapping", "cimsim.adc",
                                     "cimsim.engine", "cimsim.cost", "cimsim.train",
                                     "cimsim.models", "cimsim.data", "cimsim.events",
                                     "cimsim.work"])
def test_subpackage_exports_resolve_and_are_in_the_readme(package):
    mod = importlib.import_module(package)
    readme = _readme_api()
    line = next(ln for ln in re.split(r"\n- ", readme) if ln.startswith(f"`{package}`"))
    for name in mod.__all__:
        assert getattr(mod, name) is not None
        assert f"`{name}" in line, (package, name)


def test_the_names_users_reach_for():
    from cimsim.adc import Levels, fit_levels
    from cimsim.arrays import ProgrammedLayer, program
    from cimsim.mapping import load_model, modules_from_graph

    assert callable(fit_levels) and isinstance(Levels, type)
    assert callable(program) and isinstance(ProgrammedLayer, type)
    assert callable(load_model) and callable(modules_from_graph)
    readme = _readme_api()
    for name in ("fit_levels", "Levels", "ADCTables", "program", "ProgrammedLayer", "estimate"):
        assert f"`{name}" in readme, name


def test_every_entry_point_takes_a_preset_name_or_toml_path(tmp_path):
    """``datasheet`` took a preset name or a path; ``matmul``, ``deploy``, ``prepare`` (and the
    methods' ``prepare_*``), ``run_sweep`` and ``estimate`` refused them ("chip must be a
    ChipConfig"), each with its own exception class (TypeError, MappingError, ConfigError).
    They take all three now, with the same result; anything else is one ConfigError."""
    import numpy as np
    import torch

    from cimsim.cost import estimate
    from cimsim.train import prepare
    from cimsim.train.pimqat import prepare_pimqat

    chip = cimsim.load_chip("rram-22nm")
    path = tmp_path / "mine.toml"
    chip.save(path)
    rng = np.random.default_rng(0)
    x, w = rng.integers(0, 256, (4, 40)), rng.integers(-127, 128, (3, 40))
    y, events = cimsim.matmul(x, w, chip, calibration=x)
    for named in ("rram-22nm", str(path), path):
        y2, events2 = cimsim.matmul(x, w, named, calibration=x)
        np.testing.assert_array_equal(y2, y)
        assert events2 == events
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    xs = torch.rand(32, 16)
    expected = cimsim.deploy(model, chip, xs)(xs)
    for named in ("rram-22nm", path):
        sim = cimsim.deploy(model, named, xs)
        torch.testing.assert_close(sim(xs), expected, rtol=0, atol=0)
        assert sim.chip == chip
        assert estimate(sim.work(), named).totals == estimate(sim.work(), chip).totals
    prepared = prepare(model, "rram-22nm", xs)
    assert prepared.chip == chip
    assert prepared.deploy(chip=path).chip == prepared.deploy(chip=chip).chip == chip
    from cimsim.sweep import run_sweep

    labels = torch.randint(0, 4, (32,))
    rows = [run_sweep(model, (xs, labels), named, {"adc_bits": [4]}, tmp_path / f"s{i}",
                      calibration=16, progress=False)
            for i, named in enumerate((chip, "rram-22nm"))]
    assert rows[0]["accuracy"].tolist() == rows[1]["accuracy"].tolist()
    assert prepare_pimqat(model, path, xs).chip == chip
    for bad in (None, 3, {"name": "x"}):
        with pytest.raises(cimsim.ConfigError, match="chip = .* is invalid; allowed: a "
                                                     "ChipConfig"):
            cimsim.matmul(x, w, bad)
        with pytest.raises(cimsim.ConfigError, match="chip = .* is invalid"):
            cimsim.deploy(model, bad, xs)
        with pytest.raises(cimsim.ConfigError, match="chip = .* is invalid"):
            prepare(model, bad, xs)
    with pytest.raises(cimsim.ConfigError, match="unknown chip preset 'rram-22'"):
        cimsim.deploy(model, "rram-22", xs)

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
                                     "cimsim.models", "cimsim.data"])
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

"""Shared fixtures of the cost tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "validate_presets.py"


@pytest.fixture(scope="session")
def validate():
    """``scripts/validate_presets.py`` as a module (it writes docs/validation.md)."""
    spec = importlib.util.spec_from_file_location("validate_presets", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module

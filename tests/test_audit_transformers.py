"""``scripts/audit_transformers.py`` without ``transformers`` (no cimsim dependency, not in
CI): it says what it needs and exits 0, importing nothing of the library."""

from __future__ import annotations

import sys

from scripts.audit_transformers import main


def test_without_transformers_the_audit_says_so_and_exits_0(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import raises ImportError
    assert main(["--models", "bert", "--chips", "ideal"]) == 0
    assert "needs the `transformers` library" in capsys.readouterr().out

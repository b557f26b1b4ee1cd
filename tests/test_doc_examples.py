"""Every ```python block of README.md and docs/*.md runs as written.

A newcomer copies these blocks first, so each one runs in a fresh interpreter (a subprocess: no
state leaks from the test process or from an earlier block) in an empty temporary folder, with
this checkout importable. A block that needs minutes has ``<!-- slow -->`` on the line above its
fence and runs under ``pytest -m slow``; a block that cannot run on its own (a deliberate
fragment or a placeholder) has ``<!-- no-run: why -->`` there and is only checked to parse.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))

TIMEOUT_S = 120
"""Per block: the default-run blocks take a few seconds each (importing torch, one deploy)."""
SLOW_TIMEOUT_S = 900

_FENCE = re.compile(r"^```(\w*)\s*$")
_MARK = re.compile(r"^<!--\s*(slow|no-run)\b(.*?)-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced python block: where it starts, its source and its mark (``""`` if none)."""

    path: Path
    line: int
    source: str
    mark: str
    reason: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of one Markdown file (line = the opening fence, 1-based)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        start, lang = i, m.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if lang == "python":
            k = start - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            mark = _MARK.match(lines[k].strip()) if k >= 0 else None
            blocks.append(Block(
                path, start + 1, "\n".join(lines[start + 1:j]) + "\n",
                mark.group(1) if mark else "", mark.group(2).strip(" :") if mark else ""))
        i = j + 1
    return blocks


BLOCKS = [b for p in DOCS for b in python_blocks(p)]


def _params(blocks: list[Block]) -> list[object]:
    return [pytest.param(b, id=b.id, marks=[pytest.mark.slow] if b.mark == "slow" else [])
            for b in blocks]


def test_blocks_found() -> None:
    """The extraction sees the README's example (a parser that finds nothing passes trivially)."""
    assert any(b.path.name == "README.md" for b in BLOCKS)
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_doc_block_parses(block: Block) -> None:
    ast.parse(block.source, filename=block.id)
    if block.mark == "no-run":
        assert block.reason, f"{block.id}: <!-- no-run --> needs a reason after it"


@pytest.mark.parametrize("block", _params([b for b in BLOCKS if b.mark != "no-run"]))
def test_doc_block_runs(block: Block, tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("MPLBACKEND", "Agg")
    script = tmp_path / "example.py"
    script.write_text(block.source, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=SLOW_TIMEOUT_S if block.mark == "slow" else TIMEOUT_S)
    assert proc.returncode == 0, (
        f"{block.id} failed (exit {proc.returncode}):\n"
        f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def test_marks_are_read(tmp_path: Path) -> None:
    """A mark applies to the block right below it (blank lines allowed), and only to that one."""
    md = tmp_path / "page.md"
    md.write_text(
        "text\n\n<!-- slow: minutes -->\n\n```python\nx = 1\n```\n\n"
        "<!-- no-run: a fragment, `model` is yours -->\n```python\nsim = deploy(model)\n```\n"
        "```bash\nls\n```\n```python\ny = 2\n```\n", encoding="utf-8")
    blocks = python_blocks(md)
    assert [(b.line, b.mark, b.reason, b.source) for b in blocks] == [
        (5, "slow", "minutes", "x = 1\n"),
        (10, "no-run", "a fragment, `model` is yours", "sim = deploy(model)\n"),
        (16, "", "", "y = 2\n"),
    ]

"""Every ```python block of README.md and docs/*.md runs as written.

A newcomer copies these blocks first, so each one runs in a fresh interpreter (a subprocess: no
state leaks from the test process or from an earlier block) in an empty temporary folder, with
this checkout importable. A block that needs minutes has ``<!-- slow -->`` on the line above its
fence and runs under ``pytest -m slow``; a block that cannot run on its own (a deliberate
fragment or a placeholder) has ``<!-- no-run: why -->`` there and is only checked to parse.

The second half checks what the prose names: every ``--flag`` (of ``cimsim CMD``, of a script
in ``scripts/`` or ``benchmarks/``, or of another program listed in ``EXTERNAL_FLAGS``), every
``section.field`` and enum value of a chip's TOML, every ```toml block, every relative link,
anchor, ``page.md §N`` and repository path, and the counts of published macros and validation
rows. They read text only (no simulation) and take about a second.
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


def _fenced(path: Path, lang: str) -> list[tuple[int, str]]:
    """The fenced blocks of one language: (0-based line of the opening fence, source)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if m.group(1) == lang:
            out.append((i, "\n".join(lines[i + 1:j]) + "\n"))
        i = j + 1
    return out


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of one Markdown file (line = the opening fence, 1-based)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    for start, source in _fenced(path, "python"):
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mark = _MARK.match(lines[k].strip()) if k >= 0 else None
        blocks.append(Block(path, start + 1, source, mark.group(1) if mark else "",
                            mark.group(2).strip(" :") if mark else ""))
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
    if block.mark:  # a block left out of the default run says why, where a reader sees it
        assert block.reason, f"{block.id}: <!-- {block.mark} --> needs a reason after it"


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


# --------------------------------------------------------------------------------------------
# What the prose names must exist: command-line flags, TOML fields, pages, sections and files.
# A renamed flag or field leaves the docs describing something that is gone; these checks read
# the same pages as the blocks above and fail naming the page, the line and what is missing.
# --------------------------------------------------------------------------------------------
_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
_SCRIPT = re.compile(r"((?:scripts|benchmarks)/[\w/]+\.py)\b")

EXTERNAL_FLAGS = {
    # Chromium's, for docs/report.png (README.md)
    "--headless", "--no-sandbox", "--hide-scrollbars", "--window-size", "--screenshot",
    # pytest-xdist's (README.md's test command)
    "--dist",
    # hypothesis's pytest plugin (docs/performance.md, docs/training.md)
    "--hypothesis-seed", "--hypothesis-show-statistics",
    # dask's `dask scheduler` / `dask worker` (docs/sweep.md)
    "--nworkers", "--nthreads", "--port",
}
"""Flags of other programs that the docs name; every other ``--flag`` is cimsim's or a
script's."""


def _doc_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) with shell continuations (a trailing ``\\``) joined to one line."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if pending is not None:
            n, line = pending[0], pending[1] + " " + line.strip()
            pending = None
        if line.rstrip().endswith("\\"):
            pending = (n, line.rstrip()[:-1])
            continue
        out.append((n, line))
    if pending is not None:
        out.append(pending)
    return out


def _cli_flags() -> tuple[set[str], dict[str, set[str]]]:
    """The top-level options and each subcommand's, as ``cimsim.cli.build_parser`` builds them."""
    import argparse

    from cimsim.cli import build_parser

    parser = build_parser()
    top = {s for a in parser._actions for s in a.option_strings}
    subs: dict[str, set[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                subs[name] = {s for a in sub._actions for s in a.option_strings}
    return top, subs


def _script_has_flag(source: str, flag: str) -> bool:
    """The script's argparse names ``flag`` (``--no-x`` is ``--x``'s BooleanOptionalAction)."""
    if f'"{flag}"' in source or f"'{flag}'" in source:
        return True
    if flag.startswith("--no-"):
        positive = "--" + flag[len("--no-"):]
        return (f'"{positive}"' in source or f"'{positive}'" in source) and (
            "BooleanOptionalAction" in source)
    return False


def test_cli_flags_named_in_docs_exist() -> None:
    """``cimsim CMD ... --flag`` and ``python scripts/X.py ... --flag`` name flags that exist,
    and every other ``--flag`` in the docs is one of cimsim's, a script's or another program's
    (``EXTERNAL_FLAGS``)."""
    top, subs = _cli_flags()
    scripts = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
               for d in ("scripts", "benchmarks") for p in (ROOT / d).glob("*.py")}
    known = top.union(*subs.values())
    for source in scripts.values():
        known |= set(re.findall(r"""["'](--[a-z][a-z0-9-]*)["']""", source))
        if "BooleanOptionalAction" in source:
            known |= {"--no-" + f[2:] for f in re.findall(r"""["'](--[a-z][a-z0-9-]*)["']""",
                                                           source)}
    problems = []
    for path in DOCS:
        where = path.relative_to(ROOT)
        for n, line in _doc_lines(path):
            for m in re.finditer(r"\bcimsim\s+(" + "|".join(subs) + r")\b([^`\n]*)", line):
                for flag in _FLAG.findall(_SCRIPT.split(m.group(2))[0]):
                    if flag not in subs[m.group(1)] and flag not in top:
                        problems.append(f"{where}:{n}: `cimsim {m.group(1)}` has no {flag}")
            for m in _SCRIPT.finditer(line):
                script = m.group(1)
                if script not in scripts:
                    problems.append(f"{where}:{n}: {script} does not exist")
                    continue
                rest = line[m.end():].split("`")[0]
                rest = re.split(r"\bcimsim\s|(?:scripts|benchmarks)/|[;|]|&&", rest)[0]
                for flag in _FLAG.findall(rest):
                    if not _script_has_flag(scripts[script], flag):
                        problems.append(f"{where}:{n}: {script} has no {flag}")
            for flag in _FLAG.findall(line):
                if flag not in known and flag not in EXTERNAL_FLAGS:
                    problems.append(f"{where}:{n}: {flag} is no flag of cimsim, of a script in "
                                    "scripts/ or benchmarks/, or of EXTERNAL_FLAGS")
    assert not problems, "\n".join(problems)


_SECTIONS = ("array", "device", "dac", "adc", "noise", "tech", "quant")


def _config_classes() -> dict[str, type]:
    import dataclasses

    from cimsim.config import ChipConfig

    return {f.name: f.type if isinstance(f.type, type) else getattr(ChipConfig(), f.name).__class__
            for f in dataclasses.fields(ChipConfig) if f.name in _SECTIONS}


def _choices(cls: type, name: str) -> set[str] | None:
    """The allowed strings of an enum field (``None`` for any other field)."""
    import enum
    import typing

    hint = typing.get_type_hints(cls)[name]
    for arg in typing.get_args(hint) or (hint,):
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return {str(e.value) for e in arg}
    return None


def _named_elsewhere(section: str, name: str) -> bool:
    """``adc.convert`` is an event, ``adc.activation`` a module, ``quant.binary_codes`` a
    function: a dotted name that is not a config field but is one of these is fine."""
    import importlib
    import pkgutil

    from cimsim.events import REGISTRY

    if any(c.value == section and a.value == name for c, a in REGISTRY):
        return True
    if name == "py":  # a file name, `quant.py`
        return True
    import cimsim

    for info in pkgutil.walk_packages(cimsim.__path__, "cimsim."):
        if info.name.rsplit(".", 1)[-1] == section:
            module = importlib.import_module(info.name)
            if hasattr(module, name):
                return True
    return False


def test_config_fields_named_in_docs_exist() -> None:
    """Every ``section.field`` in a code span is a field (or property) of that section's config
    (``cimsim/config.py``), an event or a module's name; ``section.field = 'value'`` and
    ``field = 'value'`` of an enum field give an allowed value."""
    import tomllib
    import typing

    from cimsim.config import ChipConfig

    classes = _config_classes()
    by_name: dict[str, list[type]] = {}
    for cls in (ChipConfig, *classes.values()):
        for name in typing.get_type_hints(cls):
            by_name.setdefault(name, []).append(cls)
    dotted = re.compile(r"(?<![\w.])(" + "|".join(_SECTIONS)
                        + r")\.([a-z_][a-z0-9_]*)(?:\s*=\s*(\S+))?")
    problems = []

    def check_value(where: str, cls: type, name: str, text: str) -> None:
        allowed = _choices(cls, name)
        if allowed is None or text.startswith("<"):
            return
        try:
            value = tomllib.loads(f"v = {text.replace(chr(39), chr(34))}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip("'\"")
        if value not in allowed:
            problems.append(f"{where}: {cls.__name__}.{name} = {value!r} is not one of "
                            f"{sorted(allowed)}")

    for path in DOCS:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{n}"
            for span in re.findall(r"`([^`]+)`", line):
                if "(" in span:  # an expression (`cimsim.adc.Levels(adc.thr[g, c], ...)`)
                    continue
                for section, name, value in dotted.findall(span):
                    cls = classes[section]
                    if hasattr(cls, name):
                        if value:
                            check_value(where, cls, name, value.rstrip(",;"))
                    elif not _named_elsewhere(section, name):
                        problems.append(f"{where}: `{section}.{name}` is no field of "
                                        f"{cls.__name__} (nor an event or a module's name)")
                m = re.fullmatch(r"([a-z_][a-z0-9_]*)\s*=\s*(\S+)", span.strip())
                if m and m.group(1) in by_name:
                    for cls in by_name[m.group(1)]:
                        check_value(where, cls, m.group(1), m.group(2))
    assert not problems, "\n".join(problems)


TOML_BLOCKS = [(p, n + 1, src) for p in DOCS for n, src in _fenced(p, "toml")]


@pytest.mark.parametrize("path,line,source", TOML_BLOCKS,
                         ids=[f"{p.relative_to(ROOT)}:{n}" for p, n, _ in TOML_BLOCKS])
def test_doc_toml_loads(path: Path, line: int, source: str) -> None:
    """A ```toml block is a chip a reader can save and load: every key exists, every value is
    allowed."""
    import tomllib

    from cimsim.config import ChipConfig

    ChipConfig.from_dict(tomllib.loads(source))


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _headings(path: Path) -> list[str]:
    out, inside = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside and (m := re.match(r"^#{1,6}\s+(.*?)\s*#*$", line)):
            out.append(m.group(1))
    return out


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in _headings(path):
        slug = _slug(heading)
        k = seen.get(slug, 0)
        seen[slug] = k + 1
        out.add(slug if k == 0 else f"{slug}-{k}")
    return out


def _ignored(rel: str) -> bool:
    """A path git ignores (a benchmark's output, ``benchmarks/results/``) need not exist."""
    proc = subprocess.run(["git", "check-ignore", "-q", rel], cwd=ROOT, capture_output=True)
    return proc.returncode == 0


OUTSIDE_PAGES = {"DESIGN.md"}
"""Pages the docs cite by section that are not in this repository (the project's design
document, which docs/hardware-model.md's last section compares the code with)."""


def test_doc_links_resolve() -> None:
    """Relative links ``[..](page.md#anchor)``, ``page.md §N`` section numbers and the repo
    paths named in the prose (``docs/…``, ``scripts/…``, ``cimsim/…``, ``tests/…``) exist."""
    problems = []
    for path in DOCS:
        inside = False
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{n}"
            if line.startswith("```"):
                inside = not inside
                continue
            if not inside:
                for target in re.findall(r"\]\(([^)\s]+)\)", line):
                    if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                        continue  # https:, mailto:
                    file, _, anchor = target.partition("#")
                    dest = (path.parent / file).resolve() if file else path
                    if not dest.exists():
                        problems.append(f"{where}: dead link {target}")
                    elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                        problems.append(f"{where}: no heading #{anchor} in {file or path.name}")
            for page, section in re.findall(r"([\w-]+\.md)`? *§ *(\d+(?:\.\d+)?)", line):
                if page in OUTSIDE_PAGES:
                    continue
                dest = ROOT / page if page == "README.md" else ROOT / "docs" / page
                if not dest.exists():
                    problems.append(f"{where}: {page} does not exist")
                elif not any(re.match(rf"(§ *)?{re.escape(section)}[.\s]", h)
                             for h in _headings(dest)):
                    problems.append(f"{where}: {page} has no section {section}")
            for rel in re.findall(r"(?<![\w/.$-])((?:docs|scripts|benchmarks|cimsim|tests)/"
                                  r"[\w./-]*\w)(?![\w$(-])", line):
                if not (ROOT / rel).exists() and not _ignored(rel):
                    problems.append(f"{where}: {rel} does not exist")
    assert not problems, "\n".join(problems)


_NUMBERS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety"
                                         .split(), start=2)}


def _count_word(word: str) -> int | None:
    """A count written in digits or words ("7", "seven", "twenty-three"); None: not a count."""
    if word.isdigit():
        return int(word)
    tens, _, unit = word.lower().partition("-")
    if tens in _TENS and (not unit or 0 < _NUMBERS.get(unit, 0) < 10):
        return _TENS[tens] + _NUMBERS.get(unit, 0)
    return None if unit else _NUMBERS.get(tens)


def test_doc_counts_of_published_macros() -> None:
    """"N published macros" and "the N macros of `cimsim/presets/published/`" count the TOMLs
    there, and "X of Y rows within 2x" is docs/validation.md's result line (a chip added to the
    table without the prose moving is what this catches)."""
    n_tomls = len(list((ROOT / "cimsim" / "presets" / "published").glob("*.toml")))
    result = re.search(r"\*\*Result: (\d+) of (\d+) rows within 2x",
                       (ROOT / "docs" / "validation.md").read_text(encoding="utf-8"))
    assert result is not None, "docs/validation.md has no 'Result: X of Y rows within 2x' line"
    problems = []
    count = re.compile(r"\b([\w-]+) (?:published macros\b|macros of `cimsim/presets/published/`)",
                       re.IGNORECASE)
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for n, line in enumerate(text.splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{n}"
            for word in count.findall(line):
                value = _count_word(word)
                if value is not None and value != n_tomls:
                    problems.append(f"{where}: '{word}' published macros; "
                                    f"cimsim/presets/published/ holds {n_tomls}")
            for x, y in re.findall(r"\b(\d+) of (\d+) (?:validation )?rows within 2x", line):
                if (x, y) != result.groups():
                    problems.append(f"{where}: {x} of {y} rows within 2x; docs/validation.md "
                                    f"says {result.group(1)} of {result.group(2)}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------
# Python names: a renamed or removed function leaves the prose citing something that is gone.
# --------------------------------------------------------------------------------------------
_DOTTED = re.compile(r"(?<![\w.])(cimsim(?:\.[A-Za-z_]\w*)+)(?![\w])")


def _resolves(name: str) -> bool:
    """``cimsim.a.b.c`` is a module, or an attribute (chain) of the longest importable prefix;
    a subpackage that re-exports a function of its module's name (``cimsim.mapping.deploy``)
    is tried as the module too."""
    import importlib

    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for part in parts[i:]:
            if not hasattr(obj, part):
                return False
            obj = getattr(obj, part)
        return True
    return False


def test_python_names_in_docs_resolve() -> None:
    """Every ``cimsim.x.y`` in a code span of the prose imports (a module) or is an attribute of
    one: a function, class, constant or method that the docs send a reader to."""
    import warnings

    problems = []
    seen: dict[str, bool] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a deprecation shim still resolves
        for path in DOCS:
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                for span in re.findall(r"`([^`]+)`", line):
                    for name in _DOTTED.findall(span):
                        if re.search(r"\.(py|toml|md|csv|json|png)$", name):
                            continue  # a file, `cimsim.toml`
                        if name not in seen:
                            seen[name] = _resolves(name)
                        if not seen[name]:
                            problems.append(f"{path.relative_to(ROOT)}:{n}: `{name}` does not "
                                            "import or is no attribute of its module")
    assert seen, "no `cimsim.…` name found in the docs (the pattern reads nothing)"
    assert not problems, "\n".join(problems)


def _api_section() -> dict[str, str]:
    """README.md's "Public API" list: module name -> the text of its bullet."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Public API", 1)[1].split("\n## ", 1)[0]
    out: dict[str, str] = {}
    for bullet in re.split(r"\n(?=- `)", section):
        # a bullet may name a second module (`cimsim.cost.tables` inside `cimsim.cost`'s)
        pieces = re.split(r"(?=`cimsim(?:\.\w+)*`: )", bullet)
        for piece in pieces:
            m = re.match(r"(?:- )?`(cimsim(?:\.\w+)*)`: ", piece)
            if m:
                out[m.group(1)] = piece
    return out


def test_readme_public_api_lists_every_exported_name() -> None:
    """Each module of README.md's "Public API" names every name of its ``__all__`` in its
    bullet; a bullet that abbreviates its list with "..." names only names that exist."""
    import importlib

    api = _api_section()
    assert "cimsim" in api and "cimsim.train" in api, sorted(api)
    problems = []
    for module, bullet in api.items():
        exported = getattr(importlib.import_module(module), "__all__", None)
        if exported is None:
            problems.append(f"README.md: `{module}` has no __all__")
            continue
        spans = re.findall(r"`([^`]+)`", bullet)
        named = {m.group(1) for s in spans if (m := re.match(r"([A-Za-z_]\w*)", s))}
        if "..." in bullet:  # an abbreviated list ("ADCKind, ..."): what it names must exist
            module_obj = importlib.import_module(module)
            for span in spans:
                m = re.fullmatch(r"([A-Za-z_]\w*)(\(.*\))?", span)
                if m and not hasattr(module_obj, m.group(1)):
                    problems.append(f"README.md: `{module}` has no `{m.group(1)}`")
            continue
        missing = sorted(set(exported) - named)
        if missing:
            problems.append(f"README.md: `{module}` exports {missing}, not in its bullet")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------
# docs/technology.md §2 quotes every TechTable number at 22 nm; the table is typed by hand.
# --------------------------------------------------------------------------------------------
_SHOWN = re.compile(r"^\s*([0-9][0-9,]*(?:\.[0-9]+)?)( k\b)?")


def _matches_shown(actual: float, shown: str, thousands: bool) -> bool:
    """``actual`` printed with as many decimals as ``shown`` has is ``shown``."""
    value = float(shown.replace(",", "")) * (1000 if thousands else 1)
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    if thousands:
        return abs(actual - value) <= 500
    return round(actual, decimals) == round(value, decimals)


def test_technology_table_values_are_the_codes() -> None:
    """Each row of technology.md's "Every number" table whose field is a ``TechTable`` field
    (the typical band) gives ``tech_table(22)``'s value, to the digits it shows; a ``_by_bits``
    row lists its bits (``4/5/6`` or ``4…10 b``) and one value per bit."""
    from cimsim.cost.tables import tech_table

    table = tech_table(22)
    text = (ROOT / "docs" / "technology.md").read_text(encoding="utf-8")
    section = text.split("## 2. Every number", 1)[1].split("\n## ", 1)[0]
    problems, checked = [], 0
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or "band" in cells[1]:
            continue  # not a row, or a LOW/HIGH band row (a formula, not a value)
        field = re.match(r"`(\w+)`", cells[1])
        if field is None or not hasattr(table, field.group(1)):
            continue
        actual = getattr(table, field.group(1))
        if isinstance(actual, tuple):  # by bits: "4/5/6 b" or "4…10 b" in the first column
            bits = re.search(r"(\d+)(?:/\d+)*(?:/|…)(\d+) b", cells[0])
            assert bits is not None, f"technology.md: no bits in '{cells[0]}'"
            lo, hi = int(bits.group(1)), int(bits.group(2))
            shown = cells[2].split("/")
            if len(shown) != hi - lo + 1:
                problems.append(f"{field.group(1)}: {len(shown)} values for bits {lo}..{hi}")
                continue
            for b, s in zip(range(lo, hi + 1), shown, strict=True):
                checked += 1
                if not _matches_shown(actual[b - 1], s.strip(), False):
                    problems.append(f"{field.group(1)}[{b} b] = {actual[b - 1]:.4g}, the page "
                                    f"shows {s.strip()}")
            continue
        m = _SHOWN.match(cells[2])
        if m is None:
            continue
        checked += 1
        if not _matches_shown(float(actual), m.group(1), bool(m.group(2))):
            problems.append(f"{field.group(1)} = {actual:.4g}, the page shows {cells[2]}")
    assert checked >= 40, f"only {checked} values read from technology.md §2"
    assert not problems, "docs/technology.md §2 differs from tech_table(22):\n" + "\n".join(
        problems)

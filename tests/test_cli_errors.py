"""Issue 16 at the command line: every error a user can fix is one line on stderr and exit
status 2, found before any deployment (nothing simulated, nothing written under ``--out``), and
``simulate`` never scores accuracy on the inputs it calibrated on.

The unit checks live with the loaders (``tests/mapping/test_loaders.py``); here each case goes
through ``cimsim.cli.main`` with ``cimsim.deploy`` (and the sweep and training entry points)
replaced by a tripwire, so that an error found only after the work fails the test.
"""

from __future__ import annotations

import contextlib
import io
import logging
import string
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cimsim
import cimsim.evaluate
import cimsim.sweep
import cimsim.train
from cimsim.cli import main
from cimsim.data import load_digits_split
from cimsim.mapping import SimModel
from cimsim.models import load_digits_cnn

MODEL = "cimsim.models:load_digits_cnn"
N_INPUTS = 24
"""Inputs in the small data files (the smallest bundled data: the first test images)."""


def _digits(n: int = N_INPUTS) -> tuple[np.ndarray, np.ndarray]:
    _, _, x, y = load_digits_split()
    return x[:n].numpy(), y[:n].numpy()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Good and bad data files, exported models and saved reports, made once."""
    d = tmp_path_factory.mktemp("cli_errors")
    x, y = _digits()
    np.savez(d / "good.npz", x=x, y=y)
    nan = x.copy()
    nan[3, 0, 2, 2] = np.nan
    np.savez(d / "nan.npz", x=nan, y=y)
    inf = x.copy()
    inf[0, 0, 0, 0] = -np.inf
    np.savez(d / "inf.npz", x=inf, y=y)
    np.savez(d / "shape.npz", x=np.repeat(x, 3, axis=1), y=y)  # 3 channels for a 1-channel CNN
    np.savez(d / "ylen.npz", x=x, y=y[:-4])
    np.savez(d / "y2d.npz", x=x, y=np.stack([y, y], axis=1))
    np.savez(d / "x0d.npz", x=np.float32(1.0))
    model = load_digits_cnn()
    ep = torch.export.export(model, (torch.from_numpy(x[:4]),))  # batch fixed at 4
    torch.export.save(ep, d / "fixed.pt2")
    (d / "bad.pt2").write_bytes(b"PK\x03\x04 not really an archive")
    (d / "garbage.bin").write_bytes(b"not a model")
    (d / "a_file").write_text("I am a file, not a folder\n")
    for name, text in {"corrupt": '{"cimsim_version": "0.1", "chip": {', "foreign": "[1, 2, 3]",
                       "other_json": '{"name": "some other tool", "layers": 3}',
                       "binary": None}.items():
        folder = d / "reports" / name
        folder.mkdir(parents=True)
        if text is None:
            (folder / "report.json").write_bytes(b"\xff\xfe\x00garbage")
        else:
            (folder / "report.json").write_text(text)
    return d


@contextlib.contextmanager
def tripwires():
    """The work itself (deploy, a sweep, training) raises: an error must be found before it."""
    def reached(*_args, **_kwargs):
        raise AssertionError("the work started before the error was found")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cimsim, "deploy", reached)
        mp.setattr(cimsim.sweep, "run_sweep", reached)
        mp.setattr(cimsim.train, "prepare", reached)
        yield


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` with the tripwires set: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with tripwires(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def assert_one_line(rc: int, err: str, *fragments: str) -> None:
    assert rc == 2, err
    assert err.startswith("cimsim: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def _simulate(files: Path, out: Path, **changes: str) -> list[str]:
    args = {"--model": MODEL, "--data": str(files / "good.npz"), "--chip": "ideal",
            "--out": str(out)} | changes
    return ["simulate", *[v for kv in args.items() for v in kv]]


# --- item 2: calibration and evaluation inputs are disjoint ---------------------------------

@pytest.fixture
def recorded(monkeypatch):
    """What ``simulate`` calibrated on (``deploy``'s inputs) and evaluated on (``predict``)."""
    calls: dict[str, list] = {"calibration": [], "evaluated": []}
    # _predict: what accuracy and predict run
    real_deploy, real_predict = cimsim.deploy, cimsim.evaluate._predict

    def deploy(model, chip, calibration, **kwargs):
        calls["calibration"].append(calibration)
        return real_deploy(model, chip, calibration, **kwargs)

    def predict(model, x, *args):
        if isinstance(model, SimModel):
            calls["evaluated"].append(x)
        return real_predict(model, x, *args)

    monkeypatch.setattr(cimsim, "deploy", deploy)
    monkeypatch.setattr(cimsim.evaluate, "_predict", predict)
    return calls


def test_simulate_evaluates_only_inputs_it_did_not_calibrate_on(files, tmp_path, capsys,
                                                                recorded):
    """Issue 16 item 2: ``simulate`` scored accuracy on the calibration inputs too."""
    assert main(_simulate(files, tmp_path, **{"--calibration": "16"})) == 0
    out, err = capsys.readouterr()
    x = torch.from_numpy(_digits()[0])
    (cal,), (evaluated,) = recorded["calibration"], recorded["evaluated"]
    assert torch.equal(cal, x[:16]) and torch.equal(evaluated, x[16:])
    assert f"{N_INPUTS} inputs: the first 16 calibrate, {N_INPUTS - 16} evaluated" in out
    assert err == ""


def test_simulate_with_no_input_left_says_so_loudly(files, tmp_path, capsys, recorded):
    """Every input calibrates when none would remain; stdout and stderr both say so."""
    assert main(_simulate(files, tmp_path, **{"--calibration": "256"})) == 0
    out, err = capsys.readouterr()
    x = torch.from_numpy(_digits()[0])
    (cal,), (evaluated,) = recorded["calibration"], recorded["evaluated"]
    assert torch.equal(cal, x) and torch.equal(evaluated, x)
    assert "all used to calibrate and to evaluate" in out
    assert err.startswith("cimsim: warning: --calibration 256 leaves no input to evaluate")


def test_a_sweep_calibrating_on_exactly_every_input_says_it_reuses_them(files, tmp_path,
                                                                         capsys):
    """--calibration equal to the inputs leaves none to evaluate, as one more would: the
    warning's bound includes equality (a mutation to '<' went unnoticed)."""
    argv = ["sweep", "--model", MODEL, "--data", str(files / "good.npz"), "--chip", "ideal",
            "--adc-bits", "8", "--calibration", str(N_INPUTS), "--out", str(tmp_path)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert f"{N_INPUTS} inputs, all used to calibrate and to evaluate" in out
    assert err.endswith(f"cimsim: warning: --calibration {N_INPUTS} leaves no input to "
                        "evaluate; the accuracy is measured on the calibration inputs "
                        "themselves (optimistic). Give more inputs or a smaller --calibration\n")
    assert main(argv[:-4] + ["--calibration", str(N_INPUTS - 1), "--out",
                             str(tmp_path / "b")]) == 0
    assert "leaves no input" not in capsys.readouterr().err


# --- item 5: negative or zero counts ------------------------------------------------------

_POSITIVE = "is invalid; allowed: an integer >= 1 ("
_LIMIT = "is invalid; allowed: an integer >= 1, or 0 (all inputs"
_COUNT_CASES = [  # (command, flag, value, what the line says after "argument FLAG: ")
    ("simulate", "--limit", "-60", f"-60 {_LIMIT}"),
    ("simulate", "--calibration", "0", f"0 {_POSITIVE}"),
    ("simulate", "--batch-size", "0", f"0 {_POSITIVE}"),
    ("simulate", "--seed", "-1", "-1 is invalid; allowed: 0 to 18446744073709551615"),
    ("demo", "--calibration", "-5", f"-5 {_POSITIVE}"),
    ("demo", "--batch-size", "0", f"0 {_POSITIVE}"),
    ("demo", "--batch-size", "nan", "'nan' is not an integer; allowed: an integer >= 1"),
    ("sweep", "--jobs", "-2", f"-2 {_POSITIVE}"),
    ("sweep", "--limit", "-1", f"-1 {_LIMIT}"),
    ("sweep", "--calibration", "0", f"0 {_POSITIVE}"),
    ("train", "--epochs", "0", f"0 {_POSITIVE}"),
    ("train", "--limit", "-3", f"-3 {_LIMIT}"),
    ("train", "--calibration", "1.5", "'1.5' is not an integer"),
]


def _base(command: str, files: Path, out: Path) -> list[str]:
    """A command line of ``command`` that would run (and write into ``out``)."""
    data = ["--data", str(files / "good.npz")]
    return {
        "demo": ["demo", "--fast", "--chip", "ideal", "--out", str(out)],
        "simulate": ["simulate", "--model", MODEL, *data, "--chip", "ideal", "--out", str(out)],
        "sweep": ["sweep", "--model", MODEL, *data, "--chip", "ideal", "--adc-bits", "4",
                  "--out", str(out)],
        "train": ["train", "--model", "demo", "--chip", "ideal", "--limit", "16", "--out",
                  str(out)],
        "presets": ["presets"],
        "report": ["report", str(files / "reports" / "corrupt")],
    }[command]


@pytest.mark.parametrize("command, flag, value, message", _COUNT_CASES)
def test_counts_are_checked_on_every_subcommand(files, tmp_path, command, flag, value, message):
    """Issue 16 item 5: ``simulate --limit -60`` used 4 inputs, ``demo --calibration -5`` 1343
    images; ``--batch-size 0`` failed after the deploy."""
    out = tmp_path / "out"
    rc, _, err = run_cli(_base(command, files, out) + [flag, value])
    assert_one_line(rc, err, f"argument {flag}: {message}")
    assert not out.exists()


def test_limit_zero_still_means_every_input(files, tmp_path, capsys):
    assert main(_simulate(files, tmp_path, **{"--limit": "0", "--calibration": "8"})) == 0
    assert f"{N_INPUTS} inputs: the first 8 calibrate" in capsys.readouterr().out


# --- tracebacks that become one line, found before the work ---------------------------------

@pytest.mark.parametrize("data, fragments", [
    ("nan.npz", ["1 NaN or infinite value(s)", "index (3, 0, 2, 2)"]),
    ("inf.npz", ["NaN or infinite"]),
    ("shape.npz", ["cannot run on the data's inputs of shape (2, 3, 8, 8)"]),
    ("ylen.npz", [f"one per input ({N_INPUTS}); got shape ({N_INPUTS - 4},)"]),
    ("y2d.npz", [f"got shape ({N_INPUTS}, 2)"]),
    ("x0d.npz", ["single number (0-d)"]),
])
@pytest.mark.parametrize("command", ["simulate", "sweep"])
def test_bad_data_is_one_line_before_deploy(files, tmp_path, command, data, fragments):
    """Issue 16: NaN/Inf (an int64-overflow message from the calibration check), a wrong shape
    (a traceback from the first mapped layer), labels of the wrong length or 2-D (found after
    the whole simulation), a 0-d x (``len() of a 0-d tensor``)."""
    out = tmp_path / "out"
    argv = _base(command, files, out)
    argv[argv.index("--data") + 1] = str(files / data)
    rc, _, err = run_cli(argv)
    assert_one_line(rc, err, *fragments)
    assert not out.exists()


@pytest.mark.parametrize("model, fragments", [
    ("fixed.pt2", ["exported with a fixed batch of 4", "dynamic_shapes=({0: "
                                                       "torch.export.Dim('batch')},)"]),
    ("bad.pt2", ["not a torch.export archive"]),
    ("torch.nn:Identity", ["must output class scores of shape (batch, classes)",
                           "gives shape (2, 1, 8, 8)"]),
    ("cimsim:load_chip", ["is not a model factory: load_chip(name_or_path"]),
])
def test_bad_models_are_one_line_before_deploy(files, tmp_path, capfd, caplog, model,
                                                fragments):
    """Issue 16: a fixed-batch .pt2 failed on a torch guard inside calibration; a damaged .pt2
    printed torch's logged traceback before cimsim's line; ``torch.nn:Identity`` and
    ``cimsim:load_chip`` ended in tracebacks."""
    spec = str(files / model) if model.endswith(".pt2") else model
    out = tmp_path / "out"
    rc, _, err = run_cli(_simulate(files, out, **{"--model": spec}))
    assert_one_line(rc, err, *fragments)
    # nothing from torch on the real stderr or in its log either
    assert capfd.readouterr().err == ""
    assert not [r for r in caplog.records
                if r.name.startswith("torch") and r.levelno >= logging.WARNING]
    assert not out.exists()


@pytest.mark.parametrize("command", ["demo", "simulate", "sweep", "train", "report"])
def test_out_naming_a_file_is_refused_first(files, command):
    """Issue 16: ``--out`` naming an existing file failed after the whole run."""
    target = files / "a_file"
    before = target.read_text()
    argv = _base(command, files, target)
    if command == "report":
        argv += ["--out", str(target)]
    rc, _, err = run_cli(argv)
    assert_one_line(rc, err, f"--out: '{target}' is a file, not a folder")
    assert target.read_text() == before


@pytest.mark.parametrize("folder, fragment", [
    ("corrupt", "not a cimsim report (not JSON"),
    ("binary", "not a cimsim report (not JSON"),
    ("foreign", "not a report cimsim saved (a JSON list, not an object)"),
    ("other_json", "not a report cimsim saved (no 'cimsim_version', 'chip', 'totals')"),
])
def test_report_of_a_corrupt_or_foreign_json_is_one_line(files, tmp_path, folder, fragment):
    """Issue 16: ``cimsim report DIR`` with a damaged or foreign report.json: a traceback."""
    out = tmp_path / "out"
    rc, _, err = run_cli(["report", str(files / "reports" / folder), "--out", str(out)])
    assert_one_line(rc, err, fragment)
    assert not out.exists()
    assert sorted(p.name for p in (files / "reports" / folder).iterdir()) == ["report.json"]


def test_capacity_error_is_one_line(tmp_path, capsys):
    """A model bigger than the chip (no time-multiplexing) names the switch, in one line."""
    chip = tmp_path / "tiny.toml"
    chip.write_text('name = "tiny"\n[array]\nn_rows = 32\nn_cols = 32\ncols_per_adc = 8\n'
                    "n_tiles = 1\narrays_per_tile = 1\n")
    assert main(["demo", "--fast", "--chip", str(chip), "--calibration", "8", "--out",
                 str(tmp_path / "out")]) == 2
    assert_one_line(2, capsys.readouterr().err, "allow_time_multiplexing")
    assert not (tmp_path / "out").exists()


# --- item 4: help texts and the README ----------------------------------------------------

@pytest.mark.parametrize("command", ["demo", "simulate", "sweep", "train"])
def test_seed_batch_size_and_out_have_help(command, capsys):
    """Issue 16: ``--seed``, ``--batch-size`` and ``--out`` were listed without a word."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split()).split("options:", 1)[1]
    for flag in ("--seed SEED", "--batch-size BATCH_SIZE", "--out OUT"):
        # the flag is followed by its help text, not directly by the next flag
        after = text.split(flag, 1)[1].lstrip()
        assert after and not after.startswith(("-", "[")), (flag, after[:40])
    assert "seed of the" in text and "folder for" in text


def test_readme_command_line_explains_time_multiplexing():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    assert "allow_time_multiplexing = true" in section
    assert "bigger than" in section and "CapacityError" in section


# --- property: malformed command lines, every subcommand ----------------------------------

_COUNT_FLAGS = {
    "demo": ("--calibration", "--batch-size", "--seed"),
    "simulate": ("--calibration", "--batch-size", "--limit", "--seed"),
    "sweep": ("--calibration", "--batch-size", "--limit", "--jobs", "--seed"),
    "train": ("--calibration", "--batch-size", "--limit", "--epochs", "--seed"),
    "presets": (),
    "report": (),
}
_FLAGS_WITH_ZERO = ("--limit", "--seed")  # 0 is allowed there: no limit, seed 0
_NOT_COUNTS = ["nan", "NaN", "inf", "-inf", "", "1.5", "1e3", "0x10", "two", " ", "3 4"]
_BAD_DATA = ["nan.npz", "inf.npz", "shape.npz", "ylen.npz", "y2d.npz", "x0d.npz", "garbage.bin",
             "missing.npz"]
_BAD_MODELS = ["cimsim:load_chip", "torch.nn:Identity", "no_such_module_xyz:build",
               "cimsim.models:DigitsCNN.nothing", "fixed.pt2", "bad.pt2", "garbage.bin",
               "missing.pt2"]
_NAME_CHARS = string.ascii_letters + string.digits + "-_"


def _bad_count(flag: str) -> st.SearchStrategy[str]:
    top = -1 if flag in _FLAGS_WITH_ZERO else 0
    return st.one_of(st.integers(max_value=top).map(str), st.sampled_from(_NOT_COUNTS))


def _bad_chip_name() -> st.SearchStrategy[str]:
    presets = set(cimsim.list_presets())
    return st.one_of(
        st.text(_NAME_CHARS, min_size=1, max_size=12).filter(lambda s: s not in presets),
        st.sampled_from(["missing.toml", "garbage.bin"]),
    )


def _bad_model_attr() -> st.SearchStrategy[str]:
    import cimsim.models

    names = set(dir(cimsim.models))
    return st.text(string.ascii_letters + "_", min_size=1, max_size=10).filter(
        lambda s: s not in names).map(lambda s: f"cimsim.models:{s}")


def _mutations(command: str) -> st.SearchStrategy[tuple[str, str, str]]:
    """(kind, flag, value): one malformed piece for ``command``'s otherwise good line."""
    kinds: list[st.SearchStrategy[tuple[str, str, str]]] = [
        st.sampled_from(["--frobnicate", "extra-word"]).map(lambda v: ("append", v, "")),
    ]
    flags = _COUNT_FLAGS[command]
    if flags:
        kinds.append(st.sampled_from(flags).flatmap(
            lambda f: _bad_count(f).map(lambda v, f=f: ("set", f, v))))
    if command in ("demo", "simulate", "sweep", "train"):
        kinds.append(_bad_chip_name().map(lambda v: ("set", "--chip", v)))
        kinds.append(st.just(("set", "--out", "a_file")))
    if command in ("simulate", "sweep"):
        kinds.append(st.sampled_from(_BAD_DATA).map(lambda v: ("set", "--data", v)))
        kinds.append(st.one_of(st.sampled_from(_BAD_MODELS), _bad_model_attr()).map(
            lambda v: ("set", "--model", v)))
    if command == "train":
        kinds.append(st.sampled_from(_BAD_DATA).map(lambda v: ("custom-data", "--data", v)))
        kinds.append(st.sampled_from(["qt", "", "QAT"]).map(lambda v: ("set", "--method", v)))
    if command == "report":
        kinds.append(st.sampled_from(["corrupt", "foreign", "other_json", "binary", "missing"])
                     .map(lambda v: ("report-dir", "", v)))
    return st.one_of(kinds)


def _apply(argv: list[str], mutation: tuple[str, str, str], files: Path) -> list[str]:
    kind, flag, value = mutation
    argv = list(argv)
    if kind == "append":
        return argv + [flag]
    if kind == "report-dir":
        argv[1] = str(files / "reports" / value)
        return argv
    if kind == "custom-data":  # train on a module:function model, whose data is --data
        argv[argv.index("--model") + 1] = MODEL
        argv += ["--data", value]
        flag = "--data"
    if flag in ("--data", "--model", "--chip", "--out") and (files / value).name == value and (
            value.endswith((".npz", ".pt2", ".bin", ".toml")) or value == "a_file"):
        value = str(files / value)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


@pytest.mark.parametrize("command", list(_COUNT_FLAGS))
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_malformed_command_lines_are_one_line_exit_2(files, command, data):
    """Property (issue 16): a malformed piece in any subcommand's command line (a negative,
    zero or non-numeric count, a missing or wrong file, a bad chip name or model spec, an
    unknown option) exits 2 with exactly one line on stderr, before any work, writing nothing
    under ``--out``."""
    mutation = data.draw(_mutations(command), label="mutation")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        argv = _apply(_base(command, files, out), mutation, files)
        rc, _, err = run_cli(argv)
        assert_one_line(rc, err)
        assert not out.exists()
    if command == "report":  # re-rendering into DIR itself wrote nothing there either
        for folder in (files / "reports").iterdir():
            assert [p.name for p in folder.iterdir()] == ["report.json"]


def test_error_lines_are_single_even_for_multiline_messages(files, tmp_path):
    """A message with line breaks (torch's run to several) is folded into the one line."""
    rc, _, err = run_cli(_simulate(files, tmp_path / "o",
                                   **{"--model": "tests.test_cli_errors:multiline_failure"}))
    assert_one_line(rc, err, "first line")
    assert "second" not in err


def multiline_failure():
    """A ``module:function`` model factory that fails with a two-line message."""
    raise RuntimeError("first line\nsecond line")


def test_output_into_a_closed_pipe_exits_quietly():
    """``cimsim datasheet X | head -1``: the reader closes the pipe early; no traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "cimsim.cli", "datasheet", "rram-22nm",
                             "--breakdown"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # as head does after its first line
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_a_reader_that_leaves_loses_no_report(files, tmp_path):
    """``cimsim simulate ... | head -1``: the first print after the reader left raised
    BrokenPipeError after the whole simulation and before the report was written (status 1,
    no files); the rest of the output now goes to devnull and the files are written."""
    import os
    import subprocess
    import sys

    out = tmp_path / "piped"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # every line reaches the pipe at its print
    proc = subprocess.Popen([sys.executable, "-m", "cimsim.cli", "simulate", "--model",
                             "cimsim.models:load_digits_cnn", "--data", str(files / "good.npz"),
                             "--chip", "ideal", "--calibration", "16", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # as head -1 does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err
    assert "Traceback" not in err, err
    assert (out / "report.json").is_file() and (out / "report.html").is_file()


def test_a_sweep_whose_every_point_failed_exits_non_zero(files, tmp_path):
    """Every point of a one-array macro fails (the model needs more arrays): the table says
    why, and the command does not report success."""
    out = tmp_path / "out"
    base = _base("sweep", files, out)
    base[base.index("ideal")] = "published/sinangil-jssc21"
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(base)  # (no tripwires: the sweep runs)
    assert rc == 1
    assert "no point of the sweep ran" in err.getvalue()
    assert (out / "sweep.csv").exists()


@pytest.mark.parametrize("value, why", [("2", "out of range"), ("0", "out of range"),
                                        ("nan", "out of range"), ("abc", "not a number")])
def test_datasheet_input_density_is_named_by_its_flag(value, why):
    # was: the Python field's name ("datasheet input_density = 2.0"), after loading the chip
    rc, _, err = run_cli(["datasheet", "rram-22nm", "--input-density", value])
    assert_one_line(rc, err, "--input-density", why, "allowed: a number in (0, 1]")


def test_a_folder_named_as_a_preset_does_not_hide_it(tmp_path, monkeypatch, capsys):
    """`cimsim demo --chip rram-22nm --out rram-22nm` ran once; then its own output folder
    was read as the chip ('is a folder')."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rram-22nm").mkdir()
    assert cimsim.load_chip("rram-22nm").name == "rram-22nm"
    assert main(["datasheet", "rram-22nm"]) == 0
    (tmp_path / "not-a-preset").mkdir()
    with pytest.raises(cimsim.errors.ConfigError, match="is a folder"):
        cimsim.load_chip("not-a-preset")


@pytest.mark.parametrize("args", [
    ["demo", "--fast", "--out", ""], ["report", ""], ["report", " "],
    ["simulate", "--model", "", "--data", "x.npz", "--chip", "ideal", "--out", "o"],
    ["simulate", "--model", "demo", "--data", "", "--chip", "ideal", "--out", "o"],
])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(args, tmp_path, monkeypatch,
                                                                 capsys):
    """--out "" wrote the report's files into the current folder (Path('') is '.'), and
    `cimsim report ""` re-rendered it; --model "" was called 'a folder'."""
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "'' is empty" in err or "' ' is empty" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_a_stream_that_cannot_show_a_character_gets_it_replaced():
    """``PYTHONIOENCODING=ascii`` or a Latin-1 locale: the layer table's '§' and the sweep's
    'σ' raised UnicodeEncodeError after the whole simulation (demo wrote no files; a sweep
    with a noise axis exited 1 after its files). Replaced now, the rest printed as it is."""
    from cimsim.cli import _PipeSafeStdout

    for enc, shown in (("ascii", "?7, ? = 0.05; done\n"), ("latin-1", "§7, ? = 0.05; done\n")):
        raw = io.BytesIO()
        stream = io.TextIOWrapper(raw, encoding=enc)
        out = _PipeSafeStdout(stream)
        out.write("§7, σ = 0.05; ")
        out.write("done\n")
        out.flush()
        assert raw.getvalue().decode(enc) == shown

    class Tee:  # says UTF-8, writes one copy to an ASCII sink: one retry in ASCII, no loop
        encoding = "utf-8"

        def __init__(self):
            self.raw = io.BytesIO()
            self.sink = io.TextIOWrapper(self.raw, encoding="ascii")

        def write(self, text):
            return self.sink.write(text)

    tee = Tee()
    assert _PipeSafeStdout(tee).write("§7 σ\n") == 5
    tee.sink.flush()
    assert tee.raw.getvalue() == b"?7 ?\n"


def test_presets_and_saved_chips_read_in_utf8_whatever_the_locale(tmp_path):
    """Several presets cite a '§': under ``LC_ALL=C`` without Python's UTF-8 mode they were
    read in ASCII (UnicodeDecodeError loading rram-22nm); ``ChipConfig.save`` wrote in the
    locale's encoding what ``load_chip`` reads as UTF-8."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0",
           "PYTHONCOERCECLOCALE": "0", "PYTHONIOENCODING": "ascii"}
    code = ("import locale, sys, cimsim\n"
            "assert locale.getpreferredencoding(False).lower() in ('ascii', 'ansi_x3.4-1968')\n"
            "chip = cimsim.load_chip('rram-22nm')\n"
            "chip = chip.replace(description=chip.description + ' (\\u03c3, \\u00a7)')\n"
            "chip.save(sys.argv[1])\n"
            "assert cimsim.load_chip(sys.argv[1]) == chip\n")
    preset = Path(cimsim.__file__).parent / "presets" / "rram-22nm.toml"
    assert "§" in preset.read_text(encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "chip.toml")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("command", ["demo", "simulate", "sweep"])
def test_out_a_dangling_link_or_a_folder_in_a_files_place_is_refused_first(files, command,
                                                                          tmp_path):
    """A link to nothing as --out failed after the whole run ("File exists"); a folder where
    the run writes sweep.jsonl died after the first point, and report.json after the run."""
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    rc, _, err = run_cli(_base(command, files, link))
    assert_one_line(rc, err, f"--out: '{link}' is a link to '{tmp_path / 'nowhere'}', which "
                             "does not exist")
    out = tmp_path / "out"
    name = "sweep.jsonl" if command == "sweep" else "report.json"
    (out / name).mkdir(parents=True)
    rc, _, err = run_cli(_base(command, files, out))
    assert_one_line(rc, err, f"--out: '{out / name}' is a folder where the run writes its "
                             f"file '{name}'")
    assert [p.name for p in out.iterdir()] == [name]


def test_out_with_a_tilde_after_an_equals_sign_is_the_home_folder(files, monkeypatch):
    """``--out=~/r`` (no shell expands a ``~`` after ``=``) wrote into ``./~/r``; ``--data``
    likewise."""
    from cimsim.cli import build_parser

    monkeypatch.setenv("HOME", str(files))
    args = build_parser().parse_args(["simulate", "--model", MODEL, "--data=~/good.npz",
                                      "--chip", "ideal", "--out=~/r"])
    assert (args.out, args.data) == (files / "r", files / "good.npz")


def test_a_tilde_of_no_user_and_a_time_run_s_files_are_refused_first(files, tmp_path):
    """``--out '~nosuchuser/x'`` ended in a RuntimeError traceback from the path's expansion;
    ``simulate --time`` was checked for the report's files, which it does not write in --out,
    and not for time.csv, which it does."""
    rc, _, err = run_cli(_base("simulate", files, Path("~nosuchuser-cimsim/x")))
    assert_one_line(rc, err, "argument --out: '~nosuchuser-cimsim/x': no home folder for "
                             "'~nosuchuser-cimsim'")
    out = tmp_path / "out"
    (out / "time.csv").mkdir(parents=True)
    argv = _base("simulate", files, out) + ["--time", "1,10"]
    rc, _, err = run_cli(argv)
    assert_one_line(rc, err, f"--out: '{out / 'time.csv'}' is a folder where the run writes "
                             "its file 'time.csv'")


def test_a_command_without_standard_output_or_error_still_runs(tmp_path):
    """With no standard output (Windows' pythonw, a service, ``>&-``) every command failed at
    its first print ('NoneType' object has no attribute 'write'); with no standard error the
    progress bars failed deploy, evaluations, training and sweeps the same way."""
    import os
    import subprocess
    import sys

    for fd in (1, 2):
        proc = subprocess.run([sys.executable, "-m", "cimsim", "presets"], cwd=tmp_path,
                              preexec_fn=lambda fd=fd: os.close(fd),
                              stdout=None if fd == 1 else subprocess.PIPE,
                              stderr=None if fd == 2 else subprocess.PIPE, timeout=300)
        assert proc.returncode == 0, (fd, proc.stderr or proc.stdout)


def test_progress_bars_without_standard_error(monkeypatch):
    import sys

    from cimsim.evaluate import accuracy

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    monkeypatch.setattr(sys, "stderr", None)
    assert 0 <= accuracy(model, torch.randn(8, 4), torch.zeros(8, dtype=torch.long),
                         progress=True, batch_size=2) <= 1

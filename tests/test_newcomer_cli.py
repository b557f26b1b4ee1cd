"""A newcomer's first day at the command line and in the Python API: the mistakes they make
get one clear line, an interrupted or failed run loses and corrupts nothing, the same command
writes the same bytes, and every command line the README and docs/ show is one the parser takes.

Each test here failed before the fix it guards (named in its docstring), except the documented
command lines, which guard the docs against drifting from the parser. The subprocess cases
(a real SIGINT) are ``slow``.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import cimsim
import cimsim.mapping.loaders
import cimsim.train
from cimsim.cli import build_parser, main
from cimsim.data import load_digits_split
from cimsim.errors import ConfigError
from cimsim.report import Report

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
MODEL = "cimsim.models:load_digits_cnn"

#: A place no process can create a folder in, root included (root passes every permission
#: check on an ordinary read-only folder, so chmod cannot stand in for it here).
UNWRITABLE = Path("/proc/cimsim-newcomer/out")
needs_proc = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    _, _, x, y = load_digits_split()
    path = tmp_path_factory.mktemp("newcomer") / "digits.npz"
    np.savez(path, x=x[:24].numpy(), y=y[:24].numpy())
    return path


@pytest.fixture(scope="module")
def saved_report(tmp_path_factory) -> Path:
    """A small report folder (the digits CNN on the ideal chip, 8 inputs)."""
    from cimsim.models import load_digits_cnn

    x_train, _, x_test, _ = load_digits_split()
    sim = cimsim.deploy(load_digits_cnn(), cimsim.load_chip("ideal"), x_train[:8], seed=0)
    sim(x_test[:8])
    folder = tmp_path_factory.mktemp("report")
    sim.report().save(folder)
    return folder


@contextlib.contextmanager
def no_work(monkeypatch):
    """Deploying or loading the model fails the test: an error must come before the work."""
    def tripwire(*args, **kwargs):
        raise AssertionError("the work started before the command line was refused")

    for target, name in ((cimsim, "deploy"), (cimsim.mapping.loaders, "load_model_for"),
                         (cimsim.mapping.loaders, "load_data")):
        monkeypatch.setattr(target, name, tripwire)
    yield


def _one_error_line(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cimsim: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


# --- --out where nothing can be written --------------------------------------------------

@needs_proc
@pytest.mark.parametrize("command", [
    ["demo", "--fast"],
    ["simulate", "--model", MODEL, "--data", "{data}", "--chip", "ideal"],
    ["sweep", "--model", "demo", "--chip", "ideal", "--adc-bits", "4"],
    ["train", "--model", "demo", "--chip", "ideal"],
], ids=["demo", "simulate", "sweep", "train"])
def test_out_that_cannot_be_written_is_refused_before_the_work(command, data_file, capsys,
                                                                monkeypatch):
    """Was: the whole simulation ran, then '[Errno 2] No such file or directory' without the
    flag's name (a read-only folder: the same, after minutes of work)."""
    argv = [a.format(data=data_file) for a in command] + ["--out", str(UNWRITABLE)]
    with no_work(monkeypatch):
        assert main(argv) == 2
    _one_error_line(capsys, "--out", "cannot write in '/proc'")


@needs_proc
def test_report_out_that_cannot_be_written_is_one_line(saved_report, capsys):
    assert main(["report", str(saved_report), "--out", str(UNWRITABLE)]) == 2
    _one_error_line(capsys, "--out", "cannot write")


def test_out_check_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    """The write probe removes its file and creates no folder."""
    with no_work(monkeypatch):
        assert main(["train", "--model", "demo", "--chip", "ideal", "--lr", "-1",
                     "--out", str(tmp_path / "new" / "run")]) == 2
    _one_error_line(capsys, "--lr")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["demo", "simulate", "sweep", "train", "presets",
                                     "datasheet", "report"])
def test_verbose_is_taken_after_the_subcommand_too(command):
    """Was: ``cimsim datasheet ideal -v`` refused with "unrecognized arguments: -v" (the flag
    was only taken before the subcommand), where people put it."""
    parser = build_parser()
    sub = next(a for a in parser._subparsers._group_actions).choices[command]
    assert {"-v", "--verbose"} <= {s for a in sub._actions for s in a.option_strings}
    assert parser.parse_args(["presets", "-v"]).verbose is True
    assert parser.parse_args(["-v", "presets"]).verbose is True
    assert parser.parse_args(["presets"]).verbose is False


# --- a folder, an empty name, a mistyped --time: named at once -------------------------------

@pytest.mark.parametrize("flag", ["--model", "--data", "--chip"])
def test_a_folder_given_for_a_file_is_called_a_folder(flag, data_file, tmp_path, capsys):
    """Was: "model file 'x' not found" for a folder that is there."""
    args = {"--model": MODEL, "--data": str(data_file), "--chip": "ideal"}
    args[flag] = str(tmp_path)
    argv = ["simulate", *[t for kv in args.items() for t in kv], "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    _one_error_line(capsys, "is a folder", "allowed:")


@pytest.mark.parametrize(("name", "content", "fragment"), [
    ("empty.npz", b"", "not a readable .npz file"),
    ("x.npy", None, "a .npy file is not read; allowed: an .npz"),
], ids=["empty-npz", "npy"])
def test_data_files_of_the_wrong_kind_are_one_line(name, content, fragment, tmp_path, capsys):
    """Was: an empty .npz gave a traceback (EOFError: No data left in file); a .npy (x without
    labels, as NumPy saves it) "not a tensor file ... (UnpicklingError)" with no way out."""
    path = tmp_path / name
    if content is None:
        np.save(path, np.zeros((4, 1, 8, 8), dtype=np.float32))
    else:
        path.write_bytes(content)
    assert main(["simulate", "--model", MODEL, "--data", str(path), "--chip", "ideal",
                 "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capsys, str(path), fragment)


_BILINEAR = """
import torch
from torch import nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.pair = nn.Bilinear(64, 64, 16)  # weights cimsim keeps in float, with a warning
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc(self.pair(x, x))
"""


def test_stderr_holds_cimsim_lines_only(tmp_path):
    """Was: torch's converter log ("W... dimension inputs['x_1'].shape[1] 0/1 specialized")
    and a FutureWarning from copying the exported graph on stderr for a TorchScript model, and
    a warning printed as Python's "/.../cimsim/cli.py:147: UserWarning: ..." plus the source
    line. Run as a user runs it: a fresh process, stderr as it is."""
    from cimsim.models import load_digits_cnn

    torch.jit.save(torch.jit.script(load_digits_cnn()), tmp_path / "model.ts")
    (tmp_path / "bilinear.py").write_text(_BILINEAR)
    _, _, x, y = load_digits_split()
    np.savez(tmp_path / "good.npz", x=x[:12].numpy(), y=y[:12].numpy())
    common = ["--data", "good.npz", "--chip", "ideal", "--calibration", "4"]
    script = ("from cimsim.cli import main\n"
              f"assert main(['simulate', '--model', 'model.ts', *{common!r}, '--out', 'a']) == 0\n"
              f"assert main(['simulate', '--model', 'bilinear.py:Model', *{common!r}, "
              "'--out', 'b']) == 0\n")
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines() == [
        "cimsim: warning: deploy: 1 layer(s) with weights run digitally in float, their type "
        "not being supported: pair (Bilinear)"], run.stderr


def test_a_state_dict_given_as_the_model_says_what_to_give_instead(data_file, tmp_path,
                                                                    capsys):
    """Was: "not a TorchScript or torch.export (.pt2) archive (RuntimeError); pickled models
    are not loaded", which names neither the mistake nor what is read."""
    from cimsim.models import load_digits_cnn

    torch.save(load_digits_cnn().state_dict(), tmp_path / "weights.pt")
    torch.save(load_digits_cnn(), tmp_path / "pickled.pt")
    base = ["simulate", "--data", str(data_file), "--chip", "ideal", "--out", str(tmp_path / "o")]
    assert main([*base, "--model", str(tmp_path / "weights.pt")]) == 2
    _one_error_line(capsys, "a state_dict (weights without the model's code) is not a model",
                    "allowed: module:function")
    assert main([*base, "--model", str(tmp_path / "pickled.pt")]) == 2
    _one_error_line(capsys, "pickled models are not loaded; allowed: a torch.export .pt2")


def test_a_train_checkpoint_given_as_the_model_says_how_to_simulate_it(data_file, tmp_path,
                                                                      capsys):
    """The step users took after `cimsim train`: its OUT/checkpoint.pt (or OUT) given to
    simulate or sweep as the model was "not a TorchScript or torch.export (.pt2) archive" /
    "is a folder"; now it says what the file is and that train itself simulates and sweeps
    the trained model."""
    out = tmp_path / "run"
    assert main(["train", "--model", "demo", "--chip", "ideal", "--limit", "16",
                 "--batch-size", "16", "--calibration", "16", "--epochs", "1",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    base = ["--data", str(data_file), "--chip", "ideal", "--out", str(tmp_path / "o")]
    for model in (out / "checkpoint.pt", out):
        assert main(["simulate", *base, "--model", str(model)]) == 2
        _one_error_line(capsys, "a `cimsim train` checkpoint (the state of a training run, not "
                        "a model)", "run the same train command again with --sweep AXIS=VALUES")
        assert main(["sweep", *base, "--adc-bits", "4", "--model", str(model)]) == 2
        _one_error_line(capsys, "a `cimsim train` checkpoint")
    # a folder without one is still just a folder
    assert main(["simulate", *base, "--model", str(tmp_path)]) == 2
    _one_error_line(capsys, "is a folder; allowed: a torch.export .pt2")


@pytest.mark.parametrize(("method", "option", "fragment"), [
    ("qat+lora", "lora_rank=-1", "--option lora_rank='-1' is invalid; allowed: an integer >= 1"),
    ("raoq", "lora_rank=abc", "--option lora_rank='abc' is invalid; allowed: an integer >= 1"),
    ("qat+bitaug", "bitaug_bits=99", "allowed: ADC bits, each 1..24"),
    ("qat+w-reshape", "kurtosis_weight=nan", "allowed: a finite number >= 0"),
    ("qat", "lora_rank=4", "an option of lora, which --method 'qat' does not include"),
    ("distill+bitaug", "kurtosis_target=2", "allowed: add +w-reshape to --method"),
    ("pim-qat", None, "--train-adc-bits: 99 is invalid; allowed: an integer in 1..24"),
    ("columnquant", None, "--num-sigma: nan is invalid; allowed: a finite number > 0"),
], ids=["rank-negative", "rank-text", "bitaug-bits", "kurtosis-nan", "lora-off", "reshape-off",
        "train-adc-bits", "num-sigma"])
def test_train_options_are_checked_before_the_work(method, option, fragment, tmp_path, capsys,
                                                   monkeypatch):
    """Was: ``lora_rank=-1`` failed after the model was prepared as "LoRA rank = -1" (no flag
    named), ``bitaug_bits=99`` mid-setup as "adc bits = 99", a text value said only
    "is invalid", NaN trained, an option for a part the method lacks was ignored, and
    ``--train-adc-bits 99`` / ``--num-sigma nan`` were named as Python fields after the model
    loaded ("train_adc_bits = 99", "num_sigma = nan")."""
    monkeypatch.setattr(cimsim.train, "prepare", lambda *a, **k: pytest.fail("prepared"))
    extra = {"pim-qat": ["--train-adc-bits", "99"], "columnquant": ["--num-sigma", "nan"]}
    flags = extra[method] if option is None else ["--option", option]
    with no_work(monkeypatch):
        assert main(["train", "--model", "demo", "--chip", "rram-22nm", "--method", method,
                     *flags, "--out", str(tmp_path / "run")]) == 2
    _one_error_line(capsys, fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("name", "factory"), [("demo", "load_digits_cnn"),
                                              ("resnet-digits", "load_resnet_digits")])
def test_simulate_names_the_factory_of_a_bundled_model(name, factory, data_file, tmp_path,
                                                      capsys, monkeypatch):
    """Was: "model file 'demo' not found" for the name sweep and train take. (Without --data
    simulate runs the bundled model on its digits split: tests/test_cli.py.)"""
    with no_work(monkeypatch):
        assert main(["simulate", "--model", name, "--data", str(data_file), "--chip", "ideal",
                     "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capsys, f"allowed: --model cimsim.models:{factory}")


def test_torchscript_model_on_data_of_the_wrong_shape_blames_the_data(tmp_path, capsys):
    """Was: "model.ts: TorchScript model could not be converted to a graph (RuntimeError: ...
    expected input[s22, s48, s38, s60] to have 1 channels ...); export it with torch.export",
    which sends the user to re-export a model that is fine."""
    from cimsim.models import load_digits_cnn

    torch.jit.save(torch.jit.script(load_digits_cnn()), tmp_path / "model.ts")
    _, _, x, y = load_digits_split()
    np.savez(tmp_path / "rgb.npz", x=np.repeat(x[:6].numpy(), 3, axis=1), y=y[:6].numpy())
    assert main(["simulate", "--model", str(tmp_path / "model.ts"), "--data",
                 str(tmp_path / "rgb.npz"), "--chip", "ideal", "--out", str(tmp_path / "o")]) == 2
    err = _one_error_line(capsys, "cannot run on the data's inputs of shape (2, 3, 8, 8)",
                          "to have 1 channels")
    assert "export it with torch.export" not in err


def test_an_empty_chip_name_is_not_called_a_folder(capsys):
    """Was: "chip file '.' not found" (Path('') is the current folder)."""
    assert main(["datasheet", ""]) == 2
    _one_error_line(capsys, "chip name is empty", "cimsim presets")


def test_simulate_checks_time_before_loading_anything(data_file, tmp_path, capsys, monkeypatch):
    """Was: the data and the model were loaded (and exported, with torch's warnings on
    stderr) before a mistyped ``--time`` was refused."""
    with no_work(monkeypatch):
        assert main(["simulate", "--model", MODEL, "--data", str(data_file), "--chip",
                     "pcm-22nm", "--time", "1xyz", "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capsys, "--time", "'1xyz'", "1h, 1d, 1y")


# --- the Python API: seeds and non-finite inputs --------------------------------------------

@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, True])
def test_api_seeds_out_of_range_are_refused_not_aliased(seed):
    """Was: ``deploy(seed=-1)`` ran as seed 2**64 - 1 (the noise keys keep 64 bits) and
    ``matmul(seed=-1)`` failed inside NumPy ("expected non-negative integer")."""
    from cimsim.models import load_digits_cnn

    chip = cimsim.load_chip("ideal")
    x = np.ones((2, 4), dtype=np.int64)
    w = np.ones((3, 4), dtype=np.int64)
    with pytest.raises(ConfigError, match=r"seed = .* is invalid; allowed: an integer from 0"):
        cimsim.matmul(x, w, chip, seed=seed)
    with pytest.raises(ConfigError, match=r"seed = .* is invalid"):
        cimsim.deploy(load_digits_cnn(), chip, torch.zeros(2, 1, 8, 8), seed=seed)


def test_api_largest_seed_and_numpy_seed_are_accepted():
    """Was: a NumPy integer seed (``np.uint64(7)``, as a seed array's element) raised
    OverflowError inside the noise-key mixing."""
    chip = cimsim.load_chip("ideal")
    x = np.arange(8, dtype=np.int64).reshape(2, 4)
    w = np.ones((3, 4), dtype=np.int64)
    for seed in (2**64 - 1, np.uint64(7)):
        y, _ = cimsim.matmul(x, w, chip, seed=seed)
        assert (y == x @ w.T).all()


def test_nan_input_to_a_deployed_model_is_named_as_nan():
    """Was: "x_int values must lie in [0, 255] ...; got [-9223372036854775808, 0]" (NaN cast
    to int64) and a RuntimeWarning."""
    from cimsim.models import load_digits_cnn

    x_train, _, _, _ = load_digits_split()
    sim = cimsim.deploy(load_digits_cnn(), cimsim.load_chip("ideal"), x_train[:4], seed=0)
    x = x_train[:2].clone()
    x[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite; allowed: finite values"):
        sim(x)


# --- nothing half-written ----------------------------------------------------------------------

class _DiskFull:
    """``open`` for writing into ``folder`` writes half of what it is given, then fails as a
    full disk does: what a run killed mid-write, or out of space, leaves behind."""

    def __init__(self, folder: Path):
        self.folder = folder.resolve()
        self.real = builtins.open

    def __call__(self, file, mode="r", *args, **kwargs):
        fh = self.real(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and any(m in mode for m in "wax") \
                and Path(file).resolve().parent == self.folder:
            real_write = fh.write

            def write(data):
                real_write(data[: max(1, len(data) // 2)])
                fh.flush()
                raise OSError(errno.ENOSPC, "No space left on device", str(file))

            fh.write = write
        return fh


@contextlib.contextmanager
def disk_full(monkeypatch, folder: Path):
    fake = _DiskFull(folder)
    monkeypatch.setattr(builtins, "open", fake)
    monkeypatch.setattr(io, "open", fake)  # pathlib's write_text opens through io.open
    yield
    monkeypatch.undo()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_report_save_that_fails_leaves_the_previous_files_whole(saved_report, tmp_path,
                                                               monkeypatch):
    """Was: a CSV, report.json or report.html truncated in place (report.json then a
    'damaged report.json' to the next ``cimsim report``)."""
    out = tmp_path / "out"
    report = Report.load(saved_report)
    report.save(out)
    before = _snapshot(out)
    with disk_full(monkeypatch, out), pytest.raises(OSError, match="No space left"):
        report.save(out)
    assert _snapshot(out) == before  # no truncated file, no temporary file left
    assert Report.load(out).totals == report.totals


def test_sweep_files_that_fail_leave_the_previous_files_whole(tmp_path, monkeypatch):
    from cimsim.sweep.files import write_outputs
    from cimsim.sweep.table import sweep_table

    resolved = [{"array_size": 128, "bits_per_cell": 2, "slice_readout": "digital",
                 "cols_per_adc": 8, "thermal_sigma_lsb": 0.0, "adc_kind": "sar",
                 "adc_bits": b, "time_s": 1.0} for b in (4, 5)]
    records = {f"p{b}": {"accuracy": 0.5 + b / 100, "energy_pj_per_inference": 10.0 * b,
                         "latency_ns_per_inference": 1.0, "area_mm2": 1.0, "tops_per_w": 1.0,
                         "n_arrays": 1, "wall_s": 0.1, "status": "ok"} for b in (4, 5)}
    frame = sweep_table(resolved, ["p4", "p5"], records)
    write_outputs(frame, tmp_path, {"model": "m", "chip": "c"})
    before = _snapshot(tmp_path)
    with disk_full(monkeypatch, tmp_path), pytest.raises(OSError, match="No space left"):
        write_outputs(frame, tmp_path, {"model": "m", "chip": "c"})
    assert _snapshot(tmp_path) == before


def test_cli_write_failure_is_one_line_and_keeps_the_old_files(saved_report, tmp_path, capsys,
                                                               monkeypatch):
    """Was: a traceback (OSError: No space left on device) and a truncated layers.csv."""
    out = tmp_path / "again"
    assert main(["report", str(saved_report), "--out", str(out)]) == 0
    before = _snapshot(out)
    capsys.readouterr()
    with disk_full(monkeypatch, out):
        rc = main(["report", str(saved_report), "--out", str(out)])
    assert rc == 2
    _one_error_line(capsys, "No space left on device")
    assert _snapshot(out) == before


def test_report_on_an_interrupted_sweep_says_to_rerun_it(tmp_path, capsys):
    """Was: "no saved report at 'DIR' (report.json not found)" for the folder of a sweep
    stopped before its files, which names neither the sweep nor the way on."""
    (tmp_path / "sweep.jsonl").write_text('{"point_id": "a"}\n{"point_id": "b"}\n')
    assert main(["report", str(tmp_path)]) == 2
    _one_error_line(capsys, "unfinished sweep (2 point(s) in sweep.jsonl",
                    "run the same `cimsim sweep` command again")


@pytest.mark.parametrize("values", [4, "gen"], ids=["scalar", "generator"])
def test_run_sweep_takes_a_single_value_or_a_generator_per_axis(values, tmp_path):
    """Was: ``grid={"adc_bits": 4}`` ran every point, then failed writing sweep.json
    (TypeError: 'int' object is not iterable); a generator left sweep.json's grid empty."""
    from cimsim.models import load_digits_cnn
    from cimsim.sweep import run_sweep

    x_train, _, x, y = load_digits_split()
    grid = {"adc_bits": (b for b in (4,)) if values == "gen" else values}
    frame = run_sweep(load_digits_cnn(), (x[:8], y[:8]), cimsim.load_chip("ideal"), grid,
                      tmp_path, calibration=x_train[:8], progress=False)
    assert frame["adc_bits"].tolist() == [4] and frame["status"].eq("ok").all()
    assert json.loads((tmp_path / "sweep.json").read_text())["grid"] == {"adc_bits": [4]}


def test_report_on_a_time_folder_names_a_report_in_it(saved_report, tmp_path, capsys):
    """Was: "no saved report at 'DIR' (report.json not found)" for the folder ``simulate
    --time`` writes, whose reports are in its t_<time>/ folders."""
    for label in ("1h", "1d"):
        Report.load(saved_report).save(tmp_path / f"t_{label}")
    (tmp_path / "time.csv").write_text("time,time_s,accuracy\n")
    assert main(["report", str(tmp_path)]) == 2
    _one_error_line(capsys, "one report per time", f"cimsim report {tmp_path / 't_1d'}")


# --- the same command, the same bytes ------------------------------------------------------

def test_same_sweep_command_writes_byte_identical_files(tmp_path, capsys):
    """Was: sweep.csv, sweep.json and sweep.html differed run to run in ``wall_s`` (a point's
    wall time), so a rerun could not be compared with ``cmp``; it stays in sweep.jsonl."""
    runs = []
    for name in ("a", "b"):
        out = tmp_path / f"résultats {name}"  # a space and a non-ASCII letter, as people name
        assert main(["sweep", "--model", "demo", "--chip", "rram-22nm", "--adc-bits", "4,5",
                     "--noise", "0.5", "--limit", "12", "--calibration", "8", "--seed", "3",
                     "--out", str(out)]) == 0
        runs.append(out)
    capsys.readouterr()
    for fname in ("sweep.csv", "sweep.json", "sweep.html", "pareto.png"):
        assert (runs[0] / fname).read_bytes() == (runs[1] / fname).read_bytes(), fname
    records = [json.loads(line) for line in (runs[0] / "sweep.jsonl").read_text().splitlines()]
    assert all(rec["wall_s"] > 0 for rec in records)  # the timing is kept, in the log
    # and `cimsim report` rebuilds the same files from sweep.json
    assert main(["report", str(runs[0]), "--out", str(tmp_path / "re")]) == 0
    for fname in ("sweep.csv", "sweep.json", "sweep.html", "pareto.png"):
        assert (tmp_path / "re" / fname).read_bytes() == (runs[0] / fname).read_bytes(), fname


# --- every command line the docs show -------------------------------------------------------

_SYNOPSIS = re.compile(r"[\[\]|]|\.\.\.|…")
_PLACEHOLDERS = {"M": MODEL, "D": "data.npz", "C": "rram-22nm", "DIR": "out", "CHIP": "ideal",
                 "NAME": "ideal", "FILE": "chip.toml"}


def documented_commands() -> list[tuple[str, str]]:
    """``(where, command)`` for every ``cimsim ...`` line in a code block of README.md and
    docs/*.md (indented or fenced; ``$ `` prompts, ``\\`` continuations and ``#`` comments
    handled)."""
    found = []
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        fenced = False
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("```"):
                fenced = not fenced
            elif (fenced or line.startswith("    ")) and re.match(r"\s*(\$ )?cimsim (-|[a-z])",
                                                                  line):
                start = i
                text = line.strip().removeprefix("$ ")
                while text.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    text = text[:-1] + " " + lines[i].strip()
                text = text.split(" #")[0].strip()
                if not re.match(r"cimsim \d", text):  # printed output, not a command
                    found.append((f"{path.relative_to(ROOT)}:{start + 1}", text))
            i += 1
    return found


COMMANDS = documented_commands()


def documented_mentions() -> list[tuple[str, str]]:
    """``(where, text)`` for every inline `` `cimsim SUBCOMMAND ...` `` span of the docs (a
    span may wrap onto the next line): fragments, so only their flags are checked."""
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"`(cimsim [a-z][^`]*)`", text):
            line = text.count("\n", 0, m.start()) + 1
            found.append((f"{path.relative_to(ROOT)}:{line}", " ".join(m.group(1).split())))
    return found


MENTIONS = [(w, t) for w, t in documented_mentions() if "--" in t]


def test_documented_commands_are_found():
    assert len(COMMANDS) >= 15
    assert any(c.startswith("cimsim sweep --model demo") for _, c in COMMANDS)


def _options(parser, command: str) -> set[str]:
    sub = next(a for a in parser._subparsers._group_actions).choices[command]
    return {s for a in sub._actions for s in a.option_strings}


@pytest.mark.parametrize(("where", "text"), MENTIONS, ids=[w for w, _ in MENTIONS])
def test_documented_flags_in_prose_exist(where, text):
    """`cimsim train --devices programmed|sampled|nominal` in a sentence: the flags exist."""
    words = text.split()
    if words[1] == "...":
        return
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))
    unknown = flags - _options(build_parser(), words[1])
    assert not unknown, f"{where}: {text}: no such option {sorted(unknown)}"


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_line_is_one_the_parser_takes(where, command):
    """Every flag a doc names exists on that subcommand; a complete line (no ``[..]``, ``|``
    or ``...``) parses as written, with its placeholders (M, D, C, DIR) filled in."""
    parser = build_parser()
    words = shlex.split(command)[1:]
    if words[0].startswith("-"):
        assert words[0] in {"--version", "-h", "--help", "-v", "--verbose"}, command
        return
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", command))
    unknown = flags - _options(parser, words[0])
    assert not unknown, f"{where}: {command}: no such option {sorted(unknown)}"
    if _SYNOPSIS.search(command):
        return
    filled = [_PLACEHOLDERS.get(w, w) for w in words]
    try:
        parser.parse_args(filled)
    except Exception as exc:  # _UsageError: the message says which argument
        pytest.fail(f"{where}: {command}: {exc}")


def sweep_doc_examples() -> list[tuple[str, str, list[str]]]:
    """``(where, command, printed lines)`` of docs/sweep.md's examples: an indented block that
    opens with a ``cimsim sweep`` command (``\\`` continued), a ``# date`` line, a blank line
    and what the command printed."""
    lines = (ROOT / "docs" / "sweep.md").read_text(encoding="utf-8").splitlines()
    found = []
    for i, line in enumerate(lines):
        if not line.startswith("    cimsim sweep --model demo"):
            continue
        j, command = i, line.strip()
        while command.endswith("\\"):
            j += 1
            command = command[:-1] + " " + lines[j].strip()
        if not lines[j + 1].strip().startswith("# 20"):
            continue
        printed = []
        for k in range(j + 3, len(lines)):
            if lines[k] and not lines[k].startswith("    "):
                break
            printed.append(lines[k][4:].rstrip())
        while printed and not printed[-1]:
            printed.pop()
        found.append((f"docs/sweep.md:{i + 1}", command, printed))
    return found


SWEEP_DOC_EXAMPLES = sweep_doc_examples()


def test_sweep_doc_examples_are_found():
    assert len(SWEEP_DOC_EXAMPLES) == 2
    assert all(len(printed) >= 8 for _, _, printed in SWEEP_DOC_EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize(("where", "command", "printed"), SWEEP_DOC_EXAMPLES,
                         ids=[w for w, _, _ in SWEEP_DOC_EXAMPLES])
def test_sweep_doc_example_prints_what_the_doc_shows(where, command, printed, tmp_path, capsys):
    """The printed tables of docs/sweep.md's examples are what the commands print now (every
    figure in the docs comes from a command; this one reruns it)."""
    words = shlex.split(command)[1:]
    words[words.index("--out") + 1] = str(tmp_path / "out")
    assert main(words) == 0
    out = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    assert out[:len(printed)] == printed, f"{where}: paste the new output into the doc"


def _help_examples(command: str) -> list[tuple[str, str]]:
    """``(flag, value)`` for every "e.g. VALUE" in the help of ``command``'s options (the
    first of "A or B"; ``--option``'s examples are per key, not whole values)."""
    sub = next(a for a in build_parser()._subparsers._group_actions).choices[command]
    found = []
    for action in sub._actions:
        if not action.option_strings or action.option_strings[0] == "--option":
            continue
        for m in re.finditer(r"e\.g\. ([^\s);]+)", action.help or ""):
            found.append((action.option_strings[0], m.group(1).rstrip(",")))
    return found


HELP_EXAMPLES = [(c, f, v) for c in ("simulate", "sweep", "train") for f, v in _help_examples(c)]


def test_help_examples_are_found():
    assert ("sweep", "--adc-kind", "sar,ramp:bs_kmq") in HELP_EXAMPLES
    assert ("train", "--method", "qat+a-shift+bitaug") in HELP_EXAMPLES
    assert len(HELP_EXAMPLES) >= 9


class _Reached(Exception):
    """Every check before the work passed."""


@pytest.mark.parametrize(("command", "flag", "value"), HELP_EXAMPLES,
                         ids=[f"{c}{f}={v}" for c, f, v in HELP_EXAMPLES])
def test_help_examples_are_accepted(command, flag, value, data_file, tmp_path, monkeypatch):
    """Each "e.g." value of ``--help`` passes every check a command makes before its work
    (the sweep: the points' chips built and checked too), on a chip it applies to."""
    import cimsim.sweep.run

    def reached(*args, **kwargs):
        raise _Reached

    monkeypatch.setattr(cimsim, "deploy", reached)
    monkeypatch.setattr(cimsim.train, "prepare", reached)
    monkeypatch.setattr(cimsim.sweep.run, "run_points", reached)
    chip = "pcm-22nm" if flag == "--time" else "rram-22nm"  # a device that ages
    base = {"simulate": ["--model", MODEL, "--data", str(data_file), "--calibration", "8"],
            "sweep": ["--model", "demo", "--limit", "8", "--calibration", "8"]
                     + (["--adc-bits", "6"] if flag != "--adc-bits" else []),
            "train": ["--model", "demo", "--limit", "8"]}[command]
    with pytest.raises(_Reached):
        main([command, *base, "--chip", chip, flag, value, "--out", str(tmp_path / "o")])


# --- interrupted and rerun ---------------------------------------------------------------------

def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from cimsim.cli import main; "
            "sys.exit(main())", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _interrupt_when(argv: list[str], ready, cwd: Path, timeout_s: float = 300) -> int:
    """Run ``argv``, send SIGINT to its process group (as Ctrl-C does) once ``ready()``;
    the exit status."""
    proc = subprocess.Popen(argv, cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.monotonic()
    while not ready() and proc.poll() is None and time.monotonic() - t0 < timeout_s:
        time.sleep(0.02)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=timeout_s)
    assert "Traceback" not in err, err
    return proc.returncode


def _rerun_and_compare(args: list[str], cwd: Path, files: tuple[str, ...]) -> str:
    """The interrupted command again into ``cut``, then uninterrupted into ``whole``: both
    succeed and ``files`` are byte-identical. The rerun's stdout."""
    outs = {}
    for out in ("cut", "whole"):
        run = subprocess.run(_cli(*args, "--out", out), cwd=cwd, env=_env(),
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr
        outs[out] = run.stdout
    for fname in files:
        assert (cwd / "cut" / fname).read_bytes() == (cwd / "whole" / fname).read_bytes(), fname
    return outs["cut"]


@pytest.mark.slow
def test_sweep_interrupted_resumes_to_the_same_files(tmp_path):
    """Ctrl-C after the first point: exit 130, the finished point kept; the same command
    again runs only the rest, and the files equal an uninterrupted run's byte for byte."""
    args = ["sweep", "--model", "demo", "--chip", "rram-22nm", "--adc-bits", "3-6",
            "--limit", "64", "--calibration", "16"]
    jsonl = tmp_path / "cut" / "sweep.jsonl"
    rc = _interrupt_when(_cli(*args, "--out", "cut"),
                         lambda: jsonl.is_file() and jsonl.read_text().count("\n") >= 1,
                         tmp_path)
    assert rc == 130
    n_kept = len(jsonl.read_text().splitlines())
    assert 1 <= n_kept < 4 and not (tmp_path / "cut" / "sweep.json").exists()
    again = _rerun_and_compare(args, tmp_path, ("sweep.csv", "sweep.json", "sweep.html",
                                                 "pareto.png"))
    assert f"resumed: {n_kept} of 4 points" in again
    ids = [json.loads(line)["point_id"] for line in jsonl.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 4  # nothing run twice, nothing lost


@pytest.mark.slow
def test_train_interrupted_resumes_to_the_same_files(tmp_path):
    """Ctrl-C after the first epoch's checkpoint: exit 130; the same command resumes after the
    last complete epoch and ends with the files of an uninterrupted run."""
    args = ["train", "--model", "demo", "--chip", "rram-22nm", "--epochs", "4", "--limit",
            "192", "--calibration", "32"]
    ckpt = tmp_path / "cut" / "checkpoint.pt"
    rc = _interrupt_when(_cli(*args, "--out", "cut"), ckpt.is_file, tmp_path)
    assert rc == 130
    epoch = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= epoch < 4 and not (tmp_path / "cut" / "report.json").exists()
    again = _rerun_and_compare(args, tmp_path, ("training.json", "report.json", "layers.csv",
                                                 "report.html"))
    assert f"resuming from cut/checkpoint.pt after epoch {epoch} of 4" in again

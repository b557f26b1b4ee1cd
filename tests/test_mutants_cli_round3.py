"""Known answers for what a third mutation-testing round over ``cimsim/cli.py`` found
unpinned (after ``test_mutants_config_cli.py``, ``test_mutants_cli_report_round2.py`` and
``test_mutants_session22.py``): the pipe-safe standard output's fallbacks, ``main`` with no
command and outside the main thread, the argument types' bounds, the value lists' parsing
(quotes, brackets, spaces), the sweep table's trade columns and footer lines, train's checks
and run identity, a checkpoint's older keys, ``--out`` checks, ``cimsim report``'s folder
kinds and the layer-table notices.

Each test names, in its docstring, the place in ``cli.py`` and the change it kills; the
inputs are hand-made and tiny (no model is deployed)."""

from __future__ import annotations

import argparse
import math
import threading

import numpy as np
import pandas as pd
import pytest

import cimsim
from cimsim.errors import ConfigError


def _train_args(*extra: str) -> argparse.Namespace:
    from tests.test_mutants_config_cli import _train_args as made

    return made(*extra)


# ---------------------------------------------------------------------------------------------
# _PipeSafeStdout, main
# ---------------------------------------------------------------------------------------------
class _Stream:
    """A text stream of a given encoding that records what it was given; ``fail`` raises a
    BrokenPipeError at every write and flush."""

    def __init__(self, encoding: str = "utf-8", fail: bool = False):
        self.encoding, self.fail, self.text, self.flushes = encoding, fail, "", 0

    def write(self, text: str) -> int:
        if self.fail:
            raise BrokenPipeError
        text.encode(self.encoding)  # a UnicodeEncodeError where it cannot show a character
        self.text += text
        return len(text)

    def flush(self) -> None:
        self.flushes += 1
        if self.fail:
            raise BrokenPipeError


class _AsciiBehindLatin1(_Stream):
    """A stream that says Latin-1 but writes ASCII (its .encoding is not what it writes in)."""

    def write(self, text: str) -> int:
        text.encode("ascii")
        self.text += text
        return len(text)


class TestPipeSafeStdout:
    def test_a_character_the_stream_cannot_show_is_replaced_not_dropped(self):
        """_PipeSafeStdout.write: ``encode(codec, "replace")`` -> ``"ignore"`` dropped the
        character silently; a '?' stands in its place."""
        from cimsim.cli import _PipeSafeStdout

        stream = _Stream("ascii")
        _PipeSafeStdout(stream).write("a§b")
        assert stream.text == "a?b"

    def test_a_stream_whose_encoding_lies_gets_ascii(self):
        """_PipeSafeStdout.write: the ASCII try after the stream's own encoding (the codec
        loop over ``(enc, "ascii")`` cut to ``(enc,)`` wrote nothing)."""
        from cimsim.cli import _PipeSafeStdout

        stream = _AsciiBehindLatin1("latin-1")
        _PipeSafeStdout(stream).write("σ=1")
        assert stream.text == "?=1"

    def test_a_write_after_the_reader_left_counts_as_written(self, monkeypatch):
        """_PipeSafeStdout.write: a BrokenPipeError leaves, and the write returns the length
        of the text (``return 0`` told print's callers nothing was written); later flushes
        are not tried again (``if not self.reader_left`` in flush)."""
        import cimsim.cli

        stream = _Stream(fail=True)
        wrapper = cimsim.cli._PipeSafeStdout(stream)
        # the stream has no descriptor to point at devnull
        monkeypatch.setattr(cimsim.cli, "_stdout_to_devnull", lambda s: None)
        assert wrapper.write("four") == 4
        assert wrapper.reader_left
        assert wrapper.write("again") == 5
        wrapper.flush()
        assert stream.flushes == 0


class TestMain:
    def test_no_command_prints_the_help_and_exits_2(self, capsys):
        """_main: no command is a usage error, status 2 (``return 0`` called it a success)."""
        from cimsim.cli import main

        assert main([]) == 2
        assert "usage:" in capsys.readouterr().out

    def test_main_puts_the_warning_format_back(self, monkeypatch):
        """main: ``warnings.formatwarning`` is put back after the command (the restore
        dropped: a program calling main printed its own warnings as cimsim's)."""
        import warnings

        import cimsim.cli

        def mine(*args, **kwargs):
            return "mine\n"

        monkeypatch.setattr(cimsim.cli, "cmd_presets", lambda args: 0)
        monkeypatch.setattr(warnings, "formatwarning", mine)
        assert cimsim.cli.main(["presets"]) == 0
        assert warnings.formatwarning is mine

    def test_verbose_logs_info(self, monkeypatch):
        """_main: ``--verbose`` sets logging to INFO (``WARNING if args.verbose`` lost it)."""
        import logging

        import cimsim.cli

        levels = []
        monkeypatch.setattr(logging, "basicConfig", lambda **kw: levels.append(kw["level"]))
        monkeypatch.setattr(cimsim.cli, "cmd_presets", lambda args: 0)
        assert cimsim.cli.main(["--verbose", "presets"]) == 0
        assert cimsim.cli.main(["presets"]) == 0
        assert levels == [logging.INFO, logging.WARNING]

    def test_main_outside_the_main_thread_runs_without_a_signal_handler(self, monkeypatch):
        """_terminate_as_interrupt: outside the main thread no SIGTERM handler is set (the
        thread check dropped: signal.signal raised ValueError, a traceback in a worker)."""
        import cimsim.cli

        monkeypatch.setattr(cimsim.cli, "cmd_presets", lambda args: 0)
        result = []

        def run():
            try:
                result.append(cimsim.cli.main(["presets"]))
            except BaseException as exc:  # noqa: BLE001 - reported in the assertion
                result.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        assert result == [0]


# ---------------------------------------------------------------------------------------------
# argument types and value lists
# ---------------------------------------------------------------------------------------------
class TestArgumentTypes:
    def test_density_refuses_zero_and_takes_one(self):
        """_density: ``0.0 < value <= 1.0`` (``0.0 <=`` took 0, a chip with no input;
        ``< 1.0`` refused a dense input)."""
        from cimsim.cli import _density

        assert _density("1") == 1.0
        with pytest.raises(argparse.ArgumentTypeError, match="out of range"):
            _density("0")

    def test_limit_takes_zero_but_not_minus_one(self):
        """_count: 0 is allowed only as itself where ``zero`` is named."""
        from cimsim.cli import _LIMIT

        assert _LIMIT("0") == 0
        with pytest.raises(argparse.ArgumentTypeError):
            _LIMIT("-1")

    def test_a_bad_seed_names_the_allowed_range(self):
        """_seed: the refusal names ``0 to SEED_MAX`` (the range dropped from the message)."""
        from cimsim._seed import SEED_MAX
        from cimsim.cli import _seed

        with pytest.raises(argparse.ArgumentTypeError, match=f"-1 is invalid; allowed: 0 to "
                                                             f"{SEED_MAX}"):
            _seed("-1")

    def test_a_path_of_spaces_is_empty_and_a_tilde_is_home(self, monkeypatch, tmp_path):
        """_not_empty: ``text.strip()`` (a path of blanks was a folder named ' ');
        _user_path: ``expanduser`` (``--out=~/r`` made ./~/r)."""
        from cimsim.cli import _path

        with pytest.raises(argparse.ArgumentTypeError, match="is empty"):
            _path("   ")
        monkeypatch.setenv("HOME", str(tmp_path))
        assert _path("~/r") == tmp_path / "r"


class TestValueLists:
    def test_int_values_read_spaces_and_a_one_value_range(self):
        """_int_values: each part stripped (the empty range was quoted as ' 6-5');
        ``a > b`` is empty, ``4-4`` is one value (``>=`` refused it)."""
        from cimsim.cli import _int_values

        assert _int_values("--adc-bits", "3, 5-6") == [3, 5, 6]
        assert _int_values("--adc-bits", "4-4") == [4]
        with pytest.raises(ConfigError, match="^--adc-bits: '6-5' is an empty range"):
            _int_values("--adc-bits", "3, 6-5")

    def test_vary_needs_an_equals_sign(self):
        """_vary_values: ``not eq`` refuses 'input_bits' alone (it was a field of no values
        read as one)."""
        from cimsim.cli import _vary_values

        with pytest.raises(ConfigError, match="'input_bits' is invalid; allowed: FIELD=VALUE"):
            _vary_values("input_bits")

    def test_vary_reads_a_range_only_when_the_whole_part_is_one(self):
        """_vary_values: ``re.fullmatch`` (``re.match`` read '4-6x' as a range, or refused
        it as one)."""
        from cimsim.cli import _vary_values

        assert _vary_values("tech.name=4-6x") == ("tech.name", ["4-6x"])
        assert _vary_values("input_bits=4-6") == ("input_bits", [4, 5, 6])

    def test_vary_refuses_a_quoted_value_toml_cannot_read(self):
        """_vary_values: a part starting with a quote that TOML cannot read is refused
        (the quotes dropped from ``"[{\\"'"``: kept as a bare word, quote and all)."""
        from cimsim.cli import _vary_values

        with pytest.raises(ConfigError, match="is not a TOML value"):
            _vary_values("tech.cost_model='physical")
        with pytest.raises(ConfigError, match="is not a TOML value"):
            _vary_values('tech.cost_model="physical')

    def test_top_level_parts_keep_commas_in_quotes_and_after_brackets(self):
        """_top_level_parts: a quote closes at its twin (``quote = quote`` never closed it),
        a closing bracket lowers the depth, each part stripped."""
        from cimsim.cli import _top_level_parts

        assert _top_level_parts("'a,b', c") == ["'a,b'", "c"]
        assert _top_level_parts("[1,2], [3]") == ["[1,2]", "[3]"]
        assert _top_level_parts("'x',y") == ["'x'", "y"]

    def test_float_and_checked_values_drop_repeats_and_spaces(self):
        """_float_values: repeats dropped; _checked_values: each name stripped."""
        from cimsim.cli import _checked_values, _float_values

        assert _float_values("--noise", "0.5,0.5,1") == [0.5, 1.0]
        assert _checked_values("--x", "a, b", lambda s: s) == ["a", "b"]


# ---------------------------------------------------------------------------------------------
# the sweep's table and lines
# ---------------------------------------------------------------------------------------------
def _frame(**columns) -> pd.DataFrame:
    base = {"adc_bits": [4, 6], "accuracy": [0.5, 0.6], "output_cosine": [math.nan] * 2,
            "energy_pj_per_inference": [2000.0, 1000.0], "latency_ns_per_inference": [1.0, 2.0],
            "area_mm2": [0.1, 0.2], "tops_per_w": [1.0, 2.0], "n_arrays": [1, 1],
            "on_front": [True, True], "status": ["ok", "ok"],
            "n_conversions_per_inference": [10.0, 20.0], "adc_area_mm2": [0.01, 0.02]}
    return pd.DataFrame({**base, **columns})


class TestSweepTable:
    def test_a_slice_readout_sweep_shows_the_adc_area_and_conversions(self):
        """_sweep_table: the ADC_mm2 and conv/inf columns for a ``slice_readout`` axis too
        (``{"cols_per_adc"}`` alone left them out)."""
        from cimsim.cli import _sweep_table

        frame = _frame(adc_bits=[4, 4], slice_readout=["digital", "analog"])
        header = _sweep_table(frame).splitlines()[0].split()
        assert header[0] == "slice_readout" and "ADC_mm2" in header and "conv/inf" in header

    def test_a_status_column_once_any_point_is_not_ok(self):
        """_sweep_table: ``.any()`` (``.all()`` hid one failed point among ok ones); all ok:
        no status column."""
        from cimsim.cli import _sweep_table

        assert "status" not in _sweep_table(_frame()).splitlines()[0]
        assert "status" in _sweep_table(_frame(status=["ok", "failed: x"])).splitlines()[0]

    def test_one_point_still_shows_its_adc_bits(self):
        """_sweep_table: no axis with two values: the adc_bits column (``or []`` showed
        none); one value of an axis is no swept column (``nunique() > 1``)."""
        from cimsim.cli import _sweep_table

        frame = _frame(adc_bits=[4, 4], array_size=[64, 64])
        assert _sweep_table(frame).splitlines()[0].split()[0] == "adc_bits"
        assert "array_size" not in _sweep_table(frame)


class TestPrintSweep:
    def test_the_front_is_printed_by_energy_and_other_records_are_counted(self, tmp_path,
                                                                          capsys):
        """_print_sweep: the front sorted by rising energy (``-energy`` reversed it); the
        records of other sweeps in sweep.jsonl are said (``if other`` dropped)."""
        from cimsim.cli import _print_sweep

        frame = _frame()
        frame.attrs["n_records_other"] = 3
        rc = _print_sweep(frame, tmp_path, cimsim.load_chip("ideal"),
                          argparse.Namespace(overrides=[]))
        out = capsys.readouterr().out
        assert rc == 0
        assert out.index("(60.00 %, 1,000.0 pJ)") < out.index("(50.00 %, 2,000.0 pJ)")
        assert "sweep.jsonl also holds 3 record(s) of other points" in out

    def test_an_empty_sweep_is_no_failure(self, tmp_path, capsys):
        """_print_sweep: ``len(frame) and n_bad == len(frame)``: a sweep of no rows has no
        failed point (without ``len(frame)`` it said none ran and exited 1)."""
        from cimsim.cli import _print_sweep

        frame = _frame().iloc[:0]
        assert _print_sweep(frame, tmp_path, cimsim.load_chip("ideal"),
                            argparse.Namespace(overrides=[])) == 0
        assert "no point of the sweep ran" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# train: checks, identity, checkpoint, lines
# ---------------------------------------------------------------------------------------------
class TestTrainChecks:
    @pytest.mark.parametrize("extra, message", [
        (("--method", "columnquant", "--num-sigma", "inf"), "--num-sigma: inf is invalid"),
        (("--bn-relative", "--method", "pim-qat"), "--bn-relative: calibrates nothing"),
        (("--devices", "all"), "--devices: 'all' is not a device mode"),
        (("--schedule", "step"), "--schedule: 'step' is not a schedule"),
        (("--method", "columnquant", "--weight-decomposition", "native"),
         "--weight-decomposition: 'native' is not a decomposition"),
        (("--option", "lora_rank"), "--option 'lora_rank': allowed: KEY=VALUE"),
    ])
    def test_refused_naming_the_flag(self, extra, message):
        """_check_train_args / _recipe / _refuse_other_methods_flags: each refusal (the
        infinite --num-sigma, --bn-relative alone, a bad --devices, --schedule or
        --weight-decomposition, an --option without '=') dropped."""
        from cimsim.cli import _check_train_args

        with pytest.raises(ConfigError) as exc:
            _check_train_args(_train_args(*extra))
        assert message in str(exc.value)

    def test_accepted_values(self):
        """_check_train_args: --bn-relative with --bn-calibration, --num-sigma 0.5, a valid
        decomposition, the method's own flags pass (``continue`` for the base method)."""
        from cimsim.cli import _check_train_args

        _check_train_args(_train_args("--method", "pim-qat", "--bn-calibration", "4",
                                      "--bn-relative", "--no-forward-rescale"))
        _check_train_args(_train_args("--method", "columnquant", "--num-sigma", "0.5",
                                      "--weight-decomposition", "ternary"))

    def test_two_sweep_flags_are_named_with_and(self):
        """_sweep_flags: 'A and B' (not 'or')."""
        from cimsim.cli import _sweep_flags

        args = _train_args("--sweep-adc-bits", "4", "--sweep", "array_size=64")
        assert _sweep_flags(args) == "--sweep-adc-bits and --sweep"

    def test_a_named_axis_without_a_chip_keeps_its_texts(self):
        """_axis_values: ``time_s`` with no chip yet: the texts as given (``[]`` lost them);
        _train_sweep_grid: ``adc_bits`` in --sweep beside --sweep-adc-bits is twice."""
        from cimsim.cli import _axis_values

        assert _axis_values("time_s", "--time", "1h,1d", None) == ["1h", "1d"]


class TestRunIdentity:
    def test_an_option_value_is_read_stripped(self):
        """_recipe: ``value.strip()`` (a space after '=' was kept, and the refusal of a key
        given twice quoted it: "(' 2' and '4')")."""
        from cimsim.cli import _recipe

        a = _recipe(_train_args("--method", "qat+lora", "--option", "lora_rank= 4"))
        b = _recipe(_train_args("--method", "qat+lora", "--option", "lora_rank=4"))
        assert a == b
        with pytest.raises(ConfigError, match=r"given twice \('2' and '4'\)"):
            _recipe(_train_args("--method", "qat+lora", "--option", "lora_rank= 2",
                                "--option", "lora_rank=4"))

    def test_the_method_is_named_base_first_and_parts_in_order(self):
        """_canonical_method: the base first, then PARTS order (``n in BASES`` put it last);
        spaces stripped; a name that is no method kept as written (``any`` reordered it)."""
        from cimsim.cli import _canonical_method

        assert _canonical_method("lora + qat+a-shift") == "qat+a-shift+lora"
        assert _canonical_method("lora+nosuch") == "lora+nosuch"
        assert _canonical_method("lora+qat") == "qat+lora"


def _checkpoint(path, run: dict) -> None:
    import torch

    torch.save({"epoch": 1, "model": {}, "optimizer": {}, "loss": [], "run": run}, path)


class TestReadCheckpoint:
    def test_a_checkpoint_from_before_a_key_is_resumed(self, tmp_path):
        """_read_checkpoint: a key missing from an older checkpoint reads as its old value
        (``_IDENTITY_BEFORE``: without it, every checkpoint before --set belonged to
        another run); a key added later is skipped only where it is missing."""
        from cimsim.cli import _read_checkpoint

        path = tmp_path / "checkpoint.pt"
        _checkpoint(path, {"model": "demo"})
        run = {"model": "demo", "overrides": "[]", "schedule": "constant",
               "chip_config": "abc"}
        assert _read_checkpoint(path, run)["epoch"] == 1
        _checkpoint(path, {"model": "demo", "chip_config": "xyz"})
        with pytest.raises(ConfigError, match="the chip's fields differ"):
            _read_checkpoint(path, run)


class TestTrainLines:
    def test_the_rescale_hint_only_for_pim_qat_rescaling(self):
        """_below_untrained: the PIM-QAT hint needs ``pimqat_rescaled`` (it was given to
        every method on a calibrated chip)."""
        from cimsim.cli import _below_untrained
        from cimsim.config import RangePolicy

        chip = cimsim.load_chip("rram-22nm")
        assert chip.adc.range_policy is RangePolicy.CALIBRATED
        line = _below_untrained(0.4, {"untrained_accuracy": 0.5}, chip, False)
        assert "PIM-QAT" not in line
        assert "PIM-QAT" in _below_untrained(0.4, {"untrained_accuracy": 0.5}, chip, True)

    def test_untrained_cosine_has_four_decimals(self):
        """_untrained_text: the cosine to 4 decimals."""
        from cimsim.cli import _untrained_text

        assert _untrained_text({"untrained_cosine_to_float": 0.12345}) == (
            "cosine to float 0.1235 (the float model deployed as is)")

    def test_train_refuses_two_times(self):
        """_train_time: one duration only (``len > 2`` took two)."""
        from cimsim.cli import _train_time

        args = argparse.Namespace(time="1h,1d")
        with pytest.raises(ConfigError, match="train takes one time"):
            _train_time(args, cimsim.load_chip("pcm-22nm"))

    def test_static_device_at_its_programming_time_is_no_warning(self, capsys):
        """_warn_static_device: every time at t0 is the programmed state: no warning (the
        ``all(t == t0)`` check dropped warned of it)."""
        from cimsim.cli import _warn_static_device

        rram = cimsim.load_chip("ideal")
        _warn_static_device(rram, [("t0", rram.device.drift_t0_s)])
        assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------------------------
# data splits and data checks
# ---------------------------------------------------------------------------------------------
class TestSplits:
    def test_a_calibration_larger_than_the_data_uses_all_of_it(self):
        """_calibration_split: ``min(calibration, n_x)`` (the note said the 10 inputs were
        the first 50)."""
        from cimsim.cli import _calibration_split

        x = np.zeros((10, 2), dtype=np.float32)
        x_cal, x_eval, _, note = _calibration_split(x, None, 50)
        assert x_cal is x and x_eval is x
        assert note.startswith("10 inputs, all used to calibrate")

    def test_split_note_with_none_left(self):
        """_split_note: ``n_x > n_cal`` (``>=`` said '0 evaluated' for all reused)."""
        from cimsim.cli import _split_note

        assert _split_note(4, 4).startswith("4 inputs, all used to calibrate and to evaluate")

    def test_unseen_classes_of_unsigned_labels_are_warned_of(self, capsys):
        """_warn_unseen_classes: unsigned integer labels are classes (``"i"`` only skipped
        them); one more label than the calibration inputs is checked (``len(y) < n_cal``
        skipped nothing; ``<=`` is the rule)."""
        from cimsim.cli import _warn_unseen_classes

        _warn_unseen_classes(np.array([0, 0, 1, 2], dtype=np.uint8), 2)
        assert "are never calibrated on" in capsys.readouterr().err

    def test_labels_without_ndim_are_not_checked(self, capsys):
        """_warn_unseen_classes: ``getattr(y, "ndim", 0) != 1`` (a list has no ndim: not
        checked; ``1`` as the default read it as labels)."""
        from cimsim.cli import _warn_unseen_classes

        _warn_unseen_classes([0, 0, 1, 2], 2)
        assert capsys.readouterr().err == ""

    def test_data_given_to_a_bundled_model_names_its_factory(self):
        """_check_data_given: ``--model demo`` names load_digits_cnn, resnet-digits
        load_resnet_digits (swapped: each named the other's)."""
        from cimsim.cli import _check_data_given

        for model, factory in (("demo", "load_digits_cnn"),
                               ("resnet-digits", "load_resnet_digits")):
            with pytest.raises(ConfigError, match=f"--model cimsim.models:{factory}$"):
                _check_data_given(argparse.Namespace(model=model, data="x.npz"))


# ---------------------------------------------------------------------------------------------
# --out and cimsim report
# ---------------------------------------------------------------------------------------------
class TestCheckOut:
    def test_a_dangling_link_is_named(self, tmp_path):
        """_check_out: a link to nothing is refused naming its target (the check dropped:
        the write failed later)."""
        from cimsim.cli import _check_out

        link = tmp_path / "out"
        link.symlink_to(tmp_path / "gone")
        with pytest.raises(ConfigError, match="is a link to .*gone'"):
            _check_out(link)

    def test_an_unwritable_parent_says_the_folder_cannot_be_made(self, tmp_path,
                                                                   monkeypatch):
        """_check_out: a failed write test below ``out`` says ``out`` cannot be made there
        (the clause dropped)."""
        import tempfile

        from cimsim.cli import _check_out

        def refuse(*a, **k):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
        with pytest.raises(ConfigError, match=r"cannot be made there; name a folder"):
            _check_out(tmp_path / "new")


class TestReportCommand:
    def test_a_file_is_no_report_folder(self, tmp_path, capsys):
        """cmd_report: ``is_dir`` (``exists`` took a file, then failed on its contents)."""
        from cimsim.cli import main

        (tmp_path / "f").write_text("x")
        assert main(["report", str(tmp_path / "f")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("cimsim: error: report folder ") and err.endswith("not found\n")

    def test_a_report_beside_a_sweep_is_re_rendered_as_a_report(self, rep, tmp_path,
                                                                  capsys):
        """cmd_report: a folder holding report.json is a report even beside a sweep.json
        (``and not report.json`` dropped: it was re-rendered as the sweep)."""
        from cimsim.cli import main
        from tests.test_mutants_cli_report_round2 import _json_only

        _json_only(rep, tmp_path)
        (tmp_path / "sweep.json").write_text("{}")
        assert main(["report", str(tmp_path)]) == 0
        assert capsys.readouterr().out.startswith("re-rendered ")
        assert (tmp_path / "report.html").is_file()

    def test_the_first_time_folder_is_the_first_sorted(self, tmp_path, capsys, monkeypatch):
        """cmd_report: the example folder of a ``simulate --time`` run is the first sorted
        (``sorted`` dropped: the first the file system listed; listed here in reverse)."""
        from pathlib import Path

        from cimsim.cli import main

        glob = Path.glob
        monkeypatch.setattr(Path, "glob", lambda self, pattern: iter(
            sorted(glob(self, pattern), reverse=True)))

        for name in ("t_2h", "t_1d", "t_3y"):
            (tmp_path / name).mkdir()
            (tmp_path / name / "report.json").write_text("{}")
        assert main(["report", str(tmp_path)]) == 2
        assert f"e.g. cimsim report {tmp_path / 't_1d'}\n" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# the layer table's notices
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rep():
    """A small MLP's report on rram-22nm (as the second round's)."""
    from tests.conftest import mlp_report

    return mlp_report("rram-22nm", 32, 10)


def _with(report, **fields):
    from tests.test_mutants_cli_report_round2 import _with as made

    return made(report, **fields)


def _sqnr(rep, chip, sqnr, use, clip, learned: bool = False):
    from cimsim.report import LEARNED_RANGES_NOTE

    layers = pd.DataFrame({"layer": [f"L{i}" for i in range(len(sqnr))], "sqnr_db": sqnr,
                           "adc_code_use_pct": use, "adc_clip_pct": clip})
    r = _with(rep, layers=layers, chip=chip)
    if learned:
        r.notes.append(LEARNED_RANGES_NOTE)
    return r


def _digital(bits: int = 8):
    ideal = cimsim.load_chip("ideal")
    return ideal.replace(adc=ideal.adc.replace(kind="digital"), weight_bits=bits,
                         device=ideal.device.replace(bits_per_cell=1))


class TestFidelityNotice:
    def test_two_causes_are_each_prefixed_by_their_layers(self, rep):
        """_fidelity_notice: with more than one cause each names its layers (``len(causes)
        <= 2`` gave two causes without them)."""
        from cimsim.cli import _fidelity_notice

        line = _fidelity_notice(_sqnr(rep, rep.chip, [5.0, 6.0], [10.0, 80.0], [0.0, 0.0]))
        assert "; L0: their ADC ranges are far wider" in line
        assert "; L1: their outputs are set more by the chip's noise" in line

    def test_a_learned_misfit_range_is_the_trainings(self, rep):
        """_fidelity_notice: after training a misfit range (few codes, clipping) is the
        learned ranges' too (``("wide",)`` alone called it a calibration's)."""
        from cimsim.cli import _fidelity_notice

        line = _fidelity_notice(_sqnr(rep, rep.chip, [5.0], [10.0], [5.0], learned=True))
        assert "the prepared model's learned ones" in line
        assert "fit neither end" not in line

    def test_a_digital_chip_counts_sums_and_is_not_told_of_low_bits_without_noise(self,
                                                                                   rep):
        """_fidelity_notice: an adder tree's codes are its sums (``readout = "ADC"`` named
        ADC codes); a noiseless digital chip at 2-b weights is already told its error is
        the model's quantization, so not told twice (``and not (digital and not
        sources)`` dropped)."""
        from cimsim.cli import _fidelity_notice

        line = _fidelity_notice(_sqnr(rep, _digital(2), [5.0], [10.0], [0.0]))
        assert "10 % of sum codes used" in line
        assert "own quantization is most of the error" not in line
        assert "digital columns sum exactly" in line


class TestInputClippingNotice:
    def test_learned_ranges_get_the_training_advice(self, rep):
        """_input_clipping_notice: after training, the learned ranges' advice (the condition
        inverted gave the calibration advice)."""
        from cimsim.cli import _input_clipping_notice
        from cimsim.report import LEARNED_RANGES_NOTE

        layers = pd.DataFrame({"layer": ["L0"], "input_clip_pct": [5.0]})
        plain = _input_clipping_notice(_with(rep, layers=layers))
        assert "calibrate on data like the run's" in plain
        learned = _with(rep, layers=layers)
        learned.notes.append(LEARNED_RANGES_NOTE)
        assert "learned in training" in _input_clipping_notice(learned)


# ---------------------------------------------------------------------------------------------
# datasheet, presets, simulate's clean-up
# ---------------------------------------------------------------------------------------------
class TestDatasheet:
    def test_a_set_field_changes_the_figures(self, capsys):
        """cmd_datasheet: with ``--set`` the chip is loaded with it (``datasheet(args.chip)``
        printed the preset's figures)."""
        from cimsim.cli import main
        from cimsim.cost.datasheet import datasheet

        assert main(["datasheet", "rram-22nm", "--set", "adc.bits=4"]) == 0
        lines = capsys.readouterr().out.splitlines()
        d = datasheet(cimsim.load_chip("rram-22nm", overrides=["adc.bits=4"]))
        assert lines[2].split()[1] == f"{d['tops_per_w']:.4g}"
        assert f"{d['tops_per_w']:.4g}" != f"{datasheet('rram-22nm')['tops_per_w']:.4g}"

    def test_caveat_and_breakdown_only_where_they_apply(self, capsys):
        """cmd_datasheet: no 'caveat:' line for a chip without one (``not d["caveat"]``),
        the breakdown only with --breakdown."""
        from cimsim.cli import main
        from cimsim.cost.datasheet import breakdown_lines, datasheet

        assert main(["datasheet", "rram-22nm"]) == 0
        out = capsys.readouterr().out
        assert "caveat:" not in out
        first = breakdown_lines(datasheet("rram-22nm"))[0]
        assert first not in out
        assert main(["datasheet", "rram-22nm", "--breakdown"]) == 0
        assert first in capsys.readouterr().out


class TestPresets:
    def test_the_published_macros_follow_their_heading(self, capsys):
        """cmd_presets: the published list after its heading (``published=False`` printed
        the bundled chips twice)."""
        from cimsim.cli import main

        assert main(["presets"]) == 0
        out = capsys.readouterr().out
        tail = out.split("`cimsim datasheet published/NAME`):\n")[1]
        names = [line.split()[0] for line in tail.splitlines() if line.strip()]
        assert names == list(cimsim.list_presets(published=True))


class TestClearStale:
    def test_a_t_folder_without_a_report_is_left(self, tmp_path):
        """_clear_stale_simulation: only folders holding a report.json are cimsim's
        (``Report.clear`` of a user's own t_data folder)."""
        from cimsim.cli import _clear_stale_simulation

        mine = tmp_path / "t_data"
        mine.mkdir()
        (mine / "notes.txt").write_text("mine")
        (mine / "report.html").write_text("<p>mine</p>")
        _clear_stale_simulation(tmp_path, None, True)
        assert sorted(p.name for p in mine.iterdir()) == ["notes.txt", "report.html"]


class TestSweepCommand:
    def test_a_scheduler_with_the_default_jobs_runs(self, monkeypatch, tmp_path, capsys):
        """cmd_sweep: ``--scheduler`` is refused beside a --jobs other than the default 1
        (``jobs != 0`` refused every scheduler run); the sweep itself and the cluster
        replaced."""
        import contextlib

        import cimsim.sweep
        from cimsim.cli import main

        seen = []

        def run_sweep(*args, **kwargs):
            seen.append(kwargs["client"])
            return _frame().head(1)

        monkeypatch.setattr(cimsim.sweep, "run_sweep", run_sweep)
        monkeypatch.setattr(cimsim.sweep, "dask_client",
                            lambda address: contextlib.nullcontext("client"))
        base = ["sweep", "--model", "demo", "--chip", "ideal", "--adc-bits", "4", "--out",
                str(tmp_path), "--scheduler", "local:1"]
        assert main(base) == 0
        assert seen == ["client"]
        assert main([*base, "--jobs", "2"]) == 2
        assert "--jobs: with --scheduler" in capsys.readouterr().err

    def test_simulate_of_a_bundled_model_evaluates_limit_inputs(self, monkeypatch, tmp_path,
                                                                 capsys):
        """cmd_simulate: ``--limit`` cuts the bundled model's test split (the cut dropped:
        every test image was evaluated); the deploy replaced by a refusal after the line."""
        import cimsim.cli
        from cimsim.errors import CimsimError

        def deploy(*args, **kwargs):
            raise CimsimError("stop here")

        monkeypatch.setattr(cimsim, "deploy", deploy)
        assert cimsim.cli.main(["simulate", "--model", "demo", "--chip", "ideal", "--limit",
                                "5", "--calibration", "2", "--out", str(tmp_path)]) == 2
        assert "; 5 test inputs evaluated, 2 training images calibrate" in (
            capsys.readouterr().out)

    def test_a_config_error_naming_time_multiplexing_gets_no_capacity_hint(self, monkeypatch,
                                                                           capsys):
        """_main: the --set hint only for a CapacityError (``isinstance`` dropped: a bad
        value of the field itself was told to set it true)."""
        import cimsim.cli

        def fail(args):
            raise ConfigError("array.allow_time_multiplexing = 3 is invalid; allowed: a bool")

        monkeypatch.setattr(cimsim.cli, "cmd_presets", fail)
        assert cimsim.cli.main(["presets"]) == 2
        assert capsys.readouterr().err == (
            "cimsim: error: array.allow_time_multiplexing = 3 is invalid; allowed: a bool\n")

"""Chip fields as sweep axes (``run_sweep(grid={'input_bits': [4, 8], 'tech.vdd_v': [...]})``,
``cimsim sweep --vary FIELD=VALUES``): each point is the chip ``--set`` gives, the base chip's
value keeps the id a sweep without the axis gave, the table has a column per field."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import cimsim
from cimsim.cli import main
from cimsim.errors import ConfigError
from cimsim.sweep import chip_for_point, expand_grid
from cimsim.sweep.files import rerender
from cimsim.sweep.grid import identity, resolve_point
from tests import test_sweep
from tests.test_sweep import _count_points, _sweep

data = test_sweep.data
model = test_sweep.model


@pytest.fixture(scope="module")
def chip():
    rram = cimsim.load_chip("rram-22nm")
    return rram.replace(noise=rram.noise.replace(thermal_sigma_lsb=0.0))


def test_a_point_is_the_chip_set_would_give(chip):
    """The fields are set as ``--set`` sets them (the same chip, less the note the set adds to
    the description), and the named axes on top."""
    variant = chip_for_point(chip, {"input_bits": 4, "tech.vdd_v": 0.7, "dac.bits": 2,
                                    "adc_bits": 5})
    path = chip.name
    by_set = cimsim.load_chip(path, overrides=["input_bits=4", "tech.vdd_v=0.7", "dac.bits=2",
                                               "adc.bits=5"])
    by_set = by_set.replace(noise=by_set.noise.replace(thermal_sigma_lsb=0.0))
    assert variant == by_set.replace(description=chip.description)
    assert (variant.input_bits, variant.tech.vdd_v, variant.dac.bits, variant.adc.bits) \
        == (4, 0.7, 2, 5)
    assert chip_for_point(chip, {"input_bits": chip.input_bits}) == chip


def test_fields_are_the_outer_loops_and_one_chip_is_one_point(chip):
    points = expand_grid({"adc_bits": [5, 6], "input_bits": [4, 8]})
    assert points == [{"input_bits": 4, "adc_bits": 5}, {"input_bits": 4, "adc_bits": 6},
                      {"input_bits": 8, "adc_bits": 5}, {"input_bits": 8, "adc_bits": 6}]
    # 1 and 1.0 V, 'all' and None: the value the chip holds, one id
    one, other = ({"tech.vdd_v": v} for v in (1, 1.0))
    assert resolve_point(chip, one)["tech.vdd_v"] == 1.0
    assert identity(chip, one) == identity(chip, other)
    # the base chip's value is the chip a sweep without the axis ran: the same identity
    assert identity(chip, {"input_bits": chip.input_bits, "adc_bits": 5}) \
        == identity(chip, {"adc_bits": 5})
    assert identity(chip, {"input_bits": 4, "adc_bits": 5})["input_bits"] == 4


def test_sweep_table_resume_and_rerender(model, data, chip, tmp_path, monkeypatch):
    """A column per field (int64 / float), labels naming the field, the base chip's value
    resumed from a sweep without the axis, and ``cimsim report`` rebuilding the files."""
    first = _sweep(model, data, chip, {"adc_bits": [6]}, tmp_path)
    counted = _count_points(monkeypatch)
    frame = _sweep(model, data, chip, {"input_bits": [4, 8], "tech.vdd_v": [0.7, 0.8],
                                       "adc_bits": [6]}, tmp_path)
    assert len(counted) == 3 and frame.attrs["n_points_resumed"] == 1
    assert list(frame.columns[8:10]) == ["input_bits", "tech.vdd_v"]
    assert frame["input_bits"].dtype == "int64" and frame["tech.vdd_v"].dtype == float
    assert (frame["status"] == "ok").all()
    base = frame[(frame["input_bits"] == 8) & (frame["tech.vdd_v"] == 0.8)]
    assert base["point_id"].tolist() == first["point_id"].tolist()
    assert base["energy_pj_per_inference"].tolist() == first["energy_pj_per_inference"].tolist()
    # fewer input bits: fewer planes, less energy; a lower supply: less energy, same accuracy
    e = frame.set_index(["input_bits", "tech.vdd_v"])["energy_pj_per_inference"]
    assert e[(4, 0.8)] < e[(8, 0.8)] and e[(8, 0.7)] < e[(8, 0.8)]
    acc = frame.set_index(["input_bits", "tech.vdd_v"])["accuracy"]
    assert acc[(4, 0.7)] == acc[(4, 0.8)]
    page = (tmp_path / "sweep.html").read_text()
    assert "tech.vdd_v" in page
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert doc["grid"] == {"input_bits": [4, 8], "tech.vdd_v": [0.7, 0.8], "adc_bits": [6]}
    again = tmp_path / "again"
    rerender(tmp_path, again)
    for name in ("sweep.csv", "sweep.json", "sweep.html"):
        assert (again / name).read_bytes() == (tmp_path / name).read_bytes(), name
    from cimsim.sweep import point_labels

    assert point_labels(frame)[0] == "input_bits=4 vdd_v=0.7"  # a field by its own name
    two = pd.DataFrame({"tech.v": [1, 2], "dac.v": [3, 4], "input_bits": [4, 8],
                        "adc_bits": [6, 6]})
    assert point_labels(two) == ["tech.v=1 dac.v=3 input_bits=4",  # unless two share it
                                 "tech.v=2 dac.v=4 input_bits=8"]


@pytest.mark.parametrize(("axis", "message"), [
    ("adc.bits", r"'adc.bits': sweep it as the axis adc_bits \(--adc-bits\)"),
    ("noise.thermal_sigma_lsb", r"as the axis thermal_sigma_lsb \(--noise\)"),
    ("dac", r"\[dac\] is a table; name one of its fields"),
    ("tech.nope", r"no field 'nope' in \[tech\]"),
    ("foo.bar", r"no table 'foo'"),
    ("description", r"words, not hardware"),
    ("nope", r"'nope': no such field"),
])
def test_a_field_no_sweep_can_vary_is_refused_naming_why(model, data, chip, tmp_path, axis,
                                                          message):
    with pytest.raises(ConfigError, match=r"unknown sweep axis/axes .*" + message):
        _sweep(model, data, chip, {axis: [1]}, tmp_path)
    with pytest.raises(ConfigError, match="unknown sweep axis"):
        chip_for_point(chip, {axis: 1})


def test_bad_values_are_refused_before_any_point_runs(model, data, chip, tmp_path, monkeypatch):
    counted = _count_points(monkeypatch)
    with pytest.raises(ConfigError, match=r"input_bits = 40 is invalid; allowed: an integer "
                                          r"in \[1, 16\]"):
        _sweep(model, data, chip, {"input_bits": [4, 40]}, tmp_path)
    with pytest.raises(ConfigError, match=r"\['array.n_rows'\] with array_size"):
        _sweep(model, data, chip, {"array_size": [64], "array.n_rows": [32]}, tmp_path)
    assert counted == [] and not (tmp_path / "sweep.jsonl").exists()


def test_a_digital_adder_tree_follows_the_input_bits():
    """Bit-parallel inputs into adder trees: the tree is as wide as the new sums, unless
    adc_bits is swept too (then checked as it is)."""
    chip = cimsim.load_chip("published/yuan-jssc26")
    assert chip.adc.bits == 13 and chip.input_bits == 4 and chip.dac.bits is None
    assert chip_for_point(chip, {"input_bits": 8}).adc.bits == 17
    assert chip_for_point(chip, {"input_bits": 2}).adc.bits == 11
    assert chip_for_point(chip, {"dac.bits": 1}).adc.bits == 10
    assert resolve_point(chip, {"input_bits": 8})["adc_bits"] == 17
    with pytest.raises(ConfigError, match=r"adc_bits = 14 is invalid .* allowed: 13"):
        chip_for_point(chip, {"input_bits": 4, "adc_bits": 14})


def test_cli_vary(tmp_path, capsys):
    """``--vary`` values read as TOML (a bare word a string, a-b a range); ``--adc-bits`` is
    optional; errors are one line naming the flag."""
    out = tmp_path / "s"
    rc = main(["sweep", "--model", "demo", "--chip", "rram-22nm", "--limit", "40",
               "--calibration", "16", "--vary", "input_bits=4-5",
               "--vary", "tech.cost_model=tables,physical", "--out", str(out)])
    assert rc == 0
    frame = pd.read_csv(out / "sweep.csv")
    assert frame["input_bits"].tolist() == [4, 4, 5, 5]
    assert frame["tech.cost_model"].tolist() == ["tables", "physical"] * 2
    assert frame["adc_bits"].tolist() == [6] * 4  # the chip's
    printed = capsys.readouterr().out
    assert " input_bits tech.cost_model  acc_%" in printed
    # which figures are predicted, each named by the field that tells them apart
    assert ("cost figures: tech.cost_model tables: every cost figure predicted (technology "
            "tables); tech.cost_model physical: every cost figure predicted (physical") in printed
    for flags, message in [
        ([], "sweep: no axis given; allowed: one or more of --adc-bits"),
        (["--vary", "input_bits"], "--vary 'input_bits' is invalid; allowed: FIELD=VALUE"),
        (["--vary", "input_bits=4,,5"], "--vary 'input_bits=4,,5': an empty value"),
        (["--vary", "input_bits=4", "--vary", "input_bits=5"], "--vary: a field given twice"),
        (["--vary", "adc.bits=4"], "sweep it as the axis adc_bits (--adc-bits)"),
        (["--vary", "device.drift_nu_mean=[0.05"], "'[0.05' is not a TOML value"),
        (["--vary", "adc_bits=4", "--adc-bits", "5"], "--vary adc_bits=... and --adc-bits "
                                                       "both give the axis adc_bits"),
        (["--vary", "time_s=1", "--time", "1"], "and --time both give the axis time_s"),
    ]:
        rc = main(["sweep", "--model", "demo", "--chip", "rram-22nm", "--out",
                   str(tmp_path / "e"), *flags])
        err = capsys.readouterr().err
        assert rc == 2 and message in err, (flags, err)
        assert len(err.strip().splitlines()) == 1, err


def test_vary_values_read_lists_strings_and_ranges():
    from cimsim.cli import _vary_values

    assert _vary_values("device.drift_nu_mean=[0.05],[0.02, 0.03]") == (
        "device.drift_nu_mean", [[0.05], [0.02, 0.03]])
    assert _vary_values("tech.cost_model=tables,'physical',tables") == (
        "tech.cost_model", ["tables", "physical"])
    assert _vary_values("input_bits=4-6,8,5") == ("input_bits", [4, 5, 6, 8])
    assert _vary_values("tech.vdd_v=1e-1,-0.5,1,1.0") == ("tech.vdd_v", [0.1, -0.5, 1])


def test_a_presets_written_default_stays_written_at_a_field_point():
    """A preset that writes a default's value keeps it at a field point, as --set does: the
    window rram-22nm's file states (t_read_ns = 10.0) is not predicted under --vary
    tech.cost_model=physical, ideal's (unwritten) is; a published preset and a chip loaded with
    --set overrides are read the same way; a chip changed in Python falls back to its
    non-default fields."""
    import warnings

    from cimsim.config import set_overrides
    from cimsim.sweep import chip_for_point

    warnings.simplefilter("ignore")
    physical = {"tech.cost_model": "physical"}
    for name, stated in (("rram-22nm", True), ("ideal", False)):
        base = cimsim.load_chip(name)
        assert chip_for_point(base, physical).tech.window_stated is stated
        assert chip_for_point(base, physical).tech.window_stated is cimsim.load_chip(
            name, overrides=["tech.cost_model=physical"]).tech.window_stated
    over = cimsim.load_chip("rram-22nm", overrides={"adc.bits": 5, "noise.poly_coeffs": [0.1]})
    assert set_overrides(over.description) == ["adc.bits=5", "noise.poly_coeffs=[0.1]"]
    assert chip_for_point(over, physical).tech.window_stated is True
    assert set_overrides(cimsim.load_chip("ideal").description) == []
    # changed in Python: what its file wrote is not known; the default's rule applies
    edited = cimsim.load_chip("rram-22nm").replace(name="mine")
    assert chip_for_point(edited, physical).tech.window_stated is False
    with pytest.raises(cimsim.ConfigError):  # the file writes bits_per_cell = 2
        chip_for_point(cimsim.load_chip("rram-22nm"), {"device.cell": "sram"})

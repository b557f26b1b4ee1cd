"""``cimsim datasheet --breakdown`` and the mapping's explanatory keys (issue 13: a new chip is
estimated as well as the ones in the table, and the user sees why and how far to trust it)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

import cimsim
from cimsim.cli import main
from cimsim.cost import adc_survey, settling
from cimsim.cost.datasheet import datasheet, validation_spread
from cimsim.cost.energy import chip_table
from cimsim.cost.models import CCO_LSB_NS

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "cimsim" / "presets" / "published"
SECTIONS = ("energy per op by component", "area by component", "step:", "stated window",
            "settling", "converter:", "basis:", "uncertainty:")


def _published(name: str) -> str:
    return str(PUBLISHED / f"{name}.toml")


def _cli(capsys, *args: str) -> str:
    assert main(["datasheet", *args]) == 0
    return capsys.readouterr().out


def test_breakdown_prints_every_section_after_the_unchanged_headline(capsys):
    plain = _cli(capsys, _published("sinangil-jssc21"))
    full = _cli(capsys, _published("sinangil-jssc21"), "--breakdown")
    assert full.startswith(plain)  # the default output is the breakdown's first lines
    assert len(plain.splitlines()) == 5
    for section in SECTIONS:
        assert section not in plain
        assert section in full


@pytest.mark.parametrize("name, limit", [
    ("hermes-jssc22", "stated_window"),  # the published 128-ns PWM integration
    ("lee-vlsi21", "predicted_window"),  # no window published: settling x the fitted ratio
    ("chih-isscc21", "clock"),  # all-digital: one column sum per clock
])
def test_step_names_the_term_that_sets_it(capsys, name, limit):
    sheet = datasheet(_published(name))
    st = sheet["step"]
    assert st["limit"] == limit
    assert st["step_ns"] == max(st["terms"].values())
    assert st["terms"][limit] == st["step_ns"]
    out = _cli(capsys, _published(name), "--breakdown")
    text = {"stated_window": "the stated compute window",
            "predicted_window": r"the predicted window \(no window stated\)",
            "clock": "the digital clock"}[limit]
    assert re.search(rf"step: [0-9.]+ ns, set by {text}", out)


def test_step_terms_known_answers():
    hermes = datasheet(_published("hermes-jssc22"))["step"]
    assert hermes["stated_window_ns"] == 128.0 and hermes["step_ns"] == 128.0
    # the 8-b CCO counts 2^8 LSBs of 300 ps; one conversion per ADC (its two columns are an
    # analog differential pair: one conversion)
    assert hermes["conversions_per_adc"] == 1
    assert hermes["t_conv_ns"] == pytest.approx(2**8 * CCO_LSB_NS)
    assert hermes["conversions_ns"] == hermes["t_conv_ns"] < 128.0
    chip = cimsim.load_chip(_published("lee-vlsi21"))
    lee = datasheet(chip)["step"]
    assert lee["stated_window_ns"] is None  # window_stated = false
    assert lee["settling_ns"] == pytest.approx(settling.settle_time_ns(chip, chip_table(chip)))
    assert lee["conversions_ns"] == 9.0  # one 8-b SAR conversion: (b + 1) x 1 ns
    chih = datasheet(_published("chih-isscc21"))["step"]
    assert chih["settling_ns"] is None and chih["t_conv_ns"] == 1.0  # 1-GHz clock
    assert set(chih["limits"]) == {"clock", "stated_window"}  # the 1-ns read ties the clock


def test_conversions_set_the_step_when_the_window_is_shorter():
    chip = cimsim.load_chip(_published("sinangil-jssc21"))
    fast = chip.replace(tech=chip.tech.replace(t_read_ns=0.5))  # shorter than the 1-ns flash
    st = datasheet(fast)["step"]
    assert st["limit"] == "conversions"
    assert st["step_ns"] == st["conversions_ns"] == 1.0


def test_converter_rate_follows_the_step():
    sheet = datasheet(_published("hermes-jssc22"))
    adc = sheet["adc"]
    assert adc["sample_rate_hz"] == pytest.approx(1e9 / 128.0)  # one conversion per 128 ns
    assert adc["corner_rate_hz"] == adc_survey.corner_rate_hz(8)
    assert adc["above_corner"] is False and adc["rate_factor"] == 1.0
    assert adc["priced_by"] == "survey"
    digital = datasheet(_published("chih-isscc21"))["adc"]
    assert digital["priced_by"] == "adder tree" and digital["corner_rate_hz"] is None


@pytest.mark.parametrize("chip, scope", [
    (_published("sinangil-jssc21"), "macro"), (_published("chih-isscc21"), "macro"),
    ("jia-jssc20", "chip"),
])
def test_shares_sum_to_one(chip, scope):
    sheet = datasheet(chip, scope=scope)
    for key in ("energy_share_by_component", "area_share_by_component"):
        shares = sheet[key]
        assert math.isclose(sum(shares.values()), 1.0, rel_tol=1e-12)
        assert all(0.0 <= v <= 1.0 for v in shares.values())
    total = sum(sheet["energy_pj_by_component"].values())
    for c, e in sheet["energy_pj_by_component"].items():
        assert sheet["energy_share_by_component"][c] == pytest.approx(e / total)


def test_basis_and_uncertainty():
    sheet = datasheet(_published("sinangil-jssc21"))
    assert sheet["basis_detail"].startswith("predicted: physical")
    unc = sheet["uncertainty"]
    assert unc["adc_family"] == "flash"
    assert unc["adc_scatter_factor"] == adc_survey.scatter_factor(cimsim.config.ADCKind.FLASH)
    assert datasheet("jia-jssc20", calibrated=True)["basis_detail"].startswith("calibrated")
    assert datasheet(_published("chih-isscc21"))["uncertainty"]["adc_scatter_factor"] is None


def test_validation_spread_known_answer(tmp_path):
    doc = tmp_path / "v.md"
    doc.write_text(
        "intro\n\n| chip | metric | published | predicted | predicted / published | x |\n"
        "|---|---|---|---|---|---|\n"
        "| a | TOPS/W | 10 | 20 | 2.00 | yes |\n"
        "| b | TOPS/mm2 | 8 | 2 | 0.25 | no |\n"
        "| c | TOPS/W | 1 | 1 | 1.00 | yes |\n\nafter\n| other | table |\n")
    v = validation_spread(doc)
    assert v["n_rows"] == 3 and v["n_within_2x"] == 2
    assert v["geomean_factor"] == pytest.approx((2.0 * 4.0 * 1.0) ** (1 / 3))
    assert v["worst"] == {"chip": "b", "metric": "TOPS/mm2", "ratio": 0.25, "factor": 4.0}
    assert validation_spread(tmp_path / "missing.md") is None


def test_validation_spread_agrees_with_the_table_summary():
    """The rows the CLI reads give the page's own summary (scripts/validate_presets.py)."""
    text = (ROOT / "docs" / "validation.md").read_text(encoding="utf-8")
    m = re.search(r"Result: (\d+) of (\d+) rows within 2x; geometric-mean error ([0-9.]+)x",
                  text)
    assert m, "docs/validation.md lost its summary line"
    v = validation_spread()
    assert (v["n_within_2x"], v["n_rows"]) == (int(m[1]), int(m[2]))
    assert round(v["geomean_factor"], 2) == float(m[3])


def test_json_prints_the_whole_mapping(capsys):
    out = _cli(capsys, _published("lee-vlsi21"), "--json")
    d = json.loads(out)
    for key in ("tops", "tops_per_w", "tops_per_mm2", "step", "adc", "uncertainty",
                "energy_share_by_component", "area_share_by_component"):
        assert key in d
    assert d["step"]["limit"] == "predicted_window"


@pytest.mark.parametrize("args, fragment", [
    (["--scope", "die"], "--scope"),
    (["--input-density", "0"], "--input-density"),
    (["--input-density", "x"], "--input-density"),
    (["--breakdown=yes"], "--breakdown"),
])
def test_bad_options_one_line(capsys, args, fragment):
    rc = main(["datasheet", "jia-jssc20", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert fragment in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_worked_example_in_docs_matches_the_command(capsys):
    """docs/new-chip.md prints the worked example's output; it must be what the command
    prints now (paste the new output into the doc when the model changes)."""
    doc = (ROOT / "docs" / "new-chip.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- new-chip-example: cimsim datasheet (\S+) --breakdown -->\n```text\n"
                  r"\$ cimsim datasheet \1 --breakdown\n(.*?)```", doc, re.S)
    assert m, "docs/new-chip.md lost its worked example block"
    printed = _cli(capsys, str(ROOT / m[1]), "--breakdown")
    assert m[2].splitlines() == printed.splitlines()

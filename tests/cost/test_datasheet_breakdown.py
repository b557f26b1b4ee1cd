"""``cimsim datasheet --breakdown`` and the mapping's explanatory keys (issue 13: a new chip is
estimated as well as the ones in the table, and the user sees why and how far to trust it)."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import pytest

import cimsim
from cimsim.cli import main
from cimsim.cost import adc_survey, settling
from cimsim.cost.datasheet import (
    VALIDATION_ROWS,
    datasheet,
    likely_lines,
    validation_class,
    validation_range,
    validation_spread,
)
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
    assert len(plain.splitlines()) == 7  # the title, 4 figures, 2 likely ranges
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
    # a digital read-out's window is its clock, not a window the chip stated (it read
    # '(tech.t_integrate_ns, else tech.t_read_ns)', and t_read_ns was 10)
    (window,) = [line for line in out.splitlines() if "stated window" in line]
    assert ("one digital clock, 1000 / tech.clock_mhz" in window) == (limit == "clock")


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


def test_no_published_chip_converts_above_its_corner():
    """docs/technology.md §7: the fastest converters and the nearest to its corner, as the
    page names them (it named XNOR-SRAM's flash the fastest after the sense amps, and the 8-b
    SARs the nearest to their corner, after chips that beat both were added)."""
    adcs = {p.stem: datasheet(str(p))["adc"] for p in sorted(PUBLISHED.glob("*.toml"))}
    analog = {k: a for k, a in adcs.items() if a["corner_rate_hz"] is not None}
    assert not any(a["above_corner"] for a in analog.values())
    fastest = sorted(analog, key=lambda k: -analog[k]["sample_rate_hz"])[:4]
    assert fastest == ["khwa-isscc18", "yu-cicc20", "chen-isscc23", "xnorsram-jssc20"]
    assert [round(analog[k]["sample_rate_hz"] / 1e6) for k in fastest] == [435, 349, 250, 227]
    share = {k: a["sample_rate_hz"] / a["corner_rate_hz"] for k, a in analog.items()}
    nearest = max(share, key=share.__getitem__)
    assert nearest == "si-jssc21" and round(share[nearest], 2) == 0.18
    assert round(analog[nearest]["corner_rate_hz"] / 1e6) == 349
    assert round(share["wang-vlsi22"], 1) == 0.1


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


@pytest.mark.parametrize("chip, overrides, why", [
    ("rram-22nm", [], "rram-22nm has no per-chip calibration (cimsim.cost.CALIBRATIONS holds "
                      "isaac-32nm, jia-jssc20, wang-vlsi22)"),
    ("jia-jssc20", ["tech.node_nm=28"], "jia-jssc20 is calibrated at its own node, cell and "
                                        "cost model only"),
])
def test_calibrated_on_a_chip_without_calibration_says_so(chip, overrides, why):
    """``calibrated=True`` (``--calibrated``) on a chip with no calibration returned predicted
    figures without a word (only ``calibrated: False`` in the mapping)."""
    with pytest.warns(UserWarning, match=r"calibrated=True, but " + re.escape(why)):
        sheet = datasheet(cimsim.load_chip(chip, overrides=overrides), calibrated=True)
    assert sheet["basis"] == "predicted" and why in sheet["basis_detail"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert datasheet("jia-jssc20", calibrated=True)["basis"] == "calibrated"
        assert why not in datasheet(cimsim.load_chip(chip, overrides=overrides))["basis_detail"]


_ROWS_HEADER = "chip,point,metric,key,published,predicted,readout,window\n"


def test_validation_spread_known_answer(tmp_path):
    rows = tmp_path / "v.csv"
    rows.write_text(_ROWS_HEADER + "a,p,TOPS/W,tops_per_w,10,20,analog,stated\n"
                    "b,p,TOPS/mm2,tops_per_mm2,8,2,analog,stated\n"
                    "c,p,TOPS/W,tops_per_w,1,1,digital,n/a\n")
    v = validation_spread(rows)
    assert v["n_rows"] == 3 and v["n_within_2x"] == 2
    assert v["geomean_factor"] == pytest.approx((2.0 * 4.0 * 1.0) ** (1 / 3))
    assert v["worst"] == {"chip": "b", "metric": "TOPS/mm2", "ratio": 0.25, "factor": 4.0}
    assert validation_spread(tmp_path / "missing.csv") is None


def test_validation_range_known_answer(tmp_path):
    """A chip's class: TOPS/W rows of its read-out, TOPS/mm2 rows of its read-out and window;
    the span is NumPy's linear 10th / 50th / 90th percentile of published / predicted."""
    rows = tmp_path / "v.csv"
    rows.write_text(_ROWS_HEADER + "".join(
        f"c{i},p,TOPS/W,tops_per_w,{pub},1,analog,{w}\n"
        for i, (pub, w) in enumerate([(1, "stated"), (2, "predicted"), (4, "stated"),
                                      (8, "stated"), (16, "predicted")]))
        + "d,p,1b-TOPS/W,tops_per_w_1b,100,1,digital,n/a\n"
        + "e,p,TOPS/mm2,tops_per_mm2,3,1,analog,stated\n"
        + "f,p,1b-TOPS/mm2,tops_per_mm2_1b,5,1,analog,predicted\n")
    chip = cimsim.load_chip(_published("sinangil-jssc21"))  # analog, a stated window
    assert validation_class(chip) == {"readout": "analog", "window": "stated"}
    r = validation_range(chip, rows)
    assert r["tops_per_w"]["n_rows"] == 5  # both windows: energy does not rest on timing
    lo, mid, hi = r["tops_per_w"]["published_over_predicted"]
    # published / predicted = 1, 2, 4, 8, 16: positions 0.1 x 4 and 0.9 x 4 in the sorted
    # rows, 1 + 0.4 x (2 - 1) and 8 + 0.6 x (16 - 8)
    assert (lo, mid, hi) == pytest.approx((1.4, 4.0, 12.8))
    assert r["tops_per_w"]["n_within_2x"] == 2
    assert r["tops_per_w"]["geomean_factor"] == pytest.approx(4.0)
    assert r["tops_per_mm2"]["n_rows"] == 1  # only the stated window's row
    assert r["tops_per_mm2"]["published_over_predicted"] is None  # fewer than 3 rows
    digital = cimsim.load_chip(_published("chih-isscc21"))
    assert validation_class(digital) == {"readout": "digital", "window": "n/a"}
    assert validation_range(digital, rows)["tops_per_w"]["n_rows"] == 1
    assert validation_range(chip, tmp_path / "missing.csv") is None


def test_likely_is_the_figure_times_its_class_span(capsys):
    sheet = datasheet(_published("lee-vlsi21"))
    unc = sheet["uncertainty"]
    assert unc["same_class"]["class"] == {"readout": "analog", "window": "predicted"}
    for key in ("tops_per_w", "tops_per_mm2"):
        lo, _, hi = unc["same_class"][key]["published_over_predicted"]
        assert unc["likely"][key] == pytest.approx((sheet[key] * lo, sheet[key] * hi))
    out = _cli(capsys, _published("lee-vlsi21"))
    assert re.search(r"likely TOPS/mm2 .* validation rows, analog read-out, window predicted",
                     out)


@pytest.mark.parametrize("chip, calibrated", [("rram-22nm", False), ("jia-jssc20", True)])
def test_no_likely_range_where_the_table_does_not_describe_the_figures(capsys, chip,
                                                                        calibrated):
    """The table's rows are physical-model predictions: a tables-model or calibrated sheet
    gets no span."""
    unc = datasheet(chip, calibrated=calibrated)["uncertainty"]
    assert unc["same_class"] is None
    assert unc["likely"] == {"tops_per_w": None, "tops_per_mm2": None}
    assert "likely" not in _cli(capsys, chip, *(["--calibrated"] if calibrated else []))


def test_no_likely_range_around_figures_that_describe_no_hardware(capsys):
    """An 18-b converter is beyond any column ADC (the figures carry a caveat saying they mean
    nothing): a 'likely' range printed under that caveat read as a prediction."""
    chip = cimsim.load_chip(_published("lee-vlsi21"), overrides=["adc.bits=18"])
    sheet = datasheet(chip)
    assert sheet["caveat"] and likely_lines(sheet) == []
    assert likely_lines(datasheet(_published("lee-vlsi21")))  # the chip as published has one
    out = _cli(capsys, _published("lee-vlsi21"), "--set", "adc.bits=18")
    assert "caveat: " in out and "likely" not in out


def test_validation_rows_are_the_page_s_table():
    """The shipped rows file and docs/validation.md come from one run of
    scripts/validate_presets.py: the same rows, figures and classes."""
    import csv

    with VALIDATION_ROWS.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    text = (ROOT / "docs" / "validation.md").read_text(encoding="utf-8")
    table = [line.split(" | ") for line in text.splitlines()
             if line.startswith("| ") and line.count(" | ") == 9 and "nm |" in line]
    assert len(rows) == len(table) > 0
    for r, cells in zip(rows, table, strict=True):
        assert (cells[0][2:], cells[2], cells[3]) == (r["chip"], r["point"], r["metric"])
        assert float(cells[5]) == pytest.approx(float(r["published"]), rel=1e-3)
        assert float(cells[6]) == pytest.approx(float(r["predicted"]), rel=1e-3)
    classes = {}
    for r in rows:
        classes.setdefault(r["chip"], set()).add((r["readout"], r["window"]))
    for name, seen in classes.items():
        want = validation_class(cimsim.load_chip(_published(name)))
        assert seen == {(want["readout"], want["window"])}, name


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


def test_class_constant_leave_one_out_known_answer(validate, tmp_path):
    """The page's "one constant per class" table: published / predicted 8, 1, 1 for three
    analog chips (within 2x: 2, geomean error 8^(1/3) = 2), the class constant 2; left out in
    turn, chip a is corrected by its others' constant 1 (error 8), b and c by sqrt(8) (error
    2.83 each): 0 within 2x, geomean (8 x 8)^(1/3) = 4. A digital row stays in its own class
    (alone: no other chip, uncorrected); the last row sums the five classes."""
    rows = tmp_path / "v.csv"
    rows.write_text(_ROWS_HEADER + "a,p,TOPS/W,tops_per_w,8,1,analog,stated\n"
                    "b,p,TOPS/W,tops_per_w,1,1,analog,predicted\n"
                    "c,p,TOPS/W,tops_per_w,2,2,analog,stated\n"
                    "d,p,1b-TOPS/W,tops_per_w_1b,3,1,digital,n/a\n")
    lines = validate.class_constant_lines(rows)
    table = {tuple(c.strip() for c in line.strip("|").split("|")[:3]): line
             for line in lines if line.startswith("| ")}

    def cells(*key):
        return [c.strip() for c in table[key].strip("|").split("|")[3:]]

    assert cells("analog", "any", "TOPS/W") == ["3", "2", "2.00x", "2", "0", "4.00x"]
    assert cells("digital", "any", "TOPS/W") == ["1", "0", "3.00x", "3", "0", "3.00x"]
    assert cells("analog", "stated", "TOPS/mm²") == ["0", "0", "-", "-", "0", "-"]
    assert cells("all five", "", "")[:2] == ["4", "2"]
    assert cells("all five", "", "")[4] == "0"
    assert "from 2 to 0" in lines[-1]


def test_the_headline_names_the_inputs_left_to_defaults(capsys, tmp_path):
    """A description that leaves key inputs out gets its estimate with them named (what it
    rests on, docs/new-chip.md section 3); a ChipConfig does not say what was written."""
    path = tmp_path / "chip.toml"
    path.write_text('[device]\ncell = "rram"\n[tech]\nnode_nm = 40\nvdd_v = 1.0\n'
                    'cost_model = "physical"\n')
    out = _cli(capsys, str(path))
    line = next(ln for ln in out.splitlines() if ln.startswith("not in the description"))
    assert "device.g_max_us = 10.0" in line and "tech.window_stated = false" in line
    assert "tech.node_nm" not in line and "tech.vdd_v" not in line
    assert datasheet(path)["unstated"] == cimsim.config.unstated_inputs(path)
    assert datasheet(cimsim.load_chip(path))["unstated"] is None



_MRAM_MACRO = """name = "mram-macro"
weight_bits = 1
input_bits = 1
weight_encoding = "binary"
[array]
n_rows = 64
n_cols = 64
cols_per_adc = 1
[device]
cell = "mram"
g_max_us = 10.0
[dac]
bits = 1
[adc]
kind = "sar"
bits = 5
[tech]
node_nm = 28.0
vdd_v = 1.0
v_read_v = 0.1
cost_model = "physical"
input_drive = "amplitude"
compute_domain = "current"
"""


def test_a_default_read_pulse_that_sets_the_step_is_named(tmp_path, capsys):
    """A resistive current-domain read is priced over the read pulse and its window lasts no
    less: where the description leaves the pulse at cimsim's 10 ns and that sets the step, the
    step names it and the unstated inputs list it (a small MRAM macro: predicted window ~2 ns,
    one 5-b conversion 6 ns)."""
    path = tmp_path / "mram.toml"
    path.write_text(_MRAM_MACRO)
    sheet = datasheet(str(path))
    st = sheet["step"]
    assert st["limit"] == "read_pulse" and st["limits"] == ("read_pulse",)
    assert st["step_ns"] == st["terms"]["read_pulse"] == 10.0
    assert st["terms"]["predicted_window"] < 10.0 and st["terms"]["conversions"] < 10.0
    assert ("tech.t_read_ns = 10.0 (the read pulse the cells' energy is priced over; the "
            "window lasts no less)") in sheet["unstated"]
    out = _cli(capsys, str(path), "--breakdown")
    assert "step: 10 ns, set by the read pulse (tech.t_read_ns" in out
    assert re.search(r"  read pulse +10 ns \(tech.t_read_ns", out)
    # the paper's pulse written: a stated window, no longer a term of its own nor unstated
    path.write_text(_MRAM_MACRO + "t_read_ns = 1.0\n")
    sheet = datasheet(str(path))
    assert "read_pulse" not in sheet["step"]["terms"]
    assert sheet["step"]["stated_window_ns"] == 1.0
    assert not any("t_read_ns" in u for u in sheet["unstated"])


def test_the_tile_buffer_size_prices_a_chip():
    """``array.tile_buffer_kib``: area per bit fixed (8 KiB is a quarter of 32 KiB's), energy
    per bit Horowitz's 10 against 20 pJ per 64-b read at 8 and 32 KB (half); the buffer's bit
    traffic is the same, so the chip's buffer energy halves and its buffer area quarters."""
    chip = cimsim.load_chip("rram-22nm")

    def buffer_of(kib: float) -> tuple[float, float]:
        sheet = datasheet(chip.replace(array=chip.array.replace(tile_buffer_kib=kib)),
                          scope="chip")
        return (sheet["energy_pj_by_component"]["buffer"],
                sheet["area_um2_by_component"]["buffer"])

    (e8, a8), (e32, a32) = buffer_of(8.0), buffer_of(32.0)
    assert e8 > 0 and a8 > 0
    assert e8 / e32 == pytest.approx(0.5, rel=1e-12)
    assert a8 / a32 == pytest.approx(0.25, rel=1e-12)
    assert cimsim.load_chip("rram-22nm").array.tile_buffer_kib == 64.0  # ISAAC's, the default
    for bad in (0.0, -1.0, float("nan"), "big"):
        with pytest.raises(cimsim.ConfigError, match="ArrayConfig.tile_buffer_kib"):
            chip.array.replace(tile_buffer_kib=bad)


@pytest.mark.parametrize("chip", ["sram-65nm", "chih-isscc21"])
def test_a_report_pays_the_digital_tail_per_inference_the_datasheet_once(chip):
    """The datasheet streams N_VECTORS vectors and pays the add tree's tail once; the same
    vectors as one inference each pay it every time (docs/cost-model.md §5): the two TOPS
    differ by exactly that, not by any other term."""
    from cimsim.arrays.program import program
    from cimsim.cost import estimate, layer_work
    from cimsim.cost.datasheet import N_VECTORS, workload

    c = cimsim.load_chip(chip if "-isscc" not in chip else _published(chip))
    x, w = workload(c)
    cal = x if c.adc.range_policy.value == "calibrated" else None
    _, events = cimsim.matmul(x, w, c, seed=0, calibration=cal)
    work = [layer_work(events, program(w, c))]
    stream = estimate(work, c)  # the datasheet's: N_VECTORS vectors, one inference
    each = estimate(work, c, n_inferences=N_VECTORS)  # one vector per inference
    tail = stream.blocks[0]["tail_ns"]
    assert tail > 0
    t_stream = stream.totals["latency_ns_per_inference"]
    t_each = each.totals["latency_ns_per_inference"]
    assert N_VECTORS * t_each == pytest.approx(t_stream + (N_VECTORS - 1) * tail, rel=1e-12)
    assert datasheet(c)["tops"] == pytest.approx(stream.totals["tops"], rel=1e-12)
    assert each.totals["tops"] == pytest.approx(
        stream.totals["tops"] * t_stream / (N_VECTORS * t_each), rel=1e-12)

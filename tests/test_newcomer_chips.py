"""Chips cimsim has not seen, written as a chip architect writes them, through every user path.

The chip files in ``tests/data/chips/`` are hypothetical macros of styles the presets do not
cover (a 3-nm and a 180-nm node, PCM with two devices per cell and pulse-width inputs, a flash
converter shared by 16 columns in the charge domain, single-slope and CCO converters, an analog
slice read-out with no stated window, 1024 x 1024 and 16 x 16 arrays, layer-output converters
with power gating, integrate-and-fire neurons with ternary weights and every word line
switching) and broken files (a typo in a field name, wrong units, an attempt to inherit
a preset, which the schema does not allow). Each goes through ``cimsim datasheet`` (both
scopes, ``--json``), ``cimsim demo``, ``simulate``, ``sweep``, ``train``, ``report`` and the
Python API (``cimsim.matmul``, ``cimsim.deploy``, ``cimsim.cost.estimate``,
``cimsim.cost.datasheet``), and the checks are of consistency, not only of running:

* the datasheet's components sum to its energy and area; TOPS/W = ops / energy of the same
  run; the chip scope costs at least what the macro does; the CLI's JSON is the API's mapping;
* energy per op non-decreasing in ADC bits and in the supply;
* a deployed model's report: components and layers sum to the total, TOPS/W = 2 MACs /
  energy, the HTML and figures render with no NaN; ``cimsim report`` re-renders the same files;
* a sweep's record equals a direct ``cimsim.deploy`` of the same chip variant.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

import cimsim
from cimsim.cli import main
from cimsim.config import ADCKind, ChipConfig, load_chip
from cimsim.cost import estimate, layer_work
from cimsim.cost.datasheet import datasheet
from cimsim.data import load_digits_split
from cimsim.errors import ConfigError
from cimsim.models import load_digits_cnn

CHIPS = Path(__file__).parent / "data" / "chips"
VALID = ["finfet-3nm-sram", "bulk-180nm-rram", "pcm-2dev-pwm", "charge-flash-shared",
         "rram-analog-slices", "huge-1024", "tiny-16", "layer-output-gated", "rram-if-ternary",
         "edram-2t-gaincell"]
"""Chip files that load; every one runs the digits CNN."""

BROKEN = {
    # file: (the field the one-line error names, a fragment of what it says is allowed)
    "typo-field": ("cols_per_adcs", "did you mean 'cols_per_adc'?"),
    "wrong-unit": ("TechConfig.node_nm", "[3.0, 180.0]"),
    "wrong-unit-key": ("'node'", "did you mean 'node_nm'?"),
    "wrong-unit-farads": ("TechConfig.cap_unit_ff", "[0.01, 1000.0]"),
    "wrong-unit-siemens": ("DeviceConfig.g_max_us", "[0.001, 1000000.0]"),
    "wrong-unit-driver-farads": ("TechConfig.wordline_driver_cap_ff", "0 or a number in"),
    "inherits-preset": ("'base'", "allowed keys"),
    "wrong-unit-retention-seconds": ("TechConfig.retention_ns", "[1.0, 1000000000000.0]"),
}


def chip_file(name: str) -> Path:
    return CHIPS / f"{name}.toml"


def chip(name: str) -> ChipConfig:
    return load_chip(chip_file(name))


@pytest.fixture(scope="module")
def digits():
    """The digits CNN, 64 training images to calibrate and 48 test images to evaluate."""
    x_train, _, x_test, y_test = load_digits_split()
    return load_digits_cnn(), x_train[:64], x_test[:48], y_test[:48]


# ---------------------------------------------------------------- loading and broken files

@pytest.mark.parametrize("name", VALID)
def test_chip_file_loads_and_round_trips(name, tmp_path):
    c = chip(name)
    assert c.name == name
    assert c.tech.cost_model.value == "physical"
    path = tmp_path / "again.toml"
    c.save(path)
    assert load_chip(path) == c


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_chip_file_is_one_line_naming_the_field(name, capsys):
    """A typo, a wrong unit or an inheritance the schema lacks: exit 2, one line, the field
    and what is allowed, no traceback; the same ConfigError from the Python API."""
    field, allowed = BROKEN[name]
    with pytest.raises(ConfigError) as exc:
        load_chip(chip_file(name))
    assert field in str(exc.value) and allowed in str(exc.value)
    assert "allowed" in str(exc.value)  # what is allowed, not only what is wrong
    assert main(["datasheet", str(chip_file(name))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cimsim: error: ") and len(err.strip().splitlines()) == 1
    assert field in err and allowed in err and "Traceback" not in err


def test_chip_file_with_a_byte_order_mark_loads(tmp_path):
    """A file saved by a Windows editor starts with a UTF-8 BOM; it was 'invalid TOML:
    Invalid statement (at line 1, column 1)', a message that points at nothing visible."""
    text = chip_file("tiny-16").read_text(encoding="utf-8")
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert load_chip(path) == chip("tiny-16")


# ---------------------------------------------------------------- datasheet

def _check_sheet(d: dict) -> None:
    energy = d["energy_pj_by_component"]
    area = d["area_um2_by_component"]
    assert all(math.isfinite(v) and v >= 0 for v in energy.values()), energy
    assert all(math.isfinite(v) and v > 0 for v in area.values()), area
    for key in ("tops", "tops_per_w", "tops_per_mm2", "tops_1b", "tops_per_w_1b",
                "tops_per_mm2_1b"):
        assert math.isfinite(d[key]) and d[key] > 0, key
    e_pj = sum(energy.values())
    assert e_pj == pytest.approx(d["energy_pj_per_op"] * d["ops"], rel=1e-12)
    assert d["tops_per_w"] == pytest.approx(d["ops"] / e_pj, rel=1e-12)  # ops/pJ = TOPS/W
    assert d["area_mm2"] == pytest.approx(sum(area.values()) * 1e-6, rel=1e-12)
    assert d["tops_per_mm2"] == pytest.approx(d["tops"] / d["area_mm2"], rel=1e-12)
    assert sum(d["energy_share_by_component"].values()) == pytest.approx(1.0)
    assert sum(d["area_share_by_component"].values()) == pytest.approx(1.0)
    bits = int(re.search(r"ops x (\d+)", d["ops_convention"]).group(1))
    assert d["tops_per_w_1b"] == pytest.approx(d["tops_per_w"] * bits, rel=1e-12)


@pytest.mark.parametrize("name", VALID)
def test_datasheet_both_scopes_consistent(name):
    """Both scopes agree: a chip-scope TOPS that forgot to multiply one array's throughput by
    the chip's arrays would fail here."""
    c = chip(name)
    macro, whole = datasheet(c, scope="macro"), datasheet(c, scope="chip")
    _check_sheet(macro)
    _check_sheet(whole)
    # the chip scope is the macro plus the rest of the chip: never cheaper per op, never
    # smaller; its arrays all run at once, so its TOPS is the macro's times the arrays
    assert whole["tops_per_w"] <= macro["tops_per_w"] * (1 + 1e-12)
    assert whole["area_mm2"] >= macro["area_mm2"]
    for comp, e in macro["energy_pj_by_component"].items():
        assert whole["energy_pj_by_component"][comp] == pytest.approx(e, rel=1e-12)
    assert whole["ops"] == macro["ops"]
    # the standard workload fills one array, so the chip runs n_arrays of it in parallel
    assert whole["tops"] == pytest.approx(macro["tops"] * c.array.n_arrays, rel=1e-12)
    # the ops are the standard workload's: 256 vectors through one array's rows and outputs
    assert macro["ops"] > 0 and macro["ops"] % 2 == 0


@pytest.mark.parametrize("name", ["pcm-2dev-pwm", "tiny-16"])
def test_datasheet_cli_json_is_the_api_mapping(name, capsys):
    for scope in ("macro", "chip"):
        assert main(["datasheet", str(chip_file(name)), "--scope", scope, "--json"]) == 0
        printed = json.loads(capsys.readouterr().out)
        api = json.loads(json.dumps(datasheet(chip_file(name), scope=scope)))
        assert printed == api
        assert main(["datasheet", str(chip_file(name)), "--scope", scope,
                     "--breakdown"]) == 0
        text = capsys.readouterr().out
        assert f"{'TOPS/W':<12}{api['tops_per_w']:>12.4g}" in text
        assert "nan" not in text.lower()


def _per_op(c: ChipConfig) -> float:
    return datasheet(c)["energy_pj_per_op"]


@pytest.mark.parametrize("name", [n for n in VALID if n != "tiny-16"])
def test_more_adc_bits_never_cheaper(name):
    """docs/cost-model.md "Monotone": energy per op non-decreasing in the converter's bits, and
    the converter's own energy per conversion too, on every converter style of the files."""
    c = chip(name)
    lo = max(1, c.adc.bits - 3)
    sheets = [datasheet(c.replace(adc=c.adc.replace(bits=b))) for b in range(lo, c.adc.bits + 4)]
    adc = [d["energy_pj_by_component"]["adc"] for d in sheets]
    total = [d["energy_pj_per_op"] for d in sheets]
    assert all(b >= a for a, b in pairwise(adc)), adc
    assert all(b >= a for a, b in pairwise(total)), total
    assert adc[-1] > adc[0]


@pytest.mark.parametrize("name", VALID)
def test_higher_supply_never_cheaper(name):
    c = chip(name)
    per_op = [_per_op(c.replace(tech=c.tech.replace(vdd_v=v))) for v in (0.6, 0.8, 1.0, 1.2, 1.8)]
    assert all(b > a for a, b in pairwise(per_op)), per_op


# ---------------------------------------------------------------- matmul + estimate

@pytest.mark.parametrize("name", VALID)
def test_matmul_and_estimate_components_sum(name):
    """One layer through ``cimsim.matmul`` and ``cimsim.cost.estimate``: the totals are the
    sum of the components and of the layers, and TOPS/W is 2 MACs / energy."""
    from cimsim.arrays.encoding import input_range, weight_range
    from cimsim.arrays.program import program

    c = chip(name)
    rng = np.random.default_rng(0)
    k, n, m = min(c.array.n_rows, 96), 12, 16
    lo, hi = weight_range(c)
    w = rng.integers(lo, hi + 1, size=(n, k))
    if c.weight_encoding.value == "binary":  # +-1 only: 0 has no code (weight_range says so)
        w = np.where(w >= 0, 1, -1)
    xlo, xhi = input_range(c, signed=False)
    x = rng.integers(xlo, xhi + 1, size=(m, k))
    cal = x if c.adc.range_policy.value == "calibrated" else None
    y, events = cimsim.matmul(x, w, c, seed=0, calibration=cal)
    assert y.shape == (m, n) and np.isfinite(y).all()
    rep = estimate([layer_work(events, program(w, c))], c)
    t = rep.totals
    comps = rep.energy_by_component()
    assert all(math.isfinite(v) and v >= 0 for v in comps.values())
    assert sum(comps.values()) == pytest.approx(t["energy_pj_per_inference"], rel=1e-9)
    assert t["n_macs_per_inference"] == m * n * k
    assert t["tops_per_w"] == pytest.approx(2 * m * n * k / t["energy_pj_per_inference"],
                                            rel=1e-9)
    assert t["latency_ns_per_inference"] > 0 and t["area_mm2"] > 0


# ---------------------------------------------------------------- deploy and reports

def _check_report(rep, n_macs_expected: float | None = None) -> None:
    t = rep.totals
    e = t["energy_pj_per_inference"]
    assert math.isfinite(e) and e > 0
    comps = t["energy_pj_per_inference_by_component"]
    assert sum(comps.values()) == pytest.approx(e, rel=1e-9)
    assert rep.layers["energy_pj_per_inference"].sum() == pytest.approx(e, rel=1e-9)
    assert rep.breakdown["energy_pj_per_inference"].sum() == pytest.approx(e, rel=1e-9)
    assert t["ops_per_inference"] == 2 * t["n_macs_per_inference"]
    if n_macs_expected is not None:
        assert t["n_macs_per_inference"] == n_macs_expected
    assert t["tops_per_w"] == pytest.approx(t["ops_per_inference"] / e, rel=1e-9)
    assert t["tops_per_mm2"] == pytest.approx(t["tops"] / t["area_mm2"], rel=1e-9)
    assert rep.area["area_um2"].sum() * 1e-6 == pytest.approx(t["area_mm2"], rel=1e-9)
    assert t["latency_ns_per_inference"] > 0


def _check_files(out: Path) -> None:
    """The HTML has no NaN or inf outside its images, and every PNG is a non-trivial image."""
    html = (out / "report.html").read_text()
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    body = re.sub(r"<style>.*?</style>", "", text, flags=re.S)
    visible = re.sub(r"<[^>]+>", " ", body)
    assert not re.search(r"\bnan\b", visible, re.I), "NaN in the HTML report"
    saved = json.loads((out / "report.json").read_text())
    if saved["chip"]["tech"]["cost_model"] == "physical":  # no table prices its components
        assert "technology tables" not in visible
    pngs = sorted(out.glob("*.png"))
    assert pngs, "no figure"
    import matplotlib.image as mpimg

    for p in pngs:
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert float(np.std(img[..., :3])) > 0.01, f"{p.name} is blank"


PRECISE = {"rram-analog-slices", "tiny-16", "layer-output-gated", "rram-if-ternary"}
"""Chip files whose converters and weights lose (almost) nothing on the digits CNN; the others
are lossy by design (few-bit converters over a full-scale range, binary weights)."""

#: the digits CNN's MACs per image (conv 8x8 3x3 pad 1 -> pool -> conv -> ... -> 10 logits)
DIGITS_MACS = 460416.0


@pytest.mark.parametrize("name", VALID)
def test_deploy_digits_report_consistent(name, digits, tmp_path):
    model, x_cal, x, y = digits
    c = chip(name)
    sim = cimsim.deploy(model, c, x_cal, seed=0)
    with torch.no_grad():
        logits = sim(x)
    assert torch.isfinite(logits).all()
    if name in PRECISE:  # enough bits everywhere: the float model's accuracy, within 2 images
        acc = float((logits.argmax(1) == y).double().mean())
        with torch.no_grad():
            ref = float((model(x).argmax(1) == y).double().mean())
        assert acc >= ref - 2 / len(y), (acc, ref)
    rep = sim.report()
    _check_report(rep, DIGITS_MACS)
    assert rep.totals["n_inferences"] == len(x)
    if name == "layer-output-gated":
        # power gating per layer: the converters leak only while their layer runs
        leak_gated = rep.totals["energy_pj_per_inference_by_component"].get("adc", 0.0)
        ungated = c.replace(tech=c.tech.replace(power_gating="none"))
        sim2 = cimsim.deploy(model, ungated, x_cal, seed=0)
        with torch.no_grad():
            sim2(x)
        assert sim2.report().totals["energy_pj_per_inference_by_component"]["adc"] > leak_gated


def test_physical_chip_report_does_not_claim_technology_tables(digits):
    """The report's calibration line said "none (technology tables as they are)" for a chip on
    the physical cost model, which uses no technology table for its components."""
    model, x_cal, x, _ = digits
    sim = cimsim.deploy(model, chip("finfet-3nm-sram"), x_cal, seed=0)
    with torch.no_grad():
        sim(x[:4])
    rep = sim.report()
    assert "technology tables" not in rep.totals["calibration"]
    assert all("technology tables" not in n for n in rep.notes)
    assert "technology tables" not in rep.to_html()


def test_demo_cli_on_a_chip_file_and_rerender(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--fast", "--chip", str(chip_file("rram-analog-slices")),
                 "--out", str(out), "--calibration", "64"]) == 0
    text = capsys.readouterr().out
    assert "rram-analog-slices" in text and "simulated accuracy" in text
    # time-multiplexed (9 arrays on 8): the (reprogramming) line printed NaN clipping and SQNR
    assert "(reprogramming)" in text
    assert not re.search(r"\bnan\b", text, re.I), text
    data = json.loads((out / "report.json").read_text())
    assert ChipConfig.from_dict(data["chip"]) == chip("rram-analog-slices")  # inf as "inf"
    t = data["totals"]
    assert sum(t["energy_pj_per_inference_by_component"].values()) == pytest.approx(
        t["energy_pj_per_inference"], rel=1e-9)
    assert t["tops_per_w"] == pytest.approx(t["ops_per_inference"]
                                            / t["energy_pj_per_inference"], rel=1e-9)
    assert f"{t['tops_per_w']:.3f}" in text
    _check_files(out)
    # cimsim report re-renders the same tables and page from report.json
    again = tmp_path / "again"
    assert main(["report", str(out), "--out", str(again)]) == 0
    for f in sorted(out.glob("*.csv")) + [out / "report.html"]:
        assert (again / f.name).read_text() == f.read_text(), f.name
    _check_files(again)


def test_simulate_cli_on_a_chip_file_matches_deploy(digits, tmp_path, capsys):
    """``cimsim simulate`` with a chip file: the accuracy and energy are a direct deploy's."""
    model, _, x, y = digits
    data = tmp_path / "digits.npz"
    np.savez(data, x=x.numpy(), y=y.numpy())
    out = tmp_path / "sim"
    assert main(["simulate", "--model", "cimsim.models:load_digits_cnn", "--data", str(data),
                 "--chip", str(chip_file("charge-flash-shared")), "--out", str(out),
                 "--calibration", "16"]) == 0
    capsys.readouterr()
    saved = json.loads((out / "report.json").read_text())
    sim = cimsim.deploy(model, chip("charge-flash-shared"), x[:16], seed=0, batch_size=64)
    with torch.no_grad():
        pred = sim(x[16:]).argmax(1)
    rep = sim.report()
    assert saved["summary"]["simulated_accuracy"] == pytest.approx(
        float((pred == y[16:]).double().mean()))
    assert saved["totals"]["energy_pj_per_inference"] == pytest.approx(
        rep.totals["energy_pj_per_inference"], rel=1e-9)
    _check_files(out)


def test_sweep_records_equal_direct_deploy(digits, tmp_path):
    """A sweep over ADC bits, kinds and array sizes on a chip file: every record is what a
    direct ``cimsim.deploy`` of the variant written by hand gives."""
    from cimsim.evaluate import accuracy
    from cimsim.sweep import run_sweep

    model, x_cal, x, y = digits
    base = chip("rram-analog-slices")
    grid = {"adc_bits": [5, 8], "adc_kind": ["sar", "single_slope"], "array_size": [64, 128]}
    frame = run_sweep(model, (x, y), base, grid, tmp_path / "sw", calibration=x_cal,
                      progress=False)
    assert len(frame) == 8 and (frame["status"] == "ok").all()
    for rec in frame.to_dict("records"):
        s = int(rec["array_size"])
        variant = base.replace(
            adc=base.adc.replace(bits=int(rec["adc_bits"]), kind=rec["adc_kind"]),
            array=base.array.replace(n_rows=s, n_cols=s, cols_per_adc=min(2, s)))
        sim = cimsim.deploy(model, variant, x_cal, seed=0)
        acc = accuracy(sim, x, y, batch_size=256)
        t = sim.report().totals
        assert rec["accuracy"] == pytest.approx(acc, abs=0)
        for key in ("energy_pj_per_inference", "latency_ns_per_inference", "area_mm2",
                    "tops_per_w"):
            assert rec[key] == pytest.approx(t[key], rel=1e-12), key
    # more ADC bits at the same kind and size: more energy per inference
    for (kind, size), g in frame.groupby(["adc_kind", "array_size"]):
        e = g.sort_values("adc_bits")["energy_pj_per_inference"].to_list()
        assert e[0] < e[1], (kind, size)
    _check_sweep_files(tmp_path / "sw")


def _check_sweep_files(out: Path) -> None:
    html = (out / "sweep.html").read_text()
    visible = re.sub(r"<[^>]+>", " ", re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "",
                                             html))
    assert not re.search(r"\bnan\b", visible, re.I)
    assert (out / "pareto.png").stat().st_size > 5000


def test_sweep_cli_on_a_chip_file(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(["sweep", "--model", "demo", "--chip", str(chip_file("pcm-2dev-pwm")),
                 "--adc-bits", "4,6", "--adc-kind", "cco,sar", "--cols-per-adc", "1,4",
                 "--limit", "48", "--calibration", "32", "--out", str(out)]) == 0
    capsys.readouterr()
    recs = [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()]
    assert len(recs) == 8 and all(r["status"] == "ok" for r in recs)
    for r in recs:
        assert r["tops_per_w"] == pytest.approx(2 * DIGITS_MACS / r["energy_pj_per_inference"],
                                                rel=1e-9)
    # a converter per column costs more converter area than one shared by 4 columns
    by = {(r["point"]["adc_kind"], r["point"]["adc_bits"], r["point"]["cols_per_adc"]): r
          for r in recs}
    for kind in ("cco", "sar"):
        for b in (4, 6):
            assert by[kind, b, 1]["adc_area_mm2"] > by[kind, b, 4]["adc_area_mm2"]
    _check_sweep_files(out)


@pytest.mark.slow
@pytest.mark.parametrize("name", VALID)
def test_demo_cli_every_chip_file(name, tmp_path, capsys):
    out = tmp_path / name
    assert main(["demo", "--fast", "--chip", str(chip_file(name)), "--out", str(out),
                 "--calibration", "64"]) == 0
    capsys.readouterr()
    _check_files(out)


@pytest.mark.slow
def test_train_cli_on_a_chip_file(tmp_path, capsys):
    """``cimsim train`` on a chip file: the deployed accuracy it prints is the report's, and
    the report is consistent."""
    out = tmp_path / "tr"
    assert main(["train", "--model", "demo", "--chip", str(chip_file("rram-analog-slices")),
                 "--epochs", "1", "--limit", "128", "--calibration", "64",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    saved = json.loads((out / "report.json").read_text())
    acc = saved["summary"]["simulated_accuracy"]
    assert f"{'simulated accuracy':<24}{100 * acc:.2f} %" in text
    assert json.loads((out / "training.json").read_text())["epochs"] == 1
    _check_files(out)


@pytest.mark.parametrize("kind", [k for k in ADCKind if k is not ADCKind.DIGITAL])
def test_every_converter_kind_on_a_chip_file(kind):
    """Swapping the converter of a file's chip keeps the datasheet consistent."""
    c = chip("charge-flash-shared")
    adc = c.adc.replace(kind=kind, range_policy="calibrated" if kind is ADCKind.RAMP
                        else c.adc.range_policy)
    _check_sheet(datasheet(c.replace(adc=adc)))


def test_dataclass_replace_and_file_agree():
    """A chip built in Python equals the file that spells the same fields."""
    c = chip("tiny-16")
    assert dataclasses.replace(c) == c
    assert ChipConfig.from_dict(c.to_dict()) == c


def test_sweep_other_axes_equal_direct_deploy(digits, tmp_path):
    """Cells' bits, slice read-out and thermal noise on the 180-nm file: each record is the
    deploy of the variant written by hand, at the sweep's batch size (noise draws per batch);
    the noise is in the base chip's cell-LSB, held in current at the point's bits per cell
    (``ChipConfig.with_bits_per_cell``)."""
    from cimsim.evaluate import accuracy
    from cimsim.sweep import run_sweep

    model, x_cal, x, y = digits
    base = chip("bulk-180nm-rram")
    grid = {"bits_per_cell": [1, 2], "slice_readout": ["digital", "analog"],
            "thermal_sigma_lsb": [0.0, 0.5], "array_size": [64]}
    frame = run_sweep(model, (x, y), base, grid, tmp_path / "sw", calibration=x_cal,
                      progress=False, batch_size=16)
    assert len(frame) == 8 and (frame["status"] == "ok").all()
    for rec in frame.to_dict("records"):
        variant = base.replace(
            array=base.array.replace(slice_readout=rec["slice_readout"]),
            noise=base.noise.replace(thermal_sigma_lsb=float(rec["thermal_sigma_lsb"]))
        ).with_bits_per_cell(int(rec["bits_per_cell"]))
        sim = cimsim.deploy(model, variant, x_cal, seed=0)
        acc = accuracy(sim, x, y, batch_size=16)  # noise: the batching is part of the result
        t = sim.report().totals
        assert rec["accuracy"] == acc
        for key in ("energy_pj_per_inference", "latency_ns_per_inference", "area_mm2"):
            assert rec[key] == pytest.approx(t[key], rel=1e-12), key


def test_new_chip_page_names_every_cell_and_the_default_kind():
    """docs/new-chip.md §2 is where a user looks up what ``device.cell`` and ``tech.cell_kind``
    take: it named four of the six technologies and seven of the nine kinds, and not which
    kind an omitted ``cell_kind`` gives an SRAM (the 8T cell, not the 6T a TOML written from
    it assumed); every value and the SRAM default are on the page."""
    from cimsim.config import CellKind, CellTech
    from cimsim.cost.models import cell_kind

    page = (Path(__file__).parents[1] / "docs" / "new-chip.md").read_text(encoding="utf-8")
    rows = {m[1]: m[2] for m in re.finditer(r"^\| [^|]+ \| `(device\.cell|tech\.cell_kind)` \|"
                                            r"(.*)\|$", page, re.M)}
    assert set(rows) == {"device.cell", "tech.cell_kind"}
    for field, enum in (("device.cell", CellTech), ("tech.cell_kind", CellKind)):
        named = set(re.findall(r"`(\w+)`", rows[field]))
        assert {e.value for e in enum} <= named, (field, {e.value for e in enum} - named)
    sram = load_chip(CHIPS.parents[2] / "cimsim" / "presets" / "published" /
                     "nmux-jssc23.toml")  # device.cell = "sram", no tech.cell_kind
    assert sram.tech.cell_kind is None
    assert f"`{cell_kind(sram).value}`" in rows["tech.cell_kind"].split("omitted")[1]

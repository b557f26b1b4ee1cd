"""Uncalibrated predictions of published chips described by architecture (docs/validation.md).

The goal of issue 13 is every row within 2x and a geometric-mean error <= 1.5x. Today some
rows are outside (docs/validation.md says which and why); this test pins them: a row inside
2x must stay inside, and the rows known to be outside are listed with their ratios, so that a
change that moves any prediction shows up here and in the regenerated page.
"""

from __future__ import annotations

import pytest

import cimsim
from cimsim.arrays import encoding
from cimsim.config import ADCConfig

# (chip, metric) -> predicted / published today, for the rows outside 2x
KNOWN_OUTSIDE_2X = {
    ("jia-jssc20", "0.85 V", "1b-TOPS/W"): 3.51,
    ("jia-jssc20", "1.2 V", "1b-TOPS/W"): 3.67,
    ("wan-nature22", "1.8 V neurons", "TOPS/mm2"): 2.44,
    ("lee-vlsi21", "0.8 V (default)", "1b-TOPS/mm2"): 2.42,
    ("hermes-jssc22", "0.8 V, 1 GHz", "TOPS/W"): 2.99,
    ("hermes-jssc22", "0.8 V, 1 GHz", "TOPS/mm2"): 4.00,
    ("deaville-vlsi22", "0.8 V (default)", "1b-TOPS/mm2"): 70.13,
    # chips added out of sample (docs/validation.md says why each is off)
    ("yu-cicc20", "1-b ADC", "TOPS/W"): 2.76,
    ("yu-cicc20", "5-b ADC", "TOPS/W"): 37.81,
    ("chiu-jssc20", "8b/8b", "TOPS/W"): 3.30,
    ("chiu-jssc20", "binary", "TOPS/W"): 3.16,
    ("bscha-arxiv26", "1/2/1 b", "TOPS/mm2"): 4.27,
    ("bscha-arxiv26", "7/4/7 b", "TOPS/mm2"): 21.88,
    # the same point as built: input bit-planes merged in analog (tech.input_drive =
    # 'bit_planes'); the two rows above are the paper's bit-sliced baseline
    ("bscha-arxiv26", "7/4/7 b, BSCHA", "TOPS/W"): 2.96,
    ("bscha-arxiv26", "7/4/7 b, BSCHA", "TOPS/mm2"): 22.98,
    # the dual-7T macro's multi-level weights (the 3-level row is within 2x)
    ("yu-tcasi24", "7-level w", "TOPS/W"): 3.61,
    ("yu-tcasi24", "15-level w", "TOPS/W"): 6.80,
    # IMAGINE's area rows rest on the predicted window (no cycle published)
    ("kneip-tcasai25", "8b/8b/8b", "TOPS/mm2"): 0.33,
    ("kneip-tcasai25", "1b/1b/1b", "TOPS/mm2"): 2.37,
    # C3SRAM's area (the survey's flash converters) and Khwa's energy (docs/validation.md)
    ("c3sram-jssc20", "1b/1b", "TOPS/mm2"): 0.16,
    ("khwa-isscc18", "0.8 V (default)", "TOPS/W"): 23.91,
    # Li's RRAM macro, Su's SRAM macro and Le Gallo's PCM chip (docs/validation.md says why
    # each is off; every row of the three is outside 2x)
    ("li-esscirc22", "0.7 V", "TOPS/W"): 4.95,
    ("li-esscirc22", "0.7 V", "TOPS/mm2"): 350.74,
    ("li-esscirc22", "1.0 V", "TOPS/W"): 3.61,
    ("li-esscirc22", "1.0 V", "TOPS/mm2"): 221.04,
    ("su-jssc22", "8b/8b", "TOPS/W"): 0.36,
    ("su-jssc22", "2b/4b", "TOPS/W"): 0.33,
    ("legallo-natelec23", "one-phase, 8b/8b", "TOPS/W"): 2.73,
    # Yan's dynamic-logic digital macro (docs/validation.md says why; Chen's row is within
    # 2x; Wu's 8b/8b TOPS/W came within 2x, 0.466 -> 0.567, once the word line gated only
    # the compute cells, not the 32 stored weight sets)
    ("yan-isscc22", "0.9 V, signed INT8", "TOPS/W"): 0.215,
    # the 22-nm analog multiplier's density (its macro holds more than its cells, DACs and
    # converters; its energy is within 2x), the 28-nm multiplexed SRAM macro (its 5-b readers)
    # and DynaPlasia's energy (its in-memory converter priced as a SAR); DynaPlasia's density
    # is within 2x
    ("aimc-cicc21", "0.8 V, 7b/2b", "TOPS/mm2"): 3.65,
    ("nmux-jssc23", "0.9 V, 8b/8b", "TOPS/W"): 0.258,
    ("dynaplasia-jssc24", "4b/5b, chip peak", "TOPS/W"): 0.219,
    # the two 22-nm ReRAM macros: the 4-Mb macro's 8b/8b point above its silicon (its binary
    # point is within 2x) and the 8-Mb macro's time-domain reader, an 8-b counter TDC (the
    # default architecture: none stated) per 8-row read (0.0082 as an 8-b SAR before the
    # TDC kind)
    ("rram8mb-jssc23", "8b/8b", "TOPS/W"): 0.0288,
    # Si's 6T SRAM macro (its reader priced as an exact 9-b SAR per column, 95 % of the
    # prediction), Yoon's ternary-weight RRAM macro and the 2-Mb SLC-ReRAM macro (each at
    # cimsim's default 8-b SAR per 8 columns: their readers are not stated)
    ("si-jssc21", "8b/8b", "TOPS/W"): 0.219,
    ("si-jssc21", "4b/4b", "TOPS/W"): 0.147,
    # the 55-nm 1-Mb ReRAM macro (priced 4.5x more efficient than its silicon: its sense
    # amplifier and clamper are not priced, its rows per read not stated) and Scaling-CIM (its
    # dynamic-scaling ADC priced as cimsim's default 8-b SAR); the twin-8T row is within 2x
    ("xue-jssc20", "2b/3b/4b", "TOPS/W"): 2.82,
    ("scalingcim-jssc24", "8b/9b, ResNet-18", "TOPS/W"): 0.0906,
    # Lee's Dual-SRAM macro at 2-b weights (one default 8-b SAR conversion per weight at
    # either end of its weight sweep; its 8-b row is within 2x) and Xiao's 9T1C macro (its
    # flash converters' unstated bits taken as cimsim's default 8); Jia's 16-nm row is within 2x
    ("lee-tcasi21", "2b w", "TOPS/W"): 0.331,
    ("xiao-tcasii23", "4b/4b, average", "TOPS/W"): 0.0158,
    # the 40-nm STT-MRAM digital macro at both ends of its precision sweep (NVSim's MTJ read
    # over a derived 1.85-ns window and the tables' 40-nm adder tree per sensed product)
    ("nvdcim-natelec25", "4b/4b", "TOPS/W"): 0.0626,
    ("nvdcim-natelec25", "16b/16b", "TOPS/W"): 0.0625,
    # the two floating-point macros (block-FP inputs): their adder trees at the tables'
    # digital energy per added bit; Guo's area is within 2x
    ("guo-isscc23", "BF16", "TOPS/W"): 0.223,
    ("tien-isscc26", "MXINT8", "TOPS/W"): 0.218,
    ("tien-isscc26", "MXINT8", "TOPS/mm2"): 2.44,
    # Li's 2021 RRAM macro (the same defaults as li-esscirc22: an 8-b SAR per 8 columns) and
    # IMPACT's CIM-SRAM at its 1-b peak (the unstated converter as cimsim's 8-b SAR);
    # DIANA's AIMC core is within 2x
    ("li-esscirc21", "1b/1b, VGG-8", "TOPS/W"): 6.35,
    ("impact-jssc23", "1b/1b, peak", "TOPS/W"): 0.0813,
    ("impact-jssc23", "1b/1b, peak", "TOPS/mm2"): 0.423,
}
ADDED = ("yu-cicc20", "chiu-jssc20", "correll-jssc25", "bscha-arxiv26", "colonnade-jssc21",
         "yu-tcasi24", "kneip-tcasai25", "c3sram-jssc20", "xnorsram-jssc20", "khwa-isscc18",
         "li-esscirc22", "su-jssc22", "legallo-natelec23", "wu-jssc23", "yan-isscc22",
         "chen-isscc23", "aimc-cicc21", "nmux-jssc23", "dynaplasia-jssc24",
         "rram4mb-natelec21", "rram8mb-jssc23", "si-jssc21", "yoon-jssc22",
         "rram2mb-natelec20", "xue-jssc20", "twin8t-jssc20", "scalingcim-jssc24",
         "lee-tcasi21", "xiao-tcasii23", "jia-jssc22", "nvdcim-natelec25", "guo-isscc23",
         "tien-isscc26", "yuan-jssc26", "diana-jssc23", "li-esscirc21", "impact-jssc23")
"""Published chips added after the model was written: out-of-sample predictions."""


@pytest.fixture(scope="module")
def pred(validate):
    return validate.prediction_rows()


def test_published_chips_cover_the_required_kinds(validate, pred):
    chips = {r["chip"] for r in pred}
    assert len(chips) >= 8  # issue 13: at least 8 published macros/chips
    nodes = {r["node_nm"] for r in pred}
    assert min(nodes) <= 7 and max(nodes) >= 130
    kinds = {cimsim.load_chip(validate.PUBLISHED_DIR / f"{c}.toml").adc.kind.value
             for c in chips}
    assert {"digital", "sar", "flash", "cco", "integrate_fire", "tdc"} <= kinds
    cells = {cimsim.load_chip(validate.PUBLISHED_DIR / f"{c}.toml").device.cell.value
             for c in chips}
    assert {"sram", "rram", "mram"} <= cells  # SRAM, RRAM/PCM and another NVM (MRAM)
    with_area = 0
    for chip in chips:  # every chip an energy-efficiency row; an area row where published
        metrics = {r["metric"].removeprefix("1b-") for r in pred
                   if r["chip"] == chip and r["nominal"]}
        assert "TOPS/W" in metrics and metrics <= {"TOPS/W", "TOPS/mm2"}, chip
        with_area += "TOPS/mm2" in metrics
    assert with_area >= 8  # issue 13: 8 chips with both published figures


def test_added_chips_are_in_the_table_and_load_by_name(validate, pred):
    published = cimsim.list_presets(published=True)
    for chip in ADDED:
        assert f"published/{chip}" in published
        assert cimsim.load_chip(f"published/{chip}") == cimsim.load_chip(
            validate.PUBLISHED_DIR / f"{chip}.toml")
        assert any(r["chip"] == chip for r in pred), chip
    doc = validate.DOC.read_text()
    assert all(f"**{chip}** (added" in doc for chip in ADDED)


def test_sweep_points_change_only_what_the_publication_changes(validate, pred):
    # Yu's pair differs only in the ADC's bits; the NTHU pair only in its precisions
    yu = cimsim.load_chip(validate.PUBLISHED_DIR / "yu-cicc20.toml")
    yu5 = validate.at_point(yu, {"adc": dict(bits=5)})
    assert yu5 == yu.replace(adc=yu.adc.replace(bits=5))
    rows = {(r["chip"], r["point"]): r for r in pred if r["metric"] == "TOPS/W"}
    # more converter bits never make the same macro more efficient
    assert rows["yu-cicc20", "5-b ADC"]["estimate"] < rows["yu-cicc20", "1-b ADC"]["estimate"]
    # binary is 64 conversions per MAC cheaper than 8b/8b on a bit-serial, bit-sliced macro
    ratio = rows["chiu-jssc20", "binary"]["estimate"] / rows["chiu-jssc20", "8b/8b"]["estimate"]
    assert 32 < ratio < 128
    # the bit-plane drive changes only the drive and the one-shot input against the baseline
    bscha = cimsim.load_chip(validate.PUBLISHED_DIR / "bscha-arxiv26.toml")
    base, built = (validate.at_point(bscha, c) for c in (validate._BSCHA_747,
                                                         validate._BSCHA_747_BP))
    assert built == base.replace(dac=base.dac.replace(bits=None),
                                 tech=base.tech.replace(input_drive="bit_planes"))


def test_every_row_within_2x_except_the_documented_ones(validate, pred):
    outside = {(r["chip"], r["point"], r["metric"]): r["ratio"] for r in pred
               if not r["within"]}
    assert set(outside) == set(KNOWN_OUTSIDE_2X), (
        "rows outside 2x changed; update docs/validation.md (python "
        f"scripts/validate_presets.py) and KNOWN_OUTSIDE_2X: {outside}")
    for key, ratio in outside.items():
        assert ratio == pytest.approx(KNOWN_OUTSIDE_2X[key], rel=0.02), key
    for r in pred:
        if (r["chip"], r["point"], r["metric"]) not in KNOWN_OUTSIDE_2X:
            assert 1 / validate.PREDICTION_FACTOR <= r["ratio"] <= validate.PREDICTION_FACTOR


def test_fujiwara_5nm_rows_are_within_2x(validate, pred):
    # the 5-nm all-digital macro (a node below the original 7..130 nm tables): both rows
    # predicted within 2x (0.77x TOPS/W, 0.60x TOPS/mm^2 at the time of writing; 0.80x TOPS/W
    # once its word line gated one weight set's cells, not its 4 stored sets)
    rows = {r["metric"]: r for r in pred if r["chip"] == "fujiwara-isscc22"}
    assert set(rows) == {"TOPS/W", "TOPS/mm2"}
    assert rows["TOPS/W"]["node_nm"] == 5.0
    assert rows["TOPS/W"]["ratio"] == pytest.approx(0.80, abs=0.02)
    assert rows["TOPS/mm2"]["ratio"] == pytest.approx(0.60, abs=0.02)


# Colonnade (Kim et al., JSSC 2021), a full adder per bit-cell (tech.digital_column = 'ripple'),
# added as a held-out chip: predicted / published, every row pinned (the word line over the
# bit-cell and its full adder: docs/validation.md says what the narrower first pitch gave)
COLONNADE = {
    ("0.8 V, 100 MHz, 1b/1b", "TOPS/W"): 1.70, ("0.7 V, 100 MHz, 1b/1b", "TOPS/W"): 1.39,
    ("0.6 V, 100 MHz, 1b/1b", "TOPS/W"): 0.75, ("0.8 V, 100 MHz, 1b/8b", "TOPS/W"): 1.88,
    ("0.7 V, 100 MHz, 1b/8b", "TOPS/W"): 1.56, ("0.6 V, 100 MHz, 1b/8b", "TOPS/W"): 0.85,
    ("1b/1b, max clock", "TOPS/mm2"): 0.87,
}


def _pinned(pred: list[dict], chip: str, pins: dict, node_nm: float) -> dict:
    """``chip``'s prediction rows, keyed as ``pins`` is ((point, metric), or the point alone),
    each asserted at its pinned predicted / published ratio and at the chip's node."""
    rows = {(r["point"], r["metric"]): r for r in pred if r["chip"] == chip}
    if all(isinstance(k, str) for k in pins):
        rows = {point: r for (point, _), r in rows.items()}
    assert set(rows) == set(pins)
    for key, ratio in pins.items():
        assert rows[key]["ratio"] == pytest.approx(ratio, abs=0.01), key
        assert rows[key]["node_nm"] == node_nm
    return rows


def test_colonnade_rows_are_pinned_and_change_only_the_published_inputs(validate, pred):
    rows = _pinned(pred, "colonnade-jssc21", COLONNADE, 65.0)
    col = cimsim.load_chip(validate.PUBLISHED_DIR / "colonnade-jssc21.toml")
    assert col.tech.digital_column.value == "ripple"
    assert validate.at_point(col, validate._col_point(8, 0.6)) == col.replace(
        weight_bits=8, weight_encoding="twos_complement",
        tech=col.tech.replace(vdd_v=0.6, v_read_v=0.6))
    # the published energy falls ~4x from 0.8 to 0.6 V; the prediction follows (V/0.8 V)^2
    hi, lo = (rows[f"{v} V, 100 MHz, 1b/1b", "TOPS/W"]["estimate"] for v in ("0.8", "0.6"))
    assert lo / hi == pytest.approx((0.8 / 0.6) ** 2, rel=0.01)
    # more weight bits: more adders per MAC (w + 7 columns per weight), less efficient
    assert rows["0.8 V, 100 MHz, 1b/8b", "TOPS/W"]["estimate"] < hi


def test_geometric_mean_error_is_the_documented_one(validate, pred):
    gm = validate.geomean_factor(pred)
    # 2.48 before Li's, Su's and Le Gallo's chips, 3.01 before Wu's, Yan's and Chen's, 3.14
    # before the 22-nm analog multiplier, the 28-nm multiplexed macro and DynaPlasia, 3.24
    # before DynaPlasia's cells were eDRAM, 3.23 before the two 22-nm ReRAM macros, 3.34
    # before the slice-weighting mirrors copied the SRAM bit line's charge, not V_read G over
    # the window (aimc-cicc21's TOPS/W 0.0339x -> 0.653x), 3.22 before a multi-bit cell's
    # word line crossed all its bit-cells, 3.25 before the 55-nm ReRAM macro, the twin-8T
    # macro and Scaling-CIM, 3.29 before Lee's Dual-SRAM macro, Xiao's 9T1C macro and Jia's
    # 16-nm accelerator, 3.34 before the 40-nm STT-MRAM digital macro, 3.41 before the two
    # floating-point macros, 3.39 before the digital macro with bit-parallel inputs, 3.32
    # before DIANA's AIMC core, Li's 2021 RRAM macro and IMPACT's CIM-SRAM, 3.34 before the
    # time-domain macros' readers were stated as TDCs (adc.kind = 'tdc'), 3.12 before a
    # resistive read's charge was drawn from the supply (V_dd Q, not V_read Q)
    assert gm == pytest.approx(3.01, abs=0.02)
    doc = validate.DOC.read_text()
    assert f"geometric-mean error {gm:.2f}x" in doc
    for r in pred:
        assert f"{r['estimate']:.4g}" in doc, (r["chip"], r["point"], r["metric"])


# the dual-7T SRAM zero-skipping macro (Yu et al., IEEE TCAS-I 2024), written from its abstract
# before any estimate: predicted / published at its three published weight levels, every row
# pinned (docs/validation.md says why the multi-level rows are off)
YU_TCASI24 = {"3-level w": 1.88, "7-level w": 3.61, "15-level w": 6.80}


def test_yu_tcasi24_rows_are_pinned_and_change_only_the_weight_levels(validate, pred):
    rows = _pinned(pred, "yu-tcasi24", YU_TCASI24, 65.0)
    assert {r["metric"] for r in rows.values()} == {"TOPS/W"}
    assert rows["3-level w"]["within"]
    chip = cimsim.load_chip(validate.PUBLISHED_DIR / "yu-tcasi24.toml")
    assert chip.tech.cell_kind.value == "sram_7t" and chip.array.n_rows == 384
    assert chip.weight_encoding.value == "differential" and chip.weight_bits == 2
    levels = {}
    for _, point, changes, *_ in validate._YU_TCASI24:
        at = validate.at_point(chip, changes)
        assert at == chip.replace(weight_bits=at.weight_bits), point  # only the levels change
        lo, hi = encoding.weight_range(at)
        levels[point] = hi - lo + 1
    assert levels == {"3-level w": 3, "7-level w": 7, "15-level w": 15}
    # one column pair per magnitude bit: 1, 2, 3 pairs read and converted per weight, so the
    # predicted efficiency falls about 2x and 3x (the published one: 3.8x and 10.8x)
    e = {p: r["estimate"] for p, r in rows.items()}
    assert e["3-level w"] / e["7-level w"] == pytest.approx(2.0, rel=0.05)
    assert e["3-level w"] / e["15-level w"] == pytest.approx(3.0, rel=0.05)


# IMAGINE (Kneip et al., IEEE TCAS-AI 2025), written from its abstract: predicted / published
# at its two published precisions, every row pinned
KNEIP = {("8b/8b/8b", "TOPS/W"): 1.06, ("8b/8b/8b", "TOPS/mm2"): 0.33,
         ("1b/1b/1b", "TOPS/W"): 1.35, ("1b/1b/1b", "TOPS/mm2"): 2.37}


def test_kneip_rows_are_pinned_and_change_only_the_precisions(validate, pred):
    rows = _pinned(pred, "kneip-tcasai25", KNEIP, 22.0)
    assert rows["8b/8b/8b", "TOPS/W"]["within"] and rows["1b/1b/1b", "TOPS/W"]["within"]
    chip = cimsim.load_chip(validate.PUBLISHED_DIR / "kneip-tcasai25.toml")
    assert (chip.array.n_rows, chip.array.n_cols) == (1152, 256)
    assert chip.tech.input_drive.value == "bit_planes" and chip.array.slice_readout.value == (
        "analog")
    one = validate.at_point(chip, validate._KNEIP_1B)
    assert one == chip.replace(input_bits=1, weight_bits=1, weight_encoding="binary",
                               adc=chip.adc.replace(bits=1))
    # the converter's range (calibrated: the abstract's adaptive swing, set after the first
    # estimate) moves no cost figure
    full = chip.replace(adc=chip.adc.replace(range_policy="full_scale"))
    assert validate.datasheet_at(full)["tops_per_w"] == rows["8b/8b/8b", "TOPS/W"]["estimate"]
    # 64 1-b products per 8-b MAC: the 1-b point is the more efficient
    assert rows["1b/1b/1b", "TOPS/W"]["estimate"] > 32 * rows["8b/8b/8b", "TOPS/W"]["estimate"]


# Three macros written from their abstracts before any estimate (C3SRAM and XNOR-SRAM, IEEE
# JSSC 2020; Khwa et al., ISSCC 2018): predicted / published, every row pinned
HELDOUT2 = {
    "c3sram-jssc20": ({("1b/1b", "TOPS/W"): 0.50, ("1b/1b", "TOPS/mm2"): 0.16}, 65.0),
    "xnorsram-jssc20": ({("0.6 V, ternary", "TOPS/W"): 1.04}, 65.0),
    "khwa-isscc18": ({("0.8 V (default)", "TOPS/W"): 23.91}, 65.0),
}


@pytest.mark.parametrize("name", list(HELDOUT2))
def test_heldout2_rows_are_pinned_at_their_nominal_toml(validate, pred, name):
    pins, node = HELDOUT2[name]
    rows = _pinned(pred, name, pins, node)
    assert all(r["nominal"] for r in rows.values())  # only the TOML as written


def test_heldout2_chips_state_what_their_abstracts_say(validate, pred):
    c3, xs, kh = (cimsim.load_chip(validate.PUBLISHED_DIR / f"{n}.toml") for n in HELDOUT2)
    # C3SRAM: binary, charge domain, one converter per column, no window stated
    assert (c3.weight_bits, c3.input_bits, c3.weight_encoding.value) == (1, 1, "binary")
    assert c3.tech.compute_domain.value == "charge" and c3.array.cols_per_adc == 1
    assert not c3.tech.window_stated
    # XNOR-SRAM: 256 rows at once, ternary weights as a differential pair read in analog,
    # an 11-level flash (4 b hold 11 levels, 3 b do not), at the published 0.6 V
    assert xs.array.n_rows == 256 and xs.tech.vdd_v == 0.6
    lo, hi = encoding.weight_range(xs)
    assert (lo, hi) == (-1, 1) and xs.differential_readout.value == "analog"
    assert xs.adc.kind.value == "flash" and 2 ** (xs.adc.bits - 1) < 11 <= 2 ** xs.adc.bits
    # Khwa: 4 Kb of 6T cells, 0/1 inputs x +-1 weights, the stated 2.3-ns product-sum
    assert kh.array.n_rows * kh.array.n_cols == 4096 and kh.tech.cell_kind.value == "sram_6t"
    assert kh.tech.window_stated and kh.tech.t_read_ns == 2.3
    row = next(r for r in pred if r["chip"] == "khwa-isscc18")
    assert row["sheet"]["step"]["step_ns"] == pytest.approx(2.3)  # the stated window rules


def test_heldout_window_does_not_refit_the_constant(validate):
    """The held-out chips' stated windows enter ``in_window_fit`` but not the fitted set:
    adding a chip must not move the rows that predict their window."""
    from cimsim.cost import settling

    doc = validate.DOC.read_text()
    for name, text in (("khwa-isscc18", "2.3 ns vs 0.19 ns"), ("wu-jssc23", "0.825 ns vs 0.43 ns"),
                       ("chen-isscc23", "2.75 ns vs 0.19 ns"),
                       ("aimc-cicc21", "44.444 ns vs 5.4 ns"),
                       ("nmux-jssc23", "7.2 ns vs 2.4 ns"),
                       ("rram4mb-natelec21", "1.9 ns vs 1.7 ns"),
                       ("rram8mb-jssc23", "1.8 ns vs 1.7 ns"),
                       ("rram2mb-natelec20", "9.2 ns vs 1.7 ns"),
                       ("xue-jssc20", "7.3 ns vs 1.7 ns")):
        chip = cimsim.load_chip(validate.PUBLISHED_DIR / f"{name}.toml")
        assert settling.in_window_fit(chip) and name not in settling.WINDOW_FIT_CHIPS
        assert f"{name} {text}" in doc


# Three more macros written from their abstracts before any estimate (Li et al., ESSCIRC 2022,
# 40-nm RRAM; Su et al., the 28-nm two-way transpose 6T SRAM macro; Le Gallo et al., Nature
# Electronics 2023, the 14-nm 64-core PCM chip): predicted / published, every row pinned
HELDOUT3 = {
    "li-esscirc22": ({("0.7 V", "TOPS/W"): 4.95, ("0.7 V", "TOPS/mm2"): 350.74,
                      ("1.0 V", "TOPS/W"): 3.61, ("1.0 V", "TOPS/mm2"): 221.04}, 40.0),
    "su-jssc22": ({("8b/8b", "TOPS/W"): 0.36, ("2b/4b", "TOPS/W"): 0.33}, 28.0),
    "legallo-natelec23": ({("one-phase, 8b/8b", "TOPS/W"): 2.73}, 14.0),
}


def test_heldout3_points_change_only_what_the_publication_changes(validate, pred):
    li, su, lg = (cimsim.load_chip(validate.PUBLISHED_DIR / f"{n}.toml") for n in HELDOUT3)
    # Li: 1b x 1b RRAM at the published 0.7 V; the 1.0-V point changes the supply alone
    assert (li.input_bits, li.weight_bits, li.tech.cell_kind.value) == (1, 1, "rram_1t1r")
    assert li.tech.vdd_v == 0.7 and not li.tech.window_stated
    assert validate.at_point(li, validate._LI_10V) == li.replace(
        tech=li.tech.replace(vdd_v=1.0))
    # Su: 28-nm 64-kb of 6T cells, 16 rows per read (2^(20 - 8 - 8)), read exactly by 5 b;
    # the 2b/4b point changes the precisions alone
    assert su.array.n_rows * su.array.n_cols == 64 * 1024 and su.tech.cell_kind.value == "sram_6t"
    assert su.array.rows_per_conversion == 2 ** (20 - 8 - 8) == 2 ** (10 - 2 - 4)
    assert 2 ** (su.adc.bits - 1) < su.array.rows_per_conversion + 1 <= 2 ** su.adc.bits
    assert validate.at_point(su, validate._SU_2B4B) == su.replace(input_bits=2, weight_bits=4)
    # Le Gallo: 64 cores of HERMES's 256 x 256, priced at the chip scope (its figure is the
    # chip's): the chip's TOPS are 64 cores' and every core is HERMES's own
    hermes = cimsim.load_chip(validate.PUBLISHED_DIR / "hermes-jssc22.toml")
    assert lg.array.n_arrays == 64 and validate.PREDICTION_SCOPE == {
        "legallo-natelec23": "chip", "dynaplasia-jssc24": "chip", "scalingcim-jssc24": "chip"}
    assert lg.replace(name=hermes.name, description=hermes.description, source=hermes.source,
                      array=lg.array.replace(n_tiles=1)) == hermes
    row = next(r for r in pred if r["chip"] == "legallo-natelec23")
    core = next(r for r in pred if r["chip"] == "hermes-jssc22" and r["metric"] == "TOPS/mm2")
    assert row["sheet"]["scope"] == "chip"
    assert row["sheet"]["tops"] == pytest.approx(64 * core["sheet"]["tops"])
    # the published one-phase throughput, not a row: within 5 %
    assert row["sheet"]["tops"] / 63.1 == pytest.approx(1.04, abs=0.01)


def test_heldout3_su_row_group_does_not_set_the_row(validate, pred):
    """The 16-row reading of Su's output widths is cimsim's [der]: reading all 256 rows with an
    exact 9-b SAR prices the same per MAC (the survey's SAR line: energy ~ 2^b per conversion)."""
    su = cimsim.load_chip(validate.PUBLISHED_DIR / "su-jssc22.toml")
    every = su.replace(array=su.array.replace(rows_per_conversion=None),
                       adc=su.adc.replace(bits=9))
    row = next(r for r in pred if r["chip"] == "su-jssc22" and r["point"] == "8b/8b")
    assert validate.datasheet_at(every)["tops_per_w"] == pytest.approx(row["estimate"], rel=1e-3)


# Three more macros written before any estimate (Wu et al., IEEE JSSC 2023 / ISSCC 2022, the
# 28-nm 1-Mb time-domain 6T SRAM macro; Yan et al., ISSCC 2022, the 28-nm dynamic-logic
# digital INT8 macro; Chen et al., ISSCC 2023, the 22-nm delta-sigma SRAM macro; the last two
# organised as ZigZag-IMC reads them): predicted / published, every row pinned
HELDOUT4 = {
    # Wu's reader as cimsim's successive TDC (adc.kind = 'tdc', added after the TOML was
    # written with a 7-b SAR: TOPS/W 0.0623 -> 0.427 and 0.0848 -> 0.582, TOPS/mm2 0.350 ->
    # 0.598 and 0.295 -> 0.504; then 0.466 and 0.635 once the TDC's leakage was not priced,
    # as CMOS logic's is not; then 0.567 and 0.771 once the word line gated the compute
    # cells only, not the 32 stored weight sets' cells, whose footprint it still crosses)
    "wu-jssc23": ({("8b/8b", "TOPS/W"): 0.567, ("8b/8b", "TOPS/mm2"): 0.598,
                   ("4b/4b", "TOPS/W"): 0.771, ("4b/4b", "TOPS/mm2"): 0.504}, 28.0),
    "yan-isscc22": ({("0.9 V, signed INT8", "TOPS/W"): 0.215}, 28.0),
    "chen-isscc23": ({("0.8 V, 8b/8b", "TOPS/W"): 1.40}, 22.0),
}


# Three more written before any estimate: a 22-nm analog SRAM matrix-vector multiplier (CICC
# 2021) and a 28-nm SRAM macro with 2-b input DACs (IEEE JSSC 2023), both as ZigZag-IMC reads
# them, and DynaPlasia (Kim et al., IEEE JSSC 2024), a 28-nm eDRAM processor priced at the
# chip scope: predicted / published, every row pinned
HELDOUT5 = {
    "aimc-cicc21": ({("0.8 V, 7b/2b", "TOPS/W"): 0.653, ("0.8 V, 7b/2b", "TOPS/mm2"): 3.65},
                    22.0),
    "nmux-jssc23": ({("0.9 V, 8b/8b", "TOPS/W"): 0.258}, 28.0),
    # DynaPlasia's cells as eDRAM gain cells (device.cell = 'edram', added after the TOML
    # was written with 'sram': TOPS/W 0.218 -> 0.219, TOPS/mm2 0.70 -> 0.79)
    "dynaplasia-jssc24": ({("4b/5b, chip peak", "TOPS/W"): 0.219,
                           ("4b/5b, chip peak", "TOPS/mm2"): 0.79}, 28.0),
}


# Two 22-nm ReRAM macros with 8-b inputs, written from their abstracts before any estimate
# (Nature Electronics 4, 2021, the 4-Mb binary-ReRAM macro, at its 8b/8b and binary points;
# IEEE JSSC 58(1), 2023, the 8-Mb macro with a time-domain read-out): every row pinned
HELDOUT6 = {
    "rram4mb-natelec21": ({("8b/8b", "TOPS/W"): 1.68, ("binary", "TOPS/W"): 1.56}, 22.0),
    # the 8-Mb macro's reader as cimsim's TDC, the default counter (adc.kind = 'tdc', added
    # after the TOML was written with an 8-b SAR: 0.0082 -> 0.0241)
    "rram8mb-jssc23": ({("8b/8b", "TOPS/W"): 0.0288}, 22.0),
}


# Three more written from their abstracts before any estimate (Si et al., IEEE JSSC 2021, the
# 28-nm 64-kb 6T SRAM macro, at the ends of its precision range; Yoon et al., IEEE JSSC 2022,
# the 40-nm ternary-weight RRAM macro; the 22-nm 2-Mb SLC-ReRAM macro of Nature Electronics
# 2020, at its binary point): every row pinned
HELDOUT7 = {
    "si-jssc21": ({("8b/8b", "TOPS/W"): 0.219, ("4b/4b", "TOPS/W"): 0.147}, 28.0),
    "yoon-jssc22": ({("ternary w, peak", "TOPS/W"): 1.81}, 40.0),
    "rram2mb-natelec20": ({("binary", "TOPS/W"): 1.85}, 22.0),
}


# Three more written from their abstracts before any estimate (the 55-nm 1-Mb ReRAM macro of
# IEEE JSSC 55(1), 2020; Si et al.'s 55-nm twin-8T SRAM unit-macro, IEEE JSSC 55(1), 2020;
# Scaling-CIM, the 28-nm eDRAM accelerator of IEEE JSSC 59(8), 2024): every row pinned
HELDOUT8 = {
    "xue-jssc20": ({("2b/3b/4b", "TOPS/W"): 2.82}, 55.0),
    "twin8t-jssc20": ({("4b/5b/5b", "TOPS/W"): 1.86}, 55.0),
    "scalingcim-jssc24": ({("8b/9b, ResNet-18", "TOPS/W"): 0.0906}, 28.0),
}


# Three charge-domain SRAM chips written from their abstracts before any estimate (Lee et
# al.'s 28-nm Dual-SRAM macro, IEEE TCAS-I 2021, at the ends of its weight sweep; Xiao et al.'s
# 28-nm 9T1C macro, IEEE TCAS-II 2023; Jia et al.'s 16-nm accelerator, IEEE JSSC 2022,
# organised as the group's 2020 macro): every row pinned
HELDOUT9 = {
    "lee-tcasi21": ({("8b w", "TOPS/W"): 1.66, ("2b w", "TOPS/W"): 0.331}, 28.0),
    "xiao-tcasii23": ({("4b/4b, average", "TOPS/W"): 0.0158}, 28.0),
    "jia-jssc22": ({("8b/8b, peak MAC level", "TOPS/W"): 1.34}, 16.0),
}


# A digital macro over 1-b STT-MRAM cells sensed to their bits, written from its abstract
# before any estimate (Nature Electronics 2025, 40 nm, 64 kb), at the ends of its sweep
HELDOUT10 = {
    "nvdcim-natelec25": ({("4b/4b", "TOPS/W"): 0.0626, ("16b/16b", "TOPS/W"): 0.0625}, 40.0),
}


# Two floating-point macros (block-FP inputs) written from what was read of them before any
# estimate: Guo et al.'s 28-nm BF16 6T-SRAM macro (ISSCC 2023, 7.2) and Tien et al.'s 16-nm
# gain-cell macro in MXINT8 (ISSCC 2026, 30.5)
HELDOUT11 = {
    "guo-isscc23": ({("BF16", "TOPS/W"): 0.223, ("BF16", "TOPS/mm2"): 1.44}, 28.0),
    "tien-isscc26": ({("MXINT8", "TOPS/W"): 0.218, ("MXINT8", "TOPS/mm2"): 2.44}, 16.0),
}


# A digital macro with bit-parallel inputs (the whole input per cycle under a digital
# read-out), written from its abstract before any estimate: Yuan et al.'s 28-nm 32-kB digital
# transpose 6T-SRAM macro (IEEE JSSC, in press 2026) in its accurate mode, INT4 and INT8
HELDOUT12 = {
    "yuan-jssc26": ({("INT4", "TOPS/W"): 0.775, ("INT8", "TOPS/W"): 0.822}, 28.0),
}


# Three analog macros written from their abstracts before any estimate: DIANA's 22-nm SRAM
# AIMC core (IEEE JSSC 2023; ternary weights, 7-b DAC inputs, 6-b converters), Li et al.'s
# 40-nm RRAM macro (ESSCIRC 2021) and IMPACT's 22-nm FD-SOI CIM-SRAM at its 1-b peak (2023)
HELDOUT13 = {
    "diana-jssc23": ({("7b/1.5b/6b, peak", "TOPS/W"): 1.25}, 22.0),
    "li-esscirc21": ({("1b/1b, VGG-8", "TOPS/W"): 6.35}, 40.0),
    "impact-jssc23": ({("1b/1b, peak", "TOPS/W"): 0.0813, ("1b/1b, peak", "TOPS/mm2"): 0.423},
                      22.0),
}


HELDOUT = {**HELDOUT3, **HELDOUT4, **HELDOUT5, **HELDOUT6, **HELDOUT7, **HELDOUT8,
           **HELDOUT9, **HELDOUT10, **HELDOUT11, **HELDOUT12, **HELDOUT13}


@pytest.mark.parametrize("name", list(HELDOUT))
def test_heldout_rows_are_pinned(validate, pred, name):
    pins, node = HELDOUT[name]
    _pinned(pred, name, pins, node)


def test_heldout4_chips_state_what_their_sources_say(validate, pred):
    wu, yan, chen = (cimsim.load_chip(validate.PUBLISHED_DIR / f"{n}.toml") for n in HELDOUT4)
    # Wu: 1 Mb of 6T cells, 64 rows summed per read; 1241 GOPS x 6.6 ns / (2 x 64) = 64 8-b
    # outputs per MAC, so 512 weight columns at once and 32 stored sets; 6.6 ns per 8-b MAC
    # over 8 bit-serial reads; the 4b/4b point changes the precisions alone
    outputs = round(1241e9 * 6.6e-9 / (2 * 64))
    assert outputs == 64 and wu.array.n_cols == outputs * wu.weight_bits
    assert wu.array.n_rows * wu.array.n_cols * wu.tech.weight_sets_stored == 1024 * 1024
    assert wu.tech.cell_kind.value == "sram_6t" and wu.tech.window_stated
    assert wu.tech.t_read_ns == pytest.approx(6.6 / wu.input_bits)
    assert 2 ** (wu.adc.bits - 1) < wu.array.n_rows + 1 <= 2 ** wu.adc.bits  # exact 64-row read
    assert wu.adc.bits + wu.input_bits + wu.weight_bits - 1 == 22  # the published 22-b output
    # the recursive TDC the abstract names: one bit resolved per step
    assert (wu.adc.kind.value, wu.adc.tdc_architecture.value) == ("tdc", "successive")
    assert validate.at_point(wu, validate._WU_4B4B) == wu.replace(input_bits=4, weight_bits=4)
    # Yan: signed INT8 on digital adder trees; ZigZag-IMC's organisation holds 32 kb, which at
    # the title's 1.041 Mb/mm^2 is its 0.03 mm^2
    assert (yan.input_bits, yan.weight_bits, yan.adc.kind.value) == (8, 8, "digital")
    bits = (yan.array.n_rows * yan.array.n_cols * yan.tech.weight_sets_stored
            * yan.array.arrays_per_tile)
    assert bits == 32 * 1024 and bits / (1.041 * 2 ** 20) == pytest.approx(0.03, abs=1e-3)
    # Chen: 8b x 8b bit-serial, 3-b converters over a reduced (calibrated) range, 364 MHz
    assert (chen.input_bits, chen.weight_bits, chen.adc.bits) == (8, 8, 3)
    assert chen.adc.range_policy.value == "calibrated" and chen.dac.bits == 1
    assert chen.tech.t_read_ns == pytest.approx(1e3 / 364, abs=0.01)
    # no TOPS/mm^2 row where no throughput density is published
    assert {r["metric"] for r in pred if r["chip"] in ("yan-isscc22", "chen-isscc23")} == {
        "TOPS/W"}


def test_heldout5_chips_state_what_their_sources_say(validate, pred):
    am, nm, dp = (cimsim.load_chip(validate.PUBLISHED_DIR / f"{n}.toml") for n in HELDOUT5)
    rows = {(r["chip"], r["metric"]): r for r in pred if r["chip"] in HELDOUT5}
    # the 22-nm multiplier: 1024 x 1024, 7-b inputs at once, 2-b weights over two columns
    # weighted before one 6-b conversion per output, the 22.5-MHz cycle; the published density
    # is 1024 x 512 MACs per cycle over 1.9425 mm^2 [der], and the stated cycle sets the step
    assert (am.array.n_rows, am.array.n_cols, am.input_bits, am.weight_bits) == (1024, 1024,
                                                                                 7, 2)
    assert am.dac.bits is None and am.array.slice_readout.value == "analog"
    assert am.array.n_cols // am.array.cols_per_adc == 512 and am.adc.bits == 6
    assert am.tech.t_read_ns == pytest.approx(1e3 / 22.5, abs=1e-3) and am.tech.window_stated
    assert rows["aimc-cicc21", "TOPS/mm2"]["published"] == pytest.approx(
        2 * 1024 * 512 * 22.5e6 / 1e12 / 1.9425)
    sa = rows["aimc-cicc21", "TOPS/W"]["sheet"]
    assert sa["step"]["limit"] == "stated_window"
    # the slice-weighting mirrors copy the SRAM bit lines' charge, the cells' own read (at
    # most twice over: binary ratios over r_max = 2 sum to 1.5), not V_read G over the 44-ns
    # window (48x the cells before); without them the rest lands at 1.41x the published
    e = sa["energy_pj_by_component"]
    assert 0 < e["weighting"] < 1.5 * e["cell"]
    rest = 2 / (sum(v for c, v in e.items() if c != "weighting") / sa["ops"])
    assert rest / 1050 == pytest.approx(1.41, abs=0.01)
    # the 28-nm macro: 16 of 512 rows per read, 2-b input planes, 8 weight columns per output,
    # a 5-b converter per 2 columns, 4 banks, the 7.2-ns clock; no throughput: no area row
    assert (nm.array.n_rows, nm.array.rows_per_conversion, nm.dac.bits) == (512, 16, 2)
    assert nm.array.n_cols == 8 * 12 * 2 and nm.array.cols_per_adc == 2
    assert nm.array.arrays_per_tile == 4 and nm.tech.t_read_ns == 7.2 and nm.tech.vdd_v == 0.9
    assert ("nmux-jssc23", "TOPS/mm2") not in rows
    # DynaPlasia: the chip's figures at the chip scope; 9.6 Mb in cimsim's 256 x 256 arrays;
    # sign-magnitude 4b/5b; no window stated; 19.5 TOPS over the 20.25-mm^2 die [der]
    assert dp.array.n_arrays == int(9.6 * 2**20 // (256 * 256)) == 153
    assert (dp.input_bits, dp.weight_bits, dp.weight_encoding.value) == (4, 5, "signed_cell")
    assert not dp.tech.window_stated
    # the abstract's eDRAM, as the default 3T gain cell with its published retention
    assert dp.device.cell.value == "edram" and dp.tech.cell_kind is None
    assert dp.tech.retention_ns is None
    assert rows["dynaplasia-jssc24", "TOPS/W"]["sheet"]["scope"] == "chip"
    assert rows["dynaplasia-jssc24", "TOPS/mm2"]["published"] == pytest.approx(19.5 / 20.25)


def r8_text(validate) -> str:
    """The 8-Mb macro's TOML as written."""
    return (validate.PUBLISHED_DIR / "rram8mb-jssc23.toml").read_text().split("[adc]")[1]


def test_heldout6_chips_state_what_their_sources_say(validate, pred):
    r4, r8 = (cimsim.load_chip(validate.PUBLISHED_DIR / f"{n}.toml") for n in HELDOUT6)
    for chip in (r4, r8):  # 22-nm ReRAM, 8-b inputs and weights, one bit per cell
        assert chip.tech.node_nm == 22.0 and chip.device.cell.value == "rram"
        assert (chip.input_bits, chip.weight_bits, chip.device.bits_per_cell) == (8, 8, 1)
        assert chip.dac.bits == 1 and chip.tech.window_stated
    # the 4-Mb macro: the weighted current-to-voltage stacking read merges an output's 8
    # weight columns before one conversion; 15.2 ns per 8-b dot product over 8 input bits;
    # the binary point changes the precisions and the window (its 5.2-ns latency) alone
    assert r4.array.slice_readout.value == "analog"
    assert r4.array.cols_per_adc == r4.weight_bits
    assert r4.tech.t_read_ns == pytest.approx(15.2 / r4.input_bits)
    assert validate.at_point(r4, validate._RR4_BIN) == r4.replace(
        input_bits=1, weight_bits=1, weight_encoding="binary",
        tech=r4.tech.replace(t_read_ns=5.2))
    # the 8-Mb macro: 8 rows per read from the 19-b output (a 16-b product and 3 bits of
    # accumulation), 14.4 ns per 8-b MAC over 8 input bits, one conversion per weight column
    assert r8.array.rows_per_conversion == 2 ** (19 - 8 - 8)
    assert r8.tech.t_read_ns == pytest.approx(14.4 / r8.input_bits)
    assert r8.array.slice_readout.value == "digital"
    # its time-domain read-out as a TDC, the architecture not stated: cimsim's default
    assert r8.adc.kind.value == "tdc" and "tdc_architecture" not in r8_text(validate)
    # no throughput or area in either abstract: TOPS/W rows only
    assert {r["metric"] for r in pred if r["chip"] in HELDOUT6} == {"TOPS/W"}
    # the 8-Mb row is set by the 8-row reading (docs/validation.md): every row summed per
    # read converts 32x less often and lands far higher
    row = next(r for r in pred if r["chip"] == "rram8mb-jssc23")
    every = validate.datasheet_at(r8.replace(array=r8.array.replace(rows_per_conversion=None)))
    assert every["tops_per_w"] > 10 * row["estimate"]


def test_heldout7_chips_state_what_their_sources_say(validate, pred):
    si, yo, r2 = (cimsim.load_chip(validate.PUBLISHED_DIR / f"{n}.toml") for n in HELDOUT7)
    # Si: 64 kb of 6T cells, one column per weight bit (weight-bitwise MAC), Chiu et al.'s
    # exact reader on every row (256 rows need 9 b); the 4b/4b point changes the precisions
    # alone; the access time is not a window
    assert si.array.n_rows * si.array.n_cols == 64 * 1024 and si.tech.cell_kind.value == "sram_6t"
    assert si.array.slice_readout.value == "digital" and si.array.cols_per_adc == 1
    assert si.array.rows_per_conversion is None
    assert 2 ** (si.adc.bits - 1) < si.array.n_rows + 1 <= 2 ** si.adc.bits
    assert not si.tech.window_stated
    assert validate.at_point(si, validate._SI_4B4B) == si.replace(input_bits=4, weight_bits=4)
    # Yoon: 256 x 256 RRAM at 40 nm, one cell per ternary weight ({-1, 0, +1}); no window
    assert (yo.array.n_rows, yo.array.n_cols, yo.tech.node_nm) == (256, 256, 40.0)
    assert yo.device.cell.value == "rram" and yo.device.bits_per_cell == 1
    assert encoding.weight_range(yo) == (-1, 1) and yo.weight_encoding.value == "signed_cell"
    assert not yo.tech.window_stated
    # the 2-Mb macro: binary SLC ReRAM, the binary dot product's 9.2-ns latency the window
    assert (r2.input_bits, r2.weight_bits, r2.weight_encoding.value) == (1, 1, "binary")
    assert r2.tech.window_stated and r2.tech.t_read_ns == 9.2
    # no throughput or area in any of the three abstracts: TOPS/W rows only
    assert {r["metric"] for r in pred if r["chip"] in HELDOUT7} == {"TOPS/W"}


def test_heldout8_chips_state_what_their_sources_say(validate, pred):
    xue, t8, sc = (cimsim.load_chip(validate.PUBLISHED_DIR / f"{n}.toml") for n in HELDOUT8)
    # the 1-Mb ReRAM macro: 2-b serial inputs, 3-b signed weights as a positive and a negative
    # part weighted and subtracted in current before one 4-b read per output; 14.6 ns per MAC
    # over 2 input bits
    assert (xue.input_bits, xue.weight_bits, xue.adc.bits, xue.dac.bits) == (2, 3, 4, 1)
    assert xue.weight_encoding.value == "differential" and xue.tech.node_nm == 55.0
    assert xue.array.slice_readout.value == "analog"
    assert xue.differential_readout.value == "analog"
    assert encoding.conversion_kinds(xue).n_conversions == 1  # one read per output
    assert xue.array.cols_per_adc == 2 * (xue.weight_bits - 1)  # an output's columns
    assert xue.tech.window_stated and xue.tech.t_read_ns == pytest.approx(14.6 / 2)
    # the twin-8T unit-macro: 64 x 60 b at 55 nm, 4-b inputs x 5-b two's-complement weights
    # weighted in the array, a 5-b reader per weight; the access time is not a window
    assert (t8.array.n_rows, t8.array.n_cols, t8.tech.node_nm) == (64, 60, 55.0)
    assert (t8.input_bits, t8.weight_bits, t8.adc.bits) == (4, 5, 5)
    assert t8.array.cols_per_adc == t8.weight_bits and t8.tech.cell_kind.value == "sram_8t"
    assert not t8.tech.window_stated
    # Scaling-CIM: the chip's figure at the chip scope; 800 kb in cimsim's 256 x 256 arrays;
    # '8-9 b' as 8-b inputs and 9-b sign-magnitude weights; eDRAM cells; no window stated
    assert sc.array.n_arrays == 800 * 1024 // (256 * 256) == 12
    assert (sc.input_bits, sc.weight_bits, sc.weight_encoding.value) == (8, 9, "signed_cell")
    assert sc.device.cell.value == "edram" and not sc.tech.window_stated
    rows = {r["chip"]: r for r in pred if r["chip"] in HELDOUT8}
    assert rows["scalingcim-jssc24"]["sheet"]["scope"] == "chip"
    # no throughput or area in any of the three abstracts: TOPS/W rows only
    assert {r["metric"] for r in pred if r["chip"] in HELDOUT8} == {"TOPS/W"}


def test_heldout9_chips_state_what_their_sources_say(validate, pred):
    lee, xiao, jia22 = (cimsim.load_chip(validate.PUBLISHED_DIR / f"{n}.toml") for n in HELDOUT9)
    # Lee: 16 kb at 28 nm, charge domain, signed weights whose bit columns are summed in
    # analog before one read per 8-b weight; the 2-b point changes the weight bits alone
    assert lee.array.n_rows * lee.array.n_cols == 16 * 1024 and lee.tech.node_nm == 28.0
    assert lee.tech.compute_domain.value == "charge" and lee.array.slice_readout.value == "analog"
    assert lee.weight_encoding.value == "twos_complement" and lee.weight_bits == 8
    assert encoding.conversion_kinds(lee).n_conversions == 1  # one read per weight
    assert validate.at_point(lee, validate._LEE21_2BW) == lee.replace(weight_bits=2)
    # Xiao: 32 Kb at 28 nm, 4b x 4b, charge domain, a weight's 4 columns merged before a
    # flash read; the flash's bits unstated: cimsim's default
    assert xiao.array.n_rows * xiao.array.n_cols == 32 * 1024 and xiao.tech.node_nm == 28.0
    assert (xiao.input_bits, xiao.weight_bits, xiao.adc.kind.value) == (4, 4, "flash")
    assert xiao.adc.bits == ADCConfig().bits
    assert xiao.tech.compute_domain.value == "charge"
    assert encoding.conversion_kinds(xiao).n_conversions == 1
    # Jia 2022: 16 nm, 8b/8b, organised as the group's 2020 macro (array, cell, capacitor,
    # converter per column, bit-serial inputs), at cimsim's default supply
    jia20 = cimsim.load_chip(validate.PUBLISHED_DIR / "jia-jssc20.toml")
    assert (jia22.input_bits, jia22.weight_bits, jia22.tech.node_nm) == (8, 8, 16.0)
    for part in ("array", "dac", "adc"):
        assert getattr(jia22, part) == getattr(jia20, part), part
    assert (jia22.tech.cell_kind, jia22.tech.cap_unit_ff, jia22.tech.compute_domain) == (
        jia20.tech.cell_kind, jia20.tech.cap_unit_ff, jia20.tech.compute_domain)
    assert jia22.tech.vdd_v == 0.8 and not jia22.tech.window_stated
    # none of the three windows is stated; no area in any abstract: TOPS/W rows only
    assert not (lee.tech.window_stated or xiao.tech.window_stated)
    assert {r["metric"] for r in pred if r["chip"] in HELDOUT9} == {"TOPS/W"}


def test_heldout10_chip_states_what_its_source_says(validate, pred):
    nv = cimsim.load_chip(validate.PUBLISHED_DIR / "nvdcim-natelec25.toml")
    # 64 kb of 1-b MTJ cells at 40 nm, sensed to their bits into adder trees, 4b/4b; the
    # 16b/16b point changes the input and weight bits alone
    assert nv.array.n_rows * nv.array.n_cols == 64 * 1024 and nv.tech.node_nm == 40.0
    assert (nv.device.cell.value, nv.device.bits_per_cell, nv.adc.kind.value) == (
        "mram", 1, "digital")
    assert (nv.input_bits, nv.weight_bits, nv.dac_bits) == (4, 4, 1)
    assert validate.at_point(nv, validate._NVDCIM_16B) == nv.replace(weight_bits=16,
                                                                     input_bits=16)
    # the window per input bit is derived from the published latencies: 29.6 ns / 16 bits
    assert nv.tech.t_read_ns == pytest.approx(29.6 / 16) == pytest.approx(7.4 / 4)
    # no throughput or area in the abstract: TOPS/W rows only
    assert {r["metric"] for r in pred if r["chip"] in HELDOUT10} == {"TOPS/W"}


def test_heldout11_chips_state_what_their_sources_say(validate, pred):
    guo, tien = (cimsim.load_chip(validate.PUBLISHED_DIR / f"{n}.toml") for n in HELDOUT11)
    # Guo: 28 nm, 64 kb of 6T bit-cells, digital read-out, BF16 as 9-b signed mantissas on a
    # shared 8-b exponent (block-FP inputs), bit-serial, at cimsim's default supply and clock
    assert guo.array.n_rows * guo.array.n_cols == 64 * 1024 and guo.tech.node_nm == 28.0
    assert (guo.device.cell.value, guo.tech.cell_kind.value, guo.adc.kind.value) == (
        "sram", "sram_6t", "digital")
    assert (guo.input_bits, guo.weight_bits, guo.dac_bits) == (9, 9, 1)
    # Tien: 16 nm, 72 kb of gain cells, MXINT8 (8-b mantissas, E8M0's 8-b exponent)
    assert tien.array.n_rows * tien.array.n_cols == 72 * 1024 and tien.tech.node_nm == 16.0
    assert (tien.device.cell.value, tien.adc.kind.value) == ("edram", "digital")
    assert (tien.input_bits, tien.weight_bits, tien.dac_bits) == (8, 8, 1)
    for chip in (guo, tien):
        assert chip.quant.act_format.value == "block_fp"
        assert chip.quant.act_exponent_bits == 8
        assert chip.tech.vdd_v == 0.8 and chip.tech.clock_mhz == 1000.0
    # both publish an energy and an area figure; the macro holds the pre-alignment
    rows = [r for r in pred if r["chip"] in HELDOUT11]
    assert {r["metric"] for r in rows} == {"TOPS/W", "TOPS/mm2"}
    assert all(r["sheet"]["energy_pj_by_component"]["block_fp"] > 0 for r in rows)


def test_heldout12_chip_states_what_its_source_says(validate, pred):
    yuan = cimsim.load_chip(validate.PUBLISHED_DIR / "yuan-jssc26.toml")
    # 28 nm, 32 kB of 6T bit-cells (four of cimsim's 256 x 256 arrays), a digital read-out
    # taking the whole input per cycle (bit-parallel), INT4 at cimsim's supply and clock
    arr = yuan.array
    assert arr.n_rows * arr.n_cols * arr.n_tiles * arr.arrays_per_tile == 32 * 1024 * 8
    assert (yuan.device.cell.value, yuan.tech.cell_kind.value, yuan.adc.kind.value) == (
        "sram", "sram_6t", "digital")
    assert (yuan.input_bits, yuan.weight_bits, yuan.dac_bits, yuan.n_planes) == (4, 4, 4, 1)
    assert yuan.tech.node_nm == 28.0 and yuan.tech.vdd_v == 0.8
    # the adder tree exactly as wide as its sums at either point
    from cimsim.config import adder_tree_bits

    int8 = validate.at_point(yuan, validate._YUAN_INT8)
    assert int8 == yuan.replace(weight_bits=8, input_bits=8,
                                adc=yuan.adc.replace(bits=17))
    for chip in (yuan, int8):
        assert chip.adc.bits == adder_tree_bits(chip.array.rows_per_group, chip.dac_bits)
    # no throughput or area in the abstract: TOPS/W rows only
    assert {r["metric"] for r in pred if r["chip"] in HELDOUT12} == {"TOPS/W"}


def test_heldout13_chips_state_what_their_sources_say(validate, pred):
    diana, li21, imp = (cimsim.load_chip(validate.PUBLISHED_DIR / f"{n}.toml")
                        for n in HELDOUT13)
    # DIANA's AIMC core: 22 nm, 1152 rows x 512 ternary weights (a differential pair of binary
    # cells each, read as one 6-b conversion), 7-b inputs all at once (I/W/O = 7/1.5/6)
    assert (diana.tech.node_nm, diana.array.n_rows, diana.input_bits) == (22.0, 1152, 7)
    assert diana.weight_encoding.value == "ternary" and diana.weight_bits == 1
    assert encoding.weight_range(diana) == (-1, 1)
    assert diana.array.n_cols // diana.array.cols_per_adc == 512
    assert encoding.conversion_kinds(diana).n_conversions == 1  # one read per weight
    assert diana.dac.bits is None and (diana.adc.kind.value, diana.adc.bits) == ("sar", 6)
    # Li 2021: 40-nm RRAM, 1b x 1b, on li-esscirc22's defaults but cimsim's 0.8-V supply
    li22 = cimsim.load_chip(validate.PUBLISHED_DIR / "li-esscirc22.toml")
    assert li21.replace(name=li22.name, description=li22.description, source=li22.source,
                        tech=li21.tech.replace(vdd_v=li22.tech.vdd_v)) == li22
    assert li21.tech.vdd_v == 0.8
    # IMPACT: 22-nm current-based SRAM, the 1-b peak, 72 kB as nine 256 x 256 arrays
    assert (imp.tech.node_nm, imp.input_bits, imp.weight_bits) == (22.0, 1, 1)
    assert imp.tech.compute_domain.value == "current" and imp.device.cell.value == "sram"
    arr = imp.array
    assert arr.n_rows * arr.n_cols * arr.n_tiles * arr.arrays_per_tile == 72 * 1024 * 8
    # no window stated in any of the three; an area row for IMPACT only
    assert not any(c.tech.window_stated for c in (diana, li21, imp))
    metrics = {(r["chip"], r["metric"]) for r in pred if r["chip"] in HELDOUT13}
    assert metrics == {("diana-jssc23", "TOPS/W"), ("li-esscirc21", "TOPS/W"),
                       ("impact-jssc23", "TOPS/W"), ("impact-jssc23", "TOPS/mm2")}

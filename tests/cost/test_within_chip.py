"""Within a chip: how the predictions move between a publication's own operating points.

docs/validation.md's section "Within a chip: published sweeps" sets each chip's later points
against its first, from the prediction rows (scripts/validate_presets.py,
``within_chip_pairs``). Every pair's *miss* (predicted ratio / published ratio) is pinned here
at its present value, with the tolerance tests/cost/test_prediction.py pins the rows outside 2x
with, so that a change that moves a sweep shows up here and in the regenerated page.
"""

from __future__ import annotations

import math

import pytest

# (chip, metric, later point) -> (miss against the chip's first point, kind of change)
WITHIN_CHIP = {
    ("jia-jssc20", "1b-TOPS/W", "1.2 V"): (1.05, "supply"),
    ("jia-jssc20", "1b-TOPS/mm2", "1.2 V"): (1.00, "supply"),
    ("wang-vlsi22", "TOPS/W", "1.1 V"): (0.838, "supply"),
    ("wang-vlsi22", "TOPS/mm2", "1.1 V"): (0.603, "supply"),
    ("sinangil-jssc21", "TOPS/W", "1.0 V"): (0.700, "supply"),
    ("sinangil-jssc21", "TOPS/mm2", "1.0 V"): (0.999, "supply"),
    ("yu-cicc20", "TOPS/W", "5-b ADC"): (13.7, "precision/bits"),
    ("chiu-jssc20", "TOPS/W", "binary"): (0.957, "precision/bits"),
    ("bscha-arxiv26", "TOPS/W", "7/4/7 b"): (2.50, "precision/bits"),
    ("bscha-arxiv26", "TOPS/W", "7/4/7 b, BSCHA"): (4.36, "other"),
    ("bscha-arxiv26", "TOPS/mm2", "7/4/7 b"): (5.13, "precision/bits"),
    ("bscha-arxiv26", "TOPS/mm2", "7/4/7 b, BSCHA"): (5.39, "other"),
    ("colonnade-jssc21", "TOPS/W", "0.7 V, 100 MHz, 1b/1b"): (0.818, "supply"),
    ("colonnade-jssc21", "TOPS/W", "0.6 V, 100 MHz, 1b/1b"): (0.445, "supply"),
    ("colonnade-jssc21", "TOPS/W", "0.8 V, 100 MHz, 1b/8b"): (1.11, "precision/bits"),
    ("colonnade-jssc21", "TOPS/W", "0.7 V, 100 MHz, 1b/8b"): (0.920, "other"),
    ("colonnade-jssc21", "TOPS/W", "0.6 V, 100 MHz, 1b/8b"): (0.502, "other"),
    ("yu-tcasi24", "TOPS/W", "7-level w"): (1.92, "precision/bits"),
    ("yu-tcasi24", "TOPS/W", "15-level w"): (3.62, "precision/bits"),
    ("kneip-tcasai25", "TOPS/W", "1b/1b/1b"): (1.27, "precision/bits"),
    ("kneip-tcasai25", "TOPS/mm2", "1b/1b/1b"): (7.21, "precision/bits"),
    ("li-esscirc22", "TOPS/W", "1.0 V"): (0.729, "supply"),
    ("li-esscirc22", "TOPS/mm2", "1.0 V"): (0.630, "supply"),
    ("su-jssc22", "TOPS/W", "2b/4b"): (0.916, "precision/bits"),
    ("wu-jssc23", "TOPS/W", "4b/4b"): (1.36, "precision/bits"),
    ("wu-jssc23", "TOPS/mm2", "4b/4b"): (0.843, "precision/bits"),
    ("rram4mb-natelec21", "TOPS/W", "binary"): (0.932, "precision/bits"),
    ("si-jssc21", "TOPS/W", "4b/4b"): (0.673, "precision/bits"),
    ("lee-tcasi21", "TOPS/W", "2b w"): (0.200, "precision/bits"),
    ("nvdcim-natelec25", "TOPS/W", "16b/16b"): (0.999, "precision/bits"),
    ("yuan-jssc26", "TOPS/W", "INT8"): (1.06, "precision/bits"),
}


@pytest.fixture(scope="module")
def pred(validate):
    return validate.prediction_rows()


@pytest.fixture(scope="module")
def pairs(validate, pred):
    return validate.within_chip_pairs(pred)


def test_every_sweep_is_a_pair_against_the_chip_first_point(pred, pairs):
    """One pair per later point of every chip and metric with two or more points, each set
    against the first of that chip's rows for the metric."""
    groups: dict[tuple[str, str], list[str]] = {}
    for r in pred:
        groups.setdefault((r["chip"], r["metric"]), []).append(r["point"])
    want = {(chip, metric, b): points[0] for (chip, metric), points in groups.items()
            for b in points[1:]}
    got = {(p["chip"], p["metric"], p["point_b"]): p["point_a"] for p in pairs}
    assert got == want


def test_within_chip_misses_are_pinned(pairs):
    got = {(p["chip"], p["metric"], p["point_b"]): p for p in pairs}
    assert set(got) == set(WITHIN_CHIP), (
        "the published sweeps changed; update docs/validation.md (python "
        f"scripts/validate_presets.py) and WITHIN_CHIP: {sorted(set(got) ^ set(WITHIN_CHIP))}")
    for key, (miss, kind) in WITHIN_CHIP.items():
        assert got[key]["miss"] == pytest.approx(miss, rel=0.02), key
        assert got[key]["kind"] == kind, key


def test_miss_is_the_quotient_of_the_rows_ratios(pred, pairs):
    """A pair's miss is (predicted_b / predicted_a) / (published_b / published_a), from the
    rows themselves; equivalently the later row's predicted / published over the first's."""
    rows = {(r["chip"], r["metric"], r["point"]): r for r in pred}
    for p in pairs:
        a = rows[p["chip"], p["metric"], p["point_a"]]
        b = rows[p["chip"], p["metric"], p["point_b"]]
        want = (b["estimate"] / a["estimate"]) / (b["published"] / a["published"])
        assert p["miss"] == pytest.approx(want, rel=1e-12)
        assert p["miss"] == pytest.approx(b["ratio"] / a["ratio"], rel=1e-12)
        assert p["published_ratio"] == pytest.approx(b["published"] / a["published"])
        assert p["predicted_ratio"] == pytest.approx(b["estimate"] / a["estimate"])


def test_change_names_what_at_point_changes(validate, pairs):
    """The 'what changes' text is derived from the points' ``changes``: a supply sweep names
    the supply (and nothing of the precisions), a precision sweep the bits."""
    got = {(p["chip"], p["metric"], p["point_b"]): p for p in pairs}
    li = got["li-esscirc22", "TOPS/W", "1.0 V"]
    assert li["change"] == "supply (V) 0.7 -> 1"
    yu = got["yu-cicc20", "TOPS/W", "5-b ADC"]
    assert yu["change"] == "ADC bits 1 -> 5"
    for p in pairs:
        if p["kind"] == "supply":
            assert "supply" in p["change"] and "bits" not in p["change"], p["change"]
        elif p["kind"] == "precision/bits":
            assert "bits" in p["change"] and "supply" not in p["change"], p["change"]


def test_doc_has_the_section_and_its_figures(validate, pred, pairs):
    doc = validate.DOC.read_text()
    assert "## Within a chip: published sweeps" in doc
    n, n15, n2, gm = validate._miss_summary(pairs)
    assert (f"{n} pairs from {len({p['chip'] for p in pairs})} chips: {n15} within "
            f"{validate.SWEEP_WITHIN:g}x and {n2} within {validate.PREDICTION_FACTOR:g}x of the "
            f"published ratio, geometric-mean miss {gm:.2f}x") in doc
    for p in pairs:
        assert (f"| {p['chip']} | {p['metric']} | {p['point_a']} | {p['point_b']} | "
                f"{p['change']} | {p['kind']} | {p['published_ratio']:.3g} | "
                f"{p['predicted_ratio']:.3g} | {p['miss']:.2f} |") in doc, p["point_b"]
    assert math.isfinite(gm) and gm >= 1.0

"""Presets matched to published chips: every validation row within its tolerance."""

from __future__ import annotations

from itertools import pairwise

import pytest

from cimsim.cost import CALIBRATIONS


@pytest.fixture(scope="module")
def rows(validate):
    return validate.rows()


def test_every_row_within_tolerance(validate, rows):
    chips = {r["chip"] for r in rows}
    assert {"jia-jssc20", "wang-vlsi22", "isaac-32nm"} <= chips
    assert len(rows) == 2 * 2 + 5 * 2 + 2
    for r in rows:
        assert abs(r["error"]) <= validate.TOLERANCE, (
            f"{r['chip']} {r['point']} {r['metric']}: published {r['published']:.4g}, "
            f"estimate {r['estimate']:.4g} ({100 * r['error']:+.1f} %)")


def test_check_points_are_not_fits(rows):
    """Voltage sweeps: the checks differ from the fit point only by the model's V^2 scaling."""
    wang = [r for r in rows if r["chip"] == "wang-vlsi22" and r["metric"] == "TOPS/W"]
    assert sum(r["fit"] == "fit" for r in wang) == 1
    # efficiency falls with voltage in both the silicon and the estimate
    assert all(b["estimate"] < a["estimate"] for a, b in pairwise(wang))
    assert all(b["published"] < a["published"] for a, b in pairwise(wang))


def test_hard_coded_calibration_matches_the_fit(validate):
    fitted = validate.fit_calibrations()
    for name, fit in fitted.items():
        cal = CALIBRATIONS[name]
        for kind in ("energy", "area"):
            for comp, value in getattr(fit, kind).items():
                assert getattr(cal, kind)[comp] == pytest.approx(value, rel=0.01), (name, comp)


def test_doc_is_current(validate, rows):
    doc = validate.DOC.read_text()
    assert "Validation of the cost estimator" in doc
    for r in rows:
        assert f"{r['estimate']:.4g}" in doc, (r["chip"], r["point"], r["metric"])


def test_calibration_follows_the_preset_not_only_its_name():
    """A preset's factors apply to it and its operating points, not to an edited copy that
    keeps the name but moves the node or the cell."""
    import cimsim
    from cimsim.cost import calibration_for
    from cimsim.cost.energy import NO_CALIBRATION

    jia = cimsim.load_chip("jia-jssc20")
    assert calibration_for(jia) is CALIBRATIONS["jia-jssc20"]
    point = jia.replace(tech=jia.tech.replace(vdd_v=1.2, t_read_ns=540.0),
                        adc=jia.adc.replace(bits=6))
    assert calibration_for(point) is CALIBRATIONS["jia-jssc20"]
    moved = jia.replace(tech=jia.tech.replace(node_nm=28.0))
    assert calibration_for(moved) is NO_CALIBRATION
    rram = jia.replace(device=jia.device.replace(cell="rram"))
    assert calibration_for(rram) is NO_CALIBRATION
    assert calibration_for(jia.replace(name="my-chip")) is NO_CALIBRATION


@pytest.mark.parametrize("name", sorted(CALIBRATIONS))
def test_another_converter_kind_drops_the_adc_factors_only(name):
    """The ADC factors were fitted to the preset's converter: an ``adc_kind`` sweep on a
    calibrated preset prices its other kinds' converters as predicted (energy, leakage, area,
    conversion time), exactly as an uncalibrated copy does, and keeps the other factors."""
    import numpy as np

    import cimsim
    from cimsim.arrays.program import program
    from cimsim.cost import calibration_for, estimate, layer_work
    from cimsim.report import cost_basis

    preset = cimsim.load_chip(name)
    cal = CALIBRATIONS[name]
    kind = "flash" if preset.adc.kind.value != "flash" else "sar"
    chip = preset.replace(adc=preset.adc.replace(kind=kind, bits=4))
    got = calibration_for(chip)
    assert "adc" not in got.energy and "adc" not in got.area
    assert got.adc_time_scale == 1.0
    assert {k: v for k, v in cal.energy.items() if k != "adc"} == dict(got.energy)
    assert {k: v for k, v in cal.area.items() if k != "adc"} == dict(got.area)
    assert f"fitted to a {preset.adc.kind.value} converter" in got.note
    basis = cost_basis(chip)
    assert "adc" not in basis.split("(cimsim.cost")[0] and "ADC conversion" not in basis
    # the same converter kind at other bits keeps every factor
    assert calibration_for(preset.replace(adc=preset.adc.replace(bits=4))) is cal

    rng = np.random.default_rng(0)
    k, n = min(chip.array.n_rows, 64), 8
    w = rng.integers(-1, 2, size=(n, k))
    x = rng.integers(0, 2, size=(4, k))
    _, ev = cimsim.matmul(x, w, chip, calibration=x)
    work = [layer_work(ev, program(w, chip))]
    priced = estimate(work, chip)
    bare = estimate(work, chip, calibration=None)
    assert priced.energy_by_component()["adc"] == pytest.approx(bare.energy_by_component()["adc"])
    assert priced.area_by_component()["adc"] == pytest.approx(bare.area_by_component()["adc"])
    assert priced.totals["latency_ns_per_inference"] == pytest.approx(
        bare.totals["latency_ns_per_inference"])

"""The ADC-sharing (``cols_per_adc``) and slice read-out (``slice_readout``) sweep axes: grid,
chip variants, CLI values and errors, the cost directions they trade, and resume of a results
file written before they existed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import cimsim
from cimsim.cli import main
from cimsim.config import SliceReadout
from cimsim.errors import ConfigError
from cimsim.sweep import (
    AXES,
    METRICS,
    chip_for_point,
    expand_grid,
    parse_slice_readout,
    point_id,
    point_labels,
    run_sweep,
)
from cimsim.sweep.grid import identity, resolve_point
from cimsim.sweep.store import context_hash, data_fingerprint, model_fingerprint
from cimsim.sweep.table import TIMING_COLUMNS
from tests import test_sweep
from tests.test_sweep import N_CAL, _count_points, _same_table

chip, data, model, npz = test_sweep.chip, test_sweep.data, test_sweep.model, test_sweep.npz

NEW = ("adc_area_mm2", "n_conversions_per_inference")  # metrics measured since these axes


def _sweep(model, data, chip, grid, out, **kw):
    return run_sweep(model, data, chip, grid, out, calibration=N_CAL, progress=False, **kw)


# --------------------------------------------------------------------------------------------
# Grid, chip variants, identity
# --------------------------------------------------------------------------------------------
def test_expand_grid_places_the_new_axes_after_bits_per_cell():
    points = expand_grid({"adc_bits": [4, 5], "cols_per_adc": [1, 4],
                          "slice_readout": ["digital", "analog"], "bits_per_cell": [1]})
    assert len(points) == 8
    assert list(points[0]) == ["bits_per_cell", "slice_readout", "cols_per_adc", "adc_bits"]
    assert [p["adc_bits"] for p in points] == [4, 5] * 4  # still the fastest
    assert [p["cols_per_adc"] for p in points] == [1, 1, 4, 4] * 2
    assert [p["slice_readout"] for p in points] == ["digital"] * 4 + ["analog"] * 4
    assert AXES.index("bits_per_cell") < AXES.index("slice_readout") < \
        AXES.index("cols_per_adc") < AXES.index("adc_kind")


def test_chip_for_point_sets_sharing_and_readout(chip):
    assert (chip.array.n_cols, chip.array.cols_per_adc) == (128, 8)
    v = chip_for_point(chip, {"cols_per_adc": 2, "slice_readout": "Analog"})
    assert v.array.cols_per_adc == 2 and v.array.slice_readout is SliceReadout.ANALOG
    assert v.array.adcs_per_array == 64
    v = chip_for_point(chip, {"slice_readout": SliceReadout.ANALOG})
    assert v.array.slice_readout is SliceReadout.ANALOG and v.array.cols_per_adc == 8
    # the chip's cols_per_adc is lowered to a smaller array; a swept one is not
    assert chip_for_point(chip, {"array_size": 4}).array.cols_per_adc == 4
    assert chip_for_point(chip, {"array_size": 16, "cols_per_adc": 16}).array.cols_per_adc == 16
    with pytest.raises(ConfigError, match=r"ArrayConfig\.cols_per_adc = 8 .*\[1, 4\]"):
        chip_for_point(chip, {"array_size": 4, "cols_per_adc": 8})
    with pytest.raises(ConfigError, match=r"ArrayConfig\.cols_per_adc = 0"):
        chip_for_point(chip, {"cols_per_adc": 0})
    with pytest.raises(ConfigError, match="slice_readout 'analogue' is invalid; allowed: "
                                          "'digital', 'analog'"):
        chip_for_point(chip, {"slice_readout": "analogue"})


def test_a_bare_ramp_resolves_to_the_level_fit_its_chip_keeps():
    """A bare ``'ramp'`` keeps the base chip's ``level_fit`` (chip_for_point), so it resolves
    to ``'ramp:<that fit>'`` (resolve_point's docstring): one point, one id, with the
    spelled-out fit, and another point than a ramp of another fit."""
    base = cimsim.load_chip("ideal")
    base = base.replace(adc=base.adc.replace(bits=6, level_fit="lloyd_max"))
    assert chip_for_point(base, {"adc_kind": "ramp"}).adc.level_fit.value == "lloyd_max"
    assert resolve_point(base, {"adc_kind": "ramp"})["adc_kind"] == "ramp:lloyd_max"
    ctx = "context"
    assert point_id(identity(base, {"adc_kind": "ramp"}), ctx) == \
        point_id(identity(base, {"adc_kind": "ramp:lloyd_max"}), ctx)
    assert point_id(identity(base, {"adc_kind": "ramp"}), ctx) != \
        point_id(identity(base, {"adc_kind": "ramp:uniform"}), ctx)


def test_a_non_square_base_chip_has_no_array_size_until_one_is_swept():
    """``array_size`` s is ``n_rows = n_cols = s`` (chip_for_point): a base chip of 128 rows
    by 64 columns has no array size, so resolve_point gives None (not its row count, which
    would make it one point with the square 128 x 128 chip); a swept size is its value."""
    base = cimsim.load_chip("ideal")
    base = base.replace(array=base.array.replace(n_rows=128, n_cols=64, cols_per_adc=8))
    assert resolve_point(base, {"adc_bits": 4})["array_size"] is None
    assert resolve_point(base, {"array_size": 32})["array_size"] == 32
    square = base.replace(array=base.array.replace(n_cols=128))
    assert resolve_point(square, {"adc_bits": 4})["array_size"] == 128
    assert identity(base, {"adc_bits": 4}) != identity(square, {"adc_bits": 4})


@pytest.mark.parametrize("bad", ["analogue", "", "mixed", 1, None, ["analog"]])
def test_parse_slice_readout_rejects(bad):
    with pytest.raises(ConfigError, match="allowed: 'digital', 'analog'"):
        parse_slice_readout(bad)


def test_identity_leaves_out_what_the_chip_already_has(chip):
    """The id of a point omits a new axis at the value its other axes give the chip (so the
    points of an older results file keep their ids), and holds it otherwise."""
    old = ("array_size", "bits_per_cell", "thermal_sigma_lsb", "adc_kind", "adc_bits")
    assert list(identity(chip, {"adc_bits": 4})) == list(old)
    for same in ({"adc_bits": 4, "cols_per_adc": 8},
                 {"adc_bits": 4, "slice_readout": "DIGITAL"},
                 {"adc_bits": 4, "slice_readout": SliceReadout.DIGITAL}):
        assert identity(chip, same) == identity(chip, {"adc_bits": 4}), same
    assert identity(chip, {"adc_bits": 4, "cols_per_adc": 2})["cols_per_adc"] == 2
    assert identity(chip, {"slice_readout": "analog"})["slice_readout"] == "analog"
    # array_size 4 lowers the chip's 8 columns per ADC to 4: writing 4 is the same chip
    assert resolve_point(chip, {"array_size": 4})["cols_per_adc"] == 4
    assert identity(chip, {"array_size": 4, "cols_per_adc": 4}) == \
        identity(chip, {"array_size": 4})
    assert identity(chip, {"array_size": 16, "cols_per_adc": 8}) == \
        identity(chip, {"array_size": 16})
    assert identity(chip, {"array_size": 16, "cols_per_adc": 16})["cols_per_adc"] == 16
    assert resolve_point(chip, {"slice_readout": "Analog"})["slice_readout"] == "analog"


def test_new_labels():
    frame = pd.DataFrame({"adc_bits": [4, 4], "cols_per_adc": [1, 4],
                          "slice_readout": ["analog", "analog"]})
    assert point_labels(frame) == ["1col/ADC", "4col/ADC"]
    frame["slice_readout"] = ["digital", "analog"]
    assert point_labels(frame) == ["digital-slices 1col/ADC", "analog-slices 4col/ADC"]


def test_time_labels_are_in_the_legends_units():
    """A time sweep's points said t=3.6e+03s and t=3.15e+07s beside a legend of t = 1 h and
    t = 1 y (and the accuracy-time plot's ticks)."""
    frame = pd.DataFrame({"adc_bits": [6] * 5, "time_s": [1.0, 3600.0, 86400.0, 3.1536e7, 0.5]})
    assert point_labels(frame) == ["t=1s", "t=1h", "t=1d", "t=1y", "t=0.5s"]


# --------------------------------------------------------------------------------------------
# Sweeps through the Python API
# --------------------------------------------------------------------------------------------
def test_invalid_with_the_chip_is_refused_up_front(model, data, chip, tmp_path):
    """A read-out or sharing the chip cannot have fails before any point runs, naming the point
    and the field (as --bits-per-cell 2 on an SRAM chip does)."""
    bent = chip.replace(noise=chip.noise.replace(nonlinearity="saturating"))
    with pytest.raises(ConfigError, match=r"sweep point \{'slice_readout': 'analog', "
                                          r"'adc_bits': 4\}: ArrayConfig\.slice_readout = "
                                          r"'analog' .*nonlinearity"):
        _sweep(model, data, bent, {"adc_bits": [4], "slice_readout": ["digital", "analog"]},
               tmp_path)
    with pytest.raises(ConfigError, match=r"sweep point \{'cols_per_adc': 256, 'adc_bits': 4\}"
                                          r": ArrayConfig\.cols_per_adc = 256 .*\[1, 128\]"):
        _sweep(model, data, chip, {"adc_bits": [4], "cols_per_adc": [8, 256]}, tmp_path)
    assert not (tmp_path / "sweep.jsonl").exists()


def test_old_results_file_resumes_without_the_new_axes(model, data, chip, tmp_path,
                                                       monkeypatch):
    """A sweep.jsonl written before these axes (its ids over the five older axes, records
    without the new metrics) is found done on rerun, also with the chip's own values given
    for the new axes; a new value is a new point."""
    out = tmp_path / "old"
    grid = {"adc_bits": [3, 4]}
    full = _sweep(model, data, chip, grid, tmp_path / "full")
    # the ids are those of the formula older cimsim used: resolved older axes + context
    context = context_hash(model_fingerprint(model), data_fingerprint(*data), N_CAL, chip, 0)
    old_axes = ("array_size", "bits_per_cell", "thermal_sigma_lsb", "adc_kind", "adc_bits")
    expected = [point_id({a: row[a] for a in old_axes}, context)
                for row in full.astype(object).to_dict(orient="records")]
    assert full["point_id"].tolist() == expected
    # the records as an older cimsim wrote them: no new metrics
    out.mkdir()
    lines = (tmp_path / "full" / "sweep.jsonl").read_text().splitlines()
    old = [{k: v for k, v in json.loads(line).items() if k not in NEW} for line in lines]
    (out / "sweep.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))

    counted = _count_points(monkeypatch)
    again = _sweep(model, data, chip, grid, out)
    assert counted == [] and again.attrs["n_points_resumed"] == 2
    _same_table(again.drop(columns=list(NEW)), full.drop(columns=list(NEW)))
    assert again[list(NEW)].isna().all().all()  # not measured then
    same = _sweep(model, data, chip, {**grid, "cols_per_adc": [8], "slice_readout": ["digital"]},
                  out)
    assert counted == [] and same["point_id"].tolist() == full["point_id"].tolist()
    more = _sweep(model, data, chip, {**grid, "cols_per_adc": [8, 2]}, out)
    assert len(counted) == 2 and more.attrs["n_points_resumed"] == 2
    assert more["cols_per_adc"].tolist() == [8, 8, 2, 2]
    assert more["status"].eq("ok").all()


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["--cols-per-adc", "1,,2"], "--cols-per-adc: '1,,2' is not a range like 3-8 or a list"),
    (["--cols-per-adc", "8-1"], "--cols-per-adc: '8-1' is an empty range"),
    (["--slice-readout", "digital,analogue"],
     "--slice-readout: slice_readout 'analogue' is invalid; allowed: 'digital', 'analog'"),
    (["--slice-readout", "digital,"], "--slice-readout: slice_readout '' is invalid"),
    # values no point of this chip can have: refused up front, naming the point and field
    (["--cols-per-adc", "0,4"], "sweep point {'cols_per_adc': 0, 'adc_bits': 4}: "
                                "ArrayConfig.cols_per_adc = 0 is invalid"),
    (["--cols-per-adc", "4,256"], "ArrayConfig.cols_per_adc = 256 is invalid; allowed: "
                                  "an integer in [1, 128]"),
    (["--array-size", "4,8", "--cols-per-adc", "8"], "sweep point {'array_size': 4, "
                                                     "'cols_per_adc': 8, 'adc_bits': 4}"),
])
def test_cli_sweep_axis_errors_are_one_line(flags, message, npz, tmp_path, capsys):
    argv = ["sweep", "--model", "tests.test_sweep:tiny_model", "--data", str(npz), "--chip",
            "rram-22nm", "--adc-bits", "4", "--out", str(tmp_path / "o"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o" / "sweep.jsonl").exists()


def test_cli_analog_readout_on_a_chip_that_cannot(npz, tmp_path, capsys, chip):
    path = tmp_path / "bent.toml"
    chip.replace(noise=chip.noise.replace(nonlinearity="saturating")).save(path)
    argv = ["sweep", "--model", "tests.test_sweep:tiny_model", "--data", str(npz), "--chip",
            str(path), "--adc-bits", "4", "--slice-readout", "digital,analog",
            "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ArrayConfig.slice_readout = 'analog'" in err, err


def test_cli_demo_sharing_and_readout_trade_offs(tmp_path, capsys):
    """The demo CNN over 1 and 4 columns per ADC, digital and analog slice read-out: sharing
    an ADC shrinks the ADC area and (digital) lengthens each inference; analog read-out makes
    fewer conversions. Directions read from sweep.csv."""
    out = tmp_path / "axes"
    assert main(["sweep", "--model", "demo", "--chip", "rram-22nm", "--adc-bits", "5",
                 "--cols-per-adc", "1,4", "--slice-readout", "digital,analog", "--limit", "24",
                 "--calibration", "16", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4 points" in text and "ADC_mm2" in text and "conv/inf" in text
    frame = pd.read_csv(out / "sweep.csv")
    # the file holds the results; the wall time (TIMING_COLUMNS) stays in sweep.jsonl
    measured = [m for m in METRICS if m not in TIMING_COLUMNS]
    assert frame.columns.tolist()[:len(AXES) + len(measured)] == [*AXES, *measured]
    assert frame["status"].eq("ok").all()
    assert frame["slice_readout"].tolist() == ["digital"] * 2 + ["analog"] * 2
    assert frame["cols_per_adc"].tolist() == [1, 4, 1, 4]
    by = frame.set_index(["slice_readout", "cols_per_adc"])
    for readout in ("digital", "analog"):
        one, four = by.loc[(readout, 1)], by.loc[(readout, 4)]
        assert four["adc_area_mm2"] < one["adc_area_mm2"]
        assert four["area_mm2"] < one["area_mm2"]
        assert four["latency_ns_per_inference"] >= one["latency_ns_per_inference"]
        assert four["n_conversions_per_inference"] == one["n_conversions_per_inference"]
    assert (by.loc[("digital", 4), "latency_ns_per_inference"]
            > by.loc[("digital", 1), "latency_ns_per_inference"])
    for cpa in (1, 4):
        analog, digital = by.loc[("analog", cpa)], by.loc[("digital", cpa)]
        assert analog["n_conversions_per_inference"] < digital["n_conversions_per_inference"]
        assert analog["latency_ns_per_inference"] <= digital["latency_ns_per_inference"]
    assert frame["n_arrays"].nunique() == 1  # neither axis moves the mapping
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["grid"] == {"slice_readout": ["digital", "analog"], "cols_per_adc": [1, 4],
                           "adc_bits": [5]}


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_a_bits_per_cell_point_resamples_per_level_tables_over_conductance(bits):
    """pcm-22nm writes its drift exponent and 1/f coefficient per level of its 2-b cells: a
    sweep's 1-b or 3-b point was refused (4 values for 2 or 8 levels). The tables follow the
    levels' conductances: level l of L at l/(L-1) of the range, interpolated linearly."""
    chip = cimsim.load_chip("pcm-22nm")
    dev = chip.device
    assert len(dev.drift_nu_mean) == 4
    variant = chip_for_point(chip, {"bits_per_cell": bits, "adc_bits": 6}).device
    assert variant.bits_per_cell == bits
    old_at = [0.0, 1 / 3, 2 / 3, 1.0]
    for name in ("drift_nu_mean", "drift_nu_sigma", "read_noise_q_s"):
        table = getattr(variant, name)
        assert len(table) == 2**bits
        for level, value in enumerate(table):
            u = level / (2**bits - 1)
            i = min(int(u * 3), 2)  # the old segment holding u
            w = (u - old_at[i]) * 3
            old = getattr(dev, name)
            assert value == pytest.approx(old[i] + w * (old[i + 1] - old[i]), rel=1e-12)
    assert variant.drift_t0_s == dev.drift_t0_s  # nothing else moves but the spread,
    # which keeps its microsiemens (test_a_bits_per_cell_point_holds_the_device_physics)
    assert variant.variation_sigma * variant.g_lsb_us == pytest.approx(
        dev.variation_sigma * dev.g_lsb_us, rel=1e-12)
    assert variant.replace(bits_per_cell=2, drift_nu_mean=dev.drift_nu_mean,
                           drift_nu_sigma=dev.drift_nu_sigma,
                           read_noise_q_s=dev.read_noise_q_s,
                           variation_sigma=dev.variation_sigma) == dev


def test_a_bits_per_cell_point_holds_the_device_physics():
    """What a chip gives in cell-LSB (one level step, (g_max - g_min) / (2^c - 1)) was kept in
    cell-LSB at a point of other bits per cell: pcm-22nm's thermal noise fell 5x in current
    and its programming spread 5x in microsiemens from 2 to 4 bits per cell, and the sweep
    favoured more levels. They keep their current: 2 -> 4 bits is (2^4 - 1) / (2^2 - 1) = 5
    times as many cell-LSB, 2 -> 1 bit a third."""
    base = cimsim.load_chip("pcm-22nm")
    base = base.replace(device=base.device.replace(retention_sigma_lsb=0.3),
                        adc=base.adc.replace(range_policy="fixed", fixed_lo=-6.0, fixed_hi=30.0))
    assert (base.device.bits_per_cell, base.noise.thermal_sigma_lsb,
            base.device.variation.value, base.device.variation_sigma) == (2, 0.5, "gaussian", 0.12)
    for bits, ratio in ((4, 5.0), (1, 1 / 3), (2, 1.0)):
        chip = chip_for_point(base, {"bits_per_cell": bits})
        assert chip.noise.thermal_sigma_lsb == pytest.approx(0.5 * ratio, rel=1e-12)
        assert chip.device.variation_sigma == pytest.approx(0.12 * ratio, rel=1e-12)
        assert chip.device.retention_sigma_lsb == pytest.approx(0.3 * ratio, rel=1e-12)
        assert (chip.adc.fixed_lo, chip.adc.fixed_hi) == pytest.approx((-6 * ratio, 30 * ratio))
        assert chip.device.g_lsb_us * ratio == pytest.approx(base.device.g_lsb_us, rel=1e-12)
        assert chip == base.with_bits_per_cell(bits)  # the public form of the same chip
    # a noise given with the axis is in the base chip's cell-LSB, as the chip's own value
    assert chip_for_point(base, {"bits_per_cell": 4, "thermal_sigma_lsb": 0.2}
                          ).noise.thermal_sigma_lsb == pytest.approx(1.0)
    # a lognormal spread is relative: kept
    rram = cimsim.load_chip("rram-22nm")
    assert rram.device.variation.value == "lognormal"
    assert (rram.with_bits_per_cell(1).device.variation_sigma
            == rram.device.variation_sigma)


def test_a_point_whose_bits_per_cell_rescales_a_value_gets_a_new_id():
    """Such a point is another chip than an older cimsim ran there (it kept the cell-LSB
    values): a results file written before reruns it; every other point keeps its id."""
    rram, ideal = cimsim.load_chip("rram-22nm"), cimsim.load_chip("ideal")
    assert rram.noise.thermal_sigma_lsb > 0 and ideal.noise.thermal_sigma_lsb == 0
    assert identity(rram, {"bits_per_cell": 1})["cell_lsb"] == "held"
    assert "cell_lsb" not in identity(rram, {"bits_per_cell": 2})  # the chip's own bits
    assert "cell_lsb" not in identity(rram, {"adc_bits": 4})
    assert "cell_lsb" not in identity(ideal, {"bits_per_cell": 1})  # nothing to rescale
    assert identity(ideal, {"bits_per_cell": 1, "thermal_sigma_lsb": 0.5})["cell_lsb"] == "held"


def test_thermal_noise_of_a_bits_per_cell_point_keeps_its_size_in_the_output():
    """The simulated consequence: the output's noise (integer units) at 4 bits per cell stays
    near the 2-b chip's (slices of other significance sum it otherwise), where a noise kept in
    cell-LSB made it about a quarter."""
    base = cimsim.load_chip("ideal")
    base = base.replace(noise=base.noise.replace(thermal_sigma_lsb=0.5))
    assert base.device.bits_per_cell == 2
    rng = np.random.default_rng(0)
    w, x = rng.integers(-100, 100, (16, 64)), rng.integers(0, 255, (256, 64))

    def spread(chip):
        y, _ = cimsim.matmul(x, w, chip, seed=1)
        return float(np.std(y - x @ w.T))

    at2 = spread(base)
    held = spread(chip_for_point(base, {"bits_per_cell": 4}))
    kept_in_lsb = spread(base.replace(device=base.device.replace(bits_per_cell=4)))
    assert 0.8 < held / at2 < 1.5
    assert kept_in_lsb / at2 < 0.4


def test_a_ramp_point_from_a_base_with_more_bits_than_a_ramp_takes():
    """The kind was set before the bits: a ramp at the ideal chip's 24 b was refused
    ('bits = 24 ... in [1, 16] for kind = ramp') for the valid point ramp at 6 b."""
    adc = chip_for_point(cimsim.load_chip("ideal"), {"adc_kind": "ramp", "adc_bits": 6}).adc
    assert adc.kind.value == "ramp" and adc.bits == 6


def test_a_digital_macros_array_size_point_records_its_adder_tree_bits():
    """On an all-digital macro a swept array_size without adc_bits makes the adder tree as wide
    as the swept rows need (chip_for_point): the row recorded the base chip's 10 b for the 8-b
    and 9-b trees, and the same chip swept with adc_bits 8 got another id (run again)."""
    chip = cimsim.load_chip("published/chih-isscc21")
    for size in (64, 128):
        built = chip_for_point(chip, {"array_size": size}).adc.bits
        assert resolve_point(chip, {"array_size": size})["adc_bits"] == built
    assert chip_for_point(chip, {"array_size": 64}).adc.bits == 8 < chip.adc.bits
    assert identity(chip, {"array_size": 64}) == identity(chip, {"array_size": 64,
                                                                 "adc_bits": 8})


def test_the_cost_basis_of_a_sweep_over_converter_kinds_on_a_calibrated_preset():
    """A calibrated preset's ADC factors hold for its own converter kind: the sweep's header
    and sweep.json said "calibrated: energy of adc" over flash points priced predicted."""
    from cimsim.report import cost_basis
    from cimsim.sweep.grid import expand_grid
    from cimsim.sweep.run import _cost_basis

    jia = cimsim.load_chip("jia-jssc20")
    def basis_of(chip, grid):
        points = expand_grid(grid)
        return _cost_basis(chip, points, [resolve_point(chip, p) for p in points])

    text = basis_of(jia, {"adc_bits": [6, 8], "adc_kind": ["sar", "flash"]})
    sar, flash = text.split("; adc_kind flash: ")
    assert sar.startswith("adc_kind sar: ") and "energy of adc, cell" in sar
    assert "energy of cell;" in flash and "adc" not in flash.split("(cimsim.cost")[0]
    # one kind, or a chip without factors: the one line it always was
    assert basis_of(jia, {"adc_bits": [6, 8]}) == cost_basis(jia)
    rram = cimsim.load_chip("rram-22nm")
    assert basis_of(rram, {"adc_kind": ["sar", "flash"]}) == cost_basis(rram)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_points_warnings_are_said_by_the_driver_with_the_point_named(tmp_path, jobs):
    """A deploy warning at a point: said once per point by the driver, the point named, and
    kept in its record, the same with worker processes (a worker printed Python's raw
    'path:line: UserWarning' and its source line, naming no point)."""
    import copy

    import torch

    model = copy.deepcopy(test_sweep.tiny_model())
    with torch.no_grad():
        model[1].weight.zero_()  # all-zero weights: deploy warns
    _, _, x, y = cimsim.data.load_digits_split()
    with pytest.warns(UserWarning) as seen:
        run_sweep(model, (x[:48], y[:48]), "rram-22nm", {"adc_bits": [4, 5]}, tmp_path,
                  calibration=16, jobs=jobs, progress=False)
    said = [str(w.message) for w in seen if str(w.message).startswith("sweep point")]
    assert any(m.startswith("sweep point {'adc_bits': 4}: ") for m in said)
    assert any(m.startswith("sweep point {'adc_bits': 5}: ") for m in said)
    records = [json.loads(line) for line in (tmp_path / "sweep.jsonl").read_text().splitlines()]
    assert all(rec["warnings"] for rec in records)


def test_a_set_to_the_presets_own_value_is_the_preset():
    """`--set tech.vdd_v=0.8` on a chip at 0.8 V recomputed every point: the note --set adds
    to the description entered the sweep's context. Another value is another sweep."""
    base = cimsim.load_chip("published/wu-jssc23")
    assert base.tech.vdd_v == 0.8
    same = cimsim.load_chip("published/wu-jssc23", overrides=["tech.vdd_v=0.8"])
    other = cimsim.load_chip("published/wu-jssc23", overrides=["tech.vdd_v=0.7"])
    assert same.description.endswith("(with --set tech.vdd_v=0.8)")

    def context(chip):
        return context_hash("model", "data", 16, chip, 0)

    assert context(same) == context(base) != context(other)


def test_a_libraries_deprecation_at_a_point_stays_hidden(monkeypatch):
    """Python's default filters hide DeprecationWarning from library code: a point's record
    keeps the warnings a user would have seen, not every deprecation its libraries raise."""
    import warnings

    from cimsim.sweep import runner

    def measure(*args, **kwargs):
        warnings.warn("old API", DeprecationWarning, stacklevel=1)
        warnings.warn("deploy: something to say", UserWarning, stacklevel=1)
        return {}

    monkeypatch.setattr(runner, "_measure", measure)
    ctx = runner.SweepContext(model=None, chip=cimsim.load_chip("ideal"), x_cal=None,
                              x_eval=None, y_eval=None, seed=0, batch_size=16)
    rec = runner.run_point(ctx, "id", {"adc_bits": 4})
    assert rec["warnings"] == ["deploy: something to say"]


def test_a_failed_point_is_said_once_off_a_terminal(tmp_path, caplog, capsys):
    """Off a terminal the progress line of a failed point names its status; the same text
    came again as a log warning (and a third time in the status column)."""
    import logging

    model = test_sweep.tiny_model()
    _, _, x, y = cimsim.data.load_digits_split()
    small = cimsim.load_chip("rram-22nm").replace(
        array=cimsim.load_chip("rram-22nm").array.replace(n_tiles=1, arrays_per_tile=1))
    with caplog.at_level(logging.WARNING, logger="cimsim.sweep.run"):
        frame = run_sweep(model, (x[:40], y[:40]), small, {"array_size": [16]}, tmp_path,
                          calibration=16, progress=True)
    assert frame["status"].iloc[0].startswith("error: ")
    err = capsys.readouterr().err
    assert err.count("needs") == 1, err
    assert err.startswith("sweep: 1 of 1 points to run\n"), err  # before the first point
    assert not [r for r in caplog.records if "failed" in r.getMessage()]


def test_points_on_threads_of_one_process_keep_their_own_warnings(monkeypatch):
    """Two points at once on threads of one process (a Dask worker with --nthreads 2, or
    ``Client(processes=False)``): ``warnings.catch_warnings`` is process-wide, so one point's
    warning went into the other's record and, exiting out of order, the hook of a finished
    point stayed installed and swallowed every later warning of the process."""
    import threading
    import time
    import warnings

    from cimsim.sweep import runner

    both_in, both_said = threading.Barrier(2, timeout=0.5), threading.Barrier(2, timeout=0.5)

    def together(barrier):
        try:
            barrier.wait()  # the old code: both points inside catch_warnings at once
        except threading.BrokenBarrierError:
            pass  # points one at a time: the other never arrives

    def measure(model, chip, *args, **kwargs):
        together(both_in)
        time.sleep(0.05 * (chip.adc.bits - 4))  # one warns first, the other after
        warnings.warn(f"deploy: about {chip.adc.bits} b", UserWarning, stacklevel=1)
        together(both_said)
        return {}

    monkeypatch.setattr(runner, "_measure", measure)
    ctx = runner.SweepContext(model=None, chip=cimsim.load_chip("rram-22nm"), x_cal=None,
                              x_eval=None, y_eval=None, seed=0, batch_size=16)
    records: dict[int, dict] = {}

    def point(bits):
        records[bits] = runner.run_point(ctx, str(bits), {"adc_bits": bits})

    threads = [threading.Thread(target=point, args=(b,)) for b in (4, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert records[4]["warnings"] == ["deploy: about 4 b"]
    assert records[5]["warnings"] == ["deploy: about 5 b"]
    with pytest.warns(UserWarning, match="after the sweep"):  # the process's hook is its own
        warnings.warn("after the sweep", UserWarning, stacklevel=1)

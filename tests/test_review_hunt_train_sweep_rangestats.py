"""Review hunt of two changes: ``cimsim train --sweep AXIS=VALUES`` (f745776) and
``RangeStats`` keeping calibration rows by their place in the whole set (bd28eed). Each test
failed on the code under review for the reason its docstring gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cimsim
from cimsim.adc.linear import RangeStats
from cimsim.cli import main

TRAIN = ["train", "--model", "demo", "--chip", "rram-22nm", "--limit", "32", "--batch-size",
         "16", "--calibration", "32", "--epochs", "1"]


# -------------------------------------------------------------------------------------------
# RangeStats (bd28eed): the calibration's cut into chunks still moves the ranges
# -------------------------------------------------------------------------------------------


def test_percentile_ranges_do_not_depend_on_chunk_vectors_with_several_input_planes():
    """``cimsim.matmul``'s ``chunk_vectors``: "the outputs and integer counts do not depend on
    it"; ``RangeStats``: the rows kept "depend on the rows' places only, not on how the
    calibration was cut into chunks". ``calibration_stats`` adds each chunk's analog values as
    ``values.reshape(-1, C)`` of a (planes, chunk vectors, C) block, so a row's "place in the
    whole set" is ``m0 * P + p * chunk + (v - m0)``: plane-major *within each chunk*, which
    depends on the chunk size. bd28eed's own test (6,000 vectors x 8 planes, kept stride 3)
    passes only because 3,000 is a multiple of 3; at ``chunk_vectors=2000`` (or 2500, 1001, 7)
    every output of the same call moves (by up to ~1,400 on rram-22nm, noise off). Expected:
    the same outputs for any ``chunk_vectors`` (e.g. rows indexed by (plane, vector) over the
    whole set, ``p * M + v``, which keeps the single-chunk selection; or vector-major rows)."""
    chip = cimsim.load_chip("rram-22nm", overrides={"noise.thermal_sigma_lsb": 0.0})
    assert_chunk_independent(chip, 6000, 2000, 2500, 7 * 143)


def assert_chunk_independent(chip, n_cal: int, *chunk_sizes: int) -> None:
    """``cimsim.matmul`` of a 4 x 16 layer calibrated on ``n_cal`` random vectors gives the
    same outputs in one chunk and cut into each of ``chunk_sizes``."""
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (4, 16))
    x = rng.integers(0, 256, (50, 16))
    x_cal = rng.integers(0, 256, (n_cal, 16))
    y_one_chunk, _ = cimsim.matmul(x, w, chip, calibration=x_cal)
    for size in chunk_sizes:
        y_chunked, _ = cimsim.matmul(x, w, chip, calibration=x_cal, chunk_vectors=size)
        np.testing.assert_array_equal(y_chunked, y_one_chunk, err_msg=f"chunks of {size}")


@pytest.mark.parametrize("overrides", [
    {"adc.kind": "ramp", "adc.level_fit": "kmeans"},
    {"adc.kind": "ramp", "adc.level_fit": "cdf", "adc.calibration_granularity": "array"},
    {"adc.calibration_granularity": "array"},  # percentile, pooled over the array
], ids=["ramp-kmeans-column", "ramp-cdf-array", "percentile-array"])
def test_level_fits_and_pooled_percentiles_do_not_depend_on_chunk_vectors(monkeypatch,
                                                                          overrides):
    """The same chunk dependence for a nonlinear (ramp) ADC's level fit and for ranges pooled
    over other units than a column (``adc.calibration_granularity = 'array'``): the kept rows
    are the multiples of a stride in an order that is plane-major within each chunk. Here
    ``RangeStats``'s ``max_samples`` is 100 (monkeypatched, to keep the test fast: 400 vectors x
    8 planes, kept stride 32); cut into chunks of 150 vectors, the outputs move by thousands.
    Expected: identical outputs with and without ``chunk_vectors``."""
    monkeypatch.setattr(RangeStats.__init__, "__defaults__", (100, None))
    chip = cimsim.load_chip("rram-22nm",
                            overrides={"noise.thermal_sigma_lsb": 0.0, **overrides})
    assert_chunk_independent(chip, 400, 150)


# -------------------------------------------------------------------------------------------
# cimsim train --sweep AXIS=VALUES (f745776)
# -------------------------------------------------------------------------------------------


def test_train_sweep_skips_a_point_invalid_only_in_combination(tmp_path, capsys):
    """docs/training.md: points deploy refuses are skipped; "a bad axis or value, or a grid
    with no deployable point, is one line before the epochs" -- and ``cimsim sweep`` skips a
    point invalid only as a combination of values each valid elsewhere in the grid
    (``run_sweep``'s ``_check_points``: cols_per_adc 128 with array_size 64, while 128 with
    128 is fine; ``cimsim sweep --array-size 64,128 --cols-per-adc 8,128`` runs 3 points and
    skips that one). ``train --sweep array_size=64,128 --sweep cols_per_adc=8,128`` instead
    exits 2 before the epochs ('--sweep: {'array_size': 64, 'cols_per_adc': 128}:
    ArrayConfig.cols_per_adc = 128 is invalid ...'): ``_check_sweep_bits`` raises on the first
    point ``chip_for_point`` refuses. Expected: exit 0, that point 'skipped: ...' in sweep.csv
    and the chip's own point (128, 8) run (the others are skipped by deploy: the twin is tiled
    for its own array and ADC sharing)."""
    code = main(TRAIN + ["--sweep", "array_size=64,128", "--sweep", "cols_per_adc=8,128",
                         "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 0, err
    frame = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    combo = frame[(frame["array_size"] == 64) & (frame["cols_per_adc"] == 128)]
    assert len(combo) == 1 and combo["status"].iloc[0].startswith("skipped: ")
    own = frame[(frame["array_size"] == 128) & (frame["cols_per_adc"] == 8)]
    assert len(own) == 1 and own["status"].iloc[0] == "ok"


def test_train_sweep_adc_bits_axis_none_deployable_names_its_values(tmp_path, capsys):
    """``train --sweep adc_bits=5 --method columnquant`` (no point deployable: ColumnQuant's
    centre is frozen at the twin's bits) says "--sweep: the trained model can be deployed at
    none of None (at 5: ...)": with adc_bits the only axis, ``_check_sweep_bits`` names
    ``repr(args.sweep_adc_bits)``, which is None when the bits came by ``--sweep adc_bits=``.
    Expected: the values given ('5'), not 'None'."""
    code = main(TRAIN + ["--method", "columnquant", "--sweep", "adc_bits=5",
                         "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "can be deployed at none of" in err, err
    assert "none of None" not in err, err


def test_train_sweep_none_deployable_allowed_names_the_swept_axis(tmp_path, capsys):
    """With no deployable point on a grid that does not sweep ADC bits
    (``--sweep bits_per_cell=1,4`` on rram-22nm, 2 bits per cell: the twin is tiled for its
    own), the one line ends "allowed: values that include the chip's own (adc_bits 6)": every
    point already has 6-bit ADCs, so the advice is wrong; what would make a point deployable is
    the chip's own bits_per_cell (2). Expected: the allowed clause names the swept axis and
    the chip's value of it, not adc_bits."""
    code = main(TRAIN + ["--sweep", "bits_per_cell=1,4", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "can be deployed at none of" in err, err
    allowed = err.rsplit("allowed:", 1)[1]
    assert "adc_bits" not in allowed and "bits_per_cell" in allowed and "2" in allowed, allowed


@pytest.mark.parametrize("sweep, foreign", [
    ("noise.thermal_sigma_lsb=0,1", "(--noise)"),  # 'sweep it as the axis ... (--noise)'
    ("adc.bits=4,6", "(--adc-bits)"),  # 'sweep it as the axis adc_bits (--adc-bits)'
    ("input_bits", "--vary"),  # "--vary 'input_bits' is invalid"
])
def test_train_sweep_messages_name_trains_own_flag(tmp_path, capsys, sweep, foreign):
    """``cimsim train --sweep``'s one-line refusals name flags ``cimsim train`` does not have:
    a chip field that is a named axis says "sweep it as the axis thermal_sigma_lsb (--noise)"
    / "adc_bits (--adc-bits)" (train has neither flag: it takes ``--sweep
    thermal_sigma_lsb=...`` / ``--sweep-adc-bits``), and an axis without '=' says
    "--vary 'input_bits' is invalid; allowed: FIELD=VALUE,..." (train has no --vary; the text
    the user typed was ``--sweep input_bits``). Expected: the message names ``--sweep`` and
    no flag of another command. (tests/test_cli.py's
    test_train_sweeps_the_trained_model_over_other_axes pins the '--vary' wording.)"""
    code = main(TRAIN + ["--sweep", sweep, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--sweep" in err and foreign not in err, err

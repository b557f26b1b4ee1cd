"""Chip fields as sweep axes, from a review hunt of the feature (3ad20ef): the cases where the
sweep differed from docs/sweep.md ("Chip fields as axes") or from what a CIM researcher would
expect; each docstring says what went wrong there."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cimsim
from cimsim.cli import main
from cimsim.errors import ConfigError
from cimsim.sweep import chip_for_point, expand_grid
from cimsim.sweep.grid import identity
from tests.sweep import test_field_axes
from tests.test_sweep import _count_points, _sweep

data, model, chip = test_field_axes.data, test_field_axes.model, test_field_axes.chip


@pytest.fixture(scope="module")
def pcm():
    return cimsim.load_chip("pcm-22nm")


def test_a_digital_tree_swept_with_adc_bits_is_checked_against_the_points_width():
    """docs/sweep.md: on a digital read-out "the adder tree takes the width of the point's
    sums ... with ``adc_bits`` swept too, each value is checked against that width":
    ``published/yuan-jssc26`` is 17 b at ``input_bits = 8``. But with ``adc_bits`` in the
    point, ``_with_fields`` keeps the base chip's 13-b tree while it sets the 8-b inputs, and
    the chip refuses it: ``{'input_bits': 8, 'adc_bits': 17}`` (the one width that point can
    have) fails with "ADCConfig.bits = 13 is invalid; allowed: >= 17", naming a value the user
    never gave, and stops the sweep before any point runs. Expected: the point's chip has the
    17-b tree."""
    yuan = cimsim.load_chip("published/yuan-jssc26")
    assert yuan.adc.bits == 13 and yuan.input_bits == 4
    assert chip_for_point(yuan, {"input_bits": 8}).adc.bits == 17  # (passes)
    assert chip_for_point(yuan, {"input_bits": 8, "adc_bits": 17}).adc.bits == 17


def test_a_field_rescaled_by_bits_per_cell_never_shares_an_id_with_another_chip(
        model, data, pcm, tmp_path, monkeypatch):
    """A point's fields are set first, then ``bits_per_cell`` rescales the cell-LSB values
    (pcm-22nm's gaussian ``variation_sigma`` 0.12 at 2 b/cell): at 1 b/cell
    ``device.variation_sigma = 0.36`` becomes 0.12, the base chip's value, so ``identity``
    drops the field, and the point gets the id of ``{'bits_per_cell': 1}`` alone, a chip
    whose sigma is rescaled to 0.04. A sweep of that point in the folder of a sweep of
    ``bits_per_cell`` resumes the other chip's figures instead of running. Expected: two
    different chips, two ids; the field point runs."""
    a = {"device.variation_sigma": 0.36, "bits_per_cell": 1}
    b = {"bits_per_cell": 1}
    assert chip_for_point(pcm, a) != chip_for_point(pcm, b)  # (passes: 0.12 vs 0.04)
    first = _sweep(model, data, pcm, {"bits_per_cell": [1]}, tmp_path)
    counted = _count_points(monkeypatch)
    frame = _sweep(model, data, pcm, {"device.variation_sigma": [0.36], "bits_per_cell": [1]},
                   tmp_path)
    assert frame["point_id"].tolist() != first["point_id"].tolist()
    assert len(counted) == 1 and frame.attrs["n_points_resumed"] == 0
    assert identity(pcm, a) != identity(pcm, b)


def test_the_time_column_is_the_time_a_point_with_its_own_t0_ran_at(model, data, pcm,
                                                                        tmp_path):
    """A point that sets ``device.drift_t0_s`` runs at its own chip's t0 (the runner deploys
    with ``t_inference_s=None``: the variant's ``drift_t0_s``), but ``resolve_point`` fills
    ``time_s`` from the *base* chip: the row at ``drift_t0_s = 10`` says ``time_s = 1.0``, a
    time it did not run at (and before its t0, which ``time_s`` itself would refuse). The
    columns said to be "the base chip's value where not swept" are the point's chip's for
    every other axis (``adc_bits`` follows a digital tree's fields). Expected: 10.0."""
    frame = _sweep(model, data, pcm, {"device.drift_t0_s": [1.0, 10.0]}, tmp_path)
    assert (frame["status"] == "ok").all()
    assert frame["time_s"].tolist() == [1.0, 10.0]


def test_time_at_a_points_own_t0_keeps_the_id_the_point_had_without_it(pcm):
    """``LATER_AXES``: "a point's id holds [time_s] only where its value differs from the one
    the other axes give the chip". With ``device.drift_t0_s = 10`` the other axes give
    t0 = 10, so ``time_s = 10`` is that point (same chip, same time, ``chip_for_point``
    equal), yet it is compared with the base chip's t0 (1 s) and kept: the two get different
    ids, and a sweep with ``--time`` does not resume the points of the same sweep without it.
    On the base chip ``{'time_s': 1.0}`` and ``{}`` are one id, as expected."""
    assert identity(pcm, {"time_s": 1.0}) == identity(pcm, {})  # (passes)
    with_time = {"device.drift_t0_s": 10.0, "time_s": 10.0}
    without = {"device.drift_t0_s": 10.0}
    assert chip_for_point(pcm, with_time) == chip_for_point(pcm, without)  # (passes)
    assert identity(pcm, with_time) == identity(pcm, without)


def test_the_array_size_column_follows_swept_array_fields(model, data, chip, tmp_path):
    """``array.n_rows`` / ``array.n_cols`` are sweepable fields (refused only beside
    ``array_size``). A point with both at 64 runs on 64x64 arrays, but its row's
    ``array_size`` column says 128 (the base chip's), while it is 64 for the same chip reached
    with ``array_size = 64``; sweep.csv then lists a 128 array size for a 64x64 chip.
    Expected: the column is the point's (64 here; None for a non-square point, as for a
    non-square base chip)."""
    frame = _sweep(model, data, chip, {"array.n_rows": [64], "array.n_cols": [64]}, tmp_path)
    assert frame["status"].tolist() == ["ok"]
    assert frame["array_size"].tolist() == [64]


def test_a_field_is_set_as_set_would_set_it_where_the_file_leaves_defaults_derived():
    """docs/sweep.md: "A point sets the fields first, exactly as ``--set`` would". The
    ``ideal`` preset states no compute window; ``--set tech.cost_model=physical`` gives it
    ``tech.window_stated = false`` (the window predicted, as for any physical description
    without one), but the sweep sets the field on ``chip.to_dict()``, where the derived
    ``window_stated = true`` is written out, so the point's chip keeps the 10-ns default read
    pulse as a published window. ``cimsim sweep --chip ideal --vary tech.cost_model=physical
    --adc-bits 8`` prints 11,686.0 ns per inference, ``--set tech.cost_model=physical
    --adc-bits 8`` 15,104.7 ns: one chip, two sets of figures. Expected: the chip ``--set``
    gives (less the set note in the description)."""
    ideal = cimsim.load_chip("ideal")
    by_set = cimsim.load_chip("ideal", overrides=["tech.cost_model=physical"])
    point = chip_for_point(ideal, {"tech.cost_model": "physical"})
    assert point.tech.window_stated == by_set.tech.window_stated
    assert point == by_set.replace(description=ideal.description)


def test_cli_vary_a_list_value_is_no_traceback(tmp_path, capsys):
    """``--vary`` "reads each [value] as TOML"; a per-level table such as
    ``device.drift_nu_mean=[0.05]`` is a TOML list, but ``_vary_values`` puts the parsed
    values through ``dict.fromkeys`` and raises ``TypeError: unhashable type: 'list'``: a
    traceback and exit status 1 instead of a sweep (or, at least, the one-line error and exit
    status 2 the docs promise for errors a user can fix)."""
    out = tmp_path / "s"
    try:
        rc = main(["sweep", "--model", "demo", "--chip", "pcm-22nm", "--limit", "20",
                   "--calibration", "8", "--vary", "device.drift_nu_mean=[0.05]",
                   "--out", str(out)])
    except TypeError as exc:
        pytest.fail(f"--vary with a TOML list raised {type(exc).__name__}: {exc}")
    err = capsys.readouterr().err
    assert rc == 0 or (rc == 2 and len(err.strip().splitlines()) == 1), (rc, err)


def test_cli_a_named_axis_given_by_vary_and_by_its_flag_is_not_silently_dropped(tmp_path,
                                                                                capsys):
    """``--vary`` accepts a named axis's name (``adc_bits`` is in AXES, so no field check
    refuses it), and ``cmd_sweep`` then overwrites it with ``--adc-bits``: ``--vary
    adc_bits=4 --adc-bits 5`` sweeps 5 only and exits 0, the 4 silently gone (``--vary``
    given twice for one field is refused, "a field given twice"). Expected: refused with a
    one-line error and exit status 2 (or both values swept)."""
    out = tmp_path / "s"
    rc = main(["sweep", "--model", "demo", "--chip", "rram-22nm", "--limit", "20",
               "--calibration", "8", "--vary", "adc_bits=4", "--adc-bits", "5",
               "--out", str(out)])
    err = capsys.readouterr().err
    if rc == 2:
        assert len(err.strip().splitlines()) == 1, err
    else:
        assert 4 in pd.read_csv(out / "sweep.csv")["adc_bits"].tolist(), \
            "--vary adc_bits=4 was dropped in favour of --adc-bits 5"


def test_a_numpy_array_as_a_list_fields_value(pcm):
    """A per-level table (``device.drift_nu_mean``) is a list-valued field; ``chip_for_point``
    takes a NumPy array for it (``_override_text`` calls ``tolist()``), and ``grid_values``
    promises NumPy values are read as Python ones, but its ``_plain`` calls ``.item()`` on
    every NumPy object: an array of 4 values raises a bare ``ValueError: can only convert an
    array of size 1 to a Python scalar`` from ``expand_grid`` / ``run_sweep``. Expected: the
    array as a list (or a ``ConfigError`` naming the field)."""
    assert chip_for_point(pcm, {"device.drift_nu_mean": np.full(4, 0.05)}) \
        .device.drift_nu_mean == (0.05,) * 4  # (passes)
    points = expand_grid({"device.drift_nu_mean": [np.full(4, 0.05)]})
    assert chip_for_point(pcm, points[0]).device.drift_nu_mean == (0.05,) * 4


def test_dac_bits_none_is_all(chip):
    """``resolve_point``'s comment (and test_field_axes' "'all' and None: the value the chip
    holds, one id") say a field given as None and as 'all' is one chip and one id:
    ``DACConfig.bits`` is ``int | None`` in Python, None meaning 'all'. But a point
    ``{'dac.bits': None}`` is refused with ``overrides 'dac.bits' = None is invalid ... e.g.
    chip.replace(adc=chip.adc.replace(...))``: a message about "overrides" and the wrong table
    that does not name 'all', the value that works. Expected: None is 'all' (or the error
    names 'all')."""
    assert chip_for_point(chip, {"dac.bits": "all"}).dac.bits is None  # (passes)
    try:
        variant = chip_for_point(chip, {"dac.bits": None})
    except ConfigError as exc:
        assert "'all'" in str(exc), str(exc)
    else:
        assert variant.dac.bits is None
        assert identity(chip, {"dac.bits": None}) == identity(chip, {"dac.bits": "all"})

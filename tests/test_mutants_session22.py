"""Mutation-testing round over session 22's code (the sweep's chip-field axes, ``train
--sweep``, ``RangeStats``' kept rows, deploy's calibration refusals): each test kills a mutant
the suite let live; its docstring names the mutant (location and change)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.adc.linear import RangeStats
from cimsim.errors import ConfigError, MappingError
from cimsim.sweep import chip_for_point, expand_grid
from cimsim.sweep.grid import _with_fields, field_problem, identity, resolve_point


@pytest.fixture(scope="module")
def rram():
    return cimsim.load_chip("rram-22nm")


# -------------------------------------------------------------------------------------------
# grid.py: which axes a sweep takes
# -------------------------------------------------------------------------------------------


def test_an_axis_that_is_no_name_is_refused_naming_it(rram):
    """field_problem's ``not isinstance(axis, str)`` guard removed: ``{5: [1]}`` failed with
    AttributeError ('int' object has no attribute 'partition'), not the ConfigError the
    grid's Raises promise."""
    with pytest.raises(ConfigError, match=r"unknown sweep axis/axes \['5'\] \(5: not a name\)"):
        expand_grid({5: [1]})
    with pytest.raises(ConfigError, match="None: not a name"):
        chip_for_point(rram, {None: 1})


def test_the_citation_is_no_axis(rram):
    """``_NOT_SWEPT`` without "source": the chip's citation became a sweep axis (a row per
    citation of one chip)."""
    assert field_problem("source") == "words, not hardware"
    with pytest.raises(ConfigError, match="'source': words, not hardware"):
        expand_grid({"source": ["a", "b"]})


def test_array_n_cols_beside_array_size_is_refused(rram):
    """``_check_field_axes`` checking only ``array.n_rows`` beside ``array_size``: an
    ``array.n_cols`` axis was silently overwritten by the square array_size."""
    for grid, named in [({"array_size": [64], "array.n_cols": [32]}, r"\['array.n_cols'\]"),
                        ({"array.n_rows": [32], "array.n_cols": [32], "array_size": [64]},
                         r"\['array.n_rows', 'array.n_cols'\]")]:
        with pytest.raises(ConfigError, match=named + " with array_size"):
            expand_grid(grid)
    with pytest.raises(ConfigError, match=r"\['array.n_cols'\] with array_size"):
        chip_for_point(rram, {"array_size": 64, "array.n_cols": 32})


def test_fields_are_the_outer_loops_in_the_order_given():
    """``grid_values`` / ``field_axes``: the chip fields first, "in the order given"
    (``field_axes`` sorting them: tech.vdd_v given first became the inner loop)."""
    from cimsim.sweep.grid import field_axes, grid_values

    grid = {"adc_bits": [5], "tech.vdd_v": [0.7, 0.8], "input_bits": [4, 8]}
    assert field_axes(grid) == ["tech.vdd_v", "input_bits"]
    assert list(grid_values(grid)) == ["tech.vdd_v", "input_bits", "adc_bits"]
    assert [(p["tech.vdd_v"], p["input_bits"]) for p in expand_grid(grid)] == [
        (0.7, 4), (0.7, 8), (0.8, 4), (0.8, 8)]


# -------------------------------------------------------------------------------------------
# grid.py: a point's chip (_with_fields)
# -------------------------------------------------------------------------------------------


def test_a_point_at_the_chips_own_values_is_the_chip_itself(rram):
    """``_with_fields``: "``chip`` itself where every value is already its own" (the early
    return of ``_with_fields_cached`` removed: a new chip rebuilt from its file, warnings and
    all, for every point of a field at its base value)."""
    own = {"input_bits": rram.input_bits, "tech.vdd_v": rram.tech.vdd_v,
           "tech.cost_model": rram.tech.cost_model}
    assert _with_fields(rram, own) is rram


def test_a_field_set_to_none_is_left_out_and_the_chip_kept_whole():
    """``published/su-jssc22`` converts 16 rows at a time; a point with
    ``array.rows_per_conversion = None`` is the chip that leaves the field out (all rows at
    once). Kills: the ``pop`` of a None field removed (the point kept 16 rows); the
    ``copy.deepcopy`` of the cached description removed (the pop emptied the cache, and every
    later point of that chip lost its 16 rows)."""
    su = cimsim.load_chip("published/su-jssc22")
    assert su.array.rows_per_conversion == 16
    point = {"array.rows_per_conversion": None}
    assert chip_for_point(su, point).array.rows_per_conversion is None
    assert resolve_point(su, point)["array.rows_per_conversion"] is None
    assert "array.rows_per_conversion" in identity(su, point)  # another chip, another id
    # the same base chip afterwards: its own 16 rows (a point never seen before: not cached)
    later = chip_for_point(su, {"input_bits": 3, "tech.vdd_v": 0.777})
    assert later.array.rows_per_conversion == 16


def test_an_impossible_field_combination_is_resolved_as_given_and_skipped(rram):
    """``resolve_point``'s ``own = None`` for a point whose fields no chip can have replaced by
    ``raise``: ``run_sweep`` resolves the points (``_distinct``) before ``_check_points`` skips
    a combination impossible only together (dac.bits 4 with input_bits 2, each fine
    elsewhere), so the whole sweep was refused instead of that point skipped."""
    from cimsim.sweep.run import _check_points, _distinct

    bad = {"input_bits": 2, "dac.bits": 4}
    resolved = resolve_point(rram, bad)
    assert (resolved["input_bits"], resolved["dac.bits"]) == (2, 4)
    points = _distinct(rram, expand_grid({"input_bits": [2, 8], "dac.bits": [1, 4]}))
    assert len(points) == 4
    skipped = _check_points(rram, points)
    assert list(skipped) == [points.index(bad)]
    assert skipped[points.index(bad)].startswith("skipped: DACConfig.bits = 4 is invalid")


# -------------------------------------------------------------------------------------------
# adc/linear.py: RangeStats keeps rows by their places, halving the held rows at the cap
# -------------------------------------------------------------------------------------------


class _Small(RangeStats):
    KEEP_VALUES = 24  # values held per group before halving (the real one is 2^23)


class _Tiny(RangeStats):
    KEEP_VALUES = 8  # below 4 * max_samples: the floor is the cap


def _expected_kept(n: int, max_samples: int, n_conv: int = 1, keep: int = 24) -> list[int]:
    """The places of the rows ``RangeStats.kept`` gives for places 0..n-1: the rows held are
    the multiples of the least power-of-two stride that holds at most the cap
    (``max(4 * max_samples, KEEP_VALUES // n_conv)`` rows), then every ceil(m / max_samples)-th
    of the m held, in place order."""
    cap = max(4 * max_samples, keep // n_conv)
    stride = 1
    while len(range(0, n, stride)) > cap:
        stride *= 2
    held = list(range(0, n, stride))
    return held[:: -(-len(held) // max_samples)]


@pytest.mark.parametrize(("kind", "max_samples"), [(_Small, 3), (_Small, 5), (_Small, 8),
                                                   (_Tiny, 7)])  # _Tiny: the floor is the cap
def test_rangestats_keeps_the_rows_its_docstring_names_however_the_rows_are_cut(kind,
                                                                                max_samples):
    """Kills, in ``RangeStats.add`` / ``kept``: the stride quadrupled instead of doubled; the
    cap doubled; new rows not thinned by the stride; the held count not kept (never halved) or
    not reset after halving (the stride ran away); the floor ``4 * max_samples`` of the cap
    lowered; the default ``index`` restarting at 0 in each ``add``; the held rows not put in
    the order of their places; the kept step not ``ceil(m / max_samples)``."""
    rng = np.random.default_rng(0)
    for n in range(1, 130):
        want = _expected_kept(n, max_samples, keep=kind.KEEP_VALUES)
        values = np.arange(n, dtype=np.float64)[:, None]
        one = kind(1, 1, True, max_samples)
        one.add(0, values)
        assert one.kept(0)[:, 0].tolist() == want, ("one chunk", n)
        cuts = np.sort(rng.choice(np.arange(1, n), size=min(n - 1, 4), replace=False)) \
            if n > 1 else []
        chunks = np.split(np.arange(n), cuts)
        in_order = kind(1, 1, True, max_samples)
        for c in chunks:  # no index: each after the rows added before
            in_order.add(0, values[c])
        assert in_order.kept(0)[:, 0].tolist() == want, ("chunks in order", n)
        shuffled = kind(1, 1, True, max_samples)
        for k in rng.permutation(len(chunks)):  # out of order, each with its places
            shuffled.add(0, values[chunks[k]], chunks[k])
        assert shuffled.kept(0)[:, 0].tolist() == want, ("chunks out of order", n)
        assert len(want) <= max_samples


def test_rangestats_cap_counts_values_per_row_group():
    """The cap is ``KEEP_VALUES // n_conv`` rows (values, not rows): with 4 conversions a
    group holds 6 rows of 24 values, and its rows are halved as for one conversion at 6."""
    n = 40
    stats = _Small(2, 4, True, 1)
    a = np.repeat(np.arange(n, dtype=np.float64)[:, None], 4, axis=1)
    stats.add(0, a)
    stats.add(1, a[:5])
    assert stats.kept(0)[:, 0].tolist() == _expected_kept(n, 1, 4)
    assert stats.kept(1)[:, 0].tolist() == [0]  # group 1 on its own
    assert stats.n == n


# -------------------------------------------------------------------------------------------
# mapping/deploy.py: calibration deploy cannot read
# -------------------------------------------------------------------------------------------


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 3))


@pytest.mark.parametrize("calibration", [
    np.array([["a"] * 8] * 4),  # str
    np.array([[1.0] * 8] * 4, dtype=object),
    np.array(["2026-01-01"] * 4, dtype="datetime64[D]"),
    [None, None],
    [b"abcdefgh"],  # a list of bytes objects (bytes themselves iterate as ints)
], ids=["str-array", "object-array", "datetime-array", "nones", "bytes-items"])
def test_deploy_refuses_calibration_it_cannot_read_with_a_mapping_error(calibration):
    """deploy's Raises: "MappingError ... calibration data ... of a kind deploy cannot read".
    Kills: the ndarray dtype check removed (torch's TypeError "can't convert np.ndarray of
    type numpy.object_"); ``x is None`` or ``bytes`` dropped from the DataLoader items'
    refusal (an AttributeError from inside the model)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(MappingError, match="calibration"):
            cimsim.deploy(_linear(), "ideal", calibration, progress=False)


def test_deploy_takes_a_bool_array_as_numbers():
    """``"biufc"``: a bool array is an array of numbers (the ``'b'`` dropped: refused as "an
    array of bool values"); the layer's own check then names the input's dtype."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(MappingError, match="its input is bool, not floating point"):
            cimsim.deploy(_linear(), "ideal", np.zeros((4, 8), dtype=bool), progress=False)


@pytest.mark.parametrize("calibration", [
    [np.float32(1.0)] * 4,
    [np.int64(1)] * 4,
    [list(row) for row in np.zeros((4, 8), np.float32)],  # a nested list from a float32 table
], ids=["float32-numbers", "int64-numbers", "float32-nested-list"])
def test_deploy_refuses_a_list_of_numpy_numbers_with_a_mapping_error(calibration):
    """BUG (fails on the code under test): a list of NumPy scalars (a 1-D array's values, or
    ``[list(row) for row in table]`` of a float32 table) is read as a DataLoader like a list of
    Python numbers, but the refusal checks ``isinstance(x, (int, float, str, bytes))`` only:
    ``np.float64`` is a float and is refused, while ``np.float32`` / ``np.int64`` are neither,
    so each number is handed to the model and deploy fails with ``AttributeError:
    'numpy.float32' object has no attribute 'dim'`` from inside the layer (cimsim/mapping/
    layers.py), the error the refusal was added to replace (``np.generic`` belongs there)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(MappingError, match="calibration"):
            cimsim.deploy(_linear(), "ideal", calibration, progress=False)


# -------------------------------------------------------------------------------------------
# sweep/table.py and run.py: a chip field's column, label and cost basis
# -------------------------------------------------------------------------------------------


def _table(chip, points):
    from cimsim.sweep.table import sweep_table

    ids = [f"p{i}" for i in range(len(points))]
    records = {pid: {"accuracy": 0.5 + 0.1 * i, "energy_pj_per_inference": 2.0 - 0.1 * i,
                     "status": "ok"} for i, pid in enumerate(ids)}
    return sweep_table([resolve_point(chip, p) for p in points], ids, records)


def test_a_field_column_sits_between_the_axes_and_the_measurements(rram):
    """Kills: ``axis_columns`` keeping ``on_front`` as an axis (a label and a printed column of
    it); ``on_front`` inserted without counting the field columns (it landed among the
    measurements, before ``wall_s``, not before ``point_id``)."""
    from cimsim.sweep import AXES
    from cimsim.sweep.table import METRICS, axis_columns

    frame = _table(rram, [{"input_bits": 4, "tech.vdd_v": 1.0},
                          {"input_bits": 8, "tech.vdd_v": 0.1 + 0.2}])
    assert list(frame.columns) == [*AXES, "input_bits", "tech.vdd_v", *METRICS, "on_front",
                                   "point_id"]
    assert axis_columns(frame) == [*AXES, "input_bits", "tech.vdd_v"]
    front = frame.assign(on_front=[True, False])  # on_front varies: still no axis
    assert axis_columns(front) == [*AXES, "input_bits", "tech.vdd_v"]
    from cimsim.sweep import point_labels

    assert point_labels(front) == ["input_bits=4 vdd_v=1", "input_bits=8 vdd_v=0.3"]


def test_a_float_field_is_labelled_in_short_form_and_fields_come_first(rram):
    """``_fmt_axis``' ``{value:g}`` for a float field (dropped: 'vdd_v=1.0',
    'vdd_v=0.30000000000000004'); ``point_labels`` naming the fields before the named axes
    (the fields are the outer loops), as 'input_bits=4 5b'."""
    from cimsim.sweep import point_labels

    frame = _table(rram, [{"tech.vdd_v": 1.0, "adc_bits": 5},
                          {"tech.vdd_v": 0.1 + 0.2, "adc_bits": 6}])
    assert point_labels(frame) == ["vdd_v=1 5b", "vdd_v=0.3 6b"]


def test_a_bool_field_column_stays_bool(rram):
    """The numeric cast of a field column skips bools (``not isinstance(v, bool)`` dropped: a
    bool field such as ``dac.shift_unsigned_inputs`` became an int64 column of 0 and 1)."""
    frame = _table(rram, [{"dac.shift_unsigned_inputs": False},
                          {"dac.shift_unsigned_inputs": True}])
    col = frame["dac.shift_unsigned_inputs"]
    assert col.dtype.kind in "bO" and [bool(v) for v in col] == [False, True]
    assert all(isinstance(v, (bool, np.bool_)) for v in col)


def test_the_cost_basis_is_named_by_the_axis_that_tells_the_groups_apart(rram):
    """``_cost_basis``: each basis named by the first axis whose values are disjoint between
    the groups (``tech.cost_model``), not every axis that differs (``input_bits`` 4, 8 against
    8 differs but does not tell them apart). Kills: ``apart[:1] or differ`` -> ``differ``;
    the disjointness test dropped (``apart = differ``: 'input_bits 4, 8: ...')."""
    from cimsim.sweep.run import _cost_basis

    points = [{"input_bits": 4, "tech.cost_model": "tables"},
              {"input_bits": 8, "tech.cost_model": "tables"},
              {"input_bits": 8, "tech.cost_model": "physical"}]
    text = _cost_basis(rram, points, [resolve_point(rram, p) for p in points])
    parts = text.split("; ")
    assert len(parts) == 2, text
    assert parts[0].startswith("tech.cost_model tables: ") and \
        parts[1].startswith("tech.cost_model physical: "), text
    assert "input_bits" not in text


# -------------------------------------------------------------------------------------------
# cli.py: --vary and train --sweep
# -------------------------------------------------------------------------------------------


def test_vary_reads_quoted_commas_and_refuses_an_empty_value_list():
    """``_top_level_parts``' quotes (dropped: "'a,b'" split into "'a" and "b'", then refused
    as no TOML value); ``_vary_values``' ``not rest.strip()`` (dropped: 'input_bits=' said
    "an empty value" rather than the FIELD=VALUE form)."""
    from cimsim.cli import _vary_values

    assert _vary_values("tech.cost_model='a,b',c") == ("tech.cost_model", ["a,b", "c"])
    assert _vary_values('tech.cost_model="x,[y",z') == ("tech.cost_model", ["x,[y", "z"])
    for text in ("input_bits=", "input_bits= "):
        with pytest.raises(ConfigError, match=r"is invalid; allowed: FIELD=VALUE,VALUE"):
            _vary_values(text)


def _main(capsys, args):
    from cimsim.cli import main

    rc = main(args)
    return rc, capsys.readouterr().err


def test_cli_vary_noise_and_time_meet_their_flags(tmp_path, capsys):
    """``--vary thermal_sigma_lsb=...`` is checked against ``--noise`` (its attribute is
    ``args.noise``: the map dropped, a bare ``--vary thermal_sigma_lsb`` raised
    AttributeError; the flag's name dropped, the message said '--thermal-sigma-lsb'); a sweep
    of ``--time`` alone is a sweep (``args.time is None`` dropped from the no-axis refusal:
    refused as "no axis given"). Each stops at the ``--out`` check, before any work."""
    file = tmp_path / "file"
    file.write_text("x")
    base = ["sweep", "--model", "demo", "--chip", "rram-22nm"]
    rc, err = _main(capsys, base + ["--out", str(tmp_path / "e"), "--vary",
                                    "thermal_sigma_lsb=0,1", "--noise", "0.5"])
    assert rc == 2 and "--vary thermal_sigma_lsb=... and --noise both give the axis " \
        "thermal_sigma_lsb" in err, err
    for extra in (["--vary", "thermal_sigma_lsb=0,1"], ["--time", "1"]):
        rc, err = _main(capsys, base + ["--out", str(file), *extra])
        assert rc == 2 and "is a file, not a folder" in err, (extra, err)


TRAIN = ["train", "--model", "demo", "--chip", "rram-22nm", "--limit", "32", "--batch-size",
         "16", "--calibration", "32", "--epochs", "1"]


def test_train_sweep_with_no_deployable_point_besides_skipped_ones_is_refused_first(
        tmp_path, capsys):
    """``_check_sweep_bits``: with one point skipped (cols_per_adc 64 on 32-row arrays, each
    value fine elsewhere) and the others not deployable (64- and 32-row arrays: the twin is
    tiled for 128), no point can run:
    one line before the epochs, naming the chip's own values. Kills: the skipped points not
    counted (``len(reasons) == len(points)``: the training ran, then the sweep refused
    after it)."""
    rc, err = _main(capsys, TRAIN + ["--sweep", "array_size=64,32", "--sweep",
                                     "cols_per_adc=64,16", "--out", str(tmp_path / "run")])
    assert rc == 2 and "--sweep: the trained model can be deployed at none of array_size " \
        "64, 32; cols_per_adc 64, 16" in err, err
    assert "allowed: values that include the chip's own (array_size 128, cols_per_adc 8)" \
        in err, err
    assert not list(tmp_path.rglob("checkpoint.pt"))


def test_train_sweep_names_a_chip_fields_own_value(tmp_path, capsys):
    """No deployable point on a chip-field grid (``--sweep input_bits=4``: the twin quantizes
    8-b inputs): the allowed clause names the chip's own value of the field (``_check_sweep_bits``
    returning None: 'input_bits None')."""
    rc, err = _main(capsys, TRAIN + ["--sweep", "input_bits=4", "--out", str(tmp_path / "r")])
    assert rc == 2 and err.rstrip().endswith(
        "allowed: values that include the chip's own (input_bits 8)"), err


class _Stop(Exception):
    pass


def test_train_time_leaves_a_swept_time_axis_alone(tmp_path, monkeypatch):
    """``train --time 1h --sweep time_s=1h,1d``: the twin trained for 1 h, the sweep over both
    times (``"time_s" not in grid`` dropped: the swept times replaced by the training's
    [3600.0])."""
    import cimsim.sweep
    from cimsim.cli import main

    grids = []

    def fake_run_sweep(prepared, data, chip, grid, out, **kwargs):
        grids.append(grid)
        raise _Stop

    monkeypatch.setattr(cimsim.sweep, "run_sweep", fake_run_sweep)
    args = [*TRAIN, "--out", str(tmp_path)]
    args[args.index("rram-22nm")] = "pcm-22nm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(_Stop):
            main([*args, "--time", "1h", "--sweep", "time_s=1h,1d"])
    assert grids[0]["time_s"] == [3600.0, 86400.0]


@pytest.mark.parametrize("axis", ["adc_bits", "time_s"])
def test_train_sweep_a_named_axis_without_values_is_refused_as_such(tmp_path, capsys, axis):
    """``--sweep adc_bits`` (no '='): "--sweep 'adc_bits' is invalid; allowed: FIELD=VALUE"
    (``or not eq`` dropped: the empty text went to the axis's own reader, which said
    something else or took '' as a value)."""
    rc, err = _main(capsys, TRAIN + ["--sweep", axis, "--out", str(tmp_path / "r")])
    assert rc == 2 and f"--sweep {axis!r} is invalid; allowed: FIELD=VALUE" in err, err


# -------------------------------------------------------------------------------------------
# report.py: colours of names outside the cost components
# -------------------------------------------------------------------------------------------


def test_names_outside_the_components_get_colours_by_name():
    """``component_color``: names outside the components get "colours of their own ... fixed
    by the name", none of the palette's (``spare[0]`` for every name: 'other' and
    '(reprogramming)' one colour in one figure)."""
    from cimsim.report import PALETTE, component_color

    names = ("other", "(reprogramming)", "array", "io")
    colours = [component_color(n) for n in names]
    assert len(set(colours)) > 1, colours
    assert not set(colours) & set(PALETTE)
    assert colours == [component_color(n) for n in names]

"""Any valid chip a user writes gets a sane answer; any invalid one a clear error (issue 13).

Property tests over :func:`tests.chip_strategies.valid_chips`, chips drawn across the whole
schema (every converter, cell, drive, domain, encoding, read-out, cost model, node 3..180 nm,
arrays up to 1024 x 1024, stated and unstated windows):

* the TOML round trip (save, load, equal), through a file and the loader;
* ``datasheet`` at both scopes: finite positive TOPS, TOPS/W, TOPS/mm² and their 1-b figures,
  or a ``ConfigError`` naming the field when the chip cannot run the standard workload;
* ``cimsim.matmul`` + ``cimsim.cost.estimate``: finite non-negative energy per component,
  positive area and latency; ``cimsim.deploy`` of a small MLP: finite outputs and report, or a
  cimsim error naming a chip field;
* what docs/cost-model.md promises, everything else fixed: energy per op non-decreasing
  in ADC bits ("Monotone", §0) and in the supply (``s = (vdd_v / 0.8 V)²`` scales every CMOS
  energy, §1); array and chip area non-decreasing in rows, columns and ADCs per array (§2:
  instances x area per instance);
* one broken field of a valid chip: ``ConfigError`` naming the field and what is allowed, from
  the Python API and from ``cimsim datasheet bad.toml`` (exit 2, one line, no traceback).

* a user's own TOML path wherever a preset name goes (``datasheet``, ``demo``, ``sweep``,
  ``simulate``).

The default run draws small arrays (``max_size = 128``); ``-m slow`` runs more examples over
the full range. Every failure the properties found has a regression test below, pinned to the
failing example.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import cimsim
from cimsim.arrays.encoding import weight_range
from cimsim.arrays.program import program
from cimsim.config import ADCKind, ChipConfig, load_chip
from cimsim.cost import estimate, layer_work
from cimsim.cost.area import array_area_um2, chip_area_um2
from cimsim.cost.datasheet import datasheet
from cimsim.errors import CimsimError, ConfigError, MappingError
from tests.chip_strategies import enum_fields, invalid_changes, valid_chips

FIGURES = ("tops", "tops_per_w", "tops_per_mm2", "tops_1b", "tops_per_w_1b", "tops_per_mm2_1b")
FIELD = re.compile(r"\b(?:[A-Z][A-Za-z]*Config|array|device|dac|adc|noise|tech)\.[a-z_0-9]+")
"""A message names a field: ``ADCConfig.bits``, ``array.n_cols``, ``adc.placement``, ..."""

SMALL = valid_chips(max_size=128)
N_EXAMPLES = int(os.environ.get("CIMSIM_FUZZ_EXAMPLES", "25"))
"""Examples per property in the default run; a longer hunt: ``CIMSIM_FUZZ_EXAMPLES=500
HYPOTHESIS_PROFILE=dev pytest tests/cost/test_chip_fuzz.py`` (fresh random draws)."""
FAST = settings(max_examples=N_EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
SLOW = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _names_a_field(exc: BaseException) -> None:
    assert FIELD.search(str(exc)), f"error names no field: {exc}"


def _sheet(chip: ChipConfig, scope: str, density: float = 0.5) -> dict | None:
    """The datasheet, or None where the chip cannot run the standard workload (an array too
    narrow for one weight, a layer-output converter with several conversions per output):
    then the error is a ConfigError naming the field."""
    try:
        return datasheet(chip, scope=scope, input_density=density)
    except ConfigError as exc:
        _names_a_field(exc)
        return None


# ---------------------------------------------------------------------------------------------
# TOML round trip
# ---------------------------------------------------------------------------------------------
@FAST
@given(chip=valid_chips())
@example(chip=ChipConfig(name="a\x7fb", description="DEL \x7f"))  # JSON leaves DEL bare
def test_toml_round_trip_of_any_valid_chip(chip, tmp_path_factory):
    path = tmp_path_factory.mktemp("chips") / "my chip.toml"
    chip.save(path)
    assert load_chip(path) == chip
    assert load_chip(str(path)) == chip
    assert ChipConfig.from_dict(chip.to_dict()) == chip


# ---------------------------------------------------------------------------------------------
# datasheet
# ---------------------------------------------------------------------------------------------
def _check_datasheet(chip: ChipConfig, density: float = 0.5) -> None:
    for scope in ("macro", "chip"):
        sheet = _sheet(chip, scope, density)
        if sheet is None:
            return
        for name in FIGURES:
            value = sheet[name]
            assert math.isfinite(value) and value > 0, (scope, name, value)
        for c, e in sheet["energy_pj_by_component"].items():
            assert math.isfinite(e) and e >= 0, (scope, c, e)
        for c, a in sheet["area_um2_by_component"].items():
            assert math.isfinite(a) and a >= 0, (scope, c, a)


@FAST
@given(chip=SMALL, density=st.one_of(st.just(0.5), st.floats(1e-9, 1.0)))
def test_datasheet_of_any_valid_chip_is_finite_and_positive(chip, density):
    _check_datasheet(chip, density)


@pytest.mark.slow
@SLOW
@given(chip=valid_chips(wide=True))
def test_datasheet_of_any_valid_chip_is_finite_and_positive_slow(chip):
    """Arrays up to 1024 x 1024 and every field over the validator's whole range."""
    _check_datasheet(chip)


@pytest.mark.parametrize(("toml", "match"), [
    # an array whose columns cannot hold one differential pair
    ("[array]\nn_cols = 1\ncols_per_adc = 1\n", "cannot run the standard workload"),
    # a layer-output converter on bit-serial inputs: several conversions per output (refused
    # when the chip is loaded since; before, when the workload was programmed)
    ("[adc]\nplacement = 'layer_output'\n", "DACConfig.bits = 1 .*layer_output"),
])
def test_a_chip_that_cannot_run_the_workload_is_a_config_error(toml, match, tmp_path):
    """Found by the property above: the geometry errors of ``program`` reached the caller as
    MappingError; the datasheet names them as the chip's ConfigError."""
    path = tmp_path / "bad.toml"
    path.write_text("name = 'bad'\n" + toml)
    with pytest.raises(ConfigError, match=match) as info:
        datasheet(str(path))
    _names_a_field(info.value)


def test_layer_output_chip_gets_a_datasheet_on_one_row_group():
    """Found by the property above: a layer-output chip whose one conversion holds a row
    group (one plane, one column per output) had no datasheet, because the workload filled
    every row; it now fills one row group."""
    chip = ChipConfig.from_dict(dict(
        weight_bits=3, input_bits=4, weight_encoding="offset",
        array=dict(n_rows=64, n_cols=32, rows_per_conversion=16, cols_per_adc=4),
        device=dict(cell="ideal", bits_per_cell=3), dac=dict(bits="all"),
        adc=dict(placement="layer_output", range_policy="full_scale")))
    sheet = datasheet(chip)
    assert all(math.isfinite(sheet[k]) and sheet[k] > 0 for k in FIGURES)


# ---------------------------------------------------------------------------------------------
# matmul + estimate
# ---------------------------------------------------------------------------------------------
@FAST
@given(chip=SMALL, data=st.data())
def test_matmul_estimate_of_any_valid_chip_is_finite(chip, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    k = data.draw(st.integers(1, 2 * chip.array.n_rows), label="K")
    n = data.draw(st.integers(1, 6), label="N")
    lo, hi = weight_range(chip)
    if chip.weight_encoding.value == "binary":
        w = 2 * rng.integers(0, 2, size=(n, k)) - 1
    else:
        w = rng.integers(lo, hi + 1, size=(n, k))
    x = rng.integers(0, 2**chip.input_bits, size=(3, k))
    try:
        _, events = cimsim.matmul(x, w, chip, calibration=x)
        block = program(w, chip)
    except (ConfigError, MappingError) as exc:  # geometry the chip cannot hold: named
        _names_a_field(exc)
        return
    rep = estimate([layer_work(events, block)], chip)
    for c, e in rep.energy_by_component().items():
        assert math.isfinite(e) and e >= 0, (c, e)
    t = rep.totals
    assert math.isfinite(t["area_mm2"]) and t["area_mm2"] > 0
    assert math.isfinite(t["latency_ns_per_inference"]) and t["latency_ns_per_inference"] > 0
    assert math.isfinite(t["energy_pj_per_inference"]) and t["energy_pj_per_inference"] > 0


_MLP_IN = 12
_PARTS = ("array", "device", "dac", "adc", "noise", "tech", "quant")


@settings(max_examples=max(5, N_EXAMPLES // 2), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(chip=valid_chips(max_size=64))
def test_deploy_of_a_small_model_on_any_valid_chip(chip):
    """``cimsim.deploy`` of a two-layer MLP: finite outputs and a finite positive report, or
    a cimsim error (too few arrays, a geometry the chip cannot hold, 1-b signed inputs) that
    names what to change."""
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(_MLP_IN, 6), torch.nn.ReLU(),
                                torch.nn.Linear(6, 3)).eval()
    for p in model.parameters():
        p.data = torch.randn(p.shape, generator=gen)
    x = torch.randn(8, _MLP_IN, generator=gen)
    try:
        sim = cimsim.deploy(model, chip, x)
        y = sim(x)
        rep = estimate(sim.work())
    except CimsimError as exc:
        names = {f.name for part in (chip, *(getattr(chip, s) for s in _PARTS))
                 for f in dataclasses.fields(part)}
        assert any(re.search(rf"\b{n}\b", str(exc)) for n in names), exc
        return
    assert torch.isfinite(y).all()
    for c, e in rep.energy_by_component().items():
        assert math.isfinite(e) and e >= 0, (c, e)
    for k in ("area_mm2", "latency_ns_per_inference", "energy_pj_per_inference", "tops_per_w"):
        assert math.isfinite(rep.totals[k]) and rep.totals[k] > 0, (k, rep.totals[k])


# ---------------------------------------------------------------------------------------------
# monotonicity the docs promise
# ---------------------------------------------------------------------------------------------
def _energy_per_op(chip: ChipConfig, scope: str = "macro") -> float | None:
    sheet = _sheet(chip, scope)
    return None if sheet is None else sheet["energy_pj_per_op"]


@FAST
@given(chip=SMALL)
def test_energy_per_op_non_decreasing_in_adc_bits(chip):
    assume(chip.adc.kind is not ADCKind.DIGITAL and chip.adc.bits < 10)
    more = chip.replace(adc=chip.adc.replace(bits=chip.adc.bits + 1))
    for scope in ("macro", "chip"):
        e0, e1 = _energy_per_op(chip, scope), _energy_per_op(more, scope)
        if e0 is not None and e1 is not None:
            assert e1 >= e0 * (1 - 1e-9), (scope, e0, e1)


@FAST
@given(chip=SMALL, factor=st.floats(1.01, 3.0))
def test_energy_per_op_non_decreasing_in_supply(chip, factor):
    vdd = min(chip.tech.vdd_v * factor, 5.0)
    assume(vdd > chip.tech.vdd_v)
    # a stated word-line driver supply rises with it (a supply below the swing it drives, the
    # vdd when wordline_v is absent, is refused)
    high = chip.tech.wordline_high_v
    more = chip.replace(tech=chip.tech.replace(
        vdd_v=vdd, wordline_high_v=None if high is None else min(high * factor, 5.0)))
    for scope in ("macro", "chip"):
        e0, e1 = _energy_per_op(chip, scope), _energy_per_op(more, scope)
        if e0 is not None and e1 is not None:
            assert e1 >= e0 * (1 - 1e-9), (scope, e0, e1)


def _areas(chip: ChipConfig) -> tuple[float, float]:
    """One array's area and the chip's, um^2."""
    return sum(array_area_um2(chip).values()), sum(chip_area_um2(chip).values())


def _valid(make, base: ChipConfig | None = None) -> ChipConfig | None:
    """The chip ``make`` builds, or None where it is refused or its array holds fewer outputs
    than ``base``'s: a ripple column's sum of more rows needs more guard columns, so the same
    columns hold fewer outputs and fewer shift-and-adds (1 x 2 holds two, 2 x 2 one: fuzz
    seed 2718), or none (1 x 1 grown a row: mapping refuses it; seed 31415). Its smaller
    periphery is the model's right answer, not a comparable area."""
    from cimsim.arrays.program import n_arrays_for_shape
    from cimsim.cost import ripple

    try:
        chip = make()
        n_arrays_for_shape(1, [(0, 1)], chip)  # refuses a geometry that holds no output
    except (ConfigError, MappingError):
        return None
    if (base is not None and ripple.applies(chip)
            and ripple.outputs_per_array(chip) < ripple.outputs_per_array(base)):
        return None
    return chip


@settings(max_examples=4 * N_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(chip=valid_chips(), grow=st.integers(1, 512))
def test_area_non_decreasing_in_rows_columns_and_adcs(chip, grow):
    a = _areas(chip)
    arr = chip.array
    rows = _valid(lambda: chip.replace(array=arr.replace(n_rows=arr.n_rows + grow)), chip)
    cols = _valid(lambda: chip.replace(array=arr.replace(n_cols=arr.n_cols + grow)))
    adcs = _valid(lambda: chip.replace(array=arr.replace(
        cols_per_adc=max(1, arr.cols_per_adc - grow))))
    for bigger in (rows, cols, adcs):
        if bigger is not None:
            for before, after in zip(a, _areas(bigger), strict=True):
                assert after >= before * (1 - 1e-12), (bigger.array, before, after)


# ---------------------------------------------------------------------------------------------
# invalid chips: ConfigError naming the field and what is allowed, API and CLI
# ---------------------------------------------------------------------------------------------
@FAST
@given(chip=SMALL, change=invalid_changes())
def test_one_broken_field_is_a_config_error_naming_it(chip, change, tmp_path_factory):
    changes, name = change
    data = chip.to_dict()
    for section, key, value in changes:
        (data[section] if section else data)[key] = value
    levels = 1 << data["device"]["bits_per_cell"]
    for key in ("drift_nu_mean", "drift_nu_sigma", "read_noise_q_s"):
        if len(data["device"][key]) not in (0, 1, levels):  # a change of bits_per_cell
            data["device"][key] = data["device"][key][:1]  # would be named first otherwise
    with pytest.raises(ConfigError) as info:
        ChipConfig.from_dict(data)
    message = str(info.value)
    assert name in message and "allowed" in message, message
    for section, key, value in changes:
        choice = enum_fields().get((section, key))
        if choice is not None and str(value).startswith("not_a_"):  # every allowed value
            assert all(repr(c.value) in message for c in choice), message
    # the same file on the command line: exit 2, one line naming the field, no traceback
    from cimsim.config import _dump_toml

    path = tmp_path_factory.mktemp("bad") / "bad.toml"
    path.write_text(_dump_toml(data))
    rc, err = _cli(["datasheet", str(path)])
    assert rc == 2 and err.count("\n") == 1 and name in err and "Traceback" not in err, err


def _cli(argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    from cimsim.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, err.getvalue()


def test_cli_datasheet_of_a_bad_toml_in_a_fresh_process(tmp_path):
    """The console entry point itself (not ``main`` in-process): exit 2, no traceback."""
    path = tmp_path / "bad.toml"
    path.write_text("name = 'x'\n[adc]\nkind = 'pipelined'\n")
    proc = subprocess.run([sys.executable, "-c", "from cimsim.cli import main; "
                           "raise SystemExit(main())", "datasheet", str(path)],
                          capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "ADCConfig.kind" in proc.stderr and "'sar'" in proc.stderr


def test_ramp_above_the_level_fit_limit_is_refused_when_loaded():
    """Found by the datasheet property (wide draws): a 17..24-b ``ramp`` passed the validator
    and failed in the level fit with "bits must be an int in [1, 16]", naming no field."""
    with pytest.raises(ConfigError, match=r"ADCConfig\.bits = 17 .*allowed: .*\[1, 16\].*ramp"):
        ChipConfig.from_dict({"adc": {"kind": "ramp", "range_policy": "calibrated", "bits": 17}})
    chip = ChipConfig.from_dict({"adc": {"kind": "ramp", "range_policy": "calibrated",
                                         "bits": 16}})
    assert chip.adc.bits == 16


# ---------------------------------------------------------------------------------------------
# a user's own TOML path works wherever a preset name does
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def user_chip(tmp_path_factory) -> Path:
    """A chip of the user's own: a published macro, renamed and given 8 arrays, saved under a
    folder and file name with a space and an upper-case suffix."""
    chip = load_chip("published/hermes-jssc22")
    chip = chip.replace(name="my-macro", array=chip.array.replace(arrays_per_tile=8))
    path = tmp_path_factory.mktemp("user chips") / "my macro.TOML"
    chip.save(path)
    return path


def test_user_toml_loads_like_a_preset(user_chip):
    assert load_chip(user_chip).name == "my-macro"
    assert datasheet(str(user_chip))["chip"] == "my-macro"
    with pytest.raises(ConfigError, match="chip file .* not found"):
        load_chip(user_chip.with_name("missing.TOML"))  # a file, not an unknown preset


@pytest.mark.parametrize("command", ["datasheet", "demo", "sweep", "simulate"])
def test_user_toml_path_on_every_chip_command(command, user_chip, tmp_path, capsys):
    out = tmp_path / "out"
    if command == "datasheet":
        argv = ["datasheet", str(user_chip), "--scope", "chip", "--breakdown"]
    elif command == "demo":
        argv = ["demo", "--fast", "--chip", str(user_chip), "--out", str(out)]
    elif command == "sweep":
        argv = ["sweep", "--model", "demo", "--chip", str(user_chip), "--adc-bits", "6",
                "--limit", "16", "--out", str(out)]
    else:
        from cimsim.data import load_digits_split
        from cimsim.models import load_digits_cnn

        torch = pytest.importorskip("torch")
        _, _, x, y = load_digits_split()
        np.savez(tmp_path / "d.npz", x=x[:24].numpy(), y=y[:24].numpy())
        torch.export.save(torch.export.export(load_digits_cnn(), (x[:2],),
                                              dynamic_shapes=({0: torch.export.Dim("b")},)),
                          tmp_path / "m.pt2")
        argv = ["simulate", "--model", str(tmp_path / "m.pt2"), "--data",
                str(tmp_path / "d.npz"), "--chip", str(user_chip), "--out", str(out)]
    from cimsim.cli import main

    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "my-macro" in printed or command == "datasheet" and "TOPS/W" in printed


@pytest.mark.parametrize("fit", ["kmeans_optimal", "bs_kmq"])
def test_ramp_above_12_bits_fits_its_levels(fit):
    """Found by the datasheet property: a 13..16-b ``ramp`` fitted by ``kmeans_optimal`` or
    ``bs_kmq`` failed with "max_bins must be an int >= 2**bits" (the fit's 4096-bin default,
    no field named); the default now holds one bin per level."""
    chip = ChipConfig.from_dict(dict(
        weight_bits=2, input_bits=2, array=dict(n_rows=16, n_cols=8, cols_per_adc=1),
        adc=dict(kind="ramp", bits=14, range_policy="calibrated", level_fit=fit)))
    sheet = datasheet(chip)
    assert all(math.isfinite(sheet[k]) and sheet[k] > 0 for k in FIGURES)


def test_dac_bits_error_names_all_and_coefficients_refuse_booleans():
    """Found by fuzzing TOML values: ``dac.bits = "ALL"`` was told "an integer in [1, 16]"
    (not that "all" is the other allowed value), and ``poly_coeffs = [true]`` was read as 1.0
    where every other number field refuses a boolean."""
    with pytest.raises(ConfigError, match=r"DACConfig\.bits = 'ALL' .*\[1, 16\], or 'all'"):
        ChipConfig.from_dict({"dac": {"bits": "ALL"}})
    with pytest.raises(ConfigError, match=r"NoiseConfig\.poly_coeffs"):
        ChipConfig.from_dict({"noise": {"poly_coeffs": [True]}})
    assert ChipConfig.from_dict({"dac": {"bits": "all"}}).dac.bits is None


@pytest.mark.parametrize(("section", "changes"), [
    ("tech", {"t_read_ns": 5e-324}),  # ZeroDivisionError in the datasheet
    ("tech", {"clock_mhz": 1e-300}),  # TOPS underflowed to 0
    ("tech", {"cap_density_ff_per_um2": 5e-324, "compute_domain": "charge"}),  # area inf
    ("device", {"g_max_us": 1e300}),  # cell energy inf, TOPS/W 0 (with 1e9-ns reads at 5 V)
])
def test_values_whose_figures_are_not_finite_are_refused(section, changes):
    """Found by fuzzing each field at the ends of the range the validator took: these chips
    loaded and their datasheet divided by zero or came out 0. The ranges are now physical
    (1 fs .. 1 s reads and windows, 1 kHz .. 1 THz clocks, capacitor densities from 0.001
    fF/um^2, conductances up to 1 S); the ends of the new ranges give finite figures."""
    data = {"tech": {"cost_model": "physical"}}
    data.setdefault(section, {}).update(changes)
    with pytest.raises(ConfigError, match="allowed"):
        ChipConfig.from_dict(data)
    ends = ChipConfig.from_dict({
        "device": {"g_max_us": 1e6},
        "tech": {"cost_model": "physical", "compute_domain": "charge", "t_read_ns": 1e9,
                 "clock_mhz": 1e-3, "cap_density_ff_per_um2": 1e-3, "v_read_v": 5.0}})
    for tech in ({}, {"compute_domain": "current"},
                 {"t_read_ns": 1e-6, "clock_mhz": 1e6, "compute_domain": "current"}):
        sheet = datasheet(ends.replace(tech=ends.tech.replace(**tech)), scope="chip")
        assert all(math.isfinite(sheet[k]) and sheet[k] > 0 for k in FIGURES), sheet


def test_a_supply_below_the_threshold_is_refused_when_loaded(tmp_path):
    """Found by the deploy property (wide draws): a physical chip at 0.01 V loaded, deployed
    and simulated, and only its pricing failed (the settling model's switch does not
    conduct), after the work; it is now refused when the chip is built, and the command line
    stops before any deployment."""
    bad = {"tech": {"cost_model": "physical", "node_nm": 22.0, "vdd_v": 0.2}}
    with pytest.raises(ConfigError, match=r"tech\.vdd_v = 0\.2 .*allowed: above the 0\.209-V"):
        ChipConfig.from_dict(bad)
    # the tables model settles nothing: its supply is only a factor
    assert ChipConfig.from_dict({"tech": {"vdd_v": 0.2}}).tech.vdd_v == 0.2
    # a digital read-out's logic switches at its clock: at 0.1 V a 1-GHz adder tree was
    # priced at 1.4e4 TOPS/W
    digital = {"tech": {"cost_model": "physical", "node_nm": 4.0, "vdd_v": 0.1},
               "adc": {"kind": "digital"}, "device": {"cell": "sram"}}
    with pytest.raises(ConfigError, match=r"tech\.vdd_v = 0\.1 .*threshold.*logic"):
        ChipConfig.from_dict(digital)
    path = tmp_path / "low.toml"
    path.write_text("name = 'low'\n[tech]\ncost_model = 'physical'\nvdd_v = 0.2\n")
    rc, err = _cli(["demo", "--fast", "--chip", str(path), "--out", str(tmp_path / "o")])
    assert rc == 2 and "tech.vdd_v" in err and not (tmp_path / "o").exists()

"""Digital-CIM columns of ripple adders (``tech.digital_column = 'ripple'``,
``cimsim.cost.ripple``): the guard columns and the outputs an array holds, known answers by hand
for the energy per conversion and the area per column, the exact simulation, the validation of
the new fields, their TOML round trip, and that the default leaves the adder tree as it was."""

from __future__ import annotations

import numpy as np
import pytest

import cimsim
from cimsim.arrays.program import n_arrays_for_shape, program
from cimsim.cli import main
from cimsim.config import ChipConfig, DigitalColumn, load_chip, ripple_guard_columns
from cimsim.cost import datasheet, estimate, layer_work, ripple
from cimsim.cost.area import area_instances, array_area_um2
from cimsim.cost.datasheet import workload
from cimsim.cost.models import (
    GATE_CAPACITANCE_FF_PER_UM,
    ADCModel,
    CellModel,
    DACModel,
    ShiftAddModel,
    adder_tree_full_adders,
)
from cimsim.cost.tables import tech_table
from cimsim.errors import ConfigError, MappingError
from cimsim.events import Action, Component
from tests.conftest import assert_exact

COLONNADE = "cimsim/presets/published/colonnade-jssc21.toml"


def _chip(weight_bits=8, n_rows=128, n_cols=128, regs=1, column="ripple", vdd=0.8,
          rows_per_conversion=None) -> ChipConfig:
    """A Colonnade-like macro: 65 nm, 1-b inputs, two's-complement weights (binary at 1 b)."""
    bits = int(np.ceil(np.log2(2 * (rows_per_conversion or n_rows) + 1)))
    return ChipConfig.from_dict(dict(
        name="ripple", weight_bits=weight_bits, input_bits=1,
        weight_encoding="binary" if weight_bits == 1 else "twos_complement",
        array=dict(n_rows=n_rows, n_cols=n_cols, cols_per_adc=1, n_tiles=1, arrays_per_tile=1,
                   rows_per_conversion=rows_per_conversion),
        device=dict(cell="sram", bits_per_cell=1), dac=dict(bits=1),
        adc=dict(kind="digital", bits=bits, range_policy="full_scale"),
        tech=dict(node_nm=65.0, vdd_v=vdd, v_read_v=vdd, t_read_ns=10.0, clock_mhz=100.0,
                  cost_model="physical", cell_kind="sram_6t", digital_column=column,
                  pipeline_registers_per_column=regs)))


# -- geometry ----------------------------------------------------------------------------------
def test_guard_columns_are_the_bits_the_column_sum_grows_by():
    # 128 rows: a w-bit weight spans w + 7 columns (Colonnade); 256 rows: w + 8; a tree: none
    assert ripple_guard_columns(_chip()) == 7
    assert ripple_guard_columns(_chip(n_rows=256, n_cols=256)) == 8
    assert ripple_guard_columns(_chip(rows_per_conversion=32)) == 5
    assert ripple_guard_columns(_chip(column="adder_tree")) == 0
    assert ripple.columns_per_output(_chip()) == 15
    assert ripple.columns_per_output(_chip(weight_bits=1)) == 8


@pytest.mark.parametrize("weight_bits, outputs", [(1, 16), (8, 8), (14, 6), (15, 5), (16, 5)])
def test_an_array_holds_floor_n_cols_over_q_plus_g_outputs(weight_bits, outputs):
    # CiMLoop's reading of Colonnade [CL]: 14-b weights 21 columns, 6 per row; 15-b 22, 5
    chip = _chip(weight_bits=weight_bits)
    x, w = workload(chip)
    assert w.shape == (outputs, 128)
    layer = program(np.ones((3 * outputs + 1, 128), dtype=np.int64), chip)
    assert layer.cols_per_tile == outputs * weight_bits
    assert layer.n_arrays == 4 == n_arrays_for_shape(3 * outputs + 1, [(0, 128)], chip)


def test_the_tree_holds_every_column_and_ripple_needs_room_for_its_guard_columns():
    assert workload(_chip(column="adder_tree"))[1].shape == (128 // 8, 128)
    with pytest.raises(MappingError, match="guard columns"):
        program(np.ones((1, 128), dtype=np.int64), _chip(weight_bits=8, n_cols=14))
    # one row per conversion needs no guard column, but a row's adder still spans the whole
    # weight: its 8 columns never split across two arrays of 4 (they did, g = 0)
    one_row = _chip(weight_bits=8, n_cols=4, rows_per_conversion=1)
    assert ripple_guard_columns(one_row) == 0
    with pytest.raises(MappingError, match="guard columns"):
        program(np.ones((1, 128), dtype=np.int64), one_row)
    assert program(np.ones((1, 128), dtype=np.int64),
                   _chip(weight_bits=8, n_cols=12, rows_per_conversion=1)).cols_per_tile == 8


def test_re_pricing_refuses_a_change_of_column_style():
    # the guard columns change the outputs an array holds: not the same run's events
    chip = _chip()
    x, w = workload(chip)
    _, ev = cimsim.matmul(x[:2], w, chip)
    work = [layer_work(ev, program(w, chip))]
    tree = chip.replace(tech=chip.tech.replace(digital_column=DigitalColumn.ADDER_TREE))
    with pytest.raises(ValueError, match="tech.digital_column"):
        estimate(work, tree)
    estimate(work, chip.replace(tech=chip.tech.replace(vdd_v=0.9, v_read_v=0.9)))


# -- known answers -----------------------------------------------------------------------------
def test_energy_per_conversion_by_hand():
    t = tech_table(65.0)
    e_fa, e_reg = t.accumulator_add_energy_pj_per_bit, t.shift_add_energy_pj_per_bit
    # 8-b weight, 128 rows, 1 register: 15 columns add per 8 converted, 128 adders each
    # (128 x 15 / 8 = 240 full additions) and 15 / 8 register bits; 0.8 V: supply factor 1
    model = ADCModel(_chip(), t)
    assert model.energy_pj(Action.CONVERT) == pytest.approx(240 * e_fa + 1.875 * e_reg)
    # 1-b weight: 8 columns per converted column, 1024 additions, 8 register bits; at 0.6 V
    # the digital tables' CMOS energies scale (0.6 / 0.8)^2 = 0.5625
    model = ADCModel(_chip(weight_bits=1, vdd=0.6), t)
    assert model.energy_pj(Action.CONVERT) == pytest.approx(
        0.5625 * (1024 * e_fa + 8 * e_reg))
    # 4 registers on a 128-row column, rows_per_conversion 32: a conversion sums a group of
    # 32 rows (guard 5: 13 / 8) and carries one register: 32 x 13/8 = 52 additions, 13/8 bits
    model = ADCModel(_chip(regs=4, rows_per_conversion=32), t)
    assert model.energy_pj(Action.CONVERT) == pytest.approx(52 * e_fa + 1.625 * e_reg)
    assert model.energy_pj(Action.LEAK) == 0.0  # CMOS logic leakage: not priced (as the tree)
    assert model.time_ns(Action.CONVERT) == pytest.approx(10.0)  # one 100-MHz clock


def test_area_per_column_by_hand():
    t = tech_table(65.0)
    a_fa, a_reg = t.accumulator_area_um2_per_bit, t.shift_add_area_um2_per_bit
    assert ADCModel(_chip(regs=2), t).area_um2() == pytest.approx(128 * a_fa + 2 * a_reg)
    # every one of the 128 columns has its adders, guard columns included
    assert array_area_um2(_chip(), t)["adc"] == pytest.approx(128 * (128 * a_fa + a_reg))


def test_the_word_line_crosses_each_cells_full_adder():
    # C = (0.2 fF/um wire + 1 fF/um gate) x pitch x n_cols, the pitch that of the bit-cell and
    # the full adder beside it (the area the ripple column counts); the tree: the bit-cell's
    chip, tree = _chip(), _chip(column="adder_tree")
    t = tech_table(65.0)
    cell_um2 = CellModel(chip, t).area_um2()
    for c, um2 in ((chip, cell_um2 + t.accumulator_area_um2_per_bit), (tree, cell_um2)):
        c_ff = (t.wire_capacitance_ff_per_um + GATE_CAPACITANCE_FF_PER_UM) * um2**0.5 * 128
        assert DACModel(c, t).wordline_pj() == pytest.approx(c_ff * 0.8 * 0.8 * 1e-3, rel=1e-12)
    assert ripple.adder_area_um2_per_cell(chip, t) == t.accumulator_area_um2_per_bit


def test_a_two_bit_cell_has_a_full_adder_beside_each_bit():
    """A ``signed_cell`` weight's cell holds two bit-cells (magnitude and sign), each a 6T cell
    with its product gate (2 x 280 x 10 / 8 F^2 at 65 nm), and a full adder beside each: the
    adder area a cell adds is 2 x the tables' adder area per bit, and the word line crosses
    both bit-cells with their adders (pitch ``2 sqrt(A / 2)``). Guards the stored-bits factor
    of :func:`ripple.adder_area_um2_per_cell`."""
    chip, t = _chip().replace(weight_encoding="signed_cell"), tech_table(65.0)
    a_fa = t.accumulator_area_um2_per_bit
    assert ripple.adder_area_um2_per_cell(chip, t) == pytest.approx(2 * a_fa)
    cell_um2 = 2 * 280 * 10 / 8 * 0.065**2
    assert CellModel(chip, t).area_um2() == pytest.approx(cell_um2)
    pitch = 2 * ((cell_um2 + 2 * a_fa) / 2) ** 0.5
    c_ff = (t.wire_capacitance_ff_per_um + GATE_CAPACITANCE_FF_PER_UM) * pitch * 128
    assert DACModel(chip, t).wordline_pj() == pytest.approx(c_ff * 0.8 * 0.8 * 1e-3)


@pytest.mark.parametrize("weight_bits, q, outputs", [(1, 1, 16), (8, 8, 8)])
def test_one_shift_and_add_per_output_not_per_column(weight_bits, q, outputs):
    # an output's q weight columns leave the array as one sum: one 32-b shift-and-add (and
    # accumulator lane) per output; each of its q conversions pays 1/q of one add
    chip, tree = _chip(weight_bits=weight_bits), _chip(weight_bits=weight_bits,
                                                       column="adder_tree")
    t = tech_table(65.0)
    rows = {r["component"]: r for r in area_instances(chip, t)}
    assert ripple.outputs_per_array(chip) == outputs
    assert rows["shift_add"]["n_per_scope"] == rows["accumulator"]["n_per_scope"] == outputs
    assert {r["component"]: r for r in area_instances(tree, t)}["shift_add"][
        "n_per_scope"] == 128
    e_tree = ShiftAddModel(tree, t).energy_pj(Action.ADD, 32)
    assert e_tree == pytest.approx(32 * t.shift_add_energy_pj_per_bit, rel=1e-12)
    assert ShiftAddModel(chip, t).energy_pj(Action.ADD, 32) == pytest.approx(e_tree / q)


def test_registers_cost_energy_and_area():
    one, many = ADCModel(_chip(regs=1)), ADCModel(_chip(regs=8))
    assert many.energy_pj(Action.CONVERT) > one.energy_pj(Action.CONVERT)
    assert many.area_um2() > one.area_um2()


def test_the_default_is_the_adder_tree_as_before():
    t = tech_table(65.0)
    tree = _chip(column="adder_tree")
    assert tree.tech.digital_column is DigitalColumn.ADDER_TREE
    assert ChipConfig().tech.digital_column is DigitalColumn.ADDER_TREE
    assert ChipConfig().tech.pipeline_registers_per_column == 1
    assert ADCModel(tree, t).energy_pj(Action.CONVERT) == pytest.approx(
        adder_tree_full_adders(128) * t.accumulator_add_energy_pj_per_bit)


# -- simulation and estimate -------------------------------------------------------------------
def test_the_ripple_column_is_exact_and_its_conversions_are_priced_by_the_model():
    chip = _chip()
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2, size=(16, 128))
    w = rng.integers(-128, 128, size=(20, 128))
    y, events = cimsim.matmul(x, w, chip, seed=0)
    assert_exact(np.asarray(y), x, w)
    rep = estimate([layer_work(events, program(w, chip))], chip)
    n_conv = sum(n for k, n in events.items()
                 if k.component is Component.ADC and k.action is Action.CONVERT)
    assert n_conv == 16 * 20 * 8  # one per weight column and input vector (1-b inputs)
    assert rep.energy_by_component()["adc"] == pytest.approx(
        n_conv * ripple.convert_pj(chip, tech_table(65.0), 1.0))


# -- config ------------------------------------------------------------------------------------
def test_toml_round_trip(tmp_path):
    chip = _chip(regs=4)
    path = tmp_path / "c.toml"
    chip.save(path)
    assert load_chip(path) == chip
    assert 'digital_column = "ripple"' in path.read_text()


@pytest.mark.parametrize("change, field", [
    (dict(adc=dict(kind="sar", bits=8)), "digital_column"),
    (dict(tech=dict(pipeline_registers_per_column=2, digital_column="adder_tree")),
     "pipeline_registers_per_column"),
    (dict(tech=dict(pipeline_registers_per_column=129)), "pipeline_registers_per_column"),
    (dict(tech=dict(pipeline_registers_per_column=0)), "pipeline_registers_per_column"),
    (dict(tech=dict(digital_column="carry_save")), "digital_column"),
    (dict(array=dict(cols_per_adc=2)), "cols_per_adc"),
])
def test_bad_fields_name_themselves(change, field):
    data = _chip().to_dict()
    for section, fields in change.items():
        data[section] = {**data[section], **fields}
    with pytest.raises(ConfigError, match=field):
        ChipConfig.from_dict(data)


# -- the published macro -----------------------------------------------------------------------
def test_colonnade_datasheet_and_cli_name_the_ripple_column(capsys):
    sheet = datasheet(COLONNADE)
    assert sheet["adc"]["priced_by"] == "ripple adders"
    # 16 outputs x 128 rows of 1-b x 1-b MACs per 100-MHz clock (the 256-vector run's tail
    # of one clock is all that keeps it under 2 x 2048 x 100e6)
    assert sheet["tops"] == pytest.approx(2 * 2048 * 100e6 / 1e12, rel=0.01)
    assert main(["datasheet", COLONNADE, "--breakdown"]) == 0
    out = capsys.readouterr().out
    assert "a full adder per bit-cell" in out and "an adder tree" not in out
    assert load_chip("published/colonnade-jssc21") == load_chip(COLONNADE)

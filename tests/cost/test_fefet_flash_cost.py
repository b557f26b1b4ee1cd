"""Pricing FeFET and NOR-flash cells: known answers (hand computations) for their area, read
through the channel (E = V^2 G t), word line, write and write time; monotone where physics
says so; the presets through ``cimsim datasheet``, ``sweep`` and the schema's chip strategy."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cimsim
from cimsim.config import CellKind, CellTech, ChipConfig
from cimsim.cost import component_models, estimate, layer_work
from cimsim.cost.area import area_instances
from cimsim.cost.datasheet import datasheet
from cimsim.cost.latency import write_time_ns_per_row
from cimsim.cost.models import cell_kind
from cimsim.cost.tables import tech_table
from cimsim.events import Action, Component
from tests.chip_strategies import valid_chips

A, C = Action, Component
FEFET_F2 = 0.025 / 0.022**2  # Duenkel et al., IEDM 2017: 0.025 um^2 at 22 nm
FLASH_F2 = 0.33 / 0.055**2  # Guo et al., CICC 2017: 0.33 um^2 at 55 nm


def preset(name: str, **tech) -> ChipConfig:
    chip = cimsim.load_chip(name)
    return chip.replace(tech=chip.tech.replace(**tech)) if tech else chip


@pytest.mark.parametrize("model", ["tables", "physical"])
@pytest.mark.parametrize("name,kind,f2,node", [("fefet-28nm", CellKind.FEFET_1T, FEFET_F2, 28.0),
                                               ("flash-40nm", CellKind.FLASH_NOR, FLASH_F2, 40.0)])
def test_cell_area_known_answer_in_both_cost_models(name, kind, f2, node, model):
    """51.7 F^2 at 28 nm = 0.0405 um^2; 109 F^2 at 40 nm = 0.1745 um^2: the published cells
    in F^2 at the preset's node, whichever cost model prices them."""
    chip = preset(name, cost_model=model)
    assert chip.tech.cell_kind is None and cell_kind(chip) is kind
    cell = component_models(chip)[C.CELL]
    assert cell.area_um2() == pytest.approx(f2 * (node * 1e-3) ** 2)
    assert cell.area_f2() == pytest.approx(f2)
    what = [r["instance"] for r in area_instances(chip) if r["component"] == "cell"]
    assert what == [f"{kind.value} cell ({f2:.0f} F^2)"]


def test_fefet_read_energy_known_answer_from_the_run():
    """One driven row of a 1-b input over the 4 cells of two offset-encoded 4-b weights
    (2 b per cell: digits 3,3 and 0,0): the charge V t (2 G(3) + 2 G(0)) drawn from the 0.8-V
    supply, G(d) = g_min + d g_lsb, g_min = g_max / ratio, g_lsb = (g_max - g_min) / 3."""
    chip = preset("fefet-28nm", cost_model="physical")
    chip = chip.replace(weight_bits=4, input_bits=1, weight_encoding="offset",
                        adc=chip.adc.replace(range_policy="full_scale"),
                        noise=chip.noise.replace(thermal_sigma_lsb=0.0),
                        device=chip.device.replace(variation="none", variation_sigma=0.0),
                        array=chip.array.replace(n_rows=4, n_cols=8, cols_per_adc=2))
    w = np.array([[7], [-8]])  # offset w + 8: 15 = digits (3, 3); 0 = (0, 0)
    x = np.array([[1]])
    _, ev = cimsim.matmul(x, w, chip, seed=0)
    block = cimsim.arrays.program(w, chip)
    assert block.n_phys_cols == 4
    e_cell = estimate([layer_work(ev, block)], chip).energy_by_component()["cell"]
    g_max, g_min = 10e-6, 10e-6 / 17.0
    g3, g0 = g_max, g_min
    v, t_s = 0.526, 10e-9
    want_pj = 0.8 * v * t_s * (2 * g3 + 2 * g0) * 1e12
    assert e_cell == pytest.approx(want_pj)  # 0.179 pJ


@pytest.mark.parametrize("model", ["tables", "physical"])
def test_flash_read_per_summed_conductance_known_answer(model):
    """One cell-LSB of the flash preset (g_max (1 - 1/1000) / 15) at one DAC-LSB (0.51 V, a
    1-b DAC) for 10 ns, its charge at 0.51 V (tables: V^2 G t per unit of x^2 G) or drawn
    from the 0.8-V supply (physical, per unit of |x| G); nothing per cell read (the
    conductance sum prices it)."""
    cell = component_models(preset("flash-40nm", cost_model=model))[C.CELL]
    assert cell.energy_pj(A.READ, 1) == 0.0
    g_lsb_s = 3.92e-6 * (1 - 1 / 1000) / 15
    summed, other = (A.V1G_LSB, A.V2G_LSB) if model == "physical" else (A.V2G_LSB, A.V1G_LSB)
    v = 0.8 if model == "physical" else 0.51
    assert cell.energy_pj(summed) == pytest.approx(v * 0.51 * g_lsb_s * 10e-9 * 1e12)
    assert cell.energy_pj(other) == 0.0


def test_fefet_wordline_is_its_own_gate_known_answer():
    """The word line drives the FeFETs' gates: (wire 0.2 + gate 1.0) fF/um over the 1T
    cell's pitch, 128 cells, C V^2 at the 0.8-V supply."""
    chip = preset("fefet-28nm", cost_model="physical", wordline_v=None)
    pitch_um = math.sqrt(FEFET_F2) * 0.028
    want = (0.2 + 1.0) * pitch_um * 128 * 0.8**2 * 1e-3
    assert component_models(chip)[C.DAC].wordline_pj() == pytest.approx(want)


def test_write_energy_and_time_known_answers():
    """No published write energy was found for either cell: the tables' RRAM write per
    stored bit (3 pJ; 2 b FeFET, 4 b flash). FeFET row write: one 10-ns pulse (Duenkel et
    al.); flash: the RRAM write-verify schedule."""
    rram = cimsim.load_chip("rram-22nm")
    e_bit = tech_table(28.0).rram_write_energy_pj_per_bit
    fefet = preset("fefet-28nm")
    flash = preset("flash-40nm")
    assert component_models(fefet)[C.CELL].energy_pj(A.WRITE, 1) == pytest.approx(2 * e_bit)
    assert component_models(flash)[C.CELL].energy_pj(A.WRITE, 1) == pytest.approx(
        4 * tech_table(40.0).rram_write_energy_pj_per_bit)
    assert write_time_ns_per_row(fefet) == 10.0
    assert write_time_ns_per_row(flash) == write_time_ns_per_row(rram)


@pytest.mark.parametrize("name", ["fefet-28nm", "flash-40nm"])
def test_monotone_in_read_voltage_supply_and_node(name):
    """Read energy grows as V_read^2 and is blind to the CMOS supply; the converter's energy
    grows with the supply; the cell's area grows with the node (F^2 fixed)."""
    chip = preset(name, cost_model="physical")

    def cell_e(**tech):
        return component_models(chip.replace(tech=chip.tech.replace(**tech)))[C.CELL].energy_pj(
            A.V2G_LSB)

    v = chip.tech.v_read_v
    assert cell_e(v_read_v=2 * v) == pytest.approx(4 * cell_e(v_read_v=v))
    assert cell_e(vdd_v=0.9) == cell_e(vdd_v=0.7)

    def adc_e(vdd):
        return component_models(chip.replace(tech=chip.tech.replace(vdd_v=vdd)))[C.ADC].energy_pj(
            A.CONVERT, chip.adc.bits)

    assert adc_e(0.7) < adc_e(0.8) < adc_e(1.0)
    areas = [component_models(chip.replace(tech=chip.tech.replace(node_nm=n)))[C.CELL].area_um2()
             for n in (7.0, 22.0, 28.0, 40.0, 65.0, 130.0)]
    assert areas == sorted(areas) and len(set(areas)) == len(areas)


# ---------------------------------------------------------------------------------------------
# the presets through the datasheet and the CLI
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fefet-28nm", "flash-40nm"])
def test_cli_datasheet_of_the_presets(name, capsys):
    from cimsim.cli import main

    assert main(["datasheet", name]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert name in printed and "TOPS/W" in printed
    sheet = datasheet(name)
    for key in ("tops", "tops_per_w", "tops_per_mm2"):
        assert math.isfinite(sheet[key]) and sheet[key] > 0


def test_cli_sweep_accepts_the_flash_preset(tmp_path, capsys):
    from cimsim.cli import main

    argv = ["sweep", "--model", "demo", "--chip", "flash-40nm", "--adc-bits", "6",
            "--limit", "16", "--out", str(tmp_path)]
    assert main(argv) == 0, capsys.readouterr().err
    assert (tmp_path / "sweep.csv").exists()


@pytest.mark.parametrize("cell", [CellTech.FEFET, CellTech.FLASH, CellTech.EDRAM])
@settings(max_examples=4, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_the_schema_strategy_draws_the_new_cells_and_they_price(cell, data):
    """tests/chip_strategies.valid_chips draws every CellTech and CellKind: drawn chips of
    each new cell get a finite, positive datasheet or a ConfigError naming a field (as
    tests/cost/test_chip_fuzz.py checks for every chip)."""
    chip = data.draw(valid_chips(max_size=16).filter(lambda c: c.device.cell is cell))
    try:
        sheet = datasheet(chip)
    except cimsim.errors.ConfigError as exc:
        assert re.search(r"[A-Za-z]+\.[a-z_0-9]+", str(exc)), str(exc)
        return
    for key in ("tops", "tops_per_w", "tops_per_mm2"):
        assert math.isfinite(sheet[key]) and sheet[key] > 0

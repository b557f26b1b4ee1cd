"""The node range 3..180 nm: the extrapolation rules by hand, monotone in node, errors.

Inside 7..130 nm the tables are the original ones (linear in node between rows); outside it
every table has rows at 5/3 and 180 nm from a source or a stated rule and is interpolated
log-log (docs/technology.md §1).
"""

from __future__ import annotations

import math
import tomllib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cimsim
from cimsim.config import ADCKind, ChipConfig, TechConfig
from cimsim.cost import adc_survey, component_models, datasheet, settling
from cimsim.cost.tables import (
    MAX_NODE_NM,
    MIN_NODE_NM,
    area_scale,
    energy_scale,
    tech_table,
)
from cimsim.errors import ConfigError
from cimsim.events import Action as A
from cimsim.events import Component as C

PUBLISHED = "cimsim/presets/published/{}.toml"

# Stillmaker-Baas factors vs 45 nm at 0.8 V (hwcomponents techscaling.py), by hand
E45 = {130: 3.07, 90: 1.90, 65: 1.24, 45: 1.00, 32: 0.66, 20: 0.22, 16: 0.17, 14: 0.14,
       10: 0.12, 7: 0.094}
A45 = {130: 6.4, 90: 2.8, 65: 1.5, 45: 1.0, 32: 0.46, 20: 0.21, 16: 0.19, 14: 0.17, 10: 0.10,
       7: 0.059}


def trend(v_large: float, v_next: float, n_large: float, n_next: float, to: float) -> float:
    """The log-log line through the two largest rows, at ``to`` (the 180-nm rule)."""
    return v_large * (to / n_large) ** (math.log(v_large / v_next) / math.log(n_large / n_next))


# ---- known answers --------------------------------------------------------------------------
def test_range_constants():
    assert (MIN_NODE_NM, MAX_NODE_NM) == (3.0, 180.0)


def test_tabulated_nodes_are_unchanged():
    for node, e in E45.items():
        assert energy_scale(45, node) == e
        assert area_scale(45, node) == A45[node]


def test_below_7nm_energy_goes_as_sqrt_node_and_area_as_node():
    # hwcomponents' rule beyond its 7-nm row: energy x sqrt(node / 7), area x (node / 7)
    for node in (5.0, 3.0, 4.2):
        assert energy_scale(45, node) == pytest.approx(0.094 * math.sqrt(node / 7))
        assert area_scale(45, node) == pytest.approx(0.059 * node / 7)
        assert energy_scale(7, node) == pytest.approx(math.sqrt(node / 7))
    assert energy_scale(45, 5) == pytest.approx(0.0794, abs=1e-4)
    assert energy_scale(45, 3) == pytest.approx(0.0615, abs=1e-4)


def test_180nm_energy_is_the_130_90_trend_and_area_stillmaker_baas():
    e180 = trend(3.07, 1.90, 130, 90, 180)
    assert e180 == pytest.approx(4.694, abs=1e-3)
    assert energy_scale(45, 180) == pytest.approx(e180)
    assert energy_scale(130, 180) == pytest.approx((180 / 130) ** (
        math.log(3.07 / 1.90) / math.log(130 / 90)))
    assert area_scale(45, 180) == pytest.approx(19.0)  # S-B's 180-nm column, 45-nm row
    # between 130 and 180 nm: log-log between the rows
    assert area_scale(45, 150) == pytest.approx(
        6.4 * (150 / 130) ** (math.log(19.0 / 6.4) / math.log(180 / 130)))
    assert energy_scale(45, 150) == pytest.approx(3.07 * (150 / 130) ** (
        math.log(3.07 / 1.90) / math.log(130 / 90)))


def test_neurosim_rows_at_5_and_3nm_and_the_180nm_trend():
    # NeuroSim V1.4 SarADC.cpp LP rows: 5 nm (0.0645, 0.5511) uW, 3 nm (0.0333, 0.2849) uW;
    # E = (a b + c) uW x (b + 1) ns
    for node, a, c in ((5.0, 0.0645, 0.5511), (3.0, 0.0333, 0.2849)):
        low = tech_table(node, "low")
        for b in (4, 8):
            assert low.sar_adc_energy_pj_by_bits[b - 1] == pytest.approx((a * b + c) * (b + 1)
                                                                         * 1e-3)
    a180 = trend(8.4483, 3.7506, 130, 65, 180)
    c180 = trend(65.243, 25.844, 130, 65, 180)
    low = tech_table(180, "low")
    assert low.sar_adc_energy_pj_by_bits[7] == pytest.approx((a180 * 8 + c180) * 9e-3)


def test_cell_rows_below_7nm_and_at_180nm():
    # NeuroSim V1.4: V_read 0.25 V at 5/3 nm; SRAM 19.2F x 43.75F at 5 nm, 30F x 68.26F at 3
    assert tech_table(5).rram_v_read_v == pytest.approx(0.25)
    assert tech_table(3).rram_v_read_v == pytest.approx(0.25)
    assert tech_table(6).rram_v_read_v == pytest.approx(0.264 * (6 / 7) ** (
        math.log(0.264 / 0.25) / math.log(7 / 5)))
    assert tech_table(5).sram_cell_area_f2 == pytest.approx(19.2 * 43.75)
    assert tech_table(3).sram_cell_area_f2 == pytest.approx(30 * 68.26)
    assert tech_table(4).sram_cell_area_f2 == pytest.approx(
        840.0 * (4 / 5) ** (math.log(840.0 / 2047.8) / math.log(5 / 3)))
    # 180 nm: the flat 130/90-nm read voltage; NeuroSim's 10F x 28F cell above 14 nm
    assert tech_table(180).rram_v_read_v == pytest.approx(0.58)
    assert tech_table(180).sram_cell_area_f2 == pytest.approx(280.0)
    assert tech_table(180).sram_cell_area_um2 == pytest.approx(280 * 0.18**2)


def test_table_entries_at_3_and_180nm_by_hand():
    t3, t180 = tech_table(3), tech_table(180)
    e3, e180 = 0.094 * math.sqrt(3 / 7), trend(3.07, 1.90, 130, 90, 180)
    # Horowitz 32-b add 0.1 pJ at 45 nm; ISAAC S+A 60 um^2 per 16 b at 32 nm
    assert t3.accumulator_add_energy_pj_per_bit == pytest.approx(0.1 / 32 * e3)
    assert t180.accumulator_add_energy_pj_per_bit == pytest.approx(0.1 / 32 * e180)
    assert t3.shift_add_area_um2_per_bit == pytest.approx(60 / 16 * (0.059 * 3 / 7) / 0.46)
    assert t180.shift_add_area_um2_per_bit == pytest.approx(60 / 16 * 19.0 / 0.46)
    # ISAAC/Saberi 8-b SAR, 1.67 pJ at 32 nm
    assert t3.sar_adc_energy_pj_by_bits[7] == pytest.approx(1.67 * e3 / 0.66)


def test_settling_device_at_180nm_follows_the_130_90_trend():
    v_nom = trend(1.3, 1.2, 130, 90, 180)
    v_th = trend(0.1284855, 0.1460217, 130, 90, 180)
    i_on = trend(930.0, 1070.0, 130, 90, 180)
    r = 1.54 * 1.5 / (i_on * ((1.5 - v_th) / (v_nom - v_th)) ** 1.3 * 1e-6 * 0.4)
    assert settling.driver_on_resistance_ohm(180.0, 1.5, 0.4) == pytest.approx(r)
    # below 22 nm the 22-nm device is held, down to 3 nm
    assert settling.driver_on_resistance_ohm(3.0, 0.8, 0.4) == pytest.approx(
        settling.driver_on_resistance_ohm(22.0, 0.8, 0.4))


def test_adc_survey_lines_are_power_laws_over_the_range():
    for kind in (ADCKind.SAR, ADCKind.FLASH, ADCKind.CCO):
        fit = adc_survey.family_of(kind)
        for node in (3.0, 180.0):
            assert adc_survey.fom_w_fj(kind, node) == pytest.approx(
                fit.fom_45nm_fj * (node / 45) ** fit.slope)


# ---- monotone in node -----------------------------------------------------------------------
def digital_chip(node_nm: float) -> ChipConfig:
    chip = cimsim.load_chip(PUBLISHED.format("fujiwara-isscc22"))
    return chip.replace(tech=chip.tech.replace(node_nm=node_nm))


NODE = st.floats(min_value=MIN_NODE_NM, max_value=MAX_NODE_NM, allow_nan=False)

CMOS_FIELDS = ("shift_add_energy_pj_per_bit", "accumulator_add_energy_pj_per_bit",
               "dequant_mult_energy_pj", "sram_buffer_energy_pj_per_bit",
               "interconnect_energy_pj_per_bit", "dac_energy_pj_per_pulse",
               "comparator_energy_fj", "shift_add_area_um2_per_bit", "dac_area_um2",
               "router_area_um2", "buffer_area_um2_per_bit", "comparator_area_um2",
               "sram_cell_area_um2", "rram_cell_area_um2")


@settings(max_examples=60, deadline=None)
@given(a=NODE, b=NODE)
def test_energy_and_area_grow_with_node_over_3_to_180(a, b):
    lo, hi = sorted((a, b))
    if hi - lo < 1e-6 * hi:
        return
    assert energy_scale(45, lo) < energy_scale(45, hi)
    assert area_scale(45, lo) < area_scale(45, hi)
    t_lo, t_hi = tech_table(lo), tech_table(hi)
    for name in CMOS_FIELDS:
        assert getattr(t_lo, name) < getattr(t_hi, name), name
    for band in ("low", "typical", "high"):
        e_lo = tech_table(lo, band).sar_adc_energy_pj_by_bits
        e_hi = tech_table(hi, band).sar_adc_energy_pj_by_bits
        assert all(x <= y for x, y in zip(e_lo, e_hi, strict=True)), band
    for kind in (ADCKind.SAR, ADCKind.FLASH, ADCKind.CCO):
        assert adc_survey.fom_w_fj(kind, lo) < adc_survey.fom_w_fj(kind, hi)
    # a digital-CIM macro priced by the physical models: every energy per action and area
    m_lo, m_hi = component_models(digital_chip(lo)), component_models(digital_chip(hi))
    for comp, action in ((C.ADC, A.CONVERT), (C.CELL, A.READ), (C.DAC, A.PULSE),
                         (C.SHIFT_ADD, A.ADD)):
        assert m_lo[comp].energy_pj(action, 16) < m_hi[comp].energy_pj(action, 16), comp
    for comp in (C.ADC, C.CELL, C.DAC, C.SHIFT_ADD):
        assert m_lo[comp].area_um2() < m_hi[comp].area_um2(), comp


# ---- datasheets at the ends of the range ----------------------------------------------------
@pytest.mark.parametrize("node", [MIN_NODE_NM, MAX_NODE_NM])
@pytest.mark.parametrize("name", ["fujiwara-isscc22", "wan-nature22", "sinangil-jssc21"])
def test_datasheet_runs_and_is_finite_at_the_ends(name, node):
    chip = cimsim.load_chip(PUBLISHED.format(name))
    chip = chip.replace(tech=chip.tech.replace(node_nm=node))
    sheet = datasheet(chip)
    for key in ("tops", "tops_per_w", "tops_per_mm2", "energy_pj_per_op", "area_mm2"):
        assert np.isfinite(sheet[key]) and sheet[key] > 0, key


def test_tables_cost_model_runs_at_the_ends():
    base = cimsim.load_chip("rram-22nm")
    sheets = {n: datasheet(base.replace(tech=base.tech.replace(node_nm=n)))
              for n in (MIN_NODE_NM, MAX_NODE_NM)}
    for sheet in sheets.values():
        assert np.isfinite(sheet["tops_per_w"]) and sheet["tops_per_w"] > 0
    assert sheets[MIN_NODE_NM]["area_mm2"] < sheets[MAX_NODE_NM]["area_mm2"]


# ---- errors and the new chip's TOML ---------------------------------------------------------
@pytest.mark.parametrize("node", [2.99, 180.01, 0.0, 250.0])
def test_out_of_range_node_names_the_field_and_the_range(node):
    with pytest.raises(ConfigError, match=r"TechConfig\.node_nm.*\[3\.0, 180\.0\]"):
        TechConfig(node_nm=node)
    with pytest.raises(ConfigError, match=r"node_nm.*allowed: 3\.\.180 nm"):
        tech_table(node)
    with pytest.raises(ConfigError, match=r"to_nm.*3\.\.180"):
        energy_scale(45, node)
    with pytest.raises(ConfigError, match=r"from_nm.*3\.\.180"):
        area_scale(node, 45)


def test_fujiwara_toml_round_trip():
    chip = cimsim.load_chip(PUBLISHED.format("fujiwara-isscc22"))
    assert chip.tech.node_nm == 5.0 and chip.adc.kind is ADCKind.DIGITAL
    assert chip.tech.weight_sets_stored == 4 and chip.array.n_rows == 64
    assert ChipConfig.from_dict(tomllib.loads(chip.to_toml())) == chip
    assert ChipConfig.from_dict(chip.to_dict()) == chip

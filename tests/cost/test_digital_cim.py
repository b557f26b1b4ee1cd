"""Digital CIM readout (``adc.kind = 'digital'``) and the converters' sample-rate term.

Digital CIM sums 1-b products in an adder tree per column: the simulation is exact (lossless)
and the cost is the adder tree's full adders, the bit-cells' product gates and the
shift-accumulators, by node and supply from the digital tables (docs/cost-model.md §digital).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tomllib
from hypothesis import given, settings
from hypothesis import strategies as st

import cimsim
from cimsim.config import ChipConfig
from cimsim.cost import component_models, datasheet
from cimsim.cost.adc_survey import RATE_EXPONENT, corner_rate_hz, fom_w_fj, rate_factor
from cimsim.cost.datasheet import DIGITAL_MACRO_COMPONENTS, macro_components
from cimsim.cost.models import (
    GATE_CAPACITANCE_FF_PER_UM,
    PRODUCT_GATE_TRANSISTORS,
    adder_tree_full_adders,
)
from cimsim.cost.tables import adc_energy_pj, tech_table
from cimsim.errors import ConfigError
from cimsim.events import Action as A
from cimsim.events import Component as C

PUBLISHED = "cimsim/presets/published/{}.toml"


def digital_chip(n_rows: int = 256, encoding: str = "twos_complement", **tech) -> ChipConfig:
    base = cimsim.load_chip("ideal")
    bits = math.ceil(math.log2(2 * n_rows + 1))
    fields = dict(node_nm=22.0, vdd_v=0.8, cost_model="physical", clock_mhz=1000.0,
                  t_read_ns=1.0, cell_kind="sram_6t")
    fields.update(tech)
    return base.replace(
        weight_encoding=encoding, dac=base.dac.replace(bits=1),
        device=base.device.replace(cell="sram", bits_per_cell=1, on_off_ratio=math.inf),
        array=base.array.replace(n_rows=n_rows, n_cols=256, cols_per_adc=1),
        adc=base.adc.replace(kind="digital", bits=bits), tech=base.tech.replace(**fields))


# ---- simulation: an exact column sum --------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(rows=st.sampled_from([3, 64, 256]),
       encoding=st.sampled_from(["twos_complement", "differential", "offset", "signed_cell"]),
       seed=st.integers(0, 2**16))
def test_digital_readout_is_lossless(rows, encoding, seed):
    chip = digital_chip(rows, encoding)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2**chip.input_bits, size=(5, rows))
    w = rng.integers(-127, 128, size=(7, rows))
    y, _ = cimsim.matmul(x, w, chip, seed=seed)
    assert np.array_equal(np.asarray(y), x @ w.T)


@pytest.mark.parametrize("change, field", [
    (lambda c: c.replace(dac=c.dac.replace(bits=2)), "DACConfig.bits"),
    (lambda c: c.replace(device=c.device.replace(cell="rram")), "DeviceConfig.cell"),
    (lambda c: c.replace(adc=c.adc.replace(bits=9)), "ADCConfig.bits"),
    (lambda c: c.replace(adc=c.adc.replace(range_policy="fixed")), "ADCConfig.range_policy"),
    (lambda c: c.replace(noise=c.noise.replace(thermal_sigma_lsb=0.5)), "thermal_sigma_lsb"),
    (lambda c: c.replace(device=c.device.replace(on_off_ratio=10.0)), "on_off_ratio"),
])
def test_digital_readout_rejects_what_it_cannot_be(change, field):
    with pytest.raises(ConfigError, match=field):
        change(digital_chip())


def test_digital_readout_toml_round_trip():
    chip = cimsim.load_chip(PUBLISHED.format("chih-isscc21"))
    assert 'kind = "digital"' in chip.to_toml()
    assert ChipConfig.from_dict(tomllib.loads(chip.to_toml())) == chip


def test_tables_refuse_to_price_an_adder_tree_as_a_converter():
    with pytest.raises(ConfigError, match="digital"):
        adc_energy_pj("digital", 8, tech_table(22))


# ---- cost: known answers --------------------------------------------------------------------
def test_adder_tree_full_adders_by_hand():
    # 256 inputs: 128 1-b + 64 2-b + 32 3-b + 16 4-b + 8 5-b + 4 6-b + 2 7-b + 1 8-b adders
    assert adder_tree_full_adders(256) == 128 + 128 + 96 + 64 + 40 + 24 + 14 + 8 == 502
    assert adder_tree_full_adders(3) == 1 + 2  # a 1-b add, then a 2-b add with the odd input
    assert [adder_tree_full_adders(n) for n in (1, 2)] == [0, 1]


def test_digital_readout_prices_by_hand():
    chip = digital_chip(vdd_v=0.9)
    t = tech_table(22.0)
    sf = (0.9 / 0.8) ** 2
    m = component_models(chip)
    # the adder tree: 502 full adders at the tables' energy and area per added bit
    assert m[C.ADC].energy_pj(A.CONVERT, 10) == pytest.approx(
        502 * t.accumulator_add_energy_pj_per_bit * sf)
    assert m[C.ADC].area_um2() == pytest.approx(502 * t.accumulator_area_um2_per_bit)
    assert m[C.ADC].energy_pj(A.LEAK, 10) == 0.0  # CMOS logic leakage: no source, not priced
    assert m[C.ADC].time_ns(A.CONVERT, 10) == pytest.approx(1.0)  # one sum per 1-GHz clock
    # the bit-cell: 6T + a 4-T product gate at the 8T cell's 280 F^2 per 8 transistors
    f2 = 280.0 * (6 + PRODUCT_GATE_TRANSISTORS) / 8
    assert m[C.CELL].area_um2() == pytest.approx(f2 * 0.022**2)
    # its product gate drives one adder input: C = 1 fF/um x pitch, E = C V^2
    pitch = math.sqrt(f2) * 0.022
    assert m[C.CELL].energy_pj(A.READ, 1) == pytest.approx(
        GATE_CAPACITANCE_FF_PER_UM * pitch * 0.9**2 * 1e-3)


def test_digital_readout_energy_grows_with_node_supply_and_rows():
    def e(rows=256, **tech):
        return component_models(digital_chip(rows, **tech))[C.ADC].energy_pj(A.CONVERT, 10)

    assert e(node_nm=7.0) < e(node_nm=22.0) < e(node_nm=65.0)
    assert e(vdd_v=0.6) < e(vdd_v=0.8) < e(vdd_v=1.0)
    assert e(64) < e(128) < e(256)


def test_digital_macro_holds_its_shift_accumulators():
    chip = cimsim.load_chip(PUBLISHED.format("chih-isscc21"))
    assert macro_components(chip) == DIGITAL_MACRO_COMPONENTS
    sheet = datasheet(chip)
    assert set(sheet["energy_pj_by_component"]) == {"cell", "dac", "adc", "shift_add"}
    assert macro_components(cimsim.load_chip("rram-22nm")) == ("cell", "dac", "adc")


# ---- converters: the survey's speed envelope ------------------------------------------------
def test_corner_rate_and_rise_by_hand():
    # FOM_S caps meet where 213.78 - 2.8719 ln f = 128.307 + 3.2205 b
    assert corner_rate_hz(8) == pytest.approx(math.exp((213.78 - 128.307 - 8 * 3.2205) / 2.8719))
    assert corner_rate_hz(8) == pytest.approx(1.07e9, rel=0.01)
    assert RATE_EXPONENT == pytest.approx(0.28719 * math.log(10))
    assert rate_factor(8, 1e8) == 1.0
    assert rate_factor(8, 10 * corner_rate_hz(8)) == pytest.approx(10**RATE_EXPONENT)


def test_converter_energy_follows_the_chips_cycle():
    """A 12-b SAR converts in (12 + 1) ns: 77 MS/s, above its 12.1-MS/s corner; the same
    converter paced by a 1-us compute window runs at 1 MS/s and costs the rate-free line."""
    base = cimsim.load_chip("rram-22nm")

    def adc(t_read_ns):
        chip = base.replace(adc=base.adc.replace(kind="sar", bits=12),
                            array=base.array.replace(cols_per_adc=1),
                            tech=base.tech.replace(node_nm=45.0, vdd_v=0.8, t_read_ns=t_read_ns,
                                                   cost_model="physical"))
        return component_models(chip)[C.ADC]

    line = fom_w_fj("sar", 45.0) * 2**12 * 1e-3
    slow, fast = adc(1000.0), adc(1.0)
    assert slow.sample_rate_hz() == pytest.approx(1e6)
    assert slow.energy_pj(A.CONVERT, 12) == pytest.approx(line)
    assert fast.sample_rate_hz() == pytest.approx(1e9 / 13)
    assert fast.energy_pj(A.CONVERT, 12) == pytest.approx(
        line * (1e9 / 13 / corner_rate_hz(12)) ** RATE_EXPONENT)
    assert fast.energy_pj(A.CONVERT, 12) > 3 * slow.energy_pj(A.CONVERT, 12)


def test_digital_readout_is_named_an_adder_tree_in_the_area_table():
    from cimsim.cost.area import area_instances

    rows = {r["component"]: r["instance"] for r in area_instances(
        cimsim.load_chip(PUBLISHED.format("chih-isscc21")))}
    assert "adder tree" in rows["adc"] and "ADC" not in rows["adc"]
    analog = {r["component"]: r["instance"] for r in area_instances(
        cimsim.load_chip("rram-22nm"))}
    assert "sar ADC" in analog["adc"]

"""Mutation-testing round 2 over ``cimsim/cost/tables.py`` and ``cimsim/cost/_prices.py``.

Each test kills one or more mutants that the earlier cost tests let live: the node-scaling
laws outside 7..130 nm (log-log rows, the 180-nm trend, the sub-7-nm exponents), exact table
rows, the SAR tables' extension by bits, the Horowitz buffer-size law, the field-naming of
validation errors, and the ``_prices`` helpers (supply scaling, which table a chip gets,
calibration matching). Known answers are recomputed by hand from the docstrings and
docs/technology.md, not read back from the code.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import cimsim
from cimsim.config import ADCBand
from cimsim.cost import _prices as P
from cimsim.cost.tables import (
    MAX_ADC_BITS,
    adc_energy_pj,
    area_scale,
    buffer_energy_pj_per_bit,
    dac_area_um2,
    dac_energy_pj,
    energy_scale,
    tdc_stage_ns,
    tech_table,
)
from cimsim.errors import ConfigError
from tests.conftest import ideal_chip

# Stillmaker-Baas factors vs 45 nm at 0.8 V (docs/technology.md §1), by hand
E45 = {130: 3.07, 90: 1.90, 45: 1.00, 32: 0.66, 7: 0.094}
A45 = {130: 6.4, 90: 2.8, 45: 1.0, 32: 0.46, 7: 0.059}


@pytest.fixture(scope="module")
def t90():
    return tech_table(90.0)


@pytest.fixture(scope="module")
def t45():
    return tech_table(45.0)


class TestExactRows:
    """A tabulated row outside 7..130 nm is returned as listed, not as exp(log(v))."""

    def test_the_180nm_area_row_is_19_exactly(self):
        # exp(log(19)) is 18.999999999999996: only the exact-row path gives 19.0
        assert area_scale(45.0, 180.0) == 19.0

    def test_the_sram_cell_rows_at_180_and_3nm_are_exact(self):
        assert tech_table(180.0).sram_cell_area_f2 == 280.0
        assert tech_table(3.0).sram_cell_area_f2 == 2047.8


class TestValidationNamesTheField:
    """A bad node names the argument that carried it."""

    @pytest.mark.parametrize("func", [energy_scale, area_scale])
    def test_a_bad_from_node_names_from_nm(self, func):
        with pytest.raises(ConfigError, match=r"^from_nm="):
            func(2.0, 22.0)

    @pytest.mark.parametrize("func", [energy_scale, area_scale])
    def test_a_bad_to_node_names_to_nm(self, func):
        with pytest.raises(ConfigError, match=r"^to_nm="):
            func(22.0, 200.0)


class TestScalingOutsideTheCoreSpan:
    """docs/technology.md §1: 180 nm continues the 130/90-nm energy trend log-log; below 7 nm
    energy ~ sqrt(node), area ~ node; between rows outside 7..130 nm, a power law."""

    def test_energy_at_180nm_is_the_130_90nm_power_law(self):
        slope = math.log(E45[130] / E45[90]) / math.log(130 / 90)
        assert energy_scale(45.0, 180.0) == pytest.approx(E45[130] * (180 / 130) ** slope)

    def test_energy_and_area_at_5nm_follow_the_sub7_laws(self):
        # the 7->3 nm rows are themselves the power law, so 5 nm lies on it
        assert energy_scale(45.0, 5.0) == pytest.approx(E45[7] * (5 / 7) ** 0.5)
        assert area_scale(45.0, 5.0) == pytest.approx(A45[7] * (5 / 7))

    def test_area_between_130_and_180nm_is_a_power_law(self):
        slope = math.log(19.0 / A45[130]) / math.log(180 / 130)
        assert area_scale(45.0, 150.0) == pytest.approx(A45[130] * (150 / 130) ** slope)


class TestSarTablesByBits:
    """The ISAAC/Saberi 4..10-b tables continued geometrically outside 4..10 b."""

    def test_typical_energy_ends_at_32nm(self):
        e = tech_table(32.0).sar_adc_energy_pj_by_bits
        # below 4 b the 4->5 b ratio is continued; above 10 b energy grows 4x per bit
        assert e[0] == pytest.approx(0.79 / (0.99 / 0.79) ** 3)
        assert e[2] == pytest.approx(0.79 / (0.99 / 0.79))
        assert e[3] == pytest.approx(0.79)
        assert e[9] == pytest.approx(2.38)
        assert e[10] == pytest.approx(2.38 * 4)
        assert e[15] == pytest.approx(2.38 * 4**6)

    def test_area_ends_at_32nm(self):
        a = tech_table(32.0).sar_adc_area_um2_by_bits
        assert a[0] == pytest.approx(361.0 / (477.0 / 361.0) ** 3)
        assert a[10] == pytest.approx(3002.0 * (3002.0 / 1828.0))
        assert a[15] == pytest.approx(3002.0 * (3002.0 / 1828.0) ** 6)

    def test_sar_area_is_area_scaled_and_energy_energy_scaled(self):
        t = tech_table(90.0)
        assert t.sar_adc_area_um2_by_bits[3] == pytest.approx(361.0 * A45[90] / A45[32])
        assert t.sar_adc_energy_pj_by_bits[3] == pytest.approx(0.79 * E45[90] / E45[32])

    def test_high_band_is_the_survey_factor_times_typical(self):
        typ = tech_table(32.0).sar_adc_energy_pj_by_bits
        high = tech_table(32.0, ADCBand.HIGH).sar_adc_energy_pj_by_bits
        assert np.allclose(np.divide(high, typ), 3.6 / 1.20)

    def test_low_band_is_the_neurosim_formula(self):
        # NeuroSim V1.4 SarADC.cpp, 22 nm row: P = (0.538 b + 4.3753) uW for (b+1) ns
        e = tech_table(22.0, ADCBand.LOW).sar_adc_energy_pj_by_bits
        for b in (1, 4, 16):
            assert e[b - 1] == pytest.approx((0.538 * b + 4.3753) * (b + 1) * 1e-3)

    def test_low_band_at_180nm_continues_the_130_65nm_trend(self):
        def trend(v130, v65):
            return v130 * (180 / 130) ** (math.log(v130 / v65) / math.log(130 / 65))
        a, c = trend(8.4483, 3.7506), trend(65.243, 25.844)
        e = tech_table(180.0, ADCBand.LOW).sar_adc_energy_pj_by_bits
        assert e[7] == pytest.approx((a * 8 + c) * 9 * 1e-3)


class TestFieldsByHandAt90nm:
    """Each field moved from its own source node (at 90 nm the 22/32/45-nm bases differ)."""

    def test_energies_from_their_source_nodes(self, t90):
        e22 = 0.22 + (22 - 20) / (32 - 20) * (0.66 - 0.22)  # linear in node
        e28 = 0.22 + (28 - 20) / (32 - 20) * (0.66 - 0.22)
        from32, from45 = E45[90] / E45[32], E45[90] / E45[45]
        assert t90.dac_energy_pj_per_pulse == pytest.approx(4e-3 / 1024 * 3e-9 * 1e12 * from32)
        assert t90.shift_add_energy_pj_per_bit == pytest.approx(0.021 / 16 * from32)
        assert t90.interconnect_energy_pj_per_bit == pytest.approx(20.74 / 256 * from32)
        assert t90.bus_energy_pj_per_bit == pytest.approx(0.054 * from32)
        assert t90.accumulator_add_energy_pj_per_bit == pytest.approx(0.1 / 32 * from45)
        assert t90.dequant_mult_energy_pj == pytest.approx(3.1 * from45)
        assert t90.sram_buffer_energy_pj_per_bit == pytest.approx(20.0 / 64 * from45)
        assert t90.sram_cim_bitcell_read_energy_fj == pytest.approx(1.12 * E45[90] / e22)
        assert t90.sram_cim_bitcell_write_energy_fj == pytest.approx(1.6 * E45[90] / e22)
        assert t90.comparator_energy_fj == pytest.approx(0.1086 * 15 * E45[90] / e28)

    def test_areas_are_area_scaled_from_their_source_nodes(self, t90):
        from32 = A45[90] / A45[32]
        a28 = 0.21 + (28 - 20) / (32 - 20) * (0.46 - 0.21)
        assert t90.dac_area_um2 == pytest.approx(170.0 / 1024 * from32)
        assert t90.shift_add_area_um2_per_bit == pytest.approx(60.0 / 16 * from32)
        assert t90.accumulator_area_um2_per_bit == pytest.approx(60.0 / 16 * from32)
        assert t90.buffer_area_um2_per_bit == pytest.approx(0.083e6 / (64 * 1024 * 8) * from32)
        assert t90.router_area_um2 == pytest.approx(0.15e6 * from32)
        assert t90.bus_area_um2_per_bit == pytest.approx(7500.0 / 256 * from32)
        assert t90.comparator_area_um2 == pytest.approx(A45[90] / a28)

    def test_rram_row_write_time_is_1970ns(self, t90):
        assert t90.rram_write_time_ns_per_row == (1 + 32) * 50.0 + 32 * 10.0 == 1970.0

    def test_cell_areas_scale_with_f_squared(self, t90):
        assert t90.feature_size_um == pytest.approx(0.09)
        assert t90.sram_cell_area_um2 == pytest.approx(280.0 * 0.09**2)
        assert t90.rram_cell_area_um2 == pytest.approx(48.0 * 0.09**2)

    def test_ramp_reference_read_is_v_squared_g_t(self, t90):
        # 0.58 V at 90 nm, 100 kOhm, 1 ns: V^2/R t = 3.364 fJ
        assert t90.ramp_ref_cell_read_energy_fj == pytest.approx(0.58**2 / 100e3 * 1e-9 * 1e15)

    def test_only_the_high_band_takes_the_survey_comparator(self):
        assert tech_table(90.0, ADCBand.LOW).comparator_energy_fj == pytest.approx(
            tech_table(90.0).comparator_energy_fj)
        assert tech_table(90.0, ADCBand.HIGH).comparator_energy_fj == 477.0


class TestBufferSizeLaw:
    """Horowitz 8 KB / 32 KB / 1 MB = 10 / 20 / 100 pJ per 64 b, log-log, end slopes beyond."""

    def test_known_answers(self, t45):
        lo = math.log(20 / 10) / math.log(32 / 8)  # 0.5
        hi = math.log(100 / 20) / math.log(1024 / 32)
        assert buffer_energy_pj_per_bit(32.0, t45) == pytest.approx(20 / 64)
        assert buffer_energy_pj_per_bit(8.0, t45) == pytest.approx(10 / 64)
        assert buffer_energy_pj_per_bit(2.0, t45) == pytest.approx(10 / 64 * (2 / 8) ** lo)
        assert buffer_energy_pj_per_bit(4096.0, t45) == pytest.approx(
            100 / 64 * (4096 / 1024) ** hi)
        assert buffer_energy_pj_per_bit(64.0, t45) == pytest.approx(20 / 64 * 2**hi)

    @pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan, "x"])
    def test_bad_sizes_name_size_kib(self, t45, bad):
        with pytest.raises(ConfigError, match="size_kib"):
            buffer_energy_pj_per_bit(bad, t45)


class TestTableValidation:
    """TechTable and the argument checks refuse bad values with a ConfigError naming them."""

    def test_the_node_range_is_closed(self):
        assert tech_table(3.0).node_nm == 3.0
        assert tech_table(180.0).node_nm == 180.0
        with pytest.raises(ConfigError, match="node_nm"):
            tech_table(True)

    def test_bits_range_is_closed_and_refuses_bools(self, t45):
        assert dac_area_um2(MAX_ADC_BITS, t45) > 0
        with pytest.raises(ConfigError, match="bits"):
            dac_area_um2(True, t45)

    @pytest.mark.parametrize("bad", [0.0, math.inf, math.nan, -1.0])
    def test_a_bad_scalar_field_is_named(self, t45, bad):
        with pytest.raises(ConfigError, match="^dac_clock_ns="):
            dataclasses.replace(t45, dac_clock_ns=bad)

    def test_a_bad_tuple_field_is_named(self, t45):
        good = t45.sar_adc_area_um2_by_bits
        for bad in ((0.0, *good[1:]), (*good, good[-1]), (good[1], good[0], *good[2:])):
            with pytest.raises(ConfigError, match="^sar_adc_area_um2_by_bits"):
                dataclasses.replace(t45, sar_adc_area_um2_by_bits=bad)

    def test_numpy_scalars_and_band_strings_are_normalised(self, t45):
        t = dataclasses.replace(t45, dac_clock_ns=np.float32(2.0), adc_band="low")
        assert type(t.dac_clock_ns) is float
        assert t.adc_band is ADCBand.LOW


# ---- _prices --------------------------------------------------------------------------------


def _with_tech(chip, **tech):
    return chip.replace(tech=chip.tech.replace(**tech))


class TestPricesHelpers:
    """The helpers every table price goes through (module docstring of ``_prices``)."""

    def test_supply_factor_is_quadratic_in_vdd(self):
        chip = _with_tech(cimsim.load_chip("rram-22nm"), vdd_v=1.0)
        assert P.supply_factor(chip) == pytest.approx((1.0 / 0.8) ** 2)

    def test_a_chip_gets_the_table_of_its_node_and_band(self):
        chip = _with_tech(cimsim.load_chip("rram-22nm"), node_nm=90.0, adc_band="high")
        t = P.chip_table(chip)
        assert (t.node_nm, t.adc_band) == (90.0, ADCBand.HIGH)

    def test_a_signed_cell_stores_its_sign_bit(self):
        chip = ideal_chip(encoding="signed_cell", bits_per_cell=2)
        assert P.stored_bits_per_cell(chip) == 3

    def test_adc_bits_are_capped_at_16_not_below(self):
        assert (P.table_adc_bits(16), P.table_adc_bits(24), P.table_adc_bits(5)) == (16, 16, 5)

    def test_a_stated_conversion_time_is_calibrated(self):
        chip = cimsim.load_chip("rram-22nm")
        chip = chip.replace(adc=chip.adc.replace(t_conversion_ns=10.0))
        cal = P.Calibration(adc_time_scale=0.5)
        assert P.table_adc_time_ns(chip, P.chip_table(chip), cal) == pytest.approx(5.0)

    def test_read_levels_divide_the_read_voltage_in_2_to_the_d_minus_1(self):
        chip = cimsim.load_chip("rram-22nm")
        chip = chip.replace(dac=chip.dac.replace(bits=3))
        assert P.read_levels(chip) == 7

    def test_a_sense_decision_is_supply_scaled(self):
        chip = cimsim.load_chip("rram-22nm")
        one = P.sense_decision_pj(chip, P.NO_CALIBRATION)
        high = P.sense_decision_pj(_with_tech(chip, vdd_v=1.2), P.NO_CALIBRATION)
        assert high == pytest.approx(one * (1.2 / 0.8) ** 2)

    def test_a_fefet_cell_is_its_own_f_squared_area(self):
        chip = cimsim.load_chip("fefet-28nm")
        t = P.chip_table(chip)
        assert P.table_cell_area_um2(chip, t) == pytest.approx(0.025 / 0.022**2 * 0.028**2)


class TestCalibrationMatching:
    """calibration_for: by name, node, cell and cost model; the ADC factors only on the fitted
    converter kind."""

    def test_the_preset_itself_is_calibrated(self):
        assert P.calibration_for(cimsim.load_chip("jia-jssc20")) is P.CALIBRATIONS["jia-jssc20"]

    def test_moving_the_node_or_the_cell_drops_the_calibration(self):
        chip = cimsim.load_chip("jia-jssc20")
        assert P.calibration_for(_with_tech(chip, node_nm=28.0)) is P.NO_CALIBRATION
        moved = chip.replace(device=chip.device.replace(cell="rram"))
        assert P.calibration_for(moved) is P.NO_CALIBRATION

    def test_another_converter_keeps_only_the_other_factors(self):
        chip = cimsim.load_chip("jia-jssc20")
        cal = P.calibration_for(chip.replace(adc=chip.adc.replace(kind="flash")))
        assert dict(cal.energy) == {"cell": 3.10}
        assert dict(cal.area) == {"cell": 4.17}

    def test_nothing_left_after_dropping_the_adc_is_no_calibration(self):
        only_adc = P.Calibration(energy={"adc": 2.0}, area={"adc": 3.0})
        assert P._without_adc(only_adc, "sar", "flash") is P.NO_CALIBRATION

    @pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan, True])
    def test_bad_factors_are_refused(self, bad):
        with pytest.raises(ValueError, match="adc"):
            P.Calibration(energy={"adc": bad})

    def test_unknown_components_and_bad_time_scales_are_refused(self):
        with pytest.raises(ValueError, match="unknown component"):
            P.Calibration(area={"wires": 2.0})
        with pytest.raises(ValueError, match="adc_time_scale"):
            P.Calibration(adc_time_scale=0.0)

    def test_a_time_scale_alone_is_not_the_identity(self):
        assert not P.Calibration(adc_time_scale=2.0).is_identity


class TestPricesByHand:
    """Table prices recomputed from the rules in ``_prices``' docstrings."""

    def test_an_rram_row_pulse_holds_the_dac_for_the_read_and_charges_the_line(self):
        # rram-22nm: 10-ns read, 0.55 V, 128 columns of 48 F^2 cells; a 1-b DAC takes 3 ns
        chip = cimsim.load_chip("rram-22nm")
        t = P.chip_table(chip)
        e_dac = dac_energy_pj(1, t) * 10.0 / 3.0
        c_ff = 0.2 * 128 * math.sqrt(48.0 * 0.022**2)
        e_wire = c_ff * 0.55**2 * 1e-3
        assert P.dac_pulse_energy_pj(chip, t, P.NO_CALIBRATION, 1) == pytest.approx(
            e_dac + e_wire)

    def test_an_sram_pitch_grows_with_the_bits_a_cell_stores(self):
        # an ideal cell is priced as SRAM bit-cells, one per stored bit (+1 sign bit here):
        # 2 vs 4 bit-cells, so the pitch (sqrt of the area) grows by sqrt(2)
        one = ideal_chip(encoding="signed_cell", bits_per_cell=1)
        three = ideal_chip(encoding="signed_cell", bits_per_cell=3)
        t = P.chip_table(one)
        assert P._cell_pitch_um(three, t) == pytest.approx(
            math.sqrt(2) * P._cell_pitch_um(one, t))

    @pytest.mark.parametrize("preset", ["rram-22nm", "mram-22nm"])
    def test_a_resistive_write_is_not_supply_scaled(self, preset):
        chip = cimsim.load_chip(preset)
        t = P.chip_table(chip)
        at_08 = P._cell_write(chip, t, P.NO_CALIBRATION, 1)
        assert P._cell_write(_with_tech(chip, vdd_v=1.2), t, P.NO_CALIBRATION, 1) == at_08

    def test_digital_prices_take_their_own_component_factor(self):
        chip = cimsim.load_chip("rram-22nm")
        t = P.chip_table(chip)
        for price, comp in ((P._shift_add, "shift_add"), (P._correction_add, "digital"),
                            (P._bus_bit, "interconnect"), (P._link_bit, "interconnect"),
                            (P._buffer_bit, "buffer")):
            base = price(chip, t, P.NO_CALIBRATION, 8)
            assert price(chip, t, P.Calibration(energy={comp: 2.0}), 8) == pytest.approx(
                2 * base), comp

    def test_adc_leakage_is_power_at_the_calibrated_rate(self):
        # leakage power = 0.2 x conversion energy / conversion time; a faster (calibrated)
        # conversion is a higher power
        chip = cimsim.load_chip("rram-22nm")
        t = P.chip_table(chip)
        fast = P.Calibration(adc_time_scale=0.5)
        assert P._adc_leak(chip, t, fast, 6) == pytest.approx(
            2 * P._adc_leak(chip, t, P.NO_CALIBRATION, 6))

    def test_a_tdc_stage_delay_checks_its_node(self):
        assert tdc_stage_ns(28.0) == pytest.approx(0.014)
        with pytest.raises(ConfigError, match="node_nm"):
            tdc_stage_ns(1.0)


class TestOnlyOneBitIsOneComparator:
    """A 2-b conversion keeps its kind's price (only a 1-b one is one comparator decision)."""

    def test_a_two_bit_flash_is_three_comparators(self, t45):
        cmp_pj = t45.comparator_energy_fj * 1e-3
        assert adc_energy_pj("flash", 2, t45) == pytest.approx(3 * cmp_pj)
        assert adc_energy_pj("flash", 1, t45) == pytest.approx(cmp_pj)

    def test_a_two_bit_high_band_sar_is_its_table_entry(self):
        # the survey comparator (477 fJ) is below the 2-b high-band SAR at 22 nm: a cap at
        # 2 b would show
        t = tech_table(22.0, ADCBand.HIGH)
        assert adc_energy_pj("sar", 2, t) == t.sar_adc_energy_pj_by_bits[1]
        assert t.sar_adc_energy_pj_by_bits[1] > t.comparator_energy_fj * 1e-3


def test_an_rram_lsb_read_is_v_lsb_squared_g_t():
    # rram-22nm with a 3-b DAC: V_lsb = 0.55 V / 7; E = V_lsb^2 G_lsb t_read (V^2 uS ns = fJ)
    chip = cimsim.load_chip("rram-22nm")
    chip = chip.replace(dac=chip.dac.replace(bits=3))
    expected = (0.55 / 7) ** 2 * chip.device.g_lsb_us * 10.0 * 1e-3
    assert P._cell_v2g_lsb(chip, P.chip_table(chip), P.NO_CALIBRATION, 1) == pytest.approx(
        expected)

"""Technology tables: known answers recomputed by hand, monotonicity, bands, errors."""

import dataclasses
import math

import pytest

from cimsim.config import ADCBand, ADCKind, TechConfig
from cimsim.cost.tables import (
    CONVERTER_KINDS,
    MAX_ADC_BITS,
    TechTable,
    adc_area_um2,
    adc_conversion_time_ns,
    adc_energy_pj,
    area_scale,
    buffer_energy_pj_per_bit,
    dac_area_um2,
    dac_conversion_time_ns,
    dac_energy_pj,
    energy_scale,
    tech_table,
)
from cimsim.errors import ConfigError

# Stillmaker-Baas factors vs 45 nm at 0.8 V (hwcomponents techscaling.py), by hand:
E45 = {130: 3.07, 90: 1.90, 65: 1.24, 45: 1.00, 32: 0.66, 20: 0.22, 14: 0.14, 7: 0.094}
A45 = {130: 6.4, 65: 1.5, 45: 1.0, 32: 0.46, 20: 0.21, 7: 0.059}
E22 = E45[20] + (22 - 20) / (32 - 20) * (E45[32] - E45[20])  # linear in node: 0.2933
A22 = A45[20] + (22 - 20) / (32 - 20) * (A45[32] - A45[20])  # 0.2517

NODES = (3, 5, 7, 9, 10, 14, 16, 20, 22, 28, 32, 40, 45, 65, 90, 130, 180)


@pytest.fixture(scope="module")
def t22():
    return tech_table(22)


# ---- known answers ------------------------------------------------------------------------


def test_scaling_factors_match_the_published_ratios():
    # 32->22 nm energy ~0.45, 45->7 area 0.059, 32->7 area 0.13, 65->22 area ~0.17
    assert energy_scale(32, 22) == pytest.approx(E22 / E45[32])
    assert energy_scale(32, 22) == pytest.approx(0.45, abs=0.01)
    assert area_scale(45, 7) == pytest.approx(0.059)
    assert area_scale(32, 7) == pytest.approx(0.13, abs=0.005)
    assert area_scale(65, 22) == pytest.approx(0.17, abs=0.005)
    assert energy_scale(130, 130) == 1.0


def test_sar_8b_at_reference_node(t22):
    # ISAAC/Saberi 8 b = 1.67 pJ, 1200 um^2 at 32 nm, scaled to 22 nm (~0.74 pJ)
    expected_pj = 1.67 * E22 / E45[32]
    assert adc_energy_pj(ADCKind.SAR, 8, t22) == pytest.approx(expected_pj)
    assert expected_pj == pytest.approx(0.74, abs=0.01)
    assert adc_area_um2("sar", 8, t22) == pytest.approx(1200 * A22 / A45[32])
    assert adc_conversion_time_ns("sar", 8, t22) == pytest.approx(9.0)  # (b+1) x 1 ns


def test_node_scaled_energies_at_65nm():
    t65 = tech_table(65)
    assert t65.shift_add_energy_pj_per_bit == pytest.approx(0.021 / 16 * E45[65] / E45[32])
    assert t65.dequant_mult_energy_pj == pytest.approx(3.1 * E45[65])
    assert adc_energy_pj("sar", 6, t65) == pytest.approx(1.20 * E45[65] / E45[32])
    assert adc_area_um2("sar", 8, t65) == pytest.approx(1200 * A45[65] / A45[32])
    assert t65.sram_cim_bitcell_read_energy_fj == pytest.approx(1.12 * E45[65] / E22)


def test_low_band_is_neurosim_sar_formula():
    # NeuroSim V1.4 LP, 22 nm: a = 0.538 uW, c = 4.3753 uW; E = (a b + c) (b + 1) ns
    # i.e. 42 fJ (5 b) and 78 fJ (8 b).
    low = tech_table(22, ADCBand.LOW)
    assert adc_energy_pj("sar", 5, low) == pytest.approx((0.538 * 5 + 4.3753) * 6e-3)
    assert adc_energy_pj("sar", 5, low) == pytest.approx(0.042, abs=0.001)
    assert adc_energy_pj("sar", 8, low) == pytest.approx(0.078, abs=0.001)


def test_flash_and_ramp_from_comparator(t22):
    e_cmp_fj = 0.1086 * 15.0 * 1.0 * E22 / (E45[20] + 8 / 12 * (E45[32] - E45[20]))  # 28 nm
    assert t22.comparator_energy_fj == pytest.approx(e_cmp_fj)
    assert adc_energy_pj("flash", 4, t22) == pytest.approx(15 * e_cmp_fj * 1e-3)
    e_ref_fj = 0.55**2 / 100e3 * 1e-9 * 1e15  # V^2 G t, one 1-ns step
    assert t22.ramp_ref_cell_read_energy_fj == pytest.approx(e_ref_fj)
    e_bit_pj = 0.021 / 16 * E22 / E45[32]
    expected = 2**4 * (e_ref_fj + e_cmp_fj) * 1e-3 + 4 * e_bit_pj
    assert adc_energy_pj("ramp", 4, t22) == pytest.approx(expected)
    assert adc_conversion_time_ns("ramp", 4, t22) == pytest.approx(16.0)
    assert adc_conversion_time_ns("flash", 4, t22) == pytest.approx(1.0)
    ramp_area = t22.comparator_area_um2 + 4 * t22.shift_add_area_um2_per_bit
    ramp_area += (16 + 5) * 48 * 0.022**2
    assert adc_area_um2("ramp", 4, t22) == pytest.approx(ramp_area)


def test_rram_and_sram_cells(t22):
    assert t22.rram_v_read_v == pytest.approx(0.55)
    assert t22.rram_cell_area_um2 == pytest.approx(48 * 0.022**2)
    assert t22.sram_cell_area_um2 == pytest.approx(280 * 0.022**2)
    assert tech_table(7).sram_cell_area_f2 == pytest.approx(551)
    assert t22.sram_cim_bitcell_read_energy_fj == pytest.approx(1.12)


def test_dac_and_buffer(t22):
    e1 = 4e-3 / 1024 * 3e-9 * 1e12 * E22 / E45[32]  # ISAAC 3.9 uW x 3 ns, from 32 nm
    assert dac_energy_pj(1, t22) == pytest.approx(e1)
    assert dac_energy_pj(4, t22) == pytest.approx(e1 * 8 * 6 / 3)
    assert dac_area_um2(8, t22) == pytest.approx(170 / 1024 * 128 * A22 / A45[32])
    assert dac_conversion_time_ns(1, t22) == pytest.approx(3.0)
    assert buffer_energy_pj_per_bit(32, t22) == pytest.approx(t22.sram_buffer_energy_pj_per_bit)
    assert buffer_energy_pj_per_bit(8, t22) == pytest.approx(20 / 64 * E22 / 2)
    assert buffer_energy_pj_per_bit(1024, t22) == pytest.approx(100 / 64 * E22)
    assert buffer_energy_pj_per_bit(4, t22) < buffer_energy_pj_per_bit(8, t22)


def test_buffer_energy_continues_the_end_slopes_outside_the_table(t22):
    """Outside 8 KB .. 1 MB the Horowitz buffer energy continues the log-log slope of the
    nearest pair of points (docstring of ``buffer_energy_pj_per_bit``): above 1 MB the
    32 KB -> 1 MB slope ln(100/20) / ln(1024/32) = ln 5 / ln 32, so 4 MB costs
    100 x 4^(ln 5 / ln 32) pJ per 64 b; below 8 KB the 8 -> 32 KB slope ln 2 / ln 4 = 1/2, so
    2 KB costs 10 x (1/4)^(1/2) = 5 pJ per 64 b. Guards the slope each side uses."""
    per_bit_32k = t22.sram_buffer_energy_pj_per_bit  # 20 pJ per 64 b at 32 KB, node-scaled
    assert buffer_energy_pj_per_bit(4096, t22) == pytest.approx(
        per_bit_32k * 100 / 20 * 4 ** (math.log(5) / math.log(32)))
    assert buffer_energy_pj_per_bit(2, t22) == pytest.approx(per_bit_32k * 5 / 20)


# ---- monotonicity and bands ---------------------------------------------------------------


@pytest.mark.parametrize("band", list(ADCBand))
@pytest.mark.parametrize("node", (7, 22, 65, 130))
@pytest.mark.parametrize("kind", CONVERTER_KINDS)
def test_adc_monotone_in_bits(kind, node, band):
    t = tech_table(node, band)
    for fn in (adc_energy_pj, adc_area_um2, adc_conversion_time_ns):
        values = [fn(kind, b, t) for b in range(1, MAX_ADC_BITS + 1)]
        assert all(v > 0 for v in values)
        assert all(b >= a for a, b in zip(values, values[1:], strict=False)), fn.__name__


@pytest.mark.parametrize("kind", CONVERTER_KINDS)
def test_bands_ordered(kind):
    for node in NODES:
        low, typ, high = (tech_table(node, band) for band in ADCBand)
        for b in range(1, MAX_ADC_BITS + 1):
            e = [adc_energy_pj(kind, b, t) for t in (low, typ, high)]
            assert e[0] <= e[1] <= e[2], (node, b, e)
            assert adc_area_um2(kind, b, low) == adc_area_um2(kind, b, high)
    assert adc_energy_pj("sar", 8, tech_table(22, ADCBand.HIGH)) == pytest.approx(
        3.0 * adc_energy_pj("sar", 8, tech_table(22))
    )


@pytest.mark.parametrize("kind", CONVERTER_KINDS)
def test_smaller_node_less_energy(kind):
    tables = [tech_table(n) for n in sorted(NODES)]
    for bits in (1, 4, 8, 12):
        energies = [adc_energy_pj(kind, bits, t) for t in tables]
        assert all(b > a for a, b in zip(energies, energies[1:], strict=False)), energies
    digital = (
        "shift_add_energy_pj_per_bit",
        "accumulator_add_energy_pj_per_bit",
        "dequant_mult_energy_pj",
        "sram_buffer_energy_pj_per_bit",
        "interconnect_energy_pj_per_bit",
        "dac_energy_pj_per_pulse",
        "router_area_um2",
    )
    for name in digital:
        values = [getattr(t, name) for t in tables]
        assert all(b > a for a, b in zip(values, values[1:], strict=False)), name


# ---- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("node", (2.9, 181, 0, -22, math.nan, "22nm", True))
def test_bad_node(node):
    with pytest.raises(ConfigError, match=r"node_nm.*allowed: 3\.\.180 nm"):
        tech_table(node)


def test_bad_band_kind_bits(t22):
    with pytest.raises(ConfigError, match="band.*low, typical, high"):
        tech_table(22, "worst")
    with pytest.raises(ConfigError, match="kind='pipeline'.*sar, flash, ramp"):
        adc_energy_pj("pipeline", 8, t22)
    for bad in (0, 17, 4.0, "8", True, None):
        for fn in (adc_energy_pj, adc_area_um2, adc_conversion_time_ns):
            with pytest.raises(ConfigError, match="bits"):
                fn("sar", bad, t22)
        with pytest.raises(ConfigError, match="bits"):
            dac_energy_pj(bad, t22)
    with pytest.raises(ConfigError, match="size_kib"):
        buffer_energy_pj_per_bit(0, t22)


def test_enums_or_their_toml_strings(t22):
    # The tables take the config's enums; the value string (what TOML holds) means the same.
    for fn in (adc_energy_pj, adc_area_um2, adc_conversion_time_ns):
        for kind in CONVERTER_KINDS:
            assert fn(kind, 8, t22) == fn(kind.value, 8, t22)
    assert tech_table(22, "high") == tech_table(22, ADCBand.HIGH)
    assert tech_table(22, "high").adc_band is ADCBand.HIGH
    # another enum's member is not an ADC kind, nor is a differently spelled string
    with pytest.raises(ConfigError, match="kind"):
        adc_energy_pj(ADCBand.LOW, 8, t22)
    with pytest.raises(ConfigError, match="kind"):
        adc_energy_pj("SAR", 8, t22)


def test_chip_band_is_the_enum_and_reaches_the_table():
    tech = TechConfig(adc_band="low")
    assert tech.adc_band is ADCBand.LOW
    assert tech_table(tech.node_nm, tech.adc_band).adc_band is ADCBand.LOW


def test_table_is_frozen_and_validated(t22):
    assert isinstance(t22, TechTable)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t22.node_nm = 7  # type: ignore[misc]
    with pytest.raises(ConfigError, match="comparator_energy_fj"):
        dataclasses.replace(t22, comparator_energy_fj=-1.0)
    with pytest.raises(ConfigError, match="sar_adc_energy_pj_by_bits"):
        dataclasses.replace(t22, sar_adc_energy_pj_by_bits=(1.0,) * 15 + (0.5,))
    variant = dataclasses.replace(t22, ramp_step_ns=0.3)
    assert adc_conversion_time_ns("ramp", 8, variant) == pytest.approx(256 * 0.3)
    assert variant.ramp_ref_cell_read_energy_fj == pytest.approx(
        0.3 * t22.ramp_ref_cell_read_energy_fj
    )

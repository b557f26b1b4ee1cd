"""The time-to-digital converter read-out (``adc.kind = 'tdc'``, issue 13): a circuit model
from the node tables (delay stages, flip-flops, comparator decisions), held to answers computed
by hand from the published constants; monotone in bits, node and supply; the schema (TOML round
trip, errors naming the field); linear in simulation, the same conversion as a SAR's."""

from __future__ import annotations

import math
import tomllib

import pytest
import torch

import cimsim
from cimsim.config import ADCConfig, ADCKind, ChipConfig, TDCArchitecture, unstated_inputs
from cimsim.cost import component_models, datasheet
from cimsim.cost import tables as T
from cimsim.errors import ConfigError
from cimsim.events import Action, Component
from cimsim.sweep import chip_for_point
from tests.mapping.conftest import reference_model
from tests.test_backend_parity import _deploy, _problem, lossless, modelled

A, C = Action, Component
COUNTER, SUCCESSIVE = TDCArchitecture.COUNTER, TDCArchitecture.SUCCESSIVE

# the tables at 45 nm and 0.8 V, by hand from the published constants:
E_FA_45_FJ = 0.1 / 32 * 1e3        # Horowitz 32-b add, 0.1 pJ at 45 nm: a full-adder bit
E_STAGE_45_FJ = E_FA_45_FJ * 2 / 28  # an inverter: 2 of the mirror adder's 28 transistors
E_FF_45_FJ = 0.021 / 16 * 1e3 / 0.66  # ISAAC S+A per bit at 32 nm, 32 -> 45 nm (S&B 0.66)
# MNSIM 2.0's sense amp, 1.629 fJ at 28 nm; 28 nm is 0.22 + (8/12) 0.44 of 45 nm (S&B)
E_CMP_45_FJ = 0.1086 * 15.0 / (0.22 + 8 / 12 * 0.44)
T_STAGE_45_NS = 0.5 * 45 * 1e-3   # one FO4, half a ps per nm of node


def chip_at(arch: str = "counter", bits: int = 4, cost_model: str = "physical",
            **tech) -> ChipConfig:
    """The rram-22nm preset at 45 nm / 0.8 V read by a ``bits``-bit TDC of ``arch``."""
    base = cimsim.load_chip("rram-22nm")
    fields = dict(node_nm=45.0, vdd_v=0.8, cost_model=cost_model)
    fields.update(tech)
    return base.replace(tech=base.tech.replace(**fields),
                        adc=base.adc.replace(kind="tdc", bits=bits, tdc_architecture=arch,
                                             range_policy="full_scale"))


def adc(chip: ChipConfig):
    return component_models(chip)[C.ADC]


def test_known_answers_at_45nm_by_hand():
    """4 b at 45 nm, 0.8 V. Counter: one comparator, 15 periods of a 3-stage ring (6 stage
    transitions each), 2 x 15 counter toggles. Successive: 5 comparator decisions, 15 unit
    stages passed and reset, 4 register bits."""
    table = T.tech_table(45.0)
    counter = E_CMP_45_FJ + 6 * 15 * E_STAGE_45_FJ + 2 * 15 * E_FF_45_FJ
    successive = 5 * E_CMP_45_FJ + 2 * 15 * E_STAGE_45_FJ + 4 * E_FF_45_FJ
    assert counter == pytest.approx(82.92, abs=0.01)  # fJ
    assert successive == pytest.approx(30.52, abs=0.01)
    assert T.tdc_energy_pj(COUNTER, 4, table) * 1e3 == pytest.approx(counter, rel=1e-9)
    assert T.tdc_energy_pj(SUCCESSIVE, 4, table) * 1e3 == pytest.approx(successive, rel=1e-9)
    # time: the counter counts while the 15 periods of 6 stage delays last; the successive
    # converter's pulse and binary delays (2 x 15 stages) then 4 comparator cycles of 1 ns
    assert T.tdc_conversion_time_ns(COUNTER, 4, table) == pytest.approx(6 * 15 * T_STAGE_45_NS)
    assert T.tdc_conversion_time_ns(SUCCESSIVE, 4, table) == pytest.approx(
        2 * 15 * T_STAGE_45_NS + 4 * 1.0)
    # area: an inverter is 2 of the 8T SRAM cell's 8 transistors (280 F^2)
    stage = 280 * 0.045**2 / 8 * 2
    digital = table.comparator_area_um2 + 4 * table.shift_add_area_um2_per_bit
    assert T.tdc_area_um2(COUNTER, 4, table) == pytest.approx(digital + 3 * stage)
    assert T.tdc_area_um2(SUCCESSIVE, 4, table) == pytest.approx(
        digital + table.comparator_area_um2 + 15 * stage)


@pytest.mark.parametrize("arch", ["counter", "successive"])
def test_both_cost_models_price_the_circuit_scaled_by_supply(arch):
    """physical: the circuit with the sense amp's decision, times (V/0.8)^2; tables: the same
    circuit with the band's comparator (typical: the same sense amp), times (V/0.8)^2."""
    table = T.tech_table(45.0)
    want = T.tdc_energy_pj(arch, 6, table, T.sense_amp_energy_fj(45.0))
    for cost_model in ("physical", "tables"):
        for vdd in (0.8, 1.1):
            model = adc(chip_at(arch, 6, cost_model, vdd_v=vdd))
            assert model.energy_pj(A.CONVERT, 6) == pytest.approx(want * (vdd / 0.8) ** 2)
            assert model.time_ns(A.CONVERT) == pytest.approx(
                T.tdc_conversion_time_ns(arch, 6, table))
        assert adc(chip_at(arch, 6, cost_model)).area_um2() == pytest.approx(
            T.tdc_area_um2(arch, 6, table))


@pytest.mark.parametrize("arch", ["counter", "successive"])
def test_physical_tdc_leakage_is_not_priced(arch):
    """A TDC is CMOS logic (delay stages, flip-flops, a comparator) and the physical model
    prices no leakage for it, as for the adder trees (no source): ``adc.leak`` is 0 while a
    conversion costs energy. Guards against the survey converters' leakage (a fraction of the
    dynamic power at the design rate) being charged to the TDC."""
    model = component_models(chip_at(arch, 6))[C.ADC]
    assert model.energy_pj(A.CONVERT, 6) > 0.0
    assert model.energy_pj(A.LEAK, 6) == 0.0


@pytest.mark.parametrize("arch", list(TDCArchitecture))
def test_monotone_in_bits_node_and_supply(arch):
    nodes = (3.0, 7.0, 22.0, 28.0, 45.0, 65.0, 130.0, 180.0)
    for node in nodes:
        table = T.tech_table(node)
        e = [T.tdc_energy_pj(arch, b, table) for b in range(1, 17)]
        t = [T.tdc_conversion_time_ns(arch, b, table) for b in range(1, 17)]
        a = [T.tdc_area_um2(arch, b, table) for b in range(1, 17)]
        for series in (e, t, a):
            assert all(x < y for x, y in zip(series, series[1:], strict=False))
    for lo, hi in zip(nodes, nodes[1:], strict=False):
        for b in (1, 4, 8, 12):
            for fn in (T.tdc_energy_pj, T.tdc_conversion_time_ns, T.tdc_area_um2):
                assert fn(arch, b, T.tech_table(lo)) < fn(arch, b, T.tech_table(hi)), fn
    e = [adc(chip_at(arch.value, 7, vdd_v=v)).energy_pj(A.CONVERT, 7) for v in (0.6, 0.8, 1.0)]
    assert e[0] < e[1] < e[2]


def test_successive_beats_counter_above_a_few_bits():
    """The successive converter pays b comparator decisions for 2^b delay stages, the counter
    ~2^(b+1) flip-flop toggles: the counter is dearer from 3 b on at every node."""
    for node in (7.0, 28.0, 130.0):
        table = T.tech_table(node)
        for b in range(3, 13):
            assert T.tdc_energy_pj(SUCCESSIVE, b, table) < T.tdc_energy_pj(COUNTER, b, table)


def test_datasheet_names_the_circuit_model():
    sheet = datasheet(chip_at("successive", 7))
    assert sheet["adc"]["priced_by"] == "circuit"
    assert sheet["adc"]["rate_factor"] == 1.0
    assert sheet["uncertainty"]["adc_family"] is None


def test_schema_round_trip_and_errors():
    chip = chip_at("successive", 7)
    again = ChipConfig.from_dict(tomllib.loads(chip.to_toml()))
    assert again == chip and again.adc.tdc_architecture is SUCCESSIVE
    assert ADCConfig().tdc_architecture is COUNTER
    with pytest.raises(ConfigError, match=r"tdc_architecture.*'counter', 'successive'"):
        ADCConfig(kind="tdc", tdc_architecture="flash")
    with pytest.raises(ConfigError, match=r"kind.*'tdc'"):
        ADCConfig(kind="time_to_digital")
    with pytest.raises(ConfigError, match="tdc_architecture"):
        T.tdc_energy_pj("ring", 4, T.tech_table(45.0))
    # a sweep may choose the kind as it chooses 'cco'
    swept = chip_for_point(cimsim.load_chip("rram-22nm"), {"adc_kind": "tdc"})
    assert swept.adc.kind is ADCKind.TDC


def test_an_unstated_architecture_is_named_as_a_default():
    """The 8-Mb ReRAM macro's abstract names no TDC architecture: the datasheet's unstated
    inputs say which one it got; Wu's macro states its recursive (successive) TDC."""
    assert "adc.tdc_architecture = 'counter'" in unstated_inputs("published/rram8mb-jssc23")
    assert not any("tdc_architecture" in u for u in unstated_inputs("published/wu-jssc23"))


def test_simulated_as_a_linear_converter_bit_for_bit():
    """A TDC converts as a SAR of its bits (the same levels: both linear), and a 24-b TDC is
    lossless: equal to the integer reference bit for bit."""
    model, x = _problem("cnn", 0)
    model, x = model.float(), x.float()
    base = modelled(cimsim.load_chip("rram-22nm"))
    sar = base.replace(adc=base.adc.replace(kind="sar", bits=6))
    tdc = base.replace(adc=base.adc.replace(kind="tdc", bits=6, tdc_architecture="successive"))
    assert torch.equal(_deploy(model, sar, x)(x), _deploy(model, tdc, x)(x))
    exact = lossless(base)
    exact = exact.replace(adc=exact.adc.replace(kind="tdc"))
    sim = _deploy(model, exact, x)
    got = sim(x)
    assert math.isfinite(float(got.abs().sum()))
    assert torch.equal(got, reference_model(model, sim)(x))

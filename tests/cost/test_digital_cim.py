"""Digital CIM readout (``adc.kind = 'digital'``) and the converters' sample-rate term.

Digital CIM sums 1-b products in an adder tree per column: the simulation is exact (lossless)
and the cost is the adder tree's full adders, the bit-cells' product gates and the
shift-accumulators, by node and supply from the digital tables (docs/cost-model.md §digital).
"""

from __future__ import annotations

import math
import tomllib

import numpy as np
import pytest
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


def digital_chip(n_rows: int = 256, encoding: str = "twos_complement", cell: str = "sram",
                 on_off_ratio: float = math.inf, **tech) -> ChipConfig:
    base = cimsim.load_chip("ideal")
    bits = math.ceil(math.log2(2 * n_rows + 1))
    fields = dict(node_nm=22.0, vdd_v=0.8, cost_model="physical", clock_mhz=1000.0,
                  t_read_ns=1.0, cell_kind="sram_6t" if cell == "sram" else None)
    fields.update(tech)
    return base.replace(
        weight_encoding=encoding, dac=base.dac.replace(bits=1),
        device=base.device.replace(cell=cell, bits_per_cell=1, on_off_ratio=on_off_ratio),
        array=base.array.replace(n_rows=n_rows, n_cols=256, cols_per_adc=1),
        adc=base.adc.replace(kind="digital", bits=bits), tech=base.tech.replace(**fields))


# ---- simulation: an exact column sum --------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(rows=st.sampled_from([3, 64, 256]),
       encoding=st.sampled_from(["twos_complement", "differential", "offset", "signed_cell"]),
       seed=st.integers(0, 2**16))
def test_digital_readout_is_lossless(rows, encoding, seed):
    assert_lossless(digital_chip(rows, encoding), seed)


def assert_lossless(chip: ChipConfig, seed: int) -> None:
    """``cimsim.matmul`` on ``chip`` equals the integer product ``x @ w.T`` exactly."""
    rows = chip.array.n_rows
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2**chip.input_bits, size=(5, rows))
    w = rng.integers(-127, 128, size=(7, rows))
    y, _ = cimsim.matmul(x, w, chip, seed=seed)
    assert np.array_equal(np.asarray(y), x @ w.T)


@pytest.mark.parametrize("change, field", [
    # 2-b input slices on 256 rows: sums up to 256 x 3 need 11 b, not 10
    (lambda c: c.replace(dac=c.dac.replace(bits=2)), "ADCConfig.bits"),
    # a 2-b cell names its bits (it named the cell, listing that very cell as allowed)
    (lambda c: c.replace(device=c.device.replace(cell="rram", bits_per_cell=2)),
     r"DeviceConfig.bits_per_cell = 2 is invalid; allowed: 1 "),
    (lambda c: c.replace(adc=c.adc.replace(bits=9)), "ADCConfig.bits"),
    (lambda c: c.replace(adc=c.adc.replace(range_policy="fixed")), "ADCConfig.range_policy"),
    (lambda c: c.replace(noise=c.noise.replace(thermal_sigma_lsb=0.5)), "thermal_sigma_lsb"),
    (lambda c: c.replace(device=c.device.replace(on_off_ratio=10.0)), "on_off_ratio"),
])
def test_digital_readout_rejects_what_it_cannot_be(change, field):
    with pytest.raises(ConfigError, match=field):
        change(digital_chip())


# ---- 1-b resistive cells sensed to their bit ----------------------------------------------
SENSED = ["mram", "rram", "pcm", "fefet", "flash"]


@settings(max_examples=20, deadline=None)
@given(cell=st.sampled_from(SENSED), ratio=st.sampled_from([1.5, 2.0, 10.0, math.inf]),
       rows=st.sampled_from([3, 64, 256]),
       encoding=st.sampled_from(["twos_complement", "differential", "offset", "signed_cell"]),
       seed=st.integers(0, 2**16))
def test_digital_readout_over_sensed_cells_is_lossless(cell, ratio, rows, encoding, seed):
    """A sense amplifier reads each cell to its bit: the off-current (MRAM's R_AP / R_P ~ 2)
    sets the sense margin, not the sum, so the column sum stays the integer product."""
    assert_lossless(digital_chip(rows, encoding, cell=cell, on_off_ratio=ratio), seed)


@pytest.mark.parametrize("encoding, stuck_on, weight", [
    ("twos_complement", 1.0, -1), ("twos_complement", 0.0, 0),  # 8 ones: -1 in two's compl.
    ("offset", 1.0, 127), ("offset", 0.0, -128),  # stored w + 128: 255 or 0
])
def test_a_stuck_sensed_cell_reads_its_stuck_bit(encoding, stuck_on, weight):
    chip = digital_chip(64, encoding, cell="mram", on_off_ratio=2.0)
    chip = chip.replace(device=chip.device.replace(p_stuck_on=stuck_on,
                                                   p_stuck_off=1.0 - stuck_on))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2**chip.input_bits, size=(5, 64))
    w = rng.integers(-127, 128, size=(7, 64))
    y, _ = cimsim.matmul(x, w, chip, seed=1)
    assert np.array_equal(np.asarray(y), x @ np.full_like(w, weight).T)


def test_stuck_sensed_cells_sum_their_bits_exactly():
    from cimsim import engine
    from cimsim.arrays._reference import matmul_reference
    from cimsim.arrays.program import program

    chip = digital_chip(64, cell="mram", on_off_ratio=2.0)
    chip = chip.replace(device=chip.device.replace(p_stuck_on=0.1, p_stuck_off=0.1))
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2**chip.input_bits, size=(5, 64))
    w = rng.integers(-127, 128, size=(7, 64))
    layer = program(w, chip, np.random.default_rng(2))
    assert set(np.unique(layer.g_phys)) == {0.0, 1.0}  # each cell sums as its bit
    y, _ = engine.run(layer, x, noise_seed=4, gemm="float64")
    assert np.array_equal(y, matmul_reference(x, layer, noise_seed=4))
    assert np.array_equal(y, np.round(y)) and not np.array_equal(y, x @ w.T)


@pytest.mark.parametrize("device, field", [
    (dict(drift_nu_mean=(0.01,)), "drift_nu_mean"),
    (dict(read_noise_q_s=(0.01,)), "read_noise_q_s"),
    (dict(retention_sigma_lsb=0.1), "retention_sigma_lsb"),
])
@pytest.mark.parametrize("cell", ["mram", "sram"])
def test_digital_readout_refuses_what_a_sensed_bit_cannot_express(device, field, cell):
    chip = digital_chip(cell=cell)
    with pytest.raises(ConfigError, match=field):
        chip.replace(device=chip.device.replace(**device))


def test_a_bit_cell_s_variation_is_refused_under_a_digital_read_out():
    """No reference senses an SRAM bit-cell: its variation would be summed as an analog
    error, which a digital column does not have."""
    chip = digital_chip(cell="sram")
    with pytest.raises(ConfigError, match="variation_sigma"):
        chip.replace(device=chip.device.replace(variation="lognormal", variation_sigma=0.1))


def _misread_rates(kind: str, sigma: float, ratio: float) -> tuple[float, float]:
    """P(an on cell reads 0), P(an off cell reads 1) by hand: a 1-b cell's conductance (cell
    LSB) is g_off + d, g_off = 1 / (ratio - 1), varied, against the reference g_off + 1/2."""
    from scipy.stats import norm

    g_off = 1.0 / (ratio - 1.0)
    ref = g_off + 0.5
    if kind == "lognormal":
        return (float(norm.cdf(math.log(ref / (1.0 + g_off)) / sigma)),
                float(norm.sf(math.log(ref / g_off) / sigma)))
    return float(norm.cdf((ref - 1.0 - g_off) / sigma)), float(norm.sf((ref - g_off) / sigma))


@pytest.mark.parametrize("kind, sigma, ratio", [("lognormal", 0.15, 2.0),
                                                ("lognormal", 0.3, 3.0),
                                                ("gaussian", 0.25, 2.0)])
def test_varied_sensed_cells_misread_as_their_margin_says_and_sum_exactly(kind, sigma, ratio):
    """Programming variation of a sensed cell: the cell whose conductance the variation carries
    across the sense amplifier's midpoint reference reads the other bit, once for all reads;
    the column sums the sensed bits exactly (the integer reference on the programmed bits).
    The misread fractions of on and off cells match the margin by hand."""
    from cimsim import engine
    from cimsim.arrays._reference import matmul_reference
    from cimsim.arrays.program import program, sensing_reference

    chip = digital_chip(256, cell="mram", on_off_ratio=ratio)
    chip = chip.replace(device=chip.device.replace(variation=kind, variation_sigma=sigma))
    assert sensing_reference(chip) == pytest.approx(0.5 + 1.0 / (ratio - 1.0))
    rng = np.random.default_rng(5)
    x = rng.integers(0, 2**chip.input_bits, size=(6, 256))
    w = rng.integers(-127, 128, size=(200, 256))
    layer = program(w, chip, np.random.default_rng(2))
    assert set(np.unique(layer.g_phys)) <= {0.0, 1.0}
    y, _ = engine.run(layer, x, noise_seed=4, gemm="float64")
    assert np.array_equal(y, matmul_reference(x, layer, noise_seed=4))
    on, bits = layer.digits_phys != 0, layer.g_phys
    p_on, p_off = _misread_rates(kind, sigma, ratio)
    for cells, p, got in ((on, p_on, np.mean(bits[on] == 0)),
                          (~on, p_off, np.mean(bits[~on] == 1))):
        n = int(cells.sum())
        assert abs(got - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1.0 / n, (got, p)


def test_no_variation_past_the_margin_sums_the_stored_bits():
    """A varied cell far from the reference (an infinite on/off ratio, a small sigma) reads its
    bit: the sum is the integer product, as without variation."""
    chip = digital_chip(64, cell="rram")
    chip = chip.replace(device=chip.device.replace(variation="lognormal", variation_sigma=0.05))
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2**chip.input_bits, size=(5, 64))
    w = rng.integers(-127, 128, size=(9, 64))
    y, _ = cimsim.matmul(x, w, chip, seed=3)
    assert np.array_equal(np.asarray(y), x @ w.T)


def test_twin_is_the_deployed_chip_with_varied_sensed_cells():
    """prepare() on a digital MRAM chip with variation: the eval twin senses the same cells to
    the same bits as deploy() (the same draws), so both give the same outputs."""
    import torch

    from tests.arrays.test_mram import assert_twin_is_deployed

    chip = digital_chip(32, cell="mram", on_off_ratio=2.0)
    chip = chip.replace(weight_bits=4, input_bits=4,
                        adc=chip.adc.replace(bits=7),
                        device=chip.device.replace(variation="lognormal", variation_sigma=0.2))
    prep, x = assert_twin_is_deployed(chip)
    # and the twin trains through the sensed bits (straight-through gradient)
    prep.train()
    loss = prep(x).square().mean()
    loss.backward()
    grads = [p.grad for p in prep.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_a_sensed_cell_sums_in_an_adder_tree_not_a_ripple_column():
    with pytest.raises(ConfigError, match="TechConfig.digital_column"):
        digital_chip(cell="mram", on_off_ratio=2.0, digital_column="ripple")
    assert digital_chip(digital_column="ripple").tech.digital_column.value == "ripple"


def test_a_sensed_cell_draws_its_off_current_but_does_not_sum_it():
    from cimsim.arrays.program import off_conductance, program, read_off_conductance

    chip = digital_chip(64, cell="mram", on_off_ratio=2.0)  # g_off = 1 cell-LSB
    assert (off_conductance(chip), read_off_conductance(chip)) == (0.0, 1.0)
    layer = program(np.random.default_rng(0).integers(-127, 128, size=(7, 64)), chip)
    np.testing.assert_array_equal(layer.cell_rowsum,
                                  (layer.digits_phys + 1.0).sum(axis=1))


@pytest.mark.parametrize("cost_model", ["physical", "tables"])
def test_sensed_cell_prices_by_hand(cost_model):
    """Per cell read: its charge V G t (cell.v2g_lsb) at V (tables) or drawn from the 0.9-V
    supply (physical), plus one sense-amp decision (cell.read), the 1-b converter's (MNSIM
    2.0's 1.63 fJ at 28 nm, node- and supply-scaled); per adder tree (array.cols_per_adc
    columns) one sense amp's area."""
    from cimsim.cost.tables import sense_amp_energy_fj

    chip = digital_chip(cell="mram", on_off_ratio=2.0, vdd_v=0.9, cost_model=cost_model,
                        v_read_v=0.2, t_read_ns=2.0)
    t = tech_table(22.0)
    sf = (0.9 / 0.8) ** 2
    m = component_models(chip)
    assert m[C.CELL].energy_pj(A.READ, 1) == pytest.approx(sense_amp_energy_fj(22.0) * sf * 1e-3)
    g_lsb_us = chip.device.g_max_us / 2  # g_max - g_min at R_AP / R_P = 2
    v = 0.9 if cost_model == "physical" else 0.2
    assert m[C.CELL].energy_pj(A.V2G_LSB, 0) == pytest.approx(v * 0.2 * g_lsb_us * 2.0 * 1e-3)
    assert m[C.ADC].area_um2() == pytest.approx(
        502 * t.accumulator_area_um2_per_bit + t.comparator_area_um2)
    assert m[C.ADC].energy_pj(A.CONVERT, 10) == pytest.approx(  # the adder tree as before
        502 * t.accumulator_add_energy_pj_per_bit * sf)


def test_sense_decision_grows_with_node_and_supply():
    def e(**tech):
        chip = digital_chip(cell="mram", on_off_ratio=2.0, **tech)
        return component_models(chip)[C.CELL].energy_pj(A.READ, 1)

    assert e(node_nm=7.0) < e(node_nm=22.0) < e(node_nm=65.0)
    assert e(vdd_v=0.6) < e(vdd_v=0.8) < e(vdd_v=1.0)


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


def test_digital_readout_gates_every_stored_bit_by_hand():
    """Under a digital read-out each stored bit gates the input into its own adder input: a
    ``signed_cell`` weight's cell holds two bit-cells (magnitude and sign), each a 6T cell with
    a 4-T product gate (280 x 10 / 8 F^2 at 22 nm), so one read switches two gates, ``2 C
    V^2`` with ``C`` = 1 fF/um x the bit-cell pitch. Guards the stored-bits factor of the
    physical digital read (one gate per cell would price half)."""
    chip = digital_chip(encoding="signed_cell", vdd_v=0.9)
    m = component_models(chip)
    f2 = 280.0 * (6 + PRODUCT_GATE_TRANSISTORS) / 8
    assert m[C.CELL].area_um2() == pytest.approx(2 * f2 * 0.022**2)
    pitch = math.sqrt(f2) * 0.022  # one bit-cell's pitch, not the two-bit cell's
    assert m[C.CELL].energy_pj(A.READ, 1) == pytest.approx(
        2 * GATE_CAPACITANCE_FF_PER_UM * pitch * 0.9**2 * 1e-3)


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
    assert corner_rate_hz(4) == pytest.approx(math.exp((213.78 - 128.307 - 4 * 3.2205) / 2.8719))
    assert corner_rate_hz(4) == pytest.approx(95e9, rel=0.01)  # the docstring's 95 GS/s at 4 b
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
    sensed = {r["component"]: r["instance"] for r in area_instances(
        digital_chip(cell="mram", on_off_ratio=2.0))}
    assert "adder tree + sense amp" in sensed["adc"]


# ---- d-bit input slices per cycle (dac.bits = d > 1) ----------------------------------------
def parallel_chip(d: int, input_bits: int = 8, rows: int = 64, cell: str = "sram",
                  on_off_ratio: float = math.inf, signed_inputs: str = "twos_complement",
                  encoding: str = "twos_complement", **tech) -> ChipConfig:
    """:func:`digital_chip` taking ``d``-bit input slices per cycle, its adder tree as wide
    as their sums (:func:`cimsim.config.adder_tree_bits`)."""
    from cimsim.config import adder_tree_bits

    chip = digital_chip(rows, encoding, cell=cell, on_off_ratio=on_off_ratio, **tech)
    return chip.replace(input_bits=input_bits,
                        dac=chip.dac.replace(bits=d, signed_inputs=signed_inputs),
                        adc=chip.adc.replace(bits=adder_tree_bits(rows, d)))


def test_adder_tree_bits_by_hand():
    from cimsim.config import adder_tree_bits

    # sums of R products of a d-bit slice (magnitude <= 2^d - 1) of either sign
    assert adder_tree_bits(256) == adder_tree_bits(256, 1) == 10  # 513 values
    assert adder_tree_bits(256, 2) == 11  # 2 x 256 x 3 + 1 = 1537 values
    assert adder_tree_bits(64, 4) == 11  # 2 x 64 x 15 + 1 = 1921
    assert adder_tree_bits(64, 8) == 15  # 2 x 64 x 255 + 1 = 32641
    assert adder_tree_bits(1, 1) == 2  # -1, 0, 1


@settings(max_examples=25, deadline=None)
@given(d=st.sampled_from([1, 2, 3, 4, 7]), input_bits=st.sampled_from([7, 8]),
       signed=st.sampled_from([None, "twos_complement", "two_pass"]),
       cell=st.sampled_from(["sram", "mram", "rram"]),
       encoding=st.sampled_from(["twos_complement", "differential", "offset", "signed_cell"]),
       rows=st.sampled_from([3, 64]), seed=st.integers(0, 2**16))
def test_d_bit_slices_are_lossless(d, input_bits, signed, cell, encoding, rows, seed):
    """Each bit-cell's stored bit gates a d-bit input slice; the column sums the products
    exactly and the planes combine by shift-add: ``cimsim.matmul`` is the integer product for
    d = 1, 2, 4 and the whole input, and for a d that does not divide the input bits (3 of 7
    or 8: a shorter top slice), unsigned and signed, on SRAM and sensed 1-b cells."""
    d = min(d, input_bits)
    ratio = math.inf if cell == "sram" else 2.0
    chip = parallel_chip(d, input_bits, rows, cell, ratio, signed or "twos_complement",
                         encoding)
    rng = np.random.default_rng(seed)
    hi = 2 ** (input_bits - 1) if signed else 2**input_bits
    lo = -hi + 1 if signed else 0
    x = rng.integers(lo, hi, size=(5, rows))
    x[0], x[1] = lo, hi - 1  # both ends of the slices' range
    w = rng.integers(-127, 128, size=(7, rows))
    y, _ = cimsim.matmul(x, w, chip, seed=seed)
    assert np.array_equal(np.asarray(y), x @ w.T)


def test_d_bit_slices_match_the_plain_oracle():
    from cimsim import engine
    from cimsim.arrays._reference import matmul_reference
    from cimsim.arrays.program import program

    chip = parallel_chip(4, 8, 64, cell="mram", on_off_ratio=2.0)
    chip = chip.replace(device=chip.device.replace(p_stuck_on=0.1, p_stuck_off=0.1))
    rng = np.random.default_rng(5)
    x = rng.integers(-127, 128, size=(6, 64))
    layer = program(rng.integers(-127, 128, size=(9, 64)), chip, np.random.default_rng(2),
                    input_signed=True)
    y, _ = engine.run(layer, x, noise_seed=4, gemm="float64")
    assert np.array_equal(y, matmul_reference(x, layer, noise_seed=4))


@pytest.mark.parametrize("d", [2, 4])
@pytest.mark.parametrize("cell", ["sram", "mram"])
def test_twin_is_the_deployed_chip_with_d_bit_slices(d, cell):
    from tests.arrays.test_mram import assert_twin_is_deployed

    chip = parallel_chip(d, 4, 32, cell=cell, on_off_ratio=2.0 if cell == "mram" else math.inf)
    chip = chip.replace(weight_bits=4)
    if cell == "mram":  # sensed misreads drawn once, the same in the twin
        chip = chip.replace(device=chip.device.replace(variation="lognormal",
                                                       variation_sigma=0.2))
    assert_twin_is_deployed(chip)


def test_d_bit_slices_need_a_tree_as_wide_as_their_sums():
    chip = parallel_chip(4, rows=64)
    with pytest.raises(ConfigError, match="ADCConfig.bits.*4-b input slices"):
        chip.replace(adc=chip.adc.replace(bits=10))


def test_a_ripple_column_refuses_d_bit_slices_by_name():
    """A ripple column's row adds its 1-b input times the weight with one full adder per
    bit-cell; a d-bit slice times the weight is d shifted additions per row."""
    chip = digital_chip(128, digital_column="ripple")
    with pytest.raises(ConfigError, match="DACConfig.bits.*ripple"):
        chip.replace(dac=chip.dac.replace(bits=2), input_bits=8,
                     adc=chip.adc.replace(bits=10))


def test_adder_tree_full_adders_for_d_bit_inputs_by_hand():
    # level k adds (d + k - 1)-bit operands
    assert adder_tree_full_adders(4, 2) == 2 * 2 + 1 * 3 == 7
    assert adder_tree_full_adders(3, 2) == 1 * 2 + 1 * 3 == 5  # the odd input passes up
    assert adder_tree_full_adders(256, 4) == (128 * 4 + 64 * 5 + 32 * 6 + 16 * 7 + 8 * 8
                                              + 4 * 9 + 2 * 10 + 1 * 11) == 1267
    # each further input bit adds one full adder to each of the n - 1 adders
    assert adder_tree_full_adders(256, 4) == adder_tree_full_adders(256) + 3 * 255
    assert adder_tree_full_adders(256, 1) == adder_tree_full_adders(256) == 502


def _mean_set_bits(d: int) -> float:
    # ones in a nonzero d-bit slice, uniform over 1 .. 2^d - 1 (by enumeration)
    return float(np.mean([bin(v).count("1") for v in range(1, 2**d)]))


def test_d_bit_slices_price_by_hand_physical():
    from cimsim.cost.models import unit_transistor_area_um2

    d = 4
    chip = parallel_chip(d, 8, 256, vdd_v=0.9)
    t = tech_table(22.0)
    sf = (0.9 / 0.8) ** 2
    m = component_models(chip)
    # the adder tree of 4-b products: 1267 full adders
    assert m[C.ADC].energy_pj(A.CONVERT, chip.adc.bits) == pytest.approx(
        1267 * t.accumulator_add_energy_pj_per_bit * sf)
    assert m[C.ADC].area_um2() == pytest.approx(1267 * t.accumulator_area_um2_per_bit)
    # the bit-cell: 6T + d 4-T product gates at the 8T cell's 280 F^2 per 8 transistors
    f2 = 280.0 * (6 + d * PRODUCT_GATE_TRANSISTORS) / 8
    assert m[C.CELL].area_um2() == pytest.approx(f2 * 0.022**2)
    assert unit_transistor_area_um2(22.0) == pytest.approx(280.0 / 8 * 0.022**2)
    # the gates whose input bit is 1 switch: 32/15 of them for a nonzero 4-b slice
    pitch = math.sqrt(f2) * 0.022
    assert m[C.CELL].energy_pj(A.READ, 1) == pytest.approx(
        GATE_CAPACITANCE_FF_PER_UM * pitch * 0.9**2 * 1e-3 * _mean_set_bits(d))
    assert _mean_set_bits(d) == pytest.approx(32 / 15)
    # d 1-b input drivers per row, those whose bit is 1 toggle (not a 4-b analog DAC)
    one = component_models(digital_chip(256, vdd_v=0.9))[C.DAC]
    wide = component_models(parallel_chip(d, 8, 256, vdd_v=0.9, cell_kind="sram_6t"))
    assert m[C.DAC].area_um2() == pytest.approx(d * one.area_um2())
    # the word line's pitch follows the wider cell: compare with the same cell's 1-b driver
    assert m[C.DAC].energy_pj(A.PULSE, d) == pytest.approx(
        _mean_set_bits(d) * wide[C.DAC].energy_pj(A.PULSE, 1))


def test_d_bit_slices_price_by_hand_tables():
    d = 2
    chip = parallel_chip(d, 8, 256, cost_model="tables")
    base = digital_chip(256, cost_model="tables")
    m, m1 = component_models(chip), component_models(base)
    # the 8T CIM cell gates one bit through its read port; a 2nd input bit adds a 4-T gate
    assert m[C.CELL].area_um2() == pytest.approx(m1[C.CELL].area_um2() * (1 + 4 / 8))
    assert m[C.CELL].energy_pj(A.READ, 1) == pytest.approx(
        m1[C.CELL].energy_pj(A.READ, 1) * 4 / 3)  # 4/3 ones in a nonzero 2-b slice
    t = tech_table(22.0)
    assert m[C.ADC].energy_pj(A.CONVERT, 11) == pytest.approx(
        (502 + 255) * t.accumulator_add_energy_pj_per_bit)
    assert m[C.DAC].area_um2() == pytest.approx(2 * m1[C.DAC].area_um2())


@pytest.mark.parametrize("cost_model", ["physical", "tables"])
def test_a_sensed_bit_gates_a_d_bit_slice(cost_model):
    """At d = 1 a sensed bit is the product (no gate); at d > 1 it gates the slice's bits."""
    from cimsim.cost.models import unit_transistor_area_um2
    from cimsim.cost.tables import sense_amp_energy_fj

    one = component_models(digital_chip(64, cell="mram", on_off_ratio=2.0,
                                        cost_model=cost_model))
    four = component_models(parallel_chip(4, 8, 64, cell="mram", on_off_ratio=2.0,
                                          cost_model=cost_model))
    assert one[C.CELL].energy_pj(A.READ, 1) == pytest.approx(sense_amp_energy_fj(22.0) * 1e-3)
    gate = four[C.CELL].energy_pj(A.READ, 1) - one[C.CELL].energy_pj(A.READ, 1)
    pitch = four[C.CELL].bit_pitch_um()
    assert gate == pytest.approx(GATE_CAPACITANCE_FF_PER_UM * pitch * 0.8**2 * 1e-3
                                 * _mean_set_bits(4))
    t = tech_table(22.0)
    assert four[C.ADC].area_um2() == pytest.approx(
        1 * (adder_tree_full_adders(64, 4) * t.accumulator_area_um2_per_bit
             + t.comparator_area_um2 + 4 * PRODUCT_GATE_TRANSISTORS
             * unit_transistor_area_um2(22.0)))


@pytest.mark.parametrize("cost_model", ["physical", "tables"])
def test_wider_slices_cost_more_per_cycle_and_take_fewer_cycles(cost_model):
    """Energy per cycle (tree, cell, driver) grows with d; the cycles of a MAC fall as
    ceil(B / d): 8, 4, 2, 1 input planes for d = 1, 2, 4, 8."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(4, 64))
    w = rng.integers(-127, 128, size=(5, 64))
    per_cycle, cycles = [], []
    for d in (1, 2, 4, 8):
        chip = parallel_chip(d, 8, 64, cost_model=cost_model)
        m = component_models(chip)
        per_cycle.append((m[C.ADC].energy_pj(A.CONVERT, chip.adc.bits),
                          m[C.CELL].energy_pj(A.READ, 1), m[C.DAC].energy_pj(A.PULSE, d)))
        _, ev = cimsim.matmul(x, w, chip, seed=0)
        conv = sum(n for k, n in dict(ev).items() if k.component is C.ADC
                   and k.action is A.CONVERT)
        cycles.append(conv)
    for a, b in zip(per_cycle, per_cycle[1:], strict=False):
        assert all(lo < hi for lo, hi in zip(a, b, strict=True))
    assert [c / cycles[-1] for c in cycles] == [8, 4, 2, 1]


@pytest.mark.parametrize("signed", [False, True])
def test_a_sensed_row_is_read_once_per_nonzero_slice(signed):
    """A sensed cell's row is read at the full read voltage once per nonzero d-bit slice (its
    bit then gates the slice in logic): the run counts those reads, Σ [x_p != 0] G, on both
    engine paths and the torch backend, and both cost models price each read's charge
    V_read G t: at V_read (tables) or drawn from the supply V_dd (physical)."""
    from cimsim import engine
    from cimsim.arrays.encoding import input_planes
    from cimsim.arrays.program import program
    from cimsim.events import EventKey
    from tests.test_backend_parity import assert_same_events, torch_matmul

    chip = parallel_chip(4, 8, 64, cell="mram", on_off_ratio=2.0, v_read_v=0.25)
    rng = np.random.default_rng(1)
    lo = -127 if signed else 0
    x = rng.integers(lo, 128 if signed else 256, size=(6, 64))
    x[:, ::5] = 0  # zero slices are not read
    w = rng.integers(-127, 128, size=(5, 64))
    layer = program(w, chip, np.random.default_rng(0), input_signed=signed)
    planes = input_planes(x, chip, signed).planes
    reads = np.count_nonzero(planes, axis=(0, 1)) @ layer.cell_rowsum
    key = EventKey(C.CELL, A.V2G_LSB, 0)
    runs = [engine.run(layer, x, noise_seed=0, kernel=k)[1] for k in ("numba", "numpy")]
    got, _ = torch_matmul(x, w, chip, 0, input_signed=signed)
    for ev in runs:
        assert ev[key] == pytest.approx(reads)
        assert_same_events(runs[0], ev)
    assert_same_events(runs[0], got.events)
    assert reads < (planes.astype(np.float64) ** 2).sum(axis=(0, 1)) @ layer.cell_rowsum
    for cost_model in ("physical", "tables"):
        m = component_models(chip.replace(tech=chip.tech.replace(cost_model=cost_model)))
        v = chip.tech.vdd_v if cost_model == "physical" else 0.25
        assert m[C.CELL].energy_pj(A.V2G_LSB, 0) == pytest.approx(
            v * 0.25 * chip.device.g_lsb_us * chip.tech.t_read_ns * 1e-3)


@pytest.mark.parametrize("section,change,said", [
    ("noise", dict(nonlinearity="saturating"), "NoiseConfig.nonlinearity = 'saturating'"),
    ("noise", dict(thermal_sigma_lsb=0.5), "NoiseConfig.thermal_sigma_lsb = 0.5"),
    ("adc", dict(comparator_noise_lsb=0.2), "ADCConfig.comparator_noise_lsb = 0.2"),
    ("device", dict(drift_nu_mean=[0.1]), r"DeviceConfig.drift_nu_mean = \(0.1,\)"),
])
def test_an_analog_error_under_a_digital_read_out_is_named_with_its_section_and_value(
        section, change, said):
    """It said ``ChipConfig.nonlinearity = 'set'``: neither the TOML section a user writes
    (``--set noise.nonlinearity=...``) nor the value. (Drift over an MRAM cell: an SRAM
    bit-cell's device refuses drift under any read-out, ``DeviceConfig`` itself.)"""
    chip = digital_chip(cell="mram" if section == "device" else "sram")
    with pytest.raises(ConfigError, match=said):
        chip.replace(**{section: getattr(chip, section).replace(**change)})
    if section == "device":  # an exponent of 0 drifts nothing: allowed
        chip.replace(device=chip.device.replace(drift_nu_mean=[0.0]))


def test_a_digital_macro_is_timed_by_its_clock_not_the_analog_read_pulse():
    """A digital macro that did not write ``t_read_ns`` ran at the analog read pulse's
    default 10 ns a step: a 1-GHz macro at a tenth of its rate (TOPS 10x low). Its step is one
    clock; sensed resistive cells still hold their read pulse."""
    chip = cimsim.load_chip("cimsim/presets/published/chih-isscc21.toml")
    assert chip.tech.t_read_ns == 1.0 and chip.tech.clock_mhz == 1000.0
    stated = datasheet(chip, scope="macro")
    default_pulse = datasheet(chip.replace(tech=chip.tech.replace(t_read_ns=10.0)),
                              scope="macro")
    assert default_pulse["tops"] == pytest.approx(stated["tops"], rel=1e-12)
    slower = datasheet(chip.replace(tech=chip.tech.replace(clock_mhz=500.0)), scope="macro")
    assert slower["tops"] == pytest.approx(stated["tops"] / 2, rel=1e-9)
    from cimsim.cost.latency import stated_window_ns
    sensed = chip.replace(device=chip.device.replace(cell="rram"),
                          tech=chip.tech.replace(t_read_ns=10.0, cell_kind=None))
    assert stated_window_ns(sensed) == 10.0


def test_an_ideal_cell_priced_as_a_resistive_kind_is_sensed_as_that_cell():
    """An ``ideal`` cell given ``tech.cell_kind = 'rram_1t1r'`` under a digital read-out is the
    1-b RRAM cell without variation to the read-out and the physical cost model: sensed by a
    sense amplifier, read at the full read voltage per nonzero slice (it was priced as an RRAM
    cell's analog read, with neither the sense amplifier's decision nor its area), and exact.
    The tables model reads no ``cell_kind``: there the cell stays the ideal one, not sensed."""
    from cimsim.arrays.program import program, sensed_cells
    from cimsim.cost import estimate, layer_work

    base = cimsim.load_chip("ideal")
    ideal = base.replace(adc=base.adc.replace(kind="digital", bits=10),
                         device=base.device.replace(bits_per_cell=1),
                         tech=base.tech.replace(cell_kind="rram_1t1r", cost_model="physical"))
    assert not sensed_cells(ideal.replace(tech=ideal.tech.replace(cost_model="tables")))
    rram = ideal.replace(device=ideal.device.replace(cell="rram"))
    assert sensed_cells(ideal) and sensed_cells(rram)
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, size=(16, 64))
    x = rng.integers(0, 256, size=(8, 64))
    reports = []
    for chip in (ideal, rram):
        y, ev = cimsim.matmul(x, w, chip)
        np.testing.assert_array_equal(y, x @ w.T)
        reports.append(estimate([layer_work(ev, program(w, chip))], chip))
    a, b = reports
    assert a.energy_by_component() == pytest.approx(b.energy_by_component())
    assert a.area_by_component() == pytest.approx(b.area_by_component())

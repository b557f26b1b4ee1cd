"""Converter prices beyond the survey lines (issue 13): the linear single-slope converter and
1-b conversions priced as one sense-amplifier decision. Known answers computed by hand from
the published constants, monotonicity in bits over kinds, nodes and supplies, the schema."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cimsim
from cimsim.config import ADCConfig, ChipConfig
from cimsim.cost import component_models
from cimsim.cost import tables as T
from cimsim.cost.adc_survey import FAMILIES, fom_w_fj, step_area_um2, steps
from cimsim.errors import ConfigError
from cimsim.events import Action, Component
from cimsim.sweep import chip_for_point, parse_adc_kind

A, C = Action, Component
PUBLISHED = Path(cimsim.__file__).parent / "presets" / "published"

# energy relative to 45 nm at 0.8 V (Stillmaker & Baas, tables._ENERGY_VS_45NM): 32 nm 0.66,
# 20 nm 0.22, so 28 nm is 0.22 + (8/12) 0.44 = 0.51333 (linear in node, as the source does);
# area: 32 nm 0.46, 20 nm 0.21, so 28 nm is 0.21 + (8/12) 0.25 = 0.37667
E28, A28 = 0.22 + 8 / 12 * 0.44, 0.21 + 8 / 12 * 0.25
SENSE_AMP_28NM_FJ = 0.1086 * 15.0  # MNSIM 2.0 ADC_Choice 8: 1.629 uW for one 1-ns decision


def chip_at(kind: str, bits: int, cost_model: str = "physical", **tech) -> ChipConfig:
    """The rram-22nm preset moved to 45 nm / 0.8 V (the survey fit's reference point), with
    ``bits``-bit ``kind`` converters."""
    base = cimsim.load_chip("rram-22nm")
    fields = dict(node_nm=45.0, vdd_v=0.8, cost_model=cost_model)
    fields.update(tech)
    policy = "calibrated" if kind == "ramp" else "full_scale"
    return base.replace(tech=base.tech.replace(**fields),
                        adc=base.adc.replace(kind=kind, bits=bits, range_policy=policy))


def adc(chip: ChipConfig):
    return component_models(chip)[C.ADC]


# ---------------------------------------------------------------------------------------------
# single-slope: known answers
# ---------------------------------------------------------------------------------------------
def test_single_slope_physical_known_answer():
    """6 b at 45 nm, 0.8 V, a 500-MHz clock: 64 flash-family comparator decisions, a 6-b
    counter, and a share of the array's ramp generator (a 6-b DAC powered for the sweep)."""
    chip = chip_at("single_slope", 6, clock_mhz=500.0)
    model = adc(chip)
    table = model.table
    n_share = chip.array.adcs_per_array
    # time: 2^6 periods of 2 ns
    assert model.time_ns(A.CONVERT, 6) == pytest.approx(64 * 2.0)
    # the ramp DAC: MNSIM's 1-b driver 3.9 uW (ISAAC 4 mW / 1024) at 32 nm -> 45 nm (x 1/0.66),
    # a 6-b DAC draws 2^5 times that; held 128 ns per sweep, shared by the array's converters
    p_dac_mw = 4e-3 / 1024 * 1e3 / 0.66 * 2**5  # mW = pJ/ns
    ramp_share = p_dac_mw * 128.0 / n_share
    counter = 6 * 0.021 / 16 / 0.66  # ISAAC S+A 0.021 pJ per 16 b at 32 nm, per bit
    assert table.shift_add_energy_pj_per_bit == pytest.approx(0.021 / 16 / 0.66)
    # the rate (64 ns... conversions at <= 8 MS/s) is far below the 6-b corner: factor 1
    assert model.energy_pj(A.CONVERT, 6) == pytest.approx(
        59.32 * 64 * 1e-3 + counter + ramp_share)
    # area: one comparator (the survey's flash area per comparator, 180518 F^2), the counter
    # (ISAAC S+A 60 um^2 per 16 b at 32 nm, x 1/0.46 to 45 nm, per bit) and the DAC's share
    # (2^6 unit elements at the survey's SAR area per step, 4895 F^2)
    area = (180518.0 * 0.045**2 + 6 * 60.0 / 16 / 0.46
            + 4895.0 * 64 * 0.045**2 / n_share)
    assert model.area_um2() == pytest.approx(area)


def test_ramp_physical_energy_reads_its_reference_column_known_answer():
    """The in-memory ramp's 2^b steps each read one reference cell (the column its area
    counts) and make one comparator decision: at 45 nm, 0.8 V and 6 b, 64 x (59.32 fJ, the
    survey's flash step, + 0.8 V x 0.55 V x 10 uS x 1 ns = 4.4 fJ, the rram-22nm cell at its
    on-conductance for the 1-ns step, its charge drawn from the 0.8-V supply) + the 6-b latch.
    Fails where the reference reads are left out (the tables' ramp prices them)."""
    chip = chip_at("ramp", 6)
    assert (chip.tech.v_read_v, chip.device.g_max_us) == (0.55, 10.0)
    latch = 6 * T.tech_table(45.0).shift_add_energy_pj_per_bit
    want = 64 * (59.32 + 0.8 * 0.55 * 10.0 * 1.0) * 1e-3 + latch
    assert adc(chip).energy_pj(A.CONVERT, 6) == pytest.approx(want)
    # the supply moves the comparator and latch as V_dd^2, the reference read's charge as V_dd
    hi = adc(chip_at("ramp", 6, vdd_v=1.0))
    assert hi.energy_pj(A.CONVERT, 6) - 64 * 5.5e-3 == pytest.approx(
        (64 * 59.32e-3 + latch) * (1.0 / 0.8) ** 2)
    # a dedicated rail at the read voltage (tech.read_supply_v): 0.55^2 x 10 = 3.025 fJ a read
    rail = adc(chip_at("ramp", 6, read_supply_v=0.55))
    assert rail.energy_pj(A.CONVERT, 6) == pytest.approx(
        64 * (59.32 + 3.025) * 1e-3 + latch)


def test_ramp_physical_reference_read_counts_every_device_known_answer():
    """The reference cell of an in-memory ramp is a cell of the array's kind: with two devices
    per cell (``tech.devices_per_cell = 2``) each step's read conducts ``V_s V_read G_max
    devices t_step`` = 0.8 V x 0.55 V x 10 uS x 2 x 1 ns = 8.8 fJ, twice the one-device read.
    Guards the devices factor of :meth:`ADCModel.reference_read_pj`."""
    chip = chip_at("ramp", 6, devices_per_cell=2)
    model = adc(chip)
    assert model.reference_read_pj() == pytest.approx(0.8 * 0.55 * 10.0 * 2 * 1.0 * 1e-3)
    latch = 6 * T.tech_table(45.0).shift_add_energy_pj_per_bit
    assert model.energy_pj(A.CONVERT, 6) == pytest.approx(
        64 * (59.32 + 8.8) * 1e-3 + latch)


def test_ramp_physical_area_is_one_comparator_known_answer():
    """The in-memory ramp converter has one comparator per column, as the single-slope one: its
    2^b steps are reference-cell reads in time. Before the fix the physical model priced 2^b
    flash comparators (6 b: 64 x 180518 F^2, 33x the single-slope converter's area); test
    fails without it."""
    chip = chip_at("ramp", 6)
    model = adc(chip)
    cell_um2 = 48 * 0.045**2  # the preset's 48-F^2 1T1R cell at 45 nm
    area = (180518.0 * 0.045**2 + 6 * 60.0 / 16 / 0.46 + (64 + 5) * cell_um2)
    assert model.area_um2() == pytest.approx(area)
    # the same comparator and counter as the single-slope converter; only the reference
    # differs (a column of cells instead of a share of the ramp DAC)
    ss = chip_at("single_slope", 6)
    ramp_dac_share = 4895.0 * 64 * 0.045**2 / ss.array.adcs_per_array
    assert (model.area_um2() - 69 * cell_um2
            == pytest.approx(adc(ss).area_um2() - ramp_dac_share))


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_ramp_physical_area_grows_with_its_reference_column_only(bits):
    """Ramp area per added bit grows by the reference column's extra cells and a latch bit,
    not by doubling (that is a flash's comparators)."""
    lo, hi = adc(chip_at("ramp", bits)).area_um2(), adc(chip_at("ramp", bits + 1)).area_um2()
    cell_um2 = 48 * 0.045**2
    assert hi - lo == pytest.approx(2**bits * cell_um2 + 60.0 / 16 / 0.46)


def test_single_slope_time_follows_the_clock_and_the_ramp_does_not():
    slow = adc(chip_at("single_slope", 5, clock_mhz=100.0)).time_ns(A.CONVERT, 5)
    fast = adc(chip_at("single_slope", 5, clock_mhz=1000.0)).time_ns(A.CONVERT, 5)
    assert (slow, fast) == pytest.approx((32 * 10.0, 32 * 1.0))
    # the in-memory ramp's step is a reference read and a decision (1 ns), not a clock count
    assert adc(chip_at("ramp", 5, clock_mhz=100.0)).time_ns(A.CONVERT, 5) == pytest.approx(32.0)


def test_single_slope_tables_known_answer():
    """tables: the ramp without its reference column: 2^b comparators + a b-bit latch; the
    conversion 2^b clock periods (the chip's clock), in the estimator as in the tables."""
    chip = chip_at("single_slope", 4, cost_model="tables", clock_mhz=250.0)
    t = T.tech_table(45.0)
    cmp_pj = SENSE_AMP_28NM_FJ / E28 * 1e-3
    bit_pj = 0.021 / 16 / 0.66
    assert T.adc_energy_pj("single_slope", 4, t) == pytest.approx(16 * cmp_pj + 4 * bit_pj)
    assert adc(chip).energy_pj(A.CONVERT, 4) == pytest.approx(16 * cmp_pj + 4 * bit_pj)
    assert T.adc_area_um2("single_slope", 4, t) == pytest.approx(
        1.0 / A28 + 4 * 60.0 / 16 / 0.46)
    assert adc(chip).time_ns(A.CONVERT, 4) == pytest.approx(16 * 4.0)
    assert T.adc_conversion_time_ns("single_slope", 4, t) == pytest.approx(16 * 1.0)
    # leakage per ADC-ns divides by that same time
    assert adc(chip).energy_pj(A.LEAK, 4) == pytest.approx(
        0.2 * (16 * cmp_pj + 4 * bit_pj) / 64.0)


# ---------------------------------------------------------------------------------------------
# 1-b conversions: one sense-amplifier decision
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sar", "flash", "single_slope"])
@pytest.mark.parametrize("cost_model", ["physical", "tables"])
def test_one_bit_conversion_is_one_sense_amp_known_answer(kind, cost_model):
    """MNSIM's sense amp, 1.63 fJ and 1 um^2 at 28 nm, to 45 nm and 0.9 V."""
    chip = chip_at(kind, 1, cost_model=cost_model, vdd_v=0.9)
    model = adc(chip)
    e = SENSE_AMP_28NM_FJ * (1.0 / E28) * (0.9 / 0.8) ** 2 * 1e-3
    assert model.energy_pj(A.CONVERT, 1) == pytest.approx(e)
    assert model.area_um2() == pytest.approx(1.0 * (1.0 / A28))


@pytest.mark.parametrize("cost_model", ["tables", "physical"])
def test_one_bit_sar_takes_one_comparator_cycle_as_its_energy_says(cost_model):
    """A 1-b SAR is priced as one sense-amp decision (no DAC to switch): the same circuit as a
    1-b flash, so one 1-ns comparator cycle, not the (b + 1) = 2 cycles of a SAR's sampling
    and bit cycles. Fails where the 1-b SAR keeps (b + 1) cycles."""
    sar, flash = (adc(chip_at(k, 1, cost_model=cost_model)) for k in ("sar", "flash"))
    assert sar.energy_pj(A.CONVERT, 1) == pytest.approx(flash.energy_pj(A.CONVERT, 1))
    assert sar.time_ns(A.CONVERT, 1) == flash.time_ns(A.CONVERT, 1) == 1.0
    # 2 b: a sampling cycle and two bit cycles
    assert adc(chip_at("sar", 2, cost_model=cost_model)).time_ns(A.CONVERT, 2) == 3.0


@pytest.mark.parametrize("kind", ["ramp", "cco", "integrate_fire"])
def test_one_bit_keeps_the_kind_where_it_is_not_one_comparator(kind):
    """A 1-b ramp still reads its reference column, a CCO still oscillates over its window, a
    neuron still integrates, fires and resets: their survey prices stand at 1 b."""
    model = adc(chip_at(kind, 1))
    counter = 1 * model.table.shift_add_energy_pj_per_bit
    # the ramp's two steps each read a reference cell: 0.8 V x 0.55 V x 10 uS x 1 ns = 4.4 fJ
    reference = 2 * 0.8 * 0.55 * 10.0 * 1e-3 if kind == "ramp" else 0.0
    assert model.energy_pj(A.CONVERT, 1) == pytest.approx(
        fom_w_fj(kind, 45.0) * 2 * 1e-3 + counter + reference)


def test_one_bit_flash_probe_is_no_longer_dearer_than_a_sar():
    """The probe of issue 13: a 65-nm 8T-SRAM 128 x 128 macro with 1-b converters came out
    larger and less efficient than with 3-b SARs while its 1-b flash was priced as a GHz
    survey flash. Now the 1-b macro is the smaller and the more efficient one."""
    from cimsim.cost import datasheet

    base = cimsim.load_chip(PUBLISHED / "jia-jssc20.toml")
    base = base.replace(array=base.array.replace(n_rows=128, n_cols=128, cols_per_adc=1),
                        tech=base.tech.replace(compute_domain="current", cell_kind="sram_8t",
                                               vdd_v=1.0))

    def sheet(kind, bits):
        return datasheet(base.replace(adc=base.adc.replace(kind=kind, bits=bits,
                                                           range_policy="full_scale")))

    one, sar3 = sheet("flash", 1), sheet("sar", 3)
    assert one["area_mm2"] < sar3["area_mm2"] and one["tops_per_w"] > sar3["tops_per_w"]
    assert sheet("sar", 1)["tops_per_w"] == pytest.approx(one["tops_per_w"])


# ---------------------------------------------------------------------------------------------
# monotonic in bits, over kinds, nodes and supplies; the 1-b price under the survey's 2-b one
# ---------------------------------------------------------------------------------------------
@settings(max_examples=80)
@given(kind=st.sampled_from([k.value for k in T.CONVERTER_KINDS]),
       node=st.floats(T.MIN_NODE_NM, T.MAX_NODE_NM),
       vdd=st.floats(0.5, 1.3),
       clock=st.sampled_from([100.0, 1000.0, 5000.0]),
       model=st.sampled_from(["physical", "tables:low", "tables:typical", "tables:high"]))
def test_one_to_two_bits_never_cheaper(kind, node, vdd, clock, model):
    cost_model, _, band = model.partition(":")
    tech = dict(node_nm=node, vdd_v=vdd, clock_mhz=clock, cost_model=cost_model)
    if band:
        tech["adc_band"] = band
    one, two = adc(chip_at(kind, 1, **tech)), adc(chip_at(kind, 2, **tech))
    assert one.energy_pj(A.CONVERT, 1) <= two.energy_pj(A.CONVERT, 2)
    assert one.area_um2() <= two.area_um2()
    assert one.time_ns(A.CONVERT, 1) <= two.time_ns(A.CONVERT, 2)


@pytest.mark.parametrize("kind", ["sar", "flash"])
def test_beyond_the_tables_bits_a_converter_is_never_cheaper(kind):
    """Above the tables' 16 b a reference converter is priced as a 16-b one, but the column
    settled to its own bits: the step grew, the rate fell and the survey's rate factor priced
    a 20-b conversion 13 % under a 16-b one (sram-65nm, no stated window; a cost hunt)."""
    def chip(bits):
        return cimsim.load_chip("sram-65nm", overrides=[
            "tech.cost_model=physical", f"adc.kind={kind}", f"adc.bits={bits}"])

    at = {b: adc(chip(b)) for b in (16, 17, 20)}
    assert at[16].energy_pj(A.CONVERT, 16) == at[17].energy_pj(A.CONVERT, 17) \
        == at[20].energy_pj(A.CONVERT, 20)
    assert at[16].sample_rate_hz() == at[20].sample_rate_hz()


@pytest.mark.parametrize("kind", sorted(k.value for k in T.ONE_COMPARATOR_KINDS))
@pytest.mark.parametrize("node", [T.MIN_NODE_NM, 14.0, 22.0, 45.0, 65.0, T.MAX_NODE_NM])
@pytest.mark.parametrize("vdd", [0.6, 0.8, 1.2])
def test_one_bit_price_is_below_the_survey_two_bit_price(kind, node, vdd):
    one = adc(chip_at(kind, 1, node_nm=node, vdd_v=vdd))
    assert one.energy_pj(A.CONVERT, 1) < fom_w_fj(kind, node, vdd) * steps(kind, 2) * 1e-3
    assert one.area_um2() < step_area_um2(kind, node) * steps(kind, 2)


def test_single_slope_uses_the_flash_family():
    from cimsim.cost.adc_survey import family_of

    assert family_of("single_slope") is FAMILIES["flash"]


# ---------------------------------------------------------------------------------------------
# schema: TOML round trip, bad values, the sweep axis
# ---------------------------------------------------------------------------------------------
def test_single_slope_round_trips_through_toml():
    chip = chip_at("single_slope", 5, clock_mhz=200.0)
    text = chip.to_toml()
    assert 'kind = "single_slope"' in text
    assert ChipConfig.from_dict(tomllib.loads(text)) == chip


@pytest.mark.parametrize("bad", ["single-slope", "singleslope", "SS", 3])
def test_bad_adc_kind_names_the_field_and_single_slope(bad):
    with pytest.raises(ConfigError, match=r"ADCConfig\.kind.*'single_slope'"):
        ADCConfig(kind=bad)


def test_single_slope_takes_fixed_and_full_scale_ranges():
    for policy in ("full_scale", "fixed", "calibrated"):
        assert ADCConfig(kind="single_slope", range_policy=policy).kind.value == "single_slope"


def test_sweep_axis_lists_and_sets_single_slope():
    assert parse_adc_kind("single_slope")[0].value == "single_slope"
    with pytest.raises(ConfigError, match="only 'ramp' takes a level fit"):
        parse_adc_kind("single_slope:uniform")
    with pytest.raises(ConfigError, match="'single_slope'"):
        parse_adc_kind("single-slope")
    chip = chip_at("sar", 4)
    v = chip_for_point(chip, {"adc_kind": "single_slope", "adc_bits": 5})
    assert (v.adc.kind.value, v.adc.bits, v.adc.range_policy.value) == (
        "single_slope", 5, "full_scale")


def test_cli_sweep_help_lists_single_slope(capsys):
    from cimsim.cli import main

    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    assert "single_slope" in capsys.readouterr().out


@pytest.mark.parametrize("cost_model", ["physical", "tables"])
@pytest.mark.parametrize("kind", ["sar", "flash", "single_slope", "cco", "tdc", "ramp"])
def test_a_published_conversion_time_times_the_converter(kind, cost_model):
    """``adc.t_conversion_ns`` replaces the kind's own timing (a SAR was (bits + 1) cycles of
    1 ns at every node: ISAAC's 1.28-GS/s 8-b SAR took 9 ns, its chip 12x under its
    published TOPS/mm2) in both cost models, the step and the rate the energy follows."""
    from cimsim.cost.latency import step_ns

    chip = chip_at(kind, 6, cost_model=cost_model)
    chip = chip.replace(array=chip.array.replace(cols_per_adc=32))
    stated = chip.replace(adc=chip.adc.replace(t_conversion_ns=0.78))
    model = adc(stated)
    assert model.time_ns(A.CONVERT, 6) == pytest.approx(0.78)
    assert T.adc_conversion_time_ns(kind, 6, model.table) != pytest.approx(0.78)
    n_mux = 32  # conversions per converter and step
    assert step_ns(stated, n_mux, model.time_ns(A.CONVERT, 6), model.table) >= 32 * 0.78
    if cost_model == "physical":  # the rate asked follows the step
        assert model.sample_rate_hz() >= adc(chip).sample_rate_hz()


def test_a_conversion_time_is_validated_and_round_trips(tmp_path):
    chip = chip_at("sar", 8).replace(adc=chip_at("sar", 8).adc.replace(t_conversion_ns=0.78))
    path = tmp_path / "c.toml"
    chip.save(path)
    assert cimsim.load_chip(path).adc.t_conversion_ns == 0.78
    for bad in (0.0, -1.0, float("nan"), "fast"):
        with pytest.raises(ConfigError, match=r"^ADCConfig\.t_conversion_ns"):
            ADCConfig(t_conversion_ns=bad)
    with pytest.raises(ConfigError, match=r"t_conversion_ns.*kind = 'digital'.*clock_mhz"):
        ADCConfig(kind="digital", t_conversion_ns=1.0)


def test_a_faster_published_converter_raises_an_isaac_like_chip_s_throughput():
    """A 128-column crossbar sharing one 8-b SAR: the step is 128 conversions of 9 ns; at
    the published 0.78 ns each (1.28 GS/s) the analog phase sets it, and the datasheet's
    TOPS/mm2 rises as the step falls."""
    from cimsim.cost import datasheet
    from cimsim.cost.latency import compute_window_ns

    base = cimsim.load_chip("rram-22nm")
    chip = base.replace(
        array=base.array.replace(n_rows=128, n_cols=128, cols_per_adc=128),
        adc=base.adc.replace(kind="sar", bits=8),
        tech=base.tech.replace(node_nm=32.0, vdd_v=1.0, t_read_ns=100.0, cost_model="physical"))
    slow = datasheet(chip)["tops_per_mm2"]
    fast = datasheet(chip.replace(adc=chip.adc.replace(t_conversion_ns=0.78)))["tops_per_mm2"]
    window = compute_window_ns(chip)
    assert 128 * 0.78 < window < 128 * 9  # the conversions set the step before, not after
    assert 5.0 < fast / slow <= 9 / 0.78
    assert fast / slow == pytest.approx(5.76, rel=1e-3)  # the figure docs/cost-model.md gives

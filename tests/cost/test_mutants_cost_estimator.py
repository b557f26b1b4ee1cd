"""Tests from a mutation-testing round over the cost estimator.

The round mutated ``cimsim/cost/latency.py``, ``area.py``, ``energy.py``, ``datasheet.py``,
``tables.py``, ``_prices.py``, ``settling.py``, ``ripple.py``, ``bitplanes.py`` and the
``estimate`` path of ``cimsim/cost/__init__.py`` (an off-by-one, a ceil made a floor, a term
dropped, a unit, a max taken away...) and kept every mutant that no existing test caught. Each
test here pins one such behaviour with a figure computed by hand from the formulas of
``docs/cost-model.md`` and the table values, or with a metamorphic relation, never by calling
the function under test for its own expected value.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import cimsim
from cimsim.arrays.program import program
from cimsim.cost import bitplanes, estimate, layer_work, settling, tables
from cimsim.cost.area import array_area_um2, chip_area_um2, occupied_area_um2, tile_area_um2
from cimsim.cost.datasheet import datasheet, workload
from cimsim.cost.energy import (
    Calibration,
    adc_time_ns,
    calibration_for,
    chip_table,
    event_energy_pj,
)
from cimsim.cost.latency import (
    block_latency,
    chip_latency_ns,
    compute_window_ns,
    digital_tail_ns,
    layer_latency_ns,
    read_pulse_priced,
    reload_latency,
    write_time_ns_per_row,
)
from cimsim.cost.tables import tech_table
from cimsim.events import Action, Component, Events, event_key
from cimsim.work import ModelWork
from tests.conftest import bskmq_chip

_REPROGRAM = event_key(Component.ARRAY, Action.REPROGRAM)


def _rram(**tech) -> cimsim.ChipConfig:
    chip = cimsim.load_chip("rram-22nm")
    return chip.replace(tech=chip.tech.replace(**tech)) if tech else chip


def _w(n_out: int = 10, k: int = 300, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-127, 128, (n_out, k))


class TestBlockLatencyByHand:
    """``rram-22nm``: 128 x 128 arrays, 16 SARs of 6 b (7 ns) per array, 10-ns read pulse,
    1-GHz clock, 8-b inputs on 1-b DACs (8 planes), 8-b differential weights at 2 b/cell
    (4 slices, a (pos, neg) pair one conversion)."""

    def test_three_row_tiles_step_and_tail(self):
        block = program(_w(), _rram())  # K = 300: row tiles of 128, 128, 44
        assert len(block.row_tiles) == 3
        d = block_latency(block, 4)
        # 10 outputs x 4 slices = 40 conversions on 16 ADCs: ceil(40 / 16) = 3 each
        assert d["n_conversions_per_adc"] == 3
        assert d["t_step_ns"] == pytest.approx(max(10.0, 3 * 7.0))
        # add tree over 3 row tiles: ceil(log2 3) = 2 levels, + 1 output write, 1 ns each
        assert d["tail_ns"] == pytest.approx(3.0)
        assert d["n_steps"] == 4 * 8 * 1
        assert d["latency_ns"] == pytest.approx(4 * 8 * 21.0 + 3.0)
        assert d["period_ns"] == pytest.approx(4 * 8 * 21.0)
        assert d["adc_duty"] == pytest.approx(1.0)

    def test_window_bound_step_has_a_partial_adc_duty(self):
        block = program(_w(n_out=2, k=100), _rram())  # 8 conversions on 16 ADCs: 1 each
        d = block_latency(block, 1)
        assert d["n_conversions_per_adc"] == 1
        assert d["t_step_ns"] == pytest.approx(10.0)
        assert d["adc_duty"] == pytest.approx(7.0 / 10.0)
        assert d["tail_ns"] == pytest.approx(1.0)  # one row tile: the output write alone

    @pytest.mark.parametrize("n_tiles, cycles", [(1, 1), (2, 2), (3, 3), (4, 3), (5, 4),
                                                  (8, 4), (9, 5)])
    def test_digital_tail_is_one_plus_ceil_log2_row_tiles(self, n_tiles, cycles):
        assert digital_tail_ns(_rram(), n_tiles) == pytest.approx(cycles * 1.0)
        assert digital_tail_ns(_rram(clock_mhz=250.0), n_tiles) == pytest.approx(cycles * 4.0)

    def test_merged_row_tiles_set_the_tail_when_more_than_the_blocks_own(self):
        block = program(_w(), _rram())  # 3 row tiles of its own
        assert block_latency(block, 1, merged_row_tiles=5)["tail_ns"] == pytest.approx(4.0)
        assert block_latency(block, 1, merged_row_tiles=2)["tail_ns"] == pytest.approx(3.0)

    def test_no_vectors_no_time_at_all(self):
        d = block_latency(program(_w(), _rram()), 0)
        assert d["tail_ns"] == 0.0
        assert d["latency_ns"] == 0.0
        assert d["period_ns"] == 0.0

    def test_period_is_the_tail_where_the_tail_is_longer(self):
        # a 10-MHz clock: the 3-cycle tail is 300 ns, one vector's 8 steps of 21 ns 168 ns
        d = block_latency(program(_w(), _rram(clock_mhz=10.0)), 1)
        assert d["tail_ns"] == pytest.approx(300.0)
        assert d["period_ns"] == pytest.approx(300.0)
        assert d["latency_ns"] == pytest.approx(168.0 + 300.0)


class TestLayerAndChipLatency:
    def test_stages_add_blocks_of_a_stage_overlap(self):
        blocks = [dict(latency_ns=5.0, stage=0), dict(latency_ns=7.0, stage=0),
                  dict(latency_ns=3.0, stage=1)]
        assert layer_latency_ns(blocks) == pytest.approx(7.0 + 3.0)

    def test_a_stage_over_the_chips_arrays_takes_turns(self):
        blocks = [dict(latency_ns=10.0, n_arrays=4), dict(latency_ns=6.0, n_arrays=4)]
        # 8 arrays' work on 4 arrays: (10 x 4 + 6 x 4) / 4 = 16 ns, above the slowest 10
        assert layer_latency_ns(blocks, n_arrays=4) == pytest.approx(16.0)
        assert layer_latency_ns(blocks, n_arrays=8) == pytest.approx(10.0)

    def test_pipelined_takes_the_periods_and_the_array_share(self):
        assert chip_latency_ns([5.0, 7.0]) == pytest.approx(12.0)
        assert chip_latency_ns([5.0, 7.0], True) == pytest.approx(7.0)
        periods = chip_latency_ns([5.0, 7.0], True, layer_periods_ns=[3.0, 4.0])
        assert periods == pytest.approx(4.0)
        # 100 array-ns of blocks on a 5-array chip: no period below 20 ns
        shared = chip_latency_ns([5.0, 7.0], True, array_time=100.0, n_arrays=5)
        assert shared == pytest.approx(20.0)


class TestReloadByHand:
    def test_rram_reload_waves_and_row_time(self):
        chip = _rram()  # 168 tiles, one array per tile at a time; 128 rows
        d = reload_latency(chip, 400, 200)
        # RRAM row: a RESET and 32 SET pulses of 50 ns, 32 verify reads of 10 ns
        t_row = (1 + 32) * 50.0 + 32 * 10.0
        assert d["t_write_row_ns"] == pytest.approx(t_row) == 1970.0
        assert d["n_waves_per_reload"] == math.ceil(200 / 168) == 2
        assert d["n_reloads"] == pytest.approx(2.0)
        assert d["latency_ns"] == pytest.approx(2 * 2 * 128 * t_row)

    def test_nothing_rewritten_or_no_array_per_reload_is_no_time(self):
        assert reload_latency(_rram(), 10, 0)["latency_ns"] == 0.0
        assert reload_latency(_rram(), 0, 10)["latency_ns"] == 0.0

    def test_write_pulse_per_row_by_cell(self):
        chip = _rram()
        fefet = chip.replace(device=chip.device.replace(cell="fefet"))
        assert write_time_ns_per_row(fefet) == 10.0  # Duenkel et al., one 10-ns pulse
        mram = chip.replace(device=chip.device.replace(cell="mram", bits_per_cell=1))
        assert write_time_ns_per_row(mram) == 5.0  # NVSim STT pulse
        flash = chip.replace(device=chip.device.replace(cell="flash"))
        assert write_time_ns_per_row(flash) == 1970.0  # as RRAM


def _sram_physical(**tech) -> cimsim.ChipConfig:
    chip = cimsim.load_chip("sram-65nm")
    return chip.replace(tech=chip.tech.replace(cost_model="physical", **tech))


class TestComputeWindow:
    @pytest.mark.parametrize("drive", ["pulse_width", "pulse_count"])
    def test_a_temporal_drives_window_holds_its_pulse_train(self, drive):
        # a 0.5-ns integration window stated beside a 40-ns pulse train: the step's analog
        # phase cannot end before the train its energy was priced for
        chip = _sram_physical(input_drive=drive, t_integrate_ns=0.5, t_read_ns=40.0)
        assert read_pulse_priced(chip)
        assert compute_window_ns(chip) == pytest.approx(40.0)

    def test_an_amplitude_sram_read_prices_no_pulse(self):
        chip = _sram_physical(input_drive="amplitude", t_integrate_ns=0.5, t_read_ns=40.0)
        assert not read_pulse_priced(chip)
        assert compute_window_ns(chip) < 40.0


class TestAreaByHand:
    def test_interconnect_per_tile_is_a_quarter_router_and_a_bus_port_per_8_arrays(self):
        chip, t = _rram(), tech_table(22.0)  # 16 arrays per tile
        want = t.router_area_um2 / 4 + 256 * t.bus_area_um2_per_bit * 16 / 8
        assert tile_area_um2(chip, t)["interconnect"] == pytest.approx(want)
        cal = Calibration(area={"interconnect": 2.5})
        assert tile_area_um2(chip, t, cal)["interconnect"] == pytest.approx(2.5 * want)

    def test_occupied_area_takes_the_tile_share_of_its_arrays(self):
        chip, t = _rram(), tech_table(22.0)
        per_array, per_tile = array_area_um2(chip, t), tile_area_um2(chip, t)
        occ = occupied_area_um2(chip, 8, t)  # half a 16-array tile
        for comp, v in per_array.items():
            assert occ[comp] == pytest.approx(8 * v)
        for comp, v in per_tile.items():
            assert occ[comp] == pytest.approx(0.5 * v)
        whole = chip_area_um2(chip, t)
        assert sum(whole.values()) == pytest.approx(
            168 * 16 * sum(per_array.values()) + 168 * sum(per_tile.values()))


def _full_scale_rram(**tech) -> cimsim.ChipConfig:
    chip = _rram(**tech)
    return chip.replace(adc=chip.adc.replace(range_policy="full_scale"))


def _one_layer(chip, n_out=2, k=100, m=3, name="a", seed=0):
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, (n_out, k))
    x = rng.integers(0, 256, (m, k))
    _, ev = cimsim.matmul(x, w, chip)
    return layer_work(ev, program(w, chip), name=name)


def _events(rep, component, action):
    return [r for r in rep.events if r["component"] == component and r["action"] == action]


class TestEstimateByHand:
    """One layer of 2 outputs x 100 rows, 3 vectors, on ``rram-22nm`` (full-scale ranges): one
    array, 8 conversions on its 16 SARs (one each, 7 ns) in a 10-ns step, 8 planes."""

    def test_leakage_is_the_adcs_at_their_duty_over_the_inference(self):
        chip = _full_scale_rram()
        rep = estimate([_one_layer(chip)], chip)
        t = rep.totals["latency_ns_per_inference"]
        assert t == pytest.approx(3 * 8 * 10.0 + 1.0)
        (leak,) = _events(rep, "adc", "leak")
        assert leak["n_events_per_inference"] == pytest.approx(1 * 16 * t * 7.0 / 10.0)
        (conv,) = _events(rep, "adc", "convert")
        assert leak["energy_pj_per_event"] == pytest.approx(
            0.2 * conv["energy_pj_per_event"] / 7.0)

    def test_bus_bits_are_the_buffer_bits_read_and_written(self):
        chip = _full_scale_rram()
        rep = estimate([_one_layer(chip)], chip)
        (read,), (write,) = _events(rep, "buffer", "read_bit"), _events(rep, "buffer", "write_bit")
        (bus,) = _events(rep, "interconnect", "bus_bit")
        assert write["n_events_per_inference"] > 0
        assert bus["n_events_per_inference"] == pytest.approx(
            read["n_events_per_inference"] + write["n_events_per_inference"])

    def test_totals_follow_from_energy_time_macs_and_area(self):
        chip = _full_scale_rram()
        rep = estimate([_one_layer(chip)], chip)
        tot = rep.totals
        e, t = tot["energy_pj_per_inference"], tot["latency_ns_per_inference"]
        assert tot["n_macs_per_inference"] == 3 * 100 * 2
        ops = 2 * 600
        assert tot["power_mw"] == pytest.approx(e / t)  # pJ / ns = mW
        assert tot["tops"] == pytest.approx(ops / t * 1e-3)  # ops / ns = 1e9 ops / s
        assert tot["tops_per_w"] == pytest.approx(ops / e)  # ops / pJ = TOPS/W
        assert tot["tops_per_w_1b"] == pytest.approx(64 * ops / e)
        assert tot["tops_1b"] == pytest.approx(64 * tot["tops"])
        assert tot["n_arrays_occupied"] == 1
        used = sum(occupied_area_um2(chip, 1, tech_table(22.0)).values())
        assert tot["area_mm2_used"] == pytest.approx(used * 1e-6)
        assert tot["tops_per_mm2_used"] == pytest.approx(tot["tops"] / (used * 1e-6))
        assert tot["tops_per_mm2"] == pytest.approx(tot["tops"] / tot["area_mm2"])

    def test_figures_per_inference_scale_with_the_inferences_the_events_cover(self):
        chip = _full_scale_rram()

        def no_leak(rep):
            return sum(r["energy_pj_per_inference"] for r in rep.events if r["action"] != "leak")

        one = estimate([_one_layer(chip)], chip)
        three = estimate([_one_layer(chip)], chip, n_inferences=3)
        assert no_leak(three) == pytest.approx(no_leak(one) / 3)
        assert three.totals["n_macs_per_inference"] == pytest.approx(200.0)
        # one vector per inference: its 8 steps and its own tail
        assert three.totals["latency_ns_per_inference"] == pytest.approx(8 * 10.0 + 1.0)

    def test_row_tile_parts_share_the_vectors_and_merge_their_sums(self):
        chip = _full_scale_rram()
        rng = np.random.default_rng(1)
        w = rng.integers(-127, 128, (2, 256))
        x = rng.integers(0, 256, (5, 256))
        _, ev = cimsim.matmul(x, w, chip)
        parts = [program(w[:, :128], chip), program(w[:, 128:], chip)]
        rep = estimate([layer_work(ev, parts, name="split")], chip)
        assert [b["n_vectors_per_inference"] for b in rep.blocks] == [5.0, 5.0]
        # each part holds one row tile; the add tree merges the two: 1 level + the write
        assert [b["tail_ns"] for b in rep.blocks] == [2.0, 2.0]
        assert rep.totals["latency_ns_per_inference"] == pytest.approx(5 * 8 * 10.0 + 2.0)


class TestTablesByHand:
    """The technology tables' per-event functions against their publications' numbers
    (docs/technology.md), at 32 nm where the ISAAC/MNSIM figures are given."""

    def test_dac_energy_area_and_time_follow_mnsim(self):
        t = tech_table(32.0)
        e1 = 4e-3 / (128 * 8) * 3e-9 * 1e12  # ISAAC: 4 mW per 1024 DACs, 3-ns pulse
        assert t.dac_energy_pj_per_pulse == pytest.approx(e1)
        for b in (1, 2, 4, 6):
            assert tables.dac_energy_pj(b, t) == pytest.approx(e1 * 2 ** (b - 1) * (b + 2) / 3)
            assert tables.dac_area_um2(b, t) == pytest.approx(170.0 / 1024 * 2 ** (b - 1))
            assert tables.dac_conversion_time_ns(b, t) == pytest.approx(b + 2.0)

    def test_conversion_times(self):
        t = tech_table(22.0)
        assert tables.adc_conversion_time_ns("sar", 1, t) == 1.0  # one decision
        assert tables.adc_conversion_time_ns("sar", 6, t) == 7.0  # (b + 1) cycles
        assert tables.adc_conversion_time_ns("flash", 6, t) == 1.0
        assert tables.adc_conversion_time_ns("ramp", 4, t) == 16.0
        # single slope: 2^b periods of the chip's clock; 1 b: one period
        assert tables.adc_conversion_time_ns("single_slope", 4, t, 100.0) == pytest.approx(160.0)
        assert tables.adc_conversion_time_ns("single_slope", 1, t, 100.0) == pytest.approx(10.0)

    def test_flash_and_single_slope_energy_and_ramp_area(self):
        t = tech_table(22.0)
        cmp_pj = t.comparator_energy_fj * 1e-3
        assert tables.adc_energy_pj("flash", 3, t) == pytest.approx(7 * cmp_pj)
        assert tables.adc_energy_pj("single_slope", 4, t) == pytest.approx(
            16 * cmp_pj + 4 * t.shift_add_energy_pj_per_bit)
        assert tables.adc_area_um2("ramp", 5, t) == pytest.approx(
            t.comparator_area_um2 + 5 * t.shift_add_area_um2_per_bit
            + (32 + 5) * t.rram_cell_area_um2)  # 32 ramp + 5 calibration cells
        assert tables.adc_area_um2("single_slope", 5, t) == pytest.approx(
            t.comparator_area_um2 + 5 * t.shift_add_area_um2_per_bit)

    def test_tdc_circuit_model(self):
        t = tech_table(28.0)
        e_c, e_f = t.comparator_energy_fj * 1e-3, t.shift_add_energy_pj_per_bit
        e_s = t.accumulator_add_energy_pj_per_bit * 2 / 28  # an inverter of a 28-T adder
        t_s = 0.5 * 28 * 1e-3  # one FO4, 0.5 ps per nm
        stage = t.sram_cell_area_um2 / 8 * 2
        b, full = 4, 15
        assert tables.tdc_energy_pj("counter", b, t) == pytest.approx(
            e_c + 6 * full * e_s + 2 * full * e_f)
        assert tables.tdc_energy_pj("successive", b, t) == pytest.approx(
            (b + 1) * e_c + 2 * full * e_s + b * e_f)
        digital = t.comparator_area_um2 + b * t.shift_add_area_um2_per_bit
        assert tables.tdc_area_um2("counter", b, t) == pytest.approx(digital + 3 * stage)
        assert tables.tdc_area_um2("successive", b, t) == pytest.approx(
            digital + t.comparator_area_um2 + full * stage)
        assert tables.tdc_conversion_time_ns("counter", b, t) == pytest.approx(6 * full * t_s)
        assert tables.tdc_conversion_time_ns("successive", b, t) == pytest.approx(
            2 * full * t_s + b * 1.0)

    def test_buffer_energy_by_size_horowitz(self):
        t = tech_table(45.0)
        base = t.sram_buffer_energy_pj_per_bit  # 32 KB: 20 pJ per 64-b read
        assert base == pytest.approx(20.0 / 64)
        assert tables.buffer_energy_pj_per_bit(8.0, t) == pytest.approx(10.0 / 64)
        assert tables.buffer_energy_pj_per_bit(1024.0, t) == pytest.approx(100.0 / 64)
        # outside 8 KB .. 1 MB: the end segments' power laws continued
        lo = math.log(20.0 / 10.0) / math.log(32.0 / 8.0)
        assert tables.buffer_energy_pj_per_bit(2.0, t) == pytest.approx(
            10.0 / 64 * (2.0 / 8.0) ** lo)
        hi = math.log(100.0 / 20.0) / math.log(1024.0 / 32.0)
        assert tables.buffer_energy_pj_per_bit(4096.0, t) == pytest.approx(
            100.0 / 64 * 4.0**hi)

    def test_rows_of_the_tables(self):
        t22, t32 = tech_table(22.0), tech_table(32.0)
        assert t22.rram_write_time_ns_per_row == pytest.approx(1970.0)
        assert t22.adc_leakage_fraction_of_dynamic == 0.2
        assert tech_table(5.0).sram_cell_area_f2 == pytest.approx(840.0)
        assert tech_table(3.0).sram_cell_area_f2 == pytest.approx(2047.8)
        assert tech_table(14.0).rram_v_read_v == pytest.approx(0.28)
        assert t32.buffer_area_um2_per_bit == pytest.approx(0.083e6 / (64 * 1024 * 8))
        assert t32.bus_energy_pj_per_bit == pytest.approx(0.054)
        assert t32.interconnect_energy_pj_per_bit == pytest.approx(20.74 / 256)
        assert tables.sense_amp_energy_fj(28.0) == pytest.approx(0.1086 * 15.0)

    def test_sar_energy_beyond_its_source_bits_and_the_low_band(self):
        t = tech_table(32.0)
        e = t.sar_adc_energy_pj_by_bits
        assert e[6 - 1] == pytest.approx(1.20)
        assert e[12 - 1] == pytest.approx(2.38 * 4.0**2)  # 4x per bit above 10 b (thermal)
        assert e[2 - 1] == pytest.approx(0.79 / (0.99 / 0.79) ** 2)
        low = tech_table(22.0, "low").sar_adc_energy_pj_by_bits
        # NeuroSim V1.4 at 22 nm: (A b + C) uW over (b + 1) 1-ns cycles
        assert low[6 - 1] == pytest.approx((0.538 * 6 + 4.3753) * 7 * 1e-3)

    def test_energy_scale_at_180_nm_continues_the_90_130_trend(self):
        slope = math.log(3.07 / 1.90) / math.log(130.0 / 90.0)
        assert tables.energy_scale(45.0, 180.0) == pytest.approx(3.07 * (180.0 / 130.0) ** slope)


class TestLagAndReloadInEstimate:
    def test_a_recurrent_lag_counts_every_row_group_of_its_steps(self):
        chip = _full_scale_rram()
        chip = chip.replace(array=chip.array.replace(rows_per_conversion=64))
        lw = _one_layer(chip, n_out=2, k=128, m=3)
        lagged = dataclasses.replace(
            lw, blocks=(dataclasses.replace(lw.blocks[0], lag_vectors=2.0),))
        (b,) = estimate([lagged], chip).blocks
        assert b["n_row_groups_per_tile"] == 2
        assert b["t_step_ns"] == pytest.approx(10.0)
        # 2 vectors' fill x 8 planes x 2 row groups x 10 ns
        assert b["lag_ns"] == pytest.approx(2 * 8 * 2 * 10.0)
        assert b["latency_ns"] == pytest.approx(3 * 8 * 2 * 10.0 + 1.0 + 320.0)

    @pytest.mark.parametrize("n_inferences", [1, 2])
    def test_reload_of_the_arrays_beyond_the_weight_sets_stored(self, n_inferences):
        # 2 tiles of 1 array, 2 weight sets each: 4 arrays' worth held; a model of 7 rewrites
        # 3 per call, one array per tile at a time: ceil(3 / 2) = 2 waves of 128 rows
        base = _full_scale_rram(weight_sets_stored=2)
        chip = base.replace(array=base.array.replace(n_tiles=2, arrays_per_tile=1,
                                                     allow_time_multiplexing=True))
        lw = _one_layer(chip)
        work = ModelWork(layers=(lw,), other_events=Events({_REPROGRAM: 3.0}),
                         n_inferences=n_inferences, chip=chip, n_arrays_needed=7)
        rep = estimate(work)
        reload = 2 * 128 * 1970.0 / n_inferences
        assert rep.totals["reprogramming_latency_ns_per_inference"] == pytest.approx(reload)
        compute = estimate(work.__class__(layers=(lw,), n_inferences=n_inferences, chip=chip,
                                          n_arrays_needed=1)).totals
        assert rep.totals["latency_ns_per_inference"] == pytest.approx(
            compute["latency_ns_per_inference"] + reload)


def _price(chip, component, action, bits=0, cal=None):
    return event_energy_pj((component, action, bits), chip, calibration=cal)


class TestTablePricesByHand:
    def test_rram_row_driver_holds_its_power_for_the_longer_of_pulse_and_conversion(self):
        t = tech_table(22.0)
        # word line: 0.2 fF/um over 128 cells of the 1T1R pitch sqrt(48 F^2), at V_read^2
        wire = 0.2 * 128 * math.sqrt(48 * 0.022**2) * 0.55**2 * 1e-3
        e1 = t.dac_energy_pj_per_pulse  # the 1-b DAC's 3-ns pulse (MNSIM)
        assert _price(_rram(t_read_ns=1.0), "dac", "pulse", 1) == pytest.approx(e1 + wire)
        assert _price(_rram(t_read_ns=12.0), "dac", "pulse", 1) == pytest.approx(
            e1 * 12.0 / 3.0 + wire)

    def test_no_leakage_for_a_tdc(self):
        chip = _rram()
        assert _price(chip.replace(adc=chip.adc.replace(kind="tdc")), "adc", "leak", 6) == 0.0
        assert _price(chip, "adc", "leak", 6) > 0.0

    def test_every_device_of_a_multi_device_cell_is_written(self):
        chip = _rram(cost_model="physical")
        one = _price(chip, "cell", "write", 2)
        assert one == pytest.approx(2 * 3.0)  # 2 bits x the RRAM write, 3 pJ per bit
        two = _price(_rram(cost_model="physical", devices_per_cell=2), "cell", "write", 2)
        assert two == pytest.approx(2 * one)

    def test_the_tile_buffer_size_sets_its_access_energy(self):
        chip = _rram()
        small = chip.replace(array=chip.array.replace(tile_buffer_kib=8.0))
        # Horowitz: 10 pJ per 64-b read at 8 KB, 20 at 32 KB, energy-scaled from 45 nm
        scale = tables.energy_scale(45.0, 22.0)
        assert _price(small, "buffer", "read_bit") == pytest.approx(10.0 / 64 * scale)
        big = chip.replace(array=chip.array.replace(tile_buffer_kib=1024.0))
        assert _price(big, "buffer", "write_bit") == pytest.approx(100.0 / 64 * scale)

    def test_links_and_adders_by_node_and_supply(self):
        chip = _rram()
        s = (1.2 / 0.8) ** 2
        high = _rram(vdd_v=1.2)
        scale32 = tables.energy_scale(32.0, 22.0)
        assert _price(chip, "interconnect", "bus_bit") == pytest.approx(0.054 * scale32)
        assert _price(high, "interconnect", "bus_bit") == pytest.approx(0.054 * scale32 * s)
        assert _price(chip, "interconnect", "bit") == pytest.approx(20.74 / 256 * scale32)
        acc = 0.1 / 32 * tables.energy_scale(45.0, 22.0)  # Horowitz 32-b add / 32
        assert _price(chip, "accumulator", "add", 16) == pytest.approx(16 * acc)
        assert _price(high, "accumulator", "add", 16) == pytest.approx(16 * acc * s)
        assert _price(high, "shift_add", "add", 16) == pytest.approx(
            16 * 0.021 / 16 * scale32 * s)

    def test_a_stated_conversion_time_is_calibrated_too(self):
        wang = cimsim.load_chip("wang-vlsi22")
        cal = calibration_for(wang)
        assert cal.adc_time_scale == pytest.approx(0.45)
        stated = wang.replace(adc=wang.adc.replace(t_conversion_ns=10.0))
        assert adc_time_ns(stated, chip_table(stated), cal) == pytest.approx(4.5)

    def test_another_converter_kind_drops_the_adc_area_factor(self):
        jia = cimsim.load_chip("jia-jssc20")
        assert dict(calibration_for(jia).area) == {"adc": 0.496, "cell": 4.17}
        flash = calibration_for(jia.replace(adc=jia.adc.replace(kind="flash")))
        assert dict(flash.area) == {"cell": 4.17}
        assert dict(flash.energy) == {"cell": 3.10}

    def test_a_sensed_cells_decision_is_calibrated_as_the_read_out(self):
        base = cimsim.load_chip("ideal")
        chip = base.replace(
            dac=base.dac.replace(bits=1), device=base.device.replace(cell="rram",
                                                                     bits_per_cell=1),
            array=base.array.replace(n_rows=256, n_cols=256, cols_per_adc=1),
            adc=base.adc.replace(kind="digital", bits=10),
            tech=base.tech.replace(node_nm=22.0, vdd_v=0.8, cost_model="physical",
                                   clock_mhz=1000.0, t_read_ns=1.0))
        plain = _price(chip, "cell", "read", 1)
        assert plain == pytest.approx(tables.sense_amp_energy_fj(22.0) * 1e-3)
        assert _price(chip, "cell", "read", 1, Calibration(energy={"adc": 2.0})) == (
            pytest.approx(2 * plain))
        assert _price(chip, "cell", "read", 1, Calibration(energy={"cell": 2.0})) == (
            pytest.approx(plain))


class TestDatasheetByHand:
    def test_input_density_is_the_share_of_inputs_kept(self):
        chip = _rram()
        for density in (0.25, 0.9):
            x, w = workload(chip, density)
            assert x.shape == (256, 128) and w.shape == (16, 128)  # 16 outputs x 4 slices x 2
            # kept inputs are uniform over [0, 255]: 1/256 of them are 0 anyway
            assert np.mean(x != 0) == pytest.approx(density * 255 / 256, abs=0.01)

    def test_chip_scope_runs_every_array_and_macro_scope_one(self):
        chip = _rram()
        macro = datasheet(chip, scope="macro")
        whole = datasheet(chip, scope="chip")
        assert macro["ops"] == whole["ops"] == 2.0 * 256 * 128 * 16
        assert whole["tops"] == pytest.approx(macro["tops"] * 168 * 16)
        t = tech_table(22.0)
        assert macro["area_mm2"] == pytest.approx(
            sum(v for c, v in array_area_um2(chip, t).items() if c in ("cell", "dac", "adc"))
            * 1e-6)
        assert whole["area_mm2"] == pytest.approx(sum(chip_area_um2(chip, t).values()) * 1e-6)
        for sheet in (macro, whole):
            e = sum(sheet["energy_pj_by_component"].values())
            assert sheet["energy_pj_per_op"] == pytest.approx(e / sheet["ops"])
            assert sheet["tops_per_w"] == pytest.approx(sheet["ops"] / e)
            assert sheet["tops_per_mm2"] == pytest.approx(sheet["tops"] / sheet["area_mm2"])
            assert sheet["tops_per_mm2_1b"] == pytest.approx(64 * sheet["tops_per_mm2"])
            assert sheet["tops_per_w_1b"] == pytest.approx(64 * sheet["tops_per_w"])

    def test_an_output_spread_over_two_arrays(self):
        # 4 columns per array, one 8-b differential weight needs 4 slices x 2 columns: the
        # workload's single output occupies 2 arrays; the chip runs 2688 / 2 of them at once
        base = _rram()
        chip = base.replace(array=base.array.replace(n_cols=4, cols_per_adc=1))
        macro = datasheet(chip, scope="macro")
        whole = datasheet(chip, scope="chip")
        assert whole["tops"] == pytest.approx(macro["tops"] * 168 * 16 / 2)
        per_array = array_area_um2(chip, tech_table(22.0))
        for comp in ("cell", "dac", "adc"):
            assert macro["area_um2_by_component"][comp] == pytest.approx(2 * per_array[comp])
        assert macro["area_um2_by_component"]["cell"] == pytest.approx(
            2 * 128 * 4 * 48 * 0.022**2)


class TestLeakagePrice:
    def test_leakage_is_a_fifth_of_the_dynamic_power_at_the_calibrated_stated_rate(self):
        chip = _rram()
        stated = chip.replace(adc=chip.adc.replace(t_conversion_ns=10.0))
        cal = Calibration(adc_time_scale=0.5)
        conv = _price(stated, "adc", "convert", 6, cal)
        assert adc_time_ns(stated, chip_table(stated), cal) == pytest.approx(5.0)
        assert _price(stated, "adc", "leak", 6, cal) == pytest.approx(0.2 * conv / 5.0)
        assert _price(chip, "adc", "leak", 6) == pytest.approx(
            0.2 * _price(chip, "adc", "convert", 6) / 7.0)  # 6-b SAR: 7 ns


def _edram(**tech) -> cimsim.ChipConfig:
    base = cimsim.load_chip("sram-65nm")
    return base.replace(device=base.device.replace(cell="edram"),
                        array=base.array.replace(n_tiles=1, arrays_per_tile=1),
                        tech=base.tech.replace(**tech))


class TestEdramRefresh:
    def test_refresh_price_per_cell_ns(self):
        t = tech_table(65.0)
        s = (0.85 / 0.8) ** 2
        e_bit = (t.sram_cim_bitcell_read_energy_fj + t.sram_cim_bitcell_write_energy_fj) * 1e-3
        assert _price(_edram(), "cell", "refresh") == pytest.approx(e_bit * s / 77e3)  # 3T
        assert _price(_edram(cell_kind="edram_2t"), "cell", "refresh") == pytest.approx(
            e_bit * s / 110e3)  # 2T: 110 us
        assert _price(_edram(weight_sets_stored=3), "cell", "refresh") == pytest.approx(
            3 * e_bit * s / 77e3)  # every stored set is refreshed

    def test_layers_over_the_chips_arrays_refresh_only_the_arrays_that_exist(self):
        chip = _edram()  # one array of 768 x 256 cells
        rng = np.random.default_rng(0)
        works = []
        for name in ("a", "b"):
            w = rng.integers(-127, 128, (4, 64))
            x = rng.integers(0, 256, (2, 64))
            _, ev = cimsim.matmul(x, w, chip)
            works.append(layer_work(ev, program(w, chip), name=name))
        rep = estimate(works, chip)
        t_chip = rep.totals["latency_ns_per_inference"]
        rows = [r for r in rep.events if r["action"] == "refresh"]
        assert len(rows) == 2
        for r in rows:  # 2 layers of 1 array on 1 array: each holds half of it
            assert r["n_events_per_inference"] == pytest.approx(0.5 * 768 * 256 * t_chip)


class TestLeakageAndUsedAreaOfSeveralLayers:
    @staticmethod
    def _works(chip):
        return [_one_layer(chip, name="a", seed=0), _one_layer(chip, n_out=4, name="b", seed=1)]

    @pytest.mark.parametrize("gating", ["none", "layer"])
    def test_two_layers_taking_turns_on_one_array(self, gating):
        base = _full_scale_rram(power_gating=gating)
        chip = base.replace(array=base.array.replace(n_tiles=1, arrays_per_tile=1))
        rep = estimate(self._works(chip), chip)
        t_chip = rep.totals["latency_ns_per_inference"]
        assert t_chip == pytest.approx(2 * (3 * 8 * 10.0 + 1.0))  # layer by layer
        assert rep.totals["n_arrays_occupied"] == 1
        assert rep.totals["area_mm2_used"] == pytest.approx(rep.totals["area_mm2"])
        lat = {r["layer"]: r["latency_ns_per_inference"] for r in rep.layers}
        duty = {b["layer"]: b["adc_duty"] for b in rep.blocks}
        for r in rep.events:
            if r["action"] != "leak":
                continue
            name = r["layer"]
            if gating == "none":  # the one array, shared by the 2 layers, over the inference
                want = 0.5 * 16 * t_chip * duty[name]
            else:  # a gated layer leaks on its own array while it runs
                want = 1.0 * 16 * lat[name] * duty[name]
            assert r["n_events_per_inference"] == pytest.approx(want)

    def test_used_area_is_every_layers_occupied_arrays_within_capacity(self):
        chip = _full_scale_rram()
        rep = estimate(self._works(chip), chip)
        one = sum(occupied_area_um2(chip, 1, tech_table(22.0)).values())
        assert rep.totals["n_arrays_occupied"] == 2
        assert rep.totals["area_mm2_used"] == pytest.approx(2 * one * 1e-6)
        assert rep.totals["tops_per_mm2_used"] == pytest.approx(
            rep.totals["tops"] / (2 * one * 1e-6))


def _physical_rram(**tech) -> cimsim.ChipConfig:
    chip = _full_scale_rram(cost_model="physical", **tech)
    return chip.replace(array=chip.array.replace(cols_per_adc=1))  # 1 conversion per ADC


class TestSettlingByHand:
    def test_driver_resistance_alpha_power_law(self):
        # PTM 22-nm HP NMOS (NeuroSim): 1500 uA/um at 0.85 V, V_th 0.2089 V
        v_th = 0.2089006
        for vdd in (0.85, 0.6):
            i_on = 1500.0 * ((vdd - v_th) / (0.85 - v_th)) ** 1.3
            want = 1.54 * vdd / (i_on * 1e-6 * 2.0)
            assert settling.driver_on_resistance_ohm(22.0, vdd, 2.0) == pytest.approx(want)

    def test_driver_at_180_nm_continues_the_130_90_trend(self):
        def trend(v130, v90):
            return v130 * (180.0 / 130.0) ** (math.log(v130 / v90) / math.log(130.0 / 90.0))

        i_on, v_nom = trend(930.0, 1070.0), trend(1.3, 1.2)
        want = 1.54 * v_nom / (i_on * 1e-6 * 1.0)
        assert settling.driver_on_resistance_ohm(180.0, v_nom, 1.0) == pytest.approx(want)

    def test_settling_counts_the_converters_bits_up_to_the_tables_16(self):
        chip, t = _physical_rram(), tech_table(22.0)

        def settle(bits):
            return settling.settle_time_ns(chip.replace(adc=chip.adc.replace(bits=bits)), t)

        # ln 2^(b+1): 9 ln 2 at 8 b, 17 ln 2 at 16 b; a 20-b reference ADC as a 16-b one
        assert settle(16) / settle(8) == pytest.approx(17 / 9)
        assert settle(20) == pytest.approx(settle(16))

    def test_only_amplitude_drives_enter_the_window_fit(self):
        assert settling.in_window_fit(_physical_rram())
        assert not settling.in_window_fit(_physical_rram(input_drive="pulse_width"))
        assert not settling.in_window_fit(_physical_rram(window_stated=False))


class TestDatasheetStep:
    def test_terms_of_a_stated_window(self):
        st = datasheet(_physical_rram())["step"]
        assert set(st["terms"]) == {"conversions", "stated_window", "settling"}
        assert st["terms"]["conversions"] == pytest.approx(7.0)
        assert st["step_ns"] == pytest.approx(10.0) and st["limits"] == ("stated_window",)

    def test_terms_of_a_predicted_window(self):
        chip = _physical_rram(window_stated=False)
        st = datasheet(chip)["step"]
        assert set(st["terms"]) == {"conversions", "predicted_window", "read_pulse"}
        assert st["terms"]["predicted_window"] == pytest.approx(
            7.39 * st["settling_ns"])
        # the read pulse the cells' energy is priced over (10 ns) outlasts the window
        assert st["step_ns"] == pytest.approx(10.0) and st["limits"] == ("read_pulse",)

    def test_an_integration_window_shorter_than_the_read_pulse(self):
        st = datasheet(_physical_rram(t_integrate_ns=2.0))["step"]
        assert st["terms"]["stated_window"] == pytest.approx(2.0)
        assert st["terms"]["read_pulse"] == pytest.approx(10.0)
        assert st["step_ns"] == pytest.approx(10.0) and st["limits"] == ("read_pulse",)


class TestBitPlanesAndLayerOutput:
    @pytest.mark.parametrize("bits, ones", [(1, 1.0), (2, 4 / 3), (3, 12 / 7),
                                            (8, 8 * 128 / 255)])
    def test_mean_set_bits_of_a_nonzero_uniform_input(self, bits, ones):
        # by enumeration of [1, 2^b - 1] too
        assert np.mean([bin(v).count("1") for v in range(1, 2**bits)]) == pytest.approx(ones)
        assert bitplanes.mean_set_bits(bits) == pytest.approx(ones)

    def test_a_layer_output_converter_fills_one_row_group(self):
        base = bskmq_chip()
        chip = base.replace(array=base.array.replace(n_rows=128, rows_per_conversion=32))
        x, w = workload(chip)
        assert x.shape[1] == w.shape[1] == chip.array.rows_per_group < chip.array.n_rows


class TestGatedLeakageInAPipeline:
    """``tech.power_gating = 'layer'`` lets an array's ADCs leak "only while its own layer
    runs" (docs/cost-model.md §4), which can never be longer than the whole inference the
    ungated chip leaks over. Pipelined, the estimator charges a gated layer its *latency*
    (steps + add-tree tail) while an inference lasts the *period* (steps, or the tail where
    longer: ``estimate``'s ``t_leak = latency[w.name] if gated else t_chip``), so on a one-layer
    model gating raises the leakage: 3 arrays x 16 ADCs x 380 ns x 0.7 = 12,768 ADC-ns gated
    against 3 x 16 x 300 ns x 0.7 = 10,080 ungated below."""

    def test_gating_never_leaks_more_than_no_gating(self):
        leak = {}
        for gating in ("none", "layer"):
            chip = _full_scale_rram(power_gating=gating, clock_mhz=10.0)
            lw = _one_layer(chip, n_out=2, k=300, m=1)  # 3 row tiles: a 300-ns tail
            rep = estimate([lw], chip, pipelined=True)
            assert rep.totals["latency_ns_per_inference"] == pytest.approx(300.0)
            leak[gating] = sum(r["n_events_per_inference"] for r in rep.events
                               if r["action"] == "leak")
        assert leak["none"] == pytest.approx(3 * 16 * 300.0 * 0.7)
        assert leak["layer"] <= leak["none"] * (1 + 1e-12)

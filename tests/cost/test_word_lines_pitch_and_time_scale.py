"""Known answers a hand computation from docs/cost-model.md gave and the code did not (a
known-answer hunt over hand-designed chips, 2026-12-03): the word lines of a digital read-out's
d-bit slices under ``every_row``, the column pitch of a multi-bit resistive cell, and a
calibration's ADC time scale under the physical model."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cimsim
from cimsim.arrays.program import program
from cimsim.config import ChipConfig
from cimsim.cost import Calibration, estimate, layer_work
from cimsim.cost._prices import chip_table
from cimsim.cost.models import DACModel
from cimsim.cost.settling import column_capacitance_ff


def _run(chip, n_in=64, n_out=16, x_hi=256, w_lo=-8):
    rng = np.random.default_rng(0)
    x, w = rng.integers(0, x_hi, (16, n_in)), rng.integers(w_lo, -w_lo, (n_out, n_in))
    _, ev = cimsim.matmul(x, w, chip)
    return ev, program(w, chip)


@pytest.mark.parametrize("d", [1, 2, 4])
def test_every_row_switches_each_of_a_slices_d_lines_per_read(d):
    """A d-bit slice is d 1-b input drivers per row with their lines (§1, digital read-out);
    `every_row` switches every line of the group read once per read: d per row (it counted
    one, so a mode that switches every line cost less than the active rows alone)."""
    chip = ChipConfig.from_dict(dict(
        name="er", weight_bits=4, input_bits=8, weight_encoding="twos_complement",
        array=dict(n_rows=64, n_cols=64, cols_per_adc=1, n_tiles=1, arrays_per_tile=1),
        device=dict(cell="sram", bits_per_cell=1), dac=dict(bits=d),
        adc=dict(kind="digital", bits=12, range_policy="full_scale"),
        tech=dict(node_nm=22.0, vdd_v=0.8, v_read_v=0.8, t_read_ns=1.0, cost_model="physical",
                  cell_kind="sram_6t", wordline_switching="every_row")))
    ev, block = _run(chip)
    rep = estimate([layer_work(ev, block)], chip, calibration=None)
    act = sum(r["n_events_per_inference"] for r in rep.events if r["action"] == "activation")
    (wl,) = [r for r in rep.events if r["component"] == "dac" and r["action"] == "wordline"]
    assert wl["n_events_per_inference"] == act * 64 * d
    assert wl["energy_pj_per_event"] == pytest.approx(DACModel(chip).wordline_pj())


@pytest.mark.parametrize("bits_per_cell", [1, 2, 4])
def test_a_multi_bit_resistive_cell_is_one_device_wide(bits_per_cell):
    """The column passes one device per row whatever the bits it holds: 128 rows x (0.2 fF/um
    wire + 1 fF/um gate) x sqrt(48 F^2) at 22 nm (a 4-b cell was given sqrt(48/4) F)."""
    chip = ChipConfig.from_dict(dict(
        name="bp", weight_bits=8, input_bits=4, weight_encoding="differential",
        differential_readout="analog", array=dict(n_rows=128, n_cols=128, cols_per_adc=8),
        device=dict(cell="rram", bits_per_cell=bits_per_cell, g_max_us=10.0, on_off_ratio=17.0),
        dac=dict(bits=None), adc=dict(kind="sar", bits=8, range_policy="full_scale"),
        tech=dict(node_nm=22.0, vdd_v=0.8, v_read_v=0.3, t_read_ns=10.0, cost_model="physical",
                  input_drive="bit_planes", cap_density_ff_per_um2=10.0)))
    hand = 128 * (0.2 + 1.0) * math.sqrt(48) * 0.022
    assert column_capacitance_ff(chip, chip_table(chip)) == pytest.approx(hand, rel=1e-6)


@pytest.mark.parametrize("sets", [1, 4, 32])
def test_the_word_line_crosses_the_stored_sets_but_gates_one(sets):
    """S weight sets stored per compute cell (tech.weight_sets_stored) enlarge the cell's
    footprint, which the line's wire crosses: pitch sqrt(S x 280 F^2) for an 8T cell. The line
    gates the compute cell's devices only, one set's pitch: 64 cells x (0.2 fF/um x sqrt(S)
    + 1 fF/um) x sqrt(280) F x V^2 (the gate grew with S too: wu-jssc23's 32 sets put 903 fJ on
    a row's line, of which the wire is 151; now 283)."""
    chip = ChipConfig.from_dict(dict(
        name="ws", weight_bits=1, input_bits=1, weight_encoding="binary",
        array=dict(n_rows=64, n_cols=64, cols_per_adc=1, n_tiles=1, arrays_per_tile=1),
        device=dict(cell="sram", bits_per_cell=1), dac=dict(bits=1),
        adc=dict(kind="sar", bits=7, range_policy="full_scale"),
        tech=dict(node_nm=22.0, vdd_v=0.8, v_read_v=0.8, t_read_ns=1.0, cost_model="physical",
                  cell_kind="sram_8t", weight_sets_stored=sets)))
    one_set_um = math.sqrt(280.0) * 0.022
    hand_fj = 64 * (0.2 * math.sqrt(sets) + 1.0) * one_set_um * 0.8**2
    assert DACModel(chip).wordline_pj() * 1e3 == pytest.approx(hand_fj, rel=1e-9)


@pytest.mark.parametrize("cost_model", ["tables", "physical"])
def test_a_calibrations_adc_time_scale_applies_under_either_model(cost_model):
    """The physical model took a calibration's ADC energy factors but not its time scale."""
    chip = ChipConfig.from_dict(dict(
        name="ts", weight_bits=4, input_bits=4, weight_encoding="twos_complement",
        array=dict(n_rows=64, n_cols=64, cols_per_adc=8, n_tiles=1, arrays_per_tile=1),
        device=dict(cell="sram", bits_per_cell=1), dac=dict(bits=1),
        adc=dict(kind="sar", bits=8, range_policy="full_scale"),
        tech=dict(node_nm=22.0, vdd_v=0.8, v_read_v=0.8, t_read_ns=2.0, cost_model=cost_model)))
    ev, block = _run(chip, x_hi=16)
    plain = estimate([layer_work(ev, block)], chip, calibration=None).blocks[0]["t_conv_ns"]
    scaled = estimate([layer_work(ev, block)], chip,
                      calibration=Calibration(adc_time_scale=0.5)).blocks[0]["t_conv_ns"]
    assert scaled == pytest.approx(0.5 * plain)

"""Pricing MRAM cells: known answers for the 1T1MTJ cell's area, read, word line and write."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cimsim
from cimsim.config import CellKind, ChipConfig
from cimsim.cost import component_models, estimate, layer_work
from cimsim.cost.datasheet import workload
from cimsim.cost.latency import write_time_ns_per_row
from cimsim.cost.models import cell_kind
from cimsim.events import Action, Component

A, C = Action, Component
R_P_OHM, R_AP_OHM = 6000.0, 12000.0  # NVSim's STT-RAM cell (mram-22nm)


def mram_physical(**tech) -> ChipConfig:
    chip = cimsim.load_chip("mram-22nm")
    fields = dict(cost_model="physical", v_read_v=0.25, t_read_ns=10.0)
    fields.update(tech)
    return chip.replace(device=chip.device.replace(g_max_us=1e6 / R_P_OHM,
                                                   on_off_ratio=R_AP_OHM / R_P_OHM),
                        tech=chip.tech.replace(**fields))


def test_mram_cell_kind_and_area_known_answer():
    chip = mram_physical()
    assert chip.tech.cell_kind is None and cell_kind(chip) is CellKind.MRAM_1T1MTJ
    cell = component_models(chip)[C.CELL]
    assert cell.area_f2() == 57.5
    assert cell.area_um2() == pytest.approx(57.5 * 0.022**2)  # 0.0278 um^2 at 22 nm
    two = component_models(mram_physical(devices_per_cell=2))[C.CELL]
    assert two.area_um2() == pytest.approx(2 * 57.5 * 0.022**2)


def test_mram_read_energy_known_answer_per_junction():
    """One driven row of a 1-b input over 4 junctions, two parallel and two antiparallel:
    the charge V t (2 / R_P + 2 / R_AP) drawn from the 0.8-V supply, from the run's events."""
    chip = mram_physical()
    chip = chip.replace(weight_bits=2, input_bits=1, weight_encoding="offset",
                        adc=chip.adc.replace(range_policy="full_scale"),
                        noise=chip.noise.replace(thermal_sigma_lsb=0.0),
                        device=chip.device.replace(variation="none", variation_sigma=0.0),
                        array=chip.array.replace(n_rows=4, n_cols=8, cols_per_adc=2))
    # N = 2 outputs on K = 1 row; offset digits w + 2 = 3 = (1, 1) and 0 = (0, 0): two
    # parallel and two antiparallel junctions
    w = np.array([[1], [-2]])
    x = np.array([[1]])
    _, ev = cimsim.matmul(x, w, chip, seed=0)
    block = cimsim.arrays.program(w, chip)
    assert block.n_phys_cols == 4
    e_cell = estimate([layer_work(ev, block)], chip).energy_by_component()["cell"]
    v, t_s = 0.25, 10e-9
    want_pj = 0.8 * v * t_s * (2 / R_P_OHM + 2 / R_AP_OHM) * 1e12
    assert e_cell == pytest.approx(want_pj)  # 0.5 pJ


def test_mram_read_is_priced_per_summed_conductance_in_both_cost_models():
    for model in ("physical", "tables"):
        chip = mram_physical(cost_model=model)
        cell = component_models(chip)[C.CELL]
        assert cell.energy_pj(A.READ, 1) == 0.0  # a resistive read: by its conductance
        # one cell-LSB (G_P - G_AP = 1/12 kOhm) at one DAC-LSB (0.25 V) for 10 ns: at 0.25 V
        # per unit of x^2 G (tables), drawn from the 0.8-V supply per unit of |x| G (physical)
        summed = A.V1G_LSB if model == "physical" else A.V2G_LSB
        v = 0.8 if model == "physical" else 0.25
        assert cell.energy_pj(summed) == pytest.approx(
            v * 0.25 * (1 / R_AP_OHM) * 10e-9 * 1e12)


def test_mram_wordline_known_answer():
    """Word line of one row: (wire 0.2 + access gate 1.0) fF/um over the 1T1MTJ pitch per
    cell, C V^2 at the 0.8-V supply."""
    chip = mram_physical(wordline_v=None)
    dac = component_models(chip)[C.DAC]
    pitch_um = math.sqrt(57.5) * 0.022
    c_ff = (0.2 + 1.0) * pitch_um * chip.array.n_cols
    assert dac.wordline_pj() == pytest.approx(c_ff * 0.8**2 * 1e-3)


def test_mram_write_is_one_stt_pulse():
    """NVSim's STT-RAM cell: 0.194 pJ and 5 ns per write, against RRAM's write-verify."""
    chip = mram_physical()
    assert component_models(chip)[C.CELL].energy_pj(A.WRITE, 1) == pytest.approx(0.194)
    assert write_time_ns_per_row(chip) == 5.0
    rram = cimsim.load_chip("rram-22nm")
    assert write_time_ns_per_row(rram) > 100 * write_time_ns_per_row(chip)


def test_low_on_off_ratio_costs_read_energy():
    """The antiparallel state's current is read too: at the same G_P, a lower R_AP / R_P
    costs more energy per read of the same weights."""
    def e_cell(ratio: float) -> float:
        chip = mram_physical()
        chip = chip.replace(device=chip.device.replace(on_off_ratio=ratio))
        x, w = workload(chip)
        _, ev = cimsim.matmul(x[:8], w, chip, seed=0, calibration=x[:8])
        block = cimsim.arrays.program(w, chip)
        return estimate([layer_work(ev, block)], chip).energy_by_component()["cell"]

    assert e_cell(1.5) > e_cell(2.0) > e_cell(3.0) > e_cell(100.0)

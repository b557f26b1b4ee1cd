"""Gain-cell eDRAM cells (device.cell = 'edram'; tech.cell_kind = 'edram_2t' / 'edram_3t'):
known answers (hand computations) for their area, read, write and refresh, the refresh
counted over the inference as a static power, monotone where physics says so; the engine
computes with them exactly as with SRAM (the schema's chip strategy draws them:
tests/cost/test_fefet_flash_cost.py's strategy test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cimsim
from cimsim.config import CellKind, ChipConfig
from cimsim.cost import component_models, estimate, layer_work
from cimsim.cost.area import area_instances
from cimsim.cost.datasheet import datasheet
from cimsim.cost.models import cell_kind
from cimsim.cost.tables import tech_table
from cimsim.events import Action, Component

A, C = Action, Component
CHIP_FILE = Path(__file__).parents[1] / "data" / "chips" / "edram-2t-gaincell.toml"
SRAM_8T_F2 = 280.0  # NeuroSim V1.4's CIM SRAM cell at >= 22 nm, 8 transistors


def edram(model: str = "physical", **tech) -> ChipConfig:
    """The hypothetical 2T gain-cell macro (28 nm, 0.9 V, 40 us, sign + 1-b magnitude)."""
    chip = cimsim.load_chip(CHIP_FILE)
    return chip.replace(tech=chip.tech.replace(cost_model=model, **tech))


def test_default_kind_and_retention():
    """An omitted cell_kind prices the 3T gain cell; an omitted retention is the kind's
    published one (2T 110 us, Chun et al. JSSC 2012; 3T 77 us, Giterman et al. SSC-L 2020)."""
    from cimsim.cost._prices import retention_ns

    chip = edram(cell_kind=None, retention_ns=None)
    assert cell_kind(chip) is CellKind.EDRAM_3T
    assert retention_ns(chip) == 77e3
    assert retention_ns(edram(retention_ns=None)) == 110e3
    assert retention_ns(edram()) == 40e3


@pytest.mark.parametrize("kind,transistors,f2", [("edram_2t", 2, 70.0), ("edram_3t", 3, 105.0)])
def test_cell_area_known_answer(kind, transistors, f2):
    """By transistor count at the 8T cell's 280 F^2: 2T 70 F^2, 3T 105 F^2 per stored bit;
    the signed-cell encoding stores a sign and a magnitude bit: 2 x f2 x (28 nm)^2."""
    assert SRAM_8T_F2 * transistors / 8 == f2
    chip = edram(cell_kind=kind)
    cell = component_models(chip)[C.CELL]
    assert cell.area_f2() == pytest.approx(2 * f2)
    assert cell.area_um2() == pytest.approx(2 * f2 * 0.028**2)
    what = [r["instance"] for r in area_instances(chip) if r["component"] == "cell"]
    assert what == [f"{kind} cell ({2 * f2:.0f} F^2)"]


def test_read_and_write_are_the_sram_bit_cells():
    """The read port discharges the read bit-line as the 8T cell's decoupled port does, and
    the write port writes the storage node: the tables' SRAM bit-cell read (1.12 fJ) and write
    (1.6 fJ) at 22 nm, node-scaled to 28 nm, times (0.9 / 0.8)^2, per stored bit (2)."""
    chip = edram()
    cell = component_models(chip)[C.CELL]
    table = tech_table(28.0)
    sf = (0.9 / 0.8) ** 2
    assert cell.energy_pj(A.READ, 1) == pytest.approx(
        2 * table.sram_cim_bitcell_read_energy_fj * 1e-3 * sf)
    assert cell.energy_pj(A.WRITE, 1) == pytest.approx(
        2 * table.sram_cim_bitcell_write_energy_fj * 1e-3 * sf)
    sram = chip.replace(device=chip.device.replace(cell="sram"),
                        tech=chip.tech.replace(cell_kind="sram_8t", retention_ns=None))
    for action in (A.READ, A.WRITE):
        assert cell.energy_pj(action, 1) == component_models(sram)[C.CELL].energy_pj(action, 1)


@pytest.mark.parametrize("model", ["tables", "physical"])
def test_refresh_power_known_answer(model):
    """Per cell-ns held: 2 stored bits x (read + write) per bit, once per 40 us (40 000 ns):
    2 x (1.12 + 1.6) fJ x s(28 nm) x (0.9/0.8)^2 / 40 000 ns, in pJ/ns; 0 for an SRAM cell.
    A cell storing 2 weight sets refreshes the bits of both: twice that (a refresh priced
    for the active set only undercharged a multi-set chip)."""
    chip = edram(model)
    table = tech_table(28.0)
    e_bit = ((table.sram_cim_bitcell_read_energy_fj + table.sram_cim_bitcell_write_energy_fj)
             * 1e-3 * (0.9 / 0.8) ** 2)
    assert component_models(chip)[C.CELL].energy_pj(A.REFRESH) == pytest.approx(
        2 * e_bit / 40_000.0)
    two_sets = edram(model, weight_sets_stored=2)
    assert component_models(two_sets)[C.CELL].energy_pj(A.REFRESH) == pytest.approx(
        2 * 2 * e_bit / 40_000.0)
    sram = chip.replace(device=chip.device.replace(cell="sram"),
                        tech=chip.tech.replace(retention_ns=None))
    assert component_models(sram)[C.CELL].energy_pj(A.REFRESH) == 0.0


def _run(chip: ChipConfig, n_rows: int = 200, n_out: int = 3):
    rng = np.random.default_rng(0)
    w = rng.integers(-7, 8, size=(n_out, n_rows))
    x = rng.integers(0, 16, size=(4, n_rows))
    y, ev = cimsim.matmul(x, w, chip, seed=0)
    return y, ev, cimsim.arrays.program(w, chip)


def test_refresh_energy_per_inference_known_answer():
    """The estimator counts every cell of the occupied arrays over the inference time
    (cell-ns) and multiplies by the refresh power: a 200-row matrix takes 2 arrays of
    128 x 128 cells; E = 2 x 16384 x t_inference x P_cell."""
    chip = edram()
    _, ev, block = _run(chip)
    assert block.n_arrays == 2
    rep = estimate([layer_work(ev, block)], chip)
    (row,) = [r for r in rep.events if r["action"] == "refresh"]
    t = rep.totals["latency_ns_per_inference"]
    p_cell = component_models(chip)[C.CELL].energy_pj(A.REFRESH)
    assert row["n_events_per_inference"] == pytest.approx(2 * 128 * 128 * t)
    assert row["energy_pj_per_inference"] == pytest.approx(2 * 128 * 128 * t * p_cell)
    assert any("eDRAM refresh" in n and "40-us" in n for n in rep.notes)


def test_no_refresh_event_for_cells_that_hold_their_bits():
    """An SRAM chip's events are what they were: no cell.refresh row, no eDRAM note."""
    chip = edram()
    sram = chip.replace(device=chip.device.replace(cell="sram"),
                        tech=chip.tech.replace(retention_ns=None))
    _, ev, block = _run(sram)
    rep = estimate([layer_work(ev, block)], sram)
    assert not [r for r in rep.events if r["action"] == "refresh"]
    assert not any("eDRAM" in n for n in rep.notes)


def test_refresh_runs_while_power_gated_arrays_keep_their_weights():
    """Power gating stops a layer's converters leaking outside its own time, but its cells
    keep their weights for the next inference: two layers, the first layer's refresh is
    counted over the whole inference under 'layer' gating as under 'none'."""
    counts = {}
    for gating in ("none", "layer"):
        chip = edram(power_gating=gating)
        _, ev1, b1 = _run(chip)
        _, ev2, b2 = _run(chip, n_rows=100, n_out=2)
        rep = estimate([layer_work(ev1, b1, name="a"), layer_work(ev2, b2, name="b")], chip)
        counts[gating] = {(r["layer"], r["action"]): r["n_events_per_inference"]
                          for r in rep.events if r["action"] in ("refresh", "leak")}
    assert counts["layer"][("a", "refresh")] == counts["none"][("a", "refresh")]
    assert counts["layer"][("a", "leak")] < counts["none"][("a", "leak")]


def test_refresh_falls_with_longer_retention_and_grows_with_supply():
    """Refresh power is 1 / retention (exactly: 10x the retention, a tenth of the power) and
    C V^2 in the supply; the 2T kind's published 110 us refreshes less often than the 3T's
    77 us."""
    def p(**tech):
        return component_models(edram(**tech))[C.CELL].energy_pj(A.REFRESH)

    powers = [p(retention_ns=t) for t in (1e3, 1e4, 4e4, 1.1e5, 1e6, 1e9)]
    assert powers == sorted(powers, reverse=True) and len(set(powers)) == len(powers)
    assert p(retention_ns=4e5) == pytest.approx(p(retention_ns=4e4) / 10)
    assert p(vdd_v=0.7) < p(vdd_v=0.9) < p(vdd_v=1.1)
    assert p(retention_ns=None, cell_kind="edram_2t") < p(retention_ns=None, cell_kind="edram_3t")


def test_engine_computes_an_edram_chip_as_sram():
    """A digital store like SRAM: the same outputs and the same events (bit for bit) as the
    chip with cell = 'sram'; only the pricing differs."""
    chip = edram()
    sram = chip.replace(device=chip.device.replace(cell="sram"),
                        tech=chip.tech.replace(retention_ns=None))
    y, ev, _ = _run(chip)
    y_s, ev_s, _ = _run(sram)
    np.testing.assert_array_equal(y, y_s)
    assert dict(ev.items()) == dict(ev_s.items())


def test_datasheet_of_the_chip_file_counts_the_refresh():
    """The datasheet's cell energy is the read plus the refresh: a 10x shorter retention
    raises it, nothing else changes."""
    long, short = datasheet(edram()), datasheet(edram(retention_ns=4e3))
    assert short["energy_pj_by_component"]["cell"] > long["energy_pj_by_component"]["cell"]
    for c in ("adc", "dac"):
        assert short["energy_pj_by_component"][c] == long["energy_pj_by_component"][c]
    assert short["area_mm2"] == long["area_mm2"]

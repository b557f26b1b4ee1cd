"""Over-capacity (time-multiplexed) chips: cell writes priced and scheduled, used area and ADC
leakage bounded by the arrays that exist (issue 16, item 3), the used part's TOPS/mm^2 and the
cost caveat in the totals (issue 16, "Also")."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import cimsim
from cimsim.cost import UNATTRIBUTED, cost_caveat, estimate
from cimsim.cost.area import chip_area_um2, occupied_area_um2
from cimsim.cost.energy import stored_bits_per_cell
from cimsim.cost.latency import (
    WRITE_PARALLEL_ARRAYS_PER_TILE,
    reload_latency,
    write_time_ns_per_row,
)
from cimsim.cost.tables import tech_table
from cimsim.events import Action, Component, event_key

REPROGRAM = event_key(Component.ARRAY, Action.REPROGRAM)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 5))


def _tiny(preset: str, n_tiles: int = 1, arrays_per_tile: int = 2) -> cimsim.ChipConfig:
    """``preset`` on 16 x 32 arrays, far fewer than the model needs, time-multiplexed."""
    chip = cimsim.load_chip(preset)
    return chip.replace(array=chip.array.replace(
        n_rows=16, n_cols=32, rows_per_conversion=None, n_tiles=n_tiles,
        arrays_per_tile=arrays_per_tile, allow_time_multiplexing=True))


def _run(chip: cimsim.ChipConfig, n_calls: int = 1):
    x = torch.randn(6, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    sim = cimsim.deploy(_model(), chip, x)
    for _ in range(n_calls):
        sim(x[:3])
    return sim.work()


@pytest.fixture(scope="module")
def rram():
    work = _run(_tiny("rram-22nm"))
    assert work.n_arrays_needed > work.chip.array.n_arrays  # over capacity
    return work, estimate(work)


def test_write_time_per_row_by_cell_kind():
    t = tech_table(22.0)
    # RRAM: one RESET pulse, then 32 SET pulses of 50 ns each verified by a 10-ns read
    assert t.rram_write_time_ns_per_row == pytest.approx(33 * 50.0 + 32 * 10.0) == 1970.0
    assert t.sram_write_time_ns_per_row == 1.0  # one 1-GHz write cycle per row
    # device physics and NeuroSim's fixed clock: the same at every node
    assert tech_table(7.0).rram_write_time_ns_per_row == tech_table(130.0).\
        rram_write_time_ns_per_row == 1970.0
    assert write_time_ns_per_row(cimsim.load_chip("rram-22nm"), t) == 1970.0
    assert write_time_ns_per_row(cimsim.load_chip("sram-65nm")) == 1.0
    # ideal cells are costed as charge-domain SRAM, for time as for energy
    assert write_time_ns_per_row(cimsim.load_chip("ideal")) == 1.0


def test_reload_latency_by_hand():
    chip = _tiny("rram-22nm", n_tiles=2, arrays_per_tile=4)
    # 5 arrays per reload, 10 rewritten: 2 reloads of ceil(5 / 2) = 3 waves of one array each
    d = reload_latency(chip, 10, 5)
    assert WRITE_PARALLEL_ARRAYS_PER_TILE == 1
    assert d["n_reloads"] == 2 and d["n_waves_per_reload"] == 3
    assert d["n_arrays_in_parallel"] == 2
    assert d["t_write_array_ns"] == 16 * 1970.0
    assert d["latency_ns"] == 2 * 3 * 16 * 1970.0
    assert reload_latency(chip, 0, 5)["latency_ns"] == 0.0


def test_write_energy_known_answer(rram):
    work, cost = rram
    chip = work.chip
    key = event_key(Component.CELL, Action.WRITE, chip.device.bits_per_cell)
    n_inf = work.n_inferences
    (row,) = [r for r in cost.events if (r["component"], r["action"]) == ("cell", "write")]
    assert row["layer"] == UNATTRIBUTED
    # RRAM: 3 pJ per stored bit (Yang, Strukov & Stewart 2013), not supply- or node-scaled
    assert row["energy_pj_per_event"] == pytest.approx(stored_bits_per_cell(chip) * 3.0)
    assert row["energy_pj_per_inference"] == pytest.approx(
        work.other_events[key] * stored_bits_per_cell(chip) * 3.0 / n_inf)


def test_reload_time_is_added_to_the_latency(rram):
    work, cost = rram
    chip = work.chip
    over = work.n_arrays_needed - chip.array.n_arrays
    assert work.other_events[REPROGRAM] == over  # one forward call: one reload
    # one tile writes one array at a time: `over` waves of 16 rows x 1970 ns, over 3 inferences
    reload_ns = over * 16 * 1970.0 / work.n_inferences
    t = cost.totals
    assert t["reprogramming_latency_ns_per_inference"] == pytest.approx(reload_ns)
    compute = [r["latency_ns_per_inference"] for r in cost.layers if r["layer"] != UNATTRIBUTED]
    assert t["latency_ns_per_inference"] == pytest.approx(sum(compute) + reload_ns)
    # its own line, in the layers and in the blocks
    (line,) = [r for r in cost.layers if r["layer"] == UNATTRIBUTED]
    assert line["latency_ns_per_inference"] == pytest.approx(reload_ns)
    assert line["energy_pj_per_inference"] > 0 and line["n_arrays"] == 0
    (block,) = [b for b in cost.blocks if b["layer"] == UNATTRIBUTED]
    assert block["latency_ns"] == pytest.approx(reload_ns)
    assert block["n_arrays_per_reload"] == over and block["t_write_row_ns"] == 1970.0
    # pipelined: the slowest layer's period, no shorter than the layers' turns on the chip's
    # arrays (every block's array time over them, at its period: more than the slowest layer
    # here), then the reload
    piped = estimate(work, pipelined=True).totals["latency_ns_per_inference"]
    turns = sum(b["period_ns"] * b["n_arrays"] for b in cost.blocks
                if b["layer"] != UNATTRIBUTED) / chip.array.n_arrays
    assert turns > max(compute)
    assert piped == pytest.approx(turns + reload_ns)


def test_reloads_scale_with_forward_calls():
    chip = _tiny("rram-22nm")
    one, two = (estimate(_run(chip, n)).totals for n in (1, 2))
    # twice the calls, twice the inferences: the same reload time per inference
    assert two["reprogramming_latency_ns_per_inference"] == pytest.approx(
        one["reprogramming_latency_ns_per_inference"])


def test_sram_reload_uses_one_cycle_per_row():
    work = _run(_tiny("sram-65nm"))
    over = work.n_arrays_needed - work.chip.array.n_arrays
    t = estimate(work).totals
    assert t["reprogramming_latency_ns_per_inference"] == pytest.approx(
        over * 16 * 1.0 / work.n_inferences)


def test_used_area_is_at_most_the_chip(rram):
    work, cost = rram
    chip = work.chip
    chip_um2 = sum(chip_area_um2(chip, calibration=cost.calibration).values())
    t = cost.totals
    assert t["area_mm2_used"] == pytest.approx(t["area_mm2"]) == pytest.approx(chip_um2 * 1e-6)
    assert t["n_arrays_occupied"] == chip.array.n_arrays
    # a layer's area_um2 stays its own footprint: together they exceed the chip
    layers_um2 = sum(r["area_um2"] for r in cost.layers)
    assert layers_um2 == pytest.approx(
        sum(sum(occupied_area_um2(chip, w.n_arrays).values()) for w in work.layers))
    assert layers_um2 > chip_um2


def test_occupied_area_carries_a_fractional_tile_share():
    """``n`` arrays occupy their own area and ``n / arrays_per_tile`` of a tile's (its buffer,
    router and bus shared by the tile's arrays), not whole tiles: 3 arrays of 2-array tiles
    carry 1.5 tiles, 1 array half a tile. Guards the fractional share of the used area."""
    from cimsim.cost.area import array_area_um2, tile_area_um2

    chip = _tiny("rram-22nm", n_tiles=4, arrays_per_tile=2)
    per_array, per_tile = array_area_um2(chip), tile_area_um2(chip)
    for n in (1, 3):
        got = occupied_area_um2(chip, n)
        for k, v in per_array.items():
            assert got[k] == pytest.approx(n * v), k
        for k, v in per_tile.items():
            assert got[k] == pytest.approx(n / 2 * v), k


def test_leakage_charged_for_the_chips_arrays_only(rram):
    work, cost = rram
    chip = work.chip
    t_ns = cost.totals["latency_ns_per_inference"]
    adcs = chip.array.adcs_per_array
    leak = sum(r["n_events_per_inference"] for r in cost.events if r["action"] == "leak")
    # known answer: every block's ADCs over the inference, scaled to the chip's arrays
    share = chip.array.n_arrays / work.n_arrays_needed
    want = share * sum(b["n_arrays"] * adcs * t_ns * b["adc_duty"]
                       for b in cost.blocks if b["layer"] != UNATTRIBUTED)
    assert leak == pytest.approx(want)
    # bounded: no more than every ADC of the chip leaking at full rate the whole time
    assert leak <= chip.array.n_arrays * adcs * t_ns * (1 + 1e-12)


def test_within_capacity_nothing_changes():
    chip = cimsim.load_chip("rram-22nm")
    work = _run(chip)
    cost = estimate(work)
    t = cost.totals
    assert t["reprogramming_latency_ns_per_inference"] == 0.0
    assert all(r["layer"] != UNATTRIBUTED for r in cost.layers + cost.blocks)
    assert t["latency_ns_per_inference"] == pytest.approx(
        sum(r["latency_ns_per_inference"] for r in cost.layers))
    assert t["area_mm2_used"] == pytest.approx(sum(r["area_um2"] for r in cost.layers) * 1e-6)
    assert t["area_mm2_used"] < t["area_mm2"]
    assert t["n_arrays_occupied"] == work.n_arrays_needed


def test_totals_keys_and_used_part_figures(rram):
    _, cost = rram
    t = cost.totals
    for key in ("area_mm2_used", "n_arrays_occupied", "reprogramming_latency_ns_per_inference",
                "tops_per_mm2_used", "tops_per_mm2_used_1b", "cost_meaningful", "cost_caveat"):
        assert key in t
    assert t["tops_per_mm2_used"] == pytest.approx(t["tops"] / t["area_mm2_used"])
    bits = cost.chip.input_bits * cost.chip.weight_bits
    assert t["tops_per_mm2_used_1b"] == pytest.approx(t["tops_per_mm2_used"] * bits)
    assert t["cost_meaningful"] is True and t["cost_caveat"] == ""
    assert any("time-multiplexed" in n for n in cost.notes)


def test_ideal_preset_costs_are_flagged_meaningless():
    chip = cimsim.load_chip("ideal")
    assert cost_caveat(chip) and "mean nothing" in cost_caveat(chip)
    cost = estimate(_run(chip))
    assert cost.totals["cost_meaningful"] is False
    assert cost.totals["cost_caveat"] == cost_caveat(chip)
    assert cost.notes[0].startswith("COST FIGURES MEANINGLESS")
    for name in cimsim.list_presets():
        if name != "ideal":
            assert cost_caveat(cimsim.load_chip(name)) == "", name
    assert math.isfinite(cost.totals["tops_per_mm2_used"])


def test_a_wide_digital_adder_tree_is_hardware():
    """A digital read-out's adc.bits is its adder tree's width, which the config requires
    (256 rows of 8-b slices: 17 b) and its price does not read: it was flagged 'reference
    chip, not hardware' as a 17-b converter would be."""
    c = cimsim.load_chip("cimsim/presets/published/chih-isscc21.toml")
    wide = c.replace(adc=c.adc.replace(bits=17), dac=c.dac.replace(bits=8), input_bits=8,
                     array=c.array.replace(allow_time_multiplexing=True))
    assert wide.array.rows_per_group == 256 and cost_caveat(wide) == ""
    assert not any("beyond the tables" in n for n in estimate(_run(wide)).notes)


class _EarlyExit(nn.Module):
    """A first layer and its exit head; the deep layers run only when asked."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.exit = nn.Linear(16, 16), nn.Linear(16, 3)
        self.deep = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3))
        self.path = "both"  # calibrated on both paths

    def forward(self, x):
        h = torch.relu(self.first(x))
        if self.path == "both":
            return self.deep(h) + self.exit(h)
        return self.deep(h) if self.path == "deep" else self.exit(h)


def test_a_call_reloads_only_the_arrays_of_the_matrices_it_ran():
    """The chip holds the model's first arrays (model order) and rewrites, each forward, the
    arrays beyond them of the matrices that forward ran. A full forward is charged
    needed - held arrays, as before; an early exit (or an expert no token reached) that runs
    only held matrices loads nothing, and a branch beyond them loads its own arrays, each
    time it runs (two experts taking turns are not both held). Every forward was charged the
    whole model's reload, so an exit through a few layers cost nearly the full path's
    energy."""
    torch.manual_seed(0)
    model = _EarlyExit().eval()
    chip = _tiny("rram-22nm", arrays_per_tile=5)  # 16 x 32 arrays, 5 of them
    sim = cimsim.deploy(model, chip, torch.randn(16, 16), progress=False)
    have = chip.array_slots
    spans, start = {}, 0
    for name, layer in sim.sim_layers.items():  # model order: first, exit, deep.0, deep.2
        n = sum(c.n_arrays for c in layer.cores)
        spans[name] = (start, n, sum(c.n_cells for c in layer.cores))
        start += n
    assert start == sim.arrays_needed > have
    assert spans["first"][1] + spans["exit"][1] <= have  # the exit path is held

    def beyond(names):
        return sum(max(0, a + n - max(a, have)) for a, n, _ in (spans[k] for k in names))

    write = event_key(Component.CELL, Action.WRITE, chip.device.bits_per_cell)
    for path, names in (("deep", ("first", "deep.0", "deep.2")), ("exit", ("first", "exit")),
                        ("both", tuple(spans))):
        sim.model.path = path
        sim.reset()
        sim(torch.randn(4, 16))
        assert sim._extra.get(REPROGRAM) == beyond(names)
        if beyond(names):
            cells = sum(spans[k][2] for k in names)
            arrays = sum(spans[k][1] for k in names)
            assert sim._extra.get(write) == pytest.approx(cells * beyond(names) / arrays)
    assert beyond(("first", "exit")) == 0 < beyond(("first", "deep.0", "deep.2"))
    # every matrix: the arrays beyond the chip's, as before
    assert beyond(tuple(spans)) == sim.arrays_needed - have

"""Area instances and cycle-approximate latency: hand-counted cases and monotonicity."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.arrays.program import program
from cimsim.config import ADCConfig
from cimsim.cost import estimate, layer_work
from cimsim.cost.area import area_instances, array_area_um2, chip_area_um2, tile_area_um2
from cimsim.cost.latency import block_latency, chip_latency_ns
from cimsim.cost.tables import adc_area_um2, tech_table


def _rram(**array):
    chip = cimsim.load_chip("rram-22nm")
    return chip.replace(array=chip.array.replace(**array),
                        adc=ADCConfig(kind="sar", bits=6, range_policy="full_scale"))


def test_chip_area_counts_every_instance():
    chip = _rram()
    t = tech_table(22.0)
    inst = {r["component"]: r for r in area_instances(chip, t)}
    assert inst["cell"]["n_per_scope"] == 128 * 128
    assert inst["cell"]["area_um2_per_instance"] == pytest.approx(48 * 0.022**2)
    assert inst["adc"]["n_per_scope"] == 128 // 8
    assert inst["adc"]["area_um2_per_instance"] == pytest.approx(adc_area_um2("sar", 6, t))
    assert inst["dac"]["n_per_scope"] == 128
    assert inst["shift_add"]["n_per_scope"] == 16
    per_array, per_tile = array_area_um2(chip, t), tile_area_um2(chip, t)
    total = chip_area_um2(chip, t)
    a = chip.array
    for comp, value in per_array.items():
        assert total[comp] == pytest.approx(value * a.n_tiles * a.arrays_per_tile)
    for comp, value in per_tile.items():
        assert total[comp] == pytest.approx(value * a.n_tiles)
    # more ADC bits: more area
    wider = chip.replace(adc=chip.adc.replace(bits=8))
    assert array_area_um2(wider, t)["adc"] > per_array["adc"]


def test_more_columns_per_adc_less_adc_area_more_latency():
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, size=(64, 128))
    x = rng.integers(0, 256, size=(8, 128))
    areas, lats = [], []
    for cols_per_adc in (1, 2, 4, 8, 16):
        chip = _rram(cols_per_adc=cols_per_adc)
        _, ev = cimsim.matmul(x, w, chip)
        rep = estimate([layer_work(ev, program(w, chip))], chip)
        areas.append(rep.area_by_component()["adc"])
        lats.append(rep.totals["latency_ns_per_inference"])
    assert all(b < a for a, b in pairwise(areas))
    assert all(b >= a for a, b in pairwise(lats)) and lats[-1] > lats[0]


def test_block_latency_by_hand():
    """K = 300 on 128-row arrays with 64-row conversions: 3 row tiles of 2, 2, 1 row groups."""
    chip = _rram(rows_per_conversion=64)
    w = np.random.default_rng(1).integers(-127, 128, size=(40, 300))
    block = program(w, chip)
    assert len(block.row_tiles) == 3
    d = block_latency(block, n_vectors=5)
    planes = 8  # unsigned 8-b inputs, 1-b DAC
    # 40 outputs x 4 slices = 160 analog pairs on 2 arrays of 64 pairs: the busiest has 64,
    # 16 ADCs -> 4 conversions each of (6 + 1) ns = 28 ns > 10-ns read
    assert d["n_planes"] == planes and d["n_row_groups_per_tile"] == 2
    assert d["n_conversions_per_adc"] == 4 and d["t_step_ns"] == pytest.approx(28.0)
    tail = (1 + 2) * 1.0  # add tree over 3 row tiles (ceil log2 3 = 2) + write, 1-ns clock
    assert d["latency_ns"] == pytest.approx(5 * planes * 2 * 28.0 + tail)
    # a slow read dominates the step instead
    slow = chip.replace(tech=chip.tech.replace(t_read_ns=100.0))
    assert block_latency(program(w, slow), 5)["t_step_ns"] == pytest.approx(100.0)
    assert chip_latency_ns([3.0, 5.0, 2.0]) == 10.0
    assert chip_latency_ns([3.0, 5.0, 2.0], pipelined=True) == 5.0


@pytest.mark.parametrize("per_tile", [("quant", "weight_granularity", "column"),
                                      ("quant", "act_format", "block_fp")])
def test_a_matrix_programmed_per_row_tile_keeps_the_merge_tree_in_its_time(per_tile):
    """A 300-input layer on 128-row arrays: 3 row tiles, whose partial outputs the add tree
    merges (1 + ceil(log2 3) = 3 clocks). Programmed one row tile per block, each block had
    one row tile and a 1-clock tail: the layer that does more digital work came out faster
    than the same layer at channel granularity (225 against 227 ns)."""
    chip = cimsim.load_chip("rram-22nm")
    chip = chip.replace(device=chip.device.replace(variation_sigma=0.0))
    torch.manual_seed(0)
    model, x = nn.Linear(300, 20), torch.rand(1, 300)
    group, field, value = per_tile
    split = chip.replace(**{group: getattr(chip, group).replace(**{field: value})})
    costs = {}
    for name, c in (("whole", chip), ("split", split)):
        sim = cimsim.deploy(model, c, x, seed=0)
        sim(x)
        costs[name] = estimate(sim.work())
    assert len(costs["split"].blocks) == 3
    tail = 3 * 1e3 / chip.tech.clock_mhz
    assert [b["tail_ns"] for b in costs["split"].blocks] == [tail] * 3
    assert costs["whole"].blocks[0]["tail_ns"] == tail
    assert costs["split"].layers[0]["latency_ns_per_inference"] == \
        costs["whole"].layers[0]["latency_ns_per_inference"]


def test_an_lstm_projection_is_a_stage_after_its_recurrence():
    """W_hr reads the gates W_hh gave at step t, W_hh at t + 1 reads its output: an LSTM with
    a projection took as long as one without (W_hr beside W_hh, in parallel)."""
    lat = {}
    for proj in (0, 8):
        torch.manual_seed(0)
        model, x = nn.LSTM(16, 32, batch_first=True, proj_size=proj).eval(), torch.randn(1, 12, 16)
        sim = cimsim.deploy(model, "ideal", x, seed=0)
        sim(x)
        cost = estimate(sim.work())
        lat[proj] = cost.totals["latency_ns_per_inference"]
        stages = {b["name"].rpartition(".")[2]: b["stage"] for b in cost.blocks}
    assert stages == {"weight_ih_l0": 0, "weight_hh_l0": 0, "weight_hr_l0": 1}
    hr = next(b for b in cost.blocks if b["name"].endswith("weight_hr_l0"))
    assert lat[8] == pytest.approx(lat[0] + hr["latency_ns"])


def test_deployed_model_layers_parallel_blocks_and_pipeline():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, groups=2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 6))
    x = torch.rand(4, 2, 4, 4)
    sim = cimsim.deploy(model, _rram(), x)
    sim(x)
    seq = estimate(sim.work())
    pipe = estimate(sim.work(), pipelined=True)
    lat = [r["latency_ns_per_inference"] for r in seq.layers]
    assert seq.totals["latency_ns_per_inference"] == pytest.approx(sum(lat))
    # pipelined: the slowest layer's period, its steps (each block's tail, the add tree and
    # output write, overlaps the next inference's steps)
    for b in pipe.blocks:
        assert b["period_ns"] == pytest.approx(max(b["latency_ns"] - b["tail_ns"], b["tail_ns"]))
    period = {}
    for b in pipe.blocks:
        period[b["layer"]] = max(period.get(b["layer"], 0.0), b["period_ns"])
    assert pipe.totals["latency_ns_per_inference"] == pytest.approx(max(period.values()))
    assert pipe.totals["latency_ns_per_inference"] < max(lat)
    assert pipe.totals["tops"] >= seq.totals["tops"]
    conv_blocks = [b for b in seq.blocks if b["layer"] == "0"]
    assert len(conv_blocks) == 2  # two groups, run in parallel: the layer is the slowest
    assert lat[0] == pytest.approx(max(b["latency_ns"] for b in conv_blocks))
    # per inference: 16 output pixels per image for the convolution
    assert conv_blocks[0]["n_vectors_per_inference"] == pytest.approx(16)


def test_a_chip_with_fewer_arrays_than_the_model_runs_its_layers_in_turn():
    """Was: a time-multiplexed chip was timed as if the model's arrays all existed: on one
    array the pipelined period was the slowest layer (2.3x the possible throughput) and two
    parallel blocks took one block's time. Blocks that share arrays take turns: a stage lasts
    at least its blocks' array time over the chip's arrays, and the pipelined period at least
    all the blocks' array time over them."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, groups=2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 6))
    x = torch.rand(4, 2, 4, 4)
    chips = {}
    for n in (1, 8):
        chip = _rram()
        chip = chip.replace(array=chip.array.replace(n_tiles=1, arrays_per_tile=n,
                                                     allow_time_multiplexing=True))
        sim = cimsim.deploy(model, chip, x)
        sim(x)
        chips[n] = (estimate(sim.work()), estimate(sim.work(), pipelined=True))
    (seq1, pipe1), (seq8, pipe8) = chips[1], chips[8]
    conv = [b for b in seq8.blocks if b["layer"] == "0"]
    assert len(conv) == 2 and all(b["n_arrays"] == 1 for b in conv)
    lat1, lat8 = ({r["layer"]: r["latency_ns_per_inference"] for r in s.layers}
                  for s in (seq1, seq8))
    assert lat1["0"] == pytest.approx(sum(b["latency_ns"] for b in conv))  # in turn
    assert lat8["0"] == pytest.approx(max(b["latency_ns"] for b in conv))  # in parallel
    # one array: nothing overlaps, the pipeline's period is the layers' periods summed (plus
    # reloads): their steps, each layer's tail overlapping the next one's steps
    def periods(cost):
        out: dict = {}
        for b in cost.blocks:
            if b["layer"] != "(reprogramming)":
                out[b["layer"]] = out.get(b["layer"], 0.0) + b["period_ns"] * b["n_arrays"]
        return out

    reload = pipe1.totals["reprogramming_latency_ns_per_inference"]
    assert pipe1.totals["latency_ns_per_inference"] - reload == pytest.approx(
        sum(periods(pipe1).values()))
    assert pipe1.totals["latency_ns_per_inference"] < seq1.totals["latency_ns_per_inference"]
    # within capacity the period is the slowest layer's
    per8 = {k: max(b["period_ns"] for b in pipe8.blocks if b["layer"] == k) for k in lat8}
    assert pipe8.totals["latency_ns_per_inference"] == pytest.approx(max(per8.values()))


def test_a_pipelined_one_layer_model_runs_at_the_datasheets_throughput():
    """One vector per inference through one layer of a digital macro: a step of 4 clocks (4
    input bits) and a tail of one (the output write). Pipelined, each inference's tail
    overlaps the next one's steps, so the period is the steps and the report's TOPS is the
    datasheet's (256 vectors, one tail at the end); it took steps + tail, 0.8x of it on
    published/chih-isscc21, whichever mode was asked."""
    from cimsim.cost import datasheet
    from cimsim.cost.datasheet import workload
    from cimsim.report import Report

    chip = cimsim.load_chip("published/chih-isscc21")
    x_int, w_int = workload(chip, 0.5)
    layer = nn.Linear(w_int.shape[1], w_int.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(w_int, dtype=torch.float32))
    x = torch.tensor(x_int, dtype=torch.float32)
    sim = cimsim.deploy(nn.Sequential(layer), chip, x, seed=0, progress=False)
    sim(x)
    seq = Report.from_sim(sim).totals
    pipe = Report.from_sim(sim, pipelined=True).totals
    sheet = datasheet(chip)["tops"]
    assert pipe["tops"] == pytest.approx(sheet, rel=2e-3)  # the sheet's one tail in 256
    assert seq["tops"] == pytest.approx(sheet * 4 / 5, rel=2e-3)

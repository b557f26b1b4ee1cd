"""Cost of ``array.slice_readout = 'analog'`` (issue 13): the converters' events, energy and
time follow the fewer conversions; the weighting network adds its own energy and area
(``weighting``, tests/cost/test_weighting_cost.py; docs/cost-model.md)."""

from __future__ import annotations

import pytest

import cimsim
from cimsim.arrays.program import program
from cimsim.cost import datasheet, estimate, layer_work
from cimsim.cost.datasheet import workload
from cimsim.cost.models import _conversions_per_adc

DEAVILLE = "cimsim/presets/published/deaville-vlsi22.toml"


def _deaville_2b():
    """Deaville's macro at 2-b weights (two's complement on 1-b cells: a magnitude and a sign
    column per weight), where its weighted multi-column readout has columns to combine (its
    TOML states the published 1-b point: one column a weight)."""
    chip = cimsim.load_chip(DEAVILLE)
    return chip.replace(weight_bits=2, weight_encoding="twos_complement")


def _both(chip):
    return (chip.replace(array=chip.array.replace(slice_readout="digital")),
            chip.replace(array=chip.array.replace(slice_readout="analog")))


def test_conversions_per_adc_by_hand():
    digital, analog = _both(_deaville_2b())
    # 2-b two's complement on 1-b cells: a magnitude and a sign column per weight; 4 columns
    # per ADC are 4 conversions, or 2 weights' combinations
    assert _conversions_per_adc(digital) == 4
    assert _conversions_per_adc(analog) == 2
    # 8-b differential on 2-b cells, digital pair read-out: 8 columns, 2 conversions a weight
    chip = cimsim.load_chip("ideal").replace(differential_readout="digital")
    chip = chip.replace(array=chip.array.replace(cols_per_adc=8, slice_readout="analog"))
    assert _conversions_per_adc(chip) == 2
    # 3 columns per ADC of 2-column weights: the second conversion's columns straddle two
    # ADCs' groups; counted up (ceil(3/2))
    assert _conversions_per_adc(analog.replace(array=analog.array.replace(cols_per_adc=3))) == 2


def test_convert_events_halve_at_the_same_price():
    prices = {}
    for chip in _both(_deaville_2b()):
        x, w = workload(chip)
        _, events = cimsim.matmul(x, w, chip, seed=0)
        rep = estimate([layer_work(events, program(w, chip))], chip)
        row = next(r for r in rep.events if (r["component"], r["action"]) == ("adc", "convert"))
        prices[chip.array.slice_readout.value] = row
    d, a = prices["digital"], prices["analog"]
    assert d["n_events_per_inference"] == 2 * a["n_events_per_inference"]
    assert d["energy_pj_per_event"] == a["energy_pj_per_event"]


def test_converter_energy_and_time_fall_with_the_conversions():
    digital, analog = (datasheet(c) for c in _both(_deaville_2b()))
    e_d, e_a = digital["energy_pj_by_component"], analog["energy_pj_by_component"]
    # half the conversions at the same price each (the rate stays below the survey's corner);
    # the converters leak over the block's time, which halves up to its fixed part
    assert e_a["adc"] == pytest.approx(e_d["adc"] / 2, rel=1e-4)
    # the cells and drivers are what they were; the weighting network adds its own energy
    # (the mirrors copy each column's current at its ratio, 1 and 2: 3x the cells' read
    # charge, here at V_dd = 0.8 V against V_read = 0.25 V) and area (3 unit transistors a
    # weight), nothing else moves
    assert e_a["cell"] == pytest.approx(e_d["cell"], rel=1e-12)
    assert e_a["dac"] == pytest.approx(e_d["dac"], rel=1e-12)
    assert "weighting" not in e_d and e_a["weighting"] > 0
    a_d, a_a = digital["area_um2_by_component"], analog["area_um2_by_component"]
    assert a_a.pop("weighting") > 0 and a_a == a_d
    # a step is the conversions per ADC (the column settles faster): twice the throughput,
    # up to the block's fixed time
    assert analog["tops"] == pytest.approx(2 * digital["tops"], rel=1e-3)


@pytest.mark.parametrize("readout", ["analog", "digital"])
@pytest.mark.parametrize("slices", ["digital", "analog"])
def test_converter_rate_counts_the_conversions_the_latency_counts(readout, slices):
    """The converter's rate (the ADC model) and the step (the latency model) count the same
    conversions per ADC: an analog differential pair is one conversion of its two columns."""
    from cimsim.cost.latency import block_latency

    base = cimsim.load_chip("ideal")
    chip = base.replace(weight_bits=4, differential_readout=readout,
                        device=base.device.replace(bits_per_cell=1),
                        array=base.array.replace(n_rows=64, n_cols=48, cols_per_adc=6,
                                                 slice_readout=slices))
    x, w = workload(chip)
    layer = program(w, chip)
    assert _conversions_per_adc(chip) == block_latency(layer, 1)["n_conversions_per_adc"]
    if readout == "analog" and slices == "digital":
        assert _conversions_per_adc(chip) == 3  # 6 columns = 3 pairs

"""Physical sanity of the cost figures as one input changes at a time (a hunt over every
preset: ADC bits, supply, input and weight bits, columns per ADC, node, input density).

Each test states the physical expectation, the numbers observed on the code it was written
against, and the likely cause.
"""

from __future__ import annotations

import pytest

import cimsim
from cimsim.arrays.encoding import conversion_kinds
from cimsim.cost import datasheet
from cimsim.sweep import chip_for_point


def _xue_4b_cells(weight_bits: int):
    """``published/xue-jssc20`` (current-domain RRAM, differential weights, analog
    differential and analog slice read-out) with 4-b cells: a weight of up to 5 b is one
    (pos, neg) column pair, one slice."""
    return chip_for_point(cimsim.load_chip("published/xue-jssc20"),
                          {"bits_per_cell": 4, "weight_bits": weight_bits})


def test_energy_per_mac_does_not_fall_when_weight_bits_rise_on_analog_slice_readout():
    """More weight bits never make a MAC cheaper: the weight needs at least as many cells,
    columns and conversions, with no fewer input planes.

    Observed (datasheet, macro scope, input density 0.5), ``published/xue-jssc20`` with
    ``bits_per_cell = 4``: 5-b weights 3.630 fJ per op (cell 1.50, weighting 1.50, ADC 0.45,
    DAC 0.18), 6-b weights 2.598 fJ per op (cell 1.58, weighting 0.19, ADC 0.45, DAC 0.37):
    energy per MAC falls 28 % when the weight gains a bit.

    Likely cause: at 5 b the weight is one differential pair, conversion weights ``[1, -1]``;
    ``cimsim.arrays.encoding.weighting_ratios`` gives it ratios ``[1, 1]`` (two nonzero
    columns), so ``WeightingModel`` prices a mirror network copying both columns at 1:1
    (``max_ratio`` 1): the cells' whole read charge a second time, from V_dd (41 % of the
    energy). There is no slice to weight: the same pair under ``slice_readout = 'digital'``
    (analog differential read-out, the one conversion) prices no network (next test). At 6 b
    the extra slice makes the ratios ``[1, 1, 16, 16]`` and the mirrors copy the large
    column at 1/16, so the spurious 1:1 copy disappears and the energy drops."""
    five, six = datasheet(_xue_4b_cells(5)), datasheet(_xue_4b_cells(6))
    assert six["energy_pj_per_op"] >= five["energy_pj_per_op"] * (1 - 1e-9), (
        f"energy per op {five['energy_pj_per_op'] * 1e3:.4g} fJ at 5-b weights, "
        f"{six['energy_pj_per_op'] * 1e3:.4g} fJ at 6-b weights")


def test_one_slice_pair_costs_the_same_under_either_slice_readout():
    """``array.slice_readout`` only says how a weight's *slices* are combined; a weight that
    is one column pair (no slice) reads the same conversions either way (the sweep itself
    refuses the change as a no-op: "slice_readout 'digital' reads the same conversions as the
    chip's 'analog': a weight of 5 b on 4-b cells is one column (or differential pair), no
    slice"), so the energy and area must be the same.

    Observed (datasheet, macro scope), ``published/xue-jssc20`` at 4-b cells and 5-b weights:
    'analog' 3.630 fJ per op (cell 25,110 pJ, weighting 25,110 pJ, DAC 3,086, ADC 7,591) and
    0.032287 mm^2 (27.1 um^2 of weighting); 'digital' 2.133 fJ per op (no weighting) and
    0.032260 mm^2: 1.70x the energy for identical conversions, cell reads and row drivers.

    Likely cause: ``weighting_ratios`` (cimsim/arrays/encoding.py) leaves a row a network
    whenever it reads two or more columns, including a (pos, neg) pair of equal weight whose
    combination is the analog differential read-out's own (unpriced on a digital-slice chip);
    ``WeightingModel`` (cimsim/cost/models.py) then prices 1:1 mirrors over the pair."""
    analog = _xue_4b_cells(5)
    assert analog.array.slice_readout.value == "analog"
    assert conversion_kinds(analog).weight.tolist() == [[1.0, -1.0]]  # one pair, no slice
    digital = analog.replace(array=analog.array.replace(slice_readout="digital"))
    a, d = datasheet(analog), datasheet(digital)
    assert a["energy_pj_per_op"] == pytest.approx(d["energy_pj_per_op"], rel=1e-9), (
        f"{a['energy_pj_per_op'] * 1e3:.4g} fJ per op with slice_readout='analog', "
        f"{d['energy_pj_per_op'] * 1e3:.4g} fJ with 'digital'; analog adds "
        f"{a['energy_pj_by_component'].get('weighting', 0.0):.4g} pJ of weighting")
    assert a["area_mm2"] == pytest.approx(d["area_mm2"], rel=1e-9)

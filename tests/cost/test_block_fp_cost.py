"""The block floating-point pre-alignment and re-normalisation (``BlockFPModel``): known answers
by hand, monotonic where the physics says so, nothing priced or built for ``int`` inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cimsim
from cimsim.arrays.program import program
from cimsim.config import ChipConfig
from cimsim.cost import estimate, layer_work
from cimsim.cost.area import area_instances, array_area_um2
from cimsim.cost.datasheet import datasheet, macro_components
from cimsim.cost.models import MUX_PER_FULL_ADDER, BlockFPModel
from cimsim.cost.tables import tech_table
from cimsim.events import Action

A = Action


def _chip(e_bits: int = 8, node_nm: float = 22.0, vdd_v: float = 0.8, input_bits: int = 8,
          fmt: str = "block_fp") -> ChipConfig:
    chip = cimsim.load_chip("rram-22nm")
    return chip.replace(input_bits=input_bits, dac=chip.dac.replace(bits=1),
                        tech=chip.tech.replace(node_nm=node_nm, vdd_v=vdd_v),
                        quant=chip.quant.replace(act_format=fmt, act_exponent_bits=e_bits))


def test_energy_per_action_known_answer():
    # e = 8 exponent bits, m = 8 mantissa bits, n = 32 accumulator bits at 22 nm, 0.9 V:
    # a full-adder bit costs the tables' accumulator_add_energy_pj_per_bit x (0.9 / 0.8)^2,
    # a mux bit 12/28 of it; the shifter has ceil(log2 min(2^8, 9)) = 4 stages
    chip = _chip(vdd_v=0.9)
    fa = tech_table(22.0, chip.tech.adc_band).accumulator_add_energy_pj_per_bit * (0.9 / 0.8) ** 2
    r = 12 / 28
    model = BlockFPModel(chip)
    assert MUX_PER_FULL_ADDER == r
    assert model.energy_pj(A.EXPONENT_MAX, 8) == pytest.approx((8 + 8 * r) * fa)
    assert model.energy_pj(A.ALIGN_SHIFT, 8) == pytest.approx((8 + 8 * 4 * r) * fa)
    assert model.energy_pj(A.EXPONENT_ADD, 8) == pytest.approx(8 * fa)
    assert model.energy_pj(A.NORMALIZE, 32) == pytest.approx((31 + 32 * 5) * r * fa)
    # a 2-b exponent can shift by 3 at most: ceil(log2 min(4, 9)) = 2 stages
    narrow = BlockFPModel(_chip(e_bits=2, vdd_v=0.9))
    assert narrow.energy_pj(A.ALIGN_SHIFT, 8) == pytest.approx((2 + 8 * 2 * r) * fa)
    assert model.time_ns(A.ALIGN_SHIFT, 8) == 0.0  # pipelined with the array reads


def test_area_of_one_arrays_unit_known_answer():
    chip = _chip()
    rows, lanes, acc = chip.array.n_rows, chip.array.adcs_per_array, chip.accumulator_bits
    a_fa = tech_table(22.0, chip.tech.adc_band).accumulator_area_um2_per_bit
    r = 12 / 28
    fa_bits = ((rows - 1) * 8 * (1 + r) + rows * (8 + 8 * 4 * r)
               + lanes * (8 + (acc - 1 + acc * math.ceil(math.log2(acc))) * r))
    assert BlockFPModel(chip).area_um2() == pytest.approx(fa_bits * a_fa)
    assert array_area_um2(chip)["block_fp"] == pytest.approx(fa_bits * a_fa)
    (row,) = [r for r in area_instances(chip) if r["component"] == "block_fp"]
    assert row["n_per_scope"] == 1 and row["scope"] == "array"


def test_energy_grows_with_bits_and_supply_and_falls_with_the_node():
    for action, lo, hi in ((A.ALIGN_SHIFT, 4, 8), (A.NORMALIZE, 16, 32)):
        assert BlockFPModel(_chip()).energy_pj(action, lo) < BlockFPModel(_chip()).energy_pj(
            action, hi)
    assert (BlockFPModel(_chip(e_bits=4)).energy_pj(A.EXPONENT_MAX, 4)
            < BlockFPModel(_chip(e_bits=8)).energy_pj(A.EXPONENT_MAX, 8))
    assert (BlockFPModel(_chip(vdd_v=0.7)).energy_pj(A.EXPONENT_ADD, 8)
            < BlockFPModel(_chip(vdd_v=0.9)).energy_pj(A.EXPONENT_ADD, 8))
    assert (BlockFPModel(_chip(node_nm=7.0)).energy_pj(A.EXPONENT_ADD, 8)
            < BlockFPModel(_chip(node_nm=45.0)).energy_pj(A.EXPONENT_ADD, 8))
    assert BlockFPModel(_chip(node_nm=7.0)).area_um2() < BlockFPModel(_chip(node_nm=45.0)
                                                                        ).area_um2()
    assert BlockFPModel(_chip(input_bits=4)).area_um2() < BlockFPModel(_chip()).area_um2()


def test_int_inputs_build_and_price_nothing_of_it():
    chip = _chip(fmt="int")
    assert BlockFPModel(chip).area_um2() == 0.0
    assert "block_fp" not in array_area_um2(chip)
    assert "block_fp" not in macro_components(chip)
    gen = np.random.default_rng(0)
    x, w = gen.integers(0, 255, (8, 64)), gen.integers(-100, 100, (4, 64))
    _, ev = cimsim.matmul(x, w, chip, calibration=x)
    block = program(w, chip)
    assert estimate([layer_work(ev, block)], chip).energy_by_component()["block_fp"] == 0.0


def test_a_block_fp_macro_prices_its_alignment_inside_the_macro():
    fp, plain = _chip(), _chip(fmt="int")
    assert macro_components(fp) == (*macro_components(plain), "shift_add", "block_fp")
    sheet = datasheet(fp)
    assert sheet["energy_pj_by_component"]["block_fp"] > 0
    assert sheet["area_um2_by_component"]["block_fp"] > 0
    assert sheet["tops_per_w"] < datasheet(plain)["tops_per_w"]

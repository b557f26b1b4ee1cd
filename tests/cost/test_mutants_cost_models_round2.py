"""Tests from a second mutation-testing round, over the component cost models.

The round mutated ``cimsim/cost/models.py`` (the adder tree, the converters' energy, leakage,
area and time, the row drivers and word lines, the cells' read energy, area and pitch, the
weighting network, the block floating-point unit, the buffer and the accumulator) and the
validation summaries of ``cimsim/cost/datasheet.py`` (``_summary``, ``validation_range``,
``class_rows``, ``_si``), functions the first round (``test_mutants_cost_estimator.py``) never
named, and kept every mutant that no existing test caught. Each test here pins one such
behaviour with a figure computed by hand from the models' docstrings and ``docs/cost-model.md``
and the table values, or with a metamorphic relation, never by calling the function under test
for its own expected value.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import cimsim
from cimsim.cost._prices import Calibration
from cimsim.cost.datasheet import validation_range
from cimsim.cost.models import ADCModel, BlockFPModel, BufferModel, CellModel, DACModel
from cimsim.cost.tables import tech_table
from cimsim.events import Action

PUBLISHED = Path(cimsim.__file__).parent / "presets" / "published"


def _physical(name: str, **tech) -> cimsim.ChipConfig:
    chip = cimsim.load_chip(name)
    return chip.replace(tech=chip.tech.replace(cost_model="physical", **tech))


class TestConverterLeakage:
    """``rram-22nm`` on the physical model: a 6-b SAR, (6 + 1) comparator cycles of 1 ns."""

    def test_leakage_is_a_fifth_of_the_dynamic_power_at_the_calibrated_conversion_time(self):
        chip = _physical("rram-22nm")
        plain = ADCModel(chip, None, Calibration())
        slow = ADCModel(chip, None, Calibration(adc_time_scale=2.0))
        assert plain.time_ns(Action.CONVERT, 6) == pytest.approx(7.0)
        assert slow.time_ns(Action.CONVERT, 6) == pytest.approx(14.0)
        for model, t_ns in ((plain, 7.0), (slow, 14.0)):
            convert = model.energy_pj(Action.CONVERT, 6)  # amplitude drive: no plane charge
            assert model.energy_pj(Action.LEAK, 6) == pytest.approx(0.2 * convert / t_ns)


class TestBitCellPitch:
    """``chih-isscc21``: a digital read-out of 6T SRAM cells at 22 nm, 1-b input slices. The
    bit-cell is 6 + 4 transistors (its product gate) at NeuroSim's 280 F^2 per 8 transistors."""

    def test_stored_weight_sets_grow_the_cell_not_one_bit_cells_pitch(self):
        chip = cimsim.load_chip(PUBLISHED / "chih-isscc21.toml")
        f2 = 280.0 * (6 + 4) / 8
        pitch = math.sqrt(f2) * 22e-3
        for sets in (1, 2):
            model = CellModel(chip.replace(tech=chip.tech.replace(weight_sets_stored=sets)))
            assert model.area_f2() == pytest.approx(f2 * sets)
            assert model.bit_pitch_um() == pytest.approx(pitch)
            # C V_dd^2 of a pitch-wide gate (1 fF/um), one stored bit, m(1) = 1 switching gate
            assert model.energy_pj(Action.READ, 1) == pytest.approx(pitch * 0.8**2 * 1e-3)


class TestTileBuffer:
    def test_isaacs_64_kib_buffer_is_its_0_083_mm2_at_8192_bits_a_kib(self):
        chip = cimsim.load_chip("isaac-32nm")  # tables at 32 nm, ISAAC's own node
        assert chip.array.tile_buffer_kib == 64.0
        assert BufferModel(chip).area_um2() == pytest.approx(0.083e6)
        one = chip.replace(array=chip.array.replace(tile_buffer_kib=1.0))
        assert BufferModel(one).area_um2() == pytest.approx(0.083e6 / 64)


class TestBlockFPNormaliser:
    def test_a_normaliser_of_other_than_a_power_of_two_bits_rounds_its_stages_up(self):
        # rram-22nm at 0.8 V (its own supply: no supply factor): an n = 20-bit normaliser is
        # n - 1 = 19 leading-zero-counter nodes and 20 x ceil(log2 20) = 20 x 5 shifter muxes,
        # each mux 12/28 of a full-adder bit
        chip = cimsim.load_chip("rram-22nm")
        chip = chip.replace(quant=chip.quant.replace(act_format="block_fp", act_exponent_bits=8))
        fa = tech_table(22.0, chip.tech.adc_band).accumulator_add_energy_pj_per_bit
        model = BlockFPModel(chip)
        assert model.energy_pj(Action.NORMALIZE, 20) == pytest.approx((19 + 20 * 5) * 12 / 28 * fa)
        assert model.energy_pj(Action.NORMALIZE, 3) == pytest.approx((2 + 3 * 2) * 12 / 28 * fa)


def _rows_csv(tmp_path: Path, ratios: list[float], readout: str = "analog",
              window: str = "stated") -> Path:
    lines = ["chip,point,metric,key,published,predicted,readout,window"]
    lines += [f"c{i},p,TOPS/W,tops_per_w,1.0,{r},{readout},{window}"
              for i, r in enumerate(ratios)]
    path = tmp_path / "rows.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class TestValidationRange:
    CLS = {"readout": "analog", "window": "stated"}

    def test_three_rows_of_a_class_give_a_span_of_published_over_predicted(self, tmp_path):
        # predicted / published 0.5, 1, 4: published / predicted 2, 1, 0.25, whose linear
        # quantiles at 0.1, 0.5, 0.9 are 0.25 + 0.2 x 0.75, 1 and 1 + 0.8 x 1
        out = validation_range(self.CLS, _rows_csv(tmp_path, [0.5, 1.0, 4.0]))
        w = out["tops_per_w"]
        assert w["n_rows"] == 3
        assert w["published_over_predicted"] == pytest.approx((0.4, 1.0, 1.8))
        assert out["tops_per_mm2"]["published_over_predicted"] is None  # no density row

    def test_two_rows_are_too_few(self, tmp_path):
        out = validation_range(self.CLS, _rows_csv(tmp_path, [0.5, 4.0]))
        assert out["tops_per_w"]["n_rows"] == 2
        assert out["tops_per_w"]["published_over_predicted"] is None


class TestSIPrefix:
    def test_the_prefix_follows_the_magnitude_whatever_the_sign(self):
        from cimsim.cost.datasheet import _si

        assert _si(2.5e9, "Hz") == "2.5 GHz"
        assert _si(-2.5e6, "Hz") == "-2.5 MHz"
        assert _si(-1500.0, "W") == "-1.5 kW"
        assert _si(999.0, "W") == "999 W"


class TestRowDriverAndReferenceCell:
    def test_a_row_drivers_action_lasts_the_read_pulse(self):
        chip = cimsim.load_chip("rram-22nm")  # t_read_ns = 10
        for action in (Action.PULSE, Action.INPUT_SHIFT, Action.WORDLINE):
            assert DACModel(chip).time_ns(action, 1) == 10.0
        assert DACModel(chip.replace(tech=chip.tech.replace(t_read_ns=3.0))).time_ns(
            Action.PULSE, 1) == 3.0

    def test_an_sram_ramps_reference_read_is_the_uncalibrated_bit_cell_read(self):
        # sram-65nm with an in-memory ramp on the physical model: the reference cell is an
        # 8T bit-cell, its read the tables' bit-line read at 65 nm times (0.85 / 0.8)^2; the
        # cell's calibration is not the converter's (energy_pj applies the adc factor)
        chip = cimsim.load_chip("sram-65nm")
        chip = chip.replace(adc=chip.adc.replace(kind="ramp", range_policy="calibrated"),
                            tech=chip.tech.replace(cost_model="physical"))
        read_pj = (tech_table(65.0, chip.tech.adc_band).sram_cim_bitcell_read_energy_fj * 1e-3
                   * (0.85 / 0.8) ** 2)
        for cal in (Calibration(), Calibration(energy={"cell": 2.0})):
            assert ADCModel(chip, None, cal).reference_read_pj() == pytest.approx(read_pj)

"""The analog phase's duration where a chip does not state it: column settling
(cimsim.cost.settling, docs/cost-model.md §3)."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

import cimsim
from cimsim.arrays.program import program
from cimsim.config import ChipConfig
from cimsim.cost import settling
from cimsim.cost.energy import chip_table
from cimsim.cost.latency import block_latency, compute_window_ns
from cimsim.cost.models import ADCModel, CellModel
from cimsim.errors import ConfigError
from cimsim.events import Action

PUBLISHED = Path(cimsim.__file__).parent / "presets" / "published"


def lee(**tech) -> ChipConfig:
    chip = cimsim.load_chip(PUBLISHED / "lee-vlsi21.toml")
    return chip.replace(tech=chip.tech.replace(**tech)) if tech else chip


def with_array(chip: ChipConfig, **array) -> ChipConfig:
    return chip.replace(array=chip.array.replace(**array))


def with_adc_bits(chip: ChipConfig, bits: int) -> ChipConfig:
    return chip.replace(adc=chip.adc.replace(bits=bits))


def test_on_resistance_known_answer_at_a_tabulated_node():
    # PTM 22-nm HP at its own 0.85 V: R = 1.54 x 0.85 V / (1500 uA/um x 0.5 um)
    assert settling.driver_on_resistance_ohm(22.0, 0.85, 0.5) == pytest.approx(
        1.54 * 0.85 / (1500e-6 * 0.5), rel=1e-12)
    # alpha-power law off the nominal supply: I_on x ((V - Vth) / (Vnom - Vth))^1.3
    i = 1120e-6 * ((0.9 - 0.1663941) / (1.1 - 0.1663941)) ** 1.3
    assert settling.driver_on_resistance_ohm(65.0, 0.9, 1.0) == pytest.approx(1.54 * 0.9 / i)


def test_settle_time_known_answer_for_lee():
    chip = lee()
    table = chip_table(chip)
    pitch = CellModel(chip, table).bit_pitch_um()
    # 10T cell: 280 F^2 x 10 / 8 = 350 F^2 at 28 nm
    assert pitch == pytest.approx(math.sqrt(350.0) * 0.028)
    c_ff = 1152 * (2.0 + 0.2 * pitch)  # a 2-fF capacitor and 0.2 fF/um of wire per row
    assert settling.column_capacitance_ff(chip, table) == pytest.approx(c_ff)
    # 28 nm between PTM 32 nm and 22 nm (linear in node)
    v_nom, v_th, i_on = 0.88, 0.1944951 + 0.4 * (0.2089006 - 0.1944951), 1446.0
    r = 1.54 * 0.8 / (i_on * ((0.8 - v_th) / (v_nom - v_th)) ** 1.3 * 1e-6 * pitch)
    expect_ns = math.log(2**9) * r * c_ff * 1e-6
    assert settling.settle_time_ns(chip, table) == pytest.approx(expect_ns, rel=1e-9)
    assert 25.0 < expect_ns < 35.0  # 29 ns: longer than the 8-b SAR's 9 ns


def test_current_domain_column_is_wire_and_junction():
    chip = cimsim.load_chip(PUBLISHED / "wang-vlsi22.toml")
    chip = chip.replace(tech=chip.tech.replace(compute_domain="current"))
    table = chip_table(chip)
    pitch = CellModel(chip, table).bit_pitch_um()
    assert settling.column_capacitance_ff(chip, table) == pytest.approx(
        chip.array.n_rows * (0.2 + 1.0) * pitch)


@pytest.mark.parametrize("rows", [(64, 128), (256, 1152), (1152, 2304)])
def test_more_rows_settle_longer(rows):
    a, b = (with_array(lee(), n_rows=n) for n in rows)
    assert settling.settle_time_ns(a, chip_table(a)) < settling.settle_time_ns(b, chip_table(b))


@pytest.mark.parametrize("bits", [(3, 4), (4, 6), (6, 8), (8, 10)])
def test_more_bits_settle_longer(bits):
    a, b = (with_adc_bits(lee(), n) for n in bits)
    ratio = settling.settle_time_ns(b, chip_table(b)) / settling.settle_time_ns(a, chip_table(a))
    assert ratio == pytest.approx((bits[1] + 1) / (bits[0] + 1))


def test_lower_supply_settles_longer():
    t = [settling.settle_time_ns(c, chip_table(c)) for c in (lee(vdd_v=v) for v in (0.6, 0.8, 1.0))]
    assert t[0] > t[1] > t[2]


def test_supply_at_the_threshold_is_a_config_error():
    with pytest.raises(ConfigError, match="vdd_v"):
        settling.driver_on_resistance_ohm(22.0, 0.2, 0.5)


def test_unstated_window_is_the_fitted_multiple_of_the_settle_and_a_stated_one_is_kept():
    chip = lee()
    settle = settling.settle_time_ns(chip, chip_table(chip))
    assert not chip.tech.window_stated
    assert compute_window_ns(chip) == pytest.approx(settling.WINDOW_OVER_SETTLING * settle)
    # stated and longer than the settle: kept as stated
    assert compute_window_ns(lee(window_stated=True, t_read_ns=500.0)) == 500.0
    assert compute_window_ns(lee(window_stated=True, t_read_ns=800.0,
                                 t_integrate_ns=300.0)) == 300.0
    # stated and shorter: a column cannot run faster than it settles (the bare settling is
    # the bound; the fitted ratio only stands in for a window nobody stated)
    assert compute_window_ns(lee(window_stated=True, t_read_ns=1.0)) == pytest.approx(settle)


def test_the_step_and_the_converter_rate_follow_the_predicted_window():
    chip = lee()
    window = settling.WINDOW_OVER_SETTLING * settling.settle_time_ns(chip, chip_table(chip))
    adc = ADCModel(chip)
    assert adc.time_ns(Action.CONVERT) == pytest.approx(9.0)  # shorter than the window
    assert adc.sample_rate_hz() == pytest.approx(1e9 / window)
    w = 2 * np.random.default_rng(0).integers(0, 2, size=(16, 1152)) - 1  # binary: ±1
    d = block_latency(program(w, chip), n_vectors=3)
    assert d["t_step_ns"] == pytest.approx(window)
    assert d["latency_ns"] == pytest.approx(3 * d["n_planes"] * window + d["tail_ns"])


def test_window_over_settling_is_the_fit_over_the_published_chips():
    chips = {p.stem: cimsim.load_chip(p) for p in sorted(PUBLISHED.glob("*.toml"))}
    fit, ratios = settling.fit_window_over_settling(
        {k: c for k, c in chips.items() if k in settling.WINDOW_FIT_CHIPS})
    # the chips whose stated window enters: amplitude-driven analog columns, those of the fit
    # (chips added later that state one, Khwa et al. 2018, Wu et al. 2023, Chen et al. 2023,
    # the CICC 2021 22-nm multiplier, the JSSC 2023 28-nm macro, the three 22-nm ReRAM
    # macros and the 55-nm ReRAM macro, are held out to check it)
    assert sorted(ratios) == ["chiu-jssc20", "jia-jssc20", "wang-vlsi22"]
    assert sorted(k for k, c in chips.items() if settling.in_window_fit(c)) == [
        "aimc-cicc21", "chen-isscc23", "chiu-jssc20", "jia-jssc20", "khwa-isscc18",
        "nmux-jssc23", "rram2mb-natelec20", "rram4mb-natelec21", "rram8mb-jssc23",
        "wang-vlsi22", "wu-jssc23", "xue-jssc20"]
    # hand check: the geometric mean of the three ratios
    assert fit == pytest.approx(math.prod(ratios.values()) ** (1 / 3), rel=1e-12)
    assert settling.WINDOW_OVER_SETTLING == pytest.approx(fit, rel=0.01)
    # a chip that states no window, a temporal drive or a digital readout does not enter
    assert not settling.in_window_fit(chips["lee-vlsi21"])
    assert not settling.in_window_fit(chips["sinangil-jssc21"])
    assert not settling.in_window_fit(chips["chih-isscc21"])
    with pytest.raises(ValueError, match="no chip states a window"):
        settling.fit_window_over_settling([chips["lee-vlsi21"]])


@pytest.mark.parametrize("preset", ["rram-22nm", "sram-65nm", "isaac-32nm", "jia-jssc20"])
def test_tables_presets_keep_their_stated_window(preset):
    chip = cimsim.load_chip(preset)
    assert not settling.applies(chip)
    assert compute_window_ns(chip) == chip.tech.t_read_ns


def test_digital_readout_has_no_analog_phase():
    chip = cimsim.load_chip(PUBLISHED / "chih-isscc21.toml")
    assert not settling.applies(chip)
    assert compute_window_ns(chip) == chip.tech.t_read_ns


def _stated_analog(path: Path) -> bool:
    chip = cimsim.load_chip(path)
    return settling.applies(chip) and chip.tech.window_stated


STATED = [p for p in sorted(PUBLISHED.glob("*.toml")) if _stated_analog(p)]


def test_the_published_chips_with_a_stated_analog_window():
    assert {p.stem for p in STATED} == {"chiu-jssc20", "hermes-jssc22", "jia-jssc20",
                                        "khwa-isscc18", "sinangil-jssc21", "wan-nature22",
                                        "wang-vlsi22",
                                        # HERMES's 128-ns PWM window on Le Gallo's 64 cores
                                        "legallo-natelec23",
                                        # 6.6 ns per 8-b MAC over 8 bit-serial reads; the
                                        # 364-MHz cycle as ZigZag-IMC reads it
                                        "wu-jssc23", "chen-isscc23",
                                        # the 22.5-MHz and 7.2-ns cycles as ZigZag-IMC reads
                                        # them
                                        "aimc-cicc21", "nmux-jssc23",
                                        # 15.2 and 14.4 ns per 8-b dot product over 8
                                        # bit-serial reads
                                        "rram4mb-natelec21", "rram8mb-jssc23",
                                        # the binary dot product's 9.2-ns latency
                                        "rram2mb-natelec20",
                                        # 14.6 ns per 2-b MAC over 2 bit-serial reads
                                        "xue-jssc20"}


@pytest.mark.parametrize("path", STATED, ids=lambda p: p.stem)
def test_no_published_window_is_shorter_than_its_predicted_settle(path):
    # a stated window shorter than the predicted settle would falsify the model
    chip = cimsim.load_chip(path)
    tech = chip.tech
    stated = tech.t_read_ns if tech.t_integrate_ns is None else tech.t_integrate_ns
    assert stated >= settling.settle_time_ns(chip, chip_table(chip))


def test_window_stated_round_trips_and_is_validated():
    chip = lee()
    assert ChipConfig.from_dict(tomllib.loads(chip.to_toml())) == chip
    assert "window_stated = false" in chip.to_toml()
    with pytest.raises(ConfigError, match="window_stated"):
        chip.tech.replace(window_stated="no")
    assert cimsim.load_chip("rram-22nm").tech.window_stated  # default: stated

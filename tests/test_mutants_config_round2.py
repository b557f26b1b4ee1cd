"""Tests from a second mutation round over ``cimsim/config.py``: the validators' bounds and
coercions, the derived properties, ``replace``, the TOML dump and load and the preset loading
that the first round (``tests/test_mutants_config_cli.py``) left unpinned.

Each test pins behaviour that a mutant of ``config.py`` changed without any other test
noticing (a bound moved one step, a check dropped, a derived count rounded the other way, a
field's default rule lost on load), with hand-computed answers: the value at a bound builds,
the next one is a ConfigError naming the field. All run in well under a second each.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from cimsim.config import (
    ADCConfig,
    ArrayConfig,
    ChipConfig,
    DACConfig,
    DeviceConfig,
    NoiseConfig,
    QuantConfig,
    TechConfig,
    adder_tree_bits,
    load_chip,
    priced_resistive,
    ripple_guard_columns,
    set_overrides,
    unstated_inputs,
    without_set_note,
)
from cimsim.errors import ConfigError


# ---------------------------------------------------------------------------------------------
# ArrayConfig
# ---------------------------------------------------------------------------------------------
def test_arrays_per_tile_and_the_tile_buffer_accept_their_upper_bounds():
    assert ArrayConfig(arrays_per_tile=1 << 16).arrays_per_tile == 65536
    with pytest.raises(ConfigError, match=r"ArrayConfig\.arrays_per_tile"):
        ArrayConfig(arrays_per_tile=(1 << 16) + 1)
    assert ArrayConfig(tile_buffer_kib=float(1 << 20)).tile_buffer_kib == 1048576.0
    with pytest.raises(ConfigError, match=r"ArrayConfig\.tile_buffer_kib"):
        ArrayConfig(tile_buffer_kib=float(1 << 20) + 1)


def test_adcs_per_array_rounds_a_partial_group_of_columns_up():
    assert ArrayConfig(n_cols=10, cols_per_adc=4).adcs_per_array == 3  # ceil(10 / 4)
    assert ArrayConfig(n_cols=8, cols_per_adc=4).adcs_per_array == 2


# ---------------------------------------------------------------------------------------------
# _float_in, _int_in, _bool
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["inf", "+inf", " INF "])
def test_an_infinite_on_off_ratio_written_as_json_holds_it_is_read(text):
    assert DeviceConfig(on_off_ratio=text).on_off_ratio == math.inf


@pytest.mark.parametrize("name", ["cap_density_ff_per_um2", "wordline_driver_cap_ff"])
def test_a_zero_or_in_range_field_takes_zero_and_its_lower_bound(name):
    assert getattr(TechConfig(**{name: 1e-3}), name) == 1e-3
    assert getattr(TechConfig(**{name: 0}), name) == 0.0
    with pytest.raises(ConfigError, match=rf"TechConfig\.{name}"):
        TechConfig(**{name: 9e-4})


# (accepted at the bound, refused one step beyond, the field the refusal names)
EDGES = [
    (lambda: DeviceConfig(retention_sigma_lsb=100.0),
     lambda: DeviceConfig(retention_sigma_lsb=100.5), "DeviceConfig.retention_sigma_lsb"),
    (lambda: DeviceConfig(g_max_us=1e6), lambda: DeviceConfig(g_max_us=1.1e6),
     "DeviceConfig.g_max_us"),
    (lambda: DeviceConfig(variation="gaussian", variation_sigma=10.0),
     lambda: DeviceConfig(variation="gaussian", variation_sigma=10.5),
     "DeviceConfig.variation_sigma"),
    (lambda: DeviceConfig(drift_nu_mean=(0.0,)), lambda: DeviceConfig(drift_nu_mean=(-0.01,)),
     "DeviceConfig.drift_nu_mean"),
    (lambda: ADCConfig(percentile=100.0), lambda: ADCConfig(percentile=100.01),
     "ADCConfig.percentile"),
    (lambda: ADCConfig(n_sigma=1e-9), lambda: ADCConfig(n_sigma=0.0), "ADCConfig.n_sigma"),
    (lambda: ADCConfig(gain_error=-0.5), lambda: ADCConfig(gain_error=-0.51),
     "ADCConfig.gain_error"),
    (lambda: ADCConfig(gain_error=0.5), lambda: ADCConfig(gain_error=0.51),
     "ADCConfig.gain_error"),
    (lambda: ADCConfig(comparator_noise_lsb=0.0), lambda: ADCConfig(comparator_noise_lsb=-0.1),
     "ADCConfig.comparator_noise_lsb"),
    (lambda: ADCConfig(t_conversion_ns=1e-6), lambda: ADCConfig(t_conversion_ns=5e-7),
     "ADCConfig.t_conversion_ns"),
    (lambda: NoiseConfig(read_noise_rel=10.0), lambda: NoiseConfig(read_noise_rel=10.5),
     "NoiseConfig.read_noise_rel"),
    (lambda: NoiseConfig(saturation_fraction=1e-9),
     lambda: NoiseConfig(saturation_fraction=0.0), "NoiseConfig.saturation_fraction"),
    (lambda: TechConfig(vdd_v=5.0, v_read_v=0.2), lambda: TechConfig(vdd_v=5.1),
     "TechConfig.vdd_v"),
    (lambda: TechConfig(clock_mhz=1e-3), lambda: TechConfig(clock_mhz=9e-4),
     "TechConfig.clock_mhz"),
    (lambda: TechConfig(t_read_ns=1e9), lambda: TechConfig(t_read_ns=1.1e9),
     "TechConfig.t_read_ns"),
    (lambda: TechConfig(devices_per_cell=64), lambda: TechConfig(devices_per_cell=65),
     "TechConfig.devices_per_cell"),
    (lambda: TechConfig(weight_sets_stored=1024), lambda: TechConfig(weight_sets_stored=1025),
     "TechConfig.weight_sets_stored"),
    (lambda: TechConfig(cell_area_f2=1.0), lambda: TechConfig(cell_area_f2=0.9),
     "TechConfig.cell_area_f2"),
    (lambda: TechConfig(retention_ns=1e12), lambda: TechConfig(retention_ns=1.1e12),
     "TechConfig.retention_ns"),
    (lambda: TechConfig(cap_unit_ff=0.01), lambda: TechConfig(cap_unit_ff=0.009),
     "TechConfig.cap_unit_ff"),
    (lambda: TechConfig(wordline_cap_ff_per_cell=1e-3),
     lambda: TechConfig(wordline_cap_ff_per_cell=9e-4), "TechConfig.wordline_cap_ff_per_cell"),
    # the swing a word-line driver raises is wordline_v where it is given, not vdd_v
    (lambda: TechConfig(vdd_v=0.8, wordline_v=1.0, wordline_high_v=1.0),
     lambda: TechConfig(vdd_v=0.8, wordline_v=1.0, wordline_high_v=0.9),
     "TechConfig.wordline_high_v"),
    (lambda: QuantConfig(act_percentile=50.001), lambda: QuantConfig(act_percentile=50.0),
     "QuantConfig.act_percentile"),
    (lambda: ChipConfig(input_bits=16), lambda: ChipConfig(input_bits=17),
     "ChipConfig.input_bits"),
    # the third round (tests/test_mutants_config_round3.py): the comment names the mutant
    # TechConfig: _float_in(self, "cap_unit_ff", 0.01, 1000.0): hi 1000 -> 10000
    (lambda: TechConfig(cap_unit_ff=1000.0), lambda: TechConfig(cap_unit_ff=1001.0),
     "TechConfig.cap_unit_ff"),
    # NoiseConfig: _float_in(self, "ir_drop_beta", 0.0): lo 0 -> -1
    (lambda: NoiseConfig(ir_drop_beta=0.0), lambda: NoiseConfig(ir_drop_beta=-0.01),
     "NoiseConfig.ir_drop_beta"),
    # ACT_EXPONENT_BITS = (2, 8): lo 2 -> 3
    (lambda: QuantConfig(act_format="block_fp", act_exponent_bits=2),
     lambda: QuantConfig(act_format="block_fp", act_exponent_bits=1),
     "QuantConfig.act_exponent_bits"),
    # QuantConfig: _float_in(self, "smooth_alpha", 0.0, 1.0): hi 1 -> 2
    (lambda: QuantConfig(smooth_alpha=1.0), lambda: QuantConfig(smooth_alpha=1.01),
     "QuantConfig.smooth_alpha"),
    # TechConfig: _int_in(self, "pipeline_registers_per_column", 1, ...): lo 1 -> 0
    (lambda: TechConfig(pipeline_registers_per_column=1),
     lambda: TechConfig(pipeline_registers_per_column=0),
     "TechConfig.pipeline_registers_per_column"),
    # TechConfig: _float_in(self, "wordline_v", 0.0, 5.0, lo_open=True): lo_open dropped
    (lambda: TechConfig(wordline_v=1e-9), lambda: TechConfig(wordline_v=0.0),
     "TechConfig.wordline_v"),
    # TechConfig: read_supply_v and wordline_high_v in (0, 5] V: hi 5 -> 6
    (lambda: TechConfig(read_supply_v=5.0), lambda: TechConfig(read_supply_v=5.1),
     "TechConfig.read_supply_v"),
    (lambda: TechConfig(wordline_high_v=5.0), lambda: TechConfig(wordline_high_v=5.1),
     "TechConfig.wordline_high_v"),
    # TechConfig: _float_in(self, "t_integrate_ns", MIN_TIME_NS, ...): lo 1e-6 -> 0
    (lambda: TechConfig(t_integrate_ns=1e-6), lambda: TechConfig(t_integrate_ns=5e-7),
     "TechConfig.t_integrate_ns"),
    # TechConfig: clock_mhz hi 1e6 -> 1e5, v_read_v hi 5 -> 4, wordline_cap_ff_per_cell and
    # cap_density_ff_per_um2 hi 1000 -> 10000
    (lambda: TechConfig(clock_mhz=1e6), lambda: TechConfig(clock_mhz=1.1e6),
     "TechConfig.clock_mhz"),
    (lambda: TechConfig(v_read_v=5.0), lambda: TechConfig(v_read_v=5.1), "TechConfig.v_read_v"),
    (lambda: TechConfig(wordline_cap_ff_per_cell=1000.0),
     lambda: TechConfig(wordline_cap_ff_per_cell=1001.0), "TechConfig.wordline_cap_ff_per_cell"),
    (lambda: TechConfig(cap_density_ff_per_um2=1000.0),
     lambda: TechConfig(cap_density_ff_per_um2=1001.0), "TechConfig.cap_density_ff_per_um2"),
    # QuantConfig: act_percentile in (50, 100]: hi 100 -> 101
    (lambda: QuantConfig(act_percentile=100.0), lambda: QuantConfig(act_percentile=100.01),
     "QuantConfig.act_percentile"),
    # ADCConfig: t_conversion_ns in [MIN_TIME_NS, MAX_TIME_NS]: hi dropped
    (lambda: ADCConfig(t_conversion_ns=1e9), lambda: ADCConfig(t_conversion_ns=1.1e9),
     "ADCConfig.t_conversion_ns"),
    # DeviceConfig: retention_sigma_lsb in [0, 100]: lo 0 -> -1
    (lambda: DeviceConfig(retention_sigma_lsb=0.0),
     lambda: DeviceConfig(retention_sigma_lsb=-0.01), "DeviceConfig.retention_sigma_lsb"),
    # DeviceConfig: variation_sigma in [0, 10]: lo 0 -> -1
    (lambda: DeviceConfig(variation="gaussian", variation_sigma=0.0),
     lambda: DeviceConfig(variation="gaussian", variation_sigma=-0.01),
     "DeviceConfig.variation_sigma"),
    # DeviceConfig: p_stuck_on in [0, 1]: hi 1 -> 2 (the sum's check then named the sum)
    (lambda: DeviceConfig(p_stuck_on=1.0), lambda: DeviceConfig(p_stuck_on=1.5),
     "DeviceConfig.p_stuck_on = 1.5"),
]


@pytest.mark.parametrize(("ok", "bad", "field"), EDGES,
                         ids=[f"{i:02d}-{e[2]}" for i, e in enumerate(EDGES)])
def test_a_value_at_its_bound_is_accepted_and_one_step_beyond_refused(ok, bad, field):
    ok()
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        bad()


# combinations a section refuses, and the field each refusal names
REFUSED = [
    (lambda: DeviceConfig(drift_nu_sigma=(0.1,)), "DeviceConfig.drift_nu_sigma"),
    (lambda: DeviceConfig(cell="mram", bits_per_cell=2), "DeviceConfig.bits_per_cell"),
    (lambda: DACConfig(shift_unsigned_inputs=True, signed_inputs="two_pass"),
     "DACConfig.signed_inputs"),
    (lambda: DACConfig(bits=True), "DACConfig.bits"),
    (lambda: ADCConfig(kind="digital", t_conversion_ns=5.0), "ADCConfig.t_conversion_ns"),
    (lambda: NoiseConfig(poly_coeffs=(True,)), "NoiseConfig.poly_coeffs"),
    (lambda: QuantConfig(act_format="block_fp", act_zero_point=True),
     "QuantConfig.act_zero_point"),
]


# ---------------------------------------------------------------------------------------------
# DeviceConfig's derived values
# ---------------------------------------------------------------------------------------------
def test_off_conductance_and_level_step_by_hand():
    # 2-b cells (3 steps), on/off 7: g_min = g_max / 7, off-state (4-1)/(7-1) = 0.5 cell-LSB
    dev = DeviceConfig(g_max_us=14.0, on_off_ratio=7.0)
    assert dev.g_off_lsb == pytest.approx(0.5)
    assert dev.g_lsb_us == pytest.approx((14.0 - 2.0) / 3)
    assert DeviceConfig(g_max_us=9.0).g_lsb_us == pytest.approx(3.0)  # g_min 0 at inf
    assert DeviceConfig().g_off_lsb == 0.0


def test_ages_varies_and_ideal_read_each_field():
    assert not DeviceConfig().ages
    assert DeviceConfig(read_noise_q_s=(0.05,)).ages
    assert DeviceConfig(drift_compensation="global").ages
    assert DeviceConfig(retention_sigma_lsb=0.1).ages
    assert not DeviceConfig(variation="lognormal", variation_sigma=0.0).varies
    assert DeviceConfig(variation="lognormal", variation_sigma=0.1).varies
    assert DeviceConfig().ideal
    assert not DeviceConfig(p_stuck_off=0.01).ideal
    assert not DeviceConfig(p_stuck_on=0.01).ideal


# ---------------------------------------------------------------------------------------------
# the digital read-out
# ---------------------------------------------------------------------------------------------
def test_adder_tree_bits_by_hand():
    # sums of R products of a d-bit slice and a bit, either sign: 2 R (2^d - 1) + 1 values
    assert adder_tree_bits(256) == 10  # 513 values
    assert adder_tree_bits(4) == 4  # 9 values
    assert adder_tree_bits(4, 2) == 5  # 25 values
    assert adder_tree_bits(1) == 2  # -1, 0, 1


_SRAM_DIGITAL = dict(device=DeviceConfig(cell="sram", bits_per_cell=1),
                     adc=ADCConfig(kind="digital", bits=8),
                     array=ArrayConfig(n_rows=16, n_cols=16, cols_per_adc=1))


def test_a_digital_read_out_takes_the_exact_width_and_refuses_what_is_not_exact():
    assert ChipConfig(**{**_SRAM_DIGITAL, "adc": ADCConfig(kind="digital", bits=6)})  # 33 sums
    with pytest.raises(ConfigError, match=r"ADCConfig\.range_policy"):
        ChipConfig(**{**_SRAM_DIGITAL, "adc": ADCConfig(kind="digital", full_scale_factor=2.0)})
    # a bit-cell's off-state would be summed: its on/off ratio stays infinite
    with pytest.raises(ConfigError, match=r"DeviceConfig\.on_off_ratio"):
        ChipConfig(**{**_SRAM_DIGITAL,
                      "device": DeviceConfig(cell="sram", bits_per_cell=1, on_off_ratio=100.0)})
    # a sensed resistive cell is read against a reference: its variation is allowed, a
    # bit-cell's is not
    rram = DeviceConfig(cell="rram", bits_per_cell=1, variation="lognormal",
                        variation_sigma=0.1)
    assert ChipConfig(**{**_SRAM_DIGITAL, "device": rram}).device.varies
    with pytest.raises(ConfigError, match=r"DeviceConfig\.variation_sigma"):
        ChipConfig(**{**_SRAM_DIGITAL, "device": DeviceConfig(
            cell="sram", bits_per_cell=1, variation="gaussian", variation_sigma=0.1)})


def test_a_ripple_column_needs_bit_cells_and_one_column_per_read_out():
    ripple = TechConfig(digital_column="ripple")
    with pytest.raises(ConfigError, match=r"TechConfig\.digital_column"):
        ChipConfig(**{**_SRAM_DIGITAL, "device": DeviceConfig(cell="rram", bits_per_cell=1)},
                   tech=ripple)
    with pytest.raises(ConfigError, match=r"ArrayConfig\.cols_per_adc"):
        ChipConfig(**{**_SRAM_DIGITAL, "array": ArrayConfig(n_rows=16, n_cols=16,
                                                            cols_per_adc=2)}, tech=ripple)


def test_ripple_guard_columns_round_the_log_of_the_rows_up():
    # 100 rows: a sum needs ceil(log2 100) = 7 more bits down the column (Colonnade's 128: 7)
    chip = ChipConfig(**{**_SRAM_DIGITAL, "array": ArrayConfig(n_rows=100, n_cols=16,
                                                               cols_per_adc=1)},
                      tech=TechConfig(digital_column="ripple"))
    assert ripple_guard_columns(chip) == 7
    assert ripple_guard_columns(chip.replace(tech=TechConfig())) == 0


# combinations a chip refuses, and the field each refusal names
CHIP_REFUSED = [
    (lambda: ChipConfig(weight_bits=1, weight_encoding="binary",
                        device=DeviceConfig(bits_per_cell=1),
                        array=ArrayConfig(group_packing="diagonal")),
     "ArrayConfig.group_packing"),
    (lambda: ChipConfig(array=ArrayConfig(slice_readout="analog"),
                        noise=NoiseConfig(nonlinearity="saturating")), "ArrayConfig.slice_readout"),
    # two conversion columns per output (2-b differential weights read out digitally)
    (lambda: ChipConfig(weight_bits=2, differential_readout="digital", dac=DACConfig(bits=None),
                        adc=ADCConfig(placement="layer_output")), "ADCConfig.placement"),
    (lambda: ChipConfig(quant=QuantConfig(act_zero_point=True),
                        dac=DACConfig(shift_unsigned_inputs=True)),
     "DACConfig.shift_unsigned_inputs"),
    (lambda: ChipConfig(quant=QuantConfig(act_format="block_fp"),
                        dac=DACConfig(shift_unsigned_inputs=True)),
     "DACConfig.shift_unsigned_inputs"),
    (lambda: ChipConfig(device=DeviceConfig(cell="edram", bits_per_cell=1),
                        tech=TechConfig(cell_kind="rram_1t1r")), "TechConfig.cell_kind"),
    (lambda: ChipConfig(tech=TechConfig(compute_domain="charge", read_supply_v=0.8)),
     "TechConfig.read_supply_v"),
]


def test_layer_output_takes_one_conversion_column():
    chip = ChipConfig(weight_bits=2, dac=DACConfig(bits=None),
                      adc=ADCConfig(placement="layer_output"))  # one analog pair, one cell
    assert chip.adc.placement.value == "layer_output"


def test_the_cost_cell_counts_as_resistive_under_the_physical_model_only():
    tables = ChipConfig(device=DeviceConfig(cell="ideal"), tech=TechConfig(cell_kind="rram_1t1r"))
    assert not priced_resistive(tables)
    assert priced_resistive(tables.replace(tech=tables.tech.replace(cost_model="physical")))


# ---------------------------------------------------------------------------------------------
# from_dict's default rules, load_chip
# ---------------------------------------------------------------------------------------------
def test_a_digital_read_out_of_whole_inputs_gets_a_width_over_16_bits():
    # 256 rows of 8-b inputs (dac 'all'): 2·256·255 + 1 = 130561 sums, 17 b
    chip = ChipConfig.from_dict({"device": {"cell": "sram"}, "dac": {"bits": "all"},
                                 "adc": {"kind": "digital"}})
    assert chip.adc.bits == 17 == adder_tree_bits(256, 8)


def test_a_digital_read_out_alone_gets_one_bit_cells():
    assert ChipConfig.from_dict({"device": {"cell": "rram"}, "dac": {"bits": 1},
                                 "adc": {"kind": "digital"}}).device.bits_per_cell == 1


def test_a_physical_description_that_writes_window_stated_keeps_it():
    tech = {"cost_model": "physical", "window_stated": True}
    assert ChipConfig.from_dict({"tech": tech}).tech.window_stated
    # a digital read-out's step is its clock: no window to predict
    digital = {"device": {"cell": "sram"}, "adc": {"kind": "digital"},
               "tech": {"cost_model": "physical"}}
    assert ChipConfig.from_dict(digital).tech.window_stated


def test_a_physical_only_field_written_at_its_default_is_not_warned_about():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ChipConfig.from_dict({"tech": {"cap_unit_ff": 1.0, "devices_per_cell": 1}})
    with pytest.warns(UserWarning, match=r"\[tech\] cap_unit_ff is read by the physical"):
        ChipConfig.from_dict({"tech": {"cap_unit_ff": 2.0}})


def test_a_preset_s_name_wins_over_a_file_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ideal").write_text("not toml [")
    assert load_chip("ideal") == load_chip(Path(resources.files("cimsim") / "presets"
                                                / "ideal.toml"))


def test_a_chip_file_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xef\xbb\xbfname = \"bom\"\n")
    assert load_chip(path).name == "bom"


def test_a_number_beyond_a_float_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match=r"NoiseConfig\.thermal_sigma_lsb"):
        NoiseConfig(thermal_sigma_lsb=10**400)


def test_array_slots_are_the_arrays_times_the_stored_weight_sets():
    chip = ChipConfig(array=ArrayConfig(n_tiles=2, arrays_per_tile=3),
                      tech=TechConfig(weight_sets_stored=4))
    assert chip.array.n_arrays == 6 and chip.array_slots == 24


CHIP_REFUSED_MORE = [
    (lambda: ChipConfig(device=DeviceConfig(cell="sram", bits_per_cell=1),
                        tech=TechConfig(devices_per_cell=2)), "TechConfig.devices_per_cell"),
    (lambda: ChipConfig(tech=TechConfig(input_drive="bit_planes")), "DACConfig.bits"),
    (lambda: ChipConfig(**{**_SRAM_DIGITAL, "dac": DACConfig(bits=None)},
                        tech=TechConfig(input_drive="bit_planes")), "TechConfig.input_drive"),
    (lambda: ChipConfig(tech=TechConfig(pipeline_registers_per_column=2)),
     "TechConfig.pipeline_registers_per_column"),
    # 8-b inputs in two 4-b planes: two conversions per output
    (lambda: ChipConfig(weight_bits=2, dac=DACConfig(bits=4),
                        adc=ADCConfig(placement="layer_output")), "DACConfig.bits"),
    (lambda: ChipConfig(weight_bits=1, weight_encoding="binary",
                        device=DeviceConfig(bits_per_cell=2)), "DeviceConfig.bits_per_cell"),
]


ALL_REFUSED = REFUSED + CHIP_REFUSED + CHIP_REFUSED_MORE


@pytest.mark.parametrize(("bad", "field"), ALL_REFUSED,
                         ids=[f"{i:02d}-{e[1]}" for i, e in enumerate(ALL_REFUSED)])
def test_a_combination_a_config_cannot_hold_is_refused_naming_the_field(bad, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        bad()


# ---------------------------------------------------------------------------------------------
# overrides and the note they leave in the description
# ---------------------------------------------------------------------------------------------
def test_overrides_in_every_form_python_gives_them():
    assert load_chip("ideal", overrides="adc.bits=5").adc.bits == 5  # one text, not letters
    gen = load_chip("ideal", overrides=(o for o in ["adc.bits=5"]))  # a generator, read once
    assert gen.adc.bits == 5 and gen.description.endswith(" (with --set adc.bits=5)")
    assert load_chip("ideal", overrides={"adc.bits": np.int64(5)}).adc.bits == 5
    assert load_chip("ideal", overrides={"noise.poly_coeffs": (0.1, 0.2)}
                     ).noise.poly_coeffs == (0.1, 0.2)


def test_the_set_note_is_cut_before_each_dotted_or_top_level_name():
    chip = load_chip("ideal", overrides=["adc.bits=5", "noise.thermal_sigma_lsb=0.5",
                                         "weight_bits=4"])
    assert set_overrides(chip.description) == ["adc.bits=5", "noise.thermal_sigma_lsb=0.5",
                                               "weight_bits=4"]
    assert without_set_note(chip.description) == load_chip("ideal").description
    # a description that only holds the words, not at its end, is no note
    text = "a chip (with --set adc.bits=5) revised"
    assert without_set_note(text) == text and set_overrides(text) == []


# ---------------------------------------------------------------------------------------------
# unstated_inputs and the physical-only warning
# ---------------------------------------------------------------------------------------------
def _unstated(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return unstated_inputs(path)


def test_unstated_inputs_follow_the_converter_and_the_column(tmp_path):
    digital = _unstated(tmp_path, '[device]\ncell = "sram"\n[adc]\nkind = "digital"\n')
    assert not any(s.startswith("adc.bits") for s in digital)
    assert "tech.clock_mhz = 1000.0" in digital
    tdc = _unstated(tmp_path, '[adc]\nkind = "tdc"\n')
    assert "adc.tdc_architecture = 'counter'" in tdc
    single = _unstated(tmp_path, '[adc]\nkind = "single_slope"\n')
    assert "tech.clock_mhz = 1000.0" in single
    assert "tech.clock_mhz = 1000.0" not in _unstated(tmp_path, 'name = "c"\n')
    charge = _unstated(tmp_path, '[tech]\ncost_model = "physical"\ncompute_domain = "charge"\n')
    assert "tech.cap_unit_ff = 1.0" in charge


def test_a_temporal_input_drive_under_the_tables_model_is_warned_about():
    for drive in ("pulse_width", "pulse_count"):
        with pytest.warns(UserWarning, match=r"\[tech\] input_drive is read by the physical"):
            ChipConfig.from_dict({"tech": {"input_drive": drive}})


# ---------------------------------------------------------------------------------------------
# a real bug this round found, fixed
# ---------------------------------------------------------------------------------------------
class TestNumpyNumbersInTheDacAndThePolynomial:
    """Every integer and number field takes NumPy's (``_is_int``/``_is_real``), stored as
    Python's, as the per-level device tables and ``adc.bits`` do. ``DACConfig.bits`` checked
    ``isinstance(bits, int)`` and ``NoiseConfig.poly_coeffs`` ``isinstance(c, (int, float))``,
    so a sweep's ``np.arange`` value was refused with a message that said it is allowed ("an
    integer in [1, 16]" for 4)."""

    def test_dac_bits_take_a_numpy_integer(self):
        dac = DACConfig(bits=np.int64(4))
        assert dac.bits == 4 and type(dac.bits) is int

    def test_poly_coeffs_take_numpy_numbers(self):
        noise = NoiseConfig(poly_coeffs=(np.float32(0.5), np.int64(1)))
        assert noise.poly_coeffs == (0.5, 1.0)

    def test_tech_tables_and_calibration_factors_take_numpy_numbers_and_refuse_bools(self):
        # they took Python's int and float only (np.float64 as a float subclass): np.float32
        # was refused, and True was taken as 1
        from cimsim.cost import Calibration
        from cimsim.cost.tables import tech_table

        tech = tech_table(32)
        t = dataclasses.replace(tech, bus_energy_pj_per_bit=np.float32(0.5))
        assert t.bus_energy_pj_per_bit == 0.5 and type(t.bus_energy_pj_per_bit) is float
        with pytest.raises(ConfigError, match="bus_energy_pj_per_bit"):
            dataclasses.replace(tech, bus_energy_pj_per_bit=True)
        cal = Calibration(energy={"adc": np.float32(2.0)})
        assert cal.energy["adc"] == 2.0 and type(cal.energy["adc"]) is float
        with pytest.raises(ValueError, match="adc"):
            Calibration(energy={"adc": True})

    def test_an_adc_time_scale_and_an_evaluation_batch_dim_take_numpy_numbers(self):
        # adc_time_scale took True as 1; accuracy(batch_dim=np.int64(0)) was refused where
        # deploy(batch_dim=np.int64(0)) is taken
        import torch
        from torch import nn

        from cimsim.cost import Calibration
        from cimsim.evaluate import accuracy

        cal = Calibration(adc_time_scale=np.float32(2.0))
        assert cal.adc_time_scale == 2.0 and type(cal.adc_time_scale) is float
        with pytest.raises(ValueError, match="adc_time_scale"):
            Calibration(adc_time_scale=True)
        torch.manual_seed(0)
        model = nn.Linear(4, 3).double()
        x = torch.randn(8, 4, dtype=torch.float64)
        y = model(x).argmax(1)
        assert accuracy(model, x, y, batch_dim=np.int64(0)) == 1.0
        with pytest.raises(ValueError, match="batch_dim"):
            accuracy(model, x, y, batch_dim=np.bool_(False))

"""Chip configuration: presets, TOML round trips, copies on change, validation messages."""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

import cimsim
from cimsim.config import (
    ADCBand,
    ADCConfig,
    ArrayConfig,
    CellKind,
    CellTech,
    ChipConfig,
    DACConfig,
    DeviceConfig,
    NoiseConfig,
    RangePolicy,
    TechConfig,
    VariationKind,
    WeightEncoding,
)
from cimsim.errors import ConfigError

REQUIRED_PRESETS = ("ideal", "rram-22nm", "sram-65nm")


def _rich_chip() -> ChipConfig:
    """A chip that sets non-default values in every section (incl. None, inf, a tuple)."""
    return ChipConfig(
        name="rich",
        description='a "quoted" description with a \\ backslash\nand a second line',
        source="tests",
        weight_bits=6,
        input_bits=5,
        weight_encoding="offset",
        differential_readout="digital",
        accumulator_bits=24,
        array=ArrayConfig(n_rows=64, n_cols=32, rows_per_conversion=16, cols_per_adc=4,
                          n_tiles=3, arrays_per_tile=2, allow_time_multiplexing=True,
                          kernel_preserving_tiling=True),
        device=DeviceConfig(cell="rram", bits_per_cell=3, g_max_us=25.0, on_off_ratio=math.inf,
                            off_current_compensation="none", variation="gaussian",
                            variation_sigma=0.25, p_stuck_on=0.01, p_stuck_off=0.02),
        dac=DACConfig(bits=2, signed_inputs="two_pass"),
        adc=ADCConfig(kind="flash", bits=5, range_policy="calibrated",
                      calibration_granularity="array", calibration_stat="mean_std",
                      n_sigma=2.5, gain_error=-0.01, offset_error_lsb=0.3,
                      comparator_noise_lsb=0.2, fixed_lo=-3.5, fixed_hi=40.0),
        noise=NoiseConfig(thermal_sigma_lsb=0.7, read_noise_rel=0.02, nonlinearity="polynomial",
                          poly_coeffs=(0.1, -0.05, 0.0125)),
        tech=TechConfig(node_nm=28.0, vdd_v=0.9, v_read_v=0.3, t_read_ns=5.0, clock_mhz=500.0,
                        adc_band="low"),
    )


# ---------------------------------------------------------------------------------------------
# presets
# ---------------------------------------------------------------------------------------------
def test_list_presets_has_the_required_ones():
    names = cimsim.list_presets()
    assert names == sorted(names)
    for name in REQUIRED_PRESETS:
        assert name in names


@pytest.mark.parametrize("name", REQUIRED_PRESETS)
def test_presets_load_and_are_named_after_their_file(name):
    chip = cimsim.load_chip(name)
    assert isinstance(chip, ChipConfig)
    assert chip.name == name
    assert chip.description


def test_ideal_preset_is_lossless_by_construction(ideal):
    assert ideal.device.ideal
    assert math.isinf(ideal.device.on_off_ratio)
    assert ideal.noise == NoiseConfig()
    assert ideal.adc.range_policy is RangePolicy.FULL_SCALE
    assert ideal.adc.bits == 24
    assert ideal.adc.gain_error == 0 and ideal.adc.offset_error_lsb == 0
    assert ideal.adc.comparator_noise_lsb == 0


def test_preset_string_enums_are_coerced():
    chip = cimsim.load_chip("rram-22nm")
    assert chip.weight_encoding is WeightEncoding.DIFFERENTIAL
    assert chip.device.variation is VariationKind.LOGNORMAL
    assert chip.adc.range_policy is RangePolicy.CALIBRATED
    assert chip.tech.adc_band is ADCBand.TYPICAL


def test_adc_band_is_an_enum_read_and_written_as_its_string():
    chip = _rich_chip()
    assert chip.tech.adc_band is ADCBand.LOW
    assert 'adc_band = "low"' in chip.to_toml()
    assert ChipConfig.from_dict(tomllib.loads(chip.to_toml())).tech.adc_band is ADCBand.LOW


# ---------------------------------------------------------------------------------------------
# TOML round trips
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", REQUIRED_PRESETS)
def test_preset_toml_round_trip(name):
    chip = cimsim.load_chip(name)
    assert ChipConfig.from_dict(tomllib.loads(chip.to_toml())) == chip
    assert ChipConfig.from_dict(chip.to_dict()) == chip


def test_rich_chip_toml_round_trip():
    chip = _rich_chip()
    again = ChipConfig.from_dict(tomllib.loads(chip.to_toml()))
    assert again == chip
    assert again.noise.poly_coeffs == (0.1, -0.05, 0.0125)
    assert again.dac.bits == 2
    assert math.isinf(again.device.on_off_ratio)


def test_edram_chip_toml_round_trip():
    chip = ChipConfig(device=DeviceConfig(cell="edram", bits_per_cell=1),
                      tech=TechConfig(cell_kind="edram_2t", retention_ns=40000))
    again = ChipConfig.from_dict(tomllib.loads(chip.to_toml()))
    assert again == chip
    assert again.device.cell is CellTech.EDRAM and again.tech.cell_kind is CellKind.EDRAM_2T
    assert again.tech.retention_ns == 40000.0 and isinstance(again.tech.retention_ns, float)
    # unstated: the kind's published retention, not a number in the file
    assert "retention_ns" not in ChipConfig(device=DeviceConfig(cell="edram", bits_per_cell=1)
                                            ).to_toml()


def test_toml_round_trip_of_one_shot_dac(tmp_path):
    chip = ChipConfig(dac=DACConfig(bits=None))
    assert ChipConfig.from_dict(tomllib.loads(chip.to_toml())).dac.bits is None


@pytest.mark.parametrize("chip", [_rich_chip(), ChipConfig(), cimsim.load_chip("rram-22nm")],
                         ids=["rich", "default", "rram-22nm"])
def test_save_and_load_chip_file(tmp_path, chip):
    path = tmp_path / "chip.toml"
    chip.save(path)
    assert cimsim.load_chip(path) == chip
    assert cimsim.load_chip(str(path)) == chip


def test_integer_values_of_float_fields_round_trip_as_floats(tmp_path):
    chip = ChipConfig(device=DeviceConfig(g_max_us=10, on_off_ratio=20))
    assert isinstance(chip.device.g_max_us, float)
    path = tmp_path / "c.toml"
    chip.save(path)
    assert cimsim.load_chip(path) == chip


def test_toml_round_trip_with_control_characters():
    chip = ChipConfig(description="line one\r\nline two\tend\x01")
    assert ChipConfig.from_dict(tomllib.loads(chip.to_toml())) == chip


# ---------------------------------------------------------------------------------------------
# replace
# ---------------------------------------------------------------------------------------------
def test_replace_copies_and_leaves_the_original(ideal):
    chip = ideal.replace(adc=ideal.adc.replace(bits=5), input_bits=4)
    assert chip.adc.bits == 5 and chip.input_bits == 4
    assert ideal.adc.bits == 24 and ideal.input_bits == 8
    assert chip.array is ideal.array
    assert chip != ideal


def test_configs_are_frozen(ideal):
    with pytest.raises(dataclasses.FrozenInstanceError):
        ideal.input_bits = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ideal.adc.bits = 4  # type: ignore[misc]


def test_replace_unknown_field_is_a_config_error(ideal):
    with pytest.raises(ConfigError, match=r"adc_bitz") as info:
        ideal.replace(adc_bitz=5)
    assert "input_bits" in str(info.value)  # lists the fields


def test_replace_of_a_dotted_field_names_the_sections_replace(ideal):
    with pytest.raises(ConfigError, match=r"chip.replace\(adc=chip.adc.replace\(bits=\.\.\.\)\)"):
        ideal.replace(**{"adc.bits": 4})
    with pytest.raises(ConfigError) as err:  # no hint where the section does not exist
        ideal.replace(**{"adcs.bits": 4})
    assert "section" not in str(err.value)


def test_replace_validates(ideal):
    with pytest.raises(ConfigError, match=r"ADCConfig\.bits"):
        ideal.replace(adc=ideal.adc.replace(bits=0))
    with pytest.raises(ConfigError, match=r"DACConfig\.bits"):
        ideal.replace(input_bits=3, dac=DACConfig(bits=4))


# ---------------------------------------------------------------------------------------------
# validation: ConfigError naming the field and what is allowed
# ---------------------------------------------------------------------------------------------
BAD_VALUES = [
    # (factory, field named in the message, fragment of the allowed values)
    (lambda: ArrayConfig(n_rows=-4), "ArrayConfig.n_rows", "integer in [1, 65536]"),
    (lambda: ArrayConfig(n_cols=0), "ArrayConfig.n_cols", "integer in [1, 65536]"),
    (lambda: ArrayConfig(n_rows=True), "ArrayConfig.n_rows", "integer"),
    (lambda: ArrayConfig(n_rows=2.0), "ArrayConfig.n_rows", "integer"),
    (lambda: ArrayConfig(n_rows=8, rows_per_conversion=9), "ArrayConfig.rows_per_conversion",
     "[1, 8]"),
    (lambda: ArrayConfig(n_cols=4, cols_per_adc=5), "ArrayConfig.cols_per_adc", "[1, 4]"),
    (lambda: ArrayConfig(n_tiles=-1), "ArrayConfig.n_tiles", "integer in [1, 1048576]"),
    (lambda: ArrayConfig(allow_time_multiplexing=1), "ArrayConfig.allow_time_multiplexing",
     "true or false"),
    (lambda: DeviceConfig(bits_per_cell=0), "DeviceConfig.bits_per_cell", "[1, 7]"),
    (lambda: DeviceConfig(bits_per_cell=True), "DeviceConfig.bits_per_cell", "[1, 7]"),
    (lambda: DeviceConfig(variation="uniform"), "DeviceConfig.variation",
     "'none', 'lognormal', 'gaussian'"),
    (lambda: DeviceConfig(variation=3), "DeviceConfig.variation", "'lognormal'"),
    (lambda: DeviceConfig(off_current_compensation="both"),
     "DeviceConfig.off_current_compensation", "'none', 'analog', 'digital'"),
    (lambda: DeviceConfig(cell="feram"), "DeviceConfig.cell",
     "'rram', 'pcm', 'mram', 'fefet', 'flash', 'sram', 'edram', 'ideal'"),
    (lambda: DeviceConfig(on_off_ratio=1.0), "DeviceConfig.on_off_ratio", "(1.0, inf]"),
    (lambda: DeviceConfig(p_stuck_on=0.7, p_stuck_off=0.5), "p_stuck_on + p_stuck_off", "<= 1"),
    (lambda: DeviceConfig(variation_sigma=0.1), "DeviceConfig.variation_sigma", "'lognormal'"),
    (lambda: DACConfig(bits=0), "DACConfig.bits", "[1, 16]"),
    (lambda: DACConfig(signed_inputs="sign_magnitude"), "DACConfig.signed_inputs",
     "'twos_complement', 'two_pass'"),
    (lambda: ADCConfig(kind="pipeline"), "ADCConfig.kind", "'sar', 'flash', 'ramp'"),
    (lambda: ADCConfig(kind="ramp"), "ADCConfig.range_policy", "'calibrated' for kind = 'ramp'"),
    (lambda: ADCConfig(bits=25), "ADCConfig.bits", "[1, 24]"),
    (lambda: ADCConfig(range_policy="auto"), "ADCConfig.range_policy",
     "'full_scale', 'fixed', 'calibrated'"),
    (lambda: ADCConfig(range_policy="fixed", fixed_lo=5.0, fixed_hi=5.0), "ADCConfig.fixed_hi",
     "> fixed_lo (5.0)"),
    (lambda: ADCConfig(full_scale_factor=0.5), "ADCConfig.full_scale_factor", "[1.0, inf)"),
    (lambda: ADCConfig(calibration_granularity="row"), "ADCConfig.calibration_granularity",
     "'layer', 'array', 'column'"),
    (lambda: ADCConfig(calibration_stat="mse"), "ADCConfig.calibration_stat",
     "'minmax', 'percentile', 'mean_std'"),
    (lambda: ADCConfig(percentile=50.0), "ADCConfig.percentile", "(50.0, 100.0]"),
    (lambda: ADCConfig(gain_error=0.9), "ADCConfig.gain_error", "[-0.5, 0.5]"),
    (lambda: ADCConfig(placement="output"), "ADCConfig.placement",
     "'partial_sum', 'layer_output'"),
    (lambda: NoiseConfig(nonlinearity="cubic"), "NoiseConfig.nonlinearity",
     "'none', 'saturating', 'polynomial', 'ir_drop'"),
    (lambda: NoiseConfig(thermal_sigma_lsb=-1.0), "NoiseConfig.thermal_sigma_lsb", "[0.0, inf)"),
    (lambda: NoiseConfig(thermal_sigma_lsb=math.nan), "NoiseConfig.thermal_sigma_lsb", "[0.0"),
    (lambda: NoiseConfig(thermal_sigma_lsb="1"), "NoiseConfig.thermal_sigma_lsb", "[0.0"),
    (lambda: NoiseConfig(poly_coeffs=(1.0,) * 7), "NoiseConfig.poly_coeffs",
     "up to 6 finite numbers"),
    (lambda: NoiseConfig(poly_coeffs=(math.inf,)), "NoiseConfig.poly_coeffs", "finite"),
    (lambda: NoiseConfig(saturation_fraction=0.0), "NoiseConfig.saturation_fraction",
     "(0.0, inf)"),
    (lambda: TechConfig(adc_band="medium"), "TechConfig.adc_band", "'low', 'typical', 'high'"),
    (lambda: TechConfig(node_nm=2.0), "TechConfig.node_nm", "[3.0, 180.0]"),
    (lambda: TechConfig(node_nm=200.0), "TechConfig.node_nm", "[3.0, 180.0]"),
    (lambda: ChipConfig(weight_bits=17), "ChipConfig.weight_bits", "[1, 16]"),
    (lambda: ChipConfig(weight_bits=1), "ChipConfig.weight_encoding",
     "'binary' for weight_bits = 1"),
    (lambda: ChipConfig(input_bits=True), "ChipConfig.input_bits", "[1, 16]"),
    (lambda: ChipConfig(accumulator_bits=4), "ChipConfig.accumulator_bits", "[8, 64]"),
    (lambda: ChipConfig(weight_encoding="sign_magnitude"), "ChipConfig.weight_encoding",
     "'differential', 'twos_complement', 'offset', 'signed_cell'"),
    (lambda: ChipConfig(differential_readout="mixed"), "ChipConfig.differential_readout",
     "'analog', 'digital'"),
    (lambda: ChipConfig(input_bits=4, dac=DACConfig(bits=8)), "DACConfig.bits",
     "<= input_bits (4), or 'all' (every input bit in one shot; None in Python)"),
    (lambda: ChipConfig(device=DeviceConfig(cell="sram", bits_per_cell=2)),
     "DeviceConfig.bits_per_cell", "1 for cell = 'sram'"),
    (lambda: ChipConfig(device=DeviceConfig(cell="edram", bits_per_cell=2)),
     "DeviceConfig.bits_per_cell", "1 for cell = 'edram'"),
    (lambda: TechConfig(cell_kind="edram_1t1c"), "TechConfig.cell_kind",
     "'edram_2t', 'edram_3t' or absent"),
    (lambda: TechConfig(retention_ns=0.0), "TechConfig.retention_ns", "[1.0, 1000000000000.0]"),
    (lambda: TechConfig(retention_ns=4e-5), "TechConfig.retention_ns", "[1.0, 1000000000000.0]"),
    (lambda: TechConfig(retention_ns=math.inf), "TechConfig.retention_ns", "finite"),
    (lambda: TechConfig(retention_ns="40"), "TechConfig.retention_ns", "finite number"),
    (lambda: ChipConfig(tech=TechConfig(retention_ns=40e3)), "TechConfig.retention_ns",
     "absent for cell = 'rram' (only 'edram' cells are refreshed)"),
    (lambda: ChipConfig(array={"n_rows": 4}), "ChipConfig.array", "ArrayConfig"),
    # written with an integration window, the window was predicted and the one written
    # dropped without a word
    (lambda: TechConfig(t_integrate_ns=50.0, window_stated=False), "TechConfig.window_stated",
     "true, or t_integrate_ns left out (the window is then predicted)"),
]


@pytest.mark.parametrize(("make", "field", "allowed"), BAD_VALUES,
                         ids=[f"{i:02d}-{b[1]}" for i, b in enumerate(BAD_VALUES)])
def test_bad_value_raises_config_error_naming_field_and_allowed(make, field, allowed):
    with pytest.raises(ConfigError) as info:
        make()
    message = str(info.value)
    assert field in message
    assert allowed in message
    assert "allowed" in message


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        ArrayConfig(n_rows=0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_infinite_fixed_adc_range_is_rejected_or_harmless(ideal):
    try:
        adc = ADCConfig(range_policy="fixed", fixed_lo=-math.inf, fixed_hi=10.0)
    except ConfigError as exc:
        assert "fixed_lo" in str(exc)
        return
    y, _ = cimsim.matmul(np.ones((1, 4), dtype=np.int64), np.ones((2, 4), dtype=np.int64),
                         ideal.replace(adc=adc))
    assert np.all(np.isfinite(y))


# ---------------------------------------------------------------------------------------------
# loading errors
# ---------------------------------------------------------------------------------------------
def _write(tmp_path, text: str, name: str = "chip.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('name = "x"\nweigth_bits = 8\n', "weigth_bits"),
        ("[array]\nn_row = 4\n", "n_row"),
        ("[adc]\nbits = 6\nrange = 'fixed'\n", "range"),
        ("[optics]\nlambda_nm = 1550\n", "optics"),
    ],
)
def test_unknown_toml_key_names_the_key(tmp_path, text, key):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match="unknown key") as info:
        cimsim.load_chip(path)
    assert repr(key) in str(info.value)
    assert str(path) in str(info.value)


def test_unknown_key_in_from_dict_lists_allowed_keys():
    with pytest.raises(ConfigError, match=r"in \[array\]") as info:
        ChipConfig.from_dict({"array": {"rows": 4}})
    assert "'n_rows'" in str(info.value)
    # the file's own tables: it named [chip.array] and [chip], which a chip file cannot have
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['chip'\] in the top level"):
        ChipConfig.from_dict({"chip": {"array": {"n_rows": 4}}})


def test_section_that_is_not_a_table(tmp_path):
    path = _write(tmp_path, "array = 3\n")
    with pytest.raises(ConfigError, match=r"\[array\] must be a table"):
        cimsim.load_chip(path)


def test_bad_value_in_file_names_file_and_field(tmp_path):
    path = _write(tmp_path, '[device]\nbits_per_cell = "2"\n')
    with pytest.raises(ConfigError, match=r"DeviceConfig\.bits_per_cell") as info:
        cimsim.load_chip(path)
    assert str(path) in str(info.value)


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match="unknown chip preset 'rram-7nm'") as info:
        cimsim.load_chip("rram-7nm")
    for name in REQUIRED_PRESETS:
        assert name in str(info.value)


def test_a_chip_meant_as_a_file_is_not_called_an_unknown_preset(tmp_path, monkeypatch):
    """``load_chip(Path("my-chip.tmol"))`` said "unknown chip preset" and listed the presets;
    a Path, a suffix or a folder is a file that is not there, the .toml beside it named."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-chip.toml").write_text('name = "mine"\n')
    for given in (Path("my-chip.tmol"), "my-chip.tmol", "my-chip.tml"):
        with pytest.raises(ConfigError, match=r"^chip file 'my-chip\.tm[ol]*' not found \(did "
                                              r"you mean 'my-chip\.toml'\?\); allowed: a "
                                              r"\.toml file, or a preset name"):
            cimsim.load_chip(given)
    with pytest.raises(ConfigError, match=r"^chip file 'chips/x\.yaml' not found; allowed"):
        cimsim.load_chip("chips/x.yaml")
    with pytest.raises(ConfigError, match=r"unknown chip preset 'published/wu-jssc2' \(did you "
                                          r"mean 'published/wu-jssc23'\?\)"):
        cimsim.load_chip("published/wu-jssc2")


def test_overrides_as_a_mapping_of_python_values():
    """``overrides={"adc.bits": 5}`` was refused as "--set 'adc.bits' is invalid" (only the
    keys were read); a mapping's values are Python's (True, an enum, a string)."""
    from cimsim.config import ADCKind

    chip = cimsim.load_chip("ideal", overrides={"adc.bits": 5, "adc.kind": ADCKind.FLASH,
                                                "array.allow_time_multiplexing": True,
                                                "description": "mine"})
    assert (chip.adc.bits, chip.adc.kind, chip.array.allow_time_multiplexing,
            chip.description) == (5, ADCKind.FLASH, True, "mine")
    assert chip == cimsim.load_chip("ideal", overrides=[
        "adc.bits=5", "adc.kind=flash", "array.allow_time_multiplexing=true", "description=mine"])
    with pytest.raises(ConfigError, match=r"overrides 'adc.bits' = None is invalid: .* TOML has "
                                          r"no null; set None on the loaded chip with replace"):
        cimsim.load_chip("ideal", overrides={"adc.bits": None})
    with pytest.raises(ConfigError, match=r"overrides 'adc.bits' = \{\} is invalid; allowed: "):
        cimsim.load_chip("ideal", overrides={"adc.bits": {}})
    # NumPy's scalars are numbers (np.arange(3, 9) in a loop); a refusal names "overrides"
    assert cimsim.load_chip("ideal", overrides={"adc.bits": np.int64(5)}).adc.bits == 5
    with pytest.raises(ConfigError, match=r"^preset ideal with overrides adc.bits=99: "):
        cimsim.load_chip("ideal", overrides={"adc.bits": np.int64(99)})


def test_missing_toml_path(tmp_path):
    path = tmp_path / "nowhere" / "chip.toml"
    with pytest.raises(ConfigError, match="not found") as info:
        cimsim.load_chip(path)
    assert "chip.toml" in str(info.value)


def test_directory_is_not_a_chip_file(tmp_path):
    # named a folder, not "not found": it is there (tests/test_newcomer_cli.py)
    with pytest.raises(ConfigError, match="is a folder; allowed: a preset name"):
        cimsim.load_chip(tmp_path)


@pytest.mark.parametrize("text", ["name = \n", "[array\nn_rows = 4\n", "weight_bits = 8 8\n"])
def test_invalid_toml(tmp_path, text):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        cimsim.load_chip(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------------------
# issue 16: nothing silent
# ---------------------------------------------------------------------------------------------
def test_empty_chip_file_is_refused_issue16(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("# nothing here\n")
    with pytest.raises(ConfigError, match="defines no field"):
        cimsim.load_chip(path)


def test_non_utf8_chip_file_is_one_error_issue16(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        cimsim.load_chip(path)


@pytest.mark.parametrize(("toml", "field"), [
    ("name = 5", "ChipConfig.name = 5"),
    ('name = "x"\n[array]\nn_tiles = 100000000000000000000', "ArrayConfig.n_tiles"),
    ('name = "x"\n[array]\narrays_per_tile = 1000000', "ArrayConfig.arrays_per_tile"),
])
def test_counts_and_names_a_chip_can_have_issue16(tmp_path, toml, field):
    path = tmp_path / "chip.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError, match=field):
        cimsim.load_chip(path)


def test_published_macros_load_by_name():
    names = cimsim.list_presets(published=True)
    assert "published/lee-vlsi21" in names and all(n.startswith("published/") for n in names)
    # by name, the same chip as by path
    by_path = cimsim.load_chip("cimsim/presets/published/lee-vlsi21.toml")
    assert cimsim.load_chip("published/lee-vlsi21") == by_path
    with pytest.raises(ConfigError, match="published/NAME"):
        cimsim.load_chip("published/no-such-chip")


def test_an_array_narrower_than_the_default_adc_sharing_says_so():
    """4 columns under the default 8 columns per ADC: the error names the bound (n_cols) and
    that 8 is the default the user never wrote."""
    with pytest.raises(ConfigError, match=r"cols_per_adc = 8 is invalid; allowed: an integer "
                                          r"in \[1, 4\] \(no more than n_cols; cols_per_adc is "
                                          r"8 unless set\)"):
        ArrayConfig(n_cols=4)
    assert ArrayConfig(n_cols=4, cols_per_adc=4).adcs_per_array == 1


@pytest.mark.parametrize("data", [
    dict(device=dict(cell="sram")), dict(device=dict(cell="edram")),
    dict(device=dict(cell="mram")), dict(weight_bits=1, weight_encoding="binary"),
    dict(weight_encoding="ternary"),
    dict(device=dict(cell="sram"), dac=dict(bits=1), adc=dict(kind="digital", bits=10)),
])
def test_a_description_that_allows_one_bit_cells_only_gets_them_unwritten(data):
    """A new chip's description that says SRAM, eDRAM or MRAM cells, binary or ternary weights
    or a digital read-out need not also write bits_per_cell = 1 (DeviceConfig's default of 2 is
    a multi-level NVM cell's): before, it was refused naming a field it never wrote."""
    assert ChipConfig.from_dict(data).device.bits_per_cell == 1
    # a value written is kept and checked as written
    written = {**data, "device": {**data.get("device", {}), "bits_per_cell": 2}}
    with pytest.raises(ConfigError, match=r"DeviceConfig\.bits_per_cell = 2 is invalid"):
        ChipConfig.from_dict(written)


def test_a_digital_read_out_without_bits_gets_the_exact_sum_s_width():
    """ADCConfig's default 8 b was refused for a digital read-out over 256 rows ('>= 10'),
    a value the description never wrote: the tree's width follows from its rows and input
    slices and prices nothing, so a description that leaves it out gets it. A value written
    is kept and checked; the dataclass default says where it came from."""
    digital = {"device": {"cell": "sram"}, "adc": {"kind": "digital"}}
    assert ChipConfig.from_dict(digital).adc.bits == 10  # 256 rows, bit-serial
    assert ChipConfig.from_dict({**digital, "dac": {"bits": 4},
                                 "array": {"n_rows": 64}}).adc.bits == 11
    with pytest.raises(ConfigError, match=r"ADCConfig\.bits = 9 is invalid; allowed: >= 10 .*"
                                          r"included\)$"):
        ChipConfig.from_dict({**digital, "adc": {"kind": "digital", "bits": 9}})
    with pytest.raises(ConfigError, match=r"bits = 8 is invalid; .* 8 is also ADCConfig's "
                                          r"default: if the field was never set, a TOML or "
                                          r"dict that leaves adc\.bits out gets 10"):
        ChipConfig(device=DeviceConfig(cell="sram", bits_per_cell=1), adc=ADCConfig(
            kind="digital"))


def test_a_toml_of_sram_cells_loads_without_bits_per_cell(tmp_path):
    path = tmp_path / "chip.toml"
    path.write_text('weight_bits = 4\n[device]\ncell = "sram"\n')
    chip = cimsim.load_chip(path)
    assert chip.device.bits_per_cell == 1
    path.write_text(chip.to_toml())  # the round trip writes the 1
    assert "bits_per_cell = 1" in path.read_text() and cimsim.load_chip(path) == chip


def test_resistive_cells_keep_the_multi_level_default(tmp_path):
    path = tmp_path / "chip.toml"
    path.write_text('[device]\ncell = "rram"\n')
    assert cimsim.load_chip(path).device.bits_per_cell == 2
    assert ChipConfig.from_dict({}).device.bits_per_cell == 2


def test_a_bit_cell_s_bits_are_named_before_the_per_level_lists_that_follow_them():
    """SRAM at 2 b with two per-level drift values (one per level of a 1-b cell) named
    drift_nu_sigma, a field the user had not touched: the cell's bits come first now, and a
    per-level list's message says which bits_per_cell sets its length (a fuzz hunt, seed
    99992)."""
    data = {"device": {"cell": "sram", "bits_per_cell": 2, "drift_nu_mean": [0.01, 0.02],
                       "drift_nu_sigma": [0.0, 0.0]}}
    with pytest.raises(ConfigError, match=r"DeviceConfig\.bits_per_cell = 2 is invalid; "
                                          r"allowed: 1 for cell = 'sram'"):
        ChipConfig.from_dict(data)
    with pytest.raises(ConfigError, match=r"DeviceConfig\.drift_nu_mean = \(0\.01, 0\.02\) is "
                                          r"invalid; allowed: an empty list, one number or 4 "
                                          r"numbers \(one per level of bits_per_cell = 2\)"):
        DeviceConfig(cell="rram", bits_per_cell=2, drift_nu_mean=(0.01, 0.02))
    with pytest.raises(ConfigError, match=r"bits_per_cell = 2 is invalid; allowed: 1 for cell = "
                                          r"'edram'"):
        DeviceConfig(cell="edram", bits_per_cell=2)


def test_a_one_bit_cell_refused_at_the_default_says_it_is_the_default():
    with pytest.raises(ConfigError, match=r"bits_per_cell = 2 is invalid; allowed: 1 for cell = "
                                          r"'mram'.*2 is also DeviceConfig's default.*if the "
                                          r"field was never set, write "
                                          r"bits_per_cell = 1"):
        DeviceConfig(cell="mram")
    with pytest.raises(ConfigError, match=r"allowed: 1 for cell = 'mram' \(a magnetic tunnel "
                                          r"junction has two states\)$"):
        DeviceConfig(cell="mram", bits_per_cell=3)  # written: no word of a default


@pytest.mark.parametrize("tech, stated", [
    (dict(cost_model="physical"), False),  # no window written: predicted
    (dict(cost_model="physical", t_read_ns=5.0), True),
    (dict(cost_model="physical", t_integrate_ns=50.0), True),
    (dict(cost_model="physical", window_stated=True), True),
    (dict(), True),  # the tables model times a step by its read pulse, as before
])
def test_a_physical_description_without_a_window_has_it_predicted(tmp_path, tech, stated):
    """A new chip described for the physical model that states no compute window is estimated
    as the validation table's chips that state none (the predicted window), not with cimsim's
    10-ns default read pulse taken as its published cycle."""
    chip = ChipConfig.from_dict({"tech": tech})
    assert chip.tech.window_stated is stated
    path = tmp_path / "chip.toml"
    chip.save(path)  # the round trip writes what the chip got
    assert cimsim.load_chip(path) == chip


def test_a_digital_read_out_keeps_its_clock_timed_step():
    chip = ChipConfig.from_dict({"tech": {"cost_model": "physical"}, "dac": {"bits": 1},
                                 "device": {"cell": "sram"},
                                 "adc": {"kind": "digital", "bits": 10}})
    assert chip.tech.window_stated is True


def test_unstated_inputs_names_what_the_description_leaves_to_defaults(tmp_path):
    path = tmp_path / "chip.toml"
    path.write_text('weight_bits = 4\ninput_bits = 4\n[array]\nn_rows = 128\nn_cols = 128\n'
                    'cols_per_adc = 4\n[device]\ncell = "rram"\nbits_per_cell = 2\n'
                    '[adc]\nkind = "sar"\nbits = 6\n[tech]\nnode_nm = 28\nvdd_v = 0.9\n'
                    'cost_model = "physical"\n')
    assert cimsim.config.unstated_inputs(path) == (
        "dac.bits = 1", "tech.input_drive = 'amplitude'", "tech.compute_domain = 'current'",
        "device.g_max_us = 10.0", "tech.v_read_v = 0.2",
        "tech.window_stated = false (the window predicted from the column's settling)",
        "tech.t_read_ns = 10.0 (the read pulse the cells' energy is priced over; the window "
        "lasts no less)", "tech.read_supply_v = 0.9 (the supply the cells' read current is "
        "drawn from: vdd_v, or v_read_v where higher)")
    path.write_text('[tech]\nnode_nm = 65\n')  # the tables model and every default
    assert cimsim.config.unstated_inputs(path) == (
        "tech.vdd_v = 0.8", "weight_bits = 8", "input_bits = 8", "array.n_rows = 256",
        "array.n_cols = 256", "array.cols_per_adc = 8", "device.cell = 'rram'",
        "dac.bits = 1", "adc.kind = 'sar'", "adc.bits = 8", "device.g_max_us = 10.0",
        "tech.v_read_v = 0.2", "tech.t_read_ns = 10.0 (the compute window)")
    # a digital read-out: its clock, not a window, drive or column domain
    path.write_text('[device]\ncell = "sram"\n[dac]\nbits = 1\n[adc]\nkind = "digital"\n'
                    'bits = 10\n[tech]\ncost_model = "physical"\n')
    got = cimsim.config.unstated_inputs(path)
    assert "tech.clock_mhz = 1000.0" in got
    assert not any("window" in g or "input_drive" in g or "compute_domain" in g for g in got)
    # a published description that writes its inputs leaves none of them out
    assert cimsim.config.unstated_inputs("published/sinangil-jssc21") == ()
    # a whole chip's figures also rest on its tiles and their buffers
    assert cimsim.config.unstated_inputs(path, scope="chip") == got + (
        "array.n_tiles = 64", "array.arrays_per_tile = 16", "array.tile_buffer_kib = 64.0")
    assert cimsim.config.unstated_inputs("published/legallo-natelec23", scope="chip") == (
        "array.tile_buffer_kib = 64.0", "tech.read_supply_v = 0.8 (the supply the cells' read "
        "current is drawn from: vdd_v, or v_read_v where higher)")
    # a charge-domain column rests on its unit capacitor (0.1 to 10 fF moved a step 20x)
    path.write_text('[device]\ncell = "sram"\n[tech]\ncost_model = "physical"\n'
                    'compute_domain = "charge"\n')
    assert "tech.cap_unit_ff = 1.0" in cimsim.config.unstated_inputs(path)
    path.write_text('[device]\ncell = "sram"\n[tech]\ncost_model = "physical"\n'
                    'compute_domain = "charge"\ncap_unit_ff = 2.0\n')
    assert not any("cap_unit_ff" in g for g in cimsim.config.unstated_inputs(path))
    # a charge-domain column over resistive (FeFET) cells conducts no read current: its
    # conductance and read voltage change no figure, and are not named
    path.write_text('[device]\ncell = "fefet"\nbits_per_cell = 1\n[tech]\n'
                    'cost_model = "physical"\ncompute_domain = "charge"\ncap_unit_ff = 0.5\n')
    got = cimsim.config.unstated_inputs(path)
    assert not any("g_max_us" in g or "v_read_v" in g for g in got)
    from cimsim.cost.datasheet import datasheet
    chip = cimsim.load_chip(path)
    base = datasheet(chip)
    for other in (chip.replace(device=chip.device.replace(g_max_us=100.0)),
                  chip.replace(tech=chip.tech.replace(v_read_v=0.6))):
        assert datasheet(other)["tops_per_w"] == base["tops_per_w"]
    # an ideal cell the physical model prices as an RRAM cell: its read is priced
    path.write_text('[device]\ncell = "ideal"\n[tech]\ncost_model = "physical"\n'
                    'cell_kind = "rram_1t1r"\n')
    assert "device.g_max_us = 10.0" in cimsim.config.unstated_inputs(path)


def test_a_cost_cell_of_another_family_than_the_simulated_cell_is_refused():
    """An SRAM bit-cell priced as a resistive cell is a slip: refused naming both fields. A
    cell priced as another of its family (CMOS bit-cells; non-volatile cells, as HERMES:
    RRAM-like conductances, PCM cells) and an ideal cell priced as anything are kept."""
    with pytest.raises(ConfigError, match=r"TechConfig.cell_kind = 'rram_1t1r' is invalid; "
                       r"allowed: one of 'sram_6t', .*'edram_3t' for device.cell = 'sram'"):
        ChipConfig.from_dict({"device": {"cell": "sram"}, "tech": {"cell_kind": "rram_1t1r"}})
    with pytest.raises(ConfigError, match=r"cell_kind = 'sram_8t' .* 'rram_1t1r', 'pcm', "
                       r"'mram_1t1mtj', 'fefet_1t', 'flash_nor' for device.cell = 'fefet'"):
        ChipConfig.from_dict({"device": {"cell": "fefet"}, "tech": {"cell_kind": "sram_8t"}})
    for cell, kind in (("rram", "pcm"), ("mram", "mram_1t1mtj"), ("ideal", "rram_1t1r"),
                       ("sram", "sram_6t"), ("edram", "edram_2t"), ("sram", "edram_2t")):
        chip = ChipConfig.from_dict({"device": {"cell": cell}, "tech": {"cell_kind": kind}})
        assert chip.tech.cell_kind.value == kind


def test_a_ramp_converter_left_without_a_range_policy_is_calibrated():
    """The in-memory ramp only takes calibrated levels: a description that writes the kind and
    no policy gets it; one that writes another policy is refused, the message naming the
    linear ramp-compare converter a user may have meant."""
    chip = ChipConfig.from_dict({"adc": {"kind": "ramp", "bits": 4}})
    assert chip.adc.range_policy is RangePolicy.CALIBRATED
    with pytest.raises(ConfigError, match="range_policy = 'full_scale' is invalid; allowed: "
                       "'calibrated' for kind = 'ramp'.*kind = 'single_slope'"):
        ChipConfig.from_dict({"adc": {"kind": "ramp", "range_policy": "full_scale"}})


def test_physical_model_fields_under_the_tables_model_are_named(tmp_path):
    """`compute_domain`, a temporal `input_drive` and the word-line fields are read by the
    physical cost model only: a description that writes them and keeps the default `tables`
    model is told that no figure changes and how to have them priced."""
    path = tmp_path / "chip.toml"
    path.write_text('[tech]\ncompute_domain = "charge"\ninput_drive = "pulse_width"\n'
                    "wordline_v = 0.9\n")
    with pytest.warns(UserWarning, match=r"\[tech\] input_drive, compute_domain, wordline_v are "
                                         r"read by the physical cost model only.*"
                                         r"cost_model = 'physical'"):
        chip = cimsim.load_chip(path)
    assert chip.tech.compute_domain.value == "charge"  # kept as written
    from cimsim.cost.datasheet import datasheet
    plain = datasheet(ChipConfig())
    assert all(datasheet(chip)[k] == plain[k] for k in ("tops", "tops_per_w", "tops_per_mm2"))
    # the physical model reads them: no warning; nor for a field left at its default value
    path.write_text('[tech]\ncost_model = "physical"\ncompute_domain = "charge"\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cimsim.load_chip(path)
        path.write_text('[tech]\ncompute_domain = "current"\ninput_drive = "amplitude"\n')
        cimsim.load_chip(path)


def test_overrides_set_fields_over_a_description_before_it_is_validated():
    """``load_chip(name, overrides=[...])``, what the command line's ``--set`` passes: TOML
    values (a bare word a string), named fields checked as a file's, set fields stated."""
    chip = cimsim.load_chip("published/jia-jssc20", overrides=[
        "array.allow_time_multiplexing=true", "adc.bits=6", "adc.kind=flash", "dac.bits=all",
        "weight_bits=1", "name=what-if"])
    assert chip.array.allow_time_multiplexing and chip.adc.bits == 6
    assert chip.adc.kind.value == "flash" and chip.dac.bits is None and chip.name == "what-if"
    assert cimsim.load_chip("published/jia-jssc20") != chip  # the preset is untouched
    with pytest.raises(ConfigError, match=r"^preset rram-22nm with --set adc\.bitz=6: unknown "
                                          r"key\(s\) \['bitz'\] in \[adc\] \(did you mean "
                                          r"'bits'\?\)"):
        cimsim.load_chip("rram-22nm", overrides=["adc.bitz=6"])
    with pytest.raises(ConfigError, match=r"with --set adc\.bits=99: ADCConfig\.bits = 99"):
        cimsim.load_chip("rram-22nm", overrides=["adc.bits=99"])
    for bad in ("adcs.bits=6", "adc=6", "adc.bits"):
        with pytest.raises(ConfigError, match=rf"^--set '{re.escape(bad)}' is invalid; allowed: "
                                              r"TABLE\.FIELD=VALUE \(TABLE one of \['adc', "):
            cimsim.load_chip("rram-22nm", overrides=[bad])
    assert cimsim.load_chip("rram-22nm", overrides="adc.bits=5").adc.bits == 5  # one string
    # the description says the chip is not the preset's (the report's title line and the
    # CLI's chip line showed the preset's "6-bit SAR" over a 4-b run)
    assert cimsim.load_chip("rram-22nm", overrides=["adc.bits=4"]).description.endswith(
        "6-bit SAR, calibrated columns (with --set adc.bits=4)")
    assert cimsim.load_chip("rram-22nm", overrides=['description="mine"']).description == "mine"
    from cimsim.config import unstated_inputs

    assert "device.g_max_us = 10.0" in unstated_inputs("published/li-esscirc22")
    assert unstated_inputs("published/li-esscirc22", overrides=[
        "device.g_max_us=20", "tech.read_supply_v=0.7"]) == ()


@pytest.mark.parametrize("cell", ["sram", "edram"])
@pytest.mark.parametrize("field, value", [
    ("drift_nu_mean", (0.1,)), ("read_noise_q_s", (0.05,)), ("retention_sigma_lsb", 0.5),
    ("drift_compensation", "global")])
def test_bit_cells_do_not_age(cell, field, value):
    """A latch holds its bit and a gain cell is refreshed to it: drift, 1/f read noise,
    retention loss and a drift compensation on SRAM or eDRAM are refused, naming the field
    (they were applied to the bit-cells as drifting conductances, and `sweep --time` plotted
    an SRAM 'drift' curve). Variation, faults and off-current stay allowed."""
    device = cimsim.load_chip("sram-65nm").device.replace(cell=cell)
    with pytest.raises(ConfigError, match=f"DeviceConfig.{field} = .* for cell = '{cell}'"):
        device.replace(**{field: value})
    device.replace(drift_nu_mean=(0.0,), read_noise_q_s=(), retention_sigma_lsb=0.0)
    device.replace(variation="lognormal", variation_sigma=0.1, p_stuck_on=0.01,
                   on_off_ratio=20.0)
    cimsim.load_chip("pcm-22nm").device.replace(**{field: value})  # a PCM cell ages


def test_the_capacitor_density_is_named_under_the_tables_model(tmp_path):
    """``cap_density_ff_per_um2`` (the capacitor area of a charge-domain column and of a
    bit-plane accumulator) is read by the physical model only: under ``tables`` it changed no
    figure and no warning said so."""
    from cimsim.cost.datasheet import datasheet

    path = tmp_path / "chip.toml"
    text = ('[device]\ncell = "sram"\nbits_per_cell = 1\n[dac]\nbits = "all"\n'
            '[tech]\ninput_drive = "bit_planes"\ncompute_domain = "charge"\n'
            "cap_density_ff_per_um2 = {}\n")
    path.write_text(text.format(2.0))
    with pytest.warns(UserWarning, match=r"\[tech\] compute_domain, cap_density_ff_per_um2 are "
                                         r"read by the physical cost model only"):
        chip = cimsim.load_chip(path)
    dense = chip.replace(tech=chip.tech.replace(cap_density_ff_per_um2=20.0))
    assert datasheet(chip)["area_mm2"] == datasheet(dense)["area_mm2"]
    physical = chip.replace(tech=chip.tech.replace(cost_model="physical"))
    assert datasheet(physical)["area_mm2"] != datasheet(
        physical.replace(tech=physical.tech.replace(cap_density_ff_per_um2=20.0)))["area_mm2"]


def test_a_digital_read_out_s_derived_bits_are_no_unstated_input_and_replace_says_so():
    """A digital macro's adc.bits follow from its rows and change no figure: the datasheet
    listed them among cimsim's defaults used; and a replace() of its rows kept the bits
    derived at load, refused with advice about a TOML that leaves them out."""
    from cimsim.config import unstated_inputs

    data = {"name": "dig", "adc": {"kind": "digital"}, "device": {"cell": "sram"},
            "array": {"n_rows": 64, "n_cols": 64}, "dac": {"bits": 1},
            "tech": {"cost_model": "physical"}}
    chip = cimsim.ChipConfig.from_dict(data)
    assert chip.adc.bits == 8  # the exact sum of 64 one-bit products, signed
    assert not any(u.startswith("adc.bits") for u in unstated_inputs("ideal", overrides={
        "adc.kind": "digital", "device.cell": "sram", "device.bits_per_cell": 1,
        "array.n_rows": 64, "dac.bits": 1, "tech.cost_model": "physical"}))
    with pytest.raises(ConfigError, match=r"give adc\.bits = 10 in the same replace"):
        chip.replace(array=chip.array.replace(n_rows=256))
    wider = chip.replace(array=chip.array.replace(n_rows=256), adc=chip.adc.replace(bits=10))
    assert wider.adc.bits == 10


def test_configs_pickle_by_field_name_and_read_positional_pickles():
    """A dataclass with slots pickled its fields by position: a field added in the middle of
    a class shifted every later one of a model saved before (adc.placement read as True).
    States are now by name; a positional state from before reads its fields in order, and a
    field added since (at the end) takes its default."""
    import dataclasses
    import pickle

    chip = cimsim.load_chip("rram-22nm")
    assert pickle.loads(pickle.dumps(chip)) == chip
    assert isinstance(chip.adc.__getstate__(), dict)
    names = [f.name for f in dataclasses.fields(chip.adc)]
    assert names[-1] == "t_conversion_ns"  # appended: positional states stay aligned
    old = tuple(getattr(chip.adc, n) for n in names[:-1])
    adc = object.__new__(type(chip.adc))
    adc.__setstate__(old)
    assert adc == chip.adc and adc.t_conversion_ns is None


def test_a_digital_read_out_over_sensed_resistive_cells_names_its_default_read_pulse():
    """Its cells conduct for the read pulse, re-read every input plane, and the clock lasts no
    less: the 10-ns default set an MRAM macro's figures 7.7x apart from a 1-ns pulse and was
    named nowhere; an SRAM digital macro reads no pulse and is not told of one."""
    from cimsim.config import unstated_inputs

    digital = {"adc.kind": "digital", "device.bits_per_cell": 1, "dac.bits": 1,
               "tech.cost_model": "physical"}
    mram = unstated_inputs("ideal", overrides={**digital, "device.cell": "mram"})
    assert any(u.startswith("tech.t_read_ns = 10.0 (the sensed cells' read pulse") for u in mram)
    stated = unstated_inputs("ideal", overrides={**digital, "device.cell": "mram",
                                                 "tech.t_read_ns": 1.0})
    sram = unstated_inputs("ideal", overrides={**digital, "device.cell": "sram"})
    assert not any(u.startswith("tech.t_read_ns") for u in stated + sram)

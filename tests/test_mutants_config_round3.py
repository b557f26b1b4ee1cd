"""Tests from a third mutation round over ``cimsim/config.py``: the checks, coercions, derived
values, load-time default rules and override handling that the first two rounds
(``tests/test_mutants_config_cli.py``, ``tests/test_mutants_config_round2.py``) left unpinned.

Each test names, in its docstring, the place in ``config.py`` and the change to it (a mutant)
that no other test noticed; the answers are worked by hand. A value at a bound builds, the next
one is a ConfigError naming the field (those cases are in the bound table of
``tests/test_mutants_config_round2.py``, one test for both rounds). Every test builds small
configs only (no deploy, no arrays) and runs in milliseconds.
"""

from __future__ import annotations

import math
import tomllib

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
)
from cimsim.errors import ConfigError

_SRAM_DIGITAL = dict(device=DeviceConfig(cell="sram", bits_per_cell=1),
                     adc=ADCConfig(kind="digital", bits=8),
                     array=ArrayConfig(n_rows=16, n_cols=16, cols_per_adc=1))


def _refused(field: str, build) -> None:
    """``build()`` raises a ConfigError that names ``field`` (``Section.name``)."""
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build()


def _round_trip(chip: ChipConfig) -> ChipConfig:
    return ChipConfig.from_dict(tomllib.loads(chip.to_toml()))


# ---------------------------------------------------------------------------------------------
# _float_in, _zero_or_in, _level_values, _bool: what they store
# ---------------------------------------------------------------------------------------------
class TestStoredTypes:
    def test_an_infinite_capable_field_says_a_number_not_a_finite_one(self):
        """_float_in: ``kind = "a number" if allow_inf else ...`` -> always "a finite number"
        (on_off_ratio takes inf: its message must not say finite)."""
        with pytest.raises(ConfigError, match=r"allowed: a number in \(1\.0, inf\]"):
            DeviceConfig(on_off_ratio=0.5)

    def test_a_zero_or_in_range_field_is_stored_as_a_python_float(self):
        """_zero_or_in: the final ``object.__setattr__(obj, name, float(value))`` removed: an
        int stayed an int and a NumPy float32 stayed one, which the TOML writer refuses."""
        tech = TechConfig(cost_model="physical", cap_density_ff_per_um2=np.float32(2.0),
                          wordline_driver_cap_ff=3)
        assert type(tech.cap_density_ff_per_um2) is float
        assert type(tech.wordline_driver_cap_ff) is float
        chip = ChipConfig(tech=tech)
        assert _round_trip(chip) == chip

    def test_a_level_table_is_stored_as_python_floats(self):
        """_level_values: ``tuple(float(v) for v in values)`` -> ``tuple(values)``: ints and
        NumPy numbers were kept, and a float32 could not be written to TOML."""
        dev = DeviceConfig(drift_nu_mean=(np.float32(0.5), 1, 0, 2), read_noise_q_s=[np.int64(0)])
        assert dev.drift_nu_mean == (0.5, 1.0, 0.0, 2.0)
        assert [type(v) for v in dev.drift_nu_mean] == [float] * 4
        assert [type(v) for v in dev.read_noise_q_s] == [float]
        chip = ChipConfig(device=dev)
        assert _round_trip(chip) == chip

    @pytest.mark.parametrize(("build", "field"), [
        (lambda: ADCConfig(fuse_activation=1), "ADCConfig.fuse_activation"),
        (lambda: DACConfig(shift_unsigned_inputs=1), "DACConfig.shift_unsigned_inputs"),
        (lambda: TechConfig(window_stated=1), "TechConfig.window_stated"),
        (lambda: QuantConfig(act_zero_point=1), "QuantConfig.act_zero_point"),
    ], ids=["fuse_activation", "shift_unsigned_inputs", "window_stated", "act_zero_point"])
    def test_each_flag_refuses_an_integer(self, build, field):
        """The ``_bool`` call of each flag dropped (ADCConfig's ``fuse_activation``,
        DACConfig's ``shift_unsigned_inputs``, TechConfig's ``window_stated``, QuantConfig's
        ``act_zero_point``): 1 was taken for true, and written to TOML as 1."""
        _refused(field, build)

    def test_kernel_preserving_tiling_is_a_flag(self):
        """ArrayConfig.__post_init__: ``_bool`` over ``("allow_time_multiplexing",
        "kernel_preserving_tiling")`` -> the first only: 1 was taken for true."""
        _refused("ArrayConfig.kernel_preserving_tiling",
                 lambda: ArrayConfig(kernel_preserving_tiling=1))
        assert ArrayConfig(kernel_preserving_tiling=np.bool_(True)).kernel_preserving_tiling \
            is True


# ---------------------------------------------------------------------------------------------
# DeviceConfig.with_bits_per_cell
# ---------------------------------------------------------------------------------------------
class TestDeviceWithBitsPerCell:
    def test_going_down_to_one_bit_scales_the_spreads(self):
        """with_bits_per_cell: ``if not _is_int(bits) or bits < 1`` -> ``bits < 2``: 1 b was
        taken as a bad value and the spreads kept in cell-LSB. 2 -> 1 b: one new cell-LSB is
        3 old ones, so a gaussian sigma of 0.3 and a retention spread of 0.6 become a third."""
        dev = DeviceConfig(variation="gaussian", variation_sigma=0.3, retention_sigma_lsb=0.6)
        new = dev.with_bits_per_cell(1)
        assert new.bits_per_cell == 1
        assert new.variation_sigma == pytest.approx(0.1)
        assert new.retention_sigma_lsb == pytest.approx(0.2)

    def test_a_table_of_one_value_is_kept_as_one_value(self):
        """with_bits_per_cell: ``if len(table) > 1 and ...`` -> ``len(table) > 0``: a table of
        one value (every level) was spread into one copy per new level."""
        new = DeviceConfig(drift_nu_mean=(0.1,), read_noise_q_s=(0.02,)).with_bits_per_cell(3)
        assert new.drift_nu_mean == (0.1,)
        assert new.read_noise_q_s == (0.02,)


# ---------------------------------------------------------------------------------------------
# ADCConfig
# ---------------------------------------------------------------------------------------------
class TestADCConfig:
    def test_n_sigma_has_no_upper_bound(self):
        """ADCConfig: ``_float_in(self, "n_sigma", 0.0, lo_open=True)`` is (0, inf); a bound
        of 100 added was not noticed."""
        assert ADCConfig(n_sigma=1e6).n_sigma == 1e6

    def test_the_fixed_ends_are_checked_under_the_fixed_policy_only(self):
        """ADCConfig.__post_init__: ``if self.range_policy is RangePolicy.FIXED and not
        fixed_hi > fixed_lo`` -> the policy test dropped: an unused (equal) fixed range
        refused a full-scale or calibrated converter."""
        assert ADCConfig(fixed_lo=5.0, fixed_hi=5.0).range_policy.value == "full_scale"
        assert ADCConfig(range_policy="calibrated", fixed_lo=9.0, fixed_hi=1.0).fixed_hi == 1.0


# ---------------------------------------------------------------------------------------------
# ChipConfig's combination checks
# ---------------------------------------------------------------------------------------------
_RIPPLE = TechConfig(digital_column="ripple")


def _digital(**changes) -> ChipConfig:
    """A 16 x 16 SRAM digital-CIM chip with ``changes`` set over it."""
    return ChipConfig(**{**_SRAM_DIGITAL, **changes})


def _sensed_rram(**device) -> DeviceConfig:
    return DeviceConfig(cell="rram", bits_per_cell=1, **device)


class TestAnalogSliceCombination:
    def test_ternary_weights_are_refused(self):
        """_check_analog_slices: the ternary check (``if chip.weight_encoding is TERNARY``)
        dropped: 3^s slice weights were taken as binary ones."""
        _refused("ArrayConfig.slice_readout", lambda: ChipConfig(
            weight_encoding="ternary", weight_bits=4, device=DeviceConfig(bits_per_cell=1),
            array=ArrayConfig(slice_readout="analog")))

    def test_any_nonlinearity_is_refused(self):
        """_check_analog_slices: ``nonlinearity is not NONE`` -> ``is SATURATING``: an IR-drop
        (or polynomial) column was combined in analog as if linear."""
        for kind in ("ir_drop", "polynomial"):
            _refused("ArrayConfig.slice_readout", lambda kind=kind: ChipConfig(
                noise=NoiseConfig(nonlinearity=kind), array=ArrayConfig(slice_readout="analog")))

    def test_a_digital_read_out_is_refused(self):
        """_check_analog_slices: the ``adc.kind is DIGITAL`` check dropped (an adder tree has
        no analog weighting)."""
        _refused("ArrayConfig.slice_readout",
                 lambda: _digital(array=ArrayConfig(n_rows=16, n_cols=16, cols_per_adc=1,
                                                    slice_readout="analog")))


class TestDigitalReadOut:
    def test_a_multi_level_resistive_cell_is_refused(self):
        """_check_digital_readout: ``if chip.device.bits_per_cell != 1`` dropped: a 2-b RRAM
        cell (a cell the digital read-out allows) was summed as if it held one bit."""
        _refused("DeviceConfig.bits_per_cell",
                 lambda: _digital(device=DeviceConfig(cell="rram", bits_per_cell=2),
                                  adc=ADCConfig(kind="digital", bits=12)))

    def test_a_sensed_resistive_cell_keeps_a_finite_on_off_ratio(self):
        """_check_digital_readout: ``if name == "on_off_ratio" and (cell.resistive or value ==
        inf)`` -> the resistive test dropped: a sensed RRAM bit's on/off ratio (its sense
        margin, not summed) was refused."""
        chip = _digital(device=_sensed_rram(on_off_ratio=10.0))
        assert chip.device.on_off_ratio == 10.0

    def test_a_bit_cell_s_on_off_ratio_must_be_infinite_not_just_large(self):
        """_check_digital_readout: ``value == math.inf`` -> ``value > 1e9``: an SRAM cell
        with a finite 1e10 on/off ratio (an off-state current that would be summed) passed."""
        _refused("DeviceConfig.on_off_ratio", lambda: _digital(
            device=DeviceConfig(cell="sram", bits_per_cell=1, on_off_ratio=1e10)))

    def test_a_too_narrow_width_of_bit_serial_inputs_names_no_slices(self):
        """_check_digital_readout: ``slices = ... if d > 1 else ""`` -> always: a bit-serial
        chip's message spoke of "1-b input slices". 16 rows: 2·16 + 1 = 33 sums, 6 bits."""
        with pytest.raises(ConfigError, match=r">= 6 for kind = 'digital' on 16 rows per "
                           r"conversion \(the digital"):
            _digital(adc=ADCConfig(kind="digital", bits=5))

    def test_comparator_noise_is_refused(self):
        """_check_digital_readout's sections: ``comparator_noise_lsb`` dropped from the ADC's
        errors: an adder tree took a comparator's noise."""
        _refused("ADCConfig.comparator_noise_lsb",
                 lambda: _digital(adc=ADCConfig(kind="digital", bits=8,
                                                comparator_noise_lsb=0.5)))

    def test_a_drift_compensation_is_refused(self):
        """_check_digital_readout's sections: ``drift_compensation`` dropped from the device's
        fields: a sensed RRAM bit took a drift gain (nothing drifts in an exact sum)."""
        _refused("DeviceConfig.drift_compensation",
                 lambda: _digital(device=_sensed_rram(drift_compensation="global")))


class TestRippleColumn:
    def test_the_guard_columns_follow_the_rows_per_conversion(self):
        """ripple_guard_columns: ``log2(rows_per_group)`` -> ``log2(n_rows)``: 128 rows summed
        16 at a time need ceil(log2 16) = 4 guard columns, not 7."""
        from cimsim.config import ripple_guard_columns

        chip = _digital(array=ArrayConfig(n_rows=128, n_cols=16, cols_per_adc=1,
                                          rows_per_conversion=16), tech=_RIPPLE)
        assert ripple_guard_columns(chip) == 4

    def test_a_ripple_column_needs_a_digital_read_out(self):
        """_check_digital_column: ``if ripple and adc.kind is not DIGITAL`` dropped: an SRAM
        chip with a SAR converter (one column per ADC) took full adders in its cells."""
        _refused("TechConfig.digital_column", lambda: ChipConfig(
            device=DeviceConfig(cell="sram", bits_per_cell=1),
            array=ArrayConfig(n_rows=16, n_cols=16, cols_per_adc=1), tech=_RIPPLE))

    def test_whole_inputs_of_one_bit_are_bit_serial(self):
        """_check_digital_column: ``chip.dac_bits != 1`` -> ``chip.dac.bits != 1``: 1-b inputs
        driven whole (dac.bits 'all', None) are one bit per cycle, yet were refused."""
        chip = _digital(input_bits=1, dac=DACConfig(bits=None), tech=_RIPPLE)
        assert chip.dac_bits == 1

    def test_the_registers_are_bounded_by_the_rows_per_conversion(self):
        """_check_digital_column: ``regs > rows_per_group`` -> ``regs > n_rows``: 5 registers
        on a column that sums 4 rows per conversion were taken (16 rows in all)."""
        array = ArrayConfig(n_rows=16, n_cols=16, cols_per_adc=1, rows_per_conversion=4)
        assert _digital(array=array, tech=_RIPPLE.replace(pipeline_registers_per_column=4))
        _refused("TechConfig.pipeline_registers_per_column", lambda: _digital(
            array=array, tech=_RIPPLE.replace(pipeline_registers_per_column=5)))


class TestPhysicalSupply:
    def test_a_supply_below_the_threshold_is_refused_when_the_chip_is_built(self):
        """ChipConfig.__post_init__: the ``check_supply`` call under ``cost_model =
        'physical'`` dropped: a 0.1-V chip was built, to fail (or price nonsense) later. The
        tables model reads no threshold: the same supply builds there."""
        _refused("tech.vdd_v", lambda: ChipConfig(tech=TechConfig(cost_model="physical",
                                                                  vdd_v=0.1)))
        assert ChipConfig(tech=TechConfig(vdd_v=0.1)).tech.vdd_v == 0.1


class TestCellKindFamily:
    def test_a_7t_sram_cell_prices_an_sram_cell(self):
        """_CMOS_KINDS without ``sram_7t``: an SRAM chip priced as a 7T cell (its own family)
        was refused as another family's cell."""
        chip = ChipConfig(device=DeviceConfig(cell="sram", bits_per_cell=1),
                          tech=TechConfig(cost_model="physical", cell_kind="sram_7t"))
        assert chip.tech.cell_kind.value == "sram_7t"


class TestPricedCell:
    def test_an_ideal_cell_priced_as_rram_takes_parallel_devices(self):
        """_priced_cell: ``kind.value in _NVM_KINDS if kind is not None else ...`` -> the
        simulated cell only: an ideal cell priced as ``rram_1t1r`` (a resistive cell to the
        estimator) was refused two devices per cell."""
        chip = ChipConfig(device=DeviceConfig(cell="ideal"),
                          tech=TechConfig(cost_model="physical", cell_kind="rram_1t1r",
                                          devices_per_cell=2))
        assert chip.tech.devices_per_cell == 2


# ---------------------------------------------------------------------------------------------
# derived quantities, error sources
# ---------------------------------------------------------------------------------------------
class TestDerived:
    def test_the_input_planes_round_up(self):
        """ChipConfig.n_planes: ``-(-input_bits // dac_bits)`` -> ``input_bits // dac_bits``:
        8-b inputs 3 bits at a time take ceil(8 / 3) = 3 planes, not 2."""
        assert ChipConfig(dac=DACConfig(bits=3)).n_planes == 3
        assert ChipConfig(input_bits=1).n_planes == 1

    def test_error_sources_name_the_ir_drop_and_negative_errors(self):
        """ERROR_FIELDS without ``ir_drop_beta``; _is_set's ``value != 0`` -> ``value > 0``
        (a negative gain or offset error is an error too)."""
        from cimsim.config import error_sources

        chip = ChipConfig(noise=NoiseConfig(nonlinearity="ir_drop", ir_drop_beta=0.1),
                          adc=ADCConfig(gain_error=-0.01, offset_error_lsb=-0.5))
        assert error_sources(chip) == ("noise.nonlinearity", "noise.ir_drop_beta",
                                       "adc.gain_error", "adc.offset_error_lsb")


# ---------------------------------------------------------------------------------------------
# from_dict's default rules, unstated_inputs
# ---------------------------------------------------------------------------------------------
class TestLoadDefaults:
    def test_a_digital_read_out_s_width_follows_the_rows_per_conversion(self):
        """_digital_bits_by_default: ``adder_tree_bits(rows_per_group, ...)`` -> ``(n_rows,
        ...)``: 256 rows summed 16 at a time need ceil(log2(2·16 + 1)) = 6 bits, not 10."""
        chip = ChipConfig.from_dict({"device": {"cell": "sram"}, "adc": {"kind": "digital"},
                                     "array": {"rows_per_conversion": 16}})
        assert chip.adc.bits == 6


class TestUnstatedInputs:
    def test_an_empty_scope_is_refused(self):
        """unstated_inputs: ``scope not in ("macro", "chip")`` -> ``("macro", "chip", "")``:
        an empty scope was read as the macro's."""
        from cimsim.config import unstated_inputs

        with pytest.raises(ConfigError, match="scope"):
            unstated_inputs("ideal", scope="")

    def test_a_digital_read_out_names_neither_a_unit_capacitor_nor_a_second_pulse(self):
        """unstated_inputs: ``charge_column`` without its ``adc.kind is not DIGITAL`` (a
        charge-domain digital macro was told of a unit capacitor it does not have), and the
        analog read pulse's entry without it (a sensed MRAM digital macro got a second
        ``tech.t_read_ns`` entry)."""
        from cimsim.config import unstated_inputs

        digital = {"adc.kind": "digital", "device.bits_per_cell": 1, "dac.bits": 1,
                   "tech.cost_model": "physical"}
        sram = unstated_inputs("ideal", overrides={**digital, "device.cell": "sram",
                                                   "tech.compute_domain": "charge"})
        assert not any(u.startswith("tech.cap_unit_ff") for u in sram)
        mram = unstated_inputs("ideal", overrides={**digital, "device.cell": "mram"})
        assert sum(u.startswith("tech.t_read_ns") for u in mram) == 1

    def test_the_read_pulse_is_named_only_where_it_is_priced(self, tmp_path):
        """unstated_inputs: ``if read_pulse_priced(loaded)`` -> always: an SRAM macro driven
        in amplitude (a bit-line discharge, no pulse length) under the physical model was
        said to rest on the default read pulse; a resistive one does."""
        from cimsim.config import unstated_inputs

        path = tmp_path / "c.toml"
        path.write_text('[device]\ncell = "sram"\n[tech]\ncost_model = "physical"\n')
        assert not any(s.startswith("tech.t_read_ns") for s in unstated_inputs(path))
        path.write_text('[device]\ncell = "rram"\n[tech]\ncost_model = "physical"\n')
        assert "tech.t_read_ns = 10.0 (the read pulse the cells' energy is priced over; the " \
            "window lasts no less)" in unstated_inputs(path)


# ---------------------------------------------------------------------------------------------
# list_presets, load_chip and its overrides
# ---------------------------------------------------------------------------------------------
class TestPresetsAndLoading:
    def test_the_preset_list_holds_the_toml_files_only(self):
        """list_presets: ``if p.name.endswith(".toml")`` dropped: the ``published`` folder was
        listed as a preset named "publ" (its name less five characters)."""
        from importlib import resources

        from cimsim.config import list_presets

        root = resources.files("cimsim") / "presets"
        names = list_presets()
        assert "ideal" in names
        assert all((root / f"{n}.toml").is_file() for n in names)
        assert all((root / f"{n}.toml").is_file() for n in list_presets(published=True))

    def test_a_chip_config_given_for_a_name_is_named_as_such(self):
        """_chip_data: the ``isinstance(name_or_path, ChipConfig)`` branch dropped: the message
        printed the chip's whole repr instead of saying a ChipConfig is not taken here."""
        from cimsim.config import load_chip

        with pytest.raises(ConfigError, match="chip = a ChipConfig is invalid here"):
            load_chip(ChipConfig())

    def test_a_published_name_wins_over_a_file_of_that_name(self, tmp_path, monkeypatch):
        """_chip_data: ``preset = name in every`` -> ``in names`` (the bundled presets only): a
        file ./published/NAME in the working folder hid the published macro of that name."""
        from cimsim.config import list_presets, load_chip

        name = list_presets(published=True)[0]
        monkeypatch.chdir(tmp_path)
        (tmp_path / "published").mkdir()
        (tmp_path / name).write_text("not toml [")
        assert load_chip(name).name

    def test_a_path_without_a_suffix_is_a_file_not_a_preset(self, tmp_path, monkeypatch):
        """_chip_data: ``isinstance(name_or_path, Path) or ...`` dropped: a relative Path with
        no suffix that does not exist was called an unknown preset, not a missing file."""
        from pathlib import Path

        from cimsim.config import load_chip

        monkeypatch.chdir(tmp_path)
        with pytest.raises(ConfigError, match="chip file 'no-such-chip' not found"):
            load_chip(Path("no-such-chip"))

    def test_a_blank_name_is_an_empty_name(self):
        """_chip_data: ``if not str(name_or_path).strip()`` -> ``if not str(name_or_path)``:
        a name of spaces was looked up as an unknown preset."""
        from cimsim.config import load_chip

        with pytest.raises(ConfigError, match="chip name is empty"):
            load_chip("   ")


class TestOverrides:
    def test_a_bare_word_keeps_its_case(self):
        """_overridden: a bare word (not TOML) is taken as the string written; ``text`` ->
        ``text.lower()`` changed a name set with ``--set name=MyChip``."""
        from cimsim.config import load_chip

        assert load_chip("ideal", overrides=["name=MyChip"]).name == "MyChip"

    def test_spaces_around_the_equals_sign_are_dropped(self):
        """_overridden: ``text.strip()`` -> ``text``: ``adc.kind = flash`` kept the space
        before the bare word, and " flash" was refused as no converter kind."""
        from cimsim.config import load_chip

        assert load_chip("ideal", overrides=["adc.kind = flash"]).adc.kind.value == "flash"

    def test_a_name_of_two_dots_is_a_malformed_override(self):
        """_overridden: ``key.rpartition(".")`` -> ``key.partition(".")``: ``adc.x.y=1`` was
        read as field "x.y" of [adc] (an unknown key) instead of a malformed TABLE.FIELD."""
        from cimsim.config import load_chip

        with pytest.raises(ConfigError, match=r"--set 'adc\.x\.y=1' is invalid; allowed: TABLE"):
            load_chip("ideal", overrides=["adc.x.y=1"])

    def test_the_set_note_holds_each_override_stripped(self):
        """_overridden: ``" ".join(str(o).strip() ...)`` -> unstripped: the note read
        "(with --set  adc.bits=5 )"."""
        from cimsim.config import load_chip

        chip = load_chip("ideal", overrides=[" adc.bits=5 "])
        assert chip.description.endswith(" (with --set adc.bits=5)")

    def test_the_last_set_note_is_the_one_cut(self):
        """_split_set_note: ``rpartition`` -> ``partition``: a description holding two notes (a
        saved overridden chip, overridden again) was cut at the first one."""
        from cimsim.config import set_overrides, without_set_note

        text = "x (with --set adc.bits=5) (with --set weight_bits=4)"
        assert without_set_note(text) == "x (with --set adc.bits=5)"
        assert set_overrides(text) == ["weight_bits=4"]

    def test_a_description_file_without_one_gets_no_note(self, tmp_path):
        """_overridden: ``isinstance(out.get("description"), str) and ...`` dropped: a file
        that writes no description failed with a KeyError when overridden."""
        from cimsim.config import load_chip

        path = tmp_path / "c.toml"
        path.write_text('name = "c"\n')
        chip = load_chip(path, overrides=["adc.bits=5"])
        assert chip.adc.bits == 5 and chip.description == ""

    def test_a_plain_enum_member_is_set_as_its_value(self):
        """_override_text: ``if isinstance(value, enum.Enum): value = value.value`` dropped: a
        member of an enum that is not a ``str`` (a user's own) was refused as not writable."""
        import enum

        from cimsim.config import load_chip

        class Kind(enum.Enum):
            FLASH = "flash"

        assert load_chip("ideal", overrides={"adc.kind": Kind.FLASH}).adc.kind.value == "flash"

    def test_a_negative_infinity_is_written_as_one(self):
        """_toml_value: ``"inf" if value > 0 else "-inf"`` -> ``"inf"``: an override of -inf
        was written (and refused, and named) as +inf."""
        from cimsim.config import load_chip

        with pytest.raises(ConfigError, match=r"fixed_lo = -inf is invalid"):
            load_chip("ideal", overrides={"adc.fixed_lo": -math.inf})

    def test_as_chip_takes_a_path(self, tmp_path):
        """as_chip: ``isinstance(chip, (str, Path))`` -> ``isinstance(chip, str)``: a
        ``pathlib.Path`` to a chip file was refused as not a chip."""
        from pathlib import Path

        from cimsim.config import as_chip

        path = tmp_path / "c.toml"
        path.write_text('name = "c"\n')
        assert isinstance(path, Path) and as_chip(path).name == "c"

    def test_the_set_note_keeps_a_value_holding_a_space_whole(self):
        """set_overrides: the split before each ``name=`` -> a split at every space: a name
        set to "a b" came back as two overrides, ``name="a`` and ``b"``."""
        from cimsim.config import load_chip, set_overrides

        chip = load_chip("ideal", overrides=['name="a b"', "adc.bits=5"])
        assert chip.name == "a b"
        assert set_overrides(chip.description) == ['name="a b"', "adc.bits=5"]


class TestPublishedNameHint:
    """``load_chip("diana-jssc23")``: ``published/diana-jssc23`` is bundled, and _chip_data
    had a fallback for exactly this (``p.endswith("/" + name)``), but difflib's nearest name
    was tried first and always found one, so the message said "did you mean 'jia-jssc20'?",
    another chip (likewise chiu-jssc20 -> jia-jssc20, lee-vlsi22 -> wang-vlsi22); the
    published macro's name is now tried first (a real bug this round found, fixed)."""

    def test_the_hint_names_the_published_macro(self):
        from cimsim.config import load_chip

        for name in ("diana-jssc23", "chiu-jssc20", "lee-vlsi22"):
            with pytest.raises(ConfigError, match=rf"did you mean 'published/{name}'\?"):
                load_chip(name)

    def test_a_typo_still_gets_the_nearest_name(self):
        from cimsim.config import load_chip

        with pytest.raises(ConfigError, match=r"did you mean 'published/chiu-jssc20'\?"):
            load_chip("chiu-jssc2")
        with pytest.raises(ConfigError, match=r"did you mean 'rram-22nm'\?"):
            load_chip("rram-22mn")
        # a bundled preset that shares a published macro's name is meant by its own name
        with pytest.raises(ConfigError, match=r"did you mean 'wang-vlsi22'\?"):
            load_chip("wang-vlsi2")


class TestWeightEncodingChecks:
    def test_one_ternary_digit_is_a_one_bit_weight(self):
        """_check_binary_weights: ``weight_bits == 1 and not binary and encoding is not
        TERNARY`` -> the ternary exception dropped: a ternary weight {-1, 0, +1} (one digit)
        was refused."""
        chip = ChipConfig(weight_bits=1, weight_encoding="ternary",
                          device=DeviceConfig(bits_per_cell=1))
        assert chip.weight_bits == 1

    def test_binary_weights_are_one_bit_only(self):
        """_check_binary_weights: ``if binary and chip.weight_bits != 1`` dropped: 2-b
        'binary' weights (a cell holds ±1 only) were built."""
        _refused("ChipConfig.weight_bits", lambda: ChipConfig(
            weight_bits=2, weight_encoding="binary", device=DeviceConfig(bits_per_cell=1)))


class TestReadSupply:
    def test_a_bit_cell_has_no_read_supply(self):
        """_check_devices_per_cell: ``if supply is not None and not resistive`` dropped: an
        SRAM bit-cell (no read current drawn) took a read supply, silently unused."""
        _refused("TechConfig.read_supply_v", lambda: ChipConfig(
            device=DeviceConfig(cell="sram", bits_per_cell=1),
            tech=TechConfig(read_supply_v=0.8)))


class TestTomlWriter:
    def test_str_is_the_toml_without_its_last_newline(self):
        """_Config.__str__: ``.rstrip("\\n")`` dropped: print(chip) ended in a blank line."""
        chip = ChipConfig()
        assert str(chip) == chip.to_toml()[:-1] and not str(chip).endswith("\n")

    def test_each_table_follows_a_blank_line(self):
        """_dump_toml: ``lines.append("")`` before each ``[table]`` dropped: the saved file ran
        its tables together."""
        text = ChipConfig().to_toml()
        assert "\n\n[array]\n" in text and "\n\n[quant]\n" in text

    def test_an_empty_top_level_string_is_written(self):
        """_dump_toml: the top-level lines for falsy values dropped (``... and v``): a chip
        named "" came back named "custom", the default."""
        chip = ChipConfig(name="", description="d")
        assert "name = \"\"" in chip.to_toml()
        assert _round_trip(chip) == chip


# ---------------------------------------------------------------------------------------------
# pickles
# ---------------------------------------------------------------------------------------------
class TestPositionalPickle:
    def test_a_section_added_since_takes_a_fresh_default(self):
        """_set_named_state: ``value = f.default_factory()`` -> ``None``: a chip pickled by
        position before its last section (``quant``) existed read back with ``quant = None``
        instead of a default QuantConfig."""
        import dataclasses

        chip = ChipConfig(weight_bits=4)
        names = [f.name for f in dataclasses.fields(chip)]
        assert names[-1] == "quant"
        old = tuple(getattr(chip, n) for n in names[:-1])
        back = object.__new__(ChipConfig)
        back.__setstate__(old)
        assert back.quant == QuantConfig() and back == chip


# ---------------------------------------------------------------------------------------------
# the warning for physical-only fields under the tables model
# ---------------------------------------------------------------------------------------------
class TestPhysicalOnlyWarning:
    @pytest.mark.parametrize(("field", "value"), [("cell_area_f2", 50.0),
                                                  ("window_stated", False)])
    def test_each_physical_only_field_is_named(self, field, value):
        """_PHYSICAL_ONLY_TECH without ``cell_area_f2`` or ``window_stated``: a description
        under the tables model writing one (a value no figure then reads) was not told."""
        with pytest.warns(UserWarning, match=rf"\[tech\] {field} is read by the physical"):
            ChipConfig.from_dict({"tech": {field: value}})

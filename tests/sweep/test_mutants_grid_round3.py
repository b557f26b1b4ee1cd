"""Tests written for the survivors of a third hand-made mutation round over the grid of a sweep
(``cimsim/sweep/grid.py``: ``field_problem``, ``grid_values``, ``chip_for_point``,
``resolve_point``, ``identity`` and their helpers), aimed at what the two earlier rounds
(``test_mutants_sweep_report.py``, ``test_mutants_sweep_round2.py``) left unpinned. The
``ideal`` preset and tiny points, no model run; each docstring names the line and the change
it kills. ``TestRealBug...`` classes pin wrong behaviour of the current code (strict xfail)."""

from __future__ import annotations

import numpy as np
import pytest

import cimsim
from cimsim.errors import ConfigError
from cimsim.sweep.grid import (
    chip_for_point,
    field_problem,
    grid_values,
    identity,
    resolve_point,
)


@pytest.fixture(scope="module")
def ideal():
    return cimsim.load_chip("ideal")


@pytest.fixture(scope="module")
def digital():
    return cimsim.load_chip("published/fujiwara-isscc22")  # digital read-out, 64 rows, 8 b


class TestFieldProblemRound3:
    def test_a_non_string_axis_is_refused_as_not_a_name(self):
        """grid.py ``field_problem``: the ``not isinstance(axis, str)`` check dropped let an
        int axis reach ``axis.partition``: an AttributeError instead of the ConfigError."""
        assert field_problem(4) == "not a name"
        with pytest.raises(ConfigError, match=r"unknown sweep axis/axes \['4'\] \(4: not a "
                                              r"name\)"):
            grid_values({4: [1]})

    def test_the_chip_name_is_words_not_hardware(self):
        """grid.py ``field_problem``: ``axis in _NOT_SWEPT`` -> ``_NOT_SWEPT[1:]`` (``name``
        is a top-level field of the chip, so it was swept as hardware)."""
        assert field_problem("name") == "words, not hardware"
        with pytest.raises(ConfigError, match=r"'name': words, not hardware"):
            grid_values({"name": ["a", "b"]})

    def test_a_dotted_field_name_is_split_at_its_first_dot(self):
        """grid.py ``field_problem``: ``axis.partition('.')`` -> ``rpartition`` (the table of
        ``'array.n_rows.x'`` read as ``'array.n_rows'``)."""
        assert field_problem("array.n_rows.x") == "no field 'n_rows.x' in [array]"


class TestWithFieldsRound3:
    def test_a_field_set_to_none_is_left_unwritten(self, ideal):
        """grid.py ``_with_fields_cached``: the ``pop(name, None)`` of a None field dropped
        (the chip's own value stayed written: ``dac.bits`` None kept the preset's 1 b)."""
        grouped = ideal.replace(array=ideal.array.replace(rows_per_conversion=64))
        variant = chip_for_point(grouped, {"array.rows_per_conversion": None})
        assert variant.array.rows_per_conversion is None
        assert variant.array.n_rows == grouped.array.n_rows
        assert resolve_point(grouped, {"array.rows_per_conversion": None})[
            "array.rows_per_conversion"] is None


class TestZeroDimArrayAxis:
    def test_a_zero_dim_array_is_one_value(self):
        """grid.py ``grid_values``: a 0-d NumPy array (``np.array(4)``, what ``np.asarray`` of
        a single number gives) is an ``Iterable`` by ``isinstance`` but cannot be iterated (a
        bare TypeError, 'iteration over a 0-d array'); now one value like the NumPy scalar
        ``np.int64(4)`` (a list of one)."""
        assert grid_values({"adc_bits": np.int64(4)}) == {"adc_bits": [4]}
        assert grid_values({"adc_bits": np.array(4)}) == {"adc_bits": [4]}


class TestNumpyIntArraySize:
    def test_a_numpy_int_array_size_lowers_the_shared_columns(self, ideal):
        """grid.py ``chip_for_point`` / ``_cols_per_adc``: ``isinstance(s, int)`` is False for
        ``np.int64(4)`` (a value of ``np.arange``), so a chip with 8 columns per ADC (or 16
        rows per conversion) was refused ("ArrayConfig.cols_per_adc = 8 is invalid", a field
        the point does not set) where ``array_size`` 4 gives the 4-column chip, and
        ``resolve_point`` said 8 columns. The point's NumPy values are now Python ones, as
        ``grid_values`` gives them."""
        wide = ideal.replace(array=ideal.array.replace(cols_per_adc=8, rows_per_conversion=16))
        want = chip_for_point(wide, {"array_size": 4})
        assert chip_for_point(wide, {"array_size": np.int64(4)}) == want
        assert resolve_point(wide, {"array_size": np.int64(4)})["cols_per_adc"] == 4


class TestAsWrittenRound3:
    def test_none_for_a_field_that_cannot_be_none_is_refused_by_name(self, ideal):
        """grid.py ``_as_written``: ``ValueError`` dropped from the caught errors (the chip's
        own ConfigError, a ValueError, escaped in place of the sweep's message)."""
        with pytest.raises(ConfigError, match=r"^input_bits = None is invalid; allowed: a "
                                              r"value as a chip file writes it$"):
            chip_for_point(ideal, {"input_bits": None})

    def test_dac_bits_none_is_all_as_a_file_writes_it(self, ideal):
        """grid.py ``_as_written``: ``return written.get(name)`` -> ``return None`` (``dac.bits``
        None, written ``'all'``, left the field out: the default 1-b DAC)."""
        assert ideal.dac.bits == 1
        assert chip_for_point(ideal, {"dac.bits": None}).dac.bits is None
        assert resolve_point(ideal, {"dac.bits": None})["dac.bits"] == "all"
        assert identity(ideal, {"dac.bits": None})["dac.bits"] == "all"


class TestUnwrittenDefaultsCacheRound3:
    def test_a_digital_points_chip_leaves_the_cached_description_whole(self, digital):
        """grid.py ``_with_fields_cached``: ``copy.deepcopy(_unwritten_defaults(chip))`` ->
        ``dict(...)`` (the digital chip's ``adc.bits`` was popped from the cached
        description itself)."""
        import copy

        from cimsim.sweep.grid import _unwritten_defaults

        before = copy.deepcopy(_unwritten_defaults(digital))
        assert chip_for_point(digital, {"dac.bits": 2}).adc.bits == 9
        assert _unwritten_defaults(digital) == before


class TestHoldsCellLsbRound3:
    """``identity`` marks ``cell_lsb`` where the point's ``bits_per_cell`` rescales a value
    the chip gives in cell-LSB (the round-2 tests pinned the fixed ADC range and the Gaussian
    variation; these the point's thermal noise, the retention sigma and the bits' change)."""

    def test_a_swept_thermal_noise_is_held_in_cell_lsb(self, ideal):
        """grid.py ``_holds_cell_lsb``: ``resolved['thermal_sigma_lsb']`` dropped, or read from
        the base chip (noise-free: a point's own noise went unmarked)."""
        assert ideal.noise.thermal_sigma_lsb == 0 and ideal.device.bits_per_cell == 2
        assert identity(ideal, {"bits_per_cell": 1, "thermal_sigma_lsb": 0.5})[
            "cell_lsb"] == "held"
        assert "cell_lsb" not in identity(ideal, {"bits_per_cell": 1, "thermal_sigma_lsb": 0.0})

    def test_a_retention_sigma_is_held_in_cell_lsb(self, ideal):
        """grid.py ``_holds_cell_lsb``: ``or dev.retention_sigma_lsb`` dropped."""
        chip = ideal.replace(device=ideal.device.replace(retention_sigma_lsb=0.1))
        assert identity(chip, {"bits_per_cell": 1})["cell_lsb"] == "held"

    def test_only_a_changed_bits_per_cell_holds(self, ideal):
        """grid.py ``_holds_cell_lsb``: the ``bits_per_cell != dev.bits_per_cell`` condition
        dropped (a noisy chip at its own bits per cell was marked, and rerun)."""
        noisy = ideal.replace(noise=ideal.noise.replace(thermal_sigma_lsb=0.5))
        assert "cell_lsb" not in identity(noisy, {"bits_per_cell": 2})
        assert "cell_lsb" not in identity(noisy, {"adc_bits": 8})
        assert identity(noisy, {"bits_per_cell": 1})["cell_lsb"] == "held"


class TestResolvePointRound3:
    def test_the_named_axes_follow_the_points_fields(self, ideal):
        """grid.py ``resolve_point``: ``base = own or chip`` -> ``chip`` (the array's rows set
        by a field were not read), ``a.n_rows if a.n_rows == a.n_cols else None`` ->
        ``a.n_rows`` (a 32 x 256 array said size 32), and ``time_s`` read from the base chip's
        ``drift_t0_s`` rather than the point's."""
        out = resolve_point(ideal, {"array.n_rows": 32})
        assert out["array_size"] is None and out["array.n_rows"] == 32
        assert resolve_point(ideal, {"array.n_rows": 32, "array.n_cols": 32})[
            "array_size"] == 32
        assert resolve_point(ideal, {"device.drift_t0_s": 2.0})["time_s"] == 2.0

    def test_a_slice_readout_is_its_plain_name(self, ideal):
        """grid.py ``resolve_point``: ``parse_slice_readout(value).value`` -> the enum itself
        (the column held a ``SliceReadout``, not its lower-case name)."""
        value = resolve_point(ideal, {"slice_readout": " ANALOG "})["slice_readout"]
        assert value == "analog" and type(value) is str

    def test_a_time_too_large_for_a_float_is_kept_as_given(self, ideal):
        """grid.py ``resolve_point``: ``contextlib.suppress(OverflowError)`` emptied (``10**400``
        raised OverflowError there, before the point's chip refused it naming ``time_s``)."""
        assert resolve_point(ideal, {"time_s": 10**400})["time_s"] == 10**400
        with pytest.raises(ConfigError, match="time_s = "):
            chip_for_point(ideal, {"time_s": 10**400})

    def test_a_digital_chips_adder_tree_follows_the_swept_rows(self, digital):
        """grid.py ``resolve_point``: the digital ``array_size`` branch dropped (the row said
        the base chip's 8-b tree for 32 rows, which need 7 b), and its
        ``suppress(ConfigError)`` dropped (an impossible size raised here)."""
        assert digital.adc.bits == 8
        assert resolve_point(digital, {"array_size": 32})["adc_bits"] == 7
        assert chip_for_point(digital, {"array_size": 32}).adc.bits == 7
        assert resolve_point(digital, {"array_size": 0})["array_size"] == 0


class TestFrozenRound3:
    def test_a_tuple_holding_a_list_is_refused_naming_the_field(self):
        """grid.py ``_frozen``: ``(list, tuple)`` -> ``list`` (a tuple holding a list reached
        the point chips' cache unhashable: a TypeError instead of the field's ConfigError)."""
        pcm = cimsim.load_chip("pcm-22nm")
        levels = (0.1, 0.05, 0.05, 0.05)
        assert chip_for_point(pcm, {"device.drift_nu_mean": levels}).device.drift_nu_mean == \
            levels
        with pytest.raises(ConfigError, match=r"DeviceConfig.drift_nu_mean = "):
            chip_for_point(pcm, {"device.drift_nu_mean": ([0.1], 0.05, 0.05, 0.05)})


class TestParseAdcKindRound3:
    def test_a_non_string_is_refused_listing_the_kinds(self):
        """grid.py ``parse_adc_kind``: the ``isinstance(value, str)`` check dropped (``4``
        raised AttributeError on ``.strip``)."""
        from cimsim.sweep.grid import parse_adc_kind

        for bad in (4, None, ["sar"]):
            with pytest.raises(ConfigError, match=r"is invalid; allowed: one of 'sar'"):
                parse_adc_kind(bad)

    def test_an_empty_level_fit_is_refused(self):
        """grid.py ``parse_adc_kind``: ``if not sep`` -> ``if not fit`` (``'ramp:'`` was a bare
        ramp, its missing fit unsaid)."""
        from cimsim.sweep.grid import parse_adc_kind

        with pytest.raises(ConfigError, match=r"adc_kind 'ramp:': unknown level fit ''"):
            parse_adc_kind("ramp:")


class TestGridValuesRound3:
    def test_a_list_of_pairs_is_refused_as_no_mapping(self):
        """grid.py ``grid_values``: the ``Mapping`` check widened to accept a list (a list of
        pairs failed later with an unhelpful message)."""
        with pytest.raises(ConfigError, match=r"grid = \[\('adc_bits', \[4\]\)\] is invalid; "
                                              r"allowed: a dict of axis -> values"):
            grid_values([("adc_bits", [4])])

    def test_an_unknown_axis_is_refused_here(self):
        """grid.py ``grid_values``: ``_check_field_axes(grid)`` dropped (an unknown axis passed
        into the points)."""
        with pytest.raises(ConfigError, match=r"unknown sweep axis/axes \['foo'\]"):
            grid_values({"foo": [1]})

    def test_fields_are_the_outer_loops_and_numbers_are_python_numbers(self):
        """grid.py ``grid_values``: the chip fields put after the named axes (they are the
        outer loops, in the order given), a scalar not wrapped (``not isinstance(vals,
        Iterable)`` dropped), and ``_plain`` not applied (NumPy ints kept)."""
        from cimsim.sweep.grid import expand_grid

        values = grid_values({"adc_bits": np.arange(3, 5), "input_bits": 4, "dac.bits": [1, 2]})
        assert list(values) == ["input_bits", "dac.bits", "adc_bits"]
        assert values["input_bits"] == [4]
        assert [type(v) for v in values["adc_bits"]] == [int, int]
        points = expand_grid({"adc_bits": [3, 4], "dac.bits": [1, 2]})
        assert points[:2] == [{"dac.bits": 1, "adc_bits": 3}, {"dac.bits": 1, "adc_bits": 4}]

    def test_array_n_cols_beside_array_size_is_refused(self):
        """grid.py ``_check_field_axes``: ``('array.n_rows', 'array.n_cols')`` ->
        ``('array.n_rows',)`` (``array.n_cols`` and ``array_size`` both set the columns)."""
        with pytest.raises(ConfigError, match=r"sweep axes \['array.n_cols'\] with array_size"):
            grid_values({"array_size": [64], "array.n_cols": [32]})
        assert grid_values({"array.n_cols": [32]}) == {"array.n_cols": [32]}


class TestChipForPointRound3:
    def test_no_converter_is_chosen_across_a_digital_read_out(self, ideal, digital):
        """grid.py ``chip_for_point``: ``kind is not DIGITAL`` -> ``kind is SAR`` (a flash ADC
        on a digital macro passed), and the reverse check (``'digital'`` on a SAR chip)
        dropped."""
        with pytest.raises(ConfigError, match=r"^adc_kind 'flash' is invalid for a base chip "
                                              r"with adc.kind = 'digital'"):
            chip_for_point(digital, {"adc_kind": "flash"})
        with pytest.raises(ConfigError, match=r"^adc_kind 'digital' is invalid for a base chip "
                                              r"with adc.kind = 'sar' .*allowed: 'sar', "
                                              r"'flash', 'ramp'"):
            chip_for_point(ideal, {"adc_kind": "digital"})
        assert chip_for_point(digital, {"adc_kind": "digital"}) == digital

    def test_the_adder_tree_follows_the_swept_rows_and_input_slices(self, digital):
        """grid.py ``chip_for_point``: the tree's width over ``rows_per_group`` -> ``n_rows``
        (16 rows per conversion of 32 read as 32), over 1-b inputs rather than the chip's
        ``dac_bits``, and ``'adc_bits' not in point`` dropped (a swept 8 b on 32 rows was
        replaced by the tree's 7 b instead of refused)."""
        assert chip_for_point(digital, {"array_size": 32}).adc.bits == 7
        assert chip_for_point(digital, {"dac.bits": 2, "array_size": 32}).adc.bits == 8
        assert chip_for_point(digital, {"array.rows_per_conversion": 16,
                                        "array_size": 32}).adc.bits == 6
        with pytest.raises(ConfigError, match=r"^adc_bits = 8 is invalid for adc.kind = "
                                              r"'digital' on 32 rows per conversion: .*"
                                              r"allowed: 7$"):
            chip_for_point(digital, {"array_size": 32, "adc_bits": 8})

    def test_an_adder_tree_at_its_exact_width_is_accepted(self, digital):
        """grid.py ``_check_adder_tree``: ``>`` -> ``>=`` (the tree's own width refused), and
        ``need`` over 1-b inputs (9 b for 2-b input slices on 64 rows refused)."""
        assert chip_for_point(digital, {"adc_bits": 8}).adc.bits == 8
        assert chip_for_point(digital, {"dac.bits": 2, "adc_bits": 9}).adc.bits == 9

    def test_a_slice_readout_is_parsed_and_checked(self, ideal):
        """grid.py ``chip_for_point``: ``parse_slice_readout`` dropped (``' Analog '`` reached
        the array as given), and the ``_check_slices_to_combine`` call dropped (a 2-b weight
        on 2-b cells swept to 'analog' was the same chip under another name)."""
        from cimsim.config import SliceReadout

        assert chip_for_point(ideal, {"slice_readout": " Analog "}).array.slice_readout is \
            SliceReadout.ANALOG
        with pytest.raises(ConfigError, match=r"^slice_readout 'analog' reads the same "
                                              r"conversions as the chip's 'digital': a weight "
                                              r"of 2 b on 2-b cells"):
            chip_for_point(ideal.replace(weight_bits=2), {"slice_readout": "analog"})

    def test_bits_per_cell_keeps_the_devices_physics(self, ideal):
        """grid.py ``chip_for_point``: ``with_bits_per_cell`` -> a plain replace of
        ``device.bits_per_cell`` (a thermal noise in cell-LSB kept its number, not its
        current)."""
        noisy = ideal.replace(noise=ideal.noise.replace(thermal_sigma_lsb=0.5))
        assert chip_for_point(noisy, {"bits_per_cell": 1}) == noisy.with_bits_per_cell(1)
        assert chip_for_point(noisy, {"bits_per_cell": 1}).noise.thermal_sigma_lsb != 0.5

    def test_a_swept_thermal_noise_is_set(self, ideal):
        """grid.py ``chip_for_point``: the ``thermal_sigma_lsb`` branch dropped (the point ran
        the base chip's noise-free cells)."""
        assert chip_for_point(ideal, {"thermal_sigma_lsb": 0.5}).noise.thermal_sigma_lsb == 0.5
        noisy = ideal.replace(noise=ideal.noise.replace(thermal_sigma_lsb=0.5))
        assert chip_for_point(ideal, {"thermal_sigma_lsb": 0.5, "bits_per_cell": 1}) == \
            noisy.with_bits_per_cell(1)

    def test_a_time_is_checked_on_a_drifting_device(self):
        """grid.py ``chip_for_point``: ``check_time`` dropped (a time before programming was
        accepted on a device that ages)."""
        pcm = cimsim.load_chip("pcm-22nm")
        assert chip_for_point(pcm, {"time_s": 10.0}) == pcm
        with pytest.raises(ConfigError, match=r"^time_s = -1.0 is invalid; allowed: a finite "
                                              r"time in seconds"):
            chip_for_point(pcm, {"time_s": -1.0})


class TestArraySizeValuesRound3:
    def test_a_non_integer_array_size_is_refused_naming_n_rows(self, ideal):
        """grid.py ``chip_for_point``: ``isinstance(s, int) and`` dropped from the
        ``rows_per_conversion`` lowering (``min(16, '4')`` raised a bare TypeError before the
        array refused the size by name)."""
        grouped = ideal.replace(array=ideal.array.replace(rows_per_conversion=16))
        assert chip_for_point(grouped, {"array_size": 4}).array.rows_per_conversion == 4
        for bad in ("4", 4.0):
            with pytest.raises(ConfigError, match=r"^ArrayConfig.n_rows = .* is invalid"):
                chip_for_point(grouped, {"array_size": bad})


class TestIdentityRound3:
    def test_named_axes_stay_and_later_axes_only_where_they_differ(self, ideal):
        """grid.py ``identity``: ``k not in LATER_AXES or`` dropped (every named axis left the
        id), or ``or v != implied[k]`` dropped (a later axis never in it)."""
        pcm = cimsim.load_chip("pcm-22nm")
        assert identity(pcm, {"time_s": 10.0})["time_s"] == 10.0
        assert "time_s" not in identity(pcm, {"time_s": pcm.device.drift_t0_s})
        ident = identity(ideal, {"adc_bits": 4})
        assert ident["adc_bits"] == 4 and ident["array_size"] == 256
        wide = ideal.replace(array=ideal.array.replace(cols_per_adc=8))
        assert "cols_per_adc" not in identity(wide, {"array_size": 4, "cols_per_adc": 4})
        assert identity(wide, {"array_size": 16, "cols_per_adc": 4})["cols_per_adc"] == 4

    def test_a_field_at_the_base_chips_value_is_left_out(self, ideal):
        """grid.py ``identity``: the ``not _at_base(...)`` condition dropped (``dac.bits`` 1 on
        a 1-b DAC chip gave another id than the chip without that axis)."""
        assert "dac.bits" not in identity(ideal, {"dac.bits": 1})
        assert identity(ideal, {"dac.bits": 2})["dac.bits"] == 2


class TestUnwrittenDefaultsRound3:
    def test_a_python_chip_keeps_a_window_it_states_at_the_defaults_value(self, ideal):
        """grid.py ``_unwritten_defaults``: ``small if _gives(small, chip) else full`` ->
        ``small`` (a chip changed in Python under the physical cost model, stating the
        default 10-ns read pulse, lost it at every point: its window predicted)."""
        mine = ideal.replace(name="mine", description="my chip",
                             tech=ideal.tech.replace(cost_model="physical"))
        assert mine.tech.window_stated
        variant = chip_for_point(mine, {"input_bits": 4})
        assert variant.tech.window_stated
        assert variant == mine.replace(input_bits=4)


class TestFieldValueRound3:
    def test_a_top_level_field_is_read_at_the_top(self, ideal):
        """grid.py ``_field_value``: ``axis.rpartition('.')`` -> ``partition`` (a top-level
        field such as ``input_bits`` was looked up under the key ``''``: None, so its value
        left the row and a value at the chip's own joined the id)."""
        assert resolve_point(ideal, {"input_bits": 4})["input_bits"] == 4
        assert "input_bits" not in identity(ideal, {"input_bits": ideal.input_bits})
        assert identity(ideal, {"input_bits": 4})["input_bits"] == 4

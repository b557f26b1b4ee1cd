"""Tests from a third mutation-testing round over the device and array model
(``cimsim/arrays/{drift,encoding,analog}.py``), aimed at the code the first two rounds
(``tests/test_mutants_core_sim.py``, ``tests/arrays/test_mutants_program_drift.py``) left
unpinned: duration parsing and printing, what counts as a number of seconds, the aging draws,
the slice-weighting row sums of an aged layer, the dtypes of DAC planes and checked inputs,
ternary column kinds and the column non-linearity's slope shapes. Each test pins a behaviour
that a surviving mutant (an operator, bound, constant, cast or statement changed) left
unchecked, with hand-computed or integer references on lossless settings."""

from __future__ import annotations

import importlib

import numpy as np

from cimsim.arrays import analog
from cimsim.arrays.encoding import column_kinds, input_planes
from tests.conftest import ideal_chip

prog = importlib.import_module("cimsim.arrays.program")
drift = importlib.import_module("cimsim.arrays.drift")


def _aging_chip(**device):
    """A small lossless chip (4 rows, 16 columns) with the given device time fields."""
    chip = ideal_chip(n_rows=4, n_cols=16)
    return chip.replace(device=chip.device.replace(**device))


class TestParseDuration:
    def test_a_week_is_seven_days(self):
        """drift.py DURATION_UNITS: ``"w": 604800.0`` changed to 604801.0."""
        assert drift.parse_duration("2w") == 2 * 7 * 86400.0
        assert drift.DURATION_UNITS["w"] == 7 * drift.DURATION_UNITS["d"]

    def test_units_are_read_in_any_case(self):
        """drift.py parse_duration: ``.lower()`` dropped (``1H`` was no duration)."""
        assert drift.parse_duration("1H") == 3600.0
        assert drift.parse_duration(" 3 MIN ") == 180.0
        assert drift.parse_duration("2D") == 172800.0


class TestDurationText:
    def test_three_significant_digits(self):
        """drift.py duration_text: ``:.3g`` changed to ``:.2g``."""
        assert drift.duration_text(4500.0) == "1.25 h"
        assert drift.duration_text(0.125) == "0.125 s"

    def test_weeks_are_left_out(self):
        """drift.py duration_text: ``"w"`` added to the units it prints (two weeks read
        ``2 w``)."""
        assert drift.duration_text(14 * 86400.0) == "14 d"
        assert drift.duration_text(-7 * 86400.0) == "-7 d"


class TestFiniteSeconds:
    def test_numpy_floats_are_seconds(self):
        """drift.py finite_seconds: ``np.floating`` dropped from the accepted types (a
        ``np.float32`` time was no number)."""
        assert drift.finite_seconds(np.float32(2.5)) == 2.5
        assert drift.finite_seconds(np.int64(3)) == 3.0
        assert drift.finite_seconds(np.float64(-np.inf)) is None
        assert drift.finite_seconds("1") is None


class TestAging:
    def test_no_retention_spread_draws_no_directions(self):
        """drift.py attach: ``retention_sigma_lsb > 0`` changed to ``>= 0`` (directions drawn
        for a device without retention loss)."""
        layer = prog.program(np.array([[5, -7, 1]]), _aging_chip(drift_nu_mean=(0.1,)))
        assert layer.aging.nu is not None
        assert layer.aging.z_ret is None
        kept = prog.program(np.array([[5, -7, 1]]), _aging_chip(retention_sigma_lsb=0.5))
        assert kept.aging.nu is None and kept.aging.z_ret.shape == kept.digits_phys.shape


class TestColumnNonlinearityShapes:
    """The slope is an array of ``a``'s shape whatever the non-linearity (the training twin
    multiplies gradients by it element-wise)."""

    A = np.array([[1.0, -2.0, 4.0]])

    def test_the_linear_slope_is_ones_of_the_input_shape(self):
        """analog.py column_nonlinearity_slope: ``xp.ones_like(a)`` changed to ``1.0``."""
        from cimsim.arrays._kernels import NL_NONE

        d = analog.column_nonlinearity_slope(self.A, NL_NONE, 8.0, 0.5, 0.5, np.zeros(2))
        assert isinstance(d, np.ndarray) and d.shape == self.A.shape
        np.testing.assert_array_equal(d, 1.0)
        np.testing.assert_array_equal(
            analog.column_nonlinearity(self.A, NL_NONE, 8.0, 0.5, 0.5, np.zeros(2)), self.A)

    def test_an_all_zero_polynomial_is_linear_with_arrays(self):
        """analog.py _power_series: ``0.0 * u`` (an array) changed to ``0.0`` where no
        coefficient is set (the slope became a scalar)."""
        from cimsim.arrays._kernels import NL_POLYNOMIAL

        args = (NL_POLYNOMIAL, 8.0, 0.5, 0.5, np.zeros(3))
        d = analog.column_nonlinearity_slope(self.A, *args)
        assert isinstance(d, np.ndarray) and d.shape == self.A.shape
        np.testing.assert_array_equal(d, 1.0)
        np.testing.assert_array_equal(analog.column_nonlinearity(self.A, *args), self.A)


class TestPlanes:
    def test_fifteen_bit_planes_still_fit_int16(self):
        """encoding.py input_planes: ``<= 32767`` changed to ``< 32767`` (15-b DAC values,
        0..32767, were stored as int32)."""
        chip = ideal_chip(input_bits=15, dac_bits=15)
        p = input_planes(np.array([[32767, 3]]), chip, False)
        assert (p.value_lo, p.value_hi) == (0, 32767)
        assert p.planes.dtype == np.int16
        np.testing.assert_array_equal(p.planes, [[[32767, 3]]])

    def test_a_signed_sixteen_bit_plane_is_int32(self):
        """encoding.py input_planes: the dtype chosen by ``abs(hi)`` alone (a signed 16-b
        plane, -32768..32767, is a 16-b plane: int32 as documented)."""
        chip = ideal_chip(input_bits=16, dac_bits=16)
        p = input_planes(np.array([[-32768, 32767, -1]]), chip, True)
        assert (p.value_lo, p.value_hi) == (-32768, 32767)
        assert p.planes.dtype == np.int32
        np.testing.assert_array_equal(p.planes, [[[-32768, 32767, -1]]])


class TestColumnKinds:
    def test_ternary_pairs_by_hand(self):
        """encoding.py column_kinds: the positive ternary cell's polarity +1 changed to -1."""
        # 2 balanced-ternary digits: 4 = 1·3 + 1, -2 = -1·3 + 1, 0
        chip = ideal_chip(encoding="ternary", weight_bits=2, bits_per_cell=1,
                          differential_readout="analog")
        kinds = column_kinds(np.array([[4, -2, 0]]), chip)
        np.testing.assert_array_equal(kinds.polarity, [1, -1, 1, -1])
        np.testing.assert_array_equal(kinds.coef, [1.0, -1.0, 3.0, -3.0])
        np.testing.assert_array_equal(kinds.pair, [1, -1, 3, -1])
        # digits (Q, K, N): kind q of input k
        np.testing.assert_array_equal(kinds.digits[:, :, 0],
                                      [[1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0]])
        assert (kinds.digit_lo, kinds.digit_hi) == (0, 1)

    def test_ternary_weights_beyond_sixteen_bits_recombine(self):
        """encoding.py column_kinds: the weights cast to int16 instead of int32 (an 11-digit
        balanced-ternary weight reaches (3^11 - 1)/2 = 88573)."""
        chip = ideal_chip(encoding="ternary", weight_bits=11, bits_per_cell=1)
        w = np.array([[88573, -88573, 40000, -1]])
        kinds = column_kinds(w, chip)
        assert kinds.n_kinds == 22
        got = np.einsum("q,qkn->nk", kinds.coef, kinds.digits.astype(np.float64))
        np.testing.assert_array_equal(got, w)
        # the top weight is all ones: every positive cell set, no negative one
        np.testing.assert_array_equal(kinds.digits[0::2, 0, 0], 1)
        np.testing.assert_array_equal(kinds.digits[1::2, 0, 0], 0)


class TestCheckInputValues:
    def test_narrow_integer_inputs_come_back_as_int64(self):
        """encoding.py check_input_values: the ``astype(np.int64)`` dropped (int8 inputs came
        back as int8)."""
        from cimsim.arrays.encoding import check_input_values

        x = check_input_values(np.array([[-128, 127, 5]], dtype=np.int8), ideal_chip(), True)
        assert x.dtype == np.int64
        np.testing.assert_array_equal(x, [[-128, 127, 5]])
        u = check_input_values(np.array([[255, 0]], dtype=np.uint8), ideal_chip(), False)
        assert u.dtype == np.int64 and u.tolist() == [[255, 0]]


class TestGainRatio:
    def test_nothing_read_divides_by_nothing(self):
        """drift.py gain_ratio: the inner ``where(ok, rt, 1.0)`` dropped (a conversion that
        reads nothing, an all-zero slice, divided by 0 under a RuntimeWarning)."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = drift.gain_ratio(np.array([2.0, 0.0, 3.0]), np.array([0.0, 0.0, 1.5]))
        np.testing.assert_array_equal(got, [1.0, 1.0, 2.0])


class TestAgedSliceWeighting:
    def test_the_weighted_row_sums_follow_the_drifted_cells(self):
        """drift.py at_time: ``weighted_rowsum`` re-derived from G(t) replaced by the t0 one
        (the slice-weighting energy kept counting the t0 charge)."""
        # 4-b offset weights in 1-b cells, combined 1:2:4:8 in analog; u = w + 8:
        # 5 -> 13 = 1101b (1 + 4 + 8), -3 -> 5 = 0101b (1 + 4); every cell drifts by 100^-0.1
        chip = ideal_chip(n_rows=4, n_cols=16, slice_readout="analog", weight_bits=4,
                          bits_per_cell=1, encoding="offset")
        chip = chip.replace(device=chip.device.replace(drift_nu_mean=(0.1, 0.1)))
        layer = prog.program(np.array([[5, -3]]), chip)
        np.testing.assert_array_equal(layer.weighted_rowsum, [13.0, 5.0])
        aged = layer.with_time(100.0)
        np.testing.assert_allclose(aged.weighted_rowsum, np.array([13.0, 5.0]) * 100.0 ** -0.1,
                                   rtol=1e-6)

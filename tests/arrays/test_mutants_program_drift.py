"""Tests from a second mutation-testing round over the array programming and device model
(``cimsim/arrays/{program,drift,encoding,analog}.py``), aimed at the functions the first round
(``tests/test_mutants_core_sim.py``) left alone: the training twin's ``cell_conductance``,
sensing, stuck-at faults, tiling, the GEMM operands, state levels, aging and the column
non-linearities. Each test pins a behaviour that a surviving mutant (an operator, bound, sign,
stream or argument changed) left unchecked, with hand-computed or integer references."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from cimsim.arrays.encoding import column_kinds, physical_digits
from tests.conftest import ideal_chip
from tests.cost.test_digital_cim import digital_chip

prog = importlib.import_module("cimsim.arrays.program")
drift = importlib.import_module("cimsim.arrays.drift")


def _aging_chip(**device):
    chip = ideal_chip(n_rows=16, n_cols=64, on_off_ratio=16.0)
    return chip.replace(device=chip.device.replace(**device))


class TestCellConductance:
    @pytest.mark.parametrize("variation, sigma", [("gaussian", 1.5), ("lognormal", 0.3)])
    @pytest.mark.parametrize("encoding", ["differential", "signed_cell"])
    def test_the_twin_formula_equals_the_deployed_draws(self, variation, sigma, encoding):
        # cell_conductance (the training twin's, NumPy here) on the draws draw_devices takes
        # from the generator equals _program_conductance's in-place chunks; a large gaussian
        # sigma pushes many cells below 0 (clamped unless bipolar), faults hit digit 0 cells
        chip = ideal_chip(encoding=encoding, variation=variation, variation_sigma=sigma,
                          on_off_ratio=8.0, p_stuck_on=0.2, p_stuck_off=0.2)
        w = np.random.default_rng(2).integers(-127, 128, (9, 23))
        w[:, :3] = 0  # digit-0 cells: a bipolar stuck-on one is +(2^c - 1)
        digits = physical_digits(column_kinds(w, chip))
        want = prog._program_conductance(digits, chip, np.random.default_rng(4))
        d = prog.draw_devices(digits.shape, chip, np.random.default_rng(4))
        got = prog.cell_conductance(digits.astype(np.float64), chip, d.z, d.u)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        if encoding == "signed_cell":
            stuck_on_zero = (d.u < 0.2) & (digits == 0)
            assert stuck_on_zero.any()
            np.testing.assert_array_equal(got[stuck_on_zero], 3.0)
        elif variation == "gaussian":
            assert (got == 0.0).any()  # clamped at 0 (a gaussian draw below -g)


class TestSensing:
    def test_a_sensed_cell_is_drawn_around_its_own_off_current(self):
        # 1-b MRAM sensed to its bit (on/off 2: g_off = 1 cell-LSB): a cell is drawn at
        # d + g_off = 1 or 2 and compared with (1 + 2)/2 = 1.5; a 5 % spread never crosses it,
        # so every sensed bit is the digit
        chip = digital_chip(n_rows=64, cell="mram", on_off_ratio=2.0)
        chip = chip.replace(device=chip.device.replace(variation="lognormal",
                                                       variation_sigma=0.05))
        assert prog.sensing_reference(chip) == 1.5
        assert prog.read_off_conductance(chip) == 1.0 and prog.off_conductance(chip) == 0.0
        w = np.random.default_rng(0).integers(-127, 128, (5, 64))
        layer = prog.program(w, chip, 3)
        np.testing.assert_array_equal(layer.g_phys, layer.digits_phys)

    def test_sram_bit_cells_are_not_sensed(self):
        chip = digital_chip(n_rows=64)
        assert not prog.sensed_cells(chip)
        assert prog.sensing_reference(chip) is None
        assert prog.sensed_cells(digital_chip(n_rows=64, cell="mram", on_off_ratio=2.0))

    def test_a_bipolar_cell_draws_no_off_current(self):
        chip = ideal_chip(encoding="signed_cell", on_off_ratio=4.0)
        assert chip.device.g_off_lsb == 1.0
        assert prog.read_off_conductance(chip) == 0.0
        layer = prog.program(np.array([[-5, 7, 0]]), chip)
        np.testing.assert_array_equal(layer.cell_rowsum,
                                      np.abs(layer.digits_phys).sum(axis=1))

    def test_a_varied_bipolar_layer_reads_the_magnitude_of_its_conductances(self):
        chip = ideal_chip(encoding="signed_cell", variation="gaussian", variation_sigma=0.3)
        layer = prog.program(np.array([[-127, 100, -3], [5, -64, 0]]), chip, 1)
        assert layer.g_phys.min() < 0
        np.testing.assert_allclose(layer.cell_rowsum,
                                   np.abs(layer.g_phys.astype(np.float64)).sum(axis=1))

    def test_stuck_conductances_are_the_stored_float32_values(self):
        chip = ideal_chip(on_off_ratio=16.0)  # g_off = 3/15 = 0.2: not a float32
        on, off = prog.stuck_conductances(chip)
        assert on == float(np.float32(3.2)) and off == float(np.float32(0.2))
        assert off != 0.2


    def test_no_generator_is_seed_zero(self):
        chip = ideal_chip(variation="lognormal", variation_sigma=0.1)
        w = np.array([[5, -7, 1]])
        np.testing.assert_array_equal(prog.program(w, chip).g_phys,
                                      prog.program(w, chip, 0).g_phys)
        assert not np.array_equal(prog.program(w, chip).g_phys, prog.program(w, chip, 1).g_phys)


class TestTiling:
    def test_a_pair_stays_together_when_an_output_overflows_the_array(self):
        # 8 columns per output (differential, 2-b cells) on 7-column arrays: whole pairs
        # only, 6 columns per array
        chip = ideal_chip(n_cols=7)
        layer = prog.program(np.ones((2, 3), dtype=np.int64), chip)
        assert layer.cols_per_tile == 6
        assert layer.n_col_tiles == 3

    def test_row_tiles_must_cover_every_row(self):
        from cimsim.errors import MappingError

        w = np.ones((2, 6), dtype=np.int64)
        with pytest.raises(MappingError, match="cover 0..4, expected 0..6"):
            prog.program(w, ideal_chip(), row_tiles=[(0, 4)])
        assert prog.program(w, ideal_chip(), row_tiles=[(0, 4), (4, 6)]).n_groups == 2

    def test_ripple_guard_columns_by_hand(self):
        # 8-b two's complement in 1-b cells: q = 8 weight columns + log2(256) = 8 guard
        # columns per output: 256 // 16 = 16 outputs x 8 = 128 columns per array
        chip = digital_chip(n_rows=256, digital_column="ripple")
        layer = prog.program(np.ones((3, 4), dtype=np.int64), chip)
        assert layer.cols_per_tile == 128
        # exactly q + guard columns fit
        small = chip.replace(array=chip.array.replace(n_cols=16))
        assert prog.program(np.ones((3, 4), dtype=np.int64), small).cols_per_tile == 8

    def test_analog_slice_readout_reads_q_columns_per_conversion(self):
        chip = ideal_chip(slice_readout="analog", weight_bits=4, bits_per_cell=1,
                          encoding="offset")
        layer = prog.program(np.array([[5, 3], [1, -2]]), chip)
        assert layer.conv_phys.shape == (2, 4)
        np.testing.assert_array_equal(layer.conv_phys, [[0, 1, 2, 3], [4, 5, 6, 7]])


class TestEncoding:
    def test_sixteen_bit_planes_are_int32(self):
        from cimsim.arrays.encoding import input_planes

        chip = ideal_chip(input_bits=16, dac_bits=16)
        p = input_planes(np.array([[65535, 40000, 1]]), chip, False)
        assert p.planes.dtype == np.int32 and (p.value_lo, p.value_hi) == (0, 65535)
        np.testing.assert_array_equal(p.planes[0], [[65535, 40000, 1]])
        assert input_planes(np.array([[255]]), ideal_chip(), False).planes.dtype == np.int16

    def test_one_bit_two_pass_inputs_have_one_plane_per_pass(self):
        from cimsim.arrays.encoding import plane_layout

        sig, lo, hi = plane_layout(ideal_chip(input_bits=1, signed_inputs="two_pass"), True)
        np.testing.assert_array_equal(sig, [1.0, -1.0])
        assert (lo, hi) == (0, 1)


class TestGemmOperands:
    def test_an_uncompensated_off_current_is_not_corrected(self):
        # digital read-out of each column (no analog pair), g_off = 3/15 = 0.2: 'digital'
        # compensation removes g_off·coef per column from the output, 'none' leaves it
        kw = dict(on_off_ratio=16.0, differential_readout="digital")
        none = prog.program(np.array([[3, -5]]), ideal_chip(off_current_compensation="none",
                                                             **kw))
        np.testing.assert_array_equal(none.x_sum_coef, [0.0])
        dig = prog.program(np.array([[3, -5]]), ideal_chip(off_current_compensation="digital",
                                                            **kw))
        # Σ_q coef_q = (1 + 4 + 16 + 64)·(1 - 1) = 0 over the pairs: the correction cancels;
        # offset encoding does not: -128 - 0.2·(1 + 4 + 16 + 64)
        np.testing.assert_allclose(dig.x_sum_coef, [0.0], atol=1e-12)
        off = prog.program(np.array([[3, -5]]), ideal_chip(
            off_current_compensation="digital", encoding="offset", on_off_ratio=16.0))
        np.testing.assert_allclose(off.x_sum_coef, [-128.0 - 0.2 * 85], rtol=1e-12)
        off_none = prog.program(np.array([[3, -5]]), ideal_chip(
            off_current_compensation="none", encoding="offset", on_off_ratio=16.0))
        np.testing.assert_allclose(off_none.x_sum_coef, [-128.0], rtol=1e-12)

    def test_a_pair_is_not_merged_ahead_of_a_column_nonlinearity(self):
        # f(I+) - f(I-) is not f(I+ - I-): each column of a pair keeps its GEMM column
        lin = prog.program(np.array([[5, -7]]), ideal_chip())
        assert lin.gemm_matrix.shape[1] == lin.n_phys_cols // 2
        chip = ideal_chip(noise={"nonlinearity": "saturating", "saturation_fraction": 0.5})
        layer = prog.program(np.array([[5, -7]]), chip)
        assert layer.gemm_matrix.shape[1] == layer.n_phys_cols
        np.testing.assert_array_equal(layer.neg, layer.conv_phys[:, 1])
        assert (layer.neg >= 0).all()

    def test_combined_slices_of_128_are_not_int8(self):
        # offset 8-b in 1-b cells combined 1:2:..:128 in analog: w = 0 stores u = 128
        chip = ideal_chip(slice_readout="analog", weight_bits=8, bits_per_cell=1,
                          encoding="offset")
        layer = prog.program(np.array([[0, -5]]), chip)
        np.testing.assert_array_equal(layer.gemm_matrix[:, 0], [128, 123])
        assert layer.gemm_matrix.dtype == np.float32

    def test_a_bipolar_slice_readout_weights_the_magnitudes(self):
        # 4-b signed cells, 1-b slices weighted 1:2:4: -5 = -(1 + 4), 3 = 1 + 2
        chip = ideal_chip(slice_readout="analog", weight_bits=4, bits_per_cell=1,
                          encoding="signed_cell")
        layer = prog.program(np.array([[-5, 3]]), chip)
        np.testing.assert_array_equal(layer.weighted_rowsum, [5.0, 3.0])

    def test_adc_tables_of_another_conversion_count_are_refused(self):
        from cimsim.adc.tables import ADCTables

        layer = prog.program(np.array([[5, -7]]), ideal_chip())
        g, c = layer.n_groups, layer.n_conversions
        layer.with_adc(ADCTables.linear(np.zeros((g, c)), np.ones((g, c))))
        with pytest.raises(ValueError, match="do not fit"):
            layer.with_adc(ADCTables.linear(np.zeros((g, c + 1)), np.ones((g, c + 1))))


class TestFullScaleAndPlacement:
    def test_column_full_scale_takes_the_larger_input_magnitude(self):
        # signed 8-b inputs in one 8-b DAC plane: -128..127; 16 rows of digits up to 3
        # (2-b cells, g_off 0): 16·128·3
        chip = ideal_chip(dac_bits=8, n_rows=16)
        layer = prog.program(np.array([[5, -7]]), chip, input_signed=True)
        assert layer.column_fs == 16 * 128 * 3

    def test_analog_slice_full_scale_counts_the_signed_off_current(self):
        # 4-b two's complement in 1-b cells combined 1:2:4:-8: a row reads
        # Σ_q w_q·(d_q + g_off) = w + g_off·(1 + 2 + 4 - 8) = w - 1/15, w in -8..7; 1-b
        # inputs (0, 1), 256 rows per conversion
        chip = ideal_chip(encoding="twos_complement", weight_bits=4, bits_per_cell=1,
                          slice_readout="analog", on_off_ratio=16.0,
                          off_current_compensation="digital")
        layer = prog.program(np.array([[1]]), chip)
        assert layer.fs_lo == pytest.approx(256 * (-8 - 1 / 15), rel=1e-12)
        assert layer.fs_hi == pytest.approx(256 * (7 - 1 / 15), rel=1e-12)

    def test_a_layer_output_adc_refuses_two_row_groups(self):
        from cimsim.errors import MappingError
        from tests.conftest import bskmq_chip

        chip = bskmq_chip()
        rows = chip.array.rows_per_group
        prog.program(np.ones((2, rows), dtype=np.int64), chip)  # one group: fine
        with pytest.raises(MappingError, match="layer_output"):
            prog.program(np.ones((2, rows + 1), dtype=np.int64), chip)

    def test_the_cells_key_tells_a_sensed_readout_apart(self):
        mram = digital_chip(n_rows=64, cell="mram", on_off_ratio=2.0)
        assert prog.cells_key(mram)[-1] is True
        assert prog.cells_key(ideal_chip())[-1] is False


class TestTime:
    def test_a_static_device_warns_only_off_t0(self):
        import warnings

        chip = ideal_chip()
        t0 = chip.device.drift_t0_s
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            drift.warn_static_time(t0, chip, "deploy")
        with pytest.warns(UserWarning, match="does not change"):
            drift.warn_static_time(2 * t0, chip, "deploy")


class TestStateLevels:
    def test_a_stuck_off_cell_takes_level_zero_without_stuck_on_faults(self):
        chip = _aging_chip(p_stuck_off=0.1)  # no stuck-on faults
        on, off = prog.stuck_conductances(chip)
        digits = np.array([[3, 2, 1]])
        g_t0 = np.array([[off, 2.2, on]])  # the last is a varied cell that landed on 'on'
        np.testing.assert_array_equal(drift.state_levels(digits, g_t0, chip), [[0, 2, 3]])


class TestAging:
    def test_retention_directions_come_from_the_layers_own_stream(self):
        # drawn from a child of the programming generator (after the exponents): another
        # seed draws other directions, the same seed the same ones
        chip = _aging_chip(retention_sigma_lsb=0.5, drift_nu_mean=(0.1,))
        w = np.array([[5, -7, 1], [0, 3, -2]])
        a, b = (prog.program(w, chip, s).aging.z_ret for s in (1, 2))
        assert not np.array_equal(a, b)
        np.testing.assert_array_equal(a, prog.program(w, chip, 1).aging.z_ret)
        # ideal cells draw nothing at programming: the child's first normals are the
        # exponents' (drawn with or without a spread), the next the retention directions
        child = np.random.default_rng(1).spawn(1)[0]
        child.standard_normal(a.shape)
        np.testing.assert_array_equal(a, child.standard_normal(a.shape))

    def test_retention_does_not_clamp_a_bipolar_cell(self):
        # t = 10·t0: σ_r(t) = σ_r·sqrt(log10 10) = 0.5; G = G0 + 0.5·z
        g0, z = np.array([-2.0, 1.0, 1.0]), np.array([0.0, -10.0, 2.0])
        for enc, want in (("signed_cell", [-2.0, -4.0, 2.0]), ("offset", [0.0, 0.0, 2.0])):
            chip = ideal_chip(encoding=enc)
            chip = chip.replace(device=chip.device.replace(retention_sigma_lsb=0.5))
            t0 = chip.device.drift_t0_s
            got = drift.aged_conductance(g0, 10 * t0, t0, None, z, chip)
            np.testing.assert_allclose(got, want, rtol=1e-12)

    def test_new_conversion_weights_survive_on_an_aging_layer(self):
        chip = _aging_chip(drift_nu_mean=(0.1,), drift_compensation="global")
        layer = prog.program(np.array([[5, -7]]), chip)
        coef = np.array([3.0, 0.5, -6.0, 1.0])[:layer.n_conversions]
        new = layer.with_conv_coef(coef)
        np.testing.assert_array_equal(new.conv_coef, coef)  # at t0: gains 1
        np.testing.assert_array_equal(new.aging.coef_t0, coef)
        aged = new.with_time(3600.0)
        np.testing.assert_allclose(aged.conv_coef, coef * aged.aging.gain, rtol=1e-15)

    def test_an_aged_group_bound_counts_negative_entries(self):
        # merged analog pairs of all-negative weights: every GEMM entry <= 0 after drift
        chip = _aging_chip(drift_nu_mean=(0.1,))
        aged = prog.program(np.array([[-5, -7, -100]]), chip).with_time(3600.0)
        assert aged.gemm_matrix.max() <= 0 < aged.group_abs_max[0]
        assert aged.group_abs_max == (float(np.abs(aged.gemm_matrix).max()),)

    def test_a_pairs_calibration_read_adds_both_columns(self):
        # an analog differential pair is one conversion (+1, -1): the calibration compares
        # the current of both its columns, each read on its own, not their difference
        chip = _aging_chip(drift_nu_mean=(0.1,), drift_compensation="column")
        layer = prog.program(np.array([[5, -7, 1], [0, 3, -2]]), chip)
        assert (layer.conv_weight[:, 1] == -1.0).all()
        g = layer.digits_phys.astype(np.float64) + chip.device.g_off_lsb
        col = g.sum(axis=0)
        want = col[layer.conv_phys[:, 0]] + col[layer.conv_phys[:, 1]]
        np.testing.assert_allclose(drift._column_reads(layer, g), want, rtol=1e-12)

    def test_a_bipolar_columns_calibration_read_is_its_magnitude(self):
        # a negative bipolar conductance still draws current: a column reads Σ_k |G[k, j]|
        chip = ideal_chip(encoding="signed_cell")
        chip = chip.replace(device=chip.device.replace(drift_nu_mean=(0.1,),
                                                       drift_compensation="column"))
        layer = prog.program(np.array([[5, -7, 1], [-9, 3, -2]]), chip)
        g = layer.digits_phys.astype(np.float64)
        assert (g < 0).any() and (layer.conv_phys[:, 1] == -1).all()
        want = np.abs(g).sum(axis=0)[layer.conv_phys[:, 0]]
        np.testing.assert_array_equal(drift._column_reads(layer, g), want)


class TestColumnNonlinearity:
    """``cimsim.arrays.analog`` by hand: fs = 8, u = a / fs."""

    POLY = (0.1, 0.2)  # f(a) = a + fs·(0.1·u² + 0.2·u³)

    def _f(self, kind, a, sat=0.5, beta=0.5):
        from cimsim.arrays import analog

        args = (kind, 8.0, sat, beta, np.array(self.POLY))
        return (analog.column_nonlinearity(np.array(a), *args),
                analog.column_nonlinearity_slope(np.array(a), *args))

    def test_saturating(self):
        from cimsim.arrays._kernels import NL_SATURATING

        f, d = self._f(NL_SATURATING, 3.0)  # s = 0.5·8 = 4
        assert f == pytest.approx(4.0 * math.tanh(0.75), rel=1e-12)
        assert d == pytest.approx(1.0 - math.tanh(0.75) ** 2, rel=1e-12)

    def test_ir_drop_is_odd_and_its_slope_squared(self):
        from cimsim.arrays._kernels import NL_IR_DROP

        f, d = self._f(NL_IR_DROP, [-4.0, 4.0])  # 1 + 0.5·4/8 = 1.25
        np.testing.assert_allclose(f, [-3.2, 3.2], rtol=1e-12)
        np.testing.assert_allclose(d, [0.64, 0.64], rtol=1e-12)

    def test_polynomial_and_its_slope(self):
        from cimsim.arrays._kernels import NL_POLYNOMIAL

        f, d = self._f(NL_POLYNOMIAL, 4.0)  # u = 0.5
        assert f == pytest.approx(4.0 + 8.0 * (0.1 * 0.25 + 0.2 * 0.125), rel=1e-12)
        # f'(a) = 1 + 2·0.1·u + 3·0.2·u²
        assert d == pytest.approx(1.0 + 0.2 * 0.5 + 0.6 * 0.25, rel=1e-12)

    def test_a_zero_full_scale_is_floored(self):
        from cimsim.arrays import analog
        from cimsim.config import NoiseConfig

        assert analog.nonlinearity_args(NoiseConfig(), 0.0)["nl_fs"] == 1e-30
        assert analog.nonlinearity_args(NoiseConfig(), 5.0)["nl_fs"] == 5.0

    def test_only_paired_conversions_subtract_a_negative_column(self):
        from cimsim.arrays import analog
        from cimsim.arrays._kernels import NL_NONE

        ps = np.array([[[1.0, 10.0, 100.0]]])  # (P, Mc, Jg) = (1, 1, 3)
        xsum = np.array([[2.0]])
        off = np.array([0.5, 0.0, 0.25])
        got = analog.analog_from_partial_sums(
            ps, xsum, np.array([0, 2]), np.array([1, -1]), off, NL_NONE, 1.0, 1.0, 0.0,
            np.zeros(0))
        # conversion 0: (1 + 0.5·2) - 10; conversion 1: 100 + 0.25·2, nothing subtracted
        np.testing.assert_allclose(got, [[[2.0 - 10.0, 100.5]]], rtol=1e-12)

"""Tests from a mutation-testing round over the core simulation code's pure-Python parts
(``cimsim/arrays/{program,encoding,drift,analog,cache}.py``, ``cimsim/engine.py``,
``cimsim/adc/{linear,tables,activation}.py``, ``cimsim/events.py``): each test pins a
behaviour that a surviving mutant (an operator, bound, sign or argument changed) left
unchecked, with hand-computed or integer references."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import cimsim
from cimsim.arrays.encoding import weight_range
from cimsim.errors import MappingError
from tests.conftest import ideal_chip, random_weights

prog = importlib.import_module("cimsim.arrays.program")


class TestProgramming:
    def test_an_empty_row_tile_is_refused(self):
        w = np.ones((2, 4), dtype=np.int64)
        with pytest.raises(MappingError, match="row_tiles"):
            prog.program(w, ideal_chip(), row_tiles=[(0, 0), (0, 4)])

    @pytest.mark.parametrize("encoding", ["differential", "twos_complement", "offset"])
    def test_a_weight_one_above_the_range_is_refused(self, encoding):
        chip = ideal_chip(encoding=encoding)
        lo, hi = weight_range(chip)
        prog.program(np.array([[lo, hi]]), chip)  # the ends themselves are fine
        with pytest.raises(ValueError, match="w_int values must lie"):
            prog.program(np.array([[0, hi + 1]]), chip)
        with pytest.raises(ValueError, match="w_int values must lie"):
            prog.program(np.array([[lo - 1, 0]]), chip)

    def test_column_tiles_exactly_full(self):
        # ideal: 8-b differential, 2 b per cell -> 4 magnitude slices x 2 polarities = 8
        # physical columns per output; 32 outputs fill one 256-column array exactly
        chip = ideal_chip()
        rng = np.random.default_rng(1)
        w = random_weights(rng, chip, 32, 10)
        layer = prog.program(w, chip)
        assert layer.kinds.n_kinds == 8
        assert layer.n_phys_cols == 256
        assert layer.n_col_tiles == 1
        assert layer.n_arrays == 1
        assert prog.n_arrays_for_shape(32, [(0, 10)], chip) == 1
        layer33 = prog.program(random_weights(rng, chip, 33, 10), chip)
        assert layer33.n_col_tiles == 2
        assert prog.n_arrays_for_shape(33, [(0, 10)], chip) == 2

    def test_varied_sensed_cells_read_energy_counts_every_column_off_current(self):
        # a sensed cell (digital read-out of 1-b MRAM) stores its sensed bit, 0 or 1; the read
        # still draws its off-state current g_off = 1/(ratio - 1) = 1 through each of the J
        # cells of a row: rowsum[k] = Σ_j bit[k, j] + J·g_off (K = 64 rows != J columns)
        from tests.cost.test_digital_cim import digital_chip

        chip = digital_chip(64, cell="mram", on_off_ratio=2.0)
        chip = chip.replace(device=chip.device.replace(variation="lognormal",
                                                       variation_sigma=0.2))
        w = np.random.default_rng(0).integers(-127, 128, size=(7, 64))
        layer = prog.program(w, chip, 3)
        k, j = layer.g_phys.shape
        assert (k, j) == (64, 56)
        assert set(np.unique(layer.g_phys)) <= {0.0, 1.0}
        np.testing.assert_array_equal(layer.cell_rowsum,
                                      layer.g_phys.sum(axis=1, dtype=np.float64) + 1.0 * j)

    @pytest.mark.parametrize("comp, fs_hi", [("digital", 192.0), ("analog", 144.0)])
    def test_full_scale_and_column_full_scale_by_hand(self, comp, fs_hi):
        # offset encoding, 2-b cells (digits 0..3), on/off 4 -> g_off = 3/(4-1) = 1 cell-LSB,
        # 2-b DAC (planes 0..3), 16 rows per conversion. The column's full-scale current
        # counts the off-state current: 16·3·(3 + 1) = 192 either way; the ADC's range counts
        # it unless a reference column subtracts it in analog (16·3·3 = 144)
        chip = ideal_chip(on_off_ratio=4.0, n_rows=16, n_cols=64, dac_bits=2,
                          encoding="offset", off_current_compensation=comp)
        assert chip.device.g_off_lsb == 1.0
        layer = prog.program(np.array([[3, -5, 7]]), chip)
        assert layer.column_fs == 192.0
        assert (layer.fs_lo, layer.fs_hi) == (0.0, fs_hi)

    def test_group_abs_max_counts_negative_entries(self):
        # analog differential pairs merge into one GEMM column of signed digits; all-negative
        # weights give a matrix of entries <= 0 whose bound (it picks an exact GEMM kind)
        # is still their magnitude
        chip = ideal_chip(n_rows=8, rows_per_conversion=4)
        w = -np.arange(1, 13, dtype=np.int64).reshape(2, 6) * 9  # -9 .. -108
        layer = prog.program(w, chip)
        assert layer.gemm_matrix.max() <= 0
        want = tuple(float(np.abs(layer.gemm_matrix[k0:k1]).max())
                     for k0, k1, _ in layer.groups)
        assert layer.group_abs_max == want
        assert len(want) == 2 and min(want) == 3.0

    def test_slice_multiplies_count_neither_powers_of_two_nor_zeros(self):
        chip = ideal_chip()
        layer = prog.program(np.array([[5, -7]]), chip)
        c = layer.n_conversions
        assert c == 4 and layer.n_slice_multiplies == 0
        coef = np.array([0.0, -8.0, 3.0, 0.375])[:c]  # 0 and -2^3 shift; 3 and 0.375 multiply
        assert layer.with_conv_coef(coef).n_slice_multiplies == 2
        assert layer.with_conv_coef(np.zeros(c)).n_slice_multiplies == 0

    def test_cell_utilization_by_hand(self):
        # 3 outputs x 8 columns = 24 of 256 columns, 10 of 256 rows, one array
        layer = prog.program(np.ones((3, 10), dtype=np.int64), ideal_chip())
        assert layer.n_arrays == 1
        assert layer.cell_utilization == 10 * 24 / (256 * 256)


    @pytest.mark.parametrize("ratio, g_off", [(np.inf, 0.0), (16.0, 1.0 / 15)])
    def test_analog_slice_readout_weighted_rowsum_by_hand(self, ratio, g_off):
        # offset 4-b weights in 1-b cells: stored u = w + 8 over slices weighted 1:2:4:8 in
        # one conversion; the mirrors copy Σ_j r_j·(d_j + g_off) per row = u + 15·g_off
        chip = ideal_chip(slice_readout="analog", weight_bits=4, bits_per_cell=1,
                          encoding="offset", on_off_ratio=ratio)
        layer = prog.program(np.array([[5, 3]]), chip)
        np.testing.assert_array_equal(layer.conv_weight, [[1.0, 2.0, 4.0, 8.0]])
        assert layer.weighting_columns == {0: 1, 1: 1, 2: 1, 3: 1}
        np.testing.assert_allclose(layer.weighted_rowsum,
                                   [13 + 15 * g_off, 11 + 15 * g_off], rtol=1e-6)
        # the exact correction: -8·Σx for the offset, -g_off·15·Σx for the off-current
        np.testing.assert_allclose(layer.x_sum_coef, [-8.0 - 15 * g_off], rtol=1e-12)

    def test_new_conversion_weights_carry_the_off_current_correction(self):
        # as above with g_off = 1/15: the conversion reads u·x + Σx (the off-current) and the
        # back end removes 8·Σx (offset) and the off-current with the conversion's weight;
        # doubling that weight gives 2·(u·x) - 8·Σx exactly
        from cimsim import engine

        chip = ideal_chip(slice_readout="analog", weight_bits=4, bits_per_cell=1,
                          encoding="offset", on_off_ratio=16.0)
        layer = prog.program(np.array([[5, 3]]), chip).with_conv_coef(np.array([2.0]))
        np.testing.assert_allclose(layer.x_sum_coef, [-8.0 - 2.0], rtol=1e-12)
        x = np.array([[1, 1], [3, 0], [0, 2]])
        y, _ = engine.run(layer, x)
        u = np.array([13, 11])
        np.testing.assert_allclose(y[:, 0], 2 * (x @ u) - 8 * x.sum(axis=1), atol=1e-9)

class TestEncoding:
    def test_weighting_ratios_by_hand(self):
        from cimsim.arrays.encoding import weighting_ratios

        weight = np.array([[1.0, -1.0, 0.0],   # one differential pair: nothing to weight
                           [4.0, 2.0, -1.0],   # slices 4:2:1
                           [2.0, 0.0, 0.0],    # a lone column
                           [0.0, 0.0, 0.0]])   # nothing read
        np.testing.assert_array_equal(weighting_ratios(weight),
                                      [[0, 0, 0], [4, 2, 1], [0, 0, 0], [0, 0, 0]])

    @pytest.mark.parametrize("signed, bad, good", [(False, 256, 255), (True, 128, 127),
                                                   (True, -129, -128)])
    def test_an_input_one_past_the_range_is_refused(self, signed, bad, good):
        from cimsim import engine
        from cimsim.arrays.encoding import input_planes

        chip = ideal_chip()  # 8-b inputs
        layer = prog.program(np.ones((1, 2), dtype=np.int64), chip, input_signed=signed)
        y, _ = engine.run(layer, np.array([[good, 1]]))
        assert y[0, 0] == good + 1
        with pytest.raises(ValueError, match="x_int values must lie"):
            engine.run(layer, np.array([[bad, 1]]))
        with pytest.raises(ValueError, match="x_int values must lie"):
            input_planes(np.array([[1, bad]]), chip, signed)


class TestDrift:
    def test_gain_ratio_is_one_where_either_read_is_not_positive(self):
        from cimsim.arrays.drift import gain_ratio

        r0 = np.array([0.0, 2.0, 2.0, -1.0, 3.0])
        rt = np.array([1.0, 0.0, 4.0, 1.0, 1.5])
        np.testing.assert_array_equal(gain_ratio(r0, rt), [1.0, 1.0, 0.5, 1.0, 2.0])

    @pytest.mark.parametrize("seconds, text", [(59.0, "59 s"), (60.0, "1 min"), (3600.0, "1 h"),
                                               (7200.0, "2 h"), (86400.0, "1 d"),
                                               (365.0 * 86400.0, "1 y"), (-3600.0, "-1 h")])
    def test_duration_text_at_the_unit_boundaries(self, seconds, text):
        from cimsim.arrays.drift import duration_text

        assert duration_text(seconds) == text

    def test_an_aged_signed_cell_layer_reads_the_magnitude_of_its_conductances(self):
        # a bipolar cell's negative conductance still draws current: the read-energy row
        # sums are Σ_j |G(t)[k, j]|, at t0 and after drift
        chip = ideal_chip(encoding="signed_cell", n_rows=64, n_cols=64)
        chip = chip.replace(device=chip.device.replace(drift_nu_mean=(0.1, 0.05, 0.05, 0.05)))
        w = np.random.default_rng(0).integers(-127, 128, (4, 20))
        layer = prog.program(w, chip, 1)
        aged = layer.with_time(3600.0)
        assert aged.g_phys.min() < 0
        np.testing.assert_allclose(aged.cell_rowsum,
                                   np.abs(aged.g_phys.astype(np.float64)).sum(axis=1),
                                   rtol=1e-6)
        assert np.all(aged.cell_rowsum > 0)


class TestCache:
    @pytest.fixture(autouse=True)
    def _fresh_cache(self):
        from cimsim.arrays import cache

        cache.clear()
        yield
        cache.set_max_bytes(cache.DEFAULT_MB * 2**20)
        cache.clear()

    @staticmethod
    def _prog(w, chip, seed=3):
        from cimsim.arrays import cache

        return cache.program_seeded(w, chip, seed, input_signed=False,
                                    parts=[(0, w.shape[1], None)], names=["p"])[0]

    def test_an_entry_of_exactly_the_budget_is_kept(self):
        from cimsim.arrays import cache

        chip = ideal_chip()
        w = np.ones((2, 5), dtype=np.int64)  # ideal cells: digits only, 5 x (2 x 8) int8
        cache.set_max_bytes(80)
        first = self._prog(w, chip)
        assert cache.cache_info().entries == 1 and cache.cache_info().nbytes == 80
        again = self._prog(w, chip)
        assert again.digits_phys is first.digits_phys
        assert cache.cache_info().hits == 1
        cache.set_max_bytes(79)
        assert cache.cache_info().entries == 0

    def test_an_aging_device_draws_its_future_as_program_does(self):
        chip = cimsim.load_chip("pcm-22nm")
        w = np.random.default_rng(0).integers(-127, 128, (3, 20))
        want = prog.program(w, chip, np.random.default_rng(7))
        for _ in range(2):  # drawn, then from the cache
            got = self._prog(w, chip, seed=7)
            np.testing.assert_array_equal(got.aging.nu, want.aging.nu)
            np.testing.assert_array_equal(got.g_phys, want.g_phys)

    @pytest.mark.parametrize("raw, nbytes", [("2", 2 * 2**20), ("0.5", 2**19), ("0", 0)])
    def test_the_budget_is_read_in_mib(self, monkeypatch, raw, nbytes):
        from cimsim.arrays import cache

        monkeypatch.setenv("CIMSIM_PROGRAM_CACHE_MB", raw)
        assert cache._budget_from_env() == nbytes


class TestEngineEvents:
    def test_block_fp_events_by_hand(self):
        from cimsim.engine import block_fp_events
        from cimsim.events import Action, Component, EventKey

        chip = ideal_chip(n_rows=8)
        layer = prog.program(np.ones((3, 10), dtype=np.int64), chip,
                             row_tiles=[(0, 3), (3, 10)])
        e = chip.quant.act_exponent_bits
        ev = block_fp_events(layer, 5)
        C, A = Component, Action
        assert ev == {
            EventKey(C.BLOCK_FP, A.EXPONENT_MAX, e): 5.0 * ((3 - 1) + (7 - 1)),
            EventKey(C.BLOCK_FP, A.ALIGN_SHIFT, 8): 5.0 * 10,
            EventKey(C.BLOCK_FP, A.EXPONENT_ADD, e): 5.0 * 3 * 2,
            EventKey(C.BLOCK_FP, A.NORMALIZE, 32): 5.0 * 3 * 2,
        }

    def test_slice_multiplies_counted_per_plane_group_and_column(self):
        from cimsim import engine
        from cimsim.events import Action, Component, EventKey

        chip = ideal_chip(n_rows=4, dac_bits=4)  # 2 planes, 2 row groups for K = 6
        layer = prog.program(np.ones((1, 6), dtype=np.int64), chip)
        assert layer.n_conversions == 4 and layer.n_groups == 2
        layer = layer.with_conv_coef(np.array([3.0, 0.5, -6.0, 0.0]))
        _, ev = engine.run(layer, np.ones((7, 6), dtype=np.int64))
        # 7 vectors x 2 planes x 2 row groups x 2 conversions weighted 3 and -6
        assert ev[EventKey(Component.DIGITAL, Action.SLICE_MULTIPLY, 32)] == 7 * 2 * 2 * 2


    def test_slice_weighting_events_per_plane_and_row_group(self):
        from cimsim import engine
        from cimsim.events import Action, Component, EventKey

        # 4-b offset weights in 1-b cells combined 1:2:4:8 in analog; K = 6 rows in groups of
        # 4 (two row groups), 1-b DAC: 8 planes for 8-b inputs
        chip = ideal_chip(slice_readout="analog", weight_bits=4, bits_per_cell=1,
                          encoding="offset", n_rows=4, n_cols=64)
        layer = prog.program(np.ones((2, 6), dtype=np.int64), chip)
        assert (layer.n_groups, chip.n_planes) == (2, 8)
        x = np.arange(18).reshape(3, 6)
        y, ev = engine.run(layer, x)
        np.testing.assert_array_equal(y, x @ np.ones((6, 2)))
        for b in range(4):  # one column of ratio 2^b per conversion, 2 conversions
            assert ev[EventKey(Component.WEIGHTING, Action.SLICE_COLUMN, b)] == 3 * 8 * 2 * 2

class TestLinearADC:
    @pytest.mark.parametrize("lo, hi, n_codes, start, step", [
        (-1.0, 3.0, 2, -1.0, 4.0),   # 2 codes cannot straddle 0 with 0 a code: literal grid
        (-1.0, 3.0, 3, -3.0, 3.0),   # {-3, 0, 3}
        (-1.0, 2.0, 4, -1.0, 1.0),   # {-1, 0, 1, 2}
        (-2.0, 2.0, 4, -2.0, 2.0),   # a tie (m = 1 or 2 codes below 0, step 2): the first
        (1.0, 5.0, 5, 1.0, 1.0),     # no zero inside: literal
    ])
    def test_zero_aligned_grid_by_hand(self, lo, hi, n_codes, start, step):
        from cimsim.adc.linear import grid

        s, d = grid(lo, hi, n_codes, True)
        assert (float(s), float(d)) == (start, step)

    def test_widen_leaves_an_end_already_beyond_full_scale(self):
        from cimsim.adc.linear import widen

        lo, hi = widen(np.array([-12.0, 0.0, -4.0]), np.array([8.0, 12.0, 4.0]), 0.1,
                       fs_lo=-10.0, fs_hi=10.0)
        # widths 20, 12, 8: ends move out by 2, 1.2, 0.8 but not past [-10, 10], and an end
        # already past it (-12, 12) stays
        np.testing.assert_allclose(lo, [-12.0, -1.2, -4.8])
        np.testing.assert_allclose(hi, [10.0, 12.0, 4.8])

    @pytest.mark.parametrize("n_rows, kept", [(10, [0, 2, 4, 6, 8]), (11, [0, 3, 6, 9]),
                                              (5, [0, 1, 2, 3, 4]), (4, [0, 1, 2, 3])])
    def test_kept_samples_take_every_ceil_n_over_max_th_row(self, n_rows, kept):
        from cimsim.adc.linear import RangeStats

        stats = RangeStats(1, 2, keep_samples=True, max_samples=5)
        a = np.stack([np.arange(n_rows), -np.arange(n_rows)], axis=1).astype(np.float64)
        stats.add(0, a)
        np.testing.assert_array_equal(stats.kept(0)[:, 0], kept)
        np.testing.assert_array_equal(stats.kept(0)[:, 1], -np.array(kept))


class TestADCTables:
    def test_threshold_adc_clip_bounds_use_the_outer_spacings(self):
        from cimsim.adc.tables import ADCTables

        lvl = np.array([[[0.0, 1.0, 3.0, 7.0]]])
        thr = np.array([[[0.5, 2.0, 5.0]]])
        t = ADCTables.from_levels(thr, lvl)
        lo, hi = t.clip_bounds(4)
        assert (float(lo[0, 0]), float(hi[0, 0])) == (-0.5, 9.0)
        assert float(t.delta[0, 0]) == 7.0 / 3

    def test_scaled_scales_every_analog_value(self):
        from cimsim.adc.tables import ADCTables

        t = ADCTables.linear(np.array([[1.0, -2.0]]), np.array([[0.5, 1.0]]))
        s = t.scaled(np.array([2.0, 3.0]))
        np.testing.assert_array_equal(s.lo, [[2.0, -6.0]])
        np.testing.assert_array_equal(s.delta, [[1.0, 3.0]])
        lo, hi = s.clip_bounds(4)  # lo - Δ/2, lo + 3.5·Δ of the scaled grid
        np.testing.assert_array_equal(lo, [[1.5, -7.5]])
        np.testing.assert_array_equal(hi, [[5.5, 4.5]])
        nl = ADCTables.from_levels(np.array([[[1.0], [1.0]]]),
                                   np.array([[[0.0, 2.0], [-1.0, 3.0]]]))
        s = nl.scaled(np.array([2.0, 0.5]))
        np.testing.assert_array_equal(s.lo, [[0.0, -0.5]])
        np.testing.assert_array_equal(s.lvl, [[[0.0, 4.0], [-0.5, 1.5]]])
        np.testing.assert_array_equal(s.thr, [[[2.0], [0.5]]])


class TestFusedActivation:
    """A 2-b SAR layer-output ADC fused with ``min(max(kappa·v + bias, 0), 6)``, per column;
    the analog calibration values (3 vectors x 2 conversions) are given by hand."""

    A = np.array([[0.0, 1.0], [2.0, -1.0], [4.0, 3.0]])
    # post-activation values: column 0, 1·a - 1 -> [0, 1, 3]; column 1, 2·a + 0.5 clamped at
    # 6 -> [2.5, 0, 6]

    @staticmethod
    def _fit(stat: str, **adc):
        from cimsim.adc.activation import FusedActivation, fit_activation_levels
        from cimsim.adc.linear import RangeStats
        from tests.conftest import bskmq_chip

        chip = bskmq_chip(weight_bits=4, bits=2, granularity="column")
        chip = chip.replace(adc=chip.adc.replace(kind="sar", calibration_stat=stat, **adc))
        layer = prog.program(np.ones((2, 3), dtype=np.int64), chip)
        stats = RangeStats(1, 2, keep_samples=True)
        stats.add(0, TestFusedActivation.A)
        act = FusedActivation(np.array([1.0, 2.0]), np.array([-1.0, 0.5]), 6.0)
        return fit_activation_levels(layer, stats, act)

    def test_minmax_levels_by_hand(self):
        lv = self._fit("minmax")
        np.testing.assert_array_equal(lv.a_max, [3.0, 6.0])
        np.testing.assert_array_equal(lv.levels, [[0, 1, 2, 3], [0, 2, 4, 6]])
        np.testing.assert_array_equal(lv.thresholds, [[0.5, 1.5, 2.5], [1, 3, 5]])

    def test_mean_std_top_by_hand_and_held_at_the_clamp(self):
        lv = self._fit("mean_std", n_sigma=3.0)
        col0 = np.array([0.0, 1.0, 3.0])
        # column 1's mean + 3σ (2.83 + 3·2.46) exceeds the clamp: held at 6
        np.testing.assert_allclose(lv.a_max, [col0.mean() + 3 * col0.std(), 6.0], rtol=1e-12)
        np.testing.assert_allclose(lv.levels[0], np.arange(4) * lv.a_max[0] / 3, rtol=1e-12)

    def test_activation_tables_by_hand(self):
        from cimsim.adc.activation import ActivationLevels, FusedActivation, activation_tables

        levels = ActivationLevels(thresholds=np.array([[0.5, 1.5, 2.5], [1.0, 3.0, 5.0]]),
                                  levels=np.array([[0.0, 1.0, 2.0, 3.0], [0.0, 2.0, 4.0, 6.0]]),
                                  a_max=np.array([3.0, 6.0]))
        act = FusedActivation(np.array([2.0, 1.0]), np.array([1.0, 0.0]), 6.0)
        t = activation_tables(levels, act)
        # analog thresholds (T - bias)/kappa, levels R/kappa
        np.testing.assert_array_equal(t.thr, [[[-0.25, 0.25, 0.75], [1.0, 3.0, 5.0]]])
        np.testing.assert_array_equal(t.lvl, [[[0.0, 0.5, 1.0, 1.5], [0.0, 2.0, 4.0, 6.0]]])
        lo, hi = t.clip_bounds(4)
        # column 0 clips half a step above its top level 3 (y = 3.5, v = (3.5 - 1)/2);
        # column 1's top is the clamp itself: it never clips
        np.testing.assert_array_equal(lo, [[-np.inf, -np.inf]])
        np.testing.assert_array_equal(hi, [[1.25, np.inf]])


class TestEvents:
    def test_bits_must_be_integral(self):
        from cimsim.events import event_key

        assert event_key("adc", "convert", 6.0).bits == 6
        assert event_key("adc", "convert", np.int64(6)) == event_key("adc", "convert", 6)
        with pytest.raises(ValueError, match="bits = 6.5"):
            event_key("adc", "convert", 6.5)

    def test_counts_add_up(self):
        from cimsim.events import Events, event_key

        k, j = event_key("adc", "convert", 6), event_key("cell", "read", 1)
        ev = Events([(k, 1.0), (k, 2.0), (("cell", "read", 1), 4.0)])
        assert ev[k] == 3.0 and ev[j] == 4.0
        total = ev + Events({k: 10.0})
        assert total[k] == 13.0 and total[j] == 4.0
        assert (ev + {("adc", "convert", 6): 0.5})[k] == 3.5
        assert sum([ev, ev, ev])[k] == 9.0
        assert ev.scaled(-2.0)[k] == -6.0 and ev.scaled(0.5)[j] == 2.0
        with pytest.raises(TypeError):
            1 + ev  # noqa: B018 (only 0, sum()'s start, is taken)

    def test_bad_keys_and_missing_counts(self):
        from cimsim.events import Events, event_key

        with pytest.raises(ValueError, match="event key"):
            Events({("adc",): 1.0})
        ev = Events({event_key("adc", "convert", 6): 1.0})
        assert ev.get(("adc", "convert", 8), 5.0) == 5.0
        assert ev.get(("adc", "convert", 8)) == 0.0
        assert ev.get(("adc", "write", 8), 7.0) == 7.0  # an unregistered pair counts nothing


class TestDriftEvents:
    @staticmethod
    def _chip(**changes):
        chip = ideal_chip(n_rows=8, n_cols=16, **changes)
        return chip.replace(device=chip.device.replace(
            drift_nu_mean=(0.1, 0.05, 0.05, 0.05), drift_compensation="global"))

    def test_compensation_read_events_by_hand(self):
        from cimsim.arrays.drift import calibration_read_events
        from cimsim.events import Action, Component, EventKey

        # K = 10 rows: row tiles 8 + 2 (two row groups); 3 outputs x 8 columns = 24 physical
        # columns: two 16-column tiles
        w = np.random.default_rng(0).integers(-127, 128, (3, 10))
        layer = prog.program(w, self._chip(), 1)
        assert (layer.n_groups, layer.n_col_tiles, layer.n_phys_cols) == (2, 2, 24)
        rowsum = float(np.abs(layer.digits_phys).sum())
        C, A = Component, Action
        assert calibration_read_events(layer) == {
            EventKey(C.ARRAY, A.DRIFT_CALIBRATION, 0): 1.0,
            EventKey(C.ARRAY, A.ACTIVATION, 0): 2.0 * 2,
            EventKey(C.DAC, A.PULSE, layer.chip.dac_bits): 10.0 * 2,
            EventKey(C.CELL, A.READ, 2): 10.0 * 24,
            EventKey(C.CELL, A.V2G_LSB, 0): rowsum,
            EventKey(C.CELL, A.V1G_LSB, 0): rowsum,
            EventKey(C.ADC, A.CONVERT, 24): 2.0 * 24,
        }

    def test_a_bipolar_cell_takes_the_parameters_of_its_magnitude(self):
        from cimsim.arrays.drift import state_levels

        digits = np.array([[-3, -1, 0, 2]])
        chip = self._chip(encoding="signed_cell")
        np.testing.assert_array_equal(state_levels(digits, None, chip), [[3, 1, 0, 2]])
        # drawn exponents: a cell at -3 has level 3's mean (0.05), not level 1's by a wrapped
        # index; with no spread every exponent is its level's mean exactly
        layer = prog.program(np.array([[-127, 0, 127]]), chip, 1)
        neg = layer.digits_phys < 0
        assert neg.any()
        np.testing.assert_array_equal(layer.aging.nu[neg], 0.05)
        np.testing.assert_array_equal(layer.aging.nu[layer.digits_phys == 0], 0.1)

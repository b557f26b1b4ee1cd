"""Tests from a third mutation-testing round over ``cimsim/engine.py`` (chunking, plane
constants, the data-dependent and static events, the NumPy twin's event path, the exact noise
sampler's guards, calibration) and ``cimsim/arrays/program.py`` (tiling, conversion weights,
GEMM operands, argument checks), aimed at what the earlier rounds
(``tests/test_mutants_core_sim.py``, ``tests/test_mutants_matrix_quant_engine_round2.py``,
``tests/arrays/test_mutants_program_drift.py``, ``tests/mapping/test_mutants_mapping.py``)
left unpinned. Each test pins a behaviour that a surviving mutant (an operator, bound,
factor or argument changed) left unchecked, with hand-computed or integer references."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from cimsim import engine
from cimsim.events import Action, Component, EventKey, event_key
from tests.conftest import ideal_chip

prog = importlib.import_module("cimsim.arrays.program")


def _w() -> np.ndarray:
    return np.array([[1, -2, 3], [0, 1, -1]], dtype=np.int64)


def _layer(w=None, **chip):
    """``w`` (default :func:`_w`) programmed on the ideal chip changed by ``chip``."""
    return prog.program(_w() if w is None else w, ideal_chip(**chip))


# ---------------------------------------------------------------------------------------------
# engine: chunks and plane constants


class TestChunkSize:
    def test_per_vector_bytes_by_hand(self, monkeypatch):
        """``_chunk_size``: ``CHUNK_BYTES // (P·(Jg·4·(2 with read noise) + K·6))``. The ideal
        2x3 layer: Jg = 8 merged pair columns, 8 planes: 8·(32 + 18) = 400 bytes a vector,
        656 with read noise (mutants: the factor 2 on the wrong side; ``K·5``)."""
        plain = _layer()
        noisy = _layer(noise={"read_noise_rel": 0.1})
        assert plain.gemm_matrix.shape == (3, 8) and noisy.gemm_var is not None
        monkeypatch.setattr(engine, "CHUNK_BYTES", 400 * 7 + 399)
        assert engine._chunk_size(plain, 8, None) == 7
        monkeypatch.setattr(engine, "CHUNK_BYTES", 656 * 3 + 655)
        assert engine._chunk_size(noisy, 8, None) == 3

    def test_a_vector_larger_than_the_budget_still_makes_a_chunk(self, monkeypatch):
        """A budget smaller than one vector's working set: chunks of one vector (mutant:
        ``max(0, ...)``, a chunk of 0 and ``range``'s zero step)."""
        monkeypatch.setattr(engine, "CHUNK_BYTES", 1)
        layer = _layer()
        assert engine._chunk_size(layer, 8, None) == 1
        x = np.array([[1, 2, 3], [4, 0, 5]], dtype=np.int64)
        np.testing.assert_array_equal(engine.run(layer, x)[0], x @ _w().T)


class TestPlaneDtype:
    @pytest.mark.parametrize("bits, dtype", [(7, np.int8), (8, np.int16), (15, np.int16),
                                             (16, np.int32)])
    def test_the_narrowest_integer_that_holds_the_planes(self, bits, dtype):
        """Unsigned inputs in one plane reach ``2^bits - 1``: 127 still fits int8 and 32767
        int16 (mutants: ``a_max < 127``, ``a_max < 32767``, planes twice as wide)."""
        layer = _layer(dac_bits=None, input_bits=bits)
        assert engine._consts(layer).plane_dtype is dtype
        if bits <= 8:  # within the ideal chip's lossless range
            x = np.array([[2**bits - 1, 0, 1]], dtype=np.int64)
            np.testing.assert_array_equal(engine.run(layer, x)[0], x @ _w().T)


# ---------------------------------------------------------------------------------------------
# engine: events


def _tiled_layer():
    """A 2x6 matrix on 4x8 arrays with a 4-b DAC (2 planes of 8-b inputs): 2 row tiles (one
    row group each), 16 physical columns (differential 8-b in 2-b cells) in 2 column tiles,
    8 conversions (merged pairs); row sums of |digits| 1, 3, 4, 3, 4, 3."""
    w = np.array([[1, -2, 3, 0, 1, 2], [0, 1, -1, 3, -3, 1]], dtype=np.int64)
    layer = prog.program(w, ideal_chip(n_rows=4, n_cols=8, dac_bits=4))
    assert (layer.n_groups, len(layer.row_tiles), layer.n_col_tiles) == (2, 2, 2)
    assert (layer.n_phys_cols, layer.n_conversions, layer.chip.n_planes) == (16, 8, 2)
    np.testing.assert_array_equal(layer.cell_rowsum, [1, 3, 4, 3, 4, 3])
    return w, layer


# low and high nibbles: 4 + 2 nonzero drives in vector 0, 2 + 1 in vector 1 (9 in all);
# per row Σ|x_p| = 1, 2, 2, 30, 4, 1 and Σ x_p² = 1, 4, 2, 450, 10, 1
_X = np.array([[1, 0, 17, 255, 3, 0], [0, 2, 0, 0, 16, 1]], dtype=np.int64)

_TILED_EVENTS = {
    EventKey(Component.LAYER, Action.MAC, 0): 2 * 6 * 2,
    EventKey(Component.ADC, Action.CONVERT, 24): 2 * 2 * 2 * 8,  # M·P·G·C
    EventKey(Component.SHIFT_ADD, Action.ADD, 32): 2 * 2 * 2 * 8,
    EventKey(Component.ACCUMULATOR, Action.ADD, 32): 2 * 2 * 2,  # M·N·G
    EventKey(Component.ARRAY, Action.ACTIVATION, 0): 2 * 2 * 2 * 2,  # M·P·G·col tiles
    EventKey(Component.BUFFER, Action.READ_BIT, 0): 2 * 6 * 8 * 2,  # M·K·bits·col tiles
    EventKey(Component.BUFFER, Action.WRITE_BIT, 0): 2 * 2 * 32,  # M·N·acc
    EventKey(Component.INTERCONNECT, Action.BIT, 0): 2 * 2 * 32 * (2 - 1),  # ... (tiles - 1)
    EventKey(Component.DAC, Action.PULSE, 4): 9 * 2,  # nonzero drives · col tiles
    EventKey(Component.CELL, Action.READ, 2): 9 * 16,  # nonzero drives · physical columns
    EventKey(Component.CELL, Action.V2G_LSB, 0): 1 + 4 * 3 + 2 * 4 + 450 * 3 + 10 * 4 + 1 * 3,
    EventKey(Component.CELL, Action.V1G_LSB, 0): 1 + 2 * 3 + 2 * 4 + 30 * 3 + 4 * 4 + 1 * 3,
}


class TestEventsByHand:
    @pytest.mark.parametrize("kernel", ["numba", "numpy"])
    def test_every_event_of_a_tiled_layer(self, kernel):
        """Every event of a layer over 2 row tiles and 2 column tiles, by hand, for the
        compiled kernel's plane path and the NumPy twin's (mutants: the column tiles left out
        of DAC pulses, activations or buffer reads; cell reads per conversion, not per
        physical column; accumulator adds without the row groups; write bits without the
        accumulator width; interconnect bits for every row tile; the V1G sum given the
        weighted one or plain Σ|x|; the drive's Σ x² replaced by the count of drives; the twin
        counting Σ|x| as the nonzero drives or Σ|x| as Σ x²)."""
        w, layer = _tiled_layer()
        y, ev = engine.run(layer, _X, kernel=kernel)
        np.testing.assert_array_equal(y, _X @ w.T)
        assert dict(ev.items()) == _TILED_EVENTS

    def test_a_sensed_readout_counts_the_reads_of_each_nonzero_slice(self):
        """A digital read-out sensing 1-b MRAM cells (g_off = 1) with 4-b input slices: V2G
        counts Σ [x_p ≠ 0]·rowsum, V1G Σ |x_p|·rowsum; row sums popcount(w) + 8 (8 cells of
        two's complement) = 9, 15, 10, 8 (mutant: the drive's Σ x² summed, as where
        ``dac_bits == 1``)."""
        from tests.cost.test_digital_cim import digital_chip

        chip = digital_chip(n_rows=4, cell="mram", on_off_ratio=2.0)
        chip = chip.replace(dac=chip.dac.replace(bits=4), adc=chip.adc.replace(bits=8))
        w = np.array([[1, -2, 3, 0]], dtype=np.int64)
        layer = prog.program(w, chip)
        np.testing.assert_array_equal(layer.cell_rowsum, [9, 15, 10, 8])
        x = np.array([[1, 0, 17, 255], [0, 2, 0, 0]], dtype=np.int64)
        for kernel in ("numba", "numpy"):
            y, ev = engine.run(layer, x, kernel=kernel)
            np.testing.assert_array_equal(y, x @ w.T)
            # nonzero slices per row 1, 1, 2, 2; Σ|x_p| per row 1, 2, 2, 30
            assert ev[event_key("cell", "v2g_lsb")] == 9 + 15 + 2 * 10 + 2 * 8
            assert ev[event_key("cell", "v1g_lsb")] == 9 + 2 * 15 + 2 * 10 + 30 * 8


class TestDigitalCorrection:
    def test_a_correction_for_some_outputs_only_is_still_added(self):
        """Two's complement 8-b in 2-b cells, g_off = 1 (on/off 4), digital off-current
        compensation: each output's correction is -g_off·Σ_q coef_q = 43 per unit Σx. With
        output 1's conversion weights zeroed, only output 0 has one; it is still added
        (mutant: ``x_sum_any`` as ``np.all``: no correction, output 0 off by 43·Σx)."""
        layer = _layer(encoding="twos_complement", on_off_ratio=4.0,
                       off_current_compensation="digital")
        np.testing.assert_array_equal(layer.x_sum_coef, [43.0, 43.0])
        coef = np.where(layer.out_col == 1, 0.0, layer.conv_coef)
        half = layer.with_conv_coef(coef)
        np.testing.assert_array_equal(half.x_sum_coef, [43.0, 0.0])
        x = np.array([[1, 2, 3], [200, 0, 5]], dtype=np.int64)
        y, ev = engine.run(half, x)
        np.testing.assert_array_equal(y, [[6.0, 0.0], [215.0, 0.0]])
        # one digital correction add per vector and output
        assert ev[EventKey(Component.DIGITAL, Action.CORRECTION_ADD, 32)] == 2 * 2


class TestSignedDriveEvents:
    def test_negative_drives_count_their_magnitude(self):
        """Signed 8-b inputs in one two's-complement plane: V1G = Σ|x|·rowsum (per row
        5, 1, 133) and V2G = Σ x²·rowsum (per row 13, 1, 16409), both kernels (mutant: the
        signed Σ x, which cancels and goes negative)."""
        layer = prog.program(_w(), ideal_chip(dac_bits=None, signed_inputs="twos_complement"),
                             input_signed=True)
        np.testing.assert_array_equal(layer.cell_rowsum, [1, 3, 4])
        x = np.array([[-3, 0, 5], [2, -1, -128]], dtype=np.int64)
        for kernel in ("numba", "numpy"):
            y, ev = engine.run(layer, x, kernel=kernel)
            np.testing.assert_array_equal(y, x @ _w().T)
            assert ev[event_key("cell", "v1g_lsb")] == 5 * 1 + 1 * 3 + 133 * 4
            assert ev[event_key("cell", "v2g_lsb")] == 13 * 1 + 1 * 3 + 16409 * 4
            assert ev[event_key("dac", "pulse", 8)] == 5.0  # nonzero drives, 1 column tile


class TestReadNoiseVariance:
    def test_read_noise_grows_with_the_drive_not_its_root(self):
        """Per-cell read noise of sigma 0.25·G: an input of 16 on one cell of conductance 1
        spreads the output by 16·0.25 = 4 (variance x²·σ²; mutant: |x|·σ², a spread of 1),
        200 vectors, seeded."""
        layer = _layer(np.array([[1]]), dac_bits=None, noise={"read_noise_rel": 0.25})
        np.testing.assert_array_equal(layer.gemm_var, [[0.0625, 0.0, 0.0, 0.0]])
        y, _ = engine.run(layer, np.full((200, 1), 16, dtype=np.int64), noise_seed=3)
        assert 3.5 < y.std() < 4.5 and abs(y.mean() - 16.0) < 1.0


# ---------------------------------------------------------------------------------------------
# engine: the exact noise sampler's guards


def _exact_layer(thermal: float = 1.0, comparator: float = 0.0, read: float = 0.0):
    """One output of 8 rows in two row groups (4-row arrays), one conversion per group (a
    merged pair), a 4-b ADC of 1-LSB steps fixed on [0, 15]."""
    chip = ideal_chip(weight_bits=3, bits_per_cell=2, input_bits=4, dac_bits=None, n_rows=4,
                      noise={"thermal_sigma_lsb": thermal, "read_noise_rel": read},
                      adc={"bits": 4, "range_policy": "fixed", "fixed_lo": 0.0,
                           "fixed_hi": 15.0, "comparator_noise_lsb": comparator})
    layer = prog.program(np.ones((1, 8), dtype=np.int64), chip)
    assert (layer.n_groups, layer.n_conversions) == (2, 1)
    return layer


class TestExactNoiseStepsGuards:
    def test_each_group_takes_its_own_step(self, monkeypatch):
        """Steps of 1 and 0.5 LSB in the two row groups: thermal noise of 1 LSB is 1 and 2
        steps (mutant: every group divided by group 0's step)."""
        from cimsim.adc.tables import ADCTables

        monkeypatch.setenv(engine.NOISE_SAMPLER_ENV, "exact")
        layer = _exact_layer().with_adc(ADCTables.linear(np.zeros((2, 1)),
                                                         np.array([[1.0], [0.5]])))
        np.testing.assert_array_equal(engine.exact_noise_steps(layer, 0), [1.0])
        np.testing.assert_array_equal(engine.exact_noise_steps(layer, 1), [2.0])

    def test_comparator_noise_alone_in_steps(self, monkeypatch):
        """No thermal noise, comparator noise of 3 LSB: sqrt(0 + 3²) = 3 steps (mutant: the
        comparator's sigma not squared, sqrt(3))."""
        monkeypatch.setenv(engine.NOISE_SAMPLER_ENV, "exact")
        layer = _exact_layer(thermal=0.0, comparator=3.0)
        np.testing.assert_array_equal(engine.exact_noise_steps(layer, 0), [3.0])

    def test_threshold_tables_take_the_gaussian_path(self, monkeypatch):
        """A threshold (non-linear) ADC draws no exact codes (mutant: its thresholds not
        checked, the linear steps taken for a non-linear grid)."""
        from cimsim.adc.tables import ADCTables

        monkeypatch.setenv(engine.NOISE_SAMPLER_ENV, "exact")
        tables = ADCTables.from_levels(np.tile([0.5, 1.5, 2.5], (2, 1, 1)),
                                       np.tile([0.0, 1.0, 2.0, 3.0], (2, 1, 1)))
        assert engine.exact_noise_steps(_exact_layer().with_adc(tables), 0).shape == (0,)

    def test_per_cell_read_noise_takes_the_gaussian_path(self, monkeypatch):
        """Per-cell read noise (a per-vector variance) draws no exact codes (mutant: the
        read-noise variance not checked)."""
        monkeypatch.setenv(engine.NOISE_SAMPLER_ENV, "exact")
        layer = _exact_layer(read=0.01)
        assert layer.gemm_var is not None
        assert engine.exact_noise_steps(layer, 0).shape == (0,)
        np.testing.assert_array_equal(engine.exact_noise_steps(_exact_layer(), 0), [1.0])


# ---------------------------------------------------------------------------------------------
# program: tiling


class TestTilingByHand:
    def test_ragged_column_tiles_and_utilization(self):
        """3 outputs x 8 columns (differential 8-b in 2-b cells) on 4x20 arrays: whole
        outputs, 16 columns an array, so 24 columns take 2 column tiles; 6 rows take 2 row
        tiles: 4 arrays, from the shape alone as well (mutants: floor division, 1 column
        tile; arrays as tiles added). Utilization 6·24 / (4·4·20) = 0.45 (mutant: over the
        16 used columns, not the array's 20). Conversions 0-7 in array 0, 8-11 in array 1."""
        chip = ideal_chip(n_rows=4, n_cols=20)
        layer = prog.program(np.ones((3, 6), dtype=np.int64), chip)
        assert (layer.cols_per_tile, layer.n_col_tiles, layer.n_arrays) == (16, 2, 4)
        assert prog.n_arrays_for_shape(3, layer.row_tiles, chip) == 4
        assert layer.cell_utilization == pytest.approx(0.45, rel=1e-12)
        np.testing.assert_array_equal(layer.conv_col_tile, [0] * 8 + [1] * 4)

    def test_an_unpaired_conversion_takes_its_own_columns_tile(self):
        """Two's complement 8-b in 2-b cells: 5 columns an output, one read each (no
        negative column: -1 in ``conv_phys``); 5 to an 8-column array, so output 1's
        conversions sit in array 1 (mutant: the tile of the padding -1, i.e. -1)."""
        layer = prog.program(np.array([[1, -2], [3, 4]]),
                             ideal_chip(encoding="twos_complement", n_cols=8))
        assert layer.cols_per_tile == 5
        assert (layer.conv_phys[:, 1] == -1).all()
        np.testing.assert_array_equal(layer.conv_col_tile, [0] * 5 + [1] * 5)


# ---------------------------------------------------------------------------------------------
# program: argument checks


class TestProgramArguments:
    @pytest.mark.parametrize("shape", [(0, 3), (2, 0)])
    def test_an_empty_matrix_is_refused_by_name(self, shape):
        """No outputs or no inputs: "must not be empty" (mutant: only both empty refused,
        then NumPy's zero-size reduction error)."""
        with pytest.raises(ValueError, match="w_int must not be empty"):
            prog.program(np.ones(shape, dtype=np.int64), ideal_chip())

    def test_float_weights_are_refused(self):
        """Float weights: an integer dtype is needed (mutant: 1.0 taken as 1)."""
        with pytest.raises(ValueError, match="w_int must have an integer dtype"):
            prog.program(np.ones((2, 3)), ideal_chip())

    @pytest.mark.parametrize("tiles", [[(0, 2, 4)], [(0, 2), (2, True)], [(0, 2), (2.0, 4)],
                                       [(0, 2), (2, 4.0)]])
    def test_a_tile_that_is_no_pair_of_integers_is_refused(self, tiles):
        """A triple, a bool or a float bound is refused as such (mutants: the length, the
        bool or the second bound not checked)."""
        from cimsim.errors import MappingError

        with pytest.raises(MappingError, match="each tile is a pair of integers"):
            prog.program(np.ones((1, 4), dtype=np.int64), ideal_chip(n_rows=2),
                         row_tiles=tiles)

    def test_tiles_must_leave_no_gap_nor_overlap_and_may_fill_an_array(self):
        """Tiles (0, 2), (3, 4) skip row 2 (mutant: only overlaps refused, ``a < prev``) and
        (0, 3), (2, 4) overlap; tiles of exactly ``n_rows`` rows are fine (mutant: ``>=
        n_rows`` refused)."""
        from cimsim.errors import MappingError

        w = np.ones((1, 4), dtype=np.int64)
        with pytest.raises(MappingError, match=r"row_tiles\[1\] = \(3, 4\) invalid"):
            prog.program(w, ideal_chip(n_rows=2), row_tiles=[(0, 2), (3, 4)])
        with pytest.raises(MappingError, match=r"row_tiles\[1\] = \(2, 4\) invalid"):
            prog.program(w, ideal_chip(n_rows=3), row_tiles=[(0, 3), (2, 4)])
        layer = prog.program(w, ideal_chip(n_rows=2), row_tiles=[(0, 2), (2, 4)])
        assert layer.row_tiles == [(0, 2), (2, 4)]

    def test_an_array_too_narrow_for_a_pair_is_refused(self):
        """A 1-column array cannot hold a differential pair (mutant: no check, 0 columns
        an array)."""
        from cimsim.errors import MappingError

        with pytest.raises(MappingError, match="cannot hold a differential column pair"):
            prog.program(np.ones((2, 3), dtype=np.int64), ideal_chip(n_cols=1))

    def test_a_ripple_output_one_column_short_is_refused(self):
        """Ripple digital columns: 8 weight + 8 guard columns need 16; 15 is refused
        (mutant: one column of slack, 0 outputs an array)."""
        from cimsim.errors import MappingError
        from tests.cost.test_digital_cim import digital_chip

        chip = digital_chip(n_rows=256, digital_column="ripple")
        chip = chip.replace(array=chip.array.replace(n_cols=15))
        with pytest.raises(MappingError, match="use n_cols >= 16"):
            prog.program(np.ones((2, 3), dtype=np.int64), chip)

    def test_input_signed_must_be_a_bool(self):
        """``input_signed = "false"`` is refused, not read as signed (mutant: ``bool()``)."""
        from cimsim.errors import ConfigError

        with pytest.raises(ConfigError, match="input_signed = 'false' is invalid"):
            prog.program(np.ones((1, 4), dtype=np.int64), ideal_chip(), input_signed="false")

    def test_the_drawn_cells_are_read_only(self):
        """Digits and conductances are shared through the programming cache: read-only
        (mutant: writable)."""
        layer = _layer(variation="lognormal", variation_sigma=0.1)
        assert not layer.digits_phys.flags.writeable
        assert not layer.g_phys.flags.writeable


class TestConvCoef:
    def test_bad_weights_are_refused(self):
        """``with_conv_coef``: a NaN, or the wrong count, is refused (mutants: either check
        dropped)."""
        layer = _layer(np.ones((1, 4), dtype=np.int64))
        assert layer.n_conversions == 4
        with pytest.raises(ValueError, match=r"coef must be \(4,\) finite values"):
            layer.with_conv_coef(np.array([1.0, np.nan, 1.0, 1.0]))
        with pytest.raises(ValueError, match=r"coef must be \(4,\) finite values, got \(5,\)"):
            layer.with_conv_coef(np.ones(5))

    def test_zero_and_powers_of_two_are_no_multiplies(self):
        """Weights 0, 2, -0.25 shift (or drop); only 3 is multiplied (mutant: 0 counted)."""
        layer = _layer(np.ones((1, 4), dtype=np.int64))
        assert layer.with_conv_coef(np.array([0.0, 2.0, -0.25, 3.0])).n_slice_multiplies == 1


class TestCellsKey:
    def test_the_bits_and_the_pair_readout_are_in_the_key(self):
        """Cells drawn for 8-b weights or an analog pair read-out are not those of 6-b
        weights or a digital pair read-out (mutants: either left out of the key)."""
        key = prog.cells_key(ideal_chip())
        assert key != prog.cells_key(ideal_chip(weight_bits=6))
        assert key != prog.cells_key(ideal_chip(differential_readout="digital"))
        assert key == prog.cells_key(ideal_chip(n_rows=8))


# ---------------------------------------------------------------------------------------------
# engine: arguments and counts


class TestEngineArguments:
    @pytest.mark.parametrize("value", ["x", "Gaussian", ""])
    def test_an_unknown_noise_sampler_is_refused(self, monkeypatch, value):
        """``CIMSIM_NOISE_SAMPLER``: only 'gaussian' or 'exact' (mutant: another name
        accepted, then read as 'exact' or 'gaussian' at random places)."""
        from cimsim.errors import ConfigError

        monkeypatch.setenv(engine.NOISE_SAMPLER_ENV, value)
        with pytest.raises(ConfigError, match="CIMSIM_NOISE_SAMPLER = .* is invalid"):
            engine.noise_sampler()

    @pytest.mark.parametrize("gemm", ["x", "float16"])
    def test_an_unknown_gemm_is_refused(self, gemm):
        """``gemm``: 'auto', 'int8', 'float32' or 'float64' (mutant: another name taken as
        float64)."""
        with pytest.raises(ValueError, match=r"gemm = .*; allowed: 'auto', 'int8'"):
            engine.run(_layer(), np.ones((1, 3), dtype=np.int64), gemm=gemm)


class TestClipCount:
    def test_clipped_conversions_are_summed_over_vectors(self):
        """A 4-b ADC fixed on [0, 15], two row groups of 4 rows of weight 1: inputs of 5
        on all 8 rows clip both groups' conversions (20 > 15.5), on the first 4 rows one,
        zeros none: 3 in all (mutant: the largest per-vector count, 2)."""
        layer = _exact_layer(thermal=0.0)
        x = np.array([[5] * 8, [5] * 4 + [0] * 4, [0] * 8], dtype=np.int64)
        res = engine.run_detailed(layer, x)
        assert res.n_clipped == 3
        assert res.n_conversions == 3 * 1 * 2 * 1
        np.testing.assert_array_equal(res.y, [[30.0], [15.0], [0.0]])


# ---------------------------------------------------------------------------------------------
# engine: calibration with a fused activation


def _sar_output_layer():
    """A 2-b SAR layer-output ADC (one conversion per output), min/max calibration (which
    alone keeps no samples): w = [[1, 0, 0], [0, 1, 0]], so the analog values are x[:, :2]."""
    from tests.conftest import bskmq_chip

    chip = bskmq_chip(weight_bits=4, bits=2, granularity="column")
    chip = chip.replace(adc=chip.adc.replace(kind="sar", calibration_stat="minmax"))
    return prog.program(np.array([[1, 0, 0], [0, 1, 0]], dtype=np.int64), chip)


class TestFusedCalibration:
    def test_a_fused_activation_keeps_the_samples(self):
        """With an activation the statistics keep every analog value for the level fit
        (mutant: ``keeps_samples`` asked without the activation: none kept)."""
        from cimsim.adc import FusedActivation

        layer = _sar_output_layer()
        act = FusedActivation(np.array([1.0, 2.0]), np.array([-1.0, 0.5]), 6.0)
        x = np.array([[0, 1, 0], [2, 0, 0], [4, 3, 0]], dtype=np.int64)
        stats = engine.calibration_stats(layer, x, act)
        np.testing.assert_array_equal(stats.kept(0), [[0.0, 1.0], [2.0, 0.0], [4.0, 3.0]])
        assert engine.calibrate(layer, x, activation=act).adc.thr is not None

    def test_one_kappa_per_conversion(self):
        """Three kappas for a layer of two conversions: refused with the counts (mutant: only
        the row groups checked)."""
        from cimsim.adc import FusedActivation
        from cimsim.errors import ConfigError

        layer = _sar_output_layer()
        with pytest.raises(ConfigError, match="2 conversions for 3 outputs"):
            engine.calibrate(layer, np.ones((2, 3), dtype=np.int64),
                             activation=FusedActivation(np.ones(3), np.zeros(3)))


# ---------------------------------------------------------------------------------------------
# program: device draws and GEMM operands


class TestDevicesAndOperands:
    def test_stuck_off_faults_alone_draw_their_uniforms(self):
        """Stuck-off faults without stuck-on ones still draw the fault uniforms (mutant: only
        ``p_stuck_on > 0`` drew them, and the twin then saw no faults)."""
        d = prog.draw_devices((2, 3), ideal_chip(p_stuck_off=0.3), np.random.default_rng(0))
        assert d.z is None
        np.testing.assert_array_equal(d.u, np.random.default_rng(0).random((2, 3)))

    def test_a_merged_pair_adds_both_columns_read_noise(self):
        """Read noise 0.25·G: weight 1 lies in output 0's positive column, -1 in output 1's
        negative one; the merged GEMM column of each pair carries its cell's variance
        0.0625 (mutant: only the positive column's, 0 for output 1)."""
        layer = _layer(np.array([[1], [-1]]), dac_bits=None, noise={"read_noise_rel": 0.25})
        np.testing.assert_array_equal(layer.gemm_var, [[0.0625, 0, 0, 0, 0.0625, 0, 0, 0]])

    def test_combined_slices_weight_their_variance_by_the_square(self):
        """Analog slice read-out, offset 4-b in 1-b cells weighted 1:2:4:8, read noise
        0.5·G: w = 5 stores 13 = 1101b, variance 0.25·(1 + 16 + 64) = 20.25; w = 3 stores
        11 = 1011b, 0.25·(1 + 4 + 64) = 17.25 (mutant: weights |w| for w², 3.25 and 4.75)."""
        layer = _layer(np.array([[5, 3]]), slice_readout="analog", weight_bits=4,
                       bits_per_cell=1, encoding="offset", noise={"read_noise_rel": 0.5})
        np.testing.assert_array_equal(layer.gemm_var, [[20.25], [17.25]])

    def test_combined_slices_off_current_takes_the_signed_weights(self):
        """Two's complement 4-b in 1-b cells combined 1:2:4:-8, g_off = 1/15, digital
        compensation: the conversion's off-current per unit Σx is g_off·(1 + 2 + 4 - 8) =
        -1/15, corrected digitally by +1/15 (mutant: |weights|, 15/15)."""
        layer = _layer(np.array([[5, -3]]), slice_readout="analog", weight_bits=4,
                       bits_per_cell=1, encoding="twos_complement", on_off_ratio=16.0,
                       off_current_compensation="digital")
        np.testing.assert_allclose(layer.off_add, [-1 / 15], rtol=1e-12)
        np.testing.assert_allclose(layer.x_sum_coef, [1 / 15], rtol=1e-12)

    def test_a_sensed_cells_read_draws_its_off_current(self):
        """Varied 1-b MRAM sensed to bits (g_off = 1): the read-energy row sums are the
        sensed bits plus g_off on each of the 8 columns (mutant: the bits alone)."""
        from tests.cost.test_digital_cim import digital_chip

        chip = digital_chip(n_rows=4, cell="mram", on_off_ratio=2.0)
        chip = chip.replace(device=chip.device.replace(variation="lognormal",
                                                       variation_sigma=0.05))
        layer = prog.program(np.array([[1, -2, 3, 0]]), chip, 3)
        np.testing.assert_array_equal(layer.g_phys.sum(axis=1), [1, 7, 2, 0])
        np.testing.assert_array_equal(layer.cell_rowsum, [9, 15, 10, 8])


# ---------------------------------------------------------------------------------------------
# engine: per-row-group conversion settings


class TestPerGroupConversion:
    def test_each_group_converts_with_its_own_thresholds(self):
        """Threshold tables: group 0 levels 0..3 at thresholds 0.5, 1.5, 2.5; group 1
        levels 0, 10, 20, 30 at 5, 15, 25. A sum of 10 in group 1 reads 10, a sum of 2 in
        group 0 reads 2 (mutant: group 0's thresholds for every group, 10 read as 30)."""
        from cimsim.adc.tables import ADCTables

        tables = ADCTables.from_levels(np.array([[[0.5, 1.5, 2.5]], [[5.0, 15.0, 25.0]]]),
                                       np.array([[[0.0, 1.0, 2.0, 3.0]],
                                                 [[0.0, 10.0, 20.0, 30.0]]]))
        layer = _exact_layer(thermal=0.0).with_adc(tables)
        x = np.array([[0, 0, 0, 0, 3, 3, 3, 1], [1, 1, 0, 0, 0, 0, 0, 0]], dtype=np.int64)
        np.testing.assert_array_equal(engine.run(layer, x)[0], [[10.0], [2.0]])

    def test_each_group_draws_exact_codes_with_its_own_noise(self, monkeypatch):
        """The exact sampler, thermal noise 1 LSB: group 0's step of 100 LSB makes 0.01
        steps of noise, group 1's step of 1 LSB 1 step. 200 vectors summing 8 in group 1
        spread by about 1 (mutant: group 0's 0.01 steps for every group, no spread)."""
        from cimsim.adc.tables import ADCTables

        monkeypatch.setenv(engine.NOISE_SAMPLER_ENV, "exact")
        layer = _exact_layer().with_adc(ADCTables.linear(np.zeros((2, 1)),
                                                         np.array([[100.0], [1.0]])))
        x = np.tile(np.array([0, 0, 0, 0, 2, 2, 2, 2], dtype=np.int64), (200, 1))
        y = engine.run(layer, x, noise_seed=1)[0]
        assert 0.7 < y.std() < 1.3


class TestBlockFpRun:
    def test_a_run_counts_the_block_fp_events(self):
        """A block floating-point layer's run counts the pre-alignment events
        (``block_fp_events``; mutant: never added to the run's events)."""
        quant = ideal_chip().quant.replace(act_format="block_fp", act_exponent_bits=5)
        layer = _layer(quant=quant)
        _, ev = engine.run(layer, np.ones((2, 3), dtype=np.int64))
        for key, n in engine.block_fp_events(layer, 2).items():
            assert ev[key] == n > 0


# ---------------------------------------------------------------------------------------------
# aging layers: the compensation gain


def _aged_layer():
    """A drifting device with global compensation, seen 1000 s after programming: its
    conversion weights carry the compensation gain (about 1.995 here)."""
    chip = ideal_chip(n_rows=16, n_cols=64, on_off_ratio=16.0)
    chip = chip.replace(device=chip.device.replace(drift_nu_mean=(0.1,),
                                                   drift_compensation="global"))
    layer = prog.program(np.array([[3, -5, 7]]), chip, 0).with_time(1000.0)
    np.testing.assert_array_equal(layer.aging.coef_t0, [1.0, 4.0, 16.0, 64.0])
    assert abs(layer.conv_coef[0] - 2.0) < 0.01 and layer.conv_coef[0] != 2.0
    return layer


class TestCompensationGain:
    def test_the_gain_is_no_slice_multiply_but_its_own_event(self):
        """The gain folded into the weights after t0 is not a slice multiply (mutant: the
        current weights asked, 4 multiplies); a run counts one gain multiply per vector and
        output (mutant: ``gain_events`` not added)."""
        layer = _aged_layer()
        assert layer.n_slice_multiplies == 0
        _, ev = engine.run(layer, np.ones((3, 3), dtype=np.int64))
        assert ev[EventKey(Component.DIGITAL, Action.DRIFT_GAIN_MULTIPLY, 0)] == 3.0
        assert EventKey(Component.DIGITAL, Action.SLICE_MULTIPLY, 32) not in dict(ev.items())

    def test_new_weights_on_an_aged_layer_keep_the_gain(self):
        """``with_conv_coef`` on a layer seen at 1000 s: the new weights times the layer's
        gain (mutant: the layer not brought back to its time, the gain lost)."""
        layer = _aged_layer()
        coef = np.array([1.0, 2.0, 4.0, 8.0])
        new = layer.with_conv_coef(coef)
        np.testing.assert_array_equal(new.aging.coef_t0, coef)
        np.testing.assert_allclose(new.conv_coef, coef * layer.aging.gain, rtol=1e-15)


class TestTernaryPairs:
    def test_a_ternary_pair_is_read_in_analog(self):
        """Ternary 2-b weights in 1-b cell pairs with an analog pair read-out: each pair is
        one GEMM column (half the 8 physical ones) and a conversion reads -256..256 over 256
        rows of 1-b inputs (mutant: ternary not an analog pair, 8 GEMM columns and a range
        0..256)."""
        layer = _layer(np.array([[1, -1, 0], [0, 1, 1]]), encoding="ternary", weight_bits=2,
                       bits_per_cell=1)
        assert (layer.n_phys_cols, layer.gemm_matrix.shape[1]) == (8, 4)
        assert (layer.fs_lo, layer.fs_hi) == (-256.0, 256.0)


class TestDriftedReference:
    def test_analog_compensation_removes_the_drifted_off_current(self):
        """Offset encoding, g_off = 0.2, analog off-current compensation, drift exponent
        0.1: at 2^10·t0 the reference column has drifted by (2^10)^-0.1 = 1/2, so each
        column's analog compensation removes 0.1 per unit Σx (mutant: the undrifted 0.2)."""
        chip = ideal_chip(n_rows=16, n_cols=64, on_off_ratio=16.0, encoding="offset",
                          off_current_compensation="analog")
        chip = chip.replace(device=chip.device.replace(drift_nu_mean=(0.1,)))
        layer = prog.program(np.array([[3, -5, 7]]), chip, 0)
        np.testing.assert_array_equal(layer.off_add, [0.0] * 4)
        aged = layer.with_time(chip.device.drift_t0_s * 2**10)
        np.testing.assert_allclose(aged.off_add, [-0.1] * 4, rtol=1e-6)


class TestReadRowSums:
    def test_ideal_cells_with_an_off_current_draw_it_on_every_column(self):
        """Ideal (unvaried) cells with g_off = 1 (2-b cells, on/off 4): the read-energy row
        sums add g_off on each of the 16 physical columns, Σ|d| + 16 = 17, 19, 20 (mutant:
        the digits' sums alone, 1, 3, 4)."""
        layer = _layer(on_off_ratio=4.0)
        assert layer.g_phys is None and layer.n_phys_cols == 16
        np.testing.assert_array_equal(layer.cell_rowsum, [17.0, 19.0, 20.0])


class TestNoiseStreams:
    def test_thermal_and_comparator_noise_are_independent(self):
        """Thermal and comparator noise of 1 LSB each come from two streams of the seed: they
        add in variance (the output's spread here, two conversions, one clipped at 0, is
        about 1.7). Drawn from one stream they are the same normal and add in sigma
        (mutant: the comparator keyed as the thermal stream, a spread of about 2.4)."""
        layer = _exact_layer(thermal=1.0, comparator=1.0)
        x = np.tile(np.array([2, 2, 2, 2, 0, 0, 0, 0], dtype=np.int64), (400, 1))
        y = engine.run(layer, x, noise_seed=2)[0]
        assert 1.4 < y.std() < 2.0


class TestLayerOutputPlacement:
    def test_a_layer_output_adc_refuses_two_input_passes(self):
        """A layer-output ADC with signed inputs in two passes (two planes, which the chip's
        config cannot see: the layer's inputs are signed) is refused (mutant: the planes not
        checked)."""
        from cimsim.errors import MappingError
        from tests.conftest import bskmq_chip

        w = np.ones((2, 3), dtype=np.int64)
        chip = bskmq_chip()
        two_pass = chip.replace(dac=chip.dac.replace(signed_inputs="two_pass"))
        assert prog.program(w, two_pass).n_conversions == 2
        with pytest.raises(MappingError, match=r"this layer has 2 plane\(s\)"):
            prog.program(w, two_pass, input_signed=True)


class TestLevelReadNoise:
    def test_read_noise_of_some_levels_only_is_kept(self):
        """1/f read noise on level 3 only (``read_noise_q_s = (0, 0, 0, 0.1)``, no white
        noise): the cells at level 3 (w = 3 and 7 hold digit 3 in their lowest slice) carry a
        variance, the others none (mutant: ``np.all(rel > 0)``, no read noise at all)."""
        chip = ideal_chip(n_rows=16, n_cols=64, on_off_ratio=16.0)
        chip = chip.replace(device=chip.device.replace(read_noise_q_s=(0.0, 0.0, 0.0, 0.1),
                                                       drift_nu_mean=(0.1,)))
        layer = prog.program(np.array([[3, -5, 7]]), chip, 0).with_time(100.0)
        assert layer.gemm_var is not None
        np.testing.assert_array_equal(layer.gemm_var[:, 0] > 0, [True, False, True])

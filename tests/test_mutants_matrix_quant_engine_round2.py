"""Tests written for the survivors of a second hand-made mutation round over
``cimsim.mapping.matrix`` (calibration statistics, the engine view, group packing),
``cimsim.mapping.quant`` (the weight and activation quantizers), ``cimsim.mapping.weight_view``,
``cimsim.engine`` and ``cimsim.events``: each pins a behaviour that a small wrong change left
every earlier test passing (its docstring names the place and the change). Known answers by
hand where the quantizers are exact; small lossless chips; nothing large is allocated."""

from __future__ import annotations

import numpy as np
import pytest

from cimsim.arrays._rng import stream_key
from cimsim.errors import MappingError
from cimsim.mapping import matrix
from cimsim.mapping.matrix import InputStats


def _rows(*rows) -> np.ndarray:
    return np.array(rows, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# matrix.InputStats


class TestInputStatsObserve:
    def test_an_empty_batch_is_a_no_op(self):
        """``observe``'s early return on ``x.size == 0`` (mutant: ``x.size < 0``, which reduced
        the empty batch with ``min`` and raised): an empty batch records nothing."""
        s = InputStats(0)
        s.observe(np.empty((0, 3)))
        assert s.n_seen == 0 and s.sample is None and s.max_abs == 0.0

    def test_the_error_counts_nan_and_infinite_values_apart(self):
        """The refusal of non-finite inputs counts ``nan`` NaN and ``non-finite - nan``
        infinite values (mutant: the infinite count included the NaN)."""
        x = _rows([np.nan, np.inf], [-np.inf, 1.0])
        with pytest.raises(MappingError, match=r"layer 'fc': .* 1 NaN and 2 infinite values "
                                               r"\(of 4\)"):
            InputStats(0).observe(x, "fc")

    def test_max_abs_is_the_largest_magnitude_of_a_negative_input(self):
        """``max_abs = max(max_abs, max|x|)`` (mutant: ``max(x)``, which missed a negative
        input larger in magnitude than every positive one)."""
        s = InputStats(0)
        s.observe(_rows([-3.0, 0.5], [1.0, -0.25]))
        assert (s.max_abs, s.min_val, s.max_val) == (3.0, -3.0, 1.0)

    def test_a_single_row_is_kept_in_the_sample(self):
        """The reservoir takes the first rows while it has room: ``if fill > 0`` (mutant:
        ``fill > 1`` dropped a batch of one row)."""
        s = InputStats(0)
        s.observe(_rows([1.0, 2.0]))
        np.testing.assert_array_equal(s.sample, _rows([1.0, 2.0]))

    def test_the_reservoir_fills_to_the_cap_then_counts_every_row(self, monkeypatch):
        """With a cap of 3 rows: a batch of 2 and one of 4 fill exactly 3 slots (mutant:
        ``cap - len(sample) - 1``), ``n_seen`` counts all 6 rows (mutant: only the rows
        filled)."""
        monkeypatch.setattr(matrix, "MAX_CALIBRATION_ROWS", 3)
        s = InputStats(5)
        s.observe(_rows([1.0], [2.0]))
        s.observe(_rows([3.0], [4.0], [5.0], [6.0]))
        assert s.n_seen == 6 and s.sample.shape == (3, 1)
        assert set(s.sample[:, 0]) <= {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}

    @pytest.mark.parametrize("seed", [0, 1, 2, 3])
    def test_algorithm_r_by_hand(self, monkeypatch, seed):
        """Algorithm R, sequentially: row j (1-based) draws ``slot = floor(u·j)`` and replaces
        that slot when ``slot < cap``, from the generator ``stream_key(seed, 7)`` (mutants:
        ``j`` one lower, ``slot <= cap``, which also indexed past the reservoir)."""
        cap, n = 2, 40
        monkeypatch.setattr(matrix, "MAX_CALIBRATION_ROWS", cap)
        x = np.arange(n, dtype=np.float64)[:, None]
        s = InputStats(seed)
        s.observe(x[:5])
        s.observe(x[5:])
        u = np.random.default_rng(stream_key(seed, 7)).random(n - cap)  # one per row past cap
        want = [0.0, 1.0]
        for j in range(cap + 1, n + 1):
            slot = int(u[j - cap - 1] * j)
            if slot < cap:
                want[slot] = float(j - 1)
        np.testing.assert_array_equal(s.sample[:, 0], want)
        assert s.n_seen == n


class TestInputStatsShareAndAllZero:
    def test_one_matrix_shares_with_no_one(self):
        """``share`` of a single matrix's statistics does nothing (``len(stats) < 2``; mutant:
        ``< 1`` gave it a pooled sample, which marks a grouped layer's matrix and turns off
        :func:`coarse_inputs` for it)."""
        s = InputStats(0)
        s.observe(_rows([1.0, -2.0]))
        InputStats.share([s])
        assert s.pooled is None

    def test_two_matrices_pool_their_ranges(self):
        """``share`` of two: max |x| and max the largest, min the smallest, the samples
        pooled."""
        a, b = InputStats(0), InputStats(1)
        a.observe(_rows([1.0, -2.0]))
        b.observe(_rows([3.0, 0.5]))
        InputStats.share([a, b])
        for s in (a, b):
            assert (s.max_abs, s.min_val, s.max_val) == (3.0, -2.0, 3.0)
            np.testing.assert_array_equal(s.pooled, [1.0, -2.0, 3.0, 0.5])

    def test_no_inputs_recorded_are_not_all_zero(self):
        """``all_zero`` needs inputs recorded (``n_seen > 0``; mutant: ``>= 0`` called fresh
        statistics all zero)."""
        s = InputStats(0)
        assert not s.all_zero
        s.observe(np.zeros((2, 2)))
        assert s.all_zero
        s.observe(_rows([0.0, 1e-300]))
        assert not s.all_zero


# ---------------------------------------------------------------------------------------------
# matrix.coarse_inputs, spread_rows


def _ideal(**top):
    import cimsim

    chip = cimsim.load_chip("ideal")
    dac = top.pop("dac", None)
    quant = top.pop("quant", None)
    if dac:
        chip = chip.replace(dac=chip.dac.replace(**dac))
    if quant:
        chip = chip.replace(quant=chip.quant.replace(**quant))
    return chip.replace(**top) if top else chip


def _coarse(chip, x):
    stats = InputStats(0)
    stats.observe(x)
    view = matrix.engine_view(np.eye(x.shape[1]), chip, stats)
    return view, matrix.coarse_inputs(view, stats)


class TestCoarseInputs:
    def test_three_input_bits_are_never_coarse(self):
        """Below 4 input bits the codes are few by design (``bits < 4``; mutant: ``bits < 3``
        called a 3-b matrix's small vectors coarse): unsigned, max 7 (s_x = 1), peaks 0.1."""
        x = np.full((20, 2), 0.1)
        x[0, 0] = 7.0
        view, coarse = _coarse(_ideal(input_bits=3), x)
        assert view.s_x == 1.0 and not view.input_signed
        assert coarse is False

    def test_all_zero_vectors_are_left_out_of_the_median(self):
        """Only nonzero vectors count (``peak > 0``; mutant: ``>= 0`` put 15 zero vectors in
        the median, 0, and called it coarse): signed 8-b, s_x = 1, the nonzero peaks
        127, 5, 5, 5, 5 (median 5 > 127 / 32)."""
        x = np.zeros((20, 2))
        x[0, 0] = -127.0
        x[1:5, 1] = 5.0
        view, coarse = _coarse(_ideal(), x)
        assert view.s_x == 1.0 and view.input_signed
        assert coarse is False

    @pytest.mark.parametrize("peak, coarse", [(5.0, True), (8.0, False)])
    def test_a_shifted_matrix_counts_its_unsigned_codes(self, peak, coarse):
        """The A-shift (``dac.shift_unsigned_inputs``) drives signed codes, but its inputs are
        unsigned: 255 codes (``input_signed and not zero_point``; mutant: ``input_signed``
        alone counted 127, so a peak of 5 codes, below 255 / 32 = 7.97, passed)."""
        x = np.full((20, 2), peak)
        x[0, 0] = 255.0
        view, got = _coarse(_ideal(dac={"shift_unsigned_inputs": True,
                                        "signed_inputs": "twos_complement"}), x)
        assert view.input_signed and view.zero_point == -128 and view.s_x == 1.0
        assert got is coarse

    def test_a_median_exactly_at_the_share_is_not_coarse(self):
        """Strictly below ``COARSE_INPUT_SHARE · codes`` (mutant: ``<=``): signed 8-b, s_x = 1,
        every vector's peak exactly 127 / 32 = 3.96875 (a binary fraction)."""
        x = np.full((21, 2), -127 / 32)
        x[0, 0] = 127.0
        x[1, 0] = 127.0
        view, coarse = _coarse(_ideal(), x)
        assert view.s_x == 1.0
        assert np.median(np.abs(x).max(axis=1)) == 127 / 32
        assert coarse is False


    def test_smoothed_inputs_are_judged_as_the_quantizer_sees_them(self):
        """With smoothing (alpha = 1, unit weights: s_k = max|x_k| = 0.01) the quantizer sees
        x / s = 1 in every vector, 255 codes: not coarse (mutant: the raw 0.01 against that
        step, 2.55 codes, called coarse)."""
        x = np.full((20, 2), 0.01)
        view, coarse = _coarse(_ideal(quant={"smooth_alpha": 1.0}), x)
        np.testing.assert_allclose(view.smooth, [0.01, 0.01], rtol=1e-15)
        assert view.s_x == pytest.approx(1 / 255, rel=1e-12)
        assert coarse is False


class TestSpreadRows:
    @pytest.mark.parametrize("n, k, want", [(5, 3, [0, 2, 4]), (9, 5, [0, 2, 4, 6, 8]),
                                            (3, 10, [0, 1, 2]), (1, 4, [0])])
    def test_first_and_last_rows_included(self, n, k, want):
        """``linspace(0, n - 1, min(n, k))`` (mutant: ``n - 2`` lost the last row)."""
        np.testing.assert_array_equal(matrix.spread_rows(n, k), want)


# ---------------------------------------------------------------------------------------------
# matrix.kernel_row_tiles


def _tiling_chip(n_rows: int, preserve: bool = True):
    chip = _ideal()
    return chip.replace(array=chip.array.replace(n_rows=n_rows, kernel_preserving_tiling=preserve))


class TestPackedGroups:
    def test_a_packs_tiles_cover_the_pack(self):
        """4 groups of a 1-d conv (kernel 3, one input channel and one output each) on 8-row
        arrays with kernel-preserving tiles (2 kernels, 6 rows a tile): packs of 2 groups
        (12 rows would take 2 tiles), tiled [(0, 6)], the pack's 6 rows (mutant: the
        tiles of one group's 3 rows)."""
        chip = _tiling_chip(8)
        chip = chip.replace(array=chip.array.replace(group_packing="diagonal"))
        w2 = np.arange(1.0, 13.0).reshape(4, 3)
        per, packed, tiles = matrix.packed_groups(w2, 4, (3,), chip, "c")
        assert (per, tiles) == (2, [(0, 6)])
        np.testing.assert_array_equal(packed, [[1, 2, 3, 0, 0, 0], [0, 0, 0, 4, 5, 6],
                                               [7, 8, 9, 0, 0, 0], [0, 0, 0, 10, 11, 12]])


class TestKernelRowTiles:
    def test_whole_kernels_per_tile_by_hand(self):
        """3x3 kernels (9 rows) on 20-row arrays: 2 kernels (18 rows) a tile, so K = 27 rows
        are tiles [0, 18) and [18, 27) (mutant: a step of ``per_tile`` = 2 rows)."""
        assert matrix.kernel_row_tiles((3, 3), 27, _tiling_chip(20), "c") == [(0, 18), (18, 27)]
        assert matrix.kernel_row_tiles((3, 3), 27, _tiling_chip(20, False), "c") is None

    def test_a_kernel_larger_than_an_array_is_refused_naming_the_layer(self):
        """``per_tile == 0`` raises a MappingError (mutant: ``< 0`` went on to
        ``range(0, k, 0)``'s ValueError, naming nothing)."""
        with pytest.raises(MappingError, match=r"layer 'c': a 3x3 kernel \(9 rows\) does not "
                                               r"fit in array.n_rows = 8"):
            matrix.kernel_row_tiles((3, 3), 27, _tiling_chip(8), "c")


# ---------------------------------------------------------------------------------------------
# matrix.engine_view


class TestEngineViewChecks:
    def test_the_error_counts_nan_and_infinite_weights_apart(self):
        """Non-finite weights: ``nan`` NaN and ``non-finite - nan`` infinite (mutant: the
        infinite count included the NaN)."""
        w = np.array([[np.nan, np.inf], [1.0, 2.0]])
        with pytest.raises(MappingError, match=r"fc: its weights hold 1 NaN and 1 infinite "
                                               r"values \(of 4\)"):
            matrix.engine_view(w, _ideal(), np.ones((2, 2)), name="fc")

    def test_all_zero_binary_weights_do_not_warn(self):
        """Binary weights' scale is mean|w|, 0 for zero weights: exact, so no warning
        (``not binary``; mutant: warned) - and they compute 0."""
        import warnings

        chip = _ideal()
        chip = chip.replace(weight_encoding="binary", weight_bits=1,
                            device=chip.device.replace(bits_per_cell=1))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            view = matrix.engine_view(np.zeros((2, 3)), chip, np.ones((2, 3)))
        np.testing.assert_array_equal(view.s_w, [[0.0, 0.0]])
        np.testing.assert_array_equal(view.w_int, np.ones((2, 3)))

    def test_block_fp_inputs_with_a_zero_minimum_are_unsigned(self):
        """Block floating point: signed when the calibration minimum is below 0 (``lo < 0``;
        mutant: ``<= 0`` made post-ReLU inputs, whose minimum is 0, signed)."""
        chip = _ideal(quant={"act_format": "block_fp"})
        view = matrix.engine_view(np.eye(2), chip, _rows([0.0, 1.5], [2.0, 0.0]))
        assert view.input_signed is False and view.s_x == 1.0
        view = matrix.engine_view(np.eye(2), chip, _rows([-0.5, 1.5]))
        assert view.input_signed is True

    @pytest.mark.parametrize("fmt", ["int", "block_fp"])
    def test_one_input_bit_refuses_signed_inputs_naming_the_layer(self, fmt):
        """1-b inputs cannot be signed: ``SignedInputError`` naming the layer, in both input
        formats (mutants: ``input_bits < 1`` fell through to a quantizer error naming no
        layer)."""
        from cimsim.errors import SignedInputError

        chip = _ideal(input_bits=1, quant={"act_format": fmt})
        with pytest.raises(SignedInputError, match=r"layer 'fc': input_bits = 1 cannot hold "
                                                   r"signed activations .* reach -0\.5"):
            matrix.engine_view(np.eye(2), chip, _rows([-0.5, 1.5]), name="fc")


class TestEngineViewInputs:
    def test_given_row_tiles_are_programmed(self):
        """``row_tiles`` passed in (a conv's kernel-preserving tiles) are the view's and its
        layer's (mutants: the default tiles taken instead, in the view or when programming)."""
        view = matrix.engine_view(np.ones((2, 10)), _ideal(), np.ones((3, 10)),
                                  row_tiles=[(0, 4), (4, 10)])
        assert view.row_tiles == ((0, 4), (4, 10))
        assert [tuple(t) for t in view.layers[0].row_tiles] == [(0, 4), (4, 10)]

    def test_smoothing_takes_the_largest_magnitude_of_each_channel(self):
        """The smoothing factors' max|x_k| is ``max(-min_k, max_k)`` (mutant: ``max_k``, which
        missed a channel's larger negative inputs)."""
        from cimsim.mapping.quant import smooth_factors

        x = _rows([-4.0, 1.0], [1.0, 2.0])
        w = _rows([1.0, 0.5], [0.25, -2.0])
        view = matrix.engine_view(w, _ideal(quant={"smooth_alpha": 0.5}), x)
        np.testing.assert_allclose(view.smooth, smooth_factors(np.array([4.0, 2.0]), w, 0.5),
                                   rtol=1e-15)
        np.testing.assert_allclose(view.smooth, [2.0, 1.0], rtol=1e-15)

    def test_alpha_zero_still_smooths(self):
        """``smooth_alpha = 0`` is a migration strength (s_k = 1 / max|W_k|), not "off"
        (``is not None``; mutant: a falsy 0 turned smoothing off)."""
        view = matrix.engine_view(_rows([2.0, 0.5]), _ideal(quant={"smooth_alpha": 0.0}),
                                  np.ones((2, 2)))
        np.testing.assert_array_equal(view.smooth, [0.5, 2.0])

    def test_the_activation_callback_sees_the_programmed_view(self):
        """``activation`` is called once with the programmed view (mutant: never called)."""
        seen = []
        view = matrix.engine_view(np.eye(2), _ideal(), np.ones((2, 2)),
                                  activation=lambda v: seen.append(v.w_int.copy()))
        assert len(seen) == 1 and view.activation is None
        np.testing.assert_array_equal(seen[0], view.w_int)

    def test_asymmetric_inputs_are_unsigned_even_when_negative(self):
        """With ``act_zero_point`` the codes are unsigned whatever the range (mutant: signed
        when the minimum is below 0)."""
        view = matrix.engine_view(np.eye(2), _ideal(quant={"act_zero_point": True}),
                                  _rows([-1.0, 2.0], [0.5, 0.0]))
        assert view.input_signed is False and view.zero_point == 85
        np.testing.assert_array_equal(view.quantize(_rows([-1.0, 2.0])), [[0, 255]])

    def test_non_finite_inputs_are_refused_when_encoding(self):
        """``encode_counted`` refuses NaN and infinite inputs, counting them (mutant: no
        check, NaN cast to int64's minimum)."""
        view = matrix.engine_view(np.eye(2), _ideal(), np.ones((2, 2)))
        with pytest.raises(ValueError, match=r"2 of 4 inputs to the arrays are NaN or "
                                              r"infinite"):
            view.quantize(_rows([np.nan, 1.0], [np.inf, 0.0]))

    def test_unsigned_block_fp_inputs_clip_negative_values(self):
        """A block floating-point view of unsigned inputs encodes unsigned (mutant: signed),
        its negative inputs clipped to 0: [-1, 1] codes [0, 128] at X = -7."""
        view = matrix.engine_view(np.eye(2), _ideal(quant={"act_format": "block_fp"}),
                                  _rows([0.5, 1.0]))
        x_int, x_exp = view.encode(_rows([-1.0, 1.0]))
        assert not view.input_signed
        assert (x_int.tolist(), x_exp.tolist()) == ([[0, 128]], [[-7]])


class TestGroups:
    def test_group_max_abs_is_a_magnitude(self):
        """The largest |w| of a grouped layer (mutant: the largest w, 1.0 here); None for one
        group."""
        mats = _rows([-3.0, 1.0], [0.5, -0.25])
        assert matrix.group_max_abs(mats, 2) == 3.0
        assert matrix.group_max_abs(mats, 1) is None

    def test_group_names(self):
        """``NAME[gA-B]`` for a pack (``per > 1``; mutant: ``per > 2`` named a pack of two as
        one group), ``NAME[gJ]`` one group each, ``NAME`` for one matrix."""
        assert matrix.group_name("c", 1, 2, 2) == "c[g2-3]"
        assert matrix.group_name("c", 2, 3, 3) == "c[g6-8]"
        assert matrix.group_name("c", 1, 4, 1) == "c[g1]"
        assert matrix.group_name("c", 0, 1, 1) == "c"

    def test_torch_packs_unpack_to_their_groups(self):
        """``unpack_groups(pack_groups(m))`` is ``m`` for torch tensors too (mutant: the torch
        path's groups read in the wrong order), and for NumPy arrays."""
        import torch

        mats = torch.arange(4 * 2 * 3, dtype=torch.float64).reshape(8, 3)
        packed = matrix.pack_groups(mats, 4, 2)
        assert packed.shape == (8, 6)
        torch.testing.assert_close(matrix.unpack_groups(packed, 4, 2), mats, rtol=0, atol=0)
        np.testing.assert_array_equal(
            matrix.unpack_groups(matrix.pack_groups(mats.numpy(), 4, 2), 4, 2), mats.numpy())


# ---------------------------------------------------------------------------------------------
# quant: weights


def _gran(name: str):
    from cimsim.config import WeightGranularity

    return WeightGranularity(name)


class TestBinaryWeights:
    def test_zero_and_negative_zero_code_plus_one(self):
        """A binary cell has no 0: ``w >= 0`` codes +1, -0.0 included (mutant: ``w > 0``
        coded 0 as -1)."""
        from cimsim.mapping.quant import binary_codes

        np.testing.assert_array_equal(binary_codes(np.array([0.0, -0.0, -1e-9, 2.0])),
                                      [1, 1, -1, 1])

    def test_pow2_rounds_the_mean_magnitude_up(self):
        """1-b weights with ``pow2``: the scale mean|w| = 0.3 rounded up to 0.5 (mutant: the
        1-b path returned mean|w| unrounded)."""
        from cimsim.mapping.quant import quantize_weights

        w = np.array([[0.3, -0.3], [0.25, 0.0]])
        w_int, s = quantize_weights(w, 1, _gran("channel"), [(0, 2)], pow2=True)
        np.testing.assert_array_equal(w_int, [[1, -1], [1, 1]])
        np.testing.assert_array_equal(s, [[0.5, 0.125]])
        _, s = quantize_weights(w, 1, _gran("channel"), [(0, 2)])
        np.testing.assert_array_equal(s, [[0.3, 0.125]])


class TestSmoothFactors:
    def test_factors_by_hand(self):
        """``max|X_k|^α / max|W_k|^(1-α)``: α = 0.25, 16 and 16 give 2 / 8 = 0.25 (mutant:
        ``max|W_k|^α``, equal to it only at α = 0.5); a channel that never fires, or has no
        weight, gets 1."""
        from cimsim.mapping.quant import smooth_factors

        w = np.array([[16.0, 0.0, 1.0], [-2.0, 0.0, 0.5]])
        np.testing.assert_array_equal(smooth_factors(np.array([16.0, 3.0, 0.0]), w, 0.25),
                                      [0.25, 1.0, 1.0])


class TestPow2Scale:
    def test_a_list_of_scales_by_hand(self):
        """``pow2_scale`` takes any array-like with NumPy (mutant: a list not converted,
        refused): 0.3 -> 0.5, 0.25 stays, 0 stays 0, 3 -> 4."""
        from cimsim.mapping.quant import pow2_scale

        np.testing.assert_array_equal(pow2_scale([0.3, 0.25, 0.0, 3.0]), [0.5, 0.25, 0.0, 4.0])


class TestQuantizeWeights:
    def test_binary_column_scales_are_each_tiles_own_mean(self):
        """1-b ``column`` granularity: mean|w| of each (row tile, output) (mutant: a tile's
        slice one column wider took its neighbour's first column in)."""
        from cimsim.mapping.quant import quantize_weights

        w = np.array([[1.0, -3.0, 5.0], [0.5, 0.5, -0.25]])
        w_int, s = quantize_weights(w, 1, _gran("column"), [(0, 1), (1, 3)])
        np.testing.assert_array_equal(s, [[1.0, 0.5], [4.0, 0.375]])
        np.testing.assert_array_equal(w_int, [[1, -1, 1], [1, 1, -1]])

    def test_codes_beyond_the_layer_scale_clip_symmetrically(self):
        """A group at its layer's scale (``tensor`` granularity, ``layer_max_abs`` = 7,
        4 bits: q = 7, s = 1) whose weights exceed it: codes clipped to [-7, 7] (mutant: the
        lower end -8); 2.5 and -3.5 round half to even."""
        from cimsim.mapping.quant import quantize_weights

        w = np.array([[-20.0, 10.0, 2.5, -3.5]])
        w_int, s = quantize_weights(w, 4, _gran("tensor"), [(0, 4)], layer_max_abs=7.0)
        np.testing.assert_array_equal(s, [[1.0]])
        np.testing.assert_array_equal(w_int, [[-7, 7, 2, -4]])


# ---------------------------------------------------------------------------------------------
# quant: activations


class TestActRange:
    def test_ranges_by_hand(self):
        """Symmetric signed, full unsigned ranges; one signed bit is refused (mutant:
        ``bits < 1`` let 1-b signed inputs have the range {0})."""
        from cimsim.errors import ConfigError
        from cimsim.mapping.quant import act_range

        assert act_range(8, True) == (-127, 127)
        assert act_range(2, True) == (-1, 1)
        assert act_range(8, False) == (0, 255)
        assert act_range(1, False) == (0, 1)
        with pytest.raises(ConfigError, match="input_bits = 1 cannot hold signed"):
            act_range(1, True)


class TestQuantizeActsCounted:
    def test_signed_saturation_counts_by_hand(self):
        """Signed 8-b at s = 1: codes outside [-127, 127] before the clip count (mutants:
        ``q <= lo``, ``q >= hi`` also counted the end codes); 127.5 rounds half to even to 128."""
        from cimsim.mapping.quant import quantize_acts_counted

        x = np.array([-127.4, -127.6, 127.5, 127.4, 128.6, 0.0])
        codes, n = quantize_acts_counted(x, 1.0, 8, True)
        np.testing.assert_array_equal(codes, [-127, -127, 127, 127, 127, 0])
        assert n == 3

    def test_the_a_shift_clips_unsigned_then_shifts(self):
        """Zero point -128 (the A-shift): the unsigned code ``clip(rint(x), 0, 255)`` plus
        -128 (mutants: the range's top 256; the shift subtracted)."""
        from cimsim.mapping.quant import quantize_acts_counted

        codes, n = quantize_acts_counted(np.array([-0.6, 0.4, 3.0, 255.4, 255.6]), 1.0, 8,
                                         False, -128)
        np.testing.assert_array_equal(codes, [-128, -128, -125, 127, 127])
        assert n == 2

    def test_a_positive_zero_point_is_added_before_the_clip(self):
        """Asymmetric unsigned inputs: ``clip(rint(x / s) + z, 0, 2^B - 1)``, z = 10."""
        from cimsim.mapping.quant import quantize_acts_counted

        codes, n = quantize_acts_counted(np.array([-10.4, -11.0, 0.0, 245.0, 246.0]), 1.0, 8,
                                         False, 10)
        np.testing.assert_array_equal(codes, [0, 0, 10, 255, 255])
        assert n == 2


class TestBlockFpActs:
    def test_signed_blocks_by_hand(self):
        """8-b signed (B_m = 7 magnitude bits), 4 exponent bits (X in [-7, 7]), two row
        tiles. Vector 0: tile [1, -0.5, 0.25] has E = 0, X = 0 - 6 = -6, codes x·64; tile
        [1.999] rounds to 128, saturating at 127. Vector 1: an all-zero tile takes X = -7
        (mutant: +7); 10^6 has E = 19, X = 13 clipped to 7 (mutant: a lower end of -8, a top
        of 8), 10^6 / 128 = 7812.5 saturates."""
        from cimsim.mapping.quant import block_fp_acts_counted

        x = np.array([[1.0, -0.5, 0.25, 1.999], [0.0, 0.0, 0.0, 1e6]])
        codes, exps, n = block_fp_acts_counted(x, 8, True, 4, [(0, 3), (3, 4)])
        np.testing.assert_array_equal(codes, [[64, -32, 16, 127], [0, 0, 0, 127]])
        np.testing.assert_array_equal(exps, [[-6, -6], [-7, 7]])
        assert n == 2

    def test_saturations_add_up_over_the_tiles(self):
        """The count sums every tile's (mutant: the last tile's alone): 1.999 saturates in
        tile 0, 0.5 (X = -7, code 64) does not in tile 1."""
        from cimsim.mapping.quant import block_fp_acts_counted

        codes, exps, n = block_fp_acts_counted(np.array([[1.999, 0.5]]), 8, True, 4,
                                               [(0, 1), (1, 2)])
        assert (codes.tolist(), exps.tolist(), n) == ([[127, 64]], [[-6, -7]], 1)

    def test_a_tiny_block_takes_the_lowest_exponent(self):
        """2^-20 has E = -20, X = -26 clipped to -7 (mutant: -8): its code 2^-13 rounds
        to 0."""
        from cimsim.mapping.quant import block_fp_acts_counted

        codes, exps, n = block_fp_acts_counted(np.array([[2.0**-20]]), 8, True, 4, [(0, 1)])
        assert (codes.tolist(), exps.tolist(), n) == ([[0]], [[-7]], 0)

    def test_unsigned_blocks_use_every_bit_as_magnitude(self):
        """8-b unsigned: B_m = 8 (mutant: 7, as signed), so [1, -0.5, 0.25] takes X = -7,
        codes [128, 0, 32], the negative value clipped to 0 and counted."""
        from cimsim.mapping.quant import block_fp_acts_counted

        codes, exps, n = block_fp_acts_counted(np.array([[1.0, -0.5, 0.25]]), 8, False, 4,
                                               [(0, 3)])
        assert (codes.tolist(), exps.tolist(), n) == ([[128, 0, 32]], [[-7]], 1)


def _qcfg(**kw):
    from cimsim.config import QuantConfig

    return QuantConfig(**kw)


class TestActScale:
    def test_max_calibration_takes_the_exact_max_not_the_samples(self):
        """``max``: the exact max|x| over all calibration data, which the reservoir sample may
        have missed (mutant: the sample's max)."""
        from cimsim.mapping.quant import act_scale

        assert act_scale(25.5, np.array([1.0, -2.0]), 8, False, _qcfg()) == \
            pytest.approx(0.1, rel=1e-15)

    def test_no_range_scales_at_one(self):
        """All-zero calibration (max|x| = 0): scale 1.0 (mutant: ``max_abs < 0`` returned
        0 / q = 0, a scale that divides by zero)."""
        from cimsim.mapping.quant import act_scale

        for cal in ("max", "percentile", "mse"):
            assert act_scale(0.0, np.zeros(4), 8, False, _qcfg(act_calibration=cal)) == 1.0

    def test_the_percentile_is_of_the_magnitudes(self):
        """Percentile 99.99 of |x|: about the -254 (mutant: of x, about 2.0)."""
        from cimsim.mapping.quant import act_scale

        sample = np.array([-254.0, 1.0, 2.0, 0.5])
        got = act_scale(254.0, sample, 8, True, _qcfg(act_calibration="percentile"))
        assert got == pytest.approx(np.percentile(np.abs(sample), 99.99) / 127, rel=1e-12)
        assert got > 1.9

    def test_a_zero_percentile_falls_back_to_the_max(self):
        """A sample whose percentile is 0 (mostly zeros) clips at max|x| instead (mutant: kept
        the 0, a scale of 0)."""
        from cimsim.mapping.quant import act_scale

        sample = np.zeros(100)
        got = act_scale(25.5, sample, 8, False, _qcfg(act_calibration="percentile",
                                                      act_percentile=99.0))
        assert got == pytest.approx(0.1, rel=1e-15)


    def test_mse_ties_keep_the_smallest_clip(self):
        """An all-zero sample quantizes exactly at every candidate clip: the first, smallest
        candidate (0.05 · max|x|) is kept (mutants: ``err <= best`` kept the last, 1.0;
        candidates from 0.1)."""
        from cimsim.mapping.quant import act_scale

        got = act_scale(1.27, np.zeros(5), 8, True, _qcfg(act_calibration="mse"))
        assert got == pytest.approx(0.05 * 1.27 / 127, rel=1e-12)


class TestActZeroPoint:
    def test_a_percentile_range_needs_a_sample(self):
        """Percentile calibration with an empty sample keeps the exact range [lo, hi]
        (mutant: took the percentiles of nothing, NaN)."""
        from cimsim.mapping.quant import act_zero_point

        s, z = act_zero_point(-1.0, 2.0, np.array([]), 8, _qcfg(
            act_zero_point=True, act_calibration="percentile", act_percentile=90.0))
        assert (s, z) == (pytest.approx(3 / 255, rel=1e-15), 85)

    def test_offsets_are_float64_by_hand(self):
        """``zero_point_offsets``: z · Σ_k w_int per part, float64 (mutant: int64)."""
        from cimsim.mapping.quant import zero_point_offsets

        off = zero_point_offsets(np.array([[1, 2, -3], [4, 0, 1]]), -128, [(0, 2), (2, 3)])
        assert off.dtype == np.float64
        np.testing.assert_array_equal(off, [[-384.0, -512.0], [384.0, -128.0]])

    def test_mse_ties_keep_the_smallest_range(self):
        """An all-zero sample: every candidate range codes 0 exactly, the first (0.05 of
        [-1, 1]) is kept (mutant: ``err <= best`` kept the whole range)."""
        from cimsim.mapping.quant import act_zero_point

        s, z = act_zero_point(-1.0, 1.0, np.zeros(4), 8, _qcfg(act_zero_point=True,
                                                             act_calibration="mse"))
        assert s == pytest.approx(0.1 / 255, rel=1e-12) and z == 128

    def test_the_range_is_widened_to_hold_zero(self):
        """[1, 3] widened to [0, 3]: s = 3 / 255, z = 0 (mutant: kept lo = 1, s = 2 / 255)."""
        from cimsim.mapping.quant import act_zero_point

        s, z = act_zero_point(1.0, 3.0, np.array([1.0, 3.0]), 8, _qcfg(act_zero_point=True))
        assert (s, z) == (pytest.approx(3 / 255, rel=1e-15), 0)
        s, z = act_zero_point(-3.0, -1.0, np.array([-1.0]), 8, _qcfg(act_zero_point=True))
        assert (s, z) == (pytest.approx(3 / 255, rel=1e-15), 255)

    def test_an_empty_range_scales_at_one(self):
        """lo = hi = 0: (1.0, 0) (mutant: ``hi - lo < 0`` divided by a zero step)."""
        from cimsim.mapping.quant import act_zero_point

        assert act_zero_point(0.0, 0.0, np.zeros(3), 8, _qcfg(act_zero_point=True)) == (1.0, 0)

    def test_the_zero_point_rounds_to_nearest(self):
        """2-b, [-1.6, 1.4]: s = 3 / 3 = 1, z = rint(1.6) = 2 (mutant: floor, 1)."""
        from cimsim.mapping.quant import act_zero_point

        s, z = act_zero_point(-1.6, 1.4, np.array([0.0]), 2, _qcfg(act_zero_point=True))
        assert (s, z) == (pytest.approx(1.0, rel=1e-15), 2)

    def test_the_percentile_range_is_lower_and_upper(self):
        """Percentile p = 90 of -50..50: lo = the 10th percentile -40, hi = the 90th 40, so
        s = 80 / 255 (mutants: the 0th percentile -50 as lo; lo and hi swapped)."""
        from cimsim.mapping.quant import act_zero_point

        xs = np.arange(101, dtype=np.float64) - 50.0  # -50 .. 50
        s, z = act_zero_point(-50.0, 50.0, xs, 8, _qcfg(act_zero_point=True,
                                                         act_calibration="percentile",
                                                         act_percentile=90.0))
        assert s == pytest.approx(80 / 255, rel=1e-12)
        assert z == int(np.rint(40 / (80 / 255)))


# ---------------------------------------------------------------------------------------------
# weight_view


class TestTensorMetas:
    def test_a_registered_parameter_wins_over_an_attribute_of_its_name(self):
        """Parameters are read first and a name is taken once (``name not in metas``;
        mutant: a plain attribute of the same name, found later, replaced it)."""
        import torch
        from torch import nn

        from cimsim.mapping.weight_view import tensor_metas

        m = nn.Linear(2, 3)
        m.__dict__["weight"] = torch.zeros(5, dtype=torch.float64)
        metas = tensor_metas(m)
        assert metas["weight"].shape == (3, 2) and metas["weight"].dtype == torch.float32

    def test_buffers_are_weights_too(self):
        """A weight-like buffer is reported (mutant: buffers not read)."""
        import torch
        from torch import nn

        from cimsim.mapping.weight_view import tensor_metas

        m = nn.Linear(2, 3)
        m.register_buffer("weight_scale", torch.ones(3, dtype=torch.float64))
        metas = tensor_metas(m)
        assert set(metas) == {"weight", "bias", "weight_scale"}
        assert metas["weight_scale"].dtype == torch.float64

    def test_none_counts_only_where_registered(self):
        """A parameter registered as None (``bias=False``) is reported as None; a plain
        attribute holding None is no weight (mutant: reported it too)."""
        from torch import nn

        from cimsim.mapping.weight_view import tensor_metas

        m = nn.Linear(2, 3, bias=False)
        m.bias_scale = None
        metas = tensor_metas(m)
        assert metas["bias"] is None and "bias_scale" not in metas
        assert set(metas) == {"weight", "bias"}


class _Owner:
    """A stand-in mapped layer whose ``linear_through`` computes a product (a marker)."""

    def __init__(self):
        self.calls = 0

    def linear_through(self, x, bias):
        import torch

        self.calls += 1
        return torch.full((1,), 7.0)


def _view(attr: str, owner, shape=(3, 2)):
    import torch

    from cimsim.mapping.weight_view import TensorMeta, WeightView

    meta = TensorMeta.of(torch.empty(shape))
    return WeightView(meta, "fc: refused", owner=owner, attr=attr)


class TestWeightViewLinear:
    def test_only_the_weight_is_computed_through_the_layer(self):
        """``F.linear(x, layer.weight, b)`` runs through the layer; another weight-like
        attribute read as the matrix (``in_proj_weight``) is refused (mutant: any attribute
        went through)."""
        import torch
        import torch.nn.functional as F

        from cimsim.errors import WeightReadError

        owner = _Owner()
        x = torch.zeros(1, 2)
        assert F.linear(x, _view("weight", owner)).tolist() == [7.0]
        with pytest.raises(WeightReadError, match="fc: refused"):
            F.linear(x, _view("in_proj_weight", owner))
        assert owner.calls == 1

    def test_keyword_arguments_are_bound_too(self):
        """``F.linear(x, weight=layer.weight)`` goes through the layer as the positional
        call does (mutant: the keywords not bound, so refused)."""
        import torch
        import torch.nn.functional as F

        owner = _Owner()
        assert F.linear(torch.zeros(1, 2), weight=_view("weight", owner)).tolist() == [7.0]
        assert owner.calls == 1

    def test_a_viewed_input_is_refused(self):
        """A view as the product's input is refused (mutant: passed to the layer)."""
        import torch.nn.functional as F

        from cimsim.errors import WeightReadError

        owner = _Owner()
        with pytest.raises(WeightReadError, match="fc: refused"):
            F.linear(_view("weight", _Owner(), (1, 2)), _view("weight", owner))
        assert owner.calls == 0

    def test_a_viewed_bias_is_refused(self):
        """A bias that is itself a view (another mapped layer's weight) is refused, not
        passed to the layer (mutant: went through)."""
        import torch
        import torch.nn.functional as F

        from cimsim.errors import WeightReadError

        owner = _Owner()
        with pytest.raises(WeightReadError, match="fc: refused"):
            F.linear(torch.zeros(1, 2), _view("weight", owner), _view("bias", _Owner(), (3,)))
        assert owner.calls == 0


class TestViewsWeightsRegister:
    def test_a_plain_attribute_is_not_replaced_by_a_parameter(self):
        """``register_parameter`` pre-registers a name only when no plain attribute holds it
        (``name not in vars(self)``; mutant: always, so torch's "already exists" check passed
        and the parameter hid behind the attribute)."""
        import torch
        from torch import nn

        from cimsim.mapping.weight_view import ViewsWeights

        m = ViewsWeights()
        m.scale = 1.5
        with pytest.raises(KeyError, match="already exists"):
            m.register_parameter("scale", nn.Parameter(torch.zeros(1)))
        assert m.scale == 1.5 and "scale" not in m._parameters

    @pytest.mark.parametrize("kind", ["parameter", "buffer"])
    def test_a_name_answered_by_getattr_can_be_registered(self, kind):
        """A mapped layer's ``__getattr__`` answers its source's ``bias`` (a view), so
        torch's "attribute already exists" check would refuse a twin's own learned bias: the
        name is pre-registered first (mutant: ``register_buffer`` without it raised)."""
        import torch
        from torch import nn

        from cimsim.mapping.weight_view import ViewsWeights

        class Viewing(ViewsWeights):
            def __getattr__(self, name):
                try:
                    return super().__getattr__(name)  # parameters, buffers, modules
                except AttributeError:
                    if name == "bias":
                        return "a view"
                    raise

        m = Viewing()
        if kind == "parameter":
            m.register_parameter("bias", nn.Parameter(torch.ones(2)))
            assert list(m._parameters) == ["bias"]
        else:
            m.register_buffer("bias", torch.ones(2))
            assert list(m._buffers) == ["bias"]
        assert m.bias.tolist() == [1.0, 1.0]


class TestWeightViewRefusalsAndSealing:
    def test_a_refusal_says_what_was_tried(self):
        """The error of a way out that dispatches nothing names it (mutant: the bare
        refusal)."""
        from cimsim.errors import WeightReadError

        with pytest.raises(WeightReadError, match=r"fc: refused \(\.tolist\(\)\)"):
            _view("weight", None).tolist()

    def test_repr_names_shape_dtype_device_and_layer(self):
        """``repr`` computes nothing and reports the view's own metadata (mutant: the device
        written as cpu, wrong for a meta or GPU weight)."""
        import torch

        from cimsim.mapping.weight_view import TensorMeta, WeightView

        meta = TensorMeta.of(torch.empty((3, 2), dtype=torch.float16, device="meta"))
        v = WeightView(meta, "fc: refused")
        assert repr(v) == ("WeightView(shape=(3, 2), dtype=torch.float16, device=meta: fc's "
                           "weight, no values)")

    def test_a_parameter_set_once_sealed_is_a_plain_attribute(self):
        """Before ``seal`` a parameter set on the layer registers; after it, a weight-like
        tensor set from outside is a plain attribute (mutants: the sealed check dropped;
        ``seal`` setting False)."""
        import torch
        from torch import nn

        from cimsim.mapping.weight_view import ViewsWeights

        m = ViewsWeights()
        m.weight = nn.Parameter(torch.zeros(2))
        assert "weight" in m._parameters
        m.seal()
        m.bias = nn.Parameter(torch.ones(2))
        assert "bias" not in m._parameters and "bias" in vars(m)
        m.scale = nn.Parameter(torch.ones(1))  # not weight-like: registered as torch does
        assert "scale" in m._parameters


# ---------------------------------------------------------------------------------------------
# events


class TestEventKeys:
    @pytest.mark.parametrize("bits", ["x", float("nan"), "6", 6.5, None])
    def test_bits_that_are_no_integer_are_refused_naming_them(self, bits):
        """Bits that ``int()`` cannot take (``"x"``, NaN: its ``ValueError`` caught) or that
        are not integral are refused with the message naming the bits (mutant: only a
        ``TypeError`` caught, so ``int``'s own message escaped)."""
        from cimsim.events import event_key

        with pytest.raises(ValueError, match=r"bits = .* is invalid; allowed: an integer"):
            event_key("adc", "convert", bits)

    def test_integral_bits_are_stored_as_int(self):
        """6.0 and ``np.int64(6)`` are stored as the int 6 (mutant: the given value kept, a
        float key)."""
        from cimsim.events import event_key

        for bits in (6.0, np.int64(6), 6):
            assert type(event_key("adc", "convert", bits).bits) is int

    def test_a_key_of_four_fields_is_refused(self):
        """A tuple key has 2 or 3 fields (mutant: 4 allowed, then ``event_key`` raised a
        ``TypeError``); membership of such a key is False."""
        from cimsim.events import Events

        with pytest.raises(ValueError, match=r"event key .* is invalid; allowed: an EventKey"):
            Events({("adc", "convert", 6, 1): 1.0})
        assert ("adc", "convert", 6, 1) not in Events({("adc", "convert", 6): 1.0})

    def test_repr_is_sorted(self):
        """``repr`` lists the counts sorted by key (mutant: in insertion order)."""
        from cimsim.events import Events

        ev = Events({("dac", "pulse", 1): 2.0, ("adc", "convert", 8): 1.5})
        assert repr(ev) == "Events(adc.convert[8]=1.5, dac.pulse[1]=2)"

    def test_records_are_sorted(self):
        """``to_records`` lists the keys sorted (mutant: in insertion order)."""
        from cimsim.events import Events

        ev = Events({("dac", "pulse", 1): 2.0, ("adc", "convert", 8): 1.0,
                     ("adc", "convert", 4): 3.0})
        assert [(r["component"], r["bits"], r["count"]) for r in ev.to_records()] == [
            ("adc", 4, 3.0), ("adc", 8, 1.0), ("dac", 1, 2.0)]


class TestEventsCounts:
    def test_repeated_pairs_add_up(self):
        """``Events`` of (key, count) pairs adds a repeated key's counts (mutant: made a dict
        of them, the last count kept)."""
        from cimsim.events import Events, event_key

        k = event_key("adc", "convert", 6)
        assert Events([(k, 1.0), (("adc", "convert", 6.0), 2.0)])[k] == 3.0
        assert Events([(k, 1.0), (k, 0.5)])[k] == 1.5

    def test_adding_a_plain_mapping_normalises_its_keys(self):
        """``Events + {tuple: n}``: the tuple keys made registered ``EventKey`` s (mutant:
        kept as tuples, a key no lookup finds)."""
        from cimsim.events import Events, event_key

        k = event_key("adc", "convert", 6)
        ev = Events({k: 1.0}) + {("adc", "convert", 6): 2.0, ("dac", "pulse", 1.0): 4.0}
        assert ev[k] == 3.0
        assert all(type(key) is type(k) for key in ev)
        assert [r["count"] for r in ev.to_records()] == [3.0, 4.0]

    def test_a_missing_count_is_zero(self):
        """``get`` of a registered key not counted: 0.0 (mutant: default 1.0)."""
        from cimsim.events import Events

        assert Events().get(("adc", "convert", 6)) == 0.0
        assert Events().get(("adc", "write", 6), 5.0) == 5.0

    def test_the_derived_pairs(self):
        """The four pairs the cost model derives, never emitted by a run (mutant: the word
        line's dropped)."""
        from cimsim.events import DERIVED, REGISTRY, Action, Component

        assert DERIVED == {(Component.ADC, Action.LEAK), (Component.CELL, Action.REFRESH),
                           (Component.INTERCONNECT, Action.BUS_BIT),
                           (Component.DAC, Action.WORDLINE)}
        assert DERIVED <= set(REGISTRY)


class TestEventKeyInfiniteBits:
    @pytest.mark.parametrize("bits", [float("inf"), float("-inf")])
    def test_infinite_bits_are_refused_with_the_documented_value_error(self, bits):
        """``event_key(..., bits=inf)``: documented to raise ``ValueError`` naming the bits
        (as NaN does); ``int(inf)`` raised ``OverflowError``, which escaped (fixed)."""
        from cimsim.events import event_key

        with pytest.raises(ValueError, match=r"bits = -?inf is invalid; allowed: an integer"):
            event_key("adc", "convert", bits)


# ---------------------------------------------------------------------------------------------
# engine


def _layer_w() -> np.ndarray:
    return np.array([[1, -2, 3], [0, 1, -1]], dtype=np.int64)


def _layer(w=None, **chip):
    """``w`` (default :func:`_layer_w`) programmed on the ideal chip changed by ``chip``."""
    from cimsim.arrays.program import program
    from tests.conftest import ideal_chip

    return program(_layer_w() if w is None else w, ideal_chip(**chip))


class TestRunArguments:
    @pytest.mark.parametrize("chunk", [0, True, 1.0])
    def test_a_bad_chunk_size_is_refused(self, chunk):
        """``chunk_vectors``: an integer >= 1 (mutants: 0 accepted, then ``range``'s zero
        step; ``True`` accepted as 1)."""
        from cimsim import engine
        from cimsim.errors import ConfigError

        with pytest.raises(ConfigError, match=r"chunk_vectors = .* is invalid"):
            engine.run(_layer(), np.ones((2, 3), dtype=np.int64), chunk_vectors=chunk)

    def test_one_vector_per_chunk_gives_the_product(self):
        """Chunks of one vector: the lossless product, exactly."""
        from cimsim import engine

        layer = _layer()
        x = np.array([[1, 2, 3], [4, 0, 5], [0, 0, 0]], dtype=np.int64)
        y, _ = engine.run(layer, x, chunk_vectors=1)
        np.testing.assert_array_equal(y, x @ _layer_w().T)

    def test_an_unknown_kernel_is_refused(self):
        """``kernel``: 'numba' or 'numpy' (mutant: another name ran the NumPy twin)."""
        from cimsim import engine

        with pytest.raises(ValueError, match=r"kernel = 'x'; allowed: 'numba', 'numpy'"):
            engine.run(_layer(), np.ones((1, 3), dtype=np.int64), kernel="x")


    def test_an_uncalibrated_layer_is_refused(self):
        """A ``calibrated`` ADC without calibration: a ``ConfigError`` saying how to calibrate
        (mutant: no check, failing later on the missing tables)."""
        from cimsim import engine
        from cimsim.errors import ConfigError

        layer = _layer(adc={"range_policy": "calibrated"})
        assert layer.adc is None
        with pytest.raises(ConfigError, match="needs calibration data"):
            engine.run(layer, np.ones((1, 3), dtype=np.int64))


    def test_analog_values_check_their_inputs(self):
        """``analog_values`` validates inputs as ``run`` does (mutant: unchecked, failing in
        the planes)."""
        from cimsim import engine

        with pytest.raises(ValueError, match=r"x_int has K = 2 inputs but the weights have "
                                             r"K = 3"):
            next(engine.analog_values(_layer(), np.ones((1, 2), dtype=np.int64)))


class TestInt8Gemm:
    def test_planes_of_128_refuse_the_int8_gemm(self):
        """Signed 8-b inputs in one two's-complement shot drive -128..127: ``a_max = 128``
        does not fit int8 (``a_max > 127``; mutant: ``> 128`` let them through), nor does a
        varied matrix's float conductance (mutant: the matrix's dtype unchecked); 7-b unsigned
        inputs (0..127) on an ideal matrix do fit."""
        from cimsim import engine
        from cimsim.arrays.program import program
        from tests.conftest import ideal_chip

        chip = ideal_chip(dac_bits=None, signed_inputs="twos_complement")
        layer = program(_layer_w(), chip, input_signed=True)
        x = np.array([[-127, 0, 127]], dtype=np.int64)
        with pytest.raises(ValueError, match="here planes reach 128"):
            engine.run(layer, x, gemm="int8")
        np.testing.assert_array_equal(engine.run(layer, x)[0], x @ _layer_w().T)
        varied = program(_layer_w(), ideal_chip(variation="gaussian", variation_sigma=0.05), 0)
        assert varied.gemm_matrix.dtype != np.int8
        with pytest.raises(ValueError, match="the matrix is float"):
            engine.run(varied, np.ones((1, 3), dtype=np.int64), gemm="int8")
        small = program(_layer_w(), ideal_chip(dac_bits=None, input_bits=7))
        x = np.array([[127, 0, 1]], dtype=np.int64)
        np.testing.assert_array_equal(engine.run(small, x, gemm="int8")[0], x @ _layer_w().T)


class TestNoiseSampler:
    def test_the_default_is_gaussian_and_no_setting_is_recorded(self, monkeypatch):
        """Unset ``CIMSIM_NOISE_SAMPLER`` means ``gaussian`` (mutant: ``exact``), which
        ``engine_settings`` leaves out (mutant: recorded it); ``exact`` is recorded."""
        from cimsim import engine
        from cimsim.arrays import _gemm

        monkeypatch.delenv(engine.NOISE_SAMPLER_ENV, raising=False)
        monkeypatch.delenv(_gemm.GEMM_ENV, raising=False)
        assert engine.noise_sampler() == "gaussian"
        assert engine.engine_settings() == {}
        monkeypatch.setenv(engine.NOISE_SAMPLER_ENV, "exact")
        assert engine.engine_settings() == {"noise_sampler": "exact"}
        monkeypatch.setenv(_gemm.GEMM_ENV, "numpy")
        assert engine.engine_settings() == {"noise_sampler": "exact", "gemm": "numpy"}


class TestExactNoiseSteps:
    @staticmethod
    def _layer(th: float, gain: float = 0.0):
        from cimsim.arrays.program import program
        from tests.conftest import ideal_chip

        chip = ideal_chip(weight_bits=3, bits_per_cell=2, input_bits=4, dac_bits=None,
                          noise={"thermal_sigma_lsb": th},
                          adc={"bits": 4, "range_policy": "fixed", "fixed_lo": 0.0,
                               "fixed_hi": 15.0, "gain_error": gain})
        layer = program(np.ones((1, 16), dtype=np.int64), chip)
        assert layer.adc.delta[0, 0] == 1.0
        return layer

    @pytest.mark.parametrize("th, gain, want", [(4.0, 0.0, 4.0), (2.0, 0.25, 2.5)])
    def test_steps_by_hand_up_to_the_bound(self, monkeypatch, th, gain, want):
        """A 1-LSB step, thermal noise ``th`` before the gain ``1 + gain`` and no comparator
        noise: ``th·(1 + gain)`` steps, exactly EXACT_MAX_STEPS = 4 included (mutants:
        ``steps < 4``; no comparator noise taken for no noise, ``th == 0 or cmp == 0``; the
        gain subtracted)."""
        from cimsim import engine

        monkeypatch.setenv(engine.NOISE_SAMPLER_ENV, "exact")
        np.testing.assert_array_equal(engine.exact_noise_steps(self._layer(th, gain), 0),
                                      [want])
        monkeypatch.setenv(engine.NOISE_SAMPLER_ENV, "gaussian")
        assert engine.exact_noise_steps(self._layer(th, gain), 0).shape == (0,)


    def test_tables_with_their_own_clip_bounds_take_the_gaussian_path(self, monkeypatch):
        """Linear tables that carry explicit clip bounds (not in the analog domain) draw no
        exact codes (mutant: only thresholds checked)."""
        import dataclasses

        from cimsim import engine

        monkeypatch.setenv(engine.NOISE_SAMPLER_ENV, "exact")
        layer = self._layer(1.0)
        tables = dataclasses.replace(layer.adc, clip_lo=np.full((1, 1), -1.0),
                                     clip_hi=np.full((1, 1), 20.0))
        assert engine.exact_noise_steps(layer.with_adc(tables), 0).shape == (0,)
        np.testing.assert_array_equal(engine.exact_noise_steps(layer, 0), [1.0])


class TestRunCounts:
    def test_conversions_count_planes_groups_and_columns(self):
        """``n_conversions`` = M · planes · row groups · conversions per group: 3 vectors,
        2 planes (4-b DAC, 8-b inputs), 2 row groups of a 6-row matrix on 4-row arrays
        (mutant: the row groups left out)."""
        from cimsim import engine
        from cimsim.arrays.program import program
        from tests.conftest import ideal_chip

        layer = program(np.ones((1, 6), dtype=np.int64), ideal_chip(n_rows=4, dac_bits=4))
        assert (layer.n_groups, layer.chip.n_planes) == (2, 2)
        res = engine.run_detailed(layer, np.ones((3, 6), dtype=np.int64))
        assert res.n_conversions == 3 * 2 * 2 * layer.n_conversions
        assert res.n_clipped == 0
        np.testing.assert_array_equal(res.y, [[6.0]] * 3)


class TestBlockFpEvents:
    def test_each_event_at_its_own_width(self):
        """Alignment shifts at the input (mantissa) bits, exponent comparisons and adds at the
        exponent bits (mutant: shifts at the exponent bits, indistinguishable where both are
        8): 6-b inputs, 5-b exponents, 2 vectors, K = 10 in tiles of 8 and 2 rows (7 + 1
        comparisons), N = 3."""
        from cimsim.engine import block_fp_events
        from cimsim.events import Action, Component, EventKey

        quant = _ideal().quant.replace(act_format="block_fp", act_exponent_bits=5)
        layer = _layer(np.ones((3, 10), dtype=np.int64), input_bits=6, n_rows=8, quant=quant)
        assert [tuple(t) for t in layer.row_tiles] == [(0, 8), (8, 10)]
        C, A = Component, Action
        assert block_fp_events(layer, 2) == {
            EventKey(C.BLOCK_FP, A.EXPONENT_MAX, 5): 2.0 * (7 + 1),
            EventKey(C.BLOCK_FP, A.ALIGN_SHIFT, 6): 2.0 * 10,
            EventKey(C.BLOCK_FP, A.EXPONENT_ADD, 5): 2.0 * 3 * 2,
            EventKey(C.BLOCK_FP, A.NORMALIZE, 32): 2.0 * 3 * 2,
        }


class TestPlaneEvents:
    def test_a_bit_plane_drive_counts_every_input_bit(self):
        """``tech.input_drive = 'bit_planes'``: V1G counts popcount(x_k) · rowsum[k] over all
        8 input bits (mutant: the top bit left out). Row sums of |digits| [1, 3, 4];
        popcounts per row 8 + 2, 0 + 1, 1 + 1: 10·1 + 1·3 + 2·4 = 21."""
        from cimsim import engine
        from cimsim.events import event_key

        layer = _layer(tech={"input_drive": "bit_planes"}, dac_bits=None)
        np.testing.assert_array_equal(layer.cell_rowsum, [1.0, 3.0, 4.0])
        x = np.array([[255, 0, 128], [3, 1, 2]], dtype=np.int64)
        y, ev = engine.run(layer, x)
        assert ev[event_key("cell", "v1g_lsb")] == 21.0
        np.testing.assert_array_equal(y, x @ _layer_w().T)


    def test_the_slice_mirrors_charge_is_counted(self):
        """Analog slice read-out: MIRROR_LSB = Σ_k Σ_p |x_p[k]| · weighted_rowsum[k]; with a
        1-b DAC the planes are the input's bits, so Σ_p |x_p[k]| is popcount (mutant: 0)."""
        from cimsim import engine
        from cimsim.events import event_key

        layer = _layer(np.ones((2, 6), dtype=np.int64), slice_readout="analog", weight_bits=4,
                       bits_per_cell=1, encoding="offset", n_rows=4, n_cols=64)
        assert layer.weighted_rowsum is not None and layer.chip.dac_bits == 1
        x = np.arange(18).reshape(3, 6)
        _, ev = engine.run(layer, x)
        pop = np.array([[bin(int(v)).count("1") for v in row] for row in x]).sum(axis=0)
        want = float(pop @ layer.weighted_rowsum)
        assert want > 0 and ev[event_key("weighting", "mirror_lsb")] == want


class TestCalibrationStatsChunks:
    def test_the_kept_rows_do_not_depend_on_the_chunks(self):
        """``engine.calibration_stats``: each row's place ``plane * n + m0 + j`` (plane-major
        over the whole set) built as ``plane * mc + ...`` (the chunk's length): the places of
        one chunk's later planes fell on the next chunk's rows, and the kept samples (a
        percentile calibration keeps them) came out in another order when the inputs were
        cut into chunks."""
        from cimsim.engine import calibration_stats

        rng = np.random.default_rng(0)
        layer = _layer(rng.integers(-7, 8, size=(3, 6)), adc={"calibration_stat": "percentile"},
                       input_bits=4)
        x = rng.integers(0, 16, size=(10, 6))
        whole = calibration_stats(layer, x)
        cut = calibration_stats(layer, x, chunk_vectors=3)
        assert whole.kept(0).shape == (40, layer.n_conversions)  # 4 input planes x 10
        np.testing.assert_array_equal(cut.kept(0), whole.kept(0))


class TestCalibrateArguments:
    def test_bad_calibration_inputs_are_named_so(self):
        """``calibrate`` checks its inputs under the name ``calibration`` (mutant: the
        default ``x_int``, which the caller never passed)."""
        from cimsim import engine

        layer = _layer(adc={"range_policy": "calibrated"})
        with pytest.raises(ValueError, match=r"^calibration must be 2-D"):
            engine.calibrate(layer, np.ones(3, dtype=np.int64))
        with pytest.raises(ValueError, match=r"^calibration has K = 2 inputs"):
            engine.calibrate(layer, np.ones((1, 2), dtype=np.int64))

    def test_a_fused_activation_needs_a_calibrated_policy(self):
        """``calibrate`` with an activation on a layer whose ADC range is not calibrated
        refuses (mutant: returned the layer, the activation silently unused)."""
        from cimsim import engine
        from cimsim.adc import FusedActivation
        from cimsim.errors import ConfigError

        layer = _layer()
        with pytest.raises(ConfigError, match="a fused activation needs adc.range_policy"):
            engine.calibrate(layer, np.ones((2, 3), dtype=np.int64),
                             activation=FusedActivation(np.ones(2), np.zeros(2)))
        assert engine.calibrate(layer, np.ones((2, 3), dtype=np.int64)) is layer

    def test_a_fused_activation_needs_one_row_group(self):
        """Two row groups (6 rows on 4-row arrays) cannot fuse an activation, even with one
        kappa per conversion (mutant: only the kappa's shape checked)."""
        from cimsim import engine
        from cimsim.adc import FusedActivation
        from cimsim.errors import ConfigError

        layer = _layer(np.ones((1, 6), dtype=np.int64), n_rows=4,
                       adc={"range_policy": "calibrated"})
        assert layer.n_groups == 2
        n = layer.n_conversions
        with pytest.raises(ConfigError, match=r"this layer has 2 row group\(s\)"):
            engine.calibrate(layer, np.ones((2, 6), dtype=np.int64),
                             activation=FusedActivation(np.ones(n), np.zeros(n)))

    def test_empty_calibration_data_is_refused(self):
        """No calibration vector: a ``ConfigError`` (mutant: ``shape[0] < 0`` went on)."""
        from cimsim import engine
        from cimsim.errors import ConfigError

        layer = _layer(adc={"range_policy": "calibrated"})
        with pytest.raises(ConfigError, match="calibration data is empty"):
            engine.calibrate(layer, np.zeros((0, 3), dtype=np.int64))

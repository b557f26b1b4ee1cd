"""Tests written for the survivors of a third hand-made mutation round over
``cimsim.mapping.matrix`` (calibration statistics, the engine view, group packing) and
``cimsim.mapping.quant`` (the weight and activation quantizers), after the second round's
``tests/test_mutants_matrix_quant_engine_round2.py``: each pins a behaviour that a small wrong
change left every earlier test passing (its docstring names the place and the change). Known
answers by hand where the quantizers are exact; small lossless chips; tiny inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.config import QuantConfig, WeightGranularity
from cimsim.errors import MappingError
from cimsim.mapping import matrix
from cimsim.mapping.matrix import InputStats
from cimsim.mapping.quant import act_zero_point, quantize_acts_counted, quantize_weights
from tests.conftest import ideal_chip


def _rows(*rows) -> np.ndarray:
    return np.array(rows, dtype=np.float64)


def _chip(**quant):
    chip = ideal_chip()
    return chip.replace(quant=chip.quant.replace(**quant)) if quant else chip


# ---------------------------------------------------------------------------------------------
# quant: weights


class TestBinaryTensorScale:
    def test_one_scale_is_the_mean_over_the_whole_tensor(self):
        """quant.py ``_quantize_binary``: ``tensor`` granularity takes ``mean|w|`` over the whole
        tensor, one value for every output (mutant: ``_binary_scale(a, 1)``, each output's own
        mean, 1.5 and 0.5 here instead of 1.0 for both)."""
        w = _rows([1.0, -2.0], [0.5, -0.5])
        w_int, s = quantize_weights(w, 1, WeightGranularity.TENSOR, [(0, 2)])
        np.testing.assert_array_equal(s, [[1.0, 1.0]])
        np.testing.assert_array_equal(w_int, [[1, -1], [1, -1]])


# ---------------------------------------------------------------------------------------------
# quant: activations


class TestZeroPointOfOne:
    def test_a_zero_point_of_one_is_added(self):
        """quant.py ``_act_codes``: ``if zero_point: q += zero_point`` adds any positive zero
        point (mutant: ``zero_point > 1`` dropped a zero point of 1, which a range whose lower
        end is a small negative value gets): 2-b codes of [-1, 0, 1, 2, 3] at z = 1."""
        codes, n = quantize_acts_counted(np.array([-1.0, 0.0, 1.0, 2.0, 3.0]), 1.0, 2, False, 1)
        np.testing.assert_array_equal(codes, [0, 1, 2, 3, 3])
        assert n == 1


class TestActZeroPointMse:
    def test_the_error_is_measured_around_the_zero_point(self):
        """quant.py ``act_zero_point``: the MSE search dequantizes ``(code - z) · s`` (mutant:
        the codes of the sample quantized without the zero point, so every negative value
        coded 0 and erred by its size at every candidate, and the search followed the one
        positive value down to the smallest range, 0.05 of it). Sample three -2s and a 0.1
        over [-2, 1]: the whole range codes -2 exactly, s = 3 / 255, z = 170."""
        xs = np.array([-2.0, -2.0, -2.0, 0.1])
        s, z = act_zero_point(-2.0, 1.0, xs, 8, QuantConfig(act_zero_point=True,
                                                            act_calibration="mse"))
        assert (s, z) == (pytest.approx(3 / 255, rel=1e-12), 170)

    def test_an_empty_sample_keeps_the_exact_range_without_a_warning(self):
        """quant.py ``act_zero_point``: the MSE search needs a sample (``and xs.size``; mutant:
        searched an empty one, whose mean error NumPy warns about 96 times before the exact
        range is kept): [-1, 2] gives s = 3 / 255, z = 85 silently."""
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            s, z = act_zero_point(-1.0, 2.0, np.array([]), 8, QuantConfig(
                act_zero_point=True, act_calibration="mse"))
        assert (s, z) == (pytest.approx(3 / 255, rel=1e-15), 85)


# ---------------------------------------------------------------------------------------------
# matrix.InputStats


class TestChannelRanges:
    def test_a_negative_channels_maximum_is_its_largest_value(self):
        """matrix.py ``InputStats.observe``: ``chan_max`` is each channel's largest value, not
        its largest magnitude (mutant: ``|x|.max(axis=0)``, 4 for a channel of -4 and -1)."""
        s = InputStats(0)
        s.observe(_rows([-4.0, 1.0], [-1.0, 2.0]))
        np.testing.assert_array_equal(s.chan_min, [-4.0, 1.0])
        np.testing.assert_array_equal(s.chan_max, [-1.0, 2.0])

    def test_the_range_is_kept_over_batches(self):
        """matrix.py ``InputStats.observe``: ``min_val`` and ``max_val`` are over all batches
        (mutant: ``min_val`` the last batch's, 1 here instead of the first batch's -3)."""
        s = InputStats(0)
        s.observe(_rows([-3.0, 2.0]))
        s.observe(_rows([1.0, 1.5]))
        assert (s.min_val, s.max_val, s.max_abs) == (-3.0, 2.0, 3.0)

    def test_inputs_reaching_zero_from_below_are_not_all_zero(self):
        """matrix.py ``InputStats.all_zero``: all zero means max |x| = 0 (mutant: the largest
        value 0, which inputs of -1 and 0 also have)."""
        s = InputStats(0)
        s.observe(_rows([-1.0, 0.0]))
        assert s.max_val == 0.0 and not s.all_zero

    def test_a_smoothed_zero_point_range_of_negative_inputs(self):
        """matrix.py ``engine_view`` with ``smooth_alpha`` and ``act_zero_point``: the range
        ``[min_k chan_min/s, max_k chan_max/s]`` of a channel of -4 and -1 (s = sqrt(4) = 2) is
        [-2, -0.5], widened to [-2, 0]: s_x = 2 / 255, z = 255 (mutant: ``chan_max`` as
        magnitudes widened it to [-2, 2], s_x = 4 / 255, z = 128)."""
        view = matrix.engine_view(_rows([1.0]), _chip(smooth_alpha=0.5, act_zero_point=True),
                                  _rows([-4.0], [-1.0]))
        np.testing.assert_array_equal(view.smooth, [2.0])
        assert (view.s_x, view.zero_point) == (pytest.approx(2 / 255, rel=1e-15), 255)


# ---------------------------------------------------------------------------------------------
# matrix.coarse_inputs


def _coarse_x() -> np.ndarray:
    """Signed inputs whose vectors are all 1 but one outlier of 127: coarse at 8 bits."""
    x = np.full((20, 2), 1.0)
    x[0, 0] = -127.0
    return x


class TestCoarseInputsGroups:
    def test_a_grouped_layers_matrix_is_never_coarse(self):
        """matrix.py ``coarse_inputs``: a matrix whose statistics are pooled with its groups'
        (``stats.pooled is not None``) is left out (mutant: the check dropped, a depthwise
        channel small next to the layer's largest was called coarse). The same statistics
        unshared are coarse."""
        stats = InputStats(0)
        stats.observe(_coarse_x())
        view = matrix.engine_view(np.eye(2), ideal_chip(), stats)
        assert view.s_x == 1.0 and matrix.coarse_inputs(view, stats) is True
        other = InputStats(1)
        other.observe(_coarse_x())
        InputStats.share([stats, other])
        view = matrix.engine_view(np.eye(2), ideal_chip(), stats)
        assert matrix.coarse_inputs(view, stats) is False

    def test_block_floating_point_inputs_are_never_coarse(self):
        """matrix.py ``coarse_inputs``: block floating-point inputs scale each vector by its
        own power of two (``view.block_fp``; mutant: the check dropped, their step of 1.0, the
        placeholder ``s_x``, made vectors of 1 coarse)."""
        stats = InputStats(0)
        stats.observe(np.ones((20, 2)))
        view = matrix.engine_view(np.eye(2), _chip(act_format="block_fp"), stats)
        assert view.block_fp and view.s_x == 1.0
        assert matrix.coarse_inputs(view, stats) is False

    def test_negative_vectors_count_by_their_magnitude(self):
        """matrix.py ``coarse_inputs``: a vector's peak is its largest |x| (mutant: the ``abs``
        dropped, the peak of a vector of -1s was -1, left out as if all zero, and only the
        outlier's 127 counted): signed 8-b, s_x = 1, peaks of 1 in 19 of 20 vectors are
        coarse."""
        x = np.full((20, 2), -1.0)
        x[0, 0] = 127.0
        stats = InputStats(0)
        stats.observe(x)
        view = matrix.engine_view(np.eye(2), ideal_chip(), stats)
        assert view.input_signed and view.s_x == 1.0
        assert matrix.coarse_inputs(view, stats) is True

    def test_all_zero_inputs_are_not_coarse_and_warn_nothing(self):
        """matrix.py ``coarse_inputs``: with no nonzero vector it returns False at once
        (mutant: the early return dropped, the median of nothing: NaN and NumPy's "Mean of
        empty slice" warning)."""
        stats = InputStats(0)
        stats.observe(np.zeros((4, 2)))
        view = matrix.engine_view(np.eye(2), ideal_chip(), stats)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert matrix.coarse_inputs(view, stats) is False


# ---------------------------------------------------------------------------------------------
# matrix.engine_view, program_parts


class TestEngineViewParts:
    def test_one_row_tile_is_one_part_named_as_the_layer(self):
        """matrix.py ``program_parts``: a ``column`` granularity matrix of one row tile is one
        part named by the layer (``len(row_tiles) > 1``; mutant: ``>= 1`` named it
        ``fc[0:3]``, as one part of several)."""
        view = matrix.engine_view(np.ones((2, 3)), _chip(weight_granularity="column"),
                                  np.ones((2, 3)), name="fc")
        assert [(a, b) for a, b, _ in view.parts] == [(0, 3)]
        assert [layer.name for layer in view.layers] == ["fc"]

    def test_row_tile_parts_are_named_by_their_rows(self):
        """matrix.py ``program_parts``: a part per row tile is named ``NAME[a:b]`` (mutant:
        every part named as the layer, which the reports could not tell apart)."""
        view = matrix.engine_view(np.ones((2, 10)), _chip(weight_granularity="column"),
                                  np.ones((2, 10)), name="fc", row_tiles=[(0, 4), (4, 10)])
        assert [layer.name for layer in view.layers] == ["fc[0:4]", "fc[4:10]"]

    def test_the_signed_input_refusal_carries_the_exclude_name_and_the_bits(self):
        """matrix.py ``_refuse_signed``: the ``SignedInputError`` holds the layer by the name
        ``exclude`` takes (a group's ``c[g1]`` is ``c``) with its lowest input, and the chip's
        ``input_bits`` (mutants: the matrix's own name; the bits left out, None)."""
        from cimsim.errors import SignedInputError

        with pytest.raises(SignedInputError) as err:
            matrix.engine_view(np.eye(2), ideal_chip(input_bits=1), _rows([-0.5, 1.5]),
                               name="c[g1]")
        assert err.value.layers == {"c": -0.5} and err.value.input_bits == 1
        assert "exclude=['c']" in str(err.value)

    def test_the_programming_variation_is_drawn_from_the_seed(self):
        """matrix.py ``engine_view``: the parts are programmed from ``seed`` (mutant: from 0,
        every matrix of a model drawing the same variation): two seeds draw two matrices, one
        seed the same one, and the view records it."""
        chip = ideal_chip(variation="gaussian", variation_sigma=0.05)
        w, x = _rows([1.0, -0.5, 0.25], [0.5, 1.0, -1.0]), np.ones((2, 3))
        g = [matrix.engine_view(w, chip, x, seed=s).layers[0].gemm_matrix for s in (1, 2, 1)]
        assert not np.array_equal(g[0], g[1])
        np.testing.assert_array_equal(g[0], g[2])
        g0 = matrix.engine_view(w, chip, x, seed=0).layers[0].gemm_matrix
        assert not np.array_equal(g0, g[0])
        assert matrix.engine_view(w, chip, x, seed=7).seed == 7

    def test_an_empty_matrix_is_refused_without_the_zero_weights_warning(self):
        """matrix.py ``engine_view``: the all-zero warning needs weights (``w.size and``;
        mutant: an empty matrix, whose ``any()`` is False, was first told its weights are all
        zero, then refused)."""
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ValueError, match="must not be empty"):
                matrix.engine_view(np.zeros((0, 2)), ideal_chip(), np.ones((2, 2)))

    def test_a_percentile_scale_of_smoothed_inputs_is_taken_on_them(self):
        """matrix.py ``engine_view``: with smoothing the percentile (and MSE) scale searches
        the sample as the quantizer sees it, ``sample / smooth`` (mutant: the raw sample).
        alpha = 1 and unit weights: s = max|x_k| = [1, 100], so x / s is 1 and 0.5 in both
        channels and s_x = 1 / 255 (the raw sample's 99.99th percentile is about 100)."""
        chip = _chip(smooth_alpha=1.0, act_calibration="percentile")
        view = matrix.engine_view(np.ones((1, 2)), chip, _rows([1.0, 100.0], [0.5, 50.0]))
        np.testing.assert_array_equal(view.smooth, [1.0, 100.0])
        assert view.s_x == pytest.approx(1 / 255, rel=1e-12)

    def test_the_a_shift_leaves_signed_inputs_symmetric(self):
        """matrix.py ``engine_view``: the A-shift (``dac.shift_unsigned_inputs``) applies to
        unsigned inputs only (``not signed and``; mutant: signed inputs shifted too, their
        negative values clipped to the lowest code): [-1, 1] code [-127, 127], zero point
        0."""
        chip = ideal_chip(dac={"shift_unsigned_inputs": True, "signed_inputs": "twos_complement"})
        view = matrix.engine_view(np.eye(2), chip, _rows([-1.0, 1.0]))
        assert view.input_signed and view.zero_point == 0
        np.testing.assert_array_equal(view.quantize(_rows([-1.0, 1.0])), [[-127, 127]])
        view = matrix.engine_view(np.eye(2), chip, _rows([0.0, 1.0]))
        assert view.input_signed and view.zero_point == -128

    def test_a_shifted_view_clips_to_the_unsigned_codes(self):
        """quant.py ``_act_codes``: A-shifted inputs (a negative zero point; the view's inputs
        signed) are clipped to the unsigned codes [0, 2^B - 1] before the shift (mutant: to
        ``act_range(bits, signed)``, [-127, 127] for the signed view, so 1.0, code 255, drove
        127 - 128 = -1): [0, 0.5, 1] at s_x = 1 / 255 drive [-128, 0, 127]."""
        chip = ideal_chip(dac={"shift_unsigned_inputs": True, "signed_inputs": "twos_complement"})
        view = matrix.engine_view(np.eye(3), chip, _rows([0.0, 0.5, 1.0]))
        assert view.input_signed and view.zero_point == -128
        x_int, _, n = view.encode_counted(_rows([0.0, 0.5, 1.0]))
        np.testing.assert_array_equal(x_int, [[-128, 0, 127]])
        assert n == 0

    def test_a_grouped_matrix_takes_its_percentile_over_the_pooled_sample(self):
        """matrix.py ``engine_view``: statistics shared over the groups of a layer give one
        input scale, the percentile of the pooled sample (``stats.pooled``; mutant: the
        matrix's own sample, 1 here, where its neighbour's reaches 100; ``share`` pooling
        each sample's first row only)."""
        a, b = InputStats(0), InputStats(1)
        a.observe(_rows([1.0], [1.0]))
        b.observe(_rows([1.0], [100.0]))
        InputStats.share([a, b])
        np.testing.assert_array_equal(a.pooled, [1.0, 1.0, 1.0, 100.0])
        view = matrix.engine_view(np.ones((1, 1)), _chip(act_calibration="percentile"), a)
        want = np.percentile([1.0, 1.0, 1.0, 100.0], 99.99) / 255
        assert want > 99 / 255 and view.s_x == pytest.approx(want, rel=1e-12)

    def test_fresh_statistics_are_refused_naming_the_layer(self):
        """matrix.py ``engine_view``: statistics that recorded nothing are statistics all the
        same (``isinstance(calibration, InputStats)``; mutant: only with ``n_seen``, so an
        unreached layer's statistics were read as an input array and failed in NumPy), refused
        as a layer the calibration pass never reached."""
        with pytest.raises(MappingError, match="layer 'fc' saw no calibration data"):
            matrix.engine_view(np.eye(2), ideal_chip(), InputStats(0), name="fc")


# ---------------------------------------------------------------------------------------------
# matrix.packed_groups


class TestPackedGroupsOnePerMatrix:
    def test_unpacked_groups_keep_their_kernel_preserving_tiles(self):
        """matrix.py ``packed_groups``: a grouped conv mapped one group per matrix (packing
        off) still gets its kernel-preserving tiles (mutant: only packs did, ``per > 1``):
        2 groups of 3 input channels, kernel 3 (K = 9) on 8-row arrays: tiles of 2 kernels,
        [(0, 6), (6, 9)]."""
        chip = ideal_chip()
        chip = chip.replace(array=chip.array.replace(n_rows=8, kernel_preserving_tiling=True))
        w2 = np.arange(1.0, 19.0).reshape(2, 9)
        per, packed, tiles = matrix.packed_groups(w2, 2, (3,), chip, "c")
        assert (per, tiles) == (1, [(0, 6), (6, 9)])
        assert packed is w2


# ---------------------------------------------------------------------------------------------
# bugs this round found (fixed)


class TestEngineViewNamesItsLayer:
    def test_non_finite_calibration_inputs_are_refused_naming_the_layer(self):
        """matrix.py ``engine_view``: float calibration inputs were recorded with
        ``stats.observe(x)``, not ``observe(x, name)``, so NaN inputs to ``engine_view(...,
        name='fc')`` (and ``TwinMatmul.calibrated(..., name='fc')``) were refused as "a mapped
        matrix: ..." though the caller named the layer; now "layer 'fc': ...", as deploy's."""
        with pytest.raises(MappingError, match="layer 'fc'"):
            matrix.engine_view(np.eye(2), ideal_chip(), _rows([np.nan, 1.0]), name="fc")


class TestSmoothedGroupsTakeTheirOwnScale:
    def test_a_smoothed_group_at_tensor_granularity_keeps_its_weights(self):
        """matrix.py ``engine_view`` with ``quant.smooth_alpha`` and ``weight_granularity =
        'tensor'``: a group of a grouped conv multiplies its weights by its smoothing factors,
        but was quantized at the layer's raw ``layer_max_abs / q``. Group 0 of a depthwise
        conv whose weights are 1 and 1, its inputs up to 4 (alpha = 0.5: s = sqrt(4) = 2,
        smoothed weight 2) took code ``clip(rint(2 · 127), -127, 127) = 127``, weight 1. Now
        the group's scale covers its smoothed weights."""
        w = _rows([1.0])
        x = _rows([4.0], [1.0], [0.5])
        view = matrix.engine_view(w, _chip(smooth_alpha=0.5, weight_granularity="tensor"), x,
                                  layer_max_abs=matrix.group_max_abs(_rows([1.0], [1.0]), 2))
        np.testing.assert_array_equal(view.smooth, [2.0])
        # the float weight the view computes with: w_int · s_w / smooth (x / smooth in)
        np.testing.assert_allclose(view.w_int * view.s_w[0][:, None] / view.smooth, w,
                                   rtol=0.01)

    @pytest.mark.usefixtures("own_torch_generator")  # (the conv's initial draw)
    def test_a_smoothed_depthwise_conv_deploys_to_its_float_output(self):
        """The same through ``cimsim.deploy`` on the lossless ideal chip: the conv's channel 0
        output was 2.0 where the float conv gives 4.0 (no warning)."""
        conv = nn.Conv1d(2, 2, 1, groups=2, bias=False)
        with torch.no_grad():
            conv.weight.fill_(1.0)
        x = torch.tensor([[[4.0, 1.0, 0.5], [1.0, 0.5, 0.25]]])
        sim = cimsim.deploy(conv, _chip(smooth_alpha=0.5, weight_granularity="tensor"), x)
        with torch.no_grad():
            torch.testing.assert_close(sim(x), conv(x), rtol=0.02, atol=0.02)

    def test_a_smoothed_group_pruned_whole_still_takes_the_layer_scale(self):
        """The fix keeps the fallback: an all-zero group (its smoothed weights 0 too) takes the
        layer's scale, not 1.0, and says nothing of zero weights."""
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            view = matrix.engine_view(_rows([0.0]), _chip(smooth_alpha=0.5,
                                                          weight_granularity="tensor"),
                                      _rows([4.0], [1.0]), layer_max_abs=2.54)
        np.testing.assert_allclose(view.s_w, [[0.02]])
        assert not view.w_int.any()

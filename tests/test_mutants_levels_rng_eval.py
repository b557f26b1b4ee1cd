"""Tests from a mutation-testing round over ``cimsim/adc/levels.py``, ``cimsim/adc/nonlinear.py``,
``cimsim/arrays/_rng.py``, ``cimsim/arrays/_gemm.py``, ``cimsim/evaluate.py``,
``cimsim/_inputs.py`` and ``cimsim/work.py``.

Each test pins behaviour that a surviving mutant changed while the earlier tests still passed:
known answers worked out by hand on tiny samples, NumPy-twin comparisons and relations (a
shift or a power-of-two scale of the samples moves the fit with them).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from cimsim.adc.levels import fit_levels, quantization_mse
from cimsim.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# cimsim.adc.levels
# ---------------------------------------------------------------------------------------------


def test_padding_without_room_repeats_the_top_point() -> None:
    # two adjacent floats: no float lies between them, so the two missing levels repeat the
    # top point (the _pad_levels contract), not the bottom one
    b = np.nextafter(1.0, 2.0)
    lv = fit_levels(np.array([1.0, b]), 2, "kmeans")
    assert lv.levels.tolist() == [1.0, b, b, b]


def test_lloyd_max_with_one_iteration_makes_exactly_one_lloyd_step() -> None:
    # uniform start [0, 1], midpoint 0.5: cells {0, 0.1} and {0.9, 1} -> centroids 0.05, 0.95
    x = np.array([0.0, 0.1, 0.9, 1.0])
    lv = fit_levels(x, 1, "lloyd_max", max_iter=1)
    np.testing.assert_allclose(lv.levels, [0.05, 0.95], rtol=0, atol=1e-15)
    np.testing.assert_allclose(lv.thresholds, [0.5], rtol=0, atol=1e-15)


def test_lloyd_converged_on_its_last_allowed_step_logs_no_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    # the uniform levels are already the centroids: the one step moves nothing (delta 0 <= tol
    # 0), so the fit converged and must not warn that max_iter stopped it
    x = np.array([0.0, 1.0, 2.0, 3.0])
    with caplog.at_level(logging.WARNING, logger="cimsim.adc.levels"):
        lv = fit_levels(x, 2, "lloyd_max", tol=0.0, max_iter=1)
    assert lv.levels.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert not [r for r in caplog.records if "max_iter" in r.getMessage()]


def test_kmeans_with_exactly_l_distinct_values_returns_them() -> None:
    # 4 distinct values at 2 b: every one gets its own level (MSE 0), whatever the quantiles
    # (here all at the heavy 2) would have started Lloyd from
    x = np.array([0.0] + [1.0] + [2.0] * 100 + [3.0])
    lv = fit_levels(x, 2, "kmeans")
    assert lv.levels.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert quantization_mse(x, lv) == 0.0


def _two_clusters_with_a_slow_lloyd() -> np.ndarray:
    rng = np.random.default_rng(3)
    return np.concatenate([rng.normal(0.0, 1.0, 400), rng.normal(3.0, 0.5, 100),
                           rng.exponential(2.0, 100) + 5.0])


@pytest.mark.parametrize("method", ["kmeans", "lloyd_max", "bs_kmq"])
def test_fit_scales_with_the_samples_by_a_power_of_two(method: str) -> None:
    # tol is relative to the range: a power-of-two scale changes no rounding, so the fit at
    # 2**-40 (or 2**40) is the fit at 1 scaled, bit for bit
    x = _two_clusters_with_a_slow_lloyd()
    ref = fit_levels(x, 3, method)
    for scale in (2.0**-40, 2.0**40):
        got = fit_levels(x * scale, 3, method)
        np.testing.assert_array_equal(got.levels, ref.levels * scale)
        np.testing.assert_array_equal(got.thresholds, ref.thresholds * scale)


def test_kmeans_optimal_partition_is_shift_invariant() -> None:
    # SSE is shift invariant; the prefix sums centre the values so that an offset of 1e6 does
    # not cancel the within-cluster SSE away
    rng = np.random.default_rng(0)
    y = np.round(np.concatenate([rng.normal(0, 1, 300), rng.normal(6, 1, 300)]), 2)
    a = fit_levels(y, 3, "kmeans_optimal")
    b = fit_levels(y + 1e6, 3, "kmeans_optimal")
    np.testing.assert_array_equal(a.codes(y), b.codes(y + 1e6))
    assert quantization_mse(y + 1e6, b) == pytest.approx(quantization_mse(y, a), rel=1e-6)


def test_too_large_exact_kmeans_table_names_the_1_gib_limit() -> None:
    # 20000 distinct values (max_bins 20000) at 14 b: a 16385 x 20001 table of 2.4 GiB, over
    # the 1 GiB allowed; refused before anything is allocated
    x = np.arange(20000, dtype=np.float64)
    with pytest.raises(ConfigError, match=r"2\.4 GiB table; allowed: at most 1 GiB"):
        fit_levels(x, 14, "kmeans_optimal", max_bins=20000)


def test_exactly_max_bins_distinct_values_are_not_binned() -> None:
    # 4 distinct values, max_bins = 4: the DP runs on the values themselves (MSE 0); binned
    # into 4 equal bins of [0, 10], 0, 1 and 2 would share one bin
    x = np.array([0.0, 1.0, 2.0, 10.0])
    lv = fit_levels(x, 2, "kmeans_optimal", max_bins=4)
    assert lv.levels.tolist() == [0.0, 1.0, 2.0, 10.0]


def test_the_top_sample_falls_in_the_last_bin() -> None:
    # 6 distinct values, 2 bins of [0, 1]: {0, .4, .45, .49} and {.6, 1.0} (the maximum is in
    # the last bin, not a bin of its own); 2 bin means for 2 levels, no Lloyd step (max_iter 0)
    x = np.array([0.0, 0.4, 0.45, 0.49, 0.6, 1.0])
    lv = fit_levels(x, 1, "kmeans_optimal", max_bins=2, max_iter=0)
    np.testing.assert_allclose(lv.levels, [(0.4 + 0.45 + 0.49) / 4, 0.8], rtol=1e-15)


def test_cdf_empty_cells_take_their_midpoints() -> None:
    # samples 0 and 1 at 2 b: quantiles 0.25, 0.5, 0.75; the cells [0.25, 0.5) and [0.5, 0.75)
    # are empty and take their midpoints (docs/levels.md, cdf)
    lv = fit_levels(np.array([0.0, 1.0]), 2, "cdf")
    assert lv.thresholds.tolist() == [0.25, 0.5, 0.75]
    assert lv.levels.tolist() == [0.0, 0.375, 0.625, 1.0]


def test_bs_kmq_eps_of_half_the_range_is_refused() -> None:
    # 2 eps must be < hi - lo: at equality the two boundary bands would meet
    with pytest.raises(ConfigError, match="eps must be <"):
        fit_levels(np.array([0.0, 0.3, 1.0]), 2, "bs_kmq", eps=0.5)
    fit_levels(np.array([0.0, 0.3, 1.0]), 2, "bs_kmq", eps=0.499)


def test_bs_kmq_pins_a_top_end_holding_exactly_min_mass() -> None:
    # one sample of 100 at each end: m_lo = m_hi = 1/100 = min_mass (0.01, the default), so
    # both ends are pinned (>=); a hair above, neither is and the ramp's levels move inside
    x = np.concatenate([np.linspace(0.0, 0.99, 99), [1.0]])
    lv = fit_levels(x, 2, "bs_kmq")
    assert lv.levels[0] == 0.0 and lv.levels[-1] == 1.0
    unpinned = fit_levels(x, 2, "bs_kmq", min_mass=0.0100001)
    assert unpinned.levels[0] > 0.0 and unpinned.levels[-1] < 1.0


def test_bs_kmq_min_mass_zero_is_allowed_and_pins_both_ends() -> None:
    x = np.array([0.0, 0.2, 0.3, 0.5, 0.6, 0.8, 1.0])
    lv = fit_levels(x, 2, "bs_kmq", lo=-1.0, hi=2.0, min_mass=0.0)
    assert lv.levels[0] == -1.0 and lv.levels[-1] == 2.0


def test_sixteen_bits_are_allowed() -> None:
    lv = fit_levels(np.array([0.0, 1.0]), 16, "uniform")
    assert lv.bits == 16 and lv.levels.size == 65536
    with pytest.raises(ConfigError, match="bits"):
        fit_levels(np.array([0.0, 1.0]), 17, "uniform")


def test_max_bins_default_grows_to_the_levels_above_12_bits() -> None:
    # default max_bins = max(4096, 2**bits): a 13-b fit needs no max_bins argument
    x = np.arange(100.0)
    for method in ("kmeans_optimal", "bs_kmq"):
        lv = fit_levels(x, 13, method)
        assert lv.levels.size == 8192
        assert quantization_mse(x, lv) == 0.0


@pytest.mark.parametrize("method", ["lloyd_max", "kmeans", "bs_kmq"])
def test_iteration_defaults_are_tol_1e9_of_the_range_and_1000_steps(
        method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import cimsim.adc.levels as levels_mod

    calls = []
    real = levels_mod._lloyd

    def spy(xs, levels, tol_abs, max_iter, fixed=()):
        calls.append((tol_abs, max_iter))
        return real(xs, levels, tol_abs, max_iter, fixed)

    monkeypatch.setattr(levels_mod, "_lloyd", spy)
    x = np.concatenate([np.zeros(10), np.linspace(0.5, 3.5, 40), np.full(10, 4.0)])
    fit_levels(x, 2, method)
    assert calls and all(c == (pytest.approx(4e-9, rel=1e-12), 1000) for c in calls)


def test_bs_kmq_one_free_level_starts_at_the_interior_mean() -> None:
    # 1 b, lo pinned (mass 0.5 >= 0.1), hi not (0.05): the free level is the exact 1-means of
    # the interior {0.2 x 9, 1.0} = 0.28, a Lloyd fixed point with the pin held (all of the
    # interior is above the midpoint 0.14); started from (lo + hi) / 2 it would reach 1.0
    x = np.array([0.0] * 10 + [0.2] * 9 + [1.0])
    lv = fit_levels(x, 1, "bs_kmq", min_mass=0.1)
    assert lv.levels[0] == 0.0
    assert lv.levels[1] == pytest.approx(0.28, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# cimsim.adc.nonlinear
# ---------------------------------------------------------------------------------------------


def test_thin_samples_keeps_at_most_the_cap_by_a_ceiling_stride() -> None:
    from cimsim.adc.nonlinear import MAX_POOLED_SAMPLES, thin_samples

    x = np.arange(MAX_POOLED_SAMPLES * 3 // 2)
    np.testing.assert_array_equal(thin_samples(x), x[::2])
    x = np.arange(MAX_POOLED_SAMPLES)
    assert thin_samples(x) is x


def test_unseen_span_covers_the_full_scale_and_the_value_seen() -> None:
    from types import SimpleNamespace

    from cimsim.adc.nonlinear import unseen_span

    layer = SimpleNamespace(fs_lo=0.0, fs_hi=4.0)
    assert unseen_span(np.full(3, 1.5), layer) == {"lo": 0.0, "hi": 4.0}
    # a value outside the full scale widens it to the value
    assert unseen_span(np.full(3, 5.0), layer) == {"lo": 0.0, "hi": 5.0}
    assert unseen_span(np.full(3, -1.0), layer) == {"lo": -1.0, "hi": 4.0}
    # spread seen, an empty full scale, or none known: the samples' own range
    assert unseen_span(np.array([1.0, 2.0]), layer) == {}
    assert unseen_span(np.full(3, 2.0), SimpleNamespace(fs_lo=2.0, fs_hi=2.0)) == {}
    assert unseen_span(np.full(3, 2.0), SimpleNamespace(fs_lo=-np.inf, fs_hi=2.0)) == {}
    assert unseen_span(np.zeros(0), layer) == {}


class TestAdjacentFloatLevels:
    """docs/levels.md: with no more distinct sample values than levels, the K-means-type
    methods "reproduce every distinct sample exactly (MSE 0)". Two distinct samples that are
    adjacent floats get their own levels, but the midpoint threshold between them rounds onto
    the lower one, and a value at a threshold goes up: the lower sample reads as the upper."""

    @pytest.mark.parametrize("method", ["kmeans", "kmeans_optimal", "bs_kmq"])
    def test_adjacent_float_samples_are_reproduced_exactly(self, method: str) -> None:
        x = np.array([1.0, np.nextafter(1.0, 2.0)])
        lv = fit_levels(x, 1, method)
        assert lv.levels.tolist() == x.tolist()
        np.testing.assert_array_equal(lv.quantize(x), x)  # got [b, b]: 1.0 read as b


def test_a_pooled_fit_sees_at_most_max_pooled_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    import cimsim
    import cimsim.adc.nonlinear as nonlinear_mod
    from cimsim import engine
    from cimsim.arrays.program import program

    sizes = []
    real = nonlinear_mod.fit_levels

    def spy(values, *args, **kwargs):
        sizes.append(np.asarray(values).size)
        return real(values, *args, **kwargs)

    monkeypatch.setattr(nonlinear_mod, "fit_levels", spy)
    base = cimsim.load_chip("rram-22nm")
    chip = base.replace(
        array=base.array.replace(n_rows=40, n_cols=24, rows_per_conversion=20),
        adc=base.adc.replace(kind="ramp", bits=2, level_fit="uniform",
                             calibration_granularity="layer"),
        noise=base.noise.replace(thermal_sigma_lsb=0.0))
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (20, 20))
    x = rng.integers(0, 256, (12_000, 20))
    layer = program(w, chip, np.random.default_rng(1))
    engine.calibrate(layer, x)
    # one layer-wide unit pooling 12,000 vectors x >= 20 columns: thinned to the cap
    assert sizes and max(sizes) <= nonlinear_mod.MAX_POOLED_SAMPLES
    assert max(sizes) > nonlinear_mod.MAX_POOLED_SAMPLES // 2


# ---------------------------------------------------------------------------------------------
# cimsim.arrays._rng
# ---------------------------------------------------------------------------------------------


def _splitmix64(state: int) -> int:
    """One output of Vigna's splitmix64 from ``state`` (the published constants)."""
    mask = (1 << 64) - 1
    z = (state + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_stream_keys_are_splitmix_of_seed_then_stream_times_golden() -> None:
    from cimsim.arrays._rng import _mix_int, stream_key

    assert _splitmix64(0) == 0xE220A8397B1DCDAF  # splitmix64's first output from state 0
    assert _mix_int(0) == 0xE220A8397B1DCDAF
    golden = 0x9E3779B97F4A7C15
    for seed, stream in [(0, 0), (0, 1), (7, 2), (2**64 + 5, 3), (123456789, 17)]:
        expected = _splitmix64((_splitmix64(seed % 2**64) + stream * golden) % 2**64)
        assert stream_key(seed, stream) == expected


# ---------------------------------------------------------------------------------------------
# cimsim.evaluate
# ---------------------------------------------------------------------------------------------


def _scores_model(scores):
    """A callable returning ``scores`` cut to the batch (rows = inputs)."""
    import torch

    table = torch.as_tensor(scores, dtype=torch.float32)

    def model(x):
        return table[x.long().reshape(-1)]

    return model


def test_score_problem_refuses_a_label_equal_to_the_class_count() -> None:
    import torch

    from cimsim.evaluate import score_problem

    model = _scores_model([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    x = torch.tensor([0, 1])
    assert score_problem(model, x, torch.tensor([0, 2])) is None
    problem = score_problem(model, x, torch.tensor([0, 3]))
    assert problem is not None and "label 3 is out of range" in problem


def test_score_problem_refuses_one_row_of_scores_for_two_inputs() -> None:
    import torch

    from cimsim.evaluate import score_problem

    problem = score_problem(lambda x: torch.zeros(1, 3), torch.zeros(2, 4),
                            torch.tensor([0, 1]))
    assert problem is not None and "on 2 inputs" in problem and "(1, 3)" in problem


def test_accuracy_refuses_a_zero_dimensional_label() -> None:
    import torch

    from cimsim.evaluate import accuracy

    with pytest.raises(ValueError, match=r"has shape \(\)"):
        accuracy(_scores_model([[0.0, 1.0]]), torch.tensor([0]), torch.tensor(1))


def test_output_cosine_of_identical_outputs_is_exactly_one() -> None:
    import torch

    from cimsim.evaluate import output_cosine

    # |v|^2 = 3 but sqrt(3) * sqrt(3) = 2.9999999999999996: the raw ratio is 1 + 2 ulp
    model = _scores_model([[1.0, 1.0, 1.0]])
    assert output_cosine(model, model, torch.tensor([0])) == 1.0
    neg = _scores_model([[-1.0, -1.0, -1.0]])
    assert output_cosine(model, neg, torch.tensor([0])) == -1.0


def test_output_cosine_with_an_all_zero_output_is_zero() -> None:
    import torch

    from cimsim.evaluate import output_cosine

    zeros = _scores_model([[0.0, 0.0], [0.0, 0.0]])
    ones = _scores_model([[1.0, 2.0], [3.0, 4.0]])
    x = torch.tensor([0, 1])
    assert output_cosine(ones, zeros, x) == 0.0
    assert output_cosine(zeros, zeros, x) == 0.0


def test_output_cosine_names_a_model_whose_output_holds_no_tensor() -> None:
    import torch

    from cimsim.evaluate import output_cosine

    ref = _scores_model([[1.0, 2.0]])
    with pytest.raises(ValueError, match="holds no tensor to compare"):
        output_cosine(ref, lambda x: None, torch.tensor([0]))
    with pytest.raises(ValueError, match="holds no tensor to compare"):
        output_cosine(lambda x: {"n": 3}, ref, torch.tensor([0]))


def test_accuracy_without_y_refuses_a_batch_of_three() -> None:
    import torch

    from cimsim.evaluate import accuracy

    model = _scores_model([[0.0, 1.0], [1.0, 0.0]])
    batch = (torch.tensor([0, 1]), torch.tensor([1, 0]))
    assert accuracy(model, [batch]) == 1.0
    with pytest.raises(ValueError, match="a tuple of 3"):
        accuracy(model, [batch + (torch.tensor([5.0, 6.0]),)])


# ---------------------------------------------------------------------------------------------
# cimsim._inputs
# ---------------------------------------------------------------------------------------------


def test_sample_dim_follows_its_documented_order() -> None:
    import torch

    from cimsim._inputs import sample_dim

    z = torch.zeros
    # fewer dimensions than the first (a (B, S) key padding mask beside (S, B, E) inputs,
    # batch_dim 1) with S == B: dimension 0 is tried first
    assert sample_dim(z(4, 4), 3, 4, batch_dim=1) == 0
    # as many dimensions: batch_dim first
    assert sample_dim(z(4, 4, 2), 3, 4, batch_dim=1) == 1
    # a 2-D entry with its n along batch_dim 1
    assert sample_dim(z(7, 4), 2, 4, batch_dim=1) == 1
    # a (1, S) position_ids with S == n is passed whole; a (layers, B, H) state is cut along 1
    assert sample_dim(z(1, 4), 2, 4) is None
    assert sample_dim(z(2, 4, 3), 2, 4) == 1
    assert sample_dim(3, 2, 4) is None


def test_counting_key_takes_an_empty_batch_as_the_count() -> None:
    import torch

    from cimsim._inputs import counting_key, input_count

    x = {"a": torch.zeros(0, 3), "b": torch.zeros(5, 3)}
    assert counting_key(x) == "a"
    assert input_count(x) == 0
    assert counting_key({"p": torch.zeros(1, 3), "b": torch.zeros(5, 3)}) == "b"


def test_input_count_names_a_batch_dim_beyond_the_inputs() -> None:
    import torch

    from cimsim._inputs import input_count

    with pytest.raises(ValueError, match="beyond"):
        input_count(torch.zeros(3), batch_dim=1)
    assert input_count(torch.zeros(3, 2), batch_dim=1) == 2
    with pytest.raises(ValueError, match="no tensor"):
        input_count({"a": torch.zeros(3)}, batch_dim=1)


def test_input_rows_cuts_each_state_of_a_list_and_same_rank_entries_along_batch_dim() -> None:
    import torch

    from cimsim._inputs import input_rows

    x = {"x": torch.arange(24.0).reshape(6, 4), "state": [torch.zeros(1, 6, 5),
                                                          torch.ones(1, 6, 5)]}
    got = input_rows(x, 0, 2)
    assert isinstance(got["state"], list)
    assert [tuple(s.shape) for s in got["state"]] == [(1, 2, 5), (1, 2, 5)]
    # sequence-first (S, B, E) with S == B == 4 and a same-rank entry: cut along batch_dim 1
    y = {"src": torch.zeros(4, 4, 2), "aux": torch.arange(48.0).reshape(4, 4, 3)}
    got = input_rows(y, 1, 3, batch_dim=1)
    assert tuple(got["src"].shape) == (4, 2, 2)
    torch.testing.assert_close(got["aux"], y["aux"][:, 1:3])


# ---------------------------------------------------------------------------------------------
# cimsim.work
# ---------------------------------------------------------------------------------------------


def _layer_work(events, **counts):
    from cimsim.events import Events
    from cimsim.work import LayerWork

    return LayerWork(name="l", kind="matmul", events=Events(events), blocks=(), n_inputs=4,
                     n_outputs=2, n_matrices=1, input_signed=False, n_cells=8, n_arrays=1,
                     **counts)


def test_layer_work_counts_every_conversion_and_only_conversions() -> None:
    import math

    work = _layer_work({("adc", "convert", 4): 10, ("adc", "convert", 6): 6,
                        ("adc", "leak"): 100, ("layer", "mac"): 7},
                       n_adc_clipped=4, n_input_clipped=3, n_input_values=12)
    assert work.n_adc_conversions == 16
    assert work.adc_clip_fraction == 0.25
    assert work.input_clip_fraction == 0.25
    idle = _layer_work({("layer", "mac"): 7})
    assert idle.n_adc_conversions == 0
    assert math.isnan(idle.adc_clip_fraction) and math.isnan(idle.input_clip_fraction)


def test_block_defaults_are_one_stage_no_lag_its_own_row_tiles() -> None:
    from cimsim.work import Block

    block = Block(layer=None, n_vectors=3.0)  # type: ignore[arg-type]
    assert (block.stage, block.lag_vectors, block.merged_row_tiles) == (0, 0.0, 1)


def test_a_bin_of_repeated_top_values_keeps_its_level_at_hi() -> None:
    # 3 x 0.1 / 3 = 0.10000000000000002: the bin mean is clipped back into [lo, hi]
    x = np.array([0.0, 0.01, 0.02, 0.1, 0.1, 0.1])
    lv = fit_levels(x, 1, "kmeans_optimal", max_bins=2, max_iter=0)
    assert lv.levels[-1] == 0.1
    np.testing.assert_allclose(lv.levels[0], 0.01, rtol=1e-15)


def test_cdf_mass_at_the_top_nudges_every_threshold_down_from_hi() -> None:
    # 90 % at hi = 1: all three quantiles are 1.0; the upward pass overshoots hi, so the top
    # threshold is set to hi and the downward pass spreads the others one ulp apart below it
    x = np.array([0.0] + [1.0] * 9)
    t = fit_levels(x, 2, "cdf").thresholds
    below = np.nextafter(1.0, 0.0)
    assert t.tolist() == [np.nextafter(below, 0.0), below, 1.0]


def test_infinite_samples_are_refused_even_inside_given_limits() -> None:
    # lo and hi given: an inf would be clipped to hi and fitted without a word
    with pytest.raises(ValueError, match="inf"):
        fit_levels(np.array([0.0, 0.5, np.inf]), 2, "kmeans", lo=0.0, hi=1.0)
    lv = fit_levels(np.array([0.0, 1.0]), 1, "uniform")
    with pytest.raises(ValueError, match="inf"):
        quantization_mse(np.array([0.0, -np.inf]), lv)


@pytest.mark.parametrize("params", [{"tol": True}, {"eps": False}, {"min_mass": True}])
def test_booleans_are_not_numbers_for_level_fit_parameters(params: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(params))):
        fit_levels(np.array([0.0, 0.3, 1.0]), 2, "bs_kmq", **params)


def test_predict_on_no_inputs_is_an_empty_int64_tensor() -> None:
    import torch

    from cimsim.evaluate import predict

    pred = predict(lambda x: x, torch.zeros(0, 3))
    assert pred.dtype == torch.int64 and tuple(pred.shape) == (0,)


def test_predict_refuses_scores_with_another_number_of_rows() -> None:
    import torch

    from cimsim.evaluate import predict

    with pytest.raises(ValueError, match="for a batch of 3 inputs"):
        predict(lambda x: torch.zeros(2, 3), torch.zeros(3, 4))


def test_a_boolean_batch_dim_attribute_of_the_model_is_ignored() -> None:
    import torch

    from cimsim.evaluate import predict

    class Model:
        batch_dim = True  # not an int: the inputs count along dimension 0

        def __call__(self, x):
            return x

    x = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 2.0]])
    assert predict(Model(), x).tolist() == [1, 0, 1]


# ---------------------------------------------------------------------------------------------
# cimsim.arrays._gemm
# ---------------------------------------------------------------------------------------------


def test_read_tensor_holds_torchs_read_only_warning_under_warn_always(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    import torch

    import cimsim.arrays._gemm as gemm_mod

    # as after the process's first read-only operand; put back as it was after the test
    monkeypatch.setattr(gemm_mod, "_READ_ONLY_SEEN", True)
    a = np.arange(6.0).reshape(2, 3)
    a.setflags(write=False)
    was = torch.is_warn_always_enabled()
    torch.set_warn_always(True)  # torch then warns at every call, and the block holds each
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t = gemm_mod.read_tensor(torch, a)
    finally:
        torch.set_warn_always(was)
    assert not [w for w in caught if "not writable" in str(w.message)]
    assert t.tolist() == a.tolist()

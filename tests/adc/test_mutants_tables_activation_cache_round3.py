"""Tests written for the survivors of a third, short hand-made mutation round over the ADC
tables (``cimsim/adc/tables.py``), the ADC fused with a layer's activation
(``cimsim/adc/activation.py``) and the programming cache (``cimsim/arrays/cache.py``), aimed at
what the earlier rounds (tests/adc/test_mutants_adc_round2.py, tests/test_mutants_core_sim.py)
left unpinned. Tiny hand-made tables, layers and calibration values; each docstring names the
line and the change it kills. ``TestNonPositiveKappaRefused`` pins a real bug the round found,
fixed (a fused activation of kappa <= 0 was taken)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cimsim import engine
from cimsim.adc.activation import FusedActivation, fit_activation_levels
from cimsim.adc.tables import ADCTables
from cimsim.arrays import cache
from cimsim.arrays.program import program
from cimsim.errors import ConfigError
from tests.adc.test_mutants_adc_round2 import _stats
from tests.conftest import bskmq_chip, ideal_chip


# ---------------------------------------------------------------------------------------------
# adc/tables.py
# ---------------------------------------------------------------------------------------------
class TestADCTablesChecks:
    def test_a_step_of_another_shape_than_the_start_is_refused(self):
        """tables.py ``__post_init__``: ``or np.shape(self.delta) != shape`` dropped accepted
        a (1, 2) start with a (2, 1) step (each two-dimensional): tables whose step broadcasts
        to another (G, C) than the layer's."""
        with pytest.raises(ValueError, match="must both be \\(G, C\\)"):
            ADCTables(lo=np.zeros((1, 2)), delta=np.ones((2, 1)))
        with pytest.raises(ValueError, match="must both be \\(G, C\\)"):
            ADCTables.linear(np.zeros((1, 2)), np.ones((1, 3)))

    def test_integer_grids_are_float64(self):
        """tables.py ``linear``: ``dtype=np.float64`` dropped kept integer (or list) starts
        and steps as int64 arrays, where the tables are documented (G, C) float64."""
        t = ADCTables.linear([[0, -3]], np.array([[2, 1]]))
        assert t.lo.dtype == np.float64 and t.delta.dtype == np.float64
        np.testing.assert_array_equal(t.lo, [[0.0, -3.0]])

    def test_integer_levels_and_thresholds_are_float64(self):
        """tables.py ``from_levels``: the ``dtype=np.float64`` of the levels or of the
        thresholds dropped kept integer tables (and an integer start) as int64."""
        lvl = np.array([[[0, 2, 4, 6]]])
        thr = np.array([[[1, 3, 5]]])
        t = ADCTables.from_levels(thr, lvl)
        for name in ("lo", "delta", "thr", "lvl"):
            assert getattr(t, name).dtype == np.float64, name
        assert float(t.delta[0, 0]) == 2.0

    def test_clip_bounds_given_as_lists_or_integers_are_float64_arrays(self):
        """tables.py ``from_levels``: the ``np.asarray(clip_lo/clip_hi, dtype=np.float64)``
        dropped kept a list (or an int array) as given: ``clip_bounds`` then returned it."""
        lvl = np.array([[[0.0, 1.0]]])
        t = ADCTables.from_levels(lvl[..., :1] + 0.5, lvl, clip_lo=[[-1]],
                                  clip_hi=np.array([[3]]))
        lo, hi = t.clip_bounds(2)
        assert isinstance(lo, np.ndarray) and lo.dtype == np.float64
        assert isinstance(hi, np.ndarray) and hi.dtype == np.float64
        np.testing.assert_array_equal(np.concatenate([lo, hi]), [[-1.0], [3.0]])


# ---------------------------------------------------------------------------------------------
# adc/activation.py
# ---------------------------------------------------------------------------------------------
def _fused_layer(n_out: int = 2, kind: str = "sar", **adc):
    """A programmed 2-bit layer-output layer of ``n_out`` conversions (column granularity)."""
    chip = bskmq_chip(weight_bits=4, bits=2, granularity="column")
    chip = chip.replace(adc=chip.adc.replace(kind=kind, **adc))
    return program(np.ones((n_out, 3), dtype=np.int64), chip)


class TestFitActivationLevels:
    def test_minmax_clamps_at_the_exact_max_not_the_kept_samples(self):
        """activation.py ``a_max = float(exact_max[cols].max())`` (mutants: the max of the
        kept samples ``post[:, cols]``, or ``exact_max`` taken as ``post.max(axis=0)``): with
        two samples kept of five, the top is the running maximum 7, not the kept 5."""
        s = _stats(np.array([[5.0], [-3.0], [1.0], [2.0], [7.0]]), max_samples=2)
        np.testing.assert_array_equal(s.kept(0)[:, 0], [5.0, 2.0])
        lv = fit_activation_levels(_fused_layer(1, calibration_stat="minmax"), s,
                                   FusedActivation(np.ones(1), np.zeros(1)))
        assert float(lv.a_max[0]) == 7.0
        np.testing.assert_array_equal(lv.levels, [[0.0, 7 / 3, 14 / 3, 7.0]])

    def test_a_ramps_fit_parameters_reach_fit_levels(self):
        """activation.py ``**(params or {})`` dropped: the parameters the training twin
        passes (``tol``, ``max_iter``) were ignored, the default fit returned."""
        from cimsim.adc.levels import fit_levels

        a = np.abs(np.random.default_rng(2).normal(size=(200, 2))) ** 3
        layer = _fused_layer(2, kind="ramp", level_fit="kmeans", calibration_stat="minmax")
        act = FusedActivation(np.ones(2), np.zeros(2))
        got = fit_activation_levels(layer, _stats(a), act, params={"tol": 0.5})
        plain = fit_activation_levels(layer, _stats(a), act)
        post = a.astype(np.float32).astype(np.float64)
        for c in range(2):
            want = fit_levels(post[:, c], 2, "kmeans", lo=0.0, hi=float(a[:, c].max()),
                              tol=0.5)
            np.testing.assert_array_equal(got.levels[c], want.levels)
        assert not np.array_equal(got.levels, plain.levels)


    @pytest.mark.parametrize("stat, extra", [("mean_std", {"n_sigma": 1.0}),
                                             ("percentile", {"percentile": 60.0})])
    def test_a_layer_unit_pools_the_values_of_all_its_columns(self, stat, extra):
        """activation.py ``vals = unit.ravel()`` (mutant: ``unit[:, 0]``, the unit's first
        column only): at ``layer`` granularity one a_max is set from the post-activation
        values of every conversion, here [0, 1, 3] and [2, 4, 8]."""
        layer = _fused_layer(2, calibration_stat=stat, calibration_granularity="layer", **extra)
        a = np.array([[0.0, 2.0], [1.0, 4.0], [3.0, 8.0]])
        lv = fit_activation_levels(layer, _stats(a), FusedActivation(np.ones(2), np.zeros(2)))
        vals = a.ravel()
        want = vals.mean() + vals.std() if stat == "mean_std" else np.percentile(vals, 60.0)
        np.testing.assert_allclose(lv.a_max, [want, want], rtol=1e-12)


class TestNonPositiveKappaRefused:
    @pytest.mark.parametrize("kappa", [-1.0, 0.0, math.nan, math.inf])
    def test_a_non_positive_kappa_is_refused_naming_kappa(self, kappa):
        """activation.py ``FusedActivation`` (reached by ``engine.calibrate``, which checked
        only kappa's shape): ``kappa`` is documented "> 0", and ``cimsim.deploy`` never fuses
        a conversion of a non-positive output scale. Given kappa = -1 for a column whose
        analog values are all negative (so ``max(-v, 0)`` is positive: 3, 6, ...) the
        calibration set a_max from ``stats.hi * kappa`` (the smallest post-activation value),
        and its thresholds ``(T - bias)/kappa`` were no longer increasing: every output came
        out 0; kappa = 0 divided by zero (NaN thresholds). A real bug found by this round,
        fixed: the activation refuses it, naming kappa."""
        with pytest.raises(ConfigError, match=r"^FusedActivation\.kappa = .* is invalid; "
                                              r"allowed: finite numbers > 0"):
            FusedActivation(np.array([kappa, 1.0]), np.zeros(2))

    @pytest.mark.parametrize("bias, clamp, field", [
        (np.zeros(3), math.inf, "bias"), (np.array([0.0, math.nan]), math.inf, "bias"),
        (np.zeros(2), 0.0, "clamp"), (np.zeros(2), math.nan, "clamp"),
        (np.zeros(2), True, "clamp")])
    def test_a_bias_or_clamp_that_cannot_be_is_refused_by_name(self, bias, clamp, field):
        with pytest.raises(ConfigError, match=rf"^FusedActivation\.{field} = .* is invalid"):
            FusedActivation(np.ones(2), bias, clamp)

    def test_the_activation_deploy_fuses_is_taken(self):
        chip = bskmq_chip(weight_bits=4, bits=2, granularity="column")
        chip = chip.replace(adc=chip.adc.replace(kind="sar"))
        w = np.array([[-1, -2, -3], [1, 2, 1]])
        x = np.random.default_rng(0).integers(0, 8, (20, 3))
        act = FusedActivation(np.array([0.5, 1]), np.array([0, -1.5]), 6)
        assert engine.calibrate(program(w, chip), x, activation=act).adc is not None


# ---------------------------------------------------------------------------------------------
# arrays/cache.py
# ---------------------------------------------------------------------------------------------
class TestProgrammingCache:
    @pytest.fixture(autouse=True)
    def _fresh_cache(self):
        budget = cache.cache_info().max_bytes  # given back as it was (env or default)
        cache.clear()
        yield
        cache.set_max_bytes(budget)
        cache.clear()

    @staticmethod
    def _prog(w, chip=None, seed=3, parts=None):
        parts = parts or [(0, np.shape(w)[1], None)]
        return cache.program_seeded(w, chip or ideal_chip(n_rows=8), seed, input_signed=False,
                                    parts=parts, names=[f"p{i}" for i in range(len(parts))])

    def test_a_disabled_cache_counts_neither_hits_nor_misses(self):
        """cache.py ``program_seeded``: ``if _CACHE.max_bytes > 0 else None`` dropped looked
        the key up in a disabled cache: every deploy counted a miss there."""
        cache.set_max_bytes(0)
        w = np.ones((2, 5), dtype=np.int64)
        a, b = self._prog(w)[0], self._prog(w)[0]
        info = cache.cache_info()
        assert (info.hits, info.misses, info.entries, info.nbytes) == (0, 0, 0, 0)
        assert a.digits_phys is not b.digits_phys

    def test_fortran_ordered_weights_hit_the_c_ordered_entry(self):
        """cache.py ``_digest``: ``np.ascontiguousarray`` dropped failed on a Fortran-ordered
        matrix (numpy refuses a byte view whose last axis is not contiguous); its digest is
        that of the same matrix in C order, so it reuses those cells."""
        w = np.random.default_rng(0).integers(-127, 128, (3, 10))
        first = self._prog(w)[0]
        again = self._prog(np.asfortranarray(w))[0]
        assert again.digits_phys is first.digits_phys
        assert (cache.cache_info().hits, cache.cache_info().misses) == (1, 1)

    def test_weights_are_checked_and_keyed_as_int64(self):
        """cache.py ``w = _check_weights(w_int, chip)`` (mutant: ``np.asarray(w_int)``):
        weights out of range (or float) were drawn into cells unchecked, and an int32 copy
        of cached int64 weights missed the cache (another digest)."""
        chip = ideal_chip(n_rows=8)
        with pytest.raises(ValueError, match="must lie in"):
            self._prog(np.full((2, 5), 1000, dtype=np.int64), chip)
        with pytest.raises(ValueError, match="integer dtype"):
            self._prog(np.ones((2, 5)), chip)
        assert cache.cache_info().entries == 0
        w = np.arange(10, dtype=np.int64).reshape(2, 5) - 4
        first = self._prog(w, chip)[0]
        assert self._prog(w.astype(np.int32), chip)[0].digits_phys is first.digits_phys

    def test_bad_row_tiles_are_refused_before_anything_is_drawn(self):
        """cache.py ``_check_row_tiles(...)  # before the expensive draws`` dropped: the
        cells were drawn (and cached, a miss counted) before ``assemble`` refused the tiles."""
        from cimsim.errors import MappingError

        w = np.ones((2, 10), dtype=np.int64)
        with pytest.raises(MappingError, match="row_tiles"):
            self._prog(w, parts=[(0, 10, [(0, 4), (5, 10)])])
        info = cache.cache_info()
        assert (info.misses, info.entries) == (0, 0)

    def test_the_row_tiles_given_are_the_layers(self):
        """cache.py ``... if rt is None else list(rt)`` (mutant: always the default tiles):
        a part's own row tiles were replaced by consecutive ``n_rows`` tiles."""
        w = np.ones((2, 10), dtype=np.int64)
        (layer,) = self._prog(w, parts=[(0, 10, [(0, 3), (3, 10)])])
        assert [tuple(t) for t in layer.row_tiles] == [(0, 3), (3, 10)]
        np.testing.assert_array_equal(layer.groups[:, 2], [0, 1])

    def test_a_key_put_twice_is_held_and_counted_once(self):
        """cache.py ``_LRU.put``: ``or key in self.entries`` dropped (two threads that both
        missed put the same key) counted its bytes twice: the budget then evicted entries
        that fit."""
        from types import SimpleNamespace

        lru = cache._LRU(100)
        cells = [SimpleNamespace(nbytes=30)]
        lru.put("a", cells)
        lru.put("a", cells)
        assert (len(lru.entries), lru.nbytes) == (1, 30)

    @pytest.mark.parametrize("raw", ["abc", "", "1MB"])
    def test_a_budget_that_is_no_number_is_refused(self, monkeypatch, raw):
        """cache.py ``_budget_from_env``: ``except ValueError: mb = -1.0`` as ``mb = 0.0``
        silently disabled the cache for a typo in ``CIMSIM_PROGRAM_CACHE_MB``."""
        monkeypatch.setenv("CIMSIM_PROGRAM_CACHE_MB", raw)
        with pytest.raises(ConfigError, match="CIMSIM_PROGRAM_CACHE_MB = .* is invalid"):
            cache._budget_from_env()

    @pytest.mark.parametrize("bad", [True, False, 2.0, "8"])
    def test_a_budget_that_is_no_integer_is_refused(self, bad):
        """cache.py ``set_max_bytes``: ``isinstance(max_bytes, bool) or`` dropped took True
        as a budget of 1 byte (False: the cache disabled)."""
        before = cache.cache_info().max_bytes
        with pytest.raises(ConfigError, match="max_bytes = .* allowed: an integer >= 0"):
            cache.set_max_bytes(bad)
        assert cache.cache_info().max_bytes == before

    def test_an_entry_of_several_parts_counts_the_bytes_of_all(self):
        """cache.py ``_LRU.put``: ``size = sum(c.nbytes for c in cells)`` (mutant: the first
        part's bytes only): an entry of two parts held twice the bytes the budget saw."""
        w = np.random.default_rng(1).integers(-127, 128, (2, 16))
        layers = self._prog(w, parts=[(0, 8, None), (8, 16, None)])
        want = sum(x.digits_phys.nbytes + (0 if x.g_phys is None else x.g_phys.nbytes)
                   for x in layers)
        assert cache.cache_info().nbytes == want
        assert layers[0].digits_phys.nbytes < want

    def test_each_part_of_an_aging_device_draws_its_own_future(self):
        """cache.py ``with_aging(..., aging)`` with one generator for all parts (mutant: a
        fresh ``default_rng(seed)`` per part, so every part took child 0): the second part's
        future is child 1, as programming the parts in order from one generator draws it."""
        import cimsim

        chip = cimsim.load_chip("pcm-22nm")
        w = np.random.default_rng(0).integers(-127, 128, (3, 20))
        parts = [(0, 10, None), (10, 20, None)]
        gen = np.random.default_rng(7)
        want = [program(w[:, a:b], chip, gen) for a, b, _ in parts]
        for _ in range(2):  # drawn, then from the cache
            got = self._prog(w, chip, seed=7, parts=parts)
            for g, x in zip(got, want, strict=True):
                np.testing.assert_array_equal(g.aging.nu, x.aging.nu)

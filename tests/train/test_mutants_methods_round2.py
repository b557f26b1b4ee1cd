"""Tests from a second mutation round over the papers' training methods on the twin:
``cimsim/train/raoq.py`` (W-reshape's kurtosis penalty, BitAug, the A-shift report),
``bskmq.py`` (the NL-ADC activation, its level refits, the chip fine-tuning), ``pimqat.py``
(the decompositions' chips, the rescaling scalars) and ``columnquant.py`` (the weight-scale
grid, the layer-wide ADC step, LsqPsum's freeze).

The first round (``test_mutants_raoq_bskmq.py``, ``test_mutants_pimqat_columnquant.py``) pinned
the main formulas; each test here kills a mutant that those files and the modules' own tests
let live: the refusals of NaN and of names that are no option, the degenerate cases (a constant
tensor, a constant ReLU output, no variance left after the ADC), the restored training mode of
a failed run, and the wiring of arguments (seeds, keyword inputs, fitter names, stack levels).
Every test's docstring names the line and the change it kills. Toy models, tiny data, seeded.

Two real bugs this round found are fixed, their tests here: ``bitaug_loss`` cut a float or
bool precision to an int, and ``adc_moments`` lost its digits far from zero.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import ConfigError
from cimsim.train import prepare
from cimsim.train.pimqat import adc_moments
from cimsim.train.raoq import bitaug_loss, kurtosis, kurtosis_penalty, warn_unshifted
from tests.conftest import bskmq_chip

pytestmark = pytest.mark.usefixtures("own_torch_generator")


def _x(seed: int, m: int = 32, k: int = 12) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(m, k)))


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 3)).double().eval()


def _fused_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3)).double()


def _bits_loss(prep):
    """A loss whose value names the precision it ran at: 1 + bits (1 at the chip's)."""
    twin = next(prep.twins())[1]

    def loss_fn(_x):
        return torch.tensor(1.0 + (twin.adc_bits_override or 0), dtype=torch.float64)

    return loss_fn


# =============================================================================================
# raoq.py
# =============================================================================================
class TestKurtosis:
    def test_a_constant_tensor_is_zero_with_a_finite_gradient(self):
        """raoq.py ``kurtosis``: ``var.clamp_min(1e-12)`` dropped: a constant tensor (σ = 0)
        gave 0/0 = NaN, its gradient NaN ("0-gradient-safe for a constant tensor")."""
        w = torch.full((5,), 3.0, dtype=torch.float64, requires_grad=True)
        k = kurtosis(w)
        assert k.item() == 0.0
        k.backward()
        assert torch.isfinite(w.grad).all()


class TestKurtosisPenaltyChecks:
    def test_a_nan_target_is_refused(self):
        """raoq.py ``kurtosis_penalty``: ``not target > 1.0`` made ``target <= 1.0``, which lets
        NaN through (a NaN penalty on every step)."""
        prep = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
        with pytest.raises(ConfigError, match="W-reshape target = nan"):
            kurtosis_penalty(prep, target=math.nan)

    def test_a_nan_weight_is_refused(self):
        """raoq.py ``kurtosis_penalty``: ``not weight >= 0.0`` made ``weight < 0.0``, which lets
        NaN through."""
        prep = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
        with pytest.raises(ConfigError, match="W-reshape weight = nan"):
            kurtosis_penalty(prep, weight=math.nan)


class TestWarnUnshifted:
    def test_one_matrix_left_as_it_was_is_reported(self):
        """raoq.py ``warn_unshifted``: ``if names:`` made ``if len(names) > 1:``: a model with
        one matrix, unshifted (no ``dac.shift_unsigned_inputs``), was silent."""
        torch.manual_seed(0)
        prep = prepare(nn.Sequential(nn.Linear(4, 4)).double().eval(),
                       cimsim.load_chip("ideal"), _x(0, 16, 4))
        with pytest.warns(UserWarning, match=r"changes nothing on this model.*\(0\)"):
            warn_unshifted(prep)


class TestRaoqOnSequencesAndAdapters:
    def test_a_sequence_of_twins_is_named_by_the_twins(self):
        """raoq.py ``_twins``: a sequence of twins is named ``t.name`` (mutant: by its index
        in the sequence, so ``unshifted([the '2' twin])`` said ``'0'``)."""
        from cimsim.train.raoq import unshifted

        prep = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
        assert unshifted([dict(prep.twins())["2"]]) == ["2"]

    def test_the_penalty_reaches_the_lora_adapters(self):
        """raoq.py ``quantized_weight_ste``: the codes of ``effective_weight()`` (the LoRA
        delta included; mutant: of ``twin.weight``, which ``add_lora`` froze: the penalty had
        no path to the adapters that ADC-LoRA trains)."""
        from cimsim.train.lora import add_lora

        prep = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
        add_lora(prep, 2, seed=0)
        with torch.no_grad():
            for _, t in prep.twins():
                t.lora.B.fill_(0.05)
        kurtosis_penalty(prep, weight=1.0).backward()
        for _, t in prep.twins():
            assert t.lora.B.grad is not None and t.lora.B.grad.abs().sum() > 0


class TestBitAugPrecisions:
    """``bitaug_loss(..., bits=[7.5])`` ran the extra term at ``int(7.5) = 7`` bits, and
    ``bits=[True]`` at 1 bit, without a word: ``adc_bits`` (and every other bit count of the
    package, ``check_int``) refuses a float or a bool, but ``bitaug_loss`` cut it to an int
    before passing it on (a real bug this round found, fixed: every precision of the set is
    checked before any loss runs, and a set that is no sequence is named)."""

    @pytest.mark.parametrize("bad", [7.5, True, 0, 25])
    def test_a_float_bool_or_out_of_range_precision_is_refused(self, bad):
        prep = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
        calls = []

        def loss(*batch):
            calls.append(batch)
            return _bits_loss(prep)(*batch)

        with pytest.raises(ConfigError, match=r"BitAug adc bits = .* allowed: an integer in "
                                              r"\[1, 24\]"):
            bitaug_loss(prep, loss, (None,), [6, bad])
        assert calls == []  # refused before the plain loss ran

    @pytest.mark.parametrize("bad", [6, "6"])
    def test_a_set_that_is_no_sequence_is_named(self, bad):
        prep = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
        with pytest.raises(ConfigError, match=r"BitAug bits = .* allowed: a sequence"):
            bitaug_loss(prep, _bits_loss(prep), (None,), bad)


# =============================================================================================
# bskmq.py: the float-weight NL-ADC activation
# =============================================================================================
def _relu_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).double()


class TestNLActivation:
    def test_its_buffers_are_sized_for_its_bits(self):
        """bskmq.py ``NLActivation.__init__``: the buffers ``2**bits − 1`` thresholds and
        ``2**bits`` levels (mutants: one more threshold / one level fewer): a fitted
        activation's state loads into a fresh one of the same bits."""
        from cimsim.train.bskmq import NLActivation

        act = NLActivation(3, "uniform")
        assert tuple(act.thresholds.shape) == (7,) and tuple(act.levels.shape) == (8,)
        fitted = NLActivation(3, "uniform")
        fitted.fit(np.linspace(0.0, 2.0, 50))
        act.load_state_dict(fitted.state_dict())
        torch.testing.assert_close(act.levels, fitted.levels, rtol=0, atol=0)

    def test_an_unknown_fitter_is_a_config_error(self):
        """bskmq.py ``NLActivation.__init__``: ``except ValueError`` made ``except TypeError``:
        an unknown fitter name escaped as the enum's bare ValueError."""
        from cimsim.train.bskmq import NLActivation

        with pytest.raises(ConfigError, match=r"level fit = 'nope' is invalid; allowed: \["):
            NLActivation(2, "nope")

    def test_the_subsample_keeps_the_last_value(self, monkeypatch):
        """bskmq.py ``NLActivation.fit``: the evenly spaced subsample runs from index 0 to
        ``x.size − 1`` (mutant: ``x.size − 2`` drops the last value, here the maximum)."""
        from cimsim.train import bskmq

        monkeypatch.setattr(bskmq, "MAX_FIT_SAMPLES", 10)
        x = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 4.0])
        act = bskmq.NLActivation(2, "uniform")
        act.fit(x)
        assert act.a_max == 4.0


    def test_the_levels_start_at_zero_whatever_the_smallest_sample(self):
        """bskmq.py ``NLActivation.fit``: ``fit_levels(..., lo=0.0, hi=a_max)`` (mutant: lo =
        the smallest sample): the activation is a ReLU, its range [0, a_max]. Samples 1..4,
        2-bit uniform: levels 0, 4/3, 8/3, 4."""
        from cimsim.train.bskmq import NLActivation

        act = NLActivation(2, "uniform")
        act.fit(np.array([1.0, 2.0, 3.0, 4.0]))
        torch.testing.assert_close(act.levels, torch.tensor([0.0, 4 / 3, 8 / 3, 4.0]))

    def test_as_levels_hands_back_thresholds_and_levels_in_order(self):
        """bskmq.py ``NLActivation.as_levels``: ``Levels(thresholds, levels)`` (mutant:
        swapped)."""
        from cimsim.train.bskmq import NLActivation

        act = NLActivation(2, "uniform")
        act.fit(np.linspace(0.0, 3.0, 31))
        lv = act.as_levels()
        np.testing.assert_array_equal(lv.thresholds, act.thresholds.double().numpy())
        np.testing.assert_array_equal(lv.levels, act.levels.double().numpy())
        assert lv.levels.shape == (4,) and lv.thresholds.shape == (3,)


    def test_the_fitter_parameters_are_copied(self):
        """bskmq.py ``NLActivation.__init__``: ``dict(params or {})`` (mutant: the caller's
        dict itself, so clearing it afterwards turned BS-KMQ's boundary suppression back on):
        ``min_mass = 1`` is exact K-means."""
        from cimsim.train.bskmq import NLActivation

        x = np.maximum(np.random.default_rng(0).normal(size=400), 0.0)  # post-ReLU
        params = {"min_mass": 1.0}
        act = NLActivation(2, "bs_kmq", params)
        params.clear()
        act.fit(x)
        exact, suppressed = NLActivation(2, "kmeans_optimal"), NLActivation(2, "bs_kmq")
        exact.fit(x)
        suppressed.fit(x)
        torch.testing.assert_close(act.levels, exact.levels)
        assert not torch.allclose(suppressed.levels, exact.levels)


class TestFinetuneFloat:
    def test_a_model_without_nl_activations_is_refused(self):
        """bskmq.py ``finetune``: the refusal of a model with no :class:`NLActivation` dropped:
        plain float training ran and called itself BS-KMQ fine-tuning."""
        from cimsim.train.bskmq import finetune

        x = _x(1, 16, 4)
        with pytest.raises(ConfigError, match="no NLActivation"):
            finetune(_relu_net(), (x, (x[:, 0] > 0).long()), epochs=1)

    def test_a_failed_run_leaves_the_model_in_eval(self):
        """bskmq.py ``_run``: ``model.eval()`` in ``finally`` (mutant: only after a run that
        ends): a loss that raises left the model training."""
        from cimsim.train.bskmq import attach_nl_activations, finetune

        x = _x(1, 16, 4)
        nl = attach_nl_activations(_relu_net(), 2, "uniform", x).train()

        def boom(_xb, _yb):
            raise RuntimeError("diverged")

        with pytest.raises(RuntimeError, match="diverged"):
            finetune(nl, (x, (x[:, 0] > 0).long()), epochs=1, loss_fn=boom)
        assert not nl.training and not any(m.training for m in nl.modules())


    def test_the_learning_rate_is_the_one_given(self):
        """bskmq.py ``finetune``: ``Adam(..., lr=lr)`` (mutant: ``lr=1e-3``): at a rate of
        1e-12 one epoch leaves the weights where they were (to 1e-9)."""
        from cimsim.train.bskmq import attach_nl_activations, finetune

        x = _x(1, 16, 4)
        nl = attach_nl_activations(_relu_net(), 2, "uniform", x)
        w0 = nl[0].weight.detach().clone()
        finetune(nl, (x, (x[:, 0] > 0).long()), epochs=1, lr=1e-12, batch_size=8)
        torch.testing.assert_close(nl[0].weight.detach(), w0, rtol=0, atol=1e-9)

    def test_an_unknown_schedule_is_refused(self):
        """bskmq.py ``finetune``: ``schedule=schedule`` reaches ``_run`` (mutant:
        ``"constant"``, an unknown schedule ran at a constant rate)."""
        from cimsim.train.bskmq import attach_nl_activations, finetune

        x = _x(1, 16, 4)
        nl = attach_nl_activations(_relu_net(), 2, "uniform", x)
        with pytest.raises(ConfigError, match="schedule"):
            finetune(nl, (x, (x[:, 0] > 0).long()), epochs=1, schedule="linear")

    def test_batches_follow_the_seed_the_epoch_and_the_batch_size(self):
        """bskmq.py ``_run``: ``train_epoch(..., batch_size=batch_size, seed=seed, epoch=e)``
        (mutants: ``batch_size=64``, ``seed=0``, ``epoch=0``): 16 inputs in batches of 4,
        each epoch another order, another seed other orders."""
        from cimsim.train.bskmq import attach_nl_activations, finetune

        x = _x(1, 16, 4)
        x[:, 3] = torch.arange(16, dtype=torch.float64)  # names each input
        y = (x[:, 0] > 0).long()
        nl = attach_nl_activations(_relu_net(), 2, "uniform", x)

        def orders(seed):
            seen: list[list[int]] = []

            def loss_fn(xb, yb):
                seen.append([int(v) for v in xb[:, 3]])
                return nn.functional.cross_entropy(nl(xb), yb)

            finetune(nl, (x, y), epochs=2, lr=1e-12, batch_size=4, seed=seed, loss_fn=loss_fn)
            return [sum(seen[:4], []), sum(seen[4:], [])], [len(b) for b in seen]

        (e0, e1), sizes = orders(0)
        assert sizes == [4] * 8
        assert sorted(e0) == sorted(e1) == list(range(16)) and e0 != e1
        assert orders(0)[0] == [e0, e1] and orders(1)[0] != [e0, e1]

    @pytest.mark.parametrize("kwargs, name", [({"lr": math.nan}, "lr"), ({"epochs": 0}, "epochs"),
                                              ({"epochs": 1.5}, "epochs")])
    def test_the_rate_and_the_epochs_are_checked(self, kwargs, name):
        """bskmq.py ``_check_run``: ``check_lr`` and ``check_positive_int("epochs", ...)``
        (mutants: dropped / ``int(epochs)``): a NaN rate was Adam's bare ValueError, 0 epochs
        trained nothing without a word, 1.5 epochs ran one."""
        from cimsim.train.bskmq import attach_nl_activations, finetune

        x = _x(1, 16, 4)
        nl = attach_nl_activations(_relu_net(), 2, "uniform", x)
        with pytest.raises(ConfigError, match=name):
            finetune(nl, (x, (x[:, 0] > 0).long()), **kwargs)


# =============================================================================================
# bskmq.py: on the chip
# =============================================================================================
class _KeywordNet(nn.Module):
    """A model called with a keyword input only: ``model(x=...)``."""

    def __init__(self):
        super().__init__()
        self.fc1, self.relu, self.fc2 = nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3)

    def forward(self, *, x):
        return self.fc2(self.relu(self.fc1(x)))


class TestPrepareBskmq:
    def test_the_fitter_warning_points_at_the_caller(self):
        """bskmq.py ``prepare_bskmq``: the warning about a chip fitter other than BS-KMQ has
        ``stacklevel=2`` (mutant: 1, pointing at bskmq.py)."""
        from cimsim.train.bskmq import prepare_bskmq

        with pytest.warns(UserWarning, match="adc.level_fit = 'uniform'") as rec:
            prepare_bskmq(_fused_mlp(), bskmq_chip(level_fit="uniform"), _x(0, 64))
        assert rec[0].filename == __file__

    def test_the_seed_reaches_the_twin(self):
        """bskmq.py ``prepare_bskmq``: ``prepare(..., seed=seed)`` (mutant: ``seed=0``)."""
        from cimsim.train.bskmq import prepare_bskmq

        prep = prepare_bskmq(_fused_mlp(), bskmq_chip(), _x(0, 64), seed=5)
        assert prep.seed == 5

    def test_a_fitter_given_as_the_enum_is_taken_by_value(self):
        """bskmq.py ``prepare_bskmq``: ``getattr(level_fit, "value", ...)`` (mutant: ``"name"``,
        ``'KMEANS'``, which is no fitter of the chip's)."""
        from cimsim.adc.levels import FitMethod
        from cimsim.train.bskmq import fused_twins, prepare_bskmq

        prep = prepare_bskmq(_fused_mlp(), bskmq_chip(), _x(0, 64), level_fit=FitMethod.KMEANS)
        assert fused_twins(prep)["0"].chip.adc.level_fit.value == "kmeans"

    def test_keyword_inputs_reach_the_model_in_the_refit(self):
        """bskmq.py ``_forward_until``: a batch's keyword inputs are passed
        (``model(*x, **x.kwargs)``; mutant: ``model(*x)``, a model called ``model(x=...)``
        got no input)."""
        from cimsim.train.bskmq import prepare_bskmq, refit_chip_levels

        torch.manual_seed(0)
        cal = {"x": _x(0, 64)}
        prep = prepare_bskmq(_KeywordNet().double(), bskmq_chip(), cal)
        out = refit_chip_levels(prep, cal)
        assert list(out) == ["fc1"] and 0 < out["fc1"] < 1


    def test_a_one_shot_calibration_is_read_twice(self):
        """bskmq.py ``prepare_bskmq``: ``replayable(calibration)`` (mutant: the iterable as
        given): with ``params`` the levels are refit on a second pass, which found a generator
        of batches spent ("calibration is empty")."""
        from cimsim.train.bskmq import prepare_bskmq

        x = _x(0, 64)
        prep = prepare_bskmq(_fused_mlp(), bskmq_chip(), (b for b in (x[:32], x[32:])),
                             params={"min_mass": 1.0})
        assert prep.seed == 0


class TestChipFinetuning:
    def test_activation_nmse_of_a_constant_relu_is_zero(self):
        """bskmq.py ``activation_nmse``: ``if var > 0 else 0.0`` (mutant: ``var >= 0``, a
        ZeroDivisionError): every pre-activation negative, the ReLU is constant 0."""
        from cimsim.train.bskmq import activation_nmse, fused_twins, prepare_bskmq

        model = _fused_mlp()
        prep = prepare_bskmq(model, bskmq_chip(), _x(0, 64))
        twin = fused_twins(prep)["0"]
        with torch.no_grad():
            twin.bias.fill_(-50.0)
        assert activation_nmse(twin, np.zeros((4, 12))) == 0.0

    def test_finetune_chip_refuses_a_twin_without_a_fused_adc(self):
        """bskmq.py ``finetune_chip``: the refusal of a twin with no fused layer-output ADC
        dropped: plain QAT ran as BS-KMQ fine-tuning."""
        from cimsim.train.bskmq import finetune_chip

        x = _x(0, 16)
        prep = prepare(_mlp(), cimsim.load_chip("ideal"), x)
        with pytest.raises(ConfigError, match="no fused layer-output ADC"):
            finetune_chip(prep, (x, (x[:, 0] > 0).long()), epochs=1)


    def test_finetune_chip_refits_with_the_fitter_parameters_and_seeds_its_batches(
            self, monkeypatch):
        """bskmq.py ``finetune_chip``: the refit after each epoch gets ``params`` (mutant:
        ``params=None``, BS-KMQ's boundary suppression back on) and ``_run`` the ``seed``
        (mutant: ``seed=0``, every seed the same batch order)."""
        from cimsim.train import bskmq

        calls: list[dict] = []
        real = bskmq.refit_chip_levels

        def spy(prep, cal, **kw):
            calls.append(kw)
            return real(prep, cal, **kw)

        monkeypatch.setattr(bskmq, "refit_chip_levels", spy)
        x = _x(0, 16)
        x[:, 11] = torch.arange(16, dtype=torch.float64)  # names each input
        y = (x[:, 0] > 0).long()
        prep = bskmq.prepare_bskmq(_fused_mlp(), bskmq_chip(), x)

        def order(seed, **kw):
            seen: list[int] = []

            def loss_fn(xb, yb):
                seen.extend(int(v) for v in xb[:, 11])
                return nn.functional.cross_entropy(prep(xb), yb)

            bskmq.finetune_chip(prep, (x, y), epochs=1, lr=1e-12, batch_size=8, seed=seed,
                                loss_fn=loss_fn, **kw)
            return seen

        assert order(0) != order(1)
        order(0, refit=True, calibration=x, params={"min_mass": 1.0})
        assert calls == [{"method": None, "params": {"min_mass": 1.0}}]

    def test_the_refit_samples_its_inputs_with_the_twins_seed(self, monkeypatch):
        """bskmq.py ``refit_chip_levels``: the layer's inputs are sampled by
        ``InputStats(twin.seed)`` (mutant: ``InputStats(0)``): with a reservoir of 16 rows
        (64 calibration rows) the refit levels are those of the twin's sample, not seed 0's."""
        from cimsim.mapping import matrix
        from cimsim.mapping.matrix import InputStats
        from cimsim.train.bskmq import fused_twins, prepare_bskmq, refit_chip_levels

        monkeypatch.setattr(matrix, "MAX_CALIBRATION_ROWS", 16)
        x = _x(0, 64)
        prep = prepare_bskmq(_fused_mlp(), bskmq_chip(), x, seed=3)
        twin = fused_twins(prep)["0"]
        refit_chip_levels(prep, x)
        got = twin.activation_levels().levels.copy()
        want = {}
        assert twin.seed != 0
        for seed in (twin.seed, 0):
            stats = InputStats(seed)
            stats.observe(x.numpy())
            twin.fit_activation(stats.sample)
            want[seed] = twin.activation_levels().levels.copy()
        np.testing.assert_array_equal(got, want[twin.seed])
        assert not np.array_equal(want[twin.seed], want[0])


# =============================================================================================
# pimqat.py
# =============================================================================================
def _moments_over_every_code(mu, var, lo, delta, n):
    """(λ, ρ) of the docstring's ADC summed over all ``n`` codes (no 12-sigma window): bin k
    holds [lo + (k − ½)Δ, lo + (k + ½)Δ), the end codes everything beyond; E[a·1{bin}] by the
    Gaussian's truncated first moment."""
    sd = math.sqrt(var)
    k = np.arange(n, dtype=np.float64)
    v = lo + k * delta
    z = np.concatenate([[-np.inf], (lo + (k[1:] - 0.5) * delta - mu) / sd, [np.inf]])
    cdf = np.array([0.5 * (1.0 + math.erf(t / math.sqrt(2.0))) for t in z])
    pdf = np.array([math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi) if math.isfinite(t)
                    else 0.0 for t in z])
    p = np.diff(cdf)
    e_q, e_q2 = float(np.sum(v * p)), float(np.sum(v * v * p))
    e_aq = float(np.sum(v * (mu * p + sd * (pdf[:-1] - pdf[1:]))))
    return (e_aq - mu * e_q) / var, (e_q2 - e_q * e_q) / var


class TestAdcMomentsRound2:
    def test_the_window_loses_nothing_a_double_holds(self):
        """pimqat.py ``adc_moments``: the codes within 12 sigma only (tails < 1e-32); mutant:
        6 sigma, whose tails (≈ 1e-9) the end codes took at the wrong value. 401 codes of
        0.1 sigma, centred: the sum over every code agrees to 1e-12."""
        n, delta = 401, 0.1
        lo = -(n - 1) / 2 * delta
        lam, rho = adc_moments(0.0, 1.0, lo, delta, n)
        lam_r, rho_r = _moments_over_every_code(0.0, 1.0, lo, delta, n)
        assert lam == pytest.approx(lam_r, abs=1e-12)
        assert rho == pytest.approx(rho_r, abs=1e-12)
        assert rho == pytest.approx(1.0 + delta ** 2 / 12, abs=1e-6)  # Sheppard's correction

    def test_a_variance_ratio_is_never_negative(self):
        """pimqat.py ``adc_moments``: ``max(E[d²] − E[d]², 0)`` (mutant: without it): one code
        holds nearly all the mass, and the difference of two equal moments rounds below 0
        (ρ = −2.2e-16 / var where it is ~1e-14)."""
        _, rho = adc_moments(151.97151245748364, 0.040036772169510064, 0.3103835612690613,
                              1.309948553058658, 116)
        assert rho == 0.0

    def test_one_code_with_almost_all_the_mass_keeps_its_tiny_variance(self):
        """``adc_moments`` far from 0 (μ ≈ 1248, lo = 1000): the neighbouring codes hold
        1.24e-13 and 6.3e-15 of the mass, so Var Q ≈ Δ²·1.3e-13 and ρ ≈ 2.95e-11 (by hand,
        from the normal tail); the raw moments' difference (1.6e6-sized) rounded to −5.9e-8,
        clamped to 0."""
        _, rho = adc_moments(1248.1201511028885, 0.007879895546836789, 1000.0,
                              1.334072202023332, 223)
        d, var = 1.334072202023332, 0.007879895546836789
        assert rho == pytest.approx(d * d * (1.24296140e-13 + 6.32827124e-15) / var, rel=0.05)


class TestAdcMomentsFarFromZero:
    """``adc_moments`` computed ``Cov(a, Q) = E[aQ] − μ·E[Q]`` and ``Var Q = E[Q²] − E[Q]²``
    from raw moments: far from zero (μ and lo ≈ 1e6, σ = 0.1) the two terms are ≈ 1e12 and
    their difference lost every digit. ``adc_moments(1e6 + 0.3, 0.01, 1e6, 1.0, 8)`` gave
    (0.5371, 2.2095) where the same ADC shifted to lo = 0 gives (0.5399, 2.2233); at
    μ = 1e5 + 0.844, σ = 1.5e-3, Δ = 0.0197 the expected slope λ came out −0.885 (a monotone
    quantizer's is >= 0; shifted: +0.00138). Q(a) − lo depends on a − lo only, so both
    moments must be the same after the shift (a real bug this round found, fixed: the
    moments are those of Q − μ)."""

    def test_the_moments_do_not_change_when_the_adc_and_the_value_move_together(self):
        lam, rho = adc_moments(1e6 + 0.3, 1e-2, 1e6, 1.0, 8)
        lam0, rho0 = adc_moments(0.3, 1e-2, 0.0, 1.0, 8)
        assert lam == pytest.approx(lam0, rel=1e-6) and rho == pytest.approx(rho0, rel=1e-6)

    def test_the_expected_slope_is_not_negative(self):
        lam, _ = adc_moments(100000.84399035612, 2.15532090850491e-06, 100000.0,
                              0.019718130224432216, 184)
        assert lam >= 0.0


class TestPimChipRound2:
    def test_a_linear_chip_keeps_the_bases_noise_model(self):
        """pimqat.py ``pim_chip``: ``poly_coeffs=(0, cubic) if cubic else ()`` (mutant: always
        ``(0, cubic)``): a linear chip (cubic 0) had coefficients (0.0, 0.0) the ideal chip
        does not, so its noise settings differed from the base's."""
        from cimsim.train.pimqat import pim_chip

        chip = pim_chip("native", adc_bits=4, rows=16)
        assert chip.noise == cimsim.load_chip("ideal").noise
        assert chip.noise.poly_coeffs == ()


def _named_mlp(first: str) -> nn.Module:
    from collections import OrderedDict

    torch.manual_seed(0)
    return nn.Sequential(OrderedDict([(first, nn.Linear(12, 10)), ("1", nn.ReLU()),
                                      ("2", nn.Linear(10, 3))])).double()


class TestTransferScales:
    def test_a_layer_the_source_lacks_is_skipped_not_the_rest(self):
        """pimqat.py ``transfer_scales``: a twin of ``dst`` that ``src`` lacks is skipped
        (``continue``; mutant: ``break``, which left every later twin at its own scales)."""
        from cimsim.train.pimqat import transfer_scales

        x = _x(0, 16)
        src = prepare(_named_mlp("0"), cimsim.load_chip("ideal"), x)
        dst = prepare(_named_mlp("a"), cimsim.load_chip("ideal"), x)
        with torch.no_grad():
            for _, t in src.twins():
                t.act_scale.mul_(1.37)
                t.weight_scale.mul_(0.61)
        a0 = dict(dst.twins())["a"].act_scale.detach().clone()
        transfer_scales(src, dst)
        s2, d2 = dict(src.twins())["2"], dict(dst.twins())["2"]
        torch.testing.assert_close(d2.act_scale, s2.act_scale, rtol=0, atol=0)
        torch.testing.assert_close(d2.weight_scale, s2.weight_scale, rtol=0, atol=0)
        torch.testing.assert_close(dict(dst.twins())["a"].act_scale, a0, rtol=0, atol=0)

    def test_weight_scales_of_another_shape_are_left(self):
        """pimqat.py ``transfer_scales``: the weight scale is copied only where the shapes
        agree (mutant: always; a per-channel (1, N) scale into a per-tensor (1, 1) one raised);
        the activation scale is still carried over."""
        from cimsim.train.pimqat import transfer_scales

        x, ideal = _x(0, 16), cimsim.load_chip("ideal")
        src = prepare(_mlp(), ideal, x)  # per-channel weight scales
        dst = prepare(_mlp(), ideal.replace(quant=ideal.quant.replace(
            weight_granularity="tensor")), x)
        with torch.no_grad():
            for _, t in src.twins():
                t.act_scale.mul_(1.37)
        before = {n: t.weight_scale.detach().clone() for n, t in dst.twins()}
        transfer_scales(src, dst)
        for (n, s), (_, d) in zip(src.twins(), dst.twins(), strict=True):
            assert tuple(s.weight_scale.shape) != tuple(d.weight_scale.shape)
            torch.testing.assert_close(d.weight_scale, before[n], rtol=0, atol=0)
            torch.testing.assert_close(d.act_scale, s.act_scale, rtol=0, atol=0)


class TestApplyRescalingWarning:
    def test_the_dead_slope_warning_points_at_the_caller(self):
        """pimqat.py ``apply_rescaling``: the warning of a dead slope has ``stacklevel=2``
        (mutant: 1, pointing at pimqat.py)."""
        from cimsim.train.pimqat import apply_rescaling, pim_chip

        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prep = prepare(nn.Sequential(nn.Linear(9, 4)), pim_chip("native", adc_bits=4,
                                                                     rows=128),
                           torch.rand(64, 9))
        with pytest.warns(UserWarning, match="almost no gradient") as rec:
            apply_rescaling(prep)
        assert rec[0].filename == __file__


class TestPimChipNameAndBase:
    def test_the_name_counts_the_rows(self):
        """pimqat.py ``pim_chip``: the name ``pim-{decomposition}-r{rows}-adc{bits}`` (mutant:
        without the rows: two chips of other rows per conversion had one name)."""
        from cimsim.train.pimqat import pim_chip

        assert pim_chip("bit-serial", adc_bits=5, rows=32).name == "pim-bit-serial-r32-adc5"

    def test_the_base_chip_is_kept_where_the_decomposition_does_not_set_it(self):
        """pimqat.py ``pim_chip``: ``base`` (mutant: always the ``ideal`` preset): its read
        noise, which no argument of ``pim_chip`` sets, is the chip's."""
        from cimsim.train.pimqat import pim_chip

        ideal = cimsim.load_chip("ideal")
        base = ideal.replace(noise=ideal.noise.replace(read_noise_rel=0.05))
        chip = pim_chip("native", adc_bits=4, rows=16, thermal_sigma_lsb=0.5, base=base)
        assert chip.noise.read_noise_rel == 0.05 and chip.noise.thermal_sigma_lsb == 0.5


# =============================================================================================
# columnquant.py
# =============================================================================================
def _cq_setup(seed: int = 0):
    from tests.train.test_columnquant import _setup

    return _setup(seed)


class TestColumnQuantChipRound2:
    @pytest.mark.parametrize("bad", ["channel", "bogus"])
    def test_a_psum_scale_that_is_no_granularity_of_the_grid_is_refused(self, bad):
        """columnquant.py ``columnquant_chip``: ``_choice("psum_scale", ...)`` dropped: the
        name went to ``CalibrationGranularity`` unchecked (``channel`` is one of the chip's
        granularities, but not of ColumnQuant's grid)."""
        from cimsim.train.columnquant import columnquant_chip

        with pytest.raises(ConfigError, match=rf"^psum_scale = '{bad}' is invalid; allowed: "
                                              r"layer, array, column"):
            columnquant_chip(psum_bits=3, psum_scale=bad)


class TestFreezePsumRound2:
    def test_a_model_without_a_centre_is_refused(self):
        """columnquant.py ``freeze_psum``: the refusal of a model with no :class:`PsumCentre`
        dropped: the call ran a pass and froze nothing, without a word."""
        from cimsim.train.columnquant import freeze_psum, prepare_columnquant

        net, x, _, chip = _cq_setup()
        prep = prepare_columnquant(net, chip, x[:20])  # centre = 'none'
        with pytest.raises(ConfigError, match="no partial-sum centre"):
            freeze_psum(prep, x[:20])

    def test_a_tie_of_batch_centres_rounds_half_to_even(self):
        """columnquant.py ``freeze_psum``: ``c = round(mean of the batches' centres)``, torch's
        round (half to even, as the per-batch centre's; mutant: ``floor(v + 0.5)``): batch
        centres 0 and 1 average to 0.5 exactly, which rounds to 0."""
        from cimsim.train.columnquant import freeze_psum
        from tests.train.test_mutants_pimqat_columnquant import _single_linear_frozen_setup

        prep, x = _single_linear_frozen_setup()
        (_, twin), = prep.twins()
        hook = twin.adc_hook
        stats, calls = hook.statistics, []

        def fixed(t, a, ratio):
            mu, sd, c = stats(t, a, ratio)
            calls.append(None)
            return mu, sd, torch.full_like(c, float(len(calls) - 1))

        hook.statistics = fixed
        freeze_psum(prep, x, batch_size=20)
        del hook.statistics
        assert len(calls) == 2 and torch.all(hook.centre == 0.0)

    def test_one_per_batch_centre_among_frozen_ones_is_frozen_before_deploy(self):
        """columnquant.py ``deploy_columnquant``: the centres are frozen if ``any`` twin's
        follows every batch (mutant: ``all``: one per-batch twin among frozen ones went to
        ``deploy`` unfrozen, which refuses it)."""
        from cimsim.train.columnquant import deploy_columnquant, prepare_columnquant

        net, x, _, chip = _cq_setup()
        prep = prepare_columnquant(net, chip, x[:20], centre="frozen")
        hooks = [t.adc_hook for _, t in prep.twins()]
        assert len(hooks) == 2
        hooks[1].mode = "batch"
        assert hooks[1].per_batch and not hooks[0].per_batch
        assert deploy_columnquant(prep, x[:20], 0) is not None
        assert not any(h.per_batch for h in hooks)


class TestPrepareColumnQuantRound2:
    def test_the_engine_init_keeps_deploys_adc_ranges(self):
        """columnquant.py ``prepare_columnquant``: the ADCs are calibrated again only for the
        paper init (or ternary codes); ``init="engine"`` keeps deploy's ranges
        (docs/columnquant.md §2), also where the layer-wide weight scale is another than
        deploy's (mutant: calibrated again for every init)."""
        from cimsim.train.columnquant import prepare_columnquant

        net, x, _, chip = _cq_setup()
        plain = dict(prepare(net, chip, x[:20]).twins())
        prep = prepare_columnquant(net, chip, x[:20], weight_scale="layer", init="engine")
        for name, twin in prep.twins():
            torch.testing.assert_close(twin._adc_delta0, plain[name]._adc_delta0, rtol=0,
                                       atol=0)
            torch.testing.assert_close(twin._adc_lo0, plain[name]._adc_lo0, rtol=0, atol=0)
        conv = dict(prep.twins())["conv"]
        assert not torch.equal(conv.weight_scale.detach().expand_as(plain["conv"].weight_scale),
                               plain["conv"].weight_scale.detach())

    def test_the_optimizer_refuses_a_nan_rate(self):
        """columnquant.py ``columnquant_optimizer``: ``check_lr`` dropped: SGD takes a NaN rate
        (it checks ``lr < 0`` only) and every step made the weights NaN."""
        from cimsim.train.columnquant import columnquant_optimizer, prepare_columnquant

        net, x, _, chip = _cq_setup()
        prep = prepare_columnquant(net, chip, x[:20])
        with pytest.raises(ConfigError, match="lr"):
            columnquant_optimizer(prep, lr=math.nan)

    def test_the_optimizer_says_when_only_steps_train(self):
        """columnquant.py ``columnquant_optimizer``: ``warn_if_only_steps_train`` dropped: a
        model frozen before ``prepare`` trained its steps only, silently."""
        from cimsim.train.columnquant import columnquant_optimizer, prepare_columnquant

        net, x, _, chip = _cq_setup()
        net.requires_grad_(False)
        prep = prepare_columnquant(net, chip, x[:20])
        with pytest.warns(UserWarning, match="no weight or bias of the prepared model") as rec:
            columnquant_optimizer(prep)
        assert rec[0].filename == __file__

    @pytest.mark.parametrize("option", ["init", "grad"])
    def test_an_unknown_init_or_grad_is_refused(self, option):
        """columnquant.py ``prepare_columnquant``: ``_choice("init", ...)`` /
        ``_choice("grad", ...)`` dropped: an unknown name ran as ``engine`` / ``lsq``."""
        from cimsim.train.columnquant import prepare_columnquant

        net, x, _, chip = _cq_setup()
        with pytest.raises(ConfigError, match=rf"^{option} = 'mean' is invalid"):
            prepare_columnquant(net, chip, x[:20], **{option: "mean"})

    def test_the_chip_name_counts_the_cell_bits(self):
        """columnquant.py ``columnquant_chip``: the name ``columnquant-w{W}a{A}c{C}-ps{P}``
        (mutant: without ``c{C}``, two chips of other cells had one name)."""
        from cimsim.train.columnquant import columnquant_chip

        assert columnquant_chip(psum_bits=5, bits_per_cell=1).name == "columnquant-w4a4c1-ps5"
        assert columnquant_chip(psum_bits=5).name == "columnquant-w4a4c2-ps5"


    def test_the_ternary_option_recalibrates_whatever_the_init(self):
        """columnquant.py ``prepare_columnquant``: ``if ternary or init == "paper"`` (mutant:
        ``init == "paper"`` only): option 3's codes get their own ADC ranges, and ``init``
        does not apply to it (the docstring), so ``engine`` and ``paper`` give one twin."""
        from cimsim.train.columnquant import prepare_columnquant

        net, x, _, chip = _cq_setup()
        a, b = (dict(prepare_columnquant(net, chip, x[:20], decomposition="ternary",
                                         init=init).twins()) for init in ("engine", "paper"))
        for name in a:
            torch.testing.assert_close(a[name]._adc_delta0, b[name]._adc_delta0, rtol=0,
                                       atol=0)
            torch.testing.assert_close(a[name]._adc_lo0, b[name]._adc_lo0, rtol=0, atol=0)

    def test_a_frozen_centre_is_freeze_psum_on_the_calibration(self):
        """columnquant.py ``prepare_columnquant``: ``centre="frozen"`` is ``freeze_psum`` on
        ``calibration`` at its default batches (mutant: batches of 8, other per-batch
        statistics to average)."""
        from cimsim.train.columnquant import freeze_psum, prepare_columnquant

        net, x, _, chip = _cq_setup()
        frozen = prepare_columnquant(net, chip, x[:20], centre="frozen")
        batch = prepare_columnquant(net, chip, x[:20], centre="batch")
        freeze_psum(batch, x[:20])
        for (_, a), (_, b) in zip(frozen.twins(), batch.twins(), strict=True):
            for f in ("mu", "sd", "centre"):
                torch.testing.assert_close(getattr(a.adc_hook, f), getattr(b.adc_hook, f),
                                           rtol=0, atol=0)

    def test_deploy_columnquant_passes_the_seed(self):
        """columnquant.py ``deploy_columnquant``: ``prepared.deploy(seed, ...)`` (mutant:
        ``deploy(0)``)."""
        from cimsim.train.columnquant import deploy_columnquant, prepare_columnquant

        net, x, _, chip = _cq_setup()
        prep = prepare_columnquant(net, chip, x[:20], centre="frozen")
        assert deploy_columnquant(prep, x[:20], 7).seed == 7


    def test_a_one_shot_calibration_is_read_twice(self):
        """columnquant.py ``prepare_columnquant``: ``replayable(calibration)`` (mutant: the
        iterable as given): the paper init calibrates the ADCs again on a second pass, which
        found a generator of batches spent."""
        from cimsim.train.columnquant import prepare_columnquant

        net, x, _, chip = _cq_setup()
        batches = [(x[:10],), (x[10:20],)]
        once = prepare_columnquant(net, chip, (b for b in batches), init="paper")
        twice = prepare_columnquant(net, chip, batches, init="paper")
        for (_, a), (_, b) in zip(once.twins(), twice.twins(), strict=True):
            torch.testing.assert_close(a._adc_delta0, b._adc_delta0, rtol=0, atol=0)


class TestPsumMseRound2:
    def test_a_layer_whose_partial_sums_never_vary_reads_zero(self):
        """columnquant.py ``psum_mse``: ``v[0] / v[1] if v[1] > 0 else 0.0`` (mutant:
        ``v[1] >= 0``, a ZeroDivisionError): all-zero inputs give every layer the same partial
        sum in every conversion, no variance."""
        from cimsim.train.columnquant import prepare_columnquant, psum_mse

        net, x, _, chip = _cq_setup()
        prep = prepare_columnquant(net, chip, x[:20])
        out = psum_mse(prep, torch.zeros_like(x[:8]))
        assert out["conv"] == 0.0 and all(math.isfinite(v) for v in out.values())


class TestFrozenGridInFloat64:
    def test_a_float32_twin_deploys_the_frozen_grid_start_in_float64(self):
        """columnquant.py ``freeze_psum``: ``twin._mark_float64()`` after writing the grid start
        into ``_init64["lo"]`` (mutant: dropped; the float64 start then followed the float32
        buffer, and deploy got ``(c − 2^(b−1))·Δ`` rounded to float32)."""
        from cimsim.train.columnquant import prepare_columnquant

        net, x, _, chip = _cq_setup()
        prep = prepare_columnquant(net.float(), chip, x[:20].float(), centre="frozen").eval()
        for _, twin in prep.twins():
            h = twin.adc_hook
            want = (h.centre[:, 0, :].double().numpy() - h.half) * twin._init64["delta"]
            gp = twin._group_part.numpy()
            for i, (_, _, layer) in enumerate(twin.to_engine(0).parts):
                np.testing.assert_allclose(layer.adc.lo, want[gp == i], rtol=1e-13, atol=0)

"""Tests written for the survivors of a third, short hand-made mutation round over the papers'
training methods on the twin: ``cimsim/train/raoq.py`` (W-reshape's kurtosis penalty, BitAug's
precision override, the A-shift report) and ``cimsim/train/bskmq.py`` (the float-weight NL-ADC
activation, its refits, the chip fine-tuning).

The first two rounds (``test_mutants_raoq_bskmq.py``, ``test_mutants_methods_round2.py``) pinned
the formulas, the refusals of NaN, the wiring of seeds and fitter names; each test here kills a
mutant those files and the modules' own tests let live, its docstring naming the line and the
change. The round found three real bugs, fixed (the last two classes): the float-weight
path's bare NumPy / ``range()`` errors on an empty calibration set or a batch size below 1 (the
chip path names them), and W-reshape's function API taking an infinite target or weight that
``parse_method`` refuses. Toy models, tiny data, seeded.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import ConfigError
from cimsim.train import prepare
from cimsim.train.raoq import adc_bits, bitaug_loss, kurtosis_penalty
from tests.conftest import bskmq_chip
from tests.train.test_mutants_methods_round2 import _fused_mlp, _mlp, _x
from tests.train.test_mutants_raoq_bskmq import _SeqFirst

pytestmark = pytest.mark.usefixtures("own_torch_generator")


def _relu_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).double()


# =============================================================================================
# raoq.py
# =============================================================================================
class TestBitAugRound3:
    def test_a_failing_loss_inside_the_block_leaves_the_chips_bits(self):
        """raoq.py ``adc_bits``: the overrides put back in ``finally`` (mutant: after a plain
        ``yield``): a loss that raised at the extra precision left every twin converting at
        it, so the next plain forward ran at BitAug's bits."""
        prep = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
        twins = [t for _, t in prep.twins()]
        calls: list[int | None] = []

        def loss_fn(_x):
            calls.append(twins[0].adc_bits_override)
            if len(calls) == 2:
                raise RuntimeError("diverged")
            return torch.tensor(1.0, dtype=torch.float64)

        with pytest.raises(RuntimeError, match="diverged"):
            bitaug_loss(prep, loss_fn, (None,), [7])
        assert calls == [None, 7]
        assert all(t.adc_bits_override is None for t in twins)
        with pytest.raises(RuntimeError, match="inner"), adc_bits(prep, 5):
            raise RuntimeError("inner")
        assert all(t.adc_bits_override is None for t in twins)

    def test_a_bytes_object_is_no_set_of_precisions(self):
        """raoq.py ``bitaug_loss``: ``isinstance(bits, (str, bytes))`` (mutant: ``str`` only):
        ``b"\\x07"`` iterates as the int 7 and ran BitAug at 7 bits; it is refused as text is."""
        prep = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))

        def loss_fn(_x):
            return torch.tensor(1.0, dtype=torch.float64)

        with pytest.raises(ConfigError, match=r"BitAug bits = b.* allowed: a sequence"):
            bitaug_loss(prep, loss_fn, (None,), b"\x07")


# =============================================================================================
# bskmq.py: the float-weight NL-ADC activation
# =============================================================================================
class TestNLActivationRound3:
    @pytest.mark.parametrize("bits", [0, 1.5, True])
    def test_a_bit_count_that_is_no_positive_int_is_refused_by_name(self, bits):
        """bskmq.py ``NLActivation.__init__``: ``check_positive_int("bits", bits)`` (mutant:
        ``bits`` as given): 0 bits built an activation of one level and no threshold, 1.5 a
        bare TypeError from ``torch.zeros``."""
        from cimsim.train.bskmq import NLActivation

        with pytest.raises(ConfigError, match=r"bits = .* is invalid"):
            NLActivation(bits, "uniform")

    def test_a_max_is_the_largest_sample_below_one(self):
        """bskmq.py ``NLActivation.fit``: ``a_max = max(x.max(), 1e-12)`` (mutant: a floor of
        1.0): samples up to 0.5 clamp at 0.5, 2-bit uniform levels 0, 1/6, 1/3, 1/2."""
        from cimsim.train.bskmq import NLActivation

        act = NLActivation(2, "uniform")
        act.fit(np.linspace(0.0, 0.5, 11))
        assert act.a_max == 0.5
        torch.testing.assert_close(act.levels, torch.tensor([0.0, 1 / 6, 1 / 3, 0.5]))

    def test_a_dead_relu_fits_a_positive_range(self):
        """bskmq.py ``NLActivation.fit``: the floor ``max(x.max(), 1e-12)`` (mutant: dropped):
        a layer whose ReLU is 0 on every calibration input fitted a range [0, 0] (the fitter's
        refusal of an empty range); with the floor it quantizes everything to 0."""
        from cimsim.train.bskmq import NLActivation

        act = NLActivation(2, "uniform")
        act.fit(np.zeros(20))
        assert act.a_max == 1e-12
        out = act(torch.tensor([-1.0, 0.0, 3.0]))
        assert torch.all(torch.isfinite(out)) and float(out.abs().max()) <= 1e-12

    @pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
    def test_the_output_keeps_the_inputs_dtype(self, dtype):
        """bskmq.py ``NLActivation.forward``: the float32 buffers cast to ``x.dtype`` (mutant:
        used as they are): a bfloat16 model's activation came out float32. Levels 0..3."""
        from cimsim.train.bskmq import NLActivation

        act = NLActivation(2, "uniform")
        act.fit(np.linspace(0.0, 3.0, 31))
        out = act(torch.tensor([-1.0, 0.4, 1.6, 2.9, 5.0], dtype=dtype))
        assert out.dtype == dtype
        torch.testing.assert_close(out, torch.tensor([0.0, 0.0, 2.0, 3.0, 3.0], dtype=dtype))

    def test_an_unfitted_activation_refuses_to_run(self):
        """bskmq.py ``NLActivation.forward``: the ``not self.fitted`` refusal (mutant:
        dropped): an activation never fitted quantized every input to its zero buffers."""
        from cimsim.train.bskmq import NLActivation

        with pytest.raises(ConfigError, match="before its levels were fitted"):
            NLActivation(2, "uniform")(torch.ones(3))



class TestFinetuneRunRound3:
    def test_the_cosine_rate_anneals_to_zero_over_every_step_of_the_run(self, monkeypatch):
        """bskmq.py ``_run``: ``lr_schedule(opt, schedule, epochs=epochs, n=len(x), ...)`` and
        ``train_epoch(..., scheduler=scheduler)`` (mutants: ``epochs=1``, ``n`` from the labels
        doubled, ``scheduler=None``): 16 inputs in batches of 4 for 2 epochs are K = 8 steps,
        and the cosine rate is 0 after the last."""
        from cimsim.train import bskmq

        made = []
        real = bskmq.lr_schedule

        def spy(*args, **kwargs):
            made.append(real(*args, **kwargs))
            return made[-1]

        monkeypatch.setattr(bskmq, "lr_schedule", spy)
        x = _x(1, 16, 4)
        nl = bskmq.attach_nl_activations(_relu_net(), 2, "uniform", x)
        bskmq.finetune(nl, (x, (x[:, 0] > 0).long()), epochs=2, lr=1e-2, batch_size=4,
                       schedule="cosine")
        (sched,) = made
        assert sched.last_epoch == 8
        assert sched.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-15)

    def test_the_progress_flag_reaches_the_epochs(self):
        """bskmq.py ``_run``: ``train_epoch(..., progress=progress)`` (mutant: ``False``): the
        flag is checked there, so ``progress="yes"`` (no bool) is refused by name."""
        from cimsim.train.bskmq import attach_nl_activations, finetune

        x = _x(1, 16, 4)
        nl = attach_nl_activations(_relu_net(), 2, "uniform", x)
        with pytest.raises(ConfigError, match="progress"):
            finetune(nl, (x, (x[:, 0] > 0).long()), epochs=1, progress="yes")


class _TwoInputs(nn.Module):
    """``model(a, b)``: two positional inputs summed before the ReLU."""

    def __init__(self):
        super().__init__()
        self.fc, self.relu = nn.Linear(4, 6), nn.ReLU()

    def forward(self, a, b):
        return self.relu(self.fc(a + b))


class _CountingLinear(nn.Linear):
    """An ``nn.Linear`` that notes each batch's size (in a class attribute: copies share it)."""

    sizes: list[int] = []  # noqa: RUF012

    def forward(self, x):
        _CountingLinear.sizes.append(int(x.shape[0]))
        return super().forward(x)


class TestRefitLevelsRound3:
    def test_a_failed_pass_leaves_no_stopping_hook(self):
        """bskmq.py ``_forward_until``: the stopping hook removed in ``finally`` (mutant: only
        after a pass that ran or stopped): calibration inputs of the wrong width failed the
        pass, and the hook left on the activation then stopped every later forward."""
        from cimsim.train.bskmq import attach_nl_activations, refit_levels

        x = _x(1, 16, 4)
        nl = attach_nl_activations(_relu_net(), 2, "uniform", x)
        with torch.no_grad():
            want = nl(x)
        with pytest.raises(RuntimeError):
            refit_levels(nl, torch.ones(4, 5, dtype=torch.float64))
        assert not nl[1].recording
        with torch.no_grad():
            torch.testing.assert_close(nl(x), want, rtol=0, atol=0)

    def test_a_tuple_of_inputs_is_passed_as_positional_inputs(self):
        """bskmq.py ``_forward_until``: a tuple is ``model(*x)`` ("an input or a tuple of
        them"; mutant: ``model(x)``, the tuple as the one input)."""
        from cimsim.train.bskmq import _forward_until

        torch.manual_seed(0)
        model = _TwoInputs().double()
        seen: list[torch.Tensor] = []
        model.fc.register_forward_hook(lambda _m, _i, o: seen.append(o))
        a, b = _x(1, 3, 4), _x(2, 3, 4)
        _forward_until(model, (a, b), model.relu)
        assert len(seen) == 1
        torch.testing.assert_close(seen[0], model.fc(a + b))

    def test_attach_fits_in_batches_of_the_size_given(self):
        """bskmq.py ``attach_nl_activations``: ``refit_levels(..., batch_size=batch_size)``
        (mutant: the default 256): "inputs per forward pass of the fitting"; 16 calibration
        inputs in batches of 5 are four passes of 5, 5, 5 and 1."""
        from cimsim.train.bskmq import attach_nl_activations

        _CountingLinear.sizes = []
        torch.manual_seed(0)
        model = nn.Sequential(_CountingLinear(4, 6), nn.ReLU(), nn.Linear(6, 2)).double()
        attach_nl_activations(model, 2, "uniform", _x(1, 16, 4), batch_size=5)
        assert _CountingLinear.sizes == [5, 5, 5, 1]

    def test_only_plain_relus_become_nl_activations(self):
        """bskmq.py ``attach_nl_activations``: ``isinstance(child, nn.ReLU)`` (mutant: ReLU6
        too): the NL-ADC's range is [0, a_max], not ReLU6's clip at 6; a ReLU6 is left."""
        from cimsim.train.bskmq import NLActivation, attach_nl_activations

        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU6(),
                              nn.Linear(6, 2)).double()
        nl = attach_nl_activations(model, 2, "uniform", _x(1, 16, 4))
        assert isinstance(nl[1], NLActivation) and type(nl[3]) is nn.ReLU6


# =============================================================================================
# bskmq.py: on the chip
# =============================================================================================
class _Count(nn.Module):
    """The identity, noting each batch's size (in a class attribute: copies share it)."""

    sizes: list[int] = []  # noqa: RUF012

    def forward(self, x):
        _Count.sizes.append(int(x.shape[0]))
        return x


class TestChipPathRound3:
    @pytest.mark.parametrize("params", [None, {"min_mass": 1.0}])
    def test_calibration_passes_run_in_batches_of_the_size_given(self, params):
        """bskmq.py ``prepare_bskmq``: ``prepare(..., batch_size=batch_size)`` and, with
        ``params``, ``refit_chip_levels(..., batch_size=batch_size)`` (mutants: dropped, the
        default 256; and in ``refit_chip_levels``, ``model_batches(..., 256)``): 20
        calibration inputs in batches of 8 are passes of 8, 8 and 4, never one of 20."""
        from cimsim.train.bskmq import prepare_bskmq

        _Count.sizes = []
        torch.manual_seed(0)
        model = nn.Sequential(_Count(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3)).double()
        prepare_bskmq(model, bskmq_chip(), _x(0, 20), batch_size=8, params=params)
        assert _Count.sizes and set(_Count.sizes) == {8, 4}


    def test_the_refit_leaves_no_recording_hook_on_the_twins(self):
        """bskmq.py ``refit_chip_levels``: the input-recording pre-hook removed in ``finally``
        (mutant: left): every later forward of the twin, each training step included, went
        on feeding a reservoir sample no refit would read."""
        from cimsim.train.bskmq import fused_twins, prepare_bskmq, refit_chip_levels

        x = _x(0, 32)
        prep = prepare_bskmq(_fused_mlp(), bskmq_chip(), x)
        twin = fused_twins(prep)["0"]
        before = len(twin._forward_pre_hooks)
        refit_chip_levels(prep, x)
        assert len(twin._forward_pre_hooks) == before


    def test_activation_nmse_of_a_training_twin_is_read_without_noise(self):
        """bskmq.py ``activation_nmse``: ``twin.eval()`` for the reading (mutant: dropped): a
        twin left training on a chip with read noise gave a noisy, varying figure; it is the
        eval-mode one ("noise off"), and the twin is training again after."""
        from cimsim.train.bskmq import activation_nmse, fused_twins, prepare_bskmq

        chip = bskmq_chip()
        chip = chip.replace(noise=chip.noise.replace(read_noise_rel=0.2))
        x = _x(0, 32)
        twin = fused_twins(prepare_bskmq(_fused_mlp(), chip, x))["0"]
        twin.eval()
        want = activation_nmse(twin, x.numpy())
        twin.train()
        torch.manual_seed(1)
        assert activation_nmse(twin, x.numpy()) == want
        assert twin.training


    def test_a_sequence_first_model_trains_on_the_loss_given(self):
        """bskmq.py ``finetune_chip``: a sequence-first model's batches restored to time-major
        for ``loss_fn or cross_entropy_of(prepared)`` (mutant: cross-entropy always): the
        user's loss was dropped without a word. It gets (T, b, F) batches of 8."""
        from cimsim.train.bskmq import finetune_chip, prepare_bskmq

        torch.manual_seed(0)
        x = torch.randn(5, 16, 12, dtype=torch.float64)
        y = (x.mean(dim=0)[:, 0] > 0).long()
        prep = prepare_bskmq(_SeqFirst().double(), bskmq_chip(), x, batch_dim=1)
        shapes: list[tuple[int, ...]] = []

        def loss_fn(xb, yb):
            shapes.append(tuple(xb.shape))
            return nn.functional.cross_entropy(prep(xb), yb)

        finetune_chip(prep, (x, y), epochs=1, batch_size=8, loss_fn=loss_fn)
        assert shapes == [(5, 8, 12), (5, 8, 12)]


    def test_finetune_chip_refuses_an_unknown_schedule(self):
        """bskmq.py ``finetune_chip``: ``schedule=schedule`` reaches ``_run`` (mutant:
        ``"constant"``: an unknown schedule ran at a constant rate without a word)."""
        from cimsim.train.bskmq import finetune_chip, prepare_bskmq

        x = _x(0, 16)
        prep = prepare_bskmq(_fused_mlp(), bskmq_chip(), x)
        with pytest.raises(ConfigError, match="schedule"):
            finetune_chip(prep, (x, (x[:, 0] > 0).long()), epochs=1, schedule="linear")

    def test_the_refusal_names_eight_mapped_layers_then_counts(self):
        """bskmq.py ``_no_fused_reason``: ``names[:8]`` shown (mutant: ``names[:9]``, all nine
        named and then ", ..." as if some were left out)."""
        from cimsim.train.bskmq import prepare_bskmq

        torch.manual_seed(0)
        chain = nn.Sequential(*[nn.Linear(4, 4) for _ in range(9)]).double()
        with pytest.raises(ConfigError, match="no mapped layer") as err:
            prepare_bskmq(chain, bskmq_chip(), _x(0, 16, 4))
        assert str(err.value).endswith("mapped layers: 0, 1, 2, 3, 4, 5, 6, 7, ... (9 in all)")

    def test_an_empty_fitter_name_is_refused_not_ignored(self):
        """bskmq.py ``prepare_bskmq``: ``if level_fit is not None`` (mutant: ``if level_fit``):
        ``level_fit=""`` fell through to the chip's own fitter; it is the config's refusal of
        a fitter name."""
        from cimsim.train.bskmq import prepare_bskmq

        with pytest.raises(ConfigError, match="level_fit"):
            prepare_bskmq(_fused_mlp(), bskmq_chip(level_fit="uniform"), _x(0, 16), level_fit="")

    def test_finetune_chip_trains_at_the_rate_given(self):
        """bskmq.py ``finetune_chip``: ``param_groups(prepared, lr)`` (mutant: ``1e-3``): at a
        rate of 1e-12 one epoch leaves the twin's weights where they were (to 1e-9)."""
        from cimsim.train.bskmq import finetune_chip, fused_twins, prepare_bskmq

        x = _x(0, 16)
        prep = prepare_bskmq(_fused_mlp(), bskmq_chip(), x)
        twin = fused_twins(prep)["0"]
        w0 = twin.weight.detach().clone()
        finetune_chip(prep, (x, (x[:, 0] > 0).long()), epochs=1, lr=1e-12, batch_size=8)
        torch.testing.assert_close(twin.weight.detach(), w0, rtol=0, atol=1e-9)


# =============================================================================================
# Real bugs found in the round, fixed
# =============================================================================================
class TestFloatPathCalibrationChecks:
    """The float-weight path refused a bad calibration set or batch size with NumPy's and
    Python's bare errors, where the chip path (``refit_chip_levels``) names them: an empty
    calibration tensor was ``ValueError: need at least one array to concatenate``
    (``refit_levels``' ``np.concatenate`` of no samples), ``batch_size=0`` was
    ``ValueError: range() arg 3 must not be zero``, and ``batch_size=-1`` ran no batch and
    came back as the concatenate error. ``finetune(refit=True)`` (and ``finetune_chip``) with an
    empty calibration set trained a whole epoch before failing so. Real bugs found by this
    round, fixed: ConfigErrors naming them, before any training."""

    def test_an_empty_calibration_set_is_refused_by_name(self):
        from cimsim.train.bskmq import attach_nl_activations

        x = _x(1, 16, 4)
        with pytest.raises(ConfigError, match="^calibration is empty$"):
            attach_nl_activations(_relu_net(), 2, "uniform", x[:0])

    def test_finetune_refuses_an_empty_calibration_set_before_training(self):
        from cimsim.train.bskmq import attach_nl_activations, finetune

        x = _x(1, 16, 4)
        nl = attach_nl_activations(_relu_net(), 2, "uniform", x)
        w0 = nl[0].weight.detach().clone()
        with pytest.raises(ConfigError, match="^calibration is empty$"):
            finetune(nl, (x, (x[:, 0] > 0).long()), epochs=1, refit=True,
                     calibration=x[:0])
        torch.testing.assert_close(nl[0].weight.detach(), w0, rtol=0, atol=0)

    def test_finetune_chip_refuses_an_empty_calibration_set_before_training(self):
        from cimsim.train.bskmq import finetune_chip, fused_twins, prepare_bskmq

        x = _x(0, 16)
        prep = prepare_bskmq(_fused_mlp(), bskmq_chip(), x)
        w0 = fused_twins(prep)["0"].weight.detach().clone()
        with pytest.raises(ConfigError, match="^calibration is empty$"):
            finetune_chip(prep, (x, (x[:, 0] > 0).long()), epochs=1, refit=True,
                          calibration=x[:0])
        torch.testing.assert_close(fused_twins(prep)["0"].weight.detach(), w0, rtol=0, atol=0)

    @pytest.mark.parametrize("batch_size", [0, -1])
    def test_a_batch_size_below_one_is_refused_by_name(self, batch_size):
        from cimsim.train.bskmq import attach_nl_activations

        x = _x(1, 16, 4)
        with pytest.raises(ConfigError, match=rf"^batch_size = {batch_size} is invalid"):
            attach_nl_activations(_relu_net(), 2, "uniform", x, batch_size=batch_size)


class TestKurtosisPenaltyInfinity:
    """raoq.py ``kurtosis_penalty`` checked ``target > 1`` and ``weight >= 0`` but not that
    they are finite: ``target=inf`` or ``weight=inf`` was taken and the penalty was ``inf`` on
    every step (the training loss with it), without a word, where ``parse_method`` refuses
    both for the command line. A real bug found by this round, fixed."""

    @pytest.mark.parametrize("kwargs, name", [({"target": math.inf}, "target"),
                                              ({"weight": math.inf}, "weight"),
                                              ({"target": math.nan}, "target"),
                                              ({"weight": "1"}, "weight")])
    def test_an_infinite_target_or_weight_is_refused(self, kwargs, name):
        prep = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
        value = repr(next(iter(kwargs.values())))
        with pytest.raises(ConfigError, match=f"^W-reshape {name} = {value} is invalid"):
            kurtosis_penalty(prep, **kwargs)

    def test_a_numpy_target_and_no_weight_are_taken(self):
        prep = prepare(_mlp(), cimsim.load_chip("ideal"), _x(0))
        assert kurtosis_penalty(prep, target=np.float64(3.0), weight=0).item() == 0.0

"""Tests from a third mutation round over the training twin, ``cimsim/train/twin.py``: the
code the first two rounds (``test_mutants_twin.py``, ``test_mutants_twin_round2.py``) left
unpinned.

Each test pins behaviour that a mutant of the twin changed without any other test noticing
(the option checks, the 1-b weights' straight-through range, an all-zero matrix under a
frozen scale, the warnings and refusals, the gradients' LSQ factors and more: see each
test's docstring, which names the place and the change it kills), with hand-computed answers
or relations against ``deploy`` and the engine. All use toy twins and run in well under a
second each.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from cimsim.errors import ConfigError, MappingError
from cimsim.train import prepare
from cimsim.train.twin import TwinMatmul, TwinOptions, recalibrate_adcs
from tests.conftest import ideal_chip
from tests.train.test_mutants_twin import (
    _TIE_CHIP,
    YEAR,
    _aging_chip,
    _fused_relu_twin,
    _lsq_step_twin,
    _ramp_twin,
    _tensor_chip,
    _twin,
)

pytestmark = pytest.mark.usefixtures("own_torch_generator")


def _small_chip(**changes):
    """The lossless ideal chip with 4-b inputs and weights, 8 rows, one tensor scale."""
    return _tensor_chip(input_bits=4, weight_bits=4, n_rows=8, **changes)


# ---------------------------------------------------------------------------------------------
# the options
# ---------------------------------------------------------------------------------------------
class TestTwinOptions:
    def test_an_unknown_device_state_is_refused(self):
        """``TwinOptions.__post_init__``: the ``devices`` check dropped (``if False``)."""
        with pytest.raises(ConfigError, match="TwinOptions.devices = 'fresh' is invalid"):
            TwinOptions(devices="fresh")
        assert TwinOptions(devices="sampled").devices == "sampled"


# ---------------------------------------------------------------------------------------------
# the quantizers, the scales and their gradients, the hand-back
# ---------------------------------------------------------------------------------------------
class TestWeightCodes:
    def test_binary_weights_pass_the_gradient_inside_one_step_only(self):
        """``TwinMatmul.__init__``: ``w_qmax = 1`` of 1-b weights changed to 2 (BinaryConnect's
        straight-through range |w / s| <= 1 became 2)."""
        from tests.arrays.test_binary import binary_chip

        twin = _twin([[0.5, -0.5, 0.25]], [[1.0, 1.0, 1.0]], binary_chip())
        w = torch.tensor([[1.5, -1.5, 0.5, -1.0]], dtype=torch.float64, requires_grad=True)
        codes = twin.weight_codes(w, torch.ones(1, 1, dtype=torch.float64))
        assert codes.tolist() == [[1.0, -1.0, 1.0, -1.0]]
        codes.sum().backward()
        assert w.grad.tolist() == [[0.0, 0.0, 1.0, 1.0]]


class TestStepsThroughZero:
    def test_an_act_scale_through_zero_is_warned_once_per_layer(self):
        """``TwinMatmul.forward``: ``not self._warned_through_zero`` dropped (every training
        forward warned again)."""
        twin = _twin([[0.7, -0.35]], [[3.0, 1.5]], _small_chip()).train()
        with torch.no_grad():
            twin.act_scale.fill_(-0.1)
        x = torch.tensor([[0.5, 1.0]], dtype=torch.float64)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            twin(x)
            twin(x)
        assert sum("act_scale went through 0" in str(w.message) for w in seen) == 1

    @pytest.mark.parametrize("training,learn", [(False, True), (True, False)])
    def test_no_warning_in_eval_or_for_a_scale_that_is_not_learned(self, training, learn):
        """``TwinMatmul.forward`` / ``_warn_steps_through_zero``: ``self.training`` dropped
        (an eval forward warned of a learning step), or ``p.requires_grad`` dropped (a frozen
        scale set by hand was called learned)."""
        twin = _twin([[0.7, -0.35]], [[3.0, 1.5]], _small_chip(), learn_act_scale=learn)
        twin.train(training)
        with torch.no_grad():
            twin.act_scale.fill_(-0.1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            twin(torch.tensor([[0.5, 1.0]], dtype=torch.float64))


    def test_an_adc_step_through_zero_is_warned(self):
        """``TwinMatmul._warn_steps_through_zero``: ``adc_step`` dropped from the learned
        steps it checks."""
        twin = _lsq_step_twin(False).train()
        assert twin.adc_step.requires_grad
        with torch.no_grad():
            twin.adc_step.fill_(-1.0)
        with pytest.warns(UserWarning, match="its learned adc_step went through 0"):
            twin(torch.tensor([[0.3]], dtype=torch.float64))


class TestParts:
    def test_the_gradient_of_a_layer_of_several_parts_and_row_groups(self):
        """``_ChipProduct.backward``: the per-group gradient taken by ``expand`` also for
        several parts (``n_parts >= 1``: two parts of two row groups each cannot expand)."""
        chip = ideal_chip(input_bits=4, weight_bits=4, n_rows=8, rows_per_conversion=4)
        chip = chip.replace(quant=chip.quant.replace(weight_granularity="column"))
        w = [[0.7, -0.35] * 8, [0.1, 0.2] * 4 + [0.3, -0.6] * 4]
        twin = TwinMatmul.calibrated(torch.tensor(w, dtype=torch.float64), None, chip,
                                     torch.full((1, 16), 1.5, dtype=torch.float64),
                                     row_tiles=[(0, 8), (8, 16)])
        assert twin.n_parts == 2 and twin.n_groups == 4
        x = torch.full((1, 16), 0.5, dtype=torch.float64, requires_grad=True)
        twin(x).sum().backward()
        w_int = twin.quantized_weight()  # on the lossless chip: s_w · w_int summed over n
        s_w = twin.weight_scale.detach()  # (part, output)
        expected = (w_int * s_w.repeat_interleave(8, dim=0).t()).sum(dim=0, keepdim=True)
        torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=0)


class TestLsqFactors:
    def test_a_column_scale_learns_at_lsq_s_factor_of_its_tiles_rows(self):
        """``TwinMatmul.__init__``: the column granularity's LSQ count per scale changed from
        its row tile's rows to rows x outputs (a weight scale of one tile and one output
        sees the tile's rows: 1/sqrt(rows·Q_p))."""
        chip = ideal_chip(input_bits=4, weight_bits=4, n_rows=4)
        chip = chip.replace(quant=chip.quant.replace(weight_granularity="column"))
        rng = np.random.default_rng(0)
        w, x = rng.normal(size=(3, 8)), rng.normal(size=(5, 8))
        grads = []
        for plain in (False, True):
            twin = _twin(w, x, chip)
            assert twin.weight_scale.shape == (2, 3)  # two row tiles of 4 rows
            if plain:
                twin._w_grad.fill_(1.0)  # LSQ's factor taken out
            twin(torch.from_numpy(x)).sum().backward()
            grads.append(twin.weight_scale.grad)
        assert torch.count_nonzero(grads[1]) > 0
        torch.testing.assert_close(grads[0] * np.sqrt(4 * 7), grads[1], rtol=1e-12, atol=0)


class TestHandBack:
    def test_to_engine_programs_with_the_seed_it_is_given(self):
        """``TwinMatmul.to_engine``: the ``seed`` argument ignored (the twin's own used)."""
        twin = _twin([[0.7, -0.35]], [[3.0, 1.5]], _small_chip())
        assert twin.to_engine().seed == twin.seed == 0
        assert twin.to_engine(seed=5).seed == 5

    def test_a_float64_twin_hands_back_its_learned_scale_itself(self):
        """``_learned``: the float64 twin's own parameter replaced by the initial value times
        its change (0.2 · (0.102 / 0.2) is 0.10200000000000001, an ulp off the scale the
        twin computes with)."""
        twin = _twin([[0.7, -0.35]], [[3.0, 1.5]], _small_chip())
        assert twin.act_scale.item() == 0.2
        with torch.no_grad():
            twin.act_scale.fill_(0.102)
        assert 0.2 * (0.102 / 0.2) != 0.102
        assert twin.to_engine().s_x == 0.102


    def test_a_float64_twin_quantizes_its_inputs_with_its_learned_scale_itself(self):
        """``TwinMatmul.input_codes``: the float64 twin sent down the float32 twin's path,
        whose scale is the initial one times the change (0.2 · (0.102 / 0.2), an ulp below
        0.102: 0.255 / it is above the tie 2.5 and rounded up, where deploy's 0.255 / 0.102
        = 2.5 rounds to even)."""
        twin = _twin([[0.7, -0.35]], [[3.0, 1.5]], _small_chip())
        with torch.no_grad():
            twin.act_scale.fill_(0.102)
        x = torch.tensor([[0.255, 0.051]], dtype=torch.float64)
        assert (x / 0.102).tolist() == [[2.5, 0.5]]
        assert twin.quantize_input(x).tolist() == [[2.0, 0.0]]
        assert twin.to_engine().quantize(x.numpy()).tolist() == [[2, 0]]


class TestWeightDelta:
    def test_the_weight_delta_hook_is_added_before_quantizing(self):
        """``TwinMatmul.float_weight``: the ``weight_delta`` hook dropped (ADC-LoRA's adapters
        reached neither the codes nor the float model)."""
        twin = _twin([[0.7, -0.35]], [[3.0, 1.5]], _small_chip())
        assert twin.quantized_weight().tolist() == [[7.0, -4.0]]  # 0.7 / 0.1, -3.5 rounds up
        delta = torch.tensor([[-0.3, 0.15]], dtype=torch.float64)
        twin.weight_delta = lambda: delta
        torch.testing.assert_close(twin.float_weight().detach(),
                                   torch.tensor([[0.4, -0.2]], dtype=torch.float64))
        assert twin.quantized_weight().tolist() == [[4.0, -2.0]]  # at s_w = 0.1


@pytest.mark.filterwarnings("ignore:a weight matrix. its weights are all zero")
class TestZeroMatrixScale:
    def test_an_all_zero_matrix_under_a_frozen_weight_scale_keeps_deploys_scale_of_one(self):
        """``TwinMatmul.__init__``: ``opts.learn_weight_scale`` dropped from the all-zero
        matrix's start at 1/sqrt(k)/Q_p (a frozen scale is deploy's 1.0, not that start)."""
        w = [[0.0, 0.0, 0.0, 0.0]] * 2
        frozen = _twin(w, [[1.0, 1.0, 1.0, 1.0]], _small_chip(), learn_weight_scale=False)
        assert frozen.weight_scale.tolist() == [[1.0]]
        assert frozen.to_engine().s_w.tolist() == [[1.0, 1.0]]
        learned = _twin(w, [[1.0, 1.0, 1.0, 1.0]], _small_chip())
        assert learned.weight_scale.item() == pytest.approx(1.0 / 2.0 / 7.0)


class TestScaleRange:
    TINY = torch.finfo(torch.float32).tiny

    def test_a_weight_scale_of_exactly_the_smallest_normal_number_is_accepted(self):
        """``TwinMatmul.__init__``: ``value >= tiny`` changed to ``value > tiny`` (a scale of
        exactly float32's smallest normal number is normal: no NaN gradients)."""
        w = torch.tensor([[7 * self.TINY, -7 * self.TINY]], dtype=torch.float32)
        twin = TwinMatmul.calibrated(w, None, _small_chip(), torch.tensor([[1.0, 1.0]]))
        assert twin.weight_scale.item() == self.TINY  # 7·tiny / 7, exact

    def test_a_subnormal_channel_scale_beside_a_pruned_channel_is_refused(self):
        """``TwinMatmul.__init__``: ``positive = s_w[s_w > 0]`` changed to ``>= 0`` (a pruned
        binary channel's scale 0, mean|w|, became the minimum checked and passed as an exact
        0, hiding the other channel's subnormal scale)."""
        from tests.arrays.test_binary import binary_chip

        chip = binary_chip()
        assert chip.quant.weight_granularity.value == "channel"
        ok = TwinMatmul.calibrated(torch.tensor([[0.0, 0.0], [1.0, 1.0]]), None, chip,
                                   torch.tensor([[1.0, 1.0]]))
        assert ok.weight_scale.tolist() == [[0.0, 1.0]]  # the pruned channel's scale is 0
        w = torch.tensor([[0.0, 0.0], [1e-40, 1e-40]], dtype=torch.float32)
        with pytest.raises(MappingError, match="its weight scale 1e-40 is below"):
            TwinMatmul.calibrated(w, None, chip, torch.tensor([[1.0, 1.0]]))


# ---------------------------------------------------------------------------------------------
# the arrays
# ---------------------------------------------------------------------------------------------
class TestSplitPairs:
    @pytest.mark.parametrize("variation", ["none", "lognormal"])
    def test_an_uncompensated_analog_pair_through_a_nonlinearity_is_the_deployed_chip(
            self, variation):
        """``TwinMatmul.__init__``: the split pairs' nominal off current per physical column
        ``g_off`` (no compensation) changed to 0 (each column of the pair carries its own off
        current through f, which the pair's difference no longer cancels)."""
        chip = ideal_chip(encoding="differential", bits_per_cell=2, input_bits=4, weight_bits=5,
                          n_rows=12, n_cols=32, rows_per_conversion=6, variation=variation,
                          variation_sigma=0.1 if variation != "none" else 0.0,
                          on_off_ratio=20.0, off_current_compensation="none",
                          adc=dict(bits=6, range_policy="calibrated",
                                   calibration_granularity="column"),
                          noise=dict(nonlinearity="saturating", saturation_fraction=0.05))
        chip = chip.replace(differential_readout="analog")
        gen = torch.Generator().manual_seed(0)
        model = nn.Sequential(nn.Linear(20, 7), nn.ReLU(), nn.Linear(7, 3)).double()
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.3)
        x = torch.randn(32, 20, generator=gen, dtype=torch.float64)
        prep = prepare(model, chip, x, seed=3)
        assert next(prep.twins())[1].split_pairs
        with torch.no_grad():
            y = prep.eval()(x).numpy()
        np.testing.assert_allclose(y, prep.deploy()(x).numpy(), rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# the ADC
# ---------------------------------------------------------------------------------------------
class TestRampADC:
    def test_a_ramp_adcs_step_is_not_learned(self):
        """``TwinMatmul.__init__``: ``not self.nonlinear_adc`` dropped from ``learn`` (a ramp
        NL-ADC's tables are fitted, not learned: its step became a trainable parameter that
        never receives a gradient)."""
        twin = _ramp_twin().train()
        assert not twin.adc_step.requires_grad
        assert "adc_step" not in {n for n, p in twin.named_parameters() if p.requires_grad}

    def test_set_adc_tables_refuses_a_ramp_twin(self):
        """``TwinMatmul.set_adc_tables``: ``or self.nonlinear_adc`` dropped (a ramp's fitted
        levels were overwritten as a linear grid)."""
        twin = _ramp_twin()
        with pytest.raises(ConfigError, match="set_adc_tables takes calibrated linear"):
            twin.set_adc_tables(twin.to_engine())

    def test_a_ramp_passes_the_gradient_down_to_its_lowest_level(self):
        """``TwinMatmul._convert``: ``at >= lvl[0]`` changed to ``>`` (a value on the
        lowest level, a sum of 0, stopped the straight-through gradient)."""
        twin = _ramp_twin().train()
        x_int = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)  # a = 0 and 7
        x = (x_int * twin.act_scale.detach()).requires_grad_(True)
        assert torch.equal(twin.quantize_input(x), x_int)
        twin(x).sum().backward()
        assert x.grad.tolist() == [[7.0, 1.0], [7.0, 1.0]]  # s_w = 1: w_int

    def test_an_adc_bits_override_on_a_ramp_is_refused(self):
        """``TwinMatmul._convert``: the refusal of ``adc_bits_override`` on a nonlinear ADC
        dropped (the ramp converted at its own levels, the override silently ignored)."""
        twin = _ramp_twin().eval()
        twin.adc_bits_override = 2
        x = torch.tensor([[2.0, 1.0]], dtype=torch.float64) * twin.act_scale.detach()
        with pytest.raises(ConfigError, match="adc_bits override: only linear ADCs"):
            twin(x)


# ---------------------------------------------------------------------------------------------
# devices that age
# ---------------------------------------------------------------------------------------------
class TestAging:
    @pytest.mark.parametrize("sigma", [0.0, 0.1])
    def test_an_aged_twin_with_a_level_that_does_not_drift_is_the_deployed_chip(self, sigma):
        """``TwinMatmul._init_aging``: ``any(dev.drift_nu_mean)`` changed to ``all(...)`` (a
        table whose first level does not drift drew no exponents: the twin never aged); and
        ``cells_at_time``: ``nu = abs(nu)`` dropped (a spread of exponents around 0 drew
        negative ones, which the engine takes by magnitude)."""
        chip = ideal_chip(encoding="signed_cell", bits_per_cell=2, input_bits=4, weight_bits=5,
                          n_rows=12, n_cols=32, rows_per_conversion=6, variation="gaussian",
                          variation_sigma=0.1,
                          device=dict(drift_t0_s=1.0, drift_nu_mean=[0.0, 0.05, 0.1, 0.3],
                                      drift_nu_sigma=[sigma]),
                          adc=dict(bits=6, range_policy="calibrated",
                                   calibration_granularity="column"))
        gen = torch.Generator().manual_seed(0)
        model = nn.Linear(20, 3).double()
        x = torch.randn(32, 20, generator=gen, dtype=torch.float64)
        prep = prepare(model, chip, x, seed=3, t_inference_s=YEAR).eval()
        fresh = prepare(model, chip, x, seed=3).eval()
        with torch.no_grad():
            y, y0 = prep(x).numpy(), fresh(x).numpy()
        assert not np.allclose(y, y0)  # a year of drift moves the outputs
        np.testing.assert_allclose(y, prep.deploy()(x).numpy(), rtol=1e-9, atol=1e-9)


    def test_the_1_over_f_read_noise_alone_is_training_noise(self):
        """``TwinMatmul._analog``: the 1/f read noise of an aged programmed chip dropped from
        the noise condition (without white read noise, ``read_noise_rel = 0``, a training
        forward added none)."""
        chip = _aging_chip("offset", read_noise_q_s=[0.0, 0.1, 0.2, 0.3])
        assert chip.noise.read_noise_rel == 0
        twin = _twin([[0.5, -0.25]], [[1.0, 1.0]], chip, t_inference_s=YEAR).train()
        x_int = torch.tensor([[3.0, 5.0]], dtype=torch.float64)
        _, var, _, _ = twin._analog(x_int, twin.quantized_weight(), noisy=True)
        assert var is not None and bool((var > 0).any())
        _, quiet, _, _ = twin._analog(x_int, twin.quantized_weight(), noisy=False)
        assert quiet is None


# ---------------------------------------------------------------------------------------------
# the ADC's hooks and step
# ---------------------------------------------------------------------------------------------
class TestAdcHook:
    def test_values_a_hook_clipped_pass_no_gradient(self):
        """``TwinMatmul._convert``: the hook's ``kept`` mask dropped from the straight-through
        mask (ColumnQuant's clipped values passed the gradient as unclipped ones)."""
        twin = _twin([[0.7, -0.35]], [[3.0, 1.5]], _small_chip(
            adc=dict(bits=8, range_policy="calibrated"))).train()
        x = torch.tensor([[0.5, 1.0]], dtype=torch.float64, requires_grad=True)
        twin(x).sum().backward()
        assert bool((x.grad != 0).all())  # the plain twin passes it
        x.grad = None
        twin.adc_hook = lambda t, a, ratio: (t._adc_lo0[:, None, :],
                                             torch.zeros_like(a, dtype=torch.bool))
        twin(x).sum().backward()
        assert x.grad.tolist() == [[0.0, 0.0]]


class TestAdcStepGradient:
    def test_a_fixed_adc_gradient_scale_replaces_lsqs(self):
        """``TwinMatmul._integer``: the method's fixed ``adc_grad`` replaced by 1 (PIM-QAT's
        step gradient scale ignored)."""
        grads = []
        for scale in (1.0, 0.25):
            twin = _lsq_step_twin(False).train()
            twin.adc_grad = scale
            twin(torch.tensor([[0.3], [1.1]], dtype=torch.float64)).sum().backward()
            grads.append(twin.adc_step.grad.item())
        assert grads[0] != 0.0
        assert grads[1] == pytest.approx(0.25 * grads[0], rel=1e-12)


# ---------------------------------------------------------------------------------------------
# the layers and prepare
# ---------------------------------------------------------------------------------------------
def _x(*shape: int, scale: float = 1.0) -> torch.Tensor:
    """Uniform [0, scale) float64 inputs of ``shape`` from a fixed generator."""
    gen = torch.Generator().manual_seed(0)
    return torch.rand(*shape, dtype=torch.float64, generator=gen) * scale


class TestPrepareWarnings:
    def test_all_zero_calibration_inputs_are_warned(self):
        """``_TwinLayer._twin``: the all-zero inputs flag dropped (``if False``)."""
        with pytest.warns(UserWarning, match="every calibration input of '0' was 0"):
            prepare(nn.Linear(4, 3).double(), _small_chip(), torch.zeros(8, 4,
                                                                         dtype=torch.float64))

    def test_inputs_an_outlier_sets_the_step_of_are_warned(self):
        """``_TwinLayer._twin``: the coarse inputs flag dropped (``if False``)."""
        x = _x(16, 4, scale=0.01)
        x[0, 0] = 100.0
        with pytest.warns(UserWarning, match="half the nonzero calibration input vectors of "
                                             "'0' lie within a 32nd"):
            prepare(nn.Linear(4, 3).double(), _small_chip(), x)


class TestPreparedModel:
    def test_views_program_with_the_seed_they_are_given(self):
        """``PreparedModel.views``: the ``seed`` argument ignored (the seed of prepare
        used)."""
        prepared = prepare(nn.Linear(4, 3).double(), _small_chip(), _x(8, 4), seed=1)
        own, other = prepared.views()["0"], prepared.views(seed=2)["0"]
        assert own.seed == next(prepared.twins())[1].seed
        assert other.seed != own.seed
        fresh = prepare(nn.Linear(4, 3).double(), _small_chip(), _x(8, 4), seed=2)
        assert other.seed == fresh.views()["0"].seed

    def test_a_chip_of_another_quantizer_names_the_field_that_differs(self):
        """``_check_same_geometry``: a differing section's fields replaced by the section's
        name (``quant`` instead of ``quant.weight_granularity``)."""
        prepared = prepare(nn.Linear(4, 3).double(), _small_chip(), _x(8, 4))
        chip = ideal_chip(input_bits=4, weight_bits=4, n_rows=8)  # channel scales
        with pytest.raises(ConfigError, match=r"differs from the prepared chip 'ideal' in "
                                              r"quant\.weight_granularity[ :]"):
            prepared.deploy(chip=chip)


    def test_deploy_cuts_along_the_batch_dim_of_prepare_by_default(self):
        """``PreparedModel.deploy``: the default ``batch_dim`` changed from prepare's to 0."""
        x = _x(3, 8, 4)  # (sequence, batch, features)
        prepared = prepare(nn.Linear(4, 3).double(), _small_chip(), x, batch_dim=1)
        assert prepared.deploy().batch_dim == 1

    def test_a_grid_centred_on_every_batch_is_deployable_only_once_frozen_first(self):
        """``PreparedModel.check_chip``: ``not centres_frozen_first`` dropped (a caller that
        freezes the centre before deploying was refused too)."""
        prepared = prepare(nn.Linear(4, 3).double(), _small_chip(), _x(8, 4))
        (_, twin), = prepared.twins()

        class _PerBatch:
            per_batch = True

        twin.adc_hook = _PerBatch()
        with pytest.raises(ConfigError, match="centres its ADC grid on every batch"):
            prepared.check_chip(prepared.chip)
        assert prepared.check_chip(prepared.chip, centres_frozen_first=True) is prepared.chip


class TestPrepareModes:
    def test_a_layer_in_eval_mode_inside_a_training_model_gets_an_eval_twin(self):
        """``prepare``: each twin's mode taken from the model's (``was_training``) instead of
        the layer's own."""
        model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)).double().train()
        model[0].eval()
        prepared = prepare(model, _small_chip(), _x(8, 4))
        assert not prepared.twin_layers["0"].training
        assert prepared.twin_layers["1"].training

    def test_a_model_in_eval_mode_gives_a_prepared_model_in_eval_mode(self):
        """``prepare``: ``prepared.training = was_training`` changed to True."""
        prepared = prepare(nn.Linear(4, 3).double().eval(), _small_chip(), _x(8, 4))
        assert not prepared.training

    def test_a_pruned_bias_entry_takes_no_gradient(self):
        """``prepare``: the pruned biases' branch dropped (``if False``: the twin trained the
        entries torch's pruning hook keeps at 0)."""
        from torch.nn.utils import prune

        lin = nn.Linear(4, 3).double()
        prune.custom_from_mask(lin, "bias", torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))
        prepared = prepare(nn.Sequential(lin), _small_chip(), _x(8, 4))
        (twin,) = prepared.twin_layers["0"].matrices()
        prepared(_x(8, 4)).sum().backward()
        assert twin.bias.grad.tolist() == [8.0, 0.0, 8.0]


class _Masked(nn.Module):
    """A parametrization that zeroes fixed entries (MADE's ``w * mask``)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


class TestMaskedParametrization:
    def test_the_entries_a_mask_zeroes_stay_zero_in_the_twin(self):
        """``prepare``: ``_zeroed_by_parametrization`` dropped from the layers whose zeros
        are kept (the masked entries trained away from 0)."""
        from torch.nn.utils import parametrize

        lin = nn.Linear(3, 2).double()
        mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
        parametrize.register_parametrization(lin, "weight", _Masked(mask))
        prepared = prepare(nn.Sequential(lin), _small_chip(), _x(8, 3))
        (twin,) = prepared.twin_layers["0"].matrices()
        assert twin.weight_keep is not None and torch.equal(twin.weight_keep, mask)


class TestRecalibration:
    def test_a_fixed_adc_range_is_not_recalibrated_and_no_pass_is_made(self):
        """``recalibrate_adcs``: the ``range_policy`` filter dropped (a hardware-fixed range
        was refitted to the data), or the early return without a twin to recalibrate
        dropped (a forward pass was still made: here over inputs of the wrong width, which
        it cannot run)."""
        lin = nn.Linear(2, 1, bias=False).double()
        with torch.no_grad():
            lin.weight.copy_(torch.tensor([[0.7, 0.5]]))
        x = torch.tensor([[15.0, 15.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]],
                         dtype=torch.float64)  # s_x = 1, sums 0 to 12 of the range [0, 14]
        prepared = prepare(lin, _TIE_CHIP, x)
        (_, twin), = prepared.twins()
        before = [t.clone() for t in twin.adc_tables()]
        assert recalibrate_adcs(prepared, x[1:]) == []
        assert all(torch.equal(a, b) for a, b in zip(before, twin.adc_tables(), strict=True))
        assert recalibrate_adcs(prepared, _x(8, 5)) == []


class TestLayers:
    def test_the_float_model_leaves_the_twins_own_weights_as_they_were(self):
        """``_float_weights``: the restore after the block dropped (``float_model()`` left the
        twin's weight holding its masked copy: a pruned entry the optimiser had moved was
        reset to 0)."""
        lin = nn.Linear(3, 2).double()
        with torch.no_grad():
            lin.weight.copy_(torch.tensor([[0.5, 0.0, -0.25], [0.125, 0.75, -1.0]]))
        prepared = prepare(nn.Sequential(lin), _small_chip(), _x(8, 3))
        (twin,) = prepared.twin_layers["0"].matrices()
        twin.keep_zeros()
        with torch.no_grad():
            twin.weight[0, 1] = 0.3  # moved by an optimiser; masked in the forward
        out = prepared.float_model()[0]
        assert out.weight[0, 1].item() == 0.0
        assert twin.weight[0, 1].item() == 0.3

    def test_a_weight_held_as_a_buffer_stays_a_buffer_in_the_float_model(self):
        """``_TwinLayer.float_module``: the buffer branch dropped (a frozen random layer's
        weight came back a Parameter of the float model)."""
        lin = nn.Linear(4, 3).double()
        weight = lin.weight.detach().clone()
        del lin.weight
        lin.register_buffer("weight", weight)
        prepared = prepare(nn.Sequential(lin), _small_chip(), _x(8, 4))
        out = prepared.float_model()[0]
        assert "weight" in out._buffers
        assert [n for n, _ in out.named_parameters()] == ["bias"]
        assert torch.equal(out.weight, weight)

    def test_a_weight_normed_layer_comes_back_a_plain_layer_holding_the_learned_weight(self):
        """``_TwinLayer.float_module``: the parametrization's removal from the copy dropped
        (the learned weight went through weight_norm's right inverse into ``g`` and ``v``)."""
        from torch.nn.utils import parametrize
        from torch.nn.utils.parametrizations import weight_norm

        lin = weight_norm(nn.Linear(4, 3).double())
        prepared = prepare(nn.Sequential(lin), _small_chip(), _x(8, 4))
        (twin,) = prepared.twin_layers["0"].matrices()
        with torch.no_grad():
            twin.weight.mul_(1.5)
        out = prepared.float_model()[0]
        assert type(out) is nn.Linear and not parametrize.is_parametrized(out)
        assert isinstance(out.weight, nn.Parameter) and torch.equal(out.weight, twin.weight)
        assert parametrize.is_parametrized(lin)  # the source keeps its own

    def test_packed_groups_keep_their_off_diagonal_weights_at_zero(self):
        """``_TwinLayer._group_twins``: the pack's ``weight_keep`` dropped (the zeros between
        the block-diagonal groups took gradient: the groups mixed)."""
        chip = _small_chip()
        chip = chip.replace(array=chip.array.replace(group_packing="diagonal"))
        conv = nn.Conv2d(4, 4, 1, groups=4).double()
        prepared = prepare(nn.Sequential(conv), chip, _x(2, 4, 3, 3))
        (_, twin), = prepared.twins()
        assert twin.weight_keep is not None and torch.equal(
            twin.weight_keep, torch.eye(4, dtype=torch.float64))
        prepared(_x(2, 4, 3, 3)).sum().backward()
        assert torch.count_nonzero(twin.weight.grad * (1 - torch.eye(4))) == 0

    def test_the_groups_of_a_convolution_share_one_activation_scale(self):
        """``_TwinLayer._group_twins``: the sharing of the first group's ``act_scale``
        dropped (each group learned its own input quantizer for one input tensor)."""
        conv = nn.Conv2d(4, 4, 3, groups=2).double()
        prepared = prepare(nn.Sequential(conv), _small_chip(), _x(2, 4, 5, 5))
        first, second = (t for _, t in prepared.twins())
        assert first.act_scale is second.act_scale
        names = [n for n, _ in prepared.named_parameters()]
        assert sum(n.endswith("act_scale") for n in names) == 1


class _BiasKV(nn.Module):
    """Attention (with ``add_bias_kv``: its learned key/value rows no projection computes),
    then a Linear."""

    def __init__(self, bias_kv: bool = True):
        super().__init__()
        self.att = nn.MultiheadAttention(4, 1, add_bias_kv=bias_kv, batch_first=True)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.att(x, x, x, need_weights=False)[0])


class TestHalfCast:
    def test_a_prepared_model_cast_to_half_is_refused_at_its_forward(self):
        """``_refuse_swapped``: the float16 check of the twins' weights dropped (the ADC
        kernel failed on float16 naming no layer)."""
        prepared = prepare(nn.Linear(4, 3).double(), _small_chip(), _x(8, 4)).half()
        with pytest.raises(MappingError, match="0: hold float16/bfloat16 weights.*cast the "
                                               "prepared model back with prepared.float"):
            prepared(_x(2, 4).half())


class TestAttention:
    def test_attention_with_bias_kv_stays_in_float(self):
        """``TwinMultiheadAttention.__init__``: ``src.bias_k is not None`` dropped from the
        refusal (the twin computed attention without its bias rows: other outputs than the
        float module's, unwarned)."""
        with pytest.warns(UserWarning, match="add_bias_kv / add_zero_attn are not supported"):
            prepared = prepare(_BiasKV().double(), _small_chip(), _x(2, 3, 4))
        assert list(prepared.twin_layers) == ["fc"]
        assert [row[0] for row in prepared.digital] == ["att"]

    def test_the_attention_products_are_listed_as_computed_in_float(self):
        """``prepare``: the ``digital`` row of a mapped attention's activation products
        dropped (Q·Kᵀ, softmax and ·V run in float unlisted)."""
        prepared = prepare(_BiasKV(bias_kv=False).double(), _small_chip(), _x(2, 3, 4))
        assert list(prepared.twin_layers) == ["att", "fc"]
        assert [row[:2] for row in prepared.digital] == [("att", "attention products")]


class TestDeployArguments:
    @pytest.mark.parametrize("batch_dim", [True, -1])
    def test_a_batch_dim_that_is_no_dimension_is_refused(self, batch_dim):
        """``PreparedModel.deploy``: ``isinstance(batch_dim, bool)`` dropped (True taken as
        dimension 1), or ``batch_dim < 0`` changed to ``< -1`` (-1 counted the features as
        samples)."""
        prepared = prepare(nn.Linear(4, 3).double(), _small_chip(), _x(8, 4))
        with pytest.raises(MappingError, match=f"batch_dim = {batch_dim!r} is invalid"):
            prepared.deploy(batch_dim=batch_dim)

    def test_a_batch_dim_beyond_the_calibrated_inputs_dimensions_is_refused(self):
        """``PreparedModel.deploy``: the check against the first input's calibrated
        dimensions dropped (``if False``)."""
        prepared = prepare(nn.Linear(4, 3).double(), _small_chip(), _x(8, 4))
        with pytest.raises(MappingError, match=r"batch_dim = 2 is invalid for the first input "
                                               r"\(2 dimensions, as calibrated\)"):
            prepared.deploy(batch_dim=2)


class TestPrepareArguments:
    def test_what_is_not_a_module_is_refused(self):
        """``prepare``: the ``nn.Module`` check dropped (``if False``)."""
        with pytest.raises(MappingError, match="model must be a torch nn.Module, got str"):
            prepare("model", _small_chip(), _x(8, 4))

    def test_empty_calibration_data_is_refused(self):
        """``prepare``: the refusal of empty calibration data dropped (``if False``)."""
        with pytest.raises(MappingError, match="calibration data is empty"):
            prepare(nn.Linear(4, 3).double(), _small_chip(), [])

    def test_a_model_without_a_mappable_layer_is_refused(self):
        """``prepare``: the refusal of a model with no layer to map dropped (``if False``)."""
        with pytest.raises(MappingError, match="no layer can be mapped onto the arrays"):
            prepare(nn.Sequential(nn.ReLU()), _small_chip(), _x(8, 4))

    def test_half_precision_weights_are_refused_before_the_calibration_pass(self):
        """``prepare``: the refusal of float16 weights dropped (``if False``)."""
        with pytest.raises(MappingError, match="prepare: 0 hold float16/bfloat16 weights"):
            prepare(nn.Linear(4, 3).half(), _small_chip(), _x(8, 4).half())

    def test_a_time_before_the_programmed_state_is_refused_also_where_nothing_ages(self):
        """``prepare``: ``check_time`` of ``t_inference_s`` dropped (on a device that does not
        age no twin checks it again: 1 ms, before ``device.drift_t0_s`` = 1 s, was kept and
        handed to every deploy)."""
        with pytest.raises(ConfigError, match="t_inference_s = 0.001 is invalid"):
            prepare(nn.Linear(4, 3).double(), _small_chip(), _x(8, 4), t_inference_s=1e-3)

    def test_a_float32_twin_of_12_bit_codes_is_warned(self):
        """``prepare``: ``wide >= FLOAT32_WIDE_CODES`` changed to ``>`` (12-bit codes, the
        first width float32 resolves coarser than a code's tie, were not warned)."""
        chip = _tensor_chip(input_bits=12, weight_bits=4, n_rows=8)
        with pytest.warns(UserWarning, match="the chip's 12-bit codes in a float32 twin"):
            prepare(nn.Linear(4, 3), chip, _x(8, 4).float())


# ---------------------------------------------------------------------------------------------
# the fused activation
# ---------------------------------------------------------------------------------------------
class TestFusedActivation:
    def test_a_view_with_a_fused_activation_needs_the_calibration_inputs(self):
        """``TwinMatmul._init_activation``: the refusal of ``calibration=None`` dropped (the
        levels' fit failed on ``None`` naming neither the layer nor the cause)."""
        _, twin, x = _fused_relu_twin()
        view = twin.to_engine()
        assert view.activation is not None
        with pytest.raises(MappingError, match="fused activation's twin needs the calibration"):
            TwinMatmul(twin.weight, twin.bias, view, name="fc")
        again = TwinMatmul(twin.weight, twin.bias, view, name="fc",
                           calibration=view.quantize(x.numpy()))
        assert again.activation is not None

    def test_activation_levels_of_a_twin_without_one_is_a_config_error(self):
        """``TwinMatmul.activation_levels``: the refusal of a twin without a fused activation
        dropped (an AttributeError on a missing buffer instead)."""
        twin = _twin([[0.7, -0.35]], [[3.0, 1.5]], _small_chip())
        with pytest.raises(ConfigError, match="has no fused activation"):
            twin.activation_levels()

    def test_a_scale_of_exactly_zero_is_counted_in_the_refusal(self):
        """``TwinMatmul._engine_state``: the count ``v <= 0`` of the refusal changed to
        ``v < 0`` (a scale of exactly 0 was counted as none of the bad values)."""
        _, twin, _ = _fused_relu_twin()
        with torch.no_grad():
            twin.weight_scale[..., 0] = 0.0
        with np.errstate(divide="ignore"), \
                pytest.raises(MappingError, match=r"weight_scale \(1 of 4 values <= 0\)"):
            twin.to_engine()

    def test_a_scale_through_zero_is_warned_once_per_layer(self):
        """``TwinMatmul._activation_out``: ``not self._warned_through_zero`` dropped (the
        warning came at every forward)."""
        prepared, twin, x = _fused_relu_twin()
        prepared.eval()
        with torch.no_grad():
            twin.weight_scale[..., 0] = 0.0
        with warnings.catch_warnings(record=True) as seen, np.errstate(divide="ignore"):
            warnings.simplefilter("always")
            prepared(x[:4])
            prepared(x[:4])
        assert sum("went through 0" in str(w.message) for w in seen) == 1


class TestEngineDigest:
    def test_new_adc_tables_change_the_digest(self):
        """``PreparedModel.engine_digest``: the twins' float64 ADC tables (``_init64``'s arrays)
        dropped from the hash: a sweep would take a model with recalibrated tables for the
        points of the old ones. Tables calibrated on other inputs change it; the same model
        prepared again gives the same digest."""
        from cimsim.config import load_chip
        from cimsim.mapping.matrix import calibrate_adcs

        def prepared():
            torch.manual_seed(0)
            model = nn.Sequential(nn.Linear(8, 4))
            x = torch.rand(16, 8)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return prepare(model, load_chip("rram-22nm"), x), x

        prep, x = prepared()
        d0 = prep.engine_digest()
        assert prepared()[0].engine_digest() == d0
        _, twin = next(iter(prep.twins()))
        twin.set_adc_tables(calibrate_adcs(twin.to_engine(), (5 * x).double().numpy()))
        assert prep.engine_digest() != d0

"""Tests from a second mutation-testing round over the training twin's tied-weight handling
(``cimsim/train/tied.py``), its layer twins (``cimsim/train/twin_layers.py``) and fused kernels
(``cimsim/train/_kernels.py``), the ADC survey fit (``cimsim/cost/adc_survey.py``) and the
datasheet (``cimsim/cost/datasheet.py``).

Each test pins one behaviour that a hand-made mutant changed and no existing test noticed; its
docstring names the place and the change. Expected values are computed by hand (or are exact
structural facts: which parameters, which names), never by calling the function under test for
its own answer. The tied-weight helpers are driven with small stand-in layers (a source module,
its matrices and ``learned()``), so nothing is prepared or deployed.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.cost import adc_survey
from cimsim.cost.datasheet import macro_components
from cimsim.train import tied


def _weight_normed() -> nn.Linear:
    """A Linear(3, 2) under the parametrized weight_norm, its magnitude g frozen."""
    from torch.nn.utils.parametrizations import weight_norm

    lin = weight_norm(nn.Linear(3, 2))
    lin.parametrizations.weight.original0.requires_grad_(False)
    return lin


class TestFrozenBesideTrainable:
    """``tied._frozen_beside_trainable``: the frozen originals beside trainable ones."""

    def test_a_frozen_magnitude_of_a_parametrized_weight_is_named(self):
        """Kills: line 33 ``if p.requires_grad`` inverted (the trainable original named), line
        35 ``".parametrizations." in n`` without the leading dot (a module's own
        parametrization missed), line 37 ``any`` -> ``all`` (the trainable bias is no
        original)."""
        lin = _weight_normed()
        trainable = [n for n, p in lin.named_parameters() if p.requires_grad]
        assert sorted(trainable) == ["bias", "parametrizations.weight.original1"]
        got = tied._frozen_beside_trainable(lin, trainable)
        assert got == ["parametrizations.weight.original0"]

    def test_the_old_weight_norm_hook_frozen_g_beside_trainable_v(self):
        """Kills: line 39-40 ``out.append(n)`` of the ``_g`` branch removed."""
        lin = nn.Linear(3, 2)
        lin.weight_g = nn.Parameter(torch.ones(2, 1), requires_grad=False)
        lin.weight_v = nn.Parameter(torch.ones(2, 3))
        trainable = [n for n, p in lin.named_parameters() if p.requires_grad]
        assert tied._frozen_beside_trainable(lin, trainable) == ["weight_g"]

    def test_a_frozen_g_without_its_v_is_not_named(self):
        """Kills: line 39 ``and f"{n[:-2]}_v" in trainable`` dropped (any frozen ``*_g``)."""
        lin = nn.Linear(3, 2)
        lin.scale_g = nn.Parameter(torch.ones(2), requires_grad=False)
        trainable = [n for n, p in lin.named_parameters() if p.requires_grad]
        assert tied._frozen_beside_trainable(lin, trainable) == []


class TestMacroComponents:
    """``datasheet.macro_components``."""

    def test_a_digital_block_fp_macro_holds_the_shift_accumulators_once(self):
        """Kills: line 82 ``*(("shift_add",) * ("shift_add" not in inside))`` -> ``"shift_add"``
        (a digital macro's shift-accumulators listed twice)."""
        chip = cimsim.ChipConfig.from_dict(dict(name="t", adc=dict(kind="digital"),
                                                quant=dict(act_format="block_fp")))
        assert macro_components(chip) == ("cell", "dac", "adc", "shift_add", "block_fp")


class TestFamilyOf:
    """``adc_survey.family_of``."""

    def test_a_kind_given_by_its_name_and_a_bad_name(self):
        """Kills: line 85 ``_FAMILY[ADCKind(kind)]`` -> ``_FAMILY[kind]`` (a bad name a
        KeyError, not the enum's ValueError naming the choices)."""
        assert adc_survey.family_of("cco").family == "time"
        with pytest.raises(ValueError, match="not a valid ADCKind"):
            adc_survey.family_of("bogus")


class _Matrix:
    """A stand-in for a twin matrix: its weight and bias."""

    def __init__(self, weight, bias=None):
        self.weight, self.bias = weight, bias


class _Layer:
    """A stand-in twin layer: its source module, matrices and learned tensors."""

    def __init__(self, src: nn.Module, matrices: list[_Matrix], learned: dict):
        self._float_src = (src,)
        self._matrices, self._learned = matrices, learned

    def matrices(self):
        return self._matrices

    def learned(self):
        return dict(self._learned)


def _copy(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach().clone())


class TestFreezeLikeSources:
    """``tied.freeze_like_sources``."""

    def test_a_parametrized_weight_with_trainable_originals_stays_trainable(self):
        """Kills: line 58 ``or any(n.startswith(via) ...)`` dropped (the weight computed by a
        trainable parametrization frozen) and line 57 ``via`` always ``f"{owner}...."`` (a
        module's own ``parametrizations.weight.`` never matched without an owner)."""
        from torch.nn.utils.parametrizations import weight_norm

        src = weight_norm(nn.Linear(3, 2))
        w, b = _copy(src.weight), _copy(src.bias)
        layer = _Layer(src, [_Matrix(w, b)], {"weight": w, "bias": b})
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # every original trains: nothing to warn about
            tied.freeze_like_sources({"fc": layer})
        assert w.requires_grad and b.requires_grad

    def test_a_frozen_magnitude_beside_a_trainable_direction_is_warned_about(self):
        """Kills: line 75 ``if partly:`` -> never (weight_norm's frozen g trains unsaid)."""
        src = _weight_normed()
        w, b = _copy(src.weight), _copy(src.bias)
        layer = _Layer(src, [_Matrix(w, b)], {"weight": w, "bias": b})
        with pytest.warns(UserWarning, match=r"fc\.parametrizations\.weight\.original0 frozen"):
            tied.freeze_like_sources({"fc": layer})
        assert w.requires_grad  # the twin learns the computed weight

    def test_a_frozen_bias_the_layer_holds_itself_is_frozen(self):
        """Kills: line 71 ``held.update(...)`` removed (a bias held by the layer, not by a
        matrix, as a transposed convolution's, kept training while the source's is frozen)."""
        src = nn.Linear(3, 2)
        src.bias.requires_grad_(False)
        w, own_b = _copy(src.weight), _copy(src.bias)
        layer = _Layer(src, [_Matrix(w, None)], {"weight": w, "bias": own_b})
        tied.freeze_like_sources({"fc": layer})
        assert w.requires_grad
        assert not own_b.requires_grad


def _small_chip() -> cimsim.ChipConfig:
    chip = cimsim.load_chip("ideal")
    return chip.replace(array=chip.array.replace(n_rows=20, n_cols=16), input_bits=6,
                        dac=chip.dac.replace(bits=2))


class TestTwinConv3d:
    """``twin_layers.TwinConv3d.forward``."""

    def test_an_unbatched_input_is_the_batched_one_squeezed(self):
        """Kills: line 59 ``x.dim() == g.nd + 1`` -> ``g.nd + 3`` (an unbatched (C, D, H, W)
        input, which torch's Conv3d accepts, not unsqueezed)."""
        from cimsim.train import prepare
        from cimsim.train.twin_layers import TwinConv3d

        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv3d(1, 2, 2)).double()
        x = torch.randn(2, 1, 3, 3, 3, dtype=torch.float64)
        prep = prepare(model, _small_chip(), x, seed=0)
        prep.eval()
        (twin,) = [m for m in prep.modules() if isinstance(m, TwinConv3d)]
        with torch.no_grad():
            batched = twin(x[:1])
            single = twin(x[0])
        assert single.shape == (2, 2, 2, 2)
        torch.testing.assert_close(single, batched[0], rtol=0, atol=0)


def _packed_chip() -> cimsim.ChipConfig:
    chip = _small_chip()
    return chip.replace(array=chip.array.replace(group_packing="diagonal"))


class TestPackedGroups:
    """``twin_layers.TwinConv3d`` / ``TwinConvTranspose`` with ``array.group_packing =
    'diagonal'``: two small groups packed into one matrix."""

    def test_a_packed_grouped_conv3d_runs_through_one_matrix(self):
        """Kills: line 63 ``self.groups // self.per`` -> ``self.groups`` (the columns split
        into more parts than the packed layer has matrices)."""
        from cimsim.train import prepare
        from cimsim.train.twin_layers import TwinConv3d

        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv3d(2, 2, 2, groups=2)).double()
        x = torch.randn(2, 2, 3, 3, 3, dtype=torch.float64)
        prep = prepare(model, _packed_chip(), x, seed=0)
        (twin,) = [m for m in prep.modules() if isinstance(m, TwinConv3d)]
        assert twin.per == 2 and len(twin.matrices()) == 1
        prep.eval()
        with torch.no_grad():
            assert prep(x).shape == (2, 2, 2, 2, 2)

    def test_a_packed_grouped_transposed_conv_runs_through_one_matrix(self):
        """Kills: lines 87 and 100 ``self.groups // self.per`` -> ``self.groups`` (a matrix
        per group made of a packed pack, or the rows split into more parts than matrices)."""
        from cimsim.train import prepare
        from cimsim.train.twin_layers import TwinConvTranspose

        torch.manual_seed(0)
        model = nn.Sequential(nn.ConvTranspose1d(2, 2, 1, groups=2)).double()
        x = torch.randn(2, 2, 3, dtype=torch.float64)
        prep = prepare(model, _packed_chip(), x, seed=0)
        (twin,) = [m for m in prep.modules() if isinstance(m, TwinConvTranspose)]
        assert twin.per == 2 and len(twin.matrices()) == 1
        prep.eval()
        with torch.no_grad():
            assert prep(x).shape == (2, 2, 3)


def _sheet_chip() -> cimsim.ChipConfig:
    chip = cimsim.load_chip("rram-22nm")
    return chip.replace(array=chip.array.replace(n_rows=16, n_cols=16))


class TestDatasheetArguments:
    """``datasheet.datasheet``'s argument checks."""

    def test_an_unknown_scope_is_refused(self):
        """Kills: line 162 ``if scope not in _SCOPES`` -> never (a bad scope priced as
        ``chip``)."""
        from cimsim.cost.datasheet import datasheet
        from cimsim.errors import ConfigError

        with pytest.raises(ConfigError, match="scope = 'array' is invalid"):
            datasheet(_sheet_chip(), scope="array")

    def test_every_input_nonzero_is_a_density_of_one(self):
        """Kills: line 165 ``density <= 1.0`` -> ``< 1.0`` (the documented upper end, (0, 1],
        refused)."""
        from cimsim.cost.datasheet import datasheet

        assert datasheet(_sheet_chip(), input_density=1.0)["input_density"] == 1.0

    def test_a_density_that_is_no_number_is_refused(self):
        """Kills: line 163 ``else -1.0`` -> ``else 0.5`` (a string density taken as 0.5)."""
        from cimsim.cost.datasheet import datasheet
        from cimsim.errors import ConfigError

        with pytest.raises(ConfigError, match="input_density = '0.5' is invalid"):
            datasheet(_sheet_chip(), input_density="0.5")


class TestTwinConvTransposeUnbatched:
    """``twin_layers.TwinConvTranspose.forward``."""

    def test_an_unbatched_input_gives_an_unbatched_output(self):
        """Kills: line 103 ``out if xb is x else out.squeeze(0)`` -> ``out`` (an unbatched
        (C, L) input, which torch's ConvTranspose1d accepts, given a batch dimension back)."""
        from cimsim.train import prepare

        torch.manual_seed(0)
        model = nn.Sequential(nn.ConvTranspose1d(2, 3, 2)).double()
        x = torch.randn(2, 2, 3, dtype=torch.float64)
        prep = prepare(model, _small_chip(), x, seed=0)
        prep.eval()
        with torch.no_grad():
            single, batched = prep(x[0]), prep(x[:1])
        assert single.shape == (3, 4)
        torch.testing.assert_close(single, batched[0], rtol=0, atol=0)


class TestTwinRNNTrainingMode:
    """``twin_layers.TwinRNN.forward``."""

    def test_dropout_between_layers_acts_in_training_only(self):
        """Kills: line 165 ``self.training`` -> ``False`` (an LSTM's inter-layer dropout never
        applied in training)."""
        from cimsim.train import prepare

        torch.manual_seed(0)
        model = nn.LSTM(2, 3, num_layers=2, dropout=0.9, batch_first=True).double()
        x = torch.randn(1, 4, 2, dtype=torch.float64)
        prep = prepare(model, _small_chip(), x, seed=0, train_noise=False)
        prep.eval()
        with torch.no_grad():
            a = prep(x)[0]
            b = prep(x)[0]
            torch.testing.assert_close(a, b, rtol=0, atol=0)  # eval: deterministic
            prep.train()
            torch.manual_seed(1)
            c = prep(x)[0]
        assert not torch.equal(a, c)


class TestCarryGradHooks:
    """``tied.carry_grad_hooks`` on a grouped convolution."""

    def test_a_hook_on_a_grouped_convs_weight_is_refused(self):
        """Kills: line 126 ``len(twins) == 1`` dropped (a grouped convolution's weight, split
        over a twin per group, taken as held whole: the hook carried with the wrong shape
        instead of the MappingError naming it)."""
        from cimsim.errors import MappingError
        from cimsim.train import prepare

        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(2, 2, 1, groups=2)).double()
        model[0].weight.register_hook(lambda g: g * 0.5)
        x = torch.randn(2, 2, 3, 3, dtype=torch.float64)
        with pytest.raises(MappingError, match=r"0\.weight carr\(ies\) a gradient hook"):
            prepare(model, _small_chip(), x, seed=0)


class TestCarryGradHooksFrozen:
    """``tied.carry_grad_hooks`` where the twin's tensor is frozen: a hook is carried only to
    a tensor that takes a gradient (torch refuses a hook on one that does not). Through
    ``prepare`` the float source's copy of a frozen parameter carries no hook, so these call
    the function directly with a hooked source parameter frozen after its hook."""

    def test_a_frozen_bias_held_whole_gets_no_hook(self):
        """Kills: ``if held_whole.requires_grad`` -> always (RuntimeError: cannot register a
        hook on a tensor that doesn't require gradient)."""
        src = nn.Linear(2, 2)
        src.bias.register_hook(lambda g: g * 0)
        src.bias.requires_grad_(False)
        frozen = nn.Parameter(torch.ones(2), requires_grad=False)
        tied.carry_grad_hooks({"L": _Layer(src, [], {"bias": frozen})})
        assert not frozen._backward_hooks

    def test_a_frozen_twin_weight_gets_no_hook(self):
        """Kills: ``if held is not None and held.requires_grad`` -> ``held is not None``
        (the same RuntimeError for a Linear's twin, which holds the weight itself)."""
        from cimsim.train import prepare

        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 2)).double()
        prepared = prepare(model, _small_chip(), torch.randn(4, 3, dtype=torch.float64),
                           seed=0)
        layer = prepared.twin_layers["0"]
        src = layer._float_src[0]
        src.weight.register_hook(lambda g: g * 0)
        src.weight.requires_grad_(False)
        (twin,) = layer.matrices()
        twin.weight.requires_grad_(False)
        tied.carry_grad_hooks({"0": layer})
        assert not twin.weight._backward_hooks


class TestDatasheetStep:
    """``datasheet._step`` through :func:`datasheet`."""

    def test_a_tables_chip_keeps_its_read_pulse_as_window_though_not_stated(self):
        """Kills: line 291 ``if (tech.window_stated or not settles)`` -> ``if
        tech.window_stated`` (a ``tables``-model chip, which predicts no settling, left with no
        window at all). rram-22nm at 16 x 16: 4 conversions per ADC of 7 ns = 28 ns, the
        10-ns read pulse the window."""
        from cimsim.cost.datasheet import datasheet

        chip = _sheet_chip()
        chip = chip.replace(tech=chip.tech.replace(cost_model="tables", window_stated=False))
        step = datasheet(chip)["step"]
        assert step["stated_window_ns"] == 10.0
        assert step["settling_ns"] is None
        assert step["terms"] == {"conversions": 28.0, "stated_window": 10.0}

    def test_a_bit_plane_chip_states_a_window_per_input_bit(self):
        """Kills: line 302 ``phases * stated_ns`` -> ``stated_ns`` (one 10-ns window where 8
        bit-planes take 8: 80 ns, which sets the step over the 4 x 7 ns conversions)."""
        from cimsim.cost.datasheet import datasheet

        chip = _sheet_chip()
        chip = chip.replace(tech=chip.tech.replace(input_drive="bit_planes",
                                                   cost_model="physical"),
                            dac=chip.dac.replace(bits=None))
        step = datasheet(chip)["step"]
        assert step["analog_phases"] == 8
        assert step["terms"]["stated_window"] == 80.0
        assert step["step_ns"] == 80.0 and step["limit"] == "stated_window"


class TestCarryGradHooksWhole:
    """``tied.carry_grad_hooks`` on a Linear (its twin holds the weight whole)."""

    def test_a_hook_on_a_parametrization_original_is_refused(self):
        """Kills: line 141 ``or pname not in ("weight", "bias")`` dropped (a hook on a
        weight-normed Linear's original carried onto the twin's bias)."""
        from torch.nn.utils.parametrizations import weight_norm

        from cimsim.errors import MappingError
        from cimsim.train import prepare

        torch.manual_seed(0)
        model = nn.Sequential(weight_norm(nn.Linear(3, 2))).double()
        model[0].parametrizations.weight.original1.register_hook(lambda g: g * 0.5)
        with pytest.raises(MappingError, match=r"original1 carr\(ies\) a gradient hook"):
            prepare(model, _small_chip(), torch.randn(4, 3, dtype=torch.float64), seed=0)


class TestDatasheetReadPulse:
    """``datasheet._step``'s read-pulse term."""

    def test_a_bit_plane_chip_reads_a_pulse_per_input_bit(self):
        """Kills: line 310 ``phases * tech.t_read_ns`` -> ``tech.t_read_ns`` (one 10-ns read
        pulse where 8 bit-planes each read one: 80 ns, the step)."""
        from cimsim.cost.datasheet import datasheet

        chip = _sheet_chip()
        chip = chip.replace(tech=chip.tech.replace(input_drive="bit_planes",
                                                   cost_model="physical", window_stated=False),
                            dac=chip.dac.replace(bits=None))
        step = datasheet(chip)["step"]
        assert step["stated_window_ns"] is None
        assert step["terms"]["read_pulse"] == 80.0
        assert step["step_ns"] == 80.0 and step["limits"] == ("read_pulse",)

    def test_a_window_a_little_shorter_than_the_conversions_does_not_set_the_step(self):
        """Kills: line 313 ``rel_tol=1e-9`` -> ``1e-1`` (a 26-ns window named beside the
        28 ns of 4 x 7-ns conversions as setting the step)."""
        from cimsim.cost.datasheet import datasheet

        chip = _sheet_chip()
        chip = chip.replace(tech=chip.tech.replace(t_read_ns=26.0))
        step = datasheet(chip)["step"]
        assert step["terms"] == {"conversions": 28.0, "stated_window": 26.0}
        assert step["limits"] == ("conversions",)


class TestRefuseStepHooks:
    """``tied.refuse_step_hooks``."""

    def test_a_post_accumulate_hook_is_refused_by_name(self):
        """Kills: line 169 ``if hooked:`` -> never (an optimizer step fused into the backward
        silently stepping nothing)."""
        model = nn.Sequential(nn.Linear(3, 2))
        model[0].bias.register_post_accumulate_grad_hook(lambda p: None)
        from cimsim.errors import MappingError

        with pytest.raises(MappingError, match=r"^prepare: 0\.bias carr\(ies\)"):
            tied.refuse_step_hooks(model)
        tied.refuse_step_hooks(nn.Sequential(nn.Linear(3, 2)))  # none: nothing said


def _ripple_chip() -> cimsim.ChipConfig:
    """A small digital-CIM macro whose columns sum with ripple adders."""
    return cimsim.ChipConfig.from_dict(dict(
        name="ripple", weight_bits=4, input_bits=1, weight_encoding="twos_complement",
        array=dict(n_rows=16, n_cols=16, cols_per_adc=1, n_tiles=1, arrays_per_tile=1),
        device=dict(cell="sram", bits_per_cell=1), dac=dict(bits=1),
        adc=dict(kind="digital", bits=6, range_policy="full_scale"),
        tech=dict(node_nm=65.0, t_read_ns=10.0, clock_mhz=100.0, cost_model="physical",
                  cell_kind="sram_6t", digital_column="ripple")))


class TestDatasheetConverter:
    """``datasheet._converter`` through :func:`datasheet`."""

    def test_a_ripple_column_is_named_so(self):
        """Kills: line 340 ``"ripple adders" if ripple.applies(chip) else "adder tree"`` ->
        ``"adder tree"``."""
        from cimsim.cost.datasheet import datasheet

        adc = datasheet(_ripple_chip())["adc"]
        assert adc["priced_by"] == "ripple adders" and adc["corner_rate_hz"] is None

    def test_a_converter_beyond_the_tables_takes_the_corner_of_their_16_bits(self):
        """Kills: line 344 ``b = table_adc_bits(bits)`` -> ``b = bits`` (a 20-b converter's
        corner exp((213.78 - 128.307 - 3.2205 b) / 2.8719) at b = 20, not the 16 it is
        priced at)."""
        from cimsim.cost.datasheet import datasheet

        chip = _sheet_chip()
        adc = datasheet(chip.replace(adc=chip.adc.replace(bits=20)))["adc"]
        want = math.exp((213.78 - 128.307 - 3.2205 * 16) / 2.8719)
        assert adc["bits"] == 20
        assert adc["corner_rate_hz"] == pytest.approx(want, rel=1e-12)

    def test_a_tdc_above_its_corner_keeps_its_own_timing(self):
        """Kills: ``"rate_factor": 1.0`` of a TDC -> ``adc_survey.rate_factor(b, rate)``. A
        TDC is priced by its circuit model at its own timing, whatever the survey's corner:
        a 16-b TDC here converts at ~231 kS/s, above the survey's ~136 kS/s corner for 16 b,
        where the survey's factor would be ~1.42."""
        from cimsim.cost import adc_survey
        from cimsim.cost.datasheet import datasheet

        chip = _sheet_chip()
        chip = chip.replace(adc=chip.adc.replace(kind="tdc", bits=16),
                            tech=chip.tech.replace(cost_model="physical"))
        adc = datasheet(chip)["adc"]
        assert adc["priced_by"] == "circuit" and adc["above_corner"] is True
        assert adc["sample_rate_hz"] > adc["corner_rate_hz"]
        assert adc_survey.rate_factor(16, adc["sample_rate_hz"]) > 1.2
        assert adc["rate_factor"] == 1.0

    def test_a_one_bit_sar_is_one_sense_amplifier_decision(self):
        """Kills: line 352 ``"sense amp" if one_comparator(kind, b) else "survey"`` ->
        ``"survey"`` (a 1-b SAR priced by the survey's fit and given its scatter)."""
        from cimsim.cost.datasheet import datasheet

        chip = _sheet_chip()
        chip = chip.replace(adc=chip.adc.replace(bits=1),
                            tech=chip.tech.replace(cost_model="physical"))
        sheet = datasheet(chip)
        assert sheet["adc"]["priced_by"] == "sense amp"
        assert sheet["uncertainty"]["adc_scatter_factor"] is None


class TestKeepPrunedBiases:
    """``tied.keep_pruned_biases`` on a stand-in layer whose one matrix holds the bias."""

    def test_the_pruned_entries_are_zeroed_and_take_no_gradient(self):
        """Kills: line 198 ``mask != 0`` -> ``mask == 0`` (the kept entries zeroed), line 203
        ``b.mul_`` removed (the pruned entry kept its value), line 204-205 the gradient hook
        dropped (the pruned entry trained)."""
        w = nn.Parameter(torch.ones(3, 2, dtype=torch.float64))
        b = nn.Parameter(torch.tensor([2.0, 3.0, 5.0], dtype=torch.float64))
        layer = _Layer(nn.Linear(2, 3), [_Matrix(w, b)], {"weight": w, "bias": b})
        tied.keep_pruned_biases(layer, "bias", torch.tensor([1.0, 0.0, 1.0]))
        assert b.tolist() == [2.0, 0.0, 5.0]
        (b * torch.tensor([7.0, 11.0, 13.0], dtype=torch.float64)).sum().backward()
        assert b.grad.tolist() == [7.0, 0.0, 13.0]

    def test_a_mask_of_another_size_leaves_the_bias(self):
        """Kills: line 199 the size check dropped (a mask that is not the layer's plain bias's
        split over it: an error)."""
        b = nn.Parameter(torch.tensor([2.0, 3.0], dtype=torch.float64))
        layer = _Layer(nn.Linear(2, 2), [_Matrix(None, b)], {"bias": b})
        tied.keep_pruned_biases(layer, "bias", torch.tensor([1.0, 0.0, 1.0]))
        assert b.tolist() == [2.0, 3.0]


class TestFusedKernelNonlinearity:
    """``_kernels.convert_shift_add`` against the twin's torch path through a column
    non-linearity."""

    def test_the_gradients_through_a_saturating_column_match_the_torch_path(self):
        """Kills: line 302 ``slope[g, p, m, c] if has_slope else 1.0`` -> ``1.0`` (the
        straight-through share not weighted by the non-linearity's slope)."""
        from cimsim.train import prepare
        from tests.conftest import ideal_chip

        chip = ideal_chip(encoding="differential", bits_per_cell=2, input_bits=4,
                          weight_bits=5, n_rows=12, n_cols=32, rows_per_conversion=6,
                          on_off_ratio=20.0,
                          adc=dict(bits=6, range_policy="calibrated",
                                   calibration_granularity="column"),
                          noise=dict(nonlinearity="saturating", saturation_fraction=0.05))
        torch.manual_seed(0)
        model = nn.Linear(12, 4).double()
        x = torch.randn(16, 12, dtype=torch.float64)
        grads = []
        for fused in (True, False):
            prep = prepare(model, chip, x, seed=1, train_noise=False, fused_kernel=fused)
            prep.train()
            xg = x.clone().requires_grad_(True)
            prep(xg).sum().backward()
            grads.append(xg.grad)
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-12)


class TestTieSharedWeights:
    """``tied.tie_shared_weights`` on stand-in layers, the source's weight shared with a
    module left in float (``root`` holds it, as an embedding tied to a head)."""

    def test_a_linear_twin_holds_the_shared_parameter_itself(self):
        """Kills: line 234 ``in_float`` emptied and line 242 ``or`` -> ``and`` (a weight shared
        only with a float module, used by one mapped layer, kept as a separate copy)."""
        src = nn.Linear(3, 2)
        root = nn.ModuleDict({"emb": nn.Embedding(2, 3)})
        root["emb"].weight = src.weight  # the float module uses it too
        w, b = _copy(src.weight), _copy(src.bias)
        matrix = _Matrix(w, b)
        layer = _Layer(src, [matrix], {"weight": w, "bias": b})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            tied.tie_shared_weights(root, {"head": layer})
        assert matrix.weight is src.weight
        assert matrix.bias is b  # not shared: the copy

    def test_a_shared_weight_the_twin_holds_reshaped_is_warned_about_once(self):
        """Kills: line 250 ``if untied:`` -> never, and line 248 ``elif name not in untied`` ->
        ``else`` (the layer named once per shared tensor)."""
        src = nn.Linear(3, 2)
        root = nn.ParameterList([src.weight, src.bias])
        w, b = _copy(src.weight), _copy(src.bias)
        # held as computed tensors (a convolution's flattened weight), not as parameters
        layer = _Layer(src, [_Matrix(w, b)], {"weight": w * 1.0, "bias": b * 1.0})
        with pytest.warns(UserWarning) as record:
            tied.tie_shared_weights(root, {"conv": layer})
        (msg,) = [str(r.message) for r in record]
        assert msg.startswith("prepare: the weights of conv are shared with other modules")


class TestRetieFloatCopy:
    """``tied.retie_float_copy`` on a stand-in layer whose twin holds the source's weight
    itself (tied) and a float copy of it (``memo``: the deepcopy's map)."""

    @staticmethod
    def _tied(keep):
        src = nn.Linear(3, 2)
        matrix = _Matrix(src.weight, _copy(src.bias))
        matrix.weight_delta, matrix.weight_keep = None, keep
        layer = _Layer(src, [matrix], {"weight": src.weight, "bias": matrix.bias})
        copy = nn.Linear(3, 2)
        shared = nn.Parameter(src.weight.detach().clone())
        return layer, copy, {id(layer): copy, id(src.weight): shared}, shared

    def test_a_tie_is_given_the_copys_shared_parameter(self):
        """Kills: line 275 ``if not isinstance(shared, nn.Parameter)`` -> always (a fresh copy
        where the deepcopy holds the shared one)."""
        layer, copy, memo, shared = self._tied(None)
        tied.retie_float_copy({"head": layer}, memo)
        assert copy.weight is shared

    def test_a_tie_trained_through_a_pruning_mask_keeps_its_own_copy(self):
        """Kills: line 272 ``or twin.weight_keep is not None`` dropped (the masked weight
        given the unmasked shared one)."""
        layer, copy, memo, shared = self._tied(torch.ones(2, 3))
        own = copy.weight
        tied.retie_float_copy({"head": layer}, memo)
        assert copy.weight is own


class TestValidationSpread:
    """``datasheet.validation_spread`` on a rows file of its own."""

    def test_a_given_file_is_named_as_the_source(self, tmp_path):
        """Kills: line 386 ``"docs/validation.md" if path is None else str(path)`` ->
        ``"docs/validation.md"``; line 462 ``if row["ratio"] > 0`` -> always (a row predicted
        at 0 kept: a division by zero). Ratios 2 and 1/2: both within 2x, geometric mean 2."""
        from cimsim.cost.datasheet import validation_spread

        path = tmp_path / "rows.csv"
        path.write_text("chip,point,metric,key,published,predicted,readout,window\n"
                        "a,p,TOPS/W,tops_per_w,1.0,2.0,analog,stated\n"
                        "b,p,TOPS/W,tops_per_w,4.0,2.0,analog,stated\n"
                        "c,p,TOPS/W,tops_per_w,4.0,0.0,analog,stated\n", encoding="utf-8")
        spread = validation_spread(path)
        assert spread["source"] == str(path)
        assert (spread["n_rows"], spread["n_within_2x"]) == (2, 2)
        assert spread["geomean_factor"] == pytest.approx(2.0, rel=1e-12)

    def test_a_rewritten_file_is_read_again(self, tmp_path):
        """Kills: line 447 ``_rows_of(str(csv_path), stamp)`` -> ``stamp`` fixed (the cached
        rows of the file's first version served after it changed)."""
        import os

        from cimsim.cost.datasheet import validation_spread

        path = tmp_path / "rows.csv"
        head = "chip,point,metric,key,published,predicted,readout,window\n"
        path.write_text(head + "a,p,TOPS/W,tops_per_w,1.0,2.0,analog,stated\n", encoding="utf-8")
        assert validation_spread(path)["n_rows"] == 1
        stamp = path.stat().st_mtime_ns
        path.write_text(head + "a,p,TOPS/W,tops_per_w,1.0,2.0,analog,stated\n"
                        "b,p,TOPS/W,tops_per_w,1.0,8.0,analog,stated\n", encoding="utf-8")
        os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
        spread = validation_spread(path)
        assert spread["n_rows"] == 2
        assert spread["worst"]["chip"] == "b" and spread["worst"]["factor"] == 8.0


class TestBreakdownLines:
    """``datasheet.breakdown_lines``."""

    def test_areas_from_100_um2_are_whole_numbers(self):
        """Kills: the area line's ``a >= 100`` (whole um2 from 100 up) -> ``a >= 1000``: an
        area of 999.7 um2 printed ``1e+03`` (three significant digits) instead of ``1000``;
        below 100 three significant digits stay (``0.25``)."""
        from cimsim.cost.datasheet import breakdown_lines, datasheet

        sheet = dict(datasheet(_sheet_chip()))
        sheet["area_um2_by_component"] = {"big": 999.7, "small": 0.25}
        sheet["area_share_by_component"] = {"big": 0.9, "small": 0.1}
        got = {t.split()[0]: t.split()[1] for t in breakdown_lines(sheet)
               if t.startswith(("  big ", "  small "))}
        assert got == {"big": "1000", "small": "0.25"}

    def test_a_ripple_chips_window_is_its_clock(self):
        """Kills: line 563 ``in ("adder tree", "ripple adders")`` -> ``in ("adder tree",)`` (a
        ripple column's clock labelled as an analog window)."""
        from cimsim.cost.datasheet import breakdown_lines, datasheet

        (line,) = [t for t in breakdown_lines(datasheet(_ripple_chip()))
                   if t.startswith("  stated window")]
        assert "(one digital clock, 1000 / tech.clock_mhz" in line

    def test_the_predicted_window_is_printed_per_bit_plane(self):
        """Kills: line 577 ``/ st["analog_phases"]`` dropped (the 8 bit-planes' total printed
        as one window)."""
        from cimsim.cost.datasheet import breakdown_lines, datasheet

        chip = _sheet_chip()
        chip = chip.replace(tech=chip.tech.replace(input_drive="bit_planes",
                                                   cost_model="physical", window_stated=False),
                            dac=chip.dac.replace(bits=None))
        sheet = datasheet(chip)
        (line,) = [t for t in breakdown_lines(sheet) if t.startswith("  predicted window")]
        shown = float(line.split()[2])
        total = sheet["step"]["terms"]["predicted_window"]
        assert shown == pytest.approx(total / 8, rel=1e-3)

    def test_a_converter_above_its_corner_is_said_to_be(self):
        """Kills: line 603 ``"ABOVE" if adc["above_corner"] else "below"`` -> ``"below"``. A
        12-b SAR's corner is exp((213.78 - 128.307 - 3.2205 x 12) / 2.8719) = 12.1 MS/s."""
        from cimsim.cost.datasheet import breakdown_lines, datasheet

        chip = _sheet_chip()
        chip = chip.replace(adc=chip.adc.replace(bits=12),
                            tech=chip.tech.replace(cost_model="physical"))
        sheet = datasheet(chip)
        assert sheet["adc"]["sample_rate_hz"] > 12.1e6
        (line,) = [t for t in breakdown_lines(sheet) if t.startswith("converter:")]
        assert "ABOVE the survey's 12.1 MS/s corner" in line

    def test_a_ripple_chips_converter_line_names_its_adders(self):
        """Kills: line 599 ``== "ripple adders"`` -> ``!=`` (a ripple column described as an
        adder tree)."""
        from cimsim.cost.datasheet import breakdown_lines, datasheet

        (line,) = [t for t in breakdown_lines(datasheet(_ripple_chip()))
                   if t.startswith("converter:")]
        assert "adc.kind = 'digital': a full adder per bit-cell, ripple down the column" in line


class _CellThenRelu(nn.Module):
    """An RNN cell whose only consumer is a ReLU."""

    def __init__(self):
        super().__init__()
        self.cell = nn.RNNCell(4, 3)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.cell(x)))


def _convt_then_relu():
    return nn.Sequential(nn.ConvTranspose1d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(18, 2))


class TestNoReluFusedBeforeASum:
    """twin_layers.py ``TwinConvTranspose.finalize`` / ``_TwinRecurrent.finalize``:
    ``self.activation_clamp = None`` removed. ``prepare`` marks a layer whose only consumer is
    a ReLU for the chip's layer-output ADC to fuse it (``adc.fuse_activation``), but an output
    of these layers sums several conversions (col2im's overlaps; the input and state
    products) and the bias, so deploy fuses nothing there; the mutants fused the ReLU into
    each conversion, and the twin no longer computed what deploy does."""

    @pytest.mark.parametrize("make, shape, name", [
        (_convt_then_relu, (16, 2, 4), "0"),
        (_CellThenRelu, (16, 4), "cell"),
    ])
    def test_the_twin_computes_the_deployed_model(self, make, shape, name):
        from cimsim.train import prepare
        from tests.conftest import bskmq_chip

        torch.manual_seed(0)
        model = make().double()
        x = torch.from_numpy(np.random.default_rng(0).normal(size=shape))
        chip = bskmq_chip(4, 3, "uniform", "layer", fuse_activation=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the cell's state input is 0 in calibration
            prepared = prepare(model, chip, x)
            sim = cimsim.deploy(model, chip, x)
        layer = prepared.twin_layers[name]
        assert layer.activation_clamp is None
        assert all(t.activation is None for t in layer.matrices())
        prepared.eval()
        with torch.no_grad():
            torch.testing.assert_close(prepared(x[:8]), sim(x[:8]), rtol=0, atol=0)

"""Tests from a third, hand-made mutation round over the PIM-QAT and ColumnQuant training
methods (``cimsim/train/pimqat.py``, ``cimsim/train/columnquant.py``).

The first two rounds (``test_mutants_pimqat_columnquant.py``,
``test_mutants_methods_round2.py``) pinned the decompositions' chip table, the rescaling
scalars by hand, LsqPsum's statistics and freeze, and most argument checks; these tests kill
the mutants those rounds and the regular tests (``test_pimqat.py``, ``test_columnquant.py``)
let live. Each docstring names the line and the change it kills. Two real bugs it found
are fixed, their tests below (``TestPimChipThermalSigmaByName``,
``TestOptimizerWeightDecayChecked``).
"""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from cimsim.config import load_chip
from cimsim.errors import ConfigError
from cimsim.train import prepare
from cimsim.train.columnquant import (
    PsumCentre,
    columnquant_chip,
    columnquant_optimizer,
    prepare_columnquant,
    with_decomposition,
)
from cimsim.train.pimqat import check_train_adc_bits, pim_chip, prepare_pimqat
from tests.train.test_columnquant import _setup

pytestmark = pytest.mark.usefixtures("own_torch_generator")


# =============================================================================================
# pimqat.py
# =============================================================================================
def _bit_serial_prep():
    """A 4-input Linear twin on a bit-serial chip (2-bit ADC, 4 rows per conversion)."""
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare(nn.Linear(4, 2).double(), pim_chip("bit-serial", adc_bits=2, rows=4),
                       torch.rand(16, 4, dtype=torch.float64))


class TestPimChipRound3:
    def test_zero_adc_bits_is_refused_as_the_argument(self):
        """pimqat.py ``pim_chip``: ``check_int("adc_bits", adc_bits, 1, 24)`` (mutant: lower
        bound 0): a 0-bit ADC went on to ``ADCConfig`` and was refused there under its field
        name, not the argument's."""
        with pytest.raises(ConfigError, match=r"^adc_bits = 0 is invalid; allowed: an integer "
                                              r"in \[1, 24\]"):
            pim_chip("native", adc_bits=0, rows=16)

    def test_the_adc_is_full_scale_whatever_the_base(self):
        """pimqat.py ``pim_chip``: ``range_policy=RangePolicy.FULL_SCALE`` (mutant: dropped,
        the base's policy kept): PIM-QAT's ADC is the hardware-fixed full scale of ``rows``
        rows (the docstring), also on a base chip whose ADC ranges are calibrated."""
        ideal = load_chip("ideal")
        base = ideal.replace(adc=ideal.adc.replace(range_policy="calibrated"))
        chip = pim_chip("native", adc_bits=4, rows=16, base=base)
        assert chip.adc.range_policy.value == "full_scale"


class TestApplyRescalingRound3:
    def test_a_slope_of_exactly_the_threshold_does_not_warn(self, monkeypatch):
        """pimqat.py ``apply_rescaling``: ``b < DEAD_SLOPE`` (mutant: ``<=``): an η_b of
        exactly 1e-3 is a thousandfold cut, not more, so no warning (round 2 pinned 9e-4 and
        5e-3 only)."""
        from cimsim.train import pimqat

        prep = _bit_serial_prep()
        monkeypatch.setattr(pimqat, "layer_rescale", lambda twin: (1.0, pimqat.DEAD_SLOPE))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = pimqat.apply_rescaling(prep)
        assert out == {"0": (1.0, 1e-3)}


class TestPreparePimqatRound3:
    def test_twin_options_reach_the_twin(self):
        """pimqat.py ``prepare_pimqat``: ``prepare(..., **options)`` (mutant: the options
        dropped): ``TwinOptions`` given to ``prepare_pimqat`` (the docstring's ``**options``)
        set the training twin, e.g. weight scales that do not learn."""
        torch.manual_seed(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prep = prepare_pimqat(nn.Linear(4, 2).double(),
                                  pim_chip("bit-serial", adc_bits=2, rows=4),
                                  torch.rand(16, 4, dtype=torch.float64),
                                  learn_weight_scale=False)
        (_, twin), = prep.twins()
        assert twin.options.learn_weight_scale is False
        assert not twin.weight_scale.requires_grad


def _calibrated(**adc):
    """The native PIM chip (4-bit SAR ADC) with calibrated ADC ranges and ``adc`` settings."""
    chip = pim_chip("native", adc_bits=4, rows=16)
    return chip.replace(adc=chip.adc.replace(range_policy="calibrated", **adc))


class TestCheckTrainAdcBitsRound3:
    @pytest.mark.parametrize("adc", [
        dict(placement="partial_sum", fuse_activation=True),
        dict(placement="layer_output", fuse_activation=False),
    ])
    def test_a_linear_adc_that_is_no_fused_activation_takes_other_bits(self, adc):
        """pimqat.py ``check_train_adc_bits``: ``fused = placement is LAYER_OUTPUT and
        fuse_activation`` (mutants: ``or``; ``fuse_activation`` alone): a partial-sum ADC
        with ``fuse_activation`` set (the default), or a layer-output ADC without it, is a
        linear converter whose learned range regrids to other bits; and the bits given are
        returned there (mutant: ``return adc.bits`` after the regrid check)."""
        assert check_train_adc_bits(_calibrated(**adc), 3) == 3

    def test_a_fused_activation_is_refused_with_its_own_reason(self):
        """pimqat.py ``check_train_adc_bits``: ``and not fused`` (mutant: dropped, a fused
        layer-output ADC of a linear kind was taken) and the reason chosen ``if fused``
        (mutant: ``if not fused``, the fused one told its kind is not linear); the message
        ends with the other way out, the chip's own bits (mutant: dropped)."""
        chip = _calibrated(placement="layer_output", fuse_activation=True)
        with pytest.raises(ConfigError) as err:
            check_train_adc_bits(chip, 3)
        msg = str(err.value)
        assert msg.startswith("train_adc_bits = 3 on chip 'pim-native-r16-adc4'")
        assert "layer-output ADCs are the fused activations" in msg
        assert "is not a linear converter" not in msg
        assert msg.endswith("or train_adc_bits equal to adc.bits (4)")
        assert check_train_adc_bits(chip, 4) == 4

    def test_a_nonlinear_kind_is_refused_with_its_kind(self):
        """pimqat.py ``check_train_adc_bits``: the reason of a converter that is not linear
        names its ``adc.kind`` (mutant: the fused activation's reason given instead)."""
        with pytest.raises(ConfigError, match=r"its adc.kind = 'ramp' is not a linear "
                                              r"converter"):
            check_train_adc_bits(_calibrated(kind="ramp"), 3)


class TestPimChipThermalSigmaByName:
    """pimqat.py ``pim_chip``: ``thermal_sigma_lsb=float(thermal_sigma_lsb)`` was the only
    argument not checked "named as given" (``cubic`` beside it is): the string ``"0.5"`` was
    taken as 0.5 LSB, ``True`` as 1 LSB of thermal noise, and ``None`` failed as float()'s
    bare TypeError. Each is now a ConfigError naming ``thermal_sigma_lsb``, as
    ``cubic = '0.1'`` is (a real bug found by this round, fixed)."""

    @pytest.mark.parametrize("bad", ["0.5", True, None, math.nan, -0.5])
    def test_a_non_number_is_refused_by_name(self, bad):
        with pytest.raises(ConfigError, match=r"^thermal_sigma_lsb = .* is invalid; allowed: "
                                              r"a finite number >= 0$"):
            pim_chip("native", adc_bits=4, rows=16, thermal_sigma_lsb=bad)

    @pytest.mark.parametrize("sigma", [0, np.float64(0.25)])
    def test_no_noise_and_a_numpy_number_are_taken(self, sigma):
        chip = pim_chip("native", adc_bits=4, rows=16, thermal_sigma_lsb=sigma)
        assert chip.noise.thermal_sigma_lsb == float(sigma)


# =============================================================================================
# columnquant.py
# =============================================================================================
class TestColumnQuantChipRound3:
    def test_a_24_bit_psum_adc_is_the_top_of_the_range(self):
        """columnquant.py ``columnquant_chip``: ``check_int("psum_bits", psum_bits, 1, 24)``
        (mutant: 23): the ADC's 24 bits are allowed, 25 refused under the argument's name."""
        assert columnquant_chip(psum_bits=24).adc.bits == 24
        with pytest.raises(ConfigError, match=r"^psum_bits = 25 is invalid; allowed: an "
                                              r"integer in \[1, 24\]"):
            columnquant_chip(psum_bits=25)

    @pytest.mark.parametrize("encoding", ["offset", "differential", "ternary"])
    def test_the_columns_are_converted_each_and_combined_digitally(self, encoding):
        """columnquant.py ``columnquant_chip``: ``differential_readout="digital"`` (mutant:
        dropped, the ``ideal`` base's ``analog`` kept): the paper code's options convert each
        column (W+ and W-, each ternary pair) and combine the codes digitally
        (docs/columnquant.md §1)."""
        chip = columnquant_chip(psum_bits=4, encoding=encoding)
        assert chip.differential_readout.value == "digital"


class TestColumnQuantOptimizerRound3:
    def test_the_weight_decay_given_is_the_optimizers(self):
        """columnquant.py ``columnquant_optimizer``: ``weight_decay=weight_decay`` (mutant:
        the paper's 3e-3 always): a caller's other decay (here none) reaches SGD."""
        net, x, _, chip = _setup()
        prep = prepare_columnquant(net, chip, x[:20])
        (group,) = columnquant_optimizer(prep, 0.05, weight_decay=0.0).param_groups
        assert (group["lr"], group["weight_decay"]) == (0.05, 0.0)


class TestPrepareColumnQuantRound3:
    def test_the_seed_is_the_twins(self):
        """columnquant.py ``prepare_columnquant``: ``prepare(..., seed=seed, ...)`` (mutant:
        ``seed=0``): the twin's programming and noise seed, the default of its deploy, is the
        one given (the ADC recalibration's seed was pinned before, not the twin's own)."""
        net, x, _, chip = _setup()
        assert prepare_columnquant(net, chip, x[:20], seed=5).seed == 5

    @pytest.mark.parametrize("granularity,shape", [("layer", (1, 1)), ("array", (2, 1))])
    def test_the_ternary_alphas_are_per_weight_scale_set(self, granularity, shape):
        """columnquant.py ``prepare_columnquant``: ``make_ternary(twin, weight_scale)``
        (mutant: ``"column"`` always): with ``decomposition="ternary"`` the B_w α are learned
        per weight set at ``weight_scale`` granularity (the docstring), not per column."""
        net, x, _, chip = _setup()
        prep = prepare_columnquant(net, chip, x[:20], decomposition="ternary",
                                   weight_scale=granularity)
        conv = dict(prep.twins())["conv"]
        assert tuple(conv.alpha.shape) == (chip.weight_bits, *shape)


class TestPsumMseRound3:
    def test_the_batch_size_given_cuts_the_inputs(self, monkeypatch):
        """columnquant.py ``psum_mse``: ``eval_pass(prepared, x, batch_size)`` (mutant: the
        default 64 always): the pass runs in the caller's batches, which set the per-batch
        mean of the denominator (Σ (a − mean a)², the mean over a batch's vectors)."""
        from cimsim.train import columnquant

        net, x, _, chip = _setup()
        prep = prepare_columnquant(net, chip, x[:20])
        seen = []

        def spy(prepared, data, batch_size, _orig=columnquant.eval_pass):
            seen.append(batch_size)
            return _orig(prepared, data, batch_size)

        monkeypatch.setattr(columnquant, "eval_pass", spy)
        small = columnquant.psum_mse(prep, x, batch_size=8)
        whole = columnquant.psum_mse(prep, x)
        assert seen == [8, 64]
        assert small["conv"] != whole["conv"]


class TestChoicesNameTheirArgument:
    def test_columnquant_chip_names_encoding(self):
        """columnquant.py ``columnquant_chip``: ``_choice("encoding", ...)`` (mutant: named
        ``decomposition``, the name of ``prepare_columnquant``'s option, not this
        function's)."""
        with pytest.raises(ConfigError, match=r"^encoding = 'sign' is invalid; allowed: "
                                              r"offset, differential, ternary"):
            columnquant_chip(psum_bits=3, encoding="sign")

    def test_with_decomposition_names_decomposition(self):
        """columnquant.py ``with_decomposition``: ``_choice("decomposition", ...)`` (mutant:
        named ``encoding``): ``prepare_columnquant(decomposition=...)`` is refused under the
        name the caller gave."""
        net, x, _, chip = _setup()
        with pytest.raises(ConfigError, match=r"^decomposition = 'sign' is invalid; allowed: "
                                              r"offset, differential, ternary"):
            prepare_columnquant(net, chip, x[:20], decomposition="sign")
        with pytest.raises(ConfigError, match=r"^decomposition = 'sign'"):
            with_decomposition(chip, "sign")


class TestPrepareColumnQuantChipChecks:
    def test_a_full_scale_chip_is_refused_with_the_way_out(self):
        """columnquant.py ``prepare_columnquant``: the refusal of a chip whose ADC ranges are
        not calibrated names the setting and the command line's way to set it (mutant: the
        ``--set adc.range_policy=calibrated`` hint dropped)."""
        net, x, _, chip = _setup()
        fs = chip.replace(adc=chip.adc.replace(range_policy="full_scale"))
        with pytest.raises(ConfigError, match=r"adc.range_policy must be 'calibrated' .*"
                                              r"'full_scale'.*--set adc.range_policy="
                                              r"calibrated$"):
            prepare_columnquant(net, fs, x[:20])

    def test_a_per_channel_chip_is_made_columnwise(self):
        """columnquant.py ``prepare_columnquant``: ``weight_granularity != "column"`` is made
        ``column`` (mutant: only ``tensor`` was; round 1 tried ``tensor`` only): the ``ideal``
        preset's ``channel`` scales become per (array, column) ones too."""
        net, x, _, chip = _setup()
        other = chip.replace(quant=chip.quant.replace(weight_granularity="channel"))
        conv = dict(prepare_columnquant(net, other, x[:20]).twins())["conv"]
        assert conv.chip.quant.weight_granularity.value == "column"
        assert tuple(conv.weight_scale.shape) == (2, 6)


class TestLayerStepInFloat64:
    def test_a_float32_twin_deploys_the_shared_step_in_float64(self):
        """columnquant.py ``_share_layer_step``: ``twin._mark_float64()`` after writing the
        union grid into ``_init64`` (mutant: dropped; the float64 values then followed the
        float32 buffers, and deploy got the shared start and step rounded to float32). Called
        as the last change to the twin (``init="engine"``: no recalibration after it)."""
        from cimsim.train.columnquant import _share_layer_step

        net, x, _, chip = _setup()
        prep = prepare_columnquant(net.float(), chip, x[:20].float(), psum_scale="array",
                                   init="engine").eval()
        conv = dict(prep.twins())["conv"]
        top = conv.top_code
        lo_n = float(conv._adc_lo0.min())
        d_n = (float((conv._adc_lo0 + conv._adc_delta0 * top).max()) - lo_n) / top
        assert float(torch.tensor(d_n, dtype=torch.float32)) != d_n  # float32 would show
        _share_layer_step(conv)
        for _, _, layer in conv.to_engine(0).parts:
            assert np.all(layer.adc.delta == d_n) and np.all(layer.adc.lo == lo_n)


class TestPsumCentreRound3:
    def test_a_frozen_hook_set_back_to_batch_follows_the_batch(self):
        """columnquant.py ``PsumCentre.__call__``: the frozen statistics are used only ``if
        self.mode == "frozen"`` (mutant: whenever a centre is set): a hook set back to
        ``batch`` (its ``per_batch`` says it follows every batch) clips and centres on the
        batch's own mu, sigma and centre."""
        twin = SimpleNamespace(_adc_delta0=torch.ones(1, 1, dtype=torch.float64))
        ratio = torch.ones(1, 1, dtype=torch.float64)
        hook = PsumCentre("column", 1.0, "batch", 3)
        full = torch.full((1, 1, 1), 100.0, dtype=torch.float64)
        hook.mu, hook.sd, hook.centre = full, full / 100, full  # as freeze_psum left them
        assert hook.per_batch
        a = torch.tensor([[[0.0], [2.0], [4.0], [6.0]]], dtype=torch.float64)
        lo0, kept = hook(twin, a, ratio)
        # the batch's: mu 3, sigma √5, centre round(mean(1, 2, 4, 5)) = 3: start (3 − 4)·Δ
        assert lo0.item() == -1.0
        assert kept[0, :, 0].tolist() == [False, True, True, False]


class TestOptimizerWeightDecayChecked:
    """columnquant.py ``columnquant_optimizer``: ``lr`` was checked (``check_lr``: "a NaN rate
    was taken") but ``weight_decay`` went to ``torch.optim.SGD`` as given, which refuses only
    ``weight_decay < 0``: ``weight_decay=nan`` (or ``inf``) was taken and the first step made
    every weight NaN, silently. Now a ConfigError naming ``weight_decay`` (a real bug found by
    this round, fixed)."""

    @pytest.mark.parametrize("bad", [math.nan, math.inf, True, "0.1"])
    def test_a_decay_that_is_no_finite_number_is_refused(self, bad):
        net, x, _, chip = _setup()
        prep = prepare_columnquant(net, chip, x[:20])
        with pytest.raises(ConfigError, match=r"^weight_decay = .* is invalid; allowed: a "
                                              r"finite number >= 0$"):
            columnquant_optimizer(prep, weight_decay=bad)

    def test_no_decay_is_taken(self):
        net, x, _, chip = _setup()
        prep = prepare_columnquant(net, chip, x[:20])
        assert columnquant_optimizer(prep, weight_decay=0).param_groups[0]["weight_decay"] == 0

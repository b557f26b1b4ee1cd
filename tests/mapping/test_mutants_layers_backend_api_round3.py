"""Tests written for the survivors of a third hand-made mutation round over
cimsim/mapping/layers.py, cimsim/mapping/torch_backend.py and cimsim/api.py (the parts the
first two rounds, test_mutants_mapping.py, test_mutants_deploy_layers.py,
test_mutants_loaders_graph.py, test_mutants_helpers.py and test_mutants_session22.py, left
unpinned): each pins a behaviour that a small wrong change left every earlier test passing.
Known answers where possible: counts and codes worked out by hand in a comment, tiny layers
on the lossless ``ideal`` chip, torch's own module, or a spy (monkeypatch) on what deploy and
the checks call. ``TestSubmoduleWeightsUnderFloatNames`` holds the bug the round found (now
fixed)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.arrays.program import program
from cimsim.engine import calibrate
from cimsim.errors import ConfigError
from cimsim.mapping.layers import fused_activation
from cimsim.mapping.torch_backend import _Part, check_backend
from tests.conftest import ideal_chip

# the tests seed torch's global generator: given back as it was
pytestmark = pytest.mark.usefixtures("own_torch_generator")


# ---------------------------------------------------------------------------------------------
# torch_backend.check_backend
# ---------------------------------------------------------------------------------------------


class TestCheckBackend:
    def test_a_device_of_a_wrong_type_is_a_config_error(self):
        """torch_backend.py ``except (RuntimeError, TypeError)`` around ``torch.device``
        (mutant: RuntimeError only): ``device=1.5`` makes torch raise a TypeError, which is
        reported as 'is not a torch device', not torch's bare TypeError."""
        with pytest.raises(ConfigError, match=r"^device = 1\.5 is not a torch device"):
            check_backend("torch", 1.5)

    @staticmethod
    def _refused_when_the_probe_raises(monkeypatch, exc: BaseException, match: str) -> None:
        """``check_backend("torch", "xpu")`` with ``torch.zeros`` raising ``exc``: refused
        with a ConfigError matching ``match``."""
        def fail(*args, **kwargs):
            raise exc

        monkeypatch.setattr(torch, "zeros", fail)
        with pytest.raises(ConfigError, match=match):
            check_backend("torch", "xpu")

    def test_the_reason_is_torchs_first_sentence(self, monkeypatch):
        """torch_backend.py, the ``why`` of a device that cannot hold float64 (mutant: only
        the exception's type name): torch's first sentence, its first line, is quoted; an
        empty message gives the exception's type."""
        self._refused_when_the_probe_raises(
            monkeypatch, RuntimeError("No backend here. Dispatch keys: A, B\nmore"),
            r"^device = 'xpu' cannot run the simulation here \(No backend here\); allowed")
        self._refused_when_the_probe_raises(monkeypatch, ValueError(""),
                                            r"here \(ValueError\); allowed")

    def test_the_probe_asks_for_float64_and_catches_torchs_assertion(self, monkeypatch):
        """torch_backend.py ``torch.zeros(1, dtype=torch.float64, device=dev)`` inside
        ``except (RuntimeError, AssertionError, TypeError, ValueError)`` (mutants: a float32
        probe; AssertionError not caught): a device without float64 (MPS) is refused
        before the work, and torch's AssertionError of a build without the device
        ('Torch not compiled with ... enabled') is reported as a ConfigError."""
        real = torch.zeros

        def no_float64(*args, dtype=None, device=None, **kwargs):
            if dtype == torch.float64:
                raise TypeError("Cannot convert a MPS Tensor to float64 dtype as the MPS "
                                "framework doesn't support float64. Please use float32.")
            return real(*args, dtype=dtype, **kwargs)

        monkeypatch.setattr(torch, "zeros", no_float64)
        with pytest.raises(ConfigError, match=r"here \(Cannot convert a MPS Tensor to "
                                              r"float64 dtype as the MPS framework doesn't "
                                              r"support float64\); allowed"):
            check_backend("torch", "xpu")

        self._refused_when_the_probe_raises(
            monkeypatch, AssertionError("Torch not compiled with XPU enabled"),
            r"here \(Torch not compiled with XPU enabled\); allowed")

    def test_cuda_without_a_visible_gpu_says_so(self, monkeypatch):
        """torch_backend.py ``if dev.type == "cuda" and not torch.cuda.is_available()``
        (mutant: not checked, the device probed like any other): where torch sees no CUDA
        device the refusal says that, not a probe's error."""
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        with pytest.raises(ConfigError, match=r"^device = 'cuda': torch sees no CUDA device "
                                              r"here$"):
            check_backend("torch", "cuda")

# ---------------------------------------------------------------------------------------------
# torch_backend._Part
# ---------------------------------------------------------------------------------------------


class TestPart:
    def test_a_part_without_adc_tables_is_refused(self):
        """torch_backend.py ``if tables is None: raise MappingError`` (mutant: no check): a
        part programmed for calibrated ranges and never calibrated has no ADC tables; the
        backend says so instead of failing on ``None.lo``."""
        chip = ideal_chip(adc=dict(range_policy="calibrated"))
        layer = program(np.array([[1, 2]]), chip, np.random.default_rng(0),
                        input_signed=False)
        assert layer.adc is None
        with pytest.raises(cimsim.errors.MappingError,
                           match=r"^a programmed part has no ADC tables \(calibrate it\)$"):
            _Part(layer, torch.device("cpu"))

    def test_the_gemm_kind_bounds_the_planes_by_their_most_negative_value(self):
        """torch_backend.py ``a_max = max(abs(v_lo), abs(v_hi))`` (mutant: ``abs(v_hi)``):
        8-bit two's-complement inputs in one plane drive -128..127, so the planes reach 128,
        beyond int8's 127: the engine's kind is float32 (128 * 3 * 4 < 2^24), never int8.
        The result is the exact product either way."""
        chip = ideal_chip(dac_bits=None, n_rows=16, n_cols=8)
        w = np.array([[1, -2, 3, 0], [3, 2, -3, 1]])
        x = np.array([[-128, 127, 0, 5]])
        layer = calibrate(program(w, chip, np.random.default_rng(0), input_signed=True), x)
        part = _Part(layer, torch.device("cpu"))
        assert part.kinds == ["float32"]
        y = part.run(torch.as_tensor(x, dtype=torch.float64)).y
        np.testing.assert_array_equal(y, x @ w.T)

    def test_a_noise_free_run_draws_nothing_from_torchs_generator(self):
        """torch_backend.py ``if th > 0 or ...`` and ``if adc.comparator_noise_lsb > 0``
        (mutants: ``>= 0``): a noise-free chip adds no noise, so the torch backend draws no
        ``randn`` (a zero-variance draw adds 0 but advanced the caller's global generator:
        a model's later ``torch.randn`` changed with the backend)."""
        torch.manual_seed(0)
        x = torch.randn(8, 4)
        sim = cimsim.deploy(nn.Linear(4, 2).eval(), "ideal", x, progress=False,
                            backend="torch", device="cpu")
        state = torch.get_rng_state()
        sim(x[:2])
        assert torch.equal(torch.get_rng_state(), state)

    def test_engine_gemm_false_runs_torchs_own_product_on_the_cpu(self, monkeypatch):
        """torch_backend.py ``self.cpu_gemm = device.type == "cpu" if engine_gemm is None
        else engine_gemm`` (mutant: the argument ignored): ``engine_gemm=False`` takes the
        path a GPU takes (torch's matmul of the device copies) even on the CPU, never the
        engine's ``_gemm.gemm``; on the lossless chip it is the exact product."""
        from cimsim.arrays import _gemm

        chip = ideal_chip(n_rows=16, n_cols=8)
        w = np.array([[1, -2, 3, 0], [3, 2, -3, 1]])
        x = np.array([[0, 255, 3, 5], [7, 1, 0, 2]])
        layer = calibrate(program(w, chip, np.random.default_rng(0), input_signed=False), x)

        def refuse(*args, **kwargs):
            raise AssertionError("the engine's GEMM was called")

        monkeypatch.setattr(_gemm, "gemm", refuse)
        part = _Part(layer, torch.device("cpu"), engine_gemm=False)
        assert not part.cpu_gemm
        y = part.run(torch.as_tensor(x, dtype=torch.float64)).y
        np.testing.assert_array_equal(y, x @ w.T)


# ---------------------------------------------------------------------------------------------
# layers: a deployed Linear
# ---------------------------------------------------------------------------------------------


def _linear(n_in: int = 6, n_out: int = 3, chip="ideal", **kw):
    """A deployed ``Linear(n_in -> n_out)`` calibrated on 8 normal rows, and its core."""
    torch.manual_seed(0)
    sim = cimsim.deploy(nn.Linear(n_in, n_out).eval(), chip, torch.randn(8, n_in),
                        progress=False, **kw)
    return sim, sim.sim_layers["0"].cores[0]


class TestRun:
    def test_each_part_of_a_call_draws_noise_from_a_stream_of_its_own(self, monkeypatch):
        """layers.py ``noise_seed=stream_key(call_seed, t)`` (mutant: part 0's stream for
        every part): per-column scales split a Linear(80 -> 5) into 3 parts, and the c-th
        call runs part t with ``stream_key(stream_key(seed, 1000 + c), t)``: independent
        noise per row tile, not the same draws."""
        from cimsim import engine
        from cimsim.arrays._rng import stream_key

        from .conftest import lossless_chip

        sim, core = _linear(80, 5, lossless_chip("column"))
        seeds = []
        real = engine.run_detailed

        def run_detailed(layer, x_int, **kw):
            seeds.append(kw["noise_seed"])
            return real(layer, x_int, **kw)

        monkeypatch.setattr(engine, "run_detailed", run_detailed)
        c = core.calls
        sim(torch.randn(2, 80))
        call_seed = stream_key(core.seed, 1000 + c)
        assert seeds == [stream_key(call_seed, t) for t in range(3)]

    def test_clipped_conversions_add_up_over_calls(self):
        """layers.py ``self.n_adc_clipped += res.n_clipped`` (mutant: ``=``): 4-bit ADC
        ranges fitted to normal calibration rows; inputs of the calibration's largest size
        with the signs of each weight row drive columns past their range: the same batch
        twice clips twice as many conversions as once."""
        torch.manual_seed(0)
        lin = nn.Linear(6, 3).eval()
        cal = torch.randn(16, 6)
        sim = cimsim.deploy(lin, ideal_chip(adc=dict(range_policy="calibrated", bits=4)), cal,
                            progress=False)
        sim.reset()
        x = torch.sign(lin.weight.detach()) * cal.abs().max()
        sim(x)
        once = sim.sim_layers["0"].work().n_adc_clipped
        sim(x)
        assert once > 0 and sim.sim_layers["0"].work().n_adc_clipped == 2 * once

    def test_a_wrong_width_names_the_weight_out_by_in(self):
        """layers.py ``check_linear_input(name, x, self.out_features, self.in_features)``
        (mutant: ``in_features`` twice): a Linear(6 -> 3) given 5 features names its
        weight 3x6, as torch's message does."""
        sim, _ = _linear()
        with pytest.raises(RuntimeError, match=r"^0: mat1 and mat2 shapes cannot be "
                                               r"multiplied \(input 2x5, weight 3x6\): the "
                                               r"layer takes 6 input features$"):
            sim(torch.randn(2, 5))

    def test_a_nan_input_names_the_layer_it_reached(self):
        """layers.py ``MatmulCore.run``: ``except ValueError: raise MappingError(f"layer
        {name!r}: ...")`` (mutant: the bare ValueError): a NaN reaching a matrix is
        reported naming the layer it reached first."""
        sim, _ = _linear()
        x = torch.zeros(2, 6)
        x[0, 1] = float("nan")
        with pytest.raises(cimsim.errors.MappingError,
                           match=r"^layer '0': 1 of 12 inputs to the arrays are NaN"):
            sim(x)


class TestAdopt:
    def test_a_view_of_another_shape_is_refused(self):
        """layers.py ``MatmulCore.adopt``: ``if view.w_int.shape != self.w.shape: raise``
        (mutant: no check): a 3 x 6 layer handed the engine view of a 2 x 6 matrix (a
        twin's ``to_engine()`` of another model) is refused naming both shapes, not run to
        outputs of the wrong width."""
        _, core = _linear()
        _, other = _linear(6, 2)
        with pytest.raises(cimsim.errors.MappingError,
                           match=r"^layer '0': the view holds a \(2, 6\) matrix, the layer "
                                 r"a \(3, 6\) one"):
            core.adopt(other.view)


class TestEventsAndBlocks:
    def test_a_layer_without_a_zero_point_shifts_no_input(self):
        """layers.py ``if self.view is not None and self.view.zero_point < 0`` (mutant:
        ``<= 0``): only the A-shift (a negative zero point) shifts input codes; a plain
        layer's zero point is 0, and 2 vectors through it count 2 x 3 dequantizing
        multiplies and no ``dac/input_shift``."""
        from cimsim.events import Action, Component, event_key

        sim, core = _linear()
        assert core.view.zero_point == 0
        sim.reset()
        sim(torch.randn(2, 6))
        events = sim.sim_layers["0"].events
        assert events[event_key(Component.DIGITAL, Action.DEQUANT_MULTIPLY)] == 6
        assert not any(k.action is Action.INPUT_SHIFT for k in events)
        assert not any(k.action is Action.INPUT_SHIFT for k in core._digital_events(2))

    def test_each_block_carries_the_matrixs_stage_and_pipeline_lag(self):
        """layers.py ``Block(layer, n_vectors, self.stage, self.lag_vectors, ...)`` (mutant:
        a lag of 0): the latency model reads a pipeline's fill from every block of the
        matrix (``MatmulCore.lag_vectors``, set by deploy)."""
        sim, core = _linear()
        core.stage, core.lag_vectors = 2, 2.5
        (block,) = sim.sim_layers["0"].work().blocks
        assert (block.stage, block.lag_vectors) == (2, 2.5)


class TestFinalizeFlags:
    def test_an_outlier_in_the_calibration_data_is_flagged_and_warned(self):
        """layers.py ``self.coarse_inputs = coarse_inputs(view, stats)`` in ``finalize``
        (mutant: not set): 31 vectors of size ~0.01 and one of 100 set the input step by the
        outlier: the matrix is flagged and deploy warns; normal data flags nothing."""
        x = torch.randn(32, 6, generator=torch.Generator().manual_seed(0)) * 0.01
        x[5] = 100.0
        with pytest.warns(UserWarning, match="half the nonzero calibration input vectors "
                                             "of '0' lie within a 32nd"):
            sim = cimsim.deploy(nn.Linear(6, 3).eval(), "ideal", x, progress=False)
        assert sim.sim_layers["0"].cores[0].coarse_inputs
        _, core = _linear()
        assert not core.coarse_inputs

    def test_all_zero_calibration_inputs_are_flagged_and_warned(self):
        """layers.py ``self.zero_inputs = stats.all_zero`` in ``finalize`` (mutant:
        False): every calibration input 0 sets the input step and ADC ranges from no
        signal: the matrix is flagged and deploy warns naming it."""
        with pytest.warns(UserWarning, match="every calibration input of '0' was 0"):
            sim = cimsim.deploy(nn.Linear(6, 3).eval(), "ideal", torch.zeros(8, 6),
                                progress=False)
        assert sim.sim_layers["0"].cores[0].zero_inputs

# ---------------------------------------------------------------------------------------------
# layers.SimConv
# ---------------------------------------------------------------------------------------------


class TestSimConv:
    def test_a_conv1d_names_its_weight_in_its_own_rank(self):
        """layers.py ``[kw] if self.dim == 1 else [kh, kw]`` (mutant: always ``[kh, kw]``):
        a Conv1d(2 -> 4, kernel 3) given 3 channels is refused naming its weight as torch
        does, ``[4, 2, 3]``, not the 2-D form the layer computes with (``[4, 2, 1, 3]``)."""
        torch.manual_seed(0)
        sim = cimsim.deploy(nn.Conv1d(2, 4, 3).eval(), "ideal", torch.randn(4, 2, 6),
                            progress=False)
        with pytest.raises(RuntimeError, match=r"^0: Given groups=1, weight of size "
                                               r"\[4, 2, 3\], expected 2D \(unbatched\) or "
                                               r"3D \(batched\) input with 2 channels, but "
                                               r"got input of size \[1, 3, 6\]$"):
            sim(torch.randn(1, 3, 6))

    def test_an_even_kernel_fits_with_its_same_padding_on_either_side(self):
        """layers.py ``check_kernel_fits``: ``padded = s + pads[before] + pads[after]``
        (mutant: twice the first pad): a 2 x 2 kernel with ``padding='same'`` pads a height
        of 1 by 0 before and 1 after (torch puts the odd pixel after), so a 1 x 3 image
        fits (padded 2 x 4) and runs as torch's conv does."""
        torch.manual_seed(0)
        conv = nn.Conv2d(1, 2, 2, padding="same").eval()
        x = torch.randn(4, 1, 1, 3)
        sim = cimsim.deploy(conv, "ideal", x, progress=False)
        with warnings.catch_warnings():  # torch's note on even kernels (once a process)
            warnings.simplefilter("ignore", UserWarning)
            expected = conv(x)
        torch.testing.assert_close(sim(x), expected, atol=0.01, rtol=0)

    def test_the_source_modules_settings_and_weight_metadata_are_readable(self):
        """layers.py ``SimLayer.__getattr__``: ``if attr in config: return config[attr]``
        (mutant: the configuration not read) and ``_apply`` moving the weights' metadata
        (mutant: kept as deployed): a model's forward may read ``conv.kernel_size`` or
        ``conv.padding_mode`` of the deployed layer, and ``.weight.dtype`` follows
        ``sim.double()`` as torch's module's would."""
        torch.manual_seed(0)
        sim = cimsim.deploy(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1)).eval(), "ideal",
                            torch.randn(4, 2, 5, 5), progress=False)
        layer = sim.sim_layers["0"]
        assert (layer.kernel_size, layer.padding_mode, layer.groups) == ((3, 3), "zeros", 1)
        assert layer.weight.dtype == torch.float32
        sim.double()
        assert layer.weight.dtype == layer.bias.dtype == torch.float64

    def test_a_numpy_integer_setting_applies_to_every_dimension(self):
        """layers.py ``_n_tuple``: ``isinstance(value, int | np.integer)`` (mutant: ``int``
        only): a stride a model's code sets as ``np.int64(2)`` (read from a config array)
        is 2 in every dimension, as a Python 2 is, not a failed iteration."""
        from cimsim.mapping.layers import _n_tuple

        assert _n_tuple(np.int64(2), 2) == _n_tuple(2, 2) == (2, 2)
        assert _n_tuple([1, np.int32(3)], 2) == (1, 3)


# ---------------------------------------------------------------------------------------------
# layers.SimMultiheadAttention and layer_seed
# ---------------------------------------------------------------------------------------------


class TestAttentionCores:
    def test_projections_are_seeded_apart_and_the_output_one_runs_second(self):
        """layers.py ``stream_key(seed, 3)`` for ``out_proj`` (mutant: 2, the v projection's
        seed), ``self.cores[3].stage = 1`` (mutant: 0) and ``layer_seed`` =
        ``stream_key(seed, crc32(name))`` (mutant: another key): deploy seed 7, layer '0'."""
        import zlib

        from cimsim.arrays._rng import stream_key
        from cimsim.mapping.layers import layer_seed

        torch.manual_seed(0)
        x = torch.randn(3, 5, 4)
        sim = cimsim.deploy(nn.MultiheadAttention(4, 2, batch_first=True).eval(), "ideal",
                            (x, x, x), seed=7, progress=False)
        layer = sim.sim_layers["0"]
        assert layer_seed(7, "0") == stream_key(7, zlib.crc32(b"0"))
        base = stream_key(7, zlib.crc32(b"0"))
        assert [c.seed for c in layer.cores] == [stream_key(base, i) for i in range(4)]
        assert [b.stage for b in layer.work().blocks] == [0, 0, 0, 1]


    def test_add_zero_attn_is_refused_as_add_bias_kv_is(self):
        """layers.py ``if src.bias_k is not None or src.add_zero_attn: raise`` (mutant:
        add_zero_attn not read): the zero key and value torch appends are not simulated, so
        such an attention is not mapped (deploy keeps it digital and says why), rather than
        simulated without them."""
        from cimsim.mapping.layers import SimMultiheadAttention

        mha = nn.MultiheadAttention(4, 2, add_zero_attn=True)
        with pytest.raises(cimsim.errors.MappingError,
                           match=r"^att: add_bias_kv / add_zero_attn are not supported$"):
            SimMultiheadAttention(mha, "att", cimsim.load_chip("ideal"), 0)

# ---------------------------------------------------------------------------------------------
# layers.attention
# ---------------------------------------------------------------------------------------------


def _attention(**kw):
    """A deployed ``MultiheadAttention(4, 2)`` (batch first) on the ideal chip, its input."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4)
    mha = nn.MultiheadAttention(4, 2, batch_first=True, **kw).eval()
    return cimsim.deploy(mha, "ideal", (x, x, x), progress=False), x


class TestAttention:
    def test_an_unbatched_call_returns_unbatched_weights(self):
        """layers.py ``weights if batched else weights.squeeze(0)`` (mutant: ``weights``):
        an unbatched (L, E) query gives (L, S) weights, as torch's module gives them."""
        sim, x = _attention()
        out, weights = sim(x[0], x[0], x[0])
        assert out.shape == (3, 4) and weights.shape == (3, 3)

    def test_an_unbatched_call_takes_an_unbatched_padding_mask(self):
        """layers.py ``key_padding_mask = key_padding_mask.unsqueeze(0)`` for an unbatched
        call (mutant: not unsqueezed, then refused as misshapen): an (S,) mask goes with an
        (L, E) query, as torch takes it; masking key 2 gives it weight 0 for every query."""
        sim, x = _attention()
        mask = torch.tensor([False, False, True])
        _, weights = sim(x[0], x[0], x[0], key_padding_mask=mask)
        assert weights.shape == (3, 3)
        assert weights[:, 2].tolist() == [0.0, 0.0, 0.0]
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(3))

    def test_a_float_mask_is_added_in_the_scores_dtype(self):
        """layers.py ``_additive_mask``: ``return mask.to(dtype)`` (mutant: the mask as
        given): a float64 additive mask on float32 inputs is cast to the scores' dtype, so
        the weights stay float32 and the ``·V`` product runs (uncast, the float64 scores
        failed ``bmm`` against float32 values); its -inf hides keys 1 and 2 of query 0."""
        sim, x = _attention()
        mask = torch.zeros(3, 3, dtype=torch.float64)
        mask[0, 1:] = float("-inf")
        out, weights = sim(x, x, x, attn_mask=mask)
        assert out.dtype == weights.dtype == torch.float32
        assert weights[:, 0].tolist() == [[1.0, 0.0, 0.0]] * 2

    def test_is_causal_is_only_a_hint_beside_a_given_mask(self):
        """layers.py ``if attn_mask is None and is_causal`` (mutant: ``if is_causal``): as in
        torch, ``is_causal=True`` beside an explicit ``attn_mask`` is a hint, and the mask
        given is applied: an all-False mask masks nothing (torch's module gives the same)."""
        sim, x = _attention()
        _, plain = sim(x, x, x)
        _, hinted = sim(x, x, x, attn_mask=torch.zeros(3, 3, dtype=torch.bool),
                        is_causal=True)
        assert torch.equal(hinted, plain)
        assert hinted[:, 0, 1:].min() > 0  # the first query still sees the later keys


# ---------------------------------------------------------------------------------------------
# layers.CoreTrace
# ---------------------------------------------------------------------------------------------


class TestCoreTrace:
    def test_the_code_count_keeps_rows_spread_over_the_call(self):
        """layers.py ``rows = spread_rows(x.shape[0], self._code_budget)`` (mutant: the
        first rows): a budget of 3 rows of a call of 8 keeps rows 0, 3 and 7 (a conv's
        im2col rows of one image are much alike), quantized as the matrix quantizes them."""
        from cimsim.mapping.layers import CoreTrace

        _, core = _linear()
        tracer = CoreTrace(3)
        tracer.start_pass(True)
        x = np.random.default_rng(0).normal(size=(8, 6))
        tracer.step(core, x)
        (kept,) = tracer.code_inputs
        np.testing.assert_array_equal(kept, core.view.quantize(x[[0, 3, 7]]))


    def test_the_float_pass_keeps_its_outputs_through_the_fused_relu(self):
        """layers.py ``self.reference.append(self._as_output(core, y))`` (mutant: the raw
        float output): where the ADC is the layer's fused ReLU, the float model's output of
        the matrix y_F is the ReLU's, so the kept reference is clipped at 0 as the simulated
        output is."""
        from cimsim.mapping.layers import CoreTrace

        torch.manual_seed(0)
        sim = cimsim.deploy(nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval(),
                            _layer_output_chip(True), torch.randn(32, 4), progress=False)
        core = sim.sim_layers["0"].cores[0]
        assert core.fused and core.activation_clamp == float("inf")
        x = np.random.default_rng(0).normal(size=(6, 4))
        y = core.float_run(x)
        assert y.min() < 0
        tracer = CoreTrace(0)
        tracer.start_pass(False)
        tracer.step(core, x)
        np.testing.assert_array_equal(tracer.reference[0], np.maximum(y, 0.0))

    def test_a_fused_relu6_reference_is_clamped_at_six(self):
        """layers.py ``np.clip(y, 0.0, core.activation_clamp)`` in ``_as_output`` (mutant:
        ``np.maximum(y, 0)``): a fused ReLU6 clamps the float references at 6 as its
        conversion does: -1, 3, 10 -> 0, 3, 6."""
        from cimsim.mapping.layers import CoreTrace

        torch.manual_seed(0)
        sim = cimsim.deploy(nn.Sequential(nn.Linear(4, 3), nn.ReLU6()).eval(),
                            _layer_output_chip(True), torch.randn(32, 4), progress=False)
        core = sim.sim_layers["0"].cores[0]
        assert core.fused and core.activation_clamp == 6.0
        out = CoreTrace._as_output(core, np.array([[-1.0, 3.0, 10.0]]))
        assert out.tolist() == [[0.0, 3.0, 6.0]]

    def test_each_batch_pairs_afresh(self):
        """layers.py ``start_pass``: ``self._paired = True`` (mutant: not reset): a batch
        whose simulated pass made a call more than its float pass is unpaired; the next
        batch, one call in each pass, pairs again: 1 paired, 1 unpaired."""
        from cimsim.mapping.layers import CoreTrace

        _, core = _linear()
        x = np.random.default_rng(0).normal(size=(2, 6))
        tracer = CoreTrace(0)
        for sim_calls in (2, 1):
            tracer.start_pass(False)
            tracer.step(core, x)
            tracer.start_pass(True)
            for _ in range(sim_calls):
                tracer.step(core, x)
        tracer.finish_batch()
        assert (tracer.paired_batches, tracer.unpaired_batches) == (1, 1)

    def test_a_spent_budget_keeps_no_more_rows(self):
        """layers.py ``if self._code_budget > 0 ...`` (mutant: ``>= 0``): a budget of 4
        rows spent by a first call of 4 keeps nothing of the second call (not an empty
        entry)."""
        from cimsim.mapping.layers import CoreTrace

        _, core = _linear()
        tracer = CoreTrace(4)
        tracer.start_pass(True)
        x = np.random.default_rng(0).normal(size=(4, 6))
        tracer.step(core, x)
        tracer.step(core, x)
        assert [a.shape for a in tracer.code_inputs] == [(4, 6)]

    def test_a_digital_matrix_is_not_compared(self):
        """layers.py ``if core.digital: return y_sim`` in ``CoreTrace.step`` (mutant: a
        digital matrix compared too): a matrix kept digital runs in float, so its calls add
        nothing to the sums, the calls paired or the vectors counted."""
        from cimsim.mapping.layers import CoreTrace, MatmulCore

        w = np.arange(12.0).reshape(2, 6)
        core = MatmulCore("d", w, None, cimsim.load_chip("ideal"), 0, digital=True)
        core.finalize()
        tracer = CoreTrace(4)
        tracer.start_pass(True)
        x = np.ones((3, 6))
        np.testing.assert_array_equal(tracer.step(core, x), x @ w.T)
        assert tracer.n_vectors == 0 and tracer._next == 0
        assert set(tracer.sums.values()) == {0.0}

# ---------------------------------------------------------------------------------------------
# layers._check_call
# ---------------------------------------------------------------------------------------------


class TestCheckCall:
    def test_an_integer_input_given_by_keyword_is_refused_too(self):
        """layers.py ``refuse_non_float_input(..., args or tuple(kwargs.values())[:1])``
        (mutant: ``args`` only): ``layer(input=long_tensor)``, torch's keyword for a Linear's
        input, is refused as the positional call is, naming the layer, not run to an int64
        output of truncated values."""
        sim, _ = _linear()
        layer = sim.sim_layers["0"]
        x = torch.ones(2, 6, dtype=torch.long)
        for call in (lambda: layer(x), lambda: layer(input=x)):
            with pytest.raises(cimsim.errors.MappingError,
                               match=r"^0: its input is int64, not floating point"):
                call()


    def test_a_weight_set_from_outside_after_deploy_is_refused(self):
        """layers.py ``SimLayer._programmed``: ``own_tensors`` = the tensor attributes at
        programming (mutant: None, which turns the check off): a ``.weight`` set on the
        deployed layer afterwards (``functional_call``'s fast weights) is refused, not
        silently ignored in favour of the programmed one."""
        sim, _ = _linear()
        layer = sim.sim_layers["0"]
        assert layer.own_tensors == {}
        layer.weight = torch.zeros(3, 6)
        with pytest.raises(cimsim.errors.MappingError,
                           match=r"^0: called with \.weight set from outside"):
            sim(torch.randn(2, 6))

# ---------------------------------------------------------------------------------------------
# layers.fused_activation
# ---------------------------------------------------------------------------------------------


def _layer_output_chip(fuse: bool):
    """A 3-bit ramp converter at the layer's output, its ranges calibrated."""
    ideal = cimsim.load_chip("ideal")
    return ideal.replace(
        weight_bits=4, dac=ideal.dac.replace(bits=None),
        device=ideal.device.replace(bits_per_cell=3),
        array=ideal.array.replace(n_rows=64, n_cols=64),
        adc=ideal.adc.replace(kind="ramp", bits=3, range_policy="calibrated",
                              placement="layer_output", fuse_activation=fuse))


class TestFusedActivation:
    def test_fuse_activation_false_keeps_the_relu_digital(self):
        """layers.py ``... or not adc.fuse_activation: return None`` (mutant: the flag not
        read): a layer-output converter followed by a ReLU fuses it only where
        ``adc.fuse_activation`` is true; with it false the ReLU runs digitally, and
        ``fused_activation`` itself returns None for such a chip (deploy's own check of the
        flag hid the mutant)."""
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval()
        x = torch.randn(32, 4)
        fused = cimsim.deploy(model, _layer_output_chip(True), x, progress=False)
        assert fused.fused_activations == ["0"]
        sim = cimsim.deploy(model, _layer_output_chip(False), x, progress=False)
        assert sim.fused_activations == []
        core = sim.sim_layers["0"].cores[0]
        assert not core.fused
        # the function deploy and the training twin decide with says so itself
        assert fused_activation(core.view, float("inf"), core.bias, "0") is None
        assert fused_activation(fused.sim_layers["0"].cores[0].view, float("inf"), core.bias,
                                "0") is not None


# ---------------------------------------------------------------------------------------------
# layers.code_use
# ---------------------------------------------------------------------------------------------


class TestCodeUse:
    def test_the_rows_checked_are_spread_over_the_sample(self, monkeypatch):
        """layers.py ``sample[spread_rows(len(sample), ONE_CODE_ROWS)]`` (mutant: the first
        32 rows): a sample whose first 40 rows are a recurrent matrix's all-zero first-step
        state and whose last 24 vary is checked on rows that vary, so a count of one code
        per setting flags ``one_code`` (the first 32 rows alone say nothing)."""
        from cimsim.mapping import layers
        from cimsim.mapping.layers import CodeUse, code_use

        _, core = _linear(4, 3)
        monkeypatch.setattr(layers, "adc_codes_used",
                            lambda part, x_int: CodeUse(3, 3, 256, 100))
        sample = np.zeros((64, 4))
        sample[40:] = np.random.default_rng(0).normal(size=(24, 4))
        assert code_use(core.view, sample, 0).one_code

    def test_calibrated_ranges_and_all_zero_matrices_are_not_checked(self, monkeypatch):
        """layers.py ``code_use``: ``not np.any(view.w_int)`` and ``range_policy is
        CALIBRATED`` return no flag (mutants: either dropped): ranges fitted to the signal,
        or a matrix of zeros (warned about already), say nothing of the converters, even
        where the count says one code per setting."""
        from cimsim.mapping import layers
        from cimsim.mapping.layers import CodeFlags, CodeUse, code_use

        monkeypatch.setattr(layers, "adc_codes_used",
                            lambda part, x_int: CodeUse(3, 3, 256, 100))
        sample = np.random.default_rng(0).normal(size=(40, 4))
        _, core = _linear(4, 3, ideal_chip(adc=dict(range_policy="calibrated")))
        assert code_use(core.view, sample, 0) == CodeFlags(False, False, False)
        lin = nn.Linear(4, 3)
        nn.init.zeros_(lin.weight)
        with pytest.warns(UserWarning, match="its weights are all zero"):
            sim = cimsim.deploy(lin.eval(), "ideal", torch.randn(8, 4), progress=False)
        view = sim.sim_layers["0"].cores[0].view
        assert not view.w_int.any()
        assert code_use(view, sample, 0) == CodeFlags(False, False, False)

    def test_one_code_is_neither_few_codes_nor_an_error_over_the_signal(self, monkeypatch):
        """layers.py ``few = (merged and not one ...`` and ``not (one or few) and
        _error_over_signal(...)`` (mutants: ``not one`` dropped; the error check run
        whatever the codes): one code per setting is one flag alone, ``one_code``, and the
        error check (here an engine that errs by far more than the signal) does not run."""
        from cimsim import engine
        from cimsim.mapping import layers
        from cimsim.mapping.layers import CodeFlags, CodeUse, code_use

        _, core = _linear(4, 3)
        monkeypatch.setattr(layers, "adc_codes_used",
                            lambda part, x_int: CodeUse(3, 3, 256, 100))
        monkeypatch.setattr(engine, "run",
                            lambda layer, x, **kw: (np.full((x.shape[0], 3), 1e9), None))
        sample = np.random.default_rng(0).normal(size=(40, 4))
        assert code_use(core.view, sample, 0) == CodeFlags(True, False, False)


class TestAdcCodesUsed:
    @pytest.mark.parametrize("gain, offset, values", [
        (0.0, 0.3, [0.0, 0.3]),  # + 0.3 LSB: 0.3, 0.6 -> codes 0, 1 (- 0.3: both code 0)
        (0.5, 0.0, [0.0, 0.4]),  # x 1.5: 0, 0.6 -> codes 0, 1 (x 0.5: 0, 0.2, both code 0)
    ])
    def test_static_gain_and_offset_errors_apply_as_the_kernel_applies_them(
            self, monkeypatch, gain, offset, values):
        """layers.py ``v = values * (1.0 + adc.gain_error) + adc.offset_error_lsb * d``
        (mutants: ``1.0 - gain``, ``- offset``): one conversion on a grid of step 1 from 0
        (8 codes, code = floor(v / 1 + 0.5)) given the two noise-free values shown: both
        errors move the second value past the first code boundary, two codes used of two
        values; with either sign flipped, one code."""
        from types import SimpleNamespace

        from cimsim import engine
        from cimsim.mapping.layers import CodeUse, adc_codes_used

        tables = SimpleNamespace(shape=(1, 1), lvl=None, thr=None, delta=np.array([[1.0]]),
                                 lo=np.array([[0.0]]))
        adc = SimpleNamespace(n_codes=8, gain_error=gain, offset_error_lsb=offset)
        layer = SimpleNamespace(adc=tables, chip=SimpleNamespace(adc=adc))
        block = SimpleNamespace(group=0, values=np.array(values)[:, None])
        monkeypatch.setattr(engine, "analog_values", lambda layer, x_int: iter([block]))
        assert adc_codes_used(layer, np.zeros((2, 1), dtype=np.int64)) == CodeUse(2, 1, 8, 2)


# ---------------------------------------------------------------------------------------------
# layers._error_over_signal
# ---------------------------------------------------------------------------------------------


class TestErrorOverSignal:
    def test_an_error_equal_to_the_signal_is_not_over_it(self, monkeypatch):
        """layers.py ``float(np.sum((sim - ref) ** 2)) > signal`` (mutant: ``>=``): a chip
        whose every output is 0 errs by exactly the signal (Σ (0 - ref)² = Σ ref²): 0 dB,
        not below it; any output beyond that is over it."""
        from cimsim import engine
        from cimsim.mapping.layers import _error_over_signal

        _, core = _linear()
        x_int = core.view.quantize(np.random.default_rng(0).normal(size=(6, 6)))
        for scale, over in ((0.0, False), (-0.01, True)):
            def run(layer, x, scale=scale, **kw):
                return (x.astype(np.float64) @ core.view.w_int.T) * scale, None

            monkeypatch.setattr(engine, "run", run)
            assert _error_over_signal(core.view, x_int, 0) is over

    def test_each_part_is_weighed_at_its_own_weight_scale(self, monkeypatch):
        """layers.py ``s_w = view.s_w[t if view.s_w.shape[0] > 1 else 0]`` in
        ``_error_over_signal`` (mutant: part 0's scale for every part): per-column scales,
        a Linear(80 -> 5) in 3 parts (37, 37, 6 rows) whose last 43 inputs' weights are
        100 times smaller. Part 0 exact, parts 1 and 2 off by twice their product: at their
        own scales (1/100 of part 0's) the error is far below the signal; weighed at part
        0's scale it would exceed it (4 (r1² + r2²) > r0² + r1² + r2²)."""
        from cimsim import engine
        from cimsim.mapping.layers import _error_over_signal

        from .conftest import lossless_chip

        torch.manual_seed(0)
        lin = nn.Linear(80, 5)
        with torch.no_grad():
            lin.weight[:, 37:] *= 0.01
        sim = cimsim.deploy(lin.eval(), lossless_chip("column"), torch.randn(16, 80),
                            progress=False)
        view = sim.sim_layers["0"].cores[0].view
        assert len(view.parts) == 3 and view.s_w[1:].max() < 0.02 * view.s_w[0].min()
        span = {id(part): (a, b) for a, b, part in view.parts}

        def run(part, x, **kw):
            a, b = span[id(part)]
            return (x @ view.w_int[:, a:b].T) * (1.0 if a == 0 else 3.0), None

        monkeypatch.setattr(engine, "run", run)
        x_int = view.quantize(np.random.default_rng(0).normal(size=(8, 80)))
        assert _error_over_signal(view, x_int, 0) is False

    def test_a_fused_activation_is_not_compared_with_the_product(self, monkeypatch):
        """layers.py ``if view.activation is not None or ...: return False`` (mutant: only
        the block-FP check): a fused ADC's outputs are the activation's levels, not the
        integer product, so the check does not run them at all (here: an engine run that
        would err by far more than the signal is never called)."""
        from cimsim import engine
        from cimsim.mapping.layers import _error_over_signal

        torch.manual_seed(0)
        sim = cimsim.deploy(nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval(),
                            _layer_output_chip(True), torch.randn(32, 4), progress=False)
        view = sim.sim_layers["0"].cores[0].view
        assert view.activation is not None
        x_int = view.quantize(np.random.default_rng(0).normal(size=(6, 4)))
        monkeypatch.setattr(engine, "run",
                            lambda layer, x, **kw: (np.full((x.shape[0], 3), 1e9), None))
        assert _error_over_signal(view, x_int, 0) is False


# ---------------------------------------------------------------------------------------------
# layers.refuse_mapped_state
# ---------------------------------------------------------------------------------------------


class TestRefuseMappedState:
    def test_four_keys_are_all_named_without_an_ellipsis(self):
        """layers.py ``' ...' if len(mapped) > 4`` (mutant: ``>= 4``): the message names
        up to 4 keys; an attention's 4 tensors are all named, nothing left out."""
        from cimsim.mapping.layers import refuse_mapped_state

        sim, _ = _attention()
        mha = nn.MultiheadAttention(4, 2, batch_first=True)
        with pytest.raises(cimsim.errors.MappingError,
                           match=r"^0: load_state_dict holds weights of this mapped layer "
                                 r"\(in_proj_bias, in_proj_weight, out_proj\.bias, "
                                 r"out_proj\.weight\); they were programmed"):
            refuse_mapped_state(sim.sim_layers["0"], mha.state_dict(), "")


    def test_the_float_models_names_are_refused_for_a_root_layer(self):
        """layers.py ``if kept != path`` (mutant: never) and the ``("0", "Root")`` pair
        (mutant: only ``model`` dropped): a Linear deployed as the whole model is held as
        ``sim.model.0``; its float state dict (``weight``, ``bias``: no ``model.`` nor ``0.``
        before them) loaded into ``sim`` with ``strict=False`` is refused, not loaded as
        nothing with two unexpected keys."""
        torch.manual_seed(0)
        lin = nn.Linear(6, 3).eval()
        sim = cimsim.deploy(lin, "ideal", torch.randn(8, 6), progress=False)
        with pytest.raises(cimsim.errors.MappingError,
                           match=r"^0: load_state_dict holds weights of this mapped layer "
                                 r"\(bias, weight\)"):
            sim.load_state_dict(lin.state_dict(), strict=False)

class TestSubmoduleWeightsUnderFloatNames:
    """A bug found by this round (fixed): ``refuse_mapped_state`` took a layer's float-model
    names from ``source_tensors``, its own tensors only, so a submodule's weights under the
    float model's names (an attention's ``out_proj``, a weight-normed layer's
    ``parametrizations``) loaded nothing with ``strict=False``, silently (returned as
    unexpected keys, the programmed arrays unchanged). Deploy now records every parameter
    and buffer name of the source (``SimLayer.source_keys``)."""

    def test_out_proj_weights_under_the_float_models_names_are_refused(self):
        """A deployed attention (the whole model, held by a Root) given its float module's
        ``out_proj.weight`` and ``out_proj.bias``: refused as the in_proj tensors are."""
        sim, _ = _attention()
        mha = nn.MultiheadAttention(4, 2, batch_first=True)
        sd = {k: v for k, v in mha.state_dict().items() if k.startswith("out_proj.")}
        with pytest.raises(cimsim.errors.MappingError, match=r"out_proj\.bias, out_proj\.weight"):
            sim.load_state_dict(sd, strict=False)

    def test_a_wrapped_attentions_out_proj_under_the_float_name(self):
        """The attention inside a model: ``att.out_proj.weight`` (the float model's name;
        ``model.att.out_proj.weight``, the deployed one's, was refused already)."""
        torch.manual_seed(0)

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.att = nn.MultiheadAttention(4, 2, batch_first=True)

            def forward(self, x):
                return self.att(x, x, x)[0]

        x = torch.randn(2, 3, 4)
        sim = cimsim.deploy(Net().eval(), "ideal", x, progress=False)
        with pytest.raises(cimsim.errors.MappingError, match=r"\(att\.out_proj\.weight\)"):
            sim.load_state_dict({"att.out_proj.weight": torch.zeros(4, 4)}, strict=False)

    def test_a_weight_normed_layers_parametrization_under_the_float_names(self):
        """``weight_norm``'s ``parametrizations.weight.original0/1`` sit in a submodule: only
        the bias was named before, now all three."""
        from torch.nn.utils.parametrizations import weight_norm

        torch.manual_seed(0)
        model = nn.Sequential(weight_norm(nn.Linear(4, 3)), nn.ReLU(), nn.Linear(3, 2)).eval()
        sim = cimsim.deploy(model, "ideal", torch.randn(5, 4), progress=False)
        sd = {k: v for k, v in model.state_dict().items() if k.startswith("0.")}
        with pytest.raises(cimsim.errors.MappingError,
                           match=r"\(0\.bias, 0\.parametrizations\.weight\.original0, "
                                 r"0\.parametrizations\.weight\.original1\)"):
            sim.load_state_dict(sd, strict=False)


# ---------------------------------------------------------------------------------------------
# layers.SimLayer._matmul in simulated calibration (deploy's call log, pending matrices)
# ---------------------------------------------------------------------------------------------


class _Twice(nn.Module):
    """``a``, then ``b``, then ``a`` again in the forward."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 6)

    def forward(self, x):
        return self.a(torch.relu(self.b(torch.relu(self.a(x)))))


def _simulated_calibration(monkeypatch, model):
    """Deploy ``model`` with simulated calibration; the names of the matrices run on the
    arrays (``MatmulCore.run``), recalibrated, and whose code use was checked during the
    deploy, in order."""
    from cimsim.mapping.layers import MatmulCore

    chip = cimsim.load_chip("rram-22nm")
    chip = chip.replace(adc=chip.adc.replace(range_policy="calibrated",
                                             calibration_mode="simulated"))
    runs, recalibrated, checked = [], [], []
    real_run, real_recalibrate = MatmulCore.run, MatmulCore.recalibrate
    real_check = MatmulCore._check_codes

    def check_codes(self, sample):
        checked.append(self.name)
        return real_check(self, sample)

    def run(self, x):
        runs.append(self.name)
        return real_run(self, x)

    def recalibrate(self):
        recalibrated.append(self.name)
        return real_recalibrate(self)

    monkeypatch.setattr(MatmulCore, "run", run)
    monkeypatch.setattr(MatmulCore, "recalibrate", recalibrate)
    monkeypatch.setattr(MatmulCore, "_check_codes", check_codes)
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cimsim.deploy(model.eval(), chip, x, progress=False)
    return runs, recalibrated, checked


class TestSimulatedCalibrationOrder:
    def test_a_matrix_called_twice_takes_the_place_of_its_first_call(self, monkeypatch):
        """layers.py ``if self.call_log is not None and core not in self.call_log`` (mutant:
        every call logged): ``a`` runs before and after ``b``; its stage is the first (the
        first call's place), so ``b`` alone is refitted on simulated inputs, not ``a`` (a
        second entry of ``a`` put it after ``b``)."""
        runs, recalibrated, _ = _simulated_calibration(monkeypatch, _Twice())
        assert recalibrated == ["b"]
        assert runs == ["a", "a"]  # b's pass: both calls of a simulate, b records in float

    def test_a_stage_not_yet_refitted_runs_in_float(self, monkeypatch):
        """layers.py ``if core.pending: return core.float_run(x)`` (mutant: pending not
        read): three Linear stages 0, 2, 4; while stage 2 records, stage 4 (its ADC not
        final) runs in float, so only 0 (pass of 2) and 0, 2 (pass of 4) run on the
        arrays during the deploy."""
        model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(),
                              nn.Linear(6, 3))
        runs, recalibrated, _ = _simulated_calibration(monkeypatch, model)
        assert recalibrated == ["2", "4"]
        assert runs == ["0", "0", "2"]

    def test_a_refitted_stage_checks_its_codes_again(self, monkeypatch):
        """layers.py ``recalibrate``: ``self._check_codes(stats.sample)`` after the refit
        (mutant: not called): the one-code / few-codes / error flags describe the ADCs the
        matrix runs with, so stages 2 and 4 are checked again after their refit."""
        model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(),
                              nn.Linear(6, 3))
        _, _, checked = _simulated_calibration(monkeypatch, model)
        assert checked == ["0", "2", "4", "2", "4"]

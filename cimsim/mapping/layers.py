"""Simulated layers: torch modules whose matrix products run on the simulated arrays.

Each weight matrix lives in a :class:`MatmulCore` (NumPy + the engine). A module is first in
*observe* mode (it computes in float and records its inputs: the calibration pass), then
:meth:`finalize` quantizes, programs and calibrates it, and from then on it *simulates*.

Dequantization (what a test re-implementing the quantized model must do):

    x_int = clip(rint(x / s_x), lo, hi)                      (per-tensor s_x, float64)
    y     = Σ_t (x_int[:, tile t] @ w_int[:, tile t].T) · (s_x · s_w[t]) + bias   (float64)

then cast to the input dtype; ``t`` runs over row tiles for ``column`` weight granularity and is
a single term otherwise. Block floating-point inputs (``quant.act_format = 'block_fp'``): ``t``
runs over row tiles and ``s_x`` is ``2^X[:, t]``, one power of two per vector and row tile
(``EngineView.encode``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import engine
from .._eager import eager
from ..adc.activation import FusedActivation
from ..arrays._rng import stream_key
from ..arrays.drift import calibration_read_events
from ..arrays.program import ProgrammedLayer, default_row_tiles
from ..config import ActFormat, ADCPlacement, ChipConfig, RangePolicy
from ..errors import MappingError
from ..events import Action, Component, Events, event_key
from ..work import Block, LayerWork
from .functional import (
    linear_through,
    refuse_non_float_input,
    refuse_swapped_weights,
    refuse_transformed_inputs,
    weight_view,
)
from .matrix import (
    EngineView,
    InputStats,
    calibrate_adcs,
    coarse_inputs,
    engine_view,
    group_max_abs,
    group_name,
    packed_groups,
    spread_rows,
)
from .naming import refuse_signed_together
from .weight_view import TensorMeta, ViewsWeights

__all__ = ["CodeFlags", "CoreTrace", "MatmulCore", "SimConv", "SimLinear",
           "SimMultiheadAttention", "SimLayer", "adc_codes_used", "code_use", "fused_activation",
           "refuse_mapped_state"]

log = logging.getLogger(__name__)


ONE_CODE_ROWS = 32
"""Calibration rows on which deploy checks a matrix's ADC code use
(:attr:`MatmulCore.one_code`): enough to see a signal vary, few next to programming."""


FEW_CODES = 2
"""Codes per ADC setting, on average over the calibration rows, at or below which deploy warns
that a matrix's outputs barely follow its inputs (:attr:`MatmulCore.few_codes`), where its ADC
has at least 8 codes."""


class MatmulCore:
    """One float weight matrix ``w`` (N, K) (+ bias) mapped onto the arrays."""

    error_over_signal = False
    """On the calibration rows the check reads (:meth:`_check_codes`), its simulated integer
    outputs, noise included (a fixed seed of its own), err from its integer product by more
    than that product's size (SQNR below 0 dB): converters that read several codes each yet,
    shift-added over many slices and planes, swamp the signal (a 4b/4b eDRAM macro with 5-b
    full-scale SARs: -16 dB on its first layer, its accuracy halved, without a word). A class
    default: a model pickled before it existed has none."""

    few_codes = False
    """Its ADC settings read at most :data:`FEW_CODES` codes each on average (not one for all:
    :attr:`one_code`) on the calibration sample, noise-free, of at least 8: its outputs barely
    follow its inputs (a 64-64-10 MLP at 96 % in float scored 10 % on a 1024-row chip whose
    8-b converters read 1.5 codes each, without a word). A class default: a model pickled
    before it existed has none."""

    def __init__(self, name: str, w: np.ndarray, bias: np.ndarray | None, chip: ChipConfig,
                 seed: int, row_tiles: list[tuple[int, int]] | None = None,
                 digital: bool = False, layer_max_abs: float | None = None,
                 packed_groups: int = 1):
        self.name = name
        self.packed_groups = packed_groups
        """Groups on this matrix's block diagonal (``array.group_packing``): its zero blocks
        are cells the arrays read, not multiply-accumulates of the layer, so the logical
        ``layer/mac`` count is the pack's M·K·N over this."""
        self.layer_max_abs = layer_max_abs
        """The largest |w| of the layer when this is one group of it (``grouped_cores``): an
        all-zero group takes the layer's scale (``engine_view``); None: the matrix's own."""
        self.digital = digital
        """Kept digital (excluded): runs in float, programs no arrays, counts no events."""
        self.w = np.asarray(w, dtype=np.float64)
        self.bias = None if bias is None else np.asarray(bias, dtype=np.float64)
        self.chip = chip
        self.seed = seed
        n, k = self.w.shape
        self.row_tiles = row_tiles or default_row_tiles(k, chip.array.n_rows)
        self.stats: InputStats | None = InputStats(seed)
        """Calibration statistics of the inputs (until :meth:`finalize`)."""
        self._offsets: np.ndarray | None = None
        self.calls = 0
        self.events = Events()
        self.n_vectors = 0
        """Input vectors simulated since deploy (or the last :meth:`reset`)."""
        self.activation_clamp: float | None = None
        """Set by deploy when the layer's only consumer is a ReLU (``inf``) or a clamped one
        (ReLU6: 6): with a layer-output ADC the conversion then produces the activation."""
        self.view: EngineView | None = None
        self.torch_core: Any = None
        """Set by ``SimModel.use_backend('torch', device)``: a ``TorchMatmul`` running the
        programmed parts on a torch device instead of the Numba engine."""
        """The matrix as the engine runs it (set by :meth:`finalize` / :meth:`adopt`)."""
        self.n_adc_clipped = 0
        """Conversions that clipped (``engine.RunResult.n_clipped``) since deploy or
        :meth:`reset`."""
        self.n_input_clipped = 0
        """Inputs the input quantizer saturated (``EngineView.encode_counted``) since deploy or
        :meth:`reset`, of :attr:`n_input_values` quantized."""
        self.n_input_values = 0
        self.stage = 0
        """Its blocks' :attr:`cimsim.work.Block.stage` (the cost model's latency order)."""
        self.lag_vectors = 0.0
        """Its blocks' :attr:`cimsim.work.Block.lag_vectors` (a pipeline's fill)."""
        self.pending = False
        """Simulated calibration (``adc.calibration_mode = 'simulated'``): not yet calibrated
        on its simulated inputs, so it runs in float meanwhile (its ADC is not final)."""
        self.recorder: InputStats | None = None
        """Simulated calibration: the statistics of the inputs this matrix sees in simulation,
        while it records them (it runs in float meanwhile)."""
        self.tracer: CoreTrace | None = None
        """Set by ``SimModel.trace`` for its passes: compares every call with the float
        matrix."""
        self.one_code = False
        """Every ADC setting read one code on the calibration sample, noise-free
        (:meth:`_check_codes`): the outputs do not follow the inputs."""
        self.zero_inputs = False
        """Every calibration input of the matrix was 0: its input scale and ADC ranges were
        set from no signal (the input step 1, the columns their full scale)."""
        self.coarse_inputs = False
        """Half its nonzero calibration input vectors lie within a 32nd of the input range
        (:func:`~cimsim.mapping.matrix.coarse_inputs`): the step is set by an outlier."""

    @property
    def shape(self) -> tuple[int, int]:
        return self.w.shape  # type: ignore[return-value]

    def observe(self, x: np.ndarray) -> None:
        """Record calibration inputs (M, K) (:class:`~cimsim.mapping.matrix.InputStats`)."""
        assert self.stats is not None, "observe() after finalize()"
        self.stats.observe(x, self.name)

    @staticmethod
    def share_statistics(cores: list[MatmulCore]) -> None:
        """Make cores that read one input tensor (the groups of a conv) use one activation
        scale: per-tensor quantization, as the hardware applies one input quantizer."""
        InputStats.share([c.stats for c in cores if c.stats is not None])

    def finalize(self) -> None:
        """Quantize, program (variation drawn from the seed) and calibrate the ADCs."""
        stats, self.stats = self.stats, None
        if self.digital:
            return
        assert stats is not None, "finalize() twice"
        self.zero_inputs = stats.all_zero
        self.n_calibration_vectors = stats.n_seen  # deploy's check of few (routed) inputs
        view = engine_view(self.w, self.chip, stats, seed=self.seed,
                           row_tiles=self.row_tiles, name=self.name,
                           activation=self._fused_activation, layer_max_abs=self.layer_max_abs)
        self._take(view)
        self._check_codes(stats.sample)
        self.coarse_inputs = coarse_inputs(view, stats)

    def start_recording(self) -> None:
        """Simulated calibration: record the inputs of the next forwards (run in float)."""
        if not self.digital:
            self.recorder = InputStats(self.seed)  # same seed: the same rows are sampled
            self.pending = False

    def recalibrate(self) -> None:
        """Simulated calibration: fit the ADCs to the inputs recorded since
        :meth:`start_recording` (scales and programmed cells stay); a matrix the recording
        forwards never reached keeps its float-calibrated ADCs."""
        stats, self.recorder = self.recorder, None
        if self.digital or stats is None:
            return
        assert self.view is not None, "recalibrate() before finalize()"
        if stats.sample is None or stats.n_seen == 0:
            log.warning("layer %r: not reached by the simulated calibration pass; its ADC "
                        "keeps the ranges fitted on float inputs", self.name)
            return
        self._take(calibrate_adcs(self.view, stats.sample, self.view.activation))
        self._check_codes(stats.sample)

    def _check_codes(self, sample: np.ndarray | None) -> None:
        """Set :attr:`one_code`, :attr:`few_codes` and :attr:`error_over_signal` from the
        calibration ``sample`` (:func:`code_use`)."""
        self.one_code, self.few_codes, self.error_over_signal = code_use(
            self.view, sample, self.seed)

    def _take(self, view: EngineView) -> None:
        """Simulate the matrix as ``view`` holds it (integers, scales, programmed parts)."""
        self.view = view
        # fixed once programmed: computed here, not on every forward
        self._offsets = view.offsets if view.zero_point else None

    # What the programmed matrix holds is read from its view: one source, nothing mirrored.
    @property
    def parts(self) -> list[tuple[int, int, ProgrammedLayer]]:
        """(first row, stop row, programmed layer) of every part; empty before finalize."""
        return [] if self.view is None else list(self.view.parts)

    @property
    def w_int(self) -> np.ndarray | None:
        return None if self.view is None else self.view.w_int

    @property
    def s_w(self) -> np.ndarray | None:
        return None if self.view is None else self.view.s_w

    @property
    def s_x(self) -> float:
        return 1.0 if self.view is None else self.view.s_x

    @property
    def signed(self) -> bool:
        return self.view is not None and self.view.input_signed

    @property
    def fused(self) -> bool:
        """Whether the ADC is this layer's activation quantizer."""
        return self.view is not None and self.view.activation is not None

    def adopt(self, view: EngineView | None) -> None:
        """Take a matrix already quantized, programmed and calibrated elsewhere (the training
        twin's ``to_engine()``) instead of :meth:`finalize`: its integers, scales and ADC
        tables are used as they are, not recalibrated. ``None`` only for a core kept
        digital."""
        self.stats = None
        if self.digital:
            return
        if view is None:
            raise MappingError(f"no engine view for the matrix {self.name!r}")
        if view.w_int.shape != self.w.shape:
            raise MappingError(f"layer {self.name!r}: the view holds a {view.w_int.shape} "
                               f"matrix, the layer a {self.w.shape} one")
        self._take(view)

    def set_time(self, t_s: float) -> None:
        """See the programmed parts ``t_s`` seconds after programming (the same drawn
        devices, ``ProgrammedLayer.with_time``); a drift compensation's calibration read is
        counted in :attr:`events`."""
        view = self.view
        if self.digital or view is None:
            return
        parts = tuple((a, b, layer.with_time(t_s)) for a, b, layer in view.parts)
        self._take(dataclasses.replace(view, parts=parts))
        for _, _, layer in parts:
            self.events = self.events + Events(calibration_read_events(layer))

    def _fused_activation(self, view: EngineView) -> FusedActivation | None:
        """The activation the layer-output ADC applies, or None (the model's ReLU runs as is),
        for the programmed matrix ``view``."""
        return fused_activation(view, self.activation_clamp, self.bias, self.name)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Simulated ``x @ w.T + bias`` for float inputs (M, K) -> float64 (M, N)."""
        if self.digital:
            return self.float_run(x)
        view = self.view
        assert view is not None, "run() before finalize()"
        try:
            x_int, x_exp, n_saturated = view.encode_counted(x)
        except ValueError as exc:  # NaN / inf inputs: which layer met them first
            raise MappingError(f"layer {self.name!r}: {exc}") from None
        self.n_input_clipped += n_saturated
        self.n_input_values += x_int.size
        y = np.zeros((x.shape[0], self.w.shape[0]))
        call_seed = stream_key(self.seed, 1000 + self.calls)
        self.calls += 1
        fused = view.activation is not None
        results = (self.torch_core.run(x_int, view) if self.torch_core is not None else
                   [engine.run_detailed(layer, x_int[:, a:b], noise_seed=stream_key(call_seed, t))
                    for t, (a, b, layer) in enumerate(view.parts)])
        for t, res in enumerate(results):
            y_int, ev = res.y, res.events
            self.n_adc_clipped += res.n_clipped
            if self._offsets is not None and not fused:  # a fused ADC has it in its refs
                y_int = y_int - self._offsets[t]
            s_w = view.s_w[t if view.s_w.shape[0] > 1 else 0]
            if x_exp is None:
                y += y_int * (view.s_x * s_w)
            else:  # block FP: this part's power of two per vector (exact)
                y += y_int * (np.ldexp(1.0, x_exp[:, t])[:, None] * s_w)
            if self.packed_groups > 1:
                mac = event_key(Component.LAYER, Action.MAC)
                ev = ev + Events({mac: -ev.get(mac) * (1.0 - 1.0 / self.packed_groups)})
            self.events = self.events + ev
        self.events = self.events + self._digital_events(x.shape[0])
        self.n_vectors += x.shape[0]
        if self.bias is not None and not self.fused:  # a fused ADC has it in its thresholds
            y += self.bias
        return y

    def _digital_events(self, m: int) -> Events:
        """What the digital back end does after the arrays for ``m`` input vectors.

        Every part's integer outputs are dequantized: one multiply per output per part (the
        run counts them; the cost model only prices them). With per-column scales
        (``weight_granularity = 'column'``) each row tile is a part, and its dequantized
        outputs are sent and added digitally: one add and one accumulator-wide word per output
        per extra part. With an activation zero point (``quant.act_zero_point``), each part's
        integer outputs get the exact correction ``− z·Σ_k w_int[n, k]``: one accumulator-wide
        add per output per part (``digital.correction_add``), unless a fused ADC folds it
        into its references. With the A-shift (``dac.shift_unsigned_inputs``, z = −2^(B_x−1))
        the same add is ``digital.shift_correction_add`` and every input element's shift to
        signed is one ``dac.input_shift``; the signed drive itself is in the engine's DAC
        pulses and cell reads (a post-ReLU zero becomes −2^(B_x−1), a driven MSB plane).
        """
        n_out = float(m) * self.w.shape[0]
        counts = {event_key(Component.DIGITAL, Action.DEQUANT_MULTIPLY): n_out * len(self.parts)}
        if self._offsets is not None and not self.fused:
            # the zero-point correction: one add of a stored constant per output per part
            assert self.view is not None
            shift = self.view.zero_point < 0  # A-shift: its own event (docs/papers.md)
            kind = Action.SHIFT_CORRECTION_ADD if shift else Action.CORRECTION_ADD
            counts[event_key(Component.DIGITAL, kind,
                             self.chip.accumulator_bits)] = n_out * len(self.parts)
        if self.view is not None and self.view.zero_point < 0:
            # A-shift: every input code is shifted to signed before the drivers (its MSB
            # inverted), once per input element
            counts[event_key(Component.DAC, Action.INPUT_SHIFT, self.chip.input_bits)] = (
                float(m) * self.w.shape[1])
        if len(self.parts) > 1:
            acc = self.chip.accumulator_bits
            merges = n_out * (len(self.parts) - 1)
            counts[event_key(Component.ACCUMULATOR, Action.ADD, acc)] = merges
            counts[event_key(Component.INTERCONNECT, Action.BIT)] = merges * acc
        return Events(counts)

    def reset(self) -> None:
        """Forget the events, vectors and clip counts of earlier runs (the programmed arrays
        stay)."""
        self.restore((Events(), 0, 0, 0, 0))

    def counters(self) -> tuple[Events, int, int, int, int]:
        """What a run adds to: events, vectors, clipped conversions, saturated and quantized
        inputs (for :meth:`restore`: a trace leaves them as they were)."""
        return (self.events, self.n_vectors, self.n_adc_clipped, self.n_input_clipped,
                self.n_input_values)

    def restore(self, counters: tuple[Events, int, int, int, int]) -> None:
        """Set what :meth:`counters` returned."""
        (self.events, self.n_vectors, self.n_adc_clipped, self.n_input_clipped,
         self.n_input_values) = counters

    def blocks(self) -> list[Block]:
        """The programmed parts, each with the vectors it processed."""
        return [Block(layer, float(self.n_vectors), self.stage, self.lag_vectors,
                      merged_row_tiles=len(self.parts))
                for _, _, layer in self.parts]

    def float_run(self, x: np.ndarray) -> np.ndarray:
        return float_product(x, self.w, self.bias)

    @property
    def n_arrays(self) -> int:
        return sum(layer.n_arrays for _, _, layer in self.parts)

    @property
    def n_cells(self) -> int:
        return sum(layer.n_inputs * layer.n_phys_cols for _, _, layer in self.parts)



def float_product(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``x @ w.T + bias`` in float64 NumPy: deploy's float pass, and the training twin's
    (``prepare``), so that both record the same inputs of the next layer bit for bit."""
    y = x @ w.T
    return y + bias if bias is not None else y


def fused_activation(view: EngineView, clamp: float | None, bias: np.ndarray | None,
                     name: str) -> FusedActivation | None:
    """The activation a layer-output ADC applies to the programmed matrix ``view`` whose only
    consumer is a ReLU clamped at ``clamp`` (None: no such consumer), or None (the model's
    ReLU runs as is; a warning says why). ``cimsim.deploy`` and the training twin
    (``cimsim.train.prepare``) decide with this one function."""
    chip = view.chip
    adc = chip.adc
    if (clamp is None or adc.placement is not ADCPlacement.LAYER_OUTPUT
            or not adc.fuse_activation):
        return None
    layer = view.parts[0][2]
    why = None
    if adc.range_policy is not RangePolicy.CALIBRATED:
        why = f"adc.range_policy = {adc.range_policy.value!r} (needs 'calibrated')"
    elif view.block_fp:
        why = "block floating-point inputs scale every vector by its own exponent"
    elif len(view.parts) > 1:
        why = "its row tiles are dequantized separately (weight_granularity = 'column')"
    elif np.any(layer.x_sum_coef != 0):
        why = ("its output needs a digital correction after the ADC (weight_encoding = "
               f"{chip.weight_encoding.value!r}, device.off_current_compensation = "
               f"{chip.device.off_current_compensation.value!r})")
    if why is None:
        kappa = layer.conv_coef * view.s_x * view.s_w[0][layer.out_col]
        if np.all(kappa > 0):
            b = np.zeros(kappa.size) if bias is None else bias[layer.out_col]
            # the zero-point correction is a constant per output: into the references too
            b = b - view.offsets[0][layer.out_col] * view.s_x * view.s_w[0][layer.out_col]
            return FusedActivation(kappa, b, float(clamp))
        why = "a conversion has a non-positive output scale"
    log.warning("layer %r: ADC not fused with the following ReLU: %s", name, why)
    return None


class CoreTrace:
    """What ``SimModel.trace`` gathers on one matrix, as sums over its calls.

    A trace runs every batch twice. In the float pass (``simulate = False``) the matrix runs
    in float and keeps its outputs: the float model's output of this matrix. In the simulated
    pass it runs on the arrays, and each output ``y_s`` is compared with the float matrix fed
    the same (simulated) input, ``y_f = float_run(x)`` (the per-layer error), and with the float
    pass's output ``y_F`` of the same call (the error accumulated along the network). Where the
    ADC is the layer's fused ReLU (``MatmulCore.fused``) both references go through that ReLU,
    as the simulated output does. A few of the integer inputs are kept for the code count
    (:func:`adc_codes_used`).

    The calls of a batch's two passes pair in order. Where they cannot (a routed expert or a
    loop given other inputs by the simulated pass than by the float one: another number of
    calls, or of rows), the batch adds nothing to the sums against y_F and counts in
    ``unpaired_batches``: paired call by call, such a batch left an expert the simulation
    routed every token to with an accumulated error of 0 ("exact") while the model's output
    was 136 % off.
    """

    _ACC = ("acc_ref2", "acc_err2", "acc_dot", "acc_sim2")

    def __init__(self, max_code_vectors: int):
        self.simulate = False
        self.reference: list[np.ndarray] = []
        """The float pass's outputs of the current batch, in call order."""
        self._next = 0
        self.sums = dict.fromkeys(("ref2", "err2", "dot", "sim2", *self._ACC), 0.0)
        """Σ y_f², Σ (y_s − y_f)², Σ y_s·y_f, Σ y_s², and the same against y_F (with Σ y_s²
        over the calls compared with y_F)."""
        self._batch = dict.fromkeys(self._ACC, 0.0)
        self._paired = True
        self.unpaired_batches = 0
        self.paired_batches = 0
        """Batches whose simulated calls paired with the float pass's, of at least one call."""
        self.n_vectors = 0
        self.code_inputs: list[np.ndarray] = []
        """Integer inputs (subsampled rows) kept for the code count."""
        self._code_budget = max_code_vectors

    def start_pass(self, simulate: bool) -> None:
        """Start the float (``simulate = False``) or the simulated pass of one batch."""
        if not simulate:
            self.finish_batch()
            self.reference = []
        self.simulate = simulate
        self._next = 0
        self._paired = True
        self._batch = dict.fromkeys(self._ACC, 0.0)

    def finish_batch(self) -> None:
        """Add the simulated pass's comparison with y_F to the sums, where its calls paired
        with the float pass's (as many, of the same shapes)."""
        if not self.simulate:
            return
        if self._paired and self._next == len(self.reference):
            for k in self._ACC:
                self.sums[k] += self._batch[k]
            self.paired_batches += self._next > 0
        else:
            self.unpaired_batches += 1
        self.simulate = False

    def step(self, core: MatmulCore, x: np.ndarray) -> np.ndarray:
        """One call of ``core`` on inputs (M, K) in the current pass; its output (M, N)."""
        if not self.simulate:
            y = core.float_run(x)
            self.reference.append(self._as_output(core, y))
            return y
        y_sim = core.run(x)
        if core.digital:  # runs in float: nothing to compare, nothing converted
            return y_sim
        y_f = self._as_output(core, core.float_run(x))
        s = self.sums
        s["ref2"] += float(np.sum(y_f * y_f))
        s["err2"] += float(np.sum((y_sim - y_f) ** 2))
        s["dot"] += float(np.sum(y_sim * y_f))
        s["sim2"] += float(np.sum(y_sim * y_sim))
        if self._next < len(self.reference) and self.reference[self._next].shape == y_sim.shape:
            y_acc, b = self.reference[self._next], self._batch
            b["acc_ref2"] += float(np.sum(y_acc * y_acc))
            b["acc_err2"] += float(np.sum((y_sim - y_acc) ** 2))
            b["acc_dot"] += float(np.sum(y_sim * y_acc))
            b["acc_sim2"] += float(np.sum(y_sim * y_sim))
        else:
            self._paired = False
        self._next += 1
        self.n_vectors += x.shape[0]
        if self._code_budget > 0 and core.view is not None:
            # evenly spaced rows: a conv's im2col rows of one image are much alike
            rows = spread_rows(x.shape[0], self._code_budget)
            self.code_inputs.append(core.view.quantize(x[rows]))
            self._code_budget -= rows.size
        return y_sim

    @staticmethod
    def _as_output(core: MatmulCore, y: np.ndarray) -> np.ndarray:
        """A float output as the simulated matrix gives it: through the ReLU its ADC fuses."""
        if core.fused and core.activation_clamp is not None:
            return np.clip(y, 0.0, core.activation_clamp)
        return y


class CodeFlags(NamedTuple):
    """What :func:`code_use` finds of a matrix on its calibration sample."""

    one_code: bool
    few_codes: bool
    error_over_signal: bool


def code_use(view: EngineView | None, sample: np.ndarray | None, seed: int) -> CodeFlags:
    """Whether the programmed matrix ``view`` (its seed ``seed``) converts
    :data:`ONE_CODE_ROWS` calibration rows spread evenly over ``sample``, noise-free, to one
    code per ADC setting (:attr:`MatmulCore.one_code`), to at most :data:`FEW_CODES` on
    average (``few_codes``), or else simulates them with an error above their signal
    (``error_over_signal``). Deploy's and the training twin's check (``prepare`` warned of
    none: a model trained on a chip whose every conversion read one code, its outputs the
    same for every input, for epochs without a word). None of them for an all-zero matrix
    (warned about already), under a calibrated range policy (the ranges are fitted to the
    signal), where the rows checked are all the same input (one code on any range), nor where
    the converters merge no distinct noise-free values (a few partial sums per conversion)."""
    none = CodeFlags(False, False, False)
    if (sample is None or not len(sample) or view is None or not np.any(view.w_int)
            or view.chip.adc.range_policy is RangePolicy.CALIBRATED):
        return none
    # spread over the sample, not its first rows: those are the first batch's in the order
    # recorded, a recurrent matrix's all its zero first-step state (a GRU's weight_hh was
    # warned about as reading one code, at 0.9 % relative error on the ideal chip)
    x_int = view.quantize(sample[spread_rows(len(sample), ONE_CODE_ROWS)])
    if not np.any(x_int != x_int[:1]):
        # rows that do not vary (a depthwise group's dead channel, constant calibration
        # data) give one code on any range: nothing to say about the ADC's
        return none
    used = settings = values = 0
    codes = 2**24
    for a, b, part in view.parts:
        if part.adc is not None:
            use = adc_codes_used(part, x_int[:, a:b])
            used, settings = used + use.used, settings + use.settings
            values, codes = values + use.values, min(codes, use.codes)
    # only where the converters merge what the signal holds: a matrix of a few rows read
    # by 1-b planes and 2-b cells holds a few partial sums per conversion on any range
    # (the ideal chip's exact converters were warned about as barely following)
    merged = values > used
    one = merged and settings > 0 and used == settings
    few = (merged and not one and settings > 0 and codes >= 8
           and used <= FEW_CODES * settings)
    return CodeFlags(one, few, not (one or few) and _error_over_signal(view, x_int, seed))


def _error_over_signal(view: EngineView, x_int: np.ndarray, seed: int) -> bool:
    """Whether the engine's integer outputs for ``x_int`` (noise drawn from a seed of the
    check's own, no event or call counted) err by more than ``x_int @ w_int.T``'s size,
    each part at its own weight scale. Not for a fused activation (its outputs are the
    activation's levels) nor block floating-point inputs (a scale per vector)."""
    if view.activation is not None or view.chip.quant.act_format is not ActFormat.INT:
        return False
    offsets = view.offsets if view.zero_point else None
    sim = np.zeros((x_int.shape[0], view.w_int.shape[0]))
    ref = np.zeros_like(sim)
    for t, (a, b, part) in enumerate(view.parts):
        y = engine.run(part, x_int[:, a:b], noise_seed=stream_key(seed, 999_999 + t))[0]
        if offsets is not None:
            y = y - offsets[t]
        s_w = view.s_w[t if view.s_w.shape[0] > 1 else 0]
        sim += y * s_w
        # the product of the inputs' values, (x_int - z) @ w_int.T: with a zero point (or the
        # A-shift) the raw codes' product differs by z * sum(w) from what the chip is to give
        # (the lossless chip was warned about as erring by more than the signal)
        exact = x_int[:, a:b].astype(np.float64) @ view.w_int[:, a:b].T
        ref += (exact if offsets is None else exact - offsets[t]) * s_w
    signal = float(np.sum(ref * ref))
    return signal > 0 and float(np.sum((sim - ref) ** 2)) > signal


class CodeUse(NamedTuple):
    """What :func:`adc_codes_used` counts."""

    used: int
    """Distinct codes, summed over the layer's ADC settings (row group g, conversion c)."""
    settings: int
    """G · C."""
    codes: int
    """Codes of one conversion (2^bits, or the levels of a threshold ADC)."""
    values: int
    """Distinct noise-free analog values, summed over the settings: never below ``used``, and
    equal to it where the converters merge none (a matrix of a few rows read by 1-b planes
    and 2-b cells holds few partial sums, however fine the converter), so that few codes are
    then no sign of a range too wide."""


def adc_codes_used(layer: ProgrammedLayer, x_int: np.ndarray) -> CodeUse:
    """Distinct ADC output codes the conversions of ``layer`` produce for inputs ``x_int``,
    and the distinct analog values they convert.

    Computed outside the kernel, on the noise-free analog values (``engine.analog_values``)
    with the ADC's static gain and offset errors applied as the kernel applies them, and the
    ADC tables (linear grid, or thresholds): thermal, read and comparator noise are left out,
    so the count is that of the signal itself.
    """
    tables = layer.adc
    assert tables is not None, "adc_codes_used() on a layer without ADC settings"
    adc = layer.chip.adc
    n_groups, n_conv = tables.shape
    n_codes = tables.lvl.shape[-1] if tables.lvl is not None else adc.n_codes
    blocks: dict[int, list[np.ndarray]] = {}
    for blk in engine.analog_values(layer, x_int):
        blocks.setdefault(blk.group, []).append(blk.values.reshape(-1, n_conv))
    n_used = n_values = 0
    for g, vs in blocks.items():
        d = tables.delta[g]
        # (conversion, value) rows, each conversion's values sorted: the code is a
        # non-decreasing function of the value, so its codes come out sorted too and both
        # counts are the changes along a row (np.unique of every (setting, code) key cost
        # prepare as much as the rest of it on a model of wide layers)
        v = np.sort(np.concatenate(vs).T * (1.0 + adc.gain_error)
                    + adc.offset_error_lsb * d[:, None], axis=1)
        if not v.shape[1]:
            continue
        if tables.thr is not None:
            # code = number of thresholds <= v, as the kernel's threshold ADC counts
            codes = np.stack([np.searchsorted(tables.thr[g, c], v[c], side="right")
                              for c in range(n_conv)])
        else:
            codes = np.clip(np.floor((v - tables.lo[g][:, None]) / d[:, None] + 0.5), 0,
                            n_codes - 1)
        n_used += n_conv + int(np.count_nonzero(codes[:, 1:] != codes[:, :-1]))
        n_values += n_conv + int(np.count_nonzero(v[:, 1:] != v[:, :-1]))
    return CodeUse(n_used, n_groups * n_conv, n_codes, n_values)


@eager  # inspects tensors as SimLayer.forward does: run eagerly under torch.compile
def _check_call(layer: SimLayer, args: tuple, kwargs: dict) -> None:
    """Weights set from outside (:func:`refuse_swapped_weights`) and the inputs of a
    ``torch.func`` transform (:func:`refuse_transformed_inputs`) are refused. A simulated
    layer computes on the arrays (NumPy): it has no gradient. A deployed model runs under
    ``no_grad``, so gradient mode here was turned on by the model's own forward
    (``torch.enable_grad()`` around ``torch.autograd.grad``: a PINN's derivatives, a
    Hamiltonian's vector field): an input that requires a gradient there would fail inside
    torch ('does not require grad'), or silently differentiate only the float parts, without
    this error naming the layer."""
    if layer.own_tensors is not None:  # programmed: its own attributes are known
        refuse_swapped_weights(layer, layer.sim_name, layer.own_tensors)
    tensors = [*args, *kwargs.values()]
    refuse_transformed_inputs(layer.sim_name, tensors)
    refuse_non_float_input(layer.sim_name, args or tuple(kwargs.values())[:1])
    if not (torch.is_grad_enabled()
            and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)):
        return
    raise MappingError(
        f"{layer.sim_name}: the model's forward asks for gradients through a deployed layer "
        "(torch.enable_grad() / torch.autograd.grad in its forward, e.g. a PINN's derivatives "
        "or MAML's inner step); a simulated layer computes on the chip and has no gradient. "
        "Train such a model with cimsim.train.prepare (its twin differentiates), or keep the "
        "layers the gradient runs through digital with exclude=[...]")


def refuse_mapped_state(module: nn.Module, state_dict: Any, prefix: str, *args: Any
                        ) -> None:
    """torch's ``load_state_dict`` on ``module`` (a load_state_dict pre-hook of a deployed
    model's roots, ``sim`` and ``sim.model``, run before any module takes a value; and each
    simulated layer's own check) refuses the weights of its simulated layers among the keys:
    they were programmed into the arrays at deploy. ``strict=False`` loaded the layers kept
    digital and left the programmed ones as they were (a half-updated model, named only in
    ``unexpected_keys``); ``strict=True`` failed with a bare "Unexpected key(s)". Also under
    the float model's names: its state dict loaded into ``sim`` (no ``model.`` before them)
    or into a wrapped one-layer model (``weight``, not ``0.weight``) loaded nothing with
    ``strict=False``."""
    modules = dict(module.named_modules(prefix=prefix.rstrip(".")))
    for name, sub in modules.items():
        if not isinstance(sub, SimLayer):
            continue
        at = f"{name}." if name else ""
        own = set(sub.state_dict(prefix=at))  # the buffers and children torch loads
        mapped = [k for k in state_dict if k.startswith(at) and k not in own]
        # the float model's names: less a SimModel's "model." and a Root's "0." (their
        # parents are in ``modules``, the part of the tree being loaded, by the same path)
        path = name.split(".") if name else []
        kept = [part for i, part in enumerate(path)
                if (part, type(modules.get(".".join(path[:i]))).__name__)
                not in (("model", "SimModel"), ("0", "Root"))]
        if kept != path:
            # the layer's own tensors and its submodules' (an attention's out_proj.weight
            # loaded nothing under the float model's names); a layer unpickled from before
            # source_keys has its own tensors only
            names = {*sub.source_tensors, *sub.__dict__.get("source_keys", ())}
            floats = {".".join([*kept, t]) for t in names}
            mapped += [k for k in state_dict if k in floats]
        if mapped:
            mapped = sorted(set(mapped))
            raise MappingError(
                f"{sub.sim_name}: load_state_dict holds weights of this mapped layer "
                f"({', '.join(mapped[:4])}{' ...' if len(mapped) > 4 else ''}); they were "
                "programmed into the arrays at deploy and cannot be loaded into the deployed "
                "model (nothing was loaded): load them into the float model and deploy it "
                "again (cimsim.deploy)")


class SimLayer(ViewsWeights):
    """Base of simulated modules: a list of cores, observe/simulate mode, event totals."""

    kind = "layer"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # the simulation is NumPy and Numba, which torch.compile cannot trace (it failed deep
        # in the engine, 'sum(): argument dtype must be torch.dtype'): a compiled model that
        # holds simulated layers runs them eagerly, breaking its graph around them
        if "forward" in vars(cls):
            cls.forward = eager(vars(cls)["forward"])

    def __init__(self, name: str):
        super().__init__()
        self.sim_name = name
        self.cores: list[MatmulCore] = []
        self.simulating = False
        self.call_log: list[MatmulCore] | None = None
        """Set by deploy for the float calibration pass: every matrix is appended at its first
        call (the execution order simulated calibration follows)."""
        self.source_config: dict[str, Any] = {}
        """The source module's configuration (``kernel_size``, ``stride`` ...), set by deploy:
        a model's forward may read it (``unmappable.source_config``)."""
        self.source_tensors: dict[str, TensorMeta | None] = {}
        """The source module's weights' metadata, set by deploy: a model's forward may read
        ``layer.weight.dtype`` (a :class:`~cimsim.mapping.weight_view.WeightView`)."""
        self.source_keys: frozenset[str] = frozenset()
        """The source module's parameter and buffer names, its submodules' included (an
        attention's ``out_proj.weight``, a weight-normed layer's
        ``parametrizations.weight.original0``), set by deploy: the names its float model's
        state dict holds for it, which :func:`refuse_mapped_state` refuses."""
        self.own_tensors: dict[str, torch.Tensor] | None = None
        """The layer's tensor attributes when it was programmed (a transposed conv's bias; a
        weight the model's forward set on it during calibration, AWD-LSTM's): a later call
        finding another tensor of other values there is refused (``refuse_swapped_weights``)."""
        self.register_forward_pre_hook(_check_call, with_kwargs=True)

    def extra_repr(self) -> str:
        # what was mapped, as torch's own layers say their shapes (it printed SimConv())
        shapes = ", ".join(f"{'digital ' * c.digital}{c.w.shape[0]}x{c.w.shape[1]}"
                           for c in self.cores)
        arrays = sum(c.n_arrays for c in self.cores if not c.digital)
        return f"{self.sim_name!r}, matrices (out x in): {shapes or 'none'}, arrays={arrays}"

    def __getattr__(self, attr: str) -> Any:
        try:
            return super().__getattr__(attr)
        except AttributeError:
            config = self.__dict__.get("source_config", {})
            if attr in config:
                return config[attr]
            return weight_view(self, attr, self.__dict__.get("sim_name", "?"),
                               self.__dict__.get("source_tensors", {}))

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        # a load of a part of the tree holding this layer (a whole model's load is checked
        # before any module takes a value: refuse_mapped_state on the roots)
        refuse_mapped_state(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _apply(self, fn: Any, recurse: bool = True) -> SimLayer:
        # .to() / .double() / .cuda() of the model: the weights' views report where it went
        self.source_tensors = {a: m if m is None else m.moved(fn)
                               for a, m in self.source_tensors.items()}
        return super()._apply(fn, recurse)  # type: ignore[no-any-return]

    def finalize(self) -> None:
        if self.kind == "conv":
            MatmulCore.share_statistics(self.cores)
        # every matrix, refusing signed inputs together: attention's four projections in one
        # error, not one deploy each
        refuse_signed_together(("", core.finalize) for core in self.cores)
        self._programmed()

    def _programmed(self) -> None:
        self.simulating = True
        self.own_tensors = {a: v for a, v in vars(self).items() if isinstance(v, torch.Tensor)}

    def adopt(self, views: Mapping[str, EngineView]) -> None:
        """Instead of the calibration pass and :meth:`finalize`: every core takes the view of
        its name (:meth:`MatmulCore.adopt`)."""
        for core in self.cores:
            core.adopt(views.get(core.name))
        self._programmed()

    @property
    def events(self) -> Events:
        total = Events()
        for core in self.cores:
            total = total + core.events
        return total

    def reset_events(self) -> None:
        for core in self.cores:
            core.reset()

    def work(self) -> LayerWork:
        """What the layer did since deploy (or the last reset): a frozen value for the cost
        model and the report (``cimsim.work``)."""
        return LayerWork(
            name=self.sim_name, kind=self.kind, events=self.events,
            blocks=tuple(b for core in self.cores for b in core.blocks()),
            n_inputs=sum(c.shape[1] for c in self.cores),
            n_outputs=sum(c.shape[0] for c in self.cores),
            n_matrices=len(self.cores),
            input_signed=any(c.signed for c in self.cores),
            n_cells=sum(c.n_cells for c in self.cores),
            n_arrays=sum(c.n_arrays for c in self.cores),
            n_adc_clipped=float(sum(c.n_adc_clipped for c in self.cores)),
            n_input_clipped=float(sum(c.n_input_clipped for c in self.cores)),
            n_input_values=float(sum(c.n_input_values for c in self.cores)),
        )

    def calibration_stages(self) -> list[list[MatmulCore]]:
        """The mapped matrices in the order their inputs become known, for simulated
        calibration: matrices of one stage read inputs that none of them produces, so they
        record in one pass (the groups of a conv read one input)."""
        cores = [c for c in self.cores if not c.digital]
        return [cores] if cores else []

    def _matmul(self, core: MatmulCore, x: np.ndarray) -> np.ndarray:
        """``x @ w.T + bias`` (M, K) -> (M, N) through ``core``: in float while observing
        (the calibration pass records ``x``), on the simulated arrays once finalized."""
        if not self.simulating:
            core.observe(x)
            if self.call_log is not None and core not in self.call_log:
                self.call_log.append(core)
            return core.float_run(x)
        if core.tracer is not None:  # a fidelity trace (SimModel.trace) is running
            return core.tracer.step(core, x)
        if core.recorder is not None:  # simulated calibration: this matrix records
            core.recorder.observe(x, core.name)
            return core.float_run(x)
        if core.pending:  # simulated calibration: its ADC is not final yet
            return core.float_run(x)
        return core.run(x)

    def _np(self, x: torch.Tensor) -> np.ndarray:
        return x.detach().to("cpu", torch.float64).numpy()


class SimLinear(SimLayer):
    """``nn.Linear`` on the arrays."""

    kind = "linear"

    def __init__(self, src: nn.Linear, name: str, chip: ChipConfig, seed: int):
        super().__init__(name)
        # the weight's sizes, as nn.Linear's forward reads them: a pruner replacing the weight
        # may leave .in_features / .out_features as built
        self.out_features, self.in_features = src.weight.shape
        bias = None if src.bias is None else self._np(src.bias)
        self.cores = [MatmulCore(name, self._np(src.weight), bias, chip, seed)]

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = input  # torch names it so: a caller may pass input=
        check_linear_input(self.sim_name, x, self.out_features, self.in_features)
        lead = x.shape[:-1]
        y = self._matmul(self.cores[0], self._np(x.reshape(-1, self.in_features)))
        return torch.from_numpy(y).to(x.device, x.dtype).reshape(*lead, self.out_features)

    def linear_through(self, x: torch.Tensor, bias: torch.Tensor | None
                       ) -> torch.Tensor | None:
        """``F.linear(x, self.weight, bias)`` in the model's code (:func:`linear_through`)."""
        core = self.cores[0]
        return linear_through(self, x, bias, core.bias is not None,
                              core.activation_clamp is not None)


def check_linear_input(name: str, x: torch.Tensor, out_features: int, in_features: int
                       ) -> None:
    """nn.Linear's refusal of an input whose last dimension is not ``in_features``, naming
    the layer: a reshape would silently regroup the features (or fail naming nothing)."""
    if x.dim() == 0 or x.shape[-1] != in_features:
        shape = "x".join(map(str, x.shape)) or "scalar"
        raise RuntimeError(f"{name}: mat1 and mat2 shapes cannot be multiplied (input {shape}, "
                           f"weight {out_features}x{in_features}): the layer takes "
                           f"{in_features} input features")


def grouped_cores(name: str, w2: np.ndarray, bias: np.ndarray | None, groups: int,
                  chip: ChipConfig, seed: int, kernel: tuple[int, ...] | None
                  ) -> list[MatmulCore]:
    """One core per matrix of the stacked group matrices ``w2`` (groups · N_g, K): one group
    each, or a block-diagonal pack of several (``array.group_packing``,
    :func:`~cimsim.mapping.matrix.group_packs`), in group order, so that core j reads the
    j-th equal slice of the layer's input columns and writes the j-th of its outputs; named
    :func:`~cimsim.mapping.matrix.group_name`, seeded ``stream_key(seed, j)``, tiled by whole
    kernels when ``kernel`` is given and the chip preserves them; a group (or pack) pruned
    whole takes the layer's weight scale (:func:`~cimsim.mapping.matrix.group_max_abs`)."""
    n_p = w2.shape[0] // groups  # outputs a group; times per, a pack
    per, w2, row_tiles = packed_groups(w2, groups, kernel, chip, name)
    n, n_p = groups // per, per * n_p
    layer_max_abs = group_max_abs(w2, n)
    return [MatmulCore(group_name(name, j, n, per), w2[j * n_p:(j + 1) * n_p],
                       None if bias is None else bias[j * n_p:(j + 1) * n_p], chip,
                       stream_key(seed, j), row_tiles, layer_max_abs=layer_max_abs,
                       packed_groups=per)
            for j in range(n)]


def conv_pads(src: nn.Conv1d | nn.Conv2d | nn.Conv3d) -> list[int]:
    """The ``F.pad`` amounts (last dimension first) torch's forward of the convolution ``src``
    applies: with ``padding_mode='zeros'`` from its current ``.padding`` and ``.dilation``
    (which code may set after construction: dilated ResNets change both), ``'same'`` as torch
    resolves it (the odd pixel after); in the other modes the amounts its constructor cached
    (``_reversed_padding_repeated_twice``), which is what torch pads there."""
    return conv_pads_of(tuple(src.weight.shape[2:]), src.padding, src.dilation,
                        src.padding_mode, list(src._reversed_padding_repeated_twice))


def conv_pads_of(kernel: tuple[int, ...], padding: Any, dilation: tuple[int, ...],
                 padding_mode: str, cached: list[int]) -> list[int]:
    """:func:`conv_pads` from the values: ``cached``, the constructor's amounts (torch's
    ``_reversed_padding_repeated_twice``), pads a mode other than ``'zeros'``."""
    if padding_mode != "zeros":
        return list(cached)
    if padding == "valid":
        return [0, 0] * len(kernel)
    pads: list[int] = []
    for i in reversed(range(len(kernel))):
        if padding == "same":
            total = dilation[i] * (kernel[i] - 1)
            pads += [total // 2, total - total // 2]
        else:
            pads += [int(padding[i])] * 2
    return pads


class LiveConv:
    """A convolution's ``stride``, ``dilation`` and ``padding`` (a transposed one's
    ``output_padding`` too) as its layer holds them at each call: torch's conv reads them at
    every forward, and a model's code may set them between calls (TridentNet applies one
    kernel at several dilations, setting ``conv.dilation`` and ``conv.padding`` before each
    call). A mapped layer, or its twin, read them once when built and ran every later call at
    those, silently (on the lossless chip 4.96 off a float output of at most 4.47).
    ``update(layer)`` re-reads them; the pads follow as :func:`conv_pads` gives them."""

    def __init__(self, src: Any, transposed: bool = False):
        self.nd = src.weight.dim() - 2
        self.kernel = tuple(src.weight.shape[2:])
        self.padding_mode = src.padding_mode
        self.cached = list(getattr(src, "_reversed_padding_repeated_twice", ()))
        self.names = ("stride", "dilation", "padding") + (("output_padding",) * transposed)
        self.key: tuple | None = None
        self.update(src)

    def update(self, layer: nn.Module) -> bool:
        """Read the layer's values; whether they changed (then ``stride``, ``dilation``,
        ``padding``, ``output_padding`` and ``pads`` are the new ones)."""
        # a layer built outside deploy has no source configuration: the last values stand
        last = self.key or (None,) * len(self.names)
        values = tuple(getattr(layer, name, was) for name, was in zip(self.names, last,
                                                                      strict=True))
        if values == self.key:
            return False
        n = self.nd
        stride, dilation, padding = (_n_tuple(values[0], n), _n_tuple(values[1], n),
                                     values[2] if isinstance(values[2], str)
                                     else _n_tuple(values[2], n))
        self.stride, self.dilation, self.padding = stride, dilation, padding
        if padding == "same" and any(s != 1 for s in stride):  # as torch's conv refuses it
            raise ValueError("padding='same' is not supported for strided convolutions")
        self.output_padding = _n_tuple(values[3], n) if len(values) > 3 else (0,) * n
        self.pads = conv_pads_of(self.kernel, padding, dilation, self.padding_mode,
                                 self.cached)
        self.key = values
        return True


def _n_tuple(value: Any, n: int) -> tuple[int, ...]:
    """A conv setting as torch's forward takes it: an int for every dimension, or one each."""
    if isinstance(value, int | np.integer):
        return (int(value),) * n
    return tuple(int(v) for v in value)


class SimConv(SimLayer):
    """``nn.Conv1d`` / ``nn.Conv2d`` on the arrays (im2col; one core per group)."""

    kind = "conv"

    def __init__(self, src: nn.Conv1d | nn.Conv2d, name: str, chip: ChipConfig, seed: int):
        super().__init__(name)
        self.dim = 1 if isinstance(src, nn.Conv1d) else 2
        w = self._np(src.weight)
        if self.dim == 1:
            w = w[:, :, None, :]
        self.out_channels, cin_g, kh, kw = w.shape
        self.groups = src.groups
        self.kernel = (kh, kw)
        self.live = LiveConv(src)
        set_geometry_2d(self, self.live, self.dim)
        self.pad_mode = "constant" if src.padding_mode == "zeros" else src.padding_mode
        self.in_channels = cin_g * self.groups
        w2 = w.reshape(self.out_channels, cin_g * kh * kw)
        b = None if src.bias is None else self._np(src.bias)
        self.cores = grouped_cores(name, w2, b, self.groups, chip, seed, (kh, kw))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = input  # torch names it so: a caller may pass input=
        if x.dim() == self.dim + 1:  # unbatched (C, L) / (C, H, W), as torch's conv accepts
            return self.forward(x.unsqueeze(0)).squeeze(0)
        if x.dim() != self.dim + 2 or x.shape[1] != self.in_channels:
            # as torch's conv refuses it: im2col would silently use the first channels only
            kh, kw = self.kernel
            weight = [self.out_channels, self.in_channels // self.groups] + (
                [kw] if self.dim == 1 else [kh, kw])
            raise conv_input_error(self.sim_name, x, self.dim, self.groups, self.in_channels,
                                   weight)
        x4 = x.unsqueeze(2) if self.dim == 1 else x
        # (a layer pickled before LiveConv keeps the settings it was deployed with)
        if "live" in vars(self) and self.live.update(self):
            set_geometry_2d(self, self.live, self.dim)
        check_kernel_fits(self.sim_name, x4.shape[2:], self.pads, self.kernel, self.dilation2,
                          shown=self.dim)
        cols, (b, h_out, w_out) = im2col(self._np(x4), self.kernel, self.stride2,
                                         self.dilation2, self.pads, self.pad_mode)
        k = cols.shape[1] // len(self.cores)  # a group, or a pack of groups, per core
        outs = [self._matmul(core, cols[:, g * k:(g + 1) * k])
                for g, core in enumerate(self.cores)]
        y = torch.from_numpy(np.concatenate(outs, axis=1)).to(x.device, x.dtype)
        y = y.reshape(b, h_out, w_out, self.out_channels).permute(0, 3, 1, 2)
        return y[:, :, 0, :] if self.dim == 1 else in_format_of(y, x)


def set_geometry_2d(layer: Any, live: LiveConv, dim: int) -> None:
    """``layer.stride2``, ``dilation2`` and ``pads``: the 2-D forms of a Conv1d / Conv2d's
    current settings (a Conv1d as 1 x L), for the deployed layer and its twin alike."""
    if dim == 1:
        layer.stride2, layer.dilation2 = (1, live.stride[0]), (1, live.dilation[0])
        layer.pads = live.pads + [0, 0]
    else:
        layer.stride2, layer.dilation2 = live.stride, live.dilation
        layer.pads = live.pads


def in_format_of(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A conv's output ``y`` in the memory format torch's conv gives for the input ``x``:
    channels-last where ``x`` is (and is not also plainly contiguous), else contiguous (a
    channels-last model's later layers read it as they read torch's)."""
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())
    if (fmt is not None and y.dim() == x.dim() and x.is_contiguous(memory_format=fmt)
            and not x.is_contiguous()):
        return y.contiguous(memory_format=fmt)
    return y.contiguous()


def conv_input_error(name: str, x: torch.Tensor, nd: int, groups: int, in_channels: int,
                     weight: list[int]) -> RuntimeError:
    """The error torch's conv raises for an input of the wrong rank or channel count (an
    unfold would silently use the first channels)."""
    return RuntimeError(
        f"{name}: Given groups={groups}, weight of size {weight}, expected {nd + 1}D "
        f"(unbatched) or {nd + 2}D (batched) input with {in_channels} channels, but got input "
        f"of size {list(x.shape)}")


def check_kernel_fits(name: str, sizes: Sequence[int], pads: Sequence[int],
                      kernel: Sequence[int], dilation: Sequence[int],
                      shown: int | None = None) -> None:
    """torch's refusal of an input smaller than a convolution's (dilated) kernel, naming the
    layer: the strided windows failed in NumPy or torch with a message naming neither.
    ``sizes``, ``kernel``, ``dilation``: per spatial dimension; ``pads`` in ``F.pad``'s order
    (the last dimension's pair first); ``shown``: the trailing dimensions the message names
    (a Conv1d's 2-D form has a leading 1), default all."""
    nd = len(sizes)
    padded = [s + pads[2 * (nd - 1 - d)] + pads[2 * (nd - 1 - d) + 1]
              for d, s in enumerate(sizes)]
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    if any(s > p for s, p in zip(spans, padded, strict=True)):
        keep = nd if shown is None else shown
        raise RuntimeError(
            f"{name}: Calculated padded input size per channel: "
            f"({' x '.join(map(str, padded[-keep:]))}). Kernel size: "
            f"({' x '.join(map(str, spans[-keep:]))}). Kernel size can't be greater than actual "
            "input size")


_NP_PAD: dict[str, Literal["constant", "reflect", "edge", "wrap"]] = {
    "constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def im2col(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
           dilation: tuple[int, int], pads: list[int], pad_mode: str
           ) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Unfold (B, C, H, W) into (B·H_out·W_out, C·kh·kw) rows, columns ordered (c, i, j) as
    torch's conv weights are. NumPy only: torch's OpenMP im2col stalls badly on a busy CPU."""
    left, right, top, bottom = pads
    if any(pads):
        x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode=_NP_PAD[pad_mode])
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    b, c, h, w = x.shape
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    win = np.lib.stride_tricks.sliding_window_view(x, (span_h, span_w), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # (B, C, H_out, W_out, kh, kw)
    h_out, w_out = win.shape[2], win.shape[3]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(b * h_out * w_out, c * kh * kw)
    return cols, (b, h_out, w_out)


class SimMultiheadAttention(SimLayer):
    """``nn.MultiheadAttention`` whose input and output projections run on the arrays.

    The activation x activation products (Q·Kᵀ, softmax, ·V) stay digital, in float.
    """

    kind = "attention"

    def __init__(self, src: nn.MultiheadAttention, name: str, chip: ChipConfig, seed: int,
                 digital: frozenset[str] = frozenset()):
        """``digital``: projections kept digital, among ``q_proj``, ``k_proj``, ``v_proj``,
        ``out_proj``."""
        super().__init__(name)
        if src.bias_k is not None or src.add_zero_attn:
            raise MappingError(f"{name}: add_bias_kv / add_zero_attn are not supported")
        e = src.embed_dim
        self.embed_dim, self.num_heads = e, src.num_heads
        self.kdim, self.vdim = src.kdim, src.vdim
        self.batch_first = src.batch_first
        self.dropout = src.dropout
        # attributes torch's Transformer fast-path checks read; in_proj_bias = None keeps
        # TransformerEncoderLayer off its fused kernel (which would bypass the arrays)
        self._qkv_same_embed_dim = src._qkv_same_embed_dim
        self.in_proj_bias = None
        if src._qkv_same_embed_dim:
            wq, wk, wv = self._np(src.in_proj_weight).reshape(3, e, e)
        else:
            wq, wk, wv = (self._np(p) for p in
                          (src.q_proj_weight, src.k_proj_weight, src.v_proj_weight))
        ib = (None if src.in_proj_bias is None
              else self._np(src.in_proj_bias).reshape(3, e))
        ob = src.out_proj.bias
        self.cores = [
            MatmulCore(f"{name}.{tag}_proj", wmat, None if ib is None else ib[i], chip,
                       stream_key(seed, i), digital=f"{tag}_proj" in digital)
            for i, (tag, wmat) in enumerate((("q", wq), ("k", wk), ("v", wv)))
        ] + [MatmulCore(f"{name}.out_proj", self._np(src.out_proj.weight),
                        None if ob is None else self._np(ob), chip,
                        stream_key(seed, 3), digital="out_proj" in digital)]
        # the output projection reads the attention of the whole sequence: it cannot start
        # before q, k and v are done (a second latency stage)
        self.cores[3].stage = 1

    def _proj(self, i: int, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = self._matmul(self.cores[i], self._np(x.reshape(-1, x.shape[-1])))
        return torch.from_numpy(y).to(x.device, x.dtype).reshape(*lead, y.shape[-1])

    def calibration_stages(self) -> list[list[MatmulCore]]:
        """The q/k/v projections (they read the module's inputs), then the output projection
        (it reads what they produced)."""
        stages = [[c for c in self.cores[:3] if not c.digital],
                  [c for c in self.cores[3:] if not c.digital]]
        return [s for s in stages if s]

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        return attention(self._proj, query, key, value, key_padding_mask, need_weights,
                         attn_mask, average_attn_weights, is_causal, module=self,
                         name=self.sim_name)


def _additive_mask(mask: torch.Tensor, dtype: torch.dtype, what: str, name: str
                   ) -> torch.Tensor:
    """A boolean mask (True: masked) as -inf / 0; a float mask as it is; any other dtype
    refused, as torch refuses it (a tokenizer's 0/1 integer mask was added as a bias of 0 or
    1: no key was masked)."""
    if mask.dtype == torch.bool:
        return torch.zeros_like(mask, dtype=dtype).masked_fill(mask, float("-inf"))
    if not mask.is_floating_point():
        raise AssertionError(f"{name}: only bool and floating types of {what} are supported "
                             f"(got {mask.dtype}); a 0/1 integer mask with 1 = keep is "
                             f"{what}=(mask == 0), True where a key is masked")
    return mask.to(dtype)


def attention(project: Callable[[int, torch.Tensor], torch.Tensor], query: torch.Tensor,
              key: torch.Tensor, value: torch.Tensor, key_padding_mask: torch.Tensor | None,
              need_weights: bool, attn_mask: torch.Tensor | None, average_attn_weights: bool,
              is_causal: bool, *, module: Any, name: str
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``nn.MultiheadAttention.forward`` with the four projections done by
    ``project(i, x)`` (q, k, v, out for i = 0..3) and the activation x activation products
    (Q·Kᵀ, softmax, ·V) in float, as torch's functional implementation computes them.

    ``module`` gives ``embed_dim``, ``kdim``, ``vdim``, ``num_heads``, ``batch_first``,
    ``dropout`` and ``training``;
    ``name`` is the layer's name for errors. The deployed layer and the training twin both call
    this.
    """
    batched = query.dim() == 3
    given = {"key": key.shape, "value": value.shape}  # as called, for an error below
    if not batched:
        query, key, value = (t.unsqueeze(1) for t in (query, key, value))
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    elif module.batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    # (L, B, E) from here on, as torch's functional implementation
    embed_dim = int(module.embed_dim)
    if query.dim() != 3 or query.shape[-1] != embed_dim:
        # torch's multi_head_attention_forward asserts this too
        raise AssertionError(f"{name}: was expecting embedding dimension of {embed_dim}, but "
                             f"got {query.shape[-1]}")
    for what, t, width in (("key", key, module.kdim), ("value", value, module.vdim)):
        # the arrays' row tiles would read the first kdim / vdim features of a wider one
        if t.dim() != 3 or t.shape[-1] != int(width) or t.shape[1] != query.shape[1]:
            raise AssertionError(
                f"{name}: the {what} ({'x'.join(map(str, given[what]))}) must hold "
                f"{int(width)} features ({what[0]}dim) per element, as many elements as the "
                f"query's batch of {query.shape[1]}{'' if batched else ' (unbatched)'}")
    if key.shape[0] != value.shape[0]:
        raise AssertionError(f"{name}: key and value sequences differ in length "
                             f"({key.shape[0]} and {value.shape[0]})")
    tgt, bsz, e = query.shape
    src = key.shape[0]
    h = int(module.num_heads)
    d = e // h
    q, k, v = (project(i, t).reshape(t.shape[0], bsz * h, d).transpose(0, 1)
               for i, t in enumerate((query, key, value)))
    scores = torch.bmm(q, k.transpose(1, 2)) / math.sqrt(d)
    if attn_mask is None and is_causal:
        attn_mask = torch.ones(tgt, src, dtype=torch.bool, device=scores.device).triu(1)
    if attn_mask is not None:
        am = _additive_mask(attn_mask, scores.dtype, "attn_mask", name)
        scores = scores + (am if am.dim() == 3 else am.unsqueeze(0))
    if key_padding_mask is not None:
        if tuple(key_padding_mask.shape) != (bsz, src):  # as torch asserts: a (S, B) mask
            # of B·S elements was reshaped and masked the wrong keys
            raise AssertionError(f"{name}: key_padding_mask of shape "
                                 f"{tuple(key_padding_mask.shape)}, expected (batch, source "
                                 f"length) = ({bsz}, {src})")
        kp = _additive_mask(key_padding_mask, scores.dtype, "key_padding_mask", name)
        scores = scores + kp.view(bsz, 1, 1, src).expand(-1, h, -1, -1).reshape(bsz * h, 1, src)
    attn = torch.softmax(scores, dim=-1)
    if module.training and float(module.dropout) > 0:
        attn = F.dropout(attn, p=float(module.dropout))
    out = torch.bmm(attn, v).transpose(0, 1).reshape(tgt * bsz, e)
    out = project(3, out).reshape(tgt, bsz, e)
    if not batched:
        out = out.squeeze(1)
    elif module.batch_first:
        out = out.transpose(0, 1)
    if not need_weights:
        return out, None
    weights = attn.view(bsz, h, tgt, src)
    weights = weights.mean(dim=1) if average_attn_weights else weights
    return out, (weights if batched else weights.squeeze(0))


def layer_seed(seed: int, name: str) -> int:
    """A mapped layer's seed, derived from its name: excluding or adding a layer leaves the
    others' draws unchanged (deploy and the training twin derive it alike)."""
    return stream_key(seed, zlib.crc32(name.encode()))


class Root(nn.Module):
    """A mappable module given as the whole model, held as child ``"0"`` so that it can be
    replaced like any other layer; calls pass every argument through (an
    ``nn.MultiheadAttention`` takes three, which ``nn.Sequential`` would refuse)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.add_module("0", module)
        # in the module's mode: a new module trains, and a deployed eval nn.GRU warned at its
        # first call that '(the model)' was in training mode
        self.training = module.training

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        child = self._modules["0"]
        assert child is not None
        return child(*args, **kwargs)


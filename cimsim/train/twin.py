"""A differentiable torch twin of the engine, and ``prepare`` (a model made of twins).

:class:`TwinMatmul` computes one weight matrix's forward the way the chip does (the
decomposition of ``docs/hardware-model.md``), in torch ops, so that a model can be trained
through it with ordinary optimizers:

1. activations -> integers with a learnable per-tensor scale (LSQ), weights -> integers with a
   learnable scale per tensor / output channel / (row tile, output) (LSQ);
2. weights -> the cell digits of every conversion column (each ``weight_encoding``, each
   ``bits_per_cell`` slice), inputs -> ``dac_bits`` planes (unsigned, two's complement with a
   signed MSB plane, or two passes);
3. every (row group, plane, conversion) partial sum from ONE batched matmul: the planes are
   stacked along the vector dimension and the row groups along the batch dimension;
4. nominal off-state current, ADC gain/offset error, the linear ADC (its grid from the engine's
   :class:`~cimsim.adc.ADCTables`, the step learnable for calibrated ranges) or the ramp
   NL-ADC (thresholds and levels);
5. digital shift-add over planes and column kinds, the exact ``x_sum_coef`` correction, and
   dequantization with ``s_x · s_w`` (+ bias).

In eval mode the twin equals ``cimsim.engine.run`` on the layer it hands back
(:meth:`TwinMatmul.to_engine`): exactly on a lossless chip (a float64 twin; a float32 one
dequantizes in float32, about one ulp apart), and code for code on lossy ADCs up to float ties
at code boundaries. Rounding, flooring and clamping use straight-through
estimators (:mod:`cimsim.train.ste`); the digits and planes of an integer pass the gradient of
the integer on (their significances sum it back exactly). See ``docs/training.md``.

Initial values come from the engine's own view of the layer: the weight and activation scales
of :mod:`cimsim.mapping.quant` and the ADC tables that :func:`cimsim.engine.calibrate` computes
on the :func:`~cimsim.arrays.program.program`-med layer, from the same calibration sample and
seeds as ``cimsim.deploy``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import numbers
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize, prune

from .. import engine
from .._eager import eager
from .._seed import check_seed
from ..adc import ADCTables, FusedActivation, calibration_units
from ..adc.activation import ActivationLevels, activation_tables, fit_activation_levels
from ..arrays._gemm import ieee_float32
from ..arrays._rng import stream_key
from ..arrays.analog import column_transfer
from ..arrays.drift import (
    aged_conductance,
    check_time,
    finite_seconds,
    gain_ratio,
    read_noise_growth,
    reference_drift,
    state_levels,
    warn_static_time,
)
from ..arrays.encoding import conversion_kinds, plane_layout
from ..arrays.program import (
    ProgrammedLayer,
    _analog_pairs,
    cell_conductance,
    draw_devices,
    n_arrays_for_shape,
    off_conductance,
)
from ..config import (
    ADCConfig,
    ADCKind,
    ADCPlacement,
    CalibrationMode,
    ChipConfig,
    DriftCompensation,
    OffCurrentCompensation,
    RangePolicy,
    SignedInputMode,
    SliceReadout,
    WeightEncoding,
    WeightGranularity,
    WeightScale,
    as_chip,
)
from ..errors import ConfigError, MappingError
from ..mapping.affine import AffineSource, affine_source
from ..mapping.deploy import (
    _UNSUPPORTED,
    EXCLUDED_REASON,
    NOT_MAPPABLE,
    UNSUPPORTED_REASON,
    ModuleWalk,
    SimModel,
    _check_capacity,
    _excluded,
    _guard_inside,
    _keep_off_fused_kernels,
    _relu_consumers,
    batches_noted,
    calibration_pass,
    carry_hooks,
    check_batch_dim,
    deploy,
    deploy_views,
    exclude_patterns,
    no_layer_error,
    refuse_simulated,
    replayable,
    user_model,
    warn_coarse_inputs,
    warn_code_use,
    warn_unmatched_excludes,
    warn_unsupported,
    warn_zero_inputs,
)
from ..mapping.functional import (
    linear_through,
    refuse_non_float_input,
    refuse_swapped_weights,
    refuse_transformed_inputs,
    warn_functional,
    watch_functional_weights,
    weight_view,
)
from ..mapping.layers import (
    CodeFlags,
    LiveConv,
    Root,
    attention,
    check_kernel_fits,
    check_linear_input,
    code_use,
    conv_input_error,
    float_product,
    fused_activation,
    in_format_of,
    layer_seed,
    set_geometry_2d,
)
from ..mapping.matrix import (
    MAX_CALIBRATION_ROWS,
    EngineView,
    InputStats,
    calibrate_adcs,
    coarse_inputs,
    engine_view,
    group_max_abs,
    group_name,
    pack_groups,
    packed_groups,
    program_parts,
    unpack_groups,
)
from ..mapping.naming import (
    finalize_layers,
    refuse_nonfinite_weights,
    refuse_signed_together,
)
from ..mapping.quant import (
    act_range,
    binary_codes,
    block_fp_acts,
    pow2_scale,
    zero_point_offsets,
)
from ..mapping.unmappable import (
    attribute_state,
    carry_tensor_hooks,
    copy_model,
    deepcopy,
    explain_stop_iteration,
    hook_weights_detached,
    kept_digital_row,
    overridden_forward,
    pruning_masks,
    restore_attributes,
    source_config,
)
from ..mapping.weight_view import ViewsWeights, tensor_metas
from ._data import eval_pass
from ._kernels import dac_planes, fused_convert
from ._modes import evaluated, module_modes, restore_modes
from .ste import grad_scale, lsq_factor, round_ste, with_surrogate
from .tied import (
    carry_grad_hooks,
    freeze_like_sources,
    keep_pruned_biases,
    refuse_step_hooks,
    retie_float_copy,
    tie_shared_weights,
)

__all__ = ["EngineView", "FusedReLU", "PreparedModel", "TwinConv", "TwinLinear", "TwinMatmul",
           "TwinMultiheadAttention", "TwinOptions", "engine_view", "prepare", "recalibrate_adcs"]

# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------
#: Code widths (input or weight bits) from which a float32 twin is warned about: float32
#: resolves x / scale to 2^-(24 - B) of a code, and ties round otherwise than in float64.
FLOAT32_WIDE_CODES = 12


@dataclass(frozen=True, slots=True, kw_only=True)
class TwinOptions:
    """What a twin learns and injects (``prepare(..., **options)``)."""

    learn_weight_scale: bool = True
    """Learn the weight scales (LSQ) at the chip's ``quant.weight_granularity``."""
    learn_act_scale: bool = True
    """Learn the per-tensor activation scale (LSQ)."""
    learn_adc_step: bool = True
    """Learn the step of a linear ADC with ``range_policy = 'calibrated'``, one per unit of
    ``adc.calibration_granularity`` (LSQ); the grid start scales with it, so a zero-aligned grid
    stays zero-aligned. ``full_scale`` and ``fixed`` ranges are hardware-fixed and stay."""
    train_noise: bool = True
    """In training mode, add the chip's conversion noise to every conversion, fresh torch
    draws per forward: thermal (``noise.thermal_sigma_lsb``), per-cell read noise
    (``noise.read_noise_rel``, and on a device that ages the 1/f read noise of
    ``t_inference_s``) and comparator (``adc.comparator_noise_lsb``); docs/training.md
    section 3, "Noise". Eval mode is always noise-free."""
    fused_kernel: bool = True
    """On the CPU, convert with the fused Numba kernel (noise, linear ADC, shift-add and the
    backward's reductions in one pass; counter-based noise keyed by torch's generator) and cut
    the inputs into DAC planes with another (``_kernels.dac_planes``); ``False``: torch
    element-wise ops (the reference, and the path on other devices)."""
    devices: str = "programmed"
    """The device state the arrays compute with, on a chip with programming variation or
    stuck-at faults: ``programmed`` — the cells ``prepared.deploy()`` programs (drawn with the
    twin's seed as ``cimsim.deploy`` draws them; a cell keeps its deviation when its digit
    changes), in training and eval: training for that chip; ``sampled`` — a fresh draw of every
    cell at each training forward (robust to a chip not yet programmed), ``programmed`` in
    eval; ``nominal`` — nominal digits (ordinary QAT; the eval twin is the nominal chip)."""

    t_inference_s: float | None = None
    """On a device that ages (``device.ages``: drift, 1/f read noise, retention, drift
    compensation): the time after programming the arrays compute at, seconds, as
    ``cimsim.deploy(t_inference_s=...)`` (None: ``device.drift_t0_s``, the programmed state).
    The ``programmed`` and ``sampled`` devices are seen then: every cell's drift exponent and
    retention direction drawn as the engine draws them (``sampled``: fresh in training), the
    compensation gains re-fitted to the cells the weights now program, the 1/f read noise of
    that time in the training noise; :meth:`PreparedModel.deploy` deploys at it."""

    DEVICES = ("programmed", "sampled", "nominal")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "devices":
                if value not in self.DEVICES:
                    raise ConfigError(f"TwinOptions.devices = {value!r} is invalid; allowed: "
                                      + ", ".join(repr(v) for v in self.DEVICES))
            elif f.name == "t_inference_s":
                seconds = finite_seconds(value)
                ok = value is None or (seconds is not None and seconds > 0)
                if not ok:
                    raise ConfigError(f"TwinOptions.t_inference_s = {value!r} is invalid; "
                                      "allowed: None or a finite time in seconds >= the chip's "
                                      "device.drift_t0_s")
            elif not isinstance(value, bool):
                raise ConfigError(f"TwinOptions.{f.name} = {value!r} is invalid; allowed: "
                                  "True or False")

    @classmethod
    def from_kwargs(cls, options: dict) -> TwinOptions:
        """Options from keyword arguments; an unknown name is a :class:`ConfigError`."""
        names = sorted(f.name for f in fields(cls))
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; options: {names}")
        return cls(**options)


@dataclass(frozen=True, slots=True)
class _TwinAging:
    """When an ageing chip's twin computes (``TwinOptions.t_inference_s``) and what it drew."""

    t_s: float
    """The time after programming the arrays compute at, s."""
    t0_s: float
    """``device.drift_t0_s``: the programmed state's time, s."""
    has_nu: bool
    """A drift exponent per cell (``device.drift_nu_mean``), its normal draw in ``_nu_z``."""
    has_ret: bool
    """A retention direction per cell (``device.retention_sigma_lsb``) in ``_ret_z``."""
    growth: float
    """ln((t + t_read) / (2·t_read)): the 1/f read noise's growth at ``t_s``."""


def check_chip(chip: ChipConfig) -> None:
    """Refuse what the twin does not model yet (ConfigError naming the field)."""
    if not isinstance(chip, ChipConfig):
        raise ConfigError(f"chip must be a ChipConfig (cimsim.load_chip), got {type(chip)}")


# --------------------------------------------------------------------------------------------
# Digits and planes in torch (exact integer arithmetic in floats)
# --------------------------------------------------------------------------------------------
def _slices(v: torch.Tensor, n_bits: int, c: int) -> torch.Tensor:
    """Base-2^c digits of a non-negative integer-valued tensor, least significant first:
    (S, *v.shape) with S = ceil(n_bits / c). Divisions by powers of two are exact."""
    n = -(-n_bits // c)
    out = v.new_empty((n, *v.shape))
    return _digits_into(out, torch.floor(v), c)


def _digits_into(out: torch.Tensor, q: torch.Tensor, c: int) -> torch.Tensor:
    """Fill ``out`` (S, ...) with the base-2^c digits of the integer-valued ``q`` (...), least
    significant first: digit i = floor(q / 2^(ci)) - 2^c floor(q / 2^(c(i+1))), as
    ``remainder(floor(q / 2^(ci)), 2^c)`` for every sign (floor(floor(q/a)/b) = floor(q/(ab))
    for a, b > 0) in three passes per digit instead of a remainder over all S of them (3x
    faster on a CPU; multiplications by powers of two and integer differences are exact, NaN
    stays NaN). Returns ``out``."""
    for i in range(out.shape[0]):
        nxt = torch.floor(q * 2.0**-c)
        torch.sub(q, nxt, alpha=2**c, out=out[i])
        q = nxt
    return out


def balanced_ternary(v: torch.Tensor, n: int) -> torch.Tensor:
    """Balanced-ternary digits in {-1, 0, 1} of an integer-valued tensor, least significant
    first: (n, *v.shape) with v = Σ_i d_i·3^i (|v| <= (3^n - 1)/2; exact in floats)."""
    out = []
    r = v
    for _ in range(n):
        d = torch.remainder(r + 1.0, 3.0) - 1.0
        out.append(d)
        r = (r - d) / 3.0
    return torch.stack(out)


def physical_digits(w_int: torch.Tensor, chip: ChipConfig) -> torch.Tensor:
    """The digit every physical column of output n holds, from integer weights (N, K):
    (Q, N, K) in ``encoding.column_kinds`` order (a differential pair as two columns, also
    when read in analog)."""
    b, c = chip.weight_bits, chip.device.bits_per_cell
    enc = chip.weight_encoding
    if enc is WeightEncoding.DIFFERENTIAL:
        pos = _slices(torch.relu(w_int), b - 1, c)
        neg = _slices(torch.relu(-w_int), b - 1, c)
        return torch.stack([pos, neg], dim=1).reshape(-1, *w_int.shape)  # interleaved
    if enc is WeightEncoding.TERNARY:
        d = balanced_ternary(w_int, b)
        return torch.stack([(d > 0), (d < 0)], dim=1).to(w_int.dtype).reshape(-1, *w_int.shape)
    if enc is WeightEncoding.TWOS_COMPLEMENT:
        low = _slices(torch.remainder(w_int, float(2 ** (b - 1))), b - 1, c)
        return torch.cat([low, (w_int < 0).to(w_int.dtype)[None]])
    if enc is WeightEncoding.OFFSET:
        return _slices(w_int + 2.0 ** (b - 1), b, c)
    if enc is WeightEncoding.BINARY:
        return (w_int > 0).to(w_int.dtype)[None]  # d = (w + 1)/2
    return torch.sign(w_int)[None] * _slices(torch.abs(w_int), b - 1, c)


def conversion_digits(w_int: torch.Tensor, chip: ChipConfig) -> torch.Tensor:
    """What each conversion column of output n sees per unit input, from integer weights
    (N, K): (Qc, N, K), conversion kinds in the engine's order (``encoding.column_kinds``,
    an analog differential pair merged into its difference)."""
    return merge_columns(physical_digits(w_int, chip), chip)


@functools.lru_cache(maxsize=64)
def _slice_weights(chip: ChipConfig) -> np.ndarray:
    return conversion_kinds(chip).weight


def merge_columns(t: torch.Tensor, chip: ChipConfig, square: bool = False) -> torch.Tensor:
    """Per physical column kind (Q, ...) -> per conversion kind (Qc, ...), as the engine's
    GEMM columns combine them: an analog differential pair's difference, the analog slice
    read-out's weighted sum (``square``: the variances', with the weights squared)."""
    if chip.array.slice_readout is SliceReadout.ANALOG:
        w = torch.as_tensor(_slice_weights(chip), dtype=t.dtype, device=t.device)
        return torch.tensordot(w * w if square else w, t, dims=1)
    if _analog_pairs(chip):
        return t[0::2] + t[1::2] if square else t[0::2] - t[1::2]
    return t


def input_planes(x_int: torch.Tensor, chip: ChipConfig, signed: bool) -> torch.Tensor:
    """DAC planes (P, M, K) of integer inputs (M, K), as ``encoding.input_planes``."""
    d, p, b = chip.dac_bits, chip.n_planes, chip.input_bits
    if signed and chip.dac.signed_inputs is SignedInputMode.TWO_PASS:
        pm = -(-(b - 1) // d) if b > 1 else 1
        return torch.cat([_slices(torch.relu(x_int), pm * d, d),
                          _slices(torch.relu(-x_int), pm * d, d)])
    if signed:
        # floor division keeps the sign in the top plane: x = Σ_p 2^(dp) · plane_p
        out = x_int.new_empty((p, *x_int.shape))
        _digits_into(out[:-1], torch.floor(x_int), d)
        torch.floor(x_int * 2.0 ** (-d * (p - 1)), out=out[-1])
        return out
    return _slices(x_int, p * d, d)


def read_noise_weights(w_int: torch.Tensor, chip: ChipConfig) -> torch.Tensor:
    """(Qc, N, K) per-unit-input² read-noise variance of every conversion, cell-LSB²:
    ``(rel · G)²`` of the nominal cell conductance ``G = digit + g_off`` (both columns of an
    analog differential pair), as ``arrays.program`` sets the engine's ``gemm_var``."""
    g = physical_digits(w_int, chip) + off_conductance(chip)
    v = chip.noise.read_noise_rel ** 2 * g * g
    return merge_columns(v, chip, square=True)


# --------------------------------------------------------------------------------------------
# The twin of one weight matrix
# --------------------------------------------------------------------------------------------
class TwinMatmul(nn.Module):
    """Differentiable ``y = x @ W.T + b`` computed with the chip's decomposition.

    Build it with :meth:`calibrated` (float weights + calibration inputs) or from an
    :class:`EngineView`. ``forward`` takes float inputs (M, K) and returns float (M, N);
    :meth:`integer_forward` gives the engine's integer-domain result per part.

    Parameters
    ----------
    weight : (N, K) tensor
        The float weights (become the learnable ``weight``).
    bias : (N,) tensor or None
    view : EngineView
        The programmed layer's decomposition (chip, seed, row tiles, input signedness).
    options : TwinOptions, optional
        What learns and how (default ``TwinOptions()``).
    name : str, optional
        The layer's name, for messages.
    calibration : (M, K) array, optional
        Calibration inputs (integer codes) that a fused layer-output activation's levels are
        fitted on (needed only for one: ``view.activation``).

    Attributes (learnable unless switched off in :class:`TwinOptions`)
    -------------------------------------------------------------------
    weight : (N, K)
    bias : (N,) or None
    weight_scale : (1, 1) tensor / (1, N) channel / (T, N) column granularity
    act_scale : () per-tensor activation scale
    adc_step : (U,) step of each calibration unit (learnable only for calibrated linear ADCs)
    """

    uniform_weight_grid = True
    """Whether the weights are integer codes on a uniform grid of ``weight_scale`` (what
    W-reshape's kurtosis penalty reads); a subclass that snaps them otherwise says no."""

    # buffers (registered in __init__), declared for type checkers
    _weight_scale0: torch.Tensor
    _w_grad: torch.Tensor
    _w_tile: torch.Tensor
    _act_scale0: torch.Tensor
    _sig: torch.Tensor
    _coef: torch.Tensor
    _off: torch.Tensor
    _off_dev: torch.Tensor
    _dev_z: torch.Tensor
    _dev_u: torch.Tensor
    _part_of_row: torch.Tensor
    _nu_z: torch.Tensor
    _ret_z: torch.Tensor
    _aging_rows: torch.Tensor
    _x_sum_coef: torch.Tensor
    _gidx: torch.Tensor
    _group_part: torch.Tensor
    _part_mask: torch.Tensor
    _adc_lo0: torch.Tensor
    _adc_delta0: torch.Tensor
    _adc_unit: torch.Tensor
    _adc_unit_size: torch.Tensor
    _adc_step0: torch.Tensor
    _adc_thr: torch.Tensor
    _adc_lvl: torch.Tensor
    _act_coef: torch.Tensor
    _act_thr: torch.Tensor
    _act_lvl: torch.Tensor
    _act_max: torch.Tensor
    _smooth: torch.Tensor | None
    act_scale: nn.Parameter

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, view: EngineView,
                 options: TwinOptions | None = None, name: str = "",
                 calibration: np.ndarray | None = None):
        super().__init__()
        chip = view.chip
        check_chip(chip)
        self.chip = chip
        self.options = options or TwinOptions()
        self.name = name
        self.seed = view.seed
        self.row_tiles = list(view.row_tiles)
        self.input_signed = view.input_signed
        n, k = view.w_int.shape
        self.n_inputs, self.n_outputs = k, n
        dev, dt = weight.device, weight.dtype
        opts = self.options

        def buf(name: str, value, dtype=dt) -> None:
            self.register_buffer(name, torch.as_tensor(np.asarray(value), dtype=dtype,
                                                       device=dev), persistent=True)

        self.weight = nn.Parameter(weight.detach().clone().reshape(n, k))
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone().reshape(n))
        # 1 where a weight may train, 0 where torch.nn.utils.prune zeroed it (keep_zeros)
        self.weight_keep: torch.Tensor | None
        self.register_buffer("weight_keep", None)

        # --- scales (LSQ) -------------------------------------------------------------
        self.granularity = chip.quant.weight_granularity
        self.binary = chip.weight_encoding is WeightEncoding.BINARY
        """1-b weights: sign(w) in {-1, +1} (:meth:`weight_codes`)."""
        # 1-b weights: binary ±1, or one ternary digit {-1, 0, +1}
        self.w_qmax = 1 if chip.weight_bits == 1 else 2 ** (chip.weight_bits - 1) - 1
        tile_rows = np.array([b - a for a, b in self.row_tiles], dtype=np.float64)
        if self.granularity is WeightGranularity.TENSOR:
            s_w, n_per = view.s_w[:1, :1], np.array([[n * k]], dtype=np.float64)
            w_tile = np.zeros(k, dtype=np.int64)
        elif self.granularity is WeightGranularity.CHANNEL or len(self.row_tiles) == 1:
            s_w, n_per = view.s_w[:1], np.array([[k]], dtype=np.float64)
            w_tile = np.zeros(k, dtype=np.int64)
        else:
            s_w, n_per = view.s_w, tile_rows[:, None]
            w_tile = np.concatenate([np.full(b - a, t) for t, (a, b) in enumerate(self.row_tiles)])
        if (not self.binary and opts.learn_weight_scale and k and not weight.detach().any()
                and np.all(s_w == 1.0)):
            # an all-zero matrix (a zero-initialised branch: ControlNet's zero convs, LoRA's B,
            # ReZero) has no scale; deploy quantizes it at 1.0, exact. Trained from that step,
            # the weights the float copy learned (0.33) all rounded to code 0 and the layer
            # never left its bias: the step starts at the range of torch's default
            # initialisation for the fan-in, +-1/sqrt(k), and learns from there
            s_w = np.full_like(s_w, 1.0 / math.sqrt(k) / self.w_qmax)
        self.weight_scale = nn.Parameter(torch.as_tensor(s_w, dtype=dt, device=dev).clone(),
                                         requires_grad=opts.learn_weight_scale)
        self.pow2_scales = chip.quant.weight_scale is WeightScale.POW2
        """Power-of-two weight scales (``quant.weight_scale = 'pow2'``): the learned scale is
        used rounded up to a power of two, as deploy rounds it (:meth:`_pow2`)."""
        buf("_weight_scale0", s_w)
        buf("_w_grad", np.vectorize(lambda v: lsq_factor(v, self.w_qmax))(n_per))
        buf("_w_tile", w_tile, torch.long)
        self.block_fp = view.block_fp
        """Block floating-point inputs (``quant.act_format = 'block_fp'``): a power of two per
        (vector, part) from the inputs themselves (:meth:`block_codes`), no activation scale
        to learn (``act_scale`` stays 1)."""
        self.act_scale = nn.Parameter(torch.tensor(view.s_x, dtype=dt, device=dev),
                                      requires_grad=opts.learn_act_scale and not self.block_fp)
        buf("_act_scale0", view.s_x)
        tiny = float(torch.finfo(dt).tiny)
        positive = s_w[s_w > 0]  # 0: a pruned channel's scale, exact
        for what, value in (("activation", float(view.s_x)),
                            ("weight", float(positive.min()) if positive.size else 1.0)):
            if not (value >= tiny or value == 0):
                # below the dtype's normal range the scale and its gradient's 1/s terms lose
                # their bits or overflow: training steps it to NaN (inputs of 1e-38 in float32)
                raise MappingError(
                    f"its {what} scale {value:.3g} is below {dt}'s smallest "
                    f"normal number ({tiny:.3g}), where its gradients are NaN: scale the "
                    f"{'calibration inputs' if what == 'activation' else 'weights'} up, or "
                    "prepare the model in float64 (model.double())")
        self.zero_point = int(view.zero_point)
        """The code of x = 0 the inputs are driven with, its exact correction
        ``-zero_point · Σ_k w_int`` added after the ADCs: -2^(B_x-1) with the A-shift
        (``dac.shift_unsigned_inputs``: unsigned codes driven shifted to signed), the
        calibrated z >= 0 of an asymmetric quantizer (``quant.act_zero_point``: codes
        ``clip(round(x / s_x) + z, 0, 2^B_x - 1)``), 0 otherwise."""
        # the range of round(x / s_x), before the zero point is added
        if self.zero_point < 0:
            self.x_lo, self.x_hi = act_range(chip.input_bits, False)
        else:
            lo, hi = act_range(chip.input_bits, view.input_signed)
            self.x_lo, self.x_hi = lo - self.zero_point, hi - self.zero_point
        self._smooth64 = None if view.smooth is None else np.array(view.smooth, np.float64)
        """(K,) SmoothQuant factors (``quant.smooth_alpha``), fixed at calibration: the inputs
        are divided by them and the weights multiplied (:meth:`effective_weight`), as deploy
        maps the layer; None without smoothing."""
        self.register_buffer("_smooth", None if view.smooth is None else torch.as_tensor(
            view.smooth, dtype=dt, device=dev))
        self.adc_bits_override: int | None = None
        """Hook (BitAug, :func:`cimsim.train.raoq.adc_bits`): convert at this many bits over
        the same range (the step scaled by (2^b0 - 1)/(2^b - 1), the grid start snapped to it);
        None: the chip's ``adc.bits``. Linear ADCs only."""
        self.weight_delta: Callable[[], torch.Tensor] | None = None
        """Hook (ADC-LoRA, :mod:`cimsim.train.lora`): the forward quantizes ``weight +
        weight_delta()``; None: ``weight``."""

        # --- planes and conversions -----------------------------------------------------
        sig = plane_layout(chip, view.input_signed)[0]
        self.n_planes = int(sig.shape[0])
        buf("_sig", sig)
        first = view.parts[0][2]
        n_conv = first.n_conversions
        qc = n_conv // n
        if qc * n != n_conv or not np.array_equal(first.out_col, np.repeat(np.arange(n), qc)):
            raise MappingError("programmed layer has an unexpected conversion order")
        self.n_kinds = qc
        coef = first.conv_coef[:qc]
        buf("_coef", np.tile(coef, n))
        g_off = off_conductance(chip)
        comp = chip.device.off_current_compensation
        # nominal off-state current per unit Σx_p of the columns each conversion reads, with
        # their analog weights (a differential pair's two columns cancel it): none when
        # compensated in analog
        w_sum = first.conv_weight[:qc].sum(axis=1)
        analog_comp = comp is OffCurrentCompensation.ANALOG
        off = np.where(analog_comp, 0.0, g_off * w_sum)
        self.has_off = bool(np.any(off != 0))
        buf("_off", np.tile(off, n))
        buf("_x_sum_coef", first.x_sum_coef)
        self.has_x_sum = bool(np.any(first.x_sum_coef != 0))
        # --- the device state (programming variation, faults) ---------------------------
        # an ageing chip's cells move after programming even without variation
        self.devices = ("nominal" if chip.device.ideal and not chip.device.ages
                        else opts.devices)
        self.has_dev_z = self.has_dev_u = False
        self.aging: _TwinAging | None = None
        """The time an ageing chip's cells are seen at and what was drawn for it (None: the
        device does not age, or ``nominal`` devices)."""
        self.transfer = column_transfer(chip.noise, first.column_fs, xp=torch)
        """``(f, f')`` of the column non-linearity (``noise.nonlinearity``), None when linear:
        ``f`` acts on every column's current before noise and the ADC, as the engine's."""
        # G+ - G- in one GEMM column, as the engine, unless a non-linearity acts on each
        self.split_pairs = _analog_pairs(chip) and self.transfer is not None
        # programmed conductances include the off-state current: analog compensation removes
        # its nominal value from an unpaired column (the engine's off_add)
        off_dev = np.where(analog_comp, -g_off * w_sum, 0.0)
        if self.split_pairs:  # per physical column: each of a pair carries its own
            q_phys = 2 * qc
            off = np.full(q_phys, 0.0 if analog_comp else g_off)
            off_dev = np.full(q_phys, -g_off if analog_comp else 0.0)
            self.has_off = bool(np.any(off != 0))
            buf("_off", np.tile(off, n))
        buf("_off_dev", np.tile(off_dev, n))
        self.has_off_dev = bool(np.any(off_dev != 0))
        if self.devices != "nominal":
            # the draws program_parts makes: one generator over the parts, K rows each
            rng = np.random.default_rng(view.seed)
            draws = [draw_devices(layer.digits_phys.shape, chip, rng) for _, _, layer in view.parts]
            q_phys = first.kinds.n_kinds

            def cells(arrays: list) -> np.ndarray | None:
                if arrays[0] is None:
                    return None
                return np.concatenate(arrays).reshape(k, n, q_phys).transpose(2, 1, 0)

            z, u = cells([d.z for d in draws]), cells([d.u for d in draws])
            self._dev_shape = (q_phys, n, k)
            self.has_dev_z, self.has_dev_u = z is not None, u is not None
            buf("_dev_z", z if z is not None else np.zeros(0))
            buf("_dev_u", u if u is not None else np.zeros(0))
            self._init_aging(view, opts, cells, buf)

        # --- row groups of all parts, their ADC tables and calibration units ----------------
        rows: list[tuple[int, int]] = []
        group_part: list[int] = []
        lo_l: list[np.ndarray] = []
        d_l: list[np.ndarray] = []
        thr: list[np.ndarray] = []
        lvl: list[np.ndarray] = []
        unit_l: list[np.ndarray] = []
        n_units = 0
        part_mask = np.zeros((len(view.parts), k))
        for i, (a, b, layer) in enumerate(view.parts):
            if layer.adc is None:
                raise MappingError(f"layer {name!r}: part {i} has no ADC tables (calibrate it)")
            part_mask[i, a:b] = 1.0
            rows += [(a + int(k0), a + int(k1)) for k0, k1, _ in layer.groups]
            group_part += [i] * layer.n_groups
            lo_l.append(layer.adc.lo)
            d_l.append(layer.adc.delta)
            if layer.adc.thr is not None and layer.adc.lvl is not None:
                thr.append(layer.adc.thr)
                lvl.append(layer.adc.lvl)
            um = np.empty(layer.adc.shape, dtype=np.int64)
            for r, cidx in calibration_units(layer, chip.adc.calibration_granularity):
                um[np.ix_(r, cidx)] = n_units
                n_units += 1
            unit_l.append(um)
        self.n_parts = len(view.parts)
        self.part_rows = [(int(a), int(b)) for a, b, _ in view.parts]
        buf("_part_of_row", part_mask.argmax(axis=0), torch.long)  # (K,) the part of input k
        self.n_groups = len(rows)
        r_max = max(k1 - k0 for k0, k1 in rows)
        gidx = np.full((self.n_groups, r_max), k, dtype=np.int64)  # row k: a zero pad row
        for g, (k0, k1) in enumerate(rows):
            gidx[g, :k1 - k0] = np.arange(k0, k1)
        # consecutive groups covering K, only the last one short (default tiling): zero padding
        # at the end and a reshape instead of a gather
        flat_idx = gidx.ravel()
        self.tail_pad = self.n_groups * r_max - k
        self.contiguous = bool(np.array_equal(flat_idx[:k], np.arange(k))
                               and np.all(flat_idx[k:] == k))
        self.group_rows = r_max
        buf("_gidx", gidx, torch.long)
        buf("_group_part", np.asarray(group_part), torch.long)
        buf("_part_mask", part_mask)
        self.nonlinear_adc = bool(thr)
        lo0, d0, unit = np.concatenate(lo_l), np.concatenate(d_l), np.concatenate(unit_l)
        buf("_adc_lo0", lo0)
        buf("_adc_delta0", d0)
        buf("_adc_unit", unit, torch.long)
        step0 = np.empty(n_units)
        step0[unit.ravel()] = d0.ravel()
        size = np.bincount(unit.ravel(), minlength=n_units).astype(np.float64)
        buf("_adc_unit_size", size)
        buf("_adc_step0", step0)
        adc = chip.adc
        learn = (opts.learn_adc_step and not self.nonlinear_adc
                 and adc.range_policy is RangePolicy.CALIBRATED)
        self.adc_step = nn.Parameter(torch.as_tensor(step0, dtype=dt, device=dev).clone(),
                                     requires_grad=learn)
        self.top_code = float(adc.n_codes - 1)
        self.fused = opts.fused_kernel and not self.nonlinear_adc
        if self.nonlinear_adc:
            buf("_adc_thr", np.concatenate(thr))
            buf("_adc_lvl", np.concatenate(lvl))
        # The engine's float64 values at initialisation. The hand-back scales them by the
        # learned change (parameter / its initial value, exactly 1 until it moves), so that a
        # float32 twin hands back deploy's values bit for bit before training.
        self._init64: dict[str, Any] = dict(
            s_w=np.array(s_w, dtype=np.float64), s_x=float(view.s_x), lo=lo0, delta=d0,
            thr=np.concatenate(thr) if thr else None, lvl=np.concatenate(lvl) if lvl else None)
        # Hooks of the training methods (cimsim.train.pimqat, .columnquant); neutral defaults.
        self.out_rescale = 1.0
        """Forward multiplier of the output (before the bias); handed back folded into the
        engine's dequantization scale ``s_w`` (PIM-QAT forward rescaling)."""
        self.grad_rescale = 1.0
        """Multiplier of the gradient the chip product passes to the inputs and weights in the
        backward pass (PIM-QAT backward rescaling); the forward and the scales' gradients are
        unchanged."""
        self.adc_grad: float | None = None
        """Fixed gradient scale of the learned ADC step instead of LSQ's 1/sqrt(n·Q_p)."""
        self.lossless = False
        """Compute the integer products exactly, without the arrays and ADCs
        (:func:`recalibrate_adcs`' pass: the inputs the float calibration of ``deploy`` would
        see downstream, up to the quantization)."""
        self.adc_hook: Callable[[TwinMatmul, torch.Tensor, torch.Tensor],
                                tuple[torch.Tensor, torch.Tensor | None]] | None = None
        """``hook(twin, a, ratio) -> (lo0, kept)``: called on the analog values ``a``
        (G, P·M, C) before a linear ADC converts them; it may clip ``a`` in place and returns
        the grid start in units of the initial step (broadcastable to (G, 1, C)) that replaces
        ``_adc_lo0`` for this conversion (ColumnQuant's data-dependent centre), and the mask of
        the values it left unclipped (None: all), which pass the straight-through gradient
        as the ADC's own unclipped conversions do (a clip is a clamp: no gradient beyond it)."""
        self._warned_through_zero = False
        self._float64_at: dict[str, torch.Tensor] = {}
        """The buffer values the float64 ones (``_init64``, ``_smooth64``) stand for, by buffer
        name (:meth:`_follow_buffers`; set at the end of ``__init__``)."""
        self.activation: FusedActivation | None = view.activation
        """The layer-output ADC is the following ReLU's quantizer (``adc.fuse_activation``,
        ``cimsim.adc.activation``): the output is ``levels[#(thresholds <= y)]`` of the
        pre-activation y, with the straight-through estimator on [0, a_max]. Its levels live
        in the output domain (``_act_thr``, ``_act_lvl``, ``_act_max``: frozen while the
        weights and scales train, :meth:`fit_activation` refits them); the analog references
        follow the learned scales and bias as the chip's would (:meth:`to_engine`)."""
        if view.activation is not None:
            if self.block_fp:  # its references fold a per-tensor input scale
                raise ConfigError("quant.act_format = 'block_fp' with a fused layer-output "
                                  "activation is not modelled by the training twin yet; "
                                  "allowed: 'int' (deploy() simulates it)")
            self._init_activation(view, first, sig, calibration)
        self._mark_float64()

    def _init_aging(self, view: EngineView, opts: TwinOptions,
                    cells: Callable[[list], np.ndarray | None], buf: Callable) -> None:
        """The devices' future on an ageing chip (``device.ages``), drawn as the engine draws
        it (:func:`cimsim.arrays.program.with_aging`: child i of a generator seeded with the
        view's seed for part i; a drift exponent per cell, then a retention direction)."""
        chip, dev = self.chip, self.chip.device
        if not dev.ages:
            return
        t0 = dev.drift_t0_s
        t = t0 if opts.t_inference_s is None else check_time(opts.t_inference_s, chip)
        aging_rng = np.random.default_rng(view.seed)
        nu_z, ret_z = [], []
        for _, _, layer in view.parts:
            child = aging_rng.spawn(1)[0]
            shape = layer.digits_phys.shape
            nu_z.append(child.standard_normal(shape) if any(dev.drift_nu_mean) else None)
            ret_z.append(child.standard_normal(shape) if dev.retention_sigma_lsb > 0 else None)
        nu, ret = cells(nu_z), cells(ret_z)
        buf("_nu_z", nu if nu is not None else np.zeros(0))
        buf("_ret_z", ret if ret is not None else np.zeros(0))
        part_rows = np.zeros((len(view.parts), self.n_inputs))
        for i, (a, b, _) in enumerate(view.parts):
            part_rows[i, a:b] = 1.0
        buf("_aging_rows", part_rows)
        self.aging = _TwinAging(t_s=t, t0_s=t0, has_nu=nu is not None, has_ret=ret is not None,
                                growth=read_noise_growth(t, chip.tech.t_read_ns * 1e-9))

    # ---------------------------------------------------------------------------------------
    @classmethod
    def calibrated(cls, weight: torch.Tensor, bias: torch.Tensor | None, chip: ChipConfig,
                   calibration: torch.Tensor | np.ndarray, *, seed: int = 0,
                   row_tiles: list[tuple[int, int]] | None = None, name: str = "",
                   options: TwinOptions | None = None) -> TwinMatmul:
        """A twin of float ``weight`` (N, K) initialised as ``cimsim.deploy`` would map it,
        from float calibration inputs (M, K)."""
        check_chip(chip)
        x = calibration.detach().cpu().double().numpy() if isinstance(calibration, torch.Tensor) \
            else np.asarray(calibration, dtype=np.float64)
        w = weight.detach().cpu().double().numpy()
        view = engine_view(w, chip, x, seed=seed, row_tiles=row_tiles, name=name)
        return cls(weight, bias, view, options, name)

    # --- the fused activation (layer-output ADC = the ReLU's quantizer) ----------------------
    def _init_activation(self, view: EngineView, first: ProgrammedLayer, sig: np.ndarray,
                         calibration: np.ndarray | None) -> None:
        """Fit the activation's levels as ``cimsim.deploy`` fits them: the same function on
        the analog values of the same calibration sample (``engine.calibration_stats``)."""
        assert view.activation is not None
        if self.n_parts != 1 or self.n_groups != 1 or self.n_planes != 1 or self.n_kinds != 1:
            raise MappingError(f"layer {self.name!r}: a fused activation needs one conversion "
                               "per output")
        if calibration is None:
            raise MappingError(f"layer {self.name!r}: a fused activation's twin needs the "
                               "calibration inputs")
        self.register_buffer("_act_coef", torch.as_tensor(first.conv_coef, dtype=torch.float64))
        # the value (planes x kinds) the shift-add gives per unit analog value: 1 (power of 2)
        self._act_unit = float(sig[0] * first.conv_coef[0])
        self.activation_clamp = float(view.activation.clamp)
        lv = self._fit_levels(first, view.quantize(calibration), view.activation, None, None)
        for name, value in (("_act_thr", lv.thresholds), ("_act_lvl", lv.levels),
                            ("_act_max", lv.a_max)):
            self.register_buffer(name, torch.as_tensor(value, dtype=torch.float64,
                                                       device=self.weight.device))

    @staticmethod
    def _fit_levels(layer: ProgrammedLayer, x_int: np.ndarray, act: FusedActivation,
                    method: str | None, params: dict | None) -> ActivationLevels:
        x = engine.check_inputs(x_int, layer, "calibration")
        return fit_activation_levels(layer, engine.calibration_stats(layer, x, act), act,
                                     method, params)

    def activation_levels(self) -> ActivationLevels:
        """The fused activation's current levels (output domain, one row per output)."""
        if self.activation is None:
            raise ConfigError(f"layer {self.name!r} has no fused activation")
        return ActivationLevels(self._act_thr.cpu().numpy().copy(),
                                self._act_lvl.cpu().numpy().copy(),
                                self._act_max.cpu().numpy().copy())

    def fit_activation(self, x: np.ndarray, method: str | None = None,
                       params: dict | None = None) -> ActivationLevels:
        """Refit the fused activation's levels to float inputs ``x`` (M, K) with the current
        weights, scales and bias: the chip programmed as :meth:`to_engine` hands it back, its
        noise-free analog values, fitted as deploy fits them (``method``: any of
        ``cimsim.adc.levels.FitMethod``, default ``adc.level_fit``; ``params`` for
        ``fit_levels``)."""
        if self.activation is None:
            raise ConfigError(f"layer {self.name!r} has no fused activation to refit")
        view, act = self._engine_state(self.seed, self.chip)
        assert act is not None
        lv = self._fit_levels(view.parts[0][2], view.quantize(x), act, method, params)
        with torch.no_grad():
            self._act_thr.copy_(torch.from_numpy(lv.thresholds))
            self._act_lvl.copy_(torch.from_numpy(lv.levels))
            self._act_max.copy_(torch.from_numpy(lv.a_max))
        return lv

    def _activation_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(kappa, bias) (N,) float64 of the current state, as :func:`fused_activation`
        computes them from the view :meth:`to_engine` hands back (the same float64 values,
        so that the twin's codes are the engine's)."""
        s_w, s_x, w_int = self._engine_scales()
        s_w0 = torch.from_numpy(np.ascontiguousarray(s_w[0]))
        kappa = self._act_coef.cpu() * s_x * s_w0
        off = zero_point_offsets(w_int, self.zero_point, [(0, self.n_inputs)])[0]
        b = (torch.zeros_like(kappa) if self.bias is None
             else self.bias.detach().cpu().double())
        b = b - torch.from_numpy(off) * s_x * s_w0
        return kappa.to(self.weight.device), b.to(self.weight.device)

    def _activation_out(self, y: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """The fused ADC's output from the pre-activation ``y`` (M, N) and the shift-added
        analog values ``raw`` (1, M, N): the levels of the codes the chip's comparators give,
        with the gradient of ``clamp(y, 0, a_max)`` (straight through on [0, a_max], as
        ``cimsim.train.bskmq.NLActivation``)."""
        with torch.no_grad():
            kappa, bias = self._activation_affine()
            if not self._warned_through_zero and bool((kappa <= 0).any()):
                # the step that takes a scale through 0, not the hand-back after the run
                self._warned_through_zero = True
                warnings.warn(
                    f"layer {self.name!r}: a learned weight_scale or act_scale went through 0; "
                    "the fused ADC's references cannot hold that state (its outputs are not "
                    "the chip's, and deploy() will refuse it): a smaller learning rate for "
                    "the scales (cimsim.train.param_groups) keeps them positive", stacklevel=2)
            thr = (self._act_thr - bias[:, None]) / kappa[:, None]  # the engine's references
            a = raw[0].to(torch.float64) / self._act_unit
            code = torch.searchsorted(thr, a.t().contiguous(), right=True)
            q = torch.gather(self._act_lvl, 1, code).t().to(y.dtype)
        y_c = torch.minimum(torch.relu(y), self._act_max.to(y.dtype))
        return q + (y_c - y_c.detach())  # exactly the level; the gradient of y_c

    # --- the quantizers -------------------------------------------------------------------
    def _pow2(self, s_w: torch.Tensor) -> torch.Tensor:
        """``s_w`` rounded up to a power of two with ``quant.weight_scale = 'pow2'``
        (:func:`cimsim.mapping.quant.pow2_scale`, exact), the gradient passed straight through
        to the learned scale; ``s_w`` itself otherwise."""
        if not self.pow2_scales:
            return s_w
        with torch.no_grad():
            p = pow2_scale(s_w, xp=torch)
        return s_w + (p - s_w).detach()

    def _weight_scale_full(self, s_w: torch.Tensor) -> torch.Tensor:
        """The scale of every weight: broadcastable to (N, K)."""
        if s_w.shape[0] > 1:  # per (row tile, output)
            return s_w.index_select(0, self._w_tile).t()
        return s_w.t()  # (1, 1) or (N, 1)

    def float_weight(self) -> torch.Tensor:
        """The layer's own float weights as trained: ``weight`` (+ the LoRA hook's delta),
        times ``weight_keep`` where a pruning mask is kept (:meth:`keep_zeros`)."""
        w = self.weight if self.weight_delta is None else self.weight + self.weight_delta()
        if w is self.weight and not w.requires_grad and torch.is_grad_enabled():
            # a frozen weight still reaches the trained scales' gradients (w / s saves it):
            # a forward that moves it in place (an EMA teacher's update) before the backward
            # of an earlier forward (BitAug's several) would fail autograd's version check
            # on the parameter itself, which the float model, saving nothing there, does not
            w = w.clone()
        return w if self.weight_keep is None else w * self.weight_keep

    def effective_weight(self) -> torch.Tensor:
        """The float weights the forward quantizes: :meth:`float_weight` times the smoothing
        factors (``quant.smooth_alpha``), as deploy scales the matrix it programs."""
        w = self.float_weight()
        return w if self._smooth is None else w * self._smooth

    def keep_zeros(self) -> None:
        """Keep the weights that are zero now at zero while training: a pruned layer's mask
        (``torch.nn.utils.prune``), applied in :meth:`float_weight` as the pruning hook
        applies it (so their gradient is zero, and nothing an optimiser does to ``weight``
        reaches the chip). A buffer: it survives ``deepcopy`` and ``state_dict``."""
        self.weight_keep = (self.weight.detach() != 0).to(self.weight.dtype)

    def weight_codes(self, w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Integer weights of float weights ``w`` at scales ``s`` (broadcast), with the
        straight-through gradient of ``clamp(w / s, -w_qmax, w_qmax)``: ``round`` of it, or
        for 1-b weights ``sign(w)`` (0 -> +1, as deploy's ``binary_codes``), BinaryConnect's
        estimator (Courbariaux et al., NeurIPS 2015; gradient 1 inside |w/s| <= 1)."""
        if self.binary:  # an all-zero group's scale is 0 (mean|w|); its codes are sign(w)
            s = torch.where(s != 0, s, torch.ones_like(s))
        c = torch.clamp(w / s, -self.w_qmax, self.w_qmax)
        if self.binary:
            # the sign of w itself, not of w/s: a quotient that underflows to -0.0 would flip it
            return with_surrogate(torch.where(w >= 0, 1.0, -1.0).to(c.dtype), c)
        return round_ste(c)

    def quantized_weight(self) -> torch.Tensor:
        """Current integer weights (N, K) (no gradient)."""
        with torch.no_grad():
            s = self._weight_scale_full(self._pow2(self.weight_scale))
            return self.weight_codes(self.effective_weight(), s)

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """Integer inputs ``clip(round(x / s_x))`` (no gradient), as deploy quantizes (the
        A-shifted codes with ``dac.shift_unsigned_inputs``; block floating-point mantissas,
        :meth:`block_codes`)."""
        with torch.no_grad():
            if self.block_fp:
                return self.block_codes(x)[0]
            return self.input_codes(x, self.act_scale) + self.zero_point

    def _smoothed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x / smooth`` (the gradient path, in x's dtype) and, without gradient, the float64
        quotient deploy quantizes (``x`` itself without smoothing, in float64)."""
        x64 = x.detach().double()
        if self._smooth is None:
            return x, x64
        return x / self._smooth, x64 / torch.from_numpy(self._smooth64).to(x.device)

    def block_codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Block floating-point codes of ``x`` (M, K), deploy's own
        (:func:`cimsim.mapping.quant.block_fp_acts`: one exponent per vector and part, from
        its largest magnitude), with the straight-through gradient of ``clip(x / 2^X)``; and
        the (M, T) scales ``2^X`` each part's integer output is dequantized with."""
        x, x64 = self._smoothed(x)
        codes, exps = block_fp_acts(x64.cpu().numpy(), self.chip.input_bits,
                                    self.input_signed, self.chip.quant.act_exponent_bits,
                                    self.part_rows)
        scale = torch.from_numpy(np.ldexp(1.0, exps)).to(x.device, x.dtype)  # exact
        q = torch.from_numpy(codes).to(x.device, x.dtype)
        c = torch.clamp(x / scale.index_select(1, self._part_of_row), self.x_lo, self.x_hi)
        return c + (q - c).detach(), scale

    def input_codes(self, x: torch.Tensor, s_x: torch.Tensor) -> torch.Tensor:
        """``round(clip(x / s_x))`` with the straight-through gradient of ``clip(x / s_x)``.

        The value is computed as deploy computes it: the float64 quotient by the float64 scale
        :meth:`to_engine` hands the engine. A float32 quotient can round a tie the other way
        (a digits pixel of 0.5 at s_x = 1/255 is 127.5: float32 and float64 land on either
        side of it), which made the float32 twin and its deployment disagree on a few images.
        """
        x, x64 = self._smoothed(x)
        c = torch.clamp(x / s_x, self.x_lo, self.x_hi)
        if x.dtype == torch.float64:
            return round_ste(c)
        with torch.no_grad():
            # the same float64 scale as _learned (ratio in the parameter's dtype, then float64)
            s64 = (self.act_scale.detach() / self._act_scale0).double() * float(
                self._init64["s_x"])
            q = torch.clamp(torch.round(x64 / s64), self.x_lo, self.x_hi)
        return c + (q.to(c.dtype) - c).detach()

    @eager  # NumPy and Numba inside (see _TwinLayer.__init_subclass__)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float inputs (M, K) -> float outputs (M, N) through the simulated chip, in the
        twin's dtype: under ``torch.autocast`` (bfloat16) the integer sums would be rounded and
        the ADC kernel (NumPy) has no bfloat16; float32 GEMMs in IEEE float32 whatever
        ``torch.set_float32_matmul_precision`` says (``_gemm.ieee_float32``), as the engine's."""
        if x.shape[0] == 0:  # no row (an expert no token was routed to): nothing to convert
            # but still in the graph, as the float layer's empty output is (a loss of empty
            # batches only failed in backward: "does not require grad")
            return (x.to(self.weight.dtype)[:, :0].sum(dim=1, keepdim=True)
                    + 0.0 * self.weight.sum()).expand(0, self.n_outputs)
        self._follow_buffers()
        if self.training and not self._warned_through_zero:
            self._warn_steps_through_zero()
        with torch.autocast(x.device.type, enabled=False), ieee_float32(torch):
            y, raw = self.pre_activation(x.to(self.weight.dtype))
            y = y if self.activation is None else self._activation_out(y, raw)
            # a row with a NaN or inf: NaN outputs, as the float layer's (its codes, cast to
            # integers in the ADC, came out finite: a NaN input trained silently); no sync
            return y.masked_fill(~torch.isfinite(x).all(dim=1, keepdim=True), torch.nan)

    def _warn_steps_through_zero(self) -> None:
        """Warn, once per layer, at the first training forward after a step took a learned
        activation scale or ADC step to 0 or below: plain Adam at one rate for every parameter
        (docs/training.md's example once) moves a small step by its own size in a few updates.
        The twin and deploy still agree there (the engine takes the same signed values), but
        the input codes or the conversions saturate and the layer's output is its bias. A
        negative weight scale is harmless: s·round(w/s) is the same at -s."""
        bad = [name for name in ("act_scale", "adc_step")
               if (p := getattr(self, name, None)) is not None and p.requires_grad
               and bool((p.detach() <= 0).any())]
        if bad:
            self._warned_through_zero = True
            warnings.warn(
                f"layer {self.name!r}: its learned {' and '.join(bad)} went through 0 (the "
                "input codes or the conversions saturate: the layer's output is its bias); a "
                "rate for each step size of its own size keeps them positive: "
                "torch.optim.Adam(cimsim.train.param_groups(prepared, lr))", stacklevel=3)

    def pre_activation(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The output before a fused activation (M, N) (the layer's output when none is
        fused), and the shift-added analog values (T, M, N) it was dequantized from."""
        x_scale = None
        w = self.effective_weight()
        if self.grad_rescale != 1.0:
            # the gradient reaching the inputs and weights through the chip product, not the
            # scales' (LSQ's d(s·round(v/s))/ds keeps its two terms in balance)
            x, w = grad_scale(x, self.grad_rescale), grad_scale(w, self.grad_rescale)
        if self.block_fp:
            x_int, x_scale = self.block_codes(x)  # a power of two per (vector, part)
            s_x = self.act_scale.detach()  # 1
        else:
            s_x = grad_scale(self.act_scale, lsq_factor(x.numel(), self.x_hi))
            x_int = self.input_codes(x, s_x)
        s_w = self._pow2(grad_scale(self.weight_scale, self._w_grad))
        w_int = self.weight_codes(w, self._weight_scale_full(s_w))
        if self.zero_point:
            x_int = x_int + self.zero_point  # driven with the zero point (A-shift: signed)
        y_parts = self._integer(x_int, w_int)  # (T, M, N)
        raw = y_parts  # a fused activation compares these (its references hold the rest)
        if self.zero_point:
            # the exact digital correction -z·Σ_k w_int per part (differentiated: the gradient
            # is that of the unshifted product the chip computes)
            y_parts = y_parts - self.zero_point * (w_int @ self._part_mask.t()).t()[:, None, :]
        if self.n_parts > 1:
            scale = s_x * s_w  # (T, N): one scale row per part
        else:
            scale = (s_x * s_w[:1]).reshape(1, -1)  # (1, 1) or (1, N)
        terms = y_parts * scale[:, None, :]
        if x_scale is not None:  # and each vector's power of two per part (exact)
            terms = terms * x_scale.t()[:, :, None]
        y = terms[0]
        for term in terms[1:]:  # part by part, as the engine's digital accumulator adds them:
            y = y + term        # sum(dim=0) adds in another order, an ulp apart on lossless chips
        if self.out_rescale != 1.0:
            y = y * self.out_rescale
        return (y if self.bias is None else y + self.bias), raw

    def integer_forward(self, x_int: torch.Tensor) -> torch.Tensor:
        """Integer-domain result (T, M, N) of integer inputs (M, K) with the current integer
        weights: what ``engine.run`` gives for each part (T = number of parts)."""
        with torch.no_grad():
            return self._integer(x_int.to(self.weight.dtype), self.quantized_weight())

    def _integer(self, x_int: torch.Tensor, w_int: torch.Tensor) -> torch.Tensor:
        """The arrays, the ADCs and the shift-add: (T, M, N) from integer operands, through
        one autograd function (:class:`_ChipProduct`); each part's exact product when
        :attr:`lossless`."""
        if self.lossless:
            return torch.stack([(x_int * m) @ w_int.t() for m in self._part_mask])
        if self.nonlinear_adc:
            ratio = torch.ones_like(self._adc_delta0)  # the ramp's tables are not learned
        else:
            step: torch.Tensor = self.adc_step
            if step.requires_grad:
                n_values = self._adc_unit_size * (self.n_planes * x_int.shape[0])
                step = grad_scale(step, 1.0 / torch.sqrt(n_values * max(self.top_code, 1.0))
                                  if self.adc_grad is None else self.adc_grad)
            ratio = (step / self._adc_step0)[self._adc_unit]  # (G, C)
        return _ChipProduct.apply(x_int, w_int, ratio, self)

    def adc_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Current linear grid ``(lo, delta)``, each (G, C): the calibrated grid scaled by the
        learned step of its unit (exactly the calibrated one until the step moves)."""
        ratio = (self.adc_step / self._adc_step0)[self._adc_unit]
        return self._adc_lo0 * ratio, self._adc_delta0 * ratio

    def set_adc_tables(self, view: EngineView) -> None:
        """Take the linear ADC tables of ``view``'s parts (same geometry and calibration units,
        e.g. :func:`~cimsim.mapping.matrix.calibrate_adcs` of :meth:`to_engine`) as the
        calibrated grid: the learned steps restart from them."""
        tables = [layer.adc for _, _, layer in view.parts]
        if any(t is None for t in tables) or self.nonlinear_adc:
            raise ConfigError(f"{self.name or 'a twin'}: set_adc_tables takes calibrated linear "
                              "ADC tables (adc.range_policy = 'calibrated', a linear adc.kind)")
        lo = np.concatenate([t.lo for t in tables if t is not None])
        delta = np.concatenate([t.delta for t in tables if t is not None])
        unit = self._adc_unit.cpu().numpy()
        step = np.empty(self.adc_step.numel())
        step[unit.ravel()] = delta.ravel()
        with torch.no_grad():
            for buf, v in ((self._adc_lo0, lo), (self._adc_delta0, delta),
                           (self._adc_step0, step), (self.adc_step, step)):
                buf.copy_(torch.as_tensor(v, dtype=buf.dtype))
        self._init64["lo"], self._init64["delta"] = lo.copy(), delta.copy()
        self._mark_float64()

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        # the float64 values the twin hands back and converts with (_init64, _smooth64) are
        # not in the state dict: where a load brings other values into the buffers that hold
        # them in the twin's dtype, they follow those. A float32 twin loaded with another
        # twin's recalibrated ADC tables kept its own prepare's grid: every output differed
        # from the saved twin's, its fused and torch paths disagreed, and its deploy followed
        # neither. A load that brings the same values (a round trip) leaves them exact
        self._follow_buffers()  # what changed before the load follows first
        super()._load_from_state_dict(state_dict, prefix, *args)
        self._follow_buffers()

    def _mark_float64(self) -> None:
        """Note that ``_init64`` / ``_smooth64`` stand for the buffers' present values: after
        whoever set both (prepare, :meth:`set_adc_tables`, the training methods)."""
        self._float64_at = {name: buf.detach().clone() for _, name in _FOLLOWED
                            if (buf := self._buffers.get(name)) is not None}

    def _follow_buffers(self) -> None:
        """The float64 values follow a buffer that changed since they were set (in the twin's
        dtype: the float64 value becomes the buffer's, as a load brings it). Buffers change
        behind the twin's back: DistributedDataParallel copies rank 0's into every rank in
        place (at its start and before each forward), as does a ``copy_`` into
        ``state_dict()``'s tensors; the twin then computed with its own prepare's grid and
        scales while its state dict held rank 0's (another chip on every rank, averaged
        gradients of different chips, and a deploy that followed neither). A cast of the
        twin (``.double()``, ``.to(device)``) is no change."""
        at = self.__dict__.get("_float64_at")
        if at is None:  # a twin pickled by an older cimsim: its values stand for its buffers
            self._mark_float64()
            return
        for key, name in _FOLLOWED:
            buf = self._buffers.get(name)
            if buf is None:
                continue
            old = at.get(name)
            if old is not None and old.shape == buf.shape:
                if old.dtype == buf.dtype and old.device == buf.device:
                    if torch.equal(old, buf):
                        continue
                elif torch.equal(old.to(device=buf.device, dtype=buf.dtype), buf):
                    at[name] = buf.detach().clone()  # cast with the twin: compare it as it is
                    continue
            if old is not None:  # changed: the float64 value follows it
                loaded = buf.detach().cpu().double().numpy().copy()
                if key == "smooth":
                    self._smooth64 = loaded
                elif self._init64.get(key) is not None:
                    self._init64[key] = (float(loaded.reshape(-1)[0]) if key == "s_x"
                                         else loaded.reshape(np.shape(self._init64[key])))
            at[name] = buf.detach().clone()

    # --- the arrays (no autograd: _ChipProduct's forward) --------------------------------------
    def _row_groups(self, v: torch.Tensor) -> torch.Tensor:
        """(..., K) -> (G, ..., r): the rows of every row group (a zero row pads ragged ones)."""
        g_n, r = self.n_groups, self.group_rows
        if self.contiguous:
            if self.tail_pad:
                v = F.pad(v, (0, self.tail_pad))
            grouped = v.reshape(*v.shape[:-1], g_n, r)
        else:
            grouped = F.pad(v, (0, 1)).index_select(-1, self._gidx.reshape(-1)).reshape(
                *v.shape[:-1], g_n, r)
        return grouped.movedim(-2, 0)

    def _plane_groups(self, x_int: torch.Tensor) -> torch.Tensor:
        """The DAC planes of integer inputs (M, K) by row group: (G, P·M, r), or on the CPU
        with contiguous groups the planes themselves, (P·M, K), which :meth:`_group_mm` and
        :meth:`_group_sum` read group by group (a ragged last group then costs no pad rows:
        ResNetDigits' 144-row convolutions were 256 rows of planes and GEMM). Otherwise
        contiguous groups with a ragged tail pad the inputs, not the P times larger planes (a
        zero input is a zero digit on every plane, the zero row :meth:`_row_groups` pads)."""
        m = x_int.shape[0]
        padded = self.contiguous and self.tail_pad > 0
        if (self.options.fused_kernel and x_int.device.type == "cpu"
                and x_int.dtype in (torch.float32, torch.float64)):
            # one compiled pass (_kernels.dac_planes; its twin is the torch path below)
            chip = self.chip
            mode = (0 if not self.input_signed else
                    2 if chip.dac.signed_inputs is SignedInputMode.TWO_PASS else 1)
            planes = x_int.new_empty((self.n_planes, m, x_int.shape[1]))
            dac_planes(x_int.detach().contiguous().numpy(), chip.dac_bits, mode,
                       planes.numpy())
            if self.contiguous:
                return planes.reshape(self.n_planes * m, -1)
            padded = False
        elif padded:
            planes = input_planes(F.pad(x_int, (0, self.tail_pad)), self.chip,
                                  self.input_signed)
        else:
            planes = input_planes(x_int, self.chip, self.input_signed)  # (P, M, K)
        if not padded:
            return self._row_groups(planes.reshape(self.n_planes * m, -1))
        return planes.reshape(self.n_planes * m, self.n_groups, self.group_rows).movedim(-2, 0)

    @functools.cached_property
    def _group_bounds(self) -> tuple[tuple[int, int], ...]:
        """Each row group's input columns [k0, k1): fixed by the layout, computed once (it was
        rebuilt on every product and sum of every step)."""
        r, k = self.group_rows, self.n_inputs
        return tuple((g * r, min((g + 1) * r, k)) for g in range(self.n_groups))

    def _group_mm(self, x: torch.Tensor, mats: torch.Tensor) -> torch.Tensor:
        """Each row group's product (G, P·M, C) of planes ``x`` from :meth:`_plane_groups`
        and ``mats`` (G, r, C): one batched GEMM of grouped planes (G, P·M, r), or one GEMM per
        group on its columns of flat planes (P·M, K), without the pad rows. With integer
        cell digits the sums are exact either way; with programmed (real) conductances the two
        may add in another order, an ulp apart (as the engine's own GEMM may be from both)."""
        if x.dim() == 3:
            return torch.bmm(x, mats)
        out = x.new_empty((self.n_groups, x.shape[0], mats.shape[2]))
        for g, (k0, k1) in enumerate(self._group_bounds):
            torch.mm(x[:, k0:k1], mats[g, :k1 - k0], out=out[g])
        return out

    def _group_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Σ of each row group's planes (G, P·M, 1), from either form of :meth:`_group_mm`."""
        if x.dim() == 3:
            return x.sum(dim=2, keepdim=True)
        return torch.stack([x[:, k0:k1].sum(dim=1) for k0, k1 in self._group_bounds]
                           )[:, :, None]

    def _from_row_groups(self, v: torch.Tensor) -> torch.Tensor:
        """(G, ..., r) -> (..., K): the inverse of :meth:`_row_groups` (pad rows dropped)."""
        k = self.n_inputs
        flat = v.movedim(0, -2).reshape(*v.shape[1:-1], -1)
        if self.contiguous:
            return flat[..., :k]
        out = flat.new_zeros(*flat.shape[:-1], k + 1)
        return out.index_add_(-1, self._gidx.reshape(-1), flat)[..., :k]

    def conductance(self, w_int: torch.Tensor, fresh: bool = False) -> torch.Tensor:
        """Programmed conductance (cell-LSB) of every physical cell (Q, N, K) holding integer
        weights ``w_int``: the chip's cells (``fresh``: a new draw of every cell)."""
        return self._programmed(physical_digits(w_int, self.chip), fresh)

    def _programmed(self, digits: torch.Tensor, fresh: bool) -> torch.Tensor:
        """:meth:`conductance` of cells holding ``digits`` (Q, N, K)."""
        z: torch.Tensor | None = self._dev_z if self.has_dev_z else None
        u: torch.Tensor | None = self._dev_u if self.has_dev_u else None
        if fresh:
            z = None if z is None else torch.randn_like(digits)
            u = None if u is None else torch.rand_like(digits)
        return cell_conductance(digits, self.chip, z, u, xp=torch)

    def _per_level(self, values: tuple[float, ...], digits: torch.Tensor) -> torch.Tensor:
        """A per-level device parameter at the level of every cell holding ``digits`` (a
        bipolar cell's magnitude; one value: everywhere)."""
        table = torch.as_tensor(values, dtype=self.weight.dtype, device=digits.device)
        if len(values) == 1:
            return table[0]
        signed = self.chip.weight_encoding is WeightEncoding.SIGNED_CELL
        return table[(digits.abs() if signed else digits).long()]

    def cells_at_time(self, digits: torch.Tensor, fresh: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Conductance (Q, N, K) of the cells holding ``digits`` (:func:`physical_digits`) at
        the twin's time, the drift compensation's gains (T, C) then (None without one):
        ``cimsim.arrays.drift``'s :func:`~cimsim.arrays.drift.aged_conductance` and
        α_c = r_c(t0) / r_c(t) over the columns' all-ones reads (``fresh``: the programming
        and the future drawn anew), and the level each cell's device parameters are taken at
        (:func:`~cimsim.arrays.drift.state_levels`: a stuck cell's state, as the engine's)."""
        g0 = self._programmed(digits, fresh)
        # faults set a cell to exactly the on or off conductance, stored in float32
        levels = state_levels(digits, g0.to(torch.float32).to(g0.dtype) if self.has_dev_u
                              else None, self.chip, xp=torch)
        aging = self.aging
        if aging is None or aging.t_s <= aging.t0_s:
            return g0, None, levels  # at t0 every factor is 1 (the programmed layer)
        chip, dev = self.chip, self.chip.device
        # the engine keeps the programmed conductances in float32 and ages them in float64
        # (nominal cells from their float64 digits): its gains and drift follow that rounding
        g0_32 = g0.to(torch.float32).to(g0.dtype)
        if self.has_dev_z or self.has_dev_u:
            g0 = g0_32
        nu = z_ret = None
        if aging.has_nu:
            z = torch.randn_like(g0) if fresh else self._nu_z
            nu = self._per_level(dev.drift_nu_mean, levels)
            if dev.drift_nu_sigma:
                nu = nu + self._per_level(dev.drift_nu_sigma, levels) * z
            nu = torch.abs(nu)
        if aging.has_ret:
            z_ret = torch.randn_like(g0) if fresh else self._ret_z
        g = aged_conductance(g0, aging.t_s, aging.t0_s, nu, z_ret, chip, xp=torch)
        if dev.drift_compensation is DriftCompensation.NONE:
            return g, None, levels

        def reads(cells: torch.Tensor) -> torch.Tensor:
            # (T, C): each conversion's columns read with an all-ones input, part by part
            col = torch.abs(cells) @ self._aging_rows.t()  # (Q, N, T)
            if chip.array.slice_readout is SliceReadout.ANALOG:
                w = torch.as_tensor(np.abs(_slice_weights(chip)), dtype=col.dtype,
                                    device=col.device)
                col = torch.tensordot(w, col, dims=1)
            else:  # an analog pair's two columns are read one by one, their currents added
                col = merge_columns(col, chip, square=True)
            return col.permute(2, 1, 0).reshape(col.shape[2], -1)  # c = n·Qc + q

        r0, rt = reads(g0_32), reads(g)
        if dev.drift_compensation is DriftCompensation.GLOBAL:
            r0, rt = r0.sum(dim=1, keepdim=True), rt.sum(dim=1, keepdim=True)
        return (g, gain_ratio(r0, rt, xp=torch).expand(-1, self.n_outputs * self.n_kinds),
                levels)

    def _read_rel(self, levels: torch.Tensor) -> torch.Tensor | float:
        """Relative read-noise sigma of every cell (Q, N, K) at ``levels`` (those of
        :meth:`cells_at_time`) at the twin's time: the white and the 1/f terms in variance
        (``cimsim.arrays.drift``); one value without 1/f."""
        rel = self.chip.noise.read_noise_rel
        q_s = self.chip.device.read_noise_q_s
        if self.aging is None or not any(q_s):
            return rel
        q = self._per_level(q_s, levels)
        return torch.sqrt(rel**2 + q * q * self.aging.growth)

    def _analog(self, x_int: torch.Tensor, w_int: torch.Tensor, noisy: bool,
                want_slope: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None,
                           torch.Tensor | None]:
        """Every (row group, plane · vector, conversion) noise-free analog value (G, P·M, C)
        from ONE batched GEMM (planes stacked along the vectors), the nominal off-state
        current and the column non-linearity; when ``noisy`` with per-cell read noise, each
        value's read-noise variance (G, P·M, C), else None; the drift compensation's gains
        (T, C), else None; and with ``want_slope`` and a non-linearity, its slope f' at every
        value (G, P·M, C; the mean of a pair's two columns), else None."""
        chip, nz = self.chip, self.chip.noise
        n = self.n_outputs
        g_cells = gain = levels = None
        merge = (lambda t: t) if self.split_pairs else (lambda t: merge_columns(t, chip))
        if self.devices == "nominal":
            digits = merge(physical_digits(w_int, chip))  # (Qc, N, K), pairs split: (Q, ...)
            off, has_off = self._off, self.has_off
        else:
            fresh = self.training and self.devices == "sampled"
            cell_digits = physical_digits(w_int, chip)  # (Q, N, K), once per forward
            g_cells, gain, levels = self.cells_at_time(cell_digits, fresh)
            digits = merge(g_cells)
            off, has_off = self._off_dev, self.has_off_dev
            if self.aging is not None and has_off:  # the analog reference has drifted too
                off = off * reference_drift(self.aging.t_s, chip)
        mg = self._row_groups(digits.permute(1, 0, 2).reshape(n * digits.shape[0], -1)
                              ).transpose(1, 2)
        xg = self._plane_groups(x_int)  # (G, P·M, r), or (P·M, K)
        a = self._group_mm(xg, mg)  # (G, P·M, C), c = n·Qc + q (pairs split: n·Q + q)
        if has_off:
            a += self._group_sum(xg) * off
        slope = None
        if self.transfer is not None:
            f, df = self.transfer
            slope = df(a) if want_slope else None
            a = f(a)
            if self.split_pairs:  # each column through f, then the pair's difference
                a = a[..., 0::2] - a[..., 1::2]
                slope = None if slope is None else 0.5 * (slope[..., 0::2] + slope[..., 1::2])
        var = None
        if noisy and (nz.read_noise_rel > 0 or (g_cells is not None and self.aging is not None
                                                and any(chip.device.read_noise_q_s))):
            # per-cell read noise: variance Σ_k x_p[k]² (rel·G[k, j])² of every column
            if g_cells is None:
                cell_var = read_noise_weights(w_int, chip)
            else:
                assert levels is not None
                cell_var = (self._read_rel(levels) * g_cells) ** 2
                cell_var = merge_columns(cell_var, chip, square=True)
            vg = self._row_groups(cell_var.permute(1, 0, 2).reshape(n * self.n_kinds, -1)
                                  ).transpose(1, 2)
            var = self._group_mm(xg * xg, vg)
        return a, var, gain, slope

    def _add_noise(self, a: torch.Tensor, var: torch.Tensor | None) -> torch.Tensor | None:
        """Thermal and read noise added to ``a`` in place; the comparator draws (LSB of the
        step, or None) the ADC adds."""
        th = self.chip.noise.thermal_sigma_lsb
        if var is not None or th > 0:
            sd = th if var is None else var.add_(th * th).sqrt_()
            z = torch.randn_like(a)
            a.add_(z.mul_(sd))  # in place: fresh buffers of this size cost more than math
            del z
        sigma = self.chip.adc.comparator_noise_lsb
        return sigma * torch.randn_like(a) if sigma > 0 else None

    def _convert_fused(self, a: torch.Tensor, var: torch.Tensor | None,
                       slope: torch.Tensor | None, ratio: torch.Tensor, coef: torch.Tensor,
                       noisy: bool, want_share: bool, want_step: bool
                       ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """What the torch path computes from the analog values ``a`` (G, P·M, C) — noise,
        linear ADC, shift-add, the backward's share (weighted by a column non-linearity's
        ``slope``) and LSQ derivative — in one CPU pass (``_kernels.convert_shift_add``):
        y (G, M, N), share (G, M, N), d_step (G, M, C)."""
        adc = self.chip.adc
        g_n, p = self.n_groups, self.n_planes
        m = a.shape[1] // p
        keys = (0, 0)
        th, cmp_sigma = self.chip.noise.thermal_sigma_lsb, adc.comparator_noise_lsb
        if not noisy:
            th, cmp_sigma, var = 0.0, 0.0, None
        else:  # counter-based draws keyed by torch's generator: seeded runs repeat
            keys = tuple(int(k) for k in torch.randint(0, 2**62, (2,)))  # type: ignore[assignment]

        def arr(t: torch.Tensor) -> np.ndarray:
            return t.detach().contiguous().numpy()

        lo0_t, d0_t, top = self._adc_grid0()  # the calibrated grid, or another precision's
        lo0, d0 = arr(lo0_t), arr(d0_t)
        r = arr(ratio)
        lo, delta = lo0 * r, d0 * r
        if lo0_t is self._adc_lo0:
            # the engine's float64 grid (scaled by the learned change): a float32 (a - lo) / Δ
            # rounds an analog value on a code boundary (a sum of 0 under A-shift's signed
            # inputs on a full-scale grid) the other way than the engine does
            r64 = r.astype(np.float64)
            lo, delta = self._init64["lo"] * r64, self._init64["delta"] * r64

        def planes(t: torch.Tensor | None) -> np.ndarray | None:
            return None if t is None else arr(t).reshape(g_n, p, m, -1)

        y, share, d_step = fused_convert(
            arr(a).reshape(g_n, p, m, -1), planes(var), planes(slope), th, cmp_sigma, keys,
            lo, delta, lo0, d0, arr(self._sig), arr(coef), self.n_kinds, adc.gain_error,
            adc.offset_error_lsb, top, want_share, want_step)

        def back(v: np.ndarray | None) -> torch.Tensor | None:
            return None if v is None else torch.from_numpy(v)

        return torch.from_numpy(y), back(share), back(d_step)

    def _convert(self, a: torch.Tensor, cmp: torch.Tensor | None, ratio: torch.Tensor,
                 want_step: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The ADC, in place on analog values ``a`` (G, P·M, C): converted values, the
        straight-through mask (True where the conversion did not clip) and, if ``want_step``,
        ∂value/∂ratio (G, P·M, C) of a linear ADC (LSQ)."""
        adc = self.chip.adc
        g1 = 1.0 + adc.gain_error
        if self.nonlinear_adc:
            if self.adc_bits_override is not None:
                raise ConfigError("adc_bits override: only linear ADCs (adc.kind = 'sar', "
                                  "'flash', 'single_slope', 'cco', 'integrate_fire' or 'tdc'); "
                                  "this twin has a ramp NL-ADC")
            delta = self._adc_delta0[:, None, :]
            if g1 != 1.0 or adc.offset_error_lsb != 0:
                a.mul_(g1).add_(adc.offset_error_lsb * delta)
            if cmp is not None:
                a.add_(cmp * delta)
            if self.activation is not None:
                # the fused activation compares in forward() (its references follow the
                # learned scales); the analog value passes, its gradient whole
                return a, torch.ones_like(a, dtype=torch.bool), None
            at = a.transpose(1, 2).contiguous()  # (G, C, P·M)
            code = torch.searchsorted(self._adc_thr, at, right=True)
            lvl = self._adc_lvl
            inside = (at >= lvl[..., :1]) & (at <= lvl[..., -1:])
            return (torch.gather(lvl, 2, code).transpose(1, 2),
                    inside.transpose(1, 2), None)
        lo0_g, d0_all, top = self._adc_grid0()
        lo0 = lo0_g[:, None, :]
        kept = None
        if self.adc_hook is not None:  # e.g. ColumnQuant's data-dependent centre
            lo0, kept = self.adc_hook(self, a, ratio)
        lo = lo0 * ratio[:, None, :]
        delta = (d0_all * ratio)[:, None, :]
        # the engine's order of operations, so that codes agree up to float ties
        if g1 != 1.0 or adc.offset_error_lsb != 0:
            a.mul_(g1).add_(adc.offset_error_lsb * delta)
        if cmp is not None:
            a.add_(cmp * delta)
        u = a.sub_(lo).div_(delta)  # the grid position
        code = torch.add(u, 0.5).floor_()
        inside = code.ge(0.0).logical_and_(code.le(top))
        if kept is not None:
            inside.logical_and_(kept)
        code.clamp_(0.0, top)
        d_ratio = None
        if want_step:
            # v = lo₀·r + Δ₀·r·code(u): ∂v/∂r = Δ₀·(code + shift − u) inside, lo₀ + Δ₀·code
            # outside (LSQ); shift = what the analog value moves per unit Δ (offset, comparator).
            # Computed in u's storage: each fresh buffer of this size costs more than its math.
            d0 = d0_all[:, None, :]
            if cmp is not None:
                u.sub_(cmp)
            d_ratio = u.sub_(adc.offset_error_lsb).neg_().mul_(d0)
            torch.where(inside, d_ratio, lo0, out=d_ratio)
            d_ratio.addcmul_(code, d0)
        return code.mul_(delta).add_(lo), inside, d_ratio

    def _adc_grid0(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """The linear grid (lo₀, Δ₀, top code) before the learned ratio: the calibrated one,
        or with :attr:`adc_bits_override` the same range at b bits (Δ₀·(2^b0−1)/(2^b−1), lo₀
        snapped to that step so that a zero-aligned grid keeps 0 as a code)."""
        b = self.adc_bits_override
        if b is None or b == self.chip.adc.bits:
            return self._adc_lo0, self._adc_delta0, self.top_code
        lo0, d0 = _grid_at_bits(self._adc_lo0, self._adc_delta0, self.top_code, b)
        return lo0, d0, float(2 ** b - 1)

    def _shift_add(self, val: torch.Tensor, m: int, coef: torch.Tensor) -> torch.Tensor:
        """(G, P·M, C) per-conversion values -> (G, M, N): Σ_p sig_p Σ_q coef_q · value."""
        g_n, p = self.n_groups, self.n_planes
        # one weight per conversion (C,), or per (row group, conversion) (G, C) when a method
        # learns them (cimsim.train.ternary) or a drift compensation's gains multiply them
        val = val.mul_(coef if coef.dim() == 1 else coef[:, None, :])
        y = torch.matmul(self._sig.view(1, 1, p), val.reshape(g_n, p, -1))  # (G, 1, M·C)
        return y.reshape(g_n, m, self.n_outputs, self.n_kinds).sum(dim=3)

    def _to_parts(self, y: torch.Tensor) -> torch.Tensor:
        """(G, M, N) per row group -> (T, M, N) per part."""
        if self.n_parts == 1:
            return y.sum(dim=0, keepdim=True)
        return y.new_zeros((self.n_parts, *y.shape[1:])).index_add(0, self._group_part, y)

    # --- back to the engine -----------------------------------------------------------------
    def adc_tables_on(self, chip: ChipConfig) -> tuple[bool, bool]:
        """Whether :meth:`to_engine` on ``chip`` carries the learned ADC tables as they are
        (:func:`carries_adc_tables`) and whether it carries the learned range on the chip's
        grid of other bits (:func:`regrids_adc_tables`); neither: the chip's own fixed
        tables, or a ``ConfigError`` where its ranges are calibrated (they need a
        calibration pass). Checked before anything is programmed."""
        own_adc = carries_adc_tables(self.chip.adc, chip.adc)
        # a grid start a method's hook sets (ColumnQuant's centre) is the twin's bits' alone
        regrid = (not own_adc and regrids_adc_tables(self.chip.adc, chip.adc)
                  and self.activation is None and not self.nonlinear_adc
                  and self.adc_hook is None)
        if not (own_adc or regrid) and chip.adc.range_policy is RangePolicy.CALIBRATED:
            why = ("a fused layer-output activation's levels are learned at the twin's bits"
                   if self.activation is not None else
                   "its grid starts at the centre a method set at the twin's bits (ColumnQuant)"
                   if self.adc_hook is not None else
                   "a nonlinear converter's levels are fitted at the twin's bits"
                   if self.nonlinear_adc else None)
            raise ConfigError(_needs_calibration(self.chip, chip, why))
        return own_adc, regrid

    def to_engine(self, seed: int | None = None, chip: ChipConfig | None = None) -> EngineView:
        """The engine's view of the current state: integer weights, learned scales, the
        programmed parts (``program`` with ``seed``, default the twin's) carrying the learned
        ADC tables.

        ``chip`` programs the weights on another chip of the same geometry (other noise,
        variation, non-linearity or ADC bits): with the twin's ADC ranges
        (:func:`carries_adc_tables`: its settings, up to the converter's own errors and noise
        and a linear kind for a linear kind) the learned tables are carried; a calibrated
        linear ADC of other bits (:func:`regrids_adc_tables`) gets the learned range on its
        own grid, as :attr:`adc_bits_override` computes it in the twin (the step
        Δ·(2^b0−1)/(2^b−1), the start snapped to it); with other ADCs the new chip's
        hardware-fixed tables are used (another ``calibrated`` one is a ``ConfigError``: it
        needs a calibration pass).
        """
        seed = self.seed if seed is None else seed
        chip = self.chip if chip is None else chip
        own_adc, regrid = self.adc_tables_on(chip)
        view, act = self._engine_state(seed, chip)
        if not (own_adc or regrid):
            return view  # the new chip's static tables, set by program
        if act is not None:
            tabs = activation_tables(self.activation_levels(), act)
            (a, b, layer), = view.parts
            return dataclasses.replace(view, parts=((a, b, layer.with_adc(tabs)),))
        init = self._init64
        if not self.nonlinear_adc:
            ratio = _change(self.adc_step, self._adc_step0)[self._adc_unit.cpu().numpy()]
            lo0, d0 = init["lo"], init["delta"]
            if regrid:  # _adc_grid0's range at the chip's bits, in float64
                lo0, d0 = _grid_at_bits(lo0, d0, self.top_code, chip.adc.bits)
            lo, delta = lo0 * ratio, d0 * ratio
        else:
            thr, lvl = init["thr"], init["lvl"]
        gp = self._group_part.cpu().numpy()
        out = []
        for i, (a, b, layer) in enumerate(view.parts):
            sel = gp == i
            tabs = (ADCTables.from_levels(thr[sel], lvl[sel]) if self.nonlinear_adc
                    else ADCTables.linear(lo[sel], delta[sel]))
            out.append((a, b, layer.with_adc(tabs)))
        return dataclasses.replace(view, parts=tuple(out))

    def _engine_scales(self) -> tuple[np.ndarray, float, np.ndarray]:
        """The learned scales and integer weights as the engine gets them: ``s_w`` (T, N)
        float64 (the forward rescale folded in), ``s_x``, ``w_int`` (N, K) int64."""
        self._follow_buffers()
        s_x = float(_learned(self.act_scale, self._act_scale0, self._init64["s_x"]))
        w_int, s_w = self._engine_weights()
        # one row per part (a layer / array scale is shared by the parts), forward rescale folded
        s_w = np.broadcast_to(s_w, (self.n_parts, self.n_outputs)) * self.out_rescale
        return s_w, s_x, w_int

    def _engine_state(self, seed: int, chip: ChipConfig
                      ) -> tuple[EngineView, FusedActivation | None]:
        """The current state programmed on ``chip`` (parts without the learned ADC tables) and,
        for a fused activation, its (kappa, bias) from that view (:func:`fused_activation`)."""
        s_w, s_x, w_int = self._engine_scales()
        parts = program_parts(w_int, chip, seed, self.input_signed, self.row_tiles, self.name)
        parts = [(a, b, self._engine_part(i, layer)) for i, (a, b, layer) in enumerate(parts)]
        view = EngineView(chip=chip, w_int=w_int, s_w=s_w, s_x=s_x,
                          input_signed=self.input_signed, row_tiles=tuple(self.row_tiles),
                          parts=tuple(parts), seed=seed, zero_point=self.zero_point,
                          # a copy, as every array handed back: a deployed model shared the
                          # twin's, and a later load_state_dict into the twin changed it
                          smooth=None if self._smooth64 is None else self._smooth64.copy())
        if self.activation is None or not carries_adc_tables(self.chip.adc, chip.adc):
            return view, None
        bias = None if self.bias is None else self.bias.detach().cpu().double().numpy()
        act = fused_activation(view, self.activation_clamp, bias, self.name)
        if act is None:
            # a step too large for a scale learns it through 0: name that cause, not only the
            # kappa the warning names
            bad = [f"{name} ({int(np.sum(v <= 0))} of {np.size(v)} values <= 0)"
                   for name, v in (("weight_scale", s_w), ("act_scale", s_x))
                   if np.any(np.asarray(v) <= 0)]
            why = ("; its learned " + ", ".join(bad) + " went through 0 in training: a smaller "
                   "learning rate for the scales (cimsim.train.param_groups) keeps them "
                   "positive" if bad else " (see the warning)")
            raise MappingError(f"layer {self.name!r}: the trained state cannot hold the fused "
                               f"activation{why}")
        return dataclasses.replace(view, activation=act), act

    def _engine_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Integer weights (N, K) and scales ((1 or T), (1 or N)) the engine programs: the
        weights quantized in float64 with the float64 scales, as deploy quantizes."""
        s_w = _learned(self.weight_scale, self._weight_scale0, self._init64["s_w"])
        if self.pow2_scales:
            s_w = pow2_scale(s_w)
        w = self.effective_weight().detach().cpu().double().numpy()
        s_full = s_w[self._w_tile.cpu().numpy()].T if s_w.shape[0] > 1 else s_w.T
        w_int = (binary_codes(w) if self.binary else
                 np.clip(np.rint(w / s_full), -self.w_qmax, self.w_qmax).astype(np.int64))
        return w_int, s_w

    def _engine_part(self, i: int, layer: ProgrammedLayer) -> ProgrammedLayer:
        """Part ``i`` as programmed, changed by a method before its ADC tables are set (hook:
        unchanged here)."""
        return layer

    def programmed(self, seed: int | None = None) -> tuple[ProgrammedLayer, ...]:
        """The programmed layer of every part with the learned ADC tables."""
        return self.to_engine(seed).layers

    def extra_repr(self) -> str:
        return (f"in={self.n_inputs}, out={self.n_outputs}, planes={self.n_planes}, "
                f"kinds={self.n_kinds}, groups={self.n_groups}, parts={self.n_parts}")


def _grid_at_bits(lo0: Any, d0: Any, top: float, bits: int) -> tuple[Any, Any]:
    """A linear ADC's range (start ``lo0``, step ``d0``, ``top`` + 1 codes) on a ``bits``-bit
    grid: the step ``d0 * top / (2^bits - 1)``, the start snapped to it (half to even), so that
    a zero-aligned grid keeps 0 as a code; torch tensors (the twin's forward at other bits) or
    float64 NumPy arrays (the engine's tables at those bits) alike."""
    d = d0 * (top / float(2 ** bits - 1))
    return (lo0 / d).round() * d, d


def _change(p: torch.Tensor, p0: torch.Tensor) -> np.ndarray:
    return (p.detach() / p0).cpu().double().numpy()


_FOLLOWED = (("s_w", "_weight_scale0"), ("s_x", "_act_scale0"), ("lo", "_adc_lo0"),
             ("delta", "_adc_delta0"), ("thr", "_adc_thr"), ("lvl", "_adc_lvl"),
             ("smooth", "_smooth"))
"""The float64 values a twin hands back from (``TwinMatmul._init64`` by key; ``smooth``:
``_smooth64``) and the buffers that hold them in the twin's dtype (in the state dict), which
they follow (:meth:`TwinMatmul._follow_buffers`)."""


def _learned(p: torch.Tensor, p0: torch.Tensor, v0: np.ndarray | float) -> np.ndarray:
    """A learned parameter handed back in float64: a float64 twin computes with its parameters
    themselves (bit-equal outputs); a lower-precision one moved the float64 start by p/p0."""
    if p.dtype == torch.float64:
        return p.detach().cpu().numpy().copy()
    return v0 * _change(p, p0)


class _ChipProduct(torch.autograd.Function):
    """The arrays, ADCs and shift-add of one :class:`TwinMatmul` as one autograd function.

    Forward: ``twin``'s integer-domain result (T, M, N) of integer operands ``x_int`` (M, K)
    and ``w_int`` (N, K) with ADC grid ``ratio`` (G, C) (calibrated grid x ratio), computed
    in place without autograd; it keeps only what the backward needs, reduced over the planes
    and conversion kinds: the share of unclipped conversions (G, M, N) and the LSQ
    derivative in ``ratio`` (G, M, C).

    Backward, straight through at the cost of the float layer (one GEMM of M·N·K per operand):
    the gradient of the plain product ``x_int @ w_int.T`` of every row group, times the share
    of its P·Q conversions that did not clip (each weighted by a column non-linearity's slope
    at its value), and the ADC gain.
    """

    @staticmethod
    def forward(ctx, x_int, w_int, ratio, twin):  # noqa: D102
        m, (g_n, p, qc) = x_int.shape[0], (twin.n_groups, twin.n_planes, twin.n_kinds)
        noisy = twin.training and twin.options.train_noise
        want_step = ctx.needs_input_grad[2]
        want_share = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        a, var, gain, slope = twin._analog(x_int, w_int, noisy, want_slope=want_share)
        # the conversions' digital weights, times a drift compensation's gains (per group)
        coef = twin._coef if gain is None else twin._coef * gain.index_select(
            0, twin._group_part)
        if twin.fused and a.device.type == "cpu" and twin.adc_hook is None:
            y, share, d_step = twin._convert_fused(a, var, slope, ratio, coef, noisy,
                                                   want_share, want_step)
        else:
            cmp = twin._add_noise(a, var) if noisy else None
            del var
            val, inside, d_ratio = twin._convert(a, cmp, ratio, want_step)
            del a, cmp
            y = twin._shift_add(val, m, coef)
            del val
            share = d_step = None
            if want_share:
                # Σ over planes as a GEMV (a strided reduction over two axes is several times
                # slower)
                ones = x_int.new_full((1, 1, p), 1.0 / (p * qc))
                passed = inside.to(x_int.dtype)
                if slope is not None:  # through the column non-linearity: its slope
                    passed.mul_(slope)
                share = torch.matmul(ones, passed.reshape(g_n, p, -1))
                share = share.reshape(g_n, m, twin.n_outputs, qc).sum(dim=3)
            del inside
            if d_ratio is not None:
                d_step = torch.matmul(twin._sig.view(1, 1, p), d_ratio.reshape(g_n, p, -1))
                d_step = d_step.reshape(g_n, m, -1)  # Σ_p sig_p ∂v/∂ratio, (G, M, C)
        y = twin._to_parts(y)
        if twin.has_x_sum:
            xs = x_int @ twin._part_mask.t()  # (M, T): Σ_k x[k] per part
            y = y + xs.t()[:, :, None] * twin._x_sum_coef
        ctx.twin = twin
        ctx.save_for_backward(x_int, w_int, share, d_step, coef)
        return y

    @staticmethod
    def backward(ctx, gy):  # noqa: D102
        twin = ctx.twin
        x_int, w_int, share, d_step, coef = ctx.saved_tensors
        gx = gw = gr = None
        # per row group; a single part broadcasts (index_select is slow on expanded grads)
        g_n = twin.n_groups
        gyg = (gy.expand(g_n, -1, -1) if twin.n_parts == 1
               else gy.index_select(0, twin._group_part)).contiguous()
        if share is not None:
            gg = gyg * share * (1.0 + twin.chip.adc.gain_error)  # (G, M, N)
            if ctx.needs_input_grad[0]:
                gx = twin._from_row_groups(torch.bmm(gg, twin._row_groups(w_int)))
            if ctx.needs_input_grad[1]:
                gw = twin._from_row_groups(torch.bmm(gg.transpose(1, 2),
                                                     twin._row_groups(x_int)))
        if d_step is not None:
            gr = torch.einsum("gmn,gmnq->gnq", gyg,
                              d_step.view(g_n, -1, twin.n_outputs, twin.n_kinds))
            gr = gr.reshape(g_n, -1) * coef
        return gx, gw, gr, None


# --------------------------------------------------------------------------------------------
# Model layers: observe during calibration, then compute through twins
# --------------------------------------------------------------------------------------------
_HALF = (torch.float16, torch.bfloat16)
HALF_WEIGHTS = ("hold float16/bfloat16 weights, too narrow for the twin's integer arithmetic; "
                "prepare (and train) a float32 (or float64) model, model.float(), and cast "
                "the float model after training")


@eager  # (a hook is traced with the layer: see _TwinLayer.__init_subclass__)
def _refuse_swapped(layer: _TwinLayer, args: tuple) -> None:
    """A twin layer's forward pre-hook (a function, not a lambda: a prepared model pickles):
    weights set from outside, and inputs of a ``torch.func`` transform, refused."""
    refuse_swapped_weights(layer, layer.twin_name)
    refuse_transformed_inputs(layer.twin_name, args)
    refuse_non_float_input(layer.twin_name, args)
    if any(t.weight.dtype in _HALF for t in layer.matrices()):
        # prepared.half() / .bfloat16(): the ADC kernel failed in Numba ("float16") or torch
        # ("unsupported ScalarType BFloat16"), naming no layer
        raise MappingError(f"{layer.twin_name}: {HALF_WEIGHTS}; cast the prepared model "
                           "back with prepared.float()")


class _TwinLayer(ViewsWeights):
    """A mapped module: float while the calibration pass observes it, twins afterwards.

    Each weight matrix ``i`` of the layer is programmed with ``matrix_seed(layer_seed, i)``,
    the derivation ``cimsim.deploy`` uses for the same layer.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # the twins compute in NumPy and Numba, as the deployed layers: a torch.compile'd
        # prepared model runs them eagerly, its graph broken around them (Dynamo traced into
        # them, printing a graph-break warning per layer, and fullgraph=True failed on an
        # internal check, naming no layer)
        if "forward" in vars(cls):
            cls.forward = eager(vars(cls)["forward"])

    def __init__(self, src: nn.Module, name: str, chip: ChipConfig, seed: int,
                 options: TwinOptions, n_matrices: int):
        super().__init__()
        self.twin_name = name
        self.chip = chip
        self.options = options
        self.twins = nn.ModuleList()
        # a tuple, so that the float source is no submodule: its stale parameters stay out of
        # parameters() and state_dict(); float_module() copies it with the learned weights
        self._float_src: tuple[nn.Module] = (src,)
        self._seeds = [self.matrix_seed(seed, i) for i in range(n_matrices)]
        self._stats = [InputStats(s) for s in self._seeds]
        self.activation_clamp: float | None = None
        """Set by ``prepare`` when the layer's only consumer is a ReLU (``inf``) or a clamped
        one and the chip's layer-output ADC fuses it (``adc.fuse_activation``), as deploy
        sets ``MatmulCore.activation_clamp``."""
        self.zero_inputs: list[str] = []
        """Names of its matrices whose calibration inputs were all 0 (prepare warns)."""
        self.coarse_inputs: list[str] = []
        """Names of its matrices whose input step an outlier sets (prepare warns)."""
        self.code_flags: dict[str, list[str]] = {f: [] for f in CodeFlags._fields}
        """Names of its matrices flagged by deploy's code-use check, per flag (prepare
        warns)."""
        self.deployed_views: dict[str, EngineView] = {}
        """Views deploy computed (``adc.calibration_mode = 'simulated'``): a matrix named here
        starts from this view instead of one fitted to the float pass."""
        # adapted weights set from outside (functional_call) would be ignored: refused
        self.register_forward_pre_hook(_refuse_swapped)

    def __getattr__(self, attr: str) -> Any:
        try:
            return super().__getattr__(attr)
        except AttributeError:
            src = self.__dict__.get("_float_src")
            config = source_config(src[0]) if src else {}  # kernel_size, stride, ...
            if attr in config:
                return config[attr]
            metas = tensor_metas(src[0]) if src else {}
            # the twins' parameters are where .to() / .double() moved the layer
            own = next((p for p in self.parameters() if p.is_floating_point()), None)
            if own is not None:
                metas = {a: m if m is None
                         else dataclasses.replace(m, dtype=own.dtype, device=own.device)
                         for a, m in metas.items()}
            return weight_view(self, attr, self.__dict__.get("twin_name", "?"), metas,
                               held="held by the training twin and quantized only in its "
                                    "own call")


    @staticmethod
    def matrix_seed(layer_seed: int, i: int) -> int:
        """Programming seed of matrix ``i`` of a layer seeded with ``layer_seed``."""
        return stream_key(layer_seed, i)

    @property
    def calibrating(self) -> bool:
        return len(self.twins) == 0

    def matrices(self) -> list[TwinMatmul]:
        """The twin of every weight matrix of the layer, in deploy's order."""
        return [t for t in self.twins if isinstance(t, TwinMatmul)]

    def finalize(self) -> None:
        """Build the twins from the calibration statistics (after the calibration pass)."""
        raise NotImplementedError

    def learned(self) -> dict[str, torch.Tensor | None]:
        """The learned float parameters, by their name in the source module."""
        raise NotImplementedError

    def float_module(self) -> nn.Module:
        """A copy of the source module holding the learned float weights and biases."""
        module = deepcopy(self._float_src[0])
        # with gradient: a weight put together from several twins (a convolution's groups,
        # attention's projections) requires it as its twins do, also when float_model() is
        # called under no_grad (it came out frozen there, and a fine-tuning trained nothing)
        with torch.enable_grad():
            learned = self.learned()
        for path, value in learned.items():
            owner_name, _, attr = path.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            if parametrize.is_parametrized(owner):  # weight_norm, spectral_norm: the twin
                # learned the weight itself, the float module holds it plainly. Not
                # remove_parametrizations: it edits the class the copy shares with the source
                owner.__class__ = owner.__class__.__bases__[0]
                del owner._modules["parametrizations"]
            if value is not None and attr in owner._buffers:
                # a weight the source holds as a buffer (an extreme learning machine's random
                # layer) stays one: it was made a frozen Parameter, so the float model's
                # parameters() and buffers() were not the source's
                setattr(owner, attr, value.detach().clone())
                continue
            # trainable as in the twin (a frozen backbone stays frozen): a float model to
            # fine-tune or export, not only to deploy
            setattr(owner, attr, None if value is None
                    else nn.Parameter(value.detach().clone(), requires_grad=value.requires_grad))
        return module

    def _float_pass(self, g: int, x2: torch.Tensor, w: torch.Tensor,
                    b: torch.Tensor | None) -> torch.Tensor:
        """Rows (M, K) of matrix ``g`` while the layer calibrates: recorded, and ``x2 @ w.T +
        b`` computed as deploy's float pass computes it (float64 NumPy, back in ``x2``'s dtype),
        not by torch: another summation order moves the next layer's recorded max by an ulp,
        and with it its activation scale (found by tests/test_backend_parity.py)."""
        x64 = x2.detach().to("cpu", torch.float64).numpy()
        self._stats[g].observe(x64, self.twin_name)
        y = float_product(x64, w.detach().to("cpu", torch.float64).numpy(),
                          None if b is None else b.detach().to("cpu", torch.float64).numpy())
        y_t = torch.from_numpy(y).to(x2.device, x2.dtype)
        if torch.is_grad_enabled() and x2.requires_grad:
            # the model differentiates its own forward (a PINN's torch.autograd.grad): the
            # gradient of x2 @ w.T, its value an exact zero, so y is what deploy computes
            lin = x2 @ w.detach().to(x2.dtype).T
            y_t = y_t + (lin - lin.detach())
        return y_t

    def _grouped_product(self, cols: torch.Tensor, mats: torch.Tensor,
                         bias: torch.Tensor | None, groups: int) -> torch.Tensor:
        """Rows (M, groups·K) through the stacked group matrices (groups·N, K): recorded and
        in float while the layer calibrates (plus ``bias``), through its twins afterwards."""
        k = cols.shape[1] // groups
        parts = [cols[:, i * k:(i + 1) * k] for i in range(groups)]
        if not self.calibrating:
            return torch.cat([t(p) for t, p in zip(self.twins, parts, strict=True)], dim=1)
        n_g = mats.shape[0] // groups
        return torch.cat([self._float_pass(i, p, mats[i * n_g:(i + 1) * n_g],
                                           None if bias is None else bias[i * n_g:(i + 1) * n_g])
                          for i, p in enumerate(parts)], dim=1)

    def _twin(self, w: torch.Tensor, b: torch.Tensor | None, i: int, name: str,
              row_tiles: list[tuple[int, int]] | None = None,
              layer_max_abs: float | None = None) -> TwinMatmul:
        clamp = self.activation_clamp
        bias = None if b is None else b.detach().cpu().double().numpy()

        def act(view: EngineView) -> FusedActivation | None:
            return fused_activation(view, clamp, bias, name)  # deploy's decision

        if self._stats[i].all_zero:
            self.zero_inputs.append(name)
        view = self.deployed_views.get(name) or engine_view(
            w.cpu().double().numpy(), self.chip, self._stats[i], seed=self._seeds[i],
            row_tiles=row_tiles, name=name, activation=act if clamp is not None else None,
            layer_max_abs=layer_max_abs)
        if coarse_inputs(view, self._stats[i]):
            self.coarse_inputs.append(name)
        # (all-zero calibration inputs are rows that do not vary: flagged by none)
        for flag, on in code_use(view, self._stats[i].sample, self._seeds[i])._asdict().items():
            if on:
                self.code_flags[flag].append(name)
        return TwinMatmul(w, b, view, self.options, name, calibration=self._stats[i].sample)

    def _group_twins(self, mats: torch.Tensor, bias: torch.Tensor | None, groups: int,
                     row_tiles: list[tuple[int, int]] | None = None, per: int = 1) -> None:
        """One twin per matrix of the stacked matrices ``mats`` (groups·N, K): a group each,
        or a block-diagonal pack of ``per`` groups (``array.group_packing``), named and scaled
        as deploy's ``grouped_cores`` (a group pruned whole: the layer's scale), sharing one
        activation scale (one input quantizer for the tensor all groups read). A pack keeps
        its off-diagonal weights at zero (``weight_keep``): no gradient mixes the groups."""
        InputStats.share(self._stats)
        n_g = mats.shape[0] // groups
        layer_max_abs = group_max_abs(mats.detach().cpu().double().numpy(), groups)
        for g in range(groups):
            self.twins.append(self._twin(mats[g * n_g:(g + 1) * n_g],
                                         None if bias is None else bias[g * n_g:(g + 1) * n_g],
                                         g, group_name(self.twin_name, g, groups, per),
                                         row_tiles, layer_max_abs))
        if per > 1:
            w0 = mats  # the twins' weights' dtype and device
            keep = pack_groups(torch.ones(n_g, mats.shape[1] // per, dtype=w0.dtype,
                                          device=w0.device), per, per)
            for t in self.twins:
                t.weight_keep = keep.clone()
        if self.chip.quant.smooth_alpha is None:
            # one input quantizer for the tensor; with smoothing deploy gives each group the
            # range of its own channels divided by their factors (matrix.engine_view), so a
            # shared scale quantized the other groups at the first's (tests/train/test_twin.py)
            shared = self.twins[0].act_scale
            for t in self.twins[1:]:
                t.act_scale = shared
        self._stats = []

    @property
    def fused(self) -> bool:
        """Whether every matrix's ADC is the following ReLU's quantizer."""
        twins = self.matrices()
        return bool(twins) and all(t.activation is not None for t in twins)


class TwinLinear(_TwinLayer):
    """``nn.Linear`` through a :class:`TwinMatmul`."""

    def __init__(self, src: nn.Linear, name: str, chip: ChipConfig, seed: int,
                 options: TwinOptions):
        super().__init__(src, name, chip, seed, options, 1)
        self.out_features, self.in_features = src.weight.shape  # the weight's, as SimLinear
        self._src = (src.weight.detach().clone(),
                     None if src.bias is None else src.bias.detach().clone())

    @staticmethod
    def matrix_seed(layer_seed: int, i: int) -> int:
        return layer_seed  # deploy programs a Linear with the layer's own seed

    def finalize(self) -> None:
        self.twins.append(self._twin(*self._src, 0, self.twin_name))
        self._stats = []

    def learned(self) -> dict[str, torch.Tensor | None]:
        (t,) = self.matrices()
        return {"weight": t.weight, "bias": t.bias}

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = input  # torch names it so: a caller may pass input=
        check_linear_input(self.twin_name, x, self.out_features, self.in_features)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if self.calibrating:
            y = self._float_pass(0, x2, *self._src)
        else:
            y = self.twins[0](x2)
        return y.reshape(*lead, self.out_features)

    def linear_through(self, x: torch.Tensor, bias: torch.Tensor | None
                       ) -> torch.Tensor | None:
        """``F.linear(x, self.weight, bias)`` in the model's code, as deploy computes it
        (:func:`~cimsim.mapping.functional.linear_through`)."""
        return linear_through(self, x, bias, self._src[1] is not None,
                              self.activation_clamp is not None)


class TwinAffine(TwinLinear):
    """A module that computes a Linear under another name (GPT-2's ``Conv1D``, a hand-written
    ``x @ W.T + b``; ``cimsim.mapping.affine``) through the :class:`TwinLinear` of that
    Linear; ``float_module`` gives the module back, its learned weight in its own layout."""

    def __init__(self, src: nn.Module, affine: AffineSource, name: str, chip: ChipConfig,
                 seed: int, options: TwinOptions):
        super().__init__(affine.linear, name, chip, seed, options)
        self._float_src = (src,)  # float_module copies the module itself, source_config reads it
        self._affine = affine

    def learned(self) -> dict[str, torch.Tensor | None]:
        out = super().learned()
        weight = out["weight"]
        assert weight is not None
        return {**out, "weight": self._affine.module_weight(weight)}


class TwinConv(_TwinLayer):
    """``nn.Conv1d`` / ``nn.Conv2d`` through one :class:`TwinMatmul` per group or pack of
    groups (im2col by strided windows; the groups share one activation scale)."""

    def __init__(self, src: nn.Conv1d | nn.Conv2d, name: str, chip: ChipConfig, seed: int,
                 options: TwinOptions):
        w = src.weight.detach().clone()
        w_shape = tuple(w.shape)
        if w.dim() == 3:
            w = w[:, :, None, :]
        out_channels, cin_g, kh, kw = w.shape
        k = cin_g * kh * kw
        per, w2, row_tiles = packed_groups(w.reshape(out_channels, k), src.groups, (kh, kw),
                                           chip, name)
        super().__init__(src, name, chip, seed, options, src.groups // per)
        self.dim = 1 if isinstance(src, nn.Conv1d) else 2
        self._w_shape = w_shape
        self.out_channels = out_channels
        self.groups, self.per = src.groups, per
        self.kernel = (kh, kw)
        # 2-D forms (a Conv1d as 1 x L) of the settings the layer holds at each call
        self.live = LiveConv(src)
        set_geometry_2d(self, self.live, self.dim)
        self.pad_mode = "constant" if src.padding_mode == "zeros" else src.padding_mode
        self.row_tiles = row_tiles
        self._w2 = w2  # (groups·N, K) stacked, packed by ``per`` groups
        self._b = None if src.bias is None else src.bias.detach().clone()

    def _columns(self, x4: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """(B, C, H, W) -> rows (B·H_out·W_out, C·kh·kw), columns ordered (c, i, j)."""
        if "live" in vars(self) and self.live.update(self):  # (pickled before LiveConv: as built)
            set_geometry_2d(self, self.live, self.dim)
        check_kernel_fits(self.twin_name, x4.shape[2:], self.pads, self.kernel,
                          self.dilation2, shown=self.dim)
        if any(self.pads):
            x4 = F.pad(x4, self.pads, mode=self.pad_mode)
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride2, self.dilation2
        # strided windows and one copy: torch's OpenMP im2col (F.unfold) stalls on a busy CPU
        win = x4.unfold(2, dh * (kh - 1) + 1, sh).unfold(3, dw * (kw - 1) + 1, sw)
        win = win[..., ::dh, ::dw]  # (B, C, H_out, W_out, kh, kw)
        b, _, h_out, w_out = win.shape[:4]
        cols = win.permute(0, 2, 3, 1, 4, 5).reshape(b * h_out * w_out, win.shape[1] * kh * kw)
        return cols, (b, h_out, w_out)

    def finalize(self) -> None:
        self._group_twins(self._w2, self._b, self.groups // self.per, self.row_tiles, self.per)

    def learned(self) -> dict[str, torch.Tensor | None]:
        twins = self.matrices()
        mats = unpack_groups(torch.cat([t.weight for t in twins]), self.groups, self.per)
        w = mats.reshape(self._w_shape)
        b = None if self._b is None else torch.cat([t.bias for t in twins if t.bias is not None])
        return {"weight": w, "bias": b}

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = input  # torch names it so: a caller may pass input=
        if x.dim() == self.dim + 1:  # unbatched, as torch's conv accepts
            return self.forward(x.unsqueeze(0)).squeeze(0)
        in_channels = self._w_shape[1] * self.groups
        if x.dim() != self.dim + 2 or x.shape[1] != in_channels:
            # as torch's conv (and the deployed layer) refuses it: the product read the first
            # channels' columns only
            raise conv_input_error(self.twin_name, x, self.dim, self.groups, in_channels,
                                   list(self._w_shape))
        x4 = x.unsqueeze(2) if self.dim == 1 else x
        cols, (b, h_out, w_out) = self._columns(x4)
        y = self._grouped_product(cols, self._w2, self._b, self.groups // self.per)
        y = y.reshape(b, h_out, w_out, self.out_channels).permute(0, 3, 1, 2)
        return y[:, :, 0, :] if self.dim == 1 else in_format_of(y, x)  # as deploy's


_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


class TwinMultiheadAttention(_TwinLayer):
    """``nn.MultiheadAttention`` whose q/k/v/out projections compute through twins; the
    activation x activation products (Q·Kᵀ, softmax, ·V) stay in float, as
    ``cimsim.mapping.layers.SimMultiheadAttention`` keeps them digital. Twin ``i`` is named
    ``NAME.q_proj`` ... ``NAME.out_proj``, as deploy names the matrices."""

    def __init__(self, src: nn.MultiheadAttention, name: str, chip: ChipConfig, seed: int,
                 options: TwinOptions):
        if src.bias_k is not None or src.add_zero_attn:
            raise MappingError(f"{name}: add_bias_kv / add_zero_attn are not supported")
        super().__init__(src, name, chip, seed, options, 4)
        e = src.embed_dim
        self.embed_dim, self.num_heads = e, src.num_heads
        self.kdim, self.vdim = src.kdim, src.vdim
        self.batch_first = src.batch_first
        self.dropout = src.dropout
        self.same_embed = bool(src._qkv_same_embed_dim)
        # what torch's Transformer fast-path checks read; no in_proj_bias keeps
        # TransformerEncoderLayer off its fused kernel (which would bypass the twins)
        self._qkv_same_embed_dim = src._qkv_same_embed_dim
        self.in_proj_bias = None
        if self.same_embed:
            ws = list(src.in_proj_weight.detach().clone().reshape(3, e, -1))
        else:
            ws = [p.detach().clone() for p in
                  (src.q_proj_weight, src.k_proj_weight, src.v_proj_weight)]
        ib = src.in_proj_bias
        bs = [None] * 3 if ib is None else list(ib.detach().clone().reshape(3, e))
        ob = src.out_proj.bias
        self._src_wb = [*zip(ws, bs, strict=True),
                        (src.out_proj.weight.detach().clone(),
                         None if ob is None else ob.detach().clone())]

    def finalize(self) -> None:
        twins: dict[int, TwinMatmul] = {}

        def build(i: int, w: torch.Tensor, b: torch.Tensor | None) -> None:
            twins[i] = self._twin(w, b, i, f"{self.twin_name}.{_PROJECTIONS[i]}")

        # the four projections refuse signed inputs together, as deploy's layer does
        refuse_signed_together(("", functools.partial(build, i, w, b))
                               for i, (w, b) in enumerate(self._src_wb))
        self.twins.extend(twins[i] for i in range(len(self._src_wb)))
        self._stats = []

    def learned(self) -> dict[str, torch.Tensor | None]:
        q, k, v, out = self.matrices()
        w_in: dict[str, torch.Tensor | None] = (
            {"in_proj_weight": torch.cat([q.weight, k.weight, v.weight])} if self.same_embed
            else {"q_proj_weight": q.weight, "k_proj_weight": k.weight,
                  "v_proj_weight": v.weight})
        b_in = None if q.bias is None else torch.cat([t.bias for t in (q, k, v)
                                                      if t.bias is not None])
        return {**w_in, "in_proj_bias": b_in, "out_proj.weight": out.weight,
                "out_proj.bias": out.bias}

    def _proj(self, i: int, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1])
        if self.calibrating:
            y = self._float_pass(i, x2, *self._src_wb[i])
        else:
            y = self.twins[i](x2)
        return y.reshape(*x.shape[:-1], y.shape[-1])

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        return attention(self._proj, query, key, value, key_padding_mask, need_weights,
                         attn_mask, average_attn_weights, is_causal, module=self,
                         name=self.twin_name)


_TWINS: dict[type, Callable[..., _TwinLayer]] = {
    nn.Linear: TwinLinear, nn.Conv1d: TwinConv, nn.Conv2d: TwinConv,
    nn.MultiheadAttention: TwinMultiheadAttention}


def _projections_excluded(name: str, patterns: Sequence[str], candidates: list[str]) -> bool:
    """Whether ``exclude`` names every projection of the attention module ``name``
    (``NAME.q_proj`` ... ``NAME.out_proj``, ``NAME.in_proj`` for the three input ones), as
    deploy takes them and a 1-b input chip's refusal lists them: the module then stays in
    float. The twin trains its four projections together, so a part of them is refused,
    naming the way out (they matched nothing before: warned, trained on the arrays, and the
    refusal came back). The names join ``candidates`` (they are excludable names)."""
    names = [f"{name}.{t}" for t in (*_PROJECTIONS, "in_proj")]
    candidates.extend(names)
    tags = {t for t, n in zip((*_PROJECTIONS, "in_proj"), names, strict=True)
            if _excluded(n, patterns)}
    if "in_proj" in tags:
        tags |= {"q_proj", "k_proj", "v_proj"}
    tags.discard("in_proj")
    if tags and tags != set(_PROJECTIONS):
        raise MappingError(
            f"exclude names {', '.join(f'{name}.{t}' for t in sorted(tags))} but not all of "
            f"{name}'s projections: prepare trains attention's four projections together and "
            f"cannot keep a part of them in float (deploy can); exclude the module, "
            f"{name!r}, or none of its projections")
    return bool(tags)


def _twin_class(module: nn.Module) -> Callable[..., _TwinLayer] | None:
    for kind, cls in _TWINS.items():
        if isinstance(module, kind):
            return cls
    return None


class FusedReLU(nn.Module):
    """The model's ReLU after a layer whose ADC is that ReLU's quantizer (a fused
    layer-output ADC): the layer already outputs the quantized activation in [0, a_max], on
    which the ReLU is the identity (as in the simulator, where it runs on those values). Here
    it is the identity in value and gradient, so that the straight-through estimator's
    gradient reaches the outputs quantized to an exact 0. ``float_model()`` puts the
    original module back."""

    def __init__(self, relu: nn.Module):
        super().__init__()
        self._relu = (relu,)  # not a submodule: the original, for float_model()

    @property
    def original(self) -> nn.Module:
        return self._relu[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return f"fused into the ADC: {self.original}"


def _seed_from_state(module: PreparedModel, _keys: Any) -> None:
    """After ``load_state_dict``: the loaded ``_prepare_seed`` is the twin's seed, its
    matrices' seeds derived from it (a load_state_dict post-hook)."""
    hi, lo = (int(v) for v in module._prepare_seed.tolist())
    if not (0 <= hi < 1 << 32 and 0 <= lo < 1 << 32):
        raise ConfigError(f"_prepare_seed = {[hi, lo]} in the state dict is invalid; allowed: "
                          "two 32-bit words [seed >> 32, seed & 0xFFFFFFFF] of a seed of "
                          "prepare")
    module._apply_seed(hi << 32 | lo)  # the loaded buffer itself stays (DDP holds it)


class PreparedModel(nn.Module):
    """A model whose Linear, Conv1d/2d/3d, ConvTranspose1d/2d/3d, RNN/LSTM/GRU layers (and
    cells) and attention projections compute through training twins.

    Call it like the original and train it with any torch optimizer; ``model.eval()`` turns the
    training noise off. Attributes: ``model`` (the copy), ``twin_layers`` (name -> layer),
    ``digital`` ((name, type, reason) of modules left in float), ``chip``, ``seed``,
    ``batch_dim`` (that of ``prepare``).
    """

    _prepare_seed: torch.Tensor

    def __init__(self, model: nn.Module, twin_layers: dict[str, _TwinLayer],
                 digital: list[tuple[str, str, str]], chip: ChipConfig, seed: int,
                 batch_dim: int = 0, calibration_ndims: dict[int | str, int] | None = None,
                 t_inference_s: float | None = None):
        super().__init__()
        self.model = model
        self.twin_layers = twin_layers
        self.digital = digital
        self.chip = chip
        self._set_seed(seed)
        self.register_load_state_dict_post_hook(_seed_from_state)
        self.t_inference_s = t_inference_s
        """The time after programming the twin computes at (``TwinOptions.t_inference_s``;
        None: the programmed state), the one :meth:`deploy` deploys at."""
        self.batch_dim = batch_dim  # the methods' later passes cut their data along it
        # the calibration batches' tensor dimensions, for the deployed model's sample count
        self.calibration_ndims = dict(calibration_ndims or {})
        # what the model's modules held when prepared: a table the twin's forwards cache
        # (self._table = self.pos(coords)) is no state to deploy (deploy() sets it back)
        self.prepared_state = attribute_state(model)

    def forward(self, *args, **kwargs):
        if (root := self.seed) != getattr(self, "_applied_seed", None):
            # the seed buffer was changed in place (DistributedDataParallel copies rank 0's
            # buffers into every rank): the matrices' seeds follow it, as its draws came
            self._apply_seed(root)
        return self.model(*args, **kwargs)

    @property
    def seed(self) -> int:
        """The seed of ``prepare``, the one :meth:`deploy` and :meth:`views` program with by
        default. It is part of the state dict (buffer ``_prepare_seed``, two 32-bit words)
        beside the programmed-device draws it made: a state dict loaded into a twin prepared
        with another seed brings its seed (the eval twin computed with the saved draws while
        ``deploy()`` programmed the other seed's devices, without a word)."""
        hi, lo = (int(v) for v in self._prepare_seed.tolist())
        return hi << 32 | lo

    @seed.setter
    def seed(self, value: int) -> None:
        # the twin's programmed-device draws (_dev_z, _dev_u) are the seed's: a seed set here
        # left them, and the eval twin computed with the old seed's devices while deploy()
        # programmed the new one's
        raise ConfigError(
            "PreparedModel.seed is the seed prepare drew the twin's devices with and cannot be "
            f"set (to {value!r}); deploy with other devices by prepared.deploy(seed=...), or "
            "prepare again with seed=...")

    def _set_seed(self, value: int) -> None:
        """The seed of ``prepare`` (:attr:`seed`), its matrices' seeds derived from it: at
        ``__init__`` and after a ``load_state_dict``, whose draws come with it."""
        root = check_seed(value)
        old = self._buffers.get("_prepare_seed")
        self.register_buffer("_prepare_seed", torch.tensor(
            [root >> 32, root & 0xFFFFFFFF], dtype=torch.int64,
            device=None if old is None else old.device))
        self._apply_seed(root)

    def _apply_seed(self, root: int) -> None:
        """Each matrix's seed derived from ``root``, the one in ``_prepare_seed``."""
        self._applied_seed = root
        for name, layer in self.twin_layers.items():  # each matrix's, as prepare derived it
            seed_l = layer_seed(root, name)
            for i, twin in enumerate(layer.matrices()):
                twin.seed = layer.matrix_seed(seed_l, i)

    def twins(self) -> Iterator[tuple[str, TwinMatmul]]:
        """(name, twin) of every weight matrix, in model order."""
        for name, layer in self.twin_layers.items():
            for twin in layer.matrices():
                yield twin.name or name, twin

    @property
    def arrays_needed(self) -> int:
        """Arrays the mapped matrices occupy on the twin's chip (row tiles x column tiles,
        from the shapes), as the deployed model's ``arrays_needed`` counts them."""
        return sum(n_arrays_for_shape(t.n_outputs, t.row_tiles, self.chip)
                   for _, t in self.twins())

    def views(self, seed: int | None = None, chip: ChipConfig | None = None
              ) -> dict[str, EngineView]:
        """The engine's view of every weight matrix (:meth:`TwinMatmul.to_engine`, on
        ``chip``, default the twin's), by matrix name, programmed with the seeds
        ``cimsim.deploy(..., seed=seed)`` derives (default: the seed of ``prepare``)."""
        root = self.seed if seed is None else seed
        out: dict[str, EngineView] = {}
        for name, layer in self.twin_layers.items():
            seed_l = layer_seed(root, name)
            for i, twin in enumerate(layer.matrices()):
                out[twin.name] = twin.to_engine(layer.matrix_seed(seed_l, i), chip)
        return out

    def float_model(self) -> nn.Module:
        """A float copy of the model with the learned weights and biases (twins replaced by
        the module types they came from)."""
        # deepcopy's memo substitutes each twin layer by its float module in the copy; a
        # LoRA adapter not merged yet is part of the weight the twin computes with (it was
        # dropped: prepare_pimqat from a LoRA twin lost what the adapters learned)
        with _float_weights([t for _, t in self.twins()]):
            memo: dict[int, Any] = {id(layer): layer.float_module()
                                    for layer in self.twin_layers.values()}
        memo.update({id(m): deepcopy(m.original) for m in self.model.modules()
                     if isinstance(m, FusedReLU)})
        # a float module under an old-style weight_norm / prune hook (an excluded layer) holds
        # its weight computed with gradient after a training step: torch cannot copy that
        with hook_weights_detached(self.model):
            out = deepcopy(self.model, memo)
        retie_float_copy(self.twin_layers, memo)
        # gradient hooks (frozen rows), which deepcopy and float_module drop: a float model
        # fine-tuned further keeps them
        carry_tensor_hooks(self.model, out)
        for layer in self.twin_layers.values():
            carry_tensor_hooks(layer._float_src[0], memo[id(layer)])
        return out

    def engine_digest(self) -> str:
        """SHA-256 of what :meth:`deploy` hands the engine beside the state dict: every twin's
        float64 scales and weights as handed back (a method's forward rescale folded in: a
        plain attribute, not state), its float64 ADC tables, and the prepared chip and seed.
        A sweep of this model keys its points by it with the state dict
        (``cimsim.sweep.run_sweep``)."""
        import hashlib
        import json

        from .._digest import hash_named

        h = hashlib.sha256(json.dumps(self.chip.to_dict(), sort_keys=True,
                                      default=repr).encode())
        h.update(repr(self.seed).encode())
        for name, twin in self.twins():
            s_w, s_x, w_int = twin._engine_scales()
            tables = {f"init.{k}": v for k, v in twin._init64.items()
                      if isinstance(v, np.ndarray)}  # (its own s_w beside the handed-back one)
            hash_named(h, [(f"{name}.{k}", torch.from_numpy(np.ascontiguousarray(v)))
                           for k, v in {"s_w": s_w, "s_x": np.float64(s_x), "w_int": w_int,
                                        **tables}.items()])
        return h.hexdigest()

    def check_chip(self, chip: ChipConfig | str | Path, *,
                   centres_frozen_first: bool = False) -> ChipConfig:
        """``chip`` (a config, preset name or path) as :meth:`deploy` takes it, or the
        ``ConfigError`` its deploy would raise, before anything is programmed: another
        geometry (:func:`_check_same_geometry`), calibrated ADC ranges no twin's learned
        tables reach (:meth:`TwinMatmul.adc_tables_on`), or a grid centred on every batch
        (ColumnQuant's ``centre='batch'`` before ``freeze_psum``; accepted with
        ``centres_frozen_first``, where the caller freezes it before deploying). A sweep of
        this model checks every point so."""
        chip = as_chip(chip)
        _check_same_geometry(self.chip, chip)
        for name, twin in self.twins():
            if getattr(twin.adc_hook, "per_batch", False) and not centres_frozen_first:
                # deployed, the grid started where calibration put it, at no centre at all
                raise ConfigError(
                    f"deploy: twin {name!r} centres its ADC grid on every batch (ColumnQuant's "
                    "centre = 'batch'), which no chip's ADC can follow; freeze it first: "
                    "cimsim.train.columnquant.deploy_columnquant(prepared, calibration), or "
                    "freeze_psum(prepared, data) and then deploy")
            twin.adc_tables_on(chip)
        return chip

    def deploy(self, seed: int | None = None, *, batch_dim: int | None = None,
               chip: ChipConfig | str | Path | None = None,
               t_inference_s: float | None = None) -> SimModel:
        """The model on the Numba engine with what was learned: weights, scales and ADC tables
        carried over from every twin (:meth:`views`), not recalibrated.

        Parameters
        ----------
        seed : int, optional
            Programming variation, faults and conversion noise derive from it as in
            ``cimsim.deploy``; default the seed of ``prepare``.
        batch_dim : int, optional
            As in ``cimsim.deploy``; default the one the model was prepared with.
        chip : ChipConfig, str or Path, optional
            Deploy on another chip (or a preset name or ``.toml`` path) of the same geometry
            (:meth:`TwinMatmul.to_engine`), e.g. with noise, variation or a non-linearity the
            twin does not train with, or at another ADC precision (adjusted-precision
            training; on a calibrated linear ADC the learned range on the new grid, as the
            twin converts at those bits, up to float ties: a trained model's ADC bits can be
            swept).
        t_inference_s : float, optional
            Seconds after programming the deployed model runs at, as in ``cimsim.deploy``;
            default the twin's ``t_inference_s`` (the time it was trained for), else the
            chip's ``device.drift_t0_s``. A sweep passes each point's time.

        Returns
        -------
        cimsim.mapping.SimModel
            In eval mode and noise-off its outputs equal this model's eval outputs: exactly on
            a lossless chip for a float64 twin (a float32 twin dequantizes in float32 where
            the engine uses float64: about one float32 ulp apart; docs/training.md), code for
            code on lossy ADCs (up to float ties), with the
            programmed devices when ``seed`` is the twin's (``devices = 'programmed'``). The
            engine runs on the CPU: the float parts are moved there. On a device that ages it
            runs at the twin's ``t_inference_s`` (``SimModel.set_time`` moves it).
        """
        root = self.seed if seed is None else check_seed(seed)
        batch_dim = self.batch_dim if batch_dim is None else batch_dim
        if isinstance(batch_dim, bool) or not isinstance(batch_dim, numbers.Integral) \
                or batch_dim < 0:  # -1 counted the features as samples
            raise MappingError(f"batch_dim = {batch_dim!r} is invalid; allowed: an integer "
                               ">= 0")
        first = self.calibration_ndims.get(0)  # the first input's dimensions, as calibrated
        if first is not None:
            check_batch_dim(batch_dim, first, f"the first input ({first} dimensions, as "
                            "calibrated)")
        chip = self.check_chip(self.chip if chip is None else chip)
        if t_inference_s is not None:  # named, before anything is programmed
            t_inference_s = check_time(t_inference_s, chip, "t_inference_s")
        excluded = [name for name, _, why in self.digital if why == EXCLUDED_REASON]
        model = self.float_model().cpu()
        # what the twin's forwards cached (a layer's output kept as an attribute) would be
        # reused by every simulated forward, the layer never run on the arrays
        restored = restore_attributes(self.prepared_state, self.model, into=model)
        public = [n for n in restored if not n.rpartition(".")[2].startswith("_")]
        if public:  # a cache is private by custom; state set or trained since is lost here
            warnings.warn(
                f"PreparedModel.deploy: {len(public)} tensor attribute(s) set since prepare "
                f"are deployed as they were at prepare (a forward's cache is no state to "
                f"deploy): {', '.join(public[:8])}{' ...' if len(public) > 8 else ''}; hold "
                "state the deployed model needs (a running statistic, a table set by hand) "
                "in a buffer (register_buffer), which deploy carries", UserWarning,
                stacklevel=2)
        sim = deploy_views(model, chip, self.views(root, chip), seed=root,
                           exclude=excluded, batch_dim=batch_dim,
                           calibration_ndims=self.calibration_ndims)
        # what prepare's calibration pass found computing in float outside the layers (weights
        # used functionally, activation products): no pass here finds them again
        listed = {name for name, _, _ in sim.digital}
        sim.digital.extend(row for row in self.digital if row[0] not in listed)
        t = self.t_inference_s if t_inference_s is None else t_inference_s
        if t is not None and t != chip.device.drift_t0_s:
            sim.set_time(t)  # at t0 deploy_views' reference read is the one
        sim.ranges_learned = True
        return sim


_CONVERTER_OWN = ("gain_error", "offset_error_lsb", "comparator_noise_lsb", "kind",
                  "tdc_architecture")
"""ADC fields that leave its ranges as they are: the converter's own gain, offset and
comparator noise (applied at each conversion, from the chip deployed on) and, between linear
kinds, the kind (a SAR, flash or TDC of one range and bits has one grid)."""


def regrids_adc_tables(twin: ADCConfig, other: ADCConfig) -> bool:
    """Whether a twin's learned, calibrated linear ADC range holds on a chip whose ADC has
    other bits (and otherwise differs at most as :func:`carries_adc_tables` allows): a
    calibrated range is the calibration data's, not the converter's, and the same range on
    the other grid is what the twin trains against at those bits (``adc_bits_override``:
    RAOQ's BitAug, PIM-QAT's adjusted precision). Sweeping a trained model's ADC bits was
    refused as "needs calibration", naming nothing the caller could pass."""
    linear = (twin.kind not in (ADCKind.RAMP, ADCKind.DIGITAL)
              and other.kind not in (ADCKind.RAMP, ADCKind.DIGITAL))
    return (linear and twin.bits != other.bits
            and twin.range_policy is RangePolicy.CALIBRATED
            and carries_adc_tables(twin, dataclasses.replace(other, bits=twin.bits)))


def _needs_calibration(twin: ChipConfig, chip: ChipConfig, other_bits_why: str | None) -> str:
    """The ``ConfigError`` of a deploy on a calibrated ADC the twin's tables do not reach:
    which fields differ (``other_bits_why``: why this twin's tables hold at its own bits only,
    where other bits are what differs), and the ways to a model on that chip."""
    differ = [f.name for f in dataclasses.fields(twin.adc)
              if getattr(twin.adc, f.name) != getattr(chip.adc, f.name)]
    bits_only = other_bits_why is not None and differ == ["bits"]
    why = (other_bits_why if bits_only else
           f"its ADC differs from the twin's in {', '.join('adc.' + n for n in differ)}")
    bits = "" if bits_only else ("other adc.bits on a linear ADC (the learned range on that "
                                 "grid), ")
    return (f"deploy(chip=...): chip {chip.name!r} has adc.range_policy = 'calibrated' and "
            f"{why}: its ranges need a calibration pass the twin cannot make; allowed: the "
            "twin's ADC settings (its converter's errors and noise, or another linear kind, "
            f"may differ), {bits}or 'full_scale' / 'fixed' ranges. To calibrate the learned "
            "weights on that chip: "
            "cimsim.deploy(prepared.float_model(), chip, calibration) (the learned scales are "
            "not carried); to train for it: prepare(prepared.float_model(), chip, calibration)")


def carries_adc_tables(twin: ADCConfig, other: ADCConfig) -> bool:
    """Whether a twin's learned ADC tables hold on a chip with the ADC ``other``: the same
    settings but for :data:`_CONVERTER_OWN`, and both kinds linear or the same kind. A chip
    that differed only in comparator noise, gain error or a flash for a SAR was refused on a
    calibrated range ("needs calibration"), though the twin's calibrated tables are its."""
    if twin == other:
        return True
    nonlinear = (ADCKind.RAMP, ADCKind.DIGITAL)
    if twin.kind != other.kind and (twin.kind in nonlinear or other.kind in nonlinear):
        return False
    return all(getattr(twin, f.name) == getattr(other, f.name)
               for f in dataclasses.fields(twin) if f.name not in _CONVERTER_OWN)


# what a twin was built for: its quantizers and row tiles, on any chip it deploys to; and,
# where its learned ADC tables are carried (the chip's ADC settings are the twin's), the
# conversions they belong to
_GEOMETRY = ("weight_bits", "input_bits", "quant", "array.n_rows")
_CONVERSIONS = ("weight_encoding", "differential_readout", "array", "dac",
                "device.bits_per_cell")


def _check_same_geometry(prepared: ChipConfig, chip: ChipConfig) -> None:
    """``deploy(chip=...)``'s chip must have the prepared chip's geometry: a 512-row array
    ran the twin's 128-row tiles and learned tables unwarned, reported as 512 rows; 1-b cells
    under the twin's ADC failed on its tables' shape naming neither field nor way out. Another
    decomposition (encoding, DAC, cells) under another ADC is programmed on the chip as it
    is (PIM-QAT's arm b: a digitally trained model on each decomposition)."""
    # the twin's ADC tables go with it
    carried = carries_adc_tables(prepared.adc, chip.adc) or regrids_adc_tables(prepared.adc,
                                                                                chip.adc)
    names = _GEOMETRY + (_CONVERSIONS if carried else ())
    differ = []
    for path in names:
        table, _, name = path.rpartition(".")
        a = getattr(getattr(prepared, table), name) if table else getattr(prepared, name)
        b = getattr(getattr(chip, table), name) if table else getattr(chip, name)
        if a == b:
            continue
        if dataclasses.is_dataclass(a):
            differ += [f"{path}.{f.name}" for f in dataclasses.fields(a)
                       if getattr(a, f.name) != getattr(b, f.name)]
        else:
            differ.append(path)
    if differ:
        why = (" (with the twin's ADC settings, whose learned tables belong to its "
               "conversions)" if carried else "")
        raise ConfigError(
            f"deploy(chip=...): chip {chip.name!r} differs from the prepared chip "
            f"{prepared.name!r} in {', '.join(dict.fromkeys(differ))}{why}: the twin's "
            "layers are quantized and tiled for the prepared chip; allowed: a chip that "
            "differs in its noise, devices, ADC or technology, or in its decomposition under "
            "another ADC. To train for that chip, prepare on it (prepare(prepared."
            "float_model(), chip, calibration)); to deploy the learned weights there, "
            "cimsim.deploy(prepared.float_model(), chip, calibration)")


@contextlib.contextmanager
def _float_weights(twins: list[TwinMatmul]) -> Iterator[None]:
    """Within the block every twin's ``weight`` holds ``float_weight()`` (its
    ``weight_delta`` added, its ``weight_keep`` applied); restored afterwards."""
    saved = [(t, t.weight.detach().clone()) for t in twins
             if t.weight_delta is not None or t.weight_keep is not None]
    with torch.no_grad():
        for t, _ in saved:
            t.weight.copy_(t.float_weight())
    try:
        yield
    finally:
        with torch.no_grad():
            for t, w in saved:
                t.weight.copy_(w)


def _zeroed_by_parametrization(module: nn.Module) -> bool:
    """Whether a parametrization of ``module`` zeroes entries of the tensor it computes
    whatever its originals hold: a mask (MADE's ``w * mask``, ``torch.ao.pruning``'s
    ``FakeSparsity``). The twin learns the computed weight itself, so those entries would train
    away from zero; they are kept at zero as a pruned layer's are. Found by computing the
    parametrization on random originals too (zero in both: the parametrization's, not the
    values'), in eval mode (spectral norm's power iteration left as it was)."""
    if not parametrize.is_parametrized(module):
        return False
    chains = module.parametrizations
    assert isinstance(chains, nn.ModuleDict)
    for tensor_name, chain in chains.items():
        assert isinstance(chain, parametrize.ParametrizationList)
        held = ["original"] if hasattr(chain, "original") else [
            f"original{i}" for i in range(len(chain._parameters) + len(chain._buffers))]
        originals: list[torch.Tensor] = [t for n in held
                                         if isinstance(t := getattr(chain, n, None), torch.Tensor)]
        if not originals or not all(o.is_floating_point() for o in originals):
            continue
        with evaluated(chain), torch.no_grad():
            gen = torch.Generator().manual_seed(0)
            drawn = [torch.randn(o.shape, generator=gen, dtype=o.dtype).to(o.device)
                     for o in originals]
            value = chain[0](*drawn)
            for step in list(chain)[1:]:
                value = step(value)
            actual = getattr(module, tensor_name)
        if value.shape == actual.shape and bool(((value == 0) & (actual == 0)).any()):
            return True
    return False


def prepare(model: nn.Module, chip: ChipConfig | str | Path, calibration, *, seed: int = 0,
            batch_size: int = 256, batch_dim: int = 0, exclude: Sequence[str] = (),
            **options) -> PreparedModel:
    """A trainable copy of ``model`` whose mapped layers compute as the chip does.

    Parameters
    ----------
    model : nn.Module
        The float model; it is copied, never modified.
    chip : ChipConfig, str or Path
        The chip, or a preset name or ``.toml`` path (``cimsim.config.as_chip``).
    calibration : tensor, ndarray, tuple of tensors, dict of keyword inputs or iterable of batches
        Inputs of one float forward pass (in eval mode) that set the initial scales and ADC
        tables exactly as ``cimsim.deploy(model, chip, calibration, seed=seed)`` sets them.
    seed : int
        Seeds of the programmed layers and the calibration sample (deploy's derivation).
    batch_size : int
        Batch size of the calibration pass when ``calibration`` is a tensor.
    batch_dim : int
        Which dimension of the inputs counts samples, as in ``cimsim.deploy`` (1 for
        sequence-first transformers): the calibration tensors are cut along it.
    exclude : sequence of str
        Layer names or glob patterns kept float and digital, as in ``cimsim.deploy`` (e.g. an
        Inception auxiliary head, run in training mode only, which an eval calibration never
        reaches); they train in float and :meth:`PreparedModel.deploy` keeps them digital.
    **options
        :class:`TwinOptions` fields (``learn_weight_scale``, ``learn_act_scale``,
        ``learn_adc_step``, ``train_noise``, ``devices``, ``t_inference_s``: on a device that
        ages, the time after programming it trains for; ``fused_kernel``: on the CPU the fused
        Numba kernels, False for torch's element-wise ops); an unknown name is a
        ``ConfigError``.

    Returns
    -------
    PreparedModel
        In the training mode the model had; :meth:`PreparedModel.deploy` hands it to the
        engine.
    """
    opts = TwinOptions.from_kwargs(options)
    seed = check_seed(seed)  # refused now, not by deploy after the training
    if not isinstance(model, nn.Module):
        raise MappingError(f"model must be a torch nn.Module, got {type(model).__name__}")
    refuse_simulated(model, "prepare")
    chip, calibration = as_chip(chip), replayable(calibration)
    check_chip(chip)
    if opts.t_inference_s is not None:
        check_time(opts.t_inference_s, chip, "t_inference_s")  # before the calibration pass
        warn_static_time(float(opts.t_inference_s), chip, "prepare")
    if torch.is_inference_mode_enabled():  # the twin's parameters would be inference tensors
        raise MappingError("prepare under torch.inference_mode(): the twin could never train "
                           "(inference tensors take no gradient); call it outside, or under "
                           "torch.no_grad() if you must")
    model = user_model(model, "prepare")
    refuse_step_hooks(model)
    was_training = model.training
    pruned = pruning_masks(model)
    root = copy_model(model, "prepare")
    modes = module_modes(root)  # a BatchNorm frozen in a training model stays frozen
    if _twin_class(root) is not None:
        root = Root(root)  # a mappable root is named "0", as deploy names it
        pruned = {"0" if not name else f"0.{name}": held for name, held in pruned.items()}
    layers: dict[str, _TwinLayer] = {}
    digital: list[tuple[str, str, str]] = []
    # a layer-output ADC fused with the ReLU after the layer: found as deploy finds it
    relus: dict[str, str] = {}
    untraced: dict[str, str] = {}  # pairs found without a trace: layer -> its Sequential
    clamps = (_relu_consumers(root, {n for n, m in root.named_modules()
                                     if _twin_class(m) is not None}, relus, untraced=untraced)
              if chip.adc.placement is ADCPlacement.LAYER_OUTPUT and chip.adc.fuse_activation
              else {})

    walk = ModuleWalk("prepare")  # as deploy: a module's second place gets the same twin
    patterns = exclude_patterns(exclude)
    candidates: list[str] = []

    def visit(parent: nn.Module, prefix: str) -> None:
        for child_name, child in walk.children(parent):
            name = f"{prefix}{child_name}"
            cls = _twin_class(child)
            # a Linear but for its name (GPT-2's Conv1D ...): trained as that Linear, as
            # deploy maps it
            affine = (affine_source(child) if cls is None and not isinstance(child, _UNSUPPORTED)
                      else None)
            if affine is not None:
                cls = TwinAffine
            if cls is not None:
                candidates.append(name)
                if (_excluded(name, patterns)  # as deploy: the float module stays, trained
                        or cls is TwinMultiheadAttention
                        and _projections_excluded(name, patterns, candidates)):
                    digital.append((name, type(child).__name__, EXCLUDED_REASON))
                    continue
            if (scripted := kept_digital_row(child, name, NOT_MAPPABLE)) is not None:
                digital.append(scripted)
                continue
            if (affine is None and cls is not None
                    and (why := overridden_forward(child, name)) is not None):
                # a subclass's own forward that still computes F.linear(x, weight, bias)
                affine = affine_source(child) if isinstance(child, nn.Linear) else None
                if affine is None:
                    digital.append((name, type(child).__name__, f"{NOT_MAPPABLE}{why}"))
                    continue
            if cls is None and isinstance(child, _UNSUPPORTED):
                digital.append((name, type(child).__name__, UNSUPPORTED_REASON))
                continue
            if cls is None:
                _keep_off_fused_kernels(child)
                visit(child, name + ".")
                continue
            try:
                # its weights read in eval mode, as deploy reads them: a parametrization's
                # training draw (a DropConnect mask) became the twin's weight, silently
                with evaluated(child):
                    new = (TwinAffine(child, affine, name, chip, layer_seed(seed, name), opts)
                           if affine is not None
                           else cls(child, name, chip, layer_seed(seed, name), opts))
            except MappingError as exc:
                digital.append((name, type(child).__name__, f"{NOT_MAPPABLE}{exc}"))
                continue
            carry_hooks(child, new, backward=True)
            walk.replace(parent, child_name, child, new)
            layers[name] = new
            new.seal()
            new.activation_clamp = clamps.get(name)
            if cls is TwinMultiheadAttention:
                digital.append((name, "attention products",
                                "activation x activation (Q·Kᵀ, softmax, ·V) kept in float"))

    _keep_off_fused_kernels(root)  # the children are kept off as the walk enters them
    visit(root, "")
    warn_unmatched_excludes(patterns, candidates, "prepare", stacklevel=3)
    half = [name for name, layer in layers.items()
            if any(p.dtype in _HALF for p in layer._float_src[0].parameters())]
    if half:  # the twin computes the chip's integer sums in the weights' dtype
        raise MappingError(f"prepare: {', '.join(half)} {HALF_WEIGHTS}")
    wide = max(chip.input_bits, chip.weight_bits)
    single = [name for name, layer in layers.items()
              if any(p.dtype == torch.float32 for p in layer._float_src[0].parameters())]
    if single and wide >= FLOAT32_WIDE_CODES:
        # float32 holds x / scale of a B-bit code to 2^-(24-B) of a code: at 16-b codes the
        # input quantizer's ties round otherwise than deploy's float64 (isaac-32nm: 1.8 % of
        # a Linear's outputs a code apart, 17 % of the digits CNN's largest output)
        warnings.warn(f"prepare: the chip's {wide}-bit codes in a float32 twin ({single[0]}"
                      f"{' ...' if len(single) > 1 else ''}): float32 resolves a code to "
                      f"2^-{24 - wide}, and the twin's rounding of inputs and weights differs "
                      "from deploy's float64 at ties; prepare a float64 copy (model.double()) "
                      "for a twin that deploys code for code", UserWarning, stacklevel=2)
    if not layers:  # deploy refuses it: refuse before training a twin that could not deploy
        raise no_layer_error(root, digital)
    refuse_nonfinite_weights({name: layer._float_src[0] for name, layer in layers.items()},
                             "prepare")
    warn_unsupported(digital, "prepare")
    root.eval()
    with (torch.no_grad(),
          watch_functional_weights(root, [*(d[0] for d in digital), *layers],
                                   {name: layer._float_src[0] for name, layer in layers.items()},
                                   model) as functional,
          explain_stop_iteration("prepare"), batches_noted(calibration, batch_size, batch_dim)):
        ndims = calibration_pass(root, model, calibration, batch_size, batch_dim, seed)
    if ndims is None:
        raise MappingError("calibration data is empty")
    digital.extend(warn_functional(functional, "prepare"))
    if chip.adc.calibration_mode is CalibrationMode.SIMULATED:
        # deploy fits each stage's ADCs to the inputs the simulated stages before it give
        # (docs/hardware-model.md §7); the twin starts from those views, not from the float
        # pass's tables (which differ: found by tests/test_backend_parity.py)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # prepare has warned about the same
            sim = deploy(model, chip, calibration, seed=seed, batch_size=batch_size,
                         batch_dim=batch_dim, exclude=patterns)
        views = {c.name: c.view for layer in sim.sim_layers.values() for c in layer.cores
                 if c.view is not None and not c.digital}
        for layer in layers.values():
            layer.deployed_views = views
    finalize_layers(layers.items())
    warn_zero_inputs([n for layer in layers.values() for n in layer.zero_inputs], "prepare")
    warn_coarse_inputs([n for layer in layers.values() for n in layer.coarse_inputs],
                       "prepare")
    warn_code_use({flag: [n for layer in layers.values() for n in layer.code_flags[flag]]
                   for flag in CodeFlags._fields}, "prepare")
    freeze_like_sources(layers)  # before tying: a tied weight keeps its own flag
    carry_grad_hooks(layers)
    for name, layer in layers.items():
        # a pruning mask trains with the layer, as torch's hook keeps it, and so does a mask
        # a parametrization applies (the twin learns the weight it computes)
        # pruned in the layer or in a module it holds (attention's out_proj)
        held = [(attr if owner == name else f"{owner[len(name) + 1:]}.{attr}", mask)
                for owner, masks in pruned.items()
                if owner == name or owner.startswith(f"{name}.") for attr, mask in masks]
        if held or _zeroed_by_parametrization(layer._float_src[0]):
            for twin in layer.matrices():
                twin.keep_zeros()
        for attr, mask in held:
            if "bias" in attr.rpartition(".")[2]:
                keep_pruned_biases(layer, attr, mask)
    for name, held in pruned.items():
        if name not in layers and not any(name.startswith(f"{n}.") for n in layers):
            # a pruned module left in float (excluded, not mappable): its copy's pruning was
            # made permanent, so it trained its pruned entries; the hook is put back
            module = root.get_submodule(name)
            for attr, mask in held:
                prune.custom_from_mask(module, attr, mask)
                setattr(module, attr, getattr(module, attr).detach())  # copyable, as after eval
    tie_shared_weights(root, layers)
    for name, relu in relus.items():
        if name in layers and layers[name].fused:
            owner, _, attr = relu.rpartition(".")
            parent = root.get_submodule(owner) if owner else root
            parent._modules[attr] = FusedReLU(parent.get_submodule(attr))
    for name, seq in untraced.items():
        if name in layers and layers[name].fused:
            # as deploy: a call from outside its Sequential is refused
            _guard_inside(root.get_submodule(seq) if seq else root, layers[name], name, seq)
    root.train(was_training)
    restore_modes(modes)
    for layer in layers.values():
        # a twin takes the mode of the layer it replaced (a training DataParallel around a
        # model in eval mode gave eval layers training twins: noisy outputs after prepare)
        layer.train(layer._float_src[0].training)
    prepared = PreparedModel(root, layers, digital, chip, seed, batch_dim, ndims,
                             t_inference_s=opts.t_inference_s)
    # the wrapper's own flag as the model's (an eval model's PreparedModel said training);
    # set directly: .train() would switch every module the model holds in its own mode
    prepared.training = was_training
    # as deploy, from the shapes: a model over the chip's arrays fails before any training,
    # not at PreparedModel.deploy() after it
    _check_capacity(prepared.arrays_needed, chip, [name for name, _ in prepared.twins()])
    return prepared


def recalibrate_adcs(prepared: PreparedModel, calibration, *, batch_size: int = 64,
                     seed: int = 0) -> list[str]:
    """Calibrate the linear ADCs of ``prepared``'s twins again, on the weights, scales and
    codes they now hold (``prepare`` calibrated them for deploy's integer weights; a training
    method that starts from other weight scales, ColumnQuant's mean |w| or its ternary codes,
    needs ranges of its own partial sums), as ``deploy`` calibrates
    (``mapping.matrix.calibrate_adcs``, at most ``MAX_CALIBRATION_ROWS`` random rows per twin,
    eval mode) on the inputs ``adc.calibration_mode`` names: ``float``, a forward pass over
    ``calibration`` with exact conversions in every twin; ``simulated``, twin by twin in the
    order the forward calls them, the twins before it converting on their new ranges. The
    learned ADC steps restart from the new grid. Twins of other ADCs (full-scale ranges, a
    nonlinear converter, a fused layer-output activation) keep theirs. ``calibration``: the
    model's inputs as ``prepare`` takes them (every positional input, cut along the model's
    ``batch_dim``). Returns the names of the twins recalibrated, in calibration order."""
    seed = check_seed(seed)  # also where no twin is recalibrated: the same call elsewhere
    names = {id(t): name for name, t in prepared.twins()}
    wanted = {id(t): t for _, t in prepared.twins()
              if t.chip.adc.range_policy is RangePolicy.CALIBRATED and not t.nonlinear_adc
              and t.activation is None}
    if not wanted:
        return []
    every = [m for m in prepared.modules() if isinstance(m, TwinMatmul)]
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)

    def inputs(record: set[int], exact: set[int]) -> dict[int, list[torch.Tensor]]:
        """Rows of the twins in ``record`` in one pass, the twins in ``exact`` lossless."""
        rows: dict[int, list[torch.Tensor]] = {}

        def keep(module: nn.Module, args: tuple) -> None:
            # a random subset: evenly spaced rows of im2col columns would all be one position
            x = args[0].detach().reshape(-1, args[0].shape[-1]).cpu()
            rows.setdefault(id(module), []).append(
                x[torch.randperm(x.shape[0], generator=gen)[:1024]])

        hooks = [wanted[i].register_forward_pre_hook(keep) for i in record]
        saved = [(m, m.lossless) for m in every]
        for m in every:
            m.lossless = id(m) in exact
        try:
            eval_pass(prepared, calibration, batch_size)
        finally:
            for h in hooks:
                h.remove()
            for m, flag in saved:
                m.lossless = flag
        return rows  # in the order the forward first called each twin

    def calibrate(i: int, rows: list[torch.Tensor]) -> None:
        xs = torch.cat(rows).double().numpy()
        if xs.shape[0] > MAX_CALIBRATION_ROWS:
            xs = xs[np.sort(rng.choice(xs.shape[0], MAX_CALIBRATION_ROWS, replace=False))]
        wanted[i].set_adc_tables(calibrate_adcs(wanted[i].to_engine(), xs))

    simulated = prepared.chip.adc.calibration_mode is CalibrationMode.SIMULATED
    # float: every twin exact; simulated: the twins that keep their tables convert on them
    first = inputs(set(wanted), set(wanted) if simulated else {id(m) for m in every})
    order = list(first)  # a twin the calibration never calls keeps its tables
    for k, i in enumerate(order):
        # simulated: the twins called before this one convert on their new ranges
        rows = first[i] if k == 0 or not simulated else inputs({i}, set(order[k:]))[i]
        calibrate(i, rows)
    return [names[i] for i in order]


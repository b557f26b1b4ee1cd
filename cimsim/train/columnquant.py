"""ColumnQuant on the training twin: the {layer, array, column} x {layer, array, column} grid of
weight scales and partial-sum (ADC) steps, LSQ with the paper code's init and gradient scales,
and LsqPsum's mu ± n·sigma clipping with a data-dependent centre (per batch, or frozen after a
calibration pass).

Kim, Jeon, Kim, Ko, "Column-wise Quantization of Weights and Partial Sums for Accurate and
Efficient Compute-In-Memory Accelerators", DATE 2025 (arXiv 2502.07842); the specification is the
official code ``jiyoonkm/ColumnQuant`` (``docs/columnquant.md`` §1 maps it onto cimsim):

* weights: one LSQ scale per layer (``layer``), per array = row tile (``array``) or per
  (array, column) (``column``, the paper's column-wise weight scale) — the twin's
  ``weight_scale`` parameter reshaped to (1, 1), (T, 1) or (T, N) of a ``column``-granularity
  chip with one part per row tile;
* partial sums: the chip's calibrated linear ADC whose step is learned (LSQ) per layer, per
  array or per (array, column) (``adc.calibration_granularity``); the paper's ``layer`` baseline
  quantizes the digital sum over arrays once, which no ADC does: here it is one step shared
  by all the layer's ADCs;
* LsqPsum (:class:`PsumCentre`, a :attr:`TwinMatmul.adc_hook`): the analog partial sums are
  clipped to mu ± n·sigma (per column for a column step, else per quantizer), and the ADC's
  2^b codes are centred on ``c = round(mean(a/Δ))`` of the quantizer (per array; per layer
  for a layer step). ``batch`` recomputes mu, sigma and c from every batch, in eval too (the
  paper code); ``frozen`` fixes them after :func:`freeze_psum` (a real ADC: the centre becomes
  the grid start that deploy carries into the chip's ADC tables).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._seed import check_int, check_nonnegative_number, check_positive_number
from ..config import (
    CalibrationGranularity,
    ChipConfig,
    RangePolicy,
    WeightEncoding,
    as_chip,
)
from ..errors import ConfigError
from ..mapping.deploy import SimModel, replayable
from ._data import eval_pass
from .loop import check_lr, warn_if_only_steps_train
from .ternary import make_ternary, mean_abs_per_set
from .twin import PreparedModel, TwinMatmul, prepare, recalibrate_adcs

__all__ = ["CENTRES", "DECOMPOSITIONS", "GRANULARITIES", "PsumCentre", "columnquant_chip",
           "columnquant_optimizer", "deploy_columnquant", "freeze_psum", "prepare_columnquant",
           "psum_mse", "with_decomposition"]

#: Scale granularities of the grid, for weights and partial sums alike.
GRANULARITIES = ("layer", "array", "column")
#: Signed-weight decompositions of the paper code, by option: 1 ``offset`` (two's-complement
#: style: offset binary in base-2^c digits), 2 ``differential`` (W+ and W- in separate columns),
#: 3 ``ternary`` (unanchored ternary combination of learned alphas on binary cells).
DECOMPOSITIONS = ("offset", "differential", "ternary")
#: Partial-sum centre modes: ``none`` (the chip's zero-aligned calibrated grid), ``batch``
#: (LsqPsum as in the paper code), ``frozen`` (fixed after a calibration pass).
CENTRES = ("none", "batch", "frozen")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} = {value!r} is invalid; allowed: {', '.join(allowed)}")
    return value


_ENCODINGS = {"offset": WeightEncoding.OFFSET, "differential": WeightEncoding.DIFFERENTIAL,
              "ternary": WeightEncoding.TERNARY}


def with_decomposition(chip: ChipConfig, decomposition: str) -> ChipConfig:
    """``chip`` storing its weights as ColumnQuant's option ``decomposition``
    (:data:`DECOMPOSITIONS`): ``offset`` and ``differential`` keep the cells, ``ternary``
    makes them binary (``bits_per_cell = 1``); ConfigError for another name."""
    enc = _ENCODINGS[_choice("decomposition", decomposition, DECOMPOSITIONS)]
    device = chip.device.replace(bits_per_cell=1) if enc is WeightEncoding.TERNARY \
        else chip.device
    return chip.replace(weight_encoding=enc, device=device)


def columnquant_chip(*, psum_bits: int, psum_scale: str = "column", weight_bits: int = 4,
                     input_bits: int = 4, bits_per_cell: int | None = None,
                     array_size: int = 128, encoding: str = "offset",
                     base: ChipConfig | None = None) -> ChipConfig:
    """ColumnQuant's hardware model as a chip (docs/columnquant.md §1).

    ``array_size`` x ``array_size`` arrays, whole kernels per array (``n_ic·k²`` rows), one
    conversion per array column (rows per conversion = array rows), multi-bit inputs in one
    shot (``dac.bits = input_bits``), ``bits_per_cell`` bits per cell (default 2; 1 for
    ``ternary``), weights in ``offset`` encoding (the paper code's option 1: offset binary
    split into base-2^c digits, the offset removed digitally), ``differential`` (option 2:
    W+ and W- in separate columns, each converted) or ``ternary`` (option 3: B_w pairs of
    binary cells, each pair's columns converted and weighted by its learned α_i,
    :mod:`cimsim.train.ternary`), a calibrated ``psum_bits`` ADC whose step is learned at
    ``psum_scale`` granularity, ideal cells (deploy on a chip with variation to study it).
    """
    from ..config import load_chip

    _choice("psum_scale", psum_scale, GRANULARITIES)
    enc = _ENCODINGS[_choice("encoding", encoding, DECOMPOSITIONS)]
    psum_bits = check_int("psum_bits", psum_bits, 1, 24)  # named as given (was cut to an int)
    # named as given too: the chip refused array_size = 0 as ArrayConfig.n_rows, and a 1-b
    # weight of the offset or differential option as weight_encoding, which the caller never
    # passed (those options need a sign and a magnitude bit; a ternary weight may have 1)
    array_size = check_int("array_size", array_size, 1, 65536)
    ternary = enc is WeightEncoding.TERNARY
    weight_bits = check_int("weight_bits" + ("" if ternary else f" (encoding {encoding!r})"),
                            weight_bits, 1 if ternary else 2, 16)
    if bits_per_cell is None:
        bits_per_cell = 1 if ternary else 2
    base = load_chip("ideal") if base is None else base
    return base.replace(
        name=f"columnquant-w{weight_bits}a{input_bits}c{bits_per_cell}-ps{psum_bits}",
        weight_bits=weight_bits, input_bits=input_bits, weight_encoding=enc,
        differential_readout="digital",
        array=base.array.replace(n_rows=array_size, n_cols=array_size, rows_per_conversion=None,
                                 kernel_preserving_tiling=True),
        device=base.device.replace(bits_per_cell=bits_per_cell),
        dac=base.dac.replace(bits=None),
        adc=base.adc.replace(bits=psum_bits, range_policy=RangePolicy.CALIBRATED,
                             calibration_granularity=CalibrationGranularity(psum_scale),
                             zero_aligned=True, calibration_stat="percentile",
                             percentile=99.9),
        quant=base.quant.replace(weight_granularity="column"))


# --------------------------------------------------------------------------------------------
# Weight scales at layer / array / column granularity
# --------------------------------------------------------------------------------------------
def _set_weight_scale(twin: TwinMatmul, granularity: str, init: str, grad: str) -> None:
    """Reshape ``twin.weight_scale`` to (1, 1) / (T, 1) / (T, N) and initialise it (the
    paper code: mean |w| of the weights sharing it; ``engine``: the largest of the engine's
    column scales it replaces, so no weight is clipped more than before; an all-zero set:
    the engine's scale of it)."""
    with torch.no_grad():
        paper, n_per = mean_abs_per_set(twin, granularity)
        n_tiles = int(twin._w_tile.max()) + 1
        s0 = twin.weight_scale.detach()
        if s0.shape[0] != n_tiles:  # (1, N) of a single-part layer: one row tile
            s0 = s0.expand(n_tiles, -1)
        if granularity == "column":
            eng = s0
        elif granularity == "array":
            eng = s0.amax(dim=1, keepdim=True)
        else:
            eng = s0.amax().reshape(1, 1)
        s = paper if init == "paper" else eng
        # an all-zero set (a pruned channel, a group pruned whole) takes the engine's scale of
        # that set, i.e. its tensor's or its layer's (``quantize_weights``): its cells' read
        # error is dequantized at it, as its neighbours' are (1.0 made it read ~1)
        s = torch.where(s > 0, s, torch.where(eng > 0, eng, torch.ones_like(eng)))
    dt, dev = twin.weight.dtype, twin.weight.device
    twin.weight_scale = nn.Parameter(s.to(dt).clone(),
                                     requires_grad=twin.options.learn_weight_scale)
    twin._weight_scale0 = s.to(dt).clone()
    twin._init64["s_w"] = s.cpu().double().numpy().copy()
    twin._mark_float64()  # the float64 values stand for the new buffers
    if grad == "paper":
        g = torch.full(s.shape, 1e-4, dtype=dt, device=dev)
    else:
        g = 1.0 / torch.sqrt(n_per.to(dt) * max(twin.w_qmax, 1))
    twin._w_grad = g.to(dev)


def _share_layer_step(twin: TwinMatmul) -> None:
    """One ADC step for the whole layer: the engine calibrates a ``layer`` unit per programmed
    layer, i.e. per row tile of a ``column``-granularity chip; the union of their ranges gets
    one grid and one learned step."""
    top = twin.top_code
    with torch.no_grad():
        lo0, d0 = twin._adc_lo0, twin._adc_delta0
        lo_n, hi_n = float(lo0.min()), float((lo0 + d0 * top).max())
        d_n = (hi_n - lo_n) / top if hi_n > lo_n else 1.0
        twin._adc_lo0.fill_(lo_n)
        twin._adc_delta0.fill_(d_n)
        twin._adc_unit.zero_()
    dt, dev = twin.weight.dtype, twin.weight.device
    twin.adc_step = nn.Parameter(torch.tensor([d_n], dtype=dt, device=dev),
                                 requires_grad=twin.adc_step.requires_grad)
    twin._adc_step0 = torch.tensor([d_n], dtype=dt, device=dev)
    twin._adc_unit_size = torch.tensor([float(twin._adc_unit.numel())], dtype=dt, device=dev)
    twin._init64["lo"] = np.full_like(twin._init64["lo"], lo_n)
    twin._init64["delta"] = np.full_like(twin._init64["delta"], d_n)
    twin._mark_float64()  # the float64 values stand for the new buffers


# --------------------------------------------------------------------------------------------
# LsqPsum: mu ± n·sigma clipping and the data-dependent centre
# --------------------------------------------------------------------------------------------
class PsumCentre:
    """LsqPsum's clipping and centre as a :attr:`TwinMatmul.adc_hook`.

    Per batch of analog values a (G, P·M, C): mu and sigma per column of each array (a
    ``column`` step) or per quantizer (one array for ``array``, the layer for ``layer``);
    ``a`` is clipped to ``[mu − n·sigma, mu + n·sigma]`` (a clamp: a clipped value passes no
    straight-through gradient to the inputs and weights, as in LsqPsum); the centre code
    ``c = round(mean(round(a/Δ)))`` per quantizer; the grid covers codes
    ``c − 2^(b−1) .. c + 2^(b−1) − 1``, i.e. starts at ``(c − 2^(b−1))·Δ``.
    In ``frozen`` mode mu, sigma and c are those :func:`freeze_psum` measured.
    """

    def __init__(self, granularity: str, num_sigma: float, mode: str, bits: int):
        self.granularity = granularity
        self.num_sigma = float(num_sigma)
        self.mode = mode
        self.half = float(2 ** (bits - 1))
        self.mu: torch.Tensor | None = None
        self.sd: torch.Tensor | None = None
        self.centre: torch.Tensor | None = None
        self._acc: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None

    @property
    def per_batch(self) -> bool:
        """Whether the centre follows every batch (``batch`` mode, or ``frozen`` before
        :func:`freeze_psum` measured it): no chip's ADC can, so a deploy needs it frozen."""
        return not (self.mode == "frozen" and self.centre is not None)

    def statistics(self, twin: TwinMatmul, a: torch.Tensor, ratio: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu, sigma, centre) of a batch, each (G, 1, C)."""
        delta = (twin._adc_delta0 * ratio)[:, None, :]
        if self.granularity == "column":
            mu, sd = a.mean(dim=1, keepdim=True), a.std(dim=1, keepdim=True, correction=0)
        else:
            dims = (1, 2) if self.granularity == "array" else (0, 1, 2)
            mu = a.mean(dim=dims, keepdim=True).expand(a.shape[0], 1, a.shape[2])
            sd = a.std(dim=dims, keepdim=True, correction=0).expand(a.shape[0], 1, a.shape[2])
        q = torch.round(torch.clamp(a, mu - self.num_sigma * sd, mu + self.num_sigma * sd)
                        / delta)
        dims_c = (0, 1, 2) if self.granularity == "layer" else (1, 2)
        centre = torch.round(q.mean(dim=dims_c, keepdim=True)).expand(a.shape[0], 1, a.shape[2])
        return mu, torch.nan_to_num(sd), centre

    def __call__(self, twin: TwinMatmul, a: torch.Tensor, ratio: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "frozen" and self.centre is not None and self._acc is None:
            mu, sd, centre = self.mu, self.sd, self.centre
        else:
            mu, sd, centre = self.statistics(twin, a, ratio)
            if self._acc is not None:
                self._acc.append((mu, sd, centre * (twin._adc_delta0 * ratio)[:, None, :]))
        assert mu is not None and sd is not None and centre is not None
        lo, hi = mu - self.num_sigma * sd, mu + self.num_sigma * sd
        # LsqPsum clamps before rounding: autograd passes nothing to a value beyond the clip
        kept = (a >= lo) & (a <= hi)
        torch.clamp(a, lo, hi, out=a)
        return (centre - self.half) * twin._adc_delta0[:, None, :], kept


def freeze_psum(prepared: PreparedModel, data, *, batch_size: int = 64) -> None:
    """Calibrate every twin's :class:`PsumCentre` on ``data`` (eval mode, no gradient), then fix
    mu, sigma and the centre: mu and sigma averaged over the batches, the centre from the
    average centre value (in the current step). The grid start is written into the twin's ADC
    tables, so ``deploy`` carries it into the chip's ADC ranges. ``data`` holds the model's
    inputs as ``prepare``'s calibration does (a tensor, or a tuple of every positional input),
    cut along the ``batch_dim`` the model was prepared with."""
    hooks = [(t, t.adc_hook) for _, t in prepared.twins() if isinstance(t.adc_hook, PsumCentre)]
    if not hooks:
        raise ConfigError("freeze_psum: the model has no partial-sum centre (prepare it with "
                          "centre = 'batch' or 'frozen')")
    for _, h in hooks:
        h._acc = []
    try:
        eval_pass(prepared, data, batch_size)
    except BaseException:
        for _, h in hooks:  # a failed pass leaves the centres as they were, not recording
            h._acc = None
        raise
    for twin, h in hooks:
        acc, h._acc = h._acc, None
        assert acc
        mu = torch.stack([v[0] for v in acc]).mean(dim=0)
        sd = torch.stack([v[1] for v in acc]).mean(dim=0)
        value = torch.stack([v[2] for v in acc]).mean(dim=0)
        with torch.no_grad():
            ratio = (twin.adc_step / twin._adc_step0)[twin._adc_unit]
            delta = (twin._adc_delta0 * ratio)[:, None, :]
            h.mu, h.sd, h.centre = mu, sd, torch.round(value / delta)
            h.mode = "frozen"
            lo0 = ((h.centre - h.half) * twin._adc_delta0[:, None, :])[:, 0, :]
            twin._adc_lo0.copy_(lo0)
            twin._init64["lo"] = (h.centre[:, 0, :].cpu().double().numpy() - h.half) \
                * twin._init64["delta"]
            twin._mark_float64()  # the float64 values stand for the new buffers


# --------------------------------------------------------------------------------------------
# Preparing, training, deploying
# --------------------------------------------------------------------------------------------
def prepare_columnquant(model: nn.Module, chip: ChipConfig | str | Path, calibration, *,
                        seed: int = 0,
                        weight_scale: str = "column", psum_scale: str | None = None,
                        init: str = "paper", grad: str = "paper", centre: str = "none",
                        num_sigma: float = 6.0, decomposition: str | None = None,
                        **options) -> PreparedModel:
    """A twin of ``model`` with ColumnQuant's quantizers on ``chip``
    (:func:`columnquant_chip`).

    Parameters
    ----------
    model : nn.Module
        The trained float model (not modified).
    chip : ChipConfig, preset name or ``.toml`` path
        The base chip; :func:`columnquant_chip` makes ColumnQuant's chip from it.
    calibration : tensor, or an iterable of batches
        Calibration inputs, as :func:`cimsim.train.prepare` takes them.
    seed : int
        The programming and noise seed of the twin and its deploy.
    weight_scale : {'layer', 'array', 'column'}
    psum_scale : {'layer', 'array', 'column'}, optional
        Default: the chip's ``adc.calibration_granularity``; another value re-makes the chip
        with it.
    init : {'paper', 'engine'}
        Weight scales from mean |w| (the paper code) or from deploy's max-based scales.
        The ADC steps always start from the engine's calibration (the paper's psum step 1 is in
        float units that the integer-domain chip does not have).
    grad : {'paper', 'lsq'}
        Gradient scales: the paper code's fixed 1e-4 (weights) and 1e-2 (psum steps), or LSQ's
        1/sqrt(n·Q_p). Under Adam they hardly matter (use :func:`columnquant_optimizer`).
    centre : {'none', 'batch', 'frozen'}
        LsqPsum's clipping and centre (:class:`PsumCentre`); ``frozen`` calibrates them on
        ``calibration`` right away (:func:`freeze_psum`).
    num_sigma : float
        n of the mu ± n·sigma clip.
    decomposition : {'offset', 'differential', 'ternary'}, optional
        The signed-weight decomposition (:data:`DECOMPOSITIONS`, the paper code's options 1–3;
        :func:`with_decomposition`); default: the chip's ``weight_encoding``. With
        ``ternary`` every twin learns B_w α per weight set at ``weight_scale`` granularity
        instead of a scale (:func:`cimsim.train.ternary.make_ternary`; ``init`` and ``grad``
        do not apply: α from mean |w|, the paper code's option-3 gradient scale).
    **options
        :class:`cimsim.train.TwinOptions` fields, as :func:`cimsim.train.prepare` takes them.
    """
    _choice("weight_scale", weight_scale, GRANULARITIES)
    chip, calibration = as_chip(chip), replayable(calibration)  # read twice
    _choice("init", init, ("paper", "engine"))
    _choice("grad", grad, ("paper", "lsq"))
    _choice("centre", centre, CENTRES)
    num_sigma = check_positive_number("num_sigma", num_sigma)
    if decomposition is not None:
        chip = with_decomposition(chip, decomposition)
    if psum_scale is not None:
        _choice("psum_scale", psum_scale, GRANULARITIES)
        chip = chip.replace(adc=chip.adc.replace(
            calibration_granularity=CalibrationGranularity(psum_scale)))
    if chip.adc.range_policy is not RangePolicy.CALIBRATED:
        raise ConfigError(f"ColumnQuant learns the ADC step: adc.range_policy must be "
                          f"'calibrated' (chip {chip.name}: {chip.adc.range_policy.value!r}); "
                          "set it in the chip file or with --set adc.range_policy=calibrated")
    if chip.quant.weight_granularity.value != "column":
        chip = chip.replace(quant=chip.quant.replace(weight_granularity="column"))
    prep = prepare(model, chip, calibration, seed=seed, **options)
    gran = chip.adc.calibration_granularity.value
    ternary = chip.weight_encoding is WeightEncoding.TERNARY
    for _, twin in prep.twins():
        if ternary:
            make_ternary(twin, weight_scale)
        else:
            _set_weight_scale(twin, weight_scale, init, grad)
    if ternary or init == "paper":
        # the ADC ranges of the codes the twin now holds (option 3's, or those of the
        # mean-|w| scales, coarser than deploy's), not of deploy's integers
        recalibrate_adcs(prep, calibration, seed=seed)
    for _, twin in prep.twins():
        if gran == "layer" and twin.adc_step.numel() > 1:
            _share_layer_step(twin)
        if grad == "paper":
            twin.adc_grad = 1e-2
        if centre != "none":
            twin.adc_hook = PsumCentre(gran, num_sigma, centre, chip.adc.bits)
    if centre == "frozen":
        freeze_psum(prep, calibration)
    return prep


def columnquant_optimizer(prepared: PreparedModel, lr: float = 1e-2, *,
                          weight_decay: float = 3e-3) -> torch.optim.Optimizer:
    """The paper code's optimizer: SGD, momentum 0.9, weight decay 3e-3 (hard-coded in its
    loop), one learning rate for every parameter (its gradient scales do the rest)."""
    lr = check_lr(lr)  # a NaN rate was taken
    # SGD refuses only a negative decay: a NaN one made every weight NaN at the first step
    weight_decay = check_nonnegative_number("weight_decay", weight_decay)
    warn_if_only_steps_train(prepared)
    params = [p for p in prepared.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)


def deploy_columnquant(prepared: PreparedModel, calibration, seed: int | None = None, *,
                       chip: ChipConfig | str | Path | None = None) -> SimModel:
    """``prepared.deploy(seed, chip=chip)`` after freezing a per-batch centre on
    ``calibration`` (a chip's ADC cannot follow every batch). The mu ± n·sigma pre-clip stays
    in the twin only: the engine's ADC clips at its own range."""
    if any(isinstance(t.adc_hook, PsumCentre) and t.adc_hook.per_batch
           for _, t in prepared.twins()):
        freeze_psum(prepared, calibration)
    return prepared.deploy(seed, chip=chip)


def psum_mse(prepared: PreparedModel, x, *, batch_size: int = 64) -> dict[str, float]:
    """Normalized partial-sum quantization error of every twin on inputs ``x`` (the model's
    inputs as ``prepare`` takes them: a tensor or a tuple of every positional input; eval mode):
    ``Σ (Q(a) − a)² / Σ (a − mean a)²`` over all conversions of the layer, a the analog partial
    sum after the mu ± n·sigma clip (if any). Also ``'mean'``: the mean over layers."""
    sums: dict[str, list[float]] = {}
    originals = {}
    for name, twin in prepared.twins():
        orig = twin._convert
        originals[name] = (twin, twin.fused)
        twin.fused = False  # the torch path, whose _convert is observed here
        acc = sums.setdefault(name, [0.0, 0.0])

        def convert(a, cmp, ratio, want_step, _orig=orig, _acc=acc, _twin=twin):
            lo0 = _twin._adc_lo0[:, None, :]
            if _twin.adc_hook is not None:  # apply the clip the ADC will see, once
                hook, _twin.adc_hook = _twin.adc_hook, None
                lo0, _ = hook(_twin, a, ratio)
                saved = _twin._adc_lo0.clone()
                _twin._adc_lo0.copy_(lo0.expand(-1, 1, a.shape[2])[:, 0, :])
                ref = a.clone()
                out = _orig(a, cmp, ratio, want_step)
                _twin._adc_lo0.copy_(saved)
                _twin.adc_hook = hook
            else:
                ref = a.clone()
                out = _orig(a, cmp, ratio, want_step)
            _acc[0] += float(((out[0] - ref) ** 2).sum())
            _acc[1] += float(((ref - ref.mean(dim=1, keepdim=True)) ** 2).sum())
            return out

        twin._convert = convert  # type: ignore[method-assign]
    try:
        eval_pass(prepared, x, batch_size)
    finally:
        for twin, fused in originals.values():
            del twin._convert  # the instance attribute: the class method again
            twin.fused = fused
    out = {k: v[0] / v[1] if v[1] > 0 else 0.0 for k, v in sums.items()}
    out["mean"] = float(np.mean(list(out.values()))) if out else 0.0
    return out

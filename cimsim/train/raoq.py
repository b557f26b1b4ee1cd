"""RAOQ's training methods on the twin: W-reshape, BitAug, and the per-layer weight report.

Zhang, Chen and Verma, "RAOQ: Reshape and Adapt for Output Quantization", ICML 2024. With a
hardware-fixed ADC step Δ the SQNR of a column sum is Var[Y] / (Δ²/12), and for zero-mean
weights independent of the inputs Var[Y] = M · E[X²] · Var[W]; RAOQ raises both factors:

- **A-shift** raises E[X²]: a chip setting (``dac.shift_unsigned_inputs``), modelled by the
  engine and by the twin (``cimsim.mapping.matrix.shift_zero_point``); nothing to train.
- **W-reshape** (:func:`kurtosis_penalty`) raises Var[W] within [−w_max, w_max]: a kurtosis
  regularizer on the quantized weights, ``λ · Σ_layers (Kurt(Q(W_l)) − K_T)²``, with the
  straight-through Q the twin uses (K_T = 1.8 is a uniform distribution, as in KURE,
  Shkolnik et al., NeurIPS 2020; the paper's K_T and λ were not read).
- **BitAug** (:func:`bitaug_loss`) adds the loss at other ADC precisions, the range unchanged
  (the twin's per-forward override, :func:`adc_bits`), summed or one sampled per step.
- **ADC-LoRA** is :mod:`cimsim.train.lora`.

See ``docs/papers.md`` for what was measured.
"""

from __future__ import annotations

import contextlib
import math
import random
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch

from .._seed import check_int, check_nonnegative_number
from ..config import _is_real
from ..errors import ConfigError
from .twin import PreparedModel, TwinMatmul

__all__ = ["BITAUG_MODES", "adc_bits", "bitaug_loss", "check_uniform_grid", "kurtosis",
           "kurtosis_penalty", "quantized_weight_ste", "unshifted", "warn_unshifted",
           "weight_stats"]

BITAUG_MODES = ("sum", "sample")


def quantized_weight_ste(twin: TwinMatmul) -> torch.Tensor:
    """The integer weights (N, K) the twin's forward uses, with the straight-through round
    (and the clamp's gradient mask): differentiable in ``weight`` (and its LoRA delta).
    ``ConfigError`` for a ternary twin (:func:`check_uniform_grid`)."""
    check_uniform_grid([(twin.name, twin)])
    # the scale as the forward takes it: a power of two under quant.weight_scale = 'pow2'
    # (without the rounding the penalty read other codes once the scale moved off one)
    s = twin._weight_scale_full(twin._pow2(twin.weight_scale)).detach()
    return twin.weight_codes(twin.effective_weight(), s)


def check_uniform_grid(twins: Sequence[tuple[str, TwinMatmul]]) -> None:
    """``ConfigError`` naming the first twin whose weights are not codes on a uniform grid
    (:attr:`TwinMatmul.uniform_weight_grid`): ColumnQuant's ternary decomposition
    (:class:`~cimsim.train.ternary.TernaryTwin`) snaps each weight to a combination of learned
    α, and its code is a balanced-ternary index (Σ c_i·3^i), not a weight. W-reshape's Q(W)
    read the uniform grid of a scale that twin's forward never uses, so the penalty pushed on
    codes that were not the chip's."""
    for name, t in twins:
        if not t.uniform_weight_grid:
            raise ConfigError(
                f"W-reshape: layer {name!r} stores ternary combinations of learned alphas "
                "(ColumnQuant's ternary decomposition): its weights have no uniform integer "
                "grid for the kurtosis penalty; drop w-reshape, or use the offset or "
                "differential decomposition")


def kurtosis(w: torch.Tensor) -> torch.Tensor:
    """``E[((w − μ)/σ)^4]`` over all elements (1.8 for a uniform distribution, 3 for a
    Gaussian); 0-gradient-safe for a constant tensor (σ clamped)."""
    w = w.reshape(-1)
    d = w - w.mean()
    var = (d * d).mean().clamp_min(1e-12)
    return (d ** 4).mean() / (var * var)


def _twins(prepared: PreparedModel | Sequence[TwinMatmul]) -> list[tuple[str, TwinMatmul]]:
    if isinstance(prepared, PreparedModel):
        return list(prepared.twins())
    return [(t.name, t) for t in prepared]


def kurtosis_penalty(prepared: PreparedModel | Sequence[TwinMatmul], *, target: float = 1.8,
                     weight: float = 0.1) -> torch.Tensor:
    """W-reshape: ``weight · Σ_layers (Kurt(Q(W_l)) − target)²`` over every mapped matrix,
    Q the twin's straight-through weight quantizer (a loss term the trainer adds).

    Parameters
    ----------
    prepared : PreparedModel or sequence of TwinMatmul
    target : float
        K_T > 1 (1.8: uniform).
    weight : float
        λ >= 0.
    """
    # (an infinite target or weight was taken, the loss inf at every step: parse_method
    # refused them for the command line only)
    if not (_is_real(target) and math.isfinite(target) and target > 1.0):
        raise ConfigError(f"W-reshape target = {target!r} is invalid; allowed: a finite "
                          "kurtosis > 1 (1.8 is uniform, 3 Gaussian)")
    weight = check_nonnegative_number("W-reshape weight", weight)
    terms = [(kurtosis(quantized_weight_ste(t)) - target) ** 2 for _, t in _twins(prepared)]
    if not terms:
        raise ConfigError("W-reshape: the model has no mapped matrix")
    return weight * torch.stack(terms).sum()


def weight_stats(prepared: PreparedModel | Sequence[TwinMatmul]) -> list[dict]:
    """Per mapped matrix: ``layer``, ``var_w_int`` (variance of the integer weights the
    arrays hold: the Var[W] of the ADC's SQNR), ``kurtosis`` of them, ``w_qmax``."""
    out = []
    with torch.no_grad():
        for name, t in _twins(prepared):
            q = t.quantized_weight()
            out.append({"layer": name, "var_w_int": float(q.var(unbiased=False)),
                        "kurtosis": float(kurtosis(q)), "w_qmax": t.w_qmax})
    return out


def unshifted(prepared: PreparedModel | Sequence[TwinMatmul]) -> list[str]:
    """The matrices A-shift leaves as they were: those whose inputs are signed (A-shift
    drives unsigned, post-ReLU inputs shifted to signed; LayerNorm, GELU, SiLU or Hardswish
    outputs are signed already). All of them on a chip without ``dac.shift_unsigned_inputs``."""
    return [name for name, t in _twins(prepared) if t.zero_point >= 0]


def warn_unshifted(prepared: PreparedModel | Sequence[TwinMatmul]) -> None:
    """A ``UserWarning`` naming the matrices A-shift does not change (none: silent): on a
    transformer it changes few or none, which a run would otherwise not show."""
    names, n = unshifted(prepared), len(_twins(prepared))
    if names:
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        what = "changes nothing on this model" if len(names) == n else \
            f"leaves {len(names)} of {n} matrices as they were"
        warnings.warn(f"a-shift shifts unsigned (post-ReLU) inputs only and {what}: their "
                      f"inputs are signed ({shown})", UserWarning, stacklevel=3)


@contextlib.contextmanager
def adc_bits(prepared: PreparedModel | Sequence[TwinMatmul], bits: int | None
             ) -> Iterator[None]:
    """Within the block, every twin converts at ``bits`` over its unchanged range (BitAug's
    other precisions; the twin's ``adc_bits_override`` hook). ``None``: the chip's bits."""
    twins = [t for _, t in _twins(prepared)]
    if bits is not None:
        bits = check_int("adc bits", bits, 1, 24)
    if bits is not None and any(t.nonlinear_adc for t in twins):
        raise ConfigError("BitAug needs a linear ADC (adc.kind = 'sar', 'flash', "
                          "'single_slope', 'cco', 'integrate_fire' or 'tdc'); the chip "
                          "has a ramp NL-ADC")
    saved = [t.adc_bits_override for t in twins]
    for t in twins:
        t.adc_bits_override = bits
    try:
        yield
    finally:
        for t, b in zip(twins, saved, strict=True):
            t.adc_bits_override = b


def bitaug_loss(prepared: PreparedModel, loss_fn: Callable[..., torch.Tensor], batch: tuple,
                bits: Sequence[int], *, mode: str = "sum",
                rng: random.Random | None = None) -> torch.Tensor:
    """BitAug: ``L(θ; B_ADC) + Σ_{b∈S} L(θ; b)`` (``mode='sum'``) or ``L(θ; B_ADC) + L(θ; b)``
    with one b drawn from S per call (``mode='sample'``, from ``rng``), every extra term with
    the same range at b bits.

    Parameters
    ----------
    prepared : PreparedModel
    loss_fn : callable
        ``loss_fn(*batch) -> scalar`` that runs ``prepared``.
    batch : tuple
    bits : sequence of int
        The set S (may be empty: the plain loss).
    mode : {'sum', 'sample'}
    rng : random.Random, optional
        For ``sample``; default torch's global generator (which ``train_epoch`` seeds from
        ``(seed, epoch)``, so a resumed run draws as the uninterrupted one).
    """
    if mode not in BITAUG_MODES:
        raise ConfigError(f"BitAug mode = {mode!r} is invalid; allowed: {list(BITAUG_MODES)}")
    # every precision checked before any loss runs: int() cut 7.5 to 7 and True to 1 bit
    if isinstance(bits, (str, bytes)) or not isinstance(bits, Iterable):
        raise ConfigError(f"BitAug bits = {bits!r} is invalid; allowed: a sequence of adc bits, "
                          "integers in [1, 24] (empty: the plain loss)")
    chosen = [check_int("BitAug adc bits", b, 1, 24) for b in bits]
    loss = loss_fn(*batch)
    if mode == "sample" and chosen:
        chosen = [rng.choice(chosen) if rng is not None
                  else chosen[int(torch.randint(len(chosen), ()))]]
    for b in chosen:
        with adc_bits(prepared, b):
            loss = loss + loss_fn(*batch)
    return loss

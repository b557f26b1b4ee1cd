"""Float -> integer quantization of weights and activations (NumPy; the formulas are exact).

Weights: symmetric, ``w_int = clip(rint(w / s_w), -q, q)`` with ``q = 2^(B_w-1) - 1`` and
``s_w = max|w| / q`` over the granularity's group (tensor, output channel, or (row tile, output)
pair), an all-zero group taking the tensor's scale (an all-zero tensor: its layer's, when it is
one group of a grouped convolution, else 1.0); 1-b weights
(``weight_encoding = 'binary'``) are ``w_int = sign(w)`` in {-1, +1} (0 -> +1) with
``s_w = mean|w|`` over the group, the scale that minimises ``||w - s_w·w_int||²`` (XNOR-Net,
Rastegari et al., ECCV 2016; :func:`binary_codes`).

Activations: per tensor, ``x_int = clip(rint(x / s_x), lo, hi)`` with ``[lo, hi] = [0, 2^B_x - 1]``
for non-negative calibration data (after ReLU) and ``[-(2^(B_x-1) - 1),
2^(B_x-1) - 1]`` otherwise (symmetric, valid for every signed-input mode). ``rint`` rounds half
to even, as ``torch.round`` does.

Options (``QuantConfig``):

- ``act_zero_point``: asymmetric activations, ``x_int = clip(rint(x / s_x) + z, 0, 2^B_x - 1)``
  with ``s_x = (hi - lo) / (2^B_x - 1)`` and ``z = clip(rint(-lo / s_x), 0, 2^B_x - 1)`` over the
  calibrated range ``[lo, hi]`` (widened to contain 0, so that z is a valid code). The matmul
  result is corrected digitally: ``Σ_k x_int·w_int - z·Σ_k w_int[n, k]`` is exactly
  ``Σ_k (x_int - z)·w_int`` (:func:`zero_point_offsets`).
- ``act_format = 'block_fp'``: block floating point (:func:`block_fp_acts`): no calibrated
  scale; the values of one vector in one row tile share a power-of-two scale ``2^X`` set by
  the largest of them.
- ``smooth_alpha``: per-input-channel factors (:func:`smooth_factors`, SmoothQuant); the inputs
  are divided by them before the activation quantizer and the weights multiplied by them before
  weight quantization.
"""

from __future__ import annotations

import numpy as np

from ..config import ActCalibration, QuantConfig, WeightGranularity
from ..errors import ConfigError

__all__ = ["act_range", "act_scale", "act_zero_point", "binary_codes", "block_fp_acts",
           "block_fp_acts_counted", "pow2_scale", "quantize_acts", "quantize_acts_counted",
           "quantize_weights", "smooth_factors", "zero_point_offsets"]


def _scale(max_abs: np.ndarray, q: int, fallback: float = 1.0) -> np.ndarray:
    """``max_abs / q``; an all-zero group gets ``fallback`` (its codes are 0 at any scale)."""
    s = np.asarray(max_abs, dtype=np.float64) / q
    return np.where(s > 0, s, fallback)


def binary_codes(w: np.ndarray) -> np.ndarray:
    """``sign(w)`` in {-1, +1} as int64, 0 (and -0.0) -> +1: a binary cell has no 0 code. The
    training twin's forward takes the same sign (``cimsim.train.twin``)."""
    return np.where(np.asarray(w) >= 0, 1, -1).astype(np.int64)


def _binary_scale(abs_w: np.ndarray, axis: int | None) -> np.ndarray:
    """mean|w| over ``axis``: 0 for an all-zero group, whose codes are +1 (a binary cell has
    no 0), so that it computes 0 as its weights do (at 1.0 it summed its inputs)."""
    return np.asarray(abs_w, dtype=np.float64).mean(axis=axis)


def pow2_scale(s, xp=np):
    """``2^ceil(log2 s)``: a positive scale rounded up to a power of two (exact: ``frexp``),
    so that ``|w| / scale`` stays within the codes ``|w| / s`` reached; 0 stays 0. ``xp``:
    the array module (``torch`` in the training twin, in the scales' own dtype)."""
    if xp is np:
        s = np.asarray(s, dtype=np.float64)
    f, e = xp.frexp(s)  # s = f·2^e, f in [0.5, 1): a power of two is f = 0.5
    return xp.where(s > 0, xp.ldexp(xp.ones_like(s), xp.where(f == 0.5, e - 1, e)), s)


def quantize_weights(
    w: np.ndarray, bits: int, granularity: WeightGranularity, row_tiles: list[tuple[int, int]],
    layer_max_abs: float | None = None, pow2: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Quantize float weights ``w`` (N, K).

    ``layer_max_abs``: the largest |w| of the layer ``w`` is a part of (a group of a grouped
    convolution, or a pack of groups): with ``tensor`` granularity ``w`` takes the layer's
    scale ``layer_max_abs / q``; with the others an all-zero ``w`` (a pruned depthwise channel)
    does, instead of 1.0. None: ``w`` is the whole layer. ``pow2``
    (``quant.weight_scale = 'pow2'``): every group's scale rounded up to a power of two
    (:func:`pow2_scale`) before the codes are rounded.

    Returns
    -------
    w_int : (N, K) int64
    s_w : (T, N) float64
        Scale of output n in row tile t (T = 1 unless ``granularity`` is ``column``).
    """
    w = np.asarray(w, dtype=np.float64)
    n = w.shape[0]
    if bits == 1:
        w_int, s = _quantize_binary(w, granularity, row_tiles)
        return w_int, pow2_scale(s) if pow2 else s
    q = 2 ** (bits - 1) - 1
    # an all-zero group (a pruned channel, a zero-initialised row) takes the tensor's scale:
    # its codes are 0 at any scale, but its cells still read (programming variation, off
    # current) and their error is dequantized at its scale; 1.0 made a pruned channel's output
    # read ~1 where its neighbours err by a few steps of their own scale. An all-zero tensor
    # that is one group of a grouped conv (a pruned depthwise channel) takes its layer's
    layer = float(_scale(np.asarray(layer_max_abs or 0.0), q))
    tensor = float(_scale(np.abs(w).max(initial=0.0), q, layer))
    if granularity is WeightGranularity.TENSOR:
        # one scale for the layer's whole weight tensor: a group of a grouped convolution, or
        # a block-diagonal pack of groups, takes the layer's. Each group at its own max|w|
        # made packing inexact: a pack's one max is its largest group's, so a small group
        # quantized coarser packed than alone (a depthwise channel's 0.037 went to code 0)
        s = np.full((1, n), layer if layer_max_abs else tensor)
    elif granularity is WeightGranularity.CHANNEL:
        s = _scale(np.abs(w).max(axis=1, initial=0.0), q, tensor)[None, :]
    else:
        s = np.stack([_scale(np.abs(w[:, a:b]).max(axis=1, initial=0.0), q, tensor)
                      for a, b in row_tiles])
    if pow2:
        s = pow2_scale(s)
    w_int = np.empty(w.shape, dtype=np.int64)
    for t, (a, b) in enumerate(row_tiles if s.shape[0] > 1 else [(0, w.shape[1])]):
        w_int[:, a:b] = np.clip(np.rint(w[:, a:b] / s[t][:, None]), -q, q)
    return w_int, s


def _quantize_binary(w: np.ndarray, granularity: WeightGranularity,
                     row_tiles: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """1-b weights: ``sign(w)`` and mean|w| per group (:func:`quantize_weights`)."""
    a = np.abs(w)
    if granularity is WeightGranularity.TENSOR:
        s = np.full((1, w.shape[0]), _binary_scale(a, None))
    elif granularity is WeightGranularity.CHANNEL:
        s = _binary_scale(a, 1)[None, :]
    else:
        s = np.stack([_binary_scale(a[:, lo:hi], 1) for lo, hi in row_tiles])
    return binary_codes(w), s


def act_range(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range of a quantized activation."""
    if signed:
        if bits < 2:
            # a symmetric signed range of 1 bit is {0}: every input would quantize to 0
            raise ConfigError(f"input_bits = {bits} cannot hold signed activations (a layer "
                              "whose calibration inputs go below 0); use input_bits >= 2")
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def quantize_acts(x: np.ndarray, scale: float, bits: int, signed: bool,
                  zero_point: int = 0) -> np.ndarray:
    """``clip(rint(x / scale) + zero_point, lo, hi)`` as int64 (a positive ``zero_point`` only
    with unsigned inputs). A negative ``zero_point`` is the A-shift (``dac.shift_unsigned_inputs``):
    the unsigned code ``clip(rint(x / scale), 0, 2^bits - 1)`` shifted by it, so
    ``zero_point = -2^(bits-1)`` gives the two's-complement range."""
    # no saturation count here: the percentile and MSE scale searches quantize every candidate
    return _clipped(*_act_codes(x, scale, bits, signed, zero_point))


def quantize_acts_counted(x: np.ndarray, scale: float, bits: int, signed: bool,
                          zero_point: int = 0) -> tuple[np.ndarray, int]:
    """:func:`quantize_acts`' codes and how many inputs they saturated: whose code before the
    clip lay outside the input range (the value more than half a step beyond it; below 0 for
    unsigned inputs)."""
    q, lo, hi, shift = _act_codes(x, scale, bits, signed, zero_point)
    n = int(np.count_nonzero(q < lo)) + int(np.count_nonzero(q > hi))
    return _clipped(q, lo, hi, shift), n


def _act_codes(x: np.ndarray, scale: float, bits: int, signed: bool, zero_point: int
               ) -> tuple[np.ndarray, int, int, int]:
    """The codes of :func:`quantize_acts` before the clip, the range ``[lo, hi]`` they are
    clipped to and the shift added after it (the A-shift's negative zero point, else 0)."""
    q = np.rint(np.asarray(x, dtype=np.float64) / scale)
    if zero_point < 0:
        return q, 0, 2**bits - 1, zero_point
    lo, hi = act_range(bits, signed)
    if zero_point:
        q += zero_point
    return q, lo, hi, 0


def _clipped(q: np.ndarray, lo: int, hi: int, shift: int) -> np.ndarray:
    codes = np.clip(q, lo, hi)
    if shift:
        codes += shift
    return codes.astype(np.int64)


def block_fp_acts(x: np.ndarray, bits: int, signed: bool, exponent_bits: int,
                  row_tiles: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Block floating-point inputs: one shared exponent per (vector, row tile).

    For the values ``x[i, a:b]`` of vector i in row tile t = (a, b), with ``B_m`` magnitude
    bits (``bits - 1`` signed, ``bits`` unsigned) and ``q = 2^B_m - 1`` (the range of
    :func:`act_range`):

    * ``E = floor(log2 max_k |x[i, k]|)``, the exponent of the largest value (exact:
      ``numpy.frexp``);
    * ``X = clip(E - (B_m - 1), -(2^(e-1) - 1), 2^(e-1) - 1)`` with ``e = exponent_bits``: the
      scale exponent, so that the largest value's mantissa has its leading one in the top
      magnitude bit; an all-zero block takes the lowest X (its codes are 0 at any scale);
    * ``x_int = clip(rint(x / 2^X), lo, hi)``: every mantissa aligned to the shared exponent
      and rounded half to even, saturating at q (the largest value can round up to 2^B_m).
      This is the MX conversion (Rouhani et al., "Microscaling Data Formats for Deep
      Learning", arXiv:2310.10537, 2023, Algorithm 1: shared exponent ``floor(log2 max|V|)``
      minus the element format's largest exponent, elements ``V / 2^X`` rounded and clamped);
      MXINT8 is ``bits = 8`` signed (a sign, one integer bit and six fraction bits: B_m - 1 =
      6). Macros that truncate in their alignment shifters differ by at most one LSB.

    Division by a power of two is exact in float64, so the rounding is the only error, and an
    unsigned block (``signed = False``) clips negative values to 0 as the integer path does.

    Returns
    -------
    x_int : (M, K) int64
    exponents : (M, T) int64
        ``X`` of every (vector, row tile): the block's dequantization scale is ``2^X``.
    """
    x_int, exps, _ = block_fp_acts_counted(x, bits, signed, exponent_bits, row_tiles)
    return x_int, exps


def block_fp_acts_counted(x: np.ndarray, bits: int, signed: bool, exponent_bits: int,
                          row_tiles: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`block_fp_acts`' codes and exponents, and how many inputs they saturated (as
    :func:`quantize_acts_counted` counts: a block's largest value rounded up to 2^B_m, a
    negative value of an unsigned block, a value past the exponent's range)."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = act_range(bits, signed)
    mag_bits = bits - 1 if signed else bits
    x_max = 2 ** (exponent_bits - 1) - 1
    x_int = np.empty(x.shape, dtype=np.int64)
    exps = np.empty((x.shape[0], len(row_tiles)), dtype=np.int64)
    n = 0
    for t, (a, b) in enumerate(row_tiles):
        block = x[:, a:b]
        amax = np.abs(block).max(axis=1, initial=0.0)
        e = np.frexp(amax)[1].astype(np.int64) - 1  # amax = f·2^p, f in [0.5, 1): E = p - 1
        e = np.where(amax > 0, e - (mag_bits - 1), -x_max)
        e = np.clip(e, -x_max, x_max)
        exps[:, t] = e
        q = np.rint(np.ldexp(block, -e[:, None]))
        n += int(np.count_nonzero(q < lo)) + int(np.count_nonzero(q > hi))
        x_int[:, a:b] = np.clip(q, lo, hi)
    return x_int, exps, n


def act_scale(
    max_abs: float, sample: np.ndarray, bits: int, signed: bool, cfg: QuantConfig
) -> float:
    """Per-tensor activation scale from calibration statistics.

    ``max_abs`` is the exact max |x| over all calibration data; ``sample`` a subsample of x
    used by the percentile and MSE methods.
    """
    qmax = act_range(bits, signed)[1]
    if max_abs <= 0:
        return 1.0
    if cfg.act_calibration is ActCalibration.MAX:
        clip = max_abs
    elif cfg.act_calibration is ActCalibration.PERCENTILE:
        clip = float(np.percentile(np.abs(sample), cfg.act_percentile))
    else:
        # search the clipping value that minimises the quantization MSE over the sample
        xs = np.asarray(sample, dtype=np.float64).ravel()
        best, clip = np.inf, max_abs
        for frac in np.linspace(0.05, 1.0, 96):
            c = frac * max_abs
            s = c / qmax
            err = float(np.mean((quantize_acts(xs, s, bits, signed) * s - xs) ** 2))
            if err < best:
                best, clip = err, c
    clip = clip if clip > 0 else max_abs
    return float(clip / qmax)


def act_zero_point(
    lo: float, hi: float, sample: np.ndarray, bits: int, cfg: QuantConfig
) -> tuple[float, int]:
    """Scale and zero point of an asymmetric (unsigned) activation quantizer.

    Parameters
    ----------
    lo, hi : float
        Exact min and max of x over all calibration data.
    sample : ndarray
        A subsample of x, used by the percentile and MSE methods.

    Returns
    -------
    s_x : float
        ``(hi' - lo') / (2^bits - 1)`` over the calibrated range ``[lo', hi']`` (widened to
        contain 0, so that x = 0 has an exact code); 1.0 for an all-zero range.
    z : int
        ``clip(rint(-lo' / s_x), 0, 2^bits - 1)``, the code of x = 0.
    """
    qmax = 2**bits - 1
    xs = np.asarray(sample, dtype=np.float64).ravel()
    if cfg.act_calibration is ActCalibration.PERCENTILE and xs.size:
        p = cfg.act_percentile
        lo, hi = float(np.percentile(xs, 100.0 - p)), float(np.percentile(xs, p))
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 0:
        return 1.0, 0

    def grid(a: float, b: float) -> tuple[float, int]:
        s = (b - a) / qmax
        return s, int(np.clip(np.rint(-a / s), 0, qmax))

    if cfg.act_calibration is ActCalibration.MSE and xs.size:
        # shrink both ends by one factor: the clipping that minimises the quantization MSE
        best, choice = np.inf, grid(lo, hi)
        for frac in np.linspace(0.05, 1.0, 96):
            s, z = grid(frac * lo, frac * hi)
            err = float(np.mean(((quantize_acts(xs, s, bits, False, z) - z) * s - xs) ** 2))
            if err < best:
                best, choice = err, (s, z)
        return float(choice[0]), choice[1]
    s, z = grid(lo, hi)
    return float(s), z


def zero_point_offsets(w_int: np.ndarray, zero_point: int,
                       row_tiles: list[tuple[int, int]]) -> np.ndarray:
    """``z · Σ_{k in part t} w_int[n, k]`` as float64 (T, N): what the digital back end subtracts
    from part t's integer outputs (exact: an integer below 2^53)."""
    w_int = np.asarray(w_int, dtype=np.int64)
    return np.stack([zero_point * w_int[:, a:b].sum(axis=1) for a, b in row_tiles]
                    ).astype(np.float64)


def smooth_factors(x_max_abs: np.ndarray, w: np.ndarray, alpha: float) -> np.ndarray:
    """SmoothQuant's per-input-channel factors ``s_k = max|X_k|^α / max|W_k|^(1-α)``.

    Parameters
    ----------
    x_max_abs : (K,) ndarray
        max |x_k| of each input channel over the calibration data.
    w : (N, K) ndarray
        Float weights; ``max|W_k|`` is over the outputs n.
    alpha : float
        Migration strength in [0, 1].

    Returns
    -------
    (K,) float64, positive; 1 for a channel that never fires or has no weight (nothing to
    balance).
    """
    xm = np.asarray(x_max_abs, dtype=np.float64)
    wm = np.abs(np.asarray(w, dtype=np.float64)).max(axis=0, initial=0.0)
    ok = (xm > 0) & (wm > 0)
    s = np.ones(xm.shape)
    s[ok] = xm[ok] ** alpha / wm[ok] ** (1.0 - alpha)
    return s

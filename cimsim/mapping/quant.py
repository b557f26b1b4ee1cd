"""Float -> integer quantization of weights and activations (NumPy; the formulas are exact).

Weights: symmetric, ``w_int = clip(rint(w / s_w), -q, q)`` with ``q = 2^(B_w-1) - 1`` and
``s_w = max|w| / q`` over the granularity's group (tensor, output channel, or (row tile, output)
pair). Activations: per tensor, ``x_int = clip(rint(x / s_x), lo, hi)`` with ``[lo, hi] =
[0, 2^B_x - 1]`` for non-negative calibration data (after ReLU) and ``[-(2^(B_x-1) - 1),
2^(B_x-1) - 1]`` otherwise (symmetric, valid for every signed-input mode). ``rint`` rounds half
to even, as ``torch.round`` does.
"""

from __future__ import annotations

import numpy as np

from ..config import ActCalibration, QuantConfig, WeightGranularity
from ..errors import ConfigError

__all__ = ["quantize_weights", "act_range", "act_scale", "quantize_acts"]


def _scale(max_abs: np.ndarray, q: int) -> np.ndarray:
    s = np.asarray(max_abs, dtype=np.float64) / q
    return np.where(s > 0, s, 1.0)  # an all-zero group: any scale is exact


def quantize_weights(
    w: np.ndarray, bits: int, granularity: WeightGranularity, row_tiles: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Quantize float weights ``w`` (N, K).

    Returns
    -------
    w_int : (N, K) int64
    s_w : (T, N) float64
        Scale of output n in row tile t (T = 1 unless ``granularity`` is ``column``).
    """
    w = np.asarray(w, dtype=np.float64)
    q = 2 ** (bits - 1) - 1
    n = w.shape[0]
    if granularity is WeightGranularity.TENSOR:
        s = np.full((1, n), _scale(np.abs(w).max(initial=0.0), q))
    elif granularity is WeightGranularity.CHANNEL:
        s = _scale(np.abs(w).max(axis=1, initial=0.0), q)[None, :]
    else:
        s = np.stack([_scale(np.abs(w[:, a:b]).max(axis=1, initial=0.0), q)
                      for a, b in row_tiles])
    w_int = np.empty(w.shape, dtype=np.int64)
    for t, (a, b) in enumerate(row_tiles if s.shape[0] > 1 else [(0, w.shape[1])]):
        w_int[:, a:b] = np.clip(np.rint(w[:, a:b] / s[t][:, None]), -q, q)
    return w_int, s


def act_range(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range of a quantized activation."""
    if signed:
        if bits < 2:
            # a symmetric signed range of 1 bit is {0}: every input would quantize to 0
            raise ConfigError(f"input_bits = {bits} cannot hold signed activations (a layer "
                              "whose calibration inputs go below 0); use input_bits >= 2")
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def quantize_acts(x: np.ndarray, scale: float, bits: int, signed: bool) -> np.ndarray:
    """``clip(rint(x / scale), lo, hi)`` as int64."""
    lo, hi = act_range(bits, signed)
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) / scale), lo, hi).astype(np.int64)


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

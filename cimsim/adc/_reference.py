"""NumPy twins of :mod:`cimsim.adc._kernels` (test oracles)."""

from __future__ import annotations

import numpy as np


def linear_adc_reference(a, lo, delta, top_code):
    """Vectorised twin of ``linear_adc``."""
    code = np.clip(np.floor((np.asarray(a, dtype=np.float64) - lo) / delta + 0.5), 0.0, top_code)
    return lo + code * delta


def nonlinear_adc_reference(a, thr, lvl):
    """Twin of the kernel's nonlinear ADC: a (..., C); thr (C, L-1); lvl (C, L).

    code = number of thresholds <= a (a value on a threshold goes up); value = lvl[code].
    """
    a = np.asarray(a, dtype=np.float64)
    codes = (thr[(None,) * (a.ndim - 1)] <= a[..., None]).sum(axis=-1)
    return np.take_along_axis(np.broadcast_to(lvl, a.shape + lvl.shape[-1:]),
                              codes[..., None], axis=-1)[..., 0]


def accumulate_moments_reference(a: np.ndarray, stream: np.ndarray, s1: np.ndarray,
                                 s2: np.ndarray) -> None:
    """NumPy twin of :func:`accumulate_moments` (the same additions in the same order)."""
    for r in range(a.shape[0]):
        s1[stream[r]] += a[r]
        s2[stream[r]] += a[r] * a[r]

"""NumPy twins of :mod:`cimsim.adc._kernels` (test oracles)."""

from __future__ import annotations

import numpy as np


def linear_adc_reference(a, lo, delta, top_code):
    """Vectorised twin of ``linear_adc``."""
    code = np.clip(np.floor((np.asarray(a, dtype=np.float64) - lo) / delta + 0.5), 0.0, top_code)
    return lo + code * delta

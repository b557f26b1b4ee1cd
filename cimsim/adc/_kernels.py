"""Scalar ADC transfer functions, inlined into the fused conversion kernel."""

from __future__ import annotations

import math

from numba import njit


@njit(inline="always", cache=True)
def linear_adc(a, lo, delta, top_code):  # pragma: no cover - compiled
    """Reconstructed value of a linear ADC: lo + clamp(floor((a-lo)/Δ + 1/2), 0, top)·Δ."""
    code = math.floor((a - lo) / delta + 0.5)
    if code < 0.0:
        code = 0.0
    elif code > top_code:
        code = top_code
    return lo + code * delta

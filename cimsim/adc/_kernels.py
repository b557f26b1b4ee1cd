"""Scalar ADC transfer functions, inlined into the fused conversion kernel."""

from __future__ import annotations

import math

from numba import njit


@njit(inline="always", cache=True)
def linear_adc(a, lo, delta, top_code):  # pragma: no cover - compiled
    """Reconstructed value of a linear ADC: lo + clamp(floor((a-lo)/Δ + 1/2), 0, top)·Δ."""
    # clamp before floor: Numba's floor returns an int64, which a huge value would overflow
    u = min(max((a - lo) / delta + 0.5, 0.0), top_code + 0.5)
    return lo + math.floor(u) * delta

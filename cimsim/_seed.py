"""The one rule for a seed (and for a true/false argument), shared by the command line and
the Python entry points."""

from __future__ import annotations

import contextlib
import math
import numbers

import numpy as np

from .errors import ConfigError

__all__ = ["SEED_MAX", "check_flag", "check_int", "check_nonnegative_number", "check_positive_int",
           "check_positive_number", "check_seed"]

SEED_MAX = 2**64 - 1
"""The largest seed: the noise and layer streams keep 64 bits of it
(``cimsim.arrays._rng.stream_key``), so a larger or a negative seed would silently alias one in
range (-1 would be 2**64 - 1), and ``numpy.random.default_rng`` refuses a negative one."""


def check_seed(seed: object, field: str = "seed") -> int:
    """``seed`` as an int, or a :class:`ConfigError` naming ``field`` unless it is an integer
    (Python or NumPy, not a bool) in [0, :data:`SEED_MAX`]."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) \
            or not 0 <= int(seed) <= SEED_MAX:
        raise ConfigError(f"{field} = {seed!r} is invalid; allowed: an integer from 0 to "
                          f"{SEED_MAX}")
    return int(seed)


def check_flag(value: object, field: str) -> bool:
    """``value`` as a bool, or a :class:`ConfigError` naming ``field`` unless it is True or
    False (Python's or NumPy's): a truthy string such as ``"false"`` or ``"no"`` read as True."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{field} = {value!r} is invalid; allowed: True or False")
    return bool(value)


def check_int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    """``value`` as an int in ``[lo, hi]`` (``hi`` None: no upper bound), Python's or NumPy's
    (``np.arange`` of bits in a loop), not a bool or a float, or a ``ConfigError`` naming
    ``name`` and the range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < lo or (hi is not None and value > hi):
        allowed = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
        raise ConfigError(f"{name} = {value!r} is invalid; allowed: {allowed}")
    return int(value)


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int >= 1, or a ``ConfigError`` naming ``name``."""
    return check_int(name, value, 1)


def check_positive_number(name: str, value: object) -> float:
    """``value`` as a float, or a ``ConfigError`` naming ``name`` unless it is a finite real
    number > 0 (Python's or NumPy's; not a bool, not a string: ``"2"`` is no number here)."""
    return _finite_number(name, value, zero_allowed=False)


def check_nonnegative_number(name: str, value: object) -> float:
    """As :func:`check_positive_number`, 0 allowed (a noise sigma, a weight decay)."""
    return _finite_number(name, value, zero_allowed=True)


def _finite_number(name: str, value: object, zero_allowed: bool) -> float:
    number = None
    if not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real):
        with contextlib.suppress(OverflowError):  # an int beyond float's range (10**400)
            number = float(value)
    if number is None or not math.isfinite(number) or number < 0 \
            or (number == 0 and not zero_allowed):
        raise ConfigError(f"{name} = {value!r} is invalid; allowed: a finite number "
                          f"{'>=' if zero_allowed else '>'} 0")
    return number

"""The one rule for a seed (and for a true/false argument), shared by the command line and
the Python entry points."""

from __future__ import annotations

import numbers

import numpy as np

from .errors import ConfigError

__all__ = ["SEED_MAX", "check_flag", "check_seed"]

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

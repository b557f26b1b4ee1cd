"""Strict JSON for the files cimsim writes (``report.json``, ``sweep.json``'s chip): Python's
``json`` writes NaN and infinities as the bare tokens ``NaN`` and ``Infinity``, which are not
JSON (JavaScript's ``JSON.parse`` and other strict readers refuse the file)."""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

import numpy as np

__all__ = ["json_safe"]


def json_safe(value: Any) -> Any:
    """``value`` with NaN as ``null`` (a figure that does not apply), +-infinity as the
    strings ``"inf"`` / ``"-inf"`` (a chip's infinite on/off ratio: ``ChipConfig.from_dict``
    reads them back), NumPy scalars as plain numbers and enums as their values, through dicts,
    lists and tuples."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value

"""Strict JSON for the files cimsim writes (``report.json``, ``sweep.json``'s chip): Python's
``json`` writes NaN and infinities as the bare tokens ``NaN`` and ``Infinity``, which are not
JSON (JavaScript's ``JSON.parse`` and other strict readers refuse the file)."""

from __future__ import annotations

import math
import re
from enum import Enum
from typing import Any

import numpy as np

__all__ = ["json_safe", "numeric_name", "saved_numbers"]


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


#: Keys of the figures cimsim saves as numbers (counts, energies, times, areas, scores).
_NUMERIC = re.compile(r"(^n_|energy|latency|area|tops|power|accuracy|cosine|sqnr|"
                      r"utilization|_pct$|_db$|_pj|_ns|_mm2|_um2|_s$)")


def numeric_name(key: str) -> bool:
    """Whether a saved figure named ``key`` is a number (``energy_pj_per_inference``,
    ``n_arrays``), as opposed to a name or a note (``layer``, ``ops_convention``)."""
    return bool(_NUMERIC.search(key))


def saved_numbers(row: dict[str, Any], where: str) -> dict[str, Any]:
    """``row`` of a saved file with its numeric figures (:func:`numeric_name`) read back as
    :func:`json_safe` wrote them: numbers as they are, ``null`` as None, ``"inf"`` /
    ``"-inf"`` as infinities (they stayed strings: a loaded report's column of them was text,
    and a mean of it a TypeError); a mapping of such figures (energy by component) likewise.
    Anything else is a TypeError naming ``where`` and the key (a damaged file failed later,
    in the rendering, with no file named)."""
    def number(key: str, value: Any) -> Any:
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            return value
        if value in ("inf", "-inf"):
            return float(value)
        raise TypeError(f"{where}: {key!r} is {value!r}, not a number")

    out = dict(row)
    for key, value in row.items():
        if not numeric_name(key):
            continue
        out[key] = ({k: number(f"{key}.{k}", v) for k, v in value.items()}
                    if isinstance(value, dict) else number(key, value))
    return out

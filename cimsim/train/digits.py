"""Deprecated: the demo model moved to :mod:`cimsim.models`, its data to :mod:`cimsim.data`.

``cimsim.train`` is the training package (the chip's twin, distillation); the bundled digits
CNN lives in ``cimsim.models`` and the digits split in ``cimsim.data``. The old names still
import from here, with a ``DeprecationWarning`` naming the new place.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

# old name -> module that now holds it
_MOVED = {
    "DEFAULT_WEIGHTS": "cimsim.models.digits_cnn",
    "DigitsCNN": "cimsim.models",
    "evaluate": "cimsim.models",
    "load_digits_cnn": "cimsim.models",
    "load_digits_split": "cimsim.data",
    "save_weights": "cimsim.models",
    "train_digits_cnn": "cimsim.models",
}

__all__: list[str] = []


def __getattr__(name: str) -> Any:
    target = _MOVED.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"cimsim.train.digits.{name} moved to {target}.{name}; import it from there",
                  DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(target), name)


def __dir__() -> list[str]:
    return sorted(_MOVED)

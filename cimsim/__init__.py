"""cimsim: cycle-approximate simulator of compute-in-memory accelerators.

The public API is small (README, "Public API"); heavy modules are imported only when used:
``cimsim.matmul`` loads the simulation engine (Numba kernels), ``cimsim.deploy`` loads torch,
reports load pandas and matplotlib. The subpackages ``cimsim.arrays``, ``cimsim.adc``,
``cimsim.mapping`` and ``cimsim.cost`` export their own public names.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# Numba's parallel kernels and torch's intra-op threads run on OpenMP (libgomp), whose idle
# workers spin by default: between the many short kernels and GEMMs of a forward pass, and
# against any other busy process, the spinning workers took the cores the next one needed
# (docs/performance.md). Passive waiting unless the user chose a policy. libgomp reads the
# variable once, when it is loaded (by ``import torch`` or the first Numba kernel), so it is
# set here, at the first import of cimsim, before either.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._version import __version__
from .config import ChipConfig, list_presets, load_chip
from .errors import CapacityError, CimsimError, ConfigError, MappingError
from .events import Events

if TYPE_CHECKING:
    from .api import matmul
    from .mapping.deploy import deploy

_LAZY = {"matmul": ".api", "deploy": ".mapping"}
"""Public names whose modules are imported on first use: name -> module holding it."""

__all__ = [
    "CapacityError",
    "ChipConfig",
    "CimsimError",
    "ConfigError",
    "Events",
    "MappingError",
    "deploy",
    "__version__",
    "list_presets",
    "load_chip",
    "matmul",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cimsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

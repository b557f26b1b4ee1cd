"""cimsim: cycle-approximate simulator of compute-in-memory accelerators.

The public API is small; heavy modules (torch, matplotlib) are imported only when used.
"""

from ._version import __version__
from .api import matmul
from .config import ChipConfig, list_presets, load_chip
from .errors import CapacityError, CimsimError, ConfigError, MappingError
from .events import Events


def deploy(model, chip, calibration, **kwargs):
    """Map a trained torch model onto a chip; see :func:`cimsim.mapping.deploy`."""
    from .mapping import deploy as _deploy  # torch is imported only when deploying

    return _deploy(model, chip, calibration, **kwargs)


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

"""torch models -> simulated layers. torch is imported here (and in ``cimsim.train``) only."""

from .deploy import SimModel, deploy

__all__ = ["SimModel", "deploy"]

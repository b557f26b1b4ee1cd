"""Training for the chip: a differentiable torch twin of the engine (``prepare``)."""

from .twin import EngineView, PreparedModel, TwinMatmul, TwinOptions, prepare

__all__ = ["EngineView", "PreparedModel", "TwinMatmul", "TwinOptions", "prepare"]

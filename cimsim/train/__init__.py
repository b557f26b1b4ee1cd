"""Training for the chip: a differentiable torch twin of the engine (``prepare``) and
label-free fine-tuning against the float model (``distill``)."""

from .distill import distill
from .twin import EngineView, PreparedModel, TwinMatmul, TwinOptions, prepare

__all__ = ["EngineView", "PreparedModel", "TwinMatmul", "TwinOptions", "distill", "prepare"]

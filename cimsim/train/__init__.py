"""Training for the chip: a differentiable torch twin of the engine (``prepare``), label-free
fine-tuning against the float model (``distill``), PIM-QAT (:mod:`cimsim.train.pimqat`),
ColumnQuant (:mod:`cimsim.train.columnquant`) and BatchNorm calibration on the non-ideal chip
(``calibrate_bn``)."""

from . import columnquant, pimqat
from .bn import calibrate_bn
from .distill import distill
from .twin import EngineView, PreparedModel, TwinMatmul, TwinOptions, prepare

__all__ = ["EngineView", "PreparedModel", "TwinMatmul", "TwinOptions", "calibrate_bn",
           "columnquant", "distill", "pimqat", "prepare"]

"""Training for the chip: a differentiable torch twin of the engine (``prepare``), label-free
fine-tuning against the float model (``distill``), PIM-QAT (:mod:`cimsim.train.pimqat`),
ColumnQuant (:mod:`cimsim.train.columnquant`, option 3's ternary twin in
:mod:`cimsim.train.ternary`), RAOQ's A-shift, W-reshape and BitAug (:mod:`cimsim.train.raoq`),
ADC-LoRA (:mod:`cimsim.train.lora`), BS-KMQ fine-tuning through a fused NL-ADC
(:mod:`cimsim.train.bskmq`) and BatchNorm calibration on the non-ideal chip (``calibrate_bn``).
``cimsim train --method`` combines them (:mod:`cimsim.train.methods`)."""

from . import bskmq, columnquant, lora, pimqat, raoq, ternary
from .bn import calibrate_bn
from .distill import distill
from .loop import param_groups
from .twin import _TWINS, EngineView, PreparedModel, TwinMatmul, TwinOptions, prepare
from .twin_layers import EXTRA_TWINS

# The Conv3d / ConvTranspose / recurrent twins build on twin.py's classes: registered here, so
# that neither module imports the other (importing cimsim.train.twin runs this first).
_TWINS.update(EXTRA_TWINS)

__all__ = ["EngineView", "PreparedModel", "TwinMatmul", "TwinOptions", "bskmq", "calibrate_bn",
           "columnquant", "distill", "lora", "param_groups", "pimqat", "prepare", "raoq",
           "ternary"]

"""The work of a run: what each layer did, as values the cost model and the report read.

A deployed model (``cimsim.deploy``) hands its work out as values of this module:
``SimModel.works()`` is one :class:`LayerWork` per mapped layer, ``SimModel.work()`` the
:class:`ModelWork` that adds the events not tied to a layer (reprogramming under
time-multiplexing) and the number of inferences. ``cimsim.cost.estimate`` and
``cimsim.report.Report`` read only these values, never the simulated layers' internals
(``docs/architecture.md``). For one ``cimsim.matmul`` call, ``cimsim.cost.layer_work`` builds
the :class:`LayerWork` from the call's events and the programmed block.

Nothing here imports torch: mapping builds these values, cost and report read them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .events import Action, Component, Events

if TYPE_CHECKING:  # typing only: arrays imports adc, which needs nothing from here
    from .arrays.program import ProgrammedLayer
    from .config import ChipConfig

__all__ = ["Block", "LayerWork", "ModelWork"]


@dataclass(frozen=True, slots=True)
class Block:
    """One programmed weight block and the input vectors it processed over the run.

    A layer has several blocks when its matrices are programmed separately: the groups of a
    grouped convolution, the projections of an attention layer, the row tiles of a
    ``weight_granularity = 'column'`` layer (each dequantized with its own scales).
    """

    layer: ProgrammedLayer
    """The programmed block (geometry: row tiles, column tiles, conversions)."""
    n_vectors: float
    """Input vectors the block processed over the whole run (not per inference)."""
    stage: int = 0
    """Blocks of one stage work in parallel; a later stage waits for the one before it (an
    attention layer's output projection, stage 1, reads what its q/k/v projections, stage 0,
    produced over the whole sequence)."""
    lag_vectors: float = 0.0
    """Vectors per inference the block waits, at its own time per vector, before its first
    step: a stacked unidirectional recurrent layer ``k`` starts once the layer below has made
    its first output, ``k`` time steps in (a wavefront pipeline, so the stack takes ``T + L -
    1`` time steps, not ``L T`` nor ``T``)."""
    merged_row_tiles: int = 1
    """Row tiles of the whole matrix whose partial outputs the digital add tree merges after
    this block: a matrix programmed one row tile per block (``weight_granularity =
    'column'``, block floating-point inputs) has one row tile in each block and its merge
    over all of them; 1: the block's own row tiles."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerWork:
    """What one layer did over a run: its events and the blocks that did them.

    Events and ``n_vectors`` cover the whole run; the cost model divides by the number of
    inferences (:class:`ModelWork`).
    """

    name: str
    """Layer name (the module's name in the deployed model)."""
    kind: str
    """``linear``, ``conv``, ``conv_transpose``, ``recurrent``, ``attention`` for a deployed
    layer; ``matmul`` for one call."""
    events: Events
    """Every event the layer's run counted (``cimsim.events``)."""
    blocks: tuple[Block, ...]
    """The programmed blocks, each with the input vectors it processed."""
    n_inputs: int
    """K: inputs of the layer's matrices, summed over its matrices."""
    n_outputs: int
    """N: outputs of the layer's matrices, summed over its matrices."""
    n_matrices: int
    """Weight matrices the layer maps (conv groups, attention projections; else 1)."""
    input_signed: bool
    """Whether any of its matrices takes signed inputs."""
    n_cells: int
    """Cells holding a weight digit (the layer's inputs x physical columns)."""
    n_arrays: int
    """Arrays the layer occupies."""
    n_adc_clipped: float = 0.0
    """Conversions whose ADC input fell outside the ADC's range by more than half a step
    (``cimsim.adc.ADCTables.clip_bounds``), counted by the run's conversions."""

    n_input_clipped: float = 0.0
    """Input values the input quantizer saturated: their code lay outside the input range
    (larger than the calibration data's range allows, or negative to unsigned inputs)."""
    n_input_values: float = 0.0
    """Input values quantized (vectors x inputs, over the layer's matrices)."""

    @property
    def n_adc_conversions(self) -> float:
        """ADC conversions the run counted (``adc.convert`` events, every bit width)."""
        return sum(v for key, v in self.events.items()
                   if key.component is Component.ADC and key.action is Action.CONVERT)

    @property
    def adc_clip_fraction(self) -> float:
        """Share of the run's conversions that clipped (NaN when none ran)."""
        n = self.n_adc_conversions
        return self.n_adc_clipped / n if n else math.nan

    @property
    def input_clip_fraction(self) -> float:
        """Share of the run's quantized inputs that saturated (NaN when none ran)."""
        n = self.n_input_values
        return self.n_input_clipped / n if n else math.nan


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelWork:
    """The work of a deployed model over a run: every layer's and the rest."""

    layers: tuple[LayerWork, ...]
    """One :class:`LayerWork` per mapped layer, in model order."""
    other_events: Events = field(default_factory=Events)
    """Events not tied to a layer: reprogramming of time-multiplexed arrays."""
    n_inferences: int
    """Inferences (samples) the events cover."""
    chip: ChipConfig
    """The chip the model was deployed on."""
    n_arrays_needed: int
    """Arrays the whole model needs (above the chip's count when time-multiplexed)."""

    digital: tuple[tuple[str, str, str], ...] = ()
    """(name, module type, reason) of every layer with weights kept digital, and of the
    digital activation products."""
    t_s: float | None = None
    """Time after programming the devices were seen at, s (``SimModel.set_time``); None where
    unknown."""

    def __repr__(self) -> str:
        # a summary, not 132 KB of every layer's blocks (a notebook printed that)
        return (f"ModelWork(chip={self.chip.name!r}, layers={len(self.layers)}, "
                f"inferences={self.n_inferences}, arrays_needed={self.n_arrays_needed})")

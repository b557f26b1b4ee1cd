"""Latency: cycle-approximate, per programmed weight block, then per layer and chip.

One programmed block (a :class:`~cimsim.arrays.program.ProgrammedLayer`) holds its weights
stationary in ``row tiles x column tiles`` arrays that all work in parallel. For every input
vector, input plane and row group of a row tile, each array reads once (a read pulse of
``t_read_ns``) and its ADCs convert the array's conversion columns, ``ceil(columns /
ADCs per array)`` conversions each. A column sample-and-hold lets the next read overlap the
conversions, so one step takes::

    t_step = max(t_window, ceil(conversion columns per array / ADCs per array) * t_conv)

    latency = vectors * planes * (row groups per row tile) * t_step + t_tail
    t_tail  = (1 + ceil(log2(row tiles))) digital clock cycles

``t_window`` is the analog phase (:func:`compute_window_ns`: the stated window, no shorter than
the column's predicted settling in the physical model). ``t_conv`` is the ADC conversion time
of the converter's model (SAR (b+1) ns, flash 1 ns, ramp 2^b ns, single-slope 2^b clock
periods) times the chip's calibration. The
shift-add and accumulation of a step are pipelined behind the ADCs, as NeuroSim V1.4 pipelines
them (docs/technology.md); only the last step's add tree and output write show, as ``t_tail``.
A layer's blocks (convolution groups, per-tile parts, attention projections) run in parallel:
the layer takes as long as its slowest block; except where a block reads another's outputs,
which is a later *stage* (``Block.stage``): an attention layer's output projection waits for
its q/k/v projections over the whole sequence, so that layer takes the slowest of q, k, v plus
the output projection. A stacked unidirectional recurrent layer ``k`` lags the one below by
``k`` time steps (``Block.lag_vectors``: the wavefront pipeline's fill, added to its blocks'
latency); a stacked bidirectional layer is a later stage (its backward direction reads the
whole output of the layer below). The chip runs layers
one after another (``sum``) or as a pipeline whose period is its slowest layer's (``max``): a
block's period is its steps, or its ``t_tail`` where that is longer (the add tree and output
write of one inference overlap the next inference's steps).

A time-multiplexed chip (a model needing more arrays than the chip has) reloads the arrays
beyond the chip's every forward call (``array.reprogram`` events, docs/hardware-model.md §11).
A reload writes an array one word line at a time, every cell of the row in parallel, so an
array takes ``n_rows x t_write_row`` (:func:`write_time_ns_per_row`); the arrays of a reload
are written :data:`WRITE_PARALLEL_ARRAYS_PER_TILE` per tile at a time (:func:`reload_latency`).
Reloads are not overlapped with computation: their time adds to the chip latency.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..arrays.encoding import plane_layout
from ..arrays.program import ProgrammedLayer
from ..config import ADCKind, CellTech, ChipConfig, ComputeDomain, InputDrive
from . import bitplanes, settling
from ._prices import FEFET_WRITE_PULSE_NS, MRAM_WRITE_PULSE_NS, written_cell
from .energy import NO_CALIBRATION, Calibration, adc_time_ns, chip_table
from .models import _resistive_kind, cell_kind
from .tables import TechTable

__all__ = ["WRITE_PARALLEL_ARRAYS_PER_TILE", "array_time_ns", "block_latency", "chip_latency_ns",
           "compute_window_ns", "digital_tail_ns", "read_pulse_priced", "reload_latency",
           "stated_window_ns", "step_ns", "write_time_ns_per_row"]

WRITE_PARALLEL_ARRAYS_PER_TILE = 1
"""Arrays of one tile written at the same time during a reload. An assumption: the new weights
reach a tile's arrays through the tile's one buffer and bus (ISAAC: one 256-b bus per 8-array
IMA, Shafiee et al., ISCA 2016), and RRAM programming draws the SET/RESET current of a whole
row at the write voltage, so a tile reprograms one array at a time; tiles work in parallel."""


def digital_tail_ns(chip: ChipConfig, n_row_tiles: int) -> float:
    """The add tree over row tiles plus the output write, in digital clock cycles, ns."""
    cycles = 1 + (math.ceil(math.log2(n_row_tiles)) if n_row_tiles > 1 else 0)
    return cycles * 1e3 / chip.tech.clock_mhz


def block_latency(
    layer: ProgrammedLayer, n_vectors: float, table: TechTable | None = None,
    calibration: Calibration | None = None, merged_row_tiles: int = 1,
    chip: ChipConfig | None = None,
) -> dict:
    """Latency of ``n_vectors`` input vectors through one programmed block.

    ``merged_row_tiles``: row tiles of the whole matrix the digital add tree merges after
    this block (:attr:`cimsim.work.Block.merged_row_tiles`), when more than its own.
    ``chip``: the chip that prices it (default the block's own); :func:`cimsim.cost.estimate`
    passes a re-pricing chip, which differs from the block's only in ``tech`` (its clock,
    read pulse and converter time).

    Returns
    -------
    dict
        ``n_planes``, ``n_row_groups_per_tile`` (the most in any row tile),
        ``n_conversions_per_adc`` (per step, the busiest array), ``t_conv_ns``, ``t_step_ns``,
        ``n_steps``, ``tail_ns``, ``latency_ns``, ``period_ns`` (the block's time in a
        pipeline of inferences: its steps, or its tail where that is longer, the add tree and
        output write of one inference overlapping the next one's steps), and ``adc_duty``
        (the fraction of a step the busiest ADC converts).
    """
    chip = layer.chip if chip is None else chip
    table = chip_table(chip) if table is None else table
    cal = NO_CALIBRATION if calibration is None else calibration
    n_planes = int(plane_layout(chip, layer.input_signed)[0].shape[0])
    groups_per_tile = int(np.bincount(layer.groups[:, 2]).max())
    conv_per_array = int(np.bincount(layer.conv_col_tile).max()) if layer.n_conversions else 0
    n_mux = -(-conv_per_array // chip.array.adcs_per_array)
    t_conv = adc_time_ns(chip, table, cal)
    t_step = step_ns(chip, n_mux, t_conv, table)
    n_steps = float(n_vectors) * n_planes * groups_per_tile
    tail = (digital_tail_ns(chip, max(len(layer.row_tiles), merged_row_tiles))
            if n_vectors > 0 else 0.0)
    return dict(
        n_planes=n_planes, n_row_groups_per_tile=groups_per_tile, n_conversions_per_adc=n_mux,
        t_conv_ns=t_conv, t_step_ns=t_step, n_steps=n_steps, tail_ns=tail,
        latency_ns=n_steps * t_step + tail, period_ns=max(n_steps * t_step, tail),
        adc_duty=n_mux * t_conv / t_step,
    )


def step_ns(chip: ChipConfig, n_mux: int, t_conv_ns: float,
            table: TechTable | None = None) -> float:
    """One step, ns: the analog phase (:func:`compute_window_ns`; ``B`` of them with bit-plane
    accumulation, :func:`.bitplanes.analog_phases`) or the ``n_mux`` conversions each ADC
    makes in it, whichever is longer."""
    phases = bitplanes.analog_phases(chip)
    return max(phases * compute_window_ns(chip, table), n_mux * t_conv_ns)


def stated_window_ns(chip: ChipConfig) -> float:
    """The compute window the chip states, ns: ``tech.t_integrate_ns`` where it states an
    integration window apart from its read pulse, else the read pulse ``tech.t_read_ns``;
    for digital CIM (``adc.kind = 'digital'``) one clock period, ``1000 / tech.clock_mhz``
    (its bit-cells are read and summed once per clock; the analog read pulse's default of 10
    ns timed a 1-GHz digital macro that did not state it at a tenth of its rate), no shorter
    than the read pulse of sensed resistive cells (their read is priced over it)."""
    tech = chip.tech
    if chip.adc.kind is ADCKind.DIGITAL:
        clock = 1e3 / float(tech.clock_mhz)
        return max(clock, float(tech.t_read_ns)) if _resistive_kind(cell_kind(chip)) else clock
    return float(tech.t_read_ns if tech.t_integrate_ns is None else tech.t_integrate_ns)


def compute_window_ns(chip: ChipConfig, table: TechTable | None = None) -> float:
    """The analog phase of one step, ns.

    The stated window: ``tech.t_integrate_ns`` where the chip states an integration window
    apart from its read pulse, else the read pulse ``tech.t_read_ns``. Physical model, analog
    columns (:func:`.settling.applies`): no shorter than the column's predicted settling
    (:func:`.settling.settle_time_ns`), and :func:`.settling.predicted_window_ns` (the settling
    times the fitted :data:`.settling.WINDOW_OVER_SETTLING`) where the chip states no window
    (``tech.window_stated = false``); either no shorter than the read pulse ``t_read_ns`` where
    the cells' energy is priced over it (:func:`read_pulse_priced`)."""
    stated = stated_window_ns(chip)
    if not settling.applies(chip):
        return stated
    table = chip_table(chip) if table is None else table
    # the cells' read energy is priced over the read pulse where they conduct for it: the
    # analog phase holds that pulse (a predicted window or a shorter integration window
    # cannot end before the pulse the energy was priced for)
    pulse = chip.tech.t_read_ns if read_pulse_priced(chip) else 0.0
    if not chip.tech.window_stated:
        return max(settling.predicted_window_ns(chip, table), pulse)
    return max(stated, settling.settle_time_ns(chip, table), pulse)


def read_pulse_priced(chip: ChipConfig) -> bool:
    """Whether the physical model prices the cells' read over the read pulse ``t_read_ns``:
    resistive cells in the current domain (their charge ``V G t_read``) and temporal drives
    (the pulse train lasts ``t_read_ns``). An SRAM or gain cell's amplitude-driven read is a
    bit-line discharge (no pulse length), a charge-domain product a capacitor's switching."""
    tech = chip.tech
    current = tech.compute_domain is ComputeDomain.CURRENT
    return ((current and _resistive_kind(cell_kind(chip)))
            or tech.input_drive in (InputDrive.PULSE_WIDTH, InputDrive.PULSE_COUNT))


def array_time_ns(block: Mapping, key: str = "latency_ns") -> float:
    """A block's arrays times its latency (``key``: or its period), array-ns: the time it
    holds arrays for."""
    return float(block[key]) * int(block.get("n_arrays", 1))


def layer_latency_ns(blocks: Iterable[dict], n_arrays: int | None = None,
                     key: str = "latency_ns") -> float:
    """A layer's blocks of one stage work in parallel (the slowest sets the stage's time); its
    stages (``stage``, default 0: :attr:`cimsim.work.Block.stage`) run one after another. On a
    chip of ``n_arrays`` arrays fewer than a stage's blocks hold together (time-multiplexed),
    they take turns: the stage lasts at least their array time over the chip's arrays.
    ``key``: the blocks' time taken, ``latency_ns`` or ``period_ns`` (:func:`block_latency`)."""
    slowest: dict[int, float] = {}
    held: dict[int, tuple[float, int]] = {}
    for b in blocks:
        s = int(b.get("stage", 0))
        slowest[s] = max(slowest.get(s, 0.0), float(b[key]))
        t, n = held.get(s, (0.0, 0))
        held[s] = (t + array_time_ns(b, key), n + int(b.get("n_arrays", 1)))
    if n_arrays is not None:
        for s, (t, n) in held.items():
            if n > n_arrays:
                slowest[s] = max(slowest[s], t / n_arrays)
    return float(sum(slowest.values()))


def chip_latency_ns(layer_latencies_ns: Sequence[float], pipelined: bool = False,
                    array_time: float = 0.0, n_arrays: int | None = None,
                    layer_periods_ns: Sequence[float] | None = None) -> float:
    """Layer-by-layer: the sum of the layers; pipelined: the slowest layer's period
    (``layer_periods_ns``, default the latencies: :func:`block_latency`'s ``period_ns``), and
    no less than the blocks' total ``array_time`` (array-ns) over the chip's ``n_arrays``:
    layers that share arrays (a time-multiplexed chip) cannot all run at once."""
    if not layer_latencies_ns:
        return 0.0
    if not pipelined:
        return float(sum(layer_latencies_ns))
    share = array_time / n_arrays if n_arrays else 0.0
    periods = layer_latencies_ns if layer_periods_ns is None else layer_periods_ns
    return float(max(max(periods), share))


def write_time_ns_per_row(chip: ChipConfig, table: TechTable | None = None) -> float:
    """Time to (re)write one row of an array of ``chip``, ns, by cell kind.

    RRAM: ``table.rram_write_time_ns_per_row`` (RESET, then SET pulses with write-verify);
    SRAM and ``ideal`` cells (costed as charge-domain SRAM, as their energy is):
    ``table.sram_write_time_ns_per_row`` (one write cycle per row). MRAM: one STT pulse,
    ``MRAM_WRITE_PULSE_NS``. FeFET: one field-driven pulse, ``FEFET_WRITE_PULSE_NS``. Flash:
    as RRAM (no published row write time was found; docs/technology.md). The cell is the one
    its write energy is priced as (``_prices.written_cell``).
    """
    table = chip_table(chip) if table is None else table
    cell, _ = written_cell(chip)  # the devices of a cell are written in parallel
    if cell is CellTech.MRAM:
        return MRAM_WRITE_PULSE_NS
    if cell is CellTech.FEFET:
        return FEFET_WRITE_PULSE_NS
    if cell.resistive:  # PCM, flash: costed as RRAM
        return float(table.rram_write_time_ns_per_row)
    return float(table.sram_write_time_ns_per_row)


def reload_latency(chip: ChipConfig, n_arrays_rewritten: float, n_arrays_per_reload: int,
                   table: TechTable | None = None) -> dict:
    """Time to reprogram ``n_arrays_rewritten`` arrays, ``n_arrays_per_reload`` at each reload.

    Each reload writes its arrays in waves of ``n_tiles x WRITE_PARALLEL_ARRAYS_PER_TILE``
    arrays; a wave takes one array's write time, ``n_rows x t_write_row`` (rows written one
    word line at a time, the cells of a row in parallel).

    Parameters
    ----------
    chip : ChipConfig
    n_arrays_rewritten : float
        Arrays rewritten over the whole run (the ``array.reprogram`` events).
    n_arrays_per_reload : int
        Arrays one reload rewrites (the model's arrays beyond the chip's).
    table : TechTable, optional

    Returns
    -------
    dict
        ``n_reloads``, ``n_arrays_per_reload``, ``n_arrays_in_parallel``,
        ``n_waves_per_reload``, ``t_write_row_ns``, ``t_write_array_ns`` and ``latency_ns``
        (every reload of the run); all zero when nothing is rewritten.
    """
    t_row = write_time_ns_per_row(chip, table)
    t_array = chip.array.n_rows * t_row
    parallel = chip.array.n_tiles * WRITE_PARALLEL_ARRAYS_PER_TILE
    if n_arrays_rewritten <= 0 or n_arrays_per_reload <= 0:
        n_reloads, waves = 0.0, 0
    else:
        n_reloads = float(n_arrays_rewritten) / n_arrays_per_reload
        waves = -(-int(n_arrays_per_reload) // parallel)
    return dict(n_reloads=n_reloads, n_arrays_per_reload=max(int(n_arrays_per_reload), 0),
                n_arrays_in_parallel=parallel, n_waves_per_reload=waves,
                t_write_row_ns=t_row, t_write_array_ns=t_array,
                latency_ns=n_reloads * waves * t_array)

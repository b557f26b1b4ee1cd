"""Cost model: energy, area and latency from the events of a run and the technology tables.

The estimator never simulates: ``energy = sum(events x energy per event)`` (:mod:`.energy`),
``area = sum(instances x area per instance)`` (:mod:`.area`), latency is cycle-approximate
(:mod:`.latency`). ``docs/cost-model.md`` gives every formula.

    import cimsim
    from cimsim.cost import estimate, layer_work
    sim = cimsim.deploy(model, chip, x_cal)
    sim(x)
    cost = estimate(sim.work())               # per inference: energy, area, latency, TOPS...
    cost.totals["tops_per_w"]

    # one layer: cimsim.matmul's events and the programmed block they ran on
    y, ev = cimsim.matmul(x_int, w_int, chip)
    block = cimsim.arrays.program(w_int, chip)   # geometry only (no simulation)
    cost = estimate([layer_work(ev, block)], chip)

The input is a value of :mod:`cimsim.work`: a deployed model's :class:`~cimsim.work.ModelWork`
(``SimModel.work()``) or a list of :class:`~cimsim.work.LayerWork`. torch is not imported here.

Ops convention: 1 MAC = 2 ops at the chip's ``input_bits x weight_bits``; the ``*_1b`` figures
multiply ops by ``input_bits * weight_bits`` (1b-normalised, as Jia et al., JSSC 2020, report
"1b-TOPS/W").
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._seed import check_flag
from ..arrays.program import ProgrammedLayer, sensed_cells
from ..config import ADCKind, CellTech, ChipConfig, PowerGating, as_chip
from ..errors import ConfigError
from ..events import Action, Component, EventKey, Events, event_key
from ..work import Block, LayerWork, ModelWork
from ._prices import retention_ns
from .area import area_instances, chip_area_um2, occupied_area_um2
from .datasheet import datasheet
from .energy import (
    CALIBRATIONS,
    COMPONENTS,
    NO_CALIBRATION,
    Calibration,
    calibration_for,
    chip_table,
    event_energy_pj,
)
from .latency import (
    array_time_ns,
    block_latency,
    chip_latency_ns,
    layer_latency_ns,
    reload_latency,
)
from .models import MODELS, component_models, digital, every_row_wordlines
from .tables import MAX_ADC_BITS, TechTable

__all__ = [
    "CALIBRATIONS",
    "MODELS",
    "COMPONENTS",
    "Block",
    "Calibration",
    "CostReport",
    "LayerWork",
    "ModelWork",
    "calibration_for",
    "component_models",
    "datasheet",
    "estimate",
    "layer_work",
]

OPS_PER_MAC = 2

UNATTRIBUTED = "(reprogramming)"
"""The ``layer`` of the cost rows of events not tied to a layer (time-multiplexing)."""

_MAC = event_key(Component.LAYER, Action.MAC)
_REPROGRAM = event_key(Component.ARRAY, Action.REPROGRAM)


def layer_work(events: Mapping, programmed: ProgrammedLayer | Sequence[ProgrammedLayer],
               name: str = "layer", n_vectors: float | None = None) -> LayerWork:
    """A :class:`~cimsim.work.LayerWork` from ``cimsim.matmul``-style events and the
    programmed block(s).

    ``programmed`` are blocks that all saw the same input vectors (row-tile parts of one
    matrix); ``n_vectors`` defaults to ``MACs / (K x N)`` from the events. The outputs are
    integers (not dequantized), as ``cimsim.matmul`` returns them.
    """
    parts = ([programmed] if isinstance(programmed, ProgrammedLayer)
             else list(programmed) if isinstance(programmed, (list, tuple)) else [])
    if not parts or not all(isinstance(p, ProgrammedLayer) for p in parts):
        # a weight array failed on a missing attribute, an empty list on an index
        raise TypeError(f"layer_work: programmed is {type(programmed).__name__}; allowed: a "
                        "ProgrammedLayer (cimsim.arrays.program(w_int, chip)) or a non-empty "
                        "list of them")
    ev = events if isinstance(events, Events) else Events(events)
    n_inputs = sum(p.n_inputs for p in parts)
    if n_vectors is None:
        kn = n_inputs * parts[0].n_outputs
        n_vectors = ev.get(_MAC) / kn if kn else 0.0
    elif (isinstance(n_vectors, bool) or not isinstance(n_vectors, numbers.Real)
          or not math.isfinite(n_vectors) or n_vectors < 0):
        # a negative or NaN count priced a layer of no time and no leakage, silently
        raise ConfigError(f"layer_work: n_vectors = {n_vectors!r} is invalid; allowed: a "
                          "finite number of input vectors >= 0, or None (from the events)")
    return LayerWork(
        name=name, kind="matmul", events=ev,
        blocks=tuple(Block(p, float(n_vectors), merged_row_tiles=len(parts)) for p in parts),
        n_inputs=n_inputs, n_outputs=parts[0].n_outputs, n_matrices=1,
        input_signed=any(p.input_signed for p in parts),
        n_cells=sum(p.n_inputs * p.n_phys_cols for p in parts),
        n_arrays=sum(p.n_arrays for p in parts),
    )


@dataclass
class CostReport:
    """Estimated cost, per inference.

    Attributes
    ----------
    chip : ChipConfig
        The chip priced.
    pipelined : bool
        Whether the latency is the pipelined period (else layer by layer).
    n_inferences : int
        Inferences the events were counted over (figures are per inference).
    calibration : Calibration
        The per-chip factors in use (:data:`NO_CALIBRATION` where none).
    layers : list of dict
        Per layer: ``layer``, ``n_arrays``, ``n_macs_per_inference``,
        ``energy_pj_per_inference`` and ``energy_<component>_pj_per_inference``,
        ``latency_ns_per_inference``, ``area_um2`` (occupied arrays and their tile share).
    events : list of dict
        Per (layer, component, action, bits): ``n_events_per_inference``,
        ``energy_pj_per_event``, ``energy_pj_per_inference``. Rows the estimator derives
        (``cimsim.events.DERIVED``): ``adc/leak`` (ADC-ns), ``cell/refresh`` (an eDRAM cell's
        cell-ns held), ``interconnect/bus_bit`` and, for ``every_row`` word lines,
        ``dac/wordline``.
    area : list of dict
        Chip instances: ``component``, ``scope``, ``instance``, ``n_instances``,
        ``area_um2_per_instance``, ``area_um2``.
    blocks : list of dict
        Latency details of every programmed block.
    totals : dict
        See :func:`estimate`.
    notes : list of str
        What the model leaves out, calibration in use.
    """

    chip: ChipConfig
    pipelined: bool
    n_inferences: int
    calibration: Calibration
    layers: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    area: list[dict] = field(default_factory=list)
    blocks: list[dict] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        # the headline, not a 26 KB line of every row (a notebook printed that)
        from ..report import headline_lines

        head = (f"CostReport(chip={self.chip.name!r}, layers={len(self.layers)}, "
                f"inferences={self.n_inferences})")
        return "\n".join([head, *(f"  {line}" for line in headline_lines(self.totals))])

    def energy_by_component(self, layer: str | None = None) -> dict[str, float]:
        """Energy per inference by component, pJ (one layer, or all)."""
        out = {c: 0.0 for c in COMPONENTS}
        for r in self.events:
            if (layer is None or r["layer"] == layer) and r["component"] in out:
                out[r["component"]] += r["energy_pj_per_inference"]
        return out

    def area_by_component(self) -> dict[str, float]:
        """Chip area by component, um^2."""
        out: dict[str, float] = {}
        for r in self.area:
            out[r["component"]] = out.get(r["component"], 0.0) + r["area_um2"]
        return out


def estimate(
    work: ModelWork | Sequence[LayerWork],
    chip: ChipConfig | str | Path | None = None,
    *,
    pipelined: bool = False,
    n_inferences: int | None = None,
    table: TechTable | None = None,
    calibration: Calibration | str | None = "auto",
) -> CostReport:
    """Energy, area and latency of a run.

    Parameters
    ----------
    work : ModelWork or sequence of LayerWork
        A deployed model's work (``sim.work()`` after some forwards), or layer works
        (:func:`layer_work`).
    chip : ChipConfig, str or Path, optional
        A config, a preset name or a ``.toml`` path. Needed for layer works; the model's own
        chip for a ``ModelWork``. Another chip may
        differ from the one the work ran on only in ``tech`` (node, supply, power gating, ...;
        not ``digital_column``, which changes the mapping, nor ``weight_sets_stored``, which
        decides whether a model larger than the chip reloads its arrays, nor ``input_drive`` to
        or from ``bit_planes``, nor a ``cell_kind`` or ``cost_model`` that makes a digital
        read-out sense its cells or not, which change what a read counts) and its name: it
        re-prices the same events, energy and time.
    pipelined : bool
        Chip latency: layer-by-layer (sum over layers, default) or pipelined (the slowest
        layer's period: its steps, each block's tail overlapping the next inference).
    n_inferences : int, optional
        Inferences the events cover (default: the model's count; 1 for layer works).
    table : TechTable, optional
        Technology table (default ``tech_table(chip.tech.node_nm, chip.tech.adc_band)``).
    calibration : Calibration, "auto" or None
        "auto": the preset's calibration (:data:`CALIBRATIONS`) if ``chip.name`` has one.

    Returns
    -------
    CostReport
        ``totals``: ``energy_pj_per_inference``, ``area_mm2`` (whole chip), ``area_mm2_used``
        (the occupied arrays that exist, at most the chip) and ``n_arrays_occupied``,
        ``latency_ns_per_inference`` (sum of the layers, or pipelined the slowest layer's
        period, as ``pipelined`` says, plus the
        reloads of a time-multiplexed chip, ``reprogramming_latency_ns_per_inference``),
        ``pipelined``, ``n_macs_per_inference``, ``ops_per_inference``, ``tops``,
        ``tops_per_w``, ``tops_per_mm2``, ``tops_per_mm2_used`` (1 MAC = 2 ops at input_bits
        x weight_bits, ``ops_convention`` says so) and their ``_1b`` variants (ops x
        input_bits x weight_bits), ``power_mw``, ``node_nm``, ``adc_band``, ``calibration``
        (the note of the calibration in use), ``energy_pj_per_inference_by_component``,
        ``cost_meaningful`` and ``cost_caveat`` (:func:`cost_caveat`). A time-multiplexed
        run adds a ``(reprogramming)`` row to ``layers`` and ``blocks``.

    Raises
    ------
    TypeError
        If ``work`` is neither a ``ModelWork`` nor a sequence of ``LayerWork``, or ``chip`` is
        missing for layer works.
    ValueError
        If ``n_inferences`` is not an integer >= 1, ``chip`` differs from the chip the work
        ran on outside ``tech``, two layer works share a name, or ``table`` / ``calibration``
        is not one the estimator has.
    """
    pipelined = check_flag(pipelined, "pipelined")
    works, other, n_inf, chip, n_needed = _inputs(work, chip)
    names = [w.name for w in works]
    if len(set(names)) < len(names):
        # every figure is kept by layer name: two of one name were priced as one layer (the
        # chip's time took the last one's alone)
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"estimate: {len(names)} layer works share the name(s) "
                         f"{', '.join(map(repr, twice))} (layer_work's default is 'layer'); "
                         "allowed: one name per layer, e.g. layer_work(events, layer, "
                         "name='fc1')")
    if n_inferences is not None:
        if (isinstance(n_inferences, bool) or not isinstance(n_inferences, numbers.Integral)
                or n_inferences < 1):  # 0 or -3 read as 1 before, and stored as given
            raise ValueError(f"n_inferences = {n_inferences!r} is invalid; allowed: an integer "
                             ">= 1 (the inferences the events cover), or None for the model's "
                             "count")
        n_inf = int(n_inferences)
    elif n_inf == 0:  # priced as 1: every energy, latency and TOPS came out 0, without a word
        # (a drifting chip's deploy-time compensation read is counted without an inference:
        # then not 0, but that read alone)
        warnings.warn("estimate: the model has run no inference since it was deployed (or "
                      "reset): energy, latency and throughput are those of no inference (0, "
                      "or only what deploy itself counted, such as a drift compensation's "
                      "calibration read; area is the chip's); call the model on inputs first",
                      UserWarning, stacklevel=2)
    if table is not None and not isinstance(table, TechTable):
        raise ValueError(f"table = {table!r} is invalid; allowed: None (the chip's node) or a "
                         "cimsim.cost.tables.TechTable")
    table = chip_table(chip) if table is None else table
    cal = _calibration(calibration, chip)
    rep = CostReport(chip=chip, pipelined=pipelined, n_inferences=n_inf, calibration=cal)
    per = 1.0 / max(n_inf, 1)

    # first: leakage needs the time
    latency, period = _latency_stage(rep, works, per, table, cal)
    reload_ns = _reload_stage(rep, other, n_needed, per, table)
    # pipelined: each layer's period, a block's tail overlapping the next inference's steps
    key = "period_ns" if pipelined else "latency_ns"
    t_chip = chip_latency_ns(
        list(latency.values()), pipelined,
        sum(array_time_ns(b, key) for b in rep.blocks if b["layer"] != UNATTRIBUTED),
        chip.array.n_arrays, list(period.values())) + reload_ns
    # over capacity, the layers' arrays take turns on the chip's: leak for those that exist
    hold_share = min(1.0, chip.array.n_arrays / max(sum(w.n_arrays for w in works), 1))
    gated = chip.tech.power_gating is PowerGating.LAYER
    for w in works:
        # power gating (tech.power_gating): idle converters leak over the whole inference
        # ('none': the chip's arrays, shared out among all the layers) or only while their
        # own layer runs ('layer': that layer's arrays, as many as the chip holds at once;
        # a layer larger than the chip runs in turns, which its latency already counts).
        # Pipelined, a gated layer is on for its period per inference (its tail overlaps the
        # next inference's steps), not its latency (steps + tail: longer than the chip's period)
        leak_share, t_leak = hold_share, t_chip
        if gated:
            share = min(1.0, chip.array.n_arrays / max(w.n_arrays, 1))
            t_own = (period if pipelined else latency)[w.name]
            # gating only turns converters off: never more than the same arrays leak ungated
            # (a time-multiplexed chip's layers take turns on its arrays, so a layer's own
            # arrays over its own time could add up to more than the chip has)
            if share * t_own <= hold_share * t_chip:
                leak_share, t_leak = share, t_own
        ev = _with_derived(w, rep.blocks, per, t_leak, t_chip, chip, leak_share, hold_share)
        _price(rep, w.name, ev, chip, table, cal)
        rep.layers.append(_layer_row(rep, w, ev, latency[w.name], table, cal))
    if len(other):
        _price(rep, UNATTRIBUTED, dict(other.scaled(per).items()), chip, table, cal)
        rep.layers.append(_reprogramming_row(rep, reload_ns))
    rep.area = _area_rows(chip, table, cal)
    rep.totals = _totals(rep, works, t_chip, reload_ns, table, cal)
    rep.notes = _notes(chip, cal, reload_ns > 0 or len(other) > 0)
    return rep


def _inputs(work, chip: ChipConfig | str | Path | None
            ) -> tuple[list[LayerWork], Events, int, ChipConfig, int]:
    """Layer works, events not tied to a layer, inferences, chip and arrays needed of
    ``estimate``'s input."""
    if isinstance(work, ModelWork):
        priced = work.chip if chip is None else as_chip(chip)
        _check_same_hardware(work.chip, priced)
        return (list(work.layers), work.other_events, work.n_inferences, priced,
                work.n_arrays_needed)
    works = list(work) if isinstance(work, Iterable) else None
    if works is None or not all(isinstance(w, LayerWork) for w in works):
        raise TypeError(
            f"estimate() takes a ModelWork (sim.work() of a deployed model) or a sequence of "
            f"LayerWork (cimsim.cost.layer_work); got {type(work).__name__}")
    if chip is None:
        raise TypeError("estimate(layer_works, chip): chip is required for layer works")
    priced = as_chip(chip)
    for w in works:
        for b in w.blocks:
            _check_same_hardware(b.layer.chip, priced)
    return works, Events(), 1, priced, sum(w.n_arrays for w in works)


_PRICING_ONLY = ("name", "description", "source", "tech")
"""The chip fields that only price events: another value re-prices the same run (another
node or supply, power gating); every other field changes what the run counted."""

_MAPPING_TECH = ("digital_column", "weight_sets_stored")
"""The ``tech`` fields that change what a run counts: a ripple column's guard columns change
the outputs an array holds (``cimsim.config.ripple_guard_columns``), hence its arrays and
conversions; the weight sets stored decide whether a model that needs more arrays than the
chip has reloads them in every forward (``cell/write`` events, their time). Also
``input_drive`` to or from ``bit_planes`` (:data:`_BIT_PLANES_NOTE`) and a digital read-out's
cells sensed or not (:data:`_SENSED_NOTE`)."""

_BIT_PLANES_NOTE = "tech.input_drive to or from 'bit_planes'"
_SENSED_NOTE = ("tech.cell_kind or tech.cost_model where they change whether a digital "
                "read-out senses its cells")


def _check_same_hardware(ran: ChipConfig, priced: ChipConfig) -> None:
    """Refuse pricing a run's events with a chip that would not have counted them: its
    events (conversions, cell reads, planes) follow the chip it ran on, so another array,
    converter or precision priced them silently as a mix of two chips."""
    if ran == priced:
        return
    a, b = ran.to_dict(), priced.to_dict()
    # (to_dict leaves out a field that is None: an unset cell_kind)
    differ = [f"tech.{f}" for f in _MAPPING_TECH if a["tech"].get(f) != b["tech"].get(f)]
    planes = [t["input_drive"] == "bit_planes" for t in (a["tech"], b["tech"])]
    if planes[0] != planes[1]:  # re-priced a 9x dearer read (cimsim.engine._v1g)
        differ.append(f"{_BIT_PLANES_NOTE} (whose run counts the cells' reads, popcount(x), "
                      "where the other drives count |x|)")
    sensing = [f"tech.{f}" for f in ("cell_kind", "cost_model")
               if a["tech"].get(f) != b["tech"].get(f)]
    if sensing and sensed_cells(ran) != sensed_cells(priced):
        # an ideal cell priced as rram_1t1r (physical model) is sensed to its bit: its run
        # counts one read per nonzero slice where an unsensed one counts x^2 (engine._read_v2g).
        # (Sensing that changes with adc.kind or device.cell: those fields are named below.)
        differ.append(f"{' and '.join(sensing)} (a digital read-out that senses its cells on "
                      "one chip and not on the other: its run counts each cell read otherwise)")
    for k in a:
        if k in _PRICING_ONLY or a[k] == b[k]:
            continue
        # a component's differing fields by name (adc.bits), a top-level field by its own
        differ += ([f"{k}.{f}" for f in a[k] if a[k][f] != b[k].get(f)]
                   if isinstance(a[k], dict) else [k])
    if differ:
        raise ValueError(
            f"estimate: the chip differs from the one the work ran on ({ran.name!r}) in "
            f"{', '.join(differ)}; the events were counted on that chip. Only its pricing "
            f"fields ({', '.join(_PRICING_ONLY)}, but not "
            f"{', '.join('tech.' + f for f in _MAPPING_TECH)}, nor {_BIT_PLANES_NOTE}, nor "
            f"{_SENSED_NOTE}) may "
            "differ: deploy (or run) on the other chip to estimate it")


def _calibration(calibration: Calibration | str | None, chip: ChipConfig) -> Calibration:
    if isinstance(calibration, str):
        if calibration != "auto":
            raise ValueError(f"calibration = {calibration!r}; use 'auto', None or a Calibration")
        return calibration_for(chip)
    if calibration is not None and not isinstance(calibration, Calibration):
        # False or 0 failed on a missing attribute, deep in the pricing
        raise ValueError(f"calibration = {calibration!r} is invalid; allowed: 'auto', None or "
                         "a cimsim.cost.Calibration")
    return NO_CALIBRATION if calibration is None else calibration


def _latency_stage(rep: CostReport, works: Sequence[LayerWork], per: float, table: TechTable,
                   cal: Calibration) -> tuple[dict[str, float], dict[str, float]]:
    """Every block's latency per inference into ``rep.blocks``; each layer's latency and its
    period in a pipeline (the slowest block of each stage, the stages one after another), ns."""
    latency, period = {}, {}
    for w in works:
        rows = []
        for i, b in enumerate(w.blocks):
            # rep.chip, not the block's: a re-pricing chip's tech times the steps (t_read_ns,
            # clock), as its tables price their energy
            d = block_latency(b.layer, b.n_vectors * per, table, cal, b.merged_row_tiles,
                              chip=rep.chip)
            # a pipeline's fill (Block.lag_vectors), at the block's own steps per vector
            d["lag_ns"] = (b.lag_vectors * d["n_planes"] * d["n_row_groups_per_tile"]
                           * d["t_step_ns"] if b.lag_vectors and b.n_vectors else 0.0)
            d["latency_ns"] += d["lag_ns"]
            d.update(layer=w.name, block=i, name=b.layer.name or w.name, stage=b.stage,
                     n_arrays=b.layer.n_arrays, n_vectors_per_inference=b.n_vectors * per)
            rows.append(d)
        rep.blocks += rows
        latency[w.name] = layer_latency_ns(rows, rep.chip.array.n_arrays)
        period[w.name] = layer_latency_ns(rows, rep.chip.array.n_arrays, "period_ns")
    return latency, period


def _reload_stage(rep: CostReport, other: Events, n_needed: int, per: float,
                  table: TechTable) -> float:
    """Reload time of a time-multiplexed chip per inference, ns; its row into ``rep.blocks``
    (layer ``(reprogramming)``) when arrays are rewritten."""
    chip = rep.chip
    rewritten = other.get(_REPROGRAM)
    if rewritten <= 0:
        return 0.0
    d = reload_latency(chip, rewritten, n_needed - chip.array_slots, table)
    d["latency_ns"] *= per
    d.update(layer=UNATTRIBUTED, block=0, name="reload of the time-multiplexed arrays",
             n_arrays=d["n_arrays_per_reload"], n_reloads_per_inference=d.pop("n_reloads") * per)
    rep.blocks.append(d)
    return float(d["latency_ns"])


def _with_derived(w: LayerWork, blocks: list[dict], per: float, t_leak: float, t_hold: float,
                  chip: ChipConfig, leak_share: float = 1.0,
                  hold_share: float = 1.0) -> dict[EventKey, float]:
    """The layer's events per inference plus the ones the estimator derives
    (``cimsim.events.DERIVED``): ADC leakage over ``t_leak`` (the inference time, or the
    layer's own under power gating), in ADC-ns, for the layer's occupied arrays times
    ``leak_share`` (below 1 when they outnumber the chip's arrays that leak meanwhile: only
    the chip's arrays exist); for eDRAM cells, the refresh of every cell of those arrays times
    ``hold_share`` (the layer's part of the chip's arrays) over ``t_hold`` (the whole
    inference: a gated array keeps its weights), in cell-ns; tile-bus bits = buffer bits read
    and written."""
    ev = dict(w.events.scaled(per).items())
    adcs = chip.array.adcs_per_array
    mine = [b for b in blocks if b["layer"] == w.name]
    leak = leak_share * sum(b["n_arrays"] * adcs * t_leak * b["adc_duty"] for b in mine)
    ev[event_key(Component.ADC, Action.LEAK, chip.adc.bits)] = leak
    if chip.device.cell is CellTech.EDRAM:
        cells = chip.array.n_rows * chip.array.n_cols
        ev[event_key(Component.CELL, Action.REFRESH)] = hold_share * sum(
            b["n_arrays"] * cells * t_hold for b in mine)
    ev[event_key(Component.INTERCONNECT, Action.BUS_BIT)] = (
        ev.get(event_key(Component.BUFFER, Action.READ_BIT), 0.0)
        + ev.get(event_key(Component.BUFFER, Action.WRITE_BIT), 0.0))
    if every_row_wordlines(chip):
        # every row of the group read switches its word lines once per read (an activation
        # reads one row group: the other groups' rows stay off, or they would add to the sum);
        # a digital read-out's d-bit slice drives d 1-b lines per row
        ev[event_key(Component.DAC, Action.WORDLINE)] = (
            ev.get(event_key(Component.ARRAY, Action.ACTIVATION), 0.0)
            * chip.array.rows_per_group * (chip.dac_bits if digital(chip) else 1))
    return ev


def _price(rep: CostReport, layer: str, ev: Mapping[EventKey, float], chip: ChipConfig,
           table: TechTable, cal: Calibration) -> None:
    """One ``rep.events`` row per event: count x price (every registered event has one)."""
    for key, n in sorted(ev.items()):
        e = event_energy_pj(key, chip, table, cal)
        rep.events.append(dict(layer=layer, component=key.component.value,
                               action=key.action.value, bits=key.bits,
                               n_events_per_inference=n, energy_pj_per_event=e,
                               energy_pj_per_inference=n * e))


def _layer_row(rep: CostReport, w: LayerWork, ev: Mapping[EventKey, float], latency_ns: float,
               table: TechTable, cal: Calibration) -> dict:
    return _row(rep, w.name, w.n_arrays, ev.get(_MAC, 0.0), latency_ns,
                sum(occupied_area_um2(rep.chip, w.n_arrays, table, cal).values()))


def _reprogramming_row(rep: CostReport, reload_ns: float) -> dict:
    """The ``(reprogramming)`` line of a time-multiplexed run: the energy of its cell writes
    and the reload time per inference; it occupies no arrays of its own."""
    return _row(rep, UNATTRIBUTED, 0, 0.0, reload_ns, 0.0)


def _row(rep: CostReport, name: str, n_arrays: int, macs: float, latency_ns: float,
         area_um2: float) -> dict:
    """One ``rep.layers`` row: the energy of ``name``'s priced events by component."""
    energy = rep.energy_by_component(name)
    row = {"layer": name, "n_arrays": n_arrays, "n_macs_per_inference": macs,
           "energy_pj_per_inference": sum(energy.values())}
    row.update({f"energy_{c}_pj_per_inference": energy.get(c, 0.0) for c in COMPONENTS})
    row["latency_ns_per_inference"] = latency_ns
    row["area_um2"] = area_um2
    return row


def _area_rows(chip: ChipConfig, table: TechTable, cal: Calibration) -> list[dict]:
    """Every instance kind on the whole chip (every array and tile, used or not)."""
    rows = []
    for r in area_instances(chip, table, cal):
        n = r["n_per_scope"] * (chip.array.n_arrays if r["scope"] == "array"
                                else chip.array.n_tiles)
        rows.append(dict(component=r["component"], scope=r["scope"], instance=r["instance"],
                         n_instances=n, area_um2_per_instance=r["area_um2_per_instance"],
                         area_um2=n * r["area_um2_per_instance"]))
    return rows


def _totals(rep: CostReport, works: Sequence[LayerWork], t_chip: float, reload_ns: float,
            table: TechTable, cal: Calibration) -> dict[str, Any]:
    chip = rep.chip
    area_um2 = sum(chip_area_um2(chip, table, cal).values())
    # time-multiplexed layers take turns on the same arrays: the used part is at most the chip
    occupied = min(sum(w.n_arrays for w in works), chip.array.n_arrays)
    if occupied < chip.array.n_arrays:
        used = sum(sum(occupied_area_um2(chip, w.n_arrays, table, cal).values()) for w in works)
    else:
        used = area_um2
    energy = sum(r["energy_pj_per_inference"] for r in rep.events)
    macs = sum(r["n_macs_per_inference"] for r in rep.layers)
    ops = OPS_PER_MAC * macs
    bits = chip.input_bits * chip.weight_bits
    tops = ops / (t_chip * 1e3) if t_chip > 0 else 0.0
    tops_per_w = ops / energy if energy > 0 else 0.0
    tops_mm2 = tops / (area_um2 * 1e-6) if area_um2 > 0 else 0.0
    tops_mm2_used = tops / (used * 1e-6) if used > 0 else 0.0
    caveat = cost_caveat(chip)
    return {
        "energy_pj_per_inference": energy,
        "area_mm2": area_um2 * 1e-6,
        "area_mm2_used": used * 1e-6,
        "n_arrays_occupied": occupied,
        "latency_ns_per_inference": t_chip,
        "reprogramming_latency_ns_per_inference": reload_ns,
        "pipelined": rep.pipelined,
        "n_macs_per_inference": macs,
        "ops_per_inference": ops,
        "power_mw": energy / t_chip if t_chip > 0 else 0.0,
        "tops": tops,
        "tops_per_w": tops_per_w,
        "tops_per_mm2": tops_mm2,
        "tops_per_mm2_used": tops_mm2_used,
        "tops_1b": tops * bits,
        "tops_per_w_1b": tops_per_w * bits,
        "tops_per_mm2_1b": tops_mm2 * bits,
        "tops_per_mm2_used_1b": tops_mm2_used * bits,
        "ops_convention": (f"1 MAC = 2 ops at {chip.input_bits}b input x {chip.weight_bits}b "
                           f"weight; *_1b = ops x {bits} (1b-normalised)"),
        "node_nm": chip.tech.node_nm,
        "adc_band": chip.tech.adc_band,
        "calibration": cal.note,
        "cost_meaningful": not caveat,
        "cost_caveat": caveat,
        "energy_pj_per_inference_by_component": rep.energy_by_component(),
    }


def _priced_beyond_tables(chip: ChipConfig) -> bool:
    """Whether ``chip``'s converter is priced by its bits and they exceed the tables'."""
    return chip.adc.kind is not ADCKind.DIGITAL and chip.adc.bits > MAX_ADC_BITS


def cost_caveat(chip: ChipConfig) -> str:
    """Why ``chip``'s energy, area and TOPS figures mean nothing, or ``""`` if they do.

    A chip whose ADC is wider than the tables' 16 b (the ``ideal`` preset's 24-b lossless
    reference ADC, one per column) is a reference model, not a buildable chip: its ADCs are
    costed as 16-b ones and its arrays as whatever the tables hold, so its figures describe no
    hardware (``ideal``: 543,152 mm^2). A digital read-out's ``adc.bits`` is its adder tree's
    width, which its price does not read (the tree's full adders follow its rows and slice
    bits): a 17-b tree of 256 rows x 8-b slices is hardware.
    """
    if _priced_beyond_tables(chip):
        return (f"reference chip, not hardware: its {chip.adc.bits}-b ADC is beyond any column "
                f"ADC and the tables' {MAX_ADC_BITS} b, so its energy, area and TOPS figures "
                "mean nothing")
    return ""


def _notes(chip: ChipConfig, cal: Calibration, time_multiplexed: bool = False) -> list[str]:
    notes = [
        "energy = sum(events x energy per event); area = sum(instances x area); "
        "see docs/cost-model.md, sources in docs/technology.md",
        "leakage: only ADC leakage (20 % of dynamic power at the design rate, the "
        "hwcomponents-adc assumption) is charged, for the occupied arrays over the inference; "
        "no source used here gives another leakage figure",
        f"calibration: {cal.note}",
    ]
    if chip.device.cell is CellTech.EDRAM:
        notes.append(
            f"eDRAM refresh: every stored bit read and written back once per "
            f"{retention_ns(chip) / 1e3:g}-us retention time, for the occupied arrays' cells "
            "over the whole inference (a static power, as leakage; the refresh's array time is not "
            "charged to the latency)")
    if caveat := cost_caveat(chip):
        notes.insert(0, f"COST FIGURES MEANINGLESS: {caveat}")
    if time_multiplexed:
        notes.append(
            "time-multiplexed: the arrays beyond the chip's are rewritten every forward call "
            "(cell writes priced per stored bit, row by row, one array per tile at a time, "
            "not overlapped with computation: the '(reprogramming)' row), so its figures per "
            "inference fall as a call holds more inputs; fetching those weights from off-chip "
            "memory (DRAM energy, its bandwidth) is not priced: a lower bound; leakage and the "
            "used area count the chip's arrays only; a layer's area_um2 is its own footprint")
    if _priced_beyond_tables(chip):
        notes.append(f"ADC of {chip.adc.bits} b is beyond the tables' {MAX_ADC_BITS} b: costed "
                     f"as a {MAX_ADC_BITS}-b ADC (a lower bound)")
    return notes

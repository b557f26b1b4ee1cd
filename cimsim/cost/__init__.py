"""Cost model: energy, area and latency from the events of a run and the technology tables.

The estimator never simulates: ``energy = sum(events x energy per event)`` (:mod:`.energy`),
``area = sum(instances x area per instance)`` (:mod:`.area`), latency is cycle-approximate
(:mod:`.latency`). ``docs/cost-model.md`` gives every formula.

    import cimsim
    from cimsim.cost import estimate, layer_work
    sim = cimsim.deploy(model, chip, x_cal)
    sim(x)
    cost = estimate(sim)                      # per inference: energy, area, latency, TOPS...
    cost.totals["tops_per_w"]

    # one layer: cimsim.matmul's events and the programmed block they ran on
    y, ev = cimsim.matmul(x_int, w_int, chip)
    block = cimsim.arrays.program.program(w_int, chip)   # geometry only (no simulation)
    cost = estimate([layer_work(ev, block)], chip)

Ops convention (energy.md): 1 MAC = 2 ops at the chip's ``input_bits x weight_bits``; the
``*_1b`` figures multiply ops by ``input_bits * weight_bits`` (1b-normalised, as Jia/Lee
report "1b-TOPS/W"). torch is not imported here: a deployed model is read duck-typed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..arrays.program import ProgrammedLayer
from ..config import ChipConfig
from ..events import EventKey, Events
from .area import area_instances, chip_area_um2, occupied_area_um2
from .energy import (
    CALIBRATIONS,
    COMPONENTS,
    NO_CALIBRATION,
    Calibration,
    calibration_for,
    chip_table,
    event_energy_pj,
)
from .latency import block_latency, chip_latency_ns, layer_latency_ns
from .tables import MAX_ADC_BITS, TechTable

__all__ = [
    "CALIBRATIONS",
    "COMPONENTS",
    "Block",
    "Calibration",
    "CostReport",
    "LayerWork",
    "calibration_for",
    "estimate",
    "layer_work",
    "works_from_sim",
]

OPS_PER_MAC = 2


@dataclass
class Block:
    """One programmed weight block and the input vectors it processed over the run."""

    layer: ProgrammedLayer
    n_vectors: float


@dataclass
class LayerWork:
    """What one layer did: its events (whole run) and the blocks that did it.

    ``dequantize``: the layer's integer outputs are rescaled (one multiply per output), as in a
    deployed model; ``cimsim.matmul`` returns integers and does not.
    """

    name: str
    events: Events
    blocks: list[Block]
    dequantize: bool = False

    @property
    def n_arrays(self) -> int:
        return sum(b.layer.n_arrays for b in self.blocks)


def layer_work(events: Mapping, programmed: ProgrammedLayer | Sequence[ProgrammedLayer],
               name: str = "layer", n_vectors: float | None = None) -> LayerWork:
    """A :class:`LayerWork` from ``cimsim.matmul``-style events and the programmed block(s).

    ``programmed`` are blocks that all saw the same input vectors (row-tile parts of one
    matrix); ``n_vectors`` defaults to ``MACs / (K x N)`` from the events.
    """
    parts = [programmed] if isinstance(programmed, ProgrammedLayer) else list(programmed)
    ev = events if isinstance(events, Events) else Events(events)
    if n_vectors is None:
        kn = sum(p.n_inputs for p in parts) * parts[0].n_outputs
        n_vectors = ev.get(("layer", "mac", 0)) / kn if kn else 0.0
    return LayerWork(name, ev, [Block(p, float(n_vectors)) for p in parts])


def works_from_sim(sim) -> tuple[list[LayerWork], Events, int]:
    """Layer works, events not tied to a layer (reprogramming) and inferences of a deployed
    model (``cimsim.deploy``'s ``SimModel``, read duck-typed: ``sim_layers``, ``events``,
    ``n_inferences``)."""
    works = []
    layer_total = Events()
    for name, layer in sim.sim_layers.items():
        blocks = []
        for core in layer.cores:
            n, k = core.shape
            m = core.events.get(("layer", "mac", 0)) / (n * k) if n * k else 0.0
            blocks += [Block(pl, m) for _, _, pl in core.parts]
        ev = layer.events
        layer_total = layer_total + ev
        works.append(LayerWork(name, ev, blocks, dequantize=True))
    extra = {k: v - layer_total.get(k) for k, v in sim.events.items()}
    extra_ev = Events({k: v for k, v in extra.items() if abs(v) > 1e-9})
    return works, extra_ev, int(sim.n_inferences)


@dataclass
class CostReport:
    """Estimated cost, per inference.

    Attributes
    ----------
    layers : list of dict
        Per layer: ``layer``, ``n_arrays``, ``n_macs_per_inference``,
        ``energy_pj_per_inference`` and ``energy_<component>_pj_per_inference``,
        ``latency_ns_per_inference``, ``area_um2`` (occupied arrays and their tile share).
    events : list of dict
        Per (layer, component, action, bits): ``n_events_per_inference``,
        ``energy_pj_per_event``, ``energy_pj_per_inference``. Derived rows: ``adc/leak``
        (ADC-ns), ``digital/dequant_multiply``, ``interconnect/bus_bit``.
    area : list of dict
        Chip instances: ``component``, ``scope``, ``instance``, ``n_instances``,
        ``area_um2_per_instance``, ``area_um2``.
    blocks : list of dict
        Latency details of every programmed block.
    totals : dict
        See :func:`estimate`.
    notes : list of str
        What is not costed, calibration in use.
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


def _per_inference(events: Events, n_inf: int) -> Events:
    return events.scaled(1.0 / max(n_inf, 1))


def estimate(
    work,
    chip: ChipConfig | None = None,
    *,
    pipelined: bool = False,
    n_inferences: int | None = None,
    table: TechTable | None = None,
    calibration: Calibration | str | None = "auto",
) -> CostReport:
    """Energy, area and latency of a run.

    Parameters
    ----------
    work : SimModel or sequence of LayerWork
        A deployed model after some forwards (duck-typed: ``sim_layers``, ``events``,
        ``n_inferences``, ``chip``), or layer works (:func:`layer_work`).
    chip : ChipConfig, optional
        Needed for layer works; a deployed model's own chip by default.
    pipelined : bool
        Chip latency: layer-by-layer (sum over layers, default) or pipelined (slowest layer).
    n_inferences : int, optional
        Inferences the events cover (default: the model's count; 1 for layer works).
    table : TechTable, optional
        Technology table (default ``tech_table(chip.tech.node_nm, chip.tech.adc_band)``).
    calibration : Calibration, "auto" or None
        "auto": the preset's calibration (:data:`CALIBRATIONS`) if ``chip.name`` has one.

    Returns
    -------
    CostReport
        ``totals``: ``energy_pj_per_inference``, ``area_mm2`` (whole chip), ``area_mm2_used``,
        ``latency_ns_per_inference`` (sum or slowest layer, as ``pipelined`` says),
        ``n_macs_per_inference``, ``tops``, ``tops_per_w``, ``tops_per_mm2`` (1 MAC = 2 ops at
        input_bits x weight_bits) and ``tops_1b``, ``tops_per_w_1b``, ``tops_per_mm2_1b``
        (ops x input_bits x weight_bits), ``power_mw``, ``energy_pj_per_inference_by_component``.
    """
    extra = Events()
    if hasattr(work, "sim_layers"):
        chip = work.chip if chip is None else chip
        works, extra, n_inf = works_from_sim(work)
    else:
        works = list(work)
        n_inf = 1
        if chip is None:
            raise TypeError("estimate(layer_works, chip): chip is required for layer works")
    if n_inferences is not None:
        n_inf = int(n_inferences)
    table = chip_table(chip) if table is None else table
    if isinstance(calibration, str):
        if calibration != "auto":
            raise ValueError(f"calibration = {calibration!r}; use 'auto', None or a Calibration")
        cal = calibration_for(chip)
    else:
        cal = NO_CALIBRATION if calibration is None else calibration
    rep = CostReport(chip=chip, pipelined=pipelined, n_inferences=n_inf, calibration=cal)
    per = 1.0 / max(n_inf, 1)

    # latency first: leakage needs it
    lat = {}
    for w in works:
        bl = []
        for i, b in enumerate(w.blocks):
            d = block_latency(b.layer, b.n_vectors * per, table, cal)
            d.update(layer=w.name, block=i, name=b.layer.name or w.name,
                     n_arrays=b.layer.n_arrays, n_vectors_per_inference=b.n_vectors * per)
            bl.append(d)
        rep.blocks += bl
        lat[w.name] = layer_latency_ns(bl)
    t_chip = chip_latency_ns(list(lat.values()), pipelined)

    unknown: set[str] = set()
    adcs = chip.array.adcs_per_array
    for w in works:
        ev = dict(_per_inference(w.events, n_inf).items())
        derived: dict[EventKey, float] = {}
        leak = sum(b["n_arrays"] * adcs * t_chip * b["adc_duty"]
                   for b in rep.blocks if b["layer"] == w.name)
        derived[EventKey("adc", "leak", chip.adc.bits)] = leak
        bus = ev.get(EventKey("buffer", "read_bit", 0), 0.0) + ev.get(
            EventKey("buffer", "write_bit", 0), 0.0)
        derived[EventKey("interconnect", "bus_bit", 0)] = bus
        if w.dequantize:
            derived[EventKey("digital", "dequant_multiply", 0)] = sum(
                b.n_vectors * per * b.layer.n_outputs for b in w.blocks)
        ev.update(derived)
        _price(rep, w.name, ev, chip, table, cal, unknown)
        energy = rep.energy_by_component(w.name)
        row = {"layer": w.name, "n_arrays": w.n_arrays,
               "n_macs_per_inference": ev.get(EventKey("layer", "mac", 0), 0.0),
               "energy_pj_per_inference": sum(energy.values())}
        row.update({f"energy_{c}_pj_per_inference": energy.get(c, 0.0) for c in COMPONENTS})
        row["latency_ns_per_inference"] = lat[w.name]
        row["area_um2"] = sum(occupied_area_um2(chip, w.n_arrays, table, cal).values())
        rep.layers.append(row)
    if len(extra):
        _price(rep, "(reprogramming)", dict(_per_inference(extra, n_inf).items()), chip, table,
               cal, unknown)

    for r in area_instances(chip, table, cal):
        n = r["n_per_scope"] * (chip.array.n_arrays if r["scope"] == "array"
                                else chip.array.n_tiles)
        rep.area.append(dict(component=r["component"], scope=r["scope"],
                             instance=r["instance"], n_instances=n,
                             area_um2_per_instance=r["area_um2_per_instance"],
                             area_um2=n * r["area_um2_per_instance"]))
    area_um2 = sum(chip_area_um2(chip, table, cal).values())
    used = sum(sum(occupied_area_um2(chip, w.n_arrays, table, cal).values()) for w in works)

    energy = sum(r["energy_pj_per_inference"] for r in rep.events)
    macs = sum(r["n_macs_per_inference"] for r in rep.layers)
    ops = OPS_PER_MAC * macs
    bits = chip.input_bits * chip.weight_bits
    tops = ops / (t_chip * 1e3) if t_chip > 0 else 0.0
    tops_per_w = ops / energy if energy > 0 else 0.0
    tops_mm2 = tops / (area_um2 * 1e-6) if area_um2 > 0 else 0.0
    rep.totals = {
        "energy_pj_per_inference": energy,
        "area_mm2": area_um2 * 1e-6,
        "area_mm2_used": used * 1e-6,
        "latency_ns_per_inference": t_chip,
        "pipelined": pipelined,
        "n_macs_per_inference": macs,
        "ops_per_inference": ops,
        "power_mw": energy / t_chip if t_chip > 0 else 0.0,
        "tops": tops,
        "tops_per_w": tops_per_w,
        "tops_per_mm2": tops_mm2,
        "tops_1b": tops * bits,
        "tops_per_w_1b": tops_per_w * bits,
        "tops_per_mm2_1b": tops_mm2 * bits,
        "ops_convention": (f"1 MAC = 2 ops at {chip.input_bits}b input x {chip.weight_bits}b "
                           f"weight; *_1b = ops x {bits} (1b-normalised)"),
        "node_nm": chip.tech.node_nm,
        "adc_band": chip.tech.adc_band,
        "calibration": cal.note,
        "energy_pj_per_inference_by_component": rep.energy_by_component(),
    }
    rep.notes = _notes(chip, cal, unknown)
    return rep


def _price(rep: CostReport, layer: str, ev: Mapping[EventKey, float], chip: ChipConfig,
           table: TechTable, cal: Calibration, unknown: set[str]) -> None:
    for key, n in sorted(ev.items()):
        e = event_energy_pj(key, chip, table, cal)
        if e is None:
            unknown.add(f"{key.component}.{key.action}")
            e = 0.0
        rep.events.append(dict(layer=layer, component=key.component, action=key.action,
                               bits=key.bits, n_events_per_inference=n,
                               energy_pj_per_event=e, energy_pj_per_inference=n * e))


def _notes(chip: ChipConfig, cal: Calibration, unknown: Iterable[str]) -> list[str]:
    notes = [
        "energy = sum(events x energy per event); area = sum(instances x area); "
        "see docs/cost-model.md",
        "leakage: only ADC leakage (20 % of dynamic power at the design rate, energy.md s.1) "
        "is charged, for the occupied arrays over the inference; energy.md gives no other "
        "leakage figure",
        f"calibration: {cal.note}",
    ]
    if chip.adc.bits > MAX_ADC_BITS:
        notes.append(f"ADC of {chip.adc.bits} b is beyond the tables' {MAX_ADC_BITS} b: costed "
                     f"as a {MAX_ADC_BITS}-b ADC (a lower bound)")
    for u in sorted(unknown):
        notes.append(f"not costed (no source in energy.md): {u}")
    return notes

"""Reports: DataFrames of what a deployed model did and cost; files (CSV, JSON).

Presentation only: numbers come from the run's events (and, for energy/area/latency, from
``cimsim.cost``). Every column name carries its unit (``_pj``, ``_um2``, ``_ns``, ``_pct``) or
says it is a count (``n_``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ._version import __version__
from .config import ChipConfig
from .events import Events

__all__ = ["Report"]


@dataclass
class Report:
    """What a simulated model did: per layer, per component, totals.

    Attributes
    ----------
    layers : DataFrame
        One row per mapped layer: shapes, arrays, utilization, counts per inference.
    components : DataFrame
        One row per (layer, component, action): event counts (and costs, where estimated).
    totals : dict
        Whole-model figures (per inference where it says so).
    digital : DataFrame
        Layers and products kept digital, with the reason.
    chip : ChipConfig
    """

    layers: pd.DataFrame
    components: pd.DataFrame
    totals: dict[str, Any]
    digital: pd.DataFrame
    chip: ChipConfig
    layer_events: dict[str, Events] = field(default_factory=dict)

    @classmethod
    def from_sim(cls, sim) -> Report:
        chip: ChipConfig = sim.chip
        n_inf = max(sim.n_inferences, 1)
        rows, comp_rows = [], []
        layer_events: dict[str, Events] = {}
        for name, layer in sim.sim_layers.items():
            ev = layer.events
            layer_events[name] = ev
            k = sum(c.shape[1] for c in layer.cores)
            n = sum(c.shape[0] for c in layer.cores)
            cells = sum(c.n_cells for c in layer.cores)
            arrays = sum(c.n_arrays for c in layer.cores)
            cap = arrays * chip.array.n_rows * chip.array.n_cols
            conv = sum(v for key, v in ev.items() if key.component == "adc")
            rows.append({
                "layer": name,
                "kind": layer.kind,
                "n_inputs": k,
                "n_outputs": n,
                "n_matrices": len(layer.cores),
                "input_signed": any(c.signed for c in layer.cores),
                "n_arrays": arrays,
                "cell_utilization_pct": 100.0 * cells / cap if cap else 0.0,
                "adc_bits": chip.adc.bits,
                "n_macs_per_inference": ev.get(("layer", "mac", 0)) / n_inf,
                "n_conversions_per_inference": conv / n_inf,
                "n_dac_pulses_per_inference": ev.get(("dac", "pulse", chip.dac_bits)) / n_inf,
            })
            for key, v in sorted(ev.items()):
                comp_rows.append({"layer": name, "component": key.component,
                                  "action": key.action, "bits": key.bits,
                                  "n_events_per_inference": v / n_inf})
        layers = pd.DataFrame(rows)
        components = pd.DataFrame(comp_rows, columns=["layer", "component", "action", "bits",
                                                      "n_events_per_inference"])
        digital = pd.DataFrame(sim.digital, columns=["layer", "type", "reason"])
        totals = {
            "n_inferences": sim.n_inferences,
            "n_arrays_used": sim.arrays_needed,
            "n_arrays_available": chip.array.n_arrays,
            "time_multiplexed": sim.arrays_needed > chip.array.n_arrays,
            "n_macs_per_inference": float(layers["n_macs_per_inference"].sum()) if rows else 0.0,
            "n_conversions_per_inference":
                float(layers["n_conversions_per_inference"].sum()) if rows else 0.0,
        }
        return cls(layers, components, totals, digital, chip, layer_events)

    def to_frame(self) -> pd.DataFrame:
        """The per-layer table."""
        return self.layers.copy()

    def to_dict(self) -> dict[str, Any]:
        return {
            "cimsim_version": __version__,
            "chip": self.chip.to_dict(),
            "totals": self.totals,
            "layers": self.layers.to_dict(orient="records"),
            "components": self.components.to_dict(orient="records"),
            "digital": self.digital.to_dict(orient="records"),
        }

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``layers.csv``, ``components.csv``, ``digital.csv`` and ``report.json``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, frame in (("layers", self.layers), ("components", self.components),
                            ("digital", self.digital)):
            p = out / f"{name}.csv"
            frame.to_csv(p, index=False)
            paths.append(p)
        p = out / "report.json"
        p.write_text(json.dumps(self.to_dict(), indent=2, default=_json_default))
        paths.append(p)
        return paths


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot serialise {type(obj).__name__}")

"""Every event key a run can emit is registered, and every registered key is priced.

Walks the keys the engine (``cimsim.matmul``), the mapping (``MatmulCore.run``'s merges and
dequantization) and deploy (time-multiplexing) emit on chips that exercise every path, and
holds the cost model's price table to the registry (issue 9).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.cost import estimate
from cimsim.cost.energy import PRICES, event_energy_pj, stored_bits_per_cell
from cimsim.cost.tables import tech_table
from cimsim.events import DERIVED, REGISTRY, Action, Component, EventKey, Events, event_key

PRESETS = cimsim.list_presets()


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 5))


def _every_path(name: str) -> cimsim.ChipConfig:
    """Preset ``name`` with every event path on: per-column weight scales with several row
    tiles (16 rows: the conv's K = 18 and the linear's K = 64 span 2 and 4 row tiles), offset
    encoding with digital off-current compensation (digital corrections), and too few arrays
    with time-multiplexing allowed (reprogramming, cell writes)."""
    chip = cimsim.load_chip(name)
    return chip.replace(
        weight_encoding="offset",
        quant=chip.quant.replace(weight_granularity="column"),
        array=chip.array.replace(n_rows=16, n_cols=32, rows_per_conversion=None, n_tiles=1,
                                 arrays_per_tile=2, allow_time_multiplexing=True),
        device=chip.device.replace(off_current_compensation="digital"),
        dac=chip.dac.replace(shift_unsigned_inputs=True),  # A-shift: the Linear's post-ReLU input
    )


def _deployed(chip: cimsim.ChipConfig):
    x = torch.randn(6, 2, 4, 4)
    sim = cimsim.deploy(_model(), chip, x)
    sim(x[:3])
    return sim


def _emitted(work) -> set[EventKey]:
    keys = {k for w in work.layers for k in w.events}
    return keys | set(work.other_events)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_registered_pair_is_priced_on_every_preset(preset):
    """(a) a finite, non-negative price for every (component, action) of the registry."""
    chip = cimsim.load_chip(preset)
    assert set(PRICES) == set(REGISTRY)
    acc = chip.accumulator_bits
    bits_of = {Component.ADC: chip.adc.bits, Component.DAC: chip.dac_bits,
               Component.CELL: chip.device.bits_per_cell, Component.SHIFT_ADD: acc,
               Component.ACCUMULATOR: acc, Component.DIGITAL: acc}  # as a run emits them
    for component, action in REGISTRY:
        e = event_energy_pj((component, action, bits_of.get(component, 0)), chip)
        assert isinstance(e, float) and math.isfinite(e) and e >= 0, (component, action)


@pytest.fixture(scope="module")
def walked() -> dict[str, tuple]:
    """Deployed tiny models: every preset as it is, and the RRAM and SRAM presets with every
    path on."""
    out = {name: _deployed(cimsim.load_chip(name)) for name in PRESETS}
    for name in ("rram-22nm", "sram-65nm"):
        out[f"{name}+every-path"] = _deployed(_every_path(name))
    pcm = cimsim.load_chip("pcm-22nm")  # per-column drift compensation (docs/drift.md)
    out["pcm-22nm+column"] = _deployed(pcm.replace(
        device=pcm.device.replace(drift_compensation="column")))
    rram = cimsim.load_chip("rram-22nm")  # balanced-ternary slices: weights 3^s (multiplies)
    out["rram-22nm+ternary"] = _deployed(rram.replace(
        weight_encoding="ternary", device=rram.device.replace(bits_per_cell=1)))
    return {name: (sim, sim.work()) for name, sim in out.items()}


def test_every_emitted_key_is_registered_and_costed(walked):
    """(b) the keys of the engine, mapping and deploy are registered enum keys; together with
    the pairs the estimator derives they are the whole registry; nothing is left uncosted."""
    seen: set[tuple[Component, Action]] = set()
    for name, (_sim, work) in walked.items():
        assert work.chip.array.n_arrays < work.n_arrays_needed or "every-path" not in name
        for key in _emitted(work):
            assert isinstance(key.component, Component) and isinstance(key.action, Action)
            assert (key.component, key.action) in REGISTRY, (name, key)
            assert (key.component, key.action) not in DERIVED, (name, key)  # cost derives them
            seen.add((key.component, key.action))
        cost = estimate(work)
        assert not [n for n in cost.notes if "not costed" in n], name
        assert all((Component(r["component"]), Action(r["action"])) in REGISTRY
                   for r in cost.events)
        assert math.isfinite(cost.totals["energy_pj_per_inference"])
    # one cimsim.matmul call: the engine's keys alone
    chip = cimsim.load_chip("rram-22nm")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 40))
    _, ev = cimsim.matmul(x, rng.integers(-127, 128, (5, 40)), chip, calibration=x)
    assert all((k.component, k.action) in REGISTRY for k in ev)
    seen |= {(k.component, k.action) for k in ev}
    # analog slice read-out: the weighting network's keys
    ideal = cimsim.load_chip("ideal")
    ideal = ideal.replace(array=ideal.array.replace(slice_readout="analog"))
    _, ev = cimsim.matmul(x, rng.integers(-127, 128, (5, 40)), ideal)
    assert all((k.component, k.action) in REGISTRY for k in ev)
    seen |= {(k.component, k.action) for k in ev}
    # block floating-point inputs: the pre-alignment and normalisation keys
    fp = ideal.replace(quant=ideal.quant.replace(act_format="block_fp"))
    _, ev = cimsim.matmul(x, rng.integers(-127, 128, (5, 40)), fp)
    assert all((k.component, k.action) in REGISTRY for k in ev)
    seen |= {(k.component, k.action) for k in ev}
    assert seen | DERIVED == set(REGISTRY), set(REGISTRY) - seen - DERIVED


def test_column_granularity_charges_dequant_multiplies_issue9(walked):
    """(c) a column-granularity deploy emitted ``('dequant', 'multiply', 0)``, which the cost
    model did not know (0 pJ and a note). The run now counts one multiply per output per
    dequantized row-tile part, and the cost model prices them (and derives none itself)."""
    sim, work = walked["rram-22nm+every-path"]
    dq = event_key(Component.DIGITAL, Action.DEQUANT_MULTIPLY)
    cost = estimate(work)
    for w in work.layers:
        parts = len(w.blocks)
        assert parts > 1  # several row tiles, each its own scales
        n_vectors = w.blocks[0].n_vectors
        assert w.events[dq] == n_vectors * w.n_outputs * parts
        rows = [r for r in cost.events if r["layer"] == w.name
                and (r["component"], r["action"]) == ("digital", "dequant_multiply")]
        assert len(rows) == 1
        assert rows[0]["n_events_per_inference"] == pytest.approx(
            w.events[dq] / work.n_inferences)
        assert rows[0]["energy_pj_per_inference"] > 0
    assert not [r for r in cost.events if r["component"] == "dequant"]
    # one part (per-channel scales): one multiply per output
    plain = walked["rram-22nm"][1]
    for w in plain.layers:
        assert len(w.blocks) == 1
        assert w.events[dq] == w.blocks[0].n_vectors * w.n_outputs


def test_rram_cell_write_is_priced_per_stored_bit(walked):
    """A time-multiplexed RRAM chip pays its reprogramming: cells x bits x 3 pJ."""
    sim, work = walked["rram-22nm+every-path"]
    chip = work.chip
    key = event_key(Component.CELL, Action.WRITE, chip.device.bits_per_cell)
    assert work.other_events[key] > 0
    e = event_energy_pj(key, chip)
    assert e == pytest.approx(stored_bits_per_cell(chip) * 3.0)
    assert tech_table(22.0).rram_write_energy_pj_per_bit == tech_table(7.0).\
        rram_write_energy_pj_per_bit == 3.0  # device physics: not node-scaled
    cost = estimate(work)
    (row,) = [r for r in cost.events if (r["component"], r["action"]) == ("cell", "write")]
    assert row["layer"] == "(reprogramming)" and row["energy_pj_per_inference"] > 0


def test_unregistered_keys_are_refused_naming_the_allowed_pairs():
    allowed = "allowed: layer.mac, array.activation"
    with pytest.raises(ValueError, match=f"not registered; {allowed}"):
        event_key("dequant", "multiply")
    with pytest.raises(ValueError, match="digital.dequant_multiply"):
        Events({("dequant", "multiply", 0): 1.0})
    with pytest.raises(ValueError, match=allowed):
        event_key(Component.DIGITAL, Action.MAC)  # both enums, not a registered pair
    chip = cimsim.load_chip("rram-22nm")
    with pytest.raises(ValueError, match=allowed):
        event_energy_pj(("dequant", "multiply", 0), chip)
    # raw string keys are normalised to the enum key wherever Events meets them
    ev = Events({EventKey("adc", "convert", 6): 2.0})  # type: ignore[arg-type]
    assert ev[event_key(Component.ADC, Action.CONVERT, 6)] == 2.0
    assert ev.get(("adc", "convert", 6)) == 2.0


def test_estimate_takes_work_values_only(walked):
    sim, work = walked["rram-22nm"]
    with pytest.raises(TypeError, match=r"sim.work\(\)"):
        estimate(sim)
    with pytest.raises(TypeError, match="chip is required"):
        estimate(list(work.layers))
    a = estimate(work)
    b = estimate(list(work.layers), work.chip, n_inferences=work.n_inferences)
    assert a.totals["energy_pj_per_inference"] == b.totals["energy_pj_per_inference"]
    for bad in (0, -3, 2.5, True):  # 0 and -3 were read as 1 and stored as given
        with pytest.raises(ValueError, match=r"n_inferences = .* allowed: an integer >= 1"):
            estimate(work, n_inferences=bad)


def test_cost_components_are_the_energy_spending_event_components():
    from cimsim.cost import COMPONENTS
    from cimsim.events import Component

    assert set(COMPONENTS) == {c.value for c in Component} - {"layer", "array"}

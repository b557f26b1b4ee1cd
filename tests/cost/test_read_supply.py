"""A resistive read's energy is the charge its cells conduct times the supply it is drawn from
(``tech.read_supply_v``; docs/cost-model.md, ``cell/v1g_lsb``)."""

from __future__ import annotations

import re
import tomllib

import numpy as np
import pytest

import cimsim
from cimsim.arrays.drift import at_time, calibration_read_events
from cimsim.config import ChipConfig
from cimsim.cost import component_models
from cimsim.cost.models import read_supply_v
from cimsim.errors import ConfigError
from cimsim.events import Action, Component, EventKey

A, C = Action, Component


def _rram(**tech) -> ChipConfig:
    chip = cimsim.load_chip("rram-22nm")
    return chip.replace(tech=chip.tech.replace(cost_model="physical", **tech))


def test_a_one_bit_read_known_answer_from_the_run():
    """One driven row of a 1-b input on 2 cells at 10 uS (g_max) and 0.55 V for 10 ns: 2 x
    55 fC of charge, drawn from the 0.8-V supply, 88 fJ; from a rail at the read voltage,
    2 x 0.55^2 x 10 x 10 = 60.5 fJ, the cells' own dissipation."""
    def cell_pj(**tech) -> float:
        chip = _rram(**tech)
        chip = chip.replace(input_bits=1, weight_bits=1, weight_encoding="binary",
                            dac=chip.dac.replace(bits=1),
                            device=chip.device.replace(bits_per_cell=1, variation="none",
                                                       variation_sigma=0.0,
                                                       on_off_ratio=float("inf")),
                            noise=chip.noise.replace(thermal_sigma_lsb=0.0),
                            adc=chip.adc.replace(range_policy="full_scale"))
        w, x = np.array([[1]]), np.array([[1]])
        _, ev = cimsim.matmul(x, w, chip, seed=0)
        block = cimsim.arrays.program(w, chip)
        work = cimsim.cost.layer_work(ev, block)
        return cimsim.cost.estimate([work], chip).energy_by_component()["cell"]

    assert _rram().tech.v_read_v == 0.55 and _rram().device.g_max_us == 10.0
    # +-1 binary weights: one of the pair's two cells conducts at g_max, the other is off
    charge_fc = 0.55 * 10.0 * 10.0  # V * uS * ns = fC
    assert cell_pj(vdd_v=0.8) == pytest.approx(0.8 * charge_fc * 1e-3)
    assert cell_pj(vdd_v=0.8, read_supply_v=0.55) == pytest.approx(0.55 * charge_fc * 1e-3)
    assert cell_pj(vdd_v=0.8, read_supply_v=1.8) == pytest.approx(1.8 * charge_fc * 1e-3)


def test_the_supply_is_never_below_the_read_voltage():
    assert read_supply_v(_rram(vdd_v=0.8)) == 0.8
    assert read_supply_v(_rram(vdd_v=0.5)) == 0.55  # a line is not raised above its supply
    assert read_supply_v(_rram(vdd_v=0.5, read_supply_v=1.2)) == 1.2
    with pytest.raises(ConfigError, match=r"TechConfig\.read_supply_v = 0\.3 .*v_read_v"):
        _rram(read_supply_v=0.3)
    for bad in (0.0, -1.0, 6.0, float("nan")):
        with pytest.raises(ConfigError, match="read_supply_v"):
            _rram(read_supply_v=bad)


def test_read_supply_toml_round_trip_and_the_tables_model_warns():
    chip = _rram(read_supply_v=1.2)
    text = chip.to_toml()
    assert "read_supply_v = 1.2" in text
    assert ChipConfig.from_dict(tomllib.loads(text)) == chip
    data = tomllib.loads(text)
    data["tech"]["cost_model"] = "tables"
    with pytest.warns(UserWarning, match="read_supply_v"):
        ChipConfig.from_dict(data)


def test_the_tables_model_keeps_the_cells_dissipation():
    """The calibrated presets (tables model) are unchanged: V^2 G t per unit of x^2 G, no
    supply."""
    chip = cimsim.load_chip("rram-22nm")
    for supply in (None, 1.5):
        cell = component_models(chip.replace(tech=chip.tech.replace(read_supply_v=supply)))
        v_lsb = 0.55 / (2**chip.dac_bits - 1)
        assert cell[C.CELL].energy_pj(A.V2G_LSB) == pytest.approx(
            v_lsb**2 * chip.device.g_lsb_us * chip.tech.t_read_ns * 1e-3)
        assert cell[C.CELL].energy_pj(A.V1G_LSB) == 0.0


def test_a_drift_calibration_read_is_priced_under_every_drive():
    """The all-ones calibration read of drift compensation counts |x| G beside x^2 G (equal
    for x = 1): the physical model prices a read on |x| G, so without it the calibration's
    cell reads cost nothing."""
    pcm = cimsim.load_chip("pcm-22nm")
    chip = pcm.replace(device=pcm.device.replace(drift_compensation="column"),
                       tech=pcm.tech.replace(cost_model="physical"))
    w = np.random.default_rng(0).integers(-7, 8, size=(4, 16))
    layer = cimsim.arrays.program(w, chip, np.random.default_rng(0))
    assert layer.aging is not None  # a drifting device: program() attaches its aging
    aged = at_time(layer, 3600.0)
    ev = calibration_read_events(aged)
    v2g, v1g = EventKey(C.CELL, A.V2G_LSB, 0), EventKey(C.CELL, A.V1G_LSB, 0)
    assert ev[v1g] == ev[v2g] == pytest.approx(float(aged.cell_rowsum.sum()))
    assert ev[v1g] > 0
    priced = component_models(chip)[C.CELL].energy_pj(A.V1G_LSB) * ev[v1g]
    assert priced > 0


@pytest.mark.parametrize("cell,change,said", [
    ("ideal", dict(cell_kind="sram_8t"), "absent for a CMOS bit-cell (sram_8t)"),
    ("sram", {}, "absent for a CMOS bit-cell (device.cell = 'sram')"),
    ("rram", dict(compute_domain="charge"), "absent for compute_domain = 'charge'"),
])
def test_read_supply_where_no_read_current_is_drawn_is_refused(cell, change, said):
    """Accepted silently and changing no figure (as devices_per_cell and retention_ns are
    refused where nothing reads them)."""
    base = _rram()
    base = base.replace(device=base.device.replace(
        cell=cell, bits_per_cell=1 if cell == "sram" else base.device.bits_per_cell))

    def chip(**tech):
        return base.replace(tech=base.tech.replace(**change, **tech))

    with pytest.raises(ConfigError, match=r"TechConfig\.read_supply_v = 0\.9 .*"
                       + re.escape(said)):
        chip(read_supply_v=0.9)
    chip()  # absent: nothing to refuse


def test_an_unstated_read_supply_is_named_by_the_datasheet(tmp_path):
    """A physical resistive description that leaves it out gets vdd_v (the cells' read is most
    of such a macro's energy): `unstated_inputs` names it with the value used; stated, or on
    an SRAM macro, nothing."""
    from cimsim.config import unstated_inputs

    said = unstated_inputs("published/hermes-jssc22")
    assert any(s.startswith("tech.read_supply_v = 0.8 (") for s in said), said
    assert not any("read_supply_v" in s for s in unstated_inputs(
        "published/hermes-jssc22", overrides=["tech.read_supply_v=0.2"]))
    assert not any("read_supply_v" in s for s in unstated_inputs("published/sinangil-jssc21"))


def test_datasheet_says_an_unpriced_field_once(capsys):
    """`cimsim datasheet rram-22nm --set tech.read_supply_v=1.8` (the tables model) warned
    twice: the chip's load and unstated_inputs' own load of the same description."""
    import warnings

    from cimsim.cli import main

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main(["datasheet", "rram-22nm", "--set", "tech.read_supply_v=1.8"]) == 0
    said = [w for w in seen if "read by the physical cost model only" in str(w.message)]
    assert len(said) == 1 and "read_supply_v" in str(said[0].message)

"""The weighting network of analog slice read-out (``array.slice_readout = 'analog'``), priced
by ``cimsim.cost.models.WeightingModel`` (issue 13): current mirrors in the current domain,
binary-weighted capacitors in the charge domain. Known answers by hand, monotonic in the weight
bits, nothing for the digital read-out (docs/cost-model.md §"Analog slice read-out")."""

from __future__ import annotations

import numpy as np
import pytest

import cimsim
from cimsim.arrays.program import program
from cimsim.cost import datasheet, estimate, layer_work
from cimsim.cost.area import area_instances
from cimsim.cost.models import CellModel, WeightingModel, unit_transistor_area_um2
from cimsim.events import Action, Component, EventKey

_W = Component.WEIGHTING


def _chip(domain="current", readout="analog", weight_bits=4):
    """A physical-model chip: 4-b two's complement on 1-b cells (3 magnitude columns of
    significance 1, 2, 4 and a sign column of -8 per weight), one 4-b DAC plane."""
    base = cimsim.load_chip("ideal")
    return base.replace(
        weight_bits=weight_bits, weight_encoding="twos_complement", input_bits=4,
        dac=base.dac.replace(bits=4),
        device=base.device.replace(bits_per_cell=1, g_max_us=2.0),
        array=base.array.replace(n_rows=16, n_cols=16, cols_per_adc=4, slice_readout=readout),
        tech=base.tech.replace(cost_model="physical", compute_domain=domain, vdd_v=0.9,
                               v_read_v=0.2, t_read_ns=10.0, cap_unit_ff=1.5,
                               cap_density_ff_per_um2=10.0, node_nm=22.0))


def _events(chip, x, w):
    _, ev = cimsim.matmul(x, w, chip, seed=0)
    return ev


def _operands(rng, m=3, k=16, n=4):
    return rng.integers(0, 16, size=(m, k)), rng.integers(-8, 8, size=(n, k))


def test_events_by_hand():
    chip = _chip()
    x, w = _operands(np.random.default_rng(1))
    ev = _events(chip, x, w)
    m, n = x.shape[0], w.shape[0]
    # one conversion per output and vector (one plane, one row group); its four columns at
    # ratios 1, 2, 4, 8 = 2^0..2^3
    for b in range(4):
        assert ev[EventKey(_W, Action.SLICE_COLUMN, b)] == m * n
    # the mirrors copy r_s x G of every column: Σ_s r_s d_s of a two's-complement weight is its
    # 4-b unsigned code (w & 15), ideal cells (G = the digit, no off-current)
    assert ev[EventKey(_W, Action.MIRROR_LSB, 0)] == pytest.approx(
        float(np.sum(x @ (w & 15).T)), rel=1e-12)


def test_current_domain_energy_and_area_by_hand():
    chip = _chip("current")  # 'ideal' cells: cimsim's SRAM 8T bit-cell
    model = WeightingModel(chip)
    # the mirrors copy the SRAM column's bit-line charge: the bit-cell read NeuroSim prices at
    # 22 nm, 1.12 fJ at 0.8 V, x (0.9 / 0.8)^2 = 1.4175 fJ drawn from V_dd = 0.9 V is
    # C dV = 1.575 fC for a full-scale input on a stored one; per DAC-LSB 1.575 / 15 fC, copied
    # from V_dd over r_max = 8 (the mirrors attenuate to the sign column, the most significant)
    assert model.max_ratio() == 8.0
    assert model.energy_pj(Action.MIRROR_LSB) == pytest.approx(
        0.9 * (1.12 * (0.9 / 0.8) ** 2 / 0.9) / 15 * 1e-3 / 8)
    assert model.energy_pj(Action.SLICE_COLUMN, 3) == 0.0  # a mirror has no switched load
    # one unit transistor: the 22-nm SRAM cell's 280 F^2 over its 8 transistors
    assert model.area_um2() == pytest.approx(280 / 8 * 0.022**2)
    assert unit_transistor_area_um2(22.0) == model.area_um2()
    # 16 columns = 4 weights, each 1 + 2 + 4 + 8 = 15 units
    assert model.units_per_array() == 4 * 15
    row = next(r for r in area_instances(chip) if r["component"] == "weighting")
    assert row["n_per_scope"] == 60 and row["instance"].endswith("mirror transistor")


@pytest.mark.parametrize("kind", ["rram_1t1r", "pcm", "fefet_1t"])
def test_resistive_mirrors_copy_the_read_pulse_charge_by_hand(kind):
    """A resistive cell conducts V_read G for its read pulse: V_dd x V_read x G_lsb x t_read /
    (2^4 - 1) = 0.9 V x 0.2 V x 2 uS x 10 ns / 15 = 0.24 fJ per DAC-LSB x cell-LSB, over
    r_max = 8."""
    chip = _chip("current")
    chip = chip.replace(tech=chip.tech.replace(cell_kind=kind))
    assert WeightingModel(chip).energy_pj(Action.MIRROR_LSB) == pytest.approx(
        0.9 * 0.2 * 2.0 * 10 / 15 * 1e-3 / 8)


@pytest.mark.parametrize("kind", ["sram_6t", "sram_8t", "sram_10t", "edram_2t", "edram_3t"])
def test_bitline_mirrors_copy_no_more_than_the_cells_read(kind):
    """SRAM and gain-cell columns discharge a bit line: the charge a mirror copies is the one
    the cell model prices (its read energy over V_dd), whatever the window. Fails on a mirror
    priced V_dd V_read G t over the window (48x the cells on aimc-cicc21's 44-ns cycle)."""
    chip = _chip("current")
    chip = chip.replace(tech=chip.tech.replace(cell_kind=kind))
    mirror, cell = WeightingModel(chip), CellModel(chip)
    # one full-scale input (15 DAC-LSB) on a stored one, copied at ratio r_max / r_max = 1:
    # V_dd x E_read / V_dd = the cell's own priced read
    full = mirror.energy_pj(Action.MIRROR_LSB) * 15 * mirror.max_ratio()
    assert full == pytest.approx(cell.energy_pj(Action.READ, 1), rel=1e-12)
    for t in (1.0, 44.444, 1000.0):  # the window is no input of a bit-line discharge
        longer = chip.replace(tech=chip.tech.replace(t_read_ns=t))
        assert WeightingModel(longer).energy_pj(Action.MIRROR_LSB) == pytest.approx(
            mirror.energy_pj(Action.MIRROR_LSB), rel=1e-12)


@pytest.mark.parametrize("kind", ["rram_1t1r", "sram_8t"])
@pytest.mark.parametrize("drive", ["amplitude", "pulse_width"])
def test_one_read_charge_prices_cell_and_mirror(kind, drive):
    """One source of truth: the mirrors copy CellModel.read_charge_fc at V_dd; a resistive
    cell's read draws the same charge from the same supply, V_dd Q per unit of |x| G under
    either drive."""
    chip = _chip("current")
    chip = chip.replace(tech=chip.tech.replace(cell_kind=kind, input_drive=drive))
    cell, mirror = CellModel(chip), WeightingModel(chip)
    q = cell.read_charge_fc()
    assert mirror.energy_pj(Action.MIRROR_LSB) == pytest.approx(0.9 * q * 1e-3 / 8, rel=1e-12)
    if kind == "rram_1t1r":
        assert q == pytest.approx(0.2 * 2.0 * 10 / 15)
        assert cell.energy_pj(Action.V1G_LSB) == pytest.approx(0.9 * q * 1e-3, rel=1e-12)
        assert cell.energy_pj(Action.V2G_LSB) == 0.0
    charge = chip.replace(tech=chip.tech.replace(compute_domain="charge"))
    assert CellModel(charge).read_charge_fc() == 0.0


def test_charge_domain_energy_and_area_by_hand():
    chip = _chip("charge")
    model = WeightingModel(chip)
    # 2^3 unit capacitors of 1.5 fF switched at 0.9 V: 8 x 1.5 x 0.81 fJ
    assert model.energy_pj(Action.SLICE_COLUMN, 3) == pytest.approx(8 * 1.5 * 0.81e-3)
    assert model.energy_pj(Action.MIRROR_LSB) == 0.0
    assert model.area_um2() == pytest.approx(1.5 / 10.0)
    # density 0: the capacitors sit above the cells, no area
    flat = chip.replace(tech=chip.tech.replace(cap_density_ff_per_um2=0.0))
    assert WeightingModel(flat).area_um2() == 0.0


def test_charge_domain_unit_capacitor_area_at_a_low_density():
    """A unit capacitor takes ``cap_unit_ff / cap_density_ff_per_um2`` of area for every
    positive density, a thin-oxide 0.5 fF/um^2 included: 1.5 fF / 0.5 = 3 um^2 (only the
    density 0, capacitors above the cells, is free). Guards the density test's bound."""
    chip = _chip("charge")
    low = chip.replace(tech=chip.tech.replace(cap_density_ff_per_um2=0.5))
    assert WeightingModel(low).area_um2() == pytest.approx(1.5 / 0.5)


@pytest.mark.parametrize("domain", ["current", "charge"])
def test_estimate_prices_the_network(domain):
    chip = _chip(domain)
    x, w = _operands(np.random.default_rng(2))
    ev = _events(chip, x, w)
    rep = estimate([layer_work(ev, program(w, chip))], chip)
    model = WeightingModel(chip)
    want = sum(n * model.energy_pj(k.action, k.bits) for k, n in ev.items() if k.component is _W)
    assert want > 0
    assert rep.energy_by_component()["weighting"] == pytest.approx(want, rel=1e-12)
    assert rep.area_by_component()["weighting"] == pytest.approx(
        chip.array.n_arrays * 60 * model.area_um2())


@pytest.mark.parametrize("domain", ["current", "charge"])
def test_network_grows_with_the_weight_bits(domain):
    energy, area, cells = [], [], []
    for b in (2, 3, 4, 6):
        sheet = datasheet(_chip(domain, weight_bits=b))
        energy.append(sheet["energy_pj_by_component"]["weighting"] / sheet["ops"])
        cells.append(sheet["energy_pj_by_component"]["cell"] / sheet["ops"])
        area.append(sheet["area_um2_by_component"]["weighting"])
    assert all(a < b for a, b in zip(area, area[1:], strict=False))
    if domain == "charge":
        assert all(a < b for a, b in zip(energy, energy[1:], strict=False))
    else:
        # attenuating mirrors copy at most the charge of the columns once over (binary ratios
        # over r_max sum below 2): the SRAM bit lines' charge at V_dd, the cells' own read
        # energy, so bounded by twice the cells' read energy, whatever the bits
        assert all(0 < e <= 2 * c for e, c in zip(energy, cells, strict=True))


def test_digital_readout_has_no_network():
    chip = _chip(readout="digital")
    x, w = _operands(np.random.default_rng(3))
    ev = _events(chip, x, w)
    assert not any(k.component is _W for k in ev)
    assert WeightingModel(chip).units_per_array() == 0
    assert not any(r["component"] == "weighting" for r in area_instances(chip))


def test_one_column_weights_have_no_network():
    """Deaville's published point: 1-b weights, one column each, read 'analog': no network."""
    chip = cimsim.load_chip("cimsim/presets/published/deaville-vlsi22.toml")
    assert WeightingModel(chip).units_per_array() == 0
    x = np.ones((2, 8), dtype=np.int64)
    w = np.where(np.arange(24).reshape(3, 8) % 2 == 0, 1, -1)
    assert not any(k.component is _W for k in _events(chip, x, w))


def test_tables_mirrors_copy_the_tables_cell_read():
    """The tables model prices a resistive read on one device per cell (cell.v2g_lsb reads no
    devices_per_cell): its mirrors copy that same charge, V_read G t / (2^b - 1), not the
    physical model's multi-device one. Fails where the tables' mirrors count the devices."""
    chip = _chip("current")
    chip = chip.replace(device=chip.device.replace(cell="rram"),
                        tech=chip.tech.replace(devices_per_cell=2))
    tables = chip.replace(tech=chip.tech.replace(cost_model="tables"))
    g = chip.device.g_lsb_us
    one = 0.9 * 0.2 * g * 10 / 15 * 1e-3 / 8
    assert WeightingModel(chip).energy_pj(Action.MIRROR_LSB) == pytest.approx(2 * one)
    assert WeightingModel(tables).energy_pj(Action.MIRROR_LSB) == pytest.approx(one)
    # the tables' SRAM cell (an 'ideal' device, whatever tech.cell_kind says): a bit-line read
    sram = _chip("current").replace(tech=chip.tech.replace(cost_model="tables",
                                                          cell_kind="rram_1t1r"))
    assert WeightingModel(sram).energy_pj(Action.MIRROR_LSB) == pytest.approx(
        0.9 * (1.12 * (0.9 / 0.8) ** 2 / 0.9) / 15 * 1e-3 / 8)


def test_tables_model_prices_it_the_same_way():
    chip = _chip()
    tables = chip.replace(tech=chip.tech.replace(cost_model="tables"))
    for action, bits in ((Action.MIRROR_LSB, 0), (Action.SLICE_COLUMN, 2)):
        assert WeightingModel(tables).energy_pj(action, bits) == (
            WeightingModel(chip).energy_pj(action, bits))
    assert WeightingModel(tables).area_um2() == WeightingModel(chip).area_um2() > 0

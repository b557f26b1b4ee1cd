"""Energy estimator: a known answer computed by hand from the table values; data dependence."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cimsim
from cimsim.arrays.program import program
from cimsim.config import (
    ADCConfig,
    ArrayConfig,
    ChipConfig,
    DACConfig,
    DeviceConfig,
    TechConfig,
)
from cimsim.cost import Calibration, estimate, layer_work
from cimsim.cost.energy import event_energy_pj, supply_factor
from cimsim.cost.tables import (
    adc_area_um2,
    adc_energy_pj,
    buffer_energy_pj_per_bit,
    dac_area_um2,
    dac_energy_pj,
    energy_scale,
    tech_table,
)


def tiny_chip(**tech) -> ChipConfig:
    """4 x 8 RRAM arrays, 1 b/cell, 2-b weights (differential, analog pairs), 2-b inputs."""
    t = dict(node_nm=22.0, vdd_v=0.8, v_read_v=0.5, t_read_ns=10.0, clock_mhz=1000.0)
    t.update(tech)
    return ChipConfig(
        name="kat", weight_bits=2, input_bits=2, weight_encoding="differential",
        differential_readout="analog", accumulator_bits=16,
        array=ArrayConfig(n_rows=4, n_cols=8, cols_per_adc=2, n_tiles=1, arrays_per_tile=2),
        device=DeviceConfig(cell="rram", bits_per_cell=1, g_max_us=10.0,
                            on_off_ratio=math.inf),
        dac=DACConfig(bits=1), adc=ADCConfig(kind="sar", bits=4, range_policy="full_scale"),
        tech=TechConfig(**t),
    )


X = np.array([[3, 0, 1, 2], [0, 0, 2, 3], [1, 1, 0, 0]])  # (M=3, K=4), 2-b unsigned
W = np.array([[1, -1, 0, 1], [0, 1, 1, -1], [-1, 0, 0, 0], [1, 1, 1, 1]])  # (N=4, K=4)


def _bits(x: np.ndarray, p: int) -> np.ndarray:
    return (x >> p) & 1


def test_known_answer_energy_area_latency():
    chip = tiny_chip()
    y, ev = cimsim.matmul(X, W, chip)
    assert np.array_equal(y, X @ W.T)
    block = program(W, chip)
    rep = estimate([layer_work(ev, block)], chip)
    t = tech_table(22.0)

    # ---- counts, by hand: M=3 vectors, P=2 planes, 1 row group, 4 conversions (pairs)
    m, planes, convs = 3, 2, 4
    active = sum(int(np.count_nonzero(_bits(X, p))) for p in range(planes))  # nonzero drives
    rowsum = np.abs(W).sum(axis=0)  # sum_j G[k, j] in cell-LSB (one on cell per |w| = 1)
    v2g = float(sum((_bits(X, p) * rowsum[None, :]).sum() for p in range(planes)))
    assert ev[("adc", "convert", 4)] == m * planes * convs
    assert ev[("dac", "pulse", 1)] == active
    assert ev[("cell", "v2g_lsb", 0)] == pytest.approx(v2g)

    # ---- energy, by hand from the table values (vdd = 0.8 V: no supply scaling)
    e_conv = t.sar_adc_energy_pj_by_bits[3]
    t_conv = 5.0  # SAR (b + 1) ns
    t_step = max(10.0, 1 * t_conv)  # 4 conversions over 4 ADCs: one each per step
    latency = m * planes * 1 * t_step + 1.0  # + one 1-ns clock cycle (one row tile)
    leak = 4 * latency * (t_conv / t_step) * 0.2 * e_conv / t_conv
    pitch = math.sqrt(48 * 0.022**2)
    e_pulse = t.dac_energy_pj_per_pulse * 10.0 / 3.0 + 0.2 * 8 * pitch * 0.5**2 * 1e-3
    e_cell = v2g * 0.5**2 * 10e-6 * 10e-9 * 1e12  # V^2 G t in pJ
    e_sa = m * planes * convs * 16 * t.shift_add_energy_pj_per_bit
    e_acc = m * 4 * 16 * t.accumulator_add_energy_pj_per_bit
    bits_in, bits_out = m * 4 * 2, m * 4 * 16
    e_buf = (bits_in + bits_out) * buffer_energy_pj_per_bit(64.0, t)
    e_bus = (bits_in + bits_out) * t.bus_energy_pj_per_bit
    want = {"adc": m * planes * convs * e_conv + leak, "dac": active * e_pulse, "cell": e_cell,
            "shift_add": e_sa, "accumulator": e_acc, "buffer": e_buf, "interconnect": e_bus,
            "digital": 0.0}
    got = rep.energy_by_component()
    for comp, value in want.items():
        assert got[comp] == pytest.approx(value, rel=1e-9), comp
    total = sum(want.values())
    assert rep.totals["energy_pj_per_inference"] == pytest.approx(total, rel=1e-9)
    assert rep.totals["latency_ns_per_inference"] == pytest.approx(latency)

    # ---- area: 2 arrays + 1 tile
    per_array = (32 * 48 * 0.022**2 + 4 * adc_area_um2("sar", 4, t) + 4 * dac_area_um2(1, t)
                 + 4 * 16 * t.shift_add_area_um2_per_bit)
    per_tile = (4 * 16 * t.accumulator_area_um2_per_bit + 64 * 8192 * t.buffer_area_um2_per_bit
                + t.router_area_um2 / 4 + 256 * t.bus_area_um2_per_bit * 2 / 8)
    area_mm2 = (2 * per_array + per_tile) * 1e-6
    assert rep.totals["area_mm2"] == pytest.approx(area_mm2, rel=1e-9)
    assert rep.layers[0]["area_um2"] == pytest.approx(per_array + per_tile / 2, rel=1e-9)

    # ---- throughput figures: 1 MAC = 2 ops
    ops = 2 * 3 * 4 * 4
    assert rep.totals["n_macs_per_inference"] == 48
    assert rep.totals["tops"] == pytest.approx(ops / (latency * 1e-9) / 1e12)
    assert rep.totals["tops_per_w"] == pytest.approx(ops / (total * 1e-12) / 1e12)
    assert rep.totals["tops_per_mm2"] == pytest.approx(rep.totals["tops"] / area_mm2)
    assert rep.totals["tops_per_w_1b"] == pytest.approx(rep.totals["tops_per_w"] * 4)
    assert rep.totals["tops_per_mm2_1b"] == pytest.approx(rep.totals["tops_per_mm2"] * 4)
    # power: energy over latency; pJ / ns is mW, with no factor 1e-3
    assert rep.totals["power_mw"] == pytest.approx(total / latency, rel=1e-9)


def test_rram_dac_holds_its_power_for_the_longer_of_read_and_conversion():
    """A resistive row driver holds its power for max(t_read, t_dac): a 1-ns read pulse
    shorter than the 1-b DAC's (1 + 2) x 1-ns conversion still costs the whole conversion,
    E_1b x 3 / 3; a 10-ns one E_1b x 10 / 3. Guards the pulse price against scaling by the
    read pulse alone, which priced a fast read below the DAC's own conversion energy."""
    t = tech_table(22.0)
    assert t.dac_clock_ns == 1.0
    pitch = math.sqrt(48 * 0.022**2)
    wire = 0.2 * 8 * pitch * 0.5**2 * 1e-3  # C_wl V_read^2, fJ -> pJ, as the known answer
    for t_read, held in ((1.0, 3.0), (10.0, 10.0)):
        chip = tiny_chip(t_read_ns=t_read)
        assert event_energy_pj(("dac", "pulse", 1), chip, t) == pytest.approx(
            t.dac_energy_pj_per_pulse * held / 3.0 + wire, rel=1e-12)


def test_supply_scaling_and_sram_bit_reads():
    """SRAM cell reads: bits x 1.12 fJ (node-scaled) x (vdd / 0.8 V)^2; ADC scales the same."""
    chip = cimsim.load_chip("sram-65nm")
    chip = chip.replace(tech=chip.tech.replace(vdd_v=1.2))
    t = tech_table(65.0)
    s = (1.2 / 0.8) ** 2
    assert supply_factor(chip) == pytest.approx(s)
    e_read = event_energy_pj(("cell", "read", 1), chip, t)
    assert e_read == pytest.approx(1.12e-3 * energy_scale(22.0, 65.0) * s)
    assert event_energy_pj(("cell", "v2g_lsb", 0), chip, t) == 0.0
    assert event_energy_pj(("adc", "convert", 8), chip, t) == pytest.approx(
        adc_energy_pj("sar", 8, t) * s)
    # charge-domain drivers switch once: no hold time
    pitch = math.sqrt(t.sram_cell_area_um2)
    wire = 0.2 * chip.array.n_cols * pitch * chip.tech.v_read_v**2 * 1e-3
    assert event_energy_pj(("dac", "pulse", 1), chip, t) == pytest.approx(
        dac_energy_pj(1, t) * s + wire)
    with pytest.raises(ValueError, match="not registered; allowed: layer.mac"):
        event_energy_pj(("no_such", "thing", 0), chip, t)


def test_calibration_multiplies_its_component_only():
    chip = tiny_chip()
    _, ev = cimsim.matmul(X, W, chip)
    block = program(W, chip)
    base = estimate([layer_work(ev, block)], chip, calibration=None)
    cal = estimate([layer_work(ev, block)], chip,
                   calibration=Calibration(energy={"adc": 2.0}, area={"cell": 3.0}))
    b, c = base.energy_by_component(), cal.energy_by_component()
    assert c["adc"] == pytest.approx(2 * b["adc"])  # conversions and leakage both
    for comp in ("cell", "dac", "shift_add", "buffer"):
        assert c[comp] == pytest.approx(b[comp])
    assert cal.area_by_component()["cell"] == pytest.approx(3 * base.area_by_component()["cell"])
    assert cal.area_by_component()["adc"] == pytest.approx(base.area_by_component()["adc"])
    with pytest.raises(ValueError, match="unknown component"):
        Calibration(energy={"flux": 2.0})
    # presets matched to silicon carry their calibration automatically
    jia = cimsim.load_chip("jia-jssc20")
    assert "jia-jssc20" in estimate([], jia).calibration.note


def _run(chip, x, w):
    _, ev = cimsim.matmul(x, w, chip)
    return estimate([layer_work(ev, program(w, chip))], chip, calibration=None)


def test_sparser_inputs_cost_less_dac_and_cell_energy():
    chip = cimsim.load_chip("rram-22nm").replace(
        adc=ADCConfig(kind="sar", bits=6, range_policy="full_scale"))
    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, size=(16, 128))
    dense = rng.integers(1, 256, size=(32, 128))
    sparse = dense.copy()
    sparse[rng.random(sparse.shape) < 0.6] = 0
    a, b = _run(chip, dense, w).energy_by_component(), _run(chip, sparse, w).energy_by_component()
    assert b["dac"] < a["dac"] and b["cell"] < a["cell"]
    assert b["adc"] == pytest.approx(a["adc"])  # conversions do not depend on the data
    assert sum(b.values()) < sum(a.values())


@pytest.mark.parametrize("kind", ["sar", "flash"])
def test_more_adc_bits_never_cost_less(kind):
    rng = np.random.default_rng(4)
    w = rng.integers(-127, 128, size=(8, 64))
    x = rng.integers(0, 256, size=(16, 64))
    base = cimsim.load_chip("rram-22nm")
    prev_adc = prev_total = -1.0
    for bits in range(3, 10):
        chip = base.replace(adc=ADCConfig(kind=kind, bits=bits, range_policy="full_scale"))
        rep = _run(chip, x, w)
        e = rep.energy_by_component()
        assert e["adc"] >= prev_adc
        assert rep.totals["energy_pj_per_inference"] >= prev_total
        prev_adc, prev_total = e["adc"], rep.totals["energy_pj_per_inference"]

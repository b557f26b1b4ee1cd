"""The physical component models against first principles, over every published chip
(issue 13): fixed-bias terms do not follow the supply, CMOS terms go as V_dd^2, one column
charge prices the cell and the mirrors that copy it, and energies, areas and times never fall
where physics says they grow (supply, node, rows, columns, converter bits)."""

from __future__ import annotations

from pathlib import Path

import pytest

import cimsim
from cimsim.config import ChipConfig
from cimsim.cost import component_models
from cimsim.cost._prices import sensed_cells
from cimsim.cost.models import CellModel, WeightingModel, physical
from cimsim.errors import ConfigError
from cimsim.events import Action, Component

A, C = Action, Component
PUBLISHED = sorted((Path(cimsim.__file__).parent / "presets" / "published").glob("*.toml"))
_RESISTIVE = ("rram", "pcm", "mram", "fefet", "flash")


def _chips() -> list[ChipConfig]:
    return [cimsim.load_chip(p) for p in PUBLISHED]


def _variant(chip: ChipConfig, array: bool = False, **fields) -> ChipConfig | None:
    """``chip`` with ``tech`` (or, with ``array``, ``array``) fields replaced; None where the
    config refuses the combination."""
    try:
        if array:
            rows = fields.get("n_rows", chip.array.n_rows)
            adc = chip.adc  # a digital column's sum needs its bits (sign included)
            if adc.kind.value == "digital":
                adc = adc.replace(bits=max(adc.bits, rows.bit_length() + 1))
            return chip.replace(array=chip.array.replace(**fields), adc=adc)
        return chip.replace(tech=chip.tech.replace(**fields))
    except ConfigError:
        return None


def _prices(chip: ChipConfig) -> dict[tuple[str, str], float]:
    """Energy per action (the chip's own bits), area per instance and ADC time of every model."""
    ms = component_models(chip)
    bits = {A.CONVERT: chip.adc.bits, A.LEAK: chip.adc.bits, A.PULSE: chip.dac_bits,
            A.READ: chip.device.bits_per_cell, A.WRITE: chip.device.bits_per_cell,
            A.ADD: chip.accumulator_bits}
    out = {}
    for comp, model in ms.items():
        for action in model.actions:
            if action is A.SLICE_COLUMN:
                continue
            out[comp.value, action.value] = model.energy_pj(action, bits.get(action, 0))
        out[comp.value, "area"] = model.area_um2()
    out["adc", "time"] = ms[C.ADC].time_ns(A.CONVERT)
    return out


def _never_falls(series: list[tuple[float, dict]], what: str) -> None:
    for (a, pa), (b, pb) in zip(series, series[1:], strict=False):
        for key, value in pb.items():
            assert value >= pa[key] * (1 - 1e-12), f"{what} {a} -> {b}: {key} falls"


@pytest.mark.parametrize("chip", _chips(), ids=lambda c: c.name)
def test_prices_never_fall_with_supply_node_rows_or_columns(chip):
    """A higher supply, a larger node, longer columns or rows: no energy per action, area per
    instance or conversion time falls (the ADC's leakage power per ns is left out for bits:
    a counting converter's count outgrows its counter's energy)."""
    axes = {
        "vdd_v": [(v, _variant(chip, vdd_v=v)) for v in (0.6, 0.7, 0.8, 0.9, 1.0, 1.2)],
        "node_nm": [(n, _variant(chip, node_nm=n))
                    for n in (5.0, 7.0, 14.0, 22.0, 28.0, 45.0, 65.0, 130.0)],
        "n_rows": [(r, _variant(chip, True, n_rows=r)) for r in (64, 128, 256, 512)],
        "n_cols": [(c, _variant(chip, True, n_cols=c)) for c in (64, 128, 256, 512)],
    }
    for what, variants in axes.items():
        series = [(v, _prices(c)) for v, c in variants if c is not None]
        assert len(series) >= 2, (chip.name, what)
        _never_falls(series, f"{chip.name} {what}")


@pytest.mark.parametrize("chip", [c for c in _chips() if c.device.cell.value in _RESISTIVE],
                         ids=lambda c: c.name)
def test_fixed_bias_reads_draw_their_charge_from_the_supply(chip):
    """A resistive read at a fixed read voltage: its column charge does not move with V_dd,
    and the supply delivers it, so the read's price goes as V_dd, not V_dd^2 (no (V/0.8)^2 on
    a bias term), as the mirrors that copy that charge from V_dd; from a rail stated apart
    (tech.read_supply_v) not at all; the programming energy is the device's."""
    lo, hi = (_variant(chip, vdd_v=v) for v in (0.7, 1.1))
    assert lo is not None and hi is not None
    assert CellModel(lo).read_charge_fc() == CellModel(hi).read_charge_fc() > 0
    assert CellModel(lo).energy_pj(A.WRITE, 1) == CellModel(hi).energy_pj(A.WRITE, 1)
    read = A.V2G_LSB if sensed_cells(chip) else A.V1G_LSB
    ratio = CellModel(hi).energy_pj(read, 1) / CellModel(lo).energy_pj(read, 1)
    assert ratio == pytest.approx(1.1 / max(0.7, chip.tech.v_read_v), rel=1e-12)
    rail = [c.replace(tech=c.tech.replace(read_supply_v=chip.tech.v_read_v)) for c in (lo, hi)]
    assert CellModel(rail[0]).energy_pj(read, 1) == CellModel(rail[1]).energy_pj(read, 1)
    m_lo, m_hi = WeightingModel(lo), WeightingModel(hi)
    ratio = m_hi.energy_pj(A.MIRROR_LSB) / m_lo.energy_pj(A.MIRROR_LSB)
    assert ratio == pytest.approx(1.1 / 0.7, rel=1e-12)


@pytest.mark.parametrize("chip", [c for c in _chips() if physical(c)], ids=lambda c: c.name)
def test_cmos_terms_go_as_the_supply_squared(chip):
    """CMOS switching energy is C V_dd^2: the bit-cell read (SRAM, gain cell, charge-domain
    capacitor, product gate), the shift-add, accumulator, buffer and link prices scale by
    (1.1 / 0.7)^2 exactly; the ADC (below its corner rate) and DAC at least that (the word line
    swings V_dd unless stated apart)."""
    lo, hi = (_variant(chip, vdd_v=v) for v in (0.7, 1.1))
    if lo is None or hi is None:
        pytest.skip("supply outside the node's device")
    s = (1.1 / 0.7) ** 2
    plo, phi = _prices(lo), _prices(hi)
    exact = [("shift_add", "add"), ("accumulator", "add"), ("buffer", "read_bit"),
             ("interconnect", "bit")]
    if chip.device.cell.value not in _RESISTIVE:
        exact.append(("cell", "read"))
    for key in exact:
        assert phi[key] == pytest.approx(s * plo[key], rel=1e-9), key


@pytest.mark.parametrize("chip", [c for c in _chips() if physical(c)], ids=lambda c: c.name)
def test_leakage_per_ns_times_the_conversion_is_its_fraction(chip):
    """Units: the ADC's leakage is priced per ADC-ns (mW = pJ/ns) at 20 % of its dynamic power
    at the design rate, so leak x conversion time = 0.2 x the converter's own conversion energy
    (a digital adder tree and a time-to-digital converter, CMOS logic, leak nothing priced)."""
    adc = component_models(chip)[C.ADC]
    b = chip.adc.bits
    leak_per_conversion = adc.energy_pj(A.LEAK, b) * adc.time_ns(A.CONVERT, b)
    if chip.adc.kind.value in ("digital", "tdc"):
        assert leak_per_conversion == 0.0
    else:
        assert leak_per_conversion == pytest.approx(0.2 * adc._convert_pj(min(b, 16)), rel=1e-9)


def test_the_analog_phase_holds_the_read_pulse_its_energy_is_priced_over():
    """A resistive cell conducts for its read pulse (its energy V^2 G t_read): a step cannot end
    before that pulse, whether the window is predicted (no stated window) or an integration
    window shorter than the pulse is stated. An SRAM amplitude read (a bit-line discharge, no
    pulse length) keeps its predicted window. Fails where the step ignores t_read."""
    from cimsim.cost.latency import compute_window_ns, read_pulse_priced

    correll = cimsim.load_chip(PUBLISHED[0].parent / "correll-jssc25.toml")
    assert not correll.tech.window_stated and read_pulse_priced(correll)
    predicted = compute_window_ns(correll)
    assert predicted > correll.tech.t_read_ns  # its 10-ns pulse fits the predicted window
    long_pulse = _variant(correll, t_read_ns=4 * predicted)
    assert compute_window_ns(long_pulse) == 4 * predicted
    # a stated integration window shorter than the pulse: the pulse
    short = _variant(correll, window_stated=True, t_read_ns=200.0, t_integrate_ns=50.0)
    assert compute_window_ns(short) == 200.0
    # the SRAM macro's default 10-ns t_read prices nothing: the predicted window stands
    yu = cimsim.load_chip(PUBLISHED[0].parent / "yu-cicc20.toml")
    assert not read_pulse_priced(yu) and compute_window_ns(yu) < yu.tech.t_read_ns
    # a temporal drive's train lasts t_read: held, whatever the cell
    train = _variant(yu, input_drive="pulse_width")
    assert read_pulse_priced(train) and compute_window_ns(train) >= yu.tech.t_read_ns

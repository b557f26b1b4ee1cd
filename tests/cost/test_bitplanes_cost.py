"""Input bit-planes accumulated in analog before one conversion (``tech.input_drive =
'bit_planes'``, ``cimsim.cost.bitplanes``; issue 13): numerics of the one-shot input, the
conversion count B-fold below bit-serial, known answers by hand for every priced term (driver
and word line per plane bit, resistive and charge-domain reads, the accumulator's charge
shares, the step's B windows, the areas), monotonic in B, the validation of the config."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cimsim
from cimsim.arrays.program import program
from cimsim.config import ChipConfig, InputDrive, load_chip
from cimsim.cost import bitplanes, estimate, layer_work
from cimsim.cost.latency import block_latency, compute_window_ns
from cimsim.cost.models import ADCModel, CellModel, DACModel
from cimsim.cost.tables import dac_area_um2, dac_energy_pj
from cimsim.errors import ConfigError
from cimsim.events import Action, Component, EventKey
from tests.conftest import assert_exact

_CONVERT = Component.ADC, Action.CONVERT


def _chip(drive="bit_planes", dac_bits="all", input_bits=4, domain="current", cell="rram",
          adc_bits=8, **tech) -> ChipConfig:
    """A small physical-model chip: 16 x 16 array, 4-b weights offset into one 4-b cell
    column (no slices), 2 columns per 8-b SAR, node 65 nm, a 100-F^2 cell (one device
    holding 4 bits: a 10-F = 0.65-um pitch, the column model's, as the word line's),
    word lines 1 fF per cell, an integration window of 200 ns (longer than the settling)."""
    t = dict(cost_model="physical", input_drive=drive, compute_domain=domain, node_nm=65.0,
             vdd_v=1.0, v_read_v=0.3, t_read_ns=10.0, t_integrate_ns=200.0, cell_area_f2=100.0,
             cap_unit_ff=2.0, cap_density_ff_per_um2=5.0, wordline_cap_ff_per_cell=1.0,
             clock_mhz=1000.0)
    t.update(tech)
    return ChipConfig.from_dict(dict(
        name="bp", weight_bits=4, input_bits=input_bits, weight_encoding="offset",
        array=dict(n_rows=16, n_cols=16, cols_per_adc=2, n_tiles=1, arrays_per_tile=1),
        device=dict(cell=cell, bits_per_cell=4, g_max_us=15.0, on_off_ratio=math.inf),
        dac=dict(bits=dac_bits), adc=dict(kind="sar", bits=adc_bits, range_policy="full_scale"),
        tech=t))


def _run(chip, x, w):
    _, ev = cimsim.matmul(x, w, chip, seed=0)
    return ev


def _operands(seed=0, m=64, k=16, n=16, bits=4):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2**bits, size=(m, k))
    x[rng.random(x.shape) < 0.5] = 0
    return x, rng.integers(-8, 8, size=(n, k))


# -- config ------------------------------------------------------------------------------------
def test_toml_round_trip(tmp_path):
    chip = _chip()
    path = tmp_path / "bp.toml"
    chip.save(path)
    back = load_chip(path)
    assert back == chip
    assert back.tech.input_drive is InputDrive.BIT_PLANES and back.dac.bits is None
    assert 'input_drive = "bit_planes"' in path.read_text()


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_needs_the_one_shot_input(bits):
    with pytest.raises(ConfigError, match=rf"DACConfig\.bits = {bits} .*allowed: 'all'"):
        _chip(dac_bits=bits)


def test_refused_with_a_digital_readout():
    d = _chip(input_bits=1).to_dict()
    d["adc"] = dict(kind="digital", bits=10, range_policy="full_scale")
    d["device"] = dict(cell="sram", bits_per_cell=1)
    d.update(weight_bits=1, weight_encoding="binary")
    with pytest.raises(ConfigError, match=r"TechConfig\.input_drive = 'bit_planes'.*digital"):
        ChipConfig.from_dict(d)


# -- numerics: the one-shot input, exactly -------------------------------------------------------
def test_outputs_are_the_exact_product_and_those_of_the_one_shot_amplitude_drive():
    x, w = _operands(1)
    chip = _chip(cell="ideal", adc_bits=24)  # a converter wide enough to be lossless
    y, ev = cimsim.matmul(x, w, chip, seed=0)
    assert_exact(y, x, w)
    y_amp, ev_amp = cimsim.matmul(x, w, _chip(drive="amplitude", cell="ideal", adc_bits=24),
                                  seed=0)
    assert np.array_equal(y, y_amp)
    # the same run; only the read count differs: a cell is read once per plane whose bit
    # is 1, so the drive counts Σ popcount(x) G where the amplitude drive counts Σ |x| G
    v1g = EventKey(Component.CELL, Action.V1G_LSB, 0)
    assert {k: v for k, v in ev.items() if k != v1g} == {
        k: v for k, v in ev_amp.items() if k != v1g}
    rowsum = program(w, chip).cell_rowsum
    popcount = np.vectorize(lambda v: bin(int(v)).count("1"))(x)
    assert ev[v1g] == pytest.approx(float(popcount.sum(axis=0) @ rowsum), rel=1e-12)
    assert ev_amp[v1g] == pytest.approx(float(x.sum(axis=0) @ rowsum), rel=1e-12)


def test_a_signed_input_is_read_once_per_set_bit_of_its_twos_complement():
    """A signed one-shot input drives its B-bit two's complement, its sign plane included:
    -1 at 4 b is 1111, four reads, where |x| = 1 counted one (the cells' energy ~2x low over
    uniform signed inputs); a two-pass input drives its two magnitudes' bits."""
    from cimsim.arrays.encoding import input_planes

    chip = _chip(cell="ideal", adc_bits=24)
    x = np.array([[-1, -8, 7, 0, 5, -3] + [0] * 10])
    w = np.random.default_rng(0).integers(-8, 8, size=(4, 16))
    layer = program(w, chip, np.random.default_rng(0), input_signed=True)
    v1g = EventKey(Component.CELL, Action.V1G_LSB, 0)
    _, ev = cimsim.engine.run(layer, x, noise_seed=0)
    reads = np.array([4, 1, 3, 0, 2, 3] + [0] * 10)  # 1111 1000 0111 0000 0101 1101
    assert ev[v1g] == pytest.approx(float(reads @ layer.cell_rowsum), rel=1e-12)
    two = chip.replace(dac=chip.dac.replace(signed_inputs="two_pass"))
    layer2 = program(w, two, np.random.default_rng(0), input_signed=True)
    _, ev2 = cimsim.engine.run(layer2, np.clip(x, -7, 7), noise_seed=0)
    reads2 = np.array([1, 3, 3, 0, 2, 2] + [0] * 10)  # |x|: 1 111 111 0 101 11
    assert ev2[v1g] == pytest.approx(float(reads2 @ layer2.cell_rowsum), rel=1e-12)
    assert input_planes(x, chip, True).planes.shape[0] == 1  # one shot: one signed plane


@pytest.mark.parametrize("bits", [1, 3, 4, 7])
def test_conversions_fall_b_fold_against_bit_serial(bits):
    x, w = _operands(2, bits=bits)
    one_shot = _run(_chip(input_bits=bits), x, w)
    serial = _run(_chip(drive="amplitude", dac_bits=1, input_bits=bits), x, w)
    n_conv = one_shot[EventKey(*_CONVERT, 8)]
    assert n_conv == x.shape[0] * w.shape[0]  # one per column (one 4-b cell) and vector
    assert serial[EventKey(*_CONVERT, 8)] == bits * n_conv


# -- energy by hand ------------------------------------------------------------------------------
def test_mean_set_bits_by_hand():
    assert bitplanes.mean_set_bits(1) == 1.0
    assert bitplanes.mean_set_bits(2) == pytest.approx((1 + 1 + 2) / 3)  # 01 10 11
    assert bitplanes.mean_set_bits(3) == pytest.approx(12 / 7)  # 1+1+2+1+2+2+3 = 12
    for b in range(1, 12):  # counted, not the formula
        assert bitplanes.mean_set_bits(b) == pytest.approx(
            sum(bin(v).count("1") for v in range(1, 2**b)) / (2**b - 1))


def test_driver_and_word_line_per_plane_bit_by_hand():
    chip = _chip(input_bits=4)
    dac = DACModel(chip)
    s = (1.0 / 0.8) ** 2  # supply factor at 1.0 V
    one_bit = dac_energy_pj(1, dac.table) * s
    wordline = 1.0 * 16 * 1.0 * 1.0 * 1e-3  # 1 fF x 16 cells x 1.0 V x 1.0 V, pJ
    per_nonzero_input = 4 * 8 / 15  # mean ones of a nonzero 4-b input
    assert dac.energy_pj(Action.PULSE, 4) == pytest.approx(
        (one_bit + wordline) * per_nonzero_input, rel=1e-12)
    # every-row word lines: every row switches once per plane of each array read
    every = DACModel(_chip(wordline_switching="every_row"))
    assert every.energy_pj(Action.WORDLINE) == pytest.approx(4 * wordline, rel=1e-12)
    assert every.energy_pj(Action.PULSE, 4) == pytest.approx(one_bit * per_nonzero_input)


def test_resistive_read_is_popcount_not_x_squared_by_hand():
    chip = _chip(input_bits=4)
    cell = CellModel(chip)
    g_lsb_us = 15.0 / 15  # 4-b cell, on/off infinite: 1 uS per level
    # V_dd V_read G t_read per plane whose bit is 1 (the read charge V_read G t_read drawn
    # from the 1-V supply), the run counting those reads (Σ popcount(x) G)
    per_unit = 1.0 * 0.3 * g_lsb_us * 10.0 * 1e-3  # V^2 uS ns = fJ -> pJ
    assert cell.energy_pj(Action.V1G_LSB) == pytest.approx(per_unit, rel=1e-12)
    assert cell.energy_pj(Action.V2G_LSB) == 0.0
    assert cell.energy_pj(Action.READ, 4) == 0.0
    # a 1-b input is one plane: the amplitude and bit-plane drives read alike
    one = _chip(input_bits=1)
    amp = _chip(drive="amplitude", input_bits=1)
    assert CellModel(one).energy_pj(Action.V1G_LSB) == pytest.approx(
        CellModel(amp).energy_pj(Action.V1G_LSB), rel=1e-12)


def test_charge_domain_read_per_plane_bit_by_hand():
    d = _chip(input_bits=4, domain="charge").to_dict()
    d.update(weight_encoding="twos_complement")  # 4 binary SRAM bit-cells per weight
    d["device"] = dict(cell="sram", bits_per_cell=1)
    chip = ChipConfig.from_dict(d)
    # C V^2 / 2 per product (one stored bit in two is 1) per plane whose bit is 1
    assert CellModel(chip).energy_pj(Action.READ, 1) == pytest.approx(
        0.5 * 2.0 * 1.0**2 * 1e-3 * 4 * 8 / 15, rel=1e-12)


def test_accumulator_charge_shares_by_hand():
    chip = _chip(input_bits=4)
    # a column: 16 cells, each the wire over its 0.65-um pitch (0.2 fF/um) and a
    # pitch-wide drain (1 fF/um); shared B = 4 times with an equal capacitor per conversion,
    # C V^2 / 4 each
    c_col_ff = 16 * (0.2 + 1.0) * 0.65
    share_pj = c_col_ff * 1.0**2 / 4 * 1e-3
    assert bitplanes.share_energy_pj(chip, ADCModel(chip).table) == pytest.approx(share_pj)
    adc = ADCModel(chip)
    assert adc.energy_pj(Action.CONVERT, 8) - adc._convert_pj(8) == pytest.approx(
        4 * 1 * share_pj, rel=1e-9)  # one column per conversion
    # the converter's leakage is its bias, not the shares
    amp = ADCModel(_chip(drive="amplitude", input_bits=4))
    assert amp.energy_pj(Action.CONVERT, 8) == amp._convert_pj(8)
    # a differential pair read as one conversion: two columns, two accumulators
    d = chip.to_dict()
    d.update(weight_encoding="differential", differential_readout="analog")
    pair = ChipConfig.from_dict(d)
    assert bitplanes.columns_per_conversion(pair) == 2
    assert bitplanes.accumulator_pj_per_conversion(pair, ADCModel(pair).table) == pytest.approx(
        4 * 2 * share_pj, rel=1e-9)


def test_charge_domain_column_carries_its_capacitors():
    chip = _chip(domain="charge")
    c_col_ff = 16 * (0.2 * 0.65 + 2.0)  # wire over the pitch + the 2-fF compute capacitor
    assert bitplanes.share_energy_pj(chip, ADCModel(chip).table) == pytest.approx(
        c_col_ff / 4 * 1e-3)


# -- time and area by hand -----------------------------------------------------------------------
def test_step_is_b_windows_against_the_conversions():
    x, w = _operands(3)
    chip = _chip(input_bits=4)
    window = compute_window_ns(chip)
    assert window == 200.0  # the stated integration window (longer than the settling)
    lat = block_latency(program(w, chip), x.shape[0])
    assert lat["n_planes"] == 1
    t_conv = 9.0  # 8-b SAR: (b + 1) x 1 ns
    assert lat["t_conv_ns"] == t_conv
    assert lat["t_step_ns"] == pytest.approx(max(4 * 200.0, 2 * t_conv))  # 2 conversions/ADC
    assert lat["latency_ns"] == pytest.approx(x.shape[0] * 800.0 + 1.0)  # + one clock tail
    # conversion-bound: B windows hidden behind the conversions (the hold overlaps them)
    fast = _chip(input_bits=4, t_integrate_ns=None, t_read_ns=1.0)
    lat = block_latency(program(w, fast), x.shape[0])
    assert 4 * compute_window_ns(fast) < 2 * t_conv
    assert lat["t_step_ns"] == pytest.approx(2 * t_conv)


def test_area_by_hand():
    chip = _chip(input_bits=4)
    table = ADCModel(chip).table
    c_col_ff = 16 * (0.2 + 1.0) * 0.65
    # 16 columns over 8 converters, each column with an equal accumulator capacitor at 5 fF/um^2
    acc = 16 / 8 * c_col_ff / 5.0
    assert bitplanes.accumulator_area_um2_per_adc(chip, table) == pytest.approx(acc)
    amp = _chip(drive="amplitude", input_bits=4)
    assert ADCModel(chip).area_um2() == pytest.approx(ADCModel(amp).area_um2() + acc)
    assert DACModel(chip).area_um2() == pytest.approx(dac_area_um2(1, table))  # a 1-b driver
    above = _chip(input_bits=4, cap_density_ff_per_um2=0.0)  # capacitors above the cells
    assert bitplanes.accumulator_area_um2_per_adc(above, table) == 0.0
    # 3 columns a converter do not divide 16: 6 converters still hold 16 capacitors in all
    d = chip.to_dict()
    d["array"]["cols_per_adc"] = 3
    odd = ChipConfig.from_dict(d)
    assert odd.array.adcs_per_array == 6
    assert 6 * bitplanes.accumulator_area_um2_per_adc(odd, table) == pytest.approx(
        16 * c_col_ff / 5.0)


def test_tables_model_reads_no_bit_planes():
    chip = _chip(cost_model="tables")
    assert not bitplanes.applies(chip) and bitplanes.analog_phases(chip) == 1
    assert bitplanes.accumulator_pj_per_conversion(chip, ADCModel(chip).table) == 0.0


# -- against bit-serial, and monotonic in B --------------------------------------------------------
def test_reads_and_drivers_match_bit_serial_on_uniform_inputs():
    """The bit-serial run counts every nonzero plane bit exactly; the bit-plane drive prices
    the expected ones of a uniform input: the two agree on uniform inputs."""
    x, w = _operands(4, m=256)
    one_shot, serial = _chip(input_bits=4), _chip(drive="pulse_width", dac_bits=1, input_bits=4)
    e1 = estimate([layer_work(_run(one_shot, x, w), program(w, one_shot))], one_shot)
    e2 = estimate([layer_work(_run(serial, x, w), program(w, serial))], serial)
    by1, by2 = e1.energy_by_component(), e2.energy_by_component()
    assert by1["cell"] == pytest.approx(by2["cell"], rel=0.03)
    assert by1["dac"] == pytest.approx(by2["dac"], rel=0.03)
    assert by1["adc"] < by2["adc"]  # one conversion (and its shares) against four


def test_monotonic_in_b():
    w = _operands(5)[1]
    prev = None
    for bits in range(1, 9):
        chip = _chip(input_bits=bits)
        x = _operands(5, bits=bits)[0]
        rep = estimate([layer_work(_run(chip, x, w), program(w, chip))], chip)
        cur = (rep.totals["energy_pj_per_inference"], rep.totals["latency_ns_per_inference"],
               bitplanes.accumulator_pj_per_conversion(chip, ADCModel(chip).table))
        if prev is not None:
            assert all(c > p for c, p in zip(cur, prev, strict=True)), (bits, cur, prev)
        prev = cur


def test_datasheet_step_names_the_b_windows():
    from cimsim.cost.datasheet import breakdown_lines, datasheet

    sheet = datasheet(_chip(input_bits=4))
    st = sheet["step"]
    assert st["analog_phases"] == 4 and st["stated_window_ns"] == 200.0
    assert st["terms"]["stated_window"] == pytest.approx(800.0)
    assert st["step_ns"] == pytest.approx(800.0) and st["limit"] == "stated_window"
    assert any("analog phases" in line and " 4 " in line for line in breakdown_lines(sheet))
    one = datasheet(_chip(drive="amplitude", input_bits=4))["step"]
    assert one["analog_phases"] == 1 and one["step_ns"] == pytest.approx(200.0)

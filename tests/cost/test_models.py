"""Component models (cimsim.cost.models): registry, known answers, monotonicity, bad fields."""

from __future__ import annotations

import math
import tomllib

import numpy as np
import pytest

import cimsim
from cimsim.config import ChipConfig
from cimsim.cost import MODELS, component_models, datasheet, estimate, layer_work
from cimsim.cost.adc_survey import FAMILIES
from cimsim.cost.energy import PRICES, event_energy_pj
from cimsim.cost.latency import write_time_ns_per_row
from cimsim.cost.models import CCO_LSB_NS, GATE_CAPACITANCE_FF_PER_UM, ComponentModel
from cimsim.cost.tables import CONVERTER_KINDS, dac_energy_pj, tech_table
from cimsim.errors import ConfigError
from cimsim.events import DERIVED, REGISTRY, Action, Component, EventKey

A, C = Action, Component


def physical_chip(**tech) -> ChipConfig:
    """A small physical-model chip at 45 nm / 0.8 V (the survey fit's reference point)."""
    base = cimsim.load_chip("rram-22nm")
    fields = dict(node_nm=45.0, vdd_v=0.8, cost_model="physical")
    fields.update(tech)
    if str(fields.get("cell_kind", "")).startswith(("sram", "edram")):
        # an SRAM cell kind priced on this RRAM chip's arrays: simulated as 'ideal' cells
        # (the cell kind, not the device, prices a CMOS cell)
        base = base.replace(device=base.device.replace(cell="ideal"))
    return base.replace(tech=base.tech.replace(**fields))


def with_adc(chip: ChipConfig, kind: str, bits: int) -> ChipConfig:
    policy = "calibrated" if kind == "ramp" else "full_scale"
    return chip.replace(adc=chip.adc.replace(kind=kind, bits=bits, range_policy=policy))


# ---------------------------------------------------------------------------------------------
# registry: pricing an event is one lookup, and no registered key is unpriced
# ---------------------------------------------------------------------------------------------
def test_every_registered_event_key_is_priced_by_one_model():
    """A key added to cimsim.events.REGISTRY must be listed by its component's model."""
    for component, action in REGISTRY:
        model = MODELS.get(component)
        assert model is not None, (
            f"component {component.value!r} has no cost model: add a ComponentModel subclass "
            "for it to cimsim.cost.models.MODELS")
        assert action in model.actions, (
            f"registered event ({component.value}, {action.value}) is unpriced: add "
            f"Action.{action.name} to {model.__name__}.actions and price it in "
            f"{model.__name__}.energy_pj (cimsim/cost/models.py)")


def test_models_price_only_registered_keys():
    listed = {(c, a) for c, cls in MODELS.items() for a in cls.actions}
    assert listed == set(REGISTRY)
    assert set(PRICES) == set(REGISTRY)
    assert all(cls.component is c and issubclass(cls, ComponentModel)
               for c, cls in MODELS.items())


@pytest.mark.parametrize("model", ["tables", "physical"])
def test_every_key_prices_to_a_finite_energy(model):
    chip = physical_chip(cost_model=model)
    models = component_models(chip)
    for component, action in REGISTRY:
        e = models[component].energy_pj(action, 8)
        assert math.isfinite(e) and e >= 0, (component, action)
        assert event_energy_pj((component, action, 8), chip) == pytest.approx(e)


def test_an_unlisted_action_is_refused_naming_the_model():
    model = component_models(physical_chip())[C.ADC]
    with pytest.raises(KeyError, match="ADCModel"):
        model.energy_pj(A.PULSE, 1)


def test_tables_model_keeps_every_preset_price():
    """Defaults keep today's meaning: the models equal the table prices of the presets."""
    from cimsim.cost import energy as legacy

    for name in cimsim.list_presets():
        chip = cimsim.load_chip(name)
        table = tech_table(chip.tech.node_nm, chip.tech.adc_band)
        cal = legacy.calibration_for(chip)
        models = component_models(chip, table, cal)
        bits = min(chip.adc.bits, 16)
        assert models[C.ADC].energy_pj(A.CONVERT, bits) == pytest.approx(
            legacy._adc_convert(chip, table, cal, bits))
        assert models[C.DAC].energy_pj(A.PULSE, chip.dac_bits) == pytest.approx(
            legacy._dac_pulse(chip, table, cal, chip.dac_bits))
        assert models[C.CELL].energy_pj(A.V1G_LSB) == 0.0


# ---------------------------------------------------------------------------------------------
# known answers (hand computations from the fitted constants and the formulas of the docs)
# ---------------------------------------------------------------------------------------------
def test_sar_energy_and_area_known_answer():
    chip = with_adc(physical_chip(), "sar", 8)
    adc = component_models(chip)[C.ADC]
    # FOM 5.68 fJ/step at 45 nm, 0.8 V; 2^8 Walden steps
    assert adc.energy_pj(A.CONVERT, 8) == pytest.approx(5.68 * 256 * 1e-3)
    # area: 4895 F^2 per step x 256 steps x (0.045 um)^2
    assert adc.area_um2() == pytest.approx(4895.0 * 256 * 0.045**2)
    # (b + 1) comparator cycles of 1 ns
    assert adc.time_ns(A.CONVERT, 8) == pytest.approx(9.0)


def test_sar_energy_scales_with_node_and_supply_known_answer():
    chip = with_adc(physical_chip(node_nm=22.0, vdd_v=0.7), "sar", 6)
    e = component_models(chip)[C.ADC].energy_pj(A.CONVERT, 6)
    assert e == pytest.approx(5.68 * (22 / 45) ** 0.30 * (0.7 / 0.8) ** 2 * 64 * 1e-3)


def test_flash_known_answer():
    chip = with_adc(physical_chip(), "flash", 4)
    adc = component_models(chip)[C.ADC]
    assert adc.energy_pj(A.CONVERT, 4) == pytest.approx(59.32 * 15 * 1e-3)  # 15 comparators
    assert adc.area_um2() == pytest.approx(180518.0 * 15 * 0.045**2)
    assert adc.time_ns(A.CONVERT, 4) == pytest.approx(1.0)


def test_counting_converters_known_answer():
    """CCO and integrate-and-fire: 2^b counts at the time-domain FOM plus a b-bit counter."""
    table = tech_table(45.0)
    for kind in ("cco", "integrate_fire"):
        chip = with_adc(physical_chip(), kind, 6)
        adc = component_models(chip, table)[C.ADC]
        counter = 6 * table.shift_add_energy_pj_per_bit
        assert adc.energy_pj(A.CONVERT, 6) == pytest.approx(18.07 * 64 * 1e-3 + counter)
    cco = component_models(with_adc(physical_chip(), "cco", 8))[C.ADC]
    assert cco.time_ns(A.CONVERT, 8) == pytest.approx(256 * CCO_LSB_NS)  # 76.8 ns (HERMES)
    inf = component_models(with_adc(physical_chip(), "integrate_fire", 3))[C.ADC]
    assert inf.time_ns(A.CONVERT, 3) == pytest.approx(8 * 1.0)


def test_adc_leakage_is_its_fraction_of_the_dynamic_power():
    chip = with_adc(physical_chip(), "sar", 8)
    adc = component_models(chip)[C.ADC]
    assert adc.energy_pj(A.LEAK, 8) == pytest.approx(0.2 * 5.68 * 256e-3 / 9.0)


def test_dac_and_word_line_known_answer():
    chip = physical_chip(input_drive="pulse_count", wordline_v=1.0)
    chip = chip.replace(dac=chip.dac.replace(bits=4), input_bits=8)
    models = component_models(chip)
    table = models[C.DAC].table
    pitch = math.sqrt(48.0) * 0.045  # RRAM 1T1R, 48 F^2
    wl = (0.2 + GATE_CAPACITANCE_FF_PER_UM) * chip.array.n_cols * pitch * 1.0**2 * 1e-3
    one = dac_energy_pj(1, table)
    # a pulse count drives 2^3 unit pulses on average, each a toggle and a line switching
    assert models[C.DAC].energy_pj(A.PULSE, 4) == pytest.approx((one + wl) * 2**3)
    amp = component_models(chip.replace(tech=chip.tech.replace(input_drive="amplitude")))
    assert amp[C.DAC].energy_pj(A.PULSE, 4) == pytest.approx(dac_energy_pj(4, table) + wl)
    pw = component_models(chip.replace(tech=chip.tech.replace(input_drive="pulse_width")))
    assert pw[C.DAC].energy_pj(A.PULSE, 4) == pytest.approx(one + wl)


@pytest.mark.parametrize("bits", [1, 2, 4, 7])
def test_pulse_count_is_its_unit_pulses(bits):
    """A pulse count of x is x one-LSB pulses on the row line: its price per drive is the
    pulse-width price (one toggle, one line switching) times the mean count 2^(b-1), the line
    included (as a bit-plane drive prices its planes). Fails where the line is priced once."""
    chip = physical_chip(input_drive="pulse_count", wordline_v=1.0)
    chip = chip.replace(dac=chip.dac.replace(bits=bits), input_bits=8)
    pw = chip.replace(tech=chip.tech.replace(input_drive="pulse_width"))
    count = component_models(chip)[C.DAC]
    assert count.wordline_pj() > 0
    assert count.energy_pj(A.PULSE, bits) == pytest.approx(
        component_models(pw)[C.DAC].energy_pj(A.PULSE, bits) * 2 ** (bits - 1), rel=1e-12)


@pytest.mark.parametrize("drive", ["amplitude", "pulse_width", "pulse_count", "bit_planes"])
@pytest.mark.parametrize("bits", [0, -1, 17])
def test_a_pulse_of_no_bits_is_refused_by_every_drive(drive, bits):
    """A drive prices a b-bit pulse, b in 1..16: a bit-plane drive divided by zero at b = 0
    and priced b = -1 as half a 1-b pulse, where the other drives name the argument."""
    chip = physical_chip()
    dac = chip.dac.replace(bits=None) if drive == "bit_planes" else chip.dac
    chip = chip.replace(dac=dac, tech=chip.tech.replace(input_drive=drive))
    with pytest.raises(ConfigError, match=f"bits={bits} is invalid; allowed: integers 1..16"):
        component_models(chip)[C.DAC].energy_pj(A.PULSE, bits)


@pytest.mark.parametrize("bits_per_cell", [1, 2, 4])
def test_word_line_crosses_every_bit_cell_of_a_multi_bit_cell(bits_per_cell):
    """An SRAM cell of n bit-cells holds one weight's bits on n bit lines, driven by one input:
    the row's word line crosses n bit-cells side by side. 8T at 45 nm: 280 F^2 = 0.567 um^2
    a bit-cell, pitch 0.753 um; (0.2 wire + 1.0 gate) fF/um x n x 0.753 um x n_cols at 1 V.
    Fails where the pitch is the square root of the whole cell (sqrt(n) x too short)."""
    chip = physical_chip(input_drive="pulse_width", wordline_v=1.0, cell_kind="sram_8t")
    chip = chip.replace(device=chip.device.replace(cell="ideal", bits_per_cell=bits_per_cell),
                        weight_bits=max(2, bits_per_cell))
    pitch = math.sqrt(280.0) * 0.045
    want_ff = (0.2 + GATE_CAPACITANCE_FF_PER_UM) * bits_per_cell * pitch * chip.array.n_cols
    assert component_models(chip)[C.DAC].wordline_pj() == pytest.approx(want_ff * 1e-3)
    # a resistive cell is one device: its pitch is its square's (48 F^2 1T1R), whatever bits
    rram = physical_chip(input_drive="pulse_width", wordline_v=1.0)
    rram = rram.replace(device=rram.device.replace(bits_per_cell=bits_per_cell))
    assert component_models(rram)[C.DAC].wordline_pj() == pytest.approx(
        1.2 * math.sqrt(48.0) * 0.045 * rram.array.n_cols * 1e-3)


def test_published_word_line_load_and_supply_known_answer():
    """NeuRRAM's word lines (Wan et al., Nature 2022, Fig. 12b): 256 cells x 2.1 fF + a 48-fF
    driver, swung 1.3 V from a 2.2-V supply: C V_swing V_high = 585.6 fF x 1.3 x 2.2 =
    1.6748 pJ per line (Rabaey's reduced-swing energy); absent the high supply, C V^2."""
    chip = physical_chip(input_drive="pulse_width", wordline_v=1.3, wordline_high_v=2.2,
                         wordline_cap_ff_per_cell=2.1, wordline_driver_cap_ff=48.0)
    chip = chip.replace(array=chip.array.replace(n_rows=256, n_cols=256))
    dac = component_models(chip)[C.DAC]
    assert dac.wordline_pj() == pytest.approx(585.6 * 1.3 * 2.2e-3)
    swing_only = chip.replace(tech=chip.tech.replace(wordline_high_v=None))
    assert component_models(swing_only)[C.DAC].wordline_pj() == pytest.approx(585.6 * 1.69e-3)
    # active rows (the default): each pulse carries its row's word line; no derived switching
    one = dac_energy_pj(1, dac.table)
    assert dac.energy_pj(A.PULSE, 1) == pytest.approx(one + 585.6 * 1.3 * 2.2e-3)
    assert dac.energy_pj(A.WORDLINE) == 0.0


@pytest.mark.parametrize("rows_per_conversion", [None, 64])
def test_every_row_word_lines_switch_per_array_read_whatever_the_input(rows_per_conversion):
    """``every_row``: the estimator derives one word-line switching per row of the group read,
    per read (an array activation), priced at ``wordline_pj``; the pulses then carry none, so
    the energy no longer follows the input density. Was: n_rows per read, so 64-row groups
    of a 256-row array switched 4x the lines they do (the other groups' rows stay off)."""
    base = physical_chip(input_drive="pulse_width", wordline_v=1.3, wordline_high_v=2.2,
                         wordline_cap_ff_per_cell=2.1, wordline_driver_cap_ff=48.0,
                         wordline_switching="every_row")
    chip = base.replace(dac=base.dac.replace(bits=1), input_bits=1,
                        array=base.array.replace(n_rows=256, n_cols=256,
                                                 rows_per_conversion=rows_per_conversion),
                        adc=base.adc.replace(range_policy="full_scale"))
    dac = component_models(chip)[C.DAC]
    assert dac.energy_pj(A.PULSE, 1) == pytest.approx(dac_energy_pj(1, dac.table))
    assert dac.energy_pj(A.WORDLINE) == pytest.approx(585.6 * 1.3 * 2.2e-3)
    rng = np.random.default_rng(0)
    w = rng.integers(-1, 2, (16, chip.array.n_rows))

    def wordline_pj(x: np.ndarray) -> tuple[float, float]:
        _, ev = cimsim.matmul(x, w, chip)
        rep = estimate([layer_work(ev, cimsim.arrays.program(w, chip), name="l")], chip)
        rows = [r for r in rep.events if (r["component"], r["action"]) == ("dac", "wordline")]
        reads = dict(ev.items())[EventKey(C.ARRAY, A.ACTIVATION, 0)]
        return rows[0]["n_events_per_inference"] / reads, rows[0]["energy_pj_per_inference"]

    sparse = (rng.random((8, chip.array.n_rows)) < 0.1).astype(int)
    dense = np.ones((8, chip.array.n_rows), dtype=int)
    (per_read, e_sparse), (_, e_dense) = wordline_pj(sparse), wordline_pj(dense)
    assert per_read == (rows_per_conversion or chip.array.n_rows)
    assert e_sparse == pytest.approx(e_dense)


def test_a_cell_is_written_as_the_cell_it_is_priced_as():
    """Was: the write followed ``device.cell`` and one device while the read and area follow
    the cost cell (``tech.cell_kind``, ``devices_per_cell``): an ``ideal`` cell priced as a
    1T1R cell wrote as an SRAM bit-cell (440x less energy, 1,970x faster rows), and a cell of
    4 PCM devices as one."""
    rram = physical_chip(cell_kind="rram_1t1r")
    as_rram = rram.replace(device=rram.device.replace(cell="ideal"))
    cells = [component_models(c)[C.CELL] for c in (rram, as_rram)]
    assert cells[0].energy_pj(A.WRITE) == cells[1].energy_pj(A.WRITE)
    assert write_time_ns_per_row(rram) == write_time_ns_per_row(as_rram)
    one, four = (component_models(physical_chip(cell_kind="pcm", devices_per_cell=n))[C.CELL]
                 for n in (1, 4))
    assert four.energy_pj(A.WRITE) == pytest.approx(4 * one.energy_pj(A.WRITE))
    # SRAM: one bit-cell per stored bit; parallel devices do not apply and are refused (they
    # were accepted and silently ignored)
    for kind in ("sram_8t", "edram_2t"):
        with pytest.raises(ConfigError, match="devices_per_cell"):
            physical_chip(cell_kind=kind, devices_per_cell=4)
    sram = cimsim.load_chip("sram-65nm")
    with pytest.raises(ConfigError, match="devices_per_cell.*CMOS bit-cell"):
        sram.replace(tech=sram.tech.replace(devices_per_cell=2))


def test_dac_area_known_answer_amplitude_vs_temporal():
    """Amplitude: 2^b unit elements at the survey's SAR area per step (4895 F^2); temporal: a
    1-b driver and a b-bit counter (the tables' figures); tables mode: MNSIM's, unchanged."""
    chip = physical_chip(node_nm=22.0)
    chip = chip.replace(dac=chip.dac.replace(bits=8), input_bits=8)
    amp = component_models(chip)[C.DAC]
    assert amp.area_um2() == pytest.approx(FAMILIES["sar"].area_step_f2 * 256 * 0.022**2)
    table = amp.table
    pw = component_models(chip.replace(tech=chip.tech.replace(input_drive="pulse_width")))
    assert pw[C.DAC].area_um2() == pytest.approx(
        table.dac_area_um2 + 8 * table.shift_add_area_um2_per_bit)
    tables = component_models(chip.replace(tech=chip.tech.replace(cost_model="tables")))
    assert tables[C.DAC].area_um2() == pytest.approx(table.dac_area_um2 * 2**7)
    areas = [component_models(chip.replace(dac=chip.dac.replace(bits=b)))[C.DAC].area_um2()
             for b in (1, 2, 4, 8)]
    assert areas == sorted(areas)


def test_resistive_read_known_answer_amplitude_vs_temporal():
    chip = physical_chip(v_read_v=0.2, t_read_ns=15.0, devices_per_cell=2)
    chip = chip.replace(dac=chip.dac.replace(bits=2))
    g = chip.device.g_lsb_us * 2
    # the charge of one DAC-LSB and cell-LSB, drawn from the supply (vdd_v, or read_supply_v):
    # amplitude, (0.2 / 3) V for the 15-ns pulse; temporal, 0.2 V for one LSB of it, 5 ns
    vdd = chip.tech.vdd_v
    amp = component_models(chip)[C.CELL]
    assert amp.energy_pj(A.V1G_LSB) == pytest.approx(vdd * 0.2 / 3 * g * 15.0 * 1e-3)
    assert amp.energy_pj(A.V2G_LSB) == 0.0
    tem = component_models(chip.replace(tech=chip.tech.replace(input_drive="pulse_width")))
    assert tem[C.CELL].energy_pj(A.V1G_LSB) == pytest.approx(vdd * 0.2 * g * 5.0 * 1e-3)
    assert tem[C.CELL].energy_pj(A.V2G_LSB) == 0.0
    rail = component_models(chip.replace(tech=chip.tech.replace(read_supply_v=0.2)))
    assert rail[C.CELL].energy_pj(A.V1G_LSB) == pytest.approx(0.2 * 0.2 / 3 * g * 15.0 * 1e-3)


def test_read_energy_is_linear_in_x_under_either_drive():
    """One row, one cell: inputs x and 2x. The read's charge doubles under either drive, and
    so does the energy the supply delivers (amplitude: twice the current for the pulse;
    temporal: full current for twice the time); the tables model prices amplitude drive's
    cell dissipation, V^2 G t, which quadruples (energy from the run's own events)."""
    def cell_energy(drive: str, x: int, cost_model: str = "physical") -> float:
        chip = physical_chip(input_drive=drive, cost_model=cost_model)
        chip = chip.replace(input_bits=4, dac=chip.dac.replace(bits=4),
                            adc=chip.adc.replace(range_policy="full_scale"),
                            array=chip.array.replace(n_rows=8, n_cols=8))
        w = np.full((1, 4), 3, dtype=np.int64)
        xs = np.full((1, 4), x, dtype=np.int64)
        _, ev = cimsim.matmul(xs, w, chip)
        block = cimsim.arrays.program(w, chip)
        return estimate([layer_work(ev, block)], chip).energy_by_component()["cell"]

    assert cell_energy("pulse_width", 6) == pytest.approx(2 * cell_energy("pulse_width", 3))
    assert cell_energy("amplitude", 6) == pytest.approx(2 * cell_energy("amplitude", 3))
    assert cell_energy("amplitude", 6, "tables") == pytest.approx(
        4 * cell_energy("amplitude", 3, "tables"))


def test_charge_domain_cell_known_answer():
    base = cimsim.load_chip("jia-jssc20")
    chip = base.replace(tech=base.tech.replace(cost_model="physical", compute_domain="charge",
                                               cap_unit_ff=2.0, vdd_v=0.85,
                                               cell_kind="sram_10t"))
    cell = component_models(chip)[C.CELL]
    assert cell.energy_pj(A.READ, 1) == pytest.approx(0.5 * 2.0 * 0.85**2 * 1e-3)
    # 10T: 280 F^2 x 10 / 8 at 65 nm
    assert cell.area_um2() == pytest.approx(280 * 10 / 8 * 0.065**2)
    with_caps = component_models(chip.replace(tech=chip.tech.replace(
        cap_density_ff_per_um2=2.0)))[C.CELL]
    assert with_caps.area_um2() == pytest.approx(280 * 10 / 8 * 0.065**2 + 1.0)


def test_charge_domain_cell_carries_one_capacitor_per_stored_bit_known_answer():
    """A charge-domain cell holds a unit capacitor for every stored bit: a ``signed_cell``
    weight stores its magnitude bit and its sign bit, two 10T bit-cells (2 x 280 x 10 / 8 F^2
    at 65 nm) and two 2-fF capacitors at 2 fF/um^2 (1 um^2 each). Guards the stored-bits
    factor of the capacitor area (one capacitor per cell would price 1 um^2)."""
    base = cimsim.load_chip("jia-jssc20")
    chip = base.replace(weight_encoding="signed_cell", tech=base.tech.replace(
        cost_model="physical", compute_domain="charge", cap_unit_ff=2.0, vdd_v=0.85,
        cell_kind="sram_10t", cap_density_ff_per_um2=2.0))
    cell = component_models(chip)[C.CELL]
    assert cell.area_um2() == pytest.approx(2 * 280 * 10 / 8 * 0.065**2 + 2 * 2.0 / 2.0)
    # and both bits' capacitors switch on a product: C V^2 / 2 per stored bit
    assert cell.energy_pj(A.READ, 1) == pytest.approx(2 * 0.5 * 2.0 * 0.85**2 * 1e-3)


def test_cell_kinds_and_multi_device_area():
    # SRAM by transistor count from NeuroSim's 280-F^2 8T cell: 7T (a 6T cell with one read
    # transistor) 280 x 7 / 8 = 245 F^2
    for kind, f2 in (("rram_1t1r", 48.0), ("pcm", 48.0), ("sram_6t", 210.0),
                     ("sram_7t", 245.0), ("sram_8t", 280.0)):
        resistive = kind in ("rram_1t1r", "pcm")
        chip = physical_chip(cell_kind=kind, devices_per_cell=3 if resistive else 1)
        # resistive: devices in parallel; SRAM: one bit-cell per stored bit (2 b per cell here)
        n = 3 if resistive else chip.device.bits_per_cell
        assert component_models(chip)[C.CELL].area_um2() == pytest.approx(
            f2 * n * 0.045**2), kind
    chip = physical_chip(cell_area_f2=100.0)
    assert component_models(chip)[C.CELL].area_um2() == pytest.approx(100 * 0.045**2)
    chip = physical_chip(cell_area_f2=100.0, weight_sets_stored=8)
    assert component_models(chip)[C.CELL].area_um2() == pytest.approx(800 * 0.045**2)


def test_sram_7t_cell_kind_round_trips_and_a_bad_kind_names_the_choices():
    chip = physical_chip(cell_kind="sram_7t")
    assert ChipConfig.from_dict(tomllib.loads(chip.to_toml())) == chip
    # between the 6T and 8T cells by transistor count (the word line's pitch follows)
    areas = [component_models(physical_chip(cell_kind=k))[C.CELL].area_um2()
             for k in ("sram_6t", "sram_7t", "sram_8t")]
    assert areas[0] < areas[1] < areas[2]
    with pytest.raises(ConfigError, match="cell_kind.*'sram_7t'"):
        physical_chip(cell_kind="sram_9t")


# ---------------------------------------------------------------------------------------------
# monotonic where physics says so
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [k.value for k in CONVERTER_KINDS])
def test_adc_energy_area_time_grow_with_bits(kind):
    prev = None
    for bits in range(1, 11):
        adc = component_models(with_adc(physical_chip(), kind, bits))[C.ADC]
        now = (adc.energy_pj(A.CONVERT, bits), adc.area_um2(), adc.time_ns(A.CONVERT, bits))
        if prev is not None:
            assert all(b >= a for a, b in zip(prev, now, strict=True)), (kind, bits)
        prev = now


@pytest.mark.parametrize("kind", [k.value for k in CONVERTER_KINDS])
def test_adc_energy_grows_with_supply_and_node(kind):
    def e(**tech):
        return component_models(with_adc(physical_chip(**tech), kind, 6))[C.ADC].energy_pj(
            A.CONVERT, 6)

    assert e(vdd_v=0.6) < e(vdd_v=0.8) < e(vdd_v=1.0)
    assert e(node_nm=7.0) < e(node_nm=22.0) < e(node_nm=65.0) < e(node_nm=130.0)


def test_fits_are_the_documented_constants():
    assert {f: (v.fom_45nm_fj, v.slope) for f, v in FAMILIES.items()} == {
        "sar": (5.68, 0.30), "flash": (59.32, 0.82), "time": (18.07, 0.93)}


# ---------------------------------------------------------------------------------------------
# schema: validated fields with units, TOML round trip, power gating
# ---------------------------------------------------------------------------------------------
def test_new_fields_round_trip_through_toml():
    chip = physical_chip(input_drive="pulse_width", compute_domain="charge", cell_kind="pcm",
                         devices_per_cell=2, cell_area_f2=60.0, cap_unit_ff=1.5,
                         cap_density_ff_per_um2=2.0, wordline_v=1.2, t_integrate_ns=40.0,
                         weight_sets_stored=4, wordline_high_v=2.0,
                         wordline_cap_ff_per_cell=2.1, wordline_driver_cap_ff=48.0,
                         wordline_switching="every_row",
                         power_gating="layer")
    chip = with_adc(chip, "integrate_fire", 5)
    assert ChipConfig.from_dict(tomllib.loads(chip.to_toml())) == chip


@pytest.mark.parametrize("field, value", [
    ("cost_model", "magic"), ("input_drive", "pwm"), ("compute_domain", "photonic"),
    ("cell_kind", "sram_9t"), ("devices_per_cell", 0), ("devices_per_cell", 1.5),
    ("cell_area_f2", 0.0), ("cap_unit_ff", -1.0), ("cap_density_ff_per_um2", -1.0),
    ("wordline_v", 0.0), ("t_integrate_ns", 0.0), ("power_gating", "sometimes"),
    ("weight_sets_stored", 0), ("wordline_high_v", 0.0), ("wordline_cap_ff_per_cell", 0.0),
    ("wordline_high_v", 0.5),  # below the swing (vdd_v 0.8 V): a supply cannot give it
    ("wordline_driver_cap_ff", -1.0), ("wordline_switching", "some_rows")])
def test_bad_fields_raise_config_error_naming_them(field, value):
    tech = cimsim.load_chip("rram-22nm").tech
    with pytest.raises(ConfigError, match=field):
        tech.replace(**{field: value})


def test_power_gating_charges_leakage_only_while_the_layer_runs():
    chip = cimsim.load_chip("rram-22nm")
    chip = chip.replace(adc=chip.adc.replace(range_policy="full_scale"))
    rng = np.random.default_rng(0)
    w1, w2 = rng.integers(-50, 50, (64, 256)), rng.integers(-50, 50, (8, 64))
    x1, x2 = rng.integers(0, 255, (16, 256)), rng.integers(0, 255, (16, 64))

    def leak(gating: str) -> float:
        c = chip.replace(tech=chip.tech.replace(power_gating=gating))
        works = []
        for i, (x, w) in enumerate(((x1, w1), (x2, w2))):
            _, ev = cimsim.matmul(x, w, c)
            works.append(layer_work(ev, cimsim.arrays.program(w, c), name=f"l{i}"))
        rep = estimate(works, c)
        return sum(r["energy_pj_per_inference"] for r in rep.events if r["action"] == "leak")

    assert 0 < leak("layer") < leak("none")


# ---------------------------------------------------------------------------------------------
# datasheet
# ---------------------------------------------------------------------------------------------
def test_datasheet_figures_are_consistent():
    d = datasheet("sram-65nm")
    assert d["basis"] == "predicted" and d["scope"] == "macro"
    bits = 8 * 8
    assert d["tops_per_w_1b"] == pytest.approx(d["tops_per_w"] * bits)
    assert d["tops_per_mm2"] == pytest.approx(d["tops"] / d["area_mm2"])
    assert d["tops_per_w"] == pytest.approx(1 / d["energy_pj_per_op"])
    chip = datasheet("sram-65nm", scope="chip")
    assert chip["area_mm2"] > d["area_mm2"] and chip["tops"] > d["tops"]
    assert datasheet("sram-65nm", input_density=0.25)["tops_per_w"] > d["tops_per_w"]


def test_datasheet_calibrated_is_opt_in():
    raw = datasheet("jia-jssc20")
    cal = datasheet("jia-jssc20", calibrated=True)
    assert not raw["calibrated"] and cal["calibrated"] and cal["basis"] == "calibrated"
    assert cal["tops_per_w"] != pytest.approx(raw["tops_per_w"])


@pytest.mark.parametrize("kwargs", [dict(scope="tile"), dict(input_density=0.0),
                                    dict(input_density=1.5), dict(input_density=True)])
def test_datasheet_bad_arguments(kwargs):
    with pytest.raises(ConfigError):
        datasheet("sram-65nm", **kwargs)


def test_cli_datasheet(capsys):
    from cimsim.cli import main

    assert main(["datasheet", "sram-65nm", "--scope", "chip"]) == 0
    out = capsys.readouterr().out
    assert "TOPS/W" in out and "TOPS/mm2" in out and "predicted" in out
    assert main(["datasheet", "no-such-chip"]) == 2


def test_derived_keys_stay_registered():
    assert DERIVED <= set(REGISTRY)


def test_gated_leakage_on_a_time_multiplexed_chip_counts_each_layers_own_arrays():
    """Under ``power_gating = 'layer'`` a layer's converters leak while it runs, on as many of
    its arrays as the chip holds at once: a layer that fits leaks as on a chip large enough for
    the whole model (it leaked x chip arrays / the model's arrays), and a layer larger than
    the chip leaks on the chip's arrays over its turns (its latency counts them). Without
    gating, the chip's arrays are shared out among the layers (cost-model.md §4)."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(300, 50), torch.nn.ReLU(),
                                torch.nn.Linear(50, 30), torch.nn.ReLU(),
                                torch.nn.Linear(30, 10))
    x = torch.randn(32, 300)
    base = cimsim.load_chip("rram-22nm")

    def leaks(n_tiles: int, per_tile: int, gating: str) -> tuple[dict, dict, dict]:
        chip = base.replace(tech=base.tech.replace(power_gating=gating),
                            array=base.array.replace(n_tiles=n_tiles, arrays_per_tile=per_tile,
                                                     allow_time_multiplexing=True))
        sim = cimsim.deploy(model, chip, calibration=x, seed=0)
        sim(x[:4])
        rep = estimate(sim.work())
        leak = {r["layer"]: r["n_events_per_inference"] for r in rep.events
                if r["action"] == "leak"}
        rows = {r["layer"]: r for r in rep.layers}
        return (leak, {k: rows[k]["n_arrays"] for k in leak},
                {k: rows[k]["latency_ns_per_inference"] for k in leak})

    big, arrays, lat_big = leaks(168, 16, "layer")
    small, arrays_small, lat = leaks(1, 4, "layer")
    assert arrays == arrays_small and sum(arrays.values()) > 4
    adcs = base.array.adcs_per_array
    for layer, n in arrays.items():
        if n <= 4:  # fits: its leakage is the one on the large chip
            assert lat[layer] == pytest.approx(lat_big[layer])
            assert small[layer] == pytest.approx(big[layer])
        else:  # in turns on the chip's 4 arrays, for its whole (longer) run
            assert lat[layer] > lat_big[layer]
            assert small[layer] == pytest.approx(big[layer] * 4 / n * lat[layer] / lat_big[layer])
            assert small[layer] <= 4 * adcs * lat[layer] * (1 + 1e-9)
    assert any(n > 4 for n in arrays.values()) and any(n <= 4 for n in arrays.values())
    # ungated: every layer's arrays leak over the whole inference, the chip's 4 shared out
    ungated, _, _ = leaks(1, 4, "none")
    for layer in arrays:
        assert ungated[layer] > small[layer]


@pytest.mark.parametrize("cost_model", ["physical", "tables"])
def test_stored_weight_sets_hold_layers_without_rewriting_them(cost_model):
    """A compute cell storing S weight sets holds S x the chip's arrays of weights: a model
    within that deploys without time-multiplexing and is never rewritten, its layers taking
    turns on the arrays (its latency counts them; it was refused, then charged a reload), and
    its cells' area counts every set under either cost model."""
    import torch

    from cimsim.errors import CapacityError

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64))
    x = torch.randn(32, 64)
    base = cimsim.load_chip("published/wu-jssc23")  # one 64 x 512 array, 32 sets stored
    base = base.replace(tech=base.tech.replace(cost_model=cost_model))
    assert base.array.n_arrays == 1 and base.array_slots == 32

    def run(chip):
        sim = cimsim.deploy(model, chip, calibration=x, seed=0)
        sim(x[:4])
        return sim.report().totals

    held = run(base)
    assert held["n_arrays_used"] == 2 and held["time_multiplexed"]
    assert held["reprogramming_latency_ns_per_inference"] == 0.0
    one_set = base.replace(tech=base.tech.replace(weight_sets_stored=1))
    with pytest.raises(CapacityError, match="needs 2 arrays .* the chip has 1 "):
        cimsim.deploy(model, one_set, calibration=x, seed=0)
    rewritten = run(one_set.replace(array=one_set.array.replace(allow_time_multiplexing=True)))
    assert rewritten["reprogramming_latency_ns_per_inference"] > 0
    assert held["latency_ns_per_inference"] == pytest.approx(
        rewritten["latency_ns_per_inference"]
        - rewritten["reprogramming_latency_ns_per_inference"])
    cell = {c: component_models(chip)[C.CELL].area_um2() for c, chip in
            (("held", base), ("one", one_set))}
    assert cell["held"] == pytest.approx(32 * cell["one"])
    # more than the chip holds: refused naming the sets
    two = base.replace(tech=base.tech.replace(weight_sets_stored=2))
    deep = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(3)])
    with pytest.raises(CapacityError, match=r"the chip has 2 \(1 tile x 1 array x 2 weight "
                                            r"sets stored\)"):
        cimsim.deploy(deep, two, calibration=x, seed=0)

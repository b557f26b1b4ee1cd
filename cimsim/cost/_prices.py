"""The technology tables' prices and the calibrations (``tech.cost_model = "tables"``).

The building blocks :mod:`.models` prices with when a chip uses the ``tables`` cost model, and
the helpers every model shares; :mod:`.energy` is the public face (``event_energy_pj``,
``PRICES``) and re-exports what is here. Three rules apply to the table prices:

* CMOS energies (ADC, DAC, SRAM bit-cells, digital, buffers, links) are the tables' values at
  0.8 V times ``(chip.tech.vdd_v / 0.8) ** 2`` (dynamic energy C V^2; the Stillmaker-Baas
  factors are evaluated at 0.8 V, docs/technology.md §1).
* RRAM reads are physics, E = V^2 G t, from the conductance the run summed
  (``cell.v2g_lsb``), the chip's read voltage, cell-LSB conductance and read pulse. RRAM
  programming is the tables' write energy per stored bit (device physics, not CMOS-scaled).
* Leakage is charged only where a source gives a number: ADC leakage power = 20 % of the ADC's
  dynamic power at its design rate (the hwcomponents-adc assumption, docs/technology.md). It
  needs a time, so the estimator (``cimsim.cost.estimate``) derives it as ``adc.leak`` events
  counted in ADC-nanoseconds. The refresh of eDRAM cells is a static power too (every stored
  bit read and written back once per retention time), derived as ``cell.refresh`` events
  counted in cell-nanoseconds.

A :class:`Calibration` multiplies energies (and areas, and the ADC conversion time) per
component. The presets matched to published chips carry documented calibrations
(:data:`CALIBRATIONS`, ``docs/validation.md``), as NeuroSim's alpha..zeta factors and
CiMLoop's per-macro ADC/driver scales do; every other chip is uncalibrated.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..arrays.program import sensed_cells
from ..config import (
    ADCKind,
    ArrayConfig,
    CellKind,
    CellTech,
    ChipConfig,
    CostModel,
    WeightEncoding,
    _is_real,
)
from ..events import Component
from .tables import (
    MAX_ADC_BITS,
    TechTable,
    adc_conversion_time_ns,
    adc_energy_pj,
    buffer_energy_pj_per_bit,
    dac_conversion_time_ns,
    dac_energy_pj,
    sense_amp_energy_fj,
    tech_table,
)

__all__ = [
    "CALIBRATIONS",
    "COMPONENTS",
    "EDRAM_RETENTION_NS",
    "FEFET_1T_CELL_AREA_F2",
    "FEFET_WRITE_PULSE_NS",
    "FLASH_NOR_CELL_AREA_F2",
    "MRAM_WRITE_ENERGY_PJ_PER_BIT",
    "MRAM_WRITE_PULSE_NS",
    "SUPPLY_REF_V",
    "read_levels",
    "sense_decision_pj",
    "sensed_cells",
    "TRANSISTOR_CELL_AREA_F2",
    "TILE_BUFFER_KIB",
    "Calibration",
    "table_adc_time_ns",
    "calibration_for",
    "chip_table",
    "retention_ns",
    "stored_bits_per_cell",
    "supply_factor",
    "table_adc_bits",
]

MRAM_WRITE_ENERGY_PJ_PER_BIT = 0.194
"""MRAM (STT) write energy per cell, pJ: NVSim's STT-RAM cell, 40.82 uA for 5 ns (Dong, Xu,
Xie & Jouppi, IEEE TCAD 31(7), 2012; its sample_STTRAM.cell: SetEnergy = ResetEnergy =
0.194 pJ). One pulse switches the junction: no write-verify ladder as RRAM's."""

MRAM_WRITE_PULSE_NS = 5.0
"""MRAM (STT) write pulse, ns (the same NVSim cell): the time to write one row."""

FEFET_1T_CELL_AREA_F2 = 0.025 / 0.022**2
"""FeFET (1T) cell area, F^2: 0.025 um^2 at 22 nm (51.7 F^2), the smallest cell of GlobalFoundries'
22 nm FDSOI FeFET eNVM (Duenkel et al., "A FeFET based super-low-power ultra-fast embedded NVM
technology for 22nm FDSOI and beyond", IEDM 2017, abstract). One transistor is the storage and
the access device: no separate selector."""

FEFET_WRITE_PULSE_NS = 10.0
"""FeFET write pulse, ns: the 10-ns program / erase pulses at 4.2 V of the same 22 nm arrays
(Duenkel et al., IEDM 2017, abstract): the time to write one row, one pulse (a multi-level
write-verify ladder is not modelled, so a lower bound for bits_per_cell > 1)."""

FLASH_NOR_CELL_AREA_F2 = 0.33 / 0.055**2
"""NOR-flash cell area, F^2: 0.33 um^2 per cell at 55 nm (109 F^2), commercial 55 nm NOR flash
cells in arrays redesigned for analog vector-by-matrix multiplication (Guo, Merrikh Bayat,
Prezioso, Chen, Nguyen, Do & Strukov, "Temperature-insensitive analog vector-by-matrix
multiplier based on 55 nm NOR flash memory cells", CICC 2017, arXiv:1611.03379, abstract)."""

TRANSISTOR_CELL_AREA_F2 = {CellTech.FEFET: FEFET_1T_CELL_AREA_F2,
                           CellTech.FLASH: FLASH_NOR_CELL_AREA_F2}
"""Cells read through a transistor channel, priced by their own area in both cost models (the
tables hold no FeFET or flash cell to borrow, as PCM and MRAM borrow RRAM's)."""

EDRAM_RETENTION_NS = {CellKind.EDRAM_2T: 110e3, CellKind.EDRAM_3T: 77e3}
"""Published data retention time of each gain-cell kind, ns (``tech.retention_ns`` unstated):
2T 110 us, the refresh period measured at a 99.9 % bit yield of a 192-kb 65-nm LP asymmetric
2T gain-cell eDRAM at 1.1 V and 85 C (Chun, Jain, Kim & Kim, "A 667 MHz logic-compatible
embedded DRAM featuring an asymmetric 2T gain cell for high speed on-die caches", IEEE JSSC
47(2), 2012, abstract); 3T 77 us, measured on a 1-Mbit mixed-VT 3T gain-cell eDRAM in 16-nm
FinFET at 600 mV (Giterman, Shalom, Burg, Fish & Teman, "A 1-Mbit fully logic-compatible 3T
gain-cell embedded DRAM in 16-nm FinFET", IEEE SSC-L 3, 2020, abstract). Not node- or
temperature-scaled: no source read gives a law."""

SUPPLY_REF_V = 0.8
"""Supply voltage of the technology tables, V (docs/technology.md §1)."""

TILE_BUFFER_KIB = ArrayConfig().tile_buffer_kib
"""The default on-tile buffer size, KiB (``array.tile_buffer_kib``): ISAAC's 64 KB eDRAM per
tile (Shafiee et al., ISCA 2016, Table 1). A buffer's access energy per bit is the Horowitz
SRAM figure at its size (``buffer_energy_pj_per_bit``), its area the ISAAC eDRAM area per
bit."""

COMPONENTS: tuple[str, ...] = tuple(
    c.value for c in (Component.CELL, Component.DAC, Component.ADC, Component.SHIFT_ADD,
                      Component.ACCUMULATOR, Component.DIGITAL, Component.BUFFER,
                      Component.INTERCONNECT, Component.WEIGHTING, Component.BLOCK_FP))
"""Cost components, in report order: the event components of ``cimsim.events`` that spend
energy (``layer`` and ``array`` events are counts with no energy of their own; a test holds the
two lists together)."""


@dataclass(frozen=True)
class Calibration:
    """Per-component multipliers fitted to a published chip (1.0 where not given).

    Attributes
    ----------
    energy : mapping of component -> factor
        Multiplies the energy of every event of that component (leakage follows ``adc``).
    area : mapping of component -> factor
        Multiplies the area of every instance of that component.
    adc_time_scale : float
        Multiplies the ADC conversion time.
    note : str
        Where the factors come from (printed in reports and ``docs/validation.md``).
    """

    energy: Mapping[str, float] = field(default_factory=dict)
    area: Mapping[str, float] = field(default_factory=dict)
    adc_time_scale: float = 1.0
    note: str = ""

    def __post_init__(self) -> None:
        for name in ("energy", "area"):
            table = dict(getattr(self, name))
            for comp, factor in table.items():
                if comp not in COMPONENTS:
                    raise ValueError(f"Calibration.{name}: unknown component {comp!r}; "
                                     f"components: {COMPONENTS}")
                if not (_is_real(factor) and math.isfinite(factor) and factor > 0):
                    raise ValueError(f"Calibration.{name}[{comp!r}] = {factor!r}; need > 0")
                table[comp] = float(factor)  # NumPy's too; a bool is no factor
            object.__setattr__(self, name, MappingProxyType(table))
        if not (_is_real(self.adc_time_scale) and math.isfinite(self.adc_time_scale)
                and self.adc_time_scale > 0):
            raise ValueError(f"Calibration.adc_time_scale = {self.adc_time_scale!r}; need > 0")
        object.__setattr__(self, "adc_time_scale", float(self.adc_time_scale))

    def e(self, component: str) -> float:
        return float(self.energy.get(component, 1.0))

    def a(self, component: str) -> float:
        return float(self.area.get(component, 1.0))

    @property
    def is_identity(self) -> bool:
        return (all(v == 1.0 for v in self.energy.values())
                and all(v == 1.0 for v in self.area.values()) and self.adc_time_scale == 1.0)

    def to_dict(self) -> dict:
        return {"energy": dict(self.energy), "area": dict(self.area),
                "adc_time_scale": self.adc_time_scale, "note": self.note}


NO_CALIBRATION = Calibration(note="none (no per-chip factor: the cost model as it is)")

# Fitted by scripts/validate_presets.py's ``fit`` step from the published component numbers at
# ONE operating point each (the fit point); every other operating point is a check. The
# numbers and their derivation are in docs/validation.md, section "Calibration".
CALIBRATIONS: dict[str, Calibration] = {
    "jia-jssc20": Calibration(
        energy={"adc": 0.421, "cell": 3.10},
        area={"adc": 0.496, "cell": 4.17},
        note=("jia-jssc20, fitted at 0.85 V to Jia et al. JSSC'20 [CL]: ADC 1.79 pJ per "
              "conversion (leakage included); CiM array + drivers 9.7 pJ per column per 1-b "
              "cycle at the validation workload (25 % input-bit density); ADC area 0.497 mm^2; "
              "CiM area 2.91 mm^2 (10T + MOM-capacitor bit-cell)"),
    ),
    "wang-vlsi22": Calibration(
        energy={"adc": 1.99, "dac": 0.259, "cell": 7.30},
        area={"adc": 1.53, "dac": 50.0, "cell": 51.4},
        adc_time_scale=0.45,
        note=("wang-vlsi22, fitted at 0.7 V to Wang et al. VLSI'22 [CL]: energy shares ADC 34 % "
              "/ DAC 22 % / MAC 40 % at 32.0 TOPS/W; area shares ADC 13 % / DAC 30 % / MAC 46 % "
              "of 0.124 mm^2 (R-2R DACs and C-2C ladders are not in the tables); ADC conversion "
              "time x 0.45 to fit the 4.2-ns cycle at 1.1 V"),
    ),
    "isaac-32nm": Calibration(
        area={"cell": 4.0 / 48.0},
        adc_time_scale=(1.0 / 1.2) / 9.0,
        note=("isaac-32nm: ISAAC's ADC (Kull ISSCC'13) converts at 1.2 GS/s "
              "(hwcomponents-library isaac.py), not in (b+1) ns as the tables' NeuroSim SAR "
              "timing: time x 0.0926; ISAAC's arrays are passive crossbars: cell area 4 F^2 "
              "(Shafiee et al., ISCA 2016), not the 1T1R 48 F^2 of the tables: area x 1/12"),
    ),
}
"""Calibrations of the presets matched to published chips, by preset name."""


def calibration_for(chip: ChipConfig) -> Calibration:
    """The calibration of a preset matched to a published chip, else none.

    Matched by ``chip.name`` and by what its factors were fitted for: the preset's node, cell
    technology and cost model. An edited copy of the preset that keeps its name but moves
    node or cell (a user's "jia-jssc20 at 28 nm") is a new chip, priced uncalibrated; an
    operating point of the preset (its supply, cycle, converter bits) keeps the factors, as
    the validation's check points do (``docs/validation.md``). The ADC factors (energy,
    leakage, area and conversion time) were fitted to the preset's converter: on another
    ``adc.kind`` (a sweep's ``--adc-kind flash`` on ``jia-jssc20``) they are dropped and the
    converter is predicted, the other components' factors kept."""
    cal = CALIBRATIONS.get(chip.name)
    if cal is None:
        return NO_CALIBRATION
    node, cell, cost_model, adc_kind = _fitted_for(chip.name)
    if (node, cell, cost_model) != (chip.tech.node_nm, chip.device.cell, chip.tech.cost_model):
        return NO_CALIBRATION
    if chip.adc.kind is not adc_kind:
        return _without_adc(cal, adc_kind.value, chip.adc.kind.value)
    return cal


def _without_adc(cal: Calibration, fitted_kind: str, kind: str) -> Calibration:
    """``cal`` without its converter's factors (another converter kind than the fitted one)."""
    rest = Calibration(
        energy={k: v for k, v in cal.energy.items() if k != Component.ADC.value},
        area={k: v for k, v in cal.area.items() if k != Component.ADC.value},
        note=(f"{cal.note}; ADC factors dropped: fitted to a {fitted_kind} converter, "
              f"this chip's is {kind}"))
    return NO_CALIBRATION if rest.is_identity else rest


@functools.cache
def _fitted_for(name: str) -> tuple:
    """(node, cell, cost model, ADC kind) of the bundled preset ``name``: what its factors
    fit."""
    from ..config import load_chip

    preset = load_chip(name)
    return (preset.tech.node_nm, preset.device.cell, preset.tech.cost_model, preset.adc.kind)


def chip_table(chip: ChipConfig) -> TechTable:
    """The technology table at the chip's node and ADC band."""
    return tech_table(chip.tech.node_nm, chip.tech.adc_band)


def supply_factor(chip: ChipConfig) -> float:
    """``(vdd_v / 0.8) ** 2``: CMOS dynamic energy relative to the tables' supply."""
    return (chip.tech.vdd_v / SUPPLY_REF_V) ** 2


def stored_bits_per_cell(chip: ChipConfig) -> int:
    """Bits one cell holds as far as cost goes.

    RRAM: ``bits_per_cell`` in one device. SRAM: one bit-cell. ``ideal`` cells are costed as
    charge-domain SRAM (C-2C-like) cells: one SRAM bit-cell per stored bit, plus the sign bit of
    a ``signed_cell`` encoding.
    """
    bits = chip.device.bits_per_cell
    if chip.weight_encoding is WeightEncoding.SIGNED_CELL:
        bits += 1
    return bits


def table_adc_bits(bits: int) -> int:
    """ADC resolution the tables are read at: at most their 16 b (a 24-b lossless reference
    ADC is costed as a 16-b one, a lower bound; reports say so)."""
    return min(int(bits), MAX_ADC_BITS)


def table_adc_time_ns(chip: ChipConfig, table: TechTable, calibration: Calibration) -> float:
    """One conversion of the chip's ADC by the tables (or as the chip states it,
    ``adc.t_conversion_ns``), ns, x calibration."""
    if chip.adc.t_conversion_ns is not None:
        return chip.adc.t_conversion_ns * calibration.adc_time_scale
    return adc_conversion_time_ns(chip.adc.kind, table_adc_bits(chip.adc.bits), table,
                                  chip.tech.clock_mhz, chip.adc.tdc_architecture
                                  ) * calibration.adc_time_scale


def _resistive(chip: ChipConfig) -> bool:
    # PCM, MRAM, FeFET and flash cells are read by current through a programmed conductance,
    # costed as RRAM's here (FeFET and flash with their own cell area)
    return chip.device.cell.resistive


def read_levels(chip: ChipConfig) -> int:
    """Steps the read voltage of one cell read is divided into, ``2^d - 1`` for ``d =
    dac.bits`` (an amplitude drive's LSB is ``V_read / (2^d - 1)``); 1 for a cell sensed to its
    bit under a digital read-out (:func:`sensed_cells`): its row is read once at the full read
    voltage per nonzero input slice and the bit then gates the slice in logic, and the run
    counts those reads (``cimsim.engine``; the same as x^2 at ``d = 1``)."""
    return 1 if sensed_cells(chip) else 2**chip.dac_bits - 1


def sense_decision_pj(chip: ChipConfig, cal: Calibration) -> float:
    """One sense-amplifier decision of a sensed cell (:func:`sensed_cells`), pJ: the 1-b
    decision the converter models price a 1-b conversion at (the tables' sense amp, MNSIM
    2.0, by node; :func:`.tables.sense_amp_energy_fj`), supply-scaled. Calibrated as the
    read-out (``adc``) it is."""
    return sense_amp_energy_fj(chip.tech.node_nm) * 1e-3 * supply_factor(chip) * cal.e("adc")


def table_cell_area_um2(chip: ChipConfig, table: TechTable) -> float:
    """One resistive cell's area by the tables: FeFET and flash their own F^2 at the node, the
    other NVM cells RRAM's 1T1R."""
    f2 = TRANSISTOR_CELL_AREA_F2.get(chip.device.cell)
    if f2 is None:
        return table.rram_cell_area_um2
    return f2 * table.feature_size_um**2


def _cell_pitch_um(chip: ChipConfig, table: TechTable) -> float:
    if _resistive(chip):
        return math.sqrt(table_cell_area_um2(chip, table))
    return math.sqrt(table.sram_cell_area_um2 * stored_bits_per_cell(chip))


def dac_pulse_energy_pj(chip: ChipConfig, table: TechTable, calibration: Calibration,
                        bits: int) -> float:
    """One row-driver pulse, pJ: the DAC and the word line it charges.

    * DAC: the table's ``bits``-bit DAC energy (MNSIM: power x its (b+2)-ns conversion). A
      resistive array loads the driver for the whole read pulse, so for RRAM the DAC's power is
      held for ``max(t_read, t_dac)`` (ISAAC's 4 mW per 1024 DACs over a 100-ns read is its
      0.4-pJ per-activation figure, Shafiee et al., ISCA 2016, Table 1). Charge-domain (SRAM)
      drivers switch once.
    * Word line: ``C V^2`` with ``C = 0.2 fF/um x n_cols x cell pitch`` (docs/technology.md) at the
      read voltage (an upper bound for multi-bit DACs, whose lines swing less).
    """
    e_dac = dac_energy_pj(bits, table) * supply_factor(chip)
    if _resistive(chip):
        e_dac *= max(chip.tech.t_read_ns, dac_conversion_time_ns(bits, table)) / (
            dac_conversion_time_ns(bits, table))
    c_ff = table.wire_capacitance_ff_per_um * chip.array.n_cols * _cell_pitch_um(chip, table)
    e_wire = c_ff * chip.tech.v_read_v**2 * 1e-3  # fF * V^2 = fJ
    return (e_dac + e_wire) * calibration.e("dac")


# A table price: f(chip, table, calibration, bits) -> pJ.
_Price = Callable[[ChipConfig, TechTable, Calibration, int], float]


def _count_only(chip: ChipConfig, table: TechTable, cal: Calibration, bits: int) -> float:
    """Counts with no energy of their own (MACs, array read cycles, reprogrammed arrays: what a
    reprogramming costs is its ``cell.write`` events)."""
    return 0.0


def _adc_convert(chip: ChipConfig, table: TechTable, cal: Calibration, bits: int) -> float:
    return (adc_energy_pj(chip.adc.kind, table_adc_bits(bits), table, chip.adc.tdc_architecture)
            * supply_factor(chip)
            * cal.e("adc"))


def _adc_leak(chip: ChipConfig, table: TechTable, cal: Calibration, bits: int) -> float:
    """Per ADC-nanosecond: leakage power (mW = pJ/ns) = a fraction of the dynamic power at the
    design rate; none for a time-to-digital converter (CMOS logic, whose leakage is not priced,
    as the digital adder trees')."""
    if chip.adc.kind is ADCKind.TDC:
        return 0.0
    return (table.adc_leakage_fraction_of_dynamic * _adc_convert(chip, table, cal, bits)
            / table_adc_time_ns(chip, table, cal))


def retention_ns(chip: ChipConfig) -> float:
    """Data retention time of an eDRAM chip's cells, ns: ``tech.retention_ns``, else the cell
    kind's published one (:data:`EDRAM_RETENTION_NS`; a kind that is not a gain cell's, or
    none: the default 3T cell's)."""
    if chip.tech.retention_ns is not None:
        return chip.tech.retention_ns
    kind = chip.tech.cell_kind
    return EDRAM_RETENTION_NS.get(kind, EDRAM_RETENTION_NS[CellKind.EDRAM_3T])  # type: ignore[arg-type]


def _cell_refresh(chip: ChipConfig, table: TechTable, cal: Calibration, bits: int) -> float:
    """Per cell-nanosecond a weight is held: refresh power (mW = pJ/ns) of one eDRAM cell.
    Every stored bit (of every weight set) is read through the read port and written back once
    per retention time: the tables' SRAM bit-cell read plus write energy, supply-scaled, over
    ``retention_ns``. Cells that are not eDRAM hold their bits without refresh: 0."""
    if chip.device.cell is not CellTech.EDRAM:
        return 0.0
    held = stored_bits_per_cell(chip) * chip.tech.weight_sets_stored
    e_bit = ((table.sram_cim_bitcell_read_energy_fj + table.sram_cim_bitcell_write_energy_fj)
             * 1e-3 * supply_factor(chip))
    return held * e_bit * cal.e("cell") / retention_ns(chip)


def _dac_pulse(chip: ChipConfig, table: TechTable, cal: Calibration, bits: int) -> float:
    return dac_pulse_energy_pj(chip, table, cal, bits)


def _cell_read(chip: ChipConfig, table: TechTable, cal: Calibration, bits: int) -> float:
    if sensed_cells(chip):
        # a digital read-out's sense amplifier decides the cell's bit; the read current is
        # priced by the summed conductance (cell.v2g_lsb), as any resistive read
        return sense_decision_pj(chip, cal)
    if _resistive(chip):
        return 0.0  # RRAM: priced by the summed conductance (cell.v2g_lsb)
    return (stored_bits_per_cell(chip) * table.sram_cim_bitcell_read_energy_fj * 1e-3
            * supply_factor(chip) * cal.e("cell"))


def _cell_v2g_lsb(chip: ChipConfig, table: TechTable, cal: Calibration, bits: int) -> float:
    if not _resistive(chip):
        return 0.0  # SRAM: priced per bit-cell read (cell.read)
    v_lsb = chip.tech.v_read_v / read_levels(chip)
    # V^2 * uS * ns = 1e-15 J = 1e-3 pJ
    return v_lsb**2 * chip.device.g_lsb_us * chip.tech.t_read_ns * 1e-3 * cal.e("cell")


_KIND_TECH = {CellKind.RRAM_1T1R: CellTech.RRAM, CellKind.PCM: CellTech.PCM,
              CellKind.MRAM_1T1MTJ: CellTech.MRAM, CellKind.FEFET_1T: CellTech.FEFET,
              CellKind.FLASH_NOR: CellTech.FLASH, CellKind.EDRAM_2T: CellTech.EDRAM,
              CellKind.EDRAM_3T: CellTech.EDRAM}
"""The technology of each cost-model cell kind (the SRAM bit-cells: ``sram``)."""


def written_cell(chip: ChipConfig) -> tuple[CellTech, int]:
    """The technology a cell's write is priced as, and the devices written per cell: under
    the physical cost model its priced cell's (``tech.cell_kind``; a resistive cell's
    ``tech.devices_per_cell``), as its read and area are (an ``ideal`` simulated cell priced
    as a 1T1R cell is written as one); under the tables, ``device.cell`` and one device."""
    if chip.tech.cost_model is not CostModel.PHYSICAL:
        return chip.device.cell, 1
    kind = chip.tech.cell_kind
    tech = chip.device.cell if kind is None else _KIND_TECH.get(kind, CellTech.SRAM)
    return tech, chip.tech.devices_per_cell if tech.resistive else 1


def _cell_write(chip: ChipConfig, table: TechTable, cal: Calibration, bits: int) -> float:
    """One cell programmed (:func:`written_cell`: every device of it): every stored bit
    written (RRAM, PCM: the tables' RRAM write; MRAM: one STT switching pulse; device physics,
    not supply-scaled; SRAM: a CMOS bit-cell write). FeFET and flash: the RRAM write too, for
    want of a published write energy per cell (an upper bound for a FeFET's field-driven
    switching; docs/technology.md)."""
    cell, devices = written_cell(chip)
    n_bits = stored_bits_per_cell(chip) * devices
    if cell is CellTech.MRAM:
        return n_bits * MRAM_WRITE_ENERGY_PJ_PER_BIT * cal.e("cell")
    if cell.resistive:
        return n_bits * table.rram_write_energy_pj_per_bit * cal.e("cell")
    return (n_bits * table.sram_cim_bitcell_write_energy_fj * 1e-3 * supply_factor(chip)
            * cal.e("cell"))


def _shift_add(chip: ChipConfig, table: TechTable, cal: Calibration, bits: int) -> float:
    return bits * table.shift_add_energy_pj_per_bit * supply_factor(chip) * cal.e("shift_add")


def _correction_add(chip: ChipConfig, table: TechTable, cal: Calibration, bits: int) -> float:
    return (bits * table.accumulator_add_energy_pj_per_bit * supply_factor(chip)
            * cal.e("digital"))


def _dequant_multiply(chip: ChipConfig, table: TechTable, cal: Calibration, bits: int) -> float:
    return table.dequant_mult_energy_pj * supply_factor(chip) * cal.e("digital")


def _buffer_bit(chip: ChipConfig, table: TechTable, cal: Calibration, bits: int) -> float:
    return (buffer_energy_pj_per_bit(chip.array.tile_buffer_kib, table) * supply_factor(chip)
            * cal.e("buffer"))


def _link_bit(chip: ChipConfig, table: TechTable, cal: Calibration, bits: int) -> float:
    return table.interconnect_energy_pj_per_bit * supply_factor(chip) * cal.e("interconnect")


def _bus_bit(chip: ChipConfig, table: TechTable, cal: Calibration, bits: int) -> float:
    return table.bus_energy_pj_per_bit * supply_factor(chip) * cal.e("interconnect")



"""Technology tables: energy per action and area per instance, 3-180 nm.

Every number is listed in ``docs/technology.md`` with its source value, source node and the
publication (authors, venue, year, table) it was taken from; each field's docstring names that
publication. The estimator (``cimsim.cost``) computes::

    energy_pj = sum(n_events * energy per event)    area_um2 = sum(n_instances * area)

from a :class:`TechTable` returned by :func:`tech_table`. Nothing here simulates.

Node scaling (Stillmaker & Baas, Integration 58, 2017, as tabulated in
``hwcomponents/scaling/techscaling.py``): CMOS energy and area scale by two different
per-node factors, interpolated *linearly in node* between the tabulated nodes, as that
source does (a 32->22 nm energy factor of 0.444 and a 65->22 nm area factor of 0.168).
Every node table holds rows at 3 and 180 nm as well; outside the 7-130 nm span of the
original tables it is interpolated *log-log* (a power law between rows). A row outside that
span is a published one where a source has it (NeuroSim V1.4's 5/3-nm rows, Stillmaker &
Baas's 180-nm area) and otherwise follows a stated rule: below 7 nm hwcomponents' energy
~ sqrt(node) and area ~ node; at 180 nm the log-log trend of the table's two largest nodes
(:func:`_loglog_trend`). ``docs/technology.md`` §1 lists each rule and its source.
Cell areas given in F^2 scale with F^2; analog quantities given by physics (``E = V^2 G t``)
are not CMOS-scaled, only their node-tabled read voltage changes.

ADC model (docs/technology.md §3): the default (``ADCBand.TYPICAL``) SAR ADC is the ISAAC
ADC (Kull et al., ISSCC 2013, 8 b, 32 nm) extended to 4-10 b with the Saberi et al. (TCAS-I
2011) scaling, node-scaled; ``ADCBand.LOW`` uses the NeuroSim V1.4 SAR formula (optimistic
end) and ``ADCBand.HIGH`` a survey-median SAR (Murmann, ADC Performance Survey 1997-2025).
Flash, ramp and single-slope ADCs are built from one comparator energy, and a 1-b SAR, flash
or single-slope conversion is one comparator decision; see :func:`adc_energy_pj`.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, fields
from enum import Enum
from typing import TypeVar

import numpy as np

from ..config import ADCBand, ADCKind, TDCArchitecture, _is_real
from ..errors import ConfigError

_E = TypeVar("_E", bound=Enum)

__all__ = [
    "CONVERTER_KINDS",
    "ONE_COMPARATOR_KINDS",
    "MAX_ADC_BITS",
    "MAX_NODE_NM",
    "MIN_NODE_NM",
    "REFERENCE_NODE_NM",
    "TechTable",
    "adc_area_um2",
    "adc_conversion_time_ns",
    "adc_energy_pj",
    "area_scale",
    "buffer_energy_pj_per_bit",
    "dac_area_um2",
    "dac_conversion_time_ns",
    "dac_energy_pj",
    "energy_scale",
    "sense_amp_energy_fj",
    "tdc_area_um2",
    "tdc_conversion_time_ns",
    "tdc_energy_pj",
    "tdc_stage_ns",
    "tech_table",
]

MIN_NODE_NM = 3.0
MAX_NODE_NM = 180.0
_CORE_NODES_NM = (7.0, 130.0)
"""Span of the original (7-130 nm) tables: linear in node inside it, log-log outside."""
REFERENCE_NODE_NM = 22.0
"""Reference node of the defaults (the NeuroSim V1.4 default node, Param.cpp)."""

MAX_ADC_BITS = 16
"""Largest ADC/DAC resolution accepted. Values beyond the source tables are extrapolated."""



def _loglog_trend(nodes_nm: tuple[float, ...], values: tuple[float, ...], to_nm: float) -> float:
    """The value at ``to_nm`` on the log-log line through a table's two largest nodes (the
    rule for a 180-nm row a table's source does not have; docs/technology.md §1)."""
    (n0, n1), (v0, v1) = nodes_nm[:2], values[:2]
    return v0 * (to_nm / n0) ** (math.log(v0 / v1) / math.log(n0 / n1))


# --- node scaling: Stillmaker & Baas 2017 via hwcomponents/scaling/techscaling.py --------
_SB_NODES_NM = (130.0, 90.0, 65.0, 45.0, 32.0, 20.0, 16.0, 14.0, 10.0, 7.0)
# Energy relative to 45 nm at Vdd = 0.8 V: techscaling.py's quadratic-in-Vdd fits at 0.8 V.
_SB_ENERGY = (3.07, 1.90, 1.24, 1.00, 0.66, 0.22, 0.17, 0.14, 0.12, 0.094)
# Area relative to 45 nm: the 45 nm row of AREA_SCALING in techscaling.py.
_SB_AREA = (6.4, 2.8, 1.5, 1.0, 0.46, 0.21, 0.19, 0.17, 0.10, 0.059)
# Below 7 nm: hwcomponents' techscaling.py continues energy as sqrt(node) and area linearly
# in node beyond its 7-nm row (its note: IRDS 2016/2017 fJ/switch and SoC-area estimates).
_SUB7_ENERGY_EXPONENT = 0.5
_SUB7_AREA_EXPONENT = 1.0
# 180 nm, area: Stillmaker & Baas's area table has a 180-nm column, 19 in the 45-nm row (the
# table as UCLA NanoCAD's nodeScale.py carries it; hwcomponents drops that column). Energy:
# their 180-nm energy fit is linear in Vdd (24.64 V - 17.98, zero at 0.73 V) and at 0.8 V falls
# below 130 nm's, outside its voltage range, so the table's 130/90-nm log-log trend is used.
_SB_AREA_180NM = 19.0
_SCALING_NODES_NM = (180.0, *_SB_NODES_NM, 3.0)
_ENERGY_VS_45NM = (_loglog_trend(_SB_NODES_NM, _SB_ENERGY, 180.0), *_SB_ENERGY,
                   _SB_ENERGY[-1] * (3.0 / 7.0) ** _SUB7_ENERGY_EXPONENT)
_AREA_VS_45NM = (_SB_AREA_180NM, *_SB_AREA, _SB_AREA[-1] * (3.0 / 7.0) ** _SUB7_AREA_EXPONENT)

# --- SAR ADC, typical: ISAAC ADC (Shafiee et al. 2016, Table 1) + Saberi scaling, 32 nm ---
_SAR_SRC_NODE_NM = 32.0
_SAR_SRC_BITS = (4, 5, 6, 7, 8, 9, 10)
_SAR_SRC_ENERGY_PJ = (0.79, 0.99, 1.20, 1.42, 1.67, 1.97, 2.38)
_SAR_SRC_AREA_UM2 = (361.0, 477.0, 627.0, 845.0, 1200.0, 1828.0, 3002.0)
# Above ~9-10 b thermal-noise-limited ADC energy grows as 4^b (Murmann survey's Schreier line).
_SAR_THERMAL_GROWTH_PER_BIT = 4.0
# High band: Murmann-survey median 3.6 pJ over ISAAC 1.20 pJ at 6 b [der].
_SAR_HIGH_FACTOR = 3.6 / 1.20

# --- SAR ADC, low: NeuroSim V1.4 SarADC.cpp LP fit, P = (a*b + c) uW, t = (b+1) ns ------
# 5 and 3 nm: NeuroSim V1.4's own rows ("SAR ADC power project down to 1 nm node"); 180 nm:
# the log-log trend of the 130/65-nm rows (no NeuroSim row).
_NEUROSIM_CORE_NM = (130.0, 65.0, 45.0, 32.0, 22.0, 14.0, 7.0)
_NEUROSIM_CORE_A_UW = (8.4483, 3.7506, 2.1691, 1.1294, 0.538, 0.3132, 0.1061)
_NEUROSIM_CORE_C_UW = (65.243, 25.844, 16.693, 8.8998, 4.3753, 2.5681, 0.8847)
_NEUROSIM_NODES_NM = (180.0, *_NEUROSIM_CORE_NM, 5.0, 3.0)
_NEUROSIM_SAR_A_UW = (_loglog_trend(_NEUROSIM_CORE_NM, _NEUROSIM_CORE_A_UW, 180.0),
                      *_NEUROSIM_CORE_A_UW, 0.0645, 0.0333)
_NEUROSIM_SAR_C_UW = (_loglog_trend(_NEUROSIM_CORE_NM, _NEUROSIM_CORE_C_UW, 180.0),
                      *_NEUROSIM_CORE_C_UW, 0.5511, 0.2849)
_NEUROSIM_CYCLE_NS = 1.0

# --- cell writes (reprogramming a time-multiplexed array), one word line at a time --------
# RRAM: DNN+NeuroSim V2.1 Param.cpp defaults for its 1T1R RRAM (Peng et al., TCAD 2021): a
# 50-ns programming pulse, 32 pulses from g_min to g_max (maxNumLevelLTP), 10-ns read pulse.
_RRAM_WRITE_PULSE_NS = 50.0
_RRAM_SET_PULSES_FULL_RANGE = 32
_RRAM_VERIFY_READ_NS = 10.0

# --- comparator: MNSIM 2.0 ADC_Choice 8 sense amp, 28 nm ---------------------------------
_CMP_SRC_NODE_NM = 28.0
_CMP_SRC_POWER_UW = 0.1086 * 15.0
_CMP_SRC_AREA_UM2 = 1.0
# Murmann-survey median low-resolution flash FOM_W, 477 fJ/step [der].
_CMP_HIGH_ENERGY_FJ = 477.0

# --- RRAM read voltage by node (NeuroSim V1.4; 0.25 V at 5/3 nm; 180 nm: the 130/90-nm
# trend, flat at 0.58 V) ---------------------------------------------------------------------
_V_READ_NODES_NM = (180.0, 130.0, 90.0, 65.0, 45.0, 32.0, 22.0, 14.0, 10.0, 7.0, 5.0, 3.0)
_V_READ_V = (0.58, 0.58, 0.58, 0.55, 0.51, 0.51, 0.55, 0.28, 0.28, 0.264, 0.25, 0.25)
_RAMP_CALIBRATION_CELLS = 5  # Yang et al. 2025: 32 ramp cells + 5 bias-calibration cells

# --- time-to-digital converter (adc.kind = "tdc"), a circuit model: docs/cost-model.md --------
# A delay stage is one static CMOS inverter, priced by transistor count against the digital
# tables' full-adder bit (the 28-transistor mirror adder, Weste & Harris, "CMOS VLSI Design",
# 4th ed., 2011, §11.2.1), as cimsim.cost.models prices a multiplexer; its delay is one FO4
# delay, by the rule of thumb that an FO4 delay in ps is a third to a half of the drawn
# length in nm (Weste & Harris, ch. 4, delay; a textbook value, not re-read), the half taken
# (the slower: a stage also drives the counter or latch it feeds). A counter TDC counts a ring
# oscillator of the fewest stages that oscillate, three inverters, period 2 N t_stage (Rabaey,
# Chandrakasan & Nikolic, "Digital Integrated Circuits", 2nd ed., 2003, ch. 5, the ring
# oscillator).
_INVERTER_TRANSISTORS = 2
_FULL_ADDER_TRANSISTORS = 28
_FO4_PS_PER_NM = 0.5
_TDC_RING_STAGES = 3

# --- SRAM CIM cell area in F^2 (NeuroSim V1.4 Param.cpp): 10F x 28F = 280 above 14 nm (180
# nm too), 326 at 14, 551 at 7, 19.2F x 43.75F = 840 at 5, 30F x 68.26F = 2047.8 at 3 ------
_SRAM_F2_NODES_NM = (180.0, 130.0, 22.0, 14.0, 7.0, 5.0, 3.0)
_SRAM_F2 = (280.0, 280.0, 280.0, 326.0, 551.0, 840.0, 2047.8)

# --- SRAM buffer, Horowitz ISSCC'14, 64-b read at 45 nm: 8 KB / 32 KB / 1 MB ------------
_BUFFER_SIZES_KIB = (8.0, 32.0, 1024.0)
_BUFFER_PJ_PER_BIT_45NM = (10.0 / 64, 20.0 / 64, 100.0 / 64)
_BUFFER_DEFAULT_KIB = 32.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TechTable:
    """Per-node technology numbers: energy per action, area per instance, time per action.

    Build it with :func:`tech_table`; use ``dataclasses.replace`` for a variant. All values
    are at ``node_nm``; the docstring of each field gives the source value, its node and the
    publication it comes from, as ``docs/technology.md`` §2 lists them with their tables
    ([der]: arithmetic on sourced inputs, done there or here).
    """

    node_nm: float
    """Technology node in nm, 3..180."""
    vdd_v: float
    """Nominal supply of the CMOS scaling table, V: 0.8 V (the Stillmaker-Baas factors are
    evaluated at 0.8 V). Informational: changing it rescales nothing."""
    adc_band: ADCBand
    """ADC energy band the ADC fields were resolved for."""

    # ---- ADCs ---------------------------------------------------------------------------
    sar_adc_energy_pj_by_bits: tuple[float, ...]
    """SAR energy per conversion in pJ for bits 1..16 (index bits-1), resolved for
    ``adc_band``. typical: the ISAAC ADC (Shafiee et al., ISCA 2016, Table 1: Kull et al.,
    ISSCC 2013, 8 b 1.2 GS/s, 32 nm) with the Saberi et al. (TCAS-I 2011) scaling,
    4..10 b = 0.79/0.99/1.20/1.42/1.67/1.97/2.38 pJ at 32 nm (hwcomponents-library isaac.py),
    node-scaled; below 4 b the 4->5 b ratio is continued, above 10 b energy grows 4x per bit
    (thermal-noise limit). low: NeuroSim V1.4 SarADC.cpp, (a*b + c) uW * (b+1) ns without
    column current. high: 3.0 x typical (Murmann ADC survey median 3.6 pJ / ISAAC 1.20 pJ at
    6 b [der])."""
    sar_adc_area_um2_by_bits: tuple[float, ...]
    """SAR area per ADC in um^2 for bits 1..16 (index bits-1). ISAAC/Saberi 4..10 b =
    361/477/627/845/1200/1828/3002 um^2 at 32 nm (hwcomponents-library isaac.py),
    area-scaled; the end ratios are continued outside 4..10 b. Same for every band."""
    sar_adc_cycle_ns: float
    """SAR comparator clock period, ns: a b-bit conversion takes (b+1) cycles of 1 ns
    (NeuroSim V1.4 SarADC.cpp). Not node-scaled (NeuroSim uses 1 ns at every node); ISAAC's
    ADC is faster (0.83 ns per 8-b conversion)."""
    comparator_energy_fj: float
    """Energy per comparator decision, fJ, used by flash, ramp and single-slope ADCs ((2^b-1)
    E_cmp for a flash) and for every 1-b conversion (:data:`ONE_COMPARATOR_KINDS`).
    typical/low: MNSIM 2.0 sense amp (ADC_Choice 8) 1.63 uW at 28 nm for one 1-ns
    decision = 1.63 fJ at 28 nm [der], node-scaled. high: Murmann-survey median
    low-resolution flash FOM_W = 477 fJ/step [der], not node-scaled (survey nodes are
    mixed)."""
    comparator_area_um2: float
    """Comparator (sense amp) area, um^2: MNSIM 2.0 ADC_Choice 8, 1 um^2 at 28 nm,
    area-scaled."""
    ramp_step_ns: float
    """One ramp step of the in-memory ramp NL-ADC, ns: one comparator decision, 1 ns as the
    NeuroSim cycle [der] (t = 2^b t_step; the HERMES CCO ADC, Khaddam-Aljameh et al.,
    JSSC 2022, reaches 0.3 ns/LSB)."""
    adc_leakage_fraction_of_dynamic: float
    """ADC leakage power as a fraction of its dynamic power: 0.2 (the hwcomponents-adc
    model's assumption)."""

    # ---- DAC / row driver ----------------------------------------------------------------
    dac_energy_pj_per_pulse: float
    """1-b DAC / row-driver energy per pulse, pJ, driver only: 3.9 uW x 3 ns = 11.7 fJ
    (MNSIM 2.0 DAC_Choice 1). The 3.9 uW is ISAAC's 32-nm DAC (Shafiee et al. 2016, Table 1:
    4 mW / 1024 DACs), so it is scaled from 32 nm. Add the word-line C V^2
    (``wire_capacitance_ff_per_um``). ISAAC's 0.417 pJ per activation is the conservative
    bound."""
    dac_area_um2: float
    """1-b DAC / row-driver area, um^2: 0.166 um^2 at 32 nm (ISAAC 170 um^2 / 1024, as MNSIM
    2.0's DAC table holds it), area-scaled. A b-bit DAC is 2^(b-1) times larger (MNSIM)."""
    dac_clock_ns: float
    """DAC clock period, ns: a b-bit conversion takes (b+2) cycles at 1 GHz (MNSIM 2.0)."""
    wire_capacitance_ff_per_um: float
    """Wire capacitance, fF/um: 0.2 (the NeuroSim value used by CiMLoop's Wire component).
    Line switching energy is C * V * dV; fF * V^2 = fJ."""

    # ---- memory cells ----------------------------------------------------------------------
    rram_v_read_v: float
    """RRAM read voltage, V, node-tabled by NeuroSim V1.4: 0.58 (130/90), 0.55 (65/22), 0.51
    (45/32), 0.28 (14/10), 0.264 (7), 0.25 (5/3); linear in node between those in 7..130 nm,
    log-log outside; 0.58 at 180 nm (the flat 130/90-nm trend)."""
    rram_r_on_ohm: float
    """RRAM 1T1R on resistance, Ohm: 100 kOhm (NeuroSim V1.4 Param.cpp default)."""
    rram_cell_area_f2: float
    """RRAM 1T1R cell area in F^2: 4F x 12F = 48 F^2 (NeuroSim V1.4); a 0T1R crossbar cell
    would be 4 F^2."""
    rram_write_energy_pj_per_bit: float
    """RRAM programming (write) energy per stored bit, pJ: 3 pJ, the upper end of the
    0.1-3 pJ per bit of memristive (RRAM) memories in Yang, Strukov & Stewart, "Memristive
    devices for computing", Nature Nanotechnology 8, 2013, Table 1 (from ITRS 2011); the upper
    end because a multi-level cell is programmed with write-and-verify pulses. Device physics:
    not CMOS-scaled."""
    rram_write_time_ns_per_row: float
    """Time to program one row (word line) of a 1T1R RRAM array, ns: 1970 ns [der]. The row
    is first RESET to g_off with one pulse (all its cells at once), then SET with write-verify:
    up to 32 SET pulses of 50 ns, each followed by a 10-ns verify read, all the row's cells in
    parallel (a cell whose verify passes gets no more pulses), so the row takes as long as a
    cell programmed across the full range: (1 + 32) x 50 + 32 x 10 ns. Pulse width, pulses per
    full range (maxNumLevelLTP) and read pulse are the DNN+NeuroSim V2.1 Param.cpp defaults
    (Peng, Huang, Jiang, Lu & Yu, IEEE TCAD 40(11), 2021). Device physics: not node-scaled."""
    sram_cell_area_f2: float
    """SRAM CIM cell area in F^2: 280 (10F x 28F) at >= 22 nm, 326 at 14 nm, 551 at 7 nm,
    840 at 5 nm, 2047.8 at 3 nm (NeuroSim V1.4); linear in node between those in 7..130 nm,
    log-log below 7 nm."""
    sram_cim_bitcell_read_energy_fj: float
    """SRAM CIM energy per bit-read, fJ: 1.12 fJ (MNSIM 2.0 SimConfig; source node not
    stated, taken at the 22 nm reference node), energy-scaled."""
    sram_cim_bitcell_write_energy_fj: float
    """SRAM CIM energy per bit-write, fJ: 1.6 fJ (MNSIM 2.0 SimConfig), as above."""
    sram_write_time_ns_per_row: float
    """Time to write one row of an SRAM CIM array, ns: one clock cycle of NeuroSim V1.4's
    1 GHz default (Param.cpp ``clkFreq``), a whole row per write as an SRAM write driver does
    (DNN+NeuroSim, Peng et al., IEDM 2019). Not node-scaled, as NeuroSim keeps 1 GHz at every
    node."""

    # ---- digital back end ------------------------------------------------------------------
    shift_add_energy_pj_per_bit: float
    """Shift-and-add energy per bit of width per operation, pJ: ISAAC S+A (Shafiee et al. 2016,
    Table 1) 0.021 pJ per 16-b op at 32 nm = 1.3 fJ/bit, energy-scaled."""
    shift_add_area_um2_per_bit: float
    """Shift-and-add area per bit of width, um^2: ISAAC S+A 60 um^2 for 16 b at 32 nm
    (Shafiee et al. 2016, Table 1), area-scaled."""
    accumulator_add_energy_pj_per_bit: float
    """Accumulator add energy per bit, pJ: Horowitz (ISSCC 2014) 32-b add 0.1 pJ at 45 nm =
    3.1 fJ/bit (a textbook value, not re-read), energy-scaled."""
    accumulator_area_um2_per_bit: float
    """Accumulator (adder + register) area per bit, um^2: no separate source; ISAAC's
    shift-and-add unit (an adder plus register, 60 um^2 / 16 b at 32 nm) is used [der]."""
    dequant_mult_energy_pj: float
    """Dequantization multiply energy, pJ: Horowitz (ISSCC 2014) 32-b multiply 3.1 pJ at
    45 nm (not re-read), energy-scaled."""
    sram_buffer_energy_pj_per_bit: float
    """SRAM buffer access energy per bit, pJ, for a 32 KB buffer: Horowitz (ISSCC 2014) 64-b
    read 20 pJ at 45 nm = 0.31 pJ/bit (8 KB 0.16, 1 MB 1.6), energy-scaled. For other sizes
    use :func:`buffer_energy_pj_per_bit`."""
    buffer_area_um2_per_bit: float
    """Buffer area per bit, um^2: ISAAC 64 KB eDRAM (Shafiee et al. 2016, Table 1), 0.083 mm^2
    at 32 nm = 0.158 um^2/bit, area-scaled. No SRAM-buffer area is sourced."""
    interconnect_energy_pj_per_bit: float
    """Energy per bit per router hop between tiles, pJ: ISAAC router (Shafiee et al. 2016,
    Table 1) 20.74 pJ per 256-b flit at 32 nm = 0.081 pJ/bit, energy-scaled."""
    router_area_um2: float
    """Area of one router, um^2: ISAAC 0.15 mm^2 at 32 nm, shared by 4 tiles (Shafiee et al.
    2016, Table 1), area-scaled."""
    bus_energy_pj_per_bit: float
    """Intra-tile bus (eDRAM <-> IMA) energy per bit, pJ: ISAAC 0.054 pJ/bit at 32 nm
    (hwcomponents-library isaac.py), energy-scaled."""
    bus_area_um2_per_bit: float
    """Intra-tile bus area per bit of width, um^2: ISAAC 7500 um^2 / 256 b = 29.3 um^2 at
    32 nm (hwcomponents-library isaac.py), area-scaled."""

    def __post_init__(self) -> None:
        _check_node(self.node_nm, "node_nm")
        object.__setattr__(self, "adc_band", _as_choice(self.adc_band, "adc_band", ADCBand))
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("node_nm", "adc_band"):
                continue
            if isinstance(value, tuple):
                if len(value) != MAX_ADC_BITS:
                    raise ConfigError(
                        f"{f.name} must hold {MAX_ADC_BITS} values (bits 1..{MAX_ADC_BITS}), "
                        f"got {len(value)}"
                    )
                arr = np.asarray(value, dtype=float)
                if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
                    raise ConfigError(f"{f.name}={value!r} is invalid; allowed: finite values > 0")
                if np.any(np.diff(arr) < 0):
                    raise ConfigError(f"{f.name}={value!r} must be non-decreasing in bits")
            elif not (_is_real(value) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{f.name}={value!r} is invalid; allowed: finite numbers > 0")
            elif type(value) is not float:  # NumPy's (np.float32 would price in float32)
                object.__setattr__(self, f.name, float(value))

    @property
    def feature_size_um(self) -> float:
        """Feature size F in um (the node)."""
        return self.node_nm * 1e-3

    @property
    def ramp_ref_cell_read_energy_fj(self) -> float:
        """Read energy of one ramp reference cell during one ramp step, fJ [der]:
        ``rram_v_read_v**2 / rram_r_on_ohm * ramp_step_ns`` (E = V^2 G t; 3.0 fJ at 22 nm)."""
        return self.rram_v_read_v**2 / self.rram_r_on_ohm * self.ramp_step_ns * 1e6

    @property
    def rram_cell_area_um2(self) -> float:
        """RRAM cell area in um^2: ``rram_cell_area_f2 * F^2``."""
        return self.rram_cell_area_f2 * self.feature_size_um**2

    @property
    def sram_cell_area_um2(self) -> float:
        """SRAM CIM cell area in um^2: ``sram_cell_area_f2 * F^2``."""
        return self.sram_cell_area_f2 * self.feature_size_um**2


# ---------------------------------------------------------------------------------------
# validation helpers


def _check_node(node_nm: float, name: str) -> float:
    try:
        value = float(node_nm)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(node_nm, bool) or not (MIN_NODE_NM <= value <= MAX_NODE_NM):
        raise ConfigError(
            f"{name}={node_nm!r} is out of range; allowed: {MIN_NODE_NM:g}..{MAX_NODE_NM:g} nm"
        )
    return value


def _as_choice(value: object, name: str, kind: type[_E]) -> _E:
    """``kind(value)``: the member itself or its value string (as TOML gives it)."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(c.value for c in kind)
        raise ConfigError(f"{name}={value!r} is invalid; allowed: {allowed}") from None


CONVERTER_KINDS: tuple[ADCKind, ...] = tuple(k for k in ADCKind if k is not ADCKind.DIGITAL)
"""The ADC kinds that are converters (``digital`` is an adder tree, priced by
``cimsim.cost.models``, not by these tables)."""

ONE_COMPARATOR_KINDS: frozenset[ADCKind] = frozenset(
    {ADCKind.SAR, ADCKind.FLASH, ADCKind.SINGLE_SLOPE})
"""Kinds whose 1-b conversion is one comparator (sense-amplifier) decision against a fixed
reference, and is priced so in both cost models: a 1-b SAR has no DAC to switch, a 1-b flash
is its one comparator, a 1-b single-slope converter needs neither ramp nor counter. Not
``ramp`` (its one threshold is a fitted level read from its reference memristor column, which
a 1-b ramp still reads and holds), ``cco`` (an oscillator counted over a window, whatever the
count's width) nor ``integrate_fire`` (a fire integrates, compares and resets the neuron):
those keep their kind's price at 1 b (docs/cost-model.md)."""


def one_comparator(kind: ADCKind, bits: int) -> bool:
    """Whether a ``bits``-bit conversion of ``kind`` is priced as one comparator decision."""
    return bits == 1 and kind in ONE_COMPARATOR_KINDS


def _as_converter(value: object) -> ADCKind:
    kind = _as_choice(value, "kind", ADCKind)
    if kind is ADCKind.DIGITAL:
        raise ConfigError("kind='digital' is an adder tree, not a converter: the tables price "
                          "converters only (cimsim.cost.models prices the adder tree)")
    return kind


def _check_bits(bits: int, name: str = "bits") -> int:
    try:
        value = operator.index(bits)
    except TypeError:
        value = None
    if isinstance(bits, bool) or value is None or not 1 <= value <= MAX_ADC_BITS:
        raise ConfigError(f"{name}={bits!r} is invalid; allowed: integers 1..{MAX_ADC_BITS}")
    return value


def _check_nonneg(value: float, name: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if not (math.isfinite(x) and x >= 0):
        raise ConfigError(f"{name}={value!r} is invalid; allowed: finite numbers >= 0")
    return x


# ---------------------------------------------------------------------------------------
# node scaling


def _interp_node(node_nm: float, nodes_nm: tuple[float, ...], values: tuple[float, ...]) -> float:
    """A node table at ``node_nm`` (tables are listed from large to small).

    Linear in node between tabulated nodes inside 7..130 nm (the original tables' span, so
    every value there is as before); log-log (a power law between the two rows around it)
    outside it, where the rows are farther apart in node and a linear interpolation of a
    per-F^2 or per-node quantity would not be monotone (NeuroSim's SRAM cell falls from 840 F^2
    at 5 nm to 2047.8 F^2 at 3 nm: linear in node, a 4-nm cell would be larger than a 5-nm
    one). Every table holds rows at :data:`MIN_NODE_NM` and :data:`MAX_NODE_NM`.
    """
    lo, hi = _CORE_NODES_NM
    if lo <= node_nm <= hi:
        return float(np.interp(node_nm, nodes_nm[::-1], values[::-1]))
    if node_nm in nodes_nm:  # a row itself, exactly (exp(log(v)) need not be v)
        return float(values[nodes_nm.index(node_nm)])
    return float(np.exp(np.interp(math.log(node_nm), np.log(nodes_nm[::-1]),
                                  np.log(values[::-1]))))


def energy_scale(from_nm: float, to_nm: float) -> float:
    """Factor that takes a CMOS energy at ``from_nm`` to ``to_nm`` (Stillmaker-Baas, 0.8 V).

    Linear interpolation in node between 130/90/65/45/32/20/16/14/10/7 nm, as
    ``hwcomponents/scaling/techscaling.py`` does (Stillmaker & Baas 2017). Below 7 nm energy
    goes as sqrt(node) (hwcomponents' rule beyond its table); from 130 to 180 nm it continues
    the 90/130-nm log-log trend (module docstring).
    """
    a = _check_node(from_nm, "from_nm")
    b = _check_node(to_nm, "to_nm")
    return _interp_node(b, _SCALING_NODES_NM, _ENERGY_VS_45NM) / _interp_node(
        a, _SCALING_NODES_NM, _ENERGY_VS_45NM
    )


def sense_amp_energy_fj(node_nm: float) -> float:
    """One sense-amplifier (latched comparator) decision at ``node_nm`` and 0.8 V, fJ: MNSIM
    2.0's sense amp (ADC_Choice 8, 1.63 uW at 28 nm) for one 1-ns NeuroSim cycle, 1.63 fJ at
    28 nm [der], energy-scaled (the typical and low bands' ``comparator_energy_fj``)."""
    return _CMP_SRC_POWER_UW * _NEUROSIM_CYCLE_NS * energy_scale(_CMP_SRC_NODE_NM, node_nm)


def area_scale(from_nm: float, to_nm: float) -> float:
    """Factor that takes a CMOS (peripheral) area at ``from_nm`` to ``to_nm`` (Stillmaker-Baas).

    Same interpolation as :func:`energy_scale`, on the 45-nm row of the area table; below
    7 nm area goes linearly with node (hwcomponents' rule), at 180 nm it is Stillmaker &
    Baas's 180-nm column (19 x the 45-nm area). Cell areas are given in F^2 and scale with F^2
    instead.
    """
    a = _check_node(from_nm, "from_nm")
    b = _check_node(to_nm, "to_nm")
    return _interp_node(b, _SCALING_NODES_NM, _AREA_VS_45NM) / _interp_node(
        a, _SCALING_NODES_NM, _AREA_VS_45NM
    )


# ---------------------------------------------------------------------------------------
# table construction


def _extend_by_bits(src: tuple[float, ...], low_ratio: float, high_ratio: float) -> list[float]:
    """Values for bits 1..MAX_ADC_BITS from a 4..10 b table, geometric outside it."""
    first, last = _SAR_SRC_BITS[0], _SAR_SRC_BITS[-1]
    out = []
    for b in range(1, MAX_ADC_BITS + 1):
        if b < first:
            out.append(src[0] / low_ratio ** (first - b))
        elif b > last:
            out.append(src[-1] * high_ratio ** (b - last))
        else:
            out.append(src[b - first])
    return out


def _sar_energy_pj(node_nm: float, band: ADCBand) -> tuple[float, ...]:
    if band is ADCBand.LOW:
        a_uw = _interp_node(node_nm, _NEUROSIM_NODES_NM, _NEUROSIM_SAR_A_UW)
        c_uw = _interp_node(node_nm, _NEUROSIM_NODES_NM, _NEUROSIM_SAR_C_UW)
        # uW * ns = fJ
        return tuple(
            (a_uw * b + c_uw) * (b + 1) * _NEUROSIM_CYCLE_NS * 1e-3
            for b in range(1, MAX_ADC_BITS + 1)
        )
    src = _extend_by_bits(
        _SAR_SRC_ENERGY_PJ,
        low_ratio=_SAR_SRC_ENERGY_PJ[1] / _SAR_SRC_ENERGY_PJ[0],
        high_ratio=_SAR_THERMAL_GROWTH_PER_BIT,
    )
    factor = energy_scale(_SAR_SRC_NODE_NM, node_nm)
    if band is ADCBand.HIGH:
        factor *= _SAR_HIGH_FACTOR
    return tuple(e * factor for e in src)


def _sar_area_um2(node_nm: float) -> tuple[float, ...]:
    src = _extend_by_bits(
        _SAR_SRC_AREA_UM2,
        low_ratio=_SAR_SRC_AREA_UM2[1] / _SAR_SRC_AREA_UM2[0],
        high_ratio=_SAR_SRC_AREA_UM2[-1] / _SAR_SRC_AREA_UM2[-2],
    )
    factor = area_scale(_SAR_SRC_NODE_NM, node_nm)
    return tuple(a * factor for a in src)


def tech_table(node_nm: float = REFERENCE_NODE_NM, band: ADCBand = ADCBand.TYPICAL) -> TechTable:
    """Technology table at ``node_nm`` with the ADC energy band ``band``.

    Parameters
    ----------
    node_nm : float
        Technology node, 3..180 nm. Numbers given at other nodes in the sources are moved
        here with :func:`energy_scale` / :func:`area_scale`; F^2 cell areas with F^2.
    band : ADCBand
        ADC energy band (or its value string). TYPICAL (default): ISAAC/Saberi SAR table and
        an MNSIM sense-amp comparator. LOW: NeuroSim V1.4 SAR formula (flash/ramp as
        typical). HIGH: 3x the typical SAR (survey median) and a survey-median flash
        comparator (477 fJ). The band changes ADC energy only, never area or time.

    Returns
    -------
    TechTable

    Raises
    ------
    ConfigError
        If ``node_nm`` is outside 3..180 nm or ``band`` is not an :class:`ADCBand`.
    """
    node = _check_node(node_nm, "node_nm")
    band = _as_choice(band, "band", ADCBand)

    def e32(value: float) -> float:
        return value * energy_scale(32.0, node)

    def a32(value: float) -> float:
        return value * area_scale(32.0, node)

    def e45(value: float) -> float:
        return value * energy_scale(45.0, node)

    def e_ref(value: float) -> float:
        return value * energy_scale(REFERENCE_NODE_NM, node)

    v_read = _interp_node(node, _V_READ_NODES_NM, _V_READ_V)
    cmp_fj = _CMP_HIGH_ENERGY_FJ if band is ADCBand.HIGH else sense_amp_energy_fj(node)
    buffer_45 = _BUFFER_PJ_PER_BIT_45NM[_BUFFER_SIZES_KIB.index(_BUFFER_DEFAULT_KIB)]

    return TechTable(
        node_nm=node,
        vdd_v=0.8,
        adc_band=band,
        sar_adc_energy_pj_by_bits=_sar_energy_pj(node, band),
        sar_adc_area_um2_by_bits=_sar_area_um2(node),
        sar_adc_cycle_ns=_NEUROSIM_CYCLE_NS,
        comparator_energy_fj=cmp_fj,
        comparator_area_um2=_CMP_SRC_AREA_UM2 * area_scale(_CMP_SRC_NODE_NM, node),
        ramp_step_ns=_NEUROSIM_CYCLE_NS,
        adc_leakage_fraction_of_dynamic=0.2,
        dac_energy_pj_per_pulse=e32(4e-3 / (128 * 8) * 3e-9 * 1e12),
        dac_area_um2=a32(170.0 / (128 * 8)),
        dac_clock_ns=1.0,
        wire_capacitance_ff_per_um=0.2,
        rram_v_read_v=v_read,
        rram_r_on_ohm=100e3,
        rram_cell_area_f2=48.0,
        rram_write_energy_pj_per_bit=3.0,
        rram_write_time_ns_per_row=(
            (1 + _RRAM_SET_PULSES_FULL_RANGE) * _RRAM_WRITE_PULSE_NS
            + _RRAM_SET_PULSES_FULL_RANGE * _RRAM_VERIFY_READ_NS),
        sram_cell_area_f2=_interp_node(node, _SRAM_F2_NODES_NM, _SRAM_F2),
        sram_cim_bitcell_read_energy_fj=e_ref(1.12),
        sram_cim_bitcell_write_energy_fj=e_ref(1.6),
        sram_write_time_ns_per_row=_NEUROSIM_CYCLE_NS,
        shift_add_energy_pj_per_bit=e32(0.021 / 16),
        shift_add_area_um2_per_bit=a32(60.0 / 16),
        accumulator_add_energy_pj_per_bit=e45(0.1 / 32),
        accumulator_area_um2_per_bit=a32(60.0 / 16),
        dequant_mult_energy_pj=e45(3.1),
        sram_buffer_energy_pj_per_bit=e45(buffer_45),
        buffer_area_um2_per_bit=a32(0.083e6 / (64 * 1024 * 8)),
        interconnect_energy_pj_per_bit=e32(20.74 / 256),
        router_area_um2=a32(0.15e6),
        bus_energy_pj_per_bit=e32(0.054),
        bus_area_um2_per_bit=a32(7500.0 / 256),
    )


# ---------------------------------------------------------------------------------------
# per-event functions


def adc_energy_pj(kind: ADCKind | str, bits: int, table: TechTable,
                  tdc_architecture: TDCArchitecture = TDCArchitecture.COUNTER) -> float:
    """Energy of one ADC conversion, pJ (non-decreasing in ``bits``).

    - SAR: ``table.sar_adc_energy_pj_by_bits[bits - 1]`` (band-resolved table).
    - FLASH: ``(2**bits - 1) * E_cmp`` (one comparator per threshold).
    - RAMP (in-memory NL-ADC of Yang, Mao et al., Nat. Commun. 2025; docs/technology.md §3):
      ``2**bits * (E_ref_cell_read + E_cmp) + bits * E_bit``, the last term latching the
      shared counter's b-bit value (E_bit: ``shift_add_energy_pj_per_bit``). The reference
      column read is charged to every conversion, which is an upper bound when one column
      drives all comparators of an array.
    - SINGLE_SLOPE (linear single-slope): the ramp without its reference column,
      ``2**bits * E_cmp + bits * E_bit``. Its ramp generator (a b-bit DAC shared by an array's
      converters) is not priced here (a lower bound); the ``physical`` model prices it.
    - CCO, INTEGRATE_FIRE: counting converters, priced here as the ramp (2^b counts); the
      ``physical`` cost model prices them from the ADC survey (cimsim.cost.adc_survey).
    - TDC: the time-to-digital converter's circuit model, :func:`tdc_energy_pj` of
      ``tdc_architecture`` (both cost models).
    - 1 b, SAR / FLASH / SINGLE_SLOPE (:data:`ONE_COMPARATOR_KINDS`): one comparator decision,
      ``E_cmp``, capped by the kind's own 1-b price (the high band's comparator, a survey-median
      flash step that is not node-scaled, would otherwise exceed its own 2-b SAR below 20 nm).

    Parameters
    ----------
    kind : ADCKind or str
        The ADC kind (or its value string, as TOML gives it).
    bits : int
        Resolution, 1..16.
    table : TechTable
    tdc_architecture : TDCArchitecture, optional
        A TDC's circuit (``adc.tdc_architecture``; read only for ``kind = 'tdc'``).

    Raises
    ------
    ConfigError
        If ``kind`` or ``bits`` is not allowed.
    """
    kind = _as_converter(kind)
    b = _check_bits(bits)
    cmp_pj = table.comparator_energy_fj * 1e-3
    if kind is ADCKind.TDC:
        return tdc_energy_pj(tdc_architecture, b, table)
    if kind is ADCKind.SAR:
        own = float(table.sar_adc_energy_pj_by_bits[b - 1])
    elif kind is ADCKind.FLASH:
        own = float((2**b - 1) * cmp_pj)
    else:
        ref_pj = 0.0 if kind is ADCKind.SINGLE_SLOPE else table.ramp_ref_cell_read_energy_fj * 1e-3
        own = float(2**b * (ref_pj + cmp_pj) + b * table.shift_add_energy_pj_per_bit)
    return min(own, float(cmp_pj)) if one_comparator(kind, b) else own


def adc_area_um2(kind: ADCKind, bits: int, table: TechTable,
                 tdc_architecture: TDCArchitecture = TDCArchitecture.COUNTER) -> float:
    """Area of one ADC instance, um^2 (non-decreasing in ``bits``).

    - SAR: ``table.sar_adc_area_um2_by_bits[bits - 1]``.
    - FLASH: ``(2**bits - 1)`` comparators (no encoder or reference ladder: optimistic).
    - RAMP: one comparator, a ``bits``-bit latch (``shift_add_area_um2_per_bit`` per bit)
      and a reference column of ``2**bits + 5`` RRAM cells (Yang, Mao et al., Nat. Commun.
      2025: 32 ramp + 5 calibration cells). The column is shared by an array's ADCs in
      hardware, so charging it to every instance is an upper bound.
    - SINGLE_SLOPE: one comparator and the ``bits``-bit counter (its shared ramp generator is
      not priced here, as in :func:`adc_energy_pj`).
    - TDC: :func:`tdc_area_um2` of ``tdc_architecture``.
    - 1 b, SAR / FLASH / SINGLE_SLOPE: one comparator, capped by the kind's own 1-b area.
    """
    kind = _as_converter(kind)
    b = _check_bits(bits)
    if kind is ADCKind.TDC:
        return tdc_area_um2(tdc_architecture, b, table)
    if kind is ADCKind.SAR:
        own = float(table.sar_adc_area_um2_by_bits[b - 1])
    elif kind is ADCKind.FLASH:
        own = float((2**b - 1) * table.comparator_area_um2)
    else:
        ref_column = (0.0 if kind is ADCKind.SINGLE_SLOPE
                      else (2**b + _RAMP_CALIBRATION_CELLS) * table.rram_cell_area_um2)
        own = float(table.comparator_area_um2 + b * table.shift_add_area_um2_per_bit
                    + ref_column)
    return min(own, float(table.comparator_area_um2)) if one_comparator(kind, b) else own


def adc_conversion_time_ns(kind: ADCKind, bits: int, table: TechTable,
                           clock_mhz: float | None = None,
                           tdc_architecture: TDCArchitecture = TDCArchitecture.COUNTER) -> float:
    """Time of one conversion, ns (non-decreasing in ``bits``).

    SAR: ``(bits + 1) * sar_adc_cycle_ns`` (NeuroSim V1.4); FLASH: one comparator cycle;
    RAMP, CCO, INTEGRATE_FIRE: ``2**bits * ramp_step_ns`` (one step per level or count).
    SINGLE_SLOPE: ``2**bits`` periods of the digital clock ``clock_mhz`` (the chip's
    ``tech.clock_mhz``; absent: the tables' 1-ns cycle): its counter counts clock edges until
    the comparator flips and the ramp DAC advances one code per count, so the clock period is
    the converter's step by construction. The in-memory ramp's step is instead one reference
    cell read and comparator decision, timed by ``ramp_step_ns``, not by a counter clock. A 1-b
    single-slope conversion is one comparator decision (no ramp, no count): one clock period. A
    1-b SAR is one comparator decision too (no DAC to switch, priced as one sense amp,
    :func:`one_comparator`): one comparator cycle, as a 1-b flash, not ``(1 + 1)`` cycles.
    TDC: :func:`tdc_conversion_time_ns` of ``tdc_architecture``.
    """
    kind = _as_converter(kind)
    b = _check_bits(bits)
    if kind is ADCKind.TDC:
        return tdc_conversion_time_ns(tdc_architecture, b, table)
    if kind is ADCKind.SAR:
        return float((b + 1 if b > 1 else 1) * table.sar_adc_cycle_ns)
    if kind is ADCKind.FLASH:
        return float(table.sar_adc_cycle_ns)
    if kind is ADCKind.SINGLE_SLOPE:
        step = table.sar_adc_cycle_ns if clock_mhz is None else 1e3 / clock_mhz
        return float((2**b if b > 1 else 1) * step)
    return float(2**b * table.ramp_step_ns)


def _tdc_arch(value: object) -> TDCArchitecture:
    return _as_choice(value, "tdc_architecture", TDCArchitecture)


def tdc_stage_energy_pj(table: TechTable) -> float:
    """One transition of a delay stage (an inverter switching its load), pJ at 0.8 V: the
    digital tables' full-adder bit times 2 / 28 transistors [der]."""
    return (table.accumulator_add_energy_pj_per_bit * _INVERTER_TRANSISTORS
            / _FULL_ADDER_TRANSISTORS)


def tdc_stage_ns(node_nm: float) -> float:
    """Delay of one delay stage at ``node_nm``, ns: one FO4 delay, 0.5 ps per nm of node
    (14 ps at 28 nm) [der]; at the tables' 0.8 V, not supply-scaled."""
    return _FO4_PS_PER_NM * _check_node(node_nm, "node_nm") * 1e-3


def tdc_energy_pj(architecture: TDCArchitecture, bits: int, table: TechTable,
                  comparator_fj: float | None = None) -> float:
    """One conversion of a ``bits``-bit time-domain read-out at full scale, pJ at 0.8 V.

    A voltage- or current-to-time front end (the column current charges or discharges a
    capacitor, whose charge the cell read prices, until one comparator decision ends the pulse)
    and a time-to-digital converter whose LSB is its delay unit, with ``E_c`` a comparator
    decision (``comparator_fj``, else the table's), ``E_s`` a stage transition
    (:func:`tdc_stage_energy_pj`) and ``E_f`` a flip-flop toggle (the counting converters'
    latch bit, ``shift_add_energy_pj_per_bit``):

    - ``counter``: a 3-stage ring oscillator gated by the pulse (LSB one period, 6 stage
      transitions) counted by a b-bit ripple counter: the full-scale count ``2^b - 1``
      periods and ``2^(b+1) - b - 2`` counter toggles, plus resetting the b bits:
      ``E_c + 6 (2^b - 1) E_s + 2 (2^b - 1) E_f``;
    - ``successive``: b steps, each a time-comparator decision after the edge passes a
      binary-weighted delay of ``2^(b-1-k)`` unit stages (``2^b - 1`` in all, each passed and
      reset), a b-bit SAR register set once per bit:
      ``(b + 1) E_c + 2 (2^b - 1) E_s + b E_f``.

    Non-decreasing in ``bits`` and in the node (through the tables' energy scaling).
    """
    arch, b = _tdc_arch(architecture), _check_bits(bits)
    e_c = (table.comparator_energy_fj if comparator_fj is None else comparator_fj) * 1e-3
    e_s, e_f = tdc_stage_energy_pj(table), table.shift_add_energy_pj_per_bit
    full = 2**b - 1
    if arch is TDCArchitecture.COUNTER:
        return float(e_c + 2 * _TDC_RING_STAGES * full * e_s + 2 * full * e_f)
    return float((b + 1) * e_c + 2 * full * e_s + b * e_f)


def tdc_area_um2(architecture: TDCArchitecture, bits: int, table: TechTable) -> float:
    """One time-domain read-out, um^2: the front end's comparator and the b-bit counter or SAR
    register (``shift_add_area_um2_per_bit`` a bit, the counting converters' counter) plus,
    ``counter``, the 3-stage ring; ``successive``, the time comparator and ``2^b - 1`` unit
    delay stages. A stage is an inverter, 2 transistors at the SRAM CIM cell's area per
    transistor (NeuroSim's 8T cell over its 8 transistors)."""
    arch, b = _tdc_arch(architecture), _check_bits(bits)
    stage = table.sram_cell_area_um2 / 8 * _INVERTER_TRANSISTORS
    digital = table.comparator_area_um2 + b * table.shift_add_area_um2_per_bit
    if arch is TDCArchitecture.COUNTER:
        return float(digital + _TDC_RING_STAGES * stage)
    return float(digital + table.comparator_area_um2 + (2**b - 1) * stage)


def tdc_conversion_time_ns(architecture: TDCArchitecture, bits: int, table: TechTable) -> float:
    """One conversion at full scale, ns: the pulse, ``2^b - 1`` LSBs, and the resolution of it.
    ``counter``: the count runs while the pulse lasts, ``(2^b - 1)`` ring periods of
    ``2 x 3`` stage delays (:func:`tdc_stage_ns`); ``successive``: the pulse at one stage per
    LSB, then b steps, each a comparator cycle (``sar_adc_cycle_ns``, as a SAR's bit) after its
    binary-weighted delay (``2^b - 1`` stage delays in all)."""
    arch, b = _tdc_arch(architecture), _check_bits(bits)
    t_s, full = tdc_stage_ns(table.node_nm), 2**b - 1
    if arch is TDCArchitecture.COUNTER:
        return float(2 * _TDC_RING_STAGES * full * t_s)
    return float(2 * full * t_s + b * table.sar_adc_cycle_ns)


def dac_energy_pj(bits: int, table: TechTable) -> float:
    """Energy of one ``bits``-bit DAC / row-driver pulse, driver only, pJ.

    MNSIM 2.0: power grows as ``2**(bits-1)`` and the pulse lasts ``bits + 2``
    clock cycles, so ``E = E_1b * 2**(bits-1) * (bits + 2) / 3``. Word-line charging
    (``C * V**2``) is not included.
    """
    b = _check_bits(bits)
    return float(table.dac_energy_pj_per_pulse * 2 ** (b - 1) * (b + 2) / 3)


def dac_area_um2(bits: int, table: TechTable) -> float:
    """Area of one ``bits``-bit DAC / row driver, um^2: ``A_1b * 2**(bits-1)`` (MNSIM)."""
    b = _check_bits(bits)
    return float(table.dac_area_um2 * 2 ** (b - 1))


def dac_conversion_time_ns(bits: int, table: TechTable) -> float:
    """Time of one ``bits``-bit DAC conversion, ns: ``(bits + 2) * dac_clock_ns`` (MNSIM)."""
    b = _check_bits(bits)
    return float((b + 2) * table.dac_clock_ns)


def buffer_energy_pj_per_bit(size_kib: float, table: TechTable) -> float:
    """SRAM buffer access energy per bit for a buffer of ``size_kib`` KiB, pJ.

    ``table.sram_buffer_energy_pj_per_bit`` (32 KB) times the Horowitz size dependence:
    log-log interpolation through 8 KB / 32 KB / 1 MB = 10 / 20 / 100 pJ per 64-b read
    (Horowitz, ISSCC 2014), continued with the end slopes outside that range.
    """
    size = _check_nonneg(size_kib, "size_kib")
    if size == 0:
        raise ConfigError(f"size_kib={size_kib!r} is invalid; allowed: finite numbers > 0")
    log_s = np.log(_BUFFER_SIZES_KIB)
    log_e = np.log(_BUFFER_PJ_PER_BIT_45NM)
    x = math.log(size)
    if x < log_s[0]:
        slope = (log_e[1] - log_e[0]) / (log_s[1] - log_s[0])
        y = log_e[0] + slope * (x - log_s[0])
    elif x > log_s[-1]:
        slope = (log_e[-1] - log_e[-2]) / (log_s[-1] - log_s[-2])
        y = log_e[-1] + slope * (x - log_s[-1])
    else:
        y = float(np.interp(x, log_s, log_e))
    ratio = math.exp(y) / (20.0 / 64)
    return float(table.sram_buffer_energy_pj_per_bit * ratio)

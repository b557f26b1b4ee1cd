"""One cost model per component kind, registered by the event registry's component names.

Every :class:`~cimsim.events.Component` has exactly one model class in :data:`MODELS`. A model
is built from the chip config, the technology table at its node and a calibration, and answers
three questions, as an Accelergy plug-in does for its component:

* ``energy_pj(action, bits)``: energy of one action (one event of ``cimsim.events``);
* ``area_um2()``: area of one instance;
* ``time_ns(action, bits)``: time of one action (0 where the action is not on a critical path
  the latency model reads).

Pricing an event is one lookup: ``models[key.component].energy_pj(key.action, key.bits)``
(:func:`component_models`). Each class lists the actions it prices (``actions``); an event key
registered in ``cimsim.events.REGISTRY`` that no model lists is *unpriced*, and
``tests/cost/test_models.py`` fails naming it and the model to extend.

Two cost models (``chip.tech.cost_model``):

``tables``
    The technology tables of :mod:`.tables` with the per-chip calibrations of
    :data:`.energy.CALIBRATIONS` (the meaning every preset had before the physical models).
``physical``
    Component models from circuits and the ADC survey; no per-chip factor. Converters:
    :mod:`.adc_survey`. Row drivers: amplitude DACs or temporal drivers (pulse width / count),
    with the word line's ``C_wl V_wl^2`` per activated row. Cells: the read physics of the
    compute domain (current: the charge ``V G t`` of resistive cells drawn from the read
    supply, bit-line discharge of SRAM; charge: ``C V^2`` of the switched capacitor per
    product) and the cell kind's area
    (SRAM 6T/8T/10T, RRAM 1T1R, PCM, MRAM 1T1MTJ, FeFET 1T, NOR flash, multi-device).
    Periphery, buffers and links: the tables.
    ``docs/cost-model.md`` gives every formula, ``docs/technology.md`` every source.

Both price the weighting network of analog slice read-out from circuits
(:class:`WeightingModel`: current mirrors or binary-weighted capacitors) and the pre-alignment
and re-normalisation of block floating-point inputs from full adders and multiplexers at the
digital tables' energy and area per bit (:class:`BlockFPModel`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

import numpy as np

from ..config import (
    ActFormat,
    ADCKind,
    CellKind,
    CellTech,
    ChipConfig,
    ComputeDomain,
    CostModel,
    InputDrive,
    WordlineSwitching,
)
from ..events import Action, Component
from . import adc_survey, bitplanes, ripple
from ._prices import (
    FEFET_1T_CELL_AREA_F2,
    FLASH_NOR_CELL_AREA_F2,
    NO_CALIBRATION,
    Calibration,
    _adc_convert,
    _adc_leak,
    _buffer_bit,
    _bus_bit,
    _cell_read,
    _cell_refresh,
    _cell_v2g_lsb,
    _cell_write,
    _correction_add,
    _dac_pulse,
    _dequant_multiply,
    _link_bit,
    _shift_add,
    chip_table,
    read_levels,
    sense_decision_pj,
    sensed_cells,
    stored_bits_per_cell,
    supply_factor,
    table_adc_bits,
    table_cell_area_um2,
)
from .tables import (
    _SRAM_F2,
    _SRAM_F2_NODES_NM,
    TechTable,
    _check_bits,
    _interp_node,
    adc_area_um2,
    adc_conversion_time_ns,
    dac_area_um2,
    dac_conversion_time_ns,
    dac_energy_pj,
    one_comparator,
    sense_amp_energy_fj,
    tdc_area_um2,
    tdc_conversion_time_ns,
    tdc_energy_pj,
)

__all__ = ["CCO_LSB_NS", "CELL_AREA_F2", "GATE_CAPACITANCE_FF_PER_UM", "MODELS",
           "MUX_PER_FULL_ADDER", "BlockFPModel",
           "PRODUCT_GATE_TRANSISTORS", "ComponentModel", "WeightingModel",
           "adder_tree_full_adders", "component_models", "physical", "read_supply_v",
           "unit_transistor_area_um2"]

_C, _A = Component, Action

CCO_LSB_NS = 0.3
"""Time per LSB of a CCO converter, ns: 300 ps/LSB (Khaddam-Aljameh et al., "HERMES-Core",
IEEE JSSC 57(4), 2022, title and abstract)."""

GATE_CAPACITANCE_FF_PER_UM = 1.0
"""Gate capacitance per um of transistor width, fF: the ~1 fF/um rule of thumb of Weste &
Harris, "CMOS VLSI Design", 4th ed., 2011, §2.3 (word-line load of the physical model)."""

# Cell areas in F^2 of the physical model (docs/technology.md §cells). SRAM: NeuroSim V1.4's
# CIM SRAM cell (the tables' ``sram_cell_area_f2``: Param.cpp, 280 F^2 at >= 22 nm, 326 at
# 14 nm, 551 at 7 nm, 840 at 5 nm, 2047.8 at 3 nm) is an 8T read-decoupled cell; 6T, 7T and 10T
# follow by transistor count [der]. RRAM 1T1R: 48 F^2 (NeuroSim V1.4). PCM: one device on a
# 1T access transistor as the 1T1R cell [der]. MRAM 1T1MTJ: 57.5 F^2, NVSim's STT-RAM cell (Dong,
# Xu, Xie & Jouppi, IEEE TCAD 31(7), 2012; the sample_STTRAM.cell it ships: an access
# transistor 8.5 F wide for the write current). FeFET 1T: 51.7 F^2 (Duenkel et al., IEDM 2017);
# NOR flash: 109 F^2 (Guo et al., CICC 2017, 55 nm); cimsim.cost._prices gives each source.
# Gain-cell eDRAM 2T / 3T: by transistor count as the SRAM cells (70 / 105 F^2 at >= 22 nm)
# [der], which the published ratios to 6T SRAM bear out: a 3T cell half a 6T's area (Giterman
# et al., IEEE SSC-L 3, 2020), a 2T cell 65 % smaller than a 6T (Cheng, Cho & Chung, ISOCC 2012).
CELL_AREA_F2 = {CellKind.RRAM_1T1R: 48.0, CellKind.PCM: 48.0, CellKind.MRAM_1T1MTJ: 57.5,
                CellKind.FEFET_1T: FEFET_1T_CELL_AREA_F2,
                CellKind.FLASH_NOR: FLASH_NOR_CELL_AREA_F2}
_SRAM_TRANSISTORS = {CellKind.SRAM_6T: 6, CellKind.SRAM_7T: 7, CellKind.SRAM_8T: 8,
                     CellKind.SRAM_10T: 10, CellKind.EDRAM_2T: 2, CellKind.EDRAM_3T: 3}
"""Transistors of the cells priced by transistor count at the SRAM cell's area per transistor
(the CMOS bit-cells and the gain cells)."""


PRODUCT_GATE_TRANSISTORS = 4
"""Transistors of the 1-b product gate a digital-CIM bit-cell adds (a static 2-input NOR on
the inverted input and stored bit, 4 transistors; Weste & Harris, "CMOS VLSI Design", 4th ed.,
2011, §1.4), priced at the SRAM cell's area per transistor."""


def adder_tree_full_adders(n_inputs: int, input_bits: int = 1) -> int:
    """Full-adder bits of a binary adder tree that sums ``n_inputs`` ``input_bits``-bit
    products (a ``d``-bit input slice gated by a stored bit, ``dac.bits``).

    Level ``k = 1, 2, ...`` pairs the ``m`` sums of the level below with ``floor(m / 2)``
    ``(d + k - 1)``-bit carry-propagate adders (``d + k - 1`` full adders each: level ``k``'s
    operands are sums of ``2^(k-1)`` d-bit products; an odd sum passes up), until one sum is
    left. ``d = 1``: ``2n - log2(n) - 2`` full adders for ``n`` a power of two (256 -> 502);
    each further input bit adds one full adder to each of the ``n - 1`` adders.
    """
    m, k, total = int(n_inputs), int(input_bits), 0
    while m > 1:
        total += (m // 2) * k
        m, k = -(-m // 2), k + 1
    return total


def product_gates(chip: ChipConfig) -> int:
    """Product gates per stored bit of a digital read-out (``adc.kind = 'digital'``): one per
    input bit of a cycle's slice, ``d = dac.bits`` (the stored bit gates each of the d input
    bits into a d-bit product); 0 for an analog read-out."""
    return chip.dac_bits if digital(chip) else 0


_COUNTING_KINDS = (ADCKind.RAMP, ADCKind.SINGLE_SLOPE, ADCKind.CCO, ADCKind.INTEGRATE_FIRE)
"""Converters that count their steps into a b-bit counter."""


def every_row_wordlines(chip: ChipConfig) -> bool:
    """Physical model, word lines switched on every row per array read (not per driven row)."""
    return (physical(chip)
            and chip.tech.wordline_switching is WordlineSwitching.EVERY_ROW)


def digital(chip: ChipConfig) -> bool:
    """Whether ``chip`` reads its columns with a digital adder tree (``adc.kind='digital'``)."""
    return chip.adc.kind is ADCKind.DIGITAL


def physical(chip: ChipConfig) -> bool:
    """Whether ``chip`` is priced by the physical component models."""
    return chip.tech.cost_model is CostModel.PHYSICAL


def cell_kind(chip: ChipConfig) -> CellKind:
    """The physical cell kind: ``tech.cell_kind``, else from ``device.cell``."""
    if chip.tech.cell_kind is not None:
        return chip.tech.cell_kind
    return _DEFAULT_KIND.get(chip.device.cell, CellKind.SRAM_8T)


_DEFAULT_KIND = {CellTech.RRAM: CellKind.RRAM_1T1R, CellTech.PCM: CellKind.PCM,
                 CellTech.MRAM: CellKind.MRAM_1T1MTJ, CellTech.FEFET: CellKind.FEFET_1T,
                 CellTech.FLASH: CellKind.FLASH_NOR, CellTech.EDRAM: CellKind.EDRAM_3T}
"""The cell kind of each technology when ``tech.cell_kind`` is not given (SRAM and ideal cells:
the 8T bit-cell; eDRAM: the 3T gain cell, the cell of the scaled-node macros read,
docs/technology.md)."""


def read_supply_v(chip: ChipConfig) -> float:
    """The supply a resistive column's read current is drawn from, V: ``tech.read_supply_v``,
    absent the chip's ``vdd_v`` (its ``v_read_v`` where that is higher: no driver raises a
    line above its supply)."""
    tech = chip.tech
    return (tech.read_supply_v if tech.read_supply_v is not None
            else max(tech.vdd_v, tech.v_read_v))


def _resistive_kind(kind: CellKind) -> bool:
    # read as a summed conductance (charge V G t): resistive devices, the FeFET / flash channel
    return kind in (CellKind.RRAM_1T1R, CellKind.PCM, CellKind.MRAM_1T1MTJ, CellKind.FEFET_1T,
                    CellKind.FLASH_NOR)


class ComponentModel:
    """Energy per action, area per instance and time per action of one component kind.

    Subclasses set ``component`` and ``actions`` and override what they price; an action a
    model does not list raises ``KeyError`` naming the model.
    """

    component: ClassVar[Component]
    actions: ClassVar[tuple[Action, ...]] = ()

    def __init__(self, chip: ChipConfig, table: TechTable | None = None,
                 calibration: Calibration | None = None) -> None:
        self.chip = chip
        self.table = chip_table(chip) if table is None else table
        self.cal = NO_CALIBRATION if calibration is None else calibration
        self.physical = physical(chip)

    def energy_pj(self, action: Action, bits: int = 0) -> float:
        self._check(action)
        return 0.0

    def area_um2(self) -> float:
        """Area of one instance, um^2 (0 for components that are counts only)."""
        return 0.0

    def time_ns(self, action: Action, bits: int = 0) -> float:
        self._check(action)
        return 0.0

    def _check(self, action: Action) -> None:
        if action not in self.actions:
            raise KeyError(f"{type(self).__name__} prices {[a.value for a in self.actions]}, "
                           f"not {action!r}")

    @property
    def _sf(self) -> float:
        return supply_factor(self.chip)


class LayerModel(ComponentModel):
    """MACs: a count with no energy of its own."""

    component = _C.LAYER
    actions = (_A.MAC,)


class ArrayModel(ComponentModel):
    """Array read cycles and reprogrammed arrays: counts (a reprogramming costs its
    ``cell.write`` events)."""

    component = _C.ARRAY
    actions = (_A.ACTIVATION, _A.REPROGRAM, _A.DRIFT_CALIBRATION)


def _conversions_per_adc(chip: ChipConfig) -> int:
    """Conversions one ADC makes per step: the conversions its ``cols_per_adc`` columns
    combine into (an analog differential pair makes one, as do the weighted columns of a
    weight with analog slice read-out, ``array.slice_readout``), as
    :func:`.latency.block_latency` counts them from a programmed layer."""
    n_cols = chip.array.cols_per_adc
    from ..arrays.encoding import conversion_kinds  # (arrays import the config only)

    kinds = conversion_kinds(chip)
    return max(1, -(-n_cols * kinds.n_conversions // kinds.weight.shape[1]))


class ADCModel(ComponentModel):
    """Column converters: SAR, flash, ramp, single-slope, CCO, integrate-and-fire, TDC.

    tables: :func:`.tables.adc_energy_pj` at the chip's ADC band. physical:
    :mod:`.adc_survey` (the survey's lower-quartile Walden FOM by family, node and supply,
    times the speed envelope at the rate the chip's step asks, :meth:`sample_rate_hz`) plus a
    ``bits``-bit counter for the counting kinds; a single-slope converter also carries its
    share of the array's ramp generator (:meth:`ramp_generator_pj`), an in-memory ramp its
    ``2^b`` reference-cell reads (:meth:`reference_read_pj`). A 1-b SAR, flash or
    single-slope conversion (:func:`.tables.one_comparator`) is one sense-amplifier decision:
    the tables' comparator energy and area at the node (MNSIM 2.0's sense amp), supply-scaled,
    not the survey's GHz flash comparators. A time-domain read-out (``tdc``) is a circuit
    model in both cost models (:func:`.tables.tdc_energy_pj`), not a survey line.
    ``adc.kind = 'digital'`` (both cost models):
    no converter but an adder tree per column, :func:`adder_tree_full_adders` full adders at
    the digital tables' energy and area per added bit, one column sum per digital clock
    (``tech.digital_column = 'ripple'``: a full adder in every bit-cell, :mod:`.ripple`).
    """

    component = _C.ADC
    actions = (_A.CONVERT, _A.LEAK)

    def energy_pj(self, action: Action, bits: int = 0) -> float:
        self._check(action)
        if digital(self.chip):
            # an adder tree per column: its full adders at the digital tables' energy per
            # added bit (random operands); CMOS logic leakage is not priced (no source)
            if action is _A.LEAK:
                return 0.0
            if ripple.applies(self.chip):  # a full adder in every bit-cell (cost/ripple.py)
                return ripple.convert_pj(self.chip, self.table, self._sf) * self.cal.e("adc")
            return (adder_tree_full_adders(self.chip.array.rows_per_group, self.chip.dac_bits)
                    * self.table.accumulator_add_energy_pj_per_bit * self._sf * self.cal.e("adc"))
        if not self.physical:
            fn = _adc_convert if action is _A.CONVERT else _adc_leak
            return fn(self.chip, self.table, self.cal, bits)
        if action is _A.LEAK and self.chip.adc.kind is ADCKind.TDC:
            # a TDC is CMOS logic (delay stages, flip-flops, a dynamic comparator): its
            # leakage is not priced, as the adder trees' (no source); a fraction of its
            # dynamic power at its own rate would fall with the node (its stages speed up)
            return 0.0
        convert = self._convert_pj(table_adc_bits(bits))
        if action is _A.CONVERT:
            # bit-plane drive: the charge shares that accumulated the planes before it; an
            # in-memory ramp: its 2^b reference-cell reads (not leakage: cell reads and
            # switching energy, not the converter's bias)
            b = table_adc_bits(bits)
            ref = 2**b * self.reference_read_pj() if self.chip.adc.kind is ADCKind.RAMP else 0.0
            return convert + (bitplanes.accumulator_pj_per_conversion(self.chip, self.table)
                              + ref) * self.cal.e("adc")
        # leakage power (mW = pJ/ns): a fraction of the dynamic power at the design rate
        return (self.table.adc_leakage_fraction_of_dynamic * convert
                / self.time_ns(_A.CONVERT, bits))

    def _convert_pj(self, b: int) -> float:
        kind, tech = self.chip.adc.kind, self.chip.tech
        if kind is ADCKind.TDC:
            # a circuit model, not a survey line: its delay stages, flip-flops and comparator
            # decisions (the sense amp, band-free, as a 1-b conversion's) at the node, supply-
            # scaled; no speed envelope (the survey's, for converters the fit describes)
            return (tdc_energy_pj(self.chip.adc.tdc_architecture, b, self.table,
                                  sense_amp_energy_fj(tech.node_nm))
                    * self._sf * self.cal.e("adc"))
        if one_comparator(kind, b):  # one sense-amp decision (band-free: the typical table's)
            e = sense_amp_energy_fj(tech.node_nm) * self._sf * 1e-3
        else:
            e = (adc_survey.fom_w_fj(kind, tech.node_nm, tech.vdd_v)
                 * adc_survey.steps(kind, b) * 1e-3)
        e *= adc_survey.rate_factor(b, self.sample_rate_hz())
        if kind in _COUNTING_KINDS and not one_comparator(kind, b):
            e += b * self.table.shift_add_energy_pj_per_bit * self._sf  # the counter's latch
        if kind is ADCKind.SINGLE_SLOPE and not one_comparator(kind, b):
            e += self.ramp_generator_pj(b)
        return e * self.cal.e("adc")

    def reference_read_pj(self) -> float:
        """One read of an in-memory ramp converter's reference cell, one ramp step, pJ: the
        step's threshold is a cell of the array's kind, the reference column whose ``2^b + 5``
        cells :meth:`area_um2` counts (Yang, Mao et al., Nat. Commun. 2025; the tables' ramp
        prices the same read). A resistive cell conducts at its on-conductance for the step,
        drawn from the read supply as the array's reads (:func:`read_supply_v`), ``V_s V_read
        G_max devices t_step`` (an upper bound, as the tables' ``V_read^2 G_on t_step``);
        another cell kind: its priced bit-cell read."""
        chip, tech = self.chip, self.chip.tech
        if _resistive_kind(cell_kind(chip)):  # V^2 * uS * ns = fJ
            return (read_supply_v(chip) * tech.v_read_v * chip.device.g_max_us
                    * tech.devices_per_cell * self.table.ramp_step_ns * 1e-3)
        return _cell_read(chip, self.table, NO_CALIBRATION, chip.device.bits_per_cell)

    def ramp_generator_pj(self, b: int) -> float:
        """A single-slope converter's share of one ramp sweep, pJ.

        Assumed: one ramp generator per array, a ``b``-bit DAC and its output buffer stepped
        one code per clock, drawing the tables' ``b``-bit DAC power (MNSIM 2.0: 3.9 uW at
        32 nm x ``2^(b-1)``, the DAC's energy over its ``b + 2``-ns conversion) for the whole
        sweep (``2^b`` clock periods, :meth:`time_ns`); all ``adcs_per_array`` converters of
        the array convert during one sweep and share it (the full-array workload; fewer busy
        converters would each carry more). Supply-scaled as the tables' CMOS entries."""
        power_mw = dac_energy_pj(b, self.table) / dac_conversion_time_ns(b, self.table)
        sweep_pj = power_mw * self.time_ns(_A.CONVERT, b) * self._sf
        return sweep_pj / self.chip.array.adcs_per_array

    def area_um2(self) -> float:
        chip, b = self.chip, table_adc_bits(self.chip.adc.bits)
        if digital(chip) and ripple.applies(chip):
            return ripple.area_um2_per_column(chip, self.table) * self.cal.a("adc")
        if digital(chip):
            # sensed cells: one sense amplifier per adder tree, i.e. per array.cols_per_adc
            # columns (the tables' comparator, MNSIM 2.0's sense amp, by node)
            sense_amp = (self.table.comparator_area_um2 + sensed_gates_area_um2(chip)
                         if sensed_cells(chip) else 0.0)
            return (adder_tree_full_adders(chip.array.rows_per_group, chip.dac_bits)
                    * self.table.accumulator_area_um2_per_bit + sense_amp) * self.cal.a("adc")
        if not self.physical:
            return adc_area_um2(chip.adc.kind, b, self.table, chip.adc.tdc_architecture
                                ) * self.cal.a("adc")
        kind, node = chip.adc.kind, chip.tech.node_nm
        if kind is ADCKind.TDC:  # the circuit model's delay stages, flip-flops, comparators
            return (tdc_area_um2(chip.adc.tdc_architecture, b, self.table)
                    + bitplanes.accumulator_area_um2_per_adc(chip, self.table)) * self.cal.a("adc")
        if one_comparator(kind, b):  # one sense amp (MNSIM 2.0, 1 um^2 at 28 nm)
            return (self.table.comparator_area_um2
                    + bitplanes.accumulator_area_um2_per_adc(chip, self.table)) * self.cal.a("adc")
        if kind is ADCKind.SINGLE_SLOPE:
            # one comparator (its 2^b steps are in time, not hardware: the survey's flash area
            # per comparator), the b-bit counter, and its share of the array's ramp generator
            # (a b-bit DAC with its buffer, adc_survey.dac_area_um2)
            return (adc_survey.step_area_um2(kind, node)
                    + b * self.table.shift_add_area_um2_per_bit
                    + adc_survey.dac_area_um2(b, node) / chip.array.adcs_per_array
                    + bitplanes.accumulator_area_um2_per_adc(chip, self.table)
                    ) * self.cal.a("adc")
        if kind is ADCKind.RAMP:
            # one comparator, as the single-slope converter (its 2^b steps are reference-cell
            # reads in time, not comparators), the b-bit latch of the shared count, and the
            # reference column of 2^b + 5 cells (Yang, Mao et al. 2025)
            area = (adc_survey.step_area_um2(kind, node)
                    + b * self.table.shift_add_area_um2_per_bit
                    + (2**b + 5) * CellModel(chip, self.table).area_um2())
        else:
            # the survey's area per conversion step times the converter's steps (the fit's own
            # normalisation, A / 2^ENOB): SAR, flash and the time-domain family
            area = adc_survey.step_area_um2(kind, node) * adc_survey.steps(kind, b)
            if kind in _COUNTING_KINDS:
                area += b * self.table.shift_add_area_um2_per_bit  # the counter
        area += bitplanes.accumulator_area_um2_per_adc(chip, self.table)
        return area * self.cal.a("adc")

    def sample_rate_hz(self) -> float:
        """The rate each converter runs at, from the chip's cycle: its ``cols_per_adc``
        conversions per step, a step lasting the compute window or the conversions, whichever
        is longer (:func:`.latency.step_ns`, as :func:`.latency.block_latency` times a step)."""
        from .latency import step_ns  # (latency imports this module)

        n_mux = _conversions_per_adc(self.chip)
        return n_mux / step_ns(self.chip, n_mux, self.time_ns(_A.CONVERT), self.table) * 1e9

    def time_ns(self, action: Action, bits: int = 0) -> float:
        self._check(action)
        chip = self.chip
        b = table_adc_bits(bits or chip.adc.bits)
        if digital(chip):
            # the adder tree is pipelined to the digital clock: one column sum per clock
            return 1e3 / chip.tech.clock_mhz
        # a calibration's time scale applies to either model (the physical one ignored it
        # while taking the same calibration's energy factors)
        return self._own_time_ns(b) * self.cal.adc_time_scale

    def _own_time_ns(self, b: int) -> float:
        """The converter's own conversion time at ``b`` bits, ns, before calibration: the
        published one (``adc.t_conversion_ns``) where the chip states it."""
        chip = self.chip
        if chip.adc.t_conversion_ns is not None:
            return float(chip.adc.t_conversion_ns)
        if not self.physical:
            return adc_conversion_time_ns(chip.adc.kind, b, self.table, chip.tech.clock_mhz,
                                          chip.adc.tdc_architecture)
        if chip.adc.kind is ADCKind.CCO:
            return 2**b * CCO_LSB_NS
        if chip.adc.kind is ADCKind.TDC:  # the circuit model's own timing (tables.py)
            return tdc_conversion_time_ns(chip.adc.tdc_architecture, b, self.table)
        # SAR (b + 1) comparator cycles of 1 ns (NeuroSim V1.4 SarADC.cpp), flash one, ramp
        # and integrate-and-fire 2^b steps: the converter's own timing, not the chip clock;
        # single-slope 2^b periods of the chip's clock, which its counter counts
        return adc_conversion_time_ns(chip.adc.kind, b, self.table, chip.tech.clock_mhz)


class DACModel(ComponentModel):
    """Row drivers: one event per activated row and array read.

    tables: :func:`.energy.dac_pulse_energy_pj`. physical: the driver (amplitude: the
    MNSIM b-bit DAC; pulse width: one 1-b toggle) plus word-line switching
    ``C_wl V_wl^2`` with ``C_wl = 0.2 fF/um x n_cols x cell pitch``, once per pulse: a pulse
    count drives ``x`` unit pulses, ``2^(b-1)`` on average for uniform nonzero inputs, each a
    toggle and a switching of the line (as a bit-plane drive's planes whose bit is 1). Area,
    physical: an amplitude DAC is ``2^b`` unit elements at the ADC survey's SAR area per step
    (:func:`.adc_survey.dac_area_um2`); a temporal driver is a 1-b driver and its b-bit counter.
    """

    component = _C.DAC
    actions = (_A.PULSE, _A.INPUT_SHIFT, _A.WORDLINE)

    def energy_pj(self, action: Action, bits: int = 0) -> float:
        self._check(action)
        if action is _A.WORDLINE:
            # ``every_row``: each array read switches every row's word line (derived by the
            # estimator from the array reads), once per bit-plane of a bit-plane drive; the
            # pulses then carry no word line
            if not every_row_wordlines(self.chip):
                return 0.0
            return self.wordline_pj() * bitplanes.analog_phases(self.chip) * self.cal.e("dac")
        if action is _A.INPUT_SHIFT:
            # A-shift: x - 2^(B_x-1) of a B_x-bit code is its MSB inverted: a 1-bit add
            return self.table.accumulator_add_energy_pj_per_bit * self._sf * self.cal.e("digital")
        bits = _check_bits(bits)  # every drive below prices a b-bit pulse, b >= 1
        if digital(self.chip) and bits > 1:
            # a digital read-out takes a d-bit slice on d input lines per row, each a 1-b
            # driver with its line: those whose bit is 1 toggle, mean_set_bits(d) of them for
            # a nonzero slice (as the planes of a bit-plane drive), not a d-bit analog DAC
            return self.energy_pj(action, 1) * bitplanes.mean_set_bits(bits)
        if not self.physical:
            return _dac_pulse(self.chip, self.table, self.cal, bits)
        drive = self.chip.tech.input_drive
        one = dac_energy_pj(1, self.table) * self._sf
        wl = 0.0 if every_row_wordlines(self.chip) else self.wordline_pj()
        if drive is InputDrive.AMPLITUDE:
            e = dac_energy_pj(bits, self.table) * self._sf
        elif drive is InputDrive.PULSE_WIDTH:
            e = one
        elif drive is InputDrive.BIT_PLANES:
            # a 1-b toggle and a word-line switching per plane whose bit is 1
            return (one + wl) * bitplanes.mean_set_bits(bits) * self.cal.e("dac")
        else:
            # pulse count: x unit pulses, each a driver toggle that charges and discharges the
            # line (2^(b-1) on average for uniform nonzero inputs), as a plane of bit-planes
            return (one + wl) * 2 ** (bits - 1) * self.cal.e("dac")
        return (e + wl) * self.cal.e("dac")

    def wordline_pj(self) -> float:
        """Word-line switching of one row, pJ: ``C_wl V_swing V_high`` (``V_high`` the
        driver's supply, ``tech.wordline_high_v``; absent: the swing, so ``C_wl V^2``). ``C_wl``
        is ``n_cols`` cells' load plus the driver's (``tech.wordline_driver_cap_ff``); a
        cell's load is the published ``tech.wordline_cap_ff_per_cell``, else the line's wire
        (0.2 fF/um) and the gate of its access device (1 fF/um of gate width, taken as wide as
        the cell pitch). The pitch is that of the cell's whole footprint: with a full adder in
        every bit-cell (``tech.digital_column = 'ripple'``) the line crosses the adder too,
        whose area the ripple column's read-out already counts (:mod:`.ripple`). A cell of
        ``n`` bit-cells (SRAM and gain cells holding several bits of one weight, each on its
        own bit line) sits as ``n`` bit-cells side by side along the row, so its pitch along
        the line is ``n`` bit-cell pitches, ``n sqrt(A / n)`` (resistive cells: ``sqrt(A)``)."""
        tech = self.chip.tech
        if tech.wordline_cap_ff_per_cell is not None:
            per_cell_ff = tech.wordline_cap_ff_per_cell
        else:
            footprint = CellModel(self.chip, self.table).area_um2()
            if ripple.applies(self.chip):
                footprint += ripple.adder_area_um2_per_cell(self.chip, self.table)
            # a cell of n bit-cells holds one weight's bits, driven by one input, each on its
            # own bit line: the n sit side by side along the row, and the line crosses n
            # bit-cells (n access gates), not one square of the cell's whole footprint
            n = 1 if _resistive_kind(cell_kind(self.chip)) else stored_bits_per_cell(self.chip)
            pitch_um = n * math.sqrt(footprint / n)
            # the wire crosses the whole footprint, the stored weight sets' cells included
            # (tech.weight_sets_stored); the line gates only the compute cell's devices, as
            # wide as one set's bit-cells (the gate grew with the storage: wu-jssc23's 32 sets
            # put 903 fJ on a row's line, 151 fJ of it wire; now 283 fJ)
            gate_um = pitch_um / math.sqrt(self.chip.tech.weight_sets_stored)
            per_cell_ff = (self.table.wire_capacitance_ff_per_um * pitch_um
                           + GATE_CAPACITANCE_FF_PER_UM * gate_um)
        c_ff = per_cell_ff * self.chip.array.n_cols + tech.wordline_driver_cap_ff
        v = tech.vdd_v if tech.wordline_v is None else tech.wordline_v
        v_high = v if tech.wordline_high_v is None else tech.wordline_high_v
        return c_ff * v * v_high * 1e-3

    def area_um2(self) -> float:
        chip = self.chip
        # a digital read-out: d 1-b drivers per row (a d-bit slice on d input lines)
        lines, b = (chip.dac_bits, 1) if digital(chip) else (1, chip.dac_bits)
        if not self.physical:
            return lines * dac_area_um2(b, self.table) * self.cal.a("dac")
        if chip.tech.input_drive is InputDrive.AMPLITUDE:
            # a voltage-output DAC: 2^b unit elements, priced from the ADC survey (the
            # MNSIM/ISAAC figure, 0.166 um^2 per bit at 32 nm, holds no ladder or array)
            return lines * adc_survey.dac_area_um2(b, chip.tech.node_nm) * self.cal.a("dac")
        if chip.tech.input_drive is InputDrive.BIT_PLANES:
            # a 1-b driver: each plane's bit comes from the input register, nothing to time
            return dac_area_um2(1, self.table) * self.cal.a("dac")
        # a 1-b driver and the b-bit counter/comparator that times the pulse
        return lines * (dac_area_um2(1, self.table) + b * self.table.shift_add_area_um2_per_bit
                        ) * self.cal.a("dac")

    def time_ns(self, action: Action, bits: int = 0) -> float:
        self._check(action)
        return float(self.chip.tech.t_read_ns)


class CellModel(ComponentModel):
    """Memory cells: reads (``cell.read`` per cell on an active row; ``cell.v2g_lsb`` the
    summed conductance of resistive reads) and writes.

    physical: current domain, resistive (RRAM, PCM, MRAM; the FeFET's and the flash cell's
    channel at the read drain voltage): the charge the cells conduct, drawn from the read
    supply ``V_s`` (:func:`read_supply_v`: ``tech.read_supply_v``, absent ``V_dd``; the driver
    or bit-line clamp that holds a line at its read voltage drops the rest), ``V_s Q`` with
    ``Q = V G t`` per read, times ``devices_per_cell``: amplitude drive at ``V x / x_max`` for
    the read pulse, temporal drive at full ``V`` for ``x`` LSB times ``t_read / (2^b - 1)``,
    both ``Q`` per unit of ``|x| G`` (priced on ``cell.v1g_lsb``, the run's sum of ``|x| G``;
    a cell sensed to its bit on ``cell.v2g_lsb``, which counts its full-voltage reads). The
    cell itself dissipates ``V Q`` of it (``x^2`` under amplitude drive); a chip's supply
    delivers ``V_s Q``, and that is what a published TOPS/W measures.
    Current domain SRAM (and eDRAM gain cells, read through their decoupled read port): the
    tables' bit-line read per bit-cell. Charge domain: ``C_unit V_dd^2`` per product (half the
    stored bits are ones for uniform weights). Both models: ``cell.refresh`` per cell-ns held,
    an eDRAM cell's refresh power (every stored bit read and written back once per
    ``retention_ns``; 0 for cells that hold their bits).
    """

    component = _C.CELL
    actions = (_A.READ, _A.V2G_LSB, _A.V1G_LSB, _A.WRITE, _A.REFRESH)

    def energy_pj(self, action: Action, bits: int = 0) -> float:
        self._check(action)
        chip, table, cal = self.chip, self.table, self.cal
        if action is _A.REFRESH:
            return _cell_refresh(chip, table, cal, bits)
        if action is _A.READ and digital(chip):
            return self._digital_read_pj()
        if action is _A.V1G_LSB and not self.physical:
            return 0.0  # the tables price resistive reads by x^2 (cell.v2g_lsb)
        if action is _A.WRITE or not self.physical:
            fn = {_A.READ: _cell_read, _A.V2G_LSB: _cell_v2g_lsb, _A.WRITE: _cell_write}[action]
            return fn(chip, table, cal, bits)
        tech = chip.tech
        resistive = _resistive_kind(cell_kind(chip))
        if action is _A.READ:
            # a bit-plane drive reads a nonzero input's cell once per plane whose bit is 1
            planes = (bitplanes.mean_set_bits(chip.dac_bits) if bitplanes.applies(chip)
                      else 1.0)
            if tech.compute_domain is ComputeDomain.CHARGE:
                # fF * V^2 = fJ; one product in two switches its capacitor
                return 0.5 * tech.cap_unit_ff * tech.vdd_v**2 * 1e-3 * (
                    stored_bits_per_cell(chip) * cal.e("cell")) * planes
            if resistive:
                return 0.0  # priced by the summed conductance (cell.v2g_lsb)
            return _cell_read(chip, table, cal, bits) * planes
        if not resistive or tech.compute_domain is ComputeDomain.CHARGE:
            return 0.0
        # the cells conduct read_charge_fc per unit of |x| G under every drive (amplitude: a
        # current x / x_max of full scale for the pulse; temporal: full current for x LSB
        # times; bit-planes: popcount(x) pulses), drawn from the read supply: the driver or
        # clamp that sets the line's voltage drops the rest (the cell itself dissipates
        # V_line Q, x^2 under amplitude drive, but the chip's supply delivers V_s Q). A sensed
        # cell is read at full voltage once per nonzero slice: the run counts those reads in
        # cell.v2g_lsb (cimsim.engine._read_v2g), the plain |x| G sum in cell.v1g_lsb
        if sensed_cells(chip) != (action is _A.V2G_LSB):
            return 0.0
        return read_supply_v(chip) * self.read_charge_fc() * 1e-3 * cal.e("cell")  # V*fC=fJ

    def _digital_read_pj(self) -> float:
        """One read of a cell on an active row under a digital read-out (a nonzero d-bit
        input slice, ``d = dac.bits``), pJ. Each stored bit gates the slice's ``d`` bits; the
        gates whose input bit is 1 switch their output into an adder input: ``m(d) = d
        2^(d-1) / (2^d - 1)`` of them for a nonzero slice (:func:`.bitplanes.mean_set_bits`,
        1 at ``d = 1``). physical: ``C V^2`` per switching gate, the gate capacitance of a
        pitch-wide input (1 fF/um); tables: the CIM bit-cell read per switching gate (the
        tables' 8T cell reads its 1-b product through its read port). A resistive cell sensed
        to its bit (both models): one sense-amplifier decision (its read current is
        cell.v2g_lsb's charge V G t from the read supply); at ``d = 1`` its bit is the
        product (a zero input bit leaves the row undriven, nothing to gate), at ``d > 1`` the
        sensed bit gates the slice: ``m(d)`` switching gates as a bit-cell's."""
        chip, cal = self.chip, self.cal
        m = bitplanes.mean_set_bits(chip.dac_bits)
        if sensed_cells(chip):
            gates = self._gate_switch_pj() * m if chip.dac_bits > 1 else 0.0
            return sense_decision_pj(chip, cal) + gates
        if not self.physical:
            return _cell_read(chip, self.table, cal, chip.device.bits_per_cell) * m
        return self._gate_switch_pj() * stored_bits_per_cell(chip) * m

    def _gate_switch_pj(self) -> float:
        """One product gate switching its output into an adder input, pJ: ``C V_dd^2``, ``C``
        the gate capacitance of a bit-cell-pitch-wide input (1 fF/um)."""
        return (GATE_CAPACITANCE_FF_PER_UM * self.bit_pitch_um() * self.chip.tech.vdd_v**2
                * 1e-3 * self.cal.e("cell"))

    def read_charge_fc(self) -> float:
        """Charge one cell drives onto its column per DAC-LSB of input and cell-LSB of
        conductance, fC: the one quantity the cell's read and the slice-weighting mirrors
        (:class:`WeightingModel`, which copy it) are priced from. Uncalibrated.

        Resistive cells (and the FeFET's and flash cell's channel) conduct for the read pulse:
        ``V_read G_lsb devices t_read / (2^b - 1)`` (amplitude: ``V_read x / x_max`` for
        ``t_read``; temporal: ``V_read`` for ``x`` LSB times; bit-planes: one whole pulse,
        ``V_read G_lsb devices t_read``, per read the run counts, one per plane whose bit is
        1, ``popcount(x)``). SRAM and eDRAM
        gain cells (current domain, a bit-line discharge): the bit line's charge ``C ΔV``,
        which the supply restores at ``V_dd``, so the priced bit-cell read ``E_read`` (the
        tables' bit-line read, supply-scaled) is ``V_dd C ΔV``: ``E_read / V_dd`` per read of
        a full-scale input on a full-scale cell, spread over ``(2^b - 1)`` DAC-LSB (bit-planes:
        per counted read) and the cell's ``2^c - 1`` levels (as the resistive read). Bounded by the
        line's capacitance and swing, not by the window: a longer step draws no more. Charge
        domain: 0 (a capacitor's charge is shared, not conducted)."""
        chip, tech = self.chip, self.chip.tech
        if tech.compute_domain is ComputeDomain.CHARGE:
            return 0.0
        # a bit-plane drive's run counts reads (popcount(x), cimsim.engine._v1g): a whole
        # pulse at full voltage each; otherwise DAC-LSBs of the 2^b - 1 of a full input
        per_lsb = (1.0 if chip.tech.input_drive is InputDrive.BIT_PLANES
                   else 1.0 / read_levels(chip))
        # the tables price a resistive read (v2g_lsb) by device.cell on one device per cell
        # (they read no tech.cell_kind or devices_per_cell): the charge is that read's
        resistive = (_resistive_kind(cell_kind(chip)) if self.physical
                     else chip.device.cell.resistive)
        if resistive:  # V * uS * ns = fC
            devices = tech.devices_per_cell if self.physical else 1
            return tech.v_read_v * chip.device.g_lsb_us * devices * tech.t_read_ns * per_lsb
        e_read_fj = _cell_read(chip, self.table, NO_CALIBRATION, chip.device.bits_per_cell) * 1e3
        return e_read_fj / tech.vdd_v / (2**chip.device.bits_per_cell - 1) * per_lsb

    def area_f2(self) -> float:
        """One cell's area in F^2 (every device and stored bit)."""
        chip, kind = self.chip, cell_kind(self.chip)
        if chip.tech.cell_area_f2 is not None:
            f2 = chip.tech.cell_area_f2
        elif kind in CELL_AREA_F2:
            f2 = CELL_AREA_F2[kind]
        else:
            # a digital read-out's bit-cell holds a product gate per input bit of a cycle
            transistors = _SRAM_TRANSISTORS[kind] + PRODUCT_GATE_TRANSISTORS * product_gates(chip)
            f2 = (_interp_node(chip.tech.node_nm, _SRAM_F2_NODES_NM, _SRAM_F2)
                  * transistors / 8)
        n = chip.tech.devices_per_cell if _resistive_kind(kind) else stored_bits_per_cell(chip)
        return f2 * n * chip.tech.weight_sets_stored

    def bit_pitch_um(self) -> float:
        """Pitch of one bit-cell (one stored bit of one weight set; a resistive cell's one
        device, whatever the bits it holds: its multi-level bits share the device), um."""
        chip = self.chip
        per = (chip.tech.devices_per_cell if _resistive_kind(cell_kind(chip))
               else stored_bits_per_cell(chip))
        per_bit = self.area_f2() / (per * chip.tech.weight_sets_stored)
        return math.sqrt(per_bit) * chip.tech.node_nm * 1e-3

    def area_um2(self) -> float:
        chip = self.chip
        if not self.physical:
            sets = chip.tech.weight_sets_stored  # storage for each set, as below
            if chip.device.cell.resistive:  # PCM, MRAM: as RRAM; FeFET, flash: their own
                return table_cell_area_um2(chip, self.table) * sets * self.cal.a("cell")
            # the tables' 8T CIM cell gates its 1-b product through its read port; each further
            # input bit of a digital read-out's slice adds a product gate at its area per
            # transistor (8 of them)
            gates = max(product_gates(chip) - 1, 0) * PRODUCT_GATE_TRANSISTORS / 8
            return (self.table.sram_cell_area_um2 * (1 + gates) * stored_bits_per_cell(chip)
                    * sets * self.cal.a("cell"))
        area = self.area_f2() * (chip.tech.node_nm * 1e-3) ** 2
        tech = chip.tech
        if tech.compute_domain is ComputeDomain.CHARGE and tech.cap_density_ff_per_um2 > 0:
            area += tech.cap_unit_ff * stored_bits_per_cell(chip) / tech.cap_density_ff_per_um2
        return area * self.cal.a("cell")


class ShiftAddModel(ComponentModel):
    """Shift-and-add of ADC codes (ISAAC S+A, node- and supply-scaled)."""

    component = _C.SHIFT_ADD
    actions = (_A.ADD,)

    def energy_pj(self, action: Action, bits: int = 0) -> float:
        self._check(action)
        e = _shift_add(self.chip, self.table, self.cal, bits)
        if digital(self.chip) and ripple.applies(self.chip):
            return e * ripple.shift_adds_per_conversion(self.chip)  # one per output, not column
        return e

    def area_um2(self) -> float:
        return (self.chip.accumulator_bits * self.table.shift_add_area_um2_per_bit
                * self.cal.a("shift_add"))


class AccumulatorModel(ComponentModel):
    """Accumulator adds (Horowitz 32-b add per bit)."""

    component = _C.ACCUMULATOR
    actions = (_A.ADD,)

    def energy_pj(self, action: Action, bits: int = 0) -> float:
        self._check(action)
        return (bits * self.table.accumulator_add_energy_pj_per_bit * self._sf
                * self.cal.e("accumulator"))

    def area_um2(self) -> float:
        return (self.chip.accumulator_bits * self.table.accumulator_area_um2_per_bit
                * self.cal.a("accumulator"))


class BufferModel(ComponentModel):
    """The tile buffer: bits read and written (Horowitz SRAM of ``array.tile_buffer_kib``)."""

    component = _C.BUFFER
    actions = (_A.READ_BIT, _A.WRITE_BIT)

    def energy_pj(self, action: Action, bits: int = 0) -> float:
        self._check(action)
        return _buffer_bit(self.chip, self.table, self.cal, bits)

    def area_um2(self) -> float:
        return (self.chip.array.tile_buffer_kib * 8192 * self.table.buffer_area_um2_per_bit
                * self.cal.a("buffer"))


class InterconnectModel(ComponentModel):
    """Router hops between tiles and the tile bus (ISAAC)."""

    component = _C.INTERCONNECT
    actions = (_A.BIT, _A.BUS_BIT)

    def energy_pj(self, action: Action, bits: int = 0) -> float:
        self._check(action)
        fn = _link_bit if action is _A.BIT else _bus_bit
        return fn(self.chip, self.table, self.cal, bits)


class DigitalModel(ComponentModel):
    """Exact digital corrections, dequantization and slice-weight multiplies."""

    component = _C.DIGITAL
    actions = (_A.CORRECTION_ADD, _A.DEQUANT_MULTIPLY, _A.DRIFT_GAIN_MULTIPLY,
               _A.SHIFT_CORRECTION_ADD, _A.SLICE_MULTIPLY)

    def energy_pj(self, action: Action, bits: int = 0) -> float:
        self._check(action)
        # A-shift's correction is an add of a stored constant; a drift gain and a slice weight
        # are one multiply by a stored constant each
        adds = (_A.CORRECTION_ADD, _A.SHIFT_CORRECTION_ADD)
        fn = _correction_add if action in adds else _dequant_multiply
        return fn(self.chip, self.table, self.cal, bits)


def sensed_gates_area_um2(chip: ChipConfig) -> float:
    """Product gates a sensed cell's bit meets under a digital read-out with ``d = dac.bits
    > 1``, um^2: ``d`` gates of :data:`PRODUCT_GATE_TRANSISTORS` at the node's unit transistor
    beside each sense amplifier (at ``d = 1`` the sensed bit is the product: none)."""
    d = chip.dac_bits
    if not sensed_cells(chip) or d == 1:
        return 0.0
    return d * PRODUCT_GATE_TRANSISTORS * unit_transistor_area_um2(chip.tech.node_nm)


def unit_transistor_area_um2(node_nm: float) -> float:
    """One minimum transistor at ``node_nm``, um^2: the CIM SRAM cell's area per transistor
    (NeuroSim V1.4's 8T cell, :data:`CELL_AREA_F2`'s note, over its 8 transistors), as the
    product gate of a digital-CIM bit-cell is priced."""
    return _interp_node(node_nm, _SRAM_F2_NODES_NM, _SRAM_F2) / 8 * (node_nm * 1e-3) ** 2


class WeightingModel(ComponentModel):
    """The weighting network of analog slice read-out (``array.slice_readout = 'analog'``):
    slice column s of a conversion is copied at ratio ``r_s = |w_s| / min |w|`` (its
    significance 2^(c·s), the sign column's 2^(B-1)) before the one conversion
    (:func:`cimsim.arrays.encoding.weighting_ratios`; a conversion of one column has none).

    physical, current domain: binary-weighted current mirrors that attenuate to the most
    significant column (Razavi, "Design of Analog CMOS Integrated Circuits", 2nd ed., 2017,
    §5.1, basic current mirrors: the copy ratio is the output device's W/L over the
    reference's): column s is copied at ``r_s / r_max`` by a reference device ``r_max / r_s``
    units wide into a unit output device, as many units as scaling up from the least
    significant column would take, at ``1 / r_max`` of its copied current, the choice a
    designer minimising power makes. The copied current flows from ``V_dd`` while the column
    conducts: ``E = V_dd (r_s / r_max) Q_s``, ``Q_s`` the column's read charge, the cell
    model's own (:meth:`CellModel.read_charge_fc`: a resistive cell's ``V_read G t_read |x| /
    (2^b - 1)`` for amplitude and temporal drive alike; an SRAM or gain cell's bit-line
    discharge, its priced read over ``V_dd``, whatever the window) (``weighting.mirror_lsb`` is
    the run's ``Σ r_s |x| G``). Charge domain (binary capacitors
    scale up from the unit capacitor, the smallest that matches):
    binary-weighted capacitors, ``r_s`` unit capacitors ``tech.cap_unit_ff`` per slice column
    switched once per conversion, ``r_s C_u V_dd^2`` (Rabaey, Chandrakasan & Nikolic,
    "Digital Integrated Circuits", 2nd ed., 2003, §5.5: ``C V_dd^2`` drawn per charge and
    discharge). Area: one unit element (:meth:`area_um2`) per ratio step. The ``tables``
    cost model prices it the same way (no preset calibration covers it: none of the calibrated
    presets reads its slices in analog), so a sweep of the read-out compares like with like."""

    component = _C.WEIGHTING
    actions = (_A.SLICE_COLUMN, _A.MIRROR_LSB)

    def energy_pj(self, action: Action, bits: int = 0) -> float:
        self._check(action)
        tech = self.chip.tech
        charge = tech.compute_domain is ComputeDomain.CHARGE
        if action is _A.SLICE_COLUMN:  # 2^bits unit capacitors switched: fF * V^2 = fJ
            return 2.0**bits * tech.cap_unit_ff * tech.vdd_v**2 * 1e-3 if charge else 0.0
        if charge:
            return 0.0
        # V_dd x the read charge of one cell-LSB at one DAC-LSB, the cell model's own
        # (CellModel.read_charge_fc): V * fC = fJ; the mirrors attenuate to the most
        # significant column (copy ratio r_s / r_max), so the run's Σ r |x| G is divided by r_max
        q = CellModel(self.chip, self.table).read_charge_fc()
        return tech.vdd_v * q * 1e-3 / self.max_ratio()

    @functools.cached_property
    def _ratios(self) -> np.ndarray:
        """(Qc, Q) the weighting ratios of one output's conversions (all 0 with a digital
        slice read-out: nothing is weighted)."""
        from ..arrays.encoding import conversion_kinds, weighting_ratios  # (config only)
        from ..config import SliceReadout

        w = conversion_kinds(self.chip).weight
        if self.chip.array.slice_readout is not SliceReadout.ANALOG:
            return np.zeros_like(w)
        return weighting_ratios(w)

    def max_ratio(self) -> float:
        """The largest ratio of a conversion's columns, ``max |w| / min |w|`` (1 where nothing
        is weighted): the current mirrors copy column s at ``r_s / r_max``."""
        return float(max(self._ratios.max(initial=0.0), 1.0))

    def area_um2(self) -> float:
        """One unit element, um^2: a minimum transistor at the node
        (:func:`unit_transistor_area_um2`, current domain) or a unit capacitor
        ``cap_unit_ff / cap_density_ff_per_um2`` (charge domain; 0 with the density 0: above
        the cells, as the charge-domain cells' capacitors)."""
        tech = self.chip.tech
        if tech.compute_domain is ComputeDomain.CHARGE:
            d = tech.cap_density_ff_per_um2
            return tech.cap_unit_ff / d if d > 0 else 0.0
        return unit_transistor_area_um2(tech.node_nm)

    def units_per_array(self) -> int:
        """Unit elements of one array's weighting networks: every output an array holds
        (``n_cols // Q``) with the ratios of its conversions summed (0 where nothing is
        weighted)."""
        r = self._ratios
        return int(self.chip.array.n_cols // r.shape[1] * r.sum())


MUX_PER_FULL_ADDER = 12 / 28
"""A 2:1 multiplexer bit priced as a fraction of a full-adder bit, by transistor count: a
static CMOS 2:1 mux (an AOI22 with its output and select inverters, 8 + 2 + 2 = 12
transistors) against the 28-transistor mirror adder (Weste & Harris, "CMOS VLSI Design", 4th
ed., 2011, §11.2.1) [der]: the digital tables price a full-adder bit (the adder trees' energy
and area per added bit), and a mux switches and occupies in proportion to its transistors."""


def _shift_stages(bits: int, exponent_bits: int) -> int:
    """Stages of a logarithmic (barrel) shifter that aligns a ``bits``-bit mantissa by 0 ..
    ``min(2^e - 1, bits)`` places (a larger difference leaves nothing: the mantissa is 0)."""
    return math.ceil(math.log2(min(2**exponent_bits, max(bits, 0) + 1)))


class BlockFPModel(ComponentModel):
    """Pre-alignment and re-normalisation of block floating-point inputs
    (``quant.act_format = 'block_fp'``), as floating-point CIM macros build them around an
    integer array: a max-exponent comparison tree per row tile, an alignment shifter per row,
    and per output an exponent adder and a normaliser (leading-zero count and shift) that
    turns the tile's integer partial sum back into floating point (the pre-alignment of Tu et
    al., "A 28nm 29.2TFLOPS/W BF16 and 36.5TOPS/W INT8 Reconfigurable Digital CIM Processor
    with Unified FP/INT Pipeline ...", ISSCC 2022, 16.1, and of Guo et al., "A 28nm 64-kb
    31.6-TFLOPS/W Digital-Domain Floating-Point-Computing-Unit and Double-Bit 6T-SRAM
    Computing-in-Memory Macro for Floating-Point CNNs", ISSCC 2023, 7.2).

    Every part is counted in full-adder bits (``F``) and 2:1 mux bits (``M``, priced at
    :data:`MUX_PER_FULL_ADDER` of a full-adder bit), at the digital tables' energy and area per
    added bit (``accumulator_add_energy_pj_per_bit``, ``accumulator_area_um2_per_bit``: the
    adder trees' prices), supply-scaled. With ``e`` exponent bits, ``m`` mantissa (input)
    bits, ``n`` accumulator bits and ``s = ceil(log2 min(2^e, m + 1))`` shifter stages:

    * ``exponent_max`` (one comparison): ``e F + e M`` (an e-bit magnitude compare, a subtract,
      and a mux keeping the larger exponent);
    * ``align_shift`` (one input element): ``e F + m·s M`` (the shift amount E_max − e_k, and
      a logarithmic shifter of s stages of m muxes);
    * ``exponent_add`` (one output per tile): ``e F``;
    * ``normalize`` (one output per tile): ``(n − 1) M + n·ceil(log2 n) M`` (a leading-zero
      counter tree of n − 1 mux-sized nodes, Oklobdzija, IEEE TVLSI 2(1), 1994, and an n-bit
      logarithmic shifter).

    Area: one instance is an array's whole unit, ``rows − 1`` comparators, ``rows`` alignment
    shifters and one exponent adder and normaliser per read-out (shift-and-add) lane. The
    alignment is pipelined with the array reads: no time on the critical path. Zero for
    ``int`` inputs (nothing is built)."""

    component = _C.BLOCK_FP
    actions = (_A.EXPONENT_MAX, _A.ALIGN_SHIFT, _A.EXPONENT_ADD, _A.NORMALIZE)

    def _bits(self, action: Action, bits: int) -> float:
        """Full-adder-bit equivalents of one action."""
        e = self.chip.quant.act_exponent_bits
        r = MUX_PER_FULL_ADDER
        if action is _A.EXPONENT_MAX:
            return e * (1 + r)
        if action is _A.ALIGN_SHIFT:
            return e + bits * _shift_stages(bits, e) * r
        if action is _A.EXPONENT_ADD:
            return float(e)
        return (max(bits - 1, 0) + bits * math.ceil(math.log2(max(bits, 1)))) * r

    def energy_pj(self, action: Action, bits: int = 0) -> float:
        self._check(action)
        return self._bits(action, bits) * self.table.accumulator_add_energy_pj_per_bit * self._sf

    def area_um2(self) -> float:
        """One array's block-FP unit, um^2 (0 with ``int`` inputs)."""
        chip = self.chip
        if chip.quant.act_format is not ActFormat.BLOCK_FP:
            return 0.0
        rows = chip.array.n_rows
        lanes = ripple.outputs_per_array(chip) if ripple.applies(chip) else \
            chip.array.adcs_per_array
        acc = chip.accumulator_bits
        fa = ((rows - 1) * self._bits(_A.EXPONENT_MAX, 0)
              + rows * self._bits(_A.ALIGN_SHIFT, chip.input_bits)
              + lanes * (self._bits(_A.EXPONENT_ADD, 0) + self._bits(_A.NORMALIZE, acc)))
        return fa * self.table.accumulator_area_um2_per_bit


MODELS: Mapping[Component, type[ComponentModel]] = MappingProxyType({
    cls.component: cls for cls in (
        LayerModel, ArrayModel, ADCModel, DACModel, CellModel, ShiftAddModel, AccumulatorModel,
        BufferModel, InterconnectModel, DigitalModel, WeightingModel, BlockFPModel)})
"""The model class of every component kind (``tests/cost/test_models.py`` holds it to the
event registry)."""


def component_models(chip: ChipConfig, table: TechTable | None = None,
                     calibration: Calibration | None = None) -> dict[Component, ComponentModel]:
    """Every component's model built for ``chip`` (one table and calibration shared)."""
    table = chip_table(chip) if table is None else table
    return {c: cls(chip, table, calibration) for c, cls in MODELS.items()}

"""The analog phase's duration where a chip does not state it: column-line settling.

Before a column is converted its line must settle to within half an LSB of the converter. A
first-order RC settles as ``exp(-t / tau)``; an error below ``2^-(b+1)`` of full scale takes::

    t_settle = ln(2^(b+1)) * R_drive * C_column

(first-order settling to a given accuracy: Johns & Martin, "Analog Integrated Circuit
Design", Wiley 1997; Razavi, "Design of Analog CMOS Integrated Circuits", 2nd ed., 2017: their
settling-time discussions of a single-pole stage).

* ``C_column``: the line's load, one bit-cell per row. Charge domain: each cell's compute
  capacitor (``tech.cap_unit_ff``) and the wire over one cell pitch (0.2 fF/um, the tables'
  ``wire_capacitance_ff_per_um``). Current domain: the wire over one cell pitch and the access
  device's drain junction, taken as wide as the cell pitch at 1 fF/um of width (the word-line
  model's gate load, :data:`.models.GATE_CAPACITANCE_FF_PER_UM`; drain diffusion capacitance
  per width is of the order of the gate's, Weste & Harris, "CMOS VLSI Design", 4th ed., 2011,
  §2.3).
* ``R_drive``: the on-resistance of the column's switch/driver, an NMOS as wide as the column
  pitch (it must fit in it), by NeuroSim's formula
  ``R = effectiveResistanceMultiplier * V_dd / (I_on * W)`` (NeuroSim ``formula.cpp``,
  ``CalculateOnResistance``; multiplier 1.54 from CACTI) with the on-current per width of the
  PTM high-performance models at the node (NeuroSim ``Technology.cpp``, PTM 130/90/65/32/22 nm
  HP), moved to the chip's supply by the alpha-power law ``I_on ∝ (V - V_th)^1.3`` (Sakurai &
  Newton, IEEE JSSC 25(2), 1990; 1.3, a
  short-channel value).

Below 22 nm (the last planar PTM node in that table) the 22-nm device is held: FinFETs carry
more current per footprint, so there the settle is overestimated, which makes the check that a
published window is no shorter than the predicted settle a strict one. Above 130 nm (NeuroSim's
largest PTM node) each figure continues the log-log trend of the 90/130-nm devices to a
180-nm row (``cimsim.cost.tables._loglog_trend``; docs/technology.md §1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from ..config import ChipConfig, ComputeDomain, InputDrive
from ..errors import ConfigError
from .models import GATE_CAPACITANCE_FF_PER_UM, CellModel, digital, physical
from .tables import MAX_ADC_BITS, TechTable, _interp_node, _loglog_trend

__all__ = ["ALPHA_POWER", "EFFECTIVE_RESISTANCE_MULTIPLIER", "PTM_HP_NODES_NM",
           "WINDOW_FIT_CHIPS", "WINDOW_OVER_SETTLING", "applies", "check_supply",
           "column_capacitance_ff", "driver_on_resistance_ohm", "fit_window_over_settling",
           "in_window_fit", "predicted_window_ns", "settle_time_ns"]

PTM_HP_NODES_NM = (130.0, 90.0, 65.0, 32.0, 22.0)
"""Nodes of the PTM high-performance NMOS figures below (NeuroSim ``Technology.cpp``)."""
_VDD_NOM_V = (1.3, 1.2, 1.1, 0.9, 0.85)
_VTH_V = (0.1284855, 0.1460217, 0.1663941, 0.1944951, 0.2089006)
_I_ON_UA_PER_UM = (930.0, 1070.0, 1120.0, 1410.0, 1500.0)  # currentOnNmos[0], 300 K

EFFECTIVE_RESISTANCE_MULTIPLIER = 1.54
"""Effective switching resistance over ``V_dd / I_on`` (CACTI, as NeuroSim uses it)."""
ALPHA_POWER = 1.3
"""Velocity-saturation index of the alpha-power law (Sakurai & Newton, JSSC 1990)."""


_NODES_180_NM = (180.0, *PTM_HP_NODES_NM)


def _at_node(node_nm: float, values: tuple[float, ...]) -> float:
    node = max(float(node_nm), PTM_HP_NODES_NM[-1])  # hold 22 nm below it (module docstring)
    row_180 = _loglog_trend(PTM_HP_NODES_NM, values, 180.0)
    return _interp_node(node, _NODES_180_NM, (row_180, *values))


def check_supply(node_nm: float, vdd_v: float) -> None:
    """Refuse a supply at or below the threshold of the node's device, whose switches and
    logic would not conduct (``ChipConfig`` calls it for the physical model, so that such a
    chip is refused when it is loaded, not when it is priced)."""
    v_th = _at_node(node_nm, _VTH_V)
    if vdd_v <= v_th:
        raise ConfigError(f"tech.vdd_v = {vdd_v!r} is invalid for the physical cost model; "
                          f"allowed: above the {v_th:.3f}-V threshold of the {node_nm:g}-nm "
                          "device, whose switches and logic would not conduct (or "
                          "tech.cost_model = 'tables')")


def driver_on_resistance_ohm(node_nm: float, vdd_v: float, width_um: float) -> float:
    """On-resistance of an NMOS switch ``width_um`` wide at ``node_nm`` and ``vdd_v``, Ohm."""
    check_supply(node_nm, vdd_v)
    v_nom, v_th = _at_node(node_nm, _VDD_NOM_V), _at_node(node_nm, _VTH_V)
    i_on_ua_per_um = _at_node(node_nm, _I_ON_UA_PER_UM) * (
        (vdd_v - v_th) / (v_nom - v_th)) ** ALPHA_POWER
    return EFFECTIVE_RESISTANCE_MULTIPLIER * vdd_v / (i_on_ua_per_um * 1e-6 * width_um)


def column_capacitance_ff(chip: ChipConfig, table: TechTable) -> float:
    """Load of one bit-cell column line, fF (module docstring)."""
    pitch_um = CellModel(chip, table).bit_pitch_um()
    per_cell_ff = table.wire_capacitance_ff_per_um * pitch_um
    if chip.tech.compute_domain is ComputeDomain.CHARGE:
        per_cell_ff += chip.tech.cap_unit_ff
    else:
        per_cell_ff += GATE_CAPACITANCE_FF_PER_UM * pitch_um
    return chip.array.n_rows * per_cell_ff


def applies(chip: ChipConfig) -> bool:
    """Settling is predicted for the physical model's analog columns (a digital adder tree
    has no analog phase; the ``tables`` model keeps its presets' stated windows)."""
    return physical(chip) and not digital(chip)


def settle_time_ns(chip: ChipConfig, table: TechTable) -> float:
    """``ln(2^(b+1)) R_drive C_column``, ns, ``b`` the converter's bits (at most the tables'
    16 b, as the converter beyond them is priced: a 20-b reference ADC settled longer, so its
    rate fell and the survey's rate factor priced each conversion lower than at 16 b)."""
    r_ohm = driver_on_resistance_ohm(chip.tech.node_nm, chip.tech.vdd_v,
                                     CellModel(chip, table).bit_pitch_um())
    tau_ns = r_ohm * column_capacitance_ff(chip, table) * 1e-6  # Ohm * fF = 1e-15 s
    return math.log(2.0 ** (min(chip.adc.bits, MAX_ADC_BITS) + 1)) * tau_ns


WINDOW_OVER_SETTLING = 7.39
"""A macro's compute window over its column's predicted settling, where its publication states
no window: the geometric mean of ``stated window / predicted settling`` over the published
amplitude-driven analog macros that state one (``cimsim/presets/published``: Chiu et al.,
JSSC 2020, 5.3; Jia et al., JSSC 2020, 29.1; Wang et al., VLSI 2022, 2.6;
:func:`fit_window_over_settling`; ``tests/cost/test_settling.py`` holds it within 1 % of the
fit). A fitted global constant, not physics: a real cycle holds the precharge, input set-up,
evaluation and sampling phases and their timing margins, each of the order of one settling,
which no abstract itemises. Its scatter is large (leave-one-out, each chip's window predicted
from the other two: 0.13x-4.7x its stated value; docs/validation.md), but every chip that
states a window runs 2.6-29x its bare settling, so the bare settling is the worse prediction.
Temporal drives are left out of the fit: their window holds the pulse train."""


def in_window_fit(chip: ChipConfig) -> bool:
    """Whether a chip's stated window enters the :data:`WINDOW_OVER_SETTLING` fit: analog
    columns of the physical model, an amplitude drive (a temporal drive's window is its pulse
    train, not its sequencing) and a stated window."""
    return (applies(chip) and chip.tech.window_stated
            and chip.tech.input_drive is InputDrive.AMPLITUDE)


WINDOW_FIT_CHIPS = ("chiu-jssc20", "jia-jssc20", "wang-vlsi22")
"""The published macros :data:`WINDOW_OVER_SETTLING` was fitted on. A chip added later that
states a window (Khwa et al., ISSCC 2018) is held out: its window checks the constant, and
refitting would move every row that predicts its window."""


def fit_window_over_settling(chips: Mapping[str, ChipConfig] | Iterable[ChipConfig]
                             ) -> tuple[float, dict[str, float]]:
    """``(geometric mean, {name: stated window / predicted settling})`` over the chips of
    :func:`in_window_fit` (a mapping's keys name them; else their ``name``)."""
    from ._prices import chip_table
    from .latency import stated_window_ns

    items = chips.items() if isinstance(chips, Mapping) else ((c.name, c) for c in chips)
    ratios = {name: stated_window_ns(c) / settle_time_ns(c, chip_table(c))
              for name, c in items if in_window_fit(c)}
    if not ratios:
        raise ValueError("no chip states a window for the fit (see in_window_fit)")
    return math.exp(sum(map(math.log, ratios.values())) / len(ratios)), ratios


def predicted_window_ns(chip: ChipConfig, table: TechTable) -> float:
    """The compute window of a chip that states none: :data:`WINDOW_OVER_SETTLING` times its
    column's predicted settling, ns."""
    return WINDOW_OVER_SETTLING * settle_time_ns(chip, table)

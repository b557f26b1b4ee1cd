"""Digital-CIM columns of ripple adders (``tech.digital_column = 'ripple'``, both cost models).

A digital-CIM macro of this style puts a full adder in every bit-cell, beside its product
gate (Kim, Yoo, Kim & Kim, "Colonnade: A Reconfigurable SRAM-Based Digital Bit-Serial
Compute-In-Memory Macro for Processing Neural Networks", IEEE JSSC 56(7), 2021): a w-bit weight
lies along a row in w cells; each row adds its 1-b input times that weight (the row's adders a
ripple-carry adder) to the partial sum coming down the column from the row above, and the sum
leaves the foot of the column. Down ``R`` rows the sum grows by ``g = ceil(log2 R)`` bits, so
an output spans ``q + g`` columns of such cells (``q`` its weight columns,
:func:`cimsim.config.ripple_guard_columns`: 7 for 128 rows); the macro holds
``floor(n_cols / (q + g))`` outputs per array, which the mapping follows
(``cimsim.arrays.program``). ``tech.pipeline_registers_per_column`` registers cut each column's
chain into row groups (the macro's clock then spans one group).

The simulation is that of the adder tree (an exact sum per column and input bit, the
conversions and shift-adds of ``adc.kind = 'digital'``); only the column's price differs,
from the same digital tables the adder tree is priced from (``docs/cost-model.md``):

* **energy per conversion** (one weight column of one output, one input bit, one row group
  of ``R = rows_per_conversion`` rows): every adder of the group's cells evaluates,
  ``R`` full additions at the tables' energy per added bit ``E_add`` (random operands, an
  upper bound for sparse inputs, as the adder tree is priced), and the column's share of the
  pipeline registers, ``n_reg R / n_rows`` register bits at the tables' register energy per
  bit (the shift-and-add unit's, as a counter's latch is priced); times ``(q + g) / q``, the
  output's guard columns shared over its ``q`` weight columns (their cells add too);
* **area per column** (every physical column, guard columns included, as the array's
  ``n_cols`` columns are its ``adcs_per_array`` read-outs with ``cols_per_adc = 1``):
  ``n_rows`` full adders at the tables' adder area per bit (the adder tree's per-bit figure)
  plus ``n_reg`` register bits;
* **time**: one digital clock per conversion, as the adder tree (the clock is the chip's
  ``tech.clock_mhz``: a published input, not predicted from the chain's delay).

* **shift-and-add**: an output's ``q`` weight columns leave the array as one sum (the row's
  adders carry across them), so each output, not each column, has a shift-and-add unit across
  the input bits: ``outputs_per_array`` units per array (:func:`outputs_per_array`), and each
  conversion's ``shift_add/add`` event (one per weight column) priced at ``1/q`` of one add
  (:func:`shift_adds_per_conversion`).

The product gate of each bit-cell is priced as for the adder tree, and so are the row drivers,
except that a word line crosses each cell's full adder as well as its bit-cell: its wire and
gate load follow the pitch of both (:func:`adder_area_um2_per_cell`).
"""

from __future__ import annotations

from ..config import ChipConfig, DigitalColumn, ripple_guard_columns
from .tables import TechTable

__all__ = ["adder_area_um2_per_cell", "applies", "area_um2_per_column", "columns_per_output",
           "convert_pj", "full_adders_per_conversion", "guard_share", "outputs_per_array",
           "register_bits_per_conversion", "shift_adds_per_conversion"]


def applies(chip: ChipConfig) -> bool:
    """Whether ``chip`` sums its digital columns with ripple adders in the bit-cells."""
    return chip.tech.digital_column is DigitalColumn.RIPPLE


def _weight_columns(chip: ChipConfig) -> int:
    from ..arrays.encoding import conversion_kinds  # (arrays import the config only)

    return int(conversion_kinds(chip).weight.shape[1])


def columns_per_output(chip: ChipConfig) -> int:
    """Physical columns one output spans: its weight columns and its guard columns."""
    return _weight_columns(chip) + ripple_guard_columns(chip)


def outputs_per_array(chip: ChipConfig) -> int:
    """Outputs one array holds: ``floor(n_cols / (q + g))``, each with its shift-and-add."""
    return chip.array.n_cols // columns_per_output(chip)


def shift_adds_per_conversion(chip: ChipConfig) -> float:
    """``1 / q``: one shift-and-add per output and input bit, over its ``q`` conversions."""
    return 1.0 / _weight_columns(chip)


def guard_share(chip: ChipConfig) -> float:
    """``(q + g) / q``: the columns that add for one output per weight column converted."""
    return columns_per_output(chip) / _weight_columns(chip)


def full_adders_per_conversion(chip: ChipConfig) -> float:
    """Full additions one conversion costs: ``R (q + g) / q``."""
    return chip.array.rows_per_group * guard_share(chip)


def register_bits_per_conversion(chip: ChipConfig) -> float:
    """Pipeline-register bits one conversion writes: the column's ``n_reg`` registers over
    its ``n_rows / R`` row groups, times ``(q + g) / q``."""
    arr = chip.array
    regs = chip.tech.pipeline_registers_per_column * arr.rows_per_group / arr.n_rows
    return regs * guard_share(chip)


def convert_pj(chip: ChipConfig, table: TechTable, supply_factor: float) -> float:
    """Energy of one conversion, pJ (uncalibrated; ``supply_factor`` = (V_dd / 0.8 V)^2)."""
    return (full_adders_per_conversion(chip) * table.accumulator_add_energy_pj_per_bit
            + register_bits_per_conversion(chip) * table.shift_add_energy_pj_per_bit
            ) * supply_factor


def adder_area_um2_per_cell(chip: ChipConfig, table: TechTable) -> float:
    """The full adder beside each stored bit of a cell, um^2: the word line's pitch spans it
    too."""
    from ._prices import stored_bits_per_cell  # (_prices imports the models' helpers)

    return float(stored_bits_per_cell(chip) * table.accumulator_area_um2_per_bit)


def area_um2_per_column(chip: ChipConfig, table: TechTable) -> float:
    """Area of one physical column's adders and registers, um^2 (uncalibrated)."""
    return (chip.array.n_rows * table.accumulator_area_um2_per_bit
            + chip.tech.pipeline_registers_per_column * table.shift_add_area_um2_per_bit)

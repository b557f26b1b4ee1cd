"""Input bit-planes accumulated in analog before one conversion (``tech.input_drive =
'bit_planes'``, physical cost model).

The row drivers apply an input's ``B`` bit-planes one after another, each a 1-b pulse at the
full read voltage, and the column's result of every plane is accumulated in analog with
binary weights before the column is converted once. The accumulator priced here is the
charge-sharing kind (e.g. the binary-weighted charge-sharing accumulator of arXiv 2605.30814,
2026): after each plane the column line's charge is shared with an equal accumulator
capacitor, so that the accumulator holds ``Σ_j 2^(j-B) · plane_j`` after the last (most
significant) plane. An ideal binary-weighted accumulation is the exact dot product of the
whole input, so the simulation is that of ``dac.bits = 'all'`` (one shot, one conversion per
column and input vector), which the config requires; only the cost differs:

* **row drivers** (``dac.pulse``, one event per nonzero input and row): one 1-b driver toggle
  and one word-line switching per plane whose bit is 1, :func:`mean_set_bits` of them per
  nonzero ``B``-bit input (uniform inputs; the run counts nonzero inputs, not their bits);
* **cells**: read once per plane whose bit is 1 at the full read voltage for the read pulse:
  resistive, the charge ``V G t_read`` per read drawn from the read supply, so the energy
  follows ``popcount(x)``, not ``x^2``: the run counts ``Σ popcount(x) G`` exactly
  (``cimsim.engine._v1g``; a signed input's ``B``-bit two's complement, its sign plane
  included); charge domain ``C V^2 / 2`` per product and plane; SRAM bit-line reads one per
  plane;
* **accumulator** (priced with the converter it feeds): per physical column and plane one
  charge share of the column's capacitance ``C_col`` (:func:`.settling.column_capacitance_ff`)
  with an equal capacitor. Two equal capacitors ``C`` at ``V1`` and ``V2`` connected settle at
  ``(V1 + V2) / 2``; the charge is conserved but the stored energy falls from
  ``C (V1^2 + V2^2) / 2`` to ``C (V1 + V2)^2 / 4``, a loss of ``C (V1 - V2)^2 / 4``, at most
  ``C V_dd^2 / 4`` for a full-swing difference: :func:`share_energy_pj` prices every share at
  that bound. Area: one accumulator capacitor ``C_col`` per physical column,
  ``C_col / tech.cap_density_ff_per_um2`` (0 with the density 0: above the cells);
* **time**: a step lasts ``B`` analog phases (each the compute window,
  :func:`.latency.compute_window_ns`) against the conversions (:func:`analog_phases`, read by
  :func:`.latency.step_ns`), not ``B`` steps each with its conversions.

The ``tables`` cost model reads no ``input_drive`` (its prices are the presets'), this one
included.
"""

from __future__ import annotations

from ..config import ChipConfig, InputDrive
from .tables import TechTable

__all__ = ["accumulator_area_um2_per_adc", "accumulator_pj_per_conversion", "analog_phases",
           "applies", "columns_per_conversion", "mean_set_bits", "share_energy_pj"]


def applies(chip: ChipConfig) -> bool:
    """Whether ``chip`` is priced as bit-planes accumulated in analog (physical model)."""
    from .models import physical  # (models imports this module)

    return physical(chip) and chip.tech.input_drive is InputDrive.BIT_PLANES


def analog_phases(chip: ChipConfig) -> int:
    """Analog phases of one step: ``B`` (the input's bits) with bit-plane accumulation, else 1
    (the windows of a step, :func:`.latency.step_ns`)."""
    return chip.dac_bits if applies(chip) else 1


def mean_set_bits(bits: int) -> float:
    """Mean number of ones of a nonzero input uniform over ``[1, 2^b - 1]``:
    ``b 2^(b-1) / (2^b - 1)`` (each of the ``b`` bits is 1 in ``2^(b-1)`` of the ``2^b - 1``
    codes); over ``[0, 2^b - 1]``, zero included, it is ``b / 2``. 1 at ``b = 1``."""
    b = int(bits)
    return b * 2.0 ** (b - 1) / (2.0**b - 1.0)


def share_energy_pj(chip: ChipConfig, table: TechTable) -> float:
    """One charge share of a column with its equal accumulator capacitor, pJ:
    ``C_col V_dd^2 / 4`` (the module docstring's bound)."""
    from .settling import column_capacitance_ff  # (settling imports the models)

    return column_capacitance_ff(chip, table) * chip.tech.vdd_v**2 / 4.0 * 1e-3  # fF V^2 = fJ


def columns_per_conversion(chip: ChipConfig) -> float:
    """Physical columns that one conversion reads (2 for a differential pair read as one
    conversion, Q for analog slice read-out), each with its own accumulator."""
    from ..arrays.encoding import conversion_kinds  # (arrays import the config only)

    kinds = conversion_kinds(chip)
    return kinds.weight.shape[1] / kinds.n_conversions


def accumulator_pj_per_conversion(chip: ChipConfig, table: TechTable) -> float:
    """The accumulation before one conversion, pJ: ``B`` shares per column read
    (0 where bit-planes are not accumulated)."""
    if not applies(chip):
        return 0.0
    return analog_phases(chip) * columns_per_conversion(chip) * share_energy_pj(chip, table)


def accumulator_area_um2_per_adc(chip: ChipConfig, table: TechTable) -> float:
    """Accumulator capacitors per converter, um^2: an array's ``n_cols`` capacitors
    (one per physical column, ``C_col / tech.cap_density_ff_per_um2`` each) shared over its
    ``adcs_per_array`` converters, so that an array holds exactly one per column whether or not
    ``cols_per_adc`` divides ``n_cols`` (0 with the density 0, or where bit-planes are not
    accumulated)."""
    from .settling import column_capacitance_ff

    density = chip.tech.cap_density_ff_per_um2
    if not applies(chip) or density <= 0:
        return 0.0
    per_adc = chip.array.n_cols / chip.array.adcs_per_array
    return per_adc * column_capacitance_ff(chip, table) / density

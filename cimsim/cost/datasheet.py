"""A chip's headline figures on the standard full-array workload (``cimsim datasheet CHIP``).

The standard workload (docs/validation.md): one ``cimsim.matmul`` layer that fills one array of
the chip (K = array rows, N = as many outputs as the array's columns hold), M = 256 input
vectors, inputs uniform over the unsigned input range with a fraction ``1 - input_density`` of
them set to zero, weights uniform over the chip's weight range (over {-1, +1} for 1-b binary
weights, which have no 0), seed 0. The run's events are
priced by :func:`cimsim.cost.estimate`; the datasheet reads:

* ``scope="macro"``: the array with its converters and row drivers (``cell``, ``dac``, ``adc``
  energy and area), as CIM macro papers report; TOPS of one array. A digital-CIM macro
  (``adc.kind = 'digital'``) outputs the accumulated dot product, so its macro also holds the
  shift-accumulators (``shift_add``, :data:`DIGITAL_MACRO_COMPONENTS`).
* ``scope="chip"``: every component, the whole chip's area, and all its arrays working in
  parallel (TOPS of one array times the chip's arrays).

1 MAC = 2 ops at ``input_bits x weight_bits``; the ``*_1b`` figures multiply ops by
``input_bits * weight_bits``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import ADCKind, ChipConfig, RangePolicy, WeightEncoding
from .energy import NO_CALIBRATION, calibration_for

__all__ = ["DIGITAL_MACRO_COMPONENTS", "MACRO_COMPONENTS", "N_VECTORS", "datasheet",
           "macro_components", "workload"]

N_VECTORS = 256
MACRO_COMPONENTS = ("cell", "dac", "adc")
"""What a macro figure covers: the array, its row drivers and its converters."""
DIGITAL_MACRO_COMPONENTS = (*MACRO_COMPONENTS, "shift_add")
"""What a digital-CIM macro figure covers: also its shift-accumulators (its output is the
accumulated dot product, not a column code)."""


def macro_components(chip: ChipConfig) -> tuple[str, ...]:
    """The components a macro figure of ``chip`` covers."""
    return DIGITAL_MACRO_COMPONENTS if chip.adc.kind is ADCKind.DIGITAL else MACRO_COMPONENTS


_SCOPES = ("macro", "chip")


def workload(chip: ChipConfig, input_density: float = 0.5,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The standard full-array workload: ``(x, w)`` integer operands (module docstring)."""
    from ..arrays.encoding import weight_range
    from ..arrays.program import program

    rng = np.random.default_rng(seed)
    lo, hi = weight_range(chip)
    q = program(np.ones((1, 1), dtype=np.int64), chip).n_phys_cols  # columns per output
    k = chip.array.n_rows
    n = max(1, chip.array.n_cols // q)
    if chip.weight_encoding is WeightEncoding.BINARY:
        w = 2 * rng.integers(0, 2, size=(n, k)) - 1  # ±1: a binary cell has no 0
    else:
        w = rng.integers(lo, hi + 1, size=(n, k))
    x = rng.integers(0, 2**chip.input_bits, size=(N_VECTORS, k))
    x[rng.random(x.shape) < 1.0 - input_density] = 0
    return x, w


def datasheet(chip: ChipConfig | str, *, scope: str = "macro", input_density: float = 0.5,
              calibrated: bool = False) -> dict[str, Any]:
    """Headline TOPS, TOPS/W and TOPS/mm^2 of ``chip`` on the standard workload.

    Parameters
    ----------
    chip : ChipConfig or str
        A chip, a preset name or a path to a ``.toml``.
    scope : {"macro", "chip"}
        What the figures cover (module docstring).
    input_density : float
        Fraction of the inputs that are nonzero, in (0, 1].
    calibrated : bool
        Apply the preset's per-chip calibration (``cimsim.cost.CALIBRATIONS``; opt-in, the
        figures are then fitted, not predicted). False: the cost model as it is.

    Returns
    -------
    dict
        ``chip``, ``scope``, ``input_density``, ``cost_model``, ``calibrated`` (bool),
        ``basis`` ("calibrated" or "predicted"), ``tops``, ``tops_per_w``, ``tops_per_mm2``,
        ``tops_1b``, ``tops_per_w_1b``, ``tops_per_mm2_1b``, ``energy_pj_per_op``,
        ``area_mm2``, ``ops``, ``energy_pj_by_component`` and ``area_um2_by_component``
        (the scope's), ``ops_convention``.

    Raises
    ------
    ConfigError
        For a bad ``scope`` or ``input_density``, or a chip that cannot be loaded.
    """
    from .. import api
    from ..arrays.program import program
    from ..config import load_chip
    from ..errors import ConfigError
    from . import estimate, layer_work
    from .area import array_area_um2, chip_area_um2

    if scope not in _SCOPES:
        raise ConfigError(f"datasheet scope = {scope!r} is invalid; allowed: 'macro', 'chip'")
    density = float(input_density) if isinstance(input_density, (int, float)) else -1.0
    if isinstance(input_density, bool) or not 0.0 < density <= 1.0:
        raise ConfigError(f"datasheet input_density = {input_density!r} is invalid; "
                          "allowed: a number in (0, 1]")
    chip = load_chip(chip) if not isinstance(chip, ChipConfig) else chip
    cal = calibration_for(chip) if calibrated else NO_CALIBRATION
    x, w = workload(chip, density)
    x_cal = x if chip.adc.range_policy is RangePolicy.CALIBRATED else None
    _, events = api.matmul(x, w, chip, seed=0, calibration=x_cal)
    block = program(w, chip)
    rep = estimate([layer_work(events, block)], chip, calibration=cal)
    t = rep.totals
    ops = 2.0 * t["n_macs_per_inference"]
    energy = rep.energy_by_component()
    if scope == "macro":
        inside = macro_components(chip)
        energy = {c: energy[c] for c in inside}
        area = {c: v * block.n_arrays for c, v in array_area_um2(chip, calibration=cal).items()
                if c in inside}
        tops = ops / (t["latency_ns_per_inference"] * 1e3)
    else:
        area = chip_area_um2(chip, calibration=cal)
        tops = ops / (t["latency_ns_per_inference"] * 1e3) * (
            chip.array.n_arrays / block.n_arrays)
    e_pj, a_um2 = sum(energy.values()), sum(area.values())
    bits = chip.input_bits * chip.weight_bits
    tops_w = ops / e_pj if e_pj > 0 else 0.0
    tops_mm2 = tops / (a_um2 * 1e-6) if a_um2 > 0 else 0.0
    used_cal = calibrated and not cal.is_identity
    return {
        "chip": chip.name, "scope": scope, "input_density": density,
        "cost_model": chip.tech.cost_model.value, "calibrated": used_cal,
        "basis": "calibrated" if used_cal else "predicted",
        "tops": tops, "tops_per_w": tops_w, "tops_per_mm2": tops_mm2,
        "tops_1b": tops * bits, "tops_per_w_1b": tops_w * bits,
        "tops_per_mm2_1b": tops_mm2 * bits,
        "energy_pj_per_op": e_pj / ops if ops else 0.0, "area_mm2": a_um2 * 1e-6, "ops": ops,
        "energy_pj_by_component": energy, "area_um2_by_component": area,
        "ops_convention": (f"1 MAC = 2 ops at {chip.input_bits}b input x {chip.weight_bits}b "
                           f"weight; *_1b = ops x {bits}"),
    }

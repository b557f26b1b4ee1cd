"""Area: instances x area per instance, from the technology tables.

The chip is ``n_tiles x arrays_per_tile`` arrays. Instances (``docs/cost-model.md``):

per array
    ``cell``       n_rows x n_cols cells (RRAM 1T1R 48 F^2; SRAM 280 F^2 per stored bit)
    ``adc``        ceil(n_cols / cols_per_adc) ADCs of the chip's kind and bits
    ``dac``        n_rows row drivers of dac_bits
    ``shift_add``  one accumulator_bits-wide shift-and-add unit per ADC
    ``weighting``  analog slice read-out only: the unit mirror transistors or capacitors of
                   its weighting networks (``WeightingModel.units_per_array``)
    ``block_fp``   block floating-point inputs only: the array's max-exponent tree,
                   alignment shifters and normalisers (``BlockFPModel``)
per tile
    ``accumulator``   ceil(n_cols / cols_per_adc) lanes of accumulator_bits (the tile's output
                      accumulation, as fast as one array's ADCs deliver)
    ``buffer``        an ``array.tile_buffer_kib`` buffer (64 KiB: ISAAC's tile eDRAM)
    ``interconnect``  a quarter of an ISAAC router (one router per 4 tiles) and a 256-b bus
                      port per 8 arrays (ISAAC: one 256-b bus per 8-crossbar IMA)

Unused arrays are still on the chip: chip area counts every array and tile. A layer's area is
its occupied arrays with their peripherals, plus the matching share of their tiles.
"""

from __future__ import annotations

from ..config import ActFormat, ADCKind, ChipConfig, ComputeDomain
from ..events import Component
from . import ripple
from ._prices import TRANSISTOR_CELL_AREA_F2, sensed_cells
from .energy import (
    NO_CALIBRATION,
    Calibration,
    chip_table,
    stored_bits_per_cell,
)
from .models import cell_kind, component_models, physical
from .tables import TechTable

__all__ = ["ARRAY_COMPONENTS", "TILE_COMPONENTS", "area_instances", "chip_area_um2",
           "occupied_area_um2",
           "array_area_um2", "tile_area_um2"]

ARRAY_COMPONENTS = ("cell", "adc", "dac", "shift_add", "weighting", "block_fp")
TILE_COMPONENTS = ("accumulator", "buffer", "interconnect")

_ROUTER_TILES = 4  # ISAAC shares one router between four tiles (Shafiee et al., ISCA 2016)
_BUS_BITS = 256  # ISAAC's eDRAM <-> IMA bus width
_ARRAYS_PER_BUS = 8  # ISAAC: one bus port per 8-crossbar IMA


def area_instances(
    chip: ChipConfig, table: TechTable | None = None, calibration: Calibration | None = None,
) -> list[dict]:
    """Every instance kind of one array and of one tile.

    Returns
    -------
    list of dict
        ``component``, ``scope`` ('array' or 'tile'), ``instance`` (what it is),
        ``n_per_scope`` and ``area_um2_per_instance`` (calibrated).
    """
    table = chip_table(chip) if table is None else table
    cal = NO_CALIBRATION if calibration is None else calibration
    models = component_models(chip, table, cal)
    arr = chip.array
    cell = models[Component.CELL]
    if physical(chip) or chip.device.cell in TRANSISTOR_CELL_AREA_F2:
        # FeFET and flash cells keep their own area in both cost models
        cell_what = f"{cell_kind(chip).value} cell ({cell.area_f2():.0f} F^2)"  # type: ignore[attr-defined]
    elif chip.device.cell.resistive:  # PCM, MRAM: costed as RRAM
        cell_what = "RRAM 1T1R cell (48 F^2)"
    else:
        bits = stored_bits_per_cell(chip)
        cell_what = f"SRAM CIM cell x {bits} bit(s) ({table.sram_cell_area_f2:.0f} F^2 per bit)"
    n_adc = arr.adcs_per_array
    # one shift-and-add (and accumulator lane) per read-out; a ripple column's outputs leave
    # the array whole, one per q + g columns (cimsim.cost.ripple)
    n_sa = ripple.outputs_per_array(chip) if ripple.applies(chip) else n_adc
    acc = chip.accumulator_bits
    router_share = table.router_area_um2 / _ROUTER_TILES
    bus = _BUS_BITS * table.bus_area_um2_per_bit * arr.arrays_per_tile / _ARRAYS_PER_BUS

    def row(comp: Component, scope: str, what: str, n: int) -> dict:
        return dict(component=comp.value, scope=scope, instance=what, n_per_scope=n,
                    area_um2_per_instance=models[comp].area_um2())

    units = models[Component.WEIGHTING].units_per_array()  # type: ignore[attr-defined]
    weighting = [row(Component.WEIGHTING, "array", "slice-weighting unit "
                     + ("capacitor" if chip.tech.compute_domain is ComputeDomain.CHARGE
                        else "mirror transistor"), units)] if units else []
    block_fp = [row(Component.BLOCK_FP, "array", f"block-FP unit ({arr.n_rows} alignment "
                    f"shifters, max-exponent tree, {n_sa} normalisers)", 1)
                ] if chip.quant.act_format is ActFormat.BLOCK_FP else []
    return [
        row(Component.CELL, "array", cell_what, arr.n_rows * arr.n_cols),
        row(Component.ADC, "array",
            (f"column of {arr.n_rows} bit-cell full adders" if ripple.applies(chip) else
             f"{chip.adc.bits}-b adder tree" + (" + sense amp" if sensed_cells(chip) else "")
             + f" ({arr.cols_per_adc} col/tree)")
            if chip.adc.kind is ADCKind.DIGITAL else
            f"{chip.adc.bits}-b {chip.adc.kind.value} ADC ({arr.cols_per_adc} col/ADC)", n_adc),
        row(Component.DAC, "array",
            f"{chip.dac_bits} x 1-b input driver" if chip.adc.kind is ADCKind.DIGITAL
            and chip.dac_bits > 1 else f"{chip.dac_bits}-b row driver", arr.n_rows),
        row(Component.SHIFT_ADD, "array", f"{acc}-b shift-and-add", n_sa),
        *weighting,
        *block_fp,
        row(Component.ACCUMULATOR, "tile", f"{acc}-b accumulator lane", n_sa),
        row(Component.BUFFER, "tile", f"{arr.tile_buffer_kib:g} KiB buffer", 1),
        dict(component="interconnect", scope="tile",
             instance="1/4 router + 256-b bus per 8 arrays", n_per_scope=1,
             area_um2_per_instance=(router_share + bus) * cal.a("interconnect")),
    ]


def array_area_um2(chip: ChipConfig, table: TechTable | None = None,
                   calibration: Calibration | None = None) -> dict[str, float]:
    """Area of one array with its peripherals, per component, um^2."""
    return {r["component"]: r["n_per_scope"] * r["area_um2_per_instance"]
            for r in area_instances(chip, table, calibration) if r["scope"] == "array"}


def tile_area_um2(chip: ChipConfig, table: TechTable | None = None,
                  calibration: Calibration | None = None) -> dict[str, float]:
    """Area of one tile's shared parts (not its arrays), per component, um^2."""
    return {r["component"]: r["n_per_scope"] * r["area_um2_per_instance"]
            for r in area_instances(chip, table, calibration) if r["scope"] == "tile"}


def chip_area_um2(chip: ChipConfig, table: TechTable | None = None,
                  calibration: Calibration | None = None) -> dict[str, float]:
    """Area of the whole chip per component, um^2 (every array and tile, used or not)."""
    arr = chip.array
    out = {k: v * arr.n_arrays for k, v in array_area_um2(chip, table, calibration).items()}
    out.update({k: v * arr.n_tiles for k, v in tile_area_um2(chip, table, calibration).items()})
    return out


def occupied_area_um2(chip: ChipConfig, n_arrays: float, table: TechTable | None = None,
                      calibration: Calibration | None = None) -> dict[str, float]:
    """Area of ``n_arrays`` arrays with their peripherals and their share of the tiles, um^2."""
    per_array = array_area_um2(chip, table, calibration)
    tile_share = n_arrays / chip.array.arrays_per_tile
    out = {k: v * n_arrays for k, v in per_array.items()}
    out.update({k: v * tile_share for k, v in tile_area_um2(chip, table, calibration).items()})
    return out

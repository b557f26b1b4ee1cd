"""Tiling and programming: an integer weight matrix -> a :class:`ProgrammedLayer`.

Physical columns are ordered output-major: column ``j = n*Q + q`` holds column kind q of output
n (``encoding.ColumnKinds``), so all slices of an output sit side by side in one array whenever
Q <= n_cols. Rows are cut into row tiles of at most ``n_rows`` (or the tiles the caller gives,
e.g. kernel-preserving tiles of a convolution), and each row tile into row groups of at most
``rows_per_conversion`` rows; every row group is one conversion per (plane, column).

Programming draws the device state once: variation and stuck-at faults from ``rng``.
Conductances are kept in cell-LSB units (``docs/hardware-model.md``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._seed import check_flag, check_seed
from ..adc import ADCTables, static_tables
from ..config import (
    ADCKind,
    ADCPlacement,
    ChipConfig,
    DifferentialReadout,
    DigitalColumn,
    Nonlinearity,
    OffCurrentCompensation,
    SliceReadout,
    VariationKind,
    WeightEncoding,
    as_chip,
    priced_resistive,
    ripple_guard_columns,
)
from ..errors import MappingError
from .encoding import (
    ColumnKinds,
    column_kinds,
    conversion_kinds,
    physical_digits,
    plane_layout,
    weight_range,
    weighting_ratios,
)

if TYPE_CHECKING:
    from .drift import Aging

__all__ = ["Cells", "DeviceDraws", "ProgrammedLayer", "assemble", "cell_conductance",
           "cells_key", "default_row_tiles", "draw_cells", "draw_devices", "n_arrays_for_shape",
           "off_conductance", "program", "read_off_conductance", "sensed_cells",
           "sensing_reference", "stuck_conductances", "with_aging"]


def default_row_tiles(k: int, n_rows: int) -> list[tuple[int, int]]:
    """Consecutive row tiles of at most ``n_rows`` rows covering ``range(k)``."""
    return [(s, min(s + n_rows, k)) for s in range(0, k, n_rows)]


def n_arrays_for_shape(n_out: int, row_tiles: list[tuple[int, int]], chip: ChipConfig) -> int:
    """Arrays a matrix with ``n_out`` outputs cut into ``row_tiles`` occupies, from its shape
    alone (no weights, no data): row tiles x column tiles, exactly what :func:`program` gives
    (the number of column kinds depends on the encoding and bit widths only)."""
    kinds = column_kinds(np.zeros((1, 1), dtype=np.int64), chip)
    return len(row_tiles) * -(-(n_out * kinds.n_kinds) // _cols_per_tile(kinds, chip))


@dataclass(frozen=True, eq=False)
class ProgrammedLayer:
    """One weight matrix programmed on the arrays: everything a forward pass needs.

    A frozen value: the geometry and device state drawn by :func:`program`, plus the ADC
    settings (:class:`~cimsim.adc.ADCTables`) that :mod:`cimsim.adc` computed for it. A
    calibration gives a new layer (:meth:`with_adc`); nothing is written onto this one.

    Shapes: K inputs, N outputs, Q column kinds, J = N*Q physical columns, C conversion
    columns (J, J/2 for analog differential read-out, N or 2N for analog slice read-out), G row
    groups, Jg GEMM columns, R physical columns read by one conversion at most.
    """

    chip: ChipConfig
    n_inputs: int
    n_outputs: int
    input_signed: bool
    kinds: ColumnKinds
    row_tiles: list[tuple[int, int]]
    groups: np.ndarray
    """(G, 3) int64: start row, stop row, row-tile index of each row group."""
    cols_per_tile: int
    """Physical columns used per array (whole output slices kept together)."""
    n_col_tiles: int
    digits_phys: np.ndarray
    """(K, J) int8 nominal digits of every physical column."""
    g_phys: np.ndarray | None
    """(K, J) float32 programmed conductance in cell-LSB (g_off included), None if ideal."""
    gemm_matrix: np.ndarray
    """(K, Jg) int8 digits or float32 conductances the GEMM multiplies the planes with."""
    gemm_var: np.ndarray | None
    """(K, Jg) float32 per-cell read-noise variance, None without read noise."""
    off_add: np.ndarray
    """(Jg,) float64: the analog value of GEMM column j is ``x_p @ gemm_matrix[:, j] +
    off_add[j] * Σ_k x_p[k]`` (nominal off-state current not already in the matrix)."""
    pos: np.ndarray
    """(C,) int64 GEMM column of each conversion (the positive one of a pair)."""
    neg: np.ndarray
    """(C,) int64 negative GEMM column subtracted before the ADC, or -1."""
    out_col: np.ndarray
    """(C,) int64 output index n of each conversion."""
    conv_coef: np.ndarray
    """(C,) float64 signed significance of each conversion."""
    conv_phys: np.ndarray
    """(C, R) int64 physical columns each conversion reads (-1: none); R = 2 (positive,
    negative or -1) with digital slice read-out, Q with analog slice read-out."""
    conv_weight: np.ndarray
    """(C, R) float64 analog weight of each of those columns (+1, -1 for the negative column of
    an analog pair, the slice significance with analog slice read-out; 0 where none)."""
    conv_col_tile: np.ndarray
    """(C,) int64 column tile (array) of each conversion."""
    x_sum_coef: np.ndarray
    """(N,) float64 exact digital correction per unit of Σ_k x[k] (offset encoding, digital
    off-current compensation)."""
    cell_rowsum: np.ndarray
    """(K,) float64 Σ_j G[k, j] over physical columns (cell-LSB), for the read-energy event."""
    fs_lo: float
    """Smallest possible analog value of one conversion (ideal devices), cell-LSB."""
    fs_hi: float
    """Largest possible analog value of one conversion (ideal devices), cell-LSB."""
    column_fs: float
    """Full-scale current of one physical column (the non-linearity's scale), cell-LSB."""
    group_abs_max: tuple[float, ...]
    """max |entry| of the GEMM matrix per row group (picks the exact GEMM kind)."""
    adc: ADCTables | None = None
    """ADC settings of every (row group, conversion); None while a ``calibrated`` range still
    waits for its calibration inputs."""
    name: str = ""
    aging: Aging | None = None
    """The devices' drawn future (drift exponents, retention) and the time the layer is seen
    at (``cimsim.arrays.drift``); None where the device does not age."""
    weighted_rowsum: np.ndarray | None = None
    """(K,) float64 Σ_j r_j·|G[k, j]| over the columns an analog slice read-out weights, r_j the
    weighting ratio (``encoding.weighting_ratios``), for the mirrors' charge event; None where
    no column is weighted."""

    def with_time(self, t_s: float) -> ProgrammedLayer:
        """This layer seen ``t_s`` seconds after programming: the same drawn devices, drifted
        (no reprogramming; ADC settings kept). ``ConfigError`` for a time before
        ``device.drift_t0_s``, negative or not finite (``cimsim.arrays.drift.at_time``)."""
        from .drift import at_time

        return at_time(self, t_s)

    def with_adc(self, tables: ADCTables) -> ProgrammedLayer:
        """This layer with ADC settings ``tables`` (shape (G, C) checked)."""
        if tables.shape != (self.n_groups, self.n_conversions):
            raise ValueError(f"ADC tables of shape {tables.shape} do not fit this layer's "
                             f"(row groups, conversions) = {(self.n_groups, self.n_conversions)}")
        return dataclasses.replace(self, adc=tables)

    def with_conv_coef(self, coef: np.ndarray) -> ProgrammedLayer:
        """This layer with the digital weight of every conversion replaced by ``coef`` (C,):
        the shift-add's signed 2^(c·s) (or 3^s) by any coefficient, e.g. ColumnQuant option
        3's learned α_i per (array, column, slice). The exact off-current correction follows
        the new weights. A coefficient that is not a signed power of two costs one digital
        multiply per conversion (``digital.slice_multiply``)."""
        c = np.asarray(coef, dtype=np.float64)
        if c.shape != self.conv_coef.shape or not np.all(np.isfinite(c)):
            raise ValueError(f"coef must be {self.conv_coef.shape} finite values, got "
                             f"{c.shape}")
        conv = _Conversions(self.conv_phys, self.conv_weight, self.out_col, c)
        layer = dataclasses.replace(self, conv_coef=c,
                                    x_sum_coef=_x_sum_coef(conv, self.n_outputs, self.chip))
        if self.aging is None:
            return layer
        # the new weights are the ones a later time's compensation gain multiplies
        aging = dataclasses.replace(self.aging, coef_t0=c)
        return dataclasses.replace(layer, aging=aging).with_time(self.aging.t_s)

    @property
    def n_slice_multiplies(self) -> int:
        """Conversions whose digital weight is not a signed power of two (or 0): each code is
        multiplied, not shifted, before it is added. A drift compensation's gain, folded into
        the weights after t0, is not one of these: its multiplies are its own events
        (``digital.drift_gain_multiply``, ``cimsim.arrays.drift.gain_events``)."""
        coef = self.conv_coef if self.aging is None else self.aging.coef_t0
        mant = np.frexp(np.abs(coef))[0]
        return int(np.count_nonzero((mant != 0.5) & (mant != 0.0)))

    @property
    def weighting_columns(self) -> dict[int, int]:
        """Columns an analog slice read-out weights, per conversion of one (plane, row group):
        ``{log2 ratio: count}`` (empty where nothing is weighted)."""
        if self.weighted_rowsum is None:
            return {}
        r = weighting_ratios(self.conv_weight)
        bits, count = np.unique(np.log2(r[r > 0]).round().astype(np.int64), return_counts=True)
        return {int(b): int(n) for b, n in zip(bits, count, strict=True)}

    @property
    def n_conversions(self) -> int:
        """Conversion columns C."""
        return int(self.pos.shape[0])

    @property
    def n_groups(self) -> int:
        return int(self.groups.shape[0])

    @property
    def n_arrays(self) -> int:
        """Arrays occupied: row tiles x column tiles."""
        return len(self.row_tiles) * self.n_col_tiles

    @property
    def n_phys_cols(self) -> int:
        return int(self.digits_phys.shape[1])

    @property
    def cell_utilization(self) -> float:
        """Fraction of the occupied arrays' cells that hold a weight digit."""
        a = self.chip.array
        return self.n_inputs * self.n_phys_cols / (self.n_arrays * a.n_rows * a.n_cols)


def _check_weights(w_int: np.ndarray, chip: ChipConfig) -> np.ndarray:
    w = np.asarray(w_int)
    if w.ndim != 2:
        raise ValueError(f"w_int must be 2-D (N, K), got shape {w.shape}")
    if w.shape[0] == 0 or w.shape[1] == 0:
        raise ValueError(f"w_int must not be empty, got shape {w.shape}")
    if not np.issubdtype(w.dtype, np.integer):
        raise ValueError(f"w_int must have an integer dtype, got {w.dtype}")
    lo, hi = weight_range(chip)
    wmin, wmax = int(w.min()), int(w.max())
    if wmin < lo or wmax > hi:
        raise ValueError(
            f"w_int values must lie in [{lo}, {hi}] for weight_bits={chip.weight_bits} with "
            f"weight_encoding={chip.weight_encoding.value!r}; got [{wmin}, {wmax}]"
        )
    if chip.weight_encoding is WeightEncoding.BINARY and not np.all(w):
        # one binary cell holds +1 or -1: mapping 0 to either would change the product
        raise ValueError(
            f"w_int values must be -1 or +1 for weight_encoding='binary' (0 has no code); got "
            f"{int(np.count_nonzero(w == 0))} zero weight(s)")
    return w.astype(np.int64)


def _check_row_tiles(row_tiles: list[tuple[int, int]], k: int, n_rows: int) -> None:
    prev = 0
    for i, tile in enumerate(row_tiles):
        # (0, 32.0) or (0,) failed on "cannot be interpreted as an integer" / unpacking
        if (not isinstance(tile, (tuple, list)) or len(tile) != 2
                or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                           for v in tile)):
            raise MappingError(f"row_tiles[{i}] = {tile!r} invalid: each tile is a pair of "
                               "integers (start, stop)")
        a, b = (int(v) for v in tile)
        if a != prev or b <= a or b - a > n_rows:
            raise MappingError(
                f"row_tiles[{i}] = {(a, b)} invalid: tiles must be consecutive, non-empty and "
                f"at most n_rows={n_rows} rows, covering 0..{k}"
            )
        prev = b
    if prev != k:
        raise MappingError(f"row_tiles cover 0..{prev}, expected 0..{k}")


@dataclass(frozen=True)
class DeviceDraws:
    """The random device state of one programming, per physical cell (K, J): what turns the
    digits into conductances (:func:`cell_conductance`). The draws depend on the cell's
    position and the generator only, not on the digit it holds, so that re-programming other
    weights with the same seed gives every cell the same deviation (the training twin relies
    on it)."""

    z: np.ndarray | None
    """Standard normals of the programming variation (None: no variation)."""
    u: np.ndarray | None
    """Uniforms [0, 1) of the stuck-at faults (None: no faults)."""


def draw_devices(shape: tuple[int, int], chip: ChipConfig,
                 rng: np.random.Generator) -> DeviceDraws:
    """Draw the device state of ``shape`` cells from ``rng``: the variation first, then the
    faults (the order :func:`program` consumes the generator in)."""
    dev = chip.device
    z = rng.standard_normal(shape) if dev.varies else None
    u = rng.random(shape) if dev.p_stuck_on > 0 or dev.p_stuck_off > 0 else None
    return DeviceDraws(z, u)


def cell_conductance(digits, chip: ChipConfig, z=None, u=None, xp=np):
    """Programmed conductance (cell-LSB) of cells holding ``digits`` with device draws
    ``z``, ``u`` (:class:`DeviceDraws`, or torch tensors with ``xp=torch``): variation, then
    faults. One function for the engine (NumPy, float64) and the training twin (torch)."""
    dev = chip.device
    # an idealised bipolar (signed) cell has no off-state current; a sensed cell's is not summed
    # but sets where its varied conductance lies against the sense amplifier's reference
    signed_cell = chip.weight_encoding is WeightEncoding.SIGNED_CELL
    ref = sensing_reference(chip)
    g_off = _drawn_off_conductance(chip)
    g = digits + g_off
    if z is not None and dev.variation is VariationKind.LOGNORMAL:
        g = g * xp.exp(dev.variation_sigma * z)
    elif z is not None and dev.variation is VariationKind.GAUSSIAN:
        g = g + dev.variation_sigma * z
        if not signed_cell:
            g = xp.where(g > 0, g, 0.0)  # a conductance cannot go negative
    if u is not None:
        g_on = (dev.n_levels - 1) + g_off
        if signed_cell:
            g_on = xp.sign(digits + 0.5) * (dev.n_levels - 1)
        g = xp.where(u < dev.p_stuck_on, g_on, g)
        g = xp.where((u >= dev.p_stuck_on) & (u < dev.p_stuck_on + dev.p_stuck_off), g_off, g)
    if ref is not None:
        bits = (g > ref) * 1.0
        # the twin (torch): the sensed bit forward, the conductance's gradient backward
        g = bits if xp is np else g + (bits - g).detach()
    return g


#: Cells per chunk of :func:`_program_conductance`: its float64 scratch stays in L2.
_DRAW_CHUNK = 1 << 16


def _program_conductance(
    digits: np.ndarray, chip: ChipConfig, rng: np.random.Generator
) -> np.ndarray:
    """Draw the programmed conductance (cell-LSB) of every cell: variation, then faults.

    Returns float32 (K, J). The draws and the float64 arithmetic are those of drawing the whole
    matrix at once (all normals, then all fault uniforms, in C order), done chunk by chunk in
    place: no float64 temporaries of the whole matrix, the cost of the draws themselves.

    The formula is :func:`cell_conductance`'s (the training twin's), written in place here
    because calling it per chunk costs 1.6x on this hot path (its temporaries);
    ``tests/train/test_devices.py`` holds the two equal (twin == deployed chip, every
    variation kind, faults, encodings).
    """
    dev = chip.device
    # an idealised bipolar (signed) cell has no off-state current; a sensed cell's is not summed
    # (cell_conductance)
    signed_cell = chip.weight_encoding is WeightEncoding.SIGNED_CELL
    ref = sensing_reference(chip)
    g_off = _drawn_off_conductance(chip)
    flat_d = digits.reshape(-1)
    out = np.empty(digits.shape, dtype=np.float32)
    flat = out.reshape(-1)
    n = flat.shape[0]
    g = np.empty(min(_DRAW_CHUNK, n))
    z = np.empty_like(g)
    for s in range(0, n, _DRAW_CHUNK):
        e = min(s + _DRAW_CHUNK, n)
        gc, zc = g[:e - s], z[:e - s]
        np.add(flat_d[s:e], g_off, out=gc)
        if dev.varies:  # sigma 0 programs exactly: no normals drawn (nor by draw_devices)
            rng.standard_normal(out=zc)
            zc *= dev.variation_sigma
            if dev.variation is VariationKind.LOGNORMAL:
                gc *= np.exp(zc, out=zc)
            else:  # gaussian
                gc += zc
                if not signed_cell:
                    np.maximum(gc, 0.0, out=gc)  # a conductance cannot go negative
        flat[s:e] = gc
    if dev.p_stuck_on > 0 or dev.p_stuck_off > 0:
        p_on, p_any = dev.p_stuck_on, dev.p_stuck_on + dev.p_stuck_off
        g_on = (dev.n_levels - 1) + g_off
        g_low = g_off
        for s in range(0, n, _DRAW_CHUNK):
            e = min(s + _DRAW_CHUNK, n)
            u = rng.random(e - s)
            on = u < p_on
            if signed_cell:
                flat[s:e][on] = np.sign(flat_d[s:e][on] + 0.5) * (dev.n_levels - 1)
            else:
                flat[s:e][on] = g_on
            flat[s:e][(u >= p_on) & (u < p_any)] = g_low
    if ref is not None:
        np.greater(out, ref, out=out)  # the sensed bit (cell_conductance), in place
    return out


@dataclass(frozen=True, eq=False)
class Cells:
    """The device state programming draws for one weight matrix: what
    :mod:`cimsim.arrays.cache` keeps, so that a layer can be rebuilt for another ADC or noise
    setting without drawing again (:func:`assemble`)."""

    kinds: ColumnKinds
    digits_phys: np.ndarray
    """(K, J) int8 nominal digits of every physical column."""
    g_phys: np.ndarray | None
    """(K, J) float32 programmed conductance in cell-LSB (g_off included), None if ideal."""

    @property
    def nbytes(self) -> int:
        return int(self.digits_phys.nbytes + (0 if self.g_phys is None else self.g_phys.nbytes))


def draw_cells(w_int: np.ndarray, chip: ChipConfig, rng: np.random.Generator) -> Cells:
    """Encode ``w_int`` (N, K) into cell digits and draw their programmed conductances
    (variation and faults from ``rng``; nothing is drawn for ideal devices)."""
    return _draw_cells(_check_weights(w_int, chip), chip, rng)


def _draw_cells(w: np.ndarray, chip: ChipConfig, rng: np.random.Generator) -> Cells:
    kinds = column_kinds(w, chip)
    digits_phys = physical_digits(kinds)  # (K, N*Q), j = n*Q + q
    g_phys = None if chip.device.ideal else _program_conductance(digits_phys, chip, rng)
    # read-only: the programming cache hands the same arrays to every later deploy of the
    # weights, so a write through one model's layer (a fault injected by hand) changed them all
    for a in (digits_phys, g_phys):
        if a is not None:
            a.setflags(write=False)
    return Cells(kinds, digits_phys, g_phys)


def program(
    w_int: np.ndarray,
    chip: ChipConfig | str | Path,
    rng: np.random.Generator | int | None = None,
    *,
    input_signed: bool = False,
    row_tiles: list[tuple[int, int]] | None = None,
    name: str = "",
) -> ProgrammedLayer:
    """Encode, tile and program an integer weight matrix ``w_int`` of shape (N, K).

    The layer carries the ADC settings of the policies that need no data (``full_scale``,
    ``fixed``); a ``calibrated`` one gets them from :func:`cimsim.engine.calibrate`.

    Parameters
    ----------
    w_int : (N, K) integer array
        Weights in the range :func:`~cimsim.arrays.encoding.weight_range` allows.
    chip : ChipConfig, preset name or path to a ``.toml``
    rng : numpy Generator or int seed, optional
        Source of programming variation and faults (drawn once, here); None: seed 0.
    input_signed : bool
        Whether the inputs this layer will see are signed (fixes the full-scale ADC range).
    row_tiles : list of (start, stop), optional
        Row tiles to use instead of consecutive ``n_rows`` chunks (kernel-preserving tiling).
    name : str, optional
        The layer's name, for messages and reports.
    """
    # the entry point's arguments as matmul checks them: a name was an AttributeError, an int
    # seed one on a varied chip (ignored on 'ideal'), input_signed = "false" read as signed
    chip = as_chip(chip)
    input_signed = check_flag(input_signed, "input_signed")
    if rng is None or not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(0 if rng is None else check_seed(rng, "rng"))
    w = _check_weights(w_int, chip)
    tiles = (default_row_tiles(w.shape[1], chip.array.n_rows) if row_tiles is None
             else list(row_tiles))
    _check_row_tiles(tiles, w.shape[1], chip.array.n_rows)  # before the expensive draws
    cells = _draw_cells(w, chip, rng)
    return with_aging(assemble(cells, chip, input_signed=input_signed, row_tiles=tiles,
                               name=name), cells, rng)


def assemble(
    cells: Cells,
    chip: ChipConfig,
    *,
    input_signed: bool = False,
    row_tiles: list[tuple[int, int]] | None = None,
    name: str = "",
) -> ProgrammedLayer:
    """The :class:`ProgrammedLayer` of drawn ``cells`` on ``chip``: tiling, conversions, GEMM
    operands, full-scale range and static ADC tables. Draws nothing, so it is what a cached
    programming is rebuilt with when only the ADC or noise settings changed; ``chip`` must
    agree with the one the cells were drawn for on :func:`cells_key`."""
    k, n_phys = cells.digits_phys.shape
    kinds = cells.kinds
    n_out = n_phys // kinds.n_kinds
    tiles = default_row_tiles(k, chip.array.n_rows) if row_tiles is None else list(row_tiles)
    _check_row_tiles(tiles, k, chip.array.n_rows)
    groups = _row_groups(tiles, chip.array.rows_per_group)
    cols_per_tile = _cols_per_tile(kinds, chip)
    digits_phys, g_phys = cells.digits_phys, cells.g_phys
    conv = _conversions(kinds, n_out, chip)
    gemm = _gemm_operands(digits_phys, g_phys, conv, chip)
    fs_lo, fs_hi, column_fs = _full_scale(kinds, input_signed, chip)
    _check_placement(chip, input_signed, groups, conv.out_col.shape[0], n_out)
    layer = ProgrammedLayer(
        chip=chip, n_inputs=k, n_outputs=n_out, input_signed=input_signed, kinds=kinds,
        row_tiles=tiles, groups=groups, cols_per_tile=cols_per_tile,
        n_col_tiles=-(-n_phys // cols_per_tile),
        digits_phys=digits_phys, g_phys=g_phys,
        gemm_matrix=gemm.matrix, gemm_var=gemm.var, off_add=gemm.off_add,
        pos=gemm.pos, neg=gemm.neg, out_col=conv.out_col, conv_coef=conv.coef,
        conv_phys=conv.phys, conv_weight=conv.weight,
        conv_col_tile=conv.phys[:, 0] // cols_per_tile,
        x_sum_coef=_x_sum_coef(conv, n_out, chip),
        cell_rowsum=_cell_rowsum(digits_phys, g_phys, chip),
        fs_lo=fs_lo, fs_hi=fs_hi, column_fs=column_fs,
        group_abs_max=_group_abs_max(gemm.matrix, groups),
        name=name,
        weighted_rowsum=weighted_rowsum(conv, digits_phys, g_phys, chip),
    )
    tables = static_tables(layer)
    return layer if tables is None else layer.with_adc(tables)


def with_aging(layer: ProgrammedLayer, cells: Cells, rng: np.random.Generator
               ) -> ProgrammedLayer:
    """``layer`` (assembled from ``cells``) with its devices' future drawn
    (``cimsim.arrays.drift``) when the device ages, from a child of ``rng``: a stream of its
    own, so the programming draws (and a later layer's) stay as they were, cached or not."""
    if not layer.chip.device.ages:
        return layer
    from .drift import attach

    return attach(layer, cells.g_phys, rng.spawn(1)[0])


def cells_key(chip: ChipConfig) -> tuple:
    """The chip settings the drawn :class:`Cells` depend on (with the weights, the generator
    and nothing else): the digits' encoding, the device, and whether a digital read-out senses
    the cells to bits (their off-state conductance is then not summed, and a varied cell is
    its sensed bit: :func:`sensing_reference`). Another converter, noise, DAC, array geometry
    or technology leaves them as they are."""
    return (chip.weight_bits, chip.weight_encoding, chip.differential_readout, chip.device,
            chip.adc.kind is ADCKind.DIGITAL)


def _group_abs_max(matrix: np.ndarray, groups: np.ndarray) -> tuple[float, ...]:
    """max |entry| of the GEMM matrix per row group (from its min and max: no |.| copy)."""
    out = []
    for k0, k1, _ in groups:
        blk = matrix[k0:k1]
        out.append(float(max(-float(blk.min(initial=0)), float(blk.max(initial=0)))))
    return tuple(out)


def _row_groups(tiles: list[tuple[int, int]], rows_per_group: int) -> np.ndarray:
    """(G, 3) start row, stop row, row tile of every row group (one conversion each)."""
    return np.array([(s, min(s + rows_per_group, b), t)
                     for t, (a, b) in enumerate(tiles) for s in range(a, b, rows_per_group)],
                    dtype=np.int64)


def _analog_pairs(chip: ChipConfig) -> bool:
    return (chip.weight_encoding in (WeightEncoding.DIFFERENTIAL, WeightEncoding.TERNARY)
            and chip.differential_readout is DifferentialReadout.ANALOG)


def off_conductance(chip: ChipConfig) -> float:
    """Nominal off-state conductance of a cell as the column sums it, cell-LSB: none for an
    idealised bipolar cell, nor under a digital read-out (``adc.kind = 'digital'``), where a
    sense amplifier reads each cell against a reference to its bit before the adder tree (the
    off-current sets the sense margin, not the sum; :func:`read_off_conductance` is the
    current the read still draws)."""
    if chip.weight_encoding is WeightEncoding.SIGNED_CELL or chip.adc.kind is ADCKind.DIGITAL:
        return 0.0
    return chip.device.g_off_lsb


def sensed_cells(chip: ChipConfig) -> bool:
    """Whether a digital read-out (``adc.kind = 'digital'``) senses every cell it reads to its
    bit with a sense amplifier against a reference: 1-b resistive cells (RRAM, PCM, MRAM,
    FeFET, flash), or an ``ideal`` cell whose ``tech.cell_kind`` prices it as one (sensed
    exactly: it has no variation to carry it across the reference). SRAM and eDRAM bit-cells
    drive their bit into the adder tree themselves."""
    return chip.adc.kind is ADCKind.DIGITAL and priced_resistive(chip)


def stuck_conductances(chip: ChipConfig) -> tuple[float, float]:
    """(on, off) conductance, cell-LSB, a stuck cell is programmed to (a bipolar cell's on
    state in magnitude), as stored: rounded to float32 (``Cells.g_phys``)."""
    g_off = _drawn_off_conductance(chip)
    return (float(np.float32((chip.device.n_levels - 1) + g_off)), float(np.float32(g_off)))


def _drawn_off_conductance(chip: ChipConfig) -> float:
    """Off-state conductance a programmed cell is drawn around, cell-LSB: the one the column
    sums, or a sensed cell's own (its varied conductance meets the sense reference)."""
    return read_off_conductance(chip) if sensed_cells(chip) else off_conductance(chip)


def sensing_reference(chip: ChipConfig) -> float | None:
    """Conductance a sense amplifier compares a 1-b resistive cell with under a digital
    read-out, cell-LSB: midway between the nominal on- and off-state conductances, ``(G_on +
    G_off) / 2 = 1/2 + g_off`` (a reference current averaged from an on and an off reference
    cell, as MRAM sense amplifiers form it: US patent 8,693,273 B2, "Reference averaging for
    MRAM sense amplifiers", 2014). A cell whose programming variation carries it across the
    reference reads the other bit (a misread fixed at programming); None where no cell is
    sensed (an analog read-out; SRAM, eDRAM and ideal bit-cells)."""
    return 0.5 + chip.device.g_off_lsb if sensed_cells(chip) else None


def read_off_conductance(chip: ChipConfig) -> float:
    """Off-state conductance a read draws current through, cell-LSB (the read energy's): the
    device's, also where a digital read-out senses the cell to its bit (an idealised bipolar
    cell has none)."""
    return 0.0 if chip.weight_encoding is WeightEncoding.SIGNED_CELL else chip.device.g_off_lsb


def _cols_per_tile(kinds: ColumnKinds, chip: ChipConfig) -> int:
    """Physical columns used per array: all column kinds of an output side by side when they
    fit, else at least a differential pair together."""
    n_cols = chip.array.n_cols
    q = kinds.n_kinds
    paired = chip.weight_encoding in (WeightEncoding.DIFFERENTIAL, WeightEncoding.TERNARY)
    if q > n_cols and chip.array.slice_readout is SliceReadout.ANALOG:
        raise MappingError(
            f"array.n_cols = {n_cols} cannot hold the {q} slice columns that "
            "array.slice_readout = 'analog' combines into one conversion; use n_cols >= "
            f"{q} or slice_readout = 'digital'")
    unit = q if q <= n_cols else (2 if paired else 1)
    if unit > n_cols:
        raise MappingError(
            f"array.n_cols = {n_cols} cannot hold a differential column pair; use >= 2")
    guard = ripple_guard_columns(chip)  # a ripple column's sum-extension cells, not mapped
    # a ripple column's row adds the whole weight across its q cells: an output's columns
    # stay in one array even where the sum needs no guard column (one row per conversion)
    ripple = chip.tech.digital_column is DigitalColumn.RIPPLE
    if ripple and q + guard > n_cols:
        raise MappingError(
            f"array.n_cols = {n_cols} cannot hold one output's {q} weight columns and the "
            f"{guard} guard columns of tech.digital_column = 'ripple'; use n_cols >= "
            f"{q + guard}")
    return (n_cols // (q + guard)) * q if ripple else (n_cols // unit) * unit


@dataclass(frozen=True)
class _Conversions:
    phys: np.ndarray  # (C, R) physical columns each conversion reads, -1 padded
    weight: np.ndarray  # (C, R) their analog weights (0 where padded)
    out_col: np.ndarray  # (C,) output n
    coef: np.ndarray  # (C,) signed significance

    @property
    def merged(self) -> np.ndarray:
        """(C,) whether the conversion reads more than one column (a pair or slices)."""
        return self.phys[:, 1] >= 0 if self.phys.shape[1] > 1 else np.zeros(
            self.phys.shape[0], dtype=bool)


def _conversions(kinds: ColumnKinds, n_out: int, chip: ChipConfig) -> _Conversions:
    """The conversions of ``n_out`` outputs, output-major (``encoding.conversion_kinds``):
    one per physical column, except the negative columns of analog pairs (read with their
    positive partner) and the slices an analog slice read-out combines."""
    ck = conversion_kinds(chip)
    q = kinds.n_kinds
    r = 2 if chip.array.slice_readout is SliceReadout.DIGITAL else q
    cols = np.full((ck.n_conversions, r), -1, dtype=np.int64)
    wts = np.zeros((ck.n_conversions, r))
    for c in range(ck.n_conversions):
        read = np.flatnonzero(ck.weight[c])
        cols[c, :read.shape[0]] = read
        wts[c, :read.shape[0]] = ck.weight[c, read]
    base = q * np.arange(n_out, dtype=np.int64)[:, None, None]
    phys = np.where(cols >= 0, base + cols, -1).reshape(-1, r)
    return _Conversions(phys, np.tile(wts, (n_out, 1)),
                        np.repeat(np.arange(n_out, dtype=np.int64), ck.n_conversions),
                        np.tile(ck.coef, n_out))


@dataclass(frozen=True)
class _GemmOperands:
    matrix: np.ndarray  # (K, Jg) int8 digits or float32 conductances
    var: np.ndarray | None  # (K, Jg) float32 read-noise variance per cell
    off_add: np.ndarray  # (Jg,) off-current per unit Σx not in the matrix
    pos: np.ndarray  # (C,) GEMM column of each conversion
    neg: np.ndarray  # (C,) GEMM column subtracted before the ADC, or -1


def _gemm_operands(digits_phys: np.ndarray, g_phys: np.ndarray | None,
                   conv: _Conversions, chip: ChipConfig,
                   read_rel: np.ndarray | float | None = None,
                   reference: float = 1.0) -> _GemmOperands:
    """The matrix the input planes are multiplied with, and how conversions read it.

    ``read_rel``: relative read-noise sigma, per cell (K, J) or one for all (default
    ``noise.read_noise_rel``; an aging device's grows with time, ``cimsim.arrays.drift``).
    ``reference``: the analog off-current reference's conductance over its nominal value (it
    drifts: ``cimsim.arrays.drift.reference_drift``)."""
    g_off = off_conductance(chip)
    comp = chip.device.off_current_compensation
    # Merge a differential pair into one GEMM column when the subtraction commutes with what
    # follows (no per-column non-linearity): halves the GEMM.
    merge = _analog_pairs(chip) and chip.noise.nonlinearity is Nonlinearity.NONE
    base = digits_phys if g_phys is None else g_phys
    phys_pos, phys_neg = conv.phys[:, 0], conv.phys[:, -1]
    slices = chip.array.slice_readout is SliceReadout.ANALOG  # no non-linearity (config)
    if slices:
        mat = _weighted_columns(base, conv)
        gemm_pos = np.arange(phys_pos.shape[0])
        gemm_neg = np.full_like(gemm_pos, -1)
        mult = conv.weight.sum(axis=1)  # each column's off-current enters with its weight
    elif merge:
        # digits -3..3 stay int8; conductances stay float32 (one rounding of the difference)
        mat = _take_cols(base, phys_pos) - _take_cols(base, phys_neg)
        gemm_pos = np.arange(phys_pos.shape[0])
        gemm_neg = np.full_like(gemm_pos, -1)
        mult = np.zeros(phys_pos.shape[0])  # off-current cancels within the pair
    else:
        mat = base
        gemm_pos, gemm_neg = phys_pos, phys_neg
        mult = np.ones(digits_phys.shape[1])
    if g_phys is None:
        # digits in the matrix: the nominal off-current is added unless compensated in analog
        off_add = mult * (0.0 if comp is OffCurrentCompensation.ANALOG else g_off)
        # combined slices exceed int8 (Σ 2^(c·s)·d_s up to 2^16): exact float32 integers
        # then, which _gemm.choose multiplies in float32 or float64 as the bounds need
        fits = mat.dtype == np.int8 or int(np.abs(mat).max(initial=0)) <= 127
        matrix = mat.astype(np.int8 if fits else np.float32, copy=False)
    else:
        # conductances include the (varied) off-state current; analog compensation removes
        # its nominal value only (as its reference column has drifted)
        off_add = -mult * (g_off * reference if comp is OffCurrentCompensation.ANALOG else 0.0)
        matrix = mat.astype(np.float32, copy=False)
    var = None
    rel = chip.noise.read_noise_rel if read_rel is None else read_rel
    if np.any(np.asarray(rel) > 0):
        g_cells = _cell_conductance(digits_phys, g_phys, chip)
        v = np.square(np.asarray(rel, dtype=np.float32) * g_cells)
        if slices:
            v = _weighted_columns(v, conv, square=True)
        elif merge:
            v = _take_cols(v, phys_pos) + _take_cols(v, phys_neg)
        var = np.ascontiguousarray(v, dtype=np.float32)
    return _GemmOperands(np.ascontiguousarray(matrix), var, off_add.astype(np.float64),
                         gemm_pos.astype(np.int64), gemm_neg.astype(np.int64))


def _weighted_columns(a: np.ndarray, conv: _Conversions, square: bool = False) -> np.ndarray:
    """(K, C) Σ_r w[c, r] · a[:, phys[c, r]] (w² with ``square``: variances), accumulated in
    int64 for integer digits (exact) and float64 otherwise (one rounding to float32)."""
    w = np.square(conv.weight) if square else conv.weight
    integer = np.issubdtype(a.dtype, np.integer)
    out = np.zeros((a.shape[0], conv.phys.shape[0]), dtype=np.int64 if integer else np.float64)
    for r in range(conv.phys.shape[1]):
        cols = conv.phys[:, r]
        used = cols >= 0
        if not used.any():
            continue
        idx = np.flatnonzero(used)
        part: np.ndarray = _take_cols(a, cols[idx]).astype(out.dtype)
        part *= w[idx, r].astype(out.dtype)
        out[:, idx] += part
    return out if integer else out.astype(np.float32)


def _take_cols(a: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``a[:, cols]``, as a strided view when ``cols`` is an arithmetic progression (the
    columns of one kind in every output: the common case), else a gather."""
    n = cols.shape[0]
    if n > 1:
        step = int(cols[1] - cols[0])
        if step > 0 and np.array_equal(cols, cols[0] + step * np.arange(n)):
            return a[:, int(cols[0])::step][:, :n]
    return a[:, cols]


def _cell_conductance(digits_phys: np.ndarray, g_phys: np.ndarray | None,
                      chip: ChipConfig) -> np.ndarray:
    """(K, J) float32 conductance of every cell, cell-LSB (nominal where devices are ideal)."""
    if g_phys is None:
        return digits_phys.astype(np.float32) + np.float32(off_conductance(chip))
    return g_phys


def _cell_rowsum(digits_phys: np.ndarray, g_phys: np.ndarray | None,
                 chip: ChipConfig) -> np.ndarray:
    """(K,) float64 Σ_j |G[k, j]| over physical columns (cell-LSB), for the read-energy event:
    the current the read draws, a sensed cell's off-current included (it is not summed,
    :func:`off_conductance`, but it flows)."""
    unsummed = read_off_conductance(chip) - off_conductance(chip)  # >= 0 (non-signed cells)
    if g_phys is None:
        g_off = read_off_conductance(chip)
        if g_off == 0.0:
            return np.abs(digits_phys).sum(axis=1, dtype=np.float64)
        return np.abs(digits_phys.astype(np.float64) + g_off).sum(axis=1)
    return np.abs(g_phys).sum(axis=1, dtype=np.float64) + unsummed * g_phys.shape[1]


def weighted_rowsum(conv: _Conversions, digits_phys: np.ndarray, g_phys: np.ndarray | None,
                    chip: ChipConfig) -> np.ndarray | None:
    """(K,) float64 Σ_j r_j·|G[k, j]| (cell-LSB) over the physical columns an analog slice
    read-out weights by ratio r_j (:func:`.encoding.weighting_ratios`); None where none is."""
    if chip.array.slice_readout is not SliceReadout.ANALOG:
        return None
    r = weighting_ratios(conv.weight)
    if not np.any(r > 0):
        return None
    ratio = np.zeros(digits_phys.shape[1])
    used = conv.phys >= 0
    ratio[conv.phys[used]] = r[used]
    g = np.abs(_cell_conductance(digits_phys, g_phys, chip).astype(np.float64))
    return g @ ratio


def _x_sum_coef(conv: _Conversions, n_out: int, chip: ChipConfig) -> np.ndarray:
    """(N,) exact digital correction per unit of Σ_k x[k]: offset and binary encodings,
    digital off-current compensation."""
    coef = np.zeros(n_out)
    if chip.weight_encoding is WeightEncoding.OFFSET:
        coef -= 2.0 ** (chip.weight_bits - 1)
    elif chip.weight_encoding is WeightEncoding.BINARY:
        coef -= 1.0  # x·w = 2·(x·d) - Σx
    g_off = off_conductance(chip)
    if chip.device.off_current_compensation is OffCurrentCompensation.DIGITAL and g_off > 0:
        # the off-current of each column read, with its analog weight (analog pairs cancel)
        per_conv = conv.weight.sum(axis=1)
        np.add.at(coef, conv.out_col, -g_off * conv.coef * per_conv)
    return coef


def _full_scale(kinds: ColumnKinds, input_signed: bool,
                chip: ChipConfig) -> tuple[float, float, float]:
    """Smallest and largest analog value of one conversion with ideal devices (the
    hardware-fixed ADC range), and the full-scale current of one column, cell-LSB."""
    _, x_lo, x_hi = plane_layout(chip, input_signed)
    g_off = off_conductance(chip)
    off_in = 0.0 if chip.device.off_current_compensation is OffCurrentCompensation.ANALOG \
        else g_off
    e_lo: float
    e_hi: float
    if chip.array.slice_readout is SliceReadout.ANALOG:
        # per row: Σ_q w_q·(d_q + off) of the combined columns, over every storable weight
        # (the top slice and the sign column hold fewer levels than a cell: exact ends)
        w = conversion_kinds(chip).weight
        w_lo, w_hi = weight_range(chip)
        d = column_kinds(np.arange(w_lo, w_hi + 1)[None, :], chip).digits[:, :, 0]  # (Q, W)
        v = w @ d.astype(np.float64) + off_in * w.sum(axis=1)[:, None]
        e_lo, e_hi = float(v.min()), float(v.max())
    elif _analog_pairs(chip):
        e_lo, e_hi = -(kinds.digit_hi - kinds.digit_lo), kinds.digit_hi - kinds.digit_lo
    else:
        e_lo, e_hi = kinds.digit_lo + off_in, kinds.digit_hi + off_in
    r = chip.array.rows_per_group
    prods = (x_lo * e_lo, x_lo * e_hi, x_hi * e_lo, x_hi * e_hi)
    column_fs = r * max(abs(x_lo), abs(x_hi)) * (max(abs(kinds.digit_lo), kinds.digit_hi) + g_off)
    return float(r * min(prods)), float(r * max(prods)), float(column_fs)


def _check_placement(chip: ChipConfig, input_signed: bool, groups: np.ndarray, n_conv: int,
                     n_out: int) -> None:
    """A layer-output ADC needs the whole dot product of an output in one conversion."""
    if chip.adc.placement is not ADCPlacement.LAYER_OUTPUT:
        return
    n_planes = len(plane_layout(chip, input_signed)[0])
    if n_planes != 1 or groups.shape[0] != 1 or n_conv != n_out:
        raise MappingError(
            f"adc.placement = 'layer_output' needs one conversion per output (one input "
            f"plane, one row group, one conversion column per output); this layer has "
            f"{n_planes} plane(s), {groups.shape[0]} row group(s) and "
            f"{n_conv // n_out} conversion column(s) per output: use dac.bits = "
            f"input_bits, K <= rows_per_conversion and weights in one cell or combined in "
            f"analog (array.slice_readout = 'analog'), or 'partial_sum'"
        )

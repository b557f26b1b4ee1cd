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

from dataclasses import dataclass, field

import numpy as np

from ..config import (
    ADCPlacement,
    ChipConfig,
    DifferentialReadout,
    Nonlinearity,
    OffCurrentCompensation,
    VariationKind,
    WeightEncoding,
)
from ..errors import MappingError
from .encoding import ColumnKinds, column_kinds, plane_layout, weight_range

__all__ = ["ProgrammedLayer", "program", "default_row_tiles"]


def default_row_tiles(k: int, n_rows: int) -> list[tuple[int, int]]:
    """Consecutive row tiles of at most ``n_rows`` rows covering ``range(k)``."""
    return [(s, min(s + n_rows, k)) for s in range(0, k, n_rows)]


@dataclass
class ProgrammedLayer:
    """One weight matrix programmed on the arrays: everything a forward pass needs.

    Shapes: K inputs, N outputs, Q column kinds, J = N*Q physical columns, C conversion
    columns (J, or J/2 for analog differential read-out), G row groups, Jg GEMM columns.
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
    """(C, 2) int64 physical columns (positive, negative or -1) of each conversion."""
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
    adc_lo: np.ndarray | None = None
    """(G, C) float64 ADC range start; None until set (full-scale/fixed: at programming)."""
    adc_delta: np.ndarray | None = None
    """(G, C) float64 ADC step (nonlinear ADC: its mean level spacing)."""
    adc_thr: np.ndarray | None = None
    """(G, C, L-1) float64 thresholds of a nonlinear (ramp) ADC; None for a linear ADC."""
    adc_lvl: np.ndarray | None = None
    """(G, C, L) float64 reconstruction levels of a nonlinear ADC."""
    name: str = ""
    meta: dict = field(default_factory=dict)

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
    return w.astype(np.int64)


def _check_row_tiles(row_tiles: list[tuple[int, int]], k: int, n_rows: int) -> None:
    prev = 0
    for i, (a, b) in enumerate(row_tiles):
        if a != prev or b <= a or b - a > n_rows:
            raise MappingError(
                f"row_tiles[{i}] = {(a, b)} invalid: tiles must be consecutive, non-empty and "
                f"at most n_rows={n_rows} rows, covering 0..{k}"
            )
        prev = b
    if prev != k:
        raise MappingError(f"row_tiles cover 0..{prev}, expected 0..{k}")


def _program_conductance(
    digits: np.ndarray, chip: ChipConfig, rng: np.random.Generator
) -> np.ndarray:
    """Draw the programmed conductance (cell-LSB) of every cell: variation, then faults."""
    dev = chip.device
    # an idealised bipolar (signed) cell has no off-state current
    signed_cell = chip.weight_encoding is WeightEncoding.SIGNED_CELL
    g = digits.astype(np.float64) + (0.0 if signed_cell else dev.g_off_lsb)
    if dev.variation is VariationKind.LOGNORMAL:
        g = g * np.exp(dev.variation_sigma * rng.standard_normal(g.shape))
    elif dev.variation is VariationKind.GAUSSIAN:
        g = g + dev.variation_sigma * rng.standard_normal(g.shape)
        if not signed_cell:
            g = np.maximum(g, 0.0)  # a conductance cannot go negative
    if dev.p_stuck_on > 0 or dev.p_stuck_off > 0:
        u = rng.random(g.shape)
        g_on = (dev.n_levels - 1) + dev.g_off_lsb
        g_off = dev.g_off_lsb
        if signed_cell:
            g_on, g_off = np.sign(digits + 0.5) * (dev.n_levels - 1), 0.0
        g = np.where(u < dev.p_stuck_on, g_on, g)
        g = np.where((u >= dev.p_stuck_on) & (u < dev.p_stuck_on + dev.p_stuck_off), g_off, g)
    return g


def program(
    w_int: np.ndarray,
    chip: ChipConfig,
    rng: np.random.Generator | None = None,
    *,
    input_signed: bool = False,
    row_tiles: list[tuple[int, int]] | None = None,
    name: str = "",
) -> ProgrammedLayer:
    """Encode, tile and program an integer weight matrix ``w_int`` of shape (N, K).

    Parameters
    ----------
    w_int : (N, K) integer array
        Weights in the range :func:`~cimsim.arrays.encoding.weight_range` allows.
    chip : ChipConfig
    rng : numpy Generator
        Source of programming variation and faults (drawn once, here).
    input_signed : bool
        Whether the inputs this layer will see are signed (fixes the full-scale ADC range).
    row_tiles : list of (start, stop), optional
        Row tiles to use instead of consecutive ``n_rows`` chunks (kernel-preserving tiling).
    """
    w = _check_weights(w_int, chip)
    rng = np.random.default_rng(0) if rng is None else rng
    n_out, k = w.shape
    arr = chip.array
    tiles = default_row_tiles(k, arr.n_rows) if row_tiles is None else list(row_tiles)
    _check_row_tiles(tiles, k, arr.n_rows)
    r = arr.rows_per_group
    groups = np.array(
        [(s, min(s + r, b), t) for t, (a, b) in enumerate(tiles) for s in range(a, b, r)],
        dtype=np.int64,
    )

    kinds = column_kinds(w, chip)
    q = kinds.n_kinds
    differential = chip.weight_encoding is WeightEncoding.DIFFERENTIAL
    analog_pairs = differential and chip.differential_readout is DifferentialReadout.ANALOG
    unit = q if q <= arr.n_cols else (2 if differential else 1)
    if unit > arr.n_cols:
        raise MappingError(
            f"array.n_cols = {arr.n_cols} cannot hold a differential column pair; use >= 2"
        )
    cols_per_tile = (arr.n_cols // unit) * unit
    j_phys = n_out * q
    n_col_tiles = -(-j_phys // cols_per_tile)
    # (Q, K, N) -> (K, N*Q) with j = n*Q + q
    digits_phys = np.ascontiguousarray(kinds.digits.transpose(1, 2, 0).reshape(k, j_phys))

    dev = chip.device
    g_phys = None if dev.ideal else _program_conductance(digits_phys, chip, rng)

    # conversions
    phys_pos = np.array([n * q + i for n in range(n_out) for i in range(q)
                         if not (analog_pairs and kinds.polarity[i] < 0)], dtype=np.int64)
    kind_of = phys_pos % q
    phys_neg = np.where(kinds.pair[kind_of] >= 0, phys_pos - kind_of + kinds.pair[kind_of], -1)
    out_col = phys_pos // q
    conv_coef = kinds.coef[kind_of].copy()
    conv_col_tile = phys_pos // cols_per_tile

    g_off = dev.g_off_lsb if chip.weight_encoding is not WeightEncoding.SIGNED_CELL else 0.0
    comp = dev.off_current_compensation
    nl = chip.noise.nonlinearity
    # Merge a differential pair into one GEMM column when the subtraction commutes with what
    # follows (no per-column non-linearity): halves the GEMM.
    merge = analog_pairs and nl is Nonlinearity.NONE
    base = digits_phys if g_phys is None else g_phys
    if merge:
        mat = base[:, phys_pos].astype(np.float64) - base[:, phys_neg]
        gemm_pos = np.arange(phys_pos.shape[0])
        gemm_neg = np.full_like(gemm_pos, -1)
        mult = np.zeros(phys_pos.shape[0])  # off-current cancels within the pair
    else:
        mat = base
        gemm_pos, gemm_neg = phys_pos, phys_neg
        mult = np.ones(j_phys)
    if g_phys is None:
        # digits in the matrix: the nominal off-current is added unless compensated in analog
        off_add = mult * (0.0 if comp is OffCurrentCompensation.ANALOG else g_off)
        gemm_matrix = mat.astype(np.int8)
    else:
        # conductances include the (varied) off-state current; analog compensation removes
        # its nominal value only
        off_add = -mult * (g_off if comp is OffCurrentCompensation.ANALOG else 0.0)
        gemm_matrix = mat.astype(np.float32)

    gemm_var = None
    rel = chip.noise.read_noise_rel
    if rel > 0:
        g = (digits_phys + g_off if g_phys is None else g_phys).astype(np.float64)
        var = (rel * g) ** 2
        if merge:
            var = var[:, phys_pos] + var[:, phys_neg]
        gemm_var = var.astype(np.float32)

    # exact digital corrections per unit of Σ_k x[k]
    x_sum_coef = np.zeros(n_out)
    if chip.weight_encoding is WeightEncoding.OFFSET:
        x_sum_coef -= 2.0 ** (chip.weight_bits - 1)
    if comp is OffCurrentCompensation.DIGITAL and g_off > 0:
        per_conv = np.where(phys_neg >= 0, 0.0, 1.0)  # analog pairs cancel on their own
        np.add.at(x_sum_coef, out_col, -g_off * conv_coef * per_conv)

    g_all = (digits_phys.astype(np.float64) + g_off) if g_phys is None else g_phys
    cell_rowsum = np.abs(g_all).sum(axis=1)

    # full-scale range of one conversion, from the DAC and digit ranges (hardware-fixed)
    _, x_lo, x_hi = plane_layout(chip, input_signed)
    off_in = 0.0 if comp is OffCurrentCompensation.ANALOG else g_off
    if analog_pairs:
        e_lo, e_hi = -(kinds.digit_hi - kinds.digit_lo), kinds.digit_hi - kinds.digit_lo
    else:
        e_lo, e_hi = kinds.digit_lo + off_in, kinds.digit_hi + off_in
    prods = (x_lo * e_lo, x_lo * e_hi, x_hi * e_lo, x_hi * e_hi)
    fs_lo, fs_hi = r * min(prods), r * max(prods)
    column_fs = r * max(abs(x_lo), abs(x_hi)) * (max(abs(kinds.digit_lo), kinds.digit_hi) + g_off)

    layer = ProgrammedLayer(
        chip=chip, n_inputs=k, n_outputs=n_out, input_signed=input_signed, kinds=kinds,
        row_tiles=tiles, groups=groups, cols_per_tile=cols_per_tile, n_col_tiles=n_col_tiles,
        digits_phys=digits_phys, g_phys=None if g_phys is None else g_phys.astype(np.float32),
        gemm_matrix=np.ascontiguousarray(gemm_matrix),
        gemm_var=None if gemm_var is None else np.ascontiguousarray(gemm_var),
        off_add=off_add.astype(np.float64), pos=gemm_pos.astype(np.int64),
        neg=gemm_neg.astype(np.int64), out_col=out_col, conv_coef=conv_coef,
        conv_phys=np.stack([phys_pos, phys_neg], axis=1), conv_col_tile=conv_col_tile,
        x_sum_coef=x_sum_coef, cell_rowsum=cell_rowsum, fs_lo=float(fs_lo),
        fs_hi=float(fs_hi), column_fs=float(column_fs), name=name,
    )
    if chip.adc.placement is ADCPlacement.LAYER_OUTPUT:
        n_planes = len(plane_layout(chip, input_signed)[0])
        if n_planes != 1 or groups.shape[0] != 1 or phys_pos.shape[0] != n_out:
            raise MappingError(
                f"adc.placement = 'layer_output' needs one conversion per output (one input "
                f"plane, one row group, one conversion column per output); this layer has "
                f"{n_planes} plane(s), {groups.shape[0]} row group(s) and "
                f"{phys_pos.shape[0] // n_out} conversion column(s) per output: use dac.bits = "
                f"input_bits, K <= rows_per_conversion and weights in one cell (or 'partial_sum')"
            )
    from ..adc.linear import static_ranges  # local: adc builds on arrays' layer type

    static_ranges(layer)
    return layer

"""Signed weights -> cell digits; signed or unsigned inputs -> DAC planes.

A weight matrix ``w`` (N, K) becomes, for every output n, Q *column kinds* q, each a column of
cell digits ``d_q[k, n]`` with a signed significance ``coef_q`` such that

    w[n, k] = Σ_q coef_q · d_q[k, n]          (exactly, integers)

An input vector ``x`` (K,) becomes P planes ``x_p`` with significances ``sig_p`` such that
``x = Σ_p sig_p · x_p``. The layer result is then ``Σ_p Σ_q sig_p · coef_q · (x_p @ d_q)``,
which is what the arrays compute one (plane, column kind, row group) at a time.
See ``docs/hardware-model.md`` for the exact conventions of each encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import (
    ChipConfig,
    DifferentialReadout,
    SignedInputMode,
    SliceReadout,
    WeightEncoding,
)

__all__ = ["ColumnKinds", "ConversionKinds", "InputPlanes", "column_kinds", "conversion_kinds",
           "input_planes", "input_range", "weight_range", "weighting_ratios"]


@dataclass(frozen=True)
class ColumnKinds:
    """How one output's weight is spread over physical columns.

    Attributes
    ----------
    digits : (Q, K, N) int8
        Cell digit of column kind q for input k, output n (a view of a C-contiguous
        (K, N, Q) array: :func:`physical_digits` gives that array).
    coef : (Q,) float64
        Signed significance of each kind (slice weight, times -1 for a negative column).
    polarity : (Q,) int8
        +1 for a positive (or only) column, -1 for the negative column of a differential pair.
    pair : (Q,) int64
        For analog differential read-out: the index of the negative partner of a positive kind
        (-1 where none); the pair is converted once, as the difference of the two currents.
    digit_lo, digit_hi : int
        Range of a stored digit (the cell's levels; signed cells are bipolar).
    """

    digits: np.ndarray
    coef: np.ndarray
    polarity: np.ndarray
    pair: np.ndarray
    digit_lo: int
    digit_hi: int

    @property
    def n_kinds(self) -> int:
        return int(self.coef.shape[0])


def physical_digits(kinds: ColumnKinds) -> np.ndarray:
    """(K, N*Q) int8 digits of every physical column ``j = n*Q + q`` (no copy when ``kinds``
    came from :func:`column_kinds`)."""
    q, k, n = kinds.digits.shape
    return np.ascontiguousarray(kinds.digits.transpose(1, 2, 0)).reshape(k, n * q)


def weight_range(chip: ChipConfig) -> tuple[int, int]:
    """Allowed integer weight range for the chip's encoding and ``weight_bits``."""
    b = chip.weight_bits
    if chip.weight_encoding is WeightEncoding.BINARY:
        # ±1 only: 0 lies in the range but has no code (program refuses it)
        return -1, 1
    if chip.weight_encoding is WeightEncoding.TERNARY:
        # every balanced-ternary code of B digits
        return -(3**b - 1) // 2, (3**b - 1) // 2
    if chip.weight_encoding in (WeightEncoding.DIFFERENTIAL, WeightEncoding.SIGNED_CELL):
        # the sign lives in the column pair / cell polarity: magnitudes of B-1 bits
        return -(2 ** (b - 1) - 1), 2 ** (b - 1) - 1
    return -(2 ** (b - 1)), 2 ** (b - 1) - 1


def input_range(chip: ChipConfig, signed: bool) -> tuple[int, int]:
    """Allowed integer input range for ``input_bits``, signedness and signed-input mode."""
    b = chip.input_bits
    if not signed:
        return 0, 2**b - 1
    if chip.dac.signed_inputs is SignedInputMode.TWO_PASS:
        return -(2 ** (b - 1) - 1), 2 ** (b - 1) - 1
    return -(2 ** (b - 1)), 2 ** (b - 1) - 1


def column_kinds(w_int: np.ndarray, chip: ChipConfig) -> ColumnKinds:
    """Encode an integer weight matrix ``(N, K)`` into column kinds (see module docstring).

    The digits are written straight into a (K, N, Q) int8 array, the physical column order of
    the arrays (``j = n*Q + q``); ``ColumnKinds.digits`` is its (Q, K, N) view, so programming
    takes the physical layout with no copy and no int64 temporaries of the whole matrix.
    """
    b = chip.weight_bits
    c = chip.device.bits_per_cell
    w = np.asarray(w_int).T.astype(np.int32)  # (K, N): rows are array rows; |w| < 2^16
    k, n = w.shape
    enc = chip.weight_encoding
    coef: list[float] = []
    pol: list[int] = []
    top = (1 << c) - 1
    mask = np.int32(top)
    digit_lo = 0
    mag_slices = -(-(b - 1) // c)
    if enc is WeightEncoding.DIFFERENTIAL:
        q = 2 * mag_slices
    elif enc is WeightEncoding.TERNARY:
        q = 2 * b
    elif enc is WeightEncoding.TWOS_COMPLEMENT:
        q = mag_slices + 1
    elif enc is WeightEncoding.OFFSET:
        q = -(-b // c)
    elif enc is WeightEncoding.BINARY:
        q = 1
    else:
        q = mag_slices
    out = np.empty((k, n, q), dtype=np.int8)

    def put(col: int, digits: np.ndarray, significance: float, polarity: int) -> None:
        out[:, :, col] = digits
        coef.append(significance)
        pol.append(polarity)

    if enc is WeightEncoding.DIFFERENTIAL:
        pos, neg = np.maximum(w, 0), np.maximum(-w, 0)
        for s in range(mag_slices):
            put(2 * s, (pos >> (c * s)) & mask, 2.0 ** (c * s), 1)
            put(2 * s + 1, (neg >> (c * s)) & mask, -(2.0 ** (c * s)), -1)
    elif enc is WeightEncoding.TERNARY:
        # balanced-ternary digits c_s of w = Σ_s c_s·3^s; +1 in the positive, -1 in the
        # negative binary cell of pair s
        r = w.copy()
        for s in range(b):
            d = (r + 1) % 3 - 1  # numpy's % is non-negative: d in {-1, 0, 1}
            r = (r - d) // 3
            put(2 * s, d == 1, 3.0**s, 1)
            put(2 * s + 1, d == -1, -(3.0**s), -1)
    elif enc is WeightEncoding.TWOS_COMPLEMENT:
        # B-1 magnitude bits sliced unsigned, plus one sign-bit column of weight -2^(B-1):
        # an unsigned cell cannot hold a negative digit, so the sign bit gets its own column.
        u = w & np.int32((1 << (b - 1)) - 1)
        for s in range(mag_slices):
            put(s, (u >> (c * s)) & mask, 2.0 ** (c * s), 1)
        put(mag_slices, w < 0, -(2.0 ** (b - 1)), 1)
    elif enc is WeightEncoding.OFFSET:
        u = w + np.int32(1 << (b - 1))
        for s in range(q):
            put(s, (u >> (c * s)) & mask, 2.0 ** (c * s), 1)
    elif enc is WeightEncoding.BINARY:
        # w = 2d - 1 with d = (w + 1)/2 in {0, 1}: significance 2 here, the -Σx in the
        # digital back end (program's x_sum_coef)
        put(0, w > 0, 2.0, 1)
    else:  # SIGNED_CELL: an idealised bipolar cell holds sign·digit
        sign, mag = np.sign(w), np.abs(w)
        for s in range(mag_slices):
            put(s, sign * ((mag >> (c * s)) & mask), 2.0 ** (c * s), 1)
        digit_lo = -top
    pair = np.full(q, -1, dtype=np.int64)
    analog = chip.differential_readout is DifferentialReadout.ANALOG
    if enc in (WeightEncoding.DIFFERENTIAL, WeightEncoding.TERNARY) and analog:
        pair[0::2] = np.arange(1, q, 2)
    return ColumnKinds(
        digits=out.transpose(2, 0, 1),
        coef=np.asarray(coef, dtype=np.float64),
        polarity=np.asarray(pol, dtype=np.int8),
        pair=pair,
        digit_lo=digit_lo,
        digit_hi=top,
    )


@dataclass(frozen=True)
class ConversionKinds:
    """How the Q column kinds of one output are read: Qc conversions, each the analog
    combination ``Σ_q weight[c, q] · I_q`` of column currents, shift-added with ``coef[c]``, so
    that ``weight.T @ coef`` equals the column kinds' ``coef`` (the same dot product).

    Digital slice read-out: one conversion per kind (weight = I, coef = the kind's), except an
    analog differential pair (+1, -1 on its two columns, the positive kind's coef). Analog slice
    read-out (``array.slice_readout``): one conversion per output with weight = the kinds'
    signed significances and coef 1, or, with a digital differential read-out, one per polarity
    (the magnitudes' significances, coef ±1).
    """

    weight: np.ndarray
    """(Qc, Q) float64 analog weight of column kind q in conversion kind c (0: not read)."""
    coef: np.ndarray
    """(Qc,) float64 digital significance of conversion kind c."""

    @property
    def n_conversions(self) -> int:
        return int(self.coef.shape[0])


def conversion_kinds(chip: ChipConfig) -> ConversionKinds:
    """The :class:`ConversionKinds` of ``chip`` (depends on the encoding and bit widths only)."""
    kinds = column_kinds(np.zeros((1, 1), dtype=np.int64), chip)
    q = kinds.n_kinds
    if chip.array.slice_readout is SliceReadout.ANALOG:
        if chip.differential_readout is DifferentialReadout.DIGITAL and np.any(
                kinds.polarity < 0):
            # positive and negative magnitudes each summed in analog, subtracted digitally
            weight = np.stack([np.where(kinds.polarity == s, np.abs(kinds.coef), 0.0)
                               for s in (1, -1)])
            return ConversionKinds(weight, np.array([1.0, -1.0]))
        return ConversionKinds(kinds.coef[None, :].copy(), np.ones(1))
    rows = [i for i in range(q) if kinds.pair[i] >= 0 or not np.any(kinds.pair == i)]
    weight = np.zeros((len(rows), q))
    for c, i in enumerate(rows):
        weight[c, i] = 1.0
        if kinds.pair[i] >= 0:
            weight[c, kinds.pair[i]] = -1.0
    return ConversionKinds(weight, kinds.coef[rows].astype(np.float64))


def weighting_ratios(weight: np.ndarray) -> np.ndarray:
    """Ratio of the weighting network's element on every column an analog slice read-out
    combines: ``|weight| / min |weight|`` over the nonzero weights of each row (a conversion),
    in unit mirror transistors or unit capacitors; 0 where a row reads fewer than two columns
    (a lone column, e.g. a 1-b weight, is scaled by the ADC's reference, not by a network) or
    columns of one magnitude (a weight's single differential pair: the read-out subtracts its
    two columns as a digital-slice chip's does, with nothing to weight; it was priced 1:1
    mirrors copying the whole read charge again, 1.7x the energy of the same conversions).

    ``weight`` is (rows, R) float: :class:`ConversionKinds` ``.weight`` or a programmed layer's
    ``conv_weight``. Integer-valued for the binary significances 2^(c·s) this applies to.
    """
    a = np.abs(np.asarray(weight, dtype=np.float64))
    nz = a > 0
    lo = np.where(nz, a, np.inf).min(axis=1, keepdims=True, initial=np.inf)
    hi = a.max(axis=1, keepdims=True, initial=0.0)
    return np.where(nz & (hi > lo), a / lo, 0.0)


@dataclass(frozen=True)
class InputPlanes:
    """DAC planes of a block of input vectors.

    Attributes
    ----------
    planes : (P, M, K) int16 (int32 for 16-bit planes)
        Value driven on row k for vector m in cycle p.
    sig : (P,) float64
        Significance of each plane (negative for the negative pass / sign plane).
    value_lo, value_hi : int
        Range any plane can take (the DAC's range, hardware-fixed).
    """

    planes: np.ndarray
    sig: np.ndarray
    value_lo: int
    value_hi: int


def plane_layout(chip: ChipConfig, signed: bool) -> tuple[np.ndarray, int, int]:
    """Significances ``(P,)`` and the DAC value range, without any data."""
    d, p, b = chip.dac_bits, chip.n_planes, chip.input_bits
    sig = 2.0 ** (d * np.arange(p))
    if not signed:
        return sig, 0, 2**d - 1
    if chip.dac.signed_inputs is SignedInputMode.TWO_PASS:
        # magnitudes have B-1 bits; both passes use the same DAC
        pm = -(-(b - 1) // d) if b > 1 else 1
        s = 2.0 ** (d * np.arange(pm))
        return np.concatenate([s, -s]), 0, 2**d - 1
    top_bits = b - d * (p - 1)  # the MSB plane holds the sign bit: a bipolar drive
    lo = -(2 ** (top_bits - 1))
    hi = 2**d - 1 if p > 1 else 2 ** (top_bits - 1) - 1
    return sig, lo, hi


def check_input_values(x_int: np.ndarray, chip: ChipConfig, signed: bool,
                       what: str = "x_int") -> np.ndarray:
    """``x_int`` as int64 if its dtype is an integer's and its values lie in the chip's input
    range (:func:`input_range`), else a ``ValueError`` naming ``what`` and the range."""
    x = np.asarray(x_int)
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{what} must have an integer dtype (quantized inputs), got {x.dtype}")
    lo, hi = input_range(chip, signed)
    if x.size:
        xmin, xmax = int(x.min()), int(x.max())
        if xmin < lo or xmax > hi:
            kind = "signed" if signed else "unsigned"
            raise ValueError(f"{what} values must lie in [{lo}, {hi}] for {kind} input_bits="
                             f"{chip.input_bits}; got [{xmin}, {xmax}]")
    return x.astype(np.int64, copy=False)


def input_planes(x_int: np.ndarray, chip: ChipConfig, signed: bool, *,
                 checked: bool = False) -> InputPlanes:
    """Cut integer inputs ``(M, K)`` into DAC planes (see :class:`InputPlanes`). Their dtype
    and range are checked (:func:`check_input_values`: 300 came back as 44 at 8 b, 2.9 as
    2) unless the caller did (``checked=True``: the engine, per chunk)."""
    x = (np.asarray(x_int, dtype=np.int64) if checked
         else check_input_values(x_int, chip, signed))
    d, p = chip.dac_bits, chip.n_planes
    sig, lo, hi = plane_layout(chip, signed)
    mask = (1 << d) - 1
    if signed and chip.dac.signed_inputs is SignedInputMode.TWO_PASS:
        pm = sig.shape[0] // 2
        pos, neg = np.maximum(x, 0), np.maximum(-x, 0)
        planes = [(pos >> (d * i)) & mask for i in range(pm)]
        planes += [(neg >> (d * i)) & mask for i in range(pm)]
    elif signed:
        # arithmetic shift keeps the sign in the top plane: x = Σ_p 2^(dp) · plane_p exactly
        planes = [(x >> (d * i)) & mask for i in range(p - 1)] + [x >> (d * (p - 1))]
    else:
        planes = [(x >> (d * i)) & mask for i in range(p)]
    dtype = np.int16 if max(abs(lo), abs(hi)) <= 32767 else np.int32
    return InputPlanes(np.stack(planes).astype(dtype), sig, lo, hi)

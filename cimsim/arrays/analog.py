"""The noise-free analog value of every conversion, from the GEMM's partial sums.

What the ADC of conversion c sees before noise: the positive GEMM column plus its off-state
current term, through the column non-linearity, minus the same for the negative column of an
analog differential pair. The fused kernel computes this inline; calibration and the studies
use this NumPy form (``cimsim.engine.analog_values``).
"""

from __future__ import annotations

import numpy as np

from ..config import NoiseConfig, Nonlinearity
from ._kernels import NL_IR_DROP, NL_NONE, NL_POLYNOMIAL, NL_SATURATING

__all__ = ["NL_CODES", "analog_from_partial_sums", "column_nonlinearity",
           "column_nonlinearity_slope", "column_transfer", "nonlinearity_args"]

NL_CODES = {
    Nonlinearity.NONE: NL_NONE,
    Nonlinearity.SATURATING: NL_SATURATING,
    Nonlinearity.POLYNOMIAL: NL_POLYNOMIAL,
    Nonlinearity.IR_DROP: NL_IR_DROP,
}
"""The kernels' integer code of each column non-linearity."""


def nonlinearity_args(noise: NoiseConfig, column_fs: float) -> dict:
    """The column non-linearity as the kernels' scalar arguments."""
    return dict(nl_kind=NL_CODES[noise.nonlinearity], nl_fs=max(column_fs, 1e-30),
                nl_sat=noise.saturation_fraction, nl_beta=noise.ir_drop_beta,
                nl_poly=np.asarray(noise.poly_coeffs, dtype=np.float64))


def column_nonlinearity(a, kind, fs, sat, beta, poly, xp=np):
    """``f_nl(a)`` of a column current ``a`` (cell-LSB), full scale ``fs``; ``xp``: the array
    module of ``a`` (``torch`` in the training twin and the torch backend)."""
    if kind == NL_SATURATING:
        return sat * fs * xp.tanh(a / (sat * fs))
    if kind == NL_POLYNOMIAL:
        # the kernel's running powers u², u³, ... (no pow; a zero coefficient adds nothing)
        return a + fs * _power_series(a / fs, poly, 2)
    if kind == NL_IR_DROP:
        return a / (1.0 + beta * xp.abs(a) / fs)
    return a


def _power_series(u, coeffs, first: int):
    """``Σ_i c_i · u^(first + i)`` by running products, the zero coefficients skipped."""
    acc = None
    un = u
    for _ in range(first - 1):
        un = un * u
    last = max((i for i, c in enumerate(coeffs) if c), default=-1)
    for i in range(last + 1):
        if coeffs[i]:
            term = coeffs[i] * un
            acc = term if acc is None else acc + term
        if i < last:
            un = un * u
    return 0.0 * u if acc is None else acc  # an array of u's shape and kind either way


def column_nonlinearity_slope(a, kind, fs, sat, beta, poly, xp=np):
    """``f_nl'(a)``, the derivative of :func:`column_nonlinearity` (1 where it is linear): the
    training twin's straight-through gradient follows it."""
    if kind == NL_SATURATING:
        t = xp.tanh(a / (sat * fs))
        return 1.0 - t * t
    if kind == NL_POLYNOMIAL:
        return 1.0 + _power_series(a / fs, [c * (i + 2) for i, c in enumerate(poly)], 1)
    if kind == NL_IR_DROP:
        d = 1.0 + beta * xp.abs(a) / fs
        return 1.0 / (d * d)
    return xp.ones_like(a)


def column_transfer(noise: NoiseConfig, column_fs: float, xp=np):
    """``(f, f')`` of the column non-linearity of a layer whose column full scale is
    ``column_fs``, as functions of an array of module ``xp``; None when it is linear."""
    if noise.nonlinearity is Nonlinearity.NONE:
        return None
    args = nonlinearity_args(noise, column_fs)
    shape = (args["nl_kind"], args["nl_fs"], args["nl_sat"], args["nl_beta"],
             tuple(float(c) for c in args["nl_poly"]))  # Python floats: no NumPy scalars
    return (lambda a: column_nonlinearity(a, *shape, xp=xp),
            lambda a: column_nonlinearity_slope(a, *shape, xp=xp))


def analog_from_partial_sums(ps, xsum, pos, neg, off_add, nl_kind, nl_fs, nl_sat, nl_beta,
                             nl_poly):
    """Noise-free analog value of every conversion: (P, Mc, Jg) partial sums -> (P, Mc, C).

    ``xsum`` (P, Mc) is Σ_k x_p[k] (or (P, 0) where no column has an off-current term).
    """
    ps = ps.astype(np.float64)
    xs = xsum[:, :, None] if xsum.shape[1] > 0 else 0.0
    a = column_nonlinearity(ps[:, :, pos] + off_add[pos] * xs, nl_kind, nl_fs, nl_sat,
                            nl_beta, nl_poly)
    has_neg = neg >= 0
    if not has_neg.any():
        return a
    negc = np.where(has_neg, neg, 0)
    b = column_nonlinearity(ps[:, :, negc] + off_add[negc] * xs, nl_kind, nl_fs, nl_sat,
                            nl_beta, nl_poly)
    return a - np.where(has_neg, b, 0.0)

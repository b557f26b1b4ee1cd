"""Straight-through estimators and LSQ gradient scaling (torch).

The twin (:mod:`cimsim.train.twin`) computes its forward exactly as the engine does, with
``round``, ``floor`` and ``clamp`` on the way. Their true derivatives are zero almost everywhere,
so training uses straight-through estimators (Bengio et al., 2013):

* :func:`round_ste` and :func:`floor_ste` pass the incoming gradient unchanged (derivative 1);
* ``torch.clamp`` already has the estimator training needs: derivative 1 inside ``[lo, hi]``
  (bounds included) and 0 outside, so values clipped by a quantizer or an ADC stop the gradient.

Learned step sizes follow LSQ (Esser et al., "Learned Step Size Quantization", ICLR 2020): the
step's gradient is multiplied by ``g = 1 / sqrt(n · Q_p)``, with ``n`` the number of values the
step quantizes and ``Q_p`` the largest positive code, so that step and weights learn at
comparable relative rates (:func:`grad_scale`, :func:`lsq_factor`).
"""

from __future__ import annotations

import math

import torch

__all__ = ["floor_ste", "grad_scale", "lsq_factor", "round_ste", "with_surrogate"]


class _StraightThrough(torch.autograd.Function):
    """``op(x)`` forward, derivative 1 backward."""

    @staticmethod
    def forward(ctx, x, op):  # noqa: D102
        return op(x)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return grad, None


class _GradScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):  # noqa: D102
        ctx.save_for_backward(torch.as_tensor(scale, dtype=x.dtype, device=x.device))
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (scale,) = ctx.saved_tensors
        return grad * scale, None


# autograd Functions rather than the ``x + (f(x) - x).detach()`` idiom: that sum is not
# always bit-equal to f(x), and the twin must equal the engine code for code.
def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``torch.round(x)`` (half to even, as NumPy's ``rint``) with derivative 1."""
    return _StraightThrough.apply(x, torch.round)


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """``torch.floor(x)`` with derivative 1."""
    return _StraightThrough.apply(x, torch.floor)


def grad_scale(x: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """``x`` in the forward (bit for bit); its gradient multiplied by ``scale`` (broadcast to
    ``x``) in the backward."""
    return _GradScale.apply(x, scale)


def lsq_factor(n_values: float, q_p: float) -> float:
    """LSQ gradient scale ``1 / sqrt(n · Q_p)`` (Esser et al., ICLR 2020, §2.2).

    ``n_values``: how many values one step quantizes; ``q_p``: the largest positive code (at
    least 1, so that an unsigned 1-bit quantizer still gets a finite factor).
    """
    return 1.0 / math.sqrt(max(float(n_values), 1.0) * max(float(q_p), 1.0))


def with_surrogate(exact: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``exact`` in the forward, the gradient of ``surrogate`` in the backward.

    ``exact`` is detached; ``surrogate`` must broadcast to it. Used where an integer is split
    into digits or planes (no gradient of its own) but the split must still pass the gradient
    of the whole number on.
    """
    return exact.detach() + (surrogate - surrogate.detach())

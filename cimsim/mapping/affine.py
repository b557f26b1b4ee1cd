"""Modules that are a Linear in all but name: mapped as one.

Models hold linear maps in modules torch does not call ``nn.Linear``: HuggingFace GPT-2's
``Conv1D`` (the weight stored (in, out), computed by ``torch.addmm(b, x, W)``), a hand-written
``x @ self.weight.T + self.bias``, an ``nn.Linear`` subclass whose ``forward`` only logs or
reshapes around ``F.linear``. Left as they are, their weights compute in float (listed by the
functional watch): a GPT-2 would put nothing on the arrays.

:func:`affine_source` recognises such a module by what it computes, not by its name: a
weight-holding leaf (a 2-D ``weight``, an optional 1-D ``bias``, nothing else: no buffers, no
submodules) whose ``forward``, probed on random inputs in eval mode, equals ``F.linear(x, W,
b)`` with ``W`` its weight or the weight's transpose. Then ``deploy`` maps it as that
``nn.Linear`` (``SimLinear``) and ``prepare`` trains it as one (``TwinLinear``, giving the
learned weight back in the module's own layout); the layer keeps its name, its hooks and its
configuration attributes. A module that computes anything else with its weight (a standardized
or fake-quantized weight, a scaling, an activation) fails the probe and stays as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import skip_init

__all__ = ["AffineSource", "affine_source"]

_PROBE_SEED = 0x5EED
_RTOL = 1e-4  # of the output's scale: float32 sums in another order agree to ~1e-6


@dataclass(frozen=True)
class AffineSource:
    """A module found to compute ``F.linear(x, linear.weight, linear.bias)``: ``linear`` is
    that layer (a new ``nn.Linear`` holding copies), ``transposed`` whether the module stores
    the weight (in, out)."""

    linear: nn.Linear
    transposed: bool

    def module_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """A weight of the Linear's layout (out, in) in the module's own layout."""
        return weight.t() if self.transposed else weight


def affine_source(module: nn.Module) -> AffineSource | None:
    """The ``nn.Linear`` that ``module`` computes, or None (module docstring)."""
    if isinstance(module, torch.jit.ScriptModule) or next(module.children(), None) is not None:
        return None
    params = dict(module.named_parameters(recurse=False))
    if set(params) not in ({"weight"}, {"weight", "bias"}):
        return None
    if next(module.buffers(), None) is not None:  # state the probe would not see
        return None
    w, b = params["weight"], params.get("bias")
    if w.dim() != 2 or not w.is_floating_point() or (b is not None and b.dim() != 1):
        return None
    for transposed in (False, True):
        w_eff = w.t() if transposed else w
        if b is not None and b.shape[0] != w_eff.shape[0]:
            continue
        if w_eff.shape[1] < 2:
            # one input feature: ``x * w`` (a per-feature scale broadcast over a (1, n)
            # weight) is then also an outer product, a Linear of width 1 that the module's
            # real inputs would not fit
            continue
        if _computes(module, w_eff, b):
            # skip_init: no initialisation, so the caller's random state is untouched
            linear = skip_init(nn.Linear, w_eff.shape[1], w_eff.shape[0], bias=b is not None,
                               device=w.device, dtype=w.dtype)
            with torch.no_grad():
                linear.weight.copy_(w_eff)
                if b is not None:
                    linear.bias.copy_(b)
            linear.train(module.training)
            return AffineSource(linear, transposed)
    return None


def _computes(module: nn.Module, w: torch.Tensor, b: torch.Tensor | None) -> bool:
    """Whether ``module.forward`` equals ``F.linear(x, w, b)`` on two random inputs of two
    ranks (a local generator: the caller's random state is untouched; ``forward`` itself, so
    the user's hooks do not see the probes)."""
    gen = torch.Generator(device=w.device).manual_seed(_PROBE_SEED)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            for shape in ((5, w.shape[1]), (2, 3, w.shape[1])):
                x = torch.randn(shape, generator=gen, device=w.device, dtype=w.dtype)
                try:
                    y = module.forward(x)
                except Exception:  # any refusal of the probe: not this map
                    return False
                want = F.linear(x, w, b)
                if not isinstance(y, torch.Tensor) or y.shape != want.shape:
                    return False
                scale = float(want.abs().max()) or 1.0
                if not torch.allclose(y, want, rtol=0.0, atol=_RTOL * scale):
                    return False
    finally:
        module.train(was_training)
    return True

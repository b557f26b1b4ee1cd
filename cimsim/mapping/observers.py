"""Quantization observers left running in a model to deploy.

An eager-mode QAT model keeps ``torch.ao.quantization.FakeQuantize`` modules; eval() does not
stop their observers (a separate flag), so each forward moves their ranges: the calibration
pass and every simulated inference then change the model, and the same input gives another
output on the next call. That is the model's own behaviour (its float forward does it too),
so it is named, not changed.
"""

from __future__ import annotations

import warnings

from torch import nn
from torch.ao.quantization import FakeQuantizeBase


def warn_observing_fake_quant(model: nn.Module, who: str) -> None:
    """Warn, naming them, of FakeQuantize modules whose observer is on."""
    live = [name or "model" for name, m in model.named_modules()
            if isinstance(m, FakeQuantizeBase) and bool(getattr(m, "observer_enabled", 0))]
    if live:
        warnings.warn(
            f"{who}: {', '.join(live)} (FakeQuantize) observe(s) every forward, eval mode "
            f"included, so their ranges move with each calibration and simulated call and the "
            f"same input gives another output next time: freeze them first "
            f"(model.apply(torch.ao.quantization.disable_observer))", UserWarning, stacklevel=3)

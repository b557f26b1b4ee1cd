"""Inference on torch: ``cimsim.deploy(..., backend="torch", device="cuda")``.

Each mapped matrix keeps its programmed parts (the same ``EngineView`` the Numba engine
runs), and its conversions are computed by the training twin's arrays-and-ADC path
(``cimsim.train.twin.TwinMatmul``, built from that view, nothing learned) on the device: the
programmed devices (variation and faults, the view's seed), the off-state current, the
conversion noise (thermal, per-cell read, comparator: torch draws on the device, so the same
distribution as the engine's, not the same draws), the ADC tables and the shift-add.

What the run did is counted as the engine counts it, so the report is the same: the static
events from the shapes (``engine._static_events``), the data-dependent ones from the input
planes (DAC pulses, cell reads, Σ x²·G and Σ |x|·G: ``engine._add_plane_events``), and the clipped
conversions against the tables' clip bounds. The float parts of the model (BatchNorm, ReLU,
attention's softmax ...) stay where the ``SimModel`` runs them, on the CPU.

Not covered (a ``ConfigError`` at deploy, naming the setting): what the twin does not model —
column non-linearity, an activation zero point, smoothing, an ADC fused with the activation.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import engine
from ..config import ChipConfig
from ..errors import ConfigError
from ..events import Events
from .matrix import EngineView

__all__ = ["BACKENDS", "TorchMatmul", "check_backend"]

BACKENDS = ("numba", "torch")


def check_backend(backend: str, device: str | torch.device | None, chip: ChipConfig) -> None:
    """Refuse a backend, device or chip the torch backend cannot run (ConfigError)."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend = {backend!r} is invalid; allowed: "
                          + ", ".join(repr(b) for b in BACKENDS))
    if backend == "numba":
        if device not in (None, "cpu"):
            raise ConfigError(f"device = {device!r} needs backend = 'torch' (the Numba engine "
                              "runs on the CPU)")
        return
    try:
        dev = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device = {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device = {device!r}: torch sees no CUDA device here")
    from ..train.twin import check_chip

    try:
        check_chip(chip)  # what the twin does not model, by the field's name
    except ConfigError as exc:  # say which option of deploy it is, and what else runs it
        raise ConfigError(f"backend = 'torch' runs the training twin's arrays: {exc}; or "
                          "run this chip with backend = 'numba'") from None


class TorchMatmul:
    """One mapped matrix's programmed parts, run on a torch device.

    ``run(x_int)`` returns one :class:`cimsim.engine.RunResult` per part, as
    ``engine.run_detailed`` gives them for ``x_int[:, a:b]`` of each part.
    """

    def __init__(self, weight: np.ndarray, view: EngineView, device: str | torch.device,
                 name: str = ""):
        from ..train.twin import TwinMatmul, TwinOptions

        # zero points, smoothing and column non-linearity: refused by the twin (check_chip)
        if view.activation is not None:
            raise ConfigError("backend = 'torch' does not model an ADC fused with the "
                              "activation (adc.fuse_activation = true) yet; allowed: false, "
                              "or the numba backend")
        self.device = torch.device(device)
        opts = TwinOptions(learn_weight_scale=False, learn_act_scale=False,
                           learn_adc_step=False, train_noise=True, fused_kernel=False,
                           devices="programmed")
        w = torch.as_tensor(np.asarray(weight, dtype=np.float64))
        twin = TwinMatmul(w, None, view, opts, name).to(self.device)
        twin.requires_grad_(False)
        # training mode switches the conversion noise on; nothing else differs in inference
        twin.train()
        bounds = [layer.adc.clip_bounds(view.chip.adc.n_codes) for _, _, layer in view.parts
                  if layer.adc is not None]
        twin.clip_bounds = tuple(  # type: ignore[assignment]
            torch.as_tensor(np.concatenate(b), dtype=torch.float64, device=self.device)
            for b in zip(*bounds, strict=True))
        self.twin = twin
        self.view = view
        self.w_int = torch.as_tensor(view.w_int, dtype=torch.float64, device=self.device)
        self._rowsum = [torch.as_tensor(layer.cell_rowsum, dtype=torch.float64,
                                        device=self.device) for _, _, layer in view.parts]

    def run(self, x_int: np.ndarray) -> list[engine.RunResult]:
        """Integer inputs (M, K) -> the result of every part (integer domain)."""
        view, twin = self.view, self.twin
        x = torch.as_tensor(np.asarray(x_int, dtype=np.float64), device=self.device)
        m = x.shape[0]
        ratio = torch.ones_like(twin._adc_delta0)
        with torch.no_grad():
            from ..train.twin import _ChipProduct

            y = _ChipProduct.apply(x, self.w_int, ratio, twin)  # (T, M, N)
            planes = twin.planes  # (P, M, K), as the twin drove the arrays
            assert planes is not None
            n_planes = twin.n_planes
            clips = twin.clips
            group_part = twin._group_part
            results = []
            for t, (a, b, layer) in enumerate(view.parts):
                ev = engine._static_events(layer, m, n_planes)
                pl = planes[..., a:b]
                active = float(torch.count_nonzero(pl))
                v2g = float((pl * pl).sum(dim=(0, 1)) @ self._rowsum[t])
                engine._add_plane_events(layer, active, v2g, *engine._v1g(pl, layer), ev)
                n_clip = 0 if clips is None else int(clips[group_part == t].sum())
                results.append(engine.RunResult(
                    y=y[t].cpu().numpy(), events=Events(ev), n_clipped=n_clip,
                    n_conversions=m * n_planes * layer.n_groups * layer.n_conversions))
        return results

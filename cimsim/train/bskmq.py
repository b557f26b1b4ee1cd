"""BS-KMQ fine-tuning: low-bit QAT through a nonlinear ADC that is the layer's activation.

Dong, Yang, Zhou, Shang, Datta and Basu, "In-Memory ADC-Based Nonlinear Activation
Quantization" (arXiv 2603.10540, 2026). A ramp NL-ADC at the layer output fused with the
ReLU (``adc.placement = 'layer_output'``, ``adc.fuse_activation``, ``cimsim.adc.activation``)
outputs ``levels[#(thresholds <= y)]`` of the layer's pre-activation y, with levels in
[0, a_max]: the ReLU (and clamp) and the quantizer in one step. Two paths, for two questions:

**On the chip** (:func:`prepare_bskmq`, :func:`finetune_chip`, :func:`refit_chip_levels`; what
``cimsim train --method bskmq`` runs): the training twin (``cimsim.train.prepare``) of a chip
with a fused layer-output ADC is that chip: the layer's weights quantized to the chip's
``weight_bits`` on the arrays (the twin's digits), the conversion through the NL-ADC's
thresholds and levels, which are the activation (``TwinMatmul.activation``; the model's ReLU
after the layer is then the identity, ``cimsim.train.twin.FusedReLU``), the straight-through
estimator (gradient 1 on [0, a_max], 0 outside). The levels are fitted per layer (per unit of
``adc.calibration_granularity``) by the function deploy fits them with
(:func:`cimsim.adc.activation.fit_activation_levels`, any of the six fitters of
:func:`cimsim.adc.levels.fit_levels`), and either **frozen** or **refit** after every epoch on
the current model's pre-activations (each layer on the inputs the chip feeds it, the layers
before it refit first). ``prepared.deploy()`` hands the fine-tuned chip to the engine as is.

**Float weights** (:class:`NLActivation`, :func:`attach_nl_activations`, :func:`finetune`):
the model's ``nn.ReLU`` modules replaced by the NL-ADC activation, the weights in float. It
isolates the activation quantizer (the fitters' activation error, ``docs/bskmq-study.md``'s
post-training columns) from the weight and input quantization of the chip; it is not the
chip's forward.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._inputs import input_count
from ..adc.levels import FitMethod, Levels, fit_levels, quantization_mse
from ..config import ChipConfig, LevelFit, as_chip
from ..errors import ConfigError
from ..mapping.deploy import Arguments, replayable
from ..mapping.matrix import InputStats
from ..mapping.unmappable import deepcopy
from ._data import batch_dim_of, batch_first, model_batches
from ._modes import module_modes, restore_modes
from .loop import (
    as_tensors,
    check_lr,
    check_positive_int,
    cross_entropy_of,
    lr_schedule,
    param_groups,
    train_epoch,
)
from .twin import PreparedModel, TwinMatmul, prepare

__all__ = ["NLActivation", "activation_nmse", "attach_nl_activations", "finetune", "finetune_chip",
           "fused_twins", "nl_activations", "prepare_bskmq", "refit_chip_levels", "refit_levels",
           "relu_model"]

#: Calibration values kept per activation for fitting (evenly spaced): enough for 2-4 bits.
MAX_FIT_SAMPLES = 200_000


class NLActivation(nn.Module):
    """A ReLU quantized by a ``bits``-bit NL-ADC: ``levels[#(thresholds <= clamp(y, 0, a_max))]``
    with the straight-through estimator."""

    thresholds: torch.Tensor
    levels: torch.Tensor

    def __init__(self, bits: int, method: FitMethod | str, params: dict | None = None):
        super().__init__()
        self.bits = check_positive_int("bits", bits)
        try:
            self.method = FitMethod(method)
        except ValueError:
            raise ConfigError(f"level fit = {method!r} is invalid; allowed: "
                              f"{[m.value for m in FitMethod]}") from None
        self.params = dict(params or {})
        self.register_buffer("thresholds", torch.zeros(2 ** bits - 1))
        self.register_buffer("levels", torch.zeros(2 ** bits))
        self.a_max = 0.0
        self.fitted = False
        self.recording = False
        self._samples: list[np.ndarray] = []

    def fit(self, samples: np.ndarray) -> Levels:
        """Fit the levels to post-ReLU values (a_max = their maximum)."""
        x = np.asarray(samples, dtype=np.float64).ravel()
        if x.size > MAX_FIT_SAMPLES:
            x = x[np.linspace(0, x.size - 1, MAX_FIT_SAMPLES).astype(np.int64)]
        self.a_max = float(max(x.max(), 1e-12))
        lv = fit_levels(x, self.bits, self.method, lo=0.0, hi=self.a_max, **self.params)
        self.thresholds = torch.tensor(lv.thresholds, dtype=self.thresholds.dtype,
                                          device=self.thresholds.device)
        self.levels = torch.tensor(lv.levels, dtype=self.levels.dtype,
                                      device=self.levels.device)
        self.fitted = True
        return lv

    def as_levels(self) -> Levels:
        return Levels(self.thresholds.double().cpu().numpy(), self.levels.double().cpu().numpy())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.recording:
            y = F.relu(x)
            self._samples.append(y.detach().double().cpu().numpy().ravel())
            return y
        if not self.fitted:
            raise ConfigError("NLActivation used before its levels were fitted "
                              "(attach_nl_activations / refit_levels)")
        y = torch.clamp(x, 0.0, self.a_max)
        thr, lvl = self.thresholds.to(x.dtype), self.levels.to(x.dtype)
        q = lvl[torch.searchsorted(thr, y.detach().contiguous(), right=True)]
        return q + (y - y.detach())  # exactly the level; the gradient of y

    def extra_repr(self) -> str:
        return f"bits={self.bits}, method={self.method.value}, a_max={self.a_max:.4g}"


def nl_activations(model: nn.Module) -> dict[str, NLActivation]:
    """name -> every :class:`NLActivation` of ``model``."""
    return {n: m for n, m in model.named_modules() if isinstance(m, NLActivation)}


def refit_levels(model: nn.Module, calibration: torch.Tensor, *, batch_size: int = 256
                 ) -> dict[str, float]:
    """Refit every :class:`NLActivation` on the post-ReLU values the current model computes on
    ``calibration`` (the layers before it quantized as they are now: each is refit in order,
    one calibration pass per activation). Returns each one's quantization MSE on its samples."""
    # (0 was range()'s bare error, and no input NumPy's "need at least one array")
    batch_size = check_positive_int("batch_size", batch_size)
    _check_calibration(calibration)
    out: dict[str, float] = {}
    acts = nl_activations(model)
    for name, act in acts.items():
        # the earlier activations quantize as fitted; the pass stops at this one
        act.recording, act._samples = True, []
        modes = module_modes(model)  # each module's own flag, restored after
        model.eval()
        try:
            with torch.no_grad():
                for i in range(0, calibration.shape[0], batch_size):
                    _forward_until(model, calibration[i:i + batch_size], act)
            samples = np.concatenate(act._samples)
        finally:
            act.recording, act._samples = False, []
            restore_modes(modes)
        out[name] = quantization_mse(samples, act.fit(samples))
    return out


class _Stop(Exception):
    pass


def _forward_until(model: nn.Module, x: torch.Tensor | tuple, act: nn.Module) -> None:
    """Run ``model`` on ``x`` (an input or a tuple of them) until ``act`` has run (the later
    layers are not needed)."""
    def stop(_m, _i, _o):
        raise _Stop

    handle = act.register_forward_hook(stop)
    try:
        if isinstance(x, Arguments):
            model(*x, **x.kwargs)
        elif isinstance(x, tuple):
            model(*x)
        else:
            model(x)
    except _Stop:
        pass
    finally:
        handle.remove()


def attach_nl_activations(model: nn.Module, bits: int, method: FitMethod | str,
                          calibration: torch.Tensor, *, params: dict | None = None,
                          batch_size: int = 256) -> nn.Module:
    """A copy of ``model`` whose ``nn.ReLU`` modules are NL-ADC activations, fitted layer by
    layer on ``calibration`` (each on the values it sees with the earlier ones quantized).

    Parameters
    ----------
    model : nn.Module
        Its ReLUs must be ``nn.ReLU`` modules, each used once (the digits CNN).
    bits : int
    method : str
        ``uniform``, ``lloyd_max``, ``cdf``, ``kmeans``, ``kmeans_optimal`` or ``bs_kmq``.
    calibration : tensor
        Inputs of the model the levels are fitted on.
    params : dict, optional
        Fitter parameters (``bs_kmq`` without boundary suppression: ``{"min_mass": 1.0}``).
    batch_size : int
        Inputs per forward pass of the fitting.
    """
    out = deepcopy(model)
    n = 0
    for parent in list(out.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                parent._modules[child_name] = NLActivation(bits, method, params)
                n += 1
    if n == 0:
        raise ConfigError("attach_nl_activations: the model has no nn.ReLU module")
    refit_levels(out, calibration, batch_size=batch_size)
    return out


def relu_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose :class:`NLActivation` s are plain ``nn.ReLU`` again (the
    fine-tuned weights, e.g. for ``cimsim.deploy`` on a chip whose ADC does the quantizing)."""
    out = deepcopy(model)
    for parent in list(out.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, NLActivation):
                parent._modules[child_name] = nn.ReLU()
    return out


def finetune(model: nn.Module, data, *, epochs: int = 3, lr: float = 1e-3,
             batch_size: int = 64, refit: bool = False,
             calibration: torch.Tensor | None = None, seed: int = 0, progress: bool = False,
             loss_fn: Callable[..., torch.Tensor] | None = None,
             schedule: str = "constant") -> dict:
    """Fine-tune ``model`` (with :class:`NLActivation` s) on labelled ``data = (x, y)`` with
    cross-entropy and Adam (its rate's ``schedule``: ``constant`` or ``cosine``,
    :func:`~cimsim.train.loop.lr_schedule`); the levels frozen (``refit=False``) or refit on
    ``calibration`` after every epoch (``refit=True``).

    Returns
    -------
    dict
        ``loss``: mean training loss per epoch; ``refit_mse``: per epoch, each activation's
        quantization MSE after refitting (empty when frozen).
    """
    epochs, lr, (x, y) = _check_run("finetune", epochs, lr, data, refit, calibration)
    if not nl_activations(model):
        raise ConfigError("finetune: the model has no NLActivation (attach_nl_activations)")
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)

    def refit_all() -> dict[str, float]:
        assert calibration is not None  # _check_run
        return refit_levels(model, calibration)

    return _run(model, (x, y), opt, refit_all if refit else None, epochs=epochs,
                batch_size=batch_size, seed=seed, progress=progress, loss_fn=loss_fn,
                desc="BS-KMQ fine-tuning", key="refit_mse", schedule=schedule)


def _check_run(name: str, epochs: int, lr: float, data, refit: bool, calibration,
               batch_dim: int = 0) -> tuple[int, float, tuple[torch.Tensor, torch.Tensor]]:
    epochs = check_positive_int("epochs", epochs)
    lr = check_lr(lr)
    tensors = as_tensors("data", data)
    if len(tensors) < 2:  # unpacking it was a bare ValueError
        raise ConfigError(f"{name}: data must be (inputs, labels); got {len(tensors)} tensor")
    x, y = tensors[:2]
    if refit and calibration is None:
        raise ConfigError(f"{name}(refit=True) needs calibration inputs")
    if refit:  # before the first epoch, not after it
        _check_calibration(calibration, batch_dim)
    return epochs, lr, (x, y)


def _check_calibration(calibration: Any, batch_dim: int = 0) -> None:
    """A ConfigError if ``calibration`` holds no input (what is no input at all is left to
    the pass that reads it)."""
    try:
        empty = input_count(calibration, batch_dim) == 0
    except (TypeError, ValueError):  # not inputs: refused by the pass that reads them
        return
    if empty:
        raise ConfigError("calibration is empty")


def _run(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor],
         opt: torch.optim.Optimizer, refit: Callable[[], dict[str, float]] | None, *,
         epochs: int, batch_size: int, seed: int, progress: bool,
         loss_fn: Callable[..., torch.Tensor] | None, desc: str, key: str,
         schedule: str) -> dict:
    """The epochs of both fine-tunings: cross-entropy (or ``loss_fn``) at the rate
    ``schedule``, ``refit`` after each epoch (its result kept under ``key``), the model left
    in eval."""
    loss_fn = loss_fn or cross_entropy_of(model)
    scheduler = lr_schedule(opt, schedule, epochs=epochs, n=int(data[0].shape[0]),
                            batch_size=batch_size)
    hist: dict[str, list] = {"loss": [], key: []}
    try:
        for e in range(epochs):
            hist["loss"].append(train_epoch(model, data, loss_fn, opt, batch_size=batch_size,
                                            seed=seed, epoch=e, progress=progress, desc=desc,
                                            scheduler=scheduler))
            if refit is not None:
                hist[key].append(refit())
    finally:
        model.eval()  # a failed run too (a diverged loss left it training, its twins noisy)
    return hist


# --------------------------------------------------------------------------------------------
# On the chip: the training twin with a fused layer-output NL-ADC
# --------------------------------------------------------------------------------------------
def fused_twins(prepared: PreparedModel) -> dict[str, TwinMatmul]:
    """name -> every twin whose layer-output ADC is its activation, in model order."""
    return {name: t for name, t in prepared.twins() if t.activation is not None}


def prepare_bskmq(model: nn.Module, chip: ChipConfig | str | Path, calibration, *,
                  level_fit: FitMethod | str | None = None, params: dict | None = None,
                  seed: int = 0, batch_size: int = 256, **options) -> PreparedModel:
    """The training twin of ``model`` on ``chip`` with its ReLUs in the layer-output ADCs.

    ``chip`` needs ``adc.placement = 'layer_output'``, ``adc.fuse_activation`` and
    ``range_policy = 'calibrated'`` (a ``ramp`` ADC for nonlinear levels); ``level_fit``
    overrides ``adc.level_fit``. The levels are fitted as ``cimsim.deploy`` fits them (the
    float calibration pass); with ``params`` (e.g. ``{"min_mass": 1.0}``: BS-KMQ without
    boundary suppression) they are refit with them on the chip's own activations
    (:func:`refit_chip_levels`), since deploy has no fitter parameters. ``options``: those of
    ``cimsim.train.prepare``.
    """
    chip, calibration = as_chip(chip), replayable(calibration)  # read twice
    if level_fit is not None:  # a bad name is the config's ConfigError
        chip = chip.replace(adc=chip.adc.replace(level_fit=str(getattr(level_fit, "value",
                                                                       level_fit))))
    elif chip.adc.level_fit is not LevelFit.BS_KMQ:
        # the chip's fitter, by default 'uniform': a user running "BS-KMQ" compared uniform
        # levels without a word (the CLI's example settings named no fitter)
        warnings.warn(f"BS-KMQ on the chip: chip {chip.name} has adc.level_fit = "
                      f"{chip.adc.level_fit.value!r}, so the levels are fitted by that method, "
                      "not by BS-KMQ; pass level_fit='bs_kmq' (--set adc.level_fit=bs_kmq) for the "
                      "paper's levels, or level_fit= that fitter to compare with it",
                      UserWarning, stacklevel=2)
    prepared = prepare(model, chip, calibration, seed=seed, batch_size=batch_size, **options)
    if not fused_twins(prepared):
        raise ConfigError(_no_fused_reason(prepared, chip))
    if params:
        refit_chip_levels(prepared, calibration, params=params, batch_size=batch_size)
    return prepared


def _no_fused_reason(prepared: PreparedModel, chip: ChipConfig) -> str:
    """Why no layer of ``prepared`` has its ADC as its activation: the chip's settings, or
    (the chip being set for it) the model's layers, named."""
    adc = chip.adc
    wrong = [f"{field} = {value!r}" for field, value, ok in (
        ("adc.placement", adc.placement.value, adc.placement.value == "layer_output"),
        ("adc.fuse_activation", adc.fuse_activation, adc.fuse_activation),
        ("adc.range_policy", adc.range_policy.value, adc.range_policy.value == "calibrated"))
        if not ok]
    if wrong:
        return (f"BS-KMQ on the chip: chip {chip.name} has {', '.join(wrong)}; BS-KMQ needs "
                "adc.placement = 'layer_output', adc.fuse_activation = true and "
                "adc.range_policy = 'calibrated' (a 'ramp' ADC for nonlinear levels)")
    names = [name for name, _ in prepared.twins()]
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    return ("BS-KMQ on the chip: the chip is set for it, but no mapped layer's output goes "
            "only to a ReLU the ADC can be (an nn.ReLU/ReLU6 module or an F.relu call on that "
            "output alone, found by torch.fx, or the next module of an nn.Sequential where the "
            "model does not trace); GELU, SiLU, Hardswish and the activation inside "
            f"nn.Transformer layers are not; mapped layers: {shown or 'none'}")


def refit_chip_levels(prepared: PreparedModel, calibration, *, method: FitMethod | str | None
                      = None, params: dict | None = None, batch_size: int = 256
                      ) -> dict[str, float]:
    """Refit every fused activation's levels on the current model's pre-activations.

    ``calibration`` holds the model's inputs as ``prepare``'s does (a tensor, or a tuple of
    every positional input), cut along the ``batch_dim`` the model was prepared with.
    Layer by layer in model order: one pass of ``calibration`` through ``prepared`` in eval
    mode (noise off; the layers before it already refit) records the layer's inputs (deploy's
    reservoir sample, ``InputStats``), then :meth:`TwinMatmul.fit_activation` fits the levels
    to the analog values the chip computes from them (the current weights and scales),
    with ``method`` (default ``adc.level_fit``) and ``params``.

    Returns
    -------
    dict
        Per fused matrix: the quantization MSE of its new levels on the recorded
        post-activation values, relative to their variance (NMSE).
    """
    out: dict[str, float] = {}
    twins = fused_twins(prepared)
    batches = list(model_batches(prepared, calibration, batch_size))
    if not batches:
        raise ConfigError("calibration is empty")
    modes = module_modes(prepared)  # each module's own flag, restored after
    prepared.eval()
    try:
        for name, twin in twins.items():
            stats = InputStats(twin.seed)
            handle = twin.register_forward_pre_hook(
                lambda _m, args, st=stats, n=name: st.observe(
                    args[0].detach().to("cpu", torch.float64).numpy(), n))
            try:
                with torch.no_grad():
                    for args in batches:
                        _forward_until(prepared, args, twin)
            finally:
                handle.remove()
            assert stats.sample is not None
            twin.fit_activation(stats.sample, method=method, params=params)
            out[name] = activation_nmse(twin, stats.sample)
    finally:
        restore_modes(modes)
    return out


def activation_nmse(twin: TwinMatmul, x: np.ndarray) -> float:
    """MSE of the fused activation against the ReLU of the chip's pre-activation on inputs
    ``x`` (noise off), relative to that ReLU's variance (clipping above a_max counts)."""
    was = twin.training
    twin.eval()
    try:
        with torch.no_grad():
            y, raw = twin.pre_activation(torch.from_numpy(x).to(twin.weight.device,
                                                                  twin.weight.dtype))
            q = twin._activation_out(y, raw).double()
    finally:
        twin.train(was)
    ref = torch.relu(y.double())
    var = float(ref.var())
    return float(((q - ref) ** 2).mean()) / var if var > 0 else 0.0


def finetune_chip(prepared: PreparedModel, data, *, epochs: int = 3, lr: float = 1e-3,
                  batch_size: int = 64, refit: bool = False, calibration=None,
                  method: FitMethod | str | None = None, params: dict | None = None,
                  seed: int = 0, progress: bool = False,
                  loss_fn: Callable[..., torch.Tensor] | None = None,
                  schedule: str = "constant") -> dict:
    """BS-KMQ fine-tuning on the chip: QAT of ``prepared`` (from :func:`prepare_bskmq`) on
    labelled ``data = (x, y)`` (x cut along the model's ``batch_dim``, y batch-first) with
    cross-entropy (or ``loss_fn(x, y)``) and Adam (``param_groups``: the learned
    scales at their own rate; its ``schedule``, ``constant`` or ``cosine``), the
    straight-through estimator through the fused NL-ADCs; the
    levels frozen (``refit=False``) or refit on ``calibration`` after every epoch
    (:func:`refit_chip_levels` with ``method`` / ``params``).

    Returns
    -------
    dict
        ``loss``: mean training loss per epoch; ``refit_nmse``: per epoch, each fused layer's
        activation NMSE after refitting (empty when frozen).
    """
    if batch_dim_of(prepared) and isinstance(data, (tuple, list)) and data \
            and isinstance(data[0], torch.Tensor):
        # a sequence-first model is cut along its batch (it used to be cut along time); y is
        # batch-first already
        x0, restore = batch_first(prepared, data[0])
        data = (x0, *data[1:])
        base = loss_fn or cross_entropy_of(prepared)
        loss_fn = lambda xb, yb: base(restore(xb), yb)  # noqa: E731
    epochs, lr, (x, y) = _check_run("finetune_chip", epochs, lr, data, refit, calibration,
                                    batch_dim_of(prepared))
    if not fused_twins(prepared):
        raise ConfigError("finetune_chip: no fused layer-output ADC (prepare_bskmq)")
    opt = torch.optim.Adam(param_groups(prepared, lr))
    return _run(prepared, (x, y), opt,
                (lambda: refit_chip_levels(prepared, calibration, method=method,
                                           params=params)) if refit else None,
                epochs=epochs, batch_size=batch_size, seed=seed, progress=progress,
                loss_fn=loss_fn, desc="BS-KMQ fine-tuning (chip)", key="refit_nmse",
                schedule=schedule)

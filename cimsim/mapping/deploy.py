"""``deploy(model, chip, calibration)``: a copy of a torch model whose matrix work runs on the
simulated chip. Linear, Conv1d/2d/3d, ConvTranspose1d/2d/3d, RNN/LSTM/GRU (layers and cells)
and MultiheadAttention projections are mapped; every other module runs in torch as before; layers
that hold weights but cannot be mapped (or that the user excludes) stay digital and are listed
with the reason (a ``UserWarning`` names those whose type is not supported).
"""

from __future__ import annotations

import contextlib
import fnmatch
import inspect
import logging
import math
import numbers
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.parameter import UninitializedParameter
from torch.nn.utils.rnn import PackedSequence
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm
from tqdm.auto import tqdm

from .._eager import eager
from .._inputs import counting_key, input_count, sample_dim
from .._progress import bar_disabled
from .._seed import check_flag, check_seed
from .._warn import warn_user
from ..arrays.drift import check_time, warn_static_time
from ..arrays.program import n_arrays_for_shape
from ..config import (
    ADCPlacement,
    CalibrationMode,
    ChipConfig,
    DriftCompensation,
    RangePolicy,
    as_chip,
)
from ..errors import CapacityError, MappingError
from ..events import Action, Component, Events, event_key
from ..work import LayerWork, ModelWork
from .affine import affine_source
from .convnd import SimConv3d, SimConvTranspose
from .functional import (
    higher_order_error,
    refuse_tracing,
    warn_functional,
    watch_functional_weights,
)
from .layers import (
    FEW_CODES,
    CodeFlags,
    CoreTrace,
    MatmulCore,
    Root,
    SimConv,
    SimLayer,
    SimLinear,
    SimMultiheadAttention,
    adc_codes_used,
    layer_seed,
    refuse_mapped_state,
)
from .matrix import EngineView
from .naming import finalize_layers, refuse_nonfinite_weights
from .observers import warn_observing_fake_quant
from .recurrent import SimRNN, SimRNNCell
from .unmappable import (
    calibration_state,
    copy_model,
    explain_stop_iteration,
    kept_digital_row,
    keywords_not_taken,
    overridden_forward,
    source_config,
)
from .weight_view import tensor_metas

__all__ = ["deploy", "deploy_views", "SimModel"]

log = logging.getLogger(__name__)

_MAPPED: dict[type, type[SimLayer]] = {
    nn.Linear: SimLinear,
    nn.Conv1d: SimConv,
    nn.Conv2d: SimConv,
    nn.MultiheadAttention: SimMultiheadAttention,
    nn.Conv3d: SimConv3d,
    nn.ConvTranspose1d: SimConvTranspose,
    nn.ConvTranspose2d: SimConvTranspose,
    nn.ConvTranspose3d: SimConvTranspose,
    nn.RNNBase: SimRNN,
    nn.RNNCellBase: SimRNNCell,
}
# hold weights, cannot be mapped: listed digital and warned (an embedding is a table lookup,
# no product; a bilinear form multiplies two activations)
_UNSUPPORTED = (nn.Bilinear, nn.Embedding, nn.EmbeddingBag)
UNSUPPORTED_REASON = "layer type not supported"
NOT_MAPPABLE = "not mappable: "


def warn_unsupported(digital: list[tuple[str, str, str]], who: str) -> None:
    """One ``UserWarning`` naming the layers with weights kept digital because their type is
    not supported (they compute in float: results that look simulated but are not)."""
    kept = [f"{name} ({kind})" for name, kind, why in digital if why == UNSUPPORTED_REASON]
    if kept:
        warnings.warn(f"{who}: {len(kept)} layer(s) with weights run digitally in float, their "
                      f"type not being supported: {', '.join(kept)}", UserWarning, stacklevel=3)
    # a supported type whose settings are not (add_bias_kv, a kernel taller than the arrays):
    # listed too, but as silent in float as the above
    why_not = [why.removeprefix(NOT_MAPPABLE) for _, _, why in digital
               if why.startswith(NOT_MAPPABLE)]
    if why_not:
        warnings.warn(f"{who}: {len(why_not)} layer(s) cannot be mapped and run digitally in "
                      f"float: {'; '.join(why_not)}", UserWarning, stacklevel=3)


_HOOKS = ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks",
          "_forward_hooks_with_kwargs", "_forward_hooks_always_called")


def carry_hooks(src: nn.Module, dst: nn.Module, backward: bool = False) -> None:
    """The forward (pre-)hooks the user put on ``src`` run on ``dst``, its replacement (an
    input scaling, a feature recorder). torch's old-style weight_norm / spectral_norm hooks stay
    behind: they recompute ``weight`` from parameters the replacement does not hold, and the
    mapped weight is the one they computed. ``backward`` (a training twin): its backward
    (pre-)hooks too (a gradient reversal, a gradient scaling), which training would lose."""
    dropped = {key for key, hook in src._forward_pre_hooks.items()
               if isinstance(hook, (WeightNorm, SpectralNorm))}
    for attr in _HOOKS:
        getattr(dst, attr).update({key: value for key, value in getattr(src, attr).items()
                                   if key not in dropped})
    if backward:
        dst._backward_hooks.update(src._backward_hooks)
        dst._backward_pre_hooks.update(src._backward_pre_hooks)
        if src._backward_hooks:  # full (register_full_backward_hook) or the old kind
            dst._is_full_backward_hook = src._is_full_backward_hook


def _sim_class(module: nn.Module) -> type[SimLayer] | None:
    for kind, sim in _MAPPED.items():
        if isinstance(module, kind):
            return sim
    return None


_LOCK_GUARD = threading.Lock()  # creates a SimModel's call lock once (SimModel._one_call)


class SimModel(nn.Module):
    """The deployed model: call it like the original; ``report()`` gives what it cost.

    What it did crosses to the cost model and the report as values (``cimsim.work``):
    :meth:`works` (one ``LayerWork`` per mapped layer) and :meth:`work` (those, the events not
    tied to a layer, the inference count and the chip), e.g. ``cimsim.cost.estimate(sim.work())``.

    Attributes
    ----------
    model : nn.Module
        The copy with simulated layers in place.
    sim_layers : dict[str, SimLayer]
    digital : list of (name, type, reason)
        Layers with weights kept digital (type: the module's class, or for a weight used
        outside a module how the model holds it: ``'parameter'``, ``'buffer'``, ``'tensor'``
        for a plain tensor attribute), and digital activation products.
    n_inferences : int
        Samples (along ``batch_dim`` of the first input) seen since the last ``reset()``.
    """

    def __init__(self, model: nn.Module, sim_layers: dict[str, SimLayer],
                 digital: list[tuple[str, str, str]], chip: ChipConfig, seed: int,
                 arrays_needed: int, batch_dim: int = 0,
                 calibration_ndims: dict[int | str, int] | None = None):
        super().__init__()
        self.training = False  # it simulates inference (:meth:`train`)
        self.model = model
        # a load_state_dict holding mapped weights refused before any module takes a value
        for root in (self, model):
            root.register_load_state_dict_pre_hook(refuse_mapped_state)
        self.sim_layers = sim_layers
        self.digital = digital
        self.chip = chip
        self.seed = seed
        self.arrays_needed = arrays_needed
        self.n_inferences = 0
        self.n_calls = 0
        self.batch_dim = batch_dim
        self.calibration_ndims = dict(calibration_ndims or {})
        """Dimensions of each tensor argument (position or keyword) in the calibration
        batches: a call's argument with fewer is one unbatched sample (:meth:`_samples`)."""
        self._extra = Events()
        self.backend = "numba"
        """Where the mapped matrices run (:meth:`use_backend`)."""
        self.t_s = chip.device.drift_t0_s
        """Time after programming the devices are seen at, s (:meth:`set_time`)."""
        self.fidelity = None
        """The last :meth:`trace` (a DataFrame, one row per mapped layer), or None; the
        report adds its columns to ``report.layers``."""

    ranges_learned = False
    """Whether the input and ADC ranges are a prepared (and trained) model's
    (``PreparedModel.deploy`` sets it), not calibrated on data; the report notes it. A class
    default, so a SimModel pickled before the attribute existed reads False."""

    def extra_repr(self) -> str:
        return (f"chip={self.chip.name!r}, seed={self.seed}, backend={self.backend!r}, "
                f"arrays={self.arrays_needed}, inferences={self.n_inferences}")

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        """torch's ``state_dict``, with a warning: it holds only the parameters of the layers
        kept digital, not the programmed arrays, ranges and ADC tables (a saved
        ``sim.state_dict()`` was empty, without a word). A SimModel is saved whole:
        ``torch.save(sim, path)``, ``torch.load(path, weights_only=False)``."""
        warnings.warn("SimModel.state_dict() holds only the layers kept digital, not the "
                      "programmed arrays, ranges and ADC tables; save the model whole: "
                      "torch.save(sim, path), then torch.load(path, weights_only=False)",
                      UserWarning, stacklevel=2)
        return super().state_dict(*args, **kwargs)

    def train(self, mode: bool = True) -> SimModel:
        """A deployed model always simulates inference: the copy stays in eval mode (BatchNorm
        on its running statistics, dropout off) whatever a parent module's ``train()`` asks;
        asking for training mode warns (train for the chip with ``cimsim.train.prepare``)."""
        if mode:
            warnings.warn("SimModel.train(): a deployed model always runs in inference (eval) "
                          "mode; to train for the chip use cimsim.train.prepare",
                          UserWarning, stacklevel=2)
        return self

    def _keep_eval(self) -> None:
        """The copy in eval mode, whatever was done to it: ``sim.model.train()`` (or a
        module's) switched dropout on and let BatchNorm update its running statistics during
        the simulated inference, silently and for good. The modules are walked at every call
        (a module added after the first forward, which starts in training mode, escaped a list
        kept from it), which also finds the mapped layers replaced or removed since deploy."""
        modules = list(self.model.modules())
        present = {id(m) for m in modules}
        gone = [name for name, layer in self.sim_layers.items() if id(layer) not in present]
        if gone:
            # a replacement ran in float, unnamed, while the report still listed the layer
            # mapped and priced its arrays (0 MACs, all of its ADC energy)
            raise MappingError(
                f"SimModel: {len(gone)} mapped layer(s) are no longer in sim.model (replaced "
                f"or removed after deploy): {_shown(gone)}; what replaced them would run in "
                "float while the report prices the arrays deploy programmed for them: deploy "
                "the changed model again (cimsim.deploy), keeping a layer digital with "
                "exclude=[...] where that is the intent")
        if self.__dict__.get("_modes_set"):  # calibrate_bn's BatchNorm pass (modes_set)
            return
        if not any(m.training for m in modules):
            return
        training = [name or "(the model)" for name, m in self.model.named_modules()
                    if m.training]
        if training:
            warn_user(f"SimModel: {len(training)} module(s) of the deployed model were in "
                      f"training mode ({_shown(training)}); a deployed model always runs in "
                      "inference (eval) mode: set back to eval (dropout off, BatchNorm on its "
                      "running statistics); to train for the chip use cimsim.train.prepare")
            self.model.eval()

    @contextmanager
    def modes_set(self) -> Iterator[None]:
        """Within the block the forwards keep the modes the caller set on the copy's modules
        (``cimsim.train.calibrate_bn`` runs the BatchNorm layers in training mode to
        re-estimate their statistics on the chip); outside it a forward sets them back to
        eval (:meth:`_keep_eval`)."""
        self.__dict__["_modes_set"] = self.__dict__.get("_modes_set", 0) + 1
        try:
            yield
        finally:
            self.__dict__["_modes_set"] -= 1

    def use_backend(self, backend: str = "numba", device: str | torch.device | None = None
                    ) -> SimModel:
        """Run the mapped matrices on ``backend``: ``numba`` (the engine, CPU) or ``torch`` on
        ``device`` (e.g. ``"cuda"``; ``cimsim.mapping.torch_backend``), the same programmed
        parts, events and report either way. Returns ``self``."""
        from .torch_backend import TorchMatmul, check_backend

        check_backend(backend, device)
        cores = [core for layer in self.sim_layers.values() for core in layer.cores]
        # every matrix first, then switch: a matrix the torch backend fails to build must not
        # leave the ones before it on torch under backend = 'numba'
        torch_cores = [TorchMatmul(core.w, core.view, device or "cpu", core.name)
                       if backend == "torch" and not core.digital and core.view is not None
                       else None for core in cores]
        with self._one_call():  # not under a forward another thread is running
            for core, torch_core in zip(cores, torch_cores, strict=True):
                core.torch_core = torch_core
            self.backend = backend
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_call_lock", None)  # a lock does not pickle; the copy makes its own
        state.pop("_modes_set", None)  # a block of the caller's, not the copy's
        state.pop("_all_modules", None)  # an earlier version's list of modules, walked now
        return state

    def _one_call(self) -> threading.RLock:
        """The lock held by a forward, a trace, ``reset``, ``use_backend``'s switch and
        ``uncounted``'s snapshot and restore: calls from several threads take turns (each
        read-modify-wrote the layers' event sums, vector counts and the noise stream's call
        counter: 0.5-3 % of the events were lost, and two calls could draw the same noise).
        Reentrant: a trace's forwards."""
        lock = self.__dict__.get("_call_lock")
        if lock is None:
            with _LOCK_GUARD:
                lock = self.__dict__.setdefault("_call_lock", threading.RLock())
        return lock

    @eager  # NumPy and Numba inside: torch.compile(sim) runs it eagerly
    def forward(self, *args, **kwargs):
        with self._one_call():
            return self._forward(*args, **kwargs)

    def _forward(self, *args, **kwargs):
        refuse_tracing("SimModel", [*args, *kwargs.values()])
        # NumPy inputs as the calibration data takes them (the model's own torch code would
        # fail on an ndarray with an AttributeError deep inside it)
        args = tuple(torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args)
        kwargs = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                  for k, v in kwargs.items()}
        tensors = [(key, a) for key, a in (*enumerate(args), *kwargs.items())
                   if isinstance(a, torch.Tensor)]
        if tensors:
            n = self._call_samples(tensors)
        else:  # the inputs in containers: counted 1 a call whatever they held
            n = next((c for a in (*args, *kwargs.values())
                      if (c := self._nested_samples(a)) is not None), 1)
        self._keep_eval()
        before = self._counts()
        try:
            with torch.no_grad(), explain_stop_iteration("SimModel"):
                out = self.model(*args, **kwargs)
        except BaseException:
            # the layers that ran before the failure had counted their work, the inference
            # count had not: every later report's per-inference figures held it
            self._restore_counts(before)
            raise
        self.n_inferences += n
        self.n_calls += 1
        if n > 0:  # an empty batch reprograms nothing (it was charged a whole reload)
            self._charge_time_multiplexing(before)
        if torch.is_grad_enabled() and any(t.requires_grad for _, t in tensors):
            # an adversarial attack on the chip's model ended in torch's "element 0 of
            # tensors does not require grad" at backward, naming neither cause nor way out
            warn_user("SimModel: an input requires grad, but the simulated model's outputs "
                      "carry no gradient (its arrays run NumPy integer arithmetic under "
                      "torch.no_grad()); for gradients through the chip's arithmetic use the "
                      "training twin, cimsim.train.prepare(model, chip, ...)")
        return out

    def _call_samples(self, tensors: list[tuple[int | str, torch.Tensor]]) -> int:
        """Samples in a call with tensor arguments: the first one's (:meth:`_samples`); where
        it is 1, a later argument's that it broadcasts against (a (1, S) ``position_ids``
        passed before the (B, S) ``input_ids``: same rank, each other dimension equal or 1).
        Any other later count (a square attention mask, a recurrent layer's (layers, 1, H)
        initial state beside one (1, T, F) sequence) is no batch: it set the count, every
        figure per inference T or num_layers times too low."""
        (key0, first), *rest = tensors
        n = self._samples(first, key0)
        if n != 1:
            return n
        # an unbatched first argument (a (1,) scalar, an unbatched image) says nothing of the
        # batch: the next count is taken as before; a batch of one is overridden only by an
        # argument it broadcasts against
        batched = self._batched(first, key0)
        for key, t in rest:
            c = self._samples(t, key)
            if (batched and (t.dtype == torch.bool or t.is_floating_point()) and t.dim() >= 2
                    and t.shape[-1] == t.shape[-2] == first.shape[-1] > 1):
                # an (S, S) attention mask (bool or additive float) beside a batch of one
                # (1, S): square in the first's sequence length, no batch (it counted S
                # inferences); (B, S) integer ids with B = S still count B
                continue
            if c != 1 and (not batched or (t.dim() == first.dim() and all(
                    a == b or 1 in (a, b) for d, (a, b) in enumerate(zip(
                        first.shape, t.shape, strict=True)) if d != self.batch_dim))):
                return c
        return 1

    def _batched(self, t: torch.Tensor, key: int | str | None) -> bool:
        """Whether ``t`` has a batch dimension (:meth:`_samples` reads its size there)."""
        ndim = None if key is None else self.calibration_ndims.get(key)
        if ndim is None and key is not None:
            # the argument calibrated by position and called by name, or the reverse: 32 ids
            # passed as sim(ids=ids) counted 1 inference, an image as sim(x=img) 3
            alias = _argument_alias(self.model, key)
            ndim = None if alias is None else self.calibration_ndims.get(alias)
        return not (t.dim() <= self.batch_dim or (t.dim() == 1 and ndim != 1)
                    or (ndim is not None and t.dim() < ndim))

    def _samples(self, first: torch.Tensor | None, key: int | str | None = None) -> int:
        """Samples in a call: the size of ``batch_dim`` of the first tensor argument; a 1-D (or
        scalar) input is one sample, and so is an input with fewer dimensions than the
        calibration batches gave that argument (``key``: its position or keyword; an unbatched
        (C, H, W) image or (S, E) sequence, which torch's layers take as one sample). A 1-D
        input is a batch where the calibration batches gave that argument one dimension too
        (a recommender's user ids, one per sample): calibration cut it into samples along
        dimension 0, and a call counted it as one, every cost per inference B times too high."""
        if first is None or not self._batched(first, key):
            return 1
        return int(first.shape[self.batch_dim])

    def _nested_samples(self, value: Any) -> int | None:
        """Samples in an argument holding its tensors in a container, for a call with no tensor
        argument: a ``PackedSequence``'s batch (its first step's), a dict's counting tensor
        (:func:`~cimsim._inputs.counting_key`), a tuple's first tensor (a structure of batched
        inputs: a pair), a list's length (a list of per-sample inputs: torchvision's images,
        detectron2's dicts; a list of batched tensors, DINO's multi-crop views, is the
        exception, counted by its views); None: none of these."""
        if isinstance(value, PackedSequence):
            return int(value.batch_sizes[0]) if value.batch_sizes.numel() else 0
        if isinstance(value, torch.Tensor):
            return self._samples(value)
        if isinstance(value, Mapping):
            key = counting_key(value, self.batch_dim)
            return None if key is None else self._samples(torch.as_tensor(value[key]))
        if isinstance(value, list):
            return len(value) if any(isinstance(v, torch.Tensor | Mapping) for v in value) \
                else None
        if isinstance(value, tuple):
            return next((c for v in value if (c := self._nested_samples(v)) is not None), None)
        return None

    def _charge_time_multiplexing(self, before: tuple[list[Any], list[Any], Any]) -> None:
        """Over capacity (allowed): the chip holds the model's first arrays (its arrays times
        the weight sets stored, in model order) and rewrites, every forward, the arrays beyond
        them of the matrices this forward ran (``before``: :meth:`_counts` taken before it);
        their cells at the ran matrices' mean cells per array. A forward of every matrix is
        charged ``needed - held`` arrays, as before; an early exit, an expert no token was
        routed to, a branch not taken loads nothing (each forward was charged the whole
        model's reload, so a call of a few layers cost nearly the full path's energy)."""
        have = self.chip.array_slots
        if self.arrays_needed <= have:
            return
        cores, saved, _ = before
        ran = {id(c) for c, was in zip(cores, saved, strict=True) if c.n_vectors > was[1]}
        reloaded = arrays = 0
        cells = 0.0
        for core, start, n in self._array_spans():
            if id(core) in ran:
                reloaded += max(0, start + n - max(start, have))
                arrays += n
                cells += core.n_cells
        if reloaded == 0:
            return
        self._extra = self._extra + Events({
            event_key(Component.ARRAY, Action.REPROGRAM): reloaded,
            event_key(Component.CELL, Action.WRITE, self.chip.device.bits_per_cell):
                cells * reloaded / arrays,
        })

    def _array_spans(self) -> list[tuple[MatmulCore, int, int]]:
        """:func:`array_spans` of the model, computed once."""
        spans = self.__dict__.get("_spans")
        if spans is None:
            spans = self.__dict__["_spans"] = array_spans(self.sim_layers, self.chip)
        return spans

    @property
    def fused_activations(self) -> list[str]:
        """Layers whose layer-output ADC is also their ReLU's quantizer
        (``adc.fuse_activation``)."""
        return [name for name, layer in self.sim_layers.items()
                if any(core.fused for core in layer.cores)]

    @property
    def events(self) -> Events:
        total = Events(self._extra)
        for layer in self.sim_layers.values():
            total = total + layer.events
        return total

    def works(self) -> list[LayerWork]:
        """What every mapped layer did since deploy (or ``reset``), in model order: the
        values ``cimsim.cost`` and ``cimsim.report`` read (``cimsim.work``). Taken between
        calls (:meth:`_one_call`): a report during another thread's forward read its layers
        half counted."""
        with self._one_call():
            return [layer.work() for layer in self.sim_layers.values()]

    def work(self) -> ModelWork:
        """The model's work since deploy (or ``reset``): :meth:`works`, the events not tied
        to a layer (reprogramming), the inferences and the chip. ``cimsim.cost.estimate``
        takes it as is."""
        with self._one_call():  # the layers and the inference count of the same calls
            return ModelWork(layers=tuple(self.works()), other_events=self._extra,
                             n_inferences=self.n_inferences, chip=self.chip,
                             n_arrays_needed=self.arrays_needed,
                             digital=tuple(self.digital), t_s=self.t_s)

    def reset(self, *, noise: bool = False) -> None:
        """Forget the events and inference count of earlier forwards.

        Every forward draws fresh conversion noise (the engine's counter-based stream moves
        on one call per matrix), as a chip read again would. ``noise=True`` also restarts that
        stream: the next forwards draw what the first forwards after deploy drew, so two runs
        of the same batches differ only in what changed between them (``set_time``: drift
        alone, on the same draws, as each point of a ``time_s`` sweep sees them). The
        ``torch`` backend draws from torch's generator instead: seed it
        (``torch.manual_seed``) for the same."""
        noise = check_flag(noise, "noise")  # "yes" was taken for True, "no" too
        with self._one_call():
            for layer in self.sim_layers.values():
                layer.reset_events()
                if noise:
                    for core in layer.cores:
                        core.calls = 0
            self._extra = Events()
            self.n_inferences = 0
            self.n_calls = 0

    @contextlib.contextmanager
    def uncounted(self) -> Iterator[SimModel]:
        """Forwards within the block are no part of the run's work: its events, vectors,
        clipping counts and inference count are as they were before it (a BatchNorm
        calibration pass, :func:`cimsim.train.calibrate_bn`, entered the report's
        per-inference figures). The conversion noise stream moves on as for any forward."""
        with self._one_call():  # not held across the block: its forwards may come from
            before = self._counts()  # other threads, which would wait for it for ever
        try:
            yield self
        finally:
            with self._one_call():
                self._restore_counts(before)

    def _counts(self) -> tuple[list[Any], list[Any], tuple[Any, ...]]:
        """What the run's work is counted in: every core's counters, the inference and call
        counts and the extra events (for :meth:`_restore_counts`)."""
        cores = [c for layer in self.sim_layers.values() for c in layer.cores]
        return cores, [c.counters() for c in cores], (self.n_inferences, self.n_calls,
                                                       self._extra)

    def _restore_counts(self, counts: tuple[list[Any], list[Any], tuple[Any, ...]]) -> None:
        cores, saved, state = counts
        for c, was in zip(cores, saved, strict=True):
            c.restore(was)
        self.n_inferences, self.n_calls, self._extra = state

    def trace(self, x, *, batch_size: int = 64, max_code_vectors: int = 256,
              progress: bool = False):
        """Per-layer fidelity: every mapped layer's simulated output against float.

        Each batch of ``x`` runs twice: the float model (every matrix in float64), keeping each
        mapped matrix's output ``y_F``; then the simulated model, where each matrix's output
        ``y_s`` is compared with the float matrix fed the same simulated input, ``y_f``
        (``MatmulCore.float_run``: the layer's own error) and with ``y_F`` (the error
        accumulated along the network up to and including the layer). The sums run over every
        output of every call of the layer's matrices (an attention layer's four projections
        together). The trace is not part of the run's work: events, vectors and inference
        counts are as they were before it (only the noise draws move on, as for any forward).

        Parameters
        ----------
        x : tensor, ndarray, tuple of tensors or DataLoader
            Model inputs, cut into batches along ``batch_dim`` as the calibration data is.
        batch_size : int
            Inputs per batch (two forwards each).
        max_code_vectors : int
            Input vectors per matrix whose conversions are re-evaluated for the code count.
        progress : bool
            A progress bar over the forwards (two per batch; ``tqdm.auto``, none in a log).

        Returns
        -------
        pandas.DataFrame
            One row per mapped layer, model order: ``layer``; ``sqnr_db`` =
            10·log10(Σ y_f² / Σ (y_s − y_f)²) (inf when exact, -inf when only y_f is zero);
            ``rel_error`` = ‖y_s − y_f‖ / ‖y_f‖ (0 when both are zero, inf when only y_f is);
            ``cosine`` of y_s and y_f (NaN when either is zero); ``accum_rel_error`` and
            ``accum_cosine``, the same against y_F; ``adc_clip_pct``, conversions of the trace
            that clipped (``LayerWork.n_adc_clipped``); ``input_clip_pct``, the trace's
            inputs the input quantizer saturated (``LayerWork.n_input_clipped``: run-time
            inputs beyond the calibrated range); ``adc_code_use_pct``, distinct ADC
            codes used / 2^bits per ADC setting, averaged over the layer's settings, on the
            noise-free conversions of at most ``max_code_vectors`` input vectors per matrix
            (:func:`cimsim.mapping.layers.adc_codes_used`); ``n_trace_vectors``, input vectors
            simulated, summed over the layer's matrices. NaN where a
            layer is never reached (or all its matrices are kept digital). Also kept as
            :attr:`fidelity`.

        Raises
        ------
        MappingError
            A model not deployed whole, or a ``batch_size`` / ``max_code_vectors`` that is
            not an integer >= 1.
        ConfigError
            A ``progress`` that is not True or False.
        """
        with self._one_call():  # its tracers and counters are the model's, as a forward's
            return self._trace(x, batch_size, max_code_vectors, progress)

    def _trace(self, x: Any, batch_size: int, max_code_vectors: int, progress: bool) -> Any:
        import pandas as pd

        cores = [c for layer in self.sim_layers.values() for c in layer.cores]
        if any(c.view is None and not c.digital for c in cores):
            raise MappingError("trace() needs a deployed model (every layer calibrated)")
        for name, value in (("batch_size", batch_size), ("max_code_vectors", max_code_vectors)):
            # -1 code vectors ran and reported NaN code use
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise MappingError(f"trace: {name} = {value!r} is invalid; allowed: an "
                                   "integer >= 1")  # (a ValueError), as deploy's batch_size
        progress = check_flag(progress, "progress")
        self._keep_eval()
        saved = [c.counters() for c in cores]
        for c in cores:
            c.tracer = CoreTrace(max_code_vectors)
        n_batches = 0
        # the trace of a large model is minutes of forwards: the CLI ran it in silence
        try:  # two forwards a batch, where the inputs can be counted (not a DataLoader)
            total = 2 * -(-input_count(x, self.batch_dim) // batch_size)
        except (AttributeError, TypeError, ValueError):
            total = None
        bar = tqdm(desc="fidelity trace", total=total, unit="forward", leave=False,
                   disable=bar_disabled(progress))
        try:
            with torch.no_grad():
                for args in _batches(x, batch_size, self.batch_dim):
                    n_batches += 1
                    for simulate in (False, True):
                        for c in cores:
                            assert c.tracer is not None
                            c.tracer.start_pass(simulate)
                        fresh = _fresh(args)
                        self.model(*fresh, **fresh.kwargs)
                        bar.update(1)
            for c in cores:
                assert c.tracer is not None
                c.tracer.finish_batch()
            traces = {id(c): c.tracer for c in cores}
            # what the trace's runs added: clipped and all conversions, saturated and all inputs
            stats = {id(c): (c.n_adc_clipped - was[2],
                             _n_conversions(c.events) - _n_conversions(was[0]),
                             c.n_input_clipped - was[3], c.n_input_values - was[4])
                     for c, was in zip(cores, saved, strict=True)}
        finally:
            bar.close()
            for c, was in zip(cores, saved, strict=True):
                c.tracer = None
                c.restore(was)
        if n_batches == 0:
            raise MappingError("trace() got no input")
        rows = [_fidelity_row(name, [(c, traces[id(c)], *stats[id(c)]) for c in layer.cores])
                for name, layer in self.sim_layers.items()]
        unpaired = [name for name, layer in self.sim_layers.items()
                    if any(getattr(traces[id(c)], "unpaired_batches", 0)
                           for c in layer.cores if not c.digital)]
        if unpaired:
            warn_user(f"trace: layers {_shown(unpaired)} ran otherwise in the simulated pass "
                      "than in the float one in some batches (another number of calls or of "
                      "rows: inputs routed or looped by values the simulation changed); their "
                      "accum_rel_error and accum_cosine cover only the batches whose calls "
                      "paired (NaN where none did)")
        frame = pd.DataFrame(rows)
        self.fidelity = frame
        return frame.copy()

    def set_time(self, t_s: float) -> None:
        """Run from now on ``t_s`` seconds after programming: the same drawn devices, drifted
        (``device.drift_nu_*``), their read noise grown (``read_noise_q_s``) and relaxed
        (``retention_sigma_lsb``); nothing is reprogrammed or recalibrated. A drift
        compensation (``device.drift_compensation``) reads its calibration input again, and
        that read is counted in the layers' events. A chip whose devices do not age gives the
        same results at every time (docs/drift.md).

        Raises
        ------
        ConfigError
            ``t_s`` negative, not finite, or before ``device.drift_t0_s``.
        """
        t = check_time(t_s, self.chip, "t_s")
        for layer in self.sim_layers.values():
            for core in layer.cores:
                core.set_time(t)
        self.t_s = t

    def report(self):
        """A :class:`cimsim.report.Report` of every forward since deploy (or ``reset``)."""
        from ..report import Report

        return Report.from_sim(self)


def _n_conversions(events: Events) -> float:
    return sum(v for key, v in events.items()
               if key.component is Component.ADC and key.action is Action.CONVERT)


def _fidelity_row(name: str, cores: list[tuple[MatmulCore, CoreTrace | None, float, float,
                                               float, float]]) -> dict:
    """One row of :meth:`SimModel.trace`: the sums of the layer's matrices combined (a
    layer's error is that of all its outputs together, not a mean of its matrices')."""
    keys = ("ref2", "err2", "dot", "sim2", "acc_ref2", "acc_err2", "acc_dot", "acc_sim2")
    s = dict.fromkeys(keys, 0.0)
    n_vectors = n_clipped = n_converted = n_used = n_settings = n_paired = 0.0
    n_in_clipped = n_in_values = 0.0
    for core, tr, clipped, converted, in_clipped, in_values in cores:
        if tr is None or core.digital:
            continue
        for k in keys:
            s[k] += tr.sums[k]
        n_vectors += tr.n_vectors
        n_paired += tr.paired_batches
        n_clipped += clipped
        n_converted += converted
        n_in_clipped += in_clipped
        n_in_values += in_values
        if tr.code_inputs:
            x_int = np.concatenate(tr.code_inputs)
            for a, b, part in core.parts:
                use = adc_codes_used(part, x_int[:, a:b])
                n_used += use.used / use.codes
                n_settings += use.settings
    nan = math.nan

    def ratio(num: float, den: float) -> float:
        return num / den if den > 0 else nan

    def rel(err2: float, ref2: float) -> float:
        # A reference that is exactly zero (a layer whose float output is all zeros) has an
        # exact simulation (0) or an infinitely wrong one, as sqnr_db has inf; NaN is kept for
        # a layer never reached.
        if ref2 > 0:
            return math.sqrt(err2 / ref2)
        return 0.0 if err2 == 0 else math.inf

    reached = n_vectors > 0
    paired = reached and n_paired > 0  # some batch's calls paired with the float pass's
    return {
        "layer": name,
        # exact: inf, also on an all-zero reference (it was NaN there, as for a layer never
        # reached); an error on an all-zero reference: -inf, as rel_error is inf
        "sqnr_db": (nan if not reached else math.inf if s["err2"] == 0
                    else -math.inf if s["ref2"] == 0
                    else 10.0 * math.log10(s["ref2"] / s["err2"])),
        "rel_error": rel(s["err2"], s["ref2"]) if reached else nan,
        "cosine": ratio(s["dot"], math.sqrt(s["sim2"] * s["ref2"])) if reached else nan,
        "accum_rel_error": rel(s["acc_err2"], s["acc_ref2"]) if paired else nan,
        "accum_cosine": (ratio(s["acc_dot"], math.sqrt(s["acc_sim2"] * s["acc_ref2"]))
                         if paired else nan),
        "adc_clip_pct": 100.0 * ratio(n_clipped, n_converted),
        "input_clip_pct": 100.0 * ratio(n_in_clipped, n_in_values),
        "adc_code_use_pct": 100.0 * ratio(n_used, n_settings),
        "n_trace_vectors": int(n_vectors),
    }


_PLAIN_ARGUMENT = (torch.Tensor, str, int, float, bool, type(None))


def _nested(arg: Any) -> bool:
    """A plain tuple or list (not a named tuple such as a ``PackedSequence``, which is one
    value and rebuilds only from its fields)."""
    return type(arg) in (tuple, list)


def _plain(arg: Any) -> bool:
    """A model argument as given: a tensor, string, number or None, or a tuple / list of
    them (a recurrent layer's ``(h0, c0)``)."""
    if _nested(arg):
        return all(_plain(a) for a in arg)
    return isinstance(arg, _PLAIN_ARGUMENT)


def _leaves(arg: Any) -> Iterator[Any]:
    """The tensors, strings, numbers of an argument, nested tuples and lists walked."""
    if _nested(arg):
        for a in arg:
            yield from _leaves(a)
    else:
        yield arg


def _as_tensor(leaf: Any) -> Any:
    """A NumPy array as a tensor (its memory shared); any other leaf as it is."""
    return torch.from_numpy(leaf) if isinstance(leaf, np.ndarray) else leaf


def _map_leaves(fn: Callable[[Any], Any], arg: Any) -> Any:
    """``arg`` with every leaf replaced by ``fn(leaf)``, its tuples and lists kept."""
    if _nested(arg):
        return type(arg)(_map_leaves(fn, a) for a in arg)
    return fn(arg)


class Arguments(tuple):
    """One batch's positional arguments, and in :attr:`kwargs` its keyword arguments: the model
    is called as ``model(*args, **args.kwargs)``. Keywords come from a dict calibration (a
    HuggingFace batch, ``{"input_ids": ..., "attention_mask": ...}``), passed as the model's
    keyword arguments as ``model(**batch)`` would."""

    kwargs: dict[str, Any]

    def __new__(cls, args: Iterable = (), kwargs: Mapping[str, Any] | None = None
                ) -> Arguments:
        new = super().__new__(cls, args)
        new.kwargs = dict(kwargs or {})
        return new


def _fresh(args: Arguments) -> Arguments:
    """A copy of a batch's tensors, for a pass that must not see what an earlier pass wrote: a
    model may write into its input (an in-place activation first), and the trace's float and
    simulated passes and the calibration's stages read the same batch (found by
    tests/test_model_properties.py: a trace 10 % off at its first layer)."""
    def copy(a):
        return _map_leaves(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, a)

    return Arguments((copy(a) for a in args), {k: copy(v) for k, v in args.kwargs.items()})


def check_batch_dim(batch_dim: int, ndim: int, what: str) -> None:
    """A ``batch_dim`` beyond an input of ``ndim`` >= 2 dimensions (``what`` names it) is a
    ``MappingError``: the input was read as one sample, every cost per inference n times too
    high (a scalar or 1-D input is one sample by design)."""
    if 2 <= ndim <= batch_dim:
        raise MappingError(f"batch_dim = {batch_dim} is invalid for {what}; allowed: 0 to "
                           f"{ndim - 1} (the dimension that counts samples)")


def _batches(data, batch_size: int, batch_dim: int = 0) -> Iterator[Arguments]:
    """Yield the model's arguments from a tensor / array / tuple of tensors / dict of keyword
    inputs / DataLoader (of tensors, tuples or dicts), cutting the first tensor along
    ``batch_dim``; each other tensor (also inside a tuple argument: an LSTM's ``(h0, c0)``)
    along the dimension that holds the first's sample count (:func:`cimsim._inputs.sample_dim`:
    ``batch_dim``, 0, or a recurrent state's 1), else passed whole (a shared mask). A
    ``PackedSequence``, alone or first of a tuple, is one batch as given (it cannot be cut)."""
    for option, value, least in (("batch_size", batch_size, 1), ("batch_dim", batch_dim, 0)):
        # batch_size -1 read as "no calibration data", 0 as range()'s error; batch_dim -1 cut
        # the features into samples
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise MappingError(f"{option} = {value!r} is invalid; allowed: an integer >= {least}")
    if isinstance(data, torch.utils.data.Dataset):
        # a dataset's items are single samples (a TensorDataset's (x_i, y_i)): batched by
        # torch's own loader, in order, then read as a DataLoader's batches (it was refused)
        data = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    if isinstance(data, PackedSequence) or (
            isinstance(data, (tuple, list)) and data and isinstance(data[0], PackedSequence)):
        # one batch, the model's argument(s) as given: a PackedSequence is a named tuple, its
        # fields were read as two arguments (and the model told, wrongly, that the simulated
        # recurrent layers take no packed input), and a tuple of one as a DataLoader's batches
        yield Arguments((data,) if isinstance(data, PackedSequence) else data)
        return
    if isinstance(data, Mapping):
        yield from _keyword_batches(data, batch_size, batch_dim)
        return
    if isinstance(data, np.ndarray):
        if data.dtype.kind not in "biufc":  # torch's "can't convert np.ndarray of type ..."
            raise MappingError(f"calibration is an array of {data.dtype} values; allowed: an "
                               "array of numbers (or a tensor, a tuple of them, a dict of "
                               "keyword inputs, a DataLoader)")
        data = torch.from_numpy(data)
    if isinstance(data, torch.Tensor):
        data = (data,)
    if _nested(data) and data and isinstance(data[0], np.ndarray):
        # arrays as the tensors they hold: a tuple of arrays was read as a DataLoader, its
        # arrays called as the model's input one by one (a second input as a second batch)
        data = _map_leaves(_as_tensor, data)
    if isinstance(data, (tuple, list)) and data and isinstance(data[0], torch.Tensor) and all(
            _plain(d) for d in data):
        # the model's arguments; a string (a task key), a number or None passed whole: the
        # tuple used to be read as a DataLoader, its string called as an input; a nested
        # tuple of tensors (an LSTM's (h0, c0)) is one argument, not a second batch
        first = data[0]
        check_batch_dim(batch_dim, first.dim(), f"the first input's shape {tuple(first.shape)}")
        n = first.shape[batch_dim] if first.dim() > batch_dim else 1
        if 0 < n <= batch_size:  # one batch: as given (a sparse tensor cannot be narrowed)
            yield Arguments(data)
            return

        # (cut only when there are more than batch_size samples: a dimension of that size by
        # chance is unlikely)
        dims = [_map_leaves(lambda d: sample_dim(d, first.dim(), n, batch_dim), a)
                for a in data]
        dims[0] = batch_dim if first.dim() > batch_dim else None
        sparse = [i for i, (a, dim) in enumerate(zip(data, dims, strict=True))
                  if any(k is not None and t.layout is not torch.strided
                         for t, k in zip(_leaves(a), _leaves(dim), strict=True))]
        if sparse:
            raise MappingError(f"calibration input(s) {sparse} are sparse, which cannot be cut "
                               f"into batches of {batch_size}: pass batch_size={n} (one batch)")

        def cut(a: Any, dim: Any, i: int) -> Any:
            if _nested(a):
                return type(a)(cut(e, k, i) for e, k in zip(a, dim, strict=True))
            return a if dim is None else a.narrow(dim, i, min(batch_size, n - i))

        for i in range(0, n, batch_size):
            yield Arguments(cut(a, dim, i) for a, dim in zip(data, dims, strict=True))
        return
    if isinstance(data, Iterable):
        warned = False
        for item in data:
            if isinstance(item, Mapping):  # a HuggingFace DataLoader's batch: as given
                yield from _keyword_batches(item, None, batch_dim)
                continue
            # (inputs, labels) as a DataLoader yields: the model takes the inputs; arrays as
            # tensors, as deploy's and the model's forward take them
            x = item[0] if isinstance(item, (tuple, list)) else item
            if isinstance(item, (tuple, list)) and len(item) > 2 and not warned:
                # (x, mask, y): the mask was dropped without a word, the model calibrated
                # unmasked
                warned = True
                warnings.warn(
                    f"calibration read as a DataLoader of {len(item)}-element items: the model "
                    f"is called on the first of each, as (inputs, labels), the other "
                    f"{len(item) - 1} left out; a model taking several inputs is given them as "
                    "a DataLoader of dicts of its keyword inputs ({'x': ..., 'mask': ...}) or "
                    "a tuple of tensors (x, mask), cut into batches", UserWarning, stacklevel=3)
            if isinstance(x, (int, float, str, bytes, np.generic)) or x is None:
                # a table iterated (a DataFrame's column labels, a nested list's numbers), or a
                # text's characters: torch's "'int' / 'str' object has no attribute 'dim'"
                # from the model named neither
                raise MappingError(
                    f"calibration read as a DataLoader gave the model the {type(x).__name__} "
                    f"{x!r} as its input; allowed: a tensor, an ndarray, a tuple of tensors, a "
                    "dict of keyword inputs or a DataLoader of them (a table of numbers, a "
                    "nested list or a pandas DataFrame, is one tensor: torch.tensor(rows, "
                    "dtype=torch.float32), torch.from_numpy(df.to_numpy(np.float32)))")
            yield Arguments((_map_leaves(_as_tensor, x),))
        return
    raise MappingError(
        f"calibration must be a tensor, an array, a tuple of tensors, a dict of keyword inputs, "
        f"a Dataset or a DataLoader; got {type(data).__name__}"
    )


def check_keywords(model: nn.Module, args: Arguments) -> None:
    """A dict calibration's keys against ``model``'s forward: a key it does not take is named
    with the arguments it does take (not a TypeError from inside the model's call); and a list
    or tuple of more tensors than the forward takes (a list of batches or samples, read as
    the model's arguments: "forward() takes 2 positional arguments but 33 were given")."""
    if not args.kwargs:
        if len(args) > 1 and (fit := keywords_not_taken(model, ())) is not None:
            try:
                fit[0].bind(*args)
            except TypeError as exc:
                if "too many positional" in str(exc):
                    raise MappingError(
                        f"calibration as {len(args)} tensors is read as the model's "
                        f"{len(args)} positional arguments, and {type(model).__name__}.forward"
                        f"{fit[0]} takes fewer; batches one by one are a DataLoader or a list "
                        "of tuples, [(x1,), (x2,)], or one tensor: torch.cat(batches), "
                        "torch.stack(samples)") from None
        return
    if (fit := keywords_not_taken(model, args.kwargs)) is None:
        return
    signature, unknown = fit
    where = f"{type(model).__name__}.forward{signature}"
    if unknown:
        raise MappingError(f"calibration dict key(s) {', '.join(map(repr, unknown))} are "
                           f"not keyword arguments of {where}; a dict's keys are passed as "
                           "the model's keyword arguments")
    try:
        signature.bind(*args, **args.kwargs)
    except TypeError as exc:
        raise MappingError(f"calibration dict does not fit {where} ({exc}); a dict's keys are "
                           "passed as the model's keyword arguments") from None


def _keyword_batches(data: Mapping, batch_size: int | None, batch_dim: int
                     ) -> Iterator[Arguments]:
    """The batches of a dict of keyword inputs, cut as a tuple of them is (the tensor that sets
    the sample count, :func:`cimsim._inputs.counting_key`, first); ``batch_size`` None: one
    batch, as given."""
    names = list(data)
    bad = [k for k in names if not isinstance(k, str)]
    if bad:
        raise MappingError(f"calibration dict keys must be the model's keyword argument names "
                           f"(str); got {bad[0]!r}")
    # an LSTM's (h0, c0) under one key, a flat tuple of tensors, is one argument, each state
    # cut with the batch (a list or a nested tuple: a cache, refused below)
    odd = [k for k in names if not isinstance(data[k], (*_PLAIN_ARGUMENT, np.ndarray))
           and not (type(data[k]) is tuple and data[k]
                    and all(isinstance(e, torch.Tensor | np.ndarray) for e in data[k]))]
    if odd:
        value = data[odd[0]]
        text = isinstance(value, list) and value and all(isinstance(v, str) for v in value)
        raise MappingError(f"calibration dict entry {odd[0]!r} is a {type(value).__name__}"
                           f"{' of str' if text else ''}; allowed: tensors, arrays, str, "
                           "numbers, None " + (
                               "(a text column a DataLoader collated: drop it, e.g. a "
                               "HuggingFace dataset's remove_columns)" if text else
                               "(a cache of earlier steps is not an input to calibrate on)"))
    values = {k: _map_leaves(_as_tensor, v) for k, v in data.items()}
    first = counting_key(values, batch_dim)
    if first is None:
        raise MappingError("calibration dict holds no tensor: "
                           f"{', '.join(map(repr, names)) or 'it is empty'}")
    if batch_size is None:
        yield Arguments((), values)
        return
    order = [first, *(k for k in names if k != first)]  # the first tensor sets the count
    for cut in _batches(tuple(values[k] for k in order), batch_size, batch_dim):
        yield Arguments((), dict(zip(order, cut, strict=True)))


@contextmanager
def batches_noted(data, batch_size: int, batch_dim: int) -> Iterator[None]:
    """An error in the calibration forward, where the calibration tensors were cut into
    batches, notes the cut: inputs that are one sample (a graph's nodes and its adjacency, one
    long sequence) fail in the model's own code on the cut shapes ('mat1 and mat2 shapes cannot
    be multiplied (256x300 and 256x6)')."""
    try:
        yield
    except Exception as exc:
        if not all(isinstance(v, int | np.integer) for v in (batch_size, batch_dim)):
            # a batch_size of 'a', refused naming it: the note's comparison with it raised a
            # TypeError of its own in place of that refusal
            raise
        first = data[0] if isinstance(data, (tuple, list)) and data else data
        arrays = {k: v for k, v in data.items() if isinstance(v, torch.Tensor | np.ndarray)
                  } if isinstance(data, Mapping) else {}
        if arrays:  # a dict: as _keyword_batches counts
            first = arrays[counting_key(arrays, batch_dim)]
        n = (first.shape[batch_dim] if isinstance(first, torch.Tensor | np.ndarray)
             and first.ndim > batch_dim else 0)
        key = counting_key(arrays, batch_dim) if arrays else None
        cut = [k for k, v in arrays.items() if k == key or (  # as _batches cuts them
            isinstance(first, torch.Tensor | np.ndarray)
            and sample_dim(v, first.ndim, n, batch_dim) is not None)]
        named = f" ({', '.join(cut)})" if cut else ""
        if n > batch_size:
            exc.add_note(f"(the calibration inputs{named} were cut into batches of {batch_size} "
                         f"along dimension {batch_dim}, {n} there: if they are one sample, as a "
                         f"graph's nodes, or cannot be cut, as an EmbeddingBag's flat indices "
                         f"and offsets, pass batch_size={n})")
        if (isinstance(exc, TypeError) and _nested(data) and len(data) > 1
                and all(isinstance(d, torch.Tensor | np.ndarray) for d in data)):
            # batches of different sizes given as a list: its tensors were the arguments
            exc.add_note(f"(the calibration {type(data).__name__} of {len(data)} tensors was "
                         f"read as the model's {len(data)} arguments, one batch; batches "
                         "one by one are a DataLoader or a list of tuples, [(x1,), (x2,)])")
        item = first[0] if isinstance(first, (tuple, list)) and first else None
        if isinstance(item, torch.Tensor):  # _batches read ``data`` as a DataLoader
            exc.add_note(f"(the calibration was read as a DataLoader, each item as (inputs, "
                         f"labels): the model was called with the first element of its first "
                         f"item, a tensor of shape {tuple(item.shape)}; to pass a model a list "
                         f"of tensors as one input (a torchvision detection model's images), "
                         f"pass [(images, targets), ...])")
        raise


def _relu_clamp(target) -> float | None:
    """The clamp of a ReLU-like module or function (``inf`` for ReLU), or None if not one."""
    if isinstance(target, nn.ReLU6) or target is F.relu6:
        return 6.0
    if isinstance(target, nn.ReLU) or target in (F.relu, torch.relu, torch.relu_):
        return math.inf
    if isinstance(target, nn.Hardtanh) and target.min_val == 0.0 and target.max_val > 0.0:
        return float(target.max_val)
    return None


class _LeafTracer(fx.Tracer):
    """Symbolic tracer that stops at simulated layers (their forward is NumPy)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, SimLayer) or super().is_leaf_module(m, qualname)


class _Depth:
    """How deep a Sequential's forward is running (its forward pre- and post-hook; a class,
    not closures, so that a model holding the hooks pickles)."""

    def __init__(self) -> None:
        self.depth = 0

    def enter(self, module: nn.Module, args: Any) -> None:
        self.depth += 1

    def leave(self, module: nn.Module, args: Any, out: Any) -> None:
        self.depth -= 1


class _CalledInside:
    """A forward pre-hook refusing a call of a layer fused with the ReLU after it in a
    Sequential (found without a trace) from outside that Sequential: there its output may go
    elsewhere than the ReLU (a skip connection), which the fused conversion clamped."""

    def __init__(self, depth: _Depth, layer: str, seq: str) -> None:
        self.depth, self.layer, self.seq = depth, layer, seq

    def __call__(self, module: nn.Module, args: Any) -> None:
        if self.depth.depth <= 0:
            raise MappingError(
                f"layer {self.layer!r} has its layer-output ADC fused with the ReLU after it in "
                f"nn.Sequential {self.seq or '(the root)'!r} (torch.fx cannot trace the model, "
                "so its neighbours there were taken as its only consumer), but the forward "
                "calls it outside that Sequential, where its output may go elsewhere; allowed: "
                "adc.fuse_activation = false, or a forward torch.fx can trace")


def _guard_inside(seq: nn.Module, layer: nn.Module, name: str, seq_name: str) -> None:
    """Hooks refusing a call of ``layer`` outside ``seq``'s own forward (:class:`_CalledInside`)."""
    depth = _Depth()
    seq.register_forward_pre_hook(depth.enter)
    seq.register_forward_hook(depth.leave, always_call=True)
    layer.register_forward_pre_hook(_CalledInside(depth, name, seq_name))


def _output_hooked(module: nn.Module) -> bool:
    """Whether a forward hook the user put on ``module`` reads (or replaces) its output."""
    return bool(module._forward_hooks or module._forward_hooks_with_kwargs)


def _warn_hooked(hooked: list[str]) -> None:
    if hooked:
        warn_user(f"{len(hooked)} layer(s) not fused with the ReLU after them, a forward hook "
                  f"reading their output: {', '.join(hooked)}; a fused conversion gives the "
                  "ReLU's quantized activation, which the hook would read as the layer's "
                  "output (adc.fuse_activation); remove the hook before deploy to fuse them")


def _relu_consumers(root: nn.Module, mapped: set[str],
                    modules: dict[str, str] | None = None, *,
                    guard: bool = False,
                    untraced: dict[str, str] | None = None) -> dict[str, float]:
    """Mapped layers whose output goes to a ReLU and nowhere else: name -> clamp.

    From a torch.fx trace where the model traces; else from ``nn.Sequential`` neighbours only
    (inside a Sequential the next module is the sole consumer). ``modules``, if given, gets
    layer name -> the consumer's module name where the ReLU is a module (the training twin
    passes its gradient straight through, ``cimsim.train.twin.FusedReLU``). ``guard``: hooks
    on ``root`` refuse a call of a layer fused without a trace from outside its Sequential
    (:func:`_guard_inside`; deploy's simulated model, whose modules stay in place, not the
    training twin, whose layers are replaced after this). ``untraced``, if given, gets layer
    name -> its Sequential's name for the pairs found without a trace (the twin guards its
    own layers once they are in place). A layer with a forward hook on its output (the user's
    feature recorder) is not fused, with a warning naming it.
    """
    hooked = {name for name, m in root.named_modules() if name in mapped and _output_hooked(m)}
    if hooked:
        # those that would fuse are named, then left out before the pairs are decided: a
        # shared ReLU module after a hooked layer and a fused one stays a ReLU in the twin
        would = sorted(hooked & set(_fused_pairs(root, mapped, None, False, None)))
        _warn_hooked(would)
        mapped = set(mapped) - set(would)
    return _fused_pairs(root, mapped, modules, guard, untraced)


def _fused_pairs(root: nn.Module, mapped: set[str], modules: dict[str, str] | None,
                 guard: bool, untraced: dict[str, str] | None) -> dict[str, float]:
    """:func:`_relu_consumers` over the layers ``mapped`` (hooked ones left out by it)."""
    found: dict[str, float] = {}
    try:
        graph = _LeafTracer().trace(root)
    except Exception as exc:  # noqa: BLE001 - any untraceable forward falls back
        log.info("deploy: torch.fx cannot trace the model (%s); fusing ReLUs inside "
                 "nn.Sequential only", exc)
        # a module placed twice in the tree (nn.Sequential(lin, relu, lin)) is one layer whose
        # other call feeds no ReLU: fused, it came out clamped there
        places: dict[int, int] = {}
        for _, m in root.named_modules(remove_duplicate=False):
            places[id(m)] = places.get(id(m), 0) + 1
        for prefix, seq in root.named_modules():
            # a Sequential's own forward hands a child's output to the next child alone; an
            # overridden forward may not
            if not isinstance(seq, nn.Sequential) or type(seq).forward is not \
                    nn.Sequential.forward:
                continue
            kids = list(seq.named_children())
            for (name, kid), (nxt_name, nxt) in zip(kids[:-1], kids[1:], strict=True):
                full = f"{prefix}.{name}" if prefix else name
                clamp = _relu_clamp(nxt)
                if full in mapped and clamp is not None and places[id(kid)] == 1:
                    found[full] = clamp
                    if guard:
                        _guard_inside(seq, kid, full, prefix)
                    if untraced is not None:
                        untraced[full] = prefix
                    if modules is not None:
                        modules[full] = f"{prefix}.{nxt_name}" if prefix else nxt_name
        return found
    # a layer called more than once (shared weights) fuses only if every call feeds a ReLU
    # alone, the same clamp each time: its ADC is the activation of all its calls
    calls: dict[str, list[tuple[float | None, str | None]]] = {}
    callers: dict[str, list[fx.Node]] = {}  # module -> the nodes calling it
    for node in graph.nodes:
        if node.op == "call_module":
            callers.setdefault(str(node.target), []).append(node)
        if node.op != "call_module" or node.target not in mapped:
            continue
        clamp, relu = None, None
        if len(node.users) == 1:
            (user,) = node.users
            if user.op == "call_module":
                clamp, relu = _relu_clamp(root.get_submodule(user.target)), str(user.target)
            elif user.op == "call_function":
                clamp = _relu_clamp(user.target)
            else:
                clamp = math.inf if user.op == "call_method" and user.target in ("relu",
                                                                                 "relu_") \
                    else None
            if not (user.args[:1] == (node,) and len(user.args) == 1):
                clamp = None
        calls.setdefault(str(node.target), []).append((clamp, relu))
    for target, seen in calls.items():
        clamps = {clamp for clamp, _ in seen}
        only = clamps.pop() if len(clamps) == 1 else None
        if only is not None:
            found[target] = only
    if modules is not None:
        for target in found:
            relus = {relu for _, relu in calls[target]}
            relu = relus.pop() if len(relus) == 1 else None
            # the twin makes that ReLU module the identity: only if each of its calls reads a
            # fused layer's output (a shared nn.ReLU may also follow other work)
            if relu is not None and all(_reads_one_of(n, found) for n in callers[relu]):
                modules[target] = relu
    return found


def _reads_one_of(node: fx.Node, layers: dict[str, float]) -> bool:
    """Whether ``node``'s first argument is the output of a call of one of ``layers``."""
    arg = node.args[0] if node.args else None
    return isinstance(arg, fx.Node) and arg.op == "call_module" and arg.target in layers


EXCLUDED_REASON = "excluded by the user"


def exclude_patterns(exclude: Any) -> list[str]:
    """``exclude`` of deploy and prepare as a list of layer names or glob patterns (one string
    is one pattern), or a ``MappingError`` naming it (an ``nn.Sequential``'s index 0 failed
    on ``int + str``, ``None`` on ``not iterable``)."""
    items = [exclude] if isinstance(exclude, str) else exclude
    # bytes iterate as integers: b"fc" was refused as "exclude holds 102"
    if not isinstance(items, Iterable) or isinstance(items, (Mapping, bytes, bytearray)):
        raise MappingError(f"exclude = {exclude!r} is invalid; allowed: a layer name or glob "
                           "pattern, or a sequence of them (e.g. ['0', 'head.*'])")
    items = list(items)
    odd = [p for p in items if not isinstance(p, str)]
    if odd:
        raise MappingError(f"exclude holds {odd[0]!r}, which is not a string; allowed: layer "
                           f"names or glob patterns as strings (an index of an nn.Sequential "
                           f"as its name, e.g. '{odd[0]}')")
    empty = [p for p in items if not p.strip()]
    if empty:  # it names no layer: warned as unmatched, while run_sweep refused it
        raise MappingError(f"exclude holds {empty[0]!r}, an empty pattern, which names no "
                           "layer; allowed: layer names or glob patterns (e.g. ['0', 'head.*'])")
    return items


def _excluded(name: str, patterns: Sequence[str]) -> bool:
    # a container's name stands for the layers in it (exclude=["aux"], an Inception's head):
    # it matched none, warned, and the head it meant was mapped
    return any(name == p or name.startswith(p + ".") or fnmatch.fnmatchcase(name, p)
               for p in patterns)


def warn_unmatched_excludes(patterns: Sequence[str], candidates: Sequence[str], who: str,
                            stacklevel: int) -> None:
    """A pattern that names no mappable layer is most likely a typo: say so, with names."""
    unmatched = [p for p in patterns if not any(_excluded(n, [p]) for n in candidates)]
    if unmatched:
        shown = ", ".join(candidates[:8]) + (", ..." if len(candidates) > 8 else "")
        warnings.warn(f"{who}: exclude pattern(s) {', '.join(map(repr, unmatched))} match no "
                      f"mappable layer (they are named like: {shown or 'none'})",
                      UserWarning, stacklevel=stacklevel)


def deploy(
    model: nn.Module,
    chip: ChipConfig | str | Path,
    calibration,
    *,
    seed: int = 0,
    exclude: Sequence[str] = (),
    batch_size: int = 256,
    batch_dim: int = 0,
    t_inference_s: float | None = None,
    backend: str = "numba",
    device: str | torch.device | None = None,
    progress: bool = True,
) -> SimModel:
    """Map a trained model onto the chip.

    Parameters
    ----------
    model : nn.Module
        The trained float model; it is copied, never modified.
    chip : ChipConfig, str or Path
        The chip, or a preset name or ``.toml`` path (``cimsim.config.as_chip``).
    calibration : tensor, ndarray, tuple of tensors, dict of keyword inputs or DataLoader
        Inputs run through the float model to set activation scales (``chip.quant``) and the
        ADC ranges of ``calibrated`` policies. With ``adc.calibration_mode = 'simulated'``
        they run again once per stage of mapped layers, in execution order, the layers before
        it simulated, and each stage's ADCs are fitted to the inputs it sees there
        (docs/hardware-model.md §7); ``'float'`` (the default) fits them in the float pass.
        A dict (or a DataLoader of dicts) is passed as the model's keyword arguments,
        ``model(**batch)``.
    seed : int
        Programming variation, faults and conversion noise derive from it.
    exclude : sequence of str
        Module names or glob patterns (``"features.0"``, ``"*.out_proj"``) kept digital; a
        container's name keeps every layer in it digital (``"aux"``: ``aux.0``, ``aux.1.fc``); an
        attention module's projections are ``NAME.q_proj``, ``k_proj``, ``v_proj``, ``out_proj``
        (``NAME.in_proj`` for all three input projections).
    batch_size : int
        Batch size of the calibration pass when ``calibration`` is a tensor.
    batch_dim : int
        Which dimension of the model's first input counts samples (the ``per inference``
        figures of the report); 1 for sequence-first transformers. A 1-D input is one sample.
    t_inference_s : float, optional
        Seconds after programming the model runs at (``SimModel.set_time``; docs/drift.md):
        the arrays are programmed and their ADCs calibrated at ``device.drift_t0_s``, then seen
        at this time. None: at ``drift_t0_s``.
    backend : {'numba', 'torch'}
        What runs the programmed arrays after deploy: the Numba engine (CPU), or torch on
        ``device`` (``SimModel.use_backend``): the same devices, events and report, the
        conversion noise drawn by torch (same distribution, other draws).
    device : str or torch.device, optional
        Torch device of the ``torch`` backend (``"cuda"``, ``"cuda:1"``, ``"cpu"``).
    progress : bool
        A progress bar over the layers being programmed and calibrated, on a terminal or in a
        notebook (``tqdm.auto``; none in a log file); False: none.

    Returns
    -------
    SimModel
        An ``nn.Module``; ``sim(x)`` runs the simulated forward, ``sim.report()`` the costs.

    Raises
    ------
    CapacityError
        The mapped matrices need more arrays than the chip has and
        ``array.allow_time_multiplexing`` is off: found from the shapes, before any forward.
    ConfigError
        An invalid chip, ``seed``, ``backend``, ``device``, ``t_inference_s`` or ``progress``
        (the message names it).
    MappingError
        A model that is no ``nn.Module`` or has nothing to map, an ``exclude`` pattern,
        ``batch_size`` or ``batch_dim`` that is invalid, calibration data that is empty or
        of a kind deploy cannot read.
    """
    if not isinstance(model, nn.Module):
        raise MappingError(f"model must be a torch nn.Module, got {type(model).__name__}")
    progress = check_flag(progress, "progress")
    refuse_simulated(model, "deploy")
    chip = as_chip(chip)
    from .torch_backend import check_backend

    check_backend(backend, device)  # before the work
    t_inference = None if t_inference_s is None else check_time(t_inference_s, chip)
    if t_inference is not None:
        warn_static_time(t_inference, chip, "deploy")
    mapping = _LayerMapping(chip, seed, exclude_patterns(exclude))
    sim = mapping.replace_layers(_eval_copy(model))
    warn_unsupported(mapping.digital, "deploy")
    # from the shapes alone: an over-capacity model fails now, not after the calibration pass
    needed = _arrays_needed(mapping.sim_layers, chip)
    refuse_nonfinite_weights(mapping.sources, "deploy")
    _fuse_relus(sim, mapping.sim_layers, chip)
    with watch_functional_weights(sim, [*(n for n, _, _ in mapping.digital),
                                        *mapping.sim_layers], mapping.sources,
                                  getattr(model, "_orig_mod", model)) as functional:
        ndims = _calibrate(sim, mapping.sim_layers, calibration, batch_size, batch_dim, chip,
                           mapping.seed, model, progress)
    mapping.digital.extend(warn_functional(functional, "deploy"))
    _warn_calibration_signal(mapping.sim_layers)
    _warn_few_vectors(mapping.sim_layers, calibration, batch_dim)
    programmed = sum(c.n_arrays for layer in mapping.sim_layers.values() for c in layer.cores)
    assert programmed == needed, f"arrays from the shapes {needed} != programmed {programmed}"
    out = _reference_read(SimModel(sim, mapping.sim_layers, mapping.digital, chip, seed,
                                   needed, batch_dim, ndims))
    if t_inference is not None and t_inference != chip.device.drift_t0_s:
        out.set_time(t_inference)  # at t0 the reference read above is the one read: deploy()
    return out.use_backend(backend, device)


def deploy_views(model: nn.Module, chip: ChipConfig, views: Mapping[str, EngineView], *,
                 seed: int = 0, exclude: Sequence[str] = (), batch_dim: int = 0,
                 calibration_ndims: dict[int | str, int] | None = None) -> SimModel:
    """Deploy with every weight matrix given, already quantized, programmed and calibrated
    (the training twin's ``to_engine()``): no calibration pass, nothing recalibrated.

    ``views`` maps a matrix name (the layer name; ``NAME[gG]`` for the groups of a grouped
    conv, ``NAME.q_proj`` ... ``NAME.out_proj`` for attention) to its
    :class:`~cimsim.mapping.matrix.EngineView`; a mapped matrix without one is a
    ``MappingError``. ``model`` supplies the float structure (its weights are read only by
    matrices kept digital); ``seed``, ``exclude`` and ``batch_dim`` mean what they mean in
    :func:`deploy` (the programming seeds are those the views were programmed with);
    ``calibration_ndims``: the calibration batches' tensor dimensions, by position or keyword,
    which the deployed model's inference count reads (:meth:`SimModel._samples`).
    """
    if not isinstance(model, nn.Module):
        raise MappingError(f"model must be a torch nn.Module, got {type(model).__name__}")
    mapping = _LayerMapping(chip, seed, exclude_patterns(exclude))
    sim = mapping.replace_layers(_eval_copy(model))
    _fuse_relus(sim, mapping.sim_layers, chip)  # which ReLUs a fused view's ADC is (trace)
    for layer in mapping.sim_layers.values():
        layer.adopt(views)
    # the views' own tiling, as programmed
    cores = [c for layer in mapping.sim_layers.values() for c in layer.cores]
    needed = _check_capacity(sum(c.n_arrays for c in cores), chip, [c.name for c in cores])
    return _reference_read(SimModel(sim, mapping.sim_layers, mapping.digital, chip, seed,
                                    needed, batch_dim, calibration_ndims))


def _reference_read(sim: SimModel) -> SimModel:
    """``sim`` with a drift compensation's reference read at t0 made and counted (as a chip
    reads its calibration input once programmed); nothing without compensation."""
    if sim.chip.device.drift_compensation is not DriftCompensation.NONE:
        sim.set_time(sim.chip.device.drift_t0_s)
    return sim


def refuse_simulated(model: nn.Module, entry: str) -> None:
    """``deploy`` and ``prepare`` take the float model: one already deployed (a
    :class:`SimModel`, or its simulated layers) or prepared (a twin) holds no layer they map,
    and would be refused as a model without layers; say what it is and what to pass instead."""
    from ..train.twin import PreparedModel, TwinMatmul, _TwinLayer

    for name, m in model.named_modules():
        where = f" (at {name!r})" if name else ""
        if isinstance(m, PreparedModel | _TwinLayer | TwinMatmul):
            raise MappingError(
                f"{entry}: the model is a prepared twin{where} (cimsim.train.prepare's), not a "
                "float model: prep.deploy(seed=..., chip=...) runs what it learned on the "
                f"engine; prep.float_model() is the float model with the learned weights, to "
                f"pass to {entry}")
        if isinstance(m, SimModel | SimLayer):
            chip = f" on {m.chip.name!r}" if isinstance(m, SimModel) else ""
            raise MappingError(
                f"{entry}: the model is already deployed{where} (a simulated model{chip}), "
                f"not a float model: pass {entry} the float model it was deployed from (on "
                "another chip too: a SimModel is bound to its chip's programmed arrays)")


def no_layer_error(model: nn.Module, digital: Sequence[tuple[str, str, str]]) -> MappingError:
    """The refusal of a model in which no layer can be mapped (``deploy`` and ``prepare``):
    what it kept digital and why, or, if nothing, its loose weight matrices."""
    if not digital:
        return MappingError("no layer can be mapped onto the arrays: the model has no "
                            "Linear, Conv, ConvTranspose, RNN/LSTM/GRU (layer or cell) or "
                            "MultiheadAttention layer" + _loose_weights(model))
    kept = "; ".join(f"{name} ({kind}: {why})" for name, kind, why in digital)
    return MappingError(
        "no layer can be mapped onto the arrays (no Linear, Conv, ConvTranspose, "
        "RNN/LSTM/GRU (layer or cell) or MultiheadAttention outside the excluded "
        f"ones); kept digital: {kept}")


def _loose_weights(model: nn.Module, shown: int = 6) -> str:
    """The model's parameters of two or more dimensions (a stacked ensemble under torch.vmap,
    weights applied with F.linear), named for the refusal of a model with no layer to map:
    they are what the user would move into one."""
    loose = [f"{name} ({'x'.join(map(str, p.shape))})"
             for name, p in model.named_parameters() if p.dim() >= 2]
    if not loose:
        return ""
    more = f" and {len(loose) - shown} more" if len(loose) > shown else ""
    return ("; its parameters of two or more dimensions sit outside such layers: "
            f"{', '.join(loose[:shown])}{more} (hold each in an nn.Linear / nn.Conv module, "
            "e.g. self.proj = nn.Linear(...), "
            "then self.proj(x), to map it)")


def _eval_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode: the user's model is never modified."""
    with warnings.catch_warnings():
        # torch 2.1x's own deprecation inside the copy of an exported graph's tree specs
        warnings.filterwarnings("ignore", message=r".*LeafSpec", category=FutureWarning)
        sim = copy_model(user_model(model, "deploy"), "deploy")
    try:
        sim.eval()
    except NotImplementedError:  # torch.export modules refuse eval(); they are eval already
        pass
    warn_observing_fake_quant(sim, "deploy")
    return sim


def user_model(model: nn.Module, who: str) -> nn.Module:
    """The module to map: a ``torch.compile`` d model's own (warned); an uninitialized lazy
    layer is a ``MappingError`` naming it (its weights do not exist yet), and so are
    parameters and buffers on the meta device (a model built there and never loaded)."""
    model = uncompiled(model, None, "", who)
    lazy = [f"{name or 'model'} ({type(m).__name__})" for name, m in model.named_modules()
            if any(isinstance(p, UninitializedParameter) for p in m.parameters(recurse=False))]
    if lazy:
        raise MappingError(f"{', '.join(lazy)}: uninitialized parameters (a lazy layer): run "
                           f"the model once on an input before {who}")
    # built under torch.device('meta') and never loaded: no values to program (torch's own
    # error came from deep inside the copy, 'Cannot copy out of meta tensor')
    meta = [name for name, t in (*model.named_parameters(), *model.named_buffers())
            if t.is_meta]
    if meta:
        listed = ", ".join(meta[:4]) + (f" and {len(meta) - 4} more" if len(meta) > 4 else "")
        raise MappingError(f"{listed}: on the meta device (no values: a model built under "
                           "torch.device('meta') and never loaded); give it its weights "
                           f"before {who}: model.to_empty(device='cpu') then "
                           "model.load_state_dict(state_dict)")
    return model


def uncompiled(module: nn.Module, parent: nn.Module | None, name: str, who: str) -> nn.Module:
    """A ``torch.compile`` d module's original (put in ``parent`` as ``name`` when given):
    compiled code would trace into the simulated layers' NumPy. Warns once per module."""
    dynamo = sys.modules.get("torch._dynamo.eval_frame")  # loaded if anything was compiled
    if dynamo is None or not isinstance(module, dynamo.OptimizedModule):
        return module
    original = module._orig_mod
    warnings.warn(f"{who}: {name or 'the model'} is a torch.compile'd module; it runs "
                  "uncompiled (the simulated layers are NumPy, which torch.compile cannot "
                  "trace)", UserWarning, stacklevel=4)
    if parent is not None:
        parent._modules[name] = original
    return original


class ModuleWalk:
    """The children of a model's modules, each module once (deploy's and ``prepare``'s walk).

    :meth:`children` yields ``(name, module)`` for each child to consider, skipping empty
    slots, unwrapping a ``torch.compile`` d child (:func:`uncompiled`), and giving a module's
    second place (``nn.Sequential(lin, relu, lin)``; ``named_children()`` skips it) whatever
    replaced it at the first; :meth:`replace` puts a replacement in place and records it."""

    def __init__(self, who: str):
        self.who = who
        self._seen: dict[int, nn.Module] = {}  # id of a module (or its compiled wrapper) ->
        self._wrapper: dict[int, int] = {}     # what replaces it; id of original -> wrapper

    def children(self, parent: nn.Module) -> Iterator[tuple[str, nn.Module]]:
        for name, child in list(parent._modules.items()):
            if child is None:
                continue
            if id(child) in self._seen:  # a module at a second place: the same replacement
                parent._modules[name] = self._seen[id(child)]
                continue
            original = uncompiled(child, parent, name, self.who)
            self._seen[id(child)] = self._seen[id(original)] = original
            self._wrapper[id(original)] = id(child)
            yield name, original

    def replace(self, parent: nn.Module, name: str, child: nn.Module, new: nn.Module) -> None:
        """``new`` in ``child``'s place ``name`` of ``parent``, and at its other places."""
        parent._modules[name] = self._seen[id(child)] = new
        self._seen[self._wrapper[id(child)]] = new


@dataclass
class _LayerMapping:
    """Replaces the mappable modules of a model by simulated layers (stage 1 of ``deploy``),
    collecting the simulated layers and what stays digital, with the reason."""

    chip: ChipConfig
    seed: int
    exclude: list[str]
    sim_layers: dict[str, SimLayer] = field(default_factory=dict)
    digital: list[tuple[str, str, str]] = field(default_factory=list)
    walk: ModuleWalk = field(default_factory=lambda: ModuleWalk("deploy"))
    candidates: list[str] = field(default_factory=list)
    """Names the ``exclude`` patterns were tried on (mappable layers, attention projections)."""
    sources: dict[str, nn.Module] = field(default_factory=dict)
    """Layer name -> the float module its simulated layer replaced."""

    def __post_init__(self) -> None:
        # deploy and deploy_views (a twin's .deploy(seed)): -1 would alias 2**64 - 1
        self.seed = check_seed(self.seed)

    def replace_layers(self, sim: nn.Module) -> nn.Module:
        """Replace in place; a mappable root module is held as child ``"0"`` of a
        :class:`~cimsim.mapping.layers.Root`."""
        if _sim_class(sim) is not None:
            sim = Root(sim)
        _keep_off_fused_kernels(sim)  # the children are kept off as the walk enters them
        self._visit(sim, "")
        self._warn_unmatched_excludes()
        if all(c.digital for layer in self.sim_layers.values() for c in layer.cores):
            # nothing would run on the arrays (no layer, or attention whose every projection
            # is excluded: it deployed at 0 pJ and 0 arrays): refuse before the calibration
            # pass, not after
            raise no_layer_error(sim, self.digital)
        return sim

    def _excludes(self, name: str) -> bool:
        self.candidates.append(name)
        return _excluded(name, self.exclude)

    def _warn_unmatched_excludes(self) -> None:
        warn_unmatched_excludes(self.exclude, self.candidates, "deploy", stacklevel=5)

    def _visit(self, parent: nn.Module, prefix: str) -> None:
        for child_name, child in self.walk.children(parent):
            name = f"{prefix}{child_name}"
            cls = _sim_class(child)
            if (scripted := kept_digital_row(child, name, NOT_MAPPABLE)) is not None:
                self.digital.append(scripted)
            elif cls is not None:
                new = self._map(child, name, cls)
                if new is not None:
                    self.walk.replace(parent, child_name, child, new)
            elif isinstance(child, _UNSUPPORTED):
                self.digital.append((name, type(child).__name__, UNSUPPORTED_REASON))
            elif (affine := affine_source(child)) is not None:  # a Linear but for its name
                new = self._map(child, name, SimLinear, build_from=affine.linear)
                if new is not None:
                    self.walk.replace(parent, child_name, child, new)
            elif isinstance(row := getattr(child, "digital_row", None), tuple):
                self.digital.append((name, *row))  # an exported graph's attention
            else:
                _keep_off_fused_kernels(child)
                self._visit(child, name + ".")

    def _map(self, child: nn.Module, name: str, cls: Callable[..., SimLayer],
             build_from: nn.Module | None = None) -> SimLayer | None:
        """The simulated layer of ``child`` (built from ``build_from``, the ``nn.Linear`` a
        module computes, when given), or None (kept digital, reason recorded)."""
        if self._excludes(name):
            self.digital.append((name, type(child).__name__, EXCLUDED_REASON))
            return None
        if build_from is None and (why := overridden_forward(child, name)) is not None:
            # a subclass's own forward that still computes F.linear(x, weight, bias) maps
            affine = affine_source(child) if isinstance(child, nn.Linear) else None
            if affine is None:
                self.digital.append((name, type(child).__name__, f"{NOT_MAPPABLE}{why}"))
                return None
            build_from = affine.linear
        extra = {}
        if cls is SimMultiheadAttention:
            extra["digital"] = self._digital_projections(name)
        try:
            # seeded by name: excluding one layer leaves the others' draws unchanged
            new = cls(child if build_from is None else build_from, name, self.chip,
                      layer_seed(self.seed, name), **extra)
        except MappingError as exc:
            self.digital.append((name, type(child).__name__, f"{NOT_MAPPABLE}{exc}"))
            return None
        new.train(child.training)  # the copy's (eval) mode: no attention / RNN dropout
        new.source_config = source_config(child)
        new.source_tensors = tensor_metas(child)
        new.source_keys = frozenset(
            [n for n, _ in child.named_parameters(remove_duplicate=False)]
            + [n for n, _ in child.named_buffers(remove_duplicate=False)])
        new.seal()
        carry_hooks(child, new)
        self.sim_layers[name] = new
        self.sources[name] = child
        if cls is SimMultiheadAttention:
            self.digital.append((name, "attention products",
                                 "activation x activation (Q·Kᵀ, softmax, ·V) kept digital"))
        return new

    def _digital_projections(self, name: str) -> frozenset[str]:
        """Projections of attention module ``name`` the user excludes by name:
        NAME.q_proj/k_proj/v_proj/out_proj (NAME.in_proj: all three input projections)."""
        tags = {t for t in ("q_proj", "k_proj", "v_proj", "out_proj")
                if self._excludes(f"{name}.{t}")}
        if self._excludes(f"{name}.in_proj"):
            tags |= {"q_proj", "k_proj", "v_proj"}
        self.digital.extend((f"{name}.{t}", "projection", EXCLUDED_REASON)
                            for t in sorted(tags))
        return frozenset(tags)


_WIDE_RANGE = ("The ADC's range is far wider than their signal: try adc.range_policy = "
               "'calibrated', a narrower full scale (adc.full_scale_factor), more adc.bits or "
               "fewer rows per conversion (SimModel.trace() shows each layer's code use)")


def warn_code_use(flagged: Mapping[str, Sequence[str]], who: str, stacklevel: int = 3
                  ) -> None:
    """Warn about the matrices named under each of :class:`CodeFlags`'s fields: ADCs reading
    one code for every calibration input (their outputs do not follow their inputs: a
    full-scale range far wider than the signal, which only ``SimModel.trace``'s
    ``adc_code_use_pct`` showed before), few codes, or an error above the signal. ``who``:
    deploy or prepare."""
    # (flag, what the matrices do, with the verb's singular and plural, and what follows)
    checks = (("one_code", ("converts", "convert"), "every calibration input to one ADC code "
               "(noise-free): {names}; their outputs do not follow their inputs (only bias and "
               "offsets remain). " + _WIDE_RANGE),
              ("few_codes", ("reads", "read"), f"at most {FEW_CODES} codes per ADC setting on "
               "average over the calibration inputs (noise-free): {names}; their outputs "
               "barely follow their inputs. " + _WIDE_RANGE),
              ("error_over_signal", ("errs", "err"), "by more than the signal on the "
               "calibration inputs, simulated (SQNR below 0 dB against the integer product): "
               "{names}; the converters' steps, clipping or the chip's noise swamp what they "
               "compute. Try adc.range_policy = 'calibrated', more adc.bits or fewer rows per "
               "conversion (SimModel.trace() shows each layer's sqnr_db and clipping)"))
    for flag, (one, many), text in checks:
        names = flagged.get(flag, ())
        if names:
            verb = f"x {one}" if len(names) == 1 else f"ces {many}"
            warnings.warn(f"{who}: {len(names)} matri{verb} " + text.format(names=_shown(names)),
                          UserWarning, stacklevel=stacklevel)


def _warn_calibration_signal(sim_layers: Mapping[str, SimLayer]) -> None:
    """Warn about the matrices whose code use is flagged (:func:`warn_code_use`), and about
    those whose calibration inputs were all 0 (scales and ranges set from no signal) or
    mostly far below their range."""
    cores = [c for layer in sim_layers.values() for c in layer.cores]
    warn_code_use({flag: [c.name for c in cores if getattr(c, flag) and not c.zero_inputs]
                   for flag in CodeFlags._fields}, "deploy", stacklevel=4)
    warn_zero_inputs([c.name for c in cores if c.zero_inputs], "deploy", stacklevel=4)
    warn_coarse_inputs([c.name for c in cores if c.coarse_inputs], "deploy", stacklevel=4)


FEW_VECTORS = 16
"""Calibration input vectors below which a matrix that saw under a quarter of the calibration
samples (and of another matrix's vectors) is named (:func:`_warn_few_vectors`)."""


def _warn_few_vectors(sim_layers: Mapping[str, SimLayer], calibration: Any,
                      batch_dim: int) -> None:
    """Warn about the matrices calibrated on fewer than :data:`FEW_VECTORS` input vectors and
    under a quarter of the calibration samples and of the vectors another matrix saw: a routed
    expert or a rare branch, whose input scale and ADC ranges rest on those few (an expert
    fitted to one token erred by 35 % on the lossless chip, with no word). Not where the
    samples cannot be counted (an iterable of batches), nor a model calibrated on a few
    samples (every layer sees as many)."""
    try:
        n = input_count(calibration, batch_dim)
    except (AttributeError, TypeError, ValueError):
        return
    seen = {id(c): getattr(c, "n_calibration_vectors", n) for layer in sim_layers.values()
            for c in layer.cores if not c.digital}
    # and under a quarter of what another matrix saw: an unbatched input's features were
    # counted as its samples
    bound = min(FEW_VECTORS, n / 4, max(seen.values(), default=0) / 4)
    few = [f"'{c.name}' ({seen[id(c)]})" for layer in sim_layers.values()
           for c in layer.cores if not c.digital and 0 < seen[id(c)] < bound]
    if few:
        warnings.warn(
            f"deploy: {len(few)} matri{'x was' if len(few) == 1 else 'ces were'} calibrated on "
            f"fewer than {FEW_VECTORS} input vectors, under a quarter of the {n} calibration "
            f"samples (inputs routed or branched away): {', '.join(few[:8])}"
            f"{' ...' if len(few) > 8 else ''}; their input scales and ADC ranges rest on those "
            "few: pass calibration inputs that reach them more", UserWarning, stacklevel=3)


def warn_coarse_inputs(names: Sequence[str], who: str, stacklevel: int = 3) -> None:
    """Warn about the matrices whose input step is set by an outlier
    (``MatmulCore.coarse_inputs``, :func:`~cimsim.mapping.matrix.coarse_inputs`)."""
    if names:
        warnings.warn(
            f"{who}: half the nonzero calibration input vectors of {_shown(names)} lie within "
            "a 32nd of their input range: the input step is set by a max |x| far above their "
            "typical size (an outlier in the calibration data), so their signal takes a few "
            "input codes and the chip's noise, scaled by that step, can exceed it: calibrate "
            "on data without the outlier, or clip the range (quant.act_calibration = "
            "'percentile' with quant.act_percentile below 100 % less the outliers' share, "
            "e.g. 99.9)", UserWarning, stacklevel=stacklevel)


def warn_zero_inputs(names: Sequence[str], who: str, stacklevel: int = 3) -> None:
    """Warn about the matrices whose calibration inputs were all 0 (``InputStats.all_zero``):
    their input scale and ADC ranges were set from no signal (deploy and prepare)."""
    if not names:
        return
    warnings.warn(
        f"{who}: every calibration input of {_shown(names)} was 0 (a recurrent cell's state on "
        "its first step, a branch the calibration data never drives), so "
        f"{'its' if len(names) == 1 else 'their'} input scale (step 1) and ADC ranges (the "
        "columns' full scale) were set from no signal: calibrate on inputs that reach "
        f"{'it' if len(names) == 1 else 'them'} (several time steps: the state the cell returns "
        "passed back in), or keep them digital with exclude=[...]",
        UserWarning, stacklevel=stacklevel)


def _shown(names: Sequence[str]) -> str:
    """At most eight names, quoted (a layer named '0' reads as a name), then how many more."""
    return ", ".join(f"'{n}'" for n in names[:8]) + (
        f" and {len(names) - 8} more" if len(names) > 8 else "")


def _keep_off_fused_kernels(module: nn.Module) -> None:
    """torch's fused transformer kernels would bypass the simulated layers (or the training
    twins) inside: called on every module the walk enters, the root included (a root
    TransformerEncoder called with a padding mask took the nested fast path and failed on its
    replaced attention's missing out_proj)."""
    if isinstance(module, nn.TransformerEncoder):
        module.use_nested_tensor = False  # the nested fast path bypasses the arrays
    if isinstance(module, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
        # any hook disables torch's fused encoder-layer kernel for this module only
        module.register_forward_pre_hook(_no_op_hook)


def _no_op_hook(module: nn.Module, args: tuple) -> None:
    return None  # a named function, not a lambda: the module stays picklable


def _fuse_relus(sim: nn.Module, sim_layers: dict[str, SimLayer], chip: ChipConfig) -> None:
    """Tell the layers whose only consumer is a ReLU (stage 2): with a layer-output ADC that
    may quantize the activation, the conversion then produces it."""
    if chip.adc.placement is ADCPlacement.LAYER_OUTPUT and chip.adc.fuse_activation:
        for name, clamp in _relu_consumers(sim, set(sim_layers), guard=True).items():
            for core in sim_layers[name].cores:
                core.activation_clamp = clamp


def _calibrate(sim: nn.Module, sim_layers: dict[str, SimLayer], calibration, batch_size: int,
               batch_dim: int, chip: ChipConfig, seed: int,
               model: nn.Module, progress: bool = True) -> dict[int | str, int]:
    """The float calibration pass (the layers record their inputs; ``model``, the user's, is
    whose forward a dict calibration's keys are checked against), then every layer
    quantizes, programs and calibrates its ADCs (stage 3); with simulated calibration, the
    ADCs are then fitted again stage by stage on simulated inputs (:func:`_calibrate_simulated`).
    Returns the first batch's :func:`argument_ndims`.
    """
    calibration = replayable(calibration)
    order: list[MatmulCore] = []
    for layer in sim_layers.values():
        layer.call_log = order
    try:
        with (torch.no_grad(), explain_stop_iteration("deploy"),
              batches_noted(calibration, batch_size, batch_dim)):
            ndims = calibration_pass(sim, model, calibration, batch_size, batch_dim, seed)
    finally:
        for layer in sim_layers.values():
            layer.call_log = None
    if ndims is None:
        raise MappingError("calibration data is empty")
    # quantize, program and calibrate layer by layer: most of a deploy (a minute and more for
    # an ImageNet network), so a bar on a terminal or in a notebook (none in logs: tqdm's
    # disable=None)
    finalize_layers(tqdm(sim_layers.items(), desc="deploy: program + calibrate",
                         unit="layer", leave=False, disable=bar_disabled(progress)))
    adc = chip.adc
    if (adc.range_policy is RangePolicy.CALIBRATED
            and adc.calibration_mode is CalibrationMode.SIMULATED):
        _calibrate_simulated(sim, sim_layers, order, calibration, batch_size, batch_dim, seed)
    return ndims


def calibration_pass(module: nn.Module, model: nn.Module, calibration, batch_size: int,
                     batch_dim: int, seed: int) -> dict[int | str, int] | None:
    """Run ``module`` over the calibration batches (deploy's and ``prepare``'s float pass):
    the first batch's keywords checked against ``model``'s forward, every batch a copy
    (:func:`_fresh`: a model writing into its input leaves the caller's data), what the
    forward stores in the model's attributes undone after it (:func:`calibration_state`: a
    cached table would be the float pass's). What the forward draws from torch's random
    streams (a dropout kept on, a sampled latent) is drawn from ``seed``
    (:func:`seeded_draws`). A layer with weights the forward builds (on its first call) is a
    ``MappingError``: made after the mapping, it would compute in float. Returns the first
    batch's :func:`argument_ndims`, None when there was no batch."""
    ndims = None
    held = {id(m) for m in module.modules()}
    # what the forward caches is the pass's (float) result; its random draws are the seed's
    with calibration_state(module), seeded_draws(module, seed):
        for args in _batches(calibration, batch_size, batch_dim):
            first_batch = ndims is None
            if first_batch:
                check_keywords(model, args)
                ndims = argument_ndims(args)
            args = _fresh(args)
            try:
                with _sequence_axis_checked(module, args, batch_dim, first_batch):
                    module(*args, **args.kwargs)
            except RuntimeError as exc:
                refusal = _higher_order_error(exc)
                if refusal is None:
                    _note_dtypes(exc, module, args)
                    raise
                raise refusal from exc
    built = [name for name, m in module.named_modules()
             if id(m) not in held and any(True for _ in m.parameters(recurse=False))]
    if built:
        raise MappingError(
            f"{', '.join(built)}: built by the model's forward during the calibration pass (a "
            "layer created on the first call); deploy and prepare map the layers the model "
            "holds when called, so it would compute in float: run the model once on an input "
            "before, so that it holds them")
    return ndims


@contextmanager
def _sequence_axis_checked(module: nn.Module, args: Arguments, batch_dim: int,
                           active: bool) -> Iterator[None]:
    """While ``active`` (the first calibration batch): a warning where a recurrent or attention
    layer (one with a ``batch_first`` flag) reads the samples' axis, ``batch_dim`` of the first
    input, as its sequence axis, and not as its batch: a sequence-first model (``batch_first =
    False``, torch's default) deployed with ``batch_dim = 0`` would count every time step as an
    inference (every per-inference figure too low, a head's MACs fractional). An input whose
    batch and sequence sizes are equal says nothing, and is not warned of."""
    first = args[0] if len(args) and isinstance(args[0], torch.Tensor) else None
    if not active or first is None or first.dim() <= batch_dim:
        yield
        return
    n = int(first.shape[batch_dim])
    seen: list[tuple[str, str]] = []  # (what the layer reads, what follows and the way out)

    def check(name: str, m: nn.Module, inputs: tuple) -> None:
        x = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        if x is None or seen:
            return
        if x.dim() == 2 and x.shape[0] == n:
            # torch's recurrent and attention layers take a 2-D input as ONE unbatched
            # sequence: its rows are time steps (calibration also cut it into pieces of them)
            seen.append((f"{name!r} takes its 2-D input as one unbatched sequence, dimension 0 "
                         "its time steps",
                         ", every per-inference figure divided by the length, and the "
                         "calibration sequence cut into pieces along its steps. Give the "
                         "sequences a batch axis: x[:, None] with batch_dim=1 for a "
                         "sequence-first layer, x[None] for a batch_first one"))
            return
        if x.dim() != 3:
            return
        b = 0 if m.batch_first else 1
        if x.shape[1 - b] == n != x.shape[b]:
            seen.append((f"{name!r} (batch_first={m.batch_first}) reads dimension {1 - b} of "
                         "its input as the sequence",
                         " and every per-inference figure divided by the length. Pass "
                         f"batch_dim={1 - batch_dim if batch_dim < 2 else 0} if the model's "
                         f"input is {'sequence-first' if batch_dim == 0 else 'batch-first'}"))

    handles = [m.register_forward_pre_hook(lambda m, i, name=name: check(name, m, i))
               for name, m in module.named_modules()
               if isinstance(getattr(m, "batch_first", None), bool)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
    if seen:
        what, then = seen[0]
        warnings.warn(
            f"{what}, but that is the axis of the {n} samples cimsim counts (dimension "
            f"{batch_dim} of the model's input, batch_dim={batch_dim}): every time step would "
            f"be counted as an inference{then} (docs/architecture.md)", UserWarning, stacklevel=4)


def _note_dtypes(exc: Exception, module: nn.Module, args: Arguments) -> None:
    """A calibration input of another floating dtype than the model's weights (float64 data
    into a float32 model) fails deep in torch, at the first operation that mixes them (a
    simulated layer computes in its input's dtype, so not always where the model itself
    would): the error notes the dtypes and the casts that make them one."""
    inputs = [*args, *args.kwargs.values()]
    given = {str(t.dtype).removeprefix("torch.") for t in inputs
             if isinstance(t, torch.Tensor) and t.is_floating_point()}
    weights = {str(p.dtype).removeprefix("torch.") for p in module.parameters()
               if p.is_floating_point()}
    if len(weights) == 1 and given - weights:
        (held,) = weights
        exc.add_note(f"(the calibration inputs are {', '.join(sorted(given))}, the model's "
                     f"weights {held}: the model itself refuses such inputs; cast them, "
                     f"x.to(torch.{held}), or the model, model.to(torch."
                     f"{sorted(given - weights)[0]}))")


def _higher_order_error(exc: RuntimeError) -> MappingError | None:
    """torch's refusal of a higher-order operator in the forward (``torch.cond``,
    ``torch.while_loop``, ``torch.func``'s ``map`` / ``scan``: torch traces their branches
    with torch.compile, which neither the calibration pass's module hooks nor the simulated
    layers' NumPy let it do) said so deep inside dynamo, naming no way out: a
    ``MappingError`` says what to write instead; None for any other error."""
    if type(exc).__name__ != "UncapturedHigherOrderOpError":
        return None
    return higher_order_error()


@contextmanager
def seeded_draws(module: nn.Module, seed: int) -> Iterator[None]:
    """Within the block, torch's random streams (the CPU's and those of the CUDA devices
    ``module``'s tensors are on) start from ``seed``; the caller's streams are left as they
    were. A forward that draws (a dropout kept on for MC dropout, a VAE's sampled latent, a
    sampled action) made the calibration, and so the deployed model, depend on the global
    random state: ``deploy(model, chip, x, seed=0)`` twice gave two models (a head's
    calibrated range moved with the dropout masks); and deploy moved the user's stream."""
    devices = sorted({t.device.index or 0 for t in [*module.parameters(), *module.buffers()]
                      if t.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        for index in devices:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def _argument_alias(model: nn.Module, key: int | str) -> int | str | None:
    """The other name of a forward argument: a position's parameter name, or a named
    parameter's position (a parameter that can be passed either way); None where it has none
    (``*args``, keyword-only, a forward without a signature)."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    either = inspect.Parameter.POSITIONAL_OR_KEYWORD
    if isinstance(key, int):
        return params[key].name if key < len(params) and params[key].kind is either else None
    return next((i for i, p in enumerate(params) if p.name == key and p.kind is either), None)


def argument_ndims(args: Arguments) -> dict[int | str, int]:
    """Dimensions of a batch's tensor arguments, by position and keyword."""
    out: dict[int | str, int] = {i: a.dim() for i, a in enumerate(args)
                                 if isinstance(a, torch.Tensor)}
    out.update((k, v.dim()) for k, v in args.kwargs.items() if isinstance(v, torch.Tensor))
    return out


def replayable(calibration):
    """``calibration``, a one-shot iterator (a generator) read into batches that can be read
    again: simulated calibration, ``prepare``'s simulated mode and the methods' refits read
    it twice, and found it empty the second time ('calibration data is empty')."""
    if isinstance(calibration, Iterator):
        # not as a list, which _batches would read as the model's arguments
        return _Replay(list(calibration))
    return calibration


@dataclass(frozen=True)
class _Replay:
    """The batches of a one-shot iterator, iterable again."""

    items: list

    def __iter__(self) -> Iterator:
        return iter(self.items)


def _calibrate_simulated(sim: nn.Module, sim_layers: dict[str, SimLayer],
                         order: list[MatmulCore], calibration, batch_size: int,
                         batch_dim: int, seed: int) -> None:
    """Fit every stage's ADCs to the inputs it sees in simulation (``calibration_mode =
    'simulated'``).

    Stages (``SimLayer.calibration_stages``) run in the order of their first call in the
    float pass. For each stage after the first: one pass over the calibration data with the
    stages before it simulating (final ADCs), the stage recording its inputs and the later ones
    in float; then the stage's ADCs are fitted to what it recorded (its activation scales and
    programmed cells stay those of the float pass). The first stage's inputs are those of the
    float pass (nothing before it is simulated), so it keeps its ADCs. Every pass starts each
    matrix's noise draws afresh (``calls = 0``), so a stage is fitted to exactly the inputs the
    next stage's pass feeds it. Cost: one pass per stage, each simulating the stages before it:
    about S²/2 stage simulations of the calibration data for S stages, against S for the
    float mode. No events are kept.
    """
    position = {id(core): i for i, core in enumerate(order)}
    stages = [stage for layer in sim_layers.values() for stage in layer.calibration_stages()]
    # stages never reached in the float pass have failed finalize() already
    stages.sort(key=lambda st: min(position.get(id(c), len(order)) for c in st))
    cores = [c for layer in sim_layers.values() for c in layer.cores]
    for stage in stages[1:]:
        for core in stage:
            core.pending = True
    try:
        for stage in stages[1:]:
            for core in stage:
                core.start_recording()
            for core in cores:
                core.calls = 0
            with torch.no_grad(), calibration_state(sim), seeded_draws(sim, seed):
                for args in _batches(calibration, batch_size, batch_dim):
                    args = _fresh(args)
                    sim(*args, **args.kwargs)
            for core in stage:
                core.recalibrate()
    finally:
        for core in cores:
            core.pending, core.recorder = False, None
            core.calls = 0
            core.reset()


def array_spans(sim_layers: Mapping[str, SimLayer], chip: ChipConfig
                ) -> list[tuple[MatmulCore, int, int]]:
    """(matrix, first array, arrays) of every mapped matrix kept on arrays, in model order,
    from its shape and the chip (row tiles x column tiles; nothing programmed, no data)."""
    spans, start = [], 0
    for layer in sim_layers.values():
        for core in layer.cores:
            if not core.digital:
                n = n_arrays_for_shape(core.shape[0], core.row_tiles, chip)
                spans.append((core, start, n))
                start += n
    return spans


def _arrays_needed(sim_layers: dict[str, SimLayer], chip: ChipConfig) -> int:
    """Arrays the mapped matrices need (:func:`array_spans`); over the chip's count only with
    time-multiplexing allowed."""
    spans = array_spans(sim_layers, chip)
    return _check_capacity(sum(n for _, _, n in spans), chip, [c.name for c, _, _ in spans])


def _check_capacity(needed: int, chip: ChipConfig, names: list[str] | None = None) -> int:
    """``needed`` arrays, or ``CapacityError`` when over what the chip holds at once (its
    arrays times the weight sets stored: ``ChipConfig.array_slots``) without
    time-multiplexing. ``names``: the matrices' (one per group of a grouped convolution,
    ``NAME[gG]``, points to ``array.group_packing``)."""
    have = chip.array_slots
    if needed > have and not chip.array.allow_time_multiplexing:
        grouped = sum(1 for n in names or [] if re.search(r"\[g\d+\]$", n))
        packing = (f"; {grouped} matrices are single groups of grouped or depthwise "
                   "convolutions, each on arrays of its own: array.group_packing = 'diagonal' "
                   "packs several per array" if grouped else "")
        sets = chip.tech.weight_sets_stored
        raise CapacityError(
            f"the model needs {needed} arrays of {chip.array.n_rows}x{chip.array.n_cols} but "
            f"the chip has {have} ({chip.array.n_tiles} tile{'s' * (chip.array.n_tiles != 1)}"
            f" x {chip.array.arrays_per_tile} array{'s' * (chip.array.arrays_per_tile != 1)}"
            + (f" x {sets} weight sets stored" if sets > 1 else "") + "); "
            "enlarge the chip or set array.allow_time_multiplexing = true (reprogramming is "
            f"then charged){packing}"
        )
    return needed

"""Training methods by name, and their combinations: what ``cimsim train --method`` runs.

A method string is ``+``-joined parts: a base loss, ``qat`` (cross-entropy on labels, the
default) or ``distill`` (match the float model), and any of RAOQ's four
(:mod:`cimsim.train.raoq`, :mod:`cimsim.train.lora`):

==============  ==================================================================================
``a-shift``     the chip's ``dac.shift_unsigned_inputs`` turned on (unsigned inputs driven signed)
``w-reshape``   + ``λ · Σ (Kurt(Q(W)) − K_T)²`` (``kurtosis_target``, ``kurtosis_weight``)
``bitaug``      + the loss at other ADC bits (``bitaug_bits``, default B+1 and B+2; ``bitaug_mode``)
``lora``        W0 frozen, rank-``lora_rank`` adapters (``lora_alpha``), merged before deploy
``raoq``        all four
==============  ==================================================================================

and ``bskmq``: BS-KMQ fine-tuning on the chip (:mod:`cimsim.train.bskmq`): on a chip whose
layer-output ramp NL-ADC is fused with the ReLUs (``adc.placement = 'layer_output'``,
``adc.fuse_activation``), the twin's fused layers output the NL-ADC's levels (``adc.bits``,
``adc.level_fit``) with the straight-through estimator; the levels frozen, or refit on the
calibration inputs after each epoch with ``bskmq_refit = true``; deployed with the levels it
trained with. It combines with ``qat`` or ``distill`` and with ``a-shift``, ``w-reshape`` and
``lora``; not with ``bitaug`` (its other ADC precisions are linear grids) nor with the
``pim-qat`` / ``columnquant`` twins.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .._seed import check_flag, check_seed
from ..config import ADCKind, ChipConfig
from ..errors import ConfigError
from .bskmq import refit_chip_levels
from .loop import (
    as_tensors,
    check_lr,
    check_positive_int,
    check_schedule,
    lr_schedule,
    param_groups,
    train_epoch,
)
from .lora import add_lora, merge_lora
from .raoq import (
    BITAUG_MODES,
    bitaug_loss,
    check_uniform_grid,
    kurtosis_penalty,
    warn_unshifted,
)
from .twin import PreparedModel

__all__ = ["BASES", "PARTS", "Recipe", "parse_method"]

BASES = ("qat", "distill", "pim-qat", "columnquant")
"""The training loss and twin: cross-entropy on labels (``qat``, and ``pim-qat`` /
``columnquant`` with those methods' quantizers, docs/pim-qat.md, docs/columnquant.md) or
matching the float model without labels (``distill``)."""
PARTS = ("a-shift", "w-reshape", "bitaug", "lora", "raoq", "bskmq")


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """A parsed ``--method`` with its options."""

    base: str = "qat"
    a_shift: bool = False
    w_reshape: bool = False
    bitaug: bool = False
    lora: bool = False
    bskmq: bool = False
    kurtosis_target: float = 1.8
    """W-reshape K_T (1.8: uniform, as KURE; the paper's value was not read)."""
    kurtosis_weight: float = 0.1
    """W-reshape λ."""
    bitaug_bits: tuple[int, ...] = field(default_factory=tuple)
    """BitAug's set S; empty: {B_ADC + 1, B_ADC + 2}."""
    bitaug_mode: str = "sum"
    lora_rank: int = 4
    lora_alpha: float | None = None
    bskmq_refit: bool = False
    """BS-KMQ: refit the levels after every epoch (else frozen)."""

    @property
    def raoq_parts(self) -> tuple[str, ...]:
        return tuple(n for n, on in (("a-shift", self.a_shift), ("w-reshape", self.w_reshape),
                                     ("bitaug", self.bitaug), ("lora", self.lora)) if on)

    def chip(self, chip: ChipConfig) -> ChipConfig:
        """The chip the method trains and deploys on (A-shift turns the DAC setting on); a
        ``ConfigError`` where the method cannot run on it, before any work."""
        if self.bitaug and chip.adc.kind is ADCKind.RAMP:  # was found in the first step
            raise ConfigError("bitaug needs a linear ADC (adc.kind = 'sar', 'flash', "
                              "'single_slope', 'cco', 'integrate_fire' or 'tdc'); chip "
                              f"{chip.name} has a ramp NL-ADC")
        if not self.a_shift:
            return chip
        return chip.replace(dac=chip.dac.replace(shift_unsigned_inputs=True))

    def bits_set(self, chip: ChipConfig) -> tuple[int, ...]:
        """BitAug's set S: ``bitaug_bits``, else those of B_ADC + 1, B_ADC + 2 that an ADC
        can have (at most 24 bits); a ``ConfigError`` where none is left."""
        if self.bitaug_bits:
            return self.bitaug_bits
        bits = tuple(b for b in (chip.adc.bits + 1, chip.adc.bits + 2) if b <= 24)
        if self.bitaug and not bits:
            # an ideal 24-bit ADC: B+1 used to fail in the middle of the first step as
            # 'adc bits = 25 is invalid'
            raise ConfigError(f"bitaug: chip {chip.name} has a {chip.adc.bits}-bit ADC; "
                              "BitAug's default precisions B+1 and B+2 exceed the 24 bits an "
                              "ADC can have; set --option bitaug_bits=B1,B2 (each 1..24)")
        return bits

    def setup(self, prepared: PreparedModel, lr: float, seed: int = 0) -> list[dict]:
        """Attach the adapters (LoRA) and return Adam's parameter groups; with A-shift, a
        warning names the matrices whose inputs are signed (A-shift leaves them); W-reshape on
        a ternary twin is refused here, before any step (:func:`check_uniform_grid`)."""
        if self.a_shift:
            warn_unshifted(prepared)
        if self.w_reshape:
            check_uniform_grid(list(prepared.twins()))
        if self.lora:
            add_lora(prepared, self.lora_rank, self.lora_alpha, seed=seed)
        return param_groups(prepared, lr)

    def loss(self, prepared: PreparedModel, base: Callable[..., torch.Tensor]
             ) -> Callable[..., torch.Tensor]:
        """``base`` (a per-batch loss) with W-reshape's and BitAug's terms added (BitAug's
        ``sample`` draws from torch's generator, seeded per epoch by ``train_epoch``)."""
        bits = self.bits_set(prepared.chip)

        def loss_fn(*batch):
            loss = (bitaug_loss(prepared, base, batch, bits, mode=self.bitaug_mode)
                    if self.bitaug else base(*batch))
            if self.w_reshape:
                loss = loss + kurtosis_penalty(prepared, target=self.kurtosis_target,
                                               weight=self.kurtosis_weight)
            return loss

        return loss_fn

    def fit(self, prepared: PreparedModel, base: Callable[..., torch.Tensor],
            data: Sequence[torch.Tensor], *, epochs: int, lr: float, seed: int = 0,
            batch_size: int = 64, progress: bool = False,
            schedule: str = "constant", calibration=None) -> list[float]:
        """Train ``prepared`` with this method and leave it ready to deploy: the adapters and
        Adam's groups (:meth:`setup`), ``epochs`` passes of :func:`~cimsim.train.loop.train_epoch`
        over ``data`` with :meth:`loss` of ``base`` and the rate ``schedule``
        (:func:`~cimsim.train.loop.lr_schedule`: ``constant`` or ``cosine``), with
        ``bskmq_refit`` the NL-ADC levels refit after every epoch
        (:func:`~cimsim.train.bskmq.refit_chip_levels` on ``calibration``, default the
        training inputs ``data[0]``), then evaluation mode and, with LoRA, the adapters merged
        (deploy maps ordinary matrices). Returns each epoch's mean loss. ``cimsim train`` runs
        the same steps with a checkpoint per epoch."""
        check_schedule(schedule)  # before setup attaches anything to ``prepared``
        seed = check_seed(seed)
        # checked as distill checks them: epochs 0 returned [], lr -1 trained uphill and NaN
        # returned [nan], NumPy data failed on an attribute
        epochs = check_positive_int("epochs", epochs)
        lr = check_lr(lr)
        batch_size = check_positive_int("batch_size", batch_size)
        progress = check_flag(progress, "progress")  # (train_epoch's check: after setup)
        data = as_tensors("data", data)
        # the loss first: BitAug's precisions are checked there, and a refusal after setup
        # left LoRA adapters attached (a retry with the fix the message names then failed)
        loss_fn = self.loss(prepared, base)
        refit = self.bskmq and self.bskmq_refit
        cal = data[0] if calibration is None else calibration
        optimizer = torch.optim.Adam(self.setup(prepared, lr, seed))
        scheduler = lr_schedule(optimizer, schedule, epochs=epochs, n=int(data[0].shape[0]),
                                batch_size=batch_size)
        losses = []
        try:
            for epoch in range(epochs):
                losses.append(train_epoch(prepared, data, loss_fn, optimizer,
                                          batch_size=batch_size, seed=seed, epoch=epoch,
                                          progress=progress, scheduler=scheduler))
                if refit:  # it was accepted and ignored: the levels stayed frozen
                    refit_chip_levels(prepared, cal, batch_size=batch_size)
        finally:
            prepared.eval()  # a failed run too (it was left training, as distill does not)
        if self.lora:
            merge_lora(prepared)
        return losses


_OPTION_TYPES: dict[str, Callable[[str], object]] = {
    "kurtosis_target": float, "kurtosis_weight": float, "bitaug_mode": str,
    "lora_rank": int, "lora_alpha": float,
    "bitaug_bits": lambda s: tuple(int(v) for v in s.replace(",", " ").split()),
    "bskmq_refit": lambda s: {"true": True, "false": False}[s.lower()],
}

#: Each option's method part: an option for a part ``--method`` lacks would be ignored.
_OPTION_PART = {"kurtosis_target": "w-reshape", "kurtosis_weight": "w-reshape",
                "bitaug_bits": "bitaug", "bitaug_mode": "bitaug", "lora_rank": "lora",
                "lora_alpha": "lora", "bskmq_refit": "bskmq"}

#: What each option takes, checked here: a bad value found before the model is prepared
#: (``lora_rank=-1`` used to fail after it, as "LoRA rank", naming no flag).
_OPTION_ALLOWED: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "kurtosis_target": ("a kurtosis > 1 (a uniform distribution's is 1.8)",
                        lambda v: math.isfinite(v) and v > 1),
    "kurtosis_weight": ("a finite number >= 0",
                        lambda v: math.isfinite(v) and v >= 0),
    "bitaug_bits": ("ADC bits, each 1..24, e.g. 7,8",
                    lambda v: bool(v) and all(1 <= b <= 24 for b in v)),
    "bitaug_mode": (", ".join(BITAUG_MODES), lambda v: v in BITAUG_MODES),
    "lora_rank": ("an integer >= 1", lambda v: v >= 1),
    "lora_alpha": ("a finite number > 0",
                   lambda v: math.isfinite(v) and v > 0),
    "bskmq_refit": ("true or false", lambda v: True),
}


def parse_method(text: str, options: Mapping[str, object] | None = None) -> Recipe:
    """A :class:`Recipe` from ``qat``, ``distill``, ``raoq``, ``qat+a-shift+bitaug``, ...
    and ``KEY=VALUE`` options (:class:`Recipe` fields; each value read as its text, as
    ``--option`` gives it: ``4`` as ``'4'``); ``ConfigError`` names what is wrong."""
    parts = [p.strip() for p in str(text).split("+") if p.strip()]
    allowed = f"'+'-joined parts of {', '.join(BASES + PARTS)}"
    unknown = [p for p in parts if p not in BASES + PARTS]
    if not parts or unknown:
        raise ConfigError(f"--method: {text!r} is not a method ({unknown or 'empty'}); "
                          f"allowed: {allowed}")
    bases = [p for p in parts if p in BASES]
    if len(bases) > 1:
        raise ConfigError(f"--method: {text!r} has two base losses {bases}; allowed: one of "
                          f"{', '.join(BASES)}")
    on = set(parts) | ({"a-shift", "w-reshape", "bitaug", "lora"} if "raoq" in parts else set())
    if "bskmq" in on and on & {"bitaug", "pim-qat", "columnquant"}:
        raise ConfigError(f"--method: {text!r}: bskmq does not combine with "
                          f"{sorted(on & {'bitaug', 'pim-qat', 'columnquant'})}; allowed with "
                          "it: qat, distill, a-shift, w-reshape, lora")
    kw: dict[str, object] = {}
    fields_ = {f.name for f in dataclasses.fields(Recipe)} - {"base", "a_shift", "w_reshape",
                                                              "bitaug", "lora", "bskmq"}
    for key, value in (options or {}).items():
        if key not in _OPTION_TYPES:
            raise ConfigError(f"--option {key}: unknown; allowed: {', '.join(sorted(fields_))}")
        if _OPTION_PART[key] not in on:
            raise ConfigError(f"--option {key}: an option of {_OPTION_PART[key]}, which "
                              f"--method {text!r} does not include (it would be ignored); "
                              f"allowed: add +{_OPTION_PART[key]} to --method, or leave it out")
        allowed_text, ok = _OPTION_ALLOWED[key]
        try:
            # read as the text --option gives: a Python caller's 2.7 as a rank was cut to 2,
            # None or 1 failed in the conversion, naming no option
            kw[key] = _OPTION_TYPES[key](str(value))
            valid = ok(kw[key])
        except (ValueError, KeyError):
            valid = False
        if not valid:
            raise ConfigError(f"--option {key}={value!r} is invalid; allowed: {allowed_text}")
    return Recipe(base=bases[0] if bases else "qat", a_shift="a-shift" in on,
                  w_reshape="w-reshape" in on, bitaug="bitaug" in on, lora="lora" in on,
                  bskmq="bskmq" in on, **kw)  # type: ignore[arg-type]

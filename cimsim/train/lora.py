"""ADC-LoRA (RAOQ, ICML 2024 version): low-rank adapters trained under the chip forward.

Every mapped matrix keeps its float weights W0 frozen and learns ``ΔW = (α/r) · B · A``
(A: r × K, small random; B: N × r, zeros, so training starts at W0). The twin quantizes
``W0 + ΔW`` (its ``weight_delta`` hook), so the adapters train through the weight quantizer,
the arrays and the ADCs. :func:`merge_lora` folds ΔW into W0 before weight quantization: the
deployed layer is an ordinary quantized matrix with no inference overhead. The paper's exact
formulation was not read; this is the minimal form (Hu et al., "LoRA", ICLR 2022).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from .._seed import check_int, check_positive_number, check_seed
from ..errors import ConfigError
from .twin import PreparedModel, TwinMatmul

__all__ = ["LoRA", "add_lora", "lora_parameters", "merge_lora"]


class LoRA(nn.Module):
    """``(alpha / rank) · B @ A`` for an (N, K) matrix."""

    def __init__(self, n: int, k: int, rank: int, alpha: float, *, generator: torch.Generator,
                 dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.rank, self.alpha = rank, alpha
        bound = 1.0 / math.sqrt(k)  # nn.Linear's default range, as LoRA initialises A
        a = (torch.rand(rank, k, generator=generator, dtype=torch.float64) * 2 - 1) * bound
        self.A = nn.Parameter(a.to(device=device, dtype=dtype))
        self.B = nn.Parameter(torch.zeros(n, rank, dtype=dtype, device=device))

    def forward(self) -> torch.Tensor:
        return (self.alpha / self.rank) * (self.B @ self.A)


def add_lora(prepared: PreparedModel, rank: int = 4, alpha: float | None = None, *,
             seed: int = 0) -> list[nn.Parameter]:
    """Freeze every mapped matrix's float weights and attach a rank-``rank`` adapter to it.

    Parameters
    ----------
    prepared : PreparedModel
    rank : int
        r >= 1 (capped at min(N, K) per matrix).
    alpha : float, optional
        Scale α (default: ``rank``, i.e. ΔW = B·A).
    seed : int
        Draws of A.

    Returns
    -------
    list of nn.Parameter
        The adapters' parameters (also registered under each twin as ``lora``). A matrix
        whose weight is shared with another module (a head tied to an embedding) gets no
        adapter and a ``UserWarning`` names it: the merge would change the other module. Nor
        does a frozen one (``requires_grad=False`` in the float model, kept by ``prepare``):
        an adapter would train it and the merge unfreeze it; it is named and stays frozen.
    """
    rank = check_int("LoRA rank", rank, 1)
    alpha = check_positive_number("LoRA alpha", rank if alpha is None else alpha)
    # -1 and 2**64 - 1 drew the same adapters; 2**64 failed in torch naming no argument
    gen = torch.Generator().manual_seed(check_seed(seed))
    params: list[nn.Parameter] = []
    tied = _tied_weights(prepared)
    skipped: list[str] = []
    frozen: list[str] = []
    twins = [twin for _, twin in prepared.twins()]
    # all checked before any is adapted: a refusal at the second twin left the first with a
    # new adapter (its W0 frozen) whose parameters the caller never got
    for twin in twins:
        if getattr(twin, "lora", None) is not None:
            raise ConfigError(f"{twin.name}: already has a LoRA adapter (merge_lora first)")
    for twin in twins:
        if id(twin.weight) in tied:
            # merging W0 + ΔW into a shared weight would change the other module's use of it
            # (a tied head's embedding): the twin's outputs would move at the merge
            others = [n for n in tied[id(twin.weight)] if not n.startswith(f"{twin.name}.")]
            skipped.append(f"{twin.name} (tied to {', '.join(others)})")
            continue
        if not twin.weight.requires_grad:
            # frozen as its source was (a momentum teacher, a frozen backbone): an adapter
            # would train it, and the merge unfreeze it
            frozen.append(twin.name)
            continue
        n, k = twin.weight.shape
        r = min(rank, n, k)
        lora = LoRA(n, k, r, alpha * r / rank, generator=gen, dtype=twin.weight.dtype,
                    device=twin.weight.device)
        twin.lora = lora  # a submodule: in parameters() and state_dict()
        twin.weight_delta = lora.forward  # a plain attribute (the module is `lora`)
        twin.weight.requires_grad_(False)
        params += [lora.A, lora.B]
    if skipped:
        warnings.warn(f"add_lora: no adapter on {'; '.join(skipped)}: merging one into a "
                      "shared weight would change the other module too; it trains as before "
                      "(unfrozen)", UserWarning, stacklevel=2)
    if frozen:
        warnings.warn(f"add_lora: no adapter on {', '.join(frozen)}: frozen "
                      "(requires_grad=False, as in the float model); it stays frozen",
                      UserWarning, stacklevel=2)
    return params


def _tied_weights(prepared: PreparedModel) -> dict[int, list[str]]:
    """id -> names of every parameter of the model that is used under several names."""
    names: dict[int, list[str]] = {}
    for name, p in prepared.model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return {k: v for k, v in names.items() if len(v) > 1}


def lora_parameters(prepared: PreparedModel) -> list[nn.Parameter]:
    """The adapters' parameters of every twin that has one."""
    out: list[nn.Parameter] = []
    for _, t in prepared.twins():
        lora = getattr(t, "lora", None)
        if isinstance(lora, LoRA):
            out += [lora.A, lora.B]
    return out


def merge_lora(prepared: PreparedModel | TwinMatmul) -> None:
    """Fold every adapter into its matrix (``W0 ← W0 + ΔW``, computed as the forward computes
    it), remove the adapters and unfreeze W0. The twin's outputs do not change; ``deploy``
    then maps ordinary matrices."""
    twins = [prepared] if isinstance(prepared, TwinMatmul) else [t for _, t in prepared.twins()]
    for t in twins:
        lora = getattr(t, "lora", None)
        if lora is None:
            continue
        with torch.no_grad():
            t.weight.copy_(t.float_weight())
        t.weight_delta = None
        del t.lora
        t.weight.requires_grad_(True)

"""Patterns of HuggingFace ``transformers`` models that ``scripts/audit_transformers.py``
found cimsim getting wrong, rewritten by hand (no ``transformers`` import)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.mapping.functional import FUNCTIONAL_REASON
from cimsim.train import prepare

from .conftest import build_seeded, lossless_chip


class GroupedExperts(nn.Module):
    """A mixture of experts as transformers 5 runs Mixtral's and Qwen-MoE's (``MixtralExperts``
    with ``experts_implementation='grouped_mm'``, its default on CPU and GPU): the tokens
    sorted by their routed expert, one ``F.grouped_mm`` with the bank of expert matrices
    (E, K, N) and the cumulative token counts."""

    def __init__(self, d: int = 8, n_experts: int = 4):
        super().__init__()
        self.router = nn.Linear(d, n_experts)
        self.experts = nn.Parameter(torch.randn(n_experts, d, d) * 0.3)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        idx = self.router(x).argmax(-1)
        order = idx.argsort()
        offs = torch.bincount(idx, minlength=self.experts.shape[0]).cumsum(0).to(torch.int32)
        y = F.grouped_mm(x[order], self.experts, offs=offs)
        out = torch.empty_like(y)
        out[order] = y
        return self.head(torch.relu(out))


@pytest.mark.skipif(not hasattr(F, "grouped_mm"), reason="torch without F.grouped_mm")
@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_an_expert_bank_in_grouped_mm_is_named_digital_not_silent(run):
    """The experts' products computed in float with nothing listed or warned: the watch of
    functional weights knew no grouped product. Named and warned as any functional weight."""
    model, (x,) = build_seeded(GroupedExperts, lambda: (torch.randn(12, 8),))
    with pytest.warns(UserWarning, match=r"1 weight\(s\) reach a matrix product.*experts"):
        out = run(model, lossless_chip("channel"), x)
    assert ("experts", "parameter", FUNCTIONAL_REASON) in out.digital

"""Weights that reach a product inside compiled code: a ``torch.jit.script`` function called
from a Python forward runs its ``x @ w.t()`` in the TorchScript interpreter, where no torch
function call shows it, so the functional watch (``cimsim.mapping.functional``) saw nothing and
the weight computed in float unlisted. The dispatcher still sees the ``aten.mm``: those weights
are named in the digital list (``COMPILED_REASON``) and warned, by deploy and by ``prepare``."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import cimsim
from cimsim.mapping.functional import COMPILED_REASON, FUNCTIONAL_REASON
from cimsim.train import prepare


@torch.jit.script
def _project(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x @ w.t()


@torch.jit.script
def _affine(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.addmm(b, x, w.t())


@torch.jit.script
def _gram(x: torch.Tensor) -> torch.Tensor:
    return x @ x.t()


class _Scripted(nn.Module):
    """A mapped layer, then a weight applied by a scripted function."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.w = nn.Parameter(torch.randn(4, 8))

    def forward(self, x):
        return _project(self.fc(x), self.w)


class _ScriptedAffine(nn.Module):
    """``addmm`` in a scripted function: the weight is a factor, the bias is not."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.w = nn.Parameter(torch.randn(4, 8))
        self.b = nn.Parameter(torch.randn(4))

    def forward(self, x):
        return _affine(self.fc(x), self.w, self.b)


class _ScriptedGram(nn.Module):
    """A scripted product of activations only: no weight to name."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return _gram(self.fc(x))


class _Functional(nn.Module):
    """A functional weight in Python: named once, as functional, not also as compiled."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.w = nn.Parameter(torch.randn(4, 8))

    def forward(self, x):
        return nn.functional.linear(self.fc(x), self.w)


def _rows(sim) -> dict[str, str]:
    return {row.layer: row.reason for row in sim.report().digital.itertuples()}


def _deployed(model: nn.Module):
    torch.manual_seed(0)
    return cimsim.deploy(model, "rram-22nm", torch.randn(16, 8), seed=0)


def test_a_weight_used_in_a_scripted_function_is_named_and_warned():
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match=r"inside compiled code .* w \(mm"):
        sim = _deployed(_Scripted())
    assert _rows(sim) == {"w": COMPILED_REASON}
    assert sim.report().layers["layer"].tolist() == ["fc"]  # the Python layer still maps


def test_a_scripted_bias_is_no_factor():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sim = _deployed(_ScriptedAffine())
    assert _rows(sim) == {"w": COMPILED_REASON}


def test_a_scripted_product_of_activations_names_no_weight():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing claimed simulated is float
        sim = _deployed(_ScriptedGram())
    assert _rows(sim) == {}


def test_a_functional_weight_is_named_once_as_functional():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sim = _deployed(_Functional())
    assert _rows(sim) == {"w": FUNCTIONAL_REASON}


def test_prepare_names_a_scripted_weight_too():
    torch.manual_seed(0)
    model, x = _Scripted(), torch.randn(16, 8)
    with pytest.warns(UserWarning, match=r"inside compiled code .* w \(mm"):
        prep = prepare(model, cimsim.load_chip("rram-22nm"), x, seed=0)
    back = prep.deploy()
    assert _rows(back) == {"w": COMPILED_REASON}

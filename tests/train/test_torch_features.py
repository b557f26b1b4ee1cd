"""The training twin with standard torch features: parametrizations with a training-mode draw,
tracing and dtype conversion after ``prepare``."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

from cimsim.errors import MappingError
from cimsim.train import prepare


class DropConnect(nn.Module):
    """A weight parametrization that draws a mask in training mode (DropConnect)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * (torch.rand_like(w) > 0.5) * 2 if self.training else w


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_a_training_draw_of_a_parametrized_weight_is_not_the_twins_weight():
    """prepare read the parametrized weight with the model in training mode (models usually
    are): a DropConnect mask's draw became the twin's weight, half its entries zero, silently
    (0.81 off the float model on ``ideal``, where the twin is 0.012 off); it reads it in eval
    mode, as deploy does, and leaves each module's mode as it was."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    parametrize.register_parametrization(model[0], "weight", DropConnect())
    model.train()
    x = torch.randn(64, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin = prepare(model, "ideal", x, seed=0)
    assert model.training and model[0].parametrizations.weight[0].training
    twin.eval()
    model.eval()
    with torch.no_grad():
        assert _rel(twin(x), model(x)) < 0.05


def _twin() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    x = torch.randn(8, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare(model, "ideal", x, seed=0), x


def test_a_traced_twin_is_refused_naming_the_layer():
    """torch.jit.trace of a prepared model failed inside torch ("unordered_map::at"); the
    twin's ADC is NumPy, which no tracer records."""
    twin, x = _twin()
    with pytest.raises(MappingError, match=r"^0: called under torch\.jit\.trace"):
        torch.jit.trace(twin, x, check_trace=False)
    with pytest.raises(MappingError, match=r"^0: called under torch\.fx symbolic tracing"):
        torch.fx.symbolic_trace(twin.model)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_twin_cast_to_half_after_prepare_is_refused_as_prepare_refuses_it(dtype):
    """prepared.half() then a call failed in Numba ("NotImplementedError: float16"), and
    .bfloat16() in torch ("Got unsupported ScalarType BFloat16"), naming no layer."""
    twin, x = _twin()
    twin.to(dtype)
    with pytest.raises(MappingError, match=r"^0: hold float16/bfloat16 weights"):
        twin(x.to(dtype))
    twin.float()
    twin(x)  # cast back, it runs


def test_a_compiled_twin_trains_as_the_twin_with_no_graph_break_warnings(caplog):
    """torch.compile of a prepared model traced into the twins' NumPy and Numba: it trained
    right, but printed Dynamo's graph-break warnings for every layer (a ``Tensor.item()`` in
    the step check, a functorch builtin in the input check). The twin layers run eagerly in a
    compiled model, as deployed layers do: the same outputs and gradients, and no warning."""
    import logging

    twin, x = _twin()
    twin.train()
    y = torch.randint(0, 4, (8,))
    torch.manual_seed(5)
    nn.functional.cross_entropy(twin(x), y).backward()
    ref = [p.grad.clone() for p in twin.parameters() if p.grad is not None]
    twin.zero_grad()
    compiled = torch.compile(twin, backend="eager")
    torch.manual_seed(5)
    with warnings.catch_warnings(record=True) as said, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        nn.functional.cross_entropy(compiled(x), y).backward()
    got = [p.grad for p in twin.parameters() if p.grad is not None]
    assert len(got) == len(ref) > 0
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not [str(w.message)[:80] for w in said]
    assert not [r.getMessage()[:80] for r in caplog.records if "Graph break" in r.getMessage()]

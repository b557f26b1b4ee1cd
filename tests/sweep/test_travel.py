"""What a sweep's workers receive, and a point value beyond a float (a hunt over sweeps,
2026-12-04): a model holding a lambda ran with ``jobs=1`` and on Dask but failed with a
pickling traceback under ``jobs=2``; a non-persistent buffer changed the outputs, not the
point ids; ``time_s = 10**400`` was an OverflowError."""

from __future__ import annotations

import hashlib
import threading

import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import ConfigError
from cimsim.sweep import run_sweep, runner
from cimsim.sweep.grid import resolve_point
from cimsim.sweep.runner import SweepContext, pickled_context
from cimsim.sweep.store import _hash_named, model_fingerprint


class _Lambda(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.act = lambda t: torch.relu(t)

    def forward(self, x):
        return self.act(self.fc(x))


class _Masked(nn.Module):
    def __init__(self, mask: float) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.register_buffer("mask", torch.full((2,), mask), persistent=False)

    def forward(self, x):
        return self.fc(x) * self.mask


def _context(model: nn.Module) -> SweepContext:
    x = torch.randn(8, 4)
    return SweepContext(model=model, chip=cimsim.load_chip("ideal"), x_cal=x, x_eval=x,
                        y_eval=None, seed=0, batch_size=8)


def test_a_worker_receives_a_model_holding_a_lambda(monkeypatch):
    blob = runner._pool_context(_context(_Lambda()))
    assert isinstance(blob, bytes)  # the standard pickle fails on the lambda
    plain = _context(nn.Linear(4, 2))
    assert runner._pool_context(plain) is plain  # tensors through shared memory, as before
    monkeypatch.setattr(runner, "_WORKER", {})
    monkeypatch.setattr(runner, "limit_threads", lambda: None)
    monkeypatch.setattr(runner, "_die_with_parent", lambda pid: None)
    monkeypatch.setattr(runner.signal, "signal", lambda *a: None)
    runner._init_worker(blob)
    got = runner._WORKER["ctx"]
    assert isinstance(got.model, _Lambda)
    assert got.model(torch.randn(3, 4)).shape == (3, 2)


def test_a_model_that_cannot_travel_is_one_line_naming_jobs_1():
    model = _Lambda()
    model.lock = threading.Lock()
    with pytest.raises(ConfigError, match=r"cannot be sent to worker processes .*\(--jobs 1\)"):
        pickled_context(_context(model))


def test_a_non_persistent_buffer_is_part_of_the_model_s_id():
    torch.manual_seed(0)
    a = _Masked(1.0)
    b = _Masked(3.0)
    b.load_state_dict(a.state_dict())
    assert model_fingerprint(a) != model_fingerprint(b)
    plain = nn.Linear(4, 2)  # no such buffer: the id it had before they were hashed
    before = hashlib.sha256(b"Linear" + repr(plain).encode())  # class, structure, state
    _hash_named(before, plain.state_dict().items())
    assert model_fingerprint(plain) == before.hexdigest()


@pytest.mark.parametrize("axis", ["time_s", "thermal_sigma_lsb"])
def test_a_value_beyond_a_float_is_refused_naming_it(axis, tmp_path):
    chip = cimsim.load_chip("pcm-22nm")
    assert resolve_point(chip, {axis: 10**400})[axis] == 10**400  # kept for the check
    x = torch.randn(16, 4)
    with pytest.raises(ConfigError, match=axis):
        run_sweep(nn.Linear(4, 2), (x, None), chip, {axis: [10**400]}, tmp_path,
                  calibration=8, progress=False)
    assert not (tmp_path / "sweep.jsonl").exists()


class _WithExtraState(nn.Linear):
    def __init__(self, tag: str):
        super().__init__(4, 2)
        self.tag = tag

    def get_extra_state(self):
        return {"tag": self.tag}

    def set_extra_state(self, state):
        self.tag = state["tag"]


def test_a_model_with_extra_state_has_an_id():
    """A module's extra state (``get_extra_state``: a prepared twin's seed) is no tensor: the
    id was an AttributeError."""
    torch.manual_seed(0)
    a, b = _WithExtraState("x"), _WithExtraState("y")
    b.load_state_dict({k: v for k, v in a.state_dict().items() if k != "_extra_state"},
                      strict=False)
    assert model_fingerprint(a) == model_fingerprint(a)
    assert model_fingerprint(a) != model_fingerprint(b)

"""Shared fixtures of the sweep tests: ``run_sweep`` with its points faked (no deploy)."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def toy_sweep_model():
    """(model, x, y): a seeded ``nn.Linear(4, 3)`` and 8 inputs of 3 classes."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    x = torch.randn(8, 4)
    return model, x, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])


class FakePoints:
    """``run_points`` in place: each point 'ok' at once, its record as a sweep writes it;
    ``lost`` ids reported lost instead. The ids it was asked to run in ``todo`` (one list per
    sweep) and the last ``sweep.json`` meta in ``meta``."""

    def __init__(self, lost=()):
        self.lost, self.todo, self.meta = list(lost), [], None

    def run_points(self, ctx, todo, jobs, finish, client=None):
        self.todo.append([pid for pid, _ in todo])
        for pid, p in todo:
            if pid not in self.lost:
                finish({"point_id": pid, "point": p, "status": "ok", "final": True,
                        "accuracy": 0.5, "energy_pj_per_inference": 1.0})
        return [pid for pid, _ in todo if pid in self.lost]

    def write_outputs(self, frame, out, meta):
        self.meta = meta
        return []


@pytest.fixture
def fake(monkeypatch):
    """:class:`FakePoints` in place of ``run_sweep``'s point runner and file writer."""
    from cimsim.sweep import run

    f = FakePoints()
    monkeypatch.setattr(run, "run_points", f.run_points)
    monkeypatch.setattr(run, "write_outputs", f.write_outputs)
    return f


def run_faked(out, grid=None, data=None, **kw):
    """``run_sweep`` of :func:`toy_sweep_model` on ``ideal`` into ``out`` (calibration 2
    unless given, no progress bar; ``model=`` and ``data=`` replace the toy's)."""
    from cimsim.sweep import run_sweep

    model, x, y = toy_sweep_model()
    kw.setdefault("progress", False)
    kw.setdefault("calibration", 2)
    return run_sweep(kw.pop("model", model), (x, y) if data is None else data, "ideal",
                     grid or {"adc_bits": [4, 5]}, out, **kw)

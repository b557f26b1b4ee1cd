"""Files that belong together are written as a set (a hunt over stops and failures,
2026-12-04): a report stopped after three of its twelve files left new tables beside the
earlier run's page, and a report.json that was a folder let six tables be written first."""

from __future__ import annotations

import signal

import pytest
import torch
from torch import nn

import cimsim
from cimsim import _atomic
from cimsim.errors import CimsimError


@pytest.fixture(scope="module")
def report():
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(8, 4)), torch.randn(6, 8)
    sim = cimsim.deploy(model, "ideal", x, seed=0)
    sim(x)
    return sim.report()


def test_a_folder_in_a_file_s_place_is_refused_before_any_write(report, tmp_path):
    (tmp_path / "report.json").mkdir()
    with pytest.raises(CimsimError, match="report.json' is a folder where a file is to be "
                                          "written; nothing was written"):
        report.save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_stop_during_the_writes_comes_after_the_last(report, tmp_path, monkeypatch):
    """SIGINT after the third file: every file of the set is written, then the stop."""
    real, written = _atomic.write_bytes, []

    def write(path, data):
        written.append(path.name)
        if len(written) == 3:
            signal.raise_signal(signal.SIGINT)
        return real(path, data)

    monkeypatch.setattr(_atomic, "write_bytes", write)
    handler = signal.getsignal(signal.SIGINT)
    if handler is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's KeyboardInterrupt in this process")
    with pytest.raises(KeyboardInterrupt):
        report.save(tmp_path)
    assert len(written) > 3 and written[-1] == "report.html"
    assert sorted(written) == sorted(p.name for p in tmp_path.iterdir())
    assert signal.getsignal(signal.SIGINT) is handler  # put back

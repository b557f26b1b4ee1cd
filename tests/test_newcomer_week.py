"""A researcher's first week with cimsim, from the docs only: their own model and data on the
presets and on a chip file of their own, a sweep left running in the background, the plots they
read. Each test failed before the fix its docstring names.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import cimsim
from cimsim.sweep import run_sweep


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A 6-4 Linear of one's own and 12 labelled inputs (no bundled model or data)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4)).eval()
    x = torch.rand(12, 6)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


# --- a sweep's progress where no terminal shows a bar ----------------------------------------

def test_sweep_off_a_terminal_says_each_point_as_it_finishes(tiny, tmp_path, capsys):
    """Was: ``nohup cimsim sweep ... > log`` (or a sweep under CI) wrote nothing at all until
    every point had run: tqdm hides its bar off a terminal, and the command's first line is
    printed after the sweep, so a sweep stopped after an hour left an empty log. Now each
    finished point is one line on stderr, counted against the whole grid, and a resumed sweep
    counts on from the points already done."""
    model, x, y = tiny
    chip = cimsim.load_chip("ideal")
    run_sweep(model, (x, y), chip, {"adc_bits": [20, 22]}, tmp_path, calibration=4)
    err = capsys.readouterr().err
    done = re.findall(r"^sweep: (\d+)/(\d+) points done; \{'adc_bits': (\d+)\}: ok$", err,
                      flags=re.M)
    assert done == [("1", "2", "20"), ("2", "2", "22")], err
    # resumed with one more point: only that one runs, counted after the two already done
    run_sweep(model, (x, y), chip, {"adc_bits": [20, 22, 24]}, tmp_path, calibration=4)
    err = capsys.readouterr().err
    assert re.findall(r"^sweep: (\d+)/(\d+) points done", err, flags=re.M) == [("3", "3")], err
    # progress=False: silent, as before
    run_sweep(model, (x, y), chip, {"adc_bits": [23]}, tmp_path, calibration=4, progress=False)
    assert "points done" not in capsys.readouterr().err

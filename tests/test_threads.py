"""Numba's pool must not change torch's thread count (cimsim/_threads.py).

Each case runs in a fresh interpreter: the pool starts once per process, so in this one it has
long been started by the time the test runs.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

_SCRIPT = """
import torch
import cimsim
import cimsim.train
torch.set_num_threads(1)
m = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
x = torch.rand(8, 64)
assert torch.get_num_threads() == 1  # as a user checks it: this starts torch's pool
{body}
print(torch.get_num_threads())
"""

_CASES = {
    "deploy and forward": "cimsim.deploy(m, 'rram-22nm', calibration=x)(x)",
    "training twin": "p = cimsim.train.prepare(m, 'rram-22nm', calibration=x)\n"
                     "p(x).sum().backward()",
}


@pytest.mark.parametrize("body", list(_CASES.values()), ids=list(_CASES))
def test_torch_thread_count_survives_the_first_kernel(body: str) -> None:
    out = subprocess.run([sys.executable, "-c", _SCRIPT.format(body=body)], check=True,
                         capture_output=True, text=True, timeout=300)
    assert out.stdout.split()[-1] == "1", out.stdout + out.stderr

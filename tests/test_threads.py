"""Numba's pool must not change torch's thread count (cimsim/_threads.py), and OpenMP must
wait passively from the first import of torch (cimsim/__init__.py).

Each case runs in a fresh interpreter: the pool starts once per process, so in this one it has
long been started by the time the test runs.
"""

from __future__ import annotations

import os
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


_POLICY_AT_TORCH = """
import builtins, os, sys
seen = []
real_import = builtins.__import__
def spy(name, *args, **kwargs):
    if name == "torch" and "torch" not in sys.modules:
        seen.append(os.environ.get("OMP_WAIT_POLICY"))
    return real_import(name, *args, **kwargs)
builtins.__import__ = spy
{imports}
import torch
print(seen[0])
"""


@pytest.mark.parametrize("imports", ["import cimsim.cli", "import cimsim",
                                     "import cimsim.train"])
def test_openmp_waits_passively_from_the_first_torch_import(imports: str) -> None:
    """libgomp reads OMP_WAIT_POLICY once, when torch (or a Numba kernel) loads it: set after
    ``import torch``, the policy was ignored and torch's spinning workers slowed every
    `cimsim train` step beside another busy process."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", _POLICY_AT_TORCH.format(imports=imports)],
                         check=True, capture_output=True, text=True, timeout=300, env=env)
    assert out.stdout.split()[-1] == "PASSIVE", out.stdout + out.stderr

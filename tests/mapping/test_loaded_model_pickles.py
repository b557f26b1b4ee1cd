"""A model loaded from a ``.pt2`` or TorchScript file pickles (``sweep --jobs`` / ``--scheduler``).

``ExportedProgram.module()`` holds local functions that pickle refuses; ``cimsim sweep --model
model.pt2 --jobs 2`` (and ``--scheduler``, docs/sweep.md) failed with "Can't pickle local
object" / "cannot pickle 'ConfigModuleInstance'". The oracle: the original module's outputs,
bit for bit, after a round trip through each pickler a sweep uses.
"""

from __future__ import annotations

import pickle
from multiprocessing.reduction import ForkingPickler

import cloudpickle
import pytest
import torch

from cimsim.mapping import loaders
from cimsim.mapping.loaders import load_model
from tests.mapping.test_loaders import _check_rewritten, _export_dynamic, _Net

PICKLERS = {
    "pickle": pickle.dumps,
    "spawn pool (ForkingPickler)": lambda o: bytes(ForkingPickler.dumps(o)),
    "dask (cloudpickle)": cloudpickle.dumps,
}


@pytest.fixture(scope="module")
def net_and_x():
    torch.manual_seed(0)
    net = _Net().eval()
    for p in net.parameters():
        p.data.normal_(0.0, 0.5)
    return net, torch.randn(4, 3, 9, 9)


@pytest.mark.parametrize("dumps", PICKLERS.values(), ids=PICKLERS.keys())
def test_pt2_model_survives_pickling(net_and_x, tmp_path, dumps):
    net, x = net_and_x
    path = tmp_path / "net.pt2"
    torch.export.save(_export_dynamic(net, x), path)
    loaded = load_model(str(path))
    path.unlink()  # the receiver needs no file system shared with the sender
    again = pickle.loads(dumps(loaded))
    _check_rewritten(again, net, x)
    _check_rewritten(pickle.loads(dumps(again)), net, x)  # and travels on


def test_torchscript_model_survives_pickling(net_and_x, tmp_path):
    if loaders.torchscript_converter() is None:
        pytest.skip("this torch has no TorchScript converter")
    net, x = net_and_x
    path = tmp_path / "net.ts"
    torch.jit.trace(net, (x,)).save(str(path))
    loaded = load_model(str(path), x)
    _check_rewritten(pickle.loads(cloudpickle.dumps(loaded)), net, x)

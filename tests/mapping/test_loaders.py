"""Model loading for the command line: exported and TorchScript graphs become mappable modules.

The oracle is the original ``nn.Module``: the rewritten graph must give its outputs, and every
weight layer must reappear as an ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` holding the
same weights.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cimsim
from cimsim.mapping import loaders
from cimsim.mapping.loaders import LoadError, load_model, modules_from_graph
from tests.mapping.conftest import lossless_chip

_ATEN_WEIGHT_OPS = {"aten.linear.default", "aten.conv1d.default", "aten.conv2d.default",
                    "aten.conv2d.padding", "aten.convolution.default",
                    "aten._convolution_mode.default"}


class _Net(nn.Module):
    """Every argument modules_from_graph must carry: stride, padding (int and "same"),
    dilation, groups, with and without bias, 1-d and 2-d convolutions, linear layers."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding="same", dilation=2, groups=2, bias=False)
        self.c3 = nn.Conv1d(8, 4, 5, padding=2)
        self.fc = nn.Linear(20, 6)
        self.fc2 = nn.Linear(6, 3, bias=False)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        x = x.flatten(2).mean(-1, keepdim=True).expand(-1, -1, 5)
        x = self.c3(x).flatten(1)
        return self.fc2(torch.relu(self.fc(x)))


@pytest.fixture(scope="module")
def net_and_x():
    torch.manual_seed(0)
    net = _Net().eval()
    for p in net.parameters():  # weights far from the default init's tiny values
        p.data.normal_(0.0, 0.5)
    return net, torch.randn(4, 3, 9, 9)


def _check_rewritten(gm: nn.Module, net: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(gm(x), net(x), rtol=0, atol=0)
    left = {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
    assert not left & _ATEN_WEIGHT_OPS, left & _ATEN_WEIGHT_OPS
    made = [m for m in gm.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    orig = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    assert [type(m) for m in made] == [type(m) for m in orig]
    for m, o in zip(made, orig, strict=True):
        assert torch.equal(m.weight, o.weight)
        assert (m.bias is None) == (o.bias is None)
        if isinstance(o, (nn.Conv1d, nn.Conv2d)):
            for attr in ("stride", "padding", "dilation", "groups"):
                assert getattr(m, attr) == getattr(o, attr), attr


def test_modules_from_graph_of_an_export_equals_the_model(net_and_x):
    net, x = net_and_x
    ep = torch.export.export(net, (x,))
    _check_rewritten(modules_from_graph(ep.module()), net, x)


def test_pt2_archive_loads_to_the_same_outputs(net_and_x, tmp_path):
    net, x = net_and_x
    path = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(net, (x,)), path)
    _check_rewritten(load_model(str(path)), net, x)


def test_torchscript_file_converts_to_the_same_outputs(net_and_x, tmp_path):
    if loaders.torchscript_converter() is None:
        pytest.skip("this torch has no TorchScript converter; the fallback is tested below")
    net, x = net_and_x
    path = tmp_path / "net.ts"
    torch.jit.trace(net, (x,)).save(str(path))
    # the converter writes aten.convolution / aten._convolution_mode, not aten.conv2d
    _check_rewritten(load_model(str(path), x), net, x)


def test_torchscript_without_the_converter_says_to_export(net_and_x, tmp_path, monkeypatch):
    net, x = net_and_x
    path = tmp_path / "net.ts"
    torch.jit.trace(net, (x,)).save(str(path))
    monkeypatch.setattr(loaders, "torchscript_converter", lambda: None)
    with pytest.raises(LoadError, match=r"no TorchScript converter.*torch\.export\.export"):
        load_model(str(path), x)
    # the .pt2 route it points to still works without the converter
    pt2 = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(net, (x,)), pt2)
    _check_rewritten(load_model(str(pt2)), net, x)


def test_loaded_graph_maps_every_weight_layer(net_and_x):
    net, x = net_and_x
    gm = modules_from_graph(torch.export.export(net, (x,)).module())
    sim = cimsim.deploy(gm, lossless_chip("channel"), x)
    assert len(sim.sim_layers) == 5
    assert not [d for d in sim.digital if d[1] in ("Linear", "Conv1d", "Conv2d")]


def test_computed_weights_are_refused():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return nn.functional.linear(x, self.fc.weight * 2.0, self.fc.bias)

    ep = torch.export.export(Scaled(), (torch.randn(1, 4),))
    with pytest.raises(LoadError, match="computed in the graph"):
        modules_from_graph(ep.module())

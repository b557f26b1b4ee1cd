"""Modules that are a Linear in all but name (``cimsim/mapping/affine.py``): GPT-2's ``Conv1D``,
hand-written ``x @ W.T + b``, a weight-only ``x @ W``, an ``nn.Linear`` subclass whose own
forward still computes ``F.linear``. They ran in float (listed by the functional watch, or
refused as an overriding subclass): a GPT-2 put nothing on the arrays. Now each is mapped as the
Linear it computes, under its own name, in deploy and prepare; anything else stays as before."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import cimsim
from cimsim.mapping.affine import affine_source
from cimsim.train import prepare
from cimsim.train.twin import TwinAffine, TwinLinear

from ..mapping.test_zoo3 import Conv1D


class HandLinear(nn.Module):
    """``x @ W.T + b`` written out, the weight (out, in) as nn.Linear holds it."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) * 0.3)
        self.bias = nn.Parameter(torch.randn(n_out) * 0.1)

    def forward(self, x):
        return x @ self.weight.T + self.bias


class Project(nn.Module):
    """A bias-free projection stored (in, out): ``x @ W``."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) * 0.3)

    def forward(self, x):
        return torch.matmul(x, self.weight)


class LoggedLinear(nn.Linear):
    """A subclass whose own forward only counts its calls around ``F.linear``."""

    calls = 0

    def forward(self, x):
        type(self).calls += 1
        return super().forward(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = Conv1D(12, 8)  # (in 8, out 12), stored (8, 12)
        self.b = HandLinear(12, 10)
        self.c = Project(10, 6)
        self.d = LoggedLinear(6, 3)

    def forward(self, x):
        return self.d(F.relu(self.c(F.relu(self.b(F.gelu(self.a(x)))))))


class Linears(Net):
    """The same network of nn.Linear layers, under the same names."""

    def __init__(self, net: Net):
        nn.Module.__init__(self)
        for name, (w, b) in {"a": (net.a.weight.T, net.a.bias), "b": (net.b.weight, net.b.bias),
                             "c": (net.c.weight.T, None),
                             "d": (net.d.weight, net.d.bias)}.items():
            lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
            with torch.no_grad():
                lin.weight.copy_(w)
                if b is not None:
                    lin.bias.copy_(b)
            setattr(self, name, lin)


def test_linears_under_other_names_deploy_as_the_linears_they_compute():
    """Mapped under their own names, and (programming draws seeded by the names) on
    rram-22nm bit for bit what the same network of nn.Linear layers gives."""
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(3, 5, 8)
    chip = cimsim.load_chip("rram-22nm")
    sim = cimsim.deploy(net, chip, x, seed=4)
    ref = cimsim.deploy(Linears(net).eval(), chip, x, seed=4)
    assert list(sim.sim_layers) == list(ref.sim_layers) == ["a", "b", "c", "d"]
    assert sim.digital == []
    with torch.no_grad():
        assert torch.equal(sim(x), ref(x))
    assert sim.report().totals["energy_pj_per_inference"] == pytest.approx(
        ref.report().totals["energy_pj_per_inference"], rel=1e-12)


def test_the_probe_leaves_the_random_state_and_the_users_hooks_alone():
    torch.manual_seed(1)
    net = Net().eval()
    state = torch.random.get_rng_state()
    assert all(affine_source(m) is not None for m in (net.a, net.b, net.c, net.d))
    assert torch.equal(torch.random.get_rng_state(), state)
    seen = []
    net.a.register_forward_hook(lambda _m, _a, out: seen.append(out.shape))
    sim = cimsim.deploy(net, cimsim.load_chip("ideal"), torch.randn(4, 8))
    seen.clear()
    sim(torch.randn(2, 8))
    assert seen == [torch.Size([2, 12])]  # the hook came along, and sees only real calls


class Standardized(nn.Linear):
    """Its own forward standardizes the weight: not the raw weight's Linear."""

    def forward(self, x):
        w = self.weight
        return F.linear(x, (w - w.mean(1, keepdim=True)) / (w.std(1, keepdim=True) + 1e-5),
                        self.bias)


class Scaled(HandLinear):
    def forward(self, x):
        return 2.0 * super().forward(x)


class Gated(HandLinear):
    def forward(self, x):
        return torch.relu(super().forward(x))


class WithBuffer(HandLinear):
    def __init__(self, n_in: int, n_out: int):
        super().__init__(n_in, n_out)
        self.register_buffer("scale", torch.ones(n_out))

    def forward(self, x):
        return super().forward(x) * self.scale


class Elementwise(nn.Module):
    """A 2-D weight used element by element: no product."""

    def __init__(self, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, n))

    def forward(self, x):
        return x * self.weight


@pytest.mark.parametrize("make", [lambda: Standardized(6, 4), lambda: Scaled(6, 4),
                                  lambda: Gated(6, 4), lambda: WithBuffer(6, 4),
                                  lambda: Elementwise(6)])
def test_modules_computing_something_else_are_not_taken_for_a_linear(make):
    torch.manual_seed(2)
    module = make()
    assert affine_source(module) is None
    model = nn.Sequential(module, nn.Linear(6 if isinstance(module, Elementwise) else 4, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sim = cimsim.deploy(model, cimsim.load_chip("ideal"), torch.randn(4, 6))
    assert list(sim.sim_layers) == ["1"]
    if not isinstance(module, Elementwise):  # an overriding subclass or a functional weight
        assert any("0" in str(w.message) for w in caught)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 9), st.integers(1, 9), st.booleans(), st.booleans(),
       st.sampled_from([torch.float32, torch.float64]))
def test_the_layout_and_bias_are_found(n_in, n_out, transposed, bias, dtype):
    """(One input feature is refused: ``x * w`` over a (1, n) weight is then a Linear too.)"""
    w = torch.randn(n_out, n_in, dtype=dtype)
    b = torch.randn(n_out, dtype=dtype) if bias else None

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(w.T.clone() if transposed else w.clone())
            self.bias = None if b is None else nn.Parameter(b.clone())

        def forward(self, x):
            y = x @ self.weight if transposed else x @ self.weight.T
            return y if self.bias is None else y + self.bias

    found = affine_source(Custom())
    assert found is not None
    # a square weight is its own candidate first: both layouts are then the same map only
    # when it is symmetric, so the layout found must reproduce the weight
    torch.testing.assert_close(found.linear.weight.detach(), w, rtol=0, atol=0)
    assert (found.linear.bias is None) == (b is None)
    if b is not None:
        torch.testing.assert_close(found.linear.bias.detach(), b, rtol=0, atol=0)
    assert found.linear.weight.dtype == dtype


def test_excluded_by_name_like_any_layer():
    torch.manual_seed(3)
    sim = cimsim.deploy(Net().eval(), cimsim.load_chip("ideal"), torch.randn(4, 8),
                        exclude=["a"])
    assert list(sim.sim_layers) == ["b", "c", "d"]
    assert sim.digital == [("a", "Conv1D", "excluded by the user")]


def test_prepare_trains_them_and_gives_the_modules_back_in_their_own_layout():
    torch.manual_seed(4)
    net = Net().double()
    x = torch.randn(16, 8, dtype=torch.float64)
    prep = prepare(net, cimsim.load_chip("rram-22nm"), x, seed=0)
    assert {n: type(t) for n, t in prep.twin_layers.items()} == {
        "a": TwinAffine, "b": TwinAffine, "c": TwinAffine, "d": TwinAffine}
    assert all(isinstance(t, TwinLinear) for t in prep.twin_layers.values())
    assert prep.digital == []
    opt = torch.optim.SGD([p for p in prep.parameters() if p.requires_grad], lr=0.05)
    prep.train()
    prep(x).square().mean().backward()
    opt.step()
    back = prep.float_model()
    assert {n: type(m) for n, m in back.named_modules()} == \
        {n: type(m) for n, m in net.named_modules()}
    (twin_a,) = prep.twin_layers["a"].matrices()
    assert back.a.weight.shape == net.a.weight.shape  # (in, out), as Conv1D holds it
    torch.testing.assert_close(back.a.weight, twin_a.weight.detach().T)
    assert not torch.equal(back.a.weight, net.a.weight)  # it learned
    with torch.no_grad():  # the float module computes with what the twin learned
        assert torch.isfinite(back.eval()(x)).all()
    deployed = prep.eval().deploy()
    assert list(deployed.sim_layers) == ["a", "b", "c", "d"]


def test_an_exported_model_maps_them_as_the_module_does(tmp_path):
    """In a .pt2 the same layers are ``aten.addmm(b, x, W)``, ``x @ W.T`` then ``+ b``,
    ``x @ W`` and ``aten.linear`` under a subclass: each becomes the Linear (the added bias
    folded in) under its module's name, and deploys on rram-22nm bit for bit as the module."""
    from cimsim.mapping.loaders import load_model

    torch.manual_seed(5)
    net, x = Net().eval(), torch.randn(8, 8)
    ep = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("b")},))
    torch.export.save(ep, tmp_path / "net.pt2")
    loaded = load_model(str(tmp_path / "net.pt2"), x)
    calls = {n.target for n in loaded.graph.nodes if n.op == "call_module"}
    assert {"a", "b", "c", "d"} <= calls
    chip = cimsim.load_chip("rram-22nm")
    a = cimsim.deploy(net, chip, x, seed=3)
    b = cimsim.deploy(loaded, chip, x, seed=3)
    assert list(b.sim_layers) == list(a.sim_layers) == ["a", "b", "c", "d"]
    assert b.digital == []
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_a_product_of_activations_in_a_graph_stays_as_it_is():
    """Attention's Q·Kᵀ (no constant operand) is no Linear."""
    from cimsim.mapping.loaders import modules_from_graph

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = nn.Linear(4, 4)

        def forward(self, x):
            q = self.q(x)
            return torch.softmax(q @ x.transpose(-1, -2), -1) @ x

    x = torch.randn(2, 3, 4)
    gm = modules_from_graph(torch.export.export(Attn(), (x,)).module())
    assert {n.target for n in gm.graph.nodes if n.op == "call_module"} - {"_guards_fn"} == {"q"}
    assert sum(n.target is torch.ops.aten.matmul.default for n in gm.graph.nodes) == 2

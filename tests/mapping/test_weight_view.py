"""A mapped layer's weight read by the model's code: its metadata, never its values.

Library code reads a layer's weight's dtype, device and shape without computing with it
(HuggingFace's ViT casts the pixels to ``self.projection.weight.dtype``; T5's feed-forward
checks ``isinstance(self.wo.weight, torch.Tensor)`` and its dtype; CLIP, Whisper and wav2vec2
``x.to(self.conv.weight.dtype)``): such a read was refused like a product with the weight
(``WeightReadError``), so those models could not deploy. The read now answers a
``WeightView``: the source weight's metadata and no values, every computation with it refused
naming the layer, as before. The modules here rewrite the libraries' patterns by hand (no
``transformers`` import)."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.errors import WeightReadError
from cimsim.train import prepare

from .conftest import build_seeded, lossless_chip
from .test_zoo5 import _quiet, _rel


class PatchCast(nn.Module):
    """ViT's patch embedding: the pixels cast to the projection's weight's dtype; T5's
    feed-forward: the hidden state cast to ``wo``'s dtype where it differs; a bias-free
    layer's ``.bias`` tested against ``None``."""

    def __init__(self):
        super().__init__()
        self.projection = nn.Conv2d(3, 8, 4, stride=4)
        self.wi = nn.Linear(8, 16, bias=False)
        self.wo = nn.Linear(16, 5)

    def forward(self, pixels):
        pixels = pixels.to(dtype=self.projection.weight.dtype)
        h = self.projection(pixels).flatten(2).mean(-1)
        h = torch.relu(self.wi(h)) + (0.0 if self.wi.bias is None else 1.0)
        if (isinstance(self.wo.weight, torch.Tensor) and h.dtype != self.wo.weight.dtype
                and self.wo.weight.dtype != torch.int8):
            h = h.to(self.wo.weight.dtype)
        assert self.wo.weight.shape == (5, 16) and self.wo.weight.ndim == 2
        return self.wo(h)


def _data():
    return (torch.randn(3, 3, 8, 8),)


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_a_forward_reading_its_layers_weights_dtype_deploys_and_trains(run):
    """Refused before (``WeightReadError`` on ``projection``); now deployed and prepared,
    computing as the float model within 8-b quantization."""
    dtype = torch.float32 if run is cimsim.deploy else torch.float64
    model, (x,) = build_seeded(PatchCast, _data, dtype)
    out = _quiet(run, model, lossless_chip("channel"), x)
    with torch.no_grad():
        assert _rel(out(x), model(x)) < 0.03
    if run is prepare:  # one training step through the twins
        loss = out.train()(x).pow(2).mean()
        loss.backward()
        assert all(p.grad is not None for p in out.parameters() if p.requires_grad)


def _layers(run):
    dtype = torch.float32 if run is cimsim.deploy else torch.float64
    model, (x,) = build_seeded(PatchCast, _data, dtype)
    out = _quiet(run, model, lossless_chip("channel"), x)
    return model, out, x


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_the_view_reports_the_source_weights_metadata(run):
    model, out, _ = _layers(run)
    for name in ("projection", "wi", "wo"):
        src, layer = getattr(model, name), getattr(out.model, name)
        for attr in ("weight", "bias"):
            want, got = getattr(src, attr), getattr(layer, attr)
            if want is None:
                assert got is None and hasattr(layer, attr)
                continue
            assert isinstance(got, torch.Tensor)
            assert got.shape == want.shape and got.size() == want.size()
            assert got.size(0) == want.size(0) and got.ndim == want.ndim
            assert got.dim() == want.dim() and got.numel() == want.numel()
            assert (got.dtype, got.device, got.layout) == (want.dtype, want.device, want.layout)
            assert got.is_floating_point() and got.requires_grad == want.requires_grad
            assert len(got) == len(want) and f"{name}'s weight, no values" in repr(got)
    with pytest.raises(WeightReadError, match=r"reads \.weight_gx of a mapped layer"):
        _ = out.model.wo.weight_gx  # no weight of the source: refused as before


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_new_tensors_made_from_the_views_metadata_are_allowed(run):
    """``weight.new_zeros(...)``, ``torch.zeros_like(weight)`` and their kin read the
    weight's dtype, device and shape only; they were refused as computations with it."""
    model, out, _ = _layers(run)
    src, w = model.wo.weight, out.model.wo.weight
    made = {
        "zeros_like": torch.zeros_like(w), "ones_like": torch.ones_like(w, dtype=torch.float64),
        "empty_like": torch.empty_like(w), "full_like": torch.full_like(w, 3.0),
        "randn_like": torch.randn_like(w), "new_zeros": w.new_zeros(2, 5),
        "new_full": w.new_full((3,), 2.0), "new_empty": w.new_empty(4),
        "new_tensor": w.new_tensor([1.0, 2.0]),
    }
    for name, t in made.items():
        assert type(t) is torch.Tensor, name
        assert t.device == src.device and t.is_contiguous(), name
        assert t.dtype == (torch.float64 if name == "ones_like" else src.dtype), name
    assert made["zeros_like"].shape == src.shape and not made["zeros_like"].any()
    assert (made["full_like"] == 3).all() and made["new_zeros"].shape == (2, 5)
    made["empty_like"].fill_(1.0)  # a tensor of its own, writable element by element
    assert made["empty_like"].sum() == src.numel()


_COMPUTATIONS = {
    "F.linear": lambda w, x: F.linear(x, w),
    "matmul": lambda w, x: x @ w.T,
    ".t()": lambda w, x: w.t(),
    "indexing": lambda w, x: w[0],
    "slicing": lambda w, x: w[:, :2],
    "arithmetic": lambda w, x: w * 2,
    "sum": lambda w, x: w.sum(),
    "einsum": lambda w, x: torch.einsum("ij,bj->bi", w, x),
    ".detach().numpy()": lambda w, x: w.detach().numpy(),
    ".numpy()": lambda w, x: w.numpy(),
    ".tolist()": lambda w, x: w.tolist(),
    ".to(other dtype)": lambda w, x: w.to(torch.float16),
    ".clone()": lambda w, x: w.clone(),
    ".data": lambda w, x: w.data,
    ".view": lambda w, x: w.view(-1),
    "bool": lambda w, x: bool(w.abs().max() > 0),
    "deepcopy": lambda w, x: copy.deepcopy(w),
    "pickle": lambda w, x: pickle.dumps(w),
}


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
@pytest.mark.parametrize("what", list(_COMPUTATIONS))
def test_every_computation_with_the_view_is_refused_naming_the_layer(run, what):
    _, out, _ = _layers(run)
    held = "programmed on the simulated arrays" if run is cimsim.deploy else "held by the"
    w = out.model.wo.weight
    x = torch.randn(2, 16, dtype=w.dtype)
    with pytest.raises(WeightReadError, match=rf"^wo: the model reads \.weight of a mapped "
                                              rf"layer, whose weights are {held}.*exclude"):
        _COMPUTATIONS[what](w, x)


class TiedRead(nn.Module):
    """Reads the head's dtype (allowed), then multiplies by its weight (refused)."""

    def __init__(self):
        super().__init__()
        self.inp, self.head = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = torch.relu(self.inp(x.to(self.head.weight.dtype)))
        return self.head(h) + F.linear(h, self.head.weight)


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_a_product_with_the_weight_after_a_metadata_read_is_still_refused(run):
    model, (x,) = build_seeded(TiedRead, lambda: (torch.randn(3, 4),), torch.float64)
    with pytest.raises(WeightReadError, match=r"^head: the model reads \.weight .*torch op aten"):
        _quiet(run, model, lossless_chip("channel"), x)


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_functional_call_moving_and_copying_keep_working(run):
    """``torch.func.functional_call`` with the model's own ``nn.Parameter`` s is refused (they
    were registered on the mapped layer, which computed with its own weights, ignoring them),
    and sets back what it read after the call: the view is no state of the layer (a later
    call would be refused as called with a weight set from outside). After a read the model
    pickles and copies; ``.double()`` moves what the views report."""
    dtype = torch.float32 if run is cimsim.deploy else torch.float64
    model, (x,) = build_seeded(PatchCast, _data, dtype)
    sim = _quiet(run, model, lossless_chip("channel"), x).eval()
    with torch.no_grad():
        want = sim(x)
        with pytest.raises(cimsim.MappingError, match=r"set from outside"):
            torch.func.functional_call(sim.model, dict(model.named_parameters()), (x,))
        torch.testing.assert_close(sim(x), want)  # the call after it runs as before
    assert "weight" not in vars(sim.model.wo) and "weight" not in sim.model.wo._parameters
    _ = sim.model.wo.weight.dtype
    with torch.no_grad():
        torch.testing.assert_close(pickle.loads(pickle.dumps(sim))(x), want)
        torch.testing.assert_close(copy.deepcopy(sim)(x), want)
    assert sim.state_dict().keys() == copy.deepcopy(sim).state_dict().keys()
    assert sim.double().model.wo.weight.dtype == torch.float64


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_functional_call_with_parameters_is_refused_not_ignored(run):
    """``functional_call(net, {name: nn.Parameter(...)})`` (the model's own parameters, or
    adapted ones wrapped as parameters): torch registered a ``Parameter`` set on a mapped
    layer as one of its parameters, where the refusal of weights set from outside did not
    look, and the layer computed with its programmed (or twin) weights, silently (plain
    tensors were refused)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(5, 4)
    sim = _quiet(run, net, lossless_chip("channel"), x).eval()
    adapted = {n: nn.Parameter(p.detach() + 0.5) for n, p in net.named_parameters()}
    with torch.no_grad(), pytest.raises(cimsim.MappingError,
                                        match=r"^0: called with \.bias, \.weight set from"):
        torch.func.functional_call(sim.model, adapted, (x,))
    assert not sim.model[0]._parameters and "weight" not in vars(sim.model[0])


class EvaAttention(nn.Module):
    """timm's EVA-02 / BEiT attention: a bias-free qkv ``nn.Linear`` whose product the
    forward computes with ``F.linear(x, self.qkv.weight, bias=qkv_bias)``, the bias put
    together from a learned q and v bias and a zero k bias."""

    def __init__(self, d: int = 8):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.q_bias = nn.Parameter(torch.randn(d))
        self.v_bias = nn.Parameter(torch.randn(d))
        self.register_buffer("k_bias", torch.zeros(d), persistent=False)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        qkv_bias = torch.cat((self.q_bias, self.k_bias, self.v_bias))
        q, k, v = F.linear(x, weight=self.qkv.weight, bias=qkv_bias).chunk(3, -1)
        return self.proj(F.scaled_dot_product_attention(q, k, v))


def test_f_linear_with_a_layers_weight_and_another_bias_is_the_layers_product():
    """timm's EVA-02 was refused (``F.linear`` of a mapped layer's weight): the product is
    the layer's own, a bias-free Linear's, so the layer computes it on its arrays (its twin
    in training) and the other bias is added after; the same on the lossless chip as the
    layer called, the twin equal to deploy, the gradient reaching the layer and the bias."""
    torch.manual_seed(0)
    model = EvaAttention().double().eval()
    x = torch.randn(4, 5, 8, dtype=torch.float64)
    chip = lossless_chip("channel")
    sim = cimsim.deploy(model, chip, x)
    assert list(sim.sim_layers) == ["qkv", "proj"]
    torch.testing.assert_close(sim(x), model(x).detach(), rtol=0.05, atol=0.05)
    assert sim.sim_layers["qkv"].cores[0].n_vectors == 4 * 5  # it ran on the arrays
    prep = prepare(model, chip, x).eval()
    with torch.no_grad():
        torch.testing.assert_close(prep(x), sim(x), rtol=1e-9, atol=1e-9)
    prep.train()
    prep(x).square().mean().backward()
    assert torch.any(prep.twin_layers["qkv"].matrices()[0].weight.grad != 0)
    assert torch.any(prep.model.q_bias.grad != 0)


def test_f_linear_of_a_layer_with_its_own_bias_is_refused_naming_it():
    """Where the layer's call is not ``x @ W.T`` (it adds its own bias), the product with
    another bias cannot be the layer's: refused as any computation with the weight is,
    naming the layer and the ways out."""

    class Biased(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 4)

        def forward(self, x):
            return F.linear(x, self.fc.weight, torch.zeros(4, dtype=x.dtype))

    with pytest.raises(WeightReadError, match=r"^fc: the model reads \.weight of a mapped "
                                              r"layer.*exclude"):
        cimsim.deploy(Biased().eval(), lossless_chip("channel"), torch.randn(3, 6))

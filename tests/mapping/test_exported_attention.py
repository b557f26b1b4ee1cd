"""An exported ``nn.MultiheadAttention`` deploys as the module.

``torch.export`` inlines the attention: its in-projection became one (3E, E) layer named
``cimsim_0_linear`` (where deploying the module maps ``attn.q_proj`` / ``k_proj`` / ``v_proj``,
each with its own scale and a programming draw seeded by the module's name) and its products
an ``aten.scaled_dot_product_attention``, so on rram-22nm the loaded ``SelfAttention`` below
deployed 0.29 (17 % relative) off the deployed module, the ``CrossAttention`` 0.16 (51 %). The
loader rebuilds the module (``cimsim.mapping.graph_attention``): equal bit for bit.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import cimsim
from cimsim.mapping.loaders import load_model
from cimsim.train import prepare


class SelfAttention(nn.Module):
    """A pre-norm block's attention, called as most code calls it (need_weights left True)."""

    def __init__(self, batch_first: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=batch_first)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        h = self.norm(x)
        return self.head(x + self.attn(h, h, h)[0])


class SeqFirst(SelfAttention):
    """An attention in torch's default (L, B, E) layout inside a batch-first model."""

    def __init__(self):
        super().__init__(batch_first=False)

    def forward(self, x):
        h = self.norm(x).transpose(0, 1)
        return self.head(x + self.attn(h, h, h)[0].transpose(0, 1))


class CrossAttention(nn.Module):
    """Perceiver-style: learned latents query the inputs, kdim / vdim (separate q, k, v
    weights), need_weights=False."""

    def __init__(self):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(4, 16))
        self.attn = nn.MultiheadAttention(16, 2, kdim=8, vdim=8, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        q = self.latents.expand(x.shape[0], -1, -1)
        return self.head(self.attn(q, x, x, need_weights=False)[0].mean(dim=1))


class Masked(SelfAttention):
    """A key-padding mask computed from the input: the call reads a mask."""

    def forward(self, x):
        h = self.norm(x)
        pad = x[..., 0] > 1.5
        return self.head(self.attn(h, h, h, key_padding_mask=pad, need_weights=False)[0])


def _load(model: nn.Module, x: torch.Tensor, path) -> nn.Module:
    dims = ({0: torch.export.Dim("b", min=2)},)
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=dims), path / "m.pt2")
    return load_model(str(path / "m.pt2"), x)


def _deploy(model, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the attention products: listed digital
        return cimsim.deploy(model, cimsim.load_chip("rram-22nm"), x, seed=3)


@pytest.mark.parametrize("make,shape", [
    (SelfAttention, (6, 5, 16)),
    (SeqFirst, (6, 5, 16)),
    (CrossAttention, (6, 7, 8)),
], ids=["self", "seq-first", "cross-kdim"])
def test_an_exported_attention_deploys_bit_for_bit_as_the_module(make, shape, tmp_path):
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(*shape)
    loaded = _load(model, x, tmp_path)
    attn = loaded.get_submodule("attn")
    assert isinstance(attn, nn.MultiheadAttention)
    assert (attn.num_heads, attn.batch_first) == (model.attn.num_heads, model.attn.batch_first)
    a, b = _deploy(model, x), _deploy(loaded, x)
    assert list(b.sim_layers) == list(a.sim_layers) == ["attn", "head"]
    assert [c.name for c in b.sim_layers["attn"].cores] == [
        "attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj"]
    assert [d[:2] for d in b.digital] == [d[:2] for d in a.digital]
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    # and the training twin of the loaded model is the module's
    chip = cimsim.load_chip("rram-22nm")
    chip = chip.replace(noise=chip.noise.replace(thermal_sigma_lsb=0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ta, tb = (prepare(m, chip, x, seed=3).eval() for m in (model, loaded))
    assert list(tb.twin_layers) == list(ta.twin_layers)
    with torch.no_grad():
        assert torch.equal(ta(x), tb(x))


class Stacked(nn.Module):
    """Two batch-first self-attentions, the second reading the first's output."""

    def __init__(self):
        super().__init__()
        self.a1 = nn.MultiheadAttention(8, 2, batch_first=True)
        self.a2 = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.a1(x, x, x)[0]
        return self.head(self.a2(h, h, h)[0])


def test_stacked_batch_first_attentions_are_all_rebuilt(tmp_path):
    """The second of two stacked batch-first attentions stayed inlined (its in-projection one
    (3E, E) layer, found by the export property of tests/test_model_properties.py): it reads
    the first's rebuilt call, whose output node carried no value, so it seemed to have no
    input. Both are modules now, and the loaded model deploys as the module."""
    torch.manual_seed(0)
    model, x = Stacked().eval(), torch.randn(4, 5, 8)
    loaded = _load(model, x, tmp_path)
    assert all(isinstance(loaded.get_submodule(n), nn.MultiheadAttention) for n in ("a1", "a2"))
    a, b = _deploy(model, x), _deploy(loaded, x)
    assert list(b.sim_layers) == list(a.sim_layers) == ["a1", "a2", "head"]
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_an_attention_reading_a_mask_keeps_its_calls_under_readable_names(tmp_path):
    """Not rebuilt (it reads a mask): its projections are named by their weights."""
    torch.manual_seed(0)
    model = Masked().eval()
    x = torch.randn(6, 5, 16)
    loaded = _load(model, x, tmp_path)
    assert not isinstance(loaded.get_submodule("attn"), nn.MultiheadAttention)
    sim = _deploy(loaded, x)
    assert {"attn.in_proj", "attn.out_proj", "head"} <= set(sim.sim_layers)
    assert not any(n.startswith("cimsim_") and "linear" in n for n in sim.sim_layers)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)


def test_rebuilding_an_attention_leaves_the_callers_random_state(tmp_path):
    """The candidate modules are initialised (and probed) with random numbers: a load must not
    move the user's stream."""
    torch.manual_seed(0)
    model, x = SelfAttention().eval(), torch.randn(6, 5, 16)
    dims = ({0: torch.export.Dim("b", min=2)},)
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=dims), tmp_path / "m.pt2")
    state = torch.random.get_rng_state()
    loaded = load_model(str(tmp_path / "m.pt2"), x)
    assert isinstance(loaded.get_submodule("attn"), nn.MultiheadAttention)
    assert torch.equal(torch.random.get_rng_state(), state)


class OneFeatureHeads(SelfAttention):
    """Every head one feature wide (``num_heads = embed_dim``, a head dimension of 1)."""

    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 16, batch_first=True)


def test_an_exported_attention_of_one_feature_heads_is_rebuilt(tmp_path):
    """The rebuild tries every divisor of ``embed_dim`` as ``num_heads``, ``embed_dim`` itself
    included: an attention of 16 one-feature heads comes back as the module with 16 heads
    (heads tried up to embed_dim - 1 left it inlined, its projections one (3E, E) matrix)."""
    torch.manual_seed(0)
    x = torch.randn(6, 5, 16)
    loaded = _load(OneFeatureHeads().eval(), x, tmp_path)
    attn = loaded.get_submodule("attn")
    assert isinstance(attn, nn.MultiheadAttention) and attn.num_heads == 16

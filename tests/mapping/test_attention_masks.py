"""Attention masks and root transformer modules as torch takes them (a hunt over the
transformer deploy path, 2026-12-04)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import cimsim
import cimsim.train


def _encoder() -> nn.TransformerEncoder:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    with warnings.catch_warnings():  # torch: enable_nested_tensor with norm_first ... notes
        warnings.simplefilter("ignore")
        return nn.TransformerEncoder(layer, 2).eval()  # enable_nested_tensor by default


def _padded():
    x = torch.randn(3, 6, 16)
    pad = torch.zeros(3, 6, dtype=torch.bool)
    pad[0, 3:] = True
    return x, pad


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_root_encoder_called_with_a_padding_mask_deploys_and_prepares():
    """A root nn.TransformerEncoder took torch's nested fast path on the replaced attention
    (AttributeError: no out_proj) in deploy, prepare and every masked call; wrapped in a
    parent module it worked."""
    enc = _encoder()
    x, pad = _padded()
    calib = {"src": x, "src_key_padding_mask": pad}
    sim = cimsim.deploy(enc, "ideal", calib)
    out = sim(src=x, src_key_padding_mask=pad)
    ref = enc(src=x, src_key_padding_mask=pad)
    valid = ~pad
    assert torch.allclose(out[valid], ref[valid], atol=0.05)
    prepared = cimsim.train.prepare(enc, "ideal", calib)
    assert prepared(src=x, src_key_padding_mask=pad).shape == ref.shape
    assert enc.use_nested_tensor  # the user's model is left as it was


def _mha():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 2, batch_first=True).eval()
    x = torch.randn(2, 6, 16)
    return mha, cimsim.deploy(mha, "ideal", (x, x, x)), x


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_integer_masks_and_a_misshapen_padding_mask_are_refused_as_torch_refuses_them():
    """A tokenizer's long 0/1 mask was added as a bias (no key masked); a (S, B) padding mask
    of B·S elements was reshaped and masked the wrong keys."""
    mha, sim, x = _mha()
    keep = torch.ones(2, 6, dtype=torch.long)
    keep[0, 4:] = 0
    for kwargs, what in ((dict(key_padding_mask=keep), "key_padding_mask"),
                         (dict(attn_mask=torch.ones(6, 6, dtype=torch.long).tril()),
                          "attn_mask")):
        with pytest.raises(AssertionError, match="only bool and floating types"):
            mha(x, x, x, **kwargs)
        with pytest.raises(AssertionError, match=f"only bool and floating types of {what}"):
            sim(x, x, x, **kwargs)
    with pytest.raises(AssertionError, match=r"key_padding_mask of shape \(6, 2\), expected "
                       r"\(batch, source length\) = \(2, 6\)"):
        sim(x, x, x, key_padding_mask=torch.zeros(6, 2, dtype=torch.bool))
    # a bool mask and its float form still mask as torch does
    pad = keep == 0
    out, _ = sim(x, x, x, key_padding_mask=pad)
    ref, _ = mha(x, x, x, key_padding_mask=pad)
    assert torch.allclose(out, ref, atol=0.05)


class _Causal(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(32, 16)
        self.mha = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 32)

    def forward(self, ids, mask):
        h = self.emb(ids)
        return self.head(self.mha(h, h, h, attn_mask=mask, need_weights=False)[0])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_one_sequence_with_a_square_mask_counts_one_inference():
    """ids (1, S) beside an (S, S) causal mask counted S inferences (every per-inference
    figure S times too low); a batch of two counted two."""
    torch.manual_seed(0)
    model = _Causal().eval()
    ids = torch.randint(0, 32, (4, 8))
    mask = torch.ones(8, 8, dtype=torch.bool).triu(1)
    sim = cimsim.deploy(model, "ideal", (ids, mask))
    sim(ids[:1], mask)
    assert sim.n_inferences == 1
    sim(ids[:2], mask)
    assert sim.n_inferences == 3


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_integer_ids_as_square_as_the_sequence_still_count_their_batch():
    """(1, S) position ids before (B, S) input ids with B = S: the ids are a batch of S, not a
    mask (the square rule reads only bool and float tensors)."""

    class Pos(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos = nn.Embedding(8, 16)
            self.tok = nn.Embedding(32, 16)
            self.head = nn.Linear(16, 4)

        def forward(self, position_ids, input_ids):
            return self.head(self.pos(position_ids) + self.tok(input_ids))

    torch.manual_seed(0)
    model = Pos().eval()
    pos = torch.arange(8).unsqueeze(0)
    ids = torch.randint(0, 32, (8, 8))
    sim = cimsim.deploy(model, "ideal", (pos, ids), batch_size=8)
    sim(pos, ids)
    assert sim.n_inferences == 8


_SEEN: list[tuple] = []  # deploy calls a copy of the model: recorded here


class _SeqFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32), 1,
                                         enable_nested_tensor=False)

    def forward(self, src, pad):
        _SEEN.append((tuple(src.shape), tuple(pad.shape), bool(pad[:, 5:].all())))
        return self.enc(src, src_key_padding_mask=pad)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_sequence_first_padding_mask_is_cut_along_its_batch_when_s_equals_b():
    """(S, B, E) inputs with batch_dim=1 beside a (B, S) padding mask, S = B = 8, in batches
    of 4: the mask was cut along its sequence (4, 8) -> (8, 4) and the model calibrated on
    scrambled masks."""
    torch.manual_seed(0)
    model = _SeqFirst().eval()
    src = torch.randn(8, 8, 16)
    pad = torch.zeros(8, 8, dtype=torch.bool)
    pad[:, 5:] = True
    _SEEN.clear()
    cimsim.deploy(model, "ideal", (src, pad), batch_dim=1, batch_size=4)
    assert _SEEN and all(s == ((8, 4, 16), (4, 8), True) for s in _SEEN)

"""Calibration given as the model's keyword arguments: a dict (``model(**batch)``, as a
HuggingFace tokenizer's output is passed) or a DataLoader of dicts, through deploy, trace,
prepare and the training methods' passes; cut into batches as a tuple of the same tensors is."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import MappingError
from cimsim.mapping.deploy import Arguments, _batches
from cimsim.train import prepare
from cimsim.train.bskmq import fused_twins, prepare_bskmq, refit_chip_levels
from cimsim.train.columnquant import columnquant_chip, freeze_psum, prepare_columnquant, psum_mse

from ..recurrent_models import StateLSTM, state_lstm_data
from ..train.test_methods_new_models import _bskmq_chip
from .conftest import assert_bitwise, lossless_chip


class Tagger(nn.Module):
    """Keyword-only inputs, a sequence and its padding mask, and a keyword with a default."""

    def __init__(self, vocab: int = 16, d: int = 8, classes: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.enc = nn.Linear(d, d)
        self.head = nn.Linear(d, classes)

    def forward(self, *, input_ids, attention_mask, scale: float = 1.0):
        h = torch.relu(self.enc(self.embed(input_ids)))
        m = attention_mask[..., None].to(h.dtype)
        return scale * self.head((h * m).sum(1) / m.sum(1).clamp(min=1))


class Positional(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask)


def _data(n: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 16, (n, 5), generator=g),
            (torch.rand(n, 5, generator=g) > 0.3).long())


def _quiet(fn, *args, **kwargs):
    with pytest.warns(UserWarning):  # the embedding, listed digital
        return fn(*args, **kwargs)


def test_a_dict_is_cut_as_the_tuple_of_its_tensors():
    ids, mask = _data(10)
    cuts = list(_batches({"input_ids": ids, "attention_mask": mask, "scale": 2.0}, 4))
    assert [len(c) for c in cuts] == [0, 0, 0]  # no positional argument
    assert [c.kwargs["input_ids"].shape[0] for c in cuts] == [4, 4, 2]
    assert all(c.kwargs["scale"] == 2.0 for c in cuts)
    assert_bitwise(torch.cat([c.kwargs["attention_mask"] for c in cuts]), mask)
    # sequence-first (batch_dim 1): the (S, B) input cut along B, the (B, S) mask along 0
    cuts = list(_batches({"src": ids.T, "key_padding_mask": mask}, 4, batch_dim=1))
    assert [tuple(c.kwargs["src"].shape) for c in cuts] == [(5, 4), (5, 4), (5, 2)]
    assert [tuple(c.kwargs["key_padding_mask"].shape) for c in cuts] == [(4, 5), (4, 5), (2, 5)]
    # a NumPy array in the dict is a tensor; a tuple argument still yields positionals
    (cut,) = _batches({"x": np.ones((2, 3), np.float32)}, 8)
    assert isinstance(cut.kwargs["x"], torch.Tensor)
    (cut,) = _batches((ids, mask), 16)
    assert isinstance(cut, Arguments) and len(cut) == 2 and cut.kwargs == {}


@pytest.mark.parametrize("bad, match", [
    ({}, "holds no tensor: it is empty"),
    ({"scale": 1.0}, "holds no tensor: 'scale'"),
    ({"input_ids": torch.zeros(2, 3), "past_key_values": [torch.zeros(1)]},
     "entry 'past_key_values' is a list; allowed: tensors"),
    ({0: torch.zeros(2, 3)}, "keys must be the model's keyword argument names"),
])
def test_a_bad_dict_is_refused_naming_the_entry(bad, match):
    with pytest.raises(MappingError, match=match):
        list(_batches(bad, 4))


def test_deploy_from_a_dict_equals_deploy_of_a_positional_wrapper():
    """Same layers, same inputs: on a lossless chip the two deploy bit for bit (the layer
    names differ by the wrapper's prefix only, which seeds nothing without noise)."""
    torch.manual_seed(0)
    model = Tagger().eval()
    ids, mask = _data(10)
    chip = lossless_chip("channel")
    by_name = _quiet(cimsim.deploy, model, chip, {"input_ids": ids, "attention_mask": mask},
                     batch_size=4)
    wrapped = _quiet(cimsim.deploy, Positional(model), chip, (ids, mask), batch_size=4)
    assert_bitwise(by_name(input_ids=ids, attention_mask=mask), wrapped(ids, mask))
    assert by_name.n_inferences == 10
    fidelity = by_name.trace({"input_ids": ids[:4], "attention_mask": mask[:4]})
    assert list(fidelity["layer"]) == ["enc", "head"]


def test_a_dataloader_of_dicts_calibrates_as_the_dict():
    torch.manual_seed(0)
    model = Tagger().eval()
    ids, mask = _data(8)
    chip = cimsim.load_chip("rram-22nm")
    whole = _quiet(cimsim.deploy, model, chip, {"input_ids": ids, "attention_mask": mask},
                   batch_size=4, seed=3)
    loader = [{"input_ids": ids[i:i + 4], "attention_mask": mask[i:i + 4]} for i in (0, 4)]
    batched = _quiet(cimsim.deploy, model, chip, loader, seed=3)
    assert_bitwise(whole(input_ids=ids, attention_mask=mask),
                   batched(input_ids=ids, attention_mask=mask))


def test_prepare_and_the_methods_passes_take_a_dict():
    """prepare, a training step, deploy of the twin, and the methods' calibration passes
    (ColumnQuant's partial-sum centres, BS-KMQ's level refit) on keyword inputs."""
    torch.manual_seed(0)
    model = Tagger().eval()
    ids, mask = _data(8)
    batch = {"input_ids": ids, "attention_mask": mask}
    prepared = _quiet(prepare, model, cimsim.load_chip("ideal"), batch, batch_size=4)
    prepared.train()
    prepared(**batch).square().mean().backward()
    assert all(p.grad is not None for p in prepared.parameters() if p.requires_grad)
    prepared.eval()
    sim = prepared.deploy()
    torch.testing.assert_close(sim(**batch), prepared(**batch), rtol=1e-5, atol=1e-5)

    centred = _quiet(prepare_columnquant, model, columnquant_chip(psum_bits=4, array_size=4),
                     batch, centre="batch")
    freeze_psum(centred, batch, batch_size=4)
    assert np.isfinite(psum_mse(centred, batch, batch_size=4)["mean"])

    fused = _quiet(prepare_bskmq, model, _bskmq_chip(), batch)
    assert fused_twins(fused)  # the ReLU after enc, found through the keyword forward
    assert set(refit_chip_levels(fused, batch)) == set(fused_twins(fused))


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_a_key_the_forward_does_not_take_is_named_with_the_signature(run):
    ids, mask = _data(4)
    batch = {"input_ids": ids, "attention_mask": mask, "labels": torch.zeros(4)}
    with pytest.raises(MappingError, match=r"key\(s\) 'labels' are not keyword arguments of "
                                           r"Tagger.forward\(\*, input_ids, attention_mask"):
        run(Tagger().eval(), lossless_chip("channel"), batch)
    with pytest.raises(MappingError, match="missing a required argument: 'attention_mask'"):
        run(Tagger().eval(), lossless_chip("channel"), {"input_ids": ids})


def test_distill_takes_keyword_inputs_and_a_model_output_with_logits():
    """Label-free fine-tuning of a HuggingFace-style model: a dict of its keyword inputs is
    shuffled and cut together (a non-tensor entry passed whole), and an output object's
    ``logits`` are matched (zoo6's keyword model returns a dataclass)."""
    from cimsim.train import distill

    from .test_zoo6 import KeywordOnly

    torch.manual_seed(0)
    model = KeywordOnly().eval()
    ids, mask = torch.randint(0, 20, (12, 6)), (torch.rand(12, 6) > 0.3).long()
    batch = {"input_ids": ids, "attention_mask": mask}
    prep = _quiet(prepare, model, cimsim.load_chip("rram-22nm"), batch)
    before = [p.detach().clone() for p in prep.parameters()]
    out = distill(prep, model, batch, epochs=2, batch_size=5, progress=False)
    assert out["n_inputs"] == 12 and len(out["loss"]) == 2
    assert all(np.isfinite(v) for v in out["loss"])
    assert any(not torch.equal(p, b) for p, b in zip(prep.parameters(), before, strict=True))
    again = _quiet(prepare, model, cimsim.load_chip("rram-22nm"), batch)
    assert distill(again, model, batch, epochs=2, batch_size=5, progress=False) == out

    tagger = Tagger().eval()
    ids, mask = _data(6)
    batch = {"input_ids": ids, "attention_mask": mask, "scale": 2.0}
    prep = _quiet(prepare, tagger, cimsim.load_chip("ideal"), batch)
    distill(prep, tagger, batch, epochs=1, batch_size=4, progress=False)
    with pytest.raises(cimsim.errors.ConfigError, match="a dict without a tensor of inputs"):
        distill(prep, tagger, {"scale": 2.0}, progress=False)


def test_distill_of_a_two_input_positional_model_takes_a_tuple_or_a_dict():
    from cimsim.train import distill

    ids, mask = _data(4)
    model = Positional(Tagger()).eval()
    prep = _quiet(prepare, model, cimsim.load_chip("ideal"), (ids, mask))
    with pytest.raises(cimsim.errors.ConfigError, match="needs 2 inputs.*or a dict"):
        distill(prep, model, ids, progress=False)
    distill(prep, model, (ids, mask), progress=False)  # it was refused
    distill(prep, model, {"input_ids": ids, "attention_mask": mask}, progress=False)


def test_a_dict_entry_holding_an_lstm_state_pair_is_cut_with_the_batch():
    """``{"x": x, "hc": (h0, c0)}`` was refused ("entry 'hc' is a tuple"), where
    ``cimsim.evaluate`` and ``distill`` take it: each state is cut along its dimension 1."""
    torch.manual_seed(0)
    model = StateLSTM().eval()
    x, hc = state_lstm_data()
    cuts = list(_batches({"x": x, "hc": hc}, 4))
    assert [tuple(c.kwargs["hc"][0].shape) for c in cuts] == [(1, 4, 16)] * 4
    sim = cimsim.deploy(model, "ideal", {"x": x, "hc": hc}, batch_size=4, seed=0)
    with torch.no_grad():
        assert float((sim(x, hc) - model(x, hc)).abs().max()) < 0.05

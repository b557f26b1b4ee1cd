"""``cimsim.evaluate``: the one accuracy loop, against hand-counted predictions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cimsim.evaluate import accuracy, predict


class _Counting(nn.Module):
    """Scores = the input itself (so the argmax is known), counting forwards and batch sizes."""

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(int(x.shape[0]))
        return x


# 7 inputs, 3 classes; argmax by row: 0, 2, 1, 1, 0, 2, 2
SCORES = torch.tensor([[5.0, 1, 0], [0, 1, 9], [0, 3, 2], [1, 4, 0], [9, 0, 0], [0, 0, 1],
                       [2, 1, 3]])
PRED = torch.tensor([0, 2, 1, 1, 0, 2, 2])


@pytest.mark.parametrize("batch_size, batches", [(None, [7]), (1, [1] * 7), (3, [3, 3, 1]),
                                                 (7, [7]), (100, [7])])
def test_predict_is_the_argmax_whatever_the_batching(batch_size, batches):
    model = _Counting()
    got = predict(model, SCORES, batch_size=batch_size)
    assert got.dtype == torch.int64 and torch.equal(got, PRED)
    assert model.batches == batches


def test_accuracy_counts_matches():
    y = torch.tensor([0, 2, 0, 1, 1, 2, 0])  # 4 of 7 right: rows 0, 1, 3, 5
    assert accuracy(_Counting(), SCORES, y, batch_size=2) == 4 / 7
    assert accuracy(_Counting(), SCORES, PRED, batch_size=None, progress=True) == 1.0


def test_accuracy_runs_without_gradients():
    lin = nn.Linear(3, 3)
    seen: list[bool] = []
    lin.register_forward_hook(lambda mod, inp, out: seen.append(out.requires_grad))
    accuracy(lin, SCORES, PRED, batch_size=4)
    assert seen == [False, False]


def test_accuracy_refuses_empty_or_mismatched_sets():
    with pytest.raises(ValueError, match="empty"):
        accuracy(_Counting(), SCORES[:0], PRED[:0])
    with pytest.raises(ValueError, match="7 inputs but 6 labels"):
        accuracy(_Counting(), SCORES, PRED[:6])
    with pytest.raises(ValueError, match="batch_size"):
        predict(_Counting(), SCORES, batch_size=0)


class KeywordScorer(nn.Module):
    """HuggingFace's convention: keyword inputs, an output object holding ``logits``."""

    def __init__(self):
        super().__init__()
        self.calls: list[int] = []

    def forward(self, *, input_ids, attention_mask, temperature=1.0):
        self.calls.append(input_ids.shape[0])
        from types import SimpleNamespace
        return SimpleNamespace(logits=(input_ids * attention_mask).float() / temperature)


def test_a_dict_of_keyword_inputs_is_cut_with_the_batch():
    ids = torch.tensor([[0, 5, 1], [9, 0, 2], [1, 1, 3], [0, 0, 7], [4, 3, 2]])
    mask = torch.ones_like(ids)
    mask[0, 1] = 0  # the 5 is masked: its row's argmax is 2
    model = KeywordScorer()
    batch = {"input_ids": ids, "attention_mask": mask, "temperature": 2.0}
    assert predict(model, batch, batch_size=2).tolist() == [2, 0, 2, 2, 0]
    assert model.calls == [2, 2, 1]
    assert accuracy(model, batch, torch.tensor([2, 0, 0, 2, 0]), batch_size=None) == 0.8
    from cimsim.evaluate import output_cosine
    assert output_cosine(model, model, batch, batch_size=3) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="dict with no tensor"):
        predict(model, {"temperature": 2.0})


class _SeqFirst(nn.Module):
    """A sequence-first classifier: (S, B, E) inputs, (B, n_classes) scores."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.enc = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.enc(x).mean(dim=0))


def test_a_sequence_first_model_is_evaluated_along_its_batch_dimension():
    """``deploy(..., batch_dim=1)``: predict / accuracy / output_cosine cut the (S, B, E)
    inputs along dimension 1, the deployed model's own (they cut dimension 0, the sequence:
    "12 inputs but 40 labels")."""
    import cimsim
    from cimsim.evaluate import output_cosine

    model = _SeqFirst().eval()
    x = torch.randn(12, 40, 8)
    with torch.no_grad():
        want = model(x).argmax(dim=1)
    sim = cimsim.deploy(model, "ideal", x, batch_dim=1)
    assert torch.equal(predict(model, x, batch_size=16, batch_dim=1), want)
    pred = predict(sim, x, batch_size=16)
    assert pred.shape == (40,) and float((pred == want).double().mean()) > 0.9
    assert accuracy(sim, x, want, batch_size=7) == float((pred == want).double().mean())
    assert output_cosine(model, sim, x, batch_size=16) > 0.99
    assert output_cosine(model, model, x, batch_size=16, batch_dim=1) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"12 inputs but 40 labels$"):
        accuracy(model, x, want)  # a float module has no batch_dim: dimension 0
    with pytest.raises(ValueError, match="batch_dim = -1 is invalid"):
        predict(model, x, batch_dim=-1)

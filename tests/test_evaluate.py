"""``cimsim.evaluate``: the one accuracy loop, against hand-counted predictions."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from cimsim.evaluate import accuracy, output_cosine, predict

from .recurrent_models import StateLSTM, state_lstm_data


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


def test_tied_scores_predict_the_first_of_the_tied_classes():
    """A tie goes to the lowest class index (torch's and NumPy's argmax): taking the last tied
    class would change the accuracy of every model with saturated or quantized logits."""
    scores = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [0.0, 0.0, 0.0], [3.0, 0.0, 3.0]])
    assert torch.equal(predict(_Counting(), scores), torch.tensor([0, 1, 0, 0]))
    assert accuracy(_Counting(), scores, torch.tensor([0, 1, 0, 0])) == 1.0


def test_accuracy_counts_matches():
    y = torch.tensor([0, 2, 0, 1, 1, 2, 0])  # 4 of 7 right: rows 0, 1, 3, 5
    assert accuracy(_Counting(), SCORES, y, batch_size=2) == 4 / 7
    assert accuracy(_Counting(), SCORES, PRED, batch_size=None, progress=True) == 1.0


def test_accuracy_takes_class_indices_only():
    """Labels of shape (n, 1) (a pandas column) broadcast against the (n,) predictions: an
    "accuracy" of 304 on a 569-input set; float targets scored 0 without a word. Both are
    refused, naming what is allowed; whole-number floats and NumPy labels count."""
    import numpy as np
    y = torch.tensor([0, 2, 0, 1, 1, 2, 0])
    assert accuracy(_Counting(), SCORES, y.double()) == 4 / 7
    assert accuracy(_Counting(), SCORES, y.numpy().astype(np.int32)) == 4 / 7
    with pytest.raises(ValueError, match=r"shape \(7, 1\); allowed: 1-D.*y\.ravel\(\)"):
        accuracy(_Counting(), SCORES, y[:, None])
    with pytest.raises(ValueError, match="not whole numbers.*output_cosine"):
        accuracy(_Counting(), SCORES, y + 0.5)
    with pytest.raises(ValueError, match="dtype torch.bool"):
        accuracy(_Counting(), SCORES, y > 0)
    loader = [(SCORES[:4], (y[:4] + 0.5)), (SCORES[4:], y[4:] + 0.5)]
    with pytest.raises(ValueError, match="a batch's labels holds values that are not whole"):
        accuracy(_Counting(), loader)


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
    # a dimension the inputs lack: named, not an IndexError from the indexing
    with pytest.raises(ValueError, match=r"batch_dim = 5 is beyond the inputs' 3 dimensions"):
        predict(model, x, batch_dim=5)


class _Shaped(nn.Module):
    """A linear layer whose scores come back in the shapes models return them."""

    def __init__(self, kind: str):
        super().__init__()
        self.lin, self.kind = nn.Linear(4, 3), kind

    def forward(self, x):
        y = self.lin(x)
        if self.kind == "dict":
            return {"logits": y, "hidden": x, "n_tokens": 4}
        if self.kind == "dataclass":
            return _Out(scores=y, hidden=x)
        return y


@dataclasses.dataclass
class _Out:
    scores: torch.Tensor
    hidden: torch.Tensor


def test_outputs_in_the_shapes_models_return_them():
    """A plain dict with ``logits`` is scored and compared by them as a HuggingFace output is
    (accuracy refused it, output_cosine compared every value); a dataclass without them is
    compared by its tensor fields (output_cosine failed with AttributeError 'reshape'); a
    count beside the tensors is no output value."""
    torch.manual_seed(0)
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    plain = _Shaped("tensor").eval()
    as_dict = _Shaped("dict").eval()
    as_dict.load_state_dict(plain.state_dict())
    assert accuracy(as_dict, x, y) == accuracy(plain, x, y)
    noisy = _Shaped("dict").eval()
    noisy.load_state_dict({k: v + 0.1 * torch.randn_like(v) for k, v in plain.state_dict().items()})
    noisy_plain = _Shaped("tensor").eval()
    noisy_plain.load_state_dict(noisy.state_dict())
    assert output_cosine(as_dict, noisy, x) == output_cosine(plain, noisy_plain, x) < 1.0
    as_dc = _Shaped("dataclass").eval()
    as_dc.load_state_dict(plain.state_dict())
    want = torch.cat([plain(x).reshape(-1), x.reshape(-1)]).double()
    got_model = _Shaped("dataclass").eval()
    got_model.load_state_dict(noisy.state_dict())
    got = torch.cat([noisy_plain(x).reshape(-1), x.reshape(-1)]).double()
    cosine = float(want @ got / (want.norm() * got.norm()))
    assert output_cosine(as_dc, got_model, x) == pytest.approx(cosine, abs=1e-12)


def test_an_output_without_tensors_is_refused_naming_what_is_allowed():
    class Counts(nn.Module):
        def forward(self, x):
            return {"n": int(x.shape[0])}

    with pytest.raises(ValueError, match=r"holds no tensor to compare \(allowed: a tensor, or "
                       r"a dict, list, tuple or dataclass of tensors\)"):
        output_cosine(Counts(), Counts(), torch.randn(4, 2))


def test_accuracy_over_a_loader_of_labelled_batches():
    """``accuracy(sim, loader)``, the usual PyTorch evaluation, failed with a bare TypeError
    (y missing): a loader of (inputs, labels) pairs, or of dicts with ``labels``, is scored
    batch by batch as the loader cut it."""
    from torch.utils.data import DataLoader, TensorDataset

    y = torch.tensor([0, 2, 0, 1, 1, 2, 0])  # 4 of 7 right
    model = _Counting()
    assert accuracy(model, DataLoader(TensorDataset(SCORES, y), batch_size=3)) == 4 / 7
    assert model.batches == [3, 3, 1]

    class _Keyword(nn.Module):
        def forward(self, scores, mask):
            return scores * mask

    batches = [{"scores": SCORES[:4], "mask": torch.ones(1, 3), "labels": y[:4]},
               {"scores": SCORES[4:], "mask": torch.ones(1, 3), "labels": y[4:]}]
    assert accuracy(_Keyword(), batches) == 4 / 7
    with pytest.raises(ValueError, match=r"y is required with inputs of type Tensor; allowed "
                                         r"without y: an iterable of \(inputs, labels\)"):
        accuracy(model, SCORES)
    with pytest.raises(ValueError, match=r"every batch must be an \(inputs, labels\) pair or a "
                                         r"dict with 'labels'; got a list of 1"):
        accuracy(model, DataLoader(TensorDataset(SCORES), batch_size=3))
    with pytest.raises(ValueError, match=r"a batch of 3 predictions has labels of shape "
                                         r"\(3, 3\)"):
        accuracy(model, [(SCORES[:3], SCORES[:3])])
    with pytest.raises(ValueError, match="empty"):
        accuracy(model, [])


def test_labels_the_model_does_not_score_are_refused():
    """1-based labels (1..3 for 3 classes) scored 0 % without a word, where the command line's
    check refuses them: accuracy names the label and the classes, with y and per batch."""
    y = torch.tensor([0, 2, 0, 1, 1, 2, 0])
    with pytest.raises(ValueError, match=r"label 3 is out of range .* 3 classes \(labels 0..2\)"):
        accuracy(_Counting(), SCORES, y + 1)
    with pytest.raises(ValueError, match="label -1 is out of range"):
        accuracy(_Counting(), SCORES, y - 1, batch_size=3)
    with pytest.raises(ValueError, match="a batch's labels: label 3 is out of range"):
        accuracy(_Counting(), [(SCORES[:4], y[:4] + 1)])


def test_scores_that_are_not_a_row_per_input_are_refused():
    """One score per input, shape (B,), failed in the argmax (an IndexError naming nothing)."""
    with pytest.raises(ValueError, match=r"scores have shape \(7,\) for a batch of 7 inputs; "
                                         r"allowed: \(batch, classes\)"):
        accuracy(_Counting(), SCORES[:, 0], torch.zeros(7, dtype=torch.int64), batch_size=None)
    with pytest.raises(ValueError, match=r"shape \(7,\) for a batch of 7 inputs; allowed"):
        predict(lambda x: x[:, 0], SCORES)


def test_nan_scores_predict_no_class_and_are_warned_about():
    """torch's argmax takes a NaN for the largest score: a diverged output "predicted" its
    class. Such an input predicts -1, never a label, with a warning saying how many."""
    scores = SCORES.clone()
    scores[1, 0] = float("nan")  # row 1's argmax is class 2 elsewhere: right without the NaN
    with pytest.warns(RuntimeWarning, match="1 of 7 inputs have NaN class scores"):
        got = predict(_Counting(), scores)
    assert got.tolist() == [0, -1, 1, 1, 0, 2, 2]
    with pytest.warns(RuntimeWarning, match="1 of 7 inputs"):
        assert accuracy(_Counting(), scores, PRED, batch_size=3) == 6 / 7
    with pytest.warns(RuntimeWarning, match="1 of 7 inputs"):
        assert accuracy(_Counting(), [(scores[:4], PRED[:4]), (scores[4:], PRED[4:])]) == 6 / 7


def test_non_finite_outputs_make_the_cosine_undefined_unless_both_hold_them():
    """A negated model scores -1; one -inf in its output made it 1.0 (inf/inf = NaN, clamped to
    1), one NaN 0.0, silently. Non-finite values that differ: NaN and a warning; the same
    infinity or NaN in both outputs (a masked logit) agrees and is left out."""
    x = torch.randn(6, 5)

    def ref(t):
        return t * 2

    def negated(t):
        out = -2 * t
        out[0, 0] = float("-inf")
        return out

    assert output_cosine(ref, lambda t: -2 * t, x) == pytest.approx(-1.0)
    with pytest.warns(RuntimeWarning, match="1 of 30 output values are non-finite"):
        assert math.isnan(output_cosine(ref, negated, x))

    def masked(scale):
        def f(t):
            out = t * scale
            out[:, 0] = float("-inf")
            return out
        return f

    assert output_cosine(masked(2.0), masked(3.0), x) == pytest.approx(1.0)
    assert output_cosine(masked(2.0), masked(-3.0), x) == pytest.approx(-1.0)

    def nan_masked(scale):
        def f(t):
            out = t * scale
            out[1, 2] = float("nan")
            return out
        return f

    # a NaN at the same place in both agrees too: left out, no warning, the rest's cosine
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert output_cosine(nan_masked(2.0), nan_masked(3.0), x) == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [2.5, True, "3", 0, -1])
def test_a_batch_size_that_is_not_a_count_is_refused(bad):
    """2.5, True and "3" were taken as 2, 1 and 3 where the docstring promises a ValueError."""
    y = torch.tensor([0, 2, 0, 1, 1, 2, 0])
    for call in (lambda: predict(_Counting(), SCORES, batch_size=bad),
                 lambda: accuracy(_Counting(), SCORES, y, batch_size=bad),
                 lambda: output_cosine(_Counting(), _Counting(), SCORES, batch_size=bad)):
        with pytest.raises(ValueError, match="batch_size = .* is invalid"):
            call()
    assert predict(_Counting(), SCORES, batch_size=np.int64(3)).tolist() == PRED.tolist()


def test_a_model_left_in_training_mode_is_warned_about_at_the_callers_line():
    """``accuracy`` of a float model left in training mode measured it with dropout on and
    without a word (the docstring only said its mode is not changed): the float baseline of
    a comparison. The warning names the caller's line, not cimsim's."""
    import warnings

    import torch

    from cimsim.evaluate import accuracy, output_cosine, predict

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5),
                                torch.nn.Linear(8, 3))
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    for call in (lambda: accuracy(model, x, y), lambda: predict(model, x),
                 lambda: accuracy(model, [(x, y)]), lambda: output_cosine(model, model, x)):
        model.train()
        with pytest.warns(UserWarning, match=r"Sequential is evaluated in training mode \(1 "
                                             r"dropout or BatchNorm module\(s\) .* '1'\)") as seen:
            call()
        assert {w.filename for w in seen} == {__file__}
        assert model.training  # left as it was
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        accuracy(model, x, y)
        plain = torch.nn.Linear(4, 3)  # in training mode, nothing that acts on it
        accuracy(plain.train(), x, y)


def test_a_recurrent_state_in_a_dict_is_cut_with_its_samples():
    """A dict's ``(layers, B, H)`` state (also inside a tuple) is cut along its dimension 1
    with the batch: ``predict`` at a batch smaller than the data failed in the GRU's shape
    check."""
    torch.manual_seed(0)
    model = StateLSTM().eval()
    x, hc = state_lstm_data()
    data = {"x": x, "hc": hc}
    with torch.no_grad():
        whole = model(**data)
    for bs in (4, 16):
        torch.testing.assert_close(predict(model, data, batch_size=bs), whole.argmax(1))
        assert output_cosine(model, model, data, batch_size=bs) == pytest.approx(1.0)


def test_a_position_row_shared_by_the_batch_is_passed_whole():
    """A 2-D entry with the sample count only along dimension 1 (a ``(1, S)`` row of
    positions, S equal to the samples by chance) is shared, not cut: dimension 1 holds the
    samples only of a state of three dimensions or more."""
    from cimsim._inputs import input_rows, sample_dim

    x = {"ids": torch.zeros(6, 6), "pos": torch.arange(6)[None], "h": torch.zeros(2, 6, 3)}
    assert sample_dim(x["pos"], 2, 6) is None and sample_dim(x["h"], 2, 6) == 1
    part = input_rows(x, 0, 2)
    assert part["ids"].shape == (2, 6) and part["pos"].shape == (1, 6)
    assert part["h"].shape == (2, 2, 3)


def test_output_cosine_keeps_sums_not_the_outputs(monkeypatch):
    """It kept every output of the set to concatenate them at the end (4.5 GB for 16,000
    inputs of 8,192 outputs); it sums per batch now, to the same cosine as one concatenated
    product: at most the last batch's outputs are alive when the next batch runs."""
    import gc
    import weakref

    import torch

    from cimsim import evaluate

    torch.manual_seed(0)
    x = torch.randn(42, 6)
    a, b = torch.nn.Linear(6, 5), torch.nn.Linear(6, 5)
    with torch.no_grad():
        ref, out = a(x).double().reshape(-1), b(x).double().reshape(-1)
    want = float(ref @ out / (ref.norm() * out.norm()))
    refs: list = []
    alive: list[int] = []
    real = evaluate._leaves

    def leaves(output):
        gc.collect()
        alive.append(sum(r() is not None for r in refs))
        got = real(output)
        refs.extend(weakref.ref(t) for t in got)
        return got

    monkeypatch.setattr(evaluate, "_leaves", leaves)
    assert evaluate.output_cosine(a, b, x, batch_size=7) == pytest.approx(want, rel=1e-12)
    assert len(alive) == 12 and max(alive) <= 3, alive  # 6 batches, two models each


def test_output_cosine_refuses_outputs_a_batch_apart():
    """With per-batch sums, outputs whose sizes differ batch by batch but agree in total
    (2 + 3 values against 3 + 2) reached the product as vectors of different lengths (a raw
    torch RuntimeError where a ValueError is promised)."""
    import torch

    from cimsim.evaluate import output_cosine

    calls = {"a": 0, "b": 0}

    def cut(name, widths):
        def model(x):
            width = widths[calls[name] % 2]
            calls[name] += 1
            return x[:, :width]
        return model

    x = torch.randn(4, 6)
    with pytest.raises(ValueError, match="outputs hold 10 values, the reference's 10"):
        output_cosine(cut("a", (2, 3)), cut("b", (3, 2)), x, batch_size=2)

"""Mutation testing, round 2, of ``cimsim/evaluate.py`` (accuracy, predict, output_cosine,
score_problem and their checks) and ``cimsim/_inputs.py`` (input counting and slicing).

Each test kills a mutant that survived the first-round tests (tests/test_evaluate.py,
tests/test_mutants_levels_rng_eval.py); its docstring names the location and the change. The
models are plain torch modules, so nothing is deployed and the file runs in about a second.
"""

from __future__ import annotations

import dataclasses
import math
import types
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from cimsim._inputs import call_on, counting_key, input_count, sample_dim
from cimsim.evaluate import accuracy, output_cosine, predict, score_problem


class _Fn(nn.Module):
    """A module around a function of the inputs (keyword inputs too)."""

    def __init__(self, fn, **attrs) -> None:
        super().__init__()
        self.fn = fn
        self.calls = 0
        for k, v in attrs.items():
            setattr(self, k, v)

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


class _SeqFirstMean(nn.Module):
    """(S, B, F) inputs -> (B, F) scores: the mean over the sequence."""

    def __init__(self, **attrs) -> None:
        super().__init__()
        for k, v in attrs.items():
            setattr(self, k, v)

    def forward(self, x):
        assert x.dim() == 3 and x.shape[0] == 5, x.shape  # always the whole sequence
        return x.mean(dim=0)


# --- _inputs.sample_dim / counting_key / input_count / call_on -------------------------------


def test_sample_dim_takes_a_numpy_array_as_an_input() -> None:
    """_inputs.sample_dim: ``torch.Tensor | np.ndarray`` -> ``torch.Tensor`` (arrays passed
    whole)."""
    assert sample_dim(np.zeros((4, 3)), 2, 4) == 0


def test_sample_dim_passes_a_zero_dimensional_tensor_whole() -> None:
    """_inputs.sample_dim: ``len(shape) > k`` -> ``>=`` (a 0-d tensor indexed: IndexError)."""
    assert sample_dim(torch.tensor(3.0), 2, 4) is None


def test_counting_key_counts_numpy_entries() -> None:
    """_inputs.counting_key: NumPy arrays dropped from the candidate keys."""
    values = {"a": np.zeros((1, 3)), "b": np.zeros((5, 3))}
    assert counting_key(values) == "b"
    assert input_count(values) == 5


def test_counting_key_falls_back_to_the_first_tensor() -> None:
    """_inputs.counting_key: fallback ``keys[0]`` -> ``keys[-1]``."""
    assert counting_key({"a": torch.ones(1, 3), "b": torch.ones(1, 4)}) == "a"


def test_input_count_of_a_dict_counts_along_batch_dim() -> None:
    """_inputs.input_count: a dict's count ``shape[batch_dim]`` -> ``shape[0]``."""
    assert input_count({"x": torch.zeros(2, 5)}, batch_dim=1) == 5


def test_input_count_names_the_allowed_batch_dims() -> None:
    """_inputs.input_count: the message's ``0..{ndim - 1}`` -> ``0..{ndim}``."""
    with pytest.raises(ValueError, match=r"batch_dim = 1 .*allowed: 0\.\.0$"):
        input_count(torch.zeros(3), batch_dim=1)


def test_input_count_names_a_tuple_of_samples() -> None:
    """_inputs.input_count: ``isinstance(x, (list, tuple))`` -> ``list`` (a tuple unnamed)."""
    with pytest.raises(ValueError, match=r"x is a tuple of 3; allowed: a tensor"):
        input_count((torch.zeros(2), torch.zeros(2), torch.zeros(2)))


def test_call_on_takes_any_mapping_as_keyword_inputs() -> None:
    """_inputs.call_on: ``isinstance(x, Mapping)`` -> ``dict``."""
    assert call_on(lambda **kw: sorted(kw), types.MappingProxyType({"a": 1, "b": 2})) == ["a", "b"]


# --- predict -----------------------------------------------------------------------------


def test_predict_refuses_three_dimensional_scores() -> None:
    """evaluate._predicted: ``scores.dim() != 2`` -> ``< 2``."""
    with pytest.raises(ValueError, match=r"shape \(3, 2, 1\).*allowed: \(batch, classes\)"):
        predict(_Fn(lambda x: x[:, :, None]), torch.zeros(3, 2))


def test_an_infinite_score_is_a_prediction_not_a_nan() -> None:
    """evaluate._predicted: ``isnan(...).any`` -> ``~isfinite(...).all`` (inf taken as NaN)."""
    scores = torch.tensor([[0.0, float("inf")], [1.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert predict(nn.Identity(), scores).tolist() == [1, 0]


def test_predict_with_batch_size_none_runs_one_forward() -> None:
    """evaluate._step: None -> ``return n`` changed to ``return 256``."""
    model = _Fn(lambda x: x)
    predict(model, torch.ones(300, 3), batch_size=None)
    assert model.calls == 1


def test_predict_takes_the_models_own_batch_dim() -> None:
    """evaluate._batch_dim: ``getattr(model, 'batch_dim', 0)`` -> ``0``; evaluate._run: the
    batch cut along dimension 0 whatever ``batch_dim``."""
    x = torch.zeros(5, 3, 4)
    x[:, :, 2] = 1.0
    for model, kw in ((_SeqFirstMean(batch_dim=1), {}), (_SeqFirstMean(), {"batch_dim": 1})):
        assert predict(model, x, batch_size=2, **kw).tolist() == [2, 2, 2]


def test_a_fractional_batch_dim_is_refused() -> None:
    """evaluate._batch_dim: ``not _is_int(batch_dim) or ...`` dropped (1.5 taken as 1)."""
    with pytest.raises(ValueError, match=r"batch_dim = 1\.5 is invalid; allowed: an integer >= 0"):
        predict(nn.Identity(), torch.zeros(2, 3), batch_dim=1.5)


def test_a_tuple_output_is_named_with_its_length() -> None:
    """evaluate._scores: the `` of {len(out)}`` of the message dropped."""
    with pytest.raises(ValueError, match=r"returned a tuple of 2, not a tensor"):
        predict(_Fn(lambda x: (x, x)), torch.zeros(2, 3))


def test_logits_of_a_read_only_mapping_are_the_scores() -> None:
    """evaluate.logits_of: ``isinstance(out, Mapping)`` -> ``dict``."""
    model = _Fn(lambda x: types.MappingProxyType({"logits": x}))
    assert predict(model, torch.tensor([[0.0, 1.0], [1.0, 0.0]])).tolist() == [1, 0]


def test_the_nan_warning_counts_every_nan_row() -> None:
    """evaluate._predicted: ``int(nan.sum())`` -> ``int(nan.any())``."""
    nan = float("nan")
    scores = torch.tensor([[nan, 0.0], [0.0, 1.0], [1.0, nan]])
    with pytest.warns(RuntimeWarning, match=r"^2 of 3 inputs have NaN class scores"):
        assert predict(nn.Identity(), scores).tolist() == [-1, 1, -1]


# --- training-mode warning ---------------------------------------------------------------


def test_a_batchnorm_in_training_mode_is_warned_about() -> None:
    """evaluate._warn_training_mode: BatchNorm dropped from the modules that act."""
    with pytest.warns(UserWarning, match=r"1 dropout or BatchNorm module\(s\).*'0'"):
        predict(nn.Sequential(nn.BatchNorm1d(3)).train(), torch.ones(4, 3))


def test_a_root_dropout_is_named_by_its_type() -> None:
    """evaluate._warn_training_mode: ``name or type(model).__name__`` -> ``name``."""
    with pytest.warns(UserWarning, match=r"e\.g\. 'Dropout'"):
        predict(nn.Dropout(0.0).train(), torch.ones(4, 3))


def test_the_first_acting_module_is_named() -> None:
    """evaluate._warn_training_mode: ``live[0]`` -> ``live[-1]``."""
    model = nn.Sequential(nn.Dropout(0.0), nn.Dropout(0.0)).train()
    with pytest.warns(UserWarning, match=r"\(2 dropout .* e\.g\. '0'\)"):
        predict(model, torch.ones(4, 3))


def test_output_cosine_warns_about_the_model_in_training_mode() -> None:
    """evaluate.output_cosine: ``_warn_training_mode(model)`` deleted."""
    with pytest.warns(UserWarning, match=r"Sequential is evaluated in training mode"):
        output_cosine(nn.Identity(), nn.Sequential(nn.Dropout(0.0)).train(), torch.ones(4, 3))


# --- score_problem -------------------------------------------------------------------------


class _ModeShaped(nn.Module):
    """(B, C) scores in eval mode, (B,) in training mode."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.0)

    def forward(self, x):
        return x if not self.training else x.sum(dim=1)


def test_score_problem_runs_in_eval_mode_and_restores_the_mode() -> None:
    """evaluate.score_problem: ``m.training = False`` deleted; ``restore_modes`` deleted."""
    model = _ModeShaped().train()
    assert score_problem(model, torch.zeros(3, 2), torch.tensor([0, 1, 1])) is None
    assert model.training and model.drop.training


def test_score_problem_with_no_labels_is_no_problem() -> None:
    """evaluate.score_problem: ``y.numel() and`` dropped (max of an empty tensor)."""
    assert score_problem(nn.Identity(), torch.zeros(2, 3), torch.zeros(0, dtype=torch.int64)) \
        is None


def test_score_problem_on_a_single_input_counts_one() -> None:
    """evaluate.score_problem: ``n = input_count(example)`` -> ``n = 2``."""
    assert score_problem(nn.Identity(), torch.eye(3)[:1], torch.tensor([0])) is None


# --- accuracy ------------------------------------------------------------------------------


def test_accuracy_refuses_more_labels_than_inputs() -> None:
    """evaluate.accuracy: ``y.shape[0] != n`` -> ``< n``."""
    with pytest.raises(ValueError, match=r"^3 inputs but 4 labels$"):
        accuracy(nn.Identity(), torch.eye(3), torch.tensor([0, 1, 2, 0]))


def test_accuracy_names_the_dimension_it_counted_along() -> None:
    """evaluate.accuracy: the `` (inputs counted along dimension {dim})`` suffix dropped."""
    with pytest.raises(ValueError, match=r"3 inputs but 2 labels \(inputs counted along "
                                         r"dimension 1\)"):
        accuracy(_SeqFirstMean(), torch.zeros(5, 3, 4), torch.tensor([0, 1]), batch_dim=1)


def test_accuracy_refuses_labels_with_any_fraction() -> None:
    """evaluate._class_labels: ``(t != round(t)).any()`` -> ``.all()``."""
    with pytest.raises(ValueError, match=r"accuracy: y holds values that are not whole"):
        accuracy(nn.Identity(), torch.eye(2), torch.tensor([0.0, 1.5]))


def test_accuracy_refuses_complex_labels_naming_the_dtype() -> None:
    """evaluate._class_labels: ``t.is_complex() or`` dropped."""
    with pytest.raises(ValueError, match=r"accuracy: y has dtype torch.complex64; allowed: "
                                         r"integer class indices"):
        accuracy(nn.Identity(), torch.eye(2), torch.tensor([0, 1], dtype=torch.complex64))


def test_accuracy_of_a_model_with_its_own_batch_dim() -> None:
    """evaluate._run: samples cut along dimension 0, not the model's ``batch_dim``."""
    x = torch.zeros(5, 3, 4)
    x[:, :, 1] = 1.0
    assert accuracy(_SeqFirstMean(batch_dim=1), x, torch.tensor([1, 1, 0]),
                    batch_size=2) == pytest.approx(2 / 3)


def test_accuracy_without_y_refuses_a_dict_of_inputs() -> None:
    """evaluate._accuracy_of_batches: ``isinstance(batches, Mapping)`` check dropped."""
    with pytest.raises(ValueError, match=r"y is required with inputs of type dict"):
        accuracy(nn.Identity(), {"x": torch.eye(2)})


def test_accuracy_without_y_takes_read_only_mapping_batches() -> None:
    """evaluate._accuracy_of_batches: ``isinstance(batch, Mapping)`` -> ``dict``."""
    batch = types.MappingProxyType({"x": torch.eye(2), "labels": torch.tensor([0, 0])})
    assert accuracy(_Fn(lambda x: x), [batch]) == 0.5


def test_accuracy_over_an_empty_batch_is_an_empty_set() -> None:
    """evaluate._check_label_range: ``or not y.numel()`` dropped (min of no labels)."""
    with pytest.raises(ValueError, match=r"cannot evaluate accuracy on an empty set"):
        accuracy(nn.Identity(), [(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))])


# --- output_cosine -------------------------------------------------------------------------


def test_output_cosine_refuses_an_empty_set() -> None:
    """evaluate.output_cosine: the ``n == 0`` check deleted."""
    with pytest.raises(ValueError, match=r"cannot compare outputs on an empty set"):
        output_cosine(nn.Identity(), nn.Identity(), torch.zeros(0, 3))


def test_output_cosine_takes_the_models_batch_dim_not_the_references() -> None:
    """evaluate.output_cosine: ``_batch_dim(model, ...)`` -> ``_batch_dim(reference, ...)``."""
    x = torch.arange(60.0).reshape(5, 3, 4)
    ref, sim = _SeqFirstMean(), _SeqFirstMean(batch_dim=1)
    assert output_cosine(ref, sim, x, batch_size=2) == pytest.approx(1.0)


def test_output_cosine_compares_dict_outputs() -> None:
    """evaluate._leaves: a Mapping's values dropped."""
    model = _Fn(lambda x: {"feat": x})
    assert output_cosine(model, model, torch.arange(12.0).reshape(3, 4)) == pytest.approx(1.0)


@dataclasses.dataclass
class _NoDefault:
    a: int


def test_output_cosine_ignores_a_dataclass_type_in_the_output() -> None:
    """evaluate._leaves: ``and not isinstance(out, type)`` dropped (a class read as an
    instance: AttributeError)."""
    model = _Fn(lambda x: (x, _NoDefault))
    assert output_cosine(model, model, torch.arange(12.0).reshape(3, 4)) == pytest.approx(1.0)


def test_a_batch_without_tensors_after_one_with_them_is_compared() -> None:
    """evaluate.output_cosine: ``any_ref or bool(...)`` -> ``bool(...)`` (last batch only)."""
    model = _Fn(lambda x: x if len(x) > 1 else [])
    assert output_cosine(model, model, torch.ones(3, 4), batch_size=2) == pytest.approx(1.0)


def test_outputs_that_are_all_non_finite_and_differ_are_undefined() -> None:
    """evaluate.output_cosine: ``not bool(finite.all())`` -> ``bool(finite.any())`` (a batch
    with no finite value skipped the check, and the cosine came out 0.0)."""
    x = torch.zeros(2, 1)
    ref = _Fn(lambda v: v + float("inf"))
    sim = _Fn(lambda v: v + float("nan"))
    with pytest.warns(RuntimeWarning, match=r"2 of 2 output values are non-finite"):
        assert math.isnan(output_cosine(ref, sim, x))


# --- real bugs -----------------------------------------------------------------------------


class TestScoreProblemNegativeLabels:
    """``score_problem`` says every label must be one of the model's classes, but checked only
    ``y.max()`` (a bug this round found): a label of -1 passed the command line's and the
    sweep's check, and ``accuracy`` (``_check_label_range``) refused it only later, after the
    deploy. Both now say the same thing of the same labels."""

    def test_a_negative_label_is_a_problem(self) -> None:
        problem = score_problem(nn.Identity(), torch.eye(3), torch.tensor([0, -1, 2]))
        assert problem == ("label -1 is out of range for the model, which scores 3 classes "
                           "(labels 0..2)")
        with pytest.raises(ValueError, match=r": label -1 is out of range for the model, "
                                             r"which scores 3 classes \(labels 0\.\.2\)$"):
            accuracy(nn.Identity(), torch.eye(3), torch.tensor([0, -1, 2]))

    def test_labels_in_range_or_none_are_no_problem(self) -> None:
        assert score_problem(nn.Identity(), torch.eye(3), torch.tensor([0, 2, 1])) is None
        assert score_problem(nn.Identity(), torch.eye(3), torch.tensor([], dtype=torch.long)) \
            is None

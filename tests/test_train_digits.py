"""Tests for the bundled digits CNN (cimsim.models.digits_cnn, cimsim.data) and the old path."""

from __future__ import annotations

import zipfile
from importlib import resources

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from cimsim.data import load_digits_split
from cimsim.models import (
    DigitsCNN,
    evaluate,
    load_digits_cnn,
    save_weights,
    train_digits_cnn,
)
from cimsim.models.digits_cnn import DEFAULT_WEIGHTS

N_DIGITS = 1797


@pytest.fixture(scope="module")
def bundled_path():
    ref = resources.files("cimsim").joinpath("data").joinpath(DEFAULT_WEIGHTS)
    with resources.as_file(ref) as path:
        yield path


@pytest.fixture(scope="module")
def split():
    return load_digits_split()


# --- (a) bundled weights --------------------------------------------------------------------


def test_bundled_weights_reach_97_percent(split):
    _, _, x_test, y_test = split
    model = load_digits_cnn()
    assert not model.training
    acc = evaluate(model, x_test, y_test)
    assert isinstance(acc, float)
    assert acc >= 0.97


def test_bundled_weights_fit_training_set(split):
    x_train, y_train, _, _ = split
    assert evaluate(load_digits_cnn(), x_train, y_train) >= 0.97


def test_model_is_small_and_uses_relu_modules():
    model = DigitsCNN()
    assert sum(p.numel() for p in model.parameters()) < 40_000
    assert sum(isinstance(m, torch.nn.ReLU) for m in model.modules()) == 4
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            assert m.bias is not None
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


# --- (b) fixed split ------------------------------------------------------------------------


def test_split_shapes_dtypes_and_range(split):
    x_train, y_train, x_test, y_test = split
    assert x_train.shape == (1348, 1, 8, 8) and x_test.shape == (449, 1, 8, 8)
    assert y_train.shape == (1348,) and y_test.shape == (449,)
    assert x_train.dtype == x_test.dtype == torch.float32
    assert y_train.dtype == y_test.dtype == torch.int64
    for x in (x_train, x_test):
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(x_train.max()) == 1.0
    assert set(y_train.tolist()) == set(y_test.tolist()) == set(range(10))


def test_split_is_deterministic(split):
    again = load_digits_split()
    for a, b in zip(split, again, strict=True):
        assert torch.equal(a, b)
    other = load_digits_split(seed=1)
    assert not torch.equal(split[3], other[3])


def test_split_is_disjoint_and_follows_documented_permutation(split):
    # Duplicate images exist in the data set, so check disjointness by index
    # through the documented rule rather than by comparing pixels.
    digits = load_digits()
    perm = np.random.default_rng(0).permutation(N_DIGITS)
    test_idx, train_idx = perm[:449], perm[449:]
    assert set(test_idx).isdisjoint(train_idx)
    assert len(set(test_idx) | set(train_idx)) == N_DIGITS

    x_train, y_train, x_test, y_test = split
    expected = digits.images.astype(np.float32) / np.float32(16.0)
    np.testing.assert_array_equal(x_test.numpy()[:, 0], expected[test_idx])
    np.testing.assert_array_equal(x_train.numpy()[:, 0], expected[train_idx])
    np.testing.assert_array_equal(y_test.numpy(), digits.target[test_idx])
    np.testing.assert_array_equal(y_train.numpy(), digits.target[train_idx])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5])
def test_split_rejects_empty_sets(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(test_fraction=fraction)


# --- (c) pickle-free weights file -----------------------------------------------------------


def test_bundled_file_is_small_pickle_free_float32(bundled_path):
    assert bundled_path.stat().st_size < 200_000
    with zipfile.ZipFile(bundled_path) as zf:
        assert all(name.endswith(".npy") for name in zf.namelist())
    with np.load(bundled_path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    expected = DigitsCNN().state_dict()
    assert set(arrays) == set(expected)
    for name, arr in arrays.items():
        assert arr.dtype == np.float32
        assert arr.shape == tuple(expected[name].shape)
        assert np.isfinite(arr).all()


def test_save_load_roundtrip(tmp_path, split):
    torch.manual_seed(123)
    model = DigitsCNN()
    path = tmp_path / "w.npz"
    save_weights(model, path)
    assert path.exists()
    loaded = load_digits_cnn(path)
    assert not loaded.training
    for (k1, v1), (k2, v2) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k1 == k2 and torch.equal(v1, v2)
    x = split[2][:16]
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_load_rejects_wrong_file(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, foo=np.zeros(3, dtype=np.float32))
    with pytest.raises((KeyError, RuntimeError)):
        load_digits_cnn(path)


def test_evaluate_restores_training_mode(split):
    model = load_digits_cnn()
    model.train()
    evaluate(model, split[2], split[3], batch_size=100)
    assert model.training


# --- the old import path ---------------------------------------------------------------------


@pytest.mark.parametrize("name, new", [("load_digits_cnn", load_digits_cnn),
                                       ("load_digits_split", load_digits_split),
                                       ("DigitsCNN", DigitsCNN), ("evaluate", evaluate),
                                       ("save_weights", save_weights),
                                       ("train_digits_cnn", train_digits_cnn),
                                       ("DEFAULT_WEIGHTS", DEFAULT_WEIGHTS)])
def test_old_path_warns_and_gives_the_moved_object(name, new):
    import cimsim.train.digits as old

    with pytest.warns(DeprecationWarning, match=f"cimsim.train.digits.{name} moved to"):
        assert getattr(old, name) is new


def test_old_path_from_import_and_unknown_name():
    with pytest.warns(DeprecationWarning, match="cimsim.data"):
        from cimsim.train.digits import load_digits_split as old_split
    assert old_split is load_digits_split
    import cimsim.train.digits as old

    with pytest.raises(AttributeError, match="no_such_name"):
        old.no_such_name  # noqa: B018
    assert "load_digits_cnn" in dir(old)


# --- retraining (slow) ----------------------------------------------------------------------


@pytest.mark.slow
def test_retrain_is_bitwise_reproducible_and_accurate(tmp_path, split):
    _, _, x_test, y_test = split
    paths = []
    for i in range(2):
        model = train_digits_cnn(seed=0)
        assert evaluate(model, x_test, y_test) >= 0.97
        paths.append(tmp_path / f"run{i}.npz")
        save_weights(model, paths[-1])
    with np.load(paths[0], allow_pickle=False) as a, np.load(paths[1], allow_pickle=False) as b:
        assert a.files == b.files
        for k in a.files:
            assert a[k].tobytes() == b[k].tobytes(), k
    # The training context must not leak its global settings.
    assert not torch.are_deterministic_algorithms_enabled()

"""A small CNN trained on scikit-learn's bundled handwritten digits.

The simulator's demo needs a real model on real data that ships with the
package and needs no download. ``sklearn.datasets.load_digits`` provides
1797 greyscale 8x8 images (pixel values 0..16) of the digits 0-9; this
module defines a small CNN for them, a fixed train/test split, a
deterministic CPU training loop, and pickle-free ``.npz`` weight I/O.

The bundled weights in ``cimsim/data/digits_cnn.npz`` are reproduced with::

    python scripts/train_digits.py --seed 0
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..evaluate import accuracy

__all__ = [
    "DEFAULT_WEIGHTS",
    "DigitsCNN",
    "evaluate",
    "load_digits_cnn",
    "load_digits_split",
    "save_weights",
    "train_digits_cnn",
]

logger = logging.getLogger(__name__)

#: File name of the bundled weights inside the ``cimsim.data`` package directory.
DEFAULT_WEIGHTS = "digits_cnn.npz"

# load_digits stores pixel intensities as counts 0..16 (4x4 blocks of a 32x32 bitmap).
_PIXEL_MAX = 16.0


class DigitsCNN(nn.Module):
    """Small CNN classifying 8x8 digit images into 10 classes.

    Layout (shapes per sample)::

        (1, 8, 8)  -> Conv2d(1, 16, 3, p=1) + ReLU   -> (16, 8, 8)
                   -> Conv2d(16, 32, 3, p=1) + ReLU  -> (32, 8, 8)
                   -> MaxPool2d(2)                   -> (32, 4, 4)
                   -> Conv2d(32, 32, 3, p=1) + ReLU  -> (32, 4, 4)
                   -> MaxPool2d(2)                   -> (32, 2, 2)
                   -> Flatten                        -> (128,)
                   -> Linear(128, 64) + ReLU         -> (64,)
                   -> Linear(64, 10)                 -> (10,) logits

    Every layer has a bias, and activations are ``nn.ReLU`` modules rather than
    functional calls so that mapping code walking ``named_modules()`` sees them.
    22,954 trainable parameters.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1, bias=True),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1, bias=True),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=True),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 2 * 2, 64, bias=True),
            nn.ReLU(),
            nn.Linear(64, 10, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute class logits.

        Parameters
        ----------
        x : torch.Tensor
            Images, float, shape ``(B, 1, 8, 8)``, values in ``[0, 1]``.

        Returns
        -------
        torch.Tensor
            Logits, shape ``(B, 10)``.
        """
        return self.classifier(self.features(x))


def load_digits_split(
    test_fraction: float = 0.25, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return a fixed, reproducible train/test split of the sklearn digits.

    The split is ``perm = numpy.random.default_rng(seed).permutation(1797)``;
    the first ``round(1797 * test_fraction)`` indices of ``perm`` are the test
    set and the rest the training set, each kept in permutation order. The
    split depends only on ``seed`` and ``test_fraction`` (NumPy's ``Generator``
    streams are stable across versions), so accuracies quoted for the bundled
    weights refer to the default ``seed=0, test_fraction=0.25`` split:
    1348 training and 449 test images.

    Parameters
    ----------
    test_fraction : float, optional
        Fraction of the 1797 images held out for testing, in ``(0, 1)``.
    seed : int, optional
        Seed of the NumPy ``Generator`` drawing the permutation.

    Returns
    -------
    x_train : torch.Tensor
        float32, shape ``(n_train, 1, 8, 8)``, pixels scaled to ``[0, 1]``.
    y_train : torch.Tensor
        int64, shape ``(n_train,)``, labels 0..9.
    x_test : torch.Tensor
        float32, shape ``(n_test, 1, 8, 8)``, pixels scaled to ``[0, 1]``.
    y_test : torch.Tensor
        int64, shape ``(n_test,)``, labels 0..9.

    Raises
    ------
    ValueError
        If ``test_fraction`` leaves either set empty.
    """
    # Imported lazily: sklearn is heavy and only this function needs it.
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float32) / np.float32(_PIXEL_MAX)
    labels = np.asarray(digits.target, dtype=np.int64)
    n = images.shape[0]

    n_test = int(round(n * test_fraction))
    if not 0 < n_test < n:
        raise ValueError(
            f"test_fraction={test_fraction!r} gives {n_test} test images out of {n}; "
            "both the train and test sets must be non-empty"
        )

    perm = np.random.default_rng(seed).permutation(n)
    test_idx, train_idx = perm[:n_test], perm[n_test:]

    def _to_tensors(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(images[idx][:, None, :, :]))
        y = torch.from_numpy(np.ascontiguousarray(labels[idx]))
        return x, y

    x_train, y_train = _to_tensors(train_idx)
    x_test, y_test = _to_tensors(test_idx)
    return x_train, y_train, x_test, y_test


@contextlib.contextmanager
def _deterministic_cpu(seed: int) -> Iterator[None]:
    """Seed torch and force bitwise-reproducible CPU kernels, restoring state on exit."""
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_threads = torch.get_num_threads()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    # Multi-threaded reductions can split work differently on machines with
    # different core counts; one thread makes the weights identical everywhere.
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn_only)


def train_digits_cnn(
    seed: int = 0,
    epochs: int = 40,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    test_fraction: float = 0.25,
    split_seed: int = 0,
) -> DigitsCNN:
    """Train a :class:`DigitsCNN` deterministically on CPU.

    Uses Adam on cross-entropy over the training part of
    :func:`load_digits_split`, with a minibatch order drawn from a
    ``torch.Generator`` seeded by ``seed``. Given the same arguments and the
    same torch build, the returned weights are bitwise identical run to run.

    Parameters
    ----------
    seed : int, optional
        Seed for weight initialisation and minibatch shuffling.
    epochs : int, optional
        Passes over the training set.
    batch_size : int, optional
        Minibatch size.
    lr : float, optional
        Adam learning rate.
    weight_decay : float, optional
        Adam L2 weight decay.
    test_fraction : float, optional
        Passed to :func:`load_digits_split`.
    split_seed : int, optional
        Seed of the data split, kept separate from ``seed`` so that retraining
        with another seed is still evaluated on the same held-out images.

    Returns
    -------
    DigitsCNN
        Trained model in eval mode, on CPU.
    """
    x_train, y_train, _, _ = load_digits_split(test_fraction=test_fraction, seed=split_seed)
    n = x_train.shape[0]

    with _deterministic_cpu(seed):
        model = DigitsCNN()
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        # A dedicated generator keeps the batch order independent of any other
        # consumer of the global RNG after initialisation.
        gen = torch.Generator().manual_seed(seed)

        model.train()
        for epoch in range(epochs):
            order = torch.randperm(n, generator=gen)
            total = 0.0
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x_train[idx]), y_train[idx])
                loss.backward()
                optimizer.step()
                total += loss.item() * idx.numel()
            logger.debug("epoch %d/%d: train loss %.4f", epoch + 1, epochs, total / n)

    model.eval()
    return model


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write ``model.state_dict()`` to an uncompressed ``.npz`` of float32 arrays.

    Parameters
    ----------
    model : torch.nn.Module
        Model whose state dict holds only floating-point tensors.
    path : str or pathlib.Path
        Destination file; parent directories are created.

    Raises
    ------
    TypeError
        If the state dict holds a non-floating tensor (it would not round-trip
        as float32).
    """
    arrays: dict[str, np.ndarray] = {}
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            raise TypeError(f"state_dict entry {name!r} has dtype {tensor.dtype}; expected float")
        arrays[name] = tensor.detach().cpu().numpy().astype(np.float32, copy=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write through a file object so numpy does not append a second ".npz".
    with path.open("wb") as fh:
        # (numpy's stubs type every keyword as its `allow_pickle` flag; names here are tensors)
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    logger.info("wrote %d arrays to %s", len(arrays), path)


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """Read an ``.npz`` state dict; ``allow_pickle=False`` so a file cannot run code."""
    with np.load(path, allow_pickle=False) as npz:
        return {k: torch.from_numpy(np.array(npz[k], dtype=np.float32)) for k in npz.files}


def load_digits_cnn(path: str | Path | None = None) -> DigitsCNN:
    """Load a :class:`DigitsCNN` from a pickle-free ``.npz`` file.

    Parameters
    ----------
    path : str or pathlib.Path, optional
        Weights file written by :func:`save_weights`. Defaults to the bundled
        ``cimsim/data/digits_cnn.npz``.

    Returns
    -------
    DigitsCNN
        Model with the loaded weights, in eval mode, on CPU.

    Raises
    ------
    KeyError, RuntimeError
        If the file's arrays do not match the model's parameter names/shapes
        (raised by ``load_state_dict(strict=True)``).
    """
    if path is None:
        # Chained joinpath: multi-argument Traversable.joinpath needs Python 3.11.
        ref = resources.files("cimsim").joinpath("data").joinpath(DEFAULT_WEIGHTS)
        with resources.as_file(ref) as file:
            state = _read_state(file)
    else:
        state = _read_state(Path(path))
    model = DigitsCNN()
    model.load_state_dict(state, strict=True)
    model.eval()
    return model


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Classification accuracy of ``model`` on ``(x, y)``.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier mapping ``(B, 1, 8, 8)`` to ``(B, 10)`` logits. It is put in
        eval mode and its previous mode is restored afterwards.
    x : torch.Tensor
        Images, float32, shape ``(n, 1, 8, 8)``.
    y : torch.Tensor
        Labels, int64, shape ``(n,)``.
    batch_size : int, optional
        Images per forward pass.

    Returns
    -------
    float
        Fraction of correctly classified images, in ``[0, 1]``.
    """
    # Dropout and batch-norm statistics must not vary while the accuracy is measured.
    was_training = model.training
    model.eval()
    try:
        return accuracy(model, x, y, batch_size=batch_size)
    finally:
        model.train(was_training)

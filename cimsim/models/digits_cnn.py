"""The demo model: a small CNN trained on scikit-learn's bundled handwritten digits.

The simulator's demo needs a real model on real data that ships with the package and needs no
download. The bundled weights in ``cimsim/data/digits_cnn.npz`` are reproduced with::

    python scripts/train_digits.py --seed 0
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..data import load_digits_split
from ._common import fit_classifier, load_state

__all__ = ["DEFAULT_WEIGHTS", "DigitsCNN", "load_digits_cnn", "train_digits_cnn"]

#: File name of the bundled weights inside the ``cimsim.data`` package directory.
DEFAULT_WEIGHTS = "digits_cnn.npz"


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
    :func:`cimsim.data.load_digits_split`, with a minibatch order drawn from a
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
        Passed to :func:`cimsim.data.load_digits_split`.
    split_seed : int, optional
        Seed of the data split, kept separate from ``seed`` so that retraining
        with another seed is still evaluated on the same held-out images.

    Returns
    -------
    DigitsCNN
        Trained model in eval mode, on CPU.
    """
    x_train, y_train, _, _ = load_digits_split(test_fraction=test_fraction, seed=split_seed)
    model = fit_classifier(DigitsCNN, x_train, y_train, seed=seed, epochs=epochs,
                           batch_size=batch_size, lr=lr, weight_decay=weight_decay)
    assert isinstance(model, DigitsCNN)
    return model


def load_digits_cnn(path: str | Path | None = None) -> DigitsCNN:
    """Load a :class:`DigitsCNN` from a pickle-free ``.npz`` file.

    Parameters
    ----------
    path : str or pathlib.Path, optional
        Weights file written by :func:`cimsim.models.save_weights`. Defaults to the bundled
        ``cimsim/data/digits_cnn.npz``.

    Returns
    -------
    DigitsCNN
        Model with the loaded weights, in eval mode, on CPU.

    Raises
    ------
    KeyError, RuntimeError
        If the file's arrays do not match the model's parameter names/shapes.
    """
    model = DigitsCNN()
    load_state(model, path, DEFAULT_WEIGHTS)
    return model

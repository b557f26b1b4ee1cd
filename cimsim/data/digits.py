"""scikit-learn's bundled handwritten digits as a fixed train/test split, and bundled files.

``sklearn.datasets.load_digits`` provides 1797 greyscale 8x8 images (pixel values 0..16) of the
digits 0-9, installed with scikit-learn, so the demo models train and evaluate on real data with
no download.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .._seed import check_seed
from ..errors import ConfigError

__all__ = ["PIXEL_MAX", "bundled_file", "load_digits_split"]

#: load_digits stores pixel intensities as counts 0..16 (4x4 blocks of a 32x32 bitmap).
PIXEL_MAX = 16.0


@contextlib.contextmanager
def bundled_file(name: str) -> Iterator[Path]:
    """A filesystem path to a file shipped in ``cimsim/data`` (valid inside the ``with``).

    Parameters
    ----------
    name : str
        File name inside the package directory, e.g. ``"digits_cnn.npz"``.
    """
    # Chained joinpath: multi-argument Traversable.joinpath needs Python 3.11.
    ref = resources.files("cimsim").joinpath("data").joinpath(name)
    with resources.as_file(ref) as path:
        yield Path(path)


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
        If ``test_fraction`` is not a number or leaves either set empty, or ``seed`` is not
        an integer >= 0 (``cimsim.errors.ConfigError``, a ValueError).
    """
    # Imported lazily: sklearn is heavy and only this function needs it.
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float32) / np.float32(PIXEL_MAX)
    labels = np.asarray(digits.target, dtype=np.int64)
    n = images.shape[0]

    seed = check_seed(seed)  # -1 failed in NumPy ("expected non-negative integer")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) \
            or not math.isfinite(test_fraction):  # 'a', NaN failed in round() / int()
        raise ConfigError(f"test_fraction = {test_fraction!r} is invalid; allowed: a number "
                          "in (0, 1)")
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

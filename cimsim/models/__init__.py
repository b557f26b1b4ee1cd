"""The bundled demo models, trained on scikit-learn's digits (``cimsim.data``).

- :class:`DigitsCNN` / :func:`load_digits_cnn`: the 23 k-parameter CNN of ``cimsim demo``;
- :class:`ResNetDigits` / :func:`load_resnet_digits`: a ResNet-20-style network (BatchNorm,
  residual adds, 0.27 M parameters), a model that needs training for the chip.

Both load from pickle-free ``.npz`` files shipped in ``cimsim/data`` and are reproduced by
``scripts/train_digits.py`` and ``scripts/train_resnet_digits.py``.
"""

from ._common import evaluate, save_weights
from .digits_cnn import DigitsCNN, load_digits_cnn, train_digits_cnn
from .resnet_digits import ResNetDigits, load_resnet_digits, train_resnet_digits

__all__ = ["DigitsCNN", "ResNetDigits", "evaluate", "load_digits_cnn", "load_resnet_digits",
           "save_weights", "train_digits_cnn", "train_resnet_digits"]

"""A ResNet-20-style residual network for the bundled digits: a model that needs chip training.

The demo CNN survives most chips after post-training deployment; a deeper network with
BatchNorm and residual adds accumulates the chip's errors over 21 mapped convolutions and is the
kind of model that the training twin (``cimsim.train``) is for. The bundled weights in
``cimsim/data/resnet_digits.npz`` are reproduced with::

    python scripts/train_resnet_digits.py --seed 0
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .._seed import check_positive_int
from ..data import load_digits_split
from ..errors import ConfigError
from ._common import fit_classifier, load_state

__all__ = ["BasicBlock", "ResNetDigits", "load_resnet_digits", "train_resnet_digits",
           "RESNET_WEIGHTS"]

#: File name of the bundled weights inside the ``cimsim.data`` package directory.
RESNET_WEIGHTS = "resnet_digits.npz"


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm, added to a shortcut (He et al., CVPR 2016).

    The shortcut is the identity when shape is kept, and a 1x1 convolution with BatchNorm (a
    projection, itself a mapped layer) when the block changes width or stride.

    Parameters
    ----------
    c_in, c_out : int
        Input and output channels.
    stride : int
        Stride of the first convolution (2 halves the image side).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        # A module (not F.relu) so that code walking named_modules() sees every activation.
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``, shapes ``(B, C, H, W)``."""
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNetDigits(nn.Module):
    """ResNet-20 layout for 8x8 digits: 3 stages of 3 basic blocks, widths 16, 32, 64.

    Layout (shapes per sample, default ``upscale=2``)::

        (1, 8, 8)   -> Upsample x2 (bilinear)                      -> (1, 16, 16)
                    -> Conv2d(1, 16, 3, p=1) + BN + ReLU           -> (16, 16, 16)
                    -> stage1: 3 blocks, 16 channels               -> (16, 16, 16)
                    -> stage2: 3 blocks, 32 channels, first /2     -> (32, 8, 8)
                    -> stage3: 3 blocks, 64 channels, first /2     -> (64, 4, 4)
                    -> AdaptiveAvgPool2d(1) + Flatten              -> (64,)
                    -> Linear(64, 10)                              -> (10,) logits

    The 19 3x3 convolutions, two 1x1 projections and one Linear map onto the arrays;
    BatchNorm, ReLU, the residual adds, the upsampling and the pooling run digitally.
    About 0.27 M parameters.

    Parameters
    ----------
    upscale : int
        Factor by which the 8x8 input is upsampled first, so that the third stage still sees a
        4x4 image (1: no upsampling).
    widths : tuple of int
        Channels of the three stages.
    blocks : int
        Basic blocks per stage (3 gives ResNet-20).
    """

    def __init__(self, upscale: int = 2, widths: tuple[int, int, int] = (16, 32, 64),
                 blocks: int = 3) -> None:
        super().__init__()
        upscale, blocks = check_positive_int("upscale", upscale), check_positive_int(
            "blocks", blocks)
        if not isinstance(widths, (tuple, list)) or len(widths) != 3:  # (4, 4) failed unpacking
            raise ConfigError(f"ResNetDigits: widths = {widths!r} is invalid; allowed: three "
                              "integers >= 1")
        w0, w1, w2 = (check_positive_int("widths", w) for w in widths)
        widths = (w0, w1, w2)
        self.upscale = upscale
        self.stem = nn.Sequential(
            nn.Upsample(scale_factor=upscale, mode="bilinear", align_corners=False)
            if upscale != 1 else nn.Identity(),
            nn.Conv2d(1, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        stages = []
        c_in = widths[0]
        for i, width in enumerate(widths):
            layers = []
            for b in range(blocks):
                layers.append(BasicBlock(c_in, width, stride=2 if (i > 0 and b == 0) else 1))
                c_in = width
            stages.append(nn.Sequential(*layers))
        self.stage1, self.stage2, self.stage3 = stages
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(widths[2], 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, 10)`` of images ``(B, 1, 8, 8)`` with values in ``[0, 1]``."""
        return self.head(self.stage3(self.stage2(self.stage1(self.stem(x)))))


def train_resnet_digits(seed: int = 0, epochs: int = 30, batch_size: int = 64,
                        lr: float = 3e-3, weight_decay: float = 1e-4) -> ResNetDigits:
    """Train a :class:`ResNetDigits` deterministically on CPU.

    Adam on cross-entropy with a cosine learning-rate schedule, over the training part of
    :func:`cimsim.data.load_digits_split` (the default split), minibatch order from ``seed``.
    Same arguments and torch build give bitwise-identical weights.

    Parameters
    ----------
    seed : int
        Seed for weight initialisation and minibatch shuffling.
    epochs, batch_size, lr, weight_decay
        Training settings.

    Returns
    -------
    ResNetDigits
        Trained model in eval mode, on CPU.
    """
    x_train, y_train, _, _ = load_digits_split()
    model = fit_classifier(ResNetDigits, x_train, y_train, seed=seed, epochs=epochs,
                           batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                           cosine_lr=True)
    assert isinstance(model, ResNetDigits)
    return model


def load_resnet_digits(path: str | Path | None = None) -> ResNetDigits:
    """Load a :class:`ResNetDigits` from a pickle-free ``.npz`` file.

    Parameters
    ----------
    path : str or pathlib.Path, optional
        Weights written by :func:`cimsim.models.save_weights`; defaults to the bundled
        ``cimsim/data/resnet_digits.npz``.

    Returns
    -------
    ResNetDigits
        In eval mode, on CPU.

    Raises
    ------
    KeyError, RuntimeError
        If the file's arrays do not match the model's parameter names/shapes.
    """
    model = ResNetDigits()
    load_state(model, path, RESNET_WEIGHTS)
    return model

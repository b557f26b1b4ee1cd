"""The twenty-fourth zoo's models (``test_zoo24.py``): small networks in the *state* in which a
user's model arrives, each ``make()`` returning the model in that state (half precision,
wrapped, compiled, pruned, made under ``torch.inference_mode()``, partly frozen) and each
``data()`` its inputs as a user's pipeline gives them (integer images and token ids,
non-contiguous views, a batch of one). The states, not the architectures, are the cases."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune


class SmallCNN(nn.Module):
    """A stem convolution with BatchNorm, a residual 3x3 block, a dropout and a classifier:
    the network most of the states wrap."""

    def __init__(self, channels: int = 8, n_classes: int = 5):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.block = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(channels, channels, 3, padding=1))
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = F.relu(x + self.block(x))
        return self.fc(self.drop(x.mean((2, 3))))


def _stats(model: SmallCNN) -> SmallCNN:
    """Running statistics of a trained BatchNorm (not the fresh 0 / 1)."""
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.3, 0.3)
        model.bn.running_var.uniform_(0.5, 1.5)
    return model


class TinyViT(nn.Module):
    """A patch embedding, one pre-norm ``nn.TransformerEncoderLayer`` (batch first, GELU),
    mean pooling and a head."""

    def __init__(self, dim: int = 16, n_classes: int = 4):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.encoder = nn.TransformerEncoderLayer(dim, 2, 2 * dim, dropout=0.0,
                                                  activation="gelu", batch_first=True,
                                                  norm_first=True)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        return self.head(self.encoder(tokens).mean(1))


def float16_cnn() -> nn.Module:
    """``model.half()``: a half-precision checkpoint deployed as stored."""
    return _stats(SmallCNN()).eval().half()


def bfloat16_vit() -> nn.Module:
    """``model.to(torch.bfloat16)``, as a bfloat16 checkpoint of a transformer comes."""
    return TinyViT().eval().to(torch.bfloat16)


def float64_cnn() -> nn.Module:
    return _stats(SmallCNN()).eval().double()


def data_parallel() -> nn.Module:
    """The whole model in ``nn.DataParallel`` (on a CPU it calls its module), as a model saved
    by a multi-GPU training script is loaded: every name under ``module.``."""
    return nn.DataParallel(_stats(SmallCNN()).eval())


def compiled() -> nn.Module:
    """``torch.compile(model)`` (an ``OptimizedModule``; the eager backend: the wrapper the
    user holds is the same, no C++ toolchain needed); a test skips where this Python / torch
    build has no ``torch.compile``."""
    from torch._dynamo import is_dynamo_supported

    if not is_dynamo_supported():
        import pytest

        pytest.skip("torch.compile is not supported on this Python / torch build")
    return torch.compile(_stats(SmallCNN()).eval(), backend="eager")


def pruned() -> nn.Module:
    """``torch.nn.utils.prune`` as its tutorial uses it, not made permanent: the stem by L1
    magnitude, the block's second convolution by whole output channels (L2), the classifier at
    random, each a ``weight_orig`` and a ``weight_mask`` and a pre-hook computing ``weight``."""
    model = _stats(SmallCNN()).eval()
    prune.l1_unstructured(model.stem, "weight", amount=0.4)
    prune.ln_structured(model.block[2], "weight", amount=0.25, n=2, dim=0)
    prune.random_unstructured(model.fc, "weight", amount=0.3)
    return model


def inference_weights() -> nn.Module:
    """Built and loaded under ``torch.inference_mode()`` (a serving script's loader): every
    parameter and buffer an inference tensor, which autograd refuses."""
    with torch.inference_mode():
        return _stats(SmallCNN()).eval()


def frozen_backbone() -> nn.Module:
    """Transfer learning: the stem and its BatchNorm frozen (``requires_grad_(False)``), the
    block and the classifier trainable."""
    model = _stats(SmallCNN()).eval()
    model.stem.requires_grad_(False)
    model.bn.requires_grad_(False)
    return model


class Uint8Images(nn.Module):
    """A model that takes uint8 images (N, H, W, C), as a camera or a decoder gives them, and
    normalizes them itself (torchvision's ``ToTensor`` + ``Normalize`` folded into the model),
    in its own dtype."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.net = _stats(SmallCNN())

    def forward(self, img):
        x = img.permute(0, 3, 1, 2).to(self.mean.dtype) / 255
        return self.net((x - self.mean) / self.std)


class TokenIds(nn.Module):
    """A HuggingFace-style text classifier: int64 ``input_ids`` and an int64
    ``attention_mask`` (1 for a token, 0 for padding), an embedding, a masked mean, an MLP."""

    def __init__(self, vocab: int = 30, dim: int = 12, n_classes: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.classifier = nn.Linear(dim, n_classes)

    def forward(self, input_ids, attention_mask=None):
        h = self.embed(input_ids)
        h = h + self.mlp(h)
        mask = (torch.ones_like(input_ids) if attention_mask is None
                else attention_mask).unsqueeze(-1).to(h.dtype)
        return self.classifier((h * mask).sum(1) / mask.sum(1).clamp(min=1))


def token_batch(b: int = 3, length: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """int64 ids and a padding mask, the shorter sequences padded with id 0."""
    ids = torch.randint(1, 30, (b, length))
    mask = torch.ones(b, length, dtype=torch.int64)
    for i in range(b):
        pad = i % 3
        if pad:
            ids[i, -pad:] = 0
            mask[i, -pad:] = 0
    return ids, mask


def strided_images(b: int = 3) -> torch.Tensor:
    """Non-contiguous images: channels permuted out of an (N, H, W, C) array and every other
    column of a wider one, the first sample repeated by ``expand`` (stride 0) beside others."""
    wide = torch.randn(b, 8, 16, 3).permute(0, 3, 1, 2)[..., ::2]  # (B, 3, 8, 8), strided
    one = torch.randn(1, 3, 8, 8).expand(2, -1, -1, -1)  # stride 0 along the batch
    out = torch.cat([wide[:1], one], 0) if b == 3 else wide
    # the cat is contiguous: a strided view of it, with the same values, for the model
    view = torch.empty(b, 8, 8, 3).permute(0, 3, 1, 2)
    view.copy_(out)
    assert not view.is_contiguous() and not wide.is_contiguous()
    return view

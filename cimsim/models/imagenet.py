"""ImageNet-size architectures, defined here (random weights): ResNet-18, MobileNetV2, ViT-Ti/16.

They time whole models (``benchmarks/bench_models.py``). ResNet-18 and MobileNetV2 are
torchvision's definitions (``torchvision/models/resnet.py``, ``mobilenetv2.py``): the same
modules, module names and initialisation, so a torchvision state dict loads into them. They are
written out because the registry's torchvision wheel is a CUDA build that fails to import
against the CPU torch. The ViT is DeiT-Ti's configuration (Touvron et al., "Training
data-efficient image transformers", ICML 2021, Table 1: 192 wide, 12 blocks, 3 heads, 16x16
patches; 5.7 M parameters) with ``nn.MultiheadAttention``, which cimsim maps.

- He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (ResNet-18: Table 1).
- Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018 (Table 2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from .._seed import check_int, check_positive_int, check_positive_number, check_seed
from ..errors import ConfigError

_M = TypeVar("_M", bound=nn.Module)

__all__ = ["MobileNetV2", "ResNet18", "ViT", "mobilenet_v2", "resnet18", "vit_tiny"]


# --------------------------------------------------------------------------------------------
# ResNet-18 (torchvision.models.resnet18)
# --------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock``: two 3x3 convolutions with BatchNorm, plus the shortcut
    (``downsample``: a strided 1x1 convolution and BatchNorm where the shape changes)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, inplanes, H, W)`` -> ``(B, planes, H / stride, W / stride)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision's ``resnet18`` (``ResNet(BasicBlock, [2, 2, 2, 2])``); ``width`` scales the
    channels (64: torchvision's; smaller for quick runs)."""

    def __init__(self, num_classes: int = 1000, width: int = 64) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, 2)
        self.layer2 = self._make_layer(2 * width, 2, stride=2)
        self.layer3 = self._make_layer(4 * width, 2, stride=2)
        self.layer4 = self._make_layer(8 * width, 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` images -> ``(B, num_classes)`` logits."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _built(seed: int, build: Callable[[], _M]) -> _M:
    """``build()`` with torch's generator seeded by ``seed``, in eval mode; the caller's random
    stream is left as it was (the builders reseeded the global generator and left it so)."""
    seed = check_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval()


def resnet18(num_classes: int = 1000, *, width: int = 64, seed: int = 0) -> ResNet18:
    """ResNet-18 with random weights (torchvision's initialisation, torch seeded by ``seed``),
    in eval mode."""
    num_classes = check_positive_int("num_classes", num_classes)
    width = check_positive_int("width", width)
    return _built(seed, lambda: ResNet18(num_classes, width))


# --------------------------------------------------------------------------------------------
# MobileNetV2 (torchvision.models.mobilenet_v2)
# --------------------------------------------------------------------------------------------
def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: to a multiple of ``divisor``, never down by > 10 %."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _conv_bn_relu6(c_in: int, c_out: int, kernel: int = 3, stride: int = 1,
                   groups: int = 1) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation`` with ReLU6 (modules ``0``, ``1``, ``2``)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """torchvision's ``InvertedResidual``: 1x1 expansion (unless ``expand_ratio`` is 1), 3x3
    depthwise, linear 1x1 projection; added to the input where the shape is kept."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        self.stride = stride
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(inp, hidden, kernel=1))
        layers += [_conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's ``mobilenet_v2`` (Sandler et al., Table 2); ``width_mult`` as there."""

    SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1))
    """(expansion t, channels c, repeats n, first stride s) per stage."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0,
                 dropout: float = 0.2) -> None:
        super().__init__()
        c_in = _make_divisible(32 * width_mult)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [_conv_bn_relu6(3, c_in, stride=2)]
        for t, c, n, s in self.SETTING:
            c_out = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(c_in, c_out, s if i == 0 else 1, t))
                c_in = c_out
        features.append(_conv_bn_relu6(c_in, self.last_channel, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout),
                                        nn.Linear(self.last_channel, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` images -> ``(B, num_classes)`` logits."""
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2(num_classes: int = 1000, *, width_mult: float = 1.0,
                 seed: int = 0) -> MobileNetV2:
    """MobileNetV2 with random weights (torchvision's initialisation), in eval mode."""
    num_classes = check_positive_int("num_classes", num_classes)
    # 0 built an 8-channel network (every width rounds up to 8)
    width_mult = check_positive_number("width_mult", width_mult)
    return _built(seed, lambda: MobileNetV2(num_classes, width_mult))


# --------------------------------------------------------------------------------------------
# ViT (DeiT-Ti configuration)
# --------------------------------------------------------------------------------------------
class EncoderBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(),
                                 nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, tokens, dim)`` -> the same shape."""
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Vision transformer (Dosovitskiy et al., ICLR 2021): a strided convolution embeds
    ``patch`` x ``patch`` patches, a class token and learned position embeddings are added,
    ``depth`` pre-norm blocks, LayerNorm, and a linear head on the class token."""

    def __init__(self, image: int = 224, patch: int = 16, dim: int = 192, depth: int = 12,
                 heads: int = 3, num_classes: int = 1000) -> None:
        super().__init__()
        n_tokens = (image // patch) ** 2 + 1
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n_tokens, dim) * 0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        nn.init.normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, image, image)`` -> ``(B, num_classes)`` logits."""
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def vit_tiny(num_classes: int = 1000, *, image: int = 224, depth: int = 12, dim: int = 192,
             seed: int = 0) -> ViT:
    """ViT-Ti/16 (DeiT-Ti's configuration; ``depth``/``dim``/``image`` smaller for quick runs)
    with random weights, in eval mode."""
    num_classes = check_positive_int("num_classes", num_classes)
    # an image smaller than one 16-pixel patch built, then failed at its first forward
    image = check_int("image", image, 16)
    if image % 16:  # the stride-16 embedding never read the rest (torchvision refuses it)
        raise ConfigError(f"image = {image!r} is invalid; allowed: a multiple of 16 (the "
                          "patch)")
    depth = check_int("depth", depth, 0)
    dim = check_positive_int("dim", dim)
    if dim % 3:
        raise ConfigError(f"dim = {dim!r} is invalid; allowed: a multiple of 3 (the 3 heads)")
    return _built(seed, lambda: ViT(image=image, dim=dim, depth=depth, heads=3,
                                    num_classes=num_classes))

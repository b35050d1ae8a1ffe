"""VGG-16 (torchvision's, adapted to 64x64) and ``vgg_small``: VGG-style nets of tiny filters."""

from __future__ import annotations

import torchvision
from torch import nn

from .common import conv_bn, head
from .registry import register


def _vgg16(num_classes: int, dropout: float, batch_norm: bool, hidden: int) -> nn.Module:
    """torchvision VGG-16 whose five max-pools take 64 px to 2x2; the classifier reads that 2x2
    map (2048 inputs instead of 25088) and its hidden layers are ``hidden`` wide (4096 in the
    ImageNet model, sized for 224 px and 1000 classes)."""
    build = torchvision.models.vgg16_bn if batch_norm else torchvision.models.vgg16
    m = build(num_classes=num_classes, dropout=dropout)
    m.avgpool = nn.AdaptiveAvgPool2d(2)
    m.classifier[0] = nn.Linear(512 * 2 * 2, hidden)
    m.classifier[3] = nn.Linear(hidden, hidden)
    m.classifier[6] = nn.Linear(hidden, num_classes)
    return m


@register("vgg16", torchvision="vgg16")
def vgg16(num_classes: int = 200, dropout: float = 0.5, batch_norm: bool = False, hidden: int = 1024) -> nn.Module:
    """VGG-16 for 64x64 (``batch_norm=True`` = ``vgg16_bn``)."""
    return _vgg16(num_classes, dropout, batch_norm, hidden)


@register("vgg16_bn", torchvision="vgg16_bn")
def vgg16_bn(num_classes: int = 200, dropout: float = 0.5, hidden: int = 1024) -> nn.Module:
    """VGG-16 with batch norm after every conv, for 64x64."""
    return _vgg16(num_classes, dropout, True, hidden)


# Per-stage kernel sequence: a 2x2 conv, then its factorised 1x2 / 2x1 pair, then a 1x1 mixer.
_SMALL_KERNELS = ((2, 2), (1, 2), (2, 1), (1, 1))


def vgg_small_net(stages=(2, 3, 3, 3), widths=(64, 128, 256, 512), num_classes: int = 200,
                  dropout: float = 0.0) -> nn.Module:
    """VGG-style network of 1x1/1x2/2x1/2x2 filters with batch norm and global average pooling
    (Bastidas' VGG-Z/F/Y).

    Stage ``i`` has ``stages[i]`` conv+BN+ReLU layers (kernels cycling through 2x2, 1x2, 2x1, 1x1,
    'same' padding; every conv with a bias, as the report adds them, BN or not); a 2x2 max-pool
    follows each stage but the last (64 px -> 8x8).
    """
    layers, cin = [], 3
    for i, (n, c) in enumerate(zip(stages, widths)):
        for j in range(n):
            layers.append(conv_bn(cin, c, kernel=_SMALL_KERNELS[j % len(_SMALL_KERNELS)], bias=True))
            cin = c
        if i < len(stages) - 1:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head(cin, num_classes, dropout))


@register("vgg_small")
def vgg_small(num_classes: int = 200, dropout: float = 0.0) -> nn.Module:
    """11 conv layers of tiny filters (stages 2-3-3-3), BN, global average pooling."""
    return vgg_small_net((2, 3, 3, 3), num_classes=num_classes, dropout=dropout)


@register("vgg_small8")
def vgg_small8(num_classes: int = 200, dropout: float = 0.0) -> nn.Module:
    """8 conv layers of tiny filters (stages 2-2-2-2)."""
    return vgg_small_net((2, 2, 2, 2), num_classes=num_classes, dropout=dropout)


@register("vgg_small14")
def vgg_small14(num_classes: int = 200, dropout: float = 0.0) -> nn.Module:
    """14 conv layers of tiny filters (stages 2-4-4-4)."""
    return vgg_small_net((2, 4, 4, 4), num_classes=num_classes, dropout=dropout)

"""``inception_small``: Bastidas' Inception-v3-style network of small filters for 64x64.

Every filter is 1x1, 1x2, 2x1 or 2x2 (the report's "1x1, 2x1, 1x2, and 2x2", stacked to at most a
3x3 receptive field), every conv has a bias ("bias terms were added to each convolutional layer")
and is followed by BN. Layout (64 px input): stem (two 2x2 convs, max-pool -> 32 px) -> 2 x module
A (1x1 | 1x1-2x2 | 1x1-2x2-2x2 | pool-1x1) -> reduction (-> 16 px) -> 2 x module B (the 2x2s
factorised into 1x2 + 2x1) -> global average pool -> fc. Inception-v3's last module group (the
8x8 expanded filter bank and the reduction into it) is removed, as the report removes "the last of
the Inception modules". The report gives no widths: 64 (1.75M parameters at 200 classes) is chosen.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from .common import conv_bn as _conv_bn
from .common import head
from .registry import register

conv_bn = partial(_conv_bn, bias=True)


class _ModuleA(nn.Module):
    """Four branches: 1x1, 1x1-2x2, 1x1-2x2-2x2, pool-1x1. ``factorised``: every 2x2 becomes 1x2
    followed by 2x1 (Inception-v3 'figure 6', :class:`_ModuleB`)."""

    factorised = False

    def __init__(self, cin: int, w: int):
        super().__init__()
        k2 = [(1, 2), (2, 1)] if self.factorised else [2]
        self.b1 = conv_bn(cin, w, 1)
        self.b3 = nn.Sequential(conv_bn(cin, w, 1), *(conv_bn(w, w, k) for k in k2))
        self.b33 = nn.Sequential(conv_bn(cin, w, 1), *(conv_bn(w, w, k) for k in k2 + k2))
        self.bp = nn.Sequential(nn.AvgPool2d(3, 1, 1), conv_bn(cin, w, 1))
        self.out_channels = 4 * w

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b33(x), self.bp(x)], 1)


class _ModuleB(_ModuleA):
    """2x2 convolutions factorised into 1x2 followed by 2x1 (Inception-v3 'figure 6')."""

    factorised = True


class _Reduction(nn.Module):
    """Halve the resolution with parallel stride-2 conv and max-pool branches (no bottleneck)."""

    def __init__(self, cin: int, w: int):
        super().__init__()
        self.conv = conv_bn(cin, w, 2, stride=2)
        self.deep = nn.Sequential(conv_bn(cin, w // 2, 1), conv_bn(w // 2, w // 2, 2),
                                  conv_bn(w // 2, w // 2, 2, stride=2))
        self.pool = nn.MaxPool2d(2)
        self.out_channels = w + w // 2 + cin

    def forward(self, x):
        return torch.cat([self.conv(x), self.deep(x), self.pool(x)], 1)


class InceptionSmall(nn.Module):
    def __init__(self, num_classes: int = 200, dropout: float = 0.2, width: int = 64):
        super().__init__()
        w = width
        self.stem = nn.Sequential(conv_bn(3, w, 2), conv_bn(w, 2 * w, 2), nn.MaxPool2d(2))
        blocks, c = [], 2 * w
        for make, n, bw in ((_ModuleA, 2, w), (_Reduction, 1, 4 * w), (_ModuleB, 2, 2 * w)):
            for _ in range(n):
                blocks.append(make(c, bw))
                c = blocks[-1].out_channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = head(c, num_classes, dropout)

    def forward(self, x):
        return self.fc(self.pool(self.blocks(self.stem(x))))


@register("inception_small")
def inception_small(num_classes: int = 200, dropout: float = 0.2) -> nn.Module:
    """Bastidas' Inception-v3-style net of 1x1/1x2/2x1/2x2 filters, its last module group removed,
    for 64x64 inputs."""
    return InceptionSmall(num_classes, dropout)

"""``inception_small``: an Inception-v3-style network of small (1x1, 3x3, 1x3/3x1) filters for 64x64.

Layout (64 px input): stem (two 3x3 convs, max-pool -> 32 px) -> 2 x module A (1x1 | 1x1-3x3 |
1x1-3x3-3x3 | pool-1x1) -> reduction (-> 16 px) -> 2 x module B (3x3 factorised into 1x3 + 3x1)
-> reduction (-> 8 px) -> module C (expanded 1x3 / 3x1 filter bank) -> global average pool -> fc.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import conv_bn, head
from .registry import register


class _ModuleA(nn.Module):
    """Four branches: 1x1, 1x1-3x3, 1x1-3x3-3x3, pool-1x1. ``factorised``: every 3x3 becomes 1x3
    followed by 3x1 (Inception-v3 'figure 6', :class:`_ModuleB`)."""

    factorised = False

    def __init__(self, cin: int, w: int):
        super().__init__()
        k3 = [(1, 3), (3, 1)] if self.factorised else [3]
        self.b1 = conv_bn(cin, w, 1)
        self.b3 = nn.Sequential(conv_bn(cin, w, 1), *(conv_bn(w, w, k) for k in k3))
        self.b33 = nn.Sequential(conv_bn(cin, w, 1), *(conv_bn(w, w, k) for k in k3 + k3))
        self.bp = nn.Sequential(nn.AvgPool2d(3, 1, 1), conv_bn(cin, w, 1))
        self.out_channels = 4 * w

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b33(x), self.bp(x)], 1)


class _ModuleB(_ModuleA):
    """3x3 convolutions factorised into 1x3 followed by 3x1 (Inception-v3 'figure 6')."""

    factorised = True


class _ModuleC(nn.Module):
    """Expanded filter bank: parallel 1x3 and 3x1 on a shared 1x1 (Inception-v3 'figure 7')."""

    def __init__(self, cin: int, w: int):
        super().__init__()
        self.b1 = conv_bn(cin, w, 1)
        self.b3 = conv_bn(cin, w, 1)
        self.b3a, self.b3b = conv_bn(w, w, (1, 3)), conv_bn(w, w, (3, 1))
        self.bp = nn.Sequential(nn.AvgPool2d(3, 1, 1), conv_bn(cin, w, 1))
        self.out_channels = 4 * w

    def forward(self, x):
        t = self.b3(x)
        return torch.cat([self.b1(x), self.b3a(t), self.b3b(t), self.bp(x)], 1)


class _Reduction(nn.Module):
    """Halve the resolution with parallel stride-2 conv and max-pool branches (no bottleneck)."""

    def __init__(self, cin: int, w: int):
        super().__init__()
        self.conv = conv_bn(cin, w, 3, stride=2)
        self.deep = nn.Sequential(conv_bn(cin, w // 2, 1), conv_bn(w // 2, w // 2, 3),
                                  conv_bn(w // 2, w // 2, 3, stride=2))
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.out_channels = w + w // 2 + cin

    def forward(self, x):
        return torch.cat([self.conv(x), self.deep(x), self.pool(x)], 1)


class InceptionSmall(nn.Module):
    def __init__(self, num_classes: int = 200, dropout: float = 0.2, width: int = 32):
        super().__init__()
        w = width
        self.stem = nn.Sequential(conv_bn(3, w, 3), conv_bn(w, 2 * w, 3), nn.MaxPool2d(2))
        blocks, c = [], 2 * w
        for make, n, bw in ((_ModuleA, 2, w), (_Reduction, 1, 4 * w), (_ModuleB, 2, 2 * w),
                            (_Reduction, 1, 8 * w), (_ModuleC, 1, 4 * w)):
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
    """Inception-v3-style modules with small filters, for 64x64 inputs (~2M parameters)."""
    return InceptionSmall(num_classes, dropout)

"""DenseNet-161 (torchvision's) with a 64x64 stem: 3x3 stride-1 conv, no max-pool (or ImageNet's)."""

from __future__ import annotations

import torchvision
from torch import nn

from .common import check_stem, replace_linear, small_stem_densenet
from .registry import register


@register("densenet161", torchvision="densenet161")
def densenet161(num_classes: int = 200, dropout: float = 0.0, stem: str = "small") -> nn.Module:
    """DenseNet-161 (growth 48, blocks 6-12-36-24); dense blocks see 64, 32, 16, 8 px
    (``stem="imagenet"``: torchvision's 7x7 stride-2 conv + max-pool, 16, 8, 4, 2 px)."""
    m = torchvision.models.densenet161(num_classes=num_classes)
    if check_stem(stem):
        small_stem_densenet(m)
    if dropout > 0:
        replace_linear(m, "classifier", num_classes, dropout)
    return m

"""DenseNet-161 (torchvision's) with a 64x64 stem: 3x3 stride-1 conv, no max-pool (or ImageNet's)."""

from __future__ import annotations

import torchvision
from torch import nn

from . import register
from .common import check_stem, replace_linear


def small_stem_densenet(model: nn.Module) -> nn.Module:
    """Swap a torchvision DenseNet's 7x7 stride-2 conv + max-pool for a 3x3 stride-1 conv (in place)."""
    f = model.features
    f.conv0 = nn.Conv2d(3, f.conv0.out_channels, 3, 1, 1, bias=False)
    f.pool0 = nn.Identity()
    return model


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

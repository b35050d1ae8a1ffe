"""MobileNetV2 (torchvision's) with a stride-1 first conv for 64x64 inputs."""

from __future__ import annotations

import torchvision
from torch import nn

from .common import small_stem_mobilenet
from .registry import register


@register("mobilenet_v2", torchvision="mobilenet_v2")
def mobilenet_v2(num_classes: int = 200, dropout: float = 0.2, width_mult: float = 1.0) -> nn.Module:
    """MobileNetV2 (inverted residuals) with a stride-1 stem."""
    return small_stem_mobilenet(torchvision.models.mobilenet_v2(
        num_classes=num_classes, dropout=dropout, width_mult=width_mult))

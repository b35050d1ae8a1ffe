"""MobileNetV2 (torchvision's) with a stride-1 first conv for 64x64 inputs."""

from __future__ import annotations

import torchvision
from torch import nn

from . import register


def small_stem_mobilenet(model: nn.Module) -> nn.Module:
    """Make the first conv of a torchvision MobileNet/EfficientNet stride 1 (in place): total
    stride 16 instead of 32, so a 64 px image ends as a 4x4 map rather than 2x2."""
    conv = model.features[0][0]
    conv.stride = (1, 1)
    return model


@register("mobilenet_v2", torchvision="mobilenet_v2")
def mobilenet_v2(num_classes: int = 200, dropout: float = 0.2, width_mult: float = 1.0) -> nn.Module:
    """MobileNetV2 (inverted residuals) with a stride-1 stem."""
    return small_stem_mobilenet(torchvision.models.mobilenet_v2(
        num_classes=num_classes, dropout=dropout, width_mult=width_mult))

"""Any torchvision classifier as ``tv:<name>``, randomly initialised, with a 64x64 stem where the
family has a well-known one. Never downloads weights: ``--pretrained imagenet`` reads torchvision's
from its hub cache, ``--pretrained PATH`` a local file."""

from __future__ import annotations

import torchvision
from torch import nn

from .common import (check_stem, replace_linear, small_stem_densenet, small_stem_mobilenet,
                     small_stem_resnet)


def build_torchvision(name: str, num_classes: int = 200, dropout: float = 0.0, small_stem: bool = True,
                      stem: str | None = None, **kw) -> nn.Module:
    """``torchvision.models.get_model(name, weights=None, num_classes=...)`` adapted to 64x64.

    ``small_stem`` swaps the stride-2 stem for a stride-1 one in ResNet/ResNeXt/Wide-ResNet
    (3x3 conv, no max-pool), DenseNet (same) and MobileNet/EfficientNet (first conv stride 1);
    other families keep their stem; ``stem`` (``small``/``imagenet``), where given, overrides
    ``small_stem``. ``dropout`` > 0 puts a Dropout before a bare ``fc`` head.
    """
    if stem is not None:
        small_stem = check_stem(stem)
    m = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kw)
    if small_stem:
        if hasattr(m, "conv1") and hasattr(m, "maxpool") and hasattr(m, "layer1"):
            small_stem_resnet(m)
        elif name.startswith("densenet"):
            small_stem_densenet(m)
        elif name.startswith(("mobilenet", "efficientnet")):
            small_stem_mobilenet(m)
    if dropout > 0 and isinstance(getattr(m, "fc", None), nn.Linear):
        replace_linear(m, "fc", num_classes, dropout)
    return m

"""MobileNetV2 (torchvision's) with a stride-1 first conv for 64x64 inputs, and the UCSC report's
Keras MobileNetV2 transfer network."""

from __future__ import annotations

from collections import OrderedDict

import torchvision
from torch import nn

from .common import check_stem, head, small_stem_mobilenet
from .registry import register


@register("mobilenet_v2", torchvision="mobilenet_v2")
def mobilenet_v2(num_classes: int = 200, dropout: float = 0.2, width_mult: float = 1.0) -> nn.Module:
    """MobileNetV2 (inverted residuals) with a stride-1 stem."""
    return small_stem_mobilenet(torchvision.models.mobilenet_v2(
        num_classes=num_classes, dropout=dropout, width_mult=width_mult))


@register("ucsc_mobilenet_v2", torchvision="mobilenet_v2")
def ucsc_mobilenet_v2(num_classes: int = 100, dropout: float = 0.0, stem: str = "imagenet") -> nn.Module:
    """UCSC CSE 144's transfer network: Keras' MobileNetV2 without its top, "GlobalMaxPooling", "a
    1024-neuron dense layer" (ReLU), the classifier (3.64M parameters at 100 classes).

    The stem is ImageNet's stride-2 conv, as Keras builds it (64 px ends as a 2x2x1280 map);
    ``stem="small"`` makes it stride 1. ``features`` keeps torchvision's names, so
    ``--pretrained imagenet`` loads it; both dense layers start fresh."""
    m = torchvision.models.mobilenet_v2()
    if check_stem(stem):
        small_stem_mobilenet(m)
    return nn.Sequential(OrderedDict(
        features=m.features, pool=nn.AdaptiveMaxPool2d(1), flatten=nn.Flatten(),
        classifier=nn.Sequential(nn.Linear(1280, 1024), nn.ReLU(inplace=True), head(1024, num_classes, dropout))))

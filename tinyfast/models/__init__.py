"""Model zoo: a registry of classifiers adapted to 64x64 inputs (Tiny ImageNet).

Usage::

    from tinyfast.models import get_model, list_models
    model = get_model("resnet18", num_classes=200)
    model = get_model("tv:efficientnet_b0", num_classes=200)   # any torchvision classifier

Every registered model accepts ``num_classes`` and ``dropout``: the probability of each of its
dropout layers (a model that has none gets one before its classifier head). Every model works
for any input size from 32x32 up (global/adaptive pooling before the head), so
progressive resizing (train at 32 px, then 64 px) needs no model change.

Registering a name twice is an error (:class:`ValueError`), like ``tinyfast.loaders.register``.
"""

from __future__ import annotations

from .common import head_module
from .groups import LayerGroup, layer_groups
from .pretrained import fresh_parameters, imagenet_weights_path, load_pretrained, resolve_pretrained
from .registry import (TV_PREFIX, accepts, count_parameters, default_lr, get_model, init_weights,
                       is_known, list_models, register, torchvision_counterpart)

__all__ = ["register", "get_model", "list_models", "count_parameters", "init_weights",
           "load_pretrained", "head_module", "layer_groups", "LayerGroup", "is_known", "default_lr",
           "torchvision_counterpart", "imagenet_weights_path", "resolve_pretrained", "fresh_parameters",
           "accepts", "TV_PREFIX"]

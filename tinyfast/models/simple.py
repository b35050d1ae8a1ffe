"""Small baselines from the seeds: linear, cnn2, cnn_deep, ting_m1, ting_m4, and an adapted AlexNet.

The flattening models (``ting_m*``, ``cnn2``, ``alexnet``) put an adaptive average pool before
their fully-connected layers, sized to the map a 64x64 input leaves there, so that at 64 px it is
the identity (tested): the published layer sizes are kept and the same model also accepts 32x32
inputs (progressive resizing).
"""

from __future__ import annotations

import torchvision
from torch import nn

from .common import check_stem, conv_bn, head
from .registry import register


@register("linear")
def linear(num_classes: int = 200, dropout: float = 0.0, image_size: int = 64) -> nn.Module:
    """Multinomial logistic regression on the raw pixels (``image_size``^2 x 3 inputs)."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(image_size), nn.Flatten(),
                         head(3 * image_size * image_size, num_classes, dropout))


@register("cnn2")
def cnn2(num_classes: int = 200, dropout: float | None = None, hidden: int = 128) -> nn.Module:
    """UCI CS172B's 2-layer CNN: two 3x3 stride-1 pad-1 conv layers (32, 64) -> 2x2 max-pool ->
    dropout -> flatten (32x32x64 at 64 px) -> fc ``hidden`` -> dropout -> fc.

    ``dropout`` is the probability of both dropout layers; by default 0.25 after the pool and 0.5
    before the classifier (the Keras examples' pair)."""
    drop_conv, drop_fc = (0.25, 0.5) if dropout is None else (dropout, dropout)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(2), nn.Dropout(drop_conv),
        # 32x32x64 after the pool at 64 px, flattened as it is (the pool is the identity there).
        nn.AdaptiveAvgPool2d(32), nn.Flatten(),
        nn.Linear(64 * 32 * 32, hidden), nn.ReLU(inplace=True),
        head(hidden, num_classes, drop_fc))


@register("cnn_deep")
def cnn_deep(num_classes: int = 200, dropout: float = 0.0, width: int = 32) -> nn.Module:
    """Eight 3x3 conv+BN+ReLU layers in four stages (w, 2w, 4w, 8w), max-pool between stages,
    global average pooling, fc: a small BN network for quick runs (the UCI report's multi-layer
    CNN, without batch norm or a global pool, is ``uci_cnn_deep``)."""
    w = width
    layers, cin = [], 3
    for i, c in enumerate((w, 2 * w, 4 * w, 8 * w)):
        layers += [conv_bn(cin, c), conv_bn(c, c)]
        if i < 3:
            layers.append(nn.MaxPool2d(2))
        cin = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head(cin, num_classes, dropout))


@register("ting_m1")
def ting_m1(num_classes: int = 200, dropout: float = 0.0) -> nn.Module:
    """conv5-16 -> pool -> conv3-16 -> pool -> conv3-32 -> pool -> fc256 -> fc."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(8), nn.Flatten(),
        nn.Linear(32 * 8 * 8, 256), nn.ReLU(inplace=True),
        head(256, num_classes, dropout))


@register("ting_m4")
def ting_m4(num_classes: int = 200, dropout: float = 0.0) -> nn.Module:
    """conv5-32 x2 -> pool -> conv3-64 x2 -> pool -> conv3-64, conv3-128 -> pool -> fc256 -> fc."""
    def c(cin, cout, k):
        return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU(inplace=True)]
    return nn.Sequential(
        *c(3, 32, 5), *c(32, 32, 5), nn.MaxPool2d(2),
        *c(32, 64, 3), *c(64, 64, 3), nn.MaxPool2d(2),
        *c(64, 64, 3), *c(64, 128, 3), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(8), nn.Flatten(),
        nn.Linear(128 * 8 * 8, 256), nn.ReLU(inplace=True),
        head(256, num_classes, dropout))


@register("alexnet", torchvision="alexnet")
def alexnet(num_classes: int = 200, dropout: float = 0.5, stem: str = "small") -> nn.Module:
    """torchvision's AlexNet with its 1000 outputs, then "one more fully connected layer to
    transform the output from 1000 to" ``num_classes`` (the Skoltech report's; no activation
    between), so ``--pretrained imagenet`` loads the whole ImageNet classifier.

    ``stem="small"`` (the default) adapts it to 64 px: the 11x11 stride-4 conv becomes 5x5 stride
    2 (64 px -> 32 -> 15 -> 7 -> 3 through the three max-pools) and the classifier reads that 3x3
    map (256*3*3 inputs instead of 256*6*6). ``stem="imagenet"`` keeps torchvision's network as it
    is: at 64 px its last max-pool leaves 1x1, which the average pool spreads to 6x6."""
    m = torchvision.models.alexnet(num_classes=1000, dropout=dropout)
    if check_stem(stem):
        m.features[0] = nn.Conv2d(3, 64, kernel_size=5, stride=2, padding=2)
        m.avgpool = nn.AdaptiveAvgPool2d(3)
        m.classifier[1] = nn.Linear(256 * 3 * 3, 4096)
    m.classifier.append(nn.Linear(1000, num_classes))
    return m

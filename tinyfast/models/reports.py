"""The reports' own networks that no library provides: UCSC CSE 144's shallow and deep CNNs, the
UCI CS172B multi-layer CNN and "ResNet + CNN", and Ghosh's Network 1 and Network 2.

Where a report gives only a parameter count, the layer widths here are chosen to come close to it
(checked in the tests). Like the rest of the zoo, every model takes any class count and any input
size: the flattening ones put an adaptive average pool before their first dense layer that is the
identity at 64x64, so the published dense sizes are kept at 64 px.
"""

from __future__ import annotations

import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from .common import conv_bn, head, small_stem_resnet
from .registry import register


@register("ucsc_shallow")
def ucsc_shallow(num_classes: int = 100, dropout: float = 0.0) -> nn.Module:
    """UCSC CSE 144 shallow CNN: conv32 -> pool -> conv64 -> pool -> fc256 -> fc -> sigmoid (4.24M
    parameters at 100 classes).

    The report's "last layer that uses sigmoid activation" is kept: the model outputs log(sigmoid),
    so cross-entropy over its outputs is Keras' categorical cross-entropy of the sigmoid outputs
    (which Keras rescales to sum to 1 before the log), and the predicted class is the sigmoid's."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(16), nn.Flatten(),
        nn.Linear(64 * 16 * 16, 256), nn.ReLU(inplace=True),
        head(256, num_classes, dropout), nn.LogSigmoid())


def _dense_bn(cin: int, cout: int, dropout: float) -> list[nn.Module]:
    return [nn.Linear(cin, cout), nn.BatchNorm1d(cout), nn.ReLU(inplace=True), nn.Dropout(dropout)]


@register("ucsc_deep")
def ucsc_deep(num_classes: int = 100, dropout: float = 0.25) -> nn.Module:
    """UCSC CSE 144 deep CNN: [conv32 + BN] x2 -> pool -> drop -> conv64 + BN -> drop -> conv128
    -> pool -> drop -> fc512 + BN -> drop -> fc128 + BN -> drop -> fc (11.26M parameters at 100
    classes counting BN's running statistics as Keras does). Every conv is 3x3 unpadded
    (Keras ``padding="valid"``), so 64 px ends as a 13x13 map."""
    return nn.Sequential(
        conv_bn(3, 32, padding=0), conv_bn(32, 32, padding=0), nn.MaxPool2d(2), nn.Dropout(dropout),
        conv_bn(32, 64, padding=0), nn.Dropout(dropout),
        conv_bn(64, 128, padding=0, bn=False), nn.MaxPool2d(2), nn.Dropout(dropout),
        nn.AdaptiveAvgPool2d(13), nn.Flatten(),
        *_dense_bn(128 * 13 * 13, 512, dropout), *_dense_bn(512, 128, dropout),
        nn.Linear(128, num_classes))


@register("uci_cnn_deep")
def uci_cnn_deep(num_classes: int = 200, dropout: float | None = None) -> nn.Module:
    """UCI CS172B multi-layer CNN, "maxpool and dropouts" (no batch norm, no global pool): three
    blocks of two 3x3 conv + ReLU (32, 64, 128), each closed by a 2x2 max-pool and dropout, then
    flatten (8x8x128 at 64 px) -> fc512 -> dropout -> fc (4.58M parameters at 200 classes; the
    report gives no count: the widths are chosen).

    ``dropout`` is the probability of every dropout layer; by default 0.25 after each pool and 0.5
    before the classifier (as ``cnn2``)."""
    drop_conv, drop_fc = (0.25, 0.5) if dropout is None else (dropout, dropout)
    layers, cin = [], 3
    for c in (32, 64, 128):
        layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(inplace=True),
                   nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Dropout(drop_conv)]
        cin = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(8), nn.Flatten(),
                         nn.Linear(128 * 8 * 8, 512), nn.ReLU(inplace=True), head(512, num_classes, drop_fc))


@register("uci_resnet_cnn")
def uci_resnet_cnn(num_classes: int = 200, dropout: float = 0.0, width: int = 64) -> nn.Module:
    """UCI CS172B "ResNet + CNN": one conv layer (3x3, BN, max-pool), two residual layers
    (basic blocks, the second widening to ``2 * width`` at stride 2), global average pool, one
    dense layer."""
    down = nn.Sequential(nn.Conv2d(width, 2 * width, 1, 2, bias=False), nn.BatchNorm2d(2 * width))
    return nn.Sequential(
        conv_bn(3, width), nn.MaxPool2d(2),
        BasicBlock(width, width), BasicBlock(width, 2 * width, stride=2, downsample=down),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), head(2 * width, num_classes, dropout))


@register("ghosh_net1")
def ghosh_net1(num_classes: int = 200, dropout: float = 0.2) -> nn.Module:
    """Ghosh's Network 1 ("17.9 Million parameters"; 17.75M here, -0.8%): a VGG-style stack of
    3x3 conv + BN + ReLU, four stages of three layers (96, 192, 384, 768 wide) with a max-pool
    after the first three, global average pooling, dropout, fc. The report gives the count, not
    the layers: the widths are chosen to meet it. Trains at 16, 32 and 64 px (its progressive
    schedule): 16 px still leaves a 2x2 map."""
    layers, cin = [], 3
    for i, c in enumerate((96, 192, 384, 768)):
        for _ in range(3):
            layers.append(conv_bn(cin, c))
            cin = c
        if i < 3:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head(cin, num_classes, dropout))


@register("ghosh_net2")
def ghosh_net2(num_classes: int = 200, dropout: float = 0.2, hidden: int = 1024) -> nn.Module:
    """Ghosh's Network 2, "ResNet-18-like with dropout" ("11.8 Million parameters"; 11.90M at 200
    classes here, +0.8%): ResNet-18 with the 64 px stem, dropout after each of the last three
    stages, and a ``hidden``-wide dense layer (ReLU, dropout) before the classifier. ResNet-18
    alone has 11.27M at 200 classes (-4.5%); the dense layer is the reading of "like ... with
    dropout" that meets the report's count."""
    m = small_stem_resnet(torchvision.models.resnet18(num_classes=num_classes, zero_init_residual=True))
    for name in ("layer2", "layer3", "layer4"):
        setattr(m, name, nn.Sequential(*getattr(m, name), nn.Dropout(dropout)))
    m.fc = nn.Sequential(nn.Linear(m.fc.in_features, hidden), nn.ReLU(inplace=True),
                         head(hidden, num_classes, dropout))
    return m

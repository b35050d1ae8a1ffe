"""ResNet-18/34/50 (torchvision's, with a 64x64 stem) and a pre-activation ResNet-34.

The ImageNet stem (7x7 stride-2 conv + max-pool) shrinks a 64 px image 4x before the first block;
for 64x64 inputs it is replaced by one 3x3 stride-1 conv and no pool, so layer1..layer4 see
64, 32, 16, 8 px (the usual CIFAR/Tiny-ImageNet adaptation). ``stem="imagenet"`` keeps the
ImageNet stem (the reports that trained "vanilla" ResNets did; layer1..layer4 then see 16..2 px).
"""

from __future__ import annotations

import torch.nn.functional as F
import torchvision
from torch import nn

from .common import check_stem, head, replace_linear, small_stem_resnet
from .registry import register


def _tv_resnet(name: str, num_classes: int, dropout: float, stem: str) -> nn.Module:
    m = getattr(torchvision.models, name)(num_classes=num_classes, zero_init_residual=True)
    if check_stem(stem):
        small_stem_resnet(m)
    if dropout > 0:
        replace_linear(m, "fc", num_classes, dropout)
    return m


@register("resnet18", torchvision="resnet18")
def resnet18(num_classes: int = 200, dropout: float = 0.0, stem: str = "small") -> nn.Module:
    """ResNet-18 (BasicBlock 2-2-2-2) with a 3x3 stride-1 stem, no max-pool (``stem="imagenet"``: torchvision's)."""
    return _tv_resnet("resnet18", num_classes, dropout, stem)


@register("resnet34", torchvision="resnet34")
def resnet34(num_classes: int = 200, dropout: float = 0.0, stem: str = "small") -> nn.Module:
    """ResNet-34 (BasicBlock 3-4-6-3) with a 3x3 stride-1 stem, no max-pool (``stem="imagenet"``: torchvision's)."""
    return _tv_resnet("resnet34", num_classes, dropout, stem)


@register("resnet50", torchvision="resnet50")
def resnet50(num_classes: int = 200, dropout: float = 0.0, stem: str = "small") -> nn.Module:
    """ResNet-50 (Bottleneck 3-4-6-3) with a 3x3 stride-1 stem, no max-pool (``stem="imagenet"``: torchvision's)."""
    return _tv_resnet("resnet50", num_classes, dropout, stem)


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016, 'Identity Mappings'): BN-ReLU-conv x2."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        # The projection shortcut reads the pre-activated input, as in the paper.
        sc = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + sc


class PreActResNet(nn.Module):
    def __init__(self, blocks=(3, 4, 6, 3), num_classes: int = 200, dropout: float = 0.0, stem: str = "small"):
        super().__init__()
        # ImageNet's stem: 7x7 stride-2 conv + max-pool; the first block's BN-ReLU pre-activates it.
        self.conv1 = (nn.Conv2d(3, 64, 3, 1, 1, bias=False) if check_stem(stem) else
                      nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.MaxPool2d(3, 2, 1)))
        layers, cin = [], 64
        for i, (n, c) in enumerate(zip(blocks, (64, 128, 256, 512))):
            stage = []
            for j in range(n):
                stage.append(PreActBlock(cin, c, 2 if (j == 0 and i > 0) else 1))
                cin = c
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(cin)
        self.fc = head(cin, num_classes, dropout)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        x = F.relu(self.bn(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@register("preact_resnet34")
def preact_resnet34(num_classes: int = 200, dropout: float = 0.0, stem: str = "small") -> nn.Module:
    """Pre-activation ResNet-34 (3-4-6-3) with a 3x3 stride-1 stem (``stem="imagenet"``: 7x7
    stride-2 conv + max-pool)."""
    return PreActResNet((3, 4, 6, 3), num_classes, dropout, stem)

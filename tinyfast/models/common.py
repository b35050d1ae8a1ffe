"""Small building blocks shared by the model zoo."""

from __future__ import annotations

from torch import nn


def conv_bn(cin: int, cout: int, kernel=3, stride: int = 1, padding="same", bn: bool = True,
            bias: bool | None = None) -> nn.Sequential:
    """Conv -> BatchNorm (optional) -> ReLU. ``padding="same"`` also handles even kernels. The conv
    has a bias without BN (default), or where ``bias`` says so (a Keras ``Conv2D`` before its BN)."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    layers = []
    if padding == "same":
        if kh % 2 and kw % 2:
            padding = (kh // 2, kw // 2)
        else:
            # Even kernels need asymmetric padding; an explicit pad avoids conv's 'same' fallback
            # copy (and its warning). Extra row/column goes bottom/right, as in TF/Keras.
            layers.append(nn.ZeroPad2d(((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2)))
            padding = 0
    layers.append(nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=not bn if bias is None else bias))
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


STEMS = ("small", "imagenet")


def check_stem(stem: str) -> bool:
    """True for the 64 px stem (``"small"``: 3x3 stride-1 conv, no max-pool), False for
    ImageNet's (``"imagenet"``: 7x7 stride-2 conv + 3x3 stride-2 max-pool, as torchvision builds it).

    Raises:
        ValueError: another value (one line naming the choices).
    """
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r} (choices: {', '.join(STEMS)})")
    return stem == "small"


def head(in_features: int, num_classes: int, dropout: float = 0.0) -> nn.Module:
    """The classifier: ``Linear``, preceded by ``Dropout`` when ``dropout > 0``."""
    fc = nn.Linear(in_features, num_classes)
    return nn.Sequential(nn.Dropout(dropout), fc) if dropout > 0 else fc


def replace_linear(parent: nn.Module, attr: str, num_classes: int, dropout: float = 0.0) -> None:
    """Replace ``parent.<attr>`` (an ``nn.Linear``) by a fresh head with ``num_classes`` outputs."""
    old = getattr(parent, attr)
    setattr(parent, attr, head(old.in_features, num_classes, dropout))


def head_module(model: nn.Module) -> nn.Module:
    """The final classifier (the last ``nn.Linear`` in module order)."""
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        raise ValueError(f"{model.__class__.__name__}: no nn.Linear head found")
    return last


def small_stem_densenet(model: nn.Module) -> nn.Module:
    """Swap a torchvision DenseNet's 7x7 stride-2 conv + max-pool for a 3x3 stride-1 conv (in place)."""
    f = model.features
    f.conv0 = nn.Conv2d(3, f.conv0.out_channels, 3, 1, 1, bias=False)
    f.pool0 = nn.Identity()
    return model


def small_stem_mobilenet(model: nn.Module) -> nn.Module:
    """Make the first conv of a torchvision MobileNet/EfficientNet stride 1 (in place): total
    stride 16 instead of 32, so a 64 px image ends as a 4x4 map rather than 2x2."""
    conv = model.features[0][0]
    conv.stride = (1, 1)
    return model


def small_stem_resnet(model: nn.Module) -> nn.Module:
    """Swap a torchvision ResNet's stem for 3x3 stride-1 conv, no max-pool (in place)."""
    model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model

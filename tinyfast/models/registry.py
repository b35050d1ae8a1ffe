"""The model registry: names -> builders, and the queries on it (re-exported by :mod:`tinyfast.models`).

The zoo's modules register their builders here; the registry imports them by name on its first
query, so nothing in the zoo imports the package that re-exports it.
"""

from __future__ import annotations

import importlib
from typing import Callable

from torch import nn

TV_PREFIX = "tv:"
_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
# Zoo name -> the torchvision model whose ImageNet weights fit it (``--pretrained imagenet``).
_TORCHVISION: dict[str, str] = {}
# The modules that register models; imported lazily (on the first registry query), so importing
# tinyfast.models costs nothing and nothing runs at import.
_ZOO_MODULES = ("simple", "vgg", "inception", "resnet", "densenet", "mobilenet", "reports")
_loaded = False
# Peak SGD learning rate at global batch 512 of the models that need their own (everything else:
# 0.2); the Adam family gets the same fraction of its 2e-3. Measured on the quick synthetic set
# (batch 32, 3 epochs): linear at the generic 0.05 ends at train loss 33-58, at 0.0025 at 2.6.
_DEFAULT_LR = {"linear": 0.01}


def register(name: str, torchvision: str | None = None):
    """Decorator registering a model builder ``fn(num_classes=..., dropout=..., **kw) -> nn.Module``.

    ``torchvision`` names the torchvision model the builder adapts, whose ImageNet weights
    ``--pretrained imagenet`` then loads (by name and shape).

    Raises:
        ValueError: ``name`` is already registered or uses the reserved ``tv:`` prefix.
    """
    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        if name.startswith(TV_PREFIX):
            raise ValueError(f"model names may not start with {TV_PREFIX!r} (reserved for torchvision)")
        _REGISTRY[name] = fn
        if torchvision:
            _TORCHVISION[name] = torchvision
        return fn
    return deco


def _load_zoo() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in _ZOO_MODULES:
            importlib.import_module(f"{__package__}.{mod}")


def list_models() -> list[str]:
    """Names of the registered models (``tv:<name>`` torchvision models are not listed)."""
    _load_zoo()
    return sorted(_REGISTRY)


def _tv_classifiers() -> list[str]:
    import torchvision.models as tvm
    return sorted(tvm.list_models(module=tvm))


def is_known(name: str) -> bool:
    """True if ``name`` is registered or is ``tv:<torchvision classifier>``."""
    if name.startswith(TV_PREFIX):
        return name[len(TV_PREFIX):] in _tv_classifiers()
    _load_zoo()
    return name in _REGISTRY


def torchvision_counterpart(name: str) -> str | None:
    """The torchvision model behind ``name`` (``tv:<name>`` or a zoo model registered with one),
    else ``None``."""
    if name.startswith(TV_PREFIX):
        return name[len(TV_PREFIX):]
    _load_zoo()
    return _TORCHVISION.get(name)


def default_lr(name: str, optimizer: str = "sgd") -> float | None:
    """The model's own peak learning rate at global batch 512 for ``optimizer``, or ``None`` (use
    the trainer's default)."""
    base = _DEFAULT_LR.get(name)
    if base is None:
        return None
    return base if optimizer == "sgd" else base * (2e-3 / 0.2)


def get_model(name: str, num_classes: int = 200, **kw) -> nn.Module:
    """Build model ``name`` with ``num_classes`` outputs.

    ``tv:<name>`` builds ``torchvision.models.<name>`` (random init, never downloads) and, for the
    families where a stride-2 stem wastes a 64x64 image (ResNet/ResNeXt/Wide-ResNet, DenseNet,
    MobileNet, EfficientNet, RegNet), swaps the stem for a stride-1 3x3 convolution without
    max-pool. Extra keywords go to the builder (``dropout`` is honoured by every model).

    Raises:
        KeyError: unknown name (the message lists the choices).
    """
    if name.startswith(TV_PREFIX):
        from .tv import build_torchvision
        tv_name = name[len(TV_PREFIX):]
        if tv_name not in _tv_classifiers():
            raise KeyError(f"unknown torchvision classifier {tv_name!r} "
                           f"(choices: {', '.join(_tv_classifiers())})")
        return build_torchvision(tv_name, num_classes=num_classes, **kw)
    _load_zoo()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r} (choices: {', '.join(list_models())}, "
                       f"or tv:<torchvision classifier>)")
    return _REGISTRY[name](num_classes=num_classes, **kw)


def accepts(name: str, option: str) -> bool:
    """Whether model ``name``'s builder takes keyword ``option`` (``tv:`` models take ``stem``)."""
    if name.startswith(TV_PREFIX):
        return option in ("dropout", "stem")
    import inspect
    _load_zoo()
    return name in _REGISTRY and option in inspect.signature(_REGISTRY[name]).parameters


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def init_weights(model: nn.Module, scheme: str) -> nn.Module:
    """Re-initialise conv/linear weights: ``"he"`` (Kaiming normal, fan_out, ReLU),
    ``"xavier"`` (Glorot uniform) or ``"default"`` (keep PyTorch's/torchvision's). Biases -> 0,
    norm layers -> weight 1, bias 0."""
    if scheme == "default":
        return model
    if scheme not in ("he", "xavier"):
        raise ValueError(f"unknown init scheme {scheme!r} (choices: default, he, xavier)")
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if scheme == "he":
                nn.init.kaiming_normal_(m.weight, mode="fan_out" if isinstance(m, nn.Conv2d) else "fan_in",
                                        nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model

"""Starting weights: a local torchvision-style ``state_dict``, or torchvision's ImageNet weights
read from its hub cache (``$TORCH_HOME/hub/checkpoints/``). Nothing here ever downloads.

Loading is by name and shape: tensors that fit are copied, the rest (the head, a stem adapted to
64x64) keep their fresh initialisation.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlparse

import torch
from torch import nn

__all__ = ["IMAGENET", "imagenet_counterparts", "imagenet_weights_path", "resolve_pretrained",
           "load_pretrained"]

IMAGENET = "imagenet"
# torchvision's DenseNet checkpoints predate the ban on '.' in module names: their dense layers
# hold ``norm.1``/``conv.2``... where the modules are now ``norm1``/``conv2`` (torchvision
# renames them the same way when it loads them).
_OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
                               r"((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def imagenet_counterparts() -> list[str]:
    """The zoo models that have a torchvision counterpart with ImageNet weights."""
    from . import torchvision_counterpart, list_models
    return [n for n in list_models() if torchvision_counterpart(n)]


def _imagenet_weights(arch: str):
    """torchvision's default ImageNet weights enum member for ``arch`` (zoo name or ``tv:<name>``)."""
    import torchvision
    from . import torchvision_counterpart
    tv_name = torchvision_counterpart(arch)
    if tv_name is None:
        raise ValueError(f"--pretrained {IMAGENET}: {arch} has no torchvision counterpart (models that "
                         f"have one: {', '.join(imagenet_counterparts())}, and tv:<torchvision name>)")
    try:
        return torchvision.models.get_model_weights(tv_name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        raise ValueError(f"--pretrained {IMAGENET}: torchvision has no weights for {tv_name}") from None


def imagenet_weights_path(arch: str) -> str:
    """The file torchvision's hub cache would hold ``arch``'s default ImageNet weights in
    (``torch.hub.get_dir()/checkpoints/<basename of the weights URL>``; ``TORCH_HOME`` moves it).

    Raises:
        ValueError: ``arch`` has no torchvision counterpart, or that file is not there (one line
            naming the expected path and how to place it; nothing is downloaded).
    """
    weights = _imagenet_weights(arch)
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(weights.url).path))
    if not os.path.isfile(path):
        raise ValueError(f"--pretrained {IMAGENET}: no cached {weights} weights for {arch}: expected "
                         f"{path} (nothing is downloaded: fetch {weights.url} to that path, or set "
                         f"TORCH_HOME to a directory whose hub/checkpoints/ holds it)")
    return path


def resolve_pretrained(spec: str, arch: str) -> str:
    """The weights file of ``--pretrained SPEC``: the cached ImageNet file for ``imagenet``, else
    ``spec`` itself (a local path)."""
    return imagenet_weights_path(arch) if spec == IMAGENET else spec


def _read_state_dict(path: str) -> dict:
    """The state_dict in ``path`` (bare, or under ``"model"``/``"state_dict"``), keys unwrapped."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such pretrained weights file") from None
    except Exception as e:  # torch raises many types for a corrupt file
        raise ValueError(f"{path}: not a readable state_dict ({e.__class__.__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if isinstance(sd, dict) and isinstance(sd.get("model"), dict):
        sd = sd["model"]
    elif isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: not a state_dict")
    out = {}
    for k, v in sd.items():
        # Checkpoints saved from DDP / torch.compile wrappers carry prefixes.
        k = k.removeprefix("module.").removeprefix("_orig_mod.")
        old = _OLD_DENSENET_KEY.match(k)
        out[old.group(1) + old.group(2) if old else k] = v
    return out


def load_pretrained(model: nn.Module, path: str) -> tuple[list[str], list[str]]:
    """Load a LOCAL torchvision-style ``state_dict`` file into ``model`` (never downloads).

    Tensors whose name and shape match are copied; the rest (the replaced head, an adapted stem)
    keep their fresh initialisation. Accepts a bare state_dict or a dict with a ``"model"`` or
    ``"state_dict"`` entry (tinyfast checkpoints included), and torchvision's old DenseNet keys.

    Returns:
        (loaded keys, skipped keys).
    Raises:
        ValueError: the file is unreadable or nothing in it matches the model (one line, naming it).
    """
    from . import head_module
    sd = _read_state_dict(path)
    own = model.state_dict()
    head_names = {n + "." for n, m in model.named_modules() if m is head_module(model)}
    take, skipped = {}, []
    for k, v in sd.items():
        if (k in own and torch.is_tensor(v) and v.shape == own[k].shape
                and not any(k.startswith(h) for h in head_names)):
            take[k] = v
        else:
            skipped.append(k)
    if not take:
        raise ValueError(f"{path}: no tensor matches {model.__class__.__name__} (wrong architecture?)")
    model.load_state_dict(take, strict=False)
    return sorted(take), sorted(skipped)

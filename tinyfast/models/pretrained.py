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
           "load_pretrained", "matching_keys", "pretrained_shapes", "fresh_parameters"]

IMAGENET = "imagenet"
# torchvision's DenseNet checkpoints predate the ban on '.' in module names: their dense layers
# hold ``norm.1``/``conv.2``... where the modules are now ``norm1``/``conv2`` (torchvision
# renames them the same way when it loads them).
_OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
                               r"((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def imagenet_counterparts() -> list[str]:
    """The zoo models that have a torchvision counterpart with ImageNet weights."""
    from .registry import list_models, torchvision_counterpart
    return [n for n in list_models() if torchvision_counterpart(n)]


def _imagenet_weights(arch: str):
    """torchvision's default ImageNet weights enum member for ``arch`` (zoo name or ``tv:<name>``)."""
    import torchvision
    from .registry import torchvision_counterpart
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


def matching_keys(model: nn.Module, shapes: dict) -> list[str]:
    """The keys of ``model.state_dict()`` a state_dict with these ``{key: shape}`` would fill.

    Loading is per layer: a layer loads only when every one of its tensors is there with its
    shape (so a stem whose weight does not fit keeps a fresh bias too), never the classifier head,
    and never a norm layer that reads a fresh layer (the nearest conv/linear before it in the
    model's order): statistics measured on another layer's output would be wrong for it.
    """
    from .common import head_module
    head = head_module(model)
    own = model.state_dict()
    take: list[str] = []
    prev_fresh = False  # whether the last conv/linear seen stays fresh
    for name, m in model.named_modules():
        keys = [f"{name}.{k}" if name else k for k, t in [*m._parameters.items(), *m._buffers.items()]
                if t is not None]
        if not keys:
            continue
        fits = m is not head and all(k in shapes and tuple(shapes[k]) == tuple(own[k].shape) for k in keys)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            prev_fresh = not fits
        elif isinstance(m, nn.modules.batchnorm._NormBase) and prev_fresh:
            fits = False
        if fits:
            take.extend(keys)
    return take


def load_pretrained(model: nn.Module, path: str) -> tuple[list[str], list[str]]:
    """Load a LOCAL torchvision-style ``state_dict`` file into ``model`` (never downloads).

    The layers whose tensors all match by name and shape are copied (see :func:`matching_keys`);
    the rest (the replaced head, an adapted stem and the norm layer after it) keep their fresh
    initialisation. Accepts a bare state_dict or a dict with a ``"model"`` or ``"state_dict"``
    entry (tinyfast checkpoints included), and torchvision's old DenseNet keys.

    Returns:
        (loaded keys, skipped keys of the file).
    Raises:
        ValueError: the file is unreadable or nothing in it matches the model (one line, naming it).
    """
    sd = _read_state_dict(path)
    keys = matching_keys(model, {k: v.shape for k, v in sd.items() if torch.is_tensor(v)})
    if not keys:
        raise ValueError(f"{path}: no tensor matches {model.__class__.__name__} (wrong architecture?)")
    model.load_state_dict({k: sd[k] for k in keys}, strict=False)
    taken = set(keys)
    return sorted(keys), sorted(k for k in sd if k not in taken)


def pretrained_shapes(spec: str, arch: str) -> dict | None:
    """``{key: shape}`` of the weights ``--pretrained SPEC`` would read, without loading any data:
    the file's when it is there, else (``imagenet``) those of torchvision's model built on the
    meta device, whose ImageNet weights have the same shapes; None for a missing local file."""
    try:
        path = resolve_pretrained(spec, arch)
    except ValueError:
        path = None
    if path and os.path.isfile(path):
        return {k: tuple(v.shape) for k, v in _read_state_dict(path).items() if torch.is_tensor(v)}
    if spec != IMAGENET:
        return None
    import torchvision
    from .registry import torchvision_counterpart
    with torch.device("meta"):
        ref = torchvision.models.get_model(torchvision_counterpart(arch), weights=None)
    return {k: tuple(v.shape) for k, v in ref.state_dict().items()}


def fresh_parameters(model: nn.Module, arch: str, spec: str) -> set[str] | None:
    """Names of ``model``'s parameters that ``--pretrained SPEC`` leaves at their fresh init (None
    when that cannot be known: a local file that is not there)."""
    shapes = pretrained_shapes(spec, arch)
    if shapes is None:
        return None
    taken = set(matching_keys(model, shapes))
    return {n for n, _ in model.named_parameters() if n not in taken}

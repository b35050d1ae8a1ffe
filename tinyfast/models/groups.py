"""Layer groups for gradual unfreezing (``--freeze``, ``--unfreeze-every``), one definition for
every model: **by stage**, i.e. by the resolution a layer writes.

Group 0 is the classifier head (the last ``nn.Linear``); then the dense layers before it (outputs
without a spatial map, e.g. VGG's or AlexNet's hidden fully connected layers), then the
convolutional stages from the deepest (smallest map) to the stem. A stage is every layer whose
output map has the same size, found by one forward pass of a single 64 px image (on the ``meta``
device for a model built there), each layer taking the deepest map of its block (see
:func:`_by_block`): ResNet-18 and ResNet-34 both have five groups (head, layer4,
layer3, layer2, stem + layer1), VGG-16 seven (head, two FC layers, five blocks). A downsampling
layer belongs to the stage it writes. A model the probe cannot run (an input size it refuses)
falls back to its top-level children, in reverse order.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LayerGroup", "layer_groups"]

PROBE_SIZE = 64
DENSE = 0  # the stage key of layers without a spatial output


class LayerGroup(list):
    """One layer group: a list of parameters with a ``name`` (its stage and the modules it spans)."""

    def __init__(self, name: str, params=()):
        super().__init__(params)
        self.name = name


def _span(names: list[str]) -> str:
    """``layer4`` for one module; ``features.10..features.12`` for a run of them."""
    mods = list(dict.fromkeys(n.rpartition(".")[0] or n for n in names))
    return mods[0] if len(mods) == 1 else f"{mods[0]}..{mods[-1]}"


def _key(out) -> int | None:
    """The stage of an output: its map height, or DENSE without a map."""
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not torch.is_tensor(out):
        return None
    return int(out.shape[-2]) if out.ndim == 4 else DENSE


def _stages(model: nn.Module, owners: list[tuple[str, nn.Module]]) -> dict[str, int] | None:
    """Module name -> stage key, from one forward pass; None if the model cannot run the probe."""
    first = next(model.parameters(), None)
    if first is None:
        return None
    seen: dict[str, int] = {}

    def hook(name):
        def record(mod, inputs, out):
            k = _key(out)
            if k is not None:
                seen.setdefault(name, k)
        return record

    modes = [(m, m.training) for m in model.modules()]
    hooks = [m.register_forward_hook(hook(name)) for name, m in owners]
    try:
        model.eval()
        x = torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE, device=first.device, dtype=first.dtype)
        with torch.no_grad():
            model(x)
    except (RuntimeError, ValueError, TypeError, NotImplementedError):
        return None
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes:
            m.training = mode
    return seen


def _by_block(model: nn.Module, seen: dict[str, int]) -> dict[str, int]:
    """Each layer in the stage of its block: the nearest enclosing module that is not a
    ``Sequential`` (a ResNet bottleneck, an inverted residual), whose deepest map it takes, so the
    1x1 convolution that opens a downsampling bottleneck sits with the rest of its block."""
    kinds = {n: m for n, m in model.named_modules()}
    out = {}
    for name, k in seen.items():
        parts = name.split(".")
        block = None
        for i in range(len(parts) - 1, 0, -1):
            anc = ".".join(parts[:i])
            if not isinstance(kinds.get(anc), nn.Sequential):
                block = anc
                break
        if block is None or k == DENSE:
            out[name] = k
            continue
        keys = [v for n, v in seen.items() if n.startswith(block + ".") and v != DENSE]
        out[name] = min(keys) if keys else k
    return out


def _by_children(model: nn.Module, head: nn.Module) -> list[nn.Module]:
    """The fallback: the top-level children (a long Sequential trunk split into its elements)."""
    blocks: list[nn.Module] = []
    for _, child in model.named_children():
        if isinstance(child, nn.Sequential) and len(child) > 2 and child is not head:
            blocks.extend(child.children())
        else:
            blocks.append(child)
    return blocks


def layer_groups(model: nn.Module) -> list[LayerGroup]:
    """The model's parameters grouped by stage, from the head backwards (see the module docstring).

    Every parameter is in exactly one group.
    """
    from .common import head_module
    head = head_module(model)
    head_ids = {id(p) for p in head.parameters()}
    names = {id(p): n for n, p in model.named_parameters()}

    def group(label: str, ps: list) -> LayerGroup:
        return LayerGroup(f"{label} {_span([names[id(p)] for p in ps])}", ps)

    groups = [group("head", list(head.parameters()))]
    owners = [(n, m) for n, m in model.named_modules()
              if m is not head and any(id(p) not in head_ids for p in m.parameters(recurse=False))]
    stages = _stages(model, owners)
    if stages is None:
        for b in reversed(_by_children(model, head)):
            ps = [p for p in b.parameters() if id(p) not in head_ids]
            if ps:
                groups.append(group("block", ps))
        return groups
    stages = _by_block(model, stages)
    known = sorted(set(stages.values()))
    by_key: dict[int, list] = {}
    for n, m in owners:
        # a layer the probe did not run (an auxiliary head) trains with the layers nearest the head
        k = stages.get(n, known[0] if known else DENSE)
        by_key.setdefault(k, []).extend(p for p in m.parameters(recurse=False) if id(p) not in head_ids)
    for k in sorted(by_key):
        groups.append(group("dense" if k == DENSE else f"{k}px", by_key[k]))
    return groups

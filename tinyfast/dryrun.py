"""``python -m tinyfast.train ... --print-config``: what a command would train, without training.

The dry run resolves the config exactly as a run would (recipe, explicit flags, run-time defaults)
and builds the model on the ``meta`` device (no memory, no init), then reports as JSON: the
resolved config (what ``config.json`` would hold), the class count it assumed, the parameter
count, the layer groups (head first, as ``--freeze`` / ``--unfreeze-every`` step through them)
and each epoch's state: trainable groups, phase, image size, batch size, augmentation (and each
phase's epochs, ``--phases`` / ``--prog-resize``). No data is read
(``--data``'s ``manifest.json`` at most, for the class count) and nothing is written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from tinyfast.config import TrainConfig, resolve_train_config
from tinyfast.phases import epoch_phases

__all__ = ["dry_run"]

DEFAULT_CLASSES = 200


def _num_classes(cfg: TrainConfig, classes: int | None, notes: list[str]) -> int:
    """``classes``, else ``--data``'s manifest's class count, else Tiny ImageNet's 200."""
    if classes:
        return int(classes)
    if cfg.data:
        from tinyfast.data import PackError, read_manifest
        try:
            return len(read_manifest(cfg.data)["classes"])
        except (PackError, KeyError, TypeError) as e:
            notes.append(f"{cfg.data}: no class count ({str(e).splitlines()[0]}); counted for "
                         f"{DEFAULT_CLASSES} classes")
    return DEFAULT_CLASSES


def _weights(cfg: TrainConfig) -> dict | None:
    """Where ``--pretrained`` would read from and whether that file is there."""
    if not cfg.pretrained:
        return None
    from tinyfast.models import imagenet_weights_path
    if cfg.pretrained == "imagenet":
        try:
            return {"spec": "imagenet", "path": imagenet_weights_path(cfg.arch), "present": True}
        except ValueError as e:
            return {"spec": "imagenet", "path": None, "present": False, "note": str(e).splitlines()[0]}
    return {"spec": cfg.pretrained, "path": cfg.pretrained, "present": Path(cfg.pretrained).is_file()}


def dry_run(cfg: TrainConfig, classes: int | None = None) -> dict:
    """The dry run of ``cfg`` (a recipe already applied): see the module docstring.

    Raises:
        ConfigError: the settings a run would refuse (one line naming the option).
    """
    from tinyfast.models import count_parameters, fresh_parameters, get_model, layer_groups
    from tinyfast.trainer.build import model_kwargs, trainable_groups

    from tinyfast.recipes import recipe_notes
    notes: list[str] = recipe_notes(cfg)
    # The weights file is reported below, not required: a dry run shows a transfer recipe anywhere.
    resolved = resolve_train_config(dataclasses.replace(cfg, pretrained=None), cuda=torch.cuda.is_available())
    resolved = dataclasses.replace(resolved, pretrained=cfg.pretrained)
    n_classes = _num_classes(resolved, classes, notes)
    kwargs = model_kwargs(resolved)
    with torch.device("meta"):
        model = get_model(resolved.arch, num_classes=n_classes, **kwargs)
    weights = _weights(resolved)
    fresh = fresh_parameters(model, resolved.arch, resolved.pretrained) if resolved.pretrained else set()
    if fresh is None:
        notes.append(f"--pretrained {resolved.pretrained}: no such file; every epoch's trainable count "
                     f"assumes every tensor loads")
        fresh = set()
    named = dict(model.named_parameters())
    groups = layer_groups(model)
    plan = epoch_phases(resolved)
    epochs = []
    for e, (i, phase) in enumerate(plan):
        n = trainable_groups(resolved, len(groups), e)
        trainable = {id(p) for g in groups[:n] for p in g} | {id(named[k]) for k in fresh}
        epochs.append({"epoch": e + 1, "trainable_groups": n, "trainable": [g.name for g in groups[:n]],
                       "trainable_parameters": sum(p.numel() for p in model.parameters() if id(p) in trainable),
                       "phase": i + 1, "image_size": phase.size, "batch_size": phase.batch, "aug": phase.aug,
                       "aug_sets": phase.aug.split("+")})
    phases = []
    for e, row in enumerate(epochs, 1):
        if phases and phases[-1]["phase"] == row["phase"]:
            phases[-1]["epochs"][1] = e
        else:
            phases.append({"phase": row["phase"], "epochs": [e, e], "image_size": row["image_size"],
                           "batch_size": row["batch_size"], "aug": row["aug"]})
    return {"config": dataclasses.asdict(resolved), "num_classes": n_classes,
            "model": {"arch": resolved.arch, "kwargs": kwargs}, "parameters": count_parameters(model),
            "layer_groups": [{"name": g.name, "parameters": sum(p.numel() for p in g)} for g in groups],
            "pretrained": weights and {**weights, "fresh": sorted(fresh)}, "phases": phases, "epochs": epochs,
            "notes": notes}

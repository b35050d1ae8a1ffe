"""Source: an ImageFolder tree, ``root/<class>/**`` or ``root/{train,val}/<class>/**``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyfast.data import PackError
from tinyfast.pack.plan import Item, Plan, Skips, is_image_name, is_utf8, list_images, stray_reason


def _class_dirs(root: Path, skips: Skips) -> dict:
    """class name -> list of image paths for an ImageFolder root (empty classes are skips)."""
    out = {}
    for d in sorted(root.iterdir(), key=lambda p: p.name):
        if not d.is_dir():
            skips.add(d, stray_reason(d))
            continue
        if d.name.startswith("."):
            skips.add(d, "hidden directory")
            continue
        if not is_utf8(d.name):
            skips.add(d, "directory name is not valid UTF-8")
            continue
        files = list_images(d, skips)
        if not files:
            skips.add(d, "class directory has no images")
            continue
        out[d.name] = files
    return out


def scan_image_folder(src: Path, skips: Skips, val_fraction: float, seed: int) -> Plan:
    """Plan a pack of ``root/<class>/*`` (or ``root/{train,val}/<class>/*``); classes sorted."""
    split_dirs = {s: src / s for s in ("train", "val", "test") if (src / s).is_dir()}
    predefined = "train" in split_dirs and any(
        d.is_dir() and any(is_image_name(f.name) for f in d.iterdir() if f.is_file())
        for d in (src / "train").iterdir())
    if predefined:
        plan = _predefined_splits(src, split_dirs, skips)
    else:
        plan = _split_off_val(src, skips, val_fraction, seed)
    for s in plan.splits:
        plan.has_boxes[s] = False
    return plan


def _predefined_splits(src: Path, split_dirs: dict, skips: Skips) -> Plan:
    """``root/train/<class>/``, ``root/val/<class>/`` and an unlabelled ``root/test/``."""
    for p in src.iterdir():
        if p.name not in split_dirs:
            skips.add(p, stray_reason(p))
    per_split = {s: _class_dirs(d, skips) for s, d in split_dirs.items() if s != "test"}
    classes = sorted(per_split["train"])
    plan = Plan("imagefolder", classes, list(classes), {})
    index = {c: i for i, c in enumerate(classes)}
    for s, dirs in per_split.items():
        items = []
        for c, files in dirs.items():
            if c not in index:
                for p in files:
                    skips.add(p, f"class directory not among the train classes ({c})")
                continue
            items += [Item(str(p), p.relative_to(split_dirs[s]).as_posix(), index[c]) for p in files]
        plan.splits[s] = items
    if "test" in split_dirs:
        files = list_images(split_dirs["test"], skips)
        plan.splits["test"] = [Item(str(p), p.relative_to(split_dirs["test"]).as_posix()) for p in files]
    return plan


def _split_off_val(src: Path, skips: Skips, val_fraction: float, seed: int) -> Plan:
    """``root/<class>/``: ``val_fraction`` of each class moved to val, deterministic from ``seed``."""
    dirs = _class_dirs(src, skips)
    if not dirs:
        raise PackError(f"{src}: not a dataset (no wnids.txt and no <class>/<image> folders)")
    classes = sorted(dirs)
    plan = Plan("imagefolder", classes, list(classes), {})
    rng = np.random.default_rng(seed)
    train, val = [], []
    for i, c in enumerate(classes):
        files = dirs[c]
        n_val = int(round(val_fraction * len(files)))
        if val_fraction > 0 and len(files) > 1:
            n_val = min(max(n_val, 1), len(files) - 1)
        else:
            n_val = 0
        # A per-class permutation drawn in class order: deterministic from the seed.
        is_val = np.zeros(len(files), bool)
        is_val[rng.permutation(len(files))[:n_val]] = True
        for p, v in zip(files, is_val):
            (val if v else train).append(Item(str(p), p.relative_to(src).as_posix(), i))
    plan.splits["train"] = train
    if val:
        plan.splits["val"] = val
    return plan

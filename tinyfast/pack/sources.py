"""Recognising the layout of SRC and planning its pack with the matching source."""

from __future__ import annotations

from pathlib import Path

from tinyfast.data import PackError
from tinyfast.pack.image_folder import scan_image_folder
from tinyfast.pack.plan import Plan, Skips, link_problem
from tinyfast.pack.tiny_imagenet import scan_tiny_imagenet


def scan(src: Path, skips: Skips, val_fraction: float = 0.0, seed: int = 0) -> Plan:
    """Recognise the layout of ``src`` and list what to pack (no decoding yet)."""
    if not src.exists():
        raise PackError(f"{src}: {link_problem(src) or 'does not exist'}")
    if not src.is_dir():
        raise PackError(f"{src}: not a directory (SRC must be a dataset folder)")
    if (src / "wnids.txt").is_file():
        if val_fraction:
            raise PackError(f"{src}: --val-fraction applies to ImageFolder trees; this one has its own val/")
        return scan_tiny_imagenet(src, skips)
    train = src / "train"
    if (src / "val" / "val_annotations.txt").is_file() or (
            train.is_dir() and any((d / "images").is_dir() for d in train.iterdir() if d.is_dir())):
        raise PackError(f"{src / 'wnids.txt'}: missing (needed for the tiny-imagenet layout: the label order)")
    return scan_image_folder(src, skips, val_fraction, seed)


def apply_limit(plan: Plan, limit: int | None) -> None:
    """``--limit N``: keep the first N images of each class in every labelled split (in the
    listing's natural order) and the first N x classes of an unlabelled one; the cut is noted."""
    if not limit:
        return
    for split, items in plan.splits.items():
        if split == "test":
            kept = items[:limit * len(plan.classes)]
        else:
            seen, kept = {}, []
            for it in items:
                if seen.get(it.label, 0) < limit:
                    seen[it.label] = seen.get(it.label, 0) + 1
                    kept.append(it)
        if len(kept) < len(items):
            plan.notes.append(f"{split}: --limit {limit} kept {len(kept)} of {len(items)} images")
        plan.splits[split] = kept

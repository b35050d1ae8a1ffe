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

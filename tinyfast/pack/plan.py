"""What to pack: the items a scan found, the skips it recorded, and directory listing."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from tinyfast.data import PackError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
STRAY_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}


@dataclass
class Item:
    """One source image to pack: where it is, its stored name, label and box."""

    path: str  # absolute source path
    id: str  # name stored in ids.txt
    label: int = -1
    box: tuple | None = None  # (x0, y0, x1, y1) in source pixels, inclusive


@dataclass
class Plan:
    """What a scan found: the layout, classes (label order), each split's items and the skips."""

    layout: str
    classes: list
    words: list
    splits: dict  # split -> list[Item]
    skipped: list = field(default_factory=list)  # {"path", "reason", "detail"?}
    has_boxes: dict = field(default_factory=dict)  # split -> bool
    notes: list = field(default_factory=list)


class Skips:
    """Collects skips; in strict mode the first one is an error."""

    def __init__(self, src: Path, strict: bool):
        self.src, self.strict, self.items = src, strict, []

    def add(self, path, reason: str, detail: str = "") -> None:
        path = Path(path)
        try:
            rel = path.relative_to(self.src).as_posix()
        except ValueError:
            rel = str(path)
        if self.strict:
            raise PackError(f"{path}: {reason}{' (' + detail + ')' if detail else ''} [--strict]")
        rec = {"path": rel, "reason": reason}
        if detail:
            rec["detail"] = detail
        self.items.append(rec)


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str):
    """Sort key putting "img_2" before "img_10"."""
    return [int(t) if t.isdigit() else t.lower() for t in _DIGITS.split(name)]


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTS


def stray_reason(p: Path) -> str:
    if p.name.lower() in STRAY_NAMES or p.name.startswith("._"):
        return "stray file"
    if p.is_dir():
        return "unexpected directory"
    return "not an image file"


def _usable_name(d, name: str, is_file: bool, skips: Skips) -> bool:
    """True for an image file ``d/name``; otherwise records why it is skipped."""
    if is_file and is_image_name(name) and not name.startswith("._"):
        if "\n" not in name and "\r" not in name:
            return True
        skips.add(Path(d, name), "file name contains a newline")
        return False
    skips.add(Path(d, name), stray_reason(Path(d, name)))
    return False


def list_images(d: Path, skips: Skips) -> list:
    """Image files anywhere under ``d`` as Paths (natural order); anything else is a recorded skip."""
    entries = sorted((p for p in d.rglob("*") if not p.is_dir()), key=lambda p: natural_key(p.as_posix()))
    return [p for p in entries if _usable_name(p.parent, p.name, p.is_file(), skips)]


def list_names(d: Path, skips: Skips) -> list:
    """Names of the image files directly in ``d`` (natural order); anything else is a recorded skip.

    Strings and ``os.scandir`` (file types come with the listing) rather than ``Path`` objects:
    this runs over 100k-file directories, where pathlib costs seconds.
    """
    if not d.is_dir():
        return []
    with os.scandir(d) as it:
        entries = [(e.name, e.is_file()) for e in it]
    entries.sort(key=lambda e: natural_key(e[0]))
    return [n for n, f in entries if _usable_name(d, n, f, skips)]


def read_lines(path: Path) -> list:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise PackError(f"{path}: cannot read ({e.strerror})") from None

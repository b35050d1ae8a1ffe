"""What to pack: the items a scan found, the skips it recorded, and directory listing."""

from __future__ import annotations

import errno
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
        """Record ``path`` (shown relative to SRC) as skipped for ``reason``."""
        path = Path(path)
        try:
            rel = printable(path.relative_to(self.src).as_posix())
        except ValueError:
            rel = printable(str(path))
        if self.strict:
            raise PackError(f"{printable(str(path))}: {reason}{' (' + detail + ')' if detail else ''} [--strict]")
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


def printable(name: str) -> str:
    """``name`` with the bytes of a non-UTF-8 file name shown as ``\\xNN`` (safe to print and store)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def is_utf8(name: str) -> bool:
    """False for a name holding bytes that are not UTF-8 (they cannot go into ids.txt or JSON)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def link_problem(p: Path) -> str | None:
    """"symbolic link loop" or "broken symbolic link" for such a ``p``, else None."""
    if not p.is_symlink() or p.exists():
        return None
    try:
        os.stat(p)
    except OSError as e:
        return "symbolic link loop" if e.errno == errno.ELOOP else "broken symbolic link"
    return None


def stray_reason(p: Path) -> str:
    """Why a non-image entry ``p`` is skipped."""
    if p.name.lower() in STRAY_NAMES or p.name.startswith("._"):
        return "stray file"
    broken = link_problem(p)
    if broken:
        return broken
    if p.is_dir():
        return "unexpected directory"
    return "not an image file"


def _usable_name(d, name: str, is_file: bool, skips: Skips) -> bool:
    """True for an image file ``d/name``; otherwise records why it is skipped."""
    if is_file and is_image_name(name) and not name.startswith("._"):
        if "\n" in name or "\r" in name:
            skips.add(Path(d, name), "file name contains a newline")
        elif not is_utf8(name):
            skips.add(Path(d, name), "file name is not valid UTF-8")
        else:
            return True
        return False
    skips.add(Path(d, name), stray_reason(Path(d, name)))
    return False


def list_images(d: Path, skips: Skips) -> list:
    """Image files anywhere under ``d`` as Paths (natural order); anything else is a recorded skip."""
    try:
        found = [p for p in d.rglob("*") if not p.is_dir()]
    except OSError as e:
        raise PackError(f"{printable(str(e.filename or d))}: cannot list ({e.strerror or e})") from None
    entries = sorted(found, key=lambda p: natural_key(printable(p.as_posix())))
    usable = []
    for p in entries:
        if not is_utf8(p.parent.relative_to(d).as_posix()):  # a sub-folder's name, part of the id
            skips.add(p, "file name is not valid UTF-8")
        elif _usable_name(p.parent, p.name, p.is_file(), skips):
            usable.append(p)
    return usable


def list_names(d: Path, skips: Skips) -> list:
    """Names of the image files directly in ``d`` (natural order); anything else is a recorded skip.

    Strings and ``os.scandir`` (file types come with the listing) rather than ``Path`` objects:
    this runs over 100k-file directories, where pathlib costs seconds.
    """
    if not d.is_dir():
        return []
    try:
        with os.scandir(d) as it:
            entries = [(e.name, _is_file(e)) for e in it]
    except OSError as e:
        raise PackError(f"{d}: cannot list ({e.strerror or e})") from None
    entries.sort(key=lambda e: natural_key(printable(e[0])))
    return [n for n, f in entries if _usable_name(d, n, f, skips)]


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:  # a symbolic link loop: stray_reason says so
        return False


def read_lines(path: Path) -> list:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise PackError(f"{path}: cannot read ({e.strerror})") from None

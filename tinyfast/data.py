"""Reading packed datasets written by ``python -m tinyfast.pack``.

Packed layout (format version 1)::

    DIR/manifest.json            format, version, classes, splits, mean/std, sha256 of every file
    DIR/<split>/images.npy       uint8 (N, S, S, 3) RGB, NHWC, memory-mapped on open
    DIR/<split>/labels.npy       int64 (N,) class index into ``classes`` (absent for "test")
    DIR/<split>/ids.txt          N lines, the source file of each row (relative to its split dir)
    DIR/<split>/boxes.npy        int16 (N, 4) x0, y0, x1, y1 in packed-image pixels, inclusive,
                                 -1 rows where the source had no box (only when the source has boxes)
    DIR/<split>/jpeg/*.tar       optional WebDataset shards (``--jpeg-shards``)
    DIR/<split>.beton            optional FFCV file (``--ffcv``)

Splits are ``"train"``, ``"val"`` and ``"test"`` (unlabelled); a dataset may lack val/test.
Opening is cheap: it checks the manifest's version and every file's size, and the ``.npy``
headers' shapes and dtypes against the manifest; ``verify=True`` also re-hashes the split's files.

This module is the format only: it imports nothing of :mod:`tinyfast.pack` (which writes it) or
:mod:`tinyfast.default_data` (which makes the default set).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT_NAME = "tinyfast-packed"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"


class PackError(ValueError):
    """A packed dataset (or a pack input) is missing, truncated, tampered with or malformed.

    The message is one line and names the offending file.
    """


@dataclass
class PackedSplit:
    """One split of a packed dataset, images memory-mapped (nothing is read until indexed).

    Attributes:
        images: ``np.memmap`` uint8 ``(N, H, W, 3)``, read-only.
        labels: int64 ``(N,)`` class indices, or ``None`` for the unlabelled test split.
        ids: the source file name of each row.
        classes: class ids (wnids) in label order; ``words`` their human-readable names.
        num_classes: ``len(classes)``.
        mean, std: per-channel (R, G, B) mean/std of the *train* split in [0, 1] units.
        boxes: int16 ``(N, 4)`` bounding boxes (x0, y0, x1, y1, -1 = none) or ``None``.
        manifest: the parsed ``manifest.json``; root: dataset directory; split: its name.
    """

    images: np.ndarray
    labels: np.ndarray | None
    ids: list[str]
    classes: list[str]
    words: list[str]
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    manifest: dict = field(repr=False)
    root: Path = None
    split: str = "train"
    boxes: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.images.shape[0])


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def read_manifest(root: str | os.PathLike) -> dict:
    """Parse and sanity-check ``root/manifest.json``; raise :class:`PackError` otherwise."""
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise PackError(f"{root}: not a directory (no packed dataset here)")
    if not path.is_file():
        raise PackError(f"{path}: missing (not a packed dataset; create one with python -m tinyfast.pack)")
    try:
        man = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PackError(f"{path}: unreadable manifest ({e.__class__.__name__}: {e})") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT_NAME:
        raise PackError(f"{path}: not a {FORMAT_NAME} manifest")
    if man.get("version") != FORMAT_VERSION:
        raise PackError(
            f"{path}: format version {man.get('version')!r}, this tinyfast reads version "
            f"{FORMAT_VERSION} (re-pack the data)")
    for key in ("classes", "splits", "files", "mean", "std", "size"):
        if key not in man:
            raise PackError(f"{path}: manifest lacks {key!r}")
    return man


def _check_size(root: Path, man: dict, rel: str) -> Path:
    path = root / rel
    info = man["files"].get(rel)
    if info is None:
        raise PackError(f"{path}: not listed in {root / MANIFEST}")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise PackError(f"{path}: missing") from None
    if size != info["bytes"]:
        raise PackError(f"{path}: {size} bytes, manifest says {info['bytes']} (truncated or replaced)")
    return path


def _check_hash(root: Path, man: dict, rel: str) -> None:
    path = root / rel
    digest = sha256_file(path)
    if digest != man["files"][rel]["sha256"]:
        raise PackError(f"{path}: sha256 differs from the manifest (file corrupted or tampered with)")


def _load_npy(path: Path, mmap: bool, dtype, shape) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise PackError(f"{path}: unreadable .npy ({e})") from None
    if arr.dtype != np.dtype(dtype) or tuple(arr.shape) != tuple(shape):
        raise PackError(f"{path}: {arr.dtype} {tuple(arr.shape)}, expected {np.dtype(dtype)} {tuple(shape)}")
    return arr


def split_files(man: dict, split: str) -> list[str]:
    """Manifest-relative paths of every file belonging to ``split`` (arrays, shards, beton)."""
    prefix = f"{split}/"
    return sorted(r for r in man["files"] if r.startswith(prefix) or r == f"{split}.beton")


def open_packed(root: str | os.PathLike, split: str, verify: bool = False) -> PackedSplit:
    """Open one split of a packed dataset, memory-mapping its images.

    Checks (cheap, always): manifest format and version, that every file of the split exists with
    the size recorded in the manifest, and the ``.npy`` headers' dtypes and shapes. With
    ``verify=True`` also re-computes the sha256 of every file of the split (reads it all).

    Raises:
        PackError: one line naming the missing, truncated, malformed or tampered file.
    """
    root = Path(root)
    man = read_manifest(root)
    if split not in man["splits"]:
        have = ", ".join(man["splits"]) or "none"
        raise PackError(f"{root / MANIFEST}: no split {split!r} (this dataset has: {have})")
    info = man["splits"][split]
    n, s = int(info["count"]), int(man["size"])
    files = split_files(man, split)
    for rel in files:
        _check_size(root, man, rel)
    if verify:
        for rel in files:
            _check_hash(root, man, rel)
    images = _load_npy(root / split / "images.npy", True, np.uint8, (n, s, s, 3))
    classes = [c["wnid"] for c in man["classes"]]
    words = [c.get("words", "") for c in man["classes"]]
    labels = None
    if info.get("labelled", True):
        path = root / split / "labels.npy"
        labels = _load_npy(path, False, np.int64, (n,))
        if n and (labels.min() < 0 or labels.max() >= len(classes)):
            raise PackError(f"{path}: labels outside [0, {len(classes)})")
    boxes = None
    if f"{split}/boxes.npy" in man["files"]:
        boxes = _load_npy(root / split / "boxes.npy", True, np.int16, (n, 4))
    ids_path = root / split / "ids.txt"
    ids = ids_path.read_text(encoding="utf-8").split("\n") if n else []
    if ids and ids[-1] == "":
        ids.pop()
    if len(ids) != n:
        raise PackError(f"{ids_path}: {len(ids)} ids, expected {n}")
    return PackedSplit(
        images=images, labels=labels, ids=ids, classes=classes, words=words,
        num_classes=len(classes), mean=tuple(float(v) for v in man["mean"]),
        std=tuple(float(v) for v in man["std"]), manifest=man, root=root, split=split, boxes=boxes)


def verify(root: str | os.PathLike) -> dict:
    """Re-hash every file listed in the manifest (all splits, shards, ``.beton``).

    Returns the manifest. Raises :class:`PackError` naming the first file that differs.
    """
    root = Path(root)
    man = read_manifest(root)
    for rel in sorted(man["files"]):
        _check_size(root, man, rel)
    for rel in sorted(man["files"]):
        _check_hash(root, man, rel)
    for split in man["splits"]:
        open_packed(root, split)  # shapes/dtypes
    return man


def is_packed(root: str | os.PathLike) -> bool:
    """True when ``root`` holds a packed dataset whose splits open (cheap checks only)."""
    try:
        man = read_manifest(root)
        for split in man["splits"]:
            open_packed(root, split)
    except PackError:
        return False
    return True

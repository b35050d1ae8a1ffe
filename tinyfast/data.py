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
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyfast._util import atomic_write_text

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


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22, bar=None) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks (``bar.update(bytes)`` after each, if given)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
            if bar is not None:
                bar.update(len(b))
    return h.hexdigest()


def read_manifest(root: str | os.PathLike) -> dict:
    """Parse and check ``root/manifest.json`` (format, version, schema); raise :class:`PackError` otherwise."""
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise PackError(f"{root}: not a directory (no packed dataset here)")
    if not path.is_file():
        raise PackError(f"{path}: missing (not a packed dataset; create one with python -m tinyfast.pack)")
    try:
        man = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
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
    _check_schema(man, path)
    return man


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _bad(path: Path, key: str, what: str, value) -> PackError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return PackError(f"{path}: {key} must be {what}, got {shown}")


def _is_int(v, least: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= least


def _check_schema(man: dict, path: Path) -> None:
    """The types and ranges of every manifest entry the readers use; one line naming the key."""
    if not _is_int(man["size"], 1):
        raise _bad(path, "size", "a positive integer", man["size"])
    for key in ("mean", "std"):
        v = man[key]
        if not (isinstance(v, list) and len(v) == 3 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and 0.0 <= x <= 1.0 for x in v)):
            raise _bad(path, key, "a list of 3 numbers in [0, 1]", v)
    classes = man["classes"]
    if not isinstance(classes, list) or not classes:
        raise _bad(path, "classes", "a non-empty list", classes)
    for i, c in enumerate(classes):
        if not isinstance(c, dict) or not isinstance(c.get("wnid"), str) or not isinstance(c.get("words", ""), str):
            raise _bad(path, f"classes[{i}]", 'an object {"wnid": str, "words": str}', c)
    _check_splits(man["splits"], path)
    files = man["files"]
    if not isinstance(files, dict):
        raise _bad(path, "files", "an object", files)
    for rel, info in files.items():
        parts = rel.split("/")
        if not rel or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
            raise _bad(path, "files", "relative paths inside the dataset", rel)
        if not isinstance(info, dict):
            raise _bad(path, f"files[{rel!r}]", 'an object {"bytes": int, "sha256": hex}', info)
        if not _is_int(info.get("bytes")):
            raise _bad(path, f"files[{rel!r}].bytes", "a non-negative integer", info.get("bytes"))
        if not isinstance(info.get("sha256"), str) or not _SHA256.match(info["sha256"]):
            raise _bad(path, f"files[{rel!r}].sha256", "64 lowercase hex digits", info.get("sha256"))


def _check_splits(splits, path: Path) -> None:
    if not isinstance(splits, dict):
        raise _bad(path, "splits", "an object", splits)
    for name, info in splits.items():
        key = f"splits.{name}"
        if name not in SPLITS:
            raise _bad(path, "splits", f"named among {', '.join(SPLITS)}", name)
        if not isinstance(info, dict):
            raise _bad(path, key, 'an object {"count": int, ...}', info)
        if not _is_int(info.get("count")):
            raise _bad(path, f"{key}.count", "a non-negative integer", info.get("count"))
        if not isinstance(info.get("labelled", True), bool):
            raise _bad(path, f"{key}.labelled", "true or false", info.get("labelled"))
        shards = info.get("jpeg_shards", [])
        if not isinstance(shards, list) or not all(isinstance(x, str) for x in shards):
            raise _bad(path, f"{key}.jpeg_shards", "a list of file names", shards)
        if not isinstance(info.get("beton", ""), str):
            raise _bad(path, f"{key}.beton", "a file name", info.get("beton"))


def _check_size(root: Path, man: dict, rel: str) -> Path:
    path = root / rel
    info = man["files"].get(rel)
    if info is None:
        raise PackError(f"{path}: not listed in {root / MANIFEST}")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise PackError(f"{path}: missing") from None
    except OSError as e:
        raise PackError(f"{path}: cannot read ({e.strerror})") from None
    if size != info["bytes"]:
        raise PackError(f"{path}: {size} bytes, manifest says {info['bytes']} (truncated or replaced)")
    return path


def _check_hash(root: Path, man: dict, rel: str, bar=None) -> None:
    """Re-hash ``root/rel`` against the manifest; a match of a bulk file is stamped as verified."""
    path = root / rel
    try:
        before = os.stat(path)
        digest = sha256_file(path, bar=bar)
    except OSError as e:
        raise PackError(f"{path}: cannot read ({e.strerror})") from None
    want = man["files"][rel]["sha256"]
    if digest != want:
        raise PackError(f"{path}: sha256 differs from the manifest (file corrupted or tampered with)")
    if is_bulk(rel):
        _write_stamp(path, before, want)


# ---------------------------------------------------------------- verified stamps of bulk files
# The small files of a split (labels, ids, boxes) are re-hashed on every open: milliseconds. The
# bulk ones (images.npy, shards, .beton: ~1 GiB each for the real set) are re-hashed only when
# their stat differs from the stamp left by the last successful hash. The stamp lives in the
# user's cache, not in the dataset, so a copy of the dataset carries no claim of being verified;
# ctime is part of it because no user call can set it back (touch -r restores only mtime).
def is_bulk(rel: str) -> bool:
    """True for the large files whose re-hash on open is skipped while their stamp holds."""
    return rel.endswith("/images.npy") or rel.endswith(".tar") or rel.endswith(".beton")


def stamp_dir() -> Path:
    """Where verified stamps are kept: ``$XDG_CACHE_HOME/tinyfast/verified`` (default ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tinyfast" / "verified"


def _stamp_file(path: Path) -> Path:
    key = hashlib.sha256(os.fsencode(os.path.realpath(path))).hexdigest()[:40]
    return stamp_dir() / f"{key}.json"


def _stamp_of(st: os.stat_result, sha256: str) -> dict:
    return {"sha256": sha256, "stat": [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]}


def _write_stamp(path: Path, st: os.stat_result, sha256: str) -> None:
    """Record that ``path`` with stat ``st`` hashed to ``sha256``; a cache that cannot be written is
    not an error (every open then re-hashes)."""
    try:
        atomic_write_text(_stamp_file(path),
                          json.dumps(dict(_stamp_of(st, sha256), path=os.fsdecode(os.path.realpath(path)))))
    except (OSError, UnicodeError):
        pass


def _stamp_holds(path: Path, sha256: str) -> bool:
    try:
        stamp = json.loads(_stamp_file(path).read_text())
        return {k: stamp.get(k) for k in ("sha256", "stat")} == _stamp_of(os.stat(path), sha256)
    except (OSError, ValueError, AttributeError):
        return False


def record_verified(root: str | os.PathLike, man: dict) -> None:
    """Stamp the bulk files of a dataset whose hashes were just computed (by the packer)."""
    root = Path(root)
    for rel, info in man["files"].items():
        if is_bulk(rel):
            try:
                _write_stamp(root / rel, os.stat(root / rel), info["sha256"])
            except OSError:
                pass


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

    Checks, always: the manifest's format, version and schema; that every file of the split exists
    with the size recorded in the manifest; the sha256 of its small files (labels, ids, boxes);
    the sha256 of its bulk files (``images.npy``, shards, ``.beton``) unless their size, mtime,
    ctime and inode match the stamp left in the user cache (:func:`stamp_dir`) by the last
    successful hash; the ``.npy`` headers' dtypes and shapes. ``verify=True`` re-hashes every
    file of the split regardless of stamps.

    Raises:
        PackError: one line naming the missing, truncated, malformed or tampered file.
    """
    root = Path(root)
    man = read_manifest(root)
    if split not in man["splits"]:
        have = ", ".join(man["splits"]) or "none"
        raise PackError(f"{root / MANIFEST}: no split {split!r} (this dataset has: {have})")
    info = man["splits"][split]
    n, s = info["count"], man["size"]
    files = split_files(man, split)
    for rel in files:
        _check_size(root, man, rel)
    for rel in files:
        if verify or not is_bulk(rel) or not _stamp_holds(root / rel, man["files"][rel]["sha256"]):
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
    return PackedSplit(
        images=images, labels=labels, ids=_read_ids(root / split / "ids.txt", n), classes=classes,
        words=words, num_classes=len(classes), mean=tuple(float(v) for v in man["mean"]),
        std=tuple(float(v) for v in man["std"]), manifest=man, root=root, split=split, boxes=boxes)


def _read_ids(path: Path, n: int) -> list:
    try:
        ids = path.read_text(encoding="utf-8").split("\n") if n else []
    except (OSError, UnicodeDecodeError) as e:
        raise PackError(f"{path}: unreadable ({e.__class__.__name__}: {e})") from None
    if ids and ids[-1] == "":
        ids.pop()
    if len(ids) != n:
        raise PackError(f"{path}: {len(ids)} ids, expected {n}")
    return ids


def verify(root: str | os.PathLike, progress: bool = False) -> dict:
    """Re-hash every file listed in the manifest (all splits, shards, ``.beton``).

    Returns the manifest. Raises :class:`PackError` naming the first file that differs.
    ``progress``: show the bytes hashed with :func:`tinyfast.progress.progress`.
    """
    from tinyfast._util import close_bar
    from tinyfast.progress import progress as bar_of

    root = Path(root)
    man = read_manifest(root)
    for rel in sorted(man["files"]):
        _check_size(root, man, rel)
    total = sum(info["bytes"] for info in man["files"].values())
    bar = bar_of(total=total, desc="verify", unit="B", disable=not progress, unit_scale=True)
    failed = True
    try:
        for rel in sorted(man["files"]):
            _check_hash(root, man, rel, bar)
        failed = False
    finally:
        close_bar(bar, failed)
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


def data_identity(man: dict) -> str:
    """The identity of a packed dataset's content: a sha256 over its class list and its files'
    sha256 (not over when or from where it was packed). Equal for the same data packed again,
    different for other images, labels or class names: a checkpoint records it, so a resume on
    data re-packed under the same path is noticed."""
    content = {"classes": man["classes"], "files": {k: v["sha256"] for k, v in sorted(man["files"].items())}}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()

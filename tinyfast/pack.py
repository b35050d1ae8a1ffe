"""``python -m tinyfast.pack``: a JPEG tree -> a verified packed dataset that loads with no decode.

Usage::

    python -m tinyfast.pack SRC --out DIR [--size 64] [--jpeg-shards] [--ffcv] [--strict] [--overwrite]
    python -m tinyfast.pack IMAGEFOLDER --out DIR [--val-fraction 0.1 --seed 0]
    python -m tinyfast.pack --synthetic --out DIR [--classes 200 --per-class 500 --val-per-class 50
                            --test-count N --seed 0 --tree KEEP_JPEG_TREE_HERE]
    python -m tinyfast.pack --verify DIR

Inputs:
* the CS231n ``tiny-imagenet-200`` layout: ``wnids.txt`` (label order), ``words.txt``,
  ``train/<wnid>/images/*.JPEG`` + ``<wnid>_boxes.txt``, ``val/images`` + ``val_annotations.txt``,
  ``test/images`` (unlabelled);
* an ImageFolder tree ``root/<class>/**.{jpg,jpeg,png,...}`` (classes sorted by name; rows split off
  to val per class with ``--val-fraction``, deterministic from ``--seed``), or one with
  ``root/train/<class>/`` and ``root/val/<class>/``.

Images are decoded by Pillow and converted with ``.convert("RGB")`` (grayscale, CMYK, palette,
RGBA are counted, not skipped; EXIF orientation is ignored, as torchvision's loader does). An image
whose size is not ``--size`` square is centre-cropped to a square and resized with Pillow's
``BICUBIC`` filter (antialiased when shrinking); its box is mapped the same way. Files that cannot
be used are skipped, counted in the summary and listed in the manifest with their reason;
``--strict`` makes any skip an error. The output is written in a temporary sibling of ``--out``
and renamed into place only when complete, so an interrupted pack never leaves a dataset there.
The format is described in :mod:`tinyfast.data`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import sys
import tarfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tinyfast._util import cpu_count, mp_context
from tinyfast.data import (FORMAT_NAME, FORMAT_VERSION, MANIFEST, PackError, is_packed, read_manifest,
                           sha256_file, verify)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
STRAY_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}
RESIZE_FILTER = "center crop to square, then PIL.Image.Resampling.BICUBIC to size x size"
SHARD_JPEG_QUALITY = 95  # re-encodes (see _write_shards) use 4:4:4 chroma at this quality
_TASK = 128  # images per decode task: large enough to amortise IPC, small enough for a smooth bar
_INLINE_BELOW = 600  # fewer images than this: decode in-process (pool start-up costs more)


# ------------------------------------------------------------------------------------------ plan
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


class _Skips:
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


def _natural_key(name: str):
    """Sort key putting "img_2" before "img_10"."""
    return [int(t) if t.isdigit() else t.lower() for t in _DIGITS.split(name)]


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTS


def _stray_reason(p: Path) -> str:
    if p.name.lower() in STRAY_NAMES or p.name.startswith("._"):
        return "stray file"
    if p.is_dir():
        return "unexpected directory"
    return "not an image file"


def _usable_name(d, name: str, is_file: bool, skips: _Skips) -> bool:
    """True for an image file ``d/name``; otherwise records why it is skipped."""
    if is_file and _is_image_name(name) and not name.startswith("._"):
        if "\n" not in name and "\r" not in name:
            return True
        skips.add(Path(d, name), "file name contains a newline")
        return False
    skips.add(Path(d, name), _stray_reason(Path(d, name)))
    return False


def _list_images(d: Path, skips: _Skips) -> list:
    """Image files anywhere under ``d`` as Paths (natural order); anything else is a recorded skip."""
    entries = sorted((p for p in d.rglob("*") if not p.is_dir()), key=lambda p: _natural_key(p.as_posix()))
    return [p for p in entries if _usable_name(p.parent, p.name, p.is_file(), skips)]


def _list_names(d: Path, skips: _Skips) -> list:
    """Names of the image files directly in ``d`` (natural order); anything else is a recorded skip.

    Strings and ``os.scandir`` (file types come with the listing) rather than ``Path`` objects:
    this runs over 100k-file directories, where pathlib costs seconds.
    """
    if not d.is_dir():
        return []
    with os.scandir(d) as it:
        entries = [(e.name, e.is_file()) for e in it]
    entries.sort(key=lambda e: _natural_key(e[0]))
    return [n for n, f in entries if _usable_name(d, n, f, skips)]


def _read_lines(path: Path) -> list:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise PackError(f"{path}: cannot read ({e.strerror})") from None


def _parse_box(fields, path, lineno):
    if len(fields) < 4:
        return None
    try:
        return tuple(int(float(f)) for f in fields[:4])
    except ValueError:
        raise PackError(f"{path}:{lineno}: bounding box is not 4 numbers: {' '.join(fields[:4])!r}") from None


def scan_tiny_imagenet(src: Path, skips: _Skips) -> Plan:
    """Plan a pack of the CS231n tiny-imagenet-200 layout (labels in wnids.txt order)."""
    wn_path = src / "wnids.txt"
    wnids, seen = [], {}
    for i, line in enumerate(_read_lines(wn_path), 1):
        w = line.strip()
        if not w:
            continue
        if w in seen:
            raise PackError(f"{wn_path}:{i}: duplicate wnid {w} (first on line {seen[w]})")
        if "/" in w or w.startswith("."):
            raise PackError(f"{wn_path}:{i}: not a class id: {w!r}")
        seen[w] = i
        wnids.append(w)
    if not wnids:
        raise PackError(f"{wn_path}: empty (no class ids)")
    index = {w: i for i, w in enumerate(wnids)}
    words = {}
    words_path = src / "words.txt"
    if words_path.is_file():
        for line in _read_lines(words_path):
            k, _, v = line.partition("\t")
            if k.strip() in index:
                words[k.strip()] = v.strip()
    plan = Plan("tiny-imagenet", wnids, [words.get(w, "") for w in wnids], {})
    if not words_path.is_file():
        plan.notes.append("no words.txt: class names left empty")
    for p in sorted(src.iterdir()):
        if p.name not in ("wnids.txt", "words.txt", "train", "val", "test"):
            skips.add(p, _stray_reason(p))

    # train
    train_dir = src / "train"
    if not train_dir.is_dir():
        raise PackError(f"{train_dir}: missing (tiny-imagenet layout needs train/<wnid>/images)")
    for p in sorted(train_dir.iterdir()):
        if p.is_dir() and p.name not in index:
            skips.add(p, "class directory not in wnids.txt")
        elif not p.is_dir():
            skips.add(p, _stray_reason(p))
    items = []
    for w in wnids:
        cdir = train_dir / w
        if not cdir.is_dir():
            skips.add(cdir, "class in wnids.txt has no train directory")
            continue
        img_dir = cdir / "images"
        for p in sorted(cdir.iterdir()):
            if p.name not in ("images", f"{w}_boxes.txt"):
                skips.add(p, _stray_reason(p))
        files = _list_names(img_dir, skips)
        if not files:
            skips.add(cdir, "class directory has no images")
            continue
        boxes = {}
        bpath = cdir / f"{w}_boxes.txt"
        if bpath.is_file():
            for j, line in enumerate(_read_lines(bpath), 1):
                f = line.split()
                if f:
                    boxes[f[0]] = _parse_box(f[1:], bpath, j)
        else:
            plan.notes.append(f"train/{w}: no {w}_boxes.txt (its boxes are -1)")
        base = str(img_dir)
        items += [Item(f"{base}/{n}", n, index[w], boxes.get(n)) for n in files]
    plan.splits["train"] = items
    plan.has_boxes["train"] = True

    # val
    val_dir = src / "val"
    if val_dir.is_dir():
        ann = val_dir / "val_annotations.txt"
        if not ann.is_file():
            raise PackError(f"{ann}: missing (val/images needs its labels)")
        for p in sorted(val_dir.iterdir()):
            if p.name not in ("images", "val_annotations.txt"):
                skips.add(p, _stray_reason(p))
        img_dir = val_dir / "images"
        present = {n: img_dir / n for n in _list_names(img_dir, skips)}
        labelled = {}
        for j, line in enumerate(_read_lines(ann), 1):
            f = line.split("\t") if "\t" in line else line.split()
            f = [x.strip() for x in f]
            if not any(f):
                continue
            if len(f) < 2:
                raise PackError(f"{ann}:{j}: expected 'file<TAB>wnid[<TAB>x0 y0 x1 y1]', got {line!r}")
            name, w = f[0], f[1]
            p = img_dir / name
            if name in labelled:
                skips.add(p, "duplicate val annotation", f"{ann.name} line {j}")
            elif w not in index:
                skips.add(p, "val annotation names a wnid not in wnids.txt", f"{w}, {ann.name} line {j}")
                present.pop(name, None)
            elif name not in present:
                if (img_dir / name).exists():
                    continue  # already recorded as a skip (stray / not an image)
                skips.add(p, "val annotation names a missing file", f"{ann.name} line {j}")
            else:
                labelled[name] = Item(str(p), name, index[w], _parse_box(f[2:], ann, j))
        for name, p in present.items():
            if name not in labelled:
                skips.add(p, "val image has no annotation")
        plan.splits["val"] = [labelled[n] for n in sorted(labelled, key=_natural_key)]
        plan.has_boxes["val"] = True
    test_dir = src / "test"
    if test_dir.is_dir():
        for p in sorted(test_dir.iterdir()):
            if p.name != "images":
                skips.add(p, _stray_reason(p))
        img_dir = test_dir / "images"
        base = str(img_dir)
        plan.splits["test"] = [Item(f"{base}/{n}", n) for n in _list_names(img_dir, skips)]
        plan.has_boxes["test"] = False
    return plan


def _class_dirs(root: Path, skips: _Skips) -> dict:
    """class name -> list of image paths for an ImageFolder root (empty classes are skips)."""
    out = {}
    for d in sorted(root.iterdir(), key=lambda p: p.name):
        if not d.is_dir():
            skips.add(d, _stray_reason(d))
            continue
        if d.name.startswith("."):
            skips.add(d, "hidden directory")
            continue
        files = _list_images(d, skips)
        if not files:
            skips.add(d, "class directory has no images")
            continue
        out[d.name] = files
    return out


def scan_image_folder(src: Path, skips: _Skips, val_fraction: float, seed: int) -> Plan:
    """Plan a pack of ``root/<class>/*`` (or ``root/{train,val}/<class>/*``); classes sorted."""
    split_dirs = {s: src / s for s in ("train", "val", "test") if (src / s).is_dir()}
    predefined = "train" in split_dirs and any(
        d.is_dir() and any(_is_image_name(f.name) for f in d.iterdir() if f.is_file())
        for d in (src / "train").iterdir())
    if predefined:
        for p in src.iterdir():
            if p.name not in split_dirs:
                skips.add(p, _stray_reason(p))
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
            files = _list_images(split_dirs["test"], skips)
            plan.splits["test"] = [Item(str(p), p.relative_to(split_dirs["test"]).as_posix()) for p in files]
    else:
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
    for s in plan.splits:
        plan.has_boxes[s] = False
    return plan


def scan(src: Path, skips: _Skips, val_fraction: float = 0.0, seed: int = 0) -> Plan:
    """Recognise the layout of ``src`` and list what to pack (no decoding yet)."""
    if not src.exists():
        raise PackError(f"{src}: does not exist")
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


# ---------------------------------------------------------------------------------------- decode
_MEMMAP = {}


def _open_rows(npy: str) -> np.ndarray:
    arr = _MEMMAP.get(npy)
    if arr is None:
        _MEMMAP.clear()
        arr = _MEMMAP[npy] = np.load(npy, mmap_mode="r+")
    return arr


def _decode_one(arr, row: int, path: str, size: int):
    """Decode ``path`` into ``arr[row]``. Returns (row, error, mode, (w, h), needs_reencode)."""
    from PIL import Image

    try:
        if os.path.getsize(path) == 0:
            return row, "zero-byte file", None, None, False
        with Image.open(path) as im:
            fmt, mode, (w, h) = im.format, im.mode, im.size
            im.load()
            rgb = im if mode == "RGB" else im.convert("RGB")  # convert("RGB") of RGB is a copy
            if (w, h) == (size, size):
                arr[row] = np.asarray(rgb, dtype=np.uint8)
    except Image.DecompressionBombError as e:
        return row, "image too large", str(e).split("\n")[0][:200], None, False
    except (OSError, SyntaxError, ValueError, Image.UnidentifiedImageError) as e:
        msg = str(e).split("\n")[0][:200]
        return row, "corrupt or truncated image", msg, None, False
    resized = (w, h) != (size, size)
    if resized:
        m = min(w, h)
        left, top = (w - m) // 2, (h - m) // 2
        rgb = rgb.crop((left, top, left + m, top + m)).resize((size, size), Image.Resampling.BICUBIC)
        arr[row] = np.asarray(rgb, dtype=np.uint8)
    # WebDataset shards keep the source bytes only when a GPU JPEG decoder reproduces this row.
    reencode = resized or fmt != "JPEG" or mode not in ("RGB", "L")
    return row, None, mode, (w, h), reencode


def _decode_task(args):
    npy, size, rows, paths = args
    arr = _open_rows(npy)
    with warnings.catch_warnings():  # Pillow warns on odd EXIF/ICC data; the image still decodes
        warnings.simplefilter("ignore")
        out = [_decode_one(arr, r, p, size) for r, p in zip(rows, paths)]
    delay = float(os.environ.get("TINYFAST_PACK_TEST_DELAY", "0") or 0)  # see pack()
    if delay:
        time.sleep(delay)
    return out


def _pool(workers: int):
    return mp_context().Pool(workers)


# ------------------------------------------------------------------------------------------ pack
def _temp_sibling(out: Path, tag: str) -> Path:
    """A fresh private directory next to ``out``; stale ones of dead processes are removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    pat = re.compile(rf"^\.{re.escape(out.name)}\.(?:tmp|old|synth)-(\d+)-[0-9a-f]+$")
    for p in out.parent.iterdir():
        m = pat.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
    d = out.parent / f".{out.name}.{tag}-{os.getpid()}-{os.urandom(4).hex()}"
    d.mkdir()
    return d


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_out(out: Path, overwrite: bool, exist_ok: bool) -> bool:
    """Return True when ``out`` already holds a dataset to reuse (exist_ok)."""
    if out.exists() and not out.is_dir():
        raise PackError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if exist_ok and is_packed(out):
            return True
        if not overwrite:
            raise PackError(f"{out}: exists and is not empty (use --overwrite to replace it)")
    return False


def _ffcv_writer():
    try:
        from ffcv.fields import IntField, RGBImageField
        from ffcv.writer import DatasetWriter
    except ImportError as e:
        raise PackError(f"--ffcv needs the ffcv package (pip install .[ffcv]): {e}") from None
    return DatasetWriter, RGBImageField, IntField


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _map_box(box, wh, size):
    """Map an inclusive source box through the centre-crop + resize; -1s when unknown/outside."""
    if box is None or wh is None:
        return (-1, -1, -1, -1)
    w, h = wh
    if (w, h) == (size, size):
        return tuple(min(max(int(v), 0), size - 1) for v in box)
    m = min(w, h)
    left, top, s = (w - m) // 2, (h - m) // 2, size / m
    x0, y0 = (box[0] - left) * s, (box[1] - top) * s
    x1, y1 = (box[2] + 1 - left) * s - 1, (box[3] + 1 - top) * s - 1
    if x1 < 0 or y1 < 0 or x0 > size - 1 or y0 > size - 1:
        return (-1, -1, -1, -1)
    return tuple(int(round(np.clip(v, 0, size - 1))) for v in (x0, y0, x1, y1))


def _mean_std(images: np.ndarray, chunk: int = 1024):
    """Per-channel mean and std in [0, 1] units, exact (integer sums).

    Sums run over whole images as rows (axis 0 of an (n, H*W*3) view): ~10x faster than
    reducing an (n*H*W, 3) view, whose 3-wide inner axis defeats vectorisation.
    """
    n, h, w, _ = images.shape
    s = np.zeros(h * w * 3, np.int64)
    sq = np.zeros(h * w * 3, np.int64)
    for i in range(0, n, chunk):
        x = np.asarray(images[i:i + chunk]).reshape(-1, h * w * 3)
        s += x.sum(0, dtype=np.int64)
        x = x.astype(np.uint16)
        x *= x  # 255**2 fits in uint16
        sq += x.sum(0, dtype=np.int64)
    cnt = max(1, n * h * w)
    mean = s.reshape(-1, 3).sum(0) / cnt
    var = np.maximum(sq.reshape(-1, 3).sum(0) / cnt - mean * mean, 0.0)
    return (mean / 255.0).tolist(), (np.sqrt(var) / 255.0).tolist()


def _write_shards(split_dir: Path, split: str, items, rows_src, images, labels, reencode, shard_size,
                  progress=False):
    """WebDataset tar shards ``<split>-%05d.tar`` with ``%08d.jpg`` + ``%08d.cls`` per row.

    The key is the row index in ``images.npy``; ``.cls`` holds the label in ASCII (-1 for test).
    ``.jpg`` holds the source file's bytes when it is a JPEG that decodes to the packed row (RGB or
    grayscale, already ``size`` square); otherwise the packed row re-encoded (quality 95, 4:4:4).
    """
    from PIL import Image
    from tqdm.auto import tqdm

    jdir = split_dir / "jpeg"
    jdir.mkdir()
    names, n = [], len(rows_src)
    bar = tqdm(total=n, unit="img", desc=f"{split} shards", leave=False, disable=not progress)
    for k, start in enumerate(range(0, n, shard_size)):
        name = f"{split}-{k:05d}.tar"
        with tarfile.open(jdir / name, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(start, min(n, start + shard_size)):
                if reencode[i]:
                    buf = io.BytesIO()
                    Image.fromarray(np.asarray(images[i])).save(buf, "JPEG", quality=SHARD_JPEG_QUALITY,
                                                                subsampling=0)
                    data = buf.getvalue()
                else:
                    with open(items[rows_src[i]].path, "rb") as f:
                        data = f.read()
                key = f"{i:08d}"
                lab = str(int(labels[i]) if labels is not None else -1).encode()
                for member, payload in ((f"{key}.jpg", data), (f"{key}.cls", lab)):
                    ti = tarfile.TarInfo(member)
                    ti.size, ti.mtime, ti.mode = len(payload), 0, 0o644
                    tar.addfile(ti, io.BytesIO(payload))
        bar.update(min(n, start + shard_size) - start)
        names.append(f"{split}/jpeg/{name}")
    bar.close()
    return names


class _RowsDataset:
    """Indexable (image HxWx3 uint8, label) view for FFCV's DatasetWriter."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        lab = int(self.labels[i]) if self.labels is not None else -1
        return np.ascontiguousarray(self.images[i]), lab


def _decode_split(pool, sdir: Path, items, size: int, task: int, skips: _Skips, bar):
    """Decode ``items`` into ``sdir/images.npy`` (rows of skipped files dropped).

    Returns (per-item decode results, indices of the kept items).
    """
    full = sdir / "images.full.npy"
    arr = np.lib.format.open_memmap(full, mode="w+", dtype=np.uint8, shape=(len(items), size, size, 3))
    del arr  # workers map the file themselves and write their rows by index
    tasks = [(str(full), size, list(range(i, min(i + task, len(items)))),
              [it.path for it in items[i:i + task]]) for i in range(0, len(items), task)]
    results = [None] * len(items)
    for res in (pool.imap_unordered(_decode_task, tasks) if pool else map(_decode_task, tasks)):
        for r in res:
            results[r[0]] = r
            if r[1] is not None:
                skips.add(items[r[0]].path, r[1], r[3] if isinstance(r[3], str) else "")
        if bar:
            bar.update(len(res))
    _MEMMAP.clear()
    keep = [i for i, r in enumerate(results) if r[1] is None]
    final = sdir / "images.npy"
    if len(keep) == len(items):
        os.replace(full, final)
    else:  # compact: drop the rows of skipped files
        src = np.load(full, mmap_mode="r")
        dst = np.lib.format.open_memmap(final, mode="w+", dtype=np.uint8, shape=(len(keep), size, size, 3))
        kk = np.asarray(keep, np.int64)
        for j in range(0, len(kk), 4096):
            dst[j:j + 4096] = src[kk[j:j + 4096]]
        dst.flush()
        del dst, src
        full.unlink()
    return results, keep


def _write_ffcv(path: Path, images, labels, size: int, workers: int) -> None:
    """``<split>.beton`` by FFCV's own writer; 'raw' mode keeps the packed pixels exactly."""
    DatasetWriter, RGBImageField, IntField = _ffcv_writer()
    writer = DatasetWriter(str(path), {"image": RGBImageField(write_mode="raw", max_resolution=size),
                                       "label": IntField()}, num_workers=workers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        writer.from_indexed_dataset(_RowsDataset(images, labels))


def pack(src, out, *, size: int = 64, val_fraction: float = 0.0, seed: int = 0,
         jpeg_shards: bool = False, shard_size: int = 10000, ffcv: bool = False, strict: bool = False,
         overwrite: bool = False, exist_ok: bool = False, workers: int | None = None,
         progress: bool = True, source_info: dict | None = None, log=print) -> dict:
    """Pack the dataset at ``src`` into ``out`` and return the manifest.

    ``exist_ok``: if ``out`` already holds a valid packed dataset (or one appears there while this
    call works, e.g. from a concurrent process), use it and return its manifest.
    Raises :class:`PackError` (one line naming the file) on input that cannot be packed.
    """
    t0 = time.time()
    src, out = Path(src).absolute(), Path(out).absolute()
    if size < 1:
        raise PackError(f"--size must be positive, got {size}")
    if not 0.0 <= val_fraction < 1.0:
        raise PackError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if shard_size < 1:
        raise PackError(f"--shard-size must be positive, got {shard_size}")
    if _check_out(out, overwrite, exist_ok):
        return read_manifest(out)
    if ffcv:
        _ffcv_writer()
    if src == out or out in src.parents:
        raise PackError(f"{out}: --out must not be SRC or contain it (packing would replace the source)")
    skips = _Skips(src, strict)
    plan = scan(src, skips, val_fraction, seed)
    if not plan.splits.get("train"):
        raise PackError(f"{src}: not a dataset (no training images found)")
    workers = max(1, workers or cpu_count())
    # Test hook: TINYFAST_PACK_TEST_DELAY makes each decode task (then of 4 images) sleep, so a
    # test can interrupt a pack of a tiny tree part-way.
    task = 4 if os.environ.get("TINYFAST_PACK_TEST_DELAY") else _TASK
    total = sum(len(v) for v in plan.splits.values())
    timings = {"scan": time.time() - t0, "decode": 0.0, "shards": 0.0, "ffcv": 0.0}
    stats = {"modes": {}, "resized": [], "reencoded": 0, "mean_std": None}
    tmp = _temp_sibling(out, "tmp")
    pool = bar = None
    try:
        if total >= _INLINE_BELOW and workers > 1:
            pool = _pool(workers)
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="img", desc="decode", dynamic_ncols=True, smoothing=0.1)
        split_meta = {}
        for split, items in plan.splits.items():
            if not items:
                continue
            sdir = tmp / split
            sdir.mkdir()
            t = time.time()
            results, keep = _decode_split(pool, sdir, items, size, task, skips, bar)
            timings["decode"] += time.time() - t
            if not keep:
                shutil.rmtree(sdir)
                plan.notes.append(f"{split}: no usable images")
                continue
            split_meta[split] = _write_split(sdir, split, items, results, keep, plan, size, stats)
            images = np.load(sdir / "images.npy", mmap_mode="r")
            labels = np.load(sdir / "labels.npy") if split_meta[split]["labelled"] else None
            if split == "train":
                stats["mean_std"] = _mean_std(images)
            t = time.time()
            if jpeg_shards:
                rflags = [results[i][4] for i in keep]
                split_meta[split]["jpeg_shards"] = _write_shards(
                    sdir, split, items, keep, images, labels, rflags, shard_size, progress)
                stats["reencoded"] += sum(rflags)
            timings["shards"] += time.time() - t
            t = time.time()
            if ffcv:
                _write_ffcv(tmp / f"{split}.beton", images, labels, size, workers)
                split_meta[split]["beton"] = f"{split}.beton"
            timings["ffcv"] += time.time() - t
            del images
        if bar:
            bar.close()
        if pool:
            pool.close()
            pool.join()
            pool = None
        if "train" not in split_meta:
            raise PackError(f"{src}: no usable training images")
        t = time.time()
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        hashes = {rel: {"bytes": (tmp / rel).stat().st_size, "sha256": sha256_file(tmp / rel)} for rel in files}
        timings["hash"] = time.time() - t
        manifest = _build_manifest(src, plan, skips, split_meta, stats, hashes, size, source_info,
                                   dict(val_fraction=val_fraction, seed=seed, strict=strict,
                                        jpeg_shards=jpeg_shards, shard_size=shard_size, ffcv=ffcv))
        _write_json(tmp / MANIFEST, manifest)
        _install(tmp, out, overwrite, exist_ok)
    except BaseException:
        if bar:
            bar.close()
        if pool:
            pool.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest = read_manifest(out)
    if log:
        _summary(manifest, out, time.time() - t0, workers, timings, log)
    return manifest


def _write_split(sdir: Path, split: str, items, results, keep, plan: Plan, size: int, stats: dict) -> dict:
    """labels.npy, ids.txt and boxes.npy of one split; tallies colour modes and resizes."""
    for i in keep:
        mode, wh = results[i][2], results[i][3]
        if mode != "RGB":
            stats["modes"][mode] = stats["modes"].get(mode, 0) + 1
        if wh != (size, size):
            stats["resized"].append(items[i].path)
    labelled = split != "test"
    if labelled:
        np.save(sdir / "labels.npy", np.asarray([items[i].label for i in keep], np.int64))
    (sdir / "ids.txt").write_text("".join(items[i].id + "\n" for i in keep), encoding="utf-8")
    meta = {"count": len(keep), "labelled": labelled}
    if plan.has_boxes.get(split):
        boxes = np.asarray([_map_box(items[i].box, results[i][3], size) for i in keep], np.int16)
        np.save(sdir / "boxes.npy", boxes)
        meta["boxes_missing"] = int((boxes[:, 0] < 0).sum())
    return meta


def _build_manifest(src: Path, plan: Plan, skips: _Skips, split_meta, stats, hashes, size, source_info,
                    options) -> dict:
    from tinyfast import __version__

    by_reason = {}
    for s in skips.items:
        by_reason[s["reason"]] = by_reason.get(s["reason"], 0) + 1
    resized = [str(Path(p).relative_to(src).as_posix()) for p in stats["resized"]]
    mean, std = stats["mean_std"]
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "tinyfast": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": dict({"path": str(src), "layout": plan.layout}, **(source_info or {})),
        "size": size,
        "resize": RESIZE_FILTER,
        "options": options,
        "classes": [{"wnid": c, "words": w} for c, w in zip(plan.classes, plan.words)],
        "splits": split_meta,
        "mean": mean,
        "std": std,
        "converted_to_rgb": dict(sorted(stats["modes"].items())),
        "resized": {"count": len(resized), "examples": resized[:50]},
        "jpeg_reencoded": stats["reencoded"],
        "skipped_count": by_reason,
        "skipped": skips.items,
        "notes": plan.notes,
        "files": hashes,
    }


def _write_json(path: Path, obj) -> None:
    # No temp file + rename here: ``path`` is inside the private temporary directory, which
    # _install renames into place only once everything in it is complete. fsync so that the
    # manifest, written last, is on disk before that rename.
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _install(tmp: Path, out: Path, overwrite: bool, exist_ok: bool) -> None:
    """Rename the finished ``tmp`` to ``out`` (atomic; replaces an empty or, with overwrite, any dir)."""
    try:
        os.rename(tmp, out)
        return
    except OSError:
        if not out.exists():
            raise
    if exist_ok and is_packed(out):  # another process finished first: use its result
        shutil.rmtree(tmp, ignore_errors=True)
        return
    if not overwrite:
        raise PackError(f"{out}: appeared and is not empty while packing (use --overwrite)")
    old = out.parent / f".{out.name}.old-{os.getpid()}-{os.urandom(4).hex()}"
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _summary(man: dict, out: Path, seconds: float, workers: int, timings: dict, log) -> None:
    n = sum(s["count"] for s in man["splits"].values())
    counts = "  ".join(f"{k} {v['count']}" for k, v in man["splits"].items())
    log(f"packed {man['source']['path']} -> {out}: {n} images in {seconds:.1f} s "
        f"({n / max(seconds, 1e-9):.0f} img/s, {workers} workers)")
    log(f"  classes {len(man['classes'])}  {counts}  size {man['size']}x{man['size']}")
    conv = ", ".join(f"{k} {v}" for k, v in man["converted_to_rgb"].items()) or "none"
    log(f"  converted to RGB: {conv}; resized: {man['resized']['count']}")
    sk = man["skipped_count"]
    if sk:
        log(f"  skipped {sum(sk.values())}: " + "; ".join(f"{v} {k}" for k, v in sk.items())
            + f" (listed in {out / MANIFEST})")
    else:
        log("  skipped: none")
    if man["jpeg_reencoded"]:
        log(f"  jpeg shards: {man['jpeg_reencoded']} images re-encoded (not plain RGB/gray JPEG of the packed size)")
    log("  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if v >= 0.05 or k == "decode")
        + f" (decode {n / max(timings['decode'], 1e-9):.0f} img/s)")
    total = sum(f["bytes"] for f in man["files"].values())
    log(f"  output {_fmt_bytes(total)} in {len(man['files'])} files; mean "
        + " ".join(f"{v:.4f}" for v in man["mean"]) + "  std " + " ".join(f"{v:.4f}" for v in man["std"]))


def pack_synthetic(out, classes: int = 200, per_class: int = 500, val_per_class: int = 50,
                   test_count: int | None = None, size: int = 64, seed: int = 0, tree=None,
                   exist_ok: bool = False, overwrite: bool = False, progress: bool = True,
                   workers: int | None = None, log=print, **pack_kw) -> dict:
    """Generate the synthetic Tiny-ImageNet-shaped JPEG tree and pack it into ``out``.

    The tree is written to ``tree`` (kept) or to a temporary sibling of ``out`` (deleted).
    """
    from tinyfast import synthetic

    # Checked before anything is generated: bad sizes would otherwise fail deep in the renderer.
    for name, value, least in (("--classes", classes, 1), ("--per-class", per_class, 1),
                               ("--val-per-class", val_per_class, 0), ("--size", size, 1),
                               ("--test-count", 0 if test_count is None else test_count, 0)):
        if value < least:
            raise PackError(f"{name} must be >= {least}, got {value}")
    out = Path(out).absolute()
    if _check_out(out, overwrite, exist_ok):
        return read_manifest(out)
    work = None
    if tree is None:
        work = _temp_sibling(out, "synth")
        tree = work / "tiny-synthetic"
    else:
        tree = Path(tree)
        if tree.exists() and any(tree.iterdir()):
            raise PackError(f"{tree}: --tree exists and is not empty")
    try:
        t0 = time.time()
        synthetic.write_tree(tree, classes=classes, per_class=per_class, val_per_class=val_per_class,
                             test_count=test_count, size=size, seed=seed, workers=workers, progress=progress)
        if log:
            log(f"synthetic tree ({classes} classes x {per_class} + {val_per_class} val) written in "
                f"{time.time() - t0:.1f} s")
        info = {"layout": "synthetic", "synthetic": dict(classes=classes, per_class=per_class,
                val_per_class=val_per_class, test_count=test_count, size=size, seed=seed)}
        if work is not None:
            info["path"] = "synthetic (generated, not kept)"
        return pack(tree, out, size=size, seed=seed, exist_ok=exist_ok, overwrite=overwrite,
                    progress=progress, workers=workers, source_info=info, log=log, **pack_kw)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The ``python -m tinyfast.pack`` argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m tinyfast.pack",
        description="Pack Tiny ImageNet (or an ImageFolder, or a built-in synthetic set) into "
                    "memory-mappable .npy arrays with a verified manifest.")
    p.add_argument("src", nargs="?", help="tiny-imagenet-200 directory or ImageFolder root")
    p.add_argument("--out", help="output directory (must not exist or be empty, unless --overwrite)")
    p.add_argument("--size", type=int, default=64, help="output side in pixels (default 64)")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="ImageFolder only: fraction of each class moved to val (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the val split and of --synthetic")
    p.add_argument("--jpeg-shards", action="store_true",
                   help="also write WebDataset tar shards of the JPEG bytes (for GPU decode)")
    p.add_argument("--shard-size", type=int, default=10000, help="images per shard (default 10000)")
    p.add_argument("--ffcv", action="store_true", help="also write <split>.beton with FFCV's writer")
    p.add_argument("--strict", action="store_true", help="make every skipped file an error")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--workers", type=int, default=None, help="decode processes (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--verify", metavar="DIR", help="re-check every sha256 of a packed dataset and exit")
    g = p.add_argument_group("synthetic data")
    g.add_argument("--synthetic", action="store_true", help="generate the built-in synthetic set and pack it")
    g.add_argument("--classes", type=int, default=200)
    g.add_argument("--per-class", type=int, default=500, help="train images per class")
    g.add_argument("--val-per-class", type=int, default=50)
    g.add_argument("--test-count", type=int, default=None, help="default classes x val-per-class")
    g.add_argument("--tree", help="keep the generated JPEG tree in this directory")
    return p


def main(argv=None) -> int:
    """CLI entry point; returns the exit status (2 with one ``error: ...`` line on bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    log = (lambda *a: None) if args.quiet else print
    try:
        if args.verify:
            if args.src or args.out or args.synthetic:
                parser.error("--verify takes only DIR")
            t0 = time.time()
            man = verify(args.verify)
            n = sum(s["count"] for s in man["splits"].values())
            log(f"ok: {args.verify}: {len(man['files'])} files match their sha256 ({n} images, "
                f"{time.time() - t0:.1f} s)")
            return 0
        if not args.out:
            parser.error("--out is required")
        if args.synthetic:
            if args.src:
                parser.error("--synthetic takes no SRC")
            for name in ("classes", "per_class", "val_per_class"):
                if getattr(args, name) < (1 if name != "val_per_class" else 0):
                    parser.error(f"--{name.replace('_', '-')} too small")
            pack_synthetic(args.out, classes=args.classes, per_class=args.per_class,
                           val_per_class=args.val_per_class, test_count=args.test_count, size=args.size,
                           seed=args.seed, tree=args.tree, overwrite=args.overwrite,
                           progress=not args.quiet, workers=args.workers, log=log,
                           jpeg_shards=args.jpeg_shards, shard_size=args.shard_size, ffcv=args.ffcv,
                           strict=args.strict)
            return 0
        if not args.src:
            parser.error("SRC is required (or --synthetic, or --verify DIR)")
        pack(args.src, args.out, size=args.size, val_fraction=args.val_fraction, seed=args.seed,
             jpeg_shards=args.jpeg_shards, shard_size=args.shard_size, ffcv=args.ffcv, strict=args.strict,
             overwrite=args.overwrite, workers=args.workers, progress=not args.quiet, log=log)
        return 0
    except PackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written to --out", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

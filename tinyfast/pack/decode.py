"""Decoding: source images -> rows of a memory-mapped ``images.npy``, inline or in a worker pool."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np

from tinyfast._util import mp_context
from tinyfast.pack.plan import Skips

TASK = 128  # images per decode task: large enough to amortise IPC, small enough for a smooth bar
INLINE_BELOW = 600  # fewer images than this: decode in-process (pool start-up costs more)
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
    delay = test_delay()
    if delay:
        time.sleep(delay)
    return out


def test_delay() -> float:
    """Seconds each decode task sleeps (``TINYFAST_PACK_TEST_DELAY``): lets a test interrupt a pack."""
    return float(os.environ.get("TINYFAST_PACK_TEST_DELAY", "0") or 0)


def make_pool(workers: int):
    """A pool of ``workers`` decode processes."""
    return mp_context().Pool(workers)


def map_box(box, wh, size):
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


def decode_split(pool, sdir: Path, items, size: int, task: int, skips: Skips, bar):
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

"""Decoding: source images -> rows of a memory-mapped ``images.npy``, inline or in a worker pool.

The output file is allocated in full (``posix_fallocate``) before any row is written, so a full
disk is an ``ENOSPC`` error up front and never a SIGBUS in a worker writing to an unbacked page.
Workers run in a :class:`concurrent.futures.ProcessPoolExecutor`: one that dies breaks the pool
and the pack ends with an error instead of waiting forever for its task.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tinyfast._util import mp_context, worker_init
from tinyfast.data import PackError
from tinyfast.pack.plan import Skips

TASK = 128  # images per decode task: large enough to amortise IPC, small enough for a smooth bar
INLINE_BELOW = 600  # fewer images than this: decode in-process (pool start-up costs more)
_MEMMAP = {}


class Decoded(NamedTuple):
    """What decoding one source image gave: ``error`` (a skip reason) or its mode and size."""

    row: int
    error: str | None = None
    detail: str = ""
    mode: str | None = None
    wh: tuple | None = None
    reencode: bool = False  # the shards must hold a re-encode (the source bytes differ from the row)
    digest: bytes = b""  # of the bytes decoded: the shard writer refuses a file changed since


def digest_of(data: bytes) -> bytes:
    """The fingerprint of a source file's bytes (BLAKE2b, 128 bits)."""
    return hashlib.blake2b(data, digest_size=16).digest()


def _open_rows(npy: str) -> np.ndarray:
    arr = _MEMMAP.get(npy)
    if arr is None:
        _MEMMAP.clear()
        arr = _MEMMAP[npy] = np.load(npy, mmap_mode="r+")
    return arr


def _first_line(e: BaseException) -> str:
    return str(e).split("\n")[0][:200]


VANISHED = "file vanished after the scan"


def _failure(row: int, e: BaseException) -> Decoded:
    """The skip reason of an exception raised while reading or decoding a file."""
    from PIL import Image

    if isinstance(e, Image.DecompressionBombError):
        reason = "image too large"
    elif isinstance(e, PermissionError):
        reason = "permission denied"
    elif isinstance(e, FileNotFoundError):
        reason = VANISHED
    elif isinstance(e, OSError) and e.errno == errno.ELOOP:
        reason = "symbolic link loop"
    elif isinstance(e, OSError) and e.errno is not None:
        reason = "read error"
        return Decoded(row, reason, e.strerror or _first_line(e))
    elif isinstance(e, Image.UnidentifiedImageError):
        reason = "not a recognised image format"
    else:
        reason = "corrupt or truncated image"
    return Decoded(row, reason, _first_line(e))


def _gray_to_rgb(gray: np.ndarray):
    from PIL import Image

    return Image.fromarray(gray, "L").convert("RGB")


def to_rgb(im):
    """``(RGB image, None)``, or ``(None, skip reason)`` for a mode that cannot be shown as 8-bit RGB.

    16-bit modes (``I;16*``, and ``I``, which is how Pillow holds 16-bit PNG and TIFF data) are
    rescaled from 0..65535; float images (``F``) from [0, 1]. Pillow's own ``convert("RGB")``
    clips them instead (a 16-bit image turns white, a float one black). Other modes convert with
    Pillow; ``LAB`` (whose conversion would copy channels, not colours) and modes Pillow cannot
    convert are skipped.
    """
    mode = im.mode
    if mode == "RGB":
        return im, None
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im).astype(np.int64)
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 65535:
            return None, f"32-bit integer image with values outside 0..65535 ({lo}..{hi})"
        return _gray_to_rgb(((a * 255 + 32767) // 65535).astype(np.uint8)), None
    if mode == "F":
        a = np.asarray(im, np.float64)
        if not np.isfinite(a).all():
            return None, "float image with NaN or infinite values"
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            return None, f"float image with values outside [0, 1] ({lo:.4g}..{hi:.4g})"
        return _gray_to_rgb(np.rint(a * 255.0).astype(np.uint8)), None
    if mode == "LAB":
        return None, "unsupported colour mode LAB"
    try:
        return im.convert("RGB"), None
    except ValueError:
        return None, f"unsupported colour mode {mode}"


def _decode_one(arr, row: int, path: str, size: int) -> Decoded:
    """Decode ``path`` into ``arr[row]``."""
    from PIL import Image

    try:
        with open(path, "rb") as f:  # read once: what is decoded is what the shards get
            data = f.read()
        if not data:
            return Decoded(row, "zero-byte file")
        with Image.open(io.BytesIO(data)) as im:
            fmt, mode, (w, h) = im.format, im.mode, im.size
            im.load()
            rgb, why = to_rgb(im)
            if why:
                return Decoded(row, why)
            if (w, h) == (size, size):
                arr[row] = np.asarray(rgb, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return _failure(row, e)
    resized = (w, h) != (size, size)
    if resized:
        m = min(w, h)
        left, top = (w - m) // 2, (h - m) // 2
        rgb = rgb.crop((left, top, left + m, top + m)).resize((size, size), Image.Resampling.BICUBIC)
        arr[row] = np.asarray(rgb, dtype=np.uint8)
    # WebDataset shards keep the source bytes only when a GPU JPEG decoder reproduces this row.
    reencode = resized or fmt != "JPEG" or mode not in ("RGB", "L")
    return Decoded(row, None, "", mode, (w, h), reencode, digest_of(data))


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


def make_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` decode processes that end with this one (see :func:`worker_init`)."""
    return ProcessPoolExecutor(workers, mp_context=mp_context(), initializer=worker_init)


def close_pool(pool: ProcessPoolExecutor) -> None:
    """Stop the pool: queued tasks are dropped, running ones (a fraction of a second) finish."""
    pool.shutdown(wait=True, cancel_futures=True)


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


def allocated_npy(path: Path, shape) -> np.memmap:
    """A uint8 ``.npy`` memmap of ``shape`` whose blocks are all allocated (ENOSPC raised here)."""
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=tuple(shape))
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # no fallocate here: best effort
            raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        os.close(fd)
    return arr


def _results(pool, tasks):
    if pool is None:
        yield from map(_decode_task, tasks)
        return
    try:
        yield from pool.map(_decode_task, tasks)
    except BrokenProcessPool:
        raise PackError("a decode worker died (killed, or out of memory); nothing was written") from None


def decode_split(pool, sdir: Path, items, size: int, task: int, skips: Skips, bar):
    """Decode ``items`` into ``sdir/images.npy`` (rows of skipped files dropped).

    Returns (per-item :class:`Decoded`, indices of the kept items).
    """
    full = sdir / "images.full.npy"
    allocated_npy(full, (len(items), size, size, 3))  # allocated here; workers map it themselves
    tasks = [(str(full), size, list(range(i, min(i + task, len(items)))),
              [it.path for it in items[i:i + task]]) for i in range(0, len(items), task)]
    results = [None] * len(items)
    for res in _results(pool, tasks):
        for r in res:
            results[r.row] = r
            if r.error == VANISHED:  # the source changes under the pack: not a dataset to install
                raise PackError(f"{items[r.row].path}: deleted during the pack (listed by its scan); "
                                "nothing was written; pack again once SRC is complete")
            if r.error is not None:
                skips.add(items[r.row].path, r.error, r.detail)
        if bar:
            bar.update(len(res))
    _MEMMAP.clear()
    keep = [i for i, r in enumerate(results) if r.error is None]
    final = sdir / "images.npy"
    if len(keep) == len(items):
        os.replace(full, final)
    else:  # compact: drop the rows of skipped files
        src = np.load(full, mmap_mode="r")
        dst = allocated_npy(final, (len(keep), size, size, 3))
        kk = np.asarray(keep, np.int64)
        for j in range(0, len(kk), 4096):
            dst[j:j + 4096] = src[kk[j:j + 4096]]
        dst.flush()
        del dst, src
        full.unlink()
    return results, keep

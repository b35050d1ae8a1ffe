"""``pack()``: scan -> decode -> writers -> hashes + manifest -> rename into place."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyfast._util import close_bar, cpu_count
from tinyfast.data import MANIFEST, PackError, read_manifest, record_verified, sha256_file
from tinyfast.pack import decode
from tinyfast.pack.manifest import build_manifest, summary, write_json
from tinyfast.pack.output import check_out, install, os_error, raise_if_signalled, temp_sibling
from tinyfast.pack.plan import Plan, Skips
from tinyfast.pack.sources import apply_limit, scan
from tinyfast.pack.write_ffcv import ffcv_writer, write_ffcv
from tinyfast.pack.write_npy import mean_std, write_arrays
from tinyfast.pack.write_shards import write_shards
from tinyfast.progress import progress


@dataclass(frozen=True)
class Options:
    """What a pack writes: the flags of ``python -m tinyfast.pack`` that shape the output."""

    size: int = 64
    val_fraction: float = 0.0
    seed: int = 0
    jpeg_shards: bool = False
    shard_size: int = 10000
    ffcv: bool = False
    strict: bool = False
    limit: int | None = None

    def check(self) -> None:
        """Raise :class:`PackError` naming the first flag out of range."""
        if self.size < 1:
            raise PackError(f"--size must be positive, got {self.size}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise PackError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.shard_size < 1:
            raise PackError(f"--shard-size must be positive, got {self.shard_size}")
        if self.limit is not None and self.limit < 1:
            raise PackError(f"--limit must be positive, got {self.limit}")

    def recorded(self) -> dict:
        """The options as the manifest records them."""
        return dict(val_fraction=self.val_fraction, seed=self.seed, strict=self.strict,
                    jpeg_shards=self.jpeg_shards, shard_size=self.shard_size, ffcv=self.ffcv, limit=self.limit)


def pack(src, out, *, size: int = 64, val_fraction: float = 0.0, seed: int = 0,
         jpeg_shards: bool = False, shard_size: int = 10000, ffcv: bool = False, strict: bool = False,
         overwrite: bool = False, exist_ok: bool = False, workers: int | None = None,
         progress: bool = True, source_info: dict | None = None, log=print, limit: int | None = None,
         keep_source_as: str | None = None) -> dict:
    """Pack the dataset at ``src`` into ``out`` and return the manifest.

    ``exist_ok``: if ``out`` already holds a valid packed dataset (or one appears there while this
    call works, e.g. from a concurrent process), use it and return its manifest.
    ``limit``: at most this many images per class and split (``--limit``).
    ``keep_source_as``: move ``src`` itself into the dataset under this name, recorded as its
    source (for a generated tree that is to be kept with its pack).
    Raises :class:`PackError` (one line naming the file) on input that cannot be packed.
    """
    t0 = time.time()
    src, out = Path(src).absolute(), Path(out).absolute()
    opts = Options(size=size, val_fraction=val_fraction, seed=seed, jpeg_shards=jpeg_shards,
                   shard_size=shard_size, ffcv=ffcv, strict=strict, limit=limit)
    opts.check()
    if workers is not None and workers < 0:
        raise PackError(f"--workers must be >= 0 (0: all cores), got {workers}")
    if check_out(out, overwrite, exist_ok):
        return read_manifest(out)
    if ffcv:
        ffcv_writer()
        raise_if_signalled()  # FFCV's import compiles with numba, whose callbacks drop a KeyboardInterrupt
    # a symbolic link to SRC (or SRC given as one) is SRC; realpath, unlike resolve(), takes a link loop
    real_src, real_out = Path(os.path.realpath(src)), Path(os.path.realpath(out))
    if real_src == real_out or real_out in real_src.parents:
        raise PackError(f"{out}: --out must not be SRC or contain it (packing would replace the source)")
    skips = Skips(src, strict)
    try:
        plan = scan(src, skips, val_fraction, seed)
    except OSError as e:
        raise PackError(f"{e.filename or src}: cannot read ({e.strerror or e})") from None
    if not plan.splits.get("train"):
        raise PackError(f"{src}: not a dataset (no training images found)")
    apply_limit(plan, limit)
    if keep_source_as:
        source_info = dict(source_info or {}, path=str(out / keep_source_as))
    job = _Job(src, plan, skips, opts, max(1, workers or cpu_count()), progress)
    job.keep_source_as = keep_source_as
    job.timings["scan"] = time.time() - t0
    tmp = temp_sibling(out, "tmp")
    try:
        job.run(tmp, source_info)
        ours = install(tmp, out, overwrite, exist_ok)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise os_error(e, out.parent, job.bytes_needed()) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest = read_manifest(out)
    if ours:  # the files were hashed moments ago: stamp them so the first open need not re-read them
        record_verified(out, manifest)
    if log:
        summary(manifest, out, time.time() - t0, job.workers, job.timings, log)
    return manifest


class _Job:
    """One pack in progress: decodes each split into ``tmp``, runs the writers, writes the manifest."""

    def __init__(self, src: Path, plan: Plan, skips: Skips, opts: Options, workers: int, progress: bool):
        self.src, self.plan, self.skips, self.opts = src, plan, skips, opts
        self.workers, self.progress = workers, progress
        # Test hook: TINYFAST_PACK_TEST_DELAY makes each decode task (then of 4 images) sleep, so a
        # test can interrupt a pack of a tiny tree part-way.
        self.task = 4 if decode.test_delay() else decode.TASK
        self.timings = {"scan": 0.0, "decode": 0.0, "shards": 0.0, "ffcv": 0.0}
        self.stats = {"modes": {}, "resized": [], "reencoded": 0, "mean_std": None}
        self.pool = self.bar = None
        self.keep_source_as = None

    def bytes_needed(self) -> int:
        """About how many bytes the output takes (for the message of a full disk)."""
        n = sum(len(v) for v in self.plan.splits.values())
        row = self.opts.size ** 2 * 3
        need = n * (row + 64)  # images.npy; labels, ids and boxes
        if self.opts.ffcv:
            need += n * (row + 64)
        if self.opts.jpeg_shards:  # the source bytes (or a re-encode of similar size) + tar headers
            need += sum(_file_size(it.path) for v in self.plan.splits.values() for it in v) + 1536 * n
        return need

    def run(self, tmp: Path, source_info: dict | None) -> dict:
        """Write everything into ``tmp``; return the manifest written last."""
        total = sum(len(v) for v in self.plan.splits.values())
        failed = True
        try:
            # With the test delay, the pool runs whenever there are workers (a tree is then tiny).
            if (total >= decode.INLINE_BELOW or decode.test_delay()) and self.workers > 1:
                self.pool = decode.make_pool(self.workers)
            self.bar = progress(total=total, unit="img", desc="decode", disable=not self.progress, smoothing=0.1)
            split_meta = {}
            for split, items in self.plan.splits.items():
                if items:
                    raise_if_signalled()
                    meta = self._split(tmp, split, items)
                    if meta is not None:
                        split_meta[split] = meta
            failed = False
        finally:
            if self.bar:
                close_bar(self.bar, failed)
            if self.pool:
                decode.close_pool(self.pool)
        if "train" not in split_meta:
            raise PackError(f"{self.src}: no usable training images")
        return self._manifest(tmp, split_meta, source_info)

    def _split(self, tmp: Path, split: str, items) -> dict | None:
        """Decode one split and run its writers; ``None`` when none of its images is usable."""
        sdir, opts = tmp / split, self.opts
        sdir.mkdir()
        t = time.time()
        results, keep = decode.decode_split(self.pool, sdir, items, opts.size, self.task, self.skips, self.bar)
        self.timings["decode"] += time.time() - t
        if not keep:
            shutil.rmtree(sdir)
            self.plan.notes.append(f"{split}: no usable images")
            return None
        meta = write_arrays(sdir, split, items, results, keep, self.plan, opts.size, self.stats)
        images = np.load(sdir / "images.npy", mmap_mode="r")
        labels = np.load(sdir / "labels.npy") if meta["labelled"] else None
        if split == "train":
            self.stats["mean_std"] = mean_std(images)
        t = time.time()
        if opts.jpeg_shards:
            rflags = [results[i].reencode for i in keep]
            meta["jpeg_shards"] = write_shards(sdir, split, items, keep, images, labels, rflags,
                                               opts.shard_size, self.progress, [results[i].digest for i in keep])
            self.stats["reencoded"] += sum(rflags)
        self.timings["shards"] += time.time() - t
        t = time.time()
        if opts.ffcv:
            write_ffcv(tmp / f"{split}.beton", images, labels, opts.size, self.workers, self.progress)
            meta["beton"] = f"{split}.beton"
        self.timings["ffcv"] += time.time() - t
        return meta

    def _manifest(self, tmp: Path, split_meta: dict, source_info: dict | None) -> dict:
        t = time.time()
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        hashes = {rel: {"bytes": (tmp / rel).stat().st_size, "sha256": sha256_file(tmp / rel)} for rel in files}
        self.timings["hash"] = time.time() - t
        if self.keep_source_as:  # after hashing: the kept tree is not part of the verified files
            os.rename(self.src, tmp / self.keep_source_as)
        manifest = build_manifest(self.src, self.plan, self.skips, split_meta, self.stats, hashes,
                                  self.opts.size, source_info, self.opts.recorded())
        write_json(tmp / MANIFEST, manifest)
        return manifest


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0

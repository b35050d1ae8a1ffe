"""Writer: ``<split>.beton`` by FFCV's own ``DatasetWriter`` (optional dependency)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from tinyfast._util import torch_threads_kept
from tinyfast.data import PackError
from tinyfast.environment import venv_hint
from tinyfast.progress import progress


def ffcv_writer():
    try:
        with torch_threads_kept():
            from ffcv.fields import IntField, RGBImageField
            from ffcv.writer import DatasetWriter
    except ImportError as e:
        raise PackError(f"--ffcv needs the ffcv package (pip install .[ffcv]): {e}{venv_hint()}") from None
    return DatasetWriter, RGBImageField, IntField


class _RowsDataset:
    """Indexable (image HxWx3 uint8, label) view for FFCV's DatasetWriter."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        lab = int(self.labels[i]) if self.labels is not None else -1
        return np.ascontiguousarray(self.images[i]), lab


def write_ffcv(path: Path, images, labels, size: int, workers: int, show: bool = False) -> None:
    """``<split>.beton`` by FFCV's own writer; 'raw' mode keeps the packed pixels exactly.

    FFCV's writer waits for its workers' sample count to reach the total with no timeout, so a
    worker that fails on a full disk would hang the pack: the free space is checked first.
    """
    DatasetWriter, RGBImageField, IntField = ffcv_writer()
    need = len(images) * (int(np.prod(images.shape[1:])) + 256) + (1 << 20)
    free = shutil.disk_usage(path.parent).free
    if free < need:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    writer = DatasetWriter(str(path), {"image": RGBImageField(write_mode="raw", max_resolution=size),
                                       "label": IntField()}, num_workers=workers)
    with warnings.catch_warnings(), _Supervised(writer) as watch, _progress_of_ffcv(f"{path.stem} beton", show):
        warnings.simplefilter("ignore")
        writer.from_indexed_dataset(_RowsDataset(images, labels))
        watch.check()  # a signal that arrived where Python swallows exceptions (a fork hook)


@contextlib.contextmanager
def _progress_of_ffcv(desc: str, show: bool):
    """FFCV's writer draws a tqdm bar it gives no way to turn off; in a log that is a stream of
    carriage-return frames. Its bar is swapped for :func:`tinyfast.progress.progress` meanwhile."""
    import ffcv.writer as fw

    real = fw.tqdm
    fw.tqdm = lambda total=None, **kw: progress(total=total, desc=desc, unit="img", disable=not show)
    try:
        yield
    finally:
        fw.tqdm = real


_WRITING = False  # forks while true are FFCV writer workers (see _in_child)
_HOOKED = False


def _in_child() -> None:
    if _WRITING:  # Ctrl-C is the parent's to handle; the worker ends with the parent
        from tinyfast._util import worker_init
        worker_init()


class _Supervised:
    """While FFCV's writer runs: SIGINT/SIGTERM are recorded, not raised where they land (raised
    inside the at-fork hooks of the workers' start, Python prints and drops the exception, and
    the pack went on and installed its output), then raised as ``KeyboardInterrupt`` from the
    writer's wait loop (its ``sleep``, polled every 0.1 s) or right after it. The workers ignore
    SIGINT and die with this process; one that dies is an error instead of a wait forever (FFCV
    waits for their sample count with no timeout). After an interruption or error the workers
    are stopped and FFCV's shared memory is released."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, writer):
        self.writer, self.signum, self._old, self._workers = writer, None, {}, []

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def check(self) -> None:
        if self.signum is not None:
            from tinyfast._util import Terminated
            raise Terminated if self.signum == signal.SIGTERM else KeyboardInterrupt
        dead = [p for p in self._workers if p.exitcode not in (None, 0)]
        if dead:
            raise PackError(f"{self.writer.fname}: an FFCV writer worker died (exit status "
                            f"{dead[0].exitcode}: killed, or out of memory); nothing was written")

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)
        self.check()

    def __enter__(self) -> "_Supervised":
        global _WRITING, _HOOKED
        import multiprocessing as mp

        import ffcv.writer as fw
        if not _HOOKED:
            os.register_at_fork(after_in_child=_in_child)
            _HOOKED = True
        self._workers = []

        def process(*args, **kwargs):  # FFCV's workers, each kept (their exit status is read)
            p = mp.Process(*args, **kwargs)
            self._workers.append(p)
            return p
        self._process_of_ffcv, fw.Process = fw.Process, process
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        self._sleep_of_ffcv, fw.sleep = fw.sleep, self._sleep
        _WRITING = True
        return self

    def __exit__(self, kind, exc, tb) -> None:
        global _WRITING
        import ffcv.writer as fw
        _WRITING = False
        fw.sleep, fw.Process = self._sleep_of_ffcv, self._process_of_ffcv
        try:
            if kind is not None:
                self._stop()
        finally:
            for s, old in self._old.items():
                signal.signal(s, old)

    def _stop(self) -> None:
        for p in self._workers:
            if p.is_alive():
                p.kill()
            if p.pid is not None:
                p.join()
        shm = getattr(self.writer, "metadata_sm", None)
        if shm is not None:
            with contextlib.suppress(OSError):
                shm.close()
                shm.unlink()

"""Writer: ``<split>.beton`` by FFCV's own ``DatasetWriter`` (optional dependency)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from tinyfast._util import torch_threads_kept
from tinyfast.data import PackError
from tinyfast.progress import progress


def ffcv_writer():
    try:
        with torch_threads_kept():
            from ffcv.fields import IntField, RGBImageField
            from ffcv.writer import DatasetWriter
    except ImportError as e:
        raise PackError(f"--ffcv needs the ffcv package (pip install .[ffcv]): {e}") from None
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
    with warnings.catch_warnings(), _progress_of_ffcv(f"{path.stem} beton", show):
        warnings.simplefilter("ignore")
        writer.from_indexed_dataset(_RowsDataset(images, labels))


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

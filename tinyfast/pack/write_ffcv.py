"""Writer: ``<split>.beton`` by FFCV's own ``DatasetWriter`` (optional dependency)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from tinyfast.data import PackError


def ffcv_writer():
    try:
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


def write_ffcv(path: Path, images, labels, size: int, workers: int) -> None:
    """``<split>.beton`` by FFCV's own writer; 'raw' mode keeps the packed pixels exactly."""
    DatasetWriter, RGBImageField, IntField = ffcv_writer()
    writer = DatasetWriter(str(path), {"image": RGBImageField(write_mode="raw", max_resolution=size),
                                       "label": IntField()}, num_workers=workers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        writer.from_indexed_dataset(_RowsDataset(images, labels))

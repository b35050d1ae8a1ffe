"""Writer: the ``.npy`` arrays of a split besides the images (labels, ids, boxes) and mean/std."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyfast.pack.decode import map_box
from tinyfast.pack.plan import Plan


def write_arrays(sdir: Path, split: str, items, results, keep, plan: Plan, size: int, stats: dict) -> dict:
    """labels.npy, ids.txt and boxes.npy of one split; tallies colour modes and resizes."""
    for i in keep:
        mode, wh = results[i].mode, results[i].wh
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
        boxes = np.asarray([map_box(items[i].box, results[i].wh, size) for i in keep], np.int16)
        np.save(sdir / "boxes.npy", boxes)
        meta["boxes_missing"] = int((boxes[:, 0] < 0).sum())
    return meta


def mean_std(images: np.ndarray, chunk: int = 1024):
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

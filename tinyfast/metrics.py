"""Accuracy bookkeeping and the run's metric files (JSONL, CSV, per-class table), written atomically."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from tinyfast._util import atomic_write_bytes, atomic_write_text

__all__ = ["atomic_write_bytes", "atomic_write_text", "check_output_file", "write_history", "per_class_table",
           "topk_accuracy", "METRIC_COLUMNS"]

# Column order of metrics.csv (JSONL rows carry the same keys).
METRIC_COLUMNS = ("epoch", "step", "image_size", "lr", "train_loss", "train_top1", "val_loss", "val_top1",
                  "val_top5", "img_per_s", "epoch_time", "eval_time")


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """Refuse, before any work is done, an output ``path`` that cannot be written as a file: a
    directory, below a file, or in a read-only directory. Raises ``ValueError`` (one line)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path}: is a directory (give a file name)")
    folder = path.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{option} {path}: {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: the directory {folder} is not writable")
    return path


def write_history(history: Sequence[dict], run_dir: str | os.PathLike) -> None:
    """(Re)write ``metrics.jsonl`` and ``metrics.csv`` from all epochs so far.

    Rewriting from the in-checkpoint history (instead of appending) keeps the files consistent
    with the checkpoint after a resume.
    """
    run_dir = Path(run_dir)
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    cols = list(METRIC_COLUMNS) + sorted({k for r in history for k in r} - set(METRIC_COLUMNS))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in history:
        w.writerow({k: r.get(k, "") for k in cols})
    atomic_write_text(run_dir / "metrics.csv", buf.getvalue())


def per_class_table(correct: np.ndarray, count: np.ndarray, classes: Sequence[str], words: Sequence[str],
                    k: int = 5) -> dict:
    """Per-class accuracy with the ``k`` best and worst classes.

    Returns:
        ``{"rows": [{"class", "words", "correct", "count", "accuracy"}...], "best": [...], "worst": [...]}``;
        classes absent from the split are listed with accuracy ``None`` and left out of best/worst.
        With fewer than ``2k`` classes the two lists split them (best gets the odd one) instead of
        overlapping. Ties are broken by class index, so the result is stable.
    """
    rows = []
    for i, (c, n) in enumerate(zip(correct.tolist(), count.tolist())):
        rows.append({"class": classes[i] if i < len(classes) else str(i),
                     "words": words[i] if i < len(words) else "",
                     "correct": int(c), "count": int(n), "accuracy": (c / n) if n else None})
    seen = [r for r in rows if r["count"]]
    by_acc = sorted(range(len(seen)), key=lambda j: (-seen[j]["accuracy"], j))
    n_best = min(k, (len(seen) + 1) // 2)
    n_worst = min(k, len(seen) - n_best)
    rest = sorted(by_acc[n_best:], key=lambda j: (seen[j]["accuracy"], j))
    return {"rows": rows, "best": [seen[j] for j in by_acc[:n_best]], "worst": [seen[j] for j in rest[:n_worst]]}


def per_class_csv(table: dict) -> str:
    """The per-class rows of :func:`per_class_table` as CSV text."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["class", "words", "correct", "count", "accuracy"], lineterminator="\n")
    w.writeheader()
    for r in table["rows"]:
        w.writerow(r)
    return buf.getvalue()


def topk_accuracy(probs: torch.Tensor, labels: torch.Tensor, ks: Iterable[int] = (1, 5)) -> dict[int, float]:
    """Fraction of rows whose label is among the ``k`` highest scores, for each ``k``."""
    out = {}
    if len(labels) == 0:
        return {k: float("nan") for k in ks}
    order = probs.topk(min(max(ks), probs.shape[1]), dim=1).indices
    for k in ks:
        out[k] = (order[:, :k] == labels[:, None]).any(1).float().mean().item()
    return out

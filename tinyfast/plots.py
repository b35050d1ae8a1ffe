"""Training curves as PNG (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
import os
from typing import Sequence

from tinyfast.metrics import atomic_write_bytes

__all__ = ["plot_history"]


def plot_history(history: Sequence[dict], path: str | os.PathLike, title: str = "") -> None:
    """Loss, top-1/top-5 and learning rate against epoch, written atomically to ``path``."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # Figure, not pyplot: no global state, no GUI backend

    ep = [r["epoch"] for r in history]

    def col(key):
        pts = [(e, r[key]) for e, r in zip(ep, history) if r.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig = Figure(figsize=(13, 3.8), dpi=100)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    for key, label in (("train_loss", "train"), ("val_loss", "val")):
        ax1.plot(*col(key), marker="o", ms=3, label=label)
    ax1.set_title("loss")
    for key, label in (("train_top1", "train top-1"), ("val_top1", "val top-1"), ("val_top5", "val top-5")):
        ax2.plot(*col(key), marker="o", ms=3, label=label)
    ax2.set_title("accuracy")
    ax2.set_ylim(0, 1)
    ax3.plot(*col("lr"), marker="o", ms=3)
    ax3.set_title("learning rate (epoch end)")
    for ax in (ax1, ax2, ax3):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax1.legend()
    ax2.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())

"""Training curves as PNG (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
import os
from typing import Sequence

from tinyfast.metrics import atomic_write_bytes

__all__ = ["plot_history", "plot_time_to_accuracy"]


def _save(fig, path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


def _figure(**kw):
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # Figure, not pyplot: no global state, no GUI backend
    return Figure(**kw)


def plot_history(history: Sequence[dict], path: str | os.PathLike, title: str = "") -> None:
    """Loss, top-1/top-5 and learning rate against epoch, written atomically to ``path``."""
    ep = [r["epoch"] for r in history]

    def col(key):
        pts = [(e, r[key]) for e, r in zip(ep, history) if r.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig = _figure(figsize=(13, 3.8), dpi=100)
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
    _save(fig, path)


def plot_time_to_accuracy(runs: Sequence[dict], path: str | os.PathLike, title: str = "",
                          reference: tuple[float, str] | None = (0.627, "seeds' best: 62.7% after 108 epochs"),
                          target: tuple[float, float] | None = (0.60, 60.0)) -> dict[str, list]:
    """Val top-1 (%) against wall seconds, one line per run, written atomically to ``path``.

    ``runs``: ``[{"label": str, "curve": [[seconds, val_top1 fraction], ...]}, ...]`` (points
    without a val figure are left out). ``reference``: a (fraction, label) horizontal line;
    ``target``: (top-1 fraction, seconds), drawn as a dashed line and a dotted vertical.
    Returns the plotted data, ``{label: [(seconds, percent), ...]}``.
    """
    fig = _figure(figsize=(7.5, 4.5), dpi=100)
    ax = fig.subplots()
    plotted: dict[str, list] = {}
    for r in runs:
        pts = [(float(s), 100.0 * float(v)) for s, v, *_ in r["curve"] if v is not None]
        plotted[r["label"]] = pts
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=r["label"])
    if reference is not None:
        ax.axhline(100 * reference[0], color="grey", ls="--", lw=1, label=reference[1])
    if target is not None:
        ax.axhline(100 * target[0], color="tab:red", ls="--", lw=1, label=f"target {100 * target[0]:g}%")
        ax.axvline(target[1], color="tab:red", ls=":", lw=1, label=f"target {target[1]:g} s")
    ax.set_xlabel("seconds from the start of training")
    ax.set_ylabel("val top-1 (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)
    return plotted

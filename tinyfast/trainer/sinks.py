"""Where a run's figures go: ``config.json``, ``metrics.jsonl``/``metrics.csv``, ``curves.png``,
``per_class.csv``, ``summary.json`` and the one-line log per epoch. Only rank 0 writes files."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from tinyfast._util import remove_stale_temps
from tinyfast.config import ConfigError
from tinyfast.metrics import atomic_write_text, per_class_csv, per_class_table, write_history

__all__ = ["RunSinks", "TensorBoard", "epoch_line", "run_info", "run_summary", "class_list", "plural", "RUN_FILES",
           "run_files"]

# Drawing takes ~0.5-1 s: at most once a minute, and after the last epoch.
PLOT_INTERVAL_S = 60.0
# What a run writes in its folder: a folder holding one of them holds a run (--overwrite removes
# them, config.json last: a folder half cleared by a kill still reads as a run).
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "metrics.csv", "curves.png", "per_class.csv", "summary.json",
             "tensorboard", "config.json")


def run_files(run_dir) -> list[str]:
    """The names of :data:`RUN_FILES` present in ``run_dir`` (none when it does not exist)."""
    return [n for n in RUN_FILES if os.path.lexists(Path(run_dir) / n)]


def clear_run(run_dir: Path) -> list[str]:
    """Remove an earlier run's :data:`RUN_FILES` from ``run_dir``, nothing else; returns their names."""
    names = run_files(run_dir)
    for n in names:
        path = run_dir / n
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return names


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 epoch``, ``3 epochs`` (``many``: the plural where it is not ``word + "s"``)."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def epoch_line(r: dict, epochs: int, show_size: bool) -> str:
    """The log line of one epoch's row."""
    val = (f"  val loss {r['val_loss']:.3f} top-1 {100 * r['val_top1']:.2f}% top-5 {100 * r['val_top5']:.2f}%"
           if "val_top1" in r else "")
    return (f"epoch {r['epoch']}/{epochs}  train loss {r['train_loss']:.3f} "
            f"top-1 {100 * r['train_top1']:.2f}%{val}  lr {r['lr']:.3g}  {r['img_per_s']:.0f} img/s  "
            f"{r['epoch_time']:.1f}s" + (f"  ({r['image_size']}px)" if show_size else ""))


def class_list(rows: list[dict]) -> str:
    """``n01443537 goldfish 80%, ...``: the name once where the words are the wnid (ImageFolder)."""
    def one(r):
        words = r["words"].split(",")[0].strip()
        name = r["class"] if not words or words == r["class"] else f"{r['class']} {words}"
        return f"{name} {100 * r['accuracy']:.0f}%"
    return ", ".join(one(r) for r in rows)


def run_info(tr) -> dict:
    """``config.json`` of trainer ``tr``: the resolved config, the environment, the run's shape."""
    env = {"torch": torch.__version__, "python": platform.python_version(),
           "device": (torch.cuda.get_device_name(tr.device) if tr.device.type == "cuda"
                      else platform.processor() or "cpu"),
           "cuda": torch.version.cuda, "world_size": tr.world, "torch_threads": torch.get_num_threads(),
           "amp": str(tr.amp_dtype).replace("torch.", "") if tr.amp else "off", "argv": sys.argv}
    return {"config": dataclasses.asdict(tr.cfg), "environment": env,
            "num_classes": tr.num_classes, "steps_per_epoch": tr.steps_per_epoch}


def run_summary(tr, final: bool) -> dict:
    """Trainer ``tr``'s figures; when ``final``, also its per-class table and ``summary.json``."""
    out = {"run_dir": str(tr.run_dir), "epochs": tr.epoch, "step": tr.step,
           "best_val_top1": tr.val.best_top1 if tr.val.best_top1 >= 0 else None,
           "best_by": "val_top1" if tr.val_loader is not None else "train_loss",
           "final": dict(tr.history[-1]) if tr.history else {},
           "wall_time": tr.wall_before + time.perf_counter() - tr.wall_start}
    if final and tr.val.last is not None:
        table = tr.sinks.per_class(tr.val.last, tr.classes, tr.words)
        out["best_classes"], out["worst_classes"] = table["best"], table["worst"]
    if final:
        tr.sinks.summary(out)
    return out


class RunSinks:
    """The output files and log lines of one run in ``run_dir``.

    ``write`` is False on ranks other than 0: they log nothing and write nothing.
    """

    def __init__(self, run_dir: Path, *, write: bool, log: Callable[[str], None], title: str):
        self.run_dir, self.write, self.log, self.title = Path(run_dir), write, log, title
        self._plotted = time.perf_counter()
        self.tensorboard: TensorBoard | None = None

    def open_tensorboard(self, mean=(), std=()) -> None:
        """Also log to TensorBoard (rank 0); fails now, with one line, when it is not installed."""
        if self.write:
            self.tensorboard = TensorBoard(self.run_dir, mean, std)

    def batch(self, x: torch.Tensor) -> None:
        """The run's first training batch (for the TensorBoard image grid)."""
        if self.tensorboard is not None:
            self.tensorboard.batch(x)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()

    def start(self, info: dict, overwrite: bool = False) -> None:
        """Create the run directory (removing temp files a killed run left, and with ``overwrite``
        an earlier run's files) and write ``config.json``."""
        if self.write:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:  # --out-dir (or a folder above it) is a file, read-only, ...
                raise ConfigError(f"--out-dir: cannot create the run directory {self.run_dir} "
                                  f"({e.strerror or e.__class__.__name__})") from None
            removed = clear_run(self.run_dir) if overwrite else []
            if removed:
                self.log(f"note: --overwrite: removed the earlier run's {', '.join(removed)} from {self.run_dir}")
            stale = remove_stale_temps(self.run_dir)
            if stale:
                self.log(f"note: removed {plural(stale, 'temporary file')} of an earlier process killed "
                         f"while writing in {self.run_dir}")
            atomic_write_text(self.run_dir / "config.json", json.dumps(info, indent=2) + "\n")

    def epoch(self, history: list[dict], *, epochs: int, show_size: bool, last: bool) -> None:
        """Log the newest row of ``history`` and rewrite the metric files (and, now and then, the plot)."""
        self.log(epoch_line(history[-1], epochs, show_size))
        if not self.write:
            return
        if self.tensorboard is not None:
            self.tensorboard.epoch(history[-1])
        write_history(history, self.run_dir)
        if last or time.perf_counter() - self._plotted > PLOT_INTERVAL_S:
            self.plot(history)

    def plot(self, history: list[dict]) -> None:
        try:
            from tinyfast.plots import plot_history
            plot_history(history, self.run_dir / "curves.png", title=self.title)
        except Exception as e:  # a plotting problem must never kill a training run
            self.log(f"warning: could not draw curves.png ({e.__class__.__name__}: {e})")
        self._plotted = time.perf_counter()

    def per_class(self, ev: dict, classes: list[str], words: list[str]) -> dict:
        """The per-class table of evaluation ``ev``: logged (best/worst 5) and written to ``per_class.csv``."""
        table = per_class_table(ev["per_class_correct"], ev["per_class_count"], classes, words)
        if self.write:
            atomic_write_text(self.run_dir / "per_class.csv", per_class_csv(table))
            self.log(f"best classes:  {class_list(table['best'])}")
            self.log(f"worst classes: {class_list(table['worst'])}")
        return table

    def summary(self, out: dict) -> None:
        if self.write:
            atomic_write_text(self.run_dir / "summary.json", json.dumps(out, indent=2, default=float) + "\n")


class TensorBoard:
    """``--tensorboard``: per-epoch scalars (loss, top-1/top-5, LR, img/s) and the first augmented
    training batch as an image grid, in ``RUN_DIR/tensorboard`` (``torch.utils.tensorboard``)."""

    SCALARS = {"train_loss": "train/loss", "train_top1": "train/top1", "val_loss": "val/loss",
               "val_top1": "val/top1", "val_top5": "val/top5", "lr": "lr", "img_per_s": "train/img_per_s"}

    def __init__(self, run_dir: Path, mean=(), std=()):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError("--tensorboard needs the tensorboard package (pip install tensorboard)") from None
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
        self.mean, self.std = list(mean), list(std)

    def epoch(self, row: dict) -> None:
        for key, tag in self.SCALARS.items():
            if row.get(key) is not None:
                self.writer.add_scalar(tag, row[key], row["epoch"])
        self.writer.flush()

    def batch(self, x: torch.Tensor) -> None:
        """The augmented images as the model sees them, un-normalised, up to 64 in a grid."""
        from torchvision.utils import make_grid
        x = x[:64].detach().float().cpu()
        if len(self.mean) == x.shape[1] and len(self.std) == x.shape[1]:
            x = x * torch.tensor(self.std).view(1, -1, 1, 1) + torch.tensor(self.mean).view(1, -1, 1, 1)
        self.writer.add_image("train/augmented_batch", make_grid(x.clamp(0, 1), nrow=8), 0)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

"""Evaluation during training: when to evaluate, on which weights, and which epoch is the best."""

from __future__ import annotations

import time

from tinyfast.inference import evaluate

__all__ = ["Validation"]


class Validation:
    """Evaluates every ``eval_every`` epochs (and after the last) on ``loader`` and keeps the best.

    Without a val split (``loader`` None) nothing is evaluated and the best epoch is the one with
    the lowest train loss (a warning says so when the data is built).
    """

    def __init__(self, loader, *, num_classes: int, eval_every: int, epochs: int, autocast, memory_format,
                 progress: bool, every: float):
        self.loader, self.num_classes = loader, num_classes
        self.eval_every, self.epochs = eval_every, epochs
        self.kw = dict(autocast=autocast, memory_format=memory_format, progress=progress, every=every)
        self.best_top1 = -1.0
        self.last: dict | None = None     # the latest evaluation (its per-class counts feed the report)

    def run(self, model, epoch: int, schedule) -> dict:
        """The val columns of epoch ``epoch``'s row ({} when it is not evaluated); feeds ``plateau``."""
        if self.loader is None or not ((epoch + 1) % self.eval_every == 0 or epoch + 1 == self.epochs):
            return {}
        t0 = time.perf_counter()
        ev = evaluate(model, self.loader, self.num_classes, **self.kw)
        self.last = ev
        schedule.epoch_end(ev["top1"])
        return {"val_loss": ev["loss"], "val_top1": ev["top1"], "val_top5": ev["top5"],
                "eval_time": time.perf_counter() - t0}

    def improved(self, row: dict, history: list[dict]) -> bool:
        """Whether ``row``'s epoch is the best so far: by val top-1, or by train loss without val."""
        if self.loader is None:
            return row["train_loss"] <= min(r["train_loss"] for r in history)
        if row.get("val_top1", -1.0) <= self.best_top1:
            return False
        self.best_top1 = row["val_top1"]
        return True

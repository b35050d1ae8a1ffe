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
                 progress: bool, every: float, plateau_metric: str = "val_top1"):
        self.loader, self.num_classes = loader, num_classes
        self.plateau_metric = plateau_metric  # what the plateau schedule watches
        self.eval_every, self.epochs = eval_every, epochs
        self.kw = dict(autocast=autocast, memory_format=memory_format, progress=progress, every=every)
        self.best_top1 = -1.0
        self.last: dict | None = None     # the latest evaluation (its per-class counts feed the report)
        self.last_seconds: float | None = None  # how long it took

    def run(self, model, epoch: int, schedule) -> dict:
        """The val columns of epoch ``epoch``'s row ({} when it is not evaluated); feeds ``plateau``."""
        if not self.due(epoch):
            return {}
        t0 = time.perf_counter()
        ev = evaluate(model, self.loader, self.num_classes, **self.kw)
        self.last, self.last_seconds = ev, time.perf_counter() - t0
        schedule.epoch_end(ev["top1"] if self.plateau_metric == "val_top1" else -ev["loss"])  # higher is better
        return {"val_loss": ev["loss"], "val_top1": ev["top1"], "val_top5": ev["top5"],
                "eval_time": self.last_seconds}

    def due(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` ends with an evaluation."""
        return self.loader is not None and ((epoch + 1) % self.eval_every == 0 or epoch + 1 == self.epochs)

    def seconds_left(self, epoch: int) -> float:
        """The evaluations still due from epoch ``epoch`` on (its own included), at the last one's
        duration: 0 before one has run."""
        if self.last_seconds is None:
            return 0.0
        return self.last_seconds * sum(self.due(e) for e in range(epoch, self.epochs))

    def improved(self, row: dict, history: list[dict]) -> bool:
        """Whether ``row``'s epoch is the best so far: by val top-1, or by train loss without val."""
        if self.loader is None:
            return row["train_loss"] <= min(r["train_loss"] for r in history)
        if row.get("val_top1", -1.0) <= self.best_top1:
            return False
        self.best_top1 = row["val_top1"]
        return True

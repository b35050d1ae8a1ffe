"""Per-step learning-rate schedules with linear warm-up.

The learning rate is a pure function of the global step (plus, for ``plateau``, a decay factor
that changes at epoch ends), so resuming only needs the step and that factor. Epochs may differ in
length (``epoch_steps``: training phases of their own batch size); ``step_size`` and
``cycle_epochs`` then count epochs, whatever their steps. Kinds:

* ``onecycle`` -- linear warm-up to the peak, then cosine annealing to ``min_lr`` (the warm-up is
  the "one cycle" rise; by default a quarter of the run). The last step runs at exactly ``min_lr``.
* ``cosine`` -- warm-up, then cosine annealing to ``min_lr``, reached on the last step.
* ``step`` -- warm-up, then multiply by ``gamma`` every ``step_size`` epochs, counted from step 0
  (like ``torch.optim.lr_scheduler.StepLR``: ``--step-size 10`` decays at epochs 10, 20, ...,
  whatever the warm-up).
* ``plateau`` -- warm-up, then multiply by ``gamma`` when the watched metric (val top-1, or the
  negated val loss: ``--plateau-metric``) has not improved for ``patience`` evaluations.
* ``cyclic`` -- triangular cycles between ``min_lr`` and the peak, ``cycle_epochs`` long.
* ``constant`` -- warm-up, then the peak.
"""

from __future__ import annotations

import bisect
import math

__all__ = ["Schedule"]


class Schedule:
    """Sets ``optimizer``'s learning rates for every step.

    Args:
        optimizer: its param groups' ``lr`` are overwritten (each group may carry an ``lr_scale``).
        kind: see the module docstring.
        peak_lr: the maximum learning rate.
        total_steps, steps_per_epoch: length of the run.
        warmup_steps: linear warm-up from ``peak_lr * warmup_start`` to ``peak_lr``.
        min_lr: fraction of ``peak_lr`` reached at the end (cosine/onecycle) or the cycle floor.
        epoch_steps: the steps of each epoch when they differ (``steps_per_epoch`` is then ignored).
    """

    def __init__(self, optimizer, kind: str, peak_lr: float, total_steps: int, steps_per_epoch: int,
                 warmup_steps: int = 0, min_lr: float = 0.0, step_size: float = 10.0, gamma: float = 0.1,
                 patience: int = 3, cycle_epochs: float = 4.0, warmup_start: float = 0.04,
                 epoch_steps: list[int] | None = None):
        if kind not in ("onecycle", "cosine", "step", "plateau", "cyclic", "constant"):
            raise ValueError(f"unknown schedule {kind!r}")
        self.optimizer = optimizer
        self.kind = kind
        self.peak = float(peak_lr)
        self.total = max(1, int(total_steps))
        self.spe = max(1, int(steps_per_epoch))
        self.warmup = min(int(warmup_steps), self.total)
        self.min_lr = float(min_lr)
        self.step_size = max(1, round(step_size * self.spe))
        self.gamma = float(gamma)
        self.patience = int(patience)
        self.cycle = max(2, round(cycle_epochs * self.spe))
        self.warmup_start = float(warmup_start)
        self.step_epochs, self.cycle_epochs = max(float(step_size), 1e-9), max(float(cycle_epochs), 1e-9)
        self.starts = None  # with epoch_steps: the first step of each epoch, and the end
        if epoch_steps is not None:
            self.starts = [0]
            for n in epoch_steps:
                self.starts.append(self.starts[-1] + max(1, int(n)))
        # plateau state
        self.factor = 1.0
        self.best = -math.inf
        self.bad = 0
        self.set_step(0)

    def lr_at(self, step: int) -> float:
        """Learning rate for the update made at global step ``step`` (0-based)."""
        p, lo = self.peak, self.peak * self.min_lr
        if self.kind == "cyclic":
            pos = ((step % self.cycle) / self.cycle if self.starts is None   # 0 -> 1 within a cycle
                   else (self.epochs_at(step) % self.cycle_epochs) / self.cycle_epochs)
            tri = 1.0 - abs(2.0 * pos - 1.0)                 # 0 -> 1 -> 0
            return lo + (p - lo) * tri
        if step < self.warmup:
            a = (step + 1) / self.warmup
            return p * (self.warmup_start + (1.0 - self.warmup_start) * a)
        if self.kind in ("onecycle", "cosine"):
            # The annealing steps are warmup .. total-1: the first at the peak, the last at min_lr.
            frac = min(1.0, (step - self.warmup) / max(1, self.total - 1 - self.warmup))
            return lo + (p - lo) * 0.5 * (1.0 + math.cos(math.pi * frac))
        if self.kind == "step":
            n = step // self.step_size if self.starts is None else math.floor(self.epochs_at(step) / self.step_epochs)
            return p * self.gamma ** n
        if self.kind == "plateau":
            return p * self.factor
        return p

    def epochs_at(self, step: int) -> float:
        """Epochs done before ``step`` (fractional), counting each epoch's own steps."""
        if self.starts is None:
            return step / self.spe
        e = min(bisect.bisect_right(self.starts, step) - 1, len(self.starts) - 2)
        return e + (step - self.starts[e]) / (self.starts[e + 1] - self.starts[e])

    def set_step(self, step: int) -> float:
        """Write the learning rate of ``step`` into the optimizer; returns it."""
        lr = self.lr_at(step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        self.last_lr = lr
        return lr

    def epoch_end(self, metric: float | None) -> None:
        """Report an evaluation (higher is better: val top-1, or minus the val loss); only ``plateau`` uses it."""
        if self.kind != "plateau" or metric is None:
            return
        if metric > self.best + 1e-4:
            self.best, self.bad = metric, 0
        else:
            self.bad += 1
            if self.bad > self.patience:
                self.factor *= self.gamma
                self.bad = 0

    def state_dict(self) -> dict:
        return {"factor": self.factor, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.factor, self.best, self.bad = state["factor"], state["best"], state["bad"]

"""The epoch loop: one epoch's batches through :class:`~tinyfast.trainer.step.TrainStep`, with the
running sums kept on the device (no host sync per step) and a progress bar refreshed every
``log_every`` steps (one sync each)."""

from __future__ import annotations

import math
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tinyfast.config import RunError
from tinyfast.inference import progress_bar
from tinyfast.progress import fmt_seconds

__all__ = ["Running", "EpochLoop"]


class Running:
    """The running epoch's sums (loss x samples, correct top-1, samples, seconds).

    Loss and correct count live on the device, so adding a batch never waits for it. ``untimed``
    samples went through steps whose time is not in ``seconds`` (the ``torch.compile`` step, whose
    duration is ``compile_time``), so img/s measures training, not compiling.
    """

    def __init__(self, device: torch.device, loss: float = 0.0, correct: int = 0, n: int = 0,
                 seconds: float = 0.0, untimed: int = 0, compile_time: float = 0.0):
        self.loss = torch.tensor(loss, dtype=torch.float32, device=device)
        self.correct = torch.tensor(correct, dtype=torch.int64, device=device)
        self.n, self.seconds = int(n), float(seconds)
        self.untimed, self.compile_time = int(untimed), float(compile_time)

    def add(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> None:
        self.loss += loss * y.shape[0]
        self.correct += (out.argmax(1) == y).sum()
        self.n += y.shape[0]

    def totals(self) -> tuple[float, int]:
        """(loss sum, correct): waits for the device."""
        return self.loss.item(), self.correct.item()

    def state_dict(self) -> dict:
        loss, correct = self.totals()
        return {"loss": loss, "correct": correct, "n": self.n, "seconds": self.seconds,
                "untimed": self.untimed, "compile_time": self.compile_time}


class EpochLoop:
    """Runs the steps of one epoch (or the rest of one after a mid-epoch resume).

    Owns the global step counter and the running sums: both are part of a mid-epoch checkpoint.
    ``stop_at_step`` (or a signal through ``stop_request``) ends the epoch early after a step.
    """

    def __init__(self, step_fn, schedule, loader, *, device: torch.device, memory_format,
                 steps_per_epoch: int | list[int], epochs: int, world: int, log_every: int,
                 stop_at_step: int | None, show_progress: bool, progress_every: float = 0.0):
        self.step_fn, self.schedule, self.loader = step_fn, schedule, loader
        self.device, self.memory_format = device, memory_format
        # steps of each epoch (a list where training phases give epochs their own batch size)
        spe = steps_per_epoch if isinstance(steps_per_epoch, list) else [int(steps_per_epoch)] * epochs
        self.starts = [0]
        for n in spe:
            self.starts.append(self.starts[-1] + n)
        self.steps_per_epoch, self.epochs, self.world = spe[0] if spe else 0, epochs, world
        self.log_every, self.stop_at_step, self.show_progress = log_every, stop_at_step, show_progress
        self.progress_every = progress_every
        self.step = 0               # optimizer steps done
        self.running: Running | None = None
        self.epoch_done = True      # False while an epoch is partially done (mid-epoch checkpoint)
        self.stopped_early = False
        self.stop_request = None    # a StopRequest: true once SIGINT/SIGTERM asked the run to stop
        self.on_first_batch = None  # called with the run's first (augmented) batch, e.g. for TensorBoard
        self.frozen_norms: list = []  # BatchNorm layers kept in eval mode (frozen by --freeze)
        self.eval_left = None       # epoch -> seconds of the evaluations still due (for the run's ETA)
        self.clock = time.perf_counter

    @classmethod
    def of_run(cls, cfg, step_fn, schedule, loader, *, device: torch.device, memory_format, world: int,
               is_main: bool, epoch_steps: list[int] | None = None) -> "EpochLoop":
        """The loop of a run of ``cfg`` (progress shown on rank 0 only); ``epoch_steps``: the steps
        of each epoch (default: ``len(loader)`` each)."""
        return cls(step_fn, schedule, loader, device=device, memory_format=memory_format,
                   steps_per_epoch=epoch_steps or len(loader), epochs=cfg.epochs, world=world, log_every=cfg.log_every,
                   stop_at_step=cfg.stop_at_step, show_progress=cfg.progress and is_main,
                   progress_every=cfg.progress_every if is_main else 0.0)

    def _prepare(self, x: torch.Tensor, size: int, resize: bool) -> torch.Tensor:
        if resize:
            # The loader cannot produce smaller images: downscale the batch (antialiased).
            x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False).to(x.dtype)
        return x.contiguous(memory_format=self.memory_format)

    def run(self, epoch: int, size: int, resize: bool) -> dict | None:
        """Train epoch ``epoch`` at image size ``size`` (``resize``: downscale in the loop).

        Returns the epoch's training metrics, or ``None`` when ``stop_at_step`` interrupted it.
        """
        self.loader.set_epoch(epoch)
        self.step_fn.fwd.train()
        for m in self.frozen_norms:
            m.eval()
        run = self.running = self.running or Running(self.device)
        bar = progress_bar(total=self.starts[epoch + 1] - self.starts[epoch], initial=self.step - self.starts[epoch],
                           desc=f"epoch {epoch + 1}/{self.epochs}", unit="step", show=self.show_progress,
                           every=self.progress_every)
        window, window_n = torch.zeros((), device=self.device), 0
        t0, n0, s0 = self.clock(), run.n, self.step
        self.epoch_done, stop = False, False
        for x, y in self.loader:
            self.schedule.set_step(self.step)
            x = self._prepare(x, size, resize)
            if self.step == 0 and self.on_first_batch is not None:
                self.on_first_batch(x)
            loss, out = self.step_fn(x, y)
            run.add(loss, out, y)
            if self.step_fn.compiling:
                t0, n0, s0 = self._compiled(run, loss, y, t0), run.n, self.step
            window += loss
            window_n += 1
            self.step += 1
            bar.update(1)
            if window_n == self.log_every:
                # One sync every log_every steps, for the bar (and to stop a diverged run early);
                # the clock is read after it, when the device has run the steps counted.
                mean = self._finite(window.item() / window_n, epoch)
                seconds = max(self.clock() - t0, 1e-9)
                rate = (run.n - n0) / seconds * self.world
                post = dict(loss=f"{mean:.3f}", img_s=f"{rate:.0f}", lr=f"{self.schedule.last_lr:.3g}")
                if epoch + 1 < self.epochs:  # more epochs to come: the whole run's ETA too
                    post["run_eta"] = fmt_seconds(self.run_eta(epoch, (self.step - s0) / seconds))
                bar.set_postfix(**post)
                window.zero_()
                window_n = 0
            if self._should_stop(synced=window_n == 0):
                stop = True
                break
        loss_sum, correct = run.totals()  # waits for the device: the epoch time below is honest
        run.seconds += self.clock() - t0
        bar.close()
        self._finite(loss_sum, epoch)
        if stop and self.step < self.starts[epoch + 1]:
            self.stopped_early = True
            return None
        self.stopped_early = stop
        self.epoch_done = True
        self.running = None
        return self._metrics(run, loss_sum, correct, size)

    def run_eta(self, epoch: int, steps_per_s: float) -> float:
        """Seconds to the end of the run: the steps left at ``steps_per_s``, plus the evaluations
        still due at the last one's duration (none counted before one has run)."""
        left = self.starts[-1] - self.step
        return left / max(steps_per_s, 1e-9) + (self.eval_left(epoch) if self.eval_left else 0.0)

    def _should_stop(self, synced: bool) -> bool:
        """``--stop-at-step`` reached, or a signal asked to stop. Under DDP the ranks agree on the
        latter (a collective) only at progress windows, so they all stop at the same step, for the
        same reason (a signal to one rank stops every rank as interrupted by it)."""
        if self.stop_at_step is not None and self.step >= self.stop_at_step:
            return True
        if self.world == 1:
            return bool(self.stop_request)
        if not synced:
            return False
        # each rank's signal number in its slot: every rank learns who was signalled, and with what
        flags = torch.zeros(self.world, device=self.device)
        flags[dist.get_rank()] = float(self.stop_request.signum or 0) if self.stop_request else 0.0
        dist.all_reduce(flags)
        got = {r: int(s) for r, s in enumerate(flags.tolist()) if s}
        if got and self.stop_request is not None:
            self.stop_request.agree(got)
        return bool(got)

    def _compiled(self, run: Running, loss: torch.Tensor, y: torch.Tensor, t0: float) -> float:
        """After the step that compiled the model: book its time as compile time; returns the new t0."""
        loss.item()  # the compiled step has really finished
        now = self.clock()
        run.compile_time += now - t0
        run.untimed += y.shape[0]
        self.step_fn.compiling = False
        return now

    def _finite(self, loss: float, epoch: int) -> float:
        """``loss``, or a :class:`RunError` when it is NaN/inf (the weights are then garbage)."""
        if not math.isfinite(loss):
            raise RunError(f"the training loss became {loss} by step {self.step} (epoch {epoch + 1}, "
                           f"lr {self.schedule.last_lr:.3g}): the run diverged; lower --lr")
        return loss

    def _metrics(self, run: Running, loss_sum: float, correct: float, size: int) -> dict:
        n = max(run.n, 1)
        if self.world > 1:
            t = torch.tensor([loss_sum, correct, run.n], dtype=torch.float64, device=self.device)
            dist.all_reduce(t)
            loss_sum, correct, n = t[0].item(), t[1].item(), max(t[2].item(), 1)
        metrics = {"train_loss": loss_sum / n, "train_top1": correct / n, "image_size": size,
                   "img_per_s": (run.n - run.untimed) * self.world / max(run.seconds, 1e-9),
                   "epoch_time": run.seconds, "lr": self.schedule.last_lr}
        if run.compile_time:
            metrics["compile_time"] = run.compile_time
        return metrics

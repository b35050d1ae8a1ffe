"""The :class:`Trainer`: one run of a resolved config, from building its parts to ``fit()``."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import torch
from torch import nn

from tinyfast import progress
from tinyfast.checkpoint import save_checkpoint, serialize
from tinyfast.config import RunError, TrainConfig
from tinyfast.inference import amp_settings, autocast_for, dist_info
from tinyfast.trainer.build import Phases, build_data, build_model, build_step, setup_device, wrap_model
from tinyfast.trainer.epoch import EpochLoop
from tinyfast.trainer.signals import Interrupted, StopRequest
from tinyfast.trainer.sinks import RunSinks, run_info, run_summary
from tinyfast.trainer.state import check_resume_data, kept_checkpoint, restore_trainer, trainer_state
from tinyfast.trainer.step import all_finite
from tinyfast.trainer.validation import Validation

__all__ = ["Trainer", "resume_command"]


def resume_command(last: Path, world: int) -> str:
    """The command that continues a run from ``last``: a DDP checkpoint resumes only with the same
    number of processes, so a run of ``world`` > 1 gets the torchrun line (per node: LOCAL_WORLD_SIZE)."""
    if world == 1:
        return f"python -m tinyfast.train --resume {last}"
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    nodes = f"--nnodes {world // local} " if world > local else ""
    return f"torchrun {nodes}--nproc_per_node {local} -m tinyfast.train --resume {last}"


class Trainer:
    """One training run of a resolved :class:`~tinyfast.config.TrainConfig`.

    Args:
        cfg: resolved config (no ``None`` in device/epochs/batch_size/lr/warmup/name).
        train_loader, val_loader: objects with the :func:`tinyfast.loaders.build` contract; built
            from ``cfg`` when omitted (``val_loader`` is then ``None`` if the data has no val split).
        classes, words: wnids and names for the per-class report (default: from the packed data).
        log: a callable for one-line messages (default: :func:`tinyfast.progress.write` on rank 0).

    Use :meth:`fit`; :meth:`train_one_epoch` and :func:`tinyfast.inference.evaluate` work on their own.
    """

    def __init__(self, cfg: TrainConfig, train_loader=None, val_loader=None, classes=None, words=None,
                 log=None):
        self.cfg = cfg
        self.rank, self.world = dist_info()
        self.is_main = self.rank == 0
        self.device = setup_device(cfg.device)
        self.log = log or (progress.write if self.is_main else (lambda msg: None))
        self.amp, self.amp_dtype, note = amp_settings(self.device, cfg.amp, cfg.amp_dtype)
        if note:
            self.log(f"note: {note}")
        self.autocast = autocast_for(self.device, self.amp, self.amp_dtype)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self._build_data(train_loader, val_loader, classes, words)
        self._build_model()
        self.loop = EpochLoop.of_run(cfg, self.step_fn, self.schedule, self.train_loader, device=self.device,
                                     memory_format=self.memory_format, world=self.world, is_main=self.is_main,
                                     epoch_steps=self.epoch_steps)
        self.epoch = 0              # the epoch in progress (or next to run)
        self.history: list[dict] = []
        self.val = Validation(self.val_loader, num_classes=self.num_classes, eval_every=cfg.eval_every,
                              epochs=cfg.epochs, autocast=self.autocast, memory_format=self.memory_format,
                              progress=cfg.progress and self.is_main, every=cfg.progress_every if self.is_main else 0,
                              plateau_metric=cfg.plateau_metric)
        self.loop.eval_left = self.val.seconds_left
        self.run_dir = Path(cfg.out_dir) / cfg.name
        self.sinks = RunSinks(self.run_dir, write=self.is_main, log=self.log, title=f"{cfg.arch} ({cfg.name})")
        self.wall_start = time.perf_counter()
        self.wall_before = 0.0      # wall time of earlier (resumed) segments
        self._shape = None          # (image size, batch) of the last epoch trained in this process

    def _build_data(self, train_loader, val_loader, classes, words) -> None:
        d = build_data(self.cfg, train_loader, val_loader, classes, words, device=self.device, rank=self.rank,
                       world=self.world, dtype=self.amp_dtype if self.amp else torch.float32, log=self.log)
        self.train_loader, self.val_loader, self.num_classes = d.train_loader, d.val_loader, d.num_classes
        self.classes, self.words, self.steps_per_epoch = d.classes, d.words, d.steps_per_epoch
        self.epoch_steps = d.epoch_steps
        self.data_id = d.data_id

    def _build_model(self) -> None:
        model, self.model_kwargs, fresh = build_model(self.cfg, self.num_classes, world=self.world, log=self.log)
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.step_fn, self.schedule = build_step(self.cfg, self.model, self.autocast, fp16=self.amp and
                                                 self.amp_dtype == torch.float16, device=self.device,
                                                 epoch_steps=self.epoch_steps, rank=self.rank)
        s = self.step_fn
        self.optimizer, self.scaler, self.ema, self.mixer = s.optimizer, s.scaler, s.ema, s.mixer
        self.phases = Phases(self.cfg, self.model, self.train_loader, self.log, on_change=self._wrap, fresh=fresh)

    @property
    def step(self) -> int:
        """Optimizer steps done."""
        return self.loop.step

    def _wrap(self) -> None:
        """After the trainable set changed: rebuild the wrappers, keep frozen BatchNorms in eval mode."""
        self.step_fn.fwd = wrap_model(self.model, compile=self.cfg.compile, world=self.world, device=self.device)
        self.loop.frozen_norms = self.phases.frozen_norms()
        if self.cfg.compile:
            self.step_fn.compiling = True
            self.log("note: --compile: the next step compiles the model (may take minutes); that time is "
                     "reported as compile_time, not counted in img/s")

    def _apply_freeze(self, epoch: int) -> None:
        self.phases.apply_freeze(epoch)

    def image_size(self, epoch: int) -> int:
        """Training image size of ``epoch`` (progressive resizing: equal-length phases)."""
        return self.phases.image_size(epoch)

    def train_one_epoch(self, epoch: int) -> dict | None:
        """Train one epoch (or its remainder after a mid-epoch resume).

        Returns the epoch's training metrics, or ``None`` when ``--stop-at-step`` interrupted it.
        """
        shape = self.phases.input_shape(epoch)
        size = shape[0]
        if self.cfg.compile and self._shape not in (None, shape):
            # torch.compile compiles again for a new input shape: book that step as compile time too
            self.step_fn.compiling = True
        self._shape = shape
        return self.loop.run(epoch, size, resize=self.phases.set_train_size(size))

    def eval_model(self) -> nn.Module:
        """The weights evaluated: the EMA's when enabled, else the model's."""
        return self.ema.module if self.ema is not None else self.model

    def fit(self) -> dict:
        """Train for the remaining epochs, evaluating, logging and checkpointing; returns the summary.

        Raises:
            Interrupted: SIGINT/SIGTERM stopped the run after a step and a saved ``last.pt``.
        """
        if self.cfg.tensorboard:  # first: without the package, no run folder is left behind
            self.sinks.open_tensorboard(getattr(self.train_loader, "mean", ()), getattr(self.train_loader, "std", ()))
            self.loop.on_first_batch = self.sinks.batch
        self.sinks.start(run_info(self), overwrite=self.cfg.overwrite)
        with StopRequest() as self.loop.stop_request, contextlib.closing(self.sinks):
            for epoch in range(self.epoch, self.cfg.epochs):
                self.epoch = epoch
                self.phases.apply_freeze(epoch)
                try:
                    metrics = self.train_one_epoch(epoch)
                except RunError as e:
                    raise RunError(f"{e}; {kept_checkpoint(self.run_dir)}") from None
                if metrics is not None:
                    self._end_epoch(epoch, metrics)
                if metrics is None or (self.loop.stopped_early and self.epoch < self.cfg.epochs):
                    return self._stopped(mid_epoch=metrics is None)
        return self.summary(final=True)

    def _end_epoch(self, epoch: int, metrics: dict) -> None:
        row = {"epoch": epoch + 1, "step": self.step, **metrics,
               **self.val.run(self.eval_model(), epoch, self.schedule)}
        if self.cfg.phases:  # what this epoch's phase trained with
            row.update(batch_size=self.phases.plan[epoch].batch, aug=self.phases.plan[epoch].aug)
        # seconds since the run began (earlier segments of a resumed run included), at the end of
        # this epoch's evaluation (its figures are on the host by now): the x of a time-to-accuracy curve
        row["wall_time"] = self.wall_before + time.perf_counter() - self.wall_start
        self.history.append(row)
        self.epoch = epoch + 1
        improved = self.val.improved(row, self.history)
        self.sinks.epoch(self.history, epochs=self.cfg.epochs, show_size=bool(self.phases.sizes),
                         last=epoch + 1 == self.cfg.epochs or self.loop.stopped_early)
        self.save("last.pt", also_best=improved)

    def _stopped(self, mid_epoch: bool) -> dict:
        """After ``--stop-at-step`` or a signal: ``last.pt`` saved, the way to continue said."""
        if mid_epoch:
            self.save("last.pt")
        resume = resume_command(self.run_dir / "last.pt", self.world)
        stop = self.loop.stop_request
        if stop:
            raise Interrupted(f"interrupted by {stop.name}{stop.who(self.world)} after step {self.step}; saved "
                              f"{self.run_dir / 'last.pt'}; resume with: {resume}", stop.signum)
        self.log(f"stopped at step {self.step} (--stop-at-step); resume with: {resume}")
        return self.summary(final=False)

    def summary(self, final: bool) -> dict:
        """Final figures; when ``final``, also writes ``per_class.csv`` and ``summary.json`` (rank 0)."""
        return run_summary(self, final)

    def state_dict(self) -> dict:
        """Everything needed to continue exactly (all ranks' RNG states included)."""
        return trainer_state(self)

    def load_state_dict(self, ck: dict, path=None) -> None:
        """Restore a checkpoint written by :meth:`state_dict` (same config); with ``path`` (the
        file, for ``--resume``) the data must be the data it was trained on (see
        ``--resume-other-data``)."""
        if path is not None:
            check_resume_data(self, ck, path)
        restore_trainer(self, ck)

    def save(self, name: str = "last.pt", also_best: bool = False) -> None:
        """Write ``name`` (and ``best.pt``) in the run directory; every rank must call it (collective)."""
        if not all_finite(self.model):  # never replace a good checkpoint by NaN weights
            raise RunError(f"the weights are not finite at step {self.step}: the run diverged; lower --lr; "
                           f"{kept_checkpoint(self.run_dir)}")
        state = self.state_dict()
        if self.is_main:
            data = serialize(state)  # once, for both files
            # best.pt first: last.pt records this epoch as the best, so once it is written a resume
            # never redoes the epoch; a kill before it (or during best.pt) redoes the epoch instead
            if also_best:
                save_checkpoint(data, self.run_dir / "best.pt")
            save_checkpoint(data, self.run_dir / name)

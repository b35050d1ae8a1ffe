"""The training loop, split by what changes together.

Layout::

    trainer/run.py     Trainer: one run of a resolved TrainConfig, fit() over the epochs
    trainer/build.py   loaders, class names, the model; Phases (unfreezing, progressive resizing)
    trainer/step.py    TrainStep (forward, loss, backward, AMP, update, EMA), EMA, Mixer, optimizer
    trainer/epoch.py   EpochLoop: one epoch's batches, device-side running sums, progress
    trainer/validation.py  Validation: when to evaluate, the best epoch (val top-1, or train loss)
    trainer/signals.py StopRequest: SIGINT/SIGTERM finish the step, save, exit 130/143
    trainer/state.py   the run's checkpoint: state_dict / restore (RNG, loader, per-rank state)
    trainer/sinks.py   outputs: config.json, metrics.jsonl/csv, curves.png, per_class.csv, log lines

Below the trainer, shared with ``evaluate``/``predict`` (which never import it):
``tinyfast/checkpoint.py`` (file format, atomic save, load, model from a checkpoint) and
``tinyfast/inference.py`` (AMP policy, evaluate, predict_probs).

The step loop never waits for the device except every ``log_every`` steps (progress) and at
epoch ends: loss and accuracy are accumulated in device tensors. AMP and channels-last need no
branch in the loop (``autocast(enabled=...)``, ``GradScaler(enabled=...)``,
``contiguous(memory_format=...)``). Under DDP (``torch.distributed`` initialised by the caller,
e.g. ``python -m tinyfast.train`` under ``torchrun``) every rank runs the same code on its shard;
only rank 0 writes files.
"""

from tinyfast.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, model_from_checkpoint, save_checkpoint
from tinyfast.inference import amp_settings, evaluate, predict_probs
from tinyfast.trainer.run import Trainer
from tinyfast.trainer.step import EMA, Mixer, TrainStep, build_optimizer

__all__ = ["Trainer", "TrainStep", "evaluate", "predict_probs", "EMA", "Mixer", "amp_settings",
           "build_optimizer", "save_checkpoint", "load_checkpoint", "model_from_checkpoint", "CHECKPOINT_FORMAT"]

"""A run's checkpoint: everything needed to continue exactly (model, EMA, optimizer, schedule,
GradScaler, loader position, every rank's RNG and mixing state, the step and the history), and
restoring it."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from tinyfast.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION
from tinyfast.config import ConfigError
from tinyfast.trainer.epoch import Running

__all__ = ["rng_state", "set_rng_state", "trainer_state", "restore_trainer", "check_resume_data", "kept_checkpoint"]


def kept_checkpoint(run_dir) -> str:
    """What a failed run leaves to resume from, in words."""
    last = Path(run_dir) / "last.pt"
    return f"the last good checkpoint is kept: {last}" if last.is_file() else "no checkpoint was written"


def rng_state(device: torch.device) -> dict:
    """This process's torch (and CUDA) generator states."""
    st = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def set_rng_state(st: dict, device: torch.device) -> None:
    torch.set_rng_state(st["torch"])
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)


def _per_rank(tr) -> list[Any]:
    """Every rank's RNG, mixing state and running epoch sums (collective under DDP): each rank
    counted only its own shard, so each must get its own sums back."""
    running = tr.loop.running
    local = {"rng": rng_state(tr.device), "mixer": tr.mixer.state_dict(),
             "acc": running.state_dict() if running is not None else None}
    if tr.world == 1:
        return [local]
    gathered: list[Any] = [None] * tr.world
    dist.all_gather_object(gathered, local)
    return gathered


def _normalization(tr) -> dict:
    """How the run's inputs were normalised (what evaluation must do again): the train loader's."""
    ld = tr.train_loader
    if hasattr(ld, "normalization_state"):
        return ld.normalization_state()
    return {"normalize": tr.cfg.normalize, "mean": list(getattr(ld, "mean", ())), "std": list(getattr(ld, "std", ())),
            "mean_image": getattr(ld, "mean_image", None)}


def trainer_state(tr) -> dict:
    """The checkpoint of trainer ``tr`` (a plain dict for ``torch.save``)."""
    loop = tr.loop
    return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "config": dataclasses.asdict(tr.cfg), "arch": tr.cfg.arch, "num_classes": tr.num_classes,
            "model_kwargs": tr.model_kwargs, "classes": tr.classes, "words": tr.words,
            "mean": list(getattr(tr.train_loader, "mean", ())), "std": list(getattr(tr.train_loader, "std", ())),
            "normalization": _normalization(tr), "data": tr.cfg.data, "data_id": tr.data_id,
            "model": tr.model.state_dict(), "ema": tr.ema.state_dict() if tr.ema else None,
            "optimizer": tr.optimizer.state_dict(), "schedule": tr.schedule.state_dict(),
            "scaler": tr.scaler.state_dict(), "loader": tr.train_loader.state_dict(),
            "per_rank": _per_rank(tr), "epoch": tr.epoch, "step": loop.step, "epoch_done": loop.epoch_done,
            "history": tr.history, "best_top1": tr.val.best_top1, "val_last": tr.val.last,
            "wall_time": tr.wall_before + time.perf_counter() - tr.wall_start}


def check_resume_data(tr, ck: dict, path) -> None:
    """Refuse to resume checkpoint ``ck`` (file ``path``) when trainer ``tr``'s data is not the data
    it was trained on (``--resume-other-data`` allows it, with a note)."""
    saved = ck.get("data_id")
    if saved is None or tr.data_id is None or saved == tr.data_id:  # older checkpoints: no record
        return
    if not tr.cfg.resume_other_data:
        raise ConfigError(f"--resume: {path} was trained on other data than {tr.cfg.data} holds now (re-packed "
                          f"or replaced: its images, labels or classes differ); to continue on this data "
                          f"anyway add --resume-other-data")
    tr.log(f"note: --resume-other-data: continuing {path} on other data than it was trained on ({tr.cfg.data})")


def restore_trainer(tr, ck: dict) -> None:
    """Restore a checkpoint written by :func:`trainer_state` (same config) into ``tr``."""
    tr.model.load_state_dict(ck["model"])
    if tr.ema is not None and ck.get("ema") is not None:
        tr.ema.load_state_dict(ck["ema"])
    tr.optimizer.load_state_dict(ck["optimizer"])
    tr.schedule.load_state_dict(ck["schedule"])
    tr.scaler.load_state_dict(ck["scaler"])
    tr.train_loader.load_state_dict(ck["loader"])
    mine = ck["per_rank"][tr.rank] if tr.rank < len(ck["per_rank"]) else ck["per_rank"][0]
    set_rng_state(mine["rng"], tr.device)
    tr.mixer.load_state_dict(mine["mixer"])
    loop = tr.loop
    tr.epoch, loop.step, loop.epoch_done = ck["epoch"], ck["step"], ck["epoch_done"]
    tr.history = list(ck["history"])
    tr.val.best_top1 = ck["best_top1"]
    tr.val.last = ck.get("val_last")  # the per-class table of a finished run's summary
    tr.wall_before = float(ck.get("wall_time", 0.0))
    acc = mine.get("acc", ck.get("epoch_acc"))  # epoch_acc: rank 0's sums, in older checkpoints
    if acc is not None and not loop.epoch_done:
        loop.running = Running(tr.device, **acc)
    tr.schedule.set_step(loop.step)

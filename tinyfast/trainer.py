"""The training loop: :class:`Trainer` (one run) plus the small pieces it is made of.

``train_one_epoch`` and :func:`evaluate` are small and separate. The step loop never waits for the
device except every ``log_every`` steps (progress bar) and at epoch ends: loss and accuracy are
accumulated in device tensors. AMP and channels-last need no branch in the loop
(``autocast(enabled=...)``, ``GradScaler(enabled=...)``, ``contiguous(memory_format=...)``).

Under DDP (``torch.distributed`` initialised by the caller, e.g. ``python -m tinyfast.train`` under
``torchrun``) every rank runs the same code on its shard; only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import platform
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from tinyfast.config import ConfigError, TrainConfig, parse_prog_resize
from tinyfast.metrics import (atomic_write_bytes, atomic_write_text, per_class_csv, per_class_table,
                              write_history)
from tinyfast.schedules import Schedule

__all__ = ["Trainer", "evaluate", "predict_probs", "EMA", "Mixer", "amp_settings", "build_optimizer",
           "save_checkpoint", "load_checkpoint", "model_from_checkpoint", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "tinyfast-checkpoint"
CHECKPOINT_VERSION = 1


# ----- precision ------------------------------------------------------------------------------------
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere oneDNN emulates
    it and bf16 autocast is slower than fp32 (measured 2-3x slower for ResNet-18 on AVX-512 cores)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def amp_settings(device: torch.device, amp: bool, amp_dtype: str = "auto") -> tuple[bool, torch.dtype, str]:
    """(autocast enabled, autocast dtype, note) for ``device``.

    ``auto``: bf16 on CUDA devices that support it, else fp16 (with a GradScaler); on CPU bf16 only
    where the CPU has native bf16, otherwise AMP stays off (the note says why).
    """
    if not amp:
        return False, torch.bfloat16, ""
    if amp_dtype == "bf16":
        return True, torch.bfloat16, ""
    if amp_dtype == "fp16":
        return True, torch.float16, ""
    if device.type == "cuda":
        return (True, torch.bfloat16, "") if torch.cuda.is_bf16_supported() else (True, torch.float16, "")
    if cpu_has_native_bf16():
        return True, torch.bfloat16, ""
    return False, torch.bfloat16, ("--amp: this CPU has no native bf16 (AVX512-BF16/AMX), where bf16 is "
                                   "slower than fp32; training in fp32 (force with --amp-dtype bf16)")


# ----- pieces of the step ---------------------------------------------------------------------------
class EMA:
    """Exponential moving average of a model's weights (buffers are copied, not averaged).

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the average is
    not dominated by the random initialisation in short runs.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = float(decay)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        mine = list(self.module.parameters())
        theirs = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(mine, theirs, 1.0 - d)
        for b, s in zip(self.module.buffers(), model.buffers()):
            b.copy_(s)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


class Mixer:
    """Mixup / CutMix on a device batch, with draws from its own seeded host generator (so a
    resumed run mixes exactly as the uninterrupted one would).

    ``__call__(x, y)`` returns ``(x, y_a, y_b, lam)``; ``y_b is None`` when the batch is not mixed.
    """

    def __init__(self, mixup: float, cutmix: float, prob: float, seed: int):
        self.mixup, self.cutmix, self.prob = float(mixup), float(cutmix), float(prob)
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.enabled = (self.mixup > 0 or self.cutmix > 0) and self.prob > 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        if not self.enabled or self.rng.random() >= self.prob:
            return x, y, None, 1.0
        use_cutmix = self.cutmix > 0 and (self.mixup <= 0 or self.rng.random() < 0.5)
        alpha = self.cutmix if use_cutmix else self.mixup
        lam = float(self.rng.beta(alpha, alpha))
        perm = torch.from_numpy(self.rng.permutation(x.shape[0])).to(x.device, non_blocking=True)
        if use_cutmix:
            h, w = x.shape[-2:]
            rh, rw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
            cy, cx = int(self.rng.integers(h)), int(self.rng.integers(w))
            y0, y1 = max(cy - rh // 2, 0), min(cy + rh - rh // 2, h)
            x0, x1 = max(cx - rw // 2, 0), min(cx + rw - rw // 2, w)
            x = x.clone()
            x[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)   # the area actually pasted
        else:
            x = x.mul(lam).add_(x[perm], alpha=1.0 - lam)
        return x, y, y[perm], lam

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer of ``cfg``; biases and normalisation weights (1-D tensors) get no weight decay."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    betas = (cfg.momentum, 0.999)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=betas)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas)
    if cfg.optimizer == "radam":
        return torch.optim.RAdam(groups, lr=cfg.lr, betas=betas, decoupled_weight_decay=True)
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}")


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ----- evaluation -----------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: nn.Module, loader, num_classes: int, *, autocast=contextlib.nullcontext,
             memory_format=torch.channels_last, progress: bool = False, desc: str = "eval") -> dict:
    """Loss (plain cross-entropy), top-1, top-5 and per-class counts of ``model`` over ``loader``.

    Accumulates on the device and synchronises once at the end. Under DDP the counts of all ranks
    are summed (the loaders' evaluation shards cover every sample exactly once).

    Returns:
        ``{"loss", "top1", "top5", "n", "per_class_correct" (np int64), "per_class_count"}``.
    """
    was_training = model.training
    model.eval()
    dev = loader.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    top5 = torch.zeros((), dtype=torch.int64, device=dev)
    correct = torch.zeros(num_classes, dtype=torch.int64, device=dev)
    count = torch.zeros(num_classes, dtype=torch.int64, device=dev)
    k = min(5, num_classes)
    for x, y in tqdm(loader, desc=desc, leave=False, disable=not progress, dynamic_ncols=True):
        x = x.contiguous(memory_format=memory_format)
        with autocast():
            out = model(x)
        out = out.float()
        loss_sum += F.cross_entropy(out, y, reduction="sum").double()
        pred = out.topk(k, dim=1).indices
        hit1 = pred[:, 0] == y
        top5 += (pred == y[:, None]).any(1).sum()
        correct += torch.bincount(y[hit1], minlength=num_classes)
        count += torch.bincount(y, minlength=num_classes)
    model.train(was_training)
    _, world = _dist()
    if world > 1:
        packed = torch.cat([loss_sum.view(1), top5.view(1).double(), correct.double(), count.double()])
        dist.all_reduce(packed)
        loss_sum, top5 = packed[0], packed[1].long()
        correct, count = packed[2:2 + num_classes].long(), packed[2 + num_classes:].long()
    n = int(count.sum().item())
    c = correct.cpu().numpy()
    return {"loss": float(loss_sum.item()) / max(n, 1), "top1": float(c.sum()) / max(n, 1),
            "top5": float(top5.item()) / max(n, 1), "n": n,
            "per_class_correct": c, "per_class_count": count.cpu().numpy()}


@torch.no_grad()
def predict_probs(model: nn.Module, loader, *, autocast=contextlib.nullcontext,
                  memory_format=torch.channels_last, tta: bool = False, progress: bool = False,
                  desc: str = "predict") -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities (float32, CPU, loader order) and labels of a whole (unsharded) loader.

    ``tta`` averages with the horizontally flipped image.
    """
    model.eval()
    probs, labels = [], []
    for x, y in tqdm(loader, desc=desc, leave=False, disable=not progress, dynamic_ncols=True):
        x = x.contiguous(memory_format=memory_format)
        with autocast():
            p = model(x).float().softmax(1)
            if tta:
                p = 0.5 * (p + model(x.flip(3)).float().softmax(1))
        probs.append(p.cpu())
        labels.append(y.cpu())
    return torch.cat(probs), torch.cat(labels)


# ----- checkpoints ----------------------------------------------------------------------------------
def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file next to ``path``, then ``os.replace``: never a torn file."""
    import io
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a tinyfast checkpoint (on CPU). Raises ``ValueError`` with one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint")
    try:
        # weights_only=False: the checkpoint holds numpy RNG state and plain dicts we wrote ourselves.
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"{path}: unreadable checkpoint ({e.__class__.__name__}: "
                         f"{(str(e).splitlines() or [''])[0]})") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a tinyfast checkpoint")
    return ck


def model_from_checkpoint(ck: dict, weights: str = "auto") -> nn.Module:
    """Rebuild the model of a checkpoint and load its weights (``ema``, ``raw`` or ``auto``)."""
    from tinyfast.models import get_model
    model = get_model(ck["arch"], num_classes=ck["num_classes"], **ck.get("model_kwargs", {}))
    if weights == "ema" and ck.get("ema") is None:
        raise ValueError("--weights ema: the checkpoint has no EMA weights (trained without --ema)")
    use_ema = weights in ("ema", "auto") and ck.get("ema") is not None
    model.load_state_dict(ck["ema"]["module"] if use_ema else ck["model"])
    return model.eval()


def _rng_state(device: torch.device) -> dict:
    st = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def _set_rng_state(st: dict, device: torch.device) -> None:
    torch.set_rng_state(st["torch"])
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)


# ----- the trainer ----------------------------------------------------------------------------------
class Trainer:
    """One training run of a resolved :class:`~tinyfast.config.TrainConfig`.

    Args:
        cfg: resolved config (no ``None`` in device/epochs/batch_size/lr/warmup/name).
        train_loader, val_loader: objects with the :func:`tinyfast.loaders.build` contract; built
            from ``cfg`` when omitted (``val_loader`` is then ``None`` if the data has no val split).
        classes, words: wnids and names for the per-class report (default: from the packed data).
        log: a callable for one-line messages (default: ``tqdm.write`` on rank 0).

    Use :meth:`fit`; :meth:`train_one_epoch` and :func:`evaluate` are usable on their own.
    """

    def __init__(self, cfg: TrainConfig, train_loader=None, val_loader=None, classes=None, words=None,
                 log=None):
        from tinyfast.models import get_model, init_weights, layer_groups, load_pretrained

        self.cfg = cfg
        self.rank, self.world = _dist()
        self.is_main = self.rank == 0
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True
            torch.set_float32_matmul_precision("high")  # TF32 matmuls/convs on Ampere+
        self.log = log or (lambda msg: tqdm.write(msg) if self.is_main else None)
        self.amp, self.amp_dtype, note = amp_settings(self.device, cfg.amp, cfg.amp_dtype)
        if note:
            self.log(f"note: {note}")
        self.autocast = partial(torch.autocast, device_type=self.device.type, dtype=self.amp_dtype,
                                enabled=self.amp)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.input_dtype = self.amp_dtype if self.amp else torch.float32

        # Data.
        self.train_loader = train_loader if train_loader is not None else self._build_loader("train")
        self.val_loader = val_loader if (val_loader is not None or train_loader is not None) \
            else self._build_loader("val")
        self.num_classes = int(self.train_loader.num_classes)
        self.classes, self.words = classes, words
        if self.classes is None and cfg.data:
            from tinyfast.data import open_packed
            sp = open_packed(cfg.data, "train")
            self.classes, self.words = list(sp.classes), list(sp.words)
        self.classes = list(self.classes or [str(i) for i in range(self.num_classes)])
        self.words = list(self.words or [""] * self.num_classes)
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise ConfigError(f"the training split has fewer samples per rank than one batch "
                              f"({self.train_loader.batch_size}); lower --batch-size")
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.prog_sizes = parse_prog_resize(cfg.prog_resize) if cfg.prog_resize else None

        # Model: same initialisation on every rank (DDP would broadcast rank 0's anyway).
        torch.manual_seed(cfg.seed)
        self.model_kwargs = {} if cfg.dropout is None else {"dropout": cfg.dropout}
        model = get_model(cfg.arch, num_classes=self.num_classes, **self.model_kwargs)
        init_weights(model, cfg.init)
        if cfg.pretrained:
            loaded, skipped = load_pretrained(model, cfg.pretrained)
            self.log(f"pretrained: loaded {len(loaded)} tensors from {cfg.pretrained}, kept "
                     f"{len(skipped)} fresh ({', '.join(skipped[:4])}{'...' if len(skipped) > 4 else ''})")
        if cfg.sync_bn and self.world > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.groups = layer_groups(self.model)
        self.trainable_groups = None
        self.optimizer = build_optimizer(self.model, cfg)
        self.schedule = Schedule(self.optimizer, cfg.schedule, cfg.lr, self.total_steps, self.steps_per_epoch,
                                 warmup_steps=round(cfg.warmup * self.steps_per_epoch), min_lr=cfg.min_lr,
                                 step_size=cfg.step_size, gamma=cfg.gamma, patience=cfg.patience,
                                 cycle_epochs=cfg.cycle_epochs)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp and self.amp_dtype == torch.float16)
        self.ema = EMA(self.model, cfg.ema) if cfg.ema > 0 else None
        self.mixer = Mixer(cfg.mixup, cfg.cutmix, cfg.mix_prob, seed=cfg.seed * 1000 + self.rank)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.fwd = self.model  # what the step calls: DDP and/or compiled wrapper, set by _wrap()

        # Progress.
        self.epoch = 0              # the epoch in progress (or next to run)
        self.step = 0               # optimizer steps done
        self.epoch_done = True      # False while an epoch is partially done (mid-epoch checkpoint)
        self.acc = None             # the running epoch's accumulators (device tensors + host floats)
        self.history: list[dict] = []
        self.best_top1 = -1.0
        self.last_eval: dict | None = None
        self.stopped_early = False
        self.run_dir = Path(cfg.out_dir) / cfg.name
        self.wall_start = time.perf_counter()
        self.wall_before = 0.0      # wall time of earlier (resumed) segments
        self._plotted = time.perf_counter()

    # ----- setup helpers --------------------------------------------------------------------------
    def _build_loader(self, split: str):
        from tinyfast.data import read_manifest
        from tinyfast.loaders import build
        cfg = self.cfg
        if split != "train" and split not in read_manifest(cfg.data).get("splits", {}):
            return None
        per_rank = cfg.batch_size // self.world if split == "train" else cfg.eval_batch_size
        return build(cfg.loader, cfg.data, split, per_rank, device=self.device,
                     policy=cfg.aug if split == "train" else None, seed=cfg.seed, rank=self.rank,
                     world_size=self.world, dtype=self.input_dtype, num_workers=cfg.workers)

    def _wrap(self) -> None:
        """(Re)build the DDP / compile wrappers. DDP registers the parameters that require grad at
        construction, so it is rebuilt whenever layer-wise unfreezing changes that set."""
        fwd = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            fwd = DDP(fwd, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.cfg.compile:
            fwd = torch.compile(fwd)
        self.fwd = fwd

    def _apply_freeze(self, epoch: int) -> None:
        cfg = self.cfg
        if not cfg.freeze:
            n = len(self.groups)
        else:
            n = 1 + (epoch // cfg.unfreeze_every if cfg.unfreeze_every else 0)
            n = min(n, len(self.groups))
        if n != self.trainable_groups:
            for i, g in enumerate(self.groups):
                for p in g:
                    p.requires_grad_(i < n)
            if cfg.freeze:
                self.log(f"epoch {epoch + 1}: training the top {n} of {len(self.groups)} layer groups")
            self.trainable_groups = n
            self._wrap()

    def image_size(self, epoch: int) -> int:
        """Training image size of ``epoch`` (progressive resizing: equal-length phases)."""
        full = int(getattr(self.train_loader, "height", 0) or 0)
        if not self.prog_sizes:
            return full
        phase = min(len(self.prog_sizes) - 1, epoch * len(self.prog_sizes) // self.cfg.epochs)
        return self.prog_sizes[phase]

    def _set_train_size(self, size: int) -> bool:
        """Ask the loader for ``size`` px output; returns True if the trainer must resize instead."""
        full = int(getattr(self.train_loader, "height", 0) or 0)
        if getattr(self.train_loader, "can_resize", False):
            self.train_loader.set_out_size(None if size == full else (size, size))
            return False
        return bool(size) and size != full

    # ----- one epoch ------------------------------------------------------------------------------
    def _fresh_acc(self) -> dict:
        z = partial(torch.zeros, (), device=self.device)
        return {"loss": z(dtype=torch.float32), "correct": z(dtype=torch.int64), "n": 0, "seconds": 0.0}

    def train_one_epoch(self, epoch: int) -> dict | None:
        """Train one epoch (or its remainder after a mid-epoch resume).

        Returns the epoch's training metrics, or ``None`` when ``--stop-at-step`` interrupted it.
        """
        cfg, loader = self.cfg, self.train_loader
        size = self.image_size(epoch)
        resize = self._set_train_size(size)
        loader.set_epoch(epoch)
        self.fwd.train()
        if self.acc is None:
            self.acc = self._fresh_acc()
        acc = self.acc
        start = self.step - epoch * self.steps_per_epoch
        bar = tqdm(total=self.steps_per_epoch, initial=start, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not (cfg.progress and self.is_main), leave=False, dynamic_ncols=True)
        window_loss = torch.zeros((), device=self.device)
        window_n = 0
        t0 = time.perf_counter()
        n_at_t0 = acc["n"]
        self.epoch_done = False
        stop = False
        for x, y in loader:
            if resize:
                # The loader cannot produce smaller images: downscale the batch (antialiased).
                x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True,
                                  align_corners=False).to(x.dtype)
            x = x.contiguous(memory_format=self.memory_format)
            x, y_a, y_b, lam = self.mixer(x, y)
            self.schedule.set_step(self.step)
            with self.autocast():
                out = self.fwd(x)
                loss = self.criterion(out, y_a)
                if y_b is not None:
                    loss = lam * loss + (1.0 - lam) * self.criterion(out, y_b)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(self.model)
            # Device-side accumulation: no host sync here.
            loss_d = loss.detach().float()
            acc["loss"] += loss_d * y.shape[0]
            acc["correct"] += (out.detach().argmax(1) == y).sum()
            acc["n"] += y.shape[0]
            window_loss += loss_d
            window_n += 1
            self.step += 1
            bar.update(1)
            if window_n == cfg.log_every:
                # One sync every log_every steps, for the bar.
                rate = (acc["n"] - n_at_t0) / max(time.perf_counter() - t0, 1e-9) * self.world
                bar.set_postfix(loss=f"{window_loss.item() / window_n:.3f}", img_s=f"{rate:.0f}",
                                lr=f"{self.schedule.last_lr:.3g}")
                window_loss.zero_()
                window_n = 0
            if cfg.stop_at_step is not None and self.step >= cfg.stop_at_step:
                stop = True
                break
        # Waits for the device: the epoch time below is honest.
        loss_sum, correct = acc["loss"].item(), acc["correct"].item()
        acc["seconds"] += time.perf_counter() - t0
        bar.close()
        if stop and self.step < (epoch + 1) * self.steps_per_epoch:
            self.stopped_early = True
            return None
        self.stopped_early = stop
        self.epoch_done = True
        n = max(acc["n"], 1)
        if self.world > 1:
            t = torch.tensor([loss_sum, correct, acc["n"]], dtype=torch.float64, device=self.device)
            dist.all_reduce(t)
            loss_sum, correct, n = t[0].item(), t[1].item(), max(t[2].item(), 1)
        metrics = {"train_loss": loss_sum / n, "train_top1": correct / n, "image_size": size,
                   "img_per_s": acc["n"] * self.world / max(acc["seconds"], 1e-9),
                   "epoch_time": acc["seconds"], "lr": self.schedule.last_lr}
        self.acc = None
        return metrics

    # ----- the run --------------------------------------------------------------------------------
    def eval_model(self) -> nn.Module:
        """The weights evaluated: the EMA's when enabled, else the model's."""
        return self.ema.module if self.ema is not None else self.model

    def fit(self) -> dict:
        """Train for the remaining epochs, evaluating, logging and checkpointing; returns the summary."""
        cfg = self.cfg
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._write_config()
        first = self.epoch
        for epoch in range(first, cfg.epochs):
            self.epoch = epoch
            self._apply_freeze(epoch)
            metrics = self.train_one_epoch(epoch)
            if metrics is None:
                self.save("last.pt")
                self.log(f"stopped at step {self.step} (--stop-at-step); resume with --resume "
                         f"{self.run_dir / 'last.pt'}")
                return self.summary(final=False)
            row = {"epoch": epoch + 1, "step": self.step, **metrics}
            if self.val_loader is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                t0 = time.perf_counter()
                ev = evaluate(self.eval_model(), self.val_loader, self.num_classes, autocast=self.autocast,
                              memory_format=self.memory_format, progress=cfg.progress and self.is_main)
                row.update(val_loss=ev["loss"], val_top1=ev["top1"], val_top5=ev["top5"],
                           eval_time=time.perf_counter() - t0)
                self.last_eval = ev
                self.schedule.epoch_end(ev["top1"])
            self.history.append(row)
            self.epoch = epoch + 1
            improved = row.get("val_top1", -1.0) > self.best_top1 or self.val_loader is None
            if improved:
                self.best_top1 = row.get("val_top1", self.best_top1)
            self._log_epoch(row)
            if self.is_main:
                write_history(self.history, self.run_dir)
                # Drawing takes ~0.5-1 s: at most once a minute, and after the last epoch.
                if epoch + 1 == cfg.epochs or self.stopped_early or time.perf_counter() - self._plotted > 60:
                    self._plot()
            self.save("last.pt", also_best=improved)
            if self.stopped_early:
                return self.summary(final=False)
        return self.summary(final=True)

    def _plot(self) -> None:
        try:
            from tinyfast.plots import plot_history
            plot_history(self.history, self.run_dir / "curves.png", title=f"{self.cfg.arch} ({self.cfg.name})")
        except Exception as e:  # a plotting problem must never kill a training run
            self.log(f"warning: could not draw curves.png ({e.__class__.__name__}: {e})")
        self._plotted = time.perf_counter()

    def _log_epoch(self, r: dict) -> None:
        val = (f"  val loss {r['val_loss']:.3f} top-1 {100 * r['val_top1']:.2f}% top-5 {100 * r['val_top5']:.2f}%"
               if "val_top1" in r else "")
        self.log(f"epoch {r['epoch']}/{self.cfg.epochs}  train loss {r['train_loss']:.3f} "
                 f"top-1 {100 * r['train_top1']:.2f}%{val}  lr {r['lr']:.3g}  {r['img_per_s']:.0f} img/s  "
                 f"{r['epoch_time']:.1f}s" + (f"  ({r['image_size']}px)" if self.prog_sizes else ""))

    def _write_config(self) -> None:
        info = {"config": dataclasses.asdict(self.cfg),
                "environment": {"torch": torch.__version__, "python": platform.python_version(),
                                "device": (torch.cuda.get_device_name(self.device)
                                           if self.device.type == "cuda" else platform.processor() or "cpu"),
                                "cuda": torch.version.cuda, "world_size": self.world,
                                "amp": str(self.amp_dtype).replace("torch.", "") if self.amp else "off",
                                "argv": sys.argv},
                "num_classes": self.num_classes, "steps_per_epoch": self.steps_per_epoch}
        atomic_write_text(self.run_dir / "config.json", json.dumps(info, indent=2) + "\n")

    def summary(self, final: bool) -> dict:
        """Final figures; when ``final``, also writes ``per_class.csv`` and ``summary.json`` (rank 0)."""
        last = self.history[-1] if self.history else {}
        out = {"run_dir": str(self.run_dir), "epochs": self.epoch, "step": self.step,
               "best_val_top1": self.best_top1 if self.best_top1 >= 0 else None,
               "final": {k: v for k, v in last.items()},
               "wall_time": self.wall_before + time.perf_counter() - self.wall_start}
        if final and self.last_eval is not None:
            table = per_class_table(self.last_eval["per_class_correct"], self.last_eval["per_class_count"],
                                    self.classes, self.words)
            out["best_classes"], out["worst_classes"] = table["best"], table["worst"]
            if self.is_main:
                atomic_write_text(self.run_dir / "per_class.csv", per_class_csv(table))
                fmt = lambda rs: ", ".join(f"{r['class']} {r['words'].split(',')[0]} {100 * r['accuracy']:.0f}%"
                                           for r in rs)
                self.log(f"best classes:  {fmt(table['best'])}")
                self.log(f"worst classes: {fmt(table['worst'])}")
        if final and self.is_main:
            atomic_write_text(self.run_dir / "summary.json", json.dumps(out, indent=2, default=float) + "\n")
        return out

    # ----- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly (all ranks' RNG states included)."""
        local = {"rng": _rng_state(self.device), "mixer": self.mixer.state_dict()}
        if self.world > 1:
            per_rank: list[Any] = [None] * self.world
            dist.all_gather_object(per_rank, local)
        else:
            per_rank = [local]
        acc = None
        if self.acc is not None:
            acc = {"loss": self.acc["loss"].item(), "correct": self.acc["correct"].item(),
                   "n": self.acc["n"], "seconds": self.acc["seconds"]}
        return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                "config": dataclasses.asdict(self.cfg), "arch": self.cfg.arch, "num_classes": self.num_classes,
                "model_kwargs": self.model_kwargs, "classes": self.classes, "words": self.words,
                "mean": list(getattr(self.train_loader, "mean", ())), "std": list(getattr(self.train_loader, "std", ())),
                "data": self.cfg.data,
                "model": self.model.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
                "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(), "loader": self.train_loader.state_dict(),
                "per_rank": per_rank, "epoch": self.epoch, "step": self.step, "epoch_done": self.epoch_done,
                "epoch_acc": acc, "history": self.history, "best_top1": self.best_top1,
                "wall_time": self.wall_before + time.perf_counter() - self.wall_start}

    def save(self, name: str = "last.pt", also_best: bool = False) -> None:
        state = self.state_dict()  # collective under DDP: every rank calls it
        if self.is_main:
            save_checkpoint(state, self.run_dir / name)
            if also_best:
                save_checkpoint(state, self.run_dir / "best.pt")

    def load_state_dict(self, ck: dict) -> None:
        """Restore a checkpoint written by :meth:`state_dict` (same config)."""
        self.model.load_state_dict(ck["model"])
        if self.ema is not None and ck.get("ema") is not None:
            self.ema.load_state_dict(ck["ema"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.schedule.load_state_dict(ck["schedule"])
        self.scaler.load_state_dict(ck["scaler"])
        self.train_loader.load_state_dict(ck["loader"])
        mine = ck["per_rank"][self.rank] if self.rank < len(ck["per_rank"]) else ck["per_rank"][0]
        _set_rng_state(mine["rng"], self.device)
        self.mixer.load_state_dict(mine["mixer"])
        self.epoch, self.step, self.epoch_done = ck["epoch"], ck["step"], ck["epoch_done"]
        self.history = list(ck["history"])
        self.best_top1 = ck["best_top1"]
        self.wall_before = float(ck.get("wall_time", 0.0))
        if ck.get("epoch_acc") is not None and not self.epoch_done:
            a = ck["epoch_acc"]
            self.acc = {"loss": torch.tensor(a["loss"], dtype=torch.float32, device=self.device),
                        "correct": torch.tensor(a["correct"], dtype=torch.int64, device=self.device),
                        "n": a["n"], "seconds": a["seconds"]}
        self.schedule.set_step(self.step)

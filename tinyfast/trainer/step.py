"""One optimisation step and its parts: the optimizer, mixing (mixup/CutMix), the EMA of the
weights, and :class:`TrainStep` (forward under autocast, loss, scaled backward, update)."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from tinyfast.config import ConfigError, TrainConfig

__all__ = ["EMA", "Mixer", "build_optimizer", "TrainStep", "all_finite"]


@torch.no_grad()
def all_finite(module: nn.Module) -> bool:
    """True when every parameter of ``module`` is finite (one device read for all of them)."""
    params = [p for p in module.parameters()]
    return not params or bool(torch.stack(torch._foreach_norm(params)).isfinite().all())


class EMA:
    """Exponential moving average of a model's weights and of its floating-point buffers (BatchNorm
    running statistics: the raw model's belong to the raw weights, not to the averaged ones);
    integer buffers (``num_batches_tracked``) are copied.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the average is
    not dominated by the random initialisation in short runs.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = float(decay)
        self.updates = 0
        buffers = list(self.module.buffers())
        self._averaged = [i for i, b in enumerate(buffers) if b.is_floating_point()]
        self._copied = [i for i, b in enumerate(buffers) if not b.is_floating_point()]
        self.averaged = [buffers[i] for i in self._averaged]
        self.copied = [buffers[i] for i in self._copied]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights and statistics."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        theirs = list(model.buffers())
        # One launch per kind (a per-buffer copy_ was 483 launches a step for DenseNet-161).
        torch._foreach_lerp_(list(self.module.parameters()) + self.averaged,
                             list(model.parameters()) + [theirs[i] for i in self._averaged], 1.0 - d)
        if self.copied:
            torch._foreach_copy_(self.copied, [theirs[i] for i in self._copied])

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
    """The optimizer of ``cfg``; biases and normalisation weights (1-D tensors) get no weight decay.

    ``--weight-decay d`` is torch's: coupled for SGD, Adam and RAdam (``d * w`` added to the
    gradient, i.e. an L2 loss term ``(d / 2) * sum(w^2)``; Keras' ``l2(c)`` is ``d = 2c``),
    decoupled for AdamW (``w -= lr * d * w`` beside the Adam step).

    SGD/Adam/AdamW are the fused implementations on CPU and CUDA: one kernel for all parameters,
    and GradScaler hands them its inf check on the device instead of reading it to the host every
    step (what it does for an optimizer without AMP support). RAdam has no fused kernel, and fused
    SGD cannot take parameters that start training later (``--unfreeze-every``: momentum buffers
    missing for some of a group): foreach there.
    """
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    devices = {p.device.type for p in model.parameters()}
    fast = {"fused": True} if devices <= {"cpu", "cuda"} and not cfg.freeze else {"foreach": True}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0, **fast)
    betas = (cfg.momentum, 0.999)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=betas, **fast)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, **fast)
    if cfg.optimizer == "radam":
        # Coupled, like Adam's: the Skoltech report's "weight_decay=0.0001 ... as L2 penalty".
        return torch.optim.RAdam(groups, lr=cfg.lr, betas=betas, decoupled_weight_decay=False, foreach=True)
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}")


class TrainStep:
    """Forward (under ``autocast``), loss (mixed when the :class:`Mixer` mixes), scaled backward,
    optimizer step, GradScaler update and EMA update, for one batch.

    ``fwd`` is what the forward calls (the model, or its DDP/compiled wrapper); ``model`` is what
    the EMA follows. Returns the detached float loss and logits: nothing here reads the device.
    """

    def __init__(self, model: nn.Module, optimizer, scaler, criterion, autocast, mixer: Mixer,
                 ema: EMA | None = None):
        self.model = self.fwd = model
        self.compiling = False      # True until the first step through a fresh torch.compile wrapper
        self.optimizer, self.scaler, self.criterion = optimizer, scaler, criterion
        self.autocast, self.mixer, self.ema = autocast, mixer, ema

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y_a, y_b, lam = self.mixer(x, y)
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
        return loss.detach().float(), out.detach()

"""Building a run's parts from its config: loaders, class names, the model (init, pretrained
weights, sync-BN), and what changes between epochs (:class:`Phases`: layer-wise unfreezing and
progressive resizing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from tinyfast.config import ConfigError, TrainConfig
from tinyfast.phases import epoch_phases, loader_phases, steps_until
from tinyfast.schedules import Schedule
from tinyfast.trainer.step import EMA, Mixer, TrainStep, build_optimizer

__all__ = ["setup_device", "RunData", "build_data", "build_loader", "class_names", "build_model", "model_kwargs", "build_step", "wrap_model", "Phases",
           "trainable_groups", "epoch_steps"]


def setup_device(name: str) -> torch.device:
    """The run's device, made current; on CUDA with cuDNN autotuning and TF32 matmuls/convs.
    ``cuda`` without an index is the current GPU (``torch.cuda.set_device`` needs an index; under
    torchrun the current one is LOCAL_RANK's)."""
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    return device


def build_loader(cfg: TrainConfig, split: str, *, device: torch.device, rank: int, world: int,
                 dtype: torch.dtype):
    """The loader of ``split`` (``None`` for a missing evaluation split)."""
    from tinyfast.data import read_manifest
    from tinyfast.loaders import build
    if split != "train" and split not in read_manifest(cfg.data).get("splits", {}):
        return None
    per_rank = cfg.batch_size // world if split == "train" else cfg.eval_batch_size
    phases = loader_phases(cfg, world) if split == "train" and cfg.phases else None
    return build(cfg.loader, cfg.data, split, per_rank, device=device,
                 policy=cfg.aug if split == "train" else None, seed=cfg.seed, rank=rank,
                 world_size=world, dtype=dtype, num_workers=cfg.workers, normalize=cfg.normalize,
                 per_class=cfg.subset, phases=phases)


def epoch_steps(loader, epochs: int) -> list[int]:
    """Steps of each of ``epochs`` epochs: a phased loader's own count per epoch, else ``len(loader)``."""
    at = getattr(loader, "batches_at", None)
    return [at(e) for e in range(epochs)] if at is not None else [len(loader)] * epochs


@dataclass
class RunData:
    """A run's data: loaders (``val_loader`` None without a val split), classes, steps per epoch (the
    first epoch's; ``epoch_steps``: every epoch's)."""
    train_loader: Any
    val_loader: Any
    num_classes: int
    classes: list[str]
    words: list[str]
    steps_per_epoch: int
    data_id: str | None = None  # tinyfast.data.data_identity of cfg.data (None without packed data)
    epoch_steps: list[int] | None = None


def build_data(cfg: TrainConfig, train_loader=None, val_loader=None, classes=None, words=None, *,
               device: torch.device, rank: int, world: int, dtype: torch.dtype,
               log: Callable[[str], None]) -> RunData:
    """The given loaders, or those of ``cfg`` (when ``train_loader`` is given, ``val_loader`` is
    taken as given, even ``None``). Warns when there is nothing to validate on."""
    make = lambda split: build_loader(cfg, split, device=device, rank=rank, world=world, dtype=dtype)
    train = train_loader if train_loader is not None else make("train")
    val = val_loader if (val_loader is not None or train_loader is not None) else make("val")
    if val is not None and len(val) == 0:
        val = None
    if val is None:
        log(f"warning: {cfg.data or 'the data'} has no val split: nothing is validated, and best.pt is "
            f"the epoch with the lowest train loss")
    num_classes = int(train.num_classes)
    if len(train) == 0:
        raise ConfigError(f"the training split has fewer samples per rank than one batch "
                          f"({train.batch_size}); lower --batch-size")
    steps = epoch_steps(train, cfg.epochs)
    if min(steps) == 0:
        raise ConfigError(f"--phases: epoch {steps.index(0) + 1}'s batch is larger than the training split "
                          f"per rank; lower it")
    return RunData(train, val, num_classes, *class_names(cfg, num_classes, classes, words), len(train),
                   _data_id(cfg), steps)


def _data_id(cfg: TrainConfig) -> str | None:
    from tinyfast.data import PackError, data_identity, read_manifest
    try:
        return data_identity(read_manifest(cfg.data)) if cfg.data else None
    except PackError:  # loaders given by the caller, on data that is not a packed set
        return None


def class_names(cfg: TrainConfig, num_classes: int, classes=None, words=None) -> tuple[list[str], list[str]]:
    """(wnids, words) for the per-class report: given, else from the packed data, else indices."""
    if classes is None and cfg.data:
        from tinyfast.data import open_packed
        sp = open_packed(cfg.data, "train")
        classes, words = list(sp.classes), list(sp.words)
    return (list(classes or [str(i) for i in range(num_classes)]),
            list(words or [""] * num_classes))


def model_kwargs(cfg: TrainConfig) -> dict:
    """The keywords ``cfg`` builds its model with (recorded in the checkpoint)."""
    kw = {} if cfg.dropout is None else {"dropout": cfg.dropout}
    if cfg.stem is not None:
        kw["stem"] = cfg.stem
    return kw


def build_model(cfg: TrainConfig, num_classes: int, *, world: int,
                log: Callable[[str], None]) -> tuple[nn.Module, dict, set[str]]:
    """The initialised model (same on every rank: seeded), the keywords it was built with, and
    the names of the parameters ``--pretrained`` left fresh (empty without it)."""
    from tinyfast.models import get_model, init_weights
    torch.manual_seed(cfg.seed)
    kwargs = model_kwargs(cfg)
    model = get_model(cfg.arch, num_classes=num_classes, **kwargs)
    init_weights(model, cfg.init)
    fresh = _load_weights(model, cfg, log) if cfg.pretrained else set()
    if cfg.sync_bn and world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model, kwargs, fresh


def _load_weights(model: nn.Module, cfg: TrainConfig, log: Callable[[str], None]) -> set[str]:
    """``--pretrained``: load what fits, say what was loaded and what not; returns the names of
    the parameters left fresh."""
    from tinyfast.models import load_pretrained, resolve_pretrained
    path = resolve_pretrained(cfg.pretrained, cfg.arch)
    loaded, _ = load_pretrained(model, path)
    took = set(loaded)
    fresh = [k for k in model.state_dict() if k not in took]
    log(f"pretrained: loaded {len(loaded)} of {len(loaded) + len(fresh)} tensors from {path}; kept "
        f"{len(fresh)} fresh ({', '.join(fresh[:4])}{'...' if len(fresh) > 4 else ''})"
        + ("; the fresh ones train from the first epoch" if cfg.freeze else ""))
    return {n for n, _ in model.named_parameters() if n not in took}


def build_step(cfg: TrainConfig, model: nn.Module, autocast, *, fp16: bool, device: torch.device,
               epoch_steps: list[int], rank: int) -> tuple[TrainStep, Schedule]:
    """The step (optimizer, GradScaler when ``fp16``, EMA, mixing, loss) and the LR schedule over
    epochs of ``epoch_steps`` steps each."""
    optimizer = build_optimizer(model, cfg)
    schedule = Schedule(optimizer, cfg.schedule, cfg.lr, sum(epoch_steps), epoch_steps[0],
                        warmup_steps=steps_until(epoch_steps, cfg.warmup), min_lr=cfg.min_lr,
                        step_size=cfg.step_size, gamma=cfg.gamma, patience=cfg.patience,
                        cycle_epochs=cfg.cycle_epochs,
                        epoch_steps=epoch_steps if len(set(epoch_steps)) > 1 else None)
    step = TrainStep(model, optimizer, torch.amp.GradScaler(device.type, enabled=fp16),
                     nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), autocast,
                     Mixer(cfg.mixup, cfg.cutmix, cfg.mix_prob, seed=cfg.seed * 1000 + rank),
                     EMA(model, cfg.ema) if cfg.ema > 0 else None)
    return step, schedule


def wrap_model(model: nn.Module, *, compile: bool, world: int, device: torch.device) -> nn.Module:
    """What the step calls: ``model`` under DDP and/or ``torch.compile``. DDP registers the
    parameters that require grad at construction, so it is rebuilt when unfreezing changes them."""
    fwd = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        fwd = DDP(fwd, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(fwd) if compile else fwd


def trainable_groups(cfg: TrainConfig, n_groups: int, epoch: int) -> int:
    """How many layer groups (from the head down) train in ``epoch`` (0-based): all of them
    without ``--freeze``; with it the head, plus ``--unfreeze-groups`` more (0: all) every
    ``--unfreeze-every`` epochs."""
    if not cfg.freeze or not n_groups:
        return n_groups
    steps = epoch // cfg.unfreeze_every if cfg.unfreeze_every else 0
    per_step = getattr(cfg, "unfreeze_groups", 1) or n_groups
    return min(n_groups, 1 + steps * per_step)


class Phases:
    """What changes between epochs: how many layer groups train (``--freeze``,
    ``--unfreeze-every``) and the training image size (``--prog-resize``, ``--phases``; a phase's
    batch size and augmentation are the train loader's, :func:`build_loader`).

    ``on_change`` is called after the trainable set changed (DDP must then be rebuilt). ``fresh``
    names the parameters ``--pretrained`` left at their fresh init: they always train.
    """

    def __init__(self, cfg: TrainConfig, model: nn.Module, loader, log: Callable[[str], None],
                 on_change: Callable[[], None], fresh: set[str] = frozenset()):
        from tinyfast.models import layer_groups
        self.cfg, self.model, self.loader, self.log, self.on_change = cfg, model, loader, log, on_change
        self.groups = layer_groups(model)
        self.fresh = {id(p) for n, p in model.named_parameters() if n in fresh}
        self.trainable_groups: int | None = None
        self.sizes = bool(cfg.prog_resize or getattr(cfg, "phases", None))  # whether the size changes (logged)
        full = int(getattr(loader, "height", 0) or 0)
        self.plan = [p for _, p in epoch_phases(cfg, full)] if self.sizes else None

    def apply_freeze(self, epoch: int) -> None:
        """Set ``requires_grad`` for ``epoch``'s trainable groups (head first)."""
        cfg = self.cfg
        n = trainable_groups(cfg, len(self.groups), epoch)
        if n == self.trainable_groups:
            return
        for i, g in enumerate(self.groups):
            for p in g:
                p.requires_grad_(i < n or id(p) in self.fresh)
        if cfg.freeze:
            self.log(f"epoch {epoch + 1}: training the top {n} of {len(self.groups)} layer groups")
        self.trainable_groups = n
        self.on_change()

    def frozen_norms(self) -> list[nn.Module]:
        """The BatchNorm layers whose parameters are all frozen: they run in eval mode while
        training, so a frozen layer's running statistics stay what was loaded."""
        return [m for m in self.model.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None
                and not any(p.requires_grad for p in m.parameters())]

    def image_size(self, epoch: int) -> int:
        """Training image size of ``epoch`` (``--prog-resize`` / ``--phases``)."""
        if not self.plan:
            return int(getattr(self.loader, "height", 0) or 0)
        return self.plan[min(epoch, len(self.plan) - 1)].size

    def input_shape(self, epoch: int) -> tuple[int, int | None]:
        """(image size, phase batch) of ``epoch``: what ``torch.compile`` compiles the model for
        (batch ``None`` without ``--prog-resize`` / ``--phases``: the run's own all along)."""
        return self.image_size(epoch), self.plan[min(epoch, len(self.plan) - 1)].batch if self.plan else None

    def set_train_size(self, size: int) -> bool:
        """Ask the loader for ``size`` px output; returns True if the loop must resize instead."""
        full = int(getattr(self.loader, "height", 0) or 0)
        if getattr(self.loader, "can_resize", False):
            self.loader.set_out_size(None if size == full else (size, size))
            return False
        return bool(size) and size != full

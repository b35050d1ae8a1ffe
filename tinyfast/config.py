"""Command configurations: one frozen dataclass per command, which generates its argparse options.

Each field becomes ``--field-name``; its type, default, help and choices come from the field
(``metadata``: ``help``, ``choices`` -- a list or a zero-argument callable read when the parser is
built, so registries stay the single source of truth -- ``type`` to override the converter,
``nargs``/``const``/``metavar``). ``bool`` fields become ``--x/--no-x`` switches. ``None`` defaults
mean "chosen at run time" (see :func:`resolve_train_config`); the resolved config is what a run
saves as ``config.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import time
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from tinyfast._util import number
# Re-exported: every CLI's one-line errors and exit statuses live in tinyfast.errors.
from tinyfast.errors import ConfigError, RunError, run_command  # noqa: F401
from tinyfast.phases import check_phases, parse_prog_resize, phase_epochs, phases_arg, prog_resize_arg  # noqa: F401

__all__ = ["TrainConfig", "EvalConfig", "PredictConfig", "ConfigError", "build_parser", "config_from_args",
           "explicit_fields", "set_fields", "resolve_train_config", "resolve_device", "validate_config", "RunError", "number", "parse_prog_resize", "OPTIMIZERS", "SCHEDULES",
           "INITS", "AMP_DTYPES", "run_command"]

OPTIMIZERS = ("sgd", "adam", "adamw", "radam")
SCHEDULES = ("onecycle", "cosine", "step", "plateau", "cyclic", "constant")
INITS = ("default", "he", "xavier")
AMP_DTYPES = ("auto", "bf16", "fp16")


def opt(default, help: str, **meta) -> Any:
    """A dataclass field carrying its CLI help (and optional choices/type/nargs/const/metavar)."""
    return field(default=default, metadata={"help": help, **meta})


# ----- converters (argparse reports their errors as "invalid <name> value") ------------------------
def _arch(value: str) -> str:
    from tinyfast.models import is_known, list_models
    if not is_known(value):
        raise argparse.ArgumentTypeError(
            f"unknown model {value!r} (choose one of: {', '.join(list_models())}; or tv:<torchvision name>)")
    return value


_positive_int = number(int, lo=1)
_nonneg_int = number(int, lo=0)
_nonneg_float = number(float, lo=0)
_fraction = number(float, lo=0, hi=1, hi_open=True)
_probability = number(float, lo=0, hi=1)


def _pretrained(value: str) -> str | None:
    """``--pretrained``: ``none`` trains from scratch (overriding a recipe's weights)."""
    return None if value.lower() == "none" else value


def _device(value: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` (whether it exists is checked when the command runs)."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", value):
        raise argparse.ArgumentTypeError(f"unknown device {value!r} (choose cpu, cuda or cuda:N)")
    return value


def resolve_device(name: str | None, *, cuda_count: int, local_rank: int = 0) -> str:
    """The device to run on: ``name``, or ``cuda:LOCAL_RANK`` when there is a GPU, else ``cpu``.

    Raises:
        ConfigError: ``name`` is not a device or names a GPU this machine does not have.
    """
    name = _check_field(TrainConfig, "device", name) if name is not None else None
    device = name or (f"cuda:{local_rank}" if cuda_count else "cpu")
    if device.startswith("cuda"):
        if not cuda_count:
            raise ConfigError(f"--device {device}: CUDA is not available on this machine")
        index = int(device.partition(":")[2] or 0)
        if index >= cuda_count:
            raise ConfigError(f"--device {device}: this machine has {cuda_count} GPU(s) (cuda:0..cuda:{cuda_count - 1})")
    return device


_LOADER_HELP = "data loader (gpu: the split device-resident, in GPU memory or, on a CPU, host memory)"


def _loaders() -> list[str]:
    from tinyfast.loaders import list_loaders
    return list_loaders()


def _presets() -> list[str]:
    from tinyfast.augment import PRESETS
    return sorted(PRESETS)


def _aug(value: str) -> str:
    """``PRESET`` or ``PRESET+PRESET+...`` (one pass of the split per set each epoch)."""
    names = _presets()
    bad = [v for v in value.split("+") if v not in names]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown augmentation preset {bad[0]!r} (choose from {', '.join(names)}; "
                                         f"A+B for a pass per set each epoch)")
    return value


def _recipes() -> list[str]:
    from tinyfast.recipes import list_recipes
    return list_recipes()


PROGRESS_HELP = ("progress bars on a terminal; --no-progress (or output to a file/pipe): a plain "
                 "progress line every --progress-every seconds instead")
PROGRESS_EVERY_HELP = "seconds between plain progress lines when there is no bar (0 = none)"


@dataclass(frozen=True)
class TrainConfig:
    """``python -m tinyfast.train``: train one model on a packed dataset."""

    recipe: str | None = opt(None, "named preset of the settings below (see --list-recipes); explicit "
                                   "flags override it", choices=_recipes)
    arch: str = opt("resnet18", "model name (see --list) or tv:<torchvision classifier>", type=_arch)
    data: str | None = opt(None, "packed dataset directory (default: the built-in synthetic set, "
                                 "created on first use; small when there is no GPU)")
    subset: int | None = opt(None, "train and validate on the first N images of each class only (a quick "
                                   "run on real data; default: all)", type=_positive_int, metavar="N")
    loader: str = opt("gpu", _LOADER_HELP, choices=_loaders)
    device: str | None = opt(None, "cpu or cuda[:i] (default: cuda when available; DDP: cuda:LOCAL_RANK)",
                             type=_device)
    epochs: int | None = opt(None, "epochs (default: 30 on a GPU, 3 on CPU)", type=_positive_int)
    batch_size: int | None = opt(None, "GLOBAL batch size, split across DDP ranks (default: 512 on a "
                                       "GPU, 32 on CPU)", type=_positive_int)
    eval_batch_size: int | None = opt(None, "evaluation batch size per rank (default: 2x batch size per rank)",
                                      type=_positive_int)
    workers: int | None = opt(None, "loader worker processes/threads where the loader has any (default: the CPU "
                                    "cores this process may use; torch/torch-npy: 0 = in the main process)",
                              type=int)
    aug: str = opt("standard", "augmentation preset (tinyfast.augment.PRESETS); A+B: each epoch one pass of "
                               "the split per set, so twice the steps", type=_aug, metavar="PRESET[+PRESET]")
    normalize: str = opt("channel", "normalisation: per-channel mean/std, mean-image (subtract the train "
                                     "split's mean image, computed from the packed data; then divide by the std), "
                                     "or mean-image-only (subtract it, no division)",
                         choices=("channel", "mean-image", "mean-image-only"))
    optimizer: str = opt("sgd", "optimizer (sgd is Nesterov by default)", choices=OPTIMIZERS)
    lr: float | None = opt(None, "peak learning rate for the GLOBAL batch B (default: sgd 0.2 x sqrt(B/512), "
                                 "adam-type 2e-3 x sqrt(B/512))", type=_nonneg_float)
    momentum: float = opt(0.9, "SGD momentum / Adam beta1", type=_fraction)
    nesterov: bool = opt(True, "Nesterov momentum (SGD)")
    weight_decay: float = opt(5e-4, "weight decay (not applied to biases and norm layers): sgd/adam/radam "
                                    "coupled (d*w added to the gradient: Keras l2(d/2)), adamw decoupled",
                              type=_nonneg_float)
    label_smoothing: float = opt(0.1, "label smoothing", type=_fraction)
    dropout: float | None = opt(None, "probability of each of the model's dropout layers (a model without any gets one "
                                     "before its classifier; default: the model's own)", type=_fraction)
    stem: str | None = opt(None, "stem of the ResNets, DenseNet, AlexNet and ucsc_mobilenet_v2: small (3x3 "
                                 "stride-1 conv, no max-pool, for 64 px; their default but ucsc_mobilenet_v2's) or "
                                 "imagenet (torchvision's: 7x7 stride-2 conv + max-pool, AlexNet's 11x11 stride 4); "
                                 "recorded in the checkpoint", choices=("small", "imagenet"))
    init: str = opt("default", "weight init: default (PyTorch/torchvision), he, xavier", choices=INITS)
    schedule: str = opt("onecycle", "learning-rate schedule (all per step, with linear warm-up)",
                        choices=SCHEDULES)
    warmup: float | None = opt(None, "warm-up epochs, may be fractional (default: onecycle 25%% of the "
                                     "run, cyclic 0, others min(2, 10%%))", type=_nonneg_float)
    min_lr: float = opt(0.0, "final/minimum learning rate as a fraction of --lr", type=_fraction)
    step_size: float = opt(10.0, "step schedule: epochs between decays, counted from step 0 (warm-up "
                                 "included, as in StepLR)", type=_nonneg_float)
    gamma: float = opt(0.1, "step/plateau schedules: decay factor", type=_nonneg_float)
    patience: int = opt(3, "plateau schedule: evaluations without a gain before decaying", type=_nonneg_int)
    plateau_metric: str = opt("val_top1", "plateau schedule: what must improve (val top-1 rising, or val loss "
                                          "falling, as Keras' ReduceLROnPlateau watches it)",
                              choices=("val_top1", "val_loss"))
    cycle_epochs: float = opt(4.0, "cyclic schedule: epochs per triangular cycle", type=_nonneg_float)
    prog_resize: str | None = opt(None, "progressive resizing: train image sizes of equal-length phases, "
                                        "e.g. 32:64 or 32:48:64 (evaluation stays at full size)",
                                  type=prog_resize_arg, metavar="S1:S2[:...]")
    phases: str | None = opt(None, "phases of their own length, image size, global batch and augmentation "
                                   "(a field left out: the run's), --epochs their sum: "
                                   "EPOCHS[,size=S][,batch=B][,aug=PRESET];...",
                             type=phases_arg, metavar="PHASES")
    mixup: float = opt(0.0, "mixup Beta(alpha, alpha); 0 = off", type=_nonneg_float)
    cutmix: float = opt(0.0, "cutmix Beta(alpha, alpha); 0 = off (with --mixup too: 50/50 per batch)",
                        type=_nonneg_float)
    mix_prob: float = opt(1.0, "probability that a batch is mixed (mixup/cutmix)", type=_probability)
    ema: float = opt(0.0, "EMA of the weights and BatchNorm statistics with this decay per step (e.g. "
                          "0.999); evaluation then uses the EMA weights; 0 = off", type=_fraction)
    amp: bool = opt(False, "mixed precision: bf16 where supported, else fp16 + GradScaler")
    amp_dtype: str = opt("auto", "AMP dtype; auto = bf16 on GPUs that support it and on CPUs with native "
                                 "bf16 (AVX512-BF16/AMX; elsewhere CPU AMP is off: emulated bf16 is "
                                 "slower than fp32), else fp16", choices=AMP_DTYPES)
    channels_last: bool = opt(True, "channels-last memory format")
    compile: bool = opt(False, "torch.compile the model")
    sync_bn: bool = opt(False, "DDP: synchronise batch-norm statistics across ranks")
    pretrained: str | None = opt(None, "start from these weights (nothing is downloaded): 'imagenet' = "
                                       "torchvision's default ImageNet weights of the arch (tv:<name>, "
                                       "resnet18/34/50, vgg16(_bn), alexnet, densenet161, mobilenet_v2) "
                                       "from $TORCH_HOME/hub/checkpoints/, or a local torchvision-style "
                                       "state_dict PATH; tensors load by name and shape, the head and an "
                                       "adapted stem keep their fresh init; 'none' = from scratch (overrides "
                                       "a recipe's weights)", metavar="imagenet|PATH|none",
                                 type=_pretrained)
    freeze: bool = opt(False, "train only the head at first (see --unfreeze-every); layers --pretrained "
                              "left at their fresh init always train")
    unfreeze_every: int = opt(0, "with --freeze: every N epochs unfreeze the next layer group (groups are "
                                 "the model's stages, from the head down; see --print-config) (0 = never)",
                              type=_nonneg_int)
    unfreeze_groups: int = opt(1, "with --unfreeze-every: groups unfrozen each time (0 = all the rest at "
                                  "once: the head, then the whole model)", type=_nonneg_int)
    seed: int = opt(0, "random seed (model init, shuffling, augmentation, mixing)", type=int)
    name: str | None = opt(None, "run name: outputs go to OUT_DIR/NAME (default: ARCH-DATE-TIME); a name "
                                 "that holds a run is refused unless --resume or --overwrite")
    out_dir: str = opt("runs", "parent directory of the run directories")
    overwrite: bool = opt(False, "start afresh in a used OUT_DIR/NAME: the earlier run's own files (checkpoints, "
                                 "metrics, curves, ...) are removed as the new run starts, others kept")
    resume: str | None = opt(None, "continue a run exactly: a checkpoint path, or no value for "
                                   "OUT_DIR/NAME/last.pt", nargs="?", const="last", metavar="CKPT")
    resume_other_data: bool = opt(False, "with --resume: continue even when the data is not what the "
                                         "checkpoint was trained on (re-packed or replaced at its path)")
    stop_at_step: int | None = opt(None, "stop after this global step, saving a resumable last.pt "
                                         "(the schedule is unchanged)", type=_positive_int)
    log_every: int | None = opt(None, "steps between progress-bar loss updates, each one host sync "
                                      "(default: 50 on a GPU; every step on CPU, where it costs nothing)",
                                type=_positive_int)
    eval_every: int = opt(1, "epochs between evaluations (the last epoch is always evaluated)",
                          type=_positive_int)
    progress: bool = opt(True, PROGRESS_HELP)
    progress_every: float = opt(30.0, PROGRESS_EVERY_HELP, type=_nonneg_float)
    tensorboard: bool = opt(False, "also log per-epoch scalars and the first augmented batch to "
                                   "OUT_DIR/NAME/tensorboard (needs the tensorboard package)")


@dataclass(frozen=True)
class EvalConfig:
    """``python -m tinyfast.evaluate``: score checkpoints (several = an ensemble)."""

    checkpoints: tuple = opt((), "checkpoint files (.pt); several are also scored as an ensemble "
                                 "(averaged probabilities)", nargs="+", positional=True, metavar="CKPT")
    data: str | None = opt(None, "packed dataset (default: the one the first checkpoint was trained on)")
    split: str = opt("val", "split to score", choices=("train", "val"))
    loader: str = opt("gpu", _LOADER_HELP, choices=_loaders)
    device: str | None = opt(None, "cpu or cuda[:i] (default: cuda when available)", type=_device)
    batch_size: int = opt(256, "batch size", type=_positive_int)
    weights: str = opt("auto", "which weights: ema (when the checkpoint has them), raw, auto (= ema if present)",
                       choices=("auto", "ema", "raw"))
    amp: bool | None = opt(None, "bf16/fp16 autocast (default: as the run of the first checkpoint trained)")
    tta: bool = opt(False, "test-time augmentation: average with the horizontally flipped image")
    output: str | None = opt(None, "also write the results as JSON here")
    progress: bool = opt(True, PROGRESS_HELP)
    progress_every: float = opt(30.0, PROGRESS_EVERY_HELP, type=_nonneg_float)


@dataclass(frozen=True)
class PredictConfig:
    """``python -m tinyfast.predict``: write test-set predictions as CSV ``id,label`` (label = wnid)."""

    checkpoints: tuple = opt((), "checkpoint files (.pt); several = ensemble (averaged probabilities)",
                             nargs="+", positional=True, metavar="CKPT")
    output: str = opt("predictions.csv", "CSV to write (id,label)")
    data: str | None = opt(None, "packed dataset (default: the one the first checkpoint was trained on)")
    split: str = opt("test", "split to predict", choices=("test", "val", "train"))
    loader: str = opt("gpu", _LOADER_HELP, choices=_loaders)
    device: str | None = opt(None, "cpu or cuda[:i] (default: cuda when available)", type=_device)
    batch_size: int = opt(256, "batch size", type=_positive_int)
    weights: str = opt("auto", "ema, raw, or auto (= ema if present)", choices=("auto", "ema", "raw"))
    amp: bool | None = opt(None, "bf16/fp16 autocast (default: as the run of the first checkpoint trained)")
    tta: bool = opt(False, "average with the horizontally flipped image")
    topk: int = opt(1, "labels per row (space-separated, best first)", type=_positive_int)
    progress: bool = opt(True, PROGRESS_HELP)
    progress_every: float = opt(30.0, PROGRESS_EVERY_HELP, type=_nonneg_float)


# ----- parser generation ---------------------------------------------------------------------------
def _base_type(tp) -> type:
    """``int | None`` -> ``int``; ``bool`` -> ``bool``."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args else tp


def add_config_arguments(parser: argparse.ArgumentParser, cls, *, suppress_defaults: bool = False) -> None:
    """Add one option per field of the dataclass ``cls`` to ``parser``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = dict(f.metadata)
        tp = _base_type(hints[f.name])
        kw: dict[str, Any] = {"help": meta.get("help", "")}
        default = f.default
        if tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = meta.get("type", tp if tp in (int, float, str) else str)
            for k in ("nargs", "const", "metavar"):
                if k in meta:
                    kw[k] = meta[k]
            choices = meta.get("choices")
            if choices is not None:
                kw["choices"] = list(choices() if callable(choices) else choices)
        if default is not None and default != () and "%(default)" not in kw["help"] and tp is not bool:
            kw["help"] += " (default: %(default)s)"
        if meta.get("positional"):
            parser.add_argument(f.name, **kw)
            continue
        kw["default"] = argparse.SUPPRESS if suppress_defaults else default
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kw)


def build_parser(cls, prog: str, *, extra: Callable[[argparse.ArgumentParser], None] | None = None,
                 suppress_defaults: bool = False, usage: str | None = None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` generated from the config dataclass ``cls``.

    ``usage`` (default ``"%(prog)s [options]"``) keeps error messages short: the generated usage
    line of a long config fills a screen above the one line that matters.
    """
    doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else None
    if doc:  # "``python -m x``: does y." -> "Does y." (the prog is already in the usage line)
        doc = re.sub(r"^``[^`]*``:\s*", "", doc)
        doc = doc[:1].upper() + doc[1:]
    parser = argparse.ArgumentParser(prog=prog, description=doc, usage=usage or "%(prog)s [options]")
    if extra is not None:
        extra(parser)
    add_config_arguments(parser, cls, suppress_defaults=suppress_defaults)
    return parser


def config_from_args(cls, ns: argparse.Namespace):
    """The dataclass instance from a parsed namespace (unknown attributes are ignored)."""
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)}
    for k, v in values.items():
        if isinstance(v, list):
            values[k] = tuple(v)
    return cls(**values)


def explicit_fields(cls, argv: list[str], prog: str = "") -> set[str]:
    """Names of the fields given explicitly on the command line ``argv``."""
    p = build_parser(cls, prog, suppress_defaults=True, extra=_silent_extra)
    ns, _ = p.parse_known_args(argv)
    return {k for k in vars(ns) if k in {f.name for f in dataclasses.fields(cls)}}


def set_fields(cfg) -> set[str]:
    """Names of the fields of dataclass instance ``cfg`` whose values differ from their defaults:
    what a caller of the Python API set (the API's counterpart of :func:`explicit_fields`)."""
    return {f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != f.default}


def _silent_extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--list", action="store_true", default=argparse.SUPPRESS)


# ----- validation and run-time resolution ----------------------------------------------------------
def _check_field(cls, name: str, value):
    """``value`` through field ``name``'s converter (its CLI rule), as a :class:`ConfigError`."""
    convert = dict((f.name, f.metadata.get("type")) for f in dataclasses.fields(cls)).get(name)
    if convert is None or value is None or isinstance(value, bool):
        return value
    try:
        return convert(str(value))
    except argparse.ArgumentTypeError as e:
        raise ConfigError(f"--{name.replace('_', '-')}: {e}") from None


def validate_config(cfg) -> None:
    """Apply every field's CLI rule to a config built in Python (or from a saved run or a preset),
    so a non-finite or out-of-range value is refused however it arrived.

    Raises:
        ConfigError: naming the first bad option.
    """
    for f in dataclasses.fields(cfg):
        _check_field(type(cfg), f.name, getattr(cfg, f.name))


def _default_lr(cfg: TrainConfig, batch: int) -> float:
    """Peak LR for the global ``batch``: the architecture's own where it has one, else 0.2 (SGD) /
    2e-3 (Adam family) at batch 512. Square-root scaling with the batch: linear scaling overshoots
    for the large batches of multi-GPU runs and undershoots for the small ones of a CPU run."""
    from tinyfast.models import default_lr
    base = default_lr(cfg.arch, cfg.optimizer)
    if base is None:
        base = 0.2 if cfg.optimizer == "sgd" else 2e-3
    return base * (batch / 512) ** 0.5


def _default_warmup(cfg: TrainConfig, epochs: int) -> float:
    if cfg.schedule == "onecycle":
        return 0.25 * epochs
    if cfg.schedule == "cyclic":
        return 0.0
    return min(2.0, 0.1 * epochs)


def resolve_train_config(cfg: TrainConfig, *, cuda: bool, world_size: int = 1,
                         local_rank: int = 0) -> TrainConfig:
    """Fill the ``None`` ("chosen at run time") fields of ``cfg``, after :func:`validate_config`.

    GPU runs default to a real schedule (30 epochs, batch 512); CPU runs to a quick one (3 epochs,
    batch 32: more updates for the few images a CPU gets through) on the small synthetic set.

    Raises:
        ConfigError: bad or inconsistent settings (batch not divisible by the world size, ...).
    """
    validate_config(cfg)
    count = (torch_cuda_count() if cuda else 0)
    device = resolve_device(cfg.device, cuda_count=count, local_rank=local_rank)
    if world_size > 1 and device.startswith("cuda") and cfg.device is None:
        device = f"cuda:{local_rank}"
    on_gpu = device.startswith("cuda")
    epochs = cfg.epochs or phase_epochs(cfg) or (30 if on_gpu else 3)
    batch = cfg.batch_size or (512 if on_gpu else 32)
    if batch % world_size:
        raise ConfigError(f"--batch-size {batch} is not divisible by the {world_size} DDP processes")
    lr = cfg.lr if cfg.lr is not None else _default_lr(cfg, batch)
    warmup = cfg.warmup if cfg.warmup is not None else _default_warmup(cfg, epochs)
    if warmup > epochs:
        raise ConfigError(f"--warmup {warmup} is longer than the run ({epochs} epochs)")
    from tinyfast.models import accepts
    if cfg.stem is not None and not accepts(cfg.arch, "stem"):
        raise ConfigError(f"--stem: {cfg.arch} has no stem option (the ResNets, densenet161, alexnet, "
                          f"ucsc_mobilenet_v2, tv:<name>)")
    if cfg.unfreeze_every and not cfg.freeze:
        raise ConfigError("--unfreeze-every needs --freeze")
    if cfg.pretrained == "imagenet":  # a missing weights file is reported before any work
        from tinyfast.models import imagenet_weights_path
        try:
            imagenet_weights_path(cfg.arch)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    check_phases(cfg, epochs, batch, world_size)  # also the sizes the model cannot take, before any work
    name = cfg.name or f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', cfg.arch)}-{time.strftime('%Y%m%d-%H%M%S')}"
    return dataclasses.replace(cfg, device=device, epochs=epochs, batch_size=batch, lr=lr, warmup=warmup,
                               log_every=cfg.log_every or (50 if on_gpu else 1),
                               name=name, eval_batch_size=cfg.eval_batch_size or 2 * (batch // world_size))


def torch_cuda_count() -> int:
    """Visible CUDA devices (at least 1 when called because CUDA is available)."""
    import torch
    return max(1, torch.cuda.device_count())

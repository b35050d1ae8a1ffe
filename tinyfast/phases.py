"""Training phases: what changes from one stretch of epochs to the next.

Two ways to say it:

* ``--prog-resize S1:S2[:...]`` -- equal-length phases that differ only in the training image size.
* ``--phases`` -- phases of any length, each with its own image size, batch size and augmentation:
  ``EPOCHS[,size=S][,batch=B][,aug=PRESET[+PRESET]]``, phases separated by ``;``. A field left out
  takes the run's own value (the packed size, ``--batch-size``, ``--aug``), and the phases' epochs
  add up to the run's ``--epochs`` (which defaults to that sum). Ghosh's Network 1:
  ``15,size=32,batch=256,aug=none;30,size=64,batch=64,aug=none;...;150,size=64,batch=64,aug=standard``.

Each phase's batch is the GLOBAL batch (split across DDP ranks, like ``--batch-size``); the
learning rate is the run's in every phase (as a Keras ``fit`` called again with another
``batch_size`` keeps its optimizer's). Epochs of different lengths are counted as epochs by the
schedule (:class:`tinyfast.schedules.Schedule` ``epoch_steps``). The train loader of a phased run
is :class:`tinyfast.loaders.phased.PhasedLoader` over the configured loader.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

__all__ = ["Phase", "parse_phases", "phases_arg", "format_phases", "parse_prog_resize", "prog_resize_arg",
           "epoch_phases", "loader_phases", "phase_epochs", "check_phases", "train_sizes", "steps_until"]

_KEYS = ("size", "batch", "aug")


@dataclass(frozen=True)
class Phase:
    """One phase: its length in epochs, and the image size, global batch and augmentation it trains
    with (``None``: the run's own)."""

    epochs: int
    size: int | None = None
    batch: int | None = None
    aug: str | None = None


def parse_prog_resize(value: str) -> list[int]:
    """``"32:48:64"`` -> ``[32, 48, 64]``: image sizes of equal-length phases of training."""
    try:
        sizes = [int(s) for s in value.split(":")]
    except ValueError:
        sizes = []
    if len(sizes) < 2 or any(s < 8 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected sizes separated by ':' (each >= 8), e.g. 32:64 or 32:48:64")
    return sizes


def prog_resize_arg(value: str) -> str:
    """The ``--prog-resize`` converter: the value, once it parses."""
    parse_prog_resize(value)
    return value


def _int(text: str, what: str, lo: int) -> int:
    from tinyfast._util import number
    try:
        return number(int, lo=lo)(text)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"phase {what}: {e}") from None


def _aug(text: str) -> str:
    from tinyfast.augment import PRESETS
    bad = [a for a in text.split("+") if a not in PRESETS]
    if bad:
        raise argparse.ArgumentTypeError(f"phase aug: unknown augmentation preset {bad[0]!r} "
                                         f"(choose from {', '.join(sorted(PRESETS))})")
    return text


def parse_phases(value: str) -> list[Phase]:
    """The phases of a ``--phases`` value (see the module docstring).

    Raises:
        argparse.ArgumentTypeError: one line naming the bad part.
    """
    out = []
    for part in value.split(";"):
        fields = [f.strip() for f in part.split(",")]
        if not fields[0]:
            raise argparse.ArgumentTypeError(
                f"{value!r}: expected phases 'EPOCHS[,size=S][,batch=B][,aug=PRESET]' separated by ';'")
        kw: dict = {}
        for f in fields[1:]:
            key, _, text = f.partition("=")
            if key not in _KEYS or not text:
                raise argparse.ArgumentTypeError(f"phase field {f!r}: expected size=S, batch=B or aug=PRESET")
            kw[key] = _aug(text) if key == "aug" else _int(text, key, 8 if key == "size" else 1)
        out.append(Phase(_int(fields[0], "epochs", 1), **kw))
    return out


def phases_arg(value: str) -> str:
    """The ``--phases`` converter: the value, once it parses."""
    parse_phases(value)
    return value


def format_phases(rows) -> str:
    """A ``--phases`` value from ``[{"epochs": 15, "size": 32, "batch": 256, "aug": "none"}, ...]``
    (how ``recipes.json`` writes them)."""
    return ";".join(",".join([str(r["epochs"])] + [f"{k}={r[k]}" for k in _KEYS if r.get(k) is not None])
                    for r in rows)


def phase_epochs(cfg) -> int | None:
    """The epochs ``cfg``'s ``--phases`` add up to (``None`` without phases)."""
    return sum(p.epochs for p in parse_phases(cfg.phases)) if cfg.phases else None


def epoch_phases(cfg, full: int = 64) -> list[tuple[int, Phase]]:
    """``(phase index, resolved Phase)`` for every epoch of resolved config ``cfg``: size, batch and
    aug filled in (``full``: the packed image size). Without ``--phases`` one phase (or the
    ``--prog-resize`` sizes) at the run's batch and augmentation."""
    if cfg.phases:
        out = []
        for i, p in enumerate(parse_phases(cfg.phases)):
            one = Phase(1, p.size or full, p.batch or cfg.batch_size, p.aug or cfg.aug)
            out += [(i, one)] * p.epochs
        return out
    sizes = parse_prog_resize(cfg.prog_resize) if cfg.prog_resize else None
    out = []
    for e in range(cfg.epochs):
        i = min(len(sizes) - 1, e * len(sizes) // cfg.epochs) if sizes else 0
        out.append((i, Phase(1, sizes[i] if sizes else full, cfg.batch_size, cfg.aug)))
    return out


def loader_phases(cfg, world: int) -> list[tuple[int, int, str]]:
    """``(epochs, per-rank batch, aug)`` of each run of epochs with the same batch and augmentation:
    the ``phases`` of :func:`tinyfast.loaders.build` (image sizes are set per epoch by the trainer)."""
    out: list[list] = []
    for _, p in epoch_phases(cfg):
        if out and out[-1][1:] == [p.batch // world, p.aug]:
            out[-1][0] += 1
        else:
            out.append([1, p.batch // world, p.aug])
    return [tuple(x) for x in out]


def train_sizes(cfg) -> list[int]:
    """The training image sizes other than the packed one that ``cfg`` asks for (sorted)."""
    if cfg.phases:
        return sorted({p.size for p in parse_phases(cfg.phases) if p.size})
    return sorted(set(parse_prog_resize(cfg.prog_resize))) if cfg.prog_resize else []


def check_phases(cfg, epochs: int, batch: int, world: int) -> None:
    """``--phases`` that cannot run with the resolved ``epochs``, global ``batch`` and ``world``, and
    ``--phases`` / ``--prog-resize`` image sizes the model cannot take (a shapes-only forward).

    Raises:
        ConfigError: one line naming the option.
    """
    from tinyfast.errors import ConfigError
    sizes = train_sizes(cfg)
    if sizes:
        from tinyfast.models.sizes import first_refused
        kwargs = {k: getattr(cfg, k) for k in ("dropout", "stem") if getattr(cfg, k) is not None}
        refused = first_refused(cfg.arch, sizes, kwargs)
        if refused:
            flag = f"--prog-resize {cfg.prog_resize}" if cfg.prog_resize else "--phases"
            need = "" if refused[1] is None else f" (it needs at least {refused[1]} px)"
            raise ConfigError(f"{flag}: {cfg.arch} cannot take {refused[0]} px images{need}")
    if not cfg.phases:
        return
    if cfg.prog_resize:
        raise ConfigError("--phases sets each phase's image size: give it or --prog-resize, not both")
    total = phase_epochs(cfg)
    if total != epochs:
        raise ConfigError(f"--phases: the phases last {total} epochs, --epochs is {epochs} (leave --epochs "
                          f"out, or make the phases add up to it)")
    bad = next((p.batch for p in parse_phases(cfg.phases) if (p.batch or batch) % world), None)
    if bad is not None:
        raise ConfigError(f"--phases: batch {bad} is not divisible by the {world} DDP processes")


def steps_until(epoch_steps: list[int], epochs: float) -> int:
    """Steps in the first ``epochs`` (fractional) epochs of a run whose epochs have ``epoch_steps``.

    Epochs of equal length give ``round(epochs * steps)``, as a run without phases counts them.
    """
    if len(set(epoch_steps)) <= 1:
        return round(epochs * (epoch_steps[0] if epoch_steps else 0))
    whole = min(int(epochs), len(epoch_steps))
    rest = round((epochs - whole) * epoch_steps[whole]) if whole < len(epoch_steps) else 0
    return sum(epoch_steps[:whole]) + rest

"""``python -m tinyfast.train``: train a model (thin CLI over :class:`tinyfast.trainer.Trainer`).

Examples::

    python -m tinyfast.train --arch resnet18 --amp                 # default data, sensible defaults
    python -m tinyfast.train --arch resnet18 --amp --data packed/ --epochs 40 --batch-size 512
    python -m tinyfast.train --list                                # models and parameter counts
    python -m tinyfast.train --name r18 --resume                   # continue runs/r18/last.pt
    torchrun --nproc_per_node 4 -m tinyfast.train --arch resnet50 --amp --data packed/

Options are generated from :class:`tinyfast.config.TrainConfig`; see ``--help``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import sys
from pathlib import Path

# torch is imported where it is used: a Ctrl-C during its import (a second or two) is then inside
# main(), one line, instead of a traceback through the import machinery.
from tinyfast.config import (ConfigError, number, run_command, RunError, TrainConfig, build_parser,
                             config_from_args, explicit_fields, resolve_train_config, set_fields)
from tinyfast.recipes import apply_recipe, recipe_lr_note, recipe_notes, recipes_table

PROG = "python -m tinyfast.train"
# Taken from the command line even when resuming (they steer this invocation, not the run).
RUNTIME_FIELDS = ("resume", "overwrite", "stop_at_step", "progress", "progress_every", "log_every", "resume_other_data")
# May be changed explicitly when resuming (the rest of the saved config is kept).
RESUME_OVERRIDABLE = ("device", "workers", "epochs", "loader", "tensorboard")

__all__ = ["main", "train", "build_train_parser", "list_models_table"]


def build_train_parser() -> argparse.ArgumentParser:
    """The ``tinyfast.train`` argument parser (generated from :class:`TrainConfig`)."""
    def extra(p):
        p.add_argument("--list", action="store_true", help="list the models with parameter counts and exit")
        p.add_argument("--list-recipes", action="store_true", help="list the recipes (--recipe) and exit")
        p.add_argument("--print-config", action="store_true",
                       help="dry run: print the resolved config, parameter count, layer groups and each "
                            "epoch's freeze state as JSON and exit (reads no data, writes nothing)")
        p.add_argument("--classes", type=number(int, lo=1), default=None, metavar="N",
                       help="with --print-config: count the model for N classes (default: --data's "
                            "manifest, else 200)")
    return build_parser(TrainConfig, PROG, extra=extra)


def list_models_table(num_classes: int = 200) -> str:
    """One line per registered model: name and parameter count (for ``num_classes`` classes)."""
    import torch

    from tinyfast.models import count_parameters, get_model, list_models
    lines = [f"{'model':<18}{'parameters':>14}"]
    for name in list_models():
        with torch.device("meta"):  # no memory, no init cost
            n = count_parameters(get_model(name, num_classes=num_classes))
        lines.append(f"{name:<18}{n:>14,}")
    lines.append(f"(and tv:<name> for any torchvision classifier; counts for {num_classes} classes)")
    return "\n".join(lines)


def _dist_env() -> tuple[int, int, int]:
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


def _resume_path(cfg: TrainConfig) -> Path:
    """The checkpoint ``--resume`` names (a path, or OUT_DIR/NAME/last.pt without one)."""
    if cfg.resume != "last":
        return Path(cfg.resume)
    if not cfg.name:
        raise ConfigError("--resume without a path needs --name (or give the checkpoint path)")
    return Path(cfg.out_dir) / cfg.name / "last.pt"


def _resume_config(cli: TrainConfig, explicit: set[str], log) -> tuple[TrainConfig, dict]:
    """The saved config of the checkpoint named by ``--resume``, with this command's runtime
    fields and explicit overrides applied."""
    from tinyfast.checkpoint import load_checkpoint
    path = _resume_path(cli)
    ck = load_checkpoint(path)
    saved = TrainConfig(**{f.name: ck["config"][f.name] for f in dataclasses.fields(TrainConfig)
                           if f.name in ck["config"]})
    changes = {k: getattr(cli, k) for k in RUNTIME_FIELDS}
    changes.update({k: getattr(cli, k) for k in RESUME_OVERRIDABLE if k in explicit})
    # The run directory is where the checkpoint is, wherever it was moved.
    changes.update(out_dir=str(path.parent.parent), name=path.parent.name)
    ignored = sorted(k for k in explicit - set(changes) - {"name", "out_dir"}
                     if getattr(cli, k) != getattr(saved, k))
    if ignored:
        log("note: resuming keeps the run's saved config; ignored: "
            + ", ".join("--" + k.replace("_", "-") for k in ignored))
    if "epochs" in explicit and cli.epochs != saved.epochs:
        log(f"note: --epochs {cli.epochs} (was {saved.epochs}): the schedule is recomputed for the new length")
    return dataclasses.replace(saved, **changes), ck


def _init_dist(cfg: TrainConfig, world: int, local_rank: int) -> bool:
    """Join the ``torchrun`` process group when there is one to join; True if this call created it."""
    import torch
    import torch.distributed as dist
    if world <= 1 or dist.is_initialized():
        return False
    use_nccl = torch.cuda.is_available() and not str(cfg.device or "").startswith("cpu")
    if use_nccl:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_nccl else "gloo")
    return True


def _run_config(cfg: TrainConfig, explicit: set[str], log, world: int, local_rank: int) -> tuple[TrainConfig, dict | None]:
    """The resolved config of this invocation (the saved one when resuming) and the checkpoint;
    needs no process group (every rank resolves the same)."""
    import torch
    ck = None
    if cfg.resume and cfg.overwrite:
        raise ConfigError("--resume continues a run, --overwrite starts one afresh: give one of them")
    auto_name = cfg.name is None
    if cfg.resume:
        cfg, ck = _resume_config(cfg, explicit, log)
        if "device" not in explicit:
            cfg = dataclasses.replace(cfg, device=None)
    else:
        note = recipe_lr_note(cfg, explicit)
        if note:
            log(note)
        cfg = apply_recipe(cfg, explicit)  # explicit settings win
    cfg = resolve_train_config(cfg, cuda=torch.cuda.is_available(), world_size=world, local_rank=local_rank)
    if ck is None:
        for note in recipe_notes(cfg):
            log(f"note: {note}")
        cfg = _unused_run_dir(cfg, auto_name)
    if cfg.data is None:
        from tinyfast.default_data import ensure_default_data
        cfg = dataclasses.replace(cfg, data=str(ensure_default_data().absolute()))
    if world > 1:  # a missing or unpacked --data, said before the process group forms
        from tinyfast.data import read_manifest
        read_manifest(cfg.data)
    return cfg, ck


def _length(tr) -> str:
    """``30 epochs x 195 steps``; with phases of their own batch ``235 epochs, 141,016 steps (--phases: 390-1562 per epoch)``."""
    from tinyfast.trainer.sinks import plural
    steps = tr.epoch_steps or [tr.steps_per_epoch] * tr.cfg.epochs
    if len(set(steps)) <= 1:
        return f"{plural(tr.cfg.epochs, 'epoch')} x {plural(tr.steps_per_epoch, 'step')}"
    return f"{plural(tr.cfg.epochs, 'epoch')}, {sum(steps):,} steps (--phases: {min(steps)}-{max(steps)} per epoch)"


def _same_name(cfg: TrainConfig) -> TrainConfig:
    """Rank 0's (timestamped) run name for every rank (a collective)."""
    import torch.distributed as dist
    name = [cfg.name]
    dist.broadcast_object_list(name, src=0)
    return dataclasses.replace(cfg, name=name[0])


# What gloo (and NCCL's socket layer) says when the process at the other end is gone.
_PEER_GONE = re.compile(r"Connection (?:closed|reset) by peer|Broken pipe|Connection refused")


def _lost_peer(e: BaseException, rank: int, world: int, run_dir: Path | None, step: int | None) -> str | None:
    """The one line for a collective that failed because another rank ended (None: not that)."""
    from tinyfast.trainer.state import kept_checkpoint
    m = _PEER_GONE.search(str(e))
    if world <= 1 or m is None:
        return None
    addr = re.search(r"\[([^\]]+)\]:(\d+)", str(e))
    who = f"rank {1 - rank} of 2" if world == 2 else f"one of the {world - 1} other ranks"
    return (f"lost DDP peer {who} ({m.group(0).lower()}{f' at {addr[1]}:{addr[2]}' if addr else ''})"
            f"{f' after step {step}' if step is not None else ''}: it ended or was killed (torchrun's summary "
            f"below gives its exit)" + (f"; {kept_checkpoint(run_dir)}" if run_dir is not None else ""))


def _unused_run_dir(cfg: TrainConfig, auto_name: bool) -> TrainConfig:
    """``cfg`` when OUT_DIR/NAME holds no earlier run (or ``--overwrite`` replaces it); a default
    ARCH-DATE-TIME name already taken (two runs in one second) gets the next free ``-N``; a given
    ``--name`` that holds a run is refused."""
    from tinyfast.trainer.sinks import run_files
    found = run_files(Path(cfg.out_dir) / cfg.name)
    if not found or cfg.overwrite:
        return cfg
    if auto_name:
        n = 2
        while run_files(Path(cfg.out_dir) / f"{cfg.name}-{n}"):
            n += 1
        return dataclasses.replace(cfg, name=f"{cfg.name}-{n}")
    raise ConfigError(f"--name {cfg.name}: {Path(cfg.out_dir) / cfg.name} holds an earlier run ({', '.join(found)}); "
                      f"continue it with --resume, replace it with --overwrite, or pick another --name")


def _start_line(tr, world: int) -> str:
    from tinyfast.trainer.sinks import plural
    cfg = tr.cfg
    split = f" ({world} x {cfg.batch_size // world})" if world > 1 else ""
    return (f"run {tr.run_dir}: {cfg.arch} on {cfg.data} ({plural(tr.num_classes, 'class', 'classes')}), "
            f"{_length(tr)}, batch {cfg.batch_size}{split}, "
            f"lr {cfg.lr:g}, {cfg.device}, amp {'off' if not tr.amp else str(tr.amp_dtype)[6:]}")


def _done_line(tr) -> str:
    r = tr.result
    best = (f"best val top-1 {100 * r['best_val_top1']:.2f}%" if r.get("best_val_top1") is not None
            else f"best train loss {min(h['train_loss'] for h in tr.history):.3f} (no val split)")
    return f"done: {best}, wall time {r['wall_time']:.0f}s; outputs in {tr.run_dir}"


def train(cfg: TrainConfig, explicit: set[str] | frozenset | None = None):
    """Run (or resume) training for ``cfg``; returns the :class:`~tinyfast.trainer.Trainer` with its
    ``result`` (the summary dict).

    ``cfg.recipe`` is resolved as ``--recipe`` is: the recipe sets every field not named in
    ``explicit`` (the fields given on the command line; when resuming, those that override the
    saved config). Without ``explicit`` (the Python API), the fields whose values differ from
    :class:`TrainConfig`'s defaults count as given.

    Initialises ``torch.distributed`` when launched by ``torchrun`` (``WORLD_SIZE`` > 1): NCCL on
    GPUs, gloo on CPU; the process group is destroyed before returning. The config and ``--data``
    are checked before the group forms (such errors, and an :class:`Interrupted` every rank agreed
    on, carry ``every_rank = True``); a collective that fails because another rank died is a
    :class:`RunError` naming the lost peer.
    """
    import torch.distributed as dist

    from tinyfast import progress
    from tinyfast.trainer import Trainer
    from tinyfast.trainer.signals import Interrupted

    explicit = set_fields(cfg) if explicit is None else set(explicit)
    rank, world, local_rank = _dist_env()
    log = progress.write if rank == 0 else (lambda m: None)
    try:  # what every rank checks alike, before the process group forms
        cfg, ck = _run_config(cfg, explicit, log, world, local_rank)
    except Exception as e:
        e.every_rank = world > 1
        raise
    own_group = _init_dist(cfg, world, local_rank)
    trainer = None
    try:
        if world > 1:
            cfg = _same_name(cfg)
        trainer = Trainer(cfg, log=log)
        if ck is not None:
            trainer.load_state_dict(ck, path=_resume_path(cfg))
            log(f"resumed {trainer.run_dir} at epoch {trainer.epoch + 1}, step {trainer.step}")
        else:
            log(_start_line(trainer, world))
        trainer.result = trainer.fit()
        if trainer.history and trainer.epoch == cfg.epochs:
            log(_done_line(trainer))
        if own_group:
            # every rank done before any tears the group down: gloo aborts a rank ("terminate
            # called without an active exception") whose peer closed the connections first
            dist.barrier()
        return trainer
    except Interrupted as e:  # every rank stopped at the same step, saved, and says the same
        e.every_rank = world > 1
        if own_group:
            with contextlib.suppress(RuntimeError):
                dist.barrier()
        raise
    except RuntimeError as e:
        lost = _lost_peer(e, rank, world, trainer and trainer.run_dir, trainer and trainer.step)
        if lost is None:
            raise
        raise RunError(lost) from None
    finally:
        if own_group and dist.is_initialized():
            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tinyfast.train``; returns the exit status."""
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:  # before the run's own handling (parsing, importing torch, ...)
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str]) -> int:
    parser = build_train_parser()
    args = parser.parse_args(argv)  # bad flags: usage + one "error:" line, exit status 2
    if args.list:
        print(list_models_table())
        return 0
    if args.list_recipes:
        print(recipes_table())
        return 0
    explicit = explicit_fields(TrainConfig, argv, PROG)
    if args.print_config:
        status, out = run_command(PROG, print_config, argv)
        if status == 0:
            print(json.dumps(out, indent=1))
        return status
    status, _ = run_command(PROG, _train_command, config_from_args(TrainConfig, args), explicit)
    return status


def print_config(argv: list[str]) -> dict:
    """What ``python -m tinyfast.train ARGV --print-config`` prints, as a dict: the dry run
    (:func:`tinyfast.dryrun.dry_run`) of ARGV's config with its recipe applied, explicit flags
    winning; ``--classes`` counts the model for that many classes.

    Raises:
        ConfigError: the settings a run would refuse (one line naming the option).
    """
    from tinyfast.dryrun import dry_run
    args = build_train_parser().parse_args(argv)
    cfg = apply_recipe(config_from_args(TrainConfig, args), explicit_fields(TrainConfig, argv, PROG))
    return dry_run(cfg, args.classes)


def _train_command(cfg: TrainConfig, explicit: set[str]):
    """:func:`train` for the command line: under torchrun, an error that every rank meets alike is
    said once, by rank 0; the other ranks exit with the same status, quietly."""
    try:
        return train(cfg, explicit)
    except Exception as e:
        if getattr(e, "every_rank", False) and _dist_env()[0] > 0 and _rank0_ended():
            e.quiet = True
        raise


def _rank0_ended(timeout: float = 15.0) -> bool:
    """Wait (at most ``timeout`` s) for the SIGTERM that torchrun sends the other ranks once rank 0
    has exited, so that rank 0's line is out before this rank ends; False if none came (then this
    rank says the error itself)."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return False
    sigs = {signal.SIGTERM, signal.SIGINT}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        return signal.sigtimedwait(sigs, timeout) is not None
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


if __name__ == "__main__":
    sys.exit(main())

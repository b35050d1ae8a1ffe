"""Measurements the GPU proof (``benchmarks.proof``) runs each in its own process, so each phase
can be capped and stopped:

    python -m benchmarks.proof.steps loaders --data DIR --device cuda [--workers 0,1,2,4,8,16]
    python -m benchmarks.proof.steps syncs --data DIR --device cuda [--steps 5,25]

Every measurement is printed as one ``ROW <json>`` line the moment it is taken, so a run stopped at
its time cap still reports what it measured. Only public APIs are used: ``tinyfast.loaders.build``
/ ``throughput`` and ``python -m tinyfast.train``'s ``main``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import warnings

import torch


def emit(row: dict) -> None:
    """One measurement, as a ``ROW`` line the proof collects."""
    print("ROW " + json.dumps(row), flush=True)


def worker_sweep(cores: int) -> list[int]:
    """DataLoader worker counts from the core count down to 0 (powers of two in between), best-first
    so a capped run has the strongest baseline already measured."""
    counts, w = {0, cores}, 1
    while w < cores:
        counts.add(w)
        w *= 2
    return sorted(counts, reverse=True)


def loader_plan(names: list[str], cores: int, workers: list[int] | None) -> list[tuple[str, int | None]]:
    """(loader, workers) in measuring order: the fused-op loaders, then the DataLoader sweep."""
    first = [(n, None) for n in ("gpu", "torch-npy") if n in names]
    counts = workers if workers is not None else worker_sweep(cores)
    sweep = [("torch", w) for w in counts] if "torch" in names else []
    rest = [(n, None) for n in names if n not in ("gpu", "torch-npy", "torch")]
    return first + sweep + rest


def run_loaders(args) -> int:
    """Images/s of each loader with training augmentation, one ROW per (loader, workers)."""
    from tinyfast import loaders
    from tinyfast._util import cpu_count

    names = args.loaders.split(",") if args.loaders else loaders.list_loaders()
    workers = [int(w) for w in args.workers.split(",")] if args.workers else None
    for name, w in loader_plan(names, cpu_count(), workers):
        row = {"loader": name, "workers": w, "device": args.device, "batch_size": args.batch_size}
        try:
            r = loaders.throughput(name, args.data, "train", args.batch_size, args.device, policy="default",
                                   batches=args.batches, warmup=args.warmup, runs=args.runs, num_workers=w)
            row.update(images_per_sec=r["images_per_sec"], runs=r["runs"], seconds_build=r["seconds_build"])
        except (ImportError, ValueError, RuntimeError, OSError) as exc:
            row["skipped"] = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        emit(row)
    return 0


@contextlib.contextmanager
def count_syncs(device: torch.device):
    """Counts host synchronisations reported by ``torch.cuda.set_sync_debug_mode("warn")`` inside the
    block (yields a one-element list holding the count). On a CPU device nothing syncs: 0."""
    count = [0]
    if device.type != "cuda":
        yield count
        return
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield count
        finally:
            torch.cuda.set_sync_debug_mode("default")
    count[0] = sum("synchroniz" in str(w.message) for w in seen)


def _loader_syncs(args, device, steps: int) -> dict:
    from tinyfast import loaders

    loader = loaders.build("gpu", args.data, "train", args.batch_size, device=device, policy="default")
    try:
        it, epoch = iter(loader), 0
        next(it)  # the first batch may set things up: not counted

        def batch():
            nonlocal it, epoch
            try:
                return next(it)
            except StopIteration:
                epoch += 1
                loader.set_epoch(epoch)
                it = iter(loader)
                return next(it)

        with count_syncs(device) as n:
            for _ in range(steps):
                batch()
        return {"what": "gpu loader", "steps": steps, "syncs": n[0], "syncs_per_step": n[0] / steps}
    finally:
        loader.close()


def _train_syncs(args, device, steps: int, work: str) -> int:
    from tinyfast import train

    argv = ["--arch", args.arch, "--data", args.data, "--device", str(device), "--epochs", "1",
            "--batch-size", str(args.batch_size), "--stop-at-step", str(steps), "--out-dir", work,
            "--name", f"syncs{steps}", "--overwrite", "--amp", "--no-progress"]
    with count_syncs(device) as n, contextlib.redirect_stdout(io.StringIO()):
        rc = train.main(argv)
    if rc:
        raise RuntimeError(f"python -m tinyfast.train {' '.join(argv)} exited {rc}")
    return n[0]


def run_syncs(args) -> int:
    """Host syncs of the gpu loader per batch, and of ``tinyfast.train`` per step: two runs of
    different lengths, so set-up and checkpoint syncs cancel out of the difference."""
    device = torch.device(args.device)
    short, long_ = (int(s) for s in args.steps.split(","))
    emit(_loader_syncs(args, device, long_))
    with tempfile.TemporaryDirectory(prefix="tinyfast-syncs-") as work:
        a, b = _train_syncs(args, device, short, work), _train_syncs(args, device, long_, work)
    emit({"what": f"tinyfast.train {args.arch}", "steps": [short, long_], "syncs": [a, b],
          "syncs_per_step": (b - a) / (long_ - short)})
    return 0


def get_args_parser() -> argparse.ArgumentParser:
    """The ``python -m benchmarks.proof.steps`` argument parser."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.proof.steps", description=__doc__.split("\n\n")[0])
    p.add_argument("step", choices=["loaders", "syncs"])
    p.add_argument("--data", required=True, help="packed dataset")
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--loaders", default=None, help="loaders: comma-separated names (default: all registered)")
    p.add_argument("--workers", default=None, help="loaders: DataLoader worker counts (default: a sweep to the cores)")
    p.add_argument("--batches", type=int, default=20, help="loaders: timed batches per run")
    p.add_argument("--warmup", type=int, default=3, help="loaders: untimed batches first")
    p.add_argument("--runs", type=int, default=2, help="loaders: timed runs (median)")
    p.add_argument("--steps", default="5,25", help="syncs: the two run lengths, in steps")
    p.add_argument("--arch", default="resnet18", help="syncs: the model trained")
    return p


def main(argv=None) -> int:
    """Run one step; its rows go to stdout."""
    args = get_args_parser().parse_args(argv)
    return run_loaders(args) if args.step == "loaders" else run_syncs(args)


if __name__ == "__main__":
    sys.exit(main())

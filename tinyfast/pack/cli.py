"""The command line of ``python -m tinyfast.pack``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from tinyfast._util import Terminated, short_parser
from tinyfast.data import PackError, verify
from tinyfast.pack import output
from tinyfast.pack.pipeline import pack
from tinyfast.pack.synthetic_source import pack_synthetic

PROG = "python -m tinyfast.pack"


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m tinyfast.pack`` argument parser."""
    p = short_parser(
        prog=PROG,
        description="Pack Tiny ImageNet (or an ImageFolder, or a built-in synthetic set) into "
                    "memory-mappable .npy arrays with a verified manifest.")
    p.add_argument("src", nargs="?", help="tiny-imagenet-200 directory or ImageFolder root")
    p.add_argument("--out", help="output directory (must not exist or be empty, unless --overwrite)")
    p.add_argument("--size", type=int, default=64, help="output side in pixels (default 64)")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="ImageFolder only: fraction of each class moved to val (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the val split and of --synthetic")
    p.add_argument("--jpeg-shards", action="store_true",
                   help="also write WebDataset tar shards of the JPEG bytes (for GPU decode)")
    p.add_argument("--shard-size", type=int, default=10000, help="images per shard (default 10000)")
    p.add_argument("--ffcv", action="store_true", help="also write <split>.beton with FFCV's writer")
    p.add_argument("--strict", action="store_true", help="make every skipped file an error")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="pack at most N images per class of each split (a quick subset of real data)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--workers", type=int, default=None, help="decode processes (default or 0: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--verify", metavar="DIR", help="re-check every sha256 of a packed dataset and exit")
    g = p.add_argument_group("synthetic data")
    g.add_argument("--synthetic", action="store_true", help="generate the built-in synthetic set and pack it")
    g.add_argument("--classes", type=int, default=200)
    g.add_argument("--per-class", type=int, default=500, help="train images per class")
    g.add_argument("--val-per-class", type=int, default=50)
    g.add_argument("--test-count", type=int, default=None, help="default classes x val-per-class")
    g.add_argument("--tree", help="keep the generated JPEG tree in this directory")
    return p


def main(argv=None) -> int:
    """CLI entry point; returns the exit status (2 with one ``python -m tinyfast.pack: error: ...``
    line on bad input, as every CLI's)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    restore = _signals_interrupt()
    try:
        _run(args, parser, (lambda *a: None) if args.quiet else print)
        return 0
    except PackError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the pack converts its own; this catches what slips through, in one line
        print(f"{PROG}: error: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # 130 for Ctrl-C, 143 for SIGTERM, as a training run exits
        how = " (SIGTERM)" if isinstance(e, Terminated) else ""
        print(f"{PROG}: error: interrupted{how}; nothing was written to --out", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
    finally:
        restore()


def _signals_interrupt():
    """SIGTERM (``kill``, a job scheduler) cleans up as Ctrl-C does, and both are recorded: one whose
    exception a C callback swallowed (numba's under FFCV prints "Exception ignored") still stops
    the pack before its output is installed (:func:`~tinyfast.pack.output.install`). Returns the undo."""
    output.forget_signals()
    if threading.current_thread() is not threading.main_thread():
        return output.forget_signals

    def interrupt(signum, frame):
        output.note_signal(signum)
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    def unraisable(u, default=sys.unraisablehook):  # recorded above: no "Exception ignored" traceback
        if not isinstance(u.exc_value, KeyboardInterrupt):
            default(u)

    old = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    hook, sys.unraisablehook = sys.unraisablehook, unraisable

    def undo():  # the signals seen were this command's: a later pack in this process is not stopped
        output.forget_signals()
        sys.unraisablehook = hook
        for s, h in old.items():
            signal.signal(s, h)
    return undo


def _run(args, parser: argparse.ArgumentParser, log) -> None:
    if args.verify:
        if args.src or args.out or args.synthetic:
            parser.error("--verify takes only DIR")
        t0 = time.time()
        man = verify(args.verify, progress=not args.quiet)
        n = sum(s["count"] for s in man["splits"].values())
        log(f"ok: {args.verify}: {len(man['files'])} files match their sha256 ({n} images, "
            f"{time.time() - t0:.1f} s)")
        return
    if not args.out:
        parser.error("--out is required")
    common = dict(size=args.size, seed=args.seed, jpeg_shards=args.jpeg_shards, shard_size=args.shard_size,
                  ffcv=args.ffcv, strict=args.strict, overwrite=args.overwrite, workers=args.workers,
                  progress=not args.quiet, log=log, limit=args.limit)
    if args.synthetic:
        if args.src:
            parser.error("--synthetic takes no SRC")
        for name in ("classes", "per_class", "val_per_class"):
            least = 1 if name != "val_per_class" else 0
            if getattr(args, name) < least:
                parser.error(f"--{name.replace('_', '-')} must be >= {least}, got {getattr(args, name)}")
        pack_synthetic(args.out, classes=args.classes, per_class=args.per_class,
                       val_per_class=args.val_per_class, test_count=args.test_count, tree=args.tree, **common)
        return
    if not args.src:
        parser.error("SRC is required (or --synthetic, or --verify DIR)")
    pack(args.src, args.out, val_fraction=args.val_fraction, **common)

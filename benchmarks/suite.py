"""The whole benchmark suite in one command: ``tinyfast-bench`` (or ``python -m benchmarks`` from
the repository root).

On any CUDA GPU it records the machine (GPU name, SM count, memory, driver, CUDA, torch, DALI/FFCV
versions, CPU cores, git commit), measures the ceilings once (device-to-device copy GB/s of a
buffer far larger than the caches, matmul TFLOP/s; every "fraction of the copy ceiling" below is
against that one figure), then

  a. loaders: images/sec with training augmentation of every registered loader (the ``torch``
     baseline swept over DataLoader workers from 0 to the core count; ``dali`` from the packed
     pixels and from the JPEG shards), warm-up + median of runs; a loader that cannot run on the
     data is a row of the table with the reason;
  b. the fused op: GB/s and images/sec against the copy ceiling, batch-size sweep
     (``benchmarks.op``);
  c. training: images/sec of a train step (forward, backward, SGD step) per architecture, fed by
     each loader and by a fixed batch already on the device (that model's ceiling), with
     channels-last + AMP on and off;
  d. time to a target val top-1 with ``python -m tinyfast.train`` on the packed data.

Without ``--data`` it runs on the built-in default set, which holds what every loader reads (the
JPEG tree, WebDataset shards, the ``.beton`` when FFCV is installed). A ratio above 1 (a loader
faster than its ceiling) is flagged in the table as a measurement problem. It writes
``<device>-<date>-<time>.json``, the same as a Markdown table (``.md``) and a PNG bar chart, to
``./benchmark-results/`` under the current folder (or ``--out``). ``--quick`` is the reduced
CPU mode (tiny data, few batches; a minute or less on two cores) that CI runs to check the
report's structure; without a GPU and without ``--quick`` it says so and how long it will take.

    tinyfast-bench                             # everything, on the GPU when there is one
    tinyfast-bench --data data/packed          # on a packed dataset (default: built-in synthetic)
    tinyfast-bench --quick --out /tmp/b        # CPU smoke run
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks import common
from benchmarks import loaders as loader_section, op as op_section, reporting, train as train_section
from benchmarks import time_to_accuracy as accuracy_section
from benchmarks.common import has_module, skip_reason

SECTIONS = ("loaders", "op", "train", "time-to-accuracy")
SCRATCH = "<scratch>"  # how the output names the run's temporary folder
FULL_ARCHS = "resnet18,resnet50,vgg16,densenet161,mobilenet_v2"


def get_args_parser() -> argparse.ArgumentParser:
    """The ``python -m benchmarks`` argument parser."""
    from tinyfast._util import short_parser

    p = short_parser(prog="tinyfast-bench", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (cuda when visible), cpu, cuda, cuda:N")
    p.add_argument("--data", default=None, help="packed dataset (default: the built-in synthetic set)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    p.add_argument("--loaders", default=None, help="comma-separated loaders (default: all registered)")
    p.add_argument("--archs", default=None, help=f"comma-separated architectures (default: {FULL_ARCHS})")
    p.add_argument("--batch-size", type=int, default=None, help="loader/train batch (default 256, quick 16)")
    p.add_argument("--batches", type=int, default=None, help="timed batches per run (default 50, quick 3)")
    p.add_argument("--runs", type=int, default=None, help="timed runs, median reported (default 3, quick 1)")
    p.add_argument("--target", type=float, default=None,
                   help="val top-1 for time-to-accuracy (default 0.5; quick 0.0: just the epoch time)")
    p.add_argument("--target-arch", default=None, help="architecture of the time-to-accuracy run (default "
                   "resnet18, quick cnn2)")
    p.add_argument("--target-epochs", type=int, default=None, help="epoch cap of that run (default 16, quick 1)")
    p.add_argument("--quick", action="store_true", help="reduced CPU smoke mode (tiny data, few batches)")
    p.add_argument("--full", action="store_true",
                   help="on a CPU, run the full suite even when it would take more than an hour (without "
                        "it such a run becomes the --quick one, and says so)")
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default: ./benchmark-results under the current folder); "
                        "files <device>-<date>-<time>.{json,md,png}")
    return p



# ----------------------------------------------------------------------------- running it

class _Scrub(io.TextIOBase):
    """A text stream writing to ``stream`` with the run's scratch folder shown as ``<scratch>``:
    the output names no temporary path (they mean nothing once the run has ended)."""

    def __init__(self, stream, folder: Path):
        super().__init__()
        self.stream = stream
        self.paths = sorted({str(folder), os.path.realpath(folder)}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for path in self.paths:
            text = text.replace(path, SCRATCH)
        return text

    def write(self, text: str) -> int:
        self.stream.write(self.scrub(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:  # progress bars on a terminal, plain lines in a log, as without it
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


def _resolve_args(args) -> torch.device:
    """Fill the quick/full defaults and check the arguments; returns the device."""
    p = get_args_parser()
    bad = [s for s in args.sections if s not in SECTIONS]
    if bad:
        p.error(f"--sections: unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
    if not args.sections:
        p.error("--sections: empty; choose from " + ", ".join(SECTIONS))
    _check_names(p, args)
    try:
        device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                              else ("cpu" if args.device == "auto" else args.device))
    except RuntimeError as e:
        p.error(f"--device {args.device!r}: {skip_reason(e)}")
    if device.type not in ("cpu", "cuda"):
        p.error(f"--device {args.device!r}: choose auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible")
    for name, v in (("--batch-size", args.batch_size), ("--batches", args.batches), ("--runs", args.runs),
                    ("--target-epochs", args.target_epochs)):
        if v is not None and v <= 0:
            p.error(f"{name} must be positive, got {v}")
    if args.target is not None and not 0.0 <= args.target <= 1.0:  # also refuses nan
        p.error(f"--target must be a val top-1 in [0, 1], got {args.target}")
    if args.data is not None:
        from tinyfast.data import PackError, read_manifest

        try:
            read_manifest(Path(args.data))
        except (PackError, OSError, ValueError) as e:
            p.error(f"--data {args.data}: not a packed dataset ({e}); pack one with python -m tinyfast.pack")
    args.given = {k for k in DEFAULTS if getattr(args, k) is not None}
    fill_defaults(args)
    return device


# Per setting: (quick value, full value), used where the command line gives none.
DEFAULTS = {"batch_size": (16, 256), "batches": (3, 50), "runs": (1, 3), "target": (0.0, 0.5),
            "target_epochs": (1, 16), "target_arch": ("cnn2", "resnet18")}
CPU_FULL_LIMIT_S = 3600.0  # a CPU run estimated longer than this needs --full


def fill_defaults(args) -> None:
    """The settings not given on the command line, for ``args.quick`` (again after a switch)."""
    for key, (quick_value, full_value) in DEFAULTS.items():
        if key not in args.given:
            setattr(args, key, quick_value if args.quick else full_value)


def _check_names(p, args) -> None:
    """Unknown loaders and architectures are one line naming them, before anything runs."""
    from tinyfast import loaders
    from tinyfast.models import is_known, list_models

    known = loaders.list_loaders()
    bad = [n for n in (args.loaders or "").split(",") if n.strip() and n.strip() not in known]
    if bad:
        p.error(f"--loaders: unknown {', '.join(bad)}; choose from {', '.join(known)}")
    for flag, given in (("--archs", args.archs), ("--target-arch", args.target_arch)):
        bad = [n for n in (given or "").split(",") if n.strip() and not is_known(n.strip())]
        if bad:
            p.error(f"{flag}: unknown architecture {', '.join(bad)}; choose from {', '.join(list_models())} "
                    "(or tv:<torchvision classifier>)")


def prepare_data(args, work: Path) -> tuple[Path, str]:
    """The packed data of the run and how the report names it.

    ``--data`` as given; ``--quick`` a tiny synthetic set packed in the scratch folder with its
    JPEG tree, shards and (FFCV installed) ``.beton``; otherwise the built-in default set, which
    keeps all of them, so every loader has its input.
    """
    from tinyfast.default_data import ensure_default_data

    if args.data:
        return Path(args.data), str(args.data)
    if not args.quick:
        data = ensure_default_data()
        return data, str(data)
    from tinyfast.pack import main as pack_main

    data = work / "data"
    argv = ["--synthetic", "--classes", "4", "--per-class", "24", "--val-per-class", "8",
            "--out", str(data), "--tree", str(work / "tree"), "--jpeg-shards", "--quiet"]
    if has_module("ffcv"):
        argv.append("--ffcv")
    with contextlib.redirect_stdout(sys.stderr):
        rc = pack_main(argv)
    if rc:
        raise SystemExit(f"error: packing the quick synthetic set failed ({rc})")
    return data, "quick synthetic set (4 classes x 24 train + 8 val, packed for this run)"


def data_size(args) -> tuple[int, int]:
    """(train images, classes) of the data the run will use, without building it: ``--data``'s, the
    default set's when it exists, else the size the default set will be packed at on this machine."""
    from tinyfast.data import is_packed, open_packed
    from tinyfast.default_data import QUICK_SYNTHETIC, default_data_dir

    data = Path(args.data) if args.data else default_data_dir()
    if is_packed(data):
        ps = open_packed(data, "train")
        return len(ps), ps.num_classes
    cfg = QUICK_SYNTHETIC  # the default set on a machine without CUDA
    return cfg["classes"] * cfg["per_class"], cfg["classes"]


def estimate_seconds(args, names: list[str], archs: list[str], feeds: list[str], ceil: dict) -> float:
    """Rough wall time of the selected sections on the CPU, from the measured matmul rate (convnets
    reach about a third of it on a CPU) and ~1,000 images/s per core for the loader rows."""
    from tinyfast._util import cpu_count

    n_train, num_classes = data_size(args)
    flop_rate = ceil["matmul_tflop_per_s"] * 1e12 / 3
    seconds = 0.0
    if "loaders" in args.sections:
        rows = sum(len(loader_section.loader_variants(n, torch.device("cpu"))) * (cpu_count() + 1 if n == "torch" else 1)
                   for n in names)
        seconds += rows * (5 + args.runs * args.batches) * args.batch_size / (1000.0 * cpu_count())
    if "op" in args.sections:
        seconds += 60.0
    from benchmarks.plan import image_flops
    # a training step's FLOPs per 64 px image, taken as 3x the forward pass's
    per_arch = {a: 3.0 * image_flops(a, 64, num_classes)["eval"] for a in set(archs) | {args.target_arch}}
    if "train" in args.sections:
        steps = 2 * (1 + len(feeds)) * (5 + args.runs * args.batches)
        seconds += sum(steps * args.batch_size * per_arch[a] for a in archs) / flop_rate
    if "time-to-accuracy" in args.sections:
        seconds += args.target_epochs * n_train * 1.4 * per_arch[args.target_arch] / flop_rate
    return seconds


def _selection(args) -> tuple[list[str], list[str], list[str]]:
    """The loaders, architectures and training feeds of the run."""
    from tinyfast import loaders

    names = [n.strip() for n in args.loaders.split(",") if n.strip()] if args.loaders else loaders.list_loaders()
    archs = [a.strip() for a in (args.archs or ("cnn2" if args.quick else FULL_ARCHS)).split(",") if a.strip()]
    feeds = [n for n in names if n != "torch"] if not args.quick else [n for n in ("gpu",) if n in names]
    feeds += ["torch"] if "torch" in names else []
    return names, archs, feeds


def _plan_cpu_run(args, ceil) -> float | None:
    """Without a GPU and without ``--quick``: the full suite's estimated time on this CPU; over an
    hour without ``--full``, the run becomes the quick one, and says so."""
    try:
        est = estimate_seconds(args, *_selection(args), ceil)
    except Exception as e:  # an estimate must never stop the run it describes
        print(f"  (no time estimate: {type(e).__name__}: {e})", flush=True)
        est = None
    took = reporting.duration(est) if est else "an unknown time"
    if est is not None and est > CPU_FULL_LIMIT_S and not args.full:
        print(f"note: no GPU in use, and the full suite would take {took} on this CPU (rough "
              "estimate): running the quick suite instead (--full runs the full one anyway; --sections, "
              "--archs and --batches choose a part).", flush=True)
        args.quick = True
        fill_defaults(args)
        return est
    print(f"note: no GPU in use: running the FULL suite on the CPU; this will take {took} "
          "(rough estimate). For a smoke run of a minute or less: --quick; to choose: --sections, "
          "--archs, --batches.", flush=True)
    return est


def _announce_data(args) -> None:
    """Say where the data comes from before anything is built: the default set's folder, and
    whether it exists or is packed now (it is kept there for later runs)."""
    from tinyfast.data import is_packed
    from tinyfast.default_data import default_data_dir

    if args.data or args.quick:
        return
    where = default_data_dir().absolute()
    if is_packed(where):
        print(f"data: the default set at {where}", flush=True)
    else:
        print(f"data: packing the default synthetic set into {where} now (kept for later runs; "
              "TINYFAST_DATA or --data chooses another)", flush=True)


def run_sections(args, device: torch.device, work: Path) -> dict:
    """Measure the ceilings and the selected sections; returns the report (no files written)."""
    ce = common.ceilings(device, args.quick)
    est = _plan_cpu_run(args, ce) if device.type == "cpu" and not args.quick else None
    _announce_data(args)
    data, data_label = prepare_data(args, work)
    names, archs, feeds = _selection(args)
    print(f"tinyfast benchmarks on {common.device_name(device)} ({device}); data {data_label}", flush=True)
    report = {"device_name": common.device_name(device), "device": str(device), "quick": args.quick,
              "command": "tinyfast-bench " + " ".join(args.argv), "data": data_label,
              "environment": common.environment([str(device)]), "ceilings": ce}
    if est is not None:
        report["estimated_seconds"] = est
    print(f"  ceilings: copy {ce['copy_gb_per_s']:.1f} GB/s, matmul {ce['matmul_tflop_per_s']:.2f} TFLOP/s",
          flush=True)
    if "loaders" in args.sections:
        report["loaders"] = loader_section.section(data, device, names, args)
    if "op" in args.sections:
        report["op"] = op_section.section(device, args, work, copy_gb_per_s=ce["copy_gb_per_s"])
    if "train" in args.sections:
        report["train"] = train_section.section(data, device, archs, feeds, args)
    if "time-to-accuracy" in args.sections:
        report["time_to_accuracy"] = accuracy_section.section(data, device, args, work)
    return report


def _out_dir(path: Path) -> Path:
    """``path``, created and known to be writable before anything is measured (a long run must not
    end in a traceback when the results cannot be written)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        get_args_parser().error(f"--out {path}: cannot write results there ({e.strerror or e})")
    return path


def main(argv=None) -> dict:
    """Run the selected sections, write ``<device>-<date>-<time>.{json,md,png}``; returns the report."""
    args = get_args_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    device = _resolve_args(args)
    out_dir = _out_dir(args.out or common.results_dir())
    with tempfile.TemporaryDirectory(prefix="tinyfast-bench-") as work:
        work = Path(work)
        out, err = _Scrub(sys.stdout, work), _Scrub(sys.stderr, work)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            report = run_sections(args, device, work)
            report = json.loads(out.scrub(json.dumps(report)))
    report["paths"] = reporting.write_report(report, out_dir)
    return report


def measured(report: dict) -> int:
    """How many figures the report holds (loader, op and training rows with a rate, a finished
    time-to-accuracy run)."""
    n = sum(1 for r in report.get("loaders", []) if r.get("images_per_sec"))
    n += sum(1 for r in (report.get("op") or {}).get("rows", []) if r.get("images_per_s"))
    n += sum(1 for r in report.get("train", []) if r.get("images_per_sec"))
    acc = report.get("time_to_accuracy") or {}
    return n + (1 if acc.get("exit_code") == 0 and acc.get("epochs_run") else 0)


def cli(argv=None) -> int:
    """The ``tinyfast-bench`` console script: :func:`main`. Exit status 0 when something was
    measured, 1 when every selected row was skipped (as ``python -m tinyfast.loaders --bench``),
    2 on bad arguments, 130 on Ctrl-C (one line; nothing written, the scratch folder removed)."""
    try:
        report = main(argv)
    except KeyboardInterrupt:
        print("tinyfast-bench: interrupted; no result files written", file=sys.stderr)
        return 130
    if not measured(report):
        print("tinyfast-bench: error: nothing was measured (every selected row was skipped; the reasons "
              f"are in {report['paths'].get('md', 'the report')})", file=sys.stderr)
        return 1
    return 0



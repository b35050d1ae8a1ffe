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
     (``benchmarks.bench_augment``);
  c. training: images/sec of a train step (forward, backward, SGD step) per architecture, fed by
     each loader and by a fixed batch already on the device (that model's ceiling), with
     channels-last + AMP on and off;
  d. time to a target val top-1 with ``python -m tinyfast.train`` on the packed data.

Without ``--data`` it runs on the built-in default set, which holds what every loader reads (the
JPEG tree, WebDataset shards, the ``.beton`` when FFCV is installed). A ratio above 1 (a loader
faster than its ceiling) is flagged in the table as a measurement problem. It writes
``<device>-<date>-<time>.json``, the same as a Markdown table (``.md``) and a PNG bar chart, to
``benchmarks/results/`` (``./benchmark-results/`` outside a checkout). ``--quick`` is the reduced
CPU mode (tiny data, few batches; well under a minute on two cores) that CI runs to check the
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
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import common

SECTIONS = ("loaders", "op", "train", "tta")
SCRATCH = "<scratch>"  # how the output names the run's temporary folder
FULL_ARCHS = "resnet18,resnet50,vgg16,densenet161,mobilenet_v2"


def get_args_parser() -> argparse.ArgumentParser:
    """The ``python -m benchmarks`` argument parser."""
    p = argparse.ArgumentParser(prog="tinyfast-bench", description=__doc__.split("\n\n")[0],
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
    p.add_argument("--tta-arch", default=None, help="architecture of the time-to-accuracy run (default "
                   "resnet18, quick cnn2)")
    p.add_argument("--tta-epochs", type=int, default=None, help="epoch cap of that run (default 16, quick 1)")
    p.add_argument("--quick", action="store_true", help="reduced CPU smoke mode (tiny data, few batches)")
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default: benchmarks/results of the checkout, else "
                        "./benchmark-results); files <device>-<date>-<time>.{json,md,png}")
    return p


# ----------------------------------------------------------------------------- environment

def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def environment(device: torch.device) -> dict:
    """common.environment() plus SM count and the optional loaders' versions."""
    env = common.environment([str(device)])
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu_sm_count"] = props.multi_processor_count
    from importlib import metadata

    for key, dists in (("dali", ("nvidia-dali-cuda130", "nvidia-dali-cuda120", "nvidia-dali-cuda110")),
                       ("ffcv", ("ffcv",)), ("numpy", ("numpy",)), ("pillow", ("pillow",))):
        env[f"{key}_version"] = None  # recorded as absent unless a distribution is installed
        for dist in dists:
            try:
                env[f"{key}_version"] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return env


def ceilings(device: torch.device, quick: bool) -> dict:
    """Device copy bandwidth (bytes read + written) and dense matmul throughput."""
    n = (64 if quick else (1024 if device.type == "cuda" else 256)) * 2 ** 20
    a = torch.ones(n, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    t = common.time_it(lambda: b.copy_(a), device, warmup=2, repeat=3 if quick else 10)["median"]
    copy_gbs = 2 * n / t / 1e9
    del a, b
    mm_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    k = 512 if quick else (8192 if device.type == "cuda" else 2048)
    x = torch.randn(k, k, device=device, dtype=mm_dtype)
    y = torch.randn(k, k, device=device, dtype=mm_dtype)
    t = common.time_it(lambda: x @ y, device, warmup=2, repeat=3 if quick else 10)["median"]
    return {"copy_gb_per_s": copy_gbs, "copy_bytes": 2 * n, "matmul_tflop_per_s": 2 * k ** 3 / t / 1e12,
            "matmul_dtype": str(mm_dtype).replace("torch.", ""), "matmul_n": k}


# ----------------------------------------------------------------------------- a. loaders

def loader_variants(name: str, device: torch.device) -> list[tuple[dict, str]]:
    """The rows of one loader: ``(build kwargs, what it reads)``; ``dali`` is measured both from the
    packed pixels and from the JPEG shards (decoded by nvJPEG on a GPU)."""
    if name == "dali":
        jpeg = "JPEG shards, nvJPEG" if device.type == "cuda" else "JPEG shards"
        return [({"source": "pixels"}, "packed .npy"), ({"source": "jpeg"}, jpeg)]
    reads = {"torch": "JPEG tree", "torch-npy": "packed .npy", "gpu": "packed .npy, resident",
             "dali-native": "packed .npy", "ffcv": ".beton"}
    return [({}, reads.get(name, ""))]


def _skip_reason(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def bench_loaders(data: Path, device: torch.device, names: list[str], args) -> list[dict]:
    """Section a: one row per loader and input (the ``torch`` baseline once per worker count),
    measured or skipped with the reason; measured rows also get their speed-up over the best
    baseline row."""
    from tinyfast import loaders
    from tinyfast._util import cpu_count

    cores = cpu_count()
    sweep = sorted({0, 1, cores} if args.quick else set(range(0, cores + 1)))
    rows = []
    for name in names:
        for kw, reads in loader_variants(name, device):
            for w in (sweep if name == "torch" else [None]):
                row = {"loader": name, "input": reads, "workers": w, "device": str(device),
                       "batch_size": args.batch_size, **kw}
                try:
                    r = loaders.throughput(name, data, "train", args.batch_size, device, policy="default",
                                           batches=args.batches, warmup=2 if args.quick else 5,
                                           runs=args.runs, num_workers=w, show_progress=True, **kw)
                    row.update(images_per_sec=r["images_per_sec"], runs=r["runs"], dtype=r["dtype"],
                               seconds_build=r["seconds_build"])
                except (ImportError, ValueError, RuntimeError, OSError) as exc:
                    row["skipped"] = _skip_reason(exc)
                rows.append(row)
                print(_fmt_loader(row), flush=True)
    base = [r for r in rows if r["loader"] == "torch" and "images_per_sec" in r]
    if base:
        best = max(r["images_per_sec"] for r in base)
        for r in rows:
            if "images_per_sec" in r:
                r["speedup_vs_torch_best"] = r["images_per_sec"] / best
    return rows


def _fmt_loader(r: dict) -> str:
    w = "-" if r.get("workers") is None else r["workers"]
    what = f"{r['loader']} ({r['input']})" if r.get("input") else r["loader"]
    if "skipped" in r:
        return f"  loader {what:<34} workers {w!s:>3}: skipped ({r['skipped']})"
    return f"  loader {what:<34} workers {w!s:>3}: {r['images_per_sec']:>12,.0f} images/s"


def flag_ratio(row: dict, key: str, value: float) -> None:
    """Store a measured/ceiling ratio; above 1 the row is flagged: nothing beats its ceiling, so
    it is a measurement problem (timing noise, too few batches, a cache-resident working set)."""
    row[key] = value
    if value > 1.0:
        row["flag"] = (f"{key.replace('_', ' ')} {value:.2f} > 1: a measurement problem, not a "
                       "speed-up (noise or cache effects; rerun with more --batches/--runs)")


# ----------------------------------------------------------------------------- b. op

def bench_op(device: torch.device, args, out_dir: Path, copy_gb_per_s: float | None = None) -> dict:
    """Section b: :mod:`benchmarks.bench_augment` on ``device``; its rows and summary.

    With ``copy_gb_per_s`` (the run's one copy ceiling, from :func:`ceilings`), the op rows'
    fractions of the copy ceiling are taken against it, and bench_augment's own same-bytes copy
    rows (small buffers that may sit in cache) are left out, so the report has one copy ceiling.
    """
    from benchmarks import bench_augment

    argv = ["--device", device.type, "--out", str(out_dir / "augment.json")]
    if args.quick:
        argv.append("--quick")
    with contextlib.redirect_stdout(sys.stderr):
        report = bench_augment.main(argv)
    rows, summary = report["results"], report["summary"]
    if copy_gb_per_s:
        rows = [r for r in rows if "copy" not in r["impl"]]
        summary = {k: v for k, v in summary.items() if "fraction_of_copy" not in k}
        for r in rows:
            if r["device"] == device.type and r["impl"] == "tinyfast op" and r.get("gb_per_s"):
                flag_ratio(r, "fraction_of_copy_ceiling", r["gb_per_s"] / copy_gb_per_s)
        fractions = [r["fraction_of_copy_ceiling"] for r in rows if "fraction_of_copy_ceiling" in r]
        if fractions:
            summary["best_fraction_of_copy_ceiling"] = max(fractions)
    return {"rows": rows, "summary": summary}


# ----------------------------------------------------------------------------- c. training

def _train_steps(model, opt, batches, device, amp: bool, channels_last: bool, steps: int, warmup: int,
                 runs: int) -> float:
    """Median images/sec of ``steps`` SGD steps; ``batches`` is an endless iterator of (x, y)."""
    amp_dtype = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        x, y = next(batches)
        x = x.to(memory_format=fmt)
        if not amp:
            x = x.float()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return x.shape[0]

    for _ in range(warmup):
        step()
    common.sync(device)
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        n = sum(step() for _ in range(steps))
        common.sync(device)
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def _endless(loader):
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def bench_train(data: Path, device: torch.device, archs: list[str], feeds: list[str], args) -> list[dict]:
    """Section c: train-step images/s per architecture, with and without channels-last + AMP, fed
    by a fixed on-device batch (the ceiling) and by each loader in ``feeds``."""
    from tinyfast import loaders
    from tinyfast.data import open_packed
    from tinyfast.models import get_model

    num_classes = open_packed(data, "train").num_classes
    rows = []
    bs = args.batch_size
    for arch in archs:
        for cl_amp in (True, False):
            model = get_model(arch, num_classes=num_classes).to(device)
            if cl_amp:
                model = model.to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            for feed in ["synthetic"] + feeds:
                row = {"arch": arch, "feed": feed, "channels_last_amp": cl_amp, "batch_size": bs,
                       "device": str(device)}
                loader = None
                try:
                    if feed == "synthetic":  # the ceiling: one fixed batch already on the device
                        x = torch.randn(bs, 3, 64, 64, device=device).to(memory_format=torch.channels_last)
                        y = torch.randint(0, num_classes, (bs,), device=device)
                        it = iter(lambda: (x, y), None)
                    else:
                        loader = loaders.build(feed, data, "train", bs, device=device, policy="default",
                                               dtype=torch.bfloat16 if cl_amp else torch.float32)
                        it = _endless(loader)
                    row["images_per_sec"] = _train_steps(model, opt, it, device, cl_amp, cl_amp, args.batches,
                                                         1 if args.quick else 5, args.runs)
                except (ImportError, ValueError, RuntimeError, OSError) as exc:
                    row["skipped"] = _skip_reason(exc)
                finally:
                    if loader is not None:  # stop its workers now: left running they slow the next row
                        loader.close()
                rows.append(row)
                got = f"{row['images_per_sec']:,.0f} images/s" if "images_per_sec" in row else f"skipped ({row['skipped']})"
                print(f"  train {arch:<13} cl+amp={cl_amp!s:<5} feed {feed:<12}: {got}", flush=True)
            del model, opt
    ceiling = {(r["arch"], r["channels_last_amp"]): r.get("images_per_sec") for r in rows if r["feed"] == "synthetic"}
    for r in rows:
        c = ceiling.get((r["arch"], r["channels_last_amp"]))
        if c and "images_per_sec" in r:
            flag_ratio(r, "fraction_of_ceiling", r["images_per_sec"] / c)
    return rows


# ----------------------------------------------------------------------------- d. time to accuracy

def bench_tta(data: Path, device: torch.device, args, work: Path) -> dict:
    """Section d: run ``python -m tinyfast.train`` in-process and read when val top-1 reached the target."""
    from tinyfast import train

    run_dir = work / "tta"
    argv = ["--arch", args.tta_arch, "--data", str(data), "--epochs", str(args.tta_epochs),
            "--out-dir", str(work), "--name", "tta", "--device", str(device), "--amp", "--no-progress"]
    if args.quick:
        argv += ["--batch-size", str(args.batch_size)]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        rc = train.main(argv)
    wall = time.perf_counter() - t0
    metrics = []
    for path in run_dir.rglob("metrics.jsonl"):
        metrics = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = {"arch": args.tta_arch, "target_top1": args.target, "epochs_run": len(metrics), "wall_s": wall,
           "exit_code": rc, "reached": False, "command": "python -m tinyfast.train " + " ".join(argv)}
    elapsed = 0.0
    for m in metrics:
        elapsed += float(m.get("epoch_time", 0.0))
        top1 = m.get("val_top1")
        if top1 is not None and top1 >= args.target:
            out.update(reached=True, epoch=m.get("epoch"), train_seconds_to_target=elapsed, val_top1=top1)
            break
    if metrics:
        out["final_val_top1"] = metrics[-1].get("val_top1")
    return out


# ----------------------------------------------------------------------------- report

def _note(row: dict) -> str | None:
    if "skipped" in row:
        return f"skipped: {row['skipped']}"
    return row.get("flag")


def _shown(rows: list[dict]) -> list[dict]:
    """Rows as the tables show them: a skipped row says so in its figure and gives the reason."""
    return [dict(r, images_per_sec=r.get("images_per_sec", "skipped"), note=_note(r)) for r in rows]


def _loaders_md(rows: list[dict]) -> list[str]:
    lines = ["## Loaders (images/s, training augmentation)", "",
             common.format_table(_shown(rows), [
                 ("loader", "loader", ""), ("input", "reads", ""), ("workers", "workers", ""),
                 ("images_per_sec", "images/s", ",.0f"), ("speedup_vs_torch_best", "x best torch", ".1f"),
                 ("note", "note", "")]), ""]
    skipped = sorted({r["loader"] for r in rows if "skipped" in r})
    if not any(r["loader"] == "torch" and "images_per_sec" in r for r in rows):
        lines += ["No `torch` baseline row was measured (see its note), so there are no speed-ups.", ""]
    if skipped:
        lines += [f"Skipped here: {', '.join(skipped)} (reasons in the note column).", ""]
    return lines


def markdown(report: dict) -> str:
    """The report as Markdown: environment, ceilings and one table per section."""
    env, ce = report["environment"], report["ceilings"]
    lines = [f"# tinyfast benchmarks: {report['device_name']}", "",
             f"- date {env['date']}, commit {env['git']['commit']}{' (dirty)' if env['git']['dirty'] else ''}",
             f"- torch {env['torch']} (CUDA {env['torch_cuda']}), driver {env.get('driver')}, "
             f"DALI {env.get('dali_version')}, FFCV {env.get('ffcv_version')}, CPU {env['cpu']} x{env['cpu_count']}",
             f"- command: `{report['command']}`; data: {report['data']}",
             f"- ceilings, measured once for this run and used by every ratio below: copy "
             f"{ce['copy_gb_per_s']:.1f} GB/s (device to device, {ce['copy_bytes'] / 2 ** 21:.0f} MiB buffer, "
             f"bytes read + written), matmul ({ce['matmul_dtype']}) {ce['matmul_tflop_per_s']:.2f} TFLOP/s; "
             "a training row's ceiling is the same model fed a fixed batch already on the device", ""]
    if report.get("estimated_seconds"):
        lines[-1:-1] = [f"- full suite on the CPU (no GPU in use): estimated {_duration(report['estimated_seconds'])}"]
    if report.get("loaders"):
        lines += _loaders_md(report["loaders"])
    if report.get("op"):
        lines += ["## Fused op", "", common.format_table(_shown(report["op"]["rows"]), [
            ("device", "device", ""), ("impl", "implementation", ""), ("mode", "mode", ""), ("batch", "batch", ""),
            ("images_per_s", "images/s", ",.0f"), ("gb_per_s", "GB/s", ".2f"),
            ("fraction_of_copy_ceiling", "of copy ceiling", ".2f"), ("note", "note", "")]), ""]
        for k, v in report["op"]["summary"].items():
            lines.append(f"- {k}: {v:.3f}" if isinstance(v, float) else f"- {k}: {v}")
        lines.append("")
    if report.get("train"):
        lines += ["## Training (images/s of SGD steps)", "", common.format_table(_shown(report["train"]), [
            ("arch", "arch", ""), ("channels_last_amp", "channels-last+AMP", ""), ("feed", "fed by", ""),
            ("images_per_sec", "images/s", ",.0f"), ("fraction_of_ceiling", "of ceiling", ".2f"),
            ("note", "note", "")]), ""]
    if report.get("tta"):
        t = report["tta"]
        lines += ["## Time to accuracy", "",
                  f"- `{t['command']}`",
                  f"- target top-1 {t['target_top1']}: " + (
                      f"reached at epoch {t['epoch']} after {t['train_seconds_to_target']:.1f} s of training"
                      if t["reached"] else f"not reached in {t['epochs_run']} epochs"),
                  f"- final val top-1 {t.get('final_val_top1')}, wall {t['wall_s']:.1f} s", ""]
    return "\n".join(lines)


def bar_chart(report: dict, path: Path) -> Path | None:
    """Loader images/s (log scale) and training fraction of ceiling, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lrows = [r for r in report.get("loaders", []) if "images_per_sec" in r]
    trows = [r for r in report.get("train", []) if "images_per_sec" in r and r["channels_last_amp"]]
    if not lrows and not trows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    if lrows:
        labels = [r["loader"] + (" jpeg" if r.get("source") == "jpeg" else "")
                  + (f" w{r['workers']}" if r["workers"] is not None else "") for r in lrows]
        axes[0].bar(labels, [r["images_per_sec"] for r in lrows], color="tab:blue")
        axes[0].set_yscale("log")
        axes[0].set_ylabel("images / s")
        axes[0].set_title("loaders (training augmentation)")
        axes[0].tick_params(axis="x", rotation=45)
    if trows:
        labels = [f"{r['arch']}\n{r['feed']}" for r in trows]
        axes[1].bar(labels, [r["images_per_sec"] for r in trows], color="tab:orange")
        axes[1].set_ylabel("images / s")
        axes[1].set_title("training step, channels-last + AMP")
        axes[1].tick_params(axis="x", rotation=60, labelsize=7)
    fig.suptitle(f"tinyfast — {report['device_name']}")
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110)
    finally:
        plt.close(fig)
    common.atomic_write_bytes(path, buf.getvalue())
    return path


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
        p.error(f"unknown section(s) {bad}; choose from {list(SECTIONS)}")
    try:
        device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                              else ("cpu" if args.device == "auto" else args.device))
    except RuntimeError as e:
        p.error(f"--device {args.device!r}: {_skip_reason(e)}")
    if device.type not in ("cpu", "cuda"):
        p.error(f"--device {args.device!r}: choose auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible")
    defaults = {"batch_size": (16, 256), "batches": (3, 50), "runs": (1, 3), "target": (0.0, 0.5),
                "tta_epochs": (1, 16), "tta_arch": ("cnn2", "resnet18")}
    for key, (quick_value, full_value) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick_value if args.quick else full_value)
    for name, v in (("--batch-size", args.batch_size), ("--batches", args.batches), ("--runs", args.runs),
                    ("--tta-epochs", args.tta_epochs)):
        if v <= 0:
            p.error(f"{name} must be positive, got {v}")
    return device


def prepare_data(args, work: Path) -> tuple[Path, str]:
    """The packed data of the run and how the report names it.

    ``--data`` as given; ``--quick`` a tiny synthetic set packed in the scratch folder with its
    JPEG tree, shards and (FFCV installed) ``.beton``; otherwise the built-in default set, which
    keeps all of them, so every loader has its input.
    """
    from tinyfast.data import ensure_default_data

    if args.data:
        return Path(args.data), str(args.data)
    if not args.quick:
        data = ensure_default_data()
        return data, str(data)
    from tinyfast.pack import main as pack_main

    data = work / "data"
    argv = ["--synthetic", "--classes", "4", "--per-class", "24", "--val-per-class", "8",
            "--out", str(data), "--tree", str(work / "tree"), "--jpeg-shards", "--quiet"]
    if _has("ffcv"):
        argv.append("--ffcv")
    with contextlib.redirect_stdout(sys.stderr):
        rc = pack_main(argv)
    if rc:
        raise SystemExit(f"error: packing the quick synthetic set failed ({rc})")
    return data, "quick synthetic set (4 classes x 24 train + 8 val, packed for this run)"


def _train_flops(arch: str, num_classes: int) -> float:
    """FLOPs of one training step per 64x64 image (3x the forward pass), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    from tinyfast.models import get_model

    model = get_model(arch, num_classes=num_classes).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    return 3.0 * counter.get_total_flops()


def estimate_seconds(args, data: Path, names: list[str], archs: list[str], feeds: list[str],
                     ceil: dict) -> float:
    """Rough wall time of the selected sections on the CPU, from the measured matmul rate (convnets
    reach about a third of it on a CPU) and ~1,000 images/s per core for the loader rows."""
    from tinyfast._util import cpu_count
    from tinyfast.data import open_packed

    ps = open_packed(data, "train")
    flop_rate = ceil["matmul_tflop_per_s"] * 1e12 / 3
    seconds = 0.0
    if "loaders" in args.sections:
        rows = sum(len(loader_variants(n, torch.device("cpu"))) * (cpu_count() + 1 if n == "torch" else 1)
                   for n in names)
        seconds += rows * (5 + args.runs * args.batches) * args.batch_size / (1000.0 * cpu_count())
    if "op" in args.sections:
        seconds += 60.0
    per_arch = {a: _train_flops(a, ps.num_classes) for a in set(archs) | {args.tta_arch}}
    if "train" in args.sections:
        steps = 2 * (1 + len(feeds)) * (5 + args.runs * args.batches)
        seconds += sum(steps * args.batch_size * per_arch[a] for a in archs) / flop_rate
    if "tta" in args.sections:
        seconds += args.tta_epochs * len(ps) * 1.4 * per_arch[args.tta_arch] / flop_rate
    return seconds


def _duration(seconds: float) -> str:
    if seconds > 2 * 86400:
        return f"about {seconds / 86400:,.0f} days"
    if seconds > 5400:
        return f"about {seconds / 3600:.1f} hours"
    return f"about {max(1, round(seconds / 60))} minutes"


def _announce_cpu_run(args, data, names, archs, feeds, ceil) -> float | None:
    """Without a GPU and without ``--quick``: say that the full suite runs on the CPU, and how long."""
    try:
        est = estimate_seconds(args, data, names, archs, feeds, ceil)
    except Exception as e:  # an estimate must never stop the run it describes
        print(f"  (no time estimate: {type(e).__name__}: {e})", flush=True)
        est = None
    took = _duration(est) if est else "a long time"
    print(f"note: no GPU in use: running the FULL suite on the CPU; this will take {took} "
          "(rough estimate). For a smoke run in well under a minute: --quick; to choose: --sections, "
          "--archs, --batches.", flush=True)
    return est


def run_sections(args, device: torch.device, work: Path) -> dict:
    """Measure the ceilings and the selected sections; returns the report (no files written)."""
    from tinyfast import loaders

    data, data_label = prepare_data(args, work)
    names = args.loaders.split(",") if args.loaders else loaders.list_loaders()
    archs = (args.archs or ("cnn2" if args.quick else FULL_ARCHS)).split(",")
    feeds = [n for n in names if n != "torch"] if not args.quick else [n for n in ("gpu",) if n in names]
    feeds += ["torch"] if "torch" in names else []
    print(f"tinyfast benchmarks on {common.device_name(device)} ({device}); data {data_label}", flush=True)
    report = {"device_name": common.device_name(device), "device": str(device), "quick": args.quick,
              "command": "tinyfast-bench " + " ".join(args.argv), "data": data_label,
              "environment": environment(device), "ceilings": ceilings(device, args.quick)}
    ce = report["ceilings"]
    print(f"  ceilings: copy {ce['copy_gb_per_s']:.1f} GB/s, matmul {ce['matmul_tflop_per_s']:.2f} TFLOP/s",
          flush=True)
    if device.type == "cpu" and not args.quick:
        report["estimated_seconds"] = _announce_cpu_run(args, data, names, archs, feeds, ce)
    if "loaders" in args.sections:
        report["loaders"] = bench_loaders(data, device, names, args)
    if "op" in args.sections:
        report["op"] = bench_op(device, args, work, copy_gb_per_s=ce["copy_gb_per_s"])
    if "train" in args.sections:
        report["train"] = bench_train(data, device, archs, feeds, args)
    if "tta" in args.sections:
        report["tta"] = bench_tta(data, device, args, work)
    return report


def write_report(report: dict, out_dir: Path) -> dict:
    """``<device>-<date>-<time>.{json,md,png}`` in ``out_dir``; returns the paths written."""
    stem = f"{common.slug(report['device_name'])}-{common.stamp(report['environment']['date'])}"
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md", "png": out_dir / f"{stem}.png"}
    common.write_json(paths["json"], report)
    text = markdown(report)
    common.atomic_write_text(paths["md"], text + "\n")
    if bar_chart(report, paths["png"]) is None:
        paths.pop("png")
    print(text)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return {k: str(v) for k, v in paths.items()}


def main(argv=None) -> dict:
    """Run the selected sections, write ``<device>-<date>-<time>.{json,md,png}``; returns the report."""
    args = get_args_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    device = _resolve_args(args)
    out_dir = args.out or common.results_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tinyfast-bench-") as work:
        work = Path(work)
        out, err = _Scrub(sys.stdout, work), _Scrub(sys.stderr, work)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            report = run_sections(args, device, work)
            report = json.loads(out.scrub(json.dumps(report)))
    report["paths"] = write_report(report, out_dir)
    return report


def cli(argv=None) -> int:
    """The ``tinyfast-bench`` console script: :func:`main`, exit status 0 (2 on bad arguments)."""
    main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(cli())

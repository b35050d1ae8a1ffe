"""Time to accuracy of a recipe (default ``fast``), several seeds: one JSON and the curve.

    python -m benchmarks.time_to_accuracy run DATA OUT [--recipe fast] [--seeds 0 1 2] [--train-args "..."]
    python -m benchmarks.time_to_accuracy report OUT [--recipe fast] [--seeds 0 1 2] [--pack-seconds S]
    python -m benchmarks.time_to_accuracy plot RESULT.json CURVE.png

``run`` (what benchmarks/time_to_accuracy.sh calls) prepares DATA (:mod:`benchmarks.prepare`: the
extension built where missing, a JPEG tree packed into ``OUT/packed``), trains
``python -m tinyfast.train --recipe R --seed N --out-dir OUT/runs --name R-seedN`` for each seed
(its output also in ``OUT/R-seedN.log``), then writes the report.
``report`` reads ``OUT/runs/<recipe>-seed<N>/`` (config.json, metrics.jsonl, summary.json: what
``python -m tinyfast.train --out-dir OUT/runs --name <recipe>-seed<N>`` writes) and writes, each
atomically, ``OUT/time-to-accuracy-<gpu>-<date>.json``::

    {"gpu", "recipe", "commit", "date", "torch", "cuda", "pack_seconds", "config",
     "target": {"val_top1", "seconds"},
     "runs": [{"seed", "val_top1" (fraction, after the last epoch), "best_val_top1", "seconds",
               "compile_seconds", "seconds_to_target" (first epoch end at or above the target top-1,
               or null), "epochs", "run_dir", "curve": [[seconds, val_top1, epoch], ...]}, ...],
     "mean_val_top1", "mean_seconds"}

and the curve beside it (same name, ``.png``): val top-1 against seconds for every seed, with the
target and the seeds' best reported figure (62.7% after 108 epochs). ``seconds`` is the run's wall
time from building the model to the end of the final evaluation (torch.compile's compilation
included, and also reported alone as ``compile_seconds``); packing is ``pack_seconds`` (given, or
recorded in ``OUT/pack.json`` by the command that packed: seeds may run in separate commands).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import prepare as _prepare
from benchmarks.common import git_commit, slug

REPO = Path(__file__).resolve().parent.parent
TARGET = {"val_top1": 0.60, "seconds": 60.0}
REFERENCE = (0.627, "seeds' best: 62.7% after 108 epochs")


class ReportError(Exception):
    pass


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise ReportError(f"{path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None


def _rows(path: Path) -> list[dict]:
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise ReportError(f"{path}: {e.strerror or e}") from None
    rows = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise ReportError(f"{path}:{n}: not a JSON line") from None
    if not rows:
        raise ReportError(f"{path}: no epoch rows (did the run finish an epoch?)")
    return rows


def run_result(run: Path, seed: int, target: float = TARGET["val_top1"]) -> dict:
    """One seed's figures from its run directory."""
    summary = _read_json(run / "summary.json")
    rows = _rows(run / "metrics.jsonl")
    curve = [[r["wall_time"], r.get("val_top1"), r["epoch"]] for r in rows if "wall_time" in r]
    hit = next((s for s, v, _ in curve if v is not None and v >= target), None)
    return {"seed": seed, "val_top1": rows[-1].get("val_top1"), "best_val_top1": summary.get("best_val_top1"),
            "seconds": summary["wall_time"], "compile_seconds": rows[-1].get("compile_time", 0.0),
            "seconds_to_target": hit, "epochs": rows[-1]["epoch"], "run_dir": str(run), "curve": curve}


def _gpu() -> tuple[str, str, str | None]:
    import torch
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return name, torch.__version__, torch.version.cuda


def report(out: Path, recipe: str, seeds: list[int], pack_seconds: float | None) -> Path:
    if pack_seconds is None and (out / "pack.json").is_file():  # packed by an earlier command
        pack_seconds = _read_json(out / "pack.json").get("seconds")
    runs = [run_result(out / "runs" / f"{recipe}-seed{s}", s) for s in seeds]
    config = _read_json(out / "runs" / f"{recipe}-seed{seeds[0]}" / "config.json").get("config", {})
    gpu, torch_version, cuda = _gpu()
    finished = [r for r in runs if r["val_top1"] is not None]
    mean = (lambda k: sum(r[k] for r in finished) / len(finished)) if finished else (lambda k: None)
    res = {"gpu": gpu, "recipe": recipe, "commit": git_commit()["commit"] or "unknown", "date": time.strftime("%Y-%m-%d"),
           "torch": torch_version, "cuda": cuda, "pack_seconds": pack_seconds, "config": config,
           "target": TARGET, "runs": runs, "mean_val_top1": mean("val_top1"), "mean_seconds": mean("seconds")}
    path = out / f"time-to-accuracy-{slug(gpu)}-{res['date']}.json"
    from tinyfast._util import atomic_write_text
    atomic_write_text(path, json.dumps(res, indent=2) + "\n")
    plot(path, path.with_suffix(".png"))
    return path


def plot(result: Path, png: Path) -> dict:
    res = _read_json(result)
    try:
        runs = [{"label": f"seed {r['seed']}", "curve": r["curve"]} for r in res["runs"]]
        title = f"--recipe {res['recipe']} on {res['gpu']} ({res.get('date', '')})"
    except (KeyError, TypeError) as e:
        raise ReportError(f"{result}: not a time-to-accuracy result (missing {e})") from None
    from tinyfast.plots import plot_time_to_accuracy
    t = res.get("target") or TARGET
    return plot_time_to_accuracy(runs, png, title=title, reference=REFERENCE, target=(t["val_top1"], t["seconds"]))


def train_seeds(packed: Path, out: Path, recipe: str, seeds: list[int], train_args: list[str]) -> None:
    """One training run per seed, in turn; each one's output to the terminal and to ``OUT/<recipe>-seed<N>.log``."""
    for seed in seeds:
        name = f"{recipe}-seed{seed}"
        cmd = [sys.executable, "-m", "tinyfast.train", "--recipe", recipe, "--data", str(packed), "--seed", str(seed),
               "--out-dir", str(out / "runs"), "--name", name, "--overwrite", "--no-progress", *train_args]
        log = out / f"{name}.log"
        with open(log, "w") as f, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                   stdin=subprocess.DEVNULL, text=True) as proc:
            for line in proc.stdout:
                sys.stdout.write(line)
                f.write(line)
        if proc.returncode != 0:
            raise ReportError(f"seed {seed} failed (exit {proc.returncode}; see {log})")


def _print_report(path: Path) -> None:
    res = json.loads(path.read_text())
    for run in res["runs"]:
        v = run["val_top1"]
        print(f"seed {run['seed']}: val top-1 {'-' if v is None else f'{100 * v:.2f}%'} in {run['seconds']:.1f} s"
              + (f" (60% at {run['seconds_to_target']:.1f} s)" if run["seconds_to_target"] is not None else ""))
    if res["mean_val_top1"] is not None:
        print(f"mean: {100 * res['mean_val_top1']:.2f}% in {res['mean_seconds']:.1f} s on {res['gpu']} -> {path}")


def section(data: Path, device, args, work: Path) -> dict:
    """Section d of ``tinyfast-bench`` (``--sections time-to-accuracy``): run ``python -m tinyfast.train`` in-process and read when val top-1 reached the target."""
    import contextlib

    from tinyfast import train

    run_dir = work / "time-to-accuracy"
    argv = ["--arch", args.target_arch, "--data", str(data), "--epochs", str(args.target_epochs),
            "--out-dir", str(work), "--name", "time-to-accuracy", "--overwrite", "--device", str(device), "--amp", "--no-progress"]
    if args.quick:
        argv += ["--batch-size", str(args.batch_size)]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        rc = train.main(argv)
    wall = time.perf_counter() - t0
    metrics = []
    for path in run_dir.rglob("metrics.jsonl"):
        metrics = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = {"arch": args.target_arch, "target_top1": args.target, "epochs_run": len(metrics), "wall_s": wall,
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.time_to_accuracy", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("run", help="prepare DATA, train every seed into OUT/runs, then report")
    t.add_argument("data", type=Path, help="a tiny-imagenet-200 JPEG tree, or a packed dataset")
    r = sub.add_parser("report", help="the JSON and the curve of OUT/runs/<recipe>-seed<N>")
    for s in (t, r):
        s.add_argument("out", type=Path)
        s.add_argument("--recipe", default="fast")
        s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    t.add_argument("--train-args", default="", help="extra flags for every run, one quoted string")
    r.add_argument("--pack-seconds", type=float, default=None)
    p = sub.add_parser("plot", help="the curve of a result JSON")
    p.add_argument("result", type=Path)
    p.add_argument("png", type=Path)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "run":
            try:
                train_args = shlex.split(a.train_args)
            except ValueError as e:
                ap.error(f"--train-args: {e}")
            packed, pack_seconds = _prepare.prepare(a.data, a.out)
            out = a.out.absolute()
            train_seeds(packed, out, a.recipe, a.seeds, train_args)
            _print_report(report(out, a.recipe, a.seeds, pack_seconds))
        elif a.cmd == "report":
            if a.pack_seconds is not None and not a.pack_seconds >= 0:
                ap.error(f"--pack-seconds must be >= 0, got {a.pack_seconds}")
            _print_report(report(a.out, a.recipe, a.seeds, a.pack_seconds))
        else:
            plot(a.result, a.png)
            print(f"wrote {a.png}")
    except (ReportError, _prepare.PrepareError) as e:
        print(f"time_to_accuracy: error: {e}", file=sys.stderr)
        return getattr(e, "code", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

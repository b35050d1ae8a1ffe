"""The seed zoo on real data: every seed architecture trained by its seed recipe under one fixed
short budget, in one table next to the accuracy the seed reports.

    python -m benchmarks.zoo --data PACKED --out OUT [--epochs 1] [--models a,b] [--timeout-per-model S]
                             [--train-args "..."] [--dry-run] [--prepare]

With ``--prepare`` (what benchmarks/zoo.sh passes) DATA may also be the JPEG tree: it is packed
into ``OUT/packed`` first, and the extension built where missing (:mod:`benchmarks.prepare`).

Each row runs ``python -m tinyfast.train --recipe NAME --data PACKED --epochs N ...`` in its own
process (the command is recorded, ready to paste), with its log in ``OUT/logs/<arch>.log`` and its
run directory ``OUT/runs/<arch>/`` (``metrics.jsonl``, ``summary.json``). The budget is the same
for every row: ``--epochs`` (default 1) overrides the recipe's epochs, every other setting is the
recipe's. The two transfer recipes (``uci-vgg16``, ``ucsc-mobilenet``) train from scratch here
(``--pretrained none --no-freeze --unfreeze-every 0``: no ImageNet weights, the whole model trained
from the first step); their rows say so. A row that fails or runs past ``--timeout-per-model`` is
recorded with its status and the last lines of its log, and the next row runs.

After each row ``OUT/zoo-<gpu>-<date>.json`` and ``.md`` are rewritten atomically: the GPU name,
torch version, commit and budget, and per row ``arch``, ``recipe``, ``from_scratch``, ``command``,
``epochs``, ``val_top1`` (fraction, after the last epoch), ``best_val_top1``, ``seconds`` (the
run's wall time from its summary.json: building the model to the end of the final evaluation),
``images_per_s`` (training images/s of the last epoch), ``reported`` (the seed's figure from the
recipe's text, e.g. ``"45%"`` or ``"< 20%"``; null where it gives none) and ``status`` (ok, failed,
timeout). ``complete`` is false until the last row has run. Exit status: 0 when every row is ok,
1 when any failed or timed out, 2 on bad input (one ``error:`` line), 130 after Ctrl-C or SIGTERM
(the row in progress is stopped; the finished rows stay written).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import prepare as _prepare
from benchmarks.common import git_commit, slug

REPO = Path(__file__).resolve().parent.parent
PROG = "python -m benchmarks.zoo"

# The seed architectures, in table order, and the seed recipe each one is trained with.
ZOO: dict[str, str] = {
    "linear": "uci-linear",
    "cnn2": "uci-cnn2",
    "uci_cnn_deep": "uci-cnn-deep",
    "ting_m1": "skoltech-ting-m1",
    "ting_m4": "skoltech-ting-m4",
    "alexnet": "skoltech-alexnet",
    "vgg16": "uci-vgg16",
    "vgg_small": "stanford-vgg-z",
    "inception_small": "stanford-inception",
    "resnet18": "skoltech-resnet18",
    "resnet34": "skoltech-resnet34",
    "resnet50": "ghosh-resnet50",
    "preact_resnet34": "skoltech-preact-resnet34",
    "densenet161": "skoltech-densenet161",
    "ucsc_mobilenet_v2": "ucsc-mobilenet",
}
# Recipes that start from ImageNet weights: trained from scratch here (no weights are downloaded),
# the whole model from the first step (freezing a randomly initialised backbone trains nothing).
SCRATCH_FLAGS = ("--pretrained", "none", "--no-freeze", "--unfreeze-every", "0")
LOG_TAIL_LINES = 20

_FIGURE = re.compile(r"(?:[<>≤≥]=?\s*)?\d+(?:\.\d+)?(?:\s*[-–]\s*\d+(?:\.\d+)?)?\s*%")


class UsageError(Exception):
    """Bad command-line input: one ``error:`` line, exit 2."""


def report_clause(about: str) -> str | None:
    """What a recipe's text says the seed reported: the words after ``report:`` up to ``;`` or
    ``)``, e.g. ``"val 46.5% at epoch 12"`` (None when the text has no ``report:``)."""
    m = re.search(r"report:\s*([^;)]*)", about)
    return m.group(1).strip() if m else None


def reported_figure(about: str) -> str | None:
    """The seed's reported accuracy in a recipe's text, as written: ``"45%"``, ``"< 20%"``,
    ``"22-29.5%"``; None for "no figure", "curves only" or no ``report:`` at all."""
    clause = report_clause(about)
    m = _FIGURE.search(clause) if clause else None
    return re.sub(r"\s+", " ", re.sub(r"\s*%$", "%", m.group(0))) if m else None


def from_scratch(recipe: str) -> bool:
    """Whether the recipe asks for pretrained weights (so this zoo trains it from scratch)."""
    from tinyfast.recipes import get_recipe
    return bool(get_recipe(recipe).settings.get("pretrained"))


def train_command(arch: str, data: Path, runs: Path, epochs: int, train_args: list[str],
                  python: str = sys.executable) -> list[str]:
    """The argv of one row's training run."""
    recipe = ZOO[arch]
    cmd = [python, "-m", "tinyfast.train", "--recipe", recipe, "--data", str(data), "--epochs", str(epochs),
           "--out-dir", str(runs), "--name", arch, "--overwrite", "--no-progress"]
    if from_scratch(recipe):
        cmd += SCRATCH_FLAGS
    return cmd + train_args


def _tail(path: Path, n: int = LOG_TAIL_LINES) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def _stop(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """End a row's process group: SIGTERM (the trainer saves and exits), SIGKILL after ``grace``."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_row(arch: str, cmd: list[str], run_dir: Path, log: Path, timeout: float | None) -> dict:
    """Run one row's command, its output into ``log``; the row's result fields."""
    import shutil

    if run_dir.exists():  # a previous zoo run's outputs must not be read as this run's
        shutil.rmtree(run_dir)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    status = "ok"
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=REPO)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            rc, status = proc.returncode, "timeout"
        except BaseException:  # Ctrl-C of the zoo ends the row's process group too
            _stop(proc, grace=10.0)
            raise
    row = {"status": status, "returncode": rc, "process_seconds": time.monotonic() - start,
           "epochs": None, "val_top1": None, "best_val_top1": None, "seconds": None, "images_per_s": None}
    summary_path, metrics_path = run_dir / "summary.json", run_dir / "metrics.jsonl"
    if status == "ok" and rc != 0:
        status = row["status"] = "failed"
    if status == "ok":
        try:
            summary = json.loads(summary_path.read_text())
            epochs = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
            last = epochs[-1]
            row.update(epochs=last["epoch"], val_top1=last["val_top1"], best_val_top1=summary["best_val_top1"],
                       seconds=summary["wall_time"], images_per_s=last.get("img_per_s"))
        except (OSError, ValueError, KeyError, IndexError) as e:
            row["status"] = "failed"
            row["error"] = f"no results in {run_dir}: {e}"
    if row["status"] != "ok":
        row["log_tail"] = _tail(log)
        if row["status"] == "timeout":
            row["error"] = f"stopped at the {timeout:g} s limit"
        row.setdefault("error", row["log_tail"][-1] if row["log_tail"] else f"exit status {rc}")
    return row


def _probe(python: str) -> dict:
    """GPU name and torch/CUDA versions, asked of a separate process (so this one holds no CUDA
    context while the rows train)."""
    code = ("import json, torch; c = torch.cuda.is_available(); print(json.dumps({'gpu': "
            "torch.cuda.get_device_name(0) if c else 'cpu', 'torch': torch.__version__, "
            "'cuda': torch.version.cuda}))")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {"gpu": "unknown", "torch": None, "cuda": None}


def _git_commit_or_unknown() -> dict:
    c = git_commit()
    return {**c, "commit": c["commit"] or "unknown"}


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.2f}%"


def markdown(res: dict) -> str:
    """The result as a Markdown table, one row per model with its command."""
    b = res["budget"]
    lines = [f"# Seed zoo on {res['gpu']}, {res['date']}", "",
             f"torch {res['torch']} (CUDA {res['cuda']}), commit {res['commit']}"
             f"{' (uncommitted changes)' if res.get('dirty') else ''}, data `{res['data']}`.", "",
             f"Budget, the same for every row: {b['epochs']} epoch(s) (`--epochs {b['epochs']}`), every other "
             "setting the recipe's"
             + (f", extra flags `{b['train_args']}`" if b["train_args"] else "")
             + (f", at most {b['timeout_per_model']:g} s per model" if b["timeout_per_model"] else "")
             + ". val top-1 is after the last epoch; wall time is the run's own (model build to final "
               "evaluation). \"seed reports\" is the figure of the seed's full recipe, not of this budget."
             + ("" if res["complete"] else " **Incomplete: rows still to run.**"), "",
             "| model | recipe | status | epochs | val top-1 | best val top-1 | wall time (s) | train img/s "
             "| seed reports | command |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        model = f"{r['arch']} (from scratch)" if r["from_scratch"] else r["arch"]
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('error', '')}"
        cells = [model, r["recipe"], status.replace("|", "\\|"), "" if r["epochs"] is None else str(r["epochs"]),
                 _pct(r["val_top1"]), _pct(r["best_val_top1"]),
                 "" if r["seconds"] is None else f"{r['seconds']:.1f}",
                 "" if r["images_per_s"] is None else f"{r['images_per_s']:,.0f}",
                 r["reported_text"] or r["reported"] or "no figure", f"`{r['command']}`".replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write(res: dict, out: Path) -> Path:
    from tinyfast._util import atomic_write_text

    base = out / f"zoo-{slug(res['gpu'])}-{res['date']}"
    atomic_write_text(base.with_suffix(".json"), json.dumps(res, indent=2) + "\n")
    atomic_write_text(base.with_suffix(".md"), markdown(res))
    return base.with_suffix(".json")


def _positive_int(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise UsageError(f"--epochs: {value!r} is not an integer") from None
    if v <= 0:
        raise UsageError(f"--epochs must be >= 1, got {value}")
    return v


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="packed dataset directory (with manifest.json)")
    p.add_argument("--out", required=True, help="output directory: result JSON/MD, logs/, runs/")
    p.add_argument("--models", default=",".join(ZOO),
                   help=f"comma-separated subset of the zoo (default: all {len(ZOO)}: {', '.join(ZOO)})")
    p.add_argument("--epochs", default="1", help="epochs of every row, overriding the recipes' (default: 1)")
    p.add_argument("--timeout-per-model", default=None,
                   help="seconds a row may run before it is stopped and recorded as a timeout (default: none)")
    p.add_argument("--train-args", default="", help="extra flags for every row's tinyfast.train, one quoted string "
                        "(--train-args=--no-compile for a single flag)")
    p.add_argument("--dry-run", action="store_true", help="print each row's command, run nothing")
    p.add_argument("--prepare", action="store_true", help="build tinyfast._C where missing, and pack DATA into "
                   "OUT/packed when it is a JPEG tree (no manifest.json)")

    def error(message: str):  # one line, exit 2
        raise UsageError(message)
    p.error = error
    args = p.parse_args(argv)
    args.epochs = _positive_int(args.epochs)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in ZOO]
    if unknown or not models:
        raise UsageError(f"--models: unknown model {unknown[0]!r} (choose from: {', '.join(ZOO)})" if unknown
                         else "--models: no model given")
    args.models = list(dict.fromkeys(models))
    if args.timeout_per_model is not None:
        try:
            args.timeout_per_model = float(args.timeout_per_model)
        except ValueError:
            raise UsageError(f"--timeout-per-model: {args.timeout_per_model!r} is not a number") from None
        if not args.timeout_per_model > 0 or args.timeout_per_model == float("inf"):
            raise UsageError(f"--timeout-per-model must be a positive number of seconds, got "
                             f"{args.timeout_per_model:g}")
    try:
        args.train_args = shlex.split(args.train_args)
    except ValueError as e:
        raise UsageError(f"--train-args: {e}") from None
    data = Path(args.data)
    if args.prepare:  # checked by prepare() when the run starts
        args.data, args.out = data.absolute(), Path(args.out).absolute()
        return args
    if not data.is_dir():
        raise UsageError(f"--data {args.data}: no such directory")
    if not (data / "manifest.json").is_file():
        raise UsageError(f"--data {args.data}: not a packed dataset (no manifest.json; pack it with "
                         "python -m tinyfast.pack)")
    args.data, args.out = data.resolve(), Path(args.out).resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    runs, logs = args.out / "runs", args.out / "logs"
    if args.prepare and not args.dry_run:
        try:
            args.data = _prepare.prepare(args.data, args.out)[0]
        except _prepare.PrepareError as e:
            print(f"{PROG}: error: {e}", file=sys.stderr)
            return e.code
    elif args.prepare:
        args.data = _prepare.packed_path(args.data, args.out)
    commands = {a: train_command(a, args.data, runs, args.epochs, args.train_args) for a in args.models}
    if args.dry_run:
        for arch, cmd in commands.items():
            print(shlex.join(cmd))
        return 0

    from tinyfast.recipes import get_recipe

    env = _probe(sys.executable)
    res = {"gpu": env["gpu"], "torch": env["torch"], "cuda": env["cuda"], **_git_commit_or_unknown(),
           "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"),
           "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "data": str(args.data),
           "budget": {"epochs": args.epochs, "timeout_per_model": args.timeout_per_model,
                      "train_args": shlex.join(args.train_args),
                      "note": "every row: --epochs as given, every other setting the recipe's; "
                              "transfer recipes from scratch (" + " ".join(SCRATCH_FLAGS) + ")"},
           "complete": False, "rows": []}
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        path = _write(res, args.out)
    except OSError as e:
        print(f"{PROG}: error: {e.filename or args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"zoo: {len(commands)} model(s), {args.epochs} epoch(s) each, on {res['gpu']} -> {path}", flush=True)
    for i, (arch, cmd) in enumerate(commands.items(), 1):
        recipe = ZOO[arch]
        about = get_recipe(recipe).about
        row = {"arch": arch, "recipe": recipe, "from_scratch": from_scratch(recipe), "command": shlex.join(cmd),
               "reported": reported_figure(about), "reported_text": report_clause(about),
               "log": str(logs / f"{arch}.log"), "run_dir": str(runs / arch)}
        try:
            row.update(run_row(arch, cmd, runs / arch, logs / f"{arch}.log", args.timeout_per_model))
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted at {arch}; the {i - 1} finished row(s) are in {path}", file=sys.stderr)
            return 130
        res["rows"].append(row)
        res["complete"] = i == len(commands)
        path = _write(res, args.out)
        if row["status"] == "ok":
            what = f"val top-1 {_pct(row['val_top1'])} in {row['seconds']:.1f} s"
        else:
            what = f"after {row['process_seconds']:.1f} s: {row.get('error', '')} (log {row['log']})"
        print(f"[{i}/{len(commands)}] {arch} ({recipe}): {row['status']}, {what}; seed reports "
              f"{row['reported'] or 'no figure'}", flush=True)
    ok = sum(r["status"] == "ok" for r in res["rows"])
    print(f"zoo: {ok} of {len(res['rows'])} ok -> {path} and {path.with_suffix('.md')}", flush=True)
    return 0 if ok == len(res["rows"]) else 1


def _sigterm(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _sigterm)  # stop the row in progress too (it runs in its own session)
    sys.exit(main())

"""What a GPU run will cost, counted before it runs: training and evaluation FLOPs of a recipe per
epoch and image size, the device rate and loader rate it needs, and its time at a given rate.

    python -m benchmarks.plan [--recipe fast] [--recipe best] [--zoo] [--bench REPORT.json]
                              [--tflops 50,100,200] [--seeds 3] [--measure-cpu] [--out DIR]

FLOPs are counted by torch (``torch.utils.flop_counter``: matrix multiplies and convolutions, two
per multiply-add) on the ``meta`` device, for the forward and backward pass of one training image
at each size the recipe trains at (the first layer's input gradient is not computed, as in
training) and for the forward pass of one val image. A recipe's epochs, image sizes and evaluations
come from its dry run (``python -m tinyfast.train --recipe R --print-config``), so they are the
ones a run takes.

Time is FLOPs over a rate. With ``--bench`` (a ``tinyfast-bench`` report, e.g. the GPU proof's),
the rate of each architecture is measured: its training row fed by the ``gpu`` loader with
channels-last + AMP (images/s x training FLOPs per 64 px image), and the loader's images/s sets a
floor on each epoch. Without ``--bench`` the rates are the ``--tflops`` values, which are
assumptions and are written as such: the result says ``"rate": "assumed"``. Smaller images reach
a lower fraction of the device's peak than 64 px ones, so a time at 32 px is a lower bound.
``--measure-cpu`` times a few training steps of the recipe's model at each of its sizes on this
CPU (measured, fp32, channels-last) to show how the time per image follows the FLOP count.

The time-to-accuracy command (``benchmarks/time_to_accuracy.sh``: packing, then ``--seeds`` runs)
is sized against one device command (``--command-seconds``, 600): each seed's training and
evaluation at each rate, plus ``--compile-seconds`` per seed and ``--pack-seconds`` once (both
stated inputs). ``--zoo`` adds every row of :mod:`benchmarks.zoo` (one epoch each, at its recipe's
image size and batch) and the most epochs per row that fit ``--zoo-seconds``.

With ``--out`` the plan is written as ``plan-<date>.json`` and ``.md`` (atomically); it is always
printed. Exit status 0, or 2 on bad input (one ``error:`` line).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import atomic_write_text, cpu_name, git_commit

PROG = "python -m benchmarks.plan"
TRAIN_IMAGES, VAL_IMAGES, CLASSES = 100_000, 10_000, 200
TARGET_SECONDS = {"fast": 60.0, "best": 300.0}  # the time goals of the time-to-accuracy issue


class UsageError(Exception):
    """Bad input: one ``error:`` line, exit 2."""


def image_flops(arch: str, size: int, num_classes: int = CLASSES, kwargs: dict | None = None) -> dict:
    """``{"train", "eval"}``: FLOPs of one training step's forward + backward and of one forward
    pass, per image of ``size`` x ``size`` px, counted by torch on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    from tinyfast.models import get_model

    batch = 2  # BatchNorm in training mode needs more than one value per channel
    with torch.device("meta"):
        model = get_model(arch, num_classes=num_classes, **(kwargs or {}))
        x = torch.zeros(batch, 3, size, size)
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        model(x).float().sum().backward()
    train = counter.get_total_flops() / batch
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return {"train": train, "eval": counter.get_total_flops() / batch}


def recipe_cost(recipe: str, epochs: int | None = None, train_images: int = TRAIN_IMAGES,
                val_images: int = VAL_IMAGES, num_classes: int = CLASSES, extra: list[str] | None = None) -> dict:
    """FLOPs of ``--recipe recipe`` (its dry run's epochs, sizes and evaluations; ``epochs``
    overrides the recipe's): per phase, per evaluation and in all."""
    from tinyfast.config import ConfigError
    from tinyfast.train import print_config

    argv = ["--recipe", recipe, "--classes", str(num_classes), *(["--epochs", str(epochs)] if epochs else []),
            *(extra or [])]
    try:
        plan = print_config(argv)
    except (ConfigError, ValueError, KeyError) as e:
        raise UsageError(f"--recipe {recipe}: {str(e).splitlines()[0]}") from None
    cfg, arch, kwargs = plan["config"], plan["model"]["arch"], plan["model"]["kwargs"]
    per_size = {}
    for row in plan["epochs"]:
        if row["image_size"] not in per_size:
            per_size[row["image_size"]] = image_flops(arch, row["image_size"], num_classes, kwargs)
    val_size = cfg.get("image_size") or 64
    if val_size not in per_size:
        per_size[val_size] = image_flops(arch, val_size, num_classes, kwargs)
    n_epochs = len(plan["epochs"])
    evals = sum(1 for e in range(n_epochs) if (e + 1) % cfg["eval_every"] == 0 or e + 1 == n_epochs)
    phases = []
    for p in plan["phases"]:
        n = p["epochs"][1] - p["epochs"][0] + 1
        phases.append({"epochs": p["epochs"], "image_size": p["image_size"], "batch_size": p["batch_size"],
                       "steps": n * (train_images // p["batch_size"]),
                       "train_flops_per_image": per_size[p["image_size"]]["train"],
                       "train_flops": n * train_images * per_size[p["image_size"]]["train"]})
    train = sum(p["train_flops"] for p in phases)
    evaluation = evals * val_images * per_size[val_size]["eval"]
    return {"recipe": recipe, "arch": arch, "parameters": plan["parameters"], "epochs": n_epochs,
            "train_images_per_epoch": train_images, "val_images": val_images, "evaluations": evals,
            "val_image_size": val_size, "flops_per_image": {str(s): f for s, f in sorted(per_size.items())},
            "phases": phases, "train_flops": train, "eval_flops": evaluation, "flops": train + evaluation,
            "images": n_epochs * train_images + evals * val_images, "steps": sum(p["steps"] for p in phases),
            "amp": bool(cfg["amp"]), "compile": bool(cfg["compile"])}


def bench_rates(path: Path, num_classes: int = CLASSES) -> dict:
    """From a tinyfast-bench report: ``{"device", "archs": {(arch, amp): {"images_per_s",
    "flop_per_s"}}, "loader_images_per_s"}``, measured: the training rows fed by the gpu loader
    (``amp`` True: channels-last + AMP; False: fp32) and the gpu loader's best images/s."""
    try:
        rep = json.loads(Path(path).read_text())
    except OSError as e:
        raise UsageError(f"--bench {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"--bench {path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(rep, dict) or not isinstance(rep.get("train"), list):
        raise UsageError(f"--bench {path}: not a tinyfast-bench report with a train section")
    archs = {}
    for r in rep["train"]:
        if r.get("feed") == "gpu" and r.get("images_per_sec"):
            ips = float(r["images_per_sec"])
            archs[(r["arch"], bool(r.get("channels_last_amp")))] = {
                "images_per_s": ips, "flop_per_s": ips * image_flops(r["arch"], 64, num_classes)["train"]}
    if not archs:
        raise UsageError(f"--bench {path}: no training row fed by the gpu loader")
    loader = [r["images_per_sec"] for r in rep.get("loaders", [])
              if r.get("loader") == "gpu" and r.get("images_per_sec")]
    env = rep.get("environment", {})
    return {"device": env.get("gpu") or env.get("cpu") or "unknown", "archs": archs,
            "loader_images_per_s": max(loader) if loader else None}


def seconds_at(cost: dict, flop_per_s: float, loader_images_per_s: float | None = None,
               step_seconds: float = 0.0) -> float:
    """Training + evaluation seconds of ``cost`` at ``flop_per_s``: no faster than the loader
    delivers its images, nor than ``step_seconds`` per training step (launch overhead)."""
    s = max(cost["flops"] / flop_per_s, cost["steps"] * step_seconds)
    if loader_images_per_s:
        s = max(s, cost["images"] / loader_images_per_s)
    return s


def measure_cpu(arch: str, sizes: list[int], batch: int = 16, steps: int = 3, num_classes: int = CLASSES) -> list[dict]:
    """Measured on this CPU: images/s of SGD training steps of ``arch`` at each size (fp32,
    channels-last, after one warm-up step) and the FLOP rate they imply."""
    from tinyfast.models import get_model

    torch.manual_seed(0)
    model = get_model(arch, num_classes=num_classes).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rows = []
    for size in sizes:
        x = torch.randn(batch, 3, size, size).to(memory_format=torch.channels_last)
        y = torch.randint(0, num_classes, (batch,))

        def step():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        step()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        ips = batch * steps / (time.perf_counter() - t0)
        flops = image_flops(arch, size, num_classes)["train"]
        rows.append({"image_size": size, "batch_size": batch, "steps": steps, "images_per_s": ips,
                     "flop_per_s": ips * flops, "train_flops_per_image": flops})
    return rows


def measured_rate(bench: dict, arch: str, amp: bool) -> tuple[float, str]:
    """(FLOP/s, whose row) for ``arch`` from a bench: its own row at the same precision; else its
    other precision's (AMP twice fp32, as the peaks are); else resnet18's, else any row's, at the
    same precision where there is one. The second value says which row it was."""
    a = bench["archs"]
    prec = lambda m: "AMP" if m else "fp32"
    if (arch, amp) in a:
        return a[(arch, amp)]["flop_per_s"], f"{arch} {prec(amp)}"
    if (arch, not amp) in a:
        return a[(arch, not amp)]["flop_per_s"] * (2.0 if amp else 0.5), f"{arch} {prec(not amp)} x{2.0 if amp else 0.5:g}"
    for key in [("resnet18", amp), *[k for k in a if k[1] == amp], *a]:
        if key in a:
            return a[key]["flop_per_s"], f"{key[0]} {prec(key[1])} (no {arch} row)"
    raise UsageError("the bench has no training row")  # bench_rates refuses such a report


def _rates(args, bench: dict | None, arch: str, amp: bool) -> list[tuple[str, float, float | None, str | None]]:
    """(label, FLOP/s, loader images/s, whose measured row) to time ``arch`` at: one measured rate
    with ``--bench``, else each ``--tflops`` value."""
    if bench:
        rate, source = measured_rate(bench, arch, amp)
        return [(f"measured ({bench['device']})", rate, bench["loader_images_per_s"], source)]
    half = 1.0 if amp else 0.5  # fp32 rows (TF32 at best): half the bf16 rate, as the peaks are
    return [(f"{t:g} TFLOP/s assumed", half * t * 1e12, None, None) for t in args.tflops]


def time_to_accuracy_plan(cost: dict, args, bench: dict | None) -> dict:
    """The time-to-accuracy command for ``cost``'s recipe against one device command."""
    rows = []
    compile_s = args.compile_seconds if cost["compile"] else 0.0
    for label, rate, loader, source in _rates(args, bench, cost["arch"], cost["amp"]):
        run = seconds_at(cost, rate, loader, args.step_ms / 1e3)
        total = args.pack_seconds + args.seeds * (run + compile_s)
        rows.append({"rate": label, "rate_from": source, "flop_per_s": rate, "run_seconds": run,
                     "command_seconds": total, "fits": total <= args.command_seconds})
    return {"seeds": args.seeds, "pack_seconds": args.pack_seconds, "compile_seconds": compile_s,
            "command_seconds": args.command_seconds, "rows": rows}


def zoo_plan(args, bench: dict | None) -> dict:
    from benchmarks.zoo import SCRATCH_FLAGS, ZOO, from_scratch

    rows = []
    for arch, recipe in ZOO.items():
        c = recipe_cost(recipe, epochs=1, num_classes=args.classes, train_images=args.train_images,
                        val_images=args.val_images, extra=list(SCRATCH_FLAGS) if from_scratch(recipe) else None)
        rates = _rates(args, bench, arch, c["amp"])
        rows.append({"arch": arch, "recipe": recipe, "parameters": c["parameters"], "amp": c["amp"],
                     "compile": c["compile"], "image_size": c["phases"][0]["image_size"],
                     "batch_size": c["phases"][0]["batch_size"], "steps_per_epoch": c["steps"],
                     "train_flops_per_epoch": c["train_flops"],
                     "overhead_seconds": args.row_seconds + (args.compile_seconds if c["compile"] else 0.0),
                     "rate_from": rates[0][3],
                     "epoch_seconds": {label: seconds_at(c, rate, loader, args.step_ms / 1e3)
                                       for label, rate, loader, _ in rates}})
    fits = {}
    for label in rows[0]["epoch_seconds"]:
        per_epoch = sum(r["epoch_seconds"][label] for r in rows)
        room = args.zoo_seconds - sum(r["overhead_seconds"] for r in rows)
        fits[label] = {"seconds_per_epoch_all_rows": per_epoch, "epochs": max(0, int(room // per_epoch))}
    return {"zoo_seconds": args.zoo_seconds, "overhead_seconds": sum(r["overhead_seconds"] for r in rows),
            "rows": rows, "fits": fits}


def _t(flops: float) -> str:
    return f"{flops / 1e12:,.1f}"


def markdown(plan: dict) -> str:
    a = plan["assumptions"]
    out = [f"# Run plan (counted on {plan['counted_on']}, commit {plan['commit']}, {plan['date']})", "",
           f"Rates: {plan['rate']}{'' if plan['bench'] else ' for AMP rows; fp32 rows at half that'}. FLOPs counted by torch (matmul + conv, 2 per multiply-add). "
           f"{a['train_images']:,} train / {a['val_images']:,} val images, {a['classes']} classes.", ""]
    for c in plan["recipes"]:
        out += [f"## --recipe {c['recipe']} ({c['arch']}, {c['parameters']:,} parameters, {c['epochs']} epochs, "
                f"{c['evaluations']} evaluations at {c['val_image_size']} px)", "",
                "| epochs | px | batch | GFLOP / train image | TFLOP |", "|---|---:|---:|---:|---:|"]
        out += [f"| {p['epochs'][0]}-{p['epochs'][1]} | {p['image_size']} | {p['batch_size']} | "
                f"{p['train_flops_per_image'] / 1e9:.2f} | {_t(p['train_flops'])} |" for p in c["phases"]]
        out += [f"| evaluation | {c['val_image_size']} | | {c['flops_per_image'][str(c['val_image_size'])]['eval'] / 1e9:.2f}"
                f" (forward) | {_t(c['eval_flops'])} |", "",
                f"In all {_t(c['flops'])} TFLOP over {c['images']:,} images in {c['steps']:,} steps"
                + (f"; for its goal of {c['target_seconds']:g} s it needs {c['flops'] / c['target_seconds'] / 1e12:,.0f} "
                   f"TFLOP/s sustained and {c['images'] / c['target_seconds']:,.0f} images/s from the loader."
                   if c.get("target_seconds") else "."), ""]
        tta = c["time_to_accuracy_command"]
        out += [f"Time-to-accuracy command ({tta['seeds']} seeds + {tta['pack_seconds']:g} s packing + "
                f"{tta['compile_seconds']:g} s compile per seed, against {tta['command_seconds']:g} s):", "",
                "| rate | one run (s) | command (s) | fits |", "|---|---:|---:|---|"]
        out += [f"| {r['rate']}{' from ' + r['rate_from'] if r['rate_from'] else ''} | {r['run_seconds']:,.0f} | {r['command_seconds']:,.0f} | {'yes' if r['fits'] else 'no'} |"
                for r in tta["rows"]] + [""]
        if c.get("cpu_measured"):
            out += ["Measured on this CPU (fp32, channels-last): the time per image follows the FLOPs when the "
                    "FLOP/s column is flat.", "", "| px | images/s | GFLOP/s |", "|---:|---:|---:|"]
            out += [f"| {m['image_size']} | {m['images_per_s']:.1f} | {m['flop_per_s'] / 1e9:.1f} |"
                    for m in c["cpu_measured"]] + [""]
    if plan.get("zoo"):
        z = plan["zoo"]
        labels = list(z["fits"])
        out += [f"## Zoo: one epoch per row ({z['overhead_seconds']:g} s of start-up and compile in all rows)", "",
                "| arch | recipe | px | batch | steps | AMP | TFLOP / epoch | "
                + " | ".join(f"s / epoch at {x}" for x in labels) + " |",
                "|---|---|---:|---:|---:|---|---:|" + "---:|" * len(labels)]
        out += [f"| {r['arch']} | {r['recipe']} | {r['image_size']} | {r['batch_size']} | {r['steps_per_epoch']:,} | "
                f"{'yes' if r['amp'] else 'no (fp32)'} | {_t(r['train_flops_per_epoch'])}"
                f"{' (rate from ' + r['rate_from'] + ')' if r['rate_from'] else ''} | "
                + " | ".join(f"{r['epoch_seconds'][x]:,.1f}" for x in labels) + " |" for r in z["rows"]]
        out += ["", f"Epochs per row that fit {z['zoo_seconds']:g} s: "
                + "; ".join(f"{x}: {f['epochs']} ({f['seconds_per_epoch_all_rows']:,.0f} s per epoch of all rows)"
                            for x, f in z["fits"].items()), ""]
    return "\n".join(out)


def _positive(kind):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return v
    return parse


def _tflops(text: str) -> list[float]:
    parts = [t for t in text.split(",") if t.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    return [_positive(float)(t) for t in parts]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (main prints it)
        raise UsageError(message)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog=PROG, description="What a GPU run will cost, counted before it runs.")
    p.add_argument("--recipe", action="append", help="recipe to plan (repeatable; default: fast and best)")
    p.add_argument("--zoo", action="store_true", help="also every row of benchmarks/zoo.py, one epoch each")
    p.add_argument("--bench", type=Path, help="tinyfast-bench report whose gpu-loader training rows give the rates")
    p.add_argument("--tflops", type=_tflops, default=[50.0, 100.0, 200.0],
                   help="assumed sustained TFLOP/s without --bench (comma list; default 50,100,200)")
    p.add_argument("--target-seconds", type=_positive(float),
                   help="the runs' time goal (default: 60 s for fast, 300 s for best, none for others)")
    p.add_argument("--step-ms", type=float, default=2.0,
                   help="least milliseconds a training step takes, whatever its FLOPs (default 2: launch overhead)")
    p.add_argument("--seeds", type=_positive(int), default=3)
    p.add_argument("--compile-seconds", type=float, default=60.0, help="torch.compile time per run (default 60)")
    p.add_argument("--pack-seconds", type=float, default=18.0,
                   help="packing the real set (default 18: measured on a 2-core CPU, 2026-12-07)")
    p.add_argument("--command-seconds", type=_positive(float), default=600.0, help="one device command (default 600)")
    p.add_argument("--zoo-seconds", type=_positive(float), default=540.0, help="the zoo's command (default 540)")
    p.add_argument("--row-seconds", type=float, default=15.0, help="start-up per zoo row (default 15)")
    p.add_argument("--train-images", type=_positive(int), default=TRAIN_IMAGES)
    p.add_argument("--val-images", type=_positive(int), default=VAL_IMAGES)
    p.add_argument("--classes", type=_positive(int), default=CLASSES)
    p.add_argument("--measure-cpu", action="store_true", help="time training steps at each size on this CPU")
    p.add_argument("--out", type=Path, help="write plan-<date>.json and .md here")
    args = p.parse_args(argv)
    for name in ("compile_seconds", "pack_seconds", "row_seconds", "step_ms"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')}: must be >= 0")
    from tinyfast.recipes import list_recipes
    args.recipe = args.recipe or ["fast", "best"]
    unknown = [r for r in args.recipe if r not in list_recipes()]
    if unknown:
        raise UsageError(f"--recipe {unknown[0]}: no such recipe (python -m tinyfast.train --list-recipes)")
    return args


def build_plan(args) -> dict:
    bench = bench_rates(args.bench, args.classes) if args.bench else None
    recipes = []
    for r in args.recipe:
        c = recipe_cost(r, train_images=args.train_images, val_images=args.val_images, num_classes=args.classes)
        c["target_seconds"] = args.target_seconds or TARGET_SECONDS.get(r)
        c["time_to_accuracy_command"] = time_to_accuracy_plan(c, args, bench)
        if args.measure_cpu:
            c["cpu_measured"] = measure_cpu(c["arch"], sorted({p["image_size"] for p in c["phases"]}),
                                            num_classes=args.classes)
        recipes.append(c)
    return {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"), "commit": git_commit()["commit"] or "unknown",
            "counted_on": cpu_name(), "torch": torch.__version__,
            "rate": f"measured by {args.bench}" if bench else "assumed (" + ", ".join(f"{t:g}" for t in args.tflops) + " TFLOP/s)",
            "bench": bench and {**bench, "archs": [{"arch": a, "amp": amp, **v} for (a, amp), v in bench["archs"].items()]},
            "assumptions": {"train_images": args.train_images, "val_images": args.val_images, "classes": args.classes,
                            "compile_seconds": args.compile_seconds, "pack_seconds": args.pack_seconds,
                            "step_ms": args.step_ms, "row_seconds": args.row_seconds},
            "recipes": recipes, "zoo": zoo_plan(args, bench) if args.zoo else None}


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        plan = build_plan(args)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    text = markdown(plan)
    print(text)
    if args.out:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"plan-{plan['date']}.json"
            atomic_write_text(path, json.dumps(plan, indent=2) + "\n")
            atomic_write_text(path.with_suffix(".md"), text + "\n")
        except OSError as e:
            print(f"{PROG}: error: {e.filename or args.out}: {e.strerror or e}", file=sys.stderr)
            return 2
        print(f"plan -> {path} and {path.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m benchmarks.proof``: the phases in order, each under its own cap inside one budget.

A phase that fails or reaches its cap is recorded as such and the later phases still run. After
every phase the JSON and Markdown are rewritten (:mod:`benchmarks.proof.report`), and the last
line printed is the summary of every target (:mod:`benchmarks.proof.verdict`).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import shutil
import sys
import time
from pathlib import Path

from benchmarks.proof import evidence, figures, report as proof_report, setup_phases
from benchmarks.proof.runner import Runner

PHASES = [("preflight", setup_phases.phase_preflight), ("wheelhouse", setup_phases.phase_wheelhouse),
          ("build", setup_phases.phase_build), ("tests", evidence.phase_tests),
          ("sanitizers", evidence.phase_sanitizers), ("data", figures.phase_data), ("op", figures.phase_op),
          ("loaders", figures.phase_loaders), ("syncs", figures.phase_syncs), ("train", figures.phase_train)]
ALWAYS = ("preflight", "wheelhouse")  # seconds each; every command needs what they establish
GROUPS = {"evidence": ("build", "tests", "sanitizers"), "figures": ("data", "op", "loaders", "syncs", "train")}
# Caps per phase, and the seconds kept back for each later phase out of the overall budget, so a
# slow early phase cannot starve the ones after it. Estimated on an H100 with 16 cores: build
# ~90 s, tests ~60 s, sanitizers ~80 s (torch starts slowly under compute-sanitizer); full-size
# data ~80 s, op ~40 s, loaders ~60 s, syncs ~30 s, resnet18 training ~60 s.
CAPS = {"preflight": 20, "wheelhouse": 30, "build": 130, "tests": 90, "sanitizers": 100, "data": 100,
        "op": 60, "loaders": 75, "syncs": 40, "train": 120}
RESERVE = {"preflight": 2, "wheelhouse": 5, "build": 30, "tests": 30, "sanitizers": 40, "data": 40, "op": 30,
           "loaders": 30, "syncs": 20, "train": 60}
# Default budget per command: the evidence fits in under 5 minutes, the figures in under 7, so the
# two commands and a machine start fit a 15-minute device allowance with margin.
BUDGET = {"evidence": 280.0, "figures": 400.0, "all": 680.0}
TRAIN_ARCHS = ("resnet18", "resnet50", "mobilenet_v2")


def selected_phases(spec: str, skip: str = "") -> list[str]:
    """Phase names of ``--phases`` (names and group names, comma-separated; ``all``), in run order,
    with the set-up phases always first. Raises ValueError naming an unknown one."""
    known = [n for n, _ in PHASES]
    want: set[str] = set(ALWAYS)
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if item == "all":
            want |= set(known)
        elif item in GROUPS:
            want |= set(GROUPS[item])
        elif item in known:
            want.add(item)
        else:
            raise ValueError(f"--phases: unknown phase or group {item!r}; choose from all, "
                             f"{', '.join(GROUPS)}, {', '.join(known)}")
    for item in (s.strip() for s in skip.split(",") if s.strip()):
        if item not in known:
            raise ValueError(f"--skip: unknown phase {item!r}; choose from {', '.join(known)}")
    return [n for n in known if n in want]


def default_budget(spec: str) -> float:
    return BUDGET.get(spec.strip(), BUDGET["all"])


def run_phases(p: Runner, on_phase=None) -> list[dict]:
    """The selected phases in order, each capped by its own limit and by what the budget leaves;
    ``on_phase(record)`` after each (the report is rewritten there)."""
    names = selected_phases(p.args.phases) if hasattr(p.args, "phases") else [n for n, _ in PHASES]
    todo = [(n, fn) for n, fn in PHASES if n in names]
    skip = {s.strip() for s in p.args.skip.split(",") if s.strip()}
    phases = []
    for i, (name, fn) in enumerate(todo):
        later = sum(RESERVE.get(n, 10) for n, _ in todo[i + 1:] if n not in skip)
        cap = min(CAPS.get(name, 60) * p.args.cap_scale, p.deadline - time.monotonic() - later)
        t0 = time.monotonic()
        if name in skip:
            rec = {"status": "skipped", "reason": "--skip"}
        elif cap < 5:
            rec = {"status": "skipped", "reason": "out of time (the overall --budget)"}
        else:
            p.say(f"[{name}] start (cap {cap:.0f} s, {p.elapsed():.0f} s elapsed)")
            try:
                rec = fn(p, cap)
            except Exception as exc:  # a phase's own bug must not stop the later phases
                rec = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:300]}
        rec.update(name=name, seconds=round(time.monotonic() - t0, 1), cap=round(max(cap, 0), 1),
                   command_phases=getattr(p.args, "phases", "all"))
        why = f": {rec['reason']}" if rec.get("reason") else ""
        p.say(f"[{name}] {rec['status']} in {rec['seconds']:.0f} s{why}")
        phases.append(rec)
        if on_phase is not None:
            on_phase(rec)
    return phases


def get_args_parser() -> argparse.ArgumentParser:
    """The ``python -m benchmarks.proof`` argument parser."""
    from benchmarks.proof import __doc__ as doc

    p = argparse.ArgumentParser(prog="python -m benchmarks.proof", description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("benchmark-results"),
                   help="where the result files go (default ./benchmark-results)")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny data on the CPU: every phase exercised (CI)")
    p.add_argument("--phases", default="all",
                   help="what this command runs: all (default), evidence (build,tests,sanitizers), figures "
                        "(data,op,loaders,syncs,train), or phase names; preflight and wheelhouse always run")
    p.add_argument("--wheelhouse", type=Path, default=None,
                   help="wheels (benchmarks/make_wheelhouse.sh) installed offline into a private dir")
    p.add_argument("--data", type=Path, default=None, help="a packed dataset to use instead of building one")
    p.add_argument("--budget", type=float, default=None,
                   help=f"overall seconds of this command (default by --phases: {BUDGET})")
    p.add_argument("--cap-scale", type=float, default=1.0, help="multiplies every phase's own cap")
    p.add_argument("--arch-list", default=None, help="TORCH_CUDA_ARCH_LIST for the build (default: the GPU + PTX)")
    p.add_argument("--archs", default=",".join(TRAIN_ARCHS), help="training phase, in order, as time allows")
    p.add_argument("--skip", default="", help=f"comma-separated phases to skip, of {','.join(CAPS)}")
    p.add_argument("--state", type=Path, default=None,
                   help="phase records shared by the commands of one machine (default build/proof/state.json "
                        "on a GPU; none in --cpu-smoke)")
    p.add_argument("--fresh", action="store_true", help="ignore the records of earlier commands")
    p.add_argument("--work", type=Path, default=None, help="parent of the work dir (default: the system temp)")
    p.add_argument("--keep-work", action="store_true", help="keep the work dir (data, sub-reports)")
    return p


def parse_args(argv) -> argparse.Namespace:
    """The command's arguments, checked, with the budget resolved from --phases when not given."""
    parser = get_args_parser()
    args = parser.parse_args(argv)
    try:
        selected_phases(args.phases, args.skip)
    except ValueError as exc:
        parser.error(str(exc))
    if args.budget is None:
        args.budget = default_budget(args.phases)
    return args


def main(argv=None) -> int:
    """Run the proof; 0 when every phase of this command ran (ok or skipped with a reason), 1 when
    one failed or timed out, 2 on bad arguments or no GPU."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    import torch

    from benchmarks import common

    if not args.cpu_smoke and not torch.cuda.is_available():
        print("benchmarks.proof: no CUDA GPU is visible; use --cpu-smoke for the CPU run", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    device_name = common.device_name("cpu" if args.cpu_smoke else "cuda")
    stem = f"{common.slug(device_name)}-{_dt.date.today().isoformat()}"
    state_path = args.state or (None if args.cpu_smoke else proof_report.STATE)
    state = {"device_name": device_name, "phases": {}, "commands": []}
    if state_path is not None and not args.fresh:
        state = proof_report.load_state(device_name, state_path)
    p = Runner(args, stem)
    command = {"phases": args.phases, "budget_s": args.budget, "wall_s": 0.0,
               "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    state["commands"] = [c for c in state["commands"] if c["phases"] != args.phases] + [command]
    order = [n for n, _ in PHASES]

    def build_report(png: bool = False) -> dict:
        command["wall_s"] = round(p.elapsed(), 1)
        merged = [state["phases"][n] for n in order if n in state["phases"]]
        rep = proof_report.assemble(p, merged, argv, device_name, state["commands"])
        paths = proof_report.write(rep, args.out, stem, png)
        if state_path is not None:
            proof_report.save_state(state, state_path)
        return rep, paths

    def on_phase(rec: dict) -> None:
        state["phases"][rec["name"]] = rec
        build_report()

    try:
        phases = run_phases(p, on_phase)
        report, paths = build_report(png=True)
        p.say("wrote " + ", ".join(str(x) for x in paths + [p.raw_path, p.log_path]))
    finally:
        if not args.keep_work:
            shutil.rmtree(p.work, ignore_errors=True)
    from benchmarks.proof.verdict import summary_line

    p.say(summary_line(report))
    return 1 if any(ph["status"] in ("failed", "timeout") for ph in phases) else 0

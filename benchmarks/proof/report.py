"""The GPU proof's report: the schema of ``python -m benchmarks`` (:mod:`benchmarks.reporting`) plus
``phases``, ``proof`` (tests, sanitizers, syncs, commands, preflight) and ``targets``; written as
JSON + Markdown (+ PNG) after every phase, so a run cut short keeps what it measured.

Two commands on one machine make one report: each phase's record is kept in
``build/proof/state.json`` (an ignored folder that stays on the machine between commands), and a
later command for the same GPU merges the records of the phases it does not run itself.
"""
from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

from benchmarks import common
from benchmarks.proof.runner import REPO
from benchmarks.proof.verdict import _fmt, targets

STATE = REPO / "build" / "proof" / "state.json"
STATE_MAX_AGE_S = 3 * 3600  # an older record is another session's machine, not this one's
BULKY = ("rows", "op", "ceilings", "environment", "facts")


def load_state(device_name: str, path: Path = STATE) -> dict:
    """The earlier commands' phase records for this GPU, or an empty state."""
    empty = {"device_name": device_name, "phases": {}, "commands": []}
    try:
        st = json.loads(path.read_text())
    except (OSError, ValueError):
        return empty
    if st.get("device_name") != device_name or time.time() - st.get("updated", 0) > STATE_MAX_AGE_S:
        return empty
    return st


def save_state(state: dict, path: Path = STATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state["updated"] = time.time()
    common.atomic_write_text(path, json.dumps(state, indent=1) + "\n")


def assemble(p, phases: list[dict], argv: list[str], device_name: str, commands: list[dict]) -> dict:
    """The report from every phase record (this command's and the earlier ones')."""
    by = {ph["name"]: ph for ph in phases}
    op, tests, san, syncs = (by.get(n) or {} for n in ("op", "tests", "sanitizers", "syncs"))
    env = op.get("environment") or _environment(p.device)
    report = {"device_name": device_name, "device": p.device, "quick": p.smoke,
              "command": "python -m benchmarks.proof " + " ".join(argv), "data": str(p.data),
              "environment": env, "ceilings": op.get("ceilings") or {},
              "loaders": (by.get("loaders") or {}).get("rows", []), "op": op.get("op") or {},
              "train": (by.get("train") or {}).get("rows", [])}
    report["phases"] = [{k: v for k, v in ph.items() if k not in BULKY} for ph in phases]
    report["proof"] = {"wall_s": round(p.elapsed(), 1), "budget_s": p.args.budget, "commands": commands,
                       "preflight": (by.get("preflight") or {}).get("facts"),
                       "tests": {k: tests.get(k) for k in ("status", "counts", "optional", "reason")},
                       "sanitizers": {k: v for k, v in san.items() if k not in ("name", "cap")},
                       "syncs": {"status": syncs.get("status"), "rows": syncs.get("rows", [])}}
    report["targets"] = targets(report)
    return report


def _environment(device: str) -> dict:
    try:
        return common.environment([device])
    except Exception:  # e.g. CUDA in a bad state: the basic record still says where this ran
        return common.environment(["cpu"])


def markdown(report: dict) -> str:
    """Targets and phases, then the benchmark tables of ``python -m benchmarks``."""
    env = report["environment"]
    lines = [f"# tinyfast GPU proof: {report['device_name']}", "",
             f"- date {env.get('date')}, commit {env.get('git', {}).get('commit')}, torch {env.get('torch')} "
             f"(CUDA {env.get('torch_cuda')}), driver {env.get('driver')}",
             f"- command: `{report['command']}`, wall {report['proof']['wall_s']:.0f} s", "",
             "## Targets", "", "| target | value | goal | met | note |", "|---|---|---|---|---|"]
    for t in report["targets"]:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
        v = _fmt(t["value"]) if isinstance(t["value"], float) else t["value"]
        lines.append(f"| {t['name']} | {v if v is not None else 'n/a'} | {t['goal']} | {met} | {t['note']} |")
    lines += ["", "## Phases", "", "| phase | status | seconds | cap | command | note |", "|---|---|---|---|---|---|"]
    for ph in report["phases"]:
        lines.append(f"| {ph['name']} | {ph['status']} | {ph['seconds']:.0f} | {ph['cap']:.0f} "
                     f"| {ph.get('command_phases', '')} | {ph.get('reason', '')} |")
    c = report["proof"]["tests"].get("counts") or {}
    pre = report["proof"].get("preflight") or {}
    lines += ["", f"Tests: {', '.join(f'{v} {k}' for k, v in c.items()) or 'not run'}.",
              f"Host syncs: {json.dumps(report['proof']['syncs']['rows'])}",
              f"Preflight: {json.dumps(pre)}", ""]
    if report.get("ceilings"):
        try:
            from benchmarks.reporting import markdown as bench_markdown

            lines.append(bench_markdown(report))
        except Exception as exc:  # the tables above still stand
            lines.append(f"(benchmark tables unavailable: {type(exc).__name__}: {exc})")
    return "\n".join(lines) + "\n"


def chart(report: dict, path: Path) -> str | None:
    """The benchmark PNG; None when written, else why not."""
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib is not installed (pass --wheelhouse)"
    try:
        from benchmarks.reporting import bar_chart

        return None if bar_chart(report, path) else "nothing measured to plot"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:200]


def write(report: dict, out: Path, stem: str, png: bool) -> list[Path]:
    """``<stem>.json`` and ``.md`` (and ``.png`` when ``png``) in ``out``, each atomically."""
    paths = [out / f"{stem}.json", out / f"{stem}.md"]
    if png:
        why = chart(report, out / f"{stem}.png")
        report["proof"]["png"] = why or "written"
        if why is None:
            paths.append(out / f"{stem}.png")
    common.write_json(paths[0], report)
    common.atomic_write_text(paths[1], markdown(report))
    return paths

"""The GPU proof's verdict: every target from the report's figures, MET / MISSED / n/a.

A target reads only figures that can support it: the op ratio is the headline of
:func:`benchmarks.op.headline` (an eager row at a batch whose working set exceeds the L2 cache,
never a graph replay), measured on CUDA; a tests phase is MET only when pytest finished with no
failure and something passed, and a phase that timed out, crashed or was skipped is MISSED or
n/a; a sanitizer that never ran the cases is n/a. On a CPU smoke run every GPU target is n/a.
"""
from __future__ import annotations


def _fmt(v, spec=".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def _target(name: str, value, goal: str, met, note: str = "") -> dict:
    return {"name": name, "value": value, "goal": goal, "met": met, "note": note}


def op_target(report: dict) -> dict:
    s = (report.get("op") or {}).get("summary") or {}
    frac = s.get("op_fraction_of_copy")
    on_cuda = s.get("op_device") == "cuda"
    note = s.get("op_fraction_of_copy_from", "")
    if frac is not None and not on_cuda:
        note = f"{note} (not a CUDA figure)"
    return _target("op fraction of copy", frac, ">= 0.80", frac >= 0.80 if frac is not None and on_cuda else None,
                   note)


def tests_target(tests: dict, quick: bool) -> dict:
    """MET: pytest ran to its end with 0 failed/errors and > 0 passed. MISSED: failures, or a phase
    that timed out or crashed (whatever it counted before). n/a: skipped or not run."""
    status, c = tests.get("status"), tests.get("counts") or {}
    bad = c.get("failed", 0) + c.get("errors", 0)
    goal = f"0 of {c.get('passed', 0) + bad}"
    if status in (None, "skipped") or quick:
        return _target("cuda tests failed", None, goal, None, tests.get("reason") or "not run")
    if status != "ok":
        return _target("cuda tests failed", bad, goal, False, f"tests phase {status}: {tests.get('reason', '')}")
    return _target("cuda tests failed", bad, goal, bad == 0 and c.get("passed", 0) > 0)


def targets(report: dict) -> list[dict]:
    """Every target of the GPU proof, from this run's figures (None where not measured)."""
    pr = report["proof"]
    out = [op_target(report)]
    speed = {r["loader"]: r.get("speedup_vs_torch_best") for r in report.get("loaders", []) if r["loader"] != "torch"}
    for loader, goal in (("gpu", 100), ("dali", 10)):
        v = speed.get(loader)
        out.append(_target(f"{loader} loader x best DataLoader", v, f">= {goal}", None if v is None else v >= goal))
    r18 = next((r.get("fraction_of_ceiling") for r in report.get("train", []) if r["arch"] == "resnet18"
                and r["feed"] == "gpu" and r["channels_last_amp"]), None)
    out.append(_target("resnet18 gpu-fed fraction of ceiling", r18, ">= 0.95", None if r18 is None else r18 >= 0.95))
    out.append(tests_target(pr.get("tests") or {}, report["quick"]))
    san = pr.get("sanitizers") or {}
    for tool in ("memcheck", "racecheck"):
        rec = san.get(tool) or {}
        n = rec.get("errors") if rec.get("status") != "skipped" else None
        if rec.get("status") == "timeout":
            out.append(_target(f"{tool} errors", n, "0", False, "cut at its cap"))
        else:
            out.append(_target(f"{tool} errors", n, "0", None if n is None else n == 0, rec.get("reason", "")))
    rows = (pr.get("syncs") or {}).get("rows", [])
    sync = next((r["syncs_per_step"] for r in rows if r["what"] == "gpu loader"), None)
    # tinyfast.train's step between log steps: the syncs of a long and a short run, per extra step
    step = next((r.get("syncs_per_step") for r in rows if r["what"].startswith("tinyfast.train")), None)
    cuda = report["device"] != "cpu"
    out.append(_target("gpu loader host syncs per batch", sync if cuda else None, "0",
                       None if sync is None or not cuda else sync == 0))
    out.append(_target("train host syncs per step", step if cuda else None, "0",
                       None if step is None or not cuda else step == 0))
    if report["quick"]:  # the targets are GPU targets: a CPU smoke run only shows the figures
        for t in out:
            t.update(met=None, note="cpu-smoke: not a GPU figure")
    for cmd in pr.get("commands", [{"wall_s": pr["wall_s"], "budget_s": pr["budget_s"], "phases": "all"}]):
        out.append(_target(f"wall seconds ({cmd['phases']})", cmd["wall_s"], f"<= {cmd['budget_s']:.0f}",
                           cmd["wall_s"] <= cmd["budget_s"] + 5))
    return out


def summary_line(report: dict) -> str:
    """One line: every target, its value and MET / MISSED / n/a."""
    parts = []
    for t in report["targets"]:
        state = "n/a" if t["met"] is None else ("MET" if t["met"] else "MISSED")
        v = t["value"]
        parts.append(f"{t['name']} {_fmt(v) if isinstance(v, float) or v is None else v} ({t['goal']}) {state}")
    return f"PROOF {report['device_name']}: " + " | ".join(parts)

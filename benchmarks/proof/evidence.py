"""The GPU proof's evidence phases: the CUDA tests and the compute-sanitizer runs."""
from __future__ import annotations

import re
import sys
import time

from benchmarks.proof.runner import REPO, Runner, from_run, last_line
from benchmarks.proof.setup_phases import find_tool

OP_TEST_FILES = ["tests/test_augment_op.py", "tests/test_augment_cuda.py", "tests/test_bench_op.py"]


def pytest_counts(text: str) -> dict:
    """Counts from pytest's final summary line (``3 passed, 1 skipped in 2.0s``)."""
    counts = {}
    for line in reversed(text.splitlines()):
        found = re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)", line)
        if found and (" in " in line or "no tests ran" in line):
            for n, key in found:
                counts["errors" if key.startswith("error") else key] = int(n)
            break
    return counts


def phase_tests(p: Runner, cap: float) -> dict:
    """The op's CUDA tests, then every other CUDA test of the suite (DALI/FFCV ones where they import)."""
    optional = {name: p.has_module(mod) for name, mod in (("dali", "nvidia.dali"), ("ffcv", "ffcv"))}
    optional.update({f: (REPO / "tests" / f).exists() for f in ("test_dali_ops.py", "test_ffcv_ops.py")})
    if not p.has_module("pytest"):
        return {"status": "skipped", "reason": "pytest is not installed (pass --wheelhouse)", "optional": optional}
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-rfE"]
    runs = [base + ["tests/test_augment_cuda.py"]] if p.smoke else [
        base + ["-m", "cuda"] + OP_TEST_FILES,
        base + ["-m", "cuda", "tests"] + [f"--ignore={f}" for f in OP_TEST_FILES]]
    total: dict = {}
    t_end = time.monotonic() + cap
    for cmd in runs:
        r = p.run(cmd, t_end - time.monotonic(), raw=True)
        counts = pytest_counts(r["output"])
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
        if r["timed_out"] or r["rc"] not in (0, 5):  # 5: nothing collected (no such tests)
            return from_run(r, "pytest", counts=total, optional=optional)
    return {"status": "ok", "counts": total, "optional": optional}


def sanitizer_summary(text: str) -> int | None:
    """Errors (memcheck) or hazards (racecheck) from compute-sanitizer's summary line, else None."""
    m = re.search(r"ERROR SUMMARY: (\d+) error", text) or re.search(r"RACECHECK SUMMARY: (\d+) hazard", text)
    return int(m.group(1)) if m else None


def phase_sanitizers(p: Runner, cap: float) -> dict:
    """memcheck and racecheck over the reduced case set; a sanitizer that cannot run is reported."""
    cases = [sys.executable, "-m", "benchmarks.proof.sanitize_cases"]
    tool = find_tool("compute-sanitizer")
    if p.smoke or tool is None:
        r = p.run(cases + ["--device", "cpu"], cap, raw=True)  # the same cases, CPU kernel only
        why = "cpu-smoke" if p.smoke else "compute-sanitizer not found"
        return dict(from_run(r, "sanitize_cases"), status="skipped", reason=f"{why}: cases run on the CPU only")
    out: dict = {"status": "ok"}
    env = dict(p.env, PYTORCH_NO_CUDA_MEMORY_CACHING="1")  # real allocation bounds for memcheck
    t_end = time.monotonic() + cap
    for i, name in enumerate(("memcheck", "racecheck")):
        share = (t_end - time.monotonic()) / (2 - i)
        r = p.run([tool, "--tool", name, "--error-exitcode", "3"] + cases, share, raw=True, env=env)
        n = sanitizer_summary(r["output"])
        res = from_run(r, name, errors=n)
        if n is None and not r["timed_out"]:  # it never got to run the cases: report, do not fail
            res = {"status": "skipped", "reason": f"{name} did not run: {last_line(r['output'])}"}
        elif n:
            res.update(status="failed", reason=f"{name}: {n} errors/hazards")
        out[name] = res
        if res["status"] in ("failed", "timeout"):
            out["status"] = res["status"]
    if all(out[name]["status"] == "skipped" for name in ("memcheck", "racecheck")):
        # neither tool ran the cases: no evidence either way, so not "ok"
        out.update(status="skipped", reason="neither memcheck nor racecheck ran: " + out["memcheck"]["reason"])
    return out

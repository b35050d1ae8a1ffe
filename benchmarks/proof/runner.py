"""The GPU proof's runner: runs each phase's commands under a cap, logs their output, and holds
the run's paths (work dir, log, raw test log) and its overall deadline."""
from __future__ import annotations

import importlib.util
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class Runner:
    """Runs the phases' commands with caps, logging their output; holds the run's paths and budget."""

    def __init__(self, args, stem: str):
        self.args, self.smoke = args, args.cpu_smoke
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.budget
        self.stem = stem
        self.preflight: dict | None = None  # set by the preflight phase
        self.out = args.out
        self.work = Path(tempfile.mkdtemp(prefix="tinyfast-proof-", dir=args.work))
        self.log_path = self.out / f"{stem}.log"
        self.raw_path = self.out / f"{stem}-cuda-tests.txt"
        self.site = self.work / "site"
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", TINYFAST_PROGRESS="lines",
                        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
        self.device = "cpu" if self.smoke else "cuda"
        self.data: Path | None = args.data
        for path in (self.log_path, self.raw_path):
            path.write_text("")

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, msg: str) -> None:
        """A progress line on stdout and in the log."""
        print(msg, flush=True)
        with self.log_path.open("a") as f:
            f.write(msg + "\n")

    def add_site(self) -> None:
        """Put the private wheelhouse install first on every later command's path (and this one's)."""
        if str(self.site) not in sys.path:
            self.env["PYTHONPATH"] = os.pathsep.join([str(self.site), self.env["PYTHONPATH"]])
            sys.path.insert(0, str(self.site))
        importlib.invalidate_caches()

    def has_module(self, name: str) -> bool:
        return importlib.util.find_spec(name) is not None

    def run(self, cmd: list[str], cap: float, *, raw: bool = False, env: dict | None = None) -> dict:
        """Run ``cmd`` from the repository root for at most ``cap`` seconds (its process group is
        killed then). Returns ``{"rc", "output", "timed_out", "seconds"}``; output is also logged
        (and copied to the raw test log when ``raw``)."""
        t0, cpu0 = time.monotonic(), _children_cpu()
        self.say(f"$ {' '.join(cmd)}   (cap {cap:.0f} s)")
        lines: list[str] = []
        proc = subprocess.Popen(cmd, cwd=REPO, env=env or self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
        files = [self.log_path.open("a")] + ([self.raw_path.open("a")] if raw else [])
        if raw:
            files[1].write(f"\n$ {' '.join(cmd)}\n")

        def pump():
            for line in proc.stdout:
                lines.append(line)
                for f in files:
                    f.write(line)
                    f.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=max(1.0, cap))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        reader.join(timeout=10)
        for f in files:
            f.close()
        self.say(f"  exit {proc.returncode} after {time.monotonic() - t0:.1f} s ({_children_cpu() - cpu0:.1f} s CPU)")
        return {"rc": proc.returncode, "output": "".join(lines), "timed_out": timed_out,
                "seconds": time.monotonic() - t0}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def last_line(text: str, n: int = 200) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:n] if lines else ""


def rows_of(text: str) -> list[dict]:
    """The ``ROW <json>`` lines of benchmarks.proof.steps."""
    return [json.loads(ln[4:]) for ln in text.splitlines() if ln.startswith("ROW ")]


def from_run(r: dict, what: str, **detail) -> dict:
    """A phase result from one command's result."""
    if r["timed_out"]:
        return dict(detail, status="timeout", reason=f"{what} reached its cap after {r['seconds']:.0f} s")
    if r["rc"] != 0:
        return dict(detail, status="failed", reason=f"{what} exited {r['rc']}: {last_line(r['output'])}")
    return dict(detail, status="ok")

"""The GPU proof: one offline command that builds, tests and measures tinyfast on a bare CUDA machine.

    benchmarks/gpu_proof.sh --out DIR [--wheelhouse WHEELS]     # = python -m benchmarks.proof ...
    python -m benchmarks.proof --cpu-smoke --out DIR           # every phase, tiny, on the CPU (CI)

Phases, in order, each under its own time cap inside one overall budget (default 480 s); a phase
that fails or reaches its cap is recorded as such and the later phases still run:

  wheelhouse  install pytest/tqdm/matplotlib offline from ``--wheelhouse`` into a private dir
  build       ``setup.py build_ext --inplace`` for the visible GPU's arch + PTX (no downloads); the DALI
              plugin (``csrc/dali/build.py``) too when DALI imports
  tests       the CUDA tests (``pytest -m cuda``: the op's first, then the rest of the suite's,
              DALI/FFCV ones included where those import)
  sanitizers  ``compute-sanitizer`` memcheck and racecheck over ``benchmarks.sanitize_cases``
  data        the full-size synthetic set (200 x 500 + 50), JPEG tree and shards, all cores
  op          ``python -m benchmarks --sections op``: copy ceiling, fused op over batches, graphs
  loaders     images/s of each loader; the ``torch`` DataLoader swept over workers to the cores
  syncs       host syncs per batch (gpu loader) and per training step (``tinyfast.train``)
  train       ``python -m benchmarks --sections train`` for resnet18, then resnet50 and
              mobilenet_v2 as time allows: fed by ``gpu``, by ``torch``, and by a fixed batch

Writes at most five files into ``--out``: ``<gpu>-<date>.json`` (the schema of ``python -m
benchmarks`` plus ``phases``, ``tests``, ``sanitizers``, ``syncs`` and ``targets``), ``.md``,
``.png`` (when matplotlib imports), ``-cuda-tests.txt`` (raw pytest + sanitizer output) and
``.log`` (every command's output). The last line printed is the summary of every target.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OP_TEST_FILES = ["tests/test_augment_op.py", "tests/test_augment_cuda.py", "tests/test_bench_augment.py"]
CAPS = {"wheelhouse": 40, "build": 150, "tests": 110, "sanitizers": 90, "data": 100, "op": 60,
        "loaders": 90, "syncs": 45, "train": 120}
# Kept back for each later phase out of the overall budget, so a slow early phase cannot starve
# the measurements (training, the last, needs about a minute for resnet18 alone).
RESERVE = {"wheelhouse": 5, "build": 10, "tests": 10, "sanitizers": 10, "data": 20, "op": 20,
           "loaders": 25, "syncs": 15, "train": 60}
TRAIN_ARCHS = ("resnet18", "resnet50", "mobilenet_v2")


class Runner:
    """Runs the phases' commands with caps, logging their output; holds the run's paths and budget."""

    def __init__(self, args, stem: str):
        self.args, self.smoke = args, args.cpu_smoke
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.budget
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
    """The ``ROW <json>`` lines of benchmarks.proof_steps."""
    return [json.loads(ln[4:]) for ln in text.splitlines() if ln.startswith("ROW ")]


def from_run(r: dict, what: str, **detail) -> dict:
    """A phase result from one command's result."""
    if r["timed_out"]:
        return dict(detail, status="timeout", reason=f"{what} reached its cap after {r['seconds']:.0f} s")
    if r["rc"] != 0:
        return dict(detail, status="failed", reason=f"{what} exited {r['rc']}: {last_line(r['output'])}")
    return dict(detail, status="ok")


# ------------------------------------------------------------------------------------- phases
TQDM_STAND_IN = '''"""Stand-in for tqdm in a GPU proof run on a machine without it: tinyfast.progress's plain lines."""
from tinyfast.progress import LineProgress


class tqdm(LineProgress):
    """tqdm's small interface, printing a plain line now and then."""

    @staticmethod
    def write(msg, *args, **kwargs):
        print(msg, flush=True)
'''


def install_tqdm_stand_in(site: Path) -> None:
    """``tqdm`` and ``tqdm.auto`` modules in ``site`` that print plain lines (tinyfast.progress)."""
    pkg = site / "tqdm"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(TQDM_STAND_IN)
    (pkg / "auto.py").write_text("from tqdm import tqdm  # noqa: F401\n")


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def wheels_to_install(wheels: list[Path]) -> list[Path]:
    """The wheels whose distribution is missing here, or older than the wheel's (an old setuptools
    cannot read this project's pyproject.toml)."""
    from importlib import metadata

    out = []
    for w in wheels:
        dist, version = w.name.split("-")[:2]
        try:
            if _version_key(metadata.version(dist)) < _version_key(version):
                out.append(w)
        except metadata.PackageNotFoundError:
            out.append(w)
    return out


def _install_wheels(p: Runner, cap: float) -> dict:
    if p.args.wheelhouse is None:
        return {"status": "skipped", "reason": "no --wheelhouse given"}
    wheels = sorted(Path(p.args.wheelhouse).glob("*.whl"))
    missing = wheels_to_install(wheels)
    if not missing:
        return {"status": "skipped", "reason": f"all {len(wheels)} wheels already installed"}
    r = p.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--target", str(p.site)] + [str(w) for w in missing], cap)
    if r["rc"] == 0:
        p.add_site()
    return from_run(r, "pip install", installed=[w.name for w in missing])


def phase_wheelhouse(p: Runner, cap: float) -> dict:
    """Offline install of the wheels in --wheelhouse whose distributions are missing here; where
    tqdm is still missing, a plain-lines stand-in (the packer and trainer import tqdm)."""
    out = _install_wheels(p, cap)
    if not p.has_module("tqdm"):
        install_tqdm_stand_in(p.site)
        p.add_site()
        out["tqdm_stand_in"] = "tqdm is not installed: a stand-in printing plain lines is on the path"
    return out


def phase_build(p: Runner, cap: float) -> dict:
    """Build tinyfast._C in place for the visible GPU (setup.py's default: its arch + PTX)."""
    check = [sys.executable, "-c", "import json, torch, tinyfast.ops as o; print('BACKENDS ' + json.dumps("
             "{'compiled': o.compiled_backends(), 'available': o.available_backends()}))"]
    if p.smoke:
        r = p.run(check, cap)
        out = {"status": "skipped", "reason": "cpu-smoke: the extension already built is used"}
    else:
        env = dict(p.env, MAX_JOBS=str(os.cpu_count() or 4))
        if p.args.arch_list:
            env["TORCH_CUDA_ARCH_LIST"] = p.args.arch_list
        else:
            env.pop("TORCH_CUDA_ARCH_LIST", None)
        r = p.run([sys.executable, "setup.py", "build_ext", "--inplace"], cap, env=env)
        out = from_run(r, "the build", arch_list=p.args.arch_list or "setup.py default (visible GPU + PTX)")
        if out["status"] != "ok":
            return out
        r = p.run(check, 60)
    found = [ln for ln in r["output"].splitlines() if ln.startswith("BACKENDS ")]
    out["backends"] = json.loads(found[-1][9:]) if found else None
    if not p.smoke and (not found or "cuda" not in out["backends"]["available"]):
        out.update(status="failed", reason=f"the CUDA kernels do not load: {last_line(r['output'])}")
    out["dali_plugin"] = build_dali_plugin(p, cap)
    return out


def build_dali_plugin(p: Runner, cap: float) -> dict:
    """The DALI plugin operator (CPU + GPU backends over the kernels just built), when DALI imports,
    so the tests phase runs its CUDA tests too; exit 2 of the build script means a missing piece."""
    if not p.has_module("nvidia.dali"):
        return {"status": "skipped", "reason": "nvidia.dali is not installed here"}
    if p.smoke and (REPO / "tinyfast" / "libtinyfast_dali.so").exists():
        return {"status": "skipped", "reason": "cpu-smoke: the plugin already built is used"}
    r = p.run([sys.executable, str(REPO / "csrc" / "dali" / "build.py")], max(30.0, cap / 3))
    if r["rc"] == 2:
        return {"status": "skipped", "reason": last_line(r["output"])}
    return from_run(r, "the DALI plugin build")


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
    cases = [sys.executable, "-m", "benchmarks.sanitize_cases"]
    tool = shutil.which("compute-sanitizer") or next(
        (str(c) for c in (Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "compute-sanitizer",)
         if c.exists()), None)
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
    return out


def phase_data(p: Runner, cap: float) -> dict:
    """The synthetic set at the real dataset's shape (tiny in smoke mode), with its JPEG tree."""
    if p.data is not None:
        return {"status": "skipped", "reason": f"--data {p.data} given", "data": str(p.data)}
    sizes = [(4, 16, 4)] if p.smoke else [(200, 500, 50), (200, 50, 10)]  # full, then a tenth
    t_end, out = time.monotonic() + cap, {}
    for k, (classes, per, val) in enumerate(sizes):
        data = p.work / f"data{k}"
        left = t_end - time.monotonic()
        share = left * 0.75 if k + 1 < len(sizes) else left  # leave the smaller set time to run
        r = p.run([sys.executable, "-m", "tinyfast.pack", "--synthetic", "--classes", str(classes), "--per-class",
                   str(per), "--val-per-class", str(val), "--out", str(data), "--tree", str(p.work / f"tree{k}"),
                   "--jpeg-shards", "--quiet", "--workers", str(os.cpu_count() or 1)], share)
        out = from_run(r, "tinyfast.pack", data=str(data), classes=classes, per_class=per, val_per_class=val,
                       reduced=k > 0, **({"full_size": out} if k else {}))
        if out["status"] == "ok":
            p.data = data
            break
        shutil.rmtree(data, ignore_errors=True)
    return out


def _bench(p: Runner, cap: float, sections: str, name: str, extra: list[str]) -> tuple[dict, dict | None]:
    """``python -m benchmarks --sections ...`` into the work dir; (phase result, its report)."""
    out_dir = p.work / name
    cmd = [sys.executable, "-m", "benchmarks", "--sections", sections, "--device", p.device,
           "--data", str(p.data), "--out", str(out_dir)] + (["--quick"] if p.smoke else []) + extra
    r = p.run(cmd, cap)
    reports = sorted(out_dir.glob("*.json"))
    report = json.loads(reports[-1].read_text()) if reports and r["rc"] == 0 else None
    return from_run(r, "python -m benchmarks"), report


def needs_data(fn):
    """Phases that measure on the packed data are skipped, with the reason, when there is none."""
    def wrapped(p: Runner, cap: float) -> dict:
        if p.data is None:
            return {"status": "skipped", "reason": "no packed data (the data phase failed)"}
        return fn(p, cap)
    wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
    return wrapped


@needs_data
def phase_op(p: Runner, cap: float) -> dict:
    """Device copy and matmul ceilings, then the fused op over batch sizes (eager and graphed)."""
    out, report = _bench(p, cap, "op", "op", [])
    if report:
        out.update(ceilings=report.get("ceilings"), op=report.get("op"), environment=report.get("environment"))
    return out


@needs_data
def phase_loaders(p: Runner, cap: float) -> dict:
    """Each loader's images/s; ``torch`` over a worker sweep; rows kept even when the cap is hit."""
    cmd = [sys.executable, "-m", "benchmarks.proof_steps", "loaders", "--data", str(p.data), "--device", p.device]
    if p.smoke:
        cmd += ["--loaders", "gpu,torch", "--workers", "0", "--batch-size", "16", "--batches", "2",
                "--warmup", "1", "--runs", "1"]
    r = p.run(cmd, cap)
    rows = rows_of(r["output"])
    base = [x["images_per_sec"] for x in rows if x["loader"] == "torch" and "images_per_sec" in x]
    for x in rows:
        if base and "images_per_sec" in x:
            x["speedup_vs_torch_best"] = x["images_per_sec"] / max(base)
    return from_run(r, "proof_steps loaders", rows=rows)


@needs_data
def phase_syncs(p: Runner, cap: float) -> dict:
    """Host syncs per gpu-loader batch and per tinyfast.train step (set_sync_debug_mode("warn"))."""
    cmd = [sys.executable, "-m", "benchmarks.proof_steps", "syncs", "--data", str(p.data), "--device", p.device]
    if p.smoke:
        cmd += ["--arch", "cnn2", "--batch-size", "16", "--steps", "1,2"]
    r = p.run(cmd, cap)
    out = from_run(r, "proof_steps syncs", rows=rows_of(r["output"]))
    if p.smoke and out["status"] == "ok":
        out.update(status="skipped", reason="cpu-smoke: nothing syncs on the CPU; the counting path ran")
    return out


@needs_data
def phase_train(p: Runner, cap: float) -> dict:
    """Training images/s per arch (resnet18 first) fed by gpu, torch and a fixed on-device batch."""
    archs = ["cnn2"] if p.smoke else list(p.args.archs.split(","))
    t_end, rows, done, out = time.monotonic() + cap, [], [], {"status": "ok"}
    for i, arch in enumerate(archs):
        left = t_end - time.monotonic()
        if i and left < 30:  # a later arch needs about this much; say so instead of a certain timeout
            out["not_run"] = archs[i:]
            break
        feeds = ["--loaders", "gpu", "--batches", "2"] if p.smoke else ["--loaders", "gpu,torch"]
        res, report = _bench(p, left, "train", f"train-{arch}", ["--archs", arch] + feeds)
        rows += (report or {}).get("train", [])
        if res["status"] == "ok":
            done.append(arch)
        elif i == 0:  # the first arch is the target's: its failure is the phase's
            out = dict(res, not_run=archs[1:])
            break
        else:  # later archs run "as time allows": one cut short is noted, not a failure
            out["not_finished"] = {"arch": arch, "why": res["reason"]}
            break
    out.update(rows=rows, archs=done)
    return out


PHASES = [("wheelhouse", phase_wheelhouse), ("build", phase_build), ("tests", phase_tests),
          ("sanitizers", phase_sanitizers), ("data", phase_data), ("op", phase_op), ("loaders", phase_loaders),
          ("syncs", phase_syncs), ("train", phase_train)]
def run_phases(p: Runner) -> list[dict]:
    """Every phase in order, each capped by its own limit and by what the overall budget leaves."""
    phases = []
    for i, (name, fn) in enumerate(PHASES):
        later = sum(RESERVE[n] for n, _ in PHASES[i + 1:])
        cap = min(CAPS[name] * p.args.cap_scale, p.deadline - time.monotonic() - later)
        t0 = time.monotonic()
        if name in p.args.skip.split(","):
            rec = {"status": "skipped", "reason": "--skip"}
        elif cap < 5:
            rec = {"status": "skipped", "reason": "out of time (the overall --budget)"}
        else:
            p.say(f"[{name}] start (cap {cap:.0f} s, {p.elapsed():.0f} s elapsed)")
            try:
                rec = fn(p, cap)
            except Exception as exc:  # a phase's own bug must not stop the later phases
                rec = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:300]}
        rec.update(name=name, seconds=round(time.monotonic() - t0, 1), cap=round(max(cap, 0), 1))
        why = f": {rec['reason']}" if rec.get("reason") else ""
        p.say(f"[{name}] {rec['status']} in {rec['seconds']:.0f} s{why}")
        phases.append(rec)
    return phases


def _fmt(v, spec=".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def _target(name: str, value, goal: str, met, note: str = "") -> dict:
    return {"name": name, "value": value, "goal": goal, "met": met, "note": note}


def targets(report: dict) -> list[dict]:
    """Every target of the GPU proof, from this run's figures (None where not measured)."""
    pr, out = report["proof"], []
    frac = report.get("op", {}).get("summary", {}).get("cuda_op_fraction_of_copy")
    out.append(_target("op fraction of copy", frac, ">= 0.80", None if frac is None else frac >= 0.80,
                       report.get("op", {}).get("summary", {}).get("cuda_op_fraction_of_copy_from", "")))
    speed = {r["loader"]: r.get("speedup_vs_torch_best") for r in report.get("loaders", []) if r["loader"] != "torch"}
    for loader, goal in (("gpu", 100), ("dali", 10)):
        v = speed.get(loader)
        out.append(_target(f"{loader} loader x best DataLoader", v, f">= {goal}", None if v is None else v >= goal))
    r18 = next((r.get("fraction_of_ceiling") for r in report.get("train", []) if r["arch"] == "resnet18"
                and r["feed"] == "gpu" and r["channels_last_amp"]), None)
    out.append(_target("resnet18 gpu-fed fraction of ceiling", r18, ">= 0.95", None if r18 is None else r18 >= 0.95))
    c = pr["tests"].get("counts") or {}
    ran = bool(c) and pr["tests"]["status"] != "skipped" and not report["quick"]
    bad = c.get("failed", 0) + c.get("errors", 0)
    out.append(_target("cuda tests failed", bad if ran else None, f"0 of {c.get('passed', 0) + bad}",
                       (bad == 0 and c.get("passed", 0) > 0) if ran else None))
    for tool in ("memcheck", "racecheck"):
        n = (pr["sanitizers"].get(tool) or {}).get("errors")
        out.append(_target(f"{tool} errors", n, "0", None if n is None else n == 0))
    sync = next((r["syncs_per_step"] for r in pr["syncs"].get("rows", []) if r["what"] == "gpu loader"), None)
    cuda = report["device"] != "cpu"
    out.append(_target("gpu loader host syncs per batch", sync if cuda else None, "0",
                       None if sync is None or not cuda else sync == 0))
    if report["quick"]:  # the targets are GPU targets: a CPU smoke run only shows the figures
        for t in out:
            t.update(met=None, note="cpu-smoke: not a GPU figure")
    out.append(_target("wall seconds", pr["wall_s"], "<= 480", pr["wall_s"] <= 480))
    return out


def summary_line(report: dict) -> str:
    """One line: every target, its value and MET / MISSED / n/a."""
    parts = []
    for t in report["targets"]:
        state = "n/a" if t["met"] is None else ("MET" if t["met"] else "MISSED")
        v = t["value"]
        parts.append(f"{t['name']} {_fmt(v) if isinstance(v, float) or v is None else v} ({t['goal']}) {state}")
    return f"PROOF {report['device_name']}: " + " | ".join(parts)


BULKY = ("rows", "op", "ceilings", "environment")


def assemble(p: Runner, phases: list[dict], argv: list[str], device_name: str) -> dict:
    """The report: ``python -m benchmarks``'s schema from the phases' results, plus the proof's own."""
    by = {ph["name"]: ph for ph in phases}
    env = by["op"].get("environment") or _environment(p.device)
    report = {"device_name": device_name, "device": p.device, "quick": p.smoke,
              "command": "python -m benchmarks.proof " + " ".join(argv), "data": str(p.data),
              "environment": env, "ceilings": by["op"].get("ceilings") or {},
              "loaders": by["loaders"].get("rows", []), "op": by["op"].get("op") or {},
              "train": by["train"].get("rows", [])}
    report["phases"] = [{k: v for k, v in ph.items() if k not in BULKY} for ph in phases]
    report["proof"] = {"wall_s": round(p.elapsed(), 1), "budget_s": p.args.budget,
                       "tests": {k: by["tests"].get(k) for k in ("status", "counts", "optional", "reason")},
                       "sanitizers": {k: v for k, v in by["sanitizers"].items() if k not in ("name", "cap")},
                       "syncs": {"status": by["syncs"]["status"], "rows": by["syncs"].get("rows", [])}}
    report["targets"] = targets(report)
    return report


def _environment(device: str) -> dict:
    try:
        from benchmarks.__main__ import environment
        import torch

        return environment(torch.device(device))
    except Exception:  # the op phase failed early; the basic record still says where this ran
        from benchmarks import common

        return common.environment([device])


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
    lines += ["", "## Phases", "", "| phase | status | seconds | cap | note |", "|---|---|---|---|---|"]
    for ph in report["phases"]:
        lines.append(f"| {ph['name']} | {ph['status']} | {ph['seconds']:.0f} | {ph['cap']:.0f} "
                     f"| {ph.get('reason', '')} |")
    c = report["proof"]["tests"].get("counts") or {}
    lines += ["", f"Tests: {', '.join(f'{v} {k}' for k, v in c.items()) or 'not run'}.",
              f"Host syncs: {json.dumps(report['proof']['syncs']['rows'])}", ""]
    try:
        from benchmarks.__main__ import markdown as bench_markdown

        lines.append(bench_markdown(report))
    except Exception as exc:  # e.g. no ceilings measured: the tables above still stand
        lines.append(f"(benchmark tables unavailable: {type(exc).__name__}: {exc})")
    return "\n".join(lines) + "\n"


def chart(report: dict, path: Path) -> str | None:
    """The benchmark PNG; None when written, else why not."""
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib is not installed (pass --wheelhouse)"
    try:
        from benchmarks.__main__ import bar_chart

        return None if bar_chart(report, path) else "nothing measured to plot"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:200]


def get_args_parser() -> argparse.ArgumentParser:
    """The ``python -m benchmarks.proof`` argument parser."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.proof", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="where the result files go")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny data on the CPU: every phase exercised (CI)")
    p.add_argument("--wheelhouse", type=Path, default=None,
                   help="wheels (benchmarks/make_wheelhouse.sh) installed offline into a private dir")
    p.add_argument("--data", type=Path, default=None, help="a packed dataset to use instead of building one")
    p.add_argument("--budget", type=float, default=470.0, help="overall seconds for all phases")
    p.add_argument("--cap-scale", type=float, default=1.0, help="multiplies every phase's own cap")
    p.add_argument("--arch-list", default=None, help="TORCH_CUDA_ARCH_LIST for the build (default: the GPU + PTX)")
    p.add_argument("--archs", default=",".join(TRAIN_ARCHS), help="training phase, in order, as time allows")
    p.add_argument("--skip", default="", help=f"comma-separated phases to skip, of {','.join(CAPS)}")
    p.add_argument("--work", type=Path, default=None, help="parent of the work dir (default: the system temp)")
    p.add_argument("--keep-work", action="store_true", help="keep the work dir (data, sub-reports)")
    return p


def main(argv=None) -> int:
    """Run the proof; 0 when every phase ran (ok or skipped with a reason), 1 when one failed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = get_args_parser().parse_args(argv)
    import torch

    from benchmarks import common

    if not args.cpu_smoke and not torch.cuda.is_available():
        print("benchmarks.proof: no CUDA GPU is visible; use --cpu-smoke for the CPU run", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    device_name = common.device_name("cpu" if args.cpu_smoke else "cuda")
    stem = f"{common.slug(device_name)}-{_dt.date.today().isoformat()}"
    p = Runner(args, stem)
    try:
        phases = run_phases(p)
        report = assemble(p, phases, argv, device_name)
        paths = [args.out / f"{stem}.json", args.out / f"{stem}.md", args.out / f"{stem}.png"]
        why = chart(report, paths[2])
        report["proof"]["png"] = why or "written"
        common.write_json(paths[0], report)
        common.atomic_write_text(paths[1], markdown(report))
        p.say("wrote " + ", ".join(str(x) for x in paths[:2] + ([] if why else paths[2:]) + [p.raw_path, p.log_path]))
    finally:
        if not args.keep_work:
            shutil.rmtree(p.work, ignore_errors=True)
    p.say(summary_line(report))
    return 1 if any(ph["status"] in ("failed", "timeout") for ph in phases) else 0


if __name__ == "__main__":
    sys.exit(main())

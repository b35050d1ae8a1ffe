"""The GPU proof's set-up phases: preflight (what the machine has), the offline wheelhouse, the build."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from benchmarks.proof.runner import REPO, Runner, from_run, last_line

# pyproject.toml's `license = "MIT"` (the PEP 639 string form) is read by setuptools >= 77 only;
# an older one stops `setup.py build_ext` with a metadata error before anything compiles.
SETUPTOOLS_MIN = (77,)
DISK_MIN_GIB = 6.0  # the full-size synthetic set (arrays, JPEG tree, shards) and the build, with room


def _cmd_version(cmd: list[str], pattern: str = r"(\d+\.\d+(?:\.\d+)?)") -> str | None:
    """The first version-looking string of ``cmd``'s output, None when it cannot run."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(pattern, out)
    return m.group(1) if m else (out.strip().splitlines() or [None])[0]


def _dist_version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _wheel_version(wheelhouse: Path | None, dist: str) -> str | None:
    if wheelhouse is None:
        return None
    found = sorted(Path(wheelhouse).glob(f"{dist}-*.whl"))
    return found[-1].name.split("-")[1] if found else None


def find_tool(name: str) -> str | None:
    """``name`` on PATH, else under CUDA_HOME (default /usr/local/cuda)/bin."""
    cand = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / name
    return shutil.which(name) or (str(cand) if cand.exists() else None)


def preflight_facts(wheelhouse: Path | None, work: Path) -> dict:
    """Versions and presence of everything the build and the phases use, as plain values."""
    import torch

    f: dict = {"python": sys.version.split()[0], "torch": torch.__version__, "torch_cuda": torch.version.cuda,
               "cuda_available": torch.cuda.is_available()}
    include = sysconfig.get_paths().get("include") or ""
    f["python_h"] = str(Path(include) / "Python.h") if (Path(include) / "Python.h").exists() else None
    if f["cuda_available"]:
        f["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        f["capability"] = "%d.%d" % torch.cuda.get_device_capability(0)
    f["driver"] = _cmd_version(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                               r"(\d+\.\d+(?:\.\d+)?)") if shutil.which("nvidia-smi") else None
    nvcc = find_tool("nvcc")
    f["nvcc"] = _cmd_version([nvcc, "--version"], r"release (\d+\.\d+)") if nvcc else None
    ninja = shutil.which("ninja")
    f["ninja"] = _cmd_version([ninja, "--version"]) if ninja else None
    for dist in ("setuptools", "pybind11", "pytest", "tqdm", "matplotlib"):
        f[dist] = _dist_version(dist)
        f[f"{dist}_wheel"] = _wheel_version(wheelhouse, dist)
    f["torch_pybind11_headers"] = (Path(torch.__file__).parent / "include" / "pybind11").is_dir()
    san = find_tool("compute-sanitizer")
    f["compute_sanitizer"] = _cmd_version([san, "--version"], r"(\d{4}\.\d+\.\d+|\d+\.\d+\.\d+)") if san else None
    for key, path in (("disk_free_gib_work", work), ("disk_free_gib_repo", REPO)):
        f[key] = round(shutil.disk_usage(path).free / 2 ** 30, 1)
    return f


def preflight_problems(f: dict, smoke: bool) -> tuple[list[str], list[str]]:
    """(build blockers, other problems): each one line naming the missing piece and what it stops."""
    block, warn = [], []
    if not f["python_h"]:
        block.append("Python.h is missing (install the python3-dev headers): nothing can be compiled")
    if not smoke:
        if not f["torch_cuda"]:
            block.append(f"torch {f['torch']} is a CPU-only build: no CUDA kernels")
        if not f["cuda_available"]:
            block.append("torch sees no CUDA GPU")
        if not f["nvcc"]:
            block.append("nvcc not found (PATH, CUDA_HOME/bin): the CUDA kernels cannot be built")
        elif f["torch_cuda"] and f["nvcc"].split(".")[0] != f["torch_cuda"].split(".")[0]:
            block.append(f"nvcc {f['nvcc']} and torch's CUDA {f['torch_cuda']} differ in major version "
                         "(torch.utils.cpp_extension refuses the build)")
    st, st_wheel = f["setuptools"], f["setuptools_wheel"]
    if not st or _version_key(st) < SETUPTOOLS_MIN:
        if st_wheel and _version_key(st_wheel) >= SETUPTOOLS_MIN:
            warn.append(f"setuptools {st or 'missing'} < 77 here: the wheelhouse's {st_wheel} is used")
        else:
            block.append(f"setuptools {st or 'missing'} < 77 (pyproject's license string needs 77): "
                         "pass --wheelhouse (benchmarks/make_wheelhouse.sh)")
    if not f["ninja"]:
        warn.append("ninja not found: torch builds without it, one file at a time (slower)")
    if not f["pybind11"] and not f["torch_pybind11_headers"]:
        block.append("pybind11 headers missing (neither the package nor torch/include/pybind11)")
    for dist, what in (("pytest", "the tests phase"), ("tqdm", "progress lines (a stand-in is used)"),
                       ("matplotlib", "the PNG")):
        if not f[dist] and not f[f"{dist}_wheel"]:
            warn.append(f"{dist} missing and not in the wheelhouse: {what} without it")
    if not smoke and not f["compute_sanitizer"]:
        warn.append("compute-sanitizer not found: the sanitizers phase runs the cases on the CPU only")
    if min(f["disk_free_gib_work"], f["disk_free_gib_repo"]) < DISK_MIN_GIB:
        warn.append(f"only {min(f['disk_free_gib_work'], f['disk_free_gib_repo'])} GiB free (want "
                    f"{DISK_MIN_GIB}): the full-size data may not fit")
    return block, warn


def phase_preflight(p: Runner, cap: float) -> dict:
    """Seconds: every version and piece the later phases need, each missing piece named in one line
    before any build starts. A missing build piece makes the build phase a skip with that reason."""
    facts = preflight_facts(p.args.wheelhouse, p.work)
    block, warn = preflight_problems(facts, p.smoke)
    for line in block:
        p.say(f"preflight: MISSING {line}")
    for line in warn:
        p.say(f"preflight: note: {line}")
    p.preflight = {"facts": facts, "build_blockers": block, "notes": warn}
    p.say("preflight: " + ", ".join(f"{k} {v}" for k, v in facts.items()
                                    if k in ("python", "torch", "torch_cuda", "nvcc", "ninja", "setuptools",
                                             "driver", "compute_sanitizer") and v))
    out = {"status": "failed" if block else "ok", "facts": facts, "build_blockers": block, "notes": warn}
    if block:
        out["reason"] = block[0] + (f" (+{len(block) - 1} more)" if len(block) > 1 else "")
    return out


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
    blocked = (p.preflight or {}).get("build_blockers")
    if blocked and not p.smoke:
        return {"status": "skipped", "reason": "preflight: " + "; ".join(blocked)}
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

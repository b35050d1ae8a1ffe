"""Before a benchmark trains on real data (``python -m benchmarks.time_to_accuracy run``,
``python -m benchmarks.zoo --prepare``, and so ``benchmarks/time_to_accuracy.sh`` / ``zoo.sh``):
DATA checked, OUT made, ``tinyfast._C`` built in this checkout when it does not load there (CUDA
kernels too where nvcc and a CUDA torch are), and a JPEG tree packed with all cores into
``OUT/packed``. Relative paths are the current folder's, wherever the checkout is; the build's and
the pack's output go to ``OUT/build.log`` and ``OUT/pack.log``, and a failure is one line naming
the log. Standard library only: it runs before anything imports torch.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: Exit 0 when the checkout's extension loads in a fresh interpreter.
EXTENSION_CHECK = [sys.executable, "-c", "import torch, tinyfast._C"]
#: The in-place build (setup.py: CUDA kernels for the visible GPU where nvcc is, else CPU only).
BUILD = [sys.executable, "setup.py", "build_ext", "--inplace"]


class PrepareError(Exception):
    """One line for the user; ``code`` is the exit status (2: bad input, 1: a step failed)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _env() -> dict:
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep + path if path else ''}")


def _last_line(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _logged(cmd: list[str], log: Path) -> int:
    """Run ``cmd`` in the checkout, its output into ``log``; its exit status."""
    with open(log, "w") as f:
        return subprocess.run(cmd, cwd=REPO, env=_env(), stdin=subprocess.DEVNULL, stdout=f,
                              stderr=subprocess.STDOUT).returncode


def ensure_extension(out: Path) -> None:
    """Build ``tinyfast._C`` in place when it does not load; the build's output in ``out/build.log``."""
    check = subprocess.run(EXTENSION_CHECK, cwd=REPO, env=_env(), capture_output=True)
    if check.returncode == 0:
        return
    log = out / "build.log"
    print(f"building tinyfast._C in {REPO} (log {log}) ...", flush=True)
    rc = _logged(BUILD, log)
    if rc != 0:
        raise PrepareError(f"building tinyfast._C failed (exit {rc}: {_last_line(log)}; see {log})")


def packed_path(data: Path, out: Path) -> Path:
    """Where the packed dataset is (DATA itself when it has a manifest.json, else OUT/packed)."""
    data, out = Path(data).absolute(), Path(out).absolute()
    return data if (data / "manifest.json").is_file() else out / "packed"


def prepare(data: Path, out: Path) -> tuple[Path, float | None]:
    """Check DATA, make OUT, build the extension where needed, pack DATA unless it is packed.
    Returns the packed dataset's absolute path and the seconds packing took (None: already packed)."""
    data, out = Path(data).absolute(), Path(out).absolute()
    if not data.exists():
        raise PrepareError(f"{data}: no such dataset", 2)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PrepareError(f"{out}: cannot create the output folder ({e.strerror or e})", 2) from None
    ensure_extension(out)
    packed = packed_path(data, out)
    if packed == data:
        return data, None
    log = out / "pack.log"
    start = time.perf_counter()
    rc = _logged([sys.executable, "-m", "tinyfast.pack", str(data), "--out", str(packed), "--overwrite"], log)
    if rc != 0:
        raise PrepareError(f"packing {data} failed (exit {rc}: {_last_line(log)}; log {log})")
    seconds = time.perf_counter() - start
    print(f"packed {data} into {packed} in {seconds:.1f}s", flush=True)
    # A report made by a later command (seeds run on OUT/packed) still has the packing time.
    from tinyfast._util import atomic_write_text  # standard library only
    atomic_write_text(out / "pack.json", json.dumps({"data": str(data), "packed": str(packed), "seconds": seconds}) + "\n")
    return packed, seconds

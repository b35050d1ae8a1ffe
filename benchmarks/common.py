"""Shared by the benchmark scripts: environment record, timing, tables, result files.

Every result file carries the device, driver, torch/CUDA versions and git commit it was measured
with (:func:`environment`); timings are medians after warm-up, taken with CUDA events on a GPU and
``perf_counter`` after an explicit sync elsewhere (:func:`time_it`).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

# Re-exported: the benchmark scripts write their reports through these (one implementation).
from tinyfast.metrics import atomic_write_bytes, atomic_write_text  # noqa: F401

REPO = Path(__file__).resolve().parent.parent


def results_dir() -> Path:
    """Where results go by default: ``./benchmark-results`` under the current folder (never into
    the checkout unless asked with ``--out``)."""
    return Path.cwd() / "benchmark-results"


def stamp(iso_date: str | None = None) -> str:
    """``YYYY-MM-DD-HHMMSS`` (UTC) of ``iso_date`` (default: now), for result names: a rerun on
    the same day writes new files instead of replacing the earlier ones."""
    t = _dt.datetime.fromisoformat(iso_date) if iso_date else _dt.datetime.now(_dt.timezone.utc)
    return t.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d-%H%M%S")


def _run(cmd: Sequence[str]) -> str | None:
    try:
        return subprocess.run(list(cmd), cwd=REPO, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str | torch.device = "cpu") -> str:
    """Human-readable name of ``device`` (GPU name, or the CPU model)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def gpu_driver() -> str | None:
    """NVIDIA driver version, or None without nvidia-smi."""
    out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return out.splitlines()[0].strip() if out else None


def git_commit() -> dict:
    """Commit hash of the working tree and whether it has uncommitted changes (read-only git)."""
    commit = _run(["git", "rev-parse", "HEAD"])
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def environment(devices: Sequence[str] = ("cpu",)) -> dict:
    """Everything a result needs to be reproduced and compared."""
    env = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "git": git_commit(),
    }
    try:
        import torchvision

        env["torchvision"] = torchvision.__version__
    except ImportError:
        env["torchvision"] = None
    if any(torch.device(d).type == "cuda" for d in devices) and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = props.name
        env["gpu_memory_gib"] = round(props.total_memory / 2 ** 30, 1)
        env["gpu_capability"] = f"{props.major}.{props.minor}"
        env["driver"] = gpu_driver()
        env["gpu_sm_count"] = props.multi_processor_count
    from importlib import metadata

    for key, dists in (("dali", ("nvidia-dali-cuda130", "nvidia-dali-cuda120", "nvidia-dali-cuda110")),
                       ("ffcv", ("ffcv",)), ("numpy", ("numpy",)), ("pillow", ("pillow",))):
        env[f"{key}_version"] = None  # recorded as absent unless a distribution is installed
        for dist in dists:
            try:
                env[f"{key}_version"] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return env


def ceilings(device: torch.device, quick: bool) -> dict:
    """Device copy bandwidth (bytes read + written) and dense matmul throughput."""
    n = (64 if quick else (1024 if device.type == "cuda" else 256)) * 2 ** 20
    a = torch.ones(n, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    t = time_it(lambda: b.copy_(a), device, warmup=2, repeat=3 if quick else 10)["median"]
    copy_gbs = 2 * n / t / 1e9
    del a, b
    mm_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    k = 512 if quick else (8192 if device.type == "cuda" else 2048)
    x = torch.randn(k, k, device=device, dtype=mm_dtype)
    y = torch.randn(k, k, device=device, dtype=mm_dtype)
    t = time_it(lambda: x @ y, device, warmup=2, repeat=3 if quick else 10)["median"]
    return {"copy_gb_per_s": copy_gbs, "copy_bytes": 2 * n, "matmul_tflop_per_s": 2 * k ** 3 / t / 1e12,
            "matmul_dtype": str(mm_dtype).replace("torch.", ""), "matmul_n": k}



def has_module(module: str) -> bool:
    """Whether ``module`` can be imported here (without importing it)."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def skip_reason(exc: BaseException) -> str:
    """The first line of an exception, as a skipped row's reason."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def sync(device: str | torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU), so a host clock reading counts it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn: Callable[[], object], device: str | torch.device = "cpu", *, warmup: int = 3,
            repeat: int = 10, inner: int = 1) -> dict:
    """Time ``fn``: ``warmup`` untimed calls, then ``repeat`` timed runs of ``inner`` calls each.

    GPU runs are timed with CUDA events around the ``inner`` calls (no host sync inside); CPU runs
    with ``perf_counter``. Returns seconds *per call*: ``median``, ``min``, ``max`` and ``runs``.
    """
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    sync(device)
    runs = []
    for _ in range(repeat):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()
            runs.append(start.elapsed_time(end) / 1e3 / inner)
        else:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            runs.append((time.perf_counter() - t0) / inner)
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "runs": runs}


def slug(text: str) -> str:
    """``text`` as a lower-case file-name fragment (``[a-z0-9-]``, at most 48 characters)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "device"


def default_result_path(name: str, device: str | torch.device = "cpu", ext: str = "json") -> Path:
    """``<results_dir()>/<device>-<date>-<time>-<name>.<ext>`` (see :func:`stamp`)."""
    return results_dir() / f"{slug(device_name(device))}-{stamp()}-{name}.{ext}"


def write_json(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` as indented JSON, atomically (temp file + rename); returns the path."""
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return Path(path)


def format_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> str:
    """Markdown table. ``columns``: (key, header, format spec such as ``",.0f"`` or ``""``)."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, rule]
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            v = row.get(key)
            if v is None:
                cells.append("")
            elif fmt and isinstance(v, (int, float)):
                cells.append(format(v, fmt))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

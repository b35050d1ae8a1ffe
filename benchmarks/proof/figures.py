"""The GPU proof's figure phases: full-size data, then the op, the loaders, host syncs and training,
each measured by ``python -m benchmarks`` or ``benchmarks.proof.steps`` in its own capped process."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time

from benchmarks.proof.runner import Runner, from_run, rows_of


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
    cmd = [sys.executable, "-m", "benchmarks.proof.steps", "loaders", "--data", str(p.data), "--device", p.device]
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
    cmd = [sys.executable, "-m", "benchmarks.proof.steps", "syncs", "--data", str(p.data), "--device", p.device]
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

"""The manifest of a finished pack, written last, and the summary printed from it."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from tinyfast.data import FORMAT_NAME, FORMAT_VERSION, MANIFEST
from tinyfast.pack.plan import Plan, Skips

RESIZE_FILTER = "center crop to square, then PIL.Image.Resampling.BICUBIC to size x size"


def build_manifest(src: Path, plan: Plan, skips: Skips, split_meta, stats, hashes, size, source_info,
                    options) -> dict:
    from tinyfast import __version__

    by_reason = {}
    for s in skips.items:
        by_reason[s["reason"]] = by_reason.get(s["reason"], 0) + 1
    resized = [str(Path(p).relative_to(src).as_posix()) for p in stats["resized"]]
    mean, std = stats["mean_std"]
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "tinyfast": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": dict({"path": str(src), "layout": plan.layout}, **(source_info or {})),
        "size": size,
        "resize": RESIZE_FILTER,
        "options": options,
        "classes": [{"wnid": c, "words": w} for c, w in zip(plan.classes, plan.words)],
        "splits": split_meta,
        "mean": mean,
        "std": std,
        "converted_to_rgb": dict(sorted(stats["modes"].items())),
        "resized": {"count": len(resized), "examples": resized[:50]},
        "jpeg_reencoded": stats["reencoded"],
        "skipped_count": by_reason,
        "skipped": skips.items,
        "notes": plan.notes,
        "files": hashes,
    }


def write_json(path: Path, obj) -> None:
    # No temp file + rename here: ``path`` is inside the private temporary directory, which
    # install renames into place only once everything in it is complete. fsync so that the
    # manifest, written last, is on disk before that rename.
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def summary(man: dict, out: Path, seconds: float, workers: int, timings: dict, log) -> None:
    n = sum(s["count"] for s in man["splits"].values())
    counts = "  ".join(f"{k} {v['count']}" for k, v in man["splits"].items())
    log(f"packed {man['source']['path']} -> {out}: {n} images in {seconds:.1f} s "
        f"({n / max(seconds, 1e-9):.0f} img/s overall, {workers} worker{'' if workers == 1 else 's'})")
    log(f"  classes {len(man['classes'])}  {counts}  size {man['size']}x{man['size']}")
    conv = ", ".join(f"{k} {v}" for k, v in man["converted_to_rgb"].items()) or "none"
    log(f"  converted to RGB: {conv}; resized: {man['resized']['count']}")
    sk = man["skipped_count"]
    if sk:
        log(f"  skipped {sum(sk.values())}: " + "; ".join(f"{v} {k}" for k, v in sk.items())
            + f" (listed in {out / MANIFEST})")
    else:
        log("  skipped: none")
    if man["jpeg_reencoded"]:
        log(f"  jpeg shards: {man['jpeg_reencoded']} images re-encoded (not plain RGB/gray JPEG of the packed size)")
    log("  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if v >= 0.05 or k == "decode"))
    total = sum(f["bytes"] for f in man["files"].values())
    log(f"  output {fmt_bytes(total)} in {len(man['files'])} files; mean "
        + " ".join(f"{v:.4f}" for v in man["mean"]) + "  std " + " ".join(f"{v:.4f}" for v in man["std"]))


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024

"""Section a of ``tinyfast-bench``: images/s of every registered loader with training augmentation.

The ``torch`` DataLoader baseline is swept over worker counts (0 to the core count); ``dali`` is
measured from the packed pixels and from the JPEG shards; a loader that cannot run on the data is
a row with the reason. Warm-up, then the median of runs (``tinyfast.loaders.throughput``).
"""
from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.common import skip_reason

def loader_variants(name: str, device: torch.device) -> list[tuple[dict, str]]:
    """The rows of one loader: ``(build kwargs, what it reads)``; ``dali`` is measured both from the
    packed pixels and from the JPEG shards (decoded by nvJPEG on a GPU)."""
    if name == "dali":
        jpeg = "JPEG shards, nvJPEG" if device.type == "cuda" else "JPEG shards"
        return [({"source": "pixels"}, "packed .npy"), ({"source": "jpeg"}, jpeg)]
    reads = {"torch": "JPEG tree", "torch-npy": "packed .npy", "gpu": "packed .npy, resident",
             "dali-native": "packed .npy", "ffcv": ".beton"}
    return [({}, reads.get(name, ""))]


def section(data: Path, device: torch.device, names: list[str], args) -> list[dict]:
    """Section a: one row per loader and input (the ``torch`` baseline once per worker count),
    measured or skipped with the reason; measured rows also get their speed-up over the best
    baseline row."""
    from tinyfast import loaders
    from tinyfast._util import cpu_count

    cores = cpu_count()
    sweep = sorted({0, 1, cores} if args.quick else set(range(0, cores + 1)))
    rows = []
    for name in names:
        for kw, reads in loader_variants(name, device):
            for w in (sweep if name == "torch" else [None]):
                row = {"loader": name, "input": reads, "workers": w, "device": str(device),
                       "batch_size": args.batch_size, **kw}
                try:
                    r = loaders.throughput(name, data, "train", args.batch_size, device, policy="default",
                                           batches=args.batches, warmup=2 if args.quick else 5,
                                           runs=args.runs, num_workers=w, show_progress=True, **kw)
                    row.update(images_per_sec=r["images_per_sec"], runs=r["runs"], dtype=r["dtype"],
                               seconds_build=r["seconds_build"])
                except (ImportError, ValueError, RuntimeError, OSError) as exc:
                    row["skipped"] = skip_reason(exc)
                rows.append(row)
                print(_fmt_loader(row), flush=True)
    base = [r for r in rows if r["loader"] == "torch" and "images_per_sec" in r]
    if base:
        best = max(r["images_per_sec"] for r in base)
        for r in rows:
            if "images_per_sec" in r:
                r["speedup_vs_torch_best"] = r["images_per_sec"] / best
    return rows


def _fmt_loader(r: dict) -> str:
    w = "-" if r.get("workers") is None else r["workers"]
    what = f"{r['loader']} ({r['input']})" if r.get("input") else r["loader"]
    if "skipped" in r:
        return f"  loader {what:<34} workers {w!s:>3}: skipped ({r['skipped']})"
    return f"  loader {what:<34} workers {w!s:>3}: {r['images_per_sec']:>12,.0f} images/s"

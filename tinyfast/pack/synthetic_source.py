"""Source: the built-in synthetic set (:mod:`tinyfast.synthetic`), generated and then packed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tinyfast.data import PackError, read_manifest
from tinyfast.pack.output import check_out, temp_sibling
from tinyfast.pack.pipeline import pack


def pack_synthetic(out, classes: int = 200, per_class: int = 500, val_per_class: int = 50,
                   test_count: int | None = None, size: int = 64, seed: int = 0, tree=None,
                   exist_ok: bool = False, overwrite: bool = False, progress: bool = True,
                   workers: int | None = None, log=print, **pack_kw) -> dict:
    """Generate the synthetic Tiny-ImageNet-shaped JPEG tree and pack it into ``out``.

    The tree is written to ``tree`` (kept) or to a temporary sibling of ``out`` (deleted).
    """
    from tinyfast import synthetic

    # Checked before anything is generated: bad sizes would otherwise fail deep in the renderer.
    for name, value, least in (("--classes", classes, 1), ("--per-class", per_class, 1),
                               ("--val-per-class", val_per_class, 0), ("--size", size, 1),
                               ("--test-count", 0 if test_count is None else test_count, 0)):
        if value < least:
            raise PackError(f"{name} must be >= {least}, got {value}")
    out = Path(out).absolute()
    if check_out(out, overwrite, exist_ok):
        return read_manifest(out)
    work = None
    if tree is None:
        work = temp_sibling(out, "synth")
        tree = work / "tiny-synthetic"
    else:
        tree = Path(tree)
        if tree.exists() and any(tree.iterdir()):
            raise PackError(f"{tree}: --tree exists and is not empty")
    try:
        t0 = time.time()
        synthetic.write_tree(tree, classes=classes, per_class=per_class, val_per_class=val_per_class,
                             test_count=test_count, size=size, seed=seed, workers=workers, progress=progress)
        if log:
            log(f"synthetic tree ({classes} classes x {per_class} + {val_per_class} val) written in "
                f"{time.time() - t0:.1f} s")
        info = {"layout": "synthetic", "synthetic": dict(classes=classes, per_class=per_class,
                val_per_class=val_per_class, test_count=test_count, size=size, seed=seed)}
        if work is not None:
            info["path"] = "synthetic (generated, not kept)"
        return pack(tree, out, size=size, seed=seed, exist_ok=exist_ok, overwrite=overwrite,
                    progress=progress, workers=workers, source_info=info, log=log, **pack_kw)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)

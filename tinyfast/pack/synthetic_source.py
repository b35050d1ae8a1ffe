"""Source: the built-in synthetic set (:mod:`tinyfast.synthetic`), generated and then packed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tinyfast.data import PackError, read_manifest
from tinyfast.pack.output import check_out, os_error, temp_sibling
from tinyfast.pack.pipeline import pack

TREE_NAME = "jpeg-tree"  # where keep_tree puts the generated JPEG tree inside the dataset


def pack_synthetic(out, classes: int = 200, per_class: int = 500, val_per_class: int = 50,
                   test_count: int | None = None, size: int = 64, seed: int = 0, tree=None,
                   exist_ok: bool = False, overwrite: bool = False, progress: bool = True,
                   workers: int | None = None, log=print, keep_tree: bool = False,
                   source_extra: dict | None = None, **pack_kw) -> dict:
    """Generate the synthetic Tiny-ImageNet-shaped JPEG tree and pack it into ``out``.

    The tree is written to ``tree`` (kept there), or to a temporary sibling of ``out``: deleted,
    or with ``keep_tree`` moved into the dataset as ``out/jpeg-tree`` (its recorded source, so
    the JPEG loaders find it). ``source_extra`` is added to the manifest's ``source`` record.
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
        if tree.exists() and not tree.is_dir():
            raise PackError(f"{tree}: --tree exists and is not a directory")
        if tree.exists() and any(tree.iterdir()):
            raise PackError(f"{tree}: --tree exists and is not empty")
    try:
        t0 = time.time()
        try:
            synthetic.write_tree(tree, classes=classes, per_class=per_class, val_per_class=val_per_class,
                                 test_count=test_count, size=size, seed=seed, workers=workers,
                                 progress=progress)
        except OSError as e:
            n = classes * (per_class + val_per_class) + (test_count or classes * val_per_class)
            folder = out.parent if work is not None else tree.parent
            raise os_error(e, folder, n * (size * size * 3 + 4096)) from None
        if log:
            log(f"synthetic tree ({classes} classes x {per_class} + {val_per_class} val) written in "
                f"{time.time() - t0:.1f} s")
        info = dict({"layout": "synthetic", "synthetic": dict(classes=classes, per_class=per_class,
                     val_per_class=val_per_class, test_count=test_count, size=size, seed=seed)},
                    **(source_extra or {}))
        if work is not None and not keep_tree:
            info["path"] = "synthetic (generated, not kept)"
        keep = TREE_NAME if work is not None and keep_tree else None
        return pack(tree, out, size=size, seed=seed, exist_ok=exist_ok, overwrite=overwrite,
                    progress=progress, workers=workers, source_info=info, log=log, keep_source_as=keep,
                    **pack_kw)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)

"""The default data set: the built-in synthetic set, packed on first use, for every loader.

Sits above both :mod:`tinyfast.data` (the packed format) and :mod:`tinyfast.pack` (the writer),
so neither imports the other. The default set keeps what each loader reads: the packed arrays
(``torch-npy``, ``gpu``, ``dali``), the JPEG tree (``torch``: ``DIR/jpeg-tree``), WebDataset
shards (``dali`` from JPEG) and, when FFCV imports, the ``.beton`` files (``ffcv``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tinyfast._util import atomic_write_text, torch_threads_kept
from tinyfast.data import MANIFEST, PackError, is_packed, read_manifest
from tinyfast.pack import pack_synthetic
from tinyfast.pack.synthetic_source import TREE_NAME

# Quick (CPU) and full (GPU) sizes of the built-in synthetic data set.
QUICK_SYNTHETIC = dict(classes=10, per_class=100, val_per_class=20, test_count=100, size=64, seed=0)
FULL_SYNTHETIC = dict(classes=200, per_class=500, val_per_class=50, test_count=10000, size=64, seed=0)


def default_data_dir() -> Path:
    """Where the default data lives: ``$TINYFAST_DATA`` if set, else ``./data/synthetic``."""
    env = os.environ.get("TINYFAST_DATA")
    return Path(env) if env else Path("data") / "synthetic"


def ensure_default_data(path: str | os.PathLike | None = None, quick: bool | None = None,
                        log=print) -> Path:
    """Return a directory holding a packed dataset, packing the built-in synthetic set if needed.

    Args:
        path: target directory (default :func:`default_data_dir`). If it already holds a valid
            packed dataset, it is used: any real dataset as is; a synthetic default set made by
            an older version without the JPEG tree, shards or ``.beton`` is re-made.
        quick: small sizes (``QUICK_SYNTHETIC``: 10 classes x 100 train + 20 val, 100 test, 64x64)
            instead of the full ones (``FULL_SYNTHETIC``: 200 classes x 500 + 50 val, 10000 test).
            ``None`` means quick when CUDA is unavailable.
        log: where the one line saying that an incomplete set is re-made goes (None: nowhere).

    Safe to call from several processes at once: each builds in a private temporary sibling and
    renames it into place; a process that finds the target already made by another uses it.
    """
    path = Path(path) if path is not None else default_data_dir()
    remake = False
    if is_packed(path):
        man = read_manifest(path)
        missing = _missing_parts(path, man)
        if not missing or not _is_synthetic(man):
            return path
        if log:
            log(f"{path}: the default data lacks {', '.join(missing)} (made by an older tinyfast): re-making it")
        remake = True
    elif path.exists() and path.is_dir() and any(path.iterdir()):
        raise PackError(f"{path}: exists and is not a packed dataset; move it away or set TINYFAST_DATA")
    if quick is None:
        quick = not _cuda_available()
    cfg = dict(QUICK_SYNTHETIC if quick else FULL_SYNTHETIC)
    why_not = _ffcv_missing()
    pack_synthetic(path, **cfg, exist_ok=not remake, overwrite=remake, jpeg_shards=True, ffcv=why_not is None,
                   keep_tree=True, source_extra={"ffcv_unavailable": why_not} if why_not else None,
                   progress=True, log=log)
    return path


def _is_synthetic(man: dict) -> bool:
    src = man.get("source")
    return isinstance(src, dict) and src.get("layout") == "synthetic"


def _missing_parts(path: Path, man: dict) -> list:
    """What of the default set's parts ``path`` lacks; a tree that moved with its folder is re-pointed."""
    src = man.get("source") if isinstance(man.get("source"), dict) else {}
    splits = man["splits"].values()
    missing = []
    tree = (path / TREE_NAME).absolute()
    if not tree.is_dir():
        missing.append("the JPEG tree")
    elif src.get("path") != str(tree):
        _repoint_tree(path, man, tree)
    if not all(s.get("jpeg_shards") for s in splits):
        missing.append("WebDataset shards")
    if not all(s.get("beton") for s in splits) and not src.get("ffcv_unavailable") and _ffcv_missing() is None:
        missing.append("FFCV .beton files")
    return missing


def _repoint_tree(path: Path, man: dict, tree: Path) -> None:
    """Record the kept tree's new place after the dataset folder was moved (manifest replaced atomically)."""
    man = dict(man, source=dict(man.get("source") or {}, path=str(tree)))
    try:
        atomic_write_text(path / MANIFEST, json.dumps(man, indent=1) + "\n")
    except OSError:  # a read-only copy: the torch loader's jpeg_root argument still reaches the tree
        pass


def _ffcv_missing() -> str | None:
    """None when FFCV's writer imports, else why not (one line)."""
    try:
        with torch_threads_kept():
            from ffcv.writer import DatasetWriter  # noqa: F401
    except Exception as e:  # an FFCV build can fail at import with more than ImportError
        return f"{e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
    return None


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())

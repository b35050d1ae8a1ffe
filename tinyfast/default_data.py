"""The default data set: the built-in synthetic set, packed on first use.

Sits above both :mod:`tinyfast.data` (the packed format) and :mod:`tinyfast.pack` (the writer),
so neither imports the other.
"""

from __future__ import annotations

import os
from pathlib import Path

from tinyfast.data import PackError, is_packed
from tinyfast.pack import pack_synthetic

# Quick (CPU) and full (GPU) sizes of the built-in synthetic data set.
QUICK_SYNTHETIC = dict(classes=10, per_class=100, val_per_class=20, test_count=100, size=64, seed=0)
FULL_SYNTHETIC = dict(classes=200, per_class=500, val_per_class=50, test_count=10000, size=64, seed=0)


def default_data_dir() -> Path:
    """Where the default data lives: ``$TINYFAST_DATA`` if set, else ``./data/synthetic``."""
    env = os.environ.get("TINYFAST_DATA")
    return Path(env) if env else Path("data") / "synthetic"


def ensure_default_data(path: str | os.PathLike | None = None, quick: bool | None = None) -> Path:
    """Return a directory holding a packed dataset, packing the built-in synthetic set if needed.

    Args:
        path: target directory (default :func:`default_data_dir`). If it already holds a valid
            packed dataset (any: real Tiny ImageNet packed there is used as is), nothing is done.
        quick: small sizes (``QUICK_SYNTHETIC``: 10 classes x 100 train + 20 val, 100 test, 64x64)
            instead of the full ones (``FULL_SYNTHETIC``: 200 classes x 500 + 50 val, 10000 test).
            ``None`` means quick when CUDA is unavailable.

    Safe to call from several processes at once: each builds in a private temporary sibling and
    renames it into place; a process that finds the target already made by another uses it.
    """
    path = Path(path) if path is not None else default_data_dir()
    if is_packed(path):
        return path
    if path.exists() and path.is_dir() and any(path.iterdir()):
        raise PackError(f"{path}: exists and is not a packed dataset; move it away or set TINYFAST_DATA")
    if quick is None:
        quick = not _cuda_available()
    cfg = dict(QUICK_SYNTHETIC if quick else FULL_SYNTHETIC)
    pack_synthetic(path, **cfg, exist_ok=True)
    return path


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())

"""Loaders with one contract, behind a registry.

>>> loader = build("gpu", "data/synthetic", "train", batch_size=256, device="cuda")
>>> for epoch in range(epochs):
...     loader.set_epoch(epoch)
...     for images, labels in loader: ...

Every loader yields ``(images, labels)`` on ``device``: images ``(B, 3, H, W)`` channels-last in
``dtype``, augmented by ``policy`` then normalised with the dataset's mean/std for training, only
normalised for evaluation; labels int64 (``-1`` for the unlabelled test split). They expose
``len()``, ``set_epoch(e)``, ``state_dict()`` / ``load_state_dict()`` (exact mid-epoch resume), DDP
sharding by ``rank`` / ``world_size`` and the attributes ``num_classes``, ``num_samples`` (this
rank's), ``batch_size``, ``mean``, ``std``. Order, sharding and resume rules:
:mod:`tinyfast.loaders.base`.

Registered loaders (``list_loaders()``):

* ``torch`` -- the baseline: a torchvision dataset over the original JPEG tree, torchvision
  transforms v2 in ``DataLoader`` workers, pinned memory, copied to the device.
  ``torch-npy`` -- the same over the packed ``.npy`` (no JPEG decoding).
* ``gpu`` -- the split resident on the device as uint8, one fused ``tinyfast.ops.augment`` call per
  batch (gather included).
* ``dali`` / ``dali-native`` -- NVIDIA DALI pipelines feeding the fused op, or using DALI's own
  operators (extra ``tinyfast[dali]``).
* ``ffcv`` -- FFCV's ``Loader`` over the ``.beton`` feeding the fused op (extra ``tinyfast[ffcv]``).

Third-party loaders import their libraries only when built.
"""

from __future__ import annotations

import importlib
import statistics
import time
from typing import Callable

import torch

_REGISTRY: dict[str, Callable] = {}
# name -> module that registers it; imported on first use so that DALI/FFCV are only imported
# when asked for (their modules import the libraries lazily too).
_BUILTIN = {
    "torch": "tinyfast.loaders.torch_loader",
    "torch-npy": "tinyfast.loaders.torch_loader",
    "gpu": "tinyfast.loaders.gpu",
    "dali": "tinyfast.loaders.dali",
    "dali-native": "tinyfast.loaders.dali",
    "ffcv": "tinyfast.loaders.ffcv_loader",
}

__all__ = ["register", "list_loaders", "build", "throughput", "main"]


def register(name: str):
    """Class/function decorator adding a loader factory under ``name``.

    The factory is called as ``factory(data_dir, split, batch_size, device=..., policy=..., ...)``
    with :func:`build`'s arguments. Registering a name twice raises ``ValueError``.
    """
    def deco(factory):
        if name in _REGISTRY:
            raise ValueError(f"loader {name!r} is already registered (by {_REGISTRY[name]!r})")
        _REGISTRY[name] = factory
        return factory
    return deco


def _load_builtins() -> None:
    for module in dict.fromkeys(_BUILTIN.values()):
        importlib.import_module(module)


def list_loaders() -> list[str]:
    """Names of the registered loaders (built-ins first, then any registered later)."""
    _load_builtins()
    return sorted(_REGISTRY, key=lambda n: (list(_BUILTIN).index(n) if n in _BUILTIN else len(_BUILTIN), n))


def build(name: str, data_dir, split: str, batch_size: int, device="cpu", policy=None, seed: int = 0,
          rank: int = 0, world_size: int = 1, drop_last: bool | None = None,
          dtype: torch.dtype | None = None, train: bool | None = None,
          num_workers: int | None = None, **kw):
    """Build the loader ``name`` over one split of a packed dataset.

    Args:
        name: one of :func:`list_loaders`.
        data_dir: a packed dataset directory (``python -m tinyfast.pack``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        batch_size: samples per batch (per rank).
        device: ``"cpu"`` or ``"cuda[:i]"``: where the batches are delivered.
        policy: a :class:`tinyfast.augment.Policy` or preset name (``None`` = identity); used only
            when training.
        seed: seeds the shuffle and the augmentation parameters (see :mod:`tinyfast.loaders.base`).
        rank, world_size: DDP shard of this process.
        drop_last: drop the incomplete last batch (default: ``train``).
        dtype: float16, bfloat16 or float32 images. Default: float32 (what a plain model
            expects, on any device), or the autocast dtype when ``build`` is called inside an
            enabled ``torch.autocast`` for the device type. Pass the autocast dtype explicitly
            (``dtype=torch.bfloat16``) to halve the bytes of every batch when training with AMP.
        train: shuffle + augment + drop_last (default: ``split == "train"``); otherwise plain
            normalisation in the packed order.
        num_workers: worker processes/threads where the loader has any (default: CPU cores).
        **kw: loader-specific options (see each loader's class).

    Raises:
        ValueError: unknown ``name`` (the message lists the choices) or bad arguments.
        tinyfast.data.PackError: missing, truncated or malformed data (one line naming the file).
        ImportError: an optional library is missing (the message names the extra to install).
    """
    if name not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _REGISTRY:
        raise ValueError(f"unknown loader {name!r}; choose one of: {', '.join(list_loaders())}")
    return _REGISTRY[name](data_dir, split, batch_size, device=device, policy=policy, seed=seed,
                           rank=rank, world_size=world_size, drop_last=drop_last, dtype=dtype,
                           train=train, num_workers=num_workers, **kw)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(name: str, data_dir, split: str = "train", batch_size: int = 256, device="cpu", *,
               policy="default", batches: int = 50, warmup: int = 5, runs: int = 3,
               **kw) -> dict:
    """Images/second delivered by a loader (augmented batches on ``device``), median of ``runs``.

    Each run times ``batches`` batches (wrapping over epochs) after ``warmup`` untimed ones, with a
    device synchronisation before reading the clock, so asynchronous work is counted.

    Returns:
        ``{"loader", "images_per_sec" (median), "runs" (images/sec of each run), "batch_size",
        "batches", "device", "seconds_build"}``.
    """
    t0 = time.perf_counter()
    loader = build(name, data_dir, split, batch_size, device=device, policy=policy, **kw)
    seconds_build = time.perf_counter() - t0
    dev = loader.device
    state = {"epoch": 0, "it": None}

    def next_batch():
        while True:
            if state["it"] is None:
                loader.set_epoch(state["epoch"])
                state["epoch"] += 1
                state["it"] = iter(loader)
            try:
                return next(state["it"])
            except StopIteration:
                state["it"] = None

    try:
        for _ in range(warmup):
            next_batch()
        _sync(dev)
        rates = []
        for _ in range(runs):
            n = 0
            t0 = time.perf_counter()
            for _ in range(batches):
                images, _labels = next_batch()
                n += images.shape[0]
            _sync(dev)
            rates.append(n / (time.perf_counter() - t0))
    finally:
        # Stop worker processes/threads now: left running they would slow the next measurement.
        state["it"] = None
        loader.close()
    return {"loader": name, "images_per_sec": statistics.median(rates), "runs": rates,
            "batch_size": batch_size, "batches": batches, "device": str(dev),
            "seconds_build": seconds_build}


def main(argv=None) -> int:
    """``python -m tinyfast.loaders --bench [--data DIR] [--loaders a,b] ...``: images/sec table."""
    import argparse
    import sys

    from tinyfast.data import PackError, ensure_default_data

    p = argparse.ArgumentParser(prog="python -m tinyfast.loaders", description=main.__doc__)
    p.add_argument("--bench", action="store_true", help="measure images/sec of each loader")
    p.add_argument("--list", action="store_true", help="print the registered loaders")
    p.add_argument("--data", default=None, help="packed dataset (default: the built-in synthetic set)")
    p.add_argument("--split", default="train")
    p.add_argument("--loaders", default=None, help="comma-separated names (default: all)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--policy", default="default")
    p.add_argument("--workers", default=None,
                   help="comma-separated worker counts to sweep for loaders with workers (default: cores)")
    args = p.parse_args(argv)
    if args.list or not args.bench:
        print("\n".join(list_loaders()))
        return 0
    try:
        data = args.data or ensure_default_data()
    except PackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    names = args.loaders.split(",") if args.loaders else list_loaders()
    workers = [int(w) for w in args.workers.split(",")] if args.workers else [None]
    print(f"{'loader':<14}{'workers':>8}{'images/s':>12}   (device {args.device}, batch {args.batch_size})")
    for name in names:
        for w in (workers if name.startswith(("torch", "ffcv", "dali")) else [None]):
            try:
                r = throughput(name, data, args.split, args.batch_size, args.device, policy=args.policy,
                               batches=args.batches, warmup=args.warmup, runs=args.runs, num_workers=w)
            except (ImportError, PackError, ValueError, RuntimeError) as e:
                print(f"{name:<14}{'':>8}{'skipped':>12}   {str(e).splitlines()[0]}")
                continue
            print(f"{name:<14}{'-' if w is None else w:>8}{r['images_per_sec']:>12.0f}")
    return 0

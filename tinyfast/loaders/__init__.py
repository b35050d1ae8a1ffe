"""Loaders with one contract, behind a registry.

>>> loader = build("gpu", "data/synthetic", "train", batch_size=256, device="cuda")
>>> for epoch in range(epochs):
...     loader.set_epoch(epoch)
...     for images, labels in loader: ...

Every loader yields ``(images, labels)`` on ``device``: images ``(B, 3, H, W)`` channels-last in
``dtype``, augmented by ``policy`` then normalised with the dataset's mean/std for training, only
normalised for evaluation; labels int64 (``-1`` for the unlabelled test split). They expose
``len()``, ``set_epoch(e)``, ``state_dict()`` / ``load_state_dict()`` (exact mid-epoch resume), DDP
sharding by ``rank`` / ``world_size`` and the attributes ``num_classes``, ``classes``
(``ClassName(wnid, words)`` per label) and ``class_to_idx`` (as on torchvision datasets),
``num_samples`` (this rank's), ``batch_size``, ``mean``, ``std``. Images are float32 unless
``dtype`` says otherwise (or ``build`` runs inside ``torch.autocast``: then its dtype). Order,
sharding and resume rules (the state is always what comes next): :mod:`tinyfast.loaders.base`.

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

__all__ = ["register", "list_loaders", "build", "throughput", "unavailable", "fused_op_missing", "library_missing",
           "main"]
# name -> (one line on what it reads, check(device) -> None or why it cannot run there)
_INFO: dict[str, tuple[str, Callable | None]] = {}


def register(name: str, about: str = "", check: Callable[[torch.device], str | None] | None = None):
    """Class/function decorator adding a loader factory under ``name``.

    The factory is called as ``factory(data_dir, split, batch_size, device=..., policy=..., ...)``
    with :func:`build`'s arguments. Registering a name twice raises ``ValueError``. ``about``: one
    line for ``--list``; ``check(device)``: ``None`` when the loader can run on that device in this
    environment, else why not, in one line (see :func:`unavailable`).
    """
    def deco(factory):
        if name in _REGISTRY:
            raise ValueError(f"loader {name!r} is already registered (by {_REGISTRY[name]!r})")
        _REGISTRY[name] = factory
        _INFO[name] = (about, check)
        return factory
    return deco


def fused_op_missing(device: torch.device) -> str | None:
    """Why ``tinyfast.ops.augment`` cannot run on ``device`` here (``None`` when it can)."""
    from tinyfast import ops
    if not ops.is_built():
        return "the fused op (tinyfast._C) is not built: ./install.sh builds it"
    if device.type not in ops.compiled_backends():
        return f"tinyfast._C has no {device.type.upper()} kernels (it was built without nvcc)"
    return None


def library_missing(import_library: Callable[[], object], device: torch.device, fused_op: bool = True) -> str | None:
    """Why a loader over a library cannot run on ``device`` here: ``import_library()``'s
    ``ImportError``, else (``fused_op``) :func:`fused_op_missing`; ``None`` when it can."""
    try:
        import_library()
    except ImportError as e:
        return str(e)
    return fused_op_missing(device) if fused_op else None


def unavailable(name: str, device="cpu") -> str | None:
    """Why loader ``name`` cannot run on ``device`` in this environment (a library or a kernel
    missing), or ``None`` when it can; its data is not looked at."""
    if name not in list_loaders():
        raise ValueError(f"unknown loader {name!r}; choose one of: {', '.join(list_loaders())}")
    check = _INFO.get(name, ("", None))[1]
    return check(torch.device(device)) if check is not None else None


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
          num_workers: int | None = None, phases=None, **kw):
    """Build the loader ``name`` over one split of a packed dataset.

    Args:
        name: one of :func:`list_loaders`.
        data_dir: a packed dataset directory (``python -m tinyfast.pack``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        batch_size: samples per batch (per rank).
        device: ``"cpu"`` or ``"cuda[:i]"``: where the batches are delivered.
        policy: a :class:`tinyfast.augment.Policy` or preset name (``None`` = identity); used only
            when training. Several (a sequence, or names joined by ``+``: ``"hflip-crop56+skoltech2"``)
            make each epoch one pass of the split per set (:mod:`tinyfast.loaders.sets`).
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
        phases: ``[(epochs, batch_size, policy), ...]``: each phase of epochs with its own batch size
            (per rank) and policy, overriding ``batch_size`` and ``policy`` (:mod:`tinyfast.loaders.phased`).
        **kw: ``normalize`` (``"channel"``, the default, or ``"mean-image"``); ``normalization``
            (a loader's ``normalization_state()``, e.g. a checkpoint's ``"normalization"``: that
            mean/std and mean image instead of the data's own); loader-specific options (see each
            loader's class).

    Raises:
        ValueError: unknown ``name`` (the message lists the choices) or bad arguments.
        tinyfast.data.PackError: missing, truncated or malformed data (one line naming the file).
        ImportError: an optional library is missing (the message names the extra to install).
    """
    if name not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _REGISTRY:
        raise ValueError(f"unknown loader {name!r}; choose one of: {', '.join(list_loaders())}")
    from .sets import SetsLoader, set_seed, split_policies
    if phases is not None:
        from .phased import PhasedLoader
        return PhasedLoader(lambda bs, p: build(name, data_dir, split, bs, device=device, policy=p, seed=seed, rank=rank,
                                                world_size=world_size, drop_last=drop_last, dtype=dtype, train=train,
                                                num_workers=num_workers, **kw), phases)
    policies = split_policies(policy)
    if not (split == "train" if train is None else train):
        policies = policies[:1]  # evaluation: plain normalisation, one pass

    def one(i: int, p):
        return _REGISTRY[name](data_dir, split, batch_size, device=device, policy=p, seed=set_seed(seed, i),
                               rank=rank, world_size=world_size, drop_last=drop_last, dtype=dtype,
                               train=train, num_workers=num_workers, **kw)
    if len(policies) == 1:
        return one(0, policies[0])
    return SetsLoader([one(i, p) for i, p in enumerate(policies)])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Batches:
    """Endless batches of a loader, wrapping over epochs (``set_epoch`` 0, 1, 2, ...)."""

    def __init__(self, loader):
        self.loader, self.epoch, self.it = loader, 0, None

    def __next__(self):
        while True:
            if self.it is None:
                self.loader.set_epoch(self.epoch)
                self.epoch += 1
                self.it = iter(self.loader)
            try:
                return next(self.it)
            except StopIteration:
                self.it = None


def throughput(name: str, data_dir, split: str = "train", batch_size: int = 256, device="cpu", *,
               policy="default", batches: int = 50, warmup: int = 5, runs: int = 3,
               dtype: torch.dtype = torch.float16, show_progress: bool = False, **kw) -> dict:
    """Images/second delivered by a loader (augmented batches on ``device``), median of ``runs``.

    Each run times ``batches`` batches (wrapping over epochs) after ``warmup`` untimed ones, with a
    device synchronisation before reading the clock, so asynchronous work is counted. ``dtype``
    defaults to float16, the bytes of a batch fed to an AMP model. ``show_progress``: a
    :mod:`tinyfast.progress` bar (or timed lines in a log) over the batches.

    Returns:
        ``{"loader", "images_per_sec" (median), "runs" (images/sec of each run), "batch_size",
        "batches", "device", "dtype", "seconds_build"}``.
    """
    from tinyfast.progress import progress

    t0 = time.perf_counter()
    loader = build(name, data_dir, split, batch_size, device=device, policy=policy, dtype=dtype, **kw)
    seconds_build = time.perf_counter() - t0
    dev = loader.device
    source = _Batches(loader)
    bar = progress(total=warmup + runs * batches, desc=f"  {name}", unit="batch", disable=not show_progress)
    try:
        for _ in range(warmup):
            next(source)
            bar.update(1)
        _sync(dev)
        rates = []
        for _ in range(runs):
            n = 0
            t0 = time.perf_counter()
            for _ in range(batches):
                images, _labels = next(source)
                n += images.shape[0]
                bar.update(1)
            _sync(dev)
            rates.append(n / (time.perf_counter() - t0))
    finally:
        bar.close()
        # Stop worker processes/threads now: left running they would slow the next measurement.
        source.it = None
        loader.close()
    return {"loader": name, "images_per_sec": statistics.median(rates), "runs": rates,
            "batch_size": batch_size, "batches": batches, "device": str(dev),
            "dtype": str(dtype).replace("torch.", ""), "seconds_build": seconds_build}


# ----- python -m tinyfast.loaders -------------------------------------------------------------------
_HAS_WORKERS = ("torch", "torch-npy", "dali", "dali-native", "ffcv")
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def _count(minimum: int):
    from tinyfast._util import number
    return number(int, lo=minimum)


def _counts(text: str) -> list[int]:
    return [_count(0)(w.strip()) for w in text.split(",") if w.strip()]


def get_args_parser():
    """The ``python -m tinyfast.loaders`` argument parser."""
    from tinyfast._util import short_parser
    from tinyfast.augment import PRESETS

    p = short_parser(
        prog="python -m tinyfast.loaders",
        description="List the registered loaders, or (--bench) measure the images/s each delivers: "
                    "augmented, normalised batches on the device, median of timed runs after warm-up.",
        epilog="Exit status: 0 when at least one loader was measured, 1 when none could be (each "
               "skip is printed with its reason), 2 on bad arguments or data.")
    p.add_argument("--bench", action="store_true", help="measure images/s of each loader (without it: list them)")
    p.add_argument("--list", action="store_true",
                   help="list the registered loaders, which can run on --device here and why not, and exit")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="packed dataset (python -m tinyfast.pack) to read; default: the built-in synthetic "
                        "set in ./data/synthetic or $TINYFAST_DATA, made on first use")
    p.add_argument("--split", default="train", help="split to read: train, val or test (default: train)")
    p.add_argument("--loaders", metavar="A,B", default=None,
                   help="comma-separated loader names (default: every registered one; see --list)")
    p.add_argument("--device", default=None,
                   help="where batches are delivered: cpu or cuda[:i] (default: cuda when visible, else cpu)")
    p.add_argument("--batch-size", type=_count(1), default=256, metavar="N", help="images per batch (default: 256)")
    p.add_argument("--batches", type=_count(1), default=20, metavar="N",
                   help="timed batches per run (default: 20)")
    p.add_argument("--runs", type=_count(1), default=3, metavar="N",
                   help="timed runs per loader; the median is reported (default: 3)")
    p.add_argument("--warmup", type=_count(0), default=3, metavar="N",
                   help="untimed batches before the runs: worker start-up, caches (default: 3)")
    p.add_argument("--policy", default="default", choices=sorted(PRESETS), metavar="PRESET",
                   help="training augmentation preset applied while measuring: "
                        f"{', '.join(sorted(PRESETS))} (default: default)")
    p.add_argument("--dtype", default="float16", choices=sorted(_DTYPES),
                   help="image dtype delivered (default: float16, the bytes of an AMP batch)")
    p.add_argument("--workers", type=_counts, default=None, metavar="N,M",
                   help="comma-separated worker counts to sweep for the loaders that have workers ("
                        + ", ".join(_HAS_WORKERS) + "); default: one run with as many as CPU cores")
    return p


def _bench_rows(args, data) -> list[dict]:
    """One measured or skipped row per (loader, workers); the table is printed once all are done,
    after the progress lines (stderr), so a log holds it in one piece."""
    from tinyfast.data import PackError

    names = args.loaders.split(",") if args.loaders else list_loaders()
    rows, table = [], [f"{'loader':<14}{'workers':>8}{'images/s':>12}   (device {args.device}, batch "
                       f"{args.batch_size}, {args.dtype}, data {data})"]
    for name in names:
        for w in (args.workers or [None]) if name in _HAS_WORKERS else [None]:
            row = {"loader": name, "workers": w}
            try:
                r = throughput(name, data, args.split, args.batch_size, args.device, policy=args.policy,
                               batches=args.batches, warmup=args.warmup, runs=args.runs,
                               dtype=_DTYPES[args.dtype], num_workers=w, show_progress=True)
                row["images_per_sec"] = r["images_per_sec"]
                table.append(f"{name:<14}{'-' if w is None else w:>8}{r['images_per_sec']:>12,.0f}")
            except (ImportError, PackError, ValueError, RuntimeError, OSError) as e:
                row["skipped"] = (str(e).strip().splitlines() or [type(e).__name__])[0]
                table.append(f"{name:<14}{'-' if w is None else w:>8}{'skipped':>12}   {row['skipped']}")
            rows.append(row)
    print("\n".join(table), flush=True)
    return rows


def _list_table(device: str) -> str:
    """What ``--list`` prints: each loader, whether it can run on ``device`` here, and what it reads
    or why it cannot."""
    lines = [f"{'loader':<14}{'runs':<6}on {device} here (--device asks about another)"]
    for name in list_loaders():
        why = unavailable(name, device)
        about = _INFO.get(name, ("", None))[0] or "(registered)"
        lines.append(f"{name:<14}{'no' if why else 'yes':<6}{why or about}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python -m tinyfast.loaders [--list | --bench ...]``: the loader names, or an images/s table.

    Returns the exit status (see the parser's epilog).
    """
    import sys

    from tinyfast.data import PackError
    from tinyfast.default_data import ensure_default_data
    from tinyfast.loaders.base import _resolve_device

    p = get_args_parser()
    args = p.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        _resolve_device(args.device)
    except (ValueError, RuntimeError) as e:
        p.error(f"--device {args.device!r}: {(str(e).strip().splitlines() or ['invalid'])[0]}")
    if args.list or not args.bench:
        print(_list_table(args.device))
        return 0
    unknown = [n for n in (args.loaders or "").split(",") if n and n not in list_loaders()]
    if unknown:
        p.error(f"--loaders: unknown {', '.join(unknown)}; choose from {', '.join(list_loaders())}")
    if args.data:  # a bad --data is the command's error, not one skip per loader
        from tinyfast.data import read_manifest
        try:
            read_manifest(args.data)
        except (PackError, OSError, ValueError) as e:
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            p.error(f"--data {args.data}: not a packed dataset ({why})")
    try:
        data = args.data or ensure_default_data()
    except (PackError, OSError) as e:
        print(f"{p.prog}: error: {(str(e).strip().splitlines() or [type(e).__name__])[0]}", file=sys.stderr)
        return 2
    rows = _bench_rows(args, data)
    if not any("images_per_sec" in r for r in rows):
        print(f"{p.prog}: error: no loader could be measured ({len(rows)} skipped, reasons above)",
              file=sys.stderr)
        return 1
    return 0

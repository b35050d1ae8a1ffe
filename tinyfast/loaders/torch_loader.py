"""``torch`` / ``torch-npy``: the baseline, loading data the way typical training scripts do.

``torch`` reads the original JPEG files (the tree the dataset was packed from; the manifest
records where) with Pillow, like ``torchvision.datasets.ImageFolder``; ``torch-npy`` reads rows of
the packed ``.npy`` instead (no decoding). Both run torchvision transforms v2 per sample in
``DataLoader`` worker processes, collate, pin memory and copy each batch to the device
non-blocking.

The :class:`~tinyfast.augment.Policy` maps onto torchvision as closely as it allows:

==========================  ======================================================================
Policy                      torchvision v2
==========================  ======================================================================
brightness/contrast/sat.    ``ColorJitter(brightness=...)``, ``ColorJitter(contrast=...)``,
                            ``ColorJitter(saturation=...)`` as three transforms, so the order is
                            fixed (brightness, contrast, saturation) as in the fused op; applied
                            first, on the source image, so contrast uses the source's mean
                            luminance like the op. Differences: uint8 rounding after each step.
hflip / vflip               ``RandomHorizontalFlip(p)`` / ``RandomVerticalFlip(p)``
rotate/translate/zoom/shear ``RandomAffine(degrees, translate, scale, shear, BILINEAR, fill)``;
                            same ranges and centre. Differences: torchvision rounds the
                            translation to whole pixels; shear conventions differ in detail.
normalisation               ``ToDtype(float32, scale=True)`` + ``Normalize(mean, std)``; with
                            ``normalize="mean-image"``, ``(x - M) / std`` with the train split's
                            mean image ``M`` (a small tensor transform), as the fused op.
blur (p, sigma)             ``RandomApply([GaussianBlur(5, sigma)], p)`` on the uint8 image, before
                            normalising. Differences: uint8 rounding of the blurred image, and a
                            sigma drawn per image by torchvision's RNG, not the policy's.
cutout (p, size)            ``RandomErasing(p, scale=(size_lo^2, size_hi^2), ratio=(1, 1),
                            value=0)`` after normalising (0 = the mean, as in the op). Difference:
                            RandomErasing keeps the square inside the image, the policy's cutout
                            centres it anywhere and clips it at the border.
==========================  ======================================================================

Every sample's randomness comes from a seed derived from ``(seed, epoch, rank, batch)`` and its
position in the batch (the sampler hands ``(index, seed)`` keys to the dataset), so batches are
reproducible and resumable whatever the number of workers.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from tinyfast.loaders import register
from tinyfast.loaders.base import BaseLoader, derive_seed


class _SubtractMeanImage:
    """``(x - M) / std`` on a float32 ``(3, H, W)`` image in ``[0, 1]`` units (picklable)."""

    def __init__(self, mean_image: torch.Tensor, std):
        self.mean = mean_image.permute(2, 0, 1).contiguous()
        self.std = torch.tensor(list(std), dtype=torch.float32)[:, None, None]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def policy_transforms(policy, mean, std, train: bool, mean_image: torch.Tensor | None = None):
    """The torchvision v2 pipeline of a :class:`~tinyfast.augment.Policy` (see the module table).

    Input: a PIL image or a uint8 ``(3, H, W)`` tensor; output: normalised float32 ``(3, H, W)``
    (per channel, or minus ``mean_image`` (float32 ``(H, W, 3)``) when given).
    """
    from torchvision.transforms import InterpolationMode, v2

    steps = [v2.ToImage()]
    if train and not policy.is_identity:
        for name in ("brightness", "contrast", "saturation"):
            rng = getattr(policy, name)
            if rng != (1.0, 1.0):
                steps.append(v2.ColorJitter(**{name: rng}))
        if policy.hflip > 0:
            steps.append(v2.RandomHorizontalFlip(policy.hflip))
        if policy.vflip > 0:
            steps.append(v2.RandomVerticalFlip(policy.vflip))
        geometric = (policy.rotate != (0.0, 0.0) or policy.translate != (0.0, 0.0)
                     or policy.zoom != (1.0, 1.0) or policy.shear != (0.0, 0.0))
        if geometric:
            steps.append(v2.RandomAffine(
                degrees=policy.rotate,
                translate=policy.translate if policy.translate != (0.0, 0.0) else None,
                scale=policy.zoom if policy.zoom != (1.0, 1.0) else None,
                shear=policy.shear if policy.shear != (0.0, 0.0) else None,
                interpolation=InterpolationMode.BILINEAR,
                fill=int(round(policy.fill))))
        if policy.blur > 0:
            steps.append(v2.RandomApply([v2.GaussianBlur(5, sigma=policy.blur_sigma)], p=policy.blur))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    steps.append(v2.Normalize(list(mean), list(std)) if mean_image is None
                 else _SubtractMeanImage(mean_image, std))
    if train and policy.cutout > 0 and policy.cutout_size[1] > 0:
        lo, hi = policy.cutout_size
        steps.append(v2.RandomErasing(policy.cutout, scale=(lo * lo, hi * hi), ratio=(1.0, 1.0), value=0.0))
    return v2.Compose(steps)


class _Samples(torch.utils.data.Dataset):
    """Map-style dataset keyed by ``(index, seed)``: loads sample ``index``, transforms it under
    ``torch.manual_seed(seed)`` (the global RNG is restored afterwards)."""

    def __init__(self, read, labels: np.ndarray, transform):
        self.read, self.labels, self.transform = read, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key):
        i, seed = key
        img = self.read(i)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            x = self.transform(img)
        return x, int(self.labels[i])


class _JpegReader:
    """``ImageFolder``'s way: open the file with Pillow, convert to RGB (picklable for workers).

    A file that no longer decodes, or decodes to another size than it was packed at, raises
    :class:`~tinyfast.data.PackError` naming it: the tree changed since it was packed. Where the
    pack itself resized sources (``resize``), other sizes are expected and are centre-cropped and
    resized the same way.
    """

    def __init__(self, paths: list[str], size: tuple[int, int], resize: bool = False):
        self.paths, self.size, self.resize = paths, size, resize

    def __call__(self, i: int):
        from PIL import Image

        from tinyfast.data import PackError

        path = self.paths[i]
        try:
            with open(path, "rb") as f:
                img = Image.open(f).convert("RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise PackError(f"{path}: no longer a readable image ({type(e).__name__}: {e}); the JPEG "
                            "tree changed since it was packed: re-pack it, or use --loader torch-npy") from None
        h, w = self.size
        if img.size != (w, h):
            if not self.resize:
                raise PackError(f"{path}: is {img.size[0]}x{img.size[1]}, was packed as {w}x{h}; the JPEG "
                                "tree changed since it was packed: re-pack it, or use --loader torch-npy")
            m = min(img.size)
            left, top = (img.size[0] - m) // 2, (img.size[1] - m) // 2
            img = img.crop((left, top, left + m, top + m)).resize((w, h), Image.Resampling.BICUBIC)
        return img


def _unwrap_worker_error(e: Exception) -> Exception:
    """A :class:`~tinyfast.data.PackError` raised in a ``DataLoader`` worker comes back wrapped in
    the worker's traceback ("Caught PackError in DataLoader worker process 0 ..."): its own line."""
    from tinyfast.data import PackError

    last = (str(e).strip().splitlines() or [""])[-1]
    return PackError(last.split("PackError: ", 1)[-1])


class _NpyReader:
    """Rows of the packed ``images.npy``, memory-mapped (re-opened in each worker process)."""

    def __init__(self, path: Path):
        self.path = path
        self._arr = None

    def __getstate__(self):
        return {"path": self.path, "_arr": None}

    def __call__(self, i: int):
        from torchvision import tv_tensors

        if self._arr is None:
            self._arr = np.load(self.path, mmap_mode="r")
        return tv_tensors.Image(torch.from_numpy(np.array(self._arr[i])).permute(2, 0, 1))


class _BatchKeys:
    """Batch sampler over the loader's current epoch: lists of ``(index, seed)`` keys.

    The ``DataLoader`` keeps it across epochs (persistent workers); it reads the epoch and the first
    batch from the loader each time it is iterated. It holds the loader weakly: a reference cycle
    would leave the worker processes to the cyclic garbage collector, whose shutdown of them
    waits out the workers' 5 s status timeouts.
    """

    def __init__(self, loader: "TorchLoader"):
        self._loader = weakref.ref(loader)
        self.epoch, self.start = 0, 0

    def __len__(self) -> int:
        return max(0, len(self._loader()) - self.start)

    def __iter__(self):
        ld = self._loader()
        sizes = ld.order.batch_sizes()
        for b in range(self.start, len(sizes)):
            idx = ld.order.batch(self.epoch, b).tolist()
            g = torch.Generator().manual_seed(derive_seed(ld.seed, self.epoch, ld.rank, b))
            seeds = torch.randint(0, 2**62, (len(idx),), generator=g).tolist()
            yield list(zip(idx, seeds))


class TorchLoader(BaseLoader):
    """The ``DataLoader`` baseline (see the module docstring).

    Extra args:
        source: ``"jpeg"`` (the original files, ``torch``) or ``"npy"`` (``torch-npy``).
        jpeg_root: where the original tree is, overriding the manifest's record of it.
        prefetch_factor: batches each worker loads ahead (``DataLoader``'s, default 2).
    """

    name = "torch"

    def __init__(self, data_dir, split, batch_size, *, source: str = "jpeg", jpeg_root=None,
                 prefetch_factor: int | None = None, **kw):
        super().__init__(data_dir, split, batch_size, **kw)
        if source == "jpeg":
            resized = (self.packed.manifest.get("resized") or {}).get("count", 0)
            read = _JpegReader(self._jpeg_paths(jpeg_root), (self.height, self.width), resize=bool(resized))
        elif source == "npy":
            read = _NpyReader(self.data_dir / split / "images.npy")
        else:
            raise ValueError(f"source must be 'jpeg' or 'npy', got {source!r}")
        self.source = source
        transform = policy_transforms(self.policy, self.mean, self.std, self.train, self.mean_image)
        self.dataset = _Samples(read, self.labels_cpu.numpy(), transform)
        self._keys = _BatchKeys(self)
        workers = self.num_workers
        # Its own generator: without one, every iter() draws the workers' base seed from the global
        # RNG, which dropout uses too, so a resumed run (one iter() more) drew other dropout masks.
        # The base seed itself matters to nothing here (each sample is seeded by its key).
        gen = torch.Generator().manual_seed(derive_seed(self.seed, self.rank))
        self._dl = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=self._keys, num_workers=workers,
            pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
            prefetch_factor=(prefetch_factor or 2) if workers > 0 else None, generator=gen)

    def _jpeg_paths(self, jpeg_root) -> list[str]:
        from tinyfast.data import PackError

        man = self.packed.manifest
        root = jpeg_root or man.get("source")
        if isinstance(root, dict):
            root = root.get("path") or root.get("root")
        if not root:
            raise PackError(f"{self.data_dir / 'manifest.json'}: records no source JPEG tree (re-pack from "
                            "one: python -m tinyfast.pack SRC --out DIR, or --synthetic --tree DIR; or "
                            "use --loader torch-npy)")
        root = Path(root)
        split_dir = root / self.split
        classes, labels, ids = self.packed.classes, self.labels_cpu.tolist(), self.packed.ids
        # ids.txt holds each row's name relative to a layout-dependent folder; the candidates cover
        # tiny-imagenet-200 (train/<wnid>/images/x, val|test/images/x) and ImageFolder trees.
        candidates = [
            lambda i: split_dir / ids[i],
            lambda i: split_dir / classes[labels[i]] / "images" / ids[i],
            lambda i: split_dir / "images" / ids[i],
            lambda i: split_dir / classes[labels[i]] / ids[i],
            lambda i: root / ids[i],
        ]
        probe = sorted({0, len(ids) // 2, len(ids) - 1})
        for where in candidates:
            try:
                if all(where(i).is_file() for i in probe):
                    break
            except IndexError:  # labels of -1 (unlabelled split)
                continue
        else:
            raise PackError(f"{split_dir / ids[0]}: missing (the JPEG tree recorded in "
                            f"{self.data_dir / 'manifest.json'} moved or was not kept; put it back, "
                            "re-pack, or use --loader torch-npy)")
        paths = [str(where(i)) for i in range(len(ids))]
        return paths

    def close(self) -> None:
        """Stop the persistent worker processes."""
        it = getattr(self._dl, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        self._dl._iterator = None

    def _batches(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from tinyfast.data import PackError

        self._keys.epoch, self._keys.start = epoch, start
        dev, cl = self.device, torch.channels_last
        it = iter(self._dl)
        while True:
            try:
                x, y = next(it)
            except StopIteration:
                return
            except PackError as e:
                raise _unwrap_worker_error(e) from None
            x = x.to(dev, non_blocking=True).to(dtype=self.dtype, memory_format=cl)
            y = y.to(dev, non_blocking=True)
            yield x, y


def _torchvision_missing(device: torch.device) -> str | None:
    try:
        import torchvision  # noqa: F401
    except ImportError as e:
        return f"the torch loaders need torchvision, which does not import ({e})"
    return None


@register("torch", about="the baseline: the JPEG tree decoded by PIL, torchvision transforms in DataLoader "
                         "workers", check=_torchvision_missing)
def _torch(data_dir, split, batch_size, **kw):
    return TorchLoader(data_dir, split, batch_size, source="jpeg", **kw)


@register("torch-npy", about="the same over the packed .npy (no JPEG decode)", check=_torchvision_missing)
def _torch_npy(data_dir, split, batch_size, **kw):
    loader = TorchLoader(data_dir, split, batch_size, source="npy", **kw)
    loader.name = "torch-npy"
    return loader

"""What every loader shares: sample order, sharding by rank, epochs, resume, augmentation draws.

One implementation, so that every loader built on :class:`BaseLoader` visits the same samples in
the same order with the same augmentation parameters for a given ``seed``:

* **Order.** Training shuffles with ``torch.randperm`` from a CPU ``torch.Generator`` seeded with
  ``derive_seed(seed, epoch)``; evaluation keeps the packed order. Identical on every loader and
  every device (a CPU generator: device generators produce different streams).
* **Sharding** (``rank``, ``world_size``), like ``torch.utils.data.DistributedSampler``: the
  epoch's order is split round-robin, rank ``r`` takes positions ``r, r + W, r + 2W, ...``.

  - ``drop_last=True`` (the training default): the order is cut to a multiple of ``W`` and each
    rank drops its incomplete last batch, so every rank runs the same number of steps (DDP needs
    that) and no sample is seen twice; up to ``W - 1 + W * (batch_size - 1)`` samples per epoch
    are skipped (different ones each epoch when shuffling).
  - ``drop_last=False`` and training: the order is padded by repeating its first samples up to a
    multiple of ``W`` (as ``DistributedSampler`` does), so every rank runs the same number of
    steps; up to ``W - 1`` samples are seen twice per epoch.
  - ``drop_last=False`` and evaluation (the evaluation default): no padding; every sample is seen
    exactly once across ranks, and shards differ in length by at most one sample (so ranks may
    differ by one batch: reduce metrics once after the loop, not per batch).
* **Epochs.** ``set_epoch(e)`` before each epoch (as with ``DistributedSampler``); without it every
  pass repeats the same epoch.
* **Resume.** ``state_dict()`` is always *what comes next*: the epoch and the first batch of it the
  next ``next()`` yields. ``set_epoch(e)`` and ``iter(loader)`` put the cursor at batch 0 of the
  selected epoch (so a checkpoint taken between ``set_epoch(e + 1)`` and the first batch resumes
  the whole of epoch ``e + 1``); each batch handed out moves it one on (a state taken while the
  caller holds batch ``b`` says ``b + 1``); a pass that runs to its end leaves it at batch 0 of
  the same epoch, which is what a new pass without ``set_epoch`` would yield. After
  ``load_state_dict()`` the next pass yields exactly the remaining batches of the saved epoch, with
  the same augmentation parameters, then later passes are whole epochs again. A ``set_epoch()`` to
  another epoch cancels a pending resume; ``set_epoch()`` to the saved one keeps it.
* **Augmentation parameters** for batch ``b`` of epoch ``e`` on rank ``r`` are drawn by
  :meth:`tinyfast.augment.Policy.sample` from a CPU generator seeded with
  ``derive_seed(seed, e, r, b)``: independent of the loader, the device and of what came before,
  so a resumed run redraws exactly the same ones, at the cost of one small seeding per batch.
  They are drawn for the output size the batch is produced at (:meth:`BaseLoader.set_out_size`
  applies from the next batch handed out, also on loaders that prepare batches ahead).
* **Phases** (``build(..., phases=...)``, any loader): epochs in phases of their own batch size and
  augmentation; ``len()`` is then the current epoch's, ``batches_at(e)`` any epoch's (:mod:`.phased`).
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import torch

from tinyfast._util import cpu_count
from tinyfast.loaders.subset import first_per_class  # noqa: F401  (re-exported)

_STATE_VERSION = 1


def derive_seed(*values: int) -> int:
    """A 63-bit seed mixing several integers (seed, epoch, rank, batch ...), stable everywhere.

    A hash rather than arithmetic like ``seed * 1000 + epoch`` so that nearby tuples give
    unrelated streams and no two tuples collide in practice.
    """
    packed = struct.pack(f"<{len(values)}q", *(int(v) for v in values))
    return int.from_bytes(hashlib.blake2b(packed, digest_size=8).digest(), "little") >> 1


def batch_count(num_samples: int, batch_size: int, drop_last: bool) -> int:
    """Batches of ``num_samples`` at ``batch_size``: the incomplete tail dropped or kept."""
    return num_samples // batch_size if drop_last else -(-num_samples // batch_size)


class ShardedOrder:
    """The per-epoch, per-rank sample order and its batches (see the module docstring).

    Args:
        num_total: samples in the split (all ranks).
        batch_size: samples per batch.
        shuffle: draw a fresh permutation each epoch (else the packed order).
        drop_last: drop the incomplete tail (see the module docstring for the sharding rules).
        seed, rank, world_size: as in :func:`tinyfast.loaders.build`.
        pad: pad the order to a multiple of ``world_size`` when not dropping (default: ``shuffle``,
            i.e. training pads like ``DistributedSampler``, evaluation covers each sample once).
        rows: the packed rows to visit (a subset, in packed order; ``num_total`` is then its length):
            the orders are drawn over positions in ``rows`` and handed out as its rows.
    """

    def __init__(self, num_total: int, batch_size: int, *, shuffle: bool, drop_last: bool,
                 seed: int = 0, rank: int = 0, world_size: int = 1, pad: bool | None = None,
                 rows: torch.Tensor | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank} world_size={world_size}")
        self.num_total = int(num_total)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.pad = self.shuffle if pad is None else bool(pad)
        self.rows = rows
        n, w = self.num_total, self.world_size
        # Per rank: the split cut (drop_last) or padded (pad) to a multiple of W, else this rank's stride.
        self.num_samples = n // w if self.drop_last else -(-n // w) if self.pad else len(range(self.rank, n, w))
        self.num_batches = batch_count(self.num_samples, self.batch_size, self.drop_last)
        self._cache: tuple[int, torch.Tensor] | None = None

    def permutation(self, epoch: int) -> torch.Tensor:
        """The whole split's order for ``epoch`` (int64 packed rows, CPU), before sharding."""
        if not self.shuffle:
            order = torch.arange(self.num_total, dtype=torch.int64)
        else:
            g = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            order = torch.randperm(self.num_total, generator=g)
        return order if self.rows is None else self.rows[order]

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's samples for ``epoch`` (int64, CPU), ``num_samples`` long, cached."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        order = self.permutation(epoch)
        n, w = self.num_total, self.world_size
        if self.drop_last:
            order = order[: (n // w) * w]
        elif self.pad and n % w:
            extra = w - n % w
            reps = -(-extra // max(n, 1))
            order = torch.cat([order, order.repeat(reps)[:extra]])
        mine = order[self.rank:: w].contiguous()
        assert len(mine) == self.num_samples
        self._cache = (epoch, mine)
        return mine

    def batch(self, epoch: int, b: int) -> torch.Tensor:
        """Sample indices of batch ``b`` of ``epoch`` on this rank (a view into :meth:`indices`)."""
        return self.indices(epoch)[b * self.batch_size:(b + 1) * self.batch_size]

    def batch_sizes(self) -> list[int]:
        """The size of every batch of an epoch on this rank."""
        sizes = [self.batch_size] * self.num_batches
        if sizes and not self.drop_last and self.num_samples % self.batch_size:
            sizes[-1] = self.num_samples % self.batch_size
        return sizes


#: Normalisations a loader offers: per-channel ``(x - mean_c) / std_c`` (the default), mean-image
#: zero-centering ``(x - M[y, x, c]) / std_c`` with ``M`` the train split's mean image, or ``x - M`` only.
NORMALIZE = ("channel", "mean-image", "mean-image-only")

_MEAN_IMAGES: dict[tuple, torch.Tensor] = {}


def train_mean_image(data_dir) -> torch.Tensor:
    """The mean image of ``data_dir``'s packed train split: float32 ``(H, W, 3)`` in ``[0, 1]`` units.

    Summed in float64 over chunks of the memory-mapped ``images.npy`` (exact for any split size),
    once per process and file version (keyed by path, size and mtime), so the train and val
    loaders of a run share one pass.
    """
    import numpy as np

    from tinyfast.data import open_packed

    packed = open_packed(Path(data_dir), "train")
    images = packed.images
    path = Path(data_dir) / "train" / "images.npy"
    st = path.stat() if path.exists() else None
    key = (str(path.resolve()), st.st_size if st else 0, st.st_mtime_ns if st else 0, len(images))
    if key not in _MEAN_IMAGES:
        total = np.zeros(images.shape[1:], np.float64)
        for i in range(0, len(images), 4096):
            total += images[i:i + 4096].sum(axis=0, dtype=np.float64)
        _MEAN_IMAGES[key] = torch.from_numpy((total / (255.0 * max(len(images), 1))).astype(np.float32))
    return _MEAN_IMAGES[key]


def resize_mean_image(mean_image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``mean_image`` (``(H, W, 3)``) at output ``size``: itself, or its bilinear resize
    (``align_corners=False``, the op's identity resize) for progressive resizing."""
    if tuple(mean_image.shape[:2]) == tuple(size):
        return mean_image
    x = mean_image.permute(2, 0, 1)[None].double()
    y = torch.nn.functional.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    return y[0].permute(1, 2, 0).float().contiguous()


class ClassName(NamedTuple):
    """One class of the dataset: its id (a WordNet id for Tiny ImageNet) and human-readable words."""

    wnid: str
    words: str


def default_dtype(device: torch.device) -> torch.dtype:
    """The image dtype of a loader built without ``dtype``: the autocast dtype when ``build`` is
    called inside an enabled ``torch.autocast`` for that device type, else float32 (what a plain
    model expects; pass ``dtype=torch.bfloat16``/``float16`` to halve the bytes per batch)."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return torch.float32


def _resolve_device(device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {device!r}")
    return dev


class AugmentHelpers:
    """What loaders calling the fused op share: per-batch parameter draws, the output size, the
    op call and host-to-device copies. Mixed into :class:`BaseLoader`, whose attributes it reads
    (``seed``, ``rank``, ``policy``, ``height``, ``width``, ``device``, ``dtype``, ``mean``, ``std``)."""

    #: True where batches come out of the fused op, which can write any output size
    #: (:meth:`set_out_size`); the torchvision baselines and ``dali-native`` cannot.
    can_resize = False
    #: ``(Ho, Wo)`` of the batches; ``None`` = the packed size. See :meth:`set_out_size`.
    out_size: tuple[int, int] | None = None

    def aug_params(self, epoch: int, b: int, n: int, out_size: tuple[int, int] | None = None):
        """Augmentation parameters of batch ``b`` (``n`` samples): ``AugParams(theta, color)`` on CPU.

        Training draws from the policy with a generator seeded by ``(seed, epoch, rank, b)``;
        evaluation gets the identity (plain normalisation). The geometry is drawn for ``out_size``
        (default: the current :attr:`produced_size`), which must be the size the batch is produced at.
        """
        size = self.produced_size if out_size is None else out_size
        g = torch.Generator().manual_seed(derive_seed(self.seed, epoch, self.rank, b))
        return self.policy.sample(n, self.height, self.width, g, out_size=size)

    def set_out_size(self, size: tuple[int, int] | None) -> None:
        """Deliver ``(Ho, Wo)`` images from the next batch handed out on (``None``: the packed size).

        The fused op resamples straight to that size (progressive resizing costs no extra pass);
        the augmentation is the same geometry, drawn for the new output size. Also in the middle
        of an epoch: a batch prepared ahead for the old size is redrawn for the new one.

        Raises:
            ValueError: this loader cannot resize (``can_resize`` is False) or ``size`` is invalid.
        """
        if not self.can_resize:
            raise ValueError(f"the {self.name!r} loader cannot change its output size")
        if size is not None:
            size = (int(size[0]), int(size[1]))
            if min(size) < 1:
                raise ValueError(f"set_out_size: sizes must be >= 1, got {size}")
            if size == (self.height, self.width):
                size = None
        self.out_size = size

    @property
    def produced_size(self) -> tuple[int, int]:
        """``(Ho, Wo)`` the next batch is produced at: :attr:`out_size`, or the packed size."""
        return self.out_size if self.out_size is not None else (self.height, self.width)

    def restart_on_resize(self, epoch: int, start: int, run) -> Iterator:
        """Batches ``start, start + 1, ...`` of ``epoch`` from ``run(epoch, start, size)``: a
        generator that prepares batches ahead (a DALI or FFCV pipeline), all at output ``size``.

        When :meth:`set_out_size` changes the size while the caller holds batch ``b``, the batches
        prepared ahead are dropped (the generator is closed) and ``run`` starts again at ``b + 1``
        with the new size: the resume path, so those batches get the pixels and parameters a loader
        resumed there at that size would give. A size set between passes costs no restart.
        """
        nb = self.order.num_batches
        b = start
        while b < nb:
            size = self.produced_size
            batches = run(epoch, b, size)
            try:
                for batch in batches:
                    yield batch
                    b += 1
                    if b < nb and self.produced_size != size:
                        break
                else:
                    return
            finally:
                batches.close()

    def fused_augment(self, src: torch.Tensor, theta: torch.Tensor, color: torch.Tensor,
                      index: torch.Tensor | None = None,
                      out_size: tuple[int, int] | None = None, params=None) -> torch.Tensor:
        """One :func:`tinyfast.ops.augment` call with this loader's normalisation (per-channel or
        mean image), dtype, fill and output size (default: the current :attr:`produced_size`; pass
        the size ``theta`` was drawn for), then the blur / cutout of ``params`` (the
        :class:`~tinyfast.augment.AugParams` ``theta`` came from, see
        :func:`tinyfast.augment.finish`). The single place the loaders call the op."""
        from tinyfast import ops
        from tinyfast.augment import finish

        size = self.produced_size if out_size is None else out_size
        out = ops.augment(src, theta, color, self.mean, self.std, index=index, out_size=size,
                          dtype=self.dtype, fill=float(self.policy.fill),
                          mean_image=self.mean_image_at(size))
        return out if params is None else finish(out, params)

    def mean_image_at(self, size: tuple[int, int]) -> torch.Tensor | None:
        """The train split's mean image at output ``size`` on the loader's device (float32
        ``(Ho, Wo, 3)``, ``[0, 1]`` units), or ``None`` with per-channel normalisation."""
        if getattr(self, "mean_image", None) is None:
            return None
        cache = self.__dict__.setdefault("_mean_images", {})
        if size not in cache:
            cache[size] = resize_mean_image(self.mean_image, size).to(self.device)
        return cache[size]

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        """A CPU tensor on the loader's device: pinned, then copied asynchronously (no host wait).

        The pinned block comes from torch's caching host allocator, which does not hand it out
        again before the copy has completed, so the caller may drop ``t`` at once.
        """
        if self.device.type == "cpu":
            return t
        return t.pin_memory().to(self.device, non_blocking=True)

    def device_aug_params(self, epoch: int, b: int, n: int, out_size: tuple[int, int] | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`aug_params` of batch ``b`` with ``theta (n, 2, 3)`` and ``color (n, 3)`` on the
        loader's device (unpacks as ``(theta, color)``).

        Both travel in one ``(n, 9)`` host-to-device copy.
        """
        p = self.aug_params(epoch, b, n, out_size)
        both = self.to_device(torch.cat([p.theta.reshape(n, 6), p.color.reshape(n, 3)], dim=1))
        # Blur sigmas and cutout boxes stay on the host: finish() reads them there (no sync).
        return p.with_geometry(both[:, :6].reshape(n, 2, 3), both[:, 6:].contiguous())


class BaseLoader(AugmentHelpers):
    """Common state of every loader; subclasses implement :meth:`_batches`.

    Subclasses yield ``(images, labels)`` for batches ``start, start + 1, ...`` of the current
    epoch from ``_batches(epoch, start)``; this class counts what was yielded (for
    :meth:`state_dict`) and handles epochs and resume. See :func:`tinyfast.loaders.build` for the
    arguments.

    Attributes:
        name: the registry name; split: the split; device, dtype: of the images.
        num_classes, mean, std: of the dataset (mean/std of the train split, [0, 1] units).
        classes: ``ClassName(wnid, words)`` per label, in label order; class_to_idx: wnid -> label
            (as on torchvision datasets).
        num_samples: samples this rank sees per epoch; batch_size; train; policy; seed.
        height, width: of the packed images (the output size).

    ``per_class=N`` visits only the first ``N`` images of each class (a quick run on a big split).
    """

    name = "base"

    def __init__(self, data_dir, split: str, batch_size: int, device="cpu", policy=None, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool | None = None,
                 dtype: torch.dtype | None = None, train: bool | None = None,
                 num_workers: int | None = None, normalize: str = "channel",
                 normalization: dict | None = None, per_class: int | None = None):
        from tinyfast.augment import get_policy
        from tinyfast.data import open_packed

        if dtype is not None and dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise ValueError(f"dtype must be float16, bfloat16 or float32, got {dtype}")
        self.data_dir = Path(data_dir)
        self.split = split
        self.device = _resolve_device(device)
        self.dtype = default_dtype(self.device) if dtype is None else dtype
        self.train = (split == "train") if train is None else bool(train)
        self.drop_last = self.train if drop_last is None else bool(drop_last)
        # Evaluation is normalisation only, whatever policy was passed.
        self.policy = get_policy(policy if (self.train and policy is not None) else "none")
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.num_workers = cpu_count() if num_workers is None else int(num_workers)
        self.packed = open_packed(self.data_dir, split)  # PackError names what is wrong
        if len(self.packed) == 0:
            raise ValueError(f"{self.data_dir / split}: the split is empty")
        self.height, self.width = int(self.packed.images.shape[1]), int(self.packed.images.shape[2])
        self.num_classes = self.packed.num_classes
        self.classes = [ClassName(w, t) for w, t in zip(self.packed.classes, self.packed.words)]
        self.class_to_idx = {c.wnid: i for i, c in enumerate(self.classes)}
        given = normalization or {}
        normalize = given.get("normalize") or normalize
        self.mean = tuple(float(v) for v in given.get("mean") or self.packed.mean)
        self.std = tuple(float(v) for v in given.get("std") or self.packed.std)
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"normalization: need 3 means and 3 positive stds, got {self.mean} and {self.std}")
        self.normalize = normalize
        self.std = (1.0, 1.0, 1.0) if normalize == "mean-image-only" else self.std  # subtracted, not divided
        self.mean_image = None
        if normalize != "channel":
            # The train split's, also when evaluating: validation images are centred like training's.
            given_image = given.get("mean_image")
            self.mean_image = (train_mean_image(self.data_dir) if given_image is None
                               else torch.as_tensor(given_image, dtype=torch.float32).cpu())
            if self.mean_image.ndim != 3 or self.mean_image.shape[2] != 3:
                raise ValueError(f"normalization: the mean image must be (H, W, 3), got {tuple(self.mean_image.shape)}")
        rows = None if per_class is None else first_per_class(self.packed.labels, per_class, self.data_dir / split)
        self.order = ShardedOrder(len(self.packed) if rows is None else len(rows), batch_size, shuffle=self.train,
                                  drop_last=self.drop_last, seed=self.seed, rank=self.rank,
                                  world_size=self.world_size, rows=rows)
        self.batch_size = self.order.batch_size
        self.num_samples = self.order.num_samples
        self.epoch = 0
        self._next_batch = 0            # the batch of self.epoch the next next() yields
        self._resume: tuple[int, int] | None = None
        # Labels of the whole split (tiny); -1 for the unlabelled test split.
        labels = self.packed.labels
        self.labels_cpu = (torch.from_numpy(labels.astype("int64", copy=False)).clone()
                           if labels is not None else torch.full((len(self.packed),), -1, dtype=torch.int64))

    # ----- the contract ---------------------------------------------------------------------------
    def normalization_state(self) -> dict:
        """How this loader normalises: ``{"normalize", "mean", "std", "mean_image"}`` (the mean image
        a float32 ``(H, W, 3)`` CPU tensor or ``None``); pass it as ``normalization=`` to another
        loader (over any data) to normalise the same way. Checkpoints record it."""
        return {"normalize": self.normalize, "mean": list(self.mean), "std": list(self.std),
                "mean_image": self.mean_image}

    def __len__(self) -> int:
        """Batches per epoch on this rank (a whole epoch, also right after a resume)."""
        return self.order.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the next pass (its shuffle and its augmentation parameters), from its
        first batch -- unless a resume of that very epoch is pending (see :meth:`load_state_dict`)."""
        epoch = int(epoch)
        if self._resume is not None and self._resume[0] == epoch:
            return
        self._resume = None
        self.epoch = epoch
        self._next_batch = 0

    def state_dict(self) -> dict[str, Any]:
        """What comes next: the epoch and the batch of it the next ``next()`` yields, plus the
        settings that must match on resume (see the module docstring)."""
        return {"version": _STATE_VERSION, "loader": self.name, "epoch": self.epoch,
                "batch": self._next_batch, "seed": self.seed, "rank": self.rank,
                "world_size": self.world_size, "batch_size": self.batch_size,
                "num_total": self.order.num_total, "train": self.train, "drop_last": self.drop_last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next pass yields the rest of the saved epoch."""
        if state.get("sets", 1) != 1:  # saved by a loader of several augmentation sets (sets.py)
            raise ValueError(f"cannot resume: state has sets={state['sets']}, this loader sets=1")
        for key in ("seed", "world_size", "batch_size", "num_total", "train", "drop_last"):
            mine = self.state_dict()[key]
            if key in state and state[key] != mine:
                raise ValueError(f"cannot resume: state has {key}={state[key]!r}, this loader {key}={mine!r}")
        self.epoch = int(state["epoch"])
        self._next_batch = int(state["batch"])
        self._resume = (self.epoch, self._next_batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Not a generator function: the cursor moves when iter() is called, not at the first next().
        epoch = self.epoch
        start = 0
        if self._resume is not None and self._resume[0] == epoch:
            start = self._resume[1]
        self._resume = None
        self._next_batch = start
        return self._pass(epoch, start)

    def _pass(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b, (images, labels) in enumerate(self._batches(epoch, start), start):
            # Counted before handing out: a state_dict() taken while the caller holds batch b
            # resumes at b + 1.
            self._next_batch = b + 1
            yield images, labels
        # Run to its end: what comes next is a new pass, i.e. the whole epoch again.
        if self.epoch == epoch and self._resume is None:
            self._next_batch = 0

    def _batches(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release worker processes/threads now rather than at garbage collection (optional)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, data_dir='{self.data_dir}', split={self.split!r}, "
                f"batch_size={self.batch_size}, device='{self.device}', dtype={self.dtype}, train={self.train}, "
                f"rank={self.rank}/{self.world_size}, batches={len(self)})")

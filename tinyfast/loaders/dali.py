"""``dali`` / ``dali-native``: NVIDIA DALI pipelines over the packed data (extra ``tinyfast[dali]``).

Both feed DALI through an external source that follows the shared sampler of
:mod:`tinyfast.loaders.base` (DALI's own readers shuffle and shard their own way, which would
break the shared order, sharding and exact resume), with one of two sources:

* ``source="pixels"`` (default): the packed uint8 rows, gathered from the memory-mapped ``.npy``;
* ``source="jpeg"``: the original JPEG bytes, sliced zero-copy out of the WebDataset shards
  (``DIR/<split>/jpeg/*.tar``, written by ``pack --jpeg-shards``; member ``%08d.jpg`` = row),
  decoded by ``fn.decoders.image`` (device ``"mixed"``, i.e. nvJPEG, on a GPU; ``"cpu"`` otherwise).

``dali`` then augments inside the pipeline with the plugin operator of :mod:`tinyfast.dali_ops`
(the fused op's own kernels, run and prefetched by DALI's executor), the external source feeding
each batch's parameters drawn by the shared sampler (for the output size of that batch): identical
pixels to the ``gpu`` loader. ``set_out_size`` applies from the next batch handed out: between
passes (as the trainer calls it) the next pass runs at the new size; in the middle of one, the
batches DALI prefetched at the old size are dropped and the pipeline restarts at the next batch
(the resume path), so those batches are exactly the ones a loader resumed there at the new size
gives. Without the built plugin (or with ``plugin=False``) the pipeline's uint8 NHWC batch goes to
``tinyfast.ops.augment`` through DLPack instead (no copy), with the same parameters and pixels,
each batch at the size current when it is handed out (no restart needed).

``dali-native`` instead runs DALI's own operators: ``fn.warp_affine`` (the same inverse
matrices, shifted to DALI's pixel-corner convention), ``fn.brightness_contrast`` (contrast about
DALI's fixed centre 128, brightness applied after it),
``fn.saturation`` and ``fn.crop_mirror_normalize`` -- the comparison point, with DALI's semantics
(uint8 rounding between operators), so its pixels differ slightly from the fused op's.

With ``device="cpu"`` the pipelines run on the CPU (``device_id=None``), so CI exercises them.
"""

from __future__ import annotations

import tarfile
import weakref
from typing import Iterator

import numpy as np
import torch

from tinyfast.augment import finish
from tinyfast.environment import venv_hint
from tinyfast.loaders import library_missing, register
from tinyfast.loaders.base import BaseLoader

_EXTRA = "pip install 'tinyfast[dali]' (NVIDIA DALI, package nvidia-dali-cuda130)"


def _import_dali():
    try:
        from nvidia.dali import fn, pipeline_def, types
    except ImportError as e:
        raise ImportError(f"the 'dali' loaders need NVIDIA DALI, which is not installed ({e}); "
                          f"{_EXTRA}{venv_hint()}") from None
    return fn, pipeline_def, types


def dali_matrix(theta: torch.Tensor) -> np.ndarray:
    """``tinyfast.ops`` inverse affine (pixel centres at integers) -> DALI ``warp_affine`` matrix
    (``[0, 0]`` is the corner of the first pixel, so centres sit at ``+0.5``): float32 (B, 2, 3)."""
    t = theta.to(torch.float64).clone()
    a = t[:, :, :2]
    t[:, :, 2] += 0.5 - a.sum(-1) * 0.5
    return t.to(torch.float32).numpy()


class _JpegShards:
    """Row -> JPEG bytes of the WebDataset shards, as zero-copy slices of memory-mapped tars."""

    def __init__(self, root, split: str, manifest: dict, n: int):
        from tinyfast.data import PackError

        shards = manifest["splits"][split].get("jpeg_shards") or []
        if not shards:
            raise PackError(f"{root / split / 'jpeg'}: no WebDataset shards (pack with --jpeg-shards, "
                            "or use source='pixels')")
        self.maps, where = [], {}
        for k, rel in enumerate(shards):
            path = root / rel
            try:
                with tarfile.open(path, "r:") as tar:
                    for m in tar:
                        stem, _, ext = m.name.rpartition(".")
                        if m.isfile() and ext.lower() in ("jpg", "jpeg") and stem.isdigit():
                            where[int(stem)] = (k, m.offset_data, m.size)
            except (tarfile.TarError, OSError) as e:
                raise PackError(f"{path}: unreadable tar shard ({e})") from None
            self.maps.append(np.memmap(path, dtype=np.uint8, mode="r"))
        missing = [i for i in range(n) if i not in where]
        if missing:
            raise PackError(f"{root / split / 'jpeg'}: shards lack {len(missing)} rows (first: {missing[0]:08d}.jpg)")
        self.where = [where[i] for i in range(n)]

    def __call__(self, idx) -> list[np.ndarray]:
        out = []
        for i in idx:
            k, off, size = self.where[i]
            out.append(self.maps[k][off:off + size])
        return out


class _Source:
    """The external source callback, holding the loader weakly: a bound method would make a
    loader <-> pipeline cycle that keeps DALI's threads and buffers alive until a GC pass."""

    def __init__(self, loader):
        self.loader = weakref.ref(loader)

    def __call__(self, info):
        loader = self.loader()
        if loader is None:
            raise StopIteration
        return loader._source(info)


class DaliLoader(BaseLoader):
    """DALI pipeline loader (see the module docstring).

    Extra args:
        native: use DALI's own augmentation operators (``dali-native``) instead of the fused op.
        source: ``"pixels"`` (packed rows) or ``"jpeg"`` (WebDataset shards decoded by DALI).
        prefetch: DALI's prefetch queue depth (default 2).
        plugin: run the fused op inside the pipeline as the DALI plugin operator
            (:mod:`tinyfast.dali_ops`): ``None`` (default) when it is built, ``True`` always (an
            error names the build command if it is missing), ``False`` never (the op then runs on
            the pipeline's output, as ``tinyfast.ops.augment``; same pixels).
    """

    name = "dali"

    def __init__(self, data_dir, split, batch_size, *, native: bool = False, source: str = "pixels",
                 prefetch: int = 2, plugin: bool | None = None, **kw):
        super().__init__(data_dir, split, batch_size, **kw)
        self._dali = _import_dali()
        if source not in ("pixels", "jpeg"):
            raise ValueError(f"source must be 'pixels' or 'jpeg', got {source!r}")
        self.native, self.source, self.prefetch = bool(native), source, int(prefetch)
        self.can_resize = not self.native  # DALI's own warp_affine keeps the packed size here
        if self.mean_image is not None:
            # The plugin operator and DALI's own ops know per-channel statistics only.
            if self.native:
                raise ValueError(f"normalize={self.normalize!r} is not available with dali-native (DALI's "
                                 "own normalisation is per channel); use the dali or gpu loader")
            if plugin:
                raise ValueError(f"normalize={self.normalize!r} is not available with plugin=True (the "
                                 "plugin operator normalises per channel); pass plugin=False or None")
            plugin = False
        self.in_pipeline = self._use_plugin(plugin) if not self.native else False
        self.name = "dali-native" if native else "dali"
        self._jpeg = (_JpegShards(self.data_dir, split, self.packed.manifest, len(self.packed))
                      if source == "jpeg" else None)
        self._threads = max(1, self.num_workers)
        self._pipe = self._hold = None
        self._reusable = False       # the pipeline ended its last pass cleanly and can be reset
        # (epoch, first batch, number of batches, output size) of the pass the source feeds.
        self._plan = (0, 0, 0, (self.height, self.width))
        self._ended = False
        self._sizes = self.order.batch_sizes()

    def _use_plugin(self, plugin: bool | None) -> bool:
        """Whether the fused op runs inside the pipeline (the plugin), else after it."""
        if plugin is False:
            return False
        from tinyfast import dali_ops

        if plugin is None and not dali_ops.plugin_available():
            return False
        dali_ops.load_plugin()  # names the build command when the plugin is missing
        self._as_torch = dali_ops.as_torch
        return True

    # ----- the pipeline ---------------------------------------------------------------------------
    def _source(self, info):
        """External source callback: inputs of the pass's ``info.iteration``-th batch."""
        epoch, start, nb, size = self._plan
        b = start + info.iteration
        if b >= nb:
            self._ended = True
            raise StopIteration
        idx = self.order.batch(epoch, b).numpy()
        if self._jpeg is not None:
            images = self._jpeg(idx)
        else:
            # Sorted gather from the memory map (sequential reads), then back to batch order.
            order = np.argsort(idx, kind="stable")
            rows = np.empty((len(idx),) + self.packed.images.shape[1:], np.uint8)
            rows[order] = self.packed.images[idx[order]]
            images = rows
        if self.native:
            if not self.train:
                return images
            theta, color = self.aug_params(epoch, b, len(idx))
            c = color.numpy()
            return images, dali_matrix(theta), c[:, 0].copy(), c[:, 1].copy(), c[:, 2].copy()
        if not self.in_pipeline:
            return images
        # Drawn for the size of this pipeline's pass (fed to the operator with it).
        theta, color = self.aug_params(epoch, b, len(idx), size)
        return images, theta.numpy(), color.numpy(), np.tile(np.array(size, np.int32), (len(idx), 1))

    def _build(self):
        """A built pipeline for this loader's settings (see :func:`_build_pipeline`)."""
        return _build_pipeline(self)

    def close(self) -> None:
        """Drop the pipeline (its threads and buffers)."""
        self._pipe, self._reusable, self._hold = None, False, None

    # ----- batches --------------------------------------------------------------------------------
    def _batches(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.in_pipeline:
            # DALI prefetches batches already augmented at one size: a size change mid-pass
            # restarts the pipeline at the next batch.
            return self.restart_on_resize(epoch, start, self._run)
        # Augmented after the pipeline, each batch at the size current when it is handed out.
        return self._run(epoch, start, self.produced_size)

    def _start(self, epoch: int, start: int, size: tuple[int, int]) -> None:
        """Point the source at ``start`` of ``epoch`` at ``size``; reset or rebuild the pipeline."""
        self._plan = (epoch, start, len(self._sizes), size)
        self._ended = False
        if self._pipe is not None and self._reusable:
            self._pipe.reset()
        else:
            # A pass abandoned or restarted mid-epoch leaves prefetched batches queued: start
            # afresh. On a GPU the last batch's copy out of DALI's buffer may still be queued.
            if self._pipe is not None and self.device.type == "cuda":
                torch.cuda.current_stream(self.device).synchronize()
            self._pipe = None
            self._pipe = self._build()
        self._reusable = False

    def _run(self, epoch: int, start: int, size: tuple[int, int]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start, ...`` of ``epoch`` out of one pipeline pass (plugin: at ``size``)."""
        nb = len(self._sizes)
        if start >= nb:
            return
        self._start(epoch, start, size)
        cuda = self.device.type == "cuda"
        labels_all = self.labels_cpu
        for b in range(start, nb):
            stream = torch.cuda.current_stream(self.device).cuda_stream if cuda else None
            (out,) = self._pipe.run(stream) if cuda else self._pipe.run()
            idx = self.order.batch(epoch, b)
            labels = self.to_device(labels_all.index_select(0, idx))
            batch = torch.from_dlpack(out.as_tensor())   # zero-copy view of DALI's output (NHWC)
            if self.in_pipeline:
                # Augmented inside the pipeline; DALI reuses that buffer: copy out (channels-last kept).
                images = self._as_torch(out, self.dtype).clone()
                if self.train and not self.policy.is_identity:
                    # Blur / cutout are not in the plugin: the same draws, after it.
                    images = finish(images, self.aug_params(epoch, b, len(idx), size))
            elif self.native:
                # DALI owns that buffer: copy out, to the requested dtype, channels-last.
                images = batch.permute(0, 3, 1, 2).to(self.dtype, copy=True,
                                                      memory_format=torch.channels_last)
                if self.train and not self.policy.is_identity:
                    images = finish(images, self.aug_params(epoch, b, len(idx)))
            else:
                params = self.device_aug_params(epoch, b, len(idx))
                theta, color = params
                images = self.fused_augment(batch, theta, color, params=params)
            # Keep DALI's output alive until the next one: on a GPU the op reading it is queued,
            # not done, when this batch is handed out.
            self._hold = out
            del batch
            yield images, labels
        self._reusable = self._ended


def _stage(loader):
    """The graph after decoding: ``(parameter inputs the source feeds, function(images, *params))``.

    Built from plain values (no ``loader`` in the graph: see :class:`_Source`).
    """
    fn, _, types = loader._dali
    mean, std, fill, dtype = loader.mean, loader.std, float(loader.policy.fill), loader.dtype
    if loader.in_pipeline:
        from tinyfast import dali_ops

        def plugin(images, theta, color, size):
            return dali_ops.augment(images, theta, color, mean=mean, std=std, dtype=dtype,
                                    out_size=size, fill=fill)
        return 3, plugin
    if not loader.native:
        return 0, lambda images: images
    h, w, augment = loader.height, loader.width, loader.train
    out_dtype = types.FLOAT16 if dtype == torch.float16 else types.FLOAT

    def native(images, *params):
        if augment:
            matrix, br, co, sa = params
            images = fn.warp_affine(images, matrix=matrix, size=[h, w], fill_value=fill,
                                    interp_type=types.INTERP_LINEAR, inverse_map=True)
            images = fn.brightness_contrast(images, brightness=br, contrast=co)
            images = fn.saturation(images, saturation=sa)
        return fn.crop_mirror_normalize(images, dtype=out_dtype, output_layout="HWC",
                                        mean=[255.0 * m for m in mean], std=[255.0 * s for s in std])
    return (4 if augment else 0), native


def _build_pipeline(loader):
    """The loader's DALI pipeline, built: external source (its :meth:`DaliLoader._source`), decode
    or reshape, then the stage of :func:`_stage`."""
    fn, pipeline_def, types = loader._dali
    gpu = loader.device.type == "cuda"
    jpeg = loader._jpeg is not None
    n_params, stage = _stage(loader)
    source = _Source(loader)  # no `loader` in the graph closure

    @pipeline_def(batch_size=loader.batch_size, num_threads=loader._threads,
                  device_id=loader.device.index if gpu else None, prefetch_queue_depth=loader.prefetch,
                  seed=loader.seed & 0x7FFFFFFF)
    def pipe():
        kw = dict(source=source, batch=True, batch_info=True)
        if n_params:
            images, *params = fn.external_source(num_outputs=1 + n_params, **kw)
        else:
            images, params = fn.external_source(**kw), []
        if jpeg:
            images = fn.decoders.image(images, device="mixed" if gpu else "cpu", output_type=types.RGB)
        else:
            images = fn.reshape(images, layout="HWC")
            if gpu:
                images = images.gpu()
        return stage(images, *params)

    p = pipe()
    p.build()
    return p


@register("dali", about="NVIDIA DALI pipeline over the packed .npy (or the JPEG shards, decoded by DALI) "
                        "feeding the fused op", check=lambda device: library_missing(_import_dali, device))
def _dali(data_dir, split, batch_size, **kw):
    return DaliLoader(data_dir, split, batch_size, native=False, **kw)


@register("dali-native", about="the same pipeline with DALI's own operators (warp_affine, brightness_contrast, "
                               "...), the comparison point",
          check=lambda device: library_missing(_import_dali, device, fused_op=False))
def _dali_native(data_dir, split, batch_size, **kw):
    return DaliLoader(data_dir, split, batch_size, native=True, **kw)

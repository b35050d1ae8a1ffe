"""``ffcv``: FFCV's ``Loader`` over ``DIR/<split>.beton`` feeding the fused op (extra ``tinyfast[ffcv]``).

The ``.beton`` is written by ``python -m tinyfast.pack --ffcv`` (fields ``image``: raw RGB, and
``label``: int, one record per packed row, same order). FFCV's pipeline decodes the raw pixels
(``SimpleRGBImageDecoder``), ``ToTensor`` and, on a GPU, ``ToDevice(non_blocking=True)``, giving a
uint8 NHWC batch on the device; the last stage, :class:`tinyfast.ffcv_ops.Augment`, runs
``tinyfast.ops.augment`` on it inside FFCV's prefetching thread, giving the channels-last,
augmented, normalised batch (so FFCV's ``ToTorchImage`` permute is unnecessary: the op reads NHWC
and writes channels-last). Identical pixels to the ``gpu`` loader for the same seed.
``set_out_size`` applies from the next batch handed out: between passes (as the trainer calls it)
the next pass starts at the new size; in the middle of one the batches FFCV prefetched at the old
size are dropped and FFCV's epoch restarts at the next batch (the resume path), so those batches
are exactly the ones a loader resumed there at the new size gives.

How the shared contract is met. FFCV's built-in orders (``SEQUENTIAL``, ``RANDOM``,
``QUASI_RANDOM``, with ``distributed=True`` emulating ``DistributedSampler``) draw their own
permutations and need ``torch.distributed`` initialised; instead the loader's traversal order is
replaced by one that returns exactly this rank's samples from :mod:`tinyfast.loaders.base`
(from the resume point on), and FFCV batches that order consecutively. So order, sharding,
coverage, ``set_epoch`` and exact mid-epoch resume are the shared ones. What is *not* used:
``QUASI_RANDOM`` (a page-local shuffle that saves disk reads when ``os_cache=False``): it cannot
reproduce the shared permutation; with the whole ``.beton`` in the page cache (``os_cache=True``,
the default here, and Tiny ImageNet is 1.2 GB) it would gain nothing.
(FFCV 1.0.2 accepts a custom order class only through that replacement: its constructor's check
``isinstance(order, TraversalOrder)`` rejects classes.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from tinyfast._util import torch_threads_kept
from tinyfast.environment import venv_hint
from tinyfast.loaders import library_missing, register
from tinyfast.loaders.base import BaseLoader

_EXTRA = "pip install 'tinyfast[ffcv]' (FFCV 1.0.2; needs libturbojpeg, OpenCV and pkg-config, see install.sh)"


def _import_ffcv():
    try:
        with torch_threads_kept():  # FFCV's import sets torch's thread count to 1
            from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
            from ffcv.loader import Loader, OrderOption
            from ffcv.transforms import Squeeze, ToDevice, ToTensor
            from ffcv.traversal_order.base import TraversalOrder
            from tinyfast.ffcv_ops import Augment
    except ImportError as e:
        raise ImportError(f"the 'ffcv' loader needs FFCV, which is not installed ({e}); "
                          f"{_EXTRA}{venv_hint()}") from None
    return dict(IntDecoder=IntDecoder, SimpleRGBImageDecoder=SimpleRGBImageDecoder, Loader=Loader,
                OrderOption=OrderOption, Squeeze=Squeeze, ToDevice=ToDevice, ToTensor=ToTensor,
                TraversalOrder=TraversalOrder, Augment=Augment)


class FFCVLoader(BaseLoader):
    """FFCV loader (see the module docstring).

    Extra args:
        beton: path of the ``.beton`` (default ``data_dir/<split>.beton``).
        os_cache: FFCV's ``os_cache`` (rely on the OS page cache; default True).
        batches_ahead: FFCV's prefetch depth (default 3).
    """

    name = "ffcv"
    can_resize = True

    def __init__(self, data_dir, split, batch_size, *, beton=None, os_cache: bool = True,
                 batches_ahead: int = 3, **kw):
        super().__init__(data_dir, split, batch_size, **kw)
        from tinyfast.data import PackError

        api = _import_ffcv()
        path = self.data_dir / f"{split}.beton" if beton is None else Path(beton)
        if not path.is_file():
            raise PackError(f"{path}: missing (pack with python -m tinyfast.pack ... --ffcv)")
        self.beton = path
        cuda = self.device.type == "cuda"
        to_dev = [api["ToDevice"](self.device, non_blocking=True)] if cuda else []
        self._augment = api["Augment"](self.policy, self.mean, self.std, self.dtype, self.seed,
                                       rank=self.rank, out_size=self.out_size, fill=self.policy.fill,
                                       mean_image=self.mean_image)
        pipelines = {
            "image": [api["SimpleRGBImageDecoder"](), api["ToTensor"]()] + to_dev + [self._augment],
            "label": [api["IntDecoder"](), api["ToTensor"](), api["Squeeze"]()] + to_dev,
        }
        try:
            with torch_threads_kept():  # FFCV's Loader sets torch's thread count to its workers'
                self._ffcv = api["Loader"](str(path), batch_size=self.batch_size,
                                           num_workers=max(1, self.num_workers),
                                           order=api["OrderOption"].SEQUENTIAL, drop_last=False,
                                           pipelines=pipelines, os_cache=os_cache,
                                           batches_ahead=batches_ahead)
        except (ValueError, OSError, AssertionError, KeyError, IndexError) as e:
            raise PackError(f"{path}: unreadable FFCV file ({type(e).__name__}: {e})") from None
        n = int(self._ffcv.reader.num_samples)
        if n != len(self.packed):
            raise PackError(f"{path}: {n} records, {self.data_dir / split / 'images.npy'} has {len(self.packed)}")
        self._pending = np.zeros(0, dtype=np.uint64)
        loader = self

        class _SharedOrder(api["TraversalOrder"]):
            """FFCV traversal order = this rank's remaining samples of the shared sampler."""

            def sample_order(self, epoch):
                return loader._pending

        self._ffcv.traversal_order = _SharedOrder(self._ffcv)

    def _batches(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # FFCV prefetches batches already augmented at one size: a size change mid-pass restarts
        # FFCV's epoch at the next batch.
        return self.restart_on_resize(epoch, start, self._run)

    def _run(self, epoch: int, start: int, size: tuple[int, int]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start, ...`` of ``epoch`` out of one FFCV epoch, augmented at ``size``."""
        sizes = self.order.batch_sizes()
        bs = self.batch_size
        self._pending = self.order.indices(epoch)[start * bs:sum(sizes)].numpy().astype(np.uint64)
        # Set before FFCV's thread starts, and not changed while it runs.
        self._augment.out_size = size
        self._augment.set_epoch(epoch, start)
        with torch_threads_kept():
            epoch_iter = iter(self._ffcv)
        try:
            for images, labels in epoch_iter:
                # FFCV reuses its output buffers for later batches: copy the labels out (the
                # images are the op's own fresh output).
                yield images, labels.reshape(images.shape[0]).to(torch.int64, copy=True)
        finally:
            _stop(epoch_iter)


def _stop(epoch_iter) -> None:
    """Stop an FFCV 1.0.2 ``EpochIterator`` thread left mid-epoch, and wait for it.

    Its own ``close()`` only sets a flag the thread reads when the prefetch queue is full, so the
    thread may go on augmenting batches nobody reads, or block for ever on a full queue at the
    end of the epoch (keeping its buffers). Emptying its batch list and its queue makes it end
    after the batch in hand; only then is its memory context closed (the thread reads through it).
    """
    if not epoch_iter.is_alive():
        epoch_iter.close()
        return
    epoch_iter.terminate_event.set()
    epoch_iter.iter_ixes = iter(())
    while epoch_iter.is_alive():
        while not epoch_iter.output_queue.empty():
            epoch_iter.output_queue.get_nowait()
        epoch_iter.join(timeout=0.01)
    epoch_iter.close()


@register("ffcv", about="FFCV's Loader over DIR/<split>.beton (pack --ffcv) feeding the fused op",
          check=lambda device: library_missing(_import_ffcv, device))
def _ffcv(data_dir, split, batch_size, **kw):
    return FFCVLoader(data_dir, split, batch_size, **kw)

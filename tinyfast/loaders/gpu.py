"""``gpu``: the whole split resident in device memory, one fused augment call per batch.

The split is copied once to the device as uint8 NHWC (Tiny ImageNet's 100k train images are
1.2 GB). Each epoch's order (from :mod:`tinyfast.loaders.base`) is copied to the device once; each
batch is then a single ``tinyfast.ops.augment(src, theta, color, mean, std, index=...)`` call that
gathers, warps, colours, normalises and writes channels-last output. Parameters of batch ``b + 1``
are drawn on the host and copied (pinned, non-blocking) right after batch ``b``'s kernel is
launched, so they are ready when asked for and the host never waits for the device: no
synchronisation per batch. (A ``set_out_size`` in between makes batch ``b + 1`` redraw them for
the new size.)

When the split does not fit (``resident="auto"`` checks free device memory) it stays in pinned
host memory instead and each batch's rows are gathered on the host and copied asynchronously
(``resident=False`` forces this; on CPU it exercises the same code path).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from tinyfast.loaders import fused_op_missing, register
from tinyfast.loaders.base import BaseLoader


_CHUNK_BYTES = 64 << 20  # rows read from the memory map per copy while loading the split


def _load_rows(images: np.ndarray, device: torch.device, pin: bool) -> torch.Tensor:
    """The memory-mapped uint8 rows as one tensor on ``device`` (in pinned host memory if ``pin``).

    Read in chunks straight into the destination, so the host never holds a second full copy of
    the split (1.2 GB for Tiny ImageNet's train split).
    """
    out = torch.empty(images.shape, dtype=torch.uint8, device=device, pin_memory=pin)
    step = max(1, _CHUNK_BYTES // max(1, images[:1].nbytes))
    for i in range(0, len(images), step):
        # np.array: a writable copy of the chunk (the memmap is read-only).
        out[i:i + step].copy_(torch.from_numpy(np.array(images[i:i + step])))
    return out


@register("gpu", about="device-resident: the whole split held in the device's memory (RAM when the device "
                       "is the CPU), one fused op call per batch", check=fused_op_missing)
class GPULoader(BaseLoader):
    """Device-resident loader (see the module docstring).

    Extra args:
        resident: ``True`` (copy the split to the device), ``False`` (pinned host memory + per-batch
            asynchronous copies), or ``"auto"`` (default: resident when the split takes at most
            ``resident_fraction`` of the device's free memory).
        resident_fraction: see ``resident``; the rest is left for the model (default 0.5).
    """

    name = "gpu"
    can_resize = True

    def __init__(self, data_dir, split, batch_size, *, resident="auto", resident_fraction: float = 0.5,
                 **kw):
        super().__init__(data_dir, split, batch_size, **kw)
        images = self.packed.images
        if resident == "auto":
            resident = self._fits(images.nbytes, resident_fraction)
        self.resident = bool(resident)
        cuda = self.device.type == "cuda"
        if self.resident:
            self.src, self.src_host = _load_rows(images, self.device, pin=False), None
        else:
            self.src, self.src_host = None, _load_rows(images, torch.device("cpu"), pin=cuda)
        self.labels_dev = self.labels_cpu.to(self.device)

    def _fits(self, nbytes: int, fraction: float) -> bool:
        if self.device.type != "cuda":
            return True
        free, _total = torch.cuda.mem_get_info(self.device)
        return nbytes <= fraction * free

    def _rows(self, idx_cpu: torch.Tensor) -> torch.Tensor:
        """Non-resident path: gather the rows on the host into pinned memory, copy asynchronously."""
        n = idx_cpu.numel()
        rows = torch.empty((n, self.height, self.width, 3), dtype=torch.uint8,
                           pin_memory=self.device.type == "cuda")
        torch.index_select(self.src_host, 0, idx_cpu, out=rows)
        if self.device.type == "cpu":
            return rows
        # A fresh pinned block per batch: the caching host allocator does not hand it out again
        # until this copy has completed, so nothing is overwritten in flight.
        return rows.to(self.device, non_blocking=True)

    def _batches(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order
        sizes = order.batch_sizes()
        nb = len(sizes)
        if start >= nb:
            return
        idx_cpu = order.indices(epoch)
        idx_dev = self.to_device(idx_cpu)            # once per epoch
        bs = order.batch_size

        def prepare(b):
            n = sizes[b]
            sl = slice(b * bs, b * bs + n)
            size = self.produced_size
            params = self.device_aug_params(epoch, b, n, size)
            rows = None if self.resident else self._rows(idx_cpu[sl])
            return sl, size, params, rows

        nxt = prepare(start)
        for b in range(start, nb):
            sl, size, params, rows = nxt
            if size != self.produced_size:
                # set_out_size() while the caller held batch b - 1: redraw for the new size.
                size = self.produced_size
                params = self.device_aug_params(epoch, b, sl.stop - sl.start, size)
            theta, color = params
            idx = idx_dev[sl]
            if self.resident:
                images = self.fused_augment(self.src, theta, color, index=idx, out_size=size, params=params)
            else:
                images = self.fused_augment(rows, theta, color, out_size=size, params=params)
            labels = self.labels_dev.index_select(0, idx)
            # Batch b's kernel is queued; prepare b + 1 while it (and the caller's step) runs.
            nxt = prepare(b + 1) if b + 1 < nb else None
            yield images, labels

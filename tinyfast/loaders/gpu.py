"""``gpu``: the whole split resident in device memory, one fused augment call per batch.

The split is copied once to the device as uint8 NHWC (Tiny ImageNet's 100k train images are
1.2 GB). Each epoch's order (from :mod:`tinyfast.loaders.base`) is copied to the device once; each
batch is then a single ``tinyfast.ops.augment(src, theta, color, mean, std, index=...)`` call that
gathers, warps, colours, normalises and writes channels-last output. Parameters of batch ``b + 1``
are drawn on the host and copied (pinned, non-blocking) right after batch ``b``'s kernel is
launched, so they are ready when asked for and the host never waits for the device: no
synchronisation per batch.

When the split does not fit (``resident="auto"`` checks free device memory) it stays in pinned
host memory instead and each batch's rows are gathered on the host and copied asynchronously
(``resident=False`` forces this; on CPU it exercises the same code path).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from tinyfast.loaders import register
from tinyfast.loaders.base import BaseLoader


def _pinned(t: torch.Tensor) -> torch.Tensor:
    # Pinned memory needs CUDA; on CPU-only machines the plain tensor is what gets used.
    return t.pin_memory() if torch.cuda.is_available() else t


@register("gpu")
class GPULoader(BaseLoader):
    """Device-resident loader (see the module docstring).

    Extra args:
        resident: ``True`` (copy the split to the device), ``False`` (pinned host memory + per-batch
            asynchronous copies), or ``"auto"`` (default: resident when the split takes at most
            ``resident_fraction`` of the device's free memory).
        resident_fraction: see ``resident``; the rest is left for the model (default 0.5).
    """

    name = "gpu"

    def __init__(self, data_dir, split, batch_size, *, resident="auto", resident_fraction: float = 0.5,
                 **kw):
        super().__init__(data_dir, split, batch_size, **kw)
        from tinyfast import ops  # the compiled extension; imported when a loader is built

        self._augment = ops.augment
        images = self.packed.images
        if resident == "auto":
            resident = self._fits(images.nbytes, resident_fraction)
        self.resident = bool(resident)
        # np.array reads the memory-mapped file into RAM once (a copy; the memmap is read-only).
        host = torch.from_numpy(np.array(images))
        if self.resident:
            self.src = host.to(self.device)
            self.src_host = None
        else:
            self.src = None
            self.src_host = _pinned(host)
        del host
        self.labels_dev = self.labels_cpu.to(self.device)
        self.mean_dev = self.mean_t.to(self.device)
        self.std_dev = self.std_t.to(self.device)
        self.fill = float(getattr(self.policy, "fill", 0.0))

    def _fits(self, nbytes: int, fraction: float) -> bool:
        if self.device.type != "cuda":
            return True
        free, _total = torch.cuda.mem_get_info(self.device)
        return nbytes <= fraction * free

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":
            return t
        return _pinned(t).to(self.device, non_blocking=True)

    def _params(self, epoch: int, b: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw batch ``b``'s parameters on the host and start their copy: (theta, color) on device."""
        theta, color = self.aug_params(epoch, b, n)
        # One copy for both: (n, 6 + 3) float32.
        both = torch.cat([theta.reshape(n, 6), color.reshape(n, 3)], dim=1)
        both = self._to_device(both)
        return both[:, :6].reshape(n, 2, 3), both[:, 6:].contiguous()

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
        idx_dev = self._to_device(idx_cpu)           # once per epoch
        bs = order.batch_size

        def prepare(b):
            n = sizes[b]
            sl = slice(b * bs, b * bs + n)
            theta, color = self._params(epoch, b, n)
            rows = None if self.resident else self._rows(idx_cpu[sl])
            return sl, theta, color, rows

        nxt = prepare(start)
        for b in range(start, nb):
            sl, theta, color, rows = nxt
            idx = idx_dev[sl]
            if self.resident:
                images = self._augment(self.src, theta, color, self.mean_dev, self.std_dev, index=idx,
                                       dtype=self.dtype, fill=self.fill)
            else:
                images = self._augment(rows, theta, color, self.mean_dev, self.std_dev,
                                       dtype=self.dtype, fill=self.fill)
            labels = self.labels_dev.index_select(0, idx)
            # Batch b's kernel is queued; prepare b + 1 while it (and the caller's step) runs.
            nxt = prepare(b + 1) if b + 1 < nb else None
            yield images, labels

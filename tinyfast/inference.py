"""Running a model over a loader: the AMP policy, evaluation (loss, top-1/top-5, per-class
counts) and softmax probabilities. Shared by the trainer and ``evaluate``/``predict``."""

from __future__ import annotations

import contextlib
from functools import partial

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from tinyfast import progress as _progress

__all__ = ["cpu_has_native_bf16", "amp_settings", "autocast_for", "evaluate", "predict_probs", "dist_info",
           "progress_bar"]


class _Lines(_progress.LineProgress):
    """Plain progress lines whose closing line appears only after periodic ones: a loop shorter
    than the interval stays silent (its caller logs the result anyway)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._spoke = False

    def update(self, n: int = 1) -> None:
        before = self._last
        super().update(n)
        self._spoke = self._spoke or self._last != before

    def close(self) -> None:
        self.disable = self.disable or not self._spoke
        super().close()


def progress_bar(iterable=None, *, show: bool, every: float, **kw):
    """Progress of a loop: a tqdm bar when ``show`` and on a terminal; otherwise a plain line
    every ``every`` seconds (``0``: silent) -- so ``--no-progress`` or a log file still get a
    line now and then, never ``\\r`` frames. ``kw`` go to :func:`tinyfast.progress.progress`."""
    if show and _progress.mode() == "bar":
        return _progress.progress(iterable, **kw)
    return _Lines(iterable, interval=every, disable=every <= 0 or _progress.mode() == "off", **kw)


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere oneDNN emulates
    it and bf16 autocast is slower than fp32 (measured 2-3x slower for ResNet-18 on AVX-512 cores)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def amp_settings(device: torch.device, amp: bool, amp_dtype: str = "auto") -> tuple[bool, torch.dtype, str]:
    """(autocast enabled, autocast dtype, note) for ``device``.

    ``auto``: bf16 on CUDA devices that compute it natively (compute capability 8.0 on), else fp16
    (with a GradScaler); on CPU bf16 only where the CPU has native bf16, otherwise AMP stays off
    (the note says why).
    """
    if not amp:
        return False, torch.bfloat16, ""
    if amp_dtype == "bf16":
        return True, torch.bfloat16, ""
    if amp_dtype == "fp16":
        return True, torch.float16, ""
    if device.type == "cuda":
        # including_emulation=False: torch's default also says True where bf16 is only emulated (V100, T4).
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return (True, torch.bfloat16, "") if native else (True, torch.float16, "")
    if cpu_has_native_bf16():
        return True, torch.bfloat16, ""
    return False, torch.bfloat16, ("--amp: this CPU has no native bf16 (AVX512-BF16/AMX), where bf16 is "
                                   "slower than fp32; training in fp32 (force with --amp-dtype bf16)")


def autocast_for(device: torch.device, enabled: bool, dtype: torch.dtype):
    """A zero-argument ``torch.autocast`` factory: AMP on or off without a branch at the call site."""
    return partial(torch.autocast, device_type=device.type, dtype=dtype, enabled=enabled)


def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def evaluate(model: nn.Module, loader, num_classes: int, *, autocast=contextlib.nullcontext,
             memory_format=torch.channels_last, progress: bool = False, every: float = 0.0,
             desc: str = "eval") -> dict:
    """Loss (plain cross-entropy), top-1, top-5 and per-class counts of ``model`` over ``loader``.

    Accumulates on the device and synchronises once at the end. Under DDP the counts of all ranks
    are summed (the loaders' evaluation shards cover every sample exactly once). ``progress`` /
    ``every``: see :func:`progress_bar`.

    Returns:
        ``{"loss", "top1", "top5", "n", "per_class_correct" (np int64), "per_class_count"}``.
    """
    was_training = model.training
    model.eval()
    dev = loader.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    top5 = torch.zeros((), dtype=torch.int64, device=dev)
    correct = torch.zeros(num_classes, dtype=torch.int64, device=dev)
    count = torch.zeros(num_classes, dtype=torch.int64, device=dev)
    k = min(5, num_classes)
    for x, y in progress_bar(loader, show=progress, every=every, desc=desc, unit="batch"):
        x = x.contiguous(memory_format=memory_format)
        with autocast():
            out = model(x)
        out = out.float()
        loss_sum += F.cross_entropy(out, y, reduction="sum").double()
        pred = out.topk(k, dim=1).indices
        # Fixed-size scatter-adds: boolean indexing and bincount size their output from the data,
        # which waits for the device (2-3 syncs per batch on CUDA).
        top5 += (pred == y[:, None]).any(1).sum()
        correct.index_add_(0, y, (pred[:, 0] == y).long())
        count.index_add_(0, y, torch.ones_like(y))
    model.train(was_training)
    _, world = dist_info()
    if world > 1:
        packed = torch.cat([loss_sum.view(1), top5.view(1).double(), correct.double(), count.double()])
        dist.all_reduce(packed)
        loss_sum, top5 = packed[0], packed[1].long()
        correct, count = packed[2:2 + num_classes].long(), packed[2 + num_classes:].long()
    n = int(count.sum().item())
    c = correct.cpu().numpy()
    return {"loss": float(loss_sum.item()) / max(n, 1), "top1": float(c.sum()) / max(n, 1),
            "top5": float(top5.item()) / max(n, 1), "n": n,
            "per_class_correct": c, "per_class_count": count.cpu().numpy()}


@torch.no_grad()
def predict_probs(model: nn.Module, loader, *, autocast=contextlib.nullcontext,
                  memory_format=torch.channels_last, tta: bool = False, progress: bool = False,
                  every: float = 0.0, desc: str = "predict") -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities (float32, CPU, loader order) and labels of a whole (unsharded) loader.

    ``tta`` averages with the horizontally flipped image; ``progress``/``every``: see :func:`progress_bar`.
    """
    model.eval()
    probs, labels = [], []
    for x, y in progress_bar(loader, show=progress, every=every, desc=desc, unit="batch"):
        x = x.contiguous(memory_format=memory_format)
        with autocast():
            p = model(x).float().softmax(1)
            if tta:
                p = 0.5 * (p + model(x.flip(3)).float().softmax(1))
        probs.append(p.cpu())
        labels.append(y.cpu())
    return torch.cat(probs), torch.cat(labels)

"""The contrast mean is summed in one order on every device: the CUDA block reduction's.

With contrast factor 0 and saturation 1 every output pixel is the normalised mean itself, so the
op's output exposes the float32 mean bit for bit. The reference below sums in the order the CUDA
kernel does (csrc/augment_cuda.cu): 256 threads, thread t taking pixels t, t + 256, ... as float32
partial sums of at most 64 terms, each flushed to the thread's float64 accumulator; the threads'
values folded in halves within each warp of 32 (the xor butterfly), then the 8 warps' values the
same way; mean = float32(total / (H*W)). The CPU kernel must give exactly that, so CPU and CUDA
outputs are equal for every policy, contrast included.
"""
import numpy as np
import pytest
import torch

from test_augment_op import MEAN, STD, ident_theta, ops

THREADS, CHUNK = 256, 64
pytestmark = pytest.mark.skipif(not ops.is_built(), reason="tinyfast._C is not built")


def _fold(v: np.ndarray) -> np.float64:
    v = v.astype(np.float64).copy()
    while len(v) > 1:
        half = len(v) // 2
        v = v[:half] + v[half:]
    return v[0]


def cuda_order_mean(img: np.ndarray, cb: float) -> np.float32:
    x = img.reshape(-1, 3).astype(np.float32)
    cb = np.float32(cb)
    terms = [np.float32(w) * np.clip(cb * x[:, c], np.float32(0), np.float32(255))
             for c, w in enumerate((0.299, 0.587, 0.114))]
    lum = (terms[0] + terms[1]) + terms[2]
    assert lum.dtype == np.float32
    hw = len(lum)
    acc = np.zeros(THREADS, np.float64)
    for tid in range(THREADS):
        for i0 in range(tid, hw, CHUNK * THREADS):
            end = min(hw, i0 + CHUNK * THREADS)
            part = np.float32(0)
            for i in range(i0, end, THREADS):
                part = np.float32(part + lum[i])
            acc[tid] += np.float64(part)
    warps = np.array([_fold(acc[w * 32:(w + 1) * 32]) for w in range(THREADS // 32)])
    return np.float32(_fold(warps) / np.float64(hw))


def _normalised(m: np.float32) -> torch.Tensor:
    mean, std = torch.tensor(MEAN, dtype=torch.float32), torch.tensor(STD, dtype=torch.float32)
    return torch.tensor(float(m), dtype=torch.float32) * (1 / (255 * std)) + (-mean / std)


@pytest.mark.parametrize("h,w", [(64, 64), (130, 129), (13, 10), (200, 100)],
                         ids=["64x64", "130x129-two-chunks", "13x10-fewer-pixels-than-threads", "200x100"])
def test_cpu_contrast_mean_follows_the_cuda_reduction_order(h, w):
    gen = torch.Generator().manual_seed(h * 7 + w)
    n = 12
    src = torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=gen)
    cb = 0.6 + 0.8 * torch.rand(n, generator=gen)
    color = torch.stack([cb, torch.zeros(n), torch.ones(n)], 1)
    out = ops.augment(src, ident_theta(n), color, MEAN, STD, out_size=(8, 8), dtype=torch.float32)
    for i in range(n):
        want = _normalised(cuda_order_mean(src[i].numpy(), float(color[i, 0])))
        got = out[i].permute(1, 2, 0).reshape(-1, 3)
        assert torch.equal(got, want.expand_as(got)), (i, got[0], want)

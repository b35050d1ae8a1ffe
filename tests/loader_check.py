"""Shared by the loader tests (``test_loaders.py``, ``test_loaders_pixels.py``): the tiny packed set,
the builders and the references, each independent of the loaders (float64 normalisation of the packed
rows; ``tinyfast.ops.augment`` applied directly to them with the shared sampler's parameters)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import tinyfast.loaders as L
from tinyfast.data import open_packed

N_CLASSES, PER_CLASS, VAL_PER_CLASS = 4, 16, 4   # 64 train, 16 val images of 64x64
NEEDS = {"dali": "nvidia.dali", "dali-native": "nvidia.dali", "ffcv": "ffcv"}
FUSED = ["gpu", "dali", "ffcv"]                    # loaders that use tinyfast.ops.augment


@pytest.fixture(scope="session")
def packed(tmp_path_factory) -> Path:
    """Synthetic set packed with its JPEG tree kept (for ``torch``) and WebDataset shards (for
    ``dali`` with ``source="jpeg"``); plus ``<split>.beton`` files when FFCV is installed."""
    from tinyfast.pack import pack_synthetic

    base = tmp_path_factory.mktemp("loaders")
    out = base / "packed"
    pack_synthetic(out, classes=N_CLASSES, per_class=PER_CLASS, val_per_class=VAL_PER_CLASS,
                   test_count=8, tree=base / "tree", jpeg_shards=True,
                   ffcv=importlib.util.find_spec("ffcv") is not None, progress=False, workers=1, log=None)
    return out


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    """Tiny per-sample tensors: on a loaded 2-core machine torch's thread pool costs ~10x more
    than it saves (DataLoader workers use one thread each for the same reason)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make(name, data, split="train", batch_size=16, **kw):
    """Build a loader, skipping (with the reason) when its optional library is missing."""
    if name in NEEDS:
        pytest.importorskip(NEEDS[name], reason=f"loader {name!r} needs the optional "
                            f"{'dali' if 'dali' in name else 'ffcv'} extra (pip install .[...])")
    kw.setdefault("num_workers", 0)
    if name == "ffcv" and not (Path(data) / f"{split}.beton").exists():
        pytest.skip("no .beton in the packed data (FFCV writer unavailable)")
    return L.build(name, data, split, batch_size, **kw)


def normalised_rows(data, split) -> torch.Tensor:
    """Float64 ``(N, 3, H, W)``: the packed rows normalised with the dataset's mean/std."""
    ps = open_packed(data, split)
    x = torch.from_numpy(np.array(ps.images)).to(torch.float64).permute(0, 3, 1, 2) / 255
    mean = torch.tensor(ps.mean, dtype=torch.float32).double().view(1, 3, 1, 1)
    std = torch.tensor(ps.std, dtype=torch.float32).double().view(1, 3, 1, 1)
    return (x - mean) / std


def match_rows(images: torch.Tensor, ref: torch.Tensor, tol: float = 0.05) -> list[int]:
    """Row index of ``ref`` each (un-augmented) image is; asserts the match is (near) exact."""
    d = (images.double().flatten(1)[:, None, :] - ref.flatten(1)[None]).abs().mean(-1)
    best = d.argmin(1)
    assert float(d.min(1).values.max()) < tol, "a delivered image matches no packed row"
    return best.tolist()


def run_epoch(loader, epoch=0):
    loader.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in loader]


ALL = L.list_loaders()



def fused_reference(ld, epoch, b):
    """``tinyfast.ops.augment`` applied to the packed rows with the shared sampler's parameters."""
    from tinyfast import ops

    ps = open_packed(ld.data_dir, ld.split)
    idx = ld.order.batch(epoch, b)
    params = ld.aug_params(epoch, b, len(idx))
    src = torch.from_numpy(np.array(ps.images))
    x = ops.augment(src, params.theta, params.color, ps.mean, ps.std, index=idx, dtype=ld.dtype,
                    fill=ld.policy.fill, out_size=ld.out_size)
    # Blur only the samples drawn for it, then cut each box out by slicing (not via finish()).
    if params.blur is not None and bool((params.blur > 0).any()):
        on = torch.nonzero(params.blur > 0).flatten()
        x[on] = ops.blur5(x[on].contiguous(memory_format=torch.channels_last), params.blur[on])
    if params.cutout is not None:
        for i, (y0, x0, y1, x1) in enumerate(params.cutout.tolist()):
            x[i, :, y0:y1, x0:x1] = 0
    return x, torch.from_numpy(ps.labels)[idx]


BLUR_CUTOUT = "blur-cutout"   # a policy with both, each on about half the samples


def policy_of(name):
    from tinyfast.augment import Policy
    if name == BLUR_CUTOUT:
        return Policy(rotate=10.0, hflip=0.5, blur=0.5, blur_sigma=(0.3, 2.0), cutout=0.5,
                      cutout_size=(0.2, 0.5))
    return name



@pytest.fixture(scope="module")
def truncated(packed, tmp_path_factory) -> Path:
    """A copy of the packed set (symlinks) whose train/images.npy is cut short."""
    bad = tmp_path_factory.mktemp("truncated")
    for f in packed.rglob("*"):
        if f.is_file():
            (bad / f.relative_to(packed)).parent.mkdir(parents=True, exist_ok=True)
            (bad / f.relative_to(packed)).symlink_to(f)
    target = bad / "train" / "images.npy"
    target.unlink()
    target.write_bytes((packed / "train" / "images.npy").read_bytes()[:5000])
    return bad

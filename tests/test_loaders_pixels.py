"""The fused loaders (``gpu``, ``dali``, ``ffcv``) deliver the op's exact pixels: against
``tinyfast.ops.augment`` applied to the packed rows with the shared sampler's parameters, across
output sizes changed mid-epoch, DALI's own operators and JPEG decode, the host fallback, and CUDA
against the CPU kernel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyfast.data import open_packed
from tinyfast.loaders.base import derive_seed

from loader_check import BLUR_CUTOUT, FUSED, fused_reference, make, normalised_rows, policy_of, run_epoch
# the shared fixtures, used by name
from loader_check import _one_intra_op_thread, packed  # noqa: F401


@pytest.mark.parametrize("policy", ["standard", BLUR_CUTOUT])
@pytest.mark.parametrize("name", FUSED)
def test_fused_loaders_identical_pixels(name, policy, packed):
    ld = make(name, packed, "train", 16, train=True, policy=policy_of(policy), seed=5, rank=1, world_size=2)
    batches = run_epoch(ld, epoch=1)
    assert len(batches) == 2
    for b, (x, y) in enumerate(batches):
        want_x, want_y = fused_reference(ld, 1, b)
        assert torch.equal(x, want_x), f"{name}: batch {b} differs from ops.augment on the packed rows"
        assert torch.equal(y, want_y)


@pytest.mark.parametrize("name", FUSED)
def test_set_out_size_resamples_in_the_op(name, packed):
    """Progressive resizing: the fused op writes the smaller size directly, with parameters drawn
    for that output size from the batch's own seed."""
    from tinyfast import ops
    from tinyfast.augment import get_policy

    ld = make(name, packed, "train", 16, train=True, policy="standard", seed=3)
    assert ld.can_resize
    ld.set_out_size((32, 40))
    x, y = run_epoch(ld, epoch=0)[0]
    assert x.shape == (16, 3, 32, 40) and x.is_contiguous(memory_format=torch.channels_last)
    ps = open_packed(packed, "train")
    idx = ld.order.batch(0, 0)
    g = torch.Generator().manual_seed(derive_seed(3, 0, 0, 0))
    theta, color = get_policy("standard").sample(len(idx), 64, 64, g, out_size=(32, 40))
    want = ops.augment(torch.from_numpy(np.array(ps.images)), theta, color, ps.mean, ps.std, index=idx,
                       out_size=(32, 40), dtype=ld.dtype, fill=get_policy("standard").fill)
    assert torch.equal(x, want)
    assert torch.equal(y, torch.from_numpy(ps.labels)[idx])
    ld.set_out_size(None)
    assert run_epoch(ld, epoch=0)[0][0].shape[-2:] == (64, 64)
    with pytest.raises(ValueError, match=">= 1"):
        ld.set_out_size((0, 8))


@pytest.mark.parametrize("name", FUSED)
def test_set_out_size_mid_epoch_from_the_next_batch(name, packed):
    """``set_out_size`` while the caller holds batch b: batch b + 1 is produced at the new size
    with parameters drawn for that size (not those prepared ahead for the old one)."""
    ld = make(name, packed, "train", 8, train=True, policy="standard", seed=3)
    ld.set_epoch(0)
    it = iter(ld)
    x0, _ = next(it)
    want0, _ = fused_reference(ld, 0, 0)
    assert torch.equal(x0, want0)
    ld.set_out_size((32, 32))
    x1, y1 = next(it)
    want1, want_y1 = fused_reference(ld, 0, 1)      # drawn for 32x32 from batch 1's seed
    assert x1.shape[-2:] == (32, 32) and torch.equal(x1, want1) and torch.equal(y1, want_y1)
    ld.set_out_size(None)
    x2, _ = next(it)
    assert torch.equal(x2, fused_reference(ld, 0, 2)[0])


@pytest.mark.parametrize("name", FUSED)
def test_set_out_size_many_times_mid_epoch_equals_resuming_there(name, packed):
    """Several size changes in one pass (back and forth, a repeat, one on the last batch): every
    batch equals the ``gpu`` loader resumed at that batch at that size, the state stays what
    comes next, and the next pass runs whole at the last size."""
    kw = dict(train=True, policy="standard", seed=6)
    ld = make(name, packed, "train", 8, **kw)
    ref = make("gpu", packed, "train", 8, **kw)
    changes = {0: (32, 32), 2: (40, 48), 3: (40, 48), 4: None, 7: (24, 24)}  # after batch b
    ld.set_epoch(0)
    it, size = iter(ld), None
    for b in range(len(ld)):
        state = ld.state_dict()
        x, y = next(it)
        assert ld.state_dict()["batch"] == b + 1
        ref.load_state_dict(state)
        ref.set_out_size(size)
        want_x, want_y = next(iter(ref))
        assert x.shape[-2:] == (size or (64, 64)), f"{name}: batch {b} at the wrong size"
        assert torch.equal(x, want_x) and torch.equal(y, want_y), f"{name}: batch {b} differs"
        if b in changes:
            size = changes[b]
            ld.set_out_size(size)
    with pytest.raises(StopIteration):
        next(it)
    assert ld.state_dict()["batch"] == 0
    ref.set_out_size((24, 24))
    got, want = run_epoch(ld, 1), run_epoch(ref, 1)
    assert len(got) == len(want) == len(ld)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(got, want))


@pytest.mark.parametrize("name", ["torch", "torch-npy", "dali-native"])
def test_loaders_without_the_op_refuse_out_size(name, packed):
    ld = make(name, packed, "train", 16)
    assert not ld.can_resize
    with pytest.raises(ValueError, match="cannot change its output size"):
        ld.set_out_size((32, 32))


def test_dali_native_close_to_fused(packed):
    """DALI's own operators vs the fused op on the same parameters: geometry (matrix convention),
    brightness and saturation agree to uint8 rounding; contrast is left out (DALI contrasts about
    a fixed 128, the op about the image's mean luminance)."""
    from tinyfast.augment import Policy

    pol = Policy(rotate=30, zoom=(0.8, 1.2), shear=10, translate=0.1, hflip=0.5, vflip=0.5,
                 brightness=(0.7, 1.3), saturation=(0.5, 1.5), fill=114)
    kw = dict(train=True, policy=pol, seed=3, dtype=torch.float32)
    fused = torch.cat([x for x, _ in run_epoch(make("dali", packed, "train", 16, **kw))])
    native = torch.cat([x for x, _ in run_epoch(make("dali-native", packed, "train", 16, **kw))])
    d = (fused - native).abs()
    assert d.max() < 0.06 and d.mean() < 0.01      # one uint8 step is 1/255/std ~ 0.018


def test_dali_jpeg_shards_decode_to_packed_rows(packed):
    """``source="jpeg"``: DALI decodes the WebDataset shards to exactly the packed rows."""
    ld = make("dali", packed, "val", 16, dtype=torch.float32, source="jpeg")
    x = torch.cat([x for x, _ in ld]).double()
    assert (x - normalised_rows(packed, "val")).abs().max() < 1e-4


def test_gpu_host_fallback_matches_resident(packed):
    kw = dict(train=True, policy="standard", seed=2)
    a = make("gpu", packed, "train", 16, resident=True, **kw)
    b = make("gpu", packed, "train", 16, resident=False, **kw)
    assert a.resident and not b.resident
    for (xa, ya), (xb, yb) in zip(run_epoch(a), run_epoch(b)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


# ----------------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["gpu", "dali", "ffcv", "torch-npy"])
@pytest.mark.parametrize("policy, normalize", [("standard", "channel"), (BLUR_CUTOUT, "mean-image")])
def test_cuda_matches_cpu(name, policy, normalize, packed):
    kw = dict(train=True, policy=policy_of(policy), seed=4, normalize=normalize)
    cpu = run_epoch(make(name, packed, "train", 16, device="cpu", **kw))
    gpu = run_epoch(make(name, packed, "train", 16, device="cuda", **kw))
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert xg.is_cuda and yg.is_cuda and xg.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(yc, yg.cpu())
        if name != "torch-npy":  # the fused op: CPU and CUDA kernels agree to fp16 rounding
            assert (xc.float() - xg.float().cpu()).abs().max() < 2e-2


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("resident", [True, False])
def test_cuda_set_out_size_mid_epoch(resident, packed):
    """On the GPU batch b + 1's parameters are copied ahead, asynchronously: a size change while
    the caller holds batch b still gives batch b + 1 the geometry drawn for the new size."""
    ld = make("gpu", packed, "train", 8, train=True, policy="standard", seed=3, device="cuda", resident=resident)
    ld.set_epoch(0)
    it = iter(ld)
    next(it)
    ld.set_out_size((32, 32))
    x1, _ = next(it)
    want, _ = fused_reference(ld, 0, 1)             # CPU kernel: equal to fp16 rounding
    assert x1.shape[-2:] == (32, 32)
    assert (x1.float().cpu() - want.float()).abs().max() < 2e-2


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gpu_fallback_matches_resident(packed):
    kw = dict(train=True, policy="standard", seed=2, device="cuda")
    a = run_epoch(make("gpu", packed, "train", 16, resident=True, **kw))
    b = run_epoch(make("gpu", packed, "train", 16, resident=False, **kw))
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)

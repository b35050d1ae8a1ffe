"""tinyfast.ffcv_ops.Augment inside a real FFCV pipeline, bit-exact against the op called directly.

The reference is ``torch.ops.tinyfast.augment`` applied to the very pixels written into the
``.beton``, with parameters drawn here from the shared sampler's rule (``derive_seed(seed, epoch,
rank, batch)`` -> ``Policy.sample``), independently of the Operation.
"""
from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("ffcv", reason="needs the optional ffcv extra (pip install .[ffcv])")

from ffcv.fields import IntField, RGBImageField  # noqa: E402
from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder  # noqa: E402
from ffcv.loader import Loader, OrderOption  # noqa: E402
from ffcv.transforms import ToDevice, ToTensor  # noqa: E402
from ffcv.writer import DatasetWriter  # noqa: E402

from tinyfast import ops  # noqa: E402
from tinyfast.augment import get_policy  # noqa: E402
from tinyfast.ffcv_ops import Augment  # noqa: E402
from tinyfast.loaders.base import derive_seed  # noqa: E402

MEAN, STD = (0.48, 0.45, 0.40), (0.28, 0.27, 0.29)
N, SIZE = 23, 128


class _Rows:
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], i


@pytest.fixture(scope="module")
def beton(tmp_path_factory):
    """A 23-image ``.beton`` of random 128x128 sources (raw pixels, so decode is exact)."""
    images = np.random.default_rng(0).integers(0, 256, (N, SIZE, SIZE, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("ffcv") / "rand.beton"
    writer = DatasetWriter(str(path), {"image": RGBImageField(write_mode="raw", max_resolution=SIZE),
                                       "label": IntField()}, num_workers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        writer.from_indexed_dataset(_Rows(images))
    return path, torch.from_numpy(images)


def loader(path, aug, batch_size, device=None):
    to_dev = [ToDevice(torch.device(device), non_blocking=True)] if device else []
    return Loader(str(path), batch_size=batch_size, num_workers=1, order=OrderOption.SEQUENTIAL,
                  drop_last=False, pipelines={"image": [SimpleRGBImageDecoder(), ToTensor()] + to_dev + [aug],
                                              "label": [IntDecoder(), ToTensor()]})


def reference(src, policy, seed, rank, epoch, b, idx, dtype, out_size=None):
    g = torch.Generator().manual_seed(derive_seed(seed, epoch, rank, b))
    p = get_policy(policy)
    theta, color = p.sample(len(idx), SIZE, SIZE, g, out_size=out_size)
    return ops.augment(src, theta, color, MEAN, STD, index=idx, dtype=dtype, fill=p.fill,
                       out_size=out_size)


def check_pass(ld, src, policy, seed, rank, epoch, start, batch_size, dtype, out_size=None):
    n = 0
    for k, (x, lab) in enumerate(ld):
        b = start + k
        idx = lab.reshape(-1).to(torch.int64)
        assert torch.equal(idx, torch.arange(k * batch_size, k * batch_size + len(idx)))  # sequential
        want = reference(src, policy, seed, rank, epoch, b, idx, dtype, out_size)
        assert x.dtype == dtype and x.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(x, want), f"batch {b} of epoch {epoch} differs from tinyfast.ops.augment"
        n += len(idx)
    return n


@pytest.mark.parametrize("batch_size, dtype", [(7, torch.float16), (5, torch.bfloat16), (23, torch.float32)])
def test_bit_exact_against_the_op(beton, batch_size, dtype):
    path, src = beton
    aug = Augment("standard", MEAN, STD, dtype, seed=11, rank=1)
    ld = loader(path, aug, batch_size)
    # Passes without set_epoch count epochs 0, 1 like FFCV; set_epoch picks epoch and first batch.
    assert check_pass(ld, src, "standard", 11, 1, 0, 0, batch_size, dtype) == N
    assert check_pass(ld, src, "standard", 11, 1, 1, 0, batch_size, dtype) == N
    aug.set_epoch(7, start=2)
    check_pass(ld, src, "standard", 11, 1, 7, 2, batch_size, dtype)


def test_out_size_and_identity(beton):
    path, src = beton
    aug = Augment("color", MEAN, STD, torch.float16, seed=3, out_size=(33, 65))
    x, _ = next(iter(loader(path, aug, 9)))
    assert x.shape == (9, 3, 33, 65)
    assert torch.equal(x, reference(src, "color", 3, 0, 0, 0, torch.arange(9), torch.float16, (33, 65)))
    # "none": plain normalisation, checked against a float64 formula (not the op).
    x, _ = next(iter(loader(path, Augment("none", MEAN, STD, torch.float32), 4)))
    m, s = (torch.tensor(v, dtype=torch.float32).double().view(1, 3, 1, 1) for v in (MEAN, STD))
    want = (src[:4].permute(0, 3, 1, 2).double() / 255 - m) / s
    assert (x.double() - want).abs().max() < 1e-5


@pytest.mark.parametrize("kw, msg", [
    (dict(dtype=torch.int32), "dtype must be float16, bfloat16 or float32"),
    (dict(mean=(0.5, 0.5)), "mean must have 3 values"),
    (dict(std=(0.2, 0.0, 0.2)), "std non-zero"),
    (dict(fill=300.0), "fill must be in"),
    (dict(policy="nope"), "unknown augmentation policy"),
])
def test_bad_arguments(kw, msg):
    args = dict(policy="standard", mean=MEAN, std=STD, dtype=torch.float16) | kw
    with pytest.raises(ValueError, match=f"tinyfast.ffcv_ops.Augment: .*{msg}"):
        Augment(**args)


def test_wrong_place_in_the_pipeline_is_ffcvs_error_with_our_message(beton):
    path, _ = beton
    aug = Augment("standard", MEAN, STD)
    with pytest.raises(ValueError, match=r"tinyfast.ffcv_ops.Augment: .*add ToTensor\(\)"):
        Loader(str(path), batch_size=4, num_workers=1, order=OrderOption.SEQUENTIAL,
               pipelines={"image": [SimpleRGBImageDecoder(), aug]})


# ----------------------------------------------------------------------------------- the loader
@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    from tinyfast.pack import pack_synthetic

    out = tmp_path_factory.mktemp("ffcv_loader") / "packed"
    pack_synthetic(out, classes=3, per_class=7, val_per_class=2, test_count=0, ffcv=True,
                   progress=False, workers=1, log=None)
    return out


def epoch_threads(ld):
    """The live FFCV epoch threads of the ``ffcv`` loader ``ld``."""
    from ffcv.loader.epoch_iterator import EpochIterator

    return [t for t in threading.enumerate()
            if isinstance(t, EpochIterator) and t.loader is ld._ffcv and t.is_alive()]


def test_ffcv_loader_stops_the_epoch_threads_it_leaves(packed):
    """A restart for a size change mid-pass, and a pass abandoned with every remaining batch
    already prefetched (FFCV's thread would then block on its full queue for ever), leave no
    epoch thread behind; the restarted pass's next batch is the ``gpu`` loader's at the new size."""
    import tinyfast.loaders as L

    kw = dict(train=True, policy="standard", seed=8, num_workers=1)
    ld = L.build("ffcv", packed, "train", 7, batches_ahead=2, **kw)   # 3 batches
    it = iter(ld)
    next(it)
    (thread,) = epoch_threads(ld)
    for _ in range(1000):                     # until batches 1, 2 fill the queue (end not queued)
        if thread.output_queue.full():
            break
        time.sleep(0.01)
    it.close()
    assert epoch_threads(ld) == []
    it = iter(ld)
    next(it)
    (first,) = epoch_threads(ld)
    ld.set_out_size((32, 32))
    x1, _ = next(it)
    # the old pass's thread is stopped; the new pass's may already have queued its last batches and ended
    assert not first.is_alive() and len(epoch_threads(ld)) <= 1
    ref = L.build("gpu", packed, "train", 7, **kw)
    ref.load_state_dict({"epoch": 0, "batch": 1})
    ref.set_out_size((32, 32))
    assert torch.equal(x1, next(iter(ref))[0])
    assert len(list(it)) == 1 and epoch_threads(ld) == []


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_the_op_on_the_device(beton):
    path, src = beton
    aug = Augment("standard", MEAN, STD, torch.bfloat16, seed=2)
    for k, (x, lab) in enumerate(loader(path, aug, 7, device="cuda:0")):
        idx = lab.reshape(-1).to(torch.int64).cpu()
        assert x.is_cuda
        want = reference(src.cuda(), "standard", 2, 0, 0, k, idx.cuda(), torch.bfloat16)
        assert torch.equal(x, want)


# ------------------------------------------------------------------ bad arguments, errors in a pass
@pytest.mark.parametrize("mean_image, msg", [
    ("abc", "mean_image must be a float32 (H, W, 3) tensor, got str"),
    (np.zeros((SIZE, SIZE, 3), np.float32), "mean_image must be a float32 (H, W, 3) tensor, got ndarray"),
    (torch.zeros(SIZE, SIZE), r"mean_image must be a float32 (H, W, 3) tensor, got torch.float32 of shape (128, 128)"),
    (torch.zeros(SIZE, SIZE, 3, dtype=torch.float64), "got torch.float64 of shape (128, 128, 3)"),
    (torch.full((SIZE, SIZE, 3), float("nan")), "mean_image has a non-finite value"),
])
def test_a_bad_mean_image_is_refused_when_the_operation_is_built(mean_image, msg):
    with pytest.raises(ValueError) as e:
        Augment("standard", MEAN, STD, mean_image=mean_image)
    assert str(e.value).startswith("tinyfast.ffcv_ops.Augment: ") and msg in str(e.value), str(e.value)


def test_a_mean_image_of_another_size_than_the_decoded_images_is_refused(beton):
    path, _ = beton
    aug = Augment("standard", MEAN, STD, mean_image=torch.zeros(32, 32, 3))
    with pytest.raises(ValueError, match=r"tinyfast.ffcv_ops.Augment: mean_image is 32x32 but the "
                                         r"decoded images are 128x128"):
        loader(path, aug, 4)


@pytest.mark.parametrize("out_size", [5, "ab", (3, "x"), (0, 4)])
def test_a_bad_out_size_names_out_size(out_size):
    with pytest.raises(ValueError, match=r"^tinyfast.ffcv_ops.Augment: .*out_size"):
        Augment("standard", MEAN, STD, out_size=out_size)


def _consume(ld):
    """Iterate ``ld`` as a user's loop does, in a thread (a hang is then a failed join, not a
    stuck test run): returns (batches seen, the exception the loop ended with, or None)."""
    seen, ended = [], []

    def loop():
        try:
            for x, _ in ld:
                seen.append(x)
        except BaseException as e:  # noqa: BLE001 - whatever reaches the loop is the result
            ended.append(e)
        else:
            ended.append(None)
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "the loop never ended (FFCV waits for a batch its thread will never make)"
    return seen, ended[0]


# The epoch thread ends with SystemExit, which Python's threading.excepthook ignores (pytest's does not).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_error_inside_the_pipeline_reaches_the_users_loop(beton, monkeypatch):
    path, src = beton
    aug = Augment("standard", MEAN, STD, torch.float32, seed=5)
    real = Augment.params

    def params(self, epoch, b, *a, **k):
        if b == 2:
            raise ValueError("tinyfast.ffcv_ops.Augment: boom in batch 2")
        return real(self, epoch, b, *a, **k)
    monkeypatch.setattr(Augment, "params", params)
    seen, err = _consume(loader(path, aug, 5))
    assert isinstance(err, ValueError) and str(err) == "tinyfast.ffcv_ops.Augment: boom in batch 2", err
    assert len(seen) == 2                       # the batches made before the error still arrive first
    assert torch.equal(seen[1], reference(src, "standard", 5, 0, 0, 1, torch.arange(5, 10), torch.float32))
    monkeypatch.setattr(Augment, "params", real)
    seen, err = _consume(loader(path, aug, 5))  # the Operation still works in a new pass
    assert err is None and sum(len(x) for x in seen) == N

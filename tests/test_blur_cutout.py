"""Blur, cutout and mean-image normalisation wired into policies, loaders and the trainer config.

References are independent of the code under test: float64 convolutions with Gaussian taps
computed here, boxes recomputed from the uniform draws, and mean images summed in float64 NumPy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import tinyfast.loaders as L
from tinyfast import ops
from tinyfast.augment import PRESETS, Policy, finish
from tinyfast.data import open_packed
from tinyfast.loaders.base import resize_mean_image, train_mean_image

pytestmark = pytest.mark.skipif(not ops.is_built(), reason="tinyfast._C is not built")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    from tinyfast.pack import pack_synthetic

    out = tmp_path_factory.mktemp("blur_cutout") / "packed"
    # No .beton here: FFCV's import changes process state that later tests comparing runs across
    # processes bit for bit depend on (the FFCV cases live in test_loaders.py, which runs after).
    pack_synthetic(out, classes=3, per_class=8, val_per_class=4, test_count=0, progress=False,
                   workers=1, log=None)
    return out


# ----------------------------------------------------------------------------------- draws
@pytest.mark.parametrize("base", ["rotate10-flips", "standard", "ucsc"])
def test_new_draws_leave_the_old_ones_alone(base):
    """Blur/cutout are drawn after the ten old columns: theta and colour do not move."""
    import dataclasses

    old = PRESETS[base]
    new = dataclasses.replace(old, blur=0.5, cutout=0.5)
    a, b = old.sample(32, 64, 64, gen(3)), new.sample(32, 64, 64, gen(3))
    assert torch.equal(a.theta, b.theta) and torch.equal(a.color, b.color)
    assert a.blur is None and a.cutout is None and len(a) == len(b) == 2
    theta, color = b   # still unpacks as before
    assert torch.equal(theta, a.theta)


def test_blur_and_cutout_draws_follow_the_policy():
    n, p = 4000, Policy(blur=0.3, blur_sigma=(0.5, 1.5), cutout=0.6, cutout_size=(0.25, 0.25))
    s = p.sample(n, 64, 64, gen(1), out_size=(32, 48))
    g = gen(1)
    torch.rand((n, 10), generator=g, dtype=torch.float64)
    ub = torch.rand((n, 2), generator=g, dtype=torch.float64)
    uc = torch.rand((n, 4), generator=g, dtype=torch.float64)
    on = ub[:, 0] < 0.3
    assert torch.equal(s.blur > 0, on)
    assert torch.allclose(s.blur[on].double(), 0.5 + ub[on, 1], atol=1e-6)
    assert abs(float(on.double().mean()) - 0.3) < 0.03
    # Boxes at the output size (32 x 48): sides 8 x 12 centred on floor(u * size), clipped.
    cut = uc[:, 0] < 0.6
    cy, cx = (uc[:, 2] * 32).floor().long(), (uc[:, 3] * 48).floor().long()
    want = torch.stack([(cy - 4).clamp(0, 32), (cx - 6).clamp(0, 48),
                        (cy + 4).clamp(0, 32), (cx + 6).clamp(0, 48)], 1)
    want[~cut] = 0
    assert torch.equal(s.cutout, want)
    assert s.cutout.dtype == torch.int64


def test_presets_and_bad_values():
    assert PRESETS["skoltech2"].blur == 1.0 and PRESETS["skoltech2"].blur_sigma == (0.1, 2.0)
    assert PRESETS["skoltech2"].rotate == (-10.0, 10.0) and PRESETS["skoltech2"].vflip == 0.5
    assert PRESETS["cutout"].cutout == 1.0 and PRESETS["cutout"].cutout_size == (0.5, 0.5)
    assert not PRESETS["cutout"].is_identity and Policy(blur_sigma=(1, 2)).is_identity
    for bad in (dict(blur=1.5), dict(blur_sigma=(0.0, 1.0)), dict(cutout=-0.1), dict(cutout_size=(0.2, 1.5))):
        with pytest.raises(ValueError, match="Policy"):
            Policy(**bad)


# ----------------------------------------------------------------------------------- finish
def blur_ref(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """float64 5x5 Gaussian blur with reflected borders of one ``(3, H, W)`` image."""
    k = torch.arange(-2, 3, dtype=torch.float64)
    w = torch.exp(-k ** 2 / (2 * sigma ** 2))
    w = w / w.sum()
    pad = torch.nn.functional.pad(x.double()[None], (2, 2, 2, 2), mode="reflect")
    kern = (w[:, None] * w[None, :]).expand(3, 1, 5, 5)
    return torch.nn.functional.conv2d(pad, kern, groups=3)[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finish_blurs_and_cuts_against_a_float64_reference(dtype):
    src = torch.randint(0, 256, (12, 24, 20, 3), dtype=torch.uint8)
    pol = Policy(rotate=10.0, blur=0.5, blur_sigma=(0.3, 2.0), cutout=0.5, cutout_size=(0.2, 0.6))
    p = pol.sample(12, 24, 20, gen(7))
    x = ops.augment(src, p.theta, p.color, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), dtype=dtype)
    y = finish(x.clone(memory_format=torch.channels_last), p)
    assert y.is_contiguous(memory_format=torch.channels_last) and y.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    blurred = cut = 0
    for i in range(12):
        want = blur_ref(x[i], float(p.blur[i])) if p.blur[i] > 0 else x[i].double()
        y0, x0, y1, x1 = p.cutout[i].tolist()
        want[:, y0:y1, x0:x1] = 0
        blurred += int(p.blur[i] > 0)
        cut += int(y1 > y0 and x1 > x0)
        if p.blur[i] > 0:
            assert (y[i].double() - want).abs().max() <= tol * max(1.0, float(want.abs().max()))
        else:
            assert torch.equal(y[i].double(), want)   # not drawn for a blur: untouched bits
    assert 0 < blurred < 12 and 0 < cut < 12


def test_finish_without_blur_or_cutout_is_the_identity():
    x = torch.randn(3, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    p = Policy(rotate=5.0).sample(3, 8, 8, gen())
    assert finish(x, p) is x
    q = Policy(blur=0.01, cutout=0.01).sample(3, 8, 8, gen(0))   # drawn, but for none of them
    assert not bool((q.blur > 0).any()) and not bool(q.cutout.any())
    assert torch.equal(finish(x.clone(), q), x)


# ----------------------------------------------------------------------------------- mean image
def test_train_mean_image_against_numpy(packed):
    m = train_mean_image(packed)
    imgs = np.array(open_packed(packed, "train").images, dtype=np.float64)
    assert m.shape == (64, 64, 3) and m.dtype == torch.float32
    assert np.abs(m.numpy() - imgs.mean(0) / 255).max() < 1e-6
    r = resize_mean_image(m, (32, 32))   # 2x down, align_corners=False: mean of 2x2 blocks
    want = m.double().reshape(32, 2, 32, 2, 3).mean((1, 3))
    assert r.shape == (32, 32, 3) and (r.double() - want).abs().max() < 1e-6


@pytest.mark.parametrize("name", ["gpu", "dali", "torch-npy"])
@pytest.mark.parametrize("split", ["train", "val"])
def test_loaders_mean_image_normalisation(name, split, packed):
    check_mean_image_normalisation(name, split, packed)


def check_mean_image_normalisation(name, split, packed):
    """The loader's evaluation batches against ``(x - M) / std`` in float64, ``M`` the train split's mean image."""
    if name == "dali":
        pytest.importorskip("nvidia.dali")
    ld = L.build(name, packed, split, 8, train=False, dtype=torch.float32, num_workers=0,
                 normalize="mean-image")
    x = torch.cat([b for b, _ in ld]).double()
    ps, tr = open_packed(packed, split), open_packed(packed, "train")
    m = np.array(tr.images, dtype=np.float64).mean(0) / 255          # the train split's, for val too
    std = np.array(ps.std, dtype=np.float32).astype(np.float64)
    want = (np.array(ps.images, dtype=np.float64) / 255 - m) / std
    assert (x - torch.from_numpy(want).permute(0, 3, 1, 2)).abs().max() < 1e-4
    if split == "train":
        assert x.mean(0).abs().max() < 1e-4    # per pixel, the train split centres to zero


def test_mean_image_refused_where_unsupported(packed):
    pytest.importorskip("nvidia.dali")
    for normalize in ("mean-image", "mean-image-only"):  # the refusal names the value given
        with pytest.raises(ValueError, match=f"normalize='{normalize}' is not available with dali-native"):
            L.build("dali-native", packed, "train", 8, normalize=normalize, num_workers=0)
        with pytest.raises(ValueError, match=f"normalize='{normalize}' is not available with plugin=True"):
            L.build("dali", packed, "train", 8, normalize=normalize, num_workers=0, plugin=True)
    with pytest.raises(ValueError, match="normalize must be one of channel, mean-image"):
        L.build("gpu", packed, "train", 8, normalize="pixel")


# ----------------------------------------------------------------------------------- baseline
def test_torch_baseline_blur_and_cutout(packed):
    """torchvision's GaussianBlur / RandomErasing run in the baseline (its own semantics)."""
    base = L.build("torch-npy", packed, "train", 8, train=True, policy="none", num_workers=0)
    blur = L.build("torch-npy", packed, "train", 8, train=True, policy=Policy(blur=1.0, blur_sigma=(2.0, 2.0)),
                   num_workers=0)
    cut = L.build("torch-npy", packed, "train", 8, train=True, policy="cutout", num_workers=0)
    x0, xb, xc = (next(iter(ld))[0].double() for ld in (base, blur, cut))
    # Blur with sigma 2 against the float64 reference (the baseline rounds the blurred uint8 image).
    for i in range(8):
        want = blur_ref(x0[i], 2.0)
        assert (xb[i] - want).abs().mean() < 0.02 and (xb[i] - x0[i]).abs().mean() > 0.02
    # One 32x32 square of zeros per image (the rest an h-flipped or plain copy).
    for i in range(8):
        zero = (xc[i] == 0).all(0)
        assert int(zero.sum()) >= 32 * 32
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert int(rows[-1] - rows[0]) + 1 == 32 and int(cols[-1] - cols[0]) + 1 == 32


# ----------------------------------------------------------------------------------- config
def test_train_config_passes_normalize_to_the_loaders(packed):
    from tinyfast.config import TrainConfig
    from tinyfast.recipes import get_recipe
    from tinyfast.trainer.build import build_loader

    cfg = TrainConfig(data=str(packed), loader="gpu", normalize="mean-image", batch_size=8,
                      eval_batch_size=8, workers=0, device="cpu")
    for split in ("train", "val"):
        ld = build_loader(cfg, split, device=torch.device("cpu"), rank=0, world=1, dtype=torch.float32)
        assert ld.normalize == "mean-image"
        assert torch.equal(ld.mean_image, train_mean_image(packed))
    assert get_recipe("stanford-vgg-z").settings["normalize"] == "mean-image-only"  # subtracted, not divided
    # The Skoltech recipes train on both of the report's augmentation sets, the second one blurred.
    assert get_recipe("skoltech-resnet18").settings["aug"] == "hflip-crop56+skoltech2"
    assert math.isclose(PRESETS[get_recipe("skoltech-resnet18").settings["aug"].split("+")[1]].blur, 1.0)


def test_mean_image_run_end_to_end_and_evaluated_the_same_way(tmp_path):
    """A run with --normalize mean-image and the skoltech2 blur trains; evaluate scores its
    checkpoint with the train split's mean image (checked against a float64 forward pass)."""
    import json

    from tinyfast.checkpoint import load_checkpoint, model_from_checkpoint
    from tinyfast.config import TrainConfig
    from tinyfast.pack import pack_synthetic
    from tinyfast.train import train

    data = tmp_path / "synth"
    pack_synthetic(data, classes=3, per_class=16, val_per_class=8, test_count=0, size=32, seed=2,
                   progress=False, log=None)
    tr = train(TrainConfig(arch="ting_m1", data=str(data), epochs=1, batch_size=16, progress=False,
                           device="cpu", out_dir=str(tmp_path / "runs"), name="m", aug="skoltech2",
                           normalize="mean-image", optimizer="adam", lr=2e-3))
    ckpt = tmp_path / "runs" / "m" / "last.pt"
    assert json.loads((tmp_path / "runs" / "m" / "config.json").read_text())["config"]["normalize"] == "mean-image"
    from tinyfast.config import EvalConfig
    from tinyfast.evaluate import ensemble_probs

    _, probs, labels, _ = ensemble_probs(EvalConfig(checkpoints=(str(ckpt),), device="cpu", weights="raw",
                                                    amp=False, progress=False), "val")
    sp, train_split = open_packed(data, "val"), open_packed(data, "train")
    m = np.asarray(train_split.images, dtype=np.float64).mean(0) / 255
    x = (np.asarray(sp.images, dtype=np.float64) / 255 - m) / np.array(sp.std)
    model = model_from_checkpoint(load_checkpoint(ckpt), "raw").eval()
    with torch.no_grad():
        want = model(torch.from_numpy(x).permute(0, 3, 1, 2).float()).softmax(1).double()
    assert (torch.as_tensor(probs[0]).double() - want).abs().max() < 1e-4
    assert torch.equal(torch.as_tensor(labels), torch.from_numpy(sp.labels.astype(np.int64)))
    assert tr.history[-1]["val_top1"] == pytest.approx(float((want.argmax(1).numpy() == sp.labels).mean()),
                                                       abs=1.5 / len(labels))


@pytest.mark.parametrize("plugin", [None, False])
def test_dali_plugin_and_op_paths_match_the_gpu_loader(plugin, packed):
    """Blur and cutout after DALI's plugin operator, or after the op on its output: the gpu loader's bits."""
    pytest.importorskip("nvidia.dali")
    pol = Policy(rotate=10.0, vflip=0.5, blur=0.5, cutout=0.5, cutout_size=(0.2, 0.4))
    kw = dict(train=True, policy=pol, seed=3, num_workers=0, dtype=torch.float16)
    ref = [x for x, _ in L.build("gpu", packed, "train", 8, **kw)]
    got = [x for x, _ in L.build("dali", packed, "train", 8, plugin=plugin, **kw)]
    assert len(ref) == len(got) == 3
    for a, b in zip(ref, got):
        assert torch.equal(a, b)


def test_mean_image_follows_the_output_size(packed):
    """Progressive resizing: the mean image is resampled to the new output size."""
    ld = L.build("gpu", packed, "val", 12, train=False, dtype=torch.float32, normalize="mean-image")
    ld.set_out_size((32, 32))
    x = next(iter(ld))[0].double()
    ps = open_packed(packed, "val")
    src = torch.from_numpy(np.array(ps.images[:12])).double().permute(0, 3, 1, 2) / 255
    down = torch.nn.functional.interpolate(src, size=(32, 32), mode="bilinear", align_corners=False)
    m = torch.from_numpy(np.array(open_packed(packed, "train").images, dtype=np.float64).mean(0) / 255)
    m = torch.nn.functional.interpolate(m.permute(2, 0, 1)[None], size=(32, 32), mode="bilinear",
                                        align_corners=False)
    std = torch.tensor(ps.std, dtype=torch.float32).double().view(1, 3, 1, 1)
    assert x.shape == (12, 3, 32, 32) and ((x - (down - m) / std).abs().max()) < 1e-4


# ----------------------------------------------------------------------- extreme and bad arguments
def _normalised(seed=0):
    src = torch.randint(0, 256, (2, 9, 11, 3), dtype=torch.uint8, generator=gen(seed))
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]).repeat(2, 1, 1)
    return ops.augment(src, theta, torch.ones(2, 3), (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), dtype=torch.float32)


@pytest.mark.parametrize("sigma", [1e-200, 5e-324, 1e-8, 0.01])
def test_blur5_of_a_vanishing_sigma_is_the_identity_not_nan(sigma):
    """The Gaussian's limit as sigma -> 0 is the identity (taps 1, 0, 0); sigma^2 underflowing to 0
    must not turn it into 0/0."""
    x = _normalised()
    assert torch.equal(ops.blur5_weights(sigma, 1), torch.tensor([[1.0, 0.0, 0.0]]))
    assert torch.equal(ops.blur5(x, sigma), x)


def test_blur5_of_a_huge_sigma_is_the_box_filter():
    w = ops.blur5_weights([1e200, 1e300], 2)
    assert torch.equal(w, torch.full((2, 3), 0.2, dtype=torch.float64).float())
    x = _normalised(1)
    k = torch.full((3, 1, 5, 5), 1 / 25, dtype=torch.float64)
    want = torch.nn.functional.conv2d(torch.nn.functional.pad(x.double(), (2, 2, 2, 2), mode="reflect"), k, groups=3)
    assert (ops.blur5(x, 1e300).double() - want).abs().max() < 1e-5


@pytest.mark.parametrize("sigma", ["abc", None, [1.0, "a"], b"1", object()])
def test_blur5_sigma_that_is_not_a_number_is_named(sigma):
    with pytest.raises(ValueError) as e:
        ops.blur5(_normalised(), sigma)
    assert str(e.value).startswith("tinyfast.ops.blur5: sigma must be one number or one per sample"), str(e.value)


@pytest.mark.parametrize("value", ["a", None, [1.0], object()])
def test_cutout_value_that_is_not_a_number_is_named(value):
    x = _normalised()
    before = x.clone()
    with pytest.raises(ValueError) as e:
        ops.cutout_(x, torch.zeros(2, 4, dtype=torch.int64), value)
    assert str(e.value) == f"tinyfast.ops.cutout_: value must be a finite number, got {value!r}"
    assert torch.equal(x, before)


@pytest.mark.parametrize("field, value", [("blur_sigma", "ab"), ("blur_sigma", (0.1, "a")), ("blur_sigma", None),
                                          ("cutout", "x"), ("cutout_size", "ab"), ("rotate", "q"),
                                          ("translate", "ab"), ("translate", None), ("hflip", None),
                                          ("brightness", "b"), ("fill", "z"), ("zoom", (1, 2, 3))])
def test_policy_field_that_is_not_a_number_is_named(field, value):
    with pytest.raises(ValueError) as e:
        Policy(**{field: value})
    assert str(e.value).startswith(f"Policy.{field}: "), str(e.value)
    assert len(str(e.value).splitlines()) == 1

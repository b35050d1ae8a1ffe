"""The op's extras on CPU and CUDA: tinyfast.ops.blur5 and tinyfast.ops.cutout_ (the two small
kernels beside the fused op) against float64 / loop references, and the fused op's mean-image
normalisation against the float64 reference (the op's core tests: test_augment_op.py)."""
import pytest
import torch

from test_augment_op import (DEVICES, DTYPES, EPS, MEAN, STD, _good, assert_matches, ident_theta, need, op_args,
                             ops, poisoned, random_case, reference)


# --------------------------------------------------------------------------------------------
# blur5: the second, small kernel
# --------------------------------------------------------------------------------------------
def blur_reference(x, sigmas):
    """float64 reflect-padded conv2d with the normalised 5x5 Gaussian of each sigma."""
    import torch.nn.functional as F

    xd = x.double().cpu()
    outs = []
    for i, s in enumerate(sigmas):
        k = torch.exp(-torch.arange(-2, 3, dtype=torch.float64) ** 2 / (2 * float(s) ** 2))
        k = k / k.sum()
        kern = (k[:, None] * k[None, :]).expand(3, 1, 5, 5)
        outs.append(F.conv2d(F.pad(xd[i:i + 1], (2, 2, 2, 2), mode="reflect"), kern, groups=3))
    return torch.cat(outs)


def augmented_batch(b, h, w, dtype, device, seed=21):
    gen = torch.Generator().manual_seed(seed)
    src, theta, color, _ = random_case(gen, b, h, w, b, (h, w), False)
    return ops.augment(src.to(device), theta, color, MEAN, STD, dtype=dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", [(64, 64), (3, 7), (13, 5)])
def test_blur5_matches_float64_reference(device, dtype, hw):
    need(device)
    x = augmented_batch(4, *hw, dtype, device)
    sigmas = [0.1, 0.6, 1.3, 2.0]
    out = ops.blur5(x, torch.tensor(sigmas))
    assert out.dtype == dtype and out.shape == x.shape and out.device == x.device
    assert out.is_contiguous(memory_format=torch.channels_last)
    ref = blur_reference(x, sigmas)
    # Inputs are exact; float32 sums of 25 terms, then one rounding to dtype.
    err = (out.double().cpu() - ref).abs()
    assert bool((err <= EPS[dtype] * ref.abs() + 1e-5).all()), float(err.max())


def test_blur5_matches_torchvision_gaussian_blur():
    from torchvision.transforms.v2 import functional as TF

    x = augmented_batch(3, 20, 24, torch.float32, "cpu")
    for i, s in enumerate([0.5, 1.0, 1.7]):
        want = TF.gaussian_blur(x[i:i + 1].contiguous(), [5, 5], [s, s])
        torch.testing.assert_close(ops.blur5(x[i:i + 1], s), want, rtol=1e-5, atol=1e-5)


def test_blur5_tiny_sigma_is_identity_and_weights_are_normalised():
    x = augmented_batch(2, 16, 16, torch.float32, "cpu")
    assert torch.equal(ops.blur5(x, 0.05), x)  # exp(-1/(2*0.0025)) underflows to 0: only w0 = 1
    w = ops.blur5_weights([0.5, 1.0, 3.0], 3).double()
    torch.testing.assert_close(w[:, 0] + 2 * w[:, 1:].sum(1), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("case, needle", [
    ("sigma zero", "sigma must be finite and > 0"), ("sigma nan", "sigma must be finite and > 0"),
    ("sigma count", "one per sample"), ("contiguous NCHW", "channels-last"), ("2x2", "at least 3x3"),
    ("int dtype", "float32, float16 or bfloat16"), ("rank", "(B, 3, H, W)")])
def test_blur5_bad_arguments(case, needle):
    x = augmented_batch(2, 8, 8, torch.float16, "cpu")
    args = {"sigma zero": (x, 0.0), "sigma nan": (x, float("nan")), "sigma count": (x, [1.0, 1.0, 1.0]),
            "contiguous NCHW": (x.contiguous(), 1.0), "2x2": (x[:, :, :2, :2].contiguous(memory_format=torch.channels_last), 1.0),
            "int dtype": (x.to(torch.int16), 1.0), "rank": (x[0], 1.0)}[case]
    with pytest.raises(ValueError, match="tinyfast.ops.blur5") as info:
        ops.blur5(*args)
    assert needle in str(info.value) and len(str(info.value).splitlines()) <= 2


def test_blur5_opcheck():
    x = augmented_batch(2, 9, 7, torch.bfloat16, "cpu")
    torch.library.opcheck(torch.ops.tinyfast.blur5.default, (x, ops.blur5_weights([0.7, 1.5], 2)))


@pytest.mark.parametrize("device", DEVICES)
def test_cutout_matches_a_loop_reference(device):
    need(device)
    x = augmented_batch(5, 12, 10, torch.bfloat16, device)
    boxes = torch.tensor([[2, 3, 6, 8], [-4, -4, 3, 2], [10, 8, 20, 20], [5, 5, 5, 9], [20, 0, 30, 10]])
    want = x.cpu().clone()
    for i, (y0, x0, y1, x1) in enumerate(boxes.tolist()):
        want[i, :, max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = -0.5
    got = ops.cutout_(x, boxes, -0.5)
    assert got is x and torch.equal(x.cpu(), want)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(want[0], augmented_batch(5, 12, 10, torch.bfloat16, "cpu")[0])  # box 0 did cut


@pytest.mark.parametrize("bad, needle", [((torch.zeros(4, 3, 4, 4), torch.zeros(3, 4, dtype=torch.int64)), "boxes"),
                                         ((torch.zeros(2, 3, 4, 4), torch.zeros(2, 4)), "integer"),
                                         ((torch.zeros(3, 4, 4), torch.zeros(3, 4, dtype=torch.int64)), "x must be"),
                                         ((torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, dtype=torch.int64), float("nan")), "finite")])
def test_cutout_bad_arguments(bad, needle):
    with pytest.raises(ValueError, match="tinyfast.ops.cutout_") as info:
        ops.cutout_(*bad)
    assert needle in str(info.value)


# --------------------------------------------------------------------------------------------
# Mean-image zero-centering
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_mean_image_matches_reference(device, dtype):
    need(device)
    gen = torch.Generator().manual_seed(41)
    src, theta, color, index = random_case(gen, 5, 20, 24, 6, (14, 18), True)
    m = torch.rand(14, 18, 3, generator=gen)
    ref = reference(src, theta, color, MEAN, STD, index, (14, 18), 5.0, mean_image=m)
    dev = torch.device(device)
    out = ops.augment(src.to(dev), theta, color, MEAN, STD, index=index.to(dev), out_size=(14, 18),
                      dtype=dtype, fill=5.0, mean_image=m)
    assert_matches(out, ref, dtype)
    buf = poisoned(6, 14, 18, dtype, dev)
    ops.augment(src.to(dev), theta, color, MEAN, STD, index=index.to(dev), out_size=(14, 18), fill=5.0,
                mean_image=m.to(dev), out=buf)
    assert torch.equal(buf, out)


@pytest.mark.parametrize("device", DEVICES)
def test_mean_image_exact_properties(device):
    """Identity parameters give (src*s - M/std) in float32 bit for bit; a constant mean image equal
    to ``mean`` gives exactly the per-channel result."""
    need(device)
    src = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    m = torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(3))
    s = torch.tensor(STD, dtype=torch.float32)
    got = ops.augment(src.to(device), ident_theta(3), torch.ones(3, 3), MEAN, STD, dtype=torch.float32,
                      mean_image=m)
    want = (src.float() * (1 / (255 * s)) + (-(m / s))).permute(0, 3, 1, 2)
    assert torch.equal(got.cpu(), want)
    gen = torch.Generator().manual_seed(4)
    src, theta, color, _ = random_case(gen, 4, 16, 16, 4, (16, 16), False)
    const = torch.tensor(MEAN, dtype=torch.float32).expand(16, 16, 3)
    a = ops.augment(src.to(device), theta, color, MEAN, STD, dtype=torch.bfloat16, mean_image=const)
    b = ops.augment(src.to(device), theta, color, MEAN, STD, dtype=torch.bfloat16)
    assert torch.equal(a, b)


@pytest.mark.parametrize("bad, needle", [
    (torch.rand(8, 7, 3), "mean_image must be (8, 8, 3)"), (torch.rand(8, 8, 3).double(), "float32"),
    (torch.full((8, 8, 3), float("nan")), "non-finite"), ([[0.5] * 3] * 64, "mean_image must be a float32")])
def test_mean_image_bad_arguments(bad, needle):
    g = _good()
    with pytest.raises(ValueError, match="tinyfast.ops.augment") as info:
        ops.augment(g["src"], g["theta"], g["color"], MEAN, STD, mean_image=bad)
    assert needle in str(info.value) and len(str(info.value).splitlines()) <= 2


def test_mean_image_opcheck():
    args = op_args("cpu")
    m = torch.rand(6, 5, 3)
    torch.library.opcheck(torch.ops.tinyfast.augment.default, (*args, torch.float16, 3.0, m))


# The internal op behind mean_image (tinyfast::_mean_image_shift, -M / std once per call) is
# reachable as torch.ops.tinyfast._mean_image_shift: it validates its own arguments, on both devices.
def _shift_reference(m, std):
    """-M / std per channel, float32 (a correctly rounded division, as the kernels' __fdiv_rn)."""
    return -(m.float().cpu() / torch.tensor(std, dtype=torch.float32))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "channel-planar", "sliced"])
def test_mean_image_shift_op_any_layout(device, layout):
    need(device)
    gen = torch.Generator().manual_seed(51)
    std = [0.21, 0.26, 0.33]
    m = {"contiguous": lambda: torch.rand(6, 5, 3, generator=gen),
         "channel-planar": lambda: torch.rand(3, 6, 5, generator=gen).permute(1, 2, 0),
         "sliced": lambda: torch.rand(6, 10, 3, generator=gen)[:, ::2]}[layout]().to(device)
    got = torch.ops.tinyfast._mean_image_shift(m, std)
    assert got.shape == (6, 5, 3) and got.dtype == torch.float32 and got.device == m.device
    assert torch.equal(got.cpu(), _shift_reference(m, std))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("m, std, needle", [
    ((6, 5, 3), [0.2], "std must be 3 finite non-zero values"),
    ((6, 5, 3), [0.2, 0.0, 0.3], "std must be 3 finite non-zero values"),
    ((6, 5, 3), [0.2, 1e-60, 0.3], "std must be 3 finite non-zero values"),  # 0 in float32
    ((6, 5), [0.2] * 3, "mean_image must be float32 (H, W, 3)"),
    ((6, 5, 4), [0.2] * 3, "mean_image must be float32 (H, W, 3)"),
    ("float64", [0.2] * 3, "mean_image must be float32 (H, W, 3)")])
def test_mean_image_shift_op_bad_arguments(device, m, std, needle):
    need(device)
    m = torch.rand(6, 5, 3, dtype=torch.float64) if m == "float64" else torch.rand(*m)
    with pytest.raises(ValueError, match="tinyfast._mean_image_shift") as info:
        torch.ops.tinyfast._mean_image_shift(m.to(device), std)
    assert needle in str(info.value) and len(str(info.value).strip().splitlines()) == 1, str(info.value)


def test_mean_image_shift_opcheck():
    torch.library.opcheck(torch.ops.tinyfast._mean_image_shift.default, (torch.rand(4, 5, 3), [0.2, 0.3, 0.4]))


def test_mean_image_with_a_std_that_is_zero_in_float32_names_the_op():
    """The op's own checks run before the shift is computed: its message, not the internal op's."""
    g = _good()
    with pytest.raises(ValueError, match="tinyfast.ops.augment: mean/std must be finite and std non-zero"):
        ops.augment(g["src"], g["theta"], g["color"], MEAN, [0.2, 1e-60, 0.3], mean_image=torch.rand(8, 8, 3))

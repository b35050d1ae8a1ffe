"""tinyfast.ops.augment against an independent float64 PyTorch reference, on CPU and CUDA.

The reference below re-implements the semantics stated in the docstring of
``tinyfast.ops.augment`` with plain tensor ops in float64; it imports nothing from tinyfast.
"""
import math

import pytest
import torch

ops = pytest.importorskip("tinyfast.ops")
if not ops.is_built():
    pytest.skip("tinyfast._C is not built", allow_module_level=True)

MEAN = (0.480, 0.448, 0.398)
STD = (0.277, 0.269, 0.282)
LUMA = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
# Relative tolerance per output dtype: float32 is held to 1e-4 (10x tighter than required; the
# measured worst case is ~3e-5 relative), fp16/bf16 to one step of their spacing (rounding of a
# float32 value that is itself within float32 error of the reference).
EPS = {torch.float32: 1e-4, torch.float16: 2.0 ** -10, torch.bfloat16: 2.0 ** -7}
# Absolute floor for values near 0: float32 coordinate rounding (ulp of sx ~ 1e-5 at x ~ 130)
# times a 255-step edge, normalised: measured worst 8e-5.
ATOL = 2e-4


def need(device):
    if device == "cuda" and "cuda" not in ops.available_backends():
        pytest.skip("CUDA kernels not compiled or no GPU")


# --------------------------------------------------------------------------------------------
# Independent reference (float64)
# --------------------------------------------------------------------------------------------
def reference(src, theta, color, mean, std, index=None, out_size=None, fill=0.0, mean_image=None):
    """float64 (B, 3, Ho, Wo) result of the op's documented semantics."""
    img = src.cpu()
    if index is not None:
        img = img[index.cpu()]
    img = img.to(torch.float64)  # (B, H, W, 3)
    b, h, w, _ = img.shape
    ho, wo = out_size or (h, w)
    th = theta.cpu().to(torch.float64)
    ys, xs = torch.meshgrid(torch.arange(ho, dtype=torch.float64),
                            torch.arange(wo, dtype=torch.float64), indexing="ij")
    sx = th[:, 0, 0, None, None] * xs + th[:, 0, 1, None, None] * ys + th[:, 0, 2, None, None]
    sy = th[:, 1, 0, None, None] * xs + th[:, 1, 1, None, None] * ys + th[:, 1, 2, None, None]
    x0, y0 = sx.floor(), sy.floor()
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    bi = torch.arange(b)[:, None, None]

    def tap(xi, yi):
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        v = img[bi, yi.clamp(0, h - 1).long(), xi.clamp(0, w - 1).long()]
        return torch.where(inside[..., None], v, torch.tensor(float(fill), dtype=torch.float64))

    v = (1 - fy) * ((1 - fx) * tap(x0, y0) + fx * tap(x0 + 1, y0)) + \
        fy * ((1 - fx) * tap(x0, y0 + 1) + fx * tap(x0 + 1, y0 + 1))
    c = color.cpu().to(torch.float64)
    cb, cc, cs = (c[:, i, None, None, None] for i in range(3))
    v = (cb * v).clamp(0, 255)
    m = ((cb * img).clamp(0, 255) @ LUMA).mean(dim=(1, 2))[:, None, None, None]
    v = (cc * v + (1 - cc) * m).clamp(0, 255)
    g = (v @ LUMA)[..., None]
    v = (cs * v + (1 - cs) * g).clamp(0, 255)
    mean = torch.tensor(mean, dtype=torch.float64) if mean_image is None else mean_image.cpu().double()
    std = torch.tensor(std, dtype=torch.float64)
    return ((v / 255 - mean) / std).permute(0, 3, 1, 2)


def normalise_f32(img_nhwc, dtype, mean=MEAN, std=STD):
    """The op's exact float32 normalisation of uint8 NHWC images, as (B, 3, H, W)."""
    m = torch.tensor(mean, dtype=torch.float32)
    s = torch.tensor(std, dtype=torch.float32)
    scale, shift = 1 / (255 * s), -m / s
    return (img_nhwc.cpu().float() * scale + shift).to(dtype).permute(0, 3, 1, 2)


def random_case(gen, n, h, w, b, out_size, with_index):
    src = torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=gen)
    # Smooth-ish images too, so colour statistics are not all ~127.
    src[0] = (torch.linspace(0, 255, w)[None, :, None] * torch.ones(h, 1, 3)).to(torch.uint8)
    ho, wo = out_size
    # Random affine maps around the centres, scaled from output to source: rotation, anisotropic
    # zoom, shear, flips and shifts that push part of the output outside the source.
    ang = (torch.rand(b, generator=gen) * 2 - 1) * math.pi
    zx, zy = (0.5 + 1.5 * torch.rand(b, generator=gen) for _ in range(2))
    shear = (torch.rand(b, generator=gen) * 2 - 1) * 0.5
    a = torch.stack([torch.stack([zx * torch.cos(ang), -zy * torch.sin(ang) + shear], -1),
                     torch.stack([zx * torch.sin(ang), zy * torch.cos(ang)], -1)], -2)
    a = a * torch.tensor([w / wo, h / ho])[:, None]
    shift = (torch.rand(b, 2, generator=gen) * 2 - 1) * torch.tensor([w, h]) * 0.3
    ctr_out = torch.tensor([(wo - 1) / 2, (ho - 1) / 2])
    ctr_in = torch.tensor([(w - 1) / 2, (h - 1) / 2])
    off = ctr_in + shift - (a @ ctr_out[:, None])[..., 0]
    theta = torch.cat([a, off[..., None]], -1).float()
    theta[0] = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]) * torch.tensor([[w / wo], [h / ho]])
    color = torch.stack([0.5 + torch.rand(b, generator=gen),
                         0.5 + torch.rand(b, generator=gen),
                         2 * torch.rand(b, generator=gen)], 1)
    color[0] = 1.0                       # identity colour (the kernels' skip path)
    if b > 2:
        color[1, 1] = 1.0                # contrast exactly 1: no mean computed
    index = torch.randint(0, n, (b,), generator=gen) if with_index else None
    return src, theta, color, index


def assert_matches(out, ref, dtype):
    assert out.dtype == dtype
    o = out.double().cpu()
    assert not torch.isnan(o).any(), "unwritten (NaN-poisoned) or NaN output elements"
    err = (o - ref).abs()
    tol = EPS[dtype] * ref.abs() + ATOL
    bad = err > tol
    assert not bad.any(), (f"{int(bad.sum())} of {bad.numel()} elements off; worst "
                           f"{float((err - tol).max()):.3g} over tolerance")


def poisoned(b, ho, wo, dtype, device):
    return torch.full((b, ho, wo, 3), float("nan"), dtype=dtype, device=device).permute(0, 3, 1, 2)


# --------------------------------------------------------------------------------------------
# Correctness against the reference
# --------------------------------------------------------------------------------------------
SHAPES = [  # (n, h, w, b, out_size)
    (6, 64, 64, 5, (64, 64)),
    (4, 13, 10, 7, (9, 11)),      # odd sizes, Ho*Wo % 8 != 0: the CUDA tail path
    (3, 130, 129, 3, (33, 40)),   # > 48 KiB source: the CUDA global-memory path
    (2, 128, 128, 2, (64, 64)),   # exactly 48 KiB staged: needs the shared-memory opt-in on CUDA
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[1]}x{s[2]}to{s[4][0]}x{s[4][1]}")
@pytest.mark.parametrize("with_index", [False, True], ids=["all", "index"])
def test_matches_reference(device, dtype, shape, with_index):
    need(device)
    n, h, w, b, out_size = shape
    if not with_index:
        b = n
    gen = torch.Generator().manual_seed(hash((h, w, b, with_index, str(dtype))) % 2 ** 31)
    src, theta, color, index = random_case(gen, n, h, w, b, out_size, with_index)
    fill = 37.5
    ref = reference(src, theta, color, MEAN, STD, index, out_size, fill)
    dev = torch.device(device)
    args = (src.to(dev), theta.to(dev), color.to(dev), MEAN, STD)
    kw = dict(index=None if index is None else index.to(dev), out_size=out_size, dtype=dtype, fill=fill)
    out = ops.augment(*args, **kw)
    assert out.shape == (b, 3, *out_size) and out.device.type == device
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_matches(out, ref, dtype)
    # The same into a NaN-poisoned buffer: every element must be written, identically.
    buf = poisoned(b, *out_size, dtype, dev)
    assert ops.augment(*args, **kw, out=buf) is buf
    assert_matches(buf, ref, dtype)
    assert torch.equal(buf, out)


@pytest.mark.parametrize("device", DEVICES)
def test_contrast_uses_source_mean_luminance(device):
    """A shift that brings in fill must not change the contrast mean (it is the source's)."""
    need(device)
    src = torch.randint(0, 256, (1, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    ident = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]])
    shifted = torch.tensor([[[1.0, 0, 8.0], [0, 1.0, 0]]])
    color = torch.tensor([[1.0, 0.0, 1.0]])  # contrast 0: every pixel becomes the mean luminance
    outs = [ops.augment(src.to(device), t.to(device), color.to(device), MEAN, STD,
                        dtype=torch.float32, fill=0.0).cpu() for t in (ident, shifted)]
    m = float((src.double() @ LUMA).mean())
    expect = ((m / 255 - torch.tensor(MEAN, dtype=torch.float64)) / torch.tensor(STD, dtype=torch.float64))
    for o in outs:
        torch.testing.assert_close(o.double(), expect[None, :, None, None].expand_as(o), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Exact properties
# --------------------------------------------------------------------------------------------
def ident_theta(b):
    return torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(b, 2, 3).contiguous()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_identity_is_exact_normalisation(device, dtype):
    need(device)
    src = torch.randint(0, 256, (5, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = ops.augment(src.to(device), ident_theta(5), torch.ones(5, 3), MEAN, STD, dtype=dtype)
    assert torch.equal(out.cpu(), normalise_f32(src, dtype))


def rot90_theta(k, h, w):
    """Inverse maps of torch.rot90(img, k, dims=(H, W)) for an (H, W) source."""
    return {
        1: [[0.0, -1.0, w - 1], [1.0, 0.0, 0.0]],
        2: [[-1.0, 0.0, w - 1], [0.0, -1.0, h - 1]],
        3: [[0.0, 1.0, 0.0], [-1.0, 0.0, h - 1]],
    }[k]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_rot90_equals_torch_rot90(device, k):
    need(device)
    h, w = 12, 17
    src = torch.randint(0, 256, (3, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(k))
    theta = torch.tensor(rot90_theta(k, h, w)).expand(3, 2, 3).contiguous()
    expected = torch.rot90(src, k, dims=(1, 2)).contiguous()
    out = ops.augment(src.to(device), theta, torch.ones(3, 3), MEAN, STD,
                      out_size=tuple(expected.shape[1:3]), dtype=torch.float32, fill=255.0)
    assert torch.equal(out.cpu(), normalise_f32(expected, torch.float32))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("axis", ["h", "v", "hv"])
def test_flip_equals_torch_flip(device, axis):
    need(device)
    h, w = 10, 15
    src = torch.randint(0, 256, (4, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(7))
    sx, sy = (-1.0 if "h" in axis else 1.0), (-1.0 if "v" in axis else 1.0)
    theta = torch.tensor([[sx, 0, (w - 1) if sx < 0 else 0], [0, sy, (h - 1) if sy < 0 else 0]])
    dims = [d for d, a in ((2, "h"), (1, "v")) if a in axis]
    out = ops.augment(src.to(device), theta.expand(4, 2, 3).contiguous(), torch.ones(4, 3), MEAN, STD,
                      dtype=torch.float16)
    assert torch.equal(out.cpu(), normalise_f32(torch.flip(src, dims), torch.float16))


@pytest.mark.parametrize("device", DEVICES)
def test_index_is_fused_gather(device):
    need(device)
    gen = torch.Generator().manual_seed(11)
    src, theta, color, _ = random_case(gen, 9, 20, 24, 6, (20, 24), False)
    index = torch.tensor([8, 0, 3, 3, 5, 8])
    theta, color = theta[:6].contiguous(), color[:6].contiguous()
    fused = ops.augment(src.to(device), theta, color, MEAN, STD, index=index.to(device), dtype=torch.bfloat16)
    gathered = ops.augment(src[index].to(device), theta, color, MEAN, STD, dtype=torch.bfloat16)
    assert torch.equal(fused, gathered)


def test_huge_theta_gives_fill():
    src = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    theta = torch.tensor([[[1, 0, 1e30], [0, 1, 0]], [[1, 0, -1e30], [0, 1, -1e30]]])
    out = ops.augment(src, theta, torch.ones(2, 3), MEAN, STD, dtype=torch.float32, fill=200.0)
    expect = normalise_f32(torch.full((2, 8, 8, 3), 200, dtype=torch.uint8), torch.float32)
    torch.testing.assert_close(out, expect, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("which", ["theta", "color"])
@pytest.mark.parametrize("direct", [False, True], ids=["wrapper", "torch.ops"])
def test_nonfinite_host_parameters_are_rejected(bad, which, direct):
    """A NaN/inf parameter on the host is refused with a line naming the argument and sample."""
    src = torch.randint(0, 256, (3, 8, 8, 3), dtype=torch.uint8)
    theta, color = ident_theta(3), torch.ones(3, 3)
    (theta if which == "theta" else color).view(3, -1)[2, 1] = bad
    with pytest.raises(ValueError, match=rf"tinyfast.ops.augment: {which}\[2\] has a non-finite value"):
        if direct:
            torch.ops.tinyfast.augment(src, None, theta, color, list(MEAN), list(STD), 8, 8,
                                       torch.float16, 0.0)
        else:
            ops.augment(src, theta, color, MEAN, STD)


# --------------------------------------------------------------------------------------------
# Dispatcher integration: opcheck, torch.compile
# --------------------------------------------------------------------------------------------
def op_args(device, b=3, n=4, h=9, w=7):
    gen = torch.Generator().manual_seed(2)
    src, theta, color, index = random_case(gen, n, h, w, b, (6, 5), True)
    dev = torch.device(device)
    return [src.to(dev), index.to(dev), theta.to(dev), color.to(dev), list(MEAN), list(STD), 6, 5]


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    need(device)
    args = op_args(device)
    torch.library.opcheck(torch.ops.tinyfast.augment.default, (*args, torch.float16, 3.0))
    args_noindex = list(args)
    args_noindex[1] = None
    args_noindex[0] = args[0][:3].contiguous()
    torch.library.opcheck(torch.ops.tinyfast.augment.default, (*args_noindex, torch.bfloat16, 0.0))
    out = poisoned(3, 6, 5, torch.float32, torch.device(device))
    torch.library.opcheck(torch.ops.tinyfast.augment_out.default, (*args, 3.0, out))


def test_torch_compile_fullgraph_cpu():
    src, index, theta, color, *_ = op_args("cpu")

    @torch.compile(fullgraph=True, backend="aot_eager", dynamic=False)
    def step(src, index, theta, color):
        x = ops.augment(src, theta, color, MEAN, STD, index=index, out_size=(6, 5), dtype=torch.float32)
        return x * 2 + 1

    torch._dynamo.reset()
    got = step(src, index, theta, color)
    want = ops.augment(src, theta, color, MEAN, STD, index=index, out_size=(6, 5),
                       dtype=torch.float32) * 2 + 1
    assert torch.equal(got, want)
    assert got.is_contiguous(memory_format=torch.channels_last)


# --------------------------------------------------------------------------------------------
# Bad arguments: one clear error, never a crash
# --------------------------------------------------------------------------------------------
def _good():
    return dict(src=torch.zeros(4, 8, 8, 3, dtype=torch.uint8), theta=ident_theta(4),
                color=torch.ones(4, 3), mean=MEAN, std=STD)


def _bad_cases():
    g = _good
    ix = torch.tensor([0, 1, 2, 3])
    return {
        "src dtype": (dict(g(), src=torch.zeros(4, 8, 8, 3)), {}, "uint8"),
        "src rank": (dict(g(), src=torch.zeros(8, 8, 3, dtype=torch.uint8)), {"out_size": (8, 8)}, "src"),
        "src channels": (dict(g(), src=torch.zeros(4, 8, 8, 4, dtype=torch.uint8)), {}, "3 channels"),
        "src non-contiguous": (dict(g(), src=torch.zeros(4, 8, 16, 3, dtype=torch.uint8)[:, :, ::2]), {},
                               "contiguous"),
        "src channels-first": (dict(g(), src=torch.zeros(4, 3, 8, 8, dtype=torch.uint8)), {}, "3 channels"),
        "index out of range": (g(), {"index": torch.tensor([0, 1, 2, 4])}, "out of range"),
        "index negative": (g(), {"index": torch.tensor([0, -1, 2, 3])}, "out of range"),
        "index dtype": (g(), {"index": ix.int()}, "int64"),
        "index rank": (g(), {"index": ix[None]}, "index"),
        "batch mismatch theta": (dict(g(), theta=ident_theta(3)), {}, "theta"),
        "batch mismatch index": (g(), {"index": ix[:3]}, "theta"),
        "color shape": (dict(g(), color=torch.ones(4, 4)), {}, "color"),
        "color dtype": (dict(g(), color=torch.ones(4, 3, dtype=torch.float64)), {}, "float32"),
        "theta dtype": (dict(g(), theta=ident_theta(4).double()), {}, "float32"),
        "empty batch": (dict(g(), theta=ident_theta(0)[:0], color=torch.ones(0, 3)),
                        {"index": torch.zeros(0, dtype=torch.int64)}, "empty batch"),
        "empty src": (dict(g(), src=torch.zeros(0, 8, 8, 3, dtype=torch.uint8)), {}, "empty"),
        "out dtype": (g(), {"dtype": torch.int32}, "dtype"),
        "fill": (g(), {"fill": 300.0}, "fill"),
        "std zero": (dict(g(), std=(0.2, 0.0, 0.2)), {}, "std"),
        "mean length": (dict(g(), mean=(0.5, 0.5)), {}, "mean"),
        "out_size": (g(), {"out_size": (0, 8)}, "out_size"),
        "out_size one value": (g(), {"out_size": (16,)}, "out_size must be (height, width)"),
        "out_size scalar": (g(), {"out_size": 16}, "out_size must be (height, width)"),
        "out_size float": (g(), {"out_size": (16.5, 8)}, "out_size must be (height, width)"),
        "out_size string": (g(), {"out_size": "16"}, "out_size must be (height, width)"),
        "src too wide": (dict(g(), src=torch.zeros(1, 1, 2 ** 22 + 1, 3, dtype=torch.uint8), theta=ident_theta(1),
                              color=torch.ones(1, 3)), {}, "more than 2^22 pixels high or wide"),
        "out_size overflow": (g(), {"out_size": (2 ** 40, 2 ** 40)}, "out_size (1099511627776, 1099511627776) is too large"),
        "out_size unallocatable": (g(), {"out_size": (2 ** 21, 2 ** 21)}, "could not be allocated"),
        "mean string": (dict(g(), mean="abc"), {}, "mean must be 3 numbers"),
        "mean scalar": (dict(g(), mean=0.5), {}, "mean must be 3 numbers"),
        "std none": (dict(g(), std=None), {}, "std must be 3 numbers"),
        "mean words": (dict(g(), mean=("a", "b", "c")), {}, "mean must be 3 numbers"),
        "out layout": (g(), {"out": torch.zeros(4, 3, 8, 8), "dtype": torch.float32}, "channels-last"),
        "out shape": (g(), {"out": poisoned(4, 8, 7, torch.float32, "cpu")}, "out must be"),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_arguments_raise_clearly(case):
    pos, kw, needle = _bad_cases()[case]
    with pytest.raises((ValueError, RuntimeError)) as info:
        ops.augment(pos["src"], pos["theta"], pos["color"], pos["mean"], pos["std"], **kw)
    msg = str(info.value)
    assert needle in msg, msg
    assert "tinyfast.ops.augment" in msg and len(msg.strip().splitlines()) <= 2, msg


def test_checks_live_in_the_compiled_op():
    """Calling torch.ops directly (no Python wrapper) is just as safe."""
    g = _good()
    with pytest.raises(ValueError, match="out of range"):
        torch.ops.tinyfast.augment(g["src"], torch.tensor([0, 9, 1, 2]), g["theta"], g["color"],
                                   list(MEAN), list(STD), 8, 8, torch.float16, 0.0)
    with pytest.raises(ValueError, match="uint8"):
        torch.ops.tinyfast.augment(g["src"].float(), None, g["theta"], g["color"],
                                   list(MEAN), list(STD), 8, 8, torch.float16, 0.0)


def test_backends_listed():
    assert "cpu" in ops.available_backends()
    assert set(ops.available_backends()) <= set(ops.compiled_backends())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_out_buffer_at_unaligned_offset(device, dtype):
    """An ``out=`` view starting one element into its storage (not 16-byte aligned) is written whole."""
    need(device)
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(11)
    n, h, w, b, out_size = 4, 64, 64, 4, (64, 64)
    src, theta, color, index = random_case(gen, n, h, w, b, out_size, True)
    ref = reference(src, theta, color, MEAN, STD, index, out_size, 0.0)
    flat = torch.full((1 + b * out_size[0] * out_size[1] * 3,), float("nan"), dtype=dtype, device=dev)
    buf = flat[1:].view(b, *out_size, 3).permute(0, 3, 1, 2)
    assert buf.storage_offset() == 1
    ops.augment(src.to(dev), theta.to(dev), color.to(dev), MEAN, STD, index=index.to(dev),
                out_size=out_size, dtype=dtype, out=buf)
    assert_matches(buf, ref, dtype)
    assert torch.isnan(flat[0]), "nothing is written before the view"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["loader-view", "expanded", "transposed"])
def test_strided_parameters_match_contiguous(device, layout):
    """The loaders' (B, 2, 3) view of a (B, 9) block, stride-0 expanded and fully strided
    parameters give exactly what contiguous copies give."""
    need(device)
    gen = torch.Generator().manual_seed(17)
    src, theta, color, index = random_case(gen, 6, 16, 20, 5, (12, 14), True)
    if layout == "loader-view":
        both = torch.cat([theta.reshape(5, 6), color], dim=1)
        t, c = both[:, :6].reshape(5, 2, 3), both[:, 6:]
        assert t.stride() == (9, 3, 1) and c.stride() == (9, 1)
    elif layout == "expanded":
        t, c = theta[1:2].expand(5, 2, 3), color[1:2].expand(5, 3)
        assert t.stride(0) == 0 and c.stride(0) == 0
    else:
        t, c = theta.permute(1, 2, 0).contiguous().permute(2, 0, 1), color.t().contiguous().t()
        assert not t.is_contiguous() and not c.is_contiguous()
    dev = torch.device(device)
    kw = dict(index=index.to(dev), out_size=(12, 14), dtype=torch.float32, fill=9.0)
    got = ops.augment(src.to(dev), t.to(dev), c.to(dev), MEAN, STD, **kw)
    want = ops.augment(src.to(dev), t.contiguous().to(dev), c.contiguous().to(dev), MEAN, STD, **kw)
    assert torch.equal(got, want)


def test_copies_towards_the_host_are_blocking(monkeypatch):
    """Parameters copied to a CPU ``src`` must have landed before the CPU kernel reads them: only a
    copy towards CUDA may be ``non_blocking`` (here a meta tensor stands in for a CUDA one)."""
    calls = []
    real_to = torch.Tensor.to
    g = _good()

    def spy(self, *args, **kwargs):
        if self.device.type == "meta":
            calls.append(kwargs.get("non_blocking", False))
            return g["theta"] if self.dim() == 3 else g["color"]
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    out = ops.augment(g["src"], torch.empty(4, 2, 3, device="meta"), torch.empty(4, 3, device="meta"),
                      MEAN, STD, dtype=torch.float32)
    assert calls == [False, False]
    assert torch.equal(out, normalise_f32(g["src"], torch.float32))

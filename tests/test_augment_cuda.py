"""CUDA-only checks of tinyfast.ops.augment (marked ``cuda``; skipped without a GPU).

The float64 reference comparisons run on both devices in test_augment_op.py; here: CPU and CUDA
bit for bit (the two kernels share csrc/augment_pixel.h), streams, CUDA graphs, 64-bit output
offsets, bad input on the device, and the launch configuration at the sizes that stress it (more than
65,535 blocks, unaligned sources, 4096x4096 sources, blur5's grid-stride loop).
"""
import pytest
import torch

from test_augment_op import MEAN, STD, DTYPES, ident_theta, normalise_f32, ops, poisoned, random_case

pytestmark = pytest.mark.cuda


@pytest.fixture(autouse=True)
def _need_cuda():
    if "cuda" not in ops.available_backends():
        pytest.skip("CUDA kernels not compiled or no GPU")
    yield
    torch.cuda.synchronize()  # a kernel fault surfaces here, in the test that caused it


def bits(x):
    """The raw bits of an op output, NHWC, comparable with torch.equal (NaN == NaN)."""
    x = x.permute(0, 2, 3, 1).contiguous().cpu()
    return x.view(torch.int16 if x.element_size() == 2 else torch.int32)


SHAPES = [(6, 64, 64, 9, (64, 64)), (4, 13, 10, 7, (9, 11)), (3, 130, 129, 3, (33, 40)),
          (2, 128, 128, 5, (64, 64)), (5, 64, 64, 4, (32, 96))]


@pytest.mark.parametrize("contrast", [False, True], ids=["contrast-1", "contrast-random"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[1]}x{s[2]}to{s[4][0]}x{s[4][1]}")
def test_cpu_and_cuda_bit_identical(dtype, shape, contrast):
    """The docstring's claim: both kernels give the same bits for any geometry and colour factors,
    contrast included (the CPU sums the contrast mean in the CUDA block reduction's order)."""
    n, h, w, b, out_size = shape
    gen = torch.Generator().manual_seed(h * 1000 + w + b)
    src, theta, color, index = random_case(gen, n, h, w, b, out_size, True)
    if not contrast:
        color[:, 1] = 1.0
    else:
        assert (color[:, 1] != 1.0).any()
    kw = dict(out_size=out_size, dtype=dtype, fill=23.0)
    cpu = ops.augment(src, theta, color, MEAN, STD, index=index, **kw)
    gpu = ops.augment(src.cuda(), theta.cuda(), color.cuda(), MEAN, STD, index=index.cuda(), **kw)
    assert torch.equal(bits(cpu), bits(gpu))


def test_cpu_and_cuda_bit_identical_with_contrast_on_large_images():
    """Sources past one chunk of the reduction (64 pixels per thread: > 16384 pixels)."""
    gen = torch.Generator().manual_seed(4)
    src, theta, color, index = random_case(gen, 6, 200, 160, 12, (64, 64), True)
    color[:, 1] = 0.5 + torch.rand(12, generator=gen)
    cpu = ops.augment(src, theta, color, MEAN, STD, index=index, dtype=torch.float32)
    gpu = ops.augment(src.cuda(), theta, color, MEAN, STD, index=index.cuda(), dtype=torch.float32)
    assert torch.equal(bits(cpu), bits(gpu))


def test_runs_on_the_current_stream_without_syncing():
    gen = torch.Generator().manual_seed(8)
    src, theta, color, index = (t.cuda() for t in random_case(gen, 8, 64, 64, 64, (64, 64), True))
    want = ops.augment(src, theta, color, MEAN, STD, index=index)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)  # keeps the side stream busy for tens of milliseconds
        got = ops.augment(src, theta, color, MEAN, STD, index=index)
        assert not side.query(), "the op waited for the stream (or ran on another one)"
    torch.cuda.current_stream().wait_stream(side)
    assert torch.equal(got, want)


def test_cuda_graph_capture_and_replay():
    gen = torch.Generator().manual_seed(9)
    src, theta, color, index = (t.cuda() for t in random_case(gen, 8, 64, 64, 16, (48, 48), True))

    def step():
        return ops.augment(src, theta, color, MEAN, STD, index=index, out_size=(48, 48), dtype=torch.bfloat16)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = step()
    for seed in (10, 11):  # new parameters written in place, then replayed
        _, t2, c2, i2 = random_case(torch.Generator().manual_seed(seed), 8, 64, 64, 16, (48, 48), True)
        theta.copy_(t2), color.copy_(c2), index.copy_(i2)
        graph.replay()
        assert torch.equal(static_out, step())


def test_loader_parameter_view_on_the_device():
    """The loaders hand the (B, 2, 3) view of one (B, 9) device block: no copy, same result."""
    gen = torch.Generator().manual_seed(12)
    src, theta, color, index = random_case(gen, 8, 64, 64, 16, (64, 64), True)
    both = torch.cat([theta.reshape(16, 6), color], 1).cuda()
    t, c = both[:, :6].reshape(16, 2, 3), both[:, 6:].contiguous()
    assert not t.is_contiguous()
    got = ops.augment(src.cuda(), t, c, MEAN, STD, index=index.cuda())
    want = ops.augment(src.cuda(), theta.cuda(), color.cuda(), MEAN, STD, index=index.cuda())
    assert torch.equal(got, want)


def test_output_over_2_gib_uses_64_bit_offsets():
    """float32 64x64 output: 49,152 bytes per image; 44,000 images are 2.16e9 bytes > 2^31."""
    b = 44_000
    assert b * 64 * 64 * 3 * 4 > 2 ** 31
    gen = torch.Generator().manual_seed(13)
    src, theta, color, _ = random_case(gen, 8, 64, 64, 8, (64, 64), False)
    index = torch.randint(0, 8, (b,), generator=gen)
    rows = torch.randint(0, 8, (b,), generator=gen)  # per-sample parameters drawn from 8 sets
    out = poisoned(b, 64, 64, torch.float32, "cuda")
    ops.augment(src.cuda(), theta[rows].cuda(), color[rows].cuda(), MEAN, STD, index=index.cuda(), out=out)
    check = torch.tensor([0, 1, b // 2, 43_690, 43_691, b - 2, b - 1])  # around byte 2^31 too
    want = ops.augment(src, theta[rows[check]], color[rows[check]], MEAN, STD, index=index[check],
                       dtype=torch.float32)
    torch.testing.assert_close(out[check.cuda()].cpu(), want, rtol=1e-5, atol=1e-5)
    assert not torch.isnan(out[-1]).any()
    del out


def test_nonfinite_device_parameters_give_fill_not_a_fault():
    """Device parameters are not read back (no sync): non-finite theta samples fill."""
    src = torch.randint(0, 256, (3, 8, 8, 3), dtype=torch.uint8, device="cuda")
    inf, nan = float("inf"), float("nan")
    theta = torch.tensor([[[inf, 0, 0], [0, 1, 0]], [[1, 0, 1e30], [0, 1, -1e30]],
                          [[nan, 0, 0], [0, nan, 0]]], device="cuda")
    out = ops.augment(src, theta, torch.ones(3, 3, device="cuda"), MEAN, STD, dtype=torch.float32, fill=200.0)
    expect = normalise_f32(torch.full((3, 8, 8, 3), 200, dtype=torch.uint8), torch.float32)
    torch.testing.assert_close(out.cpu(), expect, rtol=1e-6, atol=1e-6)


def test_out_of_range_device_index_gives_nan_rows():
    src = torch.randint(0, 256, (4, 8, 8, 3), dtype=torch.uint8, device="cuda")
    index = torch.tensor([0, 4, -1, 3, 1 << 40], device="cuda")
    out = ops.augment(src, ident_theta(5), torch.ones(5, 3), MEAN, STD, index=index, dtype=torch.float32)
    assert torch.isnan(out.cpu()).flatten(1).all(1).tolist() == [False, True, True, False, True]


def _direct(src, index, theta, color, **kw):
    return torch.ops.tinyfast.augment(src, index, theta, color, list(MEAN), list(STD), kw.get("h", 8),
                                      kw.get("w", 8), torch.float16, 0.0)


def _device_bad_cases():
    s = lambda: torch.zeros(4, 8, 8, 3, dtype=torch.uint8, device="cuda")  # noqa: E731
    t = lambda: ident_theta(4).cuda()  # noqa: E731
    c = lambda: torch.ones(4, 3, device="cuda")  # noqa: E731
    return {
        "theta on the host": (lambda: _direct(s(), None, ident_theta(4), c()), "theta is on cpu"),
        "color on the host": (lambda: _direct(s(), None, t(), torch.ones(4, 3)), "color is on cpu"),
        "index on the host": (lambda: _direct(s(), torch.arange(4), t(), c()), "index is on cpu"),
        "src on the host": (lambda: _direct(s().cpu(), None, t(), c()), "theta is on cuda"),
        "src non-contiguous": (lambda: _direct(torch.zeros(4, 8, 16, 3, dtype=torch.uint8, device="cuda")[:, :, ::2],
                                               None, t(), c()), "contiguous"),
        "src float": (lambda: _direct(s().float(), None, t(), c()), "uint8"),
        "batch 0": (lambda: _direct(s(), torch.zeros(0, dtype=torch.int64, device="cuda"), t()[:0], c()[:0]),
                    "empty batch"),
        "index dtype": (lambda: _direct(s(), torch.arange(4, device="cuda").int(), t(), c()), "int64"),
        "huge image": (lambda: _direct(s(), None, t(), c(), h=40_000, w=20_000), "2^31"),
    }


@pytest.mark.parametrize("case", list(_device_bad_cases()))
def test_bad_device_input_is_one_clear_error(case):
    fn, needle = _device_bad_cases()[case]
    with pytest.raises((ValueError, RuntimeError)) as info:
        fn()
    msg = str(info.value)
    assert needle in msg and "tinyfast.ops.augment" in msg and len(msg.strip().splitlines()) <= 2, msg
    # No fault left behind: the device still runs a good call.
    good = ops.augment(torch.zeros(2, 8, 8, 3, dtype=torch.uint8, device="cuda"), ident_theta(2),
                       torch.ones(2, 3), MEAN, STD, dtype=torch.float32)
    torch.cuda.synchronize()
    assert torch.equal(good.cpu(), normalise_f32(torch.zeros(2, 8, 8, 3, dtype=torch.uint8), torch.float32))


def test_parameters_on_the_host_for_a_device_src_are_checked_before_the_copy():
    src = torch.zeros(4, 8, 8, 3, dtype=torch.uint8, device="cuda")
    theta = ident_theta(4)
    theta[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"theta\[1\] has a non-finite value"):
        ops.augment(src, theta, torch.ones(4, 3), MEAN, STD)
    with pytest.raises(ValueError, match="out of range"):
        ops.augment(src, ident_theta(4), torch.ones(4, 3), MEAN, STD, index=torch.tensor([0, 1, 2, 4]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_blur5_cpu_and_cuda_bit_identical(dtype):
    gen = torch.Generator().manual_seed(30)
    src, theta, color, _ = random_case(gen, 6, 64, 64, 6, (64, 64), False)
    x = ops.augment(src, theta, color, MEAN, STD, dtype=dtype)
    sig = torch.tensor([0.3, 0.8, 1.0, 1.5, 2.2, 3.0])
    assert torch.equal(bits(ops.blur5(x, sig)), bits(ops.blur5(x.cuda(), sig)))



def test_mean_image_cpu_and_cuda_bit_identical():
    gen = torch.Generator().manual_seed(31)
    src, theta, color, index = random_case(gen, 6, 64, 64, 8, (56, 56), True)
    color[:, 1] = 1.0
    m = torch.rand(56, 56, 3, generator=gen)
    kw = dict(out_size=(56, 56), dtype=torch.float32, mean_image=m)
    cpu = ops.augment(src, theta, color, MEAN, STD, index=index, **kw)
    gpu = ops.augment(src.cuda(), theta, color, MEAN, STD, index=index.cuda(), **kw)
    assert torch.equal(bits(cpu), bits(gpu))


# ---- launch configuration at the sizes the first GPU run must hold (one block per image in
# gridDim.x, shared-memory staging vs the global path, byte vs 16-byte staging, grid-stride blur)
def test_batch_past_65535_blocks():
    """70,000 output images = 70,000 blocks in gridDim.x (its limit is 2^31 - 1; y and z stop at
    65,535): samples on both sides of 65,535 equal the CPU kernel's bits."""
    b = 70_000
    gen = torch.Generator().manual_seed(60)
    src, theta, color, _ = random_case(gen, 16, 16, 16, 16, (8, 8), False)
    index = torch.randint(0, 16, (b,), generator=gen)
    rows = torch.randint(0, 16, (b,), generator=gen)
    out = poisoned(b, 8, 8, torch.bfloat16, "cuda")
    ops.augment(src.cuda(), theta[rows].cuda(), color[rows].cuda(), MEAN, STD, index=index.cuda(),
                out_size=(8, 8), out=out)
    check = torch.tensor([0, 65_534, 65_535, 65_536, b - 1])
    want = ops.augment(src, theta[rows[check]], color[rows[check]], MEAN, STD, index=index[check],
                       out_size=(8, 8), dtype=torch.bfloat16)
    assert torch.equal(bits(out[check.cuda()]), bits(want))
    assert not torch.isnan(out).any()


@pytest.mark.parametrize("offset", [1, 4, 8, 16])
def test_src_at_unaligned_offset(offset):
    """A src view starting `offset` bytes into its storage: 64x64 images (12 KiB, a multiple of 16)
    are then staged byte by byte unless the base is 16-byte aligned; same bits either way."""
    gen = torch.Generator().manual_seed(61)
    src, theta, color, index = random_case(gen, 5, 64, 64, 7, (64, 64), True)
    flat = torch.zeros(offset + src.numel(), dtype=torch.uint8, device="cuda")
    view = flat[offset:].view(src.shape)
    view.copy_(src)
    assert view.storage_offset() == offset and view.is_contiguous()
    got = ops.augment(view, theta, color, MEAN, STD, index=index.cuda(), dtype=torch.float16)
    want = ops.augment(src, theta, color, MEAN, STD, index=index, dtype=torch.float16)
    assert torch.equal(bits(got), bits(want))


def test_4096x4096_source_takes_the_global_path_with_contrast():
    """48 MiB sources (global-memory path; the contrast mean reduces 16.7 M pixels per block, 64
    chunks per thread) to a 64x64 output: CPU bits."""
    gen = torch.Generator().manual_seed(62)
    src = torch.randint(0, 256, (2, 4096, 4096, 3), dtype=torch.uint8, generator=gen)
    s = 4096 / 64
    theta = torch.tensor([[[s, 0.0, 0.5], [0.0, s, 0.5]], [[0.0, -s, 4095.0], [s, 0.0, -7.0]]])
    color = torch.tensor([[1.1, 0.7, 1.3], [0.9, 1.4, 0.6]])
    kw = dict(index=torch.tensor([1, 0]), out_size=(64, 64), dtype=torch.float32, fill=31.0)
    got = ops.augment(src.cuda(), theta, color, MEAN, STD, **{**kw, "index": kw["index"].cuda()})
    want = ops.augment(src, theta, color, MEAN, STD, **kw)
    assert torch.equal(bits(got), bits(want))


def test_blur5_grid_stride_past_2_pow_20_blocks():
    """blur5 caps its grid at 2^20 blocks of 256 threads and loops: 22,000 64x64 images are
    270 M elements, more than one pass; the last samples equal the CPU kernel's bits."""
    b = 22_000
    assert b * 64 * 64 * 3 > (1 << 20) * 256
    gen = torch.Generator().manual_seed(63)
    src, theta, color, _ = random_case(gen, 8, 64, 64, 8, (64, 64), False)
    rows = torch.randint(0, 8, (b,), generator=gen)
    x = ops.augment(src.cuda(), theta[rows].cuda(), color[rows].cuda(), MEAN, STD, index=rows.cuda())
    sig = 0.3 + 2 * torch.rand(b, generator=gen)
    got = ops.blur5(x, sig)
    check = torch.tensor([0, b // 2, b - 2, b - 1])
    want = ops.blur5(x[check.cuda()].cpu().contiguous(memory_format=torch.channels_last), sig[check])
    assert torch.equal(bits(got[check.cuda()]), bits(want))

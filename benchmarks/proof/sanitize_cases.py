"""A reduced, deterministic set of fused-op calls for ``compute-sanitizer`` (memcheck, racecheck).

Every kernel path once: shared-memory staging (64x64; 128x128 with the opt-in above 48 KiB), the
global-memory path (> 48 KiB sources), the element-wise tail (odd output sizes), an unaligned
``out=`` view, every output dtype, contrast (the block reduction) and an out-of-range device index
(the NaN rows), and blur5. Each result is compared with the CPU kernel (bit for bit where contrast is 1),
so the run also fails on a wrong value; exit status 0 only when every case matches.

    compute-sanitizer --tool memcheck --error-exitcode 3 python -m benchmarks.proof.sanitize_cases
    python -m benchmarks.proof.sanitize_cases --device cpu      # the same cases on the CPU kernel alone
"""
from __future__ import annotations

import argparse
import sys

import torch

MEAN = (0.480, 0.448, 0.398)
STD = (0.277, 0.269, 0.282)
# (n, h, w, batch, out_h, out_w, dtype, contrast)
CASES = [
    (4, 64, 64, 6, 64, 64, torch.bfloat16, True),
    (4, 64, 64, 5, 64, 64, torch.float16, False),
    (3, 13, 10, 7, 9, 11, torch.float32, True),
    (2, 128, 128, 2, 64, 64, torch.float16, True),
    (2, 130, 129, 3, 33, 40, torch.bfloat16, False),
]


def case_inputs(n, h, w, b, seed):
    """Random images, affine maps (rotation, zoom, shifts past the border) and colour factors."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=g)
    ang = (torch.rand(b, generator=g) * 2 - 1) * 3.14159
    z = 0.6 + torch.rand(b, generator=g)
    c, s = z * torch.cos(ang), z * torch.sin(ang)
    theta = torch.stack([torch.stack([c, -s, (torch.rand(b, generator=g) - 0.3) * w], -1),
                         torch.stack([s, c, (torch.rand(b, generator=g) - 0.3) * h], -1)], 1)
    color = 0.6 + 0.8 * torch.rand(b, 3, generator=g)
    index = torch.randint(0, n, (b,), generator=g)
    return src, theta, color, index


def run_case(ops, device, case, seed) -> str | None:
    """None when the device result matches the CPU kernel's, else a one-line description."""
    n, h, w, b, oh, ow, dtype, contrast = case
    src, theta, color, index = case_inputs(n, h, w, b, seed)
    if not contrast:
        color[:, 1] = 1.0
    kw = dict(out_size=(oh, ow), fill=17.0)
    want = ops.augment(src, theta, color, MEAN, STD, index=index, dtype=dtype, **kw)
    dev = torch.device(device)
    flat = torch.full((1 + b * oh * ow * 3,), float("nan"), dtype=dtype, device=dev)
    unaligned = flat[1:].view(b, oh, ow, 3).permute(0, 3, 1, 2)
    got = ops.augment(src.to(dev), theta.to(dev), color.to(dev), MEAN, STD, index=index.to(dev), dtype=dtype, **kw)
    ops.augment(src.to(dev), theta.to(dev), color.to(dev), MEAN, STD, index=index.to(dev), out=unaligned, **kw)
    for name, out in (("aligned", got), ("unaligned out=", unaligned)):
        out = out.cpu()
        same = torch.equal(out, want) if not contrast else torch.allclose(out.float(), want.float(), 1e-2, 1e-2)
        if not same or torch.isnan(out).any():
            return f"{case}: {name} output differs from the CPU kernel"
    return None


def bad_index_case(ops, device) -> str | None:
    """An out-of-range device index: NaN rows, no read outside src."""
    src, theta, color, _ = case_inputs(3, 16, 16, 4, 99)
    dev = torch.device(device)
    if dev.type == "cpu":
        return None  # a CPU index is refused before the kernel (tests/test_augment_op.py)
    index = torch.tensor([0, 3, -5, 2], device=dev)
    out = ops.augment(src.to(dev), theta, color, MEAN, STD, index=index, dtype=torch.float32).cpu()
    nan_rows = torch.isnan(out).flatten(1).all(1).tolist()
    return None if nan_rows == [False, True, True, False] else f"bad index: NaN rows {nan_rows}"


def blur_case(ops, device) -> str | None:
    """blur5, the second kernel: reflected borders of an odd-sized image, bit for bit with the CPU."""
    src, theta, color, _ = case_inputs(3, 13, 10, 3, 7)
    x = ops.augment(src, theta, color, MEAN, STD, dtype=torch.float16)
    want = ops.blur5(x, [0.5, 1.0, 2.0])
    got = ops.blur5(x.to(torch.device(device)), [0.5, 1.0, 2.0]).cpu()
    return None if torch.equal(got, want) else "blur5 differs from the CPU kernel"


def main(argv=None) -> int:
    """Run every case; print one line per failure and a summary; 0 when all match."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    args = p.parse_args(argv)
    from tinyfast import ops

    if args.device.startswith("cuda") and "cuda" not in ops.available_backends():
        print("sanitize_cases: no CUDA kernels or no GPU here", file=sys.stderr)
        return 2
    failures = [f for f in (run_case(ops, args.device, c, i) for i, c in enumerate(CASES)) if f]
    failures += [f for f in (bad_index_case(ops, args.device), blur_case(ops, args.device)) if f]
    if torch.device(args.device).type == "cuda":
        torch.cuda.synchronize()
    for f in failures:
        print(f"FAIL {f}")
    print(f"sanitize_cases: {len(CASES) + 2 - len(failures)}/{len(CASES) + 2} cases match on {args.device}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Static instruction counts of the fused op's CUDA kernel, per output pixel, from its SASS.

No GPU needed: ``nvcc`` compiles ``csrc/augment_cuda.cu`` for one arch (default sm_90) into a cubin,
``cuobjdump -sass`` disassembles it (the CUDA toolkit's, or the copy Triton's wheel ships), and the
hot loop of each kernel is counted by opcode class.

The count is of the *hot path*: the build defines ``TINYFAST_SASS_PROBE``, which makes every
bilinear sample take the four-taps-inside branch and every sample run the colour steps with
per-channel normalisation (augment_pixel.h / augment_cuda.cu read the macro; the extension itself
never defines it). The vector loop of the kernel is then straight-line code over one group of
``kPix`` output pixels (8 for fp16/bf16, 4 for fp32); its instructions divided by ``kPix`` are the
issue slots per output pixel. The contrast-mean pass is counted the same way, per source pixel.

What the numbers mean on a GPU (an issue-rate model, not a measurement): an SM issues 4 warp
instructions per clock, 128 thread-instructions, so a kernel that is issue-bound needs about
``instr/pixel / 128`` clocks per output pixel per SM; conversions (I2F, F2I, FRND, F2F, F2FP) run at
16 per clock per SM on sm_80/sm_90, so they alone need ``conversions/pixel / 16``. The larger of
the two, times pixels, over the SM count and clock, bounds the kernel from below; against the bytes
it moves (3 read + 6 written per pixel for bf16 at 64x64) that is the bandwidth it can reach.

    python -m benchmarks.sass_count [--arch sm_90] [--json OUT.json] [--csrc OTHER/csrc]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Opcode classes (by the opcode's first dotted part).
CONVERSIONS = {"I2F", "I2FP", "F2I", "F2IP", "FRND", "F2F", "F2FP", "I2I", "I2IP"}
SHARED_LOADS = {"LDS", "LDSM"}
FP32 = {"FADD", "FMUL", "FFMA", "FMNMX", "FSEL", "FSETP", "FSET", "FCHK", "FMUL32I", "FADD32I", "FFMA32I"}
GLOBAL_MEM = {"LDG", "STG", "LD", "ST"}
NOT_ISSUED = {"NOP"}

LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
FUNC = re.compile(r"Function : (\S+)")


def parse_sass(text: str) -> dict[str, list[tuple[int, str, str]]]:
    """{mangled kernel name: [(address, opcode, operands), ...]} of a ``cuobjdump -sass`` listing."""
    funcs: dict[str, list[tuple[int, str, str]]] = {}
    cur = None
    for line in text.splitlines():
        m = FUNC.search(line)
        if m:
            cur = funcs.setdefault(m.group(1), [])
            continue
        m = LINE.search(line)
        if m and cur is not None:
            cur.append((int(m.group(1), 16), m.group(3), m.group(4).strip()))
    return funcs


def loops(insts: list[tuple[int, str, str]]) -> list[tuple[int, int]]:
    """(head, backedge) address pairs of the backward branches (loops), innermost first by size."""
    out = []
    for addr, op, args in insts:
        if op.split(".")[0] == "BRA":
            m = re.search(r"0x([0-9a-f]+)\s*$", args)
            if m and int(m.group(1), 16) <= addr:
                out.append((int(m.group(1), 16), addr))
    return sorted(out, key=lambda hb: hb[1] - hb[0])


def histogram(insts, lo: int, hi: int) -> Counter:
    return Counter(op.split(".")[0] for a, op, _ in insts if lo <= a <= hi and op.split(".")[0] not in NOT_ISSUED)


def summarise(c: Counter, per: int) -> dict:
    total = sum(c.values())
    cls = lambda names: sum(v for k, v in c.items() if k in names)
    return {"instructions": total, "per_pixel": round(total / per, 3),
            "conversions_per_pixel": round(cls(CONVERSIONS) / per, 3),
            "shared_loads_per_pixel": round(cls(SHARED_LOADS) / per, 3),
            "fp32_per_pixel": round(cls(FP32) / per, 3),
            "opcodes": dict(c.most_common())}


def analyse(funcs: dict, kpix: dict[str, int]) -> list[dict]:
    """Per kernel: its vector loop (kPix pixels unrolled, the group's 16-byte stores) and the
    contrast-mean loop (the largest loop with the luma products between the staging barrier and the
    vector loop)."""
    rows = []
    for name, insts in funcs.items():
        if "augment_kernel" not in name:
            continue
        out_t = next((t for t in kpix if t in name), None)
        if out_t is None:
            continue
        ls = loops(insts)
        if not ls:
            continue
        # The vector loop: the smallest loop holding the group's 16-byte stores (the one-row groups).
        vec = [(h, b) for h, b in ls
               if sum(1 for a, op, _ in insts if h <= a <= b and op.startswith("STG") and ".128" in op) >= 2]
        if not vec:
            continue
        head, back = vec[0]
        row = {"kernel": name, "out": out_t, "kpix": kpix[out_t],
               "smem": re.search(r"ELb1E", name) is not None,  # augment_kernel<Out, kSmem = true>
               "vector_loop": summarise(histogram(insts, head, back), kpix[out_t])}
        # The contrast-mean loop: the loop before the first block barrier that multiplies (the
        # staging copy loops only load and store).
        bar = next((a for a, op, _ in insts if op.startswith("BAR") and a > 0), None)
        mean_loops = [(h, b) for h, b in ls if (bar is None or h > bar) and b < head
                      and histogram(insts, h, b).get("FMUL", 0) >= 3 and not histogram(insts, h, b).get("STG")]
        if mean_loops:
            h, b = max(mean_loops, key=lambda hb: hb[1] - hb[0])
            c = histogram(insts, h, b)
            # the loop handles this many source pixels per iteration: count the luma products (9 per pixel)
            px = max(1, c.get("FMUL", 0) // 6)
            row["mean_loop"] = summarise(c, px) | {"pixels_per_iteration": px}
        rows.append(row)
    return rows


def find_tool(name: str) -> str:
    cands = [os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", name), shutil.which(name)]
    try:
        import triton  # its NVIDIA backend ships cuobjdump/nvdisasm
        cands.append(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name))
    except ImportError:
        pass
    for c in cands:
        if c and os.path.exists(c):
            return c
    raise SystemExit(f"sass_count: error: {name} not found (CUDA toolkit bin, PATH, or triton's backend)")


def compile_cubin(arch: str, out: Path, source: Path = REPO / "csrc" / "augment_cuda.cu",
                  defines: tuple[str, ...] = ("TINYFAST_SASS_PROBE",)) -> None:
    import torch.utils.cpp_extension as ce
    nvcc = find_tool("nvcc")
    inc = [f"-I{p}" for p in ce.include_paths()] + [f"-I{REPO / 'csrc'}"]
    # The extension's own device flags (setup.py): no fast math, no contraction.
    cmd = [nvcc, "-cubin", f"-arch={arch}", "-O3", "-std=c++20", "-fmad=false", "-DTINYFAST_WITH_CUDA=1",
           *[f"-D{d}" for d in defines], *inc, str(source), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"sass_count: error: nvcc failed:\n{r.stderr[-4000:]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sass_count", description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="sm_90", help="nvcc -arch (default sm_90)")
    ap.add_argument("--json", help="also write the counts as JSON here")
    ap.add_argument("--sass", help="count this cuobjdump -sass listing instead of compiling")
    ap.add_argument("--csrc", help="compile augment_cuda.cu of this csrc/ directory instead (another "
                    "version, for a before/after count; it must define the probe macros)")
    a = ap.parse_args(argv)
    if a.sass:
        text = Path(a.sass).read_text()
    else:
        with tempfile.TemporaryDirectory() as d:
            cubin = Path(d) / "augment.cubin"
            if a.csrc:
                src = Path(a.csrc) / "augment_cuda.cu"
                if not src.is_file():
                    print(f"sass_count: error: {src}: no such file", file=sys.stderr)
                    return 2
                if "TINYFAST_PROBE_TRUE" not in (Path(a.csrc) / "augment_pixel.h").read_text(errors="replace"):
                    print(f"sass_count: error: {a.csrc}/augment_pixel.h has no TINYFAST_PROBE_* macros: "
                          "its counts would include the edge and colour-off paths", file=sys.stderr)
                    return 2
                compile_cubin(a.arch, cubin, source=src)
            else:
                compile_cubin(a.arch, cubin)
            text = subprocess.run([find_tool("cuobjdump"), "-sass", str(cubin)], capture_output=True,
                                  text=True, check=True).stdout
    rows = analyse(parse_sass(text), {"OutBF16": 8, "OutF16": 8, "OutF32": 4})
    if not rows:
        print("sass_count: error: no augment_kernel found in the listing", file=sys.stderr)
        return 1
    print(f"{'kernel':<34} {'instr/px':>9} {'conv/px':>8} {'LDS/px':>7} {'fp32/px':>8} "
          f"{'mean instr/src px':>18}")
    for r in rows:
        short = re.sub(r".*augment_kernel", "augment_kernel", r["kernel"])[:34]
        v, m = r["vector_loop"], r.get("mean_loop")
        print(f"{short:<34} {v['per_pixel']:>9} {v['conversions_per_pixel']:>8} "
              f"{v['shared_loads_per_pixel']:>7} {v['fp32_per_pixel']:>8} "
              f"{m['per_pixel'] if m else '-':>18}")
    if a.json:
        from tinyfast._util import atomic_write_text
        atomic_write_text(a.json, json.dumps({"arch": a.arch, "csrc": a.csrc or "csrc", "kernels": rows},
                                             indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

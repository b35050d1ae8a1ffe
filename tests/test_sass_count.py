"""benchmarks/sass_count.py: the SASS parser against a hand-counted listing, and (where nvcc and a
cuobjdump are here, as in CI) the structure of the kernel's hot loop that the CPU-side levers of
the op's speed rest on: no conversion instruction for the floor, 12 shared-memory taps per pixel."""

import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks import sass_count as sc

LISTING = """
	code for sm_90
		Function : _ZN8tinyfast14augment_kernelINS0_7OutBF16ELb1EEEvNS0_6ParamsE
	.headerflags	@"EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0000*/                   LDC R1, c[0x0][0x28] ;
        /*0010*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*0020*/                   LDS.U8 R2, [R3] ;
        /*0030*/                   FMUL R4, R2, R5 ;
        /*0040*/                   FMUL R4, R4, R5 ;
        /*0050*/                   FMUL R4, R4, R5 ;
        /*0060*/               @P0 BRA 0x20 ;
        /*0070*/                   NOP ;
        /*0080*/                   LDS.U8 R6, [R7] ;
        /*0090*/                   I2FP.F32.U32 R6, R6 ;
        /*00a0*/                   FADD R8, R6, R9 ;
        /*00b0*/                   F2FP.BF16.F32.PACK_AB R8, R8, R8 ;
        /*00c0*/                   STG.E.128 desc[UR4][R10.64], R12 ;
        /*00d0*/                   STG.E.128 desc[UR4][R10.64+0x10], R16 ;
        /*00e0*/                   STG.E.128 desc[UR4][R10.64+0x20], R20 ;
        /*00f0*/              @!P1 BRA 0x80 ;
        /*0100*/                   EXIT ;
"""


def test_parser_counts_a_known_listing():
    funcs = sc.parse_sass(LISTING)
    (name, insts), = funcs.items()
    assert "augment_kernel" in name and len(insts) == 17
    assert sc.loops(insts) == [(0x20, 0x60), (0x80, 0xF0)]
    (row,) = sc.analyse(funcs, {"OutBF16": 8})
    v = row["vector_loop"]
    # 0x80..0xf0: LDS, I2FP, FADD, F2FP, 3 STG, BRA = 8 instructions for 8 pixels
    assert v["instructions"] == 8 and v["per_pixel"] == 1.0
    assert v["conversions_per_pixel"] == 2 / 8 and v["shared_loads_per_pixel"] == 1 / 8
    assert v["opcodes"] == {"STG": 3, "LDS": 1, "I2FP": 1, "FADD": 1, "F2FP": 1, "BRA": 1}
    m = row["mean_loop"]  # 0x20..0x60 after the barrier: LDS + 3 FMUL + BRA, 3 FMULs -> 1 "pixel"
    assert m["instructions"] == 5 and m["opcodes"]["FMUL"] == 3


def _tools():
    try:
        return sc.find_tool("nvcc"), sc.find_tool("cuobjdump")
    except SystemExit:
        return None


@pytest.mark.skipif(_tools() is None, reason="needs nvcc and a cuobjdump (CUDA toolkit or triton)")
def test_hot_loop_has_no_floor_conversions(tmp_path: Path):
    cubin = tmp_path / "augment.cubin"
    sc.compile_cubin("sm_90", cubin)
    text = subprocess.run([sc.find_tool("cuobjdump"), "-sass", str(cubin)], capture_output=True, text=True,
                          check=True).stdout
    rows = {(r["out"], r["smem"]): r for r in sc.analyse(sc.parse_sass(text), {"OutBF16": 8, "OutF16": 8, "OutF32": 4})}
    assert ("OutBF16", True) in rows and ("OutF32", True) in rows
    for (out, smem), r in rows.items():
        ops = r["vector_loop"]["opcodes"]
        # The floor of an inside coordinate is an add in round-down mode, not FRND + F2I, and x/y
        # are counted in floats: the only conversions left are the 12 uint8 taps and the packing.
        # (One F2I per group remains: the integer division by out_w, once per kPix pixels.)
        assert ops.get("FRND", 0) == 0 and ops.get("F2I", 0) <= 1, (out, ops)
        assert r["vector_loop"]["conversions_per_pixel"] <= 14.0, (out, r["vector_loop"])
        if smem:
            assert r["vector_loop"]["shared_loads_per_pixel"] == 12.0, (out, r["vector_loop"])


def test_cli_rejects_a_listing_without_the_kernel(tmp_path: Path, capsys):
    f = tmp_path / "x.sass"
    f.write_text("Function : other\n        /*0000*/                   EXIT ;\n")
    assert sc.main(["--sass", str(f)]) == 1
    assert "no augment_kernel" in capsys.readouterr().err


def test_cli_refuses_a_csrc_without_the_probe_macros(tmp_path: Path, capsys):
    (tmp_path / "augment_cuda.cu").write_text("// kernel\n")
    (tmp_path / "augment_pixel.h").write_text("#pragma once\n")
    assert sc.main(["--csrc", str(tmp_path)]) == 2
    assert "no TINYFAST_PROBE_* macros" in capsys.readouterr().err
    assert sc.main(["--csrc", str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err

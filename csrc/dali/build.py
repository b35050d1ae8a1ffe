"""Build the DALI plugin operator ``tinyfast__Augment`` into ``tinyfast/libtinyfast_dali.so``.

    python csrc/dali/build.py [--no-cuda] [--verbose]

Compiled against the headers and ``libdali.so`` of the installed ``nvidia-dali`` wheel (the flags of
``nvidia.dali.sysconfig``, so it always matches the DALI it is loaded into), and linked against the
built ``tinyfast/_C*.so``, whose raw-pointer kernels (``csrc/augment_kernels.h``) it calls: the
plugin holds no kernel of its own. The GPU backend is compiled whenever ``tinyfast._C`` has its CUDA
kernels and ``nvcc`` is found (``CUDA_HOME`` or ``PATH``), with or without a visible GPU.
DALI's headers need the CUDA runtime headers even for the CPU backend: they are taken from
``CUDA_HOME`` or from the ``nvidia`` CUDA wheel that a CUDA build of torch installs.
The library is written under a temporary name and renamed when complete. Exit status 0 when
built; 1 when compiling or linking failed; 2 when something it needs is missing here (DALI, the
built extension, CUDA headers), with one line saying what.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT_NAME = "libtinyfast_dali.so"


class BuildError(Exception):
    """The compiler or linker failed (exit status 1)."""


class CannotBuild(BuildError):
    """Something the build needs is missing here (exit status 2: install.sh goes on without it)."""


def _cuda_home() -> Path | None:
    """The CUDA toolkit: $CUDA_HOME, /usr/local/cuda (as setup.py), or the one of nvcc on PATH."""
    nvcc = shutil.which("nvcc")
    candidates = [os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"), "/usr/local/cuda",
                  Path(nvcc).resolve().parents[1] if nvcc else None]
    for c in candidates:
        if c and (Path(c) / "bin" / "nvcc").exists() and (Path(c) / "include" / "cuda_runtime.h").exists():
            return Path(c)
    return None


def _cuda_include(cuda: Path | None) -> Path:
    candidates = [cuda / "include"] if cuda else []
    try:
        import nvidia  # the namespace package of NVIDIA's CUDA wheels (torch's dependencies)

        candidates += [Path(p) / sub / "include" for p in nvidia.__path__
                       for sub in ("cu13", "cu12", "cuda_runtime")]
    except ImportError:
        pass
    for c in candidates:
        if (c / "cuda_runtime.h").exists() and (c / "crt" / "host_config.h").exists():
            return c
    raise CannotBuild("DALI's headers need cuda_runtime.h: set CUDA_HOME to a CUDA toolkit")


def _tinyfast_ext() -> tuple[Path, bool]:
    """(path of tinyfast/_C*.so, whether it has the CUDA kernels)."""
    sys.path.insert(0, str(ROOT))
    try:
        import torch  # noqa: F401  (before tinyfast._C)
        from tinyfast import ops
    except ImportError as e:
        raise CannotBuild(f"cannot import tinyfast ({e}); build tinyfast._C first "
                          "(pip install -e .)") from None
    if not ops.is_built():
        raise CannotBuild("tinyfast._C is not built; run pip install --no-build-isolation -e . first")
    return Path(ops._C.__file__).resolve(), "cuda" in ops.compiled_backends()


def _run(cmd: list[str], verbose: bool) -> None:
    if verbose:
        print(" ".join(cmd), flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise BuildError(f"{cmd[0]} failed:\n{res.stdout}{res.stderr}")


def build(no_cuda: bool = False, verbose: bool = False) -> Path:
    """Compile and link the plugin; returns its path. Raises :class:`BuildError`."""
    try:
        import nvidia.dali.sysconfig as dali_cfg
    except ImportError as e:
        raise CannotBuild(f"NVIDIA DALI is not installed ({e}); pip install 'tinyfast[dali]'") from None
    if not (ROOT / "csrc" / "augment_kernels.h").is_file():
        raise CannotBuild(f"{ROOT / 'csrc' / 'augment_kernels.h'} (the op's raw kernel API) is missing")
    ext, ext_has_cuda = _tinyfast_ext()
    cuda = _cuda_home()
    gpu = ext_has_cuda and cuda is not None and not no_cuda
    flags = ["-O2", "-fPIC", "-std=c++20", f"-I{ROOT / 'csrc'}", f"-I{_cuda_include(cuda)}",
             *dali_cfg.get_compile_flags()] + (["-DTINYFAST_DALI_WITH_CUDA"] if gpu else [])
    cxx = os.environ.get("CXX", sysconfig.get_config_var("CXX") or "g++").split()[0]
    out = ext.parent / OUT_NAME
    with tempfile.TemporaryDirectory() as tmp:
        objs = [str(Path(tmp) / "augment_dali.o")]
        _run([cxx, *flags, "-c", str(HERE / "augment_dali.cc"), "-o", objs[0]], verbose)
        libs = []
        if gpu:
            objs.append(str(Path(tmp) / "augment_dali_cu.o"))
            nv = [f for f in flags if f not in ("-fPIC", "-O2")]
            _run([str(cuda / "bin" / "nvcc"), "-O2", "-Xcompiler", "-fPIC", *nv, "-c",
                  str(HERE / "augment_dali.cu"), "-o", objs[1]], verbose)
            libs = [f"-L{cuda / 'lib64'}", "-lcudart"]
        tmp_out = out.with_name(out.name + ".tmp")
        # $ORIGIN: _C*.so is found next to the plugin wherever the package is installed; libdali
        # resolves to the one the Python process already loaded.
        _run([cxx, "-shared", "-o", str(tmp_out), *objs, *dali_cfg.get_link_flags(),
              f"-L{ext.parent}", f"-l:{ext.name}", *libs, "-Wl,-rpath,$ORIGIN"], verbose)
        os.replace(tmp_out, out)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-cuda", action="store_true", help="CPU backend only")
    p.add_argument("--verbose", action="store_true", help="print the compiler commands")
    args = p.parse_args(argv)
    try:
        path = build(args.no_cuda, args.verbose)
    except BuildError as e:
        print(f"tinyfast DALI plugin not built: {e}", file=sys.stderr)
        return 2 if isinstance(e, CannotBuild) else 1
    print(f"built {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

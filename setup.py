"""Build of the compiled extension ``tinyfast._C``.

* With ``nvcc`` and a CUDA build of torch: CPU + CUDA kernels, even with no GPU visible.
  Arch list from ``TORCH_CUDA_ARCH_LIST``; default the visible GPU's, else ``8.0;9.0``, with PTX
  of the newest arch added (``+PTX``) so a newer GPU than any listed can still run the kernels.
* Otherwise (or with ``TINYFAST_NO_CUDA=1``): a CPU-only extension.

Everything else about the package lives in ``pyproject.toml``.
"""
import glob
import os
import shutil

from setuptools import setup

# torch's extension helper looks for CUDA at import; point it at the toolkit first so the
# link step finds libcudart (torch otherwise may settle on a pip-installed partial CUDA).
if "CUDA_HOME" not in os.environ and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

import torch  # noqa: E402
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _with_cuda() -> bool:
    if os.environ.get("TINYFAST_NO_CUDA", "") == "1":
        return False
    if torch.version.cuda is None or CUDA_HOME is None:
        return False
    return os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc")) or shutil.which("nvcc") is not None


def _arch_list() -> str:
    """TORCH_CUDA_ARCH_LIST when set (used as given), else the visible GPU's arch or 8.0;9.0, the
    newest with +PTX: without PTX a GPU newer than the build's archs has no kernel to run."""
    if os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return os.environ["TORCH_CUDA_ARCH_LIST"]
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return f"{major}.{minor}+PTX"
    return "8.0;9.0+PTX"


def _extension():
    here = os.path.dirname(os.path.abspath(__file__))
    cpp = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    cu = sorted(glob.glob(os.path.join("csrc", "*.cu")))
    # -ffp-contract=off: the normalisation must be a separate multiply and add (bit-exact
    # identity, see tinyfast.ops.augment), also when someone adds -march=native.
    # -fno-trapping-math lets GCC if-convert the clamps so the colour loops vectorise; it does
    # not change any value (unlike -ffast-math).
    cxx = ["-O3", "-std=c++20", "-fopenmp", "-ffp-contract=off", "-fno-trapping-math"]
    include_dirs = [os.path.join(here, "csrc")]
    if _with_cuda() and cu:
        os.environ["TORCH_CUDA_ARCH_LIST"] = _arch_list()
        # No --use_fast_math: it implies -ftz=true, -prec-div=false, -prec-sqrt=false and
        # -fmad=true, so CUDA results could drift from the CPU kernel's. -fmad=false is nvcc's
        # -ffp-contract=off: a*b+c stays a rounded multiply then a rounded add, as on the CPU (the
        # kernel also spells its float32 steps with __fmul_rn/__fadd_rn, so this is belt and braces).
        nvcc = ["-O3", "-std=c++20", "-fmad=false", "-lineinfo"]
        return CUDAExtension(
            "tinyfast._C",
            cpp + cu,
            include_dirs=include_dirs,
            define_macros=[("TINYFAST_WITH_CUDA", "1")],
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            extra_link_args=["-fopenmp"],
        )
    return CppExtension(
        "tinyfast._C",
        cpp,
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx},
        extra_link_args=["-fopenmp"],
    )


if __name__ == "__main__":  # also how pip's build backend runs this file; importing it builds nothing
    setup(
        # install.sh installs the package with TINYFAST_SKIP_EXTENSION=1, then compiles the
        # extension with ``setup.py build_ext --inplace``, whose build/ folder persists (ninja then
        # recompiles only what changed; pip's build folder is a fresh temporary one every time).
        ext_modules=[] if os.environ.get("TINYFAST_SKIP_EXTENSION") == "1" else [_extension()],
        cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    )

#!/usr/bin/env bash
# Sets up everything tinyfast needs on a fresh Debian/Ubuntu x86_64 machine, into ./.venv:
#   system libraries (libjpeg-turbo, OpenCV: FFCV compiles against them), torch + torchvision,
#   tinyfast itself (compiling tinyfast._C: CPU kernels always, CUDA kernels when nvcc is there),
#   and the optional loaders (NVIDIA DALI, FFCV).
# Idempotent: a second run reuses what is there. Environment knobs:
#   TINYFAST_EXTRAS   pip extras to install            (default "test,dali,ffcv")
#   TORCH_SPEC        the torch/torchvision to install (default "torch==2.14.1 torchvision==0.29.1")
#   TORCH_CUDA_ARCH_LIST  CUDA archs to compile        (default: the visible GPU, else "8.0;9.0",
#                                                       the newest +PTX; CI compiles 9.0+PTX only)
#   TINYFAST_NO_CUDA=1    build the CPU-only extension
set -euo pipefail
cd "$(dirname "$0")"

EXTRAS=${TINYFAST_EXTRAS-test,dali,ffcv}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
PY=${PYTHON:-python3}

say() { printf '[install] %s\n' "$*"; }

# 1. System packages (only when FFCV is wanted and they are missing).
if [[ ",$EXTRAS," == *",ffcv,"* ]]; then
  need=()
  for p in libturbojpeg0-dev libopencv-dev pkg-config; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  if ((${#need[@]})); then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    say "apt-get install ${need[*]}"
    $SUDO apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

# 2. Virtual environment + torch.
[ -x .venv/bin/python ] || { say "creating .venv"; "$PY" -m venv .venv; }
export PATH="$PWD/.venv/bin:$PATH"
pip() { .venv/bin/python -m pip "$@"; }
# Drop this machine's find-links noise but keep pip's exit status (pipefail).
quiet() { grep -v '^WARNING: Location' || true; }
pip install -q --upgrade pip setuptools wheel ninja 2>&1 | quiet
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  say "installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  pip install -q $TORCH_SPEC 2>&1 | quiet
fi
.venv/bin/python -c "import torch, torchvision; print('[install] torch', torch.__version__, 'cuda', torch.version.cuda)"

# 3. tinyfast (editable, compiles tinyfast._C with ninja).
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  if [ -n "${CI:-}" ]; then export TORCH_CUDA_ARCH_LIST="9.0+PTX"; fi
fi
spec="."
[ -n "$EXTRAS" ] && spec=".[$EXTRAS]"
say "pip install -e '$spec' (compiling the extension)"
pip install -q --no-build-isolation -e "$spec" 2>&1 | quiet
.venv/bin/python -c "import tinyfast, tinyfast.ops as o; print('[install] tinyfast', tinyfast.__version__, '| kernels compiled:', ', '.join(o.compiled_backends()) or 'NONE', '| usable here:', ', '.join(o.available_backends()) or 'none')"

# 4. The DALI plugin operator (tinyfast.dali_ops) when DALI is installed: CPU backend, plus the GPU
#    backend whenever the CUDA kernels were built. Status 2 = cannot be built here (said why).
if .venv/bin/python -c "import nvidia.dali" 2>/dev/null; then
  say "building the DALI plugin (csrc/dali/build.py)"
  rc=0; .venv/bin/python csrc/dali/build.py || rc=$?
  if [ "$rc" = 2 ]; then say "continuing without the DALI plugin"; elif [ "$rc" != 0 ]; then exit "$rc"; fi
fi

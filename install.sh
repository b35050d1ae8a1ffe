#!/usr/bin/env bash
# Sets up everything tinyfast needs on a fresh Debian/Ubuntu x86_64 machine, into ./.venv:
#   system libraries (libjpeg-turbo, OpenCV: FFCV compiles against them), torch + torchvision,
#   tinyfast itself (editable), its compiled extension tinyfast._C (CPU kernels always, CUDA kernels
#   when nvcc is there) and the optional loaders (NVIDIA DALI, FFCV).
# A re-run takes seconds: a step is skipped when what it installs is there and the inputs it reads
# are unchanged since it last succeeded (fingerprints in .venv/.tinyfast-install/); the extension
# is compiled by ninja in ./build, so a changed source recompiles only what depends on it.
#   ./install.sh --dry-run   says what each step would do, changes nothing
# Environment knobs:
#   TINYFAST_EXTRAS   pip extras to install            (default "test,dali,ffcv")
#   TORCH_SPEC        the torch/torchvision to install (default "torch==2.14.1 torchvision==0.29.1")
#   TORCH_CUDA_ARCH_LIST  CUDA archs to compile        (default: the visible GPU, else "8.0;9.0",
#                                                       the newest +PTX; CI compiles 9.0+PTX only)
#   TINYFAST_NO_CUDA=1    build the CPU-only extension
set -euo pipefail
cd "$(dirname "$0")"
shopt -s nullglob

DRY=0
case "$#:${1:-}" in
  0:) ;;
  1:--dry-run) DRY=1 ;;
  *) echo "install.sh: error: unknown argument '$1' (usage: ./install.sh [--dry-run])" >&2; exit 2 ;;
esac

EXTRAS=${TINYFAST_EXTRAS-test,dali,ffcv}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
PY=${PYTHON:-python3}
STAMPS=.venv/.tinyfast-install

say() { printf '[install] %s\n' "$*"; }
# act WHAT CMD...: run CMD, announced as WHAT (with --dry-run: only say it would).
act() { local what=$1; shift; if ((DRY)); then say "would run: $what"; else say "$what"; "$@"; fi; }
# fingerprint KEY FILE...: one sha256 over KEY and the files' contents.
fingerprint() { { printf '%s\n' "$1"; shift; sha256sum "$@" </dev/null; } | sha256sum | cut -c1-64; }
# fresh STEP FP: STEP last succeeded with fingerprint FP. stamp STEP FP: record that it did.
fresh() { [ "$(cat "$STAMPS/$1" 2>/dev/null)" = "$2" ]; }
stamp() { ((DRY)) || { mkdir -p "$STAMPS" && printf '%s\n' "$2" >"$STAMPS/$1"; }; }

# 1. System packages (only when FFCV is wanted and they are missing).
if [[ ",$EXTRAS," == *",ffcv,"* ]]; then
  need=()
  for p in libturbojpeg0-dev libopencv-dev pkg-config; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  if ((${#need[@]})); then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    apt_install() {
      $SUDO apt-get update -q >/dev/null
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
    }
    act "apt-get install ${need[*]}" apt_install
  fi
fi

# 2. Virtual environment, build tools, torch.
[ -x .venv/bin/python ] || act "creating .venv" "$PY" -m venv .venv
export PATH="$PWD/.venv/bin:$PATH"
pip() { .venv/bin/python -m pip "$@"; }
# Drop this machine's find-links noise but keep pip's exit status (pipefail).
quiet() { grep -v '^WARNING: Location' || true; }
# What is installed, read from the package metadata (no import of torch: a tenth of a second).
# tinyfast counts only when it is the editable install of this folder.
declare -A have=()
probe_installed() {
  while IFS='=' read -r k v; do [ -n "$k" ] && have[$k]=$v; done < <(.venv/bin/python - <<'PY' || true
import importlib.metadata as md, importlib.util, json, os, sys
from urllib.parse import unquote, urlparse

def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return ""

print(f"python={sys.version_info[0]}.{sys.version_info[1]}")
for name in ("setuptools", "wheel", "ninja", "torch", "torchvision"):
    print(f"{name}={version(name)}")
try:
    url = json.loads(md.distribution("tinyfast").read_text("direct_url.json") or "{}").get("url", "")
    here = os.path.realpath(unquote(urlparse(url).path)) == os.path.realpath(os.getcwd())
    print(f"tinyfast={version('tinyfast') if here else ''}")
except md.PackageNotFoundError:
    print("tinyfast=")
try:
    dali = importlib.util.find_spec("nvidia.dali") is not None
except ImportError:
    dali = False
names = [d.metadata["Name"] or "" for d in md.distributions()] if dali else []
print("dali=" + next((version(n) for n in names if n.startswith("nvidia-dali")), "yes" if dali else ""))
PY
)
}
if [ -x .venv/bin/python ]; then probe_installed; fi
setuptools=${have[setuptools]:-0}
if [ -z "${have[wheel]:-}" ] || [ -z "${have[ninja]:-}" ] || ((${setuptools%%.*} < 77)); then
  tools() { pip install -q --upgrade pip setuptools wheel ninja 2>&1 | quiet; }
  act "pip install --upgrade pip setuptools wheel ninja" tools
else
  say "build tools: up to date (setuptools ${have[setuptools]}, wheel, ninja)"
fi
if [ -z "${have[torch]:-}" ] || [ -z "${have[torchvision]:-}" ]; then
  # shellcheck disable=SC2086
  torch_install() { pip install -q $TORCH_SPEC 2>&1 | quiet; }
  act "installing $TORCH_SPEC" torch_install
  have[torch]=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('torch'))" 2>/dev/null || true)
else
  say "torch ${have[torch]}, torchvision ${have[torchvision]}: up to date"
fi

# 3. tinyfast, editable, with its extras (the package's metadata and dependencies: pyproject.toml).
spec="."
[ -n "$EXTRAS" ] && spec=".[$EXTRAS]"
fp=$(fingerprint "extras=$EXTRAS" pyproject.toml)
if [ -n "${have[tinyfast]:-}" ] && fresh package "$fp"; then
  say "tinyfast ${have[tinyfast]} ($spec): up to date"
else
  # The extension is left to step 4, whose build folder persists (pip's would not).
  package() { TINYFAST_SKIP_EXTENSION=1 pip install -q --no-build-isolation -e "$spec" 2>&1 | quiet; }
  act "pip install -e '$spec'" package
  stamp package "$fp"
fi
# Read again what steps 2 and 3 installed: a fresh machine had no .venv to read before them, and
# the extras bring DALI, whose plugin step 5 builds in this same run.
if ((!DRY)) && [ -x .venv/bin/python ]; then probe_installed; fi

# 4. The extension tinyfast._C, compiled in place by ninja (build/ keeps the objects).
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  if [ -n "${CI:-}" ]; then export TORCH_CUDA_ARCH_LIST="9.0+PTX"; fi
fi
build_key="python=${have[python]:-} torch=${have[torch]:-} no_cuda=${TINYFAST_NO_CUDA:-} arch=${TORCH_CUDA_ARCH_LIST:-} cuda=${CUDA_HOME:-} nvcc=$(command -v nvcc || true)"
ext_fp=$(fingerprint "$build_key" setup.py csrc/*.cpp csrc/*.cu csrc/*.h)
so=(tinyfast/_C*.so)
if ((${#so[@]})) && fresh extension "$ext_fp"; then
  say "tinyfast._C: up to date"
else
  act "compiling tinyfast._C (setup.py build_ext --inplace; ninja recompiles what changed)" \
    .venv/bin/python setup.py -q build_ext --inplace --force
  stamp extension "$ext_fp"
fi

# 5. The DALI plugin operator (tinyfast.dali_ops) when DALI is installed: CPU backend, plus the GPU
#    backend whenever the CUDA kernels were built. Status 2 = cannot be built here (said why).
if [ -n "${have[dali]:-}" ]; then
  dali_fp=$(fingerprint "dali=${have[dali]} $build_key ext=$ext_fp" csrc/dali/*)
  if [ -e tinyfast/libtinyfast_dali.so ] && fresh dali "$dali_fp"; then
    say "DALI plugin: up to date"
  else
    rc=0; act "building the DALI plugin (csrc/dali/build.py)" .venv/bin/python csrc/dali/build.py || rc=$?
    if [ "$rc" = 2 ]; then say "continuing without the DALI plugin"; elif [ "$rc" != 0 ]; then exit "$rc"; fi
    [ "$rc" = 0 ] && stamp dali "$dali_fp"
  fi
fi

if ((DRY)); then
  say "dry run: nothing was changed"
else
  .venv/bin/python -c "import torch, tinyfast, tinyfast.ops as o; print('[install] torch', torch.__version__, 'cuda', torch.version.cuda, '| tinyfast', tinyfast.__version__, '| kernels compiled:', ', '.join(o.compiled_backends()) or 'NONE', '| usable here:', ', '.join(o.available_backends()) or 'none')"
  say "done in ${SECONDS} s"
fi

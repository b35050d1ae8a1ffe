#!/usr/bin/env bash
# Downloads the few pure-Python / manylinux wheels the GPU proof may lack on a bare CUDA machine
# (pytest, tqdm, matplotlib and their dependencies; setuptools for the build), for CPython 3.12 on
# x86_64, into DIR (default ./wheelhouse), which ignores itself in git. Then, on the GPU machine:
#   benchmarks/gpu_proof.sh --wheelhouse DIR --out OUT
# numpy and pillow are not included: torch/torchvision there already bring them (and they are
# most of the size). Override the interpreter tag with PY_VERSION (default 3.12).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-wheelhouse}
PYV=${PY_VERSION:-3.12}
PIP=${PIP:-python3 -m pip}
mkdir -p "$DIR"
printf '*\n' >"$DIR/.gitignore"
PKGS=(pytest iniconfig pluggy packaging tqdm matplotlib contourpy cycler fonttools kiwisolver
      pyparsing python-dateutil six setuptools wheel)
# --no-deps with the dependencies named: a resolver here would want numpy and pillow too.
$PIP download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  -d "$DIR" "${PKGS[@]}"
size=$(du -sm "$DIR" | cut -f1)
echo "wheelhouse $DIR: $(ls "$DIR"/*.whl | wc -l) wheels, ${size} MiB"
if [ "$size" -ge 30 ]; then echo "wheelhouse is ${size} MiB (keep it under 30)" >&2; exit 1; fi

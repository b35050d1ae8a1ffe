# Sourced by the benchmark scripts that take DATA OUT (time_to_accuracy.sh, zoo.sh), after they set
# `usage_line` (the line of their header that shows their usage): the two arguments, PYTHONPATH,
# the output folder, and the extension, built in place from csrc/ when this checkout has none
# (CUDA kernels too when nvcc and a CUDA torch are there). Sets prog, die, data, out, repo.
prog=$(basename "$0")
die() { echo "$prog: error: $*" >&2; exit 1; }
(( $# == 2 )) || { sed -n "${usage_line}p" "$0" | sed 's/^# *//' >&2; exit 2; }
data=$1 out=$2
PYTHON=${PYTHON:-python3}
repo=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
[[ -e $data ]] || die "$data: no such dataset"
mkdir -p "$out"
if ! "$PYTHON" -c "import torch, tinyfast._C" 2> /dev/null; then
    echo "building tinyfast._C ..."
    (cd "$repo" && "$PYTHON" setup.py build_ext --inplace > "$out/build.log" 2>&1) \
        || die "building the extension failed (see $out/build.log)"
fi

# Sourced by the wrappers that take DATA OUT (time_to_accuracy.sh, zoo.sh), after they set
# `usage_line` (the line of their header that shows their usage): the two arguments, and a PYTHON
# with torch (one line naming it otherwise); the checkout on PYTHONPATH. The rest (the extension
# built where missing, the pack, the runs) is the Python entry point's (benchmarks/prepare.py).
prog=$(basename "$0")
(( $# == 2 )) || { sed -n "${usage_line}p" "$0" | sed 's/^# *//' >&2; exit 2; }
PYTHON=${PYTHON:-python3}
[[ $("$PYTHON" -c 'import importlib.util as u; print(u.find_spec("torch") is not None)' 2> /dev/null) == True ]] \
    || { echo "$prog: error: PYTHON=$PYTHON: not a Python that can import torch (set PYTHON to one)" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

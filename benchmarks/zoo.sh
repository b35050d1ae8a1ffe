#!/usr/bin/env bash
# The seed zoo on the real Tiny ImageNet: the 15 seed architectures, each by its seed recipe under
# one fixed budget, in one table (benchmarks/zoo.py), offline.
#
#   benchmarks/zoo.sh DATA OUT
#
# DATA: the tiny-imagenet-200 JPEG tree (packed here with all cores into OUT/packed; a tree carried
# in parts is joined first with benchmarks/split_dataset.sh join), or an already packed dataset.
# OUT receives packed/, logs/<arch>.log, runs/<arch>/ (config, per-epoch metrics.jsonl, summary.json)
# and zoo-<gpu>-<date>.json / .md: per row the arch, its recipe, the command, val top-1 after the
# budget, wall time, images/s, the seed's reported figure and the status (ok, failed, timeout).
# A thin wrapper: python -m benchmarks.zoo --data DATA --out OUT --prepare (from any folder).
#
# Environment: PYTHON (default: python3, the machine's preinstalled torch), EPOCHS (default 1: the
# budget of every row), MODELS (comma-separated subset, default all), TIMEOUT (seconds per model,
# default 300, so that one stuck row cannot take the whole run; empty: none), TRAIN_ARGS (extra
# flags for every run, e.g. to shrink a smoke test: "--batch-size 16 --no-compile --device cpu").
set -euo pipefail
usage_line=5
# shellcheck source=benchmarks/_script_setup.sh
source "$(dirname "$0")/_script_setup.sh"
args=(--data "$1" --out "$2" --prepare --epochs "${EPOCHS:-1}" "--train-args=${TRAIN_ARGS:-}")
[[ -z ${MODELS:-} ]] || args+=(--models "$MODELS")
[[ -z ${TIMEOUT-300} ]] || args+=(--timeout-per-model "${TIMEOUT-300}")
exec "$PYTHON" -m benchmarks.zoo "${args[@]}"

#!/usr/bin/env bash
# Time to accuracy of `--recipe fast` on the real Tiny ImageNet, three seeds, offline.
#
#   benchmarks/time_to_accuracy.sh DATA OUT
#
# DATA: the tiny-imagenet-200 JPEG tree (packed here with all cores into OUT/packed; a tree carried
# in parts is joined first with benchmarks/split_dataset.sh join), or an already packed dataset.
# OUT receives packed/ (and pack.json: its packing time), runs/fast-seed{0,1,2}/ (config, per-epoch metrics.jsonl, curves),
# time-to-accuracy-<gpu>-<date>.json: {"gpu", "recipe", "commit", "pack_seconds",
# "runs": [{"seed", "val_top1" (fraction, after the last epoch), "best_val_top1", "seconds",
# "seconds_to_target", "curve"}], ...} and its curve, time-to-accuracy-<gpu>-<date>.png
# (benchmarks/time_to_accuracy.py writes both; its docstring has the whole schema).
# "seconds" is the training run's wall time, from building the model to the end of the final
# evaluation (torch.compile's first-step compilation included; packing is pack_seconds).
# A thin wrapper: python -m benchmarks.time_to_accuracy run DATA OUT (from any folder).
#
# Environment: PYTHON (default: python3, the machine's preinstalled torch), SEEDS (default "0 1 2"),
# RECIPE (default fast), TRAIN_ARGS (extra flags for every run, e.g. to shrink a smoke test:
# "--epochs 1 --batch-size 16 --no-compile --device cpu").
set -euo pipefail
usage_line=4
# shellcheck source=benchmarks/_script_setup.sh
source "$(dirname "$0")/_script_setup.sh"
# shellcheck disable=SC2086  # SEEDS is a list
exec "$PYTHON" -m benchmarks.time_to_accuracy run "$1" "$2" --recipe "${RECIPE:-fast}" --seeds ${SEEDS:-0 1 2} \
    "--train-args=${TRAIN_ARGS:-}"

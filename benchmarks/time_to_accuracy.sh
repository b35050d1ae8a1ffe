#!/usr/bin/env bash
# Time to accuracy of `--recipe fast` on the real Tiny ImageNet, three seeds, offline.
#
#   benchmarks/time_to_accuracy.sh DATA OUT
#
# DATA: the tiny-imagenet-200 JPEG tree (packed here with all cores into OUT/packed; a tree carried
# in parts is joined first with benchmarks/split_dataset.sh join), or an already packed dataset.
# OUT receives packed/, runs/fast-seed{0,1,2}/ (config, per-epoch metrics.jsonl, curves) and
# time-to-accuracy-<gpu>-<date>.json: {"gpu", "recipe", "commit", "pack_seconds",
# "runs": [{"seed", "val_top1" (fraction, after the last epoch), "best_val_top1", "seconds"}], ...}.
# "seconds" is the training run's wall time, from building the model to the end of the final
# evaluation (torch.compile's first-step compilation included; packing is pack_seconds).
#
# Environment: PYTHON (default: python3, the machine's preinstalled torch), SEEDS (default "0 1 2"),
# RECIPE (default fast), TRAIN_ARGS (extra flags for every run, e.g. to shrink a smoke test:
# "--epochs 1 --batch-size 16 --no-compile --device cpu").
set -euo pipefail

prog=$(basename "$0")
die() { echo "$prog: error: $*" >&2; exit 1; }
(( $# == 2 )) || { sed -n 4p "$0" | sed 's/^# *//' >&2; exit 2; }
data=$1 out=$2
PYTHON=${PYTHON:-python3} SEEDS=${SEEDS:-0 1 2} RECIPE=${RECIPE:-fast} TRAIN_ARGS=${TRAIN_ARGS:-}
repo=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
[[ -e $data ]] || die "$data: no such dataset"
mkdir -p "$out"

# The extension: built in place from csrc/ when this checkout has none (CUDA kernels too when nvcc
# and a CUDA torch are there).
if ! "$PYTHON" -c "import torch, tinyfast._C" 2> /dev/null; then
    echo "building tinyfast._C ..."
    (cd "$repo" && "$PYTHON" setup.py build_ext --inplace > "$out/build.log" 2>&1) \
        || die "building the extension failed (see $out/build.log)"
fi

if [[ -f $data/manifest.json ]]; then
    packed=$data pack_seconds=null
else
    packed=$out/packed
    start=$(date +%s.%N)
    "$PYTHON" -m tinyfast.pack "$data" --out "$packed" --overwrite --quiet
    pack_seconds=$(awk "BEGIN { print $(date +%s.%N) - $start }")
    echo "packed $data into $packed in ${pack_seconds}s"
fi

for seed in $SEEDS; do
    # shellcheck disable=SC2086  # TRAIN_ARGS is a list of flags
    "$PYTHON" -m tinyfast.train --recipe "$RECIPE" --data "$packed" --seed "$seed" --out-dir "$out/runs" \
        --name "$RECIPE-seed$seed" --no-progress $TRAIN_ARGS 2>&1 | tee "$out/$RECIPE-seed$seed.log" \
        || die "seed $seed failed (see $out/$RECIPE-seed$seed.log)"
done

"$PYTHON" - "$out" "$RECIPE" "$pack_seconds" "$repo" $SEEDS <<'EOF'
import json, re, subprocess, sys, time
from pathlib import Path
import torch
out, recipe, pack_seconds, repo, seeds = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
runs = []
for seed in seeds:
    run = out / "runs" / f"{recipe}-seed{seed}"
    summary = json.loads((run / "summary.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    runs.append({"seed": int(seed), "val_top1": rows[-1]["val_top1"], "best_val_top1": summary["best_val_top1"],
                 "seconds": summary["wall_time"], "epochs": rows[-1]["epoch"], "run_dir": str(run)})
config = json.loads((out / "runs" / f"{recipe}-seed{seeds[0]}" / "config.json").read_text())
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
try:
    commit = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
except (OSError, subprocess.CalledProcessError):
    commit = "unknown"
mean = lambda k: sum(r[k] for r in runs) / len(runs)
res = {"gpu": gpu, "recipe": recipe, "commit": commit, "date": time.strftime("%Y-%m-%d"),
       "torch": torch.__version__, "cuda": torch.version.cuda,
       "pack_seconds": None if pack_seconds == "null" else float(pack_seconds),
       "config": config["config"], "runs": runs,
       "mean_val_top1": mean("val_top1"), "mean_seconds": mean("seconds")}
slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
path = out / f"time-to-accuracy-{slug}-{res['date']}.json"
tmp = path.with_suffix(".json.tmp")
tmp.write_text(json.dumps(res, indent=2) + "\n")
tmp.rename(path)
for r in runs:
    print(f"seed {r['seed']}: val top-1 {100 * r['val_top1']:.2f}% in {r['seconds']:.1f} s")
print(f"mean: {100 * res['mean_val_top1']:.2f}% in {res['mean_seconds']:.1f} s on {gpu} -> {path}")
EOF

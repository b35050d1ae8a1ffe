#!/usr/bin/env bash
# The GPU proof in one offline command (see benchmarks/proof/ and the README's "Running the GPU
# proof"): builds tinyfast._C for the visible GPU, runs the CUDA tests and sanitizers, builds the
# full-size synthetic set and measures op, loaders and training
# (--phases evidence / figures split it into two commands of < 5 and < 7 minutes).
#   benchmarks/gpu_proof.sh --out DIR [--wheelhouse WHEELS] [--data PACKED]
# PYTHON selects the interpreter (default python3: the machine's, with its preinstalled torch).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" -m benchmarks.proof "$@"

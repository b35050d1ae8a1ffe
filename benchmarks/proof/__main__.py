"""``python -m benchmarks.proof`` (``benchmarks/gpu_proof.sh``): see :mod:`benchmarks.proof`."""
import sys

from benchmarks.proof.cli import main

if __name__ == "__main__":
    sys.exit(main())

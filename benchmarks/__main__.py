"""``python -m benchmarks`` = ``tinyfast-bench``: the suite of :mod:`benchmarks.suite`."""
import sys

from benchmarks.suite import cli

if __name__ == "__main__":
    sys.exit(cli())

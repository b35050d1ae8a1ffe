"""Benchmark scripts (``python -m benchmarks.<name>``); shared code in :mod:`benchmarks.common`."""

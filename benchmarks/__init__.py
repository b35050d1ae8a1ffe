"""Benchmark scripts (``python -m benchmarks.<name>``); shared helpers in :mod:`benchmarks.common`."""

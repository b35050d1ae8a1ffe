"""Process-level utilities shared by packing, synthetic data and the loaders.

Kept free of torch on purpose: :func:`mp_context` picks ``fork`` only while torch is not loaded,
so importing this module must not load it.
"""

from __future__ import annotations

import os
import sys


def cpu_count() -> int:
    """CPU cores this process may use (its affinity mask on Linux), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def mp_context():
    """The multiprocessing context for worker pools.

    fork is fastest, but unsafe once torch (and its thread pools) is loaded: then spawn.
    """
    import multiprocessing as mp

    if sys.platform == "linux" and "torch" not in sys.modules:
        return mp.get_context("fork")
    return mp.get_context("spawn")


def worker_init() -> None:
    """Initializer of pool workers: they end with their parent and leave Ctrl-C to it.

    Without this, a parent killed with SIGKILL leaves workers that print tracebacks (a broken
    pipe) or wait forever on their task queue; and a Ctrl-C prints one KeyboardInterrupt
    traceback per worker on top of the parent's one-line message.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker must not run the parent's handler
    if sys.platform != "linux":
        return
    import ctypes
    import multiprocessing as mp

    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: killed when the parent dies
    except (OSError, AttributeError):
        return
    parent = mp.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # the parent died before prctl
        os._exit(1)


def close_bar(bar, failed: bool = False) -> None:
    """Close a :func:`tinyfast.progress.progress` bar. After a failure a plain-line bar prints no
    final count, so that the error is the one line a log ends with."""
    from tinyfast.progress import LineProgress

    if failed and isinstance(bar, LineProgress):
        bar.disable = True
    bar.close()

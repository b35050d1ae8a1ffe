"""Process-level utilities shared by packing, synthetic data, the loaders and every writer of files
(atomic writes).

Kept free of torch on purpose: :func:`mp_context` picks ``fork`` only while torch is not loaded,
so importing this module must not load it.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import multiprocessing.context as _mpc
import re
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable


def cpu_count() -> int:
    """CPU cores this process may use (its affinity mask on Linux), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def torch_threads_kept():
    """Run the block (an import of FFCV) and restore torch's intra-op thread count afterwards.

    FFCV sets torch's thread count at import (``ffcv.pipeline.compiler`` calls
    ``torch.set_num_threads(1)``) and when a ``Loader`` is built (its worker count). A run whose
    process imported FFCV (say to pack the default data) then trained with another thread count
    than its twin, which sums the convolutions' gradients in another order: same seed, different
    weights. Loads torch (FFCV's import does anyway).
    """
    import torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def mp_context():
    """The multiprocessing context for worker pools.

    fork is fastest, but unsafe once torch (and its thread pools) is loaded: then spawn.
    """
    import multiprocessing as mp

    method = "fork" if sys.platform == "linux" and "torch" not in sys.modules else "spawn"
    quiet = _QUIET_CONTEXTS.get(method)
    return quiet() if quiet is not None else mp.get_context(method)


_WORKER_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _BlockedStart:
    """A worker starts with SIGINT/SIGTERM blocked, unblocked by :func:`worker_init` once it ignores
    SIGINT: a Ctrl-C to the process group during its start-up (a spawned interpreter imports for
    a second) then waits and is ignored, instead of killing it with a traceback of its own (a
    "Fatal Python error") and breaking the pool."""

    def start(self):
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _WORKER_SIGNALS)
        try:
            super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


_QUIET_CONTEXTS = {}
if hasattr(signal, "pthread_sigmask") and hasattr(_mpc, "ForkContext"):  # POSIX
    class _SpawnProcess(_BlockedStart, _mpc.SpawnProcess):
        pass

    class _ForkProcess(_BlockedStart, _mpc.ForkProcess):
        pass

    class _SpawnContext(_mpc.SpawnContext):
        Process = _SpawnProcess

    class _ForkContext(_mpc.ForkContext):
        Process = _ForkProcess

    _QUIET_CONTEXTS = {"spawn": _SpawnContext, "fork": _ForkContext}


def worker_init() -> None:
    """Initializer of pool workers: they end with their parent and leave Ctrl-C to it.

    Without this, a parent killed with SIGKILL leaves workers that print tracebacks (a broken
    pipe) or wait forever on their task queue; and a Ctrl-C prints one KeyboardInterrupt
    traceback per worker on top of the parent's one-line message.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker must not run the parent's handler
    if hasattr(signal, "pthread_sigmask"):  # blocked while it started (see mp_context)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _WORKER_SIGNALS)
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


def _fsync_dir(path: Path) -> None:
    """Make a rename in directory ``path`` durable (where directories can be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows: renames there are as durable as it gets
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask can only set it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path`` and rename it into place, so a reader
    (or a crash) never sees a half-written file.

    The data is fsync'ed before the rename and the directory after it: without the first, a power
    loss can leave the new name pointing at an empty file; without the second, the old file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # name the file the caller asked for, not a temporary name
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        # mkstemp creates 0600; give the file the mode open() would have (0666 minus the umask).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


# The temporary names atomic_write_bytes gives: ".NAME." + mkstemp's 8 random characters + ".tmp".
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def remove_stale_temps(directory: str | os.PathLike) -> int:
    """Remove the temporary files that :func:`atomic_write_bytes` left in ``directory`` when its
    process was killed mid-write (SIGKILL, power loss); returns how many. Call it only where no
    other process is writing (e.g. a run directory when its run starts)."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        if _TEMP_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                removed += 1
            except OSError:
                pass
    return removed


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the handler of a command turns it into an interruption (its exit
    status is then 143, Ctrl-C's 130)."""


def short_parser(**kwargs):
    """An ``argparse.ArgumentParser`` whose usage errors are one line, ``PROG: error: MESSAGE (see
    --help)``, exit status 2, instead of the whole usage text above the line that matters."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message):
            self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
    return _Parser(**kwargs)


def number(kind: type = float, *, lo: float | None = None, hi: float | None = None,
           hi_open: bool = False) -> Callable[[str], Any]:
    """An argparse converter to ``kind`` (int or float) within ``[lo, hi]`` (``[lo, hi)`` when
    ``hi_open``); either bound may be absent. Out-of-range values are refused with one line."""
    what = "an integer" if kind is int else "a number"
    if hi is None:
        rule = f"must be >= {lo:g}"
    else:
        rule = f"must be in [{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def convert(value: str):
        try:
            v = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not {what}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {value}")
        too_high = hi is not None and (v >= hi if hi_open else v > hi)
        if (lo is not None and not v >= lo) or too_high:
            raise argparse.ArgumentTypeError(f"{rule}, got {value}")
        return v

    convert.__name__ = kind.__name__  # argparse names the converter in some messages
    return convert

"""The output directory: a private temporary sibling, checks on ``--out``, the final rename."""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
from pathlib import Path

from tinyfast._util import Terminated
from tinyfast.data import PackError, is_packed
from tinyfast.pack.manifest import fmt_bytes


def temp_sibling(out: Path, tag: str) -> Path:
    """A fresh private directory next to ``out``; stale ones of dead processes are removed."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        pat = re.compile(rf"^\.{re.escape(out.name)}\.(?:tmp|old|synth)-(\d+)-[0-9a-f]+$")
        for p in out.parent.iterdir():
            m = pat.match(p.name)
            if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
                shutil.rmtree(p, ignore_errors=True)
        d = out.parent / f".{out.name}.{tag}-{os.getpid()}-{os.urandom(4).hex()}"
        d.mkdir()
    except OSError as e:
        raise PackError(f"{out.parent}: cannot write the output there ({e.strerror or e})") from None
    return d


def os_error(e: OSError, folder: Path, need: int | None = None) -> PackError:
    """One line for a file-system error: the path and the reason; for a full disk, the bytes needed."""
    if e.errno == errno.ENOSPC:
        try:
            free = f", {fmt_bytes(shutil.disk_usage(folder).free)} free"
        except OSError:
            free = ""
        needs = f": this pack needs about {fmt_bytes(need)}{free}" if need else ""
        return PackError(f"{folder}: no space left on device{needs} (nothing was written)")
    return PackError(f"{e.filename or folder}: {e.strerror or e}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_out(out: Path, overwrite: bool, exist_ok: bool) -> bool:
    """Return True when ``out`` already holds a dataset to reuse (exist_ok)."""
    for parent in out.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise PackError(f"{parent}: is not a directory, so --out {out} cannot be created")
            break
    if out.exists() and not out.is_dir():
        raise PackError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if exist_ok and is_packed(out):
            return True
        if not overwrite:
            raise PackError(f"{out}: exists and is not empty (use --overwrite to replace it)")
    return False


_SIGNALS: list[int] = []  # SIGINT/SIGTERM the pack command's handler saw during this pack


def note_signal(signum: int) -> None:
    """Record a SIGINT/SIGTERM (called by the pack command's handler, which then raises)."""
    _SIGNALS.append(signum)


def forget_signals() -> None:
    """A new pack starts: no signal seen yet."""
    _SIGNALS.clear()


def raise_if_signalled() -> None:
    """Raise ``KeyboardInterrupt`` (``Terminated`` for SIGTERM) if a signal arrived during the pack,
    even one whose exception was dropped where it landed; called between stages and before install."""
    if _SIGNALS:
        raise Terminated if _SIGNALS[0] == signal.SIGTERM else KeyboardInterrupt


def install(tmp: Path, out: Path, overwrite: bool, exist_ok: bool) -> bool:
    """Rename the finished ``tmp`` to ``out`` (atomic; replaces an empty or, with overwrite, any dir).

    Returns False when ``exist_ok`` found another process's finished dataset there (``tmp`` dropped).
    Raises ``KeyboardInterrupt`` (``Terminated`` for SIGTERM) instead when a signal arrived during
    the pack, even one whose exception was dropped where it landed.
    """
    raise_if_signalled()
    try:
        os.rename(tmp, out)
        return True
    except OSError:
        if not out.exists():
            raise
    if exist_ok and is_packed(out):  # another process finished first: use its result
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    if not overwrite:
        raise PackError(f"{out}: appeared and is not empty while packing (use --overwrite)")
    old = out.parent / f".{out.name}.old-{os.getpid()}-{os.urandom(4).hex()}"
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return True

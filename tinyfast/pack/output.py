"""The output directory: a private temporary sibling, checks on ``--out``, the final rename."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from tinyfast.data import PackError, is_packed


def temp_sibling(out: Path, tag: str) -> Path:
    """A fresh private directory next to ``out``; stale ones of dead processes are removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    pat = re.compile(rf"^\.{re.escape(out.name)}\.(?:tmp|old|synth)-(\d+)-[0-9a-f]+$")
    for p in out.parent.iterdir():
        m = pat.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
    d = out.parent / f".{out.name}.{tag}-{os.getpid()}-{os.urandom(4).hex()}"
    d.mkdir()
    return d


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
    if out.exists() and not out.is_dir():
        raise PackError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if exist_ok and is_packed(out):
            return True
        if not overwrite:
            raise PackError(f"{out}: exists and is not empty (use --overwrite to replace it)")
    return False


def install(tmp: Path, out: Path, overwrite: bool, exist_ok: bool) -> None:
    """Rename the finished ``tmp`` to ``out`` (atomic; replaces an empty or, with overwrite, any dir)."""
    try:
        os.rename(tmp, out)
        return
    except OSError:
        if not out.exists():
            raise
    if exist_ok and is_packed(out):  # another process finished first: use its result
        shutil.rmtree(tmp, ignore_errors=True)
        return
    if not overwrite:
        raise PackError(f"{out}: appeared and is not empty while packing (use --overwrite)")
    old = out.parent / f".{out.name}.old-{os.getpid()}-{os.urandom(4).hex()}"
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)

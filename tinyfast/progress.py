"""Progress reporting that works both on a terminal and in a log file.

On a terminal: a tqdm bar. Anywhere else (a pipe, a file, CI): one plain line every
``interval`` seconds — ``desc: 120/1000 (12%) 850 img/s ETA 1m03s loss=2.31`` — plus a final
line, so a log holds readable lines and not tqdm's ``\\r`` frames or cursor-movement codes.

Use it like tqdm::

    with progress(total=n, desc="decode", unit="img") as bar:
        for ...:
            bar.update(k)
            bar.set_postfix(loss=f"{loss:.3f}")

    for batch in progress(loader, desc="eval"):
        ...

``disable=True`` prints nothing; ``log`` replaces ``print(..., file=sys.stderr)`` for the plain lines.
The environment variable ``TINYFAST_PROGRESS`` forces a mode: ``bar``, ``lines`` or ``off``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator


def fmt_seconds(s: float) -> str:
    """``s`` seconds as ``1h02m03s`` / ``2m03s`` / ``3s`` (rounded to the second)."""
    s = max(0, int(round(s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m{sec:02d}s"
    if m:
        return f"{m}m{sec:02d}s"
    return f"{sec}s"


def si_prefix(x: float) -> tuple[str, float]:
    """The decimal prefix for ``x`` and its scale: ``("M", 1e6)`` for 519,542,690 (as tqdm's unit_scale)."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return prefix, scale
    return "", 1.0


def _stream_is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def mode(stream=None) -> str:
    """``"bar"`` (a terminal), ``"lines"`` (anything else) or ``"off"``, honouring TINYFAST_PROGRESS."""
    forced = os.environ.get("TINYFAST_PROGRESS", "").strip().lower()
    if forced in ("bar", "lines", "off"):
        return forced
    return "bar" if _stream_is_tty(stream or sys.stderr) else "lines"


class LineProgress:
    """tqdm's small interface (update, set_postfix, set_description, write, close, iteration)
    printing a plain line at most every ``interval`` seconds."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, interval: float = 10.0, disable: bool = False,
                 log: Callable[[str], None] | None = None, unit_scale: bool = False, **_ignored: Any):
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.unit_scale = unit_scale  # as tqdm's: counts and rates in k/M/G (decimal)
        self.n = initial
        self._initial = initial
        self.interval = float(interval)
        self.disable = disable
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._postfix = ""
        self._t0 = time.monotonic()
        self._last = self._t0
        self._closed = False

    # -- tqdm-compatible surface ---------------------------------------------------------------
    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:  # type: ignore[union-attr]
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if not self.disable and now - self._last >= self.interval:
            self._last = now
            self._log(self.line())

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self._postfix = " ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self._postfix = s

    def set_description(self, desc: str = "", refresh: bool = True) -> None:
        self.desc = desc

    def refresh(self) -> None:  # tqdm API; lines are printed on their own schedule
        pass

    def write(self, msg: str) -> None:
        self._log(msg)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.disable and self.n > self._initial:
            self._log(self.line(final=True))

    # -- the line ------------------------------------------------------------------------------
    def line(self, final: bool = False) -> str:
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        done = self.n - self._initial
        rate = done / elapsed
        parts = [f"{self.desc}:" if self.desc else ""]
        if self.unit_scale:  # "1.04/3.00 GB (35%) 519.5 MB/s"
            prefix, scale = si_prefix(self.total or self.n)
            count = f"{self.n / scale:.2f}/{self.total / scale:.2f}" if self.total else f"{self.n / scale:.2f}"
            parts.append(f"{count} {prefix}{self.unit}")
            if self.total:
                parts.append(f"({100.0 * self.n / self.total:.0f}%)")
            prefix, scale = si_prefix(rate)
            parts.append(f"{rate / scale:.1f} {prefix}{self.unit}/s")
        else:
            parts.append(f"{self.n}/{self.total} ({100.0 * self.n / self.total:.0f}%)" if self.total else f"{self.n}")
            parts.append(f"{rate:,.1f} {self.unit}/s")
        if final:
            parts.append(f"in {fmt_seconds(elapsed)}")
        elif self.total and rate > 0:
            parts.append(f"ETA {fmt_seconds((self.total - self.n) / rate)}")
        if self._postfix:
            parts.append(self._postfix)
        return " ".join(p for p in parts if p)


def _tqdm():
    """tqdm's class, or None where tqdm is not installed (then a terminal gets plain lines too)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", disable: bool = False, interval: float = 10.0, leave: bool = False,
             initial: int = 0, log: Callable[[str], None] | None = None, **tqdm_kwargs: Any):
    """A tqdm bar on a terminal, a :class:`LineProgress` elsewhere (see the module docstring)."""
    m = mode()
    if m == "off":
        disable = True
    if m == "bar" and not disable and _tqdm() is not None:
        return _tqdm()(iterable, total=total, desc=desc, unit=unit, leave=leave, initial=initial,
                       dynamic_ncols=True, **tqdm_kwargs)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, interval=interval,
                        disable=disable, log=log, unit_scale=bool(tqdm_kwargs.get("unit_scale")))


def write(msg: str) -> None:
    """Print a message without breaking a live bar (``tqdm.write`` on a terminal)."""
    if mode() == "bar" and _tqdm() is not None:
        _tqdm().write(msg)
    else:
        print(msg, flush=True)

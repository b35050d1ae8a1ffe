"""Stopping cleanly on SIGINT / SIGTERM: the current step finishes, a mid-epoch checkpoint is
written, and the command exits 130 / 143 with the exact resume command."""

from __future__ import annotations

import signal
import threading

from tinyfast.config import RunError

__all__ = ["StopRequest", "Interrupted"]


class Interrupted(RunError):
    """The run stopped on a signal after saving; ``status`` is the conventional 128 + signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.status = 128 + signum


class StopRequest:
    """While entered, SIGINT and SIGTERM only set a flag that the epoch loop reads after each step
    (a second SIGINT interrupts at once). Outside the main thread nothing is installed."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self.ranks: dict[int, int] = {}  # under DDP, once the ranks agreed: rank -> the signal it got
        self._old: dict = {}

    def __bool__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def agree(self, ranks: dict[int, int]) -> None:
        """Under DDP: what the ranks' signals were (``rank -> signal number``, the ranks that got
        none left out); a rank that got none stops for the others' reason."""
        self.ranks = dict(ranks)
        if self.signum is None and ranks:
            self.signum = max(ranks.values())

    def who(self, world: int) -> str:
        """`` (rank 1)`` when only some of the ``world`` ranks got a signal, else ``""``."""
        if world <= 1 or not self.ranks or len(self.ranks) == world:
            return ""
        ranks = sorted(self.ranks)
        return f" (rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))})"

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        self.signum = signum

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}

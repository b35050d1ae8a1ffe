"""The CLIs' failure contract: expected failures are one ``PROG: error: ...`` line and an exit status."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable


class ConfigError(ValueError):
    """A configuration that parses but cannot run (reported as one ``error:`` line)."""


class RunError(RuntimeError):
    """A run that started but cannot go on (e.g. a non-finite loss): one ``error:`` line, exit 1."""


def run_command(prog: str, fn: Callable[..., Any], *args) -> tuple[int, Any]:
    """Run a command's body ``fn(*args)``; expected failures become one ``PROG: error: ...`` line.

    Returns ``(0, result)``, or ``(2, None)`` after bad input (config, data, missing file or extra)
    or a file-system error (the line names the path), ``(1, None)`` after a :class:`RunError`, or
    ``(130, None)`` after Ctrl-C. An error marked ``quiet`` (a DDP rank other than 0 meeting the
    error rank 0 reports) keeps its status and prints nothing. ``TINYFAST_DEBUG=1`` re-raises for
    the full traceback.
    """
    def fail(e: BaseException, msg: str, status: int) -> tuple[int, None]:
        if os.environ.get("TINYFAST_DEBUG"):
            raise
        if not getattr(e, "quiet", False):
            print(f"{prog}: error: {(msg.strip().splitlines() or ['failed'])[0]}", file=sys.stderr)
        return status, None

    try:
        return 0, fn(*args)
    except RunError as e:  # an interrupted run carries its own status (130 / 143)
        return fail(e, str(e), getattr(e, "status", 1))
    except OSError as e:
        if e.filename is None:
            return fail(e, str(e) or type(e).__name__, 2)
        return fail(e, f"{e.filename}: {e.strerror or type(e).__name__}", 2)
    except (ValueError, ImportError) as e:  # ConfigError, PackError included
        return fail(e, str(e) or type(e).__name__, 2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130, None

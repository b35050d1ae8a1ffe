"""Which Python runs tinyfast, and what to say when a package is missing from it: most often the
command was run by another interpreter than the environment ``install.sh`` made."""
from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["ROOT", "advice", "venv_hint", "exit_without_torch"]

#: The checkout this package was imported from (install.sh's ``.venv`` lives there).
ROOT = Path(__file__).resolve().parents[1]


def advice() -> str:
    """How to reach this checkout's ``.venv`` (``""`` when it is the running environment)."""
    venv = ROOT / ".venv"
    if not (venv / "bin" / "python").exists():
        return f"run {ROOT / 'install.sh'} to make the environment .venv"
    if Path(sys.prefix).resolve() == venv.resolve():
        return ""
    return f"install.sh's environment: source {venv / 'bin/activate'}"


def venv_hint() -> str:
    """`` (this is <interpreter>; <advice>)``, or ``""`` where the running Python is the one."""
    tip = advice()
    return f" (this is {sys.executable}; {tip})" if tip else ""


def exit_without_torch(command: str) -> None:
    """Exit with one line (status 2) when torch cannot be imported by this interpreter."""
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        tip = advice()
        print(f"error: python -m {command}: torch is not installed for {sys.executable}"
              + (f" ({tip})" if tip else ""), file=sys.stderr)
        sys.exit(2)

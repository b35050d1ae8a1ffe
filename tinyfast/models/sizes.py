"""The input sizes a model takes: shapes only, on the meta device (no memory, no arithmetic)."""

from __future__ import annotations

import torch

from .registry import get_model


def takes(arch: str, size: int, kwargs: dict | None = None) -> bool:
    """Whether a ``size`` px square input goes through ``arch`` (built with ``kwargs``)."""
    with torch.device("meta"):
        model = get_model(arch, num_classes=10, **(kwargs or {})).eval()
    try:
        with torch.no_grad():
            model(torch.zeros(2, 3, size, size, device="meta"))
    except (RuntimeError, ValueError, IndexError):
        return False
    return True


def first_refused(arch: str, sizes, kwargs: dict | None = None) -> tuple[int, int | None] | None:
    """``None`` if every size in ``sizes`` goes through ``arch``; else ``(smallest refused size, the
    smallest size it takes)``, the latter ``None`` when not even ``max(sizes, 64)`` goes through.
    Valid sizes are monotone (each layer's output grows with its input), so a bisection finds it."""
    bad = next((s for s in sorted(set(sizes)) if not takes(arch, s, kwargs)), None)
    if bad is None:
        return None
    lo, hi = bad, max(max(sizes), 64)
    if not takes(arch, hi, kwargs):
        return bad, None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if takes(arch, mid, kwargs) else (mid, hi)
    return bad, hi

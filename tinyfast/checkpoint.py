"""Checkpoint files: the on-disk format, atomic saving, reading with one-line errors, and the
model rebuilt from a checkpoint. Used by the trainer and by ``evaluate``/``predict`` alike (it
imports neither)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from torch import nn

from tinyfast.metrics import atomic_write_bytes

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "serialize", "save_checkpoint", "load_checkpoint",
           "model_from_checkpoint", "checkpoint_normalization", "trained_image_size"]

CHECKPOINT_FORMAT = "tinyfast-checkpoint"
CHECKPOINT_VERSION = 1


def serialize(state: dict) -> bytes:
    """The bytes ``torch.save`` writes for ``state`` (serialise once, write to several files)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def save_checkpoint(state: dict | bytes, path: str | os.PathLike) -> None:
    """Write ``state`` (a dict, or bytes from :func:`serialize`) to a synced temporary file next to
    ``path``, then rename it into place: never a torn or empty file, even after a power loss."""
    atomic_write_bytes(path, state if isinstance(state, bytes) else serialize(state))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a tinyfast checkpoint (on CPU). Raises ``ValueError`` with one line naming the file."""
    path = Path(path)
    if not path.is_file():
        last = path.with_name("last.pt")
        if path.name == "best.pt" and last.is_file():  # written at every epoch end and on a stop
            raise ValueError(f"{path}: no such checkpoint; the run has no best.pt yet (it stopped before "
                             f"its first epoch ended): evaluate {last}")
        raise ValueError(f"{path}: no such checkpoint")
    try:
        # weights_only=False: the checkpoint holds numpy RNG state and plain dicts we wrote ourselves.
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"{path}: unreadable checkpoint ({e.__class__.__name__}: "
                         f"{(str(e).splitlines() or [''])[0]})") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a tinyfast checkpoint")
    return ck


def model_from_checkpoint(ck: dict, weights: str = "auto", source: str = "checkpoint") -> nn.Module:
    """Rebuild the model of a checkpoint and load its weights (``ema``, ``raw`` or ``auto``).

    Raises:
        ValueError: one line naming ``source`` (the file): no weights, an unknown architecture, or
            weights that do not fit the architecture the checkpoint names.
    """
    from tinyfast.models import get_model, is_known
    if not isinstance(ck.get("model"), dict):
        raise ValueError(f"{source}: no model weights in the checkpoint")
    arch = ck.get("arch")
    if not isinstance(arch, str) or not is_known(arch):
        raise ValueError(f"{source}: unknown architecture {arch!r} (not in this version's model registry)")
    if weights == "ema" and ck.get("ema") is None:
        raise ValueError(f"{source}: --weights ema: the checkpoint has no EMA weights (trained without --ema)")
    use_ema = weights in ("ema", "auto") and ck.get("ema") is not None
    try:
        model = get_model(arch, num_classes=int(ck["num_classes"]), **ck.get("model_kwargs", {}))
        model.load_state_dict(ck["ema"]["module"] if use_ema else ck["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        detail = (str(e).strip().splitlines() or [e.__class__.__name__])
        detail = next((ln.strip() for ln in detail if ln.strip() and not ln.startswith("Error(s)")), detail[0])
        raise ValueError(f"{source}: the weights do not fit architecture {arch!r} ({detail[:160]})") from None
    return model.eval()


def checkpoint_normalization(ck: dict) -> dict | None:
    """How the run of checkpoint ``ck`` normalised its inputs: ``{"normalize", "mean", "std",
    "mean_image"}`` for a loader's ``normalization=``. Checkpoints written before the record
    existed give their mean/std and their config's ``normalize`` (the mean image is then the
    evaluated data's train split's); ``None`` where even those are missing."""
    if isinstance(ck.get("normalization"), dict):
        return ck["normalization"]
    if not ck.get("mean") or not ck.get("std"):
        return None
    return {"normalize": (ck.get("config") or {}).get("normalize", "channel"), "mean": list(ck["mean"]),
            "std": list(ck["std"]), "mean_image": None}


def trained_image_size(ck: dict) -> tuple[int | None, str]:
    """The image side checkpoint ``ck``'s model last trained at (its last epoch's, so the last
    ``--prog-resize`` phase's) and how it came to be (``"--prog-resize 64:32"``, or ``""`` for
    its data's own size); ``(None, "")`` where the checkpoint has no finished epoch."""
    history = ck.get("history") or [{}]
    size = history[-1].get("image_size") if isinstance(history[-1], dict) else None
    if not isinstance(size, int) or size <= 0:
        return None, ""
    prog = (ck.get("config") or {}).get("prog_resize")
    return size, f"--prog-resize {prog}" if prog else ""

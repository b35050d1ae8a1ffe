"""``python -m tinyfast.evaluate``: top-1/top-5 of one or several checkpoints on a packed split.

Several checkpoints are also scored as an ensemble: the average of their softmax probabilities.
Each checkpoint's inputs are normalised as its run trained (the mean/std or mean image the
checkpoint records), whatever the data evaluated; a model that last trained at another image size
than the data holds is scored at the data's, with one ``note:`` line (stderr; ``notes`` in the JSON).
AMP follows the run that wrote the first checkpoint unless ``--amp``/``--no-amp`` is given, so
the figures match what the run reported; the JSON records the AMP dtype and TTA used.

    python -m tinyfast.evaluate runs/r18/best.pt
    python -m tinyfast.evaluate runs/a/best.pt runs/b/best.pt --tta --output scores.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from tinyfast.config import ConfigError, EvalConfig, build_parser, config_from_args, resolve_device, run_command

PROG = "python -m tinyfast.evaluate"
__all__ = ["main", "evaluate_checkpoints", "ensemble_probs", "format_scores"]


def _device(name: str | None) -> torch.device:
    return torch.device(resolve_device(name, cuda_count=torch.cuda.device_count() if torch.cuda.is_available() else 0))


def _precision(cfg, ck: dict, dev: torch.device) -> tuple[bool, torch.dtype]:
    """AMP on/off and dtype: the command's ``--amp``/``--no-amp``, else the checkpoint run's."""
    from tinyfast.inference import amp_settings
    run = ck.get("config", {})
    amp = run.get("amp", False) if cfg.amp is None else cfg.amp
    on, dtype, _ = amp_settings(dev, bool(amp), run.get("amp_dtype", "auto"))
    return on, dtype


def _normalization_key(norm: dict | None) -> tuple:
    """A hashable identity of a normalisation record (equal records share one loader)."""
    if norm is None:
        return (None,)
    image = norm.get("mean_image")
    image = None if image is None else torch.as_tensor(image, dtype=torch.float32).numpy().tobytes()
    return (norm.get("normalize"), tuple(norm.get("mean") or ()), tuple(norm.get("std") or ()), image)


def _size_note(path, ck: dict, packed, data, split: str) -> str | None:
    """One line when checkpoint ``ck`` last trained at another image size than ``packed`` holds:
    the model is scored at the data's size as given (objects at another scale than it learnt)."""
    from tinyfast.checkpoint import trained_image_size
    size, how = trained_image_size(ck)
    have = int(packed.images.shape[1])
    if size is None or size == have:
        return None
    return (f"{path} was trained at {size} px{f' ({how})' if how else ''} and {data}/{split} holds {have} px "
            f"images: scored at {have} px as given, at another scale than the model last learnt (data "
            f"packed with --size {size} scores it at its own)")


def ensemble_probs(cfg, split: str) -> tuple[list[dict], list[torch.Tensor], torch.Tensor, dict]:
    """Load every checkpoint of ``cfg``, run it over ``split``; returns (checkpoints, per-model
    probabilities (N, C) in loader order, labels (N,), info: data dir, split object, amp dtype)."""
    from tinyfast.checkpoint import checkpoint_normalization, load_checkpoint, model_from_checkpoint
    from tinyfast.data import open_packed
    from tinyfast.inference import autocast_for, predict_probs
    from tinyfast.loaders import build

    cks = [load_checkpoint(p) for p in cfg.checkpoints]
    data = cfg.data or cks[0].get("data")
    if not data:
        raise ConfigError("the checkpoint does not record its data directory; pass --data")
    packed = open_packed(data, split)
    dev = _device(cfg.device)
    models = [model_from_checkpoint(ck, cfg.weights, source=str(path)) for path, ck in zip(cfg.checkpoints, cks)]
    for path, ck in zip(cfg.checkpoints, cks):
        if list(ck.get("classes") or []) != list(packed.classes):
            raise ConfigError(f"{path}: trained on {ck['num_classes']} classes that differ from those of {data}")
    notes = [_size_note(path, ck, packed, data, split) for path, ck in zip(cfg.checkpoints, cks)]
    notes = [n for n in notes if n]
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    amp, amp_dtype = _precision(cfg, cks[0], dev)
    # Each checkpoint normalised as its run trained (its mean/std or mean image, whatever --data
    # is): one loader per distinct normalisation, dropped after the last checkpoint that uses it.
    norms = [checkpoint_normalization(ck) for ck in cks]
    keys = [_normalization_key(n) for n in norms]
    loaders: dict = {}
    all_probs, labels = [], None
    for i, (path, model) in enumerate(zip(cfg.checkpoints, models)):
        if keys[i] not in loaders:
            loaders[keys[i]] = build(cfg.loader, data, split, cfg.batch_size, device=dev, train=False,
                                     drop_last=False, dtype=amp_dtype if amp else torch.float32,
                                     normalization=norms[i])
        loader = loaders[keys[i]]
        model = model.to(dev, memory_format=torch.channels_last)
        probs, labels = predict_probs(model, loader, autocast=autocast_for(dev, amp, amp_dtype), tta=cfg.tta,
                                      progress=cfg.progress, every=cfg.progress_every, desc=Path(path).name)
        all_probs.append(probs)
        if keys[i] not in keys[i + 1:]:
            loaders.pop(keys[i]).close()
    if len(labels) != len(packed):
        raise ValueError(f"{data}/{split}: the loader yielded {len(labels)} of {len(packed)} samples")
    info = {"data": str(data), "packed": packed, "amp": str(amp_dtype).replace("torch.", "") if amp else "off",
            "notes": notes}
    return cks, all_probs, labels, info


def evaluate_checkpoints(cfg: EvalConfig) -> dict:
    """Scores of each checkpoint and (when several) of their ensemble; writes ``--output``.

    Returns:
        ``{"data", "split", "n", "amp", "tta", "weights", "models": [{"checkpoint", "top1", "top5"}],
        "ensemble": {...} | None}``.
    """
    from tinyfast.metrics import atomic_write_text, check_output_file, topk_accuracy

    if cfg.output:
        check_output_file(cfg.output, "--output")
    _, probs, labels, info = ensemble_probs(cfg, cfg.split)
    if (labels < 0).any():
        raise ConfigError(f"split {cfg.split!r} is unlabelled; use python -m tinyfast.predict")
    out = {"data": info["data"], "split": cfg.split, "n": len(labels), "amp": info["amp"], "tta": cfg.tta,
           "weights": cfg.weights, "models": [], "ensemble": None, "notes": info["notes"]}
    for path, p in zip(cfg.checkpoints, probs):
        acc = topk_accuracy(p, labels)
        out["models"].append({"checkpoint": str(path), "top1": acc[1], "top5": acc[5]})
    if len(probs) > 1:
        acc = topk_accuracy(torch.stack(probs).mean(0), labels)
        out["ensemble"] = {"checkpoints": len(probs), "top1": acc[1], "top5": acc[5]}
    if cfg.output:
        atomic_write_text(cfg.output, json.dumps(out, indent=2) + "\n")
    return out


def format_scores(res: dict) -> str:
    """The table ``main`` prints for the result of :func:`evaluate_checkpoints`."""
    lines = [f"{res['split']} of {res['data']}: {res['n']} images (amp {res['amp']}, tta {'on' if res['tta'] else 'off'})",
             f"{'checkpoint':<50}{'top-1':>9}{'top-5':>9}"]
    rows = [(m["checkpoint"], m) for m in res["models"]]
    if res["ensemble"]:
        rows.append((f"ensemble of {res['ensemble']['checkpoints']}", res["ensemble"]))
    lines += [f"{name:<50}{100 * m['top1']:>8.2f}%{100 * m['top5']:>8.2f}%" for name, m in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tinyfast.evaluate``; returns the exit status."""
    parser = build_parser(EvalConfig, PROG, usage="%(prog)s CKPT [CKPT ...] [options]")
    cfg = config_from_args(EvalConfig, parser.parse_args(argv))
    status, res = run_command(PROG, evaluate_checkpoints, cfg)
    if status == 0:
        print(format_scores(res))
    return status


if __name__ == "__main__":
    sys.exit(main())

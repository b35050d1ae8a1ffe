"""``python -m tinyfast.evaluate``: top-1/top-5 of one or several checkpoints on a packed split.

Several checkpoints are also scored as an ensemble: the average of their softmax probabilities.

    python -m tinyfast.evaluate runs/r18/best.pt
    python -m tinyfast.evaluate runs/a/best.pt runs/b/best.pt --tta --output scores.json
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

import torch

from tinyfast.config import ConfigError, EvalConfig, build_parser, config_from_args, run_command

PROG = "python -m tinyfast.evaluate"
__all__ = ["main", "evaluate_checkpoints", "ensemble_probs"]


def _device(name: str | None) -> torch.device:
    dev = torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    return dev


def ensemble_probs(cfg, split: str) -> tuple[list[dict], list[torch.Tensor], torch.Tensor, dict]:
    """Load every checkpoint of ``cfg``, run it over ``split``; returns (checkpoints, per-model
    probabilities (N, C) in loader order, labels (N,), info with the data dir and split object)."""
    from tinyfast.data import open_packed
    from tinyfast.loaders import build
    from tinyfast.checkpoint import load_checkpoint, model_from_checkpoint
    from tinyfast.inference import amp_settings, predict_probs

    cks = [load_checkpoint(p) for p in cfg.checkpoints]
    data = cfg.data or cks[0].get("data")
    if not data:
        raise ConfigError("the checkpoint does not record its data directory; pass --data")
    packed = open_packed(data, split)
    for path, ck in zip(cfg.checkpoints, cks):
        if list(ck["classes"]) != list(packed.classes):
            raise ConfigError(f"{path}: trained on {ck['num_classes']} classes that differ from those of {data}")
    dev = _device(cfg.device)
    amp, amp_dtype, _ = amp_settings(dev, cfg.amp)
    autocast = partial(torch.autocast, device_type=dev.type, dtype=amp_dtype, enabled=amp)
    loader = build(cfg.loader, data, split, cfg.batch_size, device=dev, train=False, drop_last=False,
                   dtype=amp_dtype if amp else torch.float32)
    all_probs, labels = [], None
    for path, ck in zip(cfg.checkpoints, cks):
        model = model_from_checkpoint(ck, cfg.weights).to(dev, memory_format=torch.channels_last)
        probs, labels = predict_probs(model, loader, autocast=autocast, tta=cfg.tta,
                                      progress=cfg.progress, desc=Path(path).name)
        all_probs.append(probs)
        del model
    if len(labels) != len(packed):
        raise ValueError(f"{data}/{split}: the loader yielded {len(labels)} of {len(packed)} samples")
    return cks, all_probs, labels, {"data": str(data), "packed": packed}


def evaluate_checkpoints(cfg: EvalConfig) -> dict:
    """Scores of each checkpoint and (when several) of their ensemble.

    Returns:
        ``{"data", "split", "n", "models": [{"checkpoint", "top1", "top5"}], "ensemble": {...} | None}``.
    """
    from tinyfast.metrics import topk_accuracy

    _, probs, labels, info = ensemble_probs(cfg, cfg.split)
    if (labels < 0).any():
        raise ConfigError(f"split {cfg.split!r} is unlabelled; use python -m tinyfast.predict")
    out = {"data": info["data"], "split": cfg.split, "n": len(labels), "models": [], "ensemble": None}
    for path, p in zip(cfg.checkpoints, probs):
        acc = topk_accuracy(p, labels)
        out["models"].append({"checkpoint": str(path), "top1": acc[1], "top5": acc[5]})
    if len(probs) > 1:
        acc = topk_accuracy(torch.stack(probs).mean(0), labels)
        out["ensemble"] = {"checkpoints": len(probs), "top1": acc[1], "top5": acc[5]}
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tinyfast.evaluate``; returns the exit status."""
    from tinyfast.metrics import atomic_write_text

    parser = build_parser(EvalConfig, PROG, usage="%(prog)s CKPT [CKPT ...] [options]")
    cfg = config_from_args(EvalConfig, parser.parse_args(argv))
    status, res = run_command(PROG, evaluate_checkpoints, cfg)
    if status:
        return status
    print(f"{res['split']} of {res['data']}: {res['n']} images")
    print(f"{'checkpoint':<50}{'top-1':>9}{'top-5':>9}")
    for m in res["models"]:
        print(f"{m['checkpoint']:<50}{100 * m['top1']:>8.2f}%{100 * m['top5']:>8.2f}%")
    if res["ensemble"]:
        e = res["ensemble"]
        print(f"{'ensemble of ' + str(e['checkpoints']):<50}{100 * e['top1']:>8.2f}%{100 * e['top5']:>8.2f}%")
    if cfg.output:
        atomic_write_text(cfg.output, json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

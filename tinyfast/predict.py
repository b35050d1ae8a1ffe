"""``python -m tinyfast.predict``: test-set predictions as CSV ``id,label`` (label = the class wnid).

    python -m tinyfast.predict runs/r18/best.pt --output predictions.csv
    python -m tinyfast.predict runs/a/best.pt runs/b/best.pt --tta      # ensemble

``id`` is the image's path in its split folder as packed: the file name for Tiny ImageNet
(``test_123.JPEG``), the class folder too for an ImageFolder (``cat/005.png``), so ids never
repeat; rows follow the packed order. AMP follows the
run that wrote the first checkpoint unless ``--amp``/``--no-amp`` is given.
"""

from __future__ import annotations

import csv
import io
import sys

import torch

from tinyfast.config import PredictConfig, build_parser, config_from_args, run_command

PROG = "python -m tinyfast.predict"
__all__ = ["main", "predict", "write_predictions"]


def predict(cfg: PredictConfig) -> list[tuple[str, str]]:
    """``(id, label)`` rows for every image of ``cfg.split``; ``label`` holds ``topk`` wnids
    separated by spaces, most likely first."""
    from tinyfast.evaluate import ensemble_probs

    cks, probs, _, info = ensemble_probs(cfg, cfg.split)
    p = torch.stack(probs).mean(0)
    k = min(cfg.topk, p.shape[1])
    top = p.topk(k, dim=1).indices.tolist()
    classes = cks[0]["classes"]
    ids = list(info["packed"].ids)  # unique within the split (a bare file name is not, in an ImageFolder)
    return [(i, " ".join(classes[c] for c in row)) for i, row in zip(ids, top)]


def write_predictions(cfg: PredictConfig) -> int:
    """Predict and write ``cfg.output`` (checked before any work); returns the number of rows."""
    from tinyfast.metrics import atomic_write_text, check_output_file

    check_output_file(cfg.output, "--output")
    rows = predict(cfg)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "label"])
    w.writerows(rows)
    atomic_write_text(cfg.output, buf.getvalue())
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tinyfast.predict``; returns the exit status."""
    parser = build_parser(PredictConfig, PROG, usage="%(prog)s CKPT [CKPT ...] [options]")
    cfg = config_from_args(PredictConfig, parser.parse_args(argv))
    status, n = run_command(PROG, write_predictions, cfg)
    if status == 0:
        print(f"wrote {n} predictions to {cfg.output}")
    return status


if __name__ == "__main__":
    sys.exit(main())

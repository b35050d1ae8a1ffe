"""``python -m tinyfast.preview --preview [OUT.png]``: a grid of packed images under each augmentation.

Each column is one panel's :class:`~tinyfast.augment.Policy` applied by the fused op, as the
loaders apply it; the README's picture is this grid of real Tiny ImageNet val images.
"""
from __future__ import annotations

import numpy as np
import torch

from tinyfast.augment import PRESETS, Policy, finish

__all__ = ["PREVIEW_PANELS", "main", "pick_images", "preview_mosaic", "preview_panels", "write_preview"]

#: ``--preview`` without a file name writes this, in the current folder.
DEFAULT_OUT = "augment-preview.png"
#: Columns of the preview grid: a title and the policy drawn for it (fixed values where a single
#: setting is shown, the preset's own random ranges otherwise). Blur and cutout run after the op
#: (:func:`finish`), as in the loaders; mean-image subtraction is a normalisation, not shown.
PREVIEW_PANELS: tuple[tuple[str, Policy], ...] = (
    ("original", Policy()),
    ("contrast 0.7", Policy(contrast=(0.7, 0.7))),
    ("contrast 1.3", Policy(contrast=(1.3, 1.3))),
    ("h-flip", Policy(hflip=1.0)),
    ("v-flip", Policy(vflip=1.0)),
    ("rotate10", PRESETS["rotate10"]),
    ("translate10", PRESETS["translate10"]),
    ("crop56 (zoom)", PRESETS["crop56"]),
    ("rotate60-zoom-shift", PRESETS["rotate60-zoom-shift"]),
    ("blur sigma 1.5", Policy(blur=1.0, blur_sigma=(1.5, 1.5))),
    ("cutout", Policy(cutout=1.0, cutout_size=0.5)),
    ("skoltech2", PRESETS["skoltech2"]),
    ("ucsc", PRESETS["ucsc"]),
    ("standard", PRESETS["standard"]),
)


def preview_panels(images: torch.Tensor, seed: int = 0,
                   panels: tuple[tuple[str, Policy], ...] = PREVIEW_PANELS) -> list[tuple[str, torch.Tensor]]:
    """Each panel's policy applied by the fused op to uint8 ``(N, H, W, 3)`` ``images``.

    Returns ``[(title, uint8 (N, H, W, 3))]``; the op runs with mean 0 / std 1 in float32 and the
    result is rounded back to 0..255, so the identity panel reproduces the input exactly.
    """
    from tinyfast import ops
    n, h, w, _ = images.shape
    out = []
    for title, pol in panels:
        p = pol.sample(n, h, w, torch.Generator().manual_seed(seed))
        x = ops.augment(images.contiguous(), p.theta, p.color, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0),
                        dtype=torch.float32, fill=pol.fill)
        x = finish(x, p)
        out.append((title, (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()))
    return out


def preview_mosaic(panels: list[tuple[str, torch.Tensor]], gap: int = 2) -> np.ndarray:
    """One uint8 ``(rows, cols, 3)`` picture: panel ``j`` in column ``j``, image ``i`` in row ``i``,
    ``gap`` white pixels between cells."""
    n, h, w, _ = panels[0][1].shape
    mosaic = np.full((n * (h + gap) - gap, len(panels) * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for j, (_, imgs) in enumerate(panels):
        for i in range(n):
            mosaic[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = imgs[i].numpy()
    return mosaic


def pick_images(split, count: int) -> torch.Tensor:
    """``count`` images of a packed split, one each from evenly spaced classes (the first rows when
    the split is unlabelled)."""
    if split.labels is None:
        rows = list(range(min(count, len(split))))
    else:
        labels = np.asarray(split.labels)
        first = {int(c): int(np.argmax(labels == c)) for c in np.unique(labels)}
        classes = sorted(first)
        step = max(1, len(classes) // count)
        rows = [first[c] for c in classes[::step][:count]]
    return torch.from_numpy(np.ascontiguousarray(split.images[rows]))


def write_preview(path, data_dir, count: int = 6, seed: int = 0) -> str:
    """The preview grid of ``count`` images of ``data_dir`` (val split, else train) as a PNG at
    ``path`` (written atomically). Returns a one-line description."""
    import io

    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from tinyfast.data import open_packed, read_manifest
    from tinyfast.metrics import atomic_write_bytes
    split_name = "val" if "val" in read_manifest(data_dir).get("splits", {}) else "train"
    images = pick_images(open_packed(data_dir, split_name), count)
    panels = preview_panels(images, seed)
    mosaic = preview_mosaic(panels)
    h, w = images.shape[1:3]
    # The slanted titles reach right of the last column: leave them an inch.
    fig = Figure(figsize=(1.0 * len(panels) + 1.4, 1.0 * len(images) + 0.9), dpi=100)
    ax = fig.subplots()
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([j * (w + 2) + w / 2 for j in range(len(panels))],
                  [t for t, _ in panels], rotation=35, ha="left", fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks([])
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return f"{path}: {len(images)} {split_name} images of {data_dir} x {len(panels)} augmentations"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tinyfast.preview``; returns the exit status."""
    from tinyfast._util import short_parser
    from tinyfast.config import _positive_int, run_command
    from tinyfast.metrics import check_output_file
    prog = "python -m tinyfast.preview"
    p = short_parser(prog=prog, description="Show what the augmentation presets do.")
    p.add_argument("--preview", metavar="OUT.png", required=True, nargs="?", const=DEFAULT_OUT,
                   help=f"write a grid of images under each augmentation as a PNG (no file name: "
                        f"./{DEFAULT_OUT}; the README's docs/{DEFAULT_OUT} is written only when named)")
    p.add_argument("--data", help="packed dataset (default: the built-in synthetic set)")
    p.add_argument("--images", type=_positive_int, default=6,
                   help="rows of the grid, one class each (default: 6; at most the classes there are)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random presets' draws")
    args = p.parse_args(argv)

    def run():
        from tinyfast.default_data import ensure_default_data
        check_output_file(args.preview, "--preview")  # before any work, and naming it
        return write_preview(args.preview, args.data or ensure_default_data(), args.images, args.seed)

    status, msg = run_command(prog, run)
    if status == 0:
        print(msg)
    return status



if __name__ == "__main__":
    import sys
    sys.exit(main())

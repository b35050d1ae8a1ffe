"""``python -m tinyfast.pack``: a JPEG tree -> a verified packed dataset that loads with no decode.

Layout (the stages in the order a pack runs them)::

    cli.py               the command line: flags -> pack() / pack_synthetic() / --verify
    __main__.py          python -m tinyfast.pack
    pipeline.py          pack(): scan -> decode -> writers -> hashes + manifest -> rename into place
    sources.py           scan(): recognise SRC's layout and plan it with the matching source
    plan.py              what to pack (Item, Plan), recorded skips (Skips), directory listing
    tiny_imagenet.py     source: the CS231n tiny-imagenet-200 tree
    image_folder.py      source: an ImageFolder tree (optionally with train/ val/ test/)
    synthetic_source.py  source: the built-in synthetic set, generated then packed (pack_synthetic)
    decode.py            decoding into the memory-mapped images.npy, inline or in a worker pool
    write_npy.py         writer: labels.npy, ids.txt, boxes.npy; mean/std of train
    write_shards.py      writer: WebDataset tar shards of the JPEG bytes (--jpeg-shards)
    write_ffcv.py        writer: <split>.beton by FFCV's writer (--ffcv)
    manifest.py          the manifest (written last) and the summary printed from it
    output.py            the temporary sibling of --out, checks on --out, the final rename

The packed format itself (constants, manifest reading, ``open_packed``, ``verify``, ``PackError``)
is :mod:`tinyfast.data`, which imports nothing of this package.

Usage::

    python -m tinyfast.pack SRC --out DIR [--size 64] [--jpeg-shards] [--ffcv] [--strict] [--overwrite]
    python -m tinyfast.pack IMAGEFOLDER --out DIR [--val-fraction 0.1 --seed 0]
    python -m tinyfast.pack --synthetic --out DIR [--classes 200 --per-class 500 --val-per-class 50
                            --test-count N --seed 0 --tree KEEP_JPEG_TREE_HERE]
    python -m tinyfast.pack --verify DIR

Inputs:
* the CS231n ``tiny-imagenet-200`` layout: ``wnids.txt`` (label order), ``words.txt``,
  ``train/<wnid>/images/*.JPEG`` + ``<wnid>_boxes.txt``, ``val/images`` + ``val_annotations.txt``,
  ``test/images`` (unlabelled);
* an ImageFolder tree ``root/<class>/**.{jpg,jpeg,png,...}`` (classes sorted by name; rows split off
  to val per class with ``--val-fraction``, deterministic from ``--seed``), or one with
  ``root/train/<class>/`` and ``root/val/<class>/``.

Images are decoded by Pillow and converted with ``.convert("RGB")`` (grayscale, CMYK, palette,
RGBA are counted, not skipped; EXIF orientation is ignored, as torchvision's loader does). An image
whose size is not ``--size`` square is centre-cropped to a square and resized with Pillow's
``BICUBIC`` filter (antialiased when shrinking); its box is mapped the same way. Files that cannot
be used are skipped, counted in the summary and listed in the manifest with their reason;
``--strict`` makes any skip an error. The output is written in a temporary sibling of ``--out``
and renamed into place only when complete, so an interrupted pack never leaves a dataset there.
The format is described in :mod:`tinyfast.data`.
"""

from tinyfast.data import PackError
from tinyfast.pack.cli import build_parser, main
from tinyfast.pack.pipeline import Options, pack
from tinyfast.pack.plan import Item, Plan, Skips
from tinyfast.pack.sources import scan
from tinyfast.pack.synthetic_source import pack_synthetic

__all__ = ["Item", "Options", "PackError", "Plan", "Skips", "build_parser", "main", "pack", "pack_synthetic",
           "scan"]

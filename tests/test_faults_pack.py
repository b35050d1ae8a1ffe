"""Faults while packing, second sweep: a source changed or deleted during the pack, signals during
an FFCV write, and short usage errors.

Each case must end in one clear line naming the path or flag, never a silent wrong result, a
traceback or a half-written dataset.
"""
from __future__ import annotations

import io
import tarfile

import numpy as np
from PIL import Image

from test_pack import run, src, tree  # noqa: F401  (the same small tree and CLI runner)
from test_pack_faults import leftovers, one_line_error
from tinyfast.pack import decode


def _changed_after_decode(monkeypatch, change):
    """Run ``change(items)`` right after the first split is decoded (before its writers run)."""
    real, done = decode.decode_split, []

    def decode_split(pool, sdir, items, *a, **k):
        out = real(pool, sdir, items, *a, **k)
        if not done:
            done.append(True)
            change(items)
        return out
    monkeypatch.setattr(decode, "decode_split", decode_split)


def test_a_source_replaced_after_decoding_never_makes_shards_disagree(src, tmp_path, capsys, monkeypatch):  # noqa: F811
    victim = {}

    def replace(items):
        path = items[0].path
        victim["path"] = path
        with Image.open(path) as im:
            size = im.size
        buf = io.BytesIO()
        Image.fromarray(np.full((size[1], size[0], 3), 200, np.uint8)).save(buf, "JPEG", quality=95)
        with open(path, "wb") as f:
            f.write(buf.getvalue())
    _changed_after_decode(monkeypatch, replace)
    out = tmp_path / "packed"
    rc, _, err = run([str(src), "--out", str(out), "--quiet", "--workers", "1", "--jpeg-shards"], capsys)
    if rc == 0:  # allowed only if the shards hold what images.npy holds
        from tinyfast.data import open_packed
        sp = open_packed(out, "train")
        with tarfile.open(next((out / "train" / "jpeg").glob("*.tar"))) as tar:
            first = tar.extractfile("00000000.jpg").read()
        with Image.open(io.BytesIO(first)) as im:
            pixels = np.asarray(im.convert("RGB"))
        assert np.abs(pixels.astype(int) - sp.images[0]).max() <= 8
        return
    assert one_line_error(rc, err), err
    assert victim["path"].split("/")[-1] in err and "changed while it was packed" in err, err
    assert not out.exists() and leftovers(tmp_path) == []

"""Writer: WebDataset tar shards of the JPEG bytes (read by DALI's webdataset reader)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from tinyfast.data import PackError
from tinyfast.progress import progress as bar_of

SHARD_JPEG_QUALITY = 95  # re-encodes (see write_shards) use 4:4:4 chroma at this quality


def _source_bytes(path: str, digest: bytes) -> bytes:
    """The bytes of source file ``path``, which must be those decoded into the packed row."""
    from tinyfast.pack.decode import digest_of
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = None
    if data is None or digest_of(data) != digest:
        raise PackError(f"{path}: changed while it was packed ({'deleted' if data is None else 'other bytes'} "
                        f"since it was decoded); nothing was written; pack again")
    return data


def write_shards(split_dir: Path, split: str, items, rows_src, images, labels, reencode, shard_size,
                  progress=False, digests=None):
    """WebDataset tar shards ``<split>-%05d.tar`` with ``%08d.jpg`` + ``%08d.cls`` per row.

    The key is the row index in ``images.npy``; ``.cls`` holds the label in ASCII (-1 for test).
    ``.jpg`` holds the source file's bytes when it is a JPEG that decodes to the packed row (RGB or
    grayscale, already ``size`` square); otherwise the packed row re-encoded (quality 95, 4:4:4).
    ``digests[i]``: the fingerprint of the bytes decoded into row ``i``; a source file whose bytes
    differ now (replaced or deleted during the pack) is a :class:`PackError`.
    """
    from PIL import Image
    jdir = split_dir / "jpeg"
    jdir.mkdir()
    names, n = [], len(rows_src)
    bar = bar_of(total=n, unit="img", desc=f"{split} shards", disable=not progress)
    for k, start in enumerate(range(0, n, shard_size)):
        name = f"{split}-{k:05d}.tar"
        with tarfile.open(jdir / name, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(start, min(n, start + shard_size)):
                if reencode[i]:
                    buf = io.BytesIO()
                    Image.fromarray(np.asarray(images[i])).save(buf, "JPEG", quality=SHARD_JPEG_QUALITY,
                                                                subsampling=0)
                    data = buf.getvalue()
                else:
                    data = _source_bytes(items[rows_src[i]].path, digests[i])
                key = f"{i:08d}"
                lab = str(int(labels[i]) if labels is not None else -1).encode()
                for member, payload in ((f"{key}.jpg", data), (f"{key}.cls", lab)):
                    ti = tarfile.TarInfo(member)
                    ti.size, ti.mtime, ti.mode = len(payload), 0, 0o644
                    tar.addfile(ti, io.BytesIO(payload))
        bar.update(min(n, start + shard_size) - start)
        names.append(f"{split}/jpeg/{name}")
    bar.close()
    return names

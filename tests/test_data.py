"""tinyfast.data: opening packed datasets, their checks, and the default synthetic data."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyfast import data as D
from tinyfast import default_data as DD
from tinyfast.data import PackError, open_packed
from tinyfast.pack import pack_synthetic

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(classes=3, per_class=4, val_per_class=2, test_count=2, size=64, seed=0)


@pytest.fixture
def packed(tmp_path):
    out = tmp_path / "packed"
    pack_synthetic(out, **TINY, progress=False, log=None)
    return out


def test_packed_split_fields(packed):
    tr = open_packed(packed, "train")
    assert len(tr) == 12 and tr.images.shape == (12, 64, 64, 3) and not tr.images.flags.writeable
    assert tr.labels.dtype == np.int64 and tr.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert tr.classes == ["n90000000", "n90000001", "n90000002"] and tr.num_classes == 3
    assert len(tr.words) == 3 and all(tr.words)
    assert len(tr.mean) == 3 and len(tr.std) == 3 and all(0 < v < 1 for v in tr.mean + tr.std)
    assert tr.root == packed and tr.split == "train" and tr.manifest["version"] == D.FORMAT_VERSION
    assert tr.boxes.shape == (12, 4) and tr.boxes.dtype == np.int16
    assert (tr.boxes[:, :2] <= tr.boxes[:, 2:]).all() and tr.boxes.min() >= 0 and tr.boxes.max() < 64
    te = open_packed(packed, "test", verify=True)
    assert te.labels is None and te.ids == ["test_0.JPEG", "test_1.JPEG"] and te.mean == tr.mean
    assert open_packed(packed, "val").labels.shape == (6,)


def _manifest(root):
    return json.loads((root / "manifest.json").read_text())


def test_open_errors_name_the_file(packed, tmp_path):
    with pytest.raises(PackError, match="nowhere: not a directory"):
        open_packed(tmp_path / "nowhere", "train")
    with pytest.raises(PackError, match=r"'nope' \(this dataset has: train, val, test\)"):
        open_packed(packed, "nope")
    (packed / "val" / "ids.txt").unlink()
    with pytest.raises(PackError, match=r"val/ids\.txt: missing"):
        open_packed(packed, "val")
    img = packed / "train" / "images.npy"
    with open(img, "r+b") as f:
        f.truncate(img.stat().st_size - 1)
    with pytest.raises(PackError, match=r"train/images\.npy: \d+ bytes, manifest says \d+"):
        open_packed(packed, "train")
    man = _manifest(packed)
    man["splits"]["test"]["count"] = 3  # header (2, 64, 64, 3) no longer matches
    (packed / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(PackError, match=r"test/images\.npy: uint8 \(2, 64, 64, 3\), expected uint8 \(3, 64, 64, 3\)"):
        open_packed(packed, "test")
    man["version"] = 99
    (packed / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(PackError, match="manifest.json: format version 99"):
        open_packed(packed, "test")
    (packed / "manifest.json").write_text("{not json")
    with pytest.raises(PackError, match="manifest.json: unreadable manifest"):
        open_packed(packed, "test")
    (packed / "manifest.json").unlink()
    with pytest.raises(PackError, match="manifest.json: missing"):
        open_packed(packed, "test")
    assert not D.is_packed(packed)


def test_verify_names_tampered_file(packed):
    D.verify(packed)
    p = packed / "train" / "labels.npy"
    lab = np.load(p)
    lab[0] = 1  # a relabelled row: same size, valid file, different hash
    np.save(p, lab)
    open_packed(packed, "train")
    with pytest.raises(PackError, match=r"train/labels\.npy: sha256 differs"):
        D.verify(packed)


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("TINYFAST_DATA", raising=False)
    assert DD.default_data_dir() == Path("data") / "synthetic"
    monkeypatch.setenv("TINYFAST_DATA", str(tmp_path / "x"))
    assert DD.default_data_dir() == tmp_path / "x"


def test_ensure_default_data(monkeypatch, tmp_path):
    monkeypatch.setattr(DD, "QUICK_SYNTHETIC", TINY)
    monkeypatch.setattr(DD, "_cuda_available", lambda: False)
    monkeypatch.setenv("TINYFAST_DATA", str(tmp_path / "default"))
    path = DD.ensure_default_data()
    assert path == tmp_path / "default"
    man = D.verify(path)
    assert man["source"]["synthetic"] == dict(TINY, test_count=2)
    assert {k: v["count"] for k, v in man["splits"].items()} == {"train": 12, "val": 6, "test": 2}
    stamp = (path / "manifest.json").stat().st_mtime_ns
    assert DD.ensure_default_data() == path and (path / "manifest.json").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default"]  # no temporary leftovers
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("x")
    with pytest.raises(PackError, match="other: exists and is not a packed dataset"):
        DD.ensure_default_data(other)


def test_ensure_default_data_concurrent(tmp_path):
    """Two processes racing to create the default data both end up with one valid dataset."""
    code = (
        "import sys, tinyfast.default_data as DD;"
        f"DD.QUICK_SYNTHETIC = {TINY!r};"
        "print(DD.ensure_default_data(sys.argv[1], quick=True))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    target = tmp_path / "shared"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(target)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.strip().endswith(str(target))
    D.verify(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared"]

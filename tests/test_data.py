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
    with pytest.raises(PackError, match=r"train/labels\.npy: sha256 differs"):
        open_packed(packed, "train")  # small files are re-hashed on every open
    with pytest.raises(PackError, match=r"train/labels\.npy: sha256 differs"):
        D.verify(packed)


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("TINYFAST_DATA", raising=False)
    assert DD.default_data_dir() == Path("data") / "synthetic"
    monkeypatch.setenv("TINYFAST_DATA", str(tmp_path / "x"))
    assert DD.default_data_dir() == tmp_path / "x"


def _ffcv_imports():
    return DD._ffcv_missing() is None


def test_ensure_default_data(monkeypatch, tmp_path):
    monkeypatch.setattr(DD, "QUICK_SYNTHETIC", TINY)
    monkeypatch.setattr(DD, "_cuda_available", lambda: False)
    monkeypatch.setenv("TINYFAST_DATA", str(tmp_path / "default"))
    path = DD.ensure_default_data(log=None)
    assert path == tmp_path / "default"
    man = D.verify(path)
    assert man["source"]["synthetic"] == dict(TINY, test_count=2)
    assert {k: v["count"] for k, v in man["splits"].items()} == {"train": 12, "val": 6, "test": 2}
    # every loader finds its input: the JPEG tree (torch), shards (dali jpeg), .beton (ffcv)
    tree = path / "jpeg-tree"
    assert man["source"]["path"] == str(tree.absolute())
    tr = open_packed(path, "train")
    for i, name in enumerate(tr.ids):
        assert (tree / "train" / tr.classes[tr.labels[i]] / "images" / name).is_file()
    assert all(s["jpeg_shards"] for s in man["splits"].values())
    if _ffcv_imports():
        assert all((path / s["beton"]).is_file() for s in man["splits"].values())
    else:
        assert man["source"]["ffcv_unavailable"]
    stamp = (path / "manifest.json").stat().st_mtime_ns
    assert DD.ensure_default_data(log=None) == path and (path / "manifest.json").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default"]  # no temporary leftovers
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("x")
    with pytest.raises(PackError, match="other: exists and is not a packed dataset"):
        DD.ensure_default_data(other)


def test_default_data_of_an_older_version_is_remade(monkeypatch, tmp_path):
    monkeypatch.setattr(DD, "_cuda_available", lambda: False)
    monkeypatch.setattr(DD, "QUICK_SYNTHETIC", TINY)
    old = tmp_path / "old"
    pack_synthetic(old, **TINY, progress=False, log=None)  # what earlier versions made: arrays only
    lines = []
    assert DD.ensure_default_data(old, log=lines.append) == old
    assert "lacks the JPEG tree, WebDataset shards" in lines[0]
    lines.clear()
    man = D.verify(old)
    assert (old / "jpeg-tree").is_dir() and all(s["jpeg_shards"] for s in man["splits"].values())
    moved = tmp_path / "moved"
    old.rename(moved)  # the kept tree moves with its folder: the manifest is re-pointed, not re-made
    stamp = open_packed(moved, "train").manifest["created"]
    assert DD.ensure_default_data(moved, log=lines.append) == moved and lines == []
    man = D.read_manifest(moved)
    assert man["source"]["path"] == str((moved / "jpeg-tree").absolute()) and man["created"] == stamp
    # a real dataset placed at the default path is used as it is, shards or not
    real = tmp_path / "real"
    from tinyfast import synthetic
    synthetic.write_tree(tmp_path / "src", classes=2, per_class=3, val_per_class=1, test_count=0, progress=False)
    from tinyfast.pack import pack
    pack(tmp_path / "src", real, progress=False, log=None)
    assert DD.ensure_default_data(real, log=lines.append) == real and lines == []
    assert "jpeg_shards" not in D.read_manifest(real)["splits"]["train"]


def test_torch_loader_reads_the_default_tree(monkeypatch, tmp_path):
    """The JPEG loader works on the default data with no extra argument."""
    torch = pytest.importorskip("torch")
    from tinyfast import loaders

    monkeypatch.setattr(DD, "_cuda_available", lambda: False)
    monkeypatch.setattr(DD, "QUICK_SYNTHETIC", TINY)
    monkeypatch.setattr(DD, "_ffcv_missing", lambda: "not needed here")
    path = DD.ensure_default_data(tmp_path / "d", log=None)
    ref = loaders.build("torch-npy", path, "val", 6, dtype=torch.float32, train=False, num_workers=0)
    got = loaders.build("torch", path, "val", 6, dtype=torch.float32, train=False, num_workers=0)
    (x_ref, y_ref), (x, y) = next(iter(ref)), next(iter(got))
    assert torch.equal(y, y_ref) and torch.allclose(x, x_ref, atol=1e-5)


def test_ensure_default_data_concurrent(tmp_path):
    """Two processes racing to create the default data both end up with one valid dataset."""
    code = (
        "import sys, tinyfast.default_data as DD;"
        f"DD.QUICK_SYNTHETIC = {TINY!r};"
        "DD._ffcv_missing = lambda: 'left out in this test';"
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


def _flip_byte(path, offset):
    """Flip one bit in place: same size and inode, only mtime/ctime change."""
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


@pytest.mark.parametrize("rel,offset", [("train/images.npy", -100), ("train/labels.npy", -8),
                                        ("train/ids.txt", -5), ("train/boxes.npy", -2)])
def test_same_size_tamper_is_caught_on_open(packed, rel, offset):
    open_packed(packed, "train")
    size = (packed / rel).stat().st_size
    _flip_byte(packed / rel, size + offset)
    assert (packed / rel).stat().st_size == size
    with pytest.raises(PackError, match=rf"{rel}: sha256 differs from the manifest"):
        open_packed(packed, "train")
    assert not D.is_packed(packed)


def test_tamper_with_mtime_put_back_is_caught(packed):
    img = packed / "val" / "images.npy"
    open_packed(packed, "val")
    st = img.stat()
    _flip_byte(img, st.st_size - 1)
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))  # what `touch -r` can restore; ctime it cannot
    with pytest.raises(PackError, match=r"val/images\.npy: sha256 differs"):
        open_packed(packed, "val")


def test_bulk_file_rehashed_only_when_its_stamp_differs(packed, monkeypatch, tmp_path):
    hashed = []
    real = D.sha256_file
    monkeypatch.setattr(D, "sha256_file", lambda p, **kw: hashed.append(Path(p).name) or real(p, **kw))
    open_packed(packed, "train")  # the pack stamped its own files: only the small ones are read
    assert sorted(hashed) == ["boxes.npy", "ids.txt", "labels.npy"]
    stamps = sorted(D.stamp_dir().glob("*.json"))
    assert D.stamp_dir() == Path(os.environ["XDG_CACHE_HOME"]) / "tinyfast" / "verified" and stamps
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "fresh-cache"))  # no stamp: hashed once
    hashed.clear()
    open_packed(packed, "train")
    assert "images.npy" in hashed and len(list((tmp_path / "fresh-cache/tinyfast/verified").glob("*.json"))) == 1
    hashed.clear()
    open_packed(packed, "train")
    assert "images.npy" not in hashed
    hashed.clear()
    open_packed(packed, "train", verify=True)  # verify ignores stamps
    assert "images.npy" in hashed
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # an unwritable cache: opens still work
    hashed.clear()
    open_packed(packed, "train")
    open_packed(packed, "train")
    assert hashed.count("images.npy") == 2


SCHEMA = {
    # name: (edit the manifest, the key the message must name)
    "count text": (lambda m: m["splits"]["train"].update(count="abc"), "splits.train.count"),
    "split not object": (lambda m: m["splits"].update(train=5), "splits.train"),
    "classes int": (lambda m: m.update(classes=7), "classes"),
    "class no wnid": (lambda m: m["classes"].__setitem__(1, {"words": "x"}), "classes[1]"),
    "mean text": (lambda m: m.update(mean="abc"), "mean"),
    "std short": (lambda m: m.update(std=[0.2, 0.2]), "std"),
    "size float": (lambda m: m.update(size=64.0), "size"),
    "size bool": (lambda m: m.update(size=True), "size"),
    "file no bytes": (lambda m: m["files"]["train/ids.txt"].pop("bytes"), "files['train/ids.txt'].bytes"),
    "file no sha": (lambda m: m["files"]["train/ids.txt"].pop("sha256"), "files['train/ids.txt'].sha256"),
    "file bad sha": (lambda m: m["files"]["train/ids.txt"].update(sha256="zz"), "files['train/ids.txt'].sha256"),
    "file entry text": (lambda m: m["files"].update({"train/ids.txt": "x"}), "files['train/ids.txt']"),
    "escaping path": (lambda m: m["files"].update({"../outside": {"bytes": 1, "sha256": "0" * 64}}), "files"),
    "unknown split": (lambda m: m["splits"].update(extra={"count": 1}), "splits"),
    "labelled text": (lambda m: m["splits"]["val"].update(labelled="yes"), "splits.val.labelled"),
    "shards not list": (lambda m: m["splits"]["val"].update(jpeg_shards="a.tar"), "splits.val.jpeg_shards"),
}


@pytest.mark.parametrize("case", list(SCHEMA))
def test_manifest_schema_errors_name_file_and_key(packed, case):
    edit, key = SCHEMA[case]
    man = _manifest(packed)
    edit(man)
    (packed / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(PackError) as e:
        open_packed(packed, "train")
    msg = str(e.value)
    assert msg.startswith(f"{packed / 'manifest.json'}: {key} must be ") and "\n" not in msg, msg
    from tinyfast.pack import main

    assert main(["--verify", str(packed)]) == 2

"""python -m tinyfast.pack on small generated trees: pixels vs Pillow, labels, hashes, bad input."""
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import re
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import default_signals
from PIL import Image

from tinyfast import pack as P
from tinyfast.pack import decode
from tinyfast import synthetic
from tinyfast.data import PackError, is_packed, open_packed, verify

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A small pristine Tiny-ImageNet-shaped tree (3 classes x 6 train, 2 val each, 3 test)."""
    d = tmp_path_factory.mktemp("src") / "tiny"
    synthetic.write_tree(d, classes=3, per_class=6, val_per_class=2, test_count=3, seed=1, progress=False)
    return d


@pytest.fixture
def src(tree, tmp_path):
    """A private copy of the tree that a test may break."""
    d = tmp_path / "tiny"
    shutil.copytree(tree, d)
    return d


def run(argv, capsys):
    rc = P.main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def pil_rgb(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def wnids_of(src):
    return (src / "wnids.txt").read_text().split()


def test_pixels_labels_boxes_follow_source(tree, tmp_path, capsys):
    out = tmp_path / "packed"
    rc, stdout, err = run([str(tree), "--out", str(out), "--workers", "1"], capsys)
    assert rc == 0, err
    assert "train 18  val 6  test 3" in stdout and "skipped: none" in stdout
    wn = wnids_of(tree)
    tr = open_packed(out, "train")
    assert tr.images.shape == (18, 64, 64, 3) and tr.images.dtype == np.uint8
    assert isinstance(tr.images, np.memmap) and tr.labels.dtype == np.int64
    assert tr.classes == wn and tr.num_classes == 3
    assert tr.words == [ln.split("\t")[1] for ln in (tree / "words.txt").read_text().splitlines()]
    for i, name in enumerate(tr.ids):
        w = name.split("_")[0]
        assert tr.labels[i] == wn.index(w)  # labels follow wnids.txt order
        np.testing.assert_array_equal(tr.images[i], pil_rgb(tree / "train" / w / "images" / name))
    boxes = {}
    for w in wn:
        for ln in (tree / "train" / w / f"{w}_boxes.txt").read_text().splitlines():
            f = ln.split("\t")
            boxes[f[0]] = [int(x) for x in f[1:]]
    assert [list(b) for b in tr.boxes] == [boxes[n] for n in tr.ids]
    # val labels and boxes follow val_annotations.txt, not file order
    ann = {f[0]: f for f in (ln.split("\t") for ln in (tree / "val/val_annotations.txt").read_text().splitlines())}
    va = open_packed(out, "val")
    assert sorted(va.ids) == sorted(ann)
    for i, name in enumerate(va.ids):
        assert va.classes[va.labels[i]] == ann[name][1]
        assert list(va.boxes[i]) == [int(x) for x in ann[name][2:]]
        np.testing.assert_array_equal(va.images[i], pil_rgb(tree / "val/images" / name))
    te = open_packed(out, "test")
    assert te.labels is None and te.ids == ["test_0.JPEG", "test_1.JPEG", "test_2.JPEG"]
    for i, name in enumerate(te.ids):
        np.testing.assert_array_equal(te.images[i], pil_rgb(tree / "test/images" / name))
    # train mean/std recorded in [0,1] units, exactly those of the packed pixels
    x = np.asarray(tr.images, np.float64).reshape(-1, 3) / 255
    np.testing.assert_allclose(tr.mean, x.mean(0), atol=1e-9)
    np.testing.assert_allclose(tr.std, x.std(0), atol=1e-7)
    # the manifest's hashes verify; the manifest names the source
    man = verify(out)
    assert man["source"]["path"] == str(tree) and man["source"]["layout"] == "tiny-imagenet"
    assert set(man["files"]) >= {"train/images.npy", "train/labels.npy", "train/ids.txt", "train/boxes.npy",
                                 "val/images.npy", "test/images.npy", "test/ids.txt"}
    assert not any(p.name.startswith(".packed") for p in tmp_path.iterdir())  # temp dir renamed away


def test_parallel_decode_matches_inline(tree, tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "INLINE_BELOW", 1)
    monkeypatch.setattr(decode, "TASK", 5)
    P.pack(tree, tmp_path / "a", workers=2, progress=False, log=None)
    P.pack(tree, tmp_path / "b", workers=1, progress=False, log=None)
    for split in ("train", "val", "test"):
        a, b = open_packed(tmp_path / "a", split), open_packed(tmp_path / "b", split)
        np.testing.assert_array_equal(a.images, b.images)
        assert a.ids == b.ids


def test_flipped_byte_and_truncation_are_detected(tree, tmp_path, capsys):
    out = tmp_path / "packed"
    P.pack(tree, out, progress=False, log=None)
    rc, stdout, _ = run(["--verify", str(out)], capsys)
    assert rc == 0 and stdout.startswith("ok:")
    f = out / "val" / "images.npy"
    data = bytearray(f.read_bytes())
    data[-100] ^= 0x01
    f.write_bytes(bytes(data))
    # same size, but a stat no longer matching the stamp the pack left: the open re-hashes it
    with pytest.raises(PackError, match=r"val/images\.npy: sha256 differs"):
        open_packed(out, "val")
    with pytest.raises(PackError, match=r"val/images\.npy: sha256 differs"):
        open_packed(out, "val", verify=True)
    rc, _, err = run(["--verify", str(out)], capsys)
    assert rc == 2 and err.count("\n") == 1 and "val/images.npy" in err and "Traceback" not in err
    lab = out / "train" / "labels.npy"
    lab.write_bytes(lab.read_bytes()[:-8])
    with pytest.raises(PackError, match=r"train/labels\.npy: .*truncated"):
        open_packed(out, "train")


def _jpeg_bytes(arr, **kw):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", **kw)
    return buf.getvalue()


def test_color_modes_and_sizes_converted(src, tmp_path, capsys):
    rng = np.random.default_rng(0)
    d = src / "train" / wnids_of(src)[0] / "images"
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8), "L").save(d / "gray.JPEG")
    Image.fromarray(rng.integers(0, 255, (64, 64, 4), dtype=np.uint8), "CMYK").save(d / "cmyk.JPEG")
    Image.fromarray(rng.integers(0, 255, (64, 64, 4), dtype=np.uint8), "RGBA").save(d / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).quantize(16).save(d / "pal.png")
    Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(d / "wide.JPEG")
    out = tmp_path / "packed"
    rc, stdout, err = run([str(src), "--out", str(out), "--jpeg-shards", "--strict", "--quiet"], capsys)
    assert rc == 0, err
    man = json.loads((out / "manifest.json").read_text())
    assert man["converted_to_rgb"] == {"CMYK": 1, "L": 1, "P": 1, "RGBA": 1}
    assert man["resized"]["count"] == 1 and man["resized"]["examples"][0].endswith("wide.JPEG")
    tr = open_packed(out, "train")
    for name in ("gray.JPEG", "cmyk.JPEG", "rgba.png", "pal.png"):
        np.testing.assert_array_equal(tr.images[tr.ids.index(name)], pil_rgb(d / name))
    with Image.open(d / "wide.JPEG") as im:  # the documented filter: centre crop, then BICUBIC
        ref = np.asarray(im.convert("RGB").crop((16, 0, 64, 48)).resize((64, 64), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(tr.images[tr.ids.index("wide.JPEG")], ref)
    assert list(tr.boxes[tr.ids.index("wide.JPEG")]) == [-1, -1, -1, -1]  # no box listed
    # shards: original bytes where a JPEG decoder reproduces the row, else a re-encode
    assert man["jpeg_reencoded"] == 4  # cmyk, rgba, pal, wide; gray is kept as is
    members = {}
    for rel in man["splits"]["train"]["jpeg_shards"]:
        with tarfile.open(out / rel) as t:
            for m in t.getmembers():
                members[m.name] = t.extractfile(m).read()
    assert len(members) == 2 * len(tr)
    for i, name in enumerate(tr.ids):
        key = f"{i:08d}"
        assert int(members[key + ".cls"]) == tr.labels[i]
        if name in ("cmyk.JPEG", "rgba.png", "pal.png", "wide.JPEG"):
            # the packed row re-encoded as documented: JPEG quality 95, 4:4:4
            assert members[key + ".jpg"] == _jpeg_bytes(np.asarray(tr.images[i]), quality=95, subsampling=0)
            dec = np.asarray(Image.open(io.BytesIO(members[key + ".jpg"])), np.int16)
            assert np.abs(dec - tr.images[i]).mean() < 8
        else:
            assert members[key + ".jpg"] == (d.parent.parent / tr.classes[tr.labels[i]] / "images" / name).read_bytes()


BAD = {
    # name: (break the tree, expected skip path, expected reason)
    "corrupt": (lambda s, w: (s / f"train/{w[0]}/images/bad.JPEG").write_bytes(b"\xff\xd8\xff\xe0garbage" * 20),
                lambda w: f"train/{w[0]}/images/bad.JPEG", "corrupt or truncated image"),
    "truncated": (lambda s, w: (s / f"train/{w[1]}/images/cut.JPEG").write_bytes(
        (s / f"train/{w[1]}/images/{w[1]}_0.JPEG").read_bytes()[:300]),
        lambda w: f"train/{w[1]}/images/cut.JPEG", "corrupt or truncated image"),
    "zero-byte": (lambda s, w: (s / "test/images/empty.JPEG").write_bytes(b""),
                  lambda w: "test/images/empty.JPEG", "zero-byte file"),
    "ds_store": (lambda s, w: (s / f"train/{w[0]}/.DS_Store").write_bytes(b"\0\0\0\1Bud1"),
                 lambda w: f"train/{w[0]}/.DS_Store", "stray file"),
    "thumbs": (lambda s, w: (s / "val/images/Thumbs.db").write_bytes(b"x"),
               lambda w: "val/images/Thumbs.db", "stray file"),
    "notes": (lambda s, w: (s / f"train/{w[2]}/images/notes.txt").write_text("hi"),
              lambda w: f"train/{w[2]}/images/notes.txt", "not an image file"),
    "empty class": (lambda s, w: [p.unlink() for p in (s / f"train/{w[2]}/images").iterdir()],
                    lambda w: f"train/{w[2]}", "class directory has no images"),
    "unlisted class": (lambda s, w: shutil.copytree(s / f"train/{w[0]}", s / "train/n99999999"),
                       lambda w: "train/n99999999", "class directory not in wnids.txt"),
    "unknown wnid": (lambda s, w: _edit_ann(s, lambda f: f[:1] + ["n99999999"] + f[2:] if f[0] == "val_0.JPEG" else f),
                     lambda w: "val/images/val_0.JPEG", "val annotation names a wnid not in wnids.txt"),
    "missing file": (lambda s, w: (s / "val/images/val_1.JPEG").unlink(),
                     lambda w: "val/images/val_1.JPEG", "val annotation names a missing file"),
}


def _edit_ann(s, fn):
    p = s / "val/val_annotations.txt"
    lines = [fn(ln.split("\t")) for ln in p.read_text().splitlines()]
    p.write_text("".join("\t".join(f) + "\n" for f in lines))


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_counted_skip_or_strict_error(case, src, tmp_path, capsys):
    breaker, where, reason = BAD[case]
    w = wnids_of(src)
    breaker(src, w)
    out = tmp_path / "packed"
    rc, stdout, err = run([str(src), "--out", str(out), "--quiet"], capsys)
    assert rc == 0, err
    man = json.loads((out / "manifest.json").read_text())
    assert {"path": where(w), "reason": reason} in [{k: s[k] for k in ("path", "reason")} for s in man["skipped"]]
    assert man["skipped_count"][reason] >= 1
    for split in man["splits"]:
        ps = open_packed(out, split)
        assert "bad.JPEG" not in ps.ids and "cut.JPEG" not in ps.ids and "empty.JPEG" not in ps.ids
    if case == "empty class":
        assert open_packed(out, "train").num_classes == 3  # the class keeps its label index
    if case == "unknown wnid":
        assert "val_0.JPEG" not in open_packed(out, "val").ids
    # --strict: the same tree is refused, one line naming the file, and nothing is written
    out2 = tmp_path / "strict"
    rc, stdout, err = run([str(src), "--out", str(out2), "--quiet", "--strict"], capsys)
    assert rc == 2 and err.startswith("python -m tinyfast.pack: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert where(w) in err and not out2.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".strict")] == []


def test_summary_reports_skips(src, tmp_path, capsys):
    (src / ".DS_Store").write_bytes(b"x")
    (src / "test/images/empty.JPEG").write_bytes(b"")
    rc, stdout, _ = run([str(src), "--out", str(tmp_path / "o"), "--workers", "1"], capsys)
    assert rc == 0
    assert "skipped 2: 1 stray file; 1 zero-byte file" in stdout


@pytest.mark.parametrize("case", ["missing wnids", "not a dataset", "no such dir", "a file", "bad box"])
def test_unusable_source_is_one_line_error(case, src, tmp_path, capsys):
    arg = src
    if case == "missing wnids":
        (src / "wnids.txt").unlink()
        name = "wnids.txt: missing"
    elif case == "not a dataset":
        arg = tmp_path / "notes"
        arg.mkdir()
        (arg / "readme.txt").write_text("hello")
        name = "not a dataset"
    elif case == "no such dir":
        arg, name = tmp_path / "nope", "does not exist"
    elif case == "a file":
        arg, name = src / "wnids.txt", "not a directory"
    else:
        w = wnids_of(src)[0]
        (src / f"train/{w}/{w}_boxes.txt").write_text(f"{w}_0.JPEG\t1\tx\t3\t4\n")
        name = f"{w}_boxes.txt:1: bounding box"
    out = tmp_path / "packed"
    rc, _, err = run([str(arg), "--out", str(out)], capsys)
    assert rc == 2 and err.startswith("python -m tinyfast.pack: error: ") and err.count("\n") == 1, err
    assert name in err and str(arg if case != "bad box" else src) in err
    assert not out.exists()


def test_existing_out_refused_unless_overwrite(tree, tmp_path, capsys):
    out = tmp_path / "packed"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc, _, err = run([str(tree), "--out", str(out), "--quiet"], capsys)
    assert rc == 2 and "exists and is not empty" in err and str(out) in err
    assert (out / "keep.txt").read_text() == "mine"
    rc, _, err = run([str(tree), "--out", str(out), "--quiet", "--overwrite"], capsys)
    assert rc == 0 and is_packed(out) and not (out / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["packed"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run([str(tree), "--out", str(empty), "--quiet"], capsys)[0] == 0  # an empty dir is fine


def test_image_folder_with_val_fraction(tmp_path, capsys):
    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    for c, n in (("dog", 8), ("cat", 5), ("ant", 4)):
        (root / c).mkdir(parents=True)
        for i in range(n):
            arr = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / (f"{i}.png" if i % 2 else f"{i}.jpg"))
    (root / "empty").mkdir()
    outs = []
    for k in range(2):
        outs.append(tmp_path / f"p{k}")
        rc, _, err = run([str(root), "--out", str(outs[-1]), "--val-fraction", "0.25", "--seed", "3", "--quiet"], capsys)
        assert rc == 0, err
    tr, va = open_packed(outs[0], "train"), open_packed(outs[0], "val")
    assert tr.classes == ["ant", "cat", "dog"] and len(tr) + len(va) == 17
    assert [int((va.labels == i).sum()) for i in range(3)] == [1, 1, 2]  # round(0.25 n) per class
    assert va.ids == open_packed(outs[1], "val").ids  # deterministic from the seed
    for ps in (tr, va):
        for i, name in enumerate(ps.ids):
            assert name.split("/")[0] == ps.classes[ps.labels[i]]
            np.testing.assert_array_equal(ps.images[i], pil_rgb(root / name))
    man = json.loads((outs[0] / "manifest.json").read_text())
    assert {"path": "empty", "reason": "class directory has no images"} in man["skipped"]
    assert "boxes.npy" not in {Path(f).name for f in man["files"]}


def test_ffcv_missing_is_a_clear_error_or_writes_beton(tree, tmp_path, capsys):
    out = tmp_path / "packed"
    try:
        import ffcv  # noqa: F401
    except ImportError:
        rc, _, err = run([str(tree), "--out", str(out), "--ffcv"], capsys)
        assert rc == 2 and "pip install .[ffcv]" in err and err.count("\n") == 1 and not out.exists()
        return
    rc, _, err = run([str(tree), "--out", str(out), "--ffcv", "--quiet", "--workers", "1"], capsys)
    assert rc == 0, err
    from ffcv.reader import Reader

    verify(out)
    for split in ("train", "test"):
        ps = open_packed(out, split)
        reader = Reader(str(out / f"{split}.beton"))
        assert reader.num_samples == len(ps) and reader.field_names == ["image", "label"]
        raw = np.fromfile(out / f"{split}.beton", np.uint8)
        img, lab = reader.metadata["f0"], reader.metadata["f1"]
        assert (img["mode"] == 1).all()  # FFCV 'raw' mode: the packed pixels, byte for byte
        for i in range(len(ps)):
            p = int(img["data_ptr"][i])
            np.testing.assert_array_equal(raw[p:p + 64 * 64 * 3].reshape(64, 64, 3), ps.images[i])
        np.testing.assert_array_equal(lab, ps.labels if ps.labels is not None else -np.ones(len(ps)))


def _tmp_siblings(d):
    return [p for p in d.iterdir() if p.name.startswith(".packed.")]


def test_killed_pack_leaves_nothing_openable(tree, tmp_path):
    out = tmp_path / "packed"
    env = dict(os.environ, TINYFAST_PACK_TEST_DELAY="1.0", PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "tinyfast.pack", str(tree), "--out", str(out), "--quiet", "--workers", "1"]
    # decode tasks of 4 images, each followed by the test delay: ~7 s of packing to interrupt, so the
    # signal lands mid-pack even on a loaded machine
    for sig, wait in ((signal.SIGKILL, 0.5), (signal.SIGKILL, 1.6), (signal.SIGINT, 1.0)):
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=default_signals)
        deadline = time.time() + 30
        mine = f".packed.tmp-{proc.pid}-"
        while not any(p.name.startswith(mine) for p in tmp_path.iterdir()) and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(wait)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode != 0
        assert not out.exists() and not is_packed(out)
        with pytest.raises(PackError):
            open_packed(out, "train")
        if sig == signal.SIGINT:
            assert b"interrupted" in err and b"Traceback" not in err
            assert _tmp_siblings(tmp_path) == []  # cleaned up on Ctrl-C
    # after a kill, the next pack completes and removes the dead process's temporary directory
    env.pop("TINYFAST_PACK_TEST_DELAY")
    subprocess.run(argv, env=env, check=True, timeout=60)
    assert is_packed(out) and _tmp_siblings(tmp_path) == []


def test_synthetic_cli_packs_and_keeps_tree(tmp_path, capsys):
    out, keep = tmp_path / "syn", tmp_path / "tree"
    rc, stdout, err = run(["--synthetic", "--classes", "4", "--per-class", "5", "--val-per-class", "2",
                           "--test-count", "3", "--seed", "2", "--out", str(out), "--tree", str(keep)], capsys)
    assert rc == 0, err
    assert "train 20  val 8  test 3" in stdout
    tr = open_packed(out, "train")
    assert tr.classes == [synthetic.wnid(i) for i in range(4)]
    assert tr.manifest["source"]["layout"] == "synthetic"
    np.testing.assert_array_equal(tr.images[0], pil_rgb(keep / "train" / tr.classes[0] / "images" / tr.ids[0]))
    rc, _, err = run(["--synthetic", "--out", str(out)], capsys)
    assert rc == 2 and "exists and is not empty" in err


def test_limit_packs_a_per_class_subset(tree, tmp_path, capsys):
    out = tmp_path / "packed"
    rc, stdout, err = run([str(tree), "--out", str(out), "--limit", "1", "--workers", "1"], capsys)
    assert rc == 0, err
    assert "train 3  val 3  test 3" in stdout
    tr, va = open_packed(out, "train"), open_packed(out, "val")
    assert tr.ids == [f"{w}_0.JPEG" for w in wnids_of(tree)] and sorted(va.labels.tolist()) == [0, 1, 2]
    assert tr.manifest["options"]["limit"] == 1
    assert "train: --limit 1 kept 3 of 18 images" in tr.manifest["notes"]
    rc, _, err = run([str(tree), "--out", str(tmp_path / "o2"), "--limit", "0"], capsys)
    assert rc == 2 and err == "python -m tinyfast.pack: error: --limit must be positive, got 0\n"
    rc, _, err = run([str(tree), "--out", str(tmp_path / "o2"), "--workers", "-1"], capsys)
    assert rc == 2 and err == "python -m tinyfast.pack: error: --workers must be >= 0 (0: all cores), got -1\n"


def test_progress_in_a_log_is_plain_lines(tree, tmp_path):
    """Not a terminal: timed plain lines on stderr, no carriage returns or cursor codes; --quiet: none."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TINYFAST_PROGRESS", None)
    out = tmp_path / "packed"
    base = [sys.executable, "-m", "tinyfast.pack"]
    r = subprocess.run(base + [str(tree), "--out", str(out), "--workers", "1", "--jpeg-shards"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "\x1b[" not in r.stderr
    assert "decode: 27/27 (100%)" in r.stderr and "train shards: 18/18 (100%)" in r.stderr
    r = subprocess.run(base + ["--verify", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("ok:")
    total = sum(f["bytes"] for f in json.loads((out / "manifest.json").read_text())["files"].values())
    assert 1e3 <= total < 1e6  # bytes in human units: kB here
    assert f"verify: {total / 1e3:.2f}/{total / 1e3:.2f} kB (100%)" in r.stderr and "\r" not in r.stderr
    r = subprocess.run(base + ["--verify", str(out), "--quiet"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""


def test_a_pack_prints_one_rate_per_label(tmp_path, monkeypatch, capsys):
    """Progress lines carry their own stage's rate; the summary gives one, labelled overall."""
    monkeypatch.setenv("TINYFAST_PROGRESS", "lines")
    summary = []
    P.pack_synthetic(tmp_path / "out", classes=2, per_class=4, val_per_class=2, test_count=2, size=32, seed=0,
                     workers=1, progress=True, log=summary.append)
    rates = [ln for ln in summary if "img/s" in ln]
    assert len(rates) == 1 and re.search(r"\(\d+ img/s overall, 1 worker\)", rates[0]), summary
    for line in capsys.readouterr().err.splitlines():  # progress: "<stage>: n/N (p%) R img/s ..."
        assert re.match(r"^(synthetic|decode|\S+): \d+/\d+ \(\d+%\) [\d,.]+ img/s", line), line

"""tinyfast.synthetic: layout, determinism, speed, and that the classes carry signal."""
import re
import time

import numpy as np
import pytest
from PIL import Image

from tinyfast import synthetic as S


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_matches_tiny_imagenet(tmp_path):
    root = S.write_tree(tmp_path / "t", classes=4, per_class=5, val_per_class=3, test_count=6, seed=3,
                        progress=False)
    wn = (root / "wnids.txt").read_text().split()
    assert len(wn) == 4 and all(re.fullmatch(r"n9\d{7}", w) for w in wn) and len(set(wn)) == 4
    words = dict(ln.split("\t") for ln in (root / "words.txt").read_text().splitlines())
    assert set(words) == set(wn) and all(words.values())
    for w in wn:
        imgs = sorted((root / "train" / w / "images").iterdir())
        assert len(imgs) == 5 and all(p.name.startswith(w + "_") and p.suffix == ".JPEG" for p in imgs)
        lines = (root / "train" / w / f"{w}_boxes.txt").read_text().splitlines()
        assert sorted(ln.split("\t")[0] for ln in lines) == sorted(p.name for p in imgs)
        for ln in lines:
            x0, y0, x1, y1 = map(int, ln.split("\t")[1:])
            assert 0 <= x0 <= x1 <= 63 and 0 <= y0 <= y1 <= 63
    ann = [ln.split("\t") for ln in (root / "val" / "val_annotations.txt").read_text().splitlines()]
    assert len(ann) == 12 and sorted(a[0] for a in ann) == sorted(p.name for p in (root / "val/images").iterdir())
    assert sorted(a[1] for a in ann) == sorted(wn * 3)  # val_per_class of each class
    assert len(list((root / "test" / "images").iterdir())) == 6
    with Image.open(root / "val" / "images" / "val_0.JPEG") as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (64, 64)


def test_deterministic_for_any_worker_count(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "_CHUNK", 4)  # several tasks, so the pool path runs
    kw = dict(classes=3, per_class=6, val_per_class=2, test_count=5, seed=11, progress=False)
    a = _files(S.write_tree(tmp_path / "a", workers=1, **kw))
    b = _files(S.write_tree(tmp_path / "b", workers=2, **kw))
    assert a == b
    c = _files(S.write_tree(tmp_path / "c", workers=1, **dict(kw, seed=12)))
    assert a.keys() == c.keys() and a["train/n90000000/images/n90000000_0.JPEG"] != c["train/n90000000/images/n90000000_0.JPEG"]


def test_boxes_cover_the_object():
    specs = S.class_specs(10, seed=0)
    rng = np.random.default_rng(5)
    imgs, boxes = S.render(np.arange(10), specs, rng)
    assert imgs.shape == (10, 64, 64, 3) and imgs.dtype == np.uint8
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    assert (area >= 36).all() and (area < 64 * 64).all()  # an object, not the whole frame


def test_small_config_is_fast(tmp_path):
    t = time.perf_counter()
    S.write_tree(tmp_path / "t", classes=10, per_class=30, val_per_class=5, test_count=20, progress=False)
    assert time.perf_counter() - t < 6.0  # ~0.5 s on an idle core; generous for busy CI machines


def test_class_specs_unique_and_spread():
    sp = S.class_specs(400, seed=0)
    combos = set(zip(sp["shape"].tolist(), map(tuple, sp["colors"].reshape(400, -1).round(3).tolist()),
                     sp["texture"].tolist()))
    assert len(combos) == 400
    first = S.class_specs(10, seed=0)
    assert len(set(first["shape"].tolist())) == 10  # a small subset is visually distinct
    with pytest.raises(ValueError):
        S.class_specs(0)


def _features(x, boxes):
    """Colour histogram (4 levels per channel) of each image's object box."""
    out = []
    for img, (x0, y0, x1, y1) in zip(x, boxes):
        q = (img[y0:y1 + 1, x0:x1 + 1] // 64).astype(np.int64).reshape(-1, 3)
        out.append(np.bincount(q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2], minlength=64) / len(q))
    return np.stack(out)


def test_classes_carry_signal_but_are_not_trivial():
    """The object's colours identify the class; raw-pixel templates (position-bound) hardly do."""
    specs = S.class_specs(10, seed=0)
    rng = np.random.default_rng(0)
    ytr, yva = np.repeat(np.arange(10), 30), np.repeat(np.arange(10), 10)
    xtr, btr = S.render(ytr, specs, rng)
    xva, bva = S.render(yva, specs, rng)

    def nearest_centroid(ftr, fva):
        cent = np.stack([ftr[ytr == c].mean(0) for c in range(10)])
        return (((fva[:, None] - cent[None]) ** 2).sum(-1).argmin(1) == yva).mean()

    assert nearest_centroid(_features(xtr, btr), _features(xva, bva)) >= 0.4  # chance is 0.1
    raw = nearest_centroid(xtr.reshape(300, -1) / 255.0, xva.reshape(100, -1) / 255.0)
    assert raw < 0.3

"""Source: the CS231n ``tiny-imagenet-200`` tree (labels in ``wnids.txt`` order).

``wnids.txt`` (label order), ``words.txt``, ``train/<wnid>/images/*.JPEG`` + ``<wnid>_boxes.txt``,
``val/images`` + ``val_annotations.txt``, ``test/images`` (unlabelled).
"""

from __future__ import annotations

from pathlib import Path

from tinyfast.data import PackError
from tinyfast.pack.plan import Item, Plan, Skips, list_names, natural_key, read_lines, stray_reason


def _parse_box(fields, path, lineno):
    if len(fields) < 4:
        return None
    try:
        return tuple(int(float(f)) for f in fields[:4])
    except ValueError:
        raise PackError(f"{path}:{lineno}: bounding box is not 4 numbers: {' '.join(fields[:4])!r}") from None


def _skip_extras(d: Path, expected, skips: Skips) -> None:
    """Record every entry of ``d`` whose name is not in ``expected`` as a skip."""
    for p in sorted(d.iterdir()):
        if p.name not in expected:
            skips.add(p, stray_reason(p))


def _read_wnids(path: Path) -> list:
    wnids, seen = [], {}
    for i, line in enumerate(read_lines(path), 1):
        w = line.strip()
        if not w:
            continue
        if w in seen:
            raise PackError(f"{path}:{i}: duplicate wnid {w} (first on line {seen[w]})")
        if "/" in w or w.startswith("."):
            raise PackError(f"{path}:{i}: not a class id: {w!r}")
        seen[w] = i
        wnids.append(w)
    if not wnids:
        raise PackError(f"{path}: empty (no class ids)")
    return wnids


def scan_tiny_imagenet(src: Path, skips: Skips) -> Plan:
    """Plan a pack of the CS231n tiny-imagenet-200 layout (labels in wnids.txt order)."""
    wnids = _read_wnids(src / "wnids.txt")
    index = {w: i for i, w in enumerate(wnids)}
    words = {}
    words_path = src / "words.txt"
    if words_path.is_file():
        for line in read_lines(words_path):
            k, _, v = line.partition("\t")
            if k.strip() in index:
                words[k.strip()] = v.strip()
    plan = Plan("tiny-imagenet", wnids, [words.get(w, "") for w in wnids], {})
    if not words_path.is_file():
        plan.notes.append("no words.txt: class names left empty")
    _skip_extras(src, ("wnids.txt", "words.txt", "train", "val", "test"), skips)
    plan.splits["train"] = _scan_train(src / "train", index, plan, skips)
    plan.has_boxes["train"] = True
    val_dir = src / "val"
    if val_dir.is_dir():
        plan.splits["val"] = _scan_val(val_dir, index, skips)
        plan.has_boxes["val"] = True
    test_dir = src / "test"
    if test_dir.is_dir():
        _skip_extras(test_dir, ("images",), skips)
        img_dir = test_dir / "images"
        base = str(img_dir)
        plan.splits["test"] = [Item(f"{base}/{n}", n) for n in list_names(img_dir, skips)]
        plan.has_boxes["test"] = False
    return plan


def _scan_train(train_dir: Path, index: dict, plan: Plan, skips: Skips) -> list:
    if not train_dir.is_dir():
        raise PackError(f"{train_dir}: missing (tiny-imagenet layout needs train/<wnid>/images)")
    for p in sorted(train_dir.iterdir()):
        if p.is_dir() and p.name not in index:
            skips.add(p, "class directory not in wnids.txt")
        elif not p.is_dir():
            skips.add(p, stray_reason(p))
    items = []
    for w in index:
        cdir = train_dir / w
        if not cdir.is_dir():
            skips.add(cdir, "class in wnids.txt has no train directory")
            continue
        img_dir = cdir / "images"
        _skip_extras(cdir, ("images", f"{w}_boxes.txt"), skips)
        files = list_names(img_dir, skips)
        if not files:
            skips.add(cdir, "class directory has no images")
            continue
        boxes = {}
        bpath = cdir / f"{w}_boxes.txt"
        if bpath.is_file():
            for j, line in enumerate(read_lines(bpath), 1):
                f = line.split()
                if f:
                    boxes[f[0]] = _parse_box(f[1:], bpath, j)
        else:
            plan.notes.append(f"train/{w}: no {w}_boxes.txt (its boxes are -1)")
        base = str(img_dir)
        items += [Item(f"{base}/{n}", n, index[w], boxes.get(n)) for n in files]
    return items


def _scan_val(val_dir: Path, index: dict, skips: Skips) -> list:
    ann = val_dir / "val_annotations.txt"
    if not ann.is_file():
        raise PackError(f"{ann}: missing (val/images needs its labels)")
    _skip_extras(val_dir, ("images", "val_annotations.txt"), skips)
    img_dir = val_dir / "images"
    present = {n: img_dir / n for n in list_names(img_dir, skips)}
    labelled = {}
    for j, line in enumerate(read_lines(ann), 1):
        f = line.split("\t") if "\t" in line else line.split()
        f = [x.strip() for x in f]
        if not any(f):
            continue
        if len(f) < 2:
            raise PackError(f"{ann}:{j}: expected 'file<TAB>wnid[<TAB>x0 y0 x1 y1]', got {line!r}")
        name, w = f[0], f[1]
        p = img_dir / name
        if name in labelled:
            skips.add(p, "duplicate val annotation", f"{ann.name} line {j}")
        elif w not in index:
            skips.add(p, "val annotation names a wnid not in wnids.txt", f"{w}, {ann.name} line {j}")
            present.pop(name, None)
        elif name not in present:
            if (img_dir / name).exists():
                continue  # already recorded as a skip (stray / not an image)
            skips.add(p, "val annotation names a missing file", f"{ann.name} line {j}")
        else:
            labelled[name] = Item(str(p), name, index[w], _parse_box(f[2:], ann, j))
    for name, p in present.items():
        if name not in labelled:
            skips.add(p, "val image has no annotation")
    return [labelled[n] for n in sorted(labelled, key=natural_key)]

"""A procedural stand-in for Tiny ImageNet: same directory layout, real JPEG files.

Each class is a visual concept = (shape, two-colour palette, texture). Every image draws the
class's shape at a random position, scale and rotation, filled with the class's texture in its
palette (colours jittered per image), over a noisy random-gradient background, often with a
distractor shape of random kind and colour behind it. Classes share attributes with other classes
(10 shapes x >=10 palettes x 4 textures), so a small CNN must combine cues: it learns the set well
above chance but not instantly, and random flips / rotations / crops help it generalise from few
images. Everything is a deterministic function of the seed (independent of the worker count).

Layout written (as the CS231n ``tiny-imagenet-200``)::

    wnids.txt  words.txt
    train/<wnid>/images/<wnid>_<i>.JPEG   train/<wnid>/<wnid>_boxes.txt
    val/images/val_<i>.JPEG               val/val_annotations.txt
    test/images/test_<i>.JPEG

Class ids are fake wnids ``n9xxxxxxx`` that never collide with real WordNet ids.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from tinyfast._util import cpu_count, mp_context, worker_init
from tinyfast.progress import progress

SHAPES = ("circle", "square", "triangle", "ring", "cross", "star", "bar", "crescent", "frame",
          "half-disc")
TEXTURES = ("rimmed", "broad-striped", "fine-striped", "checked")
_HUES = ("red", "orange", "yellow", "lime", "green", "teal", "cyan", "azure", "blue", "violet",
         "magenta", "pink")
JPEG_QUALITY = 90
_CHUNK = 200  # images per generation task; fixed so output does not depend on the worker count


def wnid(i: int) -> str:
    """Fake WordNet id of synthetic class ``i`` (real ids never start with ``n9``)."""
    return f"n9{i:07d}"


def _hsv_to_rgb(h, s, v):
    """Vectorised HSV (all in [0,1]) -> RGB in [0,255], float32, last axis 3."""
    h = np.asarray(h, np.float32)[..., None]
    s = np.asarray(s, np.float32)[..., None]
    v = np.asarray(v, np.float32)[..., None]
    k = (np.array([5.0, 3.0, 1.0], np.float32) + h * 6.0) % 6.0
    return 255.0 * (v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0))


def class_specs(num_classes: int, seed: int = 0) -> dict:
    """Per-class attributes: shape id, texture id, palette (2 RGB colours) and a name.

    Class ``i`` -> (a, b, c) = (i mod S, (i div S) mod P, i div (S P)); shape = perm(a),
    palette = (a + b) mod P, texture = (a + b + c) mod T. All triples are distinct, and the first
    ``S`` classes have distinct shapes, palettes and (mostly) textures, so a small subset is easy.
    """
    S, T = len(SHAPES), len(TEXTURES)
    P = max(10, -(-num_classes // (S * T)))
    if num_classes < 1:
        raise ValueError("num_classes must be >= 1")
    rng = np.random.default_rng([seed, 7001])
    shape_perm = rng.permutation(S)
    tex_perm = rng.permutation(T)
    # Palettes: hues spread by the golden ratio, second colour roughly opposite.
    h1 = (rng.random() + np.arange(P) * 0.6180339887) % 1.0
    h2 = (h1 + rng.uniform(0.3, 0.7, P)) % 1.0
    s1, s2 = rng.uniform(0.55, 1.0, P), rng.uniform(0.3, 1.0, P)
    v1, v2 = rng.uniform(0.65, 1.0, P), rng.uniform(0.35, 0.95, P)
    pal = np.stack([_hsv_to_rgb(h1, s1, v1), _hsv_to_rgb(h2, s2, v2)], 1)  # (P, 2, 3)
    i = np.arange(num_classes)
    a, b, c = i % S, (i // S) % P, i // (S * P)
    shape = shape_perm[a]
    palette = (a + b) % P
    texture = tex_perm[(a + b + c) % T]
    names = [
        f"{_HUES[int(h1[p] * 12) % 12]}-{_HUES[int(h2[p] * 12) % 12]} {TEXTURES[t]} {SHAPES[s]}"
        for s, p, t in zip(shape, palette, texture)]
    return dict(shape=shape, texture=texture, colors=pal[palette], names=names,
                wnids=[wnid(k) for k in range(num_classes)])


def _sdf(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance (inside < 0) of shape ``kind`` of unit radius at (u, v)."""
    if kind == 0:  # circle
        return np.hypot(u, v) - 1.0
    if kind == 1:  # square
        return np.maximum(np.abs(u), np.abs(v)) - 0.8
    if kind == 2:  # equilateral triangle, circumradius 1
        d = None
        for ang in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
            e = -(u * np.cos(ang) + v * np.sin(ang))
            d = e if d is None else np.maximum(d, e)
        return d - 0.5
    if kind == 3:  # ring
        return np.abs(np.hypot(u, v) - 0.72) - 0.28
    if kind == 4:  # cross
        au, av = np.abs(u), np.abs(v)
        return np.minimum(np.maximum(au - 1.0, av - 0.3), np.maximum(au - 0.3, av - 1.0))
    if kind == 5:  # five-pointed star
        r, phi = np.hypot(u, v), np.arctan2(v, u)
        return r - (0.62 + 0.38 * np.cos(5.0 * phi))
    if kind == 6:  # bar
        return np.maximum(np.abs(u) - 1.0, np.abs(v) - 0.33)
    if kind == 7:  # crescent: disc minus an offset disc
        return np.maximum(np.hypot(u, v) - 1.0, 0.82 - np.hypot(u - 0.5, v))
    if kind == 8:  # square frame
        m = np.maximum(np.abs(u), np.abs(v))
        return np.maximum(m - 0.88, 0.5 - m)
    # half disc, centred on its centroid
    v2 = v + 0.42
    return np.maximum(np.hypot(u, v2) - 1.0, -v2)


def _texture(kind: int, u, v, d, phase):
    """Mix weight in [0, 1] between the palette's two colours (local shape coordinates)."""
    if kind == 0:  # solid with a rim of the second colour
        return np.clip((d + 0.25) / 0.08, 0.0, 1.0)
    if kind == 1:
        return np.clip(0.5 + 1.5 * np.sin(2 * np.pi * 1.1 * u + phase), 0.0, 1.0)
    if kind == 2:
        return np.clip(0.5 + 1.5 * np.sin(2 * np.pi * 2.8 * u + phase), 0.0, 1.0)
    return np.clip(0.5 + 2.0 * np.sin(2 * np.pi * 1.6 * u + phase) * np.sin(2 * np.pi * 1.6 * v), 0.0, 1.0)


def _draw(img, rng, kinds, textures, c1, c2, cx, cy, radius, angle, size, yy, xx):
    """Alpha-composite one shape per image onto ``img`` (n, H, W, 3) float32; return coverage."""
    n = img.shape[0]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    dx = (xx[None] - cx[:, None, None]) / radius[:, None, None]
    dy = (yy[None] - cy[:, None, None]) / radius[:, None, None]
    u = (cos * dx + sin * dy).astype(np.float32)
    v = (-sin * dx + cos * dy).astype(np.float32)
    d = np.empty_like(u)
    t = np.zeros_like(u)
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    for k in np.unique(kinds):
        idx = np.nonzero(kinds == k)[0]
        d[idx] = _sdf(int(k), u[idx], v[idx])
    if textures is not None:
        for k in np.unique(textures):
            idx = np.nonzero(textures == k)[0]
            t[idx] = _texture(int(k), u[idx], v[idx], d[idx], phase[idx])
    # Anti-aliased coverage: distance in pixels through a one-pixel ramp.
    alpha = np.clip(0.5 - d * radius[:, None, None], 0.0, 1.0)
    # img += alpha * (fg - img) with fg = c1 + (c2 - c1) t: few full-size passes (the hot spot).
    fg = t[..., None] * (c2 - c1)[:, None, None, :]
    fg += c1[:, None, None, :]
    fg -= img
    fg *= alpha[..., None]
    img += fg
    return alpha


def render(labels: np.ndarray, specs: dict, rng: np.random.Generator, size: int = 64):
    """Render one image per label. Returns (uint8 (n, size, size, 3), int boxes (n, 4) x0 y0 x1 y1)."""
    labels = np.asarray(labels)
    n = len(labels)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Background: a random two-colour gradient plus a faint low-frequency wave.
    a, b = rng.uniform(0, 255, (n, 3)).astype(np.float32), rng.uniform(0, 255, (n, 3)).astype(np.float32)
    th = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    g = (np.cos(th)[:, None, None] * (xx - size / 2) + np.sin(th)[:, None, None] * (yy - size / 2)) / size + 0.5
    g = np.clip(g, 0, 1, dtype=np.float32)[..., None]
    f = rng.uniform(1, 4, (n, 2)).astype(np.float32) * (2 * np.pi / size)
    wave = np.sin(f[:, 0, None, None] * xx + f[:, 1, None, None] * yy + rng.uniform(0, 6.3, n).astype(np.float32)[:, None, None])
    img = g * (b - a)[:, None, None, :]
    img += a[:, None, None, :]
    img += (18.0 * wave)[..., None]
    # Distractor: a random shape in random colours, behind the object, in ~60% of images.
    radius = rng.uniform(0.16, 0.30, n).astype(np.float32) * size
    has = rng.random(n) < 0.6
    if has.any():
        m = int(has.sum())
        dr = radius[has] * rng.uniform(0.5, 0.8, m).astype(np.float32)
        sub = img[has]
        _draw(sub, rng, rng.integers(0, len(SHAPES), m), None,
              rng.uniform(0, 255, (m, 3)).astype(np.float32), rng.uniform(0, 255, (m, 3)).astype(np.float32),
              rng.uniform(0, size, m).astype(np.float32), rng.uniform(0, size, m).astype(np.float32),
              dr, rng.uniform(0, 2 * np.pi, m).astype(np.float32), size, yy, xx)
        img[has] = sub
    # The object: the class's shape, texture and palette; colours jittered per image.
    jit = rng.uniform(0.8, 1.15, (n, 1)).astype(np.float32)
    c1 = np.clip(specs["colors"][labels, 0] * jit + rng.normal(0, 10, (n, 3)), 0, 255).astype(np.float32)
    c2 = np.clip(specs["colors"][labels, 1] * jit + rng.normal(0, 10, (n, 3)), 0, 255).astype(np.float32)
    margin = radius * 0.7
    cx = rng.uniform(margin, size - margin).astype(np.float32)
    cy = rng.uniform(margin, size - margin).astype(np.float32)
    alpha = _draw(img, rng, specs["shape"][labels], specs["texture"][labels], c1, c2, cx, cy, radius,
                  rng.uniform(0, 2 * np.pi, n).astype(np.float32), size, yy, xx)
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    noise *= 9.0
    img += noise
    img += 0.5
    out = np.clip(img, 0, 255, out=img).astype(np.uint8)
    # Bounding boxes of the object's visible pixels (inclusive, like Tiny ImageNet's).
    cols, rows = alpha.max(1) > 0.5, alpha.max(2) > 0.5
    boxes = np.zeros((n, 4), np.int64)
    for arr, lo, hi in ((cols, 0, 2), (rows, 1, 3)):
        anyv = arr.any(1)
        boxes[:, lo] = np.where(anyv, arr.argmax(1), 0)
        boxes[:, hi] = np.where(anyv, size - 1 - arr[:, ::-1].argmax(1), size - 1)
    return out, boxes


def _encode(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _task(args):
    """Render and write one chunk of images; returns the box lines for the chunk."""
    root, split_code, chunk, labels, paths, num_classes, seed, size = args
    specs = class_specs(num_classes, seed)
    rng = np.random.default_rng([seed, split_code, chunk])
    imgs, boxes = render(np.asarray(labels, np.int64), specs, rng, size)
    for pix, rel in zip(imgs, paths):
        with open(os.path.join(root, rel), "wb") as f:
            f.write(_encode(pix))
    return boxes.tolist()


def write_tree(root: str | os.PathLike, classes: int = 200, per_class: int = 500,
               val_per_class: int = 50, test_count: int | None = None, size: int = 64,
               seed: int = 0, workers: int | None = None, progress: bool = True) -> Path:
    """Write a Tiny-ImageNet-shaped JPEG tree of synthetic images under ``root`` (created).

    ``test_count`` defaults to ``classes * val_per_class`` (as Tiny ImageNet: 10000 for 200 x 50).
    Uses ``workers`` processes (default: all cores) when there is enough work; the output is
    identical for any worker count. Progress goes through :func:`tinyfast.progress.progress`.
    """
    root = Path(root)
    if test_count is None:
        test_count = classes * val_per_class
    specs = class_specs(classes, seed)
    wn = specs["wnids"]
    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("".join(w + "\n" for w in wn))
    (root / "words.txt").write_text("".join(f"{w}\t{name}\n" for w, name in zip(wn, specs["names"])))
    order = np.random.default_rng([seed, 7002])
    val_labels = order.permutation(np.repeat(np.arange(classes), val_per_class))
    test_labels = order.integers(0, classes, test_count)
    tasks = _plan_tasks(root, wn, per_class, val_labels, test_labels, seed, size)
    results = _run_tasks(tasks, workers or cpu_count(), progress)
    train_lines = {c: [] for c in range(classes)}
    val_lines = []
    for ((split, c, part), _), boxes in zip(tasks, results):
        for name, b in zip(part, boxes):
            if split == "train":
                train_lines[c].append(f"{name}\t{b[0]}\t{b[1]}\t{b[2]}\t{b[3]}\n")
            elif split == "val":
                lab = int(val_labels[int(name[4:-5])])
                val_lines.append(f"{name}\t{wn[lab]}\t{b[0]}\t{b[1]}\t{b[2]}\t{b[3]}\n")
    for c in range(classes):
        (root / "train" / wn[c] / f"{wn[c]}_boxes.txt").write_text("".join(train_lines[c]))
    (root / "val" / "val_annotations.txt").write_text("".join(val_lines))
    return root


def _plan_tasks(root: Path, wn: list, per_class: int, val_labels, test_labels, seed: int, size: int) -> list:
    """Chunks of images to render, as ((split, class or None, names), _task arguments); folders made."""
    classes, tasks = len(wn), []
    for c in range(classes):
        d = root / "train" / wn[c] / "images"
        d.mkdir(parents=True, exist_ok=True)
        names = [f"{wn[c]}_{i}.JPEG" for i in range(per_class)]
        for k in range(0, per_class, _CHUNK):
            part = names[k:k + _CHUNK]
            tasks.append((("train", c, part),
                          (str(root), 1, c * 100000 + k // _CHUNK, [c] * len(part),
                           [f"train/{wn[c]}/images/{p}" for p in part], classes, seed, size)))
    for split, code, labels in (("val", 2, val_labels), ("test", 3, test_labels)):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        names = [f"{split}_{i}.JPEG" for i in range(len(labels))]
        for k in range(0, len(labels), _CHUNK):
            part = names[k:k + _CHUNK]
            tasks.append(((split, None, part),
                          (str(root), code, k // _CHUNK, labels[k:k + _CHUNK].tolist(),
                           [f"{split}/images/{p}" for p in part], classes, seed, size)))
    return tasks


def _run_tasks(tasks: list, workers: int, show: bool) -> list:
    """Each task's box lines, in task order; in a worker pool when there is enough work."""
    total = sum(len(args[3]) for _, args in tasks)
    results = [None] * len(tasks)
    with progress(total=total, unit="img", desc="synthetic", disable=not show) as bar:
        if workers <= 1 or total <= 2 * _CHUNK:
            for i, (_, args) in enumerate(tasks):
                results[i] = _task(args)
                bar.update(len(args[3]))
            return results
        with ProcessPoolExecutor(workers, mp_context=mp_context(), initializer=worker_init) as ex:
            futs = {ex.submit(_task, args): i for i, (_, args) in enumerate(tasks)}
            try:
                for fut in as_completed(futs):
                    i = futs[fut]
                    results[i] = fut.result()
                    bar.update(len(tasks[i][1][3]))
            except BaseException:
                ex.shutdown(wait=True, cancel_futures=True)
                raise
    return results

"""``python -m tinyfast.preview --preview``: each panel is what its augmentation does to the images,
the grid places them where it says, and the command writes a PNG or one clear error line."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyfast.preview import PREVIEW_PANELS, main, pick_images, preview_mosaic, preview_panels

ops = pytest.importorskip("tinyfast.ops")
pytestmark = pytest.mark.skipif(not ops.is_built(), reason="tinyfast._C is not built")


@pytest.fixture(scope="module")
def data(packed_synthetic):
    return packed_synthetic("synth", classes=6, per_class=4, val_per_class=2, test_count=2)


def _images(n=3, seed=0):
    return torch.randint(0, 256, (n, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_panels_show_what_their_titles_say():
    src = _images()
    panels = dict(preview_panels(src))
    assert list(panels) == [t for t, _ in PREVIEW_PANELS]
    assert torch.equal(panels["original"], src)
    assert torch.equal(panels["h-flip"], src.flip(2))
    assert torch.equal(panels["v-flip"], src.flip(1))
    # Contrast c about the source's mean ITU-R 601 luminance m, clamped: c*v + (1-c)*m.
    v = src.double()
    m = (v @ torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)).mean((1, 2))[:, None, None, None]
    for c in (0.7, 1.3):
        ref = (c * v + (1 - c) * m).clamp(0, 255).round()
        assert (panels[f"contrast {c}"].double() - ref).abs().max() <= 1, c
    # The random presets did change the images.
    for title in ("rotate10", "translate10", "crop56 (zoom)", "standard"):
        assert not torch.equal(panels[title], src), title
    # Blur sigma 1.5: a float64 5x5 Gaussian with reflected borders, within rounding.
    k = torch.arange(-2, 3, dtype=torch.float64)
    w1 = torch.exp(-k ** 2 / (2 * 1.5 ** 2))
    w1 = w1 / w1.sum()
    x = torch.nn.functional.pad(v.permute(0, 3, 1, 2), (2, 2, 2, 2), mode="reflect")
    ref = torch.nn.functional.conv2d(x, (w1[:, None] * w1[None]).expand(3, 1, 5, 5), groups=3)
    assert (panels["blur sigma 1.5"].double() - ref.permute(0, 2, 3, 1).clamp(0, 255)).abs().max() <= 1
    # Cutout: one black half-size square per image, the rest untouched.
    dark = (panels["cutout"] == 0).all(-1) & ~(src == 0).all(-1)
    changed = (panels["cutout"] != src).any(-1)
    assert torch.equal(changed, dark) and bool(changed.flatten(1).any(1).all())


def test_mosaic_places_panel_j_image_i_at_row_i_column_j():
    panels = [(str(j), _images(2, seed=j)) for j in range(3)]
    mosaic = preview_mosaic(panels, gap=2)
    assert mosaic.shape == (2 * 66 - 2, 3 * 66 - 2, 3) and mosaic.dtype == np.uint8
    for j, (_, imgs) in enumerate(panels):
        for i in range(2):
            assert np.array_equal(mosaic[i * 66:i * 66 + 64, j * 66:j * 66 + 64], imgs[i].numpy())
    assert (mosaic[64:66] == 255).all() and (mosaic[:, 64:66] == 255).all()


def test_pick_images_takes_one_per_spaced_class(data):
    from tinyfast.data import open_packed
    split = open_packed(data, "val")
    imgs = pick_images(split, 3)
    rows = [int(np.argmax(split.labels == c)) for c in (0, 2, 4)]
    assert torch.equal(imgs, torch.from_numpy(np.asarray(split.images[rows])))


def test_preview_command_writes_a_png(data, tmp_path, capsys):
    from PIL import Image
    out = tmp_path / "preview.png"
    assert main(["--preview", str(out), "--data", data, "--images", "4"]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > im.height > 0
    assert "4 val images" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["preview.png"]  # no temporary left behind
    assert main(["--preview", str(tmp_path / "x.png"), "--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0] and not (tmp_path / "x.png").exists()


def _one_error(capsys) -> str:
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in cap.err, cap.err
    return lines[0]


@pytest.mark.parametrize("count", ["0", "-2", "abc"])
def test_images_must_be_a_positive_count(data, tmp_path, capsys, count):
    out = tmp_path / "p.png"
    with pytest.raises(SystemExit) as e:
        main(["--preview", str(out), "--data", data, "--images", count])
    assert e.value.code == 2
    line = _one_error(capsys)
    assert line.startswith("python -m tinyfast.preview: error: argument --images: ") and count in line, line
    assert list(tmp_path.iterdir()) == []


def test_more_images_than_classes_is_one_per_class(data, tmp_path, capsys):
    from tinyfast.data import open_packed
    assert main(["--preview", str(tmp_path / "p.png"), "--data", data, "--images", "50"]) == 0
    assert "6 val images" in capsys.readouterr().out       # 6 classes: one image of each
    assert len(pick_images(open_packed(data, "val"), 50)) == 6


@pytest.mark.parametrize("where, says", [("adir", "is a directory (give a file name)"),
                                         ("afile/p.png", "is not a directory")])
def test_an_output_that_cannot_be_a_file_is_named(data, tmp_path, capsys, where, says):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    target = tmp_path / where
    assert main(["--preview", str(target), "--data", data]) == 2
    line = _one_error(capsys)
    assert line.startswith(f"python -m tinyfast.preview: error: --preview {target}: ") and says in line, line
    assert ".tmp" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"] and not any((tmp_path / "adir").iterdir())


def test_the_preview_is_its_own_cli_and_the_old_name_points_to_it(tmp_path, data):
    import subprocess
    import sys
    run = lambda mod, *a: subprocess.run([sys.executable, "-m", mod, *a], capture_output=True, text=True)
    old = run("tinyfast.augment", "--preview", str(tmp_path / "p.png"))
    assert old.returncode == 1 and not (tmp_path / "p.png").exists()
    assert old.stderr.strip() == ("python -m tinyfast.augment: error: the preview grid is "
                                  "`python -m tinyfast.preview --preview OUT.png`")
    new = run("tinyfast.preview", "--preview", str(tmp_path / "p.png"), "--data", data, "--images", "2")
    assert new.returncode == 0, new.stderr
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_default_output_is_in_the_current_folder(data, tmp_path, monkeypatch, capsys):
    """``--preview`` without a file name writes ./augment-preview.png; docs/op.md's command as
    written (with DIR = a packed set) writes there too, the README's writes the OUT.png it names,
    never into the checkout's docs/."""
    import re
    import shlex
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    for page, written in [("docs/op.md", "augment-preview.png"), ("README.md", "OUT.png")]:
        text = (root / page).read_text().replace("\n", " ")
        cmd = re.search(r"`(python -m tinyfast\.preview --preview[^`]*)`", text).group(1)
        argv = [data if a == "DIR" else a for a in shlex.split(cmd)[3:]]
        assert main(argv) == 0
        assert [p.name for p in tmp_path.iterdir()] == [written], page
        assert capsys.readouterr().out.startswith(f"{written}: ")
        (tmp_path / written).unlink()

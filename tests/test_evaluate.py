"""``tinyfast.evaluate`` / ``tinyfast.predict`` against an independent forward pass: the packed
uint8 images normalised by hand (float64 arithmetic), fed to the checkpoint's model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tinyfast.config import TrainConfig
from tinyfast.data import open_packed
from tinyfast.evaluate import main as evaluate_main
from tinyfast.predict import main as predict_main
from tinyfast.train import train
from tinyfast.checkpoint import load_checkpoint, model_from_checkpoint


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Data (3 classes, 32 px) and two short runs: ting_m1 with EMA, cnn2 without."""
    from tinyfast.pack import pack_synthetic
    root = tmp_path_factory.mktemp("evaluate")
    data = root / "synth"
    pack_synthetic(data, classes=3, per_class=32, val_per_class=12, test_count=14, size=32, seed=1,
                   progress=False, log=None)
    common = dict(data=str(data), epochs=2, batch_size=16, out_dir=str(root / "runs"), progress=False,
                  device="cpu", optimizer="adam", lr=2e-3)
    a = train(TrainConfig(arch="ting_m1", name="a", ema=0.8, **common))
    b = train(TrainConfig(arch="cnn2", name="b", **common))
    return {"data": str(data), "a": Path(a.run_dir) / "last.pt", "b": Path(b.run_dir) / "last.pt",
            "a_val_top1": a.history[-1]["val_top1"]}


def _reference_probs(ckpt: Path, data: str, split: str, weights: str = "auto") -> np.ndarray:
    ck = load_checkpoint(ckpt)
    model = model_from_checkpoint(ck, weights)
    sp = open_packed(data, split)
    mean, std = np.array(sp.mean), np.array(sp.std)
    x = (np.asarray(sp.images, dtype=np.float64) / 255.0 - mean) / std       # (N, H, W, 3)
    x = torch.from_numpy(x).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        return model(x).softmax(1).double().numpy()


def test_evaluate_one_and_an_ensemble(runs, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert evaluate_main([str(runs["a"]), str(runs["b"]), "--output", str(out), "--no-progress"]) == 0
    res = json.loads(out.read_text())
    labels = open_packed(runs["data"], "val").labels
    assert res["n"] == len(labels) == 36
    pa = _reference_probs(runs["a"], runs["data"], "val")
    pb = _reference_probs(runs["b"], runs["data"], "val")
    for m, p in zip(res["models"], (pa, pb)):
        assert m["top1"] == pytest.approx((p.argmax(1) == labels).mean(), abs=1.5 / len(labels))
    ens = (pa + pb) / 2
    assert res["ensemble"]["top1"] == pytest.approx((ens.argmax(1) == labels).mean(), abs=1.5 / len(labels))
    assert res["models"][0]["top5"] == 1.0  # 3 classes
    # The trainer's own evaluation of run a (EMA weights) gave the same top-1.
    assert res["models"][0]["top1"] == pytest.approx(runs["a_val_top1"])
    assert "ensemble of 2" in capsys.readouterr().out


def test_evaluate_raw_weights_differ_from_ema(runs, tmp_path):
    out_raw, out_ema = tmp_path / "raw.json", tmp_path / "ema.json"
    assert evaluate_main([str(runs["a"]), "--weights", "raw", "--output", str(out_raw), "--no-progress"]) == 0
    assert evaluate_main([str(runs["a"]), "--weights", "ema", "--output", str(out_ema), "--no-progress"]) == 0
    labels = open_packed(runs["data"], "val").labels
    raw = _reference_probs(runs["a"], runs["data"], "val", weights="raw")
    assert json.loads(out_raw.read_text())["models"][0]["top1"] == pytest.approx(
        (raw.argmax(1) == labels).mean(), abs=1.5 / len(labels))


def test_predict_writes_ids_and_wnids_in_packed_order(runs, tmp_path):
    out = tmp_path / "pred.csv"
    assert predict_main([str(runs["a"]), str(runs["b"]), "--output", str(out), "--no-progress"]) == 0
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == ["id", "label"]
    sp = open_packed(runs["data"], "test")
    assert [r[0] for r in rows[1:]] == [Path(i).name for i in sp.ids] and len(rows) == 15
    assert rows[1][0] == "test_0.JPEG"
    ens = (_reference_probs(runs["a"], runs["data"], "test") + _reference_probs(runs["b"], runs["data"], "test")) / 2
    want = [sp.classes[i] for i in ens.argmax(1)]
    got = [r[1] for r in rows[1:]]
    # Float rounding may flip a near-tie; everything else must agree.
    assert sum(g != w for g, w in zip(got, want)) <= 1
    assert set(got) <= set(sp.classes)


def test_predict_topk(runs, tmp_path):
    out = tmp_path / "top2.csv"
    assert predict_main([str(runs["b"]), "--output", str(out), "--topk", "2", "--no-progress"]) == 0
    rows = list(csv.reader(out.read_text().splitlines()))[1:]
    assert all(len(r[1].split()) == 2 and len(set(r[1].split())) == 2 for r in rows)


def test_bad_inputs_give_one_clear_line(runs, tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert evaluate_main([str(junk), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(junk) in err[0] and err[0].startswith("python -m tinyfast.evaluate: error:")
    assert predict_main([str(tmp_path / "none.pt"), "--output", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such checkpoint" in err[0]
    assert not (tmp_path / "p.csv").exists()
    with pytest.raises(SystemExit) as e:
        evaluate_main([str(runs["a"]), "--split", "test"])  # unlabelled: not a choice
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        evaluate_main([])
    assert "required: CKPT" in capsys.readouterr().err
    assert evaluate_main([str(runs["a"]), "--weights", "ema", "--no-progress"]) == 0
    assert evaluate_main([str(runs["b"]), "--weights", "ema", "--no-progress"]) == 2
    assert "no EMA weights" in capsys.readouterr().err


def test_evaluate_and_predict_never_import_the_trainer(runs, tmp_path):
    """Checkpoint I/O and inference live below the trainer: scoring a run loads none of it."""
    import subprocess
    import sys
    code = ("import sys\nfrom tinyfast.evaluate import main as ev\nfrom tinyfast.predict import main as pr\n"
            f"assert ev([{str(runs['a'])!r}, '--no-progress']) == 0\n"
            f"assert pr([{str(runs['a'])!r}, '--no-progress', '--output', {str(tmp_path / 'p.csv')!r}]) == 0\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('tinyfast.trainer', 'tinyfast.train')))\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _broken(runs, tmp_path, how: str) -> Path:
    ck = load_checkpoint(runs["a"])
    if how == "unknown arch":
        ck["arch"] = "no_such_net"
    elif how == "mismatched arch":
        ck["arch"] = "cnn2"              # ting_m1's weights
    else:
        del ck["model"]
    path = tmp_path / f"{how.replace(' ', '_')}.pt"
    torch.save(ck, path)
    return path


@pytest.mark.parametrize("how, needle", [("unknown arch", "unknown architecture 'no_such_net'"),
                                         ("mismatched arch", "do not fit architecture 'cnn2'"),
                                         ("no model", "no model weights")])
def test_a_checkpoint_that_cannot_be_rebuilt_is_one_line(runs, tmp_path, capsys, how, needle):
    path = _broken(runs, tmp_path, how)
    for main, prog, extra in ((evaluate_main, "evaluate", []),
                              (predict_main, "predict", ["--output", str(tmp_path / "p.csv")])):
        assert main([str(path), "--no-progress", "--weights", "raw", *extra]) == 2
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert "Traceback" not in err and len(lines) == 1, err
        assert lines[0].startswith(f"python -m tinyfast.{prog}: error: {path}:") and needle in lines[0]
    assert not (tmp_path / "p.csv").exists()


def test_outputs_that_cannot_be_written_are_one_line(runs, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "afolder"
    folder.mkdir()
    for main, prog in ((predict_main, "predict"), (evaluate_main, "evaluate")):
        assert main([str(runs["b"]), "--no-progress", "--output", str(folder)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "is a directory" in lines[0] and str(folder) in lines[0]
    # A directory that refuses the file (read-only; root ignores mode bits, so the refusal is faked
    # where the write happens).
    import tempfile
    real = tempfile.mkstemp

    def refuse(*a, dir=None, **k):
        if str(dir).startswith(str(tmp_path / "ro")):
            raise PermissionError(13, "Permission denied", str(dir) + "/.tmpXYZ")
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    target = tmp_path / "ro" / "p.csv"
    assert predict_main([str(runs["b"]), "--no-progress", "--output", str(target)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"python -m tinyfast.predict: error: {target}: Permission denied"


def test_evaluate_follows_the_runs_amp_setting_and_records_it(runs, tmp_path, monkeypatch):
    """A run trained with --amp --amp-dtype bf16 is scored in bf16 unless told otherwise, and the JSON says so."""
    ck = load_checkpoint(runs["b"])
    ck["config"] = dict(ck["config"], amp=True, amp_dtype="bf16")
    amp_ck = tmp_path / "amp.pt"
    torch.save(ck, amp_ck)
    seen = []
    import tinyfast.inference as inf
    real = inf.predict_probs

    def spy(model, loader, *, autocast, **kw):
        with autocast():
            seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), loader.dtype))
        return real(model, loader, autocast=autocast, **kw)

    monkeypatch.setattr(inf, "predict_probs", spy)
    for extra, want in (([], "bfloat16"), (["--no-amp"], "off")):
        out = tmp_path / f"s{want}.json"
        assert evaluate_main([str(amp_ck), "--no-progress", "--tta", "--output", str(out), *extra]) == 0
        res = json.loads(out.read_text())
        assert res["amp"] == want and res["tta"] is True
    assert seen[0] == (True, torch.bfloat16, torch.bfloat16)
    assert seen[1][0] is False and seen[1][2] == torch.float32
    out = tmp_path / "plain.json"
    assert evaluate_main([str(runs["b"]), "--no-progress", "--output", str(out)]) == 0
    assert json.loads(out.read_text())["amp"] == "off" and seen[2][0] is False


def test_predict_ids_of_an_imagefolder_pack_name_the_class_folder(tmp_path):
    """Files of the same name in two class folders keep distinct ids: the path in the split."""
    from PIL import Image

    from tinyfast.pack.cli import main as pack_main
    src, rng = tmp_path / "folder", np.random.default_rng(0)
    files = {"train": [f"{c}/{n:03d}.png" for c in ("cat", "dog") for n in range(4)],
             "val": ["cat/005.png", "dog/005.png", "dog/sub/005.png"]}
    for split, names in files.items():
        for name in names:
            (src / split / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(src / split / name)
    data = tmp_path / "packed"
    assert pack_main([str(src), "--out", str(data), "--size", "32", "--workers", "1", "--quiet"]) == 0
    tr = train(TrainConfig(arch="linear", data=str(data), epochs=1, batch_size=4, out_dir=str(tmp_path / "runs"),
                           name="f", progress=False, device="cpu", aug="none"))
    out = tmp_path / "pred.csv"
    assert predict_main([str(Path(tr.run_dir) / "last.pt"), "--split", "val", "--output", str(out),
                         "--no-progress"]) == 0
    ids = [r[0] for r in list(csv.reader(out.read_text().splitlines()))[1:]]
    assert sorted(ids) == sorted(files["val"])
    assert ids == list(open_packed(str(data), "val").ids)  # packed order


def test_a_missing_best_pt_points_at_the_runs_last_pt(runs, tmp_path, capsys):
    """A run stopped (Ctrl-C, --stop-at-step) before its first epoch ended has last.pt, no best.pt."""
    import shutil
    run = tmp_path / "r18"
    run.mkdir()
    shutil.copy(runs["a"], run / "last.pt")
    assert evaluate_main([str(run / "best.pt"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0] == (f"python -m tinyfast.evaluate: error: {run / 'best.pt'}: no such checkpoint; the run "
                      f"has no best.pt yet (it stopped before its first epoch ended): evaluate "
                      f"{run / 'last.pt'}")
    assert evaluate_main([str(run / "last.pt"), "--no-progress"]) == 0

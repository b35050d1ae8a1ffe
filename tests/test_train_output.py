"""What a user reads from a run: progress that works in a log, compile time kept out of img/s,
per-architecture default LR, runs without a val split, per-class lists, file modes, grammar."""

from __future__ import annotations

import json
import os
import stat
import time

import numpy as np
import pytest
import torch

from test_train import _cfg, data, packed_synthetic  # noqa: F401  (the shared packed-data fixture)
from tinyfast.config import TrainConfig, resolve_train_config
from tinyfast.metrics import per_class_table
from tinyfast.train import main, train
from tinyfast.trainer.sinks import class_list


@pytest.mark.parametrize("flag", ["--progress", "--no-progress"])
def test_progress_in_a_log_is_plain_periodic_lines(data, tmp_path, capsys, monkeypatch, flag):  # noqa: F811
    """Not a terminal (pytest captures): no tqdm frames; with or without --no-progress, a line
    with the step, ETA, loss and img/s comes every --progress-every seconds."""
    monkeypatch.delenv("TINYFAST_PROGRESS", raising=False)
    argv = ["--arch", "ting_m1", "--data", data, "--out-dir", str(tmp_path), "--name", "p", "--epochs", "1",
            "--batch-size", "32", "--device", "cpu", "--progress-every", "0.001", flag]
    assert main(argv) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "\r" not in text and "\x1b[" not in text
    lines = [ln for ln in out.err.splitlines() if ln.startswith("epoch 1/1: ")]
    assert len(lines) >= 4, out.err
    assert any("ETA" in ln and "loss=" in ln and "img_s=" in ln for ln in lines), lines
    assert "1 epoch x 8 steps" in out.out and "1 epochs" not in out.out


def test_zero_progress_every_and_no_progress_is_silent_inside_epochs(data, tmp_path, capsys):  # noqa: F811
    argv = ["--arch", "ting_m1", "--data", data, "--out-dir", str(tmp_path), "--name", "q", "--epochs", "1",
            "--batch-size", "32", "--device", "cpu", "--progress-every", "0", "--no-progress"]
    assert main(argv) == 0
    assert capsys.readouterr().err == ""


def test_compile_time_is_kept_out_of_img_per_s(data, tmp_path, capsys, monkeypatch):  # noqa: F811
    """A stand-in for torch.compile whose first call takes 1.5 s (what compiling costs): the epoch's
    img/s and time exclude it, ``compile_time`` holds it, and a note says what is happening."""
    import tinyfast.trainer.build as build

    class SlowFirstCall(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.first = inner, True

        def forward(self, x):
            if self.first:
                self.first = False
                time.sleep(1.5)
            return self.inner(x)

    monkeypatch.setattr(build.torch, "compile", lambda m: SlowFirstCall(m))
    t0 = time.perf_counter()
    tr = train(_cfg(data, tmp_path, compile=True, name="c"))
    wall = time.perf_counter() - t0
    row = tr.history[0]
    assert row["compile_time"] >= 1.5
    assert row["epoch_time"] < wall - 1.5
    assert row["img_per_s"] == pytest.approx((256 - 32) / row["epoch_time"])
    assert "--compile: the next step compiles the model" in capsys.readouterr().out


def test_each_new_image_size_compiles_again_and_is_compile_time(data, tmp_path, monkeypatch):  # noqa: F811
    """torch.compile compiles again for each new input shape (progressive resizing: 16 px, then
    32 px). A stand-in that spends 100 s (a fake clock) the first time it sees a shape and 1 s per
    step: each epoch's first step is compile time, its img/s the other 7 steps of 32 images in 7 s."""
    import tinyfast.trainer.build as build
    from test_train import _resolved
    from tinyfast.trainer import Trainer

    clock = [0.0]

    class CompilesPerShape(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.shapes = inner, set()

        def forward(self, x):
            if tuple(x.shape) not in self.shapes:
                self.shapes.add(tuple(x.shape))
                clock[0] += 100.0
            clock[0] += 1.0
            return self.inner(x)

    monkeypatch.setattr(build.torch, "compile", lambda m: CompilesPerShape(m))
    tr = Trainer(_resolved(_cfg(data, tmp_path, compile=True, epochs=2, prog_resize="16:32", name="r")))
    tr.loop.clock = lambda: clock[0]
    tr.fit()
    assert [r["image_size"] for r in tr.history] == [16, 32]
    assert [r["compile_time"] for r in tr.history] == [101.0, 101.0]
    assert [r["img_per_s"] for r in tr.history] == [32.0, 32.0]


def test_each_architecture_carries_its_default_lr():
    def lr(**kw):
        return resolve_train_config(TrainConfig(batch_size=32, **kw), cuda=False).lr
    scale = (32 / 512) ** 0.5
    assert lr(arch="resnet18") == pytest.approx(0.2 * scale)
    assert lr(arch="linear") == pytest.approx(0.01 * scale)        # the ResNet LR diverges it
    assert lr(arch="linear", optimizer="adam") == pytest.approx(1e-4 * scale)
    assert lr(arch="linear", lr=0.5) == 0.5                          # an explicit --lr wins


@pytest.fixture(scope="module")
def no_val_data(tmp_path_factory):
    return packed_synthetic(tmp_path_factory, "noval", classes=3, per_class=32, val_per_class=0, test_count=4,
                            seed=2)


def test_without_a_val_split_best_is_by_train_loss_and_said_so(no_val_data, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        tr = train(_cfg(no_val_data, tmp_path, epochs=3, batch_size=16, name="nv", optimizer="adam", lr=1e-3))
    finally:
        os.umask(old)
    out = capsys.readouterr().out
    assert "has no val split" in out and "lowest train loss" in out
    assert "best train loss" in out and "(no val split)" in out
    losses = [r["train_loss"] for r in tr.history]
    best = torch.load(tr.run_dir / "best.pt", weights_only=False)
    assert best["step"] == (int(np.argmin(losses)) + 1) * tr.steps_per_epoch
    assert json.loads((tr.run_dir / "summary.json").read_text())["best_by"] == "train_loss"
    for p in tr.run_dir.iterdir():                              # mode of open(): 0666 minus the umask
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


@pytest.mark.parametrize("n", [1, 3, 7, 10, 12])
def test_best_and_worst_classes_never_overlap(n):
    rng = np.random.default_rng(n)
    count = rng.integers(5, 20, n)
    correct = rng.integers(0, count + 1)
    t = per_class_table(correct, count, [f"c{i}" for i in range(n)], [""] * n)
    best, worst = [r["class"] for r in t["best"]], [r["class"] for r in t["worst"]]
    assert not set(best) & set(worst)
    assert len(best) == min(5, (n + 1) // 2) and len(worst) == min(5, n - len(best))
    acc = correct / count
    assert min(acc[int(c[1:])] for c in best) >= max((acc[int(c[1:])] for c in worst), default=0)


def test_class_names_are_printed_once_when_words_are_the_wnid():
    rows = [{"class": "n01", "words": "n01", "accuracy": 0.5}, {"class": "n02", "words": "goldfish, carp",
                                                                 "accuracy": 0.25}, {"class": "x", "words": "", "accuracy": 1.0}]
    assert class_list(rows) == "n01 50%, n02 goldfish 25%, x 100%"


def test_tensorboard_event_file_holds_the_epochs_and_the_first_batch(data, tmp_path):  # noqa: F811
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tr = train(_cfg(data, tmp_path, epochs=2, tensorboard=True, name="tb"))
    ea = EventAccumulator(str(tr.run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    ea.Reload()
    for key, tag in (("train_loss", "train/loss"), ("val_top1", "val/top1"), ("lr", "lr"),
                     ("img_per_s", "train/img_per_s"), ("val_top5", "val/top5")):
        got = [(e.step, e.value) for e in ea.Scalars(tag)]
        want = [(r["epoch"], r[key]) for r in tr.history]
        assert [s for s, _ in got] == [s for s, _ in want] == [1, 2], tag
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6), tag
    (img,) = ea.Images("train/augmented_batch")
    # 32 images of 32 px in rows of 8 with make_grid's 2-px padding: 4 x 8 tiles.
    assert (img.width, img.height) == (8 * 34 + 2, 4 * 34 + 2)


def test_tensorboard_missing_is_one_line(data, tmp_path, monkeypatch, capsys):  # noqa: F811
    import builtins
    real_import = builtins.__import__

    def no_tb(name, *a, **k):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tb)
    argv = ["--arch", "ting_m1", "--data", data, "--out-dir", str(tmp_path), "--epochs", "1", "--device", "cpu",
            "--no-progress", "--tensorboard"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["python -m tinyfast.train: error: --tensorboard needs the tensorboard package "
                   "(pip install tensorboard)"]

"""A quick run on real data: ``--subset N`` trains and validates on the first N images of each
class, and the progress shows the whole run's ETA next to the epoch's."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from test_train import _cfg, _resolved, data, packed_synthetic  # noqa: F401  (the shared packed-data fixture)
from tinyfast.loaders import build
from tinyfast.progress import fmt_seconds
from tinyfast.train import main
from tinyfast.trainer import Trainer


def first_rows(data_dir, split: str, n: int) -> list[int]:
    """Reference: the first ``n`` rows of each class of ``split``, read from labels.npy."""
    labels = np.load(f"{data_dir}/{split}/labels.npy")
    return sorted(i for c in np.unique(labels) for i in np.flatnonzero(labels == c)[:n].tolist())


@pytest.mark.parametrize("split", ["train", "val"])
def test_per_class_takes_the_first_n_of_each_class(data, split):  # noqa: F811
    ld = build("gpu", data, split, 5, device="cpu", per_class=7, drop_last=False)
    rows = first_rows(data, split, 7)
    assert len(rows) == 4 * 7 and ld.num_samples == 28 and len(ld) == 6
    for epoch in (0, 1):
        ld.set_epoch(epoch)
        seen = ld.order.indices(epoch).tolist()
        assert sorted(seen) == rows
        labels = np.concatenate([y.numpy() for _, y in ld])
        assert labels.tolist() == np.load(f"{data}/{split}/labels.npy")[seen].tolist()
    if split == "val":  # evaluation keeps the packed order
        assert ld.order.indices(0).tolist() == rows
    assert build("gpu", data, split, 5, device="cpu", per_class=10_000).num_samples == len(
        np.load(f"{data}/{split}/labels.npy"))  # more than a class has: all of it


def test_per_class_needs_labels_and_a_positive_count(data):  # noqa: F811
    with pytest.raises(ValueError, match=r"test: per_class needs a labelled split"):
        build("gpu", data, "test", 5, device="cpu", per_class=2)
    with pytest.raises(ValueError, match=r"per_class must be >= 1, got 0"):
        build("gpu", data, "train", 5, device="cpu", per_class=0)


def test_train_subset_flag_trains_and_validates_on_the_subset(data, tmp_path, capsys):  # noqa: F811
    argv = ["--arch", "ting_m1", "--data", data, "--out-dir", str(tmp_path), "--name", "s", "--epochs", "1",
            "--batch-size", "8", "--device", "cpu", "--no-progress", "--subset", "6"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1 epoch x 3 steps" in out  # 4 classes x 6 images / batch 8
    run = tmp_path / "s"
    assert json.loads((run / "config.json").read_text())["config"]["subset"] == 6
    counts = [int(r["count"]) for r in csv.DictReader((run / "per_class.csv").open())]
    assert counts == [6, 6, 6, 6], (run / "per_class.csv").read_text()


def test_bad_subset_is_one_line(data, tmp_path, capsys):  # noqa: F811
    with pytest.raises(SystemExit) as e:
        main(["--data", data, "--out-dir", str(tmp_path), "--device", "cpu", "--subset", "0"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("argument --subset: must be >= 1, got 0"), err


class RecordingBar:
    """Stands in for the progress bar: records each postfix with the step it was set at."""

    def __init__(self, loop, log):
        self.loop, self.log = loop, log

    def update(self, n=1):
        pass

    def set_postfix(self, **kw):
        self.log.append((self.loop.step, kw))

    def close(self):
        pass


def test_the_whole_runs_eta_is_shown_next_to_the_epochs(data, tmp_path, monkeypatch):  # noqa: F811
    import tinyfast.trainer.epoch as epoch_mod

    tr = Trainer(_resolved(_cfg(data, tmp_path, epochs=3, batch_size=32, log_every=1)))
    loop = tr.loop
    posts: list = []
    monkeypatch.setattr(epoch_mod, "progress_bar", lambda **kw: RecordingBar(loop, posts))
    loop.clock = lambda: loop.step * 0.5  # each step takes half a second: 2 steps/s
    tr.fit()
    spe = tr.steps_per_epoch
    assert spe == 8 and len(posts) == 3 * spe
    total = 3 * spe
    eval_time = [r["eval_time"] for r in tr.history]
    for step, kw in posts:
        epoch = (step - 1) // spe
        # The rest of the training at 2 steps/s, plus the evaluations still due (this epoch's
        # included) at the last one's duration, once one has been measured.
        evals_left = 3 - epoch
        expect = (total - step) / 2.0 + (evals_left * eval_time[epoch - 1] if epoch else 0.0)
        if epoch < 2:
            assert kw["run_eta"] == fmt_seconds(expect), (step, kw)
        else:  # the last epoch: its own ETA is the run's
            assert "run_eta" not in kw


def test_the_bars_img_s_counts_the_device_time(data, tmp_path, monkeypatch):  # noqa: F811
    """On a GPU the host queues steps ahead of the device: the bar's rate is read after the log
    step's sync. Here the host queues each step instantly and a step takes the device 0.5 s, so
    the clock moves only when ``.item()`` waits: 4 steps of 32 images per 2 s is 64 img/s."""
    import torch

    import tinyfast.trainer.epoch as epoch_mod

    tr = Trainer(_resolved(_cfg(data, tmp_path, epochs=1, batch_size=32, log_every=4)))
    loop = tr.loop
    posts: list = []
    monkeypatch.setattr(epoch_mod, "progress_bar", lambda **kw: RecordingBar(loop, posts))
    host = [0.0]
    real_item = torch.Tensor.item

    def waits(t):
        host[0] = max(host[0], loop.step * 0.5)  # the device has finished every step queued
        return real_item(t)
    monkeypatch.setattr(torch.Tensor, "item", waits)
    loop.clock = lambda: host[0]
    tr.fit()
    assert [(step, kw["img_s"]) for step, kw in posts] == [(4, "64"), (8, "64")]


@pytest.mark.parametrize("world, local, expect", [
    (1, None, "python -m tinyfast.train --resume runs/r/last.pt"),
    (2, "2", "torchrun --nproc_per_node 2 -m tinyfast.train --resume runs/r/last.pt"),
    (8, "4", "torchrun --nnodes 2 --nproc_per_node 4 -m tinyfast.train --resume runs/r/last.pt"),
])
def test_the_resume_command_has_the_runs_process_count(world, local, expect, monkeypatch):
    """A DDP run's checkpoint resumes only with the same world size: the printed command says it."""
    from pathlib import Path

    from tinyfast.trainer.run import resume_command

    if local is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local)
    assert resume_command(Path("runs/r/last.pt"), world) == expect


"""Faults around a training run's files: a process killed while writing a checkpoint loses none of
them and its temp files are removed on the next start; a resume on other data is refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from test_train import _cfg, data  # noqa: F401  (the shared packed-data fixture)
from tinyfast.train import main, train
from tinyfast.trainer import load_checkpoint


class Killed(BaseException):
    """Stands for a SIGKILL: the process ends where it is, nothing runs after it."""


def _kill_on(monkeypatch, name: str, nth: int) -> None:
    """The ``nth`` write of ``name`` in the run directory dies half-way: a partial temp file stays."""
    import tinyfast.trainer.run as run
    real, seen = run.save_checkpoint, []

    def save(data, path):
        path = Path(path)
        if path.name == name:
            seen.append(path)
            if len(seen) == nth:
                (path.parent / f".{name}.x1y2z3w4.tmp").write_bytes(b"PK\x03\x04 half a checkpoint")
                raise Killed
        real(data, path)
    monkeypatch.setattr(run, "save_checkpoint", save)


def _always_improves(monkeypatch) -> None:
    from tinyfast.trainer.validation import Validation

    def improved(self, row, history):
        self.best_top1 = row["val_top1"]
        return True
    monkeypatch.setattr(Validation, "improved", improved)


def test_a_kill_while_best_pt_is_written_loses_no_checkpoint(data, tmp_path, monkeypatch):  # noqa: F811
    _always_improves(monkeypatch)
    _kill_on(monkeypatch, "best.pt", nth=2)          # epoch 2 improved; its best.pt write dies
    cfg = _cfg(data, tmp_path, arch="cnn2", epochs=3)
    with pytest.raises(Killed):
        train(cfg)
    run = tmp_path / "runs" / "run"
    last, best = load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")
    # whatever last.pt records as the best epoch is what best.pt holds: a resume that redoes the
    # epochs after last.pt rewrites best.pt whenever one of them improves on it
    assert last["best_top1"] == best["best_top1"] == best["history"][-1]["val_top1"]
    assert last["epoch"] == best["epoch"] == 1
    monkeypatch.undo()
    tr = train(dataclasses.replace(cfg, resume=str(run / "last.pt")))
    assert tr.epoch == 3
    best = load_checkpoint(run / "best.pt")
    top1 = [r["val_top1"] for r in tr.history]
    assert best["best_top1"] == max(top1) == best["history"][-1]["val_top1"]
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]   # the stale temp file is gone


def test_a_stale_temp_file_of_last_pt_is_removed_on_resume(data, tmp_path, capsys):  # noqa: F811
    cfg = _cfg(data, tmp_path, arch="cnn2", epochs=1)
    train(cfg)
    run = tmp_path / "runs" / "run"
    stale = run / ".last.pt.abc123de.tmp"
    stale.write_bytes(b"\0" * 4096)                   # what a SIGKILL mid-write leaves
    other = run / "notes.tmp"                         # not ours: kept
    other.write_text("mine")
    assert main(["--resume", str(run / "last.pt"), "--epochs", "2", "--no-progress"]) == 0
    assert not stale.exists() and other.read_text() == "mine"
    out = capsys.readouterr()
    assert "note: removed 1 temporary file of an earlier process killed while writing" in out.out + out.err


def test_resume_on_data_repacked_at_the_same_path_is_refused_unless_allowed(tmp_path, capsys):
    from tinyfast.pack import pack_synthetic
    path = tmp_path / "data"
    kw = dict(classes=4, per_class=16, val_per_class=4, test_count=0, size=32, progress=False, log=None)
    pack_synthetic(path, seed=0, **kw)
    base = ["--arch", "cnn2", "--data", str(path), "--out-dir", str(tmp_path / "runs"), "--name", "r",
            "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--no-progress"]
    assert main(base) == 0
    last = tmp_path / "runs" / "r" / "last.pt"
    before = last.read_bytes()
    capsys.readouterr()
    pack_synthetic(path, seed=1, overwrite=True, **kw)   # other images under the same path
    assert main(["--resume", str(last), "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"python -m tinyfast.train: error: --resume: {last} was trained on other data than "
                          f"{path} holds now"), err
    assert "--resume-other-data" in err
    assert last.read_bytes() == before                  # nothing trained, nothing rewritten
    assert main(["--resume", str(last), "--epochs", "2", "--no-progress", "--resume-other-data"]) == 0
    out = capsys.readouterr()
    assert "note: --resume-other-data" in out.out + out.err
    assert load_checkpoint(last)["epoch"] == 2
    # the same data packed again (same content) is the same data
    pack_synthetic(path, seed=1, overwrite=True, **kw)
    assert main(["--resume", str(last), "--epochs", "3", "--no-progress"]) == 0


def test_tensorboard_missing_is_one_line_before_the_run_folder_exists(data, tmp_path, monkeypatch, capsys):  # noqa: F811
    import sys
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)   # as if not installed
    argv = ["--arch", "cnn2", "--data", str(data), "--out-dir", str(tmp_path / "runs"), "--name", "tb",
            "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--no-progress", "--tensorboard"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == ("python -m tinyfast.train: error: --tensorboard needs the tensorboard package "
                   "(pip install tensorboard)\n"), err
    assert not (tmp_path / "runs" / "tb").exists()


def test_importing_the_train_command_does_not_import_torch():
    """``python -m tinyfast.train`` imports torch inside main(), where Ctrl-C is one line."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, "-c", "import sys, tinyfast.train; print('torch' in sys.modules)"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == "False\n", r.stderr


@pytest.mark.parametrize("where", ["build_train_parser", "apply_recipe", "train"])
def test_ctrl_c_before_training_starts_is_one_line(monkeypatch, capsys, where):
    import tinyfast.train as T

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(T, where, interrupted)
    assert T.main(["--arch", "cnn2", "--device", "cpu"]) == 130
    err = capsys.readouterr().err
    assert err == "python -m tinyfast.train: interrupted\n", err

"""A used ``--name`` is refused (one line naming --resume and --overwrite); ``--overwrite`` clears the
old run's own files, and only those, before the new run writes."""

from __future__ import annotations

import json

import pytest

from test_train import data, packed_synthetic  # noqa: F401  (the shared packed-data fixture)
from tinyfast.train import main

# What a finished 1-epoch run with a val split leaves in its folder.
FINISHED = {"config.json", "last.pt", "best.pt", "metrics.csv", "metrics.jsonl", "summary.json", "curves.png",
            "per_class.csv"}


def _argv(data, tmp_path, *extra):  # noqa: F811
    return ["--arch", "linear", "--data", data, "--out-dir", str(tmp_path), "--name", "r", "--epochs", "1",
            "--batch-size", "64", "--device", "cpu", "--aug", "none", "--no-progress", *extra]


@pytest.fixture()
def old_run(data, tmp_path):  # noqa: F811
    assert main(_argv(data, tmp_path, "--seed", "1")) == 0
    run = tmp_path / "r"
    assert {p.name for p in run.iterdir()} == FINISHED
    return run


def test_a_used_name_is_refused_in_one_line_and_the_old_run_is_untouched(data, old_run, tmp_path, capsys):  # noqa: F811
    before = {p.name: p.read_bytes() for p in old_run.iterdir()}
    capsys.readouterr()
    assert main(_argv(data, tmp_path, "--seed", "2")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m tinyfast.train: error: --name r:"), err
    assert "--resume" in err[0] and "--overwrite" in err[0] and str(old_run) in err[0]
    assert {p.name: p.read_bytes() for p in old_run.iterdir()} == before


def test_overwrite_clears_the_old_runs_files_and_keeps_others(data, old_run, tmp_path):  # noqa: F811
    (old_run / "notes.txt").write_text("mine")
    (old_run / "tensorboard").mkdir()
    (old_run / "tensorboard" / "events.out").write_text("x")
    # stopped after one step: a run that writes config.json and last.pt only
    assert main(_argv(data, tmp_path, "--seed", "2", "--overwrite", "--stop-at-step", "1")) == 0
    assert {p.name for p in old_run.iterdir()} == {"config.json", "last.pt", "notes.txt"}
    assert (old_run / "notes.txt").read_text() == "mine"
    assert json.loads((old_run / "config.json").read_text())["config"]["seed"] == 2


def test_overwrite_with_a_bad_flag_leaves_the_old_run(data, old_run, tmp_path, capsys):  # noqa: F811
    """The old files go only once the new run is about to write: a refused command keeps them."""
    assert main(_argv(data, tmp_path, "--overwrite", "--warmup", "5")) == 2
    assert {p.name for p in old_run.iterdir()} == FINISHED


def test_overwrite_and_resume_together_are_refused(data, old_run, tmp_path, capsys):  # noqa: F811
    capsys.readouterr()
    assert main(["--name", "r", "--out-dir", str(tmp_path), "--resume", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "--resume" in err
    assert {p.name for p in old_run.iterdir()} == FINISHED


def test_a_fresh_name_and_an_empty_folder_need_no_flag(data, tmp_path):  # noqa: F811
    (tmp_path / "r").mkdir()
    assert main(_argv(data, tmp_path, "--stop-at-step", "1")) == 0
    assert {p.name for p in (tmp_path / "r").iterdir()} == {"config.json", "last.pt"}

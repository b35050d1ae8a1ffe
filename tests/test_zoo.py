"""benchmarks.zoo (the seed architectures by their seed recipes under one budget, one table) and its
wrapper benchmarks/zoo.sh, on tiny synthetic data on the CPU."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import zoo
from tinyfast.config import TrainConfig, build_parser, config_from_args, explicit_fields, resolve_train_config
from tinyfast.models import is_known, list_models
from tinyfast.recipes import apply_recipe, get_recipe

REPO = Path(__file__).resolve().parents[1]
TINY = "--batch-size 8 --device cpu --no-compile"

# The issue's list, in its order, and the seed recipe of each (written out here, not read from zoo).
EXPECTED = {
    "linear": "uci-linear", "cnn2": "uci-cnn2", "uci_cnn_deep": "uci-cnn-deep",
    "ting_m1": "skoltech-ting-m1", "ting_m4": "skoltech-ting-m4", "alexnet": "skoltech-alexnet",
    "vgg16": "uci-vgg16", "vgg_small": "stanford-vgg-z", "inception_small": "stanford-inception",
    "resnet18": "skoltech-resnet18", "resnet34": "skoltech-resnet34", "resnet50": "ghosh-resnet50",
    "preact_resnet34": "skoltech-preact-resnet34", "densenet161": "skoltech-densenet161",
    "ucsc_mobilenet_v2": "ucsc-mobilenet",
}
# What each seed reports, as the recipe's text words it.
REPORTED = {
    "uci-linear": "8.38%", "uci-cnn2": "14.9%", "uci-cnn-deep": "16.3%", "skoltech-ting-m1": "22-29.5%",
    "skoltech-ting-m4": "35.9%", "skoltech-alexnet": "< 20%", "uci-vgg16": None, "stanford-vgg-z": None,
    "stanford-inception": None, "skoltech-resnet18": "45%", "skoltech-resnet34": "46.5%",
    "ghosh-resnet50": "26.2%", "skoltech-preact-resnet34": "48%", "skoltech-densenet161": "51%",
    "ucsc-mobilenet": "45.6%",
}
SCRATCH = {"vgg16", "ucsc_mobilenet_v2"}


@pytest.fixture(scope="module")
def data(packed_synthetic):
    return packed_synthetic("zoo", classes=3, per_class=8, val_per_class=4, test_count=2)


def _zoo(*args, env=None):
    return subprocess.run([sys.executable, "-m", "benchmarks.zoo", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, env=env or dict(os.environ, PYTHONPATH=str(REPO)), timeout=600)


def _result(out: Path) -> tuple[dict, Path]:
    (path,) = out.glob("zoo-*.json")
    return json.loads(path.read_text()), path


def _parse(argv: list[str]) -> TrainConfig:
    """A training command's argv after ``python -m tinyfast.train``, as the trainer reads it."""
    ns = build_parser(TrainConfig, "t").parse_args(argv)
    return apply_recipe(config_from_args(TrainConfig, ns), explicit_fields(TrainConfig, argv))


@pytest.mark.parametrize("arch", list(EXPECTED))
def test_each_arch_is_its_recipes_arch_and_a_registered_model(arch):
    assert zoo.ZOO[arch] == EXPECTED[arch]
    assert get_recipe(EXPECTED[arch]).settings["arch"] == arch  # through the recipe's base too
    assert is_known(arch) and arch in list_models()
    assert zoo.from_scratch(EXPECTED[arch]) == (arch in SCRATCH)


def test_the_zoo_is_the_issues_list_in_order():
    assert list(zoo.ZOO) == list(EXPECTED)


def test_reported_figures_are_parsed_from_the_recipe_texts():
    for recipe, want in REPORTED.items():
        about = get_recipe(recipe).about
        assert zoo.reported_figure(about) == want, recipe
        if want is None:
            assert "report: no figure" in about
        else:
            assert want in about
    assert zoo.reported_figure("no report here (chosen)") is None
    assert zoo.reported_figure("x (report: curves only); y") is None


def test_dry_run_prints_each_rows_command_and_runs_nothing(data, tmp_path):
    out = tmp_path / "out"
    r = _zoo("--data", data, "--out", out, "--epochs", 3, "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 15 and not out.exists()
    for arch, line in zip(EXPECTED, lines):
        recipe = EXPECTED[arch]
        assert f"--recipe {recipe} " in line and "--epochs 3" in line
        argv = shlex.split(line)
        assert argv[1:3] == ["-m", "tinyfast.train"]
        cfg = _parse(argv[3:])
        assert cfg.recipe == recipe and cfg.arch == arch and cfg.epochs == 3
        assert cfg.data == str(Path(data).resolve()) and cfg.out_dir == str(out.resolve() / "runs")
        if arch in SCRATCH:  # the recipe asks for ImageNet weights; the command trains from scratch
            assert get_recipe(recipe).settings["pretrained"] == "imagenet"
            assert cfg.pretrained is None and not cfg.freeze and cfg.unfreeze_every == 0
        else:
            assert "--pretrained" not in argv and cfg.pretrained is None
        resolve_train_config(cfg, cuda=False)  # a command the trainer accepts


def test_train_args_go_last_on_every_command_even_a_single_flag(data, tmp_path, capsys):
    assert zoo.main(["--data", data, "--out", str(tmp_path / "o"), "--models", "cnn2,vgg16", "--dry-run",
                     "--train-args=--no-compile"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(shlex.split(line)[-1] == "--no-compile" for line in lines)
    assert "--recipe uci-cnn2 " in lines[0] and "--recipe uci-vgg16 " in lines[1]


def test_a_subset_runs_and_its_rows_match_each_runs_own_files(data, tmp_path):
    out = tmp_path / "out"
    r = _zoo("--data", data, "--out", out, "--models", "linear,cnn2", "--epochs", 2, "--train-args", TINY)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res, path = _result(out)
    assert path.name.startswith("zoo-cpu-") and res["gpu"] == "cpu" and res["complete"] is True
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert res["commit"] == (head.stdout.strip() if head.returncode == 0 else "unknown")
    import torch
    assert res["torch"] == torch.__version__
    assert res["budget"]["epochs"] == 2 and res["budget"]["train_args"] == TINY
    assert [row["arch"] for row in res["rows"]] == ["linear", "cnn2"]
    progress = [ln for ln in r.stdout.splitlines() if ln.startswith("[")]
    assert len(progress) == 2 and progress[0].startswith("[1/2] linear") and progress[1].startswith("[2/2] cnn2")
    md = path.with_suffix(".md").read_text()
    for row in res["rows"]:
        run = Path(row["run_dir"])
        assert run == out.resolve() / "runs" / row["arch"]
        summary = json.loads((run / "summary.json").read_text())
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert row["status"] == "ok" and row["recipe"] == EXPECTED[row["arch"]] and not row["from_scratch"]
        assert row["epochs"] == epochs[-1]["epoch"] == 2 == len(epochs)
        assert row["val_top1"] == epochs[-1]["val_top1"] and 0 <= row["val_top1"] <= 1
        assert row["best_val_top1"] == summary["best_val_top1"]
        assert row["seconds"] == summary["wall_time"] and row["seconds"] >= epochs[-1]["epoch_time"] > 0
        assert row["images_per_s"] == epochs[-1]["img_per_s"] > 0
        assert row["reported"] == REPORTED[row["recipe"]]
        saved = json.loads((run / "config.json").read_text())["config"]
        assert saved["recipe"] == row["recipe"] and saved["arch"] == row["arch"] and saved["epochs"] == 2
        assert saved["batch_size"] == 8 and saved["device"] == "cpu"
        assert shlex.split(row["command"])[3:] == ["--recipe", row["recipe"], "--data", str(Path(data).resolve()),
                                                   "--epochs", "2", "--out-dir", str(out.resolve() / "runs"),
                                                   "--name", row["arch"], "--overwrite", "--no-progress", *shlex.split(TINY)]
        assert f"`{row['command']}`" in md and f"| {row['arch']} | {row['recipe']} | ok |" in md
        assert Path(row["log"]).read_text().strip()
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_a_failing_row_is_recorded_and_the_next_row_runs(data, tmp_path, monkeypatch, capsys):
    real = zoo.train_command

    def failing_first(arch, *args, **kw):  # the first row's trainer refuses its flags and exits 2
        cmd = real(arch, *args, **kw)
        return cmd + ["--lr", "-1"] if arch == "linear" else cmd
    monkeypatch.setattr(zoo, "train_command", failing_first)
    out = tmp_path / "out"
    rc = zoo.main(["--data", data, "--out", str(out), "--models", "linear,cnn2", "--train-args", TINY])
    assert rc == 1
    res, _ = _result(out)
    bad, good = res["rows"]
    assert bad["status"] == "failed" and bad["returncode"] == 2 and bad["val_top1"] is None
    assert "--lr" in bad["error"] and bad["error"] in bad["log_tail"] and bad["log_tail"][-1] == bad["error"]
    assert good["status"] == "ok" and good["returncode"] == 0 and good["val_top1"] is not None
    assert res["complete"] is True
    lines = capsys.readouterr().out.splitlines()
    assert any(ln.startswith("[1/2] linear (uci-linear): failed") for ln in lines)
    assert any(ln.startswith("[2/2] cnn2 (uci-cnn2): ok") for ln in lines)


def test_a_timed_out_row_is_recorded_and_the_run_goes_on(data, tmp_path):
    out = tmp_path / "out"
    r = _zoo("--data", data, "--out", out, "--models", "linear,cnn2", "--train-args", TINY,
             "--timeout-per-model", "0.01")
    assert r.returncode == 1, r.stderr
    res, path = _result(out)
    assert [row["arch"] for row in res["rows"]] == ["linear", "cnn2"] and res["complete"] is True
    for row in res["rows"]:
        assert row["status"] == "timeout" and row["val_top1"] is None and row["seconds"] is None
        assert isinstance(row["log_tail"], list) and row["error"] == "stopped at the 0.01 s limit"
    assert res["budget"]["timeout_per_model"] == 0.01
    assert "| linear | uci-linear | timeout" in path.with_suffix(".md").read_text()


def test_a_rerun_does_not_read_the_previous_runs_results(data, tmp_path):
    out = tmp_path / "out"
    stale = out / "runs" / "linear"
    stale.mkdir(parents=True)
    (stale / "summary.json").write_text(json.dumps({"best_val_top1": 0.99, "wall_time": 1.0}))
    (stale / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val_top1": 0.99}) + "\n")
    r = _zoo("--data", data, "--out", out, "--models", "linear", "--train-args", TINY, "--timeout-per-model", "0.01")
    assert r.returncode == 1
    (row,) = _result(out)[0]["rows"]
    assert row["status"] == "timeout" and row["val_top1"] is None and not (stale / "summary.json").exists()


@pytest.mark.parametrize("args, words", [
    (["--models", "linear,nope"], "unknown model 'nope'"),
    (["--models", ","], "no model"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--epochs", "-2"], "--epochs must be >= 1"),
    (["--epochs", "x"], "not an integer"),
    (["--timeout-per-model", "0"], "--timeout-per-model"),
    (["--timeout-per-model", "nan"], "--timeout-per-model"),
    (["--train-args", "'unclosed"], "--train-args"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_input_is_one_error_line_and_exit_2(data, tmp_path, capsys, args, words):
    assert zoo.main(["--data", data, "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr()
    lines = err.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m benchmarks.zoo: error: ") and words in lines[0]
    assert not err.out and not (tmp_path / "o").exists()


def test_missing_or_unpacked_data_is_one_error_line_and_exit_2(tmp_path):
    r = _zoo("--data", tmp_path / "nope", "--out", tmp_path / "o")
    assert r.returncode == 2 and r.stderr.strip() == (f"python -m benchmarks.zoo: error: --data {tmp_path / 'nope'}: "
                                                      "no such directory")
    (tmp_path / "tree").mkdir()
    r = _zoo("--data", tmp_path / "tree", "--out", tmp_path / "o")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "no manifest.json" in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_zoo_sh_packs_a_jpeg_tree_and_writes_the_table(tree_and_elsewhere):
    src, elsewhere = tree_and_elsewhere  # run from a third folder, OUT relative to it
    out = elsewhere / "out"
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(REPO), MODELS="linear", TRAIN_ARGS=TINY)
    r = subprocess.run(["bash", str(REPO / "benchmarks" / "zoo.sh"), str(src), "out"], capture_output=True,
                       text=True, env=env, cwd=elsewhere, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (out / "packed" / "manifest.json").exists()
    res, path = _result(out)
    (row,) = res["rows"]
    assert row["arch"] == "linear" and row["status"] == "ok" and res["budget"]["epochs"] == 1
    assert res["data"] == str((out / "packed").resolve()) and path.with_suffix(".md").exists()
    usage = subprocess.run(["bash", str(REPO / "benchmarks" / "zoo.sh")], capture_output=True, text=True)
    assert usage.returncode == 2 and "zoo.sh DATA OUT" in usage.stderr

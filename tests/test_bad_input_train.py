"""Bad input and faults around training, evaluation and prediction: one clear line each (no
traceback), a non-zero exit, and nothing good lost or half-written."""

from __future__ import annotations

import dataclasses
import math
import tempfile
import typing

import pytest
import torch

from test_train import data  # noqa: F401  (the shared packed-data fixture)
from tinyfast.checkpoint import load_checkpoint
from tinyfast.config import ConfigError, TrainConfig, resolve_train_config
from tinyfast.evaluate import main as evaluate_main
from tinyfast.predict import main as predict_main
from tinyfast.train import main as train_main

FLOAT_OPTIONS = sorted(f.name for f in dataclasses.fields(TrainConfig)
                       if float in typing.get_args(typing.get_type_hints(TrainConfig)[f.name])
                       or typing.get_type_hints(TrainConfig)[f.name] is float)


def _one_error_line(err: str, prog: str) -> str:
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("usage:")]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"python -m tinyfast.{prog}: error:"), lines[0]
    return lines[0]


def test_the_float_options_are_all_found():
    assert {"lr", "momentum", "weight_decay", "label_smoothing", "warmup", "ema", "mix_prob",
            "gamma", "min_lr"} <= set(FLOAT_OPTIONS)


@pytest.mark.parametrize("name", FLOAT_OPTIONS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_float_option_refuses_non_finite_values(name, value, capsys):
    flag = "--" + name.replace("_", "-")
    with pytest.raises(SystemExit) as e:
        train_main([f"{flag}={value}"])  # "=": argparse would take a bare -inf for an option
    assert e.value.code == 2
    line = _one_error_line(capsys.readouterr().err, "train")
    assert flag in line and "finite" in line, line
    # The same rule when the config is built in Python (a preset, a saved run, a caller).
    with pytest.raises(ConfigError, match=f"{flag}: must be a finite number"):
        resolve_train_config(TrainConfig(**{name: float(value)}), cuda=False)


def test_a_diverging_run_stops_keeps_the_last_good_checkpoint_and_exits_non_zero(data, tmp_path, monkeypatch,  # noqa: F811
                                                                                 capsys):
    """Weights blown up mid epoch 2 (what a too-high LR does): the run stops with one line, exit 1,
    and last.pt / best.pt still hold epoch 1's finite weights."""
    from tinyfast.trainer.step import TrainStep
    real_call = TrainStep.__call__
    calls = {"n": 0}

    def exploding(self, x, y):
        calls["n"] += 1
        out = real_call(self, x, y)
        if calls["n"] == 10:  # epoch 1 has 8 steps
            with torch.no_grad():
                for p in self.model.parameters():
                    p.fill_(math.inf)
        return out

    monkeypatch.setattr(TrainStep, "__call__", exploding)
    argv = ["--arch", "ting_m1", "--data", data, "--out-dir", str(tmp_path), "--name", "r", "--epochs", "3",
            "--batch-size", "32", "--no-progress", "--device", "cpu"]
    assert train_main(argv) == 1
    line = _one_error_line(capsys.readouterr().err, "train")
    assert "diverged" in line and "lower --lr" in line and "last.pt" in line, line
    assert calls["n"] <= 12                         # stopped at once (CPU syncs every step anyway)
    for name in ("last.pt", "best.pt"):
        ck = load_checkpoint(tmp_path / "r" / name)
        assert ck["step"] == 8 and ck["epoch"] == 1
        assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    assert not [p for p in (tmp_path / "r").iterdir() if p.name.endswith(".tmp")]


def test_out_dir_that_is_a_file(data, tmp_path, capsys):  # noqa: F811
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    argv = ["--arch", "ting_m1", "--data", data, "--out-dir", str(blocker), "--no-progress", "--device", "cpu"]
    assert train_main(argv) == 2
    line = _one_error_line(capsys.readouterr().err, "train")
    assert "--out-dir" in line and str(blocker) in line


@pytest.mark.parametrize("prog, main", [("train", train_main), ("evaluate", evaluate_main),
                                        ("predict", predict_main)])
def test_an_unknown_device_is_one_line(prog, main, tmp_path, capsys):
    argv = [] if prog == "train" else [str(tmp_path / "x.pt")]
    with pytest.raises(SystemExit) as e:
        main(argv + ["--device", "tpu7"])
    assert e.value.code == 2
    assert "unknown device 'tpu7'" in _one_error_line(capsys.readouterr().err, prog)


def test_a_gpu_this_machine_lacks_is_one_line():
    with pytest.raises(ConfigError, match="this machine has 1 GPU"):
        resolve_train_config(TrainConfig(device="cuda:3"), cuda=True)


def _smallest_size(arch: str) -> int:
    """The smallest square input a real CPU forward of ``arch`` takes (the reference)."""
    from tinyfast.models import get_model
    model = get_model(arch, num_classes=4).eval()
    for size in range(8, 65):
        try:
            with torch.no_grad():
                model(torch.zeros(2, 3, size, size))
            return size
        except (RuntimeError, ValueError):
            continue
    raise AssertionError(f"{arch} takes no size up to 64")


@pytest.mark.parametrize("arch, sizes", [("vgg16", "16:64"), ("alexnet", "8:64"), ("vgg16_bn", "16:32:64"),
                                         ("ucsc_deep", "8:64")])
def test_prog_resize_below_the_models_smallest_input_is_one_line_before_any_work(arch, sizes, tmp_path, capsys):
    smallest = _smallest_size(arch)
    too_small = min(int(s) for s in sizes.split(":"))
    assert too_small < smallest
    # The data does not exist: the sizes are refused before anything else is looked at.
    argv = ["--arch", arch, "--prog-resize", sizes, "--data", str(tmp_path / "nothing"), "--device", "cpu",
            "--out-dir", str(tmp_path / "runs"), "--no-progress"]
    assert train_main(argv) == 2
    line = _one_error_line(capsys.readouterr().err, "train")
    assert f"--prog-resize {sizes}" in line and f"{too_small} px" in line and f"at least {smallest} px" in line, line
    assert not (tmp_path / "runs").exists()


def test_prog_resize_sizes_a_model_takes_still_resolve():
    cfg = resolve_train_config(TrainConfig(arch="vgg16", prog_resize="32:64", device="cpu"), cuda=False)
    assert cfg.prog_resize == "32:64"

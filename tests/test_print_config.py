"""``python -m tinyfast.train --print-config``: the resolved config, the model's parameter count,
its layer groups and each epoch's freeze state, without touching data."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from tinyfast.config import TrainConfig, config_from_args, explicit_fields
from tinyfast.models import count_parameters, get_model
from tinyfast.recipes import apply_recipe
from tinyfast.train import build_train_parser, main


def dry(argv, capsys) -> dict:
    """The JSON ``--print-config`` prints for ``argv`` (exit status 0)."""
    capsys.readouterr()
    assert main([*argv, "--print-config"]) == 0
    return json.loads(capsys.readouterr().out)


def test_print_config_shows_the_resolved_recipe_without_touching_data(tmp_path, monkeypatch, capsys):
    default = tmp_path / "default-data"
    monkeypatch.setenv("TINYFAST_DATA", str(default))
    out = dry(["--recipe", "uci-cnn2", "--epochs", "4", "--device", "cpu", "--out-dir", str(tmp_path / "runs")],
              capsys)
    argv = ["--recipe", "uci-cnn2", "--epochs", "4", "--device", "cpu", "--out-dir", str(tmp_path / "runs")]
    want = apply_recipe(config_from_args(TrainConfig, build_train_parser().parse_args(argv)),
                        explicit_fields(TrainConfig, argv))
    cfg = out["config"]
    assert set(cfg) == {f.name for f in dataclasses.fields(TrainConfig)}
    for k in ("recipe", "arch", "optimizer", "lr", "batch_size", "aug", "weight_decay"):
        assert cfg[k] == getattr(want, k), k
    assert cfg["epochs"] == 4 and cfg["device"] == "cpu" and cfg["warmup"] == 0.0
    # nothing was created: no default data, no run directory
    assert not default.exists() and not (tmp_path / "runs").exists()
    model = get_model("cnn2", num_classes=200)
    assert out["num_classes"] == 200
    assert out["parameters"] == count_parameters(model)
    assert sum(g["parameters"] for g in out["layer_groups"]) == out["parameters"]
    assert len(out["epochs"]) == 4
    assert all(e["trainable_groups"] == len(out["layer_groups"]) for e in out["epochs"])


def test_print_config_reads_the_class_count_from_the_manifest_only(tmp_path, capsys, packed_synthetic):
    data = packed_synthetic("pc4", classes=4, per_class=2, val_per_class=1, test_count=1)
    out = dry(["--arch", "resnet18", "--data", data, "--device", "cpu"], capsys)
    assert out["num_classes"] == 4
    assert out["parameters"] == count_parameters(get_model("resnet18", num_classes=4))
    assert dry(["--arch", "ucsc_shallow", "--classes", "100", "--device", "cpu"], capsys)["parameters"] == \
        count_parameters(get_model("ucsc_shallow", num_classes=100))
    # a directory that is no packed dataset is not an error for a dry run: 200 classes, said so
    out = dry(["--arch", "linear", "--data", str(tmp_path / "nowhere"), "--device", "cpu"], capsys)
    assert out["num_classes"] == 200 and "nowhere" in out["notes"][0]


def test_print_config_per_epoch_freeze_state(capsys):
    out = dry(["--arch", "resnet18", "--freeze", "--unfreeze-every", "2", "--epochs", "6", "--device", "cpu"],
              capsys)
    n = [e["trainable_groups"] for e in out["epochs"]]
    assert n == [1, 1, 2, 2, 3, 3]
    assert out["epochs"][0]["trainable"] == [out["layer_groups"][0]["name"]]
    assert out["epochs"][2]["trainable_parameters"] == sum(g["parameters"] for g in out["layer_groups"][:2])


def test_print_config_bad_input_is_one_line(capsys):
    assert main(["--arch", "resnet18", "--unfreeze-every", "2", "--print-config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--unfreeze-every needs --freeze" in err[0]

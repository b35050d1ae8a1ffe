"""Ghosh's recipes against what the report states (``../shared/SEEDS.md``), read through
``--print-config``: parameter counts, epochs, batch per phase, image size per phase, where the
augmentation is on, the schedule. The table below is the report's figures, typed from its text."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision

from tinyfast.augment import get_policy
from tinyfast.models import count_parameters
from tinyfast.train import main


def dry(argv, capsys) -> dict:
    capsys.readouterr()
    assert main([*argv, "--print-config", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)


def tv_count(name: str) -> int:
    with torch.device("meta"):
        return count_parameters(torchvision.models.get_model(name, num_classes=200))


# The report, per system: parameters ("17.9 Million", "11.8 Million"; the ResNets are torchvision's
# own), epochs, and per phase (epochs, image size, batch, augmentation on?).
NET1_PHASES = [(15, 32, 256, False), (30, 64, 64, False), (10, 16, 256, False), (30, 64, 64, False),
               (150, 64, 64, True)]   # "augmentation only in the last 150 epochs"
REPORT = {
    "ghosh-resnet34": dict(parameters=tv_count("resnet34"), epochs=100, phases=[(100, 64, 500, True)]),
    "ghosh-resnet50": dict(parameters=tv_count("resnet50"), epochs=50, phases=[(50, 64, 512, True)]),
    "ghosh-net1": dict(parameters=17.9e6, epochs=235, phases=NET1_PHASES),
    "ghosh-net2": dict(parameters=11.8e6, epochs=108, phases=[(108, 64, 128, True)], schedule="cyclic"),
}


@pytest.mark.parametrize("recipe", sorted(REPORT))
def test_ghosh_recipe_against_the_report(recipe, capsys):
    want = REPORT[recipe]
    out = dry(["--recipe", recipe], capsys)
    assert abs(out["parameters"] - want["parameters"]) <= 0.02 * want["parameters"], out["parameters"]
    assert out["config"]["epochs"] == want["epochs"] == len(out["epochs"])
    per_epoch = [(e["image_size"], e["batch_size"], not get_policy(e["aug"]).is_identity) for e in out["epochs"]]
    assert per_epoch == [(size, batch, aug) for n, size, batch, aug in want["phases"] for _ in range(n)]
    if "schedule" in want:
        assert out["config"]["schedule"] == want["schedule"]


def test_net1_phases_are_five_in_the_dry_run(capsys):
    out = dry(["--recipe", "ghosh-net1"], capsys)
    got = [(p["epochs"][1] - p["epochs"][0] + 1, p["image_size"], p["batch_size"]) for p in out["phases"]]
    assert got == [(n, size, batch) for n, size, batch, _ in NET1_PHASES]


def test_net2_is_a_resnet18_with_dropout(capsys):
    """"ResNet-18-like with dropout": ResNet-18's conv body, a dropout in front of a dense layer."""
    from tinyfast.models import get_model
    m = get_model("ghosh_net2", num_classes=200)
    convs = [x for x in m.modules() if isinstance(x, torch.nn.Conv2d)]
    assert len(convs) == 20   # ResNet-18: 17 3x3 convs (stem + 16), 3 shortcut 1x1 convs
    assert any(isinstance(x, torch.nn.Dropout) and x.p > 0 for x in m.modules())
    assert m(torch.zeros(2, 3, 64, 64)).shape == (2, 200)

"""Bastidas' (Stanford CS231n) recipes against what the report states (``../shared/SEEDS.md``),
read through ``--print-config`` and the models they build: filters "1x1, 2x1, 1x2, and 2x2" only,
"bias terms were added to each convolutional layer", BatchNorm after every conv, global average
pooling instead of the FC stack, "removing the last of the Inception modules", Adam with Keras
``l2(1e-4)``, LR halved every 20 epochs (VGG) or reduced "based on validation loss" (Inception),
35 + 50 epochs, the mean image subtracted and not divided by the std, "zoomed in up to 1.2x", and
the ensemble of the three VGG nets as one command. The table is typed from the report's text."""

from __future__ import annotations

import json
import re
import shlex

import numpy as np
import pytest
import torch
from torch import nn

from tinyfast.augment import PRESETS
from tinyfast.models import get_model
from tinyfast.recipes import RECIPES
from tinyfast.train import main

SMALL_FILTERS = {(1, 1), (2, 1), (1, 2), (2, 2)}
VGG = dict(optimizer="adam", lr=1e-3, schedule="step", step_size=20.0, gamma=0.5, epochs=85)
REPORT = {   # "LR 1e-3, halved every 20 epochs"; Inception "LR 5e-4 with reduce-on-plateau on val loss"
    "stanford-vgg-z": VGG, "stanford-vgg-f": VGG, "stanford-vgg-y": VGG,
    "stanford-inception": dict(optimizer="adam", lr=5e-4, schedule="plateau", plateau_metric="val_loss", epochs=85),
}
# Every recipe: Glorot uniform, Keras l2(1e-4) (torch's coupled 2e-4), the train mean image subtracted
# (no std), rotations up to 60 degrees, zoom in up to 1.2x, shifts both ways.
COMMON = dict(init="xavier", weight_decay=2e-4, normalize="mean-image-only", label_smoothing=0.0, warmup=0.0)


def dry(argv, capsys) -> dict:
    capsys.readouterr()
    assert main([*argv, "--print-config", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("recipe", sorted(REPORT))
def test_stanford_recipe_settings_against_the_report(recipe, capsys):
    cfg = dry(["--recipe", recipe], capsys)["config"]
    for k, v in {**REPORT[recipe], **COMMON}.items():
        assert cfg[k] == v, k
    aug = PRESETS[cfg["aug"]]
    assert aug.rotate == (-60.0, 60.0) and aug.zoom == (1.0, 1.2) and min(aug.translate) > 0


@pytest.mark.parametrize("recipe", sorted(REPORT))
def test_stanford_nets_are_small_filters_with_bias_bn_and_global_average_pooling(recipe):
    m = get_model(RECIPES[recipe].settings["arch"], num_classes=200)
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert convs and {tuple(c.kernel_size) for c in convs} <= SMALL_FILTERS
    assert all(c.bias is not None for c in convs)
    assert len([x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]) == len(convs)
    assert len([x for x in m.modules() if isinstance(x, nn.Linear)]) == 1       # no FC stack
    assert any(isinstance(x, nn.AdaptiveAvgPool2d) and x.output_size in (1, (1, 1)) for x in m.modules())
    assert m.eval()(torch.zeros(2, 3, 64, 64)).shape == (2, 200)


def test_inception_drops_the_last_module_group():
    """Inception-v3's module groups A (35 px), B (17 px), C (8 px) with a reduction before B and C:
    the report's net removes the last group (C and the reduction that feeds it)."""
    m = get_model("inception_small", num_classes=200)
    assert [type(b).__name__ for b in m.blocks] == ["_ModuleA", "_ModuleA", "_Reduction", "_ModuleB", "_ModuleB"]
    feats = m.blocks(m.stem(torch.zeros(1, 3, 64, 64)))
    assert feats.shape[-1] == 16   # 64 px: stem pool -> 32, one reduction -> 16


def test_plateau_on_val_loss_decays_when_the_loss_stops_falling(monkeypatch):
    """Top-1 keeps rising while the loss stops falling: --plateau-metric val_loss decays, val_top1 does not."""
    import tinyfast.trainer.validation as V
    from tinyfast.schedules import Schedule
    evals = iter([{"loss": 2.0, "top1": 0.1, "top5": 0.3}, {"loss": 2.5, "top1": 0.2, "top5": 0.4},
                  {"loss": 2.6, "top1": 0.3, "top5": 0.5}] * 2)
    monkeypatch.setattr(V, "evaluate", lambda *a, **k: next(evals))
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    lrs = {}
    for metric in ("val_loss", "val_top1"):
        s = Schedule(opt, "plateau", 1.0, 30, 10, patience=1, gamma=0.5)
        val = V.Validation(object(), num_classes=2, eval_every=1, epochs=3, autocast=None, memory_format=None,
                           progress=False, every=0, plateau_metric=metric)
        for e in range(3):
            val.run(None, e, s)
        lrs[metric] = s.lr_at(29)
    assert lrs == {"val_loss": 0.5, "val_top1": 1.0}


def test_mean_image_only_subtracts_and_does_not_divide(packed_synthetic):
    import tinyfast.loaders as L
    from tinyfast.data import open_packed
    data = packed_synthetic("stanford-norm", classes=2, per_class=4, val_per_class=2, test_count=2)
    for split in ("train", "val"):
        ld = L.build("gpu", data, split, 4, train=False, dtype=torch.float32, normalize="mean-image-only")
        x = torch.cat([b for b, _ in ld]).double()
        m = np.array(open_packed(data, "train").images, dtype=np.float64).mean(0) / 255
        want = np.array(open_packed(data, split).images, dtype=np.float64) / 255 - m
        assert (x - torch.from_numpy(want).permute(0, 3, 1, 2)).abs().max() < 1e-5
        assert ld.normalization_state()["std"] == [1.0, 1.0, 1.0]   # what evaluation repeats


def _ensemble_command() -> list[list[str]]:
    """The ensemble command of the recipes' notes, as argv lists (the shell loop unrolled)."""
    about = RECIPES["stanford-vgg-z"].about
    cmd = re.search(r"ensemble: `([^`]+)`", about).group(1)
    loop = re.fullmatch(r"for m in ([\w ]+); do (.+?); done && (.+)", cmd)
    members, train, evaluate = loop.group(1).split(), loop.group(2), loop.group(3)
    return [shlex.split(train.replace("$m", m)) for m in members] + [shlex.split(evaluate)]


def test_the_ensemble_is_one_command_over_the_three_vgg_recipes(packed_synthetic, tmp_path, monkeypatch, capsys):
    """The command trains each member by its recipe and scores the three best checkpoints together."""
    from tinyfast.evaluate import main as evaluate_main
    *trains, ev = _ensemble_command()
    assert [t[t.index("--recipe") + 1] for t in trains] == ["stanford-vgg-z", "stanford-vgg-f", "stanford-vgg-y"]
    assert all(t[:3] == ["python", "-m", "tinyfast.train"] for t in trains) and ev[:3] == ["python", "-m",
                                                                                             "tinyfast.evaluate"]
    data = packed_synthetic("stanford-ens", classes=2, per_class=4, val_per_class=2, test_count=2)
    monkeypatch.chdir(tmp_path)
    tiny = ["--data", data, "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--no-progress"]
    for t in trains:
        assert main(t[3:] + tiny) == 0
    capsys.readouterr()
    assert evaluate_main(ev[3:] + ["--device", "cpu", "--no-progress", "--output", "ens.json"]) == 0
    scores = json.loads((tmp_path / "ens.json").read_text())
    assert len(scores["models"]) == 3 and scores["ensemble"]["checkpoints"] == 3

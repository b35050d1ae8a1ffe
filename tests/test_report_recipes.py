"""Each report's recipes against what the report states (``../shared/SEEDS.md``), read through
``--print-config`` (the resolved config and the model's parameter count), so a later change
cannot drift a recipe away from its report silently. The references are torchvision's own
models or counts worked out by hand from the report's layer list."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torchvision

from tinyfast.models import count_parameters
from tinyfast.train import main


def dry(argv, capsys) -> dict:
    capsys.readouterr()
    assert main([*argv, "--print-config", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)


def tv_count(name: str, classes: int = 200) -> int:
    with torch.device("meta"):
        return count_parameters(torchvision.models.get_model(name, num_classes=classes))


# ----- Mkrtchyan (Skoltech) and Ghosh: "vanilla ResNet-34 and ResNet50", the ImageNet stem -------------
@pytest.mark.parametrize("recipe, tv", [("skoltech-resnet18", "resnet18"), ("skoltech-resnet34", "resnet34"),
                                        ("skoltech-densenet161", "densenet161"), ("ghosh-resnet34", "resnet34"),
                                        ("ghosh-resnet50", "resnet50")])
def test_resnet_and_densenet_recipes_train_the_imagenet_stem(recipe, tv, capsys):
    out = dry(["--recipe", recipe], capsys)
    assert out["config"]["stem"] == "imagenet" and out["model"]["kwargs"]["stem"] == "imagenet"
    assert out["parameters"] == tv_count(tv)  # torchvision's network itself, 200 classes


def test_preact_resnet34_imagenet_stem_is_a_7x7_stride_2_conv_and_max_pool(capsys):
    out = dry(["--recipe", "skoltech-preact-resnet34"], capsys)
    small = dry(["--arch", "preact_resnet34"], capsys)
    assert out["model"]["kwargs"]["stem"] == "imagenet"
    assert out["parameters"] - small["parameters"] == 64 * 3 * (7 * 7 - 3 * 3)
    from tinyfast.models import get_model
    m = get_model("preact_resnet34", num_classes=10, stem="imagenet")
    assert m(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
    feats = m.layer1(m.conv1(torch.zeros(1, 3, 64, 64)))
    assert feats.shape[-1] == 16  # 64 px / 2 (conv) / 2 (pool)


def test_fast_and_best_keep_the_64px_stem(capsys):
    for r in ("fast", "best"):
        out = dry(["--recipe", r], capsys)
        assert out["config"]["stem"] is None and "stem" not in out["model"]["kwargs"]
        assert out["parameters"] == tv_count("resnet18") - 64 * 3 * (49 - 9)


def test_stem_on_a_model_without_one_is_one_line(capsys):
    capsys.readouterr()
    assert main(["--arch", "cnn2", "--stem", "imagenet", "--print-config", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--stem" in err[0] and "cnn2" in err[0]


# ----- Mkrtchyan: "a training dataset of 200,000 observations": both sets, every epoch -------------------
SKOLTECH = ["skoltech-ting-m1", "skoltech-ting-m4", "skoltech-alexnet", "skoltech-resnet18", "skoltech-resnet34",
            "skoltech-preact-resnet34", "skoltech-densenet161"]


@pytest.mark.parametrize("recipe", SKOLTECH)
def test_skoltech_trains_both_augmentation_sets_each_epoch(recipe, capsys):
    from tinyfast.augment import PRESETS, Policy
    out = dry(["--recipe", recipe], capsys)
    cfg = out["config"]
    assert all(e["aug_sets"] == ["hflip-crop56", "skoltech2"] for e in out["epochs"])
    assert PRESETS["hflip-crop56"] == Policy(hflip=0.5, zoom=64 / 56)  # set 1: flip, centre crop 56 -> 64
    assert PRESETS["skoltech2"] == Policy(rotate=10.0, hflip=0.5, vflip=0.5, blur=1.0, blur_sigma=(0.1, 2.0))
    assert (cfg["optimizer"], cfg["lr"], cfg["batch_size"]) == ("radam", 1e-3, 256)
    assert cfg["epochs"] == (8 if "densenet" in recipe else 20)
    if "ting" in recipe:  # "from AlexNet on, LR / 10 every 7 epochs"
        assert cfg["schedule"] == "constant"
    else:
        assert (cfg["schedule"], cfg["step_size"], cfg["gamma"], cfg["warmup"]) == ("step", 7.0, 0.1, 0.0)


# ----- optimizer semantics: "weight_decay=0.0001 ... as L2 penalty" (torch's coupled form); Keras l2 -----
def _one_step(cfg, build) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a conv weight (gradient g): (ours, the reference's) new weights."""
    from tinyfast.trainer.step import build_optimizer
    torch.manual_seed(0)
    w0, g = torch.randn(8, 3, 3, 3), torch.randn(8, 3, 3, 3)
    m = torch.nn.Conv2d(3, 8, 3, bias=False)
    with torch.no_grad():
        m.weight.copy_(w0)
    m.weight.grad = g.clone()
    opt = build_optimizer(m, cfg)
    for _ in range(3):
        opt.step()
    ref_w = w0.clone().requires_grad_(True)
    ref = build([ref_w])
    for _ in range(3):
        ref_w.grad = None
        ref.zero_grad()
        loss_grad = g + 2 * cfg_l2(cfg) * ref_w.detach()  # d/dw of (loss + l2 * sum(w^2))
        ref_w.grad = loss_grad
        ref.step()
    return m.weight.detach(), ref_w.detach()


def cfg_l2(cfg) -> float:
    """The loss-term strength a recipe's weight decay stands for: torch's coupled decay d adds
    d * w to the gradient, i.e. a loss term (d / 2) * sum(w^2)."""
    return cfg.weight_decay / 2


def _cfg_of(recipe, capsys):
    from tinyfast.config import TrainConfig
    c = dry(["--recipe", recipe], capsys)["config"]
    return TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in c.items()})


def test_skoltech_radam_weight_decay_is_the_coupled_l2_penalty(capsys):
    cfg = _cfg_of("skoltech-resnet18", capsys)
    assert cfg.optimizer == "radam" and cfg.weight_decay == 1e-4
    cfg = dataclasses.replace(cfg, weight_decay=0.5)  # the semantics, at a strength a step shows
    ours, ref = _one_step(cfg, lambda ps: torch.optim.RAdam(ps, lr=1e-3, betas=(0.9, 0.999), eps=1e-8))
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("recipe", ["stanford-vgg-z", "stanford-vgg-f", "stanford-vgg-y", "stanford-inception"])
def test_stanford_keras_l2_1e4_is_a_gradient_of_2e4_w(recipe, capsys):
    """Keras ``kernel_regularizer=l2(1e-4)`` adds 1e-4 * sum(w^2) to the loss."""
    cfg = _cfg_of(recipe, capsys)
    assert cfg.optimizer == "adam" and cfg_l2(cfg) == pytest.approx(1e-4)
    cfg = dataclasses.replace(cfg, weight_decay=0.5)  # the semantics, at a strength a step shows
    ours, ref = _one_step(cfg, lambda ps: torch.optim.Adam(ps, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8))
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-7)

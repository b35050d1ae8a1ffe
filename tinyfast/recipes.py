"""Named training recipes: ``python -m tinyfast.train --recipe NAME``.

A recipe is data: a one-line description (what it reproduces, and the accuracy that report gives)
plus overrides of :class:`tinyfast.config.TrainConfig` fields. Flags given explicitly on the
command line win over the recipe; fields a recipe does not set keep their usual defaults. The run's
``config.json`` names the recipe (the ``recipe`` field).

Where a report does not state a setting, the recipe makes a choice and its line says so ("chosen"
below). Settings the trainer cannot express yet are named in the line too: two augmentation sets
alternated per epoch, per-phase batch sizes, a Keras head with a global max pool.

    python -m tinyfast.train --list-recipes
    python -m tinyfast.train --recipe uci-cnn2 --data data/tiny-imagenet --epochs 5
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import reduce
from typing import Any, Mapping

__all__ = ["Recipe", "RECIPES", "get_recipe", "list_recipes", "recipes_table", "apply_recipe",
           "prog_schedule"]


@dataclass(frozen=True)
class Recipe:
    """One row of :data:`RECIPES`: a description and the ``TrainConfig`` fields it sets."""

    about: str
    settings: Mapping[str, Any] = field(default_factory=dict)


def prog_schedule(*phases: tuple[int, int]) -> str:
    """A ``--prog-resize`` value for phases of unequal length, ``(size, epochs)`` each.

    ``--prog-resize`` takes equal-length phases, so each phase is repeated ``epochs / g`` times,
    ``g`` the greatest common divisor of the lengths: ``prog_schedule((32, 15), (64, 30))`` is
    ``"32:64:64"`` over 45 epochs. The run's ``--epochs`` must be the sum of the lengths.
    """
    g = reduce(math.gcd, (n for _, n in phases))
    return ":".join(str(size) for size, n in phases for _ in range(n // g))


# Shared settings, each used by several reports' recipes.
# Keras' Adam as those reports ran it: a fixed LR, no warm-up, no smoothing; L2 where stated.
_KERAS_ADAM = dict(optimizer="adam", lr=1e-3, schedule="constant", warmup=0.0, weight_decay=0.0,
                   label_smoothing=0.0)
# Mkrtchyan: RAdam(lr 1e-3, wd 1e-4), batch 256, 20 epochs, LR / 10 every 7 epochs; augmentation
# set 2 (rotate 10, both flips, 5x5 Gaussian blur sigma 0.1-2); set 1 is not alternated with it.
_SKOLTECH = dict(optimizer="radam", lr=1e-3, weight_decay=1e-4, batch_size=256, epochs=20,
                 schedule="step", step_size=7.0, gamma=0.1, warmup=0.0, label_smoothing=0.0,
                 aug="skoltech2")
# Bastidas: Adam, Glorot init, L2, LR 1e-3 halved every 20 epochs, rotate 60 / zoom 1.2 / shifts,
# the train split's mean image subtracted from every split.
_STANFORD_VGG = dict(_KERAS_ADAM, init="xavier", weight_decay=1e-4, schedule="step", step_size=20.0,
                     gamma=0.5, epochs=60, batch_size=128, aug="rotate60-zoom-shift",
                     normalize="mean-image")
# Kran: Keras ImageDataGenerator (rotate 8, shift 10%, shear, zoom 10%, both flips), Adam.
_UCSC = dict(_KERAS_ADAM, lr=0.01, aug="ucsc", batch_size=64, epochs=30)
# Time to accuracy on one GPU, after the fastest public CIFAR/ImageNet recipes (airbench, the
# DAWNBench ResNets): SGD Nesterov with one-cycle (warm-up a quarter of the run, so it scales with
# --epochs), label smoothing, bf16 channels-last, the split resident on the GPU, torch.compile.
_ONE_GPU = dict(arch="resnet18", loader="gpu", optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=5e-4,
                label_smoothing=0.1, schedule="onecycle", amp=True, channels_last=True, compile=True,
                aug="standard")
# Ghosh Network 1: 32 px for 15 epochs, 64 for 30, 16 for 10, 64 for 30, then 150 more at 64.
_GHOSH_NET1_SIZES = ((32, 15), (64, 30), (16, 10), (64, 180))

RECIPES: dict[str, Recipe] = {
    # --- UCI CS172B ------------------------------------------------------------------------------
    "uci-linear": Recipe(
        "UCI CS172B linear model, pixels -> classes (report: val 8.38%, train 44.9%); Adam 1e-3, "
        "batch 128, 10 epochs, no augmentation (chosen)",
        dict(_KERAS_ADAM, arch="linear", batch_size=128, epochs=10, aug="none")),
    "uci-cnn2": Recipe(
        "UCI CS172B 2-layer CNN, 3x3 convs, max-pool, dropout (report: val 14.9%, train 95.2%); "
        "Adam 1e-3, batch 128, 10 epochs, no augmentation (chosen)",
        dict(_KERAS_ADAM, arch="cnn2", batch_size=128, epochs=10, aug="none")),
    "uci-cnn-deep": Recipe(
        "UCI CS172B multi-layer CNN, max-pool, dropout (report: val 16.3%, train 96.1%); "
        "Adam 1e-3, batch 128, 10 epochs, dropout 0.25, no augmentation (chosen)",
        dict(_KERAS_ADAM, arch="cnn_deep", dropout=0.25, batch_size=128, epochs=10, aug="none")),
    "uci-resnet-cnn": Recipe(
        "UCI CS172B 'ResNet + CNN': one conv, 2 residual layers, a dense layer (report: curves "
        "only); Adam 1e-3, batch 128, 20 epochs, flip/shift/rotate (chosen)",
        dict(_KERAS_ADAM, arch="uci_resnet_cnn", batch_size=128, epochs=20, aug="uci")),
    "uci-vgg16": Recipe(
        "UCI CS172B VGG16 transfer, ImageNet weights, layer-wise fine-tuning (report: no figure); "
        "needs --pretrained imagenet or a local state_dict; Adam 1e-4, unfreeze every 2 epochs",
        dict(_KERAS_ADAM, arch="vgg16", lr=1e-4, batch_size=64, epochs=20, aug="uci",
             pretrained="imagenet", freeze=True, unfreeze_every=2)),
    # --- Bastidas, Stanford CS231n ---------------------------------------------------------------
    "stanford-vgg-z": Recipe(
        "Stanford CS231n VGG-Z, 1x1/2x2 filters, BN, GAP (ensemble member; report: no figure); "
        "Adam 1e-3 halved every 20 epochs, Xavier, L2 1e-4, train mean image subtracted",
        dict(_STANFORD_VGG, arch="vgg_small")),
    "stanford-vgg-f": Recipe(
        "Stanford CS231n VGG-F, the shallower small-filter net (ensemble member; report: no "
        "figure); as stanford-vgg-z with 8 conv layers",
        dict(_STANFORD_VGG, arch="vgg_small8")),
    "stanford-vgg-y": Recipe(
        "Stanford CS231n VGG-Y, the deeper small-filter net (ensemble member; report: no figure); "
        "as stanford-vgg-z with 14 conv layers",
        dict(_STANFORD_VGG, arch="vgg_small14")),
    "stanford-inception": Recipe(
        "Stanford CS231n Inception-V3-style small-filter net (report: no figure); Adam 5e-4, "
        "reduce-on-plateau (on val top-1 here, the report used val loss)",
        dict(_STANFORD_VGG, arch="inception_small", lr=5e-4, schedule="plateau", gamma=0.5, patience=3)),
    # --- Ghosh -----------------------------------------------------------------------------------
    "ghosh-resnet34": Recipe(
        "Ghosh ResNet-34, batch 500, 100 epochs (report: val 33.5%, train 99.8%); SGD one-cycle, "
        "He init, horizontal flips (chosen)",
        dict(arch="resnet34", batch_size=500, epochs=100, init="he", aug="hflip")),
    "ghosh-resnet50": Recipe(
        "Ghosh ResNet-50, batch 512, 50 epochs (report: val 26.2%, train 49%); SGD one-cycle, "
        "He init, horizontal flips (chosen)",
        dict(arch="resnet50", batch_size=512, epochs=50, init="he", aug="hflip")),
    "ghosh-net1": Recipe(
        "Ghosh Network 1, 17.9M params, 32/64/16/64 px for 15/30/10/30 epochs then 150 at 64 "
        "(report: val 59.5%); one batch 128 and augmentation throughout (chosen)",
        dict(arch="ghosh_net1", prog_resize=prog_schedule(*_GHOSH_NET1_SIZES),
             epochs=sum(n for _, n in _GHOSH_NET1_SIZES), batch_size=128, init="he", aug="standard")),
    "ghosh-net2": Recipe(
        "Ghosh Network 2, ResNet-18-like with dropout, 11.8M params, batch 128, cyclical LR, "
        "108 epochs (report: val 62.73%, train 68.11%); SGD, 4-epoch cycles (chosen)",
        dict(arch="ghosh_net2", batch_size=128, epochs=108, schedule="cyclic", cycle_epochs=4.0,
             lr=0.1, min_lr=0.01, init="he", aug="standard")),
    # --- Mkrtchyan, Skoltech -----------------------------------------------------------------------
    "skoltech-ting-m1": Recipe(
        "Skoltech Ting's M1 (report: 22-29.5%; Ting's paper 23.8%); RAdam 1e-3, wd 1e-4, batch 256, "
        "20 epochs, no LR decay, rotate 10 + both flips + blur k5 (set 2 only)",
        dict(_SKOLTECH, arch="ting_m1", schedule="constant")),
    "skoltech-ting-m4": Recipe(
        "Skoltech Ting's M4 (report: val 35.9%, peak at epoch 7); RAdam 1e-3, wd 1e-4, batch 256, "
        "20 epochs, no LR decay, rotate 10 + both flips + blur k5 (set 2 only)",
        dict(_SKOLTECH, arch="ting_m4", schedule="constant")),
    "skoltech-alexnet": Recipe(
        "Skoltech AlexNet + FC 1000 -> 200 (report: val < 20%); RAdam 1e-3, LR / 10 every 7 "
        "epochs, batch 256, 20 epochs",
        dict(_SKOLTECH, arch="alexnet")),
    "skoltech-resnet18": Recipe(
        "Skoltech ResNet-18 (report: val 45%); RAdam 1e-3, LR / 10 every 7 epochs, batch 256, "
        "20 epochs, rotate 10 + both flips + blur k5 (set 2 only)",
        dict(_SKOLTECH, arch="resnet18")),
    "skoltech-resnet34": Recipe(
        "Skoltech ResNet-34 (report: val 46.5% at epoch 12); RAdam 1e-3, LR / 10 every 7 epochs, "
        "batch 256, 20 epochs",
        dict(_SKOLTECH, arch="resnet34")),
    "skoltech-preact-resnet34": Recipe(
        "Skoltech pre-activation ResNet-34 (report: val 48%); RAdam 1e-3, LR / 10 every 7 epochs, "
        "batch 256, 20 epochs",
        dict(_SKOLTECH, arch="preact_resnet34")),
    "skoltech-densenet161": Recipe(
        "Skoltech DenseNet-161 (report: val 51% after 8 epochs); RAdam 1e-3, LR / 10 every 7 "
        "epochs, batch 256, 8 epochs",
        dict(_SKOLTECH, arch="densenet161", epochs=8)),
    # --- Kran, UCSC CSE 144 (a 100-class variant: the heads follow the data's class count) --------
    "ucsc-shallow": Recipe(
        "UCSC CSE 144 shallow CNN, 4.24M params at 100 classes (report: 0.9%, chance); Adam 0.01, "
        "Keras-style flips/shift/shear/zoom, batch 64, 30 epochs (chosen)",
        dict(_UCSC, arch="ucsc_shallow")),
    "ucsc-deep": Recipe(
        "UCSC CSE 144 deep CNN with BN + dropout, 11.26M params at 100 classes (report: 28.0%); "
        "Adam 0.01, Keras-style augmentation, batch 64, 30 epochs (chosen)",
        dict(_UCSC, arch="ucsc_deep")),
    "ucsc-mobilenet": Recipe(
        "UCSC CSE 144 MobileNetV2 transfer, head then whole model (report: 45.6% test); needs "
        "--pretrained imagenet or a local state_dict; Adam 1e-5, batch 20; average-pool head",
        dict(_UCSC, arch="mobilenet_v2", lr=1e-5, batch_size=20, epochs=20, pretrained="imagenet",
             freeze=True, unfreeze_every=5)),
    # --- time to accuracy on one GPU --------------------------------------------------------------
    "fast": Recipe(
        "ResNet-18 for >= 60% val top-1 in <= 60 s on one H200 (not yet measured): airbench-style "
        "batch 1024, 16 epochs one-cycle, smoothing 0.1, bf16 channels-last, 32->64 px, EMA, compile",
        dict(_ONE_GPU, batch_size=1024, epochs=16, lr=0.6, prog_resize="32:48:64:64", ema=0.99, eval_every=2)),
    "best": Recipe(
        "ResNet-18 for >= 65% val top-1 in <= 5 min on one H200 (not yet measured): as fast, "
        "batch 512, 60 epochs, 48->64 px, EMA 0.999 (the 100-epoch published recipe gives 65.0%)",
        dict(_ONE_GPU, batch_size=512, epochs=60, lr=0.4, prog_resize="48:64:64:64", ema=0.999, eval_every=5)),
}


def list_recipes() -> list[str]:
    """The recipe names, sorted."""
    return sorted(RECIPES)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``.

    Raises:
        ValueError: unknown name (the message lists the choices).
    """
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r} (choose one of: {', '.join(list_recipes())})") from None


def recipes_table() -> str:
    """What ``--list-recipes`` prints: one line per recipe, name and description."""
    width = max(map(len, RECIPES)) + 2
    return "\n".join(f"{name:<{width}}{RECIPES[name].about}" for name in list_recipes())


def apply_recipe(cfg, explicit: set[str] | frozenset = frozenset()):
    """``cfg`` (a ``TrainConfig``) with the settings of its ``cfg.recipe`` filled in, except the
    fields in ``explicit`` (given on the command line), which keep their values.

    A config without a recipe is returned unchanged.
    """
    if not cfg.recipe:
        return cfg
    settings = get_recipe(cfg.recipe).settings
    return dataclasses.replace(cfg, **{k: v for k, v in settings.items() if k not in explicit})

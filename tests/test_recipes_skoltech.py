"""Mkrtchyan, Skoltech: each ``skoltech-*`` recipe's dry run against what the report states
(``../shared/SEEDS.md``): RAdam(1e-3, wd 1e-4), batch 256, 20 epochs, LR / 10 every 7 epochs "from
AlexNet on", both augmentation sets per epoch (set 1 alone for the baseline), the lr 1e-4 runs,
torchvision's vanilla networks and AlexNet's "one more fully connected layer to transform the
output from 1000 to 200"; parameter counts by hand from Ting's layer lists or torchvision's own
models."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from tests.recipe_check import check_row
from tinyfast.models import count_parameters, get_model


def conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def fc(cin: int, cout: int) -> int:
    return cin * cout + cout


def tv(name: str, classes: int = 200) -> int:
    with torch.device("meta"):
        return count_parameters(torchvision.models.get_model(name, num_classes=classes))


RADAM = {"optimizer": "radam", "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 256, "epochs": 20, "warmup": 0.0,
         "label_smoothing": 0.0, "aug": "hflip-crop56+skoltech2"}
STEP = {"schedule": "step", "step_size": 7.0, "gamma": 0.1}  # "from AlexNet on, LR / 10 every 7 epochs"
CONST = {"schedule": "constant"}
M1 = conv(3, 16, 5) + conv(16, 16, 3) + conv(16, 32, 3) + fc(32 * 8 * 8, 256) + fc(256, 200)
M4 = (conv(3, 32, 5) + conv(32, 32, 5) + conv(32, 64, 3) + conv(64, 64, 3) + conv(64, 64, 3) + conv(64, 128, 3)
      + fc(128 * 8 * 8, 256) + fc(256, 200))
SKOLTECH = {
    "skoltech-ting-m1": {"parameters": M1, "config": {**RADAM, **CONST, "arch": "ting_m1"}},
    # "Set 1 alone: baseline 22%"
    "skoltech-ting-m1-set1": {"parameters": M1, "about": ["22%"],
                              "config": {**RADAM, **CONST, "arch": "ting_m1", "aug": "hflip-crop56"}},
    "skoltech-ting-m4": {"parameters": M4, "config": {**RADAM, **CONST, "arch": "ting_m4"}},
    # "lr 1e-4 was worse everywhere"
    "skoltech-ting-m1-lr1e-4": {"parameters": M1, "config": {**RADAM, **CONST, "arch": "ting_m1", "lr": 1e-4}},
    "skoltech-ting-m4-lr1e-4": {"parameters": M4, "config": {**RADAM, **CONST, "arch": "ting_m4", "lr": 1e-4}},
    "skoltech-resnet18-lr1e-4": {"parameters": tv("resnet18"),
                                 "config": {**RADAM, **STEP, "arch": "resnet18", "stem": "imagenet", "lr": 1e-4}},
    # torchvision's AlexNet (1000 outputs) + "one more fully connected layer ... from 1000 to 200"
    "skoltech-alexnet": {"parameters": tv("alexnet", 1000) + fc(1000, 200),
                         "config": {**RADAM, **STEP, "arch": "alexnet", "stem": "imagenet"}},
    "skoltech-resnet18": {"parameters": tv("resnet18"), "config": {**RADAM, **STEP, "arch": "resnet18",
                                                                    "stem": "imagenet"}},
    "skoltech-resnet34": {"parameters": tv("resnet34"), "config": {**RADAM, **STEP, "arch": "resnet34",
                                                                    "stem": "imagenet"}},
    # the 64 px model's count plus the 7x7 stem's extra weights (torchvision has no pre-activation net)
    "skoltech-preact-resnet34": {"parameters": count_parameters(get_model("preact_resnet34")) + 64 * 3 * (49 - 9),
                                 "config": {**RADAM, **STEP, "arch": "preact_resnet34", "stem": "imagenet"}},
    # "DenseNet-161: val 51% after 8 epochs"
    "skoltech-densenet161": {"parameters": tv("densenet161"),
                             "config": {**RADAM, **STEP, "arch": "densenet161", "stem": "imagenet", "epochs": 8}},
}


@pytest.mark.parametrize("recipe", list(SKOLTECH))
def test_skoltech_recipe_is_what_the_report_states(recipe, capsys):
    out = check_row(recipe, SKOLTECH[recipe], capsys)
    sets = SKOLTECH[recipe]["config"]["aug"].split("+")
    assert all(e["aug_sets"] == sets for e in out["epochs"])


def test_alexnet_maps_its_1000_outputs_to_the_classes_with_one_more_fc_layer():
    """torchvision's AlexNet as it is (the ImageNet stem) and its 1000 outputs, then one linear
    layer 1000 -> 200 and nothing between: against torchvision's model with the same weights."""
    torch.manual_seed(0)
    m = get_model("alexnet", num_classes=200, stem="imagenet").eval()
    ref = torchvision.models.alexnet(num_classes=1000).eval()
    ref.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("classifier.7.")})
    last = m.classifier[-1]
    assert isinstance(last, nn.Linear) and (last.in_features, last.out_features) == (1000, 200)
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(m(x), last(ref(x)))
    # the 64 px stem keeps the extra layer too
    small = get_model("alexnet", num_classes=10)
    assert [(x.in_features, x.out_features) for x in small.classifier if isinstance(x, nn.Linear)][-2:] == \
        [(4096, 1000), (1000, 10)]

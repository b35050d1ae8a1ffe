"""Layer groups by stage (one definition for every model) and what ``--freeze`` may freeze: a
tensor ``--pretrained`` left at its fresh init always trains, and so does the norm layer reading
a fresh layer (its ImageNet statistics describe another input)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torchvision
from torch import nn

from tinyfast.models import get_model, layer_groups, list_models, load_pretrained
from tinyfast.train import main


def ids(params) -> set[int]:
    return {id(p) for p in params}


def test_resnets_are_grouped_by_stage_alike():
    """ResNet-18 and ResNet-34: head, layer4, layer3, layer2, stem + layer1 (the 64 px stage)."""
    for arch in ("resnet18", "resnet34", "resnet50"):
        m = get_model(arch, num_classes=10)
        groups = layer_groups(m)
        assert len(groups) == 5, (arch, [g.name for g in groups])
        assert ids(groups[0]) == ids(m.fc.parameters())
        for g, layer in zip(groups[1:4], (m.layer4, m.layer3, m.layer2)):
            assert ids(g) == ids(layer.parameters()), arch
        assert ids(groups[4]) == ids([*m.conv1.parameters(), *m.bn1.parameters(), *m.layer1.parameters()])


def test_vgg16_groups_are_its_blocks_and_dense_layers():
    m = get_model("vgg16", num_classes=10)
    groups = layer_groups(m)
    assert [len(g) for g in groups] == [2, 4, 6, 6, 6, 4, 4]  # head, 2 fc, blocks 5..1 (weights + biases)
    assert ids(groups[1]) == ids([*m.classifier[0].parameters(), *m.classifier[3].parameters()])
    assert ids(groups[-1]) == ids([*m.features[0].parameters(), *m.features[2].parameters()])


@pytest.mark.parametrize("name", list_models())
def test_every_model_has_its_parameters_in_exactly_one_group(name):
    with torch.device("meta"):
        m = get_model(name, num_classes=10)
    groups = layer_groups(m)
    flat = [id(p) for g in groups for p in g]
    assert len(flat) == len(set(flat)) == len(list(m.parameters()))
    assert len(groups) <= 8, [g.name for g in groups]  # stages, not blocks


def dry(argv, capsys):
    capsys.readouterr()
    assert main([*argv, "--print-config", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)


def test_transfer_recipes_reach_what_their_text_says(capsys):
    """uci-vgg16 'layer-wise fine-tuning' unfreezes every group within its epochs; ucsc-mobilenet
    trains its head, then the whole model."""
    vgg = dry(["--recipe", "uci-vgg16"], capsys)
    n = [e["trainable_groups"] for e in vgg["epochs"]]
    assert n[0] == 1 and n[-1] == len(vgg["layer_groups"]) and n == sorted(n)
    mob = dry(["--recipe", "ucsc-mobilenet"], capsys)
    n = [e["trainable_groups"] for e in mob["epochs"]]
    assert set(n) == {1, len(mob["layer_groups"])} and n[0] == 1 and n[-1] == len(mob["layer_groups"])


def test_fresh_tensors_are_not_half_loaded(tmp_path):
    """Loading is per layer: AlexNet's 11x11 ImageNet conv does not fit the 5x5 stem, so neither
    its weight nor its bias loads; ResNet's bn1 reads the fresh 3x3 stem, so it keeps fresh
    statistics too."""
    torch.manual_seed(0)
    src = torchvision.models.alexnet()
    torch.save(src.state_dict(), tmp_path / "alexnet.pth")
    model = get_model("alexnet", num_classes=10)
    loaded, skipped = load_pretrained(model, str(tmp_path / "alexnet.pth"))
    assert "features.0.bias" in skipped and "features.0.weight" in skipped
    assert "features.3.weight" in loaded and "features.3.bias" in loaded

    src = torchvision.models.resnet18()
    src.bn1.running_var.fill_(3.0)
    torch.save(src.state_dict(), tmp_path / "r18.pth")
    model = get_model("resnet18", num_classes=10)
    loaded, _ = load_pretrained(model, str(tmp_path / "r18.pth"))
    assert not any(k.startswith(("conv1.", "bn1.")) for k in loaded)
    assert torch.equal(model.bn1.running_var, torch.ones(64))
    assert "layer1.0.bn1.running_var" in loaded


def test_freeze_never_freezes_a_fresh_tensor(tmp_path):
    """--pretrained + --freeze: the fresh stem and its BatchNorm train from the first epoch (and
    that BatchNorm runs in train mode); loaded layers outside the head stay frozen."""
    from tinyfast.trainer.build import Phases
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    model = get_model("resnet18", num_classes=10)
    loaded, _ = load_pretrained(model, str(tmp_path / "r18.pth"))
    cfg = SimpleNamespace(freeze=True, unfreeze_every=0, unfreeze_groups=1, prog_resize=None, epochs=3)
    fresh = {n for n, _ in model.named_parameters()} - set(loaded)
    ph = Phases(cfg, model, SimpleNamespace(height=64), lambda m: None, lambda: None, fresh=fresh)
    ph.apply_freeze(0)
    train = {n for n, p in model.named_parameters() if p.requires_grad}
    assert train == fresh | {"fc.weight", "fc.bias"}
    assert {"conv1.weight", "bn1.weight", "bn1.bias"} <= train
    assert model.bn1 not in ph.frozen_norms() and model.layer1[0].bn1 in ph.frozen_norms()


def test_dry_run_counts_fresh_tensors_as_trainable(tmp_path, capsys):
    torch.save(torchvision.models.vgg16().state_dict(), tmp_path / "vgg16.pth")
    out = dry(["--arch", "vgg16", "--pretrained", str(tmp_path / "vgg16.pth"), "--freeze", "--epochs", "1"], capsys)
    m = get_model("vgg16", num_classes=200)
    fresh = sum(p.numel() for mod in (m.classifier[0], m.classifier[3], m.classifier[6]) for p in mod.parameters())
    assert out["epochs"][0]["trainable_parameters"] == fresh

"""UCI CS172B (Dong, Pavini, Yuan, Yao, Hendi): each ``uci-*`` recipe's dry run against what the
report states (``../shared/SEEDS.md``): the parameter counts (the report's own where it gives one,
else worked out by hand from its layer list) and the settings, so no later change drifts a recipe
away from its report silently."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.recipe_check import check_row
from tinyfast.models import count_parameters, get_model


def conv(cin: int, cout: int, k: int = 3) -> int:
    return cin * cout * k * k + cout


def fc(cin: int, cout: int) -> int:
    return cin * cout + cout


ADAM = {"optimizer": "adam", "lr": 1e-3, "schedule": "constant", "warmup": 0.0, "label_smoothing": 0.0}
# "Apply data augmentation, dropout": the CNNs train with the report's flips, shifts and rotations.
UCI = {
    # pixels -> 200 classes
    "uci-linear": {"parameters": fc(3 * 64 * 64, 200), "config": {**ADAM, "arch": "linear", "aug": "none"}},
    # "3x3, stride 1, pad 1", max-pool, dropout; no pooling but the max-pool: 32x32x64 -> fc128 -> fc200
    "uci-cnn2": {"parameters": conv(3, 32) + conv(32, 64) + fc(32 * 32 * 64, 128) + fc(128, 200),
                 "config": {**ADAM, "arch": "cnn2", "aug": "uci"}},
    # "maxpool and dropouts", no batch norm, no global average pool: 3 x [conv, conv, pool, dropout],
    # 8x8x128 -> fc512 -> dropout -> fc200
    "uci-cnn-deep": {"parameters": conv(3, 32) + conv(32, 32) + conv(32, 64) + conv(64, 64) + conv(64, 128)
                     + conv(128, 128) + fc(8 * 8 * 128, 512) + fc(512, 200),
                     "config": {**ADAM, "arch": "uci_cnn_deep", "aug": "uci"}},
    # one conv layer (3x3 + BN), two residual layers (basic blocks, the second 64 -> 128 at stride 2
    # with a 1x1 projection), a dense layer
    "uci-resnet-cnn": {"parameters": (3 * 64 * 9 + 128) + (2 * 64 * 64 * 9 + 2 * 128)
                       + (64 * 128 * 9 + 128 * 128 * 9 + 64 * 128 + 3 * 256) + fc(128, 200),
                       "config": {**ADAM, "arch": "uci_resnet_cnn", "aug": "uci"}},
    # Keras' VGG16 at 64 px: "14.7M" conv parameters (checked below), ImageNet weights, layer-wise
    # fine-tuning; our 2x2-map classifier of 1024-wide layers
    "uci-vgg16": {"parameters": 14_714_688 + fc(2048, 1024) + fc(1024, 1024) + fc(1024, 200),
                  "config": {"arch": "vgg16", "optimizer": "adam", "pretrained": "imagenet", "freeze": True}},
}


@pytest.mark.parametrize("recipe", list(UCI))
def test_uci_recipe_is_what_the_report_states(recipe, capsys):
    check_row(recipe, UCI[recipe], capsys)


def test_vgg16_has_the_reports_14_7m_conv_parameters():
    m = get_model("vgg16", num_classes=200)
    assert round(count_parameters(m.features) / 1e6, 1) == 14.7
    assert count_parameters(m.features) == 14_714_688


def test_uci_cnns_have_no_batch_norm_and_no_global_pool():
    """Max-pools and dropout layers only: no BatchNorm, and at 64 px every pooling layer leaves a
    map of at least 8x8 (no global average pool)."""
    for arch, pools, drops in (("cnn2", 1, 2), ("uci_cnn_deep", 3, 4)):
        m = get_model(arch, num_classes=200).eval()
        assert not [x for x in m.modules() if isinstance(x, nn.modules.batchnorm._NormBase)], arch
        assert sum(isinstance(x, nn.MaxPool2d) for x in m.modules()) == pools, arch
        assert sum(isinstance(x, nn.Dropout) and x.p > 0 for x in m.modules()) == drops, arch
        sizes = []
        for x in m.modules():
            if isinstance(x, (nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d)):
                x.register_forward_hook(lambda mod, i, o: sizes.append(o.shape[-1]))
        m(torch.zeros(1, 3, 64, 64))
        assert min(sizes) >= 8, (arch, sizes)


def _plain(model: nn.Module, layers: list) -> nn.Sequential:
    """``layers`` (a plain stack: convs, ReLUs, max-pools, flatten, linears) carrying ``model``'s
    conv and linear weights in order."""
    ref = nn.Sequential(*layers)
    src = [x for x in model.modules() if isinstance(x, (nn.Conv2d, nn.Linear))]
    dst = [x for x in ref.modules() if isinstance(x, (nn.Conv2d, nn.Linear))]
    assert len(src) == len(dst)
    for a, b in zip(src, dst):
        b.load_state_dict(a.state_dict())
    return ref.eval()


def test_uci_cnns_at_64px_are_the_plain_layer_lists():
    """At 64 px the models compute exactly the report's layer list (eval mode: dropout off) with no
    average pool between the last max-pool and the first dense layer."""
    R = lambda: nn.ReLU()  # noqa: E731
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    m = get_model("cnn2", num_classes=200).eval()
    ref = _plain(m, [nn.Conv2d(3, 32, 3, padding=1), R(), nn.Conv2d(32, 64, 3, padding=1), R(), nn.MaxPool2d(2),
                     nn.Flatten(), nn.Linear(32 * 32 * 64, 128), R(), nn.Linear(128, 200)])
    torch.testing.assert_close(m(x), ref(x))
    m = get_model("uci_cnn_deep", num_classes=200).eval()
    layers, cin = [], 3
    for c in (32, 64, 128):
        layers += [nn.Conv2d(cin, c, 3, padding=1), R(), nn.Conv2d(c, c, 3, padding=1), R(), nn.MaxPool2d(2)]
        cin = c
    ref = _plain(m, [*layers, nn.Flatten(), nn.Linear(8 * 8 * 128, 512), R(), nn.Linear(512, 200)])
    torch.testing.assert_close(m(x), ref(x))
    for arch in ("cnn2", "uci_cnn_deep"):  # and, like the rest of the zoo, they take 32 px inputs
        assert get_model(arch, num_classes=5).eval()(torch.rand(1, 3, 32, 32)).shape == (1, 5)


@pytest.mark.parametrize("arch", ["cnn2", "uci_cnn_deep", "ting_m1", "ting_m4", "alexnet", "ucsc_shallow",
                                  "ucsc_deep"])
def test_adaptive_pools_before_the_dense_layers_are_the_identity_at_64px(arch):
    """What the model docstrings say: the adaptive pool that lets a flattening model take other
    input sizes changes nothing at 64 px (its input map is already its output size)."""
    m = get_model(arch, num_classes=10).eval()
    seen = []
    for x in m.modules():
        if isinstance(x, nn.AdaptiveAvgPool2d):
            x.register_forward_hook(lambda mod, i, o: seen.append((tuple(i[0].shape), tuple(o.shape))))
    m(torch.zeros(1, 3, 64, 64))
    assert seen and all(i == o for i, o in seen), seen

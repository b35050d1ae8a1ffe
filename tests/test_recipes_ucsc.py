"""Kran, UCSC CSE 144 (100 classes): each ``ucsc-*`` recipe's dry run against what the report
states (``../shared/SEEDS.md``): its parameter counts, "a batch size of 20" for the deep CNN and
MobileNetV2, MobileNetV2's "GlobalMaxPooling", "a 1024-neuron dense layer", "freeze all but the
last four layers" then "fine-tuning the whole model", the shallow CNN's sigmoid output, and the
Keras ``ImageDataGenerator`` settings read as tf.keras 2.x documents them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from tests.recipe_check import check_row, dry
from tinyfast.models import count_parameters, get_model


def fc(cin: int, cout: int) -> int:
    return cin * cout + cout


def tv_mobilenet_features() -> int:
    with torch.device("meta"):
        return count_parameters(torchvision.models.mobilenet_v2().features)


SCRATCH = {"optimizer": "adam", "lr": 0.01, "schedule": "constant", "aug": "ucsc", "label_smoothing": 0.0}
# Keras' l2 with no strength given is l2(0.01): a loss term 0.01 * sum(w^2), torch's coupled 0.02.
L2 = 0.02
SHALLOW = 3 * 32 * 9 + 32 + 32 * 64 * 9 + 64 + fc(64 * 16 * 16, 256) + fc(256, 100)
# Keras counts 11,260,228 (conv biases, BN's moving mean/var); torch keeps BN's statistics as buffers
# and the three convs that feed a BN have no bias: 11,260,228 - 2 * (32 + 32 + 64 + 512 + 128) - 128.
DEEP = 11_260_228 - 2 * (32 + 32 + 64 + 512 + 128) - (32 + 32 + 64)
MOBILE_HEAD = fc(1280, 1024) + fc(1024, 100)
UCSC = {
    "ucsc-shallow": {"classes": 100, "parameters": SHALLOW, "report_m": 4.24,
                     "config": {**SCRATCH, "arch": "ucsc_shallow", "weight_decay": 0.0}},
    "ucsc-shallow-l2": {"classes": 100, "parameters": SHALLOW, "report_m": 4.24, "about": ["chosen", "l2(0.01)"],
                        "config": {**SCRATCH, "arch": "ucsc_shallow", "weight_decay": L2}},
    "ucsc-deep": {"classes": 100, "parameters": DEEP, "report_m": 11.26,
                  "config": {**SCRATCH, "arch": "ucsc_deep", "batch_size": 20, "weight_decay": 0.0}},
    "ucsc-deep-l2": {"classes": 100, "parameters": DEEP, "report_m": 11.26, "about": ["chosen", "l2(0.01)"],
                     "config": {**SCRATCH, "arch": "ucsc_deep", "batch_size": 20, "weight_decay": L2}},
    "ucsc-mobilenet": {"classes": 100, "parameters": tv_mobilenet_features() + MOBILE_HEAD,
                       "config": {"optimizer": "adam", "lr": 1e-5, "batch_size": 20, "aug": "ucsc",
                                  "arch": "ucsc_mobilenet_v2", "pretrained": "imagenet", "freeze": True,
                                  "unfreeze_groups": 0, "weight_decay": 0.0}},
}


@pytest.mark.parametrize("recipe", list(UCSC))
def test_ucsc_recipe_is_what_the_report_states(recipe, capsys):
    check_row(recipe, UCSC[recipe], capsys)


def test_mobilenet_trains_the_head_then_the_whole_model(capsys):
    """"Freeze all but the last four layers" of the Keras model (out_relu, GlobalMaxPooling2D,
    Dense 1024, Dense 100: the new head), then "fine-tuning the whole model"."""
    out = dry(["--recipe", "ucsc-mobilenet", "--classes", "100"], capsys)
    every = out["parameters"]
    n = out["config"]["unfreeze_every"]
    assert 0 < n < out["config"]["epochs"]
    for e in out["epochs"]:
        assert e["batch_size"] == 20
        assert e["trainable_parameters"] == (MOBILE_HEAD if e["epoch"] <= n else every), e


def test_mobilenet_is_keras_mobilenetv2_with_a_global_max_pool_and_a_1024_dense_layer():
    """The ImageNet network as Keras builds it (stride-2 stem: 64 px ends as 2x2x1280), then
    GlobalMaxPooling2D -> Dense(1024, relu) -> Dense(100): against a plain reference carrying the
    same weights."""
    torch.manual_seed(0)
    m = get_model("ucsc_mobilenet_v2", num_classes=100).eval()
    ref = torchvision.models.mobilenet_v2().eval()
    ref.features.load_state_dict(m.features.state_dict())
    assert ref.features[0][0].stride == (2, 2) and m.features[0][0].stride == (2, 2)
    fc1, fc2 = (x for x in m.modules() if isinstance(x, nn.Linear))
    assert (fc1.in_features, fc1.out_features, fc2.out_features) == (1280, 1024, 100)
    x = torch.rand(2, 3, 64, 64)
    feats = ref.features(x)
    assert feats.shape == (2, 1280, 2, 2)
    want = fc2(F.relu(fc1(feats.amax(dim=(2, 3)))))
    torch.testing.assert_close(m(x), want)


def test_shallow_cnn_ends_in_a_sigmoid_as_keras_scores_it():
    """The "last layer that uses sigmoid activation" under Keras' categorical cross-entropy, which
    rescales the outputs to sum to 1 before the log: cross-entropy over the model's outputs is
    exactly that loss of the sigmoid outputs."""
    torch.manual_seed(0)
    m = get_model("ucsc_shallow", num_classes=100).eval()
    x, y = torch.rand(4, 3, 64, 64), torch.tensor([0, 5, 17, 99])
    out = m(x)
    z = m[:-1](x)  # the pre-activation outputs of the last dense layer
    p = torch.sigmoid(z)
    keras = -(p / p.sum(1, keepdim=True)).gather(1, y[:, None]).log().mean()
    torch.testing.assert_close(F.cross_entropy(out, y), keras)
    assert out.argmax(1).tolist() == p.argmax(1).tolist()


def test_keras_image_data_generator_as_tf_keras_2_reads_it():
    """rotation_range=8 (degrees), width/height_shift_range=0.1 (fractions of the size),
    shear_range=0.3 ("Shear angle in counter-clockwise direction in degrees" in tf.keras 2.x),
    zoom_range=0.1 (Keras draws z in [0.9, 1.1] and maps output to input by z: a magnification
    1/z, in and out), horizontal_flip and vertical_flip (each half the time)."""
    from tinyfast.augment import PRESETS, Policy
    p = PRESETS["ucsc"]
    assert p == Policy(rotate=8.0, translate=0.1, shear=0.3, zoom=(1 / 1.1, 1 / 0.9), hflip=0.5, vflip=0.5,
                       fill=p.fill)
    assert p.zoom[0] < 1.0 < p.zoom[1]
    from tinyfast.recipes import get_recipe
    for recipe in ("ucsc-shallow", "ucsc-deep", "ucsc-mobilenet"):  # the -l2 lines refer to these
        about = get_recipe(recipe).about
        assert "nearest" in about and "shear 0.3 degrees" in about, recipe  # what differs, said

"""The model zoo: every registered model trains in channels-last at 64 and 32 px, agrees with a
float64 contiguous reference, and the registry / init / pretrained loading behave."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from tinyfast.models import (count_parameters, get_model, head_module, init_weights, layer_groups,
                             list_models, load_pretrained, register)

# The big ones still run, on a single image (every BatchNorm still sees >= 4 values per channel).
LARGE = {"densenet161", "vgg16", "vgg16_bn", "resnet50", "alexnet", "preact_resnet34", "resnet34"}
NUM_CLASSES = 7


@pytest.fixture(autouse=True)
def _no_onednn():
    """Use ATen's own CPU convolutions here: oneDNN JIT-compiles a kernel for every new conv shape
    (DenseNet has ~120), which costs 4-5x the compute of these one-image passes (measured)."""
    prev = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = prev



@pytest.mark.parametrize("name", list_models())
def test_forward_backward_channels_last(name):
    torch.manual_seed(0)
    model = get_model(name, num_classes=NUM_CLASSES).to(memory_format=torch.channels_last)
    batch = 1 if name in LARGE else 2
    for size in (64, 32):
        x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
        out = model(x)
        assert out.shape == (batch, NUM_CLASSES)
        model.zero_grad(set_to_none=True)
        out.logsumexp(1).sum().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert sum(g.abs().sum().item() for g in grads) > 0


@pytest.mark.parametrize("name", [n for n in list_models() if n not in LARGE | {"mobilenet_v2"}])
def test_channels_last_matches_float64_reference(name):
    """Eval-mode logits in float32 channels-last equal a float64 contiguous run of the same model
    (the large models and MobileNet's float64 depthwise convolutions are too slow on CPU)."""
    torch.manual_seed(1)
    model = get_model(name, num_classes=NUM_CLASSES).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model.double()(x.double())
        out = model.float().to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    scale = ref.abs().max().item() + 1e-6
    assert (out.double() - ref).abs().max().item() <= 2e-3 * scale, name


def test_registry_rejects_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="already registered"):
        register("resnet18")(lambda num_classes=200: nn.Linear(1, num_classes))
    with pytest.raises(ValueError, match="reserved"):
        register("tv:mine")(lambda num_classes=200: nn.Linear(1, num_classes))
    with pytest.raises(KeyError, match="unknown model 'nope'.*resnet18"):
        get_model("nope")
    with pytest.raises(KeyError, match="unknown torchvision classifier"):
        get_model("tv:nope")


def test_resnet18_stem_and_parameter_count():
    """ResNet-18 = torchvision's with the 7x7 conv (9408 weights) swapped for a 3x3 one (1728)."""
    ours = get_model("resnet18", num_classes=200)
    ref = torchvision.models.resnet18(num_classes=200)
    assert count_parameters(ours) == count_parameters(ref) - 64 * 3 * 7 * 7 + 64 * 3 * 3 * 3
    assert ours.conv1.kernel_size == (3, 3) and ours.conv1.stride == (1, 1)
    assert isinstance(ours.maxpool, nn.Identity)
    # 64 px in -> layer4 sees 8x8 (total stride 8).
    feats = {}

    def hook(module, inputs, output):
        feats["l4"] = output.shape

    ours.layer4.register_forward_hook(hook)
    ours.eval()(torch.zeros(1, 3, 64, 64))
    assert feats["l4"][-2:] == (8, 8)


def test_torchvision_models_by_name():
    m = get_model("tv:resnet34", num_classes=5)
    assert m.conv1.stride == (1, 1) and isinstance(m.maxpool, nn.Identity)
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    m = get_model("tv:efficientnet_b0", num_classes=5)
    assert m.features[0][0].stride == (1, 1)
    assert m(torch.zeros(2, 3, 64, 64)).shape == (2, 5)


def test_dropout_goes_before_the_head():
    m = get_model("resnet18", num_classes=4, dropout=0.3)
    assert isinstance(m.fc, nn.Sequential) and isinstance(m.fc[0], nn.Dropout) and m.fc[0].p == 0.3
    assert head_module(m) is m.fc[1]


def test_init_schemes_give_the_expected_spread():
    m = init_weights(get_model("vgg_small", num_classes=10), "he")
    conv = [c for c in m.modules() if isinstance(c, nn.Conv2d) and c.out_channels == 512][-1]
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.05)
    m = init_weights(get_model("vgg_small", num_classes=10), "xavier")
    lin = head_module(m)
    bound = (6.0 / (lin.in_features + lin.out_features)) ** 0.5
    assert lin.weight.abs().max().item() <= bound and lin.weight.abs().max().item() > 0.9 * bound
    with pytest.raises(ValueError):
        init_weights(m, "orthogonal")


def test_load_pretrained_local_state_dict(tmp_path):
    """A torchvision ImageNet-shaped state_dict: all matching layers load; the 7x7 stem, the
    BatchNorm reading it and the 1000-class head stay fresh."""
    torch.manual_seed(0)
    src = torchvision.models.resnet18()  # 1000 classes, 7x7 stem
    path = tmp_path / "resnet18.pth"
    torch.save(src.state_dict(), path)
    model = get_model("resnet18", num_classes=10)
    fc_before = model.fc.weight.clone()
    loaded, skipped = load_pretrained(model, str(path))
    bn1 = {f"bn1.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    assert set(skipped) == {"conv1.weight", "fc.weight", "fc.bias"} | bn1
    assert torch.equal(model.layer3[1].conv2.weight, src.layer3[1].conv2.weight)
    assert torch.equal(model.layer1[0].bn1.running_var, src.layer1[0].bn1.running_var)
    assert torch.equal(model.fc.weight, fc_before)
    assert len(loaded) == len(src.state_dict()) - 8
    with pytest.raises(ValueError, match="no such"):
        load_pretrained(model, str(tmp_path / "missing.pth"))
    torch.save({"x": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="no tensor matches"):
        load_pretrained(model, str(tmp_path / "other.pth"))


def test_layer_groups_start_at_the_head():
    m = get_model("resnet18", num_classes=10)
    groups = layer_groups(m)
    assert [id(p) for p in groups[0]] == [id(m.fc.weight), id(m.fc.bias)]
    assert {id(p) for p in groups[1]} == {id(p) for p in m.layer4.parameters()}
    assert sum(len(g) for g in groups) == len(list(m.parameters()))


# The reports' own networks: the parameter counts they give (UCSC: 100 classes; its Keras count
# includes BatchNorm's running mean/var, 2 per channel, which PyTorch keeps as buffers).
def _keras_count(model: nn.Module) -> int:
    bn = sum(m.num_features for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)))
    return count_parameters(model) + 2 * bn


@pytest.mark.parametrize("name,classes,reported,rel", [
    ("ucsc_shallow", 100, 4.24e6, 0.002),
    ("ucsc_deep", 100, 11.26e6, 0.002),
    ("ghosh_net1", 200, 17.9e6, 0.02),
    ("ghosh_net2", 200, 11.8e6, 0.02),
])
def test_report_models_match_the_reported_parameter_counts(name, classes, reported, rel):
    model = get_model(name, num_classes=classes)
    assert _keras_count(model) == pytest.approx(reported, rel=rel)
    assert head_module(model).out_features == classes


def test_ucsc_models_follow_the_published_layer_shapes():
    """Shallow: two padded convs and two pools leave 64x16x16 for fc256; deep: four unpadded convs
    and two pools leave 128x13x13 for fc512."""
    shallow = get_model("ucsc_shallow", num_classes=100)
    assert [m.in_features for m in shallow.modules() if isinstance(m, nn.Linear)] == [64 * 16 * 16, 256]
    deep = get_model("ucsc_deep", num_classes=100).eval()
    lins = [m for m in deep.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lins] == [(128 * 13 * 13, 512), (512, 128), (128, 100)]
    pooled = {}
    pool = next(m for m in deep.modules() if isinstance(m, nn.AdaptiveAvgPool2d))
    pool.register_forward_hook(lambda mod, i, o: pooled.update(shape=tuple(i[0].shape)))
    deep(torch.zeros(1, 3, 64, 64))
    assert pooled["shape"] == (1, 128, 13, 13)  # the adaptive pool is the identity at 64 px


@pytest.mark.parametrize("name", ["ghosh_net1", "ghosh_net2", "uci_resnet_cnn"])
def test_report_models_take_16px_inputs(name):
    """Ghosh's Network 1 trains at 16 px in its progressive schedule."""
    model = get_model(name, num_classes=NUM_CLASSES).eval()
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, NUM_CLASSES)


def test_ghosh_net2_is_resnet18_with_dropout():
    net2 = get_model("ghosh_net2", num_classes=200, dropout=0.3)
    r18 = get_model("resnet18", num_classes=200)
    # ResNet-18's body; its 512 -> 200 classifier replaced by 512 -> 1024 -> 200
    assert count_parameters(net2) == count_parameters(r18) - (512 * 200 + 200) + (512 * 1024 + 1024) + (1024 * 200 + 200)
    drops = [m.p for m in net2.modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.3] * 4
    net2.train()
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    a = net2(x)
    torch.manual_seed(1)
    assert not torch.equal(a, net2(x))  # dropout is active in training mode


@pytest.mark.parametrize("name", list_models())
def test_dropout_sets_every_dropout_layer(name):
    """``--dropout p`` has one meaning for every model: the probability of each of its dropout
    layers (a model without one gets one before its classifier)."""
    with torch.device("meta"):
        model = get_model(name, num_classes=NUM_CLASSES, dropout=0.6)
    drops = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(p == 0.6 for p in drops), (name, drops)

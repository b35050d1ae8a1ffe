"""``--pretrained imagenet``: torchvision's ImageNet weights are read from the hub cache under
``TORCH_HOME`` (a file of random weights written there stands in for the real one), they arrive in
our model by name and shape, and a missing file is one error line naming where it belongs."""

from __future__ import annotations

import hashlib
import json
import math
import re

import pytest
import torch
import torchvision

from test_train import _cfg, _resolved, data  # noqa: F401  (the shared packed-data fixture)
from tinyfast.models import get_model, imagenet_weights_path, load_pretrained, pretrained, resolve_pretrained
from tinyfast.train import main
from tinyfast.trainer import Trainer

# The file names torchvision's hub cache uses (basenames of the weights' download URLs).
CACHE_NAMES = {"resnet18": "resnet18-f37072fd.pth", "resnet50": "resnet50-11ad3fa6.pth",
               "vgg16": "vgg16-397923af.pth", "alexnet": "alexnet-owt-7be5be79.pth",
               "densenet161": "densenet161-8d451a50.pth", "mobilenet_v2": "mobilenet_v2-7ebf99e0.pth"}
# What keeps its fresh init in each zoo model: the head, the layers our 64x64 adaptation reshaped
# (a 3x3 stem instead of 7x7, AlexNet's 5x5 first conv and 3x3-map classifier; a layer loads whole
# or not at all, so a reshaped conv keeps its fresh bias too) and the norm layers reading them.
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_bn = lambda name: {f"{name}.{k}" for k in _BN}
FRESH = {
    "resnet18": {"conv1.weight", "fc.weight", "fc.bias"} | _bn("bn1"),
    # AlexNet keeps ImageNet's 4096 -> 1000 layer (classifier.6, it loads); the 1000 -> classes
    # layer after it is the head.
    "alexnet": {"features.0.weight", "features.0.bias", "classifier.1.weight", "classifier.1.bias",
                "classifier.7.weight", "classifier.7.bias"},
    "densenet161": ({"features.conv0.weight", "classifier.weight", "classifier.bias"} | _bn("features.norm0")
                    | _bn("features.denseblock1.denselayer1.norm1")),  # reads the fresh stem's output
    "mobilenet_v2": {"classifier.1.weight", "classifier.1.bias"},
    "tv:resnet18": {"conv1.weight", "fc.weight", "fc.bias"} | _bn("bn1"),  # tv: models get the small stem too
}
# VGG-16's first two classifier matrices (25088x4096, 4096x4096: 470 MB) are left out of its test
# file; ours are 2048x1024 and 1024x1024, so they would stay fresh anyway.
LEFT_OUT = {"vgg16": {"classifier.0.weight", "classifier.3.weight"}}


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty TORCH_HOME: torchvision's hub cache is then ``<it>/hub/checkpoints/``."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    # The stand-ins of cache_imagenet_file hold random weights, so their sha256 is not the one
    # torchvision's file name carries: each counts as having that one; any other file is hashed.
    real = pretrained._sha256
    monkeypatch.setattr(pretrained, "_sha256", lambda path: _STAND_INS.get(real(path), real(path)))
    return home


_STAND_INS: dict[str, str] = {}  # sha256 of a stand-in -> the one its cache name says


def _old_densenet_key(k: str) -> str:
    """torchvision's DenseNet files still name ``denselayerN.norm1`` as ``norm.1`` (and so on)."""
    return re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k)


def cache_imagenet_file(torch_home, tv_name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Write a random-weights state_dict of torchvision's ImageNet ``tv_name`` under the name its
    hub cache expects, as torchvision's own file holds it; returns what was written."""
    with torch.device("meta"):  # shapes only: no memory, no init cost
        shapes = torchvision.models.get_model(tv_name).state_dict()
    g = torch.Generator().manual_seed(seed)

    def fake(k: str, v: torch.Tensor) -> torch.Tensor:
        if not v.dtype.is_floating_point:
            return torch.tensor(7)  # num_batches_tracked
        if k.endswith("running_var"):  # a variance, so a training step stays finite
            return 0.5 + torch.rand(v.shape, generator=g)
        return 0.05 * torch.randn(v.shape, generator=g)
    sd = {k: fake(k, v) for k, v in shapes.items() if k not in LEFT_OUT.get(tv_name, ())}
    if tv_name.startswith("densenet"):
        sd = {_old_densenet_key(k): v for k, v in sd.items()}
    path = torch_home / "hub" / "checkpoints" / CACHE_NAMES[tv_name]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    prefix = torch.hub.HASH_REGEX.search(path.name).group(1)
    _STAND_INS[hashlib.sha256(path.read_bytes()).hexdigest()] = prefix + "0" * (64 - len(prefix))
    return sd


def _random_state_dict(tv_name: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        shapes = torchvision.models.get_model(tv_name).state_dict()
    return {k: torch.randn(v.shape) if v.dtype.is_floating_point else torch.tensor(0) for k, v in shapes.items()}


@pytest.mark.parametrize("tv_name", ["resnet34", "resnet18"])
def test_a_cached_file_whose_sha256_is_not_its_names_is_refused_in_one_line(data, tmp_path, torch_home,
                                                                            capsys, tv_name):
    """resnet34's weights saved as resnet18's cache file, or random resnet18 weights there: the
    sha256 prefix the name carries (torchvision's convention) does not match, the run refuses."""
    path = torch_home / "hub" / "checkpoints" / CACHE_NAMES["resnet18"]
    path.parent.mkdir(parents=True)
    torch.save(_random_state_dict(tv_name), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    status = main(["--arch", "resnet18", "--pretrained", "imagenet", "--data", data, "--device", "cpu",
                   "--epochs", "1", "--out-dir", str(tmp_path / "runs"), "--name", "r", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert str(path) in err[0] and f"sha256 {digest[:8]}" in err[0] and "f37072fd" in err[0], err[0]
    assert "delete it" in err[0] and "download.pytorch.org" in err[0], err[0]
    assert not (tmp_path / "runs" / "r").exists()


def test_a_file_whose_name_carries_its_sha256_prefix_is_taken(tmp_path):
    """torch.hub's rule, on our own file: the name's hex part must start its sha256."""
    path = tmp_path / "w.pth"
    torch.save(_random_state_dict("resnet18"), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    good, bad = tmp_path / f"resnet18-{digest[:8]}.pth", tmp_path / f"resnet18-{'0' * 8}.pth"
    path.rename(good)
    pretrained.check_name_hash(str(good))
    bad.write_bytes(good.read_bytes())
    with pytest.raises(ValueError, match=f"{re.escape(str(bad))}: its sha256 {digest[:8]}"):
        pretrained.check_name_hash(str(bad))


def test_non_finite_starting_weights_name_the_file_and_tensor_not_the_lr(data, tmp_path, capsys):
    """NaN in a --pretrained file is the file's fault: one line naming it, not "lower --lr"."""
    sd = get_model("resnet18", num_classes=10).state_dict()
    sd["layer1.0.conv1.weight"][0, 0, 0, 0] = math.nan
    path = tmp_path / "nan.pth"
    torch.save(sd, path)
    status = main(["--arch", "resnet18", "--pretrained", str(path), "--data", data, "--device", "cpu",
                   "--epochs", "1", "--out-dir", str(tmp_path / "runs"), "--name", "r", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert f"{path}: layer1.0.conv1.weight holds non-finite values" in err[0] and "--lr" not in err[0], err[0]


def test_expected_file_follows_torch_home(torch_home):
    with pytest.raises(ValueError) as e:
        imagenet_weights_path("resnet50")
    want = torch_home / "hub" / "checkpoints" / CACHE_NAMES["resnet50"]
    assert str(want) in str(e.value) and "download.pytorch.org" in str(e.value)
    assert "\n" not in str(e.value)
    cache_imagenet_file(torch_home, "resnet50")
    assert imagenet_weights_path("resnet50") == str(want)
    assert imagenet_weights_path("tv:resnet50") == str(want)
    assert resolve_pretrained("imagenet", "resnet50") == str(want)
    assert resolve_pretrained("some/file.pth", "resnet50") == "some/file.pth"


@pytest.mark.parametrize("arch", sorted(FRESH))
def test_cached_imagenet_weights_arrive_in_the_model(torch_home, arch):
    tv_name = arch.removeprefix("tv:")
    src = cache_imagenet_file(torch_home, tv_name)
    if tv_name.startswith("densenet"):  # our model names the layers the current way
        src = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.", r"\1\2.", k): v for k, v in src.items()}
    torch.manual_seed(1)
    model = get_model(arch, num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loaded, _ = load_pretrained(model, resolve_pretrained("imagenet", arch))
    after = model.state_dict()
    assert set(after) - set(loaded) == FRESH[arch]
    for k, v in after.items():
        if k in FRESH[arch]:
            assert torch.equal(v, before[k]), k
        else:
            assert torch.equal(v, src[k].to(v.dtype)), k


def test_no_torchvision_counterpart_is_one_line(torch_home):
    with pytest.raises(ValueError, match=r"cnn2 has no torchvision counterpart .*resnet18"):
        imagenet_weights_path("cnn2")


@pytest.mark.parametrize("recipe, arch", [("uci-vgg16", "vgg16"), ("ucsc-mobilenet", "mobilenet_v2")])
def test_transfer_recipe_without_cached_file_is_one_line(data, tmp_path, torch_home, capsys, recipe, arch):
    status = main(["--recipe", recipe, "--data", data, "--device", "cpu", "--epochs", "1",
                   "--out-dir", str(tmp_path / "runs"), "--name", "r", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert str(torch_home / "hub" / "checkpoints" / CACHE_NAMES[arch]) in err[0]
    assert "Traceback" not in err[0] and not (tmp_path / "runs" / "r").exists()


def test_vgg16_recipe_starts_from_the_cached_weights(data, tmp_path, torch_home):
    from tinyfast.recipes import apply_recipe
    src = cache_imagenet_file(torch_home, "vgg16")
    cfg = apply_recipe(_cfg(data, tmp_path, recipe="uci-vgg16"), {"data", "epochs", "batch_size", "device"})
    tr = Trainer(_resolved(cfg))
    assert tr.cfg.pretrained == "imagenet" and tr.cfg.freeze
    conv = tr.model.features
    assert torch.equal(conv[0].weight, src["features.0.weight"])
    assert torch.equal(conv[28].weight, src["features.28.weight"])
    # The 4-class head and the 2x2-map classifier have other shapes: they keep their fresh init.
    assert tr.model.classifier[6].weight.shape == (4, 1024) and tr.model.classifier[0].weight.shape == (1024, 2048)


def test_mobilenet_recipe_trains_from_the_cached_weights(data, tmp_path, torch_home, capsys):
    src = cache_imagenet_file(torch_home, "mobilenet_v2")
    status = main(["--recipe", "ucsc-mobilenet", "--data", data, "--device", "cpu", "--epochs", "1",
                   "--stop-at-step", "1", "--out-dir", str(tmp_path / "runs"), "--name", "m", "--no-progress"])
    out = capsys.readouterr()
    assert status == 0, out.err
    path = torch_home / "hub" / "checkpoints" / CACHE_NAMES["mobilenet_v2"]
    line = [ln for ln in (out.out + out.err).splitlines() if ln.startswith("pretrained:")]
    # Keras' head (global max pool, dense 1024, dense classes) is new: both dense layers start fresh.
    assert len(line) == 1 and str(path) in line[0], line
    assert "classifier.0.weight" in line[0] and "classifier.2.weight" in line[0], line
    saved = json.loads((tmp_path / "runs" / "m" / "config.json").read_text())["config"]
    assert saved["recipe"] == "ucsc-mobilenet" and saved["pretrained"] == "imagenet"
    model = torch.load(tmp_path / "runs" / "m" / "last.pt", map_location="cpu", weights_only=False)["model"]
    # One step trains only the new head (--freeze): the frozen trunk is still exactly the file's.
    assert torch.equal(model["features.0.0.weight"], src["features.0.0.weight"])
    assert torch.equal(model["features.18.1.running_var"], src["features.18.1.running_var"])

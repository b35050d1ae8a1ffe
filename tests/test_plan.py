"""benchmarks/plan.py: FLOPs against counts made by hand or by module hooks, the recipe's epochs
against its schedule, rates from a bench report, and the command line's errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmarks import plan
from tinyfast.models import get_model


def _hook_forward_flops(model: nn.Module, size: int) -> tuple[float, float]:
    """(forward FLOPs per image, the first conv's) from module hooks: 2 per multiply-add of every
    Conv2d (Cout x Cin/groups x kh x kw per output pixel) and Linear; independent of torch's counter."""
    total, first = [0.0], []

    def conv(m, inp, out):
        f = 2.0 * out.shape[1] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1] * out.shape[2] * out.shape[3]
        total[0] += f
        if not first:
            first.append(f)

    def linear(m, inp, out):
        total[0] += 2.0 * m.in_features * m.out_features

    hooks = [m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return total[0], first[0] if first else 0.0


def test_linear_model_flops_by_hand():
    f = plan.image_flops("linear", 64, num_classes=200)
    assert f["eval"] == 2 * 64 * 64 * 3 * 200
    assert f["train"] == 2 * f["eval"]  # forward + weight gradient; no gradient for the input images


@pytest.mark.parametrize("size", [32, 64])
def test_resnet18_flops_match_module_hooks(size):
    fwd, first = _hook_forward_flops(get_model("resnet18", num_classes=200), size)
    f = plan.image_flops("resnet18", size, num_classes=200)
    assert f["eval"] == pytest.approx(fwd, rel=1e-9)
    # backward: weight gradients (= forward) and input gradients (= forward) except the first layer's
    assert f["train"] == pytest.approx(3 * fwd - first, rel=1e-9)


def test_fast_recipe_cost_follows_its_schedule():
    c = plan.recipe_cost("fast", train_images=1000, val_images=100)
    sizes = [32] * 4 + [48] * 4 + [64] * 8  # prog_resize 32:48:64:64 over 16 epochs
    per = {s: plan.image_flops("resnet18", s)["train"] for s in (32, 48, 64)}
    assert c["epochs"] == 16 and [p["image_size"] for p in c["phases"]] == [32, 48, 64, 64]
    assert c["train_flops"] == pytest.approx(1000 * sum(per[s] for s in sizes))
    assert c["evaluations"] == 8  # eval_every 2
    assert c["eval_flops"] == pytest.approx(8 * 100 * plan.image_flops("resnet18", 64)["eval"])
    assert c["images"] == 16 * 1000 + 8 * 100 and c["steps"] == 0  # 1,000 images: no full 1,024 batch
    assert c["compile"] and c["amp"]


def test_epochs_override_and_steps():
    c = plan.recipe_cost("uci-linear", epochs=3, train_images=1000, val_images=10)
    assert c["epochs"] == 3 and c["steps"] == 3 * (1000 // 128) and not c["amp"] and not c["compile"]


def test_seconds_at_takes_the_slowest_bound():
    c = {"flops": 1e15, "images": 10_000, "steps": 100}
    assert plan.seconds_at(c, 1e14) == 10.0
    assert plan.seconds_at(c, 1e14, loader_images_per_s=100.0) == 100.0
    assert plan.seconds_at(c, 1e14, step_seconds=0.5) == 50.0


def _bench(tmp_path: Path, rows, loaders=()) -> Path:
    p = tmp_path / "bench.json"
    p.write_text(json.dumps({"environment": {"gpu": "Test GPU"}, "train": rows, "loaders": list(loaders)}))
    return p


def test_bench_rates_are_measured_images_per_s_times_flops(tmp_path):
    p = _bench(tmp_path, [{"arch": "resnet18", "feed": "synthetic", "channels_last_amp": True, "images_per_sec": 9e4},
                          {"arch": "resnet18", "feed": "gpu", "channels_last_amp": True, "images_per_sec": 2e4},
                          {"arch": "resnet18", "feed": "gpu", "channels_last_amp": False, "images_per_sec": 5e3},
                          {"arch": "resnet18", "feed": "torch", "channels_last_amp": True, "images_per_sec": 1e3}],
               [{"loader": "gpu", "images_per_sec": 3e5}, {"loader": "torch", "images_per_sec": 4e3}])
    r = plan.bench_rates(p)
    per = plan.image_flops("resnet18", 64)["train"]
    assert r["device"] == "Test GPU" and r["loader_images_per_s"] == 3e5
    assert r["archs"][("resnet18", True)]["flop_per_s"] == pytest.approx(2e4 * per)
    assert r["archs"][("resnet18", False)]["images_per_s"] == 5e3


def test_plan_with_bench_times_the_recipe_at_the_measured_rate(tmp_path):
    p = _bench(tmp_path, [{"arch": "resnet18", "feed": "gpu", "channels_last_amp": True, "images_per_sec": 2e4}])
    args = plan.parse_args(["--recipe", "fast", "--bench", str(p), "--train-images", "2048", "--val-images", "100",
                            "--step-ms", "0", "--compile-seconds", "10", "--pack-seconds", "5", "--seeds", "2"])
    res = plan.build_plan(args)
    (c,) = res["recipes"]
    (row,) = c["time_to_accuracy_command"]["rows"]
    rate = 2e4 * plan.image_flops("resnet18", 64)["train"]
    assert row["run_seconds"] == pytest.approx(c["flops"] / rate)
    assert row["command_seconds"] == pytest.approx(5 + 2 * (c["flops"] / rate + 10))
    assert res["rate"].startswith("measured") and c["target_seconds"] == 60.0


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.json", "missing.json"),
    (lambda d: (d / "bad.json").write_text("{") and d / "bad.json", "not valid JSON"),
    (lambda d: (d / "x.json").write_text("[]") and d / "x.json", "not a tinyfast-bench report"),
    (lambda d: _bench(d, [{"arch": "resnet18", "feed": "torch", "images_per_sec": 1.0}]), "no training row"),
])
def test_bad_bench_is_one_line(tmp_path, capsys, make, message):
    assert plan.main(["--recipe", "fast", "--bench", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m benchmarks.plan: error: --bench") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["--recipe", "nope"], "--recipe nope: no such recipe"),
    (["--tflops", "0"], "must be > 0"),
    (["--tflops", "a,b"], "not a number"),
    (["--compile-seconds", "-1"], "--compile-seconds: must be >= 0"),
    (["--seeds", "1.5"], "not a number"),
])
def test_bad_values_are_one_line(capsys, argv, message):
    assert plan.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_out_writes_json_and_markdown(tmp_path, capsys):
    out = tmp_path / "o"
    assert plan.main(["--recipe", "uci-linear", "--out", str(out), "--tflops", "100"]) == 0
    (j,) = out.glob("plan-*.json")
    res = json.loads(j.read_text())
    (c,) = res["recipes"]
    assert c["recipe"] == "uci-linear" and c["target_seconds"] is None and res["rate"].startswith("assumed")
    # fp32 recipe: half the assumed rate
    assert c["time_to_accuracy_command"]["rows"][0]["flop_per_s"] == 50e12
    md = j.with_suffix(".md").read_text()
    assert "## --recipe uci-linear" in md and "100 TFLOP/s assumed" in md
    assert not list(out.glob("*.tmp*"))


def test_zoo_epochs_that_fit(tmp_path):
    args = plan.parse_args(["--recipe", "uci-linear", "--zoo", "--tflops", "100", "--zoo-seconds", "400",
                            "--row-seconds", "10", "--train-images", "2000", "--val-images", "100"])
    z = plan.build_plan(args)["zoo"]
    from benchmarks.zoo import ZOO
    assert [r["arch"] for r in z["rows"]] == list(ZOO)
    per = sum(r["epoch_seconds"]["100 TFLOP/s assumed"] for r in z["rows"])
    overhead = sum(r["overhead_seconds"] for r in z["rows"])
    assert overhead == 10 * len(ZOO)  # no zoo recipe compiles
    assert z["fits"]["100 TFLOP/s assumed"]["epochs"] == int((400 - overhead) // per)


def test_an_architecture_without_its_own_row_says_whose_rate_it_takes(tmp_path):
    p = _bench(tmp_path, [{"arch": "resnet18", "feed": "gpu", "channels_last_amp": True, "images_per_sec": 2e4},
                          {"arch": "cnn2", "feed": "gpu", "channels_last_amp": False, "images_per_sec": 1e5}])
    b = plan.bench_rates(p)
    r18 = 2e4 * plan.image_flops("resnet18", 64)["train"]
    cnn2 = 1e5 * plan.image_flops("cnn2", 64)["train"]
    assert plan.measured_rate(b, "resnet18", True) == (pytest.approx(r18), "resnet18 AMP")
    assert plan.measured_rate(b, "resnet18", False) == (pytest.approx(r18 / 2), "resnet18 AMP x0.5")
    assert plan.measured_rate(b, "cnn2", True) == (pytest.approx(cnn2 * 2), "cnn2 fp32 x2")
    assert plan.measured_rate(b, "vgg16", False) == (pytest.approx(cnn2), "cnn2 fp32 (no vgg16 row)")
    assert plan.measured_rate(b, "vgg16", True) == (pytest.approx(r18), "resnet18 AMP (no vgg16 row)")
    z = plan.build_plan(plan.parse_args(["--recipe", "uci-linear", "--zoo", "--bench", str(p),
                                         "--train-images", "2000", "--val-images", "100"]))["zoo"]
    rows = {r["arch"]: r for r in z["rows"]}
    assert rows["resnet18"]["rate_from"] == "resnet18 AMP x0.5"  # skoltech-resnet18 trains in fp32
    assert rows["linear"]["rate_from"] == "cnn2 fp32 (no linear row)"

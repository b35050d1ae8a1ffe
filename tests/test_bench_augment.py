"""benchmarks/bench_augment.py runs in-process in its quick CPU mode and writes a sound report."""
import json

import pytest

ops = pytest.importorskip("tinyfast.ops")
pytestmark = pytest.mark.skipif(not ops.is_built(), reason="tinyfast._C is not built")


def test_quick_cpu_report(tmp_path, capsys):
    from benchmarks import bench_augment

    out = tmp_path / "augment.json"
    report = bench_augment.main(["--quick", "--device", "cpu", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "tinyfast op" in printed and "images/s" in printed

    saved = json.loads(out.read_text())
    assert saved["results"] == json.loads(json.dumps(report["results"]))
    assert out.with_suffix(".md").exists()
    env = saved["env"]
    for key in ("torch", "torch_cuda", "cpu", "git", "date", "python"):
        assert key in env
    assert "commit" in env["git"]
    assert saved["config"]["devices"] == ["cpu"]

    rows = {(r["device"], r["impl"], r["mode"]): r for r in saved["results"]}
    for key in [("cpu", "tinyfast op", "batched kernel"), ("cpu", "tinyfast op", "per sample"),
                ("cpu", "copy (ceiling)", "same bytes"), ("cpu", "torchvision v2", "per sample")]:
        r = rows[key]
        assert r["images_per_s"] > 0 and r["gb_per_s"] > 0
        # GB/s is images/s times the bytes an image moves: 64*64*3 uint8 in + fp16 out.
        assert r["gb_per_s"] == pytest.approx(r["images_per_s"] * 64 * 64 * 3 * 3 / 1e9)
    assert saved["summary"]["cpu_per_sample_speedup_vs_v2"] > 0


def test_v2_pipeline_mirrors_policy():
    from benchmarks.bench_augment import v2_pipeline
    from tinyfast.augment import PRESETS

    import torch

    names = [type(t).__name__ for t in v2_pipeline(PRESETS["standard"], torch.float16).transforms]
    assert names[:3] == ["RandomAffine", "RandomHorizontalFlip", "ColorJitter"]
    assert names[-2:] == ["Normalize", "ToDtype"]

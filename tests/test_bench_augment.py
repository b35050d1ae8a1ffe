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


def _row(impl, mode, batch, gbs):
    return {"device": "cuda", "impl": impl, "mode": mode, "batch": batch, "gb_per_s": gbs}


def test_summary_headline_ignores_host_bound_batches_and_uses_the_best_copy():
    from benchmarks.bench_augment import summarise

    rows = [_row("tinyfast op", "batched kernel", 256, 900.0),          # host-bound: not a headline
            _row("copy (ceiling)", "same bytes", 256, 1000.0),
            _row("tinyfast op", "batched kernel", 1024, 500.0),
            _row("tinyfast op", "batched kernel, graph replay", 1024, 700.0),
            _row("copy (ceiling)", "same bytes", 1024, 1500.0),
            _row("tinyfast op", "kernel + fused gather", 4096, 600.0),
            _row("copy (ceiling)", "same bytes", 4096, 1800.0),
            _row("copy (ceiling)", "1024 MiB", None, 2000.0)]
    s = summarise(rows)
    assert s["cuda_op_fraction_of_copy"] == pytest.approx(700.0 / 2000.0)
    assert s["cuda_op_fraction_of_copy_from"] == "batch 1024, batched kernel, graph replay"
    assert s["cuda_copy_ceiling_gb_per_s"] == 2000.0
    assert s["cuda_b1024_batch_graph_fraction_of_copy"] == pytest.approx(700.0 / 1500.0)
    assert s["cuda_b4096_gather_fraction_of_copy"] == pytest.approx(600.0 / 1800.0)
    assert s["cuda_b256_batch_fraction_of_copy"] == pytest.approx(0.9)


@pytest.mark.cuda
def test_cuda_report_has_graph_rows_and_headline(tmp_path):
    from benchmarks import bench_augment

    report = bench_augment.main(["--device", "cuda", "--gpu-batches", "1024", "--repeat", "2",
                                 "--no-torchvision", "--out", str(tmp_path / "a.json")])
    modes = {r["mode"] for r in report["results"] if r["impl"] == "tinyfast op"}
    assert {"batched kernel", "batched kernel, graph replay", "kernel + fused gather",
            "kernel + fused gather, graph replay"} <= modes
    s = report["summary"]
    assert 0 < s["cuda_op_fraction_of_copy"] < 1.5 and "batch 1024" in s["cuda_op_fraction_of_copy_from"]

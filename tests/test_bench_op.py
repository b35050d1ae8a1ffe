"""benchmarks/op.py (the fused op against the copy ceiling) runs in-process in its quick CPU mode and writes a sound report."""
import json

import pytest

ops = pytest.importorskip("tinyfast.ops")
pytestmark = pytest.mark.skipif(not ops.is_built(), reason="tinyfast._C is not built")


def test_quick_cpu_report(tmp_path, capsys):
    from benchmarks import op as bench_op

    out = tmp_path / "augment.json"
    report = bench_op.main(["--quick", "--device", "cpu", "--out", str(out)])
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
    from benchmarks.op import v2_pipeline
    from tinyfast.augment import PRESETS

    import torch

    names = [type(t).__name__ for t in v2_pipeline(PRESETS["standard"], torch.float16).transforms]
    assert names[:3] == ["RandomAffine", "RandomHorizontalFlip", "ColorJitter"]
    assert names[-2:] == ["Normalize", "ToDtype"]


def _row(impl, mode, batch, gbs):
    return {"device": "cuda", "impl": impl, "mode": mode, "batch": batch, "gb_per_s": gbs}


def test_summary_headline_is_an_eager_row_at_a_large_batch_over_the_large_copy():
    """The headline is the best eager (no graph replay) row at batch >= 4096 over the best copy:
    small batches are host-bound and graph replay is not how a training step calls the op."""
    from benchmarks.op import HEADLINE_MIN_BATCH, summarise

    assert HEADLINE_MIN_BATCH["cuda"] == 4096
    rows = [_row("tinyfast op", "batched kernel", 256, 900.0),          # host-bound: not a headline
            _row("copy (ceiling)", "same bytes", 256, 1000.0),
            _row("tinyfast op", "batched kernel", 1024, 500.0),
            _row("tinyfast op", "batched kernel, graph replay", 1024, 700.0),
            _row("copy (ceiling)", "same bytes", 1024, 1500.0),
            _row("tinyfast op", "kernel + fused gather", 4096, 600.0),
            _row("tinyfast op", "kernel + fused gather, graph replay", 4096, 1900.0),   # replay: no
            _row("copy (ceiling)", "same bytes", 4096, 1800.0),
            _row("copy (ceiling)", "1024 MiB", None, 2000.0)]
    s = summarise(rows)
    assert s["op_fraction_of_copy"] == pytest.approx(600.0 / 2000.0)
    assert s["op_device"] == "cuda"
    assert s["op_fraction_of_copy_from"] == "cuda batch 4096, kernel + fused gather"
    assert s["copy_ceiling_gb_per_s"] == 2000.0
    assert "4096" in s["op_headline_rule"] and "graph" in s["op_headline_rule"]
    assert s["cuda_b1024_batch_graph_fraction_of_copy"] == pytest.approx(700.0 / 1500.0)
    assert s["cuda_b4096_gather_fraction_of_copy"] == pytest.approx(600.0 / 1800.0)
    assert s["cuda_b256_batch_fraction_of_copy"] == pytest.approx(0.9)


def test_without_a_large_cuda_batch_the_headline_is_the_cpu_one():
    from benchmarks.op import summarise

    rows = [_row("tinyfast op", "batched kernel", 1024, 500.0), _row("copy (ceiling)", "same bytes", 1024, 900.0),
            {"device": "cpu", "impl": "tinyfast op", "mode": "batched kernel", "batch": 64, "gb_per_s": 2.0},
            {"device": "cpu", "impl": "tinyfast op", "mode": "per sample", "batch": 1, "gb_per_s": 3.0},
            {"device": "cpu", "impl": "copy (ceiling)", "mode": "same bytes", "batch": 64, "gb_per_s": 8.0}]
    s = summarise(rows)
    assert s["op_device"] == "cpu" and s["op_fraction_of_copy"] == pytest.approx(0.25)


@pytest.mark.cuda
def test_cuda_report_has_graph_rows_and_headline(tmp_path):
    from benchmarks import op as bench_op

    report = bench_op.main(["--device", "cuda", "--gpu-batches", "4096", "--repeat", "2",
                                 "--no-torchvision", "--out", str(tmp_path / "a.json")])
    modes = {r["mode"] for r in report["results"] if r["impl"] == "tinyfast op"}
    assert {"batched kernel", "batched kernel, graph replay", "kernel + fused gather",
            "kernel + fused gather, graph replay"} <= modes
    s = report["summary"]
    assert s["op_device"] == "cuda" and 0 < s["op_fraction_of_copy"] < 1.5
    assert s["op_fraction_of_copy_from"].startswith("cuda batch 4096") and "graph" not in s["op_fraction_of_copy_from"]

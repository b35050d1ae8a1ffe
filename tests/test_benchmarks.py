"""The benchmark suite's reduced CPU mode: it runs end to end and its report has the promised shape.

Speed goals live in the benchmarks themselves; here only the structure and the internal
consistency of the report (ratios derived from the rows they cite) are checked.
"""
import json

import pytest

from tinyfast import loaders, ops

pytestmark = pytest.mark.skipif(not ops.is_built(), reason="tinyfast._C is not built")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from benchmarks.__main__ import main

    out = tmp_path_factory.mktemp("bench")
    return main(["--quick", "--device", "cpu", "--out", str(out)]), out


def test_report_files_and_environment(report):
    rep, out = report
    paths = rep["paths"]
    for kind in ("json", "md", "png"):
        assert kind in paths and (out / paths[kind].split("/")[-1]).exists()
    on_disk = json.loads((out / paths["json"].split("/")[-1]).read_text())
    assert on_disk["device_name"] == rep["device_name"]
    env = on_disk["environment"]
    for key in ("torch", "torch_cuda", "cpu", "cpu_count", "git", "dali_version", "ffcv_version"):
        assert key in env
    assert on_disk["ceilings"]["copy_gb_per_s"] > 0 and on_disk["ceilings"]["matmul_tflop_per_s"] > 0
    md = (out / paths["md"].split("/")[-1]).read_text()
    for heading in ("## Loaders", "## Fused op", "## Training", "## Time to accuracy"):
        assert heading in md
    assert (out / paths["png"].split("/")[-1]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_loader_measured_or_skipped_with_reason(report):
    rep, _ = report
    rows = rep["loaders"]
    assert {r["loader"] for r in rows} == set(loaders.list_loaders())
    for r in rows:
        assert ("images_per_sec" in r and r["images_per_sec"] > 0) or r.get("skipped")
    torch_rows = [r for r in rows if r["loader"] == "torch"]
    assert sorted(r["workers"] for r in torch_rows)[0] == 0, "the baseline sweep starts at 0 workers"
    measured = [r for r in rows if "images_per_sec" in r]
    assert any(r["loader"] == "gpu" for r in measured), "the gpu loader runs on CPU and must be measured"
    base = [r["images_per_sec"] for r in torch_rows if "images_per_sec" in r]
    for r in measured:
        if base:
            assert r["speedup_vs_torch_best"] == pytest.approx(r["images_per_sec"] / max(base))


def test_op_and_training_sections(report):
    rep, _ = report
    op_rows = [r for r in rep["op"]["rows"] if r["impl"] == "tinyfast op"]
    assert op_rows and all(r["images_per_s"] > 0 and r["gb_per_s"] > 0 for r in op_rows)
    train = rep["train"]
    ceilings = [r for r in train if r["feed"] == "synthetic"]
    assert ceilings and all(r["images_per_sec"] > 0 for r in ceilings)
    for r in train:
        if "images_per_sec" in r:
            c = next(x for x in ceilings if (x["arch"], x["channels_last_amp"]) == (r["arch"], r["channels_last_amp"]))
            assert r["fraction_of_ceiling"] == pytest.approx(r["images_per_sec"] / c["images_per_sec"])
    tta = rep["tta"]
    assert tta["exit_code"] == 0 and tta["epochs_run"] == 1
    assert 0.0 <= tta["final_val_top1"] <= 1.0 and tta["reached"]  # quick target is 0: any run reaches it


def test_bad_arguments_are_clear(capsys):
    from benchmarks.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["--sections", "loaders,nope"])
    assert e.value.code == 2
    assert "unknown section" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--batches", "0", "--sections", "op"])

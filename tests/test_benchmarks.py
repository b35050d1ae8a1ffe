"""The benchmark suite's reduced CPU mode: it runs end to end and its report has the promised shape.

Speed goals live in the benchmarks themselves; here only the structure and the internal
consistency of the report (ratios derived from the rows they cite) are checked.
"""
import importlib.util
import json
import re
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from tinyfast import loaders, ops

pytestmark = pytest.mark.skipif(not ops.is_built(), reason="tinyfast._C is not built")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from benchmarks.suite import main

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
    rep, out = report
    rows = rep["loaders"]
    assert {r["loader"] for r in rows} == set(loaders.list_loaders())
    for r in rows:
        assert ("images_per_sec" in r and r["images_per_sec"] > 0) or r.get("skipped")
    # The quick set holds every loader's input: the JPEG baseline and DALI from the JPEG shards
    # are measured (DALI/FFCV only where installed).
    assert any(r["loader"] == "torch" and "images_per_sec" in r for r in rows)
    dali = {r.get("source"): r for r in rows if r["loader"] == "dali"}
    assert set(dali) == {"pixels", "jpeg"}
    if importlib.util.find_spec("nvidia.dali"):
        assert all("images_per_sec" in r for r in dali.values()), dali
    if importlib.util.find_spec("ffcv"):
        assert "images_per_sec" in next(r for r in rows if r["loader"] == "ffcv")
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
    acc = rep["time_to_accuracy"]
    assert acc["exit_code"] == 0 and acc["epochs_run"] == 1
    assert 0.0 <= acc["final_val_top1"] <= 1.0 and acc["reached"]  # quick target is 0: any run reaches it


def test_bad_arguments_are_clear(capsys):
    from benchmarks.suite import main

    with pytest.raises(SystemExit) as e:
        main(["--sections", "loaders,nope"])
    assert e.value.code == 2
    assert "unknown section" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--batches", "0", "--sections", "op"])
    capsys.readouterr()
    for bad in (["--device", "tpu7"], ["--out", __file__]):
        with pytest.raises(SystemExit) as e:
            main(bad + ["--sections", "op", "--quick"])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and bad[1] in err.strip().splitlines()[-1]


def test_names_carry_the_time_and_no_temporary_path(report):
    rep, out = report
    for kind, path in rep["paths"].items():
        assert re.search(r"-\d{4}-\d{2}-\d{2}-\d{6}\.(json|md|png)$", path), path
    text = (out / rep["paths"]["json"].split("/")[-1]).read_text()
    text += (out / rep["paths"]["md"].split("/")[-1]).read_text()
    assert tempfile.gettempdir() + "/tinyfast-bench-" not in text
    assert "<scratch>" in rep["time_to_accuracy"]["command"]


def test_one_copy_ceiling_used_everywhere(report):
    rep, _ = report
    copy = rep["ceilings"]["copy_gb_per_s"]
    rows = rep["op"]["rows"]
    assert not [r for r in rows if "copy" in r["impl"]], "the op section measures no second copy ceiling"
    ours = [r for r in rows if r["impl"] == "tinyfast op"]
    for r in ours:
        assert r["fraction_of_copy_ceiling"] == pytest.approx(r["gb_per_s"] / copy)
    summary = rep["op"]["summary"]
    assert summary["copy_ceiling_gb_per_s"] == copy and summary["op_device"] == "cpu"
    assert summary["op_fraction_of_copy"] == pytest.approx(
        max(r["fraction_of_copy_ceiling"] for r in ours if "per sample" not in r["mode"]))
    assert not [k for k in summary if k.endswith("_fraction_of_copy") and k != "op_fraction_of_copy"]


def test_ratio_above_one_is_flagged():
    from benchmarks.reporting import flag_ratio, markdown

    ok, bad = {"arch": "a", "feed": "gpu", "channels_last_amp": True, "images_per_sec": 9.0}, \
        {"arch": "a", "feed": "dali", "channels_last_amp": True, "images_per_sec": 13.8}
    flag_ratio(ok, "fraction_of_ceiling", 0.9)
    flag_ratio(bad, "fraction_of_ceiling", 1.38)
    assert "flag" not in ok and "measurement problem" in bad["flag"]
    md = markdown(_report(train=[ok, bad]))
    line = next(x for x in md.splitlines() if x.startswith("| a | True | dali |"))
    assert "1.38" in line and "measurement problem" in line


def _report(**sections) -> dict:
    from benchmarks import common

    return {"device_name": "cpu", "command": "tinyfast-bench", "data": "d",
            "environment": common.environment(),
            "ceilings": {"copy_gb_per_s": 10.0, "copy_bytes": 2 ** 27, "matmul_dtype": "float32",
                         "matmul_tflop_per_s": 0.1}, **sections}


def test_skipped_loader_is_a_table_row_with_its_reason(tmp_path):
    """On data without the JPEG tree and .beton, ``torch`` and ``ffcv`` are rows of the table that
    say they were skipped and why."""
    from benchmarks.loaders import section as bench_loaders
    from benchmarks.reporting import markdown
    from tinyfast.pack import pack_synthetic

    data = tmp_path / "packed"
    pack_synthetic(data, classes=2, per_class=8, val_per_class=2, test_count=0, progress=False,
                   workers=1, log=None)                       # no tree kept, no .beton
    args = SimpleNamespace(quick=True, batch_size=4, batches=1, runs=1)
    rows = bench_loaders(data, __import__("torch").device("cpu"), ["torch", "ffcv", "gpu"], args)
    md = markdown(_report(loaders=rows))
    table = {line.split("|")[1].strip(): line for line in md.splitlines()
             if line.startswith("| torch |") or line.startswith("| ffcv |") or line.startswith("| gpu |")}
    for name in ("torch", "ffcv"):
        row = next(r for r in rows if r["loader"] == name)
        assert "skipped" in row
        assert "| skipped |" in table[name] and f"skipped: {row['skipped']}" in table[name]
    assert "skipped" not in table["gpu"]
    assert "No `torch` baseline row was measured" in md


def test_full_mode_on_the_default_data(tmp_path, monkeypatch, capsys):
    """Without --quick and --data: the default set is built/used (TINYFAST_DATA), a CPU run says
    it is the full suite and how long it takes, and every loader is measured wherever the default
    set holds its input (else a row says why not)."""
    from benchmarks.suite import main
    from tinyfast.data import read_manifest

    monkeypatch.setenv("TINYFAST_DATA", str(tmp_path / "default"))
    monkeypatch.chdir(tmp_path)
    rep = main(["--device", "cpu", "--sections", "loaders", "--archs", "cnn2", "--batch-size", "8",
                "--batches", "1", "--runs", "1", "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert re.search(r"running the FULL suite on the CPU; this will take about \d", printed), printed
    assert "--quick" in printed and rep["estimated_seconds"] > 0
    assert rep["data"] == str(tmp_path / "default")
    root = tmp_path / "default"
    man = read_manifest(root)
    dali, ffcv = importlib.util.find_spec("nvidia.dali"), importlib.util.find_spec("ffcv")
    tree = (man.get("source") or {}).get("path")
    has_input = {"torch": bool(tree) and Path(tree).is_dir(), "torch-npy": True, "gpu": True,
                 "dali-native": bool(dali), "ffcv": bool(ffcv) and (root / "train.beton").is_file(),
                 ("dali", "pixels"): bool(dali),
                 ("dali", "jpeg"): bool(dali) and bool(man["splits"]["train"].get("jpeg_shards"))}
    for r in rep["loaders"]:
        key = (r["loader"], r["source"]) if r["loader"] == "dali" else r["loader"]
        if has_input[key]:
            assert "images_per_sec" in r, r
        else:
            assert r["skipped"], r


def test_console_script_and_cli():
    """``tinyfast-bench`` is an installed entry point (its package shipped), returning an int."""
    import tomllib

    from benchmarks import __main__ as bench

    proj = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert proj["project"]["scripts"]["tinyfast-bench"] == "benchmarks.suite:cli"
    assert "benchmarks" in proj["tool"]["setuptools"]["packages"]
    with pytest.raises(SystemExit) as e:
        bench.cli(["--sections", "nope"])
    assert e.value.code == 2
